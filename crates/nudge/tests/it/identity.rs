//! Identity stitching through the processing worker: anonymous visitors, storefront users and email-only
//! keys resolved to, and merged into, the customer they turn out to be.

use nudge::pipeline::{Pipeline, Scoring};
use nudge_model::{
    Behaviour, BehaviourKind, BehaviourProduct, Customer, CustomerId, Event, Identity, MarketingConsent,
    Review, TraceId,
};
use nudge_state::CustomerState;
use nudge_store::sqlite::{Durability, SqliteStore};
use nudge_store::{NewDelivery, Store};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn anon() -> CustomerId {
    "anon:visitor-7".parse().unwrap()
}

fn known() -> CustomerId {
    "shopify:880012".parse().unwrap()
}

fn view(n: u32, customer: CustomerId) -> Event {
    Event::Behaviour(Behaviour {
        customer,
        anonymous_id: Some("visitor-7".into()),
        email: None,
        kind: BehaviourKind::ProductViewed,
        name: "Product Viewed".into(),
        message_id: Some(format!("m-{n}")),
        at: now() - time::Duration::hours(i64::from(10 - n)),
        products: vec![BehaviourProduct { product_id: Some(format!("p{n}")), ..Default::default() }],
        cart_id: None,
        order_id: None,
        query: None,
        value: None,
        url: None,
        properties: serde_json::Value::Null,
        context: Default::default(),
    })
}

fn identify() -> Event {
    Event::Identified(Identity {
        customer: known(),
        links: vec![anon()],
        email: Some("lena@example.org".into()),
        phone: None,
        first_name: Some("Lena".into()),
        last_name: None,
        email_consent: MarketingConsent::Unknown,
        sms_consent: MarketingConsent::Unknown,
        message_id: Some("id-1".into()),
        at: now() - time::Duration::hours(5),
    })
}

fn delivery(n: usize, ev: &Event) -> NewDelivery {
    NewDelivery {
        trace_id: TraceId::new(),
        source: "timer".into(),
        topic: ev.kind().into(),
        shop: None,
        webhook_id: None,
        event_id: None,
        received_at_ms: 1_000 + n as i64,
        headers_json: "{}".into(),
        body: serde_json::to_vec(ev).unwrap(),
        dedupe_keys: vec![format!("test:{n}")],
    }
}

async fn run(events: &[Event], batch_size: usize) -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path(), Durability::Full).expect("store opens"));
    for (n, ev) in events.iter().enumerate() {
        store.commit_delivery(delivery(n, ev)).await.expect("delivery commits");
    }
    let policy = nudge_policy::PolicyConfig::default();
    let flows = nudge_policy::flows::FlowSet::compile(
        &nudge_policy::flows::FlowSet::default_specs(&["klaviyo"], &policy),
        &["klaviyo"],
    )
    .expect("the built-in flows compile");
    let pipeline = Pipeline {
        store: store.clone(),
        scoring: Arc::new(Scoring::new(nudge_scoring::RulesScorer::default())),
        policy,
        flows: Arc::new(nudge::pipeline::Flows::new(flows)),
        abandon_after: Duration::from_secs(3600),
        batch_size,
        approval_counts: Default::default(),
        sources: Arc::new(nudge_ingest::source::Registry::new()),
        browse_retention: Duration::from_secs(30 * 86_400),
        offers: Default::default(),
        share: None,
    };
    while pipeline.step().await.expect("a batch processes").0 > 0 {}
    (store, dir)
}

async fn state(store: &Arc<dyn Store>, c: &CustomerId) -> Option<CustomerState> {
    let s = store.load_states(std::slice::from_ref(c)).await.unwrap();
    s.first().map(|s| CustomerState::decode(&s.state).unwrap())
}

fn viewed(s: &CustomerState) -> Vec<String> {
    s.browse.iter().filter_map(|e| e.product_id.clone()).collect()
}

#[tokio::test]
async fn anonymous_views_then_identify_make_one_customer_with_the_views() {
    let events = [view(1, anon()), view(2, anon()), identify()];
    // One batch (the merge within it) and one delivery per batch (the merge across commits).
    for batch_size in [10, 1] {
        let (store, _dir) = run(&events, batch_size).await;
        assert!(state(&store, &anon()).await.is_none(), "the visitor's state is merged away ({batch_size})");
        let s = state(&store, &known()).await.expect("the customer's state");
        assert_eq!(viewed(&s), ["p1", "p2"], "batch size {batch_size}");
        assert!(s.aliases.contains("anon:visitor-7"));
        assert_eq!(s.first_name.as_deref(), Some("Lena"));
        let aliases: Vec<String> =
            store.aliases_of(&known()).await.unwrap().into_iter().map(|a| a.alias).collect();
        let email_key = CustomerId::for_email("lena@example.org").unwrap().to_string();
        assert_eq!(aliases, ["anon:visitor-7".to_string(), email_key]);
        let trail = store.customer_audit(&known(), 100).await.unwrap();
        let merge =
            trail.iter().find(|r| r.detail.get("merged_from").is_some()).expect("the merge is audited");
        assert_eq!(merge.detail["merged_from"], "anon:visitor-7");
        assert_eq!(merge.detail["into"], "shopify:880012");
        assert!(
            !serde_json::to_string(&trail).unwrap().contains("lena@example.org"),
            "no email in the audit"
        );
    }
}

#[tokio::test]
async fn views_under_the_anonymous_id_after_identify_go_to_the_customer() {
    let events = [identify(), view(3, anon()), view(4, anon())];
    for batch_size in [10, 1] {
        let (store, _dir) = run(&events, batch_size).await;
        assert!(state(&store, &anon()).await.is_none(), "no state is made for the visitor ({batch_size})");
        let s = state(&store, &known()).await.expect("the customer's state");
        assert_eq!(viewed(&s), ["p3", "p4"], "batch size {batch_size}");
    }
}

#[tokio::test]
async fn an_email_only_review_merges_into_the_shopify_customer_with_that_email() {
    let email_key = CustomerId::for_email("lena@example.org").unwrap();
    let t = now() - time::Duration::days(1);
    let review = Event::ReviewPosted(Review {
        customer: email_key.clone(),
        email: Some("Lena@Example.org".into()),
        review_id: "yotpo:app:219".into(),
        product_id: Some("p1".into()),
        rating: Some(2),
        title: None,
        body: "Seams split.".into(),
        published: true,
        sentiment: None,
        created_at: t,
        updated_at: t,
    });
    let customer = Event::CustomerUpserted(Customer {
        id: known(),
        email: Some("lena@example.org".into()),
        first_name: None,
        last_name: None,
        created_at: Some(t),
        updated_at: t + time::Duration::hours(1),
        email_consent: MarketingConsent::Subscribed,
        tags: vec![],
        sms_consent: MarketingConsent::Unknown,
    });
    for batch_size in [10, 1] {
        let (store, _dir) = run(&[review.clone(), customer.clone()], batch_size).await;
        assert!(state(&store, &email_key).await.is_none(), "the email-only state is merged away");
        let s = state(&store, &known()).await.expect("the customer's state");
        let r = s.review_summary();
        assert_eq!((r.count, r.negative, r.last_rating), (1, 1, Some(2)), "batch size {batch_size}");
        // A later review by email only now resolves to the customer directly.
        assert_eq!(store.customer_by_email("lena@example.org").await.unwrap(), Some(known()));
    }
}
