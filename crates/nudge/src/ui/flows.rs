//! The running flows: each one's configuration, version and mode, and its shadow and lift reports (the
//! same [`crate::report_cli::build`] as `GET /api/reports/*`), with their plots.

use super::{Page, Signed, Ui, problem, render, svg_response};
use crate::access::Permission;
use crate::report_cli::{self, ReportError, ReportKind, ReportQuery};
use askama::Template;
use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// One flow as the list shows it.
pub struct FlowRow {
    pub name: String,
    pub trigger: String,
    pub mode: String,
    pub holdout: String,
    pub baseline: bool,
    pub actions: Vec<String>,
    pub counts: FlowCounts,
}

/// One flow's decisions since the server started, grouped as the list shows them.
#[derive(Default)]
pub struct FlowCounts {
    /// Every evaluation whose condition held (all but `not_matched`).
    pub decided: u64,
    /// Live: actions sent to the destinations.
    pub sent: u64,
    pub shadow: u64,
    /// Waiting for a person (`awaiting_approval`).
    pub held: u64,
    /// Not sent for the customer's sake or the experiment's: held out, no consent, capped, suppressed.
    pub suppressed: u64,
    pub errors: u64,
}

impl FlowCounts {
    fn of(by_status: Option<&BTreeMap<&'static str, u64>>) -> Self {
        let mut c = FlowCounts::default();
        for (status, n) in by_status.into_iter().flatten() {
            let n = *n;
            match *status {
                "not_matched" => continue,
                "live" => c.sent += n,
                "shadow" => c.shadow += n,
                "awaiting_approval" => c.held += n,
                "held_out" | "no_consent" | "capped" | "suppressed" => c.suppressed += n,
                _ => c.errors += n,
            }
            c.decided += n;
        }
        c
    }
}

#[derive(Template)]
#[template(path = "ui/flows.html")]
struct FlowsPage {
    page: Page,
    version: String,
    flows: Vec<FlowRow>,
}

/// A JSON value as short text: strings bare, anything else as JSON; `-` for nothing.
fn text(v: Option<&serde_json::Value>) -> String {
    match v {
        None | Some(serde_json::Value::Null) => "-".into(),
        Some(serde_json::Value::String(s)) => s.clone(),
        Some(other) => other.to_string(),
    }
}

/// `GET /ui/flows`.
pub async fn list(State(ui): State<Arc<Ui>>, signed: Signed) -> Response {
    if let Err(r) = signed.require(&ui, Permission::ReadFlows).await {
        return r;
    }
    let set = ui.shared.flows.current();
    let counts = ui.shared.flows.counts();
    let flows = set
        .flows
        .iter()
        .map(|f| {
            let v = serde_json::to_value(&f.spec).unwrap_or_default();
            FlowRow {
                name: f.spec.name.clone(),
                trigger: text(v.get("trigger")),
                mode: text(v.get("mode")),
                holdout: text(v.get("holdout_percent")),
                baseline: v.get("baseline").is_some_and(|b| !b.is_null()),
                actions: v
                    .get("actions")
                    .and_then(|a| a.as_array())
                    .map(|a| {
                        a.iter()
                            .map(|x| format!("{}: {}", text(x.get("destination")), text(x.get("type"))))
                            .collect()
                    })
                    .unwrap_or_default(),
                counts: FlowCounts::of(counts.get(&f.spec.name)),
            }
        })
        .collect();
    let page = FlowsPage { page: signed.page("Flows", "flows"), version: set.version.clone(), flows };
    render(StatusCode::OK, &page)
}

/// One report as the flow's page shows it: its text, or why there is none.
pub struct ReportView {
    pub kind: &'static str,
    pub text: Option<String>,
    pub unavailable: Option<String>,
}

#[derive(Template)]
#[template(path = "ui/flow.html")]
struct FlowPage {
    page: Page,
    name: String,
    version: String,
    config: String,
    window: String,
    since: String,
    may_reports: bool,
    reports: Vec<ReportView>,
    /// The query string the plots are drawn with (`window=…&since=…`), already encoded.
    plot_query: String,
}

fn query_of(q: &HashMap<String, String>, flow: &str) -> ReportQuery {
    let given = |k: &str| q.get(k).map(|s| s.trim().to_string()).filter(|s| !s.is_empty());
    ReportQuery {
        flow: flow.to_string(),
        window: given("window"),
        since: given("since"),
        until: given("until"),
        partial: q.get("partial").is_some_and(|p| p == "true" || p == "on"),
    }
}

async fn build(ui: &Ui, kind: ReportKind, q: &ReportQuery) -> Result<report_cli::Report, ReportError> {
    let flows = ui.shared.flows.current();
    report_cli::build(&*ui.shared.store, &flows, kind, q, time::OffsetDateTime::now_utc()).await
}

/// `GET /ui/flows/{name}[?window=14d&since=…&until=…&partial=true]`: the flow's configuration and its
/// reports (`ReadReports` for the reports).
pub async fn detail(
    State(ui): State<Arc<Ui>>,
    signed: Signed,
    Path(name): Path<String>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = signed.require(&ui, Permission::ReadFlows).await {
        return r;
    }
    let set = ui.shared.flows.current();
    let Some(flow) = set.flows.iter().find(|f| f.spec.name == name) else {
        return problem(
            &signed,
            StatusCode::NOT_FOUND,
            "No such flow",
            format!("No flow named {name} is running."),
        );
    };
    let rq = query_of(&q, &name);
    let may_reports = signed.may(Permission::ReadReports);
    let mut reports = Vec::new();
    if may_reports {
        for (kind, label) in [(ReportKind::Shadow, "shadow"), (ReportKind::Lift, "lift")] {
            let view = match build(&ui, kind, &rq).await {
                Ok(r) => ReportView { kind: label, text: Some(report_cli::text(&r)), unavailable: None },
                Err(e @ ReportError::Store(_)) => return super::store_failed(&signed, e),
                Err(e) => ReportView { kind: label, text: None, unavailable: Some(e.to_string()) },
            };
            reports.push(view);
        }
    }
    let mut plot_query = Vec::new();
    for k in ["window", "since", "until", "partial"] {
        if let Some(v) = q.get(k).filter(|v| !v.is_empty()) {
            plot_query.push(format!("{k}={}", super::enc(v)));
        }
    }
    let page = FlowPage {
        page: signed.page(format!("Flow {name}"), "flows"),
        name: name.clone(),
        version: set.version.clone(),
        config: serde_json::to_string_pretty(&flow.spec).unwrap_or_default(),
        window: rq.window.clone().unwrap_or_default(),
        since: rq.since.clone().unwrap_or_default(),
        may_reports,
        reports,
        plot_query: plot_query.join("&"),
    };
    render(StatusCode::OK, &page)
}

/// `GET /ui/flows/{name}/shadow.svg` and `/lift.svg`: a report's plot (`ReadReports`).
pub async fn plot(
    State(ui): State<Arc<Ui>>,
    signed: Signed,
    Path((name, plot)): Path<(String, String)>,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    if let Err(r) = signed.require(&ui, Permission::ReadReports).await {
        return r;
    }
    let kind = match plot.as_str() {
        "shadow.svg" => ReportKind::Shadow,
        "lift.svg" => ReportKind::Lift,
        _ => return problem(&signed, StatusCode::NOT_FOUND, "Not found", "No such plot.".into()),
    };
    match build(&ui, kind, &query_of(&q, &name)).await {
        Ok(r) => svg_response(report_cli::plot(&r)),
        Err(ReportError::Store(e)) => super::store_failed(&signed, e),
        Err(e) => problem(&signed, StatusCode::NOT_FOUND, "No plot", e.to_string()),
    }
}
