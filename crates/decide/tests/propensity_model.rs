//! The propensity model's serving contract: features use only the past, a body round-trips through
//! `from_body`/`to_body`, a bad body is refused, and a missing feature gives the labelled rules answer.

use nudge_decide::propensity::{
    self, ABANDON_FEATURES, LabelOptions, PropensityBody, PropensityModel, RULES_VERSION, RulesPropensity,
    TrainOptions,
};
use nudge_decide::serve::StateModel;
use nudge_decide::sim::{SimArgs, abandonment};
use nudge_model::{Currency, Money, ScoreSet, Segment};
use nudge_state::{CheckoutRecord, CustomerState};

fn usd() -> Currency {
    Currency::parse("USD").unwrap()
}

fn empty(now: nudge_model::Timestamp) -> ScoreSet {
    ScoreSet {
        scores: vec![],
        segment: Segment::Prospect,
        model_version: String::new(),
        labels: Default::default(),
        products: Vec::new(),
        scored_at: now,
        adopted_segments: None,
    }
}

fn fitted() -> (PropensityModel, abandonment::World) {
    let world = abandonment::simulate(&SimArgs { customers: 3_000, days: 60, seed: 3 });
    let (ex, _, cut) = abandonment::examples(&world);
    let (_, abandon) =
        propensity::fit_head(&ex[..cut], &ex[cut..], &ABANDON_FEATURES, &TrainOptions::default()).unwrap();
    let refs = propensity::reference_times(
        world.end - time::Duration::days(60),
        world.end,
        &LabelOptions::default(),
    );
    let mut pe: Vec<_> = world
        .states
        .iter()
        .enumerate()
        .flat_map(|(i, s)| propensity::purchase_examples(i, s, &refs, &LabelOptions::default(), usd()))
        .collect();
    let c = propensity::time_split(&mut pe, 0.25);
    let (_, purchase) =
        propensity::fit_head(&pe[..c], &pe[c..], &propensity::PURCHASE_FEATURES, &TrainOptions::default())
            .unwrap();
    let body = PropensityBody {
        schema: propensity::BODY_SCHEMA,
        currency: "USD".into(),
        features: PropensityBody::feature_docs(),
        labels: LabelOptions::default(),
        train: TrainOptions::default(),
        abandon: Some(abandon),
        purchase_7d: Some(purchase),
        data_digest: "test".into(),
        sufficiency: propensity::SufficiencyBody { ok: true, reason: None },
        customers: 3_000,
    };
    (PropensityModel::new("p-test", body).unwrap(), world)
}

#[test]
fn features_ignore_what_happened_after_the_moment() {
    let world = abandonment::simulate(&SimArgs { customers: 200, days: 60, seed: 9 });
    let s = world.states.iter().find(|s| s.orders.len() >= 2).expect("a repeat buyer");
    let first = s.orders.values().map(|o| o.created_at).min().unwrap();
    let at = first + time::Duration::seconds(1);
    let mut truncated = s.clone();
    truncated.orders.retain(|_, o| o.created_at < at);
    truncated.browse.retain(|b| b.at < at);
    truncated.engagement.days.retain(|&d, _| d < nudge_state::day_number(at));
    truncated.open_checkouts.retain(|_, c| c.updated_at < at);
    let a = propensity::features(s, None, at, usd());
    let b = propensity::features(&truncated, None, at, usd());
    for i in 0..propensity::N_FEATURES {
        assert!(
            a[i] == b[i] || (a[i].is_nan() && b[i].is_nan()),
            "feature {} differs",
            propensity::FEATURES[i].0
        );
    }
}

#[test]
fn a_body_round_trips_and_scores() {
    let (model, world) = fitted();
    let again = PropensityModel::from_body("p-test", &model.to_body()).unwrap();
    assert_eq!(again, model);
    let s = world.states.iter().find(|s| !s.open_checkouts.is_empty()).unwrap();
    let mut out = empty(world.end);
    model.score(s, world.end, &mut out);
    let a = out.get("abandon_propensity").unwrap();
    let p = out.get("purchase_propensity_7d").unwrap();
    assert_eq!(a.model_version, "p-test");
    assert!((0.0..=1.0).contains(&a.value) && (0.0..=1.0).contains(&p.value));
    assert!(a.explanation.starts_with("logistic model p-test"), "{}", a.explanation);
}

#[test]
fn a_bad_body_is_refused() {
    let (model, _) = fitted();
    let mut v = model.to_body();
    v["abandon"]["features"][0] = "shoe_size".into();
    assert!(PropensityModel::from_body("x", &v).unwrap_err().to_string().contains("shoe_size"));
    let mut v = model.to_body();
    v["schema"] = 99.into();
    assert!(PropensityModel::from_body("x", &v).is_err());
    let mut v = model.to_body();
    v["purchase_7d"]["coef"] = serde_json::json!([1.0]);
    assert!(PropensityModel::from_body("x", &v).is_err());
    assert!(PropensityModel::from_body("x", &serde_json::json!({"schema": 1})).is_err());
}

#[test]
fn a_missing_feature_gives_the_labelled_rules_answer() {
    let (model, world) = fitted();
    let mut s = world.states.iter().find(|s| !s.open_checkouts.is_empty()).unwrap().clone();
    // A checkout in another currency: the model cannot read its value.
    let newest = s.open_checkouts.values().map(|c| c.updated_at).max().unwrap();
    s.open_checkouts.insert(
        "zz-eur".into(),
        CheckoutRecord {
            cart_token: None,
            updated_at: newest + time::Duration::hours(1),
            total: Money::parse("80.00", "EUR").unwrap(),
            item_count: 2,
            recovery_url: None,
            abandoned: false,
        },
    );
    let mut out = empty(world.end);
    model.score(&s, world.end, &mut out);
    let a = out.get("abandon_propensity").unwrap();
    assert_eq!(a.model_version, RULES_VERSION);
    assert!(a.explanation.contains("lacks cart_value_log"), "{}", a.explanation);
    // The purchase score is still the model's.
    assert_eq!(out.get("purchase_propensity_7d").unwrap().model_version, "p-test");
}

#[test]
fn the_rules_answer_every_customer_and_say_so() {
    let now = time::macros::datetime!(2026-01-01 12:00 UTC);
    let s = CustomerState::new(nudge_model::CustomerId::new(nudge_model::Source::Shopify, "1").unwrap());
    let mut out = empty(now);
    RulesPropensity.score(&s, now, &mut out);
    let p = out.get("purchase_propensity_7d").unwrap();
    assert_eq!(p.model_version, RULES_VERSION);
    assert!(p.value > 0.0 && p.value < 0.1);
    assert!(out.get("abandon_propensity").is_none(), "no open checkout, no abandonment score");
}

#[test]
fn the_sufficiency_gate_counts_examples_and_classes() {
    let world = abandonment::simulate(&SimArgs { customers: 300, days: 30, seed: 1 });
    let (ex, _, _) = abandonment::examples(&world);
    let opts = TrainOptions::default();
    assert!(propensity::sufficiency(&ex[..100.min(ex.len())], &opts, "abandonment").is_some());
    let mut few_pos: Vec<_> = ex.iter().filter(|e| !e.label).take(400).cloned().collect();
    few_pos.extend(ex.iter().filter(|e| e.label).take(5).cloned());
    if few_pos.len() >= 300 {
        assert!(propensity::sufficiency(&few_pos, &opts, "abandonment").unwrap().contains("each class"));
    }
}
