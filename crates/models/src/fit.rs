//! Shared fitting machinery: the model input row [`Rfm`], weighted compression of
//! identical rows, fit options and reports, and the generic maximum-likelihood driver
//! that every model family plugs into.
//!
//! The likelihood formulas themselves live in the model modules.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::optim::{self, Settings};
use crate::rfm::CustomerSummary;

/// The calibration-period history of one customer, as the transaction models see it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Rfm {
    /// `x`: the number of repeat purchases.
    pub x: u32,
    /// `t_x`: the time of the last purchase measured from the first one.
    pub t_x: f64,
    /// `T`: the time from the first purchase to the end of calibration.
    pub t: f64,
}

impl Rfm {
    /// Creates a row from `x`, `t_x` and `T`.
    pub fn new(x: u32, t_x: f64, t: f64) -> Self {
        Rfm { x, t_x, t }
    }
}

impl From<&CustomerSummary> for Rfm {
    fn from(s: &CustomerSummary) -> Self {
        Rfm::new(s.frequency, s.recency, s.t)
    }
}

/// Options for maximum-likelihood fitting.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct FitOptions {
    /// L2 penalty added to the mean negative log-likelihood: `coef * Σ params²`
    /// (the `penalizer_coef` convention of `lifetimes`). Zero gives the plain MLE.
    pub penalizer_coef: f64,
    /// The maximum number of quasi-Newton iterations.
    pub max_iter: usize,
    /// The convergence threshold on the largest gradient component of the mean
    /// negative log-likelihood with respect to the log-parameters.
    pub grad_tol: f64,
}

impl Default for FitOptions {
    fn default() -> Self {
        FitOptions { penalizer_coef: 0.0, max_iter: 500, grad_tol: 1e-9 }
    }
}

/// The result of a fit.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FitReport<P> {
    /// The fitted parameters.
    pub params: P,
    /// The total (weighted) log-likelihood at the fitted parameters, without any penalty.
    pub loglik: f64,
    /// The number of quasi-Newton iterations used.
    pub iterations: usize,
    /// The largest gradient component of the optimised objective (mean negative
    /// log-likelihood plus penalty, in log-parameters) at the end.
    pub grad_norm: f64,
    /// Whether the gradient test was met at an interior point; `false` means the
    /// parameters are the best point found but not a verified optimum. Fits are
    /// confined to log-parameters in `[-30, 30]` (parameters between about 1e-13 and
    /// 1e13), and a fit that ends on that boundary, because the likelihood keeps
    /// improving towards a degenerate limit, is never reported as converged.
    pub converged: bool,
    /// Asymptotic standard errors of the natural parameters, from the inverse of the
    /// finite-difference Hessian of the total penalised negative log-likelihood; `None`
    /// when that Hessian is not positive definite.
    pub std_errors: Option<P>,
    /// The number of customers (sum of weights) used.
    pub n: f64,
}

/// One distinct `(x, t_x, T)` row with its multiplicity, as indices into shared tables.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Row {
    /// Index into [`Compressed::xs`].
    pub xi: u32,
    /// Index of `t_x` into [`Compressed::times`].
    pub txi: u32,
    /// Index of `T` into [`Compressed::times`].
    pub ti: u32,
    /// Index of the `(x, t_x)` pair into [`Compressed::pairs`].
    pub pxi: u32,
    /// Index of the `(x, T)` pair into [`Compressed::pairs`].
    pub pti: u32,
    /// The number of customers with this row.
    pub w: f64,
}

/// Customer rows with identical histories merged, and the distinct frequencies, times
/// and (frequency, time) pairs they refer to, so that per-value work is done once.
#[derive(Debug, Clone)]
pub(crate) struct Compressed {
    pub xs: Vec<u32>,
    pub times: Vec<f64>,
    /// Distinct `(x index, time index)` pairs.
    pub pairs: Vec<(u32, u32)>,
    pub rows: Vec<Row>,
    pub n: f64,
}

impl Compressed {
    /// Validates and compresses customer rows.
    pub fn new(data: &[Rfm]) -> Result<Self> {
        if data.is_empty() {
            return Err(Error::NoData("no customers to fit".into()));
        }
        if let Some(bad) = data.iter().find(|d| {
            !(d.t_x.is_finite() && d.t.is_finite() && d.t_x >= 0.0 && d.t >= d.t_x)
                || (d.x == 0 && d.t_x != 0.0)
        }) {
            return Err(Error::InvalidInput(format!(
                "inconsistent row x={} t_x={} T={} (need 0 <= t_x <= T, t_x = 0 when x = 0)",
                bad.x, bad.t_x, bad.t
            )));
        }
        let mut keys: Vec<(u32, u64, u64)> =
            data.par_iter().map(|d| (d.x, d.t_x.to_bits(), d.t.to_bits())).collect();
        keys.par_sort_unstable();
        let mut merged: Vec<((u32, u64, u64), f64)> = Vec::new();
        for k in keys {
            match merged.last_mut() {
                Some((last, w)) if *last == k => *w += 1.0,
                _ => merged.push((k, 1.0)),
            }
        }
        let mut xs: Vec<u32> = merged.iter().map(|m| m.0.0).collect();
        xs.dedup();
        let mut times: Vec<f64> =
            merged.iter().flat_map(|m| [f64::from_bits(m.0.1), f64::from_bits(m.0.2)]).collect();
        times.par_sort_unstable_by(f64::total_cmp);
        times.dedup();
        let time_index = |t: f64| times.partition_point(|&v| v < t) as u32;
        let mut rows: Vec<Row> = merged
            .par_iter()
            .map(|&((x, tx, t), w)| Row {
                xi: xs.partition_point(|&v| v < x) as u32,
                txi: time_index(f64::from_bits(tx)),
                ti: time_index(f64::from_bits(t)),
                pxi: 0,
                pti: 0,
                w,
            })
            .collect();
        let mut pairs: Vec<(u32, u32)> = rows.iter().flat_map(|r| [(r.xi, r.txi), (r.xi, r.ti)]).collect();
        pairs.par_sort_unstable();
        pairs.dedup();
        rows.par_iter_mut().for_each(|r| {
            r.pxi = pairs.partition_point(|&p| p < (r.xi, r.txi)) as u32;
            r.pti = pairs.partition_point(|&p| p < (r.xi, r.ti)) as u32;
        });
        Ok(Compressed { xs, times, pairs, rows, n: data.len() as f64 })
    }
}

/// The box on log-parameters that every fit stays within.
pub(crate) const LOG_PARAM_BOUND: f64 = 30.0;

/// Rejects data in which nobody made a repeat purchase: the purchase-rate distribution
/// is then not identified and the likelihood grows without bound towards `r → 0`.
pub(crate) fn require_repeat_purchases(data: &[Rfm]) -> Result<()> {
    if !data.is_empty() && data.iter().all(|d| d.x == 0) {
        return Err(Error::NoData(
            "no customer made a repeat purchase, so the purchase rates cannot be estimated".into(),
        ));
    }
    Ok(())
}

/// Rows per parallel work item when summing over rows.
const CHUNK: usize = 4096;

/// Sums `f(item, grad)` over items, accumulating `N` gradient components, in parallel
/// when there are enough items to pay for it.
pub(crate) fn par_sum<T: Sync, const N: usize>(
    items: &[T],
    f: impl Fn(&T, &mut [f64; N]) -> f64 + Sync,
) -> (f64, [f64; N]) {
    let fold = |chunk: &[T]| {
        let mut g = [0.0; N];
        let mut s = 0.0;
        for it in chunk {
            s += f(it, &mut g);
        }
        (s, g)
    };
    if items.len() <= 2 * CHUNK {
        return fold(items);
    }
    items.par_chunks(CHUNK).map(fold).reduce(
        || (0.0, [0.0; N]),
        |(a, mut ga), (b, gb)| {
            for i in 0..N {
                ga[i] += gb[i];
            }
            (a + b, ga)
        },
    )
}

/// A model family the generic driver can fit.
pub(crate) trait Family: Sized {
    /// The number of parameters.
    const N: usize;
    /// The prepared data the likelihood runs on.
    type Data: Sync;
    /// The parameters as a vector, in a fixed order.
    fn to_vec(&self) -> Vec<f64>;
    /// The parameters from a vector in the same order.
    fn from_slice(p: &[f64]) -> Self;
    /// The total weighted log-likelihood, writing its gradient with respect to the
    /// natural parameters into `grad`.
    fn ll_grad(p: &[f64], data: &Self::Data, grad: &mut [f64]) -> f64;
    /// The total weight (number of customers) in the data.
    fn weight(data: &Self::Data) -> f64;
}

/// Fits a family by maximum likelihood over log-parameters, trying each start point
/// and keeping the best optimum.
pub(crate) fn fit_family<F: Family>(
    data: &F::Data,
    opts: &FitOptions,
    starts: &[Vec<f64>],
) -> Result<FitReport<F>> {
    let n = F::weight(data);
    let coef = opts.penalizer_coef;
    let objective = |theta: &[f64], g: &mut [f64]| {
        let p: Vec<f64> = theta.iter().map(|t| t.exp()).collect();
        let ll = F::ll_grad(&p, data, g);
        let mut f = -ll / n;
        for i in 0..F::N {
            f += coef * p[i] * p[i];
            g[i] = (-g[i] / n + 2.0 * coef * p[i]) * p[i];
        }
        f
    };
    let settings = Settings { max_iter: opts.max_iter, grad_tol: opts.grad_tol, bound: LOG_PARAM_BOUND };
    let mut best: Option<optim::Minimum> = None;
    for start in starts {
        let theta0: Vec<f64> = start.iter().map(|p| p.ln()).collect();
        let m = optim::bfgs(objective, &theta0, settings);
        if !m.f.is_finite() {
            continue;
        }
        let better = best.as_ref().is_none_or(|b| m.f < b.f - 1e-12);
        if better {
            let done = m.converged;
            best = Some(m);
            if done {
                break;
            }
        }
    }
    let Some(m) = best else {
        return Err(Error::FitFailed("the log-likelihood was not finite at any start point".into()));
    };
    let p: Vec<f64> = m.x.iter().map(|t| t.exp()).collect();
    let mut g = vec![0.0; F::N];
    let loglik = F::ll_grad(&p, data, &mut g);
    let hess = optim::hessian(
        |q: &[f64], out: &mut [f64]| {
            F::ll_grad(q, data, out);
            for i in 0..F::N {
                out[i] = -out[i] + 2.0 * coef * n * q[i];
            }
        },
        &p,
    );
    let std_errors = optim::invert_spd(&hess, F::N).map(|inv| {
        let se: Vec<f64> = (0..F::N).map(|i| inv[i * F::N + i].sqrt()).collect();
        F::from_slice(&se)
    });
    Ok(FitReport {
        params: F::from_slice(&p),
        loglik,
        iterations: m.iterations,
        grad_norm: m.grad_norm,
        converged: m.converged,
        std_errors,
        n,
    })
}
