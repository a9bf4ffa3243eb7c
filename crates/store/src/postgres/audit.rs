//! AuditTrail in the PostgreSQL backend.

use super::*;

#[async_trait]
impl AuditTrail for PgStore {
    async fn append_audit(&self, records: Vec<AuditRecord>) -> Result<()> {
        if let Some(r) = records.iter().find(|r| r.stage == AuditStage::Terminal) {
            return Err(StoreError::Database(format!(
                "trace {}: a terminal state is recorded with its delivery, not appended on its own",
                r.trace_id
            )));
        }
        if records.is_empty() {
            return Ok(());
        }
        // No delivery, processed mark or terminal row: the trace is the records alone.
        let mut tx = self.begin().await?;
        insert_audit(&mut tx, &records).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn audit_of_traces(&self, traces: Vec<TraceId>, stage: AuditStage) -> Result<Vec<AuditRecord>> {
        let mut out = Vec::new();
        // By chunks of traces, each chunk's records by trace (as the embedded backend orders them).
        for chunk in traces.chunks(500) {
            let ids: Vec<String> = chunk.iter().map(ToString::to_string).collect();
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {AUDIT_COLUMNS} FROM audit WHERE trace_id = ANY($1) AND stage = $2
                 ORDER BY trace_id COLLATE \"C\", id"
            )))
            .bind(&ids)
            .bind(stage.as_str())
            .fetch_all(&self.pool)
            .await?;
            for r in &rows {
                out.push(audit_record(r)?);
            }
        }
        Ok(out)
    }

    async fn trace(&self, trace: TraceId) -> Result<Option<TraceView>> {
        let t = trace.to_string();
        // One transaction, so the records and the terminal state are read as of one moment.
        let mut tx = self.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {AUDIT_COLUMNS} FROM audit WHERE trace_id = $1 ORDER BY id"
        )))
        .bind(&t)
        .fetch_all(&mut *tx)
        .await?;
        let records = rows.iter().map(audit_record).collect::<Result<Vec<_>>>()?;
        let terminal: Option<(String, Option<String>)> =
            sqlx::query_as("SELECT state, reason FROM terminal WHERE trace_id = $1")
                .bind(&t)
                .fetch_optional(&mut *tx)
                .await?;
        let terminal = terminal.map(|(state, reason)| terminal_from(&state, reason));
        // A trace with records is returned whether or not it is a delivery's: one of records appended on
        // their own (a model refit's) has neither a delivery nor a terminal state.
        if records.is_empty() && terminal.is_none() {
            let known: Option<i64> =
                sqlx::query_scalar("SELECT seq FROM deliveries WHERE trace_id = $1 LIMIT 1")
                    .bind(&t)
                    .fetch_optional(&mut *tx)
                    .await?;
            if known.is_none() {
                tx.commit().await?;
                return Ok(None);
            }
        }
        tx.commit().await?;
        Ok(Some(TraceView { trace_id: trace, records, terminal }))
    }

    async fn customer_audit(&self, customer: &CustomerId, limit: usize) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {AUDIT_COLUMNS} FROM audit WHERE customer_id = $1 ORDER BY id DESC LIMIT $2"
        )))
        .bind(customer.to_string())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        let mut out = rows.iter().map(audit_record).collect::<Result<Vec<_>>>()?;
        out.reverse();
        Ok(out)
    }
}
