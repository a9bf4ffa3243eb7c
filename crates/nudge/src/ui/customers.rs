//! One customer: the stored state in short, the scores as the pipeline computes them now (with
//! [`crate::app::Shared::scoring`]), the scores it recorded over time (its `scored` audit records, as a
//! table and a chart), the flows' decisions and the newest audit records. Every customer's data is what
//! `ReadCustomerAudit` (compliance and admin) reads, as at `/api/audit/customers/*`.
//!
//! A role holding `Privacy` (as `/api/privacy/*` needs) also sees the customer's privacy jobs and two
//! buttons: an export (the document of `GET /api/privacy/export/*`, as a download) and an erasure, which
//! takes the customer id typed again and goes into the ingest log as `POST /api/privacy/erase` does.

use super::audit::Row;
use super::{Page, Signed, Ui, enc, fields, problem, render, store_failed, svg_response};
use crate::access::Permission;
use crate::svg::{LineChart, Marker, PALETTE, Series};
use askama::Template;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use nudge_model::{AuditRecord, AuditStage, CustomerId};
use nudge_state::CustomerState;
use nudge_store::{Store, StoreError};
use std::collections::HashMap;
use std::sync::Arc;
use time::OffsetDateTime;

/// At most this many score records are shown, in the table and in the chart alike.
const SCORE_ROWS: usize = 30;

/// The audit records read for the page; when they hold fewer than [`SCORE_ROWS`] score records and may
/// not be all of them, a second read takes up to [`AUDIT_FOR_SCORES`].
const AUDIT_FIRST: usize = 200;
const AUDIT_FOR_SCORES: usize = 2_000;

/// The form field that must repeat the customer id for an erasure to go ahead.
const CONFIRM_FIELD: &str = "confirm";

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

/// One `scored` audit record: when, under which model version, and each score's value.
struct Scored {
    at: OffsetDateTime,
    trace: String,
    model: String,
    values: Vec<(String, f64)>,
}

/// The scores over time as the page's table shows them: one column per score name.
pub struct ScoreHistory {
    pub names: Vec<String>,
    pub rows: Vec<HistoryRow>,
}

/// One row of [`ScoreHistory`]; `values` follows `names` (`-` where the record has no such score).
pub struct HistoryRow {
    pub at: String,
    pub trace: String,
    pub values: Vec<String>,
    pub model: String,
}

#[derive(Template)]
#[template(path = "ui/customer.html")]
struct CustomerPage {
    page: Page,
    query: String,
    customer: Option<Customer>,
    history: Option<ScoreHistory>,
    decided: Vec<Row>,
    audit: Vec<Row>,
    missing: Option<String>,
    /// Whether the export and erase buttons show (the role holds `Privacy`).
    may_privacy: bool,
    /// The customer's privacy jobs, newest first, as `nudge privacy status` prints them.
    jobs: Vec<String>,
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

/// The score records among `records` (oldest first, as the store returns them): newest first, at most
/// [`SCORE_ROWS`]. The pipeline writes one per event it processes for the customer, with the score set
/// (`scores`: name, value, model) and the set's `model_version`.
fn scored(records: &[AuditRecord]) -> Vec<Scored> {
    records
        .iter()
        .rev()
        .filter(|r| r.stage == AuditStage::Scored)
        .take(SCORE_ROWS)
        .map(|r| Scored {
            at: r.at,
            trace: r.trace_id.to_string(),
            model: r.detail["model_version"].as_str().unwrap_or("-").to_string(),
            values: r.detail["scores"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|s| Some((s["name"].as_str()?.to_string(), s["value"].as_f64()?)))
                .collect(),
        })
        .collect()
}

/// The customer's newest audit records (oldest first) and their newest score records: read again, up to
/// [`AUDIT_FOR_SCORES`] records, when the first read holds too few score records and may not be all.
async fn audit_and_scores(
    store: &dyn Store,
    id: &CustomerId,
) -> Result<(Vec<AuditRecord>, Vec<Scored>), StoreError> {
    let records = store.customer_audit(id, AUDIT_FIRST).await?;
    let mut history = scored(&records);
    if history.len() < SCORE_ROWS && records.len() >= AUDIT_FIRST {
        history = scored(&store.customer_audit(id, AUDIT_FOR_SCORES).await?);
    }
    Ok((records, history))
}

/// Every score name in `history`, in the order first seen (newest record first).
fn score_names(history: &[Scored]) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for (name, _) in history.iter().flat_map(|s| &s.values) {
        if !names.contains(name) {
            names.push(name.clone());
        }
    }
    names
}

fn history_table(history: &[Scored]) -> Option<ScoreHistory> {
    if history.is_empty() {
        return None;
    }
    let names = score_names(history);
    let rows = history
        .iter()
        .map(|s| HistoryRow {
            at: super::fmt_ms(crate::pipeline::ts_to_ms(s.at)),
            trace: s.trace.clone(),
            values: names
                .iter()
                .map(|n| {
                    s.values
                        .iter()
                        .find(|(k, _)| k == n)
                        .map_or_else(|| "-".into(), |(_, v)| format!("{v:.4}"))
                })
                .collect(),
            model: s.model.clone(),
        })
        .collect();
    Some(ScoreHistory { names, rows })
}

/// One line chart per score, stacked: the values of `history` against the time since its oldest record
/// (in minutes, hours or days, by the span), with a marker where the model version changes.
fn history_chart(history: &[Scored]) -> String {
    let (Some(oldest), Some(newest)) = (history.last(), history.first()) else {
        return crate::svg::stack(&[]);
    };
    let span = (newest.at - oldest.at).as_seconds_f64();
    let (unit, seconds) = match span {
        s if s < 2.0 * 3600.0 => ("minutes", 60.0),
        s if s < 2.0 * 86_400.0 => ("hours", 3600.0),
        _ => ("days", 86_400.0),
    };
    let x = |at: OffsetDateTime| (at - oldest.at).as_seconds_f64() / seconds;
    let since = super::fmt_ms(crate::pipeline::ts_to_ms(oldest.at));
    let chronological: Vec<&Scored> = history.iter().rev().collect();
    let markers: Vec<Marker> = chronological
        .windows(2)
        .filter(|w| w[0].model != w[1].model)
        .map(|w| Marker { x: x(w[1].at), label: format!("model {}", w[1].model) })
        .collect();
    let charts: Vec<String> = score_names(history)
        .into_iter()
        .map(|name| {
            let points = chronological
                .iter()
                .filter_map(|s| s.values.iter().find(|(k, _)| *k == name).map(|(_, v)| (x(s.at), *v)))
                .collect();
            LineChart {
                title: format!("{name} over time"),
                x_label: format!("{unit} since {since}"),
                y_label: name.clone(),
                series: vec![Series { name, color: PALETTE[1].into(), dashed: false, points }],
                markers: markers.clone(),
            }
            .render()
        })
        .collect();
    crate::svg::stack(&charts)
}

/// The customer's privacy jobs, newest first, as lines of `nudge privacy status`.
async fn privacy_jobs(store: &dyn Store, id: &CustomerId) -> Result<Vec<String>, StoreError> {
    let jobs = store.privacy_jobs(false, Some(crate::privacy::pseudonym_of(id))).await?;
    Ok(jobs.iter().map(crate::privacy::describe).collect())
}

/// The customer id of a query string or form (`id`), or the 400 page saying why it is not one. (The error
/// is a response handed straight back, as `Signed::require`'s is; it is not worth boxing.)
#[allow(clippy::result_large_err)]
fn id_of(signed: &Signed, q: &HashMap<String, String>) -> Result<CustomerId, Response> {
    q.get("id")
        .map(|s| s.trim())
        .unwrap_or("")
        .parse()
        .map_err(|e| problem(signed, StatusCode::BAD_REQUEST, "Not a customer id", format!("{e}")))
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
    let may_privacy = signed.may(Permission::Privacy);
    let mut page = CustomerPage {
        page: signed.page("Customers", "customers"),
        query: query.clone(),
        customer: None,
        history: None,
        decided: Vec::new(),
        audit: Vec::new(),
        missing: None,
        may_privacy,
        jobs: Vec::new(),
    };
    if query.is_empty() {
        return render(StatusCode::OK, &page);
    }
    let id = match id_of(&signed, &q) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let store = &*ui.shared.store;
    // An erased customer's jobs show too: the page is where the console follows an erasure.
    if may_privacy {
        page.jobs = match privacy_jobs(store, &id).await {
            Ok(j) => j,
            Err(e) => return store_failed(&signed, e),
        };
    }
    let states = match store.load_states(std::slice::from_ref(&id)).await {
        Ok(s) => s,
        Err(e) => return store_failed(&signed, e),
    };
    let Some(stored) = states.into_iter().next() else {
        page.missing =
            Some(format!("No customer {id} is stored (no event or imported order has named them)."));
        return render(StatusCode::NOT_FOUND, &page);
    };
    let state: CustomerState = match CustomerState::decode(&stored.state) {
        Ok(s) => s,
        Err(e) => return store_failed(&signed, format!("the stored state of {id} is unreadable: {e}")),
    };
    let (records, history) = match audit_and_scores(store, &id).await {
        Ok(r) => r,
        Err(e) => return store_failed(&signed, e),
    };
    page.page.title = format!("Customer {id}");
    page.customer = Some(customer(&id, &state, &ui));
    page.history = history_table(&history);
    page.decided =
        records.iter().rev().filter(|r| r.stage == AuditStage::Decided).take(20).map(Row::of).collect();
    page.audit = records.iter().rev().take(50).map(Row::of).collect();
    render(StatusCode::OK, &page)
}

/// `GET /ui/customers/scores.svg?id=shopify:880012` (`ReadCustomerAudit`): the chart of the page's table
/// of scores over time; 404 when no score is recorded.
pub async fn scores_chart(
    State(ui): State<Arc<Ui>>,
    signed: Signed,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = signed.require(&ui, Permission::ReadCustomerAudit).await {
        return r;
    }
    let id = match id_of(&signed, &q) {
        Ok(id) => id,
        Err(r) => return r,
    };
    match audit_and_scores(&*ui.shared.store, &id).await {
        Ok((_, history)) if history.is_empty() => problem(
            &signed,
            StatusCode::NOT_FOUND,
            "No scores",
            format!("No score is recorded for customer {id}."),
        ),
        Ok((_, history)) => svg_response(history_chart(&history)),
        Err(e) => store_failed(&signed, e),
    }
}

/// `GET /ui/customers/export?id=shopify:880012` (`Privacy`): everything nudge holds about the person, the
/// document of `GET /api/privacy/export/*`, as a file to save. Audited as a permitted access.
pub async fn export(
    State(ui): State<Arc<Ui>>,
    signed: Signed,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = signed.require(&ui, Permission::Privacy).await {
        return r;
    }
    let id = match id_of(&signed, &q) {
        Ok(id) => id,
        Err(r) => return r,
    };
    let store = &*ui.shared.store;
    let doc = match crate::privacy::subject_for(store, &id).await {
        Ok(subject) => crate::privacy::export_document(store, subject.customers).await,
        Err(e) => Err(e),
    };
    let doc = match doc {
        Ok(d) => d,
        Err(e) => return store_failed(&signed, e),
    };
    signed.audit_change(&ui, Permission::Privacy, StatusCode::OK).await;
    let disposition = format!("attachment; filename=\"nudge-export-{}.json\"", file_safe(&id.to_string()));
    (
        [(header::CONTENT_TYPE, "application/json".to_string()), (header::CONTENT_DISPOSITION, disposition)],
        doc.to_string(),
    )
        .into_response()
}

/// A customer id as part of a file name: letters, digits, `-` and `.` kept, anything else `_`.
fn file_safe(id: &str) -> String {
    id.chars().map(|c| if c.is_ascii_alphanumeric() || matches!(c, '-' | '.') { c } else { '_' }).collect()
}

/// `POST /ui/customers/erase` with `id` and `confirm` (the id typed again; CSRF token; `Privacy`): the
/// erasure goes into the ingest log as `POST /api/privacy/erase` puts it there, attributed to
/// `token:<name>`, and the pipeline is woken. A confirmation that is not the id is a 400 and erases nothing.
pub async fn erase(
    State(ui): State<Arc<Ui>>,
    signed: Signed,
    form: Result<axum::Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = fields(form);
    if let Err(r) = signed.authorize_form(&ui, &form, Permission::Privacy).await {
        return r;
    }
    let id = match id_of(&signed, &form) {
        Ok(id) => id,
        Err(r) => {
            signed.audit_change(&ui, Permission::Privacy, StatusCode::BAD_REQUEST).await;
            return r;
        }
    };
    let confirmed = form.get(CONFIRM_FIELD).and_then(|c| c.trim().parse::<CustomerId>().ok());
    if confirmed.as_ref() != Some(&id) {
        signed.audit_change(&ui, Permission::Privacy, StatusCode::BAD_REQUEST).await;
        return problem(
            &signed,
            StatusCode::BAD_REQUEST,
            "Erasure not confirmed",
            format!("Nothing was erased: to erase {id}, type its id again in the confirmation field."),
        );
    }
    let app = &ui.shared;
    let store = &*app.store;
    let subject = match crate::privacy::subject_for(store, &id).await {
        Ok(s) => s,
        Err(e) => return store_failed(&signed, e),
    };
    let req = nudge_ingest::PrivacyRequest::Erase { subject, reference: None };
    let trace = match crate::privacy::submit_via_log(store, &req, &format!("token:{}", signed.name)).await {
        Ok(t) => t,
        Err(e) => return store_failed(&signed, e),
    };
    app.wake_pipeline.notify_one();
    signed.audit_change(&ui, Permission::Privacy, StatusCode::ACCEPTED).await;
    let message = format!(
        "Erasure of {id} accepted (trace {trace}): it is processed in order with the deliveries before it. \
         Follow it on this page, at /api/privacy/status?customer={id} or with \
         `nudge privacy status --customer {id}`."
    );
    signed.done(&ui, message, &format!("/ui/customers?id={}", enc(&id.to_string())))
}

/// `POST /ui/customers/email` with `email` (CSRF token; `ReadCustomerAudit`): the customer's page by id.
pub async fn by_email(
    State(ui): State<Arc<Ui>>,
    signed: Signed,
    form: Result<axum::Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    super::audit::email_lookup(&ui, &signed, form, "/ui/customers", "/ui/customers?id=").await
}

#[cfg(test)]
mod tests {
    use super::*;
    use nudge_model::TraceId;

    fn record(stage: AuditStage, minute: i64, model: &str, scores: &[(&str, f64)]) -> AuditRecord {
        let scores: Vec<serde_json::Value> =
            scores.iter().map(|(n, v)| serde_json::json!({ "name": n, "value": v })).collect();
        AuditRecord {
            trace_id: TraceId::new(),
            customer: None,
            stage,
            at: OffsetDateTime::UNIX_EPOCH + time::Duration::minutes(minute),
            detail: serde_json::json!({ "model_version": model, "scores": scores }),
        }
    }

    #[test]
    fn scores_over_time_read_newest_first_with_a_column_per_name() {
        let records = vec![
            record(AuditStage::Scored, 0, "rules-v1", &[("churn_risk", 0.5)]),
            record(AuditStage::Decided, 1, "-", &[("churn_risk", 9.0)]),
            record(AuditStage::Scored, 2, "bgnbd-2", &[("churn_risk", 0.25), ("predicted_clv", 80.0)]),
        ];
        let history = scored(&records);
        assert_eq!(history.len(), 2, "only the score records");
        let table = history_table(&history).unwrap();
        assert_eq!(table.names, ["churn_risk", "predicted_clv"]);
        assert_eq!(table.rows[0].values, ["0.2500", "80.0000"]);
        assert_eq!(table.rows[1].values, ["0.5000", "-"]);
        assert_eq!((table.rows[0].model.as_str(), table.rows[1].model.as_str()), ("bgnbd-2", "rules-v1"));
        assert!(history_table(&[]).is_none());

        let svg = history_chart(&history);
        assert!(svg.starts_with("<svg") && svg.contains("churn_risk over time"), "{svg}");
        assert!(svg.contains("predicted_clv over time") && svg.contains("model bgnbd-2"), "{svg}");
        assert!(svg.contains("minutes since 1970-01-01T00:00:00Z"), "{svg}");

        let many: Vec<AuditRecord> =
            (0..40).map(|m| record(AuditStage::Scored, m, "rules-v1", &[("churn_risk", 0.1)])).collect();
        assert_eq!(scored(&many).len(), SCORE_ROWS);
        assert_eq!(scored(&many)[0].at, many[39].at);
    }

    #[test]
    fn export_file_names_keep_only_safe_characters() {
        assert_eq!(file_safe("shopify:880012"), "shopify_880012");
        assert_eq!(file_safe("shopify:guest-ab/../\"x"), "shopify_guest-ab_..__x");
    }
}
