//! Policy: which actions follow from one event, the customer's state after it and their scores.
//!
//! The decisions are made by flows ([`flows`]): each a trigger, a CEL condition ([`condition`]), a mode, a
//! holdout, a frequency cap and actions. Without configured flows, two built-in flows keep the behaviour
//! of earlier versions:
//! - `profile_sync`: every state change upserts the customer's prefixed profile attributes
//!   (`<prefix>churn_risk`, `<prefix>predicted_clv`, `<prefix>segment`, `<prefix>model_version`,
//!   `<prefix>scored_at`, `<prefix>recommended_products` when the customer has recommendations, …).
//! - `checkout_abandoned`: a `CheckoutAbandoned` event sends the trigger event `AI Checkout Abandoned` with
//!   the checkout's value, currency, items, recovery URL and the customer's scores, with a deterministic
//!   `unique_id`, unless the customer falls into the flow's holdout group.
//!
//! Shadow mode marks a decision `shadow`: the pipeline records it and stops before any destination call.
//! Time is passed in; nothing here does I/O.

pub mod condition;
pub mod flows;
pub mod offers;
pub mod reports;
pub mod schedule;

use nudge_model::{Action, AttrValue, ScoreSet};
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

/// The profile attributes of a `sync_profile` action: every score with the prefix, the segment, the model
/// version and the scoring time.
pub fn profile_action(state: &CustomerState, scores: &ScoreSet, cfg: &PolicyConfig) -> Action {
    let p = &cfg.attribute_prefix;
    let mut attributes = BTreeMap::new();
    for s in &scores.scores {
        attributes.insert(format!("{p}{}", s.name), AttrValue::Number(s.value));
    }
    for (name, label) in &scores.labels {
        attributes.insert(format!("{p}{name}"), AttrValue::Text(label.clone()));
    }
    attributes.insert(format!("{p}segment"), AttrValue::Text(scores.segment.as_str().into()));
    attributes.insert(format!("{p}model_version"), AttrValue::Text(scores.model_version.clone()));
    let scored_at = scores
        .scored_at
        .format(&time::format_description::well_known::Rfc3339)
        .expect("a UTC timestamp always formats as RFC 3339");
    attributes.insert(format!("{p}scored_at"), AttrValue::Text(scored_at));
    if let Some(products) = recommended_products_json(scores) {
        attributes.insert(format!("{p}{RECOMMENDED_PRODUCTS}"), AttrValue::Json(products));
    }
    if let Some(adopted) = &scores.adopted_segments {
        attributes.insert(format!("{p}{ADOPTED_SEGMENTS}"), AttrValue::Json(serde_json::json!(adopted)));
    }
    Action::UpsertProfile {
        customer: state.customer.clone(),
        email: state.email.clone(),
        first_name: state.first_name.clone(),
        last_name: state.last_name.clone(),
        attributes,
    }
}

/// The attribute (and trigger-event property) name of the adopted segments a customer belongs to (an
/// array of names, empty when they belong to none), before the prefix: `ai_segments`. Written only once a
/// segment is adopted, so a store that adopts none sends no such attribute.
pub const ADOPTED_SEGMENTS: &str = "segments";

/// The attribute (and trigger-event property) name of the recommended products, before the prefix.
pub const RECOMMENDED_PRODUCTS: &str = "recommended_products";

/// The customer's recommended products as profiles and trigger events carry them (an array of catalogue
/// facts: id, title, url, image_url, price, currency, reason, score), or `None` when the list is empty
/// (no recommendation model serves, or nothing passes the rules): the attribute is then not written.
pub fn recommended_products_json(scores: &ScoreSet) -> Option<serde_json::Value> {
    if scores.products.is_empty() {
        return None;
    }
    serde_json::to_value(&scores.products).ok()
}

pub(crate) fn json_number(x: f64) -> serde_json::Value {
    serde_json::Number::from_f64(x).map(serde_json::Value::Number).unwrap_or(serde_json::Value::Null)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recommended_products_go_on_the_profile_only_when_there_are_some() {
        let at = time::macros::datetime!(2026-05-01 10:00 UTC);
        let mut scores = ScoreSet {
            scores: Vec::new(),
            segment: nudge_model::Segment::Loyal,
            model_version: "rules-v1".into(),
            labels: Default::default(),
            products: Vec::new(),
            scored_at: at,
            adopted_segments: None,
        };
        let state = CustomerState::new("shopify:7".parse().unwrap());
        let cfg = PolicyConfig::default();
        let attrs = |s: &ScoreSet| match profile_action(&state, s, &cfg) {
            Action::UpsertProfile { attributes, .. } => attributes,
            other => panic!("{other:?}"),
        };
        assert!(!attrs(&scores).contains_key("ai_recommended_products"));
        scores.products.push(nudge_model::RecommendedProduct {
            id: "p1".into(),
            title: "Tee".into(),
            url: Some("https://shop.example/products/tee".into()),
            image_url: None,
            price: Some("24.90".into()),
            currency: Some("EUR".into()),
            reason: "popular".into(),
            score: 0.5,
        });
        let AttrValue::Json(v) = &attrs(&scores)["ai_recommended_products"] else {
            panic!("a JSON attribute")
        };
        assert_eq!(
            v,
            &serde_json::json!([{"id": "p1", "title": "Tee", "url": "https://shop.example/products/tee",
                "price": "24.90", "currency": "EUR", "reason": "popular", "score": 0.5}])
        );
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
}
