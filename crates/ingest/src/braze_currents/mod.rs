//! Braze Currents through the custom HTTP connector: batches of email engagement events.
//!
//! The connector `POST`s `{"events":[…]}` with the `Authorization: Bearer <token>` header configured on
//! it (nudge compares the token in constant time) and `Braze-Currents-Version: 1` (not required). Braze
//! probes credentials with empty or zero-event requests: those are answered 200 at once and nothing is
//! stored. Stored deliveries are named `braze_currents`; a re-sent batch (same bytes) shares the dedupe
//! key `braze_currents:body:<digest>`; an event `id` repeated inside a batch gives one event.
//!
//! Event types → [`EngagementKind`]: `users.messages.email.Send` → sent, `Delivery` → delivered, `Open` →
//! opened (`machine_open` marks the open as a machine's), `Click` → clicked (`url`, with or without
//! `link_id`/`link_alias`), `Bounce` and `SoftBounce` → bounced, `MarkAsSpam` → spam complaint,
//! `Unsubscribe` → unsubscribed. `Abort` (the message was never sent) and any type nudge does not know are
//! skipped, never a reason to fail the batch.
//!
//! Fields are read from the event's `user` and `properties` objects, then from the event itself (the
//! flattened form). The customer: `external_user_id` when it is a nudge customer key, else
//! `email_address` ([`CustomerId::for_email`]), else Braze's `user_id` (`braze:<user_id>`, events of
//! anonymous users).
//!
//! Size: Braze drops any single event above 900 KB, so an event over that is not one Braze sends and is
//! skipped as unreadable. A whole batch is bounded by the server's `max_body_bytes`; above it nudge answers
//! 413, on which Braze splits the batch.

use crate::bigcommerce::verify::constant_time_eq;
use crate::headers::Headers;
use crate::source::{Accepted, Inbound, Parsed, Rejection, Source, StoredView, Verified};
use nudge_model::behaviour::{Engagement, EngagementKind};
use nudge_model::{CustomerId, Event};
use serde_json::Value;
use sha2::Digest;
use time::OffsetDateTime;

/// The source name stored with Currents deliveries.
pub const SOURCE: &str = "braze_currents";
/// Braze drops events larger than this; nudge skips them.
pub const MAX_EVENT_BYTES: usize = 900 * 1024;
const PREFIX: &str = "users.messages.email.";

/// The connector's settings.
#[derive(Clone, Default)]
pub struct BrazeCurrentsConfig {
    /// The bearer token configured on the Currents connector.
    pub token: String,
}

impl std::fmt::Debug for BrazeCurrentsConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrazeCurrentsConfig").field("token", &"[redacted]").finish()
    }
}

/// What a Currents `event_type` means: an engagement kind, `None` for a type nudge skips.
pub fn event_kind(event_type: &str) -> Option<EngagementKind> {
    match event_type.strip_prefix(PREFIX)? {
        "Send" => Some(EngagementKind::Sent),
        "Delivery" => Some(EngagementKind::Delivered),
        "Open" => Some(EngagementKind::Opened),
        "Click" => Some(EngagementKind::Clicked),
        "Bounce" | "SoftBounce" => Some(EngagementKind::Bounced),
        "MarkAsSpam" => Some(EngagementKind::SpamComplaint),
        "Unsubscribe" => Some(EngagementKind::Unsubscribed),
        _ => None,
    }
}

/// Braze Currents' intake.
#[derive(Debug, Clone, Default)]
pub struct BrazeCurrentsSource {
    cfg: BrazeCurrentsConfig,
}

impl BrazeCurrentsSource {
    pub fn new(cfg: BrazeCurrentsConfig) -> Self {
        Self { cfg }
    }

    fn authenticate(&self, h: &Headers) -> Result<(), Rejection> {
        if self.cfg.token.is_empty() {
            return Err(Rejection::not_configured("braze_currents: no token configured"));
        }
        let got =
            h.get_raw("authorization").ok_or_else(|| Rejection::unauthorized("missing Authorization"))?;
        let got = got.trim_ascii();
        let token = match got.get(..7) {
            Some(scheme) if scheme.eq_ignore_ascii_case(b"bearer ") => got[7..].trim_ascii(),
            _ => return Err(Rejection::unauthorized("Authorization is not a bearer token")),
        };
        if constant_time_eq(token, self.cfg.token.as_bytes()) {
            Ok(())
        } else {
            Err(Rejection::unauthorized("the bearer token is not the configured one"))
        }
    }
}

/// The first 32 hex digits of the SHA-256 of a body.
pub fn body_digest(body: &[u8]) -> String {
    hex::encode(&sha2::Sha256::digest(body)[..16])
}

fn probe_answer() -> Verified {
    Verified::Answer { status: 200, body: serde_json::json!({"status": "ok", "events": 0}) }
}

impl Source for BrazeCurrentsSource {
    fn name(&self) -> &'static str {
        SOURCE
    }

    fn verify(&self, req: &Inbound<'_>) -> Result<Verified, Rejection> {
        self.authenticate(req.headers)?;
        if req.body.trim_ascii().is_empty() {
            return Ok(probe_answer());
        }
        let v: Value = serde_json::from_slice(req.body)
            .map_err(|e| Rejection::bad_request(format!("braze currents body is not JSON: {e}")))?;
        let Some(events) = v.get("events").and_then(Value::as_array) else {
            return Err(Rejection::bad_request("braze currents body: `events`: missing or not an array"));
        };
        if events.is_empty() {
            return Ok(probe_answer());
        }
        let mut types = events.iter().map(|e| e.get("event_type").and_then(Value::as_str).unwrap_or(""));
        let first = types.next().unwrap_or("");
        let topic = if !first.is_empty() && types.all(|t| t == first) {
            first.chars().take(128).collect()
        } else {
            "currents/batch".to_string()
        };
        let mut a = Accepted::new(topic);
        a.dedupe_keys.push(format!("{SOURCE}:body:{}", body_digest(req.body)));
        if events.len() == 1 {
            a.event_id = events[0].get("id").and_then(Value::as_str).map(|s| s.chars().take(256).collect());
        }
        a.audit_headers = req
            .headers
            .iter()
            .filter(|(k, _)| matches!(*k, "content-type" | "user-agent" | "braze-currents-version"))
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v).chars().take(256).collect()))
            .collect();
        if req.headers.get_raw("braze-currents-version").is_none() {
            a.warnings.push("no Braze-Currents-Version header".into());
        }
        Ok(Verified::Deliver(a))
    }

    fn parse(&self, d: &StoredView<'_>) -> Parsed {
        parse(d.body)
    }
}

/// Counts of events left out of a batch.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Skipped {
    pub unknown_type: usize,
    pub no_customer: usize,
    pub unreadable: usize,
    pub repeated: usize,
}

/// Parses a stored batch.
pub fn parse(body: &[u8]) -> Parsed {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return Parsed::Quarantined(format!("braze currents body is not JSON: {e}")),
    };
    let Some(items) = v.get("events").and_then(Value::as_array) else {
        return Parsed::Quarantined("braze currents body: `events`: missing or not an array".into());
    };
    let (events, s) = events(items);
    if !events.is_empty() {
        return Parsed::Events(events);
    }
    let reason = format!(
        "braze currents batch of {} event(s) gave no events: {} unknown or skipped type, {} without a customer, {} unreadable, {} repeated",
        items.len(),
        s.unknown_type,
        s.no_customer,
        s.unreadable,
        s.repeated
    );
    if s.unreadable > 0 { Parsed::Quarantined(reason) } else { Parsed::Ignored(reason) }
}

/// The field `k` of the event's `user`, `properties`, or the event itself.
fn field<'a>(e: &'a Value, k: &str) -> Option<&'a Value> {
    ["user", "properties"]
        .iter()
        .filter_map(|o| e.get(o))
        .find_map(|o| o.get(k))
        .or_else(|| e.get(k))
        .filter(|v| !v.is_null())
}

fn string<'a>(e: &'a Value, k: &str) -> Option<&'a str> {
    field(e, k).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
}

/// The events of a batch, and what was left out.
pub fn events(items: &[Value]) -> (Vec<Event>, Skipped) {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut s = Skipped::default();
    for e in items {
        if !e.is_object() {
            s.unreadable += 1;
            continue;
        }
        let Some(kind) = e.get("event_type").and_then(Value::as_str).and_then(event_kind) else {
            s.unknown_type += 1;
            continue;
        };
        let id =
            e.get("id").and_then(Value::as_str).map(str::trim).filter(|i| !i.is_empty() && i.len() <= 256);
        let at = e.get("time").and_then(|t| match t {
            Value::Number(n) => n.as_i64().or_else(|| n.as_f64().filter(|f| f.is_finite()).map(|f| f as i64)),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        });
        let at = at.and_then(|t| OffsetDateTime::from_unix_timestamp(t).ok());
        let (Some(id), Some(at)) = (id, at) else {
            s.unreadable += 1;
            continue;
        };
        if serde_json::to_vec(e).map_or(true, |b| b.len() > MAX_EVENT_BYTES) {
            s.unreadable += 1;
            continue;
        }
        let email = string(e, "email_address").filter(|m| m.contains('@')).map(str::to_string);
        let customer = string(e, "external_user_id")
            .and_then(|x| x.parse::<CustomerId>().ok())
            .or_else(|| email.as_deref().and_then(CustomerId::for_email))
            .or_else(|| {
                string(e, "user_id").and_then(|u| CustomerId::new(nudge_model::Source::Braze, u).ok())
            });
        let Some(customer) = customer else {
            s.no_customer += 1;
            continue;
        };
        if !seen.insert(id.to_string()) {
            s.repeated += 1;
            continue;
        }
        let machine = kind == EngagementKind::Opened
            && match field(e, "machine_open") {
                Some(Value::Bool(b)) => *b,
                Some(Value::String(v)) => v.eq_ignore_ascii_case("true"),
                _ => false,
            };
        out.push(Event::Engagement(Engagement {
            customer,
            email,
            kind,
            channel: "email".into(),
            platform: "braze".into(),
            event_id: id.to_string(),
            campaign: string(e, "campaign_name").or_else(|| string(e, "canvas_name")).map(str::to_string),
            url: if kind == EngagementKind::Clicked { string(e, "url").map(str::to_string) } else { None },
            machine,
            at,
        }));
    }
    (out, s)
}
