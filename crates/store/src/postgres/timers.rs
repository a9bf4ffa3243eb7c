//! Timers in the PostgreSQL backend.

use super::log::insert_deliveries;
use super::*;

#[async_trait]
impl Timers for PgStore {
    async fn fire_due_timers(&self, now_ms: i64, limit: usize) -> Result<usize> {
        let mut tx = self.begin().await?;
        // Taken and deleted at once: a timer another node is firing is locked and skipped, so each fires once.
        let mut due: Vec<(String, i64, String, String)> = sqlx::query_as(
            "DELETE FROM timers WHERE checkout_token IN (
                 SELECT checkout_token FROM timers WHERE due_at <= $1 ORDER BY due_at LIMIT $2
                 FOR UPDATE SKIP LOCKED
             ) RETURNING checkout_token, due_at, payload, origin_trace",
        )
        .bind(now_ms)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *tx)
        .await?;
        due.sort_by(|a, b| (a.1, &a.0).cmp(&(b.1, &b.0)));
        // Each firing goes into the ingest log under a key naming the timer, in the same transaction as the
        // timer's removal: one delivery per firing.
        let firings: Vec<(NewDelivery, log::Encoded)> = due
            .iter()
            .map(|(token, due_at, payload, origin)| {
                let headers =
                    serde_json::json!({ "origin_trace": origin, "checkout_token": token }).to_string();
                let d = NewDelivery {
                    trace_id: TraceId::new(),
                    source: "timer".into(),
                    topic: "checkouts/abandoned".into(),
                    shop: None,
                    webhook_id: None,
                    event_id: None,
                    received_at_ms: now_ms,
                    headers_json: headers,
                    body: Vec::new(),
                    // `{:?}` escapes the token, so any token (even one with a newline) makes a distinct key.
                    dedupe_keys: vec![format!("timer:{token:?}:{due_at}")],
                    part: None,
                };
                (d, encode_body(payload.as_bytes().to_vec()))
            })
            .collect();
        insert_deliveries(&mut tx, &firings).await?;
        tx.commit().await?;
        Ok(due.len())
    }

    async fn schedule_runs(&self) -> Result<Vec<ScheduleRun>> {
        let rows: Vec<(String, String, i64, Option<String>, Option<String>, bool)> = sqlx::query_as(
            "SELECT flow, schedule, fire_at, cursor, pending_through, done FROM schedule_runs ORDER BY flow",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.into_iter()
            .map(|(flow, schedule, fire_at_ms, cursor, pending_through, done)| {
                Ok(ScheduleRun {
                    flow,
                    schedule,
                    fire_at_ms,
                    cursor: cursor.as_deref().map(parse_customer).transpose()?,
                    pending_through: pending_through.as_deref().map(parse_customer).transpose()?,
                    done,
                })
            })
            .collect()
    }

    async fn save_schedule_run(&self, run: ScheduleRun) -> Result<()> {
        sqlx::query(
            "INSERT INTO schedule_runs (flow, schedule, fire_at, cursor, pending_through, done)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (flow) DO UPDATE SET schedule = excluded.schedule, fire_at = excluded.fire_at,
                 cursor = excluded.cursor, pending_through = excluded.pending_through, done = excluded.done",
        )
        .bind(&run.flow)
        .bind(&run.schedule)
        .bind(run.fire_at_ms)
        .bind(run.cursor.map(|c| c.to_string()))
        .bind(run.pending_through.map(|c| c.to_string()))
        .bind(run.done)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_schedule_run(&self, flow: &str) -> Result<()> {
        sqlx::query("DELETE FROM schedule_runs WHERE flow = $1").bind(flow).execute(&self.pool).await?;
        Ok(())
    }
}
