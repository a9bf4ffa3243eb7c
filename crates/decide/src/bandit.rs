//! The offer bandit behind the `choose_offer` flow action: which arm (`none`, `content_only`,
//! `free_shipping`, `pct_N`) to make a customer, learned from outcomes.
//!
//! **Model.** One ridge regression per arm over the context vector ([`context_features`]): the
//! sufficient statistics `A = λI + Σ x xᵀ`, `b = Σ r x`, `n`, `Σ r`, `Σ r²`. The estimate is
//! `θ = A⁻¹ b`; `A⁻¹` is kept up to date by a Sherman–Morrison rank-one update (refreshed from `A` by a
//! Cholesky inverse every [`REFRESH_EVERY`] updates and on load, so rounding cannot accumulate). The
//! noise variance of an arm is estimated from its residuals, shrunk toward the pooled second moment of
//! all rewards (`σ² = (ν₀ s² + RSS) / (ν₀ + n)`, ν₀ = 2), so the policies need no reward scale.
//!
//! **Policies.** For a context `x`, arm `a`'s expected reward is `μ = xᵀθ` with posterior sd
//! `s = σ √(xᵀA⁻¹x)`.
//! - Thompson sampling (linear Thompson): draws `θ̃ ~ N(θ, v² σ² A⁻¹)` per arm and takes the largest
//!   `xᵀθ̃`. Only the scalar `xᵀθ̃ ~ N(μ, v² s²)` matters, so that is what is drawn (the same choice
//!   distribution, d times cheaper). Its propensity — the probability the policy had of choosing the arm
//!   it chose — is computed, not sampled: `P(a) = ∫ φ_a(t) Π_{j≠a} Φ_j(t) dt`, by Simpson's rule on 96
//!   intervals over `μ_a ± 8 v s_a` (exact to ~1e-6; tested against the two-arm closed form and Monte
//!   Carlo).
//! - LinUCB: the largest `μ + α s` (deterministic; propensity 1).
//!
//! **Holdout.** With probability `explore_holdout_percent / 100` the choice is uniform over the eligible
//! arms instead and marked `explored`; its propensity is then `1 / eligible` (propensities are
//! conditional on the branch the decision took, which `explored` records). [`off_policy_value`]
//! estimates the value of the learned greedy policy from those uniform decisions (IPS and
//! self-normalised IPS with 95 % intervals).
//!
//! **Reproducibility.** Every random number of a choice (the holdout coin, the uniform pick, the
//! Thompson draws) comes from a SplitMix64 stream seeded with the decision's `seed`, so the same seed and
//! the same learner state give the same choice on every platform and version.

use crate::DecideError;
use nudge_model::Timestamp;
use nudge_state::CustomerState;
use serde::{Deserialize, Serialize};

/// Updates per arm between exact refreshes of `A⁻¹` from `A`.
pub const REFRESH_EVERY: u64 = 4096;

/// The policy a `choose_offer` action uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PolicyKind {
    Thompson,
    LinUcb,
}

/// One offer a `choose_offer` action can make.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Arm {
    pub name: String,
    /// The discount, in percent of the order value.
    pub discount_pct: f64,
    /// A fixed cost per order (free shipping's shipping cost).
    pub fixed_cost: f64,
}

impl Arm {
    /// `none`, `content_only` (no cost), `free_shipping` (fixed_cost = `shipping_cost`), `pct_N`
    /// (a discount of N % of the order value, 0 < N < 100).
    pub fn parse(name: &str, shipping_cost: f64) -> Result<Arm, DecideError> {
        let arm =
            |discount_pct: f64, fixed_cost: f64| Arm { name: name.to_string(), discount_pct, fixed_cost };
        match name {
            "none" | "content_only" => Ok(arm(0.0, 0.0)),
            "free_shipping" => {
                if !shipping_cost.is_finite() || shipping_cost < 0.0 {
                    return Err(DecideError::Input(format!(
                        "arm free_shipping: the shipping cost must be a non-negative number, got {shipping_cost}"
                    )));
                }
                Ok(arm(0.0, shipping_cost))
            }
            _ => {
                let pct = name.strip_prefix("pct_").and_then(|n| n.parse::<f64>().ok()).ok_or_else(|| {
                    DecideError::Input(format!(
                        "unknown offer arm {name:?}: expected none, content_only, free_shipping or pct_N (N a percentage, e.g. pct_10)"
                    ))
                })?;
                if !(pct > 0.0 && pct < 100.0) {
                    return Err(DecideError::Input(format!(
                        "offer arm {name:?}: the discount must be above 0 and below 100 percent"
                    )));
                }
                Ok(arm(pct, 0.0))
            }
        }
    }

    /// The arm's cost on an order of `value`.
    pub fn cost(&self, value: f64) -> f64 {
        self.fixed_cost + value * self.discount_pct / 100.0
    }

    /// Whether the arm costs anything (a discount or a fixed cost such as free shipping).
    pub fn is_costly(&self) -> bool {
        self.discount_pct > 0.0 || self.fixed_cost > 0.0 || self.name == "free_shipping"
    }
}

/// Whether an arm name recorded in a customer's offer history cost something (unknown names count as
/// costly, the conservative reading for the spacing guardrail).
fn recorded_arm_is_costly(name: &str) -> bool {
    !matches!(name, "none" | "content_only")
}

/// The number of context features.
pub const CONTEXT_DIM: usize = 10;

/// The context features, in order (bias first). Every feature is scaled to about `[0, 1]`:
/// - `bias`: 1.
/// - `purchase_propensity`: the customer's 7-day purchase propensity if scored, else 0.
/// - `propensity_missing`: 1 when no propensity was scored.
/// - `orders`: `ln(1 + orders) / ln(21)`, capped at 1 (non-cancelled orders).
/// - `days_since_order`: days since the newest order / 365, capped at 1; 1 without orders.
/// - `engagement_30d`: `ln(1 + human opens + clicks in the last 30 days) / ln(31)`, capped at 1.
/// - `days_since_costly_offer`: days since the last offer that cost something / 90, capped at 1; 1
///   when none.
/// - `offers_90d`: offers made in the last 90 days / 5, capped at 1.
/// - `basket_value`: the value at stake / 250, capped at 1: the newest open checkout's total, else the
///   mean order value, else 0.
/// - `expected_revenue`: `basket_value × purchase_propensity` (what the customer is expected to spend
///   without an offer; 0 when unscored). Rewards are order values, so a linear model needs this product.
pub const CONTEXT_NAMES: [&str; CONTEXT_DIM] = [
    "bias",
    "purchase_propensity",
    "propensity_missing",
    "orders",
    "days_since_order",
    "engagement_30d",
    "days_since_costly_offer",
    "offers_90d",
    "basket_value",
    "expected_revenue",
];

/// The value scale of `basket_value`.
pub const BASKET_SCALE: f64 = 250.0;

fn days_between(earlier: Timestamp, now: Timestamp) -> f64 {
    ((now - earlier).as_seconds_f64() / 86_400.0).max(0.0)
}

/// The context vector every decision uses ([`CONTEXT_NAMES`]), from what is known at `now` (orders,
/// checkouts, engagement and offers after `now` are ignored); `propensity` is the customer's purchase
/// propensity if scored.
pub fn context_features(state: &CustomerState, now: Timestamp, propensity: Option<f64>) -> Vec<f64> {
    let mut x = vec![0.0; CONTEXT_DIM];
    x[0] = 1.0;
    match propensity.filter(|p| p.is_finite()) {
        Some(p) => x[1] = p.clamp(0.0, 1.0),
        None => x[2] = 1.0,
    }
    let (mut count, mut total, mut newest) = (0usize, 0.0, None::<Timestamp>);
    for o in state.orders.values().filter(|o| !o.cancelled && o.created_at <= now) {
        count += 1;
        total += o.total.to_f64().max(0.0);
        newest = Some(newest.map_or(o.created_at, |t| t.max(o.created_at)));
    }
    x[3] = ((1.0 + count as f64).ln() / 21f64.ln()).min(1.0);
    x[4] = newest.map_or(1.0, |t| (days_between(t, now) / 365.0).min(1.0));
    let t = state.engagement.totals_since(now, 30);
    x[5] = ((1.0 + f64::from(t.opened) + f64::from(t.clicked)).ln() / 31f64.ln()).min(1.0);
    let past = || state.offers.iter().filter(|o| o.decided_at <= now);
    x[6] = past()
        .filter(|o| recorded_arm_is_costly(&o.arm))
        .map(|o| o.decided_at)
        .max()
        .map_or(1.0, |t| (days_between(t, now) / 90.0).min(1.0));
    x[7] = (past().filter(|o| days_between(o.decided_at, now) <= 90.0).count() as f64 / 5.0).min(1.0);
    let cart = state.open_checkouts.values().filter(|c| c.updated_at <= now).max_by_key(|c| c.updated_at);
    let basket = match cart {
        Some(c) => c.total.to_f64().max(0.0),
        None if count > 0 => total / count as f64,
        None => 0.0,
    };
    x[8] = (basket / BASKET_SCALE).min(1.0);
    x[9] = x[8] * x[1];
    x
}

/// What a `choose_offer` action never does.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Guardrails {
    /// Arms with a larger discount are never chosen.
    pub max_discount_pct: f64,
    /// 0 = no limit; an arm with a cost is not chosen when the customer's last costly offer is more
    /// recent than this many days.
    #[serde(default)]
    pub min_days_between_offers: u32,
    /// When the purchase propensity without an offer is above this, only free arms are chosen (an
    /// unscored customer is not restricted).
    #[serde(default)]
    pub skip_if_propensity_above: Option<f64>,
    /// Arms whose discount exceeds `margin_pct − margin_floor_pct` are never chosen (needs both).
    #[serde(default)]
    pub margin_floor_pct: Option<f64>,
    #[serde(default)]
    pub margin_pct: Option<f64>,
}

impl Guardrails {
    /// Per arm, whether the guardrails allow it for this customer at `now`.
    pub fn eligible(
        &self,
        arms: &[Arm],
        state: &CustomerState,
        now: Timestamp,
        propensity: Option<f64>,
    ) -> Vec<bool> {
        let recent_costly = self.min_days_between_offers > 0
            && state.offers.iter().any(|o| {
                recorded_arm_is_costly(&o.arm)
                    && o.decided_at <= now
                    && days_between(o.decided_at, now) < f64::from(self.min_days_between_offers)
            });
        let likely_buyer = matches!((propensity, self.skip_if_propensity_above), (Some(p), Some(t)) if p > t);
        let margin_cap = match (self.margin_pct, self.margin_floor_pct) {
            (Some(m), Some(f)) => Some(m - f),
            _ => None,
        };
        arms.iter()
            .map(|arm| {
                let costly = arm.is_costly();
                arm.discount_pct <= self.max_discount_pct
                    && !(costly && (recent_costly || likely_buyer))
                    && margin_cap.is_none_or(|cap| arm.discount_pct <= cap)
            })
            .collect()
    }
}

/// One arm's sufficient statistics and the cached inverse and estimate.
#[derive(Debug, Clone)]
struct ArmStats {
    /// `λI + Σ x xᵀ`, row-major.
    a: Vec<f64>,
    /// `A⁻¹`, row-major.
    a_inv: Vec<f64>,
    /// `Σ r x`.
    b: Vec<f64>,
    /// `A⁻¹ b`.
    theta: Vec<f64>,
    n: u64,
    sum_r: f64,
    sum_r2: f64,
    since_refresh: u64,
}

/// The serialised learner: the sufficient statistics only (the inverses are rebuilt on load).
#[derive(Serialize, Deserialize)]
struct LearnerBody {
    arms: Vec<Arm>,
    policy: PolicyKind,
    dim: usize,
    lambda: f64,
    alpha: f64,
    v: f64,
    stats: Vec<ArmBody>,
}

#[derive(Serialize, Deserialize)]
struct ArmBody {
    a: Vec<f64>,
    b: Vec<f64>,
    n: u64,
    sum_r: f64,
    sum_r2: f64,
}

/// The learner's state: per arm ridge-regression sufficient statistics (`A = λI + Σxxᵀ`, `b = Σ r x`,
/// `n`), the policy and its tuning.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(try_from = "LearnerBody", into = "LearnerBody")]
pub struct Learner {
    arms: Vec<Arm>,
    policy: PolicyKind,
    dim: usize,
    /// Ridge penalty (the prior precision, relative to the noise variance).
    lambda: f64,
    /// LinUCB's width in posterior sds.
    alpha: f64,
    /// Thompson's posterior scale.
    v: f64,
    stats: Vec<ArmStats>,
}

impl From<Learner> for LearnerBody {
    fn from(l: Learner) -> Self {
        LearnerBody {
            arms: l.arms,
            policy: l.policy,
            dim: l.dim,
            lambda: l.lambda,
            alpha: l.alpha,
            v: l.v,
            stats: l
                .stats
                .into_iter()
                .map(|s| ArmBody { a: s.a, b: s.b, n: s.n, sum_r: s.sum_r, sum_r2: s.sum_r2 })
                .collect(),
        }
    }
}

impl TryFrom<LearnerBody> for Learner {
    type Error = DecideError;
    fn try_from(body: LearnerBody) -> Result<Self, DecideError> {
        let d = body.dim;
        let bad = |m: String| DecideError::Body(format!("bandit learner: {m}"));
        if d == 0 || body.arms.is_empty() || body.stats.len() != body.arms.len() {
            return Err(bad(format!(
                "{} arms, {} arm statistics, dimension {d}",
                body.arms.len(),
                body.stats.len()
            )));
        }
        if !(body.lambda > 0.0 && body.alpha >= 0.0 && body.v > 0.0) {
            return Err(bad("lambda and v must be positive and alpha non-negative".into()));
        }
        let mut stats = Vec::with_capacity(body.stats.len());
        for (arm, s) in body.arms.iter().zip(body.stats) {
            if s.a.len() != d * d || s.b.len() != d || s.a.iter().chain(&s.b).any(|v| !v.is_finite()) {
                return Err(bad(format!("arm {}: statistics of the wrong size or not finite", arm.name)));
            }
            let a_inv = spd_inverse(&s.a, d)
                .ok_or_else(|| bad(format!("arm {}: A is not positive definite", arm.name)))?;
            let mut st = ArmStats {
                a: s.a,
                a_inv,
                b: s.b,
                theta: vec![0.0; d],
                n: s.n,
                sum_r: s.sum_r,
                sum_r2: s.sum_r2,
                since_refresh: 0,
            };
            st.solve();
            stats.push(st);
        }
        Ok(Learner {
            arms: body.arms,
            policy: body.policy,
            dim: d,
            lambda: body.lambda,
            alpha: body.alpha,
            v: body.v,
            stats,
        })
    }
}

impl ArmStats {
    fn new(d: usize, lambda: f64) -> ArmStats {
        let mut a = vec![0.0; d * d];
        let mut a_inv = vec![0.0; d * d];
        for i in 0..d {
            a[i * d + i] = lambda;
            a_inv[i * d + i] = 1.0 / lambda;
        }
        ArmStats {
            a,
            a_inv,
            b: vec![0.0; d],
            theta: vec![0.0; d],
            n: 0,
            sum_r: 0.0,
            sum_r2: 0.0,
            since_refresh: 0,
        }
    }

    /// `θ = A⁻¹ b`.
    fn solve(&mut self) {
        let d = self.b.len();
        for i in 0..d {
            let row = &self.a_inv[i * d..(i + 1) * d];
            self.theta[i] = row.iter().zip(&self.b).map(|(a, b)| a * b).sum();
        }
    }

    /// `xᵀA⁻¹x`.
    fn quad(&self, x: &[f64]) -> f64 {
        let d = x.len();
        let mut q = 0.0;
        for i in 0..d {
            let row = &self.a_inv[i * d..(i + 1) * d];
            let ax: f64 = row.iter().zip(x).map(|(a, x)| a * x).sum();
            q += x[i] * ax;
        }
        q.max(0.0)
    }

    /// The residual sum of squares of the ridge fit: `Σr² − θᵀb − λ|θ|²`.
    fn rss(&self, lambda: f64) -> f64 {
        let tb: f64 = self.theta.iter().zip(&self.b).map(|(t, b)| t * b).sum();
        let tt: f64 = self.theta.iter().map(|t| t * t).sum();
        (self.sum_r2 - tb - lambda * tt).max(0.0)
    }
}

/// One arm's numbers behind a choice (recorded in the audit).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ArmEstimate {
    pub name: String,
    /// Whether the guardrails allowed it.
    pub eligible: bool,
    /// The expected reward for this context (`xᵀθ`).
    pub mean: f64,
    /// Its posterior standard deviation (the uncertainty).
    pub sd: f64,
    /// What the policy compared: the Thompson draw or the upper confidence bound (none when not
    /// eligible, or when the decision was a holdout one).
    pub score: Option<f64>,
    /// Outcomes learned from.
    pub n: u64,
}

/// One decision and why.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Choice {
    pub arm: usize,
    pub arm_name: String,
    /// The probability this policy had of choosing this arm (for IPS): within the holdout `1 / eligible`
    /// arms, within the policy Thompson's win probability or 1 for LinUCB.
    pub propensity: f64,
    /// The decision was a uniform-random holdout one.
    pub explored: bool,
    pub seed: u64,
    pub policy: PolicyKind,
    /// No arm was eligible: the cheapest arm was taken without a policy.
    pub no_eligible_arm: bool,
    pub estimates: Vec<ArmEstimate>,
}

/// A deterministic random stream (SplitMix64), stable across platforms and versions.
#[derive(Debug, Clone)]
pub struct SeedStream(u64);

impl SeedStream {
    pub fn new(seed: u64) -> SeedStream {
        SeedStream(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// Standard normal (Box–Muller, one value per call).
    pub fn normal(&mut self) -> f64 {
        let u1 = 1.0 - self.uniform();
        let u2 = self.uniform();
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos()
    }
}

impl Learner {
    /// A learner with no outcomes over [`CONTEXT_DIM`] features: λ = 1, LinUCB α = 1, Thompson v = 1.
    pub fn new(arms: Vec<Arm>, policy: PolicyKind) -> Learner {
        Learner::with_dim(arms, policy, CONTEXT_DIM)
    }

    /// A learner over contexts of `dim` features.
    pub fn with_dim(arms: Vec<Arm>, policy: PolicyKind, dim: usize) -> Learner {
        assert!(dim > 0, "a learner needs at least one feature");
        let lambda = 1.0;
        let stats = arms.iter().map(|_| ArmStats::new(dim, lambda)).collect();
        Learner { arms, policy, dim, lambda, alpha: 1.0, v: 1.0, stats }
    }

    /// Sets the ridge penalty (only before any update: it is part of `A`).
    pub fn with_lambda(mut self, lambda: f64) -> Learner {
        assert!(lambda > 0.0 && self.stats.iter().all(|s| s.n == 0), "lambda is set on a fresh learner, > 0");
        self.lambda = lambda;
        self.stats = self.arms.iter().map(|_| ArmStats::new(self.dim, lambda)).collect();
        self
    }

    /// Sets LinUCB's width (posterior sds above the mean).
    pub fn with_alpha(mut self, alpha: f64) -> Learner {
        self.alpha = alpha.max(0.0);
        self
    }

    /// Sets Thompson's posterior scale.
    pub fn with_v(mut self, v: f64) -> Learner {
        assert!(v > 0.0, "v must be positive");
        self.v = v;
        self
    }

    pub fn arms(&self) -> &[Arm] {
        &self.arms
    }

    pub fn policy(&self) -> PolicyKind {
        self.policy
    }

    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Outcomes learned per arm.
    pub fn counts(&self) -> Vec<u64> {
        self.stats.iter().map(|s| s.n).collect()
    }

    /// Arm `arm`'s ridge estimate `θ = A⁻¹ b`.
    pub fn theta(&self, arm: usize) -> &[f64] {
        &self.stats[arm].theta
    }

    /// Arm `arm`'s `A⁻¹` (row-major, `dim × dim`).
    pub fn a_inv(&self, arm: usize) -> &[f64] {
        &self.stats[arm].a_inv
    }

    /// Arm `arm`'s noise variance estimate (residual variance shrunk toward the pooled second moment).
    pub fn noise_var(&self, arm: usize) -> f64 {
        let (n_all, r2_all) = self.stats.iter().fold((0u64, 0.0), |(n, r2), s| (n + s.n, r2 + s.sum_r2));
        let pooled = if n_all > 0 && r2_all > 0.0 { r2_all / n_all as f64 } else { 1.0 };
        let s = &self.stats[arm];
        const NU0: f64 = 2.0;
        (NU0 * pooled + s.rss(self.lambda)) / (NU0 + s.n as f64)
    }

    /// Adds one outcome (reward = the order value within the window minus the arm's cost; 0 without an
    /// order).
    ///
    /// # Panics
    /// When `arm` is out of range, `context` is not `dim` long, or a value is not finite (use
    /// [`Learner::try_update`] for untrusted input).
    pub fn update(&mut self, arm: usize, context: &[f64], reward: f64) {
        if let Err(e) = self.try_update(arm, context, reward) {
            panic!("{e}");
        }
    }

    /// [`Learner::update`], with an error instead of a panic for bad input.
    pub fn try_update(&mut self, arm: usize, context: &[f64], reward: f64) -> Result<(), DecideError> {
        if arm >= self.arms.len() {
            return Err(DecideError::Input(format!("arm {arm} out of range ({} arms)", self.arms.len())));
        }
        if context.len() != self.dim {
            return Err(DecideError::Input(format!(
                "context has {} features, the learner {}",
                context.len(),
                self.dim
            )));
        }
        if !reward.is_finite() || context.iter().any(|v| !v.is_finite()) {
            return Err(DecideError::Input("reward and context must be finite".into()));
        }
        let d = self.dim;
        let s = &mut self.stats[arm];
        for i in 0..d {
            let xi = context[i];
            let row = &mut s.a[i * d..(i + 1) * d];
            for (a, xj) in row.iter_mut().zip(context) {
                *a += xi * xj;
            }
            s.b[i] += reward * xi;
        }
        s.n += 1;
        s.sum_r += reward;
        s.sum_r2 += reward * reward;
        s.since_refresh += 1;
        if s.since_refresh >= REFRESH_EVERY {
            s.since_refresh = 0;
            if let Some(inv) = spd_inverse(&s.a, d) {
                s.a_inv = inv;
                s.solve();
                return Ok(());
            }
        }
        sherman_morrison(&mut s.a_inv, context, d);
        s.solve();
        Ok(())
    }

    /// Per arm, `(mean, posterior sd)` of the expected reward for `context`.
    pub fn estimates(&self, context: &[f64]) -> Vec<(f64, f64)> {
        (0..self.arms.len())
            .map(|a| {
                let s = &self.stats[a];
                let mean: f64 = s.theta.iter().zip(context).map(|(t, x)| t * x).sum();
                (mean, (self.noise_var(a) * s.quad(context)).sqrt())
            })
            .collect()
    }

    /// The greedy choice (largest expected reward) among `eligible` arms (all when `None`).
    pub fn greedy(&self, context: &[f64], eligible: Option<&[bool]>) -> usize {
        let mut best = (usize::MAX, f64::NEG_INFINITY);
        for a in 0..self.arms.len() {
            if eligible.is_some_and(|e| !e.get(a).copied().unwrap_or(false)) {
                continue;
            }
            let mean: f64 = self.stats[a].theta.iter().zip(context).map(|(t, x)| t * x).sum();
            if best.0 == usize::MAX || mean > best.1 {
                best = (a, mean);
            }
        }
        if best.0 == usize::MAX { 0 } else { best.0 }
    }

    /// Chooses for one customer. `eligible[i]`: the guardrails allow arm i ([`Guardrails::eligible`]).
    /// `seed` makes the choice reproducible. With probability `explore_holdout_percent / 100` (decided
    /// from the seed) the choice is uniform over eligible arms and marked `explored`.
    ///
    /// # Panics
    /// When `context` is not `dim` long.
    pub fn choose(
        &self,
        context: &[f64],
        eligible: &[bool],
        seed: u64,
        explore_holdout_percent: u8,
    ) -> Choice {
        assert_eq!(context.len(), self.dim, "context length");
        let k = self.arms.len();
        let ok: Vec<bool> = (0..k).map(|a| eligible.get(a).copied().unwrap_or(false)).collect();
        let est = self.estimates(context);
        let mut estimates: Vec<ArmEstimate> = (0..k)
            .map(|a| ArmEstimate {
                name: self.arms[a].name.clone(),
                eligible: ok[a],
                mean: est[a].0,
                sd: est[a].1,
                score: None,
                n: self.stats[a].n,
            })
            .collect();
        let candidates: Vec<usize> = (0..k).filter(|&a| ok[a]).collect();
        let choice =
            |arm: usize, propensity: f64, explored: bool, none: bool, estimates: Vec<ArmEstimate>| Choice {
                arm,
                arm_name: self.arms[arm].name.clone(),
                propensity,
                explored,
                seed,
                policy: self.policy,
                no_eligible_arm: none,
                estimates,
            };
        if candidates.is_empty() {
            let cheapest = (0..k)
                .min_by(|&a, &b| {
                    let (x, y) = (&self.arms[a], &self.arms[b]);
                    (x.discount_pct, x.fixed_cost).partial_cmp(&(y.discount_pct, y.fixed_cost)).unwrap()
                })
                .expect("a learner has arms");
            return choice(cheapest, 1.0, false, true, estimates);
        }
        let mut rng = SeedStream::new(seed);
        let coin = rng.uniform();
        if coin < f64::from(explore_holdout_percent.min(100)) / 100.0 {
            let pick =
                candidates[((rng.uniform() * candidates.len() as f64) as usize).min(candidates.len() - 1)];
            return choice(pick, 1.0 / candidates.len() as f64, true, false, estimates);
        }
        match self.policy {
            PolicyKind::LinUcb => {
                let mut best = (candidates[0], f64::NEG_INFINITY);
                for &a in &candidates {
                    let ucb = est[a].0 + self.alpha * est[a].1;
                    estimates[a].score = Some(ucb);
                    if ucb > best.1 {
                        best = (a, ucb);
                    }
                }
                choice(best.0, 1.0, false, false, estimates)
            }
            PolicyKind::Thompson => {
                let mut best = (candidates[0], f64::NEG_INFINITY);
                for &a in &candidates {
                    let draw = est[a].0 + self.v * est[a].1 * rng.normal();
                    estimates[a].score = Some(draw);
                    if draw > best.1 {
                        best = (a, draw);
                    }
                }
                let normals: Vec<(f64, f64)> =
                    candidates.iter().map(|&a| (est[a].0, self.v * est[a].1)).collect();
                let me = candidates.iter().position(|&a| a == best.0).expect("chosen among candidates");
                choice(best.0, win_probability(&normals, me), false, false, estimates)
            }
        }
    }
}

/// `A⁻¹ ← A⁻¹ − (A⁻¹x)(A⁻¹x)ᵀ / (1 + xᵀA⁻¹x)` for `A ← A + x xᵀ` (A⁻¹ symmetric).
fn sherman_morrison(a_inv: &mut [f64], x: &[f64], d: usize) {
    let mut u = [0.0f64; 32];
    let mut heap;
    let u: &mut [f64] = if d <= 32 {
        &mut u[..d]
    } else {
        heap = vec![0.0; d];
        &mut heap
    };
    for i in 0..d {
        u[i] = a_inv[i * d..(i + 1) * d].iter().zip(x).map(|(a, x)| a * x).sum();
    }
    let denom = 1.0 + u.iter().zip(x).map(|(u, x)| u * x).sum::<f64>();
    for i in 0..d {
        let ui = u[i] / denom;
        for (a, uj) in a_inv[i * d..(i + 1) * d].iter_mut().zip(u.iter()) {
            *a -= ui * uj;
        }
    }
}

/// The inverse of a symmetric positive definite `d × d` matrix by Cholesky, or `None` when it is not
/// positive definite.
pub fn spd_inverse(a: &[f64], d: usize) -> Option<Vec<f64>> {
    // A = L Lᵀ.
    let mut l = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            let s: f64 = a[i * d + j] - (0..j).map(|k| l[i * d + k] * l[j * d + k]).sum::<f64>();
            if i == j {
                if s <= 0.0 || !s.is_finite() {
                    return None;
                }
                l[i * d + i] = s.sqrt();
            } else {
                l[i * d + j] = s / l[j * d + j];
            }
        }
    }
    // L⁻¹ (lower triangular), then A⁻¹ = L⁻ᵀ L⁻¹.
    let mut li = vec![0.0; d * d];
    for j in 0..d {
        li[j * d + j] = 1.0 / l[j * d + j];
        for i in j + 1..d {
            let s: f64 = (j..i).map(|k| l[i * d + k] * li[k * d + j]).sum();
            li[i * d + j] = -s / l[i * d + i];
        }
    }
    let mut inv = vec![0.0; d * d];
    for i in 0..d {
        for j in 0..=i {
            let s: f64 = (i..d).map(|k| li[k * d + i] * li[k * d + j]).sum();
            inv[i * d + j] = s;
            inv[j * d + i] = s;
        }
    }
    Some(inv)
}

fn std_normal_cdf(z: f64) -> f64 {
    0.5 * statrs::function::erf::erfc(-z / std::f64::consts::SQRT_2)
}

/// The probability that the `me`-th of independent normals `(mean, sd)` is the largest:
/// `∫ φ_me(t) Π_{j≠me} Φ_j(t) dt`, by Simpson's rule on 96 intervals over `mean ± 8 sd`.
pub fn win_probability(normals: &[(f64, f64)], me: usize) -> f64 {
    if normals.len() == 1 {
        return 1.0;
    }
    let (mu, sd) = normals[me];
    if sd <= 0.0 {
        // A point mass at mu: the probability that every other draw is below it.
        return normals
            .iter()
            .enumerate()
            .filter(|&(j, _)| j != me)
            .map(|(_, &(m, s))| {
                if s > 0.0 {
                    std_normal_cdf((mu - m) / s)
                } else if m < mu {
                    1.0
                } else {
                    0.0
                }
            })
            .product();
    }
    const STEPS: usize = 96;
    let h = 16.0 * sd / STEPS as f64;
    let mut total = 0.0;
    for i in 0..=STEPS {
        let t = mu - 8.0 * sd + h * i as f64;
        let z = (t - mu) / sd;
        let mut f = (-0.5 * z * z).exp() / (sd * (std::f64::consts::TAU).sqrt());
        for (j, &(m, s)) in normals.iter().enumerate() {
            if j != me {
                f *= if s > 0.0 {
                    std_normal_cdf((t - m) / s)
                } else if m < t {
                    1.0
                } else {
                    0.0
                };
            }
        }
        let w = if i == 0 || i == STEPS {
            1.0
        } else if i % 2 == 1 {
            4.0
        } else {
            2.0
        };
        total += w * f;
    }
    (total * h / 3.0).clamp(0.0, 1.0)
}

/// One logged decision and its outcome.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoggedOutcome {
    pub arm: usize,
    pub context: Vec<f64>,
    pub reward: f64,
    pub propensity: f64,
    pub explored: bool,
}

/// An estimate with its standard error and 95 % interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Interval {
    pub estimate: f64,
    pub se: f64,
    pub low: f64,
    pub high: f64,
}

impl Interval {
    fn new(estimate: f64, se: f64) -> Interval {
        Interval { estimate, se, low: estimate - 1.96 * se, high: estimate + 1.96 * se }
    }

    pub fn contains(&self, v: f64) -> bool {
        self.low <= v && v <= self.high
    }
}

/// The off-policy value of the learned greedy policy.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct OpeEstimate {
    pub logged: usize,
    /// Uniform holdout decisions used.
    pub explored: usize,
    /// Of those, the ones where the holdout chose what the greedy policy would.
    pub matched: usize,
    /// Inverse-propensity: `(1/n) Σ 1[π(x)=a] r / p`.
    pub ips: Option<Interval>,
    /// Self-normalised: `Σ w r / Σ w` with `w = 1[π(x)=a] / p` (delta-method standard error).
    pub snips: Option<Interval>,
}

/// Off-policy value of the learned (greedy: largest expected reward over all arms) policy, estimated
/// from the explored (uniform) decisions: inverse-propensity and self-normalised IPS, each with a 95 %
/// normal interval. Decisions with a context of the wrong length or a non-positive propensity are skipped.
pub fn off_policy_value(logged: &[LoggedOutcome], learner: &Learner) -> OpeEstimate {
    let mut w_r = Vec::new();
    let mut ws = Vec::new();
    let mut matched = 0;
    for o in logged {
        if !o.explored
            || o.context.len() != learner.dim
            || o.propensity.is_nan()
            || o.propensity <= 0.0
            || !o.reward.is_finite()
        {
            continue;
        }
        let w = if learner.greedy(&o.context, None) == o.arm { 1.0 / o.propensity } else { 0.0 };
        matched += usize::from(w > 0.0);
        ws.push((w, o.reward));
        w_r.push(w * o.reward);
    }
    let n = ws.len();
    let (ips, snips) = if n == 0 {
        (None, None)
    } else {
        let nf = n as f64;
        let mean = w_r.iter().sum::<f64>() / nf;
        let var = if n > 1 { w_r.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (nf - 1.0) } else { 0.0 };
        let ips = Interval::new(mean, (var / nf).sqrt());
        let sw: f64 = ws.iter().map(|(w, _)| w).sum();
        let snips = (sw > 0.0).then(|| {
            let v = ws.iter().map(|(w, r)| w * r).sum::<f64>() / sw;
            let se = ws.iter().map(|(w, r)| (w * (r - v)).powi(2)).sum::<f64>().sqrt() / sw;
            Interval::new(v, se)
        });
        (Some(ips), snips)
    };
    OpeEstimate { logged: logged.len(), explored: n, matched, ips, snips }
}

/// What `nudge models fit --family bandit` prints: per arm the outcomes, their mean reward and the
/// estimate ± sd at the mean logged context; the off-policy estimate of the greedy policy.
pub fn report(learner: &Learner, logged: &[LoggedOutcome]) -> serde_json::Value {
    let d = learner.dim;
    let usable: Vec<&LoggedOutcome> = logged.iter().filter(|o| o.context.len() == d).collect();
    let mut mean_x = vec![0.0; d];
    for o in &usable {
        for (m, x) in mean_x.iter_mut().zip(&o.context) {
            *m += x / usable.len() as f64;
        }
    }
    if usable.is_empty() {
        mean_x[0] = 1.0;
    }
    let est = learner.estimates(&mean_x);
    let arms: Vec<serde_json::Value> = learner
        .arms
        .iter()
        .enumerate()
        .map(|(a, arm)| {
            let s = &learner.stats[a];
            serde_json::json!({
                "arm": arm.name,
                "discount_pct": arm.discount_pct,
                "fixed_cost": arm.fixed_cost,
                "n": s.n,
                "mean_reward": if s.n > 0 { Some(s.sum_r / s.n as f64) } else { None },
                "estimate_at_mean_context": est[a].0,
                "sd": est[a].1,
                "noise_sd": learner.noise_var(a).sqrt(),
                "theta": CONTEXT_NAMES.iter().zip(&s.theta).map(|(n, t)| (n.to_string(), serde_json::Value::from(*t))).collect::<serde_json::Map<_, _>>(),
            })
        })
        .collect();
    serde_json::json!({
        "policy": learner.policy,
        "features": if d == CONTEXT_DIM { CONTEXT_NAMES.to_vec() } else { Vec::new() },
        "lambda": learner.lambda,
        "alpha": learner.alpha,
        "v": learner.v,
        "arms": arms,
        "off_policy": off_policy_value(logged, learner),
    })
}
