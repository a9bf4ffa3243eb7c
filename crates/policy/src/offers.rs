//! The `choose_offer` flow action: which offer arm a flow makes to a customer, chosen by the offer bandit
//! (`nudge_decide::bandit`) within the flow's guardrails. The arm travels with the flow's other actions (a
//! trigger event's `<prefix>offer` property, a profile's `<prefix>next_best_offer`); the arm `none`
//! sends no marketing action at all, so the bandit also learns whether a message pays.

use nudge_decide::bandit::{self, Arm, Choice, Guardrails, Learner, PolicyKind};
use nudge_model::Timestamp;
use nudge_state::CustomerState;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// `{ type = "choose_offer", arms = [...], policy = "thompson", guardrails = {...},
/// explore_holdout_percent = 5, window = "7d", shipping_cost = 6.0 }` as configured.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfferSpec {
    /// The arms, by name: `none`, `content_only`, `free_shipping`, `pct_<N>`.
    pub arms: Vec<String>,
    /// `thompson` (default) or `linucb`.
    #[serde(default = "default_policy")]
    pub policy: String,
    #[serde(default)]
    pub guardrails: GuardrailSpec,
    /// Percentage of decisions (0–100) chosen uniformly at random among the eligible arms: the holdout the
    /// off-policy estimate is computed from.
    #[serde(default = "default_explore")]
    pub explore_holdout_percent: u8,
    /// How long after the offer an order counts as its outcome (`7d`, `48h`).
    #[serde(default = "default_window")]
    pub window: String,
    /// What free shipping costs the store per order (the `free_shipping` arm's cost).
    #[serde(default)]
    pub shipping_cost: f64,
}

fn default_policy() -> String {
    "thompson".into()
}
fn default_explore() -> u8 {
    5
}
fn default_window() -> String {
    "7d".into()
}

/// The guardrails as configured (all optional).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardrailSpec {
    /// Arms discounting more than this percentage are never chosen.
    #[serde(default)]
    pub max_discount_pct: Option<f64>,
    /// At most one costly offer per customer in this many days.
    #[serde(default)]
    pub min_days_between_offers: u32,
    /// No costly offer when the customer's 7-day purchase propensity without one is above this.
    #[serde(default)]
    pub skip_if_propensity_above: Option<f64>,
    /// The store's gross margin in percent, and the floor it must keep after a discount.
    #[serde(default)]
    pub margin_pct: Option<f64>,
    #[serde(default)]
    pub margin_floor_pct: Option<f64>,
}

/// A checked `choose_offer` action.
#[derive(Debug, Clone)]
pub struct CompiledOffer {
    pub arms: Vec<Arm>,
    pub policy: PolicyKind,
    pub guardrails: Guardrails,
    pub explore_holdout_percent: u8,
    pub window_secs: i64,
    /// The learner before any outcome: what decides until the offer log has taught it something.
    pub prior: Learner,
}

impl CompiledOffer {
    /// Checks a spec; an error names the key (`arms`, `guardrails.max_discount_pct`, …) and the problem.
    pub fn compile(spec: &OfferSpec) -> Result<CompiledOffer, (String, String)> {
        let err = |k: &str, m: String| Err((k.to_string(), m));
        if spec.arms.len() < 2 {
            return err(
                "arms",
                "give at least two arms, such as [\"none\", \"free_shipping\", \"pct_10\"]".into(),
            );
        }
        let mut arms = Vec::with_capacity(spec.arms.len());
        for (i, name) in spec.arms.iter().enumerate() {
            if spec.arms[..i].contains(name) {
                return err("arms", format!("arm `{name}` is listed twice"));
            }
            if !(spec.shipping_cost.is_finite() && spec.shipping_cost >= 0.0) {
                return err("shipping_cost", "the shipping cost is a number of 0 or more".into());
            }
            arms.push(
                Arm::parse(name, spec.shipping_cost).map_err(|e| (format!("arms[{i}]"), e.to_string()))?,
            );
        }
        let policy = match spec.policy.as_str() {
            "thompson" => PolicyKind::Thompson,
            "linucb" => PolicyKind::LinUcb,
            other => {
                return err("policy", format!("`{other}` is not a policy; use \"thompson\" or \"linucb\""));
            }
        };
        if spec.explore_holdout_percent > 100 {
            return err("explore_holdout_percent", "a percentage of 0–100".into());
        }
        let window_secs =
            crate::flows::parse_duration_secs(spec.window.trim()).filter(|s| *s > 0).ok_or_else(|| {
                ("window".to_string(), format!("`{}` is not a duration such as \"7d\"", spec.window))
            })?;
        let g = &spec.guardrails;
        let pct = |k: &str, v: Option<f64>| -> Result<(), (String, String)> {
            match v {
                Some(x) if !(x.is_finite() && (0.0..=100.0).contains(&x)) => {
                    Err((format!("guardrails.{k}"), format!("{x} is not a percentage of 0–100")))
                }
                _ => Ok(()),
            }
        };
        pct("max_discount_pct", g.max_discount_pct)?;
        pct("margin_pct", g.margin_pct)?;
        pct("margin_floor_pct", g.margin_floor_pct)?;
        if g.margin_floor_pct.is_some() != g.margin_pct.is_some() {
            return err("guardrails", "margin_floor_pct and margin_pct go together".into());
        }
        if let Some(p) = g.skip_if_propensity_above
            && !(p.is_finite() && (0.0..=1.0).contains(&p))
        {
            return err("guardrails.skip_if_propensity_above", format!("{p} is not a probability of 0–1"));
        }
        let guardrails = Guardrails {
            max_discount_pct: g.max_discount_pct.unwrap_or(100.0),
            min_days_between_offers: g.min_days_between_offers,
            skip_if_propensity_above: g.skip_if_propensity_above,
            margin_floor_pct: g.margin_floor_pct,
            margin_pct: g.margin_pct,
        };
        let prior = Learner::new(arms.clone(), policy);
        Ok(CompiledOffer {
            arms,
            policy,
            guardrails,
            explore_holdout_percent: spec.explore_holdout_percent,
            window_secs,
            prior,
        })
    }
}

/// The arm a decision chose, with everything needed to reproduce and to learn from it.
#[derive(Debug, Clone, Serialize)]
pub struct OfferOutcome {
    pub arm: String,
    /// The arm's discount in percent (0 for the free arms).
    pub discount_pct: f64,
    pub choice: Choice,
    /// The context features, by name (the audit's view; `context` below is the vector itself).
    pub features: BTreeMap<String, f64>,
    #[serde(skip)]
    pub context: Vec<f64>,
    pub window_secs: i64,
}

/// Per flow, the learner that decides (the pipeline's, updated from the offer log); a flow without one
/// decides with its prior.
pub type Learners = BTreeMap<String, Learner>;

/// No learner for any flow: every offer flow decides with its prior (tests, dry runs).
pub static NO_LEARNERS: Learners = BTreeMap::new();

impl PartialEq for OfferOutcome {
    fn eq(&self, other: &Self) -> bool {
        (&self.arm, self.choice.arm, self.choice.seed, &self.context, self.window_secs)
            == (&other.arm, other.choice.arm, other.choice.seed, &other.context, other.window_secs)
    }
}

/// Puts the chosen arm on an action: a trigger event's `<prefix>offer` and `<prefix>offer_discount_pct`
/// properties, a profile's `<prefix>next_best_offer` attribute.
pub fn attach(action: &mut nudge_model::Action, offer: &OfferOutcome, prefix: &str) {
    match action {
        nudge_model::Action::TriggerEvent { properties, .. } => {
            properties.insert(format!("{prefix}offer"), offer.arm.clone().into());
            properties.insert(
                format!("{prefix}offer_discount_pct"),
                serde_json::Number::from_f64(offer.discount_pct).map_or(serde_json::Value::Null, Into::into),
            );
        }
        nudge_model::Action::UpsertProfile { attributes, .. } => {
            attributes.insert(
                format!("{prefix}{}", nudge_decide::names::NEXT_BEST_OFFER),
                nudge_model::AttrValue::Text(offer.arm.clone()),
            );
        }
        _ => {}
    }
}

/// The seed of one decision: a hash of the flow, the customer and the event's key, so the same decision
/// replayed draws the same numbers (and the audit records it).
pub fn decision_seed(flow: &str, customer: &str, key: &str) -> u64 {
    let mut h = Sha256::new();
    for part in [flow, customer, key] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let d = h.finalize();
    u64::from_be_bytes(d[..8].try_into().expect("a SHA-256 digest has 8 bytes"))
}

/// Chooses an arm for one customer, or says why no arm is allowed.
pub fn choose(
    offer: &CompiledOffer,
    learner: Option<&Learner>,
    state: &CustomerState,
    now: Timestamp,
    propensity: Option<f64>,
    seed: u64,
) -> Result<OfferOutcome, String> {
    // A learner for other arms (the flow's arms were changed) is not used: the prior decides until the
    // pipeline rebuilds it.
    let learner = learner.filter(|l| l.arms() == offer.arms.as_slice()).unwrap_or(&offer.prior);
    let context = bandit::context_features(state, now, propensity);
    let eligible = offer.guardrails.eligible(&offer.arms, state, now, propensity);
    if !eligible.iter().any(|e| *e) {
        return Err("the guardrails allow none of the arms".into());
    }
    let choice = learner.choose(&context, &eligible, seed, offer.explore_holdout_percent);
    let arm = &offer.arms[choice.arm];
    Ok(OfferOutcome {
        arm: arm.name.clone(),
        discount_pct: arm.discount_pct,
        features: bandit::CONTEXT_NAMES.iter().map(|n| n.to_string()).zip(context.iter().copied()).collect(),
        context,
        choice,
        window_secs: offer.window_secs,
    })
}
