//! AuditTrail in the SQLite backend.

use super::*;

#[async_trait]
impl AuditTrail for SqliteStore {
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
        // Packed here, on the caller's thread, like a processing batch's records; the writer only inserts.
        // No delivery, processed mark or terminal row: the trace is the records alone.
        let rows = pack_audit(records)?;
        self.write(move |tx| {
            for r in &rows {
                insert_audit(tx, r)?;
            }
            Ok(())
        })
        .await
    }

    async fn audit_of_traces(&self, traces: Vec<TraceId>, stage: AuditStage) -> Result<Vec<AuditRecord>> {
        self.read(move |c| {
            let mut out = Vec::new();
            for chunk in traces.chunks(500) {
                let marks = vec!["?"; chunk.len()].join(",");
                // Only rows holding the stage are decoded (a trace holds a record per stage and attempt; a
                // row may pack several stages as `a+b+c`).
                let sql = format!(
                    "SELECT trace_id, customer_id, stage, at, detail FROM audit WHERE trace_id IN ({marks}) \
                     AND instr('+' || stage || '+', ?) > 0 ORDER BY trace_id, id"
                );
                let mut params: Vec<String> = chunk.iter().map(ToString::to_string).collect();
                params.push(format!("+{}+", stage.as_str()));
                let rows = c
                    .prepare(&sql)?
                    .query_map(rusqlite::params_from_iter(params.iter()), audit_row)?
                    .collect::<rusqlite::Result<Vec<_>>>()?;
                out.extend(rows.into_iter().flatten().filter(|r| r.stage == stage));
            }
            Ok(out)
        })
        .await
    }

    async fn trace(&self, trace: TraceId) -> Result<Option<TraceView>> {
        self.read(move |c| {
            let t = trace.to_string();
            let records: Vec<AuditRecord> = c
                .prepare_cached(
                    "SELECT trace_id, customer_id, stage, at, detail FROM audit WHERE trace_id = ?1 ORDER BY id",
                )?
                .query_map([&t], audit_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?
                .into_iter()
                .flatten()
                .collect();
            let terminal = c
                .prepare_cached("SELECT state, reason FROM terminal WHERE trace_id = ?1")?
                .query_row([&t], |r| Ok(terminal_from(&r.get::<_, String>(0)?, r.get(1)?)))
                .optional()?;
            // A trace with records is returned whether or not it is a delivery's: one of records appended on
            // their own (a model refit's) has neither a delivery nor a terminal state.
            if records.is_empty() && terminal.is_none() {
                let known: Option<i64> = c
                    .prepare_cached("SELECT seq FROM log.deliveries WHERE trace_id = ?1")?
                    .query_row([&t], |r| r.get(0))
                    .optional()?;
                if known.is_none() {
                    return Ok(None);
                }
            }
            Ok(Some(TraceView { trace_id: trace, records, terminal }))
        })
        .await
    }

    async fn customer_audit(&self, customer: &CustomerId, limit: usize) -> Result<Vec<AuditRecord>> {
        let id = customer.to_string();
        self.read(move |c| {
            // A row holds one or more records, so `limit` rows hold at least `limit` records.
            let rows: Vec<Vec<AuditRecord>> = c
                .prepare_cached(
                    "SELECT trace_id, customer_id, stage, at, detail FROM audit WHERE customer_id = ?1
                     ORDER BY id DESC LIMIT ?2",
                )?
                .query_map(params![id, limit as i64], audit_row)?
                .collect::<rusqlite::Result<_>>()?;
            let mut v: Vec<AuditRecord> = rows.into_iter().rev().flatten().collect();
            let extra = v.len().saturating_sub(limit);
            v.drain(..extra);
            Ok(v)
        })
        .await
    }
}
