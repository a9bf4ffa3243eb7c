//! A fake of Shopify's GraphQL Admin API for one shop, as far as nudge reads it: `customer(id:)`.
//!
//! It enforces `POST /admin/api/{version}/graphql.json` with a supported version (404 otherwise), the
//! `X-Shopify-Access-Token` header (401 `[API] Invalid API key or access token …` otherwise), a JSON body
//! with `query` and `variables.id` as a customer gid (a GraphQL error otherwise), and the calculated-cost
//! leaky bucket: every query costs one point per selected object (`{` after the operation), a query that
//! does not fit is answered 200 with `errors[{message: "Throttled", extensions: {code: "THROTTLED"}}]`,
//! and every answer carries `extensions.cost {requestedQueryCost, actualQueryCost, throttleStatus
//! {maximumAvailable, currentlyAvailable, restoreRate}}`. Customers are seeded; an unknown id answers
//! `data.customer: null`. It counts the queries it answered and those it throttled.

use crate::TestkitError;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use tokio::net::TcpListener;
use tokio::time::Instant;

/// The token the fake accepts unless told otherwise.
pub const DEFAULT_TOKEN: &str = "shpat_fake_admin_token";
/// The shop the fake is.
pub const DEFAULT_SHOP: &str = "demo-store.myshopify.com";

/// A seeded customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeCustomer {
    pub id: u64,
    pub email: Option<String>,
    pub phone: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// `SUBSCRIBED`, `NOT_SUBSCRIBED`, `UNSUBSCRIBED`, `PENDING`, …
    pub marketing_state: String,
}

impl FakeCustomer {
    pub fn new(id: u64, email: &str) -> Self {
        FakeCustomer {
            id,
            email: Some(email.into()),
            phone: None,
            first_name: Some("Lena".into()),
            last_name: Some("Berg".into()),
            marketing_state: "SUBSCRIBED".into(),
        }
    }

    fn to_json(&self) -> Value {
        json!({
            "id": format!("gid://shopify/Customer/{}", self.id),
            "firstName": self.first_name,
            "lastName": self.last_name,
            "defaultEmailAddress": self.email.as_ref().map(|e| json!({
                "emailAddress": e, "marketingState": self.marketing_state,
                "marketingOptInLevel": "SINGLE_OPT_IN", "marketingUpdatedAt": "2026-04-01T09:00:00Z"
            })),
            "defaultPhoneNumber": self.phone.as_ref().map(|p| json!({
                "phoneNumber": p, "marketingState": "NOT_SUBSCRIBED"
            })),
        })
    }
}

/// How the fake is set up.
#[derive(Debug, Clone)]
pub struct FakeShopifyAdminConfig {
    pub access_token: String,
    /// API versions the fake serves.
    pub versions: Vec<String>,
    /// The bucket's size and refill per second (Shopify's depend on the plan).
    pub maximum: f64,
    pub restore_rate: f64,
    pub customers: Vec<FakeCustomer>,
}

impl Default for FakeShopifyAdminConfig {
    fn default() -> Self {
        FakeShopifyAdminConfig {
            access_token: DEFAULT_TOKEN.into(),
            versions: vec!["2026-01".into(), "2026-04".into(), "2026-07".into(), "2026-10".into()],
            maximum: 100.0,
            restore_rate: 50.0,
            customers: Vec::new(),
        }
    }
}

impl FakeShopifyAdminConfig {
    pub fn with_customer(mut self, c: FakeCustomer) -> Self {
        self.customers.push(c);
        self
    }

    /// A bucket of `maximum` points refilling `restore_rate` a second.
    pub fn bucket(mut self, maximum: f64, restore_rate: f64) -> Self {
        self.maximum = maximum;
        self.restore_rate = restore_rate;
        self
    }
}

/// What the fake counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AdminStats {
    /// Queries answered with data.
    pub answered: u32,
    /// Queries answered THROTTLED.
    pub throttled: u32,
    /// Requests refused before the bucket (auth, version, body).
    pub refused: u32,
}

struct Shared {
    config: FakeShopifyAdminConfig,
    state: Mutex<FakeState>,
}

struct FakeState {
    available: f64,
    at: Instant,
    customers: BTreeMap<u64, FakeCustomer>,
    stats: AdminStats,
}

impl Shared {
    fn new(config: FakeShopifyAdminConfig) -> Arc<Self> {
        let customers = config.customers.iter().map(|c| (c.id, c.clone())).collect();
        let state = FakeState {
            available: config.maximum,
            at: Instant::now(),
            customers,
            stats: AdminStats::default(),
        };
        Arc::new(Shared { config, state: Mutex::new(state) })
    }

    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct FakeShopifyAdmin;

impl FakeShopifyAdmin {
    /// Starts the fake on an ephemeral port of 127.0.0.1.
    pub async fn start(config: FakeShopifyAdminConfig) -> Result<FakeShopifyAdminHandle, TestkitError> {
        let shared = Shared::new(config);
        let state = shared.clone();
        let server = crate::server::Running::start(|listener, stop| run(listener, state, stop)).await?;
        Ok(FakeShopifyAdminHandle { server, shared })
    }

    /// Serves on `listener` until `shutdown`; for `nudge dev fake --kind shopify-admin`.
    pub async fn serve(
        listener: TcpListener,
        config: FakeShopifyAdminConfig,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), TestkitError> {
        run(listener, Shared::new(config), shutdown).await
    }
}

async fn run(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), TestkitError> {
    let app = Router::new().route("/admin/api/{version}/graphql.json", post(graphql)).with_state(shared);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await.map_err(TestkitError::Serve)
}

fn answer(status: StatusCode, body: Value) -> Response {
    (status, [("content-type", "application/json; charset=utf-8")], body.to_string()).into_response()
}

fn graphql_error(message: &str, code: &str) -> Value {
    json!({"errors": [{"message": message, "extensions": {"code": code}}]})
}

async fn graphql(
    State(shared): State<Arc<Shared>>,
    Path(version): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let refuse = |status: StatusCode, body: Value| {
        shared.lock().stats.refused += 1;
        answer(status, body)
    };
    if !shared.config.versions.contains(&version) {
        return refuse(StatusCode::NOT_FOUND, json!({"errors": "Not Found"}));
    }
    let token = headers.get("x-shopify-access-token").and_then(|v| v.to_str().ok());
    if token != Some(shared.config.access_token.as_str()) {
        return refuse(
            StatusCode::UNAUTHORIZED,
            json!({"errors": "[API] Invalid API key or access token (unrecognized login or wrong password)"}),
        );
    }
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
    if !content_type.starts_with("application/json") {
        return refuse(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            graphql_error("Unsupported content type", "BAD_REQUEST"),
        );
    }
    let Ok(request) = serde_json::from_slice::<Value>(&body) else {
        return refuse(StatusCode::BAD_REQUEST, graphql_error("Invalid JSON in request body", "BAD_REQUEST"));
    };
    let query = request.get("query").and_then(Value::as_str).unwrap_or("");
    if !query.contains("customer(id: $id)") {
        return refuse(
            StatusCode::OK,
            graphql_error("the fake answers only `customer(id: $id)`", "BAD_REQUEST"),
        );
    }
    let id = request
        .pointer("/variables/id")
        .and_then(Value::as_str)
        .and_then(|g| g.strip_prefix("gid://shopify/Customer/"))
        .and_then(|n| n.parse::<u64>().ok());
    let Some(id) = id else {
        return refuse(
            StatusCode::OK,
            graphql_error("Variable $id of type ID! was provided invalid value", "INVALID_VARIABLE"),
        );
    };
    let requested = query.matches('{').count().saturating_sub(1).max(1) as f64;
    let config = &shared.config;
    let mut s = shared.lock();
    let now = Instant::now();
    s.available =
        (s.available + now.duration_since(s.at).as_secs_f64() * config.restore_rate).min(config.maximum);
    s.at = now;
    let status = |available: f64| json!({"maximumAvailable": config.maximum, "currentlyAvailable": available.floor(), "restoreRate": config.restore_rate});
    if requested > s.available {
        s.stats.throttled += 1;
        let mut body = graphql_error("Throttled", "THROTTLED");
        body["extensions"] = json!({"cost": {"requestedQueryCost": requested, "actualQueryCost": null, "throttleStatus": status(s.available)}});
        return answer(StatusCode::OK, body);
    }
    let customer = s.customers.get(&id).map(FakeCustomer::to_json);
    // The actual cost is what was selected and returned: a null customer costs one point.
    let actual = if customer.is_some() { requested } else { 1.0 };
    s.available -= actual;
    s.stats.answered += 1;
    let cost = json!({"requestedQueryCost": requested, "actualQueryCost": actual, "throttleStatus": status(s.available)});
    answer(StatusCode::OK, json!({"data": {"customer": customer}, "extensions": {"cost": cost}}))
}

/// A running fake.
pub struct FakeShopifyAdminHandle {
    server: crate::server::Running,
    shared: Arc<Shared>,
}

impl FakeShopifyAdminHandle {
    /// What to configure as `sources.shopify.admin.base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    pub fn stats(&self) -> AdminStats {
        self.shared.lock().stats
    }

    /// Adds or replaces a customer.
    pub fn seed(&self, c: FakeCustomer) {
        self.shared.lock().customers.insert(c.id, c);
    }

    /// Spends `points` of the bucket, as another client of the same app would.
    pub fn spend(&self, points: f64) {
        let mut s = self.shared.lock();
        s.available = (s.available - points).max(0.0);
    }

    pub async fn shutdown(mut self) {
        self.server.shutdown().await;
    }
}
