//! The approval queue by flow: approve or reject one item or every pending item of a flow, through
//! [`crate::approvals_cli::decide_checked`] as `POST /api/approvals/*` does, attributed to `token:<name>`.

use super::{Page, Signed, Ui, enc, fields, problem, render, store_failed};
use crate::access::Permission;
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use nudge_store::{
    ApprovalDecision, ApprovalFilter, ApprovalRecord, ApprovalStatus, ApprovalTarget, DecideResult,
};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// One item as the page lists it.
pub struct Item {
    pub id: i64,
    pub customer: String,
    pub trace: String,
    /// `destination: action type` per action.
    pub actions: Vec<String>,
    /// The actions as stored (personal fields redacted for roles that may not read them), pretty JSON.
    pub detail: String,
    pub created: String,
    pub expires: String,
    pub expires_in: String,
    /// For the countdown the console's script keeps ticking.
    pub expires_at_ms: i64,
    pub status: &'static str,
    pub pending: bool,
    pub decided_by: String,
}

/// One flow's items.
pub struct FlowGroup {
    pub flow: String,
    pub items: Vec<Item>,
    pub pending: usize,
}

#[derive(Template)]
#[template(path = "ui/approvals.html")]
struct ApprovalsPage {
    page: Page,
    flow: String,
    status: String,
    groups: Vec<FlowGroup>,
    may_decide: bool,
    statuses: [&'static str; 5],
}

/// `GET /ui/approvals?flow=&status=` (status `pending` by default; `all` for every status).
pub async fn page(
    State(ui): State<Arc<Ui>>,
    signed: Signed,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = signed.require(&ui, Permission::ReadFlows).await {
        return r;
    }
    let flow = q.get("flow").map(|f| f.trim().to_string()).unwrap_or_default();
    let status = q.get("status").map(String::as_str).unwrap_or("pending").to_string();
    let status_filter = match status.as_str() {
        "all" | "" => None,
        s => match ApprovalStatus::parse(s) {
            Some(s) => Some(s),
            None => {
                let msg =
                    format!("`{s}` is not an approval status (pending, approved, rejected, expired, all)");
                return problem(&signed, StatusCode::BAD_REQUEST, "Bad filter", msg);
            }
        },
    };
    let filter = ApprovalFilter {
        flow: Some(flow.clone()).filter(|f| !f.is_empty()),
        status: status_filter,
        limit: 1000,
    };
    let items = match ui.shared.store.list_approvals(filter).await {
        Ok(items) => items,
        Err(e) => return store_failed(&signed, e),
    };
    let personal = signed.may(Permission::ReadCustomerAudit);
    let now = crate::outbox::now_ms();
    let mut groups: BTreeMap<String, FlowGroup> = BTreeMap::new();
    for a in items {
        let g = groups.entry(a.flow.clone()).or_insert_with(|| FlowGroup {
            flow: a.flow.clone(),
            items: Vec::new(),
            pending: 0,
        });
        if a.status == ApprovalStatus::Pending {
            g.pending += 1;
        }
        g.items.push(item(a, personal, now));
    }
    let page = ApprovalsPage {
        page: signed.page("Approvals", "approvals"),
        flow,
        status,
        groups: groups.into_values().collect(),
        may_decide: signed.may(Permission::Approve),
        statuses: ["pending", "approved", "rejected", "expired", "all"],
    };
    render(StatusCode::OK, &page)
}

fn item(a: ApprovalRecord, personal: bool, now_ms: i64) -> Item {
    let mut actions_json = a.actions.clone();
    if !personal {
        redact_personal(&mut actions_json);
    }
    let actions = a
        .actions
        .as_array()
        .map(|list| {
            list.iter()
                .map(|x| {
                    let dest = x.get("destination").and_then(|d| d.as_str()).unwrap_or("?");
                    let kind = x.pointer("/action/kind").and_then(|d| d.as_str()).unwrap_or("action");
                    format!("{dest}: {kind}")
                })
                .collect()
        })
        .unwrap_or_default();
    let pending = a.status == ApprovalStatus::Pending;
    Item {
        id: a.id,
        customer: a.customer.to_string(),
        trace: a.trace_id.to_string(),
        actions,
        detail: serde_json::to_string_pretty(&actions_json).unwrap_or_default(),
        created: super::fmt_ms(a.created_at_ms),
        expires: super::fmt_ms(a.expires_at_ms),
        expires_at_ms: a.expires_at_ms,
        expires_in: if pending { super::countdown(a.expires_at_ms, now_ms) } else { String::new() },
        status: a.status.as_str(),
        pending,
        decided_by: a.decided_by.unwrap_or_default(),
    }
}

/// Removes the personal fields (`email`, `first_name`, `last_name`) anywhere in a document, as the API
/// does for roles that may not read every customer's data.
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

fn back_to(flow: &str) -> String {
    if flow.is_empty() { "/ui/approvals".into() } else { format!("/ui/approvals?flow={}", enc(flow)) }
}

/// `POST /ui/approvals/{id}/approve` and `/ui/approvals/{id}/reject` (CSRF token; `Approve`).
pub async fn decide(
    State(ui): State<Arc<Ui>>,
    signed: Signed,
    Path((id, decision)): Path<(String, String)>,
    form: Result<axum::Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = fields(form);
    if let Err(r) = signed.authorize_form(&ui, &form, Permission::Approve).await {
        return r;
    }
    let decision = match decision.as_str() {
        "approve" => ApprovalDecision::Approve,
        "reject" => ApprovalDecision::Reject,
        _ => return problem(&signed, StatusCode::NOT_FOUND, "Not found", "No such decision.".into()),
    };
    let Ok(n) = id.parse::<i64>() else {
        return problem(&signed, StatusCode::NOT_FOUND, "Not found", format!("No approval item {id}."));
    };
    let app = &ui.shared;
    let by = format!("token:{}", signed.name);
    let checks = crate::approvals_cli::ApprovalChecks { scoring: &app.scoring, policy: &app.policy };
    let checked = match crate::approvals_cli::decide_checked(
        &*app.store,
        &checks,
        ApprovalTarget::Ids(vec![n]),
        decision,
        &by,
        None,
        crate::outbox::now_ms(),
    )
    .await
    {
        Ok(c) => c,
        Err(e) => return store_failed(&signed, format!("{e:#}")),
    };
    let verb = if decision == ApprovalDecision::Approve { "approved" } else { "rejected" };
    let (status, message) = if checked.awaiting_copy.contains(&n) {
        (StatusCode::CONFLICT, format!("Item {n} was not approved: {}.", crate::approvals_cli::AWAITING_COPY))
    } else if checked.consent_withdrawn.contains(&n) {
        (
            StatusCode::CONFLICT,
            format!("Item {n} was rejected instead: {}.", crate::approvals_cli::CONSENT_WITHDRAWN),
        )
    } else {
        match checked.results.first().map(|r| r.1) {
            Some(DecideResult::Decided) => (StatusCode::OK, format!("Item {n} {verb}.")),
            Some(DecideResult::AlreadyDecided(s)) => {
                (StatusCode::CONFLICT, format!("Item {n} is already {}; nothing changed.", s.as_str()))
            }
            Some(DecideResult::Expired) => {
                (StatusCode::CONFLICT, format!("Item {n} has expired; nothing is sent."))
            }
            Some(DecideResult::NotFound) | None => (StatusCode::NOT_FOUND, format!("No approval item {n}.")),
        }
    };
    signed.audit_change(&ui, Permission::Approve, status).await;
    let flow = form.get("flow").map(String::as_str).unwrap_or("");
    signed.done(&ui, message, &back_to(flow))
}

/// `POST /ui/approvals/bulk` with `flow` and `decision` (`approve` or `reject`): every pending item of the
/// flow (CSRF token; `Approve`).
pub async fn bulk(
    State(ui): State<Arc<Ui>>,
    signed: Signed,
    form: Result<axum::Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = fields(form);
    if let Err(r) = signed.authorize_form(&ui, &form, Permission::Approve).await {
        return r;
    }
    let flow = form.get("flow").map(|f| f.trim().to_string()).unwrap_or_default();
    let decision = match form.get("decision").map(String::as_str) {
        Some("approve") => ApprovalDecision::Approve,
        Some("reject") => ApprovalDecision::Reject,
        _ => {
            return problem(
                &signed,
                StatusCode::BAD_REQUEST,
                "Bad request",
                "Choose approve or reject.".into(),
            );
        }
    };
    if flow.is_empty() {
        return problem(&signed, StatusCode::BAD_REQUEST, "Bad request", "Name the flow.".into());
    }
    let app = &ui.shared;
    let by = format!("token:{}", signed.name);
    let checks = crate::approvals_cli::ApprovalChecks { scoring: &app.scoring, policy: &app.policy };
    let checked = match crate::approvals_cli::decide_checked(
        &*app.store,
        &checks,
        ApprovalTarget::AllPending { flow: Some(flow.clone()) },
        decision,
        &by,
        None,
        crate::outbox::now_ms(),
    )
    .await
    {
        Ok(c) => c,
        Err(e) => return store_failed(&signed, format!("{e:#}")),
    };
    let decided = checked.results.iter().filter(|r| r.1 == DecideResult::Decided).count();
    let expired = checked.results.iter().filter(|r| r.1 == DecideResult::Expired).count();
    let verb = if decision == ApprovalDecision::Approve { "approved" } else { "rejected" };
    let mut message = format!("Flow {flow}: {decided} {verb}, {expired} expired");
    if !checked.consent_withdrawn.is_empty() {
        message.push_str(&format!(", {} rejected (consent withdrawn)", checked.consent_withdrawn.len()));
    }
    if !checked.awaiting_copy.is_empty() {
        message.push_str(&format!(", {} left waiting for their copy", checked.awaiting_copy.len()));
    }
    message.push('.');
    signed.audit_change(&ui, Permission::Approve, StatusCode::OK).await;
    signed.done(&ui, message, &back_to(&flow))
}
