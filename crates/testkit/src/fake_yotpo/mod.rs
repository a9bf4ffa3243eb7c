//! A fake Yotpo: the OAuth token and the reviews listing of the pull API, and a sender that delivers
//! review webhooks to a URL-token intake.
//!
//! The API ([`FakeYotpo`]) enforces what the real one does and nudge relies on:
//! - `POST /oauth/token` takes the form `client_id=<app_key>&client_secret=<secret>&grant_type=
//!   client_credentials` (anything else 401) and answers a new `access_token`;
//! - a token expires `token_ttl` after it was issued (Yotpo: 14 days), after which a read answers 401;
//! - `GET /v1/apps/{app_key}/reviews` needs a live `utoken` (401), `count` ≤ 100 (400), a known app key
//!   (404); it lists the seeded reviews updated at or after `since_updated_at`, oldest first, `count` per
//!   `page` (1-based), leaving deleted reviews out unless `deleted=true`;
//! - more than `rate_limit` requests in a rolling `rate_window` are answered 429 with `Retry-After`.
//!
//! [`YotpoSender`] posts `{"event": …, "data": …}` to `<intake>?token=<url_token>` with a
//! `WebhookMessageId` header, as Yotpo's webhooks arrive.

pub mod sender;

use crate::TestkitError;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};
use std::collections::{HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::net::TcpListener;
use tokio::time::Instant;

pub use sender::{YotpoSender, YotpoWebhook};

/// How the fake is set up.
#[derive(Debug, Clone)]
pub struct FakeYotpoConfig {
    pub app_key: String,
    pub secret: String,
    /// How long an issued token is valid.
    pub token_ttl: Duration,
    /// Requests allowed per `rate_window` (Yotpo: 5,000 per minute per app key).
    pub rate_limit: u32,
    pub rate_window: Duration,
}

impl Default for FakeYotpoConfig {
    fn default() -> Self {
        FakeYotpoConfig {
            app_key: "yotpo-app-key-1".into(),
            secret: "fake-yotpo-secret".into(),
            token_ttl: Duration::from_secs(14 * 86_400),
            rate_limit: 5_000,
            rate_window: Duration::from_secs(60),
        }
    }
}

/// One request as received (no secret or token recorded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct YotpoRequest {
    pub method: String,
    /// The path, and the query without `utoken`.
    pub target: String,
    pub status: u16,
    pub at: Instant,
}

#[derive(Default)]
struct FakeState {
    reviews: Vec<Value>,
    tokens: HashMap<String, Instant>,
    issued: u32,
    requests: Vec<YotpoRequest>,
    recent: VecDeque<Instant>,
    throttle_next: u32,
}

struct Shared {
    config: FakeYotpoConfig,
    state: Mutex<FakeState>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct FakeYotpo;

impl FakeYotpo {
    /// Starts the fake on an ephemeral port of 127.0.0.1.
    pub async fn start(config: FakeYotpoConfig) -> Result<FakeYotpoHandle, TestkitError> {
        let shared = Arc::new(Shared { config, state: Mutex::new(FakeState::default()) });
        let state = shared.clone();
        let server = crate::server::Running::start(|listener, stop| run(listener, state, stop)).await?;
        Ok(FakeYotpoHandle { server, shared })
    }

    /// Serves on `listener` until `shutdown`; for `nudge dev fake --kind yotpo`. `reviews` are seeded
    /// (pull-API shape) before the first request.
    pub async fn serve(
        listener: TcpListener,
        config: FakeYotpoConfig,
        reviews: Vec<Value>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), TestkitError> {
        let shared = Arc::new(Shared { config, state: Mutex::new(FakeState::default()) });
        shared.lock().reviews = reviews;
        run(listener, shared, shutdown).await
    }
}

async fn run(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), TestkitError> {
    let app = Router::new().fallback(handle).with_state(shared);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await.map_err(TestkitError::Serve)
}

/// A running fake.
pub struct FakeYotpoHandle {
    server: crate::server::Running,
    shared: Arc<Shared>,
}

impl FakeYotpoHandle {
    /// `http://127.0.0.1:<port>`: the fetcher's `api_base`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    pub fn config(&self) -> &FakeYotpoConfig {
        &self.shared.config
    }

    /// Adds or replaces (by `id`) a review in the pull-API shape.
    pub fn seed_review(&self, review: Value) {
        let mut s = self.shared.lock();
        let id = review.get("id").cloned();
        s.reviews.retain(|r| r.get("id") != id.as_ref());
        s.reviews.push(review);
    }

    /// Expires every token issued so far (as 14 days passing would).
    pub fn expire_tokens(&self) {
        let ttl = self.shared.config.token_ttl;
        for at in self.shared.lock().tokens.values_mut() {
            *at = Instant::now().checked_sub(ttl + Duration::from_secs(1)).unwrap_or(*at);
        }
    }

    /// Answers the next `n` listing requests 429.
    pub fn throttle_next(&self, n: u32) {
        self.shared.lock().throttle_next = n;
    }

    /// How many tokens were issued.
    pub fn tokens_issued(&self) -> u32 {
        self.shared.lock().issued
    }

    pub fn requests(&self) -> Vec<YotpoRequest> {
        self.shared.lock().requests.clone()
    }

    pub async fn shutdown(mut self) {
        self.server.shutdown().await;
    }
}

fn answer(status: u16, body: Value, retry_after: Option<u64>) -> Response {
    let mut b = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json");
    if let Some(s) = retry_after {
        b = b.header("retry-after", s.to_string());
    }
    b.body(Body::from(body.to_string())).unwrap_or_else(|_| Response::new(Body::empty()))
}

fn error(status: u16, message: &str) -> Value {
    json!({"status": {"code": status, "message": message}})
}

fn params(s: &str) -> HashMap<String, String> {
    s.split('&').filter_map(|p| p.split_once('=')).map(|(k, v)| (decode(k), decode(v))).collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'+' => out.push(b' '),
            b'%' if i + 3 <= b.len() => {
                match u8::from_str_radix(std::str::from_utf8(&b[i + 1..i + 3]).unwrap_or("zz"), 16) {
                    Ok(v) => {
                        out.push(v);
                        i += 2;
                    }
                    Err(_) => out.push(b'%'),
                }
            }
            c => out.push(c),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn date(v: &Value) -> Option<OffsetDateTime> {
    v.as_str().and_then(|s| OffsetDateTime::parse(s, &Rfc3339).ok())
}

async fn handle(State(shared): State<Arc<Shared>>, method: Method, uri: Uri, body: Bytes) -> Response {
    let query = uri.query().unwrap_or("");
    let (status, resp) = decide(&shared, &method, uri.path(), query, &body);
    let shown: Vec<&str> = query.split('&').filter(|p| !p.starts_with("utoken=")).collect();
    let target =
        if shown.is_empty() { uri.path().to_string() } else { format!("{}?{}", uri.path(), shown.join("&")) };
    shared.lock().requests.push(YotpoRequest {
        method: method.to_string(),
        target,
        status,
        at: Instant::now(),
    });
    resp
}

fn decide(shared: &Shared, method: &Method, path: &str, query: &str, body: &[u8]) -> (u16, Response) {
    let cfg = &shared.config;
    let mut s = shared.lock();
    let now = Instant::now();
    // The rate limit counts every request.
    while s.recent.front().is_some_and(|t| now.duration_since(*t) >= cfg.rate_window) {
        s.recent.pop_front();
    }
    if s.recent.len() as u32 >= cfg.rate_limit {
        return (429, answer(429, error(429, "Too Many Requests"), Some(cfg.rate_window.as_secs().max(1))));
    }
    s.recent.push_back(now);
    if path == "/oauth/token" {
        if method != Method::POST {
            return (405, answer(405, error(405, "Method Not Allowed"), None));
        }
        let form = params(&String::from_utf8_lossy(body));
        let ok = form.get("grant_type").map(String::as_str) == Some("client_credentials")
            && form.get("client_id") == Some(&cfg.app_key)
            && form.get("client_secret").is_some_and(|c| {
                crate::fake_webhook::verify::constant_time_eq(c.as_bytes(), cfg.secret.as_bytes())
            });
        if !ok {
            return (401, answer(401, json!({"error": "invalid_client"}), None));
        }
        s.issued += 1;
        let token = format!("yotpo-utoken-{}-{}", s.issued, uuid::Uuid::new_v4().simple());
        s.tokens.insert(token.clone(), now);
        return (200, answer(200, json!({"access_token": token, "token_type": "bearer"}), None));
    }
    let Some(rest) = path.strip_prefix("/v1/apps/") else {
        return (404, answer(404, error(404, "Not Found"), None));
    };
    let Some((app, "reviews")) = rest.split_once('/') else {
        return (404, answer(404, error(404, "Not Found"), None));
    };
    if method != Method::GET {
        return (405, answer(405, error(405, "Method Not Allowed"), None));
    }
    let q = params(query);
    let live = q
        .get("utoken")
        .and_then(|t| s.tokens.get(t))
        .is_some_and(|at| now.duration_since(*at) < cfg.token_ttl);
    if !live {
        return (401, answer(401, error(401, "Unauthorized: invalid or expired utoken"), None));
    }
    if app != cfg.app_key {
        return (404, answer(404, error(404, "App not found"), None));
    }
    if s.throttle_next > 0 {
        s.throttle_next -= 1;
        return (429, answer(429, error(429, "Too Many Requests"), Some(1)));
    }
    let count: usize = match q.get("count").map(|c| c.parse::<usize>()) {
        None => 10,
        Some(Ok(c)) if (1..=100).contains(&c) => c,
        Some(_) => return (400, answer(400, error(400, "count must be between 1 and 100"), None)),
    };
    let page: usize = q.get("page").and_then(|p| p.parse().ok()).filter(|p| *p >= 1).unwrap_or(1);
    let since = match q.get("since_updated_at") {
        Some(t) => match OffsetDateTime::parse(t, &Rfc3339) {
            Ok(t) => Some(t),
            Err(_) => return (400, answer(400, error(400, "since_updated_at is not a date"), None)),
        },
        None => None,
    };
    let with_deleted = q.get("deleted").map(String::as_str) == Some("true");
    let mut list: Vec<&Value> = s
        .reviews
        .iter()
        .filter(|r| with_deleted || !r.get("deleted").and_then(Value::as_bool).unwrap_or(false))
        .filter(|r| match (since, r.get("updated_at").and_then(date)) {
            (Some(since), Some(u)) => u >= since,
            (Some(_), None) => false,
            (None, _) => true,
        })
        .collect();
    list.sort_by_key(|r| r.get("updated_at").and_then(date));
    let reviews: Vec<Value> = list.into_iter().skip((page - 1) * count).take(count).cloned().collect();
    (200, answer(200, json!({"reviews": reviews}), None))
}
