//! The background workers: processing the log, delivering the outbox, fetch jobs, timers, schedule flows,
//! generated copy for approvals, approval expiry, privacy jobs, scheduled refreshes, batch pushes and
//! digests, and dedupe pruning. On the embedded store they run for the life of the process; on a shared
//! PostgreSQL store they run on the node that leads ([`lead`]), for as long as it leads, so each piece of
//! work happens once cluster-wide and each customer's work in order.

use crate::outbox::OutboxWorker;
use crate::pipeline::{Flows, Pipeline, Scoring};
use nudge_deliver::Destination;
use nudge_store::postgres::PgStore;
use nudge_store::postgres::cluster::NodeRecord;
use nudge_store::{Partitions, Store};
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
    /// `storage.retention` and `storage.audit_retention`: swept by [`crate::retention::RetentionSweep`].
    pub retention: (Option<Duration>, Option<Duration>),
    pub wake_pipeline: Arc<Notify>,
    pub wake_outbox: Arc<Notify>,
    /// True while this node runs the workers (set by [`lead`] on a cluster): other batch work, such as the
    /// scheduled refit, runs only then.
    pub leading: Arc<std::sync::atomic::AtomicBool>,
    /// On a cluster whose nodes share their rate limits (`[cache] backend = "redis"`): the store, to tell
    /// every node about enqueued outbox items. Delivery then runs on every node ([`deliver_share`]), and the
    /// leader's workers leave it out (they keep the sweep of unconfigured destinations' items).
    pub spread_over: Option<Arc<PgStore>>,
    /// The cluster's partition count (what the leader routes deliveries by when work is spread).
    pub partitions: u32,
    /// Wakes the processing of this node's partitions (when work is spread): on the leader's routing, and
    /// on new deliveries, which come routed when the node that acknowledged them computed their partition.
    pub wake_partitions: Arc<Notify>,
}

pub type PushTargets = Vec<(String, Arc<dyn Destination>, crate::outbox::DeliverySettings)>;

impl Workers {
    /// Starts every worker; each stops when `shutdown` turns true.
    pub fn spawn(&self, shutdown: watch::Receiver<bool>) -> anyhow::Result<Vec<JoinHandle<()>>> {
        let work = &self.runtime;
        let pipeline = Arc::new((self.make_pipeline)());
        // Delivery runs here with the other workers, unless every node delivers its partitions: then the
        // leader keeps the sweep of unconfigured destinations' items, and enqueued items wake this node's
        // workers at once and the other nodes' through PostgreSQL.
        let mut forwarder = None;
        let enqueued = match &self.spread_over {
            None => self.wake_outbox.clone(),
            Some(pg) => {
                let hint = Arc::new(Notify::new());
                forwarder = Some(work.spawn(forward_outbox_hints(
                    pg.clone(),
                    hint.clone(),
                    self.wake_outbox.clone(),
                    shutdown.clone(),
                )));
                hint
            }
        };
        let spread = self.spread_over.is_some();
        let delivery =
            self.outbox.clone().run_parts(self.wake_outbox.clone(), shutdown.clone(), !spread, true);
        // Processing: here, or, when every node processes its partitions, routing the log to them.
        let processing = match &self.spread_over {
            None => work.spawn(pipeline.run(self.wake_pipeline.clone(), enqueued, shutdown.clone())),
            Some(pg) => work.spawn(route(
                pg.clone(),
                pipeline.clone(),
                self.partitions,
                self.wake_pipeline.clone(),
                shutdown.clone(),
            )),
        };
        let mut tasks = vec![
            processing,
            work.spawn(delivery),
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
        tasks.extend(forwarder);
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
        let sweep = crate::retention::RetentionSweep {
            store: self.store.clone(),
            work: self.retention.0,
            audit: self.retention.1,
        };
        if sweep.enabled() {
            tasks.push(work.spawn(sweep.run(shutdown.clone())));
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

/// How often the leader looks whether PostgreSQL's statistics of the fastest-changing tables need refreshing
/// (in case the server's autovacuum is off or behind: the due-outbox query's plan depends on them); it
/// analyses only the tables that changed by a tenth since their last analyse.
pub const ANALYZE_EVERY: Duration = Duration::from_secs(15);

/// A node is shown as live while its last heartbeat is younger than this.
pub const LIVE_FOR: Duration = Duration::from_millis(nudge_store::postgres::schema::NODE_LIVE_FOR_MS as u64);

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
    // New deliveries wake the leader's processing (or routing) and, when work is spread, this node's own
    // processing of its partitions: a delivery routed where it was acknowledged is routed by nobody else.
    let mut woken = vec![workers.wake_pipeline.clone()];
    if workers.spread_over.is_some() {
        woken.push(workers.wake_partitions.clone());
    }
    let listener = tokio::spawn(relay_hints(pg.clone(), Hints::Deliveries, woken, shutdown.clone()));
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
                            match pg.analyze_hot_tables(true).await {
                                Ok(tables) if !tables.is_empty() => {
                                    tracing::debug!(?tables, "refreshed the planner's statistics")
                                }
                                Ok(_) => {}
                                Err(e) => {
                                    tracing::warn!(error = %e, "refreshing the planner's statistics failed")
                                }
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

/// Passes each "enqueued" hint of the pipeline on to this node's destination workers, and to every node's
/// through a PostgreSQL notification (at most one every [`HINT_SPACING`]).
async fn forward_outbox_hints(
    pg: Arc<PgStore>,
    hint: Arc<Notify>,
    local: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        tokio::select! {
            _ = hint.notified() => {}
            _ = shutdown.changed() => return,
        }
        local.notify_one();
        if let Err(e) = pg.notify_outbox().await {
            tracing::debug!(error = %e, "notifying the nodes of enqueued items failed (they also poll)");
        }
        tokio::time::sleep(HINT_SPACING).await;
    }
}

/// The least time between two "enqueued" notifications from the leader.
const HINT_SPACING: Duration = Duration::from_millis(2);

/// How many deliveries the router routes in one statement.
const ROUTE_BATCH: usize = 1000;

/// Routes the log until `shutdown`, on the leader of a cluster whose nodes process by partition: each
/// pending delivery not routed yet gets the partition of the customer id its first event names (spread by
/// seq when it names none, as a product update does), and every node is told. A delivery whose route is
/// written is processed by the node holding that partition, in seq order with the rest of it.
pub async fn route(
    pg: Arc<PgStore>,
    pipeline: Arc<Pipeline>,
    of: u32,
    wake: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        let routed = match pg.unrouted_deliveries(ROUTE_BATCH).await {
            Ok(batch) if batch.is_empty() => Ok(0),
            Ok(batch) => {
                let routes: Vec<(i64, u32)> =
                    batch.iter().map(|d| (d.seq, pipeline.route_of(d, of))).collect();
                pg.route_deliveries(&routes).await.map(|n| n as usize)
            }
            Err(e) => Err(e),
        };
        match routed {
            Ok(0) => {
                tokio::select! {
                    _ = wake.notified() => {}
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.changed() => {}
                }
            }
            Ok(n) => {
                crate::telemetry::routed(n);
                if let Err(e) = pg.notify_routed().await {
                    tracing::debug!(error = %e, "telling the nodes of routed deliveries failed (they also poll)");
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "routing deliveries failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                    _ = shutdown.changed() => {}
                }
            }
        }
    }
}

/// For sharing the partitions out, a node counts as live while its last heartbeat is younger than this
/// (shorter than [`LIVE_FOR`], so a dead node's partitions are taken over sooner).
pub const SHARE_LIVE_FOR: Duration = Duration::from_secs(5);

/// Delivers this node's share of the outbox until `shutdown`, on a cluster whose nodes share their rate
/// limits: holds leases on about `1/n` of the `of` partitions (n the live nodes), takes free ones while it
/// holds fewer, gives back the extra ones when nodes join, and runs the destination workers on the partitions
/// it holds. A partition just taken is delivered after [`TAKEOVER_GRACE`] (its former holder may be finishing
/// a send); one given back is first drained (the workers stop after their round and start again without
/// it). When the leases' connection fails, the workers are stopped at once: another node may hold the
/// partitions from then on.
pub async fn deliver_share(
    pg: Arc<PgStore>,
    outbox: Arc<OutboxWorker>,
    wake: Arc<Notify>,
    node_id: String,
    of: u32,
    processing: Option<Arc<Workers>>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut listeners =
        vec![tokio::spawn(relay_hints(pg.clone(), Hints::Outbox, vec![wake.clone()], shutdown.clone()))];
    // Processing of the held partitions: woken by the leader's routing, and by new deliveries (relayed by
    // [`lead`]); what it enqueues wakes this node's destination workers at once and the other nodes'
    // through PostgreSQL.
    let routed = processing.as_ref().map_or_else(|| Arc::new(Notify::new()), |w| w.wake_partitions.clone());
    let enqueued = Arc::new(Notify::new());
    if processing.is_some() {
        listeners.push(tokio::spawn(relay_hints(
            pg.clone(),
            Hints::Routed,
            vec![routed.clone()],
            shutdown.clone(),
        )));
        listeners.push(tokio::spawn(forward_outbox_hints(
            pg.clone(),
            enqueued.clone(),
            wake.clone(),
            shutdown.clone(),
        )));
    }
    // Nodes start their search at different partitions, so that nodes starting together rarely race.
    let offset = nudge_store::partition_of(&node_id, of);
    loop {
        if *shutdown.borrow() {
            break;
        }
        let mut leases = match pg.partition_leases().await {
            Ok(l) => l,
            Err(e) => {
                tracing::warn!(error = %e, "connecting for the partition leases failed; retrying");
                tokio::select! {
                    _ = tokio::time::sleep(HEARTBEAT) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
        };
        let mut held: std::collections::BTreeMap<u32, tokio::time::Instant> = Default::default();
        let mut active: Vec<u32> = Vec::new();
        let mut running: Option<(watch::Sender<bool>, JoinHandle<()>)> = None;
        let mut processing_run: Option<(watch::Sender<bool>, JoinHandle<()>)> = None;
        let mut recorded: Option<Vec<u32>> = None;
        let lost = loop {
            let share = match pg.nodes().await {
                Ok(nodes) => {
                    let now = crate::outbox::now_ms();
                    let live = nodes
                        .iter()
                        .filter(|n| {
                            n.node_id != node_id && now - n.seen_at_ms < SHARE_LIVE_FOR.as_millis() as i64
                        })
                        .count() as u32
                        + 1;
                    Some(of.div_ceil(live))
                }
                Err(e) => {
                    tracing::warn!(error = %e, "reading the cluster's nodes failed");
                    None
                }
            };
            let mut want: Vec<u32> = active.clone();
            let mut give_back: Vec<u32> = Vec::new();
            if let Some(share) = share {
                // Too many (nodes joined): give back the ones not delivered yet first, then the highest.
                while held.len() > share as usize {
                    let p = held
                        .keys()
                        .copied()
                        .rev()
                        .find(|p| !active.contains(p))
                        .or_else(|| held.keys().copied().next_back())
                        .unwrap_or_default();
                    held.remove(&p);
                    want.retain(|x| *x != p);
                    give_back.push(p);
                }
                // Too few: take free ones, starting at this node's offset.
                let mut tried = 0;
                while held.len() < share as usize && tried < of {
                    let p = (offset + tried) % of;
                    tried += 1;
                    if held.contains_key(&p) {
                        continue;
                    }
                    match leases.try_take(p).await {
                        Ok(true) => {
                            held.insert(p, tokio::time::Instant::now() + TAKEOVER_GRACE);
                        }
                        Ok(false) => {}
                        Err(e) => {
                            tracing::warn!(error = %e, "taking a partition lease failed");
                            break;
                        }
                    }
                }
            }
            // Delivered: the held partitions whose grace is over.
            let now = tokio::time::Instant::now();
            want.retain(|p| held.contains_key(p));
            for (p, at) in &held {
                if *at <= now && !want.contains(p) {
                    want.push(*p);
                }
            }
            want.sort_unstable();
            if want != active {
                let dropped: Vec<u32> = active.iter().copied().filter(|p| !want.contains(p)).collect();
                outbox.share.set(Some(Partitions { of, parts: want.clone() }));
                if let Some(workers) = &processing {
                    // A pipeline processes a fixed set: the one running lets its batch in flight land, and
                    // one for the new set starts.
                    if let Some((stop, task)) = processing_run.take() {
                        let _ = stop.send(true);
                        let _ = task.await;
                    }
                    if !want.is_empty() {
                        let mut pipeline = (workers.make_pipeline)();
                        pipeline.share =
                            Some(crate::pipeline::ProcessingShare { pg: pg.clone(), parts: want.clone() });
                        let (stop, rx) = watch::channel(false);
                        let task = tokio::spawn(Arc::new(pipeline).run(routed.clone(), enqueued.clone(), rx));
                        processing_run = Some((stop, task));
                        routed.notify_one();
                    }
                }
                if !dropped.is_empty() {
                    // Drain: the workers finish their round (and record it) before the leases go back.
                    if let Some((stop, task)) = running.take() {
                        let _ = stop.send(true);
                        let _ = task.await;
                    }
                }
                active = want;
                tracing::info!(node = %node_id, partitions = ?active, "delivering these partitions");
                crate::telemetry::cluster_partitions(active.len());
                if running.is_none() {
                    let (stop, rx) = watch::channel(false);
                    running = Some((stop, tokio::spawn(outbox.clone().run_destinations(wake.clone(), rx))));
                }
                wake.notify_one();
            }
            // Leases given up above go back now that nothing here delivers them.
            for p in give_back {
                if let Err(e) = leases.give_back(p).await {
                    tracing::warn!(error = %e, partition = p, "giving a partition lease back failed");
                }
            }
            if recorded.as_ref() != Some(&active) {
                match pg.record_partitions(&node_id, &active).await {
                    Ok(()) => recorded = Some(active.clone()),
                    Err(e) => tracing::warn!(error = %e, "recording the delivered partitions failed"),
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(LEASE_CHECK) => {}
                _ = shutdown.changed() => break false,
            }
            if !leases.alive(LEASE_TIMEOUT).await {
                break true;
            }
        };
        outbox.share.set(Some(Partitions { of, parts: Vec::new() }));
        if let Some((stop, task)) = processing_run.take() {
            let _ = stop.send(true);
            if lost {
                task.abort();
            }
            let _ = task.await;
        }
        if let Some((stop, task)) = running.take() {
            let _ = stop.send(true);
            if lost {
                tracing::warn!(node = %node_id, "the partition leases were lost; stopping delivery at once");
                task.abort();
            }
            let _ = task.await;
        }
        crate::telemetry::cluster_partitions(0);
        leases.release_all().await;
        let _ = pg.record_partitions(&node_id, &[]).await;
    }
    for l in listeners {
        let _ = l.await;
    }
}

/// Which notifications [`relay_hints`] passes on.
#[derive(Clone, Copy)]
enum Hints {
    /// Deliveries committed on any node (for the leader's processing).
    Deliveries,
    /// Outbox items enqueued by the leader (for every node's destination workers).
    Outbox,
    /// Deliveries the leader routed to partitions (for every node's processing).
    Routed,
}

/// Wakes each of `wake` on every notification of `hints` from PostgreSQL until `shutdown`, listening again
/// after a lost connection (a lost hint costs only latency: the workers also poll).
async fn relay_hints(
    pg: Arc<PgStore>,
    hints: Hints,
    wake: Vec<Arc<Notify>>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        let listening = match hints {
            Hints::Deliveries => pg.listen_deliveries().await,
            Hints::Outbox => pg.listen_outbox().await,
            Hints::Routed => pg.listen_routed().await,
        };
        match listening {
            Ok(mut l) => loop {
                tokio::select! {
                    n = l.recv() => match n {
                        Ok(_) => wake.iter().for_each(|w| w.notify_one()),
                        Err(e) => {
                            tracing::warn!(error = %e, "the store's notifications stopped; listening again");
                            break;
                        }
                    },
                    _ = shutdown.changed() => return,
                }
            },
            Err(e) => tracing::warn!(error = %e, "listening for the store's notifications failed; retrying"),
        }
        tokio::select! {
            _ = tokio::time::sleep(HEARTBEAT) => {}
            _ = shutdown.changed() => return,
        }
    }
}
