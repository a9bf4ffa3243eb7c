//! The copy stage: generated copy for trigger events that hold a pending copy request.
//!
//! A flow's `generate_copy` action never calls the LLM while the flow decides: the decision commits with a
//! pseudonymous [`CopyRequest`] in each of its trigger events (the processing pipeline stays as fast as it
//! was). The copy is generated here, off the decision path, in two places:
//! - the outbox worker ([`crate::outbox`]), before it sends items that hold a request: the batch's
//!   generations run concurrently (each bounded by `llm.timeout`), and the filled actions are stored
//!   ([`Store::store_generated_copy`]) before the send, so a retry sends the same copy and never pays twice;
//! - [`CopyStage::run_approvals`], which fills pending approval items soon after they are created, so the
//!   approval queue shows the copy a person approves (approving then sends exactly that copy).
//!
//! Without `[llm]` every request gets its prompt's fallback copy. Every generation is audited (stage
//! `copy_generated`: the prompt's name and version, tokens, attempts, the fallback and why, the copy),
//! counted in `/metrics`, and its tokens are added to the month's usage in the store, which is read back
//! into the client's budget at boot.

use crate::telemetry;
use futures::StreamExt;
use nudge_llm::{CopyContext, LlmClient, PromptSpec};
use nudge_model::{Action, AuditRecord, AuditStage, COPY_REQUEST_PROPERTY, CopyRequest, CustomerId, TraceId};
use nudge_store::{CopyFill, LlmUsage, Store, StoreError};
use serde_json::{Map, Value, json};
use std::collections::{BTreeMap, HashSet};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Generations run at once for one batch or one round of approval items.
pub const CONCURRENCY: usize = 32;
/// Approval items filled per round.
const APPROVAL_ROUND: usize = 64;

/// The copy of one request, generated or the fallback.
#[derive(Debug, Clone, PartialEq)]
pub struct Copy {
    /// The event property the copy goes into (`ai_copy`).
    pub target: String,
    pub prompt: String,
    pub version: u32,
    pub slots: BTreeMap<String, String>,
    pub fallback: bool,
    /// Why the fallback was used.
    pub reason: Option<String>,
    /// Tokens used (0 when no call was made).
    pub tokens: u64,
    /// HTTP requests made.
    pub attempts: u32,
    pub request_id: Option<String>,
    /// How long the generation took.
    pub elapsed: Duration,
}

impl Copy {
    /// The object a trigger event carries: the slots, `prompt` (`winback@2`) and `fallback`.
    pub fn object(&self) -> Value {
        let mut o: Map<String, Value> =
            self.slots.iter().map(|(k, v)| (k.clone(), Value::String(v.clone()))).collect();
        o.insert("prompt".into(), format!("{}@{}", self.prompt, self.version).into());
        o.insert("fallback".into(), self.fallback.into());
        Value::Object(o)
    }

    /// The audit record's detail. Holds the copy (no personal data: the prompt had none) and never a key.
    fn audit_detail(&self, item: Value) -> Value {
        json!({
            "prompt": self.prompt, "version": self.version, "target": self.target, "item": item,
            "fallback": self.fallback, "reason": self.reason, "tokens": self.tokens,
            "attempts": self.attempts, "request_id": self.request_id,
            "latency_ms": (self.elapsed.as_secs_f64() * 1000.0 * 100.0).round() / 100.0,
            "copy": self.slots,
        })
    }

    /// The `outcome` label of the generations counter.
    fn outcome(&self) -> &'static str {
        if self.fallback { "fallback" } else { "generated" }
    }
}

/// An action with its copy filled in, and the copy; or why it has none.
type Filled = Result<(Action, Copy), CopyError>;

/// Why a request could not be given copy at all (not even the fallback).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CopyError {
    /// The stored request does not parse, or names a prompt no longer configured.
    Unusable(String),
    /// The copy could not be stored; nothing is sent until it is.
    Store(String),
}

impl std::fmt::Display for CopyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CopyError::Unusable(m) => write!(f, "no copy can be generated: {m}"),
            CopyError::Store(m) => write!(f, "the generated copy could not be stored: {m}"),
        }
    }
}

/// The prompts, the client (when `[llm]` is configured) and the store the copy goes to.
pub struct CopyStage {
    store: Arc<dyn Store>,
    client: Option<Arc<LlmClient>>,
    prompts: RwLock<Vec<PromptSpec>>,
    /// Approval items whose requests cannot be served (an unknown prompt): not retried every round.
    unusable: Mutex<HashSet<i64>>,
}

/// The UTC month usage is counted under (`2026-12`).
pub fn month_of(t: time::OffsetDateTime) -> String {
    format!("{:04}-{:02}", t.year(), u8::from(t.month()))
}

impl CopyStage {
    pub fn new(store: Arc<dyn Store>, client: Option<Arc<LlmClient>>, prompts: Vec<PromptSpec>) -> Self {
        CopyStage { store, client, prompts: RwLock::new(prompts), unusable: Mutex::new(HashSet::new()) }
    }

    /// Builds the stage from the configuration (`[llm]`, `[[prompts]]`) and restores this month's token use
    /// from the store into the client's budget.
    pub async fn from_config(store: Arc<dyn Store>, cfg: &crate::config::Config) -> anyhow::Result<Self> {
        let client = match &cfg.llm {
            Some(l) => {
                install_crypto();
                Some(Arc::new(
                    LlmClient::new(l.clone()).map_err(|e| anyhow::anyhow!("the LLM client (llm.*): {e}"))?,
                ))
            }
            None => None,
        };
        let stage = CopyStage::new(store, client, cfg.prompts.clone());
        stage.restore_usage().await?;
        Ok(stage)
    }

    /// Reads this month's token use from the store into the client's budget, and shows it in `/metrics`.
    pub async fn restore_usage(&self) -> Result<u64, StoreError> {
        let usage = self.store.llm_usage(&month_of(time::OffsetDateTime::now_utc())).await?;
        if let Some(c) = &self.client {
            c.set_tokens_used(usage.tokens);
        }
        self.publish_budget();
        Ok(usage.tokens)
    }

    pub fn client(&self) -> Option<&Arc<LlmClient>> {
        self.client.as_ref()
    }

    /// Replaces the prompts (a flow reload that brings new ones).
    pub fn replace_prompts(&self, prompts: Vec<PromptSpec>) {
        *self.prompts.write().unwrap_or_else(|e| e.into_inner()) = prompts;
        self.unusable.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn prompt(&self, name: &str, version: u32) -> Option<PromptSpec> {
        self.prompts
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .iter()
            .find(|p| p.name == name && p.version == version)
            .cloned()
    }

    fn publish_budget(&self) {
        match &self.client {
            Some(c) => {
                let b = c.budget_status();
                telemetry::llm_budget(b.used, b.budget);
            }
            None => telemetry::llm_budget(0, None),
        }
    }

    /// Generates the copy of one request: through the LLM, or the prompt's fallback copy when `[llm]` is not
    /// configured or the generation fails. `Err` only when the request names no configured prompt.
    pub async fn generate(&self, request: &CopyRequest) -> Result<Copy, CopyError> {
        let prompt = self.prompt(&request.prompt, request.version).ok_or_else(|| {
            CopyError::Unusable(format!("prompt `{}` is not configured", request.prompt_key()))
        })?;
        let started = Instant::now();
        let copy = match &self.client {
            None => Copy {
                target: request.target.clone(),
                prompt: prompt.name.clone(),
                version: prompt.version,
                slots: prompt.fallback_slots(),
                fallback: true,
                reason: Some("no [llm] is configured: the prompt's fallback copy".into()),
                tokens: 0,
                attempts: 0,
                request_id: None,
                elapsed: started.elapsed(),
            },
            Some(client) => {
                let g = client.generate(&prompt, &CopyContext::from_request(request)).await;
                Copy {
                    target: request.target.clone(),
                    prompt: prompt.name.clone(),
                    version: prompt.version,
                    slots: g.slots,
                    fallback: g.fallback_used,
                    reason: g.reason.map(|r| r.to_string()),
                    tokens: g.tokens,
                    attempts: g.attempts,
                    request_id: g.request_id,
                    elapsed: started.elapsed(),
                }
            }
        };
        telemetry::llm_generation(copy.outcome(), copy.elapsed.as_secs_f64());
        Ok(copy)
    }

    /// Fills one action's pending request: `None` when it holds none.
    async fn fill(&self, action: &Action) -> Option<Filled> {
        let Action::TriggerEvent { properties, .. } = action else { return None };
        let request = match CopyRequest::pending_in(properties)? {
            Ok(r) => r,
            Err(e) => return Some(Err(CopyError::Unusable(e))),
        };
        Some(self.generate(&request).await.map(|copy| {
            let mut filled = action.clone();
            if let Action::TriggerEvent { properties, .. } = &mut filled {
                properties.remove(COPY_REQUEST_PROPERTY);
                properties.insert(request.target.clone(), copy.object());
            }
            (filled, copy)
        }))
    }

    /// Fills the outbox items among `items` (id, trace, customer, action) that hold a copy request, stores
    /// the filled actions with their audit records and the month's usage in one write, and answers per
    /// item: `None` for an item without a request, else the filled action or why there is none. When the
    /// write fails every filled item answers [`CopyError::Store`]: nothing is sent with copy that is not
    /// stored.
    pub async fn fill_outbox(
        &self,
        items: Vec<(i64, TraceId, CustomerId, Action)>,
    ) -> Vec<Option<Result<Action, CopyError>>> {
        let filled: Vec<(i64, TraceId, CustomerId, Option<Filled>)> = futures::stream::iter(items)
            .map(|(id, trace, customer, action)| async move {
                let f = self.fill(&action).await;
                (id, trace, customer, f)
            })
            .buffered(CONCURRENCY)
            .collect()
            .await;
        let mut fill = CopyFill::default();
        for (id, trace, customer, f) in &filled {
            if let Some(Ok((action, copy))) = f {
                fill.outbox.push((*id, serde_json::to_string(action).expect("actions serialise")));
                fill.audit.push(record(*trace, customer, copy, json!({ "outbox_item": id })));
            }
        }
        let stored = self.store(fill).await;
        filled
            .into_iter()
            .map(|(_, _, _, f)| {
                f.map(|r| match (&stored, r) {
                    (_, Err(e)) => Err(e),
                    (Ok(()), Ok((action, _))) => Ok(action),
                    (Err(e), Ok(_)) => Err(CopyError::Store(e.to_string())),
                })
            })
            .collect()
    }

    async fn store(&self, mut fill: CopyFill) -> Result<(), StoreError> {
        if fill.audit.is_empty() {
            return Ok(());
        }
        let details: Vec<(bool, u64)> = fill
            .audit
            .iter()
            .map(|r| (r.detail["fallback"] == true, r.detail["tokens"].as_u64().unwrap_or(0)))
            .collect();
        fill.usage = Some(LlmUsage {
            month: month_of(time::OffsetDateTime::now_utc()),
            tokens: details.iter().map(|d| d.1).sum(),
            generations: details.len() as u64,
            fallbacks: details.iter().filter(|d| d.0).count() as u64,
        });
        let r = self.store.store_generated_copy(fill).await.map(|_| ());
        self.publish_budget();
        r
    }

    /// One round of the approval filler: pending approval items that still wait for copy get it (stored
    /// with its audit records); returns how many items were filled.
    pub async fn fill_approvals(&self) -> Result<usize, StoreError> {
        let skip = self.unusable.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let items = self.store.approvals_awaiting_copy(APPROVAL_ROUND + skip.len()).await?;
        let items: Vec<_> =
            items.into_iter().filter(|a| !skip.contains(&a.id)).take(APPROVAL_ROUND).collect();
        if items.is_empty() {
            return Ok(0);
        }
        let results: Vec<_> = futures::stream::iter(items)
            .map(|item| async move {
                let mut queued = match item.actions.as_array() {
                    Some(a) => a.clone(),
                    None => {
                        return (item, Err(CopyError::Unusable("the item's actions are not a list".into())));
                    }
                };
                let mut copies = Vec::new();
                for q in &mut queued {
                    let Ok(action) = serde_json::from_value::<Action>(q["action"].clone()) else { continue };
                    match self.fill(&action).await {
                        None => {}
                        Some(Ok((filled, copy))) => {
                            q["action"] = serde_json::to_value(&filled).expect("actions serialise");
                            copies.push(copy);
                        }
                        Some(Err(e)) => return (item, Err(e)),
                    }
                }
                (item, Ok((Value::Array(queued), copies)))
            })
            .buffered(CONCURRENCY / 4)
            .collect()
            .await;
        let mut fill = CopyFill::default();
        for (item, r) in results {
            match r {
                Ok((actions, copies)) => {
                    fill.approvals.push((item.id, actions.to_string()));
                    for copy in &copies {
                        fill.audit.push(record(
                            item.trace_id,
                            &item.customer,
                            copy,
                            json!({ "approval_item": item.id }),
                        ));
                    }
                }
                Err(e) => {
                    tracing::warn!(approval = item.id, error = %e, "an approval item's copy cannot be generated");
                    self.unusable.lock().unwrap_or_else(|e| e.into_inner()).insert(item.id);
                }
            }
        }
        let n = fill.approvals.len();
        self.store(fill).await?;
        Ok(n)
    }

    /// Fills approval items' copy every `tick` (and at once after a round that found work) until
    /// `shutdown`.
    pub async fn run_approvals(self: Arc<Self>, tick: Duration, mut shutdown: watch::Receiver<bool>) {
        loop {
            if *shutdown.borrow() {
                return;
            }
            match self.fill_approvals().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::error!(error = %e, "filling approval items' copy failed"),
            }
            tokio::select! {
                _ = tokio::time::sleep(tick) => {}
                _ = shutdown.changed() => {}
            }
        }
    }
}

/// The LLM client needs a TLS crypto provider installed (the server installs one at start; a CLI command
/// may be first).
fn install_crypto() {
    let _ = rustls::crypto::ring::default_provider().install_default();
}

fn record(trace: TraceId, customer: &CustomerId, copy: &Copy, item: Value) -> AuditRecord {
    AuditRecord {
        trace_id: trace,
        customer: Some(customer.clone()),
        stage: AuditStage::CopyGenerated,
        at: time::OffsetDateTime::now_utc(),
        detail: copy.audit_detail(item),
    }
}
