//! Delivery partitions shared by the nodes of a cluster.
//!
//! Every customer is in one of `partitions` partitions ([`crate::partition_of`]). A node delivers the outbox
//! items of the partitions whose lease it holds: a session advisory lock per partition, all on one connection
//! of the node's own, so PostgreSQL frees every lease of a node the moment that node's connection ends. One
//! node at a time delivers a partition, so each customer's pushes keep their order while the partitions move
//! between nodes.

use super::*;
use sqlx::Connection;

/// The key of partition `p`'s lease: the schema's hash in the high bits, the partition in the low 16, so
/// deployments in different schemas of one database lease apart. (A one-key advisory lock: another space
/// than the leader lease's two-key lock.)
const LEASE_KEY: &str = "('x' || left(md5(current_schema()), 8))::bit(32)::bigint * 65536 + $1";

/// The most partitions a cluster may have (the lease key keeps 16 bits for the partition).
pub const MAX_PARTITIONS: u32 = 4096;

/// A node's partition leases while its connection lives.
pub struct PartitionLeases {
    conn: sqlx::PgConnection,
}

impl PartitionLeases {
    /// Takes partition `p`'s lease if no other node holds it.
    pub async fn try_take(&mut self, p: u32) -> Result<bool> {
        Ok(sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT pg_try_advisory_lock({LEASE_KEY})")))
            .bind(i64::from(p))
            .fetch_one(&mut self.conn)
            .await?)
    }

    /// Gives partition `p`'s lease back.
    pub async fn give_back(&mut self, p: u32) -> Result<()> {
        sqlx::query(sqlx::AssertSqlSafe(format!("SELECT pg_advisory_unlock({LEASE_KEY})")))
            .bind(i64::from(p))
            .execute(&mut self.conn)
            .await?;
        Ok(())
    }

    /// True while the leases' connection answers within `timeout` (and so still holds them).
    pub async fn alive(&mut self, timeout: Duration) -> bool {
        matches!(tokio::time::timeout(timeout, self.conn.ping()).await, Ok(Ok(())))
    }

    /// Gives every lease up at once: unlocked before the connection closes, so they are free when this
    /// returns (the server ends a closed session's locks a moment later, when its process exits); a
    /// connection that fails here frees them that way.
    pub async fn release_all(mut self) {
        let _ = sqlx::query("SELECT pg_advisory_unlock_all()").execute(&mut self.conn).await;
        let _ = self.conn.close().await;
    }
}

/// Which node delivers which partitions, as the nodes last recorded it.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PartitionOwner {
    pub node_id: String,
    pub partitions: Vec<u32>,
}

impl PgStore {
    /// A connection of its own for this node's partition leases.
    pub async fn partition_leases(&self) -> Result<PartitionLeases> {
        Ok(PartitionLeases { conn: sqlx::PgConnection::connect_with(&self.options).await? })
    }

    /// The cluster's partition count: the one recorded at its first start, or `requested`, recorded now when
    /// none is. A node configured with another count learns the recorded one (and refuses to start).
    pub async fn partition_count(&self, requested: u32) -> Result<u32> {
        sqlx::query(
            "INSERT INTO cluster_meta (key, value) VALUES ('partitions', $1) ON CONFLICT (key) DO NOTHING",
        )
        .bind(requested.to_string())
        .execute(&self.pool)
        .await?;
        let v: String = sqlx::query_scalar("SELECT value FROM cluster_meta WHERE key = 'partitions'")
            .fetch_one(&self.pool)
            .await?;
        v.parse().map_err(|_| StoreError::Corrupt(format!("cluster_meta partitions {v:?}")))
    }

    /// The recorded partition count, if a node has started.
    pub async fn recorded_partition_count(&self) -> Result<Option<u32>> {
        let v: Option<String> = sqlx::query_scalar("SELECT value FROM cluster_meta WHERE key = 'partitions'")
            .fetch_optional(&self.pool)
            .await?;
        v.map(|v| v.parse().map_err(|_| StoreError::Corrupt(format!("cluster_meta partitions {v:?}"))))
            .transpose()
    }

    /// Records a new partition count (a maintenance step, while no node runs: the caller checks).
    pub async fn set_partition_count(&self, n: u32) -> Result<()> {
        sqlx::query(
            "INSERT INTO cluster_meta (key, value) VALUES ('partitions', $1)
             ON CONFLICT (key) DO UPDATE SET value = excluded.value",
        )
        .bind(n.to_string())
        .execute(&self.pool)
        .await?;
        sqlx::query("UPDATE cluster_nodes SET partitions = ''").execute(&self.pool).await?;
        // Deliveries routed under the old count are routed again under the new one.
        sqlx::query("UPDATE deliveries SET part = NULL WHERE part IS NOT NULL AND status <> 'processed'")
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Records the partitions `node_id` delivers now (for `nudge cluster status`).
    pub async fn record_partitions(&self, node_id: &str, parts: &[u32]) -> Result<()> {
        let text = parts.iter().map(u32::to_string).collect::<Vec<_>>().join(",");
        sqlx::query("UPDATE cluster_nodes SET partitions = $2 WHERE node_id = $1")
            .bind(node_id)
            .bind(text)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Every node's recorded partitions, by node id.
    pub async fn partition_owners(&self) -> Result<Vec<PartitionOwner>> {
        let rows: Vec<(String, String)> =
            sqlx::query_as("SELECT node_id, partitions FROM cluster_nodes ORDER BY node_id")
                .fetch_all(&self.pool)
                .await?;
        rows.into_iter()
            .map(|(node_id, text)| {
                let partitions = text
                    .split(',')
                    .filter(|s| !s.is_empty())
                    .map(|s| s.parse().map_err(|_| StoreError::Corrupt(format!("partitions {text:?}"))))
                    .collect::<Result<Vec<u32>>>()?;
                Ok(PartitionOwner { node_id, partitions })
            })
            .collect()
    }

    /// Pending outbox items by partition (only partitions with some), for `nudge cluster status`.
    pub async fn pending_by_partition(&self, of: u32) -> Result<Vec<(u32, u64)>> {
        let rows: Vec<(i64, i64)> = sqlx::query_as(
            "SELECT ('x' || left(md5(customer_id), 8))::bit(32)::bigint % $1 AS p, COUNT(*)
             FROM outbox WHERE status = 'pending' GROUP BY p ORDER BY p",
        )
        .bind(i64::from(of.max(1)))
        .fetch_all(&self.pool)
        .await?;
        Ok(rows.into_iter().map(|(p, n)| (p as u32, n.max(0) as u64)).collect())
    }

    /// Tells every node that outbox items were enqueued (a hint: nodes also poll).
    pub async fn notify_outbox(&self) -> Result<()> {
        self.hint("outbox").await
    }

    /// Waits for [`PgStore::notify_outbox`] hints from any node.
    pub async fn listen_outbox(&self) -> Result<sqlx::postgres::PgListener> {
        self.hints("outbox").await
    }

    /// Sends a hint on this schema's channel `nudge_<kind>_<schema>`.
    pub(crate) async fn hint(&self, kind: &str) -> Result<()> {
        sqlx::query("SELECT pg_notify('nudge_' || $1 || '_' || current_schema(), '')")
            .bind(kind)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// A listener of this schema's channel `nudge_<kind>_<schema>`.
    pub(crate) async fn hints(&self, kind: &str) -> Result<sqlx::postgres::PgListener> {
        let mut l = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        l.listen(&format!("nudge_{kind}_{}", self.schema)).await?;
        Ok(l)
    }
}
