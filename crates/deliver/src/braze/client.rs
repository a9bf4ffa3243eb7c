//! The Braze HTTP client: packs actions into `POST /users/track` requests (at most `batch_size` objects
//! each), sends each once after the client-side rate limiter allows it, and settles every action by
//! Braze's answer.
//!
//! What an answer means:
//!
//! - 2xx with `{"message":"success", …}` or 202 `{"message":"queued"}` (maintenance: Braze processes the
//!   request later): delivered, except the records Braze names in `errors[]` by `input_array` and
//!   `index`, which are rejected with Braze's `type` text (its per-record errors are about the record
//!   itself, so repeating it cannot help).
//! - 2xx whose body is not JSON or has no `message`, or has another message: not counted as delivered. It
//!   is a retry, since such an answer does not come from Braze's API (a proxy, a maintenance page) and
//!   losing the action would be worse. Should Braze have processed it after all, a repeated event is
//!   recognisable by its `nudge_event_id`; repeated attribute writes are harmless.
//! - 429: a retry carrying `X-Ratelimit-Retry-After` (or `Retry-After`); 408 and 5xx, timeouts and
//!   connection failures: retries.
//! - Every other status (400, 401, 403, 404, …): rejected with Braze's `message`, plus what to change.
//!
//! The key is only ever in the `Authorization` header (marked sensitive); it is removed from any answer
//! text that repeats it, so it never reaches an outcome or a log.

use super::config::{BrazeConfig, RATE_WINDOW};
use super::request::{self, Section, TRACK_LABEL, TRACK_PATH, TrackObject};
use crate::endpoint::json_client;
use crate::endpoint::{body_excerpt, read_capped, transport_error};
use crate::{
    DeliverError, Destination, Outcome, RateLimiter, SharedLimits, StatusClass, classify_status,
    parse_retry_after,
};
use nudge_model::Action;
use reqwest::header::RETRY_AFTER;
use serde_json::Value;
use std::fmt;
use std::time::Duration;

/// How much of an answer is read: a success with an error for each of 75 records fits easily.
const MAX_ANSWER_BYTES: usize = 256 * 1024;
/// Braze's own name for the wait after a 429.
const BRAZE_RETRY_AFTER: &str = "x-ratelimit-retry-after";

/// A [`Destination`] writing attributes and events to one Braze workspace.
pub struct BrazeClient {
    /// One connection pool, carrying the auth and content headers on every call.
    http: reqwest::Client,
    /// `<rest_endpoint>/users/track`.
    url: String,
    /// Kept for `Debug`, the key inside never shown.
    config: BrazeConfig,
    /// Keeps `/users/track` within `rate` requests per 3 s.
    limiter: RateLimiter,
    /// `<rest_endpoint>/users/delete`.
    delete_url: String,
}

impl BrazeClient {
    /// Builds a client after checking `config`. A TLS crypto provider must already be installed.
    pub fn new(config: BrazeConfig) -> Result<Self, DeliverError> {
        config.validate()?;
        // A redirect would carry the key to another host; Braze's REST API does not redirect.
        let http =
            json_client(Some(("braze api_key", &config.api_key)), config.timeout, config.allow_private)?;
        let base = config.rest_endpoint.trim().trim_end_matches('/');
        let url = format!("{base}{TRACK_PATH}");
        let delete_url = format!("{base}{}", request::DELETE_PATH);
        let limiter =
            RateLimiter::with_windows(&[(config.rate, RATE_WINDOW)]).with_margin(Duration::from_millis(30));
        Ok(BrazeClient { http, url, config, limiter, delete_url })
    }

    pub fn config(&self) -> &BrazeConfig {
        &self.config
    }

    /// This client with its rate limiter (`/users/track`) shared by every node of the deployment through
    /// Redis, so that together they stay within the account's quota. `destination` names the account's limit
    /// in the key (`<prefix>:limit:<destination>:users-track`): nodes sending to one account must use the
    /// same name, and two accounts different ones.
    pub fn with_shared_limits(mut self, limits: &SharedLimits, destination: &str) -> Self {
        self.limiter = self.limiter.shared(limits, &format!("{destination}:users-track"));
        self
    }

    /// Sends one request carrying `objects` (1 to `batch_size`) and returns one outcome per object.
    async fn send(&self, objects: &[&TrackObject]) -> Vec<Outcome> {
        let packed = match request::track_request(objects) {
            Ok(packed) => packed,
            Err(e) => {
                let error = e.to_string();
                return objects.iter().map(|_| rejected(None, error.clone())).collect();
            }
        };
        let waited = self.limiter.acquire().await;
        if !waited.is_zero() {
            tracing::debug!(waited_ms = waited.as_millis() as u64, "waited for the braze rate limit");
        }
        let response = match self.http.post(&self.url).body(packed.body).send().await {
            Ok(response) => response,
            Err(e) => {
                let error = transport_error(&e, self.config.timeout);
                tracing::warn!(endpoint = TRACK_LABEL, %error, "braze request failed before a response");
                return objects.iter().map(|_| retry(None, error.clone(), None)).collect();
            }
        };
        let status = response.status().as_u16();
        let headers = response.headers();
        let retry_after = [BRAZE_RETRY_AFTER, RETRY_AFTER.as_str()]
            .iter()
            .find_map(|name| headers.get(*name).and_then(|v| v.to_str().ok()).and_then(parse_retry_after));
        let body = read_capped(response, MAX_ANSWER_BYTES).await;
        let outcomes = settle(status, retry_after, &body, &packed.positions, &self.config.api_key);
        tracing::debug!(
            app_group = self.config.app_group.as_deref().unwrap_or(""),
            status,
            records = outcomes.len(),
            delivered = outcomes.iter().filter(|o| o.is_delivered()).count(),
            "braze attempt finished"
        );
        outcomes
    }
}

fn rejected(status: Option<u16>, error: String) -> Outcome {
    Outcome::Rejected { endpoint: TRACK_LABEL.to_string(), status, error }
}

fn retry(status: Option<u16>, error: String, retry_after: Option<Duration>) -> Outcome {
    Outcome::Retry { endpoint: TRACK_LABEL.to_string(), status, error, retry_after }
}

/// Settles the records of one answered request, `positions` naming where each record sat in the body.
fn settle(
    status: u16,
    retry_after: Option<Duration>,
    body: &[u8],
    positions: &[(Section, usize)],
    key: &str,
) -> Vec<Outcome> {
    let all = |o: Outcome| positions.iter().map(|_| o.clone()).collect::<Vec<_>>();
    match classify_status(status) {
        StatusClass::Retryable => all(retry(Some(status), error_text(status, body, key), retry_after)),
        StatusClass::Permanent => all(rejected(Some(status), error_text(status, body, key))),
        StatusClass::Success => {
            let json: Option<Value> = serde_json::from_slice(body).ok();
            let message = json.as_ref().and_then(|j| j.get("message")).and_then(Value::as_str);
            match message {
                Some("success" | "queued") => {}
                Some(other) => {
                    let other = scrub(other, key);
                    return all(retry(
                        Some(status),
                        format!(
                            "Braze answered HTTP {status} with the message `{other}` instead of success; not \
                             counted as delivered"
                        ),
                        None,
                    ));
                }
                None => {
                    let excerpt = scrub(&body_excerpt(body), key);
                    return all(retry(
                        Some(status),
                        format!(
                            "HTTP {status} without Braze's JSON `message` (body: `{excerpt}`); not counted as \
                             delivered. A proxy or maintenance page may be in front of rest_endpoint"
                        ),
                        None,
                    ));
                }
            }
            let mut outcomes: Vec<Outcome> =
                all(Outcome::Delivered { endpoint: TRACK_LABEL.to_string(), status });
            let errors = json.as_ref().and_then(|j| j.get("errors")).and_then(Value::as_array);
            for e in errors.into_iter().flatten() {
                let reason = e.get("type").and_then(Value::as_str).unwrap_or("no reason given");
                let input_array = e.get("input_array").and_then(Value::as_str);
                let index = e.get("index").and_then(Value::as_u64).and_then(|i| usize::try_from(i).ok());
                let at = positions
                    .iter()
                    .position(|(section, i)| Some(section.key()) == input_array && Some(*i) == index);
                match at {
                    Some(at) => {
                        outcomes[at] = rejected(
                            Some(status),
                            format!("Braze refused this record: {}", scrub(reason, key)),
                        )
                    }
                    None => tracing::warn!(
                        error = %scrub(&e.to_string(), key),
                        "braze reported an error it did not tie to a record; the others count as delivered"
                    ),
                }
            }
            outcomes
        }
    }
}

/// A one-line description of a failed answer: Braze's `message` (and the `type` of its errors) or the
/// start of the body, with what to change where the status says it, and never the key.
fn error_text(status: u16, body: &[u8], key: &str) -> String {
    let json: Option<Value> = serde_json::from_slice(body).ok();
    let mut text = match json.as_ref().and_then(|j| j.get("message")).and_then(Value::as_str) {
        Some(message) => message.to_string(),
        None => body_excerpt(body),
    };
    let types: Vec<&str> = json
        .as_ref()
        .and_then(|j| j.get("errors"))
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| e.get("type").and_then(Value::as_str))
        .take(3)
        .collect();
    if !types.is_empty() {
        text.push_str(&format!(" ({})", types.join("; ")));
    }
    let hint = match status {
        400 if text.contains("Max Input Length") => {
            " — this workspace takes fewer objects per request; lower batch_size in [destinations.braze]"
        }
        401 => " — check api_key in [destinations.braze]",
        403 => " — the key needs the users.track permission, and the plan must allow the endpoint",
        404 => " — check rest_endpoint (your instance's REST URL) and api_key in [destinations.braze]",
        _ => "",
    };
    let text = scrub(text.trim(), key);
    if text.is_empty() { format!("HTTP {status}{hint}") } else { format!("HTTP {status}: {text}{hint}") }
}

/// `text` with every copy of the key replaced (Braze repeats a refused key in its 401 message).
fn scrub(text: &str, key: &str) -> String {
    let key = key.trim();
    if key.len() < 4 { text.to_string() } else { text.replace(key, "[redacted]") }
}

impl fmt::Debug for BrazeClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrazeClient").field("config", &self.config).finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl Destination for BrazeClient {
    fn name(&self) -> &'static str {
        "braze"
    }

    async fn deliver(&self, action: &Action) -> Outcome {
        self.deliver_batch(std::slice::from_ref(action))
            .await
            .pop()
            .unwrap_or_else(|| rejected(None, "internal error: no outcome for the action".into()))
    }

    fn ready_at(&self) -> Option<tokio::time::Instant> {
        self.limiter.next_free()
    }

    fn max_batch(&self) -> usize {
        self.config.batch_size
    }

    fn can_erase(&self) -> bool {
        true
    }

    /// `/users/delete` by external id, in requests of at most 50; done when every request answered 2xx
    /// with Braze's `success` message.
    async fn erase(&self, subject: &crate::ErasureSubject) -> Outcome {
        let label = request::DELETE_LABEL.to_string();
        let bodies = match request::delete_requests(&subject.external_ids) {
            Ok(b) => b,
            Err(e) => return Outcome::Rejected { endpoint: label, status: None, error: e.to_string() },
        };
        let mut last = None;
        for body in bodies {
            let response = match self.http.post(&self.delete_url).body(body).send().await {
                Ok(r) => r,
                Err(e) => {
                    let error = transport_error(&e, self.config.timeout);
                    return Outcome::Retry { endpoint: label, status: None, error, retry_after: None };
                }
            };
            let status = response.status().as_u16();
            let headers = response.headers();
            let retry_after = [BRAZE_RETRY_AFTER, RETRY_AFTER.as_str()].iter().find_map(|name| {
                headers.get(*name).and_then(|v| v.to_str().ok()).and_then(parse_retry_after)
            });
            let body = read_capped(response, MAX_ANSWER_BYTES).await;
            let key = &self.config.api_key;
            match classify_status(status) {
                StatusClass::Retryable => {
                    let error = error_text(status, &body, key);
                    return Outcome::Retry { endpoint: label, status: Some(status), error, retry_after };
                }
                StatusClass::Permanent => {
                    let error = error_text(status, &body, key);
                    return Outcome::Rejected { endpoint: label, status: Some(status), error };
                }
                StatusClass::Success => {
                    let json: Option<Value> = serde_json::from_slice(&body).ok();
                    if json.as_ref().and_then(|j| j.get("message")).and_then(Value::as_str) != Some("success")
                    {
                        let excerpt = scrub(&body_excerpt(&body), key);
                        return Outcome::Retry {
                            endpoint: label,
                            status: Some(status),
                            error: format!(
                                "HTTP {status} without Braze's success message (body: `{excerpt}`)"
                            ),
                            retry_after: None,
                        };
                    }
                    last = Some(status);
                }
            }
        }
        Outcome::Delivered { endpoint: label, status: last.unwrap_or(200) }
    }

    async fn deliver_batch(&self, actions: &[Action]) -> Vec<Outcome> {
        let mut outcomes: Vec<Option<Outcome>> = vec![None; actions.len()];
        let mut valid: Vec<(usize, TrackObject)> = Vec::with_capacity(actions.len());
        for (i, action) in actions.iter().enumerate() {
            match request::object_for(action) {
                Ok(object) => valid.push((i, object)),
                Err(DeliverError::Invalid(message)) => outcomes[i] = Some(rejected(None, message)),
                Err(other) => outcomes[i] = Some(rejected(None, other.to_string())),
            }
        }
        for chunk in valid.chunks(self.config.batch_size.max(1)) {
            let objects: Vec<&TrackObject> = chunk.iter().map(|(_, o)| o).collect();
            for ((i, _), outcome) in chunk.iter().zip(self.send(&objects).await) {
                outcomes[*i] = Some(outcome);
            }
        }
        outcomes
            .into_iter()
            .map(|o| o.unwrap_or_else(|| rejected(None, "internal error: the action was not sent".into())))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &str = "braze-key-0123456789";
    const TWO: [(Section, usize); 2] = [(Section::Attributes, 0), (Section::Events, 0)];

    #[test]
    fn success_and_queued_deliver_every_record() {
        for (status, body) in [
            (200, &br#"{"message":"success","attributes_processed":1,"events_processed":1}"#[..]),
            (201, br#"{"message":"success"}"#),
            (202, br#"{"message":"queued"}"#),
        ] {
            let outcomes = settle(status, None, body, &TWO, KEY);
            assert!(outcomes.iter().all(|o| o.is_delivered() && o.status() == Some(status)), "{outcomes:?}");
            assert_eq!(outcomes.len(), 2);
        }
    }

    #[test]
    fn per_record_errors_reject_only_the_named_record() {
        let body = br#"{"message":"success","events_processed":0,"attributes_processed":1,
            "errors":[{"type":"The value provided for the 'time' field is invalid","input_array":"events","index":0},
                      {"type":"unrelated","input_array":"purchases","index":0}]}"#;
        let outcomes = settle(200, None, body, &TWO, KEY);
        assert!(outcomes[0].is_delivered(), "{outcomes:?}");
        match &outcomes[1] {
            Outcome::Rejected { status: Some(200), error, .. } => {
                assert!(error.contains("'time' field is invalid"), "{error}")
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn a_2xx_without_brazes_message_is_never_a_silent_success() {
        for body in [&b"<html>maintenance</html>"[..], b"", br#"{"ok":true}"#, br#"{"message":"weird"}"#] {
            let outcomes = settle(200, None, body, &TWO, KEY);
            for o in &outcomes {
                assert!(matches!(o, Outcome::Retry { status: Some(200), .. }), "{o:?}");
                assert!(o.error().unwrap().contains("not counted as delivered"), "{o}");
            }
        }
    }

    #[test]
    fn failures_settle_every_record_alike() {
        let o = settle(429, Some(Duration::from_secs(4)), br#"{"message":"Rate limit exceeded"}"#, &TWO, KEY);
        assert!(o.iter().all(|o| matches!(o, Outcome::Retry { status: Some(429), retry_after: Some(d), .. } if d.as_secs() == 4)));
        let o = settle(503, None, b"upstream down", &TWO, KEY);
        assert!(o.iter().all(|o| matches!(o, Outcome::Retry { status: Some(503), .. })), "{o:?}");
        for status in [400, 401, 403, 404] {
            let o = settle(status, None, br#"{"message":"nope"}"#, &TWO, KEY);
            assert!(o.iter().all(|o| matches!(o, Outcome::Rejected { status: Some(s), .. } if *s == status)));
        }
    }

    #[test]
    fn error_texts_explain_and_never_repeat_the_key() {
        let e = error_text(401, format!(r#"{{"message":"Invalid API key: {KEY}"}}"#).as_bytes(), KEY);
        assert!(!e.contains(KEY) && e.contains("[redacted]") && e.contains("api_key"), "{e}");
        let e = error_text(
            400,
            br#"{"message":"Max Input Length Exceeded","errors":[{"type":"too many"}]}"#,
            KEY,
        );
        assert!(e.contains("lower batch_size") && e.contains("too many"), "{e}");
        assert!(error_text(403, b"", KEY).contains("users.track"));
        assert!(error_text(404, b"", KEY).contains("rest_endpoint"));
        assert_eq!(error_text(500, b"", KEY), "HTTP 500");
        let o = settle(200, None, format!(r#"{{"message":"bad {KEY}"}}"#).as_bytes(), &TWO, KEY);
        assert!(!o[0].error().unwrap().contains(KEY));
    }
}
