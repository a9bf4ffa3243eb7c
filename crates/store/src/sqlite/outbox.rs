//! Outbox in the SQLite backend.

use super::*;

#[async_trait]
impl Outbox for SqliteStore {
    async fn due_outbox(&self, now_ms: i64, limit: usize) -> Result<Vec<OutboxItem>> {
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT o.id, o.trace_id, o.customer_id, o.destination, o.action, o.attempts, o.origin_us
                 FROM outbox o INDEXED BY outbox_pending_id
                 WHERE o.status = 'pending' AND o.next_attempt_at <= ?1
                   AND o.id = (SELECT MIN(id) FROM outbox p INDEXED BY outbox_pending_customer
                               WHERE p.customer_id = o.customer_id AND p.status = 'pending')
                 ORDER BY o.id LIMIT ?2",
            )?;
            let rows = st.query_map(params![now_ms, limit as i64], outbox_item_of)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn due_outbox_for(&self, destination: &str, now_ms: i64, limit: usize) -> Result<Vec<OutboxItem>> {
        let destination = destination.to_string();
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT o.id, o.trace_id, o.customer_id, o.destination, o.action, o.attempts, o.origin_us
                 FROM outbox o INDEXED BY outbox_pending_dest_id
                 WHERE o.destination = ?3 AND o.status = 'pending' AND o.next_attempt_at <= ?1
                   AND o.id = (SELECT MIN(id) FROM outbox p INDEXED BY outbox_pending_dest_customer
                               WHERE p.destination = ?3 AND p.customer_id = o.customer_id
                                 AND p.status = 'pending')
                 ORDER BY o.id LIMIT ?2",
            )?;
            let rows = st.query_map(params![now_ms, limit as i64, destination], outbox_item_of)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn pending_after_heads(
        &self,
        destination: &str,
        heads: Vec<(CustomerId, i64)>,
        now_ms: i64,
        depth: usize,
    ) -> Result<Vec<OutboxItem>> {
        let destination = destination.to_string();
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT o.id, o.trace_id, o.customer_id, o.destination, o.action, o.attempts, o.origin_us,
                        o.next_attempt_at <= ?4
                 FROM outbox o INDEXED BY outbox_pending_dest_customer
                 WHERE o.destination = ?1 AND o.customer_id = ?2 AND o.status = 'pending' AND o.id > ?3
                 ORDER BY o.id LIMIT ?5",
            )?;
            let mut out = Vec::new();
            for (customer, head) in heads {
                let rows = st.query_map(
                    params![destination, customer.to_string(), head, now_ms, depth as i64],
                    |r| Ok((outbox_item_of(r)?, r.get::<_, bool>(7)?)),
                )?;
                // The run stops at the first item not due yet: nothing after it may be taken ahead of it.
                for row in rows {
                    let (item, due) = row?;
                    if !due {
                        break;
                    }
                    out.push(item);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn pending_for(&self, destination: &str) -> Result<u64> {
        let destination = destination.to_string();
        self.read(move |c| {
            let n: i64 = c
                .prepare_cached(
                    "SELECT COUNT(*) FROM outbox INDEXED BY outbox_pending_dest_id
                     WHERE destination = ?1 AND status = 'pending'",
                )?
                .query_row(params![destination], |r| r.get(0))?;
            Ok(n.max(0) as u64)
        })
        .await
    }

    async fn pending_destinations(&self) -> Result<Vec<String>> {
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT DISTINCT destination FROM outbox INDEXED BY outbox_pending_dest_id
                 WHERE status = 'pending' ORDER BY destination",
            )?;
            let rows = st.query_map([], |r| r.get::<_, String>(0))?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn record_attempts(&self, attempts: Vec<AttemptRecord>) -> Result<()> {
        let attempts: Vec<Attempt> = attempts.into_iter().map(Attempt::new).collect::<Result<_>>()?;
        self.write(move |tx| {
            for a in attempts {
                record_one(tx, a)?;
            }
            Ok(())
        })
        .await
    }

    async fn requeue_dead_letters(&self, filter: DeadLetterFilter) -> Result<usize> {
        self.write(move |tx| {
            let now = ts_to_ms(time::OffsetDateTime::now_utc());
            let t = filter.trace.map(|t| t.to_string());
            let (dest, since) = (filter.destination, filter.since_ms);
            const WHERE: &str =
                "status = 'dead' AND (?1 IS NULL OR trace_id = ?1) AND (?2 IS NULL OR destination = ?2)
                 AND (?3 IS NULL OR created_at >= ?3)";
            let traces: Vec<String> = tx
                .prepare_cached(&format!("SELECT DISTINCT trace_id FROM outbox WHERE {WHERE}"))?
                .query_map(params![t, dest, since], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let n = tx
                .prepare_cached(&format!(
                    "UPDATE outbox SET status = 'pending', attempts = 0, next_attempt_at = ?4 WHERE {WHERE}"
                ))?
                .execute(params![t, dest, since, now])?;
            for tr in &traces {
                tx.prepare_cached("DELETE FROM terminal WHERE trace_id = ?1")?.execute([tr])?;
            }
            Ok(n)
        })
        .await
    }

    async fn dead_letters(
        &self,
        filter: DeadLetterFilter,
        before_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<DeadLetterItem>> {
        self.read(move |c| {
            // Dead items only, newest first, from a partial index: a page reads the dead rows it shows and
            // those the other conditions skip, never the rest of the outbox. One trace's come from the
            // index by trace instead (a handful, sorted).
            const COLUMNS: &str =
                "id, trace_id, customer_id, destination, action, attempts, last_error, created_at";
            const REST: &str = "status = 'dead' AND (?2 IS NULL OR destination = ?2)
                 AND (?3 IS NULL OR created_at >= ?3) AND id < ?4 ORDER BY id DESC LIMIT ?5";
            let sql = match filter.trace {
                Some(_) => format!(
                    "SELECT {COLUMNS} FROM outbox INDEXED BY outbox_dead WHERE trace_id = ?1 AND {REST}"
                ),
                None => format!(
                    "SELECT {COLUMNS} FROM outbox INDEXED BY outbox_dead_id WHERE ?1 IS NULL AND {REST}"
                ),
            };
            let args = params![
                filter.trace.map(|t| t.to_string()),
                filter.destination,
                filter.since_ms,
                before_id.unwrap_or(i64::MAX),
                i64::try_from(limit).unwrap_or(i64::MAX),
            ];
            let rows = c
                .prepare_cached(&sql)?
                .query_map(args, |r| {
                    Ok(DeadLetterItem {
                        id: r.get(0)?,
                        trace_id: parse_trace(&r.get::<_, String>(1)?)?,
                        customer_id: r.get(2)?,
                        destination: r.get(3)?,
                        action_json: r.get(4)?,
                        attempts: u32::try_from(r.get::<_, i64>(5)?).unwrap_or(u32::MAX),
                        last_error: r.get(6)?,
                        created_at_ms: r.get(7)?,
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
        .await
    }

    async fn push_run(&self, destination: &str) -> Result<Option<PushRun>> {
        let destination = destination.to_string();
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT destination, selector, started_at, updated_at, cursor, pushed, rejected, deferred, done
                 FROM push_runs WHERE destination = ?1",
            )?;
            let mut rows = st.query_map([destination], |r| {
                let cursor = r.get::<_, Option<String>>(4)?.as_deref().map(parse_customer).transpose()?;
                Ok(PushRun {
                    destination: r.get(0)?,
                    selector: r.get(1)?,
                    started_at_ms: r.get(2)?,
                    updated_at_ms: r.get(3)?,
                    cursor,
                    pushed: r.get::<_, i64>(5)?.max(0) as u64,
                    rejected: r.get::<_, i64>(6)?.max(0) as u64,
                    deferred: r.get::<_, i64>(7)?.max(0) as u64,
                    done: r.get(8)?,
                })
            })?;
            Ok(rows.next().transpose()?)
        })
        .await
    }

    async fn save_push_run(&self, run: PushRun) -> Result<()> {
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO push_runs
                 (destination, selector, started_at, updated_at, cursor, pushed, rejected, deferred, done)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
            )?
            .execute(params![
                run.destination,
                run.selector,
                run.started_at_ms,
                run.updated_at_ms,
                run.cursor.map(|c| c.to_string()),
                run.pushed as i64,
                run.rejected as i64,
                run.deferred as i64,
                run.done
            ])?;
            Ok(())
        })
        .await
    }
}
