//! The delivery worker: takes due outbox items (at most one per customer at a time, so each customer's
//! actions reach a destination in order), makes one attempt each, and records the attempt, the retry
//! schedule and, when a trace is done, its terminal state.

use crate::pipeline::Submitted;
use crate::telemetry::{self, LatencySample};
use nudge_deliver::{Backoff, Destination, Outcome};
use nudge_model::{Action, AuditRecord, AuditStage};
use nudge_store::{AttemptRecord, AttemptResult, OutboxItem, Store, StoreError};
use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};

pub struct OutboxWorker {
    pub store: Arc<dyn Store>,
    /// Destinations by name, as enqueued by the pipeline.
    pub destinations: HashMap<String, Arc<dyn Destination>>,
    pub backoff: Backoff,
    pub max_attempts: u32,
    /// Items attempted concurrently (each for a different customer).
    pub concurrency: usize,
    /// Event→push latency of successful pushes, for summaries.
    pub latency: Arc<LatencySample>,
}

impl OutboxWorker {
    /// Attempts every due item once and records the attempts; returns how many were attempted.
    pub async fn step(&self) -> Result<usize, StoreError> {
        let records = self.round(&HashSet::new()).await?;
        let n = records.len();
        if !records.is_empty() {
            self.store.record_attempts(records).await?;
        }
        Ok(n)
    }

    /// Attempts the due items not in `exclude` (items whose attempts are being recorded) once each.
    async fn round(&self, exclude: &HashSet<i64>) -> Result<Vec<AttemptRecord>, StoreError> {
        use futures::StreamExt;
        let limit = self.concurrency * 4;
        let mut items = self.store.due_outbox(now_ms(), limit + exclude.len()).await?;
        items.retain(|i| !exclude.contains(&i.id));
        items.truncate(limit);
        Ok(futures::stream::iter(items)
            .map(|item| self.attempt(item))
            .buffer_unordered(self.concurrency.max(1))
            .collect()
            .await)
    }

    async fn attempt(&self, item: OutboxItem) -> AttemptRecord {
        let attempt_no = item.attempts + 1;
        let (outcome, dest_name): (Outcome, &'static str) = match self.destinations.get(&item.destination) {
            None => (
                Outcome::Rejected {
                    endpoint: item.destination.clone(),
                    status: None,
                    error: format!("destination `{}` is not configured", item.destination),
                },
                "unknown",
            ),
            Some(dest) => match serde_json::from_str::<Action>(&item.action_json) {
                Ok(action) => (dest.deliver(&action).await, dest.name()),
                Err(e) => (
                    Outcome::Rejected {
                        endpoint: item.destination.clone(),
                        status: None,
                        error: format!("stored action does not parse: {e}"),
                    },
                    dest.name(),
                ),
            },
        };
        let at_ms = now_ms();
        let result = match &outcome {
            Outcome::Delivered { .. } => {
                let latency_s = (at_ms * 1000 - item.origin_us).max(0) as f64 / 1e6;
                telemetry::event_to_push(latency_s);
                self.latency.record(latency_s);
                AttemptResult::Delivered
            }
            Outcome::Retry { error, retry_after, .. } => {
                if attempt_no >= self.max_attempts {
                    AttemptResult::DeadLettered(format!("{error} (gave up after {attempt_no} attempts)"))
                } else {
                    let wait = self.backoff.delay(attempt_no - 1, *retry_after);
                    AttemptResult::RetryAt(at_ms + wait.as_millis() as i64)
                }
            }
            Outcome::Rejected { error, .. } => AttemptResult::Rejected(error.clone()),
        };
        let result_name = match &result {
            AttemptResult::Delivered => "delivered",
            AttemptResult::RetryAt(_) => "retry",
            AttemptResult::Rejected(_) => "rejected",
            AttemptResult::DeadLettered(_) => "dead_lettered",
        };
        telemetry::push(dest_name, result_name);
        if !matches!(result, AttemptResult::Delivered) {
            tracing::warn!(trace_id = %item.trace_id, destination = dest_name, attempt = attempt_no,
                outcome = result_name, error = outcome.error().unwrap_or(""), "push not delivered");
        }
        let audit = AuditRecord {
            trace_id: item.trace_id,
            customer: Some(item.customer.clone()),
            stage: AuditStage::DeliveryAttempt,
            at: crate::pipeline::ms_to_ts(at_ms),
            detail: serde_json::json!({
                "destination": item.destination,
                "endpoint": outcome.endpoint(),
                "status": outcome.status(),
                "outcome": result_name,
                "error": outcome.error(),
                "attempt": attempt_no,
                "next_attempt_at": match &result { AttemptResult::RetryAt(t) => Some(crate::pipeline::fmt_ts(crate::pipeline::ms_to_ts(*t))), _ => None },
            }),
        };
        AttemptRecord { item_id: item.id, trace_id: item.trace_id, result, audit, at_ms }
    }

    /// Runs until `shutdown`, woken by the pipeline when it enqueues and by a short poll for retries. A
    /// round's attempts are recorded (one transaction) while the next round's items are pushed; those
    /// exclude the items still being recorded, and a customer's next item is due only once the one before
    /// is recorded, so per-customer order holds.
    pub async fn run(self: Arc<Self>, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
        let mut inflight: Option<Recording> = None;
        loop {
            if *shutdown.borrow() {
                if let Some(r) = inflight.take() {
                    r.finish().await;
                }
                return;
            }
            let exclude = inflight.as_ref().map(|r| r.items.clone()).unwrap_or_default();
            let records = match self.round(&exclude).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(error = %e, "outbox step failed; retrying");
                    if let Some(r) = inflight.take() {
                        r.finish().await;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            if records.is_empty() {
                match inflight.take() {
                    Some(r) => r.finish().await,
                    None => {
                        tokio::select! {
                            _ = wake.notified() => {}
                            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                            _ = shutdown.changed() => {}
                        }
                    }
                }
                continue;
            }
            let next = Recording::start(self.store.clone(), records).await;
            if let Some(prev) = inflight.replace(next) {
                prev.finish().await;
            }
        }
    }
}

/// A round's attempts on their way into the store.
struct Recording {
    items: HashSet<i64>,
    write: Submitted,
}

impl Recording {
    async fn start(store: Arc<dyn Store>, records: Vec<AttemptRecord>) -> Self {
        let items = records.iter().map(|r| r.item_id).collect();
        Recording {
            items,
            write: Submitted::start(async move { store.record_attempts(records).await }).await,
        }
    }

    /// Waits until the records are stored. If that failed, the items stay pending and are attempted again
    /// (a push repeated that way is absorbed downstream: events carry a unique id, upserts repeat), after
    /// a pause so a failing store is not hammered.
    async fn finish(self) {
        if let Err(e) = self.write.answer().await {
            tracing::error!(error = %e, "recording delivery attempts failed; the items will be attempted again");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    crate::pipeline::ts_to_ms(time::OffsetDateTime::now_utc())
}

/// Fires due abandonment timers every `tick` until `shutdown`.
pub async fn run_timers(
    store: Arc<dyn Store>,
    tick: Duration,
    wake_pipeline: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        match store.fire_due_timers(now_ms(), 1000).await {
            Ok(0) => {}
            Ok(n) => {
                telemetry::timers_fired(n);
                wake_pipeline.notify_one();
                continue;
            }
            Err(e) => tracing::error!(error = %e, "firing timers failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Expires pending approval items past their expiry, every `tick` until `shutdown` (30 s in the server).
pub async fn run_approval_expiry(store: Arc<dyn Store>, tick: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        match store.expire_approvals(now_ms()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "approval items expired"),
            Err(e) => tracing::error!(error = %e, "expiring approval items failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = shutdown.changed() => {}
        }
    }
}
