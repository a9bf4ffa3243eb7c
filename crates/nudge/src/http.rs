//! HTTP edge: the webhook receiver, health, metrics and the admin API. Handlers are thin: extract, call the
//! core, map the error to one `ApiError`. Every `/api` request passes the guard (`guard`) first: the peer
//! check (`server.admin_from_any_address`), the bearer token and the permission its route needs
//! ([`crate::access`]); refusals and permitted changes are audited (stage `api_access`).

use crate::access::{self, Caller, Permission};
use crate::app::Shared;
use crate::openapi::schemas as oas;
use crate::telemetry;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, OriginalUri, Path, Query, State};
use axum::handler::Handler;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use nudge_ingest::{Headers, Inbound, Verified};
use nudge_model::{AuditRecord, AuditStage, CustomerId, TraceId};
use nudge_store::{CommitResult, NewDelivery};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub fn router(shared: Arc<Shared>) -> Router {
    let guard_state =
        Arc::new(ApiGuard { shared: shared.clone(), denials: Mutex::new(DenialWindow::default()) });
    // Paths below are under `/api`. The guard wraps the fallback too: an unknown route is answered 404 only
    // once the token is checked, so nothing about the API's shape is told to a caller without one.
    let api =
        api_routes().router.fallback(api_not_found).layer(middleware::from_fn_with_state(guard_state, guard));
    Router::new()
        .route("/webhooks/{*path}", post(webhook).get(webhook))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .nest("/api", api)
        .merge(crate::segment_api::routes())
        .merge(crate::ui::router(shared.clone()))
        .layer(DefaultBodyLimit::max(shared.max_body_bytes))
        .with_state(shared)
}

/// The `/api` router being built, with the routes it serves written down as they are added.
struct ApiRouter {
    router: Router<Arc<Shared>>,
    served: Vec<(&'static str, String)>,
}

impl ApiRouter {
    fn get<H: Handler<T, Arc<Shared>>, T: 'static>(mut self, path: &'static str, handler: H) -> Self {
        self.served.push(("GET", format!("/api{path}")));
        self.router = self.router.route(path, get(handler));
        self
    }

    fn post<H: Handler<T, Arc<Shared>>, T: 'static>(mut self, path: &'static str, handler: H) -> Self {
        self.served.push(("POST", format!("/api{path}")));
        self.router = self.router.route(path, post(handler));
        self
    }
}

/// The handlers of `/api` (paths below `/api`). Each needs its row in [`access::API_ROUTES`] (the guard
/// answers 404 without one) and its `#[utoipa::path]` annotation listed in [`crate::openapi::ApiDoc`].
fn api_routes() -> ApiRouter {
    ApiRouter { router: Router::new(), served: Vec::new() }
        .get("/audit/events/{trace_id}", audit_trace)
        .get("/audit/customers/{customer_id}", audit_customer)
        .get("/flows", list_flows)
        .post("/flows/reload", reload_flows)
        .get("/reports/shadow", shadow_report)
        .get("/reports/lift", lift_report)
        .get("/approvals", list_approvals)
        .post("/approvals/bulk", bulk_approvals)
        .post("/approvals/{id}/approve", approve_one)
        .post("/approvals/{id}/reject", reject_one)
        .post("/privacy/erase", privacy_erase)
        .get("/privacy/export/{customer_id}", privacy_export)
        .get("/privacy/status", privacy_status)
        .get("/recs/{customer_id}", customer_recs)
        .get("/segments", adopted_segments)
        .get("/segments/proposals", segment_proposals)
        .get("/campaigns/hypotheses", campaign_hypotheses)
        .get("/digest", digest_preview)
        .post("/segments/proposals/{id}/adopt", adopt_segment)
        .get("/openapi.json", openapi_json)
}

/// The `/api` routes the router serves, as (method, full path): what the tests hold against
/// [`access::API_ROUTES`] and the OpenAPI document.
pub fn served_api_routes() -> Vec<(&'static str, String)> {
    api_routes().served
}

/// `GET /api/openapi.json`: the OpenAPI document of this API ([`crate::openapi`]).
#[utoipa::path(
    get,
    path = "/api/openapi.json",
    tag = "meta",
    summary = "This API's OpenAPI document",
    responses((status = 200, description = "The OpenAPI 3.1 document", body = oas::OpenApiDocument))
)]
async fn openapi_json() -> Json<utoipa::openapi::OpenApi> {
    static DOC: std::sync::OnceLock<utoipa::openapi::OpenApi> = std::sync::OnceLock::new();
    Json(DOC.get_or_init(crate::openapi::document).clone())
}

/// The one error type at the HTTP edge: a status and a JSON `{"error": …}` body.
pub struct ApiError(StatusCode, String);

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.0, Json(serde_json::json!({ "error": self.1 }))).into_response()
    }
}

/// The one webhook receiver: `/webhooks/<path>` finds the source registered at that path, which verifies
/// the request; an accepted delivery is committed to the ingest log (durable, deduplicated) before it is
/// answered. Nothing else happens on this path: parsing, fetching and deciding run in the workers.
///
/// A `GET` (a registration challenge, Adobe I/O Events' `?challenge=`) reaches the source with its query
/// and can only be answered: nothing is ever stored from a `GET`.
async fn webhook(
    State(app): State<Arc<Shared>>,
    Path(path): Path<String>,
    method: Method,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let is_get = method == Method::GET;
    let raw_query = query.clone();
    let query = if is_get { Some(query.unwrap_or_default()) } else { None };
    let started = Instant::now();
    let Some(source) = app.sources.intake(&path).cloned() else {
        return ApiError(StatusCode::NOT_FOUND, format!("no source is served at /webhooks/{path}"))
            .into_response();
    };
    let name = source.name();
    // Bodies over `server.max_body_bytes` (413) and unreadable bodies get the same JSON error shape.
    let body = match body {
        Ok(b) => b,
        Err(rejection) => {
            telemetry::webhook(name, "-", "refused");
            return ApiError(rejection.status(), rejection.body_text()).into_response();
        }
    };
    // A URL-token intake (Yotpo, Smile.io) reads `?token=` of a POST as the `x-nudge-url-token`
    // pseudo-header; a header of that name sent by the caller is never passed on.
    let url_token = if is_get { None } else { url_token_of(raw_query.as_deref()) };
    let h = Headers::from_pairs(
        headers
            .iter()
            .filter(|(k, _)| k.as_str() != nudge_ingest::url_token::HEADER)
            .map(|(k, v)| (k.as_str(), v.as_bytes()))
            .chain(url_token.as_deref().map(|t| (nudge_ingest::url_token::HEADER, t.as_bytes()))),
    );
    let mut fetched_keys = false;
    let accepted = loop {
        let inbound =
            Inbound { headers: &h, body: &body, now_ms: crate::outbox::now_ms(), query: query.as_deref() };
        match source.verify(&inbound) {
            Ok(Verified::Deliver(_) | Verified::NeedKeys(_)) if is_get => {
                telemetry::webhook(name, "-", "refused");
                return ApiError(StatusCode::METHOD_NOT_ALLOWED, "deliveries are POSTed".into())
                    .into_response();
            }
            Ok(Verified::Deliver(a)) => break a,
            Ok(Verified::Answer { status, body }) => {
                telemetry::webhook(name, "-", "answered");
                tracing::info!(source = name, status, "answered a request without storing it");
                let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
                return (status, Json(body)).into_response();
            }
            Ok(Verified::NeedKeys(urls)) if !fetched_keys => {
                fetched_keys = true;
                if let Err(reason) = app.key_fetcher.fetch_into(source.as_ref(), &urls).await {
                    telemetry::webhook(name, "-", "unauthorized");
                    tracing::warn!(source = name, reason, "could not fetch a signing key");
                    return ApiError(StatusCode::UNAUTHORIZED, reason).into_response();
                }
            }
            Ok(Verified::NeedKeys(_)) => {
                telemetry::webhook(name, "-", "unauthorized");
                return ApiError(StatusCode::UNAUTHORIZED, "the signing key could not be used".into())
                    .into_response();
            }
            Err(e) => {
                telemetry::webhook(name, "-", "unauthorized");
                app.counters.rejected.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                tracing::info!(source = name, reason = %e, "rejected a delivery");
                let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::UNAUTHORIZED);
                return ApiError(status, e.reason).into_response();
            }
        }
    };
    for w in &accepted.warnings {
        tracing::warn!(source = name, warning = w.as_str(), "accepted a delivery with a problem");
    }
    let trace_id = TraceId::new();
    let topic = accepted.topic;
    let headers_json: serde_json::Map<String, serde_json::Value> =
        accepted.audit_headers.into_iter().map(|(k, v)| (k, v.into())).collect();
    let delivery = NewDelivery {
        trace_id,
        source: name.into(),
        topic: topic.clone(),
        shop: accepted.shop,
        webhook_id: accepted.webhook_id,
        event_id: accepted.event_id,
        received_at_ms: crate::outbox::now_ms(),
        headers_json: serde_json::Value::Object(headers_json).to_string(),
        body: accepted.body.unwrap_or_else(|| body.to_vec()),
        dedupe_keys: accepted.dedupe_keys,
        part: None,
    };
    let delivery = match app.route_by {
        Some(of) => {
            NewDelivery { part: crate::pipeline::route_at_ack(&app.sources, &delivery, of), ..delivery }
        }
        None => delivery,
    };
    let result = match &app.bus {
        None => app.store.commit_delivery(delivery).await,
        // Durable once RabbitMQ confirms it; the drain deduplicates and commits it to the log.
        Some(bus) => match bus.publish(&delivery).await {
            Ok(()) => Ok(CommitResult::Committed { seq: 0 }),
            Err(e) => Err(nudge_store::StoreError::Database(e.to_string())),
        },
    };
    let elapsed = started.elapsed().as_secs_f64();
    // Every acknowledgement names its trace in a short header, whatever its body.
    let reply = |status: &str, trace: TraceId| {
        let header = [("x-nudge-trace-id", trace.to_string())];
        match &accepted.reply {
            _ if accepted.empty_reply => (StatusCode::OK, header).into_response(),
            Some(r) => (header, Json(r.clone())).into_response(),
            None => {
                (StatusCode::OK, header, Json(serde_json::json!({ "status": status, "trace_id": trace })))
                    .into_response()
            }
        }
    };
    match result {
        Ok(CommitResult::Committed { .. }) => {
            app.wake_pipeline.notify_one();
            telemetry::webhook(name, &topic, "accepted");
            telemetry::ack_latency(elapsed);
            app.ack_latency.record(elapsed);
            reply("accepted", trace_id)
        }
        Ok(CommitResult::Duplicate { original, key }) => {
            telemetry::webhook(name, &topic, "duplicate");
            app.counters.duplicates.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            tracing::debug!(%original, key, source = name, "duplicate delivery");
            reply("duplicate", original)
        }
        Err(e) => {
            // Not committed: answer 5xx so the platform retries; nothing was acknowledged.
            telemetry::webhook(name, &topic, "error");
            tracing::error!(error = %e, source = name, "could not commit a delivery");
            ApiError(StatusCode::SERVICE_UNAVAILABLE, "could not store the delivery; retry".into())
                .into_response()
        }
    }
}

async fn readyz(State(app): State<Arc<Shared>>) -> Response {
    // With the RabbitMQ bus, webhooks are acknowledged by the broker: without it the node is not ready.
    let mut bus_pending = None;
    if let Some(bus) = &app.bus {
        match bus.depth().await {
            Ok(d) => bus_pending = Some(d.ready),
            Err(e) => {
                return ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("bus unavailable: {e}"))
                    .into_response();
            }
        }
    }
    match app.store.backlog().await {
        Ok((pending_deliveries, outbox_pending)) => {
            let mut body = serde_json::json!({
                "status": "ready",
                "pending_deliveries": pending_deliveries,
                "outbox_pending": outbox_pending,
            });
            if let Some(n) = bus_pending {
                body["bus_pending"] = n.into();
            }
            Json(body).into_response()
        }
        Err(e) => {
            ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("store unavailable: {e}")).into_response()
        }
    }
}

async fn metrics(State(app): State<Arc<Shared>>) -> impl IntoResponse {
    ([("content-type", "text/plain; version=0.0.4")], app.metrics.render())
}

/// The response header naming the audit record of an audited `/api` request (a refusal, a permitted change).
pub const AUDIT_TRACE_HEADER: &str = "x-nudge-trace-id";

/// At most this many refused `/api` requests are audited per second; the rest are counted, and the next
/// audited refusal says how many were left out. A caller without a token must not be able to make nudge write
/// without bound.
const DENIED_AUDITS_PER_SECOND: u32 = 100;

/// The guard's state: the app's, and the window that bounds how many refusals are audited.
struct ApiGuard {
    shared: Arc<Shared>,
    denials: Mutex<DenialWindow>,
}

#[derive(Default)]
struct DenialWindow {
    second: i64,
    audited: u32,
    suppressed: u64,
}

impl ApiGuard {
    /// Whether the next refusal is audited, and with how many refusals left out before it.
    fn admit_denial(&self) -> Option<u64> {
        let now = crate::outbox::now_ms().div_euclid(1000);
        let mut w = self.denials.lock().unwrap_or_else(|e| e.into_inner());
        if w.second != now {
            w.second = now;
            w.audited = 0;
        }
        if w.audited < DENIED_AUDITS_PER_SECOND {
            w.audited += 1;
            Some(std::mem::take(&mut w.suppressed))
        } else {
            w.suppressed += 1;
            None
        }
    }
}

const MISSING_TOKEN: &str =
    "missing `Authorization: Bearer <token>` (tokens come from `nudge tokens create`)";

/// What an `Authorization` header presents.
#[derive(Debug, PartialEq, Eq)]
enum Presented<'a> {
    Missing,
    Malformed,
    Bearer(&'a str),
}

/// Reads `Authorization: Bearer <token>`: one header, the scheme in any case, then the token (no spaces).
fn bearer(headers: &HeaderMap) -> Presented<'_> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let value = match (values.next(), values.next()) {
        (None, _) => return Presented::Missing,
        (Some(v), None) => v,
        (Some(_), Some(_)) => return Presented::Malformed,
    };
    let Ok(value) = value.to_str() else { return Presented::Malformed };
    let Some((scheme, token)) = value.split_once(' ') else { return Presented::Malformed };
    let token = token.trim_start_matches(' ');
    if !scheme.eq_ignore_ascii_case("bearer") || token.is_empty() || token.contains(char::is_whitespace) {
        return Presented::Malformed;
    }
    Presented::Bearer(token)
}

/// What the audit record and the log line of one `/api` request say; never the token or its hash.
struct Access<'a> {
    method: &'a Method,
    path: &'a str,
    peer: Option<SocketAddr>,
    caller: Option<&'a Caller>,
    permission: Option<Permission>,
}

impl Access<'_> {
    fn detail(&self, outcome: &str, status: StatusCode, reason: Option<&str>) -> serde_json::Value {
        let mut d = serde_json::json!({
            "method": self.method.as_str(),
            "path": self.path,
            "outcome": outcome,
            "status": status.as_u16(),
            "peer": self.peer.map(|p| p.ip().to_string()),
        });
        if let Some(c) = self.caller {
            d["token_name"] = c.token_name.clone().into();
            d["role"] = c.role.as_str().into();
        }
        if let Some(p) = self.permission {
            d["permission"] = p.as_str().into();
        }
        if let Some(r) = reason {
            d["reason"] = r.into();
        }
        d
    }

    /// Appends the record (durable when this returns) and names its trace on the response.
    async fn audit(&self, app: &Shared, mut detail: serde_json::Value, suppressed: u64, resp: &mut Response) {
        if suppressed > 0 {
            detail["refusals_not_audited_before"] = suppressed.into();
        }
        let trace_id = TraceId::new();
        let record = AuditRecord {
            trace_id,
            customer: None,
            stage: AuditStage::ApiAccess,
            at: time::OffsetDateTime::now_utc(),
            detail,
        };
        match app.store.append_audit(vec![record]).await {
            Ok(()) => {
                if let Ok(v) = HeaderValue::from_str(&trace_id.to_string()) {
                    resp.headers_mut().insert(AUDIT_TRACE_HEADER, v);
                }
            }
            Err(e) => tracing::error!(error = %e, method = %self.method, path = self.path,
                "could not audit an admin API request"),
        }
    }

    /// Answers a refused request: `status` with the JSON error, audited (within the per-second bound) and
    /// logged.
    async fn refuse(&self, guard: &ApiGuard, status: StatusCode, reason: &str) -> Response {
        let mut resp = ApiError(status, reason.to_string()).into_response();
        if status == StatusCode::UNAUTHORIZED {
            // RFC 6750: a bare challenge when no credentials came, `invalid_token` when they were wrong.
            let challenge = if reason == MISSING_TOKEN { "Bearer" } else { "Bearer error=\"invalid_token\"" };
            resp.headers_mut().insert(header::WWW_AUTHENTICATE, HeaderValue::from_static(challenge));
        }
        tracing::warn!(
            method = %self.method,
            path = self.path,
            status = status.as_u16(),
            token_name = self.caller.map(|c| c.token_name.as_str()),
            peer = %self.peer.map_or_else(|| "unknown".to_string(), |p| p.ip().to_string()),
            reason,
            "admin API request refused"
        );
        match guard.admit_denial() {
            Some(suppressed) => {
                let detail = self.detail("denied", status, Some(reason));
                self.audit(&guard.shared, detail, suppressed, &mut resp).await;
            }
            None => tracing::debug!("refusal not audited: over the per-second bound"),
        }
        resp
    }
}

/// The gate of every `/api` request, in order: the peer (loopback only unless
/// `server.admin_from_any_address`), the bearer token (401 when missing, malformed, unknown or revoked), the
/// route (404, or 405 for a known path with another method), the role's permission (403). Refusals are
/// audited; a permitted request that changes something (any method but GET and HEAD) is audited once
/// answered, with its status; a permitted read is not. The caller goes into the request's extensions
/// ([`Caller`]) for handlers that attribute what they do.
async fn guard(State(guard): State<Arc<ApiGuard>>, mut req: axum::extract::Request, next: Next) -> Response {
    let app = guard.shared.clone();
    let method = req.method().clone();
    let path = match req.extensions().get::<OriginalUri>() {
        Some(u) => u.path().to_string(),
        None => req.uri().path().to_string(),
    };
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    // What the audit trail and the logs show of the path: a customer's key in it is personal data, kept
    // out of both (the route's template is shown instead).
    let shown = access::shown_path(&method, &path);
    let mut access = Access { method: &method, path: &shown, peer, caller: None, permission: None };

    if !app.admin_from_any_address && !peer.is_some_and(|p| p.ip().is_loopback()) {
        let reason = "the admin API only answers on localhost (see server.admin_from_any_address)";
        return access.refuse(&guard, StatusCode::FORBIDDEN, reason).await;
    }
    let token = match bearer(req.headers()) {
        Presented::Bearer(t) => t,
        Presented::Missing => return access.refuse(&guard, StatusCode::UNAUTHORIZED, MISSING_TOKEN).await,
        Presented::Malformed => {
            let reason = "malformed Authorization header: expected `Bearer <token>`";
            return access.refuse(&guard, StatusCode::UNAUTHORIZED, reason).await;
        }
    };
    let record = match app.store.token_by_hash(&access::hash_token(token)).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "could not look an API token up");
            return ApiError(StatusCode::SERVICE_UNAVAILABLE, "cannot check the token now; retry".into())
                .into_response();
        }
    };
    let Some(record) = record else {
        return access.refuse(&guard, StatusCode::UNAUTHORIZED, "unknown or revoked token").await;
    };
    let Some(role) = access::Role::parse(&record.role) else {
        tracing::error!(token_name = %record.name, role = %record.role, "an API token has an unknown role");
        return access
            .refuse(&guard, StatusCode::FORBIDDEN, "the token's role is unknown to this version")
            .await;
    };
    let caller = Caller { token_id: record.id, token_name: record.name.clone(), role };
    let now = crate::outbox::now_ms();
    if record.last_used_at_ms.is_none_or(|t| now - t >= 60_000) {
        let store = app.store.clone();
        tokio::spawn(async move {
            if let Err(e) = store.touch_token(record.id, now).await {
                tracing::warn!(error = %e, "could not record an API token's last use");
            }
        });
    }
    access.caller = Some(&caller);

    let Some(permission) = access::permission_for(&method, &path) else {
        return if access::path_is_routed(&path) {
            ApiError(StatusCode::METHOD_NOT_ALLOWED, format!("{method} is not served on {path}"))
                .into_response()
        } else {
            ApiError(StatusCode::NOT_FOUND, format!("no API route {method} {path}")).into_response()
        };
    };
    access.permission = Some(permission);
    if !access::allows(role, permission) {
        let reason = format!("role `{role}` does not have the `{permission}` permission this route needs");
        return access.refuse(&guard, StatusCode::FORBIDDEN, &reason).await;
    }

    req.extensions_mut().insert(caller.clone());
    let mut resp = next.run(req).await;
    if method == Method::GET || method == Method::HEAD {
        tracing::debug!(%method, path = %shown, token_name = %caller.token_name, "admin API read");
    } else {
        tracing::info!(%method, path = %shown, token_name = %caller.token_name, role = %role,
            status = resp.status().as_u16(), "admin API change");
        let detail = access.detail("allowed", resp.status(), None);
        access.audit(&app, detail, 0, &mut resp).await;
    }
    resp
}

/// An `/api` path the guard let through that no handler serves: a route of the table whose handler is not
/// there yet.
async fn api_not_found(method: Method, OriginalUri(uri): OriginalUri) -> ApiError {
    ApiError(StatusCode::NOT_FOUND, format!("no API route {method} {}", uri.path()))
}

/// `GET /api/flows`: the running flow set (what a reload last swapped in), in the shape of
/// `nudge flows list --json`. `builtin` says whether the set is exactly the built-in flows: rebuilt from the
/// destinations, holdout and metric the running set names, the built-in specs equal it.
#[utoipa::path(
    get,
    path = "/api/flows",
    tag = "flows",
    summary = "The running flow set",
    responses((status = 200, description = "The flows as `nudge flows list --json` shows them", body = oas::FlowList))
)]
async fn list_flows(State(app): State<Arc<Shared>>) -> Json<serde_json::Value> {
    use nudge_policy::flows::{ActionSpec, FlowSet, FlowSpec};
    let set = app.flows.current();
    let specs: Vec<FlowSpec> = set.flows.iter().map(|f| f.spec.clone()).collect();
    let builtin = match specs.as_slice() {
        [sync, abandoned] if sync.name == "profile_sync" && abandoned.name == "checkout_abandoned" => {
            let dests: Vec<&str> = sync.actions.iter().map(ActionSpec::destination).collect();
            let mut policy = nudge_policy::PolicyConfig {
                holdout_percent: abandoned.holdout_percent,
                ..Default::default()
            };
            if let Some(ActionSpec::TrackEvent { metric, .. }) = abandoned.actions.first() {
                policy.abandoned_checkout_metric = metric.clone();
            }
            FlowSet::default_specs(&dests, &policy) == specs
        }
        _ => false,
    };
    let flows: Vec<serde_json::Value> = specs
        .iter()
        .map(|s| {
            serde_json::json!({
                "name": s.name, "trigger": s.trigger, "schedule": s.schedule, "mode": s.mode, "when": s.when,
                "holdout_percent": s.holdout_percent, "frequency_cap": s.frequency_cap,
                "baseline": s.baseline, "actions": s.actions,
            })
        })
        .collect();
    Json(serde_json::json!({ "version": set.version, "builtin": builtin, "flows": flows }))
}

#[utoipa::path(
    get,
    path = "/api/audit/events/{trace_id}",
    tag = "audit",
    summary = "One trace's audit trail",
    params(("trace_id" = String, Path, description = "The trace id (a UUID), as the webhook's `x-nudge-trace-id` names it")),
    responses(
        (status = 200, description = "The trace's records, in order, and how it ended", body = oas::TraceView),
        (status = 400, description = "Not a trace id", body = oas::ApiErrorBody),
        (status = 404, description = "No such trace", body = oas::ApiErrorBody),
        (status = 500, description = "The store failed", body = oas::ApiErrorBody),
    )
)]
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

#[utoipa::path(
    get,
    path = "/api/audit/customers/{customer_id}",
    tag = "audit",
    summary = "One customer's audit trail",
    params(
        ("customer_id" = String, Path, description = "The customer's key, such as `shopify:880012`"),
        ("limit" = Option<u32>, Query, description = "At most this many records (1–10000; default 200)"),
    ),
    responses(
        (status = 200, description = "The customer's records", body = oas::CustomerAudit),
        (status = 400, description = "Not a customer key, or a malformed `limit`", body = oas::ApiErrorBody),
        (status = 500, description = "The store failed", body = oas::ApiErrorBody),
    )
)]
async fn audit_customer(
    State(app): State<Arc<Shared>>,
    Path(customer): Path<String>,
    q: Result<Query<Limit>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = q.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let id: CustomerId = customer.parse().map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("{e}")))?;
    let limit = q.limit.unwrap_or(200).clamp(1, 10_000);
    match app.store.customer_audit(&id, limit).await {
        Ok(records) => Ok(Json(serde_json::json!({ "customer_id": id, "records": records })).into_response()),
        Err(e) => Err(ApiError(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())),
    }
}

/// `GET /api/approvals?flow=&status=`: approval items, oldest first (`status`: pending, approved, rejected,
/// expired).
#[utoipa::path(
    get,
    path = "/api/approvals",
    tag = "approvals",
    summary = "Approval items, oldest first",
    params(
        ("flow" = Option<String>, Query, description = "Only this flow's items"),
        ("status" = Option<oas::ApprovalStatus>, Query, description = "Only items in this state"),
        ("limit" = Option<u32>, Query, description = "At most this many (1–10000; default 100)"),
    ),
    responses(
        (status = 200, description = "The items", body = oas::ApprovalList),
        (status = 400, description = "An unknown status or a malformed limit", body = oas::ApiErrorBody),
    )
)]
async fn list_approvals(
    State(app): State<Arc<Shared>>,
    axum::Extension(caller): axum::Extension<Caller>,
    q: Result<Query<std::collections::HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    use nudge_store::{ApprovalFilter, ApprovalStatus};
    let status = match q.get("status").map(String::as_str).filter(|s| !s.is_empty()) {
        None => None,
        Some(s) => Some(ApprovalStatus::parse(s).ok_or_else(|| {
            ApiError(
                StatusCode::BAD_REQUEST,
                format!("`{s}` is not an approval status (pending, approved, rejected, expired)"),
            )
        })?),
    };
    let flow = q.get("flow").filter(|f| !f.is_empty()).cloned();
    let limit = match q.get("limit") {
        None => 100,
        Some(l) => l.parse::<usize>().ok().filter(|n| (1..=10_000).contains(n)).ok_or_else(|| {
            ApiError(StatusCode::BAD_REQUEST, format!("`limit={l}`: give a number from 1 to 10000"))
        })?,
    };
    let items = app
        .store
        .list_approvals(ApprovalFilter { flow, status, limit })
        .await
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("store unavailable: {e}")))?;
    let mut doc = serde_json::json!({ "approvals": items, "limit": limit });
    // The actions carry the customer's email and name: only roles that may read every customer's audit
    // trail see them.
    if !crate::access::allows(caller.role, crate::access::Permission::ReadCustomerAudit) {
        redact_personal(&mut doc);
    }
    Ok(Json(doc))
}

/// Removes the personal fields (`email`, `first_name`, `last_name`) anywhere in a document.
fn redact_personal(v: &mut serde_json::Value) {
    match v {
        serde_json::Value::Object(map) => {
            for key in ["email", "first_name", "last_name"] {
                if map.contains_key(key) {
                    map.insert(key.into(), serde_json::Value::String("(redacted)".into()));
                }
            }
            map.values_mut().for_each(redact_personal);
        }
        serde_json::Value::Array(items) => items.iter_mut().for_each(redact_personal),
        _ => {}
    }
}

/// `POST /api/approvals/{id}/approve`.
#[utoipa::path(
    post,
    path = "/api/approvals/{id}/approve",
    tag = "approvals",
    summary = "Approve one item (its actions are sent)",
    params(("id" = String, Path, description = "The item's id (a whole number)")),
    responses(
        (status = 200, description = "Approved", body = oas::Decided),
        (status = 404, description = "No such item", body = oas::ApiErrorBody),
        (status = 409, description = "Already decided, expired, awaiting its copy, or the customer withdrew consent", body = oas::ApiErrorBody),
    )
)]
async fn approve_one(
    State(app): State<Arc<Shared>>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    decide_one(&app, &caller, &id, nudge_store::ApprovalDecision::Approve).await
}

/// `POST /api/approvals/{id}/reject`.
#[utoipa::path(
    post,
    path = "/api/approvals/{id}/reject",
    tag = "approvals",
    summary = "Reject one item (nothing is sent)",
    params(("id" = String, Path, description = "The item's id (a whole number)")),
    responses(
        (status = 200, description = "Rejected", body = oas::Decided),
        (status = 404, description = "No such item", body = oas::ApiErrorBody),
        (status = 409, description = "Already decided or expired", body = oas::ApiErrorBody),
    )
)]
async fn reject_one(
    State(app): State<Arc<Shared>>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(id): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    decide_one(&app, &caller, &id, nudge_store::ApprovalDecision::Reject).await
}

/// Decides one item for the caller: 200 decided, 404 unknown, 409 already decided or expired (nothing sent).
async fn decide_one(
    app: &Shared,
    caller: &Caller,
    id: &str,
    decision: nudge_store::ApprovalDecision,
) -> Result<Json<serde_json::Value>, ApiError> {
    use nudge_store::{ApprovalDecision, ApprovalTarget, DecideResult};
    let not_found = || ApiError(StatusCode::NOT_FOUND, format!("no approval item {id}"));
    let n: i64 = id.parse().map_err(|_| not_found())?;
    let by = format!("token:{}", caller.token_name);
    let checks = crate::approvals_cli::ApprovalChecks { scoring: &app.scoring, policy: &app.policy };
    let checked = crate::approvals_cli::decide_checked(
        &*app.store,
        &checks,
        ApprovalTarget::Ids(vec![n]),
        decision,
        &by,
        None,
        crate::outbox::now_ms(),
    )
    .await
    .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("store unavailable: {e:#}")))?;
    if checked.awaiting_copy.contains(&n) {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("approval item {n} was not approved: {}", crate::approvals_cli::AWAITING_COPY),
        ));
    }
    if checked.consent_withdrawn.contains(&n) {
        return Err(ApiError(
            StatusCode::CONFLICT,
            format!("approval item {n} was rejected instead: {}", crate::approvals_cli::CONSENT_WITHDRAWN),
        ));
    }
    let results = checked.results;
    let status = match decision {
        ApprovalDecision::Approve => "approved",
        ApprovalDecision::Reject => "rejected",
    };
    match results.first().map(|r| r.1) {
        Some(DecideResult::Decided) => {
            Ok(Json(serde_json::json!({ "id": n, "status": status, "decided_by": by })))
        }
        Some(DecideResult::AlreadyDecided(s)) => Err(ApiError(
            StatusCode::CONFLICT,
            format!("approval item {n} is already {}; nothing changed", s.as_str()),
        )),
        Some(DecideResult::Expired) => {
            Err(ApiError(StatusCode::CONFLICT, format!("approval item {n} has expired; nothing is sent")))
        }
        Some(DecideResult::NotFound) | None => Err(not_found()),
    }
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct BulkDecision {
    flow: String,
    decision: nudge_store::ApprovalDecision,
    #[serde(default)]
    reason: Option<String>,
}

/// `POST /api/approvals/bulk` with `{"flow": F, "decision": "approve"|"reject"}`: every pending item of the
/// flow, in one transaction; answers the counts.
#[utoipa::path(
    post,
    path = "/api/approvals/bulk",
    tag = "approvals",
    summary = "Approve or reject every pending item of a flow",
    request_body = oas::BulkDecision,
    responses(
        (status = 200, description = "What was decided", body = oas::BulkDecided),
        (status = 400, description = "A malformed body or no flow named", body = oas::ApiErrorBody),
    )
)]
async fn bulk_approvals(
    State(app): State<Arc<Shared>>,
    axum::Extension(caller): axum::Extension<Caller>,
    body: Result<Json<BulkDecision>, axum::extract::rejection::JsonRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    use nudge_store::{ApprovalTarget, DecideResult};
    let Json(b) = body.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    if b.flow.trim().is_empty() {
        return Err(ApiError(StatusCode::BAD_REQUEST, "name the flow (`flow`)".into()));
    }
    let by = format!("token:{}", caller.token_name);
    let checks = crate::approvals_cli::ApprovalChecks { scoring: &app.scoring, policy: &app.policy };
    let checked = crate::approvals_cli::decide_checked(
        &*app.store,
        &checks,
        ApprovalTarget::AllPending { flow: Some(b.flow.clone()) },
        b.decision,
        &by,
        b.reason,
        crate::outbox::now_ms(),
    )
    .await
    .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("store unavailable: {e:#}")))?;
    let results = &checked.results;
    let decided = results.iter().filter(|r| r.1 == DecideResult::Decided).count();
    let expired = results.iter().filter(|r| r.1 == DecideResult::Expired).count();
    Ok(Json(serde_json::json!({
        "flow": b.flow, "decision": b.decision, "decided": decided, "expired": expired,
        "consent_withdrawn": checked.consent_withdrawn.len(), "awaiting_copy": checked.awaiting_copy.len(),
        "decided_by": by,
    })))
}

/// `POST /api/flows/reload`: re-reads the configuration as the server was started with it and replaces the
/// running flows when they are valid (422 with the key path when not; the running set stays).
#[utoipa::path(
    post,
    path = "/api/flows/reload",
    tag = "flows",
    summary = "Re-read the configuration and replace the running flows",
    responses(
        (status = 200, description = "The new flow set is running", body = oas::Reloaded),
        (status = 409, description = "The server was not started from a configuration it can re-read", body = oas::ApiErrorBody),
        (status = 422, description = "The configuration or its flows are invalid; the running set stays", body = oas::ApiErrorBody),
    )
)]
async fn reload_flows(State(app): State<Arc<Shared>>) -> Result<Json<crate::app::Reloaded>, ApiError> {
    let loader = app.config_loader.read().unwrap_or_else(|e| e.into_inner()).clone();
    let Some(loader) = loader else {
        return Err(ApiError(
            StatusCode::CONFLICT,
            "this server was not started by `nudge serve`: there is no configuration to re-read".into(),
        ));
    };
    let cfg = loader().map_err(|e| {
        ApiError(
            StatusCode::UNPROCESSABLE_ENTITY,
            format!("configuration not reloaded, the running flows stay: {e}"),
        )
    })?;
    let reloaded = app.reload_flows(&cfg).map_err(|e| {
        ApiError(StatusCode::UNPROCESSABLE_ENTITY, format!("flows not reloaded, the running set stays: {e}"))
    })?;
    tracing::info!(version = %reloaded.version, flows = reloaded.flows, "flows reloaded over the API");
    Ok(Json(reloaded))
}

/// The `token` of a webhook URL's query (see `nudge_ingest::url_token`).
fn url_token_of(query: Option<&str>) -> Option<String> {
    query.and_then(nudge_ingest::url_token::from_query).map(str::to_string)
}

/// The query of `/api/reports/*`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct ReportParams {
    flow: Option<String>,
    window: Option<String>,
    since: Option<String>,
    until: Option<String>,
    #[serde(default)]
    partial: bool,
}

async fn report(
    app: &Shared,
    kind: crate::report_cli::ReportKind,
    params: Result<Query<ReportParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<crate::report_cli::Report>, ApiError> {
    use crate::report_cli::{ReportError, ReportQuery};
    let Query(p) = params.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let q = ReportQuery {
        flow: p.flow.unwrap_or_default(),
        window: p.window,
        since: p.since,
        until: p.until,
        partial: p.partial,
    };
    let flows = app.flows.current();
    crate::report_cli::build(&*app.store, &flows, kind, &q, time::OffsetDateTime::now_utc())
        .await
        .map(Json)
        .map_err(|e| {
            let status = match &e {
                ReportError::BadInput(_) => StatusCode::BAD_REQUEST,
                ReportError::UnknownFlow(_) => StatusCode::NOT_FOUND,
                ReportError::NotMeasured(_) => StatusCode::CONFLICT,
                ReportError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            ApiError(status, e.to_string())
        })
}

/// `GET /api/reports/shadow?flow=F[&window=14d&since=…&until=…&partial=true]`.
#[utoipa::path(
    get,
    path = "/api/reports/shadow",
    tag = "reports",
    summary = "The flow against its baseline rule",
    params(
        ("flow" = String, Query, description = "The flow (its `name`)"),
        ("window" = Option<String>, Query, description = "The conversion window (`14d`, `48h`; default 14d)"),
        ("since" = Option<String>, Query, description = "Only decisions from this instant (`2026-11-01`, RFC 3339) or this long ago (`30d`)"),
        ("until" = Option<String>, Query, description = "Only decisions before this instant (date or RFC 3339)"),
        ("partial" = Option<bool>, Query, description = "Also count customers whose window is still open"),
    ),
    responses(
        (status = 200, description = "The report", body = oas::ShadowReport),
        (status = 400, description = "A malformed parameter", body = oas::ApiErrorBody),
        (status = 404, description = "No such flow", body = oas::ApiErrorBody),
        (status = 409, description = "The flow has nothing this report compares with", body = oas::ApiErrorBody),
    )
)]
async fn shadow_report(
    State(app): State<Arc<Shared>>,
    params: Result<Query<ReportParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<crate::report_cli::Report>, ApiError> {
    report(&app, crate::report_cli::ReportKind::Shadow, params).await
}

/// `GET /api/reports/lift?flow=F[&window=14d&since=…&until=…&partial=true]`.
#[utoipa::path(
    get,
    path = "/api/reports/lift",
    tag = "reports",
    summary = "Treated against held-out customers",
    params(
        ("flow" = String, Query, description = "The flow (its `name`)"),
        ("window" = Option<String>, Query, description = "The conversion window (`14d`, `48h`; default 14d)"),
        ("since" = Option<String>, Query, description = "Only decisions from this instant (`2026-11-01`, RFC 3339) or this long ago (`30d`)"),
        ("until" = Option<String>, Query, description = "Only decisions before this instant (date or RFC 3339)"),
        ("partial" = Option<bool>, Query, description = "Also count customers whose window is still open"),
    ),
    responses(
        (status = 200, description = "The report", body = oas::LiftReport),
        (status = 400, description = "A malformed parameter", body = oas::ApiErrorBody),
        (status = 404, description = "No such flow", body = oas::ApiErrorBody),
        (status = 409, description = "The flow has nothing this report compares with", body = oas::ApiErrorBody),
    )
)]
async fn lift_report(
    State(app): State<Arc<Shared>>,
    params: Result<Query<ReportParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<crate::report_cli::Report>, ApiError> {
    report(&app, crate::report_cli::ReportKind::Lift, params).await
}

#[derive(serde::Deserialize)]
struct EraseBody {
    /// The customer's key, such as `shopify:880012`.
    customer: String,
}

/// `POST /api/privacy/erase` `{"customer": "shopify:880012"}`: the request goes into the ingest log and is
/// processed in order with the deliveries before it (202 with its trace and the person's pseudonym);
/// `GET /api/privacy/status?customer=…` follows it.
#[utoipa::path(
    post,
    path = "/api/privacy/erase",
    tag = "privacy",
    summary = "Erase a person (processed in order with the deliveries before it)",
    request_body = oas::EraseRequest,
    responses(
        (status = 202, description = "Accepted; follow it with `GET /api/privacy/status`", body = oas::EraseAccepted),
        (status = 400, description = "A malformed body or customer key", body = oas::ApiErrorBody),
    )
)]
async fn privacy_erase(
    State(app): State<Arc<Shared>>,
    axum::Extension(caller): axum::Extension<Caller>,
    body: Result<Json<EraseBody>, axum::extract::rejection::JsonRejection>,
) -> Result<Response, ApiError> {
    let Json(body) =
        body.map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("expected {{\"customer\": …}}: {e}")))?;
    let id: CustomerId =
        body.customer.parse().map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("{e}")))?;
    let unavailable = |e: nudge_store::StoreError| {
        ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("store unavailable: {e}"))
    };
    let subject = crate::privacy::subject_for(&*app.store, &id).await.map_err(unavailable)?;
    let req = nudge_ingest::PrivacyRequest::Erase { subject, reference: None };
    let trace = crate::privacy::submit_via_log(&*app.store, &req, &format!("token:{}", caller.token_name))
        .await
        .map_err(unavailable)?;
    app.wake_pipeline.notify_one();
    let answer =
        serde_json::json!({ "trace_id": trace.to_string(), "pseudonym": crate::privacy::pseudonym_of(&id) });
    Ok((StatusCode::ACCEPTED, Json(answer)).into_response())
}

/// `GET /api/privacy/export/{customer_id}`: everything nudge holds about the person, as one JSON document.
#[utoipa::path(
    get,
    path = "/api/privacy/export/{customer_id}",
    tag = "privacy",
    summary = "Everything nudge holds about a person",
    params(("customer_id" = String, Path, description = "The customer's key, such as `shopify:880012`")),
    responses(
        (status = 200, description = "One JSON document", body = oas::PrivacyExport),
        (status = 400, description = "Not a customer key", body = oas::ApiErrorBody),
    )
)]
async fn privacy_export(
    State(app): State<Arc<Shared>>,
    Path(customer): Path<String>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let id: CustomerId = customer.parse().map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("{e}")))?;
    let unavailable = |e: nudge_store::StoreError| {
        ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("store unavailable: {e}"))
    };
    let subject = crate::privacy::subject_for(&*app.store, &id).await.map_err(unavailable)?;
    let doc = crate::privacy::export_document(&*app.store, subject.customers).await.map_err(unavailable)?;
    Ok(Json(doc))
}

#[derive(serde::Deserialize)]
struct StatusQuery {
    customer: Option<String>,
}

/// `GET /api/privacy/status[?customer=…]`: privacy jobs, newest first, with each destination's state.
#[utoipa::path(
    get,
    path = "/api/privacy/status",
    tag = "privacy",
    summary = "Privacy jobs, newest first, with each destination's state",
    params(("customer" = Option<String>, Query, description = "Only this customer's jobs (their key)")),
    responses(
        (status = 200, description = "The jobs", body = oas::PrivacyJobs),
        (status = 400, description = "Not a customer key", body = oas::ApiErrorBody),
    )
)]
async fn privacy_status(
    State(app): State<Arc<Shared>>,
    q: Result<Query<StatusQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<serde_json::Value>, ApiError> {
    let Query(q) = q.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let pseudonym = match q.customer {
        Some(c) => {
            let id: CustomerId = c.parse().map_err(|e| ApiError(StatusCode::BAD_REQUEST, format!("{e}")))?;
            Some(crate::privacy::pseudonym_of(&id))
        }
        None => None,
    };
    let jobs = app
        .store
        .privacy_jobs(false, pseudonym)
        .await
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("store unavailable: {e}")))?;
    Ok(Json(serde_json::json!({ "jobs": jobs })))
}

/// `GET /api/recs/{customer_id}?count=N`: the customer's recommended products (1–20, `recs.count` by
/// default), from the precomputed list (computed from the stored state when it is not cached yet). 404
/// for a customer the store does not know; an empty list when no recommendation model serves.
#[utoipa::path(
    get,
    path = "/api/recs/{customer_id}",
    tag = "recs",
    summary = "A customer's recommended products",
    params(
        ("customer_id" = String, Path, description = "The customer's key, such as `shopify:880012`"),
        ("count" = Option<u32>, Query, description = "How many (1–20; default `recs.count`)"),
    ),
    responses(
        (status = 200, description = "The recommendations (empty when no model serves)", body = oas::Recommendations),
        (status = 400, description = "Not a customer key, or a malformed count", body = oas::ApiErrorBody),
        (status = 404, description = "No such customer", body = oas::ApiErrorBody),
        (status = 503, description = "Recommendations are not being served", body = oas::ApiErrorBody),
    )
)]
async fn customer_recs(
    State(app): State<Arc<Shared>>,
    Path(customer): Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Result<Json<crate::recs::Answer>, ApiError> {
    let bad = |m: String| ApiError(StatusCode::BAD_REQUEST, m);
    let id: CustomerId = customer.parse().map_err(|e| bad(format!("{e}")))?;
    let Some(recs) = app.scoring.recs() else {
        return Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, "recommendations are not being served".into()));
    };
    let mut count = recs.default_count();
    for (k, v) in query.as_deref().unwrap_or("").split('&').filter_map(|kv| kv.split_once('=')) {
        if k == "count" {
            count = v.parse::<usize>().ok().filter(|n| (1..=crate::recs::MAX_COUNT).contains(n)).ok_or_else(
                || bad(format!("count: {v:?} is not a whole number from 1 to {}", crate::recs::MAX_COUNT)),
            )?;
        }
    }
    match crate::recs::answer(&*app.store, &app.scoring, recs, &id, count).await {
        Ok(Some(a)) => Ok(Json(a)),
        Ok(None) => Err(ApiError(StatusCode::NOT_FOUND, format!("no customer {id}"))),
        Err(e) => Err(ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}"))),
    }
}

/// `GET /api/segments`: the adopted segments with their members and the last refresh's stability.
#[utoipa::path(
    get,
    path = "/api/segments",
    tag = "segments",
    summary = "The adopted segments",
    responses((status = 200, description = "The segments with their members and last refresh", body = oas::AdoptedSegments))
)]
async fn adopted_segments(State(app): State<Arc<Shared>>) -> Result<Json<serde_json::Value>, ApiError> {
    let adopted = app
        .store
        .adopted_segments()
        .await
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("store unavailable: {e}")))?;
    Ok(Json(serde_json::json!({ "segments": adopted })))
}

/// `GET /api/segments/proposals[?discovery=N]`: the proposals of the latest discovery (or of discovery N).
#[utoipa::path(
    get,
    path = "/api/segments/proposals",
    tag = "segments",
    summary = "The proposals of the latest discovery (or of one)",
    params(("discovery" = Option<i64>, Query, minimum = 1, description = "The discovery's id (default: the latest)")),
    responses(
        (status = 200, description = "The proposals (none when nothing was discovered)", body = oas::Proposals),
        (status = 400, description = "Not a discovery id", body = oas::ApiErrorBody),
        (status = 404, description = "No such discovery", body = oas::ApiErrorBody),
    )
)]
async fn segment_proposals(
    State(app): State<Arc<Shared>>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Result<Json<serde_json::Value>, ApiError> {
    let mut discovery = None;
    for (k, v) in query.as_deref().unwrap_or("").split('&').filter_map(|kv| kv.split_once('=')) {
        if k == "discovery" {
            discovery = Some(v.parse::<i64>().ok().filter(|n| *n > 0).ok_or_else(|| {
                ApiError(StatusCode::BAD_REQUEST, format!("discovery: {v:?} is not a discovery id"))
            })?);
        }
    }
    let proposals = crate::segment_adoption::proposals(&*app.store, discovery)
        .await
        .map_err(|e| ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")))?;
    if proposals.is_empty() && discovery.is_some() {
        return Err(ApiError(
            StatusCode::NOT_FOUND,
            format!("no segment discovery {}", discovery.unwrap_or(0)),
        ));
    }
    Ok(Json(serde_json::json!({ "proposals": proposals })))
}

/// The body of `POST /api/segments/proposals/{id}/adopt`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct AdoptBody {
    name: String,
    /// Lists the segment's members are kept in: `[{"destination": "klaviyo", "list_id": "Xy12Ab"}]`.
    #[serde(default)]
    lists: Vec<nudge_store::SegmentList>,
}

/// `POST /api/segments/proposals/{id}/adopt` with `{"name": ...}`: 201 adopted (its members are computed
/// in the background; `GET /api/segments` shows them), 400 a bad name or list, 404 an unknown proposal,
/// 409 a name taken or a proposal already adopted.
#[utoipa::path(
    post,
    path = "/api/segments/proposals/{id}/adopt",
    tag = "segments",
    summary = "Adopt a proposed segment under a name",
    params(("id" = String, Path, description = "The proposal's id, `<discovery>-<n>`")),
    request_body = oas::AdoptRequest,
    responses(
        (status = 201, description = "Adopted; its members are computed in the background", body = oas::Adopted),
        (status = 400, description = "A malformed body, name or list", body = oas::ApiErrorBody),
        (status = 404, description = "No such proposal", body = oas::ApiErrorBody),
        (status = 409, description = "The name is taken or the proposal already adopted", body = oas::ApiErrorBody),
    )
)]
async fn adopt_segment(
    State(app): State<Arc<Shared>>,
    axum::Extension(caller): axum::Extension<Caller>,
    Path(id): Path<String>,
    body: Result<Json<AdoptBody>, axum::extract::rejection::JsonRejection>,
) -> Result<(StatusCode, Json<serde_json::Value>), ApiError> {
    use crate::segment_adoption::{self as adoption, AdoptError};
    let Json(body) = body.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let mut takes = app.destinations.clone();
    takes.retain(|d| !nudge_policy::flows::is_alert_channel(d));
    let mut lists = Vec::new();
    for l in &body.lists {
        let spec = format!("{}:{}", l.destination, l.list_id);
        lists.push(
            adoption::parse_list(&spec, &takes)
                .map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.to_string()))?,
        );
    }
    let by = format!("token:{}", caller.token_name);
    let seg = adoption::adopt(&*app.store, &id, &body.name, &by, lists).await.map_err(|e| match e {
        AdoptError::Usage(e) => ApiError(StatusCode::BAD_REQUEST, e.to_string()),
        AdoptError::NotFound(m) => ApiError(StatusCode::NOT_FOUND, m),
        AdoptError::Conflict(m) => ApiError(StatusCode::CONFLICT, m),
        AdoptError::Other(e) => ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}")),
    })?;
    adoption::refresh_in_background(app.store.clone(), app.scoring.clone());
    Ok((StatusCode::CREATED, Json(serde_json::json!({ "adopted": seg, "members": "computing" }))))
}

/// The query of `GET /api/campaigns/hypotheses`.
#[derive(serde::Deserialize)]
struct HypothesesParams {
    flow: Option<String>,
    window: Option<String>,
    since: Option<String>,
    until: Option<String>,
    count: Option<usize>,
}

/// `GET /api/campaigns/hypotheses?flow=F[&window=14d&since=…&until=…&count=5]`: what to test next, as
/// `nudge campaigns hypotheses` proposes it.
#[utoipa::path(
    get,
    path = "/api/campaigns/hypotheses",
    tag = "campaigns",
    summary = "Test hypotheses from a flow's past results",
    params(
        ("flow" = String, Query, description = "The flow (its `name`)"),
        ("window" = Option<String>, Query, description = "The outcome window after each customer's first decision (`14d`, `48h`; default 14d)"),
        ("since" = Option<String>, Query, description = "Only decisions from this instant (`2026-11-01`, RFC 3339) or this long ago (`30d`)"),
        ("until" = Option<String>, Query, description = "Only decisions before this instant (date or RFC 3339)"),
        ("count" = Option<usize>, Query, minimum = 1, maximum = 10, description = "At most this many proposals (default 5)"),
    ),
    responses(
        (status = 200, description = "The proposals with their evidence and variants", body = oas::Hypotheses),
        (status = 400, description = "A bad parameter, an unknown flow or a flow without decisions", body = oas::ApiErrorBody),
    )
)]
async fn campaign_hypotheses(
    State(app): State<Arc<Shared>>,
    params: Result<Query<HypothesesParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<crate::campaigns_cli::HypothesesReport>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let period = crate::campaigns_cli::Period {
        flow: p.flow.unwrap_or_default(),
        window: p.window.unwrap_or_else(|| "14d".into()),
        since: p.since,
        until: p.until,
    };
    if period.flow.trim().is_empty() {
        return Err(ApiError(StatusCode::BAD_REQUEST, "flow: a flow name is required".into()));
    }
    let flows = app.flows.current();
    let now = time::OffsetDateTime::now_utc();
    crate::campaigns_cli::build(&app.config, &*app.store, &flows, &period, p.count.unwrap_or(5), now)
        .await
        .map(Json)
        .map_err(|e| analyst_error(&e, e.downcast_ref::<crate::campaigns_cli::UsageError>().is_some()))
}

/// The query of `GET /api/digest`.
#[derive(serde::Deserialize)]
struct DigestParams {
    since: Option<String>,
    until: Option<String>,
}

/// `GET /api/digest[?since=…&until=…]`: the digest of a period, as `nudge digest preview --format json`
/// makes it (without the generated summary).
#[utoipa::path(
    get,
    path = "/api/digest",
    tag = "campaigns",
    summary = "The campaign digest of a period",
    params(
        ("since" = Option<String>, Query, description = "Decisions from this instant (`2026-11-01`, RFC 3339) or this long ago (`7d`); default `digest.period` back from `until`, else 7 days"),
        ("until" = Option<String>, Query, description = "Decisions before this instant (date, RFC 3339, or a duration back from now); default now"),
    ),
    responses(
        (status = 200, description = "The digest's claims with the numbers behind them", body = oas::Digest),
        (status = 400, description = "A bad period", body = oas::ApiErrorBody),
    )
)]
async fn digest_preview(
    State(app): State<Arc<Shared>>,
    params: Result<Query<DigestParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<crate::digest_render::Digest>, ApiError> {
    let Query(p) = params.map_err(|e| ApiError(StatusCode::BAD_REQUEST, e.body_text()))?;
    let flows = app.flows.current();
    let now = time::OffsetDateTime::now_utc();
    crate::digest::preview(&app.config, &*app.store, &flows, p.since, p.until, now)
        .await
        .map(Json)
        .map_err(|e| analyst_error(&e, e.downcast_ref::<crate::digest::UsageError>().is_some()))
}

/// 400 for a mistake in the request, 503 otherwise (the store).
fn analyst_error(e: &anyhow::Error, usage: bool) -> ApiError {
    if usage {
        ApiError(StatusCode::BAD_REQUEST, e.to_string())
    } else {
        ApiError(StatusCode::SERVICE_UNAVAILABLE, format!("{e:#}"))
    }
}
