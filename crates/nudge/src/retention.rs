//! The retention sweep (`storage.retention`, `storage.audit_retention`): on the node that runs the workers,
//! at start and then every [`SWEEP_EVERY`], finished work and old audit records are removed in steps of
//! [`STEP`] rows a kind, oldest first, for at most [`SWEEP_BUDGET`] a sweep; what is left waits for the next.

use nudge_store::{PruneRequest, Pruned, Store};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// How often a sweep starts.
pub const SWEEP_EVERY: Duration = Duration::from_secs(600);

/// Rows of each kind one step removes (one transaction a kind).
pub const STEP: usize = 5_000;

/// How long one sweep works before leaving the rest to the next, so that a first sweep over a large store
/// does not hold the database's attention for long.
pub const SWEEP_BUDGET: Duration = Duration::from_secs(60);

pub struct RetentionSweep {
    pub store: Arc<dyn Store>,
    /// How long finished work is kept (`None`: for ever).
    pub work: Option<Duration>,
    /// How long audit records are kept (`None`: for ever).
    pub audit: Option<Duration>,
}

impl RetentionSweep {
    /// Whether there is anything to sweep.
    pub fn enabled(&self) -> bool {
        self.work.is_some() || self.audit.is_some()
    }

    /// One sweep with `now_ms` as the present: steps until nothing more is old enough, the budget is spent
    /// or `shutdown` turns true. Returns what went and whether more was left.
    pub async fn sweep(
        &self,
        now_ms: i64,
        shutdown: &watch::Receiver<bool>,
    ) -> nudge_store::Result<(Pruned, bool)> {
        let cutoff = |keep: Option<Duration>| keep.map(|d| now_ms.saturating_sub(d.as_millis() as i64));
        let request = PruneRequest {
            work_before_ms: cutoff(self.work),
            audit_before_ms: cutoff(self.audit),
            limit: STEP,
        };
        let started = Instant::now();
        let mut total = Pruned::default();
        loop {
            let step = self.store.prune(request).await?;
            crate::telemetry::retention_pruned(&step);
            total.add(step);
            if !step.more_than(STEP) {
                return Ok((total, false));
            }
            if started.elapsed() >= SWEEP_BUDGET || *shutdown.borrow() {
                return Ok((total, true));
            }
            // A breath between steps for the ack path and the workers sharing the database.
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Sweeps at start and every [`SWEEP_EVERY`] until `shutdown` (the workers start it only when
    /// [`Self::enabled`]).
    pub async fn run(self, mut shutdown: watch::Receiver<bool>) {
        loop {
            match self.sweep(crate::outbox::now_ms(), &shutdown).await {
                Ok((p, behind)) => {
                    crate::telemetry::retention_sweep(if behind { "behind" } else { "done" });
                    if p != Pruned::default() {
                        tracing::info!(
                            deliveries = p.deliveries,
                            outbox = p.outbox,
                            audit = p.audit,
                            terminal = p.terminal,
                            more_left = behind,
                            "retention: removed old rows"
                        );
                    }
                }
                Err(e) => {
                    crate::telemetry::retention_sweep("failed");
                    tracing::error!(error = %e, "retention sweep failed; the next one tries again");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(SWEEP_EVERY) => {}
                _ = shutdown.changed() => return,
            }
        }
    }
}
