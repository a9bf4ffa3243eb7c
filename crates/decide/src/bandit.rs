//! The offer bandit behind the `choose_offer` flow action: which arm (`none`, `content_only`,
//! `free_shipping`, `pct_N`) to make a customer, learned from outcomes.
//!
//! **Model.** One ridge regression per arm over the context vector ([`context_features`]): the
//! sufficient statistics `A = λI + Σ x xᵀ`, `b = Σ r x`, `n`, `Σ r`, `Σ r²`. The estimate is
//! `θ = A⁻¹ b`; `A⁻¹` is kept up to date by a Sherman–Morrison rank-one update (refreshed from `A` by a
//! Cholesky inverse every [`REFRESH_EVERY`] updates and on load, so rounding cannot accumulate). The
//! noise variance of an arm is estimated from its residuals, shrunk toward the pooled second moment of
//! all rewards (`σ² = (ν₀ s² + RSS) / (ν₀ + max(n − d, 0))`, ν₀ = 20), so the policies need no reward
//! scale. Each arm's estimate is shrunk toward the pooled estimate over all arms (prior mean), not
//! toward 0: `θ_a = A_a⁻¹ (b_a + λ m)`, `m = (λI + Σ_all x xᵀ)⁻¹ Σ_all r x`.
//!
//! **Policies.** For a context `x`, arm `a`'s expected reward is `μ = xᵀθ` with posterior sd
//! `s = σ √(xᵀA⁻¹x)`.
//! - Thompson sampling (linear Thompson): draws `θ̃ ~ N(θ, v² σ² A⁻¹)` per arm and takes the largest
//!   `xᵀθ̃`. Only the scalar `xᵀθ̃ ~ N(μ, v² s²)` matters, so that is what is drawn (the same choice
//!   distribution, d times cheaper). Its propensity — the probability the policy had of choosing the arm
//!   it chose — is computed, not sampled: `P(a) = ∫ φ_a(t) Π_{j≠a} Φ_j(t) dt`, by composite
//!   5-point Gauss–Legendre over `μ_a ± 7 v s_a` (error below 1e-6; tested against scipy's adaptive
//!   quadrature, the two-arm closed form and the frequency of the choices). Deterministic, so the
//!   audit's propensity is reproducible; about 40–80 evaluations of the integrand.
//! - LinUCB: the largest `μ + α s` (deterministic; propensity 1).
//!
//! Defaults: λ = 1, v = 0.5, α = 1 (v = 1 explored too much on the simulator; see BENCHMARKS.md).
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

/// The weight, in outcomes, of the prior on an arm's noise variance (the pooled second moment of the
/// rewards). Large enough that an arm seen a few times on low-variance contexts is not trusted to be
/// precise everywhere — the guard against an arm being starved by early bad luck.
pub const NOISE_PRIOR_WEIGHT: f64 = 20.0;

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

/// What a `choose_offer` action never does. Unknown keys are refused; the default limits nothing
/// (`max_discount_pct` 100).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Guardrails {
    /// Arms with a larger discount are never chosen.
    #[serde(default = "no_discount_limit")]
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

fn no_discount_limit() -> f64 {
    100.0
}

impl Default for Guardrails {
    fn default() -> Self {
        Guardrails {
            max_discount_pct: no_discount_limit(),
            min_days_between_offers: 0,
            skip_if_propensity_above: None,
            margin_floor_pct: None,
            margin_pct: None,
        }
    }
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
    n: u64,
    sum_r: f64,
    sum_r2: f64,
    since_refresh: u64,
}

/// The serialised learner: the sufficient statistics, and the inverses as they were (so that a restored
/// learner makes bit-identical choices; they are checked against `A` on load).
#[derive(Serialize, Deserialize)]
struct LearnerBody {
    arms: Vec<Arm>,
    policy: PolicyKind,
    dim: usize,
    lambda: f64,
    alpha: f64,
    v: f64,
    pool: ArmBody,
    stats: Vec<ArmBody>,
}

#[derive(Serialize, Deserialize)]
struct ArmBody {
    #[serde(with = "exact")]
    a: Vec<f64>,
    #[serde(with = "exact")]
    a_inv: Vec<f64>,
    #[serde(with = "exact")]
    b: Vec<f64>,
    n: u64,
    /// `[Σ r, Σ r²]`.
    #[serde(with = "exact")]
    sums: Vec<f64>,
    since_refresh: u64,
}

/// Numbers as their shortest round-trip decimal strings: JSON number parsers need not round correctly,
/// and a restored learner must choose bit-identically.
mod exact {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[f64], s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(v.iter().map(|x| format!("{x:?}")))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<f64>, D::Error> {
        Vec::<String>::deserialize(d)?
            .iter()
            .map(|t| t.parse::<f64>().map_err(|_| serde::de::Error::custom(format!("not a number: {t:?}"))))
            .collect()
    }
}

impl From<ArmStats> for ArmBody {
    fn from(s: ArmStats) -> Self {
        ArmBody {
            a: s.a,
            a_inv: s.a_inv,
            b: s.b,
            n: s.n,
            sums: vec![s.sum_r, s.sum_r2],
            since_refresh: s.since_refresh,
        }
    }
}

impl ArmBody {
    /// Checks sizes, finiteness and that `A⁻¹` inverts `A` (to 1e-6 relative).
    fn into_stats(self, d: usize, what: &str) -> Result<ArmStats, DecideError> {
        let bad = |m: &str| DecideError::Body(format!("bandit learner, {what}: {m}"));
        if self.a.len() != d * d || self.a_inv.len() != d * d || self.b.len() != d || self.sums.len() != 2 {
            return Err(bad("statistics of the wrong size"));
        }
        if self.a.iter().chain(&self.a_inv).chain(&self.b).chain(&self.sums).any(|v| !v.is_finite()) {
            return Err(bad("statistics not finite"));
        }
        let exact = spd_inverse(&self.a, d).ok_or_else(|| bad("A is not positive definite"))?;
        let scale = exact.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        if exact.iter().zip(&self.a_inv).any(|(e, g)| (e - g).abs() > 1e-6 * scale) {
            return Err(bad("the stored inverse does not invert A"));
        }
        Ok(ArmStats {
            a: self.a,
            a_inv: self.a_inv,
            b: self.b,
            n: self.n,
            sum_r: self.sums[0],
            sum_r2: self.sums[1],
            since_refresh: self.since_refresh,
        })
    }
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
    /// All arms' outcomes together (`A = λI + Σ_all x xᵀ`): the pooled estimate each arm is shrunk
    /// toward.
    pool: ArmStats,
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
            pool: l.pool.into(),
            stats: l.stats.into_iter().map(ArmBody::from).collect(),
        }
    }
}

impl TryFrom<LearnerBody> for Learner {
    type Error = DecideError;
    fn try_from(body: LearnerBody) -> Result<Self, DecideError> {
        let d = body.dim;
        let bad = |m: String| DecideError::Body(format!("bandit learner: {m}"));
        if d == 0 || d > 64 || body.arms.is_empty() || body.stats.len() != body.arms.len() {
            return Err(bad(format!(
                "{} arms, {} arm statistics, dimension {d}",
                body.arms.len(),
                body.stats.len()
            )));
        }
        if !(body.lambda > 0.0 && body.alpha >= 0.0 && body.v > 0.0) {
            return Err(bad("lambda and v must be positive and alpha non-negative".into()));
        }
        let stats = body
            .arms
            .iter()
            .zip(body.stats)
            .map(|(arm, s)| s.into_stats(d, &format!("arm {}", arm.name)))
            .collect::<Result<Vec<_>, _>>()?;
        let pool = body.pool.into_stats(d, "pooled statistics")?;
        if pool.n != stats.iter().map(|s| s.n).sum::<u64>() {
            return Err(bad("the pooled count is not the sum of the arms'".into()));
        }
        let learner = Learner {
            arms: body.arms,
            policy: body.policy,
            dim: d,
            lambda: body.lambda,
            alpha: body.alpha,
            v: body.v,
            pool,
            stats,
        };
        Ok(learner)
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
        ArmStats { a, a_inv, b: vec![0.0; d], n: 0, sum_r: 0.0, sum_r2: 0.0, since_refresh: 0 }
    }

    /// `θ = A⁻¹ (b + λ m)` (the ridge estimate shrunk toward the prior mean `m`, none = 0), and the
    /// residual sum of squares there, `Σr² − 2θᵀb + θᵀ(A − λI)θ`.
    fn solve(&self, prior_mean: Option<&[f64]>, lambda: f64) -> (Vec<f64>, f64) {
        let d = self.b.len();
        let mut rhs = [0.0f64; 64];
        for i in 0..d {
            rhs[i] = self.b[i] + prior_mean.map_or(0.0, |m| lambda * m[i]);
        }
        let theta: Vec<f64> = (0..d)
            .map(|i| self.a_inv[i * d..(i + 1) * d].iter().zip(&rhs[..d]).map(|(a, b)| a * b).sum())
            .collect();
        let mut quad = 0.0;
        for i in 0..d {
            let row = &self.a[i * d..(i + 1) * d];
            let at: f64 = row.iter().zip(&theta).map(|(a, t)| a * t).sum();
            quad += theta[i] * (at - lambda * theta[i]);
        }
        let tb: f64 = theta.iter().zip(&self.b).map(|(t, b)| t * b).sum();
        (theta, (self.sum_r2 - 2.0 * tb + quad).max(0.0))
    }

    /// Adds `x xᵀ` to `A` and `r x` to `b` and updates `A⁻¹` (Sherman–Morrison, or an exact refresh
    /// every [`REFRESH_EVERY`] updates).
    fn add(&mut self, x: &[f64], r: f64) {
        let d = x.len();
        for i in 0..d {
            let xi = x[i];
            let row = &mut self.a[i * d..(i + 1) * d];
            for (a, xj) in row.iter_mut().zip(x) {
                *a += xi * xj;
            }
            self.b[i] += r * xi;
        }
        self.n += 1;
        self.sum_r += r;
        self.sum_r2 += r * r;
        self.since_refresh += 1;
        if self.since_refresh >= REFRESH_EVERY {
            self.since_refresh = 0;
            if let Some(inv) = spd_inverse(&self.a, d) {
                self.a_inv = inv;
                return;
            }
        }
        sherman_morrison(&mut self.a_inv, x, d);
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

/// A learner's estimates at one moment: per arm `θ = A⁻¹ (b + λ m)` (`m` the pooled estimate) and the
/// noise variance (the residual variance, on about n − d degrees of freedom, shrunk toward the pooled
/// second moment of the rewards with weight [`NOISE_PRIOR_WEIGHT`]).
#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    pub thetas: Vec<Vec<f64>>,
    pub noise: Vec<f64>,
}

impl Fit {
    /// The greedy choice (largest expected reward) among `eligible` arms (all when `None`).
    pub fn greedy(&self, context: &[f64], eligible: Option<&[bool]>) -> usize {
        let mut best = (usize::MAX, f64::NEG_INFINITY);
        for (a, theta) in self.thetas.iter().enumerate() {
            if eligible.is_some_and(|e| !e.get(a).copied().unwrap_or(false)) {
                continue;
            }
            let mean: f64 = theta.iter().zip(context).map(|(t, x)| t * x).sum();
            if best.0 == usize::MAX || mean > best.1 {
                best = (a, mean);
            }
        }
        if best.0 == usize::MAX { 0 } else { best.0 }
    }
}

impl Learner {
    /// A learner with no outcomes over [`CONTEXT_DIM`] features: λ = 1, LinUCB α = 1, Thompson v = 0.5.
    pub fn new(arms: Vec<Arm>, policy: PolicyKind) -> Learner {
        Learner::with_dim(arms, policy, CONTEXT_DIM)
    }

    /// A learner over contexts of `dim` features.
    pub fn with_dim(arms: Vec<Arm>, policy: PolicyKind, dim: usize) -> Learner {
        assert!(dim > 0 && dim <= 64, "a learner has 1 to 64 features");
        let lambda = 1.0;
        let stats = arms.iter().map(|_| ArmStats::new(dim, lambda)).collect();
        Learner { arms, policy, dim, lambda, alpha: 1.0, v: 0.5, pool: ArmStats::new(dim, lambda), stats }
    }

    /// Sets the ridge penalty (only before any update: it is part of `A`).
    pub fn with_lambda(mut self, lambda: f64) -> Learner {
        assert!(lambda > 0.0 && self.stats.iter().all(|s| s.n == 0), "lambda is set on a fresh learner, > 0");
        self.lambda = lambda;
        self.stats = self.arms.iter().map(|_| ArmStats::new(self.dim, lambda)).collect();
        self.pool = ArmStats::new(self.dim, lambda);
        self
    }

    /// Every arm's estimate toward the current pooled estimate and its noise variance.
    pub fn fit(&self) -> Fit {
        let (m, _) = self.pool.solve(None, self.lambda);
        let (n_all, r2_all) = (self.pool.n, self.pool.sum_r2);
        let pooled = if n_all > 0 && r2_all > 0.0 { r2_all / n_all as f64 } else { 1.0 };
        let nu0 = NOISE_PRIOR_WEIGHT;
        let (thetas, noise): (Vec<Vec<f64>>, Vec<f64>) = self
            .stats
            .iter()
            .map(|s| {
                let (theta, rss) = s.solve(Some(&m), self.lambda);
                // The residuals of a d-parameter fit have about n − d degrees of freedom.
                let dof = (s.n as f64 - self.dim as f64).max(0.0);
                (theta, (nu0 * pooled + rss) / (nu0 + dof))
            })
            .unzip();
        Fit { thetas, noise }
    }

    /// The same statistics under another policy.
    pub fn with_policy(mut self, policy: PolicyKind) -> Learner {
        self.policy = policy;
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

    /// Arm `arm`'s estimate `θ = A⁻¹ (b + λ m)`, `m` the pooled estimate.
    pub fn theta(&self, arm: usize) -> Vec<f64> {
        self.fit().thetas.swap_remove(arm)
    }

    /// Arm `arm`'s `A⁻¹` (row-major, `dim × dim`).
    pub fn a_inv(&self, arm: usize) -> &[f64] {
        &self.stats[arm].a_inv
    }

    /// Arm `arm`'s noise variance estimate (residual variance shrunk toward the pooled second moment).
    pub fn noise_var(&self, arm: usize) -> f64 {
        self.fit().noise[arm]
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
        self.stats[arm].add(context, reward);
        self.pool.add(context, reward);
        Ok(())
    }

    /// Per arm, `(mean, posterior sd)` of the expected reward for `context`.
    pub fn estimates(&self, context: &[f64]) -> Vec<(f64, f64)> {
        let fit = self.fit();
        (0..self.arms.len())
            .map(|a| {
                let mean: f64 = fit.thetas[a].iter().zip(context).map(|(t, x)| t * x).sum();
                (mean, (fit.noise[a] * self.stats[a].quad(context)).sqrt())
            })
            .collect()
    }

    /// The greedy choice (largest expected reward) among `eligible` arms (all when `None`).
    pub fn greedy(&self, context: &[f64], eligible: Option<&[bool]>) -> usize {
        self.fit().greedy(context, eligible)
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
                    x.discount_pct.total_cmp(&y.discount_pct).then(x.fixed_cost.total_cmp(&y.fixed_cost))
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
/// `∫ φ_me(t) Π_{j≠me} Φ_j(t) dt`, by composite 5-point Gauss–Legendre over `mean ± 7 sd` (broken where
/// another arm's Φ varies; sub-intervals of at most 1.5 of the smallest sd varying there).
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
    let integrand = |t: f64| {
        let z = (t - mu) / sd;
        let mut f = (-0.5 * z * z).exp() / (sd * (std::f64::consts::TAU).sqrt());
        for (j, &(m, s)) in normals.iter().enumerate() {
            if j == me {
                continue;
            }
            // Φ is 1 to within 1e-15 above 8 sds and 0 below −8 (no erfc needed).
            let zj = if s > 0.0 {
                (t - m) / s
            } else if m < t {
                f64::INFINITY
            } else {
                f64::NEG_INFINITY
            };
            if zj < -8.0 {
                return 0.0;
            }
            if zj < 8.0 {
                f *= std_normal_cdf(zj);
            }
        }
        f
    };
    // Over [mu − 7 sd, mu + 7 sd], broken where another arm's Φ rises (its mean ± 8 of its sds); each
    // piece in sub-intervals of at most 1.5 of the smallest sd varying on it, each by 5-point
    // Gauss–Legendre (exact for polynomials of degree 9).
    const NODES: [f64; 5] = [
        0.0,
        -0.538_469_310_105_683_1,
        0.538_469_310_105_683_1,
        -0.906_179_845_938_664,
        0.906_179_845_938_664,
    ];
    const WEIGHTS: [f64; 5] = [
        0.568_888_888_888_888_9,
        0.478_628_670_499_366_5,
        0.478_628_670_499_366_5,
        0.236_926_885_056_189_1,
        0.236_926_885_056_189_1,
    ];
    let (lo, hi) = (mu - 7.0 * sd, mu + 7.0 * sd);
    let mut cuts = vec![lo, hi];
    for (j, &(m, s)) in normals.iter().enumerate() {
        if j != me {
            cuts.extend([m - 8.0 * s, m + 8.0 * s].into_iter().filter(|&c| c > lo && c < hi));
        }
    }
    cuts.sort_by(|a, b| a.partial_cmp(b).expect("finite"));
    let mut total = 0.0;
    for w in cuts.windows(2) {
        let (p, q) = (w[0], w[1]);
        if q - p <= 0.0 {
            continue;
        }
        let scale = normals
            .iter()
            .enumerate()
            .filter(|&(j, &(m, s))| j != me && s > 0.0 && m - 8.0 * s < q && m + 8.0 * s > p)
            .fold(sd, |acc, (_, &(_, s))| acc.min(s));
        let pieces = (((q - p) / (1.5 * scale)).ceil() as usize).clamp(1, 256);
        let h = (q - p) / pieces as f64;
        for k in 0..pieces {
            let mid = p + h * (k as f64 + 0.5);
            total += 0.5
                * h
                * NODES.iter().zip(WEIGHTS).map(|(x, w)| w * integrand(mid + 0.5 * h * x)).sum::<f64>();
        }
    }
    total.clamp(0.0, 1.0)
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
    let fit = learner.fit();
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
        let w = if fit.greedy(&o.context, None) == o.arm { 1.0 / o.propensity } else { 0.0 };
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
    let fit = learner.fit();
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
                "theta": CONTEXT_NAMES.iter().zip(&fit.thetas[a]).map(|(n, t)| (n.to_string(), serde_json::Value::from(*t))).collect::<serde_json::Map<_, _>>(),
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

#[cfg(test)]
#[allow(clippy::needless_range_loop)]
mod tests {
    use super::*;

    #[test]
    fn incremental_estimate_matches_a_direct_solve() {
        let arms = vec![Arm::parse("none", 0.0).unwrap(), Arm::parse("pct_10", 0.0).unwrap()];
        let d = 4;
        let mut l = Learner::with_dim(arms, PolicyKind::Thompson, d);
        let mut rng = SeedStream::new(3);
        let mut a = [vec![0.0; d * d], vec![0.0; d * d]];
        let mut b = [vec![0.0; d], vec![0.0; d]];
        for t in 0..20_000 {
            let arm = t % 2;
            let x = [1.0, rng.uniform(), rng.uniform(), rng.normal()];
            let r = 3.0 * x[1] - 2.0 * x[3] + arm as f64 + rng.normal();
            l.update(arm, &x, r);
            for i in 0..d {
                for j in 0..d {
                    a[arm][i * d + j] += x[i] * x[j];
                }
                b[arm][i] += r * x[i];
            }
        }
        // Pooled: λI + ΣΣ xxᵀ.
        let mut ap = vec![0.0; d * d];
        let mut bp = vec![0.0; d];
        for k in 0..2 {
            for i in 0..d * d {
                ap[i] += a[k][i];
            }
            for i in 0..d {
                bp[i] += b[k][i];
            }
        }
        for i in 0..d {
            ap[i * d + i] += 1.0;
        }
        let ip = spd_inverse(&ap, d).unwrap();
        let m: Vec<f64> = (0..d).map(|i| (0..d).map(|j| ip[i * d + j] * bp[j]).sum()).collect();
        for k in 0..2 {
            let mut ak = a[k].clone();
            for i in 0..d {
                ak[i * d + i] += 1.0;
            }
            let ik = spd_inverse(&ak, d).unwrap();
            let theta: Vec<f64> =
                (0..d).map(|i| (0..d).map(|j| ik[i * d + j] * (b[k][j] + m[j])).sum()).collect();
            for i in 0..d {
                assert!(
                    (theta[i] - l.theta(k)[i]).abs() < 1e-9,
                    "arm {k} θ{i}: {} vs {}",
                    theta[i],
                    l.theta(k)[i]
                );
            }
        }
    }
}
