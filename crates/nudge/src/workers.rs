//! The background workers: processing the log, delivering the outbox, fetch jobs, timers, schedule flows,
//! generated copy for approvals, approval expiry, privacy jobs, scheduled refreshes, batch pushes and
//! digests, and dedupe pruning. On the embedded store they run for the life of the process; on a shared
//! PostgreSQL store they run on the node that leads ([`lead`]), for as long as it leads, so each piece of
//! work happens once cluster-wide and each customer's work in order.

use crate::outbox::OutboxWorker;
use crate::pipeline::{Flows, Pipeline, Scoring};
use nudge_deliver::Destination;
use nudge_store::Store;
use nudge_store::postgres::PgStore;
use nudge_store::postgres::cluster::NodeRecord;
use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

/// Everything the workers are built from; [`Workers::spawn`] starts a fresh set.
pub struct Workers {
    pub runtime: tokio::runtime::Handle,
    pub store: Arc<dyn Store>,
    pub make_pipeline: Box<dyn Fn() -> Pipeline + Send + Sync>,
    pub outbox: Arc<OutboxWorker>,
    pub copy: Arc<crate::copy::CopyStage>,
    pub flows: Arc<Flows>,
    pub scoring: Arc<Scoring>,
    pub fetchers: HashMap<String, Arc<dyn nudge_fetch::Fetcher>>,
    pub max_attempts: u32,
    pub timer_tick: Duration,
    pub erasing: HashMap<String, Arc<dyn Destination>>,
    pub data_dir: PathBuf,
    pub segment_refresh: Option<nudge_policy::schedule::Schedule>,
    pub batch_push: Option<(nudge_policy::schedule::Schedule, nudge_policy::PolicyConfig, PushTargets)>,
    pub digest: Option<(nudge_policy::schedule::Schedule, crate::config::Config)>,
    pub dedupe_retention: Duration,
    pub wake_pipeline: Arc<Notify>,
    pub wake_outbox: Arc<Notify>,
    /// True while this node runs the workers (set by [`lead`] on a cluster): other batch work, such as the
    /// scheduled refit, runs only then.
    pub leading: Arc<std::sync::atomic::AtomicBool>,
}

pub type PushTargets = Vec<(String, Arc<dyn Destination>, crate::outbox::DeliverySettings)>;

impl Workers {
    /// Starts every worker; each stops when `shutdown` turns true.
    pub fn spawn(&self, shutdown: watch::Receiver<bool>) -> anyhow::Result<Vec<JoinHandle<()>>> {
        let work = &self.runtime;
        let pipeline = Arc::new((self.make_pipeline)());
        let mut tasks = vec![
            work.spawn(pipeline.run(self.wake_pipeline.clone(), self.wake_outbox.clone(), shutdown.clone())),
            work.spawn(self.outbox.clone().run(self.wake_outbox.clone(), shutdown.clone())),
            work.spawn(
                Arc::new(crate::fetch::FetchWorker {
                    store: self.store.clone(),
                    fetchers: self.fetchers.clone(),
                    max_attempts: self.max_attempts,
                    tick: Duration::from_millis(250),
                })
                .run(self.wake_pipeline.clone(), shutdown.clone()),
            ),
            work.spawn(crate::outbox::run_timers(
                self.store.clone(),
                self.timer_tick,
                self.wake_pipeline.clone(),
                shutdown.clone(),
            )),
            work.spawn(
                Arc::new(crate::scheduler::Scheduler {
                    store: self.store.clone(),
                    flows: self.flows.clone(),
                    chunk: crate::scheduler::CHUNK,
                })
                .run(self.wake_pipeline.clone(), shutdown.clone()),
            ),
            work.spawn(self.copy.clone().run_approvals(Duration::from_millis(250), shutdown.clone())),
            work.spawn(crate::outbox::run_approval_expiry(
                self.store.clone(),
                Duration::from_secs(30),
                shutdown.clone(),
            )),
            // Erasures and exports: resumed from the store after a restart.
            work.spawn(
                Arc::new(crate::privacy::PrivacyWorker {
                    store: self.store.clone(),
                    destinations: self.erasing.clone(),
                    data_dir: self.data_dir.clone(),
                })
                .run(Arc::new(Notify::new()), shutdown.clone()),
            ),
        ];
        if let Some(schedule) = &self.segment_refresh {
            let scheduled = crate::segment_adoption::ScheduledRefresh {
                store: self.store.clone(),
                scoring: self.scoring.clone(),
                schedule: schedule.clone(),
            };
            tasks.push(work.spawn(scheduled.run(shutdown.clone())));
        }
        if let Some((schedule, policy, destinations)) = &self.batch_push {
            let scheduled = crate::push::ScheduledPush {
                store: self.store.clone(),
                scoring: self.scoring.clone(),
                policy: policy.clone(),
                schedule: schedule.clone(),
                destinations: destinations.clone(),
            };
            tasks.push(work.spawn(scheduled.run(shutdown.clone())));
        }
        if let Some((schedule, cfg)) = &self.digest {
            let digester = crate::digest::Digester::from_config(self.store.clone(), cfg, true)?;
            let scheduled = crate::digest::ScheduledDigest { digester, schedule: schedule.clone() };
            tasks.push(work.spawn(scheduled.run(shutdown.clone())));
        }
        // Dedupe keys older than the retention are pruned hourly.
        {
            let store = self.store.clone();
            let retention = self.dedupe_retention;
            let mut rx = shutdown.clone();
            tasks.push(work.spawn(async move {
                loop {
                    let cutoff = crate::outbox::now_ms() - retention.as_millis() as i64;
                    if let Err(e) = store.prune_dedupe(cutoff).await {
                        tracing::error!(error = %e, "pruning dedupe keys failed");
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(Duration::from_secs(3600)) => {}
                        _ = rx.changed() => return,
                    }
                }
            }));
        }
        Ok(tasks)
    }
}

/// How often a node records its heartbeat and checks (or tries to take) the leader lease.
pub const HEARTBEAT: Duration = Duration::from_secs(1);

/// How long a node that has just taken the leader lease waits before starting the workers: longer than a
/// former leader takes to notice it lost the lease (a check every [`LEASE_CHECK`], each failing within
/// [`LEASE_TIMEOUT`]) and stop its own, so two nodes never send at once and each customer's pushes stay in order.
pub const TAKEOVER_GRACE: Duration = Duration::from_secs(5);

/// How often the leader checks its lease.
pub const LEASE_CHECK: Duration = Duration::from_millis(500);

/// How long a lease check may take before the lease counts as lost.
pub const LEASE_TIMEOUT: Duration = Duration::from_secs(2);

/// How often the leader refreshes PostgreSQL's statistics of the fastest-changing tables (in case the server's
/// autovacuum is off or behind: the due-outbox query's plan depends on them).
pub const ANALYZE_EVERY: Duration = Duration::from_secs(15);

/// A node is shown as live while its last heartbeat is younger than this.
pub const LIVE_FOR: Duration = Duration::from_secs(10);

/// Runs a node of a PostgreSQL cluster until `shutdown`: records its heartbeat every [`HEARTBEAT`], takes the
/// leader lease when it is free, runs the workers while the lease holds, and stops them (waiting for them to
/// finish) as soon as the lease's connection fails. Committed deliveries on any node wake the leader's
/// processing through PostgreSQL notifications.
pub async fn lead(
    pg: Arc<PgStore>,
    workers: Arc<Workers>,
    mut node: NodeRecord,
    mut shutdown: watch::Receiver<bool>,
) {
    let wake = workers.wake_pipeline.clone();
    let listener = {
        let pg = pg.clone();
        let mut rx = shutdown.clone();
        tokio::spawn(async move {
            loop {
                match pg.listen_deliveries().await {
                    Ok(mut l) => loop {
                        tokio::select! {
                            n = l.recv() => match n {
                                Ok(_) => wake.notify_one(),
                                Err(e) => {
                                    tracing::warn!(error = %e, "the delivery notifications stopped; reconnecting");
                                    break;
                                }
                            },
                            _ = rx.changed() => return,
                        }
                    },
                    Err(e) => tracing::warn!(error = %e, "listening for deliveries failed; retrying"),
                }
                tokio::select! {
                    _ = tokio::time::sleep(HEARTBEAT) => {}
                    _ = rx.changed() => return,
                }
            }
        })
    };
    loop {
        if *shutdown.borrow() {
            break;
        }
        match pg.try_lead().await {
            Ok(Some(mut lease)) => {
                tracing::info!(node = %node.node_id, grace = ?TAKEOVER_GRACE, "took the leader lease");
                beat(&pg, &mut node, true).await;
                // A former leader may still be finishing a send: wait until it must have stopped.
                let grace_end = tokio::time::Instant::now() + TAKEOVER_GRACE;
                let mut held = true;
                while held && tokio::time::Instant::now() < grace_end && !*shutdown.borrow() {
                    tokio::select! {
                        _ = tokio::time::sleep(LEASE_CHECK) => {}
                        _ = shutdown.changed() => {}
                    }
                    held = lease.alive(LEASE_TIMEOUT).await;
                }
                if !held || *shutdown.borrow() {
                    lease.release().await;
                    continue;
                }
                tracing::info!(node = %node.node_id, "this node leads: processing and delivery run here");
                crate::telemetry::cluster_leader(true);
                workers.leading.store(true, std::sync::atomic::Ordering::Relaxed);
                let (stop, stop_rx) = watch::channel(false);
                let tasks = match workers.spawn(stop_rx) {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::error!(error = %format!("{e:#}"), "starting the workers failed");
                        Vec::new()
                    }
                };
                workers.wake_pipeline.notify_one();
                let mut last_beat = tokio::time::Instant::now() - HEARTBEAT;
                let mut last_analyze = tokio::time::Instant::now();
                let lost = loop {
                    if last_beat.elapsed() >= HEARTBEAT {
                        last_beat = tokio::time::Instant::now();
                        beat(&pg, &mut node, true).await;
                    }
                    if last_analyze.elapsed() >= ANALYZE_EVERY {
                        last_analyze = tokio::time::Instant::now();
                        let pg = pg.clone();
                        tokio::spawn(async move {
                            if let Err(e) = pg.analyze_hot_tables().await {
                                tracing::warn!(error = %e, "refreshing the planner's statistics failed");
                            }
                        });
                    }
                    tokio::select! {
                        _ = tokio::time::sleep(LEASE_CHECK) => {}
                        _ = shutdown.changed() => break false,
                    }
                    if !lease.alive(LEASE_TIMEOUT).await {
                        break true;
                    }
                };
                workers.leading.store(false, std::sync::atomic::Ordering::Relaxed);
                let _ = stop.send(true);
                if lost {
                    // Another node may lead from now on: nothing more is sent from here, not even what is
                    // in flight (an interrupted batch is still pending in the store and is sent again there).
                    tracing::warn!(node = %node.node_id, "the leader lease was lost; stopping the workers at once");
                    for t in &tasks {
                        t.abort();
                    }
                }
                for t in tasks {
                    let _ = t.await;
                }
                lease.release().await;
                crate::telemetry::cluster_leader(false);
            }
            Ok(None) => {}
            Err(e) => tracing::warn!(error = %e, "trying the leader lease failed"),
        }
        beat(&pg, &mut node, false).await;
        tokio::select! {
            _ = tokio::time::sleep(HEARTBEAT) => {}
            _ = shutdown.changed() => {}
        }
    }
    let _ = listener.await;
}

/// Records that `node` is alive now, and whether it leads (a failure is logged: the next beat retries).
async fn beat(pg: &PgStore, node: &mut NodeRecord, leader: bool) {
    node.leader = leader;
    node.seen_at_ms = crate::outbox::now_ms();
    if let Err(e) = pg.heartbeat(node).await {
        tracing::warn!(error = %e, "recording the heartbeat failed");
    }
}
