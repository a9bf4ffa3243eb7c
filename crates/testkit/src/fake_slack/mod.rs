//! A fake Slack incoming webhook. It serves one webhook path (`/services/T…/B…/<token>`) and answers as
//! Slack does, in plain text: `200 ok` for a message it accepts; `404 no_service` for any other path;
//! `400 invalid_payload` when the body is not declared JSON or is not a JSON object;
//! `400 invalid_blocks` when `blocks` breaks a Block Kit limit ([`check_blocks`]);
//! `400 missing_text_or_fallback_or_attachments` when `text` is missing or empty (with or without
//! `blocks`, the text is the notification fallback and nudge always sends it); `429` with `Retry-After`
//! when more messages arrive in one second than the configured limit (about one a second at Slack).
//! Any documented answer can be forced ([`SlackMode::Answer`]), as can 5xx and slowness.

use crate::TestkitError;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::Response;
use serde_json::Value;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::time::Instant;

/// The webhook path the fake serves unless told otherwise.
pub const DEFAULT_PATH: &str = "/services/T0FAKE0001/B0FAKE0001/fakeSlackWebhookToken0001";

/// How the fake is set up.
#[derive(Debug, Clone)]
pub struct FakeSlackConfig {
    /// The one path that is a webhook.
    pub path: String,
    /// Messages accepted in any one-second window before 429; `None` for no limit.
    pub per_second: Option<u32>,
}

impl Default for FakeSlackConfig {
    fn default() -> Self {
        FakeSlackConfig { path: DEFAULT_PATH.into(), per_second: Some(1) }
    }
}

/// How the fake answers.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum SlackMode {
    #[default]
    Normal,
    /// Answer the next `count` requests with `status` and the plain-text `body` (`channel_not_found`, …).
    Answer { status: u16, body: String, count: u32 },
    /// Answer the next `count` requests with 429 and `Retry-After: retry_after_secs`.
    Throttle { retry_after_secs: u64, count: u32 },
    /// Handle normally but hold each answer back this long.
    Slow(Duration),
}

/// One request as received, with the answer.
#[derive(Debug, Clone, PartialEq)]
pub struct SlackRequest {
    pub path: String,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
    pub status: u16,
    pub answer: String,
}

struct Shared {
    config: FakeSlackConfig,
    state: Mutex<FakeState>,
}

#[derive(Default)]
struct FakeState {
    mode: SlackMode,
    requests: Vec<SlackRequest>,
    messages: Vec<Value>,
    window: Option<(Instant, u32)>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

pub struct FakeSlack;

impl FakeSlack {
    /// Starts the fake on an ephemeral port of 127.0.0.1.
    pub async fn start(config: FakeSlackConfig) -> Result<FakeSlackHandle, TestkitError> {
        let shared = Arc::new(Shared { config, state: Mutex::new(FakeState::default()) });
        let state = shared.clone();
        let server = crate::server::Running::start(|listener, stop| run(listener, state, stop)).await?;
        Ok(FakeSlackHandle { server, shared })
    }

    /// Serves on `listener` until `shutdown`; for `nudge dev fake --kind slack`.
    pub async fn serve(
        listener: TcpListener,
        config: FakeSlackConfig,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), TestkitError> {
        run(listener, Arc::new(Shared { config, state: Mutex::new(FakeState::default()) }), shutdown).await
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

async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).map(str::to_string);
    let (status, text, retry_after, delay) =
        decide(&shared, &method, uri.path(), content_type.as_deref(), &body);
    shared.lock().requests.push(SlackRequest {
        path: uri.path().to_string(),
        content_type,
        body: body.to_vec(),
        status,
        answer: text.clone(),
    });
    if let Some(d) = delay {
        tokio::time::sleep(d).await;
    }
    let mut builder = Response::builder()
        .status(StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR))
        .header("content-type", "text/plain; charset=utf-8");
    if let Some(secs) = retry_after {
        builder = builder.header("retry-after", secs.to_string());
    }
    builder.body(Body::from(text)).expect("a plain response builds")
}

type Decision = (u16, String, Option<u64>, Option<Duration>);

fn decide(shared: &Shared, method: &Method, path: &str, content_type: Option<&str>, body: &[u8]) -> Decision {
    let mut state = shared.lock();
    let mut delay = None;
    match state.mode.clone() {
        SlackMode::Normal => {}
        SlackMode::Answer { status, body, count } => {
            state.mode = if count > 1 {
                SlackMode::Answer { status, body: body.clone(), count: count - 1 }
            } else {
                SlackMode::Normal
            };
            return (status, body, None, None);
        }
        SlackMode::Throttle { retry_after_secs, count } => {
            state.mode = if count > 1 {
                SlackMode::Throttle { retry_after_secs, count: count - 1 }
            } else {
                SlackMode::Normal
            };
            return (429, "rate_limited".into(), Some(retry_after_secs), None);
        }
        SlackMode::Slow(d) => delay = Some(d),
    }
    if path != shared.config.path {
        return (404, "no_service".into(), None, delay);
    }
    if method != Method::POST {
        return (405, "invalid_method".into(), None, delay);
    }
    if content_type.and_then(|t| t.split(';').next()).is_none_or(|t| t.trim() != "application/json") {
        return (400, "invalid_payload".into(), None, delay);
    }
    let Ok(Value::Object(message)) = serde_json::from_slice::<Value>(body) else {
        return (400, "invalid_payload".into(), None, delay);
    };
    if let Some(blocks) = message.get("blocks")
        && check_blocks(blocks).is_err()
    {
        return (400, "invalid_blocks".into(), None, delay);
    }
    if message.get("text").and_then(Value::as_str).is_none_or(|t| t.trim().is_empty()) {
        return (400, "missing_text_or_fallback_or_attachments".into(), None, delay);
    }
    if let Some(limit) = shared.config.per_second {
        let now = Instant::now();
        let (start, count) = match state.window {
            Some((start, count)) if now.duration_since(start) < Duration::from_secs(1) => (start, count),
            _ => (now, 0),
        };
        if count >= limit {
            state.window = Some((start, count));
            return (429, "rate_limited".into(), Some(1), delay);
        }
        state.window = Some((start, count + 1));
    }
    state.messages.push(Value::Object(message));
    (200, "ok".into(), None, delay)
}

/// Block Kit's documented limits on a message's blocks.
pub const MAX_BLOCKS: usize = 50;
pub const MAX_SECTION_TEXT: usize = 3000;
pub const MAX_SECTION_FIELDS: usize = 10;
pub const MAX_FIELD_TEXT: usize = 2000;
pub const MAX_HEADER_TEXT: usize = 150;
pub const MAX_CONTEXT_ELEMENTS: usize = 10;
pub const MAX_BLOCK_ID: usize = 255;

/// Checks `blocks` as Slack does before posting (it answers `invalid_blocks` otherwise): a non-empty
/// array of at most 50 blocks with unique `block_id`s (at most 255 characters); `header` with a
/// `plain_text` of 1–150 characters; `section` with a text object of 1–3000 characters and/or 1–10 fields
/// of at most 2000; `context` with 1–10 text or image elements; `divider` with nothing else. Other block
/// types are accepted as long as they name one Slack knows. The error says which rule broke.
pub fn check_blocks(blocks: &Value) -> Result<(), String> {
    let Some(blocks) = blocks.as_array() else { return Err("blocks is not an array".into()) };
    if blocks.is_empty() || blocks.len() > MAX_BLOCKS {
        return Err(format!("{} blocks; 1 to {MAX_BLOCKS} are allowed", blocks.len()));
    }
    let mut ids = std::collections::HashSet::new();
    for (i, b) in blocks.iter().enumerate() {
        let Some(b) = b.as_object() else { return Err(format!("blocks[{i}] is not an object")) };
        if let Some(id) = b.get("block_id") {
            let id = id.as_str().ok_or(format!("blocks[{i}].block_id is not a string"))?;
            if id.is_empty() || id.chars().count() > MAX_BLOCK_ID || !ids.insert(id.to_string()) {
                return Err(format!("blocks[{i}].block_id is empty, too long or repeated"));
            }
        }
        let kind = b.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "header" => {
                let t = b.get("text").ok_or(format!("blocks[{i}]: a header needs text"))?;
                text_object(t, MAX_HEADER_TEXT, Some("plain_text"))
                    .map_err(|e| format!("blocks[{i}].text: {e}"))?;
            }
            "section" => {
                let text = b.get("text");
                let fields = b.get("fields");
                if text.is_none() && fields.is_none() {
                    return Err(format!("blocks[{i}]: a section needs text or fields"));
                }
                if let Some(t) = text {
                    text_object(t, MAX_SECTION_TEXT, None).map_err(|e| format!("blocks[{i}].text: {e}"))?;
                }
                if let Some(f) = fields {
                    let f = f.as_array().ok_or(format!("blocks[{i}].fields is not an array"))?;
                    if f.is_empty() || f.len() > MAX_SECTION_FIELDS {
                        return Err(format!("blocks[{i}]: {} fields; 1 to {MAX_SECTION_FIELDS}", f.len()));
                    }
                    for (j, t) in f.iter().enumerate() {
                        text_object(t, MAX_FIELD_TEXT, None)
                            .map_err(|e| format!("blocks[{i}].fields[{j}]: {e}"))?;
                    }
                }
            }
            "context" => {
                let e =
                    b.get("elements").and_then(Value::as_array).ok_or(format!("blocks[{i}]: no elements"))?;
                if e.is_empty() || e.len() > MAX_CONTEXT_ELEMENTS {
                    return Err(format!("blocks[{i}]: {} elements; 1 to {MAX_CONTEXT_ELEMENTS}", e.len()));
                }
                for (j, el) in e.iter().enumerate() {
                    if el.get("type").and_then(Value::as_str) == Some("image") {
                        continue;
                    }
                    text_object(el, MAX_SECTION_TEXT, None)
                        .map_err(|e| format!("blocks[{i}].elements[{j}]: {e}"))?;
                }
            }
            "divider" => {
                if b.keys().any(|k| k != "type" && k != "block_id") {
                    return Err(format!("blocks[{i}]: a divider takes no other field"));
                }
            }
            "actions" | "image" | "rich_text" | "markdown" | "input" | "file" | "video" | "table" => {}
            other => return Err(format!("blocks[{i}]: unknown block type `{other}`")),
        }
    }
    Ok(())
}

/// A text object: `mrkdwn` or `plain_text` (only `plain_text` where `only` says so), 1..=`max` characters.
fn text_object(t: &Value, max: usize, only: Option<&str>) -> Result<(), String> {
    let kind = t.get("type").and_then(Value::as_str).unwrap_or("");
    if !matches!(kind, "mrkdwn" | "plain_text") || only.is_some_and(|o| o != kind) {
        return Err(format!("text type `{kind}` is not allowed here"));
    }
    let text = t.get("text").and_then(Value::as_str).ok_or("text is missing")?;
    let n = text.chars().count();
    if n == 0 || n > max {
        return Err(format!("{n} characters; 1 to {max} are allowed"));
    }
    Ok(())
}

/// A running fake; inspect what it received and accepted, switch its mode, stop it.
pub struct FakeSlackHandle {
    server: crate::server::Running,
    shared: Arc<Shared>,
}

impl FakeSlackHandle {
    /// The webhook URL to configure.
    pub fn webhook_url(&self) -> String {
        format!("http://{}{}", self.server.addr(), self.shared.config.path)
    }

    pub fn set_mode(&self, mode: SlackMode) {
        self.shared.lock().mode = mode;
    }

    pub fn requests(&self) -> Vec<SlackRequest> {
        self.shared.lock().requests.clone()
    }

    /// The messages accepted (`200 ok`), oldest first.
    pub fn messages(&self) -> Vec<Value> {
        self.shared.lock().messages.clone()
    }

    pub async fn shutdown(mut self) {
        self.server.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn block_limits_follow_the_docs() {
        use serde_json::json;
        let ok = json!([
            {"type": "header", "text": {"type": "plain_text", "text": "Digest"}},
            {"type": "section", "text": {"type": "mrkdwn", "text": "*a*"}, "fields": [{"type": "mrkdwn", "text": "b"}]},
            {"type": "context", "elements": [{"type": "mrkdwn", "text": "c"}]},
            {"type": "divider"},
        ]);
        check_blocks(&ok).unwrap();
        let bad = [
            json!([{"type": "header", "text": {"type": "mrkdwn", "text": "no"}}]),
            json!([{"type": "header", "text": {"type": "plain_text", "text": "x".repeat(151)}}]),
            json!([{"type": "section"}]),
            json!([{"type": "section", "fields": vec![json!({"type": "mrkdwn", "text": "f"}); 11]}]),
            json!([{"type": "section", "fields": [{"type": "mrkdwn", "text": "x".repeat(2001)}]}]),
            json!([{"type": "context", "elements": []}]),
            json!([{"type": "divider", "text": "x"}]),
            json!([{"type": "banner"}]),
            json!([{"type": "divider", "block_id": "a"}, {"type": "divider", "block_id": "a"}]),
            json!([{"type": "section", "text": {"type": "mrkdwn", "text": ""}}]),
        ];
        for b in bad {
            assert!(check_blocks(&b).is_err(), "{b}");
        }
    }

    async fn post(url: &str, content_type: &str, body: &str) -> (u16, String) {
        crate::ensure_crypto_provider();
        let r = reqwest::Client::new()
            .post(url)
            .header("content-type", content_type)
            .body(body.to_string())
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.text().await.unwrap())
    }

    #[tokio::test]
    async fn answers_as_slack_does() {
        let fake =
            FakeSlack::start(FakeSlackConfig { per_second: Some(2), ..Default::default() }).await.unwrap();
        let url = fake.webhook_url();
        assert_eq!(post(&url, "application/json", r#"{"text":"hi"}"#).await, (200, "ok".into()));
        assert_eq!(post(&url, "text/plain", r#"{"text":"hi"}"#).await, (400, "invalid_payload".into()));
        assert_eq!(post(&url, "application/json", "[1]").await, (400, "invalid_payload".into()));
        assert_eq!(
            post(&url, "application/json", r#"{"blocks":[{"type":"divider"}]}"#).await,
            (400, "missing_text_or_fallback_or_attachments".into())
        );
        let wrong = url.replace("fakeSlackWebhookToken0001", "other");
        assert_eq!(post(&wrong, "application/json", r#"{"text":"hi"}"#).await, (404, "no_service".into()));
        // The first message of this second was accepted above; one more fits, the next is throttled.
        let second = post(&url, "application/json", r#"{"text":"two"}"#).await;
        let third = post(&url, "application/json", r#"{"text":"three"}"#).await;
        assert!(second.0 == 200 || third.0 == 200);
        let burst: Vec<u16> = futures_lite_burst(&url).await;
        assert!(burst.contains(&429), "{burst:?}");
        fake.set_mode(SlackMode::Answer { status: 410, body: "channel_is_archived".into(), count: 1 });
        assert_eq!(
            post(&url, "application/json", r#"{"text":"x"}"#).await,
            (410, "channel_is_archived".into())
        );
        assert!(fake.messages().iter().all(|m| m["text"].is_string()));
        fake.set_mode(SlackMode::Normal);
        tokio::time::sleep(Duration::from_millis(1100)).await;
        let section = |n: usize| serde_json::json!({"type": "section", "text": {"type": "mrkdwn", "text": "x".repeat(n)}});
        let body = |blocks: Vec<Value>| serde_json::json!({"text": "fallback", "blocks": blocks}).to_string();
        assert_eq!(
            post(&url, "application/json", &body(vec![section(3001)])).await,
            (400, "invalid_blocks".into())
        );
        assert_eq!(
            post(&url, "application/json", &body(vec![serde_json::json!({"type": "divider"}); 51])).await,
            (400, "invalid_blocks".into())
        );
        assert_eq!(post(&url, "application/json", &body(vec![])).await, (400, "invalid_blocks".into()));
        assert_eq!(post(&url, "application/json", &body(vec![section(3000)])).await, (200, "ok".into()));
        fake.shutdown().await;
    }

    async fn futures_lite_burst(url: &str) -> Vec<u16> {
        let mut out = Vec::new();
        for i in 0..4 {
            out.push(post(url, "application/json", &format!(r#"{{"text":"burst {i}"}}"#)).await.0);
        }
        out
    }
}
