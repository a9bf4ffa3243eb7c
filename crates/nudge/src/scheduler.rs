//! The scheduler: fires `schedule` flows (`trigger = "schedule"`, a cron `schedule` in UTC) for every
//! customer in the store.
//!
//! A firing goes through the customers in key order ([`Store::scan_states`]) in chunks of [`CHUNK`]; each
//! chunk becomes one delivery in the ingest log (source `schedule`, topic the flow's name, a
//! [`ScheduleChunk`] as body), which the processing worker turns into one [`Event::ScheduleTick`] per
//! customer, decided by that flow alone. Each chunk's delivery has its own trace and terminal state.
//!
//! Exactly once per customer and occurrence, crash or not: the flow's [`ScheduleRun`] record says which
//! occurrence is being fired and how far it got. Before a chunk is committed, the record names the chunk's
//! last customer (`pending_through`); the chunk's dedupe key names the flow, the occurrence and the customer
//! the chunk starts after. A restart finds the record, commits the same customers again under the same key
//! (a duplicate if the first commit landed) and goes on from there.
//!
//! Which occurrences fire: a flow first seen (or whose schedule changed) owes nothing before that instant;
//! after that, each pass fires the latest occurrence since the last one fired. Occurrences missed while
//! nudge was down are fired once, at start, as the latest of them (not once each). A flow no longer
//! configured (removed by a reload) stops firing and its record is dropped; a firing already in the log is
//! processed and decides nothing for a flow that is gone.

use crate::pipeline::{Flows, ms_to_ts, ts_to_ms};
use crate::telemetry;
use nudge_model::{CustomerId, Event, ScheduleTick, Timestamp, TraceId};
use nudge_store::{CommitResult, NewDelivery, ScheduleRun, Store, StoreError};
use serde::{Deserialize, Serialize};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// Customers per delivery.
pub const CHUNK: usize = 500;
/// Chunks one pass commits before the worker looks at shutdown, reloads and the backlog again.
const CHUNKS_PER_PASS: usize = 8;
/// A firing goes on only while at most this many deliveries wait for processing: processing goes in log
/// order, so webhooks arriving during a firing over a large store wait behind a few chunks, not all of them.
const MAX_PENDING: u64 = 16;
/// The longest the worker sleeps between passes, so reloaded flows are seen.
const MAX_SLEEP: Duration = Duration::from_secs(30);

/// The body of a `schedule` delivery: one chunk of one firing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleChunk {
    pub flow: String,
    /// The occurrence that fired.
    #[serde(with = "time::serde::rfc3339")]
    pub fired_at: Timestamp,
    pub customers: Vec<CustomerId>,
}

impl ScheduleChunk {
    /// One tick event per customer.
    pub fn ticks(self) -> Vec<Event> {
        let ScheduleChunk { flow, fired_at, customers } = self;
        customers
            .into_iter()
            .map(|customer| Event::ScheduleTick(ScheduleTick { customer, flow: flow.clone(), fired_at }))
            .collect()
    }
}

/// What one [`Scheduler::pass`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pass {
    /// Chunks committed to the ingest log.
    pub committed: usize,
    /// Chunks found in the log already (committed before a restart).
    pub duplicates: usize,
    /// Customers in the chunks committed.
    pub customers: usize,
    /// A firing stopped at the pass's chunk limit and goes on at the next pass.
    pub unfinished: bool,
}

/// Fires the `schedule` flows of the running flow set.
pub struct Scheduler {
    pub store: Arc<dyn Store>,
    pub flows: Arc<Flows>,
    /// Customers per delivery ([`CHUNK`] in the server).
    pub chunk: usize,
}

/// The dedupe key of the chunk that starts after `cursor` in a firing.
fn chunk_key(flow: &str, fire_at_ms: i64, cursor: Option<&CustomerId>) -> String {
    match cursor {
        None => format!("schedule:{flow}:{fire_at_ms}:start"),
        // `{:?}` quotes and escapes the id, so any id makes a distinct, single-line key.
        Some(c) => format!("schedule:{flow}:{fire_at_ms}:after:{:?}", c.to_string()),
    }
}

impl Scheduler {
    /// One pass at `now`: drops the records of flows no longer configured, then fires (or goes on firing)
    /// every schedule flow whose occurrence has come, committing at most `max_chunks` chunks in all.
    pub async fn pass(&self, now: Timestamp, max_chunks: usize) -> Result<Pass, StoreError> {
        let flows = self.flows.current();
        let mut runs: HashMap<String, ScheduleRun> =
            self.store.schedule_runs().await?.into_iter().map(|r| (r.flow.clone(), r)).collect();
        let configured: Vec<&str> = flows.schedules().map(|(name, _)| name).collect();
        for flow in runs.keys().filter(|f| !configured.contains(&f.as_str())) {
            self.store.delete_schedule_run(flow).await?;
        }
        let mut pass = Pass::default();
        let mut budget = max_chunks;
        for (name, schedule) in flows.schedules() {
            let run = match runs.remove(name) {
                // A firing under way goes on, even if the schedule changed since it started.
                Some(r) if !r.done => r,
                Some(r) if r.schedule == schedule.as_str() => {
                    match schedule.due(ms_to_ts(r.fire_at_ms), now) {
                        Some(at) => ScheduleRun {
                            fire_at_ms: ts_to_ms(at),
                            cursor: None,
                            pending_through: None,
                            done: false,
                            ..r
                        },
                        None => continue,
                    }
                }
                _ => {
                    // First seen, or a new schedule: occurrences before now are not owed.
                    self.store
                        .save_schedule_run(ScheduleRun {
                            flow: name.to_string(),
                            schedule: schedule.as_str().to_string(),
                            fire_at_ms: ts_to_ms(now),
                            cursor: None,
                            pending_through: None,
                            done: true,
                        })
                        .await?;
                    continue;
                }
            };
            self.fire(run, now, &mut budget, &mut pass).await?;
            if budget == 0 {
                break;
            }
        }
        Ok(pass)
    }

    /// Works one firing until it is done or the budget is spent.
    async fn fire(
        &self,
        mut run: ScheduleRun,
        now: Timestamp,
        budget: &mut usize,
        pass: &mut Pass,
    ) -> Result<(), StoreError> {
        let fired_at = ms_to_ts(run.fire_at_ms);
        loop {
            if *budget == 0 {
                pass.unfinished = true;
                return self.store.save_schedule_run(run).await;
            }
            let customers = match run.pending_through.clone() {
                // A chunk that may have been committed before a restart: the same customers again.
                Some(through) => self.customers_through(run.cursor.clone(), &through).await?,
                None => {
                    let page: Vec<CustomerId> = self
                        .store
                        .scan_states(run.cursor.clone(), self.chunk.max(1))
                        .await?
                        .into_iter()
                        .map(|s| s.customer)
                        .collect();
                    let Some(last) = page.last() else {
                        run.done = true;
                        run.cursor = None;
                        tracing::info!(flow = %run.flow, fired_at = %crate::pipeline::fmt_ts(fired_at), "schedule firing done");
                        return self.store.save_schedule_run(run).await;
                    };
                    run.pending_through = Some(last.clone());
                    self.store.save_schedule_run(run.clone()).await?;
                    page
                }
            };
            let through = run.pending_through.take().expect("a chunk names its last customer");
            if !customers.is_empty() {
                let n = customers.len();
                let headers = serde_json::json!({
                    "flow": run.flow, "schedule": run.schedule, "fired_at": crate::pipeline::fmt_ts(fired_at),
                    "first_customer": customers[0].to_string(), "last_customer": through.to_string(),
                });
                let body = ScheduleChunk { flow: run.flow.clone(), fired_at, customers };
                let result = self
                    .store
                    .commit_delivery(NewDelivery {
                        trace_id: TraceId::new(),
                        source: "schedule".into(),
                        topic: run.flow.clone(),
                        shop: None,
                        webhook_id: None,
                        event_id: None,
                        received_at_ms: ts_to_ms(now),
                        headers_json: headers.to_string(),
                        body: serde_json::to_vec(&body).expect("a chunk serialises"),
                        dedupe_keys: vec![chunk_key(&run.flow, run.fire_at_ms, run.cursor.as_ref())],
                        part: None,
                    })
                    .await?;
                match result {
                    CommitResult::Committed { .. } => {
                        pass.committed += 1;
                        pass.customers += n;
                        telemetry::schedule_customers(&run.flow, n);
                    }
                    CommitResult::Duplicate { .. } => pass.duplicates += 1,
                }
            }
            // Recorded with the next chunk's `pending_through` (or when the firing ends or pauses): a
            // restart before that commits this chunk again, as a duplicate.
            run.cursor = Some(through);
            *budget -= 1;
        }
    }

    /// The stored customers after `cursor` up to and including `through`, in key order.
    async fn customers_through(
        &self,
        mut cursor: Option<CustomerId>,
        through: &CustomerId,
    ) -> Result<Vec<CustomerId>, StoreError> {
        let mut out = Vec::new();
        loop {
            let page = self.store.scan_states(cursor.clone(), self.chunk.max(1)).await?;
            let Some(last) = page.last().map(|s| s.customer.clone()) else {
                return Ok(out);
            };
            out.extend(page.into_iter().map(|s| s.customer).filter(|c| c <= through));
            if &last >= through {
                return Ok(out);
            }
            cursor = Some(last);
        }
    }

    /// Waits until at most [`MAX_PENDING`] deliveries wait for processing (or shutdown, or the store fails:
    /// the next pass reports that).
    async fn wait_for_processing(&self, shutdown: &mut watch::Receiver<bool>) {
        while let Ok((pending, _)) = self.store.backlog().await {
            if pending <= MAX_PENDING {
                return;
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(100)) => {}
                _ = shutdown.changed() => return,
            }
        }
    }

    /// How long until the next occurrence of any schedule flow after `now`, at most [`MAX_SLEEP`].
    fn until_next(&self, now: Timestamp) -> Duration {
        let flows = self.flows.current();
        flows
            .schedules()
            .filter_map(|(_, s)| s.next_after(now))
            .map(|t| Duration::try_from(t - now).unwrap_or_default())
            .min()
            .map_or(MAX_SLEEP, |d| d.min(MAX_SLEEP))
    }

    /// Fires schedule flows on the wall clock until `shutdown`, waking the processing worker after each
    /// pass that committed something. The first pass, at start, fires what was missed while nudge was down.
    pub async fn run(self: Arc<Self>, wake_pipeline: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            let now = time::OffsetDateTime::now_utc();
            let wait = match self.pass(now, CHUNKS_PER_PASS).await {
                Ok(p) => {
                    if p.committed > 0 {
                        wake_pipeline.notify_one();
                    }
                    if p.unfinished {
                        self.wait_for_processing(&mut shutdown).await;
                        continue;
                    }
                    self.until_next(now)
                }
                Err(e) => {
                    tracing::error!(error = %e, "firing schedule flows failed; trying again");
                    Duration::from_secs(5)
                }
            };
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_keys_name_the_flow_the_occurrence_and_where_the_chunk_starts() {
        let c: CustomerId = "shopify:7".parse().unwrap();
        assert_eq!(chunk_key("weekly", 5, None), "schedule:weekly:5:start");
        assert_eq!(chunk_key("weekly", 5, Some(&c)), r#"schedule:weekly:5:after:"shopify:7""#);
        let chunk = ScheduleChunk {
            flow: "weekly".into(),
            fired_at: time::macros::datetime!(2026-05-04 09:00 UTC),
            customers: vec![c.clone(), "shopify:8".parse().unwrap()],
        };
        let back: ScheduleChunk = serde_json::from_slice(&serde_json::to_vec(&chunk).unwrap()).unwrap();
        let ticks = back.ticks();
        assert_eq!(ticks.len(), 2);
        assert!(matches!(&ticks[0], Event::ScheduleTick(t) if t.customer == c && t.flow == "weekly"));
    }
}
