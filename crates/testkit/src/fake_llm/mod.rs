//! A fake OpenAI-compatible Chat Completions server (`POST /v1/chat/completions`, `GET /health`).
//!
//! It enforces the request contract nudge relies on and answers as the real servers do:
//! - `Authorization: Bearer <key>` must match (401 `invalid_api_key` otherwise);
//! - the body must be a JSON object (400), with the configured `model` (404 `model_not_found`), non-empty
//!   `messages` whose roles are known and whose `content` is a string, `response_format` of type
//!   `json_schema` with a `name` matching `[a-zA-Z0-9_-]{1,64}` and an object `schema`, no streaming, and the
//!   token cap under the profile's field (`max_completion_tokens` for [`LlmProfile::Openai`], `max_tokens`
//!   for [`LlmProfile::Ollama`]) between 1 and the model's limit (400 `invalid_request_error`).
//!
//! A valid request gets a deterministic completion derived from the prompt: a JSON object with every
//! property of the schema, each a short phrase built from the prompt's words and a hash of the messages,
//! cut to the property's `maxLength`. `usage` counts four characters a token.
//!
//! Failures on demand, as a queue of one-off answers ([`FakeLlmHandle::push`]) or a standing mode
//! ([`FakeLlmHandle::set_mode`]): 429 with `retry-after-ms` / `retry-after` / `x-should-retry` /
//! `x-ratelimit-*`, 429 `insufficient_quota`, 5xx, a 200 whose content is not JSON, a body that is not
//! JSON, over-long slots, `finish_reason:"length"`, a refusal, no `usage`, a hang, and scripted content;
//! plus latency added to every answer and a llama.cpp-style `/health` 503 while "loading". Every request
//! body is recorded so tests can scan what left nudge.

use crate::TestkitError;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::{Map, Value, json};
use std::collections::VecDeque;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::TcpListener;

/// The API key the fake accepts unless told otherwise.
pub const DEFAULT_API_KEY: &str = "sk-fake-llm-0001";
/// The model the fake serves unless told otherwise.
pub const DEFAULT_MODEL: &str = "fake-copywriter-1";

/// Which server's dialect the fake speaks for the token cap.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LlmProfile {
    /// Requires `max_completion_tokens`.
    #[default]
    Openai,
    /// Requires `max_tokens` (Ollama ignores `max_completion_tokens`).
    Ollama,
}

impl LlmProfile {
    pub fn token_field(self) -> &'static str {
        match self {
            LlmProfile::Openai => "max_completion_tokens",
            LlmProfile::Ollama => "max_tokens",
        }
    }
}

#[derive(Debug, Clone)]
pub struct FakeLlmConfig {
    pub api_key: String,
    pub model: String,
    pub profile: LlmProfile,
    /// The largest token cap a request may ask for.
    pub max_tokens_limit: u64,
}

impl Default for FakeLlmConfig {
    fn default() -> Self {
        FakeLlmConfig {
            api_key: DEFAULT_API_KEY.into(),
            model: DEFAULT_MODEL.into(),
            profile: LlmProfile::Openai,
            max_tokens_limit: 4096,
        }
    }
}

/// How the fake answers a request that passed the contract checks.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LlmAnswer {
    /// The deterministic completion.
    #[default]
    Normal,
    /// 429 `rate_limit_exceeded` with these headers (each only when set).
    RateLimited {
        retry_after_ms: Option<u64>,
        retry_after: Option<String>,
        should_retry: Option<bool>,
        /// `x-ratelimit-remaining-requests: 0` and `x-ratelimit-reset-requests: <this>` (`"1s"`, `"6m0s"`).
        reset_requests: Option<String>,
    },
    /// 429 `insufficient_quota` (billing; never to be retried).
    InsufficientQuota,
    /// This status with an `api_error` body.
    ServerError(u16),
    /// 200 whose message content is prose, not JSON.
    Malformed,
    /// 200 whose body is not JSON at all.
    BrokenBody,
    /// 200 whose slots are 10 characters over their `maxLength`.
    OverLong,
    /// 200 with half a JSON object and `finish_reason:"length"`.
    Truncated,
    /// 200 with `content:null` and a `refusal`.
    Refusal,
    /// The completion without `usage` (as some local servers answer).
    NoUsage,
    /// Never answers (until the client gives up).
    Hang,
    /// 200 whose message content is exactly this text: a scripted answer (a JSON object of the slots, for
    /// a test that needs particular copy).
    Content(String),
}

/// One request as received.
#[derive(Debug, Clone, PartialEq)]
pub struct LlmRequest {
    pub method: String,
    pub path: String,
    /// Whether the bearer token matched.
    pub authorized: bool,
    /// The raw body, as text.
    pub body: String,
    pub status: u16,
}

struct Shared {
    config: FakeLlmConfig,
    state: Mutex<FakeState>,
}

#[derive(Default)]
struct FakeState {
    mode: LlmAnswer,
    queue: VecDeque<LlmAnswer>,
    latency: Duration,
    loading: bool,
    requests: Vec<LlmRequest>,
    served: u64,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct FakeLlm;

impl FakeLlm {
    /// Starts the fake on an ephemeral port of 127.0.0.1.
    pub async fn start(config: FakeLlmConfig) -> Result<FakeLlmHandle, TestkitError> {
        let shared = Arc::new(Shared { config, state: Mutex::new(FakeState::default()) });
        let state = shared.clone();
        let server = crate::server::Running::start(|listener, stop| run(listener, state, stop)).await?;
        Ok(FakeLlmHandle { server, shared })
    }

    /// Serves on `listener` until `shutdown`, with `latency` added to every answer; for
    /// `nudge dev fake --kind llm`.
    pub async fn serve(
        listener: TcpListener,
        config: FakeLlmConfig,
        latency: Duration,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), TestkitError> {
        let shared =
            Arc::new(Shared { config, state: Mutex::new(FakeState { latency, ..FakeState::default() }) });
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

/// An answer before its delay: status, extra headers, body.
struct Reply {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
    hang: bool,
}

fn error(status: u16, message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> Reply {
    let body = json!({"error": {"message": message, "type": kind, "param": param, "code": code}});
    Reply { status, headers: Vec::new(), body: body.to_string(), hang: false }
}

fn invalid(message: &str, param: &str) -> Reply {
    error(400, message, "invalid_request_error", Some(param), None)
}

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let expected = format!("Bearer {}", shared.config.api_key);
    let authorized = headers.get("authorization").and_then(|v| v.to_str().ok()) == Some(expected.as_str());
    let reply = decide(&shared, &method, uri.path(), authorized, &headers, &body);
    let latency = {
        let mut state = shared.lock();
        state.requests.push(LlmRequest {
            method: method.to_string(),
            path: uri.path().to_string(),
            authorized,
            body: String::from_utf8_lossy(&body).into_owned(),
            status: reply.status,
        });
        state.latency
    };
    if reply.hang {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(reply.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "application/json");
    for (name, value) in reply.headers {
        builder = builder.header(name, value);
    }
    builder.body(Body::from(reply.body)).expect("a JSON response builds")
}

fn decide(
    shared: &Shared,
    method: &Method,
    path: &str,
    authorized: bool,
    headers: &HeaderMap,
    body: &[u8],
) -> Reply {
    if path == "/health" && method == Method::GET {
        return if shared.lock().loading {
            let body =
                json!({"error": {"code": 503, "message": "Loading model", "type": "unavailable_error"}});
            Reply { status: 503, headers: Vec::new(), body: body.to_string(), hang: false }
        } else {
            Reply { status: 200, headers: Vec::new(), body: r#"{"status":"ok"}"#.into(), hang: false }
        };
    }
    if path != "/v1/chat/completions" {
        return error(
            404,
            &format!("Unknown request URL: {method} {path}"),
            "invalid_request_error",
            None,
            Some("unknown_url"),
        );
    }
    if method != Method::POST {
        return error(405, "Only POST is allowed", "invalid_request_error", None, Some("method_not_allowed"));
    }
    if !authorized {
        return error(
            401,
            "Incorrect API key provided",
            "invalid_request_error",
            None,
            Some("invalid_api_key"),
        );
    }
    let json_type =
        headers.get("content-type").and_then(|v| v.to_str().ok()).and_then(|t| t.split(';').next());
    if json_type.map(str::trim) != Some("application/json") {
        return invalid("The request must be sent as application/json", "content-type");
    }
    let request = match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(o)) => o,
        _ => return invalid("We could not parse the JSON body of your request", "body"),
    };
    if let Err(reply) = check_request(&shared.config, &request) {
        return reply;
    }
    let answer = {
        let mut state = shared.lock();
        state.served += 1;
        let mode = state.mode.clone();
        state.queue.pop_front().unwrap_or(mode)
    };
    answer_with(&shared.config, &request, answer, shared.lock().served)
}

fn check_request(config: &FakeLlmConfig, request: &Map<String, Value>) -> Result<(), Reply> {
    match request.get("model").and_then(Value::as_str) {
        None => return Err(invalid("you must provide a model parameter", "model")),
        Some(m) if m != config.model => {
            return Err(error(
                404,
                &format!("The model `{m}` does not exist or you do not have access to it."),
                "invalid_request_error",
                Some("model"),
                Some("model_not_found"),
            ));
        }
        Some(_) => {}
    }
    let messages = request.get("messages").and_then(Value::as_array);
    let Some(messages) = messages.filter(|m| !m.is_empty()) else {
        return Err(invalid("'messages' must be a non-empty array", "messages"));
    };
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        if !matches!(role, "developer" | "system" | "user" | "assistant" | "tool") {
            return Err(invalid(&format!("messages[{i}].role `{role}` is not a valid role"), "messages"));
        }
        if !m.get("content").is_some_and(Value::is_string) {
            return Err(invalid(&format!("messages[{i}].content must be a string"), "messages"));
        }
    }
    if request.get("stream").and_then(Value::as_bool) == Some(true) {
        return Err(invalid("this fake does not stream", "stream"));
    }
    if request.get("n").is_some_and(|n| n.as_u64() != Some(1)) {
        return Err(invalid("n must be 1", "n"));
    }
    let format = request.get("response_format");
    if format.and_then(|f| f.get("type")).and_then(Value::as_str) != Some("json_schema") {
        return Err(invalid("response_format.type must be json_schema", "response_format"));
    }
    let schema = format.and_then(|f| f.get("json_schema"));
    let name = schema.and_then(|s| s.get("name")).and_then(Value::as_str).unwrap_or("");
    let name_ok = (1..=64).contains(&name.len())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
    if !name_ok {
        return Err(invalid(
            "response_format.json_schema.name must match ^[a-zA-Z0-9_-]{1,64}$",
            "response_format",
        ));
    }
    if !schema.and_then(|s| s.get("schema")).and_then(|s| s.get("properties")).is_some_and(Value::is_object) {
        return Err(invalid(
            "response_format.json_schema.schema must be an object schema",
            "response_format",
        ));
    }
    let field = config.profile.token_field();
    match request.get(field).and_then(Value::as_u64) {
        None => return Err(invalid(&format!("`{field}` is required by this server"), field)),
        Some(n) if n == 0 || n > config.max_tokens_limit => {
            return Err(invalid(
                &format!("`{field}` is {n}; this model supports 1 to {}", config.max_tokens_limit),
                field,
            ));
        }
        Some(_) => {}
    }
    if let Some(t) = request.get("temperature").filter(|t| !t.is_null())
        && !t.as_f64().is_some_and(|t| (0.0..=2.0).contains(&t))
    {
        return Err(invalid("temperature must be between 0 and 2", "temperature"));
    }
    Ok(())
}

fn answer_with(config: &FakeLlmConfig, request: &Map<String, Value>, answer: LlmAnswer, n: u64) -> Reply {
    let request_id = format!("req_fake_{n:06}");
    let mut headers = vec![("x-request-id", request_id)];
    let (content, finish, refusal, with_usage) = match answer {
        LlmAnswer::RateLimited { retry_after_ms, retry_after, should_retry, reset_requests } => {
            let mut reply =
                error(429, "Rate limit reached for requests", "requests", None, Some("rate_limit_exceeded"));
            reply.headers = headers;
            if let Some(ms) = retry_after_ms {
                reply.headers.push(("retry-after-ms", ms.to_string()));
            }
            if let Some(s) = retry_after {
                reply.headers.push(("retry-after", s));
            }
            if let Some(b) = should_retry {
                reply.headers.push(("x-should-retry", b.to_string()));
            }
            if let Some(reset) = reset_requests {
                reply.headers.push(("x-ratelimit-remaining-requests", "0".into()));
                reply.headers.push(("x-ratelimit-reset-requests", reset));
            }
            return reply;
        }
        LlmAnswer::InsufficientQuota => {
            return error(
                429,
                "You exceeded your current quota, please check your plan and billing details.",
                "insufficient_quota",
                None,
                Some("insufficient_quota"),
            );
        }
        LlmAnswer::ServerError(status) => {
            return error(
                status,
                "The server had an error while processing your request.",
                "api_error",
                None,
                None,
            );
        }
        LlmAnswer::BrokenBody => {
            return Reply {
                status: 200,
                headers,
                body: "{\"id\": \"chatcmpl-broken\", \"choices\": [".into(),
                hang: false,
            };
        }
        LlmAnswer::Hang => return Reply { status: 200, headers, body: String::new(), hang: true },
        LlmAnswer::Malformed => (
            Some("Sure! Here is a subject line you might like: Come back soon".to_string()),
            "stop",
            None,
            true,
        ),
        LlmAnswer::Refusal => (None, "stop", Some("I'm sorry, I can't help with that."), true),
        LlmAnswer::Truncated => {
            let full = completion(request, 0);
            let half = full.chars().count() / 2;
            (Some(full.chars().take(half).collect()), "length", None, true)
        }
        LlmAnswer::OverLong => (Some(completion(request, 10)), "stop", None, true),
        LlmAnswer::NoUsage => (Some(completion(request, 0)), "stop", None, false),
        LlmAnswer::Normal => (Some(completion(request, 0)), "stop", None, true),
        LlmAnswer::Content(text) => (Some(text), "stop", None, true),
    };
    let prompt_chars: usize = request
        .get("messages")
        .and_then(Value::as_array)
        .map(|m| m.iter().filter_map(|m| m["content"].as_str()).map(str::len).sum())
        .unwrap_or(0);
    let prompt_tokens = prompt_chars.div_ceil(4) as u64;
    let completion_tokens = content.as_deref().map_or(0, str::len).div_ceil(4) as u64;
    let mut body = json!({
        "id": format!("chatcmpl-fake{n:06}"),
        "object": "chat.completion",
        "created": time::OffsetDateTime::now_utc().unix_timestamp(),
        "model": config.model,
        "choices": [{
            "index": 0,
            "message": {"role": "assistant", "content": content, "refusal": refusal},
            "finish_reason": finish,
        }],
        "system_fingerprint": "fp_fake",
    });
    if with_usage {
        body["usage"] = json!({
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        });
    }
    headers.push(("x-ratelimit-limit-requests", "500".into()));
    headers.push(("x-ratelimit-remaining-requests", "499".into()));
    headers.push(("x-ratelimit-reset-requests", "120ms".into()));
    Reply { status: 200, headers, body: body.to_string(), hang: false }
}

const OPENERS: &[&str] = &[
    "Picked for you",
    "Back in stock",
    "Still thinking",
    "New this week",
    "Your favourites",
    "Made for you",
];

/// The deterministic completion: every schema property, a phrase from the prompt's words cut to its
/// `maxLength` (plus `over` characters).
pub fn completion(request: &Map<String, Value>, over: usize) -> String {
    let messages = request.get("messages").and_then(Value::as_array).cloned().unwrap_or_default();
    let text: String = messages.iter().filter_map(|m| m["content"].as_str()).collect::<Vec<_>>().join("\n");
    let user =
        messages.iter().rev().find(|m| m["role"] == "user").and_then(|m| m["content"].as_str()).unwrap_or("");
    let hash = fnv1a(text.as_bytes());
    let words: Vec<&str> =
        user.split(|c: char| !c.is_alphanumeric()).filter(|w| w.len() > 2).take(6).collect();
    let properties = request["response_format"]["json_schema"]["schema"]["properties"]
        .as_object()
        .cloned()
        .unwrap_or_default();
    let mut out = Map::new();
    for (i, (slot, spec)) in properties.iter().enumerate() {
        let max = spec.get("maxLength").and_then(Value::as_u64).unwrap_or(60) as usize;
        let opener = OPENERS[(hash as usize + i) % OPENERS.len()];
        let mut phrase = format!("{opener}: {}", words.join(" "));
        if over > 0 {
            while phrase.chars().count() < max + over {
                phrase.push_str(" and more");
            }
            phrase = phrase.chars().take(max + over).collect();
        } else {
            phrase = cut(&phrase, max);
        }
        out.insert(slot.clone(), Value::String(phrase));
    }
    Value::Object(out).to_string()
}

/// At most `max` characters, at a word boundary when there is one.
fn cut(text: &str, max: usize) -> String {
    if text.chars().count() <= max {
        return text.to_string();
    }
    let head: String = text.chars().take(max).collect();
    match head.rfind(' ') {
        Some(i) if i > 0 => head[..i].trim_end_matches([':', ' ']).to_string(),
        _ => head,
    }
}

fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}

/// A running fake; script its answers, inspect what it received, stop it.
pub struct FakeLlmHandle {
    server: crate::server::Running,
    shared: Arc<Shared>,
}

impl FakeLlmHandle {
    /// The `llm.base_url` to configure (`http://127.0.0.1:PORT/v1`).
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.server.addr())
    }

    pub fn config(&self) -> &FakeLlmConfig {
        &self.shared.config
    }

    /// The standing answer, used when the queue is empty.
    pub fn set_mode(&self, mode: LlmAnswer) {
        self.shared.lock().mode = mode;
    }

    /// One-off answers for the next valid requests, in order.
    pub fn push(&self, answers: impl IntoIterator<Item = LlmAnswer>) {
        self.shared.lock().queue.extend(answers);
    }

    /// Added to every answer.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.lock().latency = latency;
    }

    /// `/health` answers 503 `Loading model` while set.
    pub fn set_loading(&self, loading: bool) {
        self.shared.lock().loading = loading;
    }

    pub fn requests(&self) -> Vec<LlmRequest> {
        self.shared.lock().requests.clone()
    }

    /// Every request body received, concatenated, for scanning.
    pub fn received_text(&self) -> String {
        self.shared.lock().requests.iter().map(|r| r.body.as_str()).collect::<Vec<_>>().join("\n")
    }

    pub async fn shutdown(mut self) {
        self.server.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(field: &str) -> Value {
        json!({
            "model": DEFAULT_MODEL,
            "messages": [{"role": "system", "content": "Write copy."}, {"role": "user", "content": "Segment lapsed; products: Trail shoe"}],
            "response_format": {"type": "json_schema", "json_schema": {"name": "copy", "schema": {"type": "object", "properties": {"subject": {"type": "string", "maxLength": 30}}}}},
            field: 100,
        })
    }

    async fn post(url: &str, key: &str, body: &Value) -> (u16, Value) {
        crate::ensure_crypto_provider();
        let r = reqwest::Client::new()
            .post(format!("{url}/chat/completions"))
            .bearer_auth(key)
            .json(body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    #[tokio::test]
    async fn enforces_the_contract_and_answers_deterministically() {
        let fake = FakeLlm::start(FakeLlmConfig::default()).await.unwrap();
        let url = fake.base_url();
        let (status, a) = post(&url, DEFAULT_API_KEY, &body("max_completion_tokens")).await;
        assert_eq!(status, 200, "{a}");
        let content: Value =
            serde_json::from_str(a["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
        let subject = content["subject"].as_str().unwrap();
        assert!(subject.chars().count() <= 30 && subject.contains("Segment"), "{subject}");
        let (_, again) = post(&url, DEFAULT_API_KEY, &body("max_completion_tokens")).await;
        assert_eq!(again["choices"][0]["message"]["content"], a["choices"][0]["message"]["content"]);
        assert!(a["usage"]["total_tokens"].as_u64().unwrap() > 0);

        assert_eq!(post(&url, "wrong", &body("max_completion_tokens")).await.0, 401);
        let (status, e) = post(&url, DEFAULT_API_KEY, &body("max_tokens")).await;
        assert_eq!((status, e["error"]["param"].as_str()), (400, Some("max_completion_tokens")));
        let mut other = body("max_completion_tokens");
        other["model"] = json!("gpt-unknown");
        assert_eq!(post(&url, DEFAULT_API_KEY, &other).await.0, 404);
        let mut empty = body("max_completion_tokens");
        empty["messages"] = json!([]);
        assert_eq!(post(&url, DEFAULT_API_KEY, &empty).await.0, 400);
        let mut named = body("max_completion_tokens");
        named["response_format"]["json_schema"]["name"] = json!("has space");
        assert_eq!(post(&url, DEFAULT_API_KEY, &named).await.0, 400);

        fake.push([LlmAnswer::OverLong, LlmAnswer::ServerError(503)]);
        let (_, long) = post(&url, DEFAULT_API_KEY, &body("max_completion_tokens")).await;
        let long: Value =
            serde_json::from_str(long["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
        assert_eq!(long["subject"].as_str().unwrap().chars().count(), 40);
        assert_eq!(post(&url, DEFAULT_API_KEY, &body("max_completion_tokens")).await.0, 503);
        assert_eq!(post(&url, DEFAULT_API_KEY, &body("max_completion_tokens")).await.0, 200);
        assert_eq!(fake.requests().len(), 10);
        assert!(fake.received_text().contains("Trail shoe"));
        fake.shutdown().await;
    }
}
