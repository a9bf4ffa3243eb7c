//! HubSpot connection settings as configured (`[destinations.hubspot]`), their defaults and checks.
//! Nothing here talks to the network.
//!
//! ```toml
//! [destinations.hubspot]
//! access_token = "pat-na1-…"      # a private app's token with crm.objects.contacts.write and
//!                                  # crm.schemas.contacts.write
//! # base_url = "https://api.hubapi.com"
//! # property_group = "nudge_ai"   # where nudge creates its contact properties
//! # batch_size = 100              # contacts per upsert request, at most 100
//! # timeout = "30s"
//! # rate = 100                    # requests per 10 s; 190 on Professional and Enterprise
//! ```

use crate::DeliverError;
use crate::endpoint::check_url;
use crate::webhook::config::deserialize_timeout;
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

/// HubSpot's API host.
pub const DEFAULT_BASE_URL: &str = "https://api.hubapi.com";
/// The property group nudge creates its contact properties in.
pub const DEFAULT_PROPERTY_GROUP: &str = "nudge_ai";
/// Requests per 10 s by default: the private-app limit of Free and Starter accounts, which every plan
/// allows.
pub const DEFAULT_RATE: u32 = 100;
/// The highest plan limit for private apps: 190 requests per 10 s (Professional and Enterprise). A higher
/// `rate` (an API-limit capacity pack allows 250) needs `force_rate = true`.
pub const MAX_PLAN_RATE: u32 = 190;
/// The longest timeout accepted for one request.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(120);

/// How to reach one HubSpot account. `Debug` never shows the token.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HubSpotConfig {
    /// A private app's access token (`pat-…`), sent as `Authorization: Bearer <token>`. It needs the
    /// scopes `crm.objects.contacts.write` and `crm.schemas.contacts.write` (to create properties).
    pub access_token: String,
    /// Scheme and host of the API; a fake's address in tests and demos.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// Allows a private or internal `base_url` host (a local fake during development).
    #[serde(default)]
    pub allow_private: bool,
    /// The contact property group nudge creates its properties in (a HubSpot internal name: lowercase
    /// letters, digits and `_`, starting with a letter).
    #[serde(default = "default_property_group")]
    pub property_group: String,
    /// Contacts per batch-upsert request (1–100).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// The limit for one request, from connecting to reading the answer.
    #[serde(default = "default_timeout", deserialize_with = "deserialize_timeout")]
    pub timeout: Duration,
    /// Requests per rolling 10 s, all endpoints together (HubSpot counts every private app of the account
    /// against one limit: 100 on Free and Starter, 190 on Professional and Enterprise).
    #[serde(default = "default_rate")]
    pub rate: u32,
    /// Accepts a `rate` above 190 (an account with the API-limit capacity pack).
    #[serde(default)]
    pub force_rate: bool,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_string()
}

fn default_property_group() -> String {
    DEFAULT_PROPERTY_GROUP.to_string()
}

fn default_batch_size() -> usize {
    crate::hubspot::request::MAX_BATCH_INPUTS
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_rate() -> u32 {
    DEFAULT_RATE
}

impl HubSpotConfig {
    /// Settings for `access_token` with every other value at its default.
    pub fn new(access_token: impl Into<String>) -> Self {
        HubSpotConfig {
            access_token: access_token.into(),
            base_url: default_base_url(),
            allow_private: false,
            property_group: default_property_group(),
            batch_size: default_batch_size(),
            timeout: default_timeout(),
            rate: default_rate(),
            force_rate: false,
        }
    }

    /// The same settings pointed at another host (a fake, a proxy).
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into();
        self
    }

    pub fn allowing_private(mut self) -> Self {
        self.allow_private = true;
        self
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    pub fn with_rate(mut self, rate: u32) -> Self {
        self.rate = rate;
        self
    }

    pub fn with_property_group(mut self, group: impl Into<String>) -> Self {
        self.property_group = group.into();
        self
    }

    /// Checks the settings; the error names the field and never repeats the token.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let token = &self.access_token;
        if token.trim().is_empty() {
            return Err((
                "access_token",
                "is empty; create a private app in HubSpot (Settings → Integrations → Private Apps) and \
                 paste its access token"
                    .into(),
            ));
        }
        if token.chars().any(|c| c.is_whitespace() || c.is_control() || !c.is_ascii()) {
            return Err(("access_token", "contains whitespace or characters a token never has".into()));
        }
        check_url(&self.base_url, self.allow_private).map_err(|e| ("base_url", e))?;
        if !crate::hubspot::properties::is_internal_name(&self.property_group) {
            return Err((
                "property_group",
                format!(
                    "`{}` is not a HubSpot internal name: use lowercase letters, digits and _, starting \
                     with a letter",
                    self.property_group
                ),
            ));
        }
        let max = crate::hubspot::request::MAX_BATCH_INPUTS;
        if self.batch_size == 0 || self.batch_size > max {
            return Err((
                "batch_size",
                format!("must be 1–{max} (HubSpot's batch limit); it is {}", self.batch_size),
            ));
        }
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            return Err((
                "timeout",
                format!("must be above zero and at most 120s (it is {:?})", self.timeout),
            ));
        }
        if self.rate == 0 {
            return Err(("rate", "must allow at least one request per 10 s".into()));
        }
        if self.rate > MAX_PLAN_RATE && !self.force_rate {
            return Err((
                "rate",
                format!(
                    "{} requests per 10 s is above every plan's private-app limit (100 on Free/Starter, \
                     {MAX_PLAN_RATE} on Professional/Enterprise); set force_rate = true if the account has \
                     the API-limit capacity pack",
                    self.rate
                ),
            ));
        }
        Ok(())
    }

    /// [`HubSpotConfig::check`] as the crate's error type.
    pub fn validate(&self) -> Result<(), DeliverError> {
        self.check().map_err(|(field, e)| DeliverError::Config(format!("hubspot {field}: {e}")))
    }
}

impl fmt::Debug for HubSpotConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubSpotConfig")
            .field("access_token", &"[redacted]")
            .field("base_url", &self.base_url)
            .field("allow_private", &self.allow_private)
            .field("property_group", &self.property_group)
            .field("batch_size", &self.batch_size)
            .field("timeout", &self.timeout)
            .field("rate", &self.rate)
            .field("force_rate", &self.force_rate)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TOKEN: &str = "pat-na1-11111111-2222-3333-4444-555555555555";

    #[test]
    fn defaults_fill_everything_but_the_token() {
        let c: HubSpotConfig = toml::from_str(&format!("access_token = \"{TOKEN}\"")).unwrap();
        assert_eq!(c.base_url, "https://api.hubapi.com");
        assert!(!c.allow_private && !c.force_rate);
        assert_eq!(c.property_group, "nudge_ai");
        assert_eq!((c.batch_size, c.rate), (100, 100));
        assert_eq!(c.timeout, Duration::from_secs(30));
        c.check().unwrap();
        assert!(toml::from_str::<HubSpotConfig>("base_url = \"https://api.hubapi.com\"").is_err());
        assert!(
            toml::from_str::<HubSpotConfig>(&format!("access_token = \"{TOKEN}\"\nbatchsize = 5")).is_err()
        );
        let c: HubSpotConfig =
            toml::from_str(&format!("access_token = \"{TOKEN}\"\ntimeout = \"1500ms\"\nrate = 190")).unwrap();
        assert_eq!((c.timeout, c.rate), (Duration::from_millis(1500), 190));
    }

    #[test]
    fn debug_and_errors_never_show_the_token() {
        let c = HubSpotConfig::new(TOKEN);
        let shown = format!("{c:?} {c:#?}");
        assert!(!shown.contains("11111111"), "{shown}");
        assert!(shown.contains("[redacted]"));
        let bad = HubSpotConfig::new(format!("{TOKEN} x"));
        let (field, e) = bad.check().unwrap_err();
        assert_eq!(field, "access_token");
        assert!(!e.contains("11111111") && !bad.validate().unwrap_err().to_string().contains("11111111"));
    }

    #[test]
    fn checks_name_the_field() {
        let ok = HubSpotConfig::new(TOKEN);
        let field = |c: HubSpotConfig| c.check().unwrap_err().0;
        assert_eq!(field(HubSpotConfig::new("  ")), "access_token");
        assert_eq!(field(ok.clone().with_base_url("http://api.hubapi.com")), "base_url");
        assert_eq!(field(ok.clone().with_base_url("http://127.0.0.1:9")), "base_url");
        ok.clone().with_base_url("http://127.0.0.1:9").allowing_private().check().unwrap();
        for bad in ["", "Nudge", "1group", "nudge-ai", "nudge ai"] {
            assert_eq!(field(ok.clone().with_property_group(bad)), "property_group", "{bad}");
        }
        ok.clone().with_property_group("nudge_ai_2").check().unwrap();
        assert_eq!(field(ok.clone().with_batch_size(0)), "batch_size");
        assert_eq!(field(ok.clone().with_batch_size(101)), "batch_size");
        ok.clone().with_batch_size(1).check().unwrap();
        assert_eq!(field(ok.clone().with_timeout(Duration::ZERO)), "timeout");
        assert_eq!(field(ok.clone().with_rate(0)), "rate");
        ok.clone().with_rate(190).check().unwrap();
        let (f, e) = ok.clone().with_rate(250).check().unwrap_err();
        assert!(f == "rate" && e.contains("force_rate"), "{e}");
        HubSpotConfig { force_rate: true, ..ok.with_rate(250) }.check().unwrap();
    }
}
