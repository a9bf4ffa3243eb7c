//! A stored Segment message → canonical events.

use super::timestamp::parse_lenient;
use crate::source::{Inbound, Parsed, Rejection, Source, StoredView, Verified};
use nudge_model::{
    Behaviour, BehaviourKind, BehaviourProduct, CustomerId, Event, Identity, MarketingConsent, Money, Review,
    Source as IdSource, VisitorContext,
};
use serde_json::{Map, Value};
use time::OffsetDateTime;

/// The stored name of Segment deliveries.
pub const SOURCE_NAME: &str = "segment";

/// Whose id a message's `userId` is.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum UserIdNamespace {
    /// The storefront's own user id: `segment:<userId>`.
    #[default]
    Segment,
    /// Shopify's customer id: `shopify:<userId>`.
    Shopify,
    /// A BigCommerce store's customer id: `bigcommerce:<store_hash>:<userId>`.
    BigCommerce { store_hash: String },
    /// An Adobe Commerce instance's customer id: `adobe:<instance>:<userId>`.
    Adobe { instance: String },
}

impl UserIdNamespace {
    /// Reads `segment`, `shopify`, `bigcommerce:<store_hash>` or `adobe:<instance>`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let bad = || {
            format!("`{s}`: expected `segment`, `shopify`, `bigcommerce:<store_hash>` or `adobe:<instance>`")
        };
        let ok_part = |p: &str| !p.is_empty() && !p.contains(|c: char| c.is_whitespace() || c == ':');
        match s.split_once(':') {
            None if s == "segment" => Ok(UserIdNamespace::Segment),
            None if s == "shopify" => Ok(UserIdNamespace::Shopify),
            Some(("bigcommerce", h)) if ok_part(h) => {
                Ok(UserIdNamespace::BigCommerce { store_hash: h.to_string() })
            }
            Some(("adobe", i)) if ok_part(i) => Ok(UserIdNamespace::Adobe { instance: i.to_string() }),
            _ => Err(bad()),
        }
    }

    /// The customer key of a `userId`.
    pub fn customer(&self, user_id: &str) -> Option<CustomerId> {
        match self {
            UserIdNamespace::Segment => CustomerId::new(IdSource::Segment, user_id),
            UserIdNamespace::Shopify => CustomerId::new(IdSource::Shopify, user_id),
            UserIdNamespace::BigCommerce { store_hash } => {
                CustomerId::new(IdSource::BigCommerce, format!("{store_hash}:{user_id}"))
            }
            UserIdNamespace::Adobe { instance } => {
                CustomerId::new(IdSource::Adobe, format!("{instance}:{user_id}"))
            }
        }
        .ok()
    }
}

/// Parses stored Segment messages (each delivery is one normalised message). It is never served at
/// `/webhooks/…`: requests reach the Segment API routes, which read them with
/// [`super::read_request`]; `verify` refuses.
#[derive(Debug, Clone)]
pub struct SegmentSource {
    namespace: UserIdNamespace,
    currency: String,
}

impl Default for SegmentSource {
    fn default() -> Self {
        Self::new(UserIdNamespace::Segment, "USD")
    }
}

impl SegmentSource {
    /// `currency` is used for money in events that name none.
    pub fn new(namespace: UserIdNamespace, currency: impl Into<String>) -> Self {
        Self { namespace, currency: currency.into() }
    }

    /// Turns one stored message into what it means.
    pub fn parse_message(&self, body: &[u8]) -> Parsed {
        let m: Map<String, Value> = match serde_json::from_slice(body) {
            Ok(Value::Object(m)) => m,
            Ok(_) => return Parsed::Quarantined("a Segment message must be a JSON object".into()),
            Err(e) => return Parsed::Quarantined(format!("a Segment message is not JSON: {e}")),
        };
        match self.read(&m) {
            Ok(p) => p,
            Err(reason) => Parsed::Quarantined(reason),
        }
    }

    fn read(&self, m: &Map<String, Value>) -> Result<Parsed, String> {
        let kind = str_at(m, "type").ok_or("the message has no `type`")?;
        let at = time_of(m).ok_or("the message has neither a readable `timestamp` nor `receivedAt`")?;
        let message_id = text(m.get("messageId"));
        let anonymous_id = text(m.get("anonymousId"));
        let user_id = text(m.get("userId"));
        let email = m
            .get("context")
            .and_then(|c| c.get("traits"))
            .and_then(|t| t.get("email"))
            .and_then(Value::as_str)
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(str::to_string);
        let customer = || -> Result<CustomerId, String> {
            if let Some(u) = &user_id {
                return self.namespace.customer(u).ok_or_else(|| format!("`userId` {u:?} cannot be a key"));
            }
            if let Some(a) = &anonymous_id {
                return CustomerId::new(IdSource::Anonymous, a.as_str())
                    .map_err(|_| format!("`anonymousId` {a:?} cannot be a key"));
            }
            Err("the message has neither `userId` nor `anonymousId`".into())
        };
        let empty = Map::new();
        let props = m.get("properties").and_then(Value::as_object).unwrap_or(&empty);
        let page_url = m
            .get("context")
            .and_then(|c| c.get("page"))
            .and_then(|p| p.get("url"))
            .and_then(Value::as_str)
            .map(str::to_string);
        let visitor =
            m.get("context").and_then(Value::as_object).map(|c| visitor_context(c, at)).unwrap_or_default();
        let behaviour = |kind: BehaviourKind, name: String| -> Result<Behaviour, String> {
            Ok(Behaviour {
                customer: customer()?,
                anonymous_id: anonymous_id.clone(),
                email: email.clone(),
                kind,
                name,
                message_id: message_id.clone(),
                at,
                products: Vec::new(),
                cart_id: None,
                order_id: None,
                query: None,
                value: None,
                url: str_at(props, "url").map(str::to_string).or_else(|| page_url.clone()),
                properties: Value::Null,
                context: visitor.clone(),
            })
        };
        match kind {
            "track" => {
                let event = str_at(m, "event").ok_or("a track message has no `event`")?;
                if event == "Product Reviewed" {
                    return self.review(props, customer()?, email.clone(), at).map(Parsed::Events);
                }
                let (kind, name) = track_kind(event);
                let mut b = behaviour(kind, name.to_string())?;
                let currency = str_at(props, "currency").unwrap_or(&self.currency).to_string();
                if kind == BehaviourKind::Custom {
                    b.properties = Value::Object(props.clone());
                } else {
                    b.products = match props.get("products") {
                        Some(Value::Array(items)) => {
                            items.iter().filter_map(Value::as_object).map(|p| product(p, &currency)).collect()
                        }
                        _ if single_product(kind) => vec![product(props, &currency)],
                        _ => Vec::new(),
                    };
                    b.cart_id = text(props.get("cart_id"));
                    b.order_id = text(props.get("order_id"));
                    b.query = text(props.get("query"));
                    b.value =
                        ["value", "revenue", "total"].iter().find_map(|k| money(props.get(*k), &currency));
                }
                Ok(Parsed::Events(vec![Event::Behaviour(b)]))
            }
            "page" | "screen" => {
                let kind =
                    if kind == "page" { BehaviourKind::PageViewed } else { BehaviourKind::ScreenViewed };
                let name = str_at(m, "name").or(str_at(props, "name")).unwrap_or(kind_name(kind)).to_string();
                Ok(Parsed::Events(vec![Event::Behaviour(behaviour(kind, name)?)]))
            }
            "identify" => {
                let customer = customer()?;
                let traits = m.get("traits").and_then(Value::as_object).unwrap_or(&empty);
                let email =
                    str_at(traits, "email").map(str::trim).filter(|e| !e.is_empty()).map(str::to_string);
                let mut links = Vec::new();
                if let Some(anon) =
                    anonymous_id.as_deref().and_then(|a| CustomerId::new(IdSource::Anonymous, a).ok())
                    && anon != customer
                {
                    links.push(anon);
                }
                if let Some(e) = email.as_deref().and_then(CustomerId::for_email) {
                    links.push(e);
                }
                let phone = str_at(traits, "phone").and_then(e164);
                let name = |a: &str, b: &str| {
                    str_at(traits, a)
                        .or(str_at(traits, b))
                        .map(str::trim)
                        .filter(|s| !s.is_empty())
                        .map(str::to_string)
                };
                Ok(Parsed::Events(vec![Event::Identified(Identity {
                    customer,
                    links,
                    email,
                    phone,
                    first_name: name("firstName", "first_name"),
                    last_name: name("lastName", "last_name"),
                    email_consent: consent(traits, "email_consent", &["email_opt_in", "accepts_marketing"]),
                    sms_consent: consent(traits, "sms_consent", &["sms_opt_in", "accepts_sms_marketing"]),
                    message_id,
                    at,
                })]))
            }
            "alias" => {
                let user = user_id.as_deref().ok_or("an alias has no `userId`")?;
                let customer = self
                    .namespace
                    .customer(user)
                    .ok_or_else(|| format!("`userId` {user:?} cannot be a key"))?;
                let previous = text(m.get("previousId")).ok_or("an alias has no `previousId`")?;
                // The previous id is the visitor's anonymous id when the message says so, else a user id.
                let link = if anonymous_id.as_deref() == Some(previous.as_str()) {
                    CustomerId::new(IdSource::Anonymous, previous.as_str()).ok()
                } else {
                    self.namespace.customer(&previous)
                }
                .ok_or_else(|| format!("`previousId` {previous:?} cannot be a key"))?;
                Ok(Parsed::Events(vec![Event::Identified(Identity {
                    customer,
                    links: vec![link],
                    email: None,
                    phone: None,
                    first_name: None,
                    last_name: None,
                    email_consent: MarketingConsent::Unknown,
                    sms_consent: MarketingConsent::Unknown,
                    message_id,
                    at,
                })]))
            }
            "group" => Ok(Parsed::Ignored("Segment group calls are not used".into())),
            other => Err(format!("unknown Segment message type `{other}`")),
        }
    }

    fn review(
        &self,
        props: &Map<String, Value>,
        customer: CustomerId,
        email: Option<String>,
        at: OffsetDateTime,
    ) -> Result<Vec<Event>, String> {
        let id = text(props.get("review_id")).ok_or("`Product Reviewed` has no `properties.review_id`")?;
        let rating = match props.get("rating") {
            Some(Value::Number(n)) => n.as_f64(),
            Some(Value::String(s)) => s.trim().parse::<f64>().ok(),
            _ => None,
        }
        .filter(|r| (1.0..=5.0).contains(r))
        .map(|r| r.round() as u8);
        Ok(vec![Event::ReviewPosted(Review {
            customer,
            email,
            review_id: format!("segment:{id}"),
            product_id: text(props.get("product_id")),
            rating,
            title: text(props.get("review_title")),
            body: text(props.get("review_body")).unwrap_or_default(),
            published: true,
            sentiment: None,
            created_at: at,
            updated_at: at,
        })])
    }
}

impl Source for SegmentSource {
    fn name(&self) -> &'static str {
        SOURCE_NAME
    }

    fn verify(&self, _req: &Inbound<'_>) -> Result<Verified, Rejection> {
        Err(Rejection { status: 404, reason: "Segment messages are received at /v1/…, not here".into() })
    }

    fn parse(&self, delivery: &StoredView<'_>) -> Parsed {
        self.parse_message(delivery.body)
    }
}

/// A track event's kind and the spec v2 name (v1 names are mapped to their v2 names).
pub fn track_kind(event: &str) -> (BehaviourKind, &str) {
    use BehaviourKind as K;
    match event {
        "Products Searched" => (K::Search, event),
        "Product List Viewed" | "Product List Filtered" => (K::ProductListViewed, event),
        "Viewed Product Category" => (K::ProductListViewed, "Product List Viewed"),
        "Product Clicked" => (K::ProductClicked, event),
        "Clicked Product" => (K::ProductClicked, "Product Clicked"),
        "Product Viewed" => (K::ProductViewed, event),
        "Viewed Product" => (K::ProductViewed, "Product Viewed"),
        "Product Added" | "Wishlist Product Added to Cart" => (K::ProductAdded, event),
        "Added Product" => (K::ProductAdded, "Product Added"),
        "Product Removed" => (K::ProductRemoved, event),
        "Removed Product" => (K::ProductRemoved, "Product Removed"),
        "Cart Viewed" => (K::CartViewed, event),
        "Checkout Started" | "Checkout Step Viewed" | "Checkout Step Completed" | "Payment Info Entered" => {
            (K::CheckoutStarted, event)
        }
        "Started Order" => (K::CheckoutStarted, "Checkout Started"),
        "Viewed Checkout Step" => (K::CheckoutStarted, "Checkout Step Viewed"),
        "Completed Checkout Step" => (K::CheckoutStarted, "Checkout Step Completed"),
        "Order Completed" => (K::OrderCompleted, event),
        "Completed Order" => (K::OrderCompleted, "Order Completed"),
        "Updated Order" => (K::Custom, "Order Updated"),
        other => (K::Custom, other),
    }
}

/// Events whose properties describe one product themselves.
fn single_product(kind: BehaviourKind) -> bool {
    matches!(
        kind,
        BehaviourKind::ProductViewed
            | BehaviourKind::ProductClicked
            | BehaviourKind::ProductAdded
            | BehaviourKind::ProductRemoved
    )
}

fn kind_name(kind: BehaviourKind) -> &'static str {
    if kind == BehaviourKind::PageViewed { "page" } else { "screen" }
}

fn product(p: &Map<String, Value>, currency: &str) -> BehaviourProduct {
    BehaviourProduct {
        product_id: text(p.get("product_id")).or_else(|| text(p.get("id"))),
        sku: text(p.get("sku")),
        name: text(p.get("name")),
        category: text(p.get("category")),
        brand: text(p.get("brand")),
        variant: text(p.get("variant")),
        price: money(p.get("price"), currency),
        quantity: p.get("quantity").and_then(|q| match q {
            Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
            Value::String(s) => s.trim().parse().ok(),
            _ => None,
        }),
    }
}

/// What a message's `context` says about the visitor: the campaign source (`campaign.source`, else the
/// referrer's host from `referrer.url` or `page.referrer`), the country (`location.country`), the device
/// class (`device.type` `ios`/`android` is mobile; else from `userAgent`: `iPad` or `Tablet` is tablet,
/// `Mobi`, `iPhone` or `Android` is mobile, anything else desktop) and the UTC offset at `at` of the IANA
/// time zone in `timezone` (an unknown zone name gives none).
fn visitor_context(c: &Map<String, Value>, at: nudge_model::Timestamp) -> VisitorContext {
    fn nonempty(v: Option<&Value>) -> Option<&str> {
        v.and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
    }
    let at_path = |a: &str, b: &str| nonempty(c.get(a).and_then(|o| o.get(b)));
    let host = |url: &str| {
        let rest = url.split_once("://").map_or(url, |(_, r)| r);
        let host = rest.split(['/', '?', '#']).next().unwrap_or("");
        let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
        let host = host.split(':').next().unwrap_or("").trim_start_matches("www.").to_ascii_lowercase();
        (!host.is_empty()).then_some(host)
    };
    let source = at_path("campaign", "source")
        .map(|s| s.to_ascii_lowercase())
        .or_else(|| at_path("referrer", "url").or(at_path("page", "referrer")).and_then(host));
    let device = match at_path("device", "type").map(str::to_ascii_lowercase).as_deref() {
        Some("ios" | "android" | "mobile") => Some("mobile".to_string()),
        Some("tablet") => Some("tablet".to_string()),
        _ => nonempty(c.get("userAgent")).map(|ua| {
            if ua.contains("iPad") || ua.contains("Tablet") {
                "tablet"
            } else if ua.contains("Mobi") || ua.contains("iPhone") || ua.contains("Android") {
                "mobile"
            } else {
                "desktop"
            }
            .to_string()
        }),
    };
    VisitorContext {
        source,
        country: at_path("location", "country").map(str::to_string),
        device,
        utc_offset_minutes: nonempty(c.get("timezone")).and_then(|z| utc_offset_minutes(z, at)),
    }
}

/// The offset from UTC, in minutes, of the IANA time zone `zone` at `at`.
fn utc_offset_minutes(zone: &str, at: nudge_model::Timestamp) -> Option<i16> {
    use chrono::{Offset, TimeZone};
    let tz: chrono_tz::Tz = zone.parse().ok()?;
    let utc = chrono::DateTime::from_timestamp(at.unix_timestamp(), 0)?.naive_utc();
    let seconds = tz.offset_from_utc_datetime(&utc).fix().local_minus_utc();
    i16::try_from(seconds / 60).ok()
}

/// Money from a JSON number (or a numeric string), in `currency`.
fn money(v: Option<&Value>, currency: &str) -> Option<Money> {
    let amount = match v? {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.clone(),
        _ => return None,
    };
    Money::parse(&amount, currency).ok()
}

/// A field as text: strings (non-empty, trimmed) and numbers' exact digits.
fn text(v: Option<&Value>) -> Option<String> {
    match v? {
        Value::String(s) => Some(s.trim()).filter(|s| !s.is_empty()).map(str::to_string),
        Value::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

fn str_at<'a>(m: &'a Map<String, Value>, k: &str) -> Option<&'a str> {
    m.get(k).and_then(Value::as_str)
}

/// The message's time: its (already skew-corrected) `timestamp`, else `receivedAt`.
fn time_of(m: &Map<String, Value>) -> Option<OffsetDateTime> {
    str_at(m, "timestamp").and_then(parse_lenient).or_else(|| str_at(m, "receivedAt").and_then(parse_lenient))
}

/// Consent from explicit traits only: the status trait (`subscribed`, `unsubscribed`, `not_subscribed`,
/// `pending`, or a boolean), else the first boolean opt-in trait; `Unknown` otherwise.
fn consent(traits: &Map<String, Value>, status: &str, booleans: &[&str]) -> MarketingConsent {
    let from_bool = |b: bool| if b { MarketingConsent::Subscribed } else { MarketingConsent::Unsubscribed };
    match traits.get(status) {
        Some(Value::Bool(b)) => return from_bool(*b),
        Some(Value::String(s)) => match s.trim().to_ascii_lowercase().replace([' ', '-'], "_").as_str() {
            "subscribed" | "opted_in" | "yes" | "true" => return MarketingConsent::Subscribed,
            "unsubscribed" | "opted_out" | "no" | "false" => return MarketingConsent::Unsubscribed,
            "not_subscribed" | "never_subscribed" => return MarketingConsent::NotSubscribed,
            "pending" => return MarketingConsent::Pending,
            _ => {}
        },
        _ => {}
    }
    booleans
        .iter()
        .find_map(|k| traits.get(*k).and_then(Value::as_bool))
        .map_or(MarketingConsent::Unknown, from_bool)
}

/// A phone number in E.164 when it can be told: spaces, dashes, dots and parentheses removed, a leading
/// `+` kept and `00` read as `+`; a number without a country code is `None`.
pub fn e164(raw: &str) -> Option<String> {
    let s: String = raw.chars().filter(|c| !matches!(c, ' ' | '-' | '.' | '(' | ')' | '\u{a0}')).collect();
    let digits = if let Some(rest) = s.strip_prefix('+') { rest } else { s.strip_prefix("00")? };
    let ok = (8..=15).contains(&digits.len())
        && digits.bytes().all(|b| b.is_ascii_digit())
        && !digits.starts_with('0');
    ok.then(|| format!("+{digits}"))
}
