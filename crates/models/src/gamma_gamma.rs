//! The Gamma-Gamma model of average transaction value (Fader, Hardie & Lee 2005,
//! "RFM and CLV"): likelihood with analytic gradient, maximum-likelihood fit on repeat
//! buyers and the conditional expected average spend.
//!
//! Transaction counts and CLV live elsewhere.

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fit::{Family, FitOptions, FitReport, fit_family, par_sum};
use crate::special::{digamma, ln_gamma};

/// Gamma-Gamma parameters: each transaction value is `Gamma(p, ν)` and the customer's
/// `ν` is `Gamma(q, v)`, so the population mean spend is `p v / (q − 1)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct GammaGamma {
    /// Shape of the per-transaction value distribution.
    pub p: f64,
    /// Shape of the distribution of the per-customer scale.
    pub q: f64,
    /// Scale of the distribution of the per-customer scale (often written `γ`).
    pub v: f64,
}

/// One repeat buyer: the number of repeat purchases and their mean value.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Spend {
    /// The number of repeat purchases `x` (must be positive to be fitted).
    pub x: u32,
    /// The mean value of those purchases (must be positive).
    pub mean: f64,
}

/// Prepared fitting data: rows sorted by frequency, with per-row logs precomputed.
pub(crate) struct SpendData {
    xs: Vec<u32>,
    /// `(x index, x, mean, ln mean, weight)`.
    rows: Vec<(u32, f64, f64, f64, f64)>,
    n: f64,
}

impl SpendData {
    fn new(data: &[Spend]) -> Result<Self> {
        let mut v: Vec<(u32, u64)> =
            data.iter().filter(|s| s.x > 0).map(|s| (s.x, s.mean.to_bits())).collect();
        if v.is_empty() {
            return Err(Error::NoData("Gamma-Gamma needs repeat buyers".into()));
        }
        if let Some(bad) = v.iter().find(|(_, m)| {
            let m = f64::from_bits(*m);
            !(m.is_finite() && m > 0.0)
        }) {
            return Err(Error::InvalidInput(format!(
                "mean spend must be positive and finite, got {}",
                f64::from_bits(bad.1)
            )));
        }
        let n = v.len() as f64;
        v.par_sort_unstable();
        let mut merged: Vec<((u32, u64), f64)> = Vec::new();
        for k in v {
            match merged.last_mut() {
                Some((last, w)) if *last == k => *w += 1.0,
                _ => merged.push((k, 1.0)),
            }
        }
        let mut xs: Vec<u32> = merged.iter().map(|m| m.0.0).collect();
        xs.dedup();
        let rows = merged
            .iter()
            .map(|&((x, m), w)| {
                let m = f64::from_bits(m);
                let xi = xs.partition_point(|&v| v < x) as u32;
                (xi, f64::from(x), m, m.ln(), w)
            })
            .collect();
        Ok(SpendData { xs, rows, n })
    }
}

impl Family for GammaGamma {
    const N: usize = 3;
    type Data = SpendData;

    fn to_vec(&self) -> Vec<f64> {
        vec![self.p, self.q, self.v]
    }

    fn from_slice(p: &[f64]) -> Self {
        GammaGamma { p: p[0], q: p[1], v: p[2] }
    }

    fn ll_grad(par: &[f64], data: &SpendData, grad: &mut [f64]) -> f64 {
        let (p, q, v) = (par[0], par[1], par[2]);
        let lnv = v.ln();
        let dq = digamma(q);
        let lgq = ln_gamma(q);
        // Per-frequency constants: lnΓ(px+q) − lnΓ(px) − lnΓ(q) + px ln x, and digammas.
        let per_x: Vec<(f64, f64, f64)> = data
            .xs
            .iter()
            .map(|&x| {
                let xf = f64::from(x);
                let px = p * xf;
                let c = ln_gamma(px + q) - ln_gamma(px) - lgq + px * xf.ln();
                (c, digamma(px + q), digamma(px) - xf.ln())
            })
            .collect();
        let (ll, g) = par_sum(&data.rows, |&(xi, x, m, lnm, w), g: &mut [f64; 3]| {
            let (c, dpq, dpx) = per_x[xi as usize];
            let px = p * x;
            let s = x * m + v;
            let ls = s.ln();
            g[0] += w * x * (dpq - dpx + lnm - ls);
            g[1] += w * (dpq - dq + lnv - ls);
            g[2] += w * (q / v - (px + q) / s);
            w * (c + q * lnv + (px - 1.0) * lnm - (px + q) * ls)
        });
        grad[..3].copy_from_slice(&g);
        ll
    }

    fn weight(data: &SpendData) -> f64 {
        data.n
    }
}

impl GammaGamma {
    /// Creates parameters, checking they are finite and positive.
    pub fn new(p: f64, q: f64, v: f64) -> Result<Self> {
        if [p, q, v].iter().all(|x| x.is_finite() && *x > 0.0) {
            Ok(GammaGamma { p, q, v })
        } else {
            Err(Error::InvalidParameter(format!("parameters must be finite and positive: p={p} q={q} v={v}")))
        }
    }

    /// Fits by maximum likelihood on the customers with `x > 0`; others are ignored.
    pub fn fit(data: &[Spend], opts: &FitOptions) -> Result<FitReport<GammaGamma>> {
        let prepared = SpendData::new(data)?;
        let mean = prepared.rows.iter().map(|r| r.2 * r.4).sum::<f64>() / prepared.n;
        let starts = [vec![1.0, 1.0, 1.0], vec![2.0, 3.0, mean.max(1e-6)], vec![5.0, 5.0, mean.max(1e-6)]];
        fit_family::<GammaGamma>(&prepared, opts, &starts)
    }

    /// The log-likelihood of one repeat buyer's mean spend (the density of the mean of
    /// `x` values, as in the published model) and its gradient in `(p, q, v)`.
    pub fn log_likelihood_grad(&self, s: &Spend) -> (f64, [f64; 3]) {
        let data =
            SpendData { xs: vec![s.x], rows: vec![(0, f64::from(s.x), s.mean, s.mean.ln(), 1.0)], n: 1.0 };
        let mut g = [0.0; 3];
        let ll = Self::ll_grad(&[self.p, self.q, self.v], &data, &mut g);
        (ll, g)
    }

    /// The total log-likelihood over repeat buyers (customers with `x = 0` are skipped).
    pub fn total_log_likelihood(&self, data: &[Spend]) -> f64 {
        match SpendData::new(data) {
            Ok(d) => Self::ll_grad(&[self.p, self.q, self.v], &d, &mut [0.0; 3]),
            Err(_) => f64::NAN,
        }
    }

    /// The population mean spend per transaction, `p v / (q − 1)` (infinite when
    /// `q ≤ 1`).
    pub fn population_mean(&self) -> f64 {
        if self.q <= 1.0 {
            return f64::INFINITY;
        }
        self.p * self.v / (self.q - 1.0)
    }

    /// The expected average spend of a customer with `x` repeat purchases of mean value
    /// `mean`: `p (v + x·mean) / (p x + q − 1)`, a weighted average of the population
    /// mean and the customer's own mean. With `x = 0` this is the population mean.
    pub fn conditional_expected_spend(&self, x: u32, mean: f64) -> f64 {
        let xf = f64::from(x);
        let m = if x == 0 { 0.0 } else { mean };
        self.p * (self.v + xf * m) / (self.p * xf + self.q - 1.0)
    }
}
