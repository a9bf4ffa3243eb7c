//! Retention in the PostgreSQL backend: finished work and old audit records removed oldest first, in bounded
//! steps, each kind in a transaction of its own. Each kind walks its table's primary key from the start, so a
//! step costs the rows it removes plus the few old rows that stay (quarantined deliveries, dead letters).
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
                     WHERE o.id < COALESCE((SELECT id FROM outbox WHERE created_at >= $1 ORDER BY id LIMIT 1),
                                           9223372036854775807)
                       AND o.status IN ('delivered', 'rejected', 'coalesced')
                       AND EXISTS (SELECT 1 FROM terminal t WHERE t.trace_id = o.trace_id)
                     ORDER BY o.id LIMIT $2)
                 AND status IN ('delivered', 'rejected', 'coalesced')",
            )
            .bind(before)
            .bind(limit)
            .execute(&self.pool)
            .await?
            .rows_affected();
        }
        if let Some(before) = r.audit_before_ms {
            let mut tx = self.begin().await?;
            let traces: Vec<String> = sqlx::query_scalar(
                "WITH gone AS (
                     DELETE FROM audit WHERE id IN (
                         SELECT id FROM audit
                         WHERE id < COALESCE((SELECT id FROM audit WHERE at >= $1 ORDER BY id LIMIT 1),
                                             9223372036854775807)
                         ORDER BY id LIMIT $2)
                     RETURNING trace_id)
                 SELECT trace_id FROM gone",
            )
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
                   AND NOT EXISTS (SELECT 1 FROM audit a WHERE a.trace_id = t.trace_id)",
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
