//! Group commit of acknowledgements on the PostgreSQL backend: many concurrent `commit_delivery` calls, some
//! sharing a dedupe key, each get their own answer; the committers stop with the store. Runs in a fresh
//! schema of the database `NUDGE_TEST_POSTGRES_URL` names (skipped, with a note, when it is not set).

use nudge_model::TraceId;
use nudge_store::conformance::{fresh_postgres, postgres_test_url};
use nudge_store::postgres::{PgConfig, PgStore};
use nudge_store::{CommitResult, DeliveryLog, NewDelivery, StoreError};
use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

fn delivery(webhook: &str, event: &str) -> NewDelivery {
    NewDelivery {
        trace_id: TraceId::new(),
        source: "shopify".into(),
        topic: "orders/create".into(),
        shop: Some("demo.myshopify.com".into()),
        webhook_id: Some(webhook.into()),
        event_id: Some(event.into()),
        received_at_ms: 1_000,
        headers_json: "{}".into(),
        body: format!("{{\"webhook\":\"{webhook}\"}}").into_bytes(),
        dedupe_keys: vec![format!("shopify:webhook:{webhook}"), format!("shopify:event:{event}")],
        part: None,
    }
}

/// 400 deliveries of their own and 50 pairs whose two deliveries share an event id (each has a webhook id
/// of its own), all at once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_acknowledgements_each_get_their_own_answer() {
    let Some(url) = postgres_test_url() else { return };
    let store = fresh_postgres(&url, "nudge_t").await;
    let mut sent = Vec::new();
    for i in 0..400 {
        sent.push(delivery(&format!("w{i}"), &format!("e{i}")));
    }
    for p in 0..50 {
        sent.push(delivery(&format!("pa{p}"), &format!("pair{p}")));
        sent.push(delivery(&format!("pb{p}"), &format!("pair{p}")));
    }
    let barrier = Arc::new(tokio::sync::Barrier::new(sent.len()));
    let mut calls = Vec::new();
    for d in sent.clone() {
        let (store, barrier) = (store.clone(), barrier.clone());
        calls.push(tokio::spawn(async move {
            barrier.wait().await;
            store.commit_delivery(d).await
        }));
    }
    let mut results = Vec::new();
    for call in calls {
        let answer = tokio::time::timeout(Duration::from_secs(60), call)
            .await
            .expect("every call is answered")
            .expect("the call does not panic");
        results.push(answer.expect("the delivery commits"));
    }

    // Committed deliveries by seq, and which of each pair won.
    let mut committed: BTreeMap<i64, &NewDelivery> = BTreeMap::new();
    for (d, r) in sent.iter().zip(&results) {
        if let CommitResult::Committed { seq } = r {
            assert!(committed.insert(*seq, d).is_none(), "seq {seq} is given twice");
        }
    }
    for (i, d) in sent.iter().enumerate().take(400) {
        assert!(matches!(results[i], CommitResult::Committed { .. }), "{:?} stands alone", d.webhook_id);
    }
    for p in 0..50 {
        let (a, b) = (400 + 2 * p, 401 + 2 * p);
        match (&results[a], &results[b]) {
            (CommitResult::Committed { .. }, CommitResult::Duplicate { original, key })
            | (CommitResult::Duplicate { original, key }, CommitResult::Committed { .. }) => {
                let winner = if matches!(results[a], CommitResult::Committed { .. }) { a } else { b };
                assert_eq!(*original, sent[winner].trace_id, "pair {p}: the duplicate names the winner");
                assert_eq!(key, &format!("shopify:event:pair{p}"), "pair {p}: the shared key");
            }
            other => panic!("pair {p}: exactly one commits, got {other:?}"),
        }
    }
    assert_eq!(committed.len(), 450);

    // What is pending is exactly what was committed, under the seqs the calls were given.
    let pending = store.pending_deliveries(10_000).await.unwrap();
    assert_eq!(pending.len(), committed.len(), "pending: the committed deliveries, no more");
    for p in &pending {
        let d = committed.get(&p.seq).unwrap_or_else(|| panic!("seq {} was not committed", p.seq));
        assert_eq!((p.trace_id, &p.body, &p.webhook_id), (d.trace_id, &d.body, &d.webhook_id));
    }
    let traces: HashSet<TraceId> = pending.iter().map(|p| p.trace_id).collect();
    assert_eq!(traces.len(), 450);

    // A retry of everything stores nothing more.
    for d in sent.iter().take(10) {
        assert!(matches!(store.commit_delivery(d.clone()).await.unwrap(), CommitResult::Duplicate { .. }));
    }
    store.drop_schema().await.expect("drop the test schema");
}

/// The tasks alive on this runtime.
fn alive_tasks() -> usize {
    tokio::runtime::Handle::current().metrics().num_alive_tasks()
}

/// Waits up to 5 s for the runtime's task count to come down to `n`.
async fn settle_to(n: usize) -> usize {
    for _ in 0..100 {
        if alive_tasks() <= n {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    alive_tasks()
}

/// After the store is closed a call fails at once instead of waiting; a dropped store leaves no task behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn committers_stop_with_the_store() {
    let Some(url) = postgres_test_url() else { return };
    let before = alive_tasks();

    // Closed: a call fails, promptly.
    let store = fresh_postgres(&url, "nudge_t").await;
    assert!(alive_tasks() > before, "the store runs tasks of its own (its committers among them)");
    assert!(matches!(store.commit_delivery(delivery("c1", "c1")).await, Ok(CommitResult::Committed { .. })));
    store.drop_schema().await.expect("drop the test schema");
    let after_close =
        tokio::time::timeout(Duration::from_secs(10), store.commit_delivery(delivery("c2", "c2")))
            .await
            .expect("a call on a closed store is answered");
    assert!(matches!(after_close, Err(StoreError::Closed)), "closed store: {after_close:?}");
    drop(store);
    assert_eq!(settle_to(before).await, before, "closed and dropped: every task of the store ended");

    // Dropped without closing: the committers (and everything else of the store) end too.
    let store = fresh_postgres(&url, "nudge_t").await;
    let schema = store.schema().to_string();
    assert!(matches!(store.commit_delivery(delivery("d1", "d1")).await, Ok(CommitResult::Committed { .. })));
    drop(store);
    assert_eq!(settle_to(before).await, before, "dropped: every task of the store ended");

    let mut config = PgConfig::new(url);
    config.schema = Some(schema);
    config.max_connections = 2;
    let cleanup = PgStore::connect(&config).await.expect("connect to PostgreSQL");
    assert_eq!(cleanup.pending_deliveries(10).await.unwrap().len(), 1, "what was acknowledged stays");
    cleanup.drop_schema().await.expect("drop the test schema");
}

/// Acknowledgements arriving a few ms apart: with `ack_linger`, the committer that takes the first waits for
/// the rest and commits them in one transaction (the rows share their inserting transaction id); without it,
/// each commits on its own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_linger_gathers_acknowledgements_that_arrive_apart_into_one_transaction() {
    let Some(url) = postgres_test_url() else { return };
    let scratch = fresh_postgres(&url, "nudge_t").await;
    let schema = scratch.schema().to_string();
    drop(scratch);
    let transactions = |linger: Duration, tag: &'static str| {
        let (url, schema) = (url.clone(), schema.clone());
        async move {
            let mut config = PgConfig::new(url);
            config.schema = Some(schema);
            config.ack_linger = linger;
            let store = Arc::new(PgStore::connect(&config).await.expect("connect to PostgreSQL"));
            let mut calls = Vec::new();
            for i in 0..6u64 {
                let store = store.clone();
                calls.push(tokio::spawn(async move {
                    tokio::time::sleep(Duration::from_millis(if linger.is_zero() { 40 } else { 3 } * i))
                        .await;
                    store.commit_delivery(delivery(&format!("{tag}{i}"), &format!("{tag}{i}"))).await
                }));
            }
            for call in calls {
                assert!(matches!(call.await.unwrap(), Ok(CommitResult::Committed { .. })));
            }
            let n: i64 = sqlx::query_scalar(
                "SELECT count(DISTINCT xmin::text) FROM deliveries WHERE webhook_id LIKE $1 || '%'",
            )
            .bind(tag)
            .fetch_one(store.pool())
            .await
            .unwrap();
            (store, n)
        }
    };
    let (_, apart) = transactions(Duration::ZERO, "zero").await;
    assert_eq!(apart, 6, "without a linger, acknowledgements 40 ms apart commit one by one");
    let (store, together) = transactions(Duration::from_millis(200), "linger").await;
    assert_eq!(together, 1, "a 200 ms linger gathers six acknowledgements 3 ms apart");
    store.drop_schema().await.expect("drop the test schema");
}

/// The leader's periodic refresh of the planner's statistics analyses a table once enough of it changed, and
/// not again while nothing does (PostgreSQL's change counters reach it within seconds, so it is asked until
/// they have).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_statistics_refresh_analyses_only_tables_that_changed() {
    let Some(url) = postgres_test_url() else { return };
    let store = fresh_postgres(&url, "nudge_t").await;
    let analysed = store.analyze_hot_tables(false).await.unwrap();
    assert!(analysed.iter().any(|t| t == "deliveries") && analysed.len() >= 7, "asked for all: {analysed:?}");
    for i in 0..200 {
        store.commit_delivery(delivery(&format!("a{i}"), &format!("a{i}"))).await.unwrap();
    }
    let started = std::time::Instant::now();
    loop {
        let analysed = store.analyze_hot_tables(true).await.unwrap();
        if analysed.iter().any(|t| t == "deliveries") {
            assert!(!analysed.iter().any(|t| t == "timers"), "timers did not change: {analysed:?}");
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(30), "200 new deliveries are analysed within 30 s");
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let again = store.analyze_hot_tables(true).await.unwrap();
    assert!(!again.iter().any(|t| t == "deliveries"), "nothing changed since: {again:?}");
    let rows: f32 = sqlx::query_scalar("SELECT reltuples FROM pg_class WHERE oid = 'deliveries'::regclass")
        .fetch_one(store.pool())
        .await
        .unwrap();
    assert_eq!(rows, 200.0, "the planner counts the table as it is");
    store.drop_schema().await.expect("drop the test schema");
}
