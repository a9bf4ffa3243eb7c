//! The storage ports, one a concern. A backend implements each; [`Store`] is all of them together, for
//! the wiring that needs everything from one backend. Every method is atomic.

use crate::*;
use async_trait::async_trait;
use nudge_model::{AuditRecord, CustomerId, TraceId};

/// The ingest log and its dedupe index: acknowledged deliveries waiting to be processed, quarantine, and the log's tail.
#[async_trait]
pub trait DeliveryLog: Send + Sync + 'static {
    /// Durably commits an inbound delivery unless one of its dedupe keys was seen within the retention.
    /// Returns only after the commit is durable: the caller acknowledges the sender after this.
    async fn commit_delivery(&self, d: NewDelivery) -> Result<CommitResult>;

    /// Commits several deliveries, each as [`DeliveryLog::commit_delivery`] would (its own dedupe keys; a
    /// duplicate is reported, not stored), and returns their results in order once all are durable. An
    /// error means some may not be stored: the caller answers so that the sender retries, and the dedupe
    /// keys make the retry store only what is missing. Backends may commit them together for throughput.
    async fn commit_deliveries(&self, ds: Vec<NewDelivery>) -> Result<Vec<CommitResult>> {
        let mut out = Vec::with_capacity(ds.len());
        for d in ds {
            out.push(self.commit_delivery(d).await?);
        }
        Ok(out)
    }

    /// The oldest deliveries waiting to be processed, in sequence order.
    async fn pending_deliveries(&self, limit: usize) -> Result<Vec<StoredDelivery>> {
        self.pending_deliveries_after(None, limit).await
    }

    /// [`DeliveryLog::pending_deliveries`] with a sequence number above `after`: lets a processor read the next
    /// batch while the commit of the one before (up to `after`) is still in flight.
    async fn pending_deliveries_after(&self, after: Option<i64>, limit: usize)
    -> Result<Vec<StoredDelivery>>;

    /// [`DeliveryLog::pending_deliveries`] besides those of `in_flight` (a batch whose commit has not landed
    /// yet): lets a processor read the next batch meanwhile. A log whose sequence numbers can become visible
    /// out of order (several writers, each committing its own) reads below the batch too, so a delivery
    /// committed after a later-numbered one is read at the next batch; by default it is the log after the
    /// batch's highest sequence number.
    async fn pending_deliveries_besides(
        &self,
        in_flight: &[i64],
        limit: usize,
    ) -> Result<Vec<StoredDelivery>> {
        self.pending_deliveries_after(in_flight.iter().max().copied(), limit).await
    }

    /// Puts quarantined deliveries (all, or one trace) back into the pending queue; returns how many.
    async fn requeue_quarantined(&self, trace: Option<TraceId>) -> Result<usize>;

    /// Quarantined deliveries, newest first: at most `limit` of those with a seq below `before_seq` (all
    /// when `None`), with the source, topic and arrival the ingest log holds for each.
    async fn quarantined(&self, before_seq: Option<i64>, limit: usize) -> Result<Vec<QuarantinedItem>>;

    /// The log's deliveries after `after_seq` in log order (sequence, source, topic and receipt time only), at
    /// most `limit`. With `after_seq` `None` the walk starts at about the first delivery received at or after
    /// `since_ms` (found by the log's order, not by a scan), so a caller can follow the log's tail cheaply
    /// whatever its size: the console's deliveries-per-minute charts.
    async fn delivery_ticks(
        &self,
        after_seq: Option<i64>,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<DeliveryTick>>;

    /// Removes dedupe keys older than `older_than_ms`; returns how many.
    async fn prune_dedupe(&self, older_than_ms: i64) -> Result<usize>;
}

/// Customer states, by customer key.
#[async_trait]
pub trait CustomerStates: Send + Sync + 'static {
    /// Loads the stored states of these customers (missing ones are absent from the map).
    async fn load_states(&self, customers: &[CustomerId]) -> Result<Vec<StoredState>>;

    /// Customer states in key order after `after` (exclusive), at most `limit`: for refits and exports.
    async fn scan_states(&self, after: Option<CustomerId>, limit: usize) -> Result<Vec<StoredState>>;

    /// The states still stored as text (written before states were stored as bytes), in key order after
    /// `after` (exclusive), at most `limit`: what a rewrite into the current encoding reads. Empty once
    /// every state has been written as bytes.
    async fn scan_text_states(&self, after: Option<CustomerId>, limit: usize) -> Result<Vec<StoredState>>;

    /// Writes customer states directly (history backfill), without touching deliveries or the outbox.
    async fn put_states(&self, states: Vec<StoredState>) -> Result<()>;
}

/// Identity: the email index and the aliases stitched to customers.
#[async_trait]
pub trait Identity: Send + Sync + 'static {
    /// Finds a customer by (normalised) email, the secondary key.
    async fn customer_by_email(&self, email: &str) -> Result<Option<CustomerId>>;

    /// The aliases among `aliases` that are known, each with the customer it points at (identity
    /// stitching). Aliases are written by [`ProcessOutcome::aliases`].
    async fn resolve_aliases(&self, aliases: &[String]) -> Result<Vec<AliasRecord>>;

    /// [`Identity::resolve_aliases`] of `aliases`, and the stored states of `customers` and of every
    /// customer those aliases point at ([`CustomerStates::load_states`]'s answer, in no particular order),
    /// read together: what a processing batch starts from, in one round trip where the backend can.
    async fn resolve_with_states(
        &self,
        aliases: &[String],
        customers: &[CustomerId],
    ) -> Result<(Vec<AliasRecord>, Vec<StoredState>)>;

    /// Every alias that points at `customer`, by alias.
    async fn aliases_of(&self, customer: &CustomerId) -> Result<Vec<AliasRecord>>;
}

/// The processing commit, which writes across concerns in one transaction (states, audit, outbox, timers, approvals, offers, delivery statuses), and the figures that span them.
#[async_trait]
pub trait Processing: Send + Sync + 'static {
    /// Commits the results of processing a batch of deliveries in one transaction: states, audit records,
    /// outbox items, timers, delivery statuses and terminal states.
    async fn commit_processing(&self, batch: Vec<ProcessOutcome>) -> Result<()> {
        self.commit_processing_after(batch, None).await
    }

    /// [`Processing::commit_processing`], on condition that delivery `after` (the last of the batch before, whose
    /// commit may still be in flight) has been processed; if it has not, nothing is written and the answer
    /// is [`StoreError::Conflict`]. A batch computed on top of one that failed can then never land.
    async fn commit_processing_after(&self, batch: Vec<ProcessOutcome>, after: Option<i64>) -> Result<()>;

    /// Counts for health, metrics and the demo summary.
    async fn stats(&self) -> Result<StoreStats>;

    /// Work not yet done: (deliveries pending processing, outbox items pending); a notification whose fetch
    /// job is still pending counts as a delivery pending processing. Cheap at any backlog,
    /// unlike [`Processing::stats`]; for readiness checks and waiting until idle. Exact when there is nothing
    /// pending; otherwise the delivery count may be an upper bound.
    async fn backlog(&self) -> Result<(u64, u64)>;

    /// Moves everything in the write-ahead logs into the database files and empties the logs, so no
    /// older copy of an overwritten page remains in them (after an erasure). Best effort under load: a
    /// log still in use by a reader is checkpointed as far as possible and reported as a conflict.
    async fn compact(&self) -> Result<()>;
}

/// The outbox: what is to be pushed to each destination, in per-customer order, its attempts, dead letters and batch pushes.
#[async_trait]
pub trait Outbox: Send + Sync + 'static {
    /// Outbox items due at `now_ms` that are the oldest pending item of their customer (per-customer order).
    async fn due_outbox(&self, now_ms: i64, limit: usize) -> Result<Vec<OutboxItem>>;

    /// Outbox items for `destination` due at `now_ms` that are the oldest pending item of their customer
    /// for that destination (per-customer order per destination), oldest first. Each destination's
    /// worker reads only its own queue, so one destination's backlog never delays another's.
    async fn due_outbox_for(&self, destination: &str, now_ms: i64, limit: usize) -> Result<Vec<OutboxItem>>;

    /// [`Outbox::due_outbox_for`] for the customers of `parts` alone: what a node of a cluster delivers. The
    /// default filters [`Outbox::due_outbox_for`]'s answer (so it may hold fewer than `limit` items, and is
    /// only for backends a single node uses); a backend shared by nodes selects the share in its query.
    async fn due_outbox_in(
        &self,
        destination: &str,
        now_ms: i64,
        limit: usize,
        parts: &Partitions,
    ) -> Result<Vec<OutboxItem>> {
        let mut items = self.due_outbox_for(destination, now_ms, limit).await?;
        items.retain(|i| parts.contains(&i.customer.to_string()));
        Ok(items)
    }

    /// For each `(customer, head)` (a customer's oldest pending item for `destination`, as
    /// [`Outbox::due_outbox_for`] returned it), the customer's next pending items for that destination in id
    /// order: at most `depth` per head, and none from the first that is not due at `now_ms` on. Each
    /// customer's items come together, oldest first. For coalescing a backlog of profile syncs; the default
    /// looks nowhere ahead (a backend without it never coalesces).
    async fn pending_after_heads(
        &self,
        destination: &str,
        heads: Vec<(CustomerId, i64)>,
        now_ms: i64,
        depth: usize,
    ) -> Result<Vec<OutboxItem>> {
        let _ = (destination, heads, now_ms, depth);
        Ok(Vec::new())
    }

    /// How many items are pending (due or waiting for a retry) for `destination`.
    async fn pending_for(&self, destination: &str) -> Result<u64>;

    /// The destinations that have pending items, sorted.
    async fn pending_destinations(&self) -> Result<Vec<String>>;

    /// The batch push to `destination` in progress, or the last one.
    async fn push_run(&self, destination: &str) -> Result<Option<PushRun>>;

    /// Saves a batch push's progress (replacing the destination's previous record).
    async fn save_push_run(&self, run: PushRun) -> Result<()>;

    /// Records delivery attempts in one transaction: each attempt's audit record, the item's new status,
    /// and a trace's terminal state once every item of the trace is final.
    async fn record_attempts(&self, attempts: Vec<AttemptRecord>) -> Result<()>;

    /// Puts dead-lettered outbox items (all, or one trace) back into the outbox; returns how many.
    async fn requeue_dead_letters(&self, filter: DeadLetterFilter) -> Result<usize>;

    /// Dead-lettered outbox items matching `filter` (every condition given must hold), newest first: at
    /// most `limit` of those with an id below `before_id` (all when `None`). The next page starts before
    /// the last id returned. Cheap however long the outbox is, as long as few of its items are dead.
    async fn dead_letters(
        &self,
        filter: DeadLetterFilter,
        before_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<DeadLetterItem>>;
}

/// The audit trail: every trace's records and terminal state.
#[async_trait]
pub trait AuditTrail: Send + Sync + 'static {
    /// Appends audit records that belong to no delivery, such as a model refit, each under its own trace id
    /// (a fresh one, never a delivery's); durable when it returns. [`AuditTrail::trace`] reads them back, with no
    /// terminal state: such a trace is not a delivery, so it counts in no delivery or terminal-state figure.
    /// Records of stage [`AuditStage::Terminal`](nudge_model::AuditStage::Terminal) are refused (nothing is
    /// written): terminal states belong to deliveries and are recorded with them.
    async fn append_audit(&self, records: Vec<AuditRecord>) -> Result<()>;

    /// The audit trail of one trace, in order, and its terminal state; `None` for a trace the store knows
    /// nothing of. A trace of records from [`AuditTrail::append_audit`] has records and never a terminal state.
    async fn trace(&self, trace: TraceId) -> Result<Option<TraceView>>;

    /// The records of `stage` in the audit trails of `traces` (each trace's in order), read together: for a
    /// report that needs one record of many traces. Unknown traces give nothing. The default reads the
    /// traces one by one.
    async fn audit_of_traces(
        &self,
        traces: Vec<TraceId>,
        stage: nudge_model::AuditStage,
    ) -> Result<Vec<AuditRecord>> {
        let mut out = Vec::new();
        for t in traces {
            if let Some(view) = self.trace(t).await? {
                out.extend(view.records.into_iter().filter(|r| r.stage == stage));
            }
        }
        Ok(out)
    }

    /// The newest audit records about a customer (oldest first), at most `limit`.
    async fn customer_audit(&self, customer: &CustomerId, limit: usize) -> Result<Vec<AuditRecord>>;
}

/// Timers (abandonment) and schedule flows' progress.
#[async_trait]
pub trait Timers: Send + Sync + 'static {
    /// Turns every timer due at `now_ms` into a pending delivery (source `timer`), atomically, and returns
    /// how many fired.
    async fn fire_due_timers(&self, now_ms: i64, limit: usize) -> Result<usize>;

    /// Every schedule flow's run record ([`ScheduleRun`]: the occurrence being fired or last fired, and how
    /// far through the customers it got), by flow name.
    async fn schedule_runs(&self) -> Result<Vec<ScheduleRun>>;

    /// Creates or replaces the run record of `run.flow`; durable when it returns. The scheduler writes it
    /// before and after committing each chunk of a firing to the ingest log, so a restart resumes the
    /// firing where it stopped.
    async fn save_schedule_run(&self, run: ScheduleRun) -> Result<()>;

    /// Forgets the run record of a flow (one no longer configured); nothing happens when there is none.
    async fn delete_schedule_run(&self, flow: &str) -> Result<()>;
}

/// Fetch jobs: notifications whose payload is fetched from the platform before processing.
#[async_trait]
pub trait FetchJobs: Send + Sync + 'static {
    /// Pending fetch jobs due at `now_ms`, oldest due first.
    async fn due_fetch_jobs(&self, now_ms: i64, limit: usize) -> Result<Vec<FetchJobRecord>>;

    /// Settles one attempt at a fetch job, with its trace's audit records and terminal state.
    async fn settle_fetch_job(&self, s: FetchSettlement) -> Result<()>;

    /// Makes dead fetch jobs (of one trace, or all) pending again, due now, and removes those traces'
    /// terminal states; returns how many.
    async fn requeue_fetch_jobs(&self, trace: Option<TraceId>) -> Result<usize>;

    /// Every fetch job of a trace, oldest first.
    async fn fetch_jobs_of(&self, trace: TraceId) -> Result<Vec<FetchJobRecord>>;
}

/// The model registry, imported order history and the product catalogue.
#[async_trait]
pub trait ModelRegistry: Send + Sync + 'static {
    /// Imports order-history rows, ignoring rows already present (idempotent); returns how many were new.
    async fn import_transactions(&self, rows: Vec<ImportedTransaction>) -> Result<usize>;

    /// Every imported transaction.
    async fn transactions(&self) -> Result<Vec<ImportedTransaction>>;

    /// Saves a new model version (inactive).
    async fn save_model_version(&self, v: ModelVersion) -> Result<()>;

    /// All model versions, newest first.
    async fn model_versions(&self) -> Result<Vec<ModelVersion>>;

    /// Makes one version the only active one of its kind ([`model_kind`]): activating a propensity
    /// version leaves the active BTYD version active.
    async fn activate_model_version(&self, id: &str) -> Result<()>;

    /// The active BTYD version, if any.
    async fn active_model_version(&self) -> Result<Option<ModelVersion>> {
        self.active_model_version_of("btyd").await
    }

    /// The active version of a kind (`btyd`, `propensity`, `bandit`, `send_time`, `cold_start`), if any.
    async fn active_model_version_of(&self, kind: &str) -> Result<Option<ModelVersion>> {
        Ok(self.model_versions().await?.into_iter().find(|v| v.active && v.kind() == kind))
    }

    /// The catalogue: every stored product (`ids` = `None`) or those with these ids (unknown ids are
    /// skipped), each the newest record by `updated_at`, in id order.
    async fn products(&self, ids: Option<Vec<String>>) -> Result<Vec<StoredProduct>>;
}

/// Segment discoveries and adopted segments with their members.
#[async_trait]
pub trait Segments: Send + Sync + 'static {
    /// Stores a segment discovery's body; returns its id (increasing).
    async fn save_segment_discovery(&self, created_at_ms: i64, body: serde_json::Value) -> Result<i64>;

    /// The latest `limit` segment discoveries, newest first.
    async fn segment_discoveries(&self, limit: usize) -> Result<Vec<SegmentDiscoveryRecord>>;

    /// One segment discovery, if stored.
    async fn segment_discovery(&self, id: i64) -> Result<Option<SegmentDiscoveryRecord>>;

    /// Adopts a proposal under a name, with no members yet. A name already taken, or a proposal already
    /// adopted (under another name), is refused with [`StoreError::Conflict`]; an unknown discovery with
    /// [`StoreError::NotFound`].
    async fn adopt_segment(&self, segment: AdoptedSegment) -> Result<()>;

    /// Every adopted segment, by name.
    async fn adopted_segments(&self) -> Result<Vec<AdoptedSegment>>;

    /// Removes an adopted segment and its membership ([`StoreError::NotFound`] when there is none).
    async fn drop_segment(&self, name: &str) -> Result<()>;

    /// The current members of an adopted segment.
    async fn segment_members(&self, name: &str) -> Result<Vec<CustomerId>>;

    /// Every (customer, segment) membership, by customer.
    async fn segment_memberships(&self) -> Result<Vec<(CustomerId, String)>>;

    /// Replaces an adopted segment's members and records the refresh's figures on it, in one transaction.
    async fn replace_segment_members(&self, refresh: SegmentRefresh) -> Result<()>;
}

/// API tokens, by hash.
#[async_trait]
pub trait Tokens: Send + Sync + 'static {
    /// Stores a new API token under a unique `name` with its `role` and `hash` (the SHA-256 of the token,
    /// hex; the token itself never reaches the store); returns its id. A name already taken, by a revoked
    /// token too, is refused with [`StoreError::Conflict`] and nothing is written.
    async fn create_token(&self, name: &str, role: &str, hash: &str) -> Result<i64>;

    /// Every API token, revoked ones included, oldest first; never their hashes.
    async fn list_tokens(&self) -> Result<Vec<TokenRecord>>;

    /// Revokes a token: from now on [`Tokens::token_by_hash`] no longer finds it. Returns the token as it now
    /// is; revoking a revoked token changes nothing (it keeps its revocation time). An unknown token is
    /// [`StoreError::NotFound`].
    async fn revoke_token(&self, token: TokenRef) -> Result<TokenRecord>;

    /// The token, not revoked, whose hash is `hash`.
    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>>;

    /// Records that token `id` authenticated a request at `at_ms`; a use within a minute of the recorded
    /// one writes nothing (the time is kept to the minute, so requests do not each cost a write).
    async fn touch_token(&self, id: i64, at_ms: i64) -> Result<()>;
}

/// Flows' approval queue, their recorded decisions, and generated copy with its LLM usage.
#[async_trait]
pub trait Approvals: Send + Sync + 'static {
    /// Approval items matching `filter`, oldest first.
    async fn list_approvals(&self, filter: ApprovalFilter) -> Result<Vec<ApprovalRecord>>;

    /// Approves or rejects items, in one transaction, attributing the decision to `by`; returns each item's
    /// result (for [`ApprovalTarget::AllPending`], the items decided). An approved item's actions enter the
    /// outbox as ordinary items of its customer (in the item's order, after what the customer already has
    /// pending); a pending item past its expiry at `now_ms` is expired instead and never sent. Each
    /// transition is audited (stage `approval`) under the item's trace, and a trace with nothing left
    /// pending gets its terminal state.
    async fn decide_approvals(
        &self,
        target: ApprovalTarget,
        decision: ApprovalDecision,
        by: &str,
        reason: Option<String>,
        now_ms: i64,
    ) -> Result<Vec<(i64, DecideResult)>>;

    /// Replaces the actions (a JSON array as [`NewApproval::actions_json`]) of items that are still
    /// pending, in one transaction; decided items are left as they are. Returns how many were replaced.
    /// For an approval that brings an action up to date (a profile sync with the scores of now).
    async fn replace_approval_actions(&self, updates: Vec<(i64, String)>) -> Result<usize>;

    /// Stores generated copy in one transaction: the filled actions of outbox items and the filled actions (a
    /// JSON array as [`NewApproval::actions_json`]) of approval items, each only while the item is pending
    /// and its stored action(s) still hold a pending copy request (copy once stored is never replaced, so a
    /// retry sends what the first attempt sent and a person approves what they saw), the generations' audit
    /// records (under their deliveries' traces), and the month's token use. Returns how many items were
    /// replaced.
    async fn store_generated_copy(&self, fill: CopyFill) -> Result<CopyStored>;

    /// Generated copy's use of the LLM in `month` (`2026-12`, UTC); zeros for a month without any.
    async fn llm_usage(&self, month: &str) -> Result<LlmUsage>;

    /// Pending approval items whose actions still hold a pending copy request
    /// ([`nudge_model::COPY_REQUEST_PROPERTY`]), oldest first, at most `limit`.
    async fn approvals_awaiting_copy(&self, limit: usize) -> Result<Vec<ApprovalRecord>>;

    /// Expires every pending item whose expiry is at or before `now_ms` (audited, settling traces like a
    /// rejection); returns how many.
    async fn expire_approvals(&self, now_ms: i64) -> Result<usize>;

    /// The recorded decisions of `flow` made at or after `since_ms` and before `until_ms`, oldest first.
    async fn flow_decisions(&self, flow: &str, since_ms: i64, until_ms: i64) -> Result<Vec<FlowDecision>>;

    /// How many decisions of `flow` went through approval (items of any status): what `approval.first_n`
    /// counts.
    async fn approval_count(&self, flow: &str) -> Result<u64>;
}

/// The bandit's offer log: offers made, and their settlement.
#[async_trait]
pub trait OfferLog: Send + Sync + 'static {
    /// Settles at zero every open offer whose window ended before `now_ms`; returns how many.
    async fn expire_offers(&self, now_ms: i64) -> Result<u64>;

    /// Settled offers with `settle_seq` above `after`, in settlement order, at most `limit`.
    async fn settled_offers_after(&self, after: i64, limit: usize) -> Result<Vec<LoggedOffer>>;

    /// Every offer `flow` made (open and settled), oldest first.
    async fn offers_of_flow(&self, flow: &str) -> Result<Vec<LoggedOffer>>;
}

/// Privacy jobs: erasure and export.
#[async_trait]
pub trait Privacy: Send + Sync + 'static {
    /// Records a privacy job outside processing (the CLI, the API) in one transaction; for an erasure, the
    /// person is removed from `nudge.db` in that same transaction, as when a delivery carries the request
    /// ([`ProcessOutcome::privacy`]). Returns the job's id.
    async fn submit_privacy_job(&self, job: NewPrivacyJob) -> Result<i64>;

    /// What erasing these customers (and whoever is stored under `email`) would remove; changes nothing.
    async fn preview_erasure(
        &self,
        customers: Vec<CustomerId>,
        email: Option<String>,
    ) -> Result<ErasurePreview>;

    /// Privacy jobs, newest first: only unfinished ones (with their identifiers, for the worker), or all,
    /// or those naming `pseudonym`.
    async fn privacy_jobs(&self, pending_only: bool, pseudonym: Option<String>) -> Result<Vec<PrivacyJob>>;

    /// Removes an erasure's deliveries from the ingest log (by the traces recorded with the job; a
    /// schedule chunk naming other customers too keeps them and loses only this person), overwriting the
    /// freed space, and marks the job's log step done. Safe to repeat. Returns how many deliveries went.
    async fn erase_from_log(&self, job_id: i64) -> Result<u64>;

    /// Records where one destination's deletion request of job `job_id` stands (creating the row if
    /// needed).
    async fn record_erasure_destination(&self, job_id: i64, d: ErasureDestination) -> Result<()>;

    /// Finishes a job: its identifiers and trace list are removed (overwritten), `summary` is merged into
    /// its counts, and it is marked done. For an erasure, every destination's request must be terminal
    /// and the log step done, or nothing is written ([`StoreError::Conflict`]).
    async fn finish_privacy_job(&self, job_id: i64, summary: serde_json::Value) -> Result<()>;

    /// Everything stored under these customer keys, for an export.
    async fn export_customer(&self, customers: Vec<CustomerId>) -> Result<CustomerExport>;
}

/// Retention: finished work and old audit records removed in bounded steps (see [`PruneRequest`]).
#[async_trait]
pub trait Retention: Send + Sync + 'static {
    /// Removes what `r` names, oldest first, at most `r.limit` rows of each kind, each kind in a
    /// transaction of its own; call again while [`Pruned::more_than`] the limit.
    async fn prune(&self, r: PruneRequest) -> Result<Pruned>;
}
