use crate::*;
use nudge_ingest::shopify::fixtures::{CheckoutFixture, CustomerFixture, LineItemFixture, OrderFixture};
use nudge_model::{AuditStage, TerminalState, TraceId};
use nudge_testkit::fake_klaviyo::FakeMode;
use nudge_testkit::shopify_sender::{Delivery, SendOptions};
use std::time::Duration;
use time::OffsetDateTime;

fn customer(id: u64) -> CustomerFixture {
    CustomerFixture::new(id, Some(&format!("c{id}@example.org")), OffsetDateTime::now_utc())
        .consent(Some("subscribed"))
}

fn order(id: u64, cust: u64) -> OrderFixture {
    OrderFixture::new(id, OffsetDateTime::now_utc()).customer(customer(cust)).line_item(LineItemFixture::new(
        9_100_000_001,
        "Organic Tee",
        2,
        "39.95",
    ))
}

fn trace_of(body: &[u8]) -> TraceId {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    v["trace_id"].as_str().unwrap().parse().unwrap()
}

async fn dump(t: &TestApp, trace: TraceId) -> String {
    let view = t.app.store().trace(trace).await.unwrap();
    format!(
        "trace: {}\nfake requests: {:#?}",
        serde_json::to_string_pretty(&view).unwrap(),
        t.fake.requests()
    )
}

async fn terminal(t: &TestApp, trace: TraceId) -> Option<TerminalState> {
    nudge_store::terminal_of(&**t.app.store(), trace).await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_flows_to_a_klaviyo_profile_with_a_full_audit_trail() {
    let t = spawn_app(|_| {}).await;
    let r = t
        .sender
        .send(&Delivery::new("orders/create", order(6_120_000_000_001, 880_012).to_bytes()))
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let trace = trace_of(&r.body);
    let ok = eventually(10, async || terminal(&t, trace).await == Some(TerminalState::Delivered)).await;
    assert!(ok, "{}", dump(&t, trace).await);
    let p = t.fake.profile_by_email("c880012@example.org").expect("profile upserted");
    assert_eq!(p.external_id.as_deref(), Some("shopify:880012"));
    for k in ["ai_churn_risk", "ai_predicted_clv", "ai_segment", "ai_model_version", "ai_scored_at"] {
        assert!(p.properties.contains_key(k), "missing {k}: {:?}", p.properties);
    }
    let view = t.app.store().trace(trace).await.unwrap().unwrap();
    let stages: Vec<AuditStage> = view.records.iter().map(|r| r.stage).collect();
    for s in [
        AuditStage::Received,
        AuditStage::Normalized,
        AuditStage::StateChanged,
        AuditStage::Scored,
        AuditStage::Decided,
        AuditStage::DeliveryAttempt,
        AuditStage::Terminal,
    ] {
        assert!(stages.contains(&s), "stage {s:?} missing from {stages:?}");
    }
    // The admin API serves the same trail, and the customer view (to a token whose role may read them).
    let token = api_token(&t, "compliance-officer", nudge::access::Role::Compliance).await;
    let v: serde_json::Value =
        api_get(&t, &format!("/api/audit/events/{trace}"), &token).await.json().await.unwrap();
    assert_eq!(v["terminal"]["state"], "delivered");
    let c = api_get(&t, "/api/audit/customers/shopify:880012", &token).await;
    assert_eq!(c.status(), 200);
    let c: serde_json::Value = c.json().await.unwrap();
    assert!(!c["records"].as_array().unwrap().is_empty());
    let bad = api_get(&t, "/api/audit/events/not-a-uuid", &token).await;
    assert_eq!(bad.status(), 400);
    let missing = api_get(&t, &format!("/api/audit/events/{}", TraceId::new()), &token).await;
    assert_eq!(missing.status(), 404);
    // Without a token the API answers nothing.
    let anonymous = t.http.get(format!("{}/api/audit/events/{trace}", t.base)).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    let metrics = t.http.get(format!("{}/metrics", t.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("nudge_webhooks_total"), "{metrics}");
    // The delivery's time from receipt to its processing commit, and to its push, were measured.
    assert!(metrics.contains("nudge_event_to_processed_seconds"), "{metrics}");
    assert!(metrics.contains("nudge_event_to_push_seconds"), "{metrics}");
    let (processed, p50, _) = t.app.processed_latency.quantiles().expect("an event→processed sample");
    assert_eq!(processed, 1);
    assert!((0.0..10.0).contains(&p50), "processed {p50} s after receipt");
    assert!(t.app.push_latency.quantiles().is_some(), "an event→push sample");
    assert_eq!(t.http.get(format!("{}/healthz", t.base)).send().await.unwrap().status(), 200);
    assert_eq!(t.http.get(format!("{}/readyz", t.base)).send().await.unwrap().status(), 200);
    t.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_deliveries_are_refused_with_json_errors() {
    let t = spawn_app(|c| c.server.max_body_bytes = 16_384).await;
    let body = order(1, 2).to_bytes();
    let d = Delivery::new("orders/create", body.clone());
    let r = t.sender.send_with(&d, &SendOptions::corrupted_signature()).await.unwrap();
    assert_eq!(r.status, 401);
    assert!(serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["error"].is_string());
    let r = t.sender.send_with(&d, &SendOptions::omitting("X-Shopify-Hmac-Sha256")).await.unwrap();
    assert_eq!(r.status, 401);
    let r = t.sender.send_with(&d, &SendOptions::signed_with("some_other_secret")).await.unwrap();
    assert_eq!(r.status, 401);
    let r = t.sender.send(&Delivery::new("orders/create", Vec::new())).await.unwrap();
    assert_eq!(r.status, 401, "empty body");
    // The previous secret still verifies (rotation).
    let r = t.sender.send_with(&d, &SendOptions::signed_with(OLD_SECRET)).await.unwrap();
    assert_eq!(r.status, 200);
    let big = vec![b' '; 32_768];
    let r = t.sender.send(&Delivery::new("orders/create", big)).await.unwrap();
    assert_eq!(r.status, 413);
    assert!(serde_json::from_slice::<serde_json::Value>(&r.body).unwrap()["error"].is_string());
    assert_eq!(t.app.store().stats().await.unwrap().deliveries, 1, "only the good delivery was stored");
    t.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redeliveries_and_second_subscriptions_have_one_downstream_effect() {
    let t = spawn_app(|_| {}).await;
    let cust = customer(42).updated_at(OffsetDateTime::now_utc());
    let d = Delivery::new("customers/update", cust.to_bytes());
    let first = t.sender.send(&d).await.unwrap();
    assert_eq!(first.status, 200);
    let again = t.sender.send(&d).await.unwrap();
    assert_eq!(again.status, 200);
    assert_eq!(trace_of(&again.body), trace_of(&first.body), "a redelivery points at the original trace");
    let other = t.sender.send(&d.for_another_subscription()).await.unwrap();
    assert_eq!(other.status, 200);
    assert!(eventually(10, async || t.fake.profile_by_email("c42@example.org").is_some()).await);
    assert!(t.app.wait_idle(Duration::from_secs(10)).await);
    let imports = t.fake.requests().iter().filter(|r| r.path == "/api/profile-import").count();
    assert_eq!(imports, 1, "exactly one push for three deliveries of one event");
    assert_eq!(t.app.store().stats().await.unwrap().deliveries, 1);
    t.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_checkouts_trigger_once_and_converted_ones_never() {
    let t = spawn_app(|_| {}).await;
    let now = OffsetDateTime::now_utc();
    let item = LineItemFixture::new(9_100_000_002, "Rain Jacket", 1, "129.00");
    let abandoned =
        // The buyer ticked "email me" at checkout: consent for the marketing trigger.
        CheckoutFixture::new(501, now)
            .token("tok-abandon")
            .customer(customer(7))
            .line_item(item.clone())
            .accepts_marketing(true);
    let converted =
        CheckoutFixture::new(502, now).token("tok-convert").customer(customer(8)).line_item(item.clone());
    assert_eq!(
        t.sender.send(&Delivery::new("checkouts/create", abandoned.to_bytes())).await.unwrap().status,
        200
    );
    assert_eq!(
        t.sender.send(&Delivery::new("checkouts/create", converted.to_bytes())).await.unwrap().status,
        200
    );
    let ord =
        OrderFixture::new(777, now).customer(customer(8)).line_item(item).tokens(Some("tok-convert"), None);
    assert_eq!(t.sender.send(&Delivery::new("orders/create", ord.to_bytes())).await.unwrap().status, 200);
    assert!(
        eventually(15, async || t.fake.count_events_with_unique_id("nudge:checkout-abandoned:tok-abandon")
            == 1)
        .await
    );
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(t.app.wait_idle(Duration::from_secs(10)).await);
    let events = t.fake.events();
    let ab: Vec<_> = events.iter().filter(|e| e.metric == "AI Checkout Abandoned").collect();
    assert_eq!(ab.len(), 1, "only the abandoned checkout triggers");
    let e = ab[0];
    assert_eq!(e.properties["recovery_url"].as_str().map(|u| u.contains("tok-abandon")), Some(true));
    assert_eq!(e.properties["currency"], "USD");
    assert!(e.properties.contains_key("items"));
    assert!(e.properties.contains_key("ai_churn_risk") || e.properties.contains_key("ai_segment"));
    t.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_bodies_are_quarantined_and_unknown_topics_ignored() {
    let t = spawn_app(|_| {}).await;
    let bad = t
        .sender
        .send(&Delivery::new(
            "orders/create",
            br#"{"id": 5, "total_price": "5x", "created_at": "2026-01-01T00:00:00Z"}"#.to_vec(),
        ))
        .await
        .unwrap();
    assert_eq!(bad.status, 200, "verified but unparseable bodies are acknowledged");
    let unknown = t.sender.send(&Delivery::new("app/uninstalled", br#"{"id":1}"#.to_vec())).await.unwrap();
    assert_eq!(unknown.status, 200);
    let (tb, tu) = (trace_of(&bad.body), trace_of(&unknown.body));
    assert!(
        eventually(10, async || matches!(terminal(&t, tb).await, Some(TerminalState::Quarantined(_)))).await
    );
    assert!(eventually(10, async || matches!(terminal(&t, tu).await, Some(TerminalState::Ignored(_)))).await);
    assert_eq!(t.app.store().stats().await.unwrap().quarantined, 1);
    // Replay puts it back; it parses no better, so it returns to quarantine — nothing is lost either way.
    assert_eq!(t.app.store().requeue_quarantined(Some(tb)).await.unwrap(), 1);
    assert!(
        eventually(10, async || matches!(terminal(&t, tb).await, Some(TerminalState::Quarantined(_)))).await
    );
    t.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ack_does_not_wait_for_a_slow_klaviyo() {
    let t = spawn_app(|_| {}).await;
    t.fake.set_mode(FakeMode::Slow(Duration::from_secs(30)));
    for i in 0..5 {
        let r =
            t.sender.send(&Delivery::new("orders/create", order(900 + i, 900 + i).to_bytes())).await.unwrap();
        assert_eq!(r.status, 200);
        assert!(r.elapsed < Duration::from_secs(1), "ack took {:?}", r.elapsed);
    }
    t.fake.set_mode(FakeMode::Normal);
    t.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failing_klaviyo_is_retried_then_dead_lettered_and_replayable() {
    let t = spawn_app(|c| c.pipeline.max_attempts = 2).await;
    t.fake.set_mode(FakeMode::Down);
    let r = t.sender.send(&Delivery::new("orders/create", order(1001, 55).to_bytes())).await.unwrap();
    let trace = trace_of(&r.body);
    assert!(
        eventually(20, async || matches!(terminal(&t, trace).await, Some(TerminalState::DeadLettered(_))))
            .await,
        "dead-lettered after 2 attempts"
    );
    let attempts = t.app.store().trace(trace).await.unwrap().unwrap();
    let n = attempts.records.iter().filter(|r| r.stage == AuditStage::DeliveryAttempt).count();
    assert_eq!(n, 2);
    t.fake.set_mode(FakeMode::Normal);
    assert_eq!(
        t.app.store().requeue_dead_letters(nudge_store::DeadLetterFilter::trace(trace)).await.unwrap(),
        1
    );
    assert!(eventually(10, async || terminal(&t, trace).await == Some(TerminalState::Delivered)).await);
    t.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn out_of_order_updates_never_overwrite_newer_state() {
    let t = spawn_app(|_| {}).await;
    let now = OffsetDateTime::now_utc();
    let newer = order(3001, 77).total("90.00").updated_at(now + time::Duration::minutes(5));
    let older = order(3001, 77).total("10.00").updated_at(now);
    let r1 = t.sender.send(&Delivery::new("orders/updated", newer.to_bytes())).await.unwrap();
    assert_eq!(r1.status, 200);
    assert!(t.app.wait_idle(Duration::from_secs(10)).await);
    let r2 = t.sender.send(&Delivery::new("orders/create", older.to_bytes())).await.unwrap();
    let trace = trace_of(&r2.body);
    assert!(eventually(10, async || matches!(terminal(&t, trace).await, Some(TerminalState::Ignored(r)) if r.contains("stale"))).await);
    let st = t.app.store().load_states(&["shopify:77".parse().unwrap()]).await.unwrap();
    let state: nudge_state::CustomerState = nudge_state::CustomerState::decode(&st[0].state).unwrap();
    assert_eq!(state.summary().spend.unwrap().amount.to_string(), "90.00");
    t.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_mode_runs_everything_and_pushes_nothing() {
    let t = spawn_app(|c| c.pipeline.shadow = true).await;
    let r = t.sender.send(&Delivery::new("orders/create", order(4001, 99).to_bytes())).await.unwrap();
    let trace = trace_of(&r.body);
    assert!(eventually(10, async || matches!(terminal(&t, trace).await, Some(TerminalState::Ignored(r)) if r.contains("shadow"))).await);
    let view = t.app.store().trace(trace).await.unwrap().unwrap();
    assert!(view.records.iter().any(|r| r.stage == AuditStage::Decided && r.detail["shadow"] == true));
    assert!(t.fake.requests().is_empty());
    t.app.shutdown().await;
}
