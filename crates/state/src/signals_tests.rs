use super::*;
use nudge_model::{
    Behaviour, BehaviourKind, BehaviourProduct, Engagement, EngagementKind, Identity, Loyalty, Review,
    ReviewSentiment,
};
use time::macros::datetime;

fn cust() -> CustomerId {
    "shopify:880012".parse().unwrap()
}

fn view(id: &str, product: &str, at: Timestamp) -> Event {
    Event::Behaviour(Behaviour {
        customer: cust(),
        anonymous_id: None,
        email: None,
        kind: BehaviourKind::ProductViewed,
        name: "Product Viewed".into(),
        message_id: Some(id.into()),
        at,
        products: vec![BehaviourProduct { product_id: Some(product.into()), ..Default::default() }],
        cart_id: None,
        order_id: None,
        query: None,
        value: None,
        url: None,
        properties: serde_json::Value::Null,
    })
}

fn review(id: &str, rating: u8, compound: Option<f64>, created: Timestamp, updated: Timestamp) -> Event {
    Event::ReviewPosted(Review {
        customer: cust(),
        email: None,
        review_id: id.into(),
        product_id: Some("p1".into()),
        rating: Some(rating),
        title: None,
        body: "text".into(),
        published: true,
        sentiment: compound.map(|c| ReviewSentiment { compound: c, themes: vec![] }),
        created_at: created,
        updated_at: updated,
    })
}

fn loyalty(points: i64, tier: Option<&str>, at: Timestamp) -> Event {
    Event::LoyaltyChanged(Loyalty {
        customer: cust(),
        email: None,
        program: "smile".into(),
        member_id: "m1".into(),
        points: Some(points),
        tier: tier.map(Into::into),
        state: Some("member".into()),
        updated_at: at,
    })
}

fn engagement(id: &str, kind: EngagementKind, machine: bool, at: Timestamp) -> Event {
    Event::Engagement(Engagement {
        customer: cust(),
        email: None,
        kind,
        channel: "email".into(),
        platform: "klaviyo".into(),
        event_id: id.into(),
        campaign: None,
        url: None,
        machine,
        at,
    })
}

#[test]
fn browse_views_are_kept_in_time_order_once_and_bounded() {
    let mut s = CustomerState::new(cust());
    assert_eq!(s.apply(&view("m2", "p2", datetime!(2026-05-02 10:00 UTC))), Applied::Changed);
    assert_eq!(s.apply(&view("m1", "p1", datetime!(2026-05-01 10:00 UTC))), Applied::Changed);
    assert_eq!(s.apply(&view("m1", "p1", datetime!(2026-05-01 10:00 UTC))), Applied::Unchanged);
    assert_eq!(s.browse.iter().map(|e| e.product_id.clone().unwrap()).collect::<Vec<_>>(), ["p1", "p2"]);
    let since = datetime!(2026-05-01 12:00 UTC);
    assert_eq!(s.browsed_products(BrowseKind::Viewed, since), ["p2"]);
    for i in 0..250 {
        s.apply(&view(&format!("x{i}"), "p3", datetime!(2026-05-03 00:00 UTC) + time::Duration::minutes(i)));
    }
    assert_eq!(s.browse.len(), MAX_BROWSE_ENTRIES);
    // Older than all a full list keeps: dropped, the state unchanged.
    assert_eq!(s.apply(&view("old", "p9", datetime!(2026-04-01 10:00 UTC))), Applied::Unchanged);
    assert!(s.prune_browse(datetime!(2026-05-03 03:00 UTC)));
    assert!(s.browse.iter().all(|e| e.at >= datetime!(2026-05-03 03:00 UTC)));
}

#[test]
fn reviews_keep_the_newest_version_and_count_negatives() {
    let mut s = CustomerState::new(cust());
    let t1 = datetime!(2026-05-01 10:00 UTC);
    let t2 = datetime!(2026-05-02 10:00 UTC);
    // The update arrives before the original.
    assert_eq!(s.apply(&review("r1", 1, Some(-0.7), t1, t2)), Applied::Changed);
    assert!(matches!(s.apply(&review("r1", 5, Some(0.8), t1, t1)), Applied::Stale { .. }));
    assert_eq!(s.apply(&review("r1", 1, Some(-0.7), t1, t2)), Applied::Unchanged);
    assert_eq!(s.apply(&review("r2", 4, Some(0.5), t2, t2)), Applied::Changed);
    let sum = s.review_summary();
    assert_eq!(sum.count, 2);
    assert_eq!(sum.negative, 1);
    assert_eq!(sum.last_rating, Some(4));
    assert_eq!(sum.last_sentiment, Some(0.5));
    assert_eq!(sum.last_review_at, Some(t2));
    // An edit of r1 that makes it positive replaces it.
    assert_eq!(s.apply(&review("r1", 5, Some(0.9), t1, datetime!(2026-05-03 10:00 UTC))), Applied::Changed);
    assert_eq!(s.review_summary().negative, 0);
}

#[test]
fn loyalty_unchanged_standing_is_unchanged_and_older_is_stale() {
    let mut s = CustomerState::new(cust());
    let t1 = datetime!(2026-05-01 10:00 UTC);
    let t2 = datetime!(2026-05-02 10:00 UTC);
    assert_eq!(s.apply(&loyalty(100, None, t1)), Applied::Changed);
    assert_eq!(s.loyalty.as_ref().unwrap().last_points_change, Some(100));
    assert_eq!(s.apply(&loyalty(100, None, t2)), Applied::Unchanged);
    assert_eq!(s.apply(&loyalty(250, Some("gold"), t2)), Applied::Changed);
    let l = s.loyalty.clone().unwrap();
    assert_eq!((l.points, l.tier.as_deref(), l.last_points_change), (Some(250), Some("gold"), Some(150)));
    assert!(matches!(s.apply(&loyalty(50, None, t1)), Applied::Stale { .. }));
    assert_eq!(s.revision, 2);
}

#[test]
fn engagement_dedupes_counts_rates_and_suppresses() {
    let mut s = CustomerState::new(cust());
    let t = datetime!(2026-05-01 09:30 UTC);
    for i in 0..4 {
        s.apply(&engagement(&format!("d{i}"), EngagementKind::Delivered, false, t));
    }
    assert_eq!(s.apply(&engagement("o1", EngagementKind::Opened, false, t)), Applied::Changed);
    assert_eq!(s.apply(&engagement("o1", EngagementKind::Opened, false, t)), Applied::Unchanged);
    s.apply(&engagement("o2", EngagementKind::Opened, true, t));
    s.apply(&engagement("c1", EngagementKind::Clicked, false, t + time::Duration::hours(1)));
    let now = datetime!(2026-05-10 00:00 UTC);
    assert_eq!(s.engagement.open_rate_90d(now), Some(0.25), "machine opens do not count");
    assert_eq!(s.engagement.click_rate_90d(now), Some(0.25));
    assert_eq!(s.engagement.open_rate_90d(datetime!(2026-09-01 00:00 UTC)), None, "outside 90 days");
    assert_eq!(s.engagement.open_hours[9], 1);
    assert_eq!(s.engagement.last_engaged_at, Some(t + time::Duration::hours(1)));
    assert!(!s.engagement.suppressed);
    // Two suppressions out of order: the first in time is kept.
    s.apply(&engagement("u2", EngagementKind::SpamComplaint, false, datetime!(2026-05-05 00:00 UTC)));
    s.apply(&engagement("u1", EngagementKind::Unsubscribed, false, datetime!(2026-05-03 00:00 UTC)));
    assert!(s.engagement.suppressed);
    assert_eq!(s.engagement.suppressed_at, Some(datetime!(2026-05-03 00:00 UTC)));
    assert_eq!(s.engagement.suppressed_reason.as_deref(), Some("unsubscribed (klaviyo)"));
}

#[test]
fn identify_links_aliases_and_fills_the_profile() {
    let mut s = CustomerState::new(cust());
    let t1 = datetime!(2026-05-01 10:00 UTC);
    let ident = |at, name: &str, consent| {
        Event::Identified(Identity {
            customer: cust(),
            links: vec!["anon:a-1".parse().unwrap()],
            email: Some("lena@example.org".into()),
            phone: Some("+4915112345678".into()),
            first_name: Some(name.into()),
            last_name: None,
            email_consent: consent,
            sms_consent: MarketingConsent::Unknown,
            message_id: None,
            at,
        })
    };
    assert_eq!(s.apply(&ident(t1, "Lena", MarketingConsent::Subscribed)), Applied::Changed);
    assert!(s.aliases.contains("anon:a-1"));
    assert!(s.aliases.contains(&CustomerId::for_email("lena@example.org").unwrap().to_string()));
    assert!(s.aliases.iter().any(|a| a.starts_with("phone:") && !a.contains("4915112345678")));
    assert_eq!(s.apply(&ident(t1, "Lena", MarketingConsent::Unknown)), Applied::Unchanged);
    assert_eq!(s.consent, MarketingConsent::Subscribed, "an unknown consent never overwrites");
    // An older identify does not overwrite a newer name.
    assert_eq!(
        s.apply(&ident(datetime!(2026-04-01 10:00 UTC), "L.", MarketingConsent::Unknown)),
        Applied::Unchanged
    );
    assert_eq!(s.first_name.as_deref(), Some("Lena"));
    assert_eq!(s.phone.as_deref(), Some("+4915112345678"));
}

#[test]
fn merge_keeps_the_history_of_both() {
    let anon: CustomerId = "anon:a-1".parse().unwrap();
    let mut visitor = CustomerState::new(anon.clone());
    let mut v = view("m1", "p1", datetime!(2026-05-01 10:00 UTC));
    v.set_customer(anon.clone());
    visitor.apply(&v);
    let mut r = review("r1", 2, None, datetime!(2026-05-01 10:00 UTC), datetime!(2026-05-01 10:00 UTC));
    r.set_customer(anon.clone());
    visitor.apply(&r);
    let mut e = engagement("u1", EngagementKind::Unsubscribed, false, datetime!(2026-05-01 11:00 UTC));
    e.set_customer(anon.clone());
    visitor.apply(&e);

    let mut s = CustomerState::new(cust());
    s.apply(&view("m2", "p2", datetime!(2026-05-02 10:00 UTC)));
    s.merge(visitor);
    assert_eq!(s.customer, cust());
    assert_eq!(s.browse.len(), 2);
    assert_eq!(s.review_summary().negative, 1);
    assert!(s.engagement.suppressed);
    assert!(s.aliases.contains("anon:a-1"));
    // Stored states from before these fields load.
    let old = r#"{"v":1,"customer":"shopify:1","email":null,"first_name":null,"last_name":null,
        "consent":"unknown","orders":{},"open_checkouts":{},"revision":3}"#;
    let st: CustomerState = serde_json::from_str(old).unwrap();
    assert!(st.browse.is_empty() && st.aliases.is_empty() && !st.engagement.suppressed);
}
