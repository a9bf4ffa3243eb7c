//! Shared helpers: customers with orders, built-in score sets, model tables from TOML.
#![allow(dead_code)]

use nudge_custom::CustomModelSpec;
use nudge_model::{Money, Score, ScoreSet, Segment, Timestamp};
use nudge_state::{CustomerState, ItemRecord, OrderRecord};
use time::macros::datetime;

pub const NOW: Timestamp = datetime!(2026-03-01 10:00 UTC);

/// A customer with `orders` orders of 40.00 USD, the last `days_ago` days before [`NOW`].
pub fn customer(id: &str, orders: u32, days_ago: i64) -> CustomerState {
    let mut s = CustomerState::new(id.parse().unwrap());
    for i in 0..orders {
        let at = NOW - time::Duration::days(days_ago + 30 * i64::from(i));
        s.orders.insert(
            format!("o{i}"),
            OrderRecord {
                created_at: at,
                updated_at: at,
                total: Money::parse("40.00", "USD").unwrap(),
                cancelled: false,
                items: vec![ItemRecord { product_id: Some("p1".into()), title: "Tea".into(), quantity: 1 }],
                checkout_token: None,
                cart_token: None,
            },
        );
    }
    s
}

pub fn score(name: &str, value: f64) -> Score {
    Score {
        name: name.into(),
        value,
        model_id: "rules".into(),
        model_version: "rules-v1".into(),
        explanation: "built-in".into(),
    }
}

/// Built-in scores: churn risk (0–100) and p_alive.
pub fn builtin(churn_risk: f64, p_alive: f64) -> ScoreSet {
    ScoreSet {
        scores: vec![score("churn_risk", churn_risk), score("p_alive", p_alive)],
        segment: Segment::Loyal,
        model_version: "rules-v1".into(),
        labels: Default::default(),
        products: Vec::new(),
        scored_at: NOW,
        adopted_segments: None,
    }
}

pub fn spec(toml_text: &str) -> CustomModelSpec {
    toml::from_str(toml_text).unwrap_or_else(|e| panic!("{e}\n{toml_text}"))
}

/// The directory of the committed test models.
pub fn models_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/models")
}

/// The five features the test models take, as the README's example maps them.
pub const FIVE_INPUTS: &str = r#"inputs = { X = ["customer.orders_count", "customer.total_spent", "customer.days_since_last_order", "scores.churn_risk", "scores.p_alive"] }"#;
