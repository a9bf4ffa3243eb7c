//! The offer bandit: numerics against committed numpy/scipy values (`reference/bandit_reference.py`),
//! propensities, the holdout, reproducibility, guardrails, arms and context features.

#![allow(clippy::needless_range_loop)]

use nudge_decide::bandit::*;
use nudge_model::{CustomerId, Money, Source};
use nudge_state::offers::OfferRecord;
use nudge_state::{CheckoutRecord, CustomerState, DayCounts, OrderRecord};
use serde_json::Value;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}

fn reference() -> (Learner, Vec<LoggedOutcome>, Value) {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/reference");
    let refv: Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{dir}/bandit_reference.json")).unwrap())
            .unwrap();
    let arms = ["none", "pct_10", "pct_15"].iter().map(|a| Arm::parse(a, 0.0).unwrap()).collect();
    let mut learner = Learner::with_dim(arms, PolicyKind::Thompson, 4);
    let mut logged = Vec::new();
    let mut rdr = csv::Reader::from_path(format!("{dir}/bandit_data.csv")).unwrap();
    for rec in rdr.records() {
        let rec = rec.unwrap();
        let f: Vec<f64> = rec.iter().map(|v| v.parse().unwrap()).collect();
        let arm = f[0] as usize;
        let x = f[1..5].to_vec();
        learner.update(arm, &x, f[5]);
        logged.push(LoggedOutcome { arm, context: x, reward: f[5], propensity: 1.0 / 3.0, explored: true });
    }
    (learner, logged, refv)
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

#[test]
fn ridge_estimates_inverses_and_noise_match_numpy() {
    let (learner, _, r) = reference();
    for (a, arm) in r["arms"].as_array().unwrap().iter().enumerate() {
        assert_eq!(learner.counts()[a], arm["n"].as_u64().unwrap());
        for (got, want) in learner.theta(a).iter().zip(floats(&arm["theta"])) {
            assert!(close(*got, want, 1e-9), "arm {a} θ {got} vs {want}");
        }
        for (got, want) in learner.a_inv(a).iter().zip(floats(&arm["a_inv"])) {
            assert!(close(*got, want, 1e-9), "arm {a} A⁻¹ {got} vs {want}");
        }
        let nv = arm["noise_var"].as_f64().unwrap();
        assert!(close(learner.noise_var(a), nv, 1e-9), "arm {a} σ² {} vs {nv}", learner.noise_var(a));
    }
}

#[test]
fn posterior_thompson_propensity_and_ucb_match_scipy() {
    let (learner, _, r) = reference();
    let ucb = learner.clone().with_policy(PolicyKind::LinUcb);
    for q in r["queries"].as_array().unwrap() {
        let x = floats(&q["x"]);
        let est = learner.estimates(&x);
        let (means, sds, win, ucbs) =
            (floats(&q["mean"]), floats(&q["sd"]), floats(&q["thompson_win"]), floats(&q["linucb"]));
        for a in 0..3 {
            assert!(close(est[a].0, means[a], 1e-9), "mean {} vs {}", est[a].0, means[a]);
            assert!(close(est[a].1, sds[a], 1e-9), "sd {} vs {}", est[a].1, sds[a]);
        }
        let normals: Vec<(f64, f64)> = est.iter().map(|&(m, s)| (m, 0.5 * s)).collect();
        let mut total = 0.0;
        for a in 0..3 {
            let p = win_probability(&normals, a);
            total += p;
            assert!((p - win[a]).abs() < 1e-6, "win probability of arm {a}: {p} vs {}", win[a]);
        }
        assert!((total - 1.0).abs() < 1e-6);
        // A Thompson choice logs the win probability of the arm it chose.
        let c = learner.choose(&x, &[true; 3], 11, 0);
        assert!(!c.explored);
        assert!((c.propensity - win[c.arm]).abs() < 1e-6);
        // LinUCB takes the largest mean + α·sd, deterministically.
        let c = ucb.choose(&x, &[true; 3], 11, 0);
        let best = (0..3).max_by(|&i, &j| ucbs[i].partial_cmp(&ucbs[j]).unwrap()).unwrap();
        assert_eq!((c.arm, c.propensity), (best, 1.0));
        for a in 0..3 {
            assert!(close(c.estimates[a].score.unwrap(), ucbs[a], 1e-9));
        }
    }
}

#[test]
fn off_policy_value_matches_numpy() {
    let (learner, logged, r) = reference();
    let ope = off_policy_value(&logged, &learner);
    let want = &r["ope"];
    assert_eq!(ope.explored, 300);
    assert_eq!(ope.matched as u64, want["matched"].as_u64().unwrap());
    let ips = ope.ips.unwrap();
    let snips = ope.snips.unwrap();
    assert!(close(ips.estimate, want["ips"].as_f64().unwrap(), 1e-9));
    assert!(close(ips.se, want["ips_se"].as_f64().unwrap(), 1e-9));
    assert!(close(snips.estimate, want["snips"].as_f64().unwrap(), 1e-9));
    assert!(close(snips.se, want["snips_se"].as_f64().unwrap(), 1e-9));
    assert!(close(ips.high - ips.low, 2.0 * 1.96 * ips.se, 1e-12));
    // Only explored decisions count.
    let exploited: Vec<LoggedOutcome> =
        logged.iter().cloned().map(|o| LoggedOutcome { explored: false, ..o }).collect();
    let none = off_policy_value(&exploited, &learner);
    assert_eq!((none.explored, none.ips, none.snips), (0, None, None));
}

#[test]
fn thompson_propensity_agrees_with_the_frequency_of_its_choices() {
    let (learner, _, _) = reference();
    let x = [1.0, 0.5, 0.5, 0.0];
    let n = 20_000;
    let mut counts = [0usize; 3];
    let mut logged = [0.0; 3];
    for seed in 0..n {
        let c = learner.choose(&x, &[true; 3], seed, 0);
        counts[c.arm] += 1;
        logged[c.arm] = c.propensity;
    }
    for a in 0..3 {
        let freq = counts[a] as f64 / n as f64;
        if counts[a] > 0 {
            let p = logged[a];
            let se = (p * (1.0 - p) / n as f64).sqrt();
            assert!((freq - p).abs() < 4.0 * se + 1e-9, "arm {a}: frequency {freq} vs propensity {p}");
        }
    }
}

#[test]
fn two_arm_win_probability_has_its_closed_form() {
    // P(X₁ > X₂) = Φ((μ₁ − μ₂) / √(s₁² + s₂²)).
    for &(m1, s1, m2, s2) in &[
        (1.0, 1.0, 0.0, 1.0),
        (0.0, 0.3, 0.2, 2.0),
        (5.0, 0.01, 4.99, 0.02),
        (0.0, 2.0, 0.2, 0.01),
        (0.0, 5.0, -3.0, 0.001),
        (10.0, 0.5, 12.0, 40.0),
    ] {
        let p = win_probability(&[(m1, s1), (m2, s2)], 0);
        let z: f64 = (m1 - m2) / (s1 * s1 + s2 * s2).sqrt();
        let want = 0.5 * statrs::function::erf::erfc(-z / std::f64::consts::SQRT_2);
        assert!((p - want).abs() < 1e-6, "{p} vs {want}");
    }
}

#[test]
fn choices_are_reproducible_from_seed_and_state_and_survive_a_restart() {
    let (learner, _, _) = reference();
    let x = [1.0, 0.3, 0.7, 0.2];
    let restored: Learner = serde_json::from_str(&serde_json::to_string(&learner).unwrap()).unwrap();
    assert_eq!(serde_json::to_string(&restored).unwrap(), serde_json::to_string(&learner).unwrap());
    for seed in [0u64, 1, 42, u64::MAX] {
        let a = learner.choose(&x, &[true; 3], seed, 5);
        assert_eq!(a, learner.choose(&x, &[true; 3], seed, 5));
        assert_eq!(a, restored.choose(&x, &[true; 3], seed, 5), "a restored learner chooses the same");
        assert_eq!(a.seed, seed);
    }
    // Different seeds do not always give the same Thompson choice where arms are close.
    let arms: Vec<usize> =
        (0..200).map(|s| learner.choose(&[1.0, 0.5, 0.5, 0.0], &[true; 3], s, 0).arm).collect();
    assert!(arms.iter().any(|&a| a != arms[0]));
}

#[test]
fn a_bad_learner_body_is_refused() {
    let (learner, _, _) = reference();
    let mut body: Value = serde_json::to_value(&learner).unwrap();
    body["stats"][0]["a"][0] = Value::from("-5.0");
    let err = serde_json::from_value::<Learner>(body).unwrap_err().to_string();
    assert!(err.contains("not positive definite"), "{err}");
    let mut body: Value = serde_json::to_value(&learner).unwrap();
    body["stats"][1]["a_inv"][0] = Value::from("0.5");
    let err = serde_json::from_value::<Learner>(body).unwrap_err().to_string();
    assert!(err.contains("does not invert"), "{err}");
    let mut body: Value = serde_json::to_value(&learner).unwrap();
    body["pool"]["n"] = Value::from(7);
    assert!(serde_json::from_value::<Learner>(body).is_err());
}

#[test]
fn the_holdout_is_uniform_over_eligible_arms_at_the_configured_rate() {
    let (learner, _, _) = reference();
    let x = [1.0, 0.9, 0.1, 1.2];
    let eligible = [true, false, true];
    let n = 20_000u64;
    let mut explored = 0;
    let mut per_arm = [0u32; 3];
    for seed in 0..n {
        let c = learner.choose(&x, &eligible, seed, 5);
        assert!(eligible[c.arm], "never an ineligible arm");
        if c.explored {
            explored += 1;
            per_arm[c.arm] += 1;
            assert_eq!(c.propensity, 0.5);
            assert!(c.estimates.iter().all(|e| e.score.is_none()));
        }
    }
    let rate = explored as f64 / n as f64;
    assert!((rate - 0.05).abs() < 0.006, "holdout rate {rate}");
    assert_eq!(per_arm[1], 0);
    assert!((per_arm[0] as f64 - per_arm[2] as f64).abs() < 4.0 * (explored as f64).sqrt(), "{per_arm:?}");
    assert!((0..100).all(|s| !learner.choose(&x, &eligible, s, 0).explored));
    assert!((0..100).all(|s| learner.choose(&x, &eligible, s, 100).explored));
}

#[test]
fn arms_parse_and_cost() {
    let none = Arm::parse("none", 4.0).unwrap();
    assert_eq!((none.discount_pct, none.fixed_cost, none.cost(80.0)), (0.0, 0.0, 0.0));
    assert!(!none.is_costly());
    assert_eq!(Arm::parse("content_only", 4.0).unwrap().cost(80.0), 0.0);
    let ship = Arm::parse("free_shipping", 4.5).unwrap();
    assert_eq!((ship.cost(80.0), ship.cost(10.0)), (4.5, 4.5));
    assert!(ship.is_costly());
    let pct = Arm::parse("pct_15", 4.0).unwrap();
    assert_eq!(pct.discount_pct, 15.0);
    assert!((pct.cost(80.0) - 12.0).abs() < 1e-12);
    assert_eq!(Arm::parse("pct_12.5", 0.0).unwrap().discount_pct, 12.5);
    for bad in ["pct_0", "pct_100", "pct_x", "bogus", "PCT_10", ""] {
        let err = Arm::parse(bad, 0.0).unwrap_err().to_string();
        assert!(err.contains(bad) || bad.is_empty(), "{err}");
    }
    assert!(Arm::parse("free_shipping", -1.0).is_err());
    assert_eq!(serde_json::to_string(&PolicyKind::LinUcb).unwrap(), "\"linucb\"");
    assert_eq!(serde_json::from_str::<PolicyKind>("\"thompson\"").unwrap(), PolicyKind::Thompson);
}

#[test]
fn bad_updates_are_errors() {
    let mut l = Learner::new(vec![Arm::parse("none", 0.0).unwrap()], PolicyKind::Thompson);
    assert!(l.try_update(1, &[0.0; CONTEXT_DIM], 1.0).is_err());
    assert!(l.try_update(0, &[0.0; 3], 1.0).is_err());
    assert!(l.try_update(0, &[0.0; CONTEXT_DIM], f64::NAN).is_err());
    assert!(l.try_update(0, &[0.0; CONTEXT_DIM], 1.0).is_ok());
    assert_eq!(l.counts(), vec![1]);
}

fn now() -> OffsetDateTime {
    datetime!(2026-06-01 12:00 UTC)
}

fn state() -> CustomerState {
    CustomerState::new(CustomerId::new(Source::Shopify, "1").unwrap())
}

fn offer(arm: &str, days_ago: i64) -> OfferRecord {
    OfferRecord {
        flow: "winback".into(),
        arm: arm.into(),
        decision_id: format!("d-{arm}-{days_ago}"),
        decided_at: now() - Duration::days(days_ago),
        window_end: now() - Duration::days(days_ago) + Duration::days(7),
        settled: false,
    }
}

fn all_arms() -> Vec<Arm> {
    ["none", "content_only", "free_shipping", "pct_10", "pct_15", "pct_25"]
        .iter()
        .map(|a| Arm::parse(a, 5.0).unwrap())
        .collect()
}

#[test]
fn guardrails_parse_with_defaults_and_refuse_unknown_keys() {
    let g: Guardrails = serde_json::from_str(
        r#"{"max_discount_pct": 15, "min_days_between_offers": 14, "skip_if_propensity_above": 0.8}"#,
    )
    .unwrap();
    assert_eq!(
        (g.max_discount_pct, g.min_days_between_offers, g.skip_if_propensity_above),
        (15.0, 14, Some(0.8))
    );
    let none: Guardrails = serde_json::from_str("{}").unwrap();
    assert_eq!(none, Guardrails::default());
    assert!(
        none.eligible(&all_arms(), &state(), now(), Some(0.99)).iter().all(|&e| e),
        "the default limits nothing"
    );
    assert!(serde_json::from_str::<Guardrails>(r#"{"max_discount": 15}"#).is_err());
}

#[test]
fn guardrail_max_discount() {
    let g = Guardrails { max_discount_pct: 15.0, ..Guardrails::default() };
    assert_eq!(g.eligible(&all_arms(), &state(), now(), None), vec![true, true, true, true, true, false]);
}

#[test]
fn guardrail_min_days_between_costly_offers() {
    let g = Guardrails { max_discount_pct: 100.0, min_days_between_offers: 14, ..Guardrails::default() };
    let mut s = state();
    s.offers.push(offer("content_only", 1)); // free offers do not count
    s.offers.push(offer("pct_10", 20));
    assert!(g.eligible(&all_arms(), &s, now(), None).iter().all(|&e| e));
    s.offers.push(offer("free_shipping", 13));
    assert_eq!(g.eligible(&all_arms(), &s, now(), None), vec![true, true, false, false, false, false]);
    // 0 = no limit.
    let g0 = Guardrails { min_days_between_offers: 0, ..g.clone() };
    assert!(g0.eligible(&all_arms(), &s, now(), None).iter().all(|&e| e));
    // An offer recorded after `now` is not known at decision time.
    let mut later = state();
    later.offers.push(offer("pct_10", -1));
    assert!(g.eligible(&all_arms(), &later, now(), None).iter().all(|&e| e));
}

#[test]
fn guardrail_skip_when_the_customer_would_buy_anyway() {
    let g =
        Guardrails { max_discount_pct: 100.0, skip_if_propensity_above: Some(0.8), ..Guardrails::default() };
    let free_only = vec![true, true, false, false, false, false];
    assert_eq!(g.eligible(&all_arms(), &state(), now(), Some(0.85)), free_only);
    assert!(g.eligible(&all_arms(), &state(), now(), Some(0.8)).iter().all(|&e| e));
    assert!(g.eligible(&all_arms(), &state(), now(), None).iter().all(|&e| e), "unscored: not restricted");
}

#[test]
fn guardrail_margin_floor() {
    let g = Guardrails {
        max_discount_pct: 100.0,
        margin_pct: Some(40.0),
        margin_floor_pct: Some(25.0),
        ..Guardrails::default()
    };
    // 40 − 25 = 15: pct_25 is out, pct_15 is in, free shipping is not a percentage.
    assert_eq!(g.eligible(&all_arms(), &state(), now(), None), vec![true, true, true, true, true, false]);
    let only_floor = Guardrails { margin_pct: None, ..g };
    assert!(only_floor.eligible(&all_arms(), &state(), now(), None).iter().all(|&e| e));
}

#[test]
fn no_eligible_arm_takes_the_cheapest_and_says_so() {
    let arms: Vec<Arm> = ["pct_20", "pct_10"].iter().map(|a| Arm::parse(a, 0.0).unwrap()).collect();
    let l = Learner::new(arms, PolicyKind::Thompson);
    let c = l.choose(&[0.5; CONTEXT_DIM], &[false, false], 3, 5);
    assert!(c.no_eligible_arm);
    assert_eq!(c.arm_name, "pct_10");
    let c = l.choose(&[0.5; CONTEXT_DIM], &[true, false], 3, 0);
    assert_eq!((c.arm, c.no_eligible_arm), (0, false));
}

#[test]
fn context_features_from_a_customer_state() {
    let usd = |v: &str| Money::parse(v, "USD").unwrap();
    let mut s = state();
    let order = |days: i64, total: &str, cancelled: bool| OrderRecord {
        created_at: now() - Duration::days(days),
        updated_at: now() - Duration::days(days),
        total: usd(total),
        cancelled,
        items: vec![],
        checkout_token: None,
        cart_token: None,
    };
    s.orders.insert("a".into(), order(100, "40.00", false));
    s.orders.insert("b".into(), order(73, "60.00", false));
    s.orders.insert("c".into(), order(10, "500.00", true)); // cancelled: ignored
    s.orders.insert("d".into(), order(-3, "999.00", false)); // after now: ignored
    s.offers.push(offer("pct_10", 45));
    s.offers.push(offer("content_only", 9));
    s.offers.push(offer("none", 120));
    let x = context_features(&s, now(), Some(0.3));
    assert_eq!(x.len(), CONTEXT_DIM);
    assert_eq!(CONTEXT_NAMES.len(), CONTEXT_DIM);
    let want = [
        1.0,
        0.3,
        0.0,
        3f64.ln() / 21f64.ln(),
        73.0 / 365.0,
        0.0,
        45.0 / 90.0,
        2.0 / 5.0,
        50.0 / 250.0,
        0.2 * 0.3,
    ];
    for (i, (g, w)) in x.iter().zip(want).enumerate() {
        assert!((g - w).abs() < 1e-12, "{}: {g} vs {w}", CONTEXT_NAMES[i]);
    }
    // An open checkout is the basket; no propensity: flagged, and no expected revenue.
    s.open_checkouts.insert(
        "t".into(),
        CheckoutRecord {
            cart_token: None,
            updated_at: now() - Duration::hours(1),
            total: usd("125.00"),
            item_count: 2,
            recovery_url: None,
            abandoned: false,
        },
    );
    // Human opens and clicks in the last 30 days (machine opens and older days do not count).
    let today = nudge_state::day_number(now());
    s.engagement
        .days
        .insert(today - 2, DayCounts { opened: 2, clicked: 1, machine_opened: 9, ..DayCounts::default() });
    s.engagement.days.insert(today - 29, DayCounts { opened: 1, ..DayCounts::default() });
    s.engagement.days.insert(today - 45, DayCounts { opened: 7, ..DayCounts::default() });
    let x = context_features(&s, now(), None);
    assert_eq!((x[1], x[2], x[8], x[9]), (0.0, 1.0, 0.5, 0.0));
    assert!((x[5] - 5f64.ln() / 31f64.ln()).abs() < 1e-12, "engagement {}", x[5]);
    // A new customer.
    let x = context_features(&state(), now(), Some(0.1));
    assert_eq!(x, vec![1.0, 0.1, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0, 0.0]);
}

#[test]
fn report_lists_arms_and_the_off_policy_value() {
    let (learner, logged, _) = reference();
    let r = report(&learner, &logged);
    assert_eq!(r["arms"].as_array().unwrap().len(), 3);
    assert_eq!(r["arms"][1]["arm"], "pct_10");
    assert_eq!(r["arms"][0]["n"].as_u64().unwrap(), learner.counts()[0]);
    assert!(r["off_policy"]["ips"]["estimate"].is_f64());
    assert_eq!(r["policy"], "thompson");
}
