//! A stored Klaviyo system-webhook batch → canonical events.
//!
//! The body is `{"data":[{"topic","external_id","payload"}…],"meta":{…}}`; each item's payload is an event
//! as Klaviyo's Get Event answers it. What is read from a payload, first match wins:
//! - the event's attributes: `payload.data.attributes`, else `payload.attributes`, else the payload;
//! - its time: `datetime` (RFC 3339), else `timestamp` (Unix seconds), else the batch's `meta.timestamp`;
//! - its properties: `event_properties`, keys compared without case, spaces as `_` and a leading `$`
//!   dropped (`Campaign Name` = `campaign_name`);
//! - the profile: the `included` entry of type `profile`, else `payload.profile` / the attributes'
//!   `profile` (its `attributes` when it has them), else the properties' `email`.
//!
//! Topics (the item's `topic` after `event:klaviyo.`) → [`EngagementKind`]: `received_email` → delivered,
//! `opened_email` → opened, `clicked_email` → clicked, `bounced_email` → bounced,
//! `unsubscribed_from_email` / `unsubscribed` / `unsubscribed_from_list` → unsubscribed,
//! `marked_email_as_spam` → spam complaint. `submitted_review` (Klaviyo Reviews' "Submitted Review") →
//! [`Event::ReviewPosted`]. Any other topic is skipped: Klaviyo adds topics, and a batch never fails for
//! one it does not know.
//!
//! The customer: the profile's `external_id` when it is a nudge customer key (nudge writes its key there),
//! else the email's key ([`CustomerId::for_email`]). Items naming nobody are skipped and counted.

use nudge_model::behaviour::{Engagement, EngagementKind, Review};
use nudge_model::{CustomerId, Event};
use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::source::Parsed;

/// The source name stored with Klaviyo webhook deliveries.
pub const SOURCE: &str = "klaviyo";

/// What one item of a batch means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TopicMeaning {
    Engagement(EngagementKind),
    Review,
    Unknown,
}

/// Maps an item's topic (`event:klaviyo.opened_email`, or the part after `event:klaviyo.`).
pub fn topic_meaning(topic: &str) -> TopicMeaning {
    let t = topic.strip_prefix("event:klaviyo.").unwrap_or(topic);
    match t {
        "received_email" => TopicMeaning::Engagement(EngagementKind::Delivered),
        "opened_email" => TopicMeaning::Engagement(EngagementKind::Opened),
        "clicked_email" => TopicMeaning::Engagement(EngagementKind::Clicked),
        "bounced_email" => TopicMeaning::Engagement(EngagementKind::Bounced),
        "unsubscribed_from_email" | "unsubscribed" | "unsubscribed_from_list" => {
            TopicMeaning::Engagement(EngagementKind::Unsubscribed)
        }
        "marked_email_as_spam" => TopicMeaning::Engagement(EngagementKind::SpamComplaint),
        "submitted_review" => TopicMeaning::Review,
        _ => TopicMeaning::Unknown,
    }
}

/// Counts of items left out of a batch's events.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Skipped {
    pub unknown_topic: usize,
    pub no_customer: usize,
    pub unreadable: usize,
    pub repeated: usize,
}

impl Skipped {
    fn reason(&self, items: usize) -> String {
        format!(
            "klaviyo batch of {items} item(s) gave no events: {} unknown topic, {} without a customer, {} unreadable, {} repeated",
            self.unknown_topic, self.no_customer, self.unreadable, self.repeated
        )
    }
}

/// Parses a stored batch.
pub fn parse(body: &[u8]) -> Parsed {
    let v: Value = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return Parsed::Quarantined(format!("klaviyo webhook body is not JSON: {e}")),
    };
    let Some(items) = v.get("data").and_then(Value::as_array) else {
        return Parsed::Quarantined("klaviyo webhook body: `data`: missing or not an array".into());
    };
    let meta_time = v.pointer("/meta/timestamp").and_then(instant);
    let (events, skipped) = events(items, meta_time);
    if events.is_empty() { Parsed::Ignored(skipped.reason(items.len())) } else { Parsed::Events(events) }
}

/// The events of a batch's items, and what was left out.
pub fn events(items: &[Value], meta_time: Option<OffsetDateTime>) -> (Vec<Event>, Skipped) {
    let mut out = Vec::new();
    let mut seen = std::collections::HashSet::new();
    let mut skipped = Skipped::default();
    for item in items {
        let topic = item.get("topic").and_then(Value::as_str).unwrap_or("");
        let meaning = topic_meaning(topic);
        if meaning == TopicMeaning::Unknown {
            skipped.unknown_topic += 1;
            continue;
        }
        let Some(id) = item.get("external_id").and_then(text).filter(|s| !s.is_empty() && s.len() <= 256)
        else {
            skipped.unreadable += 1;
            continue;
        };
        let payload = item.get("payload").unwrap_or(&Value::Null);
        let attrs = payload
            .pointer("/data/attributes")
            .filter(|a| a.is_object())
            .or_else(|| payload.get("attributes").filter(|a| a.is_object()))
            .unwrap_or(payload);
        let Some(at) = attrs
            .get("datetime")
            .and_then(instant)
            .or_else(|| attrs.get("timestamp").and_then(instant))
            .or(meta_time)
        else {
            skipped.unreadable += 1;
            continue;
        };
        let props = Props::of(attrs.get("event_properties"));
        let profile = profile(payload, attrs);
        let email =
            profile.and_then(|p| p.get("email")).and_then(Value::as_str).or_else(|| props.str("email"));
        let email = email.map(str::trim).filter(|e| e.contains('@')).map(str::to_string);
        let customer = profile
            .and_then(|p| p.get("external_id"))
            .and_then(Value::as_str)
            .and_then(|x| x.trim().parse::<CustomerId>().ok())
            .or_else(|| email.as_deref().and_then(CustomerId::for_email));
        let Some(customer) = customer else {
            skipped.no_customer += 1;
            continue;
        };
        if !seen.insert(id.clone()) {
            skipped.repeated += 1;
            continue;
        }
        match meaning {
            TopicMeaning::Engagement(kind) => out.push(Event::Engagement(Engagement {
                customer,
                email,
                kind,
                channel: "email".into(),
                platform: "klaviyo".into(),
                event_id: id,
                campaign: ["campaign_name", "flow_name", "message_name"]
                    .iter()
                    .find_map(|k| props.str(k))
                    .map(str::to_string),
                url: if kind == EngagementKind::Clicked {
                    ["url", "clicked_url", "link"].iter().find_map(|k| props.str(k)).map(str::to_string)
                } else {
                    None
                },
                machine: kind == EngagementKind::Opened
                    && ["machine_open", "apple_privacy_open"].iter().any(|k| props.bool(k)),
                at,
            })),
            TopicMeaning::Review => {
                let review_id =
                    ["review_id", "id"].iter().find_map(|k| props.text(k)).unwrap_or_else(|| id.clone());
                let status = props.str("status").map(str::to_ascii_lowercase);
                out.push(Event::ReviewPosted(Review {
                    customer,
                    email,
                    review_id: format!("klaviyo:{review_id}"),
                    product_id: ["product_id", "product_external_id", "item_id"]
                        .iter()
                        .find_map(|k| props.text(k)),
                    rating: props.rating(),
                    title: ["review_title", "title"].iter().find_map(|k| props.str(k)).map(str::to_string),
                    body: ["review_content", "content", "review_body", "body", "review"]
                        .iter()
                        .find_map(|k| props.str(k))
                        .unwrap_or("")
                        .to_string(),
                    published: status.is_none_or(|s| matches!(s.as_str(), "published" | "featured")),
                    sentiment: None,
                    created_at: at,
                    updated_at: at,
                }));
            }
            TopicMeaning::Unknown => unreachable!("skipped above"),
        }
    }
    (out, skipped)
}

/// The profile's attributes, wherever the payload carries them.
fn profile<'a>(payload: &'a Value, attrs: &'a Value) -> Option<&'a Map<String, Value>> {
    let included = payload.get("included").and_then(Value::as_array).and_then(|inc| {
        inc.iter()
            .find(|e| e.get("type").and_then(Value::as_str) == Some("profile"))
            .and_then(|e| e.get("attributes"))
    });
    let direct = payload.get("profile").or_else(|| attrs.get("profile"));
    let direct = direct.map(|p| p.get("attributes").filter(|a| a.is_object()).unwrap_or(p));
    included.or(direct).and_then(Value::as_object)
}

/// Event properties with normalised keys.
struct Props(Map<String, Value>);

impl Props {
    fn of(v: Option<&Value>) -> Self {
        let mut m = Map::new();
        if let Some(o) = v.and_then(Value::as_object) {
            for (k, v) in o {
                let k = k.trim().trim_start_matches('$').to_lowercase().replace([' ', '-'], "_");
                m.entry(k).or_insert_with(|| v.clone());
            }
        }
        Props(m)
    }
    fn str(&self, k: &str) -> Option<&str> {
        self.0.get(k).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
    }
    fn text(&self, k: &str) -> Option<String> {
        self.0.get(k).and_then(text).filter(|s| !s.is_empty() && s.len() <= 256)
    }
    fn bool(&self, k: &str) -> bool {
        match self.0.get(k) {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => s.eq_ignore_ascii_case("true"),
            _ => false,
        }
    }
    fn rating(&self) -> Option<u8> {
        let v = self.0.get("rating").or_else(|| self.0.get("review_rating"))?;
        let n = match v {
            Value::Number(n) => n.as_f64()?,
            Value::String(s) => s.trim().parse().ok()?,
            _ => return None,
        };
        (1.0..=5.0).contains(&n).then(|| n.round() as u8)
    }
}

/// A string, or an integer written as text.
fn text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => Some(s.trim().to_string()),
        Value::Number(n) if n.is_i64() || n.is_u64() => Some(n.to_string()),
        _ => None,
    }
}

/// An RFC 3339 / IMF-fixdate string or Unix seconds.
fn instant(v: &Value) -> Option<OffsetDateTime> {
    match v {
        Value::String(s) => {
            OffsetDateTime::parse(s.trim(), &Rfc3339).ok().or_else(|| super::verify::parse_timestamp(s))
        }
        Value::Number(n) => OffsetDateTime::from_unix_timestamp(n.as_i64()?).ok(),
        _ => None,
    }
}
