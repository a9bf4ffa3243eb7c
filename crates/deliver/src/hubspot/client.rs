//! The HubSpot HTTP client. For a call with several actions it:
//!
//! 1. builds each action's batch-upsert input; an action HubSpot cannot take is rejected alone, with no
//!    request;
//! 2. makes sure every custom property the inputs write exists: the property group first
//!    (`409` = it exists), then the missing properties in one batch create; when that answers `409`
//!    (some already exist, so none were created) each is created alone, `409` again meaning it exists.
//!    Properties known to exist are remembered for the life of the client, under a lock, so concurrent
//!    calls create each once. An action whose property could not be created gets that failure (retry for
//!    429/5xx/timeouts, rejection for other answers) and is not sent;
//! 3. packs the remaining inputs into as few upserts as `batch_size` allows, never two inputs for one
//!    email (HubSpot refuses duplicate ids in a batch) in one request;
//! 4. settles each action from the answer: `200` → delivered; `207 Multi-Status` → the `errors[]`
//!    entries name their inputs by `context.objectWriteTraceId` and those are rejected with HubSpot's
//!    category and message (retried when the entry's status is 429 or 5xx, or when the message says a
//!    property no longer exists: it is forgotten and created again on the next attempt), the rest are
//!    delivered; `429` → retry, waiting `Retry-After`, 10 s (the rolling window) for the secondly
//!    limit when no header came, or until the next UTC midnight for the daily limit (HubSpot resets it at
//!    midnight of the account's time zone, which nudge does not know; a retry that arrives before that
//!    meets another daily 429 and waits again); 5xx, 408 and timeouts → retry; any other status →
//!    rejected with HubSpot's message.
//!
//! A 2xx whose body is not the documented batch answer (`results[]`, and `errors[]` for 207) is never
//! taken as success: the records are retried, which is safe because an upsert can be repeated. An
//! error entry that names no known trace id makes the records it might concern retry for the same
//! reason.
//!
//! Every request (property calls too) waits for one rate limiter of `rate` requests per rolling 10 s.
//! The token is sent only in the `Authorization` header, marked sensitive; answers are scrubbed of it
//! before they reach an outcome.

use super::config::HubSpotConfig;
use super::properties::PropertySpec;
use super::request::{self, ContactInput, Endpoint, MAX_BATCH_INPUTS};
use crate::endpoint::json_client;
use crate::endpoint::{body_excerpt, read_capped, transport_error};
use crate::{
    DeliverError, Destination, Outcome, RateLimiter, SharedLimits, StatusClass, classify_status,
    parse_retry_after,
};
use nudge_model::Action;
use reqwest::header::RETRY_AFTER;
use serde::Deserialize;
use serde_json::{Map, Value};
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::time::Duration;
use time::OffsetDateTime;

/// How much of an error answer is read.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;
/// How much of a successful answer is read: 100 contacts with their properties fit many times over.
const MAX_ANSWER_BODY_BYTES: usize = 4 * 1024 * 1024;
/// HubSpot's rate-limit window.
const WINDOW: Duration = Duration::from_secs(10);

/// A [`Destination`] writing contact properties to one HubSpot account.
pub struct HubSpotClient {
    http: reqwest::Client,
    /// Base URL without a trailing slash.
    base_url: String,
    config: HubSpotConfig,
    limiter: RateLimiter,
    known: tokio::sync::Mutex<Known>,
}

/// What is known to exist in the account.
#[derive(Debug, Default)]
struct Known {
    group: bool,
    properties: HashSet<String>,
}

/// What came back for one request.
enum Answer {
    Response {
        status: u16,
        retry_after: Option<Duration>,
        body: Vec<u8>,
    },
    /// No response: the description of the transport failure.
    Failed(String),
}

impl HubSpotClient {
    /// Builds a client after checking `config`. A TLS crypto provider must already be installed.
    pub fn new(config: HubSpotConfig) -> Result<Self, DeliverError> {
        config.validate()?;
        // A redirect would carry the token to another host; HubSpot's API does not redirect.
        let http = json_client(
            Some(("hubspot access_token", &config.access_token)),
            config.timeout,
            config.allow_private,
        )?;
        Ok(HubSpotClient {
            http,
            base_url: config.base_url.trim().trim_end_matches('/').to_string(),
            limiter: RateLimiter::with_windows(&[(config.rate, WINDOW)])
                .with_margin(Duration::from_millis(100)),
            config,
            known: tokio::sync::Mutex::new(Known::default()),
        })
    }

    pub fn config(&self) -> &HubSpotConfig {
        &self.config
    }

    /// This client with its rate limiter (every call) shared by every node of the deployment through Redis,
    /// so that together they stay within the account's quota. `destination` names the account's limit in the
    /// key (`<prefix>:limit:<destination>:api`): nodes sending to one account must use the same name, and two
    /// accounts different ones.
    pub fn with_shared_limits(mut self, limits: &SharedLimits, destination: &str) -> Self {
        self.limiter = self.limiter.shared(limits, &format!("{destination}:api"));
        self
    }

    /// The rate limiter's windows, as `(requests, window)`.
    pub fn rate_windows(&self) -> Vec<(u32, Duration)> {
        self.limiter.windows()
    }

    /// Sends one request after the rate limiter allows it.
    async fn post(&self, endpoint: Endpoint, body: Vec<u8>) -> Answer {
        let waited = self.limiter.acquire().await;
        if !waited.is_zero() {
            tracing::debug!(
                endpoint = endpoint.label(),
                waited_ms = waited.as_millis() as u64,
                "waited for the hubspot rate limit"
            );
        }
        let url = format!("{}{}", self.base_url, endpoint.path());
        let response = match self.http.post(url).body(body).send().await {
            Ok(r) => r,
            Err(e) => {
                let error = transport_error(&e, self.config.timeout);
                tracing::warn!(endpoint = endpoint.label(), %error, "hubspot request failed before a response");
                return Answer::Failed(error);
            }
        };
        let status = response.status().as_u16();
        let retry_after =
            response.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
        let cap = if classify_status(status) == StatusClass::Success {
            MAX_ANSWER_BODY_BYTES
        } else {
            MAX_ERROR_BODY_BYTES
        };
        let body = read_capped(response, cap).await;
        Answer::Response { status, retry_after, body }
    }

    /// The outcome of an answer that is not a success: a transport failure, 429, 5xx or a refusal.
    fn failure(&self, endpoint: Endpoint, answer: &Answer, context: &str) -> Outcome {
        let label = endpoint.label().to_string();
        match answer {
            Answer::Failed(error) => Outcome::Retry {
                endpoint: label,
                status: None,
                error: format!("{context}{error}"),
                retry_after: None,
            },
            Answer::Response { status, retry_after, body } => {
                let error = format!("{context}{}", self.scrub(error_text(*status, body)));
                match classify_status(*status) {
                    StatusClass::Retryable => {
                        let retry_after = if *status == 429 {
                            throttle_wait(*retry_after, body, OffsetDateTime::now_utc())
                        } else {
                            *retry_after
                        };
                        Outcome::Retry { endpoint: label, status: Some(*status), error, retry_after }
                    }
                    StatusClass::Success | StatusClass::Permanent => {
                        Outcome::Rejected { endpoint: label, status: Some(*status), error }
                    }
                }
            }
        }
    }

    /// Removes the token from text that came from the network.
    fn scrub(&self, text: String) -> String {
        let token = self.config.access_token.trim();
        if token.is_empty() { text } else { text.replace(token, "[redacted]") }
    }

    /// Makes sure every property in `needed` exists; returns the failure for each one that could not be
    /// created.
    async fn ensure_properties(&self, needed: &[PropertySpec]) -> HashMap<String, Outcome> {
        let mut failed = HashMap::new();
        let mut known = self.known.lock().await;
        let mut seen = HashSet::new();
        let missing: Vec<PropertySpec> = needed
            .iter()
            .filter(|s| !known.properties.contains(&s.name) && seen.insert(s.name.clone()))
            .cloned()
            .collect();
        if missing.is_empty() {
            return failed;
        }
        let group = self.config.property_group.clone();
        if !known.group {
            let answer = self.post(Endpoint::CreateGroup, request::group_body(&group)).await;
            match &answer {
                Answer::Response { status, .. }
                    if *status == 409 || classify_status(*status) == StatusClass::Success =>
                {
                    known.group = true;
                }
                _ => {
                    let context = format!("creating the HubSpot property group `{group}`: ");
                    let outcome =
                        self.with_scope_hint(self.failure(Endpoint::CreateGroup, &answer, &context));
                    for spec in missing {
                        failed.insert(spec.name, outcome.clone());
                    }
                    return failed;
                }
            }
        }
        for chunk in missing.chunks(MAX_BATCH_INPUTS) {
            let answer = self.post(Endpoint::CreateProperties, request::properties_body(&group, chunk)).await;
            match &answer {
                Answer::Response { status: 409, .. } => {
                    // At least one exists already, so the batch created none: create each alone.
                    for spec in chunk {
                        let answer =
                            self.post(Endpoint::CreateProperty, request::property_body(&group, spec)).await;
                        match &answer {
                            Answer::Response { status, .. }
                                if *status == 409 || classify_status(*status) == StatusClass::Success =>
                            {
                                known.properties.insert(spec.name.clone());
                            }
                            _ => {
                                let context = format!("creating the HubSpot property `{}`: ", spec.name);
                                let outcome = self.with_scope_hint(self.failure(
                                    Endpoint::CreateProperty,
                                    &answer,
                                    &context,
                                ));
                                failed.insert(spec.name.clone(), outcome);
                            }
                        }
                    }
                }
                Answer::Response { status, body, .. } if classify_status(*status) == StatusClass::Success => {
                    let refused = refused_properties(body, chunk);
                    for spec in chunk {
                        match refused.get(&spec.name) {
                            Some(reason) => {
                                let error = self.scrub(format!(
                                    "creating the HubSpot property `{}`: HTTP {status}: {reason}",
                                    spec.name
                                ));
                                failed.insert(
                                    spec.name.clone(),
                                    Outcome::Rejected {
                                        endpoint: Endpoint::CreateProperties.label().to_string(),
                                        status: Some(*status),
                                        error,
                                    },
                                );
                            }
                            None => {
                                known.properties.insert(spec.name.clone());
                            }
                        }
                    }
                }
                _ => {
                    let names: Vec<&str> = chunk.iter().map(|s| s.name.as_str()).collect();
                    let context = format!("creating the HubSpot properties {}: ", names.join(", "));
                    let outcome =
                        self.with_scope_hint(self.failure(Endpoint::CreateProperties, &answer, &context));
                    for spec in chunk {
                        failed.insert(spec.name.clone(), outcome.clone());
                    }
                }
            }
        }
        failed
    }

    /// Adds what a 403 on a property call usually means.
    fn with_scope_hint(&self, outcome: Outcome) -> Outcome {
        match outcome {
            Outcome::Rejected { endpoint, status: Some(403), error } => Outcome::Rejected {
                endpoint,
                status: Some(403),
                error: format!(
                    "{error} (the private app needs the crm.schemas.contacts.write scope to create properties)"
                ),
            },
            other => other,
        }
    }

    /// Forgets properties, so the next attempt that needs them creates them again.
    async fn forget(&self, names: &[PropertySpec]) {
        let mut known = self.known.lock().await;
        for spec in names {
            known.properties.remove(&spec.name);
        }
    }

    /// Sends one upsert and settles each of its inputs.
    async fn upsert(&self, inputs: &[&ContactInput]) -> Vec<Outcome> {
        let answer = self.post(Endpoint::BatchUpsert, request::upsert_body(inputs)).await;
        let label = Endpoint::BatchUpsert.label().to_string();
        let (status, body) = match &answer {
            Answer::Response { status, body, .. } if classify_status(*status) == StatusClass::Success => {
                (*status, body)
            }
            _ => {
                let outcome = self.failure(Endpoint::BatchUpsert, &answer, "");
                return inputs.iter().map(|_| outcome.clone()).collect();
            }
        };
        let retry_all = |error: String| -> Vec<Outcome> {
            inputs
                .iter()
                .map(|_| Outcome::Retry {
                    endpoint: label.clone(),
                    status: Some(status),
                    error: error.clone(),
                    retry_after: None,
                })
                .collect()
        };
        let Some(parsed) = BatchAnswer::parse(status, body) else {
            return retry_all(format!(
                "HubSpot answered HTTP {status} without the documented batch result ({}); an upsert is safe \
                 to repeat, so it is retried",
                self.scrub(body_excerpt(body))
            ));
        };
        let by_trace: HashMap<&str, usize> =
            inputs.iter().enumerate().map(|(i, input)| (input.trace_id.as_str(), i)).collect();
        let mut settled: Vec<Option<Outcome>> = vec![None; inputs.len()];
        let mut unmapped = Vec::new();
        let mut to_forget = Vec::new();
        for error in &parsed.errors {
            let text = self.scrub(error.text());
            let targets: Vec<usize> =
                error.trace_ids().iter().filter_map(|t| by_trace.get(t.as_str()).copied()).collect();
            if targets.is_empty() {
                unmapped.push(text);
                continue;
            }
            for i in targets {
                let outcome = if error.property_missing() {
                    to_forget.extend(inputs[i].needs.iter().cloned());
                    Outcome::Retry {
                        endpoint: label.clone(),
                        status: Some(status),
                        error: format!(
                            "{text} (a property nudge created is gone; it is created again on the next attempt)"
                        ),
                        retry_after: None,
                    }
                } else if error.is_temporary() {
                    Outcome::Retry {
                        endpoint: label.clone(),
                        status: Some(status),
                        error: text.clone(),
                        retry_after: None,
                    }
                } else {
                    Outcome::Rejected { endpoint: label.clone(), status: Some(status), error: text.clone() }
                };
                settled[i] = Some(outcome);
            }
        }
        if !to_forget.is_empty() {
            self.forget(&to_forget).await;
        }
        settled
            .into_iter()
            .map(|o| match o {
                Some(o) => o,
                None if !unmapped.is_empty() => Outcome::Retry {
                    endpoint: label.clone(),
                    status: Some(status),
                    error: format!(
                        "HubSpot reported errors without naming the record ({}); an upsert is safe to repeat, so \
                         it is retried",
                        unmapped.join("; ")
                    ),
                    retry_after: None,
                },
                None => Outcome::Delivered { endpoint: label.clone(), status },
            })
            .collect()
    }
}

impl fmt::Debug for HubSpotClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HubSpotClient").field("config", &self.config).finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl Destination for HubSpotClient {
    fn can_erase(&self) -> bool {
        true
    }

    /// A GDPR deletion by email: 2xx (204) means HubSpot deleted the contact (or blocklisted an unknown
    /// email).
    async fn erase(&self, subject: &crate::ErasureSubject) -> Outcome {
        let endpoint = Endpoint::GdprDelete;
        let body = match request::gdpr_delete(subject.email.as_deref()) {
            Ok(b) => b,
            Err(e) => {
                return Outcome::Rejected {
                    endpoint: endpoint.label().to_string(),
                    status: None,
                    error: e.to_string(),
                };
            }
        };
        let answer = self.post(endpoint, body).await;
        match &answer {
            Answer::Response { status, .. } if classify_status(*status) == StatusClass::Success => {
                Outcome::Delivered { endpoint: endpoint.label().to_string(), status: *status }
            }
            _ => self.failure(endpoint, &answer, ""),
        }
    }

    fn name(&self) -> &'static str {
        "hubspot"
    }

    async fn deliver(&self, action: &Action) -> Outcome {
        let mut outcomes = self.deliver_batch(std::slice::from_ref(action)).await;
        outcomes.pop().unwrap_or_else(|| Outcome::Retry {
            endpoint: Endpoint::BatchUpsert.label().to_string(),
            status: None,
            error: "no outcome was produced".into(),
            retry_after: None,
        })
    }

    fn ready_at(&self) -> Option<tokio::time::Instant> {
        self.limiter.next_free()
    }

    fn max_batch(&self) -> usize {
        self.config.batch_size
    }

    async fn deliver_batch(&self, actions: &[Action]) -> Vec<Outcome> {
        let label = Endpoint::BatchUpsert.label();
        let mut outcomes: Vec<Option<Outcome>> = vec![None; actions.len()];
        let mut inputs: Vec<(usize, ContactInput)> = Vec::new();
        for (i, action) in actions.iter().enumerate() {
            match request::contact_input(action) {
                Ok(input) => inputs.push((i, input)),
                Err(e) => {
                    let error = match e {
                        DeliverError::Invalid(message) => message,
                        other => other.to_string(),
                    };
                    outcomes[i] =
                        Some(Outcome::Rejected { endpoint: label.to_string(), status: None, error });
                }
            }
        }

        let needed: Vec<PropertySpec> =
            inputs.iter().flat_map(|(_, input)| input.needs.iter().cloned()).collect();
        let failed = self.ensure_properties(&needed).await;
        let mut ready: Vec<(usize, ContactInput)> = Vec::new();
        for (i, input) in inputs {
            match input.needs.iter().find_map(|spec| failed.get(&spec.name)) {
                Some(outcome) => outcomes[i] = Some(outcome.clone()),
                None => ready.push((i, input)),
            }
        }

        // Pack: each input into the first request that has room and no input for the same email.
        let size = self.config.batch_size.clamp(1, MAX_BATCH_INPUTS);
        let mut requests: Vec<(Vec<usize>, HashSet<String>)> = Vec::new();
        for (slot, (_, input)) in ready.iter().enumerate() {
            let fits = requests.iter_mut().find(|(members, keys)| {
                members.len() < size && !keys.contains(&input.key) && !keys.contains(&input.trace_id)
            });
            let (members, keys) = match fits {
                Some(request) => request,
                None => {
                    requests.push((Vec::new(), HashSet::new()));
                    requests.last_mut().expect("just pushed")
                }
            };
            members.push(slot);
            keys.insert(input.key.clone());
            keys.insert(input.trace_id.clone());
        }
        for (members, _) in requests {
            let batch: Vec<&ContactInput> = members.iter().map(|slot| &ready[*slot].1).collect();
            let settled = self.upsert(&batch).await;
            for (slot, outcome) in members.iter().zip(settled) {
                outcomes[ready[*slot].0] = Some(outcome);
            }
        }
        let outcomes: Vec<Outcome> = outcomes
            .into_iter()
            .map(|o| {
                o.unwrap_or_else(|| Outcome::Retry {
                    endpoint: label.to_string(),
                    status: None,
                    error: "no outcome was produced".into(),
                    retry_after: None,
                })
            })
            .collect();
        for o in &outcomes {
            tracing::debug!(outcome = %o, "hubspot attempt finished");
        }
        outcomes
    }
}

/// A batch answer (`200` or `207`); unknown fields are ignored.
#[derive(Debug, Deserialize)]
struct BatchAnswer {
    #[serde(default)]
    results: Option<Vec<Value>>,
    #[serde(default)]
    errors: Vec<RecordError>,
}

impl BatchAnswer {
    /// The answer, if it is the documented shape: `results[]` on 200, `errors[]` on 207.
    fn parse(status: u16, body: &[u8]) -> Option<BatchAnswer> {
        let value: Value = serde_json::from_slice(body).ok()?;
        let has_errors = value.get("errors").is_some_and(Value::is_array);
        let answer: BatchAnswer = serde_json::from_value(value).ok()?;
        let documented = if status == 207 { has_errors } else { answer.results.is_some() };
        documented.then_some(answer)
    }
}

/// One entry of `errors[]`.
#[derive(Debug, Deserialize)]
struct RecordError {
    #[serde(default)]
    status: Option<Value>,
    #[serde(default)]
    category: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    context: Option<Map<String, Value>>,
}

impl RecordError {
    /// The trace ids in `context.objectWriteTraceId`, given as an array (HubSpot's form) or a string.
    fn trace_ids(&self) -> Vec<String> {
        context_strings(self.context.as_ref(), "objectWriteTraceId")
    }

    fn text(&self) -> String {
        let message =
            self.message.as_deref().map(str::trim).filter(|m| !m.is_empty()).unwrap_or("no message given");
        let message: String = message.chars().take(500).collect();
        match &self.category {
            Some(category) => format!("{category}: {message}"),
            None => message,
        }
    }

    /// Whether the entry's own status (a number, or a number in a string) is 429 or 5xx, or its category
    /// is HubSpot's rate-limit category.
    fn is_temporary(&self) -> bool {
        let code = match &self.status {
            Some(Value::Number(n)) => n.as_u64(),
            Some(Value::String(s)) => s.trim().parse::<u64>().ok(),
            _ => None,
        };
        let by_code = code
            .and_then(|c| u16::try_from(c).ok())
            .is_some_and(|c| classify_status(c) == StatusClass::Retryable);
        by_code || self.category.as_deref() == Some("RATE_LIMITS")
    }

    /// Whether HubSpot says a property written does not exist.
    fn property_missing(&self) -> bool {
        self.message.as_deref().is_some_and(|m| m.contains("PROPERTY_DOESNT_EXIST"))
    }
}

fn context_strings(context: Option<&Map<String, Value>>, key: &str) -> Vec<String> {
    match context.and_then(|c| c.get(key)) {
        Some(Value::String(s)) => vec![s.clone()],
        Some(Value::Array(items)) => items.iter().filter_map(Value::as_str).map(str::to_string).collect(),
        _ => Vec::new(),
    }
}

/// The properties a 2xx batch-create answer refused for a reason other than already existing, with the
/// reason. An error that names no property refuses the whole chunk.
fn refused_properties(body: &[u8], chunk: &[PropertySpec]) -> HashMap<String, String> {
    let mut refused = HashMap::new();
    let Ok(answer) = serde_json::from_slice::<BatchAnswer>(body) else {
        return refused;
    };
    for error in &answer.errors {
        let text = error.text();
        let exists = error.category.as_deref() == Some("OBJECT_ALREADY_EXISTS")
            || text.to_ascii_lowercase().contains("already exists");
        if exists {
            continue;
        }
        let mut names = context_strings(error.context.as_ref(), "name");
        if names.is_empty() {
            names = chunk.iter().filter(|s| text.contains(&s.name)).map(|s| s.name.clone()).collect();
        }
        if names.is_empty() {
            names = chunk.iter().map(|s| s.name.clone()).collect();
        }
        for name in names {
            refused.insert(name, text.clone());
        }
    }
    refused
}

/// HubSpot's error document: `{"status":"error","message":…,"correlationId":…,"category":…}`.
#[derive(Debug, Deserialize)]
struct ErrorDocument {
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    category: Option<String>,
    #[serde(default, rename = "correlationId")]
    correlation_id: Option<String>,
}

/// A one-line description of a failed answer: HubSpot's category and message (and the correlation id
/// its support asks for), or the start of the body.
fn error_text(status: u16, body: &[u8]) -> String {
    if let Ok(doc) = serde_json::from_slice::<ErrorDocument>(body)
        && let Some(message) = doc.message.as_deref().map(str::trim).filter(|m| !m.is_empty())
    {
        let message: String = message.chars().take(500).collect();
        let mut text = match &doc.category {
            Some(category) => format!("HTTP {status} {category}: {message}"),
            None => format!("HTTP {status}: {message}"),
        };
        if let Some(id) = &doc.correlation_id {
            text.push_str(&format!(" (correlationId {id})"));
        }
        return text;
    }
    let excerpt = body_excerpt(body);
    if excerpt.is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {excerpt}") }
}

/// How long a 429 asks to wait: `Retry-After` when given; for the daily limit (`policyName` `DAILY`)
/// at least until the next UTC midnight; otherwise HubSpot's 10-second window.
fn throttle_wait(header: Option<Duration>, body: &[u8], now: OffsetDateTime) -> Option<Duration> {
    let policy = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("policyName").and_then(Value::as_str).map(str::to_ascii_uppercase));
    if policy.as_deref().is_some_and(|p| p.contains("DAILY")) {
        let midnight = until_next_utc_midnight(now);
        return Some(header.map_or(midnight, |h| h.max(midnight)));
    }
    Some(header.unwrap_or(WINDOW))
}

/// The time from `now` to the next midnight UTC (at least one minute).
fn until_next_utc_midnight(now: OffsetDateTime) -> Duration {
    let now = now.to_offset(time::UtcOffset::UTC);
    let next = now.date().next_day().map(|d| d.midnight().assume_utc());
    let left = next.map(|n| n - now).unwrap_or(time::Duration::DAY);
    Duration::try_from(left).unwrap_or(Duration::from_secs(86_400)).max(Duration::from_secs(60))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn error_text_uses_hubspot_message_category_and_correlation_id() {
        let body = br#"{"status":"error","message":"Authentication credentials not found.","correlationId":"c-1","category":"INVALID_AUTHENTICATION","extra":1}"#;
        assert_eq!(
            error_text(401, body),
            "HTTP 401 INVALID_AUTHENTICATION: Authentication credentials not found. (correlationId c-1)"
        );
        assert_eq!(error_text(502, b"<html>bad gateway</html>"), "HTTP 502: <html>bad gateway</html>");
        assert_eq!(error_text(500, b""), "HTTP 500");
    }

    #[test]
    fn throttle_waits_follow_the_policy() {
        let now = datetime!(2026-05-01 22:00 UTC);
        assert_eq!(throttle_wait(Some(Duration::from_secs(7)), b"{}", now), Some(Duration::from_secs(7)));
        let secondly = br#"{"status":"error","errorType":"RATE_LIMIT","policyName":"SECONDLY"}"#;
        assert_eq!(throttle_wait(None, secondly, now), Some(Duration::from_secs(10)));
        let rolling = br#"{"policyName":"TEN_SECONDLY_ROLLING"}"#;
        assert_eq!(throttle_wait(None, rolling, now), Some(Duration::from_secs(10)));
        let daily = br#"{"status":"error","errorType":"RATE_LIMIT","policyName":"DAILY"}"#;
        assert_eq!(throttle_wait(None, daily, now), Some(Duration::from_secs(2 * 3600)));
        assert_eq!(throttle_wait(Some(Duration::from_secs(1)), daily, now), Some(Duration::from_secs(7200)));
        let late = datetime!(2026-05-01 23:59:59.5 UTC);
        assert_eq!(until_next_utc_midnight(late), Duration::from_secs(60));
        let offset = datetime!(2026-05-01 22:00 +02:00);
        assert_eq!(until_next_utc_midnight(offset), Duration::from_secs(4 * 3600));
    }

    #[test]
    fn batch_answers_must_be_documented() {
        assert!(BatchAnswer::parse(200, br#"{"status":"COMPLETE","results":[]}"#).is_some());
        assert!(BatchAnswer::parse(200, br#"{"status":"COMPLETE"}"#).is_none());
        assert!(BatchAnswer::parse(200, b"ok").is_none());
        assert!(BatchAnswer::parse(207, br#"{"results":[]}"#).is_none());
        let answer = BatchAnswer::parse(
            207,
            br#"{"results":[],"errors":[
                {"status":"error","category":"VALIDATION_ERROR","message":"bad","context":{"objectWriteTraceId":["t1"]}},
                {"status":"error","category":"VALIDATION_ERROR","message":"bad","context":{"objectWriteTraceId":"t2"}},
                {"status":"500","message":"oops","context":{}},
                {"status":429,"message":"slow down"},
                {"category":"RATE_LIMITS","message":"slow down"}]}"#,
        )
        .unwrap();
        assert_eq!(answer.errors[0].trace_ids(), ["t1"]);
        assert_eq!(answer.errors[1].trace_ids(), ["t2"]);
        assert!(answer.errors[2].trace_ids().is_empty());
        assert_eq!(answer.errors[0].text(), "VALIDATION_ERROR: bad");
        let temporary: Vec<bool> = answer.errors.iter().map(RecordError::is_temporary).collect();
        assert_eq!(temporary, [false, false, true, true, true]);
    }

    #[test]
    fn property_refusals_other_than_existing_are_kept() {
        let chunk = [
            PropertySpec::new("ai_a", super::super::properties::PropertyKind::Text),
            PropertySpec::new("ai_b", super::super::properties::PropertyKind::Text),
        ];
        let body = br#"{"status":"COMPLETE","results":[],"errors":[
            {"status":"error","category":"OBJECT_ALREADY_EXISTS","message":"Property ai_a already exists","context":{"name":["ai_a"]}},
            {"status":"error","category":"VALIDATION_ERROR","message":"ai_b has a bad type"}]}"#;
        let refused = refused_properties(body, &chunk);
        assert_eq!(refused.len(), 1);
        assert!(refused["ai_b"].contains("bad type"));
    }
}
