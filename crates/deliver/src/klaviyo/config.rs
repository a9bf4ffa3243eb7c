//! Klaviyo connection settings as they appear in the server's configuration file, with their defaults and
//! checks. Nothing here talks to the network; the client that uses these settings is in `client`.

use crate::{DeliverError, RateLimit};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::time::Duration;

/// The API revision nudge's request shapes were written against.
pub const DEFAULT_REVISION: &str = "2026-07-15";
/// Klaviyo's production API host.
pub const DEFAULT_BASE_URL: &str = "https://a.klaviyo.com";

/// How to reach one Klaviyo account.
///
/// Deserialises from the server's TOML with everything but `api_key` optional; `timeout` accepts
/// `"10s"`, `"500ms"`, `"2m"` or a number of seconds. `Debug` never shows the key.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KlaviyoConfig {
    /// The private API key (`pk_…`), sent as `Authorization: Klaviyo-API-Key <key>`.
    pub api_key: String,
    /// Scheme and host (and optional port) of the API; a fake's address in tests and demos.
    #[serde(default = "default_base_url")]
    pub base_url: String,
    /// The `revision` header pinning the request and response shapes.
    #[serde(default = "default_revision")]
    pub revision: String,
    /// The limit for one whole request, from connecting to reading the response.
    #[serde(default = "default_timeout", deserialize_with = "deserialize_duration")]
    pub timeout: Duration,
    /// The client-side limit for `POST /api/profile-import` (Klaviyo: 75/s, 750/min).
    #[serde(default = "default_profile_import_limit")]
    pub profile_import_limit: RateLimit,
    /// The client-side limit for `POST /api/events` (Klaviyo: 350/s, 3500/min).
    #[serde(default = "default_events_limit")]
    pub events_limit: RateLimit,
    /// The client-side limit for the list-membership endpoint, adding and removing together
    /// (Klaviyo: 10/s, 150/min for each of `add_profiles_to_list` and `remove_profiles_from_list`).
    #[serde(default = "default_lists_limit")]
    pub lists_limit: RateLimit,
    /// The most profiles one bulk profile import job carries (`nudge push`); 1–10,000, Klaviyo's cap.
    #[serde(default = "default_bulk_size")]
    pub bulk_size: usize,
    /// The client-side limit for creating bulk profile import jobs (Klaviyo: 10/s, 150/min).
    #[serde(default = "default_bulk_jobs_limit")]
    pub bulk_jobs_limit: RateLimit,
    /// The client-side limit for reading bulk import jobs (status polls and import errors, together;
    /// Klaviyo: 10/s, 150/min for each).
    #[serde(default = "default_bulk_jobs_limit")]
    pub bulk_job_reads_limit: RateLimit,
    /// How long after creating a bulk import job its status is first asked for; each further wait is
    /// half as long again, up to `bulk_poll_max_interval`.
    #[serde(default = "default_bulk_poll_interval", deserialize_with = "deserialize_duration")]
    pub bulk_poll_interval: Duration,
    /// The longest wait between two status polls of one job (a longer `Retry-After` still wins).
    #[serde(default = "default_bulk_poll_max_interval", deserialize_with = "deserialize_duration")]
    pub bulk_poll_max_interval: Duration,
    /// How long a push waits for its jobs to finish before it gives their profiles back as retries.
    #[serde(default = "default_bulk_poll_timeout", deserialize_with = "deserialize_duration")]
    pub bulk_poll_timeout: Duration,
}

fn default_base_url() -> String {
    DEFAULT_BASE_URL.to_string()
}

fn default_revision() -> String {
    DEFAULT_REVISION.to_string()
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_profile_import_limit() -> RateLimit {
    RateLimit::new(75, 750)
}

fn default_events_limit() -> RateLimit {
    RateLimit::new(350, 3500)
}

fn default_lists_limit() -> RateLimit {
    RateLimit::new(10, 150)
}

fn default_bulk_size() -> usize {
    super::request::MAX_BULK_PROFILES
}

fn default_bulk_jobs_limit() -> RateLimit {
    RateLimit::new(10, 150)
}

fn default_bulk_poll_interval() -> Duration {
    Duration::from_secs(2)
}

fn default_bulk_poll_max_interval() -> Duration {
    Duration::from_secs(30)
}

fn default_bulk_poll_timeout() -> Duration {
    Duration::from_secs(30 * 60)
}

impl KlaviyoConfig {
    /// Settings for `api_key` with every other value at its default.
    pub fn new(api_key: impl Into<String>) -> Self {
        KlaviyoConfig {
            api_key: api_key.into(),
            base_url: default_base_url(),
            revision: default_revision(),
            timeout: default_timeout(),
            profile_import_limit: default_profile_import_limit(),
            events_limit: default_events_limit(),
            lists_limit: default_lists_limit(),
            bulk_size: default_bulk_size(),
            bulk_jobs_limit: default_bulk_jobs_limit(),
            bulk_job_reads_limit: default_bulk_jobs_limit(),
            bulk_poll_interval: default_bulk_poll_interval(),
            bulk_poll_max_interval: default_bulk_poll_max_interval(),
            bulk_poll_timeout: default_bulk_poll_timeout(),
        }
    }

    /// The same settings with other bulk import job polling times: the first wait, the longest wait
    /// between polls, and how long to wait for a job at all.
    pub fn with_bulk_polling(mut self, first: Duration, max: Duration, timeout: Duration) -> Self {
        self.bulk_poll_interval = first;
        self.bulk_poll_max_interval = max;
        self.bulk_poll_timeout = timeout;
        self
    }

    /// The same settings pointed at another host (a fake, a proxy).
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = base_url.into();
        self
    }

    pub fn with_timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Checks that the settings can work, so a typo fails at start-up rather than at the first delivery.
    pub fn validate(&self) -> Result<(), DeliverError> {
        let key = self.api_key.trim();
        if key.is_empty() {
            return Err(DeliverError::Config("klaviyo api_key is empty".into()));
        }
        if key.len() != self.api_key.len() || key.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(DeliverError::Config("klaviyo api_key contains whitespace".into()));
        }
        let url = reqwest::Url::parse(&self.base_url)
            .map_err(|e| DeliverError::Config(format!("klaviyo base_url `{}`: {e}", self.base_url)))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(DeliverError::Config(format!(
                "klaviyo base_url `{}` must be an http(s) URL with a host",
                self.base_url
            )));
        }
        if !is_revision(&self.revision) {
            return Err(DeliverError::Config(format!(
                "klaviyo revision `{}` must look like 2026-07-15 (optionally with .pre)",
                self.revision
            )));
        }
        if self.timeout.is_zero() {
            return Err(DeliverError::Config("klaviyo timeout must be longer than zero".into()));
        }
        for (name, limit) in [
            ("profile_import_limit", self.profile_import_limit),
            ("events_limit", self.events_limit),
            ("lists_limit", self.lists_limit),
            ("bulk_jobs_limit", self.bulk_jobs_limit),
            ("bulk_job_reads_limit", self.bulk_job_reads_limit),
        ] {
            if limit.burst_per_sec == 0 || limit.steady_per_min == 0 {
                return Err(DeliverError::Config(format!("klaviyo {name} must allow at least one request")));
            }
        }
        let max_bulk = super::request::MAX_BULK_PROFILES;
        if self.bulk_size == 0 || self.bulk_size > max_bulk {
            return Err(DeliverError::Config(format!(
                "klaviyo bulk_size must be between 1 and {max_bulk}, not {}",
                self.bulk_size
            )));
        }
        if self.bulk_poll_interval.is_zero() {
            return Err(DeliverError::Config("klaviyo bulk_poll_interval must be longer than zero".into()));
        }
        if self.bulk_poll_max_interval < self.bulk_poll_interval {
            return Err(DeliverError::Config(
                "klaviyo bulk_poll_max_interval must not be shorter than bulk_poll_interval".into(),
            ));
        }
        if self.bulk_poll_timeout < self.bulk_poll_interval {
            return Err(DeliverError::Config(
                "klaviyo bulk_poll_timeout must not be shorter than bulk_poll_interval".into(),
            ));
        }
        Ok(())
    }
}

impl fmt::Debug for KlaviyoConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KlaviyoConfig")
            .field("api_key", &"[redacted]")
            .field("base_url", &self.base_url)
            .field("revision", &self.revision)
            .field("timeout", &self.timeout)
            .field("profile_import_limit", &self.profile_import_limit)
            .field("events_limit", &self.events_limit)
            .field("lists_limit", &self.lists_limit)
            .field("bulk_size", &self.bulk_size)
            .field("bulk_jobs_limit", &self.bulk_jobs_limit)
            .field("bulk_job_reads_limit", &self.bulk_job_reads_limit)
            .field("bulk_poll_interval", &self.bulk_poll_interval)
            .field("bulk_poll_max_interval", &self.bulk_poll_max_interval)
            .field("bulk_poll_timeout", &self.bulk_poll_timeout)
            .finish()
    }
}

/// Whether `s` is a revision such as `2026-07-15` or `2026-07-15.pre`.
pub(crate) fn is_revision(s: &str) -> bool {
    let date = s.strip_suffix(".pre").unwrap_or(s);
    let b = date.as_bytes();
    b.len() == 10
        && b[4] == b'-'
        && b[7] == b'-'
        && b.iter().enumerate().all(|(i, c)| i == 4 || i == 7 || c.is_ascii_digit())
}

/// Parses `"10s"`, `"250ms"`, `"2m"`, `"1.5s"` or a bare number of seconds.
pub(crate) fn parse_duration(s: &str) -> Option<Duration> {
    let s = s.trim();
    let (number, unit) = match s.find(|c: char| !(c.is_ascii_digit() || c == '.')) {
        Some(i) => s.split_at(i),
        None => (s, "s"),
    };
    let value: f64 = number.parse().ok()?;
    let secs = match unit.trim() {
        "ms" => value / 1000.0,
        "s" => value,
        "m" => value * 60.0,
        "h" => value * 3600.0,
        _ => return None,
    };
    (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs))
}

fn deserialize_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    struct DurationVisitor;

    impl serde::de::Visitor<'_> for DurationVisitor {
        type Value = Duration;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a duration such as \"10s\", \"500ms\" or a number of seconds")
        }

        fn visit_u64<E: serde::de::Error>(self, secs: u64) -> Result<Duration, E> {
            Ok(Duration::from_secs(secs))
        }

        fn visit_i64<E: serde::de::Error>(self, secs: i64) -> Result<Duration, E> {
            u64::try_from(secs)
                .map(Duration::from_secs)
                .map_err(|_| E::custom("a duration cannot be negative"))
        }

        fn visit_f64<E: serde::de::Error>(self, secs: f64) -> Result<Duration, E> {
            if secs.is_finite() && secs >= 0.0 {
                Ok(Duration::from_secs_f64(secs))
            } else {
                Err(E::custom("a duration must be a finite number of seconds, not negative"))
            }
        }

        fn visit_str<E: serde::de::Error>(self, text: &str) -> Result<Duration, E> {
            parse_duration(text).ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(text), &self))
        }
    }

    d.deserialize_any(DurationVisitor)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_fill_everything_but_the_key() {
        let c: KlaviyoConfig = serde_json::from_str(r#"{"api_key":"pk_live_secret"}"#).unwrap();
        assert_eq!(c.base_url, "https://a.klaviyo.com");
        assert_eq!(c.revision, "2026-07-15");
        assert_eq!(c.timeout, Duration::from_secs(10));
        assert_eq!(c.profile_import_limit, RateLimit::new(75, 750));
        assert_eq!(c.events_limit, RateLimit::new(350, 3500));
        assert_eq!(c.lists_limit, RateLimit::new(10, 150));
        assert_eq!(c.bulk_size, 10_000);
        assert_eq!(
            (c.bulk_jobs_limit, c.bulk_job_reads_limit),
            (RateLimit::new(10, 150), RateLimit::new(10, 150))
        );
        assert_eq!(c.bulk_poll_interval, Duration::from_secs(2));
        assert_eq!(c.bulk_poll_max_interval, Duration::from_secs(30));
        assert_eq!(c.bulk_poll_timeout, Duration::from_secs(1800));
        c.validate().unwrap();
        assert!(serde_json::from_str::<KlaviyoConfig>("{}").is_err(), "the key is required");
    }

    #[test]
    fn parses_overrides_and_rejects_unknown_fields() {
        let c: KlaviyoConfig = serde_json::from_str(
            r#"{"api_key":"k","timeout":"1500ms","base_url":"http://127.0.0.1:9","events_limit":{"burst_per_sec":3,"steady_per_min":60}}"#,
        )
        .unwrap();
        assert_eq!(c.timeout, Duration::from_millis(1500));
        assert_eq!(c.events_limit, RateLimit::new(3, 60));
        let c: KlaviyoConfig = toml::from_str("api_key = \"k\"\ntimeout = 2").unwrap();
        assert_eq!(c.timeout, Duration::from_secs(2));
        let c: KlaviyoConfig = toml::from_str("api_key = \"k\"\ntimeout = 0.25").unwrap();
        assert_eq!(c.timeout, Duration::from_millis(250));
        let c: KlaviyoConfig = toml::from_str(
            "api_key = \"k\"\ntimeout = \"3s\"\n[profile_import_limit]\nburst_per_sec = 5\nsteady_per_min = 50",
        )
        .unwrap();
        assert_eq!((c.timeout, c.profile_import_limit), (Duration::from_secs(3), RateLimit::new(5, 50)));
        assert!(serde_json::from_str::<KlaviyoConfig>(r#"{"api_key":"k","timout":"2s"}"#).is_err());
        assert!(serde_json::from_str::<KlaviyoConfig>(r#"{"api_key":"k","timeout":"soon"}"#).is_err());
    }

    #[test]
    fn debug_never_shows_the_key() {
        let c = KlaviyoConfig::new("pk_live_very_secret");
        let shown = format!("{c:?} {c:#?}");
        assert!(!shown.contains("very_secret"), "{shown}");
        assert!(shown.contains("[redacted]"));
    }

    #[test]
    fn validation_catches_unusable_settings() {
        assert!(KlaviyoConfig::new("").validate().is_err());
        assert!(KlaviyoConfig::new("pk 1").validate().is_err());
        assert!(KlaviyoConfig::new("k").with_base_url("a.klaviyo.com").validate().is_err());
        assert!(KlaviyoConfig::new("k").with_timeout(Duration::ZERO).validate().is_err());
        let mut c = KlaviyoConfig::new("k");
        c.revision = "latest".into();
        assert!(c.validate().is_err());
        c.revision = "2026-10-15.pre".into();
        c.validate().unwrap();
        c.events_limit.burst_per_sec = 0;
        assert!(c.validate().is_err());
        c.events_limit.burst_per_sec = 1;
        c.lists_limit.steady_per_min = 0;
        assert!(c.validate().unwrap_err().to_string().contains("lists_limit"));
    }

    #[test]
    fn bulk_settings_parse_and_are_checked() {
        let c: KlaviyoConfig = toml::from_str(
            "api_key = \"k\"\nbulk_size = 500\nbulk_poll_interval = \"250ms\"\nbulk_poll_timeout = \"5m\"\n[bulk_jobs_limit]\nburst_per_sec = 2\nsteady_per_min = 20",
        )
        .unwrap();
        assert_eq!((c.bulk_size, c.bulk_jobs_limit), (500, RateLimit::new(2, 20)));
        assert_eq!(
            (c.bulk_poll_interval, c.bulk_poll_timeout),
            (Duration::from_millis(250), Duration::from_secs(300))
        );
        c.validate().unwrap();
        for size in [0, 10_001] {
            let mut bad = c.clone();
            bad.bulk_size = size;
            assert!(bad.validate().unwrap_err().to_string().contains("bulk_size"), "{size}");
        }
        let mut bad = c.clone();
        bad.bulk_jobs_limit.burst_per_sec = 0;
        assert!(bad.validate().unwrap_err().to_string().contains("bulk_jobs_limit"));
        let slow = Duration::from_secs(10);
        assert!(c.clone().with_bulk_polling(slow, Duration::from_secs(1), slow).validate().is_err());
        assert!(c.clone().with_bulk_polling(slow, slow, Duration::from_secs(1)).validate().is_err());
        assert!(c.clone().with_bulk_polling(Duration::ZERO, slow, slow).validate().is_err());
    }

    #[test]
    fn durations_parse() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("250ms"), Some(Duration::from_millis(250)));
        assert_eq!(parse_duration("2m"), Some(Duration::from_secs(120)));
        assert_eq!(parse_duration("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_duration("3 parsecs"), None);
        assert_eq!(parse_duration(""), None);
    }
}
