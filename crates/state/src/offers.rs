//! What the decision models keep in a customer's state: the offers made to them and how they were
//! acquired.

use nudge_model::Timestamp;
use serde::{Deserialize, Serialize};

/// One offer a `choose_offer` action made.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct OfferRecord {
    /// The flow that made it.
    pub flow: String,
    /// The arm chosen (`none`, `free_shipping`, `pct_10`, …).
    pub arm: String,
    /// The decision's id in the offer log (stable: the trace and the flow).
    pub decision_id: String,
    #[serde(with = "time::serde::rfc3339")]
    pub decided_at: Timestamp,
    /// An order after this settles nothing.
    #[serde(with = "time::serde::rfc3339")]
    pub window_end: Timestamp,
    /// Whether an order settled it (an unsettled offer past its window settles at zero in the log).
    #[serde(default)]
    pub settled: bool,
}

/// At most this many offers are kept in a state (the oldest go first).
pub const MAX_OFFERS: usize = 32;

/// Records an offer made (bounded by [`MAX_OFFERS`]).
pub fn record_offer(offers: &mut Vec<OfferRecord>, offer: OfferRecord) {
    if offers.iter().any(|o| o.decision_id == offer.decision_id) {
        return;
    }
    offers.push(offer);
    if offers.len() > MAX_OFFERS {
        offers.drain(..offers.len() - MAX_OFFERS);
    }
}

/// Marks settled the open offers whose window holds an order placed at `order_at`; returns whether any
/// was.
pub fn settle_offers(offers: &mut [OfferRecord], order_at: Timestamp) -> bool {
    let mut any = false;
    for o in offers.iter_mut().filter(|o| !o.settled && o.decided_at <= order_at && order_at <= o.window_end)
    {
        o.settled = true;
        any = true;
    }
    any
}

/// What was known about a customer when first seen.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Acquisition {
    /// The source: a UTM source or referrer domain, the platform's `source_name`, or the intake.
    #[serde(default)]
    pub source: Option<String>,
    /// The first product category viewed or bought.
    #[serde(default)]
    pub first_category: Option<String>,
    /// Country code, when an address or context gave one.
    #[serde(default)]
    pub country: Option<String>,
    /// `mobile`, `desktop`, `tablet`, when a storefront context gave one.
    #[serde(default)]
    pub device: Option<String>,
    #[serde(with = "time::serde::rfc3339::option", default)]
    pub first_seen_at: Option<Timestamp>,
}
