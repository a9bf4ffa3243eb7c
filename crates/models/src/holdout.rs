//! Holdout validation: fit each transaction-model family on the calibration period,
//! compare predicted and actual holdout purchases (and their distribution, by the
//! holdout log-likelihood), pick the best family, and build
//! the cumulative repeat-transaction tracking series (as in Fader, Hardie & Lee 2005,
//! figure 2).
//!
//! Results are plain serialisable structs for display; no printing or plotting here.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::bgnbd::{BgNbd, MbgNbd};
use crate::diagnostics::{ChurnQuality, SpendQuality, churn_quality, holdout_scores, spend_quality};
use crate::error::{Error, Result};
use crate::fit::{Family, FitOptions, Rfm};
use crate::gamma_gamma::GammaGamma;
use crate::model::TransactionModel;
use crate::pareto::ParetoNbd;
use crate::rfm::{CustomerSummary, Transaction};

/// Calibration frequencies are grouped as 0, 1, …, 6 and "7 or more".
pub const FREQUENCY_BUCKETS: u32 = 8;

/// Mean holdout purchases of the customers with one calibration frequency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrequencyBucket {
    /// The calibration frequency; the last bucket (7) holds every frequency of 7 or more.
    pub frequency: u32,
    /// The number of customers in the bucket.
    pub customers: usize,
    /// The mean actual number of holdout purchases.
    #[serde(deserialize_with = "crate::diagnostics::nan_if_null")]
    pub actual_mean: f64,
    /// The mean predicted number of holdout purchases.
    #[serde(deserialize_with = "crate::diagnostics::nan_if_null")]
    pub predicted_mean: f64,
}

/// How one fitted family did on the holdout period.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelHoldout {
    /// The family name (`"bgnbd"`, `"mbgnbd"` or `"pareto_nbd"`).
    pub model: String,
    /// The fitted parameters in the family's order (`r, alpha, a, b` or `r, alpha, s, beta`).
    pub params: Vec<f64>,
    /// The calibration log-likelihood.
    #[serde(deserialize_with = "crate::diagnostics::nan_if_null")]
    pub loglik: f64,
    /// Whether the fit converged.
    pub converged: bool,
    /// The total predicted number of holdout purchases.
    #[serde(deserialize_with = "crate::diagnostics::nan_if_null")]
    pub predicted_total: f64,
    /// The total actual number of holdout purchases.
    #[serde(deserialize_with = "crate::diagnostics::nan_if_null")]
    pub actual_total: f64,
    /// The mean absolute per-customer error of the holdout purchase count (descriptive: it
    /// rewards predicting zero for a mostly-zero count, so it does not choose the family).
    #[serde(deserialize_with = "crate::diagnostics::nan_if_null")]
    pub mae: f64,
    /// The root mean squared per-customer error of the holdout purchase count.
    #[serde(deserialize_with = "crate::diagnostics::nan_if_null")]
    pub rmse: f64,
    /// The mean log-probability of each customer's actual holdout count under the model,
    /// given the calibration history: the holdout log-likelihood per customer, a proper
    /// scoring rule and the selection criterion. Absent in reports made before it existed.
    #[serde(default)]
    pub log_score: Option<f64>,
    /// Predicted against actual by calibration frequency.
    pub by_frequency: Vec<FrequencyBucket>,
    /// How well `P(alive)` ranks and predicts the customers who purchased in the holdout.
    #[serde(default)]
    pub quality: Option<ChurnQuality>,
    /// The holdout spend error of the lifetime value's two factors (with a spend model).
    #[serde(default)]
    pub spend: Option<SpendQuality>,
}

/// The comparison of all families.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HoldoutComparison {
    /// One entry per family that could be fitted.
    pub models: Vec<ModelHoldout>,
    /// The family with the highest holdout log-likelihood per customer (before misfit
    /// families are set aside; see [`crate::diagnostics::select_family`]).
    pub best: String,
}

/// Scores one fitted model against the holdout counts; with a spend model, also the
/// holdout spend.
pub fn evaluate_holdout<M: TransactionModel>(
    model: &M,
    params: Vec<f64>,
    loglik: f64,
    converged: bool,
    summaries: &[CustomerSummary],
    spend: Option<&GammaGamma>,
) -> ModelHoldout {
    let scores = holdout_scores(model, summaries);
    let n = summaries.len().max(1) as f64;
    let mut buckets = vec![(0usize, 0.0, 0.0); FREQUENCY_BUCKETS as usize];
    let (mut abs, mut sq, mut pt, mut at) = (0.0, 0.0, 0.0, 0.0);
    for (s, &p) in summaries.iter().zip(&scores.expected) {
        let a = f64::from(s.frequency_holdout);
        let e = p - a;
        abs += e.abs();
        sq += e * e;
        pt += p;
        at += a;
        let b = &mut buckets[s.frequency.min(FREQUENCY_BUCKETS - 1) as usize];
        b.0 += 1;
        b.1 += a;
        b.2 += p;
    }
    ModelHoldout {
        model: M::NAME.to_string(),
        params,
        loglik,
        converged,
        predicted_total: pt,
        actual_total: at,
        mae: abs / n,
        rmse: (sq / n).sqrt(),
        log_score: Some(scores.mean_log_score()),
        by_frequency: buckets
            .into_iter()
            .enumerate()
            .map(|(f, (c, a, p))| FrequencyBucket {
                frequency: f as u32,
                customers: c,
                actual_mean: if c > 0 { a / c as f64 } else { 0.0 },
                predicted_mean: if c > 0 { p / c as f64 } else { 0.0 },
            })
            .collect(),
        quality: Some(churn_quality(&scores, summaries)),
        spend: spend.map(|g| spend_quality(&scores, g, summaries)),
    }
}

/// The family with the highest holdout log score.
pub fn best_by_log_score(models: &[ModelHoldout]) -> Option<String> {
    models
        .iter()
        .max_by(|a, b| {
            a.log_score.unwrap_or(f64::NEG_INFINITY).total_cmp(&b.log_score.unwrap_or(f64::NEG_INFINITY))
        })
        .map(|m| m.model.clone())
}

/// Fits BG/NBD, MBG/NBD and Pareto/NBD on the calibration part of the summaries and
/// compares their holdout predictions. Families whose fit fails are left out; an error
/// is returned only if none can be fitted or the summaries have no holdout period.
pub fn compare_holdout(summaries: &[CustomerSummary], opts: &FitOptions) -> Result<HoldoutComparison> {
    if summaries.iter().all(|s| s.duration_holdout <= 0.0) {
        return Err(Error::InvalidInput("the summaries have no holdout period".into()));
    }
    let data: Vec<Rfm> = summaries.iter().map(Rfm::from).collect();
    let mut models = Vec::new();
    if let Ok(f) = BgNbd::fit(&data, opts) {
        let p = f.params;
        models.push(evaluate_holdout(&p, Family::to_vec(&p), f.loglik, f.converged, summaries, None));
    }
    if let Ok(f) = MbgNbd::fit(&data, opts) {
        let p = f.params;
        models.push(evaluate_holdout(&p, Family::to_vec(&p), f.loglik, f.converged, summaries, None));
    }
    if let Ok(f) = ParetoNbd::fit(&data, opts) {
        let p = f.params;
        models.push(evaluate_holdout(&p, Family::to_vec(&p), f.loglik, f.converged, summaries, None));
    }
    let best = best_by_log_score(&models)
        .ok_or_else(|| Error::FitFailed("no model family could be fitted".into()))?;
    Ok(HoldoutComparison { models, best })
}

/// One point of the cumulative repeat-transaction tracking series.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrackingPoint {
    /// The period index, counted from 1 for the period ending `step_days` after the
    /// earliest first purchase (period `k` covers days up to `start + k·step_days`).
    pub period: u32,
    /// The last day (inclusive) of the period.
    pub end_day: i32,
    /// The actual cumulative number of repeat purchase days up to `end_day`.
    pub actual: f64,
    /// The predicted cumulative number of repeat purchases up to `end_day`.
    pub predicted: f64,
}

/// The cumulative repeat-transaction series from the earliest first purchase to `end_day`
/// in steps of `step_days` (7 for a weekly series); the last period is cut short at
/// `end_day` when the span is not a whole number of steps.
///
/// The prediction sums `E[X(t)]` over cohorts of customers sharing a first-purchase day,
/// with `t` the time since that day in the model's unit; the actual series counts the
/// repeat purchase days (same-day purchases merged, first purchase excluded) of the
/// summarised customers. Only customers present in `summaries` are counted.
pub fn tracking_series<M: TransactionModel>(
    model: &M,
    transactions: &[Transaction],
    summaries: &[CustomerSummary],
    end_day: i32,
    step_days: i32,
) -> Vec<TrackingPoint> {
    let actual = ActualRepeats::count(transactions, summaries, end_day, step_days);
    actual.track(model, summaries)
}

/// The actual cumulative repeat purchase days per period, which every family's tracking series
/// shares: count them once with [`ActualRepeats::count`], then [`ActualRepeats::track`] each model.
#[derive(Debug, Clone)]
pub struct ActualRepeats {
    start: i32,
    step: i32,
    end_day: i32,
    /// Repeat purchase days in each period (index 0 unused).
    per_period: Vec<f64>,
}

impl ActualRepeats {
    /// Counts the repeat purchase days (same-day purchases merged, first purchase excluded) of the
    /// summarised customers in periods of `step_days` from the earliest first purchase to `end_day`.
    pub fn count(
        transactions: &[Transaction],
        summaries: &[CustomerSummary],
        end_day: i32,
        step_days: i32,
    ) -> Self {
        let start = summaries.iter().map(|s| s.first_day).min().unwrap_or(end_day);
        let step = step_days.max(1);
        let periods = (((end_day - start).max(0) + step - 1) / step) as usize;
        let mut customer_first: Vec<(u64, i32)> =
            summaries.iter().map(|s| (s.customer, s.first_day)).collect();
        customer_first.sort_unstable();
        let mut days: Vec<(u64, i32)> =
            transactions.par_iter().filter(|t| t.day <= end_day).map(|t| (t.customer, t.day)).collect();
        days.par_sort_unstable();
        days.dedup();
        let mut per_period = vec![0.0; periods + 1];
        for &(c, d) in &days {
            let Ok(i) = customer_first.binary_search_by(|p| p.0.cmp(&c)) else {
                continue;
            };
            if d > customer_first[i].1 {
                let k = ((d - start) + step - 1) / step;
                if (k as usize) <= periods {
                    per_period[k as usize] += 1.0;
                }
            }
        }
        ActualRepeats { start, step, end_day, per_period }
    }

    /// The tracking series of one model against these counts.
    pub fn track<M: TransactionModel>(&self, model: &M, summaries: &[CustomerSummary]) -> Vec<TrackingPoint> {
        if summaries.is_empty() {
            return Vec::new();
        }
        let (start, step) = (self.start, self.step);
        let periods = self.per_period.len() - 1;
        let unit_days = summaries[0].unit.days();
        // Cohort sizes by first-purchase day.
        let mut cohorts: Vec<(i32, f64)> = Vec::new();
        let mut firsts: Vec<i32> = summaries.iter().map(|s| s.first_day).collect();
        firsts.sort_unstable();
        for d in firsts {
            match cohorts.last_mut() {
                Some((day, n)) if *day == d => *n += 1.0,
                _ => cohorts.push((d, 1.0)),
            }
        }
        let mut actual = 0.0;
        (1..=periods)
            .map(|k| {
                let end = (start + (k as i32) * step).min(self.end_day);
                actual += self.per_period[k];
                let predicted = cohorts
                    .par_iter()
                    .filter(|(d, _)| *d < end)
                    .map(|&(d, n)| n * model.expected_purchases(f64::from(end - d) / unit_days))
                    .sum();
                TrackingPoint { period: k as u32, end_day: end, actual, predicted }
            })
            .collect()
    }
}
