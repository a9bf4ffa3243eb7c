//! A fake Braze REST API that enforces the contract of `POST /users/track` and remembers what it
//! accepted: users (attributes merged, array attributes such as `ai_lists` changed by `add`/`remove`),
//! events (each one kept, as Braze does not deduplicate them) and purchases.
//!
//! Checks, in the order a request meets them: the failure mode set by the test ([`BrazeMode`]), the path
//! (404 for anything but `/users/track`) and method (405), `Authorization: Bearer <key>` (401 "Unknown or
//! missing REST API key", or "Invalid API key: <the key given>" — the refused key is repeated, as Braze
//! does, so a client must keep answers out of its logs or scrub them), `Content-Type: application/json`
//! (415), the rate limit in fixed 3-second windows (429 with `X-Ratelimit-Retry-After` and none of the
//! `X-RateLimit-*` headers, which every other answer carries while a limit is set), then the body (see
//! `rules`: fatal problems are `400 {"message":…}`, above the cap `400 Max Input Length Exceeded`; a bad
//! record is named in `errors[]` with `input_array` and `index` while the rest are processed).
//!
//! Answers are `{"message":"success","attributes_processed":N,…}` (a count for each section sent), with
//! `errors` when a record was refused, or `202 {"message":"queued"}` in [`BrazeMode::Queued`].
//!
//! Stricter than Braze on purpose: `api_key` in the body and unknown top-level fields are refused (nudge
//! must send neither), and a wrong content type is 415.

mod rules;

pub use rules::MAX_STRING_CHARS;

use crate::TestkitError;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashSet};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::time::Instant;

/// The key the fake accepts unless configured otherwise.
pub const DEFAULT_API_KEY: &str = "braze-fake-rest-api-key";
/// Objects per request, attributes, events and purchases combined.
pub const DEFAULT_BATCH_CAP: usize = 75;
/// Requests per [`RATE_WINDOW`].
pub const DEFAULT_RATE_LIMIT: u32 = 3000;
/// The rate-limit window.
pub const RATE_WINDOW: Duration = Duration::from_secs(3);
/// The one path served.
pub const TRACK_PATH: &str = "/users/track";
/// The user deletion endpoint the fake serves too.
pub const DELETE_PATH: &str = "/users/delete";
/// The most identifiers `/users/delete` takes in one request.
pub const DELETE_CAP: usize = 50;

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct FakeBrazeConfig {
    /// The only REST key accepted.
    pub api_key: String,
    /// Most objects per request, combined (75 on current plans; 50 models an MAU-priced account).
    pub batch_cap: usize,
    /// Requests allowed per 3-second window; `None` for no limit.
    pub rate_limit: Option<u32>,
    /// The mode the fake starts in.
    pub mode: BrazeMode,
}

impl Default for FakeBrazeConfig {
    fn default() -> Self {
        FakeBrazeConfig {
            api_key: DEFAULT_API_KEY.to_string(),
            batch_cap: DEFAULT_BATCH_CAP,
            rate_limit: Some(DEFAULT_RATE_LIMIT),
            mode: BrazeMode::Normal,
        }
    }
}

impl FakeBrazeConfig {
    /// Braze's limits, accepting `api_key`.
    pub fn new(api_key: impl Into<String>) -> Self {
        FakeBrazeConfig { api_key: api_key.into(), ..Self::default() }
    }

    pub fn with_batch_cap(mut self, cap: usize) -> Self {
        self.batch_cap = cap;
        self
    }

    /// Requests allowed per 3-second window.
    pub fn with_rate_limit(mut self, per_window: u32) -> Self {
        self.rate_limit = Some(per_window);
        self
    }

    /// No rate limit at all.
    pub fn unthrottled(mut self) -> Self {
        self.rate_limit = None;
        self
    }
}

/// Failure modes a test can switch on while the fake runs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum BrazeMode {
    /// Enforce the contract and answer as Braze does.
    #[default]
    Normal,
    /// Answer the next `count` requests with 429 and `X-Ratelimit-Retry-After: retry_after_secs`.
    Throttle { retry_after_secs: u64, count: u32 },
    /// Answer the next `count` requests with `status` and a `message`.
    Fail { status: u16, count: u32 },
    /// Handle requests normally (storing what is valid) but hold each answer back this long.
    Slow(Duration),
    /// Handle requests normally but answer `202 {"message":"queued"}`, as Braze does during maintenance.
    Queued,
    /// Answer 200 with an HTML page instead of JSON (a proxy or maintenance page), storing nothing.
    NotJson,
}

/// One request the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct BrazeRequest {
    pub method: String,
    pub path: String,
    /// Lower-case names; the credential in `authorization` is replaced by `[redacted]` unless it is the
    /// accepted key's exact header, which shows as `Bearer [the configured key]`.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// Attributes, events and purchases in the body, combined (0 when the body is not a track body).
    pub objects: usize,
    pub status: u16,
    pub response_body: String,
}

impl BrazeRequest {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// A user as stored: its key (the `external_id`, or `braze_id:…`, `alias:<label>:<name>`, `email:…`,
/// `phone:…`) and its attributes.
#[derive(Debug, Clone, PartialEq)]
pub struct BrazeUser {
    pub id: String,
    pub attributes: Map<String, Value>,
}

impl BrazeUser {
    pub fn attribute(&self, name: &str) -> Option<&Value> {
        self.attributes.get(name)
    }

    /// The string values of an array attribute (such as `ai_lists`), empty when there is none.
    pub fn array(&self, name: &str) -> Vec<String> {
        self.attributes
            .get(name)
            .and_then(Value::as_array)
            .map(|items| items.iter().filter_map(|i| i.as_str().map(str::to_string)).collect())
            .unwrap_or_default()
    }
}

/// An event as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct BrazeEvent {
    /// The user's key, as in [`BrazeUser::id`].
    pub user: String,
    pub name: String,
    pub time: String,
    pub properties: Map<String, Value>,
}

struct Shared {
    config: FakeBrazeConfig,
    epoch: Instant,
    state: Mutex<FakeState>,
}

struct FakeState {
    mode: BrazeMode,
    refused: HashSet<String>,
    requests: Vec<BrazeRequest>,
    users: BTreeMap<String, BrazeUser>,
    /// Users deleted through `/users/delete`.
    deletions: usize,
    events: Vec<BrazeEvent>,
    purchases: Vec<Value>,
    /// The current window's index and the requests counted in it.
    window: (u64, u32),
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

fn new_shared(config: FakeBrazeConfig) -> Arc<Shared> {
    let state = FakeState {
        mode: config.mode.clone(),
        refused: HashSet::new(),
        requests: Vec::new(),
        users: BTreeMap::new(),
        deletions: 0,
        events: Vec::new(),
        purchases: Vec::new(),
        window: (0, 0),
    };
    Arc::new(Shared { config, epoch: Instant::now(), state: Mutex::new(state) })
}

/// Entry points for running the fake.
pub struct FakeBraze;

impl FakeBraze {
    /// Starts the fake on an ephemeral port of 127.0.0.1.
    pub async fn start(config: FakeBrazeConfig) -> Result<FakeBrazeHandle, TestkitError> {
        let shared = new_shared(config);
        let state = shared.clone();
        let server = crate::server::Running::start(|listener, stop| run(listener, state, stop)).await?;
        Ok(FakeBrazeHandle { server, shared })
    }

    /// Serves on `listener` until `shutdown` completes; for `nudge dev fake --kind braze`.
    pub async fn serve(
        listener: TcpListener,
        config: FakeBrazeConfig,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), TestkitError> {
        run(listener, new_shared(config), shutdown).await
    }
}

async fn run(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), TestkitError> {
    let app =
        Router::new().fallback(handle).with_state(shared).layer(DefaultBodyLimit::max(16 * 1024 * 1024));
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await.map_err(TestkitError::Serve)
}

/// What the fake answers: status, body, content type, extra headers, delay.
struct Answer {
    status: u16,
    body: String,
    content_type: &'static str,
    headers: Vec<(&'static str, String)>,
    delay: Option<Duration>,
}

impl Answer {
    fn json(status: u16, body: Value) -> Self {
        Answer {
            status,
            body: body.to_string(),
            content_type: "application/json",
            headers: Vec::new(),
            delay: None,
        }
    }

    fn message(status: u16, message: &str) -> Self {
        Self::json(status, json!({ "message": message }))
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let answer = decide(&shared, &method, uri.path(), &headers, &body);
    let recorded_headers = headers
        .iter()
        .map(|(n, v)| {
            let value = String::from_utf8_lossy(v.as_bytes()).into_owned();
            let value = if n.as_str() == "authorization" {
                if value == format!("Bearer {}", shared.config.api_key) {
                    "Bearer [the configured key]".to_string()
                } else {
                    "[redacted]".to_string()
                }
            } else {
                value
            };
            (n.as_str().to_string(), value)
        })
        .collect();
    shared.lock().requests.push(BrazeRequest {
        method: method.to_string(),
        path: uri.path().to_string(),
        headers: recorded_headers,
        body: body.to_vec(),
        objects: rules::object_count(&body),
        status: answer.status,
        response_body: answer.body.clone(),
    });
    if let Some(d) = answer.delay {
        tokio::time::sleep(d).await;
    }
    let mut response = Response::builder()
        .status(StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", answer.content_type)
        .body(Body::from(answer.body))
        .expect("a response builds");
    for (name, value) in answer.headers {
        if let Ok(v) = HeaderValue::from_str(&value) {
            response.headers_mut().insert(name, v);
        }
    }
    response
}

/// `POST /users/delete`: exactly one kind of identifier, 1 to 50 of them; the users (and their events)
/// are gone afterwards. Only `external_ids` name users this fake can find; the other kinds are accepted
/// and delete nothing here.
fn delete_users(state: &mut FakeState, body: &[u8]) -> Answer {
    const KINDS: [&str; 5] =
        ["external_ids", "user_aliases", "braze_ids", "email_addresses", "phone_numbers"];
    let Ok(Value::Object(doc)) = serde_json::from_slice::<Value>(body) else {
        return Answer::json(400, json!({"message": "Invalid JSON in request body"}));
    };
    let given: Vec<&str> = KINDS.iter().copied().filter(|k| doc.contains_key(*k)).collect();
    if given.len() != 1 || doc.len() != 1 {
        return Answer::json(
            400,
            json!({"message": "Exactly one of external_ids, user_aliases, braze_ids, email_addresses or phone_numbers is required"}),
        );
    }
    let Some(items) = doc.get(given[0]).and_then(Value::as_array) else {
        return Answer::json(400, json!({"message": format!("{} must be an array", given[0])}));
    };
    if items.is_empty() || items.len() > DELETE_CAP {
        return Answer::json(
            400,
            json!({"message": format!("{} must hold 1 to {DELETE_CAP} identifiers", given[0])}),
        );
    }
    let mut deleted = 0;
    if given[0] == "external_ids" {
        for id in items {
            let Some(id) = id.as_str() else {
                return Answer::json(400, json!({"message": "external_ids must be strings"}));
            };
            if state.users.remove(id).is_some() {
                deleted += 1;
            }
            state.events.retain(|e| e.user != id);
        }
    }
    state.deletions += deleted;
    Answer::json(200, json!({"deleted": deleted, "message": "success"}))
}

fn unix_now() -> u64 {
    u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0)
}

fn decide(shared: &Shared, method: &Method, path: &str, headers: &HeaderMap, body: &[u8]) -> Answer {
    let mut state = shared.lock();
    let mut answer = decide_locked(shared, &mut state, method, path, headers, body);
    // Braze's rate-limit headers, on every answer but a 429 (which carries X-Ratelimit-Retry-After only).
    if let Some(limit) = shared.config.rate_limit
        && answer.status != 429
    {
        let (index, used) = current_window(shared, &mut state);
        let reset = unix_now() + window_left(shared, index).as_secs().max(1);
        answer.headers.push(("x-ratelimit-limit", limit.to_string()));
        answer.headers.push(("x-ratelimit-remaining", limit.saturating_sub(used).to_string()));
        answer.headers.push(("x-ratelimit-reset", reset.to_string()));
    }
    answer
}

/// The current window's index and count, starting a new window when the old one has passed.
fn current_window(shared: &Shared, state: &mut FakeState) -> (u64, u32) {
    let index = (shared.epoch.elapsed().as_millis() / RATE_WINDOW.as_millis()) as u64;
    if state.window.0 != index {
        state.window = (index, 0);
    }
    state.window
}

fn window_left(shared: &Shared, index: u64) -> Duration {
    let end = RATE_WINDOW * u32::try_from(index + 1).unwrap_or(u32::MAX);
    end.saturating_sub(shared.epoch.elapsed())
}

fn decide_locked(
    shared: &Shared,
    state: &mut FakeState,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
) -> Answer {
    let mut delay = None;
    let mut queued = false;
    match state.mode.clone() {
        BrazeMode::Normal => {}
        BrazeMode::Throttle { retry_after_secs, count } => {
            state.mode = if count > 1 {
                BrazeMode::Throttle { retry_after_secs, count: count - 1 }
            } else {
                BrazeMode::Normal
            };
            let mut a = Answer::message(429, "Rate limit exceeded");
            a.headers.push(("x-ratelimit-retry-after", retry_after_secs.to_string()));
            return a;
        }
        BrazeMode::Fail { status, count } => {
            state.mode =
                if count > 1 { BrazeMode::Fail { status, count: count - 1 } } else { BrazeMode::Normal };
            let text =
                StatusCode::from_u16(status).ok().and_then(|s| s.canonical_reason()).unwrap_or("Error");
            return Answer::message(status, text);
        }
        BrazeMode::Slow(d) => delay = Some(d),
        BrazeMode::Queued => queued = true,
        BrazeMode::NotJson => {
            return Answer {
                status: 200,
                body: "<html><body>Scheduled maintenance</body></html>".into(),
                content_type: "text/html",
                headers: Vec::new(),
                delay: None,
            };
        }
    }
    let mut answer = decide_request(shared, state, method, path, headers, body, queued);
    answer.delay = delay;
    answer
}

fn decide_request(
    shared: &Shared,
    state: &mut FakeState,
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    body: &[u8],
    queued: bool,
) -> Answer {
    if path != TRACK_PATH && path != DELETE_PATH {
        return Answer::message(404, "Not Found");
    }
    if method != Method::POST {
        return Answer::message(405, &format!("Method Not Allowed: {path} takes POST"));
    }
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok()).map(str::trim);
    match auth.and_then(|a| a.strip_prefix("Bearer ")).map(str::trim) {
        None | Some("") => return Answer::message(401, "Unknown or missing REST API key"),
        Some(key) if key != shared.config.api_key => {
            return Answer::message(401, &format!("Invalid API key: {key}"));
        }
        Some(_) => {}
    }
    let json_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|t| t.trim().eq_ignore_ascii_case("application/json"));
    if !json_type {
        return Answer::message(415, "Content-Type must be application/json");
    }
    if let Some(limit) = shared.config.rate_limit {
        let (index, used) = current_window(shared, state);
        if used >= limit {
            let wait = window_left(shared, index).as_secs_f64().ceil().max(1.0) as u64;
            let mut a = Answer::message(429, "Rate limit exceeded");
            a.headers.push(("x-ratelimit-retry-after", wait.to_string()));
            return a;
        }
        state.window.1 += 1;
    }
    if path == DELETE_PATH {
        return delete_users(state, body);
    }
    let sections = match rules::sections(body, shared.config.batch_cap) {
        Ok(s) => s,
        Err((status, message)) => return Answer::json(status, message),
    };
    let mut errors = Vec::new();
    let mut response = Map::new();
    response.insert("message".into(), Value::from("success"));
    let mut refuse = |section: &str, index: usize, reason: String| {
        errors.push(json!({"type": reason, "input_array": section, "index": index}));
    };
    let refused = |state: &FakeState, object: &Map<String, Value>| {
        object
            .get("external_id")
            .and_then(Value::as_str)
            .filter(|id| state.refused.contains(*id))
            .map(|id| format!("external_id '{id}' is blocked from updates in this workspace"))
    };
    if let Some(items) = &sections.attributes {
        let mut processed = 0;
        for (i, item) in items.iter().enumerate() {
            let checked = match item.as_object() {
                None => Err("Each attributes item must be an object".to_string()),
                Some(o) => rules::check_attributes(o)
                    .and_then(|()| refused(state, o).map_or(Ok(()), Err))
                    .map(|()| o),
            };
            match checked {
                Ok(object) => {
                    let key = rules::user_key(object);
                    let user = state
                        .users
                        .entry(key.clone())
                        .or_insert_with(|| BrazeUser { id: key, attributes: Map::new() });
                    rules::apply_attributes(&mut user.attributes, object);
                    processed += 1;
                }
                Err(reason) => refuse("attributes", i, reason),
            }
        }
        response.insert("attributes_processed".into(), Value::from(processed));
    }
    if let Some(items) = &sections.events {
        let mut processed = 0;
        for (i, item) in items.iter().enumerate() {
            let checked = match item.as_object() {
                None => Err("Each events item must be an object".to_string()),
                Some(o) => {
                    rules::check_event(o).and_then(|()| refused(state, o).map_or(Ok(()), Err)).map(|()| o)
                }
            };
            match checked {
                Ok(object) => {
                    let user = rules::user_key(object);
                    state
                        .users
                        .entry(user.clone())
                        .or_insert_with(|| BrazeUser { id: user.clone(), attributes: Map::new() });
                    let text =
                        |f: &str| object.get(f).and_then(Value::as_str).unwrap_or_default().to_string();
                    state.events.push(BrazeEvent {
                        user,
                        name: text("name"),
                        time: text("time"),
                        properties: object
                            .get("properties")
                            .and_then(Value::as_object)
                            .cloned()
                            .unwrap_or_default(),
                    });
                    processed += 1;
                }
                Err(reason) => refuse("events", i, reason),
            }
        }
        response.insert("events_processed".into(), Value::from(processed));
    }
    if let Some(items) = &sections.purchases {
        let mut processed = 0;
        for (i, item) in items.iter().enumerate() {
            let checked = match item.as_object() {
                None => Err("Each purchases item must be an object".to_string()),
                Some(o) => rules::check_purchase(o).and_then(|()| refused(state, o).map_or(Ok(()), Err)),
            };
            match checked {
                Ok(()) => {
                    state.purchases.push(item.clone());
                    processed += 1;
                }
                Err(reason) => refuse("purchases", i, reason),
            }
        }
        response.insert("purchases_processed".into(), Value::from(processed));
    }
    if queued {
        return Answer::message(202, "queued");
    }
    if !errors.is_empty() {
        response.insert("errors".into(), Value::Array(errors));
    }
    Answer::json(200, Value::Object(response))
}

/// A running fake; inspect what it received and stored, switch its mode, stop it.
pub struct FakeBrazeHandle {
    server: crate::server::Running,
    shared: Arc<Shared>,
}

impl FakeBrazeHandle {
    /// `http://127.0.0.1:<port>`, to use as the client's `rest_endpoint`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    pub fn api_key(&self) -> &str {
        &self.shared.config.api_key
    }

    pub fn set_mode(&self, mode: BrazeMode) {
        self.shared.lock().mode = mode;
    }

    pub fn mode(&self) -> BrazeMode {
        self.shared.lock().mode.clone()
    }

    /// From now on, records for this `external_id` come back in `errors[]` of a 200 success (with their
    /// `input_array` and `index`) and are not stored.
    pub fn reject_external_id(&self, external_id: &str) {
        self.shared.lock().refused.insert(external_id.to_string());
    }

    /// Accepts every customer again.
    pub fn clear_rejections(&self) {
        self.shared.lock().refused.clear();
    }

    /// Every request received, oldest first.
    pub fn requests(&self) -> Vec<BrazeRequest> {
        self.shared.lock().requests.clone()
    }

    pub fn clear_requests(&self) {
        self.shared.lock().requests.clear();
    }

    /// How many users `/users/delete` has deleted.
    pub fn deletions(&self) -> usize {
        self.shared.lock().deletions
    }

    /// Every stored user, ordered by key.
    pub fn users(&self) -> Vec<BrazeUser> {
        self.shared.lock().users.values().cloned().collect()
    }

    /// The user stored under `id` (an `external_id`, or a key as in [`BrazeUser::id`]).
    pub fn user(&self, id: &str) -> Option<BrazeUser> {
        self.shared.lock().users.get(id).cloned()
    }

    /// Every stored event, oldest first.
    pub fn events(&self) -> Vec<BrazeEvent> {
        self.shared.lock().events.clone()
    }

    /// Every stored purchase object, oldest first.
    pub fn purchases(&self) -> Vec<Value> {
        self.shared.lock().purchases.clone()
    }

    pub async fn shutdown(mut self) {
        self.server.shutdown().await;
    }
}
