//! FetchJobs in the SQLite backend.

use super::*;

#[async_trait]
impl FetchJobs for SqliteStore {
    async fn due_fetch_jobs(&self, now_ms: i64, limit: usize) -> Result<Vec<FetchJobRecord>> {
        self.read(move |c| {
            let rows = c
                .prepare_cached(&format!(
                    "SELECT {FETCH_JOB_COLUMNS} FROM fetch_jobs INDEXED BY fetch_jobs_due
                     WHERE status = 'pending' AND next_attempt_at <= ?1 ORDER BY next_attempt_at, id LIMIT ?2"
                ))?
                .query_map(params![now_ms, limit as i64], fetch_job_row)?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
        .await
    }

    async fn settle_fetch_job(&self, s: FetchSettlement) -> Result<()> {
        let audit = pack_audit(s.audit)?;
        self.write(move |tx| {
            let trace: Option<String> = tx
                .prepare_cached("SELECT trace_id FROM fetch_jobs WHERE id = ?1")?
                .query_row([s.id], |r| r.get(0))
                .optional()?;
            let Some(trace) = trace else {
                return Err(StoreError::NotFound(format!("fetch job {}", s.id)));
            };
            match &s.outcome {
                FetchSettle::Done => tx
                    .prepare_cached(
                        "UPDATE fetch_jobs SET status = 'done', attempts = attempts + 1, settled_at = ?2 WHERE id = ?1",
                    )?
                    .execute(params![s.id, s.at_ms])?,
                FetchSettle::RetryAt { at_ms, reason } => tx
                    .prepare_cached(
                        "UPDATE fetch_jobs SET attempts = attempts + 1, next_attempt_at = ?2, last_error = ?3
                         WHERE id = ?1",
                    )?
                    .execute(params![s.id, at_ms, reason])?,
                FetchSettle::Dead { reason } => tx
                    .prepare_cached(
                        "UPDATE fetch_jobs SET status = 'dead', attempts = attempts + 1, last_error = ?3,
                         settled_at = ?2 WHERE id = ?1",
                    )?
                    .execute(params![s.id, s.at_ms, reason])?,
            };
            for r in &audit {
                insert_audit(tx, r)?;
            }
            if let Some(t) = &s.terminal {
                let trace = parse_trace(&trace)?;
                insert_terminal(tx, trace, t, s.at_ms)?;
            }
            Ok(())
        })
        .await
    }

    async fn requeue_fetch_jobs(&self, trace: Option<TraceId>) -> Result<usize> {
        self.write(move |tx| {
            let now = ts_to_ms(time::OffsetDateTime::now_utc());
            let t = trace.map(|t| t.to_string());
            let traces: Vec<String> = tx
                .prepare_cached(
                    "SELECT DISTINCT trace_id FROM fetch_jobs WHERE status = 'dead' AND (?1 IS NULL OR trace_id = ?1)",
                )?
                .query_map(params![t], |r| r.get(0))?
                .collect::<rusqlite::Result<_>>()?;
            let n = tx
                .prepare_cached(
                    "UPDATE fetch_jobs SET status = 'pending', attempts = 0, next_attempt_at = ?2, settled_at = NULL
                     WHERE status = 'dead' AND (?1 IS NULL OR trace_id = ?1)",
                )?
                .execute(params![t, now])?;
            for tr in &traces {
                tx.prepare_cached("DELETE FROM terminal WHERE trace_id = ?1")?.execute([tr])?;
            }
            Ok(n)
        })
        .await
    }

    async fn fetch_jobs_of(&self, trace: TraceId) -> Result<Vec<FetchJobRecord>> {
        self.read(move |c| {
            let rows = c
                .prepare_cached(&format!(
                    "SELECT {FETCH_JOB_COLUMNS} FROM fetch_jobs WHERE trace_id = ?1 ORDER BY id"
                ))?
                .query_map([trace.to_string()], fetch_job_row)?
                .collect::<rusqlite::Result<_>>()?;
            Ok(rows)
        })
        .await
    }
}
