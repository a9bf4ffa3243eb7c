//! `nudge report campaign --flow F [--arm A] --window 14d`: did a flow's campaign work, for whom, and what
//! set its responders apart. The flow's recorded decisions and its customers' stored states are reduced
//! to one [`Unit`] per customer, and the numbers come from the pure [`nudge_decide::uplift`].
//!
//! Who counts, as in `report lift` (intention to treat, the customer as the unit): a customer's *anchor* is
//! their first decision in the period whose condition held; held out there → control, any other status
//! (live, awaiting approval, no consent, capped, suppressed) → treated, since the held-out customers were set
//! aside before those checks and would have been filtered the same way. One difference: decisions of a flow
//! version that ran in shadow mode (any `shadow` decision recorded under it) are left out, held-out ones
//! included: nothing was sent under that version, so its customers compare nothing with nothing.
//!
//! Outcome: an order (not cancelled) in `(anchor, anchor + window]`, and the revenue of those orders.
//! Features for the drivers are what was known at the anchor: order history before it (from the stored
//! orders' times), email engagement over the 90 days before the decision day, and the scores recorded in
//! the decision's audit trail (its `scored` record). The segment is the one recorded there; when that record
//! is gone, the customer's latest recorded segment, which may already reflect the campaign's outcome: the
//! output says how many customers each source gave.

use crate::report_cli::{ReportError, ReportQuery, report_window};
use crate::svg::{BarChart, Bars, escape};
use clap::Args;
use nudge_decide::uplift::{self, Analysis, Group, Options, RateIntervals, SummaryContext, Unit};
use nudge_model::{AuditStage, CustomerId, TraceId};
use nudge_policy::flows::FlowSet;
use nudge_policy::reports::{Z95, newcombe, wilson};
use nudge_state::CustomerState;
use nudge_store::{FlowDecision, Store};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;
use time::OffsetDateTime;

const DAY_MS: i64 = 86_400_000;

#[derive(Args, Debug)]
pub struct CampaignArgs {
    /// The flow (its `name`).
    #[arg(long)]
    pub flow: String,
    /// Only customers whose decision chose this offer arm, against the holdout.
    #[arg(long)]
    pub arm: Option<String>,
    /// The outcome window after each customer's first decision (`14d`, `48h`).
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
    /// Also write the report as a self-contained HTML page with plots to this file.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

/// A campaign report request.
#[derive(Debug, Clone, Default)]
pub struct CampaignQuery {
    pub report: ReportQuery,
    pub arm: Option<String>,
}

/// The Wilson and Newcombe intervals of the lift report (the hypotheses use them too).
pub(crate) struct LiftIntervals;

impl RateIntervals for LiftIntervals {
    fn rate(&self, k: u64, n: u64) -> Option<(f64, f64)> {
        wilson(k, n, Z95)
    }
    fn difference(&self, k1: u64, n1: u64, k2: u64, n2: u64) -> Option<(f64, f64)> {
        newcombe(k1, n1, k2, n2, Z95)
    }
    fn method(&self) -> &'static str {
        "Newcombe hybrid score (Wilson intervals combined)"
    }
}

/// The campaign report.
#[derive(Debug, Clone, Serialize)]
pub struct CampaignReport {
    pub flow: String,
    pub window_days: f64,
    pub arm: Option<String>,
    /// The period of decisions (ms since the epoch; `since_ms` 0 = from the first).
    pub since_ms: i64,
    pub until_ms: i64,
    pub partial: bool,
    #[serde(flatten)]
    pub analysis: Analysis,
    /// Where each customer's segment came from: `at_decision`, `latest_recorded`, `unknown`.
    pub segment_source: BTreeMap<String, u64>,
    /// How the treated customers' first decisions ended (live, no_consent, …).
    pub treated_by_status: BTreeMap<String, u64>,
    /// The currency of the revenue figures; null when orders came in several.
    pub currency: Option<String>,
    /// Customers left out because their window had not closed by `until`.
    pub pending_window: u64,
    /// Decisions left out because their flow version ran in shadow mode.
    pub excluded_shadow_decisions: u64,
    /// With `--arm`: treated customers left out because their decision chose another arm.
    pub other_arms: u64,
    pub summary: String,
    /// Caveats on the data behind the numbers.
    pub notes: Vec<String>,
}

/// The offer arm a decision chose: the one place `--arm` reads it.
fn arm_of(d: &FlowDecision) -> Option<&str> {
    d.arm.as_deref()
}

/// What a customer's anchor decision recorded in its audit trail.
#[derive(Debug, Default)]
struct AtDecision {
    segment: Option<String>,
    scores: BTreeMap<String, f64>,
}

fn scored_detail(detail: &serde_json::Value) -> AtDecision {
    let segment = detail.get("segment").and_then(|s| s.as_str()).map(str::to_string);
    let scores = detail
        .get("scores")
        .and_then(|s| s.as_array())
        .map(|a| {
            a.iter()
                .filter_map(|s| Some((s.get("name")?.as_str()?.to_string(), s.get("value")?.as_f64()?)))
                .filter(|(_, v)| v.is_finite())
                .collect()
        })
        .unwrap_or_default();
    AtDecision { segment, scores }
}

/// The customer's latest recorded segment.
async fn latest_segment(store: &dyn Store, customer: &CustomerId) -> Result<Option<String>, ReportError> {
    let records = store.customer_audit(customer, 200).await?;
    Ok(records
        .iter()
        .rev()
        .find(|r| r.stage == AuditStage::Scored)
        .and_then(|r| scored_detail(&r.detail).segment))
}

/// The features known at decision time, in this order, then the recorded scores as `score.<name>`.
const STATE_FEATURES: [&str; 6] = [
    "orders_before",
    "days_since_last_order",
    "spend_before",
    "average_order_value_before",
    "email_open_rate_90d",
    "email_click_rate_90d",
];

fn state_features(state: &CustomerState, anchor_ms: i64) -> [Option<f64>; 6] {
    let before: Vec<(i64, f64)> = state
        .orders
        .values()
        .filter(|o| !o.cancelled)
        .map(|o| (crate::pipeline::ts_to_ms(o.created_at), o.total.to_f64()))
        .filter(|(t, _)| *t < anchor_ms)
        .collect();
    let n = before.len() as f64;
    let spend: f64 = before.iter().map(|o| o.1).sum();
    let last = before.iter().map(|o| o.0).max();
    // Engagement over the 90 days up to the day before the decision, so nothing after it counts.
    let eve = crate::pipeline::ms_to_ts(anchor_ms - DAY_MS);
    [
        Some(n),
        last.map(|t| (anchor_ms - t) as f64 / DAY_MS as f64),
        Some(spend),
        (n > 0.0).then(|| spend / n),
        state.engagement.open_rate_90d(eve),
        state.engagement.click_rate_90d(eve),
    ]
}

/// A customer on the way to becoming a [`Unit`].
struct Pending {
    customer: CustomerId,
    treated: bool,
    anchor: FlowDecision,
}

/// Makes the campaign report from the store's recorded decisions, customer states and audit trail.
pub async fn build(
    store: &dyn Store,
    flows: &FlowSet,
    q: &CampaignQuery,
    now: OffsetDateTime,
) -> Result<CampaignReport, ReportError> {
    build_with(store, flows, q, now, None).await
}

/// [`build`], reading the customers' states through `cache` (shared by several reports of one period).
pub async fn build_with(
    store: &dyn Store,
    flows: &FlowSet,
    q: &CampaignQuery,
    now: OffsetDateTime,
    cache: Option<&crate::report_cli::StateCache>,
) -> Result<CampaignReport, ReportError> {
    let w = report_window(&q.report, now)?;
    let flow = q.report.flow.trim();
    if flow.is_empty() {
        return Err(ReportError::BadInput("flow: a flow name is required".into()));
    }
    let arm = q.arm.as_deref().map(str::trim);
    if arm == Some("") {
        return Err(ReportError::BadInput("arm: an arm name is required after --arm".into()));
    }
    let recorded = crate::report_cli::decisions_of(store, flow, w.since_ms, w.until_ms, cache).await?;
    let configured = flows.get(flow);
    if configured.is_none() && recorded.is_empty() {
        let names: Vec<&str> = flows.flows.iter().map(|f| f.spec.name.as_str()).collect();
        return Err(ReportError::UnknownFlow(format!(
            "flow: no flow named `{flow}` is configured or has recorded decisions (configured: {})",
            if names.is_empty() { "none".to_string() } else { names.join(", ") }
        )));
    }
    let has_holdout = configured.is_some_and(|f| f.spec.holdout_percent > 0);
    if !has_holdout && !recorded.iter().any(|d| d.status == "held_out") {
        return Err(ReportError::NotMeasured(format!(
            "flow `{flow}` has no holdout group, so its uplift cannot be estimated: set `holdout_percent` \
             (such as 10) on the flow, then report once the held-out customers' windows have closed"
        )));
    }
    if recorded.is_empty() {
        return Err(ReportError::NotMeasured(format!(
            "flow `{flow}` recorded no decisions in the period (since/until): widen it or wait for decisions"
        )));
    }
    if let Some(arm) = arm
        && !recorded.iter().any(|d| arm_of(d).is_some())
    {
        return Err(ReportError::NotMeasured(format!(
            "--arm {arm}: this flow has recorded no offer arms (only a `choose_offer` flow records them); \
             leave out --arm to measure the flow as a whole"
        )));
    }

    // Versions that ran in shadow mode sent nothing: their decisions measure nothing.
    let shadow_versions: BTreeSet<&str> =
        recorded.iter().filter(|d| d.status == "shadow").map(|d| d.flow_version.as_str()).collect();
    let kept: Vec<&FlowDecision> =
        recorded.iter().filter(|d| !shadow_versions.contains(d.flow_version.as_str())).collect();
    let excluded_shadow_decisions = (recorded.len() - kept.len()) as u64;

    let mut by_customer: BTreeMap<&CustomerId, Vec<&FlowDecision>> = BTreeMap::new();
    for d in &kept {
        by_customer.entry(&d.customer).or_default().push(d);
    }
    let (mut pending_window, mut other_arms) = (0u64, 0u64);
    let mut treated_by_status: BTreeMap<String, u64> = BTreeMap::new();
    let mut pending: Vec<Pending> = Vec::new();
    for (customer, mut decisions) in by_customer {
        decisions.sort_by_key(|d| d.at_ms);
        let Some(first) = decisions.iter().find(|d| d.matched) else { continue };
        if !w.partial && first.at_ms.saturating_add(w.window_ms) > w.until_ms {
            pending_window += 1;
            continue;
        }
        let treated = first.status != "held_out";
        if treated {
            if let Some(arm) = arm
                && arm_of(first) != Some(arm)
            {
                other_arms += 1;
                continue;
            }
            *treated_by_status.entry(first.status.clone()).or_default() += 1;
        }
        pending.push(Pending { customer: customer.clone(), treated, anchor: (*first).clone() });
    }

    let customers: Vec<CustomerId> = pending.iter().map(|p| p.customer.clone()).collect();
    let states = crate::report_cli::states_of(store, customers, cache).await?;
    // Each anchor's `scored` record (the last one of its customer in the trace), the traces read together.
    let traces: Vec<TraceId> = pending.iter().map(|p| p.anchor.trace_id).collect();
    let mut scored: HashMap<(TraceId, CustomerId), AtDecision> = HashMap::new();
    for r in store.audit_of_traces(traces, AuditStage::Scored).await? {
        if let Some(c) = r.customer {
            scored.insert((r.trace_id, c), scored_detail(&r.detail));
        }
    }
    let mut segment_source: BTreeMap<String, u64> = BTreeMap::new();
    let mut currencies: BTreeSet<String> = BTreeSet::new();
    let mut rows: Vec<(Unit, BTreeMap<String, f64>)> = Vec::with_capacity(pending.len());
    for p in &pending {
        let anchor_ms = p.anchor.at_ms;
        let end_ms = anchor_ms.saturating_add(w.window_ms);
        let (converted, revenue, features) = match states.get(&p.customer) {
            Some(state) => {
                let within: Vec<_> = state
                    .orders
                    .values()
                    .filter(|o| !o.cancelled)
                    .filter(|o| {
                        let t = crate::pipeline::ts_to_ms(o.created_at);
                        t > anchor_ms && t <= end_ms
                    })
                    .collect();
                currencies.extend(within.iter().map(|o| o.total.currency.to_string()));
                let revenue = within.iter().map(|o| o.total.to_f64()).sum();
                (!within.is_empty(), revenue, state_features(state, anchor_ms).to_vec())
            }
            // An erased customer: no orders known.
            None => (false, 0.0, vec![None; STATE_FEATURES.len()]),
        };
        let at = scored.remove(&(p.anchor.trace_id, p.customer.clone()));
        let (segment, source, scores) = match at {
            Some(AtDecision { segment: Some(s), scores }) => (s, "at_decision", scores),
            other => {
                let scores = other.map(|a| a.scores).unwrap_or_default();
                match latest_segment(store, &p.customer).await? {
                    Some(s) => (s, "latest_recorded", scores),
                    None => ("unknown".to_string(), "unknown", scores),
                }
            }
        };
        *segment_source.entry(source.to_string()).or_default() += 1;
        rows.push((Unit { treated: p.treated, converted, revenue, segment, features }, scores));
    }
    let score_names: BTreeSet<String> = rows.iter().flat_map(|(_, s)| s.keys().cloned()).collect();
    let mut names: Vec<String> = STATE_FEATURES.iter().map(|s| s.to_string()).collect();
    names.extend(score_names.iter().map(|n| format!("score.{n}")));
    let units: Vec<Unit> = rows
        .into_iter()
        .map(|(mut u, scores)| {
            u.features.extend(score_names.iter().map(|n| scores.get(n).copied()));
            u
        })
        .collect();

    let analysis = uplift::analyse(&units, &names, &LiftIntervals, &Options::default());
    let currency = (currencies.len() == 1).then(|| currencies.iter().next().cloned()).flatten();
    let mut notes = Vec::new();
    if currencies.len() > 1 {
        notes.push(format!(
            "orders came in several currencies ({}): revenue adds their amounts as they are",
            currencies.into_iter().collect::<Vec<_>>().join(", ")
        ));
    }
    if let Some(n) = segment_source.get("latest_recorded") {
        notes.push(format!(
            "{n} customer(s) have no segment recorded at decision time: their latest recorded segment is used, \
             which may reflect the campaign's own outcome"
        ));
    }
    if let Some(arm) = arm {
        notes.push(format!(
            "with --arm, the treated are the customers the flow made offer `{arm}` to, while the holdout also holds \
             customers who would have been sent nothing (no consent, capped): this is not intention to treat, and \
             can favour the arm; the report without --arm is"
        ));
    }
    if excluded_shadow_decisions > 0 {
        notes.push(format!(
            "{excluded_shadow_decisions} decision(s) of flow versions that ran in shadow mode are left out: \
             nothing was sent under them"
        ));
    }
    if pending_window > 0 {
        notes.push(format!(
            "{pending_window} customer(s) left out: their window is still open (--partial counts them)"
        ));
    }
    let window_label = window_label(w.window_ms);
    let summary = uplift::summary(
        &SummaryContext { flow, window: &window_label, arm, currency: currency.as_deref() },
        &analysis,
    );
    Ok(CampaignReport {
        flow: flow.to_string(),
        window_days: w.window_ms as f64 / DAY_MS as f64,
        arm: arm.map(str::to_string),
        since_ms: w.since_ms,
        until_ms: w.until_ms,
        partial: w.partial,
        analysis,
        segment_source,
        treated_by_status,
        currency,
        pending_window,
        excluded_shadow_decisions,
        other_arms,
        summary,
        notes,
    })
}

fn window_label(window_ms: i64) -> String {
    if window_ms % DAY_MS == 0 {
        let d = window_ms / DAY_MS;
        format!("{d} day{}", if d == 1 { "" } else { "s" })
    } else {
        format!("{:.0} hours", window_ms as f64 / 3_600_000.0)
    }
}

/// Runs `nudge report campaign`.
pub async fn run(cfg: &crate::config::Config, args: CampaignArgs) -> anyhow::Result<()> {
    let flows = cfg.flow_set()?;
    let store = crate::app::open_store(cfg).await?;
    let q = CampaignQuery {
        report: ReportQuery {
            flow: args.flow.clone(),
            window: Some(args.window.clone()),
            since: args.since.clone(),
            until: args.until.clone(),
            partial: args.partial,
        },
        arm: args.arm.clone(),
    };
    let report = build(&*store, &flows, &q, OffsetDateTime::now_utc()).await?;
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

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{:.1} %", v * 100.0))
}

fn pp(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{:+.1} pp", v * 100.0))
}

fn num(v: Option<f64>) -> String {
    // `+ 0.0` turns a negative zero (a sum of nothing) into 0.00, not -0.00.
    v.map_or_else(|| "n/a".into(), |v| format!("{:.2}", v + 0.0))
}

fn signed(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{v:+.2}"))
}

fn rate_ci(g: &Group) -> String {
    match (g.ci_low, g.ci_high) {
        (Some(lo), Some(hi)) => format!("{} – {}", pct(Some(lo)), pct(Some(hi))),
        _ => "n/a".into(),
    }
}

fn title(r: &CampaignReport) -> String {
    match &r.arm {
        Some(a) => format!("Campaign report of flow {}, arm {a}", r.flow),
        None => format!("Campaign report of flow {}", r.flow),
    }
}

fn period(r: &CampaignReport) -> String {
    let fmt = |ms: i64| crate::pipeline::fmt_ts(crate::pipeline::ms_to_ts(ms));
    let since = if r.since_ms == 0 { "the first decision".to_string() } else { fmt(r.since_ms) };
    format!(
        "decisions from {since} to {}; outcome window {} after each customer's first decision{}",
        fmt(r.until_ms),
        window_label((r.window_days * DAY_MS as f64).round() as i64),
        if r.partial { " (open windows counted with what is known so far)" } else { "" }
    )
}

fn sources(r: &CampaignReport) -> String {
    let names = [
        ("at_decision", "recorded at decision time"),
        ("latest_recorded", "latest recorded"),
        ("unknown", "unknown"),
    ];
    names
        .iter()
        .filter_map(|(k, label)| r.segment_source.get(*k).map(|n| format!("{label}: {n}")))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The report as plain text.
pub fn text(r: &CampaignReport) -> String {
    let a = &r.analysis;
    let cur = r.currency.as_deref().unwrap_or("");
    let mut s = String::new();
    let _ = writeln!(s, "{}: {}", title(r).to_lowercase(), period(r));
    let _ = writeln!(
        s,
        "{:<9} {:>9} {:>11} {:>8}  {:<17} {:>16}",
        "group", "customers", "conversions", "rate", "95 % interval", "revenue/customer"
    );
    for (name, g) in [("treated", &a.treated), ("held out", &a.control)] {
        let _ = writeln!(
            s,
            "{name:<9} {:>9} {:>11} {:>8}  {:<17} {:>12} {cur}",
            g.n,
            g.conversions,
            pct(g.rate),
            rate_ci(g),
            num(g.revenue_per_customer)
        );
    }
    let u = &a.uplift;
    let _ = writeln!(
        s,
        "conversion uplift {} (95 % CI {} to {}, {}){}",
        pp(u.abs),
        pp(u.ci_low),
        pp(u.ci_high),
        u.method,
        u.relative.map(|r| format!("; relative {:+.0} %", r * 100.0)).unwrap_or_default()
    );
    let rv = &a.revenue_uplift;
    let _ = writeln!(
        s,
        "revenue per customer {} {cur} (95 % CI {} to {}, Welch; bootstrap {} to {}, {} resamples, seed {})",
        signed(rv.welch.abs),
        signed(rv.welch.ci_low),
        signed(rv.welch.ci_high),
        signed(rv.bootstrap_ci_low),
        signed(rv.bootstrap_ci_high),
        rv.bootstrap_resamples,
        rv.bootstrap_seed
    );
    let _ = writeln!(s, "\nsegments (segment {}):", sources(r));
    let _ = writeln!(
        s,
        "  {:<18} {:>9} {:>8} {:>9} {:>8} {:>9}  95 % CI",
        "segment", "treated", "rate", "held out", "rate", "uplift"
    );
    for seg in &a.segments {
        let _ = writeln!(
            s,
            "  {:<18} {:>9} {:>8} {:>9} {:>8} {:>9}  {} to {}",
            seg.segment,
            seg.treated.n,
            pct(seg.treated.rate),
            seg.control.n,
            pct(seg.control.rate),
            pp(seg.uplift.abs),
            pp(seg.uplift.ci_low),
            pp(seg.uplift.ci_high)
        );
    }
    if a.drivers.is_empty() {
        s.push_str(
            "\ndrivers: too few treated responders and non-responders with known features to rank any\n",
        );
    } else {
        s.push_str("\ndrivers among the treated (responders against the rest; associations, not effects):\n");
        let _ = writeln!(
            s,
            "  {:<28} {:>5} {:>6}  {:<9} {:>15} {:>12}",
            "feature", "AUC", "SMD", "direction", "responders mean", "others mean"
        );
        for d in &a.drivers {
            let _ = writeln!(
                s,
                "  {:<28} {:>5.2} {:>+6.2}  {:<9} {:>15.2} {:>12.2}",
                d.feature, d.auc, d.smd, d.direction, d.responders_mean, d.non_responders_mean
            );
        }
    }
    if !r.treated_by_status.is_empty() {
        let st: Vec<String> = r.treated_by_status.iter().map(|(k, v)| format!("{k} {v}")).collect();
        let _ = writeln!(s, "\ntreated customers' first decisions: {}", st.join(", "));
    }
    let _ = writeln!(s, "\n{}", r.summary);
    for n in &r.notes {
        let _ = writeln!(s, "note: {n}");
    }
    s
}

fn rate_bars(name: &str, color: &str, groups: &[&Group]) -> Bars {
    Bars {
        name: name.into(),
        color: color.into(),
        values: groups.iter().map(|g| g.rate.map_or(f64::NAN, |r| r * 100.0)).collect(),
        intervals: groups
            .iter()
            .map(|g| g.ci_low.zip(g.ci_high).map(|(lo, hi)| (lo * 100.0, hi * 100.0)))
            .collect(),
    }
}

/// The plots: conversion of the two groups with their intervals, and per segment both groups' conversion
/// with the segment's uplift and interval in its label.
pub fn plots(r: &CampaignReport) -> Vec<String> {
    let a = &r.analysis;
    let y_label = "ordered within the window (%)".to_string();
    let groups = BarChart {
        title: format!("Conversion, treated against held out ({})", r.flow),
        x_label: String::new(),
        y_label: y_label.clone(),
        categories: vec![format!("treated (n={})", a.treated.n), format!("held out (n={})", a.control.n)],
        series: vec![rate_bars("conversion (95 % interval)", "#1f77b4", &[&a.treated, &a.control])],
    }
    .render();
    let categories = a
        .segments
        .iter()
        .map(|s| {
            format!("{} {} [{}, {}]", s.segment, pp(s.uplift.abs), pp(s.uplift.ci_low), pp(s.uplift.ci_high))
        })
        .collect();
    let treated: Vec<&Group> = a.segments.iter().map(|s| &s.treated).collect();
    let control: Vec<&Group> = a.segments.iter().map(|s| &s.control).collect();
    let segments = BarChart {
        title: "Uplift per segment: conversion of each group (label: uplift and its 95 % interval)".into(),
        x_label: String::new(),
        y_label,
        categories,
        series: vec![rate_bars("treated", "#1f77b4", &treated), rate_bars("held out", "#ff7f0e", &control)],
    }
    .render();
    vec![groups, segments]
}

/// The report as a standalone HTML page: tables, the summary and the plots (inline SVG).
pub fn html(r: &CampaignReport) -> String {
    let a = &r.analysis;
    let cur = r.currency.as_deref().unwrap_or("");
    let mut s = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{t}</title>\n<style>\
         body{{font-family:sans-serif;margin:2em;max-width:1000px}}table{{border-collapse:collapse;margin:1em 0}}\
         td,th{{border:1px solid #ccc;padding:4px 8px;text-align:right}}th{{background:#f4f4f4}}\
         td.l{{text-align:left}}</style>\n</head>\n<body>\n<h1>{t}</h1>\n<p>{p}</p>\n<p><strong>{summary}</strong></p>\n",
        t = escape(&title(r)),
        p = escape(&period(r)),
        summary = escape(&r.summary)
    );
    s.push_str(
        "<table>\n<tr><th>group</th><th>customers</th><th>conversions</th><th>rate</th><th>95 % interval</th>\
         <th>revenue per customer</th></tr>\n",
    );
    for (name, g) in [("treated", &a.treated), ("held out", &a.control)] {
        let _ = writeln!(
            s,
            "<tr><td class=\"l\">{name}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} {}</td></tr>",
            g.n,
            g.conversions,
            pct(g.rate),
            escape(&rate_ci(g)),
            num(g.revenue_per_customer),
            escape(cur)
        );
    }
    s.push_str("</table>\n<table>\n<tr><th>difference</th><th>estimate</th><th>95 % interval</th><th>relative</th><th>method</th></tr>\n");
    let u = &a.uplift;
    let rel = |v: Option<f64>| v.map_or_else(|| "n/a".into(), |v| format!("{:+.0} %", v * 100.0));
    let _ = writeln!(
        s,
        "<tr><td class=\"l\">conversion</td><td>{}</td><td>{} to {}</td><td>{}</td><td class=\"l\">{}</td></tr>",
        pp(u.abs),
        pp(u.ci_low),
        pp(u.ci_high),
        rel(u.relative),
        escape(&u.method)
    );
    let rv = &a.revenue_uplift;
    let _ = writeln!(
        s,
        "<tr><td class=\"l\">revenue per customer ({})</td><td>{}</td><td>{} to {}</td><td>{}</td><td class=\"l\">{}; \
         bootstrap {} to {} ({} resamples, seed {})</td></tr>",
        escape(cur),
        signed(rv.welch.abs),
        signed(rv.welch.ci_low),
        signed(rv.welch.ci_high),
        rel(rv.welch.relative),
        escape(&rv.welch.method),
        signed(rv.bootstrap_ci_low),
        signed(rv.bootstrap_ci_high),
        rv.bootstrap_resamples,
        rv.bootstrap_seed
    );
    s.push_str("</table>\n");
    let _ = writeln!(s, "<h2>Segments</h2>\n<p>Segment {}.</p>", escape(&sources(r)));
    s.push_str(
        "<table>\n<tr><th>segment</th><th>treated</th><th>rate</th><th>held out</th><th>rate</th><th>uplift</th>\
         <th>95 % interval</th></tr>\n",
    );
    for seg in &a.segments {
        let _ = writeln!(
            s,
            "<tr><td class=\"l\">{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{} to {}</td></tr>",
            escape(&seg.segment),
            seg.treated.n,
            pct(seg.treated.rate),
            seg.control.n,
            pct(seg.control.rate),
            pp(seg.uplift.abs),
            pp(seg.uplift.ci_low),
            pp(seg.uplift.ci_high)
        );
    }
    s.push_str(
        "</table>\n<h2>Drivers</h2>\n<p>Among the treated, the features known at decision time that best \
                separate customers who ordered from those who did not (associations, not effects).</p>\n",
    );
    if a.drivers.is_empty() {
        s.push_str("<p>Too few treated responders and non-responders with known features to rank any.</p>\n");
    } else {
        s.push_str(
            "<table>\n<tr><th>feature</th><th>AUC</th><th>SMD</th><th>direction</th><th>responders mean</th>\
             <th>others mean</th><th>n</th></tr>\n",
        );
        for d in &a.drivers {
            let _ = writeln!(
                s,
                "<tr><td class=\"l\">{}</td><td>{:.2}</td><td>{:+.2}</td><td>{}</td><td>{:.2}</td><td>{:.2}</td><td>{} / {}</td></tr>",
                escape(&d.feature),
                d.auc,
                d.smd,
                d.direction,
                d.responders_mean,
                d.non_responders_mean,
                d.n_responders,
                d.n_non_responders
            );
        }
        s.push_str("</table>\n");
    }
    for n in &r.notes {
        let _ = writeln!(s, "<p>Note: {}</p>", escape(n));
    }
    for p in plots(r) {
        s.push_str(&p);
    }
    s.push_str("</body>\n</html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scored_details_give_segment_and_finite_scores() {
        let d = serde_json::json!({
            "segment": "loyal",
            "scores": [{"name": "churn_risk", "value": 0.25}, {"name": "odd"}, {"name": "x", "value": "y"}],
        });
        let at = scored_detail(&d);
        assert_eq!(at.segment.as_deref(), Some("loyal"));
        assert_eq!(at.scores.into_iter().collect::<Vec<_>>(), vec![("churn_risk".to_string(), 0.25)]);
        assert!(scored_detail(&serde_json::json!({})).segment.is_none());
    }

    #[test]
    fn window_labels_say_days_or_hours() {
        assert_eq!(window_label(14 * DAY_MS), "14 days");
        assert_eq!(window_label(DAY_MS), "1 day");
        assert_eq!(window_label(48 * 3_600_000 + 1), "48 hours");
    }
}
