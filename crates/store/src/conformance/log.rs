//! Conformance checks of the ingest log and its dedupe index.

use super::*;

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

    // A delivery that loses on a key held already gives back the new keys it claimed first: to the later
    // delivery of the batch that also has one (which is stored and holds it), or to nobody.
    let keyed = |keys: &[&str]| NewDelivery {
        dedupe_keys: keys.iter().map(|k| k.to_string()).collect(),
        ..delivery("unused", None)
    };
    let batch = vec![
        keyed(&["k:x", "shopify:webhook:b0"]),
        keyed(&["k:y", "k:x"]),
        keyed(&["k:z", "shopify:webhook:b2"]),
    ];
    let later = batch[1].trace_id;
    let results = s.commit_deliveries(batch).await.unwrap();
    assert!(matches!(results[0], CommitResult::Duplicate { .. }), "batch: held key");
    assert!(matches!(results[1], CommitResult::Committed { .. }), "batch: the key passed on");
    assert!(matches!(results[2], CommitResult::Duplicate { .. }), "batch: held key");
    match s.commit_delivery(keyed(&["k:x"])).await.unwrap() {
        CommitResult::Duplicate { original, .. } => {
            assert_eq!(original, later, "batch: k:x is held by the later one")
        }
        other => panic!("batch: expected k:x held, got {other:?}"),
    }
    assert!(
        matches!(s.commit_delivery(keyed(&["k:z"])).await.unwrap(), CommitResult::Committed { .. }),
        "batch: k:z was given back"
    );
    assert_eq!(s.pending_deliveries(100).await.unwrap().len(), 5);
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
    // The duplicate took none of its keys: its new webhook id is free for the next delivery.
    assert!(
        matches!(s.commit_delivery(delivery("w2", None)).await.unwrap(), CommitResult::Committed { .. }),
        "dedupe: a duplicate holds none of its keys"
    );
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
    assert_eq!(s.stats().await.unwrap().deliveries, 102);
    // Pruning old keys makes the key usable again.
    assert!(s.prune_dedupe(2_000).await.unwrap() >= 102);
    assert!(matches!(s.commit_delivery(delivery("w1", None)).await.unwrap(), CommitResult::Committed { .. }));
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
