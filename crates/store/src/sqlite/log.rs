//! DeliveryLog in the SQLite backend.

use super::*;

#[async_trait]
impl DeliveryLog for SqliteStore {
    async fn commit_delivery(&self, mut d: NewDelivery) -> Result<CommitResult> {
        // Keys are stored newline-separated; refuse a bad one here, before it could fail a whole group.
        if let Some(bad) = d.dedupe_keys.iter().find(|k| k.is_empty() || k.contains('\n')) {
            return Err(StoreError::Database(format!("dedupe key {bad:?} is empty or contains a newline")));
        }
        // Encoded here, on the caller's thread, so the single writer only copies bytes.
        let (codec, body) = encode_body(std::mem::take(&mut d.body));
        d.body = body;
        let (otx, orx) = oneshot::channel();
        // The queue takes no lock, so an ack never waits for a worker that was preempted while enqueueing.
        self.log_tx.send(Cmd::Deliver(Box::new(d), codec, otx)).map_err(|_| StoreError::Closed)?;
        orx.await.map_err(|_| StoreError::Closed)?
    }

    async fn commit_deliveries(&self, ds: Vec<NewDelivery>) -> Result<Vec<CommitResult>> {
        if let Some(bad) = ds.iter().flat_map(|d| &d.dedupe_keys).find(|k| k.is_empty() || k.contains('\n')) {
            return Err(StoreError::Database(format!("dedupe key {bad:?} is empty or contains a newline")));
        }
        // Queued back to back, so the writer takes them into the same group commit (up to its group size).
        let mut replies = Vec::with_capacity(ds.len());
        for mut d in ds {
            let (codec, body) = encode_body(std::mem::take(&mut d.body));
            d.body = body;
            let (otx, orx) = oneshot::channel();
            self.log_tx.send(Cmd::Deliver(Box::new(d), codec, otx)).map_err(|_| StoreError::Closed)?;
            replies.push(orx);
        }
        let mut out = Vec::with_capacity(replies.len());
        let mut first_error = None;
        for r in replies {
            match r.await.map_err(|_| StoreError::Closed).and_then(|r| r) {
                Ok(c) => out.push(c),
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }

    async fn pending_deliveries_after(
        &self,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<StoredDelivery>> {
        let after = after.unwrap_or(i64::MIN);
        // Only what is durable: a commit is visible a moment before its flush is done.
        let durable = self.durable.load(std::sync::atomic::Ordering::SeqCst);
        self.read(move |c| {
            // Requeued deliveries first, then the log after the highest processed seq.
            let mut out: Vec<StoredDelivery> = Vec::new();
            for sql in [
                "SELECT seq, trace_id, source, topic, shop, webhook_id, received_at, headers, body, body_codec
                 FROM log.deliveries WHERE seq IN (SELECT seq FROM main.requeued WHERE seq > ?2) AND seq <= ?3
                 ORDER BY seq LIMIT ?1",
                "SELECT seq, trace_id, source, topic, shop, webhook_id, received_at, headers, body, body_codec
                 FROM log.deliveries WHERE seq > MAX(?2, (SELECT COALESCE(MAX(seq), 0) FROM main.processed))
                   AND seq <= ?3
                 ORDER BY seq LIMIT ?1",
            ] {
                let mut st = c.prepare_cached(sql)?;
                let rows = st.query_map(params![limit as i64, after, durable], stored_delivery)?;
                out.extend(rows.collect::<rusqlite::Result<Vec<_>>>()?);
            }
            out.sort_by_key(|d| d.seq);
            out.dedup_by_key(|d| d.seq);
            out.truncate(limit);
            Ok(out)
        })
        .await
    }

    async fn requeue_quarantined(&self, trace: Option<TraceId>) -> Result<usize> {
        self.write(move |tx| {
            let found: Vec<(i64, String)> = {
                let mut st = tx.prepare_cached(
                    "SELECT seq, trace_id FROM processed WHERE status = 'quarantined' AND (?1 IS NULL OR trace_id = ?1)",
                )?;
                st.query_map([trace.map(|t| t.to_string())], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect::<rusqlite::Result<_>>()?
            };
            for (seq, t) in &found {
                tx.prepare_cached("DELETE FROM processed WHERE seq = ?1")?.execute([seq])?;
                tx.prepare_cached("INSERT OR IGNORE INTO requeued (seq) VALUES (?1)")?.execute([seq])?;
                tx.prepare_cached("DELETE FROM terminal WHERE trace_id = ?1")?.execute([t])?;
            }
            Ok(found.len())
        })
        .await
    }

    async fn quarantined(&self, before_seq: Option<i64>, limit: usize) -> Result<Vec<QuarantinedItem>> {
        self.read(move |c| {
            // Quarantined rows only, newest first (a partial index), each with its log entry by seq. A log
            // entry is never deleted (an erasure empties it), but a missing one leaves the row listed.
            let rows = c
                .prepare_cached(
                    "SELECT p.seq, p.trace_id, d.source, d.topic, d.received_at, p.reason
                     FROM processed AS p INDEXED BY processed_quarantined_seq
                     LEFT JOIN log.deliveries AS d ON d.seq = p.seq
                     WHERE p.status = 'quarantined' AND p.seq < ?1 ORDER BY p.seq DESC LIMIT ?2",
                )?
                .query_map(
                    params![before_seq.unwrap_or(i64::MAX), i64::try_from(limit).unwrap_or(i64::MAX)],
                    |r| {
                        Ok(QuarantinedItem {
                            seq: r.get(0)?,
                            trace_id: parse_trace(&r.get::<_, String>(1)?)?,
                            source: r.get::<_, Option<String>>(2)?.unwrap_or_default(),
                            topic: r.get::<_, Option<String>>(3)?.unwrap_or_default(),
                            received_at_ms: r.get::<_, Option<i64>>(4)?.unwrap_or(0),
                            reason: r.get(5)?,
                        })
                    },
                )?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
        .await
    }

    async fn delivery_ticks(
        &self,
        after_seq: Option<i64>,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<DeliveryTick>> {
        self.read(move |c| {
            let after = match after_seq {
                Some(s) => s,
                None => {
                    // Receipt times grow with the sequence (the ack path's one writer appends in order), so a
                    // binary search over the sequence finds the first delivery at or after `since_ms` in a few
                    // dozen primary-key lookups.
                    let (lo, hi): (i64, i64) = c.query_row(
                        "SELECT COALESCE(MIN(seq), 0), COALESCE(MAX(seq), 0) FROM log.deliveries",
                        [],
                        |r| Ok((r.get(0)?, r.get(1)?)),
                    )?;
                    let mut first = c.prepare_cached(
                        "SELECT seq, received_at FROM log.deliveries WHERE seq >= ?1 ORDER BY seq LIMIT 1",
                    )?;
                    let (mut l, mut h) = (lo, hi + 1);
                    while l < h {
                        let mid = l + (h - l) / 2;
                        match first.query_row([mid], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?))).optional()? {
                            Some((_, at)) if at >= since_ms => h = mid,
                            Some((seq, _)) => l = seq + 1,
                            None => h = mid,
                        }
                    }
                    l - 1
                }
            };
            let mut st = c.prepare_cached(
                "SELECT seq, source, topic, received_at FROM log.deliveries WHERE seq > ?1 ORDER BY seq LIMIT ?2",
            )?;
            let rows = st.query_map(params![after, limit as i64], |r| {
                Ok(DeliveryTick { seq: r.get(0)?, source: r.get(1)?, topic: r.get(2)?, received_at_ms: r.get(3)? })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn prune_dedupe(&self, older_than_ms: i64) -> Result<usize> {
        let keep_from = self
            .write_on(&self.log_tx, move |c| {
                // Rows are in delivery order; everything before the first row young enough goes.
                let keep_from: Option<i64> = c
                    .query_row(
                        "SELECT seq FROM delivery_keys WHERE created_at >= ?1 ORDER BY seq LIMIT 1",
                        [older_than_ms],
                        |r| r.get(0),
                    )
                    .optional()?;
                let keep_from = match keep_from {
                    Some(s) => s,
                    None => {
                        c.query_row("SELECT COALESCE(MAX(seq), 0) + 1 FROM delivery_keys", [], |r| r.get(0))?
                    }
                };
                c.execute("DELETE FROM delivery_keys WHERE seq < ?1", [keep_from])?;
                Ok(keep_from)
            })
            .await?;
        // Only once the rows are gone for good does the index forget them; on the log's writer thread, which
        // holds the index for every group anyway (the caller may be a low-priority worker that must not be
        // preempted while holding it).
        let keys = self.keys.clone();
        self.write_on(&self.log_tx, move |_| {
            Ok(keys.lock().expect("key index lock poisoned").forget_before(keep_from))
        })
        .await
    }
}
