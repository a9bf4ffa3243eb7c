//! `nudge_store::migrate::sqlite_to_postgres`: an embedded store filled through the public port reads back the
//! same through the PostgreSQL store's port once migrated, dedupe and the sequences carry on past the copied
//! rows, and a second run copies nothing. Runs against the database `NUDGE_TEST_POSTGRES_URL` names (a fresh
//! schema per test); skipped, with a note, when it is not set.

use nudge_model::{AuditRecord, AuditStage, CustomerId, TerminalState, TraceId};
use nudge_store::conformance::{fresh_postgres, postgres_test_url};
use nudge_store::migrate::{MigrationReport, sqlite_to_postgres};
use nudge_store::prelude::*;
use nudge_store::sqlite::{Durability, SqliteStore};
use nudge_store::*;
use std::path::Path;

fn cust(n: u32) -> CustomerId {
    format!("shopify:{n}").parse().unwrap()
}

fn delivery(n: u32, body: Vec<u8>) -> NewDelivery {
    NewDelivery {
        trace_id: TraceId::new(),
        source: "shopify".into(),
        topic: "orders/create".into(),
        shop: Some("demo.myshopify.com".into()),
        webhook_id: Some(format!("wh-{n}")),
        event_id: Some(format!("ev-{n}")),
        received_at_ms: 1_000 + i64::from(n),
        headers_json: format!("{{\"x-n\":\"{n}\"}}"),
        body,
        dedupe_keys: vec![format!("shopify:webhook:wh-{n}"), format!("shopify:event:ev-{n}")],
        part: None,
    }
}

fn at(ms: i64) -> nudge_model::Timestamp {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000).unwrap()
}

fn record(
    trace: TraceId,
    customer: Option<CustomerId>,
    stage: AuditStage,
    ms: i64,
    detail: serde_json::Value,
) -> AuditRecord {
    AuditRecord { trace_id: trace, customer, stage, at: at(ms), detail }
}

fn committed(r: CommitResult) -> i64 {
    match r {
        CommitResult::Committed { seq } => seq,
        other => panic!("not committed: {other:?}"),
    }
}

/// What the test reads back from both stores.
struct Fixture {
    traces: Vec<TraceId>,
    customers: Vec<CustomerId>,
    first: NewDelivery,
    max_seq: i64,
    max_token: i64,
    max_settle: i64,
}

/// Fills an embedded store in `dir` through its port (and one state written as text, as an earlier version
/// stored states).
async fn fill(dir: &Path) -> Fixture {
    let s = SqliteStore::open(dir, Durability::Normal).unwrap();
    let big_detail = serde_json::json!({
        "scores": (0..60).map(|i| serde_json::json!({"model": format!("m{i}"), "score": i})).collect::<Vec<_>>()
    });
    let big_body = serde_json::to_vec(&serde_json::json!({
        "line_items": (0..100).map(|i| serde_json::json!({"sku": format!("sku-{i}"), "qty": 1})).collect::<Vec<_>>()
    }))
    .unwrap();
    // d1..d4 and the person to erase (d7) are processed below; d5 (a large body) and d6 stay pending.
    let mut ds: Vec<NewDelivery> =
        (1..=4).map(|n| delivery(n, format!("{{\"n\":{n}}}").into_bytes())).collect();
    ds.push(delivery(7, b"{\"email\":\"gone@example.org\"}".to_vec()));
    let first = ds[0].clone();
    let seqs: Vec<i64> = s.commit_deliveries(ds.clone()).await.unwrap().into_iter().map(committed).collect();
    let t: Vec<TraceId> = ds.iter().map(|d| d.trace_id).collect();
    let (t1, t2, t3, t4, t7) = (t[0], t[1], t[2], t[3], t[4]);
    let decision = |trace: TraceId, c: u32| FlowDecision {
        flow: "f".into(),
        flow_version: "v1".into(),
        customer: cust(c),
        at_ms: 5,
        status: "live".into(),
        matched: true,
        baseline: Some(false),
        trace_id: trace,
        arm: Some("free_shipping".into()),
    };
    let offer = |id: &str, c: u32, window_end_ms: i64| NewOffer {
        id: id.into(),
        flow: "f".into(),
        customer: cust(c),
        arm: "free_shipping".into(),
        propensity: 0.25,
        explored: true,
        context: vec![1.0, 0.5],
        decided_at_ms: 10,
        window_end_ms,
    };
    let item = |trace: TraceId, destination: &str, n: u32| NewOutboxItem {
        trace_id: trace,
        customer: cust(1),
        destination: destination.into(),
        action_json: format!("{{\"n\":{n}}}"),
        origin_us: 7,
    };
    let o1 = ProcessOutcome {
        seq: seqs[0],
        trace_id: Some(t1),
        status: Some(DeliveryStatus::Processed),
        states: vec![
            StoredState {
                customer: cust(1),
                email: Some("one@example.org".into()),
                state: vec![1, 2, 3, 0, 255],
            },
            StoredState { customer: cust(2), email: None, state: vec![9] },
        ],
        // Three records of one instant (packed into one row, its detail large enough to be compressed), and
        // one of another instant.
        audit: vec![
            record(
                t1,
                Some(cust(1)),
                AuditStage::Received,
                100,
                serde_json::json!({"topic": "orders/create"}),
            ),
            record(t1, Some(cust(1)), AuditStage::Scored, 100, big_detail.clone()),
            record(t1, Some(cust(1)), AuditStage::Decided, 100, serde_json::json!("plain string")),
            record(t1, Some(cust(1)), AuditStage::StateChanged, 101, serde_json::json!({"small": true})),
        ],
        outbox: vec![item(t1, "klaviyo", 1), item(t1, "klaviyo", 2), item(t1, "webhook:crm", 3)],
        set_timers: vec![TimerSpec {
            checkout_token: "co-1".into(),
            cart_token: Some("cart-1".into()),
            customer: cust(1),
            due_at_ms: 9_999,
            payload_json: "{\"timer\":1}".into(),
            origin_trace: t1,
        }],
        decisions: vec![decision(t1, 1)],
        fetch_jobs: vec![NewFetchJob {
            trace_id: t1,
            source: "bigcommerce".into(),
            job: "{\"id\":1}".into(),
            due_at_ms: 50,
        }],
        aliases: vec![NewAlias { alias: "anon:abc".into(), customer: cust(1), at_ms: 3, trace_id: Some(t1) }],
        offers: vec![offer("offer-1", 1, 1_000), offer("offer-2", 1, 2_000), offer("offer-3", 2, 500)],
        products: vec![StoredProduct {
            id: "p1".into(),
            source: "shopify".into(),
            updated_at_ms: 12,
            record: "{\"title\":\"Mug\"}".into(),
        }],
        ..Default::default()
    };
    let quarantine = |seq: i64, trace: TraceId, why: &str| ProcessOutcome {
        seq,
        trace_id: Some(trace),
        status: Some(DeliveryStatus::Quarantined),
        status_reason: Some(why.into()),
        audit: vec![record(trace, None, AuditStage::Received, 200, serde_json::json!({"why": why}))],
        terminal: Some(TerminalState::Quarantined(why.into())),
        ..Default::default()
    };
    let o4 = ProcessOutcome {
        seq: seqs[3],
        trace_id: Some(t4),
        status: Some(DeliveryStatus::Processed),
        states: vec![StoredState {
            customer: cust(3),
            email: Some("three@example.org".into()),
            state: vec![3],
        }],
        approvals: vec![NewApproval {
            trace_id: t4,
            flow: "f".into(),
            flow_version: "v1".into(),
            customer: cust(3),
            actions_json: "[{\"destination\":\"klaviyo\",\"action\":{\"n\":4}}]".into(),
            created_at_ms: 20,
            expires_at_ms: 99_999,
        }],
        offer_settlements: vec![OfferSettlement { customer: cust(1), order_at_ms: 500, value: 42.5 }],
        decisions: vec![decision(t4, 3)],
        ..Default::default()
    };
    let o7 = ProcessOutcome {
        seq: seqs[4],
        trace_id: Some(t7),
        status: Some(DeliveryStatus::Processed),
        states: vec![StoredState {
            customer: cust(9),
            email: Some("gone@example.org".into()),
            state: vec![7],
        }],
        audit: vec![record(t7, Some(cust(9)), AuditStage::Decided, 300, serde_json::json!({"n": 7}))],
        terminal: Some(TerminalState::Ignored("nothing to do".into())),
        ..Default::default()
    };
    s.commit_processing(vec![
        o1,
        quarantine(seqs[1], t2, "bad json"),
        quarantine(seqs[2], t3, "unknown topic"),
        o4,
        o7,
    ])
    .await
    .unwrap();
    // One quarantined delivery put back (below the highest processed seq: `requeued`).
    assert_eq!(s.requeue_quarantined(Some(t3)).await.unwrap(), 1);
    // Pending after the processed ones: a large body and a small one.
    let d5 = delivery(5, big_body);
    let d6 = delivery(6, b"{}".to_vec());
    let (t5, t6) = (d5.trace_id, d6.trace_id);
    let later: Vec<i64> =
        s.commit_deliveries(vec![d5, d6]).await.unwrap().into_iter().map(committed).collect();
    // Attempts: one delivered, one dead-lettered, one still pending.
    let due = s.due_outbox(i64::MAX, 10).await.unwrap();
    let klaviyo = due.iter().find(|i| i.destination == "klaviyo").unwrap().id;
    s.record_attempts(vec![AttemptRecord {
        item_id: klaviyo,
        trace_id: t1,
        result: AttemptResult::Delivered,
        audit: record(t1, Some(cust(1)), AuditStage::DeliveryAttempt, 400, serde_json::json!({"ok": true})),
        at_ms: 400,
    }])
    .await
    .unwrap();
    let next = s.due_outbox_for("klaviyo", i64::MAX, 10).await.unwrap();
    s.record_attempts(vec![AttemptRecord {
        item_id: next[0].id,
        trace_id: t1,
        result: AttemptResult::DeadLettered("boom".into()),
        audit: record(
            t1,
            Some(cust(1)),
            AuditStage::DeliveryAttempt,
            401,
            serde_json::json!({"error": "boom"}),
        ),
        at_ms: 401,
    }])
    .await
    .unwrap();
    // Audit records of their own (a refit's).
    let refit = TraceId::new();
    s.append_audit(vec![record(
        refit,
        None,
        AuditStage::ModelRefit,
        500,
        serde_json::json!({"family": "bgnbd"}),
    )])
    .await
    .unwrap();
    // The rest of the concerns.
    let ops = s.create_token("ops", "admin", "hash-ops").await.unwrap();
    let viewer = s.create_token("viewer", "viewer", "hash-viewer").await.unwrap();
    s.revoke_token(TokenRef::Id(viewer)).await.unwrap();
    s.touch_token(ops, 60_000).await.unwrap();
    for (id, family, active) in
        [("bgnbd-1", "bgnbd", false), ("bgnbd-2", "bgnbd", true), ("bandit-1", "bandit", false)]
    {
        s.save_model_version(ModelVersion {
            id: id.into(),
            family: family.into(),
            created_at_ms: 70,
            active: false,
            body: serde_json::json!({"id": id}),
        })
        .await
        .unwrap();
        if active {
            s.activate_model_version(id).await.unwrap();
        }
    }
    s.import_transactions(
        (0..3)
            .map(|i| ImportedTransaction {
                customer_id: cust(1 + i).to_string(),
                order_id: format!("o{i}"),
                day: 19_000 + i as i32,
                amount: format!("{i}.50"),
                source: "csv".into(),
            })
            .collect(),
    )
    .await
    .unwrap();
    let discovery = s.save_segment_discovery(80, serde_json::json!({"k": 2})).await.unwrap();
    s.adopt_segment(AdoptedSegment {
        name: "vip".into(),
        discovery_id: discovery,
        proposal: 1,
        adopted_at_ms: 81,
        adopted_by: "cli:ops".into(),
        lists: Vec::new(),
        members: 0,
        refreshed_at_ms: None,
        refreshes: 0,
        last_stability: None,
        last_joined: 0,
        last_left: 0,
    })
    .await
    .unwrap();
    s.replace_segment_members(SegmentRefresh {
        segment: "vip".into(),
        at_ms: 82,
        members: vec![cust(1), cust(2)],
        stability: Some(0.75),
        joined: 2,
        left: 0,
    })
    .await
    .unwrap();
    s.save_schedule_run(ScheduleRun {
        flow: "weekly".into(),
        schedule: "0 9 * * 1".into(),
        fire_at_ms: 90,
        cursor: Some(cust(2)),
        pending_through: None,
        done: false,
    })
    .await
    .unwrap();
    s.save_push_run(PushRun {
        destination: "klaviyo".into(),
        selector: "all".into(),
        started_at_ms: 91,
        updated_at_ms: 92,
        cursor: Some(cust(1)),
        pushed: 5,
        rejected: 1,
        deferred: 0,
        done: true,
    })
    .await
    .unwrap();
    // An erasure, its deliveries emptied in the log (a tombstone).
    let job_trace = TraceId::new();
    let job = s
        .submit_privacy_job(NewPrivacyJob {
            kind: PrivacyJobKind::Erase,
            customers: vec![cust(9)],
            email: Some("gone@example.org".into()),
            phone: None,
            pseudonym: "ps_customer_0123456789abcdef01234567".into(),
            reference: Some("ticket-1".into()),
            requested_by: "cli:ops".into(),
            trace_id: job_trace,
            at_ms: 600,
            destinations: vec!["klaviyo".into()],
        })
        .await
        .unwrap();
    assert_eq!(s.erase_from_log(job).await.unwrap(), 1);
    let max_settle =
        s.settled_offers_after(0, 100).await.unwrap().iter().filter_map(|o| o.settle_seq).max().unwrap();
    drop(s);
    // A state as an earlier version wrote it: JSON text.
    let c = rusqlite::Connection::open(dir.join("nudge.db")).unwrap();
    c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
    c.execute(
        "INSERT INTO customers (customer_id, email, state, updated_at) VALUES (?1, 'legacy@example.org', '{\"n\":50}', 0)",
        [cust(50).to_string()],
    )
    .unwrap();
    // The trail as the embedded backend packs it: several records a row, a large detail compressed.
    let (packed, blobs): (i64, i64) = c
        .query_row("SELECT SUM(stage LIKE '%+%'), SUM(typeof(detail) = 'blob') FROM audit", [], |r| {
            Ok((r.get(0)?, r.get(1)?))
        })
        .unwrap();
    assert!(packed >= 1 && blobs >= 1, "packed rows {packed}, compressed details {blobs}");
    Fixture {
        traces: vec![t1, t2, t3, t4, t5, t6, t7, refit, job_trace, TraceId::new()],
        customers: vec![cust(1), cust(2), cust(3), cust(9), cust(50), cust(77)],
        first,
        max_seq: later[1],
        max_token: viewer,
        max_settle,
    }
}

/// Everything read back through the port, section by section.
async fn snapshot(s: &dyn Store, fx: &Fixture) -> Vec<(&'static str, String)> {
    let mut out: Vec<(&'static str, String)> = Vec::new();
    macro_rules! read {
        ($name:literal, $e:expr) => {
            out.push(($name, format!("{:#?}", $e.await.unwrap())))
        };
    }
    read!("pending deliveries", s.pending_deliveries(100));
    read!("quarantined", s.quarantined(None, 100));
    read!("states", s.load_states(&fx.customers));
    read!("scan states", s.scan_states(None, 100));
    read!("text states", s.scan_text_states(None, 100));
    read!("by email", s.customer_by_email("one@example.org"));
    read!("legacy by email", s.customer_by_email("legacy@example.org"));
    read!("aliases of", s.aliases_of(&cust(1)));
    read!("resolve aliases", s.resolve_aliases(&["anon:abc".to_string(), "anon:none".to_string()]));
    for t in &fx.traces {
        read!("trace", s.trace(*t));
    }
    read!("customer audit", s.customer_audit(&cust(1), 100));
    read!("audit of traces", s.audit_of_traces(fx.traces.clone(), AuditStage::DeliveryAttempt));
    read!("due outbox", s.due_outbox(i64::MAX, 100));
    read!("pending destinations", s.pending_destinations());
    read!("dead letters", s.dead_letters(DeadLetterFilter::default(), None, 100));
    read!("push run", s.push_run("klaviyo"));
    read!("schedule runs", s.schedule_runs());
    read!("fetch jobs", s.fetch_jobs_of(fx.traces[0]));
    read!("transactions", s.transactions());
    read!("model versions", s.model_versions());
    read!("active model", s.active_model_version());
    read!("products", s.products(None));
    read!("discoveries", s.segment_discoveries(10));
    read!("adopted segments", s.adopted_segments());
    read!("segment members", s.segment_members("vip"));
    read!("tokens", s.list_tokens());
    read!("token by hash", s.token_by_hash("hash-ops"));
    read!("approvals", s.list_approvals(ApprovalFilter::default()));
    read!("flow decisions", s.flow_decisions("f", 0, i64::MAX));
    read!("offers", s.offers_of_flow("f"));
    read!("settled offers", s.settled_offers_after(0, 100));
    read!("privacy jobs", s.privacy_jobs(false, None));
    read!("stats", s.stats());
    read!("backlog", s.backlog());
    out
}

fn assert_counts(report: &MigrationReport, table: &str, copied: u64, present: u64) {
    let t = report.table(table).unwrap_or_else(|| panic!("{table} is in the report"));
    assert_eq!((t.copied, t.already_present), (copied, present), "{table}: {report:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn embedded_store_reads_back_the_same_on_postgres() {
    let Some(url) = postgres_test_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let fx = fill(dir.path()).await;
    let expected = {
        let s = SqliteStore::open(dir.path(), Durability::Normal).unwrap();
        snapshot(&s, &fx).await
    };
    let pg = fresh_postgres(&url, "nudge_t").await;
    let mut seen: Vec<(String, u64)> = Vec::new();
    let report = sqlite_to_postgres(dir.path(), &pg, |t, n| seen.push((t.to_string(), n))).await.unwrap();
    assert!(seen.iter().any(|(t, _)| t == "audit"), "progress per table: {seen:?}");
    assert_counts(&report, "deliveries", 7, 0);
    assert_counts(&report, "delivery_keys", 14, 0);
    assert_counts(&report, "customers", 4, 0);
    assert_counts(&report, "outbox", 3, 0);
    assert_counts(&report, "api_tokens", 2, 0);
    assert_counts(&report, "offer_log", 3, 0);
    assert!(report.table("audit").unwrap().copied >= 10, "{report:#?}");
    let got = snapshot(&*pg, &fx).await;
    assert_eq!(got.len(), expected.len());
    for ((name, want), (_, have)) in expected.iter().zip(&got) {
        assert_eq!(have, want, "{name} differs after the migration");
    }
    // What the fixture put in, as it reads on PostgreSQL.
    let stats = pg.stats().await.unwrap();
    assert_eq!(
        (stats.pending_deliveries, stats.quarantined, stats.customers, stats.timers),
        (3, 1, 4, 1),
        "{stats:#?}"
    );
    assert_eq!((stats.outbox_pending, stats.outbox_delivered, stats.outbox_dead), (1, 1, 1), "{stats:#?}");
    let pending: Vec<i64> = pg.pending_deliveries(100).await.unwrap().iter().map(|d| d.seq).collect();
    assert_eq!(pending, vec![3, 6, 7], "the requeued delivery and the two after the processed ones");
    assert!(pg.pending_deliveries(100).await.unwrap()[1].body.len() > 1_000, "the large body, unpacked");
    let text = pg.scan_text_states(None, 10).await.unwrap();
    assert_eq!(text.len(), 1);
    assert_eq!(text[0].state, b"{\"n\":50}");
    assert_eq!(pg.dead_letters(DeadLetterFilter::default(), None, 10).await.unwrap().len(), 1);
    assert_eq!(pg.list_tokens().await.unwrap().len(), 2);
    assert_eq!(pg.privacy_jobs(false, None).await.unwrap().len(), 1);
    let status: String =
        sqlx::query_scalar("SELECT status FROM deliveries WHERE seq = 5").fetch_one(pg.pool()).await.unwrap();
    assert_eq!(status, "erased", "the erased person's delivery is a tombstone");
    // The packed row came back as separate records, in order.
    let t1 = pg.trace(fx.traces[0]).await.unwrap().unwrap();
    let stages: Vec<&str> = t1.records.iter().map(|r| r.stage.as_str()).collect();
    assert_eq!(
        stages,
        ["received", "scored", "decided", "state_changed", "delivery_attempt", "delivery_attempt"],
        "{t1:#?}"
    );
    // A key committed before is a duplicate; new deliveries come after the old ones.
    let mut again = fx.first.clone();
    again.trace_id = TraceId::new();
    match pg.commit_delivery(again).await.unwrap() {
        CommitResult::Duplicate { original, .. } => assert_eq!(original, fx.first.trace_id),
        other => panic!("a copied dedupe key must be a duplicate: {other:?}"),
    }
    let seq = committed(pg.commit_delivery(delivery(100, b"{}".to_vec())).await.unwrap());
    assert!(seq > fx.max_seq, "new seq {seq} after {}", fx.max_seq);
    let token = pg.create_token("new", "viewer", "hash-new").await.unwrap();
    assert!(token > fx.max_token);
    assert!(pg.expire_offers(i64::MAX).await.unwrap() >= 1);
    let settled = pg.settled_offers_after(fx.max_settle, 100).await.unwrap();
    assert!(!settled.is_empty() && settled.iter().all(|o| o.settle_seq.unwrap() > fx.max_settle));
    pg.append_audit(vec![record(TraceId::new(), None, AuditStage::ModelRefit, 1, serde_json::json!({}))])
        .await
        .unwrap();
    // A second run copies nothing and changes nothing.
    let before = snapshot(&*pg, &fx).await;
    let second = sqlite_to_postgres(dir.path(), &pg, |_, _| {}).await.unwrap();
    assert_eq!(second.copied(), 0, "{second:#?}");
    assert_eq!(second.already_present(), report.copied(), "{second:#?}");
    assert_eq!(snapshot(&*pg, &fx).await, before);
    pg.drop_schema().await.expect("drop the test schema");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_interrupted_copy_is_completed_by_a_second_run() {
    let Some(url) = postgres_test_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    {
        let s = SqliteStore::open(dir.path(), Durability::Normal).unwrap();
        // More than a page of deliveries, so the copy goes in several chunks.
        let n = nudge_store::migrate::CHUNK_ROWS as u32 + 7;
        let ds: Vec<NewDelivery> =
            (0..n).map(|i| delivery(i, format!("{{\"i\":{i}}}").into_bytes())).collect();
        for chunk in ds.chunks(1000) {
            s.commit_deliveries(chunk.to_vec()).await.unwrap();
        }
        // And a table paged by a two-column key, over several pages.
        let rows: Vec<ImportedTransaction> = (0..n)
            .map(|i| ImportedTransaction {
                customer_id: cust(i % 50).to_string(),
                order_id: format!("o{i}"),
                day: 19_000,
                amount: "1.00".into(),
                source: "csv".into(),
            })
            .collect();
        s.import_transactions(rows).await.unwrap();
    }
    let pg = fresh_postgres(&url, "nudge_t").await;
    // As if the first run had stopped after part of the log: some deliveries already there.
    let first = sqlite_to_postgres(dir.path(), &pg, |_, _| {}).await.unwrap();
    let total = nudge_store::migrate::CHUNK_ROWS as u64 + 7;
    assert_counts(&first, "deliveries", total, 0);
    assert_counts(&first, "transactions", total, 0);
    assert_eq!(pg.transactions().await.unwrap().len() as u64, total);
    sqlx::query("DELETE FROM deliveries WHERE seq % 3 = 0").execute(pg.pool()).await.unwrap();
    sqlx::query("DELETE FROM delivery_keys WHERE seq % 3 = 0").execute(pg.pool()).await.unwrap();
    let removed = total / 3;
    let second = sqlite_to_postgres(dir.path(), &pg, |_, _| {}).await.unwrap();
    assert_counts(&second, "deliveries", removed, total - removed);
    assert_counts(&second, "delivery_keys", 2 * removed, 2 * (total - removed));
    assert_eq!(pg.pending_deliveries(usize::MAX).await.unwrap().len() as u64, total);
    pg.drop_schema().await.expect("drop the test schema");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_directory_without_an_embedded_store_is_refused() {
    let Some(url) = postgres_test_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    let pg = fresh_postgres(&url, "nudge_t").await;
    let err = sqlite_to_postgres(dir.path(), &pg, |_, _| {}).await.unwrap_err();
    assert!(err.to_string().contains("nudge.db"), "{err}");
    pg.drop_schema().await.expect("drop the test schema");
}
