//! The Slack alert channel as configured (`[destinations.slack]`). Nothing here talks to the network.

use crate::endpoint::check_url;
use crate::webhook::config::deserialize_timeout;
use crate::{DeliverError, RateLimit};
use serde::Deserialize;
use std::fmt;
use std::time::Duration;

/// One Slack incoming webhook. `Debug` never shows the URL (it is the credential).
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlackConfig {
    /// `https://hooks.slack.com/services/T…/B…/…`.
    pub webhook_url: String,
    /// The limit for one attempt.
    #[serde(default = "default_timeout", deserialize_with = "deserialize_timeout")]
    pub timeout: Duration,
    /// Client-side pacing; Slack allows about one message a second per webhook with short bursts.
    #[serde(default = "default_rate_limit")]
    pub rate_limit: RateLimit,
    /// Allows a private or internal host (a local stand-in during development).
    #[serde(default)]
    pub allow_private: bool,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_rate_limit() -> RateLimit {
    RateLimit::new(1, 60)
}

impl SlackConfig {
    pub fn new(webhook_url: impl Into<String>) -> Self {
        SlackConfig {
            webhook_url: webhook_url.into(),
            timeout: default_timeout(),
            rate_limit: default_rate_limit(),
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

    pub fn with_rate_limit(mut self, limit: RateLimit) -> Self {
        self.rate_limit = limit;
        self
    }

    /// Checks the settings; the error names the field and never repeats the URL.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        if self.webhook_url.trim().is_empty() {
            return Err(("webhook_url", "is empty".into()));
        }
        check_url(&self.webhook_url, self.allow_private).map_err(|e| ("webhook_url", e))?;
        if self.timeout.is_zero() || self.timeout > Duration::from_secs(30) {
            return Err(("timeout", "must be above zero and at most 30s".into()));
        }
        if self.rate_limit.burst_per_sec == 0 || self.rate_limit.steady_per_min == 0 {
            return Err(("rate_limit", "must allow at least one message".into()));
        }
        Ok(())
    }

    pub fn validate(&self) -> Result<(), DeliverError> {
        self.check().map_err(|(field, e)| DeliverError::Config(format!("slack {field}: {e}")))
    }
}

impl fmt::Debug for SlackConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackConfig")
            .field("webhook_url", &"[redacted]")
            .field("timeout", &self.timeout)
            .field("rate_limit", &self.rate_limit)
            .field("allow_private", &self.allow_private)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const URL: &str = "https://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX";

    #[test]
    fn debug_and_errors_never_show_the_url() {
        let c = SlackConfig::new(URL);
        c.check().unwrap();
        assert!(!format!("{c:?} {c:#?}").contains("XXXXSECRETXXXX"));
        let bad = SlackConfig::new("http://hooks.slack.com/services/T000/B000/XXXXSECRETXXXX");
        let (field, e) = bad.check().unwrap_err();
        assert_eq!(field, "webhook_url");
        assert!(!e.contains("XXXXSECRETXXXX"), "{e}");
        assert!(!bad.validate().unwrap_err().to_string().contains("XXXXSECRETXXXX"));
    }

    #[test]
    fn defaults_and_checks() {
        let c: SlackConfig = toml::from_str(&format!("webhook_url = \"{URL}\"")).unwrap();
        assert_eq!((c.timeout, c.rate_limit), (Duration::from_secs(10), RateLimit::new(1, 60)));
        assert_eq!(SlackConfig::new("").check().unwrap_err().0, "webhook_url");
        assert_eq!(SlackConfig::new("http://127.0.0.1:9/x").check().unwrap_err().0, "webhook_url");
        SlackConfig::new("http://127.0.0.1:9/x").allowing_private().check().unwrap();
        assert_eq!(SlackConfig::new(URL).with_timeout(Duration::ZERO).check().unwrap_err().0, "timeout");
    }
}
