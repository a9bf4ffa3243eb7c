//! Scores: named numbers about a customer, each carrying the model that produced it, its version and a
//! short human explanation, plus the segment derived from them.

use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Score {
    /// Stable name such as `churn_risk` or `predicted_clv`.
    pub name: String,
    pub value: f64,
    /// Which model family produced it (`rules`, `bgnbd`, …).
    pub model_id: String,
    /// The model version (a registry version id, or `rules-v1`).
    pub model_version: String,
    pub explanation: String,
}

/// All scores of one customer at one moment.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScoreSet {
    pub scores: Vec<Score>,
    pub segment: Segment,
    /// The model version that produced the set as a whole.
    pub model_version: String,
    /// Text-valued predictions (`preferred_category`, `best_channel`, `next_best_offer`), by name.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub labels: std::collections::BTreeMap<String, String>,
    /// The customer's recommended products, best first (empty when no recommendation model serves).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub products: Vec<RecommendedProduct>,
    /// The adopted segments the customer belongs to, by name (`nudge segments adopt`); `None` when no
    /// segment is adopted (the `segments` attribute is then not written at all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adopted_segments: Option<Vec<String>>,
    #[serde(with = "time::serde::rfc3339")]
    pub scored_at: crate::Timestamp,
}

/// One recommended product, as profiles, trigger events, prompts and the recommendations API carry it.
/// Catalogue facts only: nothing about the customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecommendedProduct {
    /// The product id as nudge knows it (`shopify:8123…`).
    pub id: String,
    pub title: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    /// The price as a decimal string in `currency` (`"24.90"`), when the catalogue knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Why it is on the list: `pinned`, `bought_before`, `bought_with`, `popular`.
    pub reason: String,
    /// The blended score (0 for a pin the model does not know).
    pub score: f64,
}

impl ScoreSet {
    pub fn get(&self, name: &str) -> Option<&Score> {
        self.scores.iter().find(|s| s.name == name)
    }

    pub fn value(&self, name: &str) -> Option<f64> {
        self.get(name).map(|s| s.value)
    }
}

/// Marketing segment derived from scores; thresholds are documented in `scoring`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Segment {
    /// No completed order yet.
    Prospect,
    /// Exactly one order, recently.
    New,
    /// Repeat buyer, likely alive.
    Loyal,
    /// High predicted value but rising churn risk.
    HighValueAtRisk,
    /// Likely gone.
    Lapsed,
    /// Everyone else with orders.
    Active,
}

impl Segment {
    pub fn as_str(self) -> &'static str {
        match self {
            Segment::Prospect => "prospect",
            Segment::New => "new",
            Segment::Loyal => "loyal",
            Segment::HighValueAtRisk => "high_value_at_risk",
            Segment::Lapsed => "lapsed",
            Segment::Active => "active",
        }
    }
}

impl fmt::Display for Segment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
