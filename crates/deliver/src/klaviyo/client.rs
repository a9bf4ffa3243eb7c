//! The Klaviyo HTTP client: sends one request per delivery attempt (two for a list action: the profile
//! lookup, then the membership change) with the required headers, waits for the client-side rate limiter
//! of each endpoint first, and turns the response into an [`Outcome`]. Request bodies and
//! their checks are in `request`; retry timing belongs to the caller (see [`crate::Backoff`]).

use super::config::KlaviyoConfig;
use super::request::{self, Endpoint, KlaviyoRequest};
use crate::{
    DeliverError, Destination, Outcome, RateLimiter, SharedLimits, StatusClass, classify_status,
    parse_retry_after,
};
use nudge_model::Action;
use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue, RETRY_AFTER};
use serde::Deserialize;
use std::fmt;
use time::OffsetDateTime;

/// The JSON:API media type Klaviyo requires for request and response bodies.
pub const JSON_API: &str = "application/vnd.api+json";
/// How much of an error response is read; Klaviyo's error documents are far smaller.
const MAX_ERROR_BODY_BYTES: usize = 64 * 1024;
/// How much of a successful profile-import answer is read for its profile id: the profile resource, with
/// properties, is bounded by the 100 KB request limit and a little more.
const MAX_PROFILE_BODY_BYTES: usize = 1024 * 1024;

/// A [`Destination`] writing profiles and events to one Klaviyo account.
pub struct KlaviyoClient {
    /// One connection pool for the whole process, carrying the auth and revision headers on every call.
    http: reqwest::Client,
    /// Base URL without a trailing slash.
    base_url: String,
    /// Kept for `Debug` and for reporting the configured limits; the key inside is never shown.
    config: KlaviyoConfig,
    /// Keeps `POST /api/profile-import` within its quota (75/s, 750/min by default).
    profile_import_limiter: RateLimiter,
    /// Keeps `POST /api/events` within its quota (350/s, 3500/min by default).
    events_limiter: RateLimiter,
    /// Keeps the list-membership endpoint (adding and removing) within its quota (10/s, 150/min by
    /// default).
    lists_limiter: RateLimiter,
    /// Keeps bulk import job creation within its quota (10/s, 150/min by default).
    bulk_jobs_limiter: RateLimiter,
    /// Keeps bulk import job reads (status polls, import errors) within their quota (10/s, 150/min by
    /// default).
    bulk_job_reads_limiter: RateLimiter,
    /// Keeps deletion job creation within Klaviyo's published quota for it (3/s burst, 60/min steady).
    deletion_limiter: RateLimiter,
}

impl KlaviyoClient {
    /// Builds a client after checking `config`. A TLS crypto provider must already be installed.
    pub fn new(config: KlaviyoConfig) -> Result<Self, DeliverError> {
        config.validate()?;
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            return Err(DeliverError::NoCryptoProvider);
        }
        let mut auth = HeaderValue::from_str(&format!("Klaviyo-API-Key {}", config.api_key))
            .map_err(|_| DeliverError::Config("klaviyo api_key is not a valid header value".into()))?;
        auth.set_sensitive(true);
        let revision = HeaderValue::from_str(&config.revision)
            .map_err(|_| DeliverError::Config("klaviyo revision is not a valid header value".into()))?;
        let mut headers = HeaderMap::new();
        headers.insert(AUTHORIZATION, auth);
        headers.insert("revision", revision);
        headers.insert(ACCEPT, HeaderValue::from_static(JSON_API));
        headers.insert(CONTENT_TYPE, HeaderValue::from_static(JSON_API));
        let http = reqwest::Client::builder()
            .default_headers(headers)
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(std::time::Duration::from_secs(5)))
            // A redirect would carry the key to another host; Klaviyo's API never redirects.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("nudge/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(KlaviyoClient {
            http,
            base_url: config.base_url.trim_end_matches('/').to_string(),
            profile_import_limiter: RateLimiter::new(config.profile_import_limit),
            events_limiter: RateLimiter::new(config.events_limit),
            lists_limiter: RateLimiter::new(config.lists_limit),
            bulk_jobs_limiter: RateLimiter::new(config.bulk_jobs_limit),
            bulk_job_reads_limiter: RateLimiter::new(config.bulk_job_reads_limit),
            deletion_limiter: RateLimiter::new(crate::RateLimit::new(3, 60)),
            config,
        })
    }

    pub fn config(&self) -> &KlaviyoConfig {
        &self.config
    }

    /// This client with its rate limiters shared by every node of the deployment through Redis, so that
    /// together they stay within the account's quota. `destination` names the account's limits in the keys
    /// (`<prefix>:limit:<destination>:<endpoint>`): nodes sending to one account must use the same name, and
    /// two accounts different ones. Endpoints: `profile-import`, `events`, `lists`, `bulk-jobs`,
    /// `bulk-job-reads`, `deletion-jobs`.
    pub fn with_shared_limits(mut self, limits: &SharedLimits, destination: &str) -> Self {
        let name = |endpoint: &str| format!("{destination}:{endpoint}");
        self.profile_import_limiter = self.profile_import_limiter.shared(limits, &name("profile-import"));
        self.events_limiter = self.events_limiter.shared(limits, &name("events"));
        self.lists_limiter = self.lists_limiter.shared(limits, &name("lists"));
        self.bulk_jobs_limiter = self.bulk_jobs_limiter.shared(limits, &name("bulk-jobs"));
        self.bulk_job_reads_limiter = self.bulk_job_reads_limiter.shared(limits, &name("bulk-job-reads"));
        self.deletion_limiter = self.deletion_limiter.shared(limits, &name("deletion-jobs"));
        self
    }

    fn limiter(&self, endpoint: Endpoint) -> &RateLimiter {
        match endpoint {
            Endpoint::ProfileImport => &self.profile_import_limiter,
            Endpoint::Events => &self.events_limiter,
            Endpoint::AddToList | Endpoint::RemoveFromList => &self.lists_limiter,
            Endpoint::BulkImportJobs => &self.bulk_jobs_limiter,
            Endpoint::BulkImportJob | Endpoint::BulkImportErrors => &self.bulk_job_reads_limiter,
            Endpoint::DataPrivacyDeletionJobs => &self.deletion_limiter,
        }
    }

    /// Base URL without a trailing slash.
    pub(super) fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Sends one request after its endpoint's rate limiter allows it. A success comes back with its body,
    /// read up to `keep_body` bytes (nothing when 0).
    pub(super) async fn send(&self, req: KlaviyoRequest, keep_body: usize) -> (Outcome, Vec<u8>) {
        let endpoint = req.endpoint;
        let label = endpoint.label().to_string();
        let waited = self.limiter(endpoint).acquire().await;
        if !waited.is_zero() {
            tracing::debug!(endpoint = %label, waited_ms = waited.as_millis() as u64, "waited for the klaviyo rate limit");
        }
        let url = format!("{}{}", self.base_url, req.path);
        let builder = match endpoint.method() {
            "DELETE" => self.http.delete(url).body(req.body),
            "GET" => self.http.get(url),
            _ => self.http.post(url).body(req.body),
        };
        let response = match builder.send().await {
            Ok(response) => response,
            Err(e) => {
                let error = crate::endpoint::transport_error(&e, self.config.timeout);
                tracing::warn!(endpoint = %label, %error, "klaviyo request failed before a response");
                return (
                    Outcome::Retry { endpoint: label, status: None, error, retry_after: None },
                    Vec::new(),
                );
            }
        };
        let status = response.status().as_u16();
        let retry_after =
            response.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
        let mut body = Vec::new();
        let outcome = match classify_status(status) {
            StatusClass::Success => {
                if keep_body > 0 {
                    body = crate::endpoint::read_capped(response, keep_body).await;
                }
                Outcome::Delivered { endpoint: label, status }
            }
            StatusClass::Retryable => {
                let error =
                    error_text(status, crate::endpoint::read_capped(response, MAX_ERROR_BODY_BYTES).await);
                Outcome::Retry { endpoint: label, status: Some(status), error, retry_after }
            }
            StatusClass::Permanent => {
                let error =
                    error_text(status, crate::endpoint::read_capped(response, MAX_ERROR_BODY_BYTES).await);
                Outcome::Rejected { endpoint: label, status: Some(status), error }
            }
        };
        tracing::debug!(outcome = %outcome, "klaviyo attempt finished");
        (outcome, body)
    }

    /// A list action: the profile-import lookup that yields the profile id, then the membership change.
    ///
    /// Both steps are safe to repeat (an upsert; adding a member or removing a non-member answers 204
    /// as well), so a failure at either step is retried as a whole by the outbox. A failed lookup is
    /// reported as the profile-import's outcome, since that is the endpoint that answered.
    async fn deliver_list(&self, action: &Action, lookup: KlaviyoRequest) -> Outcome {
        let (looked_up, body) = self.send(lookup, MAX_PROFILE_BODY_BYTES).await;
        let list = action.list_id().unwrap_or_default();
        match looked_up {
            Outcome::Delivered { .. } => {}
            Outcome::Retry { endpoint, status, error, retry_after } => {
                let error = format!("looking up the profile for list `{list}`: {error}");
                return Outcome::Retry { endpoint, status, error, retry_after };
            }
            Outcome::Rejected { endpoint, status, error } => {
                let error = format!("looking up the profile for list `{list}`: {error}");
                return Outcome::Rejected { endpoint, status, error };
            }
        }
        let endpoint = Endpoint::for_action(action);
        let Some(profile_id) = profile_id_of(&body) else {
            // A 2xx without the documented resource: not something a changed request would fix, and not
            // known to be lasting either, so it is tried again later.
            return Outcome::Retry {
                endpoint: Endpoint::ProfileImport.label().to_string(),
                status: None,
                error: format!(
                    "the profile lookup for list `{list}` answered without a profile id (data.id)"
                ),
                retry_after: None,
            };
        };
        match request::list_membership(action, &profile_id) {
            Ok(req) => match self.send(req, 0).await.0 {
                Outcome::Rejected { endpoint, status, error } => {
                    Outcome::Rejected { endpoint, status, error: format!("list `{list}`: {error}") }
                }
                other => other,
            },
            Err(e) => Outcome::Rejected {
                endpoint: endpoint.label().to_string(),
                status: None,
                error: invalid_text(e),
            },
        }
    }
}

/// The `data.id` of a profile resource (`{"data":{"type":"profile","id":"…",…}}`).
fn profile_id_of(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct Document {
        data: Resource,
    }
    #[derive(Deserialize)]
    struct Resource {
        #[serde(rename = "type")]
        kind: String,
        id: String,
    }
    let doc: Document = serde_json::from_slice(body).ok()?;
    (doc.data.kind == "profile" && !doc.data.id.trim().is_empty()).then_some(doc.data.id)
}

pub(super) fn invalid_text(e: DeliverError) -> String {
    match e {
        DeliverError::Invalid(message) => message,
        other => other.to_string(),
    }
}

impl fmt::Debug for KlaviyoClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KlaviyoClient").field("config", &self.config).finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl Destination for KlaviyoClient {
    fn name(&self) -> &'static str {
        "klaviyo"
    }

    async fn deliver(&self, action: &Action) -> Outcome {
        let endpoint = Endpoint::for_action(action);
        match request::build(action, OffsetDateTime::now_utc()) {
            Ok(req) => match action {
                Action::AddToList { .. } | Action::RemoveFromList { .. } => {
                    self.deliver_list(action, req).await
                }
                Action::UpsertProfile { .. } | Action::TriggerEvent { .. } | Action::Alert { .. } => {
                    self.send(req, 0).await.0
                }
            },
            Err(e) => Outcome::Rejected {
                endpoint: endpoint.label().to_string(),
                status: None,
                error: invalid_text(e),
            },
        }
    }

    fn can_erase(&self) -> bool {
        true
    }

    /// A data-privacy deletion job: accepted (202) means Klaviyo will delete every matching profile.
    async fn erase(&self, subject: &crate::ErasureSubject) -> Outcome {
        match request::deletion_job(subject) {
            Ok(req) => self.send(req, 0).await.0,
            Err(e) => Outcome::Rejected {
                endpoint: Endpoint::DataPrivacyDeletionJobs.label().to_string(),
                status: None,
                error: invalid_text(e),
            },
        }
    }

    /// Klaviyo's cap (10,000 profiles per bulk import job), or the configured `bulk_size`.
    fn max_bulk(&self) -> usize {
        self.config.bulk_size
    }

    /// Bulk profile import jobs: see [`super::bulk`].
    async fn push_profiles(&self, actions: &[Action]) -> Vec<Outcome> {
        self.push_profiles_in_jobs(actions).await
    }
}

/// Klaviyo's JSON:API error document; unknown fields are ignored.
#[derive(Debug, Deserialize)]
struct ErrorDocument {
    #[serde(default)]
    errors: Vec<ErrorObject>,
}

#[derive(Debug, Deserialize)]
struct ErrorObject {
    #[serde(default)]
    code: Option<String>,
    #[serde(default)]
    title: Option<String>,
    #[serde(default)]
    detail: Option<String>,
    #[serde(default)]
    source: Option<ErrorSource>,
}

#[derive(Debug, Deserialize)]
struct ErrorSource {
    #[serde(default)]
    pointer: Option<String>,
    #[serde(default)]
    parameter: Option<String>,
}

/// One error object as a line: `code: detail (at pointer)`, the title standing in for a missing detail.
fn describe(e: &ErrorObject) -> String {
    let text = e.detail.as_deref().or(e.title.as_deref()).unwrap_or("no detail given");
    let mut line = match &e.code {
        Some(code) => format!("{code}: {text}"),
        None => text.to_string(),
    };
    if let Some(src) = &e.source
        && let Some(at) = src.pointer.as_deref().or(src.parameter.as_deref())
    {
        line.push_str(&format!(" (at {at})"));
    }
    line
}

/// [`describe`] for an error object found elsewhere than in an error document (the attributes of a bulk
/// import job's `import-error`).
pub(super) fn error_object_text(error: &serde_json::Value) -> String {
    match serde_json::from_value::<ErrorObject>(error.clone()) {
        Ok(e) => describe(&e),
        Err(_) => "no detail given".into(),
    }
}

/// A one-line description of a failed response: Klaviyo's `errors[].detail` (with code and source) when
/// the body is a JSON:API error document, otherwise the start of the body.
pub(super) fn error_text(status: u16, body: Vec<u8>) -> String {
    if let Ok(doc) = serde_json::from_slice::<ErrorDocument>(&body) {
        let parts: Vec<String> = doc.errors.iter().map(describe).collect();
        if !parts.is_empty() {
            return format!("HTTP {status}: {}", parts.join("; "));
        }
    }
    let text = String::from_utf8_lossy(&body);
    let text = text.trim();
    if text.is_empty() {
        format!("HTTP {status}")
    } else {
        let cut: String = text.chars().take(300).collect();
        format!("HTTP {status}: {cut}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_profile_id_is_read_from_the_profile_resource() {
        let body = br#"{"data":{"type":"profile","id":"01J0ABC","attributes":{"email":"a@b.c"},"links":{}}}"#;
        assert_eq!(profile_id_of(body).as_deref(), Some("01J0ABC"));
        assert_eq!(profile_id_of(br#"{"data":{"type":"event","id":"01J0ABC"}}"#), None);
        assert_eq!(profile_id_of(br#"{"data":{"type":"profile","id":" "}}"#), None);
        assert_eq!(profile_id_of(b""), None);
    }

    #[test]
    fn error_text_uses_the_json_api_detail_and_ignores_unknown_fields() {
        let body = br#"{"errors":[{"id":"e1","status":400,"code":"invalid","title":"Invalid input.",
            "detail":"The metric name is required.","source":{"pointer":"/data/attributes/metric"},"links":{},"meta":{"x":1}}],
            "unknown":true}"#;
        assert_eq!(
            error_text(400, body.to_vec()),
            "HTTP 400: invalid: The metric name is required. (at /data/attributes/metric)"
        );
        assert_eq!(
            error_text(502, b"<html>Bad gateway</html>".to_vec()),
            "HTTP 502: <html>Bad gateway</html>"
        );
        assert_eq!(error_text(500, Vec::new()), "HTTP 500");
    }
}
