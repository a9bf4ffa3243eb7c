//! Batch pushes: every selected customer's current scores written to one destination through its bulk
//! path (`nudge push`, and `pipeline.batch_push_schedule` in the server).
//!
//! A run walks the customers in key order, a page at a time (the destination's bulk size × its
//! `max_in_flight`), scores each with the active model, builds the same profile update a `sync_profile`
//! flow action sends, and pushes the page with [`Destination::push_profiles`] — as many bulk calls in
//! flight as the destination's `max_in_flight`, each paced by the connector's own rate limiter. Records
//! the destination refuses are counted with their reason; records still failing after
//! [`IN_RUN_ATTEMPTS`] attempts are handed to the outbox (a new trace), where the delivery engine keeps
//! trying them with its full retry budget, so nothing is lost. After each settled page the run's cursor
//! is saved: a run that stops (crash, Ctrl-C) continues after that customer when started again with the
//! same selection; a page pushed twice is harmless, since profile updates are upserts.

use crate::outbox::DeliverySettings;
use crate::pipeline::Scoring;
use nudge_deliver::{Backoff, Destination, Outcome};
use nudge_model::{Action, AuditRecord, AuditStage, CustomerId, Segment, TraceId};
use nudge_policy::PolicyConfig;
use nudge_state::CustomerState;
use nudge_store::{NewOutboxItem, ProcessOutcome, PushRun, Store};
use std::sync::Arc;
use std::time::Duration;

/// Attempts a record gets inside the run before it is handed to the outbox.
pub const IN_RUN_ATTEMPTS: u32 = 3;
/// Reasons kept for the summary.
const KEPT_ERRORS: usize = 10;

/// Which customers a run pushes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Selector {
    All,
    /// Customers whose current segment is this one.
    Segment(Segment),
}

impl Selector {
    /// `all` or `segment:<name>`, as stored with the run.
    pub fn key(&self) -> String {
        match self {
            Selector::All => "all".into(),
            Selector::Segment(s) => format!("segment:{}", s.as_str()),
        }
    }

    /// Parses a segment name as `--segment` takes it.
    pub fn segment(name: &str) -> Result<Selector, PushError> {
        let all = [
            Segment::Prospect,
            Segment::New,
            Segment::Active,
            Segment::Loyal,
            Segment::HighValueAtRisk,
            Segment::Lapsed,
        ];
        all.into_iter().find(|s| s.as_str() == name).map(Selector::Segment).ok_or_else(|| {
            let names: Vec<&str> = all.iter().map(|s| s.as_str()).collect();
            PushError::Usage(format!("unknown segment `{name}` (segments: {})", names.join(", ")))
        })
    }
}

/// The errors that stop a run before or while it pushes.
#[derive(Debug, thiserror::Error)]
pub enum PushError {
    /// The command was asked for something it cannot do (exit 2).
    #[error("{0}")]
    Usage(String),
    #[error(transparent)]
    Store(#[from] nudge_store::StoreError),
}

/// What a run is asked to do.
#[derive(Debug, Clone)]
pub struct PushOptions {
    pub destination: String,
    pub selector: Selector,
    /// Count and show what would be pushed; push nothing, save nothing.
    pub dry_run: bool,
    /// Start from the first customer even if an unfinished run with the same selection exists.
    pub restart: bool,
    /// Customers per page; `None` for the destination's bulk size × its `max_in_flight`.
    pub page: Option<usize>,
}

/// Where a run stands, for a progress bar.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PushProgress {
    /// Customers looked at so far (selected or not), this invocation.
    pub scanned: u64,
    pub pushed: u64,
    pub rejected: u64,
    pub deferred: u64,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct PushSummary {
    pub destination: String,
    pub selector: String,
    pub dry_run: bool,
    /// The customer the run continued after, when it resumed an earlier one.
    pub resumed_after: Option<String>,
    /// Customers looked at this invocation.
    pub scanned: u64,
    /// Customers selected this invocation (all, or those in the segment).
    pub selected: u64,
    /// Totals of the run (including what a resumed run had done before).
    pub pushed: u64,
    pub rejected: u64,
    pub deferred: u64,
    /// Bulk calls made this invocation.
    pub calls: u64,
    /// The first refusals, as (customer, reason).
    pub errors: Vec<(String, String)>,
    pub seconds: f64,
    /// One profile update as it would be sent (dry runs).
    pub sample: Option<serde_json::Value>,
}

/// Runs (or resumes) a batch push of `opts.selector` to `destination`.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    store: &Arc<dyn Store>,
    scoring: &Scoring,
    policy: &PolicyConfig,
    destination: Arc<dyn Destination>,
    settings: &DeliverySettings,
    opts: &PushOptions,
    progress: &(dyn Fn(PushProgress) + Send + Sync),
) -> Result<PushSummary, PushError> {
    let started = std::time::Instant::now();
    let now_ms = crate::outbox::now_ms();
    let selector = opts.selector.key();
    let previous = store.push_run(&opts.destination).await?;
    let resume = previous.filter(|r| !r.done && r.selector == selector && !opts.restart && !opts.dry_run);
    let mut run = resume.clone().unwrap_or(PushRun {
        destination: opts.destination.clone(),
        selector: selector.clone(),
        started_at_ms: now_ms,
        updated_at_ms: now_ms,
        cursor: None,
        pushed: 0,
        rejected: 0,
        deferred: 0,
        done: false,
    });
    let mut summary = PushSummary {
        destination: opts.destination.clone(),
        selector,
        dry_run: opts.dry_run,
        resumed_after: resume.and_then(|r| r.cursor).map(|c| c.to_string()),
        scanned: 0,
        selected: 0,
        pushed: run.pushed,
        rejected: run.rejected,
        deferred: run.deferred,
        calls: 0,
        errors: Vec::new(),
        seconds: 0.0,
        sample: None,
    };
    let bulk = destination.max_bulk().max(1);
    let lanes = settings.max_in_flight.max(1);
    let page = opts.page.unwrap_or(bulk * lanes).max(1);
    let backoff = Backoff::default();
    let mut cursor = run.cursor.clone();
    loop {
        let states = store.scan_states(cursor.clone(), page).await?;
        let Some(last) = states.last() else { break };
        let next_cursor = last.customer.clone();
        let now = time::OffsetDateTime::now_utc();
        let mut actions = Vec::new();
        for stored in &states {
            summary.scanned += 1;
            let state: CustomerState = match CustomerState::decode(&stored.state) {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(customer = %stored.customer, error = %e, "a stored state does not parse; skipped");
                    continue;
                }
            };
            let (scores, _) = scoring.score(&state, now);
            if let Selector::Segment(s) = &opts.selector
                && scores.segment != *s
            {
                continue;
            }
            summary.selected += 1;
            actions.push(nudge_policy::profile_action(&state, &scores, policy));
        }
        if opts.dry_run {
            if summary.sample.is_none() {
                summary.sample = actions.first().and_then(|a| serde_json::to_value(a).ok());
            }
            summary.calls += actions.len().div_ceil(bulk) as u64;
        } else if !actions.is_empty() {
            let settled = push_page(&*destination, actions, bulk, lanes, &backoff, &mut summary).await;
            run.pushed += settled.pushed;
            run.rejected += settled.rejected;
            if !settled.deferred.is_empty() {
                run.deferred += settled.deferred.len() as u64;
                defer(store, &opts.destination, settled.deferred).await?;
            }
            run.cursor = Some(next_cursor.clone());
            run.updated_at_ms = crate::outbox::now_ms();
            store.save_push_run(run.clone()).await?;
        }
        summary.pushed = run.pushed;
        summary.rejected = run.rejected;
        summary.deferred = run.deferred;
        progress(PushProgress {
            scanned: summary.scanned,
            pushed: summary.pushed,
            rejected: summary.rejected,
            deferred: summary.deferred,
        });
        cursor = Some(next_cursor);
        if states.len() < page {
            break;
        }
    }
    if !opts.dry_run {
        run.done = true;
        run.cursor = None;
        run.updated_at_ms = crate::outbox::now_ms();
        store.save_push_run(run).await?;
    }
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

/// One page's results.
struct Settled {
    pushed: u64,
    rejected: u64,
    /// Actions still failing after the in-run attempts.
    deferred: Vec<Action>,
}

/// Pushes one page in bulk calls (`lanes` at once), retrying failures inside the run.
async fn push_page(
    destination: &dyn Destination,
    actions: Vec<Action>,
    bulk: usize,
    lanes: usize,
    backoff: &Backoff,
    summary: &mut PushSummary,
) -> Settled {
    use futures::StreamExt;
    let mut settled = Settled { pushed: 0, rejected: 0, deferred: Vec::new() };
    let mut todo = actions;
    for attempt in 0..IN_RUN_ATTEMPTS {
        if todo.is_empty() {
            break;
        }
        let chunks: Vec<Vec<Action>> = todo.chunks(bulk).map(<[Action]>::to_vec).collect();
        summary.calls += chunks.len() as u64;
        let results: Vec<(Vec<Action>, Vec<Outcome>)> = futures::stream::iter(chunks)
            .map(|chunk| async move {
                let outcomes = destination.push_profiles(&chunk).await;
                (chunk, outcomes)
            })
            .buffer_unordered(lanes)
            .collect()
            .await;
        let mut again = Vec::new();
        let mut wait: Option<Duration> = None;
        for (chunk, outcomes) in results {
            if outcomes.len() != chunk.len() {
                tracing::error!(
                    destination = destination.name(),
                    "a destination returned the wrong number of outcomes; the page is retried"
                );
                again.extend(chunk);
                continue;
            }
            for (action, outcome) in chunk.into_iter().zip(outcomes) {
                match outcome {
                    Outcome::Delivered { .. } => settled.pushed += 1,
                    Outcome::Rejected { error, .. } => {
                        settled.rejected += 1;
                        tracing::warn!(customer = %action.customer(), error = %error, "profile refused");
                        if summary.errors.len() < KEPT_ERRORS {
                            summary.errors.push((action.customer().to_string(), error));
                        }
                    }
                    Outcome::Retry { retry_after, .. } => {
                        wait = wait.max(retry_after);
                        again.push(action);
                    }
                }
            }
        }
        todo = again;
        if !todo.is_empty() && attempt + 1 < IN_RUN_ATTEMPTS {
            tokio::time::sleep(backoff.delay(attempt, wait).min(Duration::from_secs(120))).await;
        }
    }
    settled.deferred = todo;
    settled
}

/// Hands still-failing profile updates to the outbox, one new trace for the lot.
async fn defer(store: &Arc<dyn Store>, destination: &str, actions: Vec<Action>) -> Result<(), PushError> {
    let trace = TraceId::new();
    let origin_us = crate::outbox::now_ms() * 1000;
    let n = actions.len();
    let outbox = actions
        .iter()
        .filter_map(|a| {
            Some(NewOutboxItem {
                trace_id: trace,
                customer: a.customer().clone(),
                destination: destination.to_string(),
                action_json: serde_json::to_string(a).ok()?,
                origin_us,
            })
        })
        .collect();
    let audit = AuditRecord {
        trace_id: trace,
        customer: None::<CustomerId>,
        stage: AuditStage::Decided,
        at: time::OffsetDateTime::now_utc(),
        detail: serde_json::json!({
            "source": "batch_push",
            "destination": destination,
            "deferred": n,
            "reason": format!("still failing after {IN_RUN_ATTEMPTS} attempts in the batch push; the outbox retries them"),
        }),
    };
    store
        .commit_processing(vec![ProcessOutcome {
            trace_id: Some(trace),
            outbox,
            audit: vec![audit],
            ..Default::default()
        }])
        .await?;
    Ok(())
}

/// What the server's scheduled batch push needs.
pub struct ScheduledPush {
    pub store: Arc<dyn Store>,
    pub scoring: Arc<Scoring>,
    pub policy: PolicyConfig,
    pub schedule: nudge_policy::schedule::Schedule,
    /// Each destination with its delivery settings (the same clients the outbox uses, so the two share
    /// the tool's rate limit).
    pub destinations: Vec<(String, Arc<dyn Destination>, DeliverySettings)>,
}

impl ScheduledPush {
    /// Runs until `shutdown`: first finishes any run a stop interrupted, then pushes every customer to
    /// each destination at every occurrence of the schedule (one run at a time, destinations in turn).
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        for (name, dest, settings) in &self.destinations {
            match self.store.push_run(name).await {
                Ok(Some(r)) if !r.done && r.selector == Selector::All.key() => {
                    tracing::info!(destination = %name, "resuming an interrupted scheduled push");
                    self.push(name, dest, settings).await;
                }
                Ok(_) => {}
                Err(e) => tracing::error!(destination = %name, error = %e, "reading push progress failed"),
            }
        }
        loop {
            let now = time::OffsetDateTime::now_utc();
            let Some(next) = self.schedule.next_after(now) else { return };
            let wait = Duration::try_from(next - now).unwrap_or_default();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
            for (name, dest, settings) in &self.destinations {
                tokio::select! {
                    _ = self.push(name, dest, settings) => {}
                    // Stopping mid-run is safe: the cursor of the last settled page is saved.
                    _ = shutdown.changed() => return,
                }
            }
        }
    }

    async fn push(&self, name: &str, dest: &Arc<dyn Destination>, settings: &DeliverySettings) {
        let opts = PushOptions {
            destination: name.to_string(),
            selector: Selector::All,
            dry_run: false,
            restart: false,
            page: None,
        };
        match run(&self.store, &self.scoring, &self.policy, dest.clone(), settings, &opts, &|_| {}).await {
            Ok(s) => tracing::info!(destination = %name, pushed = s.pushed, refused = s.rejected,
                to_outbox = s.deferred, seconds = s.seconds, "scheduled batch push done"),
            Err(e) => tracing::error!(destination = %name, error = %e, "scheduled batch push failed"),
        }
    }
}
