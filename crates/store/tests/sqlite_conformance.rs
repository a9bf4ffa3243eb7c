//! Runs the store conformance suite against the embedded SQLite backend.

use nudge_store::Store;
use nudge_store::sqlite::{Durability, SqliteStore};
use std::sync::Arc;

async fn conformance_with(durability: Durability) {
    let dirs = Arc::new(std::sync::Mutex::new(Vec::new()));
    nudge_store::conformance::run_all(|| {
        let dirs = dirs.clone();
        async move {
            let dir = tempfile::tempdir().expect("temp dir");
            let store = SqliteStore::open(dir.path(), durability).expect("open store");
            dirs.lock().unwrap().push(dir);
            Arc::new(store) as Arc<dyn Store>
        }
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_passes_conformance() {
    conformance_with(Durability::Normal).await;
}

/// With `durability = "full"` the derived database flushes only durable jobs' commits, switching
/// `synchronous` around them; the behaviour is the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_passes_conformance_with_full_durability() {
    conformance_with(Durability::Full).await;
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

/// A data directory written by an earlier version (deliveries with their status and a per-key dedupe table,
/// all in `nudge.db`) opens with its deliveries, processing status and dedupe keys intact.
#[tokio::test]
async fn earlier_layout_is_migrated() {
    let dir = tempfile::tempdir().unwrap();
    let (done, waiting) = (nudge_model::TraceId::new(), nudge_model::TraceId::new());
    {
        let c = rusqlite::Connection::open(dir.path().join("nudge.db")).unwrap();
        c.execute_batch(&format!(
            "CREATE TABLE deliveries (seq INTEGER PRIMARY KEY AUTOINCREMENT, trace_id TEXT NOT NULL UNIQUE,
               source TEXT NOT NULL, topic TEXT NOT NULL, shop TEXT, webhook_id TEXT, event_id TEXT,
               received_at INTEGER NOT NULL, headers TEXT NOT NULL, body BLOB NOT NULL,
               status TEXT NOT NULL DEFAULT 'pending', status_reason TEXT);
             CREATE TABLE dedupe (key TEXT PRIMARY KEY, trace_id TEXT NOT NULL, created_at INTEGER NOT NULL) WITHOUT ROWID;
             INSERT INTO deliveries VALUES (1, '{done}', 'shopify', 'orders/create', NULL, 'old-key', NULL, 1, '{{}}', X'7B7D', 'processed', NULL);
             INSERT INTO deliveries VALUES (2, '{waiting}', 'shopify', 'orders/create', NULL, 'w2', NULL, 2, '{{}}', X'7B7D', 'pending', NULL);
             INSERT INTO dedupe VALUES ('old-key', '{done}', 1);
             INSERT INTO dedupe VALUES ('w2', '{waiting}', 2);"
        ))
        .unwrap();
    }
    let s = SqliteStore::open(dir.path(), Durability::Normal).unwrap();
    match s.commit_delivery(delivery("old-key", 3)).await.unwrap() {
        nudge_store::CommitResult::Duplicate { original, .. } => assert_eq!(original, done),
        other => panic!("expected the migrated key to be known, got {other:?}"),
    }
    let pending = s.pending_deliveries(10).await.unwrap();
    assert_eq!(
        pending.iter().map(|d| d.trace_id).collect::<Vec<_>>(),
        vec![waiting],
        "only the unprocessed one"
    );
    assert_eq!(pending[0].body, b"{}");
    assert!(matches!(
        s.commit_delivery(delivery("new-key", 4)).await.unwrap(),
        nudge_store::CommitResult::Committed { seq: 3 }
    ));
    drop(s);
    // Opening again changes nothing.
    let s = SqliteStore::open(dir.path(), Durability::Normal).unwrap();
    assert_eq!(s.stats().await.unwrap().deliveries, 3);
    assert_eq!(s.backlog().await.unwrap().0, 2);
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

/// A key that cannot be stored is refused on its own, with the reason; the next delivery is unaffected.
#[tokio::test]
async fn unusable_dedupe_keys_are_refused_alone() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path(), Durability::Normal).unwrap();
    let err = s.commit_delivery(delivery("a\nb", 1)).await.unwrap_err();
    assert!(err.to_string().contains("newline"), "{err}");
    assert!(s.commit_delivery(delivery("", 1)).await.is_err());
    assert!(matches!(
        s.commit_delivery(delivery("fine", 2)).await.unwrap(),
        nudge_store::CommitResult::Committed { .. }
    ));
    assert_eq!(s.stats().await.unwrap().deliveries, 1);
}
