//! Retention from the configuration: with `storage.retention` and `storage.audit_retention` set, the sweep at
//! start removes old processed deliveries and old audit records of an existing store, and new work goes
//! through and is kept.

use crate::*;
use nudge::config::HumanDuration;
use nudge_ingest::shopify::fixtures::{CustomerFixture, LineItemFixture, OrderFixture};
use nudge_model::{AuditRecord, AuditStage, TerminalState, TraceId};
use nudge_store::prelude::*;
use nudge_store::{DeliveryStatus, NewDelivery, ProcessOutcome};
use nudge_testkit::shopify_sender::Delivery;
use time::OffsetDateTime;

/// Three deliveries received in 1970 and processed, with audit records of 2000, written into the store in
/// `dir` before nudge starts; their traces.
fn seed_old_work(dir: &std::path::Path) -> Vec<TraceId> {
    tokio::task::block_in_place(|| {
        tokio::runtime::Handle::current().block_on(async {
            let s =
                nudge_store::sqlite::SqliteStore::open(dir, nudge_store::sqlite::Durability::Normal).unwrap();
            let mut traces = Vec::new();
            for i in 0..3 {
                let d = NewDelivery {
                    trace_id: TraceId::new(),
                    source: "shopify".into(),
                    topic: "orders/create".into(),
                    shop: None,
                    webhook_id: None,
                    event_id: None,
                    received_at_ms: 1_000 + i,
                    headers_json: "{}".into(),
                    body: b"{}".to_vec(),
                    dedupe_keys: Vec::new(),
                    part: None,
                };
                traces.push(d.trace_id);
                s.commit_delivery(d).await.unwrap();
            }
            let long_ago = OffsetDateTime::from_unix_timestamp(946_684_800).unwrap();
            let outcomes = s
                .pending_deliveries(10)
                .await
                .unwrap()
                .into_iter()
                .map(|d| ProcessOutcome {
                    seq: d.seq,
                    trace_id: Some(d.trace_id),
                    status: Some(DeliveryStatus::Processed),
                    audit: vec![AuditRecord {
                        trace_id: d.trace_id,
                        customer: None,
                        stage: AuditStage::Received,
                        at: long_ago,
                        detail: serde_json::json!({"topic": "orders/create"}),
                    }],
                    terminal: Some(TerminalState::Ignored("seeded".into())),
                    ..Default::default()
                })
                .collect();
            s.commit_processing(outcomes).await.unwrap();
            traces
        })
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sweep_removes_old_finished_work_and_audit_and_keeps_new_work() {
    let mut seeded = Vec::new();
    let t = spawn_app(|c| {
        c.storage.retention = Some(HumanDuration(Duration::from_secs(30 * 86_400)));
        c.storage.audit_retention = Some(HumanDuration(Duration::from_secs(400 * 86_400)));
        seeded = seed_old_work(&c.storage.data_dir);
    })
    .await;
    let store = t.app.store().clone();
    // The two older deliveries go (the newest processed one is where processing resumes), and every old
    // audit record. The terminal states were recorded just now: they stay, as young as they are.
    // One sweep removes the deliveries first and the audit records after them: wait for both.
    let swept = eventually(20, async || {
        let mut records = 0;
        for trace in &seeded {
            records += store.trace(*trace).await.unwrap().map_or(0, |v| v.records.len());
        }
        store.stats().await.unwrap().deliveries == 1 && records == 0
    })
    .await;
    assert!(swept, "{:?}", store.stats().await.unwrap());
    for trace in &seeded {
        let view = store.trace(*trace).await.unwrap().expect("the terminal state stays");
        assert!(view.records.is_empty(), "{trace}: {:?}", view.records);
        assert_eq!(view.terminal, Some(TerminalState::Ignored("seeded".into())));
    }

    // New work goes through and is kept whole.
    let c = CustomerFixture::new(770_001, Some("keep@example.org"), OffsetDateTime::now_utc());
    let o = OrderFixture::new(6_770_000_001, OffsetDateTime::now_utc())
        .customer(c)
        .line_item(LineItemFixture::new(9_100_000_001, "Organic Tee", 1, "39.95"));
    let r = t.sender.send(&Delivery::new("orders/create", o.to_bytes())).await.unwrap();
    assert_eq!(r.status, 200);
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let trace: TraceId = v["trace_id"].as_str().unwrap().parse().unwrap();
    let done = eventually(10, async || {
        nudge_store::terminal_of(&*store, trace).await.unwrap() == Some(TerminalState::Delivered)
    })
    .await;
    assert!(done);
    assert!(t.fake.profile_by_email("keep@example.org").is_some());
    let view = store.trace(trace).await.unwrap().unwrap();
    assert!(view.records.iter().any(|r| r.stage == AuditStage::Received));
    assert_eq!(store.stats().await.unwrap().deliveries, 2);
    // What went, and how the sweep ended, in /metrics (the recorder is shared by this process's tests: the
    // series exist, their values are not compared).
    let url = format!("{}/metrics", t.base);
    let counted = eventually(10, async || {
        let m = t.http.get(&url).send().await.unwrap().text().await.unwrap();
        m.contains("nudge_retention_pruned_total{kind=\"deliveries\"}")
            && m.contains("nudge_retention_sweeps_total{outcome=\"done\"}")
    })
    .await;
    assert!(counted, "{}", t.http.get(&url).send().await.unwrap().text().await.unwrap());
    t.app.shutdown().await;
}
