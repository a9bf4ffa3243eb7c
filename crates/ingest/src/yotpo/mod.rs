//! Yotpo reviews: `review_create` / `review_updated` webhooks as notifications, confirmed by the pull API.
//!
//! Yotpo documents no webhook signature, so a request is authentic when it carries the per-tenant URL
//! token (`POST /webhooks/yotpo?token=<url_token>`, see [`crate::url_token`]), and what it says is never
//! acted on directly: every notification becomes a [`FetchJob`] for the review, and the review the pull
//! API answers (`GET /v1/apps/{app_key}/reviews`) is what becomes an event. The API's content wins.
//!
//! - Both documented body shapes are read: every value a string (`"id":"219"`, `"deleted":"false"`,
//!   `2018-02-20 14:12:13 UTC`) or typed (`"id":219`, booleans, `2024-02-20T21:31:13.000Z`).
//! - Dedupe keys: the `WebhookMessageId` header, the older `eventid` header, and (`app_key`, `id`,
//!   `updated_at`), the last normalised so both date formats of one version give one key.
//! - The fetched review → [`Event::ReviewPosted`] (`review_id` = `yotpo:<app_key>:<id>`, the customer keyed
//!   by the reviewer's email). A review without an email is **ignored** (recorded with the reason): an
//!   anonymous review is normal on Yotpo and names nobody to act for, so there is nothing an operator
//!   could repair, which is what quarantine is for.
//!
//! Layout: [`payload`] (loose value reading shared with Smile.io), [`fixtures`] (bodies for tests, the
//! demo and the fakes).

pub mod fixtures;
pub mod payload;

use crate::headers::Headers;
use crate::source::{Accepted, FetchJob, Inbound, Parsed, Rejection, Source, StoredView, Verified};
use nudge_model::{CustomerId, Event, Review};
use payload::{At, FieldError};

/// The stored name of every Yotpo delivery.
pub const SOURCE: &str = "yotpo";
/// The topic a fetched review is stored under.
pub const FETCHED_TOPIC: &str = "yotpo/fetched/review";
/// The fetch job's resource.
pub const RESOURCE: &str = "review";
/// The topics acted on.
pub const TOPICS: [&str; 2] = ["review_create", "review_updated"];

/// One Yotpo store's (app key's) intake.
#[derive(Clone, Default)]
pub struct YotpoConfig {
    pub app_key: String,
    /// The per-tenant URL token; never logged.
    pub url_token: String,
}

impl std::fmt::Debug for YotpoConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YotpoConfig")
            .field("app_key", &self.app_key)
            .field("url_token", &"[redacted]")
            .finish()
    }
}

/// A webhook notification, as far as the intake reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub event: String,
    pub app_key: Option<String>,
    pub id: String,
    /// The version the notification announces, when it carries one.
    pub updated_at: Option<time::OffsetDateTime>,
}

impl Notification {
    /// Reads `{"event": …, "data": {"id": …, "app_key": …, "updated_at": …}}` in either shape.
    pub fn read(body: &[u8]) -> Result<Self, FieldError> {
        let v = payload::json(body)?;
        let root = At::root(&v);
        let event = root.field("event")?.str()?.to_string();
        let data = root.field("data")?;
        let id = payload::id(&data.field("id")?)?;
        let app_key = payload::opt_text(&data, "app_key")?;
        let updated_at = match data.opt("updated_at")? {
            Some(a) => Some(payload::date(&a)?),
            None => None,
        };
        Ok(Notification { event, app_key, id, updated_at })
    }
}

/// `yotpo:<app_key>:<id>`.
pub fn review_id(app_key: &str, id: &str) -> String {
    format!("yotpo:{app_key}:{id}")
}

/// Yotpo's intake.
#[derive(Debug, Clone)]
pub struct YotpoSource {
    cfg: YotpoConfig,
}

impl YotpoSource {
    pub fn new(cfg: YotpoConfig) -> Self {
        Self { cfg }
    }

    fn audit_headers(h: &Headers) -> Vec<(String, String)> {
        h.iter()
            .filter(|(k, _)| {
                matches!(
                    *k,
                    "content-type"
                        | "user-agent"
                        | "webhookmessageid"
                        | "eventid"
                        | "x-yotpo-webhooks-event-type"
                        | "x-yotpo-webhooks-tenant-type"
                        | "x-yotpo-webhooks-tenant-id"
                )
            })
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v).chars().take(200).collect()))
            .collect()
    }
}

fn header_key(h: &Headers, name: &str) -> Option<String> {
    h.get(name)
        .map(str::trim)
        .filter(|v| !v.is_empty() && v.len() <= 200 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
}

impl Source for YotpoSource {
    fn name(&self) -> &'static str {
        SOURCE
    }

    fn verify(&self, req: &Inbound<'_>) -> Result<Verified, Rejection> {
        crate::url_token::check(SOURCE, req.headers, &self.cfg.url_token)?;
        let n = Notification::read(req.body)
            .map_err(|e| Rejection::bad_request(format!("yotpo webhook: {e}")))?;
        let app = &self.cfg.app_key;
        if let Some(k) = &n.app_key
            && k != app
        {
            return Err(Rejection::unauthorized(format!(
                "webhook `app_key` `{}` is not this store's",
                k.chars().take(60).collect::<String>()
            )));
        }
        let mut a = Accepted::new(n.event.clone());
        let message_id = header_key(req.headers, "webhookmessageid");
        let event_id = header_key(req.headers, "eventid");
        if let Some(m) = &message_id {
            a.dedupe_keys.push(format!("yotpo:{app}:msg:{m}"));
        }
        if let Some(e) = &event_id {
            a.dedupe_keys.push(format!("yotpo:{app}:event:{e}"));
        }
        let version = n
            .updated_at
            .map_or_else(|| "-".to_string(), |t| (t.unix_timestamp_nanos() / 1_000_000).to_string());
        a.dedupe_keys.push(format!("yotpo:{app}:review:{}:{version}", n.id));
        a.shop = Some(app.clone());
        a.webhook_id = message_id;
        a.event_id = event_id;
        a.audit_headers = Self::audit_headers(req.headers);
        Ok(Verified::Deliver(a))
    }

    fn parse(&self, d: &StoredView<'_>) -> Parsed {
        let app = d.shop.filter(|s| !s.is_empty()).unwrap_or(&self.cfg.app_key);
        parse(app, d.topic, d.body)
    }
}

/// Parses a stored Yotpo delivery: a notification, or a review the pull API answered.
pub fn parse(app_key: &str, topic: &str, body: &[u8]) -> Parsed {
    if topic == FETCHED_TOPIC {
        return match fetched(app_key, body) {
            Ok(p) => p,
            Err(e) => Parsed::Quarantined(format!("yotpo review answer: {e}")),
        };
    }
    let n = match Notification::read(body) {
        Ok(n) => n,
        Err(e) => return Parsed::Quarantined(format!("yotpo webhook: {e}")),
    };
    if !TOPICS.contains(&n.event.as_str()) {
        return Parsed::Ignored(format!(
            "yotpo event `{}` is not acted on",
            n.event.chars().take(60).collect::<String>()
        ));
    }
    let hint = n.updated_at.and_then(|t| t.format(&time::format_description::well_known::Rfc3339).ok());
    Parsed::Fetch(FetchJob {
        source: SOURCE.into(),
        shop: Some(app_key.to_string()),
        resource: RESOURCE.into(),
        id: n.id,
        topic: FETCHED_TOPIC.into(),
        notified_topic: if topic.is_empty() { n.event } else { topic.to_string() },
        // The notification's `updated_at`: where the pull API's `since_updated_at` window starts.
        carry: hint,
    })
}

/// A review as the pull API answers it (one element of `reviews`) → the event.
fn fetched(app_key: &str, body: &[u8]) -> Result<Parsed, FieldError> {
    let v = payload::json(body)?;
    let r = At::root(&v);
    let id = payload::id(&r.field("id")?)?;
    let email = payload::opt_text(&r, "email")?.or(payload::opt_text(&r, "customer_email")?);
    let Some(email) = email else {
        return Ok(Parsed::Ignored(format!("yotpo review {id} has no reviewer email: nobody to act for")));
    };
    let Some(customer) = CustomerId::for_email(&email) else {
        return Ok(Parsed::Ignored(format!("yotpo review {id} has no reviewer email: nobody to act for")));
    };
    let created_at = payload::date(&r.field("created_at")?)?;
    let updated_at = match r.opt("updated_at")? {
        Some(a) => payload::date(&a)?,
        None => created_at,
    };
    let published = !payload::opt_bool(&r, "deleted")? && !payload::opt_bool(&r, "archived")?;
    let product_id = payload::opt_text(&r, "sku")?
        .or(payload::opt_text(&r, "external_product_id")?)
        .or(payload::opt_text(&r, "product_id")?);
    Ok(Parsed::Events(vec![Event::ReviewPosted(Review {
        customer,
        email: Some(email),
        review_id: review_id(app_key, &id),
        product_id,
        rating: payload::rating(r.opt("score")?)?,
        title: payload::opt_text(&r, "title")?,
        body: payload::opt_text(&r, "content")?.unwrap_or_default(),
        published,
        sentiment: None,
        created_at,
        updated_at,
    })]))
}
