//! Erasure and export of one person.
//!
//! A request (Shopify's `customers/redact` and `customers/data_request`, any source's
//! [`PrivacyRequest`], `POST /api/privacy/erase`, `nudge privacy erase`) becomes a durable privacy job:
//! for a delivery, in the processing commit of that delivery ([`outcome_for`]), so the person's state,
//! audit, outbox, timers, approvals, flow decisions and imported history leave `nudge.db` in log order and
//! a later event starts a new, empty state. The [`PrivacyWorker`] then does the rest, resuming after a
//! restart from what the store recorded:
//!
//! 1. the person's deliveries are emptied in the ingest log, their export files deleted, and the
//!    write-ahead logs checkpointed and truncated (no older page copy stays in them);
//! 2. each destination that may hold them gets a deletion request, retried with backoff until it is
//!    terminal: `done`, `failed` (refused, or retries ran out, with the reason), or `skipped` (no longer
//!    configured, or no deletion endpoint). Which destinations: those the person's outbox items reached
//!    (attempted at least once, since a timed-out attempt may have landed), and every destination a
//!    batch push ever ran for (a push sends everyone and is not recorded per person);
//! 3. once all are terminal, the job's identifiers (keys, email, phone) are overwritten and only its keyed
//!    pseudonym and counts remain, and the logs are truncated again.
//!
//! An export job writes `<data_dir>/exports/<pseudonym>-<job>.json`; an erasure of the same person
//! deletes such files.

use crate::pipeline::{fmt_ts, ms_to_ts};
use nudge_deliver::{Destination, ErasureSubject, Outcome};
use nudge_ingest::{PrivacyRequest, PrivacySubject};
use nudge_model::{CustomerId, PiiKind, PseudonymKey, TerminalState, Timestamp, TraceId};
use nudge_store::{
    DeliveryStatus, ErasureDestination, ErasureStatus, NewDelivery, NewPrivacyJob, PrivacyJob,
    PrivacyJobKind, ProcessOutcome, Store, StoreError, StoredDelivery,
};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;
use tokio::sync::{Notify, watch};

/// The delivery source of requests made through nudge itself (the API), processed in log order.
pub const SOURCE: &str = "privacy";
/// A destination's deletion request is retried this many times before it is `failed`.
pub const MAX_ATTEMPTS: u32 = 12;

static KEY: OnceLock<PseudonymKey> = OnceLock::new();

/// Sets the key of the erasure pseudonyms for this process: `privacy.pseudonym_key` when configured,
/// otherwise a random key kept in `<data_dir>/pseudonym.key` (created on first use, readable by the owner
/// only), so the same person gets the same pseudonym across restarts. The first call wins.
pub fn init_key(cfg: &crate::config::Config) -> anyhow::Result<()> {
    if KEY.get().is_some() {
        return Ok(());
    }
    let key = match cfg.privacy.key() {
        Some(k) => k,
        None => PseudonymKey::from_bytes(key_file(&cfg.storage.data_dir)?),
    };
    let _ = KEY.set(key);
    Ok(())
}

fn key_file(dir: &Path) -> anyhow::Result<Vec<u8>> {
    let path = dir.join("pseudonym.key");
    if let Ok(bytes) = std::fs::read(&path)
        && bytes.len() >= PseudonymKey::MIN_LEN
    {
        return Ok(bytes);
    }
    std::fs::create_dir_all(dir)?;
    let bytes: Vec<u8> = (0..32).map(|_| rand::random::<u8>()).collect();
    let mut opts = std::fs::OpenOptions::new();
    opts.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut opts, 0o600);
    std::io::Write::write_all(&mut opts.open(&path)?, &bytes)?;
    Ok(bytes)
}

fn key() -> &'static PseudonymKey {
    KEY.get_or_init(|| PseudonymKey::from_bytes((0..32).map(|_| rand::random::<u8>()).collect::<Vec<u8>>()))
}

/// The keyed pseudonym an erasure's lasting records name a customer by.
pub fn pseudonym_of(customer: &CustomerId) -> String {
    nudge_model::pseudonym(key(), PiiKind::Customer, &customer.to_string())
}

/// The person's main key: their platform id when the request has one, else the first key given.
fn primary(customers: &[CustomerId]) -> Option<&CustomerId> {
    customers.iter().find(|c| !c.local().starts_with("guest-")).or(customers.first())
}

/// The job a request becomes.
pub fn job_for(
    req: &PrivacyRequest,
    trace: TraceId,
    requested_by: String,
    at_ms: i64,
) -> Option<NewPrivacyJob> {
    let (kind, subject, reference) = match req {
        PrivacyRequest::Erase { subject, reference } => (PrivacyJobKind::Erase, subject, reference),
        PrivacyRequest::Export { subject, reference } => (PrivacyJobKind::Export, subject, reference),
        PrivacyRequest::EraseShop { .. } => return None,
    };
    let pseudonym = match (primary(&subject.customers), subject.email.as_deref()) {
        (Some(c), _) => pseudonym_of(c),
        (None, Some(email)) => nudge_model::pseudonym(key(), PiiKind::Email, email),
        (None, None) => return None,
    };
    Some(NewPrivacyJob {
        kind,
        customers: subject.customers.clone(),
        email: subject.email.clone(),
        phone: subject.phone.clone(),
        pseudonym,
        reference: reference.clone(),
        requested_by,
        trace_id: trace,
        at_ms,
        destinations: Vec::new(),
    })
}

/// What processing a delivery that carries a privacy request commits: the job (an erasure runs in that
/// commit) and the trace's terminal state. No audit record names the person: the store writes the
/// erasure's own record, naming the pseudonym.
pub(crate) fn outcome_for(d: &StoredDelivery, req: PrivacyRequest, now: Timestamp) -> ProcessOutcome {
    let mut out = ProcessOutcome { seq: d.seq, trace_id: Some(d.trace_id), ..Default::default() };
    out.status = Some(DeliveryStatus::Processed);
    let requested_by = format!("{}:{}", d.source, d.topic);
    let at_ms = crate::pipeline::ts_to_ms(now);
    let reason = match job_for(&req, d.trace_id, requested_by, at_ms) {
        Some(job) => {
            let reason = match job.kind {
                PrivacyJobKind::Erase => format!(
                    "privacy: {} erased here; deletion requested from the destinations holding them (`nudge privacy status`)",
                    job.pseudonym
                ),
                PrivacyJobKind::Export => format!("privacy: export of {} requested", job.pseudonym),
            };
            out.privacy = Some(job);
            reason
        }
        None => match req {
            PrivacyRequest::EraseShop { shop, .. } => {
                tracing::warn!(%shop, "shop erasure requested; not automated yet, the merchant must act");
                format!("privacy: erasure of shop {shop} is not automated yet")
            }
            _ => "privacy: the request names no customer and no email".to_string(),
        },
    };
    crate::telemetry::processed("ignored");
    out.terminal = Some(TerminalState::Ignored(reason));
    out
}

/// The request `customer` (with the email and phone nudge has for them) is, for the CLI and the API.
pub async fn subject_for(store: &dyn Store, customer: &CustomerId) -> Result<PrivacySubject, StoreError> {
    let mut subject = PrivacySubject { customers: vec![customer.clone()], email: None, phone: None };
    if let Some(s) = store.load_states(std::slice::from_ref(customer)).await?.into_iter().next() {
        let state = nudge_state::CustomerState::decode(&s.state).ok();
        subject.email = s.email.clone().or_else(|| state.as_ref().and_then(|st| st.email.clone()));
        subject.phone = state.and_then(|st| st.phone);
    }
    if let Some(email) = &subject.email
        && customer.source() == nudge_model::Source::Shopify
    {
        subject.customers.push(nudge_ingest::shopify::normalize::guest_customer_id(email));
    }
    Ok(subject)
}

/// Appends a privacy request to the ingest log (source [`SOURCE`]), so it is processed in order with the
/// deliveries before it; returns its trace.
pub async fn submit_via_log(
    store: &dyn Store,
    req: &PrivacyRequest,
    requested_by: &str,
) -> Result<TraceId, StoreError> {
    let trace = TraceId::new();
    let topic = match req {
        PrivacyRequest::Erase { .. } => "privacy/erase",
        PrivacyRequest::Export { .. } => "privacy/export",
        PrivacyRequest::EraseShop { .. } => "privacy/erase_shop",
    };
    let d = NewDelivery {
        trace_id: trace,
        source: SOURCE.into(),
        topic: topic.into(),
        shop: None,
        webhook_id: None,
        event_id: None,
        received_at_ms: crate::outbox::now_ms(),
        headers_json: serde_json::json!({ "requested_by": requested_by }).to_string(),
        body: serde_json::to_vec(req).map_err(|e| StoreError::Corrupt(e.to_string()))?,
        dedupe_keys: vec![format!("privacy:{trace}")],
        part: None,
    };
    store.commit_delivery(d).await?;
    Ok(trace)
}

/// Everything nudge holds about these keys, as the one JSON document an export is.
pub async fn export_document(
    store: &dyn Store,
    customers: Vec<CustomerId>,
) -> Result<serde_json::Value, StoreError> {
    let export = store.export_customer(customers).await?;
    let mut doc = serde_json::to_value(&export).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    // The states as JSON, as the state crate serialises them (the store keeps them in its compact encoding).
    let states = export
        .states
        .iter()
        .map(|b| {
            let state =
                nudge_state::CustomerState::decode(b).map_err(|e| StoreError::Corrupt(e.to_string()))?;
            serde_json::to_value(&state).map_err(|e| StoreError::Corrupt(e.to_string()))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if let Some(m) = doc.as_object_mut() {
        m.insert("states".into(), states.into());
        m.insert("generated_at".into(), fmt_ts(time::OffsetDateTime::now_utc()).into());
        m.insert("format".into(), "nudge-export-v1".into());
    }
    Ok(doc)
}

/// Drives privacy jobs to their end (see the module docs).
pub struct PrivacyWorker {
    pub store: Arc<dyn Store>,
    pub destinations: HashMap<String, Arc<dyn Destination>>,
    pub data_dir: PathBuf,
}

/// What one pass over the jobs did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Pass {
    pub finished: usize,
    pub pending: usize,
}

impl PrivacyWorker {
    /// Takes every unfinished job as far as it can go now.
    pub async fn step(&self) -> Result<Pass, StoreError> {
        let mut pass = Pass::default();
        for job in self.store.privacy_jobs(true, None).await? {
            match self.advance(&job).await {
                Ok(true) => pass.finished += 1,
                Ok(false) => pass.pending += 1,
                Err(e) => {
                    tracing::error!(job = job.id, error = %e, "privacy job failed a step; retried later");
                    pass.pending += 1;
                }
            }
        }
        Ok(pass)
    }

    /// Runs passes until nothing is pending or `timeout` passes; the last pass.
    pub async fn run_until_done(&self, timeout: Duration) -> Result<Pass, StoreError> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let pass = self.step().await?;
            if pass.pending == 0 || tokio::time::Instant::now() >= deadline {
                return Ok(pass);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// The server's loop: a pass on every wake and every few seconds.
    pub async fn run(self: Arc<Self>, wake: Arc<Notify>, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            if let Err(e) = self.step().await {
                tracing::error!(error = %e, "privacy worker pass failed");
            }
            tokio::select! {
                _ = wake.notified() => {}
                _ = tokio::time::sleep(Duration::from_secs(2)) => {}
                _ = shutdown.changed() => {}
            }
        }
    }

    /// One job as far as it goes now; true when it finished.
    async fn advance(&self, job: &PrivacyJob) -> Result<bool, StoreError> {
        if job.kind == PrivacyJobKind::Export {
            let doc = export_document(&*self.store, job.customers.clone()).await?;
            let dir = self.data_dir.join("exports");
            let path = dir.join(format!("{}-{}.json", job.pseudonym, job.id));
            std::fs::create_dir_all(&dir)
                .and_then(|()| std::fs::write(&path, serde_json::to_vec_pretty(&doc).unwrap_or_default()))
                .map_err(|e| StoreError::Database(format!("writing the export: {e}")))?;
            let file = path.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
            self.store
                .finish_privacy_job(job.id, serde_json::json!({ "file": format!("exports/{file}") }))
                .await?;
            tracing::info!(job = job.id, pseudonym = %job.pseudonym, %file, "privacy export written");
            return Ok(true);
        }
        let mut files = 0u64;
        if !job.log_erased {
            let n = self.store.erase_from_log(job.id).await?;
            files = self.remove_exports(&job.pseudonym);
            self.compact().await;
            tracing::info!(job = job.id, pseudonym = %job.pseudonym, deliveries = n, "erased from the ingest log");
        }
        let subject = ErasureSubject {
            external_ids: job.customers.iter().map(|c| c.to_string()).collect(),
            email: job.email.clone(),
            phone: job.phone.clone(),
        };
        let now = crate::outbox::now_ms();
        for d in job.destinations.iter().filter(|d| !d.status.is_terminal() && d.next_attempt_at_ms <= now) {
            let next = self.request(d, &subject, job).await;
            tracing::info!(job = job.id, destination = %d.destination, status = next.status.as_str(), "erasure request");
            self.store.record_erasure_destination(job.id, next).await?;
        }
        let now_job = self.store.privacy_jobs(false, Some(job.pseudonym.clone())).await?;
        let Some(current) = now_job.into_iter().find(|j| j.id == job.id) else { return Ok(false) };
        if !current.log_erased || current.destinations.iter().any(|d| !d.status.is_terminal()) {
            return Ok(false);
        }
        self.store.finish_privacy_job(job.id, serde_json::json!({ "export_files": files })).await?;
        self.compact().await;
        tracing::info!(job = job.id, pseudonym = %job.pseudonym, "erasure finished");
        Ok(true)
    }

    /// One destination's deletion request and where it leaves it.
    async fn request(
        &self,
        d: &ErasureDestination,
        subject: &ErasureSubject,
        job: &PrivacyJob,
    ) -> ErasureDestination {
        let now = crate::outbox::now_ms();
        let mut next = ErasureDestination { attempts: d.attempts + 1, updated_at_ms: now, ..d.clone() };
        let Some(dest) = self.destinations.get(&d.destination) else {
            next.status = ErasureStatus::Skipped;
            next.detail = Some("not configured any more: ask the tool's support to delete the person".into());
            next.attempts = d.attempts;
            return next;
        };
        if !dest.can_erase() {
            next.status = ErasureStatus::Skipped;
            next.detail =
                Some(format!("{} has no deletion endpoint: delete the person there by hand", d.destination));
            next.attempts = d.attempts;
            return next;
        }
        let outcome = dest.erase(subject).await;
        let text = scrub(&outcome.to_string(), job);
        match outcome {
            Outcome::Delivered { .. } => {
                next.status = ErasureStatus::Done;
                next.detail = Some(text);
            }
            Outcome::Rejected { .. } => {
                next.status = ErasureStatus::Failed;
                next.detail = Some(text);
            }
            Outcome::Retry { retry_after, .. } if next.attempts < MAX_ATTEMPTS => {
                let backoff =
                    Duration::from_secs(1u64 << next.attempts.min(12)).min(Duration::from_secs(3600));
                let wait = retry_after.map_or(backoff, |r| r.max(backoff));
                next.next_attempt_at_ms = now + wait.as_millis() as i64;
                next.detail = Some(text);
            }
            Outcome::Retry { .. } => {
                next.status = ErasureStatus::Failed;
                next.detail = Some(format!("gave up after {} attempts: {text}", next.attempts));
            }
        }
        next
    }

    /// Deletes the person's export files; how many.
    fn remove_exports(&self, pseudonym: &str) -> u64 {
        let Ok(entries) = std::fs::read_dir(self.data_dir.join("exports")) else { return 0 };
        let prefix = format!("{pseudonym}-");
        let mut n = 0;
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(&prefix) && std::fs::remove_file(e.path()).is_ok()
            {
                n += 1;
            }
        }
        n
    }

    async fn compact(&self) {
        if let Err(e) = self.store.compact().await {
            tracing::warn!(error = %e, "truncating the write-ahead logs after an erasure; retried at the next one");
        }
    }
}

/// An answer's text with the person's identifiers replaced by the pseudonym (a tool may quote them).
fn scrub(text: &str, job: &PrivacyJob) -> String {
    let mut t = text.to_string();
    let ids = job.customers.iter().map(|c| c.to_string()).chain(job.email.clone()).chain(job.phone.clone());
    for id in ids.filter(|i| i.len() >= 3) {
        t = t.replace(&id, &job.pseudonym);
    }
    t
}

/// A job as a line of `nudge privacy status`.
pub fn describe(job: &PrivacyJob) -> String {
    let mut s = format!(
        "job {} {} {} requested by {} at {}: {}",
        job.id,
        job.kind.as_str(),
        job.pseudonym,
        job.requested_by,
        fmt_ts(ms_to_ts(job.created_at_ms)),
        if job.done { "done" } else { "in progress" }
    );
    if job.kind == PrivacyJobKind::Erase {
        s.push_str(&format!("\n  removed: {}", job.summary));
        for d in &job.destinations {
            s.push_str(&format!(
                "\n  {:<12} {:<8} attempts {}{}",
                d.destination,
                d.status.as_str(),
                d.attempts,
                d.detail.as_deref().map(|t| format!(" — {t}")).unwrap_or_default()
            ));
        }
        if job.destinations.is_empty() {
            s.push_str("\n  no destination held them");
        }
    } else if let Some(file) = job.summary.get("file").and_then(|f| f.as_str()) {
        s.push_str(&format!("\n  file: {file}"));
    }
    s
}
