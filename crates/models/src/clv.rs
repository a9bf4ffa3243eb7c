//! Customer lifetime value: a transaction model's conditional expected purchases
//! combined with the Gamma-Gamma expected spend, discounted month by month.
//!
//! The convention follows the `lifetimes` Python package: for months `k = 1..=months`,
//! with `t_k = k · units_per_month`, the purchases expected in month `k` are
//! `E(t_k) − E(t_k − units_per_month)` (conditional on the customer's history), each
//! valued at the expected average spend and discounted by `(1 + d)^k`. No
//! mid-month adjustment is made. Fitting lives in the model modules.

use rayon::prelude::*;

use crate::fit::Rfm;
use crate::gamma_gamma::GammaGamma;
use crate::model::TransactionModel;
use crate::rfm::TimeUnit;

/// The horizon and discounting of a CLV computation.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ClvSettings {
    /// The number of months in the horizon.
    pub months: u32,
    /// The monthly discount rate `d` (0.01 = 1% a month).
    pub monthly_discount_rate: f64,
    /// The time unit the model was fitted in.
    pub unit: TimeUnit,
}

impl Default for ClvSettings {
    fn default() -> Self {
        ClvSettings { months: 12, monthly_discount_rate: 0.01, unit: TimeUnit::W }
    }
}

/// The discounted sum of expected purchases given alive:
/// `Σ_k (K(t_k) − K(t_k − f)) / (1 + d)^k` where `K` is the expected number of
/// purchases in the next `t` for a living customer with frequency `x` and age `T`.
fn discounted_purchases_if_alive<M: TransactionModel>(model: &M, x: u32, age: f64, s: &ClvSettings) -> f64 {
    let factor = s.unit.units_per_month();
    let mut total = 0.0;
    let mut prev = 0.0;
    for k in 1..=s.months {
        let t = f64::from(k) * factor;
        let now = model.expected_purchases_if_alive(t, x, age);
        // Mirror the reference arithmetic: the previous cumulative value is taken at
        // `t_k − factor` computed in floating point, which equals zero for k = 1.
        let before = if k == 1 { model.expected_purchases_if_alive(t - factor, x, age) } else { prev };
        total += (now - before) / (1.0 + s.monthly_discount_rate).powf(t / factor);
        prev = now;
    }
    total
}

/// The lifetime value of one customer over the horizon, given their calibration
/// history and the mean value of their repeat purchases (ignored when `x = 0`).
pub fn customer_lifetime_value<M: TransactionModel>(
    model: &M,
    spend: &GammaGamma,
    c: &Rfm,
    mean_spend: f64,
    settings: &ClvSettings,
) -> f64 {
    let m = spend.conditional_expected_spend(c.x, mean_spend);
    m * model.p_alive(c) * discounted_purchases_if_alive(model, c.x, c.t, settings)
}

/// Lifetime values for many customers, in input order. `mean_spend[i]` belongs to
/// `data[i]`. Work that depends only on `(x, T)` is shared between customers and the
/// rest runs in parallel.
pub fn customer_lifetime_values<M: TransactionModel>(
    model: &M,
    spend: &GammaGamma,
    data: &[Rfm],
    mean_spend: &[f64],
    settings: &ClvSettings,
) -> Vec<f64> {
    assert_eq!(data.len(), mean_spend.len(), "one mean spend per customer");
    let mut keys: Vec<(u32, u64)> = data.par_iter().map(|c| (c.x, c.t.to_bits())).collect();
    keys.par_sort_unstable();
    keys.dedup();
    let factors: Vec<f64> = keys
        .par_iter()
        .map(|&(x, t)| discounted_purchases_if_alive(model, x, f64::from_bits(t), settings))
        .collect();
    data.par_iter()
        .zip(mean_spend.par_iter())
        .map(|(c, &mean)| {
            let k = keys.partition_point(|&key| key < (c.x, c.t.to_bits()));
            spend.conditional_expected_spend(c.x, mean) * model.p_alive(c) * factors[k]
        })
        .collect()
}
