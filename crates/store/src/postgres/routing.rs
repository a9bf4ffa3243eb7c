//! Processing by partition: the leader routes pending deliveries to partitions, and each node processes the
//! pending deliveries of the partitions it holds.
//!
//! A delivery's partition (`deliveries.part`) is the partition of the customer id its first event names
//! ([`crate::partition_of`], the same hash the outbox's partitions use), so one id's deliveries stay in one
//! partition and are processed in seq order by one node at a time. The route is written once, by the leader
//! (`part IS NULL` until then); `nudge cluster repartition` and requeueing clear it, so a delivery is routed
//! again under the count in force.

use super::*;

impl PgStore {
    /// Pending deliveries no partition is chosen for yet, oldest first.
    pub async fn unrouted_deliveries(&self, limit: usize) -> Result<Vec<StoredDelivery>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE status = 'pending' AND part IS NULL
             ORDER BY seq LIMIT $1"
        )))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(stored_delivery).collect()
    }

    /// Records each delivery's partition (`(seq, partition)`); a delivery routed already keeps its route.
    /// Returns how many were routed.
    pub async fn route_deliveries(&self, routes: &[(i64, u32)]) -> Result<u64> {
        if routes.is_empty() {
            return Ok(0);
        }
        let seqs: Vec<i64> = routes.iter().map(|r| r.0).collect();
        let parts: Vec<i32> = routes.iter().map(|r| r.1 as i32).collect();
        Ok(sqlx::query(
            "UPDATE deliveries d SET part = u.p FROM UNNEST($1::bigint[], $2::int[]) AS u(seq, p)
             WHERE d.seq = u.seq AND d.part IS NULL",
        )
        .bind(&seqs)
        .bind(&parts)
        .execute(&self.pool)
        .await?
        .rows_affected())
    }

    /// Pending deliveries routed to one of `parts` in seq order, besides those of `in_flight` (a batch whose
    /// commit has not landed yet; see [`crate::ports::DeliveryLog::pending_deliveries_besides`]).
    pub async fn pending_deliveries_in(
        &self,
        parts: &[u32],
        in_flight: &[i64],
        limit: usize,
    ) -> Result<Vec<StoredDelivery>> {
        let parts: Vec<i32> = parts.iter().map(|p| *p as i32).collect();
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries
             WHERE status = 'pending' AND part = ANY($1::int[]) AND seq <> ALL($2::bigint[]) ORDER BY seq LIMIT $3"
        )))
        .bind(&parts)
        .bind(in_flight)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(stored_delivery).collect()
    }

    /// Pending deliveries not routed yet, and routed ones by partition (only partitions with some), for
    /// `nudge cluster status`.
    pub async fn pending_routes(&self) -> Result<(u64, Vec<(u32, u64)>)> {
        let rows: Vec<(Option<i32>, i64)> = sqlx::query_as(
            "SELECT part, COUNT(*) FROM deliveries WHERE status = 'pending' GROUP BY part ORDER BY part",
        )
        .fetch_all(&self.pool)
        .await?;
        let mut unrouted = 0;
        let mut routed = Vec::new();
        for (p, n) in rows {
            match p {
                None => unrouted = n.max(0) as u64,
                Some(p) => routed.push((p.max(0) as u32, n.max(0) as u64)),
            }
        }
        Ok((unrouted, routed))
    }

    /// Tells every node that deliveries were routed (a hint: nodes also poll).
    pub async fn notify_routed(&self) -> Result<()> {
        self.hint("routed").await
    }

    /// Waits for [`PgStore::notify_routed`] hints from the leader.
    pub async fn listen_routed(&self) -> Result<sqlx::postgres::PgListener> {
        self.hints("routed").await
    }
}
