//! A fake Marketo instance (REST API and Identity) that enforces the documented contract and remembers
//! what it accepted: leads (with ids), custom activities and static-list membership.
//!
//! Identity (`GET`/`POST /identity/oauth/token`) takes `grant_type=client_credentials`, `client_id` and
//! `client_secret` as query parameters only; wrong credentials get HTTP 401. It hands out the same token
//! with a decreasing `expires_in` until the token expires (after [`FakeMarketoConfig::token_lifetime`]),
//! then a new one. Identity calls are not counted against any limit.
//!
//! A REST call meets, in this order: the failure mode ([`MarketoMode`]); the path and method (`610`,
//! `605`); the body size (HTTP 413 above 1 MB); the token, only as `Authorization: Bearer` (`601` for an
//! `access_token` query parameter, a missing or unknown token; `602` for an expired one — all inside HTTP
//! 200); the concurrency cap (`615` above 10 in flight); the rate limit (`606` above 100 calls in a
//! rolling 20 s); the daily quota (`607`); `Content-Type: application/json` for bodies (`612`); valid JSON
//! (`609`); then the endpoint's own rules in `rules` (300 records, `lookupField` in every record, unknown
//! fields skipped with `1006`, activities needing an approved type and an existing lead, …).
//!
//! Layout: `rules` answers each endpoint, `store` keeps what was accepted; this file holds the
//! configuration, the modes, the HTTP handler and the handle tests use.

mod rules;
mod store;

pub use rules::{FakeActivityType, MAX_ACTIVITY_ATTRIBUTES_BYTES, MAX_BODY_BYTES, MAX_RECORDS};
pub use store::{StoredActivity, StoredLead};

use crate::TestkitError;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Value, json};
use std::collections::{HashMap, HashSet, VecDeque};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use store::Store;
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::time::Instant;

pub const DEFAULT_CLIENT_ID: &str = "fake-marketo-client-id";
pub const DEFAULT_CLIENT_SECRET: &str = "fakeMarketoClientSecret0001";
/// The approved custom activity type the fake has unless configured otherwise.
pub const DEFAULT_ACTIVITY_TYPE_ID: i64 = 100_001;

/// How the fake is set up.
#[derive(Debug, Clone)]
pub struct FakeMarketoConfig {
    pub client_id: String,
    pub client_secret: String,
    /// How long a new token lives (Marketo: 3600 s); short in tests that need one to expire.
    pub token_lifetime: Duration,
    /// The lead fields (REST API names) Describe lists and Sync Leads accepts.
    pub fields: Vec<String>,
    pub activity_types: Vec<FakeActivityType>,
    /// Static lists that exist (ids).
    pub lists: Vec<i64>,
    /// Calls allowed per rolling window before `606`; `None` for no limit.
    pub rate_limit: Option<(u32, Duration)>,
    /// Calls in flight allowed before `615`; `None` for no limit.
    pub max_concurrent: Option<usize>,
    /// Calls allowed in total before `607`; `None` for no quota.
    pub daily_quota: Option<u64>,
    pub mode: MarketoMode,
}

impl Default for FakeMarketoConfig {
    fn default() -> Self {
        FakeMarketoConfig {
            client_id: DEFAULT_CLIENT_ID.into(),
            client_secret: DEFAULT_CLIENT_SECRET.into(),
            token_lifetime: Duration::from_secs(3600),
            fields: ["email", "firstName", "lastName", "phone", "title", "leadSource", "customerNumber"]
                .map(String::from)
                .to_vec(),
            activity_types: vec![FakeActivityType { id: DEFAULT_ACTIVITY_TYPE_ID, approved: true }],
            lists: Vec::new(),
            rate_limit: Some((100, Duration::from_secs(20))),
            max_concurrent: Some(10),
            daily_quota: Some(50_000),
            mode: MarketoMode::Normal,
        }
    }
}

impl FakeMarketoConfig {
    /// Marketo's limits, accepting these credentials.
    pub fn new(client_id: impl Into<String>, client_secret: impl Into<String>) -> Self {
        FakeMarketoConfig {
            client_id: client_id.into(),
            client_secret: client_secret.into(),
            ..Self::default()
        }
    }

    /// More lead fields, as if created in Field Management.
    pub fn with_fields(mut self, fields: &[&str]) -> Self {
        self.fields.extend(fields.iter().map(|f| f.to_string()));
        self
    }

    pub fn with_activity_type(mut self, id: i64, approved: bool) -> Self {
        self.activity_types.push(FakeActivityType { id, approved });
        self
    }

    pub fn with_list(mut self, id: i64) -> Self {
        self.lists.push(id);
        self
    }

    pub fn with_token_lifetime(mut self, lifetime: Duration) -> Self {
        self.token_lifetime = lifetime;
        self
    }

    pub fn with_daily_quota(mut self, calls: u64) -> Self {
        self.daily_quota = Some(calls);
        self
    }

    pub fn with_rate_limit(mut self, calls: u32, window: Duration) -> Self {
        self.rate_limit = Some((calls, window));
        self
    }
}

/// Failure modes a test can switch on while the fake runs (REST calls only; Identity is a separate
/// service and keeps answering).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum MarketoMode {
    /// Enforce the contract and answer as Marketo does.
    #[default]
    Normal,
    /// Answer the next `count` calls with `606` (rate limit), then return to normal.
    Throttle { count: u32 },
    /// Answer the next `count` calls with this HTTP status (502, 503, …), then return to normal.
    FailHttp { status: u16, count: u32 },
    /// Answer the next `count` calls with HTTP 200 and this response-level code (601–799), then return
    /// to normal.
    FailCode { code: u16, count: u32 },
    /// Handle calls normally (storing what is valid) but hold each answer back this long.
    Slow(Duration),
    /// Like `Slow`, for calls to this path only (such as `/rest/v1/activities/external.json`).
    SlowOn { path: String, delay: Duration },
    /// Expire the current token at once (setting this mode does it; the fake stays normal afterwards).
    ExpireTokenNow,
}

/// Which spelling a skipped lead or list record carries its reasons in (all occur at Marketo).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SkipSpelling {
    #[default]
    Reasons,
    Reason,
    Errors,
}

/// One request the fake received, with its answer.
#[derive(Debug, Clone, PartialEq)]
pub struct MarketoRequest {
    pub method: String,
    /// Path and query, with `client_secret` and `access_token` values replaced by `[redacted]`.
    pub path: String,
    /// Lower-case names; the `authorization` value is redacted.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub status: u16,
    pub response: String,
    /// Whether the query carried `client_id`, `client_secret` and `grant_type` (Identity) or
    /// `access_token` (REST).
    pub query_keys: Vec<String>,
}

impl MarketoRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// The answer as JSON.
    pub fn response_json(&self) -> Option<Value> {
        serde_json::from_str(&self.response).ok()
    }

    pub fn is_identity(&self) -> bool {
        self.path.starts_with("/identity/")
    }

    /// The path without the query.
    pub fn route(&self) -> &str {
        self.path.split('?').next().unwrap_or_default()
    }

    /// How many records the body's `input` carried.
    pub fn records(&self) -> Option<usize> {
        rules::record_count(&self.body)
    }

    /// The response-level error code, when the answer was `success:false`.
    pub fn error_code(&self) -> Option<String> {
        let answer = self.response_json()?;
        answer.get("errors")?.get(0)?.get("code")?.as_str().map(str::to_string)
    }
}

struct Shared {
    config: FakeMarketoConfig,
    state: Mutex<FakeState>,
}

struct FakeState {
    mode: MarketoMode,
    requests: Vec<MarketoRequest>,
    store: Store,
    /// The current token and when it expires.
    token: Option<(String, Instant)>,
    /// Tokens handed out before, now expired.
    expired: HashSet<String>,
    /// Times of calls counted against the rate limit, oldest first.
    calls: VecDeque<Instant>,
    quota_used: u64,
    in_flight: usize,
    max_in_flight_seen: usize,
    /// Lower-cased emails whose lead records are skipped with this code.
    refusals: HashMap<String, u16>,
    spelling: SkipSpelling,
}

impl Shared {
    fn new(config: FakeMarketoConfig) -> Arc<Self> {
        let mut store = Store::default();
        for list in &config.lists {
            store.lists.entry(*list).or_default();
        }
        let state = FakeState {
            mode: MarketoMode::Normal,
            requests: Vec::new(),
            store,
            token: None,
            expired: HashSet::new(),
            calls: VecDeque::new(),
            quota_used: 0,
            in_flight: 0,
            max_in_flight_seen: 0,
            refusals: HashMap::new(),
            spelling: SkipSpelling::Reasons,
        };
        let mode = config.mode.clone();
        let shared = Arc::new(Shared { config, state: Mutex::new(state) });
        shared.set_mode(mode);
        shared
    }

    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_mode(&self, mode: MarketoMode) {
        let mut state = self.lock();
        if mode == MarketoMode::ExpireTokenNow {
            if let Some((token, _)) = state.token.take() {
                state.expired.insert(token);
            }
            state.mode = MarketoMode::Normal;
        } else {
            state.mode = mode;
        }
    }
}

/// Entry points for running the fake.
pub struct FakeMarketo;

impl FakeMarketo {
    /// Starts the fake on an ephemeral port of 127.0.0.1.
    pub async fn start(config: FakeMarketoConfig) -> Result<FakeMarketoHandle, TestkitError> {
        let shared = Shared::new(config);
        let state = shared.clone();
        let server = crate::server::Running::start(|listener, stop| run(listener, state, stop)).await?;
        Ok(FakeMarketoHandle { server, shared })
    }

    /// Serves on `listener` until `shutdown` completes; for `nudge dev fake --kind marketo`.
    pub async fn serve(
        listener: TcpListener,
        config: FakeMarketoConfig,
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
    let app = Router::new()
        .fallback(handle)
        .with_state(shared)
        // Above Marketo's 1 MB, so the fake itself answers 413 as Marketo does.
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES * 4));
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await.map_err(TestkitError::Serve)
}

/// A running fake: inspect what it received and stored, switch its mode, stop it.
pub struct FakeMarketoHandle {
    server: crate::server::Running,
    shared: Arc<Shared>,
}

impl FakeMarketoHandle {
    /// `http://127.0.0.1:<port>`, the client's `base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    pub fn config(&self) -> &FakeMarketoConfig {
        &self.shared.config
    }

    pub fn set_mode(&self, mode: MarketoMode) {
        self.shared.set_mode(mode);
    }

    pub fn mode(&self) -> MarketoMode {
        self.shared.lock().mode.clone()
    }

    /// Expires the current token now (the next REST call with it gets `602`).
    pub fn expire_token(&self) {
        self.shared.set_mode(MarketoMode::ExpireTokenNow);
    }

    /// Every request so far, Identity included, oldest first.
    pub fn requests(&self) -> Vec<MarketoRequest> {
        self.shared.lock().requests.clone()
    }

    /// Requests to Identity so far.
    pub fn identity_calls(&self) -> usize {
        self.shared.lock().requests.iter().filter(|r| r.is_identity()).count()
    }

    /// REST requests so far to this path (such as `/rest/v1/leads.json`).
    pub fn calls_to(&self, route: &str) -> Vec<MarketoRequest> {
        self.shared.lock().requests.iter().filter(|r| r.route() == route).cloned().collect()
    }

    pub fn clear_requests(&self) {
        self.shared.lock().requests.clear();
    }

    /// The stored leads, in creation order.
    pub fn leads(&self) -> Vec<StoredLead> {
        self.shared.lock().store.leads.clone()
    }

    /// The stored lead with this email (any case).
    pub fn lead_by_email(&self, email: &str) -> Option<StoredLead> {
        let email = email.trim().to_lowercase();
        self.leads().into_iter().find(|l| l.email().is_some_and(|e| e.to_lowercase() == email))
    }

    /// The stored custom activities, in arrival order.
    pub fn activities(&self) -> Vec<StoredActivity> {
        self.shared.lock().store.activities.clone()
    }

    /// Lead ids on a static list, in the order added; `None` when the list does not exist.
    pub fn list_members(&self, list_id: i64) -> Option<Vec<i64>> {
        self.shared.lock().store.lists.get(&list_id).cloned()
    }

    /// Makes Sync Leads skip the record with this email with `code` (a 1xxx code) until cleared.
    pub fn skip_email(&self, email: &str, code: u16) {
        self.shared.lock().refusals.insert(email.trim().to_lowercase(), code);
    }

    pub fn clear_skips(&self) {
        self.shared.lock().refusals.clear();
    }

    /// Which spelling skipped lead and list records carry their reasons in.
    pub fn set_skip_spelling(&self, spelling: SkipSpelling) {
        self.shared.lock().spelling = spelling;
    }

    /// The most REST calls that were in flight at once.
    pub fn max_in_flight_seen(&self) -> usize {
        self.shared.lock().max_in_flight_seen
    }

    /// Calls counted against the daily quota so far.
    pub fn quota_used(&self) -> u64 {
        self.shared.lock().quota_used
    }

    /// Stops accepting connections, lets requests in flight finish (for at most 5 s) and returns.
    pub async fn shutdown(mut self) {
        self.server.shutdown().await;
    }
}

/// Counts a REST call as in flight until dropped.
struct InFlight(Arc<Shared>);

impl Drop for InFlight {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.in_flight = state.in_flight.saturating_sub(1);
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let query = parse_query(uri.query().unwrap_or_default());
    let path = uri.path().to_string();
    let identity = path == "/identity/oauth/token";
    let mut _counted = None;
    let (status, answer, delay) = if identity {
        let (status, answer) = identity_answer(&shared, &method, &query);
        (status, answer, None)
    } else {
        let over_cap = {
            let mut state = shared.lock();
            state.in_flight += 1;
            state.max_in_flight_seen = state.max_in_flight_seen.max(state.in_flight);
            shared.config.max_concurrent.is_some_and(|cap| state.in_flight > cap)
        };
        _counted = Some(InFlight(shared.clone()));
        let mut state = shared.lock();
        let delay = match &state.mode {
            MarketoMode::Slow(d) => Some(*d),
            MarketoMode::SlowOn { path: slow, delay } if *slow == path => Some(*delay),
            _ => None,
        };
        let (status, answer) =
            rest_answer(&shared, &mut state, &method, &path, &query, &headers, &body, over_cap);
        (status, answer, delay)
    };
    let text = match &answer {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    shared.lock().requests.push(MarketoRequest {
        method: method.to_string(),
        path: redacted_path(&path, &query),
        headers: redacted_headers(&headers),
        body: body.to_vec(),
        status,
        response: text.clone(),
        query_keys: query.iter().map(|(k, _)| k.clone()).collect(),
    });
    if let Some(delay) = delay {
        // Handled and stored already; only the answer is late.
        tokio::time::sleep(delay).await;
    }
    let content_type =
        if answer.is_string() { "text/plain; charset=utf-8" } else { "application/json;charset=UTF-8" };
    let mut response = Response::new(Body::from(text));
    *response.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = content_type.parse() {
        response.headers_mut().insert("content-type", v);
    }
    response
}

fn identity_answer(shared: &Shared, method: &Method, query: &[(String, String)]) -> (u16, Value) {
    if method != Method::GET && method != Method::POST {
        return (405, Value::String("Method Not Allowed".into()));
    }
    let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    if get("grant_type") != Some("client_credentials") {
        return (
            400,
            json!({"error": "invalid_request", "error_description": "grant_type=client_credentials is required"}),
        );
    }
    let config = &shared.config;
    if get("client_id") != Some(config.client_id.as_str())
        || get("client_secret") != Some(config.client_secret.as_str())
    {
        return (401, json!({"error": "unauthorized", "error_description": "Bad client credentials"}));
    }
    let mut state = shared.lock();
    let now = Instant::now();
    if let Some((token, expires)) = state.token.clone() {
        if expires > now {
            let left = (expires - now).as_secs();
            return (200, token_answer(&token, left));
        }
        state.expired.insert(token);
    }
    let token = format!("{}:ab", uuid::Uuid::new_v4());
    state.token = Some((token.clone(), now + config.token_lifetime));
    (200, token_answer(&token, config.token_lifetime.as_secs()))
}

fn token_answer(token: &str, expires_in: u64) -> Value {
    json!({"access_token": token, "token_type": "bearer", "expires_in": expires_in, "scope": "apis@fake.example"})
}

#[derive(PartialEq)]
enum Route {
    Describe,
    SyncLeads,
    /// `GET /rest/v1/leads.json?filterType=…&filterValues=…`: leads by a field's values.
    GetLeads,
    /// `POST /rest/v1/leads/delete.json`: delete leads by id.
    DeleteLeads,
    Activities,
    List(i64),
}

#[allow(clippy::too_many_arguments)]
fn rest_answer(
    shared: &Shared,
    state: &mut FakeState,
    method: &Method,
    path: &str,
    query: &[(String, String)],
    headers: &HeaderMap,
    body: &[u8],
    over_cap: bool,
) -> (u16, Value) {
    match state.mode.clone() {
        MarketoMode::Normal
        | MarketoMode::Slow(_)
        | MarketoMode::SlowOn { .. }
        | MarketoMode::ExpireTokenNow => {}
        MarketoMode::Throttle { count } => {
            state.mode =
                if count > 1 { MarketoMode::Throttle { count: count - 1 } } else { MarketoMode::Normal };
            return (200, rules::failure(606, "Max rate limit '100' exceeded with in '20' secs"));
        }
        MarketoMode::FailHttp { status, count } => {
            state.mode = if count > 1 {
                MarketoMode::FailHttp { status, count: count - 1 }
            } else {
                MarketoMode::Normal
            };
            return (status, Value::String(format!("injected HTTP {status}")));
        }
        MarketoMode::FailCode { code, count } => {
            state.mode = if count > 1 {
                MarketoMode::FailCode { code, count: count - 1 }
            } else {
                MarketoMode::Normal
            };
            return (200, rules::failure(code, format!("Injected error {code}")));
        }
    }
    let route = match path {
        "/rest/v1/leads/describe.json" => Route::Describe,
        "/rest/v1/leads.json" if method == Method::GET => Route::GetLeads,
        "/rest/v1/leads.json" => Route::SyncLeads,
        "/rest/v1/leads/delete.json" => Route::DeleteLeads,
        "/rest/v1/activities/external.json" => Route::Activities,
        other => match other
            .strip_prefix("/rest/v1/lists/")
            .and_then(|p| p.strip_suffix("/leads.json"))
            .and_then(|id| id.parse::<i64>().ok())
        {
            Some(id) => Route::List(id),
            None => return (200, rules::failure(610, "Requested resource not found")),
        },
    };
    let method_ok = match route {
        Route::Describe | Route::GetLeads => method == Method::GET,
        Route::SyncLeads | Route::Activities | Route::DeleteLeads => method == Method::POST,
        Route::List(_) => method == Method::POST || method == Method::DELETE,
    };
    if !method_ok {
        return (200, rules::failure(605, "HTTP Method not supported"));
    }
    if body.len() > MAX_BODY_BYTES {
        return (413, Value::String("Request Entity Too Large".into()));
    }
    // The token: a Bearer header only.
    if query.iter().any(|(k, _)| k == "access_token") {
        return (200, rules::failure(601, "Access token invalid (send it as Authorization: Bearer)"));
    }
    let bearer = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    let Some(bearer) = bearer else {
        return (200, rules::failure(601, "Access token invalid"));
    };
    let now = Instant::now();
    match &state.token {
        Some((token, expires)) if token == bearer && *expires > now => {}
        Some((token, _)) if token == bearer => {
            let token = token.clone();
            state.expired.insert(token);
            state.token = None;
            return (200, rules::failure(602, "Access token expired"));
        }
        _ if state.expired.contains(bearer) => return (200, rules::failure(602, "Access token expired")),
        _ => return (200, rules::failure(601, "Access token invalid")),
    }
    if over_cap {
        return (200, rules::failure(615, "Concurrent access limit reached"));
    }
    if let Some((limit, window)) = shared.config.rate_limit {
        while state.calls.front().is_some_and(|t| now.duration_since(*t) >= window) {
            state.calls.pop_front();
        }
        if state.calls.len() >= limit as usize {
            return (
                200,
                rules::failure(
                    606,
                    format!("Max rate limit '{limit}' exceeded with in '{}' secs", window.as_secs()),
                ),
            );
        }
        state.calls.push_back(now);
    }
    if let Some(quota) = shared.config.daily_quota {
        if state.quota_used >= quota {
            return (200, rules::failure(607, "Daily quota reached"));
        }
        state.quota_used += 1;
    }
    if route == Route::Describe {
        return (200, rules::describe(&shared.config.fields));
    }
    if route == Route::GetLeads {
        return (200, rules::get_leads(query, &state.store));
    }
    let json_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.trim().to_ascii_lowercase().starts_with("application/json"));
    if !json_type {
        return (200, rules::failure(612, "Invalid Content Type"));
    }
    let doc: Value = match serde_json::from_slice(body) {
        Ok(doc) if rules::object(&doc).is_some() => doc,
        _ => return (200, rules::failure(609, "Invalid JSON")),
    };
    let spelling = state.spelling;
    let answer = match route {
        Route::SyncLeads => rules::sync_leads(
            &doc,
            &mut state.store,
            &shared.config.fields,
            &state.refusals,
            spelling,
            OffsetDateTime::now_utc(),
        ),
        Route::Activities => rules::insert_activities(&doc, &mut state.store, &shared.config.activity_types),
        Route::DeleteLeads => rules::delete_leads(&doc, &mut state.store),
        Route::GetLeads => rules::get_leads(query, &state.store),
        Route::List(id) => rules::change_list(&doc, &mut state.store, id, method == Method::DELETE, spelling),
        Route::Describe => rules::describe(&shared.config.fields),
    };
    (200, answer)
}

fn parse_query(query: &str) -> Vec<(String, String)> {
    query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect()
}

fn percent_decode(s: &str) -> String {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' if i + 2 < bytes.len() && hex(bytes[i + 1]).is_some() && hex(bytes[i + 2]).is_some() => {
                let value = hex(bytes[i + 1]).unwrap_or(0) * 16 + hex(bytes[i + 2]).unwrap_or(0);
                out.push(u8::try_from(value).unwrap_or(b'?'));
                i += 2;
            }
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn redacted_path(path: &str, query: &[(String, String)]) -> String {
    if query.is_empty() {
        return path.to_string();
    }
    let shown: Vec<String> = query
        .iter()
        .map(|(k, v)| {
            if k == "client_secret" || k == "access_token" {
                format!("{k}=[redacted]")
            } else {
                format!("{k}={v}")
            }
        })
        .collect();
    format!("{path}?{}", shown.join("&"))
}

fn redacted_headers(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = value.to_str().unwrap_or("[not text]");
            let value = if name.as_str() == "authorization" {
                match value.split_once(' ') {
                    Some((scheme, _)) => format!("{scheme} [redacted]"),
                    None => "[redacted]".to_string(),
                }
            } else {
                value.to_string()
            };
            (name.as_str().to_string(), value)
        })
        .collect()
}
