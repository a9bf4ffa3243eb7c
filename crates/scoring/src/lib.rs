//! The `Scorer` seam: customer state in, named scores out, each with model id, version and a short
//! explanation, plus the segment derived from them.
//!
//! Two scorers live here: [`RulesScorer`], a clearly labelled recency/frequency/monetary fallback, and
//! [`BtydScorer`], which evaluates a fitted BTYD + Gamma-Gamma model version in closed form. The pipeline
//! chains them (active model first, rules when there is none or it fails) so it always has scores. No I/O here: the active model version is passed in.

mod btyd;
mod rules;

pub use btyd::{BtydModel, BtydScorer, CountModelParams};
pub use rules::{RULES_ID, RULES_VERSION, RulesScorer};

use nudge_model::{Score, ScoreSet, Segment, Timestamp};
use nudge_state::CustomerState;

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ScoreError {
    #[error("model {model} could not score: {reason}")]
    Failed { model: String, reason: String },
}

/// Customer state in, scores out. Implementations are pure and cheap (microseconds).
pub trait Scorer: Send + Sync {
    fn model_id(&self) -> &str;
    fn model_version(&self) -> &str;
    fn score(&self, state: &CustomerState, now: Timestamp) -> Result<ScoreSet, ScoreError>;
}

/// Names of the scores every scorer produces (when the customer has orders).
pub mod names {
    /// 0–100; 100 × (1 − P(alive)).
    pub const CHURN_RISK: &str = "churn_risk";
    /// Probability the customer is still "alive" (will buy again), 0–1.
    pub const P_ALIVE: &str = "p_alive";
    /// Predicted value over the next 12 months, in the customer's main currency.
    pub const PREDICTED_CLV: &str = "predicted_clv";
    /// Expected number of orders in the next 90 days.
    pub const EXPECTED_ORDERS_90D: &str = "expected_orders_90d";
    /// Days from now until the next order is expected.
    pub const DAYS_TO_NEXT_ORDER: &str = "days_to_next_order";
}

/// Thresholds that turn scores into a [`Segment`]. Documented in README and `nudge.example.toml`.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
#[serde(default)]
pub struct SegmentThresholds {
    /// Churn risk at or above which a customer is `lapsed`.
    pub lapsed_churn_risk: f64,
    /// Churn risk at or above which a valuable customer is `high_value_at_risk`.
    pub at_risk_churn_risk: f64,
    /// Predicted 12-month value at or above which a customer counts as high value.
    pub high_value_clv: f64,
    /// A one-time buyer is `new` for this many days after the first order.
    pub new_days: i64,
    /// Purchase days needed to be `loyal` (with churn risk below `at_risk_churn_risk`).
    pub loyal_min_orders: u32,
}

impl Default for SegmentThresholds {
    fn default() -> Self {
        SegmentThresholds {
            lapsed_churn_risk: 80.0,
            at_risk_churn_risk: 50.0,
            high_value_clv: 200.0,
            new_days: 60,
            loyal_min_orders: 3,
        }
    }
}

/// Derives the segment. Order of the rules: prospect → lapsed → high value at risk → new → loyal → active.
pub fn segment_for(
    state: &CustomerState,
    scores: &[Score],
    now: Timestamp,
    t: &SegmentThresholds,
) -> Segment {
    let summary = state.summary();
    let Some(first) = summary.first_order_at else { return Segment::Prospect };
    let get = |n: &str| scores.iter().find(|s| s.name == n).map(|s| s.value);
    let churn = get(names::CHURN_RISK).unwrap_or(0.0);
    let clv = get(names::PREDICTED_CLV).unwrap_or(0.0);
    if churn >= t.lapsed_churn_risk {
        Segment::Lapsed
    } else if churn >= t.at_risk_churn_risk && clv >= t.high_value_clv {
        Segment::HighValueAtRisk
    } else if summary.order_days <= 1 && (now - first).whole_days() <= t.new_days {
        Segment::New
    } else if summary.order_days >= t.loyal_min_orders && churn < t.at_risk_churn_risk {
        Segment::Loyal
    } else {
        Segment::Active
    }
}

pub(crate) fn score(name: &str, value: f64, model_id: &str, version: &str, explanation: String) -> Score {
    Score {
        name: name.to_string(),
        value,
        model_id: model_id.to_string(),
        model_version: version.to_string(),
        explanation,
    }
}

/// Test helpers shared by the scorers' unit tests.
#[cfg(test)]
pub(crate) mod test_support {
    use nudge_model::{Event, Money, Order};
    use nudge_state::CustomerState;

    /// A customer with one order of `amount` USD on each given day after 2026-01-01 12:00 UTC.
    pub fn state_with_orders(days: &[i64], amount: &str) -> CustomerState {
        let c: nudge_model::CustomerId = "shopify:1".parse().expect("valid id");
        let mut s = CustomerState::new(c.clone());
        for (i, d) in days.iter().enumerate() {
            let t = time::macros::datetime!(2026-01-01 12:00 UTC) + time::Duration::days(*d);
            s.apply(&Event::OrderUpserted(Order {
                id: i.to_string(),
                name: None,
                customer: Some(c.clone()),
                email: None,
                created_at: t,
                updated_at: t,
                cancelled_at: None,
                total: Money::parse(amount, "USD").expect("valid amount"),
                financial_status: None,
                line_items: vec![],
                checkout_token: None,
                cart_token: None,
                accepts_marketing: None,
            }));
        }
        s
    }
}
