//! The Segment-compatible storefront API: `POST /v1/batch` (and `/v1/b`) and the one-message routes
//! `/v1/{track,identify,page,screen,group,alias}` (and `/v1/{t,i,p,s,g,a}`), as the analytics SDKs send
//! them, with the CORS pre-flight browsers make.
//!
//! A request is read by [`nudge_ingest::segment::read_request`] (write key, gzip, limits); each accepted
//! message is committed as a delivery of its own (source `segment`, topic `track:<event>` or the type,
//! dedupe key from the write key and `messageId`), all of a request together, and only then is
//! `{"success":true}` answered with 200. A store failure is answered 503 with `Retry-After`, so SDKs
//! retry; the dedupe keys make a retry store only what is missing. Every error body is JSON with string
//! `code` and `message`, which the Python SDKs read.

use crate::app::Shared;
use axum::Router;
use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use nudge_ingest::Headers;
use nudge_ingest::segment::{RequestError, RequestSettings, Route, read_request};
use nudge_model::TraceId;
use nudge_store::{CommitResult, NewDelivery};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The API's settings, and a switch tests use to make it fail.
#[derive(Debug)]
pub struct SegmentApi {
    settings: RequestSettings,
    fail_next: AtomicU64,
}

impl SegmentApi {
    /// From `[sources.segment]`; without it (or without write keys) every request is answered 404.
    pub fn new(cfg: Option<&crate::config::SegmentSourceConfig>) -> Arc<Self> {
        let cfg = cfg.cloned().unwrap_or_default();
        Arc::new(Self {
            settings: RequestSettings {
                write_keys: cfg.write_keys,
                max_request_bytes: cfg.max_request_bytes,
            },
            fail_next: AtomicU64::new(0),
        })
    }

    /// For tests: the next `k` requests that would be stored are answered 503 as if the store had failed
    /// (nothing of them is stored).
    pub fn fail_next_requests(&self, k: u64) {
        self.fail_next.store(k, Ordering::SeqCst);
    }

    fn take_failure(&self) -> bool {
        self.fail_next.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)).is_ok()
    }
}

/// The routes, merged into the server's router.
pub fn routes() -> Router<Arc<Shared>> {
    Router::new().route("/v1/{kind}", post(receive).options(preflight).fallback(wrong_method))
}

fn error(status: StatusCode, code: &str, message: impl Into<String>) -> Response {
    let body = serde_json::json!({ "code": code, "message": message.into() });
    with_cors((status, axum::Json(body)).into_response())
}

fn with_cors(mut r: Response) -> Response {
    r.headers_mut().insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    r
}

fn unavailable(message: &str) -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, "unavailable", message);
    r.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    r
}

fn count(outcome: &'static str, n: usize) {
    if n > 0 {
        metrics::counter!("nudge_segment_messages_total", "outcome" => outcome).increment(n as u64);
    }
}

async fn preflight() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    let h = r.headers_mut();
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::ACCESS_CONTROL_ALLOW_METHODS, HeaderValue::from_static("POST, OPTIONS"));
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Authorization, Content-Type, Content-Encoding, X-Retry-Count"),
    );
    h.insert(header::ACCESS_CONTROL_MAX_AGE, HeaderValue::from_static("86400"));
    r
}

async fn wrong_method() -> Response {
    error(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "messages are POSTed")
}

/// Headers worth keeping with each stored message: never the `Authorization` header.
fn audit_headers(h: &HeaderMap) -> String {
    let mut m = serde_json::Map::new();
    for name in ["user-agent", "content-type", "content-encoding", "x-retry-count"] {
        if let Some(v) = h.get(name).and_then(|v| v.to_str().ok()) {
            m.insert(name.into(), v.into());
        }
    }
    serde_json::Value::Object(m).to_string()
}

async fn receive(
    State(app): State<Arc<Shared>>,
    Path(kind): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    let Some(route) = Route::from_segment(&kind) else {
        return error(StatusCode::NOT_FOUND, "not_found", format!("no Segment route /v1/{kind}"));
    };
    let api = &app.segment;
    let cap = api.settings.max_request_bytes;
    let body = match axum::body::to_bytes(body, cap).await {
        Ok(b) => b,
        Err(_) => {
            return error(
                StatusCode::BAD_REQUEST,
                "request_too_large",
                format!("the request body is larger than {cap} bytes or could not be read"),
            );
        }
    };
    let h = Headers::from_pairs(headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())));
    let now_ms = crate::outbox::now_ms();
    let received_at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(now_ms) * 1_000_000)
        .unwrap_or_else(|_| time::OffsetDateTime::now_utc());
    let read = match read_request(&api.settings, route, &h, &body, received_at) {
        Ok(r) => r,
        Err(RequestError { status, code, message }) => {
            tracing::info!(status, code, message, "refused a Segment request");
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            return error(status, code, message);
        }
    };
    let d = read.dropped;
    count("dropped_oversize", d.oversize);
    count("dropped_no_id", d.no_id);
    count("dropped_over_limit", d.over_limit);
    count("dropped_invalid", d.invalid);
    if d.total() > 0 {
        tracing::warn!(key = %read.write_key_id, oversize = d.oversize, no_id = d.no_id,
            over_limit = d.over_limit, invalid = d.invalid, "dropped Segment messages from a request");
    }
    if api.take_failure() {
        return unavailable("injected failure; retry");
    }
    if read.messages.is_empty() {
        return success();
    }
    let headers_json = audit_headers(&headers);
    let deliveries: Vec<NewDelivery> = read
        .messages
        .into_iter()
        .map(|m| NewDelivery {
            trace_id: TraceId::new(),
            source: nudge_ingest::segment::SOURCE_NAME.into(),
            topic: m.topic,
            shop: None,
            webhook_id: None,
            event_id: m.message_id,
            received_at_ms: now_ms,
            headers_json: headers_json.clone(),
            body: m.body,
            dedupe_keys: m.dedupe_key.into_iter().collect(),
            part: None,
        })
        .collect();
    match app.store.commit_deliveries(deliveries).await {
        Ok(results) => {
            let dup = results.iter().filter(|r| matches!(r, CommitResult::Duplicate { .. })).count();
            count("accepted", results.len() - dup);
            count("duplicate", dup);
            if dup < results.len() {
                app.wake_pipeline.notify_one();
            }
            success()
        }
        Err(e) => {
            tracing::error!(error = %e, "could not commit Segment messages");
            unavailable("could not store the messages; retry")
        }
    }
}

fn success() -> Response {
    with_cors((StatusCode::OK, axum::Json(serde_json::json!({ "success": true }))).into_response())
}
