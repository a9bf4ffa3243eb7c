//! `nudge report models --compare A B`: two scorers side by side over the stored customers.
//!
//! A scorer is named by its score: a built-in score (`churn_risk`, `p_alive`, `purchase_propensity_7d`,
//! …, as the active model versions or rules compute it) or an output of a `[[scoring.custom]]` model
//! (`custom_churn`). When a custom output has the name of a built-in score, `builtin:NAME` and
//! `custom:NAME` tell them apart (a bare name is the custom output). A custom output is the model's own
//! valid value: customers for whom it gave none (NaN, out of range, missing, no answer) are left out and
//! counted, never replaced by a fallback.
//!
//! - Agreement: every stored customer scored now, by both; n, Pearson and Spearman correlation, mean
//!   absolute difference, and the share of A's top decile also in B's.
//! - Holdout: each customer's history is cut at `cutoff` (default: `--horizon` before the newest stored
//!   order): orders, checkouts and browsing after it are removed, both scorers score that calibration
//!   state as of the cutoff, and the outcome is what happened in the `--horizon` after it. `--outcome
//!   churn` (default): the customer placed no order in (cutoff, cutoff + horizon]; `--outcome purchase`:
//!   they placed one. Only customers with an order before the cutoff are counted. AUC (a higher score
//!   means the outcome is more likely) and the Brier score (only when every score is a probability in
//!   [0, 1]).

use crate::pipeline::Scoring;
use anyhow::Context as _;
use clap::Args;
use nudge_custom::compare::{self, Agreement, Quality};
use nudge_model::{CustomerId, ScoreSet, Timestamp};
use nudge_state::CustomerState;
use nudge_store::Store;
use serde::Serialize;
use time::OffsetDateTime;

#[derive(Args, Debug)]
pub struct ModelsReportArgs {
    /// The two scorers: built-in score names or custom outputs (`builtin:NAME` / `custom:NAME` when both
    /// exist).
    #[arg(long, num_args = 2, value_names = ["A", "B"], required = true)]
    pub compare: Vec<String>,
    /// Where histories are cut for the holdout (date or RFC 3339); default: the horizon before the newest
    /// stored order.
    #[arg(long)]
    pub cutoff: Option<String>,
    /// How long after the cutoff the outcome is observed (`90d`).
    #[arg(long, default_value = "90d")]
    pub horizon: String,
    /// `churn` (no order in the horizon) or `purchase` (an order in it).
    #[arg(long, default_value = "churn")]
    pub outcome: String,
    #[arg(long)]
    pub json: bool,
}

/// Which scorer a name means.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", content = "score", rename_all = "snake_case")]
pub enum ScorerRef {
    Builtin(String),
    Custom(String),
}

impl ScorerRef {
    fn value(&self, builtin: &ScoreSet, custom: &[nudge_custom::ModelReport]) -> Option<f64> {
        match self {
            ScorerRef::Builtin(n) => builtin.value(n),
            ScorerRef::Custom(n) => custom.iter().find_map(|r| r.outputs.get(n).copied()),
        }
    }
}

fn resolve(name: &str, custom: &nudge_custom::CustomModels) -> Result<ScorerRef, String> {
    let custom_names: Vec<&String> = custom.models().iter().flat_map(|m| m.spec.outputs.keys()).collect();
    let builtins = nudge_custom::config::builtin_scores();
    if let Some(n) = name.strip_prefix("custom:") {
        return custom_names
            .iter()
            .any(|c| *c == n)
            .then(|| ScorerRef::Custom(n.to_string()))
            .ok_or_else(|| format!("no `[[scoring.custom]]` model has an output named `{n}`"));
    }
    if let Some(n) = name.strip_prefix("builtin:") {
        return builtins
            .iter()
            .any(|b| b == n)
            .then(|| ScorerRef::Builtin(n.to_string()))
            .ok_or_else(|| format!("`{n}` is not a built-in score ({})", builtins.join(", ")));
    }
    if custom_names.iter().any(|c| *c == name) {
        return Ok(ScorerRef::Custom(name.to_string()));
    }
    if builtins.iter().any(|b| b == name) {
        return Ok(ScorerRef::Builtin(name.to_string()));
    }
    let mut known: Vec<String> = builtins;
    known.extend(custom_names.into_iter().cloned());
    Err(format!("`{name}` is neither a built-in score nor a custom output (known: {})", known.join(", ")))
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelsReport {
    pub a: ScorerRef,
    pub b: ScorerRef,
    pub customers: usize,
    /// Customers without a value from A, from B.
    pub missing: [usize; 2],
    pub agreement: Agreement,
    pub holdout: Option<Holdout>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Holdout {
    pub cutoff: String,
    pub horizon_days: f64,
    pub outcome: String,
    pub a: Quality,
    pub b: Quality,
}

/// The calibration part of a state: what was known at `cutoff`.
pub fn calibration_state(state: &CustomerState, cutoff: Timestamp) -> CustomerState {
    let mut s = state.clone();
    s.orders.retain(|_, o| o.created_at <= cutoff);
    s.open_checkouts.retain(|_, c| c.updated_at <= cutoff);
    s.browse.retain(|b| b.at <= cutoff);
    s
}

async fn scan(store: &dyn Store, mut f: impl FnMut(CustomerState)) -> anyhow::Result<()> {
    let mut after: Option<CustomerId> = None;
    loop {
        let page = store.scan_states(after.clone(), 2_000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.customer.clone());
        for s in &page {
            f(CustomerState::decode(&s.state)
                .with_context(|| format!("the stored state of {} is unreadable", s.customer))?);
        }
        if page.len() < 2_000 {
            break;
        }
    }
    Ok(())
}

/// Scores `states` at `now` with the built-in scorers and the custom models (HTTP scorers asked in chunks).
async fn score_all(
    scoring: &Scoring,
    states: &[CustomerState],
    now: Timestamp,
) -> Vec<(ScoreSet, Vec<nudge_custom::ModelReport>)> {
    let custom = scoring.custom();
    let mut out = Vec::with_capacity(states.len());
    for chunk in states.chunks(256) {
        let builtin: Vec<ScoreSet> = chunk.iter().map(|s| scoring.score(s, now).0).collect();
        let prefetched = if custom.has_http() {
            let asks: Vec<(CustomerId, CustomerState, ScoreSet)> =
                chunk.iter().zip(&builtin).map(|(s, b)| (s.customer.clone(), s.clone(), b.clone())).collect();
            custom.prefetch(&asks, now).await
        } else {
            nudge_custom::Prefetched::default()
        };
        for (s, b) in chunk.iter().zip(builtin) {
            let mut served = b.clone();
            let reports = custom.apply(s, now, &mut served, &prefetched);
            out.push((b, reports));
        }
    }
    out
}

/// Builds the report over the stored states.
pub async fn build(
    store: &dyn Store,
    scoring: &Scoring,
    args: &ModelsReportArgs,
    now: OffsetDateTime,
) -> Result<ModelsReport, anyhow::Error> {
    let usage = |m: String| anyhow::Error::new(crate::report_cli::ReportError::BadInput(m));
    let custom = scoring.custom();
    let a = resolve(&args.compare[0], &custom).map_err(usage)?;
    let b = resolve(&args.compare[1], &custom).map_err(usage)?;
    let horizon_secs = nudge_policy::flows::parse_duration_secs(&args.horizon)
        .filter(|s| *s > 0)
        .ok_or_else(|| usage(format!("--horizon: `{}` is not a duration like 90d", args.horizon)))?;
    let horizon = time::Duration::seconds(horizon_secs);
    let churn = match args.outcome.as_str() {
        "churn" => true,
        "purchase" => false,
        o => return Err(usage(format!("--outcome: `{o}` is neither `churn` nor `purchase`"))),
    };
    let mut states = Vec::new();
    scan(store, |s| states.push(s)).await?;

    let scored = score_all(scoring, &states, now).await;
    let mut pairs = Vec::new();
    let mut missing = [0, 0];
    for (builtin, reports) in &scored {
        match (a.value(builtin, reports), b.value(builtin, reports)) {
            (Some(x), Some(y)) => pairs.push((x, y)),
            (x, y) => {
                missing[0] += usize::from(x.is_none());
                missing[1] += usize::from(y.is_none());
            }
        }
    }
    let agreement = compare::agreement(&pairs);

    let newest = states.iter().filter_map(|s| s.summary().last_order_at).max();
    let cutoff = match &args.cutoff {
        Some(c) => Some(
            OffsetDateTime::from_unix_timestamp(
                crate::report_cli::parse_instant("--cutoff", c, now).map_err(anyhow::Error::new)? / 1000,
            )
            .map_err(|e| usage(format!("--cutoff: {e}")))?,
        ),
        None => newest.map(|t| t - horizon),
    };
    let holdout = match cutoff {
        None => None,
        Some(cutoff) => {
            let mut calibration = Vec::new();
            let mut outcomes = Vec::new();
            for s in &states {
                let cal = calibration_state(s, cutoff);
                if cal.summary().order_count == 0 {
                    continue;
                }
                let bought =
                    s.valid_orders().any(|o| o.created_at > cutoff && o.created_at <= cutoff + horizon);
                outcomes.push(if churn { !bought } else { bought });
                calibration.push(cal);
            }
            let scored = score_all(scoring, &calibration, cutoff).await;
            let mut qa = Vec::new();
            let mut qb = Vec::new();
            for ((builtin, reports), y) in scored.iter().zip(&outcomes) {
                if let Some(v) = a.value(builtin, reports) {
                    qa.push((v, *y));
                }
                if let Some(v) = b.value(builtin, reports) {
                    qb.push((v, *y));
                }
            }
            Some(Holdout {
                cutoff: cutoff.format(&time::format_description::well_known::Rfc3339).unwrap_or_default(),
                horizon_days: horizon_secs as f64 / 86_400.0,
                outcome: args.outcome.clone(),
                a: compare::quality(&qa),
                b: compare::quality(&qb),
            })
        }
    };
    Ok(ModelsReport { a, b, customers: states.len(), missing, agreement, holdout })
}

fn name(r: &ScorerRef) -> String {
    match r {
        ScorerRef::Builtin(n) => format!("{n} (built-in)"),
        ScorerRef::Custom(n) => format!("{n} (custom)"),
    }
}

fn num(v: Option<f64>) -> String {
    v.map_or("n/a".into(), |v| format!("{v:.4}"))
}

pub fn text(r: &ModelsReport) -> String {
    let g = &r.agreement;
    let mut s = format!(
        "A = {}, B = {}\n{} stored customers; {} scored by both ({} without A, {} without B)\n\
         agreement: Pearson {}, Spearman {}, mean |A - B| {}, top-decile overlap {}\n",
        name(&r.a),
        name(&r.b),
        r.customers,
        g.n,
        r.missing[0],
        r.missing[1],
        num(g.pearson),
        num(g.spearman),
        num(g.mean_abs_diff),
        num(g.top_decile_overlap),
    );
    match &r.holdout {
        None => s.push_str("holdout: no stored orders, nothing to hold out\n"),
        Some(h) => {
            s.push_str(&format!(
                "holdout: histories cut at {}, outcome `{}` within {} days after ({} of {} customers)\n",
                h.cutoff, h.outcome, h.horizon_days, h.a.positives, h.a.n
            ));
            for (label, q) in [("A", &h.a), ("B", &h.b)] {
                s.push_str(&format!("  {label}: n {}, AUC {}, Brier {}\n", q.n, num(q.auc), num(q.brier)));
            }
        }
    }
    s
}

/// Runs `nudge report models`.
pub async fn run(cfg: &crate::config::Config, args: ModelsReportArgs) -> anyhow::Result<()> {
    let store = crate::app::open_store(cfg).await?;
    crate::privacy::init_key(cfg).context("the pseudonym key")?;
    let scoring = crate::models_cli::full_scoring(&*store, cfg).await?;
    let report = build(&*store, &scoring, &args, OffsetDateTime::now_utc()).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", text(&report));
    }
    Ok(())
}
