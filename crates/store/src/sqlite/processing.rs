//! Processing in the SQLite backend.

use super::*;

#[async_trait]
impl Processing for SqliteStore {
    async fn commit_processing_after(
        &self,
        mut batch: Vec<ProcessOutcome>,
        after: Option<i64>,
    ) -> Result<()> {
        let audit: Vec<Vec<AuditRow>> =
            batch.iter_mut().map(|o| pack_audit(std::mem::take(&mut o.audit))).collect::<Result<_>>()?;
        self.write(move |tx| {
            if let Some(seq) = after {
                let done: Option<i64> = tx
                    .prepare_cached("SELECT seq FROM processed WHERE seq = ?1")?
                    .query_row([seq], |r| r.get(0))
                    .optional()?;
                if done.is_none() {
                    return Err(StoreError::Conflict(format!(
                        "delivery {seq}, which this batch was computed after, is not processed"
                    )));
                }
            }
            let now_ms = ts_to_ms(time::OffsetDateTime::now_utc());
            for (o, audit) in batch.iter().zip(&audit) {
                if let Some(status) = &o.status {
                    let s = match status {
                        DeliveryStatus::Processed => "processed",
                        DeliveryStatus::Quarantined => "quarantined",
                    };
                    tx.prepare_cached(
                        "INSERT OR REPLACE INTO processed (seq, trace_id, status, reason) VALUES (?1, ?2, ?3, ?4)",
                    )?
                    .execute(params![o.seq, o.trace_id.map(|t| t.to_string()).unwrap_or_default(), s, o.status_reason])?;
                    tx.prepare_cached("DELETE FROM requeued WHERE seq = ?1")?.execute([o.seq])?;
                }
                for s in &o.states {
                    let customer = s.customer.to_string();
                    let email = s.email.as_ref().map(|e| e.trim().to_lowercase());
                    tx.prepare_cached(
                        "INSERT INTO customers (customer_id, email, state, updated_at) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT(customer_id) DO UPDATE SET state = excluded.state, updated_at = excluded.updated_at",
                    )?
                    .execute(params![customer, email, s.state, now_ms])?;
                    // The email apart, and only when it changed: SQLite rewrites an index entry whenever its
                    // column is assigned, even to the same value, and `customers_email` is keyed at random,
                    // so this saves a page write per state written.
                    tx.prepare_cached("UPDATE customers SET email = ?2 WHERE customer_id = ?1 AND email IS NOT ?2")?
                        .execute(params![customer, email])?;
                }
                for c in &o.deleted_states {
                    tx.prepare_cached("DELETE FROM customers WHERE customer_id = ?1")?.execute([c.to_string()])?;
                }
                for a in &o.aliases {
                    tx.prepare_cached(
                        "INSERT INTO aliases (alias, customer_id, created_at, trace_id) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT(alias) DO UPDATE SET customer_id = excluded.customer_id,
                         created_at = excluded.created_at, trace_id = excluded.trace_id
                         WHERE aliases.customer_id IS NOT excluded.customer_id",
                    )?
                    .execute(params![a.alias, a.customer.to_string(), a.at_ms, a.trace_id.map(|t| t.to_string())])?;
                }
                for r in audit {
                    insert_audit(tx, r)?;
                }
                for item in &o.outbox {
                    tx.prepare_cached(
                        "INSERT INTO outbox (trace_id, customer_id, destination, action, next_attempt_at, created_at, origin_us)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)",
                    )?
                    .execute(params![
                        item.trace_id.to_string(),
                        item.customer.to_string(),
                        item.destination,
                        item.action_json,
                        now_ms,
                        item.origin_us
                    ])?;
                }
                for a in &o.approvals {
                    tx.prepare_cached(
                        "INSERT INTO approvals (trace_id, flow, flow_version, customer_id, actions, created_at, expires_at)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
                    )?
                    .execute(params![
                        a.trace_id.to_string(),
                        a.flow,
                        a.flow_version,
                        a.customer.to_string(),
                        a.actions_json,
                        a.created_at_ms,
                        a.expires_at_ms
                    ])?;
                }
                for f in &o.decisions {
                    tx.prepare_cached(
                        "INSERT INTO flow_decisions (flow, flow_version, customer_id, at, status, matched, baseline, trace_id, arm)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    )?
                    .execute(params![
                        f.flow,
                        f.flow_version,
                        f.customer.to_string(),
                        f.at_ms,
                        f.status,
                        f.matched,
                        f.baseline,
                        f.trace_id.to_string(),
                        f.arm
                    ])?;
                }
                // An order settles the offers made before it, never the one it makes itself.
                for st in &o.offer_settlements {
                    settle_offers(tx, Some(&st.customer.to_string()), st.order_at_ms, st.value, now_ms)?;
                }
                // The newest record of a product wins; an equal `updated_at` takes the later delivery's.
                for p in &o.products {
                    tx.prepare_cached(
                        "INSERT INTO products (id, source, updated_at, record) VALUES (?1, ?2, ?3, ?4)
                         ON CONFLICT(id) DO UPDATE SET source = excluded.source,
                           updated_at = excluded.updated_at, record = excluded.record
                         WHERE excluded.updated_at >= products.updated_at",
                    )?
                    .execute(params![p.id, p.source, p.updated_at_ms, p.record])?;
                }
                for offer in &o.offers {
                    tx.prepare_cached(
                        "INSERT OR IGNORE INTO offer_log
                         (id, flow, customer_id, arm, propensity, explored, context, decided_at, window_end)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                    )?
                    .execute(params![
                        offer.id,
                        offer.flow,
                        offer.customer.to_string(),
                        offer.arm,
                        offer.propensity,
                        offer.explored,
                        serde_json::to_string(&offer.context)?,
                        offer.decided_at_ms,
                        offer.window_end_ms
                    ])?;
                }
                for token in &o.cancel_timers {
                    tx.prepare_cached("DELETE FROM timers WHERE checkout_token = ?1 OR cart_token = ?1")?
                        .execute([token])?;
                }
                for t in &o.set_timers {
                    tx.prepare_cached(
                        "INSERT INTO timers (checkout_token, cart_token, customer_id, due_at, payload, origin_trace)
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6)
                         ON CONFLICT(checkout_token) DO UPDATE SET cart_token = excluded.cart_token,
                         customer_id = excluded.customer_id, due_at = excluded.due_at, payload = excluded.payload,
                         origin_trace = excluded.origin_trace",
                    )?
                    .execute(params![
                        t.checkout_token,
                        t.cart_token,
                        t.customer.to_string(),
                        t.due_at_ms,
                        t.payload_json,
                        t.origin_trace.to_string()
                    ])?;
                }
                for j in &o.fetch_jobs {
                    tx.prepare_cached(
                        "INSERT INTO fetch_jobs (trace_id, source, job, status, next_attempt_at, created_at)
                         VALUES (?1, ?2, ?3, 'pending', ?4, ?5)",
                    )?
                    .execute(params![j.trace_id.to_string(), j.source, j.job, j.due_at_ms, now_ms])?;
                }
                if let (Some(t), Some(trace)) = (&o.terminal, o.trace_id) {
                    insert_terminal(tx, trace, t, now_ms)?;
                }
                if let Some(job) = &o.privacy {
                    privacy::submit(tx, job, now_ms)?;
                }
            }
            Ok(())
        })
        .await
    }

    async fn stats(&self) -> Result<StoreStats> {
        // Deliveries are the log's, terminal states the `terminal` table's: a trace of appended audit records
        // alone (a model refit's) is in neither.
        self.read(|c| {
            let one = |sql: &str| -> Result<u64> { Ok(c.query_row(sql, [], |r| r.get::<_, i64>(0))? as u64) };
            let mut s = StoreStats {
                deliveries: one("SELECT COUNT(DISTINCT trace_id) FROM log.deliveries")?,
                pending_deliveries: one(PENDING_COUNT)?,
                fetch_jobs_pending: one("SELECT COUNT(*) FROM fetch_jobs WHERE status = 'pending'")?,
                fetch_jobs_dead: one("SELECT COUNT(*) FROM fetch_jobs WHERE status = 'dead'")?,
                quarantined: one("SELECT COUNT(*) FROM processed WHERE status = 'quarantined'")?,
                customers: one("SELECT COUNT(*) FROM customers")?,
                outbox_pending: 0,
                outbox_delivered: 0,
                outbox_rejected: 0,
                outbox_dead: 0,
                outbox_coalesced: 0,
                timers: one("SELECT COUNT(*) FROM timers")?,
                terminal_by_state: Vec::new(),
                outbox_by_destination: Vec::new(),
                estimated: false,
            };
            // One pass over the outbox (no index covers every status; this is for summaries, not hot paths).
            let mut st = c.prepare(
                "SELECT destination, status, COUNT(*) FROM outbox GROUP BY destination, status ORDER BY destination",
            )?;
            let rows = st.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get::<_, i64>(2)? as u64))
            })?;
            for row in rows {
                let (destination, status, n) = row?;
                if s.outbox_by_destination.last().is_none_or(|d| d.destination != destination) {
                    s.outbox_by_destination.push(DestinationCounts { destination, ..Default::default() });
                }
                let d = s.outbox_by_destination.last_mut().expect("just pushed");
                let (total, own) = match status.as_str() {
                    "pending" => (&mut s.outbox_pending, &mut d.pending),
                    "delivered" => (&mut s.outbox_delivered, &mut d.delivered),
                    "rejected" => (&mut s.outbox_rejected, &mut d.rejected),
                    "dead" => (&mut s.outbox_dead, &mut d.dead),
                    "coalesced" => (&mut s.outbox_coalesced, &mut d.coalesced),
                    _ => continue,
                };
                *total += n;
                *own += n;
            }
            for d in &mut s.outbox_by_destination {
                d.retrying = c
                    .prepare_cached(
                        "SELECT COUNT(*) FROM outbox INDEXED BY outbox_pending_dest_id
                         WHERE destination = ?1 AND status = 'pending' AND attempts > 0",
                    )?
                    .query_row([&d.destination], |r| r.get::<_, i64>(0))?
                    .max(0) as u64;
                d.last_error = c
                    .prepare_cached(
                        "SELECT last_error FROM outbox WHERE destination = ?1
                         AND status NOT IN ('delivered', 'coalesced') AND last_error IS NOT NULL
                         ORDER BY id DESC LIMIT 1",
                    )?
                    .query_row([&d.destination], |r| r.get::<_, String>(0))
                    .optional()?;
            }
            let mut st = c.prepare("SELECT state, COUNT(*) FROM terminal GROUP BY state ORDER BY state")?;
            s.terminal_by_state = st
                .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)? as u64)))?
                .collect::<rusqlite::Result<_>>()?;
            Ok(s)
        })
        .await
    }

    async fn backlog(&self) -> Result<(u64, u64)> {
        self.read(|c| {
            // From the ends of the log and of the processed range, not by walking the backlog: exact when
            // idle, otherwise an upper bound (a rolled-back group leaves a gap in the seqs).
            let deliveries: i64 = c
                .prepare_cached(
                    "SELECT MAX(0, (SELECT COALESCE(MAX(seq), 0) FROM log.deliveries)
                                 - (SELECT COALESCE(MAX(seq), 0) FROM main.processed))
                          + (SELECT COUNT(*) FROM main.requeued
                             WHERE seq <= (SELECT COALESCE(MAX(seq), 0) FROM main.processed))
                          + (SELECT COUNT(*) FROM main.fetch_jobs WHERE status = 'pending')",
                )?
                .query_row([], |r| r.get(0))?;
            let outbox: i64 = c
                .prepare_cached("SELECT COUNT(*) FROM outbox WHERE status = 'pending'")?
                .query_row([], |r| r.get(0))?;
            Ok((deliveries as u64, outbox as u64))
        })
        .await
    }

    async fn compact(&self) -> Result<()> {
        let paths = [self.path.clone(), self.log_path.clone()];
        let emptied = tokio::task::spawn_blocking(move || {
            paths.iter().map(|p| privacy::checkpoint_truncate(p)).collect::<Result<Vec<bool>>>()
        })
        .await
        .map_err(|e| StoreError::Database(format!("checkpoint task failed: {e}")))??;
        if emptied.iter().all(|e| *e) {
            Ok(())
        } else {
            Err(StoreError::Conflict(
                "a write-ahead log is in use; it was checkpointed as far as possible".into(),
            ))
        }
    }
}
