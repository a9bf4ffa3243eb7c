//! Runs the store conformance suite against the embedded SQLite backend.

use nudge_store::Store;
use nudge_store::sqlite::{Durability, SqliteStore};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_passes_conformance() {
    let dirs = Arc::new(std::sync::Mutex::new(Vec::new()));
    nudge_store::conformance::run_all(|| {
        let dirs = dirs.clone();
        async move {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = SqliteStore::open(dir.path(), Durability::Normal).expect("open store");
            dirs.lock().unwrap().push(dir);
            Arc::new(store) as Arc<dyn Store>
        }
    })
    .await;
}

#[tokio::test]
async fn reopening_keeps_committed_data() {
    let dir = tempfile::tempdir().unwrap();
    let trace = nudge_model::TraceId::new();
    {
        let s = SqliteStore::open(dir.path(), Durability::Full).unwrap();
        let d = nudge_store::NewDelivery {
            trace_id: trace,
            source: "shopify".into(),
            topic: "orders/create".into(),
            shop: None,
            webhook_id: Some("w".into()),
            event_id: None,
            received_at_ms: 5,
            headers_json: "{}".into(),
            body: vec![1, 2, 3],
            dedupe_keys: vec!["k".into()],
        };
        s.commit_delivery(d).await.unwrap();
    }
    let s = SqliteStore::open(dir.path(), Durability::Full).unwrap();
    let p = s.pending_deliveries(5).await.unwrap();
    assert_eq!(p.len(), 1);
    assert_eq!(p[0].trace_id, trace);
    // The dedupe index is rebuilt from the table: the key is still known after a restart.
    match s.commit_delivery(delivery("k", 6)).await.unwrap() {
        nudge_store::CommitResult::Duplicate { original, .. } => assert_eq!(original, trace),
        other => panic!("expected a duplicate after reopening, got {other:?}"),
    }
}

fn delivery(key: &str, at_ms: i64) -> nudge_store::NewDelivery {
    nudge_store::NewDelivery {
        trace_id: nudge_model::TraceId::new(),
        source: "shopify".into(),
        topic: "orders/create".into(),
        shop: None,
        webhook_id: Some(key.into()),
        event_id: None,
        received_at_ms: at_ms,
        headers_json: "{}".into(),
        body: b"{}".to_vec(),
        dedupe_keys: vec![key.into()],
    }
}

/// A data directory written before dedupe keys moved to `delivery_keys` keeps its keys.
#[tokio::test]
async fn legacy_dedupe_keys_are_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let first = delivery("old-key", 1);
    let trace = first.trace_id;
    {
        let s = SqliteStore::open(dir.path(), Durability::Normal).unwrap();
        s.commit_delivery(first).await.unwrap();
    }
    // Rewrite the file the way the earlier layout stored the key.
    {
        let c = rusqlite::Connection::open(dir.path().join("nudge.db")).unwrap();
        c.execute_batch(&format!(
            "CREATE TABLE dedupe (key TEXT PRIMARY KEY, trace_id TEXT NOT NULL, created_at INTEGER NOT NULL) WITHOUT ROWID;
             INSERT INTO dedupe VALUES ('old-key', '{trace}', 1);
             DELETE FROM delivery_keys;"
        ))
        .unwrap();
    }
    let s = SqliteStore::open(dir.path(), Durability::Normal).unwrap();
    match s.commit_delivery(delivery("old-key", 2)).await.unwrap() {
        nudge_store::CommitResult::Duplicate { original, .. } => assert_eq!(original, trace),
        other => panic!("expected the migrated key to be known, got {other:?}"),
    }
    assert!(matches!(
        s.commit_delivery(delivery("new-key", 3)).await.unwrap(),
        nudge_store::CommitResult::Committed { .. }
    ));
}

/// Large bodies are stored compressed and come back byte for byte.
#[tokio::test]
async fn large_bodies_round_trip_exactly() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path(), Durability::Normal).unwrap();
    let mut d = delivery("big", 1);
    let body: Vec<u8> = (0..6000u32).flat_map(|i| format!("{{\"n\":{}}},", i % 97).into_bytes()).collect();
    d.body = body.clone();
    s.commit_delivery(d).await.unwrap();
    let p = s.pending_deliveries(1).await.unwrap();
    assert_eq!(p[0].body, body);
}
