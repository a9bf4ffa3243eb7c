//! Signing in with an API token, and out.

use super::{AccessRecord, Page, Signed, Ui, render, session_cookie, with_trace};
use crate::access::{self, Role};
use askama::Template;
use axum::extract::{ConnectInfo, State};
use axum::http::{Method, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use std::net::SocketAddr;
use std::sync::Arc;

#[derive(Template)]
#[template(path = "ui/login.html")]
struct LoginPage {
    page: Page,
    error: Option<String>,
}

/// `GET /ui/login`.
pub async fn form() -> Response {
    render(StatusCode::OK, &LoginPage { page: Page::anonymous("Sign in"), error: None })
}

/// `POST /ui/login` with `token`: a known, unrevoked token opens a session (303 to the overview); any
/// other answer is the form again with an error (401). Both are audited.
pub async fn sign_in(
    State(ui): State<Arc<Ui>>,
    extensions: axum::http::Extensions,
    form: Result<
        axum::Form<std::collections::HashMap<String, String>>,
        axum::extract::rejection::FormRejection,
    >,
) -> Response {
    let peer = extensions.get::<ConnectInfo<SocketAddr>>().map(|c| c.0);
    let form = super::fields(form);
    let token = form.get("token").map(|t| t.trim()).unwrap_or("");
    let refused = |status: StatusCode, message: &str| {
        render(status, &LoginPage { page: Page::anonymous("Sign in"), error: Some(message.into()) })
    };
    let record = AccessRecord {
        method: &Method::POST,
        path: "/ui/login",
        peer,
        who: None,
        permission: None,
        outcome: "denied",
        status: StatusCode::UNAUTHORIZED,
        reason: None,
    };
    if token.is_empty() {
        let trace = ui.audit(AccessRecord { reason: Some("no token given"), ..record }).await;
        return with_trace(refused(StatusCode::UNAUTHORIZED, "Enter an API token."), trace);
    }
    let hash = access::hash_token(token);
    let found = match ui.shared.store.token_by_hash(&hash).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!(error = %e, "could not look an API token up");
            return refused(StatusCode::SERVICE_UNAVAILABLE, "The token cannot be checked now; try again.");
        }
    };
    let Some(found) = found else {
        let trace = ui.audit(AccessRecord { reason: Some("unknown or revoked token"), ..record }).await;
        return with_trace(refused(StatusCode::UNAUTHORIZED, "That token is unknown or revoked."), trace);
    };
    let Some(role) = Role::parse(&found.role) else {
        tracing::error!(token_name = %found.name, role = %found.role, "an API token has an unknown role");
        let reason = "the token's role is unknown to this version";
        let trace =
            ui.audit(AccessRecord { reason: Some(reason), status: StatusCode::FORBIDDEN, ..record }).await;
        return with_trace(
            refused(StatusCode::FORBIDDEN, "That token's role is unknown to this version of nudge."),
            trace,
        );
    };
    let id = ui.open_session(&found, hash, role);
    let trace = ui
        .audit(AccessRecord {
            who: Some((&found.name, role)),
            outcome: "signed_in",
            status: StatusCode::SEE_OTHER,
            ..record
        })
        .await;
    tracing::info!(token_name = %found.name, %role, "signed in to the console");
    let cookie = session_cookie(Some(&id), ui.settings().secure_cookie);
    let resp =
        (StatusCode::SEE_OTHER, [(header::LOCATION, "/ui/".to_string()), (header::SET_COOKIE, cookie)])
            .into_response();
    with_trace(resp, trace)
}

/// `POST /ui/logout` (with the CSRF token): ends the session, audited.
pub async fn sign_out(
    State(ui): State<Arc<Ui>>,
    signed: Signed,
    form: Result<
        axum::Form<std::collections::HashMap<String, String>>,
        axum::extract::rejection::FormRejection,
    >,
) -> Response {
    let form = super::fields(form);
    if let Err(refused) = signed.check_csrf(&ui, &form).await {
        return refused;
    }
    ui.close_session(&signed.session_id);
    let trace = ui
        .audit(AccessRecord {
            method: &signed.method,
            path: &signed.path,
            peer: signed.peer,
            who: Some((&signed.name, signed.role)),
            permission: None,
            outcome: "signed_out",
            status: StatusCode::SEE_OTHER,
            reason: None,
        })
        .await;
    let cookie = session_cookie(None, ui.settings().secure_cookie);
    let mut resp = Redirect::to("/ui/login").into_response();
    if let Ok(v) = cookie.parse() {
        resp.headers_mut().insert(header::SET_COOKIE, v);
    }
    with_trace(resp, trace)
}
