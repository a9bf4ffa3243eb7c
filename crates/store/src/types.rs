//! Plain data that crosses the storage port.

use nudge_model::{AuditRecord, CustomerId, TerminalState, TraceId};
use serde::{Deserialize, Serialize};

/// An inbound delivery to commit on the ack path.
#[derive(Debug, Clone, PartialEq)]
pub struct NewDelivery {
    pub trace_id: TraceId,
    /// `shopify`, or `timer` for deliveries the pipeline makes itself.
    pub source: String,
    pub topic: String,
    pub shop: Option<String>,
    pub webhook_id: Option<String>,
    pub event_id: Option<String>,
    pub received_at_ms: i64,
    /// Headers as JSON, secrets already removed by the caller.
    pub headers_json: String,
    pub body: Vec<u8>,
    /// Keys that make a later delivery a duplicate of this one (webhook id, event id, …).
    pub dedupe_keys: Vec<String>,
    /// On a cluster that processes by partition: the partition this delivery is processed in, when the
    /// node that acknowledges it knows it (a webhook naming a customer); `None` leaves it to the leader's
    /// routing. Ignored by the embedded store.
    pub part: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CommitResult {
    /// Durably stored with this processing sequence number.
    Committed { seq: i64 },
    /// A dedupe key was seen already; nothing was stored.
    Duplicate { original: TraceId, key: String },
}

/// A committed delivery as the processing worker sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredDelivery {
    pub seq: i64,
    pub trace_id: TraceId,
    pub source: String,
    pub topic: String,
    pub shop: Option<String>,
    pub webhook_id: Option<String>,
    pub received_at_ms: i64,
    /// Headers as committed (secrets removed), for the audit trail.
    pub headers_json: String,
    pub body: Vec<u8>,
}

/// A customer's state as the store keeps it: bytes in an encoding the state crate owns (opaque here).
/// States written before states were bytes read back as their JSON text's bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredState {
    pub customer: CustomerId,
    pub email: Option<String>,
    pub state: Vec<u8>,
}

/// What processing does to a delivery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Processed,
    Quarantined,
}

/// A timer to set (or move) for an open checkout.
#[derive(Debug, Clone, PartialEq)]
pub struct TimerSpec {
    pub checkout_token: String,
    pub cart_token: Option<String>,
    pub customer: CustomerId,
    pub due_at_ms: i64,
    /// The body of the delivery the timer fires (a canonical event as JSON).
    pub payload_json: String,
    pub origin_trace: TraceId,
}

/// An action to enqueue for a destination.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOutboxItem {
    pub trace_id: TraceId,
    pub customer: CustomerId,
    pub destination: String,
    pub action_json: String,
    /// Microseconds since the epoch when the causing delivery was received, for event→push latency.
    pub origin_us: i64,
}

/// Everything one processed delivery changes, committed atomically with the rest of its batch.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct ProcessOutcome {
    pub seq: i64,
    pub trace_id: Option<TraceId>,
    pub status: Option<DeliveryStatus>,
    pub status_reason: Option<String>,
    pub states: Vec<StoredState>,
    pub audit: Vec<AuditRecord>,
    pub outbox: Vec<NewOutboxItem>,
    pub set_timers: Vec<TimerSpec>,
    /// Cancel timers by checkout token or cart token.
    pub cancel_timers: Vec<String>,
    /// Decisions that wait for a person to approve them, instead of outbox items (see [`NewApproval`]).
    pub approvals: Vec<NewApproval>,
    /// Set when the trace ends here (nothing was enqueued and nothing waits for approval).
    pub terminal: Option<TerminalState>,
    /// Decisions of measured flows, for the shadow and lift reports (see [`FlowDecision`]).
    pub decisions: Vec<FlowDecision>,
    /// Reads from a platform's API this delivery needs (a thin notification); the trace stays open until
    /// each is settled.
    pub fetch_jobs: Vec<NewFetchJob>,
    /// A privacy request this delivery carried: an erasure runs in this commit (see [`NewPrivacyJob`]).
    pub privacy: Option<NewPrivacyJob>,
    /// Aliases this delivery stitched to a customer (written or re-pointed in this commit).
    pub aliases: Vec<NewAlias>,
    /// States removed in this commit: provisional customers merged into a known one.
    pub deleted_states: Vec<CustomerId>,
    /// Offers `choose_offer` actions made (the offer log).
    pub offers: Vec<NewOffer>,
    /// Orders that settle open offers.
    pub offer_settlements: Vec<OfferSettlement>,
    /// Catalogue records the delivery carried; each replaces the stored one unless that one is newer.
    pub products: Vec<StoredProduct>,
    /// The stored states this outcome's batch was computed from, for the customers it writes or removes:
    /// where several nodes process (each its partitions), a customer stitched to another id can be written
    /// by two of them, so the commit is refused ([`crate::StoreError::Conflict`]) unless each state is still
    /// the one read. A store with a single processor may ignore them. Empty: unconditional.
    pub expected_states: Vec<ExpectedState>,
    /// What each id the batch resolved or linked pointed at through the aliases when read (`None`: no
    /// alias): refused the same way if another node re-pointed one meanwhile (a customer identified while
    /// this batch wrote their visitor id's state).
    pub expected_aliases: Vec<(String, Option<CustomerId>)>,
}

/// A state as a processing batch read it: the stored bytes, or `None` when the customer had no state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExpectedState {
    pub customer: CustomerId,
    pub state: Option<Vec<u8>>,
}

/// A catalogue record: the newest version of a product by its platform's `updated_at`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredProduct {
    /// The product id as line items carry it.
    pub id: String,
    /// The source that sent it (`shopify`, `bigcommerce`, …).
    pub source: String,
    pub updated_at_ms: i64,
    /// The canonical product (`nudge_model::Product`) as JSON.
    pub record: String,
}

/// An alias to write: another id (`anon:…`, `segment:…`, `email:<digest>`, `phone:<digest>`) of `customer`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewAlias {
    pub alias: String,
    pub customer: CustomerId,
    pub at_ms: i64,
    pub trace_id: Option<TraceId>,
}

/// A stored alias.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AliasRecord {
    pub alias: String,
    pub customer: CustomerId,
    pub at_ms: i64,
    pub trace_id: Option<TraceId>,
}

/// A fetch job to store with its notification's processing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewFetchJob {
    pub trace_id: TraceId,
    /// The source whose fetcher runs it (`bigcommerce`).
    pub source: String,
    /// The source's description of the read, as JSON; opaque to the store.
    pub job: String,
    pub due_at_ms: i64,
}

/// A stored fetch job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchJobRecord {
    pub id: i64,
    pub trace_id: TraceId,
    pub source: String,
    pub job: String,
    /// `pending`, `done` or `dead`.
    pub status: String,
    pub attempts: u32,
    pub next_attempt_at_ms: i64,
    pub last_error: Option<String>,
}

/// How one attempt at a fetch job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchSettle {
    /// Its answer is committed (or the resource is gone): nothing more to do.
    Done,
    /// Try again at this time.
    RetryAt { at_ms: i64, reason: String },
    /// Give up; `requeue_fetch_jobs` makes it pending again.
    Dead { reason: String },
}

/// A fetch job's settlement, with the audit records and the terminal state of its trace (a gone resource,
/// a dead letter) committed in the same transaction.
#[derive(Debug, Clone, PartialEq)]
pub struct FetchSettlement {
    pub id: i64,
    pub outcome: FetchSettle,
    pub audit: Vec<AuditRecord>,
    pub terminal: Option<TerminalState>,
    pub at_ms: i64,
}

/// One flow's decision for one customer, recorded for the reports when the flow has a baseline rule or a
/// holdout group.
#[derive(Debug, Clone, PartialEq)]
pub struct FlowDecision {
    pub flow: String,
    pub flow_version: String,
    pub customer: CustomerId,
    pub at_ms: i64,
    /// The decision's status as the policy names it (`live`, `held_out`, …).
    pub status: String,
    /// Whether the flow's condition held.
    pub matched: bool,
    /// The baseline rule's verdict; `None` without a baseline.
    pub baseline: Option<bool>,
    pub trace_id: TraceId,
    /// The offer arm a `choose_offer` action chose, when the flow has one and acted.
    pub arm: Option<String>,
}

/// An offer a `choose_offer` action made, written to the offer log in the processing commit.
#[derive(Debug, Clone, PartialEq)]
pub struct NewOffer {
    /// Stable: the trace and the flow (`<trace>:<flow>`), so reprocessing a delivery writes it once.
    pub id: String,
    pub flow: String,
    pub customer: CustomerId,
    pub arm: String,
    /// The probability the policy had of choosing this arm.
    pub propensity: f64,
    /// Chosen by the uniform-random holdout.
    pub explored: bool,
    /// The decision's context features.
    pub context: Vec<f64>,
    pub decided_at_ms: i64,
    /// An order after this settles nothing; the offer settles at zero once it has passed.
    pub window_end_ms: i64,
}

/// An order that settles a customer's open offers: every unsettled offer of the customer whose window
/// holds `order_at_ms` takes `value`.
#[derive(Debug, Clone, PartialEq)]
pub struct OfferSettlement {
    pub customer: CustomerId,
    pub order_at_ms: i64,
    /// The order's value (before the arm's cost, which the learner subtracts).
    pub value: f64,
}

/// A row of the offer log.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedOffer {
    pub id: String,
    pub flow: String,
    pub customer: CustomerId,
    pub arm: String,
    pub propensity: f64,
    pub explored: bool,
    pub context: Vec<f64>,
    pub decided_at_ms: i64,
    pub window_end_ms: i64,
    /// The settling order's value (0 when the window passed without one); `None` while open.
    pub outcome_value: Option<f64>,
    pub settled_at_ms: Option<i64>,
    /// The order of settlements (`None` while open).
    pub settle_seq: Option<i64>,
}

/// A decision whose actions wait for approval: approved, they enter the outbox as ordinary items of the
/// customer; rejected or expired, they are never sent. A trace with a pending approval has no terminal state
/// yet: it settles once nothing of it is pending (outbox items or approvals).
#[derive(Debug, Clone, PartialEq)]
pub struct NewApproval {
    pub trace_id: TraceId,
    pub flow: String,
    pub flow_version: String,
    pub customer: CustomerId,
    /// JSON array of `{"destination": …, "action": …}`, the actions as the caller serialises them.
    pub actions_json: String,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
}

/// Where an approval item is in its lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalStatus {
    Pending,
    Approved,
    Rejected,
    Expired,
}

impl ApprovalStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ApprovalStatus::Pending => "pending",
            ApprovalStatus::Approved => "approved",
            ApprovalStatus::Rejected => "rejected",
            ApprovalStatus::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => ApprovalStatus::Pending,
            "approved" => ApprovalStatus::Approved,
            "rejected" => ApprovalStatus::Rejected,
            "expired" => ApprovalStatus::Expired,
            _ => return None,
        })
    }
}

/// Where a `schedule` flow's firing stands. A firing sends every customer, in key order, in chunks: each
/// chunk is one delivery in the ingest log (source `schedule`) under a dedupe key naming the flow, the
/// occurrence and the customer the chunk starts after, so committing a chunk again is a duplicate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScheduleRun {
    pub flow: String,
    /// The cron expression the occurrence belongs to.
    pub schedule: String,
    /// The occurrence (ms since the epoch) being fired; when `done`, the last one fired (or, for a flow
    /// first seen, the instant it was first seen: occurrences before it are not owed).
    pub fire_at_ms: i64,
    /// The last customer whose chunk is in the ingest log; `None` before the first chunk.
    pub cursor: Option<CustomerId>,
    /// The last customer of the chunk being committed: set before the commit and cleared after it, so a
    /// restart in between commits the same customers again (a duplicate if the first commit landed).
    pub pending_through: Option<CustomerId>,
    /// Every customer of the occurrence is in the ingest log.
    pub done: bool,
}

/// A batch push to one destination (`nudge push`), in progress or the last one: which customers, how far
/// it got and what happened so far.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PushRun {
    pub destination: String,
    /// `all`, or `segment:<name>`.
    pub selector: String,
    pub started_at_ms: i64,
    pub updated_at_ms: i64,
    /// The last customer whose page is settled; `None` before the first page.
    pub cursor: Option<CustomerId>,
    /// Profiles the destination accepted.
    pub pushed: u64,
    /// Profiles the destination refused for good (the reason is in the run's output and logs).
    pub rejected: u64,
    /// Profiles still failing at the end of their page, handed to the outbox to retry.
    pub deferred: u64,
    pub done: bool,
}

/// An approval item as stored.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ApprovalRecord {
    pub id: i64,
    pub trace_id: TraceId,
    pub flow: String,
    pub flow_version: String,
    pub customer: CustomerId,
    /// The actions, as [`NewApproval::actions_json`] gave them.
    pub actions: serde_json::Value,
    pub created_at_ms: i64,
    pub expires_at_ms: i64,
    pub status: ApprovalStatus,
    pub decided_at_ms: Option<i64>,
    /// Who decided (`token:<name>`, `cli:<user>`), or `system` for an expiry.
    pub decided_by: Option<String>,
    pub reason: Option<String>,
}

/// Which approval items [`crate::Approvals::list_approvals`] returns, oldest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ApprovalFilter {
    pub flow: Option<String>,
    pub status: Option<ApprovalStatus>,
    /// At most this many (0: no limit).
    pub limit: usize,
}

/// What a person decides about waiting items.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApprovalDecision {
    Approve,
    Reject,
}

/// Which items [`crate::Approvals::decide_approvals`] decides.
#[derive(Debug, Clone, PartialEq)]
pub enum ApprovalTarget {
    /// These items, by id.
    Ids(Vec<i64>),
    /// Every pending item (of one flow, or of all).
    AllPending { flow: Option<String> },
}

/// What deciding one item did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "result", content = "status", rename_all = "snake_case")]
pub enum DecideResult {
    /// Decided now (approved: its actions are in the outbox).
    Decided,
    NotFound,
    /// It was decided before (approved or rejected); nothing changed.
    AlreadyDecided(ApprovalStatus),
    /// It had expired (now, or before); nothing is sent.
    Expired,
}

#[derive(Debug, Clone, PartialEq)]
pub struct OutboxItem {
    pub id: i64,
    pub trace_id: TraceId,
    pub customer: CustomerId,
    pub destination: String,
    pub action_json: String,
    pub attempts: u32,
    /// Microseconds since the epoch when the causing delivery was received, for event→push latency.
    pub origin_us: i64,
}

/// A node's share of the delivery partitions: the customers whose partition ([`partition_of`]) is one of
/// `parts`, out of `of` partitions in all. Every customer is in exactly one partition, and one node at a time
/// delivers a partition, so each customer's pushes stay in order when several nodes deliver.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Partitions {
    pub of: u32,
    pub parts: Vec<u32>,
}

impl Partitions {
    /// True when `customer` is in one of these partitions.
    pub fn contains(&self, customer: &str) -> bool {
        self.parts.contains(&partition_of(customer, self.of))
    }
}

/// The delivery partition of a customer key, out of `of` (at least 1): the first four bytes of the key's MD5,
/// read as a big-endian unsigned number, modulo `of`. PostgreSQL computes the same number in SQL
/// (`('x' || left(md5(key), 8))::bit(32)::bigint % of`), so a node's share can be selected in the query;
/// the function never changes, or stored work would move between partitions.
pub fn partition_of(customer: &str, of: u32) -> u32 {
    use md5::Digest;
    let d = md5::Md5::digest(customer.as_bytes());
    u32::from_be_bytes([d[0], d[1], d[2], d[3]]) % of.max(1)
}

/// The new status of an outbox item after an attempt.
#[derive(Debug, Clone, PartialEq)]
pub enum AttemptResult {
    Delivered,
    /// Try again at this time.
    RetryAt(i64),
    Rejected(String),
    DeadLettered(String),
    /// Settled without being sent: a profile sync folded into a newer pending sync of the same customer and
    /// destination (the outbox item with this id), which went out in its place and was delivered. Terminal
    /// (status `coalesced`), counted as neither a failure nor a dead letter: its trace settles as delivered.
    Coalesced {
        into: i64,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct AttemptRecord {
    pub item_id: i64,
    pub trace_id: TraceId,
    pub result: AttemptResult,
    pub audit: AuditRecord,
    pub at_ms: i64,
}

/// One trace's audit trail.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct TraceView {
    pub trace_id: TraceId,
    pub records: Vec<AuditRecord>,
    pub terminal: Option<TerminalState>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct StoreStats {
    /// Deliveries received, counted by trace: a fetched answer is stored under its notification's trace
    /// and counts with it.
    pub deliveries: u64,
    pub pending_deliveries: u64,
    /// Fetch jobs waiting to run (or to be retried), and dead-lettered ones.
    pub fetch_jobs_pending: u64,
    pub fetch_jobs_dead: u64,
    pub quarantined: u64,
    pub customers: u64,
    pub outbox_pending: u64,
    pub outbox_delivered: u64,
    pub outbox_rejected: u64,
    pub outbox_dead: u64,
    /// Profile syncs settled by folding them into a newer sync of the same customer (never sent alone).
    pub outbox_coalesced: u64,
    pub timers: u64,
    pub terminal_by_state: Vec<(String, u64)>,
    /// The outbox per destination, by name: each destination's backlog and outcomes apart.
    pub outbox_by_destination: Vec<DestinationCounts>,
    /// True when some counts of history are estimates: on PostgreSQL, a table of more rows than
    /// [`crate::postgres::PgConfig::exact_stats_below`] has its deliveries, customers, delivered, rejected and
    /// coalesced items and terminal states estimated from a sample of its pages. What waits (pending
    /// deliveries and items, retrying, dead letters, quarantined, timers, fetch jobs) is always counted
    /// exactly.
    #[serde(default)]
    pub estimated: bool,
}

/// One delivery of the log as the console's time series count it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeliveryTick {
    pub seq: i64,
    pub source: String,
    pub topic: String,
    pub received_at_ms: i64,
}

/// One destination's outbox items by status.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DestinationCounts {
    pub destination: String,
    pub pending: u64,
    pub delivered: u64,
    pub rejected: u64,
    pub dead: u64,
    /// Profile syncs folded into a newer sync of the same customer instead of being sent.
    #[serde(default)]
    pub coalesced: u64,
    /// Pending items that have failed at least once (waiting for a retry).
    pub retrying: u64,
    /// The newest failure reason of an item not delivered (retrying, rejected or dead), if any.
    pub last_error: Option<String>,
}

/// One imported history row. Amount stays an exact decimal string.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImportedTransaction {
    pub customer_id: String,
    pub order_id: String,
    /// Days since 1970-01-01.
    pub day: i32,
    pub amount: String,
    pub source: String,
}

/// A fitted model version in the registry. `body` is the JSON the caller owns (parameters, training window,
/// data digest, convergence, holdout metrics).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelVersion {
    pub id: String,
    pub family: String,
    pub created_at_ms: i64,
    pub active: bool,
    pub body: serde_json::Value,
}

/// The registry families that are decision models, each its own kind (see [`model_kind`]).
pub const DECISION_FAMILIES: [&str; 5] = ["propensity", "bandit", "send_time", "cold_start", "recs"];

/// The registry kind of a family: one version of each kind is active at a time. The BTYD families
/// (`bgnbd`, `mbgnbd`, `pareto_nbd`) share the kind `btyd`; each decision family is a kind of its own.
pub fn model_kind(family: &str) -> &str {
    if DECISION_FAMILIES.contains(&family) { family } else { "btyd" }
}

impl ModelVersion {
    /// The version's registry kind ([`model_kind`] of its family).
    pub fn kind(&self) -> &str {
        model_kind(&self.family)
    }
}

/// An API token as the store keeps it, without its hash: nothing read back from the store can be used to
/// authenticate. The token itself is never stored; its SHA-256 (hex) is, and is only ever compared.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    pub id: i64,
    /// Unique, also among revoked tokens, so the audit trail's attributions stay unambiguous.
    pub name: String,
    /// The role's name as the caller defines it (`viewer`, `admin`, …); the store does not interpret it.
    pub role: String,
    pub created_at_ms: i64,
    pub revoked_at_ms: Option<i64>,
    /// When the token last authenticated a request, to the minute (see [`crate::Tokens::touch_token`]).
    pub last_used_at_ms: Option<i64>,
}

/// Which token [`crate::Tokens::revoke_token`] revokes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRef {
    Name(String),
    Id(i64),
}

impl std::fmt::Display for TokenRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenRef::Name(n) => write!(f, "named `{n}`"),
            TokenRef::Id(id) => write!(f, "with id {id}"),
        }
    }
}

/// Which dead-lettered outbox items [`crate::Outbox::requeue_dead_letters`] puts back: every condition given
/// must hold (none given: all of them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DeadLetterFilter {
    /// Only this delivery's items.
    pub trace: Option<TraceId>,
    /// Only items for this destination (`klaviyo`, `webhook:crm`, …).
    pub destination: Option<String>,
    /// Only items enqueued at or after this instant (ms since the epoch).
    pub since_ms: Option<i64>,
}

impl DeadLetterFilter {
    /// Every dead letter of one trace.
    pub fn trace(trace: TraceId) -> Self {
        DeadLetterFilter { trace: Some(trace), ..Default::default() }
    }
}

/// One dead-lettered outbox item, as [`crate::Outbox::dead_letters`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeadLetterItem {
    /// The outbox item's id: newer items have higher ids.
    pub id: i64,
    pub trace_id: TraceId,
    pub customer_id: String,
    pub destination: String,
    /// The action as stored (JSON the destination's caller owns).
    pub action_json: String,
    pub attempts: u32,
    /// Why the last attempt failed.
    pub last_error: Option<String>,
    /// When the item was enqueued (ms since the epoch).
    pub created_at_ms: i64,
}

/// One quarantined delivery, as [`crate::DeliveryLog::quarantined`] lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QuarantinedItem {
    /// The delivery's place in the ingest log: newer deliveries have higher numbers.
    pub seq: i64,
    pub trace_id: TraceId,
    pub source: String,
    pub topic: String,
    pub received_at_ms: i64,
    /// Why it was quarantined.
    pub reason: Option<String>,
}

/// What a privacy job does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PrivacyJobKind {
    /// Remove the person from nudge's own files, then ask every destination holding them to delete them.
    Erase,
    /// Gather everything nudge holds about the person into one file.
    Export,
}

impl PrivacyJobKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PrivacyJobKind::Erase => "erase",
            PrivacyJobKind::Export => "export",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "erase" => Some(PrivacyJobKind::Erase),
            "export" => Some(PrivacyJobKind::Export),
            _ => None,
        }
    }
}

/// A privacy request to act on. For an erasure, the store removes the person from `nudge.db` in the same
/// transaction that records the job (their state, outbox items of any status, timers, approvals, flow
/// decisions, imported transactions and audit records; the reasons of their traces' terminal states),
/// remembers their traces so [`crate::Privacy::erase_from_log`] can remove the deliveries from the ingest
/// log, and records one pending request per destination in `destinations`. The identifiers are kept only
/// until the job is finished ([`crate::Privacy::finish_privacy_job`]); the pseudonym stays.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPrivacyJob {
    pub kind: PrivacyJobKind,
    /// Every key the person's data may be stored under (their platform id, their guest key).
    pub customers: Vec<CustomerId>,
    pub email: Option<String>,
    pub phone: Option<String>,
    /// The keyed pseudonym the job's lasting records name the person by.
    pub pseudonym: String,
    /// The platform's reference for the request, if it gave one.
    pub reference: Option<String>,
    /// Who asked: `shopify:customers/redact`, `cli`, `token:<name>`.
    pub requested_by: String,
    /// The request's own trace (the delivery that carried it, or a fresh one).
    pub trace_id: TraceId,
    pub at_ms: i64,
    /// The destinations that may hold the person, besides those the outbox shows they were sent to (which
    /// the store adds itself): for an erasure, the ones a batch push reached, which the outbox does not
    /// record per person.
    pub destinations: Vec<String>,
}

/// Where one destination's deletion request stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErasureStatus {
    /// Not yet accepted by the destination (never sent, or failed in a way worth repeating).
    Pending,
    /// The destination accepted the deletion.
    Done,
    /// The destination refused it for good; the detail says why.
    Failed,
    /// The destination is no longer configured, or its connector has no deletion endpoint.
    Skipped,
}

impl ErasureStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ErasureStatus::Pending => "pending",
            ErasureStatus::Done => "done",
            ErasureStatus::Failed => "failed",
            ErasureStatus::Skipped => "skipped",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "pending" => ErasureStatus::Pending,
            "done" => ErasureStatus::Done,
            "failed" => ErasureStatus::Failed,
            "skipped" => ErasureStatus::Skipped,
            _ => return None,
        })
    }

    pub fn is_terminal(self) -> bool {
        self != ErasureStatus::Pending
    }
}

/// One destination's deletion request of an erasure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ErasureDestination {
    pub destination: String,
    pub status: ErasureStatus,
    pub attempts: u32,
    /// When a pending request is next tried (ms since the epoch).
    pub next_attempt_at_ms: i64,
    /// The last answer or failure, without personal data.
    pub detail: Option<String>,
    pub updated_at_ms: i64,
}

/// A privacy job as stored. The identifiers (`customers`, `email`, `phone`) are present only while the
/// job is pending; once finished only the pseudonym and the counts remain.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PrivacyJob {
    pub id: i64,
    pub kind: PrivacyJobKind,
    pub pseudonym: String,
    pub trace_id: TraceId,
    pub requested_by: String,
    pub reference: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    /// Everything nudge itself had to do is done, and every destination's request is terminal.
    pub done: bool,
    /// The person's deliveries are gone from the ingest log.
    pub log_erased: bool,
    #[serde(skip)]
    pub customers: Vec<CustomerId>,
    #[serde(skip)]
    pub email: Option<String>,
    #[serde(skip)]
    pub phone: Option<String>,
    /// What the erasure removed, by kind (`states`, `audit_records`, `outbox_items`, `deliveries`, …).
    pub summary: serde_json::Value,
    pub destinations: Vec<ErasureDestination>,
}

/// What an erasure of these customers would remove (`nudge privacy erase --dry-run`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ErasurePreview {
    pub states: u64,
    pub audit_records: u64,
    pub traces: u64,
    pub outbox_items: u64,
    pub timers: u64,
    pub approvals: u64,
    pub flow_decisions: u64,
    pub transactions: u64,
    /// Destinations the outbox shows the person was sent to.
    pub destinations: Vec<String>,
}

/// Everything nudge holds about one person, for an export. Only rows keyed by the person's keys.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct CustomerExport {
    pub customers: Vec<CustomerId>,
    /// Each key's state as the store keeps it (orders, checkouts, consent, flow history, scores'
    /// fingerprint): bytes in the state crate's encoding, which the export document holds decoded, as JSON.
    #[serde(skip)]
    pub states: Vec<Vec<u8>>,
    /// The audit trail about them (scores with their model versions, decisions, attempts), oldest first.
    pub audit: Vec<AuditRecord>,
    /// Their outbox items (pushes), any status: destination, action, status, attempts, last error.
    pub outbox: Vec<serde_json::Value>,
    pub approvals: Vec<ApprovalRecord>,
    pub flow_decisions: Vec<serde_json::Value>,
    pub timers: Vec<serde_json::Value>,
    pub transactions: Vec<ImportedTransaction>,
}

/// Generated copy to store ([`crate::Approvals::store_generated_copy`]).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CopyFill {
    /// Outbox items by id, each with its action (JSON) holding the copy.
    pub outbox: Vec<(i64, String)>,
    /// Approval items by id, each with its actions (a JSON array) holding the copy.
    pub approvals: Vec<(i64, String)>,
    /// One `copy_generated` record per generation, under the trace of the decision it belongs to.
    pub audit: Vec<nudge_model::AuditRecord>,
    /// Added to the month's usage.
    pub usage: Option<LlmUsage>,
}

/// What [`crate::Approvals::store_generated_copy`] replaced.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyStored {
    pub outbox: usize,
    pub approvals: usize,
}

/// Generated copy's use of the LLM in one calendar month (UTC).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LlmUsage {
    /// `2026-12`.
    pub month: String,
    pub tokens: u64,
    pub generations: u64,
    /// Generations that used the prompt's fallback copy.
    pub fallbacks: u64,
}

/// A stored segment discovery (`nudge segments discover`): what a refresh needs to place customers again
/// and the proposals as they were shown, as the caller's JSON (the store does not read it).
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentDiscoveryRecord {
    pub id: i64,
    pub created_at_ms: i64,
    pub body: serde_json::Value,
}

/// A list in a destination that follows an adopted segment's members.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SegmentList {
    pub destination: String,
    pub list_id: String,
}

/// A proposal a marketer adopted under a name, with what its refreshes found.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AdoptedSegment {
    pub name: String,
    pub discovery_id: i64,
    /// The proposal's index in its discovery (0-based).
    pub proposal: u32,
    pub adopted_at_ms: i64,
    /// Who adopted it (a token's name, or `cli`).
    pub adopted_by: String,
    pub lists: Vec<SegmentList>,
    pub members: u64,
    pub refreshed_at_ms: Option<i64>,
    pub refreshes: u64,
    /// Of the members before the last refresh, the share still members after it (`None` before a
    /// second membership exists).
    pub last_stability: Option<f64>,
    pub last_joined: u64,
    pub last_left: u64,
}

/// A refresh's new membership of one adopted segment.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentRefresh {
    pub segment: String,
    pub at_ms: i64,
    /// The members after the refresh (any order).
    pub members: Vec<CustomerId>,
    pub stability: Option<f64>,
    pub joined: u64,
    pub left: u64,
}

/// What one [`crate::Retention::prune`] call removes (each kind at most `limit` rows):
/// - with `work_before_ms`, finished work recorded before it: processed deliveries (the received bodies) and
///   the pushes of finished traces (delivered, rejected or coalesced outbox items). Pending work, quarantined
///   deliveries and dead letters stay, whatever their age: they wait for processing or for a person.
/// - with `audit_before_ms`, audit records made before it, and the terminal states of the traces whose
///   records went, when those ended before it too and nothing of the trace is held any more (no audit
///   record, no outbox item such as a dead letter, no quarantined delivery): what is still held keeps its
///   terminal state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PruneRequest {
    pub work_before_ms: Option<i64>,
    pub audit_before_ms: Option<i64>,
    pub limit: usize,
}

/// Rows removed by a prune, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Pruned {
    pub deliveries: u64,
    pub outbox: u64,
    pub audit: u64,
    pub terminal: u64,
}

impl Pruned {
    /// Whether some kind reached `limit` (there may be more to remove).
    pub fn more_than(&self, limit: usize) -> bool {
        let limit = limit as u64;
        self.deliveries >= limit || self.outbox >= limit || self.audit >= limit
    }

    pub fn add(&mut self, o: Pruned) {
        self.deliveries += o.deliveries;
        self.outbox += o.outbox;
        self.audit += o.audit;
        self.terminal += o.terminal;
    }
}
