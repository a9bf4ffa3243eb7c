//! Smile.io's REST API: `GET /v1/customers/{id}` (Bearer), the confirmation read behind `customer/updated`.
//!
//! Smile.io allows 10 requests per second per token and answers 429 for the rest of that second. The
//! fetcher keeps under it on its own side: a sliding window of the last `max_per_second` send times, so no
//! span of 1 s (plus a margin for network jitter, 100 ms by default) ever holds more. A 429 anyway (another client on the same token) blocks every request of
//! this fetcher for at least one second (or `Retry-After`, if longer) and retries the job after that.
//! 404 is a normal end (the customer is gone); 401/403 and other 4xx fail; 5xx and timeouts back off.
//! The API key is sent only in its header and appears in no outcome or log line.

use crate::{FetchJob, FetchOutcome, Fetcher};
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// Smile.io's API host.
pub const DEFAULT_API_BASE: &str = "https://api.smile.io";
/// Smile.io's documented limit per token.
pub const MAX_PER_SECOND: usize = 10;
/// The least wait after a 429.
pub const MIN_429_BACKOFF: Duration = Duration::from_secs(1);

/// One account's API access.
#[derive(Clone)]
pub struct SmileFetchConfig {
    /// The API key (`api_…`) or app token (`oa2_…`); never logged.
    pub api_key: String,
    pub api_base: String,
    pub timeout: Duration,
    /// Requests per any 1-second span (at most [`MAX_PER_SECOND`]).
    pub max_per_second: usize,
    /// Added to the 1-second span, so a request that took longer on the wire than the one sent a second
    /// earlier still lands in Smile.io's next second.
    pub margin: Duration,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl SmileFetchConfig {
    pub fn new(api_key: impl Into<String>) -> Self {
        SmileFetchConfig {
            api_key: api_key.into(),
            api_base: DEFAULT_API_BASE.into(),
            timeout: Duration::from_secs(10),
            max_per_second: MAX_PER_SECOND,
            margin: Duration::from_millis(100),
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
        }
    }

    pub fn api_base(mut self, base: impl Into<String>) -> Self {
        self.api_base = base.into();
        self
    }
}

impl std::fmt::Debug for SmileFetchConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmileFetchConfig")
            .field("api_key", &"[redacted]")
            .field("api_base", &self.api_base)
            .field("max_per_second", &self.max_per_second)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Limiter {
    /// When the last requests were sent, oldest first (at most `max_per_second`).
    sent: VecDeque<Instant>,
    /// No request before this (after a 429).
    blocked_until: Option<Instant>,
    failures: u32,
}

/// Reads one Smile.io account's customers.
pub struct SmileFetcher {
    cfg: SmileFetchConfig,
    client: reqwest::Client,
    limiter: Mutex<Limiter>,
}

impl std::fmt::Debug for SmileFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmileFetcher").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

impl SmileFetcher {
    pub fn new(mut cfg: SmileFetchConfig) -> Result<Self, String> {
        cfg.max_per_second = cfg.max_per_second.clamp(1, MAX_PER_SECOND);
        let client = crate::http_client("smile", cfg.timeout)?;
        Ok(Self { cfg, client, limiter: Mutex::new(Limiter::default()) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Limiter> {
        self.limiter.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for a slot: no more than `max_per_second` sends in any 1-second span, none while blocked.
    async fn acquire(&self) {
        let second = Duration::from_secs(1) + self.cfg.margin;
        loop {
            let wait = {
                let mut l = self.lock();
                let now = Instant::now();
                match l.blocked_until {
                    Some(until) if until > now => Some(until - now),
                    _ => {
                        while l.sent.front().is_some_and(|t| now.duration_since(*t) >= second) {
                            l.sent.pop_front();
                        }
                        if l.sent.len() < self.cfg.max_per_second {
                            l.sent.push_back(now);
                            None
                        } else {
                            l.sent.front().map(|t| second.saturating_sub(now.duration_since(*t)))
                        }
                    }
                }
            };
            match wait {
                Some(d) => tokio::time::sleep(d.max(Duration::from_millis(1))).await,
                None => return,
            }
        }
    }

    fn backoff(&self) -> Duration {
        let mut l = self.lock();
        l.failures = l.failures.saturating_add(1);
        let factor = 1u32 << (l.failures - 1).min(16);
        self.cfg.base_backoff.saturating_mul(factor).min(self.cfg.max_backoff)
    }
}

#[async_trait::async_trait]
impl Fetcher for SmileFetcher {
    fn source(&self) -> &'static str {
        "smile"
    }

    async fn fetch(&self, job: &FetchJob) -> FetchOutcome {
        if job.resource != "customer" {
            return FetchOutcome::Failed(format!("unknown smile resource `{}`", job.resource));
        }
        let id = job.id.as_str();
        if id.is_empty() || id.len() > 20 || !id.bytes().all(|b| b.is_ascii_digit()) {
            return FetchOutcome::Failed(format!(
                "`{}` is not a Smile.io customer id",
                id.chars().take(40).collect::<String>()
            ));
        }
        self.acquire().await;
        let what = "GET /v1/customers/{id}";
        let url = format!("{}/v1/customers/{id}", self.cfg.api_base.trim_end_matches('/'));
        let sent = self
            .client
            .get(url)
            .bearer_auth(&self.cfg.api_key)
            .header("accept", "application/json")
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                let kind = if e.is_timeout() { "timed out" } else { "failed" };
                return FetchOutcome::Retry { after: self.backoff(), reason: format!("{what} {kind}") };
            }
        };
        let status = resp.status().as_u16();
        let retry_after = resp
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(_) => {
                return FetchOutcome::Retry {
                    after: self.backoff(),
                    reason: format!("{what} lost the answer"),
                };
            }
        };
        match status {
            200 => match serde_json::from_slice::<serde_json::Value>(&body) {
                Ok(v) if v.get("customer").is_some_and(serde_json::Value::is_object) => {
                    self.lock().failures = 0;
                    FetchOutcome::Fetched(body.to_vec())
                }
                _ => FetchOutcome::Failed(format!("{what} answered 200 without a `customer` object")),
            },
            404 => FetchOutcome::Gone(format!("{what} answered 404 ({})", job.notified_topic)),
            429 => {
                let after = retry_after.unwrap_or(MIN_429_BACKOFF).max(MIN_429_BACKOFF);
                self.lock().blocked_until = Some(Instant::now() + after);
                FetchOutcome::Retry {
                    after,
                    reason: format!("{what} answered 429; waiting {} ms", after.as_millis()),
                }
            }
            401 | 403 => FetchOutcome::Failed(format!("{what} answered {status}: the API key was refused")),
            s if s >= 500 => {
                FetchOutcome::Retry { after: self.backoff(), reason: format!("{what} answered {s}") }
            }
            s => FetchOutcome::Failed(format!("{what} answered {s}")),
        }
    }
}
