//! Canonical signals beyond orders: storefront behaviour (the Segment e-commerce spec), who a visitor is
//! (identify / alias), reviews, loyalty and engagement coming back from the marketing tools.
//!
//! Each names the customer it is about by a [`CustomerId`] that may be provisional (an anonymous visitor,
//! an email-only key); the pipeline resolves it to the known customer before it folds the event.

use crate::Timestamp;
use crate::event::MarketingConsent;
use crate::ids::CustomerId;
use crate::money::Money;
use serde::{Deserialize, Serialize};

/// What a storefront behaviour event is, after mapping the e-commerce spec's names (v1 and v2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BehaviourKind {
    /// `Product Viewed` (v1 `Viewed Product`).
    ProductViewed,
    /// `Product Clicked` (v1 `Clicked Product`).
    ProductClicked,
    /// `Product List Viewed` / `Product List Filtered` (v1 `Viewed Product Category`).
    ProductListViewed,
    /// `Product Added` (v1 `Added Product`), also `Wishlist Product Added to Cart`.
    ProductAdded,
    /// `Product Removed` (v1 `Removed Product`).
    ProductRemoved,
    /// `Cart Viewed`.
    CartViewed,
    /// `Checkout Started` (v1 `Started Order`) and the checkout steps.
    CheckoutStarted,
    /// `Order Completed` (v1 `Completed Order`): a storefront signal; the commerce platform's order
    /// webhook stays the record of the order.
    OrderCompleted,
    /// `Products Searched`.
    Search,
    /// A `page` call.
    PageViewed,
    /// A `screen` call.
    ScreenViewed,
    /// Any other `track` event, kept with its name and properties.
    Custom,
}

impl BehaviourKind {
    pub fn as_str(self) -> &'static str {
        match self {
            BehaviourKind::ProductViewed => "product_viewed",
            BehaviourKind::ProductClicked => "product_clicked",
            BehaviourKind::ProductListViewed => "product_list_viewed",
            BehaviourKind::ProductAdded => "product_added",
            BehaviourKind::ProductRemoved => "product_removed",
            BehaviourKind::CartViewed => "cart_viewed",
            BehaviourKind::CheckoutStarted => "checkout_started_storefront",
            BehaviourKind::OrderCompleted => "order_completed_storefront",
            BehaviourKind::Search => "search",
            BehaviourKind::PageViewed => "page_viewed",
            BehaviourKind::ScreenViewed => "screen_viewed",
            BehaviourKind::Custom => "custom_event",
        }
    }
}

/// A product as a behaviour event names it (every field optional: storefronts send what they have).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct BehaviourProduct {
    pub product_id: Option<String>,
    pub sku: Option<String>,
    pub name: Option<String>,
    pub category: Option<String>,
    pub brand: Option<String>,
    pub variant: Option<String>,
    /// Unit price, when the event gave one with a currency (or the store's default currency).
    pub price: Option<Money>,
    pub quantity: Option<u32>,
}

/// One storefront behaviour event (a Segment `track`, `page` or `screen` call).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Behaviour {
    /// Who: the known customer, `segment:<userId>`, or `anon:<anonymousId>`.
    pub customer: CustomerId,
    /// The visitor's anonymous id, when the message carried one (kept to stitch later identifies).
    pub anonymous_id: Option<String>,
    /// An email the message carried (a trait in `context.traits`), used to resolve the visitor.
    pub email: Option<String>,
    pub kind: BehaviourKind,
    /// The name as sent: `Product Viewed`, a custom event's name, a page's name.
    pub name: String,
    /// The sender's message id (the dedupe key), when it had one.
    pub message_id: Option<String>,
    /// When it happened, corrected for the sender's clock skew.
    #[serde(with = "time::serde::rfc3339")]
    pub at: Timestamp,
    #[serde(default)]
    pub products: Vec<BehaviourProduct>,
    pub cart_id: Option<String>,
    pub order_id: Option<String>,
    /// A search's query.
    pub query: Option<String>,
    /// The event's value (`value`, `revenue` or `total`), when it gave one.
    pub value: Option<Money>,
    /// The page or product URL.
    pub url: Option<String>,
    /// A custom event's properties as sent (`null` for the spec's events, whose fields are above).
    #[serde(default, skip_serializing_if = "serde_json::Value::is_null")]
    pub properties: serde_json::Value,
    /// What the sender's context said about the visitor (absent in events stored before it existed).
    #[serde(default, skip_serializing_if = "VisitorContext::is_empty")]
    pub context: VisitorContext,
}

/// What a storefront message's context tells about the visitor: where they came from, where they are and
/// on what. Every field optional; the state keeps the first of each as the customer's acquisition facts.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct VisitorContext {
    /// The campaign source (`utm_source`), else the referrer's host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// The country as the sender's location gave it (a code or a name, as sent, trimmed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub country: Option<String>,
    /// `mobile`, `tablet` or `desktop`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub device: Option<String>,
    /// The visitor's offset from UTC at the event's time, in minutes (from the context's time zone).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utc_offset_minutes: Option<i16>,
}

impl VisitorContext {
    pub fn is_empty(&self) -> bool {
        self == &VisitorContext::default()
    }
}

/// Who a visitor or storefront user is: a Segment `identify` or `alias`. Links the ids it names to one
/// customer and carries profile traits.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Identity {
    /// The identity the message is about: the known customer, `segment:<userId>`, or `anon:<anonymousId>`.
    pub customer: CustomerId,
    /// The ids this message says are the same person as `customer`: the anonymous visitor
    /// (`anon:<anonymousId>`), an alias's `previousId`, the email-only key.
    #[serde(default)]
    pub links: Vec<CustomerId>,
    pub email: Option<String>,
    /// Phone in E.164 (`+4915112345678`), when the trait could be normalised.
    pub phone: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// Consent only from an explicit consent trait; `Unknown` otherwise.
    #[serde(default)]
    pub email_consent: MarketingConsent,
    #[serde(default)]
    pub sms_consent: MarketingConsent,
    pub message_id: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub at: Timestamp,
}

/// A review's sentiment: VADER's compound score (−1 … 1) and the themes it mentions.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewSentiment {
    pub compound: f64,
    /// Of `shipping`, `sizing`, `quality`, `price`, `service`.
    #[serde(default)]
    pub themes: Vec<String>,
}

/// A product review posted or updated (Yotpo, Klaviyo Reviews, a Segment `Product Reviewed`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Review {
    pub customer: CustomerId,
    pub email: Option<String>,
    /// The review's id qualified by where it came from: `yotpo:<app_key>:<id>`, `segment:<review_id>`.
    pub review_id: String,
    pub product_id: Option<String>,
    /// Stars, 1 to 5, when the review has a rating.
    pub rating: Option<u8>,
    pub title: Option<String>,
    pub body: String,
    /// Whether the review is visible (not deleted, archived or unpublished).
    pub published: bool,
    /// Scored by the pipeline before the event is folded; `None` as the source parses it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sentiment: Option<ReviewSentiment>,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    /// The review's version: the newest `updated_at` wins.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: Timestamp,
}

impl Review {
    /// A review a merchant should look at: compound sentiment ≤ −0.5 or a rating of 2 stars or fewer.
    pub fn is_negative(&self) -> bool {
        self.rating.is_some_and(|r| r <= 2) || self.sentiment.as_ref().is_some_and(|s| s.compound <= -0.5)
    }
}

/// A loyalty member's standing as the loyalty program reports it (Smile.io `customer/updated`). The
/// fold compares it with the stored standing: only a change of points or tier is a change.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Loyalty {
    pub customer: CustomerId,
    pub email: Option<String>,
    /// `smile`.
    pub program: String,
    /// The program's id for the member.
    pub member_id: String,
    pub points: Option<i64>,
    /// The VIP tier's id or name, `None` when the member has none.
    pub tier: Option<String>,
    /// `candidate`, `member`, `disabled`.
    pub state: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: Timestamp,
}

/// What a marketing tool reports a message did.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EngagementKind {
    Sent,
    Delivered,
    Opened,
    Clicked,
    Bounced,
    Unsubscribed,
    SpamComplaint,
}

impl EngagementKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EngagementKind::Sent => "email_sent",
            EngagementKind::Delivered => "email_delivered",
            EngagementKind::Opened => "email_opened",
            EngagementKind::Clicked => "email_clicked",
            EngagementKind::Bounced => "email_bounced",
            EngagementKind::Unsubscribed => "unsubscribed",
            EngagementKind::SpamComplaint => "spam_complaint",
        }
    }

    /// Unsubscribes and spam complaints suppress the customer from every marketing action.
    pub fn suppresses(self) -> bool {
        matches!(self, EngagementKind::Unsubscribed | EngagementKind::SpamComplaint)
    }
}

/// One engagement event back from a marketing tool (Klaviyo webhooks, Braze Currents).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Engagement {
    pub customer: CustomerId,
    pub email: Option<String>,
    pub kind: EngagementKind,
    /// `email`, `sms`, `push`.
    pub channel: String,
    /// `klaviyo`, `braze`.
    pub platform: String,
    /// The tool's id for the event (the dedupe key).
    pub event_id: String,
    /// The campaign, flow or canvas it came from, when named.
    pub campaign: Option<String>,
    /// A click's URL.
    pub url: Option<String>,
    /// An open the tool marks as made by a machine (Apple Mail Privacy Protection): kept, but never
    /// counted in open rates or send-time features.
    #[serde(default)]
    pub machine: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub at: Timestamp,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Event;

    #[test]
    fn behaviour_events_round_trip_with_their_kind() {
        let t = time::macros::datetime!(2026-05-01 10:00 UTC);
        let e = Event::Behaviour(Behaviour {
            customer: "anon:a-7f3c".parse().unwrap(),
            anonymous_id: Some("a-7f3c".into()),
            email: None,
            kind: BehaviourKind::ProductViewed,
            name: "Product Viewed".into(),
            message_id: Some("5f0f8c3e".into()),
            at: t,
            products: vec![BehaviourProduct {
                product_id: Some("9100000001".into()),
                price: Some(Money::parse("39.95", "EUR").unwrap()),
                ..Default::default()
            }],
            cart_id: None,
            order_id: None,
            query: None,
            value: None,
            url: None,
            properties: serde_json::Value::Null,
            context: VisitorContext::default(),
        });
        assert_eq!(e.kind(), "product_viewed");
        let json = serde_json::to_value(&e).unwrap();
        assert_eq!(json["type"], "behaviour");
        assert_eq!(json["kind"], "product_viewed");
        assert!(json.get("properties").is_none());
        assert_eq!(serde_json::from_value::<Event>(json).unwrap(), e);
        assert_eq!(e.customer().unwrap().to_string(), "anon:a-7f3c");
    }

    #[test]
    fn a_review_is_negative_by_rating_or_sentiment() {
        let t = time::macros::datetime!(2026-05-01 10:00 UTC);
        let mut r = Review {
            customer: CustomerId::for_email("lena@example.org").unwrap(),
            email: Some("lena@example.org".into()),
            review_id: "yotpo:app:219".into(),
            product_id: None,
            rating: Some(4),
            title: None,
            body: "Arrived late and the seams split.".into(),
            published: true,
            sentiment: None,
            created_at: t,
            updated_at: t,
        };
        assert!(!r.is_negative());
        r.sentiment = Some(ReviewSentiment { compound: -0.62, themes: vec!["quality".into()] });
        assert!(r.is_negative());
        r.sentiment = None;
        r.rating = Some(2);
        assert!(r.is_negative());
        let mut e = Event::ReviewPosted(r);
        assert_eq!(e.kind(), "review_posted");
        e.set_customer("shopify:1".parse().unwrap());
        assert_eq!(e.customer().unwrap().to_string(), "shopify:1");
    }
}
