//! A fake HubSpot CRM API that enforces the contract nudge relies on and remembers what it accepted:
//! `POST /crm/v3/objects/contacts/batch/upsert`, `POST /crm/v3/properties/contacts/groups`,
//! `POST /crm/v3/properties/contacts/batch/create` and `POST /crm/v3/properties/contacts`.
//!
//! Checks, in the order a request meets them: the failure mode set by the test ([`HubSpotMode`]), the
//! path and method (404/405), `Authorization: Bearer <token>` (401, category `INVALID_AUTHENTICATION`),
//! the rate limit (429 with `policyName` `SECONDLY` when more requests than allowed arrive in any 10 s,
//! `DAILY` past the daily allowance), `Content-Type: application/json` (415), the JSON (400), then the
//! endpoint's rules. Every error is HubSpot's JSON document (`status`, `message`, `correlationId`,
//! `category`), and every answer carries the `X-HubSpot-RateLimit-*` headers when a limit is set.
//!
//! Batch upsert: 1–100 inputs, each `idProperty:"email"` with an `id` and an `objectWriteTraceId`
//! unique in the batch, no email twice (400 for the whole batch otherwise). Then per input: an invalid
//! email, an email refused on demand ([`FakeHubSpotHandle::reject_email`]), a property that is neither
//! standard nor created (`PROPERTY_DOESNT_EXIST`), a value that is not a JSON string (nudge's contract is
//! strings only; HubSpot itself coerces some other JSON values) or one its property's type cannot hold, fails
//! that input alone: the answer is `207` with `errors[]` entries carrying `category`
//! (`VALIDATION_ERROR`), `message` and `context.objectWriteTraceId` (an array, as HubSpot sends it).
//! Inputs that pass are merged into the stored contact of that email (`200` when all pass).
//!
//! Property group and property creation: definitions are checked (internal names, type and field type
//! that go together, an existing group, true/false options for `bool`); a name that exists (standard
//! or created) answers `409` `OBJECT_ALREADY_EXISTS` — for a batch, the whole batch, creating none.
//!
//! Layout: `rules` holds the checks and error documents; this file the state, the HTTP handler and the
//! handle tests use.

pub mod rules;

pub use rules::{ApiError, CreatedProperty, MAX_BATCH_INPUTS, MAX_STRING_VALUE_CHARS, STANDARD_PROPERTIES};

use crate::TestkitError;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::net::TcpListener;
use tokio::time::Instant;

/// The token the fake accepts unless configured otherwise.
pub const DEFAULT_TOKEN: &str = "pat-na1-fake-hubspot-token";
pub const UPSERT_PATH: &str = "/crm/v3/objects/contacts/batch/upsert";
pub const GROUPS_PATH: &str = "/crm/v3/properties/contacts/groups";
pub const PROPERTIES_BATCH_PATH: &str = "/crm/v3/properties/contacts/batch/create";
pub const PROPERTIES_PATH: &str = "/crm/v3/properties/contacts";
/// The GDPR deletion endpoint.
pub const GDPR_DELETE_PATH: &str = "/crm/v3/objects/contacts/gdpr-delete";

const WINDOW: Duration = Duration::from_secs(10);

/// How the fake is set up.
#[derive(Debug, Clone)]
pub struct FakeHubSpotConfig {
    /// The only private-app token accepted.
    pub access_token: String,
    /// Requests allowed in any 10 s before 429 (`SECONDLY`); `None` for no limit.
    pub per_ten_seconds: Option<u32>,
    /// Requests allowed in the fake's lifetime before 429 (`DAILY`); `None` for no limit.
    pub per_day: Option<u32>,
}

impl FakeHubSpotConfig {
    /// Accepts `access_token`, with the Free/Starter limit of 100 requests per 10 s and no daily limit.
    pub fn new(access_token: impl Into<String>) -> Self {
        FakeHubSpotConfig { access_token: access_token.into(), per_ten_seconds: Some(100), per_day: None }
    }

    /// The same without a rate limit.
    pub fn unlimited(mut self) -> Self {
        self.per_ten_seconds = None;
        self.per_day = None;
        self
    }
}

impl Default for FakeHubSpotConfig {
    fn default() -> Self {
        Self::new(DEFAULT_TOKEN)
    }
}

/// How the fake answers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum HubSpotMode {
    #[default]
    Normal,
    /// Answer the next `count` requests with 429 (`SECONDLY`) and `Retry-After: retry_after_secs`.
    Throttle { retry_after_secs: u64, count: u32 },
    /// Answer the next `count` requests with `status` and HubSpot's error document.
    Fail { status: u16, count: u32 },
    /// Handle normally but hold each answer back this long.
    Slow(Duration),
}

/// One request as received, with the status it was answered with.
#[derive(Debug, Clone, PartialEq)]
pub struct HubSpotRequest {
    pub method: String,
    pub path: String,
    pub authorization: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    pub status: u16,
}

impl HubSpotRequest {
    /// The body as JSON, if it is.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }

    /// For a batch upsert with a readable body, how many inputs it carried.
    pub fn upsert_inputs(&self) -> Option<usize> {
        if self.path != UPSERT_PATH {
            return None;
        }
        self.json()?.get("inputs")?.as_array().map(Vec::len)
    }
}

/// A contact as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredContact {
    /// HubSpot's object id.
    pub id: String,
    /// The email as first written.
    pub email: String,
    /// Every property written, merged (later writes win).
    pub properties: BTreeMap<String, String>,
    /// How many upserts wrote to it.
    pub writes: u32,
}

struct Shared {
    config: FakeHubSpotConfig,
    state: Mutex<FakeState>,
}

#[derive(Default)]
struct FakeState {
    mode: HubSpotMode,
    requests: Vec<HubSpotRequest>,
    /// By lowercased email.
    contacts: BTreeMap<String, StoredContact>,
    groups: BTreeMap<String, String>,
    properties: BTreeMap<String, CreatedProperty>,
    /// Lowercased email → the message its refusal carries.
    refused: HashMap<String, String>,
    recent: VecDeque<Instant>,
    /// Emails a GDPR deletion found no contact for (HubSpot blocks them from being used again).
    blocklisted: std::collections::BTreeSet<String>,
    today: u32,
    next_id: u64,
}

impl Shared {
    fn new(config: FakeHubSpotConfig) -> Arc<Self> {
        Arc::new(Shared { config, state: Mutex::new(FakeState { next_id: 1001, ..FakeState::default() }) })
    }

    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct FakeHubSpot;

impl FakeHubSpot {
    /// Starts the fake on an ephemeral port of 127.0.0.1.
    pub async fn start(config: FakeHubSpotConfig) -> Result<FakeHubSpotHandle, TestkitError> {
        let shared = Shared::new(config);
        let state = shared.clone();
        let server = crate::server::Running::start(|listener, stop| run(listener, state, stop)).await?;
        Ok(FakeHubSpotHandle { server, shared })
    }

    /// Serves on `listener` until `shutdown`; for `nudge dev fake --kind hubspot`.
    pub async fn serve(
        listener: TcpListener,
        config: FakeHubSpotConfig,
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
    let app = Router::new().fallback(handle).with_state(shared);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await.map_err(TestkitError::Serve)
}

/// A limit and what is left of it, for the `X-HubSpot-RateLimit-*` headers.
type Left = Option<(u32, u32)>;

/// What the fake answers.
struct Answer {
    status: u16,
    body: Value,
    retry_after: Option<u64>,
    delay: Option<Duration>,
    /// (limit, remaining) of the 10 s window and of the day, for the headers.
    limits: (Left, Left),
}

impl Answer {
    fn new(status: u16, body: Value) -> Self {
        Answer { status, body, retry_after: None, delay: None, limits: (None, None) }
    }

    fn error(e: ApiError) -> Self {
        Self::new(e.status, e.body())
    }
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_string);
    let authorization = header("authorization");
    let content_type = header("content-type");
    let path = uri.path().to_string();
    let answer = {
        let mut state = shared.lock();
        let answer = decide(
            &shared.config,
            &mut state,
            &method,
            &path,
            authorization.as_deref(),
            content_type.as_deref(),
            &body,
        );
        state.requests.push(HubSpotRequest {
            method: method.to_string(),
            path,
            authorization,
            content_type,
            body: body.to_vec(),
            status: answer.status,
        });
        answer
    };
    if let Some(d) = answer.delay {
        tokio::time::sleep(d).await;
    }
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(answer.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json;charset=utf-8");
    if let Some(secs) = answer.retry_after {
        builder = builder.header("retry-after", secs.to_string());
    }
    if let (Some((max, remaining)), _) = answer.limits {
        builder = builder
            .header("x-hubspot-ratelimit-max", max.to_string())
            .header("x-hubspot-ratelimit-remaining", remaining.to_string())
            .header("x-hubspot-ratelimit-interval-milliseconds", WINDOW.as_millis().to_string())
            .header("x-hubspot-ratelimit-secondly", max.div_ceil(10).to_string())
            .header("x-hubspot-ratelimit-secondly-remaining", remaining.div_ceil(10).to_string());
    }
    if let (_, Some((max, remaining))) = answer.limits {
        builder = builder
            .header("x-hubspot-ratelimit-daily", max.to_string())
            .header("x-hubspot-ratelimit-daily-remaining", remaining.to_string());
    }
    let body = if answer.body.is_null() { String::new() } else { answer.body.to_string() };
    builder.body(Body::from(body)).expect("a JSON response builds")
}

fn rate_limited(policy: &str, message: &str) -> Value {
    json!({
        "status": "error",
        "message": message,
        "errorType": "RATE_LIMIT",
        "correlationId": uuid::Uuid::new_v4().to_string(),
        "policyName": policy,
        "groupName": "api-calls-private-app",
    })
}

fn decide(
    config: &FakeHubSpotConfig,
    state: &mut FakeState,
    method: &Method,
    path: &str,
    authorization: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Answer {
    let mut delay = None;
    match state.mode.clone() {
        HubSpotMode::Normal => {}
        HubSpotMode::Throttle { retry_after_secs, count } => {
            state.mode = if count > 1 {
                HubSpotMode::Throttle { retry_after_secs, count: count - 1 }
            } else {
                HubSpotMode::Normal
            };
            let mut answer =
                Answer::new(429, rate_limited("SECONDLY", "You have reached your secondly limit."));
            answer.retry_after = Some(retry_after_secs);
            return answer;
        }
        HubSpotMode::Fail { status, count } => {
            state.mode =
                if count > 1 { HubSpotMode::Fail { status, count: count - 1 } } else { HubSpotMode::Normal };
            let category = if status >= 500 { "INTERNAL_ERROR" } else { "VALIDATION_ERROR" };
            return Answer::error(ApiError::new(
                status,
                category,
                format!("The fake was told to answer {status}."),
            ));
        }
        HubSpotMode::Slow(d) => delay = Some(d),
    }
    let mut answer = route(config, state, method, path, authorization, content_type, body);
    answer.delay = delay;
    answer
}

fn route(
    config: &FakeHubSpotConfig,
    state: &mut FakeState,
    method: &Method,
    path: &str,
    authorization: Option<&str>,
    content_type: Option<&str>,
    body: &[u8],
) -> Answer {
    let known = [UPSERT_PATH, GROUPS_PATH, PROPERTIES_BATCH_PATH, PROPERTIES_PATH, GDPR_DELETE_PATH];
    if !known.contains(&path) {
        return Answer::error(ApiError::new(404, "OBJECT_NOT_FOUND", format!("No route for {path}.")));
    }
    if method != Method::POST {
        return Answer::error(ApiError::new(
            405,
            "VALIDATION_ERROR",
            format!("{method} is not allowed on {path}."),
        ));
    }
    let expected = format!("Bearer {}", config.access_token);
    if authorization != Some(expected.as_str()) {
        let message = if authorization.is_some_and(|a| a.starts_with("Bearer ")) {
            "Authentication credentials not found. This API supports OAuth 2.0 authentication and you can find more details at https://developers.hubspot.com/docs/methods/auth/oauth-overview"
        } else {
            "Authentication credentials not found."
        };
        return Answer::error(ApiError::new(401, "INVALID_AUTHENTICATION", message));
    }
    let now = Instant::now();
    let mut limits = (None, None);
    if let Some(max) = config.per_ten_seconds {
        while state.recent.front().is_some_and(|t| now.duration_since(*t) >= WINDOW) {
            state.recent.pop_front();
        }
        let used = u32::try_from(state.recent.len()).unwrap_or(u32::MAX);
        if used >= max {
            let mut answer =
                Answer::new(429, rate_limited("SECONDLY", "You have reached your secondly limit."));
            answer.limits = (Some((max, 0)), None);
            return answer;
        }
        state.recent.push_back(now);
        limits.0 = Some((max, max - used - 1));
    }
    if let Some(max) = config.per_day {
        if state.today >= max {
            let mut answer = Answer::new(429, rate_limited("DAILY", "You have reached your daily limit."));
            answer.limits = (limits.0, Some((max, 0)));
            return answer;
        }
        state.today += 1;
        limits.1 = Some((max, max - state.today));
    }
    let mut answer = endpoint(state, path, content_type, body);
    answer.limits = limits;
    answer
}

fn endpoint(state: &mut FakeState, path: &str, content_type: Option<&str>, body: &[u8]) -> Answer {
    if content_type.and_then(|t| t.split(';').next()).is_none_or(|t| t.trim() != "application/json") {
        return Answer::error(ApiError::new(
            415,
            "VALIDATION_ERROR",
            "Content-Type must be application/json.",
        ));
    }
    let json: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => {
            return Answer::error(ApiError::validation(format!("Invalid input JSON on line {}", e.line())));
        }
    };
    let result = match path {
        UPSERT_PATH => upsert(state, &json),
        GROUPS_PATH => create_group(state, &json),
        PROPERTIES_BATCH_PATH => create_properties(state, &json),
        GDPR_DELETE_PATH => gdpr_delete(state, &json),
        _ => create_property(state, &json),
    };
    result.unwrap_or_else(Answer::error)
}

/// `{"objectId": <email>, "idProperty": "email"}` (or a contact id without `idProperty`): the contact is
/// gone; an email with no contact is blocklisted. 204 without a body.
fn gdpr_delete(state: &mut FakeState, body: &Value) -> Result<Answer, ApiError> {
    let object = body.get("objectId").and_then(Value::as_str).map(str::trim).unwrap_or_default();
    if object.is_empty() {
        return Err(ApiError::validation("objectId is required.".to_string()));
    }
    match body.get("idProperty").and_then(Value::as_str) {
        Some("email") => {
            let email = object.to_lowercase();
            if state.contacts.remove(&email).is_none() {
                state.blocklisted.insert(email);
            }
        }
        Some(other) => {
            return Err(ApiError::validation(format!("idProperty `{other}` is not a unique property.")));
        }
        None => {
            let before = state.contacts.len();
            state.contacts.retain(|_, c| c.id != object);
            if state.contacts.len() == before {
                return Err(ApiError::new(404, "OBJECT_NOT_FOUND", format!("No contact with id {object}.")));
            }
        }
    }
    Ok(Answer::new(204, Value::Null))
}

fn property_exists(state: &FakeState, name: &str) -> bool {
    STANDARD_PROPERTIES.contains(&name) || state.properties.contains_key(name)
}

fn create_group(state: &mut FakeState, body: &Value) -> Result<Answer, ApiError> {
    let name = body.get("name").and_then(Value::as_str).unwrap_or_default();
    let label = body.get("label").and_then(Value::as_str).map(str::trim).unwrap_or_default();
    if !rules::is_internal_name(name) {
        return Err(ApiError::validation(format!(
            "group name {name:?} is invalid: use lowercase letters, digits and _"
        )));
    }
    if label.is_empty() {
        return Err(ApiError::validation("group `label` is required"));
    }
    if state.groups.contains_key(name) {
        return Err(ApiError::exists(format!("A property group with name {name} already exists.")));
    }
    state.groups.insert(name.to_string(), label.to_string());
    Ok(Answer::new(201, json!({"name": name, "label": label, "displayOrder": -1, "archived": false})))
}

fn create_properties(state: &mut FakeState, body: &Value) -> Result<Answer, ApiError> {
    let inputs = body
        .get("inputs")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::validation("Invalid input JSON: `inputs` must be an array"))?;
    if inputs.is_empty() || inputs.len() > MAX_BATCH_INPUTS {
        return Err(ApiError::validation(format!("Batch input must contain 1–{MAX_BATCH_INPUTS} inputs")));
    }
    let mut defs: Vec<CreatedProperty> = Vec::new();
    for input in inputs {
        let def = rules::property_definition(input, |g| state.groups.contains_key(g))?;
        if property_exists(state, &def.name) || defs.iter().any(|d| d.name == def.name) {
            return Err(ApiError::exists(format!("A property named {} already exists.", def.name)));
        }
        defs.push(def);
    }
    let results: Vec<Value> = defs.iter().map(CreatedProperty::to_json).collect();
    for def in defs {
        state.properties.insert(def.name.clone(), def);
    }
    Ok(Answer::new(201, json!({"status": "COMPLETE", "results": results})))
}

fn create_property(state: &mut FakeState, body: &Value) -> Result<Answer, ApiError> {
    let def = rules::property_definition(body, |g| state.groups.contains_key(g))?;
    if property_exists(state, &def.name) {
        return Err(ApiError::exists(format!("A property named {} already exists.", def.name)));
    }
    let shown = def.to_json();
    state.properties.insert(def.name.clone(), def);
    Ok(Answer::new(201, shown))
}

fn now_text() -> String {
    OffsetDateTime::now_utc().format(&Rfc3339).unwrap_or_default()
}

fn upsert(state: &mut FakeState, body: &Value) -> Result<Answer, ApiError> {
    let started = now_text();
    let inputs = rules::upsert_inputs(body)?;
    let mut results = Vec::new();
    let mut errors = Vec::new();
    for input in inputs {
        let key = input.id.trim().to_lowercase();
        if let Some(message) = state.refused.get(&key) {
            errors.push(rules::record_error(&input.trace_id, "VALIDATION_ERROR", message));
            continue;
        }
        let mut problems: Vec<(String, &str, String)> = Vec::new();
        if !rules::is_valid_email(input.id.trim()) {
            problems.push((
                "email".into(),
                "INVALID_EMAIL",
                format!("Email address {} is invalid", input.id),
            ));
        }
        if let Some(email) = input.properties.get("email")
            && email.as_str().is_none_or(|e| !e.trim().eq_ignore_ascii_case(input.id.trim()))
        {
            problems.push(("email".into(), "INVALID_EMAIL", "the email property differs from the id".into()));
        }
        let mut values = BTreeMap::new();
        for (name, value) in &input.properties {
            let Some(text) = value.as_str() else {
                problems.push((name.clone(), "INVALID_PROPERTY_VALUE", format!("{value} is not a string")));
                continue;
            };
            if !property_exists(state, name) {
                problems.push((
                    name.clone(),
                    "PROPERTY_DOESNT_EXIST",
                    format!("Property \"{name}\" does not exist"),
                ));
                continue;
            }
            let problem = match state.properties.get(name) {
                Some(def) => def.value_problem(text),
                None => (text.chars().count() > MAX_STRING_VALUE_CHARS)
                    .then(|| format!("value of {name} is longer than {MAX_STRING_VALUE_CHARS} characters")),
            };
            if let Some(problem) = problem {
                problems.push((name.clone(), "INVALID_PROPERTY_VALUE", problem));
                continue;
            }
            values.insert(name.clone(), text.to_string());
        }
        if !problems.is_empty() {
            let message = rules::invalid_values_message(&problems);
            errors.push(rules::record_error(&input.trace_id, "VALIDATION_ERROR", &message));
            continue;
        }
        let is_new = !state.contacts.contains_key(&key);
        if is_new {
            let id = state.next_id.to_string();
            state.next_id += 1;
            state.contacts.insert(
                key.clone(),
                StoredContact {
                    id,
                    email: input.id.trim().to_string(),
                    properties: BTreeMap::new(),
                    writes: 0,
                },
            );
        }
        let contact = state.contacts.get_mut(&key).expect("just ensured");
        contact.properties.extend(values);
        contact.writes += 1;
        let properties: Map<String, Value> =
            contact.properties.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        results.push(json!({
            "id": contact.id,
            "properties": properties,
            "createdAt": started,
            "updatedAt": now_text(),
            "archived": false,
            "new": is_new,
        }));
    }
    let completed = now_text();
    if errors.is_empty() {
        Ok(Answer::new(
            200,
            json!({"status": "COMPLETE", "results": results, "startedAt": started, "completedAt": completed}),
        ))
    } else {
        Ok(Answer::new(
            207,
            json!({"status": "COMPLETE", "results": results, "numErrors": errors.len(), "errors": errors,
                   "startedAt": started, "completedAt": completed}),
        ))
    }
}

/// A running fake; inspect what it received and stored, switch its mode, stop it.
pub struct FakeHubSpotHandle {
    server: crate::server::Running,
    shared: Arc<Shared>,
}

impl FakeHubSpotHandle {
    /// The base URL to configure (`http://127.0.0.1:<port>`).
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    pub fn set_mode(&self, mode: HubSpotMode) {
        self.shared.lock().mode = mode;
    }

    /// Every request received, oldest first.
    pub fn requests(&self) -> Vec<HubSpotRequest> {
        self.shared.lock().requests.clone()
    }

    /// How many inputs each batch upsert received so far carried, oldest first.
    pub fn upsert_batch_sizes(&self) -> Vec<usize> {
        self.shared.lock().requests.iter().filter_map(HubSpotRequest::upsert_inputs).collect()
    }

    /// The stored contacts, by email.
    pub fn contacts(&self) -> Vec<StoredContact> {
        self.shared.lock().contacts.values().cloned().collect()
    }

    /// The stored contact of `email` (any case).
    pub fn contact(&self, email: &str) -> Option<StoredContact> {
        self.shared.lock().contacts.get(&email.trim().to_lowercase()).cloned()
    }

    /// The properties created so far (standard ones are not listed).
    pub fn properties(&self) -> Vec<CreatedProperty> {
        self.shared.lock().properties.values().cloned().collect()
    }

    /// The property groups created so far, as (name, label).
    pub fn groups(&self) -> Vec<(String, String)> {
        self.shared.lock().groups.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Makes every later upsert input for `email` fail in a 207 (`VALIDATION_ERROR`).
    pub fn reject_email(&self, email: &str) {
        let message =
            format!("Property values were not valid: contact {} is blocked by the fake", email.trim());
        self.shared.lock().refused.insert(email.trim().to_lowercase(), message);
    }

    /// Undoes every [`FakeHubSpotHandle::reject_email`].
    pub fn clear_rejections(&self) {
        self.shared.lock().refused.clear();
    }

    /// Creates a group as if it had been made in HubSpot's UI.
    pub fn add_group(&self, name: &str) {
        self.shared.lock().groups.insert(name.to_string(), name.to_string());
    }

    /// Creates a property as if it had been made in HubSpot's UI (`kind` is HubSpot's `type`).
    pub fn add_property(&self, name: &str, kind: &str, group: &str) {
        let field_type = match kind {
            "number" => "number",
            "bool" => "booleancheckbox",
            "date" | "datetime" => "date",
            _ => "text",
        };
        let options = if kind == "bool" { vec!["true".to_string(), "false".to_string()] } else { Vec::new() };
        let def = CreatedProperty {
            name: name.to_string(),
            label: name.to_string(),
            kind: kind.to_string(),
            field_type: field_type.to_string(),
            group_name: group.to_string(),
            options,
        };
        self.shared.lock().properties.insert(name.to_string(), def);
    }

    /// Deletes a created property (as an admin could in HubSpot).
    pub fn remove_property(&self, name: &str) {
        self.shared.lock().properties.remove(name);
    }

    pub async fn shutdown(mut self) {
        self.server.shutdown().await;
    }
}
