//! Coalescing against the Klaviyo fake: profile syncs of one customer pile up behind a throttled
//! profile-import endpoint; once it answers again, the consecutive syncs go as one profile-import carrying
//! the newest values (and every attribute an older sync wrote), a trigger event between them goes between
//! them, unmerged, and every trace ends delivered exactly once.

use crate::*;
use nudge::outbox::{DeliverySettings, DestinationWorker};
use nudge::telemetry::LatencySample;
use nudge_model::{Action, AttrValue, AuditStage, TerminalState, TraceId};
use nudge_store::sqlite::{Durability, SqliteStore};
use nudge_store::{NewOutboxItem, ProcessOutcome, Store};
use nudge_testkit::fake_klaviyo::FakeMode;
use std::sync::Arc;

fn sync(email: &str, attributes: &[(&str, f64)]) -> Action {
    Action::UpsertProfile {
        customer: "shopify:4401".parse().unwrap(),
        email: Some(email.into()),
        first_name: None,
        last_name: None,
        attributes: attributes.iter().map(|(k, v)| (k.to_string(), AttrValue::Number(*v))).collect(),
    }
}

fn event(name: &str) -> Action {
    Action::TriggerEvent {
        customer: "shopify:4401".parse().unwrap(),
        email: Some("ada@example.org".into()),
        name: name.into(),
        properties: Default::default(),
        value: None,
        time: time::OffsetDateTime::now_utc(),
        unique_id: format!("u-{name}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn piled_up_profile_syncs_reach_klaviyo_as_one_and_no_trigger_is_lost() {
    nudge_testkit::ensure_crypto_provider();
    let fake = FakeKlaviyo::start(FakeKlaviyoConfig::new(KEY).unthrottled()).await.expect("fake starts");
    let client = nudge_deliver::klaviyo::KlaviyoClient::new(
        nudge_deliver::klaviyo::KlaviyoConfig::new(KEY).with_base_url(fake.base_url()),
    )
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path(), Durability::Normal).unwrap());
    let actions = [
        sync("ada@example.org", &[("ai_churn", 0.1), ("ai_next_best_offer_pct", 10.0)]),
        sync("ada@example.org", &[("ai_churn", 0.2)]),
        sync("ada@example.org", &[("ai_churn", 0.3), ("ai_clv", 120.0)]),
        event("AI Win Back"),
        sync("ada@example.org", &[("ai_churn", 0.4)]),
        sync("ada@example.org", &[("ai_churn", 0.5)]),
    ];
    let mut traces = Vec::new();
    for a in &actions {
        let t = TraceId::new();
        let item = NewOutboxItem {
            trace_id: t,
            customer: a.customer().clone(),
            destination: "klaviyo".into(),
            action_json: serde_json::to_string(a).unwrap(),
            origin_us: time::OffsetDateTime::now_utc().unix_timestamp() * 1_000_000,
        };
        let outcome = ProcessOutcome { trace_id: Some(t), outbox: vec![item], ..Default::default() };
        store.commit_processing(vec![outcome]).await.unwrap();
        traces.push(t);
    }
    let worker = DestinationWorker::new(
        "klaviyo",
        store.clone(),
        Some(Arc::new(client)),
        DeliverySettings::default(),
        Arc::new(LatencySample::new(10)),
    );
    // The first request (the three syncs queued before the event, as one) meets a 429, and all three are
    // retried together.
    fake.set_mode(FakeMode::Throttle { retry_after_secs: 1, count: 1 });
    assert_eq!(worker.step().await.unwrap(), 3, "the three queued syncs go as one, whatever the backlog");
    let drained = eventually(15, async || {
        worker.step().await.unwrap();
        store.pending_for("klaviyo").await.unwrap() == 0
    })
    .await;
    assert!(drained, "everything settles once the budget is back");

    let calls: Vec<(String, u16)> = fake
        .requests()
        .into_iter()
        .filter(|r| r.path.starts_with("/api/"))
        .map(|r| (r.path.clone(), r.status))
        .collect();
    let paths: Vec<&str> = calls.iter().map(|(p, _)| p.as_str()).collect();
    assert_eq!(
        paths,
        ["/api/profile-import", "/api/profile-import", "/api/events", "/api/profile-import"],
        "the first three syncs as one (throttled, then again), the event, the last two as one: {calls:?}"
    );
    assert_eq!(calls[0].1, 429);
    let profile = fake.profile_by_email("ada@example.org").expect("the profile exists");
    let number = |key: &str| profile.properties[key].as_f64();
    assert_eq!(number("ai_churn"), Some(0.5), "the newest value");
    assert_eq!(number("ai_clv"), Some(120.0), "an attribute only an older sync of the run wrote");
    assert_eq!(number("ai_next_best_offer_pct"), Some(10.0));
    let events = fake.events();
    assert_eq!(events.len(), 1, "the trigger event went, once");
    assert_eq!(events[0].metric, "AI Win Back");

    let stats = store.stats().await.unwrap();
    assert_eq!((stats.outbox_delivered, stats.outbox_coalesced), (3, 3), "{stats:?}");
    for (i, t) in traces.iter().enumerate() {
        let view = store.trace(*t).await.unwrap().unwrap();
        assert_eq!(view.terminal, Some(TerminalState::Delivered), "{i}: {view:?}");
        let terminals = view.records.iter().filter(|r| r.stage == AuditStage::Terminal).count();
        assert_eq!(terminals, 1, "{i}: exactly one terminal state");
        let merged = view
            .records
            .iter()
            .any(|r| r.stage == AuditStage::DeliveryAttempt && r.detail["outcome"] == "coalesced");
        assert_eq!(merged, [0, 1, 4].contains(&i), "{i}: audited as merged only when it was: {view:?}");
    }
}
