//! Fit diagnostics, prediction quality and the choice of a family.
//!
//! Everything a data scientist checks before trusting a buy-till-you-die model, computed
//! from the same summaries the fit used:
//!
//! * **Calibration tracking** ([`tracking_fit`]): the expected against the actual
//!   cumulative repeat purchases inside the calibration period (weekly, as in Fader,
//!   Hardie & Lee 2005, figure 2), summarised by its largest relative deviation.
//! * **Frequency histogram** ([`frequency_fit`]): the expected against the actual number
//!   of customers with 0, 1, …, 6 and 7 or more calibration repeat purchases, with
//!   Pearson's chi-square statistic (Fader, Hardie & Lee 2005, figure 1).
//! * **Holdout log-likelihood** ([`holdout_scores`]): the log-probability each customer's
//!   actual holdout purchase count has under the model given their calibration history,
//!   [`TransactionModel::prob_k_purchases`]. It is a proper scoring rule for the whole
//!   predictive distribution of the count, unlike the mean absolute error, which is
//!   minimised by predicting the median (zero for most customers) and so rewards a
//!   family that under-predicts.
//! * **Prediction quality** ([`churn_quality`], [`spend_quality`]): how well `P(alive)`
//!   ranks the customers who did buy in the holdout (AUC and lift quality) and how
//!   calibrated the scores are, and the holdout spend error by decile.
//!
//! [`assess`] marks misfit families and [`select_family`] picks the family to serve.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use statrs::distribution::{ChiSquared, ContinuousCDF};

use crate::fit::Rfm;
use crate::gamma_gamma::GammaGamma;
use crate::holdout::{FREQUENCY_BUCKETS, TrackingPoint};
use crate::model::TransactionModel;
use crate::rfm::CustomerSummary;

/// Reads a number that may have been written as `null`: JSON has no NaN or infinity, so serde_json
/// writes non-finite floats as `null`; they read back as NaN ("not defined") instead of failing.
pub fn nan_if_null<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<f64, D::Error> {
    Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
}

/// The smallest probability a log score takes, so one impossible count cannot make a
/// family's score minus infinity (`ln 1e-300` ≈ −690.8).
const MIN_PROBABILITY: f64 = 1e-300;

/// The number of quantile groups in the calibration and spend tables.
pub const DECILES: usize = 10;

// ---------------------------------------------------------------------------------------------------------
// Frequency histogram.
// ---------------------------------------------------------------------------------------------------------

/// One bar of the calibration frequency histogram.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HistogramBucket {
    /// The number of repeat purchases; the last bucket (7) holds 7 or more.
    pub frequency: u32,
    /// The number of customers with that many repeat purchases.
    pub actual: usize,
    /// The expected number: `Σ P(X(T_i) = frequency)` over customers.
    #[serde(deserialize_with = "nan_if_null")]
    pub expected: f64,
}

/// The calibration frequency histogram, expected against actual, and its chi-square.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrequencyFit {
    /// Buckets 0, 1, …, 6 and "7 or more".
    pub buckets: Vec<HistogramBucket>,
    /// Pearson's statistic `Σ (actual − expected)² / expected` over the buckets.
    #[serde(deserialize_with = "nan_if_null")]
    pub chi_square: f64,
    /// Buckets − 1 − the family's 4 parameters.
    pub degrees_of_freedom: u32,
    /// `P(χ² ≥ chi_square)` under that many degrees of freedom.
    #[serde(deserialize_with = "nan_if_null")]
    pub p_value: f64,
}

/// The expected against the actual calibration frequency histogram of a model. Each
/// customer contributes `P(X(T) = n)` at their own age `T`, so the acquisition spread is
/// accounted for; customers sharing an age are computed once.
pub fn frequency_fit<M: TransactionModel>(model: &M, summaries: &[CustomerSummary]) -> FrequencyFit {
    let nb = FREQUENCY_BUCKETS as usize;
    let mut ages: Vec<u64> = summaries.iter().map(|s| s.t.to_bits()).collect();
    ages.par_sort_unstable();
    let mut groups: Vec<(f64, f64)> = Vec::new();
    for bits in ages {
        match groups.last_mut() {
            Some((t, n)) if t.to_bits() == bits => *n += 1.0,
            _ => groups.push((f64::from_bits(bits), 1.0)),
        }
    }
    let expected = groups
        .par_iter()
        .map(|&(t, n)| {
            let mut e = vec![0.0; nb];
            let mut below = 0.0;
            for (k, slot) in e.iter_mut().enumerate().take(nb - 1) {
                let p = model.prob_n_purchases(t, k as u32).clamp(0.0, 1.0);
                *slot = n * p;
                below += p;
            }
            e[nb - 1] = n * (1.0 - below).max(0.0);
            e
        })
        .reduce(
            || vec![0.0; nb],
            |mut a, b| {
                a.iter_mut().zip(b).for_each(|(x, y)| *x += y);
                a
            },
        );
    let mut actual = vec![0usize; nb];
    for s in summaries {
        actual[(s.frequency as usize).min(nb - 1)] += 1;
    }
    let chi_square: f64 = actual
        .iter()
        .zip(&expected)
        .map(|(&o, &e)| {
            let d = o as f64 - e;
            if e > 0.0 {
                d * d / e
            } else if o > 0 {
                f64::INFINITY
            } else {
                0.0
            }
        })
        .sum();
    let degrees_of_freedom = (nb - 1 - 4) as u32;
    let p_value = ChiSquared::new(f64::from(degrees_of_freedom))
        .map(|d| if chi_square.is_finite() { d.sf(chi_square) } else { 0.0 })
        .unwrap_or(f64::NAN);
    FrequencyFit {
        buckets: (0..nb)
            .map(|k| HistogramBucket { frequency: k as u32, actual: actual[k], expected: expected[k] })
            .collect(),
        chi_square,
        degrees_of_freedom,
        p_value,
    }
}

// ---------------------------------------------------------------------------------------------------------
// Calibration tracking.
// ---------------------------------------------------------------------------------------------------------

/// How closely the expected cumulative repeat purchases follow the actual ones inside the
/// calibration period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TrackingFit {
    /// The largest gap between the predicted and the actual cumulative repeat purchases over
    /// the calibration periods, as a share of the actual cumulative count at the end of the
    /// last calibration period; signed, so a positive value means the model runs above.
    #[serde(deserialize_with = "nan_if_null")]
    pub max_relative_deviation: f64,
    /// The last day of the period where that gap was found.
    pub at_day: i32,
    /// The actual cumulative repeat purchases at the end of the last calibration period.
    #[serde(deserialize_with = "nan_if_null")]
    pub actual_at_end: f64,
    /// The predicted cumulative repeat purchases there.
    #[serde(deserialize_with = "nan_if_null")]
    pub predicted_at_end: f64,
    /// The number of calibration periods.
    pub periods: usize,
}

/// Summarises a tracking series (from [`crate::tracking_series`]) over the periods that end
/// on or before `calibration_end`: the largest `|predicted − actual|` as a share of the
/// actual count at the end of the last of them. The gap is measured against the end count,
/// not each period's own count, because the first weeks hold few repeat purchases and a
/// ratio there swings with a handful of them (on CDNOW the published BG/NBD fit runs 15–20 %
/// under the actual count in weeks 2–12, about 120 purchases against 2,404 at the end).
/// `None` when no period ends inside the calibration period or nobody made a repeat
/// purchase in it.
pub fn tracking_fit(points: &[TrackingPoint], calibration_end: i32) -> Option<TrackingFit> {
    let cal: Vec<&TrackingPoint> = points.iter().filter(|p| p.end_day <= calibration_end).collect();
    let last = *cal.last()?;
    if last.actual <= 0.0 {
        return None;
    }
    let worst = cal
        .iter()
        .map(|p| ((p.predicted - p.actual) / last.actual, p.end_day))
        .max_by(|a, b| a.0.abs().total_cmp(&b.0.abs()))?;
    Some(TrackingFit {
        max_relative_deviation: worst.0,
        at_day: worst.1,
        actual_at_end: last.actual,
        predicted_at_end: last.predicted,
        periods: cal.len(),
    })
}

// ---------------------------------------------------------------------------------------------------------
// Per-customer holdout predictions.
// ---------------------------------------------------------------------------------------------------------

/// Each customer's predictions for the holdout period, in the order of the summaries.
#[derive(Debug, Clone, PartialEq)]
pub struct HoldoutScores {
    /// `P(alive at T)`.
    pub p_alive: Vec<f64>,
    /// `P(at least one purchase in the holdout | history)`.
    pub p_purchase: Vec<f64>,
    /// `E[X(T, T + holdout) | history]`.
    pub expected: Vec<f64>,
    /// `ln P(X(T, T + holdout) = actual count | history)`.
    pub log_score: Vec<f64>,
}

impl HoldoutScores {
    /// The mean log score per customer (higher is better).
    pub fn mean_log_score(&self) -> f64 {
        self.log_score.iter().sum::<f64>() / self.log_score.len().max(1) as f64
    }
}

/// Every customer's holdout predictions under a model. Given alive, the count distribution
/// and its mean depend on `(x, T)` (and the count) only, so they are computed once per
/// distinct pair or triple; only `P(alive)` is computed per customer.
pub fn holdout_scores<M: TransactionModel>(model: &M, summaries: &[CustomerSummary]) -> HoldoutScores {
    // (x, T, k) for the observed count and for k = 0; the k = 0 entry also carries the mean.
    let mut keys: Vec<(u32, u64, u32)> = summaries
        .par_iter()
        .flat_map_iter(|s| {
            let key = (s.frequency, s.t.to_bits(), 0);
            [key, (s.frequency, s.t.to_bits(), s.frequency_holdout)]
        })
        .collect();
    keys.par_sort_unstable();
    keys.dedup();
    let tau = summaries.first().map_or(0.0, |s| s.duration_holdout);
    let if_alive: Vec<(f64, f64)> = keys
        .par_iter()
        .map(|&(x, t, k)| {
            let age = f64::from_bits(t);
            let p = model.prob_k_purchases_if_alive(tau, k, x, age).clamp(0.0, 1.0);
            let mean = if k == 0 { model.expected_purchases_if_alive(tau, x, age) } else { f64::NAN };
            (p, mean)
        })
        .collect();
    let lookup = |x: u32, t: f64, k: u32| {
        let i = keys.binary_search(&(x, t.to_bits(), k)).expect("every key was computed");
        if_alive[i]
    };
    // P(alive) depends on (x, t_x, T) only: once per distinct history (most customers share one).
    let mut histories: Vec<(u32, u64, u64)> =
        summaries.par_iter().map(|s| (s.frequency, s.recency.to_bits(), s.t.to_bits())).collect();
    histories.par_sort_unstable();
    histories.dedup();
    let alive_of: Vec<f64> = histories
        .par_iter()
        .map(|&(x, tx, t)| model.p_alive(&Rfm::new(x, f64::from_bits(tx), f64::from_bits(t))).clamp(0.0, 1.0))
        .collect();
    let rows: Vec<(f64, f64, f64, f64)> = summaries
        .par_iter()
        .map(|s| {
            let h = (s.frequency, s.recency.to_bits(), s.t.to_bits());
            let alive = alive_of[histories.binary_search(&h).expect("every history was computed")];
            let (p0, mean) = lookup(s.frequency, s.t, 0);
            let none = (1.0 - alive) + alive * p0;
            let k = s.frequency_holdout;
            let p = if k == 0 { none } else { alive * lookup(s.frequency, s.t, k).0 };
            (alive, (1.0 - none).clamp(0.0, 1.0), alive * mean, p.max(MIN_PROBABILITY).ln())
        })
        .collect();
    let mut out = HoldoutScores {
        p_alive: Vec::with_capacity(rows.len()),
        p_purchase: Vec::with_capacity(rows.len()),
        expected: Vec::with_capacity(rows.len()),
        log_score: Vec::with_capacity(rows.len()),
    };
    for (a, p, e, l) in rows {
        out.p_alive.push(a);
        out.p_purchase.push(p);
        out.expected.push(e);
        out.log_score.push(l);
    }
    out
}

// ---------------------------------------------------------------------------------------------------------
// Prediction quality.
// ---------------------------------------------------------------------------------------------------------

/// One row of the calibration table: customers grouped by `P(alive)`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationRow {
    /// 1 for the lowest `P(alive)` tenth, 10 for the highest.
    pub decile: u32,
    pub customers: usize,
    #[serde(deserialize_with = "nan_if_null")]
    pub min_p_alive: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub max_p_alive: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub mean_p_alive: f64,
    /// The mean predicted probability of at least one holdout purchase.
    #[serde(deserialize_with = "nan_if_null")]
    pub mean_p_purchase: f64,
    /// The share who did purchase in the holdout.
    #[serde(deserialize_with = "nan_if_null")]
    pub observed_share: f64,
}

/// How well the churn score separates the customers who came back in the holdout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ChurnQuality {
    pub customers: usize,
    /// Customers with at least one holdout purchase.
    pub purchasers: usize,
    /// `purchasers / customers`.
    #[serde(deserialize_with = "nan_if_null")]
    pub base_rate: f64,
    /// The area under the ROC curve of `P(alive)` (= 1 − churn risk / 100) for "made at
    /// least one holdout purchase"; ties count one half. 0.5 is random, 1 perfect.
    #[serde(deserialize_with = "nan_if_null")]
    pub auc_p_alive: f64,
    /// Lift quality of `P(alive)` (Piatetsky-Shapiro & Steingold 2000; Braze's "prediction
    /// quality"): the area between the cumulative-gains curve and the random diagonal as
    /// a share of the perfect model's, averaging the lift over every audience size; 0 is
    /// random, 1 perfect. Equal to `2 · AUC − 1`.
    #[serde(deserialize_with = "nan_if_null")]
    pub lift_quality: f64,
    /// The AUC of the model's predicted probability of a holdout purchase.
    #[serde(deserialize_with = "nan_if_null")]
    pub auc_p_purchase: f64,
    /// The mean squared error of that probability against the 0/1 outcome.
    #[serde(deserialize_with = "nan_if_null")]
    pub brier_p_purchase: f64,
    /// Customers in ten equal groups by `P(alive)`, lowest first.
    pub calibration: Vec<CalibrationRow>,
}

/// The prediction quality of the churn score on the holdout period.
pub fn churn_quality(scores: &HoldoutScores, summaries: &[CustomerSummary]) -> ChurnQuality {
    let y: Vec<bool> = summaries.iter().map(|s| s.frequency_holdout > 0).collect();
    let n = y.len();
    let purchasers = y.iter().filter(|&&b| b).count();
    let brier =
        scores.p_purchase.iter().zip(&y).map(|(p, &b)| (p - f64::from(u8::from(b))).powi(2)).sum::<f64>()
            / n.max(1) as f64;
    let auc_p_alive = auc(&scores.p_alive, &y);
    let mut order: Vec<usize> = (0..n).collect();
    order.par_sort_unstable_by(|&a, &b| scores.p_alive[a].total_cmp(&scores.p_alive[b]));
    let calibration = quantile_groups(n)
        .into_iter()
        .enumerate()
        .filter(|(_, r)| !r.is_empty())
        .map(|(d, range)| {
            let idx = &order[range];
            let m = idx.len() as f64;
            let mean = |v: &[f64]| idx.iter().map(|&i| v[i]).sum::<f64>() / m;
            CalibrationRow {
                decile: d as u32 + 1,
                customers: idx.len(),
                min_p_alive: scores.p_alive[idx[0]],
                max_p_alive: scores.p_alive[idx[idx.len() - 1]],
                mean_p_alive: mean(&scores.p_alive),
                mean_p_purchase: mean(&scores.p_purchase),
                observed_share: idx.iter().filter(|&&i| y[i]).count() as f64 / m,
            }
        })
        .collect();
    ChurnQuality {
        customers: n,
        purchasers,
        base_rate: purchasers as f64 / n.max(1) as f64,
        auc_p_alive,
        // Equal to the area from the gains curve (`lift_quality`), without sorting again.
        lift_quality: 2.0 * auc_p_alive - 1.0,
        auc_p_purchase: auc(&scores.p_purchase, &y),
        brier_p_purchase: brier,
        calibration,
    }
}

/// Splits `0..n` into [`DECILES`] consecutive ranges of (nearly) equal size.
fn quantile_groups(n: usize) -> Vec<std::ops::Range<usize>> {
    (0..DECILES).map(|d| d * n / DECILES..(d + 1) * n / DECILES).collect()
}

/// Groups of tied scores in ascending order, as `(positives, negatives)`.
fn tie_groups(score: &[f64], y: &[bool]) -> Vec<(f64, f64)> {
    let mut pairs: Vec<(f64, bool)> = score.iter().copied().zip(y.iter().copied()).collect();
    pairs.par_sort_unstable_by(|a, b| a.0.total_cmp(&b.0));
    let mut groups: Vec<(f64, f64)> = Vec::new();
    let mut last: Option<f64> = None;
    for (s, b) in pairs {
        if last != Some(s) {
            groups.push((0.0, 0.0));
            last = Some(s);
        }
        let g = groups.last_mut().expect("a group was pushed");
        if b { g.0 += 1.0 } else { g.1 += 1.0 }
    }
    groups
}

/// The area under the ROC curve (the Mann-Whitney probability that a random positive
/// scores above a random negative, ties counting one half). NaN without both classes.
pub fn auc(score: &[f64], y: &[bool]) -> f64 {
    let groups = tie_groups(score, y);
    let (pos, neg) = groups.iter().fold((0.0, 0.0), |a, g| (a.0 + g.0, a.1 + g.1));
    if pos == 0.0 || neg == 0.0 {
        return f64::NAN;
    }
    let mut below = 0.0;
    let mut wins = 0.0;
    for (p, n) in groups {
        wins += p * (below + 0.5 * n);
        below += n;
    }
    wins / (pos * neg)
}

/// Lift quality from the cumulative-gains curve: customers ordered by descending score
/// (tied customers in random order, so the curve is straight across a tie), the area
/// under the curve of "share of purchasers reached" against "share of customers
/// targeted", rescaled so that random targeting (area 1/2) gives 0 and perfect
/// targeting (area `1 − base_rate / 2`) gives 1. NaN without both classes.
pub fn lift_quality(score: &[f64], y: &[bool]) -> f64 {
    let groups = tie_groups(score, y);
    let (pos, neg) = groups.iter().fold((0.0, 0.0), |a, g| (a.0 + g.0, a.1 + g.1));
    if pos == 0.0 || neg == 0.0 {
        return f64::NAN;
    }
    let total = pos + neg;
    let (mut x, mut gain, mut area) = (0.0, 0.0, 0.0);
    for (p, n) in groups.into_iter().rev() {
        let dx = (p + n) / total;
        let dy = p / pos;
        area += dx * (gain + 0.5 * dy);
        x += dx;
        gain += dy;
    }
    debug_assert!((x - 1.0).abs() < 1e-9);
    let base = pos / total;
    (area - 0.5) / (0.5 - base / 2.0)
}

/// One group of the holdout spend table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpendRow {
    /// 1 for the lowest predicted holdout spend tenth, 10 for the highest.
    pub decile: u32,
    pub customers: usize,
    /// The mean predicted holdout spend.
    #[serde(deserialize_with = "nan_if_null")]
    pub predicted_mean: f64,
    /// The mean actual holdout spend.
    #[serde(deserialize_with = "nan_if_null")]
    pub actual_mean: f64,
    /// `predicted_mean / actual_mean − 1` (NaN when nobody in the group spent).
    #[serde(deserialize_with = "nan_if_null")]
    pub relative_error: f64,
}

/// The holdout spend error of the lifetime-value prediction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SpendQuality {
    #[serde(deserialize_with = "nan_if_null")]
    pub predicted_total: f64,
    #[serde(deserialize_with = "nan_if_null")]
    pub actual_total: f64,
    /// `predicted_total / actual_total − 1`.
    #[serde(deserialize_with = "nan_if_null")]
    pub relative_error: f64,
    /// Customers in ten equal groups by predicted holdout spend, lowest first.
    pub deciles: Vec<SpendRow>,
}

/// The predicted holdout spend of each customer — expected holdout purchases times the
/// Gamma-Gamma expected spend per purchase, the two factors of the lifetime value —
/// against the actual (holdout purchase days times their mean amount), by decile.
pub fn spend_quality(
    scores: &HoldoutScores,
    spend: &GammaGamma,
    summaries: &[CustomerSummary],
) -> SpendQuality {
    let predicted: Vec<f64> = summaries
        .iter()
        .zip(&scores.expected)
        .map(|(s, e)| e * spend.conditional_expected_spend(s.frequency, s.monetary_value))
        .collect();
    let actual: Vec<f64> =
        summaries.iter().map(|s| f64::from(s.frequency_holdout) * s.monetary_value_holdout).collect();
    let mut order: Vec<usize> = (0..summaries.len()).collect();
    order.par_sort_unstable_by(|&a, &b| predicted[a].total_cmp(&predicted[b]));
    let ratio = |p: f64, a: f64| if a > 0.0 { p / a - 1.0 } else { f64::NAN };
    let deciles = quantile_groups(order.len())
        .into_iter()
        .enumerate()
        .filter(|(_, r)| !r.is_empty())
        .map(|(d, range)| {
            let idx = &order[range];
            let m = idx.len() as f64;
            let p = idx.iter().map(|&i| predicted[i]).sum::<f64>() / m;
            let a = idx.iter().map(|&i| actual[i]).sum::<f64>() / m;
            SpendRow {
                decile: d as u32 + 1,
                customers: idx.len(),
                predicted_mean: p,
                actual_mean: a,
                relative_error: ratio(p, a),
            }
        })
        .collect();
    let (pt, at) = (predicted.iter().sum::<f64>(), actual.iter().sum::<f64>());
    SpendQuality { predicted_total: pt, actual_total: at, relative_error: ratio(pt, at), deciles }
}

// ---------------------------------------------------------------------------------------------------------
// Misfit families and the choice of one.
// ---------------------------------------------------------------------------------------------------------

/// When a family is refused as misfit.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MisfitRules {
    /// The largest tolerated `|predicted / actual − 1|` of the calibration tracking.
    #[serde(deserialize_with = "nan_if_null")]
    pub max_tracking_deviation: f64,
    /// A family whose histogram chi-square exceeds this multiple of the best family's
    /// (and is significant at the 0.1 % level) is misfit.
    #[serde(deserialize_with = "nan_if_null")]
    pub max_chi_square_ratio: f64,
}

impl Default for MisfitRules {
    fn default() -> Self {
        MisfitRules { max_tracking_deviation: 0.10, max_chi_square_ratio: 3.0 }
    }
}

/// What the selection knows about one fitted family.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FamilyCheck {
    /// The family name (`"bgnbd"`, `"mbgnbd"`, `"pareto_nbd"`).
    pub model: String,
    /// Whether the fit converged to an interior optimum with plausible parameters.
    pub trusted: bool,
    /// Finite log-likelihood and parameters away from the edge of the parameter space.
    pub plausible: bool,
    /// The calibration log-likelihood (total).
    #[serde(deserialize_with = "nan_if_null")]
    pub loglik: f64,
    /// The mean holdout log score per customer, when there is a holdout.
    pub holdout_log_score: Option<f64>,
    /// The aggregate holdout error `predicted total / actual total − 1`, when there is a holdout.
    #[serde(default)]
    pub holdout_error: Option<f64>,
    /// The calibration tracking summary, when transactions with dates were available.
    pub tracking: Option<TrackingFit>,
    /// The calibration frequency histogram.
    pub frequency: Option<FrequencyFit>,
    /// Why the family is misfit; `None` when it is not.
    pub misfit: Option<String>,
}

/// The significance level below which a chi-square counts as a misfit candidate.
const CHI_SQUARE_ALPHA: f64 = 0.001;

/// Marks misfit families: calibration tracking off by more than the bound, or a
/// histogram chi-square both significant and more than the allowed multiple of the best
/// family's.
pub fn assess(checks: &mut [FamilyCheck], rules: &MisfitRules) {
    let best_chi = checks
        .iter()
        .filter_map(|c| c.frequency.as_ref().map(|f| f.chi_square))
        .filter(|v| v.is_finite())
        .fold(f64::INFINITY, f64::min);
    for c in checks.iter_mut() {
        let mut reasons = Vec::new();
        if let Some(t) = &c.tracking
            && t.max_relative_deviation.abs() > rules.max_tracking_deviation
        {
            reasons.push(format!(
                "calibration tracking off by {:+.1}% (bound ±{:.1}%)",
                100.0 * t.max_relative_deviation,
                100.0 * rules.max_tracking_deviation
            ));
        }
        if let Some(f) = &c.frequency
            && f.p_value < CHI_SQUARE_ALPHA
            && (!f.chi_square.is_finite() || f.chi_square > rules.max_chi_square_ratio * best_chi)
        {
            reasons.push(format!(
                "frequency histogram chi-square {:.1} is {:.1}× the best family's {:.1} (bound {:.1}×)",
                f.chi_square,
                f.chi_square / best_chi,
                best_chi,
                rules.max_chi_square_ratio
            ));
        }
        c.misfit = if reasons.is_empty() { None } else { Some(reasons.join("; ")) };
    }
}

/// The family chosen to serve, and why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Selection {
    /// The family name; empty when nothing was fitted.
    pub selected: String,
    /// The criterion, the winning value and the margins over the others.
    pub because: String,
    /// `true` when every candidate was misfit, so the selected one is too.
    pub misfit: bool,
}

/// A family whose aggregate holdout error is above this share, and above
/// [`AGGREGATE_ERROR_RATIO`] times the smallest among the candidates, is set aside.
pub const AGGREGATE_ERROR_FLOOR: f64 = 0.05;
/// See [`AGGREGATE_ERROR_FLOOR`].
pub const AGGREGATE_ERROR_RATIO: f64 = 1.5;

/// A tier of candidates: the note added to the reason, and who belongs to it.
type Tier<'a> = (&'a str, &'a dyn Fn(&FamilyCheck) -> bool);

/// Chooses the family to serve.
///
/// 1. Candidates: plausible fits that are not misfit, converged ones first (a tier is used
///    only when the one before is empty; only when every plausible fit is misfit is a
///    misfit family chosen, and [`Selection::misfit`] says so).
/// 2. With a holdout, the aggregate check: a candidate whose holdout total is off by more
///    than [`AGGREGATE_ERROR_FLOOR`] and by more than [`AGGREGATE_ERROR_RATIO`] times the
///    best candidate's error is set aside, so the served family also gets the total right.
/// 3. The highest mean holdout log-likelihood among the rest (a proper scoring rule of the
///    whole count distribution); without a holdout, the highest calibration
///    log-likelihood (the families have four parameters each, so this equals choosing by
///    AIC or BIC).
pub fn select_family(checks: &[FamilyCheck]) -> Selection {
    let holdout = checks.iter().any(|c| c.holdout_log_score.is_some());
    let value =
        |c: &FamilyCheck| if holdout { c.holdout_log_score.unwrap_or(f64::NEG_INFINITY) } else { c.loglik };
    let error = |c: &FamilyCheck| c.holdout_error.map_or(f64::INFINITY, f64::abs);
    let tiers: [Tier<'_>; 4] = [
        ("", &|c| c.trusted && c.misfit.is_none()),
        (" (no fit that is not misfit met the convergence test)", &|c| c.plausible && c.misfit.is_none()),
        (" — every family is MISFIT", &|c| c.plausible),
        (" — every fit is degenerate, the data is too thin for these models", &|_| true),
    ];
    for (note, keep) in tiers {
        let pool: Vec<&FamilyCheck> = checks.iter().filter(|c| keep(c)).collect();
        if pool.is_empty() {
            continue;
        }
        let best_error = pool.iter().map(|c| error(c)).fold(f64::INFINITY, f64::min);
        let limit = (AGGREGATE_ERROR_RATIO * best_error).max(AGGREGATE_ERROR_FLOOR);
        let accurate = |c: &FamilyCheck| !holdout || !best_error.is_finite() || error(c) <= limit;
        let best = pool
            .iter()
            .filter(|c| accurate(c))
            .max_by(|a, b| value(a).total_cmp(&value(b)))
            .expect("the candidate with the smallest error passes the aggregate check");
        let criterion = if holdout {
            "highest holdout log-likelihood per customer"
        } else {
            "highest calibration log-likelihood"
        };
        let fmt = |v: f64| if holdout { format!("{v:.5}") } else { format!("{v:.2}") };
        let mut because = format!("{criterion} ({}", fmt(value(best)));
        if let Some(e) = best.holdout_error {
            because.push_str(&format!(", holdout total {:+.1}%", 100.0 * e));
        }
        for other in checks.iter().filter(|c| c.model != best.model) {
            let in_pool = pool.iter().any(|c| c.model == other.model);
            let why = match &other.misfit {
                Some(m) => format!(", misfit: {m}"),
                None if !other.plausible => ", degenerate fit".to_string(),
                None if !other.trusted && !in_pool => ", not converged".to_string(),
                None if in_pool && !accurate(other) => format!(
                    ", set aside: holdout total {:+.1}% against the best candidate's {:.1}%",
                    100.0 * other.holdout_error.unwrap_or(f64::NAN),
                    100.0 * best_error
                ),
                None => String::new(),
            };
            because.push_str(&format!(
                "; {} {} by {}{why}",
                other.model,
                if value(other) <= value(best) { "behind" } else { "ahead" },
                fmt((value(best) - value(other)).abs())
            ));
        }
        because.push(')');
        because.push_str(note);
        return Selection { selected: best.model.clone(), because, misfit: best.misfit.is_some() };
    }
    Selection { selected: String::new(), because: "no fit".to_string(), misfit: false }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BgNbd, MbgNbd, ParetoNbd};

    fn check_pmf<M: TransactionModel>(m: &M) {
        for c in [
            Rfm::new(0, 0.0, 30.0),
            Rfm::new(2, 20.0, 38.0),
            Rfm::new(7, 10.0, 52.0),
            Rfm::new(25, 50.0, 52.0),
        ] {
            for t in [4.0, 39.0] {
                let probs: Vec<f64> = (0..400).map(|k| m.prob_k_purchases(t, k, &c)).collect();
                let total: f64 = probs.iter().sum();
                let mean: f64 = probs.iter().enumerate().map(|(k, p)| k as f64 * p).sum();
                let want = m.conditional_expected_purchases(t, &c);
                assert!((total - 1.0).abs() < 1e-7, "{} {c:?} t={t}: total {total}", M::NAME);
                assert!(
                    (mean - want).abs() < 1e-6 * want.max(1.0),
                    "{} {c:?} t={t}: mean {mean} vs {want}",
                    M::NAME
                );
                assert!(probs.iter().all(|p| (0.0..=1.0 + 1e-12).contains(p)));
            }
        }
    }

    #[test]
    fn holdout_count_distributions_sum_to_one_with_the_conditional_mean() {
        check_pmf(&BgNbd { r: 0.243, alpha: 4.414, a: 0.793, b: 2.426 });
        check_pmf(&MbgNbd { r: 0.525, alpha: 6.183, a: 0.891, b: 1.614 });
        check_pmf(&ParetoNbd { r: 0.553, alpha: 10.578, s: 0.606, beta: 11.669 });
    }

    #[test]
    fn undefined_figures_survive_a_json_round_trip() {
        let row = SpendRow {
            decile: 1,
            customers: 3,
            predicted_mean: 0.5,
            actual_mean: 0.0,
            relative_error: f64::NAN,
        };
        let text = serde_json::to_string(&row).unwrap();
        assert!(text.contains("\"relative_error\":null"), "{text}");
        let back: SpendRow = serde_json::from_str(&text).unwrap();
        assert!(back.relative_error.is_nan());
        assert_eq!(back.predicted_mean, 0.5);
    }

    #[test]
    fn auc_and_lift_quality_agree_and_handle_ties() {
        let score = [0.9, 0.8, 0.8, 0.3, 0.3, 0.1, 0.5, 0.5];
        let y = [true, true, false, true, false, false, false, true];
        let a = auc(&score, &y);
        // Brute force: pairs (positive, negative), ties one half.
        let (mut wins, mut pairs) = (0.0, 0.0);
        for i in 0..8 {
            for j in 0..8 {
                if y[i] && !y[j] {
                    pairs += 1.0;
                    wins += if score[i] > score[j] {
                        1.0
                    } else if score[i] == score[j] {
                        0.5
                    } else {
                        0.0
                    };
                }
            }
        }
        assert!((a - wins / pairs).abs() < 1e-12);
        assert!((lift_quality(&score, &y) - (2.0 * a - 1.0)).abs() < 1e-12);
        let perfect = [1.0, 1.0, 0.0, 0.0];
        let yp = [true, true, false, false];
        assert_eq!(auc(&perfect, &yp), 1.0);
        assert!((lift_quality(&perfect, &yp) - 1.0).abs() < 1e-12);
        assert!((lift_quality(&[0.5; 4], &yp)).abs() < 1e-12);
        assert!(auc(&[0.5; 2], &[true, true]).is_nan());
    }

    fn family(name: &str, score: f64, misfit: bool) -> FamilyCheck {
        FamilyCheck {
            model: name.into(),
            trusted: true,
            plausible: true,
            loglik: -100.0,
            holdout_log_score: Some(score),
            holdout_error: Some(0.02),
            tracking: None,
            frequency: None,
            misfit: misfit.then(|| "calibration tracking off".to_string()),
        }
    }

    #[test]
    fn selection_skips_misfit_families_and_names_margins() {
        let s = select_family(&[
            family("bgnbd", -0.50, false),
            family("pareto_nbd", -0.40, true),
            family("mbgnbd", -0.49, false),
        ]);
        assert_eq!(s.selected, "mbgnbd");
        assert!(!s.misfit);
        assert!(s.because.contains("holdout log-likelihood"), "{}", s.because);
        assert!(s.because.contains("bgnbd behind by 0.01000"), "{}", s.because);
        assert!(s.because.contains("pareto_nbd ahead by 0.09000, misfit"), "{}", s.because);
        let all_bad = select_family(&[family("bgnbd", -0.5, true), family("pareto_nbd", -0.4, true)]);
        assert_eq!(all_bad.selected, "pareto_nbd");
        assert!(all_bad.misfit);
        // A better log score does not win when the holdout total is far off.
        let mut off = family("mbgnbd", -0.45, false);
        off.holdout_error = Some(0.30);
        let s = select_family(&[family("bgnbd", -0.5, false), off]);
        assert_eq!(s.selected, "bgnbd");
        assert!(s.because.contains("set aside: holdout total +30.0%"), "{}", s.because);
    }

    #[test]
    fn assess_applies_the_tracking_bound_and_the_chi_square_ratio() {
        let hist = |chi: f64| FrequencyFit {
            buckets: vec![],
            chi_square: chi,
            degrees_of_freedom: 3,
            p_value: if chi > 16.3 { 1e-4 } else { 0.5 },
        };
        let track = |dev: f64| TrackingFit {
            max_relative_deviation: dev,
            at_day: 0,
            actual_at_end: 100.0,
            predicted_at_end: 100.0,
            periods: 10,
        };
        let mut checks = vec![
            family("bgnbd", -0.5, false),
            family("mbgnbd", -0.5, false),
            family("pareto_nbd", -0.5, false),
        ];
        checks[0].tracking = Some(track(0.05));
        checks[0].frequency = Some(hist(20.0));
        checks[1].tracking = Some(track(-0.12));
        checks[1].frequency = Some(hist(50.0));
        checks[2].tracking = Some(track(0.02));
        checks[2].frequency = Some(hist(70.0));
        assess(&mut checks, &MisfitRules::default());
        assert_eq!(checks[0].misfit, None);
        assert!(checks[1].misfit.as_deref().unwrap().contains("-12.0%"), "{:?}", checks[1].misfit);
        assert!(checks[2].misfit.as_deref().unwrap().contains("3.5×"), "{:?}", checks[2].misfit);
        // A chi-square that is not significant never makes a family misfit.
        let mut calm = vec![family("bgnbd", -0.5, false), family("mbgnbd", -0.5, false)];
        calm[0].frequency = Some(hist(0.5));
        calm[1].frequency = Some(hist(5.0));
        assess(&mut calm, &MisfitRules::default());
        assert!(calm.iter().all(|c| c.misfit.is_none()));
    }
}
