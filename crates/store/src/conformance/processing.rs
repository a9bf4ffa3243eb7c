//! Conformance checks of the processing commit.

use super::*;

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

/// A batch one of whose deliveries was processed already is refused whole: none of the states, outbox
/// items, audit records or timer cancellations of its other deliveries is written. Without that delivery
/// the same outcome goes through. For a log that keeps each delivery's status, shared by nodes (PostgreSQL);
/// the embedded log has one processor, which commits a batch over what it processed before.
pub async fn a_refused_batch_writes_nothing(s: Arc<dyn Store>) {
    for i in 0..2 {
        s.commit_delivery(delivery(&format!("r{i}"), None)).await.unwrap();
    }
    let ds = s.pending_deliveries(10).await.unwrap();
    let (a, b) = (&ds[0], &ds[1]);
    let timer = TimerSpec {
        checkout_token: "co".into(),
        cart_token: Some("cart".into()),
        customer: cust(3),
        due_at_ms: 100,
        payload_json: "{}".into(),
        origin_trace: TraceId::new(),
    };
    s.commit_processing(vec![ProcessOutcome { set_timers: vec![timer], ..Default::default() }])
        .await
        .unwrap();
    let processed = |d: &StoredDelivery| ProcessOutcome {
        seq: d.seq,
        trace_id: Some(d.trace_id),
        status: Some(DeliveryStatus::Processed),
        ..Default::default()
    };
    s.commit_processing(vec![processed(a)]).await.unwrap();
    let mut record = audit(b.trace_id, AuditStage::Decided);
    record.customer = Some(cust(3));
    let full = ProcessOutcome {
        states: vec![StoredState { customer: cust(3), email: None, state: b"s".to_vec() }],
        outbox: vec![outbox_item(b.trace_id, 3, 1)],
        audit: vec![record],
        cancel_timers: vec!["cart".into()],
        ..processed(b)
    };
    let again = s.commit_processing(vec![processed(a), full.clone()]).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    assert_eq!(s.pending_deliveries(10).await.unwrap().len(), 1, "the other delivery is still pending");
    assert!(s.load_states(&[cust(3)]).await.unwrap().is_empty(), "no state written");
    assert!(s.due_outbox(i64::MAX / 2, 10).await.unwrap().is_empty(), "no item queued");
    assert!(s.customer_audit(&cust(3), 10).await.unwrap().is_empty(), "no audit record");
    assert_eq!(s.stats().await.unwrap().timers, 1, "the timer was not cancelled");
    s.commit_processing(vec![full]).await.unwrap();
    assert!(s.pending_deliveries(10).await.unwrap().is_empty());
    assert_eq!(s.load_states(&[cust(3)]).await.unwrap().len(), 1);
    assert_eq!(s.due_outbox(i64::MAX / 2, 10).await.unwrap().len(), 1);
    assert_eq!(s.customer_audit(&cust(3), 10).await.unwrap().len(), 1);
    assert_eq!(s.stats().await.unwrap().timers, 0, "cancelled with the batch");
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
