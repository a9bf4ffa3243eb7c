//! One customer: the stored state in short, the scores as the pipeline computes them now (with
//! [`crate::app::Shared::scoring`]), the flows' decisions and the newest audit records. Every customer's
//! data is what `ReadCustomerAudit` (compliance and admin) reads, as at `/api/audit/customers/*`.

use super::audit::Row;
use super::{Page, Signed, Ui, problem, render, store_failed};
use crate::access::Permission;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use nudge_model::{AuditStage, CustomerId};
use nudge_state::CustomerState;
use std::collections::HashMap;
use std::sync::Arc;

/// One score as the page shows it.
pub struct ScoreRow {
    pub name: String,
    pub value: String,
    pub model: String,
    pub explanation: String,
}

/// One order.
pub struct OrderRow {
    pub id: String,
    pub created: String,
    pub total: String,
    pub items: usize,
    pub cancelled: bool,
}

/// The customer as stored and scored.
pub struct Customer {
    pub id: String,
    pub summary: Vec<(&'static str, String)>,
    pub orders: Vec<OrderRow>,
    pub scores: Vec<ScoreRow>,
    pub segment: String,
    pub model_version: String,
    /// Why the scores fell back to the rules, if they did.
    pub fallback: Option<String>,
    /// Per flow: how many acting decisions, and the newest.
    pub decisions: Vec<(String, usize, String)>,
}

#[derive(Template)]
#[template(path = "ui/customer.html")]
struct CustomerPage {
    page: Page,
    query: String,
    customer: Option<Customer>,
    decided: Vec<Row>,
    audit: Vec<Row>,
    missing: Option<String>,
}

fn consent(c: &impl serde::Serialize) -> String {
    match serde_json::to_value(c) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(v) => v.to_string(),
        Err(_) => "-".into(),
    }
}

fn opt_ts(t: Option<time::OffsetDateTime>) -> String {
    t.map(crate::pipeline::fmt_ts).unwrap_or_else(|| "-".into())
}

fn customer(id: &CustomerId, state: &CustomerState, ui: &Ui) -> Customer {
    let now = time::OffsetDateTime::now_utc();
    let (scores, fallback) = ui.shared.scoring.score(state, now);
    let name = [state.first_name.as_deref(), state.last_name.as_deref()]
        .into_iter()
        .flatten()
        .collect::<Vec<_>>()
        .join(" ");
    let live_orders = state.orders.values().filter(|o| !o.cancelled).count();
    let summary = vec![
        ("Name", if name.is_empty() { "-".into() } else { name }),
        ("Email", state.email.clone().unwrap_or_else(|| "-".into())),
        ("Email consent", consent(&state.consent)),
        ("SMS consent", consent(&state.sms_consent)),
        ("Tags", if state.tags.is_empty() { "-".into() } else { state.tags.join(", ") }),
        ("Orders (not cancelled)", format!("{} ({live_orders})", state.orders.len())),
        ("Open checkouts", state.open_checkouts.len().to_string()),
        ("Last active", opt_ts(state.last_active_at)),
        (
            "Known as",
            if state.aliases.is_empty() {
                "-".into()
            } else {
                state.aliases.iter().cloned().collect::<Vec<_>>().join(", ")
            },
        ),
        ("State revision", state.revision.to_string()),
    ];
    let mut orders: Vec<OrderRow> = state
        .orders
        .iter()
        .map(|(oid, o)| OrderRow {
            id: oid.clone(),
            created: crate::pipeline::fmt_ts(o.created_at),
            total: o.total.to_string(),
            items: o.items.len(),
            cancelled: o.cancelled,
        })
        .collect();
    orders.sort_by(|a, b| b.created.cmp(&a.created));
    orders.truncate(50);
    let decisions = state
        .flow_history
        .iter()
        .map(|(flow, times)| {
            let newest = times.last().map(|t| super::fmt_ms(t * 1000)).unwrap_or_else(|| "-".into());
            (flow.clone(), times.len(), newest)
        })
        .collect();
    Customer {
        id: id.to_string(),
        summary,
        orders,
        scores: scores
            .scores
            .iter()
            .map(|s| ScoreRow {
                name: s.name.clone(),
                value: format!("{:.4}", s.value),
                model: format!("{} {}", s.model_id, s.model_version),
                explanation: s.explanation.clone(),
            })
            .collect(),
        segment: scores.segment.to_string(),
        model_version: scores.model_version.clone(),
        fallback,
        decisions,
    }
}

/// `GET /ui/customers?id=shopify:880012` (`ReadCustomerAudit`).
pub async fn page(
    State(ui): State<Arc<Ui>>,
    signed: Signed,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = signed.require(&ui, Permission::ReadCustomerAudit).await {
        return r;
    }
    let query = q.get("id").map(|s| s.trim().to_string()).unwrap_or_default();
    let mut page = CustomerPage {
        page: signed.page("Customers", "customers"),
        query: query.clone(),
        customer: None,
        decided: Vec::new(),
        audit: Vec::new(),
        missing: None,
    };
    if query.is_empty() {
        return render(StatusCode::OK, &page);
    }
    let id: CustomerId = match query.parse() {
        Ok(id) => id,
        Err(e) => return problem(&signed, StatusCode::BAD_REQUEST, "Not a customer id", format!("{e}")),
    };
    let store = &*ui.shared.store;
    let states = match store.load_states(std::slice::from_ref(&id)).await {
        Ok(s) => s,
        Err(e) => return store_failed(&signed, e),
    };
    let Some(stored) = states.into_iter().next() else {
        page.missing =
            Some(format!("No customer {id} is stored (no event or imported order has named them)."));
        return render(StatusCode::NOT_FOUND, &page);
    };
    let state: CustomerState = match serde_json::from_str(&stored.state_json) {
        Ok(s) => s,
        Err(e) => return store_failed(&signed, format!("the stored state of {id} is unreadable: {e}")),
    };
    let records = match store.customer_audit(&id, 200).await {
        Ok(r) => r,
        Err(e) => return store_failed(&signed, e),
    };
    page.page.title = format!("Customer {id}");
    page.customer = Some(customer(&id, &state, &ui));
    page.decided =
        records.iter().rev().filter(|r| r.stage == AuditStage::Decided).take(20).map(Row::of).collect();
    page.audit = records.iter().rev().take(50).map(Row::of).collect();
    render(StatusCode::OK, &page)
}

/// `POST /ui/customers/email` with `email` (CSRF token; `ReadCustomerAudit`): the customer's page by id.
pub async fn by_email(
    State(ui): State<Arc<Ui>>,
    signed: Signed,
    form: Result<axum::Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    super::audit::email_lookup(&ui, &signed, form, "/ui/customers", "/ui/customers?id=").await
}
