//! The [`TransactionModel`] trait shared by the BG/NBD, MBG/NBD and Pareto/NBD
//! families, and the model-agnostic quantities derived from it: churn risk and the
//! expected time to the next order.
//!
//! Customer lifetime value lives in [`crate::clv`]; the concrete likelihoods and
//! closed forms live in the family modules.

use crate::error::Result;
use crate::fit::{FitOptions, FitReport, Rfm};

/// A buy-till-you-die model of repeat purchasing: a Poisson purchase process with
/// gamma-distributed rates, cut short by an unobserved dropout.
///
/// All times are in the unit the data was summarised in.
pub trait TransactionModel: Sized + Copy + Send + Sync {
    /// A short name of the family, such as `"bgnbd"`.
    const NAME: &'static str;

    /// Fits the model by maximum likelihood to calibration histories.
    fn fit(data: &[Rfm], opts: &FitOptions) -> Result<FitReport<Self>>;

    /// The log-likelihood of one customer's history (up to terms that do not depend on
    /// the parameters, following the published formulas).
    fn log_likelihood(&self, c: &Rfm) -> f64;

    /// The total log-likelihood over customers.
    fn total_log_likelihood(&self, data: &[Rfm]) -> f64 {
        data.iter().map(|c| self.log_likelihood(c)).sum()
    }

    /// The probability that a customer with this history is still alive at `T`.
    fn p_alive(&self, c: &Rfm) -> f64;

    /// `E[X(t)]`: the expected number of repeat purchases in `(0, t]` for a customer
    /// picked at random at the moment of their first purchase.
    fn expected_purchases(&self, t: f64) -> f64;

    /// The expected number of purchases in `(T, T + t]` for a customer with frequency
    /// `x` and age `T`, given that the customer is alive at `T`. Multiplying by
    /// [`TransactionModel::p_alive`] gives the conditional expectation.
    fn expected_purchases_if_alive(&self, t: f64, x: u32, age: f64) -> f64;

    /// The expected number of purchases in `(T, T + t]` given the customer's history.
    fn conditional_expected_purchases(&self, t: f64, c: &Rfm) -> f64 {
        self.expected_purchases_if_alive(t, c.x, c.t) * self.p_alive(c)
    }

    /// `P(X(t) = n)`: the probability that a customer picked at random at their first
    /// purchase makes exactly `n` repeat purchases in `(0, t]`.
    fn prob_n_purchases(&self, t: f64, n: u32) -> f64;

    /// The shape and rate of the gamma posterior of the purchase rate of a customer
    /// who is alive at `T` with `x` repeat purchases.
    fn posterior_rate(&self, x: u32, age: f64) -> (f64, f64);

    /// `P(X(T, T + t) = k | alive at T)`: the probability of exactly `k` purchases in
    /// `(T, T + t]` for a customer with `x` repeat purchases and age `T` who is still
    /// alive at `T`. Given alive, the posterior of the latent rates is the prior updated
    /// by `x` purchases in `T` time units and no dropout, and the process restarts: the
    /// result is the family's own `P(X(t) = k)` at the posterior parameters (for
    /// MBG/NBD without the dropout at time zero, since nobody purchases at `T`).
    fn prob_k_purchases_if_alive(&self, t: f64, k: u32, x: u32, age: f64) -> f64;

    /// `P(X(T, T + t) = k | x, t_x, T)`: the distribution of the holdout purchase count
    /// given the customer's history, a mixture of "dropped out before `T`" (no
    /// purchases) and [`TransactionModel::prob_k_purchases_if_alive`]. Its mean is
    /// [`TransactionModel::conditional_expected_purchases`].
    fn prob_k_purchases(&self, t: f64, k: u32, c: &Rfm) -> f64 {
        let alive = self.p_alive(c);
        let dead = if k == 0 { 1.0 - alive } else { 0.0 };
        dead + alive * self.prob_k_purchases_if_alive(t, k, c.x, c.t)
    }
}

/// Churn risk on a 0–100 scale, defined as `100 · (1 − P(alive))`.
pub fn churn_risk<M: TransactionModel>(model: &M, c: &Rfm) -> f64 {
    (100.0 * (1.0 - model.p_alive(c))).clamp(0.0, 100.0)
}

/// The expected time until the customer's next order, measured from `T`.
///
/// Defined as the median waiting time to the next purchase given that the customer is
/// alive: with the posterior purchase rate `λ ~ Gamma(shape, rate)`, the probability of
/// no purchase within `w` is `(rate / (rate + w))^shape`, which equals one half at
/// `w = rate · (2^(1/shape) − 1)`. Returns `None` when `P(alive)` is below
/// `min_p_alive`, because a date is meaningless for a customer who has most likely
/// lapsed. Add the result (converted to days) to the calibration end to get a date.
pub fn expected_time_to_next_order<M: TransactionModel>(model: &M, c: &Rfm, min_p_alive: f64) -> Option<f64> {
    if model.p_alive(c) < min_p_alive {
        return None;
    }
    let (shape, rate) = model.posterior_rate(c.x, c.t);
    Some(rate * (2f64.powf(1.0 / shape) - 1.0))
}
