//! `nudge cluster status`: the nodes sharing this configuration's PostgreSQL store, which one leads, and the
//! work waiting (deliveries to process, outbox items per destination). With the embedded store there is one
//! node and no cluster; the command says so and shows the same backlog.

use crate::config::Config;
use crate::workers::LIVE_FOR;
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
}

#[derive(Debug, Serialize)]
pub struct NodeStatus {
    #[serde(flatten)]
    pub node: NodeRecord,
    pub live: bool,
    pub seen_ago_ms: i64,
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
    }
}

/// Reads the cluster's state from the store the configuration names.
pub async fn status(cfg: &Config) -> anyhow::Result<Status> {
    let (store, cluster) = crate::app::open_backend(cfg).await?;
    let now = crate::outbox::now_ms();
    let nodes: Vec<NodeStatus> = match &cluster {
        Some(pg) => pg
            .nodes()
            .await?
            .into_iter()
            .map(|node| {
                let ago = (now - node.seen_at_ms).max(0);
                NodeStatus { live: ago < LIVE_FOR.as_millis() as i64, seen_ago_ms: ago, node }
            })
            .collect(),
        None => Vec::new(),
    };
    let leader = nodes.iter().find(|n| n.live && n.node.leader).map(|n| n.node.node_id.clone());
    let (deliveries_pending, outbox_pending) = store.backlog().await?;
    let mut outbox_by_destination = Vec::new();
    for d in store.pending_destinations().await? {
        let n = store.pending_for(&d).await?;
        outbox_by_destination.push((d, n));
    }
    Ok(Status {
        backend: if cluster.is_some() { "postgres" } else { "sqlite" },
        nodes,
        leader,
        deliveries_pending,
        outbox_pending,
        outbox_by_destination,
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
        let _ =
            writeln!(out, "{:<28} {:<22} {:<8} {:<7} {:>10}", "NODE", "ADDRESS", "VERSION", "STATE", "SEEN");
        for n in &s.nodes {
            let state = match (n.live, n.node.leader) {
                (true, true) => "leader",
                (true, false) => "live",
                (false, _) => "gone",
            };
            let _ = writeln!(
                out,
                "{:<28} {:<22} {:<8} {:<7} {:>8.1}s",
                n.node.node_id,
                n.node.address,
                n.node.version,
                state,
                n.seen_ago_ms as f64 / 1000.0
            );
        }
        match &s.leader {
            Some(l) => {
                let _ = writeln!(out, "leader: {l} (processes the log and delivers the outbox)");
            }
            None => {
                let _ =
                    writeln!(out, "leader: none live (a node takes the lease within a second of starting)");
            }
        }
    }
    let _ = writeln!(out, "deliveries pending: {}", s.deliveries_pending);
    let _ = writeln!(out, "outbox pending: {}", s.outbox_pending);
    for (d, n) in &s.outbox_by_destination {
        let _ = writeln!(out, "  {d}: {n}");
    }
    out
}
