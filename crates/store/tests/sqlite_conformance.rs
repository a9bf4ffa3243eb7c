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
}
