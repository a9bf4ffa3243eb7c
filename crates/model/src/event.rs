//! The canonical event: what every platform payload becomes after `ingest`. It is persisted and queued,
//! so it is versioned (`EVENT_SCHEMA_VERSION`) and only grows by adding optional fields or variants.

use crate::Timestamp;
use crate::behaviour::{Behaviour, Engagement, Identity, Loyalty, Review};
use crate::ids::{CustomerId, Source, TraceId};
use crate::money::Money;
use serde::{Deserialize, Serialize};

/// Bumped when a change to [`Event`] is not backwards compatible for stored events.
pub const EVENT_SCHEMA_VERSION: u16 = 1;

/// A canonical event with where and when it came from.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventEnvelope {
    /// Schema version of `event`, so stored events can be migrated.
    pub v: u16,
    /// The delivery this event came from.
    pub trace_id: TraceId,
    pub source: Source,
    /// The shop (e.g. `demo-store.myshopify.com`), when the source has one.
    pub shop: Option<String>,
    /// When the platform says the underlying change happened.
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: Timestamp,
    pub event: Event,
}

/// The platform-independent events nudge reacts to.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// An order was created, updated or paid. Upsert semantics: the newest `updated_at` wins.
    OrderUpserted(Order),
    /// An order was cancelled.
    OrderCancelled(Order),
    /// A checkout was started or changed.
    CheckoutUpserted(Checkout),
    /// A checkout saw no update and no completion for the configured window.
    CheckoutAbandoned(CheckoutAbandoned),
    CustomerUpserted(Customer),
    CartUpserted(Cart),
    ProductUpserted(Product),
    /// A `schedule` flow's cron schedule fired, for one customer. Made by nudge's scheduler, never by a
    /// platform; it changes nothing in the customer's state and is decided by the named flow only.
    ScheduleTick(ScheduleTick),
    /// Storefront behaviour: a product viewed, added or removed, a cart viewed, a search, a page, a
    /// custom event.
    Behaviour(Behaviour),
    /// Who a visitor or storefront user is (identify, alias): links ids to one customer.
    Identified(Identity),
    /// A review posted or updated.
    ReviewPosted(Review),
    /// A loyalty member's points or tier as the program reports them.
    LoyaltyChanged(Loyalty),
    /// A marketing tool reports what a message did (opened, clicked, unsubscribed, …).
    Engagement(Engagement),
}

impl Event {
    /// A short stable name, used in metrics and the audit trail.
    pub fn kind(&self) -> &'static str {
        match self {
            Event::OrderUpserted(_) => "order_upserted",
            Event::OrderCancelled(_) => "order_cancelled",
            Event::CheckoutUpserted(_) => "checkout_upserted",
            Event::CheckoutAbandoned(_) => "checkout_abandoned",
            Event::CustomerUpserted(_) => "customer_upserted",
            Event::CartUpserted(_) => "cart_upserted",
            Event::ProductUpserted(_) => "product_upserted",
            Event::ScheduleTick(_) => "schedule",
            Event::Behaviour(b) => b.kind.as_str(),
            Event::Identified(_) => "identified",
            Event::ReviewPosted(_) => "review_posted",
            Event::LoyaltyChanged(_) => "loyalty_changed",
            Event::Engagement(e) => e.kind.as_str(),
        }
    }

    /// The email the event carries about its customer, when it carries one (the secondary key that
    /// resolves provisional customers).
    pub fn email(&self) -> Option<&str> {
        match self {
            Event::OrderUpserted(o) | Event::OrderCancelled(o) => o.email.as_deref(),
            Event::CheckoutUpserted(c) => c.email.as_deref(),
            Event::CheckoutAbandoned(a) => a.email.as_deref().or(a.checkout.email.as_deref()),
            Event::CustomerUpserted(c) => c.email.as_deref(),
            Event::Behaviour(b) => b.email.as_deref(),
            Event::Identified(i) => i.email.as_deref(),
            Event::ReviewPosted(r) => r.email.as_deref(),
            Event::LoyaltyChanged(l) => l.email.as_deref(),
            Event::Engagement(e) => e.email.as_deref(),
            Event::ScheduleTick(_) | Event::CartUpserted(_) | Event::ProductUpserted(_) => None,
        }
    }

    /// Re-keys the event to another customer (a guest checkout matched to a known customer by email).
    pub fn set_customer(&mut self, id: CustomerId) {
        match self {
            Event::OrderUpserted(o) | Event::OrderCancelled(o) => o.customer = Some(id),
            Event::CheckoutUpserted(c) => c.customer = Some(id),
            Event::CheckoutAbandoned(a) => {
                a.checkout.customer = Some(id.clone());
                a.customer = id;
            }
            Event::CustomerUpserted(c) => c.id = id,
            Event::ScheduleTick(t) => t.customer = id,
            Event::Behaviour(b) => b.customer = id,
            Event::Identified(i) => i.customer = id,
            Event::ReviewPosted(r) => r.customer = id,
            Event::LoyaltyChanged(l) => l.customer = id,
            Event::Engagement(e) => e.customer = id,
            Event::CartUpserted(_) | Event::ProductUpserted(_) => {}
        }
    }

    /// The customer this event is about, when it names one.
    pub fn customer(&self) -> Option<&CustomerId> {
        match self {
            Event::OrderUpserted(o) | Event::OrderCancelled(o) => o.customer.as_ref(),
            Event::CheckoutUpserted(c) => c.customer.as_ref(),
            Event::CheckoutAbandoned(a) => Some(&a.customer),
            Event::CustomerUpserted(c) => Some(&c.id),
            Event::ScheduleTick(t) => Some(&t.customer),
            Event::Behaviour(b) => Some(&b.customer),
            Event::Identified(i) => Some(&i.customer),
            Event::ReviewPosted(r) => Some(&r.customer),
            Event::LoyaltyChanged(l) => Some(&l.customer),
            Event::Engagement(e) => Some(&e.customer),
            Event::CartUpserted(_) | Event::ProductUpserted(_) => None,
        }
    }
}

/// Marketing consent as the platform reports it. The default, `Unknown`, is what a field missing from a
/// stored event or state reads as, and is never permission to send.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum MarketingConsent {
    Subscribed,
    NotSubscribed,
    Unsubscribed,
    Pending,
    #[default]
    Unknown,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LineItem {
    pub product_id: Option<String>,
    pub variant_id: Option<String>,
    pub sku: Option<String>,
    pub title: String,
    pub quantity: u32,
    /// Unit price.
    pub price: Money,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Order {
    /// Platform order id as exact text.
    pub id: String,
    /// Human order name such as `#1042`.
    pub name: Option<String>,
    pub customer: Option<CustomerId>,
    pub email: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: Timestamp,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub cancelled_at: Option<Timestamp>,
    pub total: Money,
    pub financial_status: Option<String>,
    pub line_items: Vec<LineItem>,
    pub checkout_token: Option<String>,
    pub cart_token: Option<String>,
    pub accepts_marketing: Option<bool>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Checkout {
    pub token: String,
    pub cart_token: Option<String>,
    pub customer: Option<CustomerId>,
    pub email: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: Timestamp,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub completed_at: Option<Timestamp>,
    pub total: Money,
    pub line_items: Vec<LineItem>,
    /// The platform's link back into the checkout (Shopify `abandoned_checkout_url`).
    pub recovery_url: Option<String>,
    pub accepts_marketing: Option<bool>,
}

/// Emitted by the pipeline's durable timer, never by a platform.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckoutAbandoned {
    pub customer: CustomerId,
    pub email: Option<String>,
    pub checkout: Checkout,
    /// When the checkout was last updated; the abandonment window ran from here.
    #[serde(with = "time::serde::rfc3339")]
    pub idle_since: Timestamp,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    pub id: CustomerId,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub created_at: Option<Timestamp>,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: Timestamp,
    pub email_consent: MarketingConsent,
    /// The customer's tags, trimmed, without empties or repeats, in the platform's order. The whole set
    /// as of `updated_at` (empty: none); absent in events stored before it existed.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Consent to SMS marketing; `Unknown` when the platform did not say (and in older stored events).
    #[serde(default)]
    pub sms_consent: MarketingConsent,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Cart {
    pub token: String,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: Timestamp,
    pub line_items: Vec<LineItem>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Product {
    pub id: String,
    pub title: String,
    /// The product type, used as the product's category.
    pub category: Option<String>,
    pub vendor: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: Timestamp,
    /// The product's storefront page, when the platform says (or its handle and the shop domain make it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The product's main image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_url: Option<String>,
    /// The first variant's price as exact decimal text (`"24.90"`); its currency when the payload says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
    /// Whether it can be bought now (published/active and, where stock is reported, in stock); `None`
    /// when the payload does not say.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub available: Option<bool>,
    /// The product's tags, trimmed, without empties.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tags: Vec<String>,
}

/// One customer's share of a schedule flow's firing.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleTick {
    pub customer: CustomerId,
    /// The `schedule` flow whose schedule fired.
    pub flow: String,
    /// The occurrence of the schedule that fired (UTC), not when it was processed.
    #[serde(with = "time::serde::rfc3339")]
    pub fired_at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::money::Money;

    #[test]
    fn event_json_is_tagged_and_round_trips() {
        let t = time::macros::datetime!(2026-05-01 10:00 UTC);
        let order = Order {
            id: "9007199254740993".into(),
            name: Some("#1042".into()),
            customer: Some("shopify:880012".parse().unwrap()),
            email: Some("lena@example.org".into()),
            created_at: t,
            updated_at: t,
            cancelled_at: None,
            total: Money::parse("84.90", "EUR").unwrap(),
            financial_status: Some("paid".into()),
            line_items: vec![],
            checkout_token: None,
            cart_token: None,
            accepts_marketing: Some(true),
        };
        let e = Event::OrderUpserted(order);
        let json = serde_json::to_string(&e).unwrap();
        assert!(json.starts_with(r#"{"type":"order_upserted","id":"9007199254740993""#), "{json}");
        assert_eq!(serde_json::from_str::<Event>(&json).unwrap(), e);
        assert_eq!(e.kind(), "order_upserted");
    }

    #[test]
    fn a_schedule_tick_names_its_customer_and_round_trips() {
        let mut e = Event::ScheduleTick(ScheduleTick {
            customer: "shopify:1".parse().unwrap(),
            flow: "weekly_digest".into(),
            fired_at: time::macros::datetime!(2026-05-04 09:00 UTC),
        });
        assert_eq!(e.kind(), "schedule");
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["type"], "schedule_tick");
        assert_eq!(json["fired_at"], "2026-05-04T09:00:00Z");
        assert_eq!(serde_json::from_value::<Event>(json).unwrap(), e);
        e.set_customer("shopify:2".parse().unwrap());
        assert_eq!(e.customer().map(|c| c.to_string()).as_deref(), Some("shopify:2"));
    }

    #[test]
    fn customer_events_stored_before_tags_and_sms_consent_still_load() {
        let stored = r#"{"type":"customer_upserted","id":"shopify:880012","email":"lena@example.org",
            "first_name":"Lena","last_name":null,"created_at":null,"updated_at":"2026-05-01T10:00:00Z",
            "email_consent":"subscribed"}"#;
        let Event::CustomerUpserted(c) = serde_json::from_str::<Event>(stored).unwrap() else {
            panic!("a customer event")
        };
        assert_eq!(c.email_consent, MarketingConsent::Subscribed);
        assert!(c.tags.is_empty());
        assert_eq!(c.sms_consent, MarketingConsent::Unknown);
        assert_eq!(MarketingConsent::default(), MarketingConsent::Unknown);
    }

    #[test]
    fn product_events_stored_before_catalogue_facts_still_load() {
        let stored = r#"{"type":"product_upserted","id":"9100000001","title":"Tee","category":"Apparel",
            "vendor":"Acme","updated_at":"2026-05-01T10:00:00Z"}"#;
        let Event::ProductUpserted(p) = serde_json::from_str::<Event>(stored).unwrap() else {
            panic!("a product event")
        };
        assert_eq!((p.url, p.price, p.available), (None, None, None));
        assert!(p.tags.is_empty());
    }

    #[test]
    fn customer_tags_and_sms_consent_round_trip() {
        let c = Customer {
            id: "shopify:880012".parse().unwrap(),
            email: None,
            first_name: None,
            last_name: None,
            created_at: None,
            updated_at: time::macros::datetime!(2026-05-01 10:00 UTC),
            email_consent: MarketingConsent::Unknown,
            tags: vec!["vip".into(), "wholesale".into()],
            sms_consent: MarketingConsent::Pending,
        };
        let e = Event::CustomerUpserted(c);
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["tags"], serde_json::json!(["vip", "wholesale"]));
        assert_eq!(json["sms_consent"], "pending");
        assert_eq!(serde_json::from_value::<Event>(json).unwrap(), e);
    }
}
