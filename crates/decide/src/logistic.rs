//! L2-regularised logistic regression on standardised features, fitted by Newton's method (IRLS) with a
//! backtracking line search, and Platt scaling for calibrating its scores.
//!
//! The objective is scikit-learn's `LogisticRegression(penalty="l2", C=c)`:
//! `½‖w‖² + C·Σᵢ log(1 + exp(−ỹᵢ(zᵢ·w + b)))`, the intercept `b` unpenalised, where `zᵢ` are the features
//! standardised by the training mean and population standard deviation. Newton's method needs a few
//! passes of `O(n·d²)` over the data; with the ~15 features of the propensity models that is about a
//! second per million rows on one core. `tests/propensity_logistic_reference.rs` checks the coefficients
//! against scikit-learn's on a committed dataset.

use crate::DecideError;
use serde::{Deserialize, Serialize};

/// How a model's inputs are standardised: `z = (x − mean) / scale`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Standardizer {
    pub mean: Vec<f64>,
    /// The population standard deviation, or 1 for a constant feature.
    pub scale: Vec<f64>,
}

impl Standardizer {
    /// The mean and population standard deviation of each of the `d` columns of row-major `x`.
    pub fn fit(x: &[f64], d: usize) -> Standardizer {
        let n = (x.len() / d.max(1)).max(1) as f64;
        let mut mean = vec![0.0; d];
        for row in x.chunks_exact(d) {
            for (m, v) in mean.iter_mut().zip(row) {
                *m += v;
            }
        }
        mean.iter_mut().for_each(|m| *m /= n);
        let mut var = vec![0.0; d];
        for row in x.chunks_exact(d) {
            for ((s, v), m) in var.iter_mut().zip(row).zip(&mean) {
                *s += (v - m) * (v - m);
            }
        }
        let scale = var.iter().map(|s| if *s / n > 1e-24 { (s / n).sqrt() } else { 1.0 }).collect();
        Standardizer { mean, scale }
    }

    /// Standardises a whole row-major matrix.
    pub fn apply(&self, x: &[f64]) -> Vec<f64> {
        let d = self.mean.len();
        let mut z = Vec::with_capacity(x.len());
        for row in x.chunks_exact(d) {
            z.extend(row.iter().zip(&self.mean).zip(&self.scale).map(|((v, m), s)| (v - m) / s));
        }
        z
    }
}

/// Fitting options.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LogisticConfig {
    /// Inverse regularisation strength, as scikit-learn's `C` (larger = weaker penalty).
    pub c: f64,
    /// Newton iterations at most.
    pub max_iter: usize,
    /// Convergence: the largest absolute change of a parameter in one step.
    pub tol: f64,
}

impl Default for LogisticConfig {
    fn default() -> Self {
        LogisticConfig { c: 1.0, max_iter: 100, tol: 1e-9 }
    }
}

/// A fitted model: coefficients on the standardised features, and how to standardise.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Logistic {
    pub standardizer: Standardizer,
    /// One coefficient per standardised feature.
    pub coef: Vec<f64>,
    pub intercept: f64,
    pub iterations: usize,
    pub converged: bool,
}

impl Logistic {
    /// The linear score (log-odds) of one raw feature row.
    #[inline]
    pub fn decision(&self, row: &[f64]) -> f64 {
        let s = &self.standardizer;
        let mut eta = self.intercept;
        for (((c, v), m), sd) in self.coef.iter().zip(row).zip(&s.mean).zip(&s.scale) {
            eta += c * (v - m) / sd;
        }
        eta
    }

    /// The probability of the positive class for one raw feature row.
    #[inline]
    pub fn predict(&self, row: &[f64]) -> f64 {
        sigmoid(self.decision(row))
    }
}

/// The logistic function, stable for large |x|.
#[inline]
pub fn sigmoid(x: f64) -> f64 {
    if x >= 0.0 {
        1.0 / (1.0 + (-x).exp())
    } else {
        let e = x.exp();
        e / (1.0 + e)
    }
}

/// log(1 + eˣ), stable for large |x|.
#[inline]
fn softplus(x: f64) -> f64 {
    if x > 0.0 { x + (-x).exp().ln_1p() } else { x.exp().ln_1p() }
}

fn check_xy(x: &[f64], d: usize, y: &[bool]) -> Result<(), DecideError> {
    if d == 0 {
        return Err(DecideError::Input("a logistic model needs at least one feature".into()));
    }
    if x.len() != y.len() * d {
        return Err(DecideError::Input(format!("{} values for {} rows of {d} features", x.len(), y.len())));
    }
    if x.iter().any(|v| !v.is_finite()) {
        return Err(DecideError::Input("a feature value is not a finite number".into()));
    }
    let pos = y.iter().filter(|&&v| v).count();
    if pos == 0 || pos == y.len() {
        return Err(DecideError::Insufficient("the labels hold a single class".into()));
    }
    Ok(())
}

/// Standardises `x` (row-major, `d` columns) and fits the model.
pub fn fit(x: &[f64], d: usize, y: &[bool], cfg: &LogisticConfig) -> Result<Logistic, DecideError> {
    check_xy(x, d, y)?;
    let standardizer = Standardizer::fit(x, d);
    let z = standardizer.apply(x);
    let (coef, intercept, iterations, converged) = fit_standardized(&z, d, y, cfg, None)?;
    Ok(Logistic { standardizer, coef, intercept, iterations, converged })
}

/// The penalised negative log-likelihood at `(w, b)`.
fn objective(z: &[f64], d: usize, y: &[bool], w: &[f64], b: f64, c: f64) -> f64 {
    let mut nll = 0.0;
    for (row, &yi) in z.chunks_exact(d).zip(y) {
        let eta = b + dot(row, w);
        nll += softplus(eta) - if yi { eta } else { 0.0 };
    }
    0.5 * dot(w, w) + c * nll
}

#[inline]
fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Fits on already standardised features, optionally from a starting point (a warm start). Returns the
/// coefficients, the intercept, the Newton iterations and whether they converged.
pub fn fit_standardized(
    z: &[f64],
    d: usize,
    y: &[bool],
    cfg: &LogisticConfig,
    init: Option<(&[f64], f64)>,
) -> Result<(Vec<f64>, f64, usize, bool), DecideError> {
    check_xy(z, d, y)?;
    if !(cfg.c.is_finite() && cfg.c > 0.0) {
        return Err(DecideError::Input("C must be a positive number".into()));
    }
    let c = cfg.c;
    let (mut w, mut b) = match init {
        Some((w0, b0)) if w0.len() == d => (w0.to_vec(), b0),
        _ => {
            let rate = y.iter().filter(|&&v| v).count() as f64 / y.len() as f64;
            (vec![0.0; d], (rate / (1.0 - rate)).ln())
        }
    };
    let m = d + 1; // parameters: w then b
    let mut f = objective(z, d, y, &w, b, c);
    let mut h = vec![0.0; m * m];
    let mut g = vec![0.0; m];
    let mut aug = vec![0.0; m];
    for iter in 1..=cfg.max_iter {
        h.iter_mut().for_each(|v| *v = 0.0);
        g.iter_mut().for_each(|v| *v = 0.0);
        for (row, &yi) in z.chunks_exact(d).zip(y) {
            let eta = b + dot(row, &w);
            let p = sigmoid(eta);
            let r = p - if yi { 1.0 } else { 0.0 };
            let wt = p * (1.0 - p);
            aug[..d].copy_from_slice(row);
            aug[d] = 1.0;
            for j in 0..m {
                let aj = aug[j];
                g[j] += r * aj;
                let wj = wt * aj;
                let hrow = &mut h[j * m..(j + 1) * m];
                for k in j..m {
                    hrow[k] += wj * aug[k];
                }
            }
        }
        // Scale by C and add the penalty (not on the intercept); fill the lower triangle.
        for j in 0..m {
            g[j] *= c;
            for k in j..m {
                h[j * m + k] *= c;
            }
            if j < d {
                g[j] += w[j];
                h[j * m + j] += 1.0;
            }
            for k in 0..j {
                h[j * m + k] = h[k * m + j];
            }
        }
        let step = cholesky_solve(&mut h, &g, m)
            .ok_or_else(|| DecideError::Input("the Newton system is singular".into()))?;
        // Backtracking: halve the step until the objective does not increase.
        let mut t = 1.0;
        let mut accepted = false;
        for _ in 0..40 {
            let wn: Vec<f64> = w.iter().zip(&step).map(|(wi, s)| wi - t * s).collect();
            let bn = b - t * step[d];
            let fnew = objective(z, d, y, &wn, bn, c);
            if fnew <= f + 1e-12 * f.abs() {
                w = wn;
                b = bn;
                f = fnew;
                accepted = true;
                break;
            }
            t *= 0.5;
        }
        let largest = step.iter().fold(0.0f64, |a, s| a.max((t * s).abs()));
        if !accepted || largest < cfg.tol {
            return Ok((w, b, iter, true));
        }
    }
    Ok((w, b, cfg.max_iter, false))
}

/// Solves `H x = g` for a symmetric positive definite `H` (overwritten by its Cholesky factor).
fn cholesky_solve(h: &mut [f64], g: &[f64], m: usize) -> Option<Vec<f64>> {
    for j in 0..m {
        let mut s = h[j * m + j];
        for k in 0..j {
            s -= h[j * m + k] * h[j * m + k];
        }
        if s <= 0.0 || !s.is_finite() {
            return None;
        }
        let l = s.sqrt();
        h[j * m + j] = l;
        for i in j + 1..m {
            let mut s = h[i * m + j];
            for k in 0..j {
                s -= h[i * m + k] * h[j * m + k];
            }
            h[i * m + j] = s / l;
        }
    }
    let mut x = g.to_vec();
    for i in 0..m {
        for k in 0..i {
            x[i] -= h[i * m + k] * x[k];
        }
        x[i] /= h[i * m + i];
    }
    for i in (0..m).rev() {
        for k in i + 1..m {
            x[i] -= h[k * m + i] * x[k];
        }
        x[i] /= h[i * m + i];
    }
    Some(x)
}

/// Platt scaling: `p = σ(a·s + b)` on a model's log-odds `s`, fitted on a calibration slice.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Platt {
    pub a: f64,
    pub b: f64,
}

impl Platt {
    /// The identity calibration (`a = 1, b = 0`).
    pub const IDENTITY: Platt = Platt { a: 1.0, b: 0.0 };

    #[inline]
    pub fn apply(&self, log_odds: f64) -> f64 {
        sigmoid(self.a * log_odds + self.b)
    }

    /// Fits `a, b` by maximum likelihood (a negligible ridge keeps separable slices finite).
    pub fn fit(log_odds: &[f64], y: &[bool]) -> Result<Platt, DecideError> {
        let cfg = LogisticConfig { c: 1e6, max_iter: 100, tol: 1e-10 };
        let (w, b, _, _) = fit_standardized(log_odds, 1, y, &cfg, Some((&[1.0], 0.0)))?;
        Ok(Platt { a: w[0], b })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recovers_the_coefficients_of_a_large_sample() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let n = 40_000;
        let mut x = Vec::new();
        let mut y = Vec::new();
        for _ in 0..n {
            let a: f64 = rng.gen_range(-1.0..1.0);
            let b: f64 = rng.gen_range(-1.0..1.0);
            x.extend([a, b]);
            y.push(rng.r#gen::<f64>() < sigmoid(0.5 + 2.0 * a - 1.0 * b));
        }
        let m = fit(&x, 2, &y, &LogisticConfig::default()).unwrap();
        assert!(m.converged);
        let raw_a = m.coef[0] / m.standardizer.scale[0];
        let raw_b = m.coef[1] / m.standardizer.scale[1];
        assert!((raw_a - 2.0).abs() < 0.1, "{raw_a}");
        assert!((raw_b + 1.0).abs() < 0.1, "{raw_b}");
    }

    #[test]
    fn refuses_a_single_class_and_ragged_input() {
        let cfg = LogisticConfig::default();
        assert!(matches!(fit(&[1.0, 2.0], 1, &[true, true], &cfg), Err(DecideError::Insufficient(_))));
        assert!(matches!(fit(&[1.0, 2.0, 3.0], 2, &[true, false], &cfg), Err(DecideError::Input(_))));
    }

    #[test]
    fn platt_corrects_an_overconfident_score() {
        // Scores twice the true log-odds: Platt should find a ≈ 0.5.
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let (mut s, mut y) = (Vec::new(), Vec::new());
        for _ in 0..50_000 {
            let t: f64 = rng.gen_range(-3.0..3.0);
            s.push(2.0 * t);
            y.push(rng.r#gen::<f64>() < sigmoid(t));
        }
        let p = Platt::fit(&s, &y).unwrap();
        assert!((p.a - 0.5).abs() < 0.03, "{p:?}");
        assert!(p.b.abs() < 0.05, "{p:?}");
    }
}
