//! Dead letters and quarantine: how many there are, per destination with the last error, and replay
//! (`Replay`) through [`nudge_store::Store::requeue_dead_letters`] and
//! [`nudge_store::Store::requeue_quarantined`], as `nudge replay` does.

use super::{Page, Signed, Ui, fields, problem, render, store_failed};
use crate::access::Permission;
use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use nudge_model::TraceId;
use nudge_store::{DeadLetterFilter, StoreStats};
use std::collections::HashMap;
use std::sync::Arc;

#[derive(Template)]
#[template(path = "ui/dead_letters.html")]
struct DeadLettersPage {
    page: Page,
    stats: StoreStats,
    destinations: Vec<String>,
    may_replay: bool,
}

/// `GET /ui/dead-letters`.
pub async fn page(State(ui): State<Arc<Ui>>, signed: Signed) -> Response {
    if let Err(r) = signed.require(&ui, Permission::ReadAudit).await {
        return r;
    }
    let stats = match ui.shared.store.stats().await {
        Ok(s) => s,
        Err(e) => return store_failed(&signed, e),
    };
    let page = DeadLettersPage {
        page: signed.page("Dead letters and quarantine", "dead_letters"),
        stats,
        destinations: ui.shared.destinations.clone(),
        may_replay: signed.may(Permission::Replay),
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
