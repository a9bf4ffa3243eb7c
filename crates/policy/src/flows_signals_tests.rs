//! Triggers, facts and suppression for behaviour, reviews, loyalty and engagement.

use super::*;
use nudge_model::{
    Behaviour, BehaviourProduct, CustomerId, Engagement, Loyalty, Review, ReviewSentiment, Score, Segment,
};
use time::macros::datetime;

const NOW: Timestamp = datetime!(2026-05-10 10:00 UTC);

fn customer() -> CustomerId {
    "shopify:42".parse().unwrap()
}

fn scores() -> ScoreSet {
    ScoreSet {
        scores: vec![Score {
            name: "churn_risk".into(),
            value: 20.0,
            model_id: "rules".into(),
            model_version: "v1".into(),
            explanation: String::new(),
        }],
        segment: Segment::Active,
        model_version: "v1".into(),
        labels: Default::default(),
        products: Vec::new(),
        scored_at: NOW,
        adopted_segments: None,
    }
}

fn behaviour(
    kind: BehaviourKind,
    id: &str,
    product: Option<&str>,
    query: Option<&str>,
    at: Timestamp,
) -> Event {
    Event::Behaviour(Behaviour {
        customer: customer(),
        anonymous_id: None,
        email: None,
        kind,
        name: kind.as_str().into(),
        message_id: Some(id.into()),
        at,
        products: product
            .map(|p| vec![BehaviourProduct { product_id: Some(p.into()), ..Default::default() }])
            .unwrap_or_default(),
        cart_id: None,
        order_id: None,
        query: query.map(Into::into),
        value: None,
        url: None,
        properties: serde_json::Value::Null,
        context: Default::default(),
    })
}

fn review(rating: u8, compound: f64) -> Event {
    Event::ReviewPosted(Review {
        customer: customer(),
        email: None,
        review_id: "yotpo:app:1".into(),
        product_id: Some("p1".into()),
        rating: Some(rating),
        title: None,
        body: "b".into(),
        published: true,
        sentiment: Some(ReviewSentiment { compound, themes: vec![] }),
        created_at: NOW - time::Duration::hours(1),
        updated_at: NOW - time::Duration::hours(1),
    })
}

fn loyalty(points: i64, tier: &str, at: Timestamp) -> Event {
    Event::LoyaltyChanged(Loyalty {
        customer: customer(),
        email: None,
        program: "smile".into(),
        member_id: "m".into(),
        points: Some(points),
        tier: Some(tier.into()),
        state: None,
        updated_at: at,
    })
}

fn engagement(id: &str, kind: EngagementKind, machine: bool, at: Timestamp) -> Event {
    Event::Engagement(Engagement {
        customer: customer(),
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

fn state(events: &[Event]) -> CustomerState {
    let mut st = CustomerState::new(customer());
    st.consent = MarketingConsent::Subscribed;
    for e in events {
        st.apply(e);
    }
    st
}

fn flow(trigger: &str, when: &str, actions: serde_json::Value) -> FlowSet {
    let spec: FlowSpec = serde_json::from_value(serde_json::json!({
        "name": "f", "trigger": trigger, "when": when, "actions": actions,
    }))
    .unwrap();
    FlowSet::compile(&[spec], &["klaviyo", "slack"]).unwrap()
}

fn track() -> serde_json::Value {
    serde_json::json!([{"type": "track_event", "destination": "klaviyo", "metric": "M"}])
}

fn decide(set: &FlowSet, ev: &Event, st: &CustomerState) -> FlowOutcome {
    let triggers = Trigger::of_event(ev, true);
    let out = set.decide(&DecideContext {
        event: ev,
        triggers: &triggers,
        state: st,
        scores: &scores(),
        history: &FlowHistory::new(),
        now: NOW,
        policy: &PolicyConfig::default(),
        approvals_so_far: &no_approvals,
        learners: &crate::offers::NO_LEARNERS,
    });
    out.into_iter().next().unwrap_or_else(|| panic!("no flow listens to {triggers:?}"))
}

#[test]
fn each_signal_fires_its_trigger() {
    let t = NOW - time::Duration::hours(1);
    let cases = [
        (behaviour(BehaviourKind::ProductViewed, "1", Some("p"), None, t), Some(Trigger::ProductViewed)),
        (behaviour(BehaviourKind::ProductAdded, "2", Some("p"), None, t), Some(Trigger::ProductAdded)),
        (behaviour(BehaviourKind::CartViewed, "3", None, None, t), Some(Trigger::CartViewed)),
        (behaviour(BehaviourKind::Search, "4", None, Some("boots"), t), Some(Trigger::Search)),
        (behaviour(BehaviourKind::PageViewed, "5", None, None, t), None),
        (review(5, 0.8), Some(Trigger::ReviewPosted)),
        (loyalty(10, "gold", t), Some(Trigger::LoyaltyChanged)),
        (engagement("o", EngagementKind::Opened, false, t), Some(Trigger::EmailOpened)),
        (engagement("m", EngagementKind::Opened, true, t), None),
        (engagement("c", EngagementKind::Clicked, false, t), Some(Trigger::EmailClicked)),
        (engagement("u", EngagementKind::Unsubscribed, false, t), Some(Trigger::Unsubscribed)),
        (engagement("s", EngagementKind::SpamComplaint, false, t), Some(Trigger::Unsubscribed)),
        (engagement("d", EngagementKind::Delivered, false, t), None),
    ];
    for (ev, expected) in cases {
        let mut want: Vec<Trigger> = expected.into_iter().collect();
        // Behaviour and engagement are too frequent to start the profile sync.
        if !matches!(ev, Event::Behaviour(_) | Event::Engagement(_)) {
            want.push(Trigger::StateChanged);
        }
        assert_eq!(Trigger::of_event(&ev, true), want, "{}", ev.kind());
    }
    for (name, t) in [
        ("product_viewed", Trigger::ProductViewed),
        ("product_added", Trigger::ProductAdded),
        ("cart_viewed", Trigger::CartViewed),
        ("search", Trigger::Search),
        ("review_posted", Trigger::ReviewPosted),
        ("loyalty_changed", Trigger::LoyaltyChanged),
        ("email_opened", Trigger::EmailOpened),
        ("email_clicked", Trigger::EmailClicked),
        ("unsubscribed", Trigger::Unsubscribed),
    ] {
        assert_eq!(t.as_str(), name);
        assert_eq!(serde_json::from_value::<Trigger>(name.into()).unwrap(), t);
    }
}

#[test]
fn browse_fields_list_the_last_weeks_products_and_event_fields_name_the_event() {
    let old =
        behaviour(BehaviourKind::ProductViewed, "0", Some("p-old"), None, NOW - time::Duration::days(8));
    let v1 = behaviour(BehaviourKind::ProductViewed, "1", Some("p1"), None, NOW - time::Duration::days(2));
    let add = behaviour(BehaviourKind::ProductAdded, "2", Some("p1"), None, NOW - time::Duration::days(1));
    let st = state(&[old.clone(), v1.clone(), add.clone()]);
    let set = flow(
        "product_added",
        r#""p1" in customer.viewed_products_7d && !("p-old" in customer.viewed_products_7d)
           && customer.added_to_cart_7d == ["p1"] && event.name == "product_added" && event.product_ids == ["p1"]
           && !has(event.query)"#,
        track(),
    );
    assert_eq!(decide(&set, &add, &st).status, Status::Live);
    let search = behaviour(BehaviourKind::Search, "3", None, Some("red boots"), NOW);
    let set = flow("search", r#"event.query.contains("boots")"#, track());
    assert_eq!(decide(&set, &search, &state(std::slice::from_ref(&search))).status, Status::Live);
}

#[test]
fn review_fields_read_the_newest_review_and_alerts_go_for_negative_ones() {
    let ev = review(1, -0.8);
    let st = state(std::slice::from_ref(&ev));
    let set = flow(
        "review_posted",
        "event.rating <= 2 && event.sentiment < -0.5 && customer.last_review_rating == 1 \
         && customer.last_review_sentiment < -0.5 && customer.negative_reviews == 1",
        serde_json::json!([{"type": "slack_alert", "destination": "slack", "text": "'negative review'"}]),
    );
    let o = decide(&set, &ev, &st);
    assert_eq!(o.status, Status::Live, "{o:?}");
    assert!(matches!(&o.actions[0].1, Action::Alert { text, .. } if text == "negative review"));
    // Without reviews the review fields are absent.
    let none = state(&[]);
    let probe = flow("review_posted", "has(customer.last_review_rating)", track());
    assert_eq!(decide(&probe, &ev, &none).status, Status::NotMatched);
}

#[test]
fn loyalty_fields_and_points_change() {
    let first = loyalty(100, "silver", NOW - time::Duration::days(1));
    let second = loyalty(350, "gold", NOW);
    let st = state(&[first, second.clone()]);
    let set = flow(
        "loyalty_changed",
        r#"customer.loyalty_points == 350 && customer.loyalty_tier == "gold" && event.points_change == 250"#,
        track(),
    );
    assert_eq!(decide(&set, &second, &st).status, Status::Live);
    let probe = flow("review_posted", "has(customer.loyalty_tier) || has(event.points_change)", track());
    assert_eq!(decide(&probe, &review(4, 0.2), &state(&[])).status, Status::NotMatched);
}

#[test]
fn engagement_fields_rates_and_last_engagement() {
    let t = NOW - time::Duration::days(3);
    let mut evs: Vec<Event> =
        (0..4).map(|i| engagement(&format!("d{i}"), EngagementKind::Delivered, false, t)).collect();
    evs.push(engagement("o1", EngagementKind::Opened, false, t));
    evs.push(engagement("o2", EngagementKind::Opened, true, t));
    let click = engagement("c1", EngagementKind::Clicked, false, t);
    evs.push(click.clone());
    let st = state(&evs);
    let set = flow(
        "email_clicked",
        "customer.email_open_rate_90d == 0.25 && customer.email_click_rate_90d == 0.25 \
         && customer.last_engaged_at < timestamp(\"2026-05-08T00:00:00Z\") && !customer.suppressed",
        track(),
    );
    assert_eq!(decide(&set, &click, &st).status, Status::Live);
    let probe =
        flow("email_clicked", "has(customer.email_open_rate_90d) || has(customer.last_engaged_at)", track());
    assert_eq!(decide(&probe, &click, &state(&[])).status, Status::NotMatched);
}

#[test]
fn a_suppressed_customer_gets_no_marketing_but_alerts_still_go() {
    let unsub = engagement("u", EngagementKind::Unsubscribed, false, NOW - time::Duration::hours(2));
    let ev = review(1, -0.9);
    let st = state(&[unsub.clone(), ev.clone()]);
    let marketing = flow("review_posted", "true", track());
    let o = decide(&marketing, &ev, &st);
    assert_eq!(o.status, Status::Suppressed);
    assert_eq!(o.status.as_str(), "suppressed");
    assert!(o.reason.contains("unsubscribed (klaviyo)"), "{}", o.reason);
    assert!(o.actions.is_empty() && !o.acted());
    let both = flow(
        "review_posted",
        "customer.suppressed",
        serde_json::json!([
            {"type": "track_event", "destination": "klaviyo", "metric": "M"},
            {"type": "slack_alert", "destination": "slack", "text": "'look'"}
        ]),
    );
    let o = decide(&both, &ev, &st);
    assert_eq!(o.status, Status::Live, "{o:?}");
    assert_eq!(o.actions.len(), 1);
    assert!(matches!(o.actions[0].1, Action::Alert { .. }));
    // The unsubscribe itself fires `unsubscribed`, and a flow on it may still remove from a list.
    let rm = flow(
        "unsubscribed",
        "true",
        serde_json::json!([{"type": "remove_from_list", "destination": "klaviyo", "list_id": "L1"}]),
    );
    assert_eq!(decide(&rm, &unsub, &st).status, Status::Live);
}
