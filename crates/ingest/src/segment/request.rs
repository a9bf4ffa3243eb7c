//! Reading one request to the Segment-compatible API: the write key, the body's encoding, the route's
//! form (a batch or one message), the per-message limits, and the normalised message that is stored.

use super::timestamp::{format_rfc3339, parse_lenient};
use crate::headers::Headers;
use base64::Engine;
use serde_json::{Map, Value};
use sha2::Digest;
use std::io::Read;
use time::OffsetDateTime;

/// The largest message accepted, in bytes of JSON (Segment's own limit, `32 << 10`).
pub const MAX_MESSAGE_BYTES: usize = 32 << 10;
/// The most messages read from one batch; the rest are dropped and counted (the answer is still 200).
pub const MAX_BATCH_MESSAGES: usize = 2_500;
/// The default cap on a request's body, compressed or not (RudderStack clients send up to 4 MB).
pub const DEFAULT_MAX_REQUEST_BYTES: usize = 4 << 20;

/// The kinds of message of the Segment spec.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MessageType {
    Track,
    Identify,
    Page,
    Screen,
    Group,
    Alias,
}

impl MessageType {
    pub fn as_str(self) -> &'static str {
        match self {
            MessageType::Track => "track",
            MessageType::Identify => "identify",
            MessageType::Page => "page",
            MessageType::Screen => "screen",
            MessageType::Group => "group",
            MessageType::Alias => "alias",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "track" => MessageType::Track,
            "identify" => MessageType::Identify,
            "page" => MessageType::Page,
            "screen" => MessageType::Screen,
            "group" => MessageType::Group,
            "alias" => MessageType::Alias,
            _ => return None,
        })
    }
}

/// What a path under `/v1/` takes: a batch (`batch`, `b`) or one message of a type (`track` or `t`, …).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    Batch,
    Single(MessageType),
}

impl Route {
    /// The route of `/v1/<segment>`, long or short form; `None` for any other name.
    pub fn from_segment(segment: &str) -> Option<Route> {
        Some(match segment {
            "batch" | "b" => Route::Batch,
            "track" | "t" => Route::Single(MessageType::Track),
            "identify" | "i" => Route::Single(MessageType::Identify),
            "page" | "p" => Route::Single(MessageType::Page),
            "screen" | "s" => Route::Single(MessageType::Screen),
            "group" | "g" => Route::Single(MessageType::Group),
            "alias" | "a" => Route::Single(MessageType::Alias),
            _ => return None,
        })
    }
}

/// The limits and keys a request is read with.
#[derive(Debug, Clone)]
pub struct RequestSettings {
    /// The accepted write keys (several while one is being rotated out).
    pub write_keys: Vec<String>,
    /// The cap on the body as received and, separately, on its decompressed size.
    pub max_request_bytes: usize,
}

/// A refused request: the status, a stable `code` and a `message` (the SDKs read both; Python's
/// treats a 4xx body without `code` as a retryable failure).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestError {
    pub status: u16,
    pub code: &'static str,
    pub message: String,
}

impl RequestError {
    fn new(status: u16, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into() }
    }
}

/// Messages left out of an accepted request, by reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dropped {
    /// Over [`MAX_MESSAGE_BYTES`].
    pub oversize: usize,
    /// Neither `userId` nor `anonymousId` (an alias needs `userId` and `previousId`).
    pub no_id: usize,
    /// Past the first [`MAX_BATCH_MESSAGES`] of a batch.
    pub over_limit: usize,
    /// Not an object, or of no known `type`.
    pub invalid: usize,
}

impl Dropped {
    pub fn total(&self) -> usize {
        self.oversize + self.no_id + self.over_limit + self.invalid
    }
}

/// One accepted message, ready to be stored as a delivery of its own.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadMessage {
    pub kind: MessageType,
    /// `track:<event>`, or the message type.
    pub topic: String,
    pub message_id: Option<String>,
    /// `segment:<first 16 hex of sha256(writeKey)>:<messageId>`; `None` without a usable `messageId`.
    pub dedupe_key: Option<String>,
    /// The normalised message JSON: batch-level `context` and `integrations` merged in, ids as strings,
    /// `originalTimestamp` as sent, `timestamp` corrected for clock skew, `sentAt` and `receivedAt`.
    pub body: Vec<u8>,
}

/// An accepted request.
#[derive(Debug, Clone, PartialEq)]
pub struct ReadRequest {
    pub messages: Vec<ReadMessage>,
    pub dropped: Dropped,
    /// The first 16 hex digits of the SHA-256 of the write key used (never the key itself).
    pub write_key_id: String,
}

/// Reads a request: decompresses, parses, authenticates, splits and normalises. Errors are permanent
/// (4xx): a transient problem never comes from here.
pub fn read_request(
    settings: &RequestSettings,
    route: Route,
    headers: &Headers,
    body: &[u8],
    received_at: OffsetDateTime,
) -> Result<ReadRequest, RequestError> {
    if settings.write_keys.is_empty() {
        return Err(RequestError::new(
            404,
            "not_enabled",
            "the Segment API is not enabled: configure sources.segment.write_keys",
        ));
    }
    if body.len() > settings.max_request_bytes {
        return Err(too_large(settings.max_request_bytes));
    }
    let decoded;
    let body = match headers.get("content-encoding").map(|e| e.trim().to_ascii_lowercase()).as_deref() {
        None | Some("") | Some("identity") => body,
        Some("gzip") | Some("x-gzip") => {
            decoded = gunzip(body, settings.max_request_bytes)?;
            &decoded[..]
        }
        Some(other) => {
            return Err(RequestError::new(
                400,
                "unsupported_encoding",
                format!("Content-Encoding `{other}` is not supported (send gzip or nothing)"),
            ));
        }
    };
    let doc: Value = serde_json::from_slice(body)
        .map_err(|e| RequestError::new(400, "invalid_json", format!("the body is not JSON: {e}")))?;
    let Value::Object(mut top) = doc else {
        return Err(RequestError::new(400, "invalid_json", "the body must be a JSON object"));
    };
    let key = write_key(settings, headers, &top)?;
    let write_key_id = key_id(&key);
    let received = format_rfc3339(received_at);

    let mut dropped = Dropped::default();
    let mut messages = Vec::new();
    match route {
        Route::Batch => {
            let items = match top.remove("batch") {
                Some(Value::Array(items)) => items,
                _ => {
                    return Err(RequestError::new(
                        400,
                        "invalid_batch",
                        "`batch` must be an array of messages",
                    ));
                }
            };
            let shared = BatchLevel {
                context: top.remove("context").filter(Value::is_object),
                integrations: top.remove("integrations").filter(Value::is_object),
                sent_at: top.get("sentAt").and_then(Value::as_str).map(str::to_string),
            };
            if items.len() > MAX_BATCH_MESSAGES {
                dropped.over_limit = items.len() - MAX_BATCH_MESSAGES;
            }
            for item in items.into_iter().take(MAX_BATCH_MESSAGES) {
                match normalise(item, None, &shared, &write_key_id, &received, received_at) {
                    Ok(m) => messages.push(m),
                    Err(why) => why.count(&mut dropped),
                }
            }
        }
        Route::Single(kind) => {
            let shared = BatchLevel { context: None, integrations: None, sent_at: None };
            top.remove("writeKey");
            match normalise(Value::Object(top), Some(kind), &shared, &write_key_id, &received, received_at) {
                Ok(m) => messages.push(m),
                Err(why) => why.count(&mut dropped),
            }
        }
    }
    Ok(ReadRequest { messages, dropped, write_key_id })
}

fn too_large(cap: usize) -> RequestError {
    RequestError::new(400, "request_too_large", format!("the request is larger than {cap} bytes"))
}

/// Decompresses a gzip body, refusing it as soon as it grows past `cap` (a gzip bomb costs `cap` bytes).
fn gunzip(body: &[u8], cap: usize) -> Result<Vec<u8>, RequestError> {
    let mut out = Vec::with_capacity(body.len().saturating_mul(4).min(cap));
    let mut reader = flate2::read::MultiGzDecoder::new(body).take(cap as u64 + 1);
    reader
        .read_to_end(&mut out)
        .map_err(|e| RequestError::new(400, "invalid_gzip", format!("the gzip body cannot be read: {e}")))?;
    if out.len() > cap {
        return Err(RequestError::new(
            400,
            "request_too_large",
            format!("the decompressed request is larger than {cap} bytes"),
        ));
    }
    Ok(out)
}

/// The write key: the Basic user name (the password is empty), else the body's `writeKey`; it must be
/// one of the configured keys, compared in constant time.
fn write_key(
    settings: &RequestSettings,
    headers: &Headers,
    top: &Map<String, Value>,
) -> Result<String, RequestError> {
    let from_header = headers.get("authorization").and_then(basic_user);
    let from_body = top.get("writeKey").and_then(Value::as_str).map(str::to_string);
    let Some(key) = from_header.or(from_body).filter(|k| !k.is_empty()) else {
        return Err(RequestError::new(
            401,
            "invalid_write_key",
            "no write key: send it as the Basic user name or as `writeKey` in the body",
        ));
    };
    // Every configured key is compared, so the time taken does not say which one matched.
    let mut matched = false;
    for k in &settings.write_keys {
        matched |= constant_time_eq(k.as_bytes(), key.as_bytes());
    }
    if !matched {
        return Err(RequestError::new(401, "invalid_write_key", "the write key is not valid"));
    }
    Ok(key)
}

/// The user name of `Basic base64(user:password)`.
fn basic_user(value: &str) -> Option<String> {
    let (scheme, rest) = value.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let raw = base64::engine::general_purpose::STANDARD.decode(rest.trim()).ok()?;
    let text = String::from_utf8(raw).ok()?;
    Some(text.split_once(':').map_or(text.as_str(), |(u, _)| u).to_string())
}

/// Equality whose time depends only on the lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The first 16 hex digits of the SHA-256 of a write key: names the key in dedupe keys and logs.
pub fn key_id(write_key: &str) -> String {
    let digest = sha2::Sha256::digest(write_key.as_bytes());
    hex::encode(&digest[..8])
}

/// What a batch gives every message in it.
struct BatchLevel {
    context: Option<Value>,
    integrations: Option<Value>,
    sent_at: Option<String>,
}

enum Drop {
    Oversize,
    NoId,
    Invalid,
}

impl Drop {
    fn count(self, d: &mut Dropped) {
        match self {
            Drop::Oversize => d.oversize += 1,
            Drop::NoId => d.no_id += 1,
            Drop::Invalid => d.invalid += 1,
        }
    }
}

/// An id as text: strings as they are, numbers as their exact digits; anything else (null, empty) is none.
fn id_text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) if !s.is_empty() => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn normalise(
    item: Value,
    route_kind: Option<MessageType>,
    shared: &BatchLevel,
    key_id: &str,
    received: &str,
    received_at: OffsetDateTime,
) -> Result<ReadMessage, Drop> {
    let Value::Object(mut m) = item else { return Err(Drop::Invalid) };
    // The size as sent (the SDKs measure their own JSON the same way).
    let size = serde_json::to_vec(&m).map(|v| v.len()).unwrap_or(usize::MAX);
    if size > MAX_MESSAGE_BYTES {
        return Err(Drop::Oversize);
    }
    let kind = match route_kind {
        Some(k) => k,
        None => m.get("type").and_then(Value::as_str).and_then(MessageType::parse).ok_or(Drop::Invalid)?,
    };
    m.insert("type".into(), kind.as_str().into());
    // A key repeated inside a message is a credential: never stored.
    m.remove("writeKey");
    for field in ["userId", "anonymousId", "previousId", "groupId", "messageId"] {
        match id_text(m.get(field)) {
            Some(s) => {
                m.insert(field.into(), Value::String(s));
            }
            None => {
                m.remove(field);
            }
        }
    }
    let has = |f: &str| m.contains_key(f);
    let identified = match kind {
        MessageType::Alias => has("userId") && has("previousId"),
        _ => has("userId") || has("anonymousId"),
    };
    if !identified {
        return Err(Drop::NoId);
    }
    if kind == MessageType::Track && m.get("event").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err(Drop::Invalid);
    }
    merge_into(&mut m, "context", shared.context.as_ref());
    merge_into(&mut m, "integrations", shared.integrations.as_ref());
    if !m.get("sentAt").is_some_and(Value::is_string) {
        match &shared.sent_at {
            Some(s) => m.insert("sentAt".into(), Value::String(s.clone())),
            None => m.remove("sentAt"),
        };
    }
    let at = corrected_time(&m, received_at);
    if let Some(original) = m.remove("timestamp").filter(|t| !t.is_null()) {
        m.insert("originalTimestamp".into(), original);
    }
    m.insert("timestamp".into(), Value::String(format_rfc3339(at)));
    m.insert("receivedAt".into(), Value::String(received.to_string()));

    let message_id = m.get("messageId").and_then(Value::as_str).map(str::to_string);
    let dedupe_key = message_id
        .as_deref()
        .filter(|id| !id.chars().any(char::is_control))
        .map(|id| format!("segment:{key_id}:{id}"));
    let topic = match kind {
        MessageType::Track => {
            format!("track:{}", m.get("event").and_then(Value::as_str).unwrap_or_default())
        }
        k => k.as_str().to_string(),
    };
    let body = serde_json::to_vec(&Value::Object(m)).map_err(|_| Drop::Invalid)?;
    Ok(ReadMessage { kind, topic, message_id, dedupe_key, body })
}

/// Fills a message's `context` / `integrations` with the batch's keys it does not set itself.
fn merge_into(m: &mut Map<String, Value>, field: &str, batch: Option<&Value>) {
    let Some(Value::Object(batch)) = batch else { return };
    match m.get_mut(field) {
        Some(Value::Object(own)) => {
            for (k, v) in batch {
                own.entry(k.clone()).or_insert_with(|| v.clone());
            }
        }
        _ => {
            m.insert(field.into(), Value::Object(batch.clone()));
        }
    }
}

/// When the message happened: `receivedAt − (sentAt − timestamp)` when both parse (the sender's clock
/// skew removed), the `timestamp` alone when `sentAt` does not, the receipt time when neither does.
fn corrected_time(m: &Map<String, Value>, received_at: OffsetDateTime) -> OffsetDateTime {
    let ts = m.get("timestamp").and_then(Value::as_str).and_then(parse_lenient);
    let sent = m.get("sentAt").and_then(Value::as_str).and_then(parse_lenient);
    match (ts, sent) {
        (Some(ts), Some(sent)) => received_at - (sent - ts),
        (Some(ts), None) => ts,
        _ => received_at,
    }
}
