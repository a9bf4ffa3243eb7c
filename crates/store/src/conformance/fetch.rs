//! Conformance checks of fetch jobs.

use super::*;

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
