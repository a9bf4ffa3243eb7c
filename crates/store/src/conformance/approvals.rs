//! Conformance checks of approvals, flow decisions and generated copy.

use super::*;

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
