//! One signed-webhook endpoint as configured (`[[destinations.webhooks]]`), its secret and its checks.
//! Nothing here talks to the network.

use crate::DeliverError;
use crate::endpoint::check_url;
use base64::Engine;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::time::Duration;

/// The longest timeout the producer rules allow.
pub const MAX_TIMEOUT: Duration = Duration::from_secs(30);
/// Shortest and longest signing key, in bytes after base64 decoding.
pub const MIN_KEY_BYTES: usize = 24;
pub const MAX_KEY_BYTES: usize = 64;

/// One receiver of signed webhooks. `Debug` never shows the secret.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    /// The destination is called `webhook:<name>` in flows; 1–64 of a-z, 0-9, `_` and `-`.
    pub name: String,
    /// The receiving endpoint (https; see [`crate::endpoint`] for what else is refused).
    pub url: String,
    /// `whsec_` + standard base64 of 24–64 random bytes (the prefix and the padding are optional).
    pub secret: String,
    /// Secrets the endpoint is moving away from: while listed, each delivery carries one `v1` signature
    /// per secret (space-delimited), so the receiver can switch to `secret` at its own pace.
    #[serde(default)]
    pub previous_secrets: Vec<String>,
    /// The event types this endpoint takes (`nudge.trigger_event`, …); all when absent.
    #[serde(default)]
    pub events: Option<Vec<String>>,
    /// A disabled endpoint is not a destination (flows cannot route to it).
    #[serde(default = "yes")]
    pub enabled: bool,
    /// Allows a private or internal host (a receiver inside the same network, a local one in development).
    #[serde(default)]
    pub allow_private: bool,
    /// The limit for one attempt, from connecting to reading the answer (at most 30 s).
    #[serde(default = "default_timeout", deserialize_with = "deserialize_timeout")]
    pub timeout: Duration,
}

fn yes() -> bool {
    true
}

fn default_timeout() -> Duration {
    Duration::from_secs(15)
}

/// Where in a webhook table a problem is (`secret`, `url`, …) and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    pub field: &'static str,
    pub message: String,
}

impl WebhookConfig {
    /// Settings for an endpoint with the defaults for everything else.
    pub fn new(name: impl Into<String>, url: impl Into<String>, secret: impl Into<String>) -> Self {
        WebhookConfig {
            name: name.into(),
            url: url.into(),
            secret: secret.into(),
            previous_secrets: Vec::new(),
            events: None,
            enabled: true,
            allow_private: false,
            timeout: default_timeout(),
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

    pub fn with_events(mut self, events: &[&str]) -> Self {
        self.events = Some(events.iter().map(|e| e.to_string()).collect());
        self
    }

    /// The destination name flows use: `webhook:<name>`.
    pub fn destination_name(&self) -> String {
        format!("webhook:{}", self.name)
    }

    /// Whether this endpoint takes actions of `kind` (`trigger_event`, …).
    pub fn accepts_kind(&self, kind: &str) -> bool {
        self.events
            .as_ref()
            .is_none_or(|events| events.iter().any(|e| e.strip_prefix("nudge.") == Some(kind)))
    }

    /// Checks the settings; the error names the field, so the caller can give the full key path.
    pub fn check(&self) -> Result<(), FieldError> {
        let fail = |field, message: String| Err(FieldError { field, message });
        let name_ok = !self.name.is_empty()
            && self.name.len() <= 64
            && self
                .name
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
        if !name_ok {
            return fail("name", format!("`{}`: use 1–64 of a-z, 0-9, _ and -", self.name));
        }
        if let Err(e) = check_url(&self.url, self.allow_private) {
            return fail("url", e);
        }
        if let Err(e) = WebhookSecret::parse(&self.secret) {
            return fail("secret", e);
        }
        for (i, previous) in self.previous_secrets.iter().enumerate() {
            if let Err(e) = WebhookSecret::parse(previous) {
                return fail("previous_secrets", format!("[{i}]: {e}"));
            }
        }
        if let Some(events) = &self.events {
            if events.is_empty() {
                return fail("events", "list at least one event type, or leave `events` out for all".into());
            }
            for e in events {
                let known = e.strip_prefix("nudge.").is_some_and(|k| nudge_model::Action::KINDS.contains(&k));
                if !known {
                    let all: Vec<String> =
                        nudge_model::Action::KINDS.iter().map(|k| format!("nudge.{k}")).collect();
                    return fail("events", format!("unknown event type `{e}` (known: {})", all.join(", ")));
                }
            }
        }
        if self.timeout.is_zero() || self.timeout > MAX_TIMEOUT {
            return fail("timeout", format!("must be above zero and at most 30s (it is {:?})", self.timeout));
        }
        Ok(())
    }

    /// [`WebhookConfig::check`] as the crate's error type.
    pub fn validate(&self) -> Result<(), DeliverError> {
        self.check()
            .map_err(|e| DeliverError::Config(format!("webhook `{}` {}: {}", self.name, e.field, e.message)))
    }
}

impl fmt::Debug for WebhookConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookConfig")
            .field("name", &self.name)
            .field("url", &self.url)
            .field("secret", &"[redacted]")
            .field("previous_secrets", &format!("[{} redacted]", self.previous_secrets.len()))
            .field("events", &self.events)
            .field("enabled", &self.enabled)
            .field("allow_private", &self.allow_private)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// The HMAC key of an endpoint: the base64-decoded secret. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct WebhookSecret(Vec<u8>);

impl WebhookSecret {
    /// Decodes `whsec_<base64>`, with or without the prefix and the padding, as the reference libraries do.
    /// The error never repeats the secret.
    pub fn parse(secret: &str) -> Result<WebhookSecret, String> {
        let text = secret.trim();
        let text = text.strip_prefix("whsec_").unwrap_or(text);
        if text.is_empty() {
            return Err("the secret is empty; give `whsec_` followed by base64 of 24–64 random bytes".into());
        }
        let engine = GeneralPurpose::new(
            &alphabet::STANDARD,
            GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
        );
        let key = engine
            .decode(text)
            .map_err(|_| "the secret is not standard base64 after `whsec_`".to_string())?;
        if key.len() < MIN_KEY_BYTES || key.len() > MAX_KEY_BYTES {
            return Err(format!(
                "the secret decodes to {} bytes; use {MIN_KEY_BYTES}–{MAX_KEY_BYTES} random bytes",
                key.len()
            ));
        }
        Ok(WebhookSecret(key))
    }

    /// The key bytes.
    pub fn key(&self) -> &[u8] {
        &self.0
    }
}

impl fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WebhookSecret([redacted {} bytes])", self.0.len())
    }
}

/// A timeout written `"15s"`, `"500ms"` or as a number of seconds.
pub(crate) fn deserialize_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Secs(s) => Ok(Duration::from_secs(s)),
        Raw::Text(t) => crate::klaviyo::config::parse_duration(&t)
            .ok_or_else(|| serde::de::Error::custom(format!("`{t}` is not a duration such as \"15s\""))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

    #[test]
    fn prefix_and_padding_are_optional() {
        let key = WebhookSecret::parse(VECTOR_SECRET).unwrap();
        assert_eq!(key.key().len(), 24);
        assert_eq!(WebhookSecret::parse("C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap(), key);
        // 32 bytes: padded base64 ends in one '='.
        let padded = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw3Mq2kbhnVQs=";
        let a = WebhookSecret::parse(padded).unwrap();
        assert_eq!(a.key().len(), 32);
        assert_eq!(WebhookSecret::parse(padded.trim_end_matches('=')).unwrap(), a);
        assert_eq!(WebhookSecret::parse(&padded["whsec_".len()..]).unwrap(), a);
    }

    #[test]
    fn bad_secrets_are_refused_without_repeating_them() {
        for bad in ["", "whsec_", "   ", "whsec_not*base64!", "whsec_c2hvcnQ=", "c2hvcnQ"] {
            let e = WebhookSecret::parse(bad).unwrap_err();
            let body = bad.trim().trim_start_matches("whsec_");
            assert!(body.is_empty() || !e.contains(body), "{e}");
        }
        assert!(WebhookSecret::parse("whsec_c2hvcnQ=").unwrap_err().contains("5 bytes"));
        assert!(WebhookSecret::parse("whsec_").unwrap_err().contains("empty"));
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let c = WebhookConfig::new("crm", "https://hooks.example.com/in", VECTOR_SECRET);
        let shown = format!("{c:?} {c:#?} {:?}", WebhookSecret::parse(VECTOR_SECRET).unwrap());
        assert!(!shown.contains("C2FVsBQIhrscChlQIMV"), "{shown}");
    }

    #[test]
    fn checks_name_url_events_and_timeout() {
        let ok = WebhookConfig::new("crm", "https://hooks.example.com/in", VECTOR_SECRET);
        ok.check().unwrap();
        let field = |c: WebhookConfig| c.check().unwrap_err().field;
        assert_eq!(field(WebhookConfig { name: "CRM".into(), ..ok.clone() }), "name");
        assert_eq!(field(WebhookConfig { url: "http://hooks.example.com".into(), ..ok.clone() }), "url");
        assert_eq!(field(WebhookConfig { url: "https://10.0.0.2/in".into(), ..ok.clone() }), "url");
        WebhookConfig { url: "https://10.0.0.2/in".into(), ..ok.clone() }.allowing_private().check().unwrap();
        assert_eq!(field(WebhookConfig { secret: "whsec_".into(), ..ok.clone() }), "secret");
        assert_eq!(field(ok.clone().with_events(&["nudge.trigger_evnt"])), "events");
        assert_eq!(field(ok.clone().with_events(&[])), "events");
        assert_eq!(field(ok.clone().with_timeout(Duration::from_secs(31))), "timeout");
        ok.clone().with_events(&["nudge.trigger_event", "nudge.alert"]).check().unwrap();
        let mut rotating = ok.clone();
        rotating.previous_secrets = vec![VECTOR_SECRET.into()];
        rotating.check().unwrap();
        rotating.previous_secrets.push("whsec_c2hvcnQ=".into());
        let e = rotating.check().unwrap_err();
        assert_eq!((e.field, e.message.starts_with("[1]")), ("previous_secrets", true), "{e:?}");
        assert!(format!("{rotating:?}").contains("[2 redacted]"));
    }

    #[test]
    fn events_filter_by_kind() {
        let c = WebhookConfig::new("crm", "https://hooks.example.com/in", VECTOR_SECRET);
        assert!(c.accepts_kind("upsert_profile"));
        let c = c.with_events(&["nudge.trigger_event"]);
        assert!(c.accepts_kind("trigger_event"));
        assert!(!c.accepts_kind("upsert_profile"));
    }

    #[test]
    fn parses_from_toml_with_defaults() {
        let c: WebhookConfig =
            toml::from_str("name = \"crm\"\nurl = \"https://h.example.com/x\"\nsecret = \"whsec_x\"")
                .unwrap();
        assert!(c.enabled && !c.allow_private && c.events.is_none());
        assert_eq!(c.timeout, Duration::from_secs(15));
        let c: WebhookConfig =
            toml::from_str("name = \"crm\"\nurl = \"u\"\nsecret = \"s\"\ntimeout = \"2500ms\"").unwrap();
        assert_eq!(c.timeout, Duration::from_millis(2500));
        assert!(
            toml::from_str::<WebhookConfig>("name = \"crm\"\nurl = \"u\"\nsecret = \"s\"\nurls = 1").is_err()
        );
    }
}
