//! A state stored as JSON (before the compact encoding) and the same state after its rewrite in the
//! compact encoding fold the same later events into the same state, and score the same.

use nudge_model::{
    Checkout, Customer, CustomerId, Event, LineItem, MarketingConsent, Money, Order, ScoreSet, Timestamp,
};
use nudge_models::{BgNbd, ClvSettings, GammaGamma, TimeUnit};
use nudge_scoring::{BtydModel, BtydScorer, CountModelParams, RulesScorer, Scorer, SegmentThresholds};
use nudge_state::CustomerState;
use time::macros::datetime;

fn cust() -> CustomerId {
    "shopify:7890123456".parse().unwrap()
}

fn order(id: &str, at: Timestamp, total: &str, cancelled: bool, items: &[(&str, u32)]) -> Event {
    let o = Order {
        id: id.into(),
        name: Some(format!("#{id}")),
        customer: Some(cust()),
        email: Some("ada@example.org".into()),
        created_at: at,
        updated_at: at + time::Duration::minutes(3),
        cancelled_at: cancelled.then_some(at + time::Duration::hours(1)),
        total: Money::parse(total, "USD").unwrap(),
        financial_status: None,
        line_items: items
            .iter()
            .map(|(p, q)| LineItem {
                product_id: Some((*p).into()),
                variant_id: None,
                sku: None,
                title: format!("Product {p}"),
                quantity: *q,
                price: Money::parse("39.95", "USD").unwrap(),
            })
            .collect(),
        checkout_token: Some(format!("{id}0f3a9c2b7d1e4f5a6b7c8d9e")),
        cart_token: None,
        accepts_marketing: None,
    };
    if cancelled { Event::OrderCancelled(o) } else { Event::OrderUpserted(o) }
}

fn history() -> Vec<Event> {
    vec![
        Event::CustomerUpserted(Customer {
            id: cust(),
            email: Some("ada@example.org".into()),
            first_name: Some("Ada".into()),
            last_name: Some("Lovelace".into()),
            created_at: Some(datetime!(2025-01-01 09:00 UTC)),
            updated_at: datetime!(2025-01-02 09:00 UTC),
            email_consent: MarketingConsent::Subscribed,
            tags: vec!["vip".into()],
            sms_consent: MarketingConsent::Unknown,
        }),
        order("5001", datetime!(2025-01-10 12:30 UTC), "39.95", false, &[("7890123456", 1)]),
        order("5002", datetime!(2025-03-02 08:00 -05:00), "79.90", false, &[("7890123457", 2)]),
        order("5003", datetime!(2025-04-18 17:45:10.250 UTC), "119.85", false, &[("7890123456", 3)]),
        order("5004", datetime!(2025-05-01 00:00 UTC), "12.00", true, &[]),
        Event::CheckoutUpserted(Checkout {
            token: "chk9".into(),
            cart_token: Some("cart9".into()),
            customer: Some(cust()),
            email: Some("ada@example.org".into()),
            created_at: datetime!(2025-06-01 10:00 UTC),
            updated_at: datetime!(2025-06-01 10:05 UTC),
            completed_at: None,
            total: Money::parse("59.95", "USD").unwrap(),
            line_items: vec![],
            recovery_url: Some("https://shop.example/recover/chk9".into()),
            accepts_marketing: None,
        }),
    ]
}

/// What comes after the migration: a new order (closing nothing), an update of an old one, a cancellation,
/// a repeat, a stale update and a profile change.
fn later() -> Vec<Event> {
    vec![
        order("5005", datetime!(2025-07-04 11:00 UTC), "49.95", false, &[("7890123458", 1)]),
        order("5002", datetime!(2025-03-02 08:00 -05:00), "69.90", false, &[("7890123457", 1)]),
        order("5001", datetime!(2025-01-10 12:30 UTC), "39.95", true, &[("7890123456", 1)]),
        order("5005", datetime!(2025-07-04 11:00 UTC), "49.95", false, &[("7890123458", 1)]),
        Event::CustomerUpserted(Customer {
            id: cust(),
            email: None,
            first_name: None,
            last_name: Some("King".into()),
            created_at: None,
            updated_at: datetime!(2025-07-05 09:00 UTC),
            email_consent: MarketingConsent::Unsubscribed,
            tags: vec![],
            sms_consent: MarketingConsent::Subscribed,
        }),
    ]
}

fn scores(s: &CustomerState, now: Timestamp) -> (ScoreSet, ScoreSet) {
    let btyd = BtydScorer::new(
        BtydModel {
            version: "v-test".into(),
            unit: TimeUnit::W,
            count: CountModelParams::Bgnbd(BgNbd { r: 0.243, alpha: 4.414, a: 0.793, b: 2.426 }),
            spend: Some(GammaGamma { p: 6.25, q: 3.74, v: 15.44 }),
            clv: ClvSettings::default(),
        },
        SegmentThresholds::default(),
    );
    let rules = RulesScorer { thresholds: SegmentThresholds::default() };
    (rules.score(s, now).unwrap(), btyd.score(s, now).unwrap())
}

#[test]
fn json_and_compact_states_fold_and_score_the_same() {
    let mut original = CustomerState::new(cust());
    for e in history() {
        original.apply(&e);
    }
    // As a store held it before, and as the migration rewrites it.
    let json = serde_json::to_string(&original).unwrap();
    let from_json = CustomerState::decode(json.as_bytes()).unwrap();
    assert_eq!(from_json, original);
    let compact = from_json.encode();
    assert_eq!(compact[0], 1, "the compact encoding, version 1");
    assert!(compact.len() * 3 < json.len(), "{} bytes compact, {} as JSON", compact.len(), json.len());
    let from_compact = CustomerState::decode(&compact).unwrap();
    assert_eq!(from_compact, original);
    assert_eq!(serde_json::to_string(&from_compact).unwrap(), json, "the JSON form is unchanged");

    let now = datetime!(2025-08-01 00:00 UTC);
    assert_eq!(scores(&from_json, now), scores(&from_compact, now));
    assert_eq!(from_json.summary(), from_compact.summary());
    let (mut a, mut b) = (from_json, from_compact);
    for e in later() {
        assert_eq!(a.apply(&e), b.apply(&e), "{e:?}");
    }
    assert_eq!(a, b);
    assert_eq!(serde_json::to_string(&a).unwrap(), serde_json::to_string(&b).unwrap());
    assert_eq!(scores(&a, now), scores(&b, now));
    // And the folded state goes through the encoding again unchanged.
    assert_eq!(CustomerState::decode(&b.encode()).unwrap(), a);
}
