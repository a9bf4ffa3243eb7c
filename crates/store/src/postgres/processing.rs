//! Processing in the PostgreSQL backend: the one commit that spans concerns, and the figures over them.
//!
//! A batch is one transaction. Its deliveries are marked with a conditional update (`status = 'pending'`), so
//! a batch that another node has already committed (in part) changes nothing and answers
//! [`StoreError::Conflict`]: the effects of a delivery are written once, with its status. What every
//! delivery writes (its status, the customers' states, outbox items, terminal states, the audit trail) goes
//! in one statement with the batch's checks ([`WRITE_CORE`]); the rarer rows go a statement per kind (or
//! per run where order matters: a timer cancelled then set again, an alias pointed twice; see
//! [`write_rows`]); offer settlements, offers and products go outcome by outcome, since an offer made is
//! settled only by a later order. An erasure ends a chunk: what came before it is written first, so it
//! removes the person's rows of the whole batch so far, and nothing after it.

use super::*;

#[async_trait]
impl Processing for PgStore {
    async fn commit_processing_after(&self, batch: Vec<ProcessOutcome>, after: Option<i64>) -> Result<()> {
        let _in_order = self.processing_gate.lock().await;
        let now_ms = now_ms();
        // The common batch, that writes only what every delivery writes (and cancels timers) and was computed
        // without customer locks to take, is one statement in a transaction of its own: one round trip
        // where a transaction around it took four. Its checks refuse it by failing it, which undoes it.
        if batch.iter().all(writes_core_only) {
            if batch.is_empty() && after.is_none() {
                return Ok(());
            }
            let cancelled: Vec<&str> =
                batch.iter().flat_map(|o| &o.cancel_timers).map(String::as_str).collect();
            return write_core(&self.pool, &batch, (after, Expected::default()), &cancelled, now_ms).await;
        }
        let mut tx = self.begin().await?;
        // What the batch was computed from is checked by its first chunk's statement, as it writes.
        // So is the delivery it was computed after (alone, for an empty batch).
        let mut first = Some((after, lock_expected(&mut tx, &batch).await?));
        let mut rest = &batch[..];
        while !rest.is_empty() || first.as_ref().is_some_and(|(after, _)| after.is_some()) {
            // Up to and including the first outcome that carries a privacy request.
            let end = rest.iter().position(|o| o.privacy.is_some()).map_or(rest.len(), |i| i + 1);
            let (chunk, tail) = rest.split_at(end);
            write_chunk(&mut tx, chunk, first.take(), now_ms).await?;
            rest = tail;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn backlog(&self) -> Result<(u64, u64)> {
        // Read from indexes, so the cost follows the backlog, not the size of the tables (which keep every
        // delivery and pushed item); with the planner free to choose, a count of a status that was common
        // when the statistics were taken is a sequential scan of the whole table (16 ms a call on a
        // benchmark's 80,000 deliveries, and growing with them). Deliveries: counted when the oldest pending
        // one is fewer than 4,096 seqs behind the newest in the log, else that span, an upper bound read
        // from two index probes whatever the backlog; outbox items: counted from the partial index of
        // pending ones.
        let mut tx = self.begin_by_index().await?;
        let (deliveries, outbox): (i64, i64) = sqlx::query_as(
            "WITH ends AS MATERIALIZED (
                 SELECT (SELECT seq FROM deliveries WHERE status = 'pending' ORDER BY seq LIMIT 1) AS lo,
                        (SELECT seq FROM deliveries ORDER BY seq DESC LIMIT 1) AS hi
             )
             SELECT CASE WHEN lo IS NULL THEN 0
                         WHEN hi - lo < 4096 THEN (SELECT COUNT(*) FROM deliveries WHERE status = 'pending')
                         ELSE hi - lo + 1 END
                    + (SELECT COUNT(*) FROM fetch_jobs WHERE status = 'pending'),
                    (SELECT COUNT(*) FROM outbox WHERE status = 'pending')
             FROM ends",
        )
        .fetch_one(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((deliveries.max(0) as u64, outbox.max(0) as u64))
    }

    async fn stats(&self) -> Result<StoreStats> {
        let mut c = self.pool.acquire().await?;
        // The planner's row counts (kept fresh by the leader's ANALYZE): a table past the threshold has its
        // history estimated from a sample of its pages; what waits is counted exactly from partial indexes.
        let sizes: Vec<(String, f64)> = sqlx::query_as(
            "SELECT relname::text, reltuples::float8 FROM pg_class
             WHERE relnamespace = current_schema()::regnamespace
               AND relname IN ('deliveries', 'customers', 'outbox', 'terminal')",
        )
        .fetch_all(&mut *c)
        .await?;
        let rows_of = |table: &str| sizes.iter().find(|(t, _)| t == table).map_or(-1.0, |(_, n)| *n);
        let sampled = |table: &str| {
            let rows = rows_of(table);
            (rows >= self.exact_stats_below as f64)
                .then(|| (rows, (100.0 * STATS_SAMPLE_ROWS / rows).clamp(0.000_1, 100.0)))
        };
        let (pending, quarantined, fetch_pending, fetch_dead, timers): (i64, i64, i64, i64, i64) =
            sqlx::query_as(
                "SELECT (SELECT COUNT(*) FROM deliveries WHERE status = 'pending'),
                    (SELECT COUNT(*) FROM deliveries WHERE status = 'quarantined'),
                    (SELECT COUNT(*) FROM fetch_jobs WHERE status = 'pending'),
                    (SELECT COUNT(*) FROM fetch_jobs WHERE status = 'dead'),
                    (SELECT COUNT(*) FROM timers)",
            )
            .fetch_one(&mut *c)
            .await?;
        let n = |v: i64| v.max(0) as u64;
        let est = |v: f64| v.max(0.0).round() as u64;
        let deliveries = match sampled("deliveries") {
            Some((rows, percent)) => {
                let (seen, traces): (i64, i64) = sqlx::query_as(
                    "SELECT COUNT(*), COUNT(DISTINCT trace_id) FROM deliveries TABLESAMPLE SYSTEM ($1::real)",
                )
                .bind(percent)
                .fetch_one(&mut *c)
                .await?;
                if seen > 0 { est(rows * traces as f64 / seen as f64) } else { est(rows) }
            }
            None => n(sqlx::query_scalar("SELECT COUNT(DISTINCT trace_id) FROM deliveries")
                .fetch_one(&mut *c)
                .await?),
        };
        let customers = match sampled("customers") {
            Some((rows, _)) => est(rows),
            None => n(sqlx::query_scalar("SELECT COUNT(*) FROM customers").fetch_one(&mut *c).await?),
        };
        let mut s = StoreStats {
            deliveries,
            pending_deliveries: n(pending),
            fetch_jobs_pending: n(fetch_pending),
            fetch_jobs_dead: n(fetch_dead),
            quarantined: n(quarantined),
            customers,
            outbox_pending: 0,
            outbox_delivered: 0,
            outbox_rejected: 0,
            outbox_dead: 0,
            outbox_coalesced: 0,
            timers: n(timers),
            terminal_by_state: Vec::new(),
            outbox_by_destination: Vec::new(),
            estimated: ["deliveries", "customers", "outbox", "terminal"].iter().any(|t| sampled(t).is_some()),
        };
        // (destination, status, count): exact, or the settled statuses from a sample, scaled to the table,
        // with the pending items and dead letters counted exactly.
        let mut rows: Vec<(String, String, u64)> = match sampled("outbox") {
            None => sqlx::query_as::<_, (String, String, i64)>(
                "SELECT destination, status, COUNT(*) FROM outbox GROUP BY destination, status",
            )
            .fetch_all(&mut *c)
            .await?
            .into_iter()
            .map(|(d, st, k)| (d, st, n(k)))
            .collect(),
            Some((table_rows, percent)) => {
                let seen: Vec<(String, String, i64)> = sqlx::query_as(
                    "SELECT destination, status, COUNT(*) FROM outbox TABLESAMPLE SYSTEM ($1::real)
                     GROUP BY destination, status",
                )
                .bind(percent)
                .fetch_all(&mut *c)
                .await?;
                let scale = sample_scale(table_rows, seen.iter().map(|r| r.2).sum());
                let mut rows: Vec<(String, String, u64)> = seen
                    .into_iter()
                    .filter(|(_, st, _)| st != "pending" && st != "dead")
                    .map(|(d, st, k)| (d, st, est(k as f64 * scale)))
                    .collect();
                let waiting: Vec<(String, String, i64)> = sqlx::query_as(
                    "SELECT destination, 'pending', COUNT(*) FROM outbox WHERE status = 'pending' GROUP BY destination
                     UNION ALL
                     SELECT destination, 'dead', COUNT(*) FROM outbox WHERE status = 'dead' GROUP BY destination",
                )
                .fetch_all(&mut *c)
                .await?;
                rows.extend(waiting.into_iter().map(|(d, st, k)| (d, st, n(k))));
                rows
            }
        };
        rows.sort();
        for (destination, status, count) in rows {
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
            *total += count;
            *own += count;
        }
        for d in &mut s.outbox_by_destination {
            d.retrying = n(sqlx::query_scalar(
                "SELECT COUNT(*) FROM outbox WHERE destination = $1 AND status = 'pending' AND attempts > 0",
            )
            .bind(&d.destination)
            .fetch_one(&mut *c)
            .await?);
            // The items that can hold an error (pending, rejected, dead), each kind from its partial index.
            d.last_error = sqlx::query_scalar(
                "SELECT last_error FROM (
                     (SELECT id, last_error FROM outbox WHERE destination = $1 AND status = 'pending'
                        AND last_error IS NOT NULL ORDER BY id DESC LIMIT 1)
                     UNION ALL
                     (SELECT id, last_error FROM outbox WHERE destination = $1 AND status = 'rejected'
                        AND last_error IS NOT NULL ORDER BY id DESC LIMIT 1)
                     UNION ALL
                     (SELECT id, last_error FROM outbox WHERE destination = $1 AND status = 'dead'
                        AND last_error IS NOT NULL ORDER BY id DESC LIMIT 1)
                 ) e ORDER BY id DESC LIMIT 1",
            )
            .bind(&d.destination)
            .fetch_optional(&mut *c)
            .await?;
        }
        s.terminal_by_state = match sampled("terminal") {
            None => sqlx::query_as::<_, (String, i64)>(
                "SELECT state, COUNT(*) FROM terminal GROUP BY state ORDER BY state",
            )
            .fetch_all(&mut *c)
            .await?
            .into_iter()
            .map(|(k, v)| (k, n(v)))
            .collect(),
            Some((table_rows, percent)) => {
                let seen: Vec<(String, i64)> = sqlx::query_as(
                    "SELECT state, COUNT(*) FROM terminal TABLESAMPLE SYSTEM ($1::real) GROUP BY state ORDER BY state",
                )
                .bind(percent)
                .fetch_all(&mut *c)
                .await?;
                let scale = sample_scale(table_rows, seen.iter().map(|r| r.1).sum());
                seen.into_iter().map(|(k, v)| (k, est(v as f64 * scale))).collect()
            }
        };
        Ok(s)
    }

    /// PostgreSQL keeps no copy of a deleted row once it is vacuumed: this runs a plain `VACUUM` of the tables
    /// an erasure deletes from (it does not lock them against writes). Old row versions can also remain in
    /// the server's write-ahead log and base backups until those roll over: the operator's retention governs
    /// them, as the README's privacy section says.
    async fn compact(&self) -> Result<()> {
        sqlx::raw_sql(
            "VACUUM customers, aliases, audit, outbox, timers, approvals, flow_decisions, offer_log,
             segment_members, deliveries, privacy_jobs, privacy_job_traces",
        )
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}

/// What each row of a page sample stands for: the table's rows (the planner's count) over the rows seen.
fn sample_scale(table_rows: f64, seen: i64) -> f64 {
    if seen > 0 { table_rows / seen as f64 } else { 0.0 }
}

/// Writes a chunk of outcomes in which only the last may carry a privacy request (applied last).
/// The advisory lock class of a customer id's processing lock ("cust" in ASCII; the second key is the hash
/// of the schema and the id). Two-key advisory locks are a space apart from the one-key partition leases.
const CUSTOMER_LOCK: i32 = 0x6375_7374;

/// What a batch was computed from, to be found stored as it was read: customers' states (`None`: absent)
/// and where ids pointed through the aliases (`None`: nowhere).
#[derive(Default)]
struct Expected<'a> {
    customers: Vec<String>,
    states: Vec<Option<&'a [u8]>>,
    aliases: Vec<&'a str>,
    targets: Vec<Option<String>>,
}

/// Locks the ids whose states and aliases `batch` was computed from (transaction advisory locks, taken in key
/// order so that two nodes cannot deadlock), so that every node that writes one of them commits after the
/// other, and answers what the batch expects to find stored once it holds them: the first chunk's statement
/// refuses the batch ([`StoreError::Conflict`]) when a state changed, appeared or went, or an id was
/// re-pointed to another customer.
async fn lock_expected<'a>(tx: &mut Tx, batch: &'a [ProcessOutcome]) -> Result<Expected<'a>> {
    let mut states: std::collections::BTreeMap<String, Option<&[u8]>> = Default::default();
    let mut aliases: std::collections::BTreeMap<&str, Option<String>> = Default::default();
    for o in batch {
        for e in &o.expected_states {
            states.entry(e.customer.to_string()).or_insert(e.state.as_deref());
        }
        for (id, to) in &o.expected_aliases {
            aliases.entry(id.as_str()).or_insert(to.as_ref().map(CustomerId::to_string));
        }
    }
    if states.is_empty() && aliases.is_empty() {
        return Ok(Expected::default());
    }
    let mut ids: Vec<&str> = states.keys().map(String::as_str).chain(aliases.keys().copied()).collect();
    ids.sort_unstable();
    ids.dedup();
    // A statement of its own: the one that checks must take its snapshot once the locks are held.
    sqlx::query(
        "SELECT pg_advisory_xact_lock($1, k) FROM (
           SELECT DISTINCT hashtext(current_schema() || ':' || id) AS k FROM UNNEST($2::text[]) AS id ORDER BY k
         ) AS ids",
    )
    .bind(CUSTOMER_LOCK)
    .bind(&ids)
    .execute(&mut **tx)
    .await?;
    let (customers, states) = states.into_iter().unzip();
    let (aliases, targets) = aliases.into_iter().unzip();
    Ok(Expected { customers, states, aliases, targets })
}

/// The rows every processed delivery writes, in one statement of data-modifying `WITH` queries (a round trip
/// where there were up to seven): the deliveries' statuses, conditional on each still being pending (their
/// count is answered), the customers' states written and removed, the outbox items, the terminal states and
/// the audit trail. Every part reads the snapshot from before the statement and writes a table of its own
/// (a customer is written or removed, never both), so the parts cannot see or undo each other. The text is
/// the same whatever the chunk holds (an empty part inserts nothing), so PostgreSQL plans it once per
/// connection. It also checks, from the same snapshot (taken once the batch's customer locks are held,
/// and before its writes): the status of the delivery the batch was computed after (`$17`), the first
/// customer whose stored state is not the one expected (`$24`, `$25`), the first id that no longer
/// points where it was expected to (`$26`, `$27`), and that every delivery was still pending (`$28` of
/// them). A failed check fails the statement on purpose ([`REFUSED`]), so it writes nothing whether or not
/// a transaction is around it. It also cancels the timers of `$29` (the chunk's first cancellations, before
/// any timer it sets).
static WRITE_CORE: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
    format!(
        "WITH marked AS (
             UPDATE deliveries d SET status = u.status, reason = u.reason
             FROM UNNEST($1::bigint[], $2::text[], $3::text[]) AS u(seq, status, reason)
             WHERE d.seq = u.seq AND d.status = 'pending'
             RETURNING d.seq
         ), written AS (
             INSERT INTO customers (customer_id, email, state, is_text, updated_at)
             SELECT u.id, u.email, u.state, FALSE, $7
             FROM UNNEST($4::text[], $5::text[], $6::bytea[]) AS u(id, email, state)
             ON CONFLICT (customer_id) DO UPDATE SET email = excluded.email, state = excluded.state,
               is_text = FALSE, updated_at = excluded.updated_at
         ), removed AS (
             DELETE FROM customers WHERE customer_id = ANY($8::text[])
         ), queued AS (
             INSERT INTO outbox (trace_id, customer_id, destination, action, next_attempt_at, created_at, origin_us)
             SELECT u.t, u.c, u.d, u.a, $7, $7, u.o
             FROM UNNEST($9::text[], $10::text[], $11::text[], $12::text[], $13::bigint[]) WITH ORDINALITY
               AS u(t, c, d, a, o, n)
             ORDER BY u.n
         ), ended AS (
             INSERT INTO terminal (trace_id, state, reason, at)
             SELECT u.t, u.s, u.r, $7 FROM UNNEST($14::text[], $15::text[], $16::text[]) AS u(t, s, r)
             ON CONFLICT (trace_id) DO NOTHING
         ), audited AS (
             {audit}
         ), cancelled AS (
             DELETE FROM timers WHERE checkout_token = ANY($29::text[]) OR cart_token = ANY($29::text[])
         )
         SELECT CASE
             WHEN c.state_changed IS NOT NULL THEN CAST('{REFUSED}: state ' || c.state_changed AS bigint)
             WHEN c.alias_changed IS NOT NULL THEN CAST('{REFUSED}: alias ' || c.alias_changed AS bigint)
             WHEN $17::bigint IS NOT NULL AND COALESCE(c.after_status, 'pending') = 'pending'
               THEN CAST('{REFUSED}: after ' || COALESCE(c.after_status, 'absent') AS bigint)
             WHEN c.updated <> $28 THEN CAST('{REFUSED}: pending ' || c.updated AS bigint)
             ELSE c.updated END
         FROM (SELECT (SELECT COUNT(*) FROM marked) AS updated,
                      (SELECT status FROM deliveries WHERE seq = $17) AS after_status,
                      (SELECT e.id FROM UNNEST($24::text[], $25::bytea[]) AS e(id, state)
                         LEFT JOIN customers c ON c.customer_id = e.id
                       WHERE c.state IS DISTINCT FROM e.state LIMIT 1) AS state_changed,
                      (SELECT e.id FROM UNNEST($26::text[], $27::text[]) AS e(id, target)
                         LEFT JOIN aliases a ON a.alias = e.id
                       WHERE a.customer_id IS DISTINCT FROM e.target LIMIT 1) AS alias_changed
               OFFSET 0) AS c",
        audit = super::audit::AuditColumns::insert_sql(18)
    )
});

/// The marker of the error [`WRITE_CORE`] raises to refuse a batch (undoing the statement), followed by what
/// refused it: `state <customer>`, `alias <id>`, `after <status>` or `pending <count marked>`.
const REFUSED: &str = "nudge: batch refused";

/// The conflict [`WRITE_CORE`]'s refusal stands for, if `e` is one (SQLSTATE 22P02 with [`REFUSED`]).
fn refusal(e: &sqlx::Error, after: Option<i64>, marked: usize) -> Option<StoreError> {
    let d = e.as_database_error().filter(|d| d.code().as_deref() == Some("22P02"))?;
    let msg = d.message();
    let rest = &msg[msg.find(REFUSED)? + REFUSED.len()..];
    let rest = rest.strip_prefix(": ")?;
    let what = rest.trim_end_matches('"');
    let (kind, arg) = what.split_once(' ').unwrap_or((what, ""));
    Some(StoreError::Conflict(match kind {
        "state" => format!("the state of {arg} changed since this batch read it (written by another node)"),
        "alias" => {
            format!("{arg} was stitched to another customer since this batch read it (by another node)")
        }
        "after" => format!(
            "delivery {}, which this batch was computed after, is not processed",
            after.map_or_else(|| "?".to_string(), |s| s.to_string())
        ),
        _ => {
            let updated: usize = arg.parse().unwrap_or(0);
            format!(
                "{} of the batch's {marked} deliveries are not pending (processed elsewhere, or not in the log)",
                marked.saturating_sub(updated)
            )
        }
    }))
}

/// Whether an outcome writes only what [`WRITE_CORE`] writes (timers it cancels included), and was computed
/// without states or aliases to check. Every field is named, so a new one must be placed here.
fn writes_core_only(o: &ProcessOutcome) -> bool {
    let ProcessOutcome {
        seq: _,
        trace_id: _,
        status: _,
        status_reason: _,
        states: _,
        audit: _,
        outbox: _,
        terminal: _,
        deleted_states: _,
        cancel_timers: _,
        set_timers,
        approvals,
        decisions,
        fetch_jobs,
        privacy,
        aliases,
        offers,
        offer_settlements,
        products,
        expected_states,
        expected_aliases,
    } = o;
    set_timers.is_empty()
        && approvals.is_empty()
        && decisions.is_empty()
        && fetch_jobs.is_empty()
        && privacy.is_none()
        && aliases.is_empty()
        && offers.is_empty()
        && offer_settlements.is_empty()
        && products.is_empty()
        && expected_states.is_empty()
        && expected_aliases.is_empty()
}

/// Writes a chunk of outcomes in which only the last may carry a privacy request (applied last), refusing it
/// ([`StoreError::Conflict`]) when one of its deliveries is no longer pending. The batch's first chunk also
/// checks what the batch was computed after and from (`first`).
async fn write_chunk(
    tx: &mut Tx,
    chunk: &[ProcessOutcome],
    first: Option<(Option<i64>, Expected<'_>)>,
    now_ms: i64,
) -> Result<()> {
    let mut runs = timer_runs(chunk);
    let cancelled = match runs.first() {
        Some(TimerRun::Cancel(_)) => match runs.remove(0) {
            TimerRun::Cancel(tokens) => tokens,
            TimerRun::Set(_) => unreachable!("the first run is a cancellation"),
        },
        _ => Vec::new(),
    };
    write_core(&mut **tx, chunk, first.unwrap_or_default(), &cancelled, now_ms).await?;
    write_rows(tx, chunk, runs, now_ms).await?;

    if let Some(job) = chunk.last().and_then(|o| o.privacy.as_ref()) {
        super::privacy::submit(tx, job, now_ms).await?;
    }
    Ok(())
}

/// Runs [`WRITE_CORE`] for a chunk, checked against what it was computed after and from (`first`) and
/// cancelling the timers of `cancelled`, in a transaction or as a statement of its own.
async fn write_core<'e>(
    ex: impl sqlx::PgExecutor<'e>,
    chunk: &[ProcessOutcome],
    (after, expected): (Option<i64>, Expected<'_>),
    cancelled: &[&str],
    now_ms: i64,
) -> Result<()> {
    // Delivery statuses, conditional on the delivery still being pending.
    let marked: Vec<&ProcessOutcome> = chunk.iter().filter(|o| o.status.is_some()).collect();
    let seqs: Vec<i64> = marked.iter().map(|o| o.seq).collect();
    let statuses: Vec<&str> = marked
        .iter()
        .map(|o| match o.status {
            Some(DeliveryStatus::Quarantined) => "quarantined",
            _ => "processed",
        })
        .collect();
    let reasons: Vec<Option<&str>> = marked.iter().map(|o| o.status_reason.as_deref()).collect();

    // States: the last write of each customer in the chunk (a write or a removal) is what stands.
    let mut last: std::collections::HashMap<String, Option<&StoredState>> = std::collections::HashMap::new();
    let mut order: Vec<String> = Vec::new();
    for o in chunk {
        for s in &o.states {
            let k = s.customer.to_string();
            if last.insert(k.clone(), Some(s)).is_none() {
                order.push(k);
            }
        }
        for c in &o.deleted_states {
            let k = c.to_string();
            if last.insert(k.clone(), None).is_none() {
                order.push(k);
            }
        }
    }
    let (mut ids, mut emails, mut states, mut gone) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for k in order {
        match last.remove(&k).flatten() {
            Some(s) => {
                emails.push(s.email.as_ref().map(|e| e.trim().to_lowercase()));
                states.push(s.state.as_slice());
                ids.push(k);
            }
            None => gone.push(k),
        }
    }

    let items: Vec<&NewOutboxItem> = chunk.iter().flat_map(|o| &o.outbox).collect();
    let ended: Vec<(TraceId, &TerminalState)> =
        chunk.iter().filter_map(|o| Some((o.trace_id?, o.terminal.as_ref()?))).collect();
    let audit = super::audit::AuditColumns::of(chunk.iter().flat_map(|o| &o.audit))?;

    let q = sqlx::query(WRITE_CORE.as_str())
        .bind(&seqs)
        .bind(&statuses)
        .bind(&reasons)
        .bind(&ids)
        .bind(&emails)
        .bind(&states)
        .bind(now_ms)
        .bind(&gone)
        .bind(items.iter().map(|i| i.trace_id.to_string()).collect::<Vec<_>>())
        .bind(items.iter().map(|i| i.customer.to_string()).collect::<Vec<_>>())
        .bind(items.iter().map(|i| i.destination.as_str()).collect::<Vec<_>>())
        .bind(items.iter().map(|i| i.action_json.as_str()).collect::<Vec<_>>())
        .bind(items.iter().map(|i| i.origin_us).collect::<Vec<_>>())
        .bind(ended.iter().map(|(t, _)| t.to_string()).collect::<Vec<_>>())
        .bind(ended.iter().map(|(_, s)| s.name()).collect::<Vec<_>>())
        .bind(ended.iter().map(|(_, s)| s.reason()).collect::<Vec<_>>())
        .bind(after);
    let pending = seqs.len();
    audit
        .bind(q)
        .bind(&expected.customers)
        .bind(&expected.states)
        .bind(&expected.aliases)
        .bind(&expected.targets)
        .bind(pending as i64)
        .bind(cancelled)
        .fetch_one(ex)
        .await
        .map_err(|e| refusal(&e, after, pending).unwrap_or_else(|| e.into()))?;
    Ok(())
}

/// The rows of a chunk written a statement per kind (or per run of a kind), keeping what order matters
/// between outcomes: each table's rows are written in the chunk's order, an upsert's run ends before a key
/// it already holds (so the later write is applied on top of the earlier, as one at a time would), and the
/// timers' cancellations and settings stay in their order. Tables are independent of each other here, except
/// that an order settles the offers made before it and never the one it makes itself: those go outcome by
/// outcome. A chunk used to cost a round trip per alias and per timer token (two a checkout or order).
async fn write_rows(
    tx: &mut Tx,
    chunk: &[ProcessOutcome],
    runs: Vec<TimerRun<'_>>,
    now_ms: i64,
) -> Result<()> {
    let aliases: Vec<&NewAlias> = chunk.iter().flat_map(|o| &o.aliases).collect();
    for run in runs_of_distinct(&aliases, |a| a.alias.as_str()) {
        sqlx::query(
            "INSERT INTO aliases (alias, customer_id, created_at, trace_id)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[])
             ON CONFLICT (alias) DO UPDATE SET customer_id = excluded.customer_id,
               created_at = excluded.created_at, trace_id = excluded.trace_id
             WHERE aliases.customer_id IS DISTINCT FROM excluded.customer_id",
        )
        .bind(run.iter().map(|a| a.alias.as_str()).collect::<Vec<_>>())
        .bind(run.iter().map(|a| a.customer.to_string()).collect::<Vec<_>>())
        .bind(run.iter().map(|a| a.at_ms).collect::<Vec<_>>())
        .bind(run.iter().map(|a| a.trace_id.map(|t| t.to_string())).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }

    let approvals: Vec<&NewApproval> = chunk.iter().flat_map(|o| &o.approvals).collect();
    if !approvals.is_empty() {
        sqlx::query(
            "INSERT INTO approvals (trace_id, flow, flow_version, customer_id, actions, created_at, expires_at)
             SELECT u.t, u.f, u.v, u.c, u.a, u.cr, u.ex
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::bigint[], $7::bigint[])
               WITH ORDINALITY AS u(t, f, v, c, a, cr, ex, n)
             ORDER BY u.n",
        )
        .bind(approvals.iter().map(|a| a.trace_id.to_string()).collect::<Vec<_>>())
        .bind(approvals.iter().map(|a| a.flow.as_str()).collect::<Vec<_>>())
        .bind(approvals.iter().map(|a| a.flow_version.as_str()).collect::<Vec<_>>())
        .bind(approvals.iter().map(|a| a.customer.to_string()).collect::<Vec<_>>())
        .bind(approvals.iter().map(|a| a.actions_json.as_str()).collect::<Vec<_>>())
        .bind(approvals.iter().map(|a| a.created_at_ms).collect::<Vec<_>>())
        .bind(approvals.iter().map(|a| a.expires_at_ms).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }

    let decisions: Vec<&FlowDecision> = chunk.iter().flat_map(|o| &o.decisions).collect();
    if !decisions.is_empty() {
        sqlx::query(
            "INSERT INTO flow_decisions (flow, flow_version, customer_id, at, status, matched, baseline, trace_id, arm)
             SELECT u.f, u.v, u.c, u.at, u.s, u.m, u.b, u.t, u.arm
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::bool[], $7::bool[],
                         $8::text[], $9::text[])
               WITH ORDINALITY AS u(f, v, c, at, s, m, b, t, arm, n)
             ORDER BY u.n",
        )
        .bind(decisions.iter().map(|f| f.flow.as_str()).collect::<Vec<_>>())
        .bind(decisions.iter().map(|f| f.flow_version.as_str()).collect::<Vec<_>>())
        .bind(decisions.iter().map(|f| f.customer.to_string()).collect::<Vec<_>>())
        .bind(decisions.iter().map(|f| f.at_ms).collect::<Vec<_>>())
        .bind(decisions.iter().map(|f| f.status.as_str()).collect::<Vec<_>>())
        .bind(decisions.iter().map(|f| f.matched).collect::<Vec<_>>())
        .bind(decisions.iter().map(|f| f.baseline).collect::<Vec<_>>())
        .bind(decisions.iter().map(|f| f.trace_id.to_string()).collect::<Vec<_>>())
        .bind(decisions.iter().map(|f| f.arm.as_deref()).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }

    for o in chunk {
        write_offers_and_products(tx, o, now_ms).await?;
    }

    // Timers: the runs left after the cancellations the chunk's core statement made.
    for run in runs {
        match run {
            TimerRun::Cancel(tokens) => {
                sqlx::query("DELETE FROM timers WHERE checkout_token = ANY($1) OR cart_token = ANY($1)")
                    .bind(&tokens)
                    .execute(&mut **tx)
                    .await?;
            }
            TimerRun::Set(sets) => {
                for run in runs_of_distinct(&sets, |t| t.checkout_token.as_str()) {
                    sqlx::query(
                        "INSERT INTO timers (checkout_token, cart_token, customer_id, due_at, payload, origin_trace)
                         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[],
                             $6::text[])
                         ON CONFLICT (checkout_token) DO UPDATE SET cart_token = excluded.cart_token,
                           customer_id = excluded.customer_id, due_at = excluded.due_at,
                           payload = excluded.payload, origin_trace = excluded.origin_trace",
                    )
                    .bind(run.iter().map(|t| t.checkout_token.as_str()).collect::<Vec<_>>())
                    .bind(run.iter().map(|t| t.cart_token.as_deref()).collect::<Vec<_>>())
                    .bind(run.iter().map(|t| t.customer.to_string()).collect::<Vec<_>>())
                    .bind(run.iter().map(|t| t.due_at_ms).collect::<Vec<_>>())
                    .bind(run.iter().map(|t| t.payload_json.as_str()).collect::<Vec<_>>())
                    .bind(run.iter().map(|t| t.origin_trace.to_string()).collect::<Vec<_>>())
                    .execute(&mut **tx)
                    .await?;
                }
            }
        }
    }

    let jobs: Vec<&NewFetchJob> = chunk.iter().flat_map(|o| &o.fetch_jobs).collect();
    if !jobs.is_empty() {
        sqlx::query(
            "INSERT INTO fetch_jobs (trace_id, source, job, status, next_attempt_at, created_at)
             SELECT u.t, u.s, u.j, 'pending', u.d, $4
             FROM UNNEST($1::text[], $2::text[], $3::text[], $5::bigint[]) WITH ORDINALITY AS u(t, s, j, d, n)
             ORDER BY u.n",
        )
        .bind(jobs.iter().map(|j| j.trace_id.to_string()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.source.as_str()).collect::<Vec<_>>())
        .bind(jobs.iter().map(|j| j.job.as_str()).collect::<Vec<_>>())
        .bind(now_ms)
        .bind(jobs.iter().map(|j| j.due_at_ms).collect::<Vec<_>>())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// A chunk's timer changes in order: each outcome cancels, then sets; consecutive cancellations are one run,
/// consecutive settings another (written a statement per set of distinct checkouts).
enum TimerRun<'a> {
    Cancel(Vec<&'a str>),
    Set(Vec<&'a TimerSpec>),
}

fn timer_runs(chunk: &[ProcessOutcome]) -> Vec<TimerRun<'_>> {
    let mut runs: Vec<TimerRun> = Vec::new();
    for o in chunk {
        let tokens = o.cancel_timers.iter().map(String::as_str);
        match runs.last_mut() {
            Some(TimerRun::Cancel(run)) => run.extend(tokens),
            _ if !o.cancel_timers.is_empty() => runs.push(TimerRun::Cancel(tokens.collect())),
            _ => {}
        }
        match runs.last_mut() {
            Some(TimerRun::Set(run)) => run.extend(&o.set_timers),
            _ if !o.set_timers.is_empty() => runs.push(TimerRun::Set(o.set_timers.iter().collect())),
            _ => {}
        }
    }
    runs
}

/// `items` cut into runs in which no key repeats: a run ends before the first item whose key it holds.
fn runs_of_distinct<T>(items: &[T], key: impl Fn(&T) -> &str) -> Vec<&[T]> {
    let mut runs = Vec::new();
    let mut start = 0;
    let mut seen = std::collections::HashSet::new();
    for (i, item) in items.iter().enumerate() {
        if !seen.insert(key(item)) {
            runs.push(&items[start..i]);
            start = i;
            seen.clear();
            seen.insert(key(item));
        }
    }
    if start < items.len() {
        runs.push(&items[start..]);
    }
    runs
}

/// An outcome's offer settlements, products and offers, in that order.
async fn write_offers_and_products(tx: &mut Tx, o: &ProcessOutcome, now_ms: i64) -> Result<()> {
    // An order settles the offers made before it, never the one it makes itself.
    for st in &o.offer_settlements {
        settle_offers(tx, Some(&st.customer.to_string()), st.order_at_ms, st.value, now_ms).await?;
    }
    // The newest record of a product wins; an equal `updated_at` takes the later delivery's.
    for p in &o.products {
        sqlx::query(
            "INSERT INTO products (id, source, updated_at, record) VALUES ($1, $2, $3, $4)
             ON CONFLICT (id) DO UPDATE SET source = excluded.source, updated_at = excluded.updated_at,
               record = excluded.record
             WHERE excluded.updated_at >= products.updated_at",
        )
        .bind(&p.id)
        .bind(&p.source)
        .bind(p.updated_at_ms)
        .bind(&p.record)
        .execute(&mut **tx)
        .await?;
    }
    for offer in &o.offers {
        sqlx::query(
            "INSERT INTO offer_log (id, flow, customer_id, arm, propensity, explored, context, decided_at, window_end)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) ON CONFLICT (id) DO NOTHING",
        )
        .bind(&offer.id)
        .bind(&offer.flow)
        .bind(offer.customer.to_string())
        .bind(&offer.arm)
        .bind(offer.propensity)
        .bind(offer.explored)
        .bind(serde_json::to_string(&offer.context)?)
        .bind(offer.decided_at_ms)
        .bind(offer.window_end_ms)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}
