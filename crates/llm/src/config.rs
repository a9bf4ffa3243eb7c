//! `[llm]` and `[[prompts]]`.

use crate::context::Template;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

/// A configuration value that is wrong, with the key that holds it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

fn bad(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError { key: key.into(), reason: reason.into() }
}

/// Which field carries the token cap: OpenAI's `max_completion_tokens`, or `max_tokens` for servers that
/// only read that one (Ollama, llama.cpp).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Provider {
    #[default]
    Openai,
    Ollama,
}

impl Provider {
    pub fn token_field(self) -> &'static str {
        match self {
            Provider::Openai => "max_completion_tokens",
            Provider::Ollama => "max_tokens",
        }
    }
}

/// `[llm]`: the Chat Completions endpoint generated copy comes from.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LlmConfig {
    /// The API base, ending before `/chat/completions` (`https://api.openai.com/v1`).
    pub base_url: String,
    pub model: String,
    /// Sent as `Authorization: Bearer`; never shown by `Debug`.
    pub api_key: String,
    /// The whole generation, retries included, ends by then; then the fallback is used.
    #[serde(default = "default_timeout", deserialize_with = "deserialize_duration")]
    pub timeout: Duration,
    /// The completion's token cap.
    #[serde(default = "default_max_tokens")]
    pub max_tokens: u32,
    /// 0–2; the server's default when absent.
    #[serde(default)]
    pub temperature: Option<f64>,
    /// Tokens (prompt + completion) a calendar month (UTC) may use; once spent, no call is made.
    #[serde(default)]
    pub monthly_token_budget: Option<u64>,
    #[serde(default)]
    pub provider: Provider,
    /// Retries after the first attempt (for 408, 409, 429, 5xx and connection errors).
    #[serde(default = "default_max_retries")]
    pub max_retries: u32,
}

fn default_timeout() -> Duration {
    Duration::from_secs(10)
}
fn default_max_tokens() -> u32 {
    400
}
fn default_max_retries() -> u32 {
    2
}

impl fmt::Debug for LlmConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmConfig")
            .field("base_url", &self.base_url)
            .field("model", &self.model)
            .field("api_key", &"<redacted>")
            .field("timeout", &self.timeout)
            .field("max_tokens", &self.max_tokens)
            .field("temperature", &self.temperature)
            .field("monthly_token_budget", &self.monthly_token_budget)
            .field("provider", &self.provider)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

impl LlmConfig {
    /// A configuration with the defaults for everything but the endpoint, model and key.
    pub fn new(base_url: &str, model: &str, api_key: &str) -> LlmConfig {
        LlmConfig {
            base_url: base_url.into(),
            model: model.into(),
            api_key: api_key.into(),
            timeout: default_timeout(),
            max_tokens: default_max_tokens(),
            temperature: None,
            monthly_token_budget: None,
            provider: Provider::default(),
            max_retries: default_max_retries(),
        }
    }

    /// Checks the values; errors name the key (`llm.base_url`).
    pub fn check(&self) -> Result<(), ConfigError> {
        let url = self.base_url.trim();
        let rest = url.strip_prefix("https://").or_else(|| url.strip_prefix("http://"));
        if rest.is_none_or(|r| r.is_empty() || r.starts_with('/')) {
            return Err(bad("llm.base_url", format!("`{url}` is not an http(s) URL")));
        }
        if self.model.trim().is_empty() {
            return Err(bad("llm.model", "must not be empty"));
        }
        if self.api_key.trim().is_empty() {
            return Err(bad("llm.api_key", "must not be empty (servers that ignore it still need a value)"));
        }
        if self.api_key.chars().any(|c| c.is_control()) {
            return Err(bad("llm.api_key", "contains a control character"));
        }
        if self.timeout.is_zero() {
            return Err(bad("llm.timeout", "must be more than zero"));
        }
        if self.max_tokens == 0 {
            return Err(bad("llm.max_tokens", "must be at least 1"));
        }
        if let Some(t) = self.temperature
            && !(0.0..=2.0).contains(&t)
        {
            return Err(bad("llm.temperature", format!("{t} is outside 0–2")));
        }
        if self.monthly_token_budget == Some(0) {
            return Err(bad(
                "llm.monthly_token_budget",
                "0 would refuse every call; leave it out for no budget",
            ));
        }
        if self.max_retries > 10 {
            return Err(bad("llm.max_retries", "at most 10"));
        }
        Ok(())
    }

    /// `{base_url}/chat/completions`.
    pub fn endpoint(&self) -> String {
        format!("{}/chat/completions", self.base_url.trim().trim_end_matches('/'))
    }
}

/// Names a slot may not have: the copy object a trigger event carries has these keys beside the slots.
pub const RESERVED_SLOTS: &[&str] = &["prompt", "fallback"];

/// One slot's limits.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SlotSpec {
    /// Required: a slot without a length limit is refused at load.
    #[serde(default)]
    pub max_chars: Option<usize>,
}

/// `[[prompts]]`: a versioned prompt template and the slots it fills.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PromptSpec {
    pub name: String,
    pub version: u32,
    pub system: String,
    /// The user message template.
    pub user: String,
    pub slots: BTreeMap<String, SlotSpec>,
    /// The copy used when generation fails, one entry per slot.
    pub fallback: BTreeMap<String, String>,
}

impl PromptSpec {
    /// Checks the spec (errors name the key, `prompts[winback].slots.subject.max_chars`).
    pub fn check(&self) -> Result<(), ConfigError> {
        let at = format!("prompts[{}]", self.name);
        if self.name.is_empty()
            || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(bad("prompts.name", format!("`{}` must be letters, digits, `_` or `-`", self.name)));
        }
        if self.name.len() > 40 {
            return Err(bad(format!("{at}.name"), "at most 40 characters"));
        }
        Template::parse(&self.system).map_err(|e| bad(format!("{at}.system"), e))?;
        Template::parse(&self.user).map_err(|e| bad(format!("{at}.user"), e))?;
        if self.slots.is_empty() {
            return Err(bad(format!("{at}.slots"), "at least one slot is needed"));
        }
        for (slot, spec) in &self.slots {
            if slot.is_empty()
                || !slot.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            {
                return Err(bad(
                    format!("{at}.slots.{slot}"),
                    "slot names are lowercase letters, digits and `_`",
                ));
            }
            if RESERVED_SLOTS.contains(&slot.as_str()) {
                return Err(bad(
                    format!("{at}.slots.{slot}"),
                    format!(
                        "`{slot}` is reserved: the copy object carries the prompt and whether the fallback \
                         was used under {}",
                        RESERVED_SLOTS.join(" and ")
                    ),
                ));
            }
            match spec.max_chars {
                None => {
                    return Err(bad(
                        format!("{at}.slots.{slot}.max_chars"),
                        "every slot needs a length limit",
                    ));
                }
                Some(0) => return Err(bad(format!("{at}.slots.{slot}.max_chars"), "must be at least 1")),
                Some(_) => {}
            }
            match self.fallback.get(slot) {
                None => return Err(bad(format!("{at}.fallback.{slot}"), "every slot needs fallback copy")),
                Some(text) if text.trim().is_empty() => {
                    return Err(bad(format!("{at}.fallback.{slot}"), "must not be empty"));
                }
                Some(text) if text.chars().count() > spec.max_chars.unwrap_or(0) => {
                    return Err(bad(
                        format!("{at}.fallback.{slot}"),
                        format!("{} characters, over the slot's max_chars", text.chars().count()),
                    ));
                }
                Some(_) => {}
            }
        }
        if let Some(extra) = self.fallback.keys().find(|k| !self.slots.contains_key(*k)) {
            return Err(bad(format!("{at}.fallback.{extra}"), "not a slot of this prompt"));
        }
        Ok(())
    }

    /// The fallback copy of every slot.
    pub fn fallback_slots(&self) -> BTreeMap<String, String> {
        self.fallback.clone()
    }
}

/// Parses `"10s"`, `"250ms"`, `"2m"`, `"1.5s"`, composites such as `"6m0s"` (as rate-limit reset headers
/// send them) or a bare number of seconds.
pub fn parse_duration(text: &str) -> Option<Duration> {
    let s = text.trim();
    if s.is_empty() {
        return None;
    }
    if let Ok(secs) = s.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let mut total = 0.0;
    let mut rest = s;
    while !rest.is_empty() {
        let end = rest.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
        let value: f64 = rest[..end].parse().ok()?;
        let unit_end = rest[end..].find(|c: char| c.is_ascii_digit()).map_or(rest.len(), |i| end + i);
        total += value
            * match &rest[end..unit_end] {
                "ms" => 0.001,
                "s" => 1.0,
                "m" => 60.0,
                "h" => 3600.0,
                _ => return None,
            };
        rest = &rest[unit_end..];
    }
    total.is_finite().then(|| Duration::from_secs_f64(total))
}

fn deserialize_duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Raw {
        Secs(u64),
        Text(String),
    }
    match Raw::deserialize(d)? {
        Raw::Secs(s) => Ok(Duration::from_secs(s)),
        Raw::Text(t) => parse_duration(&t).ok_or_else(|| {
            serde::de::Error::custom(format!("`{t}` is not a duration such as \"10s\" or \"500ms\""))
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_as_config_and_headers_write_them() {
        assert_eq!(parse_duration("10s"), Some(Duration::from_secs(10)));
        assert_eq!(parse_duration("12ms"), Some(Duration::from_millis(12)));
        assert_eq!(parse_duration("6m0s"), Some(Duration::from_secs(360)));
        assert_eq!(parse_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(parse_duration("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_duration("3 parsecs"), None);
        assert_eq!(parse_duration(""), None);
    }

    #[test]
    fn debug_never_shows_the_key() {
        let c = LlmConfig::new("https://api.example.test/v1", "m", "sk-very-secret");
        assert!(!format!("{c:?}").contains("sk-very-secret"));
    }

    #[test]
    fn base_url_must_be_http() {
        let mut c = LlmConfig::new("ftp://x/v1", "m", "k");
        assert_eq!(c.check().unwrap_err().key, "llm.base_url");
        c.base_url = "http://127.0.0.1:9/v1".into();
        assert!(c.check().is_ok());
    }
}
