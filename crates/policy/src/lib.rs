//! Policy: which actions follow from one event, the customer's state after it and their scores.
//!
//! Built-in flows of this version:
//! - `profile_sync`: every state change upserts the customer's prefixed profile attributes
//!   (`<prefix>churn_risk`, `<prefix>predicted_clv`, `<prefix>segment`, `<prefix>model_version`,
//!   `<prefix>scored_at`, …).
//! - `checkout_abandoned`: a `CheckoutAbandoned` event sends the trigger event `AI Checkout Abandoned` with
//!   the checkout's value, currency, items, recovery URL and the customer's scores, with a deterministic
//!   `unique_id`, unless the customer falls into the flow's holdout group.
//!
//! Shadow mode marks the decision `shadow`: the pipeline records it and stops before any destination call.
//! Time is passed in; nothing here does I/O.

use nudge_model::{Action, AttrValue, Decision, Event, ScoreSet, TraceId};
use nudge_state::CustomerState;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;

/// Policy settings (the `[pipeline]` section of the config).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PolicyConfig {
    /// Prefix of every attribute nudge writes, so marketers can tell AI values apart.
    pub attribute_prefix: String,
    /// When true decisions are recorded but never pushed.
    pub shadow: bool,
    /// Metric name of the abandoned-checkout trigger event.
    pub abandoned_checkout_metric: String,
    /// Percentage (0–100) of customers held out of trigger flows, by deterministic hashing.
    pub holdout_percent: u8,
}

impl Default for PolicyConfig {
    fn default() -> Self {
        PolicyConfig {
            attribute_prefix: "ai_".into(),
            shadow: false,
            abandoned_checkout_metric: "AI Checkout Abandoned".into(),
            holdout_percent: 0,
        }
    }
}

/// The outcome of policy for one event.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Push these actions (or, in shadow mode, record them only).
    Act(Decision),
    /// Nothing to do, and why.
    Skip(String),
}

/// Is this customer in the holdout group of `flow`? Stable across restarts and nodes: the first two bytes
/// of SHA-256(flow ‖ ":" ‖ customer id) modulo 100, compared with the percentage.
pub fn in_holdout(flow: &str, customer: &nudge_model::CustomerId, percent: u8) -> bool {
    if percent == 0 {
        return false;
    }
    let mut h = Sha256::new();
    h.update(flow.as_bytes());
    h.update(b":");
    h.update(customer.to_string().as_bytes());
    let d = h.finalize();
    let bucket = u16::from_be_bytes([d[0], d[1]]) % 100;
    bucket < u16::from(percent.min(100))
}

/// Decides what to do after `event` changed `state` (callers only ask when the state changed).
pub fn decide(
    trace_id: TraceId,
    event: &Event,
    state: &CustomerState,
    scores: &ScoreSet,
    cfg: &PolicyConfig,
) -> Verdict {
    let mut actions = vec![profile_action(state, scores, cfg)];
    let mut reasons = vec!["profile_sync: state changed".to_string()];
    if let Event::CheckoutAbandoned(ab) = event {
        if in_holdout("checkout_abandoned", &state.customer, cfg.holdout_percent) {
            reasons.push("checkout_abandoned: customer is in the holdout group, no trigger".into());
        } else {
            let c = &ab.checkout;
            let mut props = serde_json::Map::new();
            props.insert("checkout_token".into(), c.token.clone().into());
            props.insert("checkout_value".into(), json_number(c.total.to_f64()));
            props.insert("currency".into(), c.total.currency.as_str().into());
            props.insert(
                "items".into(),
                serde_json::Value::Array(
                    c.line_items
                        .iter()
                        .map(|li| {
                            serde_json::json!({
                                "product_id": li.product_id,
                                "sku": li.sku,
                                "title": li.title,
                                "quantity": li.quantity,
                                "price": li.price.amount.to_string(),
                            })
                        })
                        .collect(),
                ),
            );
            if let Some(url) = &c.recovery_url {
                props.insert("recovery_url".into(), url.clone().into());
            }
            for s in &scores.scores {
                props.insert(format!("{}{}", cfg.attribute_prefix, s.name), json_number(s.value));
            }
            props.insert(format!("{}segment", cfg.attribute_prefix), scores.segment.as_str().into());
            props.insert(
                format!("{}model_version", cfg.attribute_prefix),
                scores.model_version.clone().into(),
            );
            actions.push(Action::TriggerEvent {
                customer: state.customer.clone(),
                email: state.email.clone().or_else(|| ab.email.clone()),
                name: cfg.abandoned_checkout_metric.clone(),
                properties: props,
                value: Some(c.total),
                time: ab.idle_since,
                unique_id: format!("nudge:checkout-abandoned:{}", c.token),
            });
            reasons.push("checkout_abandoned: checkout idle past the abandonment window".into());
        }
    }
    Verdict::Act(Decision {
        trace_id,
        customer: state.customer.clone(),
        reason: reasons.join("; "),
        shadow: cfg.shadow,
        actions,
    })
}

fn profile_action(state: &CustomerState, scores: &ScoreSet, cfg: &PolicyConfig) -> Action {
    let p = &cfg.attribute_prefix;
    let mut attributes = BTreeMap::new();
    for s in &scores.scores {
        attributes.insert(format!("{p}{}", s.name), AttrValue::Number(s.value));
    }
    attributes.insert(format!("{p}segment"), AttrValue::Text(scores.segment.as_str().into()));
    attributes.insert(format!("{p}model_version"), AttrValue::Text(scores.model_version.clone()));
    let scored_at = scores
        .scored_at
        .format(&time::format_description::well_known::Rfc3339)
        .expect("a UTC timestamp always formats as RFC 3339");
    attributes.insert(format!("{p}scored_at"), AttrValue::Text(scored_at));
    Action::UpsertProfile {
        customer: state.customer.clone(),
        email: state.email.clone(),
        first_name: state.first_name.clone(),
        last_name: state.last_name.clone(),
        attributes,
    }
}

fn json_number(x: f64) -> serde_json::Value {
    serde_json::Number::from_f64(x).map(serde_json::Value::Number).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;
    use nudge_model::{Checkout, CheckoutAbandoned, Money, Segment};
    use time::macros::datetime;

    fn setup() -> (CustomerState, ScoreSet, Event) {
        let c: nudge_model::CustomerId = "shopify:42".parse().unwrap();
        let mut st = CustomerState::new(c.clone());
        st.email = Some("a@example.org".into());
        let checkout = Checkout {
            token: "tok1".into(),
            cart_token: None,
            customer: Some(c.clone()),
            email: Some("a@example.org".into()),
            created_at: datetime!(2026-05-01 9:00 UTC),
            updated_at: datetime!(2026-05-01 9:05 UTC),
            completed_at: None,
            total: Money::parse("84.90", "EUR").unwrap(),
            line_items: vec![],
            recovery_url: Some("https://shop/r/tok1".into()),
            accepts_marketing: None,
        };
        let scores = ScoreSet {
            scores: vec![],
            segment: Segment::New,
            model_version: "rules-v1".into(),
            scored_at: datetime!(2026-05-01 10:05 UTC),
        };
        let ev = Event::CheckoutAbandoned(CheckoutAbandoned {
            customer: c,
            email: None,
            idle_since: checkout.updated_at,
            checkout,
        });
        (st, scores, ev)
    }

    #[test]
    fn abandoned_checkout_triggers_event_with_deterministic_unique_id() {
        let (st, scores, ev) = setup();
        let Verdict::Act(d) = decide(TraceId::new(), &ev, &st, &scores, &PolicyConfig::default()) else {
            panic!("expected a decision")
        };
        assert_eq!(d.actions.len(), 2);
        match &d.actions[1] {
            Action::TriggerEvent { name, unique_id, properties, .. } => {
                assert_eq!(name, "AI Checkout Abandoned");
                assert_eq!(unique_id, "nudge:checkout-abandoned:tok1");
                assert_eq!(properties["recovery_url"], "https://shop/r/tok1");
                assert_eq!(properties["currency"], "EUR");
            }
            other => panic!("unexpected {other:?}"),
        }
        match &d.actions[0] {
            Action::UpsertProfile { attributes, .. } => {
                assert_eq!(attributes["ai_segment"], AttrValue::Text("new".into()));
                assert!(attributes.contains_key("ai_scored_at"));
            }
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn holdout_is_deterministic_and_roughly_proportional() {
        let n = (0..10_000).filter(|i| in_holdout("f", &format!("shopify:{i}").parse().unwrap(), 10)).count();
        assert!((800..1200).contains(&n), "{n}");
        let c: nudge_model::CustomerId = "shopify:7".parse().unwrap();
        assert_eq!(in_holdout("f", &c, 50), in_holdout("f", &c, 50));
        assert!(!in_holdout("f", &c, 0));
        assert!(in_holdout("f", &c, 100));
    }

    #[test]
    fn holdout_customers_get_no_trigger_and_shadow_is_marked() {
        let (st, scores, ev) = setup();
        let cfg = PolicyConfig { holdout_percent: 100, shadow: true, ..Default::default() };
        let Verdict::Act(d) = decide(TraceId::new(), &ev, &st, &scores, &cfg) else { panic!() };
        assert_eq!(d.actions.len(), 1);
        assert!(d.shadow);
        assert!(d.reason.contains("holdout"));
    }
}
