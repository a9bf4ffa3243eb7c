//! Runs the store conformance suite against the PostgreSQL backend, each check in a fresh schema of the
//! database `NUDGE_TEST_POSTGRES_URL` names (skipped, with a note, when it is not set).
//! `NUDGE_CONFORMANCE_ONLY=check,check` runs only the named checks.

use nudge_store::Store;
use nudge_store::conformance::{fresh_postgres, postgres_test_url};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_conformance() {
    let Some(url) = postgres_test_url() else { return };
    let only: Option<Vec<String>> = std::env::var("NUDGE_CONFORMANCE_ONLY")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect());
    let mut failed = Vec::new();
    let mut ran = 0;
    for (name, check) in nudge_store::conformance::checks() {
        if only.as_ref().is_some_and(|o| !o.iter().any(|n| n == name)) {
            continue;
        }
        ran += 1;
        let store = fresh_postgres(&url, "nudge_t").await;
        let outcome = tokio::spawn(check(store.clone() as Arc<dyn Store>)).await;
        store.drop_schema().await.expect("drop the test schema");
        if outcome.is_err() {
            eprintln!("FAILED: {name}");
            failed.push(name);
        }
    }
    assert!(ran > 0, "no check matched NUDGE_CONFORMANCE_ONLY");
    assert!(failed.is_empty(), "{} of {ran} checks failed on PostgreSQL: {failed:?}", failed.len());
}

/// A batch with a delivery processed already writes nothing, its own transaction or not.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_batch_writes_nothing() {
    let Some(url) = postgres_test_url() else { return };
    let store = fresh_postgres(&url, "nudge_t").await;
    let outcome = tokio::spawn(nudge_store::conformance::a_refused_batch_writes_nothing(store.clone())).await;
    store.drop_schema().await.expect("drop the test schema");
    outcome.unwrap();
}

/// A schema left by a test process of this host that died is dropped when the next fresh schema is made; one
/// of a live process (this one) stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_of_dead_test_processes_are_dropped() {
    use sqlx::Connection;
    let Some(url) = postgres_test_url() else { return };
    let host = nudge_store::conformance::host_tag();
    let dead =
        (1..4_000_000u32).rev().find(|p| !std::path::Path::new(&format!("/proc/{p}")).exists()).unwrap();
    let random = || uuid::Uuid::new_v4().simple().to_string()[..20].to_string();
    let left = format!("nudge_t_{host}_{dead}_{}", random());
    let live = format!("nudge_t_{host}_{}_{}", std::process::id(), random());
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    for s in [&left, &live] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{s}\"")))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let store = fresh_postgres(&url, "nudge_t").await;
    let exists = async |conn: &mut sqlx::PgConnection, s: &str| -> bool {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(s)
            .fetch_one(conn)
            .await
            .unwrap()
    };
    assert!(!exists(&mut conn, &left).await, "the dead process's schema is gone");
    assert!(exists(&mut conn, &live).await, "a live process's schema stays");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA \"{live}\""))).execute(&mut conn).await.unwrap();
    store.drop_schema().await.unwrap();
}

/// Past `exact_stats_below` rows (by the planner's statistics), the history counts of `stats` come from a
/// sample of the table's pages, scaled to its size, and say so; what waits is still counted exactly. Here
/// every table is under the sample's size, so the sample is the whole table and the figures must match the
/// exact ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_tables_are_counted_from_a_sample() {
    use nudge_model::{AuditRecord, AuditStage, TraceId};
    use nudge_store::prelude::*;
    use nudge_store::*;
    let Some(url) = postgres_test_url() else { return };
    let exact = fresh_postgres(&url, "nudge_t").await;
    let ds: Vec<NewDelivery> = (0..60)
        .map(|i| NewDelivery {
            trace_id: TraceId::new(),
            source: "shopify".into(),
            topic: "orders/create".into(),
            shop: None,
            webhook_id: Some(format!("w{i}")),
            event_id: None,
            received_at_ms: 1_000,
            headers_json: "{}".into(),
            body: b"{}".to_vec(),
            dedupe_keys: vec![format!("shopify:webhook:w{i}")],
            part: None,
        })
        .collect();
    exact.commit_deliveries(ds).await.unwrap();
    // 50 processed with an item each (for two destinations), 10 left pending.
    let outcomes = exact.pending_deliveries(50).await.unwrap().into_iter().map(|d| ProcessOutcome {
        seq: d.seq,
        trace_id: Some(d.trace_id),
        status: Some(DeliveryStatus::Processed),
        outbox: vec![NewOutboxItem {
            trace_id: d.trace_id,
            customer: format!("shopify:{}", d.seq).parse().unwrap(),
            destination: if d.seq % 2 == 0 { "klaviyo".into() } else { "braze".into() },
            action_json: "{}".into(),
            origin_us: 0,
        }],
        ..Default::default()
    });
    exact.commit_processing(outcomes.collect()).await.unwrap();
    // 40 items delivered, 4 dead-lettered, 6 left pending.
    let due = exact.due_outbox(i64::MAX / 2, 100).await.unwrap();
    let attempts = due.iter().take(44).enumerate().map(|(k, i)| AttemptRecord {
        item_id: i.id,
        trace_id: i.trace_id,
        result: if k < 40 { AttemptResult::Delivered } else { AttemptResult::DeadLettered("down".into()) },
        audit: AuditRecord {
            trace_id: i.trace_id,
            customer: Some(i.customer.clone()),
            stage: AuditStage::DeliveryAttempt,
            at: time::OffsetDateTime::now_utc(),
            detail: serde_json::json!({}),
        },
        at_ms: 1,
    });
    exact.record_attempts(attempts.collect()).await.unwrap();
    exact.analyze_hot_tables(false).await.unwrap();

    let mut config = nudge_store::postgres::PgConfig::new(&url);
    config.schema = Some(exact.schema().to_string());
    config.exact_stats_below = 10;
    let sampled = nudge_store::postgres::PgStore::connect(&config).await.unwrap();
    let want = exact.stats().await.unwrap();
    let got = sampled.stats().await.unwrap();
    assert!(!want.estimated && got.estimated);
    assert_eq!(want.deliveries, 60);
    assert_eq!((want.outbox_delivered, want.outbox_dead, want.outbox_pending), (40, 4, 6));
    assert_eq!(StoreStats { estimated: false, ..got }, want);
    sampled.close().await;
    exact.drop_schema().await.unwrap();
}

/// A batch of new keys is stored by the one-statement path, and a batch with a held key by the full one
/// after that statement undid itself. Both paths give the same results; what tells them apart is the
/// sequence: the undone statement used up numbers (a sequence is not rolled back), so only the fallback
/// leaves a gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_keys_go_in_one_statement_and_a_held_key_falls_back() {
    use nudge_model::TraceId;
    use nudge_store::*;
    let Some(url) = postgres_test_url() else { return };
    let store = fresh_postgres(&url, "nudge_t").await;
    let delivery = |webhook: &str| NewDelivery {
        trace_id: TraceId::new(),
        source: "shopify".into(),
        topic: "orders/create".into(),
        shop: None,
        webhook_id: Some(webhook.into()),
        event_id: None,
        received_at_ms: 1_000,
        headers_json: "{}".into(),
        body: b"{}".to_vec(),
        dedupe_keys: vec![format!("shopify:webhook:{webhook}")],
        part: None,
    };
    let seqs = |results: Vec<CommitResult>| -> Vec<Option<i64>> {
        results
            .into_iter()
            .map(|r| match r {
                CommitResult::Committed { seq } => Some(seq),
                CommitResult::Duplicate { .. } => None,
            })
            .collect()
    };
    let first =
        seqs(store.commit_deliveries(vec![delivery("a"), delivery("b"), delivery("c")]).await.unwrap());
    let next = seqs(store.commit_deliveries(vec![delivery("d"), delivery("e")]).await.unwrap());
    let s = first[0].expect("a is new");
    assert_eq!(first, vec![Some(s), Some(s + 1), Some(s + 2)], "new keys: numbered in batch order");
    assert_eq!(next, vec![Some(s + 3), Some(s + 4)], "new keys again: no number used up, so no fallback");
    let mixed = seqs(store.commit_deliveries(vec![delivery("f"), delivery("a")]).await.unwrap());
    assert_eq!(mixed[1], None, "a held key is a duplicate");
    assert!(mixed[0].unwrap() > s + 5, "the undone statement used up numbers before the fallback stored f");
    assert_eq!(
        store.pending_deliveries(100).await.unwrap().len(),
        6,
        "f stored once, the duplicate not at all"
    );
    store.drop_schema().await.unwrap();
}
