//! The delivery worker: takes due outbox items (at most one per customer at a time, so each customer's
//! actions reach a destination in order), makes one attempt each, and records the attempt, the retry
//! schedule and, when a trace is done, its terminal state.

use crate::telemetry::{self, LatencySample};
use nudge_deliver::{Backoff, Destination, Outcome};
use nudge_model::{Action, AuditRecord, AuditStage};
use nudge_store::{AttemptRecord, AttemptResult, OutboxItem, Store, StoreError};
use std::collections::HashMap;
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
    /// Attempts every due item once; returns how many were attempted.
    pub async fn step(&self) -> Result<usize, StoreError> {
        use futures::StreamExt;
        let now_ms = now_ms();
        let items = self.store.due_outbox(now_ms, self.concurrency * 4).await?;
        let n = items.len();
        // All attempts of a round are recorded in one transaction: one fsync per round, not per push.
        let records: Vec<AttemptRecord> = futures::stream::iter(items)
            .map(|item| self.attempt(item))
            .buffer_unordered(self.concurrency.max(1))
            .collect()
            .await;
        if !records.is_empty() {
            self.store.record_attempts(records).await?;
        }
        Ok(n)
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

    /// Runs until `shutdown`, woken by the pipeline when it enqueues and by a short poll for retries.
    pub async fn run(self: Arc<Self>, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.step().await {
                Ok(0) => {
                    tokio::select! {
                        _ = wake.notified() => {}
                        _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                        _ = shutdown.changed() => {}
                    }
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "outbox step failed; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
            }
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
