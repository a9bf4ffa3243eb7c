//! What the BigCommerce fetcher needs to know.

use std::time::Duration;

/// BigCommerce's API host, which every store's path lives under.
pub const DEFAULT_API_BASE: &str = "https://api.bigcommerce.com";

/// One store's API access.
#[derive(Clone)]
pub struct BigCommerceFetchConfig {
    pub store_hash: String,
    /// The `X-Auth-Token` of the store's API account; never logged.
    pub access_token: String,
    /// `https://api.bigcommerce.com`, or a fake's address in tests.
    pub api_base: String,
    /// How long one request may take, answer included.
    pub timeout: Duration,
    /// The first wait after a 5xx, a timeout or a 429 without rate-limit headers; doubled each time in a
    /// row, up to `max_backoff`.
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl BigCommerceFetchConfig {
    pub fn new(store_hash: impl Into<String>, access_token: impl Into<String>) -> Self {
        BigCommerceFetchConfig {
            store_hash: store_hash.into(),
            access_token: access_token.into(),
            api_base: DEFAULT_API_BASE.into(),
            timeout: Duration::from_secs(10),
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
        }
    }

    pub fn api_base(mut self, base: impl Into<String>) -> Self {
        self.api_base = base.into();
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// `<api_base>/stores/<store_hash>`.
    pub fn store_url(&self) -> String {
        format!("{}/stores/{}", self.api_base.trim_end_matches('/'), self.store_hash)
    }
}

impl std::fmt::Debug for BigCommerceFetchConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BigCommerceFetchConfig")
            .field("store_hash", &self.store_hash)
            .field("access_token", &"[redacted]")
            .field("api_base", &self.api_base)
            .field("timeout", &self.timeout)
            .finish_non_exhaustive()
    }
}
