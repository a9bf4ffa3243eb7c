//! `[[scoring.custom]]`: one of the user's own models, as written in the configuration, and its checks.
//!
//! ```toml
//! [[scoring.custom]]
//! name = "churn_gbdt"
//! onnx = "models/churn_gbdt.onnx"          # or: http = { url = "http://scorer:8080/score", timeout = "200ms" }
//! mode = "shadow"                           # "live" serves the outputs as scores
//! inputs = { X = ["customer.orders_count", "customer.total_spent", "scores.churn_risk"] }
//! outputs = { custom_churn = { output = "probabilities", index = 1, min = 0.0, max = 1.0, fallback = "churn_risk" } }
//! ```
//!
//! Everything here is checked at load ([`CustomModelSpec::check`]); the error names the key below the
//! model's table (`onnx`, `http.url`, `inputs.X[2]`, `outputs.custom_churn.min`, …).

use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::time::Duration;

/// One `[[scoring.custom]]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CustomModelSpec {
    /// The model's name: what its scores are labelled with and what `nudge report models` calls it.
    pub name: String,
    /// An ONNX file, loaded in process (builds with the `onnx` feature only).
    #[serde(default)]
    pub onnx: Option<String>,
    /// An external scorer over HTTP.
    #[serde(default)]
    pub http: Option<HttpSpec>,
    /// The model's inputs: each a CEL expression over `customer` and `scores` (a single number) or a list
    /// of them (a vector), by input name (the ONNX input tensor's name, or the feature's name in the HTTP
    /// request).
    pub inputs: BTreeMap<String, InputSpec>,
    /// The scores the model gives, by score name.
    pub outputs: BTreeMap<String, OutputSpec>,
    /// `shadow` (default): computed and recorded in the audit trail, never served; `live`: served.
    #[serde(default)]
    pub mode: Mode,
    /// When an input expression gives no value (an absent field): `fallback` (default) does not run the
    /// model for that customer (every output falls back); `model` hands the model a NaN (ONNX) or `null`
    /// (HTTP), for models that handle missing values themselves (tree ensembles do, linear models do not).
    #[serde(default)]
    pub missing: Missing,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Missing {
    #[default]
    Fallback,
    Model,
}

/// An external scorer's endpoint.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpSpec {
    /// `http://` or `https://`; each customer is a `POST` of JSON to it.
    pub url: String,
    /// How long a batch's calls may take, in all (default 200ms); customers without an answer by then get
    /// their outputs' fallbacks.
    #[serde(default = "default_timeout", deserialize_with = "duration")]
    pub timeout: Duration,
    /// Consecutive failed calls (error, timeout, bad answer) that open the circuit breaker (default 5).
    #[serde(default = "default_failures")]
    pub failures: u32,
    /// How long an open breaker stops calling before one probe call (default 30s).
    #[serde(default = "default_cooldown", deserialize_with = "duration")]
    pub cooldown: Duration,
    /// At most this many calls at once (default 16).
    #[serde(default = "default_concurrency")]
    pub max_concurrency: usize,
}

fn default_timeout() -> Duration {
    Duration::from_millis(200)
}
fn default_failures() -> u32 {
    5
}
fn default_cooldown() -> Duration {
    Duration::from_secs(30)
}
fn default_concurrency() -> usize {
    16
}

/// One input: a single expression (a number) or a list of them (a vector, in order).
#[derive(Debug, Clone, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum InputSpec {
    One(String),
    Many(Vec<String>),
}

impl InputSpec {
    /// The expressions, in order.
    pub fn exprs(&self) -> Vec<&str> {
        match self {
            InputSpec::One(s) => vec![s.as_str()],
            InputSpec::Many(v) => v.iter().map(String::as_str).collect(),
        }
    }
}

/// Where a score comes from in the model's answer, what range it must be in, and what is served when it
/// is not.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// The ONNX output's name, or the key in the HTTP answer's `scores`.
    pub output: String,
    /// For an ONNX output with several values per customer (`probabilities`: one per class), which one
    /// (default 0).
    #[serde(default)]
    pub index: usize,
    /// The lowest valid value (inclusive); below it the fallback is served.
    #[serde(default)]
    pub min: Option<f64>,
    /// The highest valid value (inclusive).
    #[serde(default)]
    pub max: Option<f64>,
    /// The built-in score served (as it is, labelled) when the output is NaN, out of range or missing.
    /// Default: the built-in score of the same name, if the output is named like one; otherwise nothing
    /// is served for this output.
    #[serde(default)]
    pub fallback: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Mode {
    #[default]
    Shadow,
    Live,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Shadow => "shadow",
            Mode::Live => "live",
        }
    }
}

/// A problem with a model's table: the key below `scoring.custom[i]` and why.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{key}: {reason}")]
pub struct ConfigError {
    pub key: String,
    pub reason: String,
}

pub(crate) fn bad(key: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError { key: key.into(), reason: reason.into() }
}

/// The scores nudge computes itself ([`nudge_policy::condition::Schema::flows_default`]'s numeric
/// `scores` fields): a live output named like one replaces it; a fallback names one.
pub fn builtin_scores() -> Vec<String> {
    nudge_policy::condition::Schema::flows_default()
        .fields("scores")
        .filter(|(_, ty)| *ty == nudge_policy::condition::FactType::Double)
        .map(|(n, _)| n.to_string())
        .collect()
}

impl CustomModelSpec {
    /// The checks that need no file and no network: exactly one of `onnx`/`http`, an http(s) URL, sane
    /// limits, output names and ranges, fallbacks that name a built-in score. The inputs' expressions are
    /// compiled by [`crate::FeatureMap::compile`]; the ONNX file is opened by the ONNX runner.
    pub fn check(&self) -> Result<(), ConfigError> {
        if self.name.is_empty()
            || self.name.len() > 64
            || !self.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(bad("name", "use 1–64 ASCII letters, digits, `_` or `-`"));
        }
        match (&self.onnx, &self.http) {
            (Some(_), Some(_)) => {
                return Err(bad("onnx", "give either `onnx` (a file) or `http` (a scorer), not both"));
            }
            (None, None) => {
                return Err(bad(
                    "onnx",
                    "give either `onnx = \"path/to/model.onnx\"` or `http = { url = … }`",
                ));
            }
            (Some(path), None) if path.trim().is_empty() => return Err(bad("onnx", "the path is empty")),
            (None, Some(h)) => h.check()?,
            _ => {}
        }
        if self.inputs.is_empty() {
            return Err(bad("inputs", "declare at least one input"));
        }
        for (name, input) in &self.inputs {
            if name.is_empty() {
                return Err(bad("inputs", "an input name is empty"));
            }
            if input.exprs().is_empty() {
                return Err(bad(format!("inputs.{name}"), "the list of expressions is empty"));
            }
        }
        if self.outputs.is_empty() {
            return Err(bad("outputs", "declare at least one output"));
        }
        let builtins = builtin_scores();
        for (name, o) in &self.outputs {
            let key = format!("outputs.{name}");
            let name_ok = !name.is_empty()
                && name.len() <= 64
                && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                && name.starts_with(|c: char| c.is_ascii_lowercase());
            if !name_ok {
                return Err(bad(
                    key,
                    "a score name is lowercase ASCII letters, digits and `_`, starting with a letter",
                ));
            }
            let text_fields: Vec<String> = nudge_policy::condition::Schema::flows_default()
                .fields("scores")
                .filter(|(_, ty)| *ty != nudge_policy::condition::FactType::Double)
                .map(|(n, _)| n.to_string())
                .collect();
            if text_fields.contains(name) {
                return Err(bad(
                    key,
                    format!("`{name}` is a built-in label, not a number: choose another name"),
                ));
            }
            if o.output.is_empty() {
                return Err(bad(format!("{key}.output"), "name the model's output"));
            }
            for (k, v) in [("min", o.min), ("max", o.max)] {
                if v.is_some_and(|v| !v.is_finite()) {
                    return Err(bad(format!("{key}.{k}"), "must be a finite number"));
                }
            }
            if let (Some(lo), Some(hi)) = (o.min, o.max)
                && lo > hi
            {
                return Err(bad(format!("{key}.min"), format!("{lo} is above max {hi}")));
            }
            if let Some(f) = &o.fallback
                && !builtins.contains(f)
            {
                return Err(bad(
                    format!("{key}.fallback"),
                    format!("`{f}` is not a built-in score (one of: {})", builtins.join(", ")),
                ));
            }
            if self.onnx.is_none() && o.index != 0 {
                return Err(bad(
                    format!("{key}.index"),
                    "an HTTP scorer's outputs are single numbers: leave out `index`",
                ));
            }
        }
        Ok(())
    }

    /// The fallback score of an output: the declared one, or the built-in of the same name.
    pub fn fallback_of(&self, output: &str) -> Option<String> {
        let o = self.outputs.get(output)?;
        o.fallback.clone().or_else(|| builtin_scores().into_iter().find(|b| b == output))
    }
}

impl HttpSpec {
    fn check(&self) -> Result<(), ConfigError> {
        let url = self.url.trim();
        let rest = url.strip_prefix("http://").or_else(|| url.strip_prefix("https://"));
        match rest {
            None => return Err(bad("http.url", format!("`{url}` is not an http:// or https:// URL"))),
            Some(r) if r.is_empty() || r.starts_with('/') => {
                return Err(bad("http.url", format!("`{url}` has no host")));
            }
            _ => {}
        }
        if reqwest::Url::parse(url).is_err() {
            return Err(bad("http.url", format!("`{url}` is not a valid URL")));
        }
        if self.timeout.is_zero() {
            return Err(bad("http.timeout", "must be more than zero"));
        }
        if self.failures == 0 {
            return Err(bad("http.failures", "must be at least 1"));
        }
        if self.max_concurrency == 0 || self.max_concurrency > 1024 {
            return Err(bad("http.max_concurrency", "must be between 1 and 1024"));
        }
        Ok(())
    }
}

/// Checks a list of models as a whole: each one, then names: model names unique, output names unique
/// across models (two models cannot serve one score).
pub fn check_all(specs: &[CustomModelSpec]) -> Result<(), (usize, ConfigError)> {
    let mut names = std::collections::BTreeSet::new();
    let mut outputs: BTreeMap<&str, &str> = BTreeMap::new();
    for (i, s) in specs.iter().enumerate() {
        s.check().map_err(|e| (i, e))?;
        if !names.insert(s.name.as_str()) {
            return Err((i, bad("name", format!("a custom model named `{}` is defined twice", s.name))));
        }
        for o in s.outputs.keys() {
            if let Some(other) = outputs.insert(o, &s.name) {
                return Err((
                    i,
                    bad(format!("outputs.{o}"), format!("model `{other}` already gives a score named `{o}`")),
                ));
            }
        }
    }
    Ok(())
}

fn duration<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let s = String::deserialize(d)?;
    parse_duration(&s).map_err(serde::de::Error::custom)
}

/// `200ms`, `2s`, `5m`, `1h`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: u64 = num.parse().map_err(|_| format!("`{s}` is not a duration like 200ms, 2s or 5m"))?;
    Ok(match unit {
        "ms" => Duration::from_millis(n),
        "s" => Duration::from_secs(n),
        "m" => Duration::from_secs(n * 60),
        "h" => Duration::from_secs(n * 3600),
        _ => return Err(format!("`{s}`: unknown unit `{unit}` (use ms, s, m or h)")),
    })
}
