//! Smile.io loyalty: `customer/updated` webhooks as notifications, confirmed by `GET /v1/customers/{id}`.
//!
//! Smile.io documents no webhook signature, so a request is authentic when it carries the per-tenant URL
//! token (`POST /webhooks/smile?token=<url_token>`, see [`crate::url_token`]), and its body is never
//! acted on: `customer/updated` becomes a [`FetchJob`] for the customer, and the customer the REST API
//! answers becomes [`Event::LoyaltyChanged`] (program `smile`, the member's points balance, VIP tier from
//! `vip_status.vip_tier_id` or the deprecated `vip_tier_id`, state). `ping` (sent when a webhook is
//! created) is answered 200 and stores nothing. The event reports the standing; whether points or tier
//! changed is the fold's to decide.
//!
//! Dedupe keys: (`account_id`, customer `id`, `updated_at`) when the body has an `updated_at`, else the
//! body's digest. A customer without an email is ignored with the reason (nobody to act for).

pub mod fixtures;

use crate::source::{Accepted, FetchJob, Inbound, Parsed, Rejection, Source, StoredView, Verified};
use crate::yotpo::payload::{self, At, FieldError};
use nudge_model::{CustomerId, Event, Loyalty};
use sha2::{Digest, Sha256};

/// The stored name of every Smile.io delivery.
pub const SOURCE: &str = "smile";
/// The topic a fetched customer is stored under.
pub const FETCHED_TOPIC: &str = "smile/fetched/customer";
pub const RESOURCE: &str = "customer";
/// The program name on the events.
pub const PROGRAM: &str = "smile";

/// One Smile.io account's intake.
#[derive(Clone, Default)]
pub struct SmileConfig {
    /// The per-tenant URL token; never logged.
    pub url_token: String,
}

impl std::fmt::Debug for SmileConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmileConfig").field("url_token", &"[redacted]").finish()
    }
}

/// A webhook body, as far as the intake reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub topic: String,
    pub account_id: Option<String>,
    /// The customer's id (`customer/updated` only).
    pub id: Option<String>,
    pub updated_at: Option<time::OffsetDateTime>,
}

impl Notification {
    pub fn read(body: &[u8]) -> Result<Self, FieldError> {
        let v = payload::json(body)?;
        let root = At::root(&v);
        let topic = root.field("topic")?.str()?.to_string();
        let account_id = payload::opt_text(&root, "account_id")?;
        let data = root.field("data")?;
        let (id, updated_at) = if topic == "ping" {
            (None, None)
        } else {
            let id = match data.opt("id")? {
                Some(a) => Some(payload::id(&a)?),
                None => None,
            };
            let updated = data.opt("updated_at")?.map(|a| payload::date(&a)).transpose()?;
            (id, updated)
        };
        Ok(Notification { topic, account_id, id, updated_at })
    }
}

/// Smile.io's intake.
#[derive(Debug, Clone)]
pub struct SmileSource {
    cfg: SmileConfig,
}

impl SmileSource {
    pub fn new(cfg: SmileConfig) -> Self {
        Self { cfg }
    }
}

impl Source for SmileSource {
    fn name(&self) -> &'static str {
        SOURCE
    }

    fn verify(&self, req: &Inbound<'_>) -> Result<Verified, Rejection> {
        crate::url_token::check(SOURCE, req.headers, &self.cfg.url_token)?;
        let n = Notification::read(req.body)
            .map_err(|e| Rejection::bad_request(format!("smile webhook: {e}")))?;
        if n.topic == "ping" {
            return Ok(Verified::Answer { status: 200, body: serde_json::json!({"status": "ok"}) });
        }
        let account = n.account_id.clone().unwrap_or_else(|| "-".into());
        let mut a = Accepted::new(n.topic.clone());
        match (&n.id, n.updated_at) {
            (Some(id), Some(t)) => a
                .dedupe_keys
                .push(format!("smile:{account}:customer:{id}:{}", t.unix_timestamp_nanos() / 1_000_000)),
            _ => a
                .dedupe_keys
                .push(format!("smile:{account}:body:{}", hex::encode(&Sha256::digest(req.body)[..16]))),
        }
        a.shop = n.account_id;
        a.audit_headers = req
            .headers
            .iter()
            .filter(|(k, _)| matches!(*k, "content-type" | "user-agent"))
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v).chars().take(200).collect()))
            .collect();
        Ok(Verified::Deliver(a))
    }

    fn parse(&self, d: &StoredView<'_>) -> Parsed {
        parse(d.shop, d.topic, d.body)
    }
}

/// Parses a stored Smile.io delivery: a notification, or a customer the REST API answered.
pub fn parse(account: Option<&str>, topic: &str, body: &[u8]) -> Parsed {
    if topic == FETCHED_TOPIC {
        return match fetched(body) {
            Ok(p) => p,
            Err(e) => Parsed::Quarantined(format!("smile customer answer: {e}")),
        };
    }
    let n = match Notification::read(body) {
        Ok(n) => n,
        Err(e) => return Parsed::Quarantined(format!("smile webhook: {e}")),
    };
    if n.topic != "customer/updated" {
        return Parsed::Ignored(format!(
            "smile topic `{}` is not acted on",
            n.topic.chars().take(60).collect::<String>()
        ));
    }
    let Some(id) = n.id else {
        return Parsed::Quarantined("smile webhook `customer/updated`: `data.id`: missing".into());
    };
    Parsed::Fetch(FetchJob {
        source: SOURCE.into(),
        shop: account.map(str::to_string).or(n.account_id),
        resource: RESOURCE.into(),
        id,
        topic: FETCHED_TOPIC.into(),
        notified_topic: n.topic,
        carry: None,
    })
}

/// `{"customer": {…}}` as `GET /v1/customers/{id}` answers → the member's standing.
fn fetched(body: &[u8]) -> Result<Parsed, FieldError> {
    let v = payload::json(body)?;
    let root = At::root(&v);
    let c = root.field("customer")?;
    let id = payload::id(&c.field("id")?)?;
    let email = payload::opt_text(&c, "email")?;
    let Some((customer, email)) = email.and_then(|e| CustomerId::for_email(&e).map(|c| (c, e))) else {
        return Ok(Parsed::Ignored(format!("smile customer {id} has no email: nobody to act for")));
    };
    let points = match c.opt("points_balance")? {
        Some(a) => Some(
            payload::text(&a)?
                .and_then(|t| t.parse::<i64>().ok())
                .ok_or_else(|| a.fail("expected an integer"))?,
        ),
        None => None,
    };
    let tier = match c.opt("vip_status")? {
        Some(s) if s.value.is_object() => payload::opt_text(&s, "vip_tier_id")?,
        _ => None,
    }
    .or(payload::opt_text(&c, "vip_tier_id")?);
    let updated_at = match c.opt("updated_at")? {
        Some(a) => payload::date(&a)?,
        None => payload::date(&c.field("created_at")?)?,
    };
    Ok(Parsed::Events(vec![Event::LoyaltyChanged(Loyalty {
        customer,
        email: Some(email),
        program: PROGRAM.into(),
        member_id: id,
        points,
        tier,
        state: payload::opt_text(&c, "state")?,
        updated_at,
    })]))
}
