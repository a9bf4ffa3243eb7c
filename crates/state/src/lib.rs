//! Per-customer state as a deterministic fold over canonical events: `CustomerState::apply(&Event)`.
//!
//! The fold is pure and order-tolerant: an order update older than what is stored never overwrites newer
//! state, an `orders/updated` that arrives before `orders/create` simply creates the order, and applying the
//! same event twice changes nothing. Nothing here does I/O, knows a platform's payload, or computes scores.

use nudge_model::{Checkout, CustomerId, Event, LineItem, MarketingConsent, Money, Order, Timestamp};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};

pub mod compact;
pub mod offers;
mod signals;
pub use compact::StateDecodeError;
pub use signals::{
    ADD_WEIGHT, BrowseEntry, BrowseKind, CATEGORY_HALF_LIFE_DAYS, DayCounts, ENGAGEMENT_DAYS_KEPT,
    EngagementState, LoyaltyRecord, MAX_BROWSE_ENTRIES, MAX_SEEN_ENGAGEMENTS, PURCHASE_WEIGHT, ReviewRecord,
    ReviewSummary, phone_alias,
};

/// Schema version of the persisted state, so stored states can be migrated.
pub const STATE_SCHEMA_VERSION: u16 = 1;

/// What an order contributes to the customer's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OrderRecord {
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: Timestamp,
    pub total: Money,
    pub cancelled: bool,
    pub items: Vec<ItemRecord>,
    pub checkout_token: Option<String>,
    pub cart_token: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ItemRecord {
    pub product_id: Option<String>,
    pub title: String,
    pub quantity: u32,
}

impl From<&LineItem> for ItemRecord {
    fn from(li: &LineItem) -> Self {
        ItemRecord { product_id: li.product_id.clone(), title: li.title.clone(), quantity: li.quantity }
    }
}

/// An open (not yet completed) checkout.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckoutRecord {
    pub cart_token: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: Timestamp,
    pub total: Money,
    pub item_count: u32,
    pub recovery_url: Option<String>,
    /// Set once the abandonment timer fired for this checkout.
    pub abandoned: bool,
}

/// Everything nudge knows about one customer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CustomerState {
    pub v: u16,
    pub customer: CustomerId,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub consent: MarketingConsent,
    /// The customer's tags as of the newest customer record applied (the whole set: a newer record
    /// replaces it). Empty in states stored before it existed, until the next customer record.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Consent to SMS marketing, as `consent` is for email.
    #[serde(default)]
    pub sms_consent: MarketingConsent,
    /// `updated_at` of the newest customer record applied, to discard stale customer updates.
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub profile_updated_at: Option<Timestamp>,
    /// Orders by platform order id; kept whole so updates and cancellations re-derive every aggregate.
    pub orders: BTreeMap<String, OrderRecord>,
    /// Open checkouts by checkout token.
    pub open_checkouts: BTreeMap<String, CheckoutRecord>,
    /// How many events changed this state; a cheap version number for the audit trail.
    pub revision: u64,
    /// Per flow, the times (unix seconds) of this customer's acting decisions, newest last: what the
    /// flows' frequency caps count. Kept here so it commits with the decision. Written by the pipeline.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub flow_history: BTreeMap<String, Vec<i64>>,
    /// A fingerprint of the scores last seen for this customer; a change fires `scores_changed` flows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scores_fingerprint: Option<String>,
    /// Phone in E.164, from an identify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub phone: Option<String>,
    /// When the newest identify applied happened (its profile fields win over older ones).
    #[serde(with = "time::serde::rfc3339::option", default, skip_serializing_if = "Option::is_none")]
    pub identified_at: Option<Timestamp>,
    /// The other ids this customer is known by: `anon:…`, `segment:…`, `email:<digest>`, `phone:<digest>`.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub aliases: BTreeSet<String>,
    /// The newest storefront behaviour of any kind.
    #[serde(with = "time::serde::rfc3339::option", default, skip_serializing_if = "Option::is_none")]
    pub last_active_at: Option<Timestamp>,
    /// Recent product views, cart adds and removes, cart views and searches, oldest first (bounded, and
    /// pruned by the pipeline's browse retention).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub browse: Vec<BrowseEntry>,
    /// Reviews by review id, each its newest version.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub reviews: BTreeMap<String, ReviewRecord>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub loyalty: Option<LoyaltyRecord>,
    #[serde(default, skip_serializing_if = "signals::engagement_is_empty")]
    pub engagement: EngagementState,
    /// Offers the `choose_offer` flow action made, oldest first (bounded): the guardrails read them and
    /// an order settles the open ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub offers: Vec<offers::OfferRecord>,
    /// What was known of the customer when they were first seen (for the cold-start value).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub acquisition: Option<offers::Acquisition>,
    /// The customer's offset from UTC in minutes, when an event told it (for local send hours).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub utc_offset_minutes: Option<i16>,
}

/// What applying one event did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Applied {
    /// The state changed.
    Changed,
    /// The event repeats what is stored already.
    Unchanged,
    /// The event is older than stored state and was not applied.
    Stale { reason: String },
    /// The event is not about this customer (or about no customer at all).
    NotApplicable,
}

/// A read-only summary of the state, used for scoring and the audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Summary {
    pub order_count: u32,
    /// Distinct calendar days (UTC) with a non-cancelled order: the "transactions" of the BTYD literature.
    pub order_days: u32,
    pub spend: Option<Money>,
    pub average_order_value: Option<Money>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub first_order_at: Option<Timestamp>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub last_order_at: Option<Timestamp>,
    pub open_checkouts: u32,
    pub top_products: Vec<String>,
}

impl CustomerState {
    pub fn new(customer: CustomerId) -> Self {
        CustomerState {
            v: STATE_SCHEMA_VERSION,
            customer,
            email: None,
            first_name: None,
            last_name: None,
            consent: MarketingConsent::Unknown,
            tags: Vec::new(),
            sms_consent: MarketingConsent::Unknown,
            profile_updated_at: None,
            orders: BTreeMap::new(),
            open_checkouts: BTreeMap::new(),
            revision: 0,
            flow_history: BTreeMap::new(),
            scores_fingerprint: None,
            phone: None,
            identified_at: None,
            aliases: BTreeSet::new(),
            last_active_at: None,
            browse: Vec::new(),
            reviews: BTreeMap::new(),
            loyalty: None,
            engagement: EngagementState::default(),
            offers: Vec::new(),
            acquisition: None,
            utc_offset_minutes: None,
        }
    }

    /// Applies one canonical event. Deterministic: the same events in any order of delivery converge to
    /// the same orders and aggregates (newest `updated_at` wins per order and per checkout).
    pub fn apply(&mut self, event: &Event) -> Applied {
        if event.customer().is_some_and(|c| c != &self.customer) {
            return Applied::NotApplicable;
        }
        // When the customer was first seen (orders, checkouts and the platform's customer record count;
        // behaviour events fold their own facts in `apply_behaviour`).
        let seen_at = match event {
            Event::OrderUpserted(o) | Event::OrderCancelled(o) => Some(o.created_at),
            Event::CheckoutUpserted(c) => Some(c.created_at),
            Event::CustomerUpserted(c) => c.created_at,
            _ => None,
        };
        let mut applied = match event {
            Event::OrderUpserted(o) => self.apply_order(o, false),
            Event::OrderCancelled(o) => self.apply_order(o, true),
            Event::CheckoutUpserted(c) => self.apply_checkout(c),
            Event::CheckoutAbandoned(a) => match self.open_checkouts.get_mut(&a.checkout.token) {
                Some(rec) if !rec.abandoned => {
                    rec.abandoned = true;
                    Applied::Changed
                }
                Some(_) => Applied::Unchanged,
                None => Applied::Stale { reason: "checkout is no longer open".into() },
            },
            Event::CustomerUpserted(c) => {
                if self.profile_updated_at.is_some_and(|t| t > c.updated_at) {
                    return Applied::Stale { reason: "customer update older than stored profile".into() };
                }
                let before = (
                    self.email.clone(),
                    self.first_name.clone(),
                    self.last_name.clone(),
                    self.consent,
                    self.sms_consent,
                    self.profile_updated_at,
                );
                if c.email.is_some() {
                    self.email = c.email.clone();
                }
                self.first_name = c.first_name.clone().or(self.first_name.take());
                self.last_name = c.last_name.clone().or(self.last_name.take());
                if c.email_consent != MarketingConsent::Unknown {
                    self.consent = c.email_consent;
                }
                if c.sms_consent != MarketingConsent::Unknown {
                    self.sms_consent = c.sms_consent;
                }
                // A customer record carries the whole tag set, so an empty one means the tags were removed.
                let tags_changed = self.tags != c.tags;
                if tags_changed {
                    self.tags.clone_from(&c.tags);
                }
                self.profile_updated_at = Some(c.updated_at);
                let after = (
                    self.email.clone(),
                    self.first_name.clone(),
                    self.last_name.clone(),
                    self.consent,
                    self.sms_consent,
                    self.profile_updated_at,
                );
                if before == after && !tags_changed { Applied::Unchanged } else { Applied::Changed }
            }
            // A schedule firing carries nothing to fold: the state stays as it is (the flow still decides).
            Event::ScheduleTick(_) => Applied::Unchanged,
            Event::CartUpserted(_) | Event::ProductUpserted(_) => Applied::NotApplicable,
            Event::Behaviour(b) => self.apply_behaviour(b),
            Event::Identified(i) => self.apply_identity(i),
            Event::ReviewPosted(r) => self.apply_review(r),
            Event::LoyaltyChanged(l) => self.apply_loyalty(l),
            Event::Engagement(e) => self.apply_engagement(e),
        };
        if let Some(at) = seen_at
            && !matches!(applied, Applied::Stale { .. })
            && self.note_acquisition(at, None, None)
        {
            applied = Applied::Changed;
        }
        if applied == Applied::Changed {
            self.revision += 1;
        }
        applied
    }

    fn apply_order(&mut self, o: &Order, cancelled_topic: bool) -> Applied {
        if self.email.is_none() {
            self.email = o.email.clone();
        }
        let cancelled = cancelled_topic || o.cancelled_at.is_some();
        let record = OrderRecord {
            created_at: o.created_at,
            updated_at: o.updated_at,
            total: o.total,
            cancelled,
            items: o.line_items.iter().map(ItemRecord::from).collect(),
            checkout_token: o.checkout_token.clone(),
            cart_token: o.cart_token.clone(),
        };
        // An order closes the checkout it came from, matched by checkout token or cart token.
        let mut closed = false;
        self.open_checkouts.retain(|token, c| {
            let matches = o.checkout_token.as_deref() == Some(token.as_str())
                || (o.cart_token.is_some() && c.cart_token == o.cart_token);
            closed |= matches;
            !matches
        });
        match self.orders.get(&o.id) {
            Some(existing) if existing.updated_at > o.updated_at => {
                if closed {
                    Applied::Changed
                } else {
                    Applied::Stale { reason: format!("order {} update older than stored state", o.id) }
                }
            }
            Some(existing) if existing == &record && !closed => Applied::Unchanged,
            Some(existing) if existing.cancelled && !cancelled && existing.updated_at == o.updated_at => {
                // A cancellation and an update with the same timestamp: cancellation is final.
                Applied::Unchanged
            }
            _ => {
                self.orders.insert(o.id.clone(), record);
                Applied::Changed
            }
        }
    }

    fn apply_checkout(&mut self, c: &Checkout) -> Applied {
        if self.email.is_none() {
            self.email = c.email.clone();
        }
        let converted = self.orders.values().any(|o| {
            o.checkout_token.as_deref() == Some(c.token.as_str())
                || (c.cart_token.is_some() && o.cart_token == c.cart_token)
        });
        if c.completed_at.is_some() || converted {
            return if self.open_checkouts.remove(&c.token).is_some() {
                Applied::Changed
            } else {
                Applied::Unchanged
            };
        }
        if let Some(existing) = self.open_checkouts.get(&c.token) {
            if existing.updated_at > c.updated_at {
                return Applied::Stale { reason: format!("checkout {} update older than stored", c.token) };
            }
            if existing.updated_at == c.updated_at {
                return Applied::Unchanged;
            }
        }
        let rec = CheckoutRecord {
            cart_token: c.cart_token.clone(),
            updated_at: c.updated_at,
            total: c.total,
            item_count: c.line_items.iter().map(|li| li.quantity).sum(),
            recovery_url: c.recovery_url.clone(),
            abandoned: false,
        };
        self.open_checkouts.insert(c.token.clone(), rec);
        Applied::Changed
    }

    /// Orders that count (not cancelled), oldest first.
    pub fn valid_orders(&self) -> impl Iterator<Item = &OrderRecord> {
        let mut v: Vec<&OrderRecord> = self.orders.values().filter(|o| !o.cancelled).collect();
        v.sort_by_key(|o| o.created_at);
        v.into_iter()
    }

    /// Days (UTC, days since 1970-01-01) with at least one valid order, ascending, with that day's spend
    /// as a float for the statistics. Same-day orders are merged, the convention of the BTYD literature.
    pub fn purchase_days(&self) -> Vec<(i32, f64)> {
        let mut days: BTreeMap<i32, f64> = BTreeMap::new();
        for o in self.valid_orders() {
            *days.entry(day_number(o.created_at)).or_insert(0.0) += o.total.to_f64();
        }
        days.into_iter().collect()
    }

    pub fn summary(&self) -> Summary {
        let valid: Vec<&OrderRecord> = self.valid_orders().collect();
        // Spend is reported in the customer's most used currency; orders in other currencies are not summed.
        let mut by_currency: BTreeMap<nudge_model::Currency, (u32, Decimal)> = BTreeMap::new();
        for o in &valid {
            let e = by_currency.entry(o.total.currency).or_insert((0, Decimal::ZERO));
            e.0 += 1;
            e.1 += o.total.amount;
        }
        let main = by_currency.iter().max_by_key(|(_, (n, _))| *n).map(|(c, (n, s))| (*c, *n, *s));
        let spend = main.map(|(c, _, s)| Money::new(s, c));
        let aov = main.map(|(c, n, s)| Money::new((s / Decimal::from(n)).round_dp(2), c));
        let mut products: BTreeMap<&str, u32> = BTreeMap::new();
        for o in &valid {
            for i in &o.items {
                if let Some(p) = i.product_id.as_deref() {
                    *products.entry(p).or_insert(0) += i.quantity;
                }
            }
        }
        let mut top: Vec<(&str, u32)> = products.into_iter().collect();
        top.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
        Summary {
            order_count: valid.len() as u32,
            order_days: self.purchase_days().len() as u32,
            spend,
            average_order_value: aov,
            first_order_at: valid.first().map(|o| o.created_at),
            last_order_at: valid.last().map(|o| o.created_at),
            open_checkouts: self.open_checkouts.len() as u32,
            top_products: top.into_iter().take(5).map(|(p, _)| p.to_string()).collect(),
        }
    }
}

/// Days since 1970-01-01 of a timestamp's UTC date.
pub fn day_number(t: Timestamp) -> i32 {
    let d = t.to_offset(time::UtcOffset::UTC).date();
    d.to_julian_day() - time::macros::date!(1970 - 01 - 01).to_julian_day()
}

#[cfg(test)]
mod signals_tests;
#[cfg(test)]
mod tests;
