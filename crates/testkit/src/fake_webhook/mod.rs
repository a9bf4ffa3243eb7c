//! A fake receiver of Standard Webhooks: it verifies every delivery exactly as the reference libraries
//! do ([`verify`]), deduplicates on `webhook-id`, records what it accepted, and can be told to misbehave
//! the ways real receivers do ([`WebhookMode`]): 410 Gone, 429 with `Retry-After`, 5xx, a redirect, a slow
//! answer, or bytes that are not HTTP at all.
//!
//! Answers: 405 for a method other than POST, 415 when the body is not declared JSON, 401 (with the
//! reason as text) when verification fails, 400 when the body is not a JSON object with `type`,
//! `timestamp` and `data`, 204 for an accepted delivery (also for a repeated id, which is not stored
//! twice).

pub mod verify;

use crate::TestkitError;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::Value;
use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;

/// The secret the fake verifies with unless told otherwise (24 random bytes).
pub const DEFAULT_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

/// How the fake answers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum WebhookMode {
    /// Verify and accept.
    #[default]
    Normal,
    /// Answer 410 Gone to everything (the receiver wants no more deliveries).
    Gone,
    /// Answer the next `count` requests with 429 and `Retry-After: retry_after_secs`.
    Throttle { retry_after_secs: u64, count: u32 },
    /// Answer the next `count` requests with `status`.
    Fail { status: u16, count: u32 },
    /// Answer 308 with a `Location` elsewhere.
    Redirect,
    /// Verify and accept, but hold each answer back this long.
    Slow(Duration),
    /// Answer every connection with bytes that are not HTTP and close it.
    Garbage,
}

/// One delivery that passed verification (each `webhook-id` once).
#[derive(Debug, Clone, PartialEq)]
pub struct AcceptedWebhook {
    pub id: String,
    pub timestamp: i64,
    /// The `webhook-signature` header as received.
    pub signature: String,
    pub body: Vec<u8>,
    /// `type` of the envelope.
    pub event_type: String,
    pub json: Value,
}

/// One request as received, with the fake's answer.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedWebhook {
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub status: u16,
    pub answer: String,
}

impl ReceivedWebhook {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }
}

struct Shared {
    key: Vec<u8>,
    garbage: Arc<AtomicBool>,
    state: Mutex<FakeState>,
}

#[derive(Default)]
struct FakeState {
    mode: WebhookMode,
    received: Vec<ReceivedWebhook>,
    accepted: Vec<AcceptedWebhook>,
    seen_ids: HashSet<String>,
    duplicates: u32,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// Entry points for running the fake.
pub struct FakeWebhook;

impl FakeWebhook {
    /// Starts the fake on an ephemeral port of 127.0.0.1, verifying with `secret` (`whsec_…`).
    pub async fn start(secret: &str) -> Result<FakeWebhookHandle, TestkitError> {
        let shared = new_shared(secret);
        let state = shared.clone();
        let server = crate::server::Running::start(|listener, stop| run(listener, state, stop)).await?;
        Ok(FakeWebhookHandle { server, shared })
    }

    /// Serves on `listener` until `shutdown`; for `nudge dev fake --kind webhook`.
    pub async fn serve(
        listener: TcpListener,
        secret: &str,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), TestkitError> {
        run(listener, new_shared(secret), shutdown).await
    }
}

fn new_shared(secret: &str) -> Arc<Shared> {
    let key = verify::decode_secret(secret).expect("the fake's secret is whsec_ + base64");
    Arc::new(Shared {
        key,
        garbage: Arc::new(AtomicBool::new(false)),
        state: Mutex::new(FakeState::default()),
    })
}

async fn run(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), TestkitError> {
    let listener = GarbageListener { inner: listener, garbage: shared.garbage.clone() };
    let app = Router::new().fallback(handle).with_state(shared);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await.map_err(TestkitError::Serve)
}

fn now_secs() -> i64 {
    time::OffsetDateTime::now_utc().unix_timestamp()
}

fn answer(status: u16, text: &str) -> Response {
    Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "text/plain")
        // One request per connection, so a mode switch (garbage) applies to the very next request.
        .header("connection", "close")
        .body(Body::from(text.to_string()))
        .expect("a plain response builds")
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header_list: Vec<(String, String)> = headers
        .iter()
        .map(|(n, v)| (n.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
        .collect();
    let (status, text, extra, delay) = decide(&shared, &method, &header_list, &body);
    shared.lock().received.push(ReceivedWebhook {
        path: uri.path().to_string(),
        headers: header_list,
        body: body.to_vec(),
        status,
        answer: text.clone(),
    });
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let mut response = answer(status, &text);
    if let Some((name, value)) = extra
        && let Ok(v) = axum::http::HeaderValue::from_str(&value)
    {
        response.headers_mut().insert(name, v);
    }
    response
}

type Decision = (u16, String, Option<(&'static str, String)>, Option<Duration>);

fn decide(shared: &Shared, method: &Method, headers: &[(String, String)], body: &[u8]) -> Decision {
    let mut state = shared.lock();
    let mut delay = None;
    match state.mode.clone() {
        WebhookMode::Normal | WebhookMode::Garbage => {}
        WebhookMode::Gone => return (410, "gone".into(), None, None),
        WebhookMode::Redirect => {
            return (308, String::new(), Some(("location", "https://elsewhere.example/hook".into())), None);
        }
        WebhookMode::Throttle { retry_after_secs, count } => {
            state.mode = if count > 1 {
                WebhookMode::Throttle { retry_after_secs, count: count - 1 }
            } else {
                WebhookMode::Normal
            };
            return (429, "slow down".into(), Some(("retry-after", retry_after_secs.to_string())), None);
        }
        WebhookMode::Fail { status, count } => {
            state.mode =
                if count > 1 { WebhookMode::Fail { status, count: count - 1 } } else { WebhookMode::Normal };
            return (status, "failure on demand".into(), None, None);
        }
        WebhookMode::Slow(d) => delay = Some(d),
    }
    if method != Method::POST {
        return (405, "POST only".into(), None, delay);
    }
    let json_type = headers.iter().any(|(n, v)| {
        n.eq_ignore_ascii_case("content-type")
            && v.split(';').next().is_some_and(|t| t.trim() == "application/json")
    });
    if !json_type {
        return (415, "the body must be application/json".into(), None, delay);
    }
    let (id, timestamp) = match verify::verify(&shared.key, headers, body, now_secs()) {
        Ok(v) => v,
        Err(e) => return (401, e.to_string(), None, delay),
    };
    let json: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(_) => return (400, "the body is not JSON".into(), None, delay),
    };
    let event_type = json.get("type").and_then(Value::as_str).unwrap_or_default().to_string();
    let well_formed = !event_type.is_empty()
        && json.get("timestamp").and_then(Value::as_str).is_some_and(|t| {
            time::OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339).is_ok()
        })
        && json.get("data").is_some_and(Value::is_object);
    if !well_formed {
        return (400, "the body needs type, an RFC 3339 timestamp and a data object".into(), None, delay);
    }
    if !state.seen_ids.insert(id.clone()) {
        state.duplicates += 1;
        return (204, String::new(), None, delay);
    }
    let signature = headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("webhook-signature"))
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    state.accepted.push(AcceptedWebhook { id, timestamp, signature, body: body.to_vec(), event_type, json });
    (204, String::new(), None, delay)
}

/// A running fake; inspect what it received and accepted, switch its mode, stop it.
pub struct FakeWebhookHandle {
    server: crate::server::Running,
    shared: Arc<Shared>,
}

impl FakeWebhookHandle {
    /// `http://127.0.0.1:<port>/hook`, the endpoint to configure.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.server.addr())
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    pub fn set_mode(&self, mode: WebhookMode) {
        self.shared.garbage.store(mode == WebhookMode::Garbage, Ordering::SeqCst);
        self.shared.lock().mode = mode;
    }

    /// Every request received (connections answered with garbage are not requests), oldest first.
    pub fn received(&self) -> Vec<ReceivedWebhook> {
        self.shared.lock().received.clone()
    }

    /// The verified deliveries, each `webhook-id` once, oldest first.
    pub fn accepted(&self) -> Vec<AcceptedWebhook> {
        self.shared.lock().accepted.clone()
    }

    /// Verified deliveries whose `webhook-id` had been accepted before.
    pub fn duplicates(&self) -> u32 {
        self.shared.lock().duplicates
    }

    pub async fn shutdown(mut self) {
        self.server.shutdown().await;
    }
}

/// A listener that, while `garbage` is set, answers each new connection with bytes that are not HTTP.
struct GarbageListener {
    inner: TcpListener,
    garbage: Arc<AtomicBool>,
}

impl axum::serve::Listener for GarbageListener {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            match self.inner.accept().await {
                Ok((mut stream, addr)) => {
                    if self.garbage.load(Ordering::SeqCst) {
                        tokio::spawn(async move {
                            let _ = stream.write_all(b"\x00\xffTHIS IS NOT HTTP\r\n\r\n").await;
                            let _ = stream.shutdown().await;
                        });
                        continue;
                    }
                    return (stream, addr);
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(50)).await,
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Self::Addr> {
        self.inner.local_addr()
    }
}
