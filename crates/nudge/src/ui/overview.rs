//! The overview: the store's counts, deliveries per minute by source and topic (last hour and day), the
//! outbox and health of each destination (circuit, 429s, last error), the active model versions and the
//! acknowledgement latency, with small charts. The counts and series come from [`Pulse`].

use super::pulse::{self, Pulse};
use super::{Page, Signed, Ui, problem, render, store_failed, svg_response};
use crate::outbox::DestinationHealth;
use crate::svg::{BarChart, Bars, LineChart, PALETTE, Series};
use askama::Template;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use nudge_store::{DestinationCounts, StoreStats};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

/// One active model version, as the overview lists it.
pub struct ActiveModel {
    pub kind: String,
    pub id: String,
    pub family: String,
    pub since: String,
}

/// One destination's outbox and health, as one row of the overview.
pub struct DestinationRow {
    pub counts: DestinationCounts,
    /// `closed`, `open (rests 20 s more)`, `half open`; `-` for a destination no worker runs.
    pub circuit: String,
    pub circuit_ok: bool,
    pub in_flight: u64,
    pub throttled: u64,
    pub last_throttled: Option<String>,
}

/// One `source topic` of the per-minute series: deliveries in the last hour and day, and the rate now.
pub struct TrafficRow {
    pub key: String,
    pub last_5_min: u64,
    pub last_hour: u64,
    pub last_day: u64,
}

#[derive(Template)]
#[template(path = "ui/overview.html")]
struct OverviewPage {
    page: Page,
    stats: StoreStats,
    /// When the counts were taken, when they are a snapshot (the store is too large to count per page).
    snapshot_at: Option<String>,
    destinations: Vec<DestinationRow>,
    traffic: Vec<TrafficRow>,
    active: Vec<ActiveModel>,
    /// Acknowledgements seen, p50 and p99 in milliseconds (since the start, over the kept sample).
    ack: Option<(u64, String, String)>,
    flows_version: String,
    flows: usize,
    pending_approvals: usize,
    /// With the RabbitMQ bus: messages acknowledged and not yet drained into the log (or why it is unknown).
    bus_pending: Option<String>,
}

/// `GET /ui/`.
pub async fn page(State(ui): State<Arc<Ui>>, signed: Signed) -> Response {
    let snapshot = match Pulse::current(&ui).await {
        Ok(s) => s,
        Err(e) => return store_failed(&signed, e),
    };
    let app = &ui.shared;
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
    let ack = app
        .ack_latency
        .quantiles()
        .map(|(n, p50, p99)| (n, format!("{:.1}", p50 * 1000.0), format!("{:.1}", p99 * 1000.0)));
    let flows = app.flows.current();
    let bus_pending = match &app.bus {
        None => None,
        Some(bus) => Some(match bus.depth().await {
            Ok(d) if d.consumers == 0 => format!("{} (no node drains the queue now)", d.ready),
            Ok(d) => d.ready.to_string(),
            Err(e) => format!("unknown: {e}"),
        }),
    };
    let page = OverviewPage {
        page: signed.page("Overview", "overview"),
        stats: snapshot.stats.clone(),
        snapshot_at: (snapshot.took >= pulse::QUICK).then(|| super::fmt_ms(snapshot.taken_ms)),
        destinations: destination_rows(&snapshot.stats.outbox_by_destination, app.outbox.health()),
        traffic: traffic_rows(&ui.pulse),
        active,
        ack,
        flows_version: flows.version.clone(),
        flows: flows.flows.len(),
        pending_approvals: snapshot.pending_approvals,
        bus_pending,
    };
    render(StatusCode::OK, &page)
}

/// The outbox counts joined with the workers' health, every destination once (configured or with items).
fn destination_rows(counts: &[DestinationCounts], health: Vec<DestinationHealth>) -> Vec<DestinationRow> {
    let mut by_name: BTreeMap<String, (Option<DestinationCounts>, Option<DestinationHealth>)> =
        BTreeMap::new();
    for c in counts {
        by_name.entry(c.destination.clone()).or_default().0 = Some(c.clone());
    }
    for h in health {
        let name = h.name.clone();
        by_name.entry(name).or_default().1 = Some(h);
    }
    by_name
        .into_iter()
        .map(|(name, (c, h))| {
            let counts = c.unwrap_or(DestinationCounts { destination: name, ..Default::default() });
            match h {
                Some(h) => DestinationRow {
                    counts,
                    circuit: match (h.circuit, h.resting_for_s) {
                        ("open", Some(s)) => format!("open (rests {s} s more)"),
                        (c, _) => c.replace('_', " "),
                    },
                    circuit_ok: h.circuit == "closed",
                    in_flight: h.in_flight,
                    throttled: h.throttled,
                    last_throttled: h.last_throttled_ms.map(super::fmt_ms),
                },
                None => DestinationRow {
                    counts,
                    circuit: "not configured".into(),
                    circuit_ok: false,
                    in_flight: 0,
                    throttled: 0,
                    last_throttled: None,
                },
            }
        })
        .collect()
}

fn traffic_rows(pulse: &Pulse) -> Vec<TrafficRow> {
    let day = pulse.series(pulse::MINUTES_KEPT as usize);
    let n = day.minutes;
    day.lines
        .into_iter()
        .map(|(key, v)| TrafficRow {
            key,
            last_5_min: v[n - 5..].iter().sum(),
            last_hour: v[n - 60..].iter().sum(),
            last_day: v.iter().sum(),
        })
        .collect()
}

/// `GET /ui/charts/terminal.svg`: deliveries by terminal state.
pub async fn terminal_chart(State(ui): State<Arc<Ui>>, signed: Signed) -> Response {
    match Pulse::current(&ui).await {
        Ok(s) => svg_response(terminal_svg(&s.stats.terminal_by_state)),
        Err(e) => store_failed(&signed, e),
    }
}

/// `GET /ui/charts/outbox.svg`: the outbox of each destination by status.
pub async fn outbox_chart(State(ui): State<Arc<Ui>>, signed: Signed) -> Response {
    match Pulse::current(&ui).await {
        Ok(s) => svg_response(outbox_svg(&s.stats.outbox_by_destination)),
        Err(e) => store_failed(&signed, e),
    }
}

/// `GET /ui/charts/deliveries.svg?window=hour|day`: deliveries per minute by source and topic.
pub async fn deliveries_chart(
    State(ui): State<Arc<Ui>>,
    signed: Signed,
    Query(q): Query<HashMap<String, String>>,
) -> Response {
    let day = match q.get("window").map(String::as_str) {
        None | Some("hour") => false,
        Some("day") => true,
        Some(other) => {
            let msg = format!("The window is `hour` or `day`, not `{other}`.");
            return problem(&signed, StatusCode::BAD_REQUEST, "Bad request", msg);
        }
    };
    if let Err(e) = Pulse::current(&ui).await {
        return store_failed(&signed, e);
    }
    let series = ui.pulse.series(if day { pulse::MINUTES_KEPT as usize } else { 60 });
    svg_response(deliveries_svg(&series, day))
}

/// The busiest lines stay apart; the rest are summed as `other`.
const LINES_DRAWN: usize = 5;

fn deliveries_svg(series: &pulse::Series, day: bool) -> String {
    // The day in 15-minute steps (the mean per minute of each), the hour minute by minute; x in hours or
    // minutes before now.
    let step = if day { 15 } else { 1 };
    let mut lines: Vec<(String, Vec<u64>)> = series.lines.iter().take(LINES_DRAWN).cloned().collect();
    if series.lines.len() > LINES_DRAWN {
        let mut other = vec![0; series.minutes];
        for (_, v) in &series.lines[LINES_DRAWN..] {
            for (o, n) in other.iter_mut().zip(v) {
                *o += n;
            }
        }
        lines.push(("other".into(), other));
    }
    let n = series.minutes;
    let drawn = lines
        .into_iter()
        .enumerate()
        .map(|(i, (name, v))| Series {
            name,
            color: PALETTE[(i + 1) % PALETTE.len()].into(),
            dashed: i >= PALETTE.len() - 1,
            points: v
                .chunks(step)
                .enumerate()
                .map(|(j, c)| {
                    let minutes_ago = (n - j * step - c.len()) as f64;
                    let x = if day { -minutes_ago / 60.0 } else { -minutes_ago };
                    (x, c.iter().sum::<u64>() as f64 / c.len() as f64)
                })
                .collect(),
        })
        .collect();
    LineChart {
        title: if day {
            "Deliveries per minute, last day".into()
        } else {
            "Deliveries per minute, last hour".into()
        },
        x_label: if day { "hours before now".into() } else { "minutes before now".into() },
        y_label: "deliveries per minute".into(),
        series: drawn,
        markers: Vec::new(),
    }
    .render()
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
