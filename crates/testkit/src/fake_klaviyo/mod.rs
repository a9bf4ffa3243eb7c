//! A fake Klaviyo API that enforces the documented contract of `POST /api/profile-import`,
//! `POST /api/events`, the list-membership endpoint `POST` / `DELETE
//! /api/lists/{id}/relationships/profiles` and bulk profile import jobs (`POST
//! /api/profile-bulk-import-jobs`, `GET /api/profile-bulk-import-jobs/{id}` and its `/import-errors`)
//! (revision 2026-07-15) and remembers what it accepted.
//!
//! Checks, in the order a request meets them: the failure mode set by the test ([`FakeMode`]), the path
//! and method (404/405), `Authorization: Klaviyo-API-Key <key>` (401), the `revision` header (400),
//! `Content-Type` (415) and `Accept` (406) of `application/vnd.api+json`, the per-endpoint rate limits in
//! fixed windows (429 with an integer `Retry-After`), for the list endpoint that the list exists (404),
//! the body size (413), and the JSON:API schema (400, or 409 when the identifiers of one profile-import
//! name two different stored profiles). Every error is a JSON:API error document. What passed is stored:
//! profiles are upserted (201 created, 200 updated, properties merged, the same `data.id` every time),
//! events are deduplicated on profile + metric + unique id (202 either way), and list members are added
//! or removed (204 either way, whether or not they were members).
//!
//! Lists exist only once configured ([`FakeKlaviyoConfig::with_list`]) or created by a test
//! ([`FakeKlaviyoHandle::create_list`]). A list-membership
//! body is exactly `{"data":[{"type":"profile","id":"…"}, …]}` with 1–1000 profiles. Klaviyo documents
//! neither what it answers for a profile id it does not know nor for an empty `data`; the fake refuses
//! both with 400 and a JSON:API error pointing at the offending member.
//!
//! Bulk import jobs: a job carries 1–10,000 profiles (400 otherwise), at most 5 MB (413) and at most
//! 100 KB per profile (413, pointing at the profile), each shaped as for profile-import; it is answered
//! `202` with the job resource (`queued`), is `processing` after [`FakeKlaviyoConfig::bulk_job_delay`]
//! and `complete` after twice that, when its profiles are stored as profile-import stores them. Failures
//! are on demand: [`FakeKlaviyoHandle::fail_bulk_email`] makes a profile fail inside its job (an
//! `import-error` with `original_payload`, listed 20 per page by default, up to `page[size]=100`, with
//! `links.next`), [`FakeKlaviyoHandle::cancel_next_job`] makes the next job end `cancelled`. Creating
//! jobs and reading them have their own rate limits (10/s, 150/min each, as Klaviyo documents).
//!
//! Layout: `rules` holds the checks, `store` what is kept, `jobs` the bulk import jobs, `listener` the
//! connection cutting; this file
//! holds the configuration, the failure modes, the HTTP handler and the handle tests use.

mod jobs;
mod listener;
mod rules;
mod store;

pub use jobs::{BulkJobInfo, BulkJobStatus};
pub use rules::{
    FakeRateLimit, JSON_API, MAX_BULK_BODY_BYTES, MAX_BULK_PROFILE_BYTES, MAX_BULK_PROFILES,
    MAX_EVENT_BODY_BYTES, MAX_EVENT_PROPERTIES, MAX_LIST_PROFILES, MAX_METRIC_NAME_CHARS,
    MAX_PROFILE_BODY_BYTES, MAX_STRING_BYTES,
};
pub use store::{StoredEvent, StoredProfile};

use crate::TestkitError;
use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, Uri};
use axum::response::Response;
use rules::{ApiError, EndpointLimiter};
use serde_json::Value;
use std::collections::HashSet;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;
use store::{Store, Upserted};
use time::OffsetDateTime;
use tokio::net::TcpListener;
use tokio::time::Instant;

/// The key the fake accepts unless configured otherwise.
pub const DEFAULT_API_KEY: &str = "pk_test_fake_klaviyo";
/// The revision the fake serves unless configured otherwise.
pub const DEFAULT_REVISION: &str = "2026-07-15";

/// How the fake behaves.
#[derive(Debug, Clone)]
pub struct FakeKlaviyoConfig {
    /// The only private key accepted.
    pub api_key: String,
    /// When set, only this `revision` is accepted; when `None`, any well-formed revision is.
    pub revision: Option<String>,
    /// Limit for `/api/profile-import`; `None` for no limit.
    pub profile_import_limit: Option<FakeRateLimit>,
    /// Limit for `/api/events`; `None` for no limit.
    pub events_limit: Option<FakeRateLimit>,
    /// Limit for `/api/lists/{id}/relationships/profiles`, adding and removing counted together; `None`
    /// for no limit.
    pub lists_limit: Option<FakeRateLimit>,
    /// Limit for creating bulk profile import jobs; `None` for no limit.
    pub bulk_jobs_limit: Option<FakeRateLimit>,
    /// Limit for reading bulk import jobs and their import errors (counted together); `None` for no
    /// limit.
    pub bulk_job_reads_limit: Option<FakeRateLimit>,
    /// How long a bulk import job stays `queued`, and then `processing`, before it completes.
    pub bulk_job_delay: Duration,
    /// The lists that exist from the start (more can be made with [`FakeKlaviyoHandle::create_list`]).
    pub lists: Vec<String>,
    /// The mode the fake starts in.
    pub mode: FakeMode,
}

impl Default for FakeKlaviyoConfig {
    fn default() -> Self {
        FakeKlaviyoConfig {
            api_key: DEFAULT_API_KEY.to_string(),
            revision: Some(DEFAULT_REVISION.to_string()),
            profile_import_limit: Some(FakeRateLimit::per_second_and_minute(75, 750)),
            events_limit: Some(FakeRateLimit::per_second_and_minute(350, 3500)),
            lists_limit: Some(FakeRateLimit::per_second_and_minute(10, 150)),
            bulk_jobs_limit: Some(FakeRateLimit::per_second_and_minute(10, 150)),
            bulk_job_reads_limit: Some(FakeRateLimit::per_second_and_minute(10, 150)),
            bulk_job_delay: Duration::from_millis(200),
            lists: Vec::new(),
            mode: FakeMode::Normal,
        }
    }
}

impl FakeKlaviyoConfig {
    /// Klaviyo's limits and revision, accepting `api_key`.
    pub fn new(api_key: impl Into<String>) -> Self {
        FakeKlaviyoConfig { api_key: api_key.into(), ..Self::default() }
    }

    /// No rate limits at all, for benchmarks and load tests.
    pub fn unthrottled(mut self) -> Self {
        self.profile_import_limit = None;
        self.events_limit = None;
        self.lists_limit = None;
        self.bulk_jobs_limit = None;
        self.bulk_job_reads_limit = None;
        self
    }

    pub fn with_bulk_jobs_limit(mut self, limit: FakeRateLimit) -> Self {
        self.bulk_jobs_limit = Some(limit);
        self
    }

    pub fn with_bulk_job_reads_limit(mut self, limit: FakeRateLimit) -> Self {
        self.bulk_job_reads_limit = Some(limit);
        self
    }

    /// How long a bulk import job stays `queued` and then `processing` (each) before completing.
    pub fn with_bulk_job_delay(mut self, delay: Duration) -> Self {
        self.bulk_job_delay = delay;
        self
    }

    pub fn with_profile_import_limit(mut self, limit: FakeRateLimit) -> Self {
        self.profile_import_limit = Some(limit);
        self
    }

    pub fn with_events_limit(mut self, limit: FakeRateLimit) -> Self {
        self.events_limit = Some(limit);
        self
    }

    pub fn with_lists_limit(mut self, limit: FakeRateLimit) -> Self {
        self.lists_limit = Some(limit);
        self
    }

    /// A list that exists from the start, empty.
    pub fn with_list(mut self, list_id: impl Into<String>) -> Self {
        self.lists.push(list_id.into());
        self
    }

    /// Accepts any well-formed `revision` instead of only the pinned one.
    pub fn any_revision(mut self) -> Self {
        self.revision = None;
        self
    }
}

/// Failure modes a test can switch on while the fake runs.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum FakeMode {
    /// Enforce the contract and answer as Klaviyo does.
    #[default]
    Normal,
    /// Answer the next `count` requests with `status` (and a JSON:API error), then return to normal.
    Fail5xx { status: u16, count: u32 },
    /// Answer the next `count` requests with 429 and `Retry-After: retry_after_secs`, then return to normal.
    Throttle { retry_after_secs: u64, count: u32 },
    /// Handle requests normally (storing what is valid) but hold each response back this long.
    Slow(Duration),
    /// Answer everything with 503.
    Down,
    /// Close connections without answering, like a host that went away.
    DropConnections,
}

/// One request the fake received.
#[derive(Debug, Clone, PartialEq)]
pub struct RecordedRequest {
    pub method: String,
    /// Path and query.
    pub path: String,
    /// The status the fake answered with.
    pub status: u16,
    /// Request headers with lower-case names; the credential in `authorization` is replaced by
    /// `[redacted]`, so logs of the fake never contain a key.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body the fake answered with.
    pub response_body: String,
}

impl RecordedRequest {
    /// The first value of a header (name in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_str())
    }

    /// The request body as JSON, when it is JSON.
    pub fn json(&self) -> Option<Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Everything the handler and the handle share.
struct Shared {
    config: FakeKlaviyoConfig,
    /// Where the fixed rate-limit windows start.
    epoch: Instant,
    /// Mirrors `mode == DropConnections` for the listener, which must not take the state lock.
    cut: Arc<AtomicBool>,
    state: Mutex<FakeState>,
}

struct FakeState {
    mode: FakeMode,
    requests: Vec<RecordedRequest>,
    store: Store,
    /// Window counters for `/api/profile-import`, when limited.
    profile_import_limiter: Option<EndpointLimiter>,
    /// Window counters for `/api/events`, when limited.
    events_limiter: Option<EndpointLimiter>,
    /// Window counters for the list-membership endpoint, when limited.
    lists_limiter: Option<EndpointLimiter>,
    /// Window counters for creating bulk import jobs, when limited.
    bulk_jobs_limiter: Option<EndpointLimiter>,
    /// Window counters for reading bulk import jobs and their errors, when limited.
    bulk_job_reads_limiter: Option<EndpointLimiter>,
    /// Bulk import jobs, in creation order.
    jobs: Vec<jobs::Job>,
    /// Emails (lower-cased) whose profiles fail inside bulk import jobs.
    failing_bulk_emails: HashSet<String>,
    /// Whether the next bulk import job is to be cancelled.
    cancel_next_job: bool,
    /// Each accepted data-privacy deletion job: how many profiles it deleted.
    deletions: Vec<usize>,
    /// The `scheme://host:port` the fake is reached at, for `links.self`.
    base_url: String,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, FakeState> {
        // A panic while holding the lock cannot leave the state half-written in a way tests care about.
        self.state.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The state with every bulk import job moved on to where time has taken it.
    fn advanced(&self) -> MutexGuard<'_, FakeState> {
        let mut state = self.lock();
        state.advance_jobs(self.config.bulk_job_delay);
        state
    }

    fn set_mode(&self, mode: FakeMode) {
        self.cut.store(mode == FakeMode::DropConnections, Ordering::SeqCst);
        self.lock().mode = mode;
    }
}

impl FakeState {
    fn advance_jobs(&mut self, delay: Duration) {
        let now = OffsetDateTime::now_utc();
        for job in &mut self.jobs {
            job.advance(&mut self.store, &self.failing_bulk_emails, delay, now);
        }
    }
}

/// Entry points for running the fake.
pub struct FakeKlaviyo;

impl FakeKlaviyo {
    /// Starts the fake on an ephemeral port of 127.0.0.1.
    pub async fn start(config: FakeKlaviyoConfig) -> Result<FakeKlaviyoHandle, TestkitError> {
        Self::start_on(SocketAddr::from(([127, 0, 0, 1], 0)), config).await
    }

    /// Starts the fake on `addr`.
    pub async fn start_on(
        addr: SocketAddr,
        config: FakeKlaviyoConfig,
    ) -> Result<FakeKlaviyoHandle, TestkitError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| TestkitError::Bind { addr: addr.to_string(), source })?;
        Self::start_with_listener(listener, config)
    }

    /// Starts the fake on an already bound listener.
    pub fn start_with_listener(
        listener: TcpListener,
        config: FakeKlaviyoConfig,
    ) -> Result<FakeKlaviyoHandle, TestkitError> {
        let addr = listener.local_addr().map_err(TestkitError::Serve)?;
        let shared = new_shared(config, addr);
        let state = shared.clone();
        let server = crate::server::Running::spawn(listener, |listener, stop| run(listener, state, stop))?;
        Ok(FakeKlaviyoHandle { server, shared })
    }

    /// Serves on `listener` until `shutdown` completes; for the standalone `nudge dev fake-klaviyo`.
    pub async fn serve(
        listener: TcpListener,
        config: FakeKlaviyoConfig,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), TestkitError> {
        let addr = listener.local_addr().map_err(TestkitError::Serve)?;
        run(listener, new_shared(config, addr), shutdown).await
    }
}

fn new_shared(config: FakeKlaviyoConfig, addr: SocketAddr) -> Arc<Shared> {
    let cut = Arc::new(AtomicBool::new(config.mode == FakeMode::DropConnections));
    let mut store = Store::default();
    for list in &config.lists {
        store.lists.entry(list.clone()).or_default();
    }
    let state = FakeState {
        mode: config.mode.clone(),
        requests: Vec::new(),
        store,
        profile_import_limiter: config.profile_import_limit.map(EndpointLimiter::new),
        events_limiter: config.events_limit.map(EndpointLimiter::new),
        lists_limiter: config.lists_limit.map(EndpointLimiter::new),
        bulk_jobs_limiter: config.bulk_jobs_limit.map(EndpointLimiter::new),
        bulk_job_reads_limiter: config.bulk_job_reads_limit.map(EndpointLimiter::new),
        jobs: Vec::new(),
        failing_bulk_emails: HashSet::new(),
        cancel_next_job: false,
        deletions: Vec::new(),
        base_url: format!("http://{addr}"),
    };
    Arc::new(Shared { config, epoch: Instant::now(), cut, state: Mutex::new(state) })
}

async fn run(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), TestkitError> {
    let listener = listener::CuttableListener { inner: listener, cut: shared.cut.clone() };
    let app = Router::new()
        .fallback(handle)
        .with_state(shared)
        // Above the largest body Klaviyo accepts, so that the fake itself answers 413 with a JSON:API error.
        .layer(DefaultBodyLimit::max(MAX_EVENT_BODY_BYTES.max(MAX_BULK_BODY_BYTES) * 2));
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await.map_err(TestkitError::Serve)
}

/// A running fake; inspect what it received and stored, switch its mode, stop it.
pub struct FakeKlaviyoHandle {
    server: crate::server::Running,
    shared: Arc<Shared>,
}

impl FakeKlaviyoHandle {
    /// `http://127.0.0.1:<port>`, to use as the client's base URL.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// The key the fake accepts.
    pub fn api_key(&self) -> &str {
        &self.shared.config.api_key
    }

    pub fn set_mode(&self, mode: FakeMode) {
        self.shared.set_mode(mode);
    }

    pub fn mode(&self) -> FakeMode {
        self.shared.lock().mode.clone()
    }

    /// Every request received so far, oldest first (connections dropped by the fake are not here).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.shared.lock().requests.clone()
    }

    /// How many requests, stored profiles and stored events there are, without copying them (for load
    /// runs that watch the fake's progress).
    pub fn counts(&self) -> (usize, usize, usize) {
        let s = self.shared.advanced();
        (s.requests.len(), s.store.profiles.len(), s.store.events.len())
    }

    pub fn clear_requests(&self) {
        self.shared.lock().requests.clear();
    }

    /// The stored profiles, in creation order (bulk import jobs due to finish have finished).
    pub fn profiles(&self) -> Vec<StoredProfile> {
        self.shared.advanced().store.profiles.clone()
    }

    /// The stored profile with this (case-insensitive) email, if any.
    pub fn profile_by_email(&self, email: &str) -> Option<StoredProfile> {
        let email = email.trim().to_lowercase();
        self.shared
            .advanced()
            .store
            .profiles
            .iter()
            .find(|p| p.email.as_deref() == Some(email.as_str()))
            .cloned()
    }

    /// Each accepted data-privacy deletion job, in order: how many profiles it deleted.
    pub fn deletions(&self) -> Vec<usize> {
        self.shared.lock().deletions.clone()
    }

    /// Every bulk import job accepted so far, in creation order, as it stands now.
    pub fn bulk_jobs(&self) -> Vec<BulkJobInfo> {
        self.shared.advanced().jobs.iter().map(|j| j.info.clone()).collect()
    }

    /// Makes the profile with this (case-insensitive) email fail inside any bulk import job processed
    /// from now on: it is not stored and is listed among the job's import errors.
    pub fn fail_bulk_email(&self, email: &str) {
        self.shared.lock().failing_bulk_emails.insert(email.trim().to_lowercase());
    }

    /// Lets every profile through bulk import jobs again.
    pub fn clear_bulk_failures(&self) {
        self.shared.lock().failing_bulk_emails.clear();
    }

    /// Makes the next bulk import job end `cancelled` (from `queued`, nothing stored).
    pub fn cancel_next_job(&self) {
        self.shared.lock().cancel_next_job = true;
    }

    /// The stored events (each once, after deduplication), in arrival order.
    pub fn events(&self) -> Vec<StoredEvent> {
        self.shared.lock().store.events.clone()
    }

    /// How many stored events carry this `unique_id`.
    pub fn count_events_with_unique_id(&self, unique_id: &str) -> usize {
        self.shared.lock().store.events.iter().filter(|e| e.unique_id.as_deref() == Some(unique_id)).count()
    }

    /// Creates an empty list with this id (as made in Klaviyo's UI); an existing list is left as it is.
    pub fn create_list(&self, list_id: &str) {
        self.shared.lock().store.lists.entry(list_id.to_string()).or_default();
    }

    /// The members of a list, in the order they were added; `None` when no such list exists.
    pub fn list_members(&self, list_id: &str) -> Option<Vec<StoredProfile>> {
        let state = self.shared.lock();
        let ids = state.store.lists.get(list_id)?;
        Some(ids.iter().filter_map(|id| state.store.profile_by_id(id).cloned()).collect())
    }

    /// The emails of a list's members (the profile id for a member without an email), in the order
    /// they were added; empty when no such list exists.
    pub fn list_member_emails(&self, list_id: &str) -> Vec<String> {
        self.list_members(list_id).unwrap_or_default().into_iter().map(|p| p.email.unwrap_or(p.id)).collect()
    }

    /// Stops accepting connections, lets requests in flight finish (for at most 5 s) and returns.
    pub async fn shutdown(mut self) {
        self.server.shutdown().await;
    }
}

/// The one handler: every path and method comes here, so that unknown ones get JSON:API errors too.
async fn handle(
    State(shared): State<Arc<Shared>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let (response, delay) = {
        let mut state = shared.advanced();
        let now = OffsetDateTime::now_utc();
        let mode = state.mode.clone();
        let (status, response_body, retry_after) =
            match answer(&shared, &mut state, &mode, &method, &uri, &headers, &body, now) {
                Answer::Drop => {
                    // The listener's stream fails the write of whatever is answered here.
                    return plain(StatusCode::SERVICE_UNAVAILABLE, String::new(), None);
                }
                Answer::Ok(status, body) => (status, body, None),
                Answer::Err(e) => (e.status, e.body().to_string(), e.retry_after),
            };
        state.requests.push(RecordedRequest {
            method: method.to_string(),
            path: uri.path_and_query().map_or_else(|| uri.path().to_string(), |p| p.to_string()),
            status,
            headers: redacted(&headers),
            body: body.to_vec(),
            response_body: response_body.clone(),
        });
        let delay = match mode {
            FakeMode::Slow(d) => Some(d),
            _ => None,
        };
        let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        (plain(status, response_body, retry_after), delay)
    };
    if let Some(delay) = delay {
        // The request has been handled and stored already; only the answer is late, as with a slow API.
        tokio::time::sleep(delay).await;
    }
    response
}

enum Answer {
    Ok(u16, String),
    Err(ApiError),
    Drop,
}

impl From<ApiError> for Answer {
    fn from(e: ApiError) -> Self {
        Answer::Err(e)
    }
}

#[derive(Clone, PartialEq, Eq)]
enum Endpoint {
    ProfileImport,
    Events,
    /// `/api/lists/{id}/relationships/profiles`, with the id as it appears in the path.
    ListProfiles(String),
    /// `POST /api/profile-bulk-import-jobs`.
    BulkJobs,
    /// `GET /api/profile-bulk-import-jobs/{id}`.
    BulkJob(String),
    /// `GET /api/profile-bulk-import-jobs/{id}/import-errors`.
    BulkJobErrors(String),
    /// `POST /api/data-privacy-deletion-jobs`.
    DeletionJobs,
}

/// The bulk import job endpoint a path names, if any.
fn bulk_jobs_path(path: &str) -> Option<Endpoint> {
    let rest = path.strip_prefix("/api/profile-bulk-import-jobs")?;
    if rest.is_empty() {
        return Some(Endpoint::BulkJobs);
    }
    let rest = rest.strip_prefix('/')?;
    match rest.split_once('/') {
        None if !rest.is_empty() => Some(Endpoint::BulkJob(rest.to_string())),
        Some((id, "import-errors")) if !id.is_empty() => Some(Endpoint::BulkJobErrors(id.to_string())),
        _ => None,
    }
}

/// `page[size]` (1–100, default 20) and `page[cursor]` (an offset this fake hands out) of a query.
fn page_params(query: Option<&str>) -> Result<(usize, usize), ApiError> {
    let (mut size, mut cursor) = (20, 0);
    for pair in query.unwrap_or_default().split('&').filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        let key = key.replace("%5B", "[").replace("%5b", "[").replace("%5D", "]").replace("%5d", "]");
        match key.as_str() {
            "page[size]" => match value.parse::<usize>() {
                Ok(n) if (1..=100).contains(&n) => size = n,
                _ => {
                    return Err(ApiError {
                        pointer: None,
                        ..ApiError::new(
                            400,
                            "invalid",
                            "Invalid input.",
                            "`page[size]` must be between 1 and 100.",
                        )
                    });
                }
            },
            "page[cursor]" => match value.parse::<usize>() {
                Ok(n) => cursor = n,
                Err(_) => {
                    return Err(ApiError::new(
                        400,
                        "invalid",
                        "Invalid input.",
                        "`page[cursor]` is not valid.",
                    ));
                }
            },
            _ => {}
        }
    }
    Ok((size, cursor))
}

/// The list id of a `/api/lists/{id}/relationships/profiles` path (a trailing slash allowed, as older
/// revisions wrote it).
fn list_profiles_path(path: &str) -> Option<&str> {
    let id = path.strip_prefix("/api/lists/")?.strip_suffix("/relationships/profiles")?;
    (!id.is_empty() && !id.contains('/')).then_some(id)
}

#[allow(clippy::too_many_arguments)]
fn answer(
    shared: &Shared,
    state: &mut FakeState,
    mode: &FakeMode,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    body: &[u8],
    now: OffsetDateTime,
) -> Answer {
    match mode {
        FakeMode::Normal | FakeMode::Slow(_) => {}
        FakeMode::DropConnections => return Answer::Drop,
        FakeMode::Down => {
            return ApiError::new(503, "service_unavailable", "Service unavailable.", "The fake is down.")
                .into();
        }
        FakeMode::Fail5xx { status, count } => {
            let (status, count) = (*status, *count);
            state.mode =
                if count > 1 { FakeMode::Fail5xx { status, count: count - 1 } } else { FakeMode::Normal };
            if count > 0 {
                return ApiError::new(status, "error", "A server error occurred.", "Injected failure.")
                    .into();
            }
        }
        FakeMode::Throttle { retry_after_secs, count } => {
            let (secs, count) = (*retry_after_secs, *count);
            state.mode = if count > 1 {
                FakeMode::Throttle { retry_after_secs: secs, count: count - 1 }
            } else {
                FakeMode::Normal
            };
            if count > 0 {
                return rules::throttled(secs).into();
            }
        }
    }
    let endpoint = match uri.path().trim_end_matches('/') {
        "/api/profile-import" => Endpoint::ProfileImport,
        "/api/events" => Endpoint::Events,
        "/api/data-privacy-deletion-jobs" => Endpoint::DeletionJobs,
        other if list_profiles_path(other).is_some() => {
            Endpoint::ListProfiles(list_profiles_path(other).unwrap_or_default().to_string())
        }
        other if bulk_jobs_path(other).is_some() => bulk_jobs_path(other).unwrap_or(Endpoint::BulkJobs),
        other => {
            return ApiError::new(
                404,
                "not_found",
                "Not found.",
                format!("No endpoint at `{other}` in this fake."),
            )
            .into();
        }
    };
    let allowed = match endpoint {
        Endpoint::ListProfiles(_) => method == Method::POST || method == Method::DELETE,
        Endpoint::ProfileImport | Endpoint::Events | Endpoint::BulkJobs | Endpoint::DeletionJobs => {
            method == Method::POST
        }
        Endpoint::BulkJob(_) | Endpoint::BulkJobErrors(_) => method == Method::GET,
    };
    if !allowed {
        return ApiError::new(
            405,
            "method_not_allowed",
            "Method not allowed.",
            format!("`{method}` is not allowed."),
        )
        .into();
    }
    let checked = rules::check_auth(headers, &shared.config.api_key)
        .and_then(|()| rules::check_revision(headers, shared.config.revision.as_deref()))
        .and_then(|()| {
            if method == Method::GET {
                rules::check_accept(headers)
            } else {
                rules::check_media_types(headers)
            }
        });
    if let Err(e) = checked {
        return e.into();
    }
    let limiter = match endpoint {
        Endpoint::ProfileImport => state.profile_import_limiter.as_mut(),
        Endpoint::Events => state.events_limiter.as_mut(),
        Endpoint::ListProfiles(_) => state.lists_limiter.as_mut(),
        Endpoint::BulkJobs => state.bulk_jobs_limiter.as_mut(),
        Endpoint::BulkJob(_) | Endpoint::BulkJobErrors(_) => state.bulk_job_reads_limiter.as_mut(),
        Endpoint::DeletionJobs => None,
    };
    if let Some(limiter) = limiter
        && let Err(e) = limiter.admit(shared.epoch)
    {
        return e.into();
    }
    if let Endpoint::BulkJob(id) | Endpoint::BulkJobErrors(id) = &endpoint {
        let Some(job) = state.jobs.iter().find(|j| j.info.id == *id) else {
            return ApiError::new(
                404,
                "not_found",
                "Not found.",
                format!("No bulk import job with id {id}."),
            )
            .into();
        };
        if let Endpoint::BulkJob(_) = endpoint {
            return Answer::Ok(200, job.resource(&state.base_url).to_string());
        }
        return match page_params(uri.query()) {
            Ok((size, cursor)) => Answer::Ok(200, job.errors_page(&state.base_url, cursor, size).to_string()),
            Err(e) => e.into(),
        };
    }
    if let Endpoint::ListProfiles(list_id) = &endpoint
        && !state.store.lists.contains_key(list_id)
    {
        return ApiError::new(
            404,
            "not_found",
            "Not found.",
            format!("A list with id {list_id} does not exist."),
        )
        .into();
    }
    // Klaviyo states no byte limit for the list endpoint; its 1000-profile cap is checked with the schema.
    let max = match endpoint {
        Endpoint::ProfileImport => MAX_PROFILE_BODY_BYTES,
        Endpoint::BulkJobs => MAX_BULK_BODY_BYTES,
        Endpoint::Events
        | Endpoint::ListProfiles(_)
        | Endpoint::BulkJob(_)
        | Endpoint::BulkJobErrors(_)
        | Endpoint::DeletionJobs => MAX_EVENT_BODY_BYTES,
    };
    if body.len() > max {
        return ApiError::new(
            413,
            "request_too_large",
            "Request entity too large.",
            format!("The body is {} bytes; this endpoint accepts at most {max}.", body.len()),
        )
        .into();
    }
    let doc = match rules::parse_document(body) {
        Ok(doc) => doc,
        Err(e) => return e.into(),
    };
    match endpoint {
        Endpoint::ProfileImport => {
            let import = match rules::check_profile_import(&doc) {
                Ok(import) => import,
                Err(e) => return e.into(),
            };
            match state.store.upsert_profile(import.id, import.attributes, now) {
                Ok((upserted, profile)) => {
                    let status = if upserted == Upserted::Created { 201 } else { 200 };
                    Answer::Ok(status, store::profile_resource(&profile, &state.base_url).to_string())
                }
                Err(store::Conflict) => ApiError {
                    pointer: Some("/data/attributes".into()),
                    ..ApiError::new(
                        409,
                        "duplicate_profile",
                        "Conflict.",
                        "The identifiers given belong to different profiles.",
                    )
                }
                .into(),
            }
        }
        Endpoint::Events => match rules::check_event(&doc, now) {
            Ok(attrs) => {
                state.store.add_event(attrs, now);
                Answer::Ok(202, String::new())
            }
            Err(e) => e.into(),
        },
        Endpoint::ListProfiles(list_id) => {
            let ids = match rules::check_list_members(&doc) {
                Ok(ids) => ids,
                Err(e) => return e.into(),
            };
            if let Some((i, id)) =
                ids.iter().enumerate().find(|(_, id)| state.store.profile_by_id(id).is_none())
            {
                return ApiError::invalid(format!("Profile {id} does not exist."), format!("/data/{i}/id"))
                    .into();
            }
            if method == Method::POST {
                state.store.add_to_list(&list_id, &ids);
            } else {
                state.store.remove_from_list(&list_id, &ids);
            }
            Answer::Ok(204, String::new())
        }
        Endpoint::BulkJobs => {
            let import = match rules::check_bulk_import_job(&doc) {
                Ok(import) => import,
                Err(e) => return e.into(),
            };
            if let Some((i, list)) =
                import.lists.iter().enumerate().find(|(_, l)| !state.store.lists.contains_key(**l))
            {
                return ApiError {
                    pointer: Some(format!("/data/relationships/lists/data/{i}/id")),
                    ..ApiError::new(
                        404,
                        "not_found",
                        "Not found.",
                        format!("A list with id {list} does not exist."),
                    )
                }
                .into();
            }
            let profiles = import.profiles.into_iter().cloned().collect();
            let lists = import.lists.into_iter().map(str::to_string).collect();
            let cancel = std::mem::take(&mut state.cancel_next_job);
            let job = jobs::Job::new(profiles, lists, cancel, now);
            let resource = job.resource(&state.base_url).to_string();
            state.jobs.push(job);
            Answer::Ok(202, resource)
        }
        Endpoint::DeletionJobs => match rules::check_deletion_job(&doc) {
            Ok(attrs) => {
                let attrs = attrs.clone();
                let deleted = state.store.delete_matching(&attrs);
                state.deletions.push(deleted);
                // Accepted: Klaviyo deletes asynchronously and answers without a body.
                Answer::Ok(202, String::new())
            }
            Err(e) => e.into(),
        },
        Endpoint::BulkJob(_) | Endpoint::BulkJobErrors(_) => Answer::Ok(200, String::new()),
    }
}

fn plain(status: StatusCode, body: String, retry_after: Option<u64>) -> Response {
    let mut response = Response::new(Body::from(body.clone()));
    *response.status_mut() = status;
    if !body.is_empty() {
        response.headers_mut().insert("content-type", HeaderValue::from_static(JSON_API));
    }
    if let Some(seconds) = retry_after {
        response.headers_mut().insert("retry-after", HeaderValue::from(seconds));
    }
    response
}

fn redacted(headers: &HeaderMap) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|(name, value)| {
            let value = value.to_str().unwrap_or("[not text]");
            let value = if name.as_str() == "authorization" {
                match value.split_once(' ') {
                    Some((scheme, _)) => format!("{scheme} [redacted]"),
                    None => "[redacted]".to_string(),
                }
            } else {
                value.to_string()
            };
            (name.as_str().to_string(), value)
        })
        .collect()
}
