//! The HTTP scorer against the fake: the request contract, fallbacks within the timeout when the scorer
//! hangs, fails or answers garbage, and the circuit breaker.

mod common;
use common::*;
use nudge_custom::{BreakerState, CustomModels};
use nudge_model::{CustomerId, PseudonymKey, ScoreSet};
use nudge_state::CustomerState;
use nudge_testkit::{FakeScorer, FakeScorerConfig, ScorerMode};
use std::time::{Duration, Instant};

const KEY: &str = "0123456789abcdef0123456789abcdef-test-key";

fn models(url: &str, timeout: &str, failures: u32) -> CustomModels {
    nudge_testkit::ensure_crypto_provider();
    let s = spec(&format!(
        r#"name = "churn_http"
http = {{ url = "{url}", timeout = "{timeout}", failures = {failures}, cooldown = "1h" }}
mode = "live"
inputs = {{ orders = "customer.orders_count", recency = ["scores.churn_risk", "scores.p_alive"] }}
outputs = {{ custom_churn = {{ output = "churn", min = 0.0, max = 1.0, fallback = "churn_risk" }} }}"#
    ));
    CustomModels::load(&[s], &models_dir(), Some(PseudonymKey::from_bytes(KEY.as_bytes()))).unwrap()
}

fn batch(n: usize) -> Vec<(CustomerId, CustomerState, ScoreSet)> {
    (0..n)
        .map(|i| {
            let id = format!("shopify:{}", 5000 + i);
            (id.parse().unwrap(), customer(&id, 2, 30), builtin(20.0 + i as f64, 0.8))
        })
        .collect()
}

#[tokio::test]
async fn answers_are_served_and_the_request_carries_pseudonyms_and_features_only() {
    let fake = FakeScorer::start(FakeScorerConfig::default()).await.unwrap();
    let m = models(&fake.url(), "2s", 5);
    let customers = batch(3);
    let pre = m.prefetch(&customers, NOW).await;
    for (c, state, b) in &customers {
        let mut scores = b.clone();
        let reports = m.apply(state, NOW, &mut scores, &pre);
        assert!(reports[0].fallbacks.is_empty(), "{reports:?}");
        let s = scores.get("custom_churn").unwrap();
        // The fake's score: the logistic of the features' sum / 100.
        let sum = 2.0 + b.value("churn_risk").unwrap() + 0.8;
        assert!((s.value - 1.0 / (1.0 + (-sum / 100.0f64).exp())).abs() < 1e-6, "{c}: {}", s.value);
        assert_eq!(s.model_id, "custom:churn_http");
    }
    let reqs = fake.requests();
    assert_eq!(reqs.len(), 3);
    for r in &reqs {
        assert_eq!(r.status, 200, "{:?}", r.violation);
        assert!(!r.body.contains("shopify:"), "the customer's key never leaves: {}", r.body);
    }
    let body: serde_json::Value = serde_json::from_str(&reqs[0].body).unwrap();
    assert_eq!(body["features"]["orders"].as_f64(), Some(2.0));
    assert_eq!(body["features"]["recency"].as_array().unwrap().len(), 2);
    fake.shutdown().await;
}

/// Every customer falls back (to the built-in churn risk, labelled) with the reason, within the timeout
/// plus generous slack.
async fn falls_back(mode: ScorerMode, reason: &str) {
    let fake = FakeScorer::start(FakeScorerConfig::default()).await.unwrap();
    fake.set_mode(mode);
    let m = models(&fake.url(), "300ms", 100);
    let customers = batch(40);
    let started = Instant::now();
    let pre = m.prefetch(&customers, NOW).await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "{mode:?}: the batch took {took:?} for a 300ms timeout");
    for (_, state, b) in &customers {
        let mut scores = b.clone();
        let reports = m.apply(state, NOW, &mut scores, &pre);
        let fb = &reports[0].fallbacks;
        assert_eq!(fb.len(), 1, "{mode:?}: {reports:?}");
        assert!(fb[0].reason.contains(reason), "{mode:?}: {}", fb[0].reason);
        let s = scores.get("custom_churn").unwrap();
        assert_eq!(s.value, b.value("churn_risk").unwrap());
        assert!(s.explanation.starts_with("fallback to `churn_risk`"), "{}", s.explanation);
    }
    fake.shutdown().await;
}

#[tokio::test]
async fn a_hanging_scorer_falls_back_at_the_timeout() {
    falls_back(ScorerMode::Hang, "no answer within 300ms").await;
}

#[tokio::test]
async fn a_failing_scorer_falls_back() {
    falls_back(ScorerMode::ServerError, "answered 500").await;
}

#[tokio::test]
async fn garbage_and_other_shapes_fall_back() {
    falls_back(ScorerMode::Garbage, "not JSON").await;
    falls_back(ScorerMode::WrongShape, "no `scores` object").await;
    falls_back(ScorerMode::OutOfRange, "outside [0, 1]").await;
}

#[tokio::test]
async fn the_breaker_opens_after_consecutive_failures_and_stops_calling() {
    let fake = FakeScorer::start(FakeScorerConfig::default()).await.unwrap();
    fake.set_mode(ScorerMode::ServerError);
    let m = models(&fake.url(), "2s", 3);
    let h = m.models()[0].http().unwrap();
    assert_eq!(h.breaker_state(), BreakerState::Closed);
    // One customer at a time: three failures open it.
    for i in 0..3 {
        let pre = m.prefetch(&batch(1), NOW).await;
        let (_, state, b) = &batch(1)[0];
        let mut scores = b.clone();
        let r = m.apply(state, NOW, &mut scores, &pre);
        assert!(r[0].fallbacks[0].reason.contains("500"), "call {i}: {r:?}");
    }
    assert_eq!(h.breaker_state(), BreakerState::Open);
    let calls = fake.requests().len();
    assert_eq!(calls, 3);
    fake.set_mode(ScorerMode::Ok);
    let customers = batch(20);
    let pre = m.prefetch(&customers, NOW).await;
    assert_eq!(fake.requests().len(), calls, "an open breaker makes no call");
    let (_, state, b) = &customers[0];
    let mut scores = b.clone();
    let r = m.apply(state, NOW, &mut scores, &pre);
    assert_eq!(r[0].fallbacks[0].reason, "circuit breaker open");
    fake.shutdown().await;
}

#[tokio::test]
async fn the_breaker_probes_after_its_cool_down() {
    nudge_testkit::ensure_crypto_provider();
    let fake = FakeScorer::start(FakeScorerConfig::default()).await.unwrap();
    fake.set_mode(ScorerMode::ServerError);
    let s = spec(&format!(
        r#"name = "churn_http"
http = {{ url = "{}", timeout = "2s", failures = 1, cooldown = "200ms", max_concurrency = 1 }}
mode = "live"
inputs = {{ orders = "customer.orders_count" }}
outputs = {{ custom_churn = {{ output = "churn" }} }}"#,
        fake.url()
    ));
    let m = CustomModels::load(&[s], &models_dir(), Some(PseudonymKey::from_bytes(KEY.as_bytes()))).unwrap();
    let h = m.models()[0].http().unwrap();
    m.prefetch(&batch(1), NOW).await;
    assert_eq!(h.breaker_state(), BreakerState::Open);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(h.breaker_state(), BreakerState::HalfOpen);
    // The probe fails: open again, and only the probe was sent.
    let before = fake.requests().len();
    m.prefetch(&batch(5), NOW).await;
    assert_eq!(fake.requests().len(), before + 1, "one probe");
    assert_eq!(h.breaker_state(), BreakerState::Open);
    // After the next cool-down a successful probe closes it.
    fake.set_mode(ScorerMode::Ok);
    tokio::time::sleep(Duration::from_millis(300)).await;
    m.prefetch(&batch(1), NOW).await;
    assert_eq!(h.breaker_state(), BreakerState::Closed);
    fake.shutdown().await;
}
