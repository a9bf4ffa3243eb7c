//! Conformance checks of retention.

use super::*;

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn at_ms(ms: i64) -> time::OffsetDateTime {
    time::OffsetDateTime::from_unix_timestamp_nanos(ms as i128 * 1_000_000).expect("valid instant")
}

/// Finished work goes, oldest first and at most `limit` rows a call; what waits (pending deliveries and
/// items, quarantined deliveries, dead letters, unfinished traces' items) stays whatever its age, as does a
/// delivery whose dedupe ids are still remembered. Old audit records go with the terminal states of the
/// traces of which nothing is held any more; a record younger than the cutoff stays.
pub async fn retention_prunes_finished_work_and_old_audit_only(s: Arc<dyn Store>) {
    // Five deliveries: three old ones processed (one of them quarantined), a young one processed, and an
    // old one left pending.
    let young = 10_000_000;
    let mut traces = Vec::new();
    for (i, received) in [1_000, 1_000, 1_000, young, 1_000].into_iter().enumerate() {
        let d = NewDelivery { received_at_ms: received, ..delivery(&format!("keep{i}"), None) };
        traces.push(d.trace_id);
        s.commit_delivery(d).await.unwrap();
    }
    let pending = s.pending_deliveries(10).await.unwrap();
    assert_eq!(pending.len(), 5);
    let item = |t: TraceId, c: u32| outbox_item(t, c, c);
    let outcomes = vec![
        // t0: two items, one delivered and one dead-lettered below: its trace ends.
        ProcessOutcome {
            audit: vec![audit(traces[0], AuditStage::Received)],
            outbox: vec![item(traces[0], 1), item(traces[0], 2)],
            ..processed(&pending[0])
        },
        ProcessOutcome {
            audit: vec![audit(traces[1], AuditStage::Received)],
            status: Some(DeliveryStatus::Quarantined),
            status_reason: Some("bad json".into()),
            terminal: Some(TerminalState::Quarantined("bad json".into())),
            ..processed(&pending[1])
        },
        // t2: an item left pending, so its trace stays open.
        ProcessOutcome { outbox: vec![item(traces[2], 3)], ..processed(&pending[2]) },
        // t3: an item delivered below.
        ProcessOutcome { outbox: vec![item(traces[3], 4)], ..processed(&pending[3]) },
    ];
    s.commit_processing(outcomes).await.unwrap();
    let due = s.due_outbox(i64::MAX / 2, 10).await.unwrap();
    let of = |c: u32| due.iter().find(|i| i.customer == cust(c)).expect("due item").clone();
    let settle = |i: &OutboxItem, result| AttemptRecord {
        item_id: i.id,
        trace_id: i.trace_id,
        result,
        audit: audit(i.trace_id, AuditStage::DeliveryAttempt),
        at_ms: now_ms(),
    };
    s.record_attempts(vec![
        settle(&of(1), AttemptResult::Delivered),
        settle(&of(2), AttemptResult::DeadLettered("down".into())),
        settle(&of(4), AttemptResult::Delivered),
    ])
    .await
    .unwrap();
    assert!(terminal_of(&*s, traces[0]).await.unwrap().is_some());
    assert!(terminal_of(&*s, traces[3]).await.unwrap().is_some());

    let work = |before: i64, limit: usize| PruneRequest {
        work_before_ms: Some(before),
        audit_before_ms: None,
        limit,
    };
    // Every delivery's dedupe ids are still remembered: none goes.
    assert_eq!(s.prune(work(5_000, 100)).await.unwrap(), Pruned::default());
    s.prune_dedupe(i64::MAX).await.unwrap();

    // The old processed deliveries go, one a call with a limit of one; the items were enqueued just now.
    let first = s.prune(work(5_000, 1)).await.unwrap();
    assert_eq!(first, Pruned { deliveries: 1, ..Default::default() });
    assert!(first.more_than(1));
    let second = s.prune(work(5_000, 1)).await.unwrap();
    assert_eq!(second, Pruned { deliveries: 1, ..Default::default() });
    assert_eq!(s.prune(work(5_000, 1)).await.unwrap(), Pruned::default(), "nothing else is old enough");
    assert_eq!(s.pending_deliveries(10).await.unwrap().len(), 1, "the pending delivery stays");
    assert_eq!(s.quarantined(None, 10).await.unwrap().len(), 1, "the quarantined delivery stays");
    let view = s.trace(traces[0]).await.unwrap().expect("the audit trail is not work");
    assert!(view.terminal.is_some());

    // With the cutoff after the items were enqueued: the delivered items of ended traces go; the dead
    // letter and the open trace's item stay. (The newest processed delivery may stay too: a backend may
    // resume processing from it.)
    let later = now_ms() + 60_000;
    let p = s.prune(work(later, 1)).await.unwrap();
    assert_eq!(p.outbox, 1);
    let p2 = s.prune(work(later, 100)).await.unwrap();
    assert_eq!(p2.outbox, 1, "{p2:?}");
    assert!(p.deliveries + p2.deliveries <= 1, "{p:?} {p2:?}");
    assert_eq!(s.prune(work(later, 100)).await.unwrap().outbox, 0);
    let dead = s.dead_letters(DeadLetterFilter::default(), None, 10).await.unwrap();
    assert_eq!(dead.len(), 1, "the dead letter stays");
    let due = s.due_outbox(i64::MAX / 2, 10).await.unwrap();
    assert_eq!(due.len(), 1, "the open trace's item stays");
    assert_eq!(due[0].trace_id, traces[2]);
    assert_eq!(s.pending_deliveries(10).await.unwrap().len(), 1);
    assert_eq!(s.quarantined(None, 10).await.unwrap().len(), 1);

    // Audit: a record dated after the cutoff, appended last, stays; everything before it goes, with the
    // terminal states of the traces left with nothing held: t3's. t0 still has its dead letter and t1 its
    // quarantined delivery, so they keep theirs.
    let kept = TraceId::new();
    let future =
        AuditRecord { trace_id: kept, at: at_ms(later + 60_000), ..audit(kept, AuditStage::ModelRefit) };
    s.append_audit(vec![future.clone()]).await.unwrap();
    let audit_only = PruneRequest { work_before_ms: None, audit_before_ms: Some(later), limit: 1_000 };
    let p = s.prune(audit_only).await.unwrap();
    assert!(p.audit > 0 && p.terminal == 1, "{p:?}");
    assert_eq!((p.deliveries, p.outbox), (0, 0));
    assert_eq!(s.prune(audit_only).await.unwrap(), Pruned::default());
    for t in [traces[0], traces[1]] {
        let view = s.trace(t).await.unwrap().expect("held, with its terminal state");
        assert!(view.records.is_empty() && view.terminal.is_some(), "{t}: {view:?}");
    }
    // t3's delivery may still be held (the newest processed one): then it is found, empty.
    let view = s.trace(traces[3]).await.unwrap();
    assert!(view.as_ref().is_none_or(|v| v.records.is_empty() && v.terminal.is_none()), "{view:?}");
    assert_eq!(s.trace(kept).await.unwrap().expect("kept").records, vec![future]);
    assert_eq!(s.dead_letters(DeadLetterFilter::default(), None, 10).await.unwrap().len(), 1);
}

/// A delivery's processing outcome: processed, nothing derived, no terminal state.
fn processed(d: &StoredDelivery) -> ProcessOutcome {
    ProcessOutcome {
        seq: d.seq,
        trace_id: Some(d.trace_id),
        status: Some(DeliveryStatus::Processed),
        ..Default::default()
    }
}
