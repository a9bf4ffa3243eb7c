//! `nudge cluster status`: the nodes sharing this configuration's PostgreSQL store, which one leads, and the
//! work waiting (deliveries to process, outbox items per destination). With the embedded store there is one
//! node and no cluster; the command says so and shows the same backlog.

use crate::config::Config;
use crate::workers::LIVE_FOR;
use anyhow::Context;
use clap::Subcommand;
use nudge_store::postgres::cluster::NodeRecord;
use serde::Serialize;

#[derive(Subcommand)]
pub enum ClusterCmd {
    /// Nodes (live or gone, which leads), and the backlog of deliveries and of each destination's outbox.
    Status {
        #[arg(long)]
        json: bool,
    },
    /// Changes the number of delivery partitions (`bus.partitions`), fixed when the cluster first started.
    /// Every node must be stopped; start them again with `bus.partitions` set to the new count.
    Repartition {
        /// The new count (1 to 4096).
        #[arg(long)]
        partitions: u32,
    },
}

/// What `status` reports.
#[derive(Debug, Serialize)]
pub struct Status {
    /// `sqlite` or `postgres`.
    pub backend: &'static str,
    pub nodes: Vec<NodeStatus>,
    /// The node that leads (runs processing and delivery), if a live one does.
    pub leader: Option<String>,
    /// Deliveries acknowledged and not yet processed (and fetch jobs pending).
    pub deliveries_pending: u64,
    /// Outbox items pending, in all.
    pub outbox_pending: u64,
    /// Outbox items pending by destination.
    pub outbox_by_destination: Vec<(String, u64)>,
    /// The cluster's partition count (recorded at its first start; `None` before, and on the embedded store).
    pub partitions: Option<u32>,
    /// `leader` (the leader delivers every partition) or `partitions` (every node delivers its share: the
    /// rate limits are shared in Redis), by this configuration.
    pub delivery: &'static str,
    /// Partitions no live node delivers now (while `delivery` is `partitions`): their items wait until a
    /// node takes them (within seconds of a node's loss).
    pub partitions_undelivered: Vec<u32>,
    /// Pending outbox items by partition (partitions with some), while `delivery` is `partitions`.
    pub outbox_by_partition: Vec<(u32, u64)>,
    /// `leader` (the leader processes the whole log) or `partitions` (the leader routes each delivery to a
    /// partition and every node processes its share); the same as `delivery`.
    pub processing: &'static str,
    /// While `processing` is `partitions`: pending deliveries the leader has not routed yet.
    pub deliveries_unrouted: u64,
    /// While `processing` is `partitions`: pending deliveries by partition (partitions with some).
    pub deliveries_by_partition: Vec<(u32, u64)>,
    /// With `[bus] backend = "rabbitmq"`: the queue, its messages not yet drained into the log, and whether
    /// a node drains it now (every node registers; the broker lets one drain at a time).
    pub bus: Option<BusStatus>,
    /// The database's schema version, the oldest a node may be built for and still run on it, and the
    /// nudge version that applied it (PostgreSQL only; README "Upgrading a cluster").
    pub schema: Option<nudge_store::postgres::schema::SchemaRecord>,
}

#[derive(Debug, Serialize)]
pub struct BusStatus {
    pub queue: String,
    pub pending: u32,
    pub draining: bool,
}

#[derive(Debug, Serialize)]
pub struct NodeStatus {
    #[serde(flatten)]
    pub node: NodeRecord,
    pub live: bool,
    pub seen_ago_ms: i64,
    /// The partitions the node delivers (as it last recorded them).
    pub partitions: Vec<u32>,
}

pub async fn run(cfg: &Config, cmd: ClusterCmd) -> anyhow::Result<()> {
    match cmd {
        ClusterCmd::Status { json } => {
            let s = status(cfg).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&s)?);
            } else {
                print!("{}", text(&s));
            }
            Ok(())
        }
        ClusterCmd::Repartition { partitions } => {
            println!("{}", repartition(cfg, partitions).await?);
            Ok(())
        }
    }
}

/// Records a new partition count, while no node of the cluster is live.
pub async fn repartition(cfg: &Config, partitions: u32) -> anyhow::Result<String> {
    if !(1..=nudge_store::postgres::partitions::MAX_PARTITIONS).contains(&partitions) {
        anyhow::bail!("--partitions must be between 1 and 4096");
    }
    let (_, cluster) = crate::app::open_backend(cfg).await?;
    let Some(pg) = cluster else {
        anyhow::bail!("the embedded store has no partitions (storage.backend = \"postgres\" for a cluster)");
    };
    let now = crate::outbox::now_ms();
    let live: Vec<String> = pg
        .nodes()
        .await?
        .into_iter()
        .filter(|n| now - n.seen_at_ms < LIVE_FOR.as_millis() as i64)
        .map(|n| n.node_id)
        .collect();
    if !live.is_empty() {
        anyhow::bail!(
            "nodes are running ({}): stop every node first (a node seen in the last {} s counts as running)",
            live.join(", "),
            LIVE_FOR.as_secs()
        );
    }
    let before = pg.recorded_partition_count().await?;
    pg.set_partition_count(partitions).await?;
    Ok(match before {
        Some(b) => {
            format!("partitions: {b} -> {partitions}; start the nodes with bus.partitions = {partitions}")
        }
        None => format!("partitions: {partitions}; start the nodes with bus.partitions = {partitions}"),
    })
}

/// Reads the cluster's state from the store the configuration names.
pub async fn status(cfg: &Config) -> anyhow::Result<Status> {
    let (store, cluster) = crate::app::open_backend(cfg).await?;
    let now = crate::outbox::now_ms();
    let nodes: Vec<NodeStatus> = match &cluster {
        Some(pg) => {
            let owners = pg.partition_owners().await?;
            pg.nodes()
                .await?
                .into_iter()
                .map(|node| {
                    let ago = (now - node.seen_at_ms).max(0);
                    let partitions = owners
                        .iter()
                        .find(|o| o.node_id == node.node_id)
                        .map(|o| o.partitions.clone())
                        .unwrap_or_default();
                    NodeStatus { live: ago < LIVE_FOR.as_millis() as i64, seen_ago_ms: ago, node, partitions }
                })
                .collect()
        }
        None => Vec::new(),
    };
    let spread = cluster.is_some() && cfg.cache.backend == crate::config::CacheBackend::Redis;
    let partitions = match &cluster {
        Some(pg) => pg.recorded_partition_count().await?,
        None => None,
    };
    let (partitions_undelivered, outbox_by_partition) = match (&cluster, partitions) {
        (Some(pg), Some(of)) if spread => {
            let delivered: std::collections::HashSet<u32> =
                nodes.iter().filter(|n| n.live).flat_map(|n| n.partitions.iter().copied()).collect();
            ((0..of).filter(|p| !delivered.contains(p)).collect(), pg.pending_by_partition(of).await?)
        }
        _ => (Vec::new(), Vec::new()),
    };
    let (deliveries_unrouted, deliveries_by_partition) = match &cluster {
        Some(pg) if spread => pg.pending_routes().await?,
        _ => (0, Vec::new()),
    };
    let leader = nodes.iter().find(|n| n.live && n.node.leader).map(|n| n.node.node_id.clone());
    let (deliveries_pending, outbox_pending) = store.backlog().await?;
    let mut outbox_by_destination = Vec::new();
    for d in store.pending_destinations().await? {
        let n = store.pending_for(&d).await?;
        outbox_by_destination.push((d, n));
    }
    let bus = match crate::app::connect_bus(cfg, "nudge/cluster-status").await? {
        Some(bus) => {
            let d = bus.depth().await.context("reading the bus queue's depth")?;
            Some(BusStatus { queue: cfg.bus.queue.clone(), pending: d.ready, draining: d.consumers > 0 })
        }
        None => None,
    };
    Ok(Status {
        backend: if cluster.is_some() { "postgres" } else { "sqlite" },
        nodes,
        leader,
        deliveries_pending,
        outbox_pending,
        outbox_by_destination,
        partitions,
        delivery: if spread { "partitions" } else { "leader" },
        partitions_undelivered,
        outbox_by_partition,
        processing: if spread { "partitions" } else { "leader" },
        deliveries_unrouted,
        deliveries_by_partition,
        bus,
        schema: match &cluster {
            Some(pg) => pg.schema_record().await?,
            None => None,
        },
    })
}

fn text(s: &Status) -> String {
    use std::fmt::Write;
    let mut out = String::new();
    if s.backend == "sqlite" {
        let _ = writeln!(
            out,
            "embedded store: one node, no cluster (storage.backend = \"postgres\" to scale out)"
        );
    } else {
        let live = s.nodes.iter().filter(|n| n.live).count();
        let _ = writeln!(out, "nodes: {live} live of {} recorded", s.nodes.len());
        let _ = writeln!(
            out,
            "{:<28} {:<22} {:<8} {:>6} {:<7} {:>10} {:>11}",
            "NODE", "ADDRESS", "VERSION", "SCHEMA", "STATE", "SEEN", "PARTITIONS"
        );
        for n in &s.nodes {
            let state = match (n.live, n.node.leader) {
                (true, true) => "leader",
                (true, false) => "live",
                (false, _) => "gone",
            };
            let _ = writeln!(
                out,
                "{:<28} {:<22} {:<8} {:>6} {:<7} {:>9.1}s {:>11}",
                n.node.node_id,
                n.node.address,
                n.node.version,
                n.node.schema_version,
                state,
                n.seen_ago_ms as f64 / 1000.0,
                n.partitions.len()
            );
        }
        match &s.leader {
            Some(l) if s.delivery == "partitions" => {
                let _ = writeln!(
                    out,
                    "leader: {l} (routes the log to partitions; every node processes and delivers its partitions)"
                );
            }
            Some(l) => {
                let _ = writeln!(out, "leader: {l} (processes the log and delivers the outbox)");
            }
            None => {
                let _ =
                    writeln!(out, "leader: none live (a node takes the lease within a second of starting)");
            }
        }
    }
    if let Some(of) = s.partitions.filter(|_| s.delivery == "partitions") {
        let undelivered = &s.partitions_undelivered;
        if undelivered.is_empty() {
            let _ = writeln!(out, "partitions: {of}, each processed and delivered by a live node");
        } else {
            let _ = writeln!(
                out,
                "partitions: {of}, {} not processed or delivered now: {undelivered:?}",
                undelivered.len()
            );
        }
    }
    if let Some(b) = &s.bus {
        let draining = if b.draining { "a node drains it" } else { "no node drains it now" };
        let _ = writeln!(
            out,
            "bus: RabbitMQ queue {}: {} message(s) not yet in the log; {draining}",
            b.queue, b.pending
        );
    }
    if let Some(r) = &s.schema {
        let _ = writeln!(
            out,
            "schema: version {} (applied by nudge {}; nodes built for schema {} or later run on it)",
            r.version, r.upgraded_by, r.readable_from
        );
    }
    let _ = writeln!(out, "deliveries pending: {}", s.deliveries_pending);
    if s.processing == "partitions" && s.deliveries_pending > 0 {
        let _ = writeln!(out, "  not routed yet: {}", s.deliveries_unrouted);
        for (p, n) in &s.deliveries_by_partition {
            let _ = writeln!(out, "  partition {p}: {n}");
        }
    }
    let _ = writeln!(out, "outbox pending: {}", s.outbox_pending);
    for (d, n) in &s.outbox_by_destination {
        let _ = writeln!(out, "  {d}: {n}");
    }
    out
}
