//! Runs the store conformance suite against the embedded SQLite backend.

use nudge_store::Store;
use nudge_store::prelude::*;
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

/// The same suite with an fsync on every commit.
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
            part: None,
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
        part: None,
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

/// Large audit details are stored compressed, small ones as JSON text, and both read back as they were
/// recorded, as do rows written as text by earlier versions.
#[tokio::test]
async fn audit_details_are_compressed_when_large() {
    use nudge_model::{AuditRecord, AuditStage, TraceId};
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(dir.path(), Durability::Normal).unwrap();
    let at = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    let record = |trace, stage, detail| AuditRecord { trace_id: trace, customer: None, stage, at, detail };
    let (big, small) = (TraceId::new(), TraceId::new());
    let scores: Vec<serde_json::Value> =
        (0..200).map(|i| serde_json::json!({ "name": format!("score_{}", i % 7), "value": i })).collect();
    let trail = vec![
        record(big, AuditStage::Received, serde_json::json!({ "topic": "orders/create" })),
        record(big, AuditStage::Scored, serde_json::json!({ "scores": scores })),
    ];
    let short = vec![record(small, AuditStage::Received, serde_json::json!({ "topic": "carts/update" }))];
    s.commit_processing(vec![
        nudge_store::ProcessOutcome { trace_id: Some(big), audit: trail.clone(), ..Default::default() },
        nudge_store::ProcessOutcome { trace_id: Some(small), audit: short.clone(), ..Default::default() },
    ])
    .await
    .unwrap();
    assert_eq!(s.trace(big).await.unwrap().unwrap().records, trail);
    assert_eq!(s.trace(small).await.unwrap().unwrap().records, short);
    let c = rusqlite::Connection::open(dir.path().join("nudge.db")).unwrap();
    let stored = |trace: TraceId| -> (String, i64) {
        c.query_row(
            "SELECT typeof(detail), length(CAST(detail AS BLOB)) FROM audit WHERE trace_id = ?1",
            [trace.to_string()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap()
    };
    let json_len = serde_json::to_string(&trail.iter().map(|r| &r.detail).collect::<Vec<_>>()).unwrap().len();
    let (kind, len) = stored(big);
    assert_eq!(kind, "blob");
    assert!((len as usize) * 3 < json_len, "{len} bytes stored for {json_len} of JSON");
    assert_eq!(stored(small).0, "text");
    // A row as earlier versions wrote it: the JSON as text, however long.
    let old = TraceId::new();
    let long_text = serde_json::json!({ "scores": scores }).to_string();
    c.execute(
        "INSERT INTO audit (trace_id, customer_id, stage, at, detail) VALUES (?1, NULL, 'scored', 5, ?2)",
        rusqlite::params![old.to_string(), long_text],
    )
    .unwrap();
    let view = s.trace(old).await.unwrap().unwrap();
    assert_eq!(view.records[0].detail, serde_json::json!({ "scores": scores }));
}

/// A new ingest log gets 8 KB pages (three stored deliveries a page instead of one); a log created with
/// SQLite's default 4 KB pages keeps them and works as before.
#[tokio::test]
async fn new_ingest_logs_use_larger_pages() {
    let page_size = |path: &std::path::Path| -> i64 {
        rusqlite::Connection::open(path).unwrap().query_row("PRAGMA page_size", [], |r| r.get(0)).unwrap()
    };
    let fresh = tempfile::tempdir().unwrap();
    drop(SqliteStore::open(fresh.path(), Durability::Full).unwrap());
    assert_eq!(page_size(&fresh.path().join("ingest.db")), 8192);
    assert_eq!(page_size(&fresh.path().join("nudge.db")), 4096);

    let old = tempfile::tempdir().unwrap();
    rusqlite::Connection::open(old.path().join("ingest.db"))
        .unwrap()
        .execute_batch("PRAGMA journal_mode = WAL; CREATE TABLE earlier (x INTEGER);")
        .unwrap();
    let s = SqliteStore::open(old.path(), Durability::Full).unwrap();
    let mut d = delivery("k", 1);
    d.body = (0..3000u32).flat_map(|i| format!("{{\"n\":{i}}},").into_bytes()).collect();
    let body = d.body.clone();
    assert!(matches!(s.commit_delivery(d).await.unwrap(), nudge_store::CommitResult::Committed { .. }));
    assert_eq!(s.pending_deliveries(1).await.unwrap()[0].body, body);
    drop(s);
    assert_eq!(page_size(&old.path().join("ingest.db")), 4096);
}

/// With the ingest log behind a symbolic link, the flush goes to the WAL SQLite writes (beside the link's
/// target), and deliveries are acknowledged.
#[cfg(unix)]
#[tokio::test]
async fn a_linked_ingest_log_is_flushed_where_it_lives() {
    let (data, elsewhere) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    std::os::unix::fs::symlink(elsewhere.path().join("log.db"), data.path().join("ingest.db")).unwrap();
    let s = SqliteStore::open(data.path(), Durability::Full).unwrap();
    assert!(matches!(
        s.commit_delivery(delivery("k", 1)).await.unwrap(),
        nudge_store::CommitResult::Committed { .. }
    ));
    assert!(elsewhere.path().join("log.db-wal").exists());
    assert_eq!(s.pending_deliveries(5).await.unwrap().len(), 1);
}

/// Records appended on their own (a model refit's) are durable when `append_audit` returns: they read back
/// after reopening, as one trace with no terminal state that counts as no delivery.
#[tokio::test]
async fn appended_audit_survives_reopening() {
    use nudge_model::{AuditRecord, AuditStage, TraceId};
    let dir = tempfile::tempdir().unwrap();
    let refit = TraceId::new();
    let at = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
    let records = vec![AuditRecord {
        trace_id: refit,
        customer: None,
        stage: AuditStage::ModelRefit,
        at,
        detail: serde_json::json!({ "version": "bgnbd-3", "activated": true, "reason": "holdout improved" }),
    }];
    {
        let s = SqliteStore::open(dir.path(), Durability::Full).unwrap();
        s.append_audit(records.clone()).await.unwrap();
    }
    let s = SqliteStore::open(dir.path(), Durability::Full).unwrap();
    let view = s.trace(refit).await.unwrap().expect("the refit's trace");
    assert_eq!(view.records, records);
    assert_eq!(view.terminal, None);
    let stats = s.stats().await.unwrap();
    assert_eq!((stats.deliveries, stats.pending_deliveries), (0, 0));
    assert!(stats.terminal_by_state.is_empty());
}

/// A database written before API tokens existed gains their table when it is opened, keeping its data.
#[tokio::test]
async fn a_database_from_before_tokens_gains_them_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SqliteStore::open(dir.path(), Durability::Normal).unwrap();
        s.commit_delivery(delivery("before", 1)).await.unwrap();
    }
    // As an earlier version left it: no `api_tokens` table.
    rusqlite::Connection::open(dir.path().join("nudge.db"))
        .unwrap()
        .execute_batch("DROP TABLE api_tokens")
        .unwrap();
    let s = SqliteStore::open(dir.path(), Durability::Normal).unwrap();
    assert_eq!(s.stats().await.unwrap().deliveries, 1);
    let id = s.create_token("ops", "admin", &"ab".repeat(32)).await.unwrap();
    assert_eq!(s.token_by_hash(&"ab".repeat(32)).await.unwrap().unwrap().id, id);
    drop(s);
    // Opening again keeps the tokens.
    let s = SqliteStore::open(dir.path(), Durability::Normal).unwrap();
    assert_eq!(s.list_tokens().await.unwrap().len(), 1);
}

/// Bulk approval of 10,000 pending items is one transaction and finishes well within a second (the figure
/// itself belongs in BENCHMARKS.md; this bound only catches a regression by an order of magnitude).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bulk_approve_of_ten_thousand_items_is_fast() {
    use nudge_store::{ApprovalDecision, ApprovalTarget, DecideResult, NewApproval, ProcessOutcome};
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path(), Durability::Full).expect("open store");
    let now = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    for chunk in 0..10 {
        let outcomes: Vec<ProcessOutcome> = (0..1000)
            .map(|i| {
                let t = nudge_model::TraceId::new();
                let n = chunk * 1000 + i;
                ProcessOutcome {
                    trace_id: Some(t),
                    approvals: vec![NewApproval {
                        trace_id: t,
                        flow: "winback".into(),
                        flow_version: "flows-test".into(),
                        customer: format!("shopify:{n}").parse().unwrap(),
                        actions_json: format!(
                            r#"[{{"destination":"klaviyo","action":{{"type":"track_event","metric":"AI Winback","unique_id":"u{n}","properties":{{"tier":"at_risk"}}}}}}]"#
                        ),
                        created_at_ms: now,
                        expires_at_ms: now + 3_600_000,
                    }],
                    ..Default::default()
                }
            })
            .collect();
        store.commit_processing(outcomes).await.unwrap();
    }
    let started = std::time::Instant::now();
    let r = store
        .decide_approvals(
            ApprovalTarget::AllPending { flow: Some("winback".into()) },
            ApprovalDecision::Approve,
            "token:bench",
            None,
            now,
        )
        .await
        .unwrap();
    let took = started.elapsed();
    eprintln!("bulk approve of {} items: {:?}", r.len(), took);
    assert_eq!(r.len(), 10_000);
    assert!(r.iter().all(|x| x.1 == DecideResult::Decided));
    assert_eq!(store.backlog().await.unwrap().1, 10_000);
    assert!(took < std::time::Duration::from_secs(3), "bulk approve took {took:?}");
}
