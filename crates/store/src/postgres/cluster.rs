//! Several nodes on one PostgreSQL database: who is there, and who leads.
//!
//! Every node accepts webhooks and API calls (they go to the shared tables). The work that must happen once
//! cluster-wide and in order — processing the log, delivering the outbox, firing timers and schedules,
//! privacy jobs, batch pushes — runs on the node that holds the leader lease: a session-level advisory lock
//! on a connection of its own. PostgreSQL releases the lock the moment that connection ends (the node was
//! killed, its machine is gone, the network cut it off), and another node takes the lease on its next try.
//! A leader that loses its lease connection stops its workers before it tries again.

use super::*;
use sqlx::Connection;

/// The advisory lock class of the leader lease ("lead" in ASCII); the lock's second key is the schema's hash,
/// so deployments in different schemas of one database each have a leader.
const LEADER_LOCK: i32 = 0x6c65_6164;

/// A node as the cluster table records it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct NodeRecord {
    pub node_id: String,
    pub address: String,
    pub version: String,
    pub started_at_ms: i64,
    pub seen_at_ms: i64,
    pub leader: bool,
    /// The schema version the node's build applies ([`super::schema::SCHEMA_VERSION`]).
    pub schema_version: i64,
}

/// The leader lease while held: dropping it (or the connection failing) releases it.
pub struct Lease {
    conn: sqlx::PgConnection,
}

/// The tables the leader's statistics refresh looks after.
const HOT_TABLES: &[&str] =
    &["deliveries", "delivery_keys", "outbox", "customers", "aliases", "timers", "terminal"];

/// A table is analysed again once more rows than this changed since its last analyse, plus
/// [`REANALYZE_SHARE`] of its size then.
pub const REANALYZE_ROWS: f64 = 50.0;

/// See [`REANALYZE_ROWS`]: a tenth, so a growing table's counted size stays within about a tenth of the truth.
pub const REANALYZE_SHARE: f64 = 0.1;

/// The statistics target of the refresh (PostgreSQL's default is 100; it samples 300 rows per unit).
pub const REFRESH_STATISTICS_TARGET: u32 = 10;

impl Lease {
    /// True while the lease's connection answers within `timeout` (and so still holds the lock).
    pub async fn alive(&mut self, timeout: Duration) -> bool {
        matches!(tokio::time::timeout(timeout, self.conn.ping()).await, Ok(Ok(())))
    }

    /// Gives the lease up at once (closing its connection releases the lock).
    pub async fn release(self) {
        let _ = self.conn.close().await;
    }
}

impl PgStore {
    /// Takes the leader lease if no other node holds it.
    pub async fn try_lead(&self) -> Result<Option<Lease>> {
        let mut conn = sqlx::PgConnection::connect_with(&self.options).await?;
        let got: bool = sqlx::query_scalar("SELECT pg_try_advisory_lock($1, hashtext(current_schema()))")
            .bind(LEADER_LOCK)
            .fetch_one(&mut conn)
            .await?;
        if got {
            Ok(Some(Lease { conn }))
        } else {
            let _ = conn.close().await;
            Ok(None)
        }
    }

    /// Records that `node` is alive now (creating its row), and whether it leads; a leader clears the flag of
    /// every other node, so a dead leader's row never claims the lead.
    pub async fn heartbeat(&self, node: &NodeRecord) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO cluster_nodes (node_id, address, version, started_at, seen_at, leader, schema_version)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (node_id) DO UPDATE SET address = excluded.address, version = excluded.version,
               started_at = excluded.started_at, seen_at = excluded.seen_at, leader = excluded.leader,
               schema_version = excluded.schema_version",
        )
        .bind(&node.node_id)
        .bind(&node.address)
        .bind(&node.version)
        .bind(node.started_at_ms)
        .bind(node.seen_at_ms)
        .bind(node.leader)
        .bind(node.schema_version)
        .execute(&mut *tx)
        .await?;
        if node.leader {
            sqlx::query("UPDATE cluster_nodes SET leader = FALSE WHERE node_id <> $1 AND leader")
                .bind(&node.node_id)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// Every node recorded, by id.
    pub async fn nodes(&self) -> Result<Vec<NodeRecord>> {
        let rows: Vec<(String, String, String, i64, i64, bool, i64)> = sqlx::query_as(
            "SELECT node_id, address, version, started_at, seen_at, leader, schema_version
             FROM cluster_nodes ORDER BY node_id",
        )
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .map(|(node_id, address, version, started_at_ms, seen_at_ms, leader, schema_version)| {
                NodeRecord { node_id, address, version, started_at_ms, seen_at_ms, leader, schema_version }
            })
            .collect())
    }

    /// Refreshes the planner's statistics of the tables whose size and shape change fastest (the log, the
    /// outbox, states, timers, terminal states): the due-outbox and pending-delivery queries depend on them,
    /// and a server with autovacuum off would otherwise plan them for empty tables. Done with autovacuum on
    /// too: its analyse waits for a tenth of a table to change, so the statistics of a table that grows from
    /// nothing (a new deployment, a busy hour) describe a table a fraction of its size, and the plans of the
    /// outbox's queries and the identity lookups went from index probes to walks of every pending item when
    /// it was left to autovacuum (measured: up to 0.7–3 ms a call instead of 0.05–0.15 ms).
    ///
    /// `only_changed`: analyse only the tables whose rows changed by more than [`REANALYZE_SHARE`] of their
    /// last counted size (plus [`REANALYZE_ROWS`]) since their last analyse, as PostgreSQL's counters say
    /// (they lag a second or so). The leader's periodic refresh uses it: analysing the log every 15 s cost
    /// a second of a core at 1,000 deliveries a second, a stall that showed in the pushes' tail latency,
    /// while a table that keeps a steady size needs no fresh statistics. Returns the tables analysed.
    ///
    /// Each column's statistics are drawn from [`REFRESH_STATISTICS_TARGET`] × 300 sampled rows, which is
    /// plenty for what these queries ask of them (row counts, the share of a status) at a tenth of the
    /// default's cost. On a connection of its own, without the slow-statement warning: under load it takes
    /// a moment, which is expected of it and would otherwise be logged every time.
    pub async fn analyze_hot_tables(&self, only_changed: bool) -> Result<Vec<String>> {
        use sqlx::ConnectOptions;
        let options =
            self.options.clone().log_slow_statements(tracing::log::LevelFilter::Off, Duration::ZERO);
        let mut conn = sqlx::PgConnection::connect_with(&options).await?;
        let done = async {
            let tables: Vec<String> = if only_changed {
                sqlx::query_scalar(
                    "SELECT s.relname::text FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid
                     WHERE s.schemaname = current_schema() AND s.relname = ANY($1)
                       AND s.n_mod_since_analyze > $2 + $3 * greatest(c.reltuples, 0)
                     ORDER BY 1",
                )
                .bind(HOT_TABLES)
                .bind(REANALYZE_ROWS)
                .bind(REANALYZE_SHARE)
                .fetch_all(&mut conn)
                .await?
            } else {
                HOT_TABLES.iter().map(|t| t.to_string()).collect()
            };
            if !tables.is_empty() {
                // The names come from `HOT_TABLES`, not from outside.
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!(
                    "SET default_statistics_target = {REFRESH_STATISTICS_TARGET}; ANALYZE {}",
                    tables.join(", ")
                )))
                .execute(&mut conn)
                .await?;
            }
            Ok::<_, sqlx::Error>(tables)
        }
        .await;
        let _ = conn.close().await;
        Ok(done?)
    }

    /// Forgets nodes not seen since `before_ms` (a node that comes back registers again).
    pub async fn forget_nodes_before(&self, before_ms: i64) -> Result<u64> {
        Ok(sqlx::query("DELETE FROM cluster_nodes WHERE seen_at < $1")
            .bind(before_ms)
            .execute(&self.pool)
            .await?
            .rows_affected())
    }

    /// Waits for deliveries committed by any node: yields each time one or more transactions that committed
    /// deliveries end (a hint to look at the log, not a message to act on; coalesced by PostgreSQL).
    pub async fn listen_deliveries(&self) -> Result<sqlx::postgres::PgListener> {
        let mut l = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        l.listen(&self.wake_channel()).await?;
        Ok(l)
    }

    /// The NOTIFY channel of committed deliveries (one per schema).
    pub(crate) fn wake_channel(&self) -> String {
        format!("nudge_deliveries_{}", self.schema)
    }
}
