use super::*;
use nudge_model::{Checkout, CheckoutAbandoned, Customer, Money, Order};
use time::macros::datetime;

fn cust() -> CustomerId {
    "shopify:880012".parse().unwrap()
}

fn order(id: &str, updated: Timestamp, total: &str) -> Order {
    Order {
        id: id.into(),
        name: None,
        customer: Some(cust()),
        email: Some("lena@example.org".into()),
        created_at: datetime!(2026-05-01 10:00 UTC),
        updated_at: updated,
        cancelled_at: None,
        total: Money::parse(total, "EUR").unwrap(),
        financial_status: None,
        line_items: vec![],
        checkout_token: Some("chk1".into()),
        cart_token: None,
        accepts_marketing: None,
    }
}

fn checkout(token: &str, updated: Timestamp) -> Checkout {
    Checkout {
        token: token.into(),
        cart_token: Some("cart1".into()),
        customer: Some(cust()),
        email: Some("lena@example.org".into()),
        created_at: datetime!(2026-05-01 09:00 UTC),
        updated_at: updated,
        completed_at: None,
        total: Money::parse("84.90", "EUR").unwrap(),
        line_items: vec![],
        recovery_url: Some("https://shop/recover".into()),
        accepts_marketing: None,
    }
}

#[test]
fn stale_order_update_never_overwrites_newer_state() {
    let mut s = CustomerState::new(cust());
    assert_eq!(
        s.apply(&Event::OrderUpserted(order("1", datetime!(2026-05-02 10:00 UTC), "90.00"))),
        Applied::Changed
    );
    let stale = s.apply(&Event::OrderUpserted(order("1", datetime!(2026-05-01 10:00 UTC), "10.00")));
    assert!(matches!(stale, Applied::Stale { .. }));
    assert_eq!(s.summary().spend.unwrap().amount.to_string(), "90.00");
}

#[test]
fn duplicate_event_is_unchanged_and_update_before_create_works() {
    let mut s = CustomerState::new(cust());
    let upd = Event::OrderUpserted(order("1", datetime!(2026-05-02 10:00 UTC), "90.00"));
    assert_eq!(s.apply(&upd), Applied::Changed);
    assert_eq!(s.apply(&upd), Applied::Unchanged);
    assert_eq!(s.revision, 1);
    // The create (older) arriving afterwards is stale and ignored.
    let create = Event::OrderUpserted(order("1", datetime!(2026-05-01 10:00 UTC), "80.00"));
    assert!(matches!(s.apply(&create), Applied::Stale { .. }));
    assert_eq!(s.summary().order_count, 1);
}

#[test]
fn cancelled_orders_do_not_count() {
    let mut s = CustomerState::new(cust());
    s.apply(&Event::OrderUpserted(order("1", datetime!(2026-05-01 10:00 UTC), "50.00")));
    s.apply(&Event::OrderUpserted(order("2", datetime!(2026-05-01 11:00 UTC), "30.00")));
    assert_eq!(s.summary().order_count, 2);
    assert_eq!(s.summary().order_days, 1, "same-day orders merge into one purchase day");
    s.apply(&Event::OrderCancelled(order("2", datetime!(2026-05-03 11:00 UTC), "30.00")));
    let sum = s.summary();
    assert_eq!(sum.order_count, 1);
    assert_eq!(sum.spend.unwrap().amount.to_string(), "50.00");
}

#[test]
fn order_closes_its_checkout_and_late_checkout_update_does_not_reopen() {
    let mut s = CustomerState::new(cust());
    s.apply(&Event::CheckoutUpserted(checkout("chk1", datetime!(2026-05-01 09:05 UTC))));
    assert_eq!(s.open_checkouts.len(), 1);
    s.apply(&Event::OrderUpserted(order("1", datetime!(2026-05-01 10:00 UTC), "84.90")));
    assert!(s.open_checkouts.is_empty());
    let late = s.apply(&Event::CheckoutUpserted(checkout("chk1", datetime!(2026-05-01 09:10 UTC))));
    assert_eq!(late, Applied::Unchanged);
    assert!(s.open_checkouts.is_empty());
}

#[test]
fn abandonment_marks_once() {
    let mut s = CustomerState::new(cust());
    let c = checkout("chk9", datetime!(2026-05-01 09:05 UTC));
    s.apply(&Event::CheckoutUpserted(c.clone()));
    let ab = Event::CheckoutAbandoned(CheckoutAbandoned {
        customer: cust(),
        email: None,
        idle_since: c.updated_at,
        checkout: c,
    });
    assert_eq!(s.apply(&ab), Applied::Changed);
    assert_eq!(s.apply(&ab), Applied::Unchanged);
}

#[test]
fn a_schedule_tick_leaves_the_state_as_it_was() {
    let mut s = CustomerState::new(cust());
    s.apply(&Event::OrderUpserted(order("1", datetime!(2026-05-01 10:00 UTC), "10.00")));
    let before = s.clone();
    let tick = |customer: CustomerId| {
        Event::ScheduleTick(nudge_model::ScheduleTick {
            customer,
            flow: "weekly".into(),
            fired_at: datetime!(2026-05-04 09:00 UTC),
        })
    };
    assert_eq!(s.apply(&tick(cust())), Applied::Unchanged);
    assert_eq!(s, before);
    assert_eq!(s.apply(&tick("shopify:999".parse().unwrap())), Applied::NotApplicable);
    assert_eq!(s, before);
}

#[test]
fn stale_customer_update_is_ignored_and_other_customers_not_applied() {
    let mut s = CustomerState::new(cust());
    let mk = |t, email: &str| {
        Event::CustomerUpserted(Customer {
            id: cust(),
            email: Some(email.into()),
            first_name: None,
            last_name: None,
            created_at: None,
            updated_at: t,
            email_consent: MarketingConsent::Subscribed,
            tags: vec![],
            sms_consent: MarketingConsent::Unknown,
        })
    };
    assert_eq!(s.apply(&mk(datetime!(2026-05-02 0:00 UTC), "new@example.org")), Applied::Changed);
    assert!(matches!(s.apply(&mk(datetime!(2026-05-01 0:00 UTC), "old@example.org")), Applied::Stale { .. }));
    assert_eq!(s.email.as_deref(), Some("new@example.org"));
    let mut other = order("7", datetime!(2026-05-02 10:00 UTC), "1.00");
    other.customer = Some("shopify:1".parse().unwrap());
    assert_eq!(s.apply(&Event::OrderUpserted(other)), Applied::NotApplicable);
}

fn customer(updated: Timestamp, tags: &[&str], sms: MarketingConsent) -> Event {
    Event::CustomerUpserted(Customer {
        id: cust(),
        email: Some("lena@example.org".into()),
        first_name: Some("Lena".into()),
        last_name: None,
        created_at: None,
        updated_at: updated,
        email_consent: MarketingConsent::NotSubscribed,
        tags: tags.iter().map(|t| t.to_string()).collect(),
        sms_consent: sms,
    })
}

#[test]
fn customer_update_sets_tags_and_sms_consent() {
    let mut s = CustomerState::new(cust());
    assert!(s.tags.is_empty());
    assert_eq!(s.sms_consent, MarketingConsent::Unknown);
    let first =
        customer(datetime!(2026-05-01 10:00 UTC), &["vip", "wholesale"], MarketingConsent::Subscribed);
    assert_eq!(s.apply(&first), Applied::Changed);
    assert_eq!(s.tags, ["vip", "wholesale"]);
    assert_eq!(s.sms_consent, MarketingConsent::Subscribed);
    assert_eq!(s.apply(&first), Applied::Unchanged, "the same record again changes nothing");
    assert_eq!(s.revision, 1);

    // A newer record replaces the whole tag set and the SMS consent.
    let newer =
        customer(datetime!(2026-05-02 10:00 UTC), &["wholesale", "eu"], MarketingConsent::Unsubscribed);
    assert_eq!(s.apply(&newer), Applied::Changed);
    assert_eq!(s.tags, ["wholesale", "eu"]);
    assert_eq!(s.sms_consent, MarketingConsent::Unsubscribed);
}

#[test]
fn a_newer_record_with_only_its_tags_changed_is_a_change() {
    let mut s = CustomerState::new(cust());
    s.apply(&customer(datetime!(2026-05-01 10:00 UTC), &["vip"], MarketingConsent::Subscribed));
    let same_time = customer(datetime!(2026-05-01 10:00 UTC), &["vip", "eu"], MarketingConsent::Subscribed);
    assert_eq!(s.apply(&same_time), Applied::Changed, "equal updated_at applies, as for the other fields");
    assert_eq!(s.tags, ["vip", "eu"]);
}

#[test]
fn an_empty_tag_set_removes_the_tags_and_unknown_sms_consent_keeps_the_stored_one() {
    let mut s = CustomerState::new(cust());
    s.apply(&customer(datetime!(2026-05-01 10:00 UTC), &["vip"], MarketingConsent::Subscribed));
    assert_eq!(
        s.apply(&customer(datetime!(2026-05-02 10:00 UTC), &[], MarketingConsent::Unknown)),
        Applied::Changed
    );
    assert!(s.tags.is_empty(), "the record carries the whole set: the last tag was removed");
    assert_eq!(s.sms_consent, MarketingConsent::Subscribed, "Unknown says nothing, like email consent");
}

#[test]
fn a_stale_customer_update_sets_neither_tags_nor_sms_consent() {
    let mut s = CustomerState::new(cust());
    s.apply(&customer(datetime!(2026-05-02 10:00 UTC), &["vip"], MarketingConsent::Subscribed));
    let stale = customer(datetime!(2026-05-01 10:00 UTC), &["churned"], MarketingConsent::Unsubscribed);
    assert!(matches!(s.apply(&stale), Applied::Stale { .. }));
    assert_eq!(s.tags, ["vip"]);
    assert_eq!(s.sms_consent, MarketingConsent::Subscribed);
    assert_eq!(s.revision, 1);
    let stale_empty = customer(datetime!(2026-05-01 11:00 UTC), &[], MarketingConsent::Pending);
    assert!(matches!(s.apply(&stale_empty), Applied::Stale { .. }));
    assert_eq!(s.tags, ["vip"]);
}

#[test]
fn a_state_stored_before_tags_and_sms_consent_still_loads() {
    let stored = r#"{"v":1,"customer":"shopify:880012","email":"lena@example.org","first_name":"Lena",
        "last_name":null,"consent":"subscribed","profile_updated_at":"2026-05-01T10:00:00Z",
        "orders":{},"open_checkouts":{},"revision":3}"#;
    let mut s: CustomerState = serde_json::from_str(stored).unwrap();
    assert_eq!(s.v, STATE_SCHEMA_VERSION);
    assert_eq!(s.consent, MarketingConsent::Subscribed);
    assert!(s.tags.is_empty());
    assert_eq!(s.sms_consent, MarketingConsent::Unknown);
    assert_eq!(s.revision, 3);
    // The next customer record fills them in, and the state round-trips with them.
    s.apply(&customer(datetime!(2026-05-02 10:00 UTC), &["vip"], MarketingConsent::Pending));
    let json = serde_json::to_string(&s).unwrap();
    assert_eq!(serde_json::from_str::<CustomerState>(&json).unwrap(), s);
    assert_eq!(s.tags, ["vip"]);
    assert_eq!(s.sms_consent, MarketingConsent::Pending);
}

use proptest::prelude::*;

proptest! {
    /// Applying the same set of order versions in any order converges to the same state aggregates.
    #[test]
    fn fold_converges_regardless_of_delivery_order(perm in Just((0..6usize).collect::<Vec<_>>()).prop_shuffle()) {
        let versions: Vec<Event> = (0..6)
            .map(|i| {
                let t = datetime!(2026-05-01 10:00 UTC) + time::Duration::minutes(i as i64);
                Event::OrderUpserted(order(&format!("{}", i % 2), t, &format!("{}.00", 10 + i)))
            })
            .collect();
        let mut a = CustomerState::new(cust());
        for v in &versions { a.apply(v); }
        let mut b = CustomerState::new(cust());
        for &i in &perm { b.apply(&versions[i]); }
        prop_assert_eq!(a.orders, b.orders);
    }
}
