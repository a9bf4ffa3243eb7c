//! The Admin API settings, with checks that name the field at fault.

use std::time::Duration;

/// The API version asked for unless configured otherwise.
pub const DEFAULT_API_VERSION: &str = "2026-07";

/// How to reach one shop's GraphQL Admin API.
#[derive(Clone)]
pub struct ShopifyAdminConfig {
    /// The shop's `*.myshopify.com` domain.
    pub shop_domain: String,
    /// The app's Admin API access token for the shop (`shpat_…`), sent as `X-Shopify-Access-Token`.
    pub access_token: String,
    /// `YYYY-MM` (a stable version) or `unstable`.
    pub api_version: String,
    /// How long a fetched customer is reused for other orders of the same customer; zero turns it off.
    pub cache_ttl: Duration,
    /// Overrides `https://{shop_domain}` (a fake in tests and `nudge dev`).
    pub base_url: Option<String>,
    /// One request's time limit.
    pub timeout: Duration,
}

impl std::fmt::Debug for ShopifyAdminConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShopifyAdminConfig")
            .field("shop_domain", &self.shop_domain)
            .field("access_token", &"[redacted]")
            .field("api_version", &self.api_version)
            .field("cache_ttl", &self.cache_ttl)
            .field("base_url", &self.base_url)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// A setting that cannot work, and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ConfigError {
    pub field: &'static str,
    pub message: String,
}

fn err(field: &'static str, message: impl Into<String>) -> ConfigError {
    ConfigError { field, message: message.into() }
}

impl ShopifyAdminConfig {
    /// Defaults for everything but the shop and the token: the current version, a 10-minute cache, 10 s.
    pub fn new(shop_domain: impl Into<String>, access_token: impl Into<String>) -> Self {
        Self {
            shop_domain: shop_domain.into(),
            access_token: access_token.into(),
            api_version: DEFAULT_API_VERSION.into(),
            cache_ttl: Duration::from_secs(600),
            base_url: None,
            timeout: Duration::from_secs(10),
        }
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let shop = self.shop_domain.trim();
        let label = shop.strip_suffix(".myshopify.com").unwrap_or("");
        if label.is_empty()
            || !label.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(err("shop_domain", "must be the shop's `<name>.myshopify.com` domain, lower case"));
        }
        if self.access_token.trim().is_empty() {
            return Err(err("access_token", "is empty"));
        }
        if self.access_token.bytes().any(|b| b.is_ascii_control()) {
            return Err(err("access_token", "contains a control character"));
        }
        let v = self.api_version.as_bytes();
        let dated = v.len() == 7
            && v[4] == b'-'
            && v[..4].iter().chain(&v[5..]).all(u8::is_ascii_digit)
            && matches!(&self.api_version[5..], "01" | "04" | "07" | "10");
        if !dated && self.api_version != "unstable" {
            return Err(err(
                "api_version",
                "must be a release like `2026-07` (January, April, July, October) or `unstable`",
            ));
        }
        if let Some(base) = &self.base_url
            && !(base.starts_with("https://") || base.starts_with("http://"))
        {
            return Err(err("base_url", "must start with https:// (or http:// for a local fake)"));
        }
        if self.timeout.is_zero() {
            return Err(err("timeout", "must be more than zero"));
        }
        Ok(())
    }

    /// `https://{shop_domain}` unless overridden, without a trailing slash.
    pub fn base(&self) -> String {
        match &self.base_url {
            Some(b) => b.trim_end_matches('/').to_string(),
            None => format!("https://{}", self.shop_domain.trim()),
        }
    }
}
