//! The intake seam every commerce source implements: verify a raw request at the edge, then parse the
//! stored delivery in the workers.
//!
//! The edge calls [`Source::verify`] with the headers and exact body bytes. An accepted request says what
//! to store (source, topic, dedupe keys, the body itself or an envelope's inner payload) and what to answer
//! once it is durable; a refused one carries the HTTP status and the reason. Later, a worker reads the
//! stored delivery back and calls [`Source::parse`], which turns it into canonical events, a privacy
//! request, a fetch job (the platform sent a thin notification; the full resource must be read from its
//! API), or a precise reason to ignore or quarantine it.
//!
//! Adding a source is a folder in this crate with a type implementing [`Source`], a fake in the test kit,
//! and one line where the server registers its sources. Every source passes the source compliance suite
//! (`tests/it/source_suite.rs`).

use crate::headers::Headers;
use nudge_model::{CustomerId, Event};
use serde::{Deserialize, Serialize};

/// A request as it reached the edge.
#[derive(Debug, Clone, Copy)]
pub struct Inbound<'a> {
    pub headers: &'a Headers,
    /// The body exactly as received.
    pub body: &'a [u8],
    /// The edge's clock, milliseconds since the epoch (replay windows are checked against it).
    pub now_ms: i64,
    /// The raw query string of a `GET` (a registration challenge such as Adobe I/O Events'
    /// `?challenge=…`); `None` for a `POST`, whose query is not read.
    pub query: Option<&'a str>,
}

/// A verified request: what to store and how to answer once it is stored.
#[derive(Debug, Clone, PartialEq)]
pub struct Accepted {
    /// The delivery's topic in the platform's own words (`orders/create`, `store/order/created`, …).
    pub topic: String,
    /// The shop, store hash or instance the delivery belongs to, when there is one.
    pub shop: Option<String>,
    /// The platform's id for this delivery attempt or message.
    pub webhook_id: Option<String>,
    /// The platform's id for the event, shared by retries and by several subscriptions.
    pub event_id: Option<String>,
    /// Keys that make a later delivery a duplicate of this one; each starts with the source's name.
    pub dedupe_keys: Vec<String>,
    /// What to store when it is not the body received (an envelope's inner payload); `None` stores the body.
    pub body: Option<Vec<u8>>,
    /// Headers worth keeping in the audit trail: never a signature, a token or a credential.
    pub audit_headers: Vec<(String, String)>,
    /// The JSON answered once the delivery is durable, when the platform expects a particular one
    /// (Adobe Commerce's `{"op":"success"}`); `None` gives nudge's `{"status":"accepted","trace_id":…}`.
    pub reply: Option<serde_json::Value>,
    /// Answer `200` with an empty body (BigCommerce asks for nothing more); wins over `reply`.
    pub empty_reply: bool,
    /// Problems with optional parts of a genuine request, logged, never a reason to refuse.
    pub warnings: Vec<String>,
}

impl Accepted {
    /// An accepted request with a topic and nothing else set.
    pub fn new(topic: impl Into<String>) -> Self {
        Self {
            topic: topic.into(),
            shop: None,
            webhook_id: None,
            event_id: None,
            dedupe_keys: Vec::new(),
            body: None,
            audit_headers: Vec::new(),
            reply: None,
            empty_reply: false,
            warnings: Vec::new(),
        }
    }
}

/// What verifying a request came to.
#[derive(Debug, Clone, PartialEq)]
pub enum Verified {
    /// Authentic: store it durably, then answer.
    Deliver(Accepted),
    /// Answer at once and store nothing (a registration challenge, a ping): status and JSON body.
    Answer { status: u16, body: serde_json::Value },
    /// The request is signed with public keys nudge has not fetched yet: fetch these URLs (each already
    /// checked against the source's configured base), hand the PEM bodies to [`Source::accept_key`], and
    /// verify again.
    NeedKeys(Vec<String>),
}

/// A refused request: the HTTP status to answer (401 for authentication, 400 for a malformed envelope,
/// 500 when nudge itself is not configured to verify) and the reason, which is safe to send back.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{reason}")]
pub struct Rejection {
    pub status: u16,
    pub reason: String,
}

impl Rejection {
    pub fn unauthorized(reason: impl Into<String>) -> Self {
        Self { status: 401, reason: reason.into() }
    }

    pub fn bad_request(reason: impl Into<String>) -> Self {
        Self { status: 400, reason: reason.into() }
    }

    /// nudge cannot verify anything for this source (no secret or key configured): a 5xx, so the platform
    /// retries once the operator has fixed the configuration.
    pub fn not_configured(reason: impl Into<String>) -> Self {
        Self { status: 500, reason: reason.into() }
    }
}

/// A stored delivery as the workers read it back.
#[derive(Debug, Clone, Copy)]
pub struct StoredView<'a> {
    pub topic: &'a str,
    pub shop: Option<&'a str>,
    pub body: &'a [u8],
}

/// What a stored delivery means.
#[derive(Debug, Clone, PartialEq)]
pub enum Parsed {
    /// Canonical events, in the order they should be applied.
    Events(Vec<Event>),
    /// Nothing to do (a topic nudge does not act on); recorded as the delivery's terminal state.
    Ignored(String),
    /// A privacy request about one person or a whole shop.
    Privacy(PrivacyRequest),
    /// A thin notification: read the full resource from the platform's API, then parse what it answers.
    Fetch(FetchJob),
    /// The body cannot be read; kept verbatim with this reason.
    Quarantined(String),
}

/// A read from a platform's API the workers must make before a notification can be processed. Stored
/// durably (a fetch job is state, not memory); its answer is committed to the ingest log as a delivery of
/// the same source and trace, with [`FetchJob::topic`] as its topic, and parsed by the same source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchJob {
    /// The source that parses the answer.
    pub source: String,
    /// The shop / store hash / instance to read from.
    pub shop: Option<String>,
    /// What to read, in the source's own terms (`order`, `cart`, `customer`, `product`).
    pub resource: String,
    /// The platform's id of the resource, exact text.
    pub id: String,
    /// The topic the fetched answer is stored under (`bigcommerce/fetched/order`, …).
    pub topic: String,
    /// The notification's topic, kept for the audit trail and for 404 handling (a converted cart, a
    /// deleted customer).
    pub notified_topic: String,
    /// The notification's body, when the fetcher's answer must carry it back to the parser (Shopify
    /// enrichment answers with the original payload and the fetched customer together); `None` for a
    /// plain fetch-after-notify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub carry: Option<String>,
}

/// A privacy request, whichever platform or person asked for it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum PrivacyRequest {
    /// Erase one person here and at every destination that holds them.
    Erase { subject: PrivacySubject, reference: Option<String> },
    /// Gather everything nudge holds about one person.
    Export { subject: PrivacySubject, reference: Option<String> },
    /// Erase everything held for a shop (the merchant uninstalled).
    EraseShop { source: String, shop: String },
}

/// Who a privacy request is about: every key their data may be stored under, and the identifiers the
/// destinations know them by.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct PrivacySubject {
    pub customers: Vec<CustomerId>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

/// One commerce platform's intake.
pub trait Source: Send + Sync {
    /// The name stored with its deliveries and used in metrics: `shopify`, `bigcommerce`,
    /// `adobe_commerce`. Several intakes (Shopify over HTTPS, Pub/Sub, EventBridge) may share one name; the
    /// parse of a stored delivery depends only on the name.
    fn name(&self) -> &'static str;

    /// Checks a request's authenticity and reads what it is, before anything is stored. Checks the
    /// signature before any other header, so an unauthenticated caller learns nothing else.
    fn verify(&self, req: &Inbound<'_>) -> Result<Verified, Rejection>;

    /// Takes a public key fetched for [`Verified::NeedKeys`]. Sources that never ask for keys keep the
    /// default, which refuses.
    fn accept_key(&self, url: &str, _pem: &str) -> Result<(), String> {
        Err(format!("{} does not fetch keys (asked to accept {url})", self.name()))
    }

    /// Turns a stored delivery (a notification, or the answer to one of its fetch jobs) into what it means.
    fn parse(&self, delivery: &StoredView<'_>) -> Parsed;
}

/// The sources a server runs: each intake under the path it is reached at (`/webhooks/<path>`), and each
/// stored name's parser. Registration order matters only for parsers: the first source registered under a
/// name parses that name's deliveries.
#[derive(Default, Clone)]
pub struct Registry {
    intakes: Vec<(String, std::sync::Arc<dyn Source>)>,
    parsers: Vec<std::sync::Arc<dyn Source>>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("paths", &self.paths().collect::<Vec<_>>()).finish()
    }
}

impl Registry {
    pub fn new() -> Self {
        Self::default()
    }

    /// Serves `source` at `/webhooks/<path>` and parses its deliveries (unless a source of the same name
    /// was registered first). A path registered twice keeps the later source.
    pub fn register(&mut self, path: &str, source: std::sync::Arc<dyn Source>) -> &mut Self {
        let path = path.trim_matches('/').to_string();
        self.intakes.retain(|(p, _)| *p != path);
        if !self.parsers.iter().any(|s| s.name() == source.name()) {
            self.parsers.push(source.clone());
        }
        self.intakes.push((path, source));
        self
    }

    /// Parses deliveries stored under `source`'s name without serving it at any `/webhooks/` path (a
    /// source received on routes of its own, such as the Segment API), unless that name has a parser.
    pub fn register_parser(&mut self, source: std::sync::Arc<dyn Source>) -> &mut Self {
        if !self.parsers.iter().any(|s| s.name() == source.name()) {
            self.parsers.push(source);
        }
        self
    }

    /// The intake at `/webhooks/<path>`.
    pub fn intake(&self, path: &str) -> Option<&std::sync::Arc<dyn Source>> {
        let path = path.trim_matches('/');
        self.intakes.iter().find(|(p, _)| p == path).map(|(_, s)| s)
    }

    /// The parser of deliveries stored under `name`.
    pub fn parser(&self, name: &str) -> Option<&std::sync::Arc<dyn Source>> {
        self.parsers.iter().find(|s| s.name() == name)
    }

    /// Every intake path, in registration order.
    pub fn paths(&self) -> impl Iterator<Item = &str> {
        self.intakes.iter().map(|(p, _)| p.as_str())
    }
}
