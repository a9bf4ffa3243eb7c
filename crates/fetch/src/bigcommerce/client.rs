//! The BigCommerce reads over HTTP.
//!
//! Rate limits: every answer carries `X-Rate-Limit-Requests-Left` and `X-Rate-Limit-Time-Reset-Ms`; when
//! the requests left reach 0 the next request waits out the reset, so the fetcher causes no 429 it could
//! have avoided. A 429 is a retry after its reset (or, without those headers, which signals load on
//! BigCommerce's side, after an exponential backoff); a 5xx or a timeout likewise backs off; 404 means the
//! resource is gone; 401/403, other 4xx and a 200 that is not JSON are failures. The token is sent only
//! in its header and appears in no outcome, error or log line.

use crate::bigcommerce::config::BigCommerceFetchConfig;
use crate::bigcommerce::request::{combine, reads};
use crate::{FetchJob, FetchOutcome, Fetcher};
use serde_json::Value;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

#[derive(Debug, Default)]
struct Window {
    /// Requests left in the current window, as last reported and counted down since.
    left: Option<u32>,
    /// When the current window resets.
    reset_at: Option<Instant>,
    /// Retries in a row (5xx, timeouts, bare 429s), for the backoff.
    failures: u32,
}

/// Reads one store's resources.
pub struct BigCommerceFetcher {
    cfg: BigCommerceFetchConfig,
    client: reqwest::Client,
    window: Mutex<Window>,
}

impl std::fmt::Debug for BigCommerceFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BigCommerceFetcher").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

enum Attempt {
    Ok(Value),
    Outcome(FetchOutcome),
}

impl BigCommerceFetcher {
    pub fn new(cfg: BigCommerceFetchConfig) -> Result<Self, String> {
        let client = crate::http_client("bigcommerce", cfg.timeout)?;
        Ok(Self { cfg, client, window: Mutex::new(Window::default()) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Window> {
        self.window.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until a request may go without being answered 429, and takes its slot.
    async fn acquire(&self) {
        loop {
            let wait = {
                let mut w = self.lock();
                let now = Instant::now();
                match (w.left, w.reset_at) {
                    (Some(0), Some(reset)) if reset > now => Some(reset - now),
                    (Some(0), _) => {
                        w.left = None;
                        None
                    }
                    (Some(n), _) => {
                        w.left = Some(n - 1);
                        None
                    }
                    (None, _) => None,
                }
            };
            match wait {
                Some(d) => tokio::time::sleep(d).await,
                None => return,
            }
        }
    }

    fn backoff(&self) -> Duration {
        let mut w = self.lock();
        w.failures = w.failures.saturating_add(1);
        let factor = 1u32 << (w.failures - 1).min(16);
        self.cfg.base_backoff.saturating_mul(factor).min(self.cfg.max_backoff)
    }

    fn note_rate_headers(&self, h: &reqwest::header::HeaderMap) -> Option<Duration> {
        let num =
            |name: &str| h.get(name).and_then(|v| v.to_str().ok()).and_then(|s| s.trim().parse::<u64>().ok());
        let left = num("x-rate-limit-requests-left");
        let reset = num("x-rate-limit-time-reset-ms").map(Duration::from_millis);
        let mut w = self.lock();
        if let Some(l) = left {
            w.left = Some(u32::try_from(l).unwrap_or(u32::MAX));
        }
        if let Some(r) = reset {
            w.reset_at = Some(Instant::now() + r);
        }
        reset
    }

    async fn get(&self, job: &FetchJob, path: &str) -> Attempt {
        self.acquire().await;
        let url = format!("{}{path}", self.cfg.store_url());
        let what = format!("GET {}", path.split('?').next().unwrap_or(path));
        let sent = self
            .client
            .get(&url)
            .header("x-auth-token", &self.cfg.access_token)
            .header("accept", "application/json")
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                let kind = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "could not connect"
                } else {
                    "failed"
                };
                return Attempt::Outcome(FetchOutcome::Retry {
                    after: self.backoff(),
                    reason: format!("{what} {kind}"),
                });
            }
        };
        let status = resp.status().as_u16();
        let reset = self.note_rate_headers(resp.headers());
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(e) => {
                let kind = if e.is_timeout() { "timed out reading the answer" } else { "lost the answer" };
                return Attempt::Outcome(FetchOutcome::Retry {
                    after: self.backoff(),
                    reason: format!("{what} {kind}"),
                });
            }
        };
        let outcome = match status {
            200 => match serde_json::from_slice::<Value>(&body) {
                Ok(v @ (Value::Object(_) | Value::Array(_))) => {
                    self.lock().failures = 0;
                    return Attempt::Ok(v);
                }
                _ => FetchOutcome::Failed(format!(
                    "{what} answered 200 with a body that is not the API's JSON"
                )),
            },
            404 => FetchOutcome::Gone(format!("{what} answered 404 ({})", job.notified_topic)),
            429 => match reset {
                Some(after) => FetchOutcome::Retry {
                    after,
                    reason: format!("{what} answered 429; window resets in {} ms", after.as_millis()),
                },
                None => FetchOutcome::Retry {
                    after: self.backoff(),
                    reason: format!("{what} answered 429 without rate-limit headers (platform load)"),
                },
            },
            401 | 403 => {
                FetchOutcome::Failed(format!("{what} answered {status}: the access token was refused"))
            }
            s if s >= 500 => {
                FetchOutcome::Retry { after: self.backoff(), reason: format!("{what} answered {s}") }
            }
            s => FetchOutcome::Failed(format!("{what} answered {s}")),
        };
        Attempt::Outcome(outcome)
    }
}

#[async_trait::async_trait]
impl Fetcher for BigCommerceFetcher {
    fn source(&self) -> &'static str {
        "bigcommerce"
    }

    async fn fetch(&self, job: &FetchJob) -> FetchOutcome {
        let plan = match reads(&self.cfg.store_hash, job) {
            Ok(p) => p,
            Err(e) => return FetchOutcome::Failed(e),
        };
        let mut answers = Vec::with_capacity(plan.len());
        for read in plan {
            match self.get(job, &read.path).await {
                Attempt::Ok(v) => answers.push((read.key, v)),
                Attempt::Outcome(o) => return o,
            }
        }
        match combine(job, answers) {
            Ok(body) => FetchOutcome::Fetched(body),
            Err(gone) => FetchOutcome::Gone(gone),
        }
    }
}
