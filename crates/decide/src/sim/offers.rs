//! The offer scenario: a store whose customers' response to each offer arm is known, on which the
//! bandit policies are compared with uniform random, ε-greedy and the oracle.
//!
//! **Generative process** (seeded; all draws from one `StdRng`):
//! - `customers` customers, each with a loyalty `ℓ ~ U(0,1)`, a typical order value
//!   `aov ~ 60·LogNormal(0, 0.35)` and a deal habit: 35 % are deal seekers (`h ~ U(0.6, 1)`), the rest
//!   are not (`h ~ U(0, 0.2)`).
//! - A decision picks a customer uniformly and draws their situation: orders `~ Poisson(8ℓ²)`, days since
//!   the last order `~ Exp(mean 10 + 200(1−ℓ))`, opens and clicks in 30 days `~ Poisson(1 + 10ℓ)`, offers
//!   in 90 days `~ Poisson(4h)`, days since the last costly offer `U(0,90)` when there were offers, an open
//!   cart (50 %) worth `aov·U(0.7,1.3)`. The context is these in the layout of
//!   [`crate::bandit::CONTEXT_NAMES`] (the same scalings as [`crate::bandit::context_features`]), with the
//!   propensity model's score = the true baseline plus `N(0, 0.05)` noise.
//! - Latent (never shown to the learners): the baseline purchase probability per shopping occasion
//!   `p₀ = clamp(0.1 + 0.35·orders + 0.2·engagement − 0.05·days_since_order + N(0, 0.08), 0.005, 0.9)`
//!   (features as in the context; the noise is the day's intent, which only the score sees) and the price
//!   sensitivity `σ = clamp(0.04 − 0.03·orders + 1.1·offers_90d + N(0, 0.02), 0, 1)` (deal seekers are
//!   the ones who have been getting offers).
//! - TRUE response curves: in a decision's window the customer has [`OCCASIONS`] (4) shopping occasions;
//!   on each, arm `a` converts with `p_a = clamp(p₀ + c_a + σ·L_a, 0, 0.98)` where `L` is [`LIFT`]
//!   (`none` 0, `content_only` 0, `free_shipping` 0.15, `pct_10` 0.3, `pct_15` 0.6) and content helps the
//!   engaged and annoys the rest: `c_content_only = 0.25·(engagement − 0.4)`, 0 for the other arms. An
//!   order is worth `60·LogNormal(−0.03125, 0.25)` (mean 60). The reward is the window's order value net of
//!   the arm's cost (`N %` of each order, or the 6.00 shipping), 0 without an order; its expectation is
//!   `4·p_a·(60 − cost_a(60))`.
//!
//! The expected reward is (up to the clamps) linear in the context, so the per-arm linear models can
//! represent the truth: the comparison is of exploration, which is what the bars are about (ε-greedy uses
//! the same models). With one occasion per window instead of four the rewards are twice as noisy relative
//! to the gaps between arms and every learner needs about four times the data; see BENCHMARKS.md.
//!
//! **Evaluation.** [`DECISIONS`] decisions (50,000; the horizon is counted in decisions, `days` is not
//! used) over the arms `none, content_only, free_shipping, pct_10, pct_15`, all eligible (the guardrails
//! are tested separately). Every policy sees the same contexts and the same outcome randomness. Regret is
//! the pseudo-regret `Σ (E[r | x, best arm] − E[r | x, chosen arm])` against the oracle (the true best
//! arm per context). Policies: uniform random; ε-greedy (ε = 0.1, the same per-arm ridge models, greedy
//! otherwise); LinUCB (α = 1); Thompson (v = 0.5), both without a holdout; and Thompson as `choose_offer`
//! runs it, with a 5 % uniform holdout, whose holdout decisions give the off-policy estimate of the final
//! (greedy) Thompson policy, compared with that policy's TRUE value (its expected reward over 100,000
//! fresh contexts). The holdout costs about 5 % of uniform's regret by construction, so the regret bars
//! are measured on the policies without it.

use super::{SimArgs, SimReport};
use crate::bandit::{
    Arm, BASKET_SCALE, CONTEXT_DIM, Learner, LoggedOutcome, OpeEstimate, PolicyKind, SeedStream,
    off_policy_value,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Exp, LogNormal, Normal, Poisson};

/// Decisions per policy.
pub const DECISIONS: usize = 50_000;
/// The holdout of the Thompson run the off-policy estimate comes from.
pub const HOLDOUT_PERCENT: u8 = 5;
/// Free shipping's cost per order.
pub const SHIPPING_COST: f64 = 6.0;
/// The arms simulated.
pub const ARMS: [&str; 5] = ["none", "content_only", "free_shipping", "pct_10", "pct_15"];
/// The conversion lift of each arm for a fully price-sensitive customer.
pub const LIFT: [f64; 5] = [0.0, 0.0, 0.15, 0.3, 0.6];
/// Shopping occasions in a decision's window.
pub const OCCASIONS: usize = 4;
/// The mean order value of a conversion.
pub const MEAN_ORDER_VALUE: f64 = 60.0;

struct Customer {
    loyalty: f64,
    aov: f64,
    deal_habit: f64,
}

/// One decision's situation: what the learner sees and what it does not.
#[derive(Debug, Clone)]
pub struct Situation {
    /// The context, in [`crate::bandit::CONTEXT_NAMES`] order.
    pub context: Vec<f64>,
    /// Baseline purchase probability without an offer.
    pub p0: f64,
    /// Price sensitivity.
    pub sensitivity: f64,
    /// Expected order value.
    pub value: f64,
}

/// The simulated store.
pub struct World {
    customers: Vec<Customer>,
    pub arms: Vec<Arm>,
}

impl World {
    pub fn new(customers: usize, rng: &mut StdRng) -> World {
        let aov = LogNormal::new(60f64.ln(), 0.35).expect("valid");
        let customers = (0..customers.max(1))
            .map(|_| Customer {
                loyalty: rng.r#gen(),
                aov: aov.sample(rng),
                deal_habit: if rng.gen_bool(0.35) {
                    rng.gen_range(0.6..1.0)
                } else {
                    rng.gen_range(0.0..0.2)
                },
            })
            .collect();
        let arms = ARMS.iter().map(|a| Arm::parse(a, SHIPPING_COST).expect("known arm")).collect();
        World { customers, arms }
    }

    /// Draws one decision's situation.
    pub fn situation(&self, rng: &mut StdRng) -> Situation {
        let c = &self.customers[rng.gen_range(0..self.customers.len())];
        let orders = if c.loyalty > 0.0 {
            Poisson::new(8.0 * c.loyalty * c.loyalty).expect("rate").sample(rng)
        } else {
            0.0
        };
        let mut x = vec![0.0; CONTEXT_DIM];
        x[0] = 1.0;
        x[3] = ((1.0 + orders).ln() / 21f64.ln()).min(1.0);
        x[4] = if orders > 0.0 {
            let days = Exp::new(1.0 / (10.0 + 200.0 * (1.0 - c.loyalty))).expect("rate").sample(rng);
            (days / 365.0).min(1.0)
        } else {
            1.0
        };
        let engaged = Poisson::new(1.0 + 10.0 * c.loyalty).expect("rate").sample(rng);
        x[5] = ((1.0 + engaged).ln() / 31f64.ln()).min(1.0);
        let offers = if c.deal_habit > 0.0 {
            Poisson::new(4.0 * c.deal_habit).expect("rate").sample(rng)
        } else {
            0.0
        };
        x[6] = if offers > 0.0 { rng.gen_range(0.0..1.0) } else { 1.0 };
        x[7] = (offers / 5.0).min(1.0);
        let cart = rng.gen_bool(0.5).then(|| c.aov * rng.gen_range(0.7..1.3));
        let basket = cart.or((orders > 0.0).then_some(c.aov));
        x[8] = (basket.unwrap_or(0.0) / BASKET_SCALE).min(1.0);
        // The baseline: a linear function of the history plus what the history does not show (an open
        // cart, the day's intent), which the propensity score sees through its noise.
        let intent = Normal::new(0.0, 0.08).expect("sd").sample(rng);
        let p0 = (0.1 + 0.35 * x[3] + 0.2 * x[5] - 0.05 * x[4] + intent).clamp(0.005, 0.9);
        let noise = Normal::new(0.0, 0.05).expect("sd").sample(rng);
        x[1] = (p0 + noise).clamp(0.0, 1.0);
        x[9] = x[8] * x[1];
        let quirk = Normal::new(0.0, 0.02).expect("sd").sample(rng);
        let sensitivity = (0.04 - 0.03 * x[3] + 1.1 * x[7] + quirk).clamp(0.0, 1.0);
        Situation { context: x, p0, sensitivity, value: MEAN_ORDER_VALUE }
    }

    /// The TRUE conversion probability of arm `a` in situation `s`, per shopping occasion.
    pub fn conversion(&self, s: &Situation, a: usize) -> f64 {
        let content = if ARMS[a] == "content_only" { 0.25 * (s.context[5] - 0.4) } else { 0.0 };
        (s.p0 + content + s.sensitivity * LIFT[a]).clamp(0.0, 0.98)
    }

    /// The TRUE expected reward of arm `a` in situation `s`.
    pub fn expected_reward(&self, s: &Situation, a: usize) -> f64 {
        OCCASIONS as f64 * self.conversion(s, a) * (s.value - self.arms[a].cost(s.value))
    }

    /// The oracle's arm and its expected reward.
    pub fn best(&self, s: &Situation) -> (usize, f64) {
        (0..self.arms.len())
            .map(|a| (a, self.expected_reward(s, a)))
            .fold((0, f64::NEG_INFINITY), |b, c| if c.1 > b.1 { c } else { b })
    }
}

/// How a policy did.
#[derive(Debug, Clone)]
pub struct PolicyRun {
    pub name: &'static str,
    pub regret: f64,
    /// Realised reward.
    pub reward: f64,
    /// Decisions per arm.
    pub chosen: Vec<u64>,
}

/// The scenario's figures.
#[derive(Debug, Clone)]
pub struct OffersResult {
    pub decisions: usize,
    /// The oracle's expected reward summed over the decisions.
    pub oracle_reward: f64,
    /// Uniform, ε-greedy, LinUCB, Thompson, Thompson with the holdout.
    pub runs: Vec<PolicyRun>,
    pub ope: OpeEstimate,
    /// The TRUE value per decision of the final Thompson (greedy) policy.
    pub true_value: f64,
    /// The oracle's value per decision.
    pub oracle_value: f64,
}

impl OffersResult {
    pub fn regret(&self, name: &str) -> f64 {
        self.runs.iter().find(|r| r.name == name).map(|r| r.regret).unwrap_or(f64::NAN)
    }
}

enum Policy {
    Uniform,
    EpsGreedy(Learner),
    Bandit(Learner, u8),
}

/// Runs `decisions` decisions per policy in the world of `args`.
pub fn run(args: &SimArgs, decisions: usize) -> OffersResult {
    let mut rng = StdRng::seed_from_u64(args.seed);
    let world = World::new(args.customers, &mut rng);
    let situations: Vec<Situation> = (0..decisions).map(|_| world.situation(&mut rng)).collect();
    // Common outcome randomness: the conversion coin and the order value's noise.
    let value_noise = LogNormal::new(-0.03125, 0.25).expect("valid");
    let outcomes: Vec<[(f64, f64); OCCASIONS]> = (0..decisions)
        .map(|_| std::array::from_fn(|_| (rng.r#gen(), value_noise.sample(&mut rng))))
        .collect();
    let best: Vec<(usize, f64)> = situations.iter().map(|s| world.best(s)).collect();
    let oracle_reward = best.iter().map(|b| b.1).sum();
    let arms = world.arms.clone();
    let k = arms.len();
    let all = vec![true; k];
    let policies = vec![
        ("uniform", Policy::Uniform),
        ("epsilon_greedy", Policy::EpsGreedy(Learner::new(arms.clone(), PolicyKind::Thompson))),
        ("linucb", Policy::Bandit(Learner::new(arms.clone(), PolicyKind::LinUcb), 0)),
        ("thompson", Policy::Bandit(Learner::new(arms.clone(), PolicyKind::Thompson), 0)),
        (
            "thompson_holdout",
            Policy::Bandit(Learner::new(arms.clone(), PolicyKind::Thompson), HOLDOUT_PERCENT),
        ),
    ];
    let mut runs = Vec::new();
    let mut logged = Vec::new();
    let mut final_learner = None;
    for (p, (name, mut policy)) in policies.into_iter().enumerate() {
        let mut stream = SeedStream::new(args.seed ^ (0xA5A5_0000 + p as u64));
        let (mut regret, mut reward) = (0.0, 0.0);
        let mut chosen = vec![0u64; k];
        for (t, s) in situations.iter().enumerate() {
            let (arm, propensity, explored) = match &policy {
                Policy::Uniform => ((stream.uniform() * k as f64) as usize % k, 1.0 / k as f64, true),
                Policy::EpsGreedy(l) => {
                    if stream.uniform() < 0.1 {
                        ((stream.uniform() * k as f64) as usize % k, 1.0 / k as f64, true)
                    } else {
                        (l.greedy(&s.context, None), 1.0, false)
                    }
                }
                Policy::Bandit(l, holdout) => {
                    let c = l.choose(&s.context, &all, stream.next_u64(), *holdout);
                    (c.arm, c.propensity, c.explored)
                }
            };
            let p = world.conversion(s, arm);
            let r: f64 = outcomes[t]
                .iter()
                .filter(|(coin, _)| *coin < p)
                .map(|(_, noise)| {
                    let v = s.value * noise;
                    v - arms[arm].cost(v)
                })
                .sum();
            regret += best[t].1 - world.expected_reward(s, arm);
            reward += r;
            chosen[arm] += 1;
            match &mut policy {
                Policy::Uniform => {}
                Policy::EpsGreedy(l) | Policy::Bandit(l, _) => l.update(arm, &s.context, r),
            }
            if name == "thompson_holdout" {
                logged.push(LoggedOutcome {
                    arm,
                    context: s.context.clone(),
                    reward: r,
                    propensity,
                    explored,
                });
            }
        }
        runs.push(PolicyRun { name, regret, reward, chosen });
        if let Policy::Bandit(l, h) = policy
            && h > 0
        {
            final_learner = Some(l);
        }
    }
    let learner = final_learner.expect("the holdout run");
    let ope = off_policy_value(&logged, &learner);
    let fresh = 100_000;
    let (mut true_value, mut oracle_value) = (0.0, 0.0);
    for _ in 0..fresh {
        let s = world.situation(&mut rng);
        true_value += world.expected_reward(&s, learner.greedy(&s.context, None));
        oracle_value += world.best(&s).1;
    }
    OffersResult {
        decisions,
        oracle_reward,
        runs,
        ope,
        true_value: true_value / fresh as f64,
        oracle_value: oracle_value / fresh as f64,
    }
}

/// Runs the scenario ([`DECISIONS`] decisions per policy) and evaluates the policies on it.
pub fn evaluate(args: &SimArgs) -> SimReport {
    render(args, &run(args, DECISIONS))
}

/// The table and JSON of a run.
pub fn render(args: &SimArgs, r: &OffersResult) -> SimReport {
    let uniform = r.regret("uniform");
    let eps = r.regret("epsilon_greedy");
    let mut text = format!(
        "Offers: {} decisions per policy, {} customers, seed {}; arms {}\n\
         oracle expected reward {:.0} ({:.2} per decision)\n\n\
         {:<18} {:>12} {:>10} {:>10} {:>12}  decisions per arm\n",
        r.decisions,
        args.customers,
        args.seed,
        ARMS.join(", "),
        r.oracle_reward,
        r.oracle_reward / r.decisions as f64,
        "policy",
        "regret",
        "÷ uniform",
        "÷ ε-greedy",
        "reward"
    );
    for run in &r.runs {
        text.push_str(&format!(
            "{:<18} {:>12.0} {:>9.1}% {:>9.1}% {:>12.0}  {:?}\n",
            run.name,
            run.regret,
            100.0 * run.regret / uniform,
            100.0 * run.regret / eps,
            run.reward,
            run.chosen
        ));
    }
    let fmt = |i: &Option<crate::bandit::Interval>| match i {
        Some(i) => format!("{:.3} [{:.3}, {:.3}]", i.estimate, i.low, i.high),
        None => "n/a".into(),
    };
    text.push_str(&format!(
        "\nOff-policy value of the final Thompson policy (greedy), from {} holdout decisions ({} matched):\n\
         IPS   {}\nSNIPS {}\nTRUE  {:.3} per decision (oracle {:.3})\n",
        r.ope.explored,
        r.ope.matched,
        fmt(&r.ope.ips),
        fmt(&r.ope.snips),
        r.true_value,
        r.oracle_value
    ));
    let json = serde_json::json!({
        "decisions": r.decisions,
        "customers": args.customers,
        "seed": args.seed,
        "arms": ARMS,
        "oracle_reward": r.oracle_reward,
        "policies": r.runs.iter().map(|run| serde_json::json!({
            "policy": run.name,
            "regret": run.regret,
            "regret_vs_uniform": run.regret / uniform,
            "regret_vs_epsilon_greedy": run.regret / eps,
            "reward": run.reward,
            "chosen": run.chosen,
        })).collect::<Vec<_>>(),
        "off_policy": r.ope,
        "true_value": r.true_value,
        "oracle_value": r.oracle_value,
    });
    SimReport { scenario: "offers", text, json }
}
