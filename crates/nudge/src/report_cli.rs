//! `nudge report shadow|lift --flow F` and the API's `/api/reports/*`: a flow's recorded decisions (flows
//! with a baseline rule or a holdout group record them) and the orders their customers placed afterwards,
//! through the pure computations of `nudge_policy::reports`, rendered as text, JSON or HTML with an SVG plot.

use crate::svg::{BarChart, Bars, escape};
use clap::{Args, Subcommand};
use nudge_model::CustomerId;
use nudge_policy::flows::{FlowSet, Status, parse_duration_secs};
use nudge_policy::reports::{self, DecisionRow, LiftReport, Proportion, ReportWindow, ShadowReport};
use nudge_state::CustomerState;
use nudge_store::{Store, StoreError};
use serde::Serialize;
use std::collections::{BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;
use time::OffsetDateTime;

#[derive(Subcommand, Debug)]
pub enum ReportCmd {
    /// The flow against its baseline rule: the 2×2 of who each picks, with later conversion rates.
    Shadow(ReportArgs),
    /// Treated against held-out customers: conversion rates, their difference and its 95 % interval.
    Lift(ReportArgs),
    /// A flow's campaign: uplift against its holdout with intervals, revenue, segments, drivers, a summary.
    Campaign(crate::campaign_report::CampaignArgs),
    /// Two scorers (built-in scores or `[[scoring.custom]]` outputs) compared over the stored customers:
    /// agreement, and AUC / Brier on a holdout cut from each customer's history.
    Models(crate::models_compare::ModelsReportArgs),
}

#[derive(Args, Debug)]
pub struct ReportArgs {
    /// The flow (its `name`).
    #[arg(long)]
    pub flow: String,
    /// The conversion window after each customer's first decision: an order within it counts (`14d`, `48h`).
    #[arg(long, default_value = "14d")]
    pub window: String,
    /// Only decisions from this instant (`2026-11-01`, RFC 3339) or this long ago (`30d`); default: all.
    #[arg(long)]
    pub since: Option<String>,
    /// Only decisions before this instant (date or RFC 3339); outcomes are observed up to it. Default: now.
    #[arg(long)]
    pub until: Option<String>,
    /// Also count customers whose window is still open, with the orders seen so far.
    #[arg(long)]
    pub partial: bool,
    /// Print JSON instead of text.
    #[arg(long)]
    pub json: bool,
    /// Also write the report as an HTML page (with an SVG plot) to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// Which report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    Shadow,
    Lift,
}

/// A report request, as the CLI and the API take it.
#[derive(Debug, Clone, Default)]
pub struct ReportQuery {
    pub flow: String,
    pub window: Option<String>,
    pub since: Option<String>,
    pub until: Option<String>,
    pub partial: bool,
}

/// Why a report cannot be made.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A parameter is malformed (exit 2; HTTP 400).
    #[error("{0}")]
    BadInput(String),
    /// No flow of that name is configured and none was ever recorded (exit 2; HTTP 404).
    #[error("{0}")]
    UnknownFlow(String),
    /// The flow has nothing the report compares with: no baseline, no holdout (exit 2; HTTP 409).
    #[error("{0}")]
    NotMeasured(String),
    #[error("store: {0}")]
    Store(#[from] StoreError),
}

impl ReportError {
    /// A mistake in the request (bad parameter, unknown flow, a flow without what the report needs), as
    /// opposed to a failure: the CLI exits 2 for these.
    pub fn is_usage(&self) -> bool {
        !matches!(self, ReportError::Store(_))
    }
}

/// A report, tagged by kind in JSON (`"report": "lift"`).
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "report", rename_all = "snake_case")]
pub enum Report {
    Shadow(ShadowReport),
    Lift(LiftReport),
}

/// An instant given as a date (`2026-11-01`, midnight UTC), an RFC 3339 time, or a duration back from `now`
/// (`30d`).
pub fn parse_instant(key: &str, s: &str, now: OffsetDateTime) -> Result<i64, ReportError> {
    let s = s.trim();
    if let Some(secs) = parse_duration_secs(s) {
        return Ok(crate::pipeline::ts_to_ms(now) - secs * 1000);
    }
    if let Ok(t) = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339) {
        return Ok(crate::pipeline::ts_to_ms(t));
    }
    let date_format = time::macros::format_description!("[year]-[month]-[day]");
    if let Ok(d) = time::Date::parse(s, date_format) {
        return Ok(crate::pipeline::ts_to_ms(d.midnight().assume_utc()));
    }
    Err(ReportError::BadInput(format!(
        "{key}: `{s}` is neither a date (2026-11-01), an RFC 3339 time nor a duration back from now (30d)"
    )))
}

/// Reads the query's window and period.
pub(crate) fn report_window(q: &ReportQuery, now: OffsetDateTime) -> Result<ReportWindow, ReportError> {
    let window = q.window.as_deref().unwrap_or("14d").trim();
    let window_secs = parse_duration_secs(window).filter(|s| *s > 0).ok_or_else(|| {
        ReportError::BadInput(format!("window: `{window}` is not a duration such as 14d or 48h"))
    })?;
    if window_secs > 366 * 86_400 {
        return Err(ReportError::BadInput(format!("window: `{window}` is longer than a year")));
    }
    let since_ms = q.since.as_deref().map(|s| parse_instant("since", s, now)).transpose()?.unwrap_or(0);
    let until_ms = q
        .until
        .as_deref()
        .map(|s| parse_instant("until", s, now))
        .transpose()?
        .unwrap_or_else(|| crate::pipeline::ts_to_ms(now));
    if until_ms <= since_ms {
        return Err(ReportError::BadInput("since: the period is empty (since is not before until)".into()));
    }
    Ok(ReportWindow { window_ms: window_secs * 1000, since_ms, until_ms, partial: q.partial })
}

/// Makes a report from the store's recorded decisions and customer states.
pub async fn build(
    store: &dyn Store,
    flows: &FlowSet,
    kind: ReportKind,
    q: &ReportQuery,
    now: OffsetDateTime,
) -> Result<Report, ReportError> {
    build_with(store, flows, kind, q, now, None).await
}

/// [`build`], reading the customers' states through `cache` (shared by several reports of one period).
pub async fn build_with(
    store: &dyn Store,
    flows: &FlowSet,
    kind: ReportKind,
    q: &ReportQuery,
    now: OffsetDateTime,
    cache: Option<&StateCache>,
) -> Result<Report, ReportError> {
    let w = report_window(q, now)?;
    let flow = q.flow.trim();
    if flow.is_empty() {
        return Err(ReportError::BadInput("flow: a flow name is required".into()));
    }
    let recorded = decisions_of(store, flow, w.since_ms, w.until_ms, cache).await?;
    let configured = flows.get(flow);
    if configured.is_none() && recorded.is_empty() {
        let names: Vec<&str> = flows.flows.iter().map(|f| f.spec.name.as_str()).collect();
        return Err(ReportError::UnknownFlow(format!(
            "flow: no flow named `{flow}` is configured or has recorded decisions (configured: {})",
            names.join(", ")
        )));
    }
    let has_baseline = configured.is_some_and(|f| f.baseline.is_some());
    let has_holdout = configured.is_some_and(|f| f.spec.holdout_percent > 0);
    match kind {
        ReportKind::Shadow if !has_baseline && !recorded.iter().any(|d| d.baseline.is_some()) => {
            return Err(ReportError::NotMeasured(format!(
                "flow `{flow}` has no baseline rule to compare with: add `baseline = \"…\"` (a CEL condition) to it"
            )));
        }
        ReportKind::Lift if !has_holdout && !recorded.iter().any(|d| d.status == "held_out") => {
            return Err(ReportError::NotMeasured(format!(
                "flow `{flow}` has no holdout group: set `holdout_percent` above 0 to measure its lift"
            )));
        }
        _ => {}
    }
    let rows: Vec<DecisionRow> = recorded
        .iter()
        .map(|d| {
            let status = serde_json::from_value(serde_json::Value::String(d.status.clone()))
                .unwrap_or(if d.matched { Status::Live } else { Status::NotMatched });
            DecisionRow {
                customer: d.customer.clone(),
                at_ms: d.at_ms,
                status,
                matched: d.matched,
                baseline: d.baseline,
            }
        })
        .collect();
    let orders = order_times(store, rows.iter().map(|r| &r.customer), cache).await?;
    let lookup = |c: &CustomerId| orders.get(c).cloned().unwrap_or_default();
    Ok(match kind {
        ReportKind::Shadow => Report::Shadow(reports::shadow(flow, &rows, &lookup, w)),
        ReportKind::Lift => Report::Lift(reports::lift(flow, &rows, &lookup, w)),
    })
}

/// Each customer's order times (ms; cancelled orders left out), read from their stored states.
async fn order_times<'a>(
    store: &dyn Store,
    customers: impl Iterator<Item = &'a CustomerId>,
    cache: Option<&StateCache>,
) -> Result<HashMap<CustomerId, Vec<i64>>, ReportError> {
    let distinct: Vec<CustomerId> = customers.cloned().collect::<BTreeSet<_>>().into_iter().collect();
    let states = states_of(store, distinct, cache).await?;
    Ok(states
        .into_iter()
        .map(|(c, state)| {
            let times = state
                .orders
                .values()
                .filter(|o| !o.cancelled)
                .map(|o| crate::pipeline::ts_to_ms(o.created_at))
                .collect();
            (c, times)
        })
        .collect())
}

/// Customers' stored states and flows' recorded decisions read once and shared by the reports of one
/// period (a digest makes a lift and a campaign report of each flow from the same reads).
#[derive(Default)]
pub struct StateCache(
    std::sync::Mutex<HashMap<CustomerId, std::sync::Arc<CustomerState>>>,
    #[allow(clippy::type_complexity)]
    std::sync::Mutex<HashMap<(String, i64, i64), std::sync::Arc<Vec<nudge_store::FlowDecision>>>>,
);

/// A flow's recorded decisions in `since_ms..until_ms`, through `cache` when given.
pub(crate) async fn decisions_of(
    store: &dyn Store,
    flow: &str,
    since_ms: i64,
    until_ms: i64,
    cache: Option<&StateCache>,
) -> Result<std::sync::Arc<Vec<nudge_store::FlowDecision>>, ReportError> {
    let key = (flow.to_string(), since_ms, until_ms);
    if let Some(hit) = cache.and_then(|c| c.1.lock().expect("state cache lock poisoned").get(&key).cloned()) {
        return Ok(hit);
    }
    let read = std::sync::Arc::new(store.flow_decisions(flow, since_ms, until_ms).await?);
    if let Some(c) = cache {
        c.1.lock().expect("state cache lock poisoned").insert(key, read.clone());
    }
    Ok(read)
}

/// The stored states of `customers` (erased ones are absent), through `cache` when given: only the ones it
/// does not hold are read, in chunks.
pub(crate) async fn states_of(
    store: &dyn Store,
    customers: Vec<CustomerId>,
    cache: Option<&StateCache>,
) -> Result<HashMap<CustomerId, std::sync::Arc<CustomerState>>, ReportError> {
    let mut out = HashMap::with_capacity(customers.len());
    let missing: Vec<CustomerId> = match cache {
        Some(c) => {
            let held = c.0.lock().expect("state cache lock poisoned");
            customers
                .into_iter()
                .filter(|id| match held.get(id) {
                    Some(s) => {
                        out.insert(id.clone(), s.clone());
                        false
                    }
                    None => true,
                })
                .collect()
        }
        None => customers,
    };
    let mut read = Vec::with_capacity(missing.len());
    for chunk in missing.chunks(500) {
        for s in store.load_states(chunk).await? {
            let state: CustomerState = CustomerState::decode(&s.state)
                .map_err(|e| StoreError::Corrupt(format!("the stored state of {}: {e}", s.customer)))?;
            read.push((s.customer, std::sync::Arc::new(state)));
        }
    }
    if let Some(c) = cache {
        let mut held = c.0.lock().expect("state cache lock poisoned");
        for (id, s) in &read {
            held.insert(id.clone(), s.clone());
        }
    }
    out.extend(read);
    Ok(out)
}

/// Runs `nudge report …`.
pub async fn run(cfg: &crate::config::Config, cmd: ReportCmd) -> anyhow::Result<()> {
    let flows = cfg.flow_set()?;
    let store = crate::app::open_store(cfg).await?;
    let (kind, args) = match cmd {
        ReportCmd::Shadow(a) => (ReportKind::Shadow, a),
        ReportCmd::Lift(a) => (ReportKind::Lift, a),
        ReportCmd::Campaign(a) => return crate::campaign_report::run(cfg, a).await,
        ReportCmd::Models(a) => return crate::models_compare::run(cfg, a).await,
    };
    let q = ReportQuery {
        flow: args.flow.clone(),
        window: Some(args.window.clone()),
        since: args.since.clone(),
        until: args.until.clone(),
        partial: args.partial,
    };
    let report = build(&*store, &flows, kind, &q, OffsetDateTime::now_utc()).await?;
    if let Some(path) = &args.out {
        std::fs::write(path, html(&report))
            .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", path.display()))?;
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", text(&report));
        if let Some(path) = &args.out {
            println!("HTML report written to {}", path.display());
        }
    }
    Ok(())
}

fn pct(v: f64) -> String {
    if v.is_finite() { format!("{:.1} %", v * 100.0) } else { "n/a".into() }
}

fn interval(p: &Proportion) -> String {
    if p.ci_low.is_finite() { format!("{} – {}", pct(p.ci_low), pct(p.ci_high)) } else { "n/a".into() }
}

fn fmt_ms(ms: i64) -> String {
    crate::pipeline::fmt_ts(crate::pipeline::ms_to_ts(ms))
}

fn period(w: &ReportWindow) -> String {
    let since = if w.since_ms == 0 { "the first decision".to_string() } else { fmt_ms(w.since_ms) };
    format!(
        "decisions from {since} to {}, conversion window {}{}",
        fmt_ms(w.until_ms),
        if w.window_ms % 86_400_000 == 0 {
            format!("{} d", w.window_ms / 86_400_000)
        } else {
            format!("{:.0} h", w.window_ms as f64 / 3_600_000.0)
        },
        if w.partial { " (open windows counted with what is known so far)" } else { "" }
    )
}

/// The report as plain text.
pub fn text(r: &Report) -> String {
    let mut s = String::new();
    match r {
        Report::Lift(l) => {
            let _ = writeln!(s, "lift of flow {}: {}", l.flow, period(&l.window));
            let _ = writeln!(
                s,
                "{:<10} {:>10} {:>12} {:>9}  95 % interval",
                "group", "customers", "conversions", "rate"
            );
            for (name, p) in [("treated", &l.treated), ("held out", &l.held_out)] {
                let _ = writeln!(
                    s,
                    "{name:<10} {:>10} {:>12} {:>9}  {}",
                    p.customers,
                    p.conversions,
                    pct(p.rate),
                    interval(p)
                );
            }
            match l.difference_ci {
                Some((lo, hi)) => {
                    let _ = writeln!(
                        s,
                        "difference {:+.1} pp (95 % CI {:+.1} to {:+.1} pp, Newcombe){}",
                        l.difference * 100.0,
                        lo * 100.0,
                        hi * 100.0,
                        l.relative_lift
                            .map(|r| format!("; relative lift {:+.0} %", r * 100.0))
                            .unwrap_or_default()
                    );
                }
                None => s.push_str("difference n/a\n"),
            }
            let statuses: Vec<String> = l.treated_by_status.iter().map(|(k, v)| format!("{k} {v}")).collect();
            if !statuses.is_empty() {
                let _ = writeln!(s, "treated customers' first decisions: {}", statuses.join(", "));
            }
            if l.pending_window > 0 {
                let _ = writeln!(
                    s,
                    "{} customer(s) left out: their window is still open (--partial counts them)",
                    l.pending_window
                );
            }
            let _ = writeln!(s, "{}", l.verdict);
        }
        Report::Shadow(sh) => {
            let _ = writeln!(s, "shadow report of flow {}: {}", sh.flow, period(&sh.window));
            let _ = writeln!(
                s,
                "{:<5} {:<5} {:>10} {:>12} {:>9}  95 % interval",
                "flow", "rule", "customers", "conversions", "rate"
            );
            for c in &sh.cells {
                let yn = |b: bool| if b { "yes" } else { "no" };
                let p = &c.outcome;
                let _ = writeln!(
                    s,
                    "{:<5} {:<5} {:>10} {:>12} {:>9}  {}",
                    yn(c.ai),
                    yn(c.rule),
                    p.customers,
                    p.conversions,
                    pct(p.rate),
                    interval(p)
                );
            }
            let _ = writeln!(
                s,
                "flow picks: {} customers, {} converted; rule picks: {} customers, {} converted",
                sh.ai_selected.customers,
                pct(sh.ai_selected.rate),
                sh.rule_selected.customers,
                pct(sh.rule_selected.rate)
            );
            if sh.pending_window > 0 {
                let _ = writeln!(
                    s,
                    "{} customer(s) left out: their window is still open (--partial counts them)",
                    sh.pending_window
                );
            }
            let _ = writeln!(s, "{}", sh.verdict);
        }
    }
    s
}

/// Conversion rates as bars, with each rate's 95 % interval as a whisker.
fn chart(title: &str, categories: Vec<String>, rates: &[&Proportion]) -> String {
    let value = |p: &Proportion| if p.rate.is_finite() { p.rate * 100.0 } else { f64::NAN };
    BarChart {
        title: title.into(),
        x_label: String::new(),
        y_label: "conversion within the window (%)".into(),
        categories,
        series: vec![Bars {
            name: "conversion rate (95 % interval)".into(),
            color: "#1f77b4".into(),
            values: rates.iter().map(|p| value(p)).collect(),
            intervals: rates
                .iter()
                .map(|p| p.ci_low.is_finite().then_some((p.ci_low * 100.0, p.ci_high * 100.0)))
                .collect(),
        }],
    }
    .render()
}

/// The SVG plot of a report.
pub fn plot(r: &Report) -> String {
    match r {
        Report::Lift(l) => chart(
            &format!("Lift of {}", l.flow),
            vec![
                format!("treated (n={})", l.treated.customers),
                format!("held out (n={})", l.held_out.customers),
            ],
            &[&l.treated, &l.held_out],
        ),
        Report::Shadow(sh) => {
            let yn = |b: bool| if b { "yes" } else { "no" };
            let names = sh
                .cells
                .iter()
                .map(|c| format!("flow {} · rule {} (n={})", yn(c.ai), yn(c.rule), c.outcome.customers))
                .collect();
            let rates: Vec<&Proportion> = sh.cells.iter().map(|c| &c.outcome).collect();
            chart(&format!("{} against its baseline", sh.flow), names, &rates)
        }
    }
}

/// The report as a standalone HTML page: the table, the verdict and the plot.
pub fn html(r: &Report) -> String {
    let (title, w, verdict) = match r {
        Report::Lift(l) => (format!("Lift of flow {}", l.flow), &l.window, &l.verdict),
        Report::Shadow(sh) => (format!("Shadow report of flow {}", sh.flow), &sh.window, &sh.verdict),
    };
    let mut s = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{t}</title>\n<style>\
         body{{font-family:sans-serif;margin:2em;max-width:1000px}}table{{border-collapse:collapse}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{background:#f4f4f4}}\
         </style>\n</head>\n<body>\n<h1>{t}</h1>\n<p>{p}</p>\n",
        t = escape(&title),
        p = escape(&period(w))
    );
    let row = |s: &mut String, label: &str, p: &Proportion| {
        let _ = writeln!(
            s,
            "<tr><td style=\"text-align:left\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(label),
            p.customers,
            p.conversions,
            pct(p.rate),
            escape(&interval(p))
        );
    };
    s.push_str("<table>\n<tr><th>group</th><th>customers</th><th>conversions</th><th>rate</th><th>95 % interval</th></tr>\n");
    match r {
        Report::Lift(l) => {
            row(&mut s, "treated", &l.treated);
            row(&mut s, "held out", &l.held_out);
        }
        Report::Shadow(sh) => {
            let yn = |b: bool| if b { "yes" } else { "no" };
            for c in &sh.cells {
                row(&mut s, &format!("flow {} · rule {}", yn(c.ai), yn(c.rule)), &c.outcome);
            }
            row(&mut s, "all the flow picks", &sh.ai_selected);
            row(&mut s, "all the rule picks", &sh.rule_selected);
        }
    }
    s.push_str("</table>\n");
    let _ = writeln!(s, "<p><strong>{}</strong></p>", escape(verdict));
    s.push_str(&plot(r));
    s.push_str("</body>\n</html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_800_000_000).unwrap()
    }

    #[test]
    fn bad_parameters_are_named() {
        let q = |window: &str, since: Option<&str>| ReportQuery {
            flow: "f".into(),
            window: Some(window.into()),
            since: since.map(str::to_string),
            ..Default::default()
        };
        let err = report_window(&q("soon", None), now()).unwrap_err().to_string();
        assert!(err.starts_with("window:"), "{err}");
        let err = report_window(&q("400d", None), now()).unwrap_err().to_string();
        assert!(err.contains("longer than a year"), "{err}");
        let err = report_window(&q("14d", Some("yesterday")), now()).unwrap_err().to_string();
        assert!(err.starts_with("since:"), "{err}");
        let w = report_window(&q("14d", Some("30d")), now()).unwrap();
        assert_eq!(w.until_ms - w.since_ms, 30 * 86_400_000);
        let w = report_window(&q("48h", Some("2026-11-01")), now()).unwrap();
        assert_eq!(w.window_ms, 48 * 3_600_000);
        assert_eq!(w.since_ms, 1_793_491_200_000);
        let err = report_window(&q("14d", Some("2030-01-01")), now()).unwrap_err().to_string();
        assert!(err.contains("period is empty"), "{err}");
    }
}
