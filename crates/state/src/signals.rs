//! The parts of a customer's state that come from signals beyond orders: storefront behaviour, reviews,
//! loyalty standing, engagement with marketing messages, and the other ids the customer is known by.
//!
//! Every fold here is order-tolerant and idempotent like the order fold: browse entries and engagement
//! events are deduplicated by their ids, reviews and loyalty standings keep the newest version, counters
//! are sums that do not depend on arrival order. Nothing reads a clock: what depends on "now" (rates over
//! the last 90 days, products viewed in the last 7 days, browse retention) takes it as a parameter.

use crate::{Applied, CustomerState, day_number};
use nudge_model::{
    Behaviour, BehaviourKind, CustomerId, Engagement, EngagementKind, Identity, Loyalty, MarketingConsent,
    Review, Timestamp, VisitorContext,
};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// How many browse entries a state keeps (the newest).
pub const MAX_BROWSE_ENTRIES: usize = 200;
/// How many engagement event ids a state remembers to drop repeats.
pub const MAX_SEEN_ENGAGEMENTS: usize = 500;
/// How many days of engagement counters a state keeps, counted back from the newest event's day.
pub const ENGAGEMENT_DAYS_KEPT: i32 = 120;

/// What a browse entry records.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum BrowseKind {
    Viewed,
    Added,
    Removed,
    CartViewed,
    Searched,
    /// A product in a storefront `Order Completed` (the commerce platform's order stays the order's record;
    /// this keeps what was bought with its category, for the preferred category).
    Purchased,
}

/// One storefront action kept for flows and features.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrowseEntry {
    pub kind: BrowseKind,
    #[serde(with = "time::serde::rfc3339")]
    pub at: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub product_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query: Option<String>,
    /// The product's category, when the event named one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub category: Option<String>,
    /// The dedupe key: the sender's message id, or what the event is made of without one.
    pub key: String,
}

/// One review by the customer, its newest version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ReviewRecord {
    pub product_id: Option<String>,
    pub rating: Option<u8>,
    /// VADER compound, when scored.
    pub sentiment: Option<f64>,
    pub negative: bool,
    pub published: bool,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: Timestamp,
}

/// The customer's standing in a loyalty program.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LoyaltyRecord {
    pub program: String,
    pub member_id: String,
    pub points: Option<i64>,
    pub tier: Option<String>,
    pub state: Option<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: Timestamp,
    /// Points gained (or spent, negative) by the last change applied, when both standings had points.
    #[serde(default)]
    pub last_points_change: Option<i64>,
}

/// One day's engagement counts (UTC).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DayCounts {
    #[serde(default)]
    pub sent: u32,
    #[serde(default)]
    pub delivered: u32,
    /// Opens by people (machine opens excluded).
    #[serde(default)]
    pub opened: u32,
    #[serde(default)]
    pub machine_opened: u32,
    #[serde(default)]
    pub clicked: u32,
    #[serde(default)]
    pub bounced: u32,
}

/// What marketing messages did for this customer.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct EngagementState {
    /// `platform:event_id` of the latest events, oldest first (bounded).
    #[serde(default)]
    pub seen: VecDeque<String>,
    /// Counts per day (days since 1970-01-01).
    #[serde(default)]
    pub days: BTreeMap<i32, DayCounts>,
    /// Human opens by hour of day (UTC), for a send-time model.
    #[serde(default)]
    pub open_hours: [u32; 24],
    /// Human engagement (opens without machine opens, and clicks) by channel (`email`, `sms`, `push`) and
    /// hour of day (UTC): what the send-time model learns each channel's best hour from.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub channel_hours: BTreeMap<String, [u32; 24]>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub last_engaged_at: Option<Timestamp>,
    #[serde(default)]
    pub suppressed: bool,
    /// `unsubscribed` or `spam_complaint`, with the platform: `unsubscribed (klaviyo)`.
    #[serde(default)]
    pub suppressed_reason: Option<String>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub suppressed_at: Option<Timestamp>,
}

impl EngagementState {
    fn is_empty(&self) -> bool {
        self == &EngagementState::default()
    }

    /// Totals over the days in `[now - days, now]`.
    pub fn totals_since(&self, now: Timestamp, days: i32) -> DayCounts {
        let today = day_number(now);
        let mut t = DayCounts::default();
        for (_, c) in self.days.range(today - days + 1..=today) {
            t.sent += c.sent;
            t.delivered += c.delivered;
            t.opened += c.opened;
            t.machine_opened += c.machine_opened;
            t.clicked += c.clicked;
            t.bounced += c.bounced;
        }
        t
    }

    /// Human opens per delivered message over the last 90 days (capped at 1); `None` without deliveries.
    pub fn open_rate_90d(&self, now: Timestamp) -> Option<f64> {
        let t = self.totals_since(now, 90);
        (t.delivered > 0).then(|| (f64::from(t.opened) / f64::from(t.delivered)).min(1.0))
    }

    /// Clicks per delivered message over the last 90 days (capped at 1); `None` without deliveries.
    pub fn click_rate_90d(&self, now: Timestamp) -> Option<f64> {
        let t = self.totals_since(now, 90);
        (t.delivered > 0).then(|| (f64::from(t.clicked) / f64::from(t.delivered)).min(1.0))
    }
}

/// Aggregates of the customer's reviews.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ReviewSummary {
    pub count: u32,
    pub negative: u32,
    pub last_rating: Option<u8>,
    pub last_sentiment: Option<f64>,
    pub last_review_at: Option<Timestamp>,
}

/// The alias text of a phone number: `phone:` and a digest of the E.164 number, never the number.
pub fn phone_alias(e164: &str) -> Option<String> {
    let digits: String = e164.chars().filter(|c| c.is_ascii_digit() || *c == '+').collect();
    if digits.len() < 4 {
        return None;
    }
    // The email key's digest, over the number: the same 16 hex digits, different prefix.
    CustomerId::for_email(&digits).map(|k| format!("phone:{}", k.local()))
}

fn behaviour_entry(b: &Behaviour) -> Option<Vec<BrowseEntry>> {
    let kind = match b.kind {
        BehaviourKind::ProductViewed => BrowseKind::Viewed,
        BehaviourKind::ProductAdded => BrowseKind::Added,
        BehaviourKind::ProductRemoved => BrowseKind::Removed,
        BehaviourKind::CartViewed => BrowseKind::CartViewed,
        BehaviourKind::Search => BrowseKind::Searched,
        BehaviourKind::OrderCompleted if !b.products.is_empty() => BrowseKind::Purchased,
        _ => return None,
    };
    let base =
        b.message_id.clone().unwrap_or_else(|| format!("{}:{}", b.kind.as_str(), b.at.unix_timestamp()));
    let products: Vec<(Option<String>, Option<String>)> = match kind {
        BrowseKind::Viewed | BrowseKind::Added | BrowseKind::Removed | BrowseKind::Purchased
            if !b.products.is_empty() =>
        {
            b.products
                .iter()
                .map(|p| {
                    (p.product_id.clone().or_else(|| p.sku.clone()), clean_category(p.category.as_deref()))
                })
                .collect()
        }
        _ => vec![(None, None)],
    };
    let n = products.len();
    Some(
        products
            .into_iter()
            .enumerate()
            .map(|(i, (product_id, category))| BrowseEntry {
                kind,
                at: b.at,
                key: if n == 1 { base.clone() } else { format!("{base}#{i}") },
                product_id,
                category,
                query: b.query.clone().filter(|_| kind == BrowseKind::Searched),
            })
            .collect(),
    )
}

/// Inserts entries in time order, without repeats, keeping the newest [`MAX_BROWSE_ENTRIES`]; true when
/// anything was added.
fn insert_browse(list: &mut Vec<BrowseEntry>, entries: Vec<BrowseEntry>) -> bool {
    let mut added = false;
    for e in entries {
        if list.iter().any(|x| x.key == e.key) {
            continue;
        }
        if list.len() >= MAX_BROWSE_ENTRIES && list.first().is_some_and(|oldest| e.at < oldest.at) {
            // Older than everything kept in a full list: it would be dropped at once.
            continue;
        }
        let pos = list.partition_point(|x| (x.at, &x.key) <= (e.at, &e.key));
        list.insert(pos, e);
        added = true;
    }
    if list.len() > MAX_BROWSE_ENTRIES {
        list.drain(..list.len() - MAX_BROWSE_ENTRIES);
    }
    added
}

impl CustomerState {
    pub(crate) fn apply_behaviour(&mut self, b: &Behaviour) -> Applied {
        let mut changed = false;
        if let Some(a) =
            b.anonymous_id.as_deref().and_then(|a| CustomerId::new(nudge_model::Source::Anonymous, a).ok())
            && a != self.customer
        {
            changed |= self.aliases.insert(a.to_string());
        }
        let newest = self.last_active_at.is_none_or(|t| t <= b.at);
        if let Some(entries) = behaviour_entry(b) {
            changed |= insert_browse(&mut self.browse, entries);
        }
        // The newest event's time zone wins (people travel; offsets change with daylight saving time).
        if let Some(offset) = b.context.utc_offset_minutes
            && (newest || self.utc_offset_minutes.is_none())
            && self.utc_offset_minutes != Some(offset)
        {
            self.utc_offset_minutes = Some(offset);
            changed = true;
        }
        let category = b.products.iter().find_map(|p| clean_category(p.category.as_deref()));
        changed |= self.note_acquisition(b.at, Some(&b.context), category.as_deref());
        if self.last_active_at.is_none_or(|t| t < b.at) {
            self.last_active_at = Some(b.at);
            changed = true;
        }
        if changed { Applied::Changed } else { Applied::Unchanged }
    }

    /// Drops browse entries older than `keep_after` (the caller's now minus its retention); true when any
    /// were dropped.
    pub fn prune_browse(&mut self, keep_after: Timestamp) -> bool {
        let before = self.browse.len();
        self.browse.retain(|e| e.at >= keep_after);
        self.browse.len() != before
    }

    /// Distinct product ids of `kind` entries at or after `since`, newest first.
    pub fn browsed_products(&self, kind: BrowseKind, since: Timestamp) -> Vec<String> {
        let mut seen = BTreeSet::new();
        self.browse
            .iter()
            .rev()
            .filter(|e| e.kind == kind && e.at >= since)
            .filter_map(|e| e.product_id.clone())
            .filter(|p| seen.insert(p.clone()))
            .collect()
    }

    pub(crate) fn apply_review(&mut self, r: &Review) -> Applied {
        let rec = ReviewRecord {
            product_id: r.product_id.clone(),
            rating: r.rating,
            sentiment: r.sentiment.as_ref().map(|s| s.compound),
            negative: r.is_negative(),
            published: r.published,
            created_at: r.created_at,
            updated_at: r.updated_at,
        };
        match self.reviews.get(&r.review_id) {
            Some(existing) if existing.updated_at > r.updated_at => {
                Applied::Stale { reason: format!("review {} update older than stored", r.review_id) }
            }
            Some(existing) if existing.updated_at == r.updated_at => Applied::Unchanged,
            _ => {
                self.reviews.insert(r.review_id.clone(), rec);
                Applied::Changed
            }
        }
    }

    /// The customer's published reviews in aggregate; "last" is the newest by creation.
    pub fn review_summary(&self) -> ReviewSummary {
        let published: Vec<&ReviewRecord> = self.reviews.values().filter(|r| r.published).collect();
        let last = published.iter().max_by_key(|r| (r.created_at, r.updated_at));
        ReviewSummary {
            count: published.len() as u32,
            negative: published.iter().filter(|r| r.negative).count() as u32,
            last_rating: last.and_then(|r| r.rating),
            last_sentiment: last.and_then(|r| r.sentiment),
            last_review_at: last.map(|r| r.created_at),
        }
    }

    pub(crate) fn apply_loyalty(&mut self, l: &Loyalty) -> Applied {
        if let Some(cur) = &self.loyalty {
            if cur.updated_at > l.updated_at {
                return Applied::Stale { reason: "loyalty standing older than stored".into() };
            }
            if cur.program == l.program && cur.points == l.points && cur.tier == l.tier {
                return Applied::Unchanged;
            }
        }
        let change = match (self.loyalty.as_ref().and_then(|c| c.points), l.points) {
            (Some(a), Some(b)) => Some(b - a),
            (None, Some(b)) => Some(b),
            _ => None,
        };
        self.loyalty = Some(LoyaltyRecord {
            program: l.program.clone(),
            member_id: l.member_id.clone(),
            points: l.points,
            tier: l.tier.clone(),
            state: l.state.clone(),
            updated_at: l.updated_at,
            last_points_change: change,
        });
        Applied::Changed
    }

    pub(crate) fn apply_engagement(&mut self, e: &Engagement) -> Applied {
        let key = format!("{}:{}", e.platform, e.event_id);
        let eng = &mut self.engagement;
        if eng.seen.contains(&key) {
            return Applied::Unchanged;
        }
        eng.seen.push_back(key);
        while eng.seen.len() > MAX_SEEN_ENGAGEMENTS {
            eng.seen.pop_front();
        }
        let day = day_number(e.at);
        let c = eng.days.entry(day).or_default();
        match e.kind {
            EngagementKind::Sent => c.sent += 1,
            EngagementKind::Delivered => c.delivered += 1,
            EngagementKind::Opened if e.machine => c.machine_opened += 1,
            EngagementKind::Opened => {
                c.opened += 1;
                let h = e.at.to_offset(time::UtcOffset::UTC).hour() as usize;
                eng.open_hours[h] += 1;
            }
            EngagementKind::Clicked => c.clicked += 1,
            EngagementKind::Bounced => c.bounced += 1,
            EngagementKind::Unsubscribed | EngagementKind::SpamComplaint => {}
        }
        let human =
            matches!(e.kind, EngagementKind::Clicked) || (e.kind == EngagementKind::Opened && !e.machine);
        if human {
            let h = e.at.to_offset(time::UtcOffset::UTC).hour() as usize;
            let channel = e.channel.trim().to_ascii_lowercase();
            let channel = if channel.is_empty() { "email".to_string() } else { channel };
            eng.channel_hours.entry(channel).or_insert([0; 24])[h] += 1;
        }
        if human && eng.last_engaged_at.is_none_or(|t| t < e.at) {
            eng.last_engaged_at = Some(e.at);
        }
        if e.kind.suppresses() && eng.suppressed_at.is_none_or(|t| e.at < t) {
            // The first suppression is the one kept, whatever order they arrive in.
            eng.suppressed = true;
            eng.suppressed_reason = Some(format!("{} ({})", e.kind.as_str(), e.platform));
            eng.suppressed_at = Some(e.at);
        }
        let newest = eng.days.keys().next_back().copied().unwrap_or(day);
        eng.days.retain(|d, _| *d > newest - ENGAGEMENT_DAYS_KEPT);
        Applied::Changed
    }

    pub(crate) fn apply_identity(&mut self, i: &Identity) -> Applied {
        let mut changed = false;
        for l in &i.links {
            if l != &self.customer {
                changed |= self.aliases.insert(l.to_string());
            }
        }
        if let Some(k) = i.email.as_deref().and_then(CustomerId::for_email)
            && k != self.customer
        {
            changed |= self.aliases.insert(k.to_string());
        }
        if let Some(p) = i.phone.as_deref().and_then(phone_alias) {
            changed |= self.aliases.insert(p);
        }
        // Profile fields: the newest identify wins; an older one only adds what is missing.
        let newest = self.identified_at.is_none_or(|t| t <= i.at);
        let mut set = |slot: &mut Option<String>, v: &Option<String>| {
            if v.is_some() && (newest || slot.is_none()) && slot != v {
                slot.clone_from(v);
                changed = true;
            }
        };
        set(&mut self.email, &i.email);
        set(&mut self.first_name, &i.first_name);
        set(&mut self.last_name, &i.last_name);
        set(&mut self.phone, &i.phone);
        if (newest || self.consent == MarketingConsent::Unknown)
            && i.email_consent != MarketingConsent::Unknown
            && self.consent != i.email_consent
        {
            self.consent = i.email_consent;
            changed = true;
        }
        if (newest || self.sms_consent == MarketingConsent::Unknown)
            && i.sms_consent != MarketingConsent::Unknown
            && self.sms_consent != i.sms_consent
        {
            self.sms_consent = i.sms_consent;
            changed = true;
        }
        if newest && self.identified_at != Some(i.at) {
            self.identified_at = Some(i.at);
            changed = true;
        }
        if changed { Applied::Changed } else { Applied::Unchanged }
    }

    /// Folds another customer's state (a provisional visitor now known to be this customer) into this one,
    /// keeping the history of both: browse entries, reviews, loyalty, engagement, orders and checkouts,
    /// flow history; profile fields this state lacks. The other's id and aliases become this one's aliases.
    pub fn merge(&mut self, other: CustomerState) {
        if other.customer != self.customer {
            self.aliases.insert(other.customer.to_string());
        }
        self.aliases.extend(other.aliases.into_iter().filter(|a| *a != self.customer.to_string()));
        insert_browse(&mut self.browse, other.browse);
        for (id, r) in other.reviews {
            match self.reviews.get(&id) {
                Some(mine) if mine.updated_at >= r.updated_at => {}
                _ => {
                    self.reviews.insert(id, r);
                }
            }
        }
        if let Some(l) = other.loyalty
            && self.loyalty.as_ref().is_none_or(|mine| mine.updated_at < l.updated_at)
        {
            self.loyalty = Some(l);
        }
        let (mine, theirs) = (&mut self.engagement, other.engagement);
        for k in theirs.seen {
            if !mine.seen.contains(&k) {
                mine.seen.push_back(k);
            }
        }
        while mine.seen.len() > MAX_SEEN_ENGAGEMENTS {
            mine.seen.pop_front();
        }
        for (d, c) in theirs.days {
            let m = mine.days.entry(d).or_default();
            m.sent += c.sent;
            m.delivered += c.delivered;
            m.opened += c.opened;
            m.machine_opened += c.machine_opened;
            m.clicked += c.clicked;
            m.bounced += c.bounced;
        }
        for (h, n) in theirs.open_hours.iter().enumerate() {
            mine.open_hours[h] += n;
        }
        for (channel, hours) in theirs.channel_hours {
            let m = mine.channel_hours.entry(channel).or_insert([0; 24]);
            for (h, n) in hours.iter().enumerate() {
                m[h] += n;
            }
        }
        mine.last_engaged_at = mine.last_engaged_at.max(theirs.last_engaged_at);
        if theirs.suppressed && mine.suppressed_at.is_none_or(|t| theirs.suppressed_at.is_some_and(|o| o < t))
        {
            mine.suppressed = true;
            mine.suppressed_reason = theirs.suppressed_reason;
            mine.suppressed_at = theirs.suppressed_at;
        }
        for (id, o) in other.orders {
            match self.orders.get(&id) {
                Some(mine) if mine.updated_at >= o.updated_at => {}
                _ => {
                    self.orders.insert(id, o);
                }
            }
        }
        for (t, c) in other.open_checkouts {
            match self.open_checkouts.get(&t) {
                Some(mine) if mine.updated_at >= c.updated_at => {}
                _ => {
                    self.open_checkouts.insert(t, c);
                }
            }
        }
        for (flow, times) in other.flow_history {
            let h = self.flow_history.entry(flow).or_default();
            h.extend(times);
            h.sort_unstable();
            h.dedup();
        }
        self.last_active_at = self.last_active_at.max(other.last_active_at);
        if self.email.is_none() {
            self.email = other.email;
        }
        if self.first_name.is_none() {
            self.first_name = other.first_name;
        }
        if self.last_name.is_none() {
            self.last_name = other.last_name;
        }
        if self.phone.is_none() {
            self.phone = other.phone;
        }
        if self.consent == MarketingConsent::Unknown {
            self.consent = other.consent;
        }
        if self.sms_consent == MarketingConsent::Unknown {
            self.sms_consent = other.sms_consent;
        }
        if let Some(theirs) = other.acquisition {
            let facts = VisitorContext {
                source: theirs.source,
                country: theirs.country,
                device: theirs.device,
                utc_offset_minutes: None,
            };
            if let Some(at) = theirs.first_seen_at {
                self.note_acquisition(at, Some(&facts), theirs.first_category.as_deref());
            }
        }
        if self.utc_offset_minutes.is_none() {
            self.utc_offset_minutes = other.utc_offset_minutes;
        }
        self.revision += 1;
    }
}

/// A category as the state keeps it: trimmed, `None` when empty.
fn clean_category(c: Option<&str>) -> Option<String> {
    c.map(str::trim).filter(|c| !c.is_empty()).map(str::to_string)
}

impl CustomerState {
    /// Folds what an event at `at` tells about how the customer was acquired: `first_seen_at` is the
    /// earliest event time seen; each fact (source, country, device, first category) comes from the
    /// earliest event that carried it as far as arrival order tells: a fact missing so far is taken from
    /// any event, and an event earlier than every one seen before replaces the facts it carries. True when
    /// anything changed.
    pub(crate) fn note_acquisition(
        &mut self,
        at: Timestamp,
        context: Option<&VisitorContext>,
        category: Option<&str>,
    ) -> bool {
        let acq = self.acquisition.get_or_insert_with(Default::default);
        let before = acq.clone();
        let earliest = acq.first_seen_at.is_none_or(|t| at < t);
        if earliest {
            acq.first_seen_at = Some(at);
        }
        let take = |slot: &mut Option<String>, v: Option<&str>| {
            if let Some(v) = v
                && (earliest || slot.is_none())
            {
                *slot = Some(v.to_string());
            }
        };
        if let Some(c) = context {
            take(&mut acq.source, c.source.as_deref());
            take(&mut acq.country, c.country.as_deref());
            take(&mut acq.device, c.device.as_deref());
        }
        take(&mut acq.first_category, category);
        *acq != before
    }

    /// The preferred product category: every kept browse entry with a category counts, a purchase 5, a
    /// cart add 2, a view 1 (removals count nothing), each weighted by `0.5^(age / 30 days)` at `now`
    /// (entries after `now` count as new). Ties go to the category seen most recently. `None` without any
    /// categorised entry. The entries are those the state keeps (the newest 200, within the pipeline's
    /// browse retention), so this is a preference over recent behaviour.
    pub fn preferred_category(&self, now: Timestamp) -> Option<(String, f64)> {
        let mut weights: BTreeMap<&str, (f64, Timestamp)> = BTreeMap::new();
        for e in &self.browse {
            let Some(c) = e.category.as_deref() else { continue };
            let w = match e.kind {
                BrowseKind::Purchased => PURCHASE_WEIGHT,
                BrowseKind::Added => ADD_WEIGHT,
                BrowseKind::Viewed => 1.0,
                _ => continue,
            };
            let age_days = ((now - e.at).as_seconds_f64() / 86_400.0).max(0.0);
            let slot = weights.entry(c).or_insert((0.0, e.at));
            slot.0 += w * 0.5f64.powf(age_days / CATEGORY_HALF_LIFE_DAYS);
            slot.1 = slot.1.max(e.at);
        }
        weights
            .into_iter()
            .max_by(|a, b| a.1.0.total_cmp(&b.1.0).then(a.1.1.cmp(&b.1.1)))
            .map(|(c, (w, _))| (c.to_string(), w))
    }
}

/// How much a purchase counts toward the preferred category, against a view's 1.
pub const PURCHASE_WEIGHT: f64 = 5.0;
/// How much a cart add counts toward the preferred category, against a view's 1.
pub const ADD_WEIGHT: f64 = 2.0;
/// The half-life of a browse entry's weight toward the preferred category.
pub const CATEGORY_HALF_LIFE_DAYS: f64 = 30.0;

pub(crate) fn engagement_is_empty(e: &EngagementState) -> bool {
    e.is_empty()
}
