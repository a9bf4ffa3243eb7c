//! Conformance checks of the audit trail.

use super::*;

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
