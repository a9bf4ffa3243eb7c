//! Metrics of a probabilistic binary classifier: ranking (ROC AUC, PR-AUC as average precision),
//! accuracy of the probabilities (Brier score, log loss) and calibration (expected calibration error over
//! ten equal-width bins, and the calibration table behind it).
//!
//! Definitions follow scikit-learn's (`roc_auc_score`, `average_precision_score`, `brier_score_loss`,
//! `log_loss`, `calibration_curve` with `strategy="uniform"`); `tests/metrics_reference.rs` checks them
//! against values it computed.

use crate::DecideError;
use serde::{Deserialize, Serialize};

/// The number of equal-width bins of the calibration table and the ECE.
pub const CALIBRATION_BINS: usize = 10;

/// One bin of the calibration table: predictions in `(lower, upper]` (the first bin includes 0).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CalibrationBin {
    pub lower: f64,
    pub upper: f64,
    pub count: u64,
    /// The mean predicted probability in the bin (`None` when empty).
    pub mean_predicted: Option<f64>,
    /// The share of positives in the bin (`None` when empty).
    pub observed_rate: Option<f64>,
}

/// Every metric of one evaluation.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub examples: u64,
    pub positives: u64,
    /// `None` when only one class is present.
    pub auc: Option<f64>,
    /// Average precision; `None` without positives.
    pub pr_auc: Option<f64>,
    pub brier: f64,
    pub log_loss: f64,
    /// Expected calibration error: per-bin |mean predicted − observed rate|, weighted by bin count.
    pub ece: f64,
    pub calibration: Vec<CalibrationBin>,
}

impl Metrics {
    /// Computes every metric. Labels are `true` for the positive class; probabilities must be in [0, 1].
    pub fn evaluate(labels: &[bool], probs: &[f64]) -> Result<Metrics, DecideError> {
        check(labels, probs)?;
        if probs.iter().any(|p| !(0.0..=1.0).contains(p)) {
            return Err(DecideError::Input("probabilities must lie in [0, 1]".into()));
        }
        let calibration = calibration_table(labels, probs, CALIBRATION_BINS)?;
        Ok(Metrics {
            examples: labels.len() as u64,
            positives: labels.iter().filter(|&&y| y).count() as u64,
            auc: roc_auc(labels, probs)?,
            pr_auc: average_precision(labels, probs)?,
            brier: brier(labels, probs)?,
            log_loss: log_loss(labels, probs)?,
            ece: ece_of_table(&calibration, labels.len()),
            calibration,
        })
    }
}

fn check(labels: &[bool], scores: &[f64]) -> Result<(), DecideError> {
    if labels.len() != scores.len() {
        return Err(DecideError::Input(format!("{} labels but {} scores", labels.len(), scores.len())));
    }
    if labels.is_empty() {
        return Err(DecideError::Input("no examples to evaluate".into()));
    }
    if scores.iter().any(|s| !s.is_finite()) {
        return Err(DecideError::Input("a score is not a finite number".into()));
    }
    Ok(())
}

/// Indices of the scores in ascending order (ties in input order).
fn ascending(scores: &[f64]) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..scores.len()).collect();
    idx.sort_by(|&a, &b| scores[a].total_cmp(&scores[b]));
    idx
}

/// Area under the ROC curve: the Mann–Whitney statistic with tied scores given their average rank.
/// `None` when the labels hold a single class (the area is undefined).
pub fn roc_auc(labels: &[bool], scores: &[f64]) -> Result<Option<f64>, DecideError> {
    check(labels, scores)?;
    let pos = labels.iter().filter(|&&y| y).count();
    let neg = labels.len() - pos;
    if pos == 0 || neg == 0 {
        return Ok(None);
    }
    let idx = ascending(scores);
    let mut rank_sum_pos = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && scores[idx[j + 1]] == scores[idx[i]] {
            j += 1;
        }
        // Ranks i+1 ..= j+1 share their average.
        let avg_rank = (i + j + 2) as f64 / 2.0;
        let tied_pos = idx[i..=j].iter().filter(|&&k| labels[k]).count();
        rank_sum_pos += avg_rank * tied_pos as f64;
        i = j + 1;
    }
    let (p, n) = (pos as f64, neg as f64);
    Ok(Some((rank_sum_pos - p * (p + 1.0) / 2.0) / (p * n)))
}

/// Average precision, scikit-learn's PR-AUC: Σₙ (Rₙ − Rₙ₋₁)·Pₙ over the distinct score thresholds,
/// highest first (no interpolation). `None` without positives.
pub fn average_precision(labels: &[bool], scores: &[f64]) -> Result<Option<f64>, DecideError> {
    check(labels, scores)?;
    let total_pos = labels.iter().filter(|&&y| y).count();
    if total_pos == 0 {
        return Ok(None);
    }
    let mut idx = ascending(scores);
    idx.reverse();
    let (mut tp, mut fp) = (0usize, 0usize);
    let mut prev_recall = 0.0;
    let mut ap = 0.0;
    let mut i = 0;
    while i < idx.len() {
        let s = scores[idx[i]];
        while i < idx.len() && scores[idx[i]] == s {
            if labels[idx[i]] {
                tp += 1;
            } else {
                fp += 1;
            }
            i += 1;
        }
        let recall = tp as f64 / total_pos as f64;
        let precision = tp as f64 / (tp + fp) as f64;
        ap += (recall - prev_recall) * precision;
        prev_recall = recall;
    }
    Ok(Some(ap))
}

/// Mean squared difference between the probability and the outcome (0 or 1).
pub fn brier(labels: &[bool], probs: &[f64]) -> Result<f64, DecideError> {
    check(labels, probs)?;
    let s: f64 = labels.iter().zip(probs).map(|(&y, &p)| (p - f64::from(u8::from(y))).powi(2)).sum();
    Ok(s / labels.len() as f64)
}

/// Mean negative log-likelihood, probabilities clipped to [ε, 1 − ε] with ε the f64 machine epsilon.
pub fn log_loss(labels: &[bool], probs: &[f64]) -> Result<f64, DecideError> {
    check(labels, probs)?;
    let eps = f64::EPSILON;
    let s: f64 = labels
        .iter()
        .zip(probs)
        .map(|(&y, &p)| {
            let p = p.clamp(eps, 1.0 - eps);
            if y { -p.ln() } else { -(1.0 - p).ln() }
        })
        .sum();
    Ok(s / labels.len() as f64)
}

/// The bin of a probability among `bins` equal-width bins of [0, 1], as scikit-learn's
/// `calibration_curve` bins: the number of inner edges `i/bins` strictly below `p`, so a probability on an
/// edge falls in the lower bin (0 in the first, 1 in the last).
pub fn bin_of(p: f64, bins: usize) -> usize {
    let step = 1.0 / bins as f64;
    (1..bins).take_while(|&i| i as f64 * step < p).count()
}

/// The calibration table over `bins` equal-width bins (empty bins are kept, with no means).
pub fn calibration_table(
    labels: &[bool],
    probs: &[f64],
    bins: usize,
) -> Result<Vec<CalibrationBin>, DecideError> {
    check(labels, probs)?;
    if bins == 0 {
        return Err(DecideError::Input("the calibration table needs at least one bin".into()));
    }
    let mut count = vec![0u64; bins];
    let mut sum_p = vec![0.0; bins];
    let mut sum_y = vec![0.0; bins];
    for (&y, &p) in labels.iter().zip(probs) {
        let b = bin_of(p, bins);
        count[b] += 1;
        sum_p[b] += p;
        sum_y[b] += f64::from(u8::from(y));
    }
    Ok((0..bins)
        .map(|b| {
            let n = count[b] as f64;
            CalibrationBin {
                lower: b as f64 / bins as f64,
                upper: (b + 1) as f64 / bins as f64,
                count: count[b],
                mean_predicted: (count[b] > 0).then(|| sum_p[b] / n),
                observed_rate: (count[b] > 0).then(|| sum_y[b] / n),
            }
        })
        .collect())
}

fn ece_of_table(table: &[CalibrationBin], n: usize) -> f64 {
    table
        .iter()
        .filter_map(|b| {
            let gap = (b.mean_predicted? - b.observed_rate?).abs();
            Some(gap * b.count as f64 / n as f64)
        })
        .sum()
}

/// Expected calibration error over [`CALIBRATION_BINS`] equal-width bins, weighted by bin count.
pub fn ece(labels: &[bool], probs: &[f64]) -> Result<f64, DecideError> {
    let table = calibration_table(labels, probs, CALIBRATION_BINS)?;
    Ok(ece_of_table(&table, labels.len()))
}

/// The calibration table as aligned text (one line per non-empty bin).
pub fn calibration_text(table: &[CalibrationBin]) -> String {
    let mut out = format!("{:<11} {:>8} {:>10} {:>9}\n", "bin", "count", "predicted", "observed");
    for b in table.iter().filter(|b| b.count > 0) {
        out.push_str(&format!(
            "{:<11} {:>8} {:>10.3} {:>9.3}\n",
            format!("{:.1}–{:.1}", b.lower, b.upper),
            b.count,
            b.mean_predicted.unwrap_or(f64::NAN),
            b.observed_rate.unwrap_or(f64::NAN)
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_of_a_perfect_and_a_reversed_ranking() {
        let y = [false, false, true, true];
        assert_eq!(roc_auc(&y, &[0.1, 0.2, 0.8, 0.9]).unwrap(), Some(1.0));
        assert_eq!(roc_auc(&y, &[0.9, 0.8, 0.2, 0.1]).unwrap(), Some(0.0));
        assert_eq!(roc_auc(&y, &[0.5; 4]).unwrap(), Some(0.5));
        assert_eq!(roc_auc(&[true, true], &[0.1, 0.2]).unwrap(), None);
    }

    #[test]
    fn bad_input_is_refused() {
        assert!(roc_auc(&[true], &[0.1, 0.2]).is_err());
        assert!(brier(&[], &[]).is_err());
        assert!(Metrics::evaluate(&[true, false], &[1.5, 0.2]).is_err());
        assert!(log_loss(&[true], &[f64::NAN]).is_err());
    }

    #[test]
    fn probability_one_falls_in_the_last_bin() {
        assert_eq!(bin_of(1.0, 10), 9);
        assert_eq!(bin_of(0.0, 10), 0);
        assert_eq!(bin_of(0.25, 10), 2);
        assert_eq!(bin_of(0.1, 10), 0);
        assert_eq!(bin_of(0.1000001, 10), 1);
    }
}
