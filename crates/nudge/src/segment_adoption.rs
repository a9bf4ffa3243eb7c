//! Proposed segments a marketer adopts, and their refreshes.
//!
//! `nudge segments discover` stores each discovery ([`StoredDiscovery`]: the signals, their
//! standardisation, the centroids and the proposals as shown; never per-customer data). A proposal is
//! named `<discovery>-<n>` (`3-2`: discovery 3, proposal 2). Adopting one (`nudge segments adopt 3-2 --name
//! lapsing_vips`, `POST /api/segments/proposals/3-2/adopt`) makes it a named segment and computes its
//! members at once.
//!
//! A refresh ([`refresh`]; `nudge segments refresh`, `segments.refresh_schedule` in the server) scores every
//! stored customer as the pipeline does, reads the discovery's signals and places the customer at the
//! nearest of the discovery's centroids ([`nudge_decide::segments::assign`]), so a segment keeps meaning
//! the same behaviour from one refresh to the next. For each adopted segment it then:
//! - records who joined and who left (audit stage `segment_membership`, one record per change and one
//!   per segment with its counts and stability: the share of the members before who are still members);
//! - enqueues, for each list the segment follows (`--list klaviyo:Xy12Ab`), an `add_to_list` for each
//!   joiner with email consent and a `remove_from_list` for each leaver (with or without consent);
//! - stores the new members, which the pipeline reads: `customer.segments` in flow conditions and the
//!   `ai_segments` attribute on profiles and trigger events (written once any segment is adopted).
//!
//! The enqueued list changes and the audit are committed before the new members: a refresh that stops in
//! between finds the same changes next time and enqueues them again (list changes are idempotent), so
//! none is lost.

use crate::pipeline::Scoring;
use crate::segments_cli::{Report, SIGNALS, UsageError};
use anyhow::Context;
use nudge_custom::config::InputSpec;
use nudge_custom::features::FeatureMap;
use nudge_decide::segments::{self, Discovery, Feature, Proposal};
use nudge_model::{Action, AuditRecord, AuditStage, CustomerId, TraceId};
use nudge_state::CustomerState;
use nudge_store::{
    AdoptedSegment, NewOutboxItem, ProcessOutcome, SegmentList, SegmentRefresh, Store, StoreError,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// What is stored of a discovery.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct StoredDiscovery {
    /// The signals clustered on (those the store varies on), in the centroids' order.
    pub features: Vec<Feature>,
    /// Signals asked for but left out (the same for every customer).
    pub left_out: Vec<String>,
    pub customers: usize,
    pub k: usize,
    pub silhouettes: Vec<(usize, f64)>,
    pub seed: u64,
    pub means: Vec<f64>,
    pub sds: Vec<f64>,
    pub centroids: Vec<Vec<f64>>,
    pub proposals: Vec<Proposal>,
}

impl StoredDiscovery {
    pub fn new(report: &Report, found: &Discovery, features: Vec<Feature>, seed: u64) -> Self {
        StoredDiscovery {
            features,
            left_out: report.left_out.clone(),
            customers: report.customers,
            k: found.k,
            silhouettes: found.silhouettes.clone(),
            seed,
            means: found.means.clone(),
            sds: found.sds.clone(),
            centroids: found.centroids.clone(),
            proposals: found.proposals.clone(),
        }
    }

    /// The discovery as [`segments::assign`] takes it (no assignments).
    fn discovery(&self) -> Discovery {
        Discovery {
            k: self.k,
            silhouettes: self.silhouettes.clone(),
            assignments: Vec::new(),
            proposals: self.proposals.clone(),
            centroids: self.centroids.clone(),
            means: self.means.clone(),
            sds: self.sds.clone(),
        }
    }
}

/// Stores a discovery; returns its id.
pub async fn save_discovery(store: &dyn Store, d: &StoredDiscovery) -> anyhow::Result<i64> {
    let body = serde_json::to_value(d)?;
    Ok(store.save_segment_discovery(crate::outbox::now_ms(), body).await?)
}

/// One proposal as the CLI and `GET /api/segments/proposals` show it.
#[derive(Debug, Clone, Serialize)]
pub struct ProposalView {
    /// `<discovery>-<n>`, what adopting names.
    pub id: String,
    pub discovery_id: i64,
    #[serde(with = "time::serde::rfc3339")]
    pub discovered_at: time::OffsetDateTime,
    pub size: usize,
    pub share: f64,
    pub suggested_name: String,
    pub defining: Vec<String>,
    pub features: Vec<segments::FeatureDiff>,
    /// The name it was adopted under, if it was.
    pub adopted_as: Option<String>,
}

/// The proposals of discovery `id` (the latest when `None`); an empty list when nothing was discovered.
pub async fn proposals(store: &dyn Store, id: Option<i64>) -> anyhow::Result<Vec<ProposalView>> {
    let record = match id {
        Some(id) => store.segment_discovery(id).await?,
        None => store.segment_discoveries(1).await?.into_iter().next(),
    };
    let Some(record) = record else { return Ok(Vec::new()) };
    let d: StoredDiscovery = serde_json::from_value(record.body)
        .with_context(|| format!("segment discovery {} is unreadable", record.id))?;
    let adopted = store.adopted_segments().await?;
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(record.created_at_ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    Ok(d.proposals
        .iter()
        .map(|p| ProposalView {
            id: format!("{}-{}", record.id, p.index + 1),
            discovery_id: record.id,
            discovered_at: at,
            size: p.size,
            share: p.share,
            suggested_name: p.suggested_name.clone(),
            defining: p.defining.clone(),
            features: p.features.clone(),
            adopted_as: adopted
                .iter()
                .find(|a| a.discovery_id == record.id && a.proposal as usize == p.index)
                .map(|a| a.name.clone()),
        })
        .collect())
}

/// `3-2` → (3, index 1).
pub fn parse_proposal_id(id: &str) -> Result<(i64, u32), UsageError> {
    let bad = || UsageError(format!("`{id}` is not a proposal id: give `<discovery>-<n>`, such as `3-2`"));
    let (d, n) = id.split_once('-').ok_or_else(bad)?;
    let d: i64 = d.parse().map_err(|_| bad())?;
    let n: u32 = n.parse().map_err(|_| bad())?;
    if d < 1 || n < 1 {
        return Err(bad());
    }
    Ok((d, n - 1))
}

/// Checks a segment name: 1–64 of lower-case letters, digits, `_` and `-`, starting with a letter (it is
/// what flow conditions compare and profiles carry).
pub fn check_name(name: &str) -> Result<(), UsageError> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-');
    if ok {
        Ok(())
    } else {
        Err(UsageError(format!(
            "`{name}` is not a segment name: use 1 to 64 lower-case letters, digits, `_` or `-`, starting \
             with a letter (such as `lapsing_vips`)"
        )))
    }
}

/// `klaviyo:Xy12Ab` → a list the segment follows; the destination must be configured and take lists.
pub fn parse_list(s: &str, destinations: &[String]) -> Result<SegmentList, UsageError> {
    let (destination, list_id) = s.split_once(':').ok_or_else(|| {
        UsageError(format!("`{s}` is not a list: give `<destination>:<list id>`, such as `klaviyo:Xy12Ab`"))
    })?;
    if !destinations.iter().any(|d| d == destination) {
        return Err(UsageError(format!(
            "`{destination}` is not a configured destination that takes lists (configured: {})",
            if destinations.is_empty() { "none".to_string() } else { destinations.join(", ") }
        )));
    }
    if let Some(problem) = nudge_policy::flows::list_id_problem(list_id) {
        return Err(UsageError(format!("list `{list_id}`: {problem}")));
    }
    Ok(SegmentList { destination: destination.into(), list_id: list_id.into() })
}

/// Why adopting failed.
#[derive(Debug, thiserror::Error)]
pub enum AdoptError {
    #[error("{0}")]
    Usage(#[from] UsageError),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// Adopts proposal `id` under `name` (no members until the first refresh; [`adopt_and_refresh`] does both).
pub async fn adopt(
    store: &dyn Store,
    id: &str,
    name: &str,
    by: &str,
    lists: Vec<SegmentList>,
) -> Result<AdoptedSegment, AdoptError> {
    let (discovery_id, proposal) = parse_proposal_id(id)?;
    check_name(name)?;
    let Some(record) = store.segment_discovery(discovery_id).await.map_err(anyhow::Error::from)? else {
        return Err(AdoptError::NotFound(format!("no segment discovery {discovery_id}")));
    };
    let d: StoredDiscovery = serde_json::from_value(record.body).map_err(anyhow::Error::from)?;
    if proposal as usize >= d.proposals.len() {
        return Err(AdoptError::NotFound(format!(
            "discovery {discovery_id} has {} proposals; there is no proposal {id}",
            d.proposals.len()
        )));
    }
    let seg = AdoptedSegment {
        name: name.to_string(),
        discovery_id,
        proposal,
        adopted_at_ms: crate::outbox::now_ms(),
        adopted_by: by.to_string(),
        lists,
        members: 0,
        refreshed_at_ms: None,
        refreshes: 0,
        last_stability: None,
        last_joined: 0,
        last_left: 0,
    };
    match store.adopt_segment(seg.clone()).await {
        Ok(()) => Ok(seg),
        Err(StoreError::Conflict(m)) => Err(AdoptError::Conflict(m)),
        Err(StoreError::NotFound(m)) => Err(AdoptError::NotFound(m)),
        Err(e) => Err(AdoptError::Other(e.into())),
    }
}

/// Adopts and runs a refresh, so the segment has members at once.
pub async fn adopt_and_refresh(
    store: &Arc<dyn Store>,
    scoring: &Scoring,
    id: &str,
    name: &str,
    by: &str,
    lists: Vec<SegmentList>,
) -> Result<(AdoptedSegment, RefreshSummary), AdoptError> {
    let seg = adopt(&**store, id, name, by, lists).await?;
    let summary = refresh(store, scoring).await?;
    Ok((seg, summary))
}

/// Runs [`refresh`] in the background (after an adoption over the API or the console: the answer does not
/// wait for every customer to be placed); a failure is logged.
pub fn refresh_in_background(store: Arc<dyn Store>, scoring: Arc<Scoring>) {
    tokio::spawn(async move {
        if let Err(e) = refresh(&store, &scoring).await {
            tracing::error!(error = %format!("{e:#}"), "computing the adopted segments' members failed");
        }
    });
}

/// What one refresh did to one segment.
#[derive(Debug, Clone, Serialize)]
pub struct SegmentChange {
    pub segment: String,
    pub before: u64,
    pub members: u64,
    pub joined: u64,
    pub left: u64,
    /// Of the members before, the share still members (`None` at the first membership).
    pub stability: Option<f64>,
    /// List changes enqueued (adds for joiners with consent, removals for leavers).
    pub list_changes: u64,
}

/// What a refresh did.
#[derive(Debug, Clone, Serialize, Default)]
pub struct RefreshSummary {
    pub customers: u64,
    pub segments: Vec<SegmentChange>,
    pub trace_id: Option<String>,
    pub seconds: f64,
}

/// Per discovery: what its refresh needs.
struct Placer {
    stored: StoredDiscovery,
    discovery: Discovery,
    map: FeatureMap,
    /// Per feature, its column in the compiled map.
    column: Vec<usize>,
    /// Proposal index → the adopted segment's name.
    adopted: HashMap<u32, String>,
}

impl Placer {
    fn new(discovery_id: i64, stored: StoredDiscovery) -> anyhow::Result<Placer> {
        let mut inputs = BTreeMap::new();
        for f in &stored.features {
            let Some(s) = SIGNALS.iter().find(|s| s.0 == f.name) else {
                anyhow::bail!(
                    "segment discovery {discovery_id} uses the signal `{}`, which nudge no longer knows",
                    f.name
                );
            };
            inputs.insert(f.name.clone(), InputSpec::One(s.1.to_string()));
        }
        let map = FeatureMap::compile(&inputs).map_err(|e| anyhow::anyhow!("{e}"))?;
        let column = stored
            .features
            .iter()
            .map(|f| map.inputs.iter().position(|i| i.name == f.name).expect("compiled from these names"))
            .collect();
        let discovery = stored.discovery();
        Ok(Placer { stored, discovery, map, column, adopted: HashMap::new() })
    }
}

/// Refreshes every adopted segment (see the module's documentation); loads the new membership into
/// `scoring`.
pub async fn refresh(store: &Arc<dyn Store>, scoring: &Scoring) -> anyhow::Result<RefreshSummary> {
    let started = std::time::Instant::now();
    let adopted = store.adopted_segments().await?;
    if adopted.is_empty() {
        load_into(&**store, scoring).await?;
        return Ok(RefreshSummary::default());
    }
    let mut placers: BTreeMap<i64, Placer> = BTreeMap::new();
    for a in &adopted {
        let placer = match placers.entry(a.discovery_id) {
            std::collections::btree_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::btree_map::Entry::Vacant(e) => {
                let record = store
                    .segment_discovery(a.discovery_id)
                    .await?
                    .with_context(|| format!("segment discovery {} is gone", a.discovery_id))?;
                let stored: StoredDiscovery = serde_json::from_value(record.body)
                    .with_context(|| format!("segment discovery {} is unreadable", a.discovery_id))?;
                e.insert(Placer::new(a.discovery_id, stored)?)
            }
        };
        placer.adopted.insert(a.proposal, a.name.clone());
    }
    // One pass over the customers: score once, place in every discovery.
    let mut members: HashMap<String, Vec<CustomerId>> =
        adopted.iter().map(|a| (a.name.clone(), Vec::new())).collect();
    let now = time::OffsetDateTime::now_utc();
    let mut after = None;
    let mut customers = 0u64;
    loop {
        let page = store.scan_states(after.clone(), 2_000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.customer.clone());
        for s in &page {
            let state: CustomerState = CustomerState::decode(&s.state)
                .with_context(|| format!("the stored state of {} is unreadable", s.customer))?;
            let (scores, _) = scoring.score(&state, now);
            customers += 1;
            for p in placers.values() {
                let f = p.map.features(&state, &scores, now);
                let row: Vec<f64> = p.column.iter().map(|&c| f64::from(f[c][0])).collect();
                let at = segments::assign(&p.stored.features, std::slice::from_ref(&row), &p.discovery)[0];
                if let Some(name) = p.adopted.get(&at) {
                    members.get_mut(name).expect("every adopted name").push(s.customer.clone());
                }
            }
        }
        if page.len() < 2_000 {
            break;
        }
    }
    let trace = TraceId::new();
    let at = time::OffsetDateTime::now_utc();
    let at_ms = crate::outbox::now_ms();
    let origin_us = at_ms * 1000;
    let mut summary = RefreshSummary { customers, trace_id: Some(trace.to_string()), ..Default::default() };
    for a in &adopted {
        let new = members.remove(&a.name).unwrap_or_default();
        let old: HashSet<CustomerId> = store.segment_members(&a.name).await?.into_iter().collect();
        let new_set: HashSet<&CustomerId> = new.iter().collect();
        let joined: Vec<&CustomerId> = new.iter().filter(|c| !old.contains(*c)).collect();
        let left: Vec<&CustomerId> = old.iter().filter(|c| !new_set.contains(c)).collect();
        let stayed = old.len() - left.len();
        let stability = (a.refreshes > 0 && !old.is_empty()).then(|| stayed as f64 / old.len() as f64);
        let mut audit: Vec<AuditRecord> = Vec::with_capacity(joined.len() + left.len() + 1);
        let detail = |change: &str| {
            serde_json::json!({"segment": a.name, "change": change, "discovery": a.discovery_id,
                "proposal": format!("{}-{}", a.discovery_id, a.proposal + 1)})
        };
        for c in &joined {
            audit.push(record(trace, Some((*c).clone()), at, detail("joined")));
        }
        for c in &left {
            audit.push(record(trace, Some((*c).clone()), at, detail("left")));
        }
        // The lists the segment follows.
        let mut outbox = Vec::new();
        if !a.lists.is_empty() && (!joined.is_empty() || !left.is_empty()) {
            let wanted: Vec<CustomerId> = joined.iter().chain(left.iter()).map(|c| (*c).clone()).collect();
            let mut states: HashMap<CustomerId, CustomerState> = HashMap::new();
            for chunk in wanted.chunks(1_000) {
                for s in store.load_states(chunk).await? {
                    if let Ok(state) = CustomerState::decode(&s.state) {
                        states.insert(s.customer.clone(), state);
                    }
                }
            }
            for list in &a.lists {
                let mut push = |action: Action| {
                    if let Ok(action_json) = serde_json::to_string(&action) {
                        outbox.push(NewOutboxItem {
                            trace_id: trace,
                            customer: action.customer().clone(),
                            destination: list.destination.clone(),
                            action_json,
                            origin_us,
                        });
                    }
                };
                for c in &joined {
                    let Some(state) = states.get(*c) else { continue };
                    if nudge_policy::flows::email_consent(state, None) {
                        push(Action::AddToList {
                            customer: (*c).clone(),
                            email: state.email.clone(),
                            list_id: list.list_id.clone(),
                        });
                    }
                }
                for c in &left {
                    push(Action::RemoveFromList {
                        customer: (*c).clone(),
                        email: states.get(*c).and_then(|s| s.email.clone()),
                        list_id: list.list_id.clone(),
                    });
                }
            }
        }
        let change = SegmentChange {
            segment: a.name.clone(),
            before: old.len() as u64,
            members: new.len() as u64,
            joined: joined.len() as u64,
            left: left.len() as u64,
            stability,
            list_changes: outbox.len() as u64,
        };
        audit.push(record(trace, None, at, serde_json::to_value(&change)?));
        store
            .commit_processing(vec![ProcessOutcome {
                trace_id: Some(trace),
                outbox,
                audit,
                ..Default::default()
            }])
            .await?;
        store
            .replace_segment_members(SegmentRefresh {
                segment: a.name.clone(),
                at_ms,
                members: new,
                stability,
                joined: change.joined,
                left: change.left,
            })
            .await?;
        summary.segments.push(change);
    }
    load_into(&**store, scoring).await?;
    summary.seconds = started.elapsed().as_secs_f64();
    Ok(summary)
}

fn record(
    trace: TraceId,
    customer: Option<CustomerId>,
    at: time::OffsetDateTime,
    detail: serde_json::Value,
) -> AuditRecord {
    AuditRecord { trace_id: trace, customer, stage: AuditStage::SegmentMembership, at, detail }
}

/// Loads the stored membership into `scoring` (none adopted: the `segments` attribute is not written).
pub async fn load_into(store: &dyn Store, scoring: &Scoring) -> anyhow::Result<()> {
    let adopted = store.adopted_segments().await?;
    if adopted.is_empty() {
        scoring.set_adopted_segments(None);
        return Ok(());
    }
    let mut map: HashMap<CustomerId, Vec<String>> = HashMap::new();
    for (c, s) in store.segment_memberships().await? {
        map.entry(c).or_default().push(s);
    }
    scoring.set_adopted_segments(Some(Arc::new(map)));
    Ok(())
}

/// A fingerprint of the adopted segments' refreshes: the server reloads the membership when it changes
/// (a refresh or an adoption by the CLI while it serves).
pub async fn fingerprint(store: &dyn Store) -> anyhow::Result<String> {
    Ok(store
        .adopted_segments()
        .await?
        .iter()
        .map(|a| format!("{}:{}:{}", a.name, a.refreshes, a.refreshed_at_ms.unwrap_or(0)))
        .collect::<Vec<_>>()
        .join("|"))
}

/// The server's scheduled refresh (`segments.refresh_schedule`).
pub struct ScheduledRefresh {
    pub store: Arc<dyn Store>,
    pub scoring: Arc<Scoring>,
    pub schedule: nudge_policy::schedule::Schedule,
}

impl ScheduledRefresh {
    /// Refreshes at every occurrence of the schedule until `shutdown`.
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            let now = time::OffsetDateTime::now_utc();
            let Some(next) = self.schedule.next_after(now) else { return };
            let wait = std::time::Duration::try_from(next - now).unwrap_or_default();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
            match refresh(&self.store, &self.scoring).await {
                Ok(s) => {
                    for c in &s.segments {
                        tracing::info!(segment = %c.segment, members = c.members, joined = c.joined,
                            left = c.left, stability = ?c.stability, "segment refreshed");
                    }
                }
                Err(e) => {
                    tracing::error!(error = %format!("{e:#}"), "refreshing the adopted segments failed")
                }
            }
        }
    }
}
