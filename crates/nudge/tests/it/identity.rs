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
        part: None,
    }
}

async fn run(events: &[Event], batch_size: usize) -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path(), Durability::Full).expect("store opens"));
    for (n, ev) in events.iter().enumerate() {
        store.commit_delivery(delivery(n, ev)).await.expect("delivery commits");
    }
    let pipeline = pipeline(&store, batch_size, None);
    while pipeline.step().await.expect("a batch processes").0 > 0 {}
    (store, dir)
}

/// A pipeline with the built-in flows over `store`, processing `share`'s partitions (or everything).
fn pipeline(
    store: &Arc<dyn Store>,
    batch_size: usize,
    share: Option<nudge::pipeline::ProcessingShare>,
) -> Pipeline {
    let policy = nudge_policy::PolicyConfig::default();
    let flows = nudge_policy::flows::FlowSet::compile(
        &nudge_policy::flows::FlowSet::default_specs(&["klaviyo"], &policy),
        &["klaviyo"],
    )
    .expect("the built-in flows compile");
    Pipeline {
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
        share,
        processed_latency: None,
    }
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

/// A storefront view of `product` by `customer` (the visitor's or the customer's own id), `n` minutes ago.
fn view_of(customer: CustomerId, visitor: &str, product: &str, minutes_ago: i64) -> Event {
    let Event::Behaviour(mut b) = view(1, customer) else { unreachable!() };
    b.anonymous_id = Some(visitor.into());
    b.message_id = Some(format!("m-{visitor}-{product}"));
    b.at = now() - time::Duration::minutes(minutes_ago);
    b.products = vec![BehaviourProduct { product_id: Some(product.into()), ..Default::default() }];
    Event::Behaviour(b)
}

fn identify_of(customer: &CustomerId, visitor: &CustomerId, minutes_ago: i64) -> Event {
    let Event::Identified(mut i) = identify() else { unreachable!() };
    i.customer = customer.clone();
    i.links = vec![visitor.clone()];
    i.email = None;
    i.message_id = Some(format!("id-{customer}"));
    i.at = now() - time::Duration::minutes(minutes_ago);
    Event::Identified(i)
}

/// Two nodes processing their partitions at once, each holding one of two ids of the same people (a
/// visitor's and the customer's own): every view, before and after the visitor is identified, ends up in the
/// customer's one state. The visitor's deliveries and the customer's are processed by different pipelines at
/// the same time, so they write the same state; a commit computed from a state the other wrote meanwhile is
/// refused and computed again, never applied over it. Runs on PostgreSQL (`NUDGE_TEST_POSTGRES_URL`).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_processing_nodes_never_overwrite_a_stitched_customer() {
    let Some(url) = nudge_store::conformance::postgres_test_url() else { return };
    let pg = nudge_store::conformance::fresh_postgres(&url, "nudge_stitch").await;
    let store: Arc<dyn Store> = pg.clone();
    const OF: u32 = 2;
    // People whose two ids fall in different partitions.
    let people: Vec<(CustomerId, CustomerId)> = (0..400)
        .map(|i| (format!("anon:v{i}").parse().unwrap(), format!("shopify:{}", 5000 + i).parse().unwrap()))
        .filter(|(a, k): &(CustomerId, CustomerId)| {
            nudge_store::partition_of(&a.to_string(), OF) != nudge_store::partition_of(&k.to_string(), OF)
        })
        .take(30)
        .collect();
    assert_eq!(people.len(), 30);
    let mut events = Vec::new();
    for (a, k) in &people {
        let visitor = a.to_string().trim_start_matches("anon:").to_string();
        events.push(view_of(a.clone(), &visitor, "before", 60));
        events.push(identify_of(k, a, 50));
        for r in 0..4 {
            events.push(view_of(a.clone(), &visitor, &format!("visitor-{r}"), 40 - r));
            events.push(view_of(k.clone(), &visitor, &format!("own-{r}"), 30 - r));
        }
    }
    for (n, ev) in events.iter().enumerate() {
        store.commit_delivery(delivery(n, ev)).await.expect("delivery commits");
    }
    let node = |part: u32| {
        let share = nudge::pipeline::ProcessingShare { pg: pg.clone(), parts: vec![part] };
        Arc::new(pipeline(&store, 3, Some(share)))
    };
    let (a, b) = (node(0), node(1));
    // The leader's routing.
    let pending = pg.unrouted_deliveries(10_000).await.unwrap();
    let routes: Vec<(i64, u32)> = pending.iter().map(|d| (d.seq, a.route_of(d, OF))).collect();
    assert_eq!(pg.route_deliveries(&routes).await.unwrap(), events.len() as u64);

    let (stop, rx) = tokio::sync::watch::channel(false);
    let wake = Arc::new(tokio::sync::Notify::new());
    let outbox = Arc::new(tokio::sync::Notify::new());
    let ta = tokio::spawn(a.run(wake.clone(), outbox.clone(), rx.clone()));
    let tb = tokio::spawn(b.run(wake.clone(), outbox.clone(), rx));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while store.backlog().await.unwrap().0 > 0 {
        assert!(tokio::time::Instant::now() < deadline, "the two nodes drain the log");
        wake.notify_waiters();
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    ta.await.unwrap();
    tb.await.unwrap();

    let mut want: Vec<String> = vec!["before".into()];
    want.extend((0..4).flat_map(|r| [format!("visitor-{r}"), format!("own-{r}")]));
    want.sort();
    for (visitor, customer) in &people {
        let s = state(&store, customer).await.expect("the customer's state");
        let mut seen = viewed(&s);
        seen.sort();
        seen.dedup();
        assert_eq!(seen, want, "{customer}: every view of both ids, none lost");
        assert!(state(&store, visitor).await.is_none(), "{visitor} is merged away, not written again");
    }
    pg.drop_schema().await.unwrap();
}
