//! Dead letters and quarantine: how many there are, per destination with the last error; each dead letter
//! and quarantined delivery, newest first a page at a time ([`nudge_store::Store::dead_letters`],
//! [`nudge_store::Store::quarantined`]); and replay (`Replay`), of all, one destination's, or one item's,
//! through [`nudge_store::Store::requeue_dead_letters`] and [`nudge_store::Store::requeue_quarantined`], as
//! `nudge replay` does. A dead letter's stored action carries the customer's details: only roles that may
//! read every customer's audit trail (`ReadCustomerAudit`) see it.

use super::{Page, Signed, Ui, enc, fields, fmt_ms, problem, render, store_failed};
use crate::access::Permission;
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use nudge_model::TraceId;
use nudge_store::{DeadLetterFilter, DeadLetterItem, QuarantinedItem, StoreStats};
use std::collections::HashMap;
use std::sync::Arc;

/// Rows per page of either list.
const PAGE_SIZE: usize = 50;

/// One dead letter as the page lists it.
pub struct DeadRow {
    pub id: i64,
    pub trace: String,
    pub customer: String,
    pub destination: String,
    pub created: String,
    pub attempts: u32,
    pub last_error: Option<String>,
    /// The stored action, pretty-printed; `None` for roles that may not see customer details.
    pub action: Option<String>,
    /// Whether its destination is configured (replay sends only to a configured one).
    pub replayable: bool,
}

impl DeadRow {
    fn of(d: DeadLetterItem, personal: bool, configured: &[String]) -> DeadRow {
        let action = personal.then(|| match serde_json::from_str::<serde_json::Value>(&d.action_json) {
            Ok(v) => serde_json::to_string_pretty(&v).unwrap_or(d.action_json.clone()),
            Err(_) => d.action_json.clone(),
        });
        DeadRow {
            id: d.id,
            trace: d.trace_id.to_string(),
            customer: d.customer_id,
            replayable: configured.contains(&d.destination),
            destination: d.destination,
            created: fmt_ms(d.created_at_ms),
            attempts: d.attempts,
            last_error: d.last_error,
            action,
        }
    }
}

/// One quarantined delivery as the page lists it.
pub struct QuarantinedRow {
    pub seq: i64,
    pub trace: String,
    pub source: String,
    pub topic: String,
    pub received: String,
    pub reason: Option<String>,
}

impl QuarantinedRow {
    fn of(q: QuarantinedItem) -> QuarantinedRow {
        QuarantinedRow {
            seq: q.seq,
            trace: q.trace_id.to_string(),
            source: q.source,
            topic: q.topic,
            received: fmt_ms(q.received_at_ms),
            reason: q.reason,
        }
    }
}

#[derive(Template)]
#[template(path = "ui/dead_letters.html")]
struct DeadLettersPage {
    page: Page,
    stats: StoreStats,
    /// The configured destinations (what replay may send to).
    destinations: Vec<String>,
    /// What the list may be filtered by: the configured destinations and any other the outbox holds.
    known: Vec<String>,
    /// The destination filter; empty for all.
    destination: String,
    dead: Vec<DeadRow>,
    /// The next page of dead letters, when there is one.
    dead_older: Option<String>,
    /// Whether this is a later page of dead letters.
    dead_paged: bool,
    quarantined: Vec<QuarantinedRow>,
    quarantined_older: Option<String>,
    quarantined_paged: bool,
    may_replay: bool,
    may_customers: bool,
}

/// A page position from the query string: absent or empty is the first page; anything but a number is
/// refused.
fn position(q: &HashMap<String, String>, key: &str) -> Result<Option<i64>, String> {
    match q.get(key).map(|v| v.trim()).filter(|v| !v.is_empty()) {
        None => Ok(None),
        Some(v) => {
            v.parse::<i64>().map(Some).map_err(|_| format!("`{key}={v}`: give a number (an item's id)."))
        }
    }
}

/// `GET /ui/dead-letters`, with optional `destination`, `before` (the dead letters' page: those with a
/// lower id) and `qbefore` (the quarantined deliveries' page: those with a lower seq).
pub async fn page(
    State(ui): State<Arc<Ui>>,
    signed: Signed,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = signed.require(&ui, Permission::ReadAudit).await {
        return r;
    }
    let bad = |msg: String| problem(&signed, StatusCode::BAD_REQUEST, "Bad request", msg);
    let (before, qbefore) = match (position(&q, "before"), position(&q, "qbefore")) {
        (Ok(b), Ok(qb)) => (b, qb),
        (Err(e), _) | (_, Err(e)) => return bad(e),
    };
    let store = &ui.shared.store;
    // The counts as the overview has them (a snapshot in a large store), never a second count per page.
    let stats = match super::pulse::Pulse::current(&ui).await {
        Ok(s) => s.stats.clone(),
        Err(e) => return store_failed(&signed, e),
    };
    let configured = ui.shared.destinations.clone();
    let mut known = configured.clone();
    for d in &stats.outbox_by_destination {
        if !known.contains(&d.destination) {
            known.push(d.destination.clone());
        }
    }
    let destination = q.get("destination").map(|d| d.trim().to_string()).unwrap_or_default();
    if !destination.is_empty() && !known.contains(&destination) {
        return bad(format!("`{destination}` is not a destination (known: {}).", known.join(", ")));
    }
    let filter = DeadLetterFilter {
        destination: Some(destination.clone()).filter(|d| !d.is_empty()),
        ..Default::default()
    };
    let (mut dead, mut quarantined) = match (
        store.dead_letters(filter, before, PAGE_SIZE + 1).await,
        store.quarantined(qbefore, PAGE_SIZE + 1).await,
    ) {
        (Ok(d), Ok(q)) => (d, q),
        (Err(e), _) | (_, Err(e)) => return store_failed(&signed, e),
    };
    let filtered =
        if destination.is_empty() { String::new() } else { format!("destination={}&", enc(&destination)) };
    let dead_older = (dead.len() > PAGE_SIZE).then(|| {
        dead.truncate(PAGE_SIZE);
        format!("/ui/dead-letters?{filtered}before={}", dead[PAGE_SIZE - 1].id)
    });
    let quarantined_older = (quarantined.len() > PAGE_SIZE).then(|| {
        quarantined.truncate(PAGE_SIZE);
        let at = before.map(|b| format!("before={b}&")).unwrap_or_default();
        format!("/ui/dead-letters?{filtered}{at}qbefore={}", quarantined[PAGE_SIZE - 1].seq)
    });
    let personal = signed.may(Permission::ReadCustomerAudit);
    let page = DeadLettersPage {
        page: signed.page("Dead letters and quarantine", "dead_letters"),
        stats,
        known,
        destination,
        dead: dead.into_iter().map(|d| DeadRow::of(d, personal, &configured)).collect(),
        dead_older,
        dead_paged: before.is_some(),
        quarantined: quarantined.into_iter().map(QuarantinedRow::of).collect(),
        quarantined_older,
        quarantined_paged: qbefore.is_some(),
        destinations: configured,
        may_replay: signed.may(Permission::Replay),
        may_customers: personal,
    };
    render(StatusCode::OK, &page)
}

/// `POST /ui/dead-letters/replay` with `what` (`dead_letters` or `quarantined`), and optionally `trace`
/// and (dead letters) `destination` (CSRF token; `Replay`).
pub async fn replay(
    State(ui): State<Arc<Ui>>,
    signed: Signed,
    form: Result<axum::Form<HashMap<String, String>>, axum::extract::rejection::FormRejection>,
) -> Response {
    let form = fields(form);
    if let Err(r) = signed.authorize_form(&ui, &form, Permission::Replay).await {
        return r;
    }
    let given = |k: &str| form.get(k).map(|v| v.trim()).filter(|v| !v.is_empty());
    let trace = match given("trace").map(str::parse::<TraceId>).transpose() {
        Ok(t) => t,
        Err(_) => {
            return problem(
                &signed,
                StatusCode::BAD_REQUEST,
                "Bad request",
                "That is not a trace id.".into(),
            );
        }
    };
    let store = &ui.shared.store;
    let message = match given("what") {
        Some("dead_letters") => {
            let destination = given("destination").map(str::to_string);
            if let Some(d) = &destination
                && !ui.shared.destinations.contains(d)
            {
                let msg = format!("Destination {d} is not configured.");
                return problem(&signed, StatusCode::BAD_REQUEST, "Bad request", msg);
            }
            let filter = DeadLetterFilter { trace, destination: destination.clone(), since_ms: None };
            match store.requeue_dead_letters(filter).await {
                Ok(n) => match destination {
                    Some(d) => format!("{n} dead-lettered pushes to {d} queued for delivery."),
                    None => format!("{n} dead-lettered pushes queued for delivery."),
                },
                Err(e) => return store_failed(&signed, e),
            }
        }
        Some("quarantined") => match store.requeue_quarantined(trace).await {
            Ok(n) => {
                ui.shared.wake_pipeline.notify_one();
                format!("{n} quarantined deliveries queued for processing.")
            }
            Err(e) => return store_failed(&signed, e),
        },
        _ => {
            let msg = "Choose dead letters or quarantined deliveries.".to_string();
            return problem(&signed, StatusCode::BAD_REQUEST, "Bad request", msg);
        }
    };
    signed.audit_change(&ui, Permission::Replay, StatusCode::OK).await;
    signed.done(&ui, message, "/ui/dead-letters")
}
