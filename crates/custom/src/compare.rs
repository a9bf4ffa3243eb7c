//! Comparing two scorers over the same customers: agreement (correlations, mean absolute difference, top
//! decile overlap) and holdout quality (AUC and Brier score against an observed 0/1 outcome). Pure.

use serde::Serialize;

/// How two scorers agree on the customers both scored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Agreement {
    /// Customers both scored.
    pub n: usize,
    pub pearson: Option<f64>,
    pub spearman: Option<f64>,
    pub mean_abs_diff: Option<f64>,
    /// Of the customers in A's top decile (the highest 10 %, at least one), the share also in B's.
    pub top_decile_overlap: Option<f64>,
}

/// Agreement of paired scores.
pub fn agreement(pairs: &[(f64, f64)]) -> Agreement {
    let n = pairs.len();
    if n == 0 {
        return Agreement { n, pearson: None, spearman: None, mean_abs_diff: None, top_decile_overlap: None };
    }
    let a: Vec<f64> = pairs.iter().map(|p| p.0).collect();
    let b: Vec<f64> = pairs.iter().map(|p| p.1).collect();
    let mad = pairs.iter().map(|(x, y)| (x - y).abs()).sum::<f64>() / n as f64;
    Agreement {
        n,
        pearson: pearson(&a, &b),
        spearman: pearson(&ranks(&a), &ranks(&b)),
        mean_abs_diff: Some(mad),
        top_decile_overlap: Some(top_overlap(&a, &b)),
    }
}

/// Pearson's correlation; `None` with fewer than two values or a constant side.
pub fn pearson(a: &[f64], b: &[f64]) -> Option<f64> {
    let n = a.len();
    if n < 2 || n != b.len() {
        return None;
    }
    let ma = a.iter().sum::<f64>() / n as f64;
    let mb = b.iter().sum::<f64>() / n as f64;
    let (mut sab, mut saa, mut sbb) = (0.0, 0.0, 0.0);
    for (x, y) in a.iter().zip(b) {
        sab += (x - ma) * (y - mb);
        saa += (x - ma) * (x - ma);
        sbb += (y - mb) * (y - mb);
    }
    (saa > 0.0 && sbb > 0.0).then(|| sab / (saa * sbb).sqrt())
}

/// Ranks from 1, ties given their average rank.
pub fn ranks(v: &[f64]) -> Vec<f64> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    idx.sort_by(|&i, &j| v[i].total_cmp(&v[j]));
    let mut r = vec![0.0; v.len()];
    let mut i = 0;
    while i < idx.len() {
        let mut j = i;
        while j + 1 < idx.len() && v[idx[j + 1]] == v[idx[i]] {
            j += 1;
        }
        let avg = (i + j) as f64 / 2.0 + 1.0;
        for k in &idx[i..=j] {
            r[*k] = avg;
        }
        i = j + 1;
    }
    r
}

fn top_set(v: &[f64], k: usize) -> Vec<usize> {
    let mut idx: Vec<usize> = (0..v.len()).collect();
    // Highest first; ties by position so the set is deterministic.
    idx.sort_by(|&i, &j| v[j].total_cmp(&v[i]).then(i.cmp(&j)));
    idx.truncate(k);
    idx.sort_unstable();
    idx
}

fn top_overlap(a: &[f64], b: &[f64]) -> f64 {
    let k = (a.len() / 10).max(1);
    let ta = top_set(a, k);
    let tb = top_set(b, k);
    let both = ta.iter().filter(|i| tb.binary_search(i).is_ok()).count();
    both as f64 / k as f64
}

/// A score's quality against an observed outcome.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Quality {
    pub n: usize,
    /// Customers with the outcome.
    pub positives: usize,
    /// The probability that a random customer with the outcome scores higher than one without (ties
    /// count half); `None` when one class is empty.
    pub auc: Option<f64>,
    /// Mean squared error of the score as a probability of the outcome; `None` unless every score is in
    /// [0, 1].
    pub brier: Option<f64>,
}

/// AUC and Brier score of `scores` for the 0/1 `outcomes`.
pub fn quality(scored: &[(f64, bool)]) -> Quality {
    let n = scored.len();
    let positives = scored.iter().filter(|s| s.1).count();
    let negatives = n - positives;
    let auc = (positives > 0 && negatives > 0).then(|| {
        let values: Vec<f64> = scored.iter().map(|s| s.0).collect();
        let r = ranks(&values);
        let sum_pos: f64 = scored.iter().zip(&r).filter(|(s, _)| s.1).map(|(_, r)| r).sum();
        let p = positives as f64;
        (sum_pos - p * (p + 1.0) / 2.0) / (p * negatives as f64)
    });
    let brier = (n > 0 && scored.iter().all(|s| (0.0..=1.0).contains(&s.0)))
        .then(|| scored.iter().map(|(p, y)| (p - f64::from(u8::from(*y))).powi(2)).sum::<f64>() / n as f64);
    Quality { n, positives, auc, brier }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn correlations_and_overlap() {
        let pairs: Vec<(f64, f64)> = (0..20).map(|i| (i as f64, (i * i) as f64)).collect();
        let a = agreement(&pairs);
        assert_eq!(a.n, 20);
        assert!((a.spearman.unwrap() - 1.0).abs() < 1e-12, "monotone: Spearman 1");
        assert!(a.pearson.unwrap() < 0.99 && a.pearson.unwrap() > 0.9);
        assert_eq!(a.top_decile_overlap, Some(1.0));
        let reversed: Vec<(f64, f64)> = (0..20).map(|i| (i as f64, -(i as f64))).collect();
        let r = agreement(&reversed);
        assert!((r.pearson.unwrap() + 1.0).abs() < 1e-12);
        assert_eq!(r.top_decile_overlap, Some(0.0));
        assert!((r.mean_abs_diff.unwrap() - 19.0).abs() < 1e-12);
    }

    #[test]
    fn auc_and_brier() {
        // Perfect separation, then the reverse, then ties.
        let perfect = [(0.9, true), (0.8, true), (0.2, false), (0.1, false)];
        assert_eq!(quality(&perfect).auc, Some(1.0));
        let reverse = [(0.1, true), (0.9, false)];
        assert_eq!(quality(&reverse).auc, Some(0.0));
        let ties = [(0.5, true), (0.5, false)];
        assert_eq!(quality(&ties).auc, Some(0.5));
        let q = quality(&[(1.0, true), (0.0, false), (0.5, true)]);
        assert!((q.brier.unwrap() - 0.25 / 3.0).abs() < 1e-12);
        assert_eq!(quality(&[(40.0, true), (10.0, false)]).brier, None, "not a probability");
        assert_eq!(quality(&[(0.3, true)]).auc, None, "one class");
    }
}
