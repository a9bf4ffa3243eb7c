//! The fetch worker: runs the durable fetch jobs thin notifications leave (BigCommerce's callbacks carry
//! only an id), one [`Fetcher`] per source, chosen in `app.rs`.
//!
//! A fetched answer is committed to the ingest log as a delivery of the job's source under the SAME
//! trace id, with the job's topic and the dedupe key `<source>:<shop>:fetch:<job id>`: a crash between
//! that commit and settling the job makes the next attempt a duplicate, never a second processing. The
//! job is then settled done and the pipeline woken. A resource that is gone ends the trace `ignored`
//! ("<resource> <id> is gone: …"); a retry waits what the fetcher asked (a 429's reset, a backoff); a
//! failure, or a retry past `max_attempts`, dead-letters the job and the trace (`nudge audit stats`
//! counts them; `nudge replay --fetch-jobs` runs them again).

use crate::telemetry;
use nudge_fetch::{FetchJob, FetchOutcome, Fetcher};
use nudge_model::{AuditRecord, AuditStage, TerminalState};
use nudge_store::{CommitResult, FetchJobRecord, FetchSettle, FetchSettlement, NewDelivery, Store};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};

pub struct FetchWorker {
    pub store: Arc<dyn Store>,
    /// By source name (`FetchJob::source`).
    pub fetchers: HashMap<String, Arc<dyn Fetcher>>,
    /// Attempts before a job that keeps being retried is dead-lettered.
    pub max_attempts: u32,
    /// How often to look for due jobs when there were none.
    pub tick: Duration,
}

impl FetchWorker {
    /// Runs due jobs until `shutdown`; wakes the pipeline after committing fetched answers.
    pub async fn run(self: Arc<Self>, wake_pipeline: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.store.due_fetch_jobs(crate::outbox::now_ms(), 32).await {
                Ok(due) if !due.is_empty() => {
                    for rec in due {
                        if *shutdown.borrow() {
                            return;
                        }
                        if self.run_one(rec).await {
                            wake_pipeline.notify_one();
                        }
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "reading due fetch jobs failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(self.tick) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// Makes one attempt at `rec`; true when an answer was committed.
    pub async fn run_one(&self, rec: FetchJobRecord) -> bool {
        let job: FetchJob = match serde_json::from_str(&rec.job) {
            Ok(j) => j,
            Err(e) => {
                self.dead(&rec, None, format!("stored fetch job does not parse: {e}")).await;
                return false;
            }
        };
        let Some(fetcher) = self.fetchers.get(&rec.source) else {
            let reason = format!("no fetcher is configured for source `{}`", rec.source);
            self.dead(&rec, Some(&job), reason).await;
            return false;
        };
        let outcome = fetcher.fetch(&job).await;
        let now = crate::outbox::now_ms();
        match outcome {
            FetchOutcome::Fetched(body) => {
                let bytes = body.len();
                let d = NewDelivery {
                    trace_id: rec.trace_id,
                    source: rec.source.clone(),
                    topic: job.topic.clone(),
                    shop: job.shop.clone(),
                    webhook_id: None,
                    event_id: None,
                    received_at_ms: now,
                    headers_json: serde_json::json!({
                        "fetched": { "resource": job.resource, "id": job.id, "notified_topic": job.notified_topic }
                    })
                    .to_string(),
                    body,
                    dedupe_keys: vec![format!("{}:{}:fetch:{}", rec.source, job.shop.as_deref().unwrap_or(""), rec.id)],
                    part: None,
                };
                match self.store.commit_delivery(d).await {
                    Ok(CommitResult::Committed { .. } | CommitResult::Duplicate { .. }) => {
                        let detail = serde_json::json!({
                            "job": rec.id, "outcome": "fetched", "resource": job.resource, "id": job.id, "bytes": bytes,
                        });
                        self.settle(&rec, FetchSettle::Done, detail, None).await;
                        telemetry::fetch("fetched");
                        true
                    }
                    Err(e) => {
                        let reason = format!("committing the fetched answer failed: {e}");
                        self.retry(&rec, &job, Duration::from_secs(5), reason).await;
                        false
                    }
                }
            }
            FetchOutcome::Gone(reason) => {
                let why = format!("{} {} is gone: {reason}", job.resource, job.id);
                let detail = serde_json::json!({ "job": rec.id, "outcome": "gone", "reason": why });
                self.settle(&rec, FetchSettle::Done, detail, Some(TerminalState::Ignored(why))).await;
                telemetry::fetch("gone");
                false
            }
            FetchOutcome::Retry { after, reason } => {
                self.retry(&rec, &job, after, reason).await;
                false
            }
            FetchOutcome::Failed(reason) => {
                self.dead(&rec, Some(&job), reason).await;
                false
            }
        }
    }

    async fn retry(&self, rec: &FetchJobRecord, job: &FetchJob, after: Duration, reason: String) {
        if rec.attempts.saturating_add(1) >= self.max_attempts {
            let why = format!("gave up after {} attempts: {reason}", rec.attempts.saturating_add(1));
            self.dead(rec, Some(job), why).await;
            return;
        }
        let at_ms =
            crate::outbox::now_ms().saturating_add(i64::try_from(after.as_millis()).unwrap_or(i64::MAX));
        let detail = serde_json::json!({
            "job": rec.id, "outcome": "retry", "after_ms": after.as_millis() as u64, "reason": reason,
        });
        self.settle(rec, FetchSettle::RetryAt { at_ms, reason }, detail, None).await;
        telemetry::fetch("retry");
    }

    async fn dead(&self, rec: &FetchJobRecord, job: Option<&FetchJob>, reason: String) {
        let what = job.map(|j| format!("fetch of {} {}", j.resource, j.id)).unwrap_or_else(|| "fetch".into());
        let why = format!("{what}: {reason}");
        tracing::warn!(job = rec.id, trace = %rec.trace_id, reason = %why, "fetch job dead-lettered");
        let detail = serde_json::json!({ "job": rec.id, "outcome": "dead_lettered", "reason": why });
        let terminal = Some(TerminalState::DeadLettered(why.clone()));
        self.settle(rec, FetchSettle::Dead { reason: why }, detail, terminal).await;
        telemetry::fetch("dead_lettered");
    }

    async fn settle(
        &self,
        rec: &FetchJobRecord,
        outcome: FetchSettle,
        detail: serde_json::Value,
        terminal: Option<TerminalState>,
    ) {
        let now = time::OffsetDateTime::now_utc();
        let mut audit = vec![AuditRecord {
            trace_id: rec.trace_id,
            customer: None,
            stage: AuditStage::FetchAttempt,
            at: now,
            detail,
        }];
        if let Some(t) = &terminal {
            audit.push(AuditRecord {
                trace_id: rec.trace_id,
                customer: None,
                stage: AuditStage::Terminal,
                at: now,
                detail: serde_json::json!({ "state": t.name(), "reason": t.reason() }),
            });
        }
        let s = FetchSettlement { id: rec.id, outcome, audit, terminal, at_ms: crate::outbox::now_ms() };
        if let Err(e) = self.store.settle_fetch_job(s).await {
            tracing::error!(job = rec.id, error = %e, "settling a fetch job failed; it will run again");
        }
    }
}
