//! The web console (`/ui/`): server-rendered HTML on the same listener as the API, for the people who
//! decide with nudge. Templates are compiled into the binary (askama, `templates/ui/`) and escape every
//! value; pages work without JavaScript, and every filter is in the query string.
//!
//! Signing in takes an API token ([`crate::access`]): the console keeps a server-side session (an
//! in-memory table keyed by a random id in the `nudge_session` cookie: `HttpOnly; SameSite=Strict;
//! Path=/ui`, and `Secure` unless `server.ui_secure_cookie` is off) that holds the token's id, name and
//! role, a CSRF token and when it was last used. Each request re-checks that the token is not revoked; a
//! session unused for `server.ui_session_idle` is over. Every state-changing form carries the session's
//! CSRF token; a POST without it, or with another, is refused (403), as is a POST whose `Origin` is
//! another site. What a page may show or do is [`access::allows`] with the permissions of the matching
//! API routes, checked on the POST itself, not only by hiding buttons. The console answers loopback
//! peers only unless `server.admin_from_any_address`, like `/api`.
//!
//! Sign-ins, sign-outs, the changes made through the console and its refusals are audited as the API's
//! accesses are (stage `api_access`, with `"via": "ui"`); refusals at most 100 a second.
//!
//! One file per area: [`login`], [`overview`], [`audit`], [`approvals`], [`flows`], [`models`],
//! [`dead_letters`], [`customers`].

mod approvals;
mod audit;
mod customers;
mod dead_letters;
mod flows;
mod login;
mod models;
mod overview;
mod pulse;
mod segments;

use crate::access::{self, Permission, Role};
use crate::app::Shared;
use askama::Template;
use axum::Router;
use axum::extract::{ConnectInfo, FromRequestParts, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{Html, IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use nudge_model::{AuditRecord, AuditStage, TraceId};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The session cookie's name.
pub const SESSION_COOKIE: &str = "nudge_session";

/// The hidden form field that carries the session's CSRF token.
pub const CSRF_FIELD: &str = "csrf";

/// At most this many sessions are kept; signing in past it drops the least recently used one.
const MAX_SESSIONS: usize = 10_000;

/// At most this many refusals are audited per second (the rest are counted, as at `/api`).
const DENIED_AUDITS_PER_SECOND: u32 = 100;

/// The console's settings, from `[server]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UiSettings {
    /// Mark the session cookie `Secure` (`server.ui_secure_cookie`).
    pub secure_cookie: bool,
    /// How long an unused session lasts (`server.ui_session_idle`).
    pub session_idle: Duration,
}

impl Default for UiSettings {
    fn default() -> Self {
        UiSettings { secure_cookie: true, session_idle: Duration::from_secs(8 * 3600) }
    }
}

/// One signed-in browser, server side. Holds no token: only the hash the store looks tokens up by.
struct Session {
    token_id: i64,
    token_hash: String,
    name: String,
    role: Role,
    csrf: String,
    last_seen: Instant,
    /// A one-time message for the next page (what the last form did).
    flash: Option<String>,
}

/// The console's state: the app's, the session table and the bound on audited refusals.
pub struct Ui {
    shared: Arc<Shared>,
    sessions: Mutex<HashMap<String, Session>>,
    denials: Mutex<(i64, u32, u64)>,
    /// The overview's counts and per-minute series.
    pulse: pulse::Pulse,
}

/// The `/ui` routes, with their own state; merged into the main router by [`crate::http::router`].
pub fn router<S: Clone + Send + Sync + 'static>(shared: Arc<Shared>) -> Router<S> {
    let ui = Arc::new(Ui {
        shared,
        sessions: Mutex::new(HashMap::new()),
        denials: Mutex::new((0, 0, 0)),
        pulse: Default::default(),
    });
    Router::new()
        .route("/ui", get(|| async { Redirect::to("/ui/") }))
        .route("/ui/", get(overview::page))
        .route("/ui/static/console.css", get(stylesheet))
        .route("/ui/static/console.js", get(script))
        .route("/ui/login", get(login::form).post(login::sign_in))
        .route("/ui/logout", post(login::sign_out))
        .route("/ui/charts/terminal.svg", get(overview::terminal_chart))
        .route("/ui/charts/outbox.svg", get(overview::outbox_chart))
        .route("/ui/charts/deliveries.svg", get(overview::deliveries_chart))
        .route("/ui/audit", get(audit::page))
        .route("/ui/audit/email", post(audit::by_email))
        .route("/ui/approvals", get(approvals::page))
        .route("/ui/approvals/bulk", post(approvals::bulk))
        .route("/ui/approvals/{id}/{decision}", post(approvals::decide))
        .route("/ui/flows", get(flows::list))
        .route("/ui/flows/{name}", get(flows::detail))
        .route("/ui/flows/{name}/{plot}", get(flows::plot))
        .route("/ui/models", get(models::list))
        .route("/ui/models/{id}", get(models::detail))
        .route("/ui/models/{id}/plot.svg", get(models::plot))
        .route("/ui/models/{id}/activate", post(models::activate))
        .route("/ui/segments", get(segments::page))
        .route("/ui/segments/{id}/adopt", post(segments::adopt))
        .route("/ui/dead-letters", get(dead_letters::page))
        .route("/ui/dead-letters/replay", post(dead_letters::replay))
        .route("/ui/customers", get(customers::page))
        .route("/ui/customers/email", post(customers::by_email))
        .route("/ui/customers/scores.svg", get(customers::scores_chart))
        .route("/ui/customers/export", get(customers::export))
        .route("/ui/customers/erase", post(customers::erase))
        .fallback(not_found)
        .layer(middleware::from_fn(security_headers))
        .layer(middleware::from_fn_with_state(ui.clone(), local_only))
        .with_state(ui)
}

impl Ui {
    fn settings(&self) -> UiSettings {
        self.shared.ui
    }

    /// Whether the next refusal is audited, and how many were left out before it.
    fn admit_denial(&self) -> Option<u64> {
        let now = crate::outbox::now_ms().div_euclid(1000);
        let mut w = self.denials.lock().unwrap_or_else(|e| e.into_inner());
        if w.0 != now {
            *w = (now, 0, w.2);
        }
        if w.1 < DENIED_AUDITS_PER_SECOND {
            w.1 += 1;
            Some(std::mem::take(&mut w.2))
        } else {
            w.2 += 1;
            None
        }
    }

    /// Appends one `api_access` record for a console request (durable when this returns; a failure is
    /// logged, never shown).
    async fn audit(&self, a: AccessRecord<'_>) -> Option<TraceId> {
        let mut d = serde_json::json!({
            "via": "ui",
            "method": a.method.as_str(),
            "path": a.path,
            "outcome": a.outcome,
            "status": a.status.as_u16(),
            "peer": a.peer.map(|p| p.ip().to_string()),
        });
        if let Some((name, role)) = a.who {
            d["token_name"] = name.into();
            d["role"] = role.as_str().into();
        }
        if let Some(p) = a.permission {
            d["permission"] = p.as_str().into();
        }
        if let Some(r) = a.reason {
            d["reason"] = r.into();
        }
        if a.outcome == "denied" {
            match self.admit_denial() {
                Some(0) => {}
                Some(n) => d["refusals_not_audited_before"] = n.into(),
                None => return None,
            }
        }
        let trace_id = TraceId::new();
        let record = AuditRecord {
            trace_id,
            customer: None,
            stage: AuditStage::ApiAccess,
            at: time::OffsetDateTime::now_utc(),
            detail: d,
        };
        match self.shared.store.append_audit(vec![record]).await {
            Ok(()) => Some(trace_id),
            Err(e) => {
                tracing::error!(error = %e, path = a.path, "could not audit a console request");
                None
            }
        }
    }

    /// Opens a session for a token; returns its id.
    fn open_session(&self, record: &nudge_store::TokenRecord, hash: String, role: Role) -> String {
        let id = random_hex();
        let mut sessions = self.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let idle = self.settings().session_idle;
        sessions.retain(|_, s| s.last_seen.elapsed() < idle);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions.iter().min_by_key(|(_, s)| s.last_seen).map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            id.clone(),
            Session {
                token_id: record.id,
                token_hash: hash,
                name: record.name.clone(),
                role,
                csrf: random_hex(),
                last_seen: Instant::now(),
                flash: None,
            },
        );
        id
    }

    fn close_session(&self, id: &str) {
        self.sessions.lock().unwrap_or_else(|e| e.into_inner()).remove(id);
    }

    /// Leaves a one-time message for the session's next page.
    fn flash(&self, id: &str, message: String) {
        if let Some(s) = self.sessions.lock().unwrap_or_else(|e| e.into_inner()).get_mut(id) {
            s.flash = Some(message);
        }
    }
}

/// What one audited console request says.
struct AccessRecord<'a> {
    method: &'a Method,
    path: &'a str,
    peer: Option<SocketAddr>,
    who: Option<(&'a str, Role)>,
    permission: Option<Permission>,
    outcome: &'a str,
    status: StatusCode,
    reason: Option<&'a str>,
}

/// 32 bytes from the operating system's random source, in hex.
fn random_hex() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// Compares two secrets in time that does not depend on where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len() && a.bytes().zip(b.bytes()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|kv| kv.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// The `Set-Cookie` value of a session (or, with `None`, of its removal).
fn session_cookie(id: Option<&str>, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    match id {
        Some(id) => format!("{SESSION_COOKIE}={id}; HttpOnly; SameSite=Strict; Path=/ui{secure}"),
        None => format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/ui; Max-Age=0{secure}"),
    }
}

fn peer_of(parts: &Parts) -> Option<SocketAddr> {
    parts.extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0)
}

/// The signed-in caller of a console page: the session as it is now (its token re-checked). A request
/// without a live session is sent to the sign-in page.
pub struct Signed {
    session_id: String,
    name: String,
    role: Role,
    csrf: String,
    flash: Option<String>,
    peer: Option<SocketAddr>,
    method: Method,
    path: String,
}

impl FromRequestParts<Arc<Ui>> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, ui: &Arc<Ui>) -> Result<Self, Response> {
        let to_login = || {
            let cookie = session_cookie(None, ui.settings().secure_cookie);
            (
                StatusCode::SEE_OTHER,
                [(header::LOCATION, "/ui/login".to_string()), (header::SET_COOKIE, cookie)],
            )
                .into_response()
        };
        let Some(id) = cookie(&parts.headers, SESSION_COOKIE).map(str::to_string) else {
            return Err(to_login());
        };
        let idle = ui.settings().session_idle;
        let (token_id, hash) = {
            let mut sessions = ui.sessions.lock().unwrap_or_else(|e| e.into_inner());
            match sessions.get(&id) {
                Some(s) if s.last_seen.elapsed() < idle => (s.token_id, s.token_hash.clone()),
                Some(_) => {
                    sessions.remove(&id);
                    return Err(to_login());
                }
                None => return Err(to_login()),
            }
        };
        // The token may have been revoked since the sign-in: then the session is over.
        match ui.shared.store.token_by_hash(&hash).await {
            Ok(Some(t)) if t.id == token_id => {}
            Ok(_) => {
                ui.close_session(&id);
                return Err(to_login());
            }
            Err(e) => {
                tracing::error!(error = %e, "could not look an API token up");
                return Err(
                    (StatusCode::SERVICE_UNAVAILABLE, "cannot check the session now; retry").into_response()
                );
            }
        }
        let mut sessions = ui.sessions.lock().unwrap_or_else(|e| e.into_inner());
        let Some(s) = sessions.get_mut(&id) else { return Err(to_login()) };
        s.last_seen = Instant::now();
        Ok(Signed {
            session_id: id,
            name: s.name.clone(),
            role: s.role,
            csrf: s.csrf.clone(),
            flash: s.flash.take(),
            peer: peer_of(parts),
            method: parts.method.clone(),
            path: parts.uri.path().to_string(),
        })
    }
}

impl Signed {
    pub fn may(&self, p: Permission) -> bool {
        access::allows(self.role, p)
    }

    /// The layout's data for a page of this session.
    fn page(&self, title: impl Into<String>, nav: &'static str) -> Page {
        Page {
            title: title.into(),
            nav,
            user: self.name.clone(),
            role: self.role.as_str(),
            csrf: self.csrf.clone(),
            flash: self.flash.clone(),
            may_customers: self.may(Permission::ReadCustomerAudit),
        }
    }

    /// Refuses (403, audited) unless the session's role holds `p`.
    async fn require(&self, ui: &Ui, p: Permission) -> Result<(), Response> {
        if self.may(p) {
            return Ok(());
        }
        let reason = format!("role `{}` does not have the `{p}` permission this needs", self.role);
        Err(self.refuse(ui, Some(p), &reason).await)
    }

    /// Refuses (403, audited) a form whose CSRF token is missing or not this session's.
    async fn check_csrf(&self, ui: &Ui, form: &HashMap<String, String>) -> Result<(), Response> {
        match form.get(CSRF_FIELD) {
            Some(t) if same_secret(t, &self.csrf) => Ok(()),
            _ => Err(self.refuse(ui, None, "missing or wrong CSRF token").await),
        }
    }

    /// A 403 page for this session, audited.
    async fn refuse(&self, ui: &Ui, permission: Option<Permission>, reason: &str) -> Response {
        let trace = ui
            .audit(AccessRecord {
                method: &self.method,
                path: &self.path,
                peer: self.peer,
                who: Some((&self.name, self.role)),
                permission,
                outcome: "denied",
                status: StatusCode::FORBIDDEN,
                reason: Some(reason),
            })
            .await;
        tracing::warn!(path = %self.path, token_name = %self.name, reason, "console request refused");
        let page = self.page("Not allowed", "");
        with_trace(render(StatusCode::FORBIDDEN, &ErrorPage { page, message: reason.into() }), trace)
    }

    /// Audits a change made through the console (permitted), with what it answered.
    async fn audit_change(&self, ui: &Ui, permission: Permission, status: StatusCode) {
        ui.audit(AccessRecord {
            method: &self.method,
            path: &self.path,
            peer: self.peer,
            who: Some((&self.name, self.role)),
            permission: Some(permission),
            outcome: "allowed",
            status,
            reason: None,
        })
        .await;
    }

    /// The checks of every state-changing form, in order: the CSRF token, then the permission. Both
    /// refusals are 403 and audited; a permitted change is audited by the caller once done.
    async fn authorize_form(
        &self,
        ui: &Ui,
        form: &HashMap<String, String>,
        p: Permission,
    ) -> Result<(), Response> {
        self.check_csrf(ui, form).await?;
        self.require(ui, p).await
    }

    /// Leaves `message` for the next page and sends the browser to `to` (303: the POST is not repeated on
    /// reload).
    fn done(&self, ui: &Ui, message: String, to: &str) -> Response {
        ui.flash(&self.session_id, message);
        Redirect::to(to).into_response()
    }
}

/// What the shared layout (`ui/base.html`) shows around every page.
pub struct Page {
    pub title: String,
    /// Which navigation entry is the current page.
    pub nav: &'static str,
    /// The signed-in token's name; empty on the sign-in page.
    pub user: String,
    pub role: &'static str,
    pub csrf: String,
    pub flash: Option<String>,
    pub may_customers: bool,
}

impl Page {
    /// The layout of a page seen without a session (the sign-in page, a refusal before it).
    fn anonymous(title: &str) -> Page {
        Page {
            title: title.into(),
            nav: "",
            user: String::new(),
            role: "",
            csrf: String::new(),
            flash: None,
            may_customers: false,
        }
    }
}

#[derive(Template)]
#[template(path = "ui/error.html")]
struct ErrorPage {
    page: Page,
    message: String,
}

/// Names the audit record of a response (as `/api` does, in `x-nudge-trace-id`).
fn with_trace(mut resp: Response, trace: Option<TraceId>) -> Response {
    if let Some(v) = trace.and_then(|t| HeaderValue::from_str(&t.to_string()).ok()) {
        resp.headers_mut().insert(crate::http::AUDIT_TRACE_HEADER, v);
    }
    resp
}

/// Renders a template with a status; a template that fails to render is a 500.
fn render<T: Template>(status: StatusCode, t: &T) -> Response {
    match t.render() {
        Ok(html) => (status, Html(html)).into_response(),
        Err(e) => {
            tracing::error!(error = %e, "a console page failed to render");
            (StatusCode::INTERNAL_SERVER_ERROR, "the page failed to render").into_response()
        }
    }
}

/// A page that says what went wrong (a store failure, a malformed parameter), in the layout.
fn problem(signed: &Signed, status: StatusCode, heading: &str, message: String) -> Response {
    render(status, &ErrorPage { page: signed.page(heading, ""), message })
}

fn store_failed(signed: &Signed, e: impl std::fmt::Display) -> Response {
    tracing::error!(error = %e, path = %signed.path, "a console page could not read the store");
    problem(signed, StatusCode::SERVICE_UNAVAILABLE, "Store unavailable", format!("{e}"))
}

/// An SVG document as a response (shown through `<img>`, so no script in it could run).
fn svg_response(svg: String) -> Response {
    ([(header::CONTENT_TYPE, "image/svg+xml; charset=utf-8")], svg).into_response()
}

/// The fallback of the whole listener. Outside `/ui` (a browser's `/favicon.ico`, say) it is a plain 404:
/// such a request carries no session cookie (its path is `/ui`), and answering it with the sign-in
/// redirect would clear the cookie the browser holds.
async fn not_found(uri: axum::http::Uri, signed: Result<Signed, Response>) -> Response {
    if uri.path() != "/ui" && !uri.path().starts_with("/ui/") {
        return (StatusCode::NOT_FOUND, "not found").into_response();
    }
    match signed {
        Ok(s) => {
            problem(&s, StatusCode::NOT_FOUND, "Not found", "No console page is at this address.".into())
        }
        Err(to_login) => to_login,
    }
}

async fn stylesheet() -> Response {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], include_str!("../../templates/ui/console.css"))
        .into_response()
}

async fn script() -> Response {
    (
        [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
        include_str!("../../templates/ui/console.js"),
    )
        .into_response()
}

/// The console answers loopback peers only unless `server.admin_from_any_address`, like `/api`; a POST
/// whose `Origin` names another site is refused too (a forged sign-in, a form posted from elsewhere).
async fn local_only(State(ui): State<Arc<Ui>>, req: axum::extract::Request, next: Next) -> Response {
    let peer = req.extensions().get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let refusal = if !ui.shared.admin_from_any_address && !peer.is_some_and(|p| p.ip().is_loopback()) {
        Some("the console only answers on localhost (see server.admin_from_any_address)")
    } else if req.method() == Method::POST && !same_origin(req.headers()) {
        Some("the form was posted from another site")
    } else {
        None
    };
    if let Some(reason) = refusal {
        let path = req.uri().path().to_string();
        let trace = ui
            .audit(AccessRecord {
                method: req.method(),
                path: &path,
                peer,
                who: None,
                permission: None,
                outcome: "denied",
                status: StatusCode::FORBIDDEN,
                reason: Some(reason),
            })
            .await;
        let page = ErrorPage { page: Page::anonymous("Not allowed"), message: reason.into() };
        return with_trace(render(StatusCode::FORBIDDEN, &page), trace);
    }
    next.run(req).await
}

/// Whether a request's `Origin` (when it has one) is the host it was sent to.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else { return true };
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else { return false };
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    origin_host.eq_ignore_ascii_case(host)
}

/// Headers every console response carries: nothing from elsewhere, no framing, no caching of pages that
/// show personal data.
async fn security_headers(req: axum::extract::Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// A time in milliseconds since the epoch as the console shows it (UTC, RFC 3339 to the second).
fn fmt_ms(ms: i64) -> String {
    let t = crate::pipeline::ms_to_ts(ms);
    let t = t.replace_nanosecond(0).unwrap_or(t);
    crate::pipeline::fmt_ts(t)
}

/// How far off an instant is, roughly: `in 3h 12m`, `5m ago`.
fn countdown(at_ms: i64, now_ms: i64) -> String {
    let d = (at_ms - now_ms).abs() / 1000;
    let span = match d {
        0..60 => format!("{d}s"),
        60..3600 => format!("{}m", d / 60),
        3600..86_400 => format!("{}h {}m", d / 3600, d % 3600 / 60),
        _ => format!("{}d {}h", d / 86_400, d % 86_400 / 3600),
    };
    if at_ms >= now_ms { format!("in {span}") } else { format!("{span} ago") }
}

/// A form's fields (a body that is not a form reads as no fields: the CSRF check then refuses it).
fn fields(
    form: Result<axum::Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> HashMap<String, String> {
    form.map(|f| f.0).unwrap_or_default()
}

/// A query-string value made safe for a URL built by hand.
fn enc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~' | b':') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_are_read_by_name() {
        let mut h = HeaderMap::new();
        h.append(header::COOKIE, HeaderValue::from_static("a=1; nudge_session=abc"));
        h.append(header::COOKIE, HeaderValue::from_static("b=2"));
        assert_eq!(cookie(&h, SESSION_COOKIE), Some("abc"));
        assert_eq!(cookie(&h, "b"), Some("2"));
        assert_eq!(cookie(&h, "nudge"), None);
    }

    #[test]
    fn the_session_cookie_is_http_only_strict_and_scoped() {
        let c = session_cookie(Some("x"), true);
        assert_eq!(c, "nudge_session=x; HttpOnly; SameSite=Strict; Path=/ui; Secure");
        assert!(!session_cookie(Some("x"), false).contains("Secure"));
        assert!(session_cookie(None, true).contains("Max-Age=0"));
    }

    #[test]
    fn secrets_compare_whole() {
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
        assert!(!same_secret("abc", "ab"));
        assert!(!same_secret("", "a"));
    }

    #[test]
    fn origins_must_match_the_host() {
        let mut h = HeaderMap::new();
        assert!(same_origin(&h), "no Origin: a same-origin form of an older browser");
        h.insert(header::HOST, HeaderValue::from_static("127.0.0.1:8080"));
        h.insert(header::ORIGIN, HeaderValue::from_static("http://127.0.0.1:8080"));
        assert!(same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("https://evil.example"));
        assert!(!same_origin(&h));
        h.insert(header::ORIGIN, HeaderValue::from_static("null"));
        assert!(!same_origin(&h));
    }

    #[test]
    fn countdowns_read_both_ways() {
        assert_eq!(countdown(3_600_000 * 2 + 60_000, 0), "in 2h 1m");
        assert_eq!(countdown(0, 30_000), "30s ago");
        assert_eq!(countdown(86_400_000 * 2, 0), "in 2d 0h");
        assert_eq!(enc("a b&c<"), "a%20b%26c%3C");
    }
}
