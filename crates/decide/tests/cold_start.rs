//! The cold-start model: the shrinkage against a reference computed with numpy
//! (`reference/cold_start_anova.py`), the serving rules (only before the first order, never over a
//! `predicted_clv` already in the set), the body round trip and bad bodies.

use nudge_decide::cold_start::{self, ColdStartModel, Example, RulesColdStart};
use nudge_decide::serve::StateModel;
use nudge_model::{Money, Order, ScoreSet, Segment};
use nudge_state::CustomerState;
use nudge_state::offers::Acquisition;
use serde_json::{Value, json};
use time::macros::datetime;

fn reference() -> Value {
    serde_json::from_str(include_str!("reference/cold_start_anova.json")).unwrap()
}

fn set() -> ScoreSet {
    ScoreSet {
        scores: vec![],
        segment: Segment::Prospect,
        model_version: String::new(),
        labels: Default::default(),
        products: Vec::new(),
        scored_at: datetime!(2026-06-01 00:00 UTC),
        adopted_segments: None,
    }
}

#[test]
fn one_fact_shrinkage_matches_the_reference() {
    let r = reference();
    let mut rows = Vec::new();
    for (g, ys) in r["groups"].as_object().unwrap() {
        for y in ys.as_array().unwrap() {
            rows.push(Example {
                facts: [Some(g.clone()), None, None, None],
                value: y.as_f64().unwrap(),
                first_seen_at: datetime!(2025-01-01 00:00 UTC),
            });
        }
    }
    let (mu, tables) = cold_start::fit_tables(&rows).unwrap();
    let close = |a: f64, b: &Value| assert!((a - b.as_f64().unwrap()).abs() < 1e-9, "{a} vs {b}");
    close(mu, &r["population_mean"]);
    let t = &tables["source"];
    close(t.within_variance, &r["within_variance"]);
    close(t.between_variance, &r["between_variance"]);
    close(t.strength.unwrap(), &r["strength"]);
    for (g, e) in r["effects"].as_object().unwrap() {
        close(t.levels[g].effect, e);
    }
}

fn model() -> ColdStartModel {
    let body = json!({
        "population_mean": 60.0, "horizon_days": 365, "features": ["acquisition.source"],
        "tables": {"source": {"strength": 2.0, "between_variance": 1.0, "within_variance": 2.0,
            "levels": {"newsletter": {"n": 10, "raw": 30.0, "effect": 25.0}}}},
        "training_window": null, "data_digest": "x", "metrics": {}, "sufficiency": {"ok": true}
    });
    ColdStartModel::from_body("v1", &body).unwrap()
}

#[test]
fn it_scores_only_customers_without_orders_and_explains_the_parts() {
    let m = model();
    assert_eq!(ColdStartModel::from_body("v1", &m.to_body()).unwrap(), m);
    let now = datetime!(2026-06-01 00:00 UTC);
    let mut s = CustomerState::new("shopify:1".parse().unwrap());
    s.acquisition = Some(Acquisition { source: Some(" Newsletter ".into()), ..Default::default() });
    let mut out = set();
    m.score(&s, now, &mut out);
    let clv = out.get("predicted_clv").unwrap();
    assert_eq!((clv.value, clv.model_version.as_str()), (85.0, "v1"));
    assert!(clv.explanation.contains("source=newsletter +25.00"), "{}", clv.explanation);
    // No known fact: the population mean, said so.
    s.acquisition = None;
    let mut out = set();
    m.score(&s, now, &mut out);
    assert_eq!(out.value("predicted_clv"), Some(60.0));
    assert!(out.get("predicted_clv").unwrap().explanation.contains("population mean"));
    // A BTYD estimate in the set stays; a customer with an order gets none from here.
    let mut out = set();
    out.scores.push(nudge_model::Score {
        name: "predicted_clv".into(),
        value: 12.0,
        model_id: "bgnbd".into(),
        model_version: "b1".into(),
        explanation: String::new(),
    });
    m.score(&s, now, &mut out);
    assert_eq!(out.scores.len(), 1);
    s.apply(&nudge_model::Event::OrderUpserted(Order {
        id: "o1".into(),
        name: None,
        customer: Some(s.customer.clone()),
        email: None,
        created_at: now,
        updated_at: now,
        cancelled_at: None,
        total: Money::parse("10.00", "EUR").unwrap(),
        financial_status: None,
        line_items: vec![],
        checkout_token: None,
        cart_token: None,
        accepts_marketing: None,
    }));
    let mut out = set();
    m.score(&s, now, &mut out);
    assert!(out.scores.is_empty());
    // The rules fallback adds nothing.
    s.orders.clear();
    let mut out = set();
    RulesColdStart.score(&s, now, &mut out);
    assert!(out.scores.is_empty());
    assert_eq!(RulesColdStart.version(), "rules-cold-start-v1");
}

#[test]
fn bad_bodies_and_inputs_are_refused() {
    let mut b = model().to_body();
    b["tables"]["planet"] = b["tables"]["source"].clone();
    assert!(ColdStartModel::from_body("v", &b).unwrap_err().to_string().contains("unknown fact"));
    assert!(ColdStartModel::from_body("v", &json!({"population_mean": 1.0})).is_err());
    let opts = cold_start::ColdStartFitOptions { holdout_share: 1.5, ..Default::default() };
    assert!(cold_start::fit(&[], datetime!(2026-06-01 00:00 UTC), &opts).is_err());
    let e = cold_start::fit(&[], datetime!(2026-06-01 00:00 UTC), &Default::default()).unwrap_err();
    assert!(e.to_string().contains("not enough data"), "{e}");
}
