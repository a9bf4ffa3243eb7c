//! Conformance checks of the outbox.

use super::*;

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
