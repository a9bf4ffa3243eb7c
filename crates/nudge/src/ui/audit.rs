//! The audit explorer: one delivery's timeline by trace id (`ReadAudit`), or one customer's records by
//! customer id or email (`ReadCustomerAudit`). An email is looked up, never shown or put in a URL: the
//! form posts it, and the answer is the customer's page by id.

use super::{Page, Signed, Ui, enc, fields, problem, render, store_failed};
use crate::access::Permission;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use nudge_model::{AuditRecord, CustomerId, TraceId};
use nudge_store::Store;
use std::collections::HashMap;
use std::sync::Arc;

/// One audit record as a row.
pub struct Row {
    pub at: String,
    pub stage: String,
    pub customer: String,
    pub trace: String,
    pub detail: String,
}

impl Row {
    pub fn of(r: &AuditRecord) -> Row {
        Row {
            at: crate::pipeline::fmt_ts(r.at),
            stage: r.stage.as_str().to_string(),
            customer: r.customer.as_ref().map(|c| c.to_string()).unwrap_or_default(),
            trace: r.trace_id.to_string(),
            detail: serde_json::to_string_pretty(&r.detail).unwrap_or_default(),
        }
    }
}

/// A trace's timeline.
pub struct Timeline {
    pub trace: String,
    pub rows: Vec<Row>,
    /// The terminal state; `None` while in progress or for a trace that is not a delivery.
    pub terminal: Option<String>,
    /// A trace of records that belong to no delivery (an admin access, a refit): it has no terminal state.
    pub own: bool,
}

#[derive(Template)]
#[template(path = "ui/audit.html")]
struct AuditPage {
    page: Page,
    trace: String,
    customer: String,
    timeline: Option<Timeline>,
    customer_rows: Option<Vec<Row>>,
    aliases: Vec<String>,
    may_customers: bool,
    missing: Option<String>,
}

/// `GET /ui/audit?trace=…` or `?customer=…` (with `limit`, 1–2000, default 200).
pub async fn page(
    State(ui): State<Arc<Ui>>,
    signed: Signed,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = signed.require(&ui, Permission::ReadAudit).await {
        return r;
    }
    let store = &*ui.shared.store;
    let trace = q.get("trace").map(|s| s.trim().to_string()).unwrap_or_default();
    let customer = q.get("customer").map(|s| s.trim().to_string()).unwrap_or_default();
    let mut page = AuditPage {
        page: signed.page("Audit explorer", "audit"),
        trace: trace.clone(),
        customer: customer.clone(),
        timeline: None,
        customer_rows: None,
        aliases: Vec::new(),
        may_customers: signed.may(Permission::ReadCustomerAudit),
        missing: None,
    };
    if !trace.is_empty() {
        let Ok(id) = trace.parse::<TraceId>() else {
            let msg =
                format!("`{trace}` is not a trace id (a UUID, as the webhook's x-nudge-trace-id names it)");
            return problem(&signed, StatusCode::BAD_REQUEST, "Not a trace id", msg);
        };
        match store.trace(id).await {
            Ok(Some(view)) => {
                let own = view.terminal.is_none()
                    && !view.records.is_empty()
                    && view.records.iter().all(|r| r.stage.belongs_to_no_delivery());
                page.timeline = Some(Timeline {
                    trace: id.to_string(),
                    rows: view.records.iter().map(Row::of).collect(),
                    terminal: view.terminal.map(|t| t.to_string()),
                    own,
                });
            }
            Ok(None) => page.missing = Some(format!("No trace {id} in the store.")),
            Err(e) => return store_failed(&signed, e),
        }
    }
    if !customer.is_empty() {
        if let Err(r) = signed.require(&ui, Permission::ReadCustomerAudit).await {
            return r;
        }
        let id: CustomerId = match customer.parse() {
            Ok(id) => id,
            Err(e) => return problem(&signed, StatusCode::BAD_REQUEST, "Not a customer id", format!("{e}")),
        };
        let limit = q.get("limit").and_then(|l| l.parse::<usize>().ok()).unwrap_or(200).clamp(1, 2000);
        let (records, aliases) = match (store.customer_audit(&id, limit).await, store.aliases_of(&id).await) {
            (Ok(r), Ok(a)) => (r, a),
            (Err(e), _) | (_, Err(e)) => return store_failed(&signed, e),
        };
        page.aliases = aliases.into_iter().map(|a| a.alias).collect();
        page.customer_rows = Some(records.iter().rev().map(Row::of).collect());
    }
    render(StatusCode::OK, &page)
}

/// The customer an email belongs to: the one the store holds under it, else the email's own key (a
/// guest known by email only) when the store has a state for it.
pub async fn resolve_email(store: &dyn Store, email: &str) -> nudge_store::Result<Option<CustomerId>> {
    if let Some(id) = store.customer_by_email(email).await? {
        return Ok(Some(id));
    }
    let Some(key) = CustomerId::for_email(email) else { return Ok(None) };
    let known = store.load_states(std::slice::from_ref(&key)).await?;
    Ok(known.into_iter().next().map(|s| s.customer))
}

/// `POST /ui/audit/email` with `email` (CSRF token; `ReadCustomerAudit`): the customer's records by id,
/// or this page again saying no customer has that email (without repeating it).
pub async fn by_email(
    State(ui): State<Arc<Ui>>,
    signed: Signed,
    form: Result<axum::Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    email_lookup(&ui, &signed, form, "/ui/audit", "/ui/audit?customer=").await
}

/// A form's `email` looked up (CSRF token; `ReadCustomerAudit`): a redirect to `found` followed by the
/// customer's id, or back to `page` saying no customer has that email (the email is never put in a URL).
pub async fn email_lookup(
    ui: &Ui,
    signed: &Signed,
    form: Result<axum::Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
    page: &str,
    found: &str,
) -> Response {
    let form = fields(form);
    if let Err(r) = signed.authorize_form(ui, &form, Permission::ReadCustomerAudit).await {
        return r;
    }
    let email = form.get("email").map(|e| e.trim()).unwrap_or("");
    match resolve_email(&*ui.shared.store, email).await {
        Ok(Some(id)) => Redirect::to(&format!("{found}{}", enc(&id.to_string()))).into_response(),
        Ok(None) => signed.done(ui, "No customer is stored under that email.".into(), page),
        Err(e) => store_failed(signed, e),
    }
}
