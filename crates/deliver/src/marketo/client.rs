//! The Marketo HTTP client: turns a batch of actions into as few calls as Marketo's limits allow, waits
//! for the rate limiter (calls per rolling 20 s) and the in-flight cap before each call, sends the token
//! as `Authorization: Bearer`, and settles every action by Marketo's answer at the level it came: HTTP,
//! the response (`success:false` with a 6xx/7xx code) or the record (`status:"skipped"`).
//!
//! One delivery makes one attempt; the only repeat inside a call is after 601/602 (token invalid or
//! expired), once, because those codes mean the request was not executed. After 606 (rate limit) the
//! client stays quiet for Marketo's 20-s window and after 607 (daily quota) until the quota resets
//! (midnight US Central, taken as UTC−6): actions arriving meanwhile come back as `Retry` without a call.
//!
//! Custom activities are write-once with no dedupe key, so they are delivered at most once: the insert
//! is never repeated inside the client, and when it gets no answer (a timeout, a connection lost after
//! sending) or an answer that cannot be read, the action is `Rejected` rather than retried, because it may
//! already be recorded. Syncing the lead first is an upsert and safe to repeat.

use super::config::{MarketoConfig, RATE_WINDOW};
use super::request::{
    self, ACTIVITIES, CodeAction, DESCRIBE, Envelope, LIST_ADD, LIST_REMOVE, MAX_BODY_BYTES, Plan, SYNC_LEADS,
};
use super::token::TokenSource;
use crate::endpoint::json_client;
use crate::endpoint::{body_excerpt, read_capped, transport_error};
use crate::{DeliverError, Destination, Outcome, RateLimiter, SharedLimits};
use nudge_model::Action;
use reqwest::Method;
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use serde_json::Value;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use time::OffsetDateTime;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;

/// Describe is fetched again after this long.
pub const FIELDS_MAX_AGE: Duration = Duration::from_secs(24 * 3600);
/// How much of an answer is read; a full Sync Leads answer of 300 records is far smaller.
const MAX_ANSWER_BYTES: usize = 4 * 1024 * 1024;

/// A [`Destination`] writing leads, custom activities and static-list membership to one Marketo instance.
pub struct MarketoClient {
    http: reqwest::Client,
    /// Scheme and host, without a trailing slash.
    base_url: String,
    config: MarketoConfig,
    token: TokenSource,
    /// Calls per rolling 20 s (identity calls are not counted, as at Marketo).
    limiter: RateLimiter,
    /// Calls in flight at once.
    in_flight: Semaphore,
    /// The instance's lead fields (REST API names) and when they were read.
    fields: tokio::sync::Mutex<Option<(Instant, Arc<HashSet<String>>)>>,
    /// Lookup values of lead records in flight, so two upserts of one lead never race (Marketo can
    /// create duplicates when they do).
    keys: KeyGuard,
    /// Until when the client sends nothing, and why (after 606 or 607).
    pause: Mutex<Option<(Instant, String)>>,
}

/// What became of one call.
enum Call {
    /// HTTP 200 with `success:true`.
    Done(Envelope),
    /// Anything else, as the outcome for each action in the call. `maybe_executed` is set when Marketo may
    /// have carried the call out without us hearing so (no answer after sending, an unreadable answer).
    Failed { outcome: Outcome, maybe_executed: bool },
}

impl MarketoClient {
    /// Builds a client after checking `config`. A TLS crypto provider must already be installed.
    pub fn new(config: MarketoConfig) -> Result<Self, DeliverError> {
        config.validate()?;
        // The token changes, so it is set per request; a redirect would carry it (or, for Identity, the
        // secret) to another host.
        let http = json_client(None, config.timeout, config.allow_private)?;
        let base_url = config.base_url.trim().trim_end_matches('/').to_string();
        let token = TokenSource::new(&base_url, &config.client_id, &config.client_secret, config.timeout)
            .ok_or_else(|| DeliverError::Config("marketo base_url: not a URL".into()))?;
        Ok(MarketoClient {
            http,
            base_url,
            token,
            limiter: RateLimiter::with_windows(&[(config.rate, RATE_WINDOW)])
                .with_margin(Duration::from_millis(200)),
            in_flight: Semaphore::new(config.max_in_flight),
            fields: tokio::sync::Mutex::new(None),
            keys: KeyGuard::default(),
            pause: Mutex::new(None),
            config,
        })
    }

    pub fn config(&self) -> &MarketoConfig {
        &self.config
    }

    /// This client with its rate limiter (every call but Identity's) shared by every node of the deployment
    /// through Redis, so that together they stay within the account's quota. `destination` names the
    /// account's limit in the key (`<prefix>:limit:<destination>:api`): nodes sending to one account must use
    /// the same name, and two accounts different ones.
    pub fn with_shared_limits(mut self, limits: &SharedLimits, destination: &str) -> Self {
        self.limiter = self.limiter.shared(limits, &format!("{destination}:api"));
        self
    }

    /// How many times Marketo Identity was asked for a token.
    pub fn token_fetches(&self) -> u64 {
        self.token.fetches()
    }

    /// The rate limiter's windows, as `(calls, window)`.
    pub fn rate_windows(&self) -> Vec<(u32, Duration)> {
        self.limiter.windows()
    }

    /// Until when the client sends nothing after a 606 or 607, if it is paused.
    pub fn paused_for(&self) -> Option<Duration> {
        let pause = self.pause.lock().unwrap_or_else(|e| e.into_inner());
        pause
            .as_ref()
            .map(|(until, _)| until.saturating_duration_since(Instant::now()))
            .filter(|d| !d.is_zero())
    }

    fn paused(&self, endpoint: &str) -> Option<Outcome> {
        let pause = self.pause.lock().unwrap_or_else(|e| e.into_inner());
        let (until, why) = pause.as_ref()?;
        let left = until.saturating_duration_since(Instant::now());
        (!left.is_zero()).then(|| Outcome::Retry {
            endpoint: endpoint.to_string(),
            status: None,
            error: format!("not sent: Marketo is paused for another {}s after {why}", left.as_secs().max(1)),
            retry_after: Some(left),
        })
    }

    fn pause_for(&self, wait: Duration, why: String) {
        let until = Instant::now() + wait;
        let mut pause = self.pause.lock().unwrap_or_else(|e| e.into_inner());
        if pause.as_ref().is_none_or(|(current, _)| *current < until) {
            tracing::warn!(seconds = wait.as_secs(), reason = %why, "marketo destination paused");
            *pause = Some((until, why));
        }
    }

    /// One call: pause check, in-flight cap, rate limiter, token, the request, and the answer read at
    /// all three levels. Repeated once, with a fresh token, after 601/602.
    async fn call(&self, method: Method, path: &str, label: &str, body: Option<Vec<u8>>) -> Call {
        let mut refused_token: Option<String> = None;
        loop {
            if let Some(outcome) = self.paused(label) {
                return Call::Failed { outcome, maybe_executed: false };
            }
            let Ok(_permit) = self.in_flight.acquire().await else {
                let outcome = retry(label, None, "the client is shutting down".into(), None);
                return Call::Failed { outcome, maybe_executed: false };
            };
            let token = match &refused_token {
                None => self.token.get(&self.http).await,
                Some(refused) => self.token.replace(&self.http, refused).await,
            };
            let token = match token {
                Ok(t) => t,
                Err(outcome) => return Call::Failed { outcome, maybe_executed: false },
            };
            let waited = self.limiter.acquire().await;
            if !waited.is_zero() {
                tracing::debug!(
                    endpoint = label,
                    waited_ms = waited.as_millis() as u64,
                    "waited for the marketo rate limit"
                );
            }
            let Ok(mut bearer) = HeaderValue::from_str(&format!("Bearer {token}")) else {
                let outcome = retry(
                    label,
                    None,
                    "Marketo Identity gave a token that is not a header value".into(),
                    None,
                );
                return Call::Failed { outcome, maybe_executed: false };
            };
            bearer.set_sensitive(true);
            let mut req = self
                .http
                .request(method.clone(), format!("{}{path}", self.base_url))
                .header(AUTHORIZATION, bearer);
            if let Some(body) = &body {
                req = req.header(CONTENT_TYPE, "application/json").body(body.clone());
            }
            let response = match req.send().await {
                Ok(r) => r,
                Err(e) => {
                    let error = transport_error(&e, self.config.timeout);
                    tracing::warn!(endpoint = label, %error, "marketo call failed before an answer");
                    return Call::Failed {
                        outcome: retry(label, None, error, None),
                        maybe_executed: !e.is_connect(),
                    };
                }
            };
            let status = response.status().as_u16();
            let answer = read_capped(response, MAX_ANSWER_BYTES).await;
            if status != 200 {
                let error = format!("HTTP {status}: {}", body_excerpt(&answer));
                let outcome = match status {
                    413 => Outcome::Rejected {
                        endpoint: label.into(),
                        status: Some(status),
                        error: format!("{error} (the body is above Marketo's 1 MB)"),
                    },
                    408 | 429 | 500..=599 => retry(label, Some(status), error, None),
                    _ => Outcome::Rejected { endpoint: label.into(), status: Some(status), error },
                };
                return Call::Failed { outcome, maybe_executed: false };
            }
            let envelope: Envelope = match serde_json::from_slice(&answer) {
                Ok(e) => e,
                Err(_) => {
                    let error = format!("the answer is not Marketo's envelope: {}", body_excerpt(&answer));
                    return Call::Failed {
                        outcome: retry(label, Some(200), error, None),
                        maybe_executed: true,
                    };
                }
            };
            if envelope.success {
                return Call::Done(envelope);
            }
            let first = envelope.errors.first();
            let code = first.map(|e| e.code()).unwrap_or_default();
            let text = first.map(|e| e.text()).unwrap_or_else(|| "success:false without errors".into());
            match request::code_action(&code, OffsetDateTime::now_utc()) {
                CodeAction::RefreshToken if refused_token.is_none() => {
                    tracing::debug!(endpoint = label, %code, "marketo refused the token; fetching one and repeating the call once");
                    refused_token = Some(token);
                    continue;
                }
                CodeAction::RefreshToken => {
                    let error =
                        format!("Marketo refused a freshly fetched token too ({text}); not repeated again");
                    return Call::Failed {
                        outcome: retry(label, Some(200), error, None),
                        maybe_executed: false,
                    };
                }
                CodeAction::Retry { retry_after, pause } => {
                    if let Some(wait) = pause {
                        let why = match code.as_str() {
                            "607" => {
                                "607 (daily quota reached; it resets at midnight US Central)".to_string()
                            }
                            _ => format!("{code} (rate limit: more than 100 calls in 20 s)"),
                        };
                        self.pause_for(wait, why);
                    }
                    let error = format!("Marketo error {text}");
                    return Call::Failed {
                        outcome: retry(label, Some(200), error, retry_after),
                        maybe_executed: false,
                    };
                }
                CodeAction::Reject => {
                    let error = format!("Marketo error {text}{}", hint(&code));
                    let outcome = Outcome::Rejected { endpoint: label.into(), status: Some(200), error };
                    return Call::Failed { outcome, maybe_executed: false };
                }
            }
        }
    }

    /// The instance's lead fields, from Describe cached for up to a day.
    async fn known_fields(&self) -> Result<Arc<HashSet<String>>, Outcome> {
        let mut cached = self.fields.lock().await;
        if let Some((at, fields)) = cached.as_ref()
            && at.elapsed() < FIELDS_MAX_AGE
        {
            return Ok(fields.clone());
        }
        let envelope = match self.call(Method::GET, "/rest/v1/leads/describe.json", DESCRIBE, None).await {
            Call::Done(envelope) => envelope,
            Call::Failed { outcome, .. } => return Err(outcome),
        };
        let names: HashSet<String> = envelope
            .result
            .iter()
            .filter_map(|f| f.get("rest").and_then(|r| r.get("name")).and_then(Value::as_str))
            .map(str::to_string)
            .collect();
        if names.is_empty() {
            return Err(retry(DESCRIBE, Some(200), "Describe listed no lead fields".into(), None));
        }
        let names = Arc::new(names);
        *cached = Some((Instant::now(), names.clone()));
        Ok(names)
    }

    async fn run_batch(&self, actions: &[Action]) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; actions.len()];
        let mut plans: Vec<(usize, Plan)> = Vec::new();
        for (i, action) in actions.iter().enumerate() {
            match request::plan(action, &self.config) {
                Ok(plan) => plans.push((i, plan)),
                Err(error) => {
                    outcomes[i] = Some(Outcome::Rejected {
                        endpoint: request::endpoint_of(action).into(),
                        status: None,
                        error,
                    })
                }
            }
        }
        if plans.iter().any(|(_, p)| matches!(p, Plan::Upsert { .. })) {
            let fields = self.known_fields().await;
            plans.retain(|(i, plan)| {
                if !matches!(plan, Plan::Upsert { .. }) {
                    return true;
                }
                let refused = match &fields {
                    Ok(known) => request::check_fields(plan.lead(), known)
                        .err()
                        .map(|error| Outcome::Rejected { endpoint: SYNC_LEADS.into(), status: None, error }),
                    Err(outcome) => Some(prefixed(outcome.clone(), "reading the lead fields (Describe)")),
                };
                outcomes[*i] = refused.clone();
                refused.is_none()
            });
        }
        if plans.is_empty() {
            return finish(outcomes);
        }
        let lead_ids = self.sync_leads(&plans, &mut outcomes).await;
        let mut events = Vec::new();
        let mut lists: HashMap<(u64, bool), Vec<(usize, i64)>> = HashMap::new();
        for (i, plan) in &plans {
            let Some(id) = lead_ids.get(i) else { continue };
            match plan {
                Plan::Upsert { .. } => {
                    outcomes[*i] = Some(Outcome::Delivered { endpoint: SYNC_LEADS.into(), status: 200 })
                }
                Plan::Event { activity, .. } => events.push((*i, request::activity_record(activity, *id))),
                Plan::List { list_id, remove, .. } => {
                    lists.entry((*list_id, *remove)).or_default().push((*i, *id))
                }
            }
        }
        if !events.is_empty() {
            self.insert_activities(events, &mut outcomes).await;
        }
        let mut lists: Vec<_> = lists.into_iter().collect();
        lists.sort_by_key(|(k, _)| *k);
        for ((list_id, remove), members) in lists {
            self.change_list(list_id, remove, members, &mut outcomes).await;
        }
        finish(outcomes)
    }

    /// Syncs the leads of every plan and returns the lead id per action index. Records with the same
    /// lookup value go in separate, consecutive calls; each call waits until no other call in flight
    /// carries one of its lookup values.
    async fn sync_leads(
        &self,
        plans: &[(usize, Plan)],
        outcomes: &mut [Option<Outcome>],
    ) -> HashMap<usize, i64> {
        let mut ids = HashMap::new();
        // Group by lookupField, then into rounds so that a round holds each lookup value once.
        let mut groups: Vec<(String, Vec<Round<'_>>)> = Vec::new();
        for (i, plan) in plans {
            let lead = plan.lead();
            let group = match groups.iter().position(|(field, _)| *field == lead.lookup_field) {
                Some(g) => g,
                None => {
                    groups.push((lead.lookup_field.clone(), Vec::new()));
                    groups.len() - 1
                }
            };
            let rounds = &mut groups[group].1;
            let round = rounds.iter().position(|r| r.iter().all(|(_, p)| p.lead().key != lead.key));
            match round {
                Some(r) => rounds[r].push((*i, plan)),
                None => rounds.push(vec![(*i, plan)]),
            }
        }
        for (lookup_field, rounds) in groups {
            let budget = request::record_budget(request::sync_leads_overhead(&lookup_field));
            for round in rounds {
                let sizes: Vec<usize> = round.iter().map(|(_, p)| p.lead().bytes).collect();
                for run in request::pack(&sizes, self.config.batch_size, budget) {
                    let chunk = &round[run];
                    let keys: Vec<String> =
                        chunk.iter().map(|(_, p)| format!("{lookup_field}\u{0}{}", p.lead().key)).collect();
                    let _held = self.keys.hold(keys).await;
                    let body = request::sync_leads_body(&lookup_field, chunk.iter().map(|(_, p)| p.lead()));
                    let answer = self.call(Method::POST, "/rest/v1/leads.json", SYNC_LEADS, Some(body)).await;
                    let envelope = match answer {
                        Call::Done(envelope) => envelope,
                        Call::Failed { outcome, .. } => {
                            for (i, plan) in chunk {
                                outcomes[*i] = Some(for_plan(plan, outcome.clone()));
                            }
                            continue;
                        }
                    };
                    if envelope.result.len() != chunk.len() {
                        let error = format!(
                            "Marketo answered {} results for {} records; the leads are synced again later",
                            envelope.result.len(),
                            chunk.len()
                        );
                        for (i, plan) in chunk {
                            outcomes[*i] =
                                Some(for_plan(plan, retry(SYNC_LEADS, Some(200), error.clone(), None)));
                        }
                        continue;
                    }
                    for ((i, plan), result) in chunk.iter().zip(&envelope.result) {
                        if let Some((code, text)) = request::skip_reason(result) {
                            let error = format!("Marketo skipped the lead: {text}{}", hint(&code));
                            let outcome =
                                Outcome::Rejected { endpoint: SYNC_LEADS.into(), status: Some(200), error };
                            outcomes[*i] = Some(for_plan(plan, outcome));
                            continue;
                        }
                        match request::lead_id(result) {
                            Some(id) => {
                                ids.insert(*i, id);
                            }
                            None if matches!(plan, Plan::Upsert { .. }) => {
                                ids.insert(*i, 0);
                            }
                            None => {
                                let error = "Marketo synced the lead without giving its id".to_string();
                                outcomes[*i] =
                                    Some(for_plan(plan, retry(SYNC_LEADS, Some(200), error, None)));
                            }
                        }
                    }
                }
            }
        }
        ids
    }

    /// Inserts one custom activity per event, at most once (see the module documentation).
    async fn insert_activities(&self, events: Vec<(usize, Value)>, outcomes: &mut [Option<Outcome>]) {
        let sizes: Vec<usize> = events.iter().map(|(_, r)| r.to_string().len() + 1).collect();
        let budget = request::record_budget(r#"{"input":[]}"#.len());
        for run in request::pack(&sizes, self.config.batch_size, budget) {
            let chunk = &events[run];
            let records: Vec<Value> = chunk.iter().map(|(_, r)| r.clone()).collect();
            let body = request::activities_body(&records);
            if body.len() > MAX_BODY_BYTES {
                let error = "the activity records are above Marketo's 1 MB".to_string();
                for (i, _) in chunk {
                    outcomes[*i] = Some(Outcome::Rejected {
                        endpoint: ACTIVITIES.into(),
                        status: None,
                        error: error.clone(),
                    });
                }
                continue;
            }
            let envelope = match self
                .call(Method::POST, "/rest/v1/activities/external.json", ACTIVITIES, Some(body))
                .await
            {
                Call::Done(envelope) => envelope,
                Call::Failed { outcome, maybe_executed: true } => {
                    let error = format!(
                        "{}; the activity may already be recorded and Marketo activities cannot be \
                         deduplicated, so it is not sent again (at most once)",
                        outcome.error().unwrap_or("no answer")
                    );
                    for (i, _) in chunk {
                        outcomes[*i] = Some(Outcome::Rejected {
                            endpoint: ACTIVITIES.into(),
                            status: outcome.status(),
                            error: error.clone(),
                        });
                    }
                    continue;
                }
                Call::Failed { outcome, maybe_executed: false } => {
                    for (i, _) in chunk {
                        outcomes[*i] = Some(outcome.clone());
                    }
                    continue;
                }
            };
            for (j, (i, _)) in chunk.iter().enumerate() {
                let outcome = match envelope.result.get(j) {
                    Some(result) => match request::skip_reason(result) {
                        Some((code, text)) => Outcome::Rejected {
                            endpoint: ACTIVITIES.into(),
                            status: Some(200),
                            error: format!("Marketo skipped the activity: {text}{}", hint(&code)),
                        },
                        None => Outcome::Delivered { endpoint: ACTIVITIES.into(), status: 200 },
                    },
                    // Accepted as a whole, but this record's answer is missing: not sent again.
                    None => Outcome::Rejected {
                        endpoint: ACTIVITIES.into(),
                        status: Some(200),
                        error:
                            "Marketo's answer has no result for this activity; not sent again (at most once)"
                                .into(),
                    },
                };
                outcomes[*i] = Some(outcome);
            }
        }
    }

    /// Adds leads to or removes them from one static list.
    async fn change_list(
        &self,
        list_id: u64,
        remove: bool,
        members: Vec<(usize, i64)>,
        outcomes: &mut [Option<Outcome>],
    ) {
        let (method, label) = if remove { (Method::DELETE, LIST_REMOVE) } else { (Method::POST, LIST_ADD) };
        let path = format!("/rest/v1/lists/{list_id}/leads.json");
        for chunk in members.chunks(self.config.batch_size) {
            let ids: Vec<i64> = chunk.iter().map(|(_, id)| *id).collect();
            let envelope = match self.call(method.clone(), &path, label, Some(request::list_body(&ids))).await
            {
                Call::Done(envelope) => envelope,
                Call::Failed { outcome, .. } => {
                    let outcome = prefixed(outcome, &format!("list {list_id}"));
                    for (i, _) in chunk {
                        outcomes[*i] = Some(outcome.clone());
                    }
                    continue;
                }
            };
            for (j, (i, _)) in chunk.iter().enumerate() {
                let skipped = envelope.result.get(j).and_then(request::skip_reason);
                outcomes[*i] = Some(match skipped {
                    // Removing a lead that is not a member is done already.
                    Some((code, _)) if remove && code == "1015" => {
                        Outcome::Delivered { endpoint: label.into(), status: 200 }
                    }
                    Some((code, text)) => Outcome::Rejected {
                        endpoint: label.into(),
                        status: Some(200),
                        error: format!("list {list_id}: Marketo skipped the lead: {text}{}", hint(&code)),
                    },
                    None => Outcome::Delivered { endpoint: label.into(), status: 200 },
                });
            }
        }
    }
}

fn retry(endpoint: &str, status: Option<u16>, error: String, retry_after: Option<Duration>) -> Outcome {
    Outcome::Retry { endpoint: endpoint.into(), status, error, retry_after }
}

/// A failure of the lead sync, as the outcome of an action that needed the lead first.
fn for_plan(plan: &Plan, outcome: Outcome) -> Outcome {
    match plan {
        Plan::Upsert { .. } => outcome,
        Plan::Event { .. } | Plan::List { .. } => prefixed(outcome, "syncing the lead first"),
    }
}

fn prefixed(outcome: Outcome, what: &str) -> Outcome {
    match outcome {
        Outcome::Retry { endpoint, status, error, retry_after } => {
            Outcome::Retry { endpoint, status, error: format!("{what}: {error}"), retry_after }
        }
        Outcome::Rejected { endpoint, status, error } => {
            Outcome::Rejected { endpoint, status, error: format!("{what}: {error}") }
        }
        delivered => delivered,
    }
}

fn finish(outcomes: Vec<Option<Outcome>>) -> Vec<Outcome> {
    outcomes
        .into_iter()
        .map(|o| {
            o.unwrap_or_else(|| Outcome::Retry {
                endpoint: SYNC_LEADS.into(),
                status: None,
                error: "no answer was settled for this action".into(),
                retry_after: None,
            })
        })
        .collect()
}

/// What to do about a permanent code, appended to its message.
fn hint(code: &str) -> &'static str {
    match code {
        "603" => " (the API user lacks a permission: give its role Read-Write Lead and Read-Write Activity)",
        "1006" => " (create the field in Marketo: Admin > Field Management)",
        "609" | "612" | "701" | "702" | "703" | "704" | "709" | "710" | "711" => {
            " (a request nudge built is wrong; please report it)"
        }
        "610" => " (check base_url and, for lists, the list id)",
        _ => "",
    }
}

/// Actions whose lead records go out together: each lookup value at most once.
type Round<'a> = Vec<(usize, &'a Plan)>;

/// Lookup values held by calls in flight.
#[derive(Default)]
struct KeyGuard {
    held: Mutex<HashSet<String>>,
    released: Notify,
}

/// Releases its keys when dropped.
struct HeldKeys<'a> {
    guard: &'a KeyGuard,
    keys: Vec<String>,
}

impl KeyGuard {
    /// Waits until none of `keys` is held, then holds them all.
    async fn hold(&self, keys: Vec<String>) -> HeldKeys<'_> {
        loop {
            // Created before looking, so a release between the look and the wait is not missed.
            let released = self.released.notified();
            {
                let mut held = self.held.lock().unwrap_or_else(|e| e.into_inner());
                if keys.iter().all(|k| !held.contains(k)) {
                    held.extend(keys.iter().cloned());
                    return HeldKeys { guard: self, keys };
                }
            }
            released.await;
        }
    }
}

impl Drop for HeldKeys<'_> {
    fn drop(&mut self) {
        let mut held = self.guard.held.lock().unwrap_or_else(|e| e.into_inner());
        for k in &self.keys {
            held.remove(k);
        }
        drop(held);
        self.guard.released.notify_waiters();
    }
}

impl fmt::Debug for MarketoClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MarketoClient").field("config", &self.config).finish_non_exhaustive()
    }
}

impl MarketoClient {
    /// The ids of the leads whose `field` holds `value`.
    async fn lead_ids(&self, field: &str, value: &str) -> Result<Vec<i64>, Outcome> {
        let path = request::get_leads_path(field, value);
        match self.call(Method::GET, &path, request::GET_LEADS, None).await {
            Call::Done(envelope) => Ok(envelope.result.iter().filter_map(request::lead_id).collect()),
            Call::Failed { outcome, .. } => Err(outcome),
        }
    }
}

#[async_trait::async_trait]
impl Destination for MarketoClient {
    fn name(&self) -> &'static str {
        "marketo"
    }

    fn can_erase(&self) -> bool {
        true
    }

    /// Finds the person's leads (by email, and by the configured lookup field when it holds nudge's
    /// customer id rather than the email), then deletes them by id. No lead found: nothing is held, which
    /// is a completed deletion. A lead Marketo skips as not found was deleted meanwhile.
    async fn erase(&self, subject: &crate::ErasureSubject) -> Outcome {
        let mut lookups: Vec<(&str, &str)> = Vec::new();
        if let Some(email) = subject.email.as_deref() {
            lookups.push(("email", email));
        }
        let field = self.config.lookup_field.as_str();
        if field != "email" {
            lookups.extend(subject.external_ids.iter().map(|id| (field, id.as_str())));
        }
        if lookups.is_empty() {
            return Outcome::Rejected {
                endpoint: request::DELETE_LEADS.into(),
                status: None,
                error: "no email or customer id to find the person's leads by".into(),
            };
        }
        let mut ids: Vec<i64> = Vec::new();
        for (field, value) in lookups {
            match self.lead_ids(field, value).await {
                Ok(found) => ids.extend(found),
                Err(outcome) => return outcome,
            }
        }
        ids.sort_unstable();
        ids.dedup();
        if ids.is_empty() {
            return Outcome::Delivered { endpoint: request::GET_LEADS.into(), status: 200 };
        }
        for chunk in ids.chunks(super::config::MAX_BATCH_SIZE) {
            let body = request::delete_leads_body(chunk);
            match self
                .call(Method::POST, "/rest/v1/leads/delete.json", request::DELETE_LEADS, Some(body))
                .await
            {
                Call::Done(envelope) => {
                    let refused: Vec<String> = envelope
                        .result
                        .iter()
                        .filter_map(request::skip_reason)
                        .filter(|(code, _)| code != "1004")
                        .map(|(code, text)| format!("{code} {text}"))
                        .collect();
                    if !refused.is_empty() {
                        return Outcome::Rejected {
                            endpoint: request::DELETE_LEADS.into(),
                            status: Some(200),
                            error: format!("Marketo skipped the deletion: {}", refused.join("; ")),
                        };
                    }
                }
                Call::Failed { outcome, .. } => return outcome,
            }
        }
        Outcome::Delivered { endpoint: request::DELETE_LEADS.into(), status: 200 }
    }

    async fn deliver(&self, action: &Action) -> Outcome {
        let mut outcomes = self.run_batch(std::slice::from_ref(action)).await;
        outcomes.pop().unwrap_or_else(|| retry(SYNC_LEADS, None, "no outcome".into(), None))
    }

    fn ready_at(&self) -> Option<tokio::time::Instant> {
        self.limiter.next_free()
    }

    fn max_batch(&self) -> usize {
        self.config.batch_size
    }

    async fn deliver_batch(&self, actions: &[Action]) -> Vec<Outcome> {
        self.run_batch(actions).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn one_key_is_held_once() {
        let guard = Arc::new(KeyGuard::default());
        let first = guard.hold(vec!["email\0a@b.c".into()]).await;
        let g = guard.clone();
        let waiter = tokio::spawn(async move {
            let _k = g.hold(vec!["email\0x@y.z".into(), "email\0a@b.c".into()]).await;
        });
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(!waiter.is_finished(), "the second holder waits for the first");
        drop(first);
        tokio::time::timeout(Duration::from_secs(2), waiter).await.unwrap().unwrap();
        assert!(guard.held.lock().unwrap().is_empty());
    }
}
