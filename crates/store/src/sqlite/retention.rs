//! Retention in the SQLite backend: finished work and old audit records removed oldest first, in bounded
//! steps. Each kind finds where its old rows end by bisecting the ids ([`frontier`]), then walks them in id
//! order from the start, so a step costs the rows it removes plus the few old rows that stay (quarantined
//! deliveries, dead letters), whatever the table's size.

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
                    let frontier = frontier(tx, "outbox", "id", "created_at", before)?;
                    Ok(tx
                        .prepare_cached(
                            "DELETE FROM outbox WHERE id IN (
                                 SELECT o.id FROM outbox o
                                 WHERE o.id < ?1 AND o.created_at < ?2
                                   AND o.status IN ('delivered', 'rejected', 'coalesced')
                                   AND EXISTS (SELECT 1 FROM terminal t WHERE t.trace_id = o.trace_id)
                                 ORDER BY o.id LIMIT ?3)",
                        )?
                        .execute(params![frontier, before, limit])? as u64)
                })
                .await?;
        }
        if let Some(before) = r.audit_before_ms {
            let (audit, terminal) = self
                .write(move |tx| {
                    let frontier = frontier(tx, "audit", "id", "at", before)?;
                    let gone: Vec<(i64, String)> = tx
                        .prepare_cached(
                            "SELECT id, trace_id FROM audit WHERE id < ?1 AND at < ?2 ORDER BY id LIMIT ?3",
                        )?
                        .query_map(params![frontier, before, limit], |r| Ok((r.get(0)?, r.get(1)?)))?
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
                           AND NOT EXISTS (SELECT 1 FROM audit WHERE trace_id = ?1)
                           AND NOT EXISTS (SELECT 1 FROM outbox WHERE trace_id = ?1)
                           AND NOT EXISTS (SELECT 1 FROM processed WHERE trace_id = ?1 AND status = 'quarantined')",
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
                let frontier = frontier(c, "log.deliveries", "seq", "received_at", before)?;
                let mut st = c.prepare_cached(
                    "SELECT d.seq FROM log.deliveries d
                     WHERE d.seq < (SELECT COALESCE(MAX(seq), 0) FROM main.processed)
                       AND d.seq < COALESCE((SELECT MIN(seq) FROM log.delivery_keys), 9223372036854775807)
                       AND d.seq < ?1 AND d.received_at < ?2
                       AND NOT EXISTS (SELECT 1 FROM main.processed p WHERE p.seq = d.seq AND p.status <> 'processed')
                       AND NOT EXISTS (SELECT 1 FROM main.requeued q WHERE q.seq = d.seq)
                     ORDER BY d.seq LIMIT ?3",
                )?;
                let rows = st.query_map(params![frontier, before, limit], |r| r.get(0))?;
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

/// The first `id` of `table` whose `time` is at or after `before` (past the last id when every row is older),
/// by bisecting the ids: a few index probes, where walking the old rows in order would read every row a step
/// leaves behind again at the next. The time grows with the id near enough (rows are written in time order);
/// a row out of order near the frontier waits for a later sweep.
fn frontier(c: &Connection, table: &str, id: &str, time: &str, before: i64) -> Result<i64> {
    let (min, max): (Option<i64>, Option<i64>) = c
        .prepare_cached(&format!("SELECT MIN({id}), MAX({id}) FROM {table}"))?
        .query_row([], |r| Ok((r.get(0)?, r.get(1)?)))?;
    let (Some(mut lo), Some(max)) = (min, max) else { return Ok(0) };
    let mut hi = max + 1;
    let mut probe = c.prepare_cached(&format!(
        "SELECT {id}, {time} FROM {table} WHERE {id} >= ?1 ORDER BY {id} LIMIT 1"
    ))?;
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        let row: Option<(i64, i64)> = probe.query_row([mid], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
        match row {
            Some((at_id, t)) if t < before => lo = at_id + 1,
            _ => hi = mid,
        }
    }
    Ok(lo)
}
