//! Conformance checks of erasure and export.

use super::*;

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
