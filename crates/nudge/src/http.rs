//! HTTP edge: the webhook receiver, health, metrics and the read-only admin API. Handlers are thin:
//! extract, call the core, map the error to one `ApiError`.

use crate::app::Shared;
use crate::telemetry;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use nudge_ingest::Headers;
use nudge_model::{CustomerId, TraceId};
use nudge_store::{CommitResult, NewDelivery};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

pub fn router(shared: Arc<Shared>) -> Router {
    let admin = Router::new()
        .route("/api/audit/events/{trace_id}", get(audit_trace))
        .route("/api/audit/customers/{customer_id}", get(audit_customer))
        .route_layer(middleware::from_fn_with_state(shared.clone(), local_only));
    Router::new()
        .route("/webhooks/shopify", post(shopify_webhook))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .merge(admin)
        .layer(DefaultBodyLimit::max(shared.max_body_bytes))
        .with_state(shared)
}

/// The one error type at the HTTP edge: a status and a JSON `{"error": …}` body.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

/// Headers worth keeping in the audit trail: Shopify's metadata, never the signature or credentials.
fn auditable_headers(h: &HeaderMap) -> serde_json::Value {
    let mut m = serde_json::Map::new();
    for (k, v) in h {
        let name = k.as_str();
        let keep = (name.starts_with("x-shopify-") && name != "x-shopify-hmac-sha256")
            || name == "content-type"
            || name == "user-agent";
        if keep {
            m.insert(name.to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned().into());
        }
    }
    serde_json::Value::Object(m)
}

async fn shopify_webhook(
    State(app): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    // Bodies over `server.max_body_bytes` (413) and unreadable bodies get the same JSON error shape.
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            telemetry::webhook("shopify", "-", "refused");
            return ApiError(rejection.status(), rejection.body_text()).into_response();
        }
    };
    let h = Headers::from_pairs(headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())));
    let meta = match nudge_ingest::verify(&h, &body, &app.shopify_secrets) {
        Ok(m) => m,
        Err(e) => {
            telemetry::webhook("shopify", "-", "unauthorized");
            app.counters.rejected.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(reason = %e, "rejected a Shopify delivery");
            let status = StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::UNAUTHORIZED);
            return ApiError(status, e.to_string()).into_response();
        }
    };
    let shop = meta.shop_domain.to_ascii_lowercase();
    let mut dedupe_keys = vec![format!("shopify:{shop}:webhook:{}", meta.webhook_id)];
    if let Some(ev) = &meta.event_id {
        dedupe_keys.push(format!("shopify:{shop}:event:{ev}"));
    }
    let trace_id = TraceId::new();
    let topic = meta.topic.as_str().to_string();
    let delivery = NewDelivery {
        trace_id,
        source: "shopify".into(),
        topic: topic.clone(),
        shop: Some(shop),
        webhook_id: Some(meta.webhook_id.clone()),
        event_id: meta.event_id.clone(),
        received_at_ms: crate::outbox::now_ms(),
        headers_json: auditable_headers(&headers).to_string(),
        body: body.to_vec(),
        dedupe_keys,
    };
    let result = app.store.commit_delivery(delivery).await;
    let elapsed = started.elapsed().as_secs_f64();
    match result {
        Ok(CommitResult::Committed { .. }) => {
            app.wake_pipeline.notify_one();
            telemetry::webhook("shopify", &topic, "accepted");
            telemetry::ack_latency(elapsed);
            app.ack_latency.record(elapsed);
            (StatusCode::OK, Json(serde_json::json!({ "status": "accepted", "trace_id": trace_id })))
                .into_response()
        }
        Ok(CommitResult::Duplicate { original, key }) => {
            telemetry::webhook("shopify", &topic, "duplicate");
            app.counters.duplicates.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(%original, key, "duplicate Shopify delivery");
            (StatusCode::OK, Json(serde_json::json!({ "status": "duplicate", "trace_id": original })))
                .into_response()
        }
        Err(e) => {
            // Not committed: answer 5xx so Shopify retries; nothing was acknowledged.
            telemetry::webhook("shopify", &topic, "error");
            tracing::error!(error = %e, "could not commit a delivery");
            ApiError(StatusCode::SERVICE_UNAVAILABLE, "could not store the delivery; retry".into())
                .into_response()
        }
    }
}

async fn readyz(State(app): State<Arc<Shared>>) -> Response {
    match app.store.backlog().await {
        Ok((pending_deliveries, outbox_pending)) => Json(serde_json::json!({
            "status": "ready",
            "pending_deliveries": pending_deliveries,
            "outbox_pending": outbox_pending,
        }))
        .into_response(),
        Err(e) => {
            ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("store unavailable: {e}")).into_response()
        }
    }
}

async fn metrics(State(app): State<Arc<Shared>>) -> impl IntoResponse {
    ([("content-type", "text/plain; version=0.0.4")], app.metrics.render())
}

async fn local_only(
    State(app): State<Arc<Shared>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    req: axum::extract::Request,
    next: Next,
) -> Response {
    if !app.admin_from_any_address && !peer.ip().is_loopback() {
        return ApiError(StatusCode::FORBIDDEN, "the admin API only answers on localhost".into())
            .into_response();
    }
    next.run(req).await
}

async fn audit_trace(
    State(app): State<Arc<Shared>>,
    Path(trace): Path<String>,
) -> Result<Response, ApiError> {
    let trace: TraceId = trace
        .parse()
        .map_err(|_| ApiError(StatusCode::BAD_REQUEST, format!("`{trace}` is not a trace id")))?;
    match app.store.trace(trace).await {
        Ok(Some(view)) => Ok(Json(view).into_response()),
        Ok(None) => Err(ApiError(StatusCode::NOT_FOUND, format!("no trace {trace}"))),
        Err(e) => Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

#[derive(serde::Deserialize)]
struct Limit {
    limit: Option<usize>,
}

async fn audit_customer(
    State(app): State<Arc<Shared>>,
    Path(customer): Path<String>,
    Query(q): Query<Limit>,
) -> Result<Response, ApiError> {
    let id: CustomerId = customer.parse().map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("{e}")))?;
    let limit = q.limit.unwrap_or(200).clamp(1, 10_000);
    match app.store.customer_audit(&id, limit).await {
        Ok(records) => Ok(Json(serde_json::json!({ "customer_id": id, "records": records })).into_response()),
        Err(e) => Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}
