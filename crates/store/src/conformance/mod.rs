//! The conformance suite every backend must pass. A backend's test calls [`run_all`] with a factory that
//! returns a fresh, empty store; each check gets its own store.

use crate::*;
use nudge_model::{AuditRecord, AuditStage, CustomerId, TerminalState, TraceId};
use std::future::Future;
use std::sync::Arc;

mod log;
mod processing;
mod outbox;
mod audit;
mod timers;
mod registry;
mod tokens;
mod approvals;
mod bandit;
mod fetch;
mod privacy;
mod identity;

pub use log::*;
pub use processing::*;
pub use outbox::*;
pub use audit::*;
pub use timers::*;
pub use registry::*;
pub use tokens::*;
pub use approvals::*;
pub use bandit::*;
pub use fetch::*;
pub use privacy::*;
pub use identity::*;

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

fn outbox_item(trace: TraceId, c: u32, n: u32) -> NewOutboxItem {
    NewOutboxItem {
        trace_id: trace,
        customer: cust(c),
        destination: "klaviyo".into(),
        action_json: format!("{{\"n\":{n}}}"),
        origin_us: 0,
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
