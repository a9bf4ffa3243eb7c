//! The Braze workspace as configured (`[destinations.braze]`): the REST key, the instance URL, the batch
//! size and the pacing, with their defaults and checks. Nothing here talks to the network.

use crate::DeliverError;
use crate::endpoint::check_url;
use crate::webhook::config::deserialize_timeout;
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

/// Most objects (attributes, events and purchases combined) one `/users/track` request may carry on
/// current Braze plans. Accounts on MAU pricing may be held to fewer (50); set `batch_size` lower there.
pub const MAX_BATCH_SIZE: usize = 75;
/// Braze's base rate limit for `/users/track`: 3,000 requests in any 3 seconds per workspace.
pub const DOCUMENTED_RATE: u32 = 3000;
/// The window [`BrazeConfig::rate`] counts requests in.
pub const RATE_WINDOW: Duration = Duration::from_secs(3);
/// The longest timeout accepted for one attempt.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(60);

/// How to reach one Braze workspace. `Debug` never shows the key.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrazeConfig {
    /// A REST API key with the `users.track` permission, sent as `Authorization: Bearer <key>`.
    pub api_key: String,
    /// The instance's REST URL, such as `https://rest.iad-01.braze.com` or `https://rest.fra-02.braze.eu`
    /// (Braze shows it on the API keys page). Scheme and host only; `/users/track` is appended.
    pub rest_endpoint: String,
    /// Objects per `/users/track` request, attributes and events combined (1–75, default 75).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// The workspace's name, for logs and `Debug` only; Braze knows the workspace from the key.
    #[serde(default)]
    pub app_group: Option<String>,
    /// The limit for one attempt, from connecting to reading the answer (at most 60 s).
    #[serde(default = "default_timeout", deserialize_with = "deserialize_timeout")]
    pub timeout: Duration,
    /// Client-side pacing: requests allowed in any 3 seconds (default and documented maximum 3,000).
    #[serde(default = "default_rate")]
    pub rate: u32,
    /// Allows a `rate` above the documented 3,000 per 3 s, for workspaces Braze granted more.
    #[serde(default)]
    pub force_rate: bool,
    /// Allows a private or internal host (a local fake or proxy during development).
    #[serde(default)]
    pub allow_private: bool,
}

fn default_batch_size() -> usize {
    MAX_BATCH_SIZE
}

fn default_timeout() -> Duration {
    Duration::from_secs(30)
}

fn default_rate() -> u32 {
    DOCUMENTED_RATE
}

impl BrazeConfig {
    /// Settings for `api_key` at `rest_endpoint` with the defaults for everything else.
    pub fn new(api_key: impl Into<String>, rest_endpoint: impl Into<String>) -> Self {
        BrazeConfig {
            api_key: api_key.into(),
            rest_endpoint: rest_endpoint.into(),
            batch_size: default_batch_size(),
            app_group: None,
            timeout: default_timeout(),
            rate: default_rate(),
            force_rate: false,
            allow_private: false,
        }
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

    /// Requests allowed in any 3 seconds.
    pub fn with_rate(mut self, rate: u32) -> Self {
        self.rate = rate;
        self
    }

    /// Accepts a `rate` above the documented limit.
    pub fn forcing_rate(mut self) -> Self {
        self.force_rate = true;
        self
    }

    pub fn with_app_group(mut self, app_group: impl Into<String>) -> Self {
        self.app_group = Some(app_group.into());
        self
    }

    /// Checks the settings; the error names the field and never repeats the key.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let key = self.api_key.trim();
        if key.is_empty() {
            return Err((
                "api_key",
                "is empty; create a REST API key with the users.track permission in Braze".into(),
            ));
        }
        if key.len() != self.api_key.len() || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(("api_key", "contains whitespace; paste the key alone".into()));
        }
        let url = check_url(&self.rest_endpoint, self.allow_private).map_err(|e| ("rest_endpoint", e))?;
        if !matches!(url.path(), "" | "/") || url.query().is_some() || url.fragment().is_some() {
            return Err((
                "rest_endpoint",
                "give the instance URL only (such as https://rest.iad-01.braze.com), without a path or query"
                    .into(),
            ));
        }
        if self.batch_size == 0 || self.batch_size > MAX_BATCH_SIZE {
            return Err((
                "batch_size",
                format!(
                    "is {}; use 1–{MAX_BATCH_SIZE} (Braze takes at most 75 objects per request)",
                    self.batch_size
                ),
            ));
        }
        if let Some(group) = &self.app_group
            && (group.trim().is_empty() || group.chars().count() > 255)
        {
            return Err(("app_group", "must be 1–255 characters, or left out".into()));
        }
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            return Err((
                "timeout",
                format!("must be above zero and at most 60s (it is {:?})", self.timeout),
            ));
        }
        if self.rate == 0 {
            return Err(("rate", "must allow at least one request per 3 seconds".into()));
        }
        if self.rate > DOCUMENTED_RATE && !self.force_rate {
            return Err((
                "rate",
                format!(
                    "is {} per 3 s, above Braze's documented {DOCUMENTED_RATE}; set force_rate = true if Braze \
                     raised your workspace's limit",
                    self.rate
                ),
            ));
        }
        Ok(())
    }

    /// [`BrazeConfig::check`] as the crate's error type.
    pub fn validate(&self) -> Result<(), DeliverError> {
        self.check().map_err(|(field, e)| DeliverError::Config(format!("braze {field}: {e}")))
    }
}

impl fmt::Debug for BrazeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrazeConfig")
            .field("api_key", &"[redacted]")
            .field("rest_endpoint", &self.rest_endpoint)
            .field("batch_size", &self.batch_size)
            .field("app_group", &self.app_group)
            .field("timeout", &self.timeout)
            .field("rate", &self.rate)
            .field("force_rate", &self.force_rate)
            .field("allow_private", &self.allow_private)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "7f3c2a10-secret-braze-key";
    const US: &str = "https://rest.iad-01.braze.com";

    #[test]
    fn defaults_fill_everything_but_key_and_endpoint() {
        let c: BrazeConfig =
            toml::from_str(&format!("api_key = \"{KEY}\"\nrest_endpoint = \"{US}\"")).unwrap();
        assert_eq!(c.batch_size, 75);
        assert_eq!(c.timeout, Duration::from_secs(30));
        assert_eq!(c.rate, 3000);
        assert!(!c.force_rate && !c.allow_private && c.app_group.is_none());
        c.check().unwrap();
        assert!(toml::from_str::<BrazeConfig>(&format!("api_key = \"{KEY}\"")).is_err(), "endpoint required");
        assert!(toml::from_str::<BrazeConfig>(&format!("rest_endpoint = \"{US}\"")).is_err(), "key required");
    }

    #[test]
    fn parses_overrides_and_refuses_unknown_fields() {
        let c: BrazeConfig = toml::from_str(&format!(
            "api_key = \"{KEY}\"\nrest_endpoint = \"https://rest.fra-02.braze.eu/\"\nbatch_size = 50\n\
             app_group = \"Shop EU\"\ntimeout = \"5s\"\nrate = 300"
        ))
        .unwrap();
        assert_eq!((c.batch_size, c.rate, c.timeout), (50, 300, Duration::from_secs(5)));
        assert_eq!(c.app_group.as_deref(), Some("Shop EU"));
        c.check().unwrap();
        let typo = format!("api_key = \"{KEY}\"\nrest_endpoint = \"{US}\"\nbatchsize = 5");
        assert!(toml::from_str::<BrazeConfig>(&typo).is_err());
    }

    #[test]
    fn checks_name_the_field() {
        let ok = BrazeConfig::new(KEY, US);
        let field = |c: BrazeConfig| c.check().unwrap_err().0;
        assert_eq!(field(BrazeConfig::new("", US)), "api_key");
        assert_eq!(field(BrazeConfig::new(" k", US)), "api_key");
        assert_eq!(field(BrazeConfig::new(KEY, "http://rest.iad-01.braze.com")), "rest_endpoint");
        assert_eq!(field(BrazeConfig::new(KEY, "rest.iad-01.braze.com")), "rest_endpoint");
        assert_eq!(
            field(BrazeConfig::new(KEY, "https://rest.iad-01.braze.com/users/track")),
            "rest_endpoint"
        );
        assert_eq!(field(BrazeConfig::new(KEY, "http://127.0.0.1:9")), "rest_endpoint");
        BrazeConfig::new(KEY, "http://127.0.0.1:9").allowing_private().check().unwrap();
        assert_eq!(field(ok.clone().with_batch_size(0)), "batch_size");
        assert_eq!(field(ok.clone().with_batch_size(76)), "batch_size");
        ok.clone().with_batch_size(1).check().unwrap();
        assert_eq!(field(ok.clone().with_timeout(Duration::ZERO)), "timeout");
        assert_eq!(field(ok.clone().with_timeout(Duration::from_secs(61))), "timeout");
        assert_eq!(field(ok.clone().with_rate(0)), "rate");
        let e = ok.clone().with_rate(3001).check().unwrap_err();
        assert!(e.0 == "rate" && e.1.contains("force_rate"), "{e:?}");
        ok.clone().with_rate(3001).forcing_rate().check().unwrap();
        assert_eq!(field(ok.clone().with_app_group(" ")), "app_group");
        let e = BrazeConfig::new(KEY, "ftp://x").validate().unwrap_err().to_string();
        assert!(e.contains("braze rest_endpoint"), "{e}");
    }

    #[test]
    fn debug_and_errors_never_show_the_key() {
        let c = BrazeConfig::new(KEY, US).with_app_group("Shop");
        let shown = format!("{c:?} {c:#?}");
        assert!(!shown.contains("secret-braze-key") && shown.contains("[redacted]"), "{shown}");
        let e = BrazeConfig::new(format!("{KEY} x"), US).validate().unwrap_err().to_string();
        assert!(!e.contains("secret-braze-key"), "{e}");
    }
}
