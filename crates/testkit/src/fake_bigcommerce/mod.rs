//! A fake BigCommerce store: the four REST reads nudge makes after a webhook callback, and a sender that
//! delivers callbacks the way BigCommerce does.
//!
//! The API ([`FakeBigCommerce`]) serves, under `/stores/<store_hash>`:
//! `GET /v2/orders/{id}`, `GET /v2/orders/{id}/products`, `GET /v3/carts/{id}`,
//! `GET /v3/customers?id:in={id}` (a list: unknown ids give an empty `data`), and
//! `GET /v3/catalog/products/{id}`, for the resources seeded into it; 404 for unknown ids or another
//! store's path. It enforces `X-Auth-Token` (401 otherwise) and `Accept: application/json` (406
//! otherwise), and a per-window request quota: every answer carries `X-Rate-Limit-Requests-Left`,
//! `X-Rate-Limit-Time-Reset-Ms`, `X-Rate-Limit-Requests-Quota` and `X-Rate-Limit-Time-Window-Ms`, and a
//! request past the quota is answered 429. Failure switches ([`BigCommerceMode`]): 5xx, a 200 that is not
//! JSON, slowness, and 429 without the rate-limit headers (platform load).
//!
//! [`sender`] signs callbacks with the Standard Webhooks scheme as BigCommerce does (the HMAC key is the
//! app's client secret bytes) and can add the custom headers a hook was created with.

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

pub use sender::{BigCommerceSender, Callback};

/// How the fake is set up.
#[derive(Debug, Clone)]
pub struct FakeBigCommerceConfig {
    pub store_hash: String,
    pub access_token: String,
    /// Requests allowed per window (BigCommerce's standard plans: 150 per 30 s).
    pub quota: u32,
    pub window: Duration,
}

impl Default for FakeBigCommerceConfig {
    fn default() -> Self {
        FakeBigCommerceConfig {
            store_hash: "abc123".into(),
            access_token: "fake-bigcommerce-token".into(),
            quota: 150,
            window: Duration::from_secs(30),
        }
    }
}

/// How the fake answers besides normally.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BigCommerceMode {
    #[default]
    Normal,
    /// Answer the next `count` requests with `status` (a 5xx).
    ServerError { status: u16, count: u32 },
    /// Answer the next `count` requests 200 with a body that is not JSON.
    Garbage { count: u32 },
    /// Answer the next `count` requests 429 without any rate-limit header.
    BareThrottle { count: u32 },
    /// Hold every answer back this long.
    Slow(Duration),
}

/// One request as received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BigCommerceRequest {
    pub method: String,
    /// Path and query.
    pub target: String,
    pub status: u16,
    /// Whether it carried the right token (the token itself is never recorded).
    pub authenticated: bool,
    pub at: Instant,
}

struct Shared {
    config: FakeBigCommerceConfig,
    state: Mutex<FakeState>,
}

#[derive(Default)]
struct FakeState {
    mode: BigCommerceMode,
    /// Answer bodies by path below `/stores/<hash>` (`/v2/orders/250`, `/v3/carts/<id>`, …).
    resources: HashMap<String, Value>,
    /// Customer records by id, for the list endpoint.
    customers: HashMap<String, Value>,
    requests: Vec<BigCommerceRequest>,
    window: Option<(Instant, u32)>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct FakeBigCommerce;

impl FakeBigCommerce {
    /// Starts the fake on an ephemeral port of 127.0.0.1.
    pub async fn start(config: FakeBigCommerceConfig) -> Result<FakeBigCommerceHandle, TestkitError> {
        let shared = Arc::new(Shared { config, state: Mutex::new(FakeState::default()) });
        let state = shared.clone();
        let server = crate::server::Running::start(|listener, stop| run(listener, state, stop)).await?;
        Ok(FakeBigCommerceHandle { server, seeder: FakeBigCommerceSeeder { shared } })
    }

    /// Serves on `listener` until `shutdown`; for `nudge dev fake --kind bigcommerce`. `seed` fills the
    /// store before the first request.
    pub async fn serve(
        listener: TcpListener,
        config: FakeBigCommerceConfig,
        seed: impl FnOnce(&FakeBigCommerceSeeder),
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), TestkitError> {
        let shared = Arc::new(Shared { config, state: Mutex::new(FakeState::default()) });
        seed(&FakeBigCommerceSeeder { shared: shared.clone() });
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

/// Puts resources into a fake (the handle derefs to one).
pub struct FakeBigCommerceSeeder {
    shared: Arc<Shared>,
}

impl FakeBigCommerceSeeder {
    /// An order (`GET /v2/orders/{id}`) and its lines (`GET /v2/orders/{id}/products`).
    pub fn seed_order(&self, id: &str, order: Value, products: Value) {
        let mut s = self.shared.lock();
        s.resources.insert(format!("/v2/orders/{id}"), order);
        s.resources.insert(format!("/v2/orders/{id}/products"), products);
    }

    /// A cart: the whole answer of `GET /v3/carts/{id}` (`{"data": …}`).
    pub fn seed_cart(&self, id: &str, answer: Value) {
        self.shared.lock().resources.insert(format!("/v3/carts/{id}"), answer);
    }

    /// A customer record (one element of the list's `data`).
    pub fn seed_customer(&self, id: &str, record: Value) {
        self.shared.lock().customers.insert(id.to_string(), record);
    }

    /// A product: the whole answer of `GET /v3/catalog/products/{id}` (`{"data": …}`).
    pub fn seed_product(&self, id: &str, answer: Value) {
        self.shared.lock().resources.insert(format!("/v3/catalog/products/{id}"), answer);
    }

    /// Deletes a cart (as converting it does).
    pub fn remove_cart(&self, id: &str) {
        self.shared.lock().resources.remove(&format!("/v3/carts/{id}"));
    }
}

/// A running fake.
pub struct FakeBigCommerceHandle {
    server: crate::server::Running,
    seeder: FakeBigCommerceSeeder,
}

impl std::ops::Deref for FakeBigCommerceHandle {
    type Target = FakeBigCommerceSeeder;
    fn deref(&self) -> &FakeBigCommerceSeeder {
        &self.seeder
    }
}

impl FakeBigCommerceHandle {
    /// `http://127.0.0.1:<port>`: the fake's `api_base`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    pub fn config(&self) -> &FakeBigCommerceConfig {
        &self.seeder.shared.config
    }

    pub fn set_mode(&self, mode: BigCommerceMode) {
        self.seeder.shared.lock().mode = mode;
    }

    /// Every request so far, in arrival order.
    pub fn requests(&self) -> Vec<BigCommerceRequest> {
        self.seeder.shared.lock().requests.clone()
    }

    /// How many requests were answered 429.
    pub fn throttled(&self) -> usize {
        self.requests().iter().filter(|r| r.status == 429).count()
    }

    pub async fn shutdown(mut self) {
        self.server.shutdown().await;
    }
}

struct Answer {
    status: u16,
    body: String,
    rate: Option<(u32, u64)>,
    delay: Option<Duration>,
}

async fn handle(State(shared): State<Arc<Shared>>, method: Method, uri: Uri, headers: HeaderMap) -> Response {
    let token_ok = headers.get("x-auth-token").is_some_and(|v| {
        crate::fake_webhook::verify::constant_time_eq(v.as_bytes(), shared.config.access_token.as_bytes())
    });
    let accept_ok = headers
        .get("accept")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|p| p.trim().starts_with("application/json")));
    let a = decide(&shared, &method, &uri, token_ok, accept_ok);
    let target = uri.path_and_query().map_or_else(|| uri.path().to_string(), |p| p.as_str().to_string());
    shared.lock().requests.push(BigCommerceRequest {
        method: method.to_string(),
        target,
        status: a.status,
        authenticated: token_ok,
        at: Instant::now(),
    });
    if let Some(d) = a.delay {
        tokio::time::sleep(d).await;
    }
    let mut b = Response::builder()
        .status(StatusCode::from_u16(a.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json");
    if let Some((left, reset_ms)) = a.rate {
        b = b
            .header("x-rate-limit-requests-left", left.to_string())
            .header("x-rate-limit-time-reset-ms", reset_ms.to_string())
            .header("x-rate-limit-requests-quota", shared.config.quota.to_string())
            .header("x-rate-limit-time-window-ms", shared.config.window.as_millis().to_string());
    }
    b.body(Body::from(a.body)).unwrap_or_else(|_| Response::new(Body::empty()))
}

fn error(status: u16, title: &str) -> String {
    json!({"status": status, "title": title, "type": "https://developer.bigcommerce.com/api-docs/getting-started/api-status-codes"}).to_string()
}

fn decide(shared: &Shared, method: &Method, uri: &Uri, token_ok: bool, accept_ok: bool) -> Answer {
    let mut s = shared.lock();
    let cfg = &shared.config;
    let now = Instant::now();
    let mut delay = None;
    match s.mode.clone() {
        BigCommerceMode::Normal => {}
        BigCommerceMode::Slow(d) => delay = Some(d),
        BigCommerceMode::BareThrottle { count } => {
            s.mode = if count > 1 {
                BigCommerceMode::BareThrottle { count: count - 1 }
            } else {
                BigCommerceMode::Normal
            };
            return Answer { status: 429, body: error(429, "Too many requests"), rate: None, delay };
        }
        BigCommerceMode::ServerError { status, count } => {
            s.mode = if count > 1 {
                BigCommerceMode::ServerError { status, count: count - 1 }
            } else {
                BigCommerceMode::Normal
            };
            return Answer { status, body: error(status, "Internal Server Error"), rate: None, delay };
        }
        BigCommerceMode::Garbage { count } => {
            s.mode = if count > 1 {
                BigCommerceMode::Garbage { count: count - 1 }
            } else {
                BigCommerceMode::Normal
            };
            return Answer {
                status: 200,
                body: "<html><body>Maintenance</body></html>".into(),
                rate: None,
                delay,
            };
        }
    }
    if !token_ok {
        return Answer { status: 401, body: error(401, "Unauthorized"), rate: None, delay };
    }
    // The request quota, per fixed window starting at the first request.
    let (start, used) = match s.window {
        Some((start, used)) if now.duration_since(start) < cfg.window => (start, used),
        _ => (now, 0),
    };
    let reset_ms = cfg.window.saturating_sub(now.duration_since(start)).as_millis() as u64;
    if used >= cfg.quota {
        s.window = Some((start, used));
        return Answer {
            status: 429,
            body: error(429, "Too many requests"),
            rate: Some((0, reset_ms)),
            delay,
        };
    }
    s.window = Some((start, used + 1));
    let rate = Some((cfg.quota - used - 1, reset_ms));
    if !accept_ok {
        return Answer { status: 406, body: error(406, "Not Acceptable"), rate, delay };
    }
    if method != Method::GET {
        return Answer { status: 405, body: error(405, "Method Not Allowed"), rate, delay };
    }
    let prefix = format!("/stores/{}", cfg.store_hash);
    let Some(path) = uri.path().strip_prefix(&prefix) else {
        return Answer { status: 404, body: error(404, "Store not found"), rate, delay };
    };
    let found = if path == "/v3/customers" {
        let wanted = uri
            .query()
            .unwrap_or("")
            .split('&')
            .find_map(|p| p.strip_prefix("id:in=").or_else(|| p.strip_prefix("id%3Ain=")));
        let data: Vec<Value> = wanted
            .map(|ids| ids.split(',').filter_map(|id| s.customers.get(id).cloned()).collect())
            .unwrap_or_default();
        Some(json!({"data": data, "meta": {"pagination": {"total": data.len(), "count": data.len()}}}))
    } else {
        s.resources.get(path).cloned()
    };
    match found {
        Some(v) => Answer { status: 200, body: v.to_string(), rate, delay },
        None if path.starts_with("/v2/") => Answer {
            status: 404,
            body: json!([{"status": 404, "message": "The requested resource was not found."}]).to_string(),
            rate,
            delay,
        },
        None => Answer { status: 404, body: error(404, "Not Found"), rate, delay },
    }
}
