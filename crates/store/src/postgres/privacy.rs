//! Erasure and export in the PostgreSQL backend.
//!
//! An erasure removes the person from every table in the transaction that records its job (the processing
//! commit of the delivery that carried it, or a job of its own), and remembers the person's traces in
//! `privacy_job_traces`. The deliveries go from the ingest log afterwards ([`Privacy::erase_from_log`]): each
//! is kept as an empty tombstone (its seq, trace, source, topic, shop and dedupe keys, none of them personal),
//! so a platform's retry of the same webhook is still a duplicate.
//!
//! Unlike the embedded backend there is no `secure_delete` or free-page scrubbing here: PostgreSQL leaves
//! deleted and updated row versions in place until `VACUUM` reclaims them, so operators run `VACUUM` (and
//! `Processing::compact` runs one) to make an erasure final on disk.

use super::approvals::{APPROVAL_COLUMNS, approval_record};
use super::*;

/// The job row's lasting counts: what was removed, by kind.
fn count_json(pairs: &[(&str, u64)]) -> serde_json::Value {
    serde_json::Value::Object(
        pairs.iter().map(|(k, v)| (k.to_string(), serde_json::Value::from(*v))).collect(),
    )
}

/// Starts a read-only snapshot (every read of the call sees the same committed state).
async fn begin_read(store: &PgStore) -> Result<Tx> {
    let mut tx = store.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
    Ok(tx)
}

/// The person's keys: those given, and whoever is stored under the email (trimmed, lower-cased).
async fn resolve_keys(tx: &mut Tx, customers: &[CustomerId], email: Option<&str>) -> Result<Vec<String>> {
    let mut keys: Vec<String> = customers.iter().map(|c| c.to_string()).collect();
    if let Some(email) = email.map(|e| e.trim().to_lowercase()).filter(|e| !e.is_empty()) {
        let found: Vec<String> = sqlx::query_scalar("SELECT customer_id FROM customers WHERE email = $1")
            .bind(email)
            .fetch_all(&mut **tx)
            .await?;
        keys.extend(found);
    }
    keys.sort();
    keys.dedup();
    Ok(keys)
}

/// The traces that name any of `keys`, and the destinations their outbox items reached (attempted at least
/// once: an attempt that timed out may have landed).
async fn traces_and_destinations(tx: &mut Tx, keys: &[String]) -> Result<(Vec<String>, Vec<String>)> {
    let mut traces: Vec<String> = sqlx::query_scalar(
        "SELECT trace_id FROM audit WHERE customer_id = ANY($1::text[])
         UNION SELECT trace_id FROM outbox WHERE customer_id = ANY($1::text[])
         UNION SELECT origin_trace FROM timers WHERE customer_id = ANY($1::text[])
         UNION SELECT trace_id FROM approvals WHERE customer_id = ANY($1::text[])",
    )
    .bind(keys)
    .fetch_all(&mut **tx)
    .await?;
    let mut destinations: Vec<String> = sqlx::query_scalar(
        "SELECT DISTINCT destination FROM outbox
         WHERE customer_id = ANY($1::text[]) AND (attempts > 0 OR status <> 'pending')",
    )
    .bind(keys)
    .fetch_all(&mut **tx)
    .await?;
    traces.sort();
    traces.dedup();
    destinations.sort();
    destinations.dedup();
    Ok((traces, destinations))
}

/// How many rows of `table` name any of `keys` (`table` is a constant of this file); of `audit`, how many
/// records (a row may pack several).
async fn count_keys(tx: &mut Tx, table: &str, keys: &[String]) -> Result<u64> {
    let count = if table == "audit" { super::audit::AUDIT_RECORD_COUNT } else { "COUNT(*)" };
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "SELECT {count} FROM {table} WHERE customer_id = ANY($1::text[])"
    )))
    .bind(keys)
    .fetch_one(&mut **tx)
    .await?;
    Ok(n as u64)
}

/// Deletes the audit rows matching `filter` (a condition on `$1`, a constant of this file) and returns how many
/// records they held.
async fn delete_audit(tx: &mut Tx, filter: &str, values: &[String]) -> Result<u64> {
    let n: i64 = sqlx::query_scalar(sqlx::AssertSqlSafe(format!(
        "WITH gone AS (DELETE FROM audit WHERE {filter} RETURNING stage)
         SELECT {} FROM gone",
        super::audit::AUDIT_RECORD_COUNT
    )))
    .bind(values)
    .fetch_one(&mut **tx)
    .await?;
    Ok(n.max(0) as u64)
}

/// Records `job` and, for an erasure, removes the person from every table (see the module docs). Runs in
/// the caller's transaction (the processing commit of the delivery that carried it, or a job of its own).
/// Returns the job's id.
pub(crate) async fn submit(tx: &mut Tx, job: &NewPrivacyJob, now_ms: i64) -> Result<i64> {
    let keys = resolve_keys(tx, &job.customers, job.email.as_deref()).await?;
    let customers_json = serde_json::to_string(&keys)?;
    let email = job.email.as_ref().map(|e| e.trim().to_lowercase());
    let id: i64 = sqlx::query_scalar(
        "INSERT INTO privacy_jobs (kind, pseudonym, trace_id, requested_by, reference, created_at, updated_at,
         customers, email, phone) VALUES ($1, $2, $3, $4, $5, $6, $6, $7, $8, $9) RETURNING id",
    )
    .bind(job.kind.as_str())
    .bind(&job.pseudonym)
    .bind(job.trace_id.to_string())
    .bind(&job.requested_by)
    .bind(&job.reference)
    .bind(job.at_ms)
    .bind(customers_json)
    .bind(email)
    .bind(&job.phone)
    .fetch_one(&mut **tx)
    .await?;
    if job.kind == PrivacyJobKind::Export {
        return Ok(id);
    }
    erase_main(tx, id, job, &keys, now_ms).await?;
    Ok(id)
}

async fn erase_main(tx: &mut Tx, id: i64, job: &NewPrivacyJob, keys: &[String], now_ms: i64) -> Result<()> {
    let (mut traces, mut destinations) = traces_and_destinations(tx, keys).await?;
    let own = job.trace_id.to_string();
    traces.push(own.clone());
    traces.sort();
    traces.dedup();
    destinations.extend(job.destinations.iter().cloned());
    // A batch push sends every customer (or a segment) and is not recorded per person: a destination that
    // ever had one may hold them.
    let pushed: Vec<String> =
        sqlx::query_scalar("SELECT destination FROM push_runs").fetch_all(&mut **tx).await?;
    destinations.extend(pushed);
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
    for (i, table) in
        ["customers", "audit", "outbox", "timers", "approvals", "flow_decisions", "transactions"]
            .into_iter()
            .enumerate()
    {
        if table == "audit" {
            // Records, not rows: a row may pack several.
            removed[i].1 += delete_audit(tx, "customer_id = ANY($1::text[])", keys).await?;
            continue;
        }
        removed[i].1 += sqlx::query(sqlx::AssertSqlSafe(format!(
            "DELETE FROM {table} WHERE customer_id = ANY($1::text[])"
        )))
        .bind(keys)
        .execute(&mut **tx)
        .await?
        .rows_affected();
    }
    // The offers made to the person (what the bandit learned from them stays, as it does in the learner's
    // memory: only the rows naming them go), and their membership of adopted segments (the segments' counts
    // are refreshed by the next refresh).
    for table in ["offer_log", "segment_members"] {
        sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {table} WHERE customer_id = ANY($1::text[])")))
            .bind(keys)
            .execute(&mut **tx)
            .await?;
    }
    // The other ids the person was stitched by (ids and digests only), and an alias that is the key.
    sqlx::query("DELETE FROM aliases WHERE customer_id = ANY($1::text[]) OR alias = ANY($1::text[])")
        .bind(keys)
        .execute(&mut **tx)
        .await?;
    // The records of the person's traces that name no customer (a delivery's receipt before its customer
    // was known) are theirs too; a quarantine reason and a terminal reason may quote them.
    removed[1].1 += delete_audit(tx, "trace_id = ANY($1::text[]) AND customer_id IS NULL", &traces).await?;
    sqlx::query(
        "UPDATE deliveries SET reason = NULL WHERE trace_id = ANY($1::text[]) AND status = 'quarantined'",
    )
    .bind(&traces)
    .execute(&mut **tx)
    .await?;
    // A settled fetch job may carry the notification's payload (Shopify enrichment); one still pending is
    // left to finish, so its trace still gets a terminal state.
    sqlx::query("DELETE FROM fetch_jobs WHERE trace_id = ANY($1::text[]) AND status <> 'pending'")
        .bind(&traces)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "UPDATE terminal SET reason = 'erased'
         WHERE trace_id = ANY($1::text[]) AND trace_id <> $2 AND reason IS NOT NULL",
    )
    .bind(&traces)
    .bind(&own)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO privacy_job_traces (job_id, trace_id) SELECT $1, t FROM UNNEST($2::text[]) AS t
         ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(&traces)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO privacy_destinations (job_id, destination, status, next_attempt_at, updated_at)
         SELECT $1, d, 'pending', $3, $3 FROM UNNEST($2::text[]) AS d ON CONFLICT DO NOTHING",
    )
    .bind(id)
    .bind(&destinations)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    let summary = count_json(&removed);
    sqlx::query("UPDATE privacy_jobs SET summary = $2 WHERE id = $1")
        .bind(id)
        .bind(summary.to_string())
        .execute(&mut **tx)
        .await?;
    let detail = serde_json::json!({
        "pseudonym": job.pseudonym, "job": id, "requested_by": job.requested_by, "reference": job.reference,
        "removed": summary, "destinations": destinations,
    });
    insert_audit(
        tx,
        &[AuditRecord {
            trace_id: job.trace_id,
            customer: None,
            stage: AuditStage::Erasure,
            at: ms_to_ts(job.at_ms),
            detail,
        }],
    )
    .await
}

/// Empties the deliveries of `traces` in the log, keeping each as a tombstone (see the module docs); a
/// schedule chunk naming other customers too only loses `keys`. Returns how many were changed.
async fn erase_log(tx: &mut Tx, traces: &[String], keys: &[String]) -> Result<u64> {
    let rows = sqlx::query(
        "SELECT seq, source, body, body_codec FROM deliveries WHERE trace_id = ANY($1::text[])
         ORDER BY seq FOR UPDATE",
    )
    .bind(traces)
    .fetch_all(&mut **tx)
    .await?;
    let mut n = 0u64;
    for r in rows {
        let seq: i64 = r.try_get(0)?;
        let source: String = r.try_get(1)?;
        let body: Vec<u8> = r.try_get(2)?;
        let codec: i16 = r.try_get(3)?;
        if body.is_empty() {
            continue;
        }
        if source == "schedule" {
            // A chunk of a schedule firing names up to 500 customers: only this person leaves it.
            let raw = unpack(i64::from(codec), body).map_err(StoreError::Corrupt)?;
            if let Ok(mut chunk) = serde_json::from_slice::<serde_json::Value>(&raw)
                && let Some(list) = chunk.get_mut("customers").and_then(|c| c.as_array_mut())
            {
                let before = list.len();
                list.retain(|c| !c.as_str().is_some_and(|c| keys.iter().any(|k| k == c)));
                if list.len() != before && !list.is_empty() {
                    let (codec, stored) = encode_body(serde_json::to_vec(&chunk)?);
                    sqlx::query("UPDATE deliveries SET body = $2, body_codec = $3 WHERE seq = $1")
                        .bind(seq)
                        .bind(stored)
                        .bind(codec as i16)
                        .execute(&mut **tx)
                        .await?;
                    n += 1;
                    continue;
                }
            }
        }
        sqlx::query(
            "UPDATE deliveries SET body = ''::bytea, body_codec = 0, headers = '{}', reason = NULL,
             status = CASE WHEN status = 'pending' THEN 'pending' ELSE 'erased' END
             WHERE seq = $1",
        )
        .bind(seq)
        .execute(&mut **tx)
        .await?;
        n += 1;
    }
    Ok(n)
}

fn job_row(r: &PgRow) -> Result<PrivacyJob> {
    let customers: Option<String> = r.try_get(10)?;
    let customers: Vec<String> = customers.and_then(|c| serde_json::from_str(&c).ok()).unwrap_or_default();
    let summary: String = r.try_get(13)?;
    Ok(PrivacyJob {
        id: r.try_get(0)?,
        kind: PrivacyJobKind::parse(&r.try_get::<String, _>(1)?).unwrap_or(PrivacyJobKind::Erase),
        pseudonym: r.try_get(2)?,
        trace_id: parse_trace(&r.try_get::<String, _>(3)?)?,
        requested_by: r.try_get(4)?,
        reference: r.try_get(5)?,
        created_at_ms: r.try_get(6)?,
        updated_at_ms: r.try_get(7)?,
        done: r.try_get(8)?,
        log_erased: r.try_get(9)?,
        customers: customers.iter().map(|c| parse_customer(c)).collect::<Result<_>>()?,
        email: r.try_get(11)?,
        phone: r.try_get(12)?,
        summary: serde_json::from_str(&summary).unwrap_or(serde_json::Value::Null),
        destinations: Vec::new(),
    })
}

fn json_or_string(s: String) -> serde_json::Value {
    serde_json::from_str::<serde_json::Value>(&s).unwrap_or(serde_json::Value::String(s))
}

#[async_trait]
impl Privacy for PgStore {
    async fn submit_privacy_job(&self, job: NewPrivacyJob) -> Result<i64> {
        let mut tx = self.begin().await?;
        let id = submit(&mut tx, &job, now_ms()).await?;
        tx.commit().await?;
        Ok(id)
    }

    async fn preview_erasure(
        &self,
        customers: Vec<CustomerId>,
        email: Option<String>,
    ) -> Result<ErasurePreview> {
        let mut tx = begin_read(self).await?;
        let keys = resolve_keys(&mut tx, &customers, email.as_deref()).await?;
        let (traces, destinations) = traces_and_destinations(&mut tx, &keys).await?;
        let p = ErasurePreview {
            states: count_keys(&mut tx, "customers", &keys).await?,
            audit_records: count_keys(&mut tx, "audit", &keys).await?,
            traces: traces.len() as u64,
            outbox_items: count_keys(&mut tx, "outbox", &keys).await?,
            timers: count_keys(&mut tx, "timers", &keys).await?,
            approvals: count_keys(&mut tx, "approvals", &keys).await?,
            flow_decisions: count_keys(&mut tx, "flow_decisions", &keys).await?,
            transactions: count_keys(&mut tx, "transactions", &keys).await?,
            destinations,
        };
        tx.commit().await?;
        Ok(p)
    }

    async fn privacy_jobs(&self, pending_only: bool, pseudonym: Option<String>) -> Result<Vec<PrivacyJob>> {
        const COLS: &str =
            "id, kind, pseudonym, trace_id, requested_by, reference, created_at, updated_at, done,
            log_erased, customers, email, phone, summary";
        let mut tx = begin_read(self).await?;
        let rows = match (pending_only, pseudonym) {
            (true, _) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLS} FROM privacy_jobs WHERE NOT done ORDER BY id DESC"
                )))
                .fetch_all(&mut *tx)
                .await?
            }
            (false, Some(p)) => {
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {COLS} FROM privacy_jobs WHERE pseudonym = $1 ORDER BY id DESC"
                )))
                .bind(p)
                .fetch_all(&mut *tx)
                .await?
            }
            (false, None) => {
                sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {COLS} FROM privacy_jobs ORDER BY id DESC")))
                    .fetch_all(&mut *tx)
                    .await?
            }
        };
        let mut jobs = rows.iter().map(job_row).collect::<Result<Vec<_>>>()?;
        let ids: Vec<i64> = jobs.iter().map(|j| j.id).collect();
        let dests = sqlx::query(
            "SELECT job_id, destination, status, attempts, next_attempt_at, detail, updated_at
             FROM privacy_destinations WHERE job_id = ANY($1::bigint[]) ORDER BY job_id, destination",
        )
        .bind(&ids)
        .fetch_all(&mut *tx)
        .await?;
        tx.commit().await?;
        let mut by_job: std::collections::HashMap<i64, Vec<ErasureDestination>> = Default::default();
        for r in &dests {
            let status: String = r.try_get(2)?;
            by_job.entry(r.try_get(0)?).or_default().push(ErasureDestination {
                destination: r.try_get(1)?,
                status: ErasureStatus::parse(&status).unwrap_or(ErasureStatus::Pending),
                attempts: r.try_get::<i64, _>(3)?.clamp(0, i64::from(u32::MAX)) as u32,
                next_attempt_at_ms: r.try_get(4)?,
                detail: r.try_get(5)?,
                updated_at_ms: r.try_get(6)?,
            });
        }
        for j in &mut jobs {
            j.destinations = by_job.remove(&j.id).unwrap_or_default();
        }
        Ok(jobs)
    }

    async fn erase_from_log(&self, job_id: i64) -> Result<u64> {
        let mut tx = self.begin().await?;
        // The job row, locked: two nodes running the log step of one job take turns, and the second finds
        // no traces left.
        let row = sqlx::query("SELECT customers, summary FROM privacy_jobs WHERE id = $1 FOR UPDATE")
            .bind(job_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound(format!("privacy job {job_id}")));
        };
        let customers: Option<String> = row.try_get(0)?;
        let summary: String = row.try_get(1)?;
        let keys: Vec<String> = match customers {
            Some(json) => serde_json::from_str(&json)?,
            None => Vec::new(),
        };
        let traces: Vec<String> =
            sqlx::query_scalar("SELECT trace_id FROM privacy_job_traces WHERE job_id = $1")
                .bind(job_id)
                .fetch_all(&mut *tx)
                .await?;
        let n = if traces.is_empty() { 0 } else { erase_log(&mut tx, &traces, &keys).await? };
        let mut summary: serde_json::Value = serde_json::from_str(&summary)?;
        if let Some(m) = summary.as_object_mut() {
            let before = m.get("deliveries").and_then(|v| v.as_u64()).unwrap_or(0);
            m.insert("deliveries".into(), (before + n).into());
        }
        sqlx::query("UPDATE privacy_jobs SET log_erased = TRUE, summary = $2, updated_at = $3 WHERE id = $1")
            .bind(job_id)
            .bind(summary.to_string())
            .bind(now_ms())
            .execute(&mut *tx)
            .await?;
        sqlx::query("DELETE FROM privacy_job_traces WHERE job_id = $1")
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn record_erasure_destination(&self, job_id: i64, d: ErasureDestination) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query(
            "INSERT INTO privacy_destinations (job_id, destination, status, attempts, next_attempt_at, detail, updated_at)
             VALUES ($1, $2, $3, $4, $5, $6, $7)
             ON CONFLICT (job_id, destination) DO UPDATE SET status = excluded.status, attempts = excluded.attempts,
             next_attempt_at = excluded.next_attempt_at, detail = excluded.detail, updated_at = excluded.updated_at",
        )
        .bind(job_id)
        .bind(&d.destination)
        .bind(d.status.as_str())
        .bind(i64::from(d.attempts))
        .bind(d.next_attempt_at_ms)
        .bind(&d.detail)
        .bind(d.updated_at_ms)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn finish_privacy_job(&self, job_id: i64, extra: serde_json::Value) -> Result<()> {
        let mut tx = self.begin().await?;
        let row = sqlx::query("SELECT kind, log_erased, summary FROM privacy_jobs WHERE id = $1 FOR UPDATE")
            .bind(job_id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(row) = row else {
            return Err(StoreError::NotFound(format!("privacy job {job_id}")));
        };
        let kind: String = row.try_get(0)?;
        let log_erased: bool = row.try_get(1)?;
        let summary: String = row.try_get(2)?;
        if kind == PrivacyJobKind::Erase.as_str() {
            let open: i64 = sqlx::query_scalar(
                "SELECT COUNT(*) FROM privacy_destinations WHERE job_id = $1 AND status = 'pending'",
            )
            .bind(job_id)
            .fetch_one(&mut *tx)
            .await?;
            if !log_erased || open > 0 {
                return Err(StoreError::Conflict(format!(
                    "privacy job {job_id} is not done: {}{open} destination request(s) pending",
                    if log_erased { "" } else { "its deliveries are still in the ingest log; " }
                )));
            }
        }
        let mut summary: serde_json::Value = serde_json::from_str(&summary)?;
        if let (Some(m), Some(extra)) = (summary.as_object_mut(), extra.as_object()) {
            for (k, v) in extra {
                m.insert(k.clone(), v.clone());
            }
        }
        sqlx::query(
            "UPDATE privacy_jobs SET done = TRUE, customers = NULL, email = NULL, phone = NULL, summary = $2,
             updated_at = $3 WHERE id = $1",
        )
        .bind(job_id)
        .bind(summary.to_string())
        .bind(now_ms())
        .execute(&mut *tx)
        .await?;
        sqlx::query("DELETE FROM privacy_job_traces WHERE job_id = $1")
            .bind(job_id)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn export_customer(&self, customers: Vec<CustomerId>) -> Result<CustomerExport> {
        let mut out = CustomerExport { customers: customers.clone(), ..Default::default() };
        let mut tx = begin_read(self).await?;
        for cid in &customers {
            let k = cid.to_string();
            let states: Vec<Vec<u8>> =
                sqlx::query_scalar("SELECT state FROM customers WHERE customer_id = $1")
                    .bind(&k)
                    .fetch_all(&mut *tx)
                    .await?;
            out.states.extend(states);
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {AUDIT_COLUMNS}, detail_lz4 FROM audit WHERE customer_id = $1 ORDER BY id"
            )))
            .bind(&k)
            .fetch_all(&mut *tx)
            .await?;
            for r in &rows {
                out.audit.extend(super::audit::audit_records(r)?);
            }
            let rows = sqlx::query(
                "SELECT id, trace_id, destination, action, status, attempts, last_error, created_at
                 FROM outbox WHERE customer_id = $1 ORDER BY id",
            )
            .bind(&k)
            .fetch_all(&mut *tx)
            .await?;
            for r in &rows {
                out.outbox.push(serde_json::json!({
                    "id": r.try_get::<i64, _>(0)?, "trace_id": r.try_get::<String, _>(1)?,
                    "destination": r.try_get::<String, _>(2)?, "action": json_or_string(r.try_get(3)?),
                    "status": r.try_get::<String, _>(4)?, "attempts": r.try_get::<i64, _>(5)?,
                    "last_error": r.try_get::<Option<String>, _>(6)?, "created_at_ms": r.try_get::<i64, _>(7)?,
                }));
            }
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE customer_id = $1 ORDER BY id"
            )))
            .bind(&k)
            .fetch_all(&mut *tx)
            .await?;
            for r in &rows {
                out.approvals.push(approval_record(r)?);
            }
            let rows = sqlx::query(
                "SELECT flow, flow_version, at, status, matched, baseline, trace_id FROM flow_decisions
                 WHERE customer_id = $1 ORDER BY id",
            )
            .bind(&k)
            .fetch_all(&mut *tx)
            .await?;
            for r in &rows {
                out.flow_decisions.push(serde_json::json!({
                    "flow": r.try_get::<String, _>(0)?, "flow_version": r.try_get::<String, _>(1)?,
                    "at_ms": r.try_get::<i64, _>(2)?, "status": r.try_get::<String, _>(3)?,
                    "matched": r.try_get::<bool, _>(4)?, "baseline": r.try_get::<Option<bool>, _>(5)?,
                    "trace_id": r.try_get::<String, _>(6)?,
                }));
            }
            let rows = sqlx::query(
                "SELECT checkout_token, due_at, payload, origin_trace FROM timers WHERE customer_id = $1
                 ORDER BY checkout_token",
            )
            .bind(&k)
            .fetch_all(&mut *tx)
            .await?;
            for r in &rows {
                out.timers.push(serde_json::json!({
                    "checkout_token": r.try_get::<String, _>(0)?, "due_at_ms": r.try_get::<i64, _>(1)?,
                    "payload": json_or_string(r.try_get(2)?), "origin_trace": r.try_get::<String, _>(3)?,
                }));
            }
            let rows = sqlx::query(
                "SELECT customer_id, order_id, day, amount, source FROM transactions WHERE customer_id = $1
                 ORDER BY order_id",
            )
            .bind(&k)
            .fetch_all(&mut *tx)
            .await?;
            for r in &rows {
                let day: i64 = r.try_get(2)?;
                out.transactions.push(ImportedTransaction {
                    customer_id: r.try_get(0)?,
                    order_id: r.try_get(1)?,
                    day: i32::try_from(day)
                        .map_err(|_| StoreError::Corrupt(format!("transaction day {day}")))?,
                    amount: r.try_get(3)?,
                    source: r.try_get(4)?,
                });
            }
        }
        tx.commit().await?;
        Ok(out)
    }
}
