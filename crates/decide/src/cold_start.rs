//! A new customer's 12-month value before their first order: empirical Bayes over what is known when
//! they are first seen (acquisition source, first product category, country, device).
//!
//! **Target.** For a customer first seen at least [`HORIZON_DAYS`] before the fit, the sum of their valid
//! orders' totals in the [`HORIZON_DAYS`] from first seen (zero when they never ordered).
//!
//! **Model.** An additive random-effects model: `value = μ + Σ_f δ_f(level) + ε`, one effect per fact `f`
//! (levels trimmed and lower-cased; an unknown fact contributes no effect). Fitted by backfitting: each
//! fact's effects are its levels' mean residuals (after the other facts' effects) shrunk toward zero by
//! `n / (n + k_f)`, where `n` is the level's customers and the strength `k_f = σ²_within / τ²_f` comes
//! from the one-way method-of-moments (ANOVA) estimate of the between-level variance `τ²_f` and the
//! pooled within-level variance `σ²_within` of those residuals (`τ² ≤ 0` gives no effect at all). A
//! level seen by few customers stays near the population mean; a large level keeps its own mean.
//!
//! **Serving.** Only for customers without a valid order and only when no `predicted_clv` is in the set
//! (the BTYD estimate replaces it as orders arrive). Without any acquisition fact the answer is the
//! population mean, and the explanation says so. The rules fallback (no version active) adds nothing:
//! there is no honest constant for "a new customer's value" that is not fitted on the store's own data, so
//! no `predicted_clv` is written for customers without orders until a `cold_start` version is active.

use crate::serve::StateModel;
use crate::{DecideError, families, names};
use nudge_model::{Score, ScoreSet, Timestamp};
use nudge_state::CustomerState;
use nudge_state::offers::Acquisition;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use std::collections::BTreeMap;

/// The facts the model reads, in the order of the explanation.
pub const FEATURES: [&str; 4] = ["source", "first_category", "country", "device"];
/// The value's horizon.
pub const HORIZON_DAYS: i64 = 365;
/// The rules fallback's version label.
pub const RULES_VERSION: &str = "rules-cold-start-v1";
/// The model id on the score.
pub const MODEL_ID: &str = "cold_start";
/// Backfitting rounds.
const ROUNDS: usize = 25;

/// One fact of a customer's acquisition, normalised (trimmed, lower-cased; `None` when unknown).
pub fn fact(a: &Acquisition, feature: &str) -> Option<String> {
    let v = match feature {
        "source" => a.source.as_deref(),
        "first_category" => a.first_category.as_deref(),
        "country" => a.country.as_deref(),
        "device" => a.device.as_deref(),
        _ => None,
    }?;
    let v = v.trim().to_lowercase();
    (!v.is_empty()).then_some(v)
}

/// The labelled rules fallback: adds nothing (see the module documentation).
pub struct RulesColdStart;

impl StateModel for RulesColdStart {
    fn family(&self) -> &'static str {
        families::COLD_START
    }
    fn version(&self) -> &str {
        RULES_VERSION
    }
    fn score(&self, _state: &CustomerState, _now: Timestamp, _out: &mut ScoreSet) {}
}

/// One level's figures.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Level {
    /// Training customers at this level.
    pub n: u64,
    /// Their mean residual (after the other facts' effects), before shrinkage.
    pub raw: f64,
    /// The shrunk effect added to the population mean.
    pub effect: f64,
}

/// One fact's table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureTable {
    /// `k = σ²_within / τ²` (`null` when τ² ≤ 0: no effect).
    pub strength: Option<f64>,
    pub between_variance: f64,
    pub within_variance: f64,
    pub levels: BTreeMap<String, Level>,
}

/// What a `cold_start` version stores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ColdStartBody {
    pub population_mean: f64,
    pub horizon_days: i64,
    pub tables: BTreeMap<String, FeatureTable>,
    pub features: Vec<String>,
    pub training_window: Value,
    pub data_digest: String,
    pub metrics: Value,
    pub sufficiency: Value,
}

/// The fitted cold-start model (registry family `cold_start`).
#[derive(Debug, Clone, PartialEq)]
pub struct ColdStartModel {
    pub version_id: String,
    pub body: ColdStartBody,
}

impl ColdStartModel {
    pub fn from_body(version_id: &str, body: &Value) -> Result<ColdStartModel, DecideError> {
        let body: ColdStartBody = serde_json::from_value(body.clone())
            .map_err(|e| DecideError::Body(format!("cold_start: {e}")))?;
        if !body.population_mean.is_finite()
            || body.tables.values().flat_map(|t| t.levels.values()).any(|l| !l.effect.is_finite())
        {
            return Err(DecideError::Body("cold_start: a mean or effect is not a finite number".into()));
        }
        if let Some(f) = body.tables.keys().find(|f| !FEATURES.contains(&f.as_str())) {
            return Err(DecideError::Body(format!("cold_start: unknown fact {f:?}")));
        }
        Ok(ColdStartModel { version_id: version_id.to_string(), body })
    }

    pub fn to_body(&self) -> Value {
        serde_json::to_value(&self.body).unwrap_or(Value::Null)
    }

    /// The prediction for these facts and the parts it is made of (`fact=level`, effect).
    pub fn predict(&self, a: Option<&Acquisition>) -> (f64, Vec<(String, f64)>) {
        let mut v = self.body.population_mean;
        let mut parts = Vec::new();
        if let Some(a) = a {
            for f in FEATURES {
                let (Some(level), Some(t)) = (fact(a, f), self.body.tables.get(f)) else { continue };
                if let Some(l) = t.levels.get(&level) {
                    v += l.effect;
                    parts.push((format!("{f}={level}"), l.effect));
                }
            }
        }
        (v.max(0.0), parts)
    }
}

impl StateModel for ColdStartModel {
    fn family(&self) -> &'static str {
        families::COLD_START
    }
    fn version(&self) -> &str {
        &self.version_id
    }
    fn score(&self, state: &CustomerState, _now: Timestamp, out: &mut ScoreSet) {
        if out.get(names::PREDICTED_CLV).is_some() || state.orders.values().any(|o| !o.cancelled) {
            return;
        }
        let (value, parts) = self.predict(state.acquisition.as_ref());
        let mean = self.body.population_mean;
        let explanation = if parts.is_empty() {
            format!(
                "no orders and no known acquisition fact the model has seen: the population mean {mean:.2}"
            )
        } else {
            let terms: Vec<String> = parts.iter().map(|(k, e)| format!("{k} {e:+.2}")).collect();
            format!("no orders yet: population mean {mean:.2}, {}", terms.join(", "))
        };
        out.scores.push(Score {
            name: names::PREDICTED_CLV.into(),
            value: (value * 100.0).round() / 100.0,
            model_id: MODEL_ID.into(),
            model_version: self.version_id.clone(),
            explanation,
        });
    }
}

/// A training row: the facts (by [`FEATURES`] index) and the value.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub facts: [Option<String>; 4],
    pub value: f64,
    pub first_seen_at: Timestamp,
}

/// The examples of customers whose horizon is complete at `now`.
pub fn examples(states: &[&CustomerState], now: Timestamp) -> Vec<Example> {
    let horizon = time::Duration::days(HORIZON_DAYS);
    states
        .iter()
        .filter_map(|s| {
            let a = s.acquisition.as_ref()?;
            let seen = a.first_seen_at?;
            if seen + horizon > now {
                return None;
            }
            let value = s
                .valid_orders()
                .filter(|o| o.created_at >= seen && o.created_at < seen + horizon)
                .map(|o| o.total.to_f64())
                .sum();
            Some(Example { facts: FEATURES.map(|f| fact(a, f)), value, first_seen_at: seen })
        })
        .collect()
}

/// Fits the tables on examples by backfitting (see the module documentation).
pub fn fit_tables(rows: &[Example]) -> Result<(f64, BTreeMap<String, FeatureTable>), DecideError> {
    if rows.is_empty() {
        return Err(DecideError::Insufficient("no customers to fit on".into()));
    }
    let n = rows.len() as f64;
    let mu = rows.iter().map(|r| r.value).sum::<f64>() / n;
    // Level index of each row per fact.
    let mut names: Vec<Vec<String>> = vec![Vec::new(); FEATURES.len()];
    let mut idx: Vec<Vec<Option<usize>>> = vec![Vec::with_capacity(rows.len()); FEATURES.len()];
    for (f, names) in names.iter_mut().enumerate() {
        let mut map: BTreeMap<&str, usize> = BTreeMap::new();
        for r in rows {
            let i = r.facts[f].as_deref().map(|l| {
                *map.entry(l).or_insert_with(|| {
                    names.push(l.to_string());
                    names.len() - 1
                })
            });
            idx[f].push(i);
        }
    }
    let mut effects: Vec<Vec<f64>> = names.iter().map(|l| vec![0.0; l.len()]).collect();
    let mut tables: BTreeMap<String, FeatureTable> = BTreeMap::new();
    for round in 0..ROUNDS {
        for f in 0..FEATURES.len() {
            let levels = names[f].len();
            if levels == 0 {
                continue;
            }
            let mut sum = vec![0.0; levels];
            let mut sq = vec![0.0; levels];
            let mut cnt = vec![0.0; levels];
            for (i, r) in rows.iter().enumerate() {
                let Some(l) = idx[f][i] else { continue };
                let others: f64 = (0..FEATURES.len())
                    .filter(|g| *g != f)
                    .filter_map(|g| idx[g][i].map(|k| effects[g][k]))
                    .sum();
                let resid = r.value - mu - others;
                sum[l] += resid;
                sq[l] += resid * resid;
                cnt[l] += 1.0;
            }
            let total: f64 = cnt.iter().sum();
            let grand = sum.iter().sum::<f64>() / total;
            let means: Vec<f64> = (0..levels).map(|l| sum[l] / cnt[l]).collect();
            let ssw: f64 = (0..levels).map(|l| sq[l] - cnt[l] * means[l] * means[l]).sum();
            let ssb: f64 = (0..levels).map(|l| cnt[l] * (means[l] - grand).powi(2)).sum();
            let within = if total > levels as f64 { ssw / (total - levels as f64) } else { 0.0 };
            let between = if levels > 1 {
                let n0 = (total - cnt.iter().map(|c| c * c).sum::<f64>() / total) / (levels as f64 - 1.0);
                ((ssb / (levels as f64 - 1.0) - within) / n0).max(0.0)
            } else {
                0.0
            };
            let strength = (between > 0.0).then(|| within / between);
            for l in 0..levels {
                effects[f][l] = match strength {
                    Some(k) => cnt[l] / (cnt[l] + k) * (means[l] - grand),
                    None => 0.0,
                };
            }
            if round + 1 == ROUNDS {
                tables.insert(
                    FEATURES[f].to_string(),
                    FeatureTable {
                        strength,
                        between_variance: between,
                        within_variance: within,
                        levels: (0..levels)
                            .map(|l| {
                                (
                                    names[f][l].clone(),
                                    Level { n: cnt[l] as u64, raw: means[l] - grand, effect: effects[f][l] },
                                )
                            })
                            .collect(),
                    },
                );
            }
        }
    }
    Ok((mu, tables))
}

/// What a fit needs.
#[derive(Debug, Clone, PartialEq)]
pub struct ColdStartFitOptions {
    /// Customers with a complete horizon needed (the sufficiency gate).
    pub min_customers: usize,
    /// The newest share of complete customers (by first-seen time) held out for the metric.
    pub holdout_share: f64,
}

impl Default for ColdStartFitOptions {
    fn default() -> Self {
        ColdStartFitOptions { min_customers: 50, holdout_share: 0.2 }
    }
}

/// Mean absolute error of predictions.
fn mae(rows: &[Example], predict: impl Fn(&Example) -> f64) -> f64 {
    rows.iter().map(|r| (predict(r) - r.value).abs()).sum::<f64>() / rows.len().max(1) as f64
}

fn predict_row(mu: f64, tables: &BTreeMap<String, FeatureTable>, r: &Example) -> f64 {
    let mut v = mu;
    for (f, name) in FEATURES.iter().enumerate() {
        if let (Some(level), Some(t)) = (r.facts[f].as_deref(), tables.get(*name))
            && let Some(l) = t.levels.get(level)
        {
            v += l.effect;
        }
    }
    v.max(0.0)
}

/// Fits on customer states at `now`: the metric fits on the older customers with a complete horizon and
/// measures the MAE on the newest [`ColdStartFitOptions::holdout_share`] of them against their training
/// mean; the served tables are then fitted on all of them.
pub fn fit(
    states: &[&CustomerState],
    now: Timestamp,
    opts: &ColdStartFitOptions,
) -> Result<ColdStartBody, DecideError> {
    if !(0.0..1.0).contains(&opts.holdout_share) {
        return Err(DecideError::Input(format!("holdout share {} is not in [0, 1)", opts.holdout_share)));
    }
    let mut rows = examples(states, now);
    if rows.is_empty() {
        return Err(DecideError::Insufficient(format!(
            "no customer was first seen {HORIZON_DAYS} days or more before now with a known first-seen time"
        )));
    }
    rows.sort_by(|a, b| a.first_seen_at.cmp(&b.first_seen_at).then(a.value.total_cmp(&b.value)));
    let cut = ((rows.len() as f64) * (1.0 - opts.holdout_share)).round() as usize;
    let metrics = if cut >= 2 && cut < rows.len() {
        let (train, test) = rows.split_at(cut);
        let (mu, tables) = fit_tables(train)?;
        let model = mae(test, |r| predict_row(mu, &tables, r));
        let baseline = mae(test, |_| mu);
        json!({"holdout_customers": test.len(), "mae": model, "population_mean_mae": baseline,
            "mae_reduction": if baseline > 0.0 { Some(1.0 - model / baseline) } else { None }})
    } else {
        json!({"holdout_customers": 0})
    };
    let (mu, tables) = fit_tables(&rows)?;
    use sha2::Digest;
    let mut d = sha2::Sha256::default();
    for r in &rows {
        for f in &r.facts {
            d.update(f.as_deref().unwrap_or("\u{0}").as_bytes());
            d.update([0xff]);
        }
        d.update(r.value.to_le_bytes());
        d.update(r.first_seen_at.unix_timestamp().to_le_bytes());
    }
    let ok = rows.len() >= opts.min_customers;
    let fmt_day = |t: Timestamp| t.date().to_string();
    Ok(ColdStartBody {
        population_mean: mu,
        horizon_days: HORIZON_DAYS,
        tables,
        features: FEATURES.iter().map(|f| format!("acquisition.{f}")).collect(),
        training_window: json!({
            "first_seen_from": rows.first().map(|r| fmt_day(r.first_seen_at)),
            "first_seen_to": rows.last().map(|r| fmt_day(r.first_seen_at)),
            "horizon_days": HORIZON_DAYS,
        }),
        data_digest: d.finalize().iter().map(|b| format!("{b:02x}")).collect(),
        metrics,
        sufficiency: json!({"ok": ok, "customers": rows.len(), "min_customers": opts.min_customers,
            "reason": if ok { Value::Null } else { json!(format!("{} customers with a complete {HORIZON_DAYS}-day horizon ({} needed)", rows.len(), opts.min_customers)) }}),
    })
}
