//! `nudge campaigns hypotheses --flow F`: 3–5 A/B tests proposed from a flow's past results, and
//! `nudge campaigns adopt --flow F --hypothesis ID --write FILE` to turn one into a flow config.
//!
//! The flow's recorded decisions become one [`PastUnit`] per customer as in `nudge report campaign`
//! (intention to treat; a customer's anchor is their first matched decision in the period; decisions of a
//! flow version that ran in shadow mode are left out; the outcome is an order, not cancelled, within the
//! window after the anchor). Beside the segment recorded in the decision's audit trail (else the latest
//! recorded one), each unit carries the offer arm chosen, the UTC hour of the decision, and the features
//! of the generated subject line when the trace recorded copy. The proposals come from the pure
//! [`nudge_decide::hypotheses::propose`] (Holm-adjusted; see there).
//!
//! A variant is a copy of the flow named `<flow>__<id>`, restricted to the hypothesis's segment
//! (`scores.segment == "…"`):
//!
//! - offer: its `choose_offer` has the two arms compared and `explore_holdout_percent = 100`, so every
//!   decision picks one of the two uniformly at random: a 50/50 split;
//! - send hour: a `schedule` flow fires at that hour (the cron's hour field); an event flow's track
//!   events carry `send_hour_utc`, for the destination's flow to wait until that hour;
//! - subject line: its track events carry `subject_feature`, for the copy prompt or template to use;
//! - targeting: the flow with `holdout_percent = 50`, measuring its uplift in the segment.
//!
//! The variant is checked with the configuration's own flow checker (the configured flows plus the
//! variant) before anything is written.

use crate::report_cli::{ReportError, ReportQuery, report_window};
use nudge_decide::hypotheses::{self, Change, Hypothesis, Options, PastUnit, Proposals};
use nudge_model::{AuditStage, CustomerId};
use nudge_policy::flows::{ActionSpec, FlowSet, FlowSpec, Trigger};
use nudge_policy::offers::OfferSpec;
use nudge_state::CustomerState;
use nudge_store::{FlowDecision, Store, StoreError};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt::Write as _;
use std::path::PathBuf;
use time::OffsetDateTime;

/// A mistake in the command (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The campaigns commands.
#[derive(Debug, clap::Subcommand)]
pub enum CampaignsCmd {
    /// Propose 3–5 A/B tests from a flow's past results, each with its evidence and sample size.
    Hypotheses {
        #[command(flatten)]
        period: Period,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// At most this many proposals (1–10).
        #[arg(long, default_value_t = 5)]
        count: usize,
    },
    /// Write a proposed hypothesis's variant as a `[[flows]]` config to add to the configuration.
    Adopt {
        #[command(flatten)]
        period: Period,
        /// The hypothesis's id as `campaigns hypotheses` printed it (`h1`).
        #[arg(long)]
        hypothesis: String,
        /// The TOML file to write.
        #[arg(long)]
        write: PathBuf,
        /// Replace the file if it exists.
        #[arg(long)]
        force: bool,
    },
}

/// The flow and the period its past results are read from (the same as `nudge report campaign`).
#[derive(Debug, Clone, clap::Args)]
pub struct Period {
    /// The flow (its `name`).
    #[arg(long)]
    pub flow: String,
    /// The outcome window after each customer's first decision (`14d`, `48h`).
    #[arg(long, default_value = "14d")]
    pub window: String,
    /// Only decisions from this instant (`2026-11-01`, RFC 3339) or this long ago (`30d`); default: all.
    #[arg(long)]
    pub since: Option<String>,
    /// Only decisions before this instant (date or RFC 3339); outcomes are observed up to it. Default: now.
    #[arg(long)]
    pub until: Option<String>,
}

/// The proposals for one flow, with what they were made from.
#[derive(Debug, Clone, Serialize)]
pub struct HypothesesReport {
    pub flow: String,
    pub window_days: f64,
    pub since_ms: i64,
    pub until_ms: i64,
    #[serde(flatten)]
    pub proposals: Proposals,
    /// Per hypothesis id, the variant flow it would be adopted as (TOML).
    pub variants: BTreeMap<String, String>,
    /// Customers left out because their window had not closed by `until`.
    pub pending_window: u64,
    /// Decisions left out because their flow version ran in shadow mode.
    pub excluded_shadow_decisions: u64,
}

/// The subject-line features of a generated subject line: `question` (asks one), `emoji` (has a pictograph),
/// `number` (has a digit: a price, a percentage), `short` (at most 40 characters).
pub fn subject_features(subject: &str) -> Vec<String> {
    let s = subject.trim();
    if s.is_empty() {
        return Vec::new();
    }
    let mut out = Vec::new();
    if s.contains('?') {
        out.push("question");
    }
    if s.chars().any(|c| matches!(u32::from(c), 0x1F300..=0x1FAFF | 0x2600..=0x27BF)) {
        out.push("emoji");
    }
    if s.chars().any(|c| c.is_ascii_digit()) {
        out.push("number");
    }
    if s.chars().count() <= 40 {
        out.push("short");
    }
    out.into_iter().map(str::to_string).collect()
}

/// What the anchor decision's trace recorded for the customer: the segment, the subject line.
async fn recorded(
    store: &dyn Store,
    d: &FlowDecision,
) -> Result<(Option<String>, Option<String>), ReportError> {
    let Some(view) = store.trace(d.trace_id).await? else { return Ok((None, None)) };
    let mine = |stage: AuditStage| {
        view.records.iter().rev().find(move |r| r.stage == stage && r.customer.as_ref() == Some(&d.customer))
    };
    let segment =
        mine(AuditStage::Scored).and_then(|r| r.detail.get("segment")?.as_str().map(str::to_string));
    let subject = mine(AuditStage::CopyGenerated).and_then(|r| {
        let copy = r.detail.get("copy")?;
        ["subject", "subject_line"].iter().find_map(|k| copy.get(*k)?.as_str().map(str::to_string))
    });
    Ok((segment, subject))
}

async fn latest_segment(store: &dyn Store, customer: &CustomerId) -> Result<Option<String>, ReportError> {
    let records = store.customer_audit(customer, 200).await?;
    Ok(records
        .iter()
        .rev()
        .find(|r| r.stage == AuditStage::Scored)
        .and_then(|r| r.detail.get("segment")?.as_str().map(str::to_string)))
}

async fn load_states(
    store: &dyn Store,
    customers: &[CustomerId],
) -> Result<HashMap<CustomerId, CustomerState>, ReportError> {
    let mut out = HashMap::with_capacity(customers.len());
    for chunk in customers.chunks(500) {
        for s in store.load_states(chunk).await? {
            let state: CustomerState = CustomerState::decode(&s.state)
                .map_err(|e| StoreError::Corrupt(format!("the stored state of {}: {e}", s.customer)))?;
            out.insert(s.customer, state);
        }
    }
    Ok(out)
}

/// The flow's past units, with the period's bounds and what was left out.
pub struct PastResults {
    pub units: Vec<PastUnit>,
    pub window_ms: i64,
    pub since_ms: i64,
    pub until_ms: i64,
    pub pending_window: u64,
    pub excluded_shadow_decisions: u64,
}

/// Reads the flow's recorded decisions and its customers' orders as [`PastUnit`]s.
pub async fn past_results(
    store: &dyn Store,
    flows: &FlowSet,
    period: &Period,
    now: OffsetDateTime,
) -> Result<PastResults, ReportError> {
    let q = ReportQuery {
        flow: period.flow.clone(),
        window: Some(period.window.clone()),
        since: period.since.clone(),
        until: period.until.clone(),
        partial: false,
    };
    let w = report_window(&q, now)?;
    let flow = period.flow.trim();
    if flow.is_empty() {
        return Err(ReportError::BadInput("flow: a flow name is required".into()));
    }
    let recorded_decisions = store.flow_decisions(flow, w.since_ms, w.until_ms).await?;
    if flows.get(flow).is_none() && recorded_decisions.is_empty() {
        let names: Vec<&str> = flows.flows.iter().map(|f| f.spec.name.as_str()).collect();
        return Err(ReportError::UnknownFlow(format!(
            "flow: no flow named `{flow}` is configured or has recorded decisions (configured: {})",
            if names.is_empty() { "none".to_string() } else { names.join(", ") }
        )));
    }
    if recorded_decisions.is_empty() {
        return Err(ReportError::NotMeasured(format!(
            "flow `{flow}` recorded no decisions in the period (since/until): there are no past results to \
             propose tests from; widen the period or wait for decisions"
        )));
    }
    let shadow: BTreeSet<&str> =
        recorded_decisions.iter().filter(|d| d.status == "shadow").map(|d| d.flow_version.as_str()).collect();
    let kept: Vec<&FlowDecision> =
        recorded_decisions.iter().filter(|d| !shadow.contains(d.flow_version.as_str())).collect();
    let excluded_shadow_decisions = (recorded_decisions.len() - kept.len()) as u64;
    let mut by_customer: BTreeMap<&CustomerId, Vec<&FlowDecision>> = BTreeMap::new();
    for d in &kept {
        by_customer.entry(&d.customer).or_default().push(d);
    }
    let mut pending_window = 0u64;
    let mut anchors: Vec<&FlowDecision> = Vec::new();
    for (_, mut ds) in by_customer {
        ds.sort_by_key(|d| d.at_ms);
        let Some(first) = ds.iter().find(|d| d.matched) else { continue };
        if first.at_ms.saturating_add(w.window_ms) > w.until_ms {
            pending_window += 1;
            continue;
        }
        anchors.push(first);
    }
    let customers: Vec<CustomerId> = anchors.iter().map(|d| d.customer.clone()).collect();
    let states = load_states(store, &customers).await?;
    let mut units = Vec::with_capacity(anchors.len());
    for d in anchors {
        let end = d.at_ms.saturating_add(w.window_ms);
        let (converted, revenue) = match states.get(&d.customer) {
            Some(state) => {
                let within: Vec<f64> = state
                    .orders
                    .values()
                    .filter(|o| !o.cancelled)
                    .filter(|o| {
                        let t = crate::pipeline::ts_to_ms(o.created_at);
                        t > d.at_ms && t <= end
                    })
                    .map(|o| o.total.to_f64())
                    .collect();
                (!within.is_empty(), within.iter().sum())
            }
            None => (false, 0.0),
        };
        let (segment, subject) = recorded(store, d).await?;
        let segment = match segment {
            Some(s) => s,
            None => latest_segment(store, &d.customer).await?.unwrap_or_else(|| "unknown".into()),
        };
        let treated = d.status != "held_out";
        units.push(PastUnit {
            segment,
            treated,
            arm: if treated { d.arm.clone() } else { None },
            send_hour: treated.then(|| (d.at_ms.rem_euclid(86_400_000) / 3_600_000) as u8),
            subject_features: if treated {
                subject.as_deref().map(subject_features).unwrap_or_default()
            } else {
                Vec::new()
            },
            converted,
            revenue,
        });
    }
    Ok(PastResults {
        units,
        window_ms: w.window_ms,
        since_ms: w.since_ms,
        until_ms: w.until_ms,
        pending_window,
        excluded_shadow_decisions,
    })
}

fn cel_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The schedule with its hour field set to `hour` (the minute and the day fields kept).
fn at_hour(cron: &str, hour: u8) -> Option<String> {
    let mut fields: Vec<&str> = cron.split_whitespace().collect();
    if fields.len() != 5 {
        return None;
    }
    let h = hour.to_string();
    fields[1] = &h;
    // A minute list or step would fire several times in the hour: keep the first minute.
    let minute = fields[0].split([',', '/', '-']).next().filter(|m| m.parse::<u8>().is_ok()).unwrap_or("0");
    let minute = minute.to_string();
    fields[0] = &minute;
    Some(fields.join(" "))
}

fn add_property(spec: &mut FlowSpec, key: &str, expr: String) -> Result<(), String> {
    let mut any = false;
    for a in &mut spec.actions {
        if let ActionSpec::TrackEvent { properties, .. } = a {
            properties.insert(key.to_string(), expr.clone());
            any = true;
        }
    }
    if any {
        Ok(())
    } else {
        Err(format!(
            "flow `{}` has no track_event action to carry `{key}`: this hypothesis cannot be adopted as a variant \
             of it",
            spec.name
        ))
    }
}

/// The variant flow that tests hypothesis `h` on flow `base` (see the module documentation).
pub fn variant_spec(base: &FlowSpec, h: &Hypothesis) -> Result<FlowSpec, String> {
    let mut v = base.clone();
    let mut stem = base.name.clone();
    let suffix = format!("__{}", h.id);
    stem.truncate(64 - suffix.len());
    v.name = format!("{stem}{suffix}");
    if let Some(seg) = h.change.segment() {
        let cond = format!("scores.segment == {}", cel_string(seg));
        v.when = Some(match base.when.as_deref().map(str::trim).filter(|w| !w.is_empty()) {
            Some(w) => format!("({w}) && {cond}"),
            None => cond,
        });
    }
    match &h.change {
        Change::Offer { baseline_arm, arm, .. } => {
            let arms = vec![baseline_arm.clone(), arm.clone()];
            let existing = v.actions.iter_mut().find_map(|a| match a {
                ActionSpec::ChooseOffer(o) => Some(o),
                _ => None,
            });
            match existing {
                Some(o) => {
                    o.arms = arms;
                    o.explore_holdout_percent = 100;
                }
                None => v.actions.insert(
                    0,
                    ActionSpec::ChooseOffer(OfferSpec {
                        arms,
                        policy: "thompson".into(),
                        guardrails: Default::default(),
                        explore_holdout_percent: 100,
                        window: "7d".into(),
                        shipping_cost: 0.0,
                    }),
                ),
            }
        }
        Change::SendHour { hour, .. } => match (base.trigger, base.schedule.as_deref()) {
            (Trigger::Schedule, Some(cron)) => {
                v.schedule =
                    Some(at_hour(cron, *hour).ok_or_else(|| format!("schedule `{cron}` is not a cron"))?);
            }
            _ => add_property(&mut v, "send_hour_utc", hour.to_string())?,
        },
        Change::Subject { feature, .. } => add_property(&mut v, "subject_feature", cel_string(feature))?,
        Change::Targeting { .. } => v.holdout_percent = 50,
    }
    // Every variant is measured against a holdout.
    if v.holdout_percent == 0 {
        v.holdout_percent = 10;
    }
    Ok(v)
}

/// The variant as a `[[flows]]` TOML snippet.
pub fn variant_toml(spec: &FlowSpec) -> Result<String, String> {
    #[derive(Serialize)]
    struct File<'a> {
        flows: [&'a FlowSpec; 1],
    }
    toml::to_string(&File { flows: [spec] }).map_err(|e| format!("cannot write the variant as TOML: {e}"))
}

/// Checks a variant with the configuration's flow checker: the configured flows plus the variant.
pub fn check_variant(cfg: &crate::config::Config, variant: &FlowSpec) -> Result<(), String> {
    let mut c = cfg.clone();
    let mut specs = match &cfg.flows {
        Some(s) => s.clone(),
        None => FlowSet::default_specs(
            &cfg.destination_names().iter().map(String::as_str).collect::<Vec<_>>(),
            &cfg.policy(),
        ),
    };
    specs.retain(|s| s.name != variant.name);
    specs.push(variant.clone());
    c.flows = Some(specs);
    c.flow_set().map(|_| ()).map_err(|e| format!("the variant `{}` does not load: {e}", variant.name))
}

/// Makes the proposals for `period.flow`.
pub async fn build(
    cfg: &crate::config::Config,
    store: &dyn Store,
    flows: &FlowSet,
    period: &Period,
    count: usize,
    now: OffsetDateTime,
) -> anyhow::Result<HypothesesReport> {
    if !(1..=10).contains(&count) {
        return Err(UsageError(format!("--count must be from 1 to 10, not {count}")).into());
    }
    let past = past_results(store, flows, period, now).await.map_err(usage)?;
    let opts = Options { max_proposals: count, ..Options::default() };
    let proposals = hypotheses::propose(&past.units, &crate::campaign_report::LiftIntervals, &opts);
    let mut variants = BTreeMap::new();
    let mut proposals = proposals;
    if let Some(base) = flows.get(period.flow.trim()) {
        for h in &proposals.hypotheses {
            let made = variant_spec(&base.spec, h).and_then(|v| {
                check_variant(cfg, &v)?;
                variant_toml(&v)
            });
            match made {
                Ok(t) => {
                    variants.insert(h.id.clone(), t);
                }
                Err(e) => proposals.notes.push(format!("{}: no variant: {e}", h.id)),
            }
        }
    } else {
        proposals.notes.push(format!(
            "flow `{}` is no longer configured: its hypotheses cannot be adopted as variants",
            period.flow.trim()
        ));
    }
    Ok(HypothesesReport {
        flow: period.flow.trim().to_string(),
        window_days: past.window_ms as f64 / 86_400_000.0,
        since_ms: past.since_ms,
        until_ms: past.until_ms,
        proposals,
        variants,
        pending_window: past.pending_window,
        excluded_shadow_decisions: past.excluded_shadow_decisions,
    })
}

fn usage(e: ReportError) -> anyhow::Error {
    if e.is_usage() { UsageError(e.to_string()).into() } else { anyhow::Error::new(e) }
}

fn pp(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a".into(), |v| format!("{:+.1} pp", v * 100.0))
}

/// The proposals as text.
pub fn text(r: &HypothesesReport) -> String {
    let p = &r.proposals;
    let mut s = String::new();
    let _ = writeln!(
        s,
        "test hypotheses for flow {}: {} customers ({} treated, {} held out), outcome window {:.0} days; {} \
         comparisons, {} significant",
        r.flow, p.units, p.treated, p.held_out, r.window_days, p.comparisons, p.significant
    );
    let _ = writeln!(s, "method: {}", p.method);
    for h in &p.hypotheses {
        let _ = writeln!(s, "\n{} [{}] {} — {}", h.id, h.kind.as_str(), h.title, h.status);
        let _ = writeln!(
            s,
            "   evidence: {:.1} % (n {}) vs {:.1} % (n {}): {} (95 % CI {} to {}), p {:.4}, adjusted p {:.4}",
            h.treatment.rate * 100.0,
            h.treatment.n,
            h.comparison.rate * 100.0,
            h.comparison.n,
            pp(Some(h.effect)),
            pp(h.ci_low),
            pp(h.ci_high),
            h.p_value,
            h.p_adjusted
        );
        let _ = writeln!(
            s,
            "   sample size: {} per arm (alpha {}, power {:.0} %)",
            h.n_per_arm_needed.map_or_else(|| "n/a".into(), |n| n.to_string()),
            p.alpha,
            p.power * 100.0
        );
        let _ = writeln!(
            s,
            "   split: {} against {} ({} % get the change)",
            h.split.a, h.split.b, h.split.b_percent
        );
        let _ = writeln!(s, "   why: {}", h.rationale);
        if r.variants.contains_key(&h.id) {
            let _ = writeln!(
                s,
                "   adopt: nudge campaigns adopt --flow {} --hypothesis {} --write {}__{}.toml",
                r.flow, h.id, r.flow, h.id
            );
        }
    }
    if p.hypotheses.is_empty() {
        s.push_str("\nno hypotheses to propose\n");
    }
    if r.pending_window > 0 {
        let _ = writeln!(s, "\nnote: {} customer(s) left out: their window is still open", r.pending_window);
    }
    if r.excluded_shadow_decisions > 0 {
        let _ = writeln!(
            s,
            "note: {} decision(s) of shadow-mode versions left out (nothing was sent)",
            r.excluded_shadow_decisions
        );
    }
    for n in &p.notes {
        let _ = writeln!(s, "note: {n}");
    }
    s
}

/// Runs a `nudge campaigns` command.
pub async fn run(cfg: &crate::config::Config, cmd: CampaignsCmd) -> anyhow::Result<()> {
    let flows = cfg.flow_set()?;
    let now = OffsetDateTime::now_utc();
    match cmd {
        CampaignsCmd::Hypotheses { period, json, count } => {
            let store = crate::app::open_store(cfg).await?;
            let r = build(cfg, &*store, &flows, &period, count, now).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&r)?);
            } else {
                print!("{}", text(&r));
            }
        }
        CampaignsCmd::Adopt { period, hypothesis, write, force } => {
            let id = hypothesis.trim().to_lowercase();
            if write.exists() && !force {
                return Err(UsageError(format!(
                    "{} exists: pass --force to replace it, or choose another file",
                    write.display()
                ))
                .into());
            }
            let store = crate::app::open_store(cfg).await?;
            let r = build(cfg, &*store, &flows, &period, 10, now).await?;
            let Some(h) = r.proposals.hypotheses.iter().find(|h| h.id == id) else {
                let ids: Vec<&str> = r.proposals.hypotheses.iter().map(|h| h.id.as_str()).collect();
                return Err(UsageError(format!(
                    "--hypothesis: no hypothesis `{hypothesis}` for flow `{}` (proposed: {})",
                    r.flow,
                    if ids.is_empty() { "none".to_string() } else { ids.join(", ") }
                ))
                .into());
            };
            let Some(toml) = r.variants.get(&h.id) else {
                let why = r.proposals.notes.iter().find(|n| n.starts_with(&format!("{}:", h.id)));
                return Err(UsageError(format!(
                    "{} cannot be adopted: {}",
                    h.id,
                    why.map_or("its flow is not configured", String::as_str)
                ))
                .into());
            };
            let body = format!(
                "# Variant of flow `{}` testing {}: {}\n# {}\n# Add this [[flows]] entry to the configuration.\n{toml}",
                r.flow,
                h.id,
                h.title,
                h.rationale.replace('\n', " ")
            );
            std::fs::write(&write, body)
                .map_err(|e| anyhow::anyhow!("cannot write {}: {e}", write.display()))?;
            println!("{} ({}) written to {} as a variant flow", h.id, h.title, write.display());
            if let Some(seg) = h.change.segment() {
                println!(
                    "the variant takes segment `{seg}`: add `&& scores.segment != {}` to flow `{}`'s `when` so \
                     its customers get one of the two, then compare with `nudge report campaign`",
                    cel_string(seg),
                    r.flow
                );
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subject_features_are_read_from_the_line() {
        assert_eq!(subject_features("Still thinking it over?"), vec!["question", "short"]);
        assert_eq!(
            subject_features("🎁 10% off everything in your cart, today only, for you alone"),
            vec!["emoji", "number"]
        );
        assert!(subject_features("  ").is_empty());
    }

    #[test]
    fn a_schedule_moves_to_the_hour() {
        assert_eq!(at_hour("30 9 * * 1", 18).as_deref(), Some("30 18 * * 1"));
        assert_eq!(at_hour("0,30 9 * * *", 7).as_deref(), Some("0 7 * * *"));
        assert_eq!(at_hour("*/15 * * * *", 7).as_deref(), Some("0 7 * * *"));
        assert_eq!(at_hour("0 9 *", 7), None);
    }

    #[test]
    fn cel_strings_are_escaped() {
        assert_eq!(cel_string(r#"a"b\c"#), r#""a\"b\\c""#);
    }
}
