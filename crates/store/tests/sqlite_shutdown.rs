//! Dropping the embedded store stops its threads once everything queued is answered. In a test binary of
//! its own: it counts the process's threads by name, which another test's store would disturb.

use nudge_store::prelude::*;
use nudge_store::sqlite::{Durability, SqliteStore};
use nudge_store::{CommitResult, NewDelivery};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn threads_named(prefix: &str) -> usize {
    std::fs::read_dir("/proc/self/task")
        .map(|tasks| {
            tasks
                .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
                .filter(|name| name.starts_with(prefix))
                .count()
        })
        .unwrap_or(0)
}

fn delivery(n: usize) -> NewDelivery {
    NewDelivery {
        trace_id: nudge_model::TraceId::new(),
        source: "shopify".into(),
        topic: "orders/create".into(),
        shop: None,
        webhook_id: Some(format!("w{n}")),
        event_id: None,
        received_at_ms: 1,
        headers_json: "{}".into(),
        body: vec![b'x'; 3000],
        dedupe_keys: vec![format!("w{n}")],
        part: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_store_stops_its_threads() {
    if !std::path::Path::new("/proc/self/task").exists() {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(SqliteStore::open(dir.path(), Durability::Full).unwrap());
    // Many deliveries at once: while the syncer flushes one commit the writer holds the next group open.
    let tasks: Vec<_> = (0..200)
        .map(|n| {
            let s = store.clone();
            tokio::spawn(async move { s.commit_delivery(delivery(n)).await })
        })
        .collect();
    for t in tasks {
        assert!(matches!(t.await.unwrap().unwrap(), CommitResult::Committed { .. }));
    }
    assert_eq!(store.pending_deliveries(1000).await.unwrap().len(), 200);
    assert_eq!(threads_named("nudge-sqlite-lo"), 1, "the log's writer runs");
    assert_eq!(threads_named("nudge-sqlite-sy"), 1, "its syncer runs");
    drop(store);
    let deadline = Instant::now() + Duration::from_secs(10);
    while threads_named("nudge-sqlite") > 0 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(threads_named("nudge-sqlite"), 0, "writers, syncer and checkpointers have stopped");
    // Everything acknowledged is there when the log is opened again.
    let store = SqliteStore::open(dir.path(), Durability::Full).unwrap();
    assert_eq!(store.pending_deliveries(1000).await.unwrap().len(), 200);
}
