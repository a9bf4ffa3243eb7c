//! The overview: the store's counts, the outbox per destination, the active model versions, the
//! acknowledgement latency, and two small charts.

use super::{Page, Signed, Ui, render, store_failed, svg_response};
use crate::svg::{BarChart, Bars, PALETTE};
use askama::Template;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use nudge_store::{DestinationCounts, StoreStats};
use std::sync::Arc;

/// One active model version, as the overview lists it.
pub struct ActiveModel {
    pub kind: String,
    pub id: String,
    pub family: String,
    pub since: String,
}

#[derive(Template)]
#[template(path = "ui/overview.html")]
struct OverviewPage {
    page: Page,
    stats: StoreStats,
    active: Vec<ActiveModel>,
    /// Acknowledgements seen, p50 and p99 in milliseconds (since the start, over the kept sample).
    ack: Option<(u64, String, String)>,
    flows_version: String,
    flows: usize,
    pending_approvals: usize,
}

/// `GET /ui/`.
pub async fn page(State(ui): State<Arc<Ui>>, signed: Signed) -> Response {
    let app = &ui.shared;
    let stats = match app.store.stats().await {
        Ok(s) => s,
        Err(e) => return store_failed(&signed, e),
    };
    let versions = match app.store.model_versions().await {
        Ok(v) => v,
        Err(e) => return store_failed(&signed, e),
    };
    let active = versions
        .iter()
        .filter(|v| v.active)
        .map(|v| ActiveModel {
            kind: v.kind().to_string(),
            id: v.id.clone(),
            family: v.family.clone(),
            since: super::fmt_ms(v.created_at_ms),
        })
        .collect();
    let filter = nudge_store::ApprovalFilter {
        flow: None,
        status: Some(nudge_store::ApprovalStatus::Pending),
        limit: 10_000,
    };
    let pending_approvals = match app.store.list_approvals(filter).await {
        Ok(items) => items.len(),
        Err(e) => return store_failed(&signed, e),
    };
    let ack = app
        .ack_latency
        .quantiles()
        .map(|(n, p50, p99)| (n, format!("{:.1}", p50 * 1000.0), format!("{:.1}", p99 * 1000.0)));
    let flows = app.flows.current();
    let page = OverviewPage {
        page: signed.page("Overview", "overview"),
        stats,
        active,
        ack,
        flows_version: flows.version.clone(),
        flows: flows.flows.len(),
        pending_approvals,
    };
    render(StatusCode::OK, &page)
}

/// `GET /ui/charts/terminal.svg`: deliveries by terminal state.
pub async fn terminal_chart(State(ui): State<Arc<Ui>>, signed: Signed) -> Response {
    match ui.shared.store.stats().await {
        Ok(s) => svg_response(terminal_svg(&s.terminal_by_state)),
        Err(e) => store_failed(&signed, e),
    }
}

/// `GET /ui/charts/outbox.svg`: the outbox of each destination by status.
pub async fn outbox_chart(State(ui): State<Arc<Ui>>, signed: Signed) -> Response {
    match ui.shared.store.stats().await {
        Ok(s) => svg_response(outbox_svg(&s.outbox_by_destination)),
        Err(e) => store_failed(&signed, e),
    }
}

fn terminal_svg(by_state: &[(String, u64)]) -> String {
    BarChart {
        title: "Deliveries by terminal state".into(),
        x_label: "terminal state".into(),
        y_label: "deliveries".into(),
        categories: by_state.iter().map(|(s, _)| s.clone()).collect(),
        series: vec![Bars {
            name: "deliveries".into(),
            color: PALETTE[1].into(),
            values: by_state.iter().map(|(_, n)| *n as f64).collect(),
            intervals: Vec::new(),
        }],
    }
    .render()
}

fn outbox_svg(by_destination: &[DestinationCounts]) -> String {
    let series = |name: &str, color: &str, f: fn(&DestinationCounts) -> u64| Bars {
        name: name.into(),
        color: color.into(),
        values: by_destination.iter().map(|d| f(d) as f64).collect(),
        intervals: Vec::new(),
    };
    BarChart {
        title: "Outbox by destination".into(),
        x_label: "destination".into(),
        y_label: "items".into(),
        categories: by_destination.iter().map(|d| d.destination.clone()).collect(),
        series: vec![
            series("delivered", PALETTE[3], |d| d.delivered),
            series("pending", PALETTE[1], |d| d.pending),
            series("rejected", PALETTE[5], |d| d.rejected),
            series("dead", PALETTE[2], |d| d.dead),
        ],
    }
    .render()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The charts name what they count, and a destination's name is escaped in the SVG.
    #[test]
    fn charts_label_their_categories() {
        let svg = terminal_svg(&[("delivered".into(), 3), ("ignored".into(), 1)]);
        assert!(svg.starts_with("<svg") && svg.contains("delivered") && svg.contains("ignored"), "{svg}");
        let d = DestinationCounts { destination: "webhook:<crm>".into(), delivered: 2, ..Default::default() };
        let svg = outbox_svg(&[d]);
        assert!(svg.contains("webhook:&lt;crm&gt;") && !svg.contains("<crm>"), "{svg}");
    }
}
