//! FetchJobs in the PostgreSQL backend.

use super::*;

/// The columns [`fetch_job`] reads, in order.
const FETCH_JOB_COLUMNS: &str = "id, trace_id, source, job, status, attempts, next_attempt_at, last_error";

/// A `fetch_jobs` row read as [`FETCH_JOB_COLUMNS`].
fn fetch_job(r: &PgRow) -> Result<FetchJobRecord> {
    Ok(FetchJobRecord {
        id: r.try_get(0)?,
        trace_id: parse_trace(&r.try_get::<String, _>(1)?)?,
        source: r.try_get(2)?,
        job: r.try_get(3)?,
        status: r.try_get(4)?,
        attempts: r.try_get::<i64, _>(5)?.clamp(0, i64::from(u32::MAX)) as u32,
        next_attempt_at_ms: r.try_get(6)?,
        last_error: r.try_get(7)?,
    })
}

#[async_trait]
impl FetchJobs for PgStore {
    async fn due_fetch_jobs(&self, now_ms: i64, limit: usize) -> Result<Vec<FetchJobRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {FETCH_JOB_COLUMNS} FROM fetch_jobs WHERE status = 'pending' AND next_attempt_at <= $1
             ORDER BY next_attempt_at, id LIMIT $2"
        )))
        .bind(now_ms)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(fetch_job).collect()
    }

    async fn settle_fetch_job(&self, s: FetchSettlement) -> Result<()> {
        let mut tx = self.begin().await?;
        let trace: Option<String> =
            sqlx::query_scalar("SELECT trace_id FROM fetch_jobs WHERE id = $1 FOR UPDATE")
                .bind(s.id)
                .fetch_optional(&mut *tx)
                .await?;
        let Some(trace) = trace else {
            return Err(StoreError::NotFound(format!("fetch job {}", s.id)));
        };
        match &s.outcome {
            FetchSettle::Done => {
                sqlx::query(
                    "UPDATE fetch_jobs SET status = 'done', attempts = attempts + 1, settled_at = $2 WHERE id = $1",
                )
                .bind(s.id)
                .bind(s.at_ms)
                .execute(&mut *tx)
                .await?
            }
            FetchSettle::RetryAt { at_ms, reason } => {
                sqlx::query(
                    "UPDATE fetch_jobs SET attempts = attempts + 1, next_attempt_at = $2, last_error = $3
                     WHERE id = $1",
                )
                .bind(s.id)
                .bind(at_ms)
                .bind(reason)
                .execute(&mut *tx)
                .await?
            }
            FetchSettle::Dead { reason } => {
                sqlx::query(
                    "UPDATE fetch_jobs SET status = 'dead', attempts = attempts + 1, last_error = $3,
                     settled_at = $2 WHERE id = $1",
                )
                .bind(s.id)
                .bind(s.at_ms)
                .bind(reason)
                .execute(&mut *tx)
                .await?
            }
        };
        insert_audit(&mut tx, &s.audit).await?;
        if let Some(t) = &s.terminal {
            insert_terminal(&mut tx, parse_trace(&trace)?, t, s.at_ms).await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn requeue_fetch_jobs(&self, trace: Option<TraceId>) -> Result<usize> {
        let mut tx = self.begin().await?;
        let traces: Vec<String> = sqlx::query_scalar(
            "UPDATE fetch_jobs SET status = 'pending', attempts = 0, next_attempt_at = $2, settled_at = NULL
             WHERE status = 'dead' AND ($1::text IS NULL OR trace_id = $1) RETURNING trace_id",
        )
        .bind(trace.map(|t| t.to_string()))
        .bind(now_ms())
        .fetch_all(&mut *tx)
        .await?;
        reopen_traces(&mut tx, &traces).await?;
        tx.commit().await?;
        Ok(traces.len())
    }

    async fn fetch_jobs_of(&self, trace: TraceId) -> Result<Vec<FetchJobRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {FETCH_JOB_COLUMNS} FROM fetch_jobs WHERE trace_id = $1 ORDER BY id"
        )))
        .bind(trace.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(fetch_job).collect()
    }
}
