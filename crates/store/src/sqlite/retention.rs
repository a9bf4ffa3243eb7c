//! Retention in the SQLite backend: finished work and old audit records removed oldest first, in bounded
//! steps. Each kind walks its table in id order from the start, so a step costs the rows it removes plus the
//! few old rows that stay (quarantined deliveries, dead letters), whatever the table's size.

use super::*;

#[async_trait]
impl Retention for SqliteStore {
    async fn prune(&self, r: PruneRequest) -> Result<Pruned> {
        let limit = r.limit.max(1) as i64;
        let mut out = Pruned::default();
        if let Some(before) = r.work_before_ms {
            out.deliveries = self.prune_deliveries(before, limit).await?;
            out.outbox = self
                .write(move |tx| {
                    Ok(tx
                        .prepare_cached(
                            "DELETE FROM outbox WHERE id IN (
                                 SELECT o.id FROM outbox o
                                 WHERE o.id < COALESCE((SELECT id FROM outbox WHERE created_at >= ?1 ORDER BY id LIMIT 1),
                                                       9223372036854775807)
                                   AND o.status IN ('delivered', 'rejected', 'coalesced')
                                   AND EXISTS (SELECT 1 FROM terminal t WHERE t.trace_id = o.trace_id)
                                 ORDER BY o.id LIMIT ?2)",
                        )?
                        .execute(params![before, limit])? as u64)
                })
                .await?;
        }
        if let Some(before) = r.audit_before_ms {
            let (audit, terminal) = self
                .write(move |tx| {
                    let gone: Vec<(i64, String)> = tx
                        .prepare_cached(
                            "SELECT id, trace_id FROM audit
                             WHERE id < COALESCE((SELECT id FROM audit WHERE at >= ?1 ORDER BY id LIMIT 1),
                                                 9223372036854775807)
                             ORDER BY id LIMIT ?2",
                        )?
                        .query_map(params![before, limit], |r| Ok((r.get(0)?, r.get(1)?)))?
                        .collect::<rusqlite::Result<_>>()?;
                    let Some(last) = gone.last().map(|g| g.0) else { return Ok((0, 0)) };
                    let audit = tx
                        .prepare_cached("DELETE FROM audit WHERE id <= ?1 AND at < ?2")?
                        .execute(params![last, before])? as u64;
                    let mut traces: Vec<String> = gone.into_iter().map(|g| g.1).collect();
                    traces.sort_unstable();
                    traces.dedup();
                    let mut terminal = 0u64;
                    let mut st = tx.prepare_cached(
                        "DELETE FROM terminal WHERE trace_id = ?1 AND at < ?2
                           AND NOT EXISTS (SELECT 1 FROM audit WHERE trace_id = ?1)",
                    )?;
                    for t in &traces {
                        terminal += st.execute(params![t, before])? as u64;
                    }
                    Ok((audit, terminal))
                })
                .await?;
            out.audit = audit;
            out.terminal = terminal;
        }
        Ok(out)
    }
}

impl SqliteStore {
    /// Processed deliveries received before `before`: chosen on a reader (the log and the processing marks
    /// live in two databases), removed from the log by its own writer, then their marks from `nudge.db`. The
    /// newest mark stays (it is where processing resumes), and so does every delivery whose dedupe ids are
    /// still remembered: a redelivery of it must still be recognised.
    async fn prune_deliveries(&self, before: i64, limit: i64) -> Result<u64> {
        let seqs: Vec<i64> = self
            .read(move |c| {
                let mut st = c.prepare_cached(
                    "SELECT d.seq FROM log.deliveries d
                     WHERE d.seq < (SELECT COALESCE(MAX(seq), 0) FROM main.processed)
                       AND d.seq < COALESCE((SELECT MIN(seq) FROM log.delivery_keys), 9223372036854775807)
                       AND d.seq < COALESCE((SELECT seq FROM log.deliveries WHERE received_at >= ?1 ORDER BY seq LIMIT 1),
                                            9223372036854775807)
                       AND NOT EXISTS (SELECT 1 FROM main.processed p WHERE p.seq = d.seq AND p.status <> 'processed')
                       AND NOT EXISTS (SELECT 1 FROM main.requeued q WHERE q.seq = d.seq)
                     ORDER BY d.seq LIMIT ?2",
                )?;
                let rows = st.query_map(params![before, limit], |r| r.get(0))?;
                Ok(rows.collect::<rusqlite::Result<Vec<i64>>>()?)
            })
            .await?;
        if seqs.is_empty() {
            return Ok(0);
        }
        let list = serde_json::to_string(&seqs)?;
        let again = list.clone();
        let n = self
            .write_on(&self.log_tx, move |tx| {
                Ok(tx
                    .prepare_cached("DELETE FROM deliveries WHERE seq IN (SELECT value FROM json_each(?1))")?
                    .execute([&list])? as u64)
            })
            .await?;
        // Only marks of processed deliveries: a delivery requeued meanwhile keeps its (requeued) mark.
        self.write(move |tx| {
            tx.prepare_cached(
                "DELETE FROM processed WHERE seq IN (SELECT value FROM json_each(?1)) AND status = 'processed'
                   AND NOT EXISTS (SELECT 1 FROM requeued q WHERE q.seq = processed.seq)",
            )?
            .execute([&again])?;
            Ok(())
        })
        .await?;
        Ok(n)
    }
}
