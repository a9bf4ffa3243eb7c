//! The cold-start scenario. Generative process (seeded):
//!
//! - Each customer is first seen through a storefront product view whose context gives an acquisition
//!   source (google 30 %, facebook 20 %, instagram 15 %, newsletter 10 %, direct 15 %, tiktok 10 %), a
//!   country (DE 50 %, AT 15 %, CH 15 %, US 20 %), a device (mobile 60 %, desktop 40 %) and the viewed
//!   product's category (coffee 35 %, equipment 20 %, accessories 30 %, gifts 15 %); 10 % of customers'
//!   views carry no context (unknown source, country and device).
//! - TRUE behaviour: orders in the 12 months after first seen ~ Poisson(λ), `λ = 1.2 · m_source · m_category
//!   · m_device` (source: google 1.0, facebook 0.6, instagram 0.5, newsletter 3.0, direct 1.6, tiktok 0.25;
//!   category: coffee 2.5, equipment 0.4, accessories 0.9, gifts 0.6; device: mobile 0.85, desktop 1.2), each
//!   order's total ~ Gamma(shape 4) with mean `45 · a_category · a_country` (category: coffee 0.8, equipment
//!   3.0, accessories 1.0, gifts 1.3; country: DE 1.0, AT 0.95, CH 1.4, US 0.8), at uniform times.
//! - 80 % of the customers were first seen 1–2 years before "now" and their orders are folded into their
//!   states; the other 20 % were first seen in the last week and have no orders yet (their simulated
//!   12-month value is the truth they are scored against).
//!
//! Evaluation: the cold-start model is fitted on the states; each new customer is scored through the
//! serving path; the MAE of their 12-month value is compared with predicting the population mean.

use super::{SimArgs, SimReport};
use crate::cold_start::{self, ColdStartFitOptions, ColdStartModel};
use crate::serve::StateModel;
use nudge_model::{
    Behaviour, BehaviourKind, BehaviourProduct, CustomerId, Event, Money, Order, ScoreSet, Segment,
    VisitorContext,
};
use nudge_state::CustomerState;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Gamma, Poisson};
use serde_json::json;

const SOURCES: [(&str, f64, f64); 6] = [
    ("google", 0.30, 1.0),
    ("facebook", 0.20, 0.6),
    ("instagram", 0.15, 0.5),
    ("newsletter", 0.10, 3.0),
    ("direct", 0.15, 1.6),
    ("tiktok", 0.10, 0.25),
];
// (name, share, rate multiplier, order-value multiplier)
const CATEGORIES: [(&str, f64, f64, f64); 4] = [
    ("coffee", 0.35, 2.5, 0.8),
    ("equipment", 0.20, 0.4, 3.0),
    ("accessories", 0.30, 0.9, 1.0),
    ("gifts", 0.15, 0.6, 1.3),
];
const COUNTRIES: [(&str, f64, f64); 4] =
    [("DE", 0.50, 1.0), ("AT", 0.15, 0.95), ("CH", 0.15, 1.4), ("US", 0.20, 0.8)];
const DEVICES: [(&str, f64, f64); 2] = [("mobile", 0.60, 0.85), ("desktop", 0.40, 1.2)];

fn pick<'a, T>(rng: &mut impl Rng, items: &'a [T], share: impl Fn(&T) -> f64) -> &'a T {
    let mut u = rng.gen_range(0.0..1.0);
    for it in items {
        u -= share(it);
        if u < 0.0 {
            return it;
        }
    }
    &items[items.len() - 1]
}

/// The simulated world: states, which are new, and each new customer's true 12-month value.
pub struct World {
    pub states: Vec<CustomerState>,
    /// For each new customer: (index into `states`, realised 12-month value, its true expectation).
    pub new_customers: Vec<(usize, f64, f64)>,
    pub now: nudge_model::Timestamp,
}

/// Generates the customers and folds their history into states.
pub fn world(args: &SimArgs) -> World {
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let now = time::macros::datetime!(2026-06-01 00:00 UTC);
    let mut states = Vec::with_capacity(args.customers);
    let mut new_customers = Vec::new();
    for i in 0..args.customers {
        let src = pick(&mut rng, &SOURCES, |s| s.1);
        let cat = pick(&mut rng, &CATEGORIES, |c| c.1);
        let country = pick(&mut rng, &COUNTRIES, |c| c.1);
        let dev = pick(&mut rng, &DEVICES, |d| d.1);
        let has_context = rng.gen_bool(0.9);
        let is_new = rng.gen_bool(0.2);
        let seen = if is_new {
            now - time::Duration::minutes(rng.gen_range(60..7 * 24 * 60))
        } else {
            now - time::Duration::days(rng.gen_range(365..730))
        };
        let lambda = 1.2 * src.2 * cat.2 * dev.2;
        let aov = 45.0 * cat.3 * country.2;
        let orders = Poisson::new(lambda).expect("a positive rate").sample(&mut rng) as u32;
        let gamma = Gamma::new(4.0, aov / 4.0).expect("a valid gamma");
        let totals: Vec<(f64, i64)> =
            (0..orders).map(|_| (gamma.sample(&mut rng), rng.gen_range(0..365 * 24 * 60))).collect();
        let id: CustomerId = format!("shopify:{}", 500_000 + i).parse().expect("a valid id");
        let mut s = CustomerState::new(id.clone());
        s.apply(&Event::Behaviour(Behaviour {
            customer: id.clone(),
            anonymous_id: None,
            email: None,
            kind: BehaviourKind::ProductViewed,
            name: "Product Viewed".into(),
            message_id: Some(format!("view-{i}")),
            at: seen,
            products: vec![BehaviourProduct {
                product_id: Some(format!("p-{}", cat.0)),
                category: Some(cat.0.to_string()),
                ..Default::default()
            }],
            cart_id: None,
            order_id: None,
            query: None,
            value: None,
            url: None,
            properties: serde_json::Value::Null,
            context: if has_context {
                VisitorContext {
                    source: Some(src.0.into()),
                    country: Some(country.0.into()),
                    device: Some(dev.0.into()),
                    utc_offset_minutes: None,
                }
            } else {
                VisitorContext::default()
            },
        }));
        let value: f64 = totals.iter().map(|(v, _)| (v * 100.0).round() / 100.0).sum();
        if is_new {
            new_customers.push((states.len(), value, lambda * aov));
        } else {
            for (k, (v, minute)) in totals.iter().enumerate() {
                let at = seen + time::Duration::minutes(*minute);
                s.apply(&Event::OrderUpserted(Order {
                    id: format!("{i}-{k}"),
                    name: None,
                    customer: Some(id.clone()),
                    email: None,
                    created_at: at,
                    updated_at: at,
                    cancelled_at: None,
                    total: Money::parse(&format!("{v:.2}"), "EUR").expect("a valid amount"),
                    financial_status: None,
                    line_items: Vec::new(),
                    checkout_token: None,
                    cart_token: None,
                    accepts_marketing: None,
                }));
            }
        }
        states.push(s);
    }
    World { states, new_customers, now }
}

/// Runs the scenario and evaluates the models on it.
pub fn evaluate(args: &SimArgs) -> SimReport {
    let w = world(args);
    let refs: Vec<&CustomerState> = w.states.iter().collect();
    let body = cold_start::fit(&refs, w.now, &ColdStartFitOptions::default());
    let n = w.new_customers.len().max(1) as f64;
    let (model_mae, baseline_mae, mean, metrics) = match body {
        Ok(body) => {
            let mean = body.population_mean;
            let metrics = body.metrics.clone();
            let model = ColdStartModel { version_id: "sim".into(), body };
            let mut err = 0.0;
            for (i, truth, _) in &w.new_customers {
                let mut set = ScoreSet {
                    scores: Vec::new(),
                    segment: Segment::Prospect,
                    model_version: String::new(),
                    labels: Default::default(),
                    products: Vec::new(),
                    scored_at: w.now,
                    adopted_segments: None,
                };
                model.score(&w.states[*i], w.now, &mut set);
                let p = set.value(crate::names::PREDICTED_CLV).unwrap_or(mean);
                err += (p - truth).abs();
            }
            let base = w.new_customers.iter().map(|(_, t, _)| (mean - t).abs()).sum::<f64>() / n;
            (Some(err / n), Some(base), Some(mean), metrics)
        }
        Err(_) => (None, None, None, serde_json::Value::Null),
    };
    let oracle_mae = w.new_customers.iter().map(|(_, t, e)| (e - t).abs()).sum::<f64>() / n;
    let reduction = model_mae.zip(baseline_mae).map(|(m, b)| 1.0 - m / b);
    let f = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.2}"));
    let text = format!(
        "cold_start: {} customers, {} new (seed {})\n\
         12-month value of new customers, mean absolute error:\n\
         \x20 oracle (true expectation) {oracle_mae:.2}\n\
         \x20 cold-start model          {}\n\
         \x20 population mean ({})  {}\n\
         \x20 reduction                 {}\n",
        w.states.len(),
        w.new_customers.len(),
        args.seed,
        f(model_mae),
        f(mean),
        f(baseline_mae),
        reduction.map_or("-".into(), |r| format!("{:.1} %", 100.0 * r)),
    );
    SimReport {
        scenario: "cold_start",
        text,
        json: json!({
            "customers": w.states.len(),
            "new_customers": w.new_customers.len(),
            "seed": args.seed,
            "model_mae": model_mae,
            "oracle_mae": oracle_mae,
            "population_mean_mae": baseline_mae,
            "population_mean": mean,
            "mae_reduction": reduction,
            "fit_metrics": metrics,
        }),
    }
}
