//! Erasure and export in the SQLite backend.
//!
//! An erasure removes the person from `nudge.db` in the transaction that records its job (the processing
//! commit of the delivery that carried it, or a job of its own), with `secure_delete` on, so the rows are
//! overwritten where they lay; free pages left by earlier writes (SQLite frees an overflow page without
//! clearing it when `secure_delete` is `FAST`) are overwritten too, by filling `privacy_scrub` with zeros
//! and emptying it. The deliveries go from the ingest log afterwards ([`erase_log`], on the log's writer):
//! each is kept as an empty tombstone (its trace, source, topic, shop and dedupe keys, none of them
//! personal), so a platform's retry of the same webhook is still a duplicate. Old copies of the pages in
//! the write-ahead logs go with [`compact`].
//!
//! Every lookup here is by an indexed key: customers by key and email, audit by customer and trace,
//! outbox/timers/approvals/flow decisions by customer (`sqlite_009_privacy.sql`), deliveries by trace.

use super::*;

#[async_trait]
impl Privacy for SqliteStore {
    async fn submit_privacy_job(&self, job: NewPrivacyJob) -> Result<i64> {
        self.write(move |tx| privacy::submit(tx, &job, ts_to_ms(time::OffsetDateTime::now_utc()))).await
    }

    async fn preview_erasure(
        &self,
        customers: Vec<CustomerId>,
        email: Option<String>,
    ) -> Result<ErasurePreview> {
        self.read(move |c| privacy::preview(c, &customers, email.as_deref())).await
    }

    async fn privacy_jobs(&self, pending_only: bool, pseudonym: Option<String>) -> Result<Vec<PrivacyJob>> {
        self.read(move |c| privacy::jobs(c, pending_only, pseudonym.as_deref())).await
    }

    async fn erase_from_log(&self, job_id: i64) -> Result<u64> {
        let (traces, keys) = self.read(move |c| privacy::log_work(c, job_id)).await?;
        let n = self.write_on(&self.log_tx, move |tx| privacy::erase_log(tx, &traces, &keys)).await?;
        self.write(move |tx| {
            privacy::mark_log_erased(tx, job_id, n, ts_to_ms(time::OffsetDateTime::now_utc()))
        })
        .await?;
        Ok(n)
    }

    async fn record_erasure_destination(&self, job_id: i64, d: ErasureDestination) -> Result<()> {
        self.write(move |tx| privacy::record_destination(tx, job_id, &d)).await
    }

    async fn finish_privacy_job(&self, job_id: i64, summary: serde_json::Value) -> Result<()> {
        self.write(move |tx| privacy::finish(tx, job_id, &summary, ts_to_ms(time::OffsetDateTime::now_utc())))
            .await
    }

    async fn export_customer(&self, customers: Vec<CustomerId>) -> Result<CustomerExport> {
        self.read(move |c| privacy::export(c, &customers)).await
    }
}

/// The job row's lasting counts: what was removed, by kind.
pub(super) fn count_json(pairs: &[(&str, u64)]) -> serde_json::Value {
    serde_json::Value::Object(
        pairs.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(*v))).collect(),
    )
}

/// Runs `f` with `secure_delete` fully on, restoring `FAST` afterwards whatever `f` returns.
fn with_secure_delete<R>(tx: &Connection, f: impl FnOnce(&Connection) -> Result<R>) -> Result<R> {
    tx.pragma_update(None, "secure_delete", "ON")?;
    let r = f(tx);
    let restored = tx.pragma_update(None, "secure_delete", "FAST");
    let r = r?;
    restored?;
    Ok(r)
}

fn strings(tx: &Connection, sql: &str, key: &str) -> Result<Vec<String>> {
    let mut st = tx.prepare_cached(sql)?;
    let rows = st.query_map([key], |r| r.get::<_, String>(0))?;
    Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
}

fn count(tx: &Connection, sql: &str, key: &str) -> Result<u64> {
    Ok(tx.prepare_cached(sql)?.query_row([key], |r| r.get::<_, i64>(0))? as u64)
}

/// The person's keys: those given, and whoever is stored under the email.
fn resolve_keys(tx: &Connection, customers: &[CustomerId], email: Option<&str>) -> Result<Vec<String>> {
    let mut keys: Vec<String> = customers.iter().map(|c| c.to_string()).collect();
    if let Some(email) = email.map(|e| e.trim().to_lowercase()).filter(|e| !e.is_empty()) {
        keys.extend(strings(tx, "SELECT customer_id FROM customers WHERE email = ?1", &email)?);
    }
    keys.sort();
    keys.dedup();
    Ok(keys)
}

/// The traces that name any of `keys`, and the destinations their outbox items reached (attempted at least
/// once: an attempt that timed out may have landed).
fn traces_and_destinations(tx: &Connection, keys: &[String]) -> Result<(Vec<String>, Vec<String>)> {
    let mut traces = Vec::new();
    let mut destinations = Vec::new();
    for k in keys {
        traces.extend(strings(tx, "SELECT DISTINCT trace_id FROM audit WHERE customer_id = ?1", k)?);
        traces.extend(strings(tx, "SELECT trace_id FROM outbox WHERE customer_id = ?1", k)?);
        traces.extend(strings(tx, "SELECT origin_trace FROM timers WHERE customer_id = ?1", k)?);
        traces.extend(strings(tx, "SELECT trace_id FROM approvals WHERE customer_id = ?1", k)?);
        destinations.extend(strings(
            tx,
            "SELECT DISTINCT destination FROM outbox WHERE customer_id = ?1 AND (attempts > 0 OR status <> 'pending')",
            k,
        )?);
    }
    traces.sort();
    traces.dedup();
    destinations.sort();
    destinations.dedup();
    Ok((traces, destinations))
}

pub(super) fn preview(
    tx: &Connection,
    customers: &[CustomerId],
    email: Option<&str>,
) -> Result<ErasurePreview> {
    let keys = resolve_keys(tx, customers, email)?;
    let (traces, destinations) = traces_and_destinations(tx, &keys)?;
    let mut p = ErasurePreview { traces: traces.len() as u64, destinations, ..Default::default() };
    for k in &keys {
        p.states += count(tx, "SELECT COUNT(*) FROM customers WHERE customer_id = ?1", k)?;
        p.audit_records += count(tx, "SELECT COUNT(*) FROM audit WHERE customer_id = ?1", k)?;
        p.outbox_items += count(tx, "SELECT COUNT(*) FROM outbox WHERE customer_id = ?1", k)?;
        p.timers += count(tx, "SELECT COUNT(*) FROM timers WHERE customer_id = ?1", k)?;
        p.approvals += count(tx, "SELECT COUNT(*) FROM approvals WHERE customer_id = ?1", k)?;
        p.flow_decisions += count(tx, "SELECT COUNT(*) FROM flow_decisions WHERE customer_id = ?1", k)?;
        p.transactions += count(tx, "SELECT COUNT(*) FROM transactions WHERE customer_id = ?1", k)?;
    }
    Ok(p)
}

/// Records `job` and, for an erasure, removes the person from `nudge.db` (see the module docs). Runs in the
/// caller's transaction. Returns the job's id.
pub(super) fn submit(tx: &Connection, job: &NewPrivacyJob, now_ms: i64) -> Result<i64> {
    let keys = resolve_keys(tx, &job.customers, job.email.as_deref())?;
    let customers_json = serde_json::to_string(&keys)?;
    let email = job.email.as_ref().map(|e| e.trim().to_lowercase());
    tx.prepare_cached(
        "INSERT INTO privacy_jobs (kind, pseudonym, trace_id, requested_by, reference, created_at, updated_at,
         customers, email, phone) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?6, ?7, ?8, ?9)",
    )?
    .execute(params![
        job.kind.as_str(),
        job.pseudonym,
        job.trace_id.to_string(),
        job.requested_by,
        job.reference,
        job.at_ms,
        customers_json,
        email,
        job.phone
    ])?;
    let id = tx.last_insert_rowid();
    if job.kind == PrivacyJobKind::Export {
        return Ok(id);
    }
    with_secure_delete(tx, |tx| erase_main(tx, id, job, &keys, now_ms))?;
    Ok(id)
}

fn erase_main(tx: &Connection, id: i64, job: &NewPrivacyJob, keys: &[String], now_ms: i64) -> Result<()> {
    let (mut traces, mut destinations) = traces_and_destinations(tx, keys)?;
    let own = job.trace_id.to_string();
    traces.push(own.clone());
    traces.sort();
    traces.dedup();
    destinations.extend(job.destinations.iter().cloned());
    // A batch push sends every customer (or a segment) and is not recorded per person: a destination that
    // ever had one may hold them.
    destinations.extend(
        tx.prepare_cached("SELECT destination FROM push_runs")?
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?,
    );
    destinations.sort();
    destinations.dedup();
    let mut removed = [
        ("states", 0u64),
        ("audit_records", 0),
        ("outbox_items", 0),
        ("timers", 0),
        ("approvals", 0),
        ("flow_decisions", 0),
        ("transactions", 0),
        ("traces", traces.len() as u64),
    ];
    for k in keys {
        for (i, sql) in [
            "DELETE FROM customers WHERE customer_id = ?1",
            "DELETE FROM audit WHERE customer_id = ?1",
            "DELETE FROM outbox WHERE customer_id = ?1",
            "DELETE FROM timers WHERE customer_id = ?1",
            "DELETE FROM approvals WHERE customer_id = ?1",
            "DELETE FROM flow_decisions WHERE customer_id = ?1",
            "DELETE FROM transactions WHERE customer_id = ?1",
        ]
        .into_iter()
        .enumerate()
        {
            removed[i].1 += tx.prepare_cached(sql)?.execute([k])? as u64;
        }
        // The offers made to the person (what the bandit learned from them stays, as it does in the
        // learner's memory: only the rows naming them go).
        tx.prepare_cached("DELETE FROM offer_log WHERE customer_id = ?1")?.execute([k])?;
        // Their membership of adopted segments (the segments' counts are refreshed by the next refresh).
        tx.prepare_cached("DELETE FROM segment_members WHERE customer_id = ?1")?.execute([k])?;
        // The other ids the person was stitched by (ids and digests only), and an alias that is the key.
        tx.prepare_cached("DELETE FROM aliases WHERE customer_id = ?1 OR alias = ?1")?.execute([k])?;
    }
    for t in &traces {
        // The records of the person's traces that name no customer (a delivery's receipt before its
        // customer was known) are theirs too; a quarantine reason and a terminal reason may quote them.
        removed[1].1 += tx
            .prepare_cached("DELETE FROM audit WHERE trace_id = ?1 AND customer_id IS NULL")?
            .execute([t])? as u64;
        tx.prepare_cached(
            "UPDATE processed SET reason = NULL WHERE trace_id = ?1 AND status = 'quarantined'",
        )?
        .execute([t])?;
        // A settled fetch job may carry the notification's payload (Shopify enrichment); one still pending
        // is left to finish, so its trace still gets a terminal state.
        tx.prepare_cached("DELETE FROM fetch_jobs WHERE trace_id = ?1 AND status != 'pending'")?
            .execute([t])?;
        if *t != own {
            tx.prepare_cached(
                "UPDATE terminal SET reason = 'erased' WHERE trace_id = ?1 AND reason IS NOT NULL",
            )?
            .execute([t])?;
        }
        tx.prepare_cached("INSERT OR IGNORE INTO privacy_job_traces (job_id, trace_id) VALUES (?1, ?2)")?
            .execute(params![id, t])?;
    }
    for d in &destinations {
        tx.prepare_cached(
            "INSERT OR IGNORE INTO privacy_destinations (job_id, destination, status, next_attempt_at, updated_at)
             VALUES (?1, ?2, 'pending', ?3, ?3)",
        )?
        .execute(params![id, d, now_ms])?;
    }
    let summary = count_json(&removed);
    tx.prepare_cached("UPDATE privacy_jobs SET summary = ?2 WHERE id = ?1")?
        .execute(params![id, summary.to_string()])?;
    let detail = serde_json::json!({
        "pseudonym": job.pseudonym, "job": id, "requested_by": job.requested_by, "reference": job.reference,
        "removed": summary, "destinations": destinations,
    });
    insert_audit(
        tx,
        &AuditRow {
            trace: own,
            customer: None,
            stage: AuditStage::Erasure.as_str().to_string(),
            at: job.at_ms,
            detail: stored_detail(detail.to_string()),
        },
    )?;
    scrub_free_pages(tx)
}

/// Overwrites every free page with zeros: a blob of zeros as large as the free list takes its pages (SQLite
/// reuses free pages before growing the file) and, deleted with `secure_delete` on, leaves them zeroed.
fn scrub_free_pages(tx: &Connection) -> Result<()> {
    let free: i64 = tx.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    if free == 0 {
        return Ok(());
    }
    let page: i64 = tx.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    // In pieces of at most 16 MiB, so no single value is huge.
    let mut left = free * page;
    while left > 0 {
        let n = left.min(16 << 20);
        tx.prepare_cached("INSERT INTO privacy_scrub (b) VALUES (zeroblob(?1))")?.execute([n])?;
        left -= n;
    }
    tx.prepare_cached("DELETE FROM privacy_scrub")?.execute([])?;
    Ok(())
}

/// The job's traces and keys, read on the main database, for [`erase_log`].
pub(super) fn log_work(c: &Connection, job_id: i64) -> Result<(Vec<String>, Vec<String>)> {
    let traces = c
        .prepare_cached("SELECT trace_id FROM privacy_job_traces WHERE job_id = ?1")?
        .query_map([job_id], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    let customers: Option<String> = c
        .prepare_cached("SELECT customers FROM privacy_jobs WHERE id = ?1")?
        .query_row([job_id], |r| r.get(0))
        .optional()?
        .flatten();
    let keys: Vec<String> = match customers {
        Some(json) => serde_json::from_str(&json)?,
        None => Vec::new(),
    };
    Ok((traces, keys))
}

/// On the ingest log's writer: empties the person's deliveries (see the module docs). Returns how many.
pub(super) fn erase_log(tx: &Connection, traces: &[String], keys: &[String]) -> Result<u64> {
    with_secure_delete(tx, |tx| {
        let mut n = 0u64;
        for t in traces {
            let row: Option<(i64, String, Vec<u8>, i64)> = tx
                .prepare_cached("SELECT seq, source, body, body_codec FROM deliveries WHERE trace_id = ?1")?
                .query_row([t], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                .optional()?;
            let Some((seq, source, body, codec)) = row else { continue };
            if body.is_empty() {
                continue;
            }
            if source == "schedule" {
                // A chunk of a schedule firing names up to 500 customers: only this person leaves it.
                let raw = decode_body(codec, body)?;
                if let Ok(mut chunk) = serde_json::from_slice::<serde_json::Value>(&raw)
                    && let Some(list) = chunk.get_mut("customers").and_then(|c| c.as_array_mut())
                {
                    let before = list.len();
                    list.retain(|c| !c.as_str().is_some_and(|c| keys.iter().any(|k| k == c)));
                    if list.len() != before && !list.is_empty() {
                        let (codec, stored) = encode_body(serde_json::to_vec(&chunk)?);
                        tx.prepare_cached("UPDATE deliveries SET body = ?2, body_codec = ?3 WHERE seq = ?1")?
                            .execute(params![seq, stored, codec])?;
                        n += 1;
                        continue;
                    }
                }
            }
            tx.prepare_cached(
                "UPDATE deliveries SET body = X'', body_codec = 0, headers = '{}' WHERE seq = ?1",
            )?
            .execute([seq])?;
            n += 1;
        }
        Ok(n)
    })
}

pub(super) fn mark_log_erased(tx: &Connection, job_id: i64, n: u64, now_ms: i64) -> Result<()> {
    let summary: Option<String> = tx
        .prepare_cached("SELECT summary FROM privacy_jobs WHERE id = ?1")?
        .query_row([job_id], |r| r.get(0))
        .optional()?;
    let Some(summary) = summary else {
        return Err(StoreError::NotFound(format!("privacy job {job_id}")));
    };
    let mut summary: serde_json::Value = serde_json::from_str(&summary)?;
    if let Some(m) = summary.as_object_mut() {
        let before = m.get("deliveries").and_then(|v| v.as_u64()).unwrap_or(0);
        m.insert("deliveries".into(), (before + n).into());
    }
    with_secure_delete(tx, |tx| {
        tx.prepare_cached(
            "UPDATE privacy_jobs SET log_erased = 1, summary = ?2, updated_at = ?3 WHERE id = ?1",
        )?
        .execute(params![job_id, summary.to_string(), now_ms])?;
        tx.prepare_cached("DELETE FROM privacy_job_traces WHERE job_id = ?1")?.execute([job_id])?;
        Ok(())
    })
}

pub(super) fn record_destination(tx: &Connection, job_id: i64, d: &ErasureDestination) -> Result<()> {
    with_secure_delete(tx, |tx| {
        tx.prepare_cached(
            "INSERT INTO privacy_destinations (job_id, destination, status, attempts, next_attempt_at, detail, updated_at)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT(job_id, destination) DO UPDATE SET status = excluded.status, attempts = excluded.attempts,
             next_attempt_at = excluded.next_attempt_at, detail = excluded.detail, updated_at = excluded.updated_at",
        )?
        .execute(params![
            job_id,
            d.destination,
            d.status.as_str(),
            d.attempts,
            d.next_attempt_at_ms,
            d.detail,
            d.updated_at_ms
        ])?;
        Ok(())
    })
}

pub(super) fn finish(tx: &Connection, job_id: i64, extra: &serde_json::Value, now_ms: i64) -> Result<()> {
    let row: Option<(String, i64, String)> = tx
        .prepare_cached("SELECT kind, log_erased, summary FROM privacy_jobs WHERE id = ?1")?
        .query_row([job_id], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .optional()?;
    let Some((kind, log_erased, summary)) = row else {
        return Err(StoreError::NotFound(format!("privacy job {job_id}")));
    };
    if kind == PrivacyJobKind::Erase.as_str() {
        let open: i64 = tx
            .prepare_cached(
                "SELECT COUNT(*) FROM privacy_destinations WHERE job_id = ?1 AND status = 'pending'",
            )?
            .query_row([job_id], |r| r.get(0))?;
        if log_erased == 0 || open > 0 {
            return Err(StoreError::Conflict(format!(
                "privacy job {job_id} is not done: {}{open} destination request(s) pending",
                if log_erased == 0 { "its deliveries are still in the ingest log; " } else { "" }
            )));
        }
    }
    let mut summary: serde_json::Value = serde_json::from_str(&summary)?;
    if let (Some(m), Some(extra)) = (summary.as_object_mut(), extra.as_object()) {
        for (k, v) in extra {
            m.insert(k.clone(), v.clone());
        }
    }
    with_secure_delete(tx, |tx| {
        tx.prepare_cached(
            "UPDATE privacy_jobs SET done = 1, customers = NULL, email = NULL, phone = NULL, summary = ?2,
             updated_at = ?3 WHERE id = ?1",
        )?
        .execute(params![job_id, summary.to_string(), now_ms])?;
        tx.prepare_cached("DELETE FROM privacy_job_traces WHERE job_id = ?1")?.execute([job_id])?;
        Ok(())
    })
}

fn job_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<PrivacyJob> {
    let customers: Option<String> = r.get(10)?;
    let customers: Vec<String> = customers.and_then(|c| serde_json::from_str(&c).ok()).unwrap_or_default();
    let summary: String = r.get(13)?;
    Ok(PrivacyJob {
        id: r.get(0)?,
        kind: PrivacyJobKind::parse(&r.get::<_, String>(1)?).unwrap_or(PrivacyJobKind::Erase),
        pseudonym: r.get(2)?,
        trace_id: parse_trace(&r.get::<_, String>(3)?)?,
        requested_by: r.get(4)?,
        reference: r.get(5)?,
        created_at_ms: r.get(6)?,
        updated_at_ms: r.get(7)?,
        done: r.get::<_, i64>(8)? != 0,
        log_erased: r.get::<_, i64>(9)? != 0,
        customers: customers.iter().map(|c| parse_customer(c)).collect::<rusqlite::Result<_>>()?,
        email: r.get(11)?,
        phone: r.get(12)?,
        summary: serde_json::from_str(&summary).unwrap_or(serde_json::Value::Null),
        destinations: Vec::new(),
    })
}

pub(super) fn jobs(c: &Connection, pending_only: bool, pseudonym: Option<&str>) -> Result<Vec<PrivacyJob>> {
    const COLS: &str = "id, kind, pseudonym, trace_id, requested_by, reference, created_at, updated_at, done,
        log_erased, customers, email, phone, summary";
    let mut jobs: Vec<PrivacyJob> = match (pending_only, pseudonym) {
        (true, _) => c
            .prepare_cached(&format!("SELECT {COLS} FROM privacy_jobs WHERE done = 0 ORDER BY id DESC"))?
            .query_map([], job_row)?
            .collect::<rusqlite::Result<_>>()?,
        (false, Some(p)) => c
            .prepare_cached(&format!(
                "SELECT {COLS} FROM privacy_jobs WHERE pseudonym = ?1 ORDER BY id DESC"
            ))?
            .query_map([p], job_row)?
            .collect::<rusqlite::Result<_>>()?,
        (false, None) => c
            .prepare_cached(&format!("SELECT {COLS} FROM privacy_jobs ORDER BY id DESC"))?
            .query_map([], job_row)?
            .collect::<rusqlite::Result<_>>()?,
    };
    for j in &mut jobs {
        j.destinations = c
            .prepare_cached(
                "SELECT destination, status, attempts, next_attempt_at, detail, updated_at
                 FROM privacy_destinations WHERE job_id = ?1 ORDER BY destination",
            )?
            .query_map([j.id], |r| {
                Ok(ErasureDestination {
                    destination: r.get(0)?,
                    status: ErasureStatus::parse(&r.get::<_, String>(1)?).unwrap_or(ErasureStatus::Pending),
                    attempts: r.get(2)?,
                    next_attempt_at_ms: r.get(3)?,
                    detail: r.get(4)?,
                    updated_at_ms: r.get(5)?,
                })
            })?
            .collect::<rusqlite::Result<_>>()?;
    }
    Ok(jobs)
}

pub(super) fn export(c: &Connection, customers: &[CustomerId]) -> Result<CustomerExport> {
    let mut out = CustomerExport { customers: customers.to_vec(), ..Default::default() };
    for cid in customers {
        let k = cid.to_string();
        let mut st = c.prepare_cached("SELECT state FROM customers WHERE customer_id = ?1")?;
        let states = st.query_map([&k], |r| state_bytes(r.get_ref(0)?))?;
        out.states.extend(states.collect::<rusqlite::Result<Vec<_>>>()?);
        let rows: Vec<Vec<AuditRecord>> = c
            .prepare_cached(
                "SELECT trace_id, customer_id, stage, at, detail FROM audit WHERE customer_id = ?1 ORDER BY id",
            )?
            .query_map([&k], audit_row)?
            .collect::<rusqlite::Result<_>>()?;
        out.audit.extend(rows.into_iter().flatten());
        let mut st = c.prepare_cached(
            "SELECT id, trace_id, destination, action, status, attempts, last_error, created_at
             FROM outbox WHERE customer_id = ?1 ORDER BY id",
        )?;
        let items = st.query_map([&k], |r| {
            let action: String = r.get(3)?;
            Ok(serde_json::json!({
                "id": r.get::<_, i64>(0)?, "trace_id": r.get::<_, String>(1)?, "destination": r.get::<_, String>(2)?,
                "action": serde_json::from_str::<serde_json::Value>(&action).unwrap_or(serde_json::Value::String(action)),
                "status": r.get::<_, String>(4)?, "attempts": r.get::<_, i64>(5)?,
                "last_error": r.get::<_, Option<String>>(6)?, "created_at_ms": r.get::<_, i64>(7)?,
            }))
        })?;
        out.outbox.extend(items.collect::<rusqlite::Result<Vec<_>>>()?);
        out.approvals.extend(
            c.prepare_cached(
                "SELECT id, trace_id, flow, flow_version, customer_id, actions, created_at, expires_at, status,
                 decided_at, decided_by, reason FROM approvals WHERE customer_id = ?1 ORDER BY id",
            )?
            .query_map([&k], approval_row)?
            .collect::<rusqlite::Result<Vec<_>>>()?,
        );
        let mut st = c.prepare_cached(
            "SELECT flow, flow_version, at, status, matched, baseline, trace_id FROM flow_decisions
             WHERE customer_id = ?1 ORDER BY id",
        )?;
        let rows = st.query_map([&k], |r| {
            Ok(serde_json::json!({
                "flow": r.get::<_, String>(0)?, "flow_version": r.get::<_, String>(1)?, "at_ms": r.get::<_, i64>(2)?,
                "status": r.get::<_, String>(3)?, "matched": r.get::<_, bool>(4)?,
                "baseline": r.get::<_, Option<bool>>(5)?, "trace_id": r.get::<_, String>(6)?,
            }))
        })?;
        out.flow_decisions.extend(rows.collect::<rusqlite::Result<Vec<_>>>()?);
        let mut st = c.prepare_cached(
            "SELECT checkout_token, due_at, payload, origin_trace FROM timers WHERE customer_id = ?1",
        )?;
        let rows = st.query_map([&k], |r| {
            let payload: String = r.get(2)?;
            Ok(serde_json::json!({
                "checkout_token": r.get::<_, String>(0)?, "due_at_ms": r.get::<_, i64>(1)?,
                "payload": serde_json::from_str::<serde_json::Value>(&payload).unwrap_or(serde_json::Value::String(payload)),
                "origin_trace": r.get::<_, String>(3)?,
            }))
        })?;
        out.timers.extend(rows.collect::<rusqlite::Result<Vec<_>>>()?);
        let mut st = c.prepare_cached(
            "SELECT customer_id, order_id, day, amount, source FROM transactions WHERE customer_id = ?1",
        )?;
        let rows = st.query_map([&k], transaction_row)?;
        out.transactions.extend(rows.collect::<rusqlite::Result<Vec<_>>>()?);
    }
    Ok(out)
}

/// `PRAGMA wal_checkpoint(TRUNCATE)` on a connection of its own, a few times while a reader or the writer
/// is in the way. Returns whether the log was emptied.
pub(super) fn checkpoint_truncate(path: &Path) -> Result<bool> {
    let c = Connection::open(path)?;
    c.busy_timeout(Duration::from_secs(5))?;
    for attempt in 0..20 {
        let (busy, _log, _done): (i64, i64, i64) =
            c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
        if busy == 0 {
            return Ok(true);
        }
        std::thread::sleep(Duration::from_millis(10 * (attempt + 1)));
    }
    Ok(false)
}
