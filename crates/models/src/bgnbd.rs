//! The BG/NBD model (Fader, Hardie & Lee 2005) and its modification MBG/NBD
//! (Batislam, Denizel & Filiztekin 2007): likelihoods with analytic gradients,
//! maximum-likelihood fitting and closed-form predictions.
//!
//! Both share one implementation. In BG/NBD a customer may drop out after each repeat
//! purchase; in MBG/NBD also right after the first purchase, so even customers without
//! repeat purchases can be inactive. Spend models and CLV live elsewhere.

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fit::{
    Compressed, Family, FitOptions, FitReport, Rfm, fit_family, par_sum, require_repeat_purchases,
};
use crate::model::TransactionModel;
use crate::special::{digamma, hyp2f1, ln_beta, ln_gamma};

/// BG/NBD parameters: purchase rates `λ ~ Gamma(r, alpha)`, dropout probabilities
/// `p ~ Beta(a, b)`.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct BgNbd {
    /// Shape of the purchase-rate distribution.
    pub r: f64,
    /// Rate (inverse scale, in time units) of the purchase-rate distribution.
    pub alpha: f64,
    /// First shape of the dropout-probability distribution.
    pub a: f64,
    /// Second shape of the dropout-probability distribution.
    pub b: f64,
}

/// MBG/NBD parameters, with the same meaning as for [`BgNbd`].
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct MbgNbd {
    /// Shape of the purchase-rate distribution.
    pub r: f64,
    /// Rate (inverse scale, in time units) of the purchase-rate distribution.
    pub alpha: f64,
    /// First shape of the dropout-probability distribution.
    pub a: f64,
    /// Second shape of the dropout-probability distribution.
    pub b: f64,
}

/// The per-frequency part of the likelihood and its partial derivatives.
#[derive(Debug, Clone, Copy)]
struct XTerm {
    /// The frequency as a float.
    x: f64,
    /// Whether the "dropped out after the last purchase" branch exists.
    has_dead: bool,
    /// The part of the log-likelihood that depends only on `x`.
    c0: f64,
    /// `ln a − ln(b + x − 1 + m)`, the log-weight of the dropout branch.
    a4: f64,
    /// Derivatives of `c0` with respect to `r`, `a` and `b`.
    dr0: f64,
    da0: f64,
    db0: f64,
    /// Derivative of `a4` with respect to `b`.
    db4: f64,
}

/// Shared implementation; `m` is 0 for BG/NBD and 1 for MBG/NBD.
fn xterm(p: &[f64], x: u32, m: f64) -> XTerm {
    let (r, alpha, a, b) = (p[0], p[1], p[2], p[3]);
    let xf = f64::from(x);
    let has_dead = x > 0 || m > 0.0;
    let bx = b + xf + m;
    // With x = 0 in BG/NBD the beta-function ratio is exactly one; skipping it avoids
    // rounding noise from cancelling log-gamma values.
    let beta_part =
        if bx == b { 0.0 } else { ln_gamma(a + b) + ln_gamma(bx) - ln_gamma(b) - ln_gamma(a + bx) };
    let c0 =
        if x == 0 { r * alpha.ln() } else { ln_gamma(r + xf) - ln_gamma(r) + r * alpha.ln() } + beta_part;
    let dab = digamma(a + b);
    let dabx = digamma(a + bx);
    XTerm {
        x: xf,
        has_dead,
        c0,
        a4: if has_dead { a.ln() - (bx - 1.0).ln() } else { 0.0 },
        dr0: digamma(r + xf) - digamma(r) + alpha.ln(),
        da0: dab - dabx,
        db0: dab + digamma(bx) - digamma(b) - dabx,
        db4: if has_dead { -1.0 / (bx - 1.0) } else { 0.0 },
    }
}

/// One row's log-likelihood, adding `w` times its gradient into `g`.
/// `lt`/`ltx` hold `(ln(alpha + T), 1 / (alpha + T))` and the same for `t_x`.
#[inline]
fn row_ll(p: &[f64], xt: &XTerm, lt: (f64, f64), ltx: (f64, f64), w: f64, g: &mut [f64; 4]) -> f64 {
    let (r, alpha, a) = (p[0], p[1], p[2]);
    let rx = r + xt.x;
    let a3 = -rx * lt.0;
    let (lse, w3, w4) = if xt.has_dead {
        let a4 = xt.a4 - rx * ltx.0;
        let (hi, lo) = if a3 >= a4 { (a3, a4) } else { (a4, a3) };
        let e = (lo - hi).exp();
        let wl = e / (1.0 + e);
        let (w3, w4) = if a3 >= a4 { (1.0 - wl, wl) } else { (wl, 1.0 - wl) };
        (hi + e.ln_1p(), w3, w4)
    } else {
        (a3, 1.0, 0.0)
    };
    g[0] += w * (xt.dr0 - w3 * lt.0 - w4 * ltx.0);
    g[1] += w * (r / alpha - rx * (w3 * lt.1 + w4 * ltx.1));
    g[2] += w * (xt.da0 + w4 / a);
    g[3] += w * (xt.db0 + w4 * xt.db4);
    w * (xt.c0 + lse)
}

/// The total log-likelihood over compressed data with its gradient.
fn total_ll_grad(p: &[f64], data: &Compressed, grad: &mut [f64], m: f64) -> f64 {
    let alpha = p[1];
    let xterms: Vec<XTerm> = data.xs.iter().map(|&x| xterm(p, x, m)).collect();
    let logs: Vec<(f64, f64)> = data.times.iter().map(|&t| ((alpha + t).ln(), 1.0 / (alpha + t))).collect();
    let (ll, g) = par_sum(&data.rows, |row, g: &mut [f64; 4]| {
        row_ll(p, &xterms[row.xi as usize], logs[row.ti as usize], logs[row.txi as usize], row.w, g)
    });
    grad[..4].copy_from_slice(&g);
    ll
}

/// One customer's log-likelihood and its gradient with respect to `(r, alpha, a, b)`.
fn single_ll_grad(p: &[f64], c: &Rfm, m: f64) -> (f64, [f64; 4]) {
    let alpha = p[1];
    let xt = xterm(p, c.x, m);
    let mut g = [0.0; 4];
    let ll = row_ll(
        p,
        &xt,
        ((alpha + c.t).ln(), 1.0 / (alpha + c.t)),
        ((alpha + c.t_x).ln(), 1.0 / (alpha + c.t_x)),
        1.0,
        &mut g,
    );
    (ll, g)
}

/// Data-driven start points for the optimiser.
fn starts(data: &[Rfm]) -> Vec<Vec<f64>> {
    let n = data.len() as f64;
    let mean_x = data.iter().map(|d| f64::from(d.x)).sum::<f64>() / n;
    let mean_t = data.iter().map(|d| d.t).sum::<f64>() / n;
    // A rate near the observed repeat rate, with moderate heterogeneity.
    let rate = (mean_x / mean_t.max(1e-9)).max(1e-6);
    vec![vec![1.0, 1.0 / rate, 1.0, 1.0], vec![1.0, 1.0, 1.0, 1.0], vec![0.5, 0.5 / rate, 0.5, 2.0]]
}

/// `P(alive)` shared by both variants.
fn p_alive(p: &[f64], c: &Rfm, m: f64) -> f64 {
    let (r, alpha, a, b) = (p[0], p[1], p[2], p[3]);
    if c.x == 0 && m == 0.0 {
        return 1.0;
    }
    let xf = f64::from(c.x);
    let ln_ratio = (r + xf) * ((alpha + c.t).ln() - (alpha + c.t_x).ln());
    1.0 / (1.0 + (a.ln() - (b + xf + m - 1.0).ln() + ln_ratio).exp())
}

/// Expected purchases in the next `t` given alive at `T` with `x` repeat purchases.
fn if_alive(p: &[f64], t: f64, x: u32, age: f64, m: f64) -> f64 {
    let (r, alpha, a, b) = (p[0], p[1], p[2], p[3]);
    if t <= 0.0 {
        return 0.0;
    }
    let xf = f64::from(x);
    let bx = b + xf + m;
    let z = t / (alpha + age + t);
    let hyp = hyp2f1(r + xf, bx, a + bx - 1.0, z);
    let lead = ((r + xf) * ((alpha + age) / (alpha + age + t)).ln()).exp();
    (a + bx - 1.0) / (a - 1.0) * (1.0 - lead * hyp)
}

/// `P(X(t) = n)` shared by both variants.
fn prob_n(p: &[f64], t: f64, n: u32, m: f64) -> f64 {
    let (r, alpha, a, b) = (p[0], p[1], p[2], p[3]);
    let nf = f64::from(n);
    let ln_q = (alpha / (alpha + t)).ln();
    let ln_z = (t / (alpha + t)).ln();
    let ln_nb = |j: f64| {
        ln_gamma(r + j) - ln_gamma(r) - ln_gamma(j + 1.0) + r * ln_q + if j > 0.0 { j * ln_z } else { 0.0 }
    };
    let lb = ln_beta(a, b);
    let first = (ln_beta(a, b + nf + m) - lb + ln_nb(nf)).exp();
    if n == 0 && m == 0.0 {
        return first;
    }
    // P(N(t) >= n) for the gamma-Poisson count, which is one minus a finite sum.
    let below: f64 = (0..n).map(|j| ln_nb(f64::from(j)).exp()).sum();
    let tail = (1.0 - below).max(0.0);
    first + (ln_beta(a + 1.0, b + nf + m - 1.0) - lb).exp() * tail
}

fn check(p: &[f64]) -> Result<()> {
    if p.iter().all(|v| v.is_finite() && *v > 0.0) {
        Ok(())
    } else {
        Err(Error::InvalidParameter(format!("parameters must be finite and positive: {p:?}")))
    }
}

macro_rules! bg_family {
    ($ty:ident, $m:expr, $name:expr) => {
        impl $ty {
            /// Creates parameters, checking they are finite and positive.
            pub fn new(r: f64, alpha: f64, a: f64, b: f64) -> Result<Self> {
                check(&[r, alpha, a, b])?;
                Ok($ty { r, alpha, a, b })
            }

            fn p(&self) -> [f64; 4] {
                [self.r, self.alpha, self.a, self.b]
            }

            /// One customer's log-likelihood and its analytic gradient with respect to
            /// `(r, alpha, a, b)`.
            pub fn log_likelihood_grad(&self, c: &Rfm) -> (f64, [f64; 4]) {
                single_ll_grad(&self.p(), c, $m)
            }
        }

        impl Family for $ty {
            const N: usize = 4;
            type Data = Compressed;
            fn to_vec(&self) -> Vec<f64> {
                self.p().to_vec()
            }
            fn from_slice(p: &[f64]) -> Self {
                $ty { r: p[0], alpha: p[1], a: p[2], b: p[3] }
            }
            fn ll_grad(p: &[f64], data: &Compressed, grad: &mut [f64]) -> f64 {
                total_ll_grad(p, data, grad, $m)
            }
            fn weight(data: &Compressed) -> f64 {
                data.n
            }
        }

        impl TransactionModel for $ty {
            const NAME: &'static str = $name;

            fn fit(data: &[Rfm], opts: &FitOptions) -> Result<FitReport<Self>> {
                let compressed = Compressed::new(data)?;
                require_repeat_purchases(data)?;
                fit_family::<$ty>(&compressed, opts, &starts(data))
            }

            fn log_likelihood(&self, c: &Rfm) -> f64 {
                single_ll_grad(&self.p(), c, $m).0
            }

            fn total_log_likelihood(&self, data: &[Rfm]) -> f64 {
                match Compressed::new(data) {
                    Ok(c) => total_ll_grad(&self.p(), &c, &mut [0.0; 4], $m),
                    Err(_) => f64::NAN,
                }
            }

            fn p_alive(&self, c: &Rfm) -> f64 {
                p_alive(&self.p(), c, $m)
            }

            fn expected_purchases(&self, t: f64) -> f64 {
                if t <= 0.0 {
                    return 0.0;
                }
                let (r, alpha, a, b) = (self.r, self.alpha, self.a, self.b);
                let z = t / (alpha + t);
                let lead = (r * (alpha / (alpha + t)).ln()).exp();
                // BG/NBD: E[1/p]-type factor (a+b-1)/(a-1); MBG/NBD multiplies by the
                // probability of surviving the first purchase, giving b/(a-1).
                let coef = if $m == 0.0 { a + b - 1.0 } else { b } / (a - 1.0);
                coef * (1.0 - lead * hyp2f1(r, b + $m, a + b - 1.0 + $m, z))
            }

            fn expected_purchases_if_alive(&self, t: f64, x: u32, age: f64) -> f64 {
                if_alive(&self.p(), t, x, age, $m)
            }

            fn prob_n_purchases(&self, t: f64, n: u32) -> f64 {
                if t <= 0.0 {
                    return if n == 0 { 1.0 } else { 0.0 };
                }
                prob_n(&self.p(), t, n, $m)
            }

            fn posterior_rate(&self, x: u32, age: f64) -> (f64, f64) {
                (self.r + f64::from(x), self.alpha + age)
            }

            fn prob_k_purchases_if_alive(&self, t: f64, k: u32, x: u32, age: f64) -> f64 {
                if t <= 0.0 {
                    return if k == 0 { 1.0 } else { 0.0 };
                }
                // Alive at T: λ ~ Gamma(r + x, alpha + T) and p ~ Beta(a, b + x + m), the
                // survivals of x repeat purchases (and, in MBG/NBD, of the first one);
                // from T on a BG process starts afresh.
                let xf = f64::from(x);
                let posterior = [self.r + xf, self.alpha + age, self.a, self.b + xf + $m];
                prob_n(&posterior, t, k, 0.0)
            }
        }
    };
}

bg_family!(BgNbd, 0.0, "bgnbd");
bg_family!(MbgNbd, 1.0, "mbgnbd");

#[cfg(test)]
mod tests {
    use super::*;

    const P: BgNbd = BgNbd { r: 0.243, alpha: 4.414, a: 0.793, b: 2.426 };

    #[test]
    fn conditional_expectation_at_zero_horizon_is_zero() {
        assert_eq!(P.conditional_expected_purchases(0.0, &Rfm::new(2, 30.43, 38.86)), 0.0);
        assert_eq!(P.p_alive(&Rfm::new(0, 0.0, 38.86)), 1.0);
    }

    #[test]
    fn probabilities_sum_to_one() {
        for model in [0.0, 1.0] {
            let p = [0.4, 3.0, 1.3, 2.5];
            let total: f64 = (0..400).map(|n| prob_n(&p, 20.0, n, model)).sum();
            assert!((total - 1.0).abs() < 1e-9, "{total}");
        }
    }
}
