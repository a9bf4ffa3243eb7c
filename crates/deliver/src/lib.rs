//! Destinations: the code that turns a destination-neutral [`Action`] into one call to a marketing
//! platform and reports how that call went.
//!
//! What lives here: the [`Destination`] trait every platform implements, the [`Outcome`] of one attempt,
//! the retry classification shared by all destinations ([`classify_status`], [`parse_retry_after`]),
//! the jittered exponential [`Backoff`], the client-side [`RateLimiter`] (optionally shared by all nodes
//! through Redis, see [`shared_limits`]), and the crate's error type.
//! Platform clients live in their own modules, each laid out the same way (`config`, a pure `request`
//! builder, `client`): [`klaviyo`], [`braze`] (`/users/track` batches), [`hubspot`] (batch contact upserts),
//! [`marketo`] (Sync Leads, custom activities), [`webhook`] (Standard Webhooks), [`slack`]. [`endpoint`]
//! holds the rules for user-configured outbound URLs (https, no internal hosts).
//!
//! What does not live here: retrying, persistence and ordering. A destination makes exactly one attempt
//! per call; the server's durable outbox decides when to try again (using [`Backoff`]) and when to give
//! up, so a crash between attempts never loses or duplicates work.

pub mod braze;
pub mod endpoint;
pub mod hubspot;
pub mod klaviyo;
pub mod marketo;
pub mod shared_limits;
pub mod slack;
pub mod webhook;

use nudge_model::Action;
use rand::Rng;
use serde::Deserialize;
use std::collections::VecDeque;
use std::fmt;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

pub use braze::{BrazeClient, BrazeConfig};
pub use hubspot::{HubSpotClient, HubSpotConfig};
pub use klaviyo::{KlaviyoClient, KlaviyoConfig};
pub use marketo::{MarketoClient, MarketoConfig};
pub use shared_limits::SharedLimits;
pub use slack::{SlackClient, SlackConfig};
pub use webhook::{WebhookClient, WebhookConfig};

/// A marketing platform that actions can be delivered to.
#[async_trait::async_trait]
pub trait Destination: Send + Sync {
    /// A short stable name used in metrics, logs and the audit trail (for example `klaviyo`).
    fn name(&self) -> &'static str;

    /// Makes exactly one attempt to deliver `action`, after waiting for the client-side rate limiter.
    ///
    /// Never retries by itself and never panics on bad input: invalid actions come back as
    /// [`Outcome::Rejected`] without any request being sent.
    async fn deliver(&self, action: &Action) -> Outcome;

    /// The most actions one request to this destination carries (1 when the platform has no batch
    /// endpoint for them). The delivery engine hands [`Destination::deliver_batch`] at most this many.
    fn max_batch(&self) -> usize {
        1
    }

    /// Makes one attempt for several actions (each for a different customer) and returns exactly one
    /// outcome per action, in the same order.
    ///
    /// A batching destination splits `actions` into as few requests as its limits allow (count, bytes,
    /// endpoint), refuses invalid actions client-side without failing the others, and settles each
    /// record by the platform's per-record answer: a 2xx carrying per-record errors makes only those
    /// records `Retry` or `Rejected`. A failure of a whole request (429, 5xx, timeout, refused
    /// credentials) is that outcome for each action in it. The default sends the actions one at a time.
    async fn deliver_batch(&self, actions: &[Action]) -> Vec<Outcome> {
        let mut outcomes = Vec::with_capacity(actions.len());
        for action in actions {
            outcomes.push(self.deliver(action).await);
        }
        outcomes
    }

    /// When the client could send its next request without waiting on its own rate limiter (`None`: now,
    /// or no limiter). The delivery engine waits until then before taking items off the queue, so a tool
    /// at its request limit gets full batches instead of many part-full ones queued behind the limiter.
    fn ready_at(&self) -> Option<Instant> {
        None
    }

    /// The most profile upserts one bulk call carries (`nudge push`); the batch size unless the platform
    /// has a separate bulk endpoint.
    fn max_bulk(&self) -> usize {
        self.max_batch()
    }

    /// Pushes many customers' profiles (all [`Action::UpsertProfile`], each for a different customer) for
    /// a batch run, through the platform's bulk endpoint where it has one (Klaviyo's bulk profile import
    /// jobs); one outcome per action, in order, with [`Destination::deliver_batch`]'s rules. The default
    /// is [`Destination::deliver_batch`].
    async fn push_profiles(&self, actions: &[Action]) -> Vec<Outcome> {
        self.deliver_batch(actions).await
    }

    /// Whether this connector can ask its tool to delete a person ([`Destination::erase`]).
    fn can_erase(&self) -> bool {
        false
    }

    /// Asks the tool to delete everything it holds about `subject`, for good. `Delivered` means the tool
    /// accepted the deletion (some carry it out later, on their side); `Retry` and `Rejected` as for
    /// actions. Connectors without a deletion endpoint keep this default, which sends nothing.
    async fn erase(&self, _subject: &ErasureSubject) -> Outcome {
        Outcome::Rejected {
            endpoint: "erase".into(),
            status: None,
            error: format!("{} has no deletion endpoint", self.name()),
        }
    }
}

/// Who a deletion request is about, by the identifiers destinations know people by. `Debug` shows how
/// many of each, never the values.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct ErasureSubject {
    /// nudge's customer keys (`shopify:880012`), which connectors send as the tool's external id.
    pub external_ids: Vec<String>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

impl fmt::Debug for ErasureSubject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ErasureSubject")
            .field("external_ids", &self.external_ids.len())
            .field("email", &self.email.as_ref().map(|_| "<redacted>"))
            .field("phone", &self.phone.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// How one delivery attempt ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The platform accepted the request.
    Delivered {
        /// Method and path that was called, such as `POST /api/events`.
        endpoint: String,
        status: u16,
    },
    /// The attempt failed in a way that may succeed later: throttling, a server error, a timeout or a
    /// connection failure. `retry_after` is the platform's own instruction when it gave one.
    Retry { endpoint: String, status: Option<u16>, error: String, retry_after: Option<Duration> },
    /// The platform refused the request for good (or it failed client-side validation and was never
    /// sent, in which case `status` is `None`). Retrying the same input cannot succeed.
    Rejected { endpoint: String, status: Option<u16>, error: String },
}

impl Outcome {
    /// The endpoint the attempt was for.
    pub fn endpoint(&self) -> &str {
        match self {
            Outcome::Delivered { endpoint, .. }
            | Outcome::Retry { endpoint, .. }
            | Outcome::Rejected { endpoint, .. } => endpoint,
        }
    }

    /// The HTTP status the platform answered with, if a response arrived.
    pub fn status(&self) -> Option<u16> {
        match self {
            Outcome::Delivered { status, .. } => Some(*status),
            Outcome::Retry { status, .. } | Outcome::Rejected { status, .. } => *status,
        }
    }

    /// The error text of a failed attempt.
    pub fn error(&self) -> Option<&str> {
        match self {
            Outcome::Delivered { .. } => None,
            Outcome::Retry { error, .. } | Outcome::Rejected { error, .. } => Some(error),
        }
    }

    /// A short stable name (`delivered`, `retry`, `rejected`) for metrics and the audit trail.
    pub fn kind(&self) -> &'static str {
        match self {
            Outcome::Delivered { .. } => "delivered",
            Outcome::Retry { .. } => "retry",
            Outcome::Rejected { .. } => "rejected",
        }
    }

    pub fn is_delivered(&self) -> bool {
        matches!(self, Outcome::Delivered { .. })
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.kind(), self.endpoint())?;
        if let Some(status) = self.status() {
            write!(f, " (HTTP {status})")?;
        }
        if let Some(error) = self.error() {
            write!(f, ": {error}")?;
        }
        Ok(())
    }
}

/// The errors callers of this crate match on.
#[derive(Debug, thiserror::Error)]
pub enum DeliverError {
    /// The configuration cannot work (empty key, malformed URL or revision, zero rate limit, …).
    #[error("invalid destination configuration: {0}")]
    Config(String),
    /// No TLS crypto provider was installed before a client was built. The binary installs one at start.
    #[error("no TLS crypto provider is installed; install one (for example ring's) before building a client")]
    NoCryptoProvider,
    /// The HTTP client could not be built.
    #[error("could not build the HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
    /// An action broke one of the platform's documented limits and was not sent.
    #[error("invalid action: {0}")]
    Invalid(String),
}

/// What a response status means for the attempt that received it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StatusClass {
    /// 2xx.
    Success,
    /// 429, 408 and every 5xx (including Cloudflare's 524): try again later.
    Retryable,
    /// Every other status: the request itself is wrong and must not be repeated unchanged.
    Permanent,
}

/// Classifies a response status the same way for every destination.
pub fn classify_status(status: u16) -> StatusClass {
    match status {
        200..=299 => StatusClass::Success,
        408 | 429 | 500..=599 => StatusClass::Retryable,
        _ => StatusClass::Permanent,
    }
}

/// Parses a `Retry-After` header given in seconds (`"3"`, or a decimal such as `"1.5"`).
///
/// The HTTP-date form is not used by the platforms we call and is treated as absent, which makes the
/// caller fall back to its own backoff.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    value.parse::<f64>().ok().filter(|s| s.is_finite() && *s >= 0.0).map(Duration::from_secs_f64)
}

/// Jittered exponential backoff, never shorter than a platform's `Retry-After`.
///
/// The defaults follow Klaviyo's own SDK: 0.5 s × 1.5ⁿ, ±50 % jitter, at most 60 s.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Backoff {
    /// The delay before the first retry, before jitter.
    pub base: Duration,
    /// How much longer each further delay is than the one before.
    pub factor: f64,
    /// The longest delay the backoff itself produces (a longer `Retry-After` still wins).
    pub max: Duration,
    /// The fraction (0..=1) by which a delay is randomly shortened or lengthened.
    pub jitter: f64,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { base: Duration::from_millis(500), factor: 1.5, max: Duration::from_secs(60), jitter: 0.5 }
    }
}

impl Backoff {
    /// The delay before retry number `attempt` (0 for the first retry), never shorter than `retry_after`.
    pub fn delay(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        self.delay_with(attempt, retry_after, &mut rand::thread_rng())
    }

    /// [`Backoff::delay`] with a caller-supplied random source, so tests can be deterministic.
    pub fn delay_with<R: Rng + ?Sized>(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        rng: &mut R,
    ) -> Duration {
        let max = self.max.as_secs_f64();
        let exponent = i32::try_from(attempt).unwrap_or(i32::MAX);
        let nominal = (self.base.as_secs_f64() * self.factor.max(1.0).powi(exponent)).min(max);
        let jitter = self.jitter.clamp(0.0, 1.0);
        let scale = if jitter > 0.0 { rng.gen_range((1.0 - jitter)..=(1.0 + jitter)) } else { 1.0 };
        let jittered = Duration::from_secs_f64((nominal * scale).clamp(0.0, max));
        match retry_after {
            Some(floor) if floor > jittered => floor,
            _ => jittered,
        }
    }
}

/// A platform's request quota for one endpoint: a 1-second burst window and a 1-minute steady window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    /// Requests allowed in any one second.
    pub burst_per_sec: u32,
    /// Requests allowed in any one minute.
    pub steady_per_min: u32,
}

impl RateLimit {
    pub const fn new(burst_per_sec: u32, steady_per_min: u32) -> Self {
        RateLimit { burst_per_sec, steady_per_min }
    }
}

/// The least margin a limiter shared by several nodes adds to each window (see [`RateLimiter::shared`]):
/// enough for the spread of the nodes' delays between reserving a slot and the request reaching the platform.
pub const SHARED_MARGIN: Duration = Duration::from_millis(50);

/// A client-side limiter that keeps requests to one endpoint within a set of windows: at most `count`
/// grants in any interval of `window` (Klaviyo: 1 s and 1 min; Braze 3,000 per 3 s; HubSpot 190 per
/// 10 s; Marketo 100 per 20 s).
///
/// It keeps a sliding log of the most recent grants, so that no interval of a window's length, wherever it
/// starts, contains more grants than allowed; the platform's fixed windows are therefore never exceeded by
/// our own timing. Callers reserve the earliest free slot under a short lock and then sleep outside it, so
/// waiters are served in arrival order. Time is [`tokio::time::Instant`], so tests can drive it with
/// paused time.
///
/// A limiter made [`shared`](RateLimiter::shared) keeps its log in Redis instead, so that all nodes of a
/// deployment together stay within the windows; see [`shared_limits`].
#[derive(Debug)]
pub struct RateLimiter {
    /// `(allowed, window)` pairs, each `allowed >= 1`.
    windows: Vec<(usize, Duration)>,
    /// Grant times (some possibly in the future, when reserved by waiting callers), oldest first.
    /// Only as many as the largest window allows are kept.
    grants: Mutex<VecDeque<Instant>>,
    /// Added to every window: a request granted exactly one window after an earlier one can reach the
    /// platform a little before that, if the earlier one spent longer on the way, and count against the
    /// window it should have left.
    margin: Duration,
    /// The log in Redis that [`RateLimiter::acquire`] reserves in, when the limit is shared by all nodes.
    /// `grants` then holds only this node's own shared grants, for [`RateLimiter::next_free`].
    shared: Option<shared_limits::SharedLog>,
}

impl RateLimiter {
    /// A limiter for `limit` (a 1-second and a 1-minute window); zero limits are treated as one request
    /// per window.
    pub fn new(limit: RateLimit) -> Self {
        Self::with_windows(&[
            (limit.burst_per_sec, Duration::from_secs(1)),
            (limit.steady_per_min, Duration::from_secs(60)),
        ])
    }

    /// A limiter allowing at most `count` grants in any interval of `window`, for each pair. Zero counts
    /// are treated as one; zero-length windows are ignored.
    pub fn with_windows(windows: &[(u32, Duration)]) -> Self {
        let windows = windows
            .iter()
            .filter(|(_, w)| !w.is_zero())
            .map(|(count, w)| ((*count).max(1) as usize, *w))
            .collect();
        RateLimiter { windows, grants: Mutex::new(VecDeque::new()), margin: Duration::ZERO, shared: None }
    }

    /// This limiter with its log kept in Redis under `limits`' key `<prefix>:limit:<name>`, shared by
    /// every limiter (on any node) that uses the same key and windows. `name` says which destination and
    /// endpoint the limit is for, such as `klaviyo:events`.
    /// A shared limiter's windows are at least [`SHARED_MARGIN`] longer: the nodes' requests take paths of
    /// their own to the platform, so one reserved later can arrive sooner than one reserved before it.
    pub fn shared(mut self, limits: &SharedLimits, name: &str) -> Self {
        self.shared = Some(limits.log(name));
        self.margin = self.margin.max(SHARED_MARGIN);
        self
    }

    /// Whether this limiter's log is kept in Redis.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// This limiter with `margin` added to every window.
    pub fn with_margin(mut self, margin: Duration) -> Self {
        self.margin = margin;
        self
    }

    /// The limiter's windows as `(allowed, window)`.
    pub fn windows(&self) -> Vec<(u32, Duration)> {
        self.windows.iter().map(|(n, w)| (u32::try_from(*n).unwrap_or(u32::MAX), *w)).collect()
    }

    /// Reserves the earliest slot that keeps every window within its limit and returns when it starts.
    ///
    /// This uses the node's own log only, also for a shared limiter; [`RateLimiter::acquire`] is what
    /// reserves in the shared log.
    pub fn reserve(&self) -> Instant {
        let now = Instant::now();
        let mut grants = self.grants.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut at = grants.back().map_or(now, |last| (*last).max(now));
        for &(allowed, window) in &self.windows {
            if grants.len() >= allowed {
                // The grant `allowed` places back must have left the window before a new one may start.
                let oldest_in_window = grants[grants.len() - allowed];
                at = at.max(oldest_in_window + window + self.margin);
            }
        }
        grants.push_back(at);
        let keep = self.windows.iter().map(|(n, _)| *n).max().unwrap_or(1);
        while grants.len() > keep {
            grants.pop_front();
        }
        at
    }

    /// The earliest instant a request could start now, without reserving it; `None` when that is now.
    ///
    /// For a shared limiter this is an estimate from the grants this node was given: other nodes' grants
    /// are not seen, so the real next slot can only be later, and [`RateLimiter::acquire`] waits for it.
    pub fn next_free(&self) -> Option<Instant> {
        let now = Instant::now();
        let grants = self.grants.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let mut at = grants.back().map_or(now, |last| (*last).max(now));
        for &(allowed, window) in &self.windows {
            if grants.len() >= allowed {
                at = at.max(grants[grants.len() - allowed] + window + self.margin);
            }
        }
        (at > now).then_some(at)
    }

    /// Waits until a request may be sent and returns how long that took.
    ///
    /// A shared limiter reserves its slot in Redis (one atomic script) and, while Redis cannot be
    /// reached, keeps waiting and asking again rather than letting the request go unthrottled.
    pub async fn acquire(&self) -> Duration {
        let start = Instant::now();
        let at = match &self.shared {
            Some(log) => {
                let wait = log.reserve(&self.windows, self.margin).await;
                let at = Instant::now() + wait;
                self.note_shared_grant(at);
                at
            }
            None => self.reserve(),
        };
        if at > start {
            tokio::time::sleep_until(at).await;
        }
        start.elapsed()
    }

    /// Records a grant this node was given from the shared log, in order, so that
    /// [`RateLimiter::next_free`] can estimate the next free slot without asking Redis.
    fn note_shared_grant(&self, at: Instant) {
        let mut grants = self.grants.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let position = grants.iter().rposition(|g| *g <= at).map_or(0, |i| i + 1);
        grants.insert(position, at);
        let keep = self.windows.iter().map(|(n, _)| *n).max().unwrap_or(1);
        while grants.len() > keep {
            grants.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    #[test]
    fn classifies_statuses() {
        assert_eq!(classify_status(200), StatusClass::Success);
        assert_eq!(classify_status(202), StatusClass::Success);
        for s in [408, 429, 500, 502, 503, 504, 524] {
            assert_eq!(classify_status(s), StatusClass::Retryable, "{s}");
        }
        for s in [400, 401, 403, 404, 409, 413, 415, 422] {
            assert_eq!(classify_status(s), StatusClass::Permanent, "{s}");
        }
    }

    #[test]
    fn parses_retry_after_seconds() {
        assert_eq!(parse_retry_after("3"), Some(Duration::from_secs(3)));
        assert_eq!(parse_retry_after(" 1.5 "), Some(Duration::from_millis(1500)));
        assert_eq!(parse_retry_after("Fri, 01 May 2026 10:00:00 GMT"), None);
        assert_eq!(parse_retry_after("-1"), None);
    }

    #[test]
    fn backoff_grows_is_capped_and_honours_retry_after() {
        let b = Backoff { jitter: 0.0, ..Backoff::default() };
        assert_eq!(b.delay(0, None), Duration::from_millis(500));
        assert_eq!(b.delay(1, None), Duration::from_millis(750));
        assert_eq!(b.delay(50, None), Duration::from_secs(60));
        assert_eq!(b.delay(0, Some(Duration::from_secs(3))), Duration::from_secs(3));
        assert_eq!(b.delay(50, Some(Duration::from_secs(90))), Duration::from_secs(90));
        assert_eq!(b.delay(u32::MAX, None), Duration::from_secs(60));
    }

    #[test]
    fn backoff_jitter_stays_within_bounds() {
        let b = Backoff::default();
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        for attempt in 0..20 {
            let nominal = (0.5 * 1.5f64.powi(attempt as i32)).min(60.0);
            for _ in 0..50 {
                let d = b.delay_with(attempt, None, &mut rng).as_secs_f64();
                assert!(d >= nominal * 0.5 - 1e-9 && d <= (nominal * 1.5).min(60.0) + 1e-9, "{attempt}: {d}");
                let floored = b.delay_with(attempt, Some(Duration::from_secs(3)), &mut rng);
                assert!(floored >= Duration::from_secs(3));
            }
        }
    }

    #[tokio::test(start_paused = true)]
    async fn limiter_allows_a_burst_then_spaces_by_the_second() {
        let limiter = RateLimiter::new(RateLimit::new(75, 750));
        let start = Instant::now();
        for _ in 0..75 {
            assert_eq!(limiter.acquire().await, Duration::ZERO);
        }
        limiter.acquire().await;
        assert_eq!(start.elapsed(), Duration::from_secs(1));
    }

    #[tokio::test(start_paused = true)]
    async fn next_free_tells_when_a_slot_opens_without_taking_it() {
        let limiter = RateLimiter::with_windows(&[(2, Duration::from_secs(10))]);
        assert_eq!(limiter.next_free(), None);
        limiter.acquire().await;
        assert_eq!(limiter.next_free(), None, "one slot left");
        limiter.acquire().await;
        let start = Instant::now();
        assert_eq!(limiter.next_free(), Some(start + Duration::from_secs(10)));
        assert_eq!(limiter.next_free(), Some(start + Duration::from_secs(10)), "peeking takes nothing");
    }

    #[tokio::test(start_paused = true)]
    async fn a_margin_lengthens_every_window() {
        let limiter = RateLimiter::with_windows(&[(2, Duration::from_secs(10))])
            .with_margin(Duration::from_millis(100));
        let start = Instant::now();
        for _ in 0..3 {
            limiter.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::from_millis(10_100));
    }

    #[tokio::test(start_paused = true)]
    async fn limiter_keeps_a_custom_window() {
        // Marketo: 100 calls in any 20 s.
        let limiter = RateLimiter::with_windows(&[(100, Duration::from_secs(20))]);
        let start = Instant::now();
        for _ in 0..250 {
            limiter.acquire().await;
        }
        assert_eq!(start.elapsed(), Duration::from_secs(40));
        assert_eq!(limiter.windows(), vec![(100, Duration::from_secs(20))]);
    }

    #[tokio::test(start_paused = true)]
    async fn limiter_never_exceeds_either_window() {
        let limit = RateLimit::new(75, 750);
        let limiter = std::sync::Arc::new(RateLimiter::new(limit));
        let start = Instant::now();
        let tasks: Vec<_> = (0..1600)
            .map(|_| {
                let limiter = limiter.clone();
                tokio::spawn(async move {
                    limiter.acquire().await;
                    Instant::now()
                })
            })
            .collect();
        let mut times = Vec::new();
        for t in tasks {
            times.push(t.await.unwrap());
        }
        times.sort();
        for (window, allowed) in [(Duration::from_secs(1), 75), (Duration::from_secs(60), 750)] {
            for (i, t) in times.iter().enumerate() {
                let in_window = times[i..].iter().take_while(|u| **u < *t + window).count();
                assert!(in_window <= allowed, "{in_window} grants within {window:?} of grant {i}");
            }
        }
        // The first 750 go out 75 a second; the next 750 wait for the minute to pass, and so on.
        assert_eq!(*times.last().unwrap() - start, Duration::from_secs(121));
        assert_eq!(times[749] - start, Duration::from_secs(9));
    }
}
