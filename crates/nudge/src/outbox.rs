//! The delivery engine: one worker per destination, each with its own queue (the destination's pending
//! outbox items), its own concurrency, batching, retry budget and circuit breaker, so a destination that
//! is down, slow or throttling holds only its own backlog.
//!
//! A worker takes its destination's due items (at most one per customer at a time, so each customer's
//! actions reach a destination in order), packs them into batches of the destination's
//! [`Destination::max_batch`] (waiting at most `linger` for a batch to fill), sends up to
//! `max_in_flight` batches at once, and records every item's attempt, retry schedule and, when a trace
//! is done, its terminal state. After `CIRCUIT_THRESHOLD` whole requests in a row fail (no answer or
//! 5xx), the circuit opens: no attempts (and no retry budget spent) until a cool-down passes, then one
//! probe batch decides whether it closes again.
//!
//! Coalescing: pending profile syncs of one customer queued behind each other (the destination is behind,
//! throttled or down, or changes came faster than one round) merge so only the newest state is sent. It
//! happens whenever syncs are queued, not only in a backlog: a folded send whose attempt could not be
//! recorded leaves its head pending, and that head sent alone afterwards would take the profile back to
//! an older state than one already sent. The worker reads, in one store query per round
//! ([`Store::pending_after_heads`]), up to `COALESCE_DEPTH` items queued behind each head that is an
//! `UpsertProfile`, and takes the run of
//! consecutive `UpsertProfile` items right behind it: anything else of the customer (a trigger event, a
//! list change, an alert) ends the run, so it still sees the profile as of its time. The run's newest item
//! goes in the head's place carrying [`fold_profiles`] of the run: a sync writes only the attributes it
//! holds (some are written only when they have a value), so the older attributes are kept beneath the
//! newer ones, which leaves the profile as sending each in order would. The older items are settled by
//! that send in the same `record_attempts` transaction: delivered makes them
//! [`AttemptResult::Coalesced`] (terminal; their traces settle `delivered`), a retry retries them too, a
//! rejection or dead letter ends them with it; each is audited (`delivery_attempt`, outcome `coalesced`,
//! `merged_into` the sent item's id) and the sent item's attempt names them (`merged`). The run's retry
//! budget is its most tried item's. Nothing merges across destinations (each worker reads only its own).

use crate::pipeline::Submitted;
use crate::telemetry::{self, LatencySample};
use nudge_deliver::{Backoff, Destination, Outcome};
use nudge_model::{Action, AuditRecord, AuditStage, CustomerId};
use nudge_store::{AttemptRecord, AttemptResult, OutboxItem, Partitions, Store, StoreError};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio::time::Instant;

/// How the engine delivers to one destination: the keys every `[destinations.*]` table accepts besides
/// its connector's own.
#[derive(Debug, Clone, PartialEq)]
pub struct DeliverySettings {
    /// Requests (batches) in flight at once.
    pub max_in_flight: usize,
    /// Attempts per item before it is dead-lettered.
    pub max_attempts: u32,
    /// An item whose event is older than this is dead-lettered at its next failure, attempts left or not.
    pub dead_letter_after: Option<Duration>,
    /// How long a batch waits to fill before it goes out part-full.
    pub linger: Duration,
}

impl Default for DeliverySettings {
    fn default() -> Self {
        DeliverySettings {
            max_in_flight: 4,
            max_attempts: 8,
            dead_letter_after: None,
            linger: Duration::from_millis(50),
        }
    }
}

/// Samples kept per destination for its event→push quantiles (a uniform reservoir beyond that).
const DESTINATION_LATENCY_SAMPLES: usize = 100_000;

/// Whole-request failures in a row that open a destination's circuit.
pub const CIRCUIT_THRESHOLD: u32 = 5;
const CIRCUIT_MIN_COOL_DOWN: Duration = Duration::from_secs(2);
const CIRCUIT_MAX_COOL_DOWN: Duration = Duration::from_secs(60);

/// A destination's circuit: closed (sending), open (resting until `open_until`), or half-open (one probe).
#[derive(Debug, Default)]
pub struct Circuit {
    state: Mutex<CircuitState>,
}

#[derive(Debug, Default)]
struct CircuitState {
    failures: u32,
    open_until: Option<Instant>,
    cool_down: Duration,
    probing: bool,
}

/// What a worker may do now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CircuitPermit {
    /// Closed: send as usual.
    Send,
    /// Half-open: send one batch to probe.
    Probe,
    /// Open: send nothing until this instant.
    WaitUntil(Instant),
}

impl Circuit {
    fn lock(&self) -> std::sync::MutexGuard<'_, CircuitState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn permit(&self) -> CircuitPermit {
        let mut s = self.lock();
        match s.open_until {
            None => CircuitPermit::Send,
            Some(t) if t > Instant::now() => CircuitPermit::WaitUntil(t),
            Some(_) if s.probing => CircuitPermit::WaitUntil(Instant::now() + Duration::from_millis(100)),
            Some(_) => {
                s.probing = true;
                CircuitPermit::Probe
            }
        }
    }

    /// Records how a whole request went: `true` when the destination answered (any answer but 5xx).
    pub fn record(&self, answered: bool) {
        let mut s = self.lock();
        if answered {
            *s = CircuitState::default();
            return;
        }
        s.failures += 1;
        if s.probing || s.failures >= CIRCUIT_THRESHOLD {
            s.cool_down = if s.probing {
                (s.cool_down * 2).clamp(CIRCUIT_MIN_COOL_DOWN, CIRCUIT_MAX_COOL_DOWN)
            } else {
                CIRCUIT_MIN_COOL_DOWN
            };
            s.open_until = Some(Instant::now() + s.cool_down);
            s.probing = false;
        }
    }

    /// When the circuit is open, the end of its cool-down.
    pub fn resting_until(&self) -> Option<Instant> {
        self.lock().open_until.filter(|t| *t > Instant::now())
    }

    /// `closed`, `open` or `half_open`.
    pub fn state_name(&self) -> &'static str {
        let s = self.lock();
        match s.open_until {
            None => "closed",
            Some(_) if s.probing => "half_open",
            Some(t) if t > Instant::now() => "open",
            Some(_) => "half_open",
        }
    }
}

/// One destination's worker.
pub struct DestinationWorker {
    /// The destination's configured name (`klaviyo`, `webhook:crm`, …), as enqueued by the pipeline.
    pub name: String,
    pub store: Arc<dyn Store>,
    /// `None` for a destination that is no longer configured: its items are rejected with that reason.
    pub destination: Option<Arc<dyn Destination>>,
    pub settings: DeliverySettings,
    pub backoff: Backoff,
    pub circuit: Circuit,
    /// Event→push latency of successful pushes, for summaries (shared by every destination).
    pub latency: Arc<LatencySample>,
    /// Event→push latency of this destination's successful pushes alone.
    pub destination_latency: Arc<LatencySample>,
    /// Fills trigger events' pending copy requests before they are sent (`None`: an item holding one is
    /// rejected, since a request must never reach a destination).
    pub copy: Option<Arc<crate::copy::CopyStage>>,
    /// The delivery partitions this node delivers (`None`: every customer), shared by the node's workers.
    share: Arc<Share>,
    /// Items in requests that are on the wire now.
    in_flight: AtomicU64,
    /// Requests answered with 429 since the start, and when the last one was (ms since the epoch; 0: never).
    throttled: AtomicU64,
    last_throttled_ms: AtomicI64,
    wake: Notify,
}

/// One destination's health as the console's overview shows it: its circuit, in-flight items and 429s.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DestinationHealth {
    pub name: String,
    /// `closed`, `open` or `half_open`.
    pub circuit: &'static str,
    /// While the circuit rests: the seconds left (rounded up).
    pub resting_for_s: Option<u64>,
    pub in_flight: u64,
    /// Requests answered with 429 since the start.
    pub throttled: u64,
    pub last_throttled_ms: Option<i64>,
}

impl DestinationWorker {
    pub fn new(
        name: impl Into<String>,
        store: Arc<dyn Store>,
        destination: Option<Arc<dyn Destination>>,
        settings: DeliverySettings,
        latency: Arc<LatencySample>,
    ) -> Self {
        DestinationWorker {
            name: name.into(),
            store,
            destination,
            settings,
            backoff: Backoff::default(),
            circuit: Circuit::default(),
            latency,
            destination_latency: Arc::new(LatencySample::new(DESTINATION_LATENCY_SAMPLES)),
            copy: None,
            share: Arc::default(),
            in_flight: AtomicU64::new(0),
            throttled: AtomicU64::new(0),
            last_throttled_ms: AtomicI64::new(0),
            wake: Notify::new(),
        }
    }

    /// The destination's health now.
    pub fn health(&self) -> DestinationHealth {
        let last = self.last_throttled_ms.load(Ordering::Relaxed);
        DestinationHealth {
            name: self.name.clone(),
            circuit: self.circuit.state_name(),
            resting_for_s: self
                .circuit
                .resting_until()
                .map(|t| t.saturating_duration_since(Instant::now()).as_millis().div_ceil(1000) as u64),
            in_flight: self.in_flight.load(Ordering::Relaxed),
            throttled: self.throttled.load(Ordering::Relaxed),
            last_throttled_ms: (last > 0).then_some(last),
        }
    }

    fn batch_size(&self) -> usize {
        self.destination.as_ref().map_or(100, |d| d.max_batch().max(1))
    }

    /// Attempts every due item once (no linger) and records the attempts; returns how many were attempted.
    pub async fn step(&self) -> Result<usize, StoreError> {
        let records = self.round(&HashSet::new(), false).await?;
        let n = records.len();
        if !records.is_empty() {
            self.store.record_attempts(records).await?;
        }
        Ok(n)
    }

    /// Attempts the due items not in `exclude` (items whose attempts are being recorded) once each.
    async fn round(&self, exclude: &HashSet<i64>, linger: bool) -> Result<Vec<AttemptRecord>, StoreError> {
        use futures::StreamExt;
        let permit = if self.destination.is_some() { self.circuit.permit() } else { CircuitPermit::Send };
        let lanes = match permit {
            CircuitPermit::WaitUntil(_) => return Ok(Vec::new()),
            CircuitPermit::Probe => 1,
            CircuitPermit::Send => self.settings.max_in_flight.max(1),
        };
        let batch = self.batch_size();
        let limit = lanes * batch;
        if linger
            && batch > 1
            && let Some(at) = self.destination.as_ref().and_then(|d| d.ready_at())
        {
            // The tool's request budget is spent until `at`: let the queue fill meanwhile, so the next
            // requests carry full batches (bounded, so a shutdown or a new round is never far off).
            tokio::time::sleep_until(at.min(Instant::now() + Duration::from_secs(1))).await;
        }
        let mut items = self.due(exclude, limit).await?;
        if linger && batch > 1 && !items.is_empty() && items.len() < limit && !self.settings.linger.is_zero()
        {
            // Part-full: give the batch up to `linger` to fill, then send what is there.
            tokio::time::sleep(self.settings.linger).await;
            items = self.due(exclude, limit).await?;
        }
        let (items, runs) = self.coalesce(items, exclude).await?;
        let batches: Vec<Vec<OutboxItem>> = chunk(items, batch);
        let results: Vec<Vec<AttemptRecord>> = futures::stream::iter(batches)
            .map(|b| self.attempt_batch(b))
            .buffer_unordered(lanes)
            .collect()
            .await;
        if permit == CircuitPermit::Probe && results.is_empty() {
            // Nothing to probe with: close the circuit; the next failures would open it again.
            self.circuit.record(true);
        }
        let mut records: Vec<AttemptRecord> = results.into_iter().flatten().collect();
        if !runs.is_empty() {
            records = self.settle_runs(records, runs);
        }
        Ok(records)
    }

    /// Folds each head's run of pending profile syncs into its newest sync (see [`fold_profiles`]):
    /// returns the items to send, the newest sync of each run in its head's place (carrying the folded
    /// profile), and the runs' older items, which are settled by that send's outcome. Looks behind every
    /// head that is a profile sync, in one store read for the whole round.
    ///
    /// Always, not only when the destination is behind: a folded send whose attempt could not be recorded
    /// (the store went away after the request went out) leaves its head pending, and sending that head
    /// alone afterwards would take the customer's profile back to an older state than the one already
    /// sent. Folding whatever is queued behind means each send carries the newest state queued at its
    /// time, so what the destination sees never goes back.
    async fn coalesce(
        &self,
        items: Vec<OutboxItem>,
        exclude: &HashSet<i64>,
    ) -> Result<(Vec<OutboxItem>, Vec<Run>), StoreError> {
        if self.destination.is_none() {
            return Ok((items, Vec::new()));
        }
        let mut firsts: HashMap<i64, Action> =
            items.iter().filter_map(|i| profile_sync(i).map(|a| (i.id, a))).collect();
        if firsts.is_empty() {
            return Ok((items, Vec::new()));
        }
        let heads = items.iter().filter(|i| firsts.contains_key(&i.id)).map(|i| (i.customer.clone(), i.id));
        let mut behind: HashMap<CustomerId, Vec<OutboxItem>> = HashMap::new();
        for item in
            self.store.pending_after_heads(&self.name, heads.collect(), now_ms(), COALESCE_DEPTH).await?
        {
            behind.entry(item.customer.clone()).or_default().push(item);
        }
        let mut out = Vec::with_capacity(items.len());
        let mut runs = Vec::new();
        for head in items {
            let (Some(first), Some(next)) = (firsts.remove(&head.id), behind.remove(&head.customer)) else {
                out.push(head);
                continue;
            };
            let mut actions = vec![first];
            let mut run = vec![head];
            // Only consecutive syncs: anything else of the customer (a trigger event, a list change, an
            // alert) ends the run, so what follows it is sent after it, as of its own time.
            for item in next {
                if exclude.contains(&item.id) || item.destination != self.name {
                    break;
                }
                let Some(action) = profile_sync(&item) else { break };
                actions.push(action);
                run.push(item);
            }
            if run.len() == 1 {
                out.extend(run);
                continue;
            }
            let Some(json) = fold_profiles(actions).and_then(|a| serde_json::to_string(&a).ok()) else {
                // Cannot happen (one customer's syncs, which serialize): the head goes alone.
                out.push(run.swap_remove(0));
                continue;
            };
            let mut newest = run.pop().expect("a run of two or more");
            newest.action_json = json;
            // The run's retry budget is its most tried item's, so new syncs never reset it.
            newest.attempts = run.iter().map(|i| i.attempts).fold(newest.attempts, u32::max);
            runs.push(Run { sent: newest.id, older: run });
            out.push(newest);
        }
        Ok((out, runs))
    }

    /// Settles the older items of each run by its sent item's outcome, recorded before it (so a trace
    /// reads "merged into item N" ahead of N's attempt): delivered makes them `coalesced`, a retry
    /// retries them with it (at the same time), a rejection or dead letter ends them the same way. Each
    /// is audited (stage `delivery_attempt`) naming the item it was folded into.
    fn settle_runs(&self, records: Vec<AttemptRecord>, runs: Vec<Run>) -> Vec<AttemptRecord> {
        let mut runs: HashMap<i64, Vec<OutboxItem>> = runs.into_iter().map(|r| (r.sent, r.older)).collect();
        let mut out = Vec::with_capacity(records.len() + runs.values().map(Vec::len).sum::<usize>());
        for mut sent in records {
            if let Some(older) = runs.remove(&sent.item_id) {
                if let Some(detail) = sent.audit.detail.as_object_mut() {
                    detail.insert("merged".into(), older.iter().map(|i| i.id).collect::<Vec<_>>().into());
                }
                if matches!(sent.result, AttemptResult::Delivered) {
                    telemetry::outbox_coalesced(&self.name, older.len());
                }
                out.extend(older.into_iter().map(|item| self.merged_record(item, &sent)));
            }
            out.push(sent);
        }
        out
    }

    /// The record of an older item of a run, from the outcome of the sync it was folded into.
    fn merged_record(&self, item: OutboxItem, sent: &AttemptRecord) -> AttemptRecord {
        let into = sent.item_id;
        let note = |e: &str| format!("{e} (sent folded into outbox item {into})");
        let (result, outcome, error) = match &sent.result {
            AttemptResult::Delivered | AttemptResult::Coalesced { .. } => {
                (AttemptResult::Coalesced { into }, "coalesced", None)
            }
            AttemptResult::RetryAt(t) => (AttemptResult::RetryAt(*t), "retry", None),
            AttemptResult::Rejected(e) => (AttemptResult::Rejected(note(e)), "rejected", Some(note(e))),
            AttemptResult::DeadLettered(e) => {
                (AttemptResult::DeadLettered(note(e)), "dead_lettered", Some(note(e)))
            }
        };
        let audit = AuditRecord {
            trace_id: item.trace_id,
            customer: Some(item.customer.clone()),
            stage: AuditStage::DeliveryAttempt,
            at: crate::pipeline::ms_to_ts(sent.at_ms),
            detail: serde_json::json!({
                "destination": item.destination,
                "outcome": outcome,
                "merged_into": into,
                "merged_into_trace": sent.trace_id.to_string(),
                "error": error,
                "attempt": item.attempts + 1,
                "next_attempt_at": match &result { AttemptResult::RetryAt(t) => Some(crate::pipeline::fmt_ts(crate::pipeline::ms_to_ts(*t))), _ => None },
            }),
        };
        AttemptRecord { item_id: item.id, trace_id: item.trace_id, result, audit, at_ms: sent.at_ms }
    }

    async fn due(&self, exclude: &HashSet<i64>, limit: usize) -> Result<Vec<OutboxItem>, StoreError> {
        let share = self.share.get();
        let mut items = match &share {
            None => self.store.due_outbox_for(&self.name, now_ms(), limit + exclude.len()).await?,
            Some(p) if p.parts.is_empty() => Vec::new(),
            Some(p) => self.store.due_outbox_in(&self.name, now_ms(), limit + exclude.len(), p).await?,
        };
        items.retain(|i| !exclude.contains(&i.id));
        items.truncate(limit);
        Ok(items)
    }

    async fn attempt_batch(&self, items: Vec<OutboxItem>) -> Vec<AttemptRecord> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; items.len()];
        let mut actions = Vec::with_capacity(items.len());
        let mut positions = Vec::with_capacity(items.len());
        let mut waiting_for_copy = Vec::new();
        for (i, item) in items.iter().enumerate() {
            if self.destination.is_none() {
                outcomes[i] = Some(Outcome::Rejected {
                    endpoint: item.destination.clone(),
                    status: None,
                    error: format!("destination `{}` is not configured", item.destination),
                });
                continue;
            }
            match serde_json::from_str::<Action>(&item.action_json) {
                Ok(action) if nudge_model::CopyRequest::is_pending(&action) => {
                    waiting_for_copy.push((i, action));
                }
                Ok(action) => {
                    actions.push(action);
                    positions.push(i);
                }
                Err(e) => {
                    outcomes[i] = Some(Outcome::Rejected {
                        endpoint: item.destination.clone(),
                        status: None,
                        error: format!("stored action does not parse: {e}"),
                    })
                }
            }
        }
        if !waiting_for_copy.is_empty() {
            self.fill_copy(&items, waiting_for_copy, &mut outcomes, &mut actions, &mut positions).await;
        }
        if let (Some(dest), false) = (&self.destination, actions.is_empty()) {
            self.in_flight.fetch_add(actions.len() as u64, Ordering::Relaxed);
            telemetry::destination_in_flight(&self.name, self.in_flight.load(Ordering::Relaxed));
            telemetry::destination_batch(&self.name, actions.len());
            let sent = dest.deliver_batch(&actions).await;
            self.in_flight.fetch_sub(actions.len() as u64, Ordering::Relaxed);
            telemetry::destination_in_flight(&self.name, self.in_flight.load(Ordering::Relaxed));
            // The request failed as a whole when every outcome is a retry without an answer or with a 5xx.
            let down = !sent.is_empty()
                && sent.iter().all(|o| matches!(o, Outcome::Retry { status: None | Some(500..), .. }));
            self.circuit.record(!down);
            telemetry::destination_circuit(&self.name, self.circuit.state_name());
            for (pos, outcome) in positions.into_iter().zip(pad(sent, actions.len(), &self.name)) {
                outcomes[pos] = Some(outcome);
            }
        }
        items
            .into_iter()
            .zip(outcomes)
            .map(|(item, o)| {
                let o = o.unwrap_or_else(|| Outcome::Retry {
                    endpoint: item.destination.clone(),
                    status: None,
                    error: "no outcome for this item".into(),
                    retry_after: None,
                });
                self.settle(item, o)
            })
            .collect()
    }

    /// Generates (and stores) the copy of the batch's items that wait for it; a filled item joins the send,
    /// one that cannot be filled gets its outcome here: rejected when no copy can exist for it, retried when
    /// the copy could not be stored (nothing goes out with copy a retry could not repeat).
    async fn fill_copy(
        &self,
        items: &[OutboxItem],
        waiting: Vec<(usize, Action)>,
        outcomes: &mut [Option<Outcome>],
        actions: &mut Vec<Action>,
        positions: &mut Vec<usize>,
    ) {
        let Some(stage) = &self.copy else {
            for (i, _) in waiting {
                outcomes[i] = Some(Outcome::Rejected {
                    endpoint: items[i].destination.clone(),
                    status: None,
                    error: "the action waits for generated copy and no copy stage runs".into(),
                });
            }
            return;
        };
        let idx: Vec<usize> = waiting.iter().map(|(i, _)| *i).collect();
        let requests = waiting
            .into_iter()
            .map(|(i, a)| (items[i].id, items[i].trace_id, items[i].customer.clone(), a))
            .collect();
        for (i, filled) in idx.into_iter().zip(stage.fill_outbox(requests).await) {
            let endpoint = items[i].destination.clone();
            match filled {
                Some(Ok(action)) => {
                    actions.push(action);
                    positions.push(i);
                }
                Some(Err(e @ crate::copy::CopyError::Store(_))) => {
                    outcomes[i] = Some(Outcome::Retry {
                        endpoint,
                        status: None,
                        error: e.to_string(),
                        retry_after: None,
                    })
                }
                Some(Err(e)) => {
                    outcomes[i] = Some(Outcome::Rejected { endpoint, status: None, error: e.to_string() })
                }
                None => {
                    outcomes[i] = Some(Outcome::Retry {
                        endpoint,
                        status: None,
                        error: "no copy request found".into(),
                        retry_after: None,
                    })
                }
            }
        }
    }

    /// Turns one item's outcome into the record stored for it.
    fn settle(&self, item: OutboxItem, outcome: Outcome) -> AttemptRecord {
        let attempt_no = item.attempts + 1;
        let at_ms = now_ms();
        let result = match &outcome {
            Outcome::Delivered { .. } => {
                let latency_s = (at_ms * 1000 - item.origin_us).max(0) as f64 / 1e6;
                telemetry::event_to_push(latency_s);
                self.latency.record(latency_s);
                self.destination_latency.record(latency_s);
                AttemptResult::Delivered
            }
            Outcome::Retry { error, retry_after, status, .. } => {
                if *status == Some(429) {
                    telemetry::destination_throttled(&self.name);
                    self.throttled.fetch_add(1, Ordering::Relaxed);
                    self.last_throttled_ms.store(at_ms, Ordering::Relaxed);
                }
                let age = Duration::from_micros((at_ms * 1000 - item.origin_us).max(0) as u64);
                let too_old = self.settings.dead_letter_after.is_some_and(|limit| age >= limit);
                if attempt_no >= self.settings.max_attempts {
                    AttemptResult::DeadLettered(format!("{error} (gave up after {attempt_no} attempts)"))
                } else if too_old {
                    AttemptResult::DeadLettered(format!(
                        "{error} (gave up: older than dead_letter_after, after {attempt_no} attempts)"
                    ))
                } else {
                    let wait = self.backoff.delay(attempt_no - 1, *retry_after);
                    AttemptResult::RetryAt(at_ms + wait.as_millis() as i64)
                }
            }
            Outcome::Rejected { error, .. } => AttemptResult::Rejected(error.clone()),
        };
        let result_name = match &result {
            AttemptResult::Delivered => "delivered",
            AttemptResult::RetryAt(_) => "retry",
            AttemptResult::Rejected(_) => "rejected",
            AttemptResult::DeadLettered(_) => "dead_lettered",
            AttemptResult::Coalesced { .. } => "coalesced",
        };
        telemetry::push(&self.name, result_name);
        if !matches!(result, AttemptResult::Delivered) {
            tracing::warn!(trace_id = %item.trace_id, destination = %self.name, attempt = attempt_no,
                outcome = result_name, error = outcome.error().unwrap_or(""), "push not delivered");
        }
        let audit = AuditRecord {
            trace_id: item.trace_id,
            customer: Some(item.customer.clone()),
            stage: AuditStage::DeliveryAttempt,
            at: crate::pipeline::ms_to_ts(at_ms),
            detail: serde_json::json!({
                "destination": item.destination,
                "endpoint": outcome.endpoint(),
                "status": outcome.status(),
                "outcome": result_name,
                "error": outcome.error(),
                "attempt": attempt_no,
                "next_attempt_at": match &result { AttemptResult::RetryAt(t) => Some(crate::pipeline::fmt_ts(crate::pipeline::ms_to_ts(*t))), _ => None },
            }),
        };
        AttemptRecord { item_id: item.id, trace_id: item.trace_id, result, audit, at_ms }
    }

    /// Runs until `shutdown`, woken when the pipeline enqueues and by a short poll for retries. A round's
    /// attempts are recorded (one transaction) while the next round's items are pushed; those exclude the
    /// items still being recorded, and a customer's next item is due only once the one before is
    /// recorded, so per-customer order holds.
    pub async fn run(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let mut inflight: Option<Recording> = None;
        let mut last_backlog = Instant::now() - Duration::from_secs(60);
        loop {
            if *shutdown.borrow() {
                if let Some(r) = inflight.take() {
                    r.finish().await;
                }
                return;
            }
            if last_backlog.elapsed() >= Duration::from_secs(5) {
                last_backlog = Instant::now();
                if let Ok(n) = self.store.pending_for(&self.name).await {
                    telemetry::destination_backlog(&self.name, n);
                }
            }
            if let Some(t) = self.circuit.resting_until() {
                if let Some(r) = inflight.take() {
                    r.finish().await;
                }
                tokio::select! {
                    _ = tokio::time::sleep_until(t) => {}
                    _ = shutdown.changed() => {}
                }
                continue;
            }
            let exclude = inflight.as_ref().map(|r| r.items.clone()).unwrap_or_default();
            let records = match self.round(&exclude, true).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::error!(destination = %self.name, error = %e, "outbox step failed; retrying");
                    if let Some(r) = inflight.take() {
                        r.finish().await;
                    }
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            if records.is_empty() {
                match inflight.take() {
                    Some(r) => r.finish().await,
                    None => {
                        tokio::select! {
                            _ = self.wake.notified() => {}
                            _ = tokio::time::sleep(Duration::from_millis(200)) => {}
                            _ = shutdown.changed() => {}
                        }
                    }
                }
                continue;
            }
            let next = Recording::start(self.store.clone(), records).await;
            if let Some(prev) = inflight.replace(next) {
                prev.finish().await;
            }
        }
    }
}

/// Items looked at behind each head when coalescing (a longer run folds over several rounds).
const COALESCE_DEPTH: usize = 32;

/// A run of profile syncs folded into its newest item (`sent`); `older` are settled by its outcome.
struct Run {
    sent: i64,
    older: Vec<OutboxItem>,
}

/// The item's action when it is a profile sync (the only kind that coalesces).
fn profile_sync(item: &OutboxItem) -> Option<Action> {
    match serde_json::from_str::<Action>(&item.action_json) {
        Ok(a @ Action::UpsertProfile { .. }) => Some(a),
        _ => None,
    }
}

/// Folds profile syncs of one customer (oldest first) into one that leaves the profile as sending them
/// in order would: a sync writes only the attributes it carries (some, such as the recommended products
/// or the next best offer, are written only when there is a value), so the attributes are the union,
/// a newer value winning per key; email and names are the newest non-empty ones. `None` unless every
/// action is a profile sync of the same customer.
fn fold_profiles(actions: Vec<Action>) -> Option<Action> {
    let mut folded: Option<Action> = None;
    for action in actions {
        let Action::UpsertProfile { customer, email, first_name, last_name, attributes } = action else {
            return None;
        };
        let newer = |old: Option<String>, new: Option<String>| new.filter(|s| !s.is_empty()).or(old);
        folded = Some(match folded {
            None => Action::UpsertProfile { customer, email, first_name, last_name, attributes },
            Some(Action::UpsertProfile {
                customer: c,
                email: e,
                first_name: f,
                last_name: l,
                attributes: mut a,
            }) => {
                if c != customer {
                    return None;
                }
                a.extend(attributes);
                Action::UpsertProfile {
                    customer,
                    email: newer(e, email),
                    first_name: newer(f, first_name),
                    last_name: newer(l, last_name),
                    attributes: a,
                }
            }
            Some(_) => return None,
        });
    }
    folded
}

/// Splits `items` into runs of at most `size`.
fn chunk(items: Vec<OutboxItem>, size: usize) -> Vec<Vec<OutboxItem>> {
    let mut out = Vec::with_capacity(items.len().div_ceil(size.max(1)));
    let mut current = Vec::with_capacity(size);
    for item in items {
        current.push(item);
        if current.len() == size {
            out.push(std::mem::replace(&mut current, Vec::with_capacity(size)));
        }
    }
    if !current.is_empty() {
        out.push(current);
    }
    out
}

/// A destination must answer once per action; a wrong count is its bug, made a retry rather than a loss.
fn pad(mut outcomes: Vec<Outcome>, n: usize, name: &str) -> Vec<Outcome> {
    if outcomes.len() != n {
        tracing::error!(
            destination = name,
            expected = n,
            got = outcomes.len(),
            "a destination returned the wrong number of outcomes; the batch will be retried"
        );
        outcomes = (0..n)
            .map(|_| Outcome::Retry {
                endpoint: name.to_string(),
                status: None,
                error: "the destination returned the wrong number of outcomes".into(),
                retry_after: None,
            })
            .collect();
    }
    outcomes
}

/// The delivery partitions a node's destination workers deliver: `None` (the default) for every customer;
/// on a cluster, the partitions whose leases the node holds ([`crate::workers::deliver_share`]).
#[derive(Default)]
pub struct Share(std::sync::RwLock<Option<Arc<Partitions>>>);

impl Share {
    pub fn get(&self) -> Option<Arc<Partitions>> {
        self.0.read().unwrap_or_else(|p| p.into_inner()).clone()
    }

    pub fn set(&self, parts: Option<Partitions>) {
        *self.0.write().unwrap_or_else(|p| p.into_inner()) = parts.map(Arc::new);
    }
}

/// Every destination's worker, plus a sweeper for items whose destination is no longer configured.
pub struct OutboxWorker {
    pub store: Arc<dyn Store>,
    pub workers: Vec<Arc<DestinationWorker>>,
    pub latency: Arc<LatencySample>,
    /// The partitions the workers deliver (one cell for all of them).
    pub share: Arc<Share>,
}

impl OutboxWorker {
    /// One worker per destination, with its settings (`settings` falls back to `default` per name).
    pub fn new(
        store: Arc<dyn Store>,
        destinations: HashMap<String, Arc<dyn Destination>>,
        settings: &HashMap<String, DeliverySettings>,
        default: DeliverySettings,
        latency: Arc<LatencySample>,
    ) -> Self {
        let mut names: Vec<_> = destinations.keys().cloned().collect();
        names.sort();
        let share = Arc::new(Share::default());
        let workers = names
            .into_iter()
            .map(|name| {
                let s = settings.get(&name).cloned().unwrap_or_else(|| default.clone());
                let dest = destinations.get(&name).cloned();
                let mut w = DestinationWorker::new(name, store.clone(), dest, s, latency.clone());
                w.share = share.clone();
                Arc::new(w)
            })
            .collect();
        OutboxWorker { store, workers, latency, share }
    }

    /// Gives every worker the copy stage (before the workers run).
    pub fn with_copy(mut self, stage: Arc<crate::copy::CopyStage>) -> Self {
        for w in &mut self.workers {
            if let Some(w) = Arc::get_mut(w) {
                w.copy = Some(stage.clone());
            }
        }
        self
    }

    /// Each configured destination's health, by name.
    pub fn health(&self) -> Vec<DestinationHealth> {
        self.workers.iter().map(|w| w.health()).collect()
    }

    /// Each destination's own event→push sample, by destination name.
    pub fn destination_latency(&self) -> BTreeMap<String, Arc<LatencySample>> {
        self.workers.iter().map(|w| (w.name.clone(), w.destination_latency.clone())).collect()
    }

    /// One pass of every worker (no linger) plus the sweep; returns how many items were attempted.
    pub async fn step(&self) -> Result<usize, StoreError> {
        let mut n = 0;
        for w in &self.workers {
            n += w.step().await?;
        }
        Ok(n + self.sweep().await?)
    }

    /// Rejects pending items of destinations that are not configured (a destination removed from the
    /// configuration, an approval decided after its destination went away).
    async fn sweep(&self) -> Result<usize, StoreError> {
        let known: HashSet<&str> = self.workers.iter().map(|w| w.name.as_str()).collect();
        let mut n = 0;
        for name in self.store.pending_destinations().await? {
            if known.contains(name.as_str()) {
                continue;
            }
            let orphan = DestinationWorker::new(
                name,
                self.store.clone(),
                None,
                DeliverySettings::default(),
                self.latency.clone(),
            );
            n += orphan.step().await?;
        }
        Ok(n)
    }

    /// Runs every worker and the sweep until `shutdown`; `wake` (the pipeline's "enqueued" signal) wakes
    /// them all.
    pub async fn run(self: Arc<Self>, wake: Arc<Notify>, shutdown: watch::Receiver<bool>) {
        self.run_parts(wake, shutdown, true, true).await
    }

    /// Runs the destinations' workers alone (a node of a cluster delivering its partitions).
    pub async fn run_destinations(self: Arc<Self>, wake: Arc<Notify>, shutdown: watch::Receiver<bool>) {
        self.run_parts(wake, shutdown, true, false).await
    }

    /// Runs the destinations' workers, the sweep, or both, until `shutdown`.
    pub(crate) async fn run_parts(
        self: Arc<Self>,
        wake: Arc<Notify>,
        mut shutdown: watch::Receiver<bool>,
        destinations: bool,
        sweep: bool,
    ) {
        // A set, not detached tasks: when this future is dropped (a node that lost the cluster's leader
        // lease aborts its workers), every destination's worker stops with it.
        let mut tasks = tokio::task::JoinSet::new();
        if destinations {
            for w in &self.workers {
                tasks.spawn(w.clone().run(shutdown.clone()));
            }
        }
        let mut last_sweep = Instant::now() - Duration::from_secs(60);
        loop {
            if *shutdown.borrow() {
                break;
            }
            if sweep && last_sweep.elapsed() >= Duration::from_secs(30) {
                last_sweep = Instant::now();
                if let Err(e) = self.sweep().await {
                    tracing::error!(error = %e, "sweeping unconfigured destinations failed");
                }
            }
            tokio::select! {
                _ = wake.notified() => {
                    for w in &self.workers {
                        w.wake.notify_one();
                    }
                }
                _ = tokio::time::sleep(Duration::from_secs(5)) => {}
                _ = shutdown.changed() => {}
            }
        }
        while tasks.join_next().await.is_some() {}
    }
}

/// A round's attempts on their way into the store.
struct Recording {
    items: HashSet<i64>,
    write: Submitted,
}

impl Recording {
    async fn start(store: Arc<dyn Store>, records: Vec<AttemptRecord>) -> Self {
        let items = records.iter().map(|r| r.item_id).collect();
        Recording {
            items,
            write: Submitted::start(async move { store.record_attempts(records).await }).await,
        }
    }

    /// Waits until the records are stored. If that failed, the items stay pending and are attempted again
    /// (a push repeated that way is absorbed downstream: events carry a unique id, upserts repeat), after
    /// a pause so a failing store is not hammered.
    async fn finish(self) {
        if let Err(e) = self.write.answer().await {
            tracing::error!(error = %e, "recording delivery attempts failed; the items will be attempted again");
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
    }
}

pub fn now_ms() -> i64 {
    crate::pipeline::ts_to_ms(time::OffsetDateTime::now_utc())
}

/// Fires due abandonment timers every `tick` until `shutdown`.
pub async fn run_timers(
    store: Arc<dyn Store>,
    tick: Duration,
    wake_pipeline: Arc<Notify>,
    mut shutdown: watch::Receiver<bool>,
) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        match store.fire_due_timers(now_ms(), 1000).await {
            Ok(0) => {}
            Ok(n) => {
                telemetry::timers_fired(n);
                wake_pipeline.notify_one();
                continue;
            }
            Err(e) => tracing::error!(error = %e, "firing timers failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// Expires pending approval items past their expiry, every `tick` until `shutdown` (30 s in the server).
pub async fn run_approval_expiry(store: Arc<dyn Store>, tick: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        if *shutdown.borrow() {
            return;
        }
        match store.expire_approvals(now_ms()).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(expired = n, "approval items expired"),
            Err(e) => tracing::error!(error = %e, "expiring approval items failed"),
        }
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            _ = shutdown.changed() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nudge_model::TraceId;
    use nudge_store::sqlite::{Durability, SqliteStore};
    use nudge_store::{NewOutboxItem, ProcessOutcome};
    use std::sync::atomic::AtomicUsize;

    /// A destination whose answers the test scripts: up (delivers), down (503 for every request).
    struct Scripted {
        batch: usize,
        down: std::sync::atomic::AtomicBool,
        requests: AtomicUsize,
        sizes: Mutex<Vec<usize>>,
        delivered: Mutex<Vec<String>>,
        /// Every action of every request, in order.
        sent: Mutex<Vec<Action>>,
    }

    impl Scripted {
        fn new(batch: usize) -> Arc<Self> {
            Arc::new(Scripted {
                batch,
                down: false.into(),
                requests: AtomicUsize::new(0),
                sizes: Mutex::new(Vec::new()),
                delivered: Mutex::new(Vec::new()),
                sent: Mutex::new(Vec::new()),
            })
        }
    }

    #[async_trait::async_trait]
    impl Destination for Scripted {
        fn name(&self) -> &'static str {
            "scripted"
        }
        async fn deliver(&self, action: &Action) -> Outcome {
            self.deliver_batch(std::slice::from_ref(action)).await.remove(0)
        }
        fn max_batch(&self) -> usize {
            self.batch
        }
        async fn deliver_batch(&self, actions: &[Action]) -> Vec<Outcome> {
            self.requests.fetch_add(1, Ordering::SeqCst);
            self.sizes.lock().unwrap().push(actions.len());
            self.sent.lock().unwrap().extend(actions.iter().cloned());
            let down = self.down.load(Ordering::SeqCst);
            actions
                .iter()
                .map(|a| {
                    if down {
                        Outcome::Retry {
                            endpoint: "POST /x".into(),
                            status: Some(503),
                            error: "unavailable".into(),
                            retry_after: None,
                        }
                    } else {
                        self.delivered.lock().unwrap().push(a.customer().to_string());
                        Outcome::Delivered { endpoint: "POST /x".into(), status: 200 }
                    }
                })
                .collect()
        }
    }

    fn alert(customer: u32, n: u32) -> String {
        serde_json::to_string(&Action::Alert {
            customer: format!("shopify:{customer}").parse().unwrap(),
            flow: "f".into(),
            text: format!("alert {n}"),
            time: time::OffsetDateTime::now_utc(),
            unique_id: format!("u{n}"),
        })
        .unwrap()
    }

    async fn enqueue(store: &Arc<dyn Store>, items: &[(u32, &str)]) {
        let t = TraceId::new();
        let outbox = items
            .iter()
            .enumerate()
            .map(|(n, (c, dest))| NewOutboxItem {
                trace_id: t,
                customer: format!("shopify:{c}").parse().unwrap(),
                destination: dest.to_string(),
                action_json: alert(*c, n as u32),
                origin_us: now_ms() * 1000,
            })
            .collect();
        store
            .commit_processing(vec![ProcessOutcome { trace_id: Some(t), outbox, ..Default::default() }])
            .await
            .unwrap();
    }

    fn store(dir: &tempfile::TempDir) -> Arc<dyn Store> {
        Arc::new(SqliteStore::open(dir.path(), Durability::Normal).unwrap())
    }

    #[tokio::test]
    async fn batches_up_to_the_destination_size_and_one_item_per_customer() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let items: Vec<(u32, &str)> = (0..25).map(|c| (c, "a")).chain([(3, "a")]).collect();
        enqueue(&store, &items).await;
        let a = Scripted::new(10);
        let settings = DeliverySettings { max_in_flight: 2, ..Default::default() };
        let w = DestinationWorker::new(
            "a",
            store.clone(),
            Some(a.clone()),
            settings,
            Arc::new(LatencySample::new(10)),
        );
        assert_eq!(w.step().await.unwrap(), 20, "two lanes of ten");
        assert_eq!(w.step().await.unwrap(), 6, "the other five customers and customer 3's second item");
        assert_eq!(*a.sizes.lock().unwrap(), vec![10, 10, 6]);
        assert_eq!(w.step().await.unwrap(), 0);
        let delivered = a.delivered.lock().unwrap().clone();
        assert_eq!(delivered.iter().filter(|c| *c == "shopify:3").count(), 2);
        assert_eq!(store.pending_for("a").await.unwrap(), 0);
    }

    #[tokio::test]
    async fn a_down_destination_holds_only_its_own_queue_and_its_circuit_opens() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let items: Vec<(u32, &str)> = (0..40).flat_map(|c| [(c, "down"), (c, "up")]).collect();
        enqueue(&store, &items).await;
        let down = Scripted::new(1);
        down.down.store(true, Ordering::SeqCst);
        let up = Scripted::new(1);
        let mut dests: HashMap<String, Arc<dyn Destination>> = HashMap::new();
        dests.insert("down".into(), down.clone());
        dests.insert("up".into(), up.clone());
        let engine = OutboxWorker::new(
            store.clone(),
            dests,
            &HashMap::new(),
            DeliverySettings { max_in_flight: 8, ..Default::default() },
            Arc::new(LatencySample::new(10)),
        );
        for _ in 0..10 {
            engine.step().await.unwrap();
        }
        assert_eq!(up.delivered.lock().unwrap().len(), 40, "every item of the healthy destination went");
        let w = engine.workers.iter().find(|w| w.name == "down").unwrap();
        assert_eq!(w.circuit.state_name(), "open");
        let tried = down.requests.load(Ordering::SeqCst);
        assert_eq!(tried, 8, "one round of requests, then the circuit opened: {tried}");
        assert_eq!(store.pending_for("down").await.unwrap(), 40, "nothing lost while it is down");
        let latency = engine.destination_latency();
        assert_eq!(latency["up"].quantiles().map(|q| q.0), Some(40), "the healthy one's own sample");
        assert!(latency["down"].quantiles().is_none(), "nothing delivered, nothing sampled");
        assert_eq!(engine.latency.quantiles().map(|q| q.0), Some(40), "the shared sample still counts all");
        // While open, nothing is attempted and no attempt is spent.
        engine.step().await.unwrap();
        assert_eq!(down.requests.load(Ordering::SeqCst), tried);
    }

    /// A destination whose request budget is spent until `ready`.
    struct Budgeted {
        inner: Arc<Scripted>,
        ready: Instant,
    }

    #[async_trait::async_trait]
    impl Destination for Budgeted {
        fn name(&self) -> &'static str {
            "budgeted"
        }
        async fn deliver(&self, action: &Action) -> Outcome {
            self.inner.deliver(action).await
        }
        fn max_batch(&self) -> usize {
            self.inner.batch
        }
        async fn deliver_batch(&self, actions: &[Action]) -> Vec<Outcome> {
            self.inner.deliver_batch(actions).await
        }
        fn ready_at(&self) -> Option<Instant> {
            (self.ready > Instant::now()).then_some(self.ready)
        }
    }

    #[tokio::test]
    async fn a_destination_at_its_request_limit_gets_full_batches() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        enqueue(&store, &(0..5).map(|c| (c, "b")).collect::<Vec<_>>()).await;
        let inner = Scripted::new(10);
        let dest =
            Arc::new(Budgeted { inner: inner.clone(), ready: Instant::now() + Duration::from_millis(300) });
        let settings = DeliverySettings { max_in_flight: 1, linger: Duration::ZERO, ..Default::default() };
        let w = DestinationWorker::new(
            "b",
            store.clone(),
            Some(dest),
            settings,
            Arc::new(LatencySample::new(10)),
        );
        // More items arrive while the budget is spent.
        let late = store.clone();
        let more = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            enqueue(&late, &(5..12).map(|c| (c, "b")).collect::<Vec<_>>()).await;
        });
        let start = Instant::now();
        let records = w.round(&HashSet::new(), true).await.unwrap();
        more.await.unwrap();
        assert!(start.elapsed() >= Duration::from_millis(300), "it waited for the budget");
        assert_eq!(records.len(), 10, "one full batch");
        assert_eq!(*inner.sizes.lock().unwrap(), vec![10], "not a part-full batch of 5");
    }

    #[tokio::test(start_paused = true)]
    async fn the_circuit_probes_after_its_cool_down_and_closes_on_an_answer() {
        let c = Circuit::default();
        for _ in 0..CIRCUIT_THRESHOLD {
            assert_eq!(c.permit(), CircuitPermit::Send);
            c.record(false);
        }
        assert!(matches!(c.permit(), CircuitPermit::WaitUntil(_)));
        assert_eq!(c.state_name(), "open");
        tokio::time::advance(CIRCUIT_MIN_COOL_DOWN).await;
        assert_eq!(c.permit(), CircuitPermit::Probe);
        assert!(matches!(c.permit(), CircuitPermit::WaitUntil(_)), "one probe at a time");
        c.record(false);
        assert_eq!(
            c.resting_until().unwrap() - Instant::now(),
            CIRCUIT_MIN_COOL_DOWN * 2,
            "cool-down doubles"
        );
        tokio::time::advance(CIRCUIT_MIN_COOL_DOWN * 2).await;
        assert_eq!(c.permit(), CircuitPermit::Probe);
        c.record(true);
        assert_eq!(c.state_name(), "closed");
        assert_eq!(c.permit(), CircuitPermit::Send);
    }

    #[tokio::test]
    async fn items_of_unconfigured_destinations_are_rejected_by_the_sweep() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        enqueue(&store, &[(1, "gone"), (2, "gone")]).await;
        let engine = OutboxWorker::new(
            store.clone(),
            HashMap::new(),
            &HashMap::new(),
            DeliverySettings::default(),
            Arc::new(LatencySample::new(10)),
        );
        assert_eq!(engine.step().await.unwrap(), 2);
        assert_eq!(store.pending_for("gone").await.unwrap(), 0);
        assert_eq!(store.stats().await.unwrap().outbox_rejected, 2);
    }

    #[tokio::test]
    async fn dead_letter_after_gives_up_on_old_items_before_the_attempts_run_out() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        enqueue(&store, &[(1, "down")]).await;
        let down = Scripted::new(1);
        down.down.store(true, Ordering::SeqCst);
        let settings = DeliverySettings {
            dead_letter_after: Some(Duration::from_millis(1)),
            max_attempts: 100,
            ..Default::default()
        };
        tokio::time::sleep(Duration::from_millis(5)).await;
        let w = DestinationWorker::new(
            "down",
            store.clone(),
            Some(down),
            settings,
            Arc::new(LatencySample::new(10)),
        );
        assert_eq!(w.step().await.unwrap(), 1);
        assert_eq!(store.stats().await.unwrap().outbox_dead, 1);
    }

    fn sync(customer: u32, email: Option<&str>, attributes: &[(&str, f64)]) -> Action {
        Action::UpsertProfile {
            customer: format!("shopify:{customer}").parse().unwrap(),
            email: email.map(Into::into),
            first_name: None,
            last_name: None,
            attributes: attributes.iter().map(|(k, v)| (k.to_string(), AttrValue::Number(*v))).collect(),
        }
    }

    fn event(customer: u32, name: &str) -> Action {
        Action::TriggerEvent {
            customer: format!("shopify:{customer}").parse().unwrap(),
            email: None,
            name: name.into(),
            properties: Default::default(),
            value: None,
            time: time::OffsetDateTime::now_utc(),
            unique_id: name.into(),
        }
    }

    use nudge_model::{AttrValue, TerminalState};

    /// Enqueues each action for destination `dest` under a trace of its own (as separate deliveries
    /// would), in order; returns the traces.
    async fn enqueue_actions(store: &Arc<dyn Store>, dest: &str, actions: &[Action]) -> Vec<TraceId> {
        let mut traces = Vec::new();
        for a in actions {
            let t = TraceId::new();
            let item = NewOutboxItem {
                trace_id: t,
                customer: a.customer().clone(),
                destination: dest.into(),
                action_json: serde_json::to_string(a).unwrap(),
                origin_us: now_ms() * 1000,
            };
            store
                .commit_processing(vec![ProcessOutcome {
                    trace_id: Some(t),
                    outbox: vec![item],
                    ..Default::default()
                }])
                .await
                .unwrap();
            traces.push(t);
        }
        traces
    }

    /// A destination whose request budget stays spent (a throttled one), answering like `Scripted`.
    fn throttled(batch: usize) -> (Arc<Scripted>, Arc<Budgeted>) {
        let inner = Scripted::new(batch);
        let dest =
            Arc::new(Budgeted { inner: inner.clone(), ready: Instant::now() + Duration::from_secs(3600) });
        (inner, dest)
    }

    fn worker(store: &Arc<dyn Store>, name: &str, dest: Arc<dyn Destination>) -> DestinationWorker {
        DestinationWorker::new(
            name,
            store.clone(),
            Some(dest),
            DeliverySettings::default(),
            Arc::new(LatencySample::new(10)),
        )
    }

    /// Every trace has exactly one terminal state, `delivered`, recorded once in its audit trail.
    async fn all_delivered(store: &Arc<dyn Store>, traces: &[TraceId]) {
        for t in traces {
            let view = store.trace(*t).await.unwrap().unwrap();
            assert_eq!(view.terminal, Some(TerminalState::Delivered), "{t}: {view:?}");
            let settled = view.records.iter().filter(|r| r.stage == AuditStage::Terminal).count();
            assert_eq!(settled, 1, "{t}: {view:?}");
        }
        let stats = store.stats().await.unwrap();
        assert_eq!(stats.terminal_by_state, vec![("delivered".to_string(), traces.len() as u64)]);
        assert_eq!((stats.outbox_pending, stats.outbox_rejected, stats.outbox_dead), (0, 0, 0), "{stats:?}");
    }

    /// The audit record of an older sync folded into item `into`.
    async fn merged_into(store: &Arc<dyn Store>, trace: TraceId) -> Option<i64> {
        let view = store.trace(trace).await.unwrap().unwrap();
        view.records
            .iter()
            .find(|r| r.stage == AuditStage::DeliveryAttempt && r.detail["outcome"] == "coalesced")
            .map(|r| r.detail["merged_into"].as_i64().unwrap())
    }

    #[tokio::test]
    async fn profile_syncs_piled_up_behind_a_throttled_destination_go_as_one_with_the_newest_values() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let (inner, dest) = throttled(10);
        let syncs = [
            sync(1, Some("old@example.org"), &[("ai_churn", 0.1), ("ai_next_best_offer", 1.0)]),
            sync(1, None, &[("ai_churn", 0.2)]),
            sync(1, Some("new@example.org"), &[("ai_churn", 0.3), ("ai_clv", 40.0)]),
            sync(1, Some(""), &[("ai_churn", 0.4)]),
            sync(1, None, &[("ai_churn", 0.5), ("ai_segment", 2.0)]),
        ];
        let traces = enqueue_actions(&store, "k", &syncs).await;
        let w = worker(&store, "k", dest);
        assert_eq!(w.step().await.unwrap(), 5, "five items settled by one send");
        assert_eq!(*inner.sizes.lock().unwrap(), vec![1], "one request carrying one profile");
        assert_eq!(
            inner.sent.lock().unwrap()[0],
            sync(
                1,
                Some("new@example.org"),
                &[("ai_churn", 0.5), ("ai_next_best_offer", 1.0), ("ai_clv", 40.0), ("ai_segment", 2.0)]
            ),
            "the newest values, with what only older syncs wrote"
        );
        assert_eq!(w.step().await.unwrap(), 0);
        let newest = store.trace(traces[4]).await.unwrap().unwrap();
        let attempt = newest.records.iter().find(|r| r.stage == AuditStage::DeliveryAttempt).unwrap();
        assert_eq!(attempt.detail["outcome"], "delivered");
        assert_eq!(attempt.detail["merged"].as_array().unwrap().len(), 4, "{attempt:?}");
        let into = merged_into(&store, traces[0]).await.expect("audited as merged");
        for t in &traces[..4] {
            assert_eq!(merged_into(&store, *t).await, Some(into), "{t}");
        }
        assert_eq!(merged_into(&store, traces[4]).await, None);
        let stats = store.stats().await.unwrap();
        assert_eq!((stats.outbox_delivered, stats.outbox_coalesced), (1, 4));
        assert_eq!(stats.outbox_by_destination[0].coalesced, 4);
        all_delivered(&store, &traces).await;
    }

    #[tokio::test]
    async fn a_trigger_event_between_syncs_is_never_merged_over() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let (inner, dest) = throttled(10);
        let actions = [
            sync(1, None, &[("ai_churn", 0.1)]),
            sync(1, None, &[("ai_churn", 0.2)]),
            event(1, "AI Checkout Abandoned"),
            sync(1, None, &[("ai_churn", 0.3)]),
            event(1, "AI Win Back"),
            sync(1, None, &[("ai_churn", 0.4)]),
            sync(1, None, &[("ai_churn", 0.5)]),
        ];
        let traces = enqueue_actions(&store, "k", &actions).await;
        let w = worker(&store, "k", dest);
        let mut rounds = Vec::new();
        loop {
            match w.step().await.unwrap() {
                0 => break,
                n => rounds.push(n),
            }
        }
        assert_eq!(rounds, vec![2, 1, 1, 1, 2], "each event alone, in order, between the syncs around it");
        assert_eq!(
            *inner.sent.lock().unwrap(),
            vec![
                sync(1, None, &[("ai_churn", 0.2)]),
                actions[2].clone(),
                actions[3].clone(),
                actions[4].clone(),
                sync(1, None, &[("ai_churn", 0.5)]),
            ],
            "the event sees the profile as of its time; nothing merged across it"
        );
        let stats = store.stats().await.unwrap();
        assert_eq!((stats.outbox_delivered, stats.outbox_coalesced), (5, 2));
        all_delivered(&store, &traces).await;
    }

    #[tokio::test]
    async fn interleaved_customers_are_merged_each_on_their_own() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let (inner, dest) = throttled(10);
        let actions = [
            sync(1, None, &[("ai_churn", 0.1)]),
            sync(2, None, &[("ai_churn", 0.6)]),
            sync(1, None, &[("ai_clv", 10.0)]),
            sync(2, None, &[("ai_churn", 0.7)]),
            sync(1, None, &[("ai_churn", 0.3)]),
            sync(2, None, &[("ai_churn", 0.8)]),
        ];
        let traces = enqueue_actions(&store, "k", &actions).await;
        // Another destination's syncs of the same customers are never folded in.
        let other = enqueue_actions(&store, "other", &[sync(1, None, &[("ai_churn", 0.9)])]).await;
        let w = worker(&store, "k", dest);
        assert_eq!(w.step().await.unwrap(), 6);
        assert_eq!(*inner.sizes.lock().unwrap(), vec![2], "one request, one profile per customer");
        assert_eq!(
            *inner.sent.lock().unwrap(),
            vec![sync(1, None, &[("ai_churn", 0.3), ("ai_clv", 10.0)]), sync(2, None, &[("ai_churn", 0.8)])]
        );
        assert_eq!(merged_into(&store, traces[0]).await, merged_into(&store, traces[2]).await);
        assert_ne!(merged_into(&store, traces[0]).await, merged_into(&store, traces[1]).await);
        assert_eq!(store.pending_for("other").await.unwrap(), 1, "the other destination's item is its own");
        let stats = store.stats().await.unwrap();
        assert_eq!(stats.outbox_coalesced, 4);
        let (_, up) = throttled(10);
        assert_eq!(worker(&store, "other", up).step().await.unwrap(), 1);
        all_delivered(&store, &[traces, other].concat()).await;
    }

    #[tokio::test]
    async fn a_merged_send_that_fails_retries_the_whole_run() {
        let dir = tempfile::tempdir().unwrap();
        let store = store(&dir);
        let (inner, dest) = throttled(10);
        inner.down.store(true, Ordering::SeqCst);
        let syncs = [sync(1, None, &[("ai_churn", 0.1)]), sync(1, None, &[("ai_churn", 0.2)])];
        let traces = enqueue_actions(&store, "k", &syncs).await;
        let mut w = worker(&store, "k", dest);
        w.backoff = Backoff { base: Duration::ZERO, max: Duration::ZERO, ..Backoff::default() };
        assert_eq!(w.step().await.unwrap(), 2);
        assert_eq!(store.pending_for("k").await.unwrap(), 2, "both wait for the retry; neither is settled");
        assert_eq!(merged_into(&store, traces[0]).await, None);
        for t in &traces {
            assert_eq!(store.trace(*t).await.unwrap().unwrap().terminal, None);
        }
        // Another sync arrives meanwhile; the retry folds all three.
        let late = enqueue_actions(&store, "k", &[sync(1, None, &[("ai_churn", 0.3)])]).await;
        inner.down.store(false, Ordering::SeqCst);
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert_eq!(w.step().await.unwrap(), 3);
        assert_eq!(inner.sent.lock().unwrap().last(), Some(&sync(1, None, &[("ai_churn", 0.3)])));
        assert_eq!(store.stats().await.unwrap().outbox_coalesced, 2);
        all_delivered(&store, &[traces, late].concat()).await;
    }

    #[test]
    fn folding_keeps_the_newest_names_and_every_attribute() {
        let customer: nudge_model::CustomerId = "shopify:1".parse().unwrap();
        let named = |first: Option<&str>, attrs: &[(&str, f64)]| Action::UpsertProfile {
            customer: customer.clone(),
            email: None,
            first_name: first.map(Into::into),
            last_name: Some("Roe".into()),
            attributes: attrs.iter().map(|(k, v)| (k.to_string(), AttrValue::Number(*v))).collect(),
        };
        let folded = fold_profiles(vec![
            named(Some("Ann"), &[("a", 1.0), ("b", 1.0)]),
            named(Some("Anne"), &[("b", 2.0)]),
            named(None, &[("c", 3.0)]),
        ]);
        assert_eq!(folded, Some(named(Some("Anne"), &[("a", 1.0), ("b", 2.0), ("c", 3.0)])));
        assert_eq!(fold_profiles(vec![named(None, &[]), sync(2, None, &[])]), None, "one customer only");
        assert_eq!(fold_profiles(vec![named(None, &[]), event(1, "e")]), None, "profile syncs only");
    }
}
