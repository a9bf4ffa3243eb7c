//! A pending request for generated copy, as a decision leaves it on a trigger event.
//!
//! Copy is never generated on the decision path: a flow's `generate_copy` action puts a [`CopyRequest`]
//! into each of its trigger events' properties under [`COPY_REQUEST_PROPERTY`], and the copy stage (the
//! outbox worker before a send, the approval filler before a person looks) replaces it with the copy
//! under [`CopyRequest::target`]. The request is pseudonymous by construction: the prompt's name and
//! version, the segment, the scores, two text predictions and recommended products' titles; no field can
//! hold an email, a name, a phone number or an address.

use crate::score::{ScoreSet, Segment};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// The trigger-event property that holds a pending [`CopyRequest`]. It never leaves nudge: the copy
/// stage removes it before a send.
pub const COPY_REQUEST_PROPERTY: &str = "nudge_copy_request";

/// The text predictions a prompt may read.
pub const COPY_LABELS: &[&str] = &["preferred_category", "next_best_offer"];

/// Product titles a request carries at most.
pub const COPY_MAX_PRODUCTS: usize = 5;

/// What a prompt will be rendered from, captured when the flow decided.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CopyRequest {
    /// The prompt's name (`[[prompts]] name`).
    pub prompt: String,
    /// The prompt's version, resolved when the flow set was compiled.
    pub version: u32,
    /// The event property the copy goes into (`ai_copy` with the default attribute prefix).
    pub target: String,
    pub segment: Segment,
    /// The decision's scores, by name.
    #[serde(default)]
    pub scores: BTreeMap<String, f64>,
    /// `preferred_category` and `next_best_offer`, when predicted.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Recommended products' titles, best first (at most [`COPY_MAX_PRODUCTS`]).
    #[serde(default)]
    pub products: Vec<String>,
}

impl CopyRequest {
    /// The request for prompt `prompt` version `version` over a decision's scores.
    pub fn from_scores(prompt: &str, version: u32, target: &str, set: &ScoreSet) -> CopyRequest {
        CopyRequest {
            prompt: prompt.to_string(),
            version,
            target: target.to_string(),
            segment: set.segment,
            scores: set
                .scores
                .iter()
                .filter(|s| s.value.is_finite())
                .map(|s| (s.name.clone(), s.value))
                .collect(),
            labels: COPY_LABELS
                .iter()
                .filter_map(|k| set.labels.get(*k).map(|v| (k.to_string(), v.clone())))
                .collect(),
            products: set.products.iter().take(COPY_MAX_PRODUCTS).map(|p| p.title.clone()).collect(),
        }
    }

    /// `winback@2`.
    pub fn prompt_key(&self) -> String {
        format!("{}@{}", self.prompt, self.version)
    }

    /// The pending request in a trigger event's properties, if there is one (`Err` when it does not
    /// parse).
    pub fn pending_in(
        properties: &serde_json::Map<String, serde_json::Value>,
    ) -> Option<Result<CopyRequest, String>> {
        properties
            .get(COPY_REQUEST_PROPERTY)
            .map(|v| serde_json::from_value(v.clone()).map_err(|e| format!("a pending copy request: {e}")))
    }

    /// Whether an action still waits for its copy.
    pub fn is_pending(action: &crate::Action) -> bool {
        matches!(action, crate::Action::TriggerEvent { properties, .. } if properties.contains_key(COPY_REQUEST_PROPERTY))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::score::{RecommendedProduct, Score};

    #[test]
    fn a_request_keeps_scores_labels_and_titles_only() {
        let mut set = ScoreSet {
            scores: vec![Score {
                name: "churn_risk".into(),
                value: 71.0,
                model_id: "rules".into(),
                model_version: "rules-v1".into(),
                explanation: String::new(),
            }],
            segment: Segment::Lapsed,
            model_version: "rules-v1".into(),
            labels: [("preferred_category", "Outdoor"), ("best_channel", "email")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            products: Vec::new(),
            scored_at: time::OffsetDateTime::UNIX_EPOCH,
            adopted_segments: None,
        };
        for i in 0..7 {
            set.products.push(RecommendedProduct {
                id: format!("shopify:{i}"),
                title: format!("Product {i}"),
                url: Some("https://shop.example/p".into()),
                image_url: None,
                price: Some("9.90".into()),
                currency: Some("EUR".into()),
                reason: "popular".into(),
                score: 0.5,
            });
        }
        let r = CopyRequest::from_scores("winback", 2, "ai_copy", &set);
        assert_eq!(r.prompt_key(), "winback@2");
        assert_eq!(r.scores["churn_risk"], 71.0);
        assert_eq!(r.labels.len(), 1, "best_channel is not a copy label");
        assert_eq!(r.products.len(), COPY_MAX_PRODUCTS);
        let json = serde_json::to_value(&r).unwrap();
        assert!(!json.to_string().contains("shop.example"), "titles only");
        let mut props = serde_json::Map::new();
        props.insert(COPY_REQUEST_PROPERTY.into(), json);
        assert_eq!(CopyRequest::pending_in(&props).unwrap().unwrap(), r);
        props.insert(COPY_REQUEST_PROPERTY.into(), serde_json::json!({"prompt": 1}));
        assert!(CopyRequest::pending_in(&props).unwrap().is_err());
    }
}
