//! Yotpo's pull API: the confirmation read behind a review webhook.
//!
//! - `POST /oauth/token` (form `client_id=<app_key>&client_secret=<secret>&grant_type=client_credentials`)
//!   gives the `access_token` ("utoken"). It is cached and renewed before its 14 days are up; a 401 on a
//!   read drops it and authenticates again once, and a second 401 is a failure, not a loop.
//! - `GET /v1/apps/{app_key}/reviews?utoken=…&since_updated_at=<iso>&count=100&page=N&deleted=true`,
//!   page by page until the review (by id) is found or a page comes back short. The window starts at the
//!   notification's `updated_at` (the job's `carry`) minus a lookback, or a default window back from now.
//!   The pull API has no single-review read in the documented contract, hence the listing.
//! - The review found is stored on its own (one element of `reviews`); not found in the window is gone.
//! - 429 is retried after `Retry-After` (or a backoff); a 5xx or a timeout backs off; other 4xx fail.
//!
//! The secret and the token are never logged; the token travels in the query because that is where the
//! API takes it, so request URLs are never put into an outcome.

use crate::{FetchJob, FetchOutcome, Fetcher};
use serde_json::Value;
use std::sync::Mutex;
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::time::Instant;

/// Yotpo's API host.
pub const DEFAULT_API_BASE: &str = "https://api.yotpo.com";
/// The most reviews a page may ask for.
pub const MAX_COUNT: u32 = 100;

/// One app key's API access.
#[derive(Clone)]
pub struct YotpoFetchConfig {
    pub app_key: String,
    /// The API client secret; never logged.
    pub secret: String,
    pub api_base: String,
    pub timeout: Duration,
    /// How far before the notification's `updated_at` the listing starts.
    pub lookback: Duration,
    /// The listing window when the job carries no `updated_at`.
    pub default_window: Duration,
    /// How long a token is used before it is renewed (Yotpo's expire after 14 days).
    pub token_lifetime: Duration,
    /// The most pages read for one job.
    pub max_pages: u32,
    pub base_backoff: Duration,
    pub max_backoff: Duration,
}

impl YotpoFetchConfig {
    pub fn new(app_key: impl Into<String>, secret: impl Into<String>) -> Self {
        YotpoFetchConfig {
            app_key: app_key.into(),
            secret: secret.into(),
            api_base: DEFAULT_API_BASE.into(),
            timeout: Duration::from_secs(10),
            lookback: Duration::from_secs(3600),
            default_window: Duration::from_secs(7 * 86_400),
            token_lifetime: Duration::from_secs(13 * 86_400),
            max_pages: 50,
            base_backoff: Duration::from_secs(1),
            max_backoff: Duration::from_secs(300),
        }
    }

    pub fn api_base(mut self, base: impl Into<String>) -> Self {
        self.api_base = base.into();
        self
    }
}

impl std::fmt::Debug for YotpoFetchConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YotpoFetchConfig")
            .field("app_key", &self.app_key)
            .field("secret", &"[redacted]")
            .field("api_base", &self.api_base)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    token: Option<(String, Instant)>,
    failures: u32,
}

/// Reads one app key's reviews.
pub struct YotpoFetcher {
    cfg: YotpoFetchConfig,
    client: reqwest::Client,
    state: Mutex<State>,
}

impl std::fmt::Debug for YotpoFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YotpoFetcher").field("cfg", &self.cfg).finish_non_exhaustive()
    }
}

/// Percent-encodes a form or query value.
pub fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The listing's path and query for one page (the token appended by the caller).
pub fn page_query(app_key: &str, since: OffsetDateTime, page: u32) -> String {
    let since = since.replace_nanosecond(0).unwrap_or(since).format(&Rfc3339).unwrap_or_default();
    format!(
        "/v1/apps/{}/reviews?since_updated_at={}&count={MAX_COUNT}&page={page}&deleted=true",
        encode(app_key),
        encode(&since)
    )
}

enum Step {
    Page(Vec<Value>),
    Unauthorized,
    Outcome(FetchOutcome),
}

impl YotpoFetcher {
    pub fn new(cfg: YotpoFetchConfig) -> Result<Self, String> {
        let client = crate::http_client("yotpo", cfg.timeout)?;
        Ok(Self { cfg, client, state: Mutex::new(State::default()) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn base(&self) -> &str {
        self.cfg.api_base.trim_end_matches('/')
    }

    fn backoff(&self) -> Duration {
        let mut s = self.lock();
        s.failures = s.failures.saturating_add(1);
        let factor = 1u32 << (s.failures - 1).min(16);
        self.cfg.base_backoff.saturating_mul(factor).min(self.cfg.max_backoff)
    }

    fn retry_after(&self, h: &reqwest::header::HeaderMap) -> Duration {
        h.get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Duration::from_secs)
            .map_or_else(|| self.backoff(), |d| d.max(self.cfg.base_backoff))
    }

    /// The cached token, or a new one.
    async fn token(&self) -> Result<String, FetchOutcome> {
        if let Some((t, at)) = self.lock().token.clone()
            && at.elapsed() < self.cfg.token_lifetime
        {
            return Ok(t);
        }
        let form = format!(
            "client_id={}&client_secret={}&grant_type=client_credentials",
            encode(&self.cfg.app_key),
            encode(&self.cfg.secret)
        );
        let sent = self
            .client
            .post(format!("{}/oauth/token", self.base()))
            .header("content-type", "application/x-www-form-urlencoded")
            .header("accept", "application/json")
            .body(form)
            .send()
            .await;
        let resp = match sent {
            Ok(r) => r,
            Err(e) => {
                let kind = if e.is_timeout() { "timed out" } else { "failed" };
                return Err(FetchOutcome::Retry {
                    after: self.backoff(),
                    reason: format!("POST /oauth/token {kind}"),
                });
            }
        };
        let status = resp.status().as_u16();
        let after = self.retry_after(resp.headers());
        let body = resp.bytes().await.unwrap_or_default();
        match status {
            200 => {
                let token = serde_json::from_slice::<Value>(&body)
                    .ok()
                    .and_then(|v| v.get("access_token").and_then(Value::as_str).map(str::to_string))
                    .filter(|t| !t.is_empty());
                match token {
                    Some(t) => {
                        self.lock().token = Some((t.clone(), Instant::now()));
                        Ok(t)
                    }
                    None => Err(FetchOutcome::Failed(
                        "POST /oauth/token answered 200 without an access_token".into(),
                    )),
                }
            }
            429 => Err(FetchOutcome::Retry { after, reason: "POST /oauth/token answered 429".into() }),
            s if s >= 500 => Err(FetchOutcome::Retry {
                after: self.backoff(),
                reason: format!("POST /oauth/token answered {s}"),
            }),
            s => Err(FetchOutcome::Failed(format!(
                "POST /oauth/token answered {s}: the app key or secret was refused"
            ))),
        }
    }

    async fn page(&self, token: &str, since: OffsetDateTime, page: u32) -> Step {
        let path = page_query(&self.cfg.app_key, since, page);
        let url = format!("{}{path}&utoken={}", self.base(), encode(token));
        let what = format!("GET /v1/apps/{{app_key}}/reviews page {page}");
        let resp = match self.client.get(url).header("accept", "application/json").send().await {
            Ok(r) => r,
            Err(e) => {
                let kind = if e.is_timeout() { "timed out" } else { "failed" };
                return Step::Outcome(FetchOutcome::Retry {
                    after: self.backoff(),
                    reason: format!("{what} {kind}"),
                });
            }
        };
        let status = resp.status().as_u16();
        let after = self.retry_after(resp.headers());
        let body = match resp.bytes().await {
            Ok(b) => b,
            Err(_) => {
                return Step::Outcome(FetchOutcome::Retry {
                    after: self.backoff(),
                    reason: format!("{what} lost the answer"),
                });
            }
        };
        match status {
            200 => {
                let reviews = serde_json::from_slice::<Value>(&body).ok().and_then(|v| {
                    // `{"reviews": […]}`, or the same under `response` as some answers wrap it.
                    let list = v.get("reviews").or_else(|| v.get("response").and_then(|r| r.get("reviews")));
                    list.and_then(Value::as_array).cloned()
                });
                match reviews {
                    Some(r) => {
                        self.lock().failures = 0;
                        Step::Page(r)
                    }
                    None => Step::Outcome(FetchOutcome::Failed(format!(
                        "{what} answered 200 without a `reviews` list"
                    ))),
                }
            }
            401 => Step::Unauthorized,
            429 => Step::Outcome(FetchOutcome::Retry { after, reason: format!("{what} answered 429") }),
            s if s >= 500 => Step::Outcome(FetchOutcome::Retry {
                after: self.backoff(),
                reason: format!("{what} answered {s}"),
            }),
            s => Step::Outcome(FetchOutcome::Failed(format!("{what} answered {s}"))),
        }
    }

    fn since(&self, job: &FetchJob) -> OffsetDateTime {
        let hinted = job.carry.as_deref().and_then(|c| OffsetDateTime::parse(c.trim(), &Rfc3339).ok());
        match hinted {
            Some(t) => t - self.cfg.lookback,
            None => OffsetDateTime::now_utc() - self.cfg.default_window,
        }
    }
}

fn same_id(v: &Value, id: &str) -> bool {
    match v.get("id") {
        Some(Value::Number(n)) => n.to_string() == id,
        Some(Value::String(s)) => s.trim() == id,
        _ => false,
    }
}

#[async_trait::async_trait]
impl Fetcher for YotpoFetcher {
    fn source(&self) -> &'static str {
        "yotpo"
    }

    async fn fetch(&self, job: &FetchJob) -> FetchOutcome {
        if job.resource != "review" {
            return FetchOutcome::Failed(format!("unknown yotpo resource `{}`", job.resource));
        }
        if job.shop.as_deref().is_some_and(|s| s != self.cfg.app_key) {
            return FetchOutcome::Failed("the job is for another Yotpo app key".into());
        }
        let id = job.id.as_str();
        if id.is_empty() || id.len() > 20 || !id.bytes().all(|b| b.is_ascii_digit()) {
            return FetchOutcome::Failed(format!(
                "`{}` is not a Yotpo review id",
                id.chars().take(40).collect::<String>()
            ));
        }
        let since = self.since(job);
        let mut token = match self.token().await {
            Ok(t) => t,
            Err(o) => return o,
        };
        let mut reauthenticated = false;
        let mut page = 1;
        while page <= self.cfg.max_pages {
            match self.page(&token, since, page).await {
                Step::Page(reviews) => {
                    if let Some(r) = reviews.iter().find(|r| same_id(r, id)) {
                        return FetchOutcome::Fetched(serde_json::to_vec(r).unwrap_or_default());
                    }
                    if reviews.len() < MAX_COUNT as usize {
                        return FetchOutcome::Gone(format!(
                            "review {id} is not in the pull API's listing since {} ({})",
                            since.format(&Rfc3339).unwrap_or_default(),
                            job.notified_topic
                        ));
                    }
                    page += 1;
                }
                Step::Unauthorized if !reauthenticated => {
                    reauthenticated = true;
                    self.lock().token = None;
                    token = match self.token().await {
                        Ok(t) => t,
                        Err(o) => return o,
                    };
                }
                Step::Unauthorized => {
                    self.lock().token = None;
                    return FetchOutcome::Failed(
                        "the reviews listing answered 401 with a fresh token".into(),
                    );
                }
                Step::Outcome(o) => return o,
            }
        }
        FetchOutcome::Gone(format!("review {id} not found in {} pages of the listing", self.cfg.max_pages))
    }
}
