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
        context: Default::default(),
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
    // Older than all a full list keeps: dropped from the list; it only moves the first-seen time earlier.
    assert_eq!(s.apply(&view("old", "p9", datetime!(2026-04-01 10:00 UTC))), Applied::Changed);
    assert!(s.browse.iter().all(|e| e.product_id.as_deref() != Some("p9")));
    assert_eq!(s.acquisition.as_ref().unwrap().first_seen_at, Some(datetime!(2026-04-01 10:00 UTC)));
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

fn behaviour(
    id: &str,
    kind: BehaviourKind,
    products: &[(&str, Option<&str>)],
    context: nudge_model::VisitorContext,
    at: Timestamp,
) -> Event {
    let Event::Behaviour(mut b) = view(id, "x", at) else { unreachable!() };
    b.kind = kind;
    b.products = products
        .iter()
        .map(|(p, c)| BehaviourProduct {
            product_id: Some(p.to_string()),
            category: c.map(str::to_string),
            ..Default::default()
        })
        .collect();
    b.context = context;
    Event::Behaviour(b)
}

fn ctx(source: Option<&str>, country: Option<&str>, offset: Option<i16>) -> nudge_model::VisitorContext {
    nudge_model::VisitorContext {
        source: source.map(Into::into),
        country: country.map(Into::into),
        device: None,
        utc_offset_minutes: offset,
    }
}

#[test]
fn human_engagement_is_counted_per_channel_and_hour_without_machine_opens() {
    let mut s = CustomerState::new(cust());
    s.apply(&engagement("o1", EngagementKind::Opened, false, datetime!(2026-05-01 09:10 UTC)));
    s.apply(&engagement("o2", EngagementKind::Opened, true, datetime!(2026-05-01 03:10 UTC)));
    s.apply(&engagement("c1", EngagementKind::Clicked, false, datetime!(2026-05-01 09:40 UTC)));
    s.apply(&engagement("d1", EngagementKind::Delivered, false, datetime!(2026-05-01 08:00 UTC)));
    let Event::Engagement(mut push) =
        engagement("p1", EngagementKind::Opened, false, datetime!(2026-05-02 19:00 UTC))
    else {
        unreachable!()
    };
    push.channel = "Push".into();
    s.apply(&Event::Engagement(push.clone()));
    s.apply(&Event::Engagement(push));
    let email = s.engagement.channel_hours["email"];
    assert_eq!((email[9], email[3], email.iter().sum::<u32>()), (2, 0, 2));
    assert_eq!(s.engagement.channel_hours["push"][19], 1);
    let mut other = CustomerState::new("anon:v1".parse().unwrap());
    other.apply(&Event::Engagement(Engagement {
        customer: "anon:v1".parse().unwrap(),
        ..match engagement("o9", EngagementKind::Opened, false, datetime!(2026-05-03 09:00 UTC)) {
            Event::Engagement(e) => e,
            _ => unreachable!(),
        }
    }));
    s.merge(other);
    assert_eq!(s.engagement.channel_hours["email"][9], 3);
}

#[test]
fn acquisition_facts_come_from_the_earliest_events_that_carry_them() {
    let mut s = CustomerState::new(cust());
    let t1 = datetime!(2026-05-01 10:00 UTC);
    let t2 = datetime!(2026-05-02 10:00 UTC);
    // The later event arrives first: its facts fill the empty acquisition.
    let later = behaviour(
        "b2",
        BehaviourKind::ProductViewed,
        &[("p2", Some("Shoes"))],
        ctx(Some("newsletter"), Some("DE"), Some(120)),
        t2,
    );
    assert_eq!(s.apply(&later), Applied::Changed);
    assert_eq!(s.utc_offset_minutes, Some(120));
    // The earlier one replaces the facts it carries and keeps the others.
    let earlier = behaviour(
        "b1",
        BehaviourKind::ProductViewed,
        &[("p1", Some(" Hats "))],
        ctx(Some("google"), None, Some(60)),
        t1,
    );
    assert_eq!(s.apply(&earlier), Applied::Changed);
    let a = s.acquisition.clone().unwrap();
    assert_eq!(a.first_seen_at, Some(t1));
    assert_eq!(a.source.as_deref(), Some("google"));
    assert_eq!(a.country.as_deref(), Some("DE"));
    assert_eq!(a.first_category.as_deref(), Some("Hats"));
    // The newest event's offset is the one kept.
    assert_eq!(s.utc_offset_minutes, Some(120));
    assert_eq!(s.apply(&earlier), Applied::Unchanged);
    // An order before both moves the first-seen time and keeps the facts (it carries none).
    let mut o = order_at(datetime!(2026-04-20 08:00 UTC));
    o.customer = Some(cust());
    assert_eq!(s.apply(&Event::OrderUpserted(o)), Applied::Changed);
    let a = s.acquisition.clone().unwrap();
    assert_eq!(
        (a.first_seen_at, a.source.as_deref()),
        (Some(datetime!(2026-04-20 08:00 UTC)), Some("google"))
    );
}

fn order_at(at: Timestamp) -> nudge_model::Order {
    nudge_model::Order {
        id: "o1".into(),
        name: None,
        customer: None,
        email: None,
        created_at: at,
        updated_at: at,
        cancelled_at: None,
        total: nudge_model::Money::parse("10.00", "EUR").unwrap(),
        financial_status: None,
        line_items: vec![],
        checkout_token: None,
        cart_token: None,
        accepts_marketing: None,
    }
}

#[test]
fn the_preferred_category_weighs_purchases_over_views_and_decays_with_age() {
    let mut s = CustomerState::new(cust());
    let now = datetime!(2026-06-01 00:00 UTC);
    assert_eq!(s.preferred_category(now), None);
    for i in 0..4 {
        s.apply(&behaviour(
            &format!("v{i}"),
            BehaviourKind::ProductViewed,
            &[("p1", Some("Hats"))],
            ctx(None, None, None),
            now - time::Duration::days(1),
        ));
    }
    // One purchase (weight 5) outweighs four fresh views (weight 4).
    s.apply(&behaviour(
        "o1",
        BehaviourKind::OrderCompleted,
        &[("p2", Some("Shoes")), ("p3", None)],
        ctx(None, None, None),
        now - time::Duration::days(1),
    ));
    let (c, w) = s.preferred_category(now).unwrap();
    assert_eq!(c, "Shoes");
    assert!((w - 5.0 * 0.5f64.powf(1.0 / 30.0)).abs() < 1e-12);
    assert_eq!(s.browse.iter().filter(|e| e.kind == BrowseKind::Purchased).count(), 2);
    // Sixty days later the same purchase is worth a quarter: four newer views win.
    let mut old = CustomerState::new(cust());
    old.apply(&behaviour(
        "o1",
        BehaviourKind::OrderCompleted,
        &[("p2", Some("Shoes"))],
        ctx(None, None, None),
        now - time::Duration::days(60),
    ));
    for i in 0..2 {
        old.apply(&behaviour(
            &format!("v{i}"),
            BehaviourKind::ProductViewed,
            &[("p1", Some("Hats"))],
            ctx(None, None, None),
            now,
        ));
    }
    assert_eq!(old.preferred_category(now).unwrap().0, "Hats");
}
