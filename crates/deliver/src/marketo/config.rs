//! Marketo connection settings as configured (`[destinations.marketo]`), their defaults and checks.
//! Nothing here talks to the network.

use crate::DeliverError;
use crate::endpoint::check_url;
use crate::webhook::config::deserialize_timeout;
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

/// Most records Marketo takes in one lead-database call (Sync Leads, custom activities, list membership).
pub const MAX_BATCH_SIZE: usize = 300;
/// Most calls in flight at once that Marketo allows per instance (shared by every integration).
pub const MAX_IN_FLIGHT: usize = 10;
/// Marketo's limit: calls per rolling 20 s per instance, shared by every integration.
pub const MAX_RATE: u32 = 100;
/// The rolling window Marketo counts calls in.
pub const RATE_WINDOW: Duration = Duration::from_secs(20);

/// How to reach one Marketo instance. `Debug` never shows the client secret.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MarketoConfig {
    /// The LaunchPoint service's client id (Admin > Integration > LaunchPoint > View Details).
    pub client_id: String,
    /// The LaunchPoint service's client secret.
    pub client_secret: String,
    /// `https://<munchkin-id>.mktorest.com` (Admin > Integration > Web Services), without `/rest` or
    /// `/identity`; both are derived from it.
    pub base_url: String,
    /// The id of the approved custom activity type trigger events are recorded as. Without it trigger
    /// events are refused before anything is sent.
    #[serde(default)]
    pub activity_type_id: Option<u64>,
    /// Records per call (1–300).
    #[serde(default = "default_batch_size")]
    pub batch_size: usize,
    /// Calls in flight at once (1–10; Marketo's 10 are shared by every integration of the instance).
    #[serde(default = "default_max_in_flight")]
    pub max_in_flight: usize,
    /// The limit for one call, from connecting to reading the answer (Marketo allows Sync Leads 90 s).
    #[serde(default = "default_timeout", deserialize_with = "deserialize_timeout")]
    pub timeout: Duration,
    /// Calls per rolling 20 s. Marketo's 100 are shared by every integration of the instance, so the
    /// default is the 50 its best practices give one integration.
    #[serde(default = "default_rate")]
    pub rate: u32,
    /// Allows `rate` above 100 (a sandbox with a raised limit).
    #[serde(default)]
    pub force_rate: bool,
    /// The lead field Sync Leads matches on (`lookupField`); every profile must carry a value for it.
    #[serde(default = "default_lookup_field")]
    pub lookup_field: String,
    /// Allows a private or internal host (a local fake during development).
    #[serde(default)]
    pub allow_private: bool,
}

fn default_batch_size() -> usize {
    MAX_BATCH_SIZE
}

fn default_max_in_flight() -> usize {
    5
}

fn default_timeout() -> Duration {
    Duration::from_secs(90)
}

fn default_rate() -> u32 {
    50
}

fn default_lookup_field() -> String {
    "email".into()
}

impl MarketoConfig {
    /// Settings for one instance with the defaults for everything else.
    pub fn new(
        base_url: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: impl Into<String>,
    ) -> Self {
        MarketoConfig {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            base_url: base_url.into(),
            activity_type_id: None,
            batch_size: default_batch_size(),
            max_in_flight: default_max_in_flight(),
            timeout: default_timeout(),
            rate: default_rate(),
            force_rate: false,
            lookup_field: default_lookup_field(),
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

    pub fn with_activity_type(mut self, activity_type_id: u64) -> Self {
        self.activity_type_id = Some(activity_type_id);
        self
    }

    pub fn with_batch_size(mut self, batch_size: usize) -> Self {
        self.batch_size = batch_size;
        self
    }

    pub fn with_max_in_flight(mut self, max_in_flight: usize) -> Self {
        self.max_in_flight = max_in_flight;
        self
    }

    pub fn with_rate(mut self, rate: u32) -> Self {
        self.rate = rate;
        self
    }

    /// Checks the settings; the error names the field and never repeats the secret.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        let id = self.client_id.trim();
        if id.is_empty() || id.len() != self.client_id.len() || id.chars().any(|c| c.is_control()) {
            return Err(("client_id", "give the LaunchPoint service's client id, without spaces".into()));
        }
        let secret = self.client_secret.trim();
        if secret.is_empty()
            || secret.len() != self.client_secret.len()
            || secret.chars().any(|c| c.is_control())
        {
            return Err((
                "client_secret",
                "give the LaunchPoint service's client secret, without spaces".into(),
            ));
        }
        let url = check_url(&self.base_url, self.allow_private).map_err(|e| ("base_url", e))?;
        let path = url.path().trim_end_matches('/');
        if !path.is_empty() || url.query().is_some() {
            return Err((
                "base_url",
                "give only scheme and host, such as https://123-ABC-456.mktorest.com (no /rest or \
                 /identity)"
                    .into(),
            ));
        }
        if self.activity_type_id == Some(0) {
            return Err((
                "activity_type_id",
                "must be the numeric id of an approved custom activity type".into(),
            ));
        }
        if self.batch_size == 0 || self.batch_size > MAX_BATCH_SIZE {
            return Err(("batch_size", format!("must be 1–{MAX_BATCH_SIZE} (it is {})", self.batch_size)));
        }
        if self.max_in_flight == 0 || self.max_in_flight > MAX_IN_FLIGHT {
            return Err((
                "max_in_flight",
                format!(
                    "must be 1–{MAX_IN_FLIGHT}, Marketo's per-instance limit (it is {})",
                    self.max_in_flight
                ),
            ));
        }
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(300) {
            return Err(("timeout", "must be above zero and at most 300s".into()));
        }
        if self.rate == 0 {
            return Err(("rate", "must allow at least one call per 20 s".into()));
        }
        if self.rate > MAX_RATE && !self.force_rate {
            return Err((
                "rate",
                format!(
                    "{} calls per 20 s is above Marketo's {MAX_RATE} per instance; lower it, or set \
                     force_rate = true if your instance's limit was raised",
                    self.rate
                ),
            ));
        }
        let lookup = self.lookup_field.trim();
        let lookup_ok = lookup.len() == self.lookup_field.len()
            && lookup.chars().next().is_some_and(|c| c.is_ascii_alphabetic())
            && lookup.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !lookup_ok {
            return Err(("lookup_field", "must be a lead field's REST API name, such as email".into()));
        }
        Ok(())
    }

    /// [`MarketoConfig::check`] as the crate's error type.
    pub fn validate(&self) -> Result<(), DeliverError> {
        self.check().map_err(|(field, e)| DeliverError::Config(format!("marketo {field}: {e}")))
    }
}

impl fmt::Debug for MarketoConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MarketoConfig")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("base_url", &self.base_url)
            .field("activity_type_id", &self.activity_type_id)
            .field("batch_size", &self.batch_size)
            .field("max_in_flight", &self.max_in_flight)
            .field("timeout", &self.timeout)
            .field("rate", &self.rate)
            .field("force_rate", &self.force_rate)
            .field("lookup_field", &self.lookup_field)
            .field("allow_private", &self.allow_private)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "https://123-ABC-456.mktorest.com";

    #[test]
    fn defaults_fill_everything_but_the_credentials_and_host() {
        let c: MarketoConfig = toml::from_str(&format!(
            "client_id = \"id-1\"\nclient_secret = \"s3cr3t-value\"\nbase_url = \"{BASE}\""
        ))
        .unwrap();
        assert_eq!(c.activity_type_id, None);
        assert_eq!((c.batch_size, c.max_in_flight, c.rate), (300, 5, 50));
        assert_eq!(c.timeout, Duration::from_secs(90));
        assert_eq!(c.lookup_field, "email");
        assert!(!c.force_rate && !c.allow_private);
        c.check().unwrap();
        assert!(toml::from_str::<MarketoConfig>("client_id = \"a\"\nbase_url = \"x\"").is_err());
        assert!(
            toml::from_str::<MarketoConfig>(&format!(
                "client_id = \"a\"\nclient_secret = \"b\"\nbase_url = \"{BASE}\"\nbatchsize = 3"
            ))
            .is_err(),
            "unknown keys are refused"
        );
        let c: MarketoConfig = toml::from_str(&format!(
            "client_id = \"a\"\nclient_secret = \"b\"\nbase_url = \"{BASE}\"\nactivity_type_id = 100001\ntimeout = \"30s\""
        ))
        .unwrap();
        assert_eq!((c.activity_type_id, c.timeout), (Some(100001), Duration::from_secs(30)));
    }

    #[test]
    fn checks_name_the_field() {
        let ok = MarketoConfig::new(BASE, "id", "secret");
        ok.check().unwrap();
        let field = |c: MarketoConfig| c.check().unwrap_err().0;
        assert_eq!(field(MarketoConfig::new(BASE, "", "secret")), "client_id");
        assert_eq!(field(MarketoConfig::new(BASE, "id", " ")), "client_secret");
        assert_eq!(field(MarketoConfig::new("http://123-ABC-456.mktorest.com", "id", "s")), "base_url");
        assert_eq!(field(MarketoConfig::new("http://127.0.0.1:9", "id", "s")), "base_url");
        MarketoConfig::new("http://127.0.0.1:9", "id", "s").allowing_private().check().unwrap();
        assert_eq!(field(MarketoConfig::new(format!("{BASE}/rest"), "id", "s")), "base_url");
        assert_eq!(field(ok.clone().with_batch_size(301)), "batch_size");
        assert_eq!(field(ok.clone().with_batch_size(0)), "batch_size");
        assert_eq!(field(ok.clone().with_max_in_flight(11)), "max_in_flight");
        assert_eq!(field(ok.clone().with_timeout(Duration::ZERO)), "timeout");
        assert_eq!(field(ok.clone().with_rate(0)), "rate");
        let (f, e) = ok.clone().with_rate(101).check().unwrap_err();
        assert!(f == "rate" && e.contains("force_rate"), "{e}");
        let mut forced = ok.clone().with_rate(150);
        forced.force_rate = true;
        forced.check().unwrap();
        ok.clone().with_rate(100).check().unwrap();
        let mut lookup = ok.clone();
        lookup.lookup_field = "e mail".into();
        assert_eq!(field(lookup), "lookup_field");
        assert_eq!(field(ok.with_activity_type(0)), "activity_type_id");
    }

    #[test]
    fn debug_and_errors_never_show_the_secret() {
        let c = MarketoConfig::new(BASE, "id", "VerySecretValue123");
        let shown = format!("{c:?} {c:#?}");
        assert!(!shown.contains("VerySecretValue123"), "{shown}");
        assert!(shown.contains("[redacted]"));
        let bad = MarketoConfig::new("not a url", "id", "VerySecretValue123");
        assert!(!bad.validate().unwrap_err().to_string().contains("VerySecretValue123"));
    }
}
