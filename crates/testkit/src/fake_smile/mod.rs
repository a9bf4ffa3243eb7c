//! A fake Smile.io: `GET /v1/customers/{id}` with its rate limit, and a sender that delivers webhooks to a
//! URL-token intake.
//!
//! The API ([`FakeSmile`]) enforces: `Authorization: Bearer <api_key>` (401 otherwise); at most
//! `per_second` requests per token in a second, counted per 1-second window starting at the window's first
//! request, every further request of that window answered 429 (Smile.io: 10 per second, "then 429 for the
//! rest of that second"); 404 for a customer that was not seeded. Every request is recorded with its
//! arrival time, so tests can count requests per second.
//!
//! [`SmileSender`] posts `{"account_id", "topic", "data"}` to `<intake>?token=<url_token>`.

pub mod sender;

use crate::TestkitError;
use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::time::Instant;

pub use sender::SmileSender;

/// How the fake is set up.
#[derive(Debug, Clone)]
pub struct FakeSmileConfig {
    pub api_key: String,
    /// Requests per token per second before 429.
    pub per_second: u32,
}

impl Default for FakeSmileConfig {
    fn default() -> Self {
        FakeSmileConfig { api_key: "api_fake_smile_key".into(), per_second: 10 }
    }
}

/// One request as received (the key is never recorded).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmileRequest {
    pub path: String,
    pub status: u16,
    pub at: Instant,
}

#[derive(Default)]
struct FakeState {
    customers: HashMap<String, Value>,
    requests: Vec<SmileRequest>,
    window: Option<(Instant, u32)>,
}

struct Shared {
    config: FakeSmileConfig,
    state: Mutex<FakeState>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct FakeSmile;

impl FakeSmile {
    /// Starts the fake on an ephemeral port of 127.0.0.1.
    pub async fn start(config: FakeSmileConfig) -> Result<FakeSmileHandle, TestkitError> {
        let shared = Arc::new(Shared { config, state: Mutex::new(FakeState::default()) });
        let state = shared.clone();
        let server = crate::server::Running::start(|listener, stop| run(listener, state, stop)).await?;
        Ok(FakeSmileHandle { server, shared })
    }

    /// Serves on `listener` until `shutdown`; for `nudge dev fake --kind smile`. `customers` (customer
    /// objects) are seeded before the first request.
    pub async fn serve(
        listener: TcpListener,
        config: FakeSmileConfig,
        customers: Vec<Value>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), TestkitError> {
        let shared = Arc::new(Shared { config, state: Mutex::new(FakeState::default()) });
        for c in customers {
            seed(&shared, c);
        }
        run(listener, shared, shutdown).await
    }
}

fn seed(shared: &Shared, customer: Value) {
    let id = match customer.get("id") {
        Some(Value::Number(n)) => n.to_string(),
        Some(Value::String(s)) => s.clone(),
        _ => return,
    };
    shared.lock().customers.insert(id, customer);
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
pub struct FakeSmileHandle {
    server: crate::server::Running,
    shared: Arc<Shared>,
}

impl FakeSmileHandle {
    /// `http://127.0.0.1:<port>`: the fetcher's `api_base`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    pub fn config(&self) -> &FakeSmileConfig {
        &self.shared.config
    }

    /// Adds or replaces a customer object (by its `id`).
    pub fn seed_customer(&self, customer: Value) {
        seed(&self.shared, customer);
    }

    pub fn requests(&self) -> Vec<SmileRequest> {
        self.shared.lock().requests.clone()
    }

    /// How many requests were answered 429.
    pub fn throttled(&self) -> usize {
        self.requests().iter().filter(|r| r.status == 429).count()
    }

    /// The most requests that arrived within any 1-second span.
    pub fn max_per_second(&self) -> usize {
        let times: Vec<Instant> = self.requests().iter().map(|r| r.at).collect();
        let mut best = 0;
        let mut start = 0;
        for end in 0..times.len() {
            while times[end].duration_since(times[start]) >= Duration::from_secs(1) {
                start += 1;
            }
            best = best.max(end - start + 1);
        }
        best
    }

    pub async fn shutdown(mut self) {
        self.server.shutdown().await;
    }
}

fn answer(status: u16, body: Value) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap_or_else(|_| Response::new(Body::empty()))
}

fn error(code: &str, message: &str) -> Value {
    json!({"error": {"code": code, "message": message}})
}

async fn handle(State(shared): State<Arc<Shared>>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let cfg = &shared.config;
    let now = Instant::now();
    let auth_ok = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|k| crate::fake_webhook::verify::constant_time_eq(k.as_bytes(), cfg.api_key.as_bytes()));
    let mut s = shared.lock();
    let (status, body) = if !auth_ok {
        (401, error("unauthorized", "The API key is missing or invalid."))
    } else {
        let (start, used) = match s.window {
            Some((start, used)) if now.duration_since(start) < Duration::from_secs(1) => (start, used),
            _ => (now, 0),
        };
        s.window = Some((start, used + 1));
        if used >= cfg.per_second {
            (429, error("too_many_requests", "Rate limit exceeded."))
        } else if method != Method::GET {
            (405, error("method_not_allowed", "Method not allowed."))
        } else {
            match uri.path().strip_prefix("/v1/customers/").and_then(|id| s.customers.get(id)) {
                Some(c) => (200, json!({"customer": c})),
                None => (404, error("not_found", "The resource could not be found.")),
            }
        }
    };
    s.requests.push(SmileRequest { path: uri.path().to_string(), status, at: now });
    drop(s);
    let mut r = answer(status, body);
    if status == 429 {
        r.headers_mut().insert("retry-after", axum::http::HeaderValue::from_static("1"));
    }
    r
}
