//! The conformance suite every backend must pass. A backend's test calls [`run_all`] with a factory that
//! returns a fresh, empty store; each check gets its own store.

use crate::*;
use nudge_model::{AuditRecord, AuditStage, CustomerId, TerminalState, TraceId};
use std::future::Future;
use std::sync::Arc;

/// Runs every check against fresh stores from `make`. Panics with the check's name on failure.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    dedupe_and_group_commit(make().await).await;
    batch_commit_skips_duplicates(make().await).await;
    processing_round_trip(make().await).await;
    pipelined_batches(make().await).await;
    outbox_keeps_per_customer_order(make().await).await;
    outbox_queues_are_per_destination(make().await).await;
    push_runs_are_kept_per_destination(make().await).await;
    terminal_states_and_replay(make().await).await;
    appended_audit_belongs_to_no_delivery(make().await).await;
    timers_fire_and_cancel(make().await).await;
    quarantine_and_replay(make().await).await;
    registry(make().await).await;
    import_is_idempotent(make().await).await;
    api_tokens(make().await).await;
    approvals_queue(make().await).await;
    approvals_in_bulk(make().await).await;
    flow_decisions_for_reports(make().await).await;
    offer_log_settles_each_offer_once(make().await).await;
    dead_letters_replay_by_destination(make().await).await;
    dead_letters_and_quarantine_are_listed_newest_first(make().await).await;
    schedule_runs(make().await).await;
    fetch_jobs_are_durable_settled_and_replayed(make().await).await;
    erasure_removes_the_person_and_only_them(make().await).await;
    export_holds_only_the_person(make().await).await;
    aliases_are_written_with_processing_and_states_merged_away(make().await).await;
    generated_copy_is_stored_once_with_its_audit_and_usage(make().await).await;
    products_keep_the_newest_record(make().await).await;
    delivery_ticks_follow_the_log(make().await).await;
    pending_after_heads_look_behind_each_customer(make().await).await;
}

fn delivery(webhook: &str, event: Option<&str>) -> NewDelivery {
    let mut keys = vec![format!("shopify:webhook:{webhook}")];
    if let Some(e) = event {
        keys.push(format!("shopify:event:{e}"));
    }
    NewDelivery {
        trace_id: TraceId::new(),
        source: "shopify".into(),
        topic: "orders/create".into(),
        shop: Some("demo.myshopify.com".into()),
        webhook_id: Some(webhook.into()),
        event_id: event.map(str::to_string),
        received_at_ms: 1_000,
        headers_json: "{}".into(),
        body: b"{\"id\":1}".to_vec(),
        dedupe_keys: keys,
    }
}

/// `commit_deliveries`: results in order, a key seen before or earlier in the same batch is a duplicate,
/// and every committed delivery is readable.
pub async fn batch_commit_skips_duplicates(s: Arc<dyn Store>) {
    assert!(matches!(s.commit_delivery(delivery("b0", None)).await.unwrap(), CommitResult::Committed { .. }));
    let batch = vec![delivery("b1", None), delivery("b0", None), delivery("b2", None), delivery("b1", None)];
    let first = batch[0].trace_id;
    let results = s.commit_deliveries(batch).await.unwrap();
    assert_eq!(results.len(), 4, "batch: one result per delivery");
    assert!(matches!(results[0], CommitResult::Committed { .. }), "batch: new is committed");
    assert!(matches!(results[1], CommitResult::Duplicate { .. }), "batch: seen before is a duplicate");
    assert!(matches!(results[2], CommitResult::Committed { .. }), "batch: new is committed");
    match &results[3] {
        CommitResult::Duplicate { original, .. } => assert_eq!(*original, first, "batch: in-batch duplicate"),
        other => panic!("batch: expected an in-batch duplicate, got {other:?}"),
    }
    assert!(s.commit_deliveries(Vec::new()).await.unwrap().is_empty(), "batch: empty");
    let pending = s.pending_deliveries(100).await.unwrap();
    assert_eq!(pending.len(), 3, "batch: three stored in all");
}

fn cust(n: u32) -> CustomerId {
    format!("shopify:{n}").parse().expect("valid id")
}

fn audit(trace: TraceId, stage: AuditStage) -> AuditRecord {
    AuditRecord {
        trace_id: trace,
        customer: Some(cust(1)),
        stage,
        at: time::OffsetDateTime::now_utc(),
        detail: serde_json::json!({"k": "v"}),
    }
}

pub async fn dedupe_and_group_commit(s: Arc<dyn Store>) {
    let first = delivery("w1", Some("e1"));
    let first_trace = first.trace_id;
    assert!(matches!(s.commit_delivery(first).await.unwrap(), CommitResult::Committed { .. }));
    // Same webhook id: duplicate.
    match s.commit_delivery(delivery("w1", None)).await.unwrap() {
        CommitResult::Duplicate { original, .. } => {
            assert_eq!(original, first_trace, "dedupe: original trace")
        }
        other => panic!("dedupe: expected duplicate, got {other:?}"),
    }
    // Different webhook id, same event id: duplicate.
    assert!(matches!(
        s.commit_delivery(delivery("w2", Some("e1"))).await.unwrap(),
        CommitResult::Duplicate { .. }
    ));
    // Many concurrent deliveries (group commit), with duplicates among them: exactly one of each key lands.
    let mut handles = Vec::new();
    for i in 0..200 {
        let s = s.clone();
        handles.push(tokio::spawn(async move {
            s.commit_delivery(delivery(&format!("c{}", i % 100), None)).await
        }));
    }
    let mut committed = 0;
    for h in handles {
        if matches!(h.await.unwrap().unwrap(), CommitResult::Committed { .. }) {
            committed += 1;
        }
    }
    assert_eq!(committed, 100, "group commit: each key committed once");
    assert_eq!(s.stats().await.unwrap().deliveries, 101);
    // Pruning old keys makes the key usable again.
    assert!(s.prune_dedupe(2_000).await.unwrap() >= 101);
    assert!(matches!(s.commit_delivery(delivery("w1", None)).await.unwrap(), CommitResult::Committed { .. }));
}

pub async fn processing_round_trip(s: Arc<dyn Store>) {
    for i in 0..3 {
        s.commit_delivery(delivery(&format!("p{i}"), None)).await.unwrap();
    }
    let pending = s.pending_deliveries(10).await.unwrap();
    assert_eq!(pending.len(), 3);
    assert_eq!(s.backlog().await.unwrap(), (3, 0), "backlog counts what is pending");
    assert!(pending.windows(2).all(|w| w[0].seq < w[1].seq), "pending in sequence order");
    let d = &pending[0];
    // Records of one instant, as a processing step writes them, plus one of another customer.
    let at = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).expect("valid instant");
    let record = |stage, customer: Option<CustomerId>, i: u32| AuditRecord {
        trace_id: d.trace_id,
        customer,
        stage,
        at,
        detail: serde_json::json!({ "i": i, "text": "a+b, [c]" }),
    };
    let trail = vec![
        record(AuditStage::Received, Some(cust(1)), 0),
        record(AuditStage::Normalized, Some(cust(1)), 1),
        record(AuditStage::Scored, Some(cust(1)), 2),
        record(AuditStage::StateChanged, Some(cust(9)), 3),
        record(AuditStage::Decided, Some(cust(1)), 4),
    ];
    let outcome = ProcessOutcome {
        seq: d.seq,
        trace_id: Some(d.trace_id),
        status: Some(DeliveryStatus::Processed),
        states: vec![StoredState {
            customer: cust(1),
            email: Some("Lena@Example.org ".into()),
            state: b"{\"a\":1}".to_vec(),
        }],
        audit: trail.clone(),
        terminal: Some(TerminalState::Ignored("nothing to do".into())),
        ..Default::default()
    };
    s.commit_processing(vec![outcome]).await.unwrap();
    assert_eq!(s.pending_deliveries(10).await.unwrap().len(), 2);
    let states = s.load_states(&[cust(1), cust(2)]).await.unwrap();
    assert_eq!(states.len(), 1);
    assert_eq!(states[0].state, b"{\"a\":1}");
    assert_eq!(
        s.customer_by_email("lena@example.org").await.unwrap(),
        Some(cust(1)),
        "email is a secondary key"
    );
    // The secondary key follows the state: kept when unchanged, moved when changed, gone when cleared.
    let state = |email: Option<&str>, bytes: &[u8]| StoredState {
        customer: cust(1),
        email: email.map(str::to_string),
        state: bytes.to_vec(),
    };
    // States are opaque bytes: any, NUL and invalid UTF-8 included.
    let bytes: [&[u8]; 4] = [b"{\"a\":2}", &[1, 0, 0xff, 0x80, 7], &[0x81], b"{\"a\":5}"];
    for (email, bytes, lena, mara) in [
        (Some("lena@example.org"), bytes[0], Some(cust(1)), None),
        (Some("Mara@example.org"), bytes[1], None, Some(cust(1))),
        (None, bytes[2], None, None),
        (Some("lena@example.org"), bytes[3], Some(cust(1)), None),
    ] {
        s.put_states(vec![state(email, bytes)]).await.unwrap();
        assert_eq!(s.load_states(&[cust(1)]).await.unwrap()[0].state, bytes);
        assert_eq!(s.customer_by_email("lena@example.org").await.unwrap(), lena, "after {email:?}");
        assert_eq!(s.customer_by_email("mara@example.org").await.unwrap(), mara, "after {email:?}");
    }
    let view = s.trace(d.trace_id).await.unwrap().expect("trace exists");
    assert_eq!(view.records, trail, "the trail reads back whole and in order");
    assert_eq!(view.terminal, Some(TerminalState::Ignored("nothing to do".into())));
    assert_eq!(s.customer_audit(&cust(1), 2).await.unwrap(), vec![trail[2].clone(), trail[4].clone()]);
    assert_eq!(s.customer_audit(&cust(1), 10).await.unwrap().len(), 4);
    assert_eq!(s.customer_audit(&cust(9), 10).await.unwrap(), vec![trail[3].clone()]);
    assert!(s.trace(TraceId::new()).await.unwrap().is_none());
    // Backfill writes states directly; scanning pages through them in key order.
    let more: Vec<StoredState> = (2..6)
        .map(|i| StoredState { customer: cust(i), email: None, state: format!("{{\"n\":{i}}}").into_bytes() })
        .collect();
    s.put_states(more).await.unwrap();
    let page1 = s.scan_states(None, 3).await.unwrap();
    assert_eq!(page1.len(), 3);
    let page2 = s.scan_states(Some(page1[2].customer.clone()), 10).await.unwrap();
    assert_eq!(page1.len() + page2.len(), 5, "every state exactly once");
    assert!(page2.iter().all(|p| page1.iter().all(|q| q.customer != p.customer)));
    assert!(
        s.scan_text_states(None, 10).await.unwrap().is_empty(),
        "states written through the store are bytes"
    );
}

/// A processor reads batch N+1 while batch N's commit is in flight; N+1 commits only on top of N.
pub async fn pipelined_batches(s: Arc<dyn Store>) {
    for i in 0..5 {
        s.commit_delivery(delivery(&format!("q{i}"), None)).await.unwrap();
    }
    let first = s.pending_deliveries_after(None, 2).await.unwrap();
    let (a, b) = (first[0].seq, first[1].seq);
    let next = s.pending_deliveries_after(Some(b), 2).await.unwrap();
    assert_eq!(next.len(), 2);
    assert!(next.iter().all(|d| d.seq > b), "nothing at or below the cursor");
    let processed = |d: &StoredDelivery| ProcessOutcome {
        seq: d.seq,
        trace_id: Some(d.trace_id),
        status: Some(DeliveryStatus::Processed),
        terminal: Some(TerminalState::Ignored("test".into())),
        ..Default::default()
    };
    // Batch N+1 arrives before batch N has landed: refused, and nothing of it is written.
    let early = s.commit_processing_after(next.iter().map(processed).collect(), Some(b)).await;
    assert!(matches!(early, Err(StoreError::Conflict(_))), "{early:?}");
    assert_eq!(s.pending_deliveries(10).await.unwrap().len(), 5, "the refused batch wrote nothing");
    assert!(terminal_of(&*s, next[0].trace_id).await.unwrap().is_none());
    s.commit_processing_after(first.iter().map(processed).collect(), None).await.unwrap();
    s.commit_processing_after(next.iter().map(processed).collect(), Some(b)).await.unwrap();
    let rest = s.pending_deliveries(10).await.unwrap();
    assert_eq!(rest.len(), 1);
    assert!(rest[0].seq > next[1].seq);
    assert!(s.pending_deliveries_after(Some(rest[0].seq), 10).await.unwrap().is_empty());
    assert!(a < b);
}

fn outbox_item(trace: TraceId, c: u32, n: u32) -> NewOutboxItem {
    NewOutboxItem {
        trace_id: trace,
        customer: cust(c),
        destination: "klaviyo".into(),
        action_json: format!("{{\"n\":{n}}}"),
        origin_us: 0,
    }
}

pub async fn outbox_keeps_per_customer_order(s: Arc<dyn Store>) {
    let t = TraceId::new();
    s.commit_processing(vec![ProcessOutcome {
        trace_id: Some(t),
        outbox: vec![outbox_item(t, 1, 1), outbox_item(t, 1, 2), outbox_item(t, 2, 3)],
        ..Default::default()
    }])
    .await
    .unwrap();
    let far = i64::MAX / 2;
    let due = s.due_outbox(far, 10).await.unwrap();
    assert_eq!(due.len(), 2, "only the oldest item per customer is due");
    let first = due.iter().find(|i| i.customer == cust(1)).unwrap();
    assert_eq!(first.action_json, "{\"n\":1}");
    // A retry keeps the customer's queue blocked until the item succeeds.
    s.record_attempts(vec![AttemptRecord {
        item_id: first.id,
        trace_id: t,
        result: AttemptResult::RetryAt(far + 10),
        audit: audit(t, AuditStage::DeliveryAttempt),
        at_ms: 1,
    }])
    .await
    .unwrap();
    let due = s.due_outbox(far, 10).await.unwrap();
    assert!(due.iter().all(|i| i.customer != cust(1)), "customer 1 blocked behind its retrying item");
    s.record_attempts(vec![AttemptRecord {
        item_id: first.id,
        trace_id: t,
        result: AttemptResult::Delivered,
        audit: audit(t, AuditStage::DeliveryAttempt),
        at_ms: 2,
    }])
    .await
    .unwrap();
    let due = s.due_outbox(far, 10).await.unwrap();
    let next = due.iter().find(|i| i.customer == cust(1)).expect("second item now due");
    assert_eq!(next.action_json, "{\"n\":2}");
}

pub async fn outbox_queues_are_per_destination(s: Arc<dyn Store>) {
    let t = TraceId::new();
    let item =
        |c: u32, n: u32, dest: &str| NewOutboxItem { destination: dest.into(), ..outbox_item(t, c, n) };
    s.commit_processing(vec![ProcessOutcome {
        trace_id: Some(t),
        outbox: vec![
            item(1, 1, "klaviyo"),
            item(1, 2, "braze"),
            item(1, 3, "klaviyo"),
            item(2, 4, "braze"),
            item(1, 5, "braze"),
        ],
        ..Default::default()
    }])
    .await
    .unwrap();
    let far = i64::MAX / 2;
    let braze = s.due_outbox_for("braze", far, 10).await.unwrap();
    let got: Vec<_> = braze.iter().map(|i| i.action_json.as_str()).collect();
    assert_eq!(got, vec!["{\"n\":2}", "{\"n\":4}"], "the oldest braze item of each customer, in order");
    assert!(braze.iter().all(|i| i.destination == "braze"));
    assert_eq!(s.pending_for("braze").await.unwrap(), 3);
    assert_eq!(s.pending_for("klaviyo").await.unwrap(), 2);
    assert_eq!(s.pending_for("hubspot").await.unwrap(), 0);
    assert_eq!(s.pending_destinations().await.unwrap(), vec!["braze".to_string(), "klaviyo".to_string()]);
    // Klaviyo failing for customer 1 holds only Klaviyo's queue for that customer.
    let k = s.due_outbox_for("klaviyo", far, 10).await.unwrap();
    assert_eq!(k.len(), 1);
    s.record_attempts(vec![AttemptRecord {
        item_id: k[0].id,
        trace_id: t,
        result: AttemptResult::RetryAt(far + 10),
        audit: audit(t, AuditStage::DeliveryAttempt),
        at_ms: 1,
    }])
    .await
    .unwrap();
    assert!(s.due_outbox_for("klaviyo", far, 10).await.unwrap().is_empty(), "blocked behind its retry");
    let health = s.stats().await.unwrap().outbox_by_destination;
    let klaviyo = health.iter().find(|d| d.destination == "klaviyo").unwrap();
    assert_eq!((klaviyo.pending, klaviyo.retrying), (2, 1), "one of its two pending items is retrying");
    assert_eq!(s.due_outbox_for("braze", far, 10).await.unwrap().len(), 2, "braze is not held");
    s.record_attempts(vec![AttemptRecord {
        item_id: braze[0].id,
        trace_id: t,
        result: AttemptResult::Delivered,
        audit: audit(t, AuditStage::DeliveryAttempt),
        at_ms: 2,
    }])
    .await
    .unwrap();
    let braze = s.due_outbox_for("braze", far, 10).await.unwrap();
    let got: Vec<_> = braze.iter().map(|i| i.action_json.as_str()).collect();
    assert_eq!(got, vec!["{\"n\":4}", "{\"n\":5}"], "customer 1's next braze item is due");
    assert_eq!(s.pending_for("braze").await.unwrap(), 2);
}

pub async fn push_runs_are_kept_per_destination(s: Arc<dyn Store>) {
    assert_eq!(s.push_run("braze").await.unwrap(), None);
    let run = PushRun {
        destination: "braze".into(),
        selector: "segment:loyal".into(),
        started_at_ms: 1_000,
        updated_at_ms: 2_000,
        cursor: Some(cust(42)),
        pushed: 75,
        rejected: 2,
        deferred: 1,
        done: false,
    };
    s.save_push_run(run.clone()).await.unwrap();
    assert_eq!(s.push_run("braze").await.unwrap(), Some(run.clone()));
    assert_eq!(s.push_run("hubspot").await.unwrap(), None);
    let done = PushRun { cursor: None, done: true, pushed: 150, ..run };
    s.save_push_run(done.clone()).await.unwrap();
    assert_eq!(s.push_run("braze").await.unwrap(), Some(done), "replaced, not added");
}

pub async fn terminal_states_and_replay(s: Arc<dyn Store>) {
    let t = TraceId::new();
    s.commit_processing(vec![ProcessOutcome {
        trace_id: Some(t),
        outbox: vec![outbox_item(t, 5, 1), outbox_item(t, 6, 2)],
        ..Default::default()
    }])
    .await
    .unwrap();
    let due = s.due_outbox(i64::MAX / 2, 10).await.unwrap();
    assert_eq!(due.len(), 2);
    s.record_attempts(vec![AttemptRecord {
        item_id: due[0].id,
        trace_id: t,
        result: AttemptResult::Delivered,
        audit: audit(t, AuditStage::DeliveryAttempt),
        at_ms: 1,
    }])
    .await
    .unwrap();
    assert_eq!(terminal_of(&*s, t).await.unwrap(), None, "not final while an item is pending");
    s.record_attempts(vec![AttemptRecord {
        item_id: due[1].id,
        trace_id: t,
        result: AttemptResult::DeadLettered("503 after 8 attempts".into()),
        audit: audit(t, AuditStage::DeliveryAttempt),
        at_ms: 2,
    }])
    .await
    .unwrap();
    assert_eq!(
        terminal_of(&*s, t).await.unwrap(),
        Some(TerminalState::DeadLettered("503 after 8 attempts".into()))
    );
    assert_eq!(s.stats().await.unwrap().outbox_dead, 1);
    assert_eq!(s.requeue_dead_letters(DeadLetterFilter::default()).await.unwrap(), 1);
    assert_eq!(terminal_of(&*s, t).await.unwrap(), None, "replay reopens the trace");
    let due = s.due_outbox(i64::MAX / 2, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    s.record_attempts(vec![AttemptRecord {
        item_id: due[0].id,
        trace_id: t,
        result: AttemptResult::Delivered,
        audit: audit(t, AuditStage::DeliveryAttempt),
        at_ms: 3,
    }])
    .await
    .unwrap();
    assert_eq!(terminal_of(&*s, t).await.unwrap(), Some(TerminalState::Delivered));
    let view = s.trace(t).await.unwrap().unwrap();
    assert_eq!(view.records.last().unwrap().stage, AuditStage::Terminal);
}

/// Audit records that belong to no delivery (a model refit's) read back by their trace, which has no
/// terminal state and counts as no delivery: every delivery still ends in exactly one terminal state.
pub async fn appended_audit_belongs_to_no_delivery(s: Arc<dyn Store>) {
    // One delivery processed to its terminal state, one still pending.
    for i in 0..2 {
        s.commit_delivery(delivery(&format!("r{i}"), None)).await.unwrap();
    }
    let d = s.pending_deliveries(1).await.unwrap().remove(0);
    s.commit_processing(vec![ProcessOutcome {
        seq: d.seq,
        trace_id: Some(d.trace_id),
        status: Some(DeliveryStatus::Processed),
        audit: vec![audit(d.trace_id, AuditStage::Received)],
        terminal: Some(TerminalState::Ignored("nothing to do".into())),
        ..Default::default()
    }])
    .await
    .unwrap();
    let before = s.stats().await.unwrap();
    let backlog = s.backlog().await.unwrap();
    let customer_trail = s.customer_audit(&cust(1), 10).await.unwrap();

    let refit = TraceId::new();
    let at =
        |secs: i64| time::OffsetDateTime::from_unix_timestamp(1_700_000_000 + secs).expect("valid instant");
    let record = |secs, detail| AuditRecord {
        trace_id: refit,
        customer: None,
        stage: AuditStage::ModelRefit,
        at: at(secs),
        detail,
    };
    let records = vec![
        record(0, serde_json::json!({ "version": "bgnbd-7", "family": "bgnbd", "saved": true })),
        record(
            1,
            serde_json::json!({ "version": "bgnbd-7", "activated": false, "reason": "holdout quality dropped" }),
        ),
    ];
    s.append_audit(records.clone()).await.unwrap();
    let view = s.trace(refit).await.unwrap().expect("a trace of appended records is found");
    assert_eq!(view.trace_id, refit);
    assert_eq!(view.records, records, "appended records read back whole and in order");
    assert_eq!(view.terminal, None, "a refit is not a delivery: no terminal state");

    let after = s.stats().await.unwrap();
    assert_eq!(after.deliveries, before.deliveries, "appended records add no delivery");
    assert_eq!(after.pending_deliveries, before.pending_deliveries);
    assert_eq!(after.terminal_by_state, before.terminal_by_state, "nor a terminal state");
    assert_eq!(after, before, "nothing counted changes");
    assert_eq!(s.backlog().await.unwrap(), backlog);
    assert_eq!(s.pending_deliveries(10).await.unwrap().len(), 1);
    assert_eq!(s.customer_audit(&cust(1), 10).await.unwrap(), customer_trail, "records without a customer");
    assert_eq!(
        s.trace(d.trace_id).await.unwrap().unwrap().terminal,
        Some(TerminalState::Ignored("nothing to do".into()))
    );

    // A terminal state is recorded with its delivery only: a batch carrying one is refused whole.
    let other = TraceId::new();
    let refused = s
        .append_audit(vec![
            AuditRecord { trace_id: other, ..record(2, serde_json::json!({ "version": "bgnbd-8" })) },
            AuditRecord { trace_id: other, stage: AuditStage::Terminal, ..record(2, serde_json::json!({})) },
        ])
        .await;
    assert!(refused.is_err(), "{refused:?}");
    assert!(s.trace(other).await.unwrap().is_none(), "a refused batch writes nothing");
    s.append_audit(Vec::new()).await.unwrap();
    assert_eq!(s.stats().await.unwrap(), before);
}

pub async fn timers_fire_and_cancel(s: Arc<dyn Store>) {
    let t = TraceId::new();
    let timer = |tok: &str, cart: &str, due: i64| TimerSpec {
        checkout_token: tok.into(),
        cart_token: Some(cart.into()),
        customer: cust(1),
        due_at_ms: due,
        payload_json: format!("{{\"token\":\"{tok}\"}}"),
        origin_trace: t,
    };
    s.commit_processing(vec![ProcessOutcome {
        set_timers: vec![timer("a", "ca", 100), timer("b", "cb", 100), timer("c", "cc", 500)],
        ..Default::default()
    }])
    .await
    .unwrap();
    // Moving a timer replaces it; cancelling by cart token removes it.
    s.commit_processing(vec![ProcessOutcome {
        set_timers: vec![timer("a", "ca", 1_000)],
        cancel_timers: vec!["cb".into()],
        ..Default::default()
    }])
    .await
    .unwrap();
    assert_eq!(s.fire_due_timers(200, 10).await.unwrap(), 0);
    assert_eq!(s.fire_due_timers(600, 10).await.unwrap(), 1, "only c is due");
    let pending = s.pending_deliveries(10).await.unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(pending[0].source, "timer");
    assert_eq!(pending[0].body, b"{\"token\":\"c\"}");
    assert_eq!(s.fire_due_timers(600, 10).await.unwrap(), 0, "a timer fires once");
    assert_eq!(s.stats().await.unwrap().timers, 1);
}

pub async fn quarantine_and_replay(s: Arc<dyn Store>) {
    s.commit_delivery(delivery("q1", None)).await.unwrap();
    let d = s.pending_deliveries(1).await.unwrap().remove(0);
    s.commit_processing(vec![ProcessOutcome {
        seq: d.seq,
        trace_id: Some(d.trace_id),
        status: Some(DeliveryStatus::Quarantined),
        status_reason: Some("bad json".into()),
        terminal: Some(TerminalState::Quarantined("bad json".into())),
        ..Default::default()
    }])
    .await
    .unwrap();
    assert_eq!(s.stats().await.unwrap().quarantined, 1);
    assert!(s.pending_deliveries(10).await.unwrap().is_empty());
    assert_eq!(s.requeue_quarantined(Some(TraceId::new())).await.unwrap(), 0);
    assert_eq!(s.requeue_quarantined(Some(d.trace_id)).await.unwrap(), 1);
    let again = s.pending_deliveries(10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].body, d.body, "kept verbatim");
    assert_eq!(terminal_of(&*s, d.trace_id).await.unwrap(), None);
}

pub async fn registry(s: Arc<dyn Store>) {
    assert!(s.active_model_version().await.unwrap().is_none());
    for (i, id) in ["v1", "v2"].iter().enumerate() {
        s.save_model_version(ModelVersion {
            id: id.to_string(),
            family: "bgnbd".into(),
            created_at_ms: i as i64,
            active: false,
            body: serde_json::json!({"r": 0.24}),
        })
        .await
        .unwrap();
    }
    assert!(matches!(s.activate_model_version("nope").await, Err(StoreError::NotFound(_))));
    s.activate_model_version("v1").await.unwrap();
    s.activate_model_version("v2").await.unwrap();
    let versions = s.model_versions().await.unwrap();
    assert_eq!(versions[0].id, "v2", "newest first");
    assert_eq!(versions.iter().filter(|v| v.active).count(), 1, "exactly one active");
    assert_eq!(s.active_model_version().await.unwrap().unwrap().id, "v2");
    s.activate_model_version("v1").await.unwrap();
    assert_eq!(s.active_model_version().await.unwrap().unwrap().id, "v1", "roll back");
    // Each kind has its own active version: a decision family's activation leaves BTYD's alone.
    for (i, (id, family)) in
        [("p1", "propensity"), ("p2", "propensity"), ("m1", "pareto_nbd")].iter().enumerate()
    {
        s.save_model_version(ModelVersion {
            id: id.to_string(),
            family: family.to_string(),
            created_at_ms: 10 + i as i64,
            active: false,
            body: serde_json::json!({}),
        })
        .await
        .unwrap();
    }
    s.activate_model_version("p1").await.unwrap();
    s.activate_model_version("p2").await.unwrap();
    assert_eq!(s.active_model_version().await.unwrap().unwrap().id, "v1", "BTYD untouched");
    assert_eq!(s.active_model_version_of("propensity").await.unwrap().unwrap().id, "p2");
    s.activate_model_version("m1").await.unwrap();
    assert_eq!(s.active_model_version().await.unwrap().unwrap().id, "m1", "BTYD families share a kind");
    assert_eq!(s.active_model_version_of("propensity").await.unwrap().unwrap().id, "p2");
    assert!(s.active_model_version_of("send_time").await.unwrap().is_none());
}

pub async fn import_is_idempotent(s: Arc<dyn Store>) {
    let rows: Vec<ImportedTransaction> = (0..5)
        .map(|i| ImportedTransaction {
            customer_id: format!("c{}", i % 2),
            order_id: format!("o{i}"),
            day: 10_000 + i,
            amount: "12.30".into(),
            source: "csv".into(),
        })
        .collect();
    assert_eq!(s.import_transactions(rows.clone()).await.unwrap(), 5);
    assert_eq!(s.import_transactions(rows).await.unwrap(), 0);
    let all = s.transactions().await.unwrap();
    assert_eq!(all.len(), 5);
    assert_eq!(all[0].amount, "12.30");
}

/// API tokens: created under unique names, found by hash until revoked, listed without their hashes.
pub async fn api_tokens(s: Arc<dyn Store>) {
    // Hashes as the caller computes them (SHA-256, hex); the store only compares them.
    let (h1, h2, h3) = ("a1".repeat(32), "b2".repeat(32), "c3".repeat(32));
    assert!(s.list_tokens().await.unwrap().is_empty());
    assert_eq!(s.token_by_hash(&h1).await.unwrap(), None);
    let ci = s.create_token("ci", "viewer", &h1).await.unwrap();
    let alice = s.create_token("alice", "admin", &h2).await.unwrap();
    assert_ne!(ci, alice);

    // A name is unique: refused with a clear error, and nothing is written.
    match s.create_token("ci", "admin", &h3).await {
        Err(StoreError::Conflict(msg)) => assert!(msg.contains("`ci`") && msg.contains("exists"), "{msg}"),
        other => panic!("duplicate name: expected a conflict, got {other:?}"),
    }
    assert_eq!(s.token_by_hash(&h3).await.unwrap(), None, "a refused token is not stored");
    // The same hash twice (a token generated twice) is refused too.
    assert!(matches!(s.create_token("bob", "admin", &h1).await, Err(StoreError::Conflict(_))));

    let found = s.token_by_hash(&h1).await.unwrap().expect("found by its hash");
    assert_eq!((found.id, found.name.as_str(), found.role.as_str()), (ci, "ci", "viewer"));
    assert_eq!((found.revoked_at_ms, found.last_used_at_ms), (None, None));
    assert!(found.created_at_ms > 0);
    assert_eq!(s.token_by_hash(&h2).await.unwrap().unwrap().name, "alice");

    // Last use is kept to the minute.
    s.touch_token(ci, 1_000_000).await.unwrap();
    s.touch_token(ci, 1_030_000).await.unwrap();
    assert_eq!(s.token_by_hash(&h1).await.unwrap().unwrap().last_used_at_ms, Some(1_000_000));
    s.touch_token(ci, 1_060_000).await.unwrap();
    assert_eq!(s.token_by_hash(&h1).await.unwrap().unwrap().last_used_at_ms, Some(1_060_000));

    // The list names every token, oldest first, and carries nothing a hash could be read from.
    let list = s.list_tokens().await.unwrap();
    assert_eq!(list.iter().map(|t| t.name.as_str()).collect::<Vec<_>>(), ["ci", "alice"]);
    let listed = serde_json::to_string(&list).unwrap();
    assert!(!listed.contains(&h1) && !listed.contains(&h2), "{listed}");

    // Revoking makes the lookup fail; by name or by id; again changes nothing.
    let revoked = s.revoke_token(TokenRef::Name("ci".into())).await.unwrap();
    let at = revoked.revoked_at_ms.expect("revoked");
    assert_eq!(s.token_by_hash(&h1).await.unwrap(), None, "a revoked token is not found");
    assert_eq!(s.revoke_token(TokenRef::Id(ci)).await.unwrap().revoked_at_ms, Some(at), "idempotent");
    assert!(s.token_by_hash(&h2).await.unwrap().is_some(), "other tokens are untouched");
    assert!(matches!(s.revoke_token(TokenRef::Name("nobody".into())).await, Err(StoreError::NotFound(_))));
    assert!(matches!(s.revoke_token(TokenRef::Id(9_999)).await, Err(StoreError::NotFound(_))));
    s.revoke_token(TokenRef::Id(alice)).await.unwrap();
    assert_eq!(s.token_by_hash(&h2).await.unwrap(), None);
    let list = s.list_tokens().await.unwrap();
    assert_eq!(list.len(), 2, "revoked tokens stay listed");
    assert!(list.iter().all(|t| t.revoked_at_ms.is_some()));

    // A revoked token's name is not reused (the audit trail attributes actions by name).
    match s.create_token("ci", "viewer", &h3).await {
        Err(StoreError::Conflict(msg)) => assert!(msg.contains("revoked"), "{msg}"),
        other => panic!("reusing a revoked name: expected a conflict, got {other:?}"),
    }
}

fn approval(trace: TraceId, flow: &str, c: u32, n: u32, expires_at_ms: i64) -> NewApproval {
    NewApproval {
        trace_id: trace,
        flow: flow.into(),
        flow_version: "flows-test".into(),
        customer: cust(c),
        actions_json: format!("[{{\"destination\":\"klaviyo\",\"action\":{{\"n\":{n}}}}}]"),
        created_at_ms: 1_000,
        expires_at_ms,
    }
}

/// Decisions waiting for approval: stored with their delivery (no terminal state yet), listed, approved
/// (their actions enter the outbox once, behind what the customer has pending), rejected or expired (never
/// sent); a decided item cannot be decided again; every transition is audited under the item's trace, and
/// the trace settles once nothing of it is pending.
pub async fn approvals_queue(s: Arc<dyn Store>) {
    let now = 1_000_000;
    let (t1, t2) = (TraceId::new(), TraceId::new());
    s.commit_processing(vec![
        ProcessOutcome {
            trace_id: Some(t1),
            approvals: vec![
                approval(t1, "winback", 1, 1, now + 60_000),
                approval(t1, "welcome", 1, 2, now + 60_000),
            ],
            ..Default::default()
        },
        ProcessOutcome {
            trace_id: Some(t2),
            outbox: vec![outbox_item(t2, 2, 7)],
            approvals: vec![approval(t2, "winback", 2, 3, now - 1)],
            ..Default::default()
        },
    ])
    .await
    .unwrap();
    assert_eq!(terminal_of(&*s, t1).await.unwrap(), None, "a trace waiting for approval is not final");
    let all = s.list_approvals(ApprovalFilter::default()).await.unwrap();
    assert_eq!(all.len(), 3);
    assert!(all.iter().all(|a| a.status == ApprovalStatus::Pending && a.decided_by.is_none()));
    assert_eq!(all[0].actions, serde_json::json!([{"destination": "klaviyo", "action": {"n": 1}}]));
    let winback = ApprovalFilter { flow: Some("winback".into()), ..Default::default() };
    assert_eq!(s.list_approvals(winback.clone()).await.unwrap().len(), 2);
    assert_eq!(s.approval_count("winback").await.unwrap(), 2);
    assert_eq!(s.approval_count("nothing").await.unwrap(), 0);
    let (a1, a2, a3) = (all[0].id, all[1].id, all[2].id);
    // Nothing of an approval item is in the outbox before it is approved.
    let due = s.due_outbox(i64::MAX / 2, 10).await.unwrap();
    assert_eq!(due.len(), 1, "{due:?}");
    // t2's live item is delivered: t2 still waits for its approval.
    s.record_attempts(vec![AttemptRecord {
        item_id: due[0].id,
        trace_id: t2,
        result: AttemptResult::Delivered,
        audit: audit(t2, AuditStage::DeliveryAttempt),
        at_ms: now,
    }])
    .await
    .unwrap();
    assert_eq!(terminal_of(&*s, t2).await.unwrap(), None, "not final while an approval is pending");

    // A pending item's actions can be brought up to date before it is approved; what it enqueues is then the
    // replacement.
    let fresh = r#"[{"destination":"klaviyo","action":{"n":1,"fresh":true}}]"#.to_string();
    assert_eq!(s.replace_approval_actions(vec![(a1, fresh), (999_999, "[]".into())]).await.unwrap(), 1);
    let r = s
        .decide_approvals(
            ApprovalTarget::Ids(vec![a1, 999_999, a1]),
            ApprovalDecision::Approve,
            "token:mia",
            None,
            now,
        )
        .await
        .unwrap();
    // An id named twice in one call is decided (and its actions enqueued) once.
    assert_eq!(
        r,
        vec![
            (a1, DecideResult::Decided),
            (999_999, DecideResult::NotFound),
            (a1, DecideResult::AlreadyDecided(ApprovalStatus::Approved))
        ]
    );
    let due = s.due_outbox(i64::MAX / 2, 10).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!(due[0].trace_id, t1);
    assert_eq!(due[0].customer, cust(1));
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&due[0].action_json).unwrap(),
        serde_json::json!({"n": 1, "fresh": true})
    );
    // A decided item's actions are not replaced.
    assert_eq!(s.replace_approval_actions(vec![(a1, "[]".into())]).await.unwrap(), 0);
    // Decided once: approving or rejecting again changes nothing and enqueues nothing.
    for d in [ApprovalDecision::Approve, ApprovalDecision::Reject] {
        let again = s.decide_approvals(ApprovalTarget::Ids(vec![a1]), d, "cli:ops", None, now).await.unwrap();
        assert_eq!(again, vec![(a1, DecideResult::AlreadyDecided(ApprovalStatus::Approved))]);
    }
    assert_eq!(s.backlog().await.unwrap().1, 1, "approved once: one outbox item");
    let r = s
        .decide_approvals(
            ApprovalTarget::Ids(vec![a2]),
            ApprovalDecision::Reject,
            "cli:ops",
            Some("off-brand".into()),
            now,
        )
        .await
        .unwrap();
    assert_eq!(r, vec![(a2, DecideResult::Decided)]);
    assert_eq!(s.backlog().await.unwrap().1, 1, "a rejected item enqueues nothing");
    assert_eq!(terminal_of(&*s, t1).await.unwrap(), None, "t1's approved action is still pending");
    s.record_attempts(vec![AttemptRecord {
        item_id: due[0].id,
        trace_id: t1,
        result: AttemptResult::Delivered,
        audit: audit(t1, AuditStage::DeliveryAttempt),
        at_ms: now + 1,
    }])
    .await
    .unwrap();
    assert_eq!(terminal_of(&*s, t1).await.unwrap(), Some(TerminalState::Delivered));
    let view = s.trace(t1).await.unwrap().unwrap();
    let approvals: Vec<&AuditRecord> =
        view.records.iter().filter(|r| r.stage == AuditStage::Approval).collect();
    assert_eq!(approvals.len(), 2, "{:?}", view.records);
    assert_eq!(approvals[0].detail["status"], "approved");
    assert_eq!(approvals[0].detail["by"], "token:mia");
    assert_eq!(approvals[1].detail["status"], "rejected");
    assert_eq!(approvals[1].detail["reason"], "off-brand");
    assert_eq!(view.records.iter().filter(|r| r.stage == AuditStage::Terminal).count(), 1);

    // a3 expired a millisecond before now: the sweep expires it, and its trace settles (its live item was
    // delivered).
    assert_eq!(s.expire_approvals(now).await.unwrap(), 1);
    assert_eq!(s.expire_approvals(now).await.unwrap(), 0);
    assert_eq!(terminal_of(&*s, t2).await.unwrap(), Some(TerminalState::Delivered));
    let r = s
        .decide_approvals(ApprovalTarget::Ids(vec![a3]), ApprovalDecision::Approve, "cli:ops", None, now)
        .await
        .unwrap();
    assert_eq!(r, vec![(a3, DecideResult::Expired)]);
    assert_eq!(s.backlog().await.unwrap().1, 0, "an expired item is never sent");
    let listed = s
        .list_approvals(ApprovalFilter { status: Some(ApprovalStatus::Expired), ..Default::default() })
        .await
        .unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].id, a3);
    assert_eq!(listed[0].decided_by.as_deref(), Some("system"));
    assert_eq!(s.approval_count("winback").await.unwrap(), 2, "decided items still count toward first_n");

    // A trace whose only decision waits, then is rejected: ignored, with the approval's outcome as reason.
    let t3 = TraceId::new();
    s.commit_processing(vec![ProcessOutcome {
        trace_id: Some(t3),
        approvals: vec![approval(t3, "winback", 3, 4, now + 60_000)],
        ..Default::default()
    }])
    .await
    .unwrap();
    let r = s
        .decide_approvals(
            ApprovalTarget::AllPending { flow: Some("winback".into()) },
            ApprovalDecision::Reject,
            "cli:ops",
            None,
            now,
        )
        .await
        .unwrap();
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].1, DecideResult::Decided);
    assert_eq!(terminal_of(&*s, t3).await.unwrap(), Some(TerminalState::Ignored("approval rejected".into())));
}

/// Approving every pending item of a flow in bulk: one transaction, each item's actions enqueued once.
pub async fn approvals_in_bulk(s: Arc<dyn Store>) {
    let now = 1_000_000;
    let outcomes: Vec<ProcessOutcome> = (0..500)
        .map(|i| {
            let t = TraceId::new();
            ProcessOutcome {
                trace_id: Some(t),
                approvals: vec![approval(t, if i % 5 == 0 { "other" } else { "bulk" }, i, i, now + 60_000)],
                ..Default::default()
            }
        })
        .collect();
    s.commit_processing(outcomes).await.unwrap();
    let r = s
        .decide_approvals(
            ApprovalTarget::AllPending { flow: Some("bulk".into()) },
            ApprovalDecision::Approve,
            "token:mia",
            None,
            now,
        )
        .await
        .unwrap();
    assert_eq!(r.len(), 400);
    assert!(r.iter().all(|x| x.1 == DecideResult::Decided));
    assert_eq!(s.backlog().await.unwrap().1, 400);
    let again = s
        .decide_approvals(
            ApprovalTarget::AllPending { flow: Some("bulk".into()) },
            ApprovalDecision::Approve,
            "token:mia",
            None,
            now,
        )
        .await
        .unwrap();
    assert!(again.is_empty(), "nothing pending is left to approve");
    let pending = ApprovalFilter { status: Some(ApprovalStatus::Pending), ..Default::default() };
    assert_eq!(s.list_approvals(pending.clone()).await.unwrap().len(), 100, "the other flow's items wait");
    // A mass expiry, more items than one write job takes: every due one expires, none twice.
    let due: Vec<ProcessOutcome> = (0..2_345)
        .map(|i| {
            let t = TraceId::new();
            ProcessOutcome {
                trace_id: Some(t),
                approvals: vec![approval(t, "stale", 10_000 + i, i, now + 1_000 + i64::from(i % 7))],
                ..Default::default()
            }
        })
        .collect();
    s.commit_processing(due).await.unwrap();
    assert_eq!(s.expire_approvals(now + 2_000).await.unwrap(), 2_345);
    assert_eq!(s.expire_approvals(now + 2_000).await.unwrap(), 0);
    assert_eq!(s.list_approvals(pending).await.unwrap().len(), 100, "items not yet due stay");
}

/// Decisions of measured flows land with their batch and read back per flow and period, oldest first; a
/// batch that does not land leaves none.
/// Offers enter the log in the processing commit (once, however often the delivery is reprocessed); an
/// order within the window settles the customer's open offers; expiry settles the rest at zero; every
/// settlement has its own sequence number, read back in order.
pub async fn offer_log_settles_each_offer_once(s: Arc<dyn Store>) {
    for i in 0..3 {
        s.commit_delivery(delivery(&format!("of{i}"), None)).await.unwrap();
    }
    let pending = s.pending_deliveries(10).await.unwrap();
    let offer = |id: &str, c: u32, decided: i64, end: i64, explored: bool| NewOffer {
        id: id.into(),
        flow: "offers".into(),
        customer: cust(c),
        arm: "pct_10".into(),
        propensity: 0.25,
        explored,
        context: vec![1.0, 0.5, -2.0],
        decided_at_ms: decided,
        window_end_ms: end,
    };
    let first = ProcessOutcome {
        seq: pending[0].seq,
        trace_id: Some(pending[0].trace_id),
        status: Some(DeliveryStatus::Processed),
        terminal: Some(TerminalState::Ignored("offers".into())),
        offers: vec![offer("a", 1, 1_000, 5_000, false), offer("b", 2, 1_000, 2_000, true)],
        ..Default::default()
    };
    s.commit_processing(vec![first.clone()]).await.unwrap();
    // The same offers again (a replay): still one row each.
    s.commit_processing(vec![ProcessOutcome {
        seq: pending[1].seq,
        trace_id: Some(pending[1].trace_id),
        ..first
    }])
    .await
    .unwrap();
    let all = s.offers_of_flow("offers").await.unwrap();
    assert_eq!(all.len(), 2);
    assert_eq!(all[0].context, vec![1.0, 0.5, -2.0]);
    assert!(all.iter().all(|o| o.settled_at_ms.is_none() && o.settle_seq.is_none()));
    // An order of customer 1 at 3 000 settles offer a; an order of customer 2 after b's window settles nothing.
    s.commit_processing(vec![ProcessOutcome {
        seq: pending[2].seq,
        trace_id: Some(pending[2].trace_id),
        status: Some(DeliveryStatus::Processed),
        terminal: Some(TerminalState::Ignored("order".into())),
        offer_settlements: vec![
            OfferSettlement { customer: cust(1), order_at_ms: 3_000, value: 80.0 },
            OfferSettlement { customer: cust(1), order_at_ms: 3_500, value: 50.0 },
            OfferSettlement { customer: cust(2), order_at_ms: 2_500, value: 99.0 },
        ],
        ..Default::default()
    }])
    .await
    .unwrap();
    let settled = s.settled_offers_after(0, 10).await.unwrap();
    assert_eq!(settled.len(), 1, "{settled:?}");
    assert_eq!(
        (settled[0].id.as_str(), settled[0].outcome_value, settled[0].settle_seq),
        ("a", Some(80.0), Some(1))
    );
    // Expiry settles b at zero, once.
    assert_eq!(s.expire_offers(1_500).await.unwrap(), 0, "b's window is still open");
    assert_eq!(s.expire_offers(2_001).await.unwrap(), 1);
    assert_eq!(s.expire_offers(9_000).await.unwrap(), 0);
    let after = s.settled_offers_after(1, 10).await.unwrap();
    assert_eq!(after.len(), 1);
    assert_eq!(
        (after[0].id.as_str(), after[0].outcome_value, after[0].settle_seq),
        ("b", Some(0.0), Some(2))
    );
    assert!(after[0].explored);
    assert!(s.settled_offers_after(2, 10).await.unwrap().is_empty());
}

pub async fn flow_decisions_for_reports(s: Arc<dyn Store>) {
    let mut seqs = Vec::new();
    for i in 0..2 {
        s.commit_delivery(delivery(&format!("fd{i}"), None)).await.unwrap();
    }
    for d in s.pending_deliveries(10).await.unwrap() {
        seqs.push((d.seq, d.trace_id));
    }
    let decision =
        |flow: &str, c: u32, at_ms: i64, status: &str, matched: bool, baseline: Option<bool>, trace| {
            FlowDecision {
                flow: flow.into(),
                flow_version: "v1".into(),
                customer: cust(c),
                at_ms,
                status: status.into(),
                matched,
                baseline,
                trace_id: trace,
                arm: (status == "live").then(|| "pct_10".to_string()),
            }
        };
    let (seq0, trace0) = seqs[0];
    let first = ProcessOutcome {
        seq: seq0,
        trace_id: Some(trace0),
        status: Some(DeliveryStatus::Processed),
        terminal: Some(TerminalState::Ignored("measured only".into())),
        decisions: vec![
            decision("winback", 2, 2_000, "held_out", true, Some(false), trace0),
            decision("winback", 1, 1_000, "live", true, Some(true), trace0),
            decision("vip", 1, 1_000, "not_matched", false, None, trace0),
        ],
        ..Default::default()
    };
    s.commit_processing(vec![first]).await.unwrap();
    // A batch computed after a delivery that is not processed does not land, decisions included.
    let (seq1, trace1) = seqs[1];
    let refused = ProcessOutcome {
        seq: seq1,
        trace_id: Some(trace1),
        status: Some(DeliveryStatus::Processed),
        decisions: vec![decision("winback", 3, 1_500, "live", true, Some(true), trace1)],
        ..Default::default()
    };
    assert!(matches!(
        s.commit_processing_after(vec![refused], Some(seq1 + 1000)).await,
        Err(StoreError::Conflict(_))
    ));
    let all = s.flow_decisions("winback", 0, i64::MAX).await.unwrap();
    assert_eq!(all.len(), 2, "{all:?}");
    assert_eq!(all[0], decision("winback", 1, 1_000, "live", true, Some(true), trace0), "oldest first");
    assert_eq!(all[1].status, "held_out");
    assert_eq!(all[1].baseline, Some(false));
    let vip = s.flow_decisions("vip", 0, i64::MAX).await.unwrap();
    assert_eq!((vip.len(), vip[0].baseline, vip[0].matched), (1, None, false));
    assert_eq!(
        s.flow_decisions("winback", 1_001, 2_001).await.unwrap().len(),
        1,
        "since inclusive, until exclusive"
    );
    assert_eq!(s.flow_decisions("winback", 0, 1_000).await.unwrap().len(), 0);
    assert!(s.flow_decisions("other", 0, i64::MAX).await.unwrap().is_empty());
}

pub async fn schedule_runs(s: Arc<dyn Store>) {
    assert!(s.schedule_runs().await.unwrap().is_empty());
    let run = |flow: &str, fire_at_ms, cursor: Option<u32>, pending: Option<u32>, done| ScheduleRun {
        flow: flow.into(),
        schedule: "0 9 * * 1".into(),
        fire_at_ms,
        cursor: cursor.map(cust),
        pending_through: pending.map(cust),
        done,
    };
    s.save_schedule_run(run("weekly", 1_000, None, Some(3), false)).await.unwrap();
    s.save_schedule_run(run("daily", 2_000, None, None, true)).await.unwrap();
    assert_eq!(
        s.schedule_runs().await.unwrap(),
        [run("daily", 2_000, None, None, true), run("weekly", 1_000, None, Some(3), false)],
        "by flow name"
    );
    // Saving replaces the flow's record: the chunk landed, the cursor moves on.
    s.save_schedule_run(run("weekly", 1_000, Some(3), None, false)).await.unwrap();
    s.save_schedule_run(run("weekly", 1_000, Some(3), Some(6), false)).await.unwrap();
    let weekly = s.schedule_runs().await.unwrap().into_iter().find(|r| r.flow == "weekly").unwrap();
    assert_eq!(weekly, run("weekly", 1_000, Some(3), Some(6), false));
    s.delete_schedule_run("weekly").await.unwrap();
    s.delete_schedule_run("never_there").await.unwrap();
    assert_eq!(s.schedule_runs().await.unwrap(), [run("daily", 2_000, None, None, true)]);

    // A chunk committed again under its key (a restart between the commit and the cursor's move) is a
    // duplicate of the first: one delivery per chunk.
    let chunk = |trace| NewDelivery {
        trace_id: trace,
        source: "schedule".into(),
        topic: "daily".into(),
        shop: None,
        webhook_id: None,
        event_id: None,
        received_at_ms: 2_000,
        headers_json: "{}".into(),
        body: br#"{"customers":["shopify:1"]}"#.to_vec(),
        dedupe_keys: vec!["schedule:daily:2000:None".into()],
    };
    let first = TraceId::new();
    assert!(matches!(s.commit_delivery(chunk(first)).await.unwrap(), CommitResult::Committed { .. }));
    match s.commit_delivery(chunk(TraceId::new())).await.unwrap() {
        CommitResult::Duplicate { original, .. } => assert_eq!(original, first),
        other => panic!("expected a duplicate, got {other:?}"),
    }
    assert_eq!(s.pending_deliveries(10).await.unwrap().len(), 1);
}

/// Dead letters are replayed per destination (and per trace), leaving the others dead.
pub async fn dead_letters_replay_by_destination(s: Arc<dyn Store>) {
    let (t1, t2) = (TraceId::new(), TraceId::new());
    let item =
        |t: TraceId, c: u32, dest: &str| NewOutboxItem { destination: dest.into(), ..outbox_item(t, c, c) };
    s.commit_processing(vec![
        ProcessOutcome { trace_id: Some(t1), outbox: vec![item(t1, 1, "klaviyo")], ..Default::default() },
        ProcessOutcome { trace_id: Some(t2), outbox: vec![item(t2, 2, "webhook:crm")], ..Default::default() },
    ])
    .await
    .unwrap();
    let due = s.due_outbox(i64::MAX / 2, 10).await.unwrap();
    assert_eq!(due.len(), 2);
    let dead = |i: &OutboxItem| AttemptRecord {
        item_id: i.id,
        trace_id: i.trace_id,
        result: AttemptResult::DeadLettered("down".into()),
        audit: audit(i.trace_id, AuditStage::DeliveryAttempt),
        at_ms: 5,
    };
    s.record_attempts(due.iter().map(dead).collect()).await.unwrap();
    let stats = s.stats().await.unwrap();
    assert_eq!(stats.outbox_dead, 2);
    let per: Vec<(String, u64, u64)> =
        stats.outbox_by_destination.iter().map(|d| (d.destination.clone(), d.pending, d.dead)).collect();
    assert_eq!(per, vec![("klaviyo".into(), 0, 1), ("webhook:crm".into(), 0, 1)], "each destination apart");
    assert_eq!(stats.outbox_by_destination[0].last_error.as_deref(), Some("down"), "the reason is shown");
    let only = |d: &str| DeadLetterFilter { destination: Some(d.into()), ..Default::default() };
    assert_eq!(s.requeue_dead_letters(only("slack")).await.unwrap(), 0);
    assert_eq!(
        s.requeue_dead_letters(DeadLetterFilter { since_ms: Some(i64::MAX / 2), ..only("webhook:crm") })
            .await
            .unwrap(),
        0,
        "enqueued before the instant"
    );
    assert_eq!(s.requeue_dead_letters(only("webhook:crm")).await.unwrap(), 1);
    let again = s.due_outbox(i64::MAX / 2, 10).await.unwrap();
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].destination, "webhook:crm");
    assert_eq!(terminal_of(&*s, t2).await.unwrap(), None, "its trace is open again");
    assert!(terminal_of(&*s, t1).await.unwrap().is_some(), "the other destination's dead letter stays");
    let stats = s.stats().await.unwrap();
    assert_eq!(stats.outbox_dead, 1);
    assert_eq!(stats.outbox_pending, 1);
    assert_eq!((stats.outbox_by_destination[1].pending, stats.outbox_by_destination[1].dead), (1, 0));
}

/// Dead letters are listed newest first a page at a time, by destination or trace, with what each holds;
/// items that are not dead are not listed, and a replayed one leaves the list. Quarantined deliveries are
/// listed newest first with their log entry's source, topic and arrival.
pub async fn dead_letters_and_quarantine_are_listed_newest_first(s: Arc<dyn Store>) {
    let traces: Vec<TraceId> = (0..5).map(|_| TraceId::new()).collect();
    let dest = |i: usize| if i.is_multiple_of(2) { "klaviyo" } else { "webhook:crm" };
    let outcomes = traces
        .iter()
        .enumerate()
        .map(|(i, t)| ProcessOutcome {
            trace_id: Some(*t),
            outbox: vec![NewOutboxItem {
                destination: dest(i).into(),
                ..outbox_item(*t, i as u32, i as u32)
            }],
            ..Default::default()
        })
        .collect();
    s.commit_processing(outcomes).await.unwrap();
    assert!(s.dead_letters(DeadLetterFilter::default(), None, 10).await.unwrap().is_empty(), "none dead yet");
    let due = s.due_outbox(i64::MAX / 2, 10).await.unwrap();
    assert_eq!(due.len(), 5);
    // The last item is delivered, not dead: it is never listed.
    let settle = |i: &OutboxItem, result: AttemptResult| AttemptRecord {
        item_id: i.id,
        trace_id: i.trace_id,
        result,
        audit: audit(i.trace_id, AuditStage::DeliveryAttempt),
        at_ms: 5,
    };
    let mut attempts: Vec<AttemptRecord> = due[..4]
        .iter()
        .map(|i| settle(i, AttemptResult::DeadLettered(format!("down for {}", i.action_json))))
        .collect();
    attempts.push(settle(&due[4], AttemptResult::Delivered));
    s.record_attempts(attempts).await.unwrap();

    let all = s.dead_letters(DeadLetterFilter::default(), None, 10).await.unwrap();
    let ids: Vec<i64> = all.iter().map(|d| d.id).collect();
    let mut expected: Vec<i64> = due[..4].iter().map(|i| i.id).collect();
    expected.reverse();
    assert_eq!(ids, expected, "dead letters: newest first, the delivered one left out");
    let newest = &all[0];
    assert_eq!(
        (newest.trace_id, newest.customer_id.as_str(), newest.destination.as_str()),
        (traces[3], "shopify:3", "webhook:crm")
    );
    assert_eq!((newest.action_json.as_str(), newest.attempts), (r#"{"n":3}"#, 1));
    assert_eq!(newest.last_error.as_deref(), Some(r#"down for {"n":3}"#));
    assert!(newest.created_at_ms > 0, "dead letters: when it was enqueued");

    // Pages: each starts below the last id of the one before, and the last is short.
    let first = s.dead_letters(DeadLetterFilter::default(), None, 3).await.unwrap();
    assert_eq!(first.iter().map(|d| d.id).collect::<Vec<_>>(), expected[..3]);
    let next = s.dead_letters(DeadLetterFilter::default(), Some(first[2].id), 3).await.unwrap();
    assert_eq!(next.iter().map(|d| d.id).collect::<Vec<_>>(), expected[3..]);
    let past = s.dead_letters(DeadLetterFilter::default(), Some(expected[3]), 3).await.unwrap();
    assert!(past.is_empty(), "dead letters: nothing older than the oldest");

    // Filters: by destination, by trace, by both, by enqueue time.
    let only = |d: &str| DeadLetterFilter { destination: Some(d.into()), ..Default::default() };
    let crm = s.dead_letters(only("webhook:crm"), None, 10).await.unwrap();
    assert_eq!(crm.iter().map(|d| d.trace_id).collect::<Vec<_>>(), vec![traces[3], traces[1]]);
    let crm_older = s.dead_letters(only("webhook:crm"), Some(crm[0].id), 10).await.unwrap();
    assert_eq!(crm_older.iter().map(|d| d.trace_id).collect::<Vec<_>>(), vec![traces[1]]);
    assert!(s.dead_letters(only("slack"), None, 10).await.unwrap().is_empty());
    let one = s.dead_letters(DeadLetterFilter::trace(traces[2]), None, 10).await.unwrap();
    assert_eq!((one.len(), one[0].destination.as_str()), (1, "klaviyo"));
    let both = DeadLetterFilter { trace: Some(traces[2]), ..only("webhook:crm") };
    assert!(s.dead_letters(both, None, 10).await.unwrap().is_empty(), "dead letters: every condition holds");
    assert!(s.dead_letters(DeadLetterFilter::trace(traces[4]), None, 10).await.unwrap().is_empty());
    let later = DeadLetterFilter { since_ms: Some(i64::MAX / 2), ..Default::default() };
    assert!(s.dead_letters(later, None, 10).await.unwrap().is_empty(), "dead letters: enqueued before");

    // A replayed dead letter is pending again and leaves the list; the others stay.
    assert_eq!(s.requeue_dead_letters(DeadLetterFilter::trace(traces[1])).await.unwrap(), 1);
    let left = s.dead_letters(DeadLetterFilter::default(), None, 10).await.unwrap();
    assert_eq!(left.iter().map(|d| d.trace_id).collect::<Vec<_>>(), vec![traces[3], traces[2], traces[0]]);
    assert_eq!(s.stats().await.unwrap().outbox_pending, 1);

    // Quarantine: three deliveries, two quarantined, listed newest first with their log entries.
    assert!(s.quarantined(None, 10).await.unwrap().is_empty());
    for (i, topic) in ["orders/create", "orders/updated", "checkouts/create"].into_iter().enumerate() {
        let d = NewDelivery {
            topic: topic.into(),
            received_at_ms: 1_000 + i as i64,
            ..delivery(&format!("ql{i}"), None)
        };
        s.commit_delivery(d).await.unwrap();
    }
    let pending = s.pending_deliveries(10).await.unwrap();
    assert_eq!(pending.len(), 3);
    let outcome = |d: &StoredDelivery, quarantined: bool| ProcessOutcome {
        seq: d.seq,
        trace_id: Some(d.trace_id),
        status: Some(if quarantined { DeliveryStatus::Quarantined } else { DeliveryStatus::Processed }),
        status_reason: quarantined.then(|| format!("bad json in {}", d.topic)),
        terminal: Some(if quarantined {
            TerminalState::Quarantined("bad json".into())
        } else {
            TerminalState::Ignored("nothing to do".into())
        }),
        ..Default::default()
    };
    s.commit_processing(vec![
        outcome(&pending[0], true),
        outcome(&pending[1], false),
        outcome(&pending[2], true),
    ])
    .await
    .unwrap();
    let q = s.quarantined(None, 10).await.unwrap();
    assert_eq!(q.iter().map(|x| x.seq).collect::<Vec<_>>(), vec![pending[2].seq, pending[0].seq]);
    assert_eq!(
        (q[0].trace_id, q[0].source.as_str(), q[0].topic.as_str(), q[0].received_at_ms),
        (pending[2].trace_id, "shopify", "checkouts/create", 1_002)
    );
    assert_eq!(q[0].reason.as_deref(), Some("bad json in checkouts/create"));
    let page = s.quarantined(None, 1).await.unwrap();
    assert_eq!(page.iter().map(|x| x.seq).collect::<Vec<_>>(), vec![pending[2].seq]);
    let older = s.quarantined(Some(page[0].seq), 1).await.unwrap();
    assert_eq!(older.iter().map(|x| x.seq).collect::<Vec<_>>(), vec![pending[0].seq]);
    assert!(s.quarantined(Some(pending[0].seq), 10).await.unwrap().is_empty());
    // A replayed delivery leaves the list.
    assert_eq!(s.requeue_quarantined(Some(pending[2].trace_id)).await.unwrap(), 1);
    let q = s.quarantined(None, 10).await.unwrap();
    assert_eq!(q.iter().map(|x| x.seq).collect::<Vec<_>>(), vec![pending[0].seq]);
}

/// Fetch jobs commit with their notification's processing, come due, retry, settle, dead-letter with
/// their reason and terminal state, and are replayed.
pub async fn fetch_jobs_are_durable_settled_and_replayed(s: Arc<dyn Store>) {
    let d = delivery("fj-1", None);
    let trace = d.trace_id;
    let CommitResult::Committed { seq } = s.commit_delivery(d).await.expect("commit") else { panic!("dup") };
    let job = |n: u32| NewFetchJob {
        trace_id: trace,
        source: "bigcommerce".into(),
        job: format!("{{\"resource\":\"order\",\"id\":\"{n}\"}}"),
        due_at_ms: 1_000,
    };
    let outcome = ProcessOutcome {
        seq,
        trace_id: Some(trace),
        status: Some(DeliveryStatus::Processed),
        audit: vec![audit(trace, AuditStage::Normalized)],
        fetch_jobs: vec![job(1), job(2)],
        ..Default::default()
    };
    s.commit_processing(vec![outcome]).await.expect("processing");
    assert!(s.pending_deliveries(10).await.unwrap().is_empty(), "fetch_jobs: the notification is processed");
    assert!(
        crate::terminal_of(s.as_ref(), trace).await.unwrap().is_none(),
        "fetch_jobs: the trace stays open"
    );
    assert!(s.due_fetch_jobs(999, 10).await.unwrap().is_empty(), "fetch_jobs: not due before their time");
    // A fetched answer is stored under its notification's trace.
    let mut fetched = delivery("fj-answer", None);
    fetched.trace_id = trace;
    fetched.dedupe_keys = vec!["bigcommerce:abc:fetch:1".into()];
    assert!(
        matches!(s.commit_delivery(fetched).await.unwrap(), CommitResult::Committed { .. }),
        "fetch_jobs: two deliveries may share a trace"
    );
    let pending = s.pending_deliveries(10).await.unwrap();
    assert_eq!(pending.iter().map(|d| d.trace_id).collect::<Vec<_>>(), vec![trace]);
    let due = s.due_fetch_jobs(1_000, 10).await.unwrap();
    assert_eq!(due.len(), 2, "fetch_jobs: both due");
    assert_eq!(
        (due[0].source.as_str(), due[0].status.as_str(), due[0].attempts),
        ("bigcommerce", "pending", 0)
    );
    assert!(due[0].job.contains("\"1\""));

    // A retry moves the job later; done takes it off the queue.
    let settle =
        |id, outcome, terminal| FetchSettlement { id, outcome, audit: vec![], terminal, at_ms: 1_500 };
    s.settle_fetch_job(settle(due[0].id, FetchSettle::RetryAt { at_ms: 5_000, reason: "429".into() }, None))
        .await
        .unwrap();
    let due_now = s.due_fetch_jobs(2_000, 10).await.unwrap();
    assert_eq!(
        due_now.iter().map(|j| j.id).collect::<Vec<_>>(),
        vec![due[1].id],
        "fetch_jobs: retry is later"
    );
    let later = s.due_fetch_jobs(5_000, 10).await.unwrap();
    assert_eq!(later.len(), 2);
    let retried = later.iter().find(|j| j.id == due[0].id).unwrap();
    assert_eq!((retried.attempts, retried.last_error.as_deref()), (1, Some("429")));
    s.settle_fetch_job(settle(due[1].id, FetchSettle::Done, None)).await.unwrap();

    // Dead-lettered with its reason and a terminal state, counted, then replayed.
    s.settle_fetch_job(FetchSettlement {
        id: due[0].id,
        outcome: FetchSettle::Dead { reason: "401 refused".into() },
        audit: vec![audit(trace, AuditStage::Terminal)],
        terminal: Some(TerminalState::DeadLettered("401 refused".into())),
        at_ms: 6_000,
    })
    .await
    .unwrap();
    assert!(s.due_fetch_jobs(i64::MAX, 10).await.unwrap().is_empty(), "fetch_jobs: dead jobs are not due");
    let stats = s.stats().await.unwrap();
    assert_eq!((stats.fetch_jobs_pending, stats.fetch_jobs_dead), (0, 1), "fetch_jobs: stats");
    assert!(
        crate::terminal_of(s.as_ref(), trace).await.unwrap().is_some(),
        "fetch_jobs: dead letter settles"
    );
    let jobs = s.fetch_jobs_of(trace).await.unwrap();
    assert_eq!(jobs.iter().map(|j| j.status.as_str()).collect::<Vec<_>>(), ["dead", "done"]);
    assert_eq!(s.requeue_fetch_jobs(Some(TraceId::new())).await.unwrap(), 0, "fetch_jobs: another trace");
    assert_eq!(s.requeue_fetch_jobs(Some(trace)).await.unwrap(), 1);
    assert!(crate::terminal_of(s.as_ref(), trace).await.unwrap().is_none(), "fetch_jobs: replay reopens");
    let again = s.due_fetch_jobs(i64::MAX, 10).await.unwrap();
    assert_eq!((again.len(), again[0].attempts), (1, 0));
    assert!(s.settle_fetch_job(settle(9_999, FetchSettle::Done, None)).await.is_err(), "unknown job");
}

/// Processes one delivery of `customer` (email `email`) that pushed an item to `destination`, settled as
/// delivered; returns its trace.
async fn person_with_history(
    s: &Arc<dyn Store>,
    webhook: &str,
    customer: CustomerId,
    email: &str,
    destination: &str,
) -> TraceId {
    let mut d = delivery(webhook, None);
    d.body = format!("{{\"email\":\"{email}\"}}").into_bytes();
    let trace = d.trace_id;
    s.commit_delivery(d).await.unwrap();
    let pending = s.pending_deliveries(10).await.unwrap();
    let seq = pending.iter().find(|p| p.trace_id == trace).expect("pending").seq;
    let mut a = audit(trace, AuditStage::Decided);
    a.customer = Some(customer.clone());
    a.detail = serde_json::json!({"email_seen": email});
    s.commit_processing(vec![ProcessOutcome {
        seq,
        trace_id: Some(trace),
        status: Some(DeliveryStatus::Processed),
        states: vec![StoredState {
            customer: customer.clone(),
            email: Some(email.into()),
            state: format!("{{\"email\":\"{email}\"}}").into_bytes(),
        }],
        audit: vec![a],
        outbox: vec![NewOutboxItem {
            trace_id: trace,
            customer: customer.clone(),
            destination: destination.into(),
            action_json: format!("{{\"email\":\"{email}\"}}"),
            origin_us: 0,
        }],
        decisions: vec![FlowDecision {
            flow: "f".into(),
            flow_version: "v".into(),
            customer: customer.clone(),
            at_ms: 1,
            status: "live".into(),
            matched: true,
            baseline: None,
            trace_id: trace,
            arm: Some("free_shipping".into()),
        }],
        offers: vec![NewOffer {
            id: format!("{trace}:f"),
            flow: "f".into(),
            customer: customer.clone(),
            arm: "free_shipping".into(),
            propensity: 0.5,
            explored: false,
            context: vec![1.0],
            decided_at_ms: 1,
            window_end_ms: 10,
        }],
        aliases: vec![NewAlias {
            alias: format!("anon:{webhook}"),
            customer: customer.clone(),
            at_ms: 1,
            trace_id: Some(trace),
        }],
        ..Default::default()
    }])
    .await
    .unwrap();
    let item = s.due_outbox_for(destination, i64::MAX, 10).await.unwrap();
    let item = item.iter().find(|i| i.customer == customer).expect("due item");
    s.record_attempts(vec![AttemptRecord {
        item_id: item.id,
        trace_id: trace,
        result: AttemptResult::Delivered,
        audit: AuditRecord { customer: Some(customer.clone()), ..audit(trace, AuditStage::DeliveryAttempt) },
        at_ms: 2,
    }])
    .await
    .unwrap();
    trace
}

fn erase_job(customer: CustomerId, email: &str) -> NewPrivacyJob {
    NewPrivacyJob {
        kind: PrivacyJobKind::Erase,
        customers: vec![customer],
        email: Some(email.into()),
        phone: None,
        pseudonym: "ps_customer_0123456789abcdef01234567".into(),
        reference: None,
        requested_by: "test".into(),
        trace_id: TraceId::new(),
        at_ms: 10,
        destinations: vec!["braze".into()],
    }
}

pub async fn erasure_removes_the_person_and_only_them(s: Arc<dyn Store>) {
    let (ana, ben) = (cust(11), cust(12));
    let ana_trace = person_with_history(&s, "e1", ana.clone(), "ana@example.org", "klaviyo").await;
    let ben_trace = person_with_history(&s, "e2", ben.clone(), "ben@example.org", "klaviyo").await;
    s.import_transactions(vec![ImportedTransaction {
        customer_id: ana.to_string(),
        order_id: "o1".into(),
        day: 1,
        amount: "1.00".into(),
        source: "csv".into(),
    }])
    .await
    .unwrap();

    let preview = s.preview_erasure(vec![ana.clone()], None).await.unwrap();
    assert_eq!((preview.states, preview.outbox_items, preview.transactions), (1, 1, 1), "erasure preview");
    assert_eq!(preview.destinations, vec!["klaviyo".to_string()], "preview: destinations reached");
    assert!(
        !s.load_states(std::slice::from_ref(&ana)).await.unwrap().is_empty(),
        "a preview changes nothing"
    );

    // The erasure, found by email only.
    let mut job = erase_job(ana.clone(), "Ana@Example.org");
    job.customers.clear();
    let id = s.submit_privacy_job(job).await.unwrap();
    assert!(s.load_states(std::slice::from_ref(&ana)).await.unwrap().is_empty(), "erasure: state gone");
    assert!(s.customer_audit(&ana, 100).await.unwrap().is_empty(), "erasure: audit gone");
    assert_eq!(s.customer_by_email("ana@example.org").await.unwrap(), None, "erasure: email key gone");
    assert!(s.aliases_of(&ana).await.unwrap().is_empty(), "erasure: aliases gone");
    assert_eq!(s.aliases_of(&ben).await.unwrap().len(), 1, "others keep their aliases");
    let export = s.export_customer(vec![ana.clone()]).await.unwrap();
    assert!(export.states.is_empty() && export.outbox.is_empty() && export.transactions.is_empty());
    assert!(export.flow_decisions.is_empty(), "erasure: flow decisions gone");
    // The other person keeps everything.
    assert_eq!(s.load_states(std::slice::from_ref(&ben)).await.unwrap().len(), 1, "others keep their state");
    assert!(!s.customer_audit(&ben, 100).await.unwrap().is_empty(), "others keep their audit");
    assert_eq!(s.trace(ben_trace).await.unwrap().unwrap().terminal, Some(TerminalState::Delivered));

    let jobs = s.privacy_jobs(true, None).await.unwrap();
    assert_eq!(jobs.len(), 1, "the job is pending");
    let job = &jobs[0];
    assert_eq!(job.id, id);
    assert_eq!(job.customers, vec![ana.clone()], "the job found the person by email");
    assert_eq!(job.email.as_deref(), Some("ana@example.org"));
    let dests: Vec<&str> = job.destinations.iter().map(|d| d.destination.as_str()).collect();
    assert_eq!(dests, ["braze", "klaviyo"], "destinations: reached through the outbox, and those given");
    assert!(job.destinations.iter().all(|d| d.status == ErasureStatus::Pending));
    // Not finished while anything is open.
    assert!(matches!(s.finish_privacy_job(id, serde_json::json!({})).await, Err(StoreError::Conflict(_))));

    // The log step: the delivery's body goes; a redelivery of the same webhook is still a duplicate.
    assert_eq!(s.erase_from_log(id).await.unwrap(), 1, "the person's delivery emptied");
    assert_eq!(s.erase_from_log(id).await.unwrap(), 0, "the log step is safe to repeat");
    assert!(matches!(s.commit_delivery(delivery("e1", None)).await.unwrap(), CommitResult::Duplicate { .. }));
    assert!(
        s.trace(ana_trace).await.unwrap().is_none_or(|t| t.records.is_empty()),
        "no record of the trace left"
    );

    for (d, status) in [("braze", ErasureStatus::Done), ("klaviyo", ErasureStatus::Failed)] {
        s.record_erasure_destination(
            id,
            ErasureDestination {
                destination: d.into(),
                status,
                attempts: 1,
                next_attempt_at_ms: 0,
                detail: Some("answered".into()),
                updated_at_ms: 20,
            },
        )
        .await
        .unwrap();
    }
    s.finish_privacy_job(id, serde_json::json!({"files": 0})).await.unwrap();
    assert!(s.privacy_jobs(true, None).await.unwrap().is_empty(), "nothing pending");
    let done = s.privacy_jobs(false, Some("ps_customer_0123456789abcdef01234567".into())).await.unwrap();
    assert_eq!(done.len(), 1);
    assert!(done[0].done && done[0].log_erased);
    assert!(done[0].customers.is_empty() && done[0].email.is_none(), "identifiers dropped when done");
    assert_eq!(done[0].summary["deliveries"], 1);
    assert_eq!(done[0].summary["files"], 0);
    assert_eq!(
        done[0].destinations.iter().map(|d| d.status).collect::<Vec<_>>(),
        [ErasureStatus::Done, ErasureStatus::Failed]
    );
    // The fact of erasure stays, naming the pseudonym only.
    let trail = s.trace(done[0].trace_id).await.unwrap().expect("the erasure's own record");
    assert_eq!(trail.records.len(), 1);
    assert_eq!(trail.records[0].stage, AuditStage::Erasure);
    assert!(trail.records[0].customer.is_none());
    assert_eq!(trail.records[0].detail["pseudonym"], "ps_customer_0123456789abcdef01234567");
    assert!(!trail.records[0].detail.to_string().contains("ana@"), "the record names no email");

    // A later event for the same person starts from nothing.
    assert!(s.load_states(std::slice::from_ref(&ana)).await.unwrap().is_empty());
}

pub async fn export_holds_only_the_person(s: Arc<dyn Store>) {
    let (ana, ben) = (cust(21), cust(22));
    person_with_history(&s, "x1", ana.clone(), "ana@example.org", "klaviyo").await;
    person_with_history(&s, "x2", ben.clone(), "ben@example.org", "braze").await;
    let export = s.export_customer(vec![ana.clone()]).await.unwrap();
    assert_eq!(export.states.len(), 1);
    assert_eq!(export.outbox.len(), 1);
    assert_eq!(export.outbox[0]["status"], "delivered");
    assert_eq!(export.flow_decisions.len(), 1);
    assert!(!export.audit.is_empty());
    assert!(export.audit.iter().all(|r| r.customer.as_ref() == Some(&ana)), "only the person's audit");
    let text = serde_json::to_string(&export).unwrap();
    assert!(text.contains("ana@example.org"));
    assert!(!text.contains("ben@example.org") && !text.contains("shopify:22"), "no one else's data");
    // An export job is recorded and touches nothing.
    let mut job = erase_job(ana.clone(), "ana@example.org");
    job.kind = PrivacyJobKind::Export;
    let id = s.submit_privacy_job(job).await.unwrap();
    assert_eq!(s.load_states(std::slice::from_ref(&ana)).await.unwrap().len(), 1, "an export erases nothing");
    s.finish_privacy_job(id, serde_json::json!({"file": "x.json"})).await.unwrap();
    assert!(s.privacy_jobs(true, None).await.unwrap().is_empty());
}

pub async fn aliases_are_written_with_processing_and_states_merged_away(s: Arc<dyn Store>) {
    let known = cust(21);
    let anon: CustomerId = "anon:v-1".parse().unwrap();
    let state = |c: &CustomerId| StoredState { customer: c.clone(), email: None, state: b"{}".to_vec() };
    for (webhook, outcome) in [
        ("a1", ProcessOutcome { states: vec![state(&anon)], ..Default::default() }),
        (
            "a2",
            ProcessOutcome {
                states: vec![state(&known)],
                deleted_states: vec![anon.clone()],
                aliases: vec![
                    NewAlias { alias: anon.to_string(), customer: known.clone(), at_ms: 5, trace_id: None },
                    NewAlias {
                        alias: "email:00112233aabbccdd".into(),
                        customer: known.clone(),
                        at_ms: 5,
                        trace_id: None,
                    },
                ],
                ..Default::default()
            },
        ),
    ] {
        let d = delivery(webhook, None);
        let trace = d.trace_id;
        s.commit_delivery(d).await.unwrap();
        let seq = s.pending_deliveries(10).await.unwrap().iter().find(|p| p.trace_id == trace).unwrap().seq;
        let o =
            ProcessOutcome { seq, trace_id: Some(trace), status: Some(DeliveryStatus::Processed), ..outcome };
        s.commit_processing(vec![o]).await.unwrap();
    }
    assert!(
        s.load_states(std::slice::from_ref(&anon)).await.unwrap().is_empty(),
        "aliases: merged state gone"
    );
    assert_eq!(s.load_states(std::slice::from_ref(&known)).await.unwrap().len(), 1);
    let found = s
        .resolve_aliases(&[anon.to_string(), "anon:unknown".into(), "email:00112233aabbccdd".into()])
        .await
        .unwrap();
    assert_eq!(found.len(), 2, "aliases: the known ones resolve");
    assert!(found.iter().all(|a| a.customer == known));
    let of: Vec<String> = s.aliases_of(&known).await.unwrap().into_iter().map(|a| a.alias).collect();
    assert_eq!(of, ["anon:v-1", "email:00112233aabbccdd"], "aliases: by customer, sorted");
}

/// `store_generated_copy`: pending items holding a copy request get their copy once (an item filled, decided
/// or delivered keeps what it has), the audit records join the decision's trace, and the month's usage adds
/// up; `approvals_awaiting_copy` lists only pending items that still wait for copy.
pub async fn generated_copy_is_stored_once_with_its_audit_and_usage(s: Arc<dyn Store>) {
    let request = format!(
        r#"{{"kind":"trigger_event","properties":{{"{}":{{}}}}}}"#,
        nudge_model::COPY_REQUEST_PROPERTY
    );
    let filled = r#"{"kind":"trigger_event","properties":{"ai_copy":{"subject":"Hi"}}}"#.to_string();
    let (t1, t2) = (TraceId::new(), TraceId::new());
    let mut waiting = outbox_item(t1, 1, 1);
    waiting.action_json = request.clone();
    let plain = outbox_item(t1, 2, 2);
    let mut pending_approval = approval(t2, "winback", 3, 3, i64::MAX / 4);
    pending_approval.actions_json = format!(r#"[{{"destination":"klaviyo","action":{request}}}]"#);
    let other_approval = approval(t2, "winback", 4, 4, i64::MAX / 4);
    s.commit_processing(vec![
        ProcessOutcome { trace_id: Some(t1), outbox: vec![waiting, plain], ..Default::default() },
        ProcessOutcome {
            trace_id: Some(t2),
            approvals: vec![pending_approval, other_approval],
            ..Default::default()
        },
    ])
    .await
    .unwrap();
    let awaiting = s.approvals_awaiting_copy(10).await.unwrap();
    assert_eq!(awaiting.len(), 1, "only the item holding a copy request");
    assert_eq!(awaiting[0].customer, cust(3));
    let due = s.due_outbox(i64::MAX / 2, 10).await.unwrap();
    let (w, p) = (
        due.iter().find(|i| i.customer == cust(1)).unwrap().id,
        due.iter().find(|i| i.customer == cust(2)).unwrap().id,
    );
    let approval_fill = format!(r#"[{{"destination":"klaviyo","action":{filled}}}]"#);
    let mut record = audit(t1, AuditStage::CopyGenerated);
    record.detail = serde_json::json!({"prompt": "winback", "version": 2, "fallback": false});
    let month = "2026-12";
    let fill = CopyFill {
        outbox: vec![(w, filled.clone()), (p, filled.clone())],
        approvals: vec![(awaiting[0].id, approval_fill.clone())],
        audit: vec![record],
        usage: Some(LlmUsage { month: month.into(), tokens: 120, generations: 2, fallbacks: 1 }),
    };
    let stored = s.store_generated_copy(fill.clone()).await.unwrap();
    assert_eq!(stored, CopyStored { outbox: 1, approvals: 1 }, "the plain item holds no request");
    let due = s.due_outbox(i64::MAX / 2, 10).await.unwrap();
    assert_eq!(due.iter().find(|i| i.id == w).unwrap().action_json, filled);
    assert_eq!(due.iter().find(|i| i.id == p).unwrap().action_json, "{\"n\":2}");
    assert!(s.approvals_awaiting_copy(10).await.unwrap().is_empty());
    let trail = s.trace(t1).await.unwrap().unwrap();
    assert!(trail.records.iter().any(|r| r.stage == AuditStage::CopyGenerated && r.detail["version"] == 2));
    // Stored once: the same fill again replaces nothing, but usage still adds up.
    let again = s.store_generated_copy(fill).await.unwrap();
    assert_eq!(again, CopyStored::default());
    let usage = s.llm_usage(month).await.unwrap();
    assert_eq!((usage.tokens, usage.generations, usage.fallbacks), (240, 4, 2));
    assert_eq!(s.llm_usage("2026-11").await.unwrap().tokens, 0);
    // A terminal record is refused and nothing is written.
    let bad = CopyFill {
        audit: vec![audit(t1, AuditStage::Terminal)],
        usage: Some(LlmUsage { month: month.into(), tokens: 1, generations: 1, fallbacks: 0 }),
        ..Default::default()
    };
    assert!(s.store_generated_copy(bad).await.is_err());
    assert_eq!(s.llm_usage(month).await.unwrap().tokens, 240);
}

/// Catalogue records are written with processing; the newest `updated_at` wins (an equal one takes the
/// later commit), and the catalogue reads whole or by ids.
pub async fn products_keep_the_newest_record(s: Arc<dyn Store>) {
    let product = |id: &str, at: i64, title: &str| StoredProduct {
        id: id.into(),
        source: "shopify".into(),
        updated_at_ms: at,
        record: format!(r#"{{"id":"{id}","title":"{title}"}}"#),
    };
    let commit = |products: Vec<StoredProduct>| {
        let s = s.clone();
        async move {
            s.commit_processing(vec![ProcessOutcome {
                trace_id: Some(TraceId::new()),
                terminal: Some(TerminalState::Ignored("catalogue".into())),
                products,
                ..Default::default()
            }])
            .await
            .unwrap();
        }
    };
    assert!(s.products(None).await.unwrap().is_empty());
    commit(vec![product("p2", 2_000, "Mug v2"), product("p1", 1_000, "Tee")]).await;
    // An older record of p2 arrives late: ignored. A newer p1 replaces the stored one.
    commit(vec![product("p2", 1_500, "Mug v1"), product("p1", 3_000, "Tee v2")]).await;
    let all = s.products(None).await.unwrap();
    assert_eq!(
        all.iter().map(|p| (p.id.as_str(), p.updated_at_ms)).collect::<Vec<_>>(),
        [("p1", 3_000), ("p2", 2_000)]
    );
    assert!(all[0].record.contains("Tee v2") && all[1].record.contains("Mug v2"));
    // The same instant again (a second update in the same second): the later commit wins.
    commit(vec![product("p2", 2_000, "Mug v2b")]).await;
    let some = s.products(Some(vec!["p2".into(), "nope".into(), "p2".into()])).await.unwrap();
    assert_eq!(some.len(), 1);
    assert!(some[0].record.contains("Mug v2b"));
    assert!(s.products(Some(Vec::new())).await.unwrap().is_empty());
}

/// `delivery_ticks`: the log's tail in order from a sequence, or from about a receipt time.
pub async fn delivery_ticks_follow_the_log(s: Arc<dyn Store>) {
    assert!(s.delivery_ticks(None, 0, 10).await.unwrap().is_empty(), "ticks: an empty log has none");
    let batch: Vec<NewDelivery> = (0..40)
        .map(|i| {
            let mut d = delivery(&format!("t{i}"), None);
            d.received_at_ms = 60_000 * i;
            d.topic = if i % 2 == 0 { "orders/create".into() } else { "checkouts/update".into() };
            d
        })
        .collect();
    s.commit_deliveries(batch).await.unwrap();
    let all = s.delivery_ticks(None, 0, 100).await.unwrap();
    assert_eq!(all.len(), 40, "ticks: every delivery from the start");
    assert!(all.windows(2).all(|w| w[0].seq < w[1].seq), "ticks: in log order");
    assert_eq!((all[1].source.as_str(), all[1].topic.as_str()), ("shopify", "checkouts/update"));
    let recent = s.delivery_ticks(None, 60_000 * 30, 100).await.unwrap();
    assert_eq!(recent.len(), 10, "ticks: from the first received at or after the time");
    assert_eq!(recent[0].received_at_ms, 60_000 * 30);
    let after = s.delivery_ticks(Some(all[37].seq), 0, 100).await.unwrap();
    assert_eq!(
        after.iter().map(|t| t.seq).collect::<Vec<_>>(),
        vec![all[38].seq, all[39].seq],
        "ticks: after a seq"
    );
    assert_eq!(s.delivery_ticks(Some(all[0].seq), 0, 5).await.unwrap().len(), 5, "ticks: the limit holds");
    assert!(
        s.delivery_ticks(None, 60_000 * 50, 100).await.unwrap().is_empty(),
        "ticks: none after the newest"
    );
}

/// `pending_after_heads`: behind each customer's oldest item, their next due items for that destination,
/// in order, at most `depth`; nothing of another destination, nothing not yet due.
pub async fn pending_after_heads_look_behind_each_customer(s: Arc<dyn Store>) {
    let t = TraceId::new();
    let item =
        |c: u32, n: u32, dest: &str| NewOutboxItem { destination: dest.into(), ..outbox_item(t, c, n) };
    let outbox = vec![
        item(1, 1, "klaviyo"),
        item(1, 2, "klaviyo"),
        item(2, 3, "klaviyo"),
        item(1, 4, "braze"),
        item(1, 5, "klaviyo"),
        item(1, 6, "klaviyo"),
        item(2, 7, "klaviyo"),
    ];
    s.commit_processing(vec![ProcessOutcome { trace_id: Some(t), outbox, ..Default::default() }])
        .await
        .unwrap();
    let far = i64::MAX / 2;
    let heads: Vec<(CustomerId, i64)> = s
        .due_outbox_for("klaviyo", far, 10)
        .await
        .unwrap()
        .iter()
        .map(|i| (i.customer.clone(), i.id))
        .collect();
    assert_eq!(heads.len(), 2, "look-ahead: one head per customer");
    let behind = s.pending_after_heads("klaviyo", heads.clone(), far, 2).await.unwrap();
    let of = |c: u32| -> Vec<&str> {
        behind.iter().filter(|i| i.customer == cust(c)).map(|i| i.action_json.as_str()).collect()
    };
    assert_eq!(of(1), vec!["{\"n\":2}", "{\"n\":5}"], "look-ahead: customer 1's next two, in order");
    assert_eq!(of(2), vec!["{\"n\":7}"], "look-ahead: customer 2's next one");
    assert!(behind.iter().all(|i| i.destination == "klaviyo"), "look-ahead: one destination only");
    let first = behind.iter().position(|i| i.customer == cust(1)).unwrap();
    assert!(
        behind[first..first + 2].iter().all(|i| i.customer == cust(1)),
        "look-ahead: a customer's items together"
    );
    assert!(
        s.pending_after_heads("klaviyo", heads.clone(), far, 0).await.unwrap().is_empty(),
        "look-ahead: depth 0"
    );
    assert!(
        s.pending_after_heads("klaviyo", Vec::new(), far, 5).await.unwrap().is_empty(),
        "look-ahead: no heads"
    );
    assert!(
        s.pending_after_heads("klaviyo", heads, 0, 5).await.unwrap().is_empty(),
        "look-ahead: nothing due yet"
    );
}
