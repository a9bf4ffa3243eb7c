//! Timers in the SQLite backend.

use super::*;

#[async_trait]
impl Timers for SqliteStore {
    async fn fire_due_timers(&self, now_ms: i64, limit: usize) -> Result<usize> {
        let due: Vec<(String, i64, String, String)> = self
            .read(move |c| {
                let mut st = c.prepare_cached(
                    "SELECT checkout_token, due_at, payload, origin_trace FROM timers WHERE due_at <= ?1
                     ORDER BY due_at LIMIT ?2",
                )?;
                Ok(st
                    .query_map(params![now_ms, limit as i64], |r| {
                        Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                    })?
                    .collect::<rusqlite::Result<_>>()?)
            })
            .await?;
        // Each firing goes into the ingest log under a key naming the timer, then the timer goes. A crash in
        // between fires it again, and the key makes that a duplicate: one delivery per firing, whatever happens.
        for (token, due_at, payload, origin) in &due {
            let headers = serde_json::json!({ "origin_trace": origin, "checkout_token": token }).to_string();
            self.commit_delivery(NewDelivery {
                trace_id: TraceId::new(),
                source: "timer".into(),
                topic: "checkouts/abandoned".into(),
                shop: None,
                webhook_id: None,
                event_id: None,
                received_at_ms: now_ms,
                headers_json: headers,
                body: payload.as_bytes().to_vec(),
                // `{:?}` escapes the token, so any token (even one with a newline) makes a distinct key.
                dedupe_keys: vec![format!("timer:{token:?}:{due_at}")],
                part: None,
            })
            .await?;
        }
        // A timer re-armed meanwhile has another due time and stays.
        let fired: Vec<(String, i64)> =
            due.iter().map(|(token, due_at, _, _)| (token.clone(), *due_at)).collect();
        let n = fired.len();
        self.write(move |tx| {
            let mut del =
                tx.prepare_cached("DELETE FROM timers WHERE checkout_token = ?1 AND due_at = ?2")?;
            for (token, due_at) in &fired {
                del.execute(params![token, due_at])?;
            }
            Ok(())
        })
        .await?;
        Ok(n)
    }

    async fn schedule_runs(&self) -> Result<Vec<ScheduleRun>> {
        self.read(|c| {
            let mut st = c.prepare_cached(
                "SELECT flow, schedule, fire_at, cursor, pending_through, done FROM schedule_runs ORDER BY flow",
            )?;
            let rows = st.query_map([], |r| {
                let customer = |i: usize| -> rusqlite::Result<Option<CustomerId>> {
                    r.get::<_, Option<String>>(i)?.as_deref().map(parse_customer).transpose()
                };
                Ok(ScheduleRun {
                    flow: r.get(0)?,
                    schedule: r.get(1)?,
                    fire_at_ms: r.get(2)?,
                    cursor: customer(3)?,
                    pending_through: customer(4)?,
                    done: r.get(5)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn save_schedule_run(&self, run: ScheduleRun) -> Result<()> {
        self.write(move |tx| {
            tx.prepare_cached(
                "INSERT OR REPLACE INTO schedule_runs (flow, schedule, fire_at, cursor, pending_through, done)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
            )?
            .execute(params![
                run.flow,
                run.schedule,
                run.fire_at_ms,
                run.cursor.map(|c| c.to_string()),
                run.pending_through.map(|c| c.to_string()),
                run.done
            ])?;
            Ok(())
        })
        .await
    }

    async fn delete_schedule_run(&self, flow: &str) -> Result<()> {
        let flow = flow.to_string();
        self.write(move |tx| {
            tx.prepare_cached("DELETE FROM schedule_runs WHERE flow = ?1")?.execute([flow])?;
            Ok(())
        })
        .await
    }
}
