//! The conformance suite every backend must pass. A backend's test calls [`run_all`] with a factory that
//! returns a fresh, empty store; each check gets its own store.

use crate::*;
use nudge_model::{AuditRecord, AuditStage, CustomerId, TerminalState, TraceId};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

mod approvals;
mod audit;
mod bandit;
mod fetch;
mod identity;
mod log;
mod outbox;
mod privacy;
mod processing;
mod registry;
mod retention;
mod timers;
mod tokens;

pub use approvals::*;
pub use audit::*;
pub use bandit::*;
pub use fetch::*;
pub use identity::*;
pub use log::*;
pub use outbox::*;
pub use privacy::*;
pub use processing::*;
pub use registry::*;
pub use retention::*;
pub use timers::*;
pub use tokens::*;

/// The PostgreSQL database the backend's tests use (`NUDGE_TEST_POSTGRES_URL`); `None`, with a note on
/// stderr, when it is not set (the tests then skip).
pub fn postgres_test_url() -> Option<String> {
    let url = std::env::var("NUDGE_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty());
    if url.is_none() {
        eprintln!(
            "skipped: NUDGE_TEST_POSTGRES_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/test)"
        );
    }
    url
}

/// The RabbitMQ broker of the bus tests (`NUDGE_TEST_AMQP_URL`), or `None` with a note that they are skipped.
pub fn amqp_test_url() -> Option<String> {
    let url = std::env::var("NUDGE_TEST_AMQP_URL").ok().filter(|u| !u.is_empty());
    if url.is_none() {
        eprintln!("skipped: NUDGE_TEST_AMQP_URL is not set (e.g. amqp://guest:guest@127.0.0.1:5672/%2f)");
    }
    url
}

/// Deletes a test's queue on `amqp` if it is there (best effort), from any context: on a thread of its own
/// with a runtime of its own, so a test's `Drop` can call it and a test that fails leaves no queue behind.
pub fn delete_test_queue(amqp: &str, queue: &str) {
    let (amqp, queue) = (amqp.to_string(), queue.to_string());
    let _ = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().ok()?;
        rt.block_on(async move {
            let props = lapin::ConnectionProperties::default();
            let conn = tokio::time::timeout(
                std::time::Duration::from_secs(3),
                lapin::Connection::connect(&amqp, props),
            )
            .await
            .ok()?
            .ok()?;
            let ch = conn.create_channel().await.ok()?;
            let _ = ch.queue_delete(queue.as_str().into(), Default::default()).await;
            conn.close(200, "done".into()).await.ok()
        })
    })
    .join();
}

/// A PostgreSQL store in a fresh schema `<prefix>_<host>_<pid>_<random>` of `url` (drop it with
/// [`crate::postgres::PgStore::drop_schema`]). First drops the schemas that test processes of this host
/// left behind when they died before dropping theirs (a panicking test cannot make the async call), told
/// by a process id that no longer runs here.
pub async fn fresh_postgres(url: &str, prefix: &str) -> Arc<crate::postgres::PgStore> {
    let host = host_tag();
    drop_schemas_of_dead_tests(url, &host).await;
    let mut config = crate::postgres::PgConfig::new(url);
    // 20 random hex digits keep the name, and the sessions' `nudge/<schema>` application name, well within
    // PostgreSQL's 63 characters.
    let random = &uuid::Uuid::new_v4().simple().to_string()[..20];
    config.schema = Some(format!("{prefix}_{host}_{}_{random}", std::process::id()));
    config.max_connections = 4;
    Arc::new(crate::postgres::PgStore::connect(&config).await.expect("connect to PostgreSQL"))
}

/// Eight hex digits that name this host in test schemas, so test runs of several hosts sharing one
/// database leave each other's schemas alone.
pub fn host_tag() -> String {
    use std::hash::{Hash, Hasher};
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let mut h = std::collections::hash_map::DefaultHasher::new();
    name.trim().hash(&mut h);
    format!("{:08x}", h.finish() as u32)
}

/// Drops the test schemas of this host whose process is gone (best effort: a failure only leaves them).
async fn drop_schemas_of_dead_tests(url: &str, host: &str) {
    use sqlx::Connection;
    let Ok(mut conn) = sqlx::PgConnection::connect(url).await else { return };
    let pattern = format!("^nudge_[a-z]+_{host}_([0-9]+)_[0-9a-f]{{20}}$");
    let found: Vec<(String, String)> = sqlx::query_as(
        "SELECT nspname::text, (regexp_match(nspname::text, $1))[1] FROM pg_namespace WHERE nspname ~ $1",
    )
    .bind(&pattern)
    .fetch_all(&mut conn)
    .await
    .unwrap_or_default();
    for (schema, pid) in found {
        if std::path::Path::new(&format!("/proc/{pid}")).exists() {
            continue;
        }
        let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS \"{schema}\" CASCADE")))
            .execute(&mut conn)
            .await;
    }
    let _ = conn.close().await;
}

/// A check: given a fresh, empty store, panics (with the reason) if the backend misbehaves.
pub type Check = fn(Arc<dyn Store>) -> Pin<Box<dyn Future<Output = ()> + Send>>;

/// Every check, by name, in the order [`run_all`] runs them: a backend's test can run them one by one (each
/// in a task of its own, to report every failure) or a chosen few.
pub fn checks() -> Vec<(&'static str, Check)> {
    vec![
        ("dedupe_and_group_commit", |s| Box::pin(dedupe_and_group_commit(s))),
        ("batch_commit_skips_duplicates", |s| Box::pin(batch_commit_skips_duplicates(s))),
        ("processing_round_trip", |s| Box::pin(processing_round_trip(s))),
        ("pipelined_batches", |s| Box::pin(pipelined_batches(s))),
        ("outbox_keeps_per_customer_order", |s| Box::pin(outbox_keeps_per_customer_order(s))),
        ("outbox_queues_are_per_destination", |s| Box::pin(outbox_queues_are_per_destination(s))),
        ("push_runs_are_kept_per_destination", |s| Box::pin(push_runs_are_kept_per_destination(s))),
        ("terminal_states_and_replay", |s| Box::pin(terminal_states_and_replay(s))),
        ("appended_audit_belongs_to_no_delivery", |s| Box::pin(appended_audit_belongs_to_no_delivery(s))),
        ("timers_fire_and_cancel", |s| Box::pin(timers_fire_and_cancel(s))),
        ("one_batch_keeps_the_order_of_timers_and_aliases", |s| {
            Box::pin(one_batch_keeps_the_order_of_timers_and_aliases(s))
        }),
        ("quarantine_and_replay", |s| Box::pin(quarantine_and_replay(s))),
        ("registry", |s| Box::pin(registry(s))),
        ("import_is_idempotent", |s| Box::pin(import_is_idempotent(s))),
        ("api_tokens", |s| Box::pin(api_tokens(s))),
        ("approvals_queue", |s| Box::pin(approvals_queue(s))),
        ("approvals_in_bulk", |s| Box::pin(approvals_in_bulk(s))),
        ("flow_decisions_for_reports", |s| Box::pin(flow_decisions_for_reports(s))),
        ("offer_log_settles_each_offer_once", |s| Box::pin(offer_log_settles_each_offer_once(s))),
        ("dead_letters_replay_by_destination", |s| Box::pin(dead_letters_replay_by_destination(s))),
        ("dead_letters_and_quarantine_are_listed_newest_first", |s| {
            Box::pin(dead_letters_and_quarantine_are_listed_newest_first(s))
        }),
        ("schedule_runs", |s| Box::pin(schedule_runs(s))),
        ("fetch_jobs_are_durable_settled_and_replayed", |s| {
            Box::pin(fetch_jobs_are_durable_settled_and_replayed(s))
        }),
        ("erasure_removes_the_person_and_only_them", |s| {
            Box::pin(erasure_removes_the_person_and_only_them(s))
        }),
        ("export_holds_only_the_person", |s| Box::pin(export_holds_only_the_person(s))),
        ("aliases_are_written_with_processing_and_states_merged_away", |s| {
            Box::pin(aliases_are_written_with_processing_and_states_merged_away(s))
        }),
        ("generated_copy_is_stored_once_with_its_audit_and_usage", |s| {
            Box::pin(generated_copy_is_stored_once_with_its_audit_and_usage(s))
        }),
        ("products_keep_the_newest_record", |s| Box::pin(products_keep_the_newest_record(s))),
        ("delivery_ticks_follow_the_log", |s| Box::pin(delivery_ticks_follow_the_log(s))),
        ("pending_after_heads_look_behind_each_customer", |s| {
            Box::pin(pending_after_heads_look_behind_each_customer(s))
        }),
        ("retention_prunes_finished_work_and_old_audit_only", |s| {
            Box::pin(retention_prunes_finished_work_and_old_audit_only(s))
        }),
    ]
}

/// Runs every check against fresh stores from `make`. Panics on the first failure.
pub async fn run_all<F, Fut>(make: F)
where
    F: Fn() -> Fut,
    Fut: Future<Output = Arc<dyn Store>>,
{
    for (_, check) in checks() {
        check(make().await).await;
    }
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
        part: None,
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
