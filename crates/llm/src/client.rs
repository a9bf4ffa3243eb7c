//! The Chat Completions client: one deadline per generation, the contract's retry policy, the monthly
//! token budget, and the fallback copy whenever anything fails.

use crate::config::{ConfigError, LlmConfig, PromptSpec, parse_duration};
use crate::context::CopyContext;
use crate::request::{ValidationError, build_body, parse_answer, render, usage};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderMap};
use serde_json::Value;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;
use time::OffsetDateTime;
use tokio::time::Instant;

/// The longest server-requested wait that is honoured; a longer one means "do not retry".
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(120);
/// How long calls stop after the provider answered `insufficient_quota`.
pub const QUOTA_PAUSE: Duration = Duration::from_secs(3600);

/// Why a client cannot be built.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error("no TLS crypto provider is installed")]
    NoCryptoProvider,
    #[error("the HTTP client cannot be built: {0}")]
    Http(#[from] reqwest::Error),
}

/// Why the fallback copy was used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FallbackReason {
    /// The monthly token budget is spent; no call was made.
    BudgetSpent { used: u64, budget: u64 },
    /// The provider said the account has no quota left (429 `insufficient_quota`); calls pause.
    QuotaExhausted,
    /// `llm.timeout` passed before a usable answer.
    Timeout,
    /// 429 and no retry fits: the wait the server asked for (if any) is past the deadline or over 120 s,
    /// or the retries are used up.
    RateLimited { retry_after: Option<Duration> },
    /// An HTTP error answer that is not retried (or whose retries are used up).
    Http { status: u16, error_type: Option<String>, message: String },
    /// The connection failed (after the retries).
    Transport(String),
    /// The answer did not validate.
    Invalid(ValidationError),
}

impl fmt::Display for FallbackReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            FallbackReason::BudgetSpent { used, budget } => {
                write!(f, "monthly token budget spent ({used} of {budget} tokens)")
            }
            FallbackReason::QuotaExhausted => {
                f.write_str("the provider reports no quota left (insufficient_quota)")
            }
            FallbackReason::Timeout => f.write_str("timed out"),
            FallbackReason::RateLimited { retry_after: Some(d) } => {
                write!(f, "rate limited; the retry after {} ms does not fit", d.as_millis())
            }
            FallbackReason::RateLimited { retry_after: None } => f.write_str("rate limited"),
            FallbackReason::Http { status, error_type, message } => {
                write!(f, "HTTP {status}")?;
                if let Some(t) = error_type {
                    write!(f, " ({t})")?;
                }
                if !message.is_empty() {
                    write!(f, ": {message}")?;
                }
                Ok(())
            }
            FallbackReason::Transport(e) => write!(f, "connection failed: {e}"),
            FallbackReason::Invalid(e) => write!(f, "invalid output: {e}"),
        }
    }
}

/// The copy for a message's slots, generated or the template's fallback.
#[derive(Debug, Clone, PartialEq)]
pub struct Generated {
    pub slots: BTreeMap<String, String>,
    pub fallback_used: bool,
    /// Set exactly when the fallback was used.
    pub reason: Option<FallbackReason>,
    /// Tokens this generation used (as the server counted them, else estimated at 4 characters a token).
    pub tokens: u64,
    /// HTTP requests made.
    pub attempts: u32,
    /// The last answer's `x-request-id`, for the provider's support.
    pub request_id: Option<String>,
    /// The prompt's name and version, for the audit trail.
    pub prompt: String,
}

/// Tokens used this month against the budget, for `/metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetStatus {
    pub year: i32,
    pub month: u8,
    pub used: u64,
    pub budget: Option<u64>,
}

struct Ledger {
    year: i32,
    month: u8,
    used: u64,
}

impl Ledger {
    /// Starts a new count when the UTC month changed.
    fn roll(&mut self, now: OffsetDateTime) {
        let (y, m) = (now.year(), u8::from(now.month()));
        if (y, m) != (self.year, self.month) {
            *self = Ledger { year: y, month: m, used: 0 };
        }
    }
}

/// A Chat Completions client for generated copy. Cheap to share behind an `Arc`.
pub struct LlmClient {
    config: LlmConfig,
    endpoint: String,
    http: reqwest::Client,
    ledger: Mutex<Ledger>,
    paused_until: Mutex<Option<Instant>>,
}

impl fmt::Debug for LlmClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LlmClient").field("config", &self.config).finish_non_exhaustive()
    }
}

enum Attempt {
    Done(Result<BTreeMap<String, String>, FallbackReason>),
    Retry { wait: Option<Duration>, reason: FallbackReason },
}

impl LlmClient {
    /// Builds a client after checking `config`. A TLS crypto provider must already be installed.
    pub fn new(config: LlmConfig) -> Result<LlmClient, ClientError> {
        config.check()?;
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            return Err(ClientError::NoCryptoProvider);
        }
        let http = reqwest::Client::builder()
            .connect_timeout(config.timeout.min(Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("nudge/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let now = OffsetDateTime::now_utc();
        Ok(LlmClient {
            endpoint: config.endpoint(),
            config,
            http,
            ledger: Mutex::new(Ledger { year: now.year(), month: u8::from(now.month()), used: 0 }),
            paused_until: Mutex::new(None),
        })
    }

    pub fn config(&self) -> &LlmConfig {
        &self.config
    }

    /// This month's tokens against the budget.
    pub fn budget_status(&self) -> BudgetStatus {
        let mut l = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        l.roll(OffsetDateTime::now_utc());
        BudgetStatus { year: l.year, month: l.month, used: l.used, budget: self.config.monthly_token_budget }
    }

    /// Restores this month's count (from the store, after a restart).
    pub fn set_tokens_used(&self, used: u64) {
        let mut l = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        l.roll(OffsetDateTime::now_utc());
        l.used = used;
    }

    fn add_tokens(&self, tokens: u64) {
        let mut l = self.ledger.lock().unwrap_or_else(|e| e.into_inner());
        l.roll(OffsetDateTime::now_utc());
        l.used = l.used.saturating_add(tokens);
    }

    /// Whether calls are paused after an `insufficient_quota` answer.
    pub fn quota_paused(&self) -> bool {
        self.paused_until.lock().unwrap_or_else(|e| e.into_inner()).is_some_and(|t| Instant::now() < t)
    }

    /// Generates the prompt's slots for `context`; on any failure, timeout or invalid output, answers the
    /// template's fallback copy with the reason. Returns within `llm.timeout` (plus scheduling slack).
    pub async fn generate(&self, prompt: &PromptSpec, context: &CopyContext) -> Generated {
        let mut out = Generated {
            slots: BTreeMap::new(),
            fallback_used: false,
            reason: None,
            tokens: 0,
            attempts: 0,
            request_id: None,
            prompt: format!("{}@v{}", prompt.name, prompt.version),
        };
        let result = self.run(prompt, context, &mut out).await;
        match result {
            Ok(slots) => out.slots = slots,
            Err(reason) => {
                out.slots = prompt.fallback_slots();
                out.fallback_used = true;
                out.reason = Some(reason);
            }
        }
        out
    }

    async fn run(
        &self,
        prompt: &PromptSpec,
        context: &CopyContext,
        out: &mut Generated,
    ) -> Result<BTreeMap<String, String>, FallbackReason> {
        let deadline = Instant::now() + self.config.timeout;
        if self.quota_paused() {
            return Err(FallbackReason::QuotaExhausted);
        }
        if let Some(budget) = self.config.monthly_token_budget {
            let used = self.budget_status().used;
            if used >= budget {
                return Err(FallbackReason::BudgetSpent { used, budget });
            }
        }
        let body = serde_json::to_vec(&build_body(&self.config, prompt, &render(prompt, context)))
            .expect("a JSON value serialises");
        let mut retry = 0u32;
        loop {
            out.attempts += 1;
            let remaining = deadline.saturating_duration_since(Instant::now());
            if remaining.is_zero() {
                return Err(FallbackReason::Timeout);
            }
            let attempt = tokio::time::timeout(remaining, self.attempt(prompt, &body, retry, out)).await;
            let Ok(attempt) = attempt else { return Err(FallbackReason::Timeout) };
            match attempt {
                Attempt::Done(result) => return result,
                Attempt::Retry { wait, reason } => {
                    if retry >= self.config.max_retries {
                        return Err(reason);
                    }
                    let wait = wait.unwrap_or_else(|| backoff(retry));
                    if Instant::now() + wait >= deadline {
                        return Err(match reason {
                            FallbackReason::RateLimited { .. } => {
                                FallbackReason::RateLimited { retry_after: Some(wait) }
                            }
                            other => other,
                        });
                    }
                    tokio::time::sleep(wait).await;
                    retry += 1;
                }
            }
        }
    }

    async fn attempt(&self, prompt: &PromptSpec, body: &[u8], retry: u32, out: &mut Generated) -> Attempt {
        let mut request = self
            .http
            .post(&self.endpoint)
            .header(AUTHORIZATION, format!("Bearer {}", self.config.api_key.trim()))
            .header(CONTENT_TYPE, "application/json")
            .body(body.to_vec());
        if retry > 0 {
            request = request.header("x-stainless-retry-count", retry.to_string());
        }
        let response = match request.send().await {
            Ok(r) => r,
            Err(e) if e.is_timeout() => return Attempt::Done(Err(FallbackReason::Timeout)),
            // Only the kind of failure, never the request (its URL is harmless but its headers are not).
            Err(e) => {
                return Attempt::Retry { wait: None, reason: FallbackReason::Transport(transport_kind(&e)) };
            }
        };
        let status = response.status().as_u16();
        let headers = response.headers().clone();
        if let Some(id) = headers.get("x-request-id").and_then(|v| v.to_str().ok()) {
            out.request_id = Some(id.chars().take(128).collect());
        }
        let bytes = match response.bytes().await {
            Ok(b) => b,
            Err(e) => {
                return Attempt::Retry { wait: None, reason: FallbackReason::Transport(transport_kind(&e)) };
            }
        };
        if status == 200 {
            let Ok(answer) = serde_json::from_slice::<Value>(&bytes) else {
                self.count(out, body.len() / 4 + bytes.len() / 4);
                return Attempt::Done(Err(FallbackReason::Invalid(ValidationError::NotACompletion(
                    "the body is not JSON".into(),
                ))));
            };
            let tokens = match usage(&answer) {
                Some(u) => u.total_tokens,
                None => (body.len() / 4 + bytes.len() / 4) as u64,
            };
            self.count(out, tokens as usize);
            return Attempt::Done(parse_answer(prompt, &answer).map_err(FallbackReason::Invalid));
        }
        let (error_type, message) = error_of(&bytes);
        if status == 429 && error_type.as_deref() == Some("insufficient_quota") {
            *self.paused_until.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now() + QUOTA_PAUSE);
            return Attempt::Done(Err(FallbackReason::QuotaExhausted));
        }
        let reason = if status == 429 {
            FallbackReason::RateLimited { retry_after: None }
        } else {
            FallbackReason::Http { status, error_type, message }
        };
        let should_retry = match headers.get("x-should-retry").and_then(|v| v.to_str().ok()) {
            Some("true") => true,
            Some("false") => false,
            _ => matches!(status, 408 | 409 | 429) || status >= 500,
        };
        if !should_retry {
            return Attempt::Done(Err(reason));
        }
        match retry_wait(&headers) {
            RetryWait::TooLong(d) => Attempt::Done(Err(match reason {
                FallbackReason::RateLimited { .. } => FallbackReason::RateLimited { retry_after: Some(d) },
                other => other,
            })),
            RetryWait::After(d) => Attempt::Retry { wait: Some(d), reason },
            RetryWait::Backoff => Attempt::Retry { wait: None, reason },
        }
    }

    fn count(&self, out: &mut Generated, tokens: usize) {
        let tokens = tokens as u64;
        out.tokens += tokens;
        self.add_tokens(tokens);
    }
}

fn transport_kind(e: &reqwest::Error) -> String {
    if e.is_connect() {
        "could not connect".into()
    } else if e.is_body() || e.is_decode() {
        "the answer's body broke off".into()
    } else {
        "the request failed".into()
    }
}

/// `error.type` and `error.message` of an error body (OpenAI, Ollama, llama.cpp and vLLM shapes; `code`
/// may be a string, an integer or null and is not needed).
fn error_of(bytes: &[u8]) -> (Option<String>, String) {
    let v: Value = serde_json::from_slice(bytes).unwrap_or(Value::Null);
    let e = &v["error"];
    let error_type = e["type"].as_str().map(str::to_string);
    let message =
        e["message"].as_str().or_else(|| v["error"].as_str()).unwrap_or("").chars().take(300).collect();
    (error_type, message)
}

#[derive(Debug, PartialEq, Eq)]
enum RetryWait {
    After(Duration),
    TooLong(Duration),
    Backoff,
}

/// The wait a retryable answer asks for: `retry-after-ms`, else `retry-after` (seconds or an HTTP date),
/// honoured when over 0 and at most 120 s (more means no retry); else the reset of an exhausted
/// `x-ratelimit-*` budget; else the caller's backoff.
fn retry_wait(headers: &HeaderMap) -> RetryWait {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::trim);
    let asked = text("retry-after-ms")
        .and_then(|v| v.parse::<f64>().ok())
        .filter(|ms| ms.is_finite() && *ms > 0.0)
        .map(|ms| Duration::from_secs_f64(ms / 1000.0))
        .or_else(|| text("retry-after").and_then(parse_retry_after));
    if let Some(d) = asked {
        return if d > MAX_RETRY_AFTER { RetryWait::TooLong(d) } else { RetryWait::After(d) };
    }
    let reset = [
        ("x-ratelimit-remaining-requests", "x-ratelimit-reset-requests"),
        ("x-ratelimit-remaining-tokens", "x-ratelimit-reset-tokens"),
    ]
    .iter()
    .filter(|(remaining, _)| text(remaining) == Some("0"))
    .filter_map(|(_, reset)| text(reset).and_then(parse_duration))
    .max();
    match reset {
        Some(d) if d > MAX_RETRY_AFTER => RetryWait::TooLong(d),
        Some(d) if !d.is_zero() => RetryWait::After(d),
        _ => RetryWait::Backoff,
    }
}

fn parse_retry_after(v: &str) -> Option<Duration> {
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs > 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = OffsetDateTime::parse(v, &time::format_description::well_known::Rfc2822).ok()?;
    let secs = (at - OffsetDateTime::now_utc()).as_seconds_f64();
    (secs > 0.0).then(|| Duration::from_secs_f64(secs))
}

/// `min(0.5 · 2^n, 8) s`, less up to a quarter at random.
fn backoff(retry: u32) -> Duration {
    let base = (0.5 * 2f64.powi(retry.min(8) as i32)).min(8.0);
    let nanos =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.subsec_nanos());
    let jitter = 1.0 - 0.25 * (f64::from(nanos % 1000) / 1000.0);
    Duration::from_secs_f64(base * jitter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn retry_waits_follow_the_contract() {
        assert_eq!(
            retry_wait(&headers(&[("retry-after-ms", "1500"), ("retry-after", "9")])),
            RetryWait::After(Duration::from_millis(1500))
        );
        assert_eq!(retry_wait(&headers(&[("retry-after", "2")])), RetryWait::After(Duration::from_secs(2)));
        assert_eq!(
            retry_wait(&headers(&[("retry-after", "300")])),
            RetryWait::TooLong(Duration::from_secs(300))
        );
        assert_eq!(retry_wait(&headers(&[("retry-after", "0")])), RetryWait::Backoff);
        assert_eq!(
            retry_wait(&headers(&[
                ("x-ratelimit-remaining-requests", "0"),
                ("x-ratelimit-reset-requests", "1s"),
                ("x-ratelimit-remaining-tokens", "10"),
                ("x-ratelimit-reset-tokens", "6m0s")
            ])),
            RetryWait::After(Duration::from_secs(1))
        );
        assert_eq!(retry_wait(&headers(&[])), RetryWait::Backoff);
        let date = (OffsetDateTime::now_utc() + time::Duration::seconds(30))
            .format(&time::format_description::well_known::Rfc2822)
            .unwrap();
        match retry_wait(&headers(&[("retry-after", &date)])) {
            RetryWait::After(d) => {
                assert!(d > Duration::from_secs(28) && d <= Duration::from_secs(30), "{d:?}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn backoff_is_capped_and_jittered_down() {
        for n in 0..12 {
            let d = backoff(n).as_secs_f64();
            let base = (0.5 * 2f64.powi(n.min(8) as i32)).min(8.0);
            assert!(d <= base && d >= base * 0.75, "{n}: {d}");
        }
    }

    #[test]
    fn error_bodies_of_every_server_shape_read() {
        assert_eq!(
            error_of(br#"{"error":{"message":"m","type":"t","param":null,"code":"c"}}"#),
            (Some("t".into()), "m".into())
        );
        assert_eq!(
            error_of(br#"{"error":{"code":503,"message":"Loading model","type":"unavailable_error"}}"#).1,
            "Loading model"
        );
        assert_eq!(
            error_of(br#"{"error":{"message":"x","type":"t","param":null,"code":null}}"#).0.as_deref(),
            Some("t")
        );
        assert_eq!(error_of(b"<html>"), (None, String::new()));
    }
}
