//! The processing worker: committed deliveries → canonical events → customer state → scores → decision →
//! outbox, with the audit trail, committed atomically per batch.
//!
//! [`Pipeline::step`] processes one batch and is what tests drive; [`Pipeline::run`] loops it, woken by the
//! ack path. Processing is deterministic given the stored state, so a crash between a batch's reads and its
//! commit simply reprocesses the batch: nothing is half-applied and nothing is enqueued twice.

use crate::telemetry;
use nudge_decide::serve::DecisionModels;
use nudge_ingest::{Parsed, PrivacyRequest, StoredView};
use nudge_model::{
    AuditRecord, AuditStage, CheckoutAbandoned, CustomerId, Event, ScoreSet, TerminalState, Timestamp,
};
use nudge_policy::PolicyConfig;
use nudge_policy::flows::{DecideContext, FlowSet, Status, Trigger};
use nudge_scoring::{RulesScorer, Scorer};
use nudge_state::{Applied, CustomerState};
use nudge_store::{
    DeliveryStatus, FlowDecision, NewApproval, NewOutboxItem, PrivacyJobKind, ProcessOutcome, Store,
    StoreError, StoredDelivery, StoredState, TimerSpec,
};
use sha2::{Digest, Sha256};
use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// The scorers the pipeline uses: the active fitted model when there is one, rules otherwise; then the
/// decision families (propensity, send time, cold start), each its active version or its labelled rules.
pub struct Scoring {
    /// Replaced when a model version is activated; readers clone the `Arc` and never hold the lock long.
    primary: RwLock<Option<Arc<dyn Scorer>>>,
    rules: RulesScorer,
    decision: RwLock<DecisionModels>,
    /// The user's own models (`[[scoring.custom]]`), run after the built-in ones.
    custom: RwLock<Arc<nudge_custom::CustomModels>>,
    /// The recommendations served beside the scores (set once at boot; none in tests that do not).
    recs: std::sync::OnceLock<Arc<crate::recs::Recs>>,
    /// Each customer's adopted segments (`None` while no segment is adopted); replaced by each refresh.
    adopted: RwLock<Option<Arc<AdoptedMembership>>>,
}

/// Customer → the names of the adopted segments they belong to.
pub type AdoptedMembership = std::collections::HashMap<nudge_model::CustomerId, Vec<String>>;

impl Scoring {
    pub fn new(rules: RulesScorer) -> Self {
        Scoring {
            primary: RwLock::new(None),
            rules,
            decision: RwLock::new(DecisionModels::rules()),
            custom: RwLock::new(Arc::new(nudge_custom::CustomModels::empty())),
            recs: std::sync::OnceLock::new(),
            adopted: RwLock::new(None),
        }
    }

    /// Replaces the adopted segments' membership (`None`: no segment is adopted).
    pub fn set_adopted_segments(&self, membership: Option<Arc<AdoptedMembership>>) {
        *self.adopted.write().expect("scorer lock poisoned") = membership;
    }

    /// Replaces the user's own models (at boot).
    pub fn set_custom(&self, models: nudge_custom::CustomModels) {
        *self.custom.write().expect("scorer lock poisoned") = Arc::new(models);
    }

    /// The user's own models.
    pub fn custom(&self) -> Arc<nudge_custom::CustomModels> {
        self.custom.read().expect("scorer lock poisoned").clone()
    }

    /// Serves recommendations through `recs` from now on (once).
    pub fn set_recs(&self, recs: Arc<crate::recs::Recs>) {
        let _ = self.recs.set(recs);
    }

    /// The recommendations served, if set.
    pub fn recs(&self) -> Option<&Arc<crate::recs::Recs>> {
        self.recs.get()
    }

    pub fn set_primary(&self, scorer: Option<Arc<dyn Scorer>>) {
        *self.primary.write().expect("scorer lock poisoned") = scorer;
    }

    /// Replaces the decision families' models (on activation, or at boot).
    pub fn set_decision_models(&self, models: DecisionModels) {
        *self.decision.write().expect("scorer lock poisoned") = models;
    }

    /// Scores with the active model, falling back to rules when there is none or it fails (the second value
    /// says why the fallback was used), then adds the decision families' scores and labels.
    pub fn score(&self, state: &CustomerState, now: Timestamp) -> (ScoreSet, Option<String>) {
        let primary = self.primary.read().expect("scorer lock poisoned").clone();
        let (mut set, fallback_reason) = match primary.map(|p| p.score(state, now)) {
            Some(Ok(s)) => (s, None),
            Some(Err(e)) => {
                (self.rules.score(state, now).expect("the rules scorer is total"), Some(e.to_string()))
            }
            None => (
                self.rules.score(state, now).expect("the rules scorer is total"),
                Some("no active model version".to_string()),
            ),
        };
        let decision = self.decision.read().expect("scorer lock poisoned").clone();
        decision.score(state, now, &mut set);
        if let Some(recs) = self.recs.get() {
            recs.fill(state, now, &mut set);
        }
        if let Some(m) = self.adopted.read().expect("scorer lock poisoned").as_ref() {
            set.adopted_segments = Some(m.get(&state.customer).cloned().unwrap_or_default());
        }
        (set, fallback_reason)
    }
}

/// The running flow set, replaced as a whole when the flows are reloaded.
pub struct Flows {
    set: RwLock<Arc<FlowSet>>,
    /// Per flow, its decisions by status since the start (the console's flow list).
    counts: std::sync::Mutex<BTreeMap<String, BTreeMap<&'static str, u64>>>,
}

impl Flows {
    pub fn new(set: FlowSet) -> Self {
        Flows { set: RwLock::new(Arc::new(set)), counts: Default::default() }
    }

    /// The current set; decisions of one event use one set.
    pub fn current(&self) -> Arc<FlowSet> {
        self.set.read().expect("flows lock poisoned").clone()
    }

    /// Swaps in a new set (already checked).
    pub fn replace(&self, set: FlowSet) {
        *self.set.write().expect("flows lock poisoned") = Arc::new(set);
    }

    /// Counts one decision of `flow` (`status` as the policy names it), as `nudge_flow_decisions_total` does.
    pub fn count(&self, flow: &str, status: &'static str) {
        let mut counts = self.counts.lock().unwrap_or_else(|e| e.into_inner());
        match counts.get_mut(flow) {
            Some(by_status) => *by_status.entry(status).or_default() += 1,
            None => {
                counts.insert(flow.to_string(), BTreeMap::from([(status, 1)]));
            }
        }
    }

    /// Each flow's decisions by status since the start.
    pub fn counts(&self) -> BTreeMap<String, BTreeMap<&'static str, u64>> {
        self.counts.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

pub struct Pipeline {
    pub store: Arc<dyn Store>,
    pub scoring: Arc<Scoring>,
    pub policy: PolicyConfig,
    /// The flows that decide; each action names its destination.
    pub flows: Arc<Flows>,
    pub abandon_after: Duration,
    pub batch_size: usize,
    /// Per flow with `approval.first_n`, how many of its decisions went through approval, batches in flight
    /// included (loaded from the store when first needed; forgotten when processing recovers from an error).
    pub approval_counts: std::sync::Mutex<HashMap<String, u64>>,
    /// The commerce sources, whose parsers read stored deliveries back.
    pub sources: Arc<nudge_ingest::source::Registry>,
    /// How long storefront behaviour stays in a customer's state (`pipeline.browse_retention`).
    pub browse_retention: Duration,
    /// The offer flows' learners, fed from the offer log.
    pub offers: Arc<crate::offers::OfferLearning>,
    /// On a cluster whose nodes process by partition: the partitions this pipeline processes. `None`: every
    /// pending delivery (the embedded store, or a cluster whose leader processes).
    pub share: Option<ProcessingShare>,
    /// Where each delivery's event→processed latency (receipt to its batch's commit) is also kept, besides
    /// the `nudge_event_to_processed_seconds` histogram (the demo and benchmarks report it).
    pub processed_latency: Option<Arc<crate::telemetry::LatencySample>>,
}

/// The partitions of the log a node processes, on a cluster that processes by partition (see
/// [`crate::workers::deliver_share`]). Batches then read only deliveries routed to these partitions, and
/// each commit carries the states it was computed from, so a customer written meanwhile by another node
/// (through an id stitched to it) refuses the commit instead of being overwritten.
#[derive(Clone)]
pub struct ProcessingShare {
    pub pg: Arc<nudge_store::postgres::PgStore>,
    pub parts: Vec<u32>,
}

/// What a delivery's body turned into before state is touched.
enum Prepared {
    Events(Vec<Event>),
    Privacy(PrivacyRequest),
    Ignored(String),
    Quarantined(String),
    /// A thin notification: the read it needs is recorded as a durable fetch job, and the trace stays
    /// open until the fetch worker settles it.
    Fetch(nudge_ingest::FetchJob),
}

/// A processed batch whose commit has not landed yet.
struct Built {
    outcomes: Vec<ProcessOutcome>,
    /// The states the batch leaves behind, by customer: what the next batch must start from even before
    /// this one's commit lands.
    states: HashMap<CustomerId, CustomerState>,
    enqueued: usize,
    /// Customers an erasure in this batch removed (and no later delivery of the batch brought back), and
    /// provisional customers merged into a known one: the overlay must forget them.
    erased: Vec<CustomerId>,
    /// Aliases the batch stitched, for the next batch to resolve by before this one's commit lands.
    aliases: Vec<(String, CustomerId)>,
    /// The stored bytes of each state in `states`, as this batch's commit writes them.
    bytes: HashMap<CustomerId, Vec<u8>>,
    /// When each delivery of the batch was received (ms since the epoch), for the event→processed latency.
    received_ms: Vec<i64>,
    /// The batch's sequence numbers: the next read leaves them out while this commit is in flight.
    seqs: Vec<i64>,
}

/// States left by batches whose commits are in flight, each with the number of the batch that wrote it,
/// and their emails (the secondary key) as the store normalises them.
#[derive(Default)]
struct Overlay {
    states: HashMap<CustomerId, (CustomerState, u64)>,
    emails: HashMap<String, CustomerId>,
    /// Aliases written by batches in flight, with the batch's number.
    aliases: HashMap<String, (CustomerId, u64)>,
    /// The stored bytes of each state in `states` (what the next batch expects to find when it commits).
    bytes: HashMap<CustomerId, Vec<u8>>,
}

/// What batches in flight wrote for `keys`: taken from the overlay, and those keys removed from `keys`
/// (what is left is read from the store).
fn take_in_flight<K, V>(keys: &mut Vec<K>, in_flight: &HashMap<K, (V, u64)>) -> HashMap<K, V>
where
    K: std::hash::Hash + Eq + Clone,
    V: Clone,
{
    let mut found = HashMap::new();
    keys.retain(|k| match in_flight.get(k) {
        Some((v, _)) => {
            found.insert(k.clone(), v.clone());
            false
        }
        None => true,
    });
    found
}

fn email_key(email: &str) -> String {
    email.trim().to_lowercase()
}

impl Overlay {
    fn insert(
        &mut self,
        customer: CustomerId,
        state: CustomerState,
        bytes: Option<Vec<u8>>,
        generation: u64,
    ) {
        if let Some(e) = state.email.as_ref().filter(|_| keeps_email(&customer)) {
            self.emails.insert(email_key(e), customer.clone());
        }
        match bytes {
            Some(b) => self.bytes.insert(customer.clone(), b),
            None => self.bytes.remove(&customer),
        };
        self.states.insert(customer, (state, generation));
    }

    fn customer_by_email(&self, email: &str) -> Option<CustomerId> {
        let key = email_key(email);
        let c = self.emails.get(&key)?;
        // Only while that customer still has this email.
        let (s, _) = self.states.get(c)?;
        (s.email.as_deref().map(email_key) == Some(key)).then(|| c.clone())
    }

    /// Forgets a customer an erasure removed, so the next batch starts them from nothing.
    fn forget(&mut self, customer: &CustomerId) {
        self.states.remove(customer);
        self.bytes.remove(customer);
        let states = &self.states;
        self.emails.retain(|_, c| states.contains_key(c));
        self.aliases.retain(|a, (c, _)| c != customer && *a != customer.to_string());
    }

    /// Forgets what batch `generation` wrote, now that it is in the store (later batches' states stay).
    fn landed(&mut self, generation: u64) {
        self.states.retain(|_, (_, g)| *g != generation);
        let states = &self.states;
        self.emails.retain(|_, c| states.contains_key(c));
        self.bytes.retain(|c, _| states.contains_key(c));
        self.aliases.retain(|_, (_, g)| *g != generation);
    }
}

/// A store write handed over and not yet answered. Made by polling the write once, which hands the work to
/// the store's writer there and then, so writes started one after another reach the writer in that order
/// (a spawned task could first run after a later one). Used by the processing and delivery workers.
pub(crate) struct Submitted {
    future: std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), StoreError>> + Send>>,
    /// The answer, if the first poll already had it.
    early: Option<Result<(), StoreError>>,
}

impl Submitted {
    pub(crate) async fn start(
        write: impl std::future::Future<Output = Result<(), StoreError>> + Send + 'static,
    ) -> Self {
        let mut future = Box::pin(write);
        let early = match futures::poll!(future.as_mut()) {
            std::task::Poll::Ready(r) => Some(r),
            std::task::Poll::Pending => None,
        };
        Submitted { future, early }
    }

    /// The store's answer.
    pub(crate) async fn answer(self) -> Result<(), StoreError> {
        match self.early {
            Some(r) => r,
            None => self.future.await,
        }
    }
}

/// A batch's commit, running while the next batch is prepared.
struct InFlight {
    commit: Submitted,
    generation: u64,
    enqueued: usize,
    received_ms: Vec<i64>,
    seqs: Vec<i64>,
}

/// Every this many batches in a row the processor lets its commits land before reading on, so deliveries
/// put back below the read cursor (`nudge replay`) are picked up under sustained load too.
const SYNC_EVERY_BATCHES: u32 = 64;

impl Pipeline {
    /// The partition (of `of`) a delivery is processed in, on a cluster that processes by partition (see
    /// [`route_key`]); a delivery that names no customer (a product update, an ignored topic, a notification
    /// to fetch) is spread by its seq.
    pub fn route_of(&self, d: &StoredDelivery, of: u32) -> u32 {
        match route_key(&self.sources, d) {
            Some(c) => nudge_store::partition_of(&c, of),
            None => d.seq.rem_euclid(i64::from(of.max(1))) as u32,
        }
    }

    /// The next batch of pending deliveries (all of them, or this node's partitions') besides those of the
    /// batch in flight (`in_flight`).
    async fn pending_besides(&self, in_flight: &[i64]) -> Result<Vec<StoredDelivery>, StoreError> {
        match &self.share {
            None => self.store.pending_deliveries_besides(in_flight, self.batch_size).await,
            Some(share) => share.pg.pending_deliveries_in(&share.parts, in_flight, self.batch_size).await,
        }
    }

    /// Processes one batch of pending deliveries and waits for its commit; returns (deliveries processed,
    /// outbox items enqueued).
    pub async fn step(&self) -> Result<(usize, usize), StoreError> {
        let batch = self.pending_besides(&[]).await?;
        if batch.is_empty() {
            return Ok((0, 0));
        }
        // Every step learns from every outcome settled before it.
        self.offers.sync(&*self.store, &self.flows.current()).await?;
        let built = self.build(batch, &Overlay::default()).await?;
        let (n, enqueued) = (built.outcomes.len(), built.enqueued);
        if let Err(e) = self.store.commit_processing(built.outcomes).await {
            // The counts included this batch's waiting decisions: read them from the store again.
            self.approval_counts.lock().expect("approval counts lock").clear();
            return Err(e);
        }
        Ok((n, enqueued))
    }

    /// Turns a batch into its outcomes, starting from the overlay's states where it has them and the
    /// store's otherwise.
    async fn build(&self, batch: Vec<StoredDelivery>, overlay: &Overlay) -> Result<Built, StoreError> {
        let received_ms = batch.iter().map(|d| d.received_at_ms).collect();
        let seqs = batch.iter().map(|d| d.seq).collect();
        let mut prepared: Vec<(StoredDelivery, Prepared)> = batch
            .into_iter()
            .map(|d| {
                let p = prepare(&self.sources, &d);
                (d, p)
            })
            .collect();

        // Identity: score reviews, then resolve each event's customer and record the links it makes, in
        // batch order, so later events of the batch see the links earlier ones made.
        let mut keys: Vec<String> = Vec::new();
        for (_, p) in prepared.iter_mut() {
            if let Prepared::Events(events) = p {
                for ev in events.iter_mut() {
                    if let Event::ReviewPosted(r) = ev
                        && r.sentiment.is_none()
                    {
                        score_review(r);
                    }
                    keys.extend(alias_keys(ev));
                }
            }
        }
        keys.sort();
        keys.dedup();
        // Read with the aliases, in one round trip: the states of every key that is a customer id (an
        // event's customer, its email key, the ids it links) and of the customers the aliases point at. A
        // state the batch turns out to need beyond those is read after resolution.
        let candidates: Vec<CustomerId> = keys
            .iter()
            .filter_map(|k| k.parse::<CustomerId>().ok())
            .filter(|c| !overlay.states.contains_key(c))
            .collect();
        let mut aliases = take_in_flight(&mut keys, &overlay.aliases);
        let (found, stored) = self.store.resolve_with_states(&keys, &candidates).await?;
        let mut covered: std::collections::HashSet<CustomerId> = candidates.into_iter().collect();
        for a in found {
            covered.insert(a.customer.clone());
            aliases.insert(a.alias, a.customer);
        }
        let mut stored: HashMap<CustomerId, StoredState> =
            stored.into_iter().map(|s| (s.customer.clone(), s)).collect();
        // Where several nodes process: what each id this batch resolves or links pointed at when read.
        let mut alias_reads: Vec<(String, Option<CustomerId>)> = Vec::new();
        let spread = self.share.is_some();
        let mut stitched: Vec<Vec<(String, CustomerId)>> = vec![Vec::new(); prepared.len()];
        let mut linked: Vec<CustomerId> = Vec::new();
        for (i, (_, p)) in prepared.iter_mut().enumerate() {
            let Prepared::Events(events) = p else { continue };
            for ev in events.iter_mut() {
                let Some(c) = ev.customer().cloned() else { continue };
                if spread && !stitched.iter().flatten().any(|(l, _)| *l == c.to_string()) {
                    alias_reads.push((c.to_string(), aliases.get(&c.to_string()).cloned()));
                }
                let resolved = self.resolve(&c, ev.email(), &aliases, overlay).await?;
                if resolved != c {
                    ev.set_customer(resolved.clone());
                }
                for l in link_sources(ev, &resolved) {
                    if spread && !stitched.iter().flatten().any(|(s, _)| *s == l) {
                        alias_reads.push((l.clone(), aliases.get(&l).cloned()));
                    }
                    if aliases.get(&l) != Some(&resolved) {
                        aliases.insert(l.clone(), resolved.clone());
                        stitched[i].push((l.clone(), resolved.clone()));
                    }
                    if let Ok(id) = l.parse::<CustomerId>() {
                        linked.push(id);
                    }
                }
            }
        }

        let linked_ids: Vec<CustomerId> = if spread { linked.clone() } else { Vec::new() };
        let mut ids: Vec<CustomerId> = prepared
            .iter()
            .filter_map(|(_, p)| match p {
                Prepared::Events(evs) => Some(evs.iter().filter_map(|e| e.customer().cloned())),
                _ => None,
            })
            .flatten()
            .chain(linked)
            .collect();
        ids.sort();
        ids.dedup();
        let mut states = take_in_flight(&mut ids, &overlay.states);
        // What each state was read as (stored bytes, or none), for a commit conditional on it.
        let mut read_as: HashMap<CustomerId, Option<Vec<u8>>> = HashMap::new();
        if self.share.is_some() {
            for c in states.keys() {
                read_as.insert(c.clone(), overlay.bytes.get(c).cloned());
            }
            // Asked of the store: absent unless it has them.
            for c in &ids {
                read_as.insert(c.clone(), None);
            }
        }
        let (read, missing): (Vec<CustomerId>, Vec<CustomerId>) =
            ids.into_iter().partition(|c| covered.contains(c));
        let mut loaded: Vec<StoredState> = read.iter().filter_map(|c| stored.remove(c)).collect();
        if !missing.is_empty() {
            loaded.extend(self.store.load_states(&missing).await?);
        }
        for s in loaded {
            let state: CustomerState = CustomerState::decode(&s.state)
                .map_err(|e| StoreError::Corrupt(format!("state of {}: {e}", s.customer)))?;
            if self.share.is_some() {
                read_as.insert(s.customer.clone(), Some(s.state));
            }
            states.insert(s.customer, state);
        }

        // The approval counts of flows with `approval.first_n`, from the store the first time.
        let mut counts = self.approval_counts.lock().expect("approval counts lock").clone();
        let flows = self.flows.current();
        if self.share.is_some() {
            // Other nodes approve too: a flow still under its first_n is counted from the store again.
            counts.retain(|flow, n| {
                flows
                    .get(flow)
                    .and_then(|f| f.spec.approval.as_ref())
                    .is_none_or(|a| *n >= u64::from(a.first_n))
            });
        }
        for f in &flows.flows {
            if flows.uses_first_n(&f.spec.name) && !counts.contains_key(&f.spec.name) {
                let n = self.store.approval_count(&f.spec.name).await?;
                counts.insert(f.spec.name.clone(), n);
            }
        }

        let learners = self.offers.maybe_sync(&*self.store, &flows).await?;
        let now = time::OffsetDateTime::now_utc();
        let prefetched = self.prefetch_custom(&prepared, &states, now).await;
        let mut outcomes = Vec::with_capacity(prepared.len());
        let mut enqueued = 0;
        let mut erased: Vec<CustomerId> = Vec::new();
        let mut batch_aliases: Vec<(String, CustomerId)> = Vec::new();
        for ((d, p), links) in prepared.into_iter().zip(stitched) {
            let mut o = match p {
                Prepared::Privacy(req) => {
                    let o = crate::privacy::outcome_for(&d, req, now);
                    for c in o
                        .privacy
                        .iter()
                        .filter(|j| j.kind == PrivacyJobKind::Erase)
                        .flat_map(|j| &j.customers)
                    {
                        // Later deliveries of the batch start them from nothing.
                        states.remove(c);
                        erased.push(c.clone());
                    }
                    o
                }
                p => self.process_one(&d, p, &mut states, &mut counts, &learners, &prefetched, now),
            };
            erased.extend(o.deleted_states.iter().cloned());
            for (alias, customer) in links {
                o.aliases.push(nudge_store::NewAlias {
                    alias: alias.clone(),
                    customer: customer.clone(),
                    at_ms: ts_to_ms(now),
                    trace_id: Some(d.trace_id),
                });
                batch_aliases.push((alias, customer));
            }
            enqueued += o.outbox.len();
            outcomes.push(o);
        }
        *self.approval_counts.lock().expect("approval counts lock") = counts;
        // Every changed state is written once, with the last outcome of the batch that touched it.
        let mut changed = HashMap::new();
        for o in outcomes.iter_mut().rev() {
            for c in std::mem::take(&mut o.states) {
                if let std::collections::hash_map::Entry::Vacant(slot) = changed.entry(c.customer) {
                    // Erased later in the batch (and not brought back): nothing to write.
                    let Some(s) = states.remove(slot.key()) else { continue };
                    o.states.push(StoredState {
                        customer: slot.key().clone(),
                        // A provisional visitor's email is never a key to find a customer by.
                        email: s.email.clone().filter(|_| keeps_email(slot.key())),
                        state: s.encode(),
                    });
                    slot.insert(s);
                }
            }
        }
        erased.retain(|c| !changed.contains_key(c));
        // Where several nodes process: the bytes each state is written as (what the next batch expects to
        // find), and what this batch read. Nothing of it on a single processor.
        let mut bytes: HashMap<CustomerId, Vec<u8>> = HashMap::new();
        let mut expected: Vec<nudge_store::ExpectedState> = Vec::new();
        if self.share.is_some() {
            for s in outcomes.iter().flat_map(|o| &o.states) {
                bytes.insert(s.customer.clone(), s.state.clone());
            }
            // The states it writes or removes, and those of the ids it links (which another node may be
            // writing under their own id).
            let written = outcomes
                .iter()
                .flat_map(|o| o.states.iter().map(|s| &s.customer).chain(&o.deleted_states))
                .chain(&linked_ids);
            let mut seen = std::collections::HashSet::new();
            for c in written {
                // Only states this batch read (every state it writes, removes or links is one).
                if seen.insert(c.clone())
                    && let Some(state) = read_as.get(c)
                {
                    expected.push(nudge_store::ExpectedState { customer: c.clone(), state: state.clone() });
                }
            }
        }
        if let Some(first) = outcomes.first_mut() {
            first.expected_states = expected;
            alias_reads.sort();
            alias_reads.dedup_by(|a, b| a.0 == b.0);
            first.expected_aliases = alias_reads;
        }
        // An erased (or merged-away) customer's recommendations go with them.
        if let Some(recs) = self.scoring.recs() {
            erased.iter().for_each(|c| recs.forget(c));
        }
        Ok(Built {
            outcomes,
            states: changed,
            enqueued,
            erased,
            aliases: batch_aliases,
            bytes,
            received_ms,
            seqs,
        })
    }

    /// The customer an event is about after identity stitching: an alias's customer; for a provisional
    /// customer with an email, the known customer with that email (by the email key's alias, or the
    /// stored email); the customer itself otherwise.
    async fn resolve(
        &self,
        c: &CustomerId,
        email: Option<&str>,
        aliases: &HashMap<String, CustomerId>,
        overlay: &Overlay,
    ) -> Result<CustomerId, StoreError> {
        let mut cur = c.clone();
        // Aliases point at known customers; a few hops cover a re-pointed one.
        for _ in 0..4 {
            match aliases.get(&cur.to_string()) {
                Some(t) if *t != cur => cur = t.clone(),
                _ => break,
            }
        }
        if !cur.is_provisional() {
            return Ok(cur);
        }
        let Some(email) = email else { return Ok(cur) };
        if let Some(t) = CustomerId::for_email(email).and_then(|k| aliases.get(&k.to_string()))
            && !t.is_provisional()
        {
            return Ok(t.clone());
        }
        let known = match overlay.customer_by_email(email) {
            Some(k) => Some(k),
            None => self.store.customer_by_email(email).await?,
        };
        Ok(known.filter(|k| !k.is_provisional()).unwrap_or(cur))
    }

    /// The HTTP scorers' answers for the batch's customers, asked all at once from the states the batch
    /// starts from (a customer new to nudge: an empty state) and their built-in scores; bounded by the
    /// scorers' timeouts, and nothing at all without an HTTP scorer.
    async fn prefetch_custom(
        &self,
        prepared: &[(StoredDelivery, Prepared)],
        states: &HashMap<CustomerId, CustomerState>,
        now: Timestamp,
    ) -> nudge_custom::Prefetched {
        let custom = self.scoring.custom();
        if !custom.has_http() {
            return nudge_custom::Prefetched::default();
        }
        let mut seen = std::collections::HashSet::new();
        let mut customers = Vec::new();
        for (_, p) in prepared {
            let Prepared::Events(evs) = p else { continue };
            for c in evs.iter().filter_map(|e| e.customer()) {
                if seen.insert(c.clone()) {
                    let state = states.get(c).cloned().unwrap_or_else(|| CustomerState::new(c.clone()));
                    let (scores, _) = self.scoring.score(&state, now);
                    customers.push((c.clone(), state, scores));
                }
            }
        }
        custom.prefetch(&customers, now).await
    }

    #[allow(clippy::too_many_arguments)]
    fn process_one(
        &self,
        d: &StoredDelivery,
        p: Prepared,
        states: &mut HashMap<CustomerId, CustomerState>,
        approval_counts: &mut HashMap<String, u64>,
        learners: &nudge_policy::offers::Learners,
        prefetched: &nudge_custom::Prefetched,
        now: Timestamp,
    ) -> ProcessOutcome {
        let trace = d.trace_id;
        let mut out = ProcessOutcome { seq: d.seq, trace_id: Some(trace), ..Default::default() };
        let received_at = ms_to_ts(d.received_at_ms);
        let headers: serde_json::Value =
            serde_json::from_str(&d.headers_json).unwrap_or(serde_json::Value::Null);
        let body_digest = hex::encode(Sha256::digest(&d.body));
        let mut customer_of_trace: Option<CustomerId> = None;
        let audit = |out: &mut ProcessOutcome, c: Option<&CustomerId>, stage, detail| {
            out.audit.push(AuditRecord { trace_id: trace, customer: c.cloned(), stage, at: now, detail });
        };
        let received = serde_json::json!({
            "source": d.source, "topic": d.topic, "shop": d.shop, "webhook_id": d.webhook_id,
            "headers": headers, "body_sha256": body_digest, "body_bytes": d.body.len(),
            "received_at": fmt_ts(received_at),
        });
        let events = match p {
            Prepared::Quarantined(reason) => {
                audit(&mut out, None, AuditStage::Received, received);
                audit(&mut out, None, AuditStage::Normalized, serde_json::json!({ "error": reason }));
                out.status = Some(DeliveryStatus::Quarantined);
                out.status_reason = Some(reason.clone());
                out.terminal = Some(TerminalState::Quarantined(reason));
                telemetry::processed("quarantined");
                return out;
            }
            Prepared::Privacy(req) => return crate::privacy::outcome_for(d, req, now),
            Prepared::Ignored(reason) => {
                audit(&mut out, None, AuditStage::Received, received);
                out.status = Some(DeliveryStatus::Processed);
                out.terminal = Some(TerminalState::Ignored(reason));
                telemetry::processed("ignored");
                return out;
            }
            Prepared::Fetch(job) => {
                audit(&mut out, None, AuditStage::Received, received);
                let detail = serde_json::json!({
                    "source": job.source, "resource": job.resource, "id": job.id,
                    "topic": job.topic, "notified_topic": job.notified_topic,
                });
                audit(&mut out, None, AuditStage::FetchPending, detail);
                out.status = Some(DeliveryStatus::Processed);
                out.fetch_jobs.push(nudge_store::NewFetchJob {
                    trace_id: trace,
                    source: job.source.clone(),
                    job: serde_json::to_string(&job).unwrap_or_default(),
                    due_at_ms: ts_to_ms(now),
                });
                telemetry::processed("fetch_pending");
                return out;
            }
            Prepared::Events(evs) => evs,
        };
        let first_customer = events.iter().find_map(|e| e.customer().cloned());
        audit(&mut out, first_customer.as_ref(), AuditStage::Received, received);
        audit(
            &mut out,
            first_customer.as_ref(),
            AuditStage::Normalized,
            serde_json::json!({ "events": events.iter().map(|e| e.kind()).collect::<Vec<_>>() }),
        );
        let mut reasons: Vec<String> = Vec::new();
        for ev in &events {
            // Orders cancel the abandonment timers of the checkout and cart they came from.
            if let Event::OrderUpserted(o) | Event::OrderCancelled(o) = ev {
                out.cancel_timers.extend(o.checkout_token.iter().cloned());
                out.cancel_timers.extend(o.cart_token.iter().cloned());
            }
            // The catalogue: the newest record of a product is stored with this commit and served at once.
            if let Event::ProductUpserted(p) = ev {
                out.products.push(nudge_store::StoredProduct {
                    id: p.id.clone(),
                    source: d.source.clone(),
                    updated_at_ms: ts_to_ms(p.updated_at),
                    record: serde_json::to_string(p).expect("events serialise"),
                });
                if let Some(recs) = self.scoring.recs() {
                    recs.upsert_product(p);
                }
            }
            let Some(cid) = ev.customer().cloned() else {
                reasons.push(format!(
                    "{}: carries no customer; catalog and cart events do not drive decisions yet",
                    ev.kind()
                ));
                continue;
            };
            customer_of_trace = Some(cid.clone());
            // A schedule firing is decided for the customers it was made for, never for a new one.
            let tick = matches!(ev, Event::ScheduleTick(_));
            if tick && !states.contains_key(&cid) {
                reasons.push(format!("{cid}: no longer in the store, not decided"));
                continue;
            }
            // Identity stitching: a linked customer's state (a visitor who browsed before identifying, an
            // email-only reviewer) is folded into this one and removed.
            if !tick && !cid.is_provisional() {
                for l in link_sources(ev, &cid).iter().filter_map(|l| l.parse::<CustomerId>().ok()) {
                    if l == cid {
                        continue;
                    }
                    let Some(other) = states.remove(&l) else { continue };
                    let state = states.entry(cid.clone()).or_insert_with(|| CustomerState::new(cid.clone()));
                    state.merge(other);
                    out.deleted_states.push(l.clone());
                    out.states.push(StoredState { customer: cid.clone(), email: None, state: Vec::new() });
                    audit(
                        &mut out,
                        Some(&cid),
                        AuditStage::StateChanged,
                        serde_json::json!({
                            "event": ev.kind(), "merged_from": l.to_string(), "into": cid.to_string(),
                            "revision": state.revision,
                        }),
                    );
                }
            }
            let state = states.entry(cid.clone()).or_insert_with(|| CustomerState::new(cid.clone()));
            let before = state.summary();
            let was_cancelled = match ev {
                Event::OrderUpserted(o) | Event::OrderCancelled(o) => {
                    state.orders.get(&o.id).is_some_and(|r| r.cancelled)
                }
                _ => false,
            };
            let known_before = match ev {
                Event::OrderUpserted(o) => state.orders.contains_key(&o.id),
                Event::CheckoutUpserted(c) => state.open_checkouts.contains_key(&c.token),
                Event::CustomerUpserted(_) => state.profile_updated_at.is_some(),
                _ => true,
            };
            match state.apply(ev) {
                Applied::Changed => {}
                // A firing changes no state and is decided all the same (its decision may write the flow's
                // history into the state).
                Applied::Unchanged if tick => {}
                Applied::Unchanged => {
                    reasons.push(format!("{}: state already reflects this event", ev.kind()));
                    continue;
                }
                Applied::Stale { reason } => {
                    reasons.push(format!("stale: {reason}"));
                    continue;
                }
                Applied::NotApplicable => {
                    reasons.push(format!("{}: not applicable", ev.kind()));
                    continue;
                }
            }
            state.prune_browse(now - self.browse_retention);
            // A new order settles the customer's open offers whose window holds it.
            if let Event::OrderUpserted(o) = ev
                && !known_before
                && o.cancelled_at.is_none()
                && nudge_state::offers::settle_offers(&mut state.offers, o.created_at)
            {
                out.offer_settlements.push(nudge_store::OfferSettlement {
                    customer: cid.clone(),
                    order_at_ms: ts_to_ms(o.created_at),
                    value: o.total.to_f64(),
                });
            }
            let after = state.summary();
            // A firing's state is written only if its decision adds to the flow's history (below).
            if !tick {
                out.states.push(StoredState { customer: cid.clone(), email: None, state: Vec::new() });
                audit(
                    &mut out,
                    Some(&cid),
                    AuditStage::StateChanged,
                    serde_json::json!({ "event": ev.kind(), "revision": state.revision, "before": before, "after": after }),
                );
            }
            // Timers: an open checkout (re)arms its abandonment timer; a completed one disarms it.
            if let Event::CheckoutUpserted(c) = ev {
                if state.open_checkouts.contains_key(&c.token) {
                    let due = c.updated_at + self.abandon_after;
                    let abandoned = Event::CheckoutAbandoned(CheckoutAbandoned {
                        customer: cid.clone(),
                        email: c.email.clone(),
                        checkout: c.clone(),
                        idle_since: c.updated_at,
                    });
                    out.set_timers.push(TimerSpec {
                        checkout_token: c.token.clone(),
                        cart_token: c.cart_token.clone(),
                        customer: cid.clone(),
                        due_at_ms: ts_to_ms(due),
                        payload_json: serde_json::to_string(&abandoned).expect("events serialise"),
                        origin_trace: trace,
                    });
                } else {
                    out.cancel_timers.push(c.token.clone());
                }
            }
            let (mut scores, fallback) = self.scoring.score(state, now);
            let custom = self.scoring.custom().apply(state, now, &mut scores, prefetched);
            let mut scored = serde_json::json!({
                "inputs": after, "model_version": scores.model_version, "scores": scores.scores,
                "labels": scores.labels, "segment": scores.segment, "fallback_reason": fallback,
            });
            if !custom.is_empty() {
                // Every custom model's valid outputs (shadow ones too) and fallbacks, for
                // `nudge report models` and the audit.
                scored["custom"] = serde_json::json!(custom);
                telemetry::custom_models(&custom);
            }
            audit(&mut out, Some(&cid), AuditStage::Scored, scored);
            let mut triggers = Trigger::of_change(ev, known_before, was_cancelled);
            let fingerprint = nudge_policy::flows::scores_fingerprint(&scores);
            // A firing decides its own flow only: a score change it sees waits for the customer's next event.
            if !tick && state.scores_fingerprint.as_deref() != Some(fingerprint.as_str()) {
                // A first fingerprint (a new customer, or a state from before fingerprints) is recorded
                // without firing: nothing is known to have changed.
                if state.scores_fingerprint.is_some() {
                    triggers.push(Trigger::ScoresChanged);
                }
                state.scores_fingerprint = Some(fingerprint);
            }
            let flows = self.flows.current();
            let ctx = DecideContext {
                event: ev,
                triggers: &triggers,
                state,
                scores: &scores,
                history: &state.flow_history,
                now,
                policy: &self.policy,
                approvals_so_far: &|flow: &str| approval_counts.get(flow).copied().unwrap_or(0),
                learners,
            };
            let decided = match ev {
                Event::ScheduleTick(t) => flows.decide_flow(&t.flow, &ctx).into_iter().collect(),
                _ => flows.decide(&ctx),
            };
            if let Event::ScheduleTick(t) = ev
                && decided.is_empty()
            {
                reasons.push(format!("schedule: flow `{}` is no longer configured", t.flow));
                continue;
            }
            if decided.is_empty() {
                reasons.push(format!("{}: no flow listens to {}", ev.kind(), trigger_names(&triggers)));
                continue;
            }
            let shadow_only = decided.iter().any(|o| o.status == Status::Shadow)
                && decided.iter().all(|o| !matches!(o.status, Status::Live | Status::AwaitingApproval));
            let mut summary = Vec::with_capacity(decided.len());
            for o in &decided {
                telemetry::flow_decision(&o.flow, o.status.as_str());
                self.flows.count(&o.flow, o.status.as_str());
                if flows.measured(&o.flow) {
                    out.decisions.push(FlowDecision {
                        flow: o.flow.clone(),
                        flow_version: o.flow_version.clone(),
                        customer: cid.clone(),
                        at_ms: ts_to_ms(now),
                        status: o.status.as_str().to_string(),
                        matched: o.matched(),
                        baseline: o.baseline,
                        trace_id: trace,
                        arm: o.offer.as_ref().filter(|_| o.acted()).map(|c| c.arm.clone()),
                    });
                }
                // An offer sent is logged for the bandit to learn from (a shadow or waiting one is not: it
                // reached no one yet).
                if let (Some(offer), Status::Live) = (&o.offer, o.status) {
                    let decision_id = format!("{trace}:{}", o.flow);
                    let window_end = now + time::Duration::seconds(offer.window_secs);
                    out.offers.push(nudge_store::NewOffer {
                        id: decision_id.clone(),
                        flow: o.flow.clone(),
                        customer: cid.clone(),
                        arm: offer.arm.clone(),
                        propensity: offer.choice.propensity,
                        explored: offer.choice.explored,
                        context: offer.context.clone(),
                        decided_at_ms: ts_to_ms(now),
                        window_end_ms: ts_to_ms(window_end),
                    });
                    nudge_state::offers::record_offer(
                        &mut state.offers,
                        nudge_state::offers::OfferRecord {
                            flow: o.flow.clone(),
                            arm: offer.arm.clone(),
                            decision_id,
                            decided_at: now,
                            window_end,
                            settled: false,
                        },
                    );
                }
                let actions: Vec<serde_json::Value> = o
                    .actions
                    .iter()
                    .map(|(dest, a)| {
                        let mut v = action_summary(a);
                        v["destination"] = dest.clone().into();
                        v
                    })
                    .collect();
                summary.push(serde_json::json!({
                    "flow": o.flow, "trigger": o.trigger, "status": o.status, "reason": o.reason,
                    "inputs": o.inputs, "baseline": o.baseline, "actions": actions, "offer": o.offer,
                }));
                match o.status {
                    Status::Live => {
                        for (dest, action) in &o.actions {
                            out.outbox.push(NewOutboxItem {
                                trace_id: trace,
                                customer: cid.clone(),
                                destination: dest.clone(),
                                action_json: serde_json::to_string(action).expect("actions serialise"),
                                origin_us: d.received_at_ms * 1000,
                            });
                        }
                        if o.actions.is_empty() {
                            reasons.push(format!("{}: decided, the flow has no actions", o.flow));
                        }
                    }
                    Status::Shadow => {
                        reasons.push(format!("{}: shadow, decision recorded, nothing pushed", o.flow))
                    }
                    // Nothing to approve: nothing waits (and nothing counts toward first_n, which counts items).
                    Status::AwaitingApproval if o.actions.is_empty() => {
                        reasons.push(format!("{}: decided, the flow has no actions", o.flow));
                    }
                    Status::AwaitingApproval => {
                        *approval_counts.entry(o.flow.clone()).or_default() += 1;
                        let actions: Vec<serde_json::Value> = o
                            .actions
                            .iter()
                            .map(|(dest, a)| serde_json::json!({ "destination": dest, "action": a }))
                            .collect();
                        out.approvals.push(NewApproval {
                            trace_id: trace,
                            flow: o.flow.clone(),
                            flow_version: o.flow_version.clone(),
                            customer: cid.clone(),
                            actions_json: serde_json::Value::Array(actions).to_string(),
                            created_at_ms: ts_to_ms(now),
                            expires_at_ms: ts_to_ms(now) + flows.approval_expiry_secs(&o.flow) * 1000,
                        });
                        reasons.push(format!("{}: awaiting approval", o.flow));
                    }
                    _ => reasons.push(format!("{}: {}", o.flow, o.reason)),
                }
                if o.acted() {
                    let h = state.flow_history.entry(o.flow.clone()).or_default();
                    h.push(now.unix_timestamp());
                    // Keep what the longest cap could count (and never more than 64 entries).
                    let keep_after = now.unix_timestamp() - flows.longest_cap_window(&o.flow);
                    h.retain(|&t| t > keep_after);
                    if h.len() > 64 {
                        h.drain(..h.len() - 64);
                    }
                    if tick {
                        out.states.push(StoredState {
                            customer: cid.clone(),
                            email: None,
                            state: Vec::new(),
                        });
                    }
                }
            }
            audit(
                &mut out,
                Some(&cid),
                AuditStage::Decided,
                serde_json::json!({
                    "flow_set": flows.version, "triggers": triggers, "flows": summary,
                    // Kept from the decision record of earlier versions: every acting flow ran in shadow.
                    "shadow": shadow_only,
                }),
            );
        }
        out.status = Some(DeliveryStatus::Processed);
        if !out.approvals.is_empty() {
            // Deferred: the trace settles once its approvals are decided or expire and whatever they enqueue
            // is final (see `Store::decide_approvals`).
            telemetry::processed("awaiting_approval");
        } else if out.outbox.is_empty() {
            let reason = if reasons.is_empty() { "nothing to do".to_string() } else { reasons.join("; ") };
            audit(
                &mut out,
                customer_of_trace.as_ref(),
                AuditStage::Terminal,
                serde_json::json!({ "state": "ignored", "reason": reason }),
            );
            out.terminal = Some(TerminalState::Ignored(reason));
            telemetry::processed("ignored");
        } else {
            telemetry::processed("enqueued");
        }
        out
    }

    /// Runs until `shutdown` turns true, woken by `wake` (new deliveries) and by a periodic poll. While a
    /// batch's commit is in flight the next batch is read and processed on top of the states it left (the
    /// commit of that one is conditional on the first having landed), so processing and the writer's
    /// commits overlap.
    pub async fn run(
        self: Arc<Self>,
        wake: Arc<Notify>,
        outbox_wake: Arc<Notify>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut overlay = Overlay::default();
        let mut inflight: Option<InFlight> = None;
        let mut generation = 0u64;
        let mut in_a_row = 0u32;
        loop {
            if *shutdown.borrow() {
                if let Some(f) = inflight.take() {
                    self.land(f, &mut overlay, &outbox_wake).await;
                }
                return;
            }
            // The batch is computed after the one in flight: its commit lands only once that one's did.
            let after = inflight.as_ref().and_then(|f| f.seqs.last().copied());
            let in_flight = inflight.as_ref().map_or(&[][..], |f| &f.seqs[..]);
            let batch = match self.pending_besides(in_flight).await {
                Ok(b) => b,
                Err(e) => {
                    self.failed(e, inflight.take(), &mut overlay, &outbox_wake).await;
                    continue;
                }
            };
            if batch.is_empty() {
                match inflight.take() {
                    // Let it land, then look again from the store's own view.
                    Some(f) => {
                        if !self.land(f, &mut overlay, &outbox_wake).await {
                            // The overlay (and the approval counts) hold what did not land: start again from
                            // the store's view.
                            self.recover(None, &mut overlay, &outbox_wake).await;
                        }
                    }
                    None => {
                        in_a_row = 0;
                        tokio::select! {
                            _ = wake.notified() => {}
                            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                            _ = shutdown.changed() => {}
                        }
                    }
                }
                continue;
            }
            let built = match self.build(batch, &overlay).await {
                Ok(b) => b,
                Err(e) => {
                    self.failed(e, inflight.take(), &mut overlay, &outbox_wake).await;
                    continue;
                }
            };
            generation += 1;
            for c in &built.erased {
                overlay.forget(c);
            }
            let mut bytes = built.bytes;
            for (c, s) in built.states {
                let b = bytes.remove(&c);
                overlay.insert(c, s, b, generation);
            }
            for (a, c) in built.aliases {
                overlay.aliases.insert(a, (c, generation));
            }
            let store = self.store.clone();
            let outcomes = built.outcomes;
            let commit =
                Submitted::start(async move { store.commit_processing_after(outcomes, after).await }).await;
            let next = InFlight {
                commit,
                generation,
                enqueued: built.enqueued,
                received_ms: built.received_ms,
                seqs: built.seqs,
            };
            if let Some(prev) = inflight.replace(next)
                && !self.land(prev, &mut overlay, &outbox_wake).await
            {
                // The batch just started was computed on top of the failed one: its commit is refused.
                self.recover(inflight.take(), &mut overlay, &outbox_wake).await;
                continue;
            }
            in_a_row += 1;
            if in_a_row >= SYNC_EVERY_BATCHES
                && let Some(f) = inflight.take()
            {
                in_a_row = 0;
                if !self.land(f, &mut overlay, &outbox_wake).await {
                    self.recover(None, &mut overlay, &outbox_wake).await;
                }
            }
        }
    }

    /// Waits for a batch's commit; true when it landed.
    async fn land(&self, f: InFlight, overlay: &mut Overlay, outbox_wake: &Notify) -> bool {
        match f.commit.answer().await {
            Ok(()) => {
                let now_ms = crate::outbox::now_ms();
                for at in f.received_ms {
                    let seconds = (now_ms - at).max(0) as f64 / 1e3;
                    crate::telemetry::event_to_processed(seconds);
                    if let Some(sample) = &self.processed_latency {
                        sample.record(seconds);
                    }
                }
                overlay.landed(f.generation);
                if f.enqueued > 0 {
                    outbox_wake.notify_one();
                }
                true
            }
            // Another node's commit came first (a stitched customer's state, or a partition that moved).
            Err(e @ StoreError::Conflict(_)) => {
                tracing::warn!(error = %e, "processing batch refused; computing it again");
                false
            }
            Err(e) => {
                tracing::error!(error = %e, "processing batch failed; retrying");
                false
            }
        }
    }

    /// After an error: logs it and recovers (see [`Self::recover`]).
    async fn failed(
        &self,
        e: StoreError,
        inflight: Option<InFlight>,
        overlay: &mut Overlay,
        outbox_wake: &Notify,
    ) {
        tracing::error!(error = %e, "processing batch failed; retrying");
        self.recover(inflight, overlay, outbox_wake).await;
    }

    /// Lets the batch in flight finish (it lands or not), forgets every state not read from the store, and
    /// pauses before processing goes on from the store's view.
    async fn recover(&self, inflight: Option<InFlight>, overlay: &mut Overlay, outbox_wake: &Notify) {
        if let Some(f) = inflight {
            self.land(f, overlay, outbox_wake).await;
        }
        *overlay = Overlay::default();
        self.approval_counts.lock().expect("approval counts lock").clear();
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// The customer id a delivery is routed by: the one its first event names, as the platform sent it (before
/// stitching, so one id's deliveries stay in one partition), or the first a privacy request names.
fn route_key(sources: &nudge_ingest::source::Registry, d: &StoredDelivery) -> Option<String> {
    match prepare(sources, d) {
        Prepared::Events(evs) => evs.iter().find_map(|e| e.customer().map(CustomerId::to_string)),
        Prepared::Privacy(PrivacyRequest::Erase { subject, .. } | PrivacyRequest::Export { subject, .. }) => {
            subject.customers.first().map(CustomerId::to_string)
        }
        _ => None,
    }
}

/// The partition of a delivery being acknowledged, when it names a customer (see [`route_key`]): stored with
/// it, so the leader need not route it. `None` leaves it to the leader.
pub fn route_at_ack(
    sources: &nudge_ingest::source::Registry,
    d: &nudge_store::NewDelivery,
    of: u32,
) -> Option<u32> {
    let stored = StoredDelivery {
        seq: 0,
        trace_id: d.trace_id,
        source: d.source.clone(),
        topic: d.topic.clone(),
        shop: d.shop.clone(),
        webhook_id: d.webhook_id.clone(),
        received_at_ms: d.received_at_ms,
        headers_json: d.headers_json.clone(),
        body: d.body.clone(),
    };
    route_key(sources, &stored).map(|c| nudge_store::partition_of(&c, of))
}

fn prepare(sources: &nudge_ingest::source::Registry, d: &StoredDelivery) -> Prepared {
    match d.source.as_str() {
        "timer" => match serde_json::from_slice::<Event>(&d.body) {
            Ok(ev) => Prepared::Events(vec![ev]),
            Err(e) => Prepared::Quarantined(format!("timer payload does not parse: {e}")),
        },
        // A privacy request made through nudge itself (`POST /api/privacy/erase`).
        crate::privacy::SOURCE => match serde_json::from_slice::<PrivacyRequest>(&d.body) {
            Ok(req) => Prepared::Privacy(req),
            Err(e) => Prepared::Quarantined(format!("privacy request does not parse: {e}")),
        },
        // One chunk of a schedule flow's firing: a tick per customer.
        "schedule" => match serde_json::from_slice::<crate::scheduler::ScheduleChunk>(&d.body) {
            Ok(chunk) => Prepared::Events(chunk.ticks()),
            Err(e) => Prepared::Quarantined(format!("schedule payload does not parse: {e}")),
        },
        name => {
            let Some(source) = sources.parser(name) else {
                return Prepared::Quarantined(format!("unknown delivery source `{name}`"));
            };
            let view = StoredView { topic: &d.topic, shop: d.shop.as_deref(), body: &d.body };
            match source.parse(&view) {
                Parsed::Events(evs) => Prepared::Events(evs),
                Parsed::Ignored(reason) => Prepared::Ignored(reason),
                Parsed::Quarantined(reason) => Prepared::Quarantined(reason),
                Parsed::Privacy(req) => Prepared::Privacy(req),
                Parsed::Fetch(job) => Prepared::Fetch(job),
            }
        }
    }
}

/// Scores a review that came without a sentiment (VADER compound and themes of its title and text),
/// before it is folded, so the state, the flows' `event.sentiment` and the audit all see the same score.
fn score_review(r: &mut nudge_model::Review) {
    r.sentiment = Some(nudge_sentiment::score_review(r.title.as_deref(), &r.body));
}

/// Whether a state's email is stored as the key customers are found by: not for anonymous visitors and
/// email-only keys, which must never stand in for the known customer with that email.
fn keeps_email(c: &CustomerId) -> bool {
    !matches!(c.source(), nudge_model::Source::Anonymous | nudge_model::Source::Email)
}

/// Whether an id may be stitched to another customer: commerce platforms' own customers never are (two
/// of them are two customers), storefront, anonymous, email-only and Braze ids are.
fn stitchable(c: &CustomerId) -> bool {
    use nudge_model::Source;
    matches!(c.source(), Source::Segment | Source::Anonymous | Source::Email | Source::Braze)
}

/// The other ids an event says belong to `customer` (already resolved), as alias text: an identify's
/// links, email key and phone digest; a storefront event's anonymous id; an order's or customer
/// record's email key. None for a provisional customer (it is not known who it is yet).
fn link_sources(ev: &Event, customer: &CustomerId) -> Vec<String> {
    if customer.is_provisional() {
        return Vec::new();
    }
    let email_key = || ev.email().and_then(CustomerId::for_email);
    let mut ids: Vec<CustomerId> = Vec::new();
    let mut out = Vec::new();
    match ev {
        Event::Identified(i) => {
            ids.extend(i.links.iter().cloned());
            ids.extend(email_key());
            out.extend(i.phone.as_deref().and_then(nudge_state::phone_alias));
        }
        Event::Behaviour(b) => {
            ids.extend(
                b.anonymous_id
                    .as_deref()
                    .and_then(|a| CustomerId::new(nudge_model::Source::Anonymous, a).ok()),
            );
        }
        Event::OrderUpserted(_) | Event::OrderCancelled(_) | Event::CustomerUpserted(_) => {
            ids.extend(email_key());
        }
        _ => {}
    }
    out.extend(ids.into_iter().filter(|l| l != customer && stitchable(l)).map(|l| l.to_string()));
    out
}

/// The alias texts an event may resolve by: its customer, its email key, and the ids it links.
fn alias_keys(ev: &Event) -> Vec<String> {
    let mut keys: Vec<String> = ev.customer().map(|c| c.to_string()).into_iter().collect();
    keys.extend(ev.email().and_then(CustomerId::for_email).map(|k| k.to_string()));
    if let Event::Identified(i) = ev {
        keys.extend(i.links.iter().map(|l| l.to_string()));
    }
    if let Event::Behaviour(b) = ev {
        keys.extend(b.anonymous_id.as_deref().map(|a| format!("anon:{a}")));
    }
    keys
}

/// What the audit trail keeps of an action: its kind, names and ids, never an email.
fn trigger_names(triggers: &[Trigger]) -> String {
    triggers.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(", ")
}

fn action_summary(a: &nudge_model::Action) -> serde_json::Value {
    match a {
        nudge_model::Action::UpsertProfile { attributes, .. } => serde_json::json!({
            "kind": "upsert_profile", "attributes": attributes,
        }),
        nudge_model::Action::TriggerEvent { name, unique_id, value, .. } => serde_json::json!({
            "kind": "trigger_event", "name": name, "unique_id": unique_id, "value": value,
        }),
        nudge_model::Action::AddToList { list_id, .. }
        | nudge_model::Action::RemoveFromList { list_id, .. } => {
            serde_json::json!({ "kind": a.kind(), "list_id": list_id })
        }
        // The text is built from flow facts only, which hold no personal data.
        nudge_model::Action::Alert { flow, text, unique_id, .. } => serde_json::json!({
            "kind": "alert", "flow": flow, "text": text, "unique_id": unique_id,
        }),
    }
}

pub(crate) fn ms_to_ts(ms: i64) -> Timestamp {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH)
}

pub(crate) fn ts_to_ms(t: Timestamp) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

pub(crate) fn fmt_ts(t: Timestamp) -> String {
    t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default()
}
