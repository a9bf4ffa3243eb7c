//! `nudge models fit --family propensity`: fits the abandonment and 7-day purchase propensity models on
//! the store's customer states and saves them as one registry version of family `propensity`.
//!
//! Labels come from what happened (`nudge_decide::propensity`): an order carrying a checkout or cart
//! token is a converted checkout, a checkout still open a day after its last update is abandoned; a
//! customer purchased within 7 days of a weekly reference time or not. Features are computed as of each
//! example's moment from what happened before it. Labels are as of now, or as of the store's latest
//! activity when its data ends earlier (an imported history): nothing is known after it, so the weeks
//! since are not labelled "no purchase". The examples are split by time (the latest quarter is
//! the holdout the metrics are measured on), the served coefficients are then fitted on all of them.
//! A version below the sufficiency gate (300 labelled examples and 30 of each class, for each model) is
//! saved but refused activation without `--force`; `nudge models report VERSION` prints its metrics.

use crate::config::Config;
use crate::models_cli::FitArgs;
use anyhow::{Context, anyhow, bail};
use nudge_decide::metrics::{self, Metrics};
use nudge_decide::propensity::{
    self, ABANDON_FEATURES, BODY_SCHEMA, Example, HeadBody, LabelOptions, PURCHASE_FEATURES, PropensityBody,
    PropensityModel, SufficiencyBody, TrainOptions,
};
use nudge_model::Currency;
use nudge_state::CustomerState;
use nudge_store::{ModelVersion, Store};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// Customer states read per store call.
const SCAN_PAGE: usize = 2_000;
/// The share of the examples (the latest) held out for the metrics.
const HOLDOUT_SHARE: f64 = 0.25;
/// Purchase examples at most: customers are sampled (by a hash of their id) beyond it.
const MAX_PURCHASE_EXAMPLES: usize = 500_000;
/// Below this many examples of a class a model is not fitted at all (the rules serve its score).
const MIN_TO_FIT: usize = 10;

/// Reads every stored customer state, page by page, into `f`.
async fn scan(store: &dyn Store, mut f: impl FnMut(usize, &CustomerState)) -> anyhow::Result<usize> {
    let mut after = None;
    let mut n = 0;
    loop {
        let page = store.scan_states(after.clone(), SCAN_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.customer.clone());
        for s in &page {
            let state: CustomerState = CustomerState::decode(&s.state)
                .with_context(|| format!("the stored state of {} is unreadable", s.customer))?;
            f(n, &state);
            n += 1;
        }
        if page.len() < SCAN_PAGE {
            break;
        }
    }
    Ok(n)
}

/// Whether customer `i` is in the purchase sample of one in `every`.
fn sampled(customer: &str, every: u64) -> bool {
    if every <= 1 {
        return true;
    }
    let h = customer
        .bytes()
        .fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3));
    h % every == 0
}

/// The labelled examples of the store as of `as_of`.
struct Examples {
    /// The moment the examples are labelled as of.
    as_of: nudge_model::Timestamp,
    customers: usize,
    currency: Currency,
    abandon: Vec<Example>,
    purchase: Vec<Example>,
    purchase_sample_every: u64,
}

/// The labelled examples of the store as of `now`, or as of its latest activity (an order, a checkout or a
/// browse entry) when that is earlier: what happened after a store's data ends is unknown, so an imported
/// history that stopped months ago must not label every later week as "no purchase".
async fn examples(
    store: &dyn Store,
    now: nudge_model::Timestamp,
    labels: &LabelOptions,
) -> anyhow::Result<Examples> {
    // First pass: the main currency, the customer count and the span of the data.
    let mut counts: BTreeMap<Currency, usize> = BTreeMap::new();
    let mut earliest: Option<nudge_model::Timestamp> = None;
    let mut latest: Option<nudge_model::Timestamp> = None;
    let customers = scan(store, |_, s| {
        let c = propensity::main_currency([s]);
        if !s.orders.is_empty() || !s.open_checkouts.is_empty() {
            *counts.entry(c).or_default() += 1;
        }
        for o in s.orders.values() {
            earliest = Some(earliest.map_or(o.created_at, |e| e.min(o.created_at)));
        }
        let activity = s
            .orders
            .values()
            .map(|o| o.created_at.max(o.updated_at))
            .chain(s.open_checkouts.values().map(|c| c.updated_at))
            .chain(s.browse.iter().map(|b| b.at));
        for t in activity {
            latest = Some(latest.map_or(t, |l| l.max(t)));
        }
    })
    .await?;
    if customers == 0 {
        bail!("the store has no customers yet; import history with `nudge import` first");
    }
    let as_of = latest.map_or(now, |l| l.min(now));
    let currency = counts
        .into_iter()
        .max_by_key(|&(_, n)| n)
        .map(|(c, _)| c)
        .unwrap_or_else(|| Currency::parse("USD").expect("USD is a currency code"));
    let refs = propensity::reference_times(earliest.unwrap_or(as_of), as_of, labels);
    let every = ((customers * refs.len()) as u64).div_ceil(MAX_PURCHASE_EXAMPLES as u64).max(1);
    let (mut abandon, mut purchase) = (Vec::new(), Vec::new());
    scan(store, |i, s| {
        abandon.extend(propensity::abandon_examples(i, s, as_of, labels, currency));
        if sampled(&s.customer.to_string(), every) {
            purchase.extend(propensity::purchase_examples(i, s, &refs, labels, currency));
        }
    })
    .await?;
    Ok(Examples { as_of, customers, currency, abandon, purchase, purchase_sample_every: every })
}

/// Fits one head when there is enough to fit; else why not.
fn fit_one(
    mut ex: Vec<Example>,
    idx: &[usize],
    opts: &TrainOptions,
    what: &str,
) -> (Option<HeadBody>, Option<String>) {
    let pos = ex.iter().filter(|e| e.label).count();
    let neg = ex.len() - pos;
    if pos.min(neg) < MIN_TO_FIT {
        return (None, Some(format!("{what}: {pos} positive and {neg} negative examples, too few to fit")));
    }
    let gate = propensity::sufficiency(&ex, opts, what);
    let cut = propensity::time_split(&mut ex, HOLDOUT_SHARE);
    match propensity::fit_head(&ex[..cut], &ex[cut..], idx, opts) {
        Ok((_, body)) => (Some(body), gate),
        Err(e) => (None, Some(format!("{what}: {e}"))),
    }
}

/// Fits both heads and assembles the body.
fn fit_body(ex: Examples, labels: LabelOptions) -> PropensityBody {
    let opts = TrainOptions::default();
    let digest = {
        let all: Vec<&Example> = ex.abandon.iter().chain(&ex.purchase).collect();
        propensity::data_digest(&all)
    };
    let (abandon, why_a) = fit_one(ex.abandon, &ABANDON_FEATURES, &opts, "abandonment");
    let (purchase_7d, why_p) = fit_one(ex.purchase, &PURCHASE_FEATURES, &opts, "7-day purchase");
    let reasons: Vec<String> = [why_a, why_p].into_iter().flatten().collect();
    PropensityBody {
        schema: BODY_SCHEMA,
        currency: ex.currency.as_str().to_string(),
        features: PropensityBody::feature_docs(),
        labels,
        train: opts,
        abandon,
        purchase_7d,
        data_digest: digest,
        sufficiency: SufficiencyBody {
            ok: reasons.is_empty(),
            reason: (!reasons.is_empty()).then(|| reasons.join("; ")),
        },
        customers: ex.customers as u64,
    }
}

async fn save(store: &dyn Store, body: &PropensityBody) -> anyhow::Result<String> {
    let family = nudge_decide::families::PROPENSITY;
    crate::models_cli::save_new_version(store, "p", &body.data_digest, family, serde_json::to_value(body)?)
        .await
}

pub async fn fit(cfg: &Config, args: &FitArgs) -> anyhow::Result<()> {
    if args.transactions.is_some() || args.summary.is_some() {
        bail!(
            "the propensity family is fitted on the store's customer states; --transactions and --summary do not apply"
        );
    }
    let store = crate::app::open_store(cfg).await?;
    let labels = LabelOptions::default();
    let ex = examples(&*store, time::OffsetDateTime::now_utc(), &labels).await?;
    let as_of = ex.as_of;
    eprintln!(
        "fitting abandonment propensity on {} checkouts and 7-day purchase propensity on {} customer-weeks{} \
         ({} customers), labelled as of {}…",
        ex.abandon.len(),
        ex.purchase.len(),
        if ex.purchase_sample_every > 1 {
            format!(" (one customer in {})", ex.purchase_sample_every)
        } else {
            String::new()
        },
        ex.customers,
        as_of.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
    );
    let body = tokio::task::spawn_blocking(move || fit_body(ex, labels)).await?;
    if body.abandon.is_none() && body.purchase_7d.is_none() {
        bail!(
            "no propensity model could be fitted: {}",
            body.sufficiency.reason.as_deref().unwrap_or("no labelled examples")
        );
    }
    // The body must read back as a servable model.
    let check = PropensityModel::new("unsaved", body.clone()).map_err(|e| anyhow!("{e}"))?;
    drop(check);
    let version = if args.no_save { None } else { Some(save(&*store, &body).await?) };
    let mut activated = false;
    let mut refused = None;
    if let (true, Some(id)) = (args.activate, &version) {
        if !body.sufficiency.ok && !args.force {
            refused = Some(format!(
                "version {id} was saved but not activated: it was fitted on insufficient data ({}); pass --force \
                 to activate it anyway",
                body.sufficiency.reason.as_deref().unwrap_or("too few examples")
            ));
        } else {
            store.activate_model_version(id).await?;
            activated = true;
        }
    }
    if args.json {
        let mut out = report_json(version.as_deref().unwrap_or("unsaved"), &body, activated);
        out["labelled_as_of"] = json!(as_of.format(&time::format_description::well_known::Rfc3339)?);
        println!("{}", serde_json::to_string(&out)?);
    } else {
        print!("{}", report_text(version.as_deref(), &body));
        match (&version, activated) {
            (Some(id), true) => println!("saved and activated version {id}"),
            (Some(id), false) => println!("saved version {id} (not active; `nudge models activate {id}`)"),
            (None, _) => println!("not saved (--no-save)"),
        }
    }
    match refused {
        Some(m) => Err(anyhow!(m)),
        None => Ok(()),
    }
}

fn head_json(h: &HeadBody) -> Value {
    json!({
        "features": h.features,
        "c": h.c,
        "calibration": h.calibration,
        "converged": h.converged,
        "fitted_on": h.fitted_on,
        "train": h.train,
        "holdout": h.holdout,
        "metrics": h.metrics,
        "ece_uncalibrated": h.ece_uncalibrated,
        "dropped_missing": h.dropped_missing,
    })
}

/// The fit or report of a version as JSON.
pub fn report_json(version: &str, body: &PropensityBody, active: bool) -> Value {
    json!({
        "version": version,
        "family": nudge_decide::families::PROPENSITY,
        "active": active,
        "customers": body.customers,
        "currency": body.currency,
        "data_digest": body.data_digest,
        "sufficiency": body.sufficiency,
        "abandon": body.abandon.as_ref().map(head_json),
        "purchase_7d": body.purchase_7d.as_ref().map(head_json),
    })
}

fn date(t: nudge_model::Timestamp) -> String {
    t.format(time::macros::format_description!("[year]-[month]-[day]")).unwrap_or_default()
}

fn metrics_lines(m: &Metrics) -> String {
    let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
    format!(
        "  holdout: AUC {}  PR-AUC {}  Brier {:.4}  log loss {:.4}  ECE {:.4}\n{}",
        f(m.auc),
        f(m.pr_auc),
        m.brier,
        m.log_loss,
        m.ece,
        metrics::calibration_text(&m.calibration).lines().map(|l| format!("    {l}\n")).collect::<String>()
    )
}

/// The fit or report of a version as text.
pub fn report_text(version: Option<&str>, body: &PropensityBody) -> String {
    let mut out = format!(
        "propensity version {}: {} customers, amounts in {}, data digest {}\n",
        version.unwrap_or("(unsaved)"),
        body.customers,
        body.currency,
        &body.data_digest[..16.min(body.data_digest.len())]
    );
    out.push_str(&match (&body.sufficiency.ok, &body.sufficiency.reason) {
        (true, _) => "sufficiency: ok\n".to_string(),
        (false, r) => format!("sufficiency: NOT met: {}\n", r.as_deref().unwrap_or("too few examples")),
    });
    for (name, head) in [("abandon_propensity", &body.abandon), ("purchase_propensity_7d", &body.purchase_7d)]
    {
        out.push('\n');
        let Some(h) = head else {
            out.push_str(&format!("{name}: not fitted (the rules answer it)\n"));
            continue;
        };
        out.push_str(&format!(
            "{name}: logistic on {} features, C = {}, Platt a = {:.3}, b = {:.3}{}\n",
            h.features.len(),
            h.c,
            h.calibration.a,
            h.calibration.b,
            if h.converged { "" } else { " (did NOT converge)" }
        ));
        if let (Some(tr), Some(ho)) = (&h.train, &h.holdout) {
            out.push_str(&format!(
                "  time split: train {} → {} ({} examples, {} positive), holdout {} → {} ({} examples, {} positive)\n",
                date(tr.from),
                date(tr.to),
                tr.examples,
                tr.positives,
                date(ho.from),
                date(ho.to),
                ho.examples,
                ho.positives
            ));
        }
        if let Some(m) = &h.metrics {
            out.push_str(&metrics_lines(m));
        }
        out.push_str(&format!(
            "  served fit: {} → {} ({} examples); {} dropped for a missing feature\n",
            date(h.fitted_on.from),
            date(h.fitted_on.to),
            h.fitted_on.examples,
            h.dropped_missing
        ));
    }
    out
}

/// `nudge models report VERSION` for a propensity version.
pub fn report(v: &ModelVersion, json_out: bool) -> anyhow::Result<()> {
    let model = PropensityModel::from_body(&v.id, &v.body).map_err(|e| anyhow!("{e}"))?;
    if json_out {
        println!("{}", serde_json::to_string(&report_json(&v.id, model.body(), v.active))?);
    } else {
        print!("{}", report_text(Some(&v.id), model.body()));
    }
    Ok(())
}
