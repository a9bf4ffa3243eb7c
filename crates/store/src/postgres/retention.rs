//! Retention in the PostgreSQL backend: finished work and old audit records removed oldest first, in bounded
//! steps, each kind in a transaction of its own. Each kind finds where its old rows end by bisecting the ids
//! ([`PgStore::frontier`]; deliveries have an index on their receipt time), then walks its primary key from
//! the start, so a step costs the rows it removes plus the few old rows that stay (quarantined deliveries,
//! dead letters).
//! The removed rows' space is reused once autovacuum has passed; the files do not shrink.

use super::*;

#[async_trait]
impl Retention for PgStore {
    async fn prune(&self, r: PruneRequest) -> Result<Pruned> {
        let limit = r.limit.max(1) as i64;
        let mut out = Pruned::default();
        if let Some(before) = r.work_before_ms {
            // Processed deliveries only (the status is checked again on the row, so one requeued meanwhile
            // stays), and none whose dedupe ids are still remembered: a redelivery of it must still be
            // recognised.
            out.deliveries = sqlx::query(
                "DELETE FROM deliveries WHERE seq IN (
                     SELECT seq FROM deliveries
                     WHERE seq < COALESCE((SELECT MIN(seq) FROM delivery_keys), 9223372036854775807)
                       AND received_at < $1 AND status = 'processed'
                     ORDER BY seq LIMIT $2)
                 AND status = 'processed'",
            )
            .bind(before)
            .bind(limit)
            .execute(&self.pool)
            .await?
            .rows_affected();
            // Items of finished traces only: a trace's terminal state is worked out from its items.
            out.outbox = sqlx::query(
                "DELETE FROM outbox WHERE id IN (
                     SELECT o.id FROM outbox o
                     WHERE o.id < $1 AND o.created_at < $2
                       AND o.status IN ('delivered', 'rejected', 'coalesced')
                       AND EXISTS (SELECT 1 FROM terminal t WHERE t.trace_id = o.trace_id)
                     ORDER BY o.id LIMIT $3)
                 AND status IN ('delivered', 'rejected', 'coalesced')",
            )
            .bind(self.frontier(Frontier::Outbox, before).await?)
            .bind(before)
            .bind(limit)
            .execute(&self.pool)
            .await?
            .rows_affected();
        }
        if let Some(before) = r.audit_before_ms {
            let frontier = self.frontier(Frontier::Audit, before).await?;
            let mut tx = self.begin().await?;
            let traces: Vec<String> = sqlx::query_scalar(
                "WITH gone AS (
                     DELETE FROM audit WHERE id IN (
                         SELECT id FROM audit WHERE id < $1 AND at < $2 ORDER BY id LIMIT $3)
                     RETURNING trace_id)
                 SELECT trace_id FROM gone",
            )
            .bind(frontier)
            .bind(before)
            .bind(limit)
            .fetch_all(&mut *tx)
            .await?;
            out.audit = traces.len() as u64;
            let mut traces = traces;
            traces.sort_unstable();
            traces.dedup();
            out.terminal = sqlx::query(
                "DELETE FROM terminal t WHERE t.trace_id = ANY($1) AND t.at < $2
                   AND NOT EXISTS (SELECT 1 FROM audit a WHERE a.trace_id = t.trace_id)
                   AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.trace_id = t.trace_id)
                   AND NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.trace_id = t.trace_id AND d.status = 'quarantined')",
            )
            .bind(&traces)
            .bind(before)
            .execute(&mut *tx)
            .await?
            .rows_affected();
            tx.commit().await?;
        }
        Ok(out)
    }
}

/// The tables [`PgStore::frontier`] bisects, with their id and time columns.
#[derive(Clone, Copy)]
enum Frontier {
    Outbox,
    Audit,
}

impl PgStore {
    /// The first id whose time is at or after `before` (past the last id when every row is older), by
    /// bisecting the ids: a few index probes, where walking the old rows in order would read every row a step
    /// leaves behind again at the next. The time grows with the id near enough (rows are written in time
    /// order); a row out of order near the frontier waits for a later sweep.
    async fn frontier(&self, table: Frontier, before: i64) -> Result<i64> {
        let (bounds, probe) = match table {
            Frontier::Outbox => (
                "SELECT MIN(id), MAX(id) FROM outbox",
                "SELECT id, created_at FROM outbox WHERE id >= $1 ORDER BY id LIMIT 1",
            ),
            Frontier::Audit => (
                "SELECT MIN(id), MAX(id) FROM audit",
                "SELECT id, at FROM audit WHERE id >= $1 ORDER BY id LIMIT 1",
            ),
        };
        let mut c = self.pool.acquire().await?;
        let (min, max): (Option<i64>, Option<i64>) = sqlx::query_as(bounds).fetch_one(&mut *c).await?;
        let (Some(mut lo), Some(max)) = (min, max) else { return Ok(0) };
        let mut hi = max + 1;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let row: Option<(i64, i64)> = sqlx::query_as(probe).bind(mid).fetch_optional(&mut *c).await?;
            match row {
                Some((id, t)) if t < before => lo = id + 1,
                _ => hi = mid,
            }
        }
        Ok(lo)
    }
}
