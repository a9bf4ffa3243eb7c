//! The BigCommerce fetcher against the fake BigCommerce store: the reads it makes, what each answer
//! becomes, and the rate limit obeyed.

use nudge_fetch::{BigCommerceFetchConfig, BigCommerceFetcher, FetchJob, FetchOutcome, Fetcher};
use nudge_ingest::bigcommerce::fixtures::{
    CartFixture, CustomerFixture, ItemFixture, OrderFixture, ProductFixture,
};
use nudge_ingest::source::{Parsed, Source, StoredView};
use nudge_testkit::{BigCommerceMode, FakeBigCommerce, FakeBigCommerceConfig, FakeBigCommerceHandle};
use std::time::{Duration, Instant};
use time::macros::datetime;

const TOKEN: &str = "fake-bigcommerce-token";

fn job(resource: &str, id: &str) -> FetchJob {
    FetchJob {
        carry: None,
        source: "bigcommerce".into(),
        shop: Some("abc123".into()),
        resource: resource.into(),
        id: id.into(),
        topic: format!("bigcommerce/fetched/{resource}"),
        notified_topic: format!("store/{resource}/updated"),
    }
}

async fn fake(quota: u32, window: Duration) -> FakeBigCommerceHandle {
    nudge_testkit::ensure_crypto_provider();
    let fake =
        FakeBigCommerce::start(FakeBigCommerceConfig { quota, window, ..Default::default() }).await.unwrap();
    let t = datetime!(2026-05-01 10:00 UTC);
    let order =
        OrderFixture::new(250, 7, Some("ana@example.com"), t).item(ItemFixture::new(1, "Mug", 2, "12.5000"));
    fake.seed_order("250", order.order_json(), order.products_json());
    fake.seed_cart(
        "c-1",
        CartFixture::new("c-1", 7, None, t).item(ItemFixture::new(1, "Mug", 1, "12.5")).fetched(),
    );
    fake.seed_customer("7", CustomerFixture::new(7, "ana@example.com", t).record());
    fake.seed_product("1", ProductFixture::new(1, "Mug", "12.50", t).fetched());
    fake
}

fn fetcher(fake: &FakeBigCommerceHandle, token: &str) -> BigCommerceFetcher {
    let mut cfg = BigCommerceFetchConfig::new("abc123", token)
        .api_base(fake.base_url())
        .timeout(Duration::from_millis(500));
    cfg.base_backoff = Duration::from_millis(100);
    BigCommerceFetcher::new(cfg).unwrap()
}

fn parses_to_events(j: &FetchJob, body: &[u8]) {
    let source = nudge_ingest::bigcommerce::BigCommerceSource::new(Default::default());
    match source.parse(&StoredView { topic: &j.topic, shop: j.shop.as_deref(), body }) {
        Parsed::Events(evs) => assert!(!evs.is_empty()),
        other => panic!("{}: {other:?}", j.resource),
    }
}

#[tokio::test]
async fn each_resource_is_read_with_the_token_and_parses() {
    let fake = fake(150, Duration::from_secs(30)).await;
    let f = fetcher(&fake, TOKEN);
    for (r, id) in [("order", "250"), ("cart", "c-1"), ("customer", "7"), ("product", "1")] {
        let j = job(r, id);
        match f.fetch(&j).await {
            FetchOutcome::Fetched(body) => parses_to_events(&j, &body),
            other => panic!("{r}: {other:?}"),
        }
    }
    let targets: Vec<String> = fake.requests().into_iter().map(|r| r.target).collect();
    assert_eq!(
        targets,
        [
            "/stores/abc123/v2/orders/250",
            "/stores/abc123/v2/orders/250/products",
            "/stores/abc123/v3/carts/c-1?include=redirect_urls",
            "/stores/abc123/v3/customers?id:in=7",
            "/stores/abc123/v3/catalog/products/1",
        ]
    );
    assert!(fake.requests().iter().all(|r| r.authenticated && r.status == 200));
}

#[tokio::test]
async fn unknown_resources_are_gone() {
    let fake = fake(150, Duration::from_secs(30)).await;
    let f = fetcher(&fake, TOKEN);
    fake.remove_cart("c-1");
    let mut converted = job("cart", "c-1");
    converted.notified_topic = "store/cart/converted".into();
    assert!(matches!(f.fetch(&converted).await, FetchOutcome::Gone(r) if r.contains("404")));
    assert!(matches!(f.fetch(&job("order", "999")).await, FetchOutcome::Gone(_)));
    assert!(matches!(f.fetch(&job("product", "999")).await, FetchOutcome::Gone(_)));
    assert!(matches!(f.fetch(&job("customer", "999")).await, FetchOutcome::Gone(_)));
}

#[tokio::test]
async fn refused_token_and_garbage_fail_without_showing_the_token() {
    let fake = fake(150, Duration::from_secs(30)).await;
    let secret = "super-secret-token-value";
    let f = fetcher(&fake, secret);
    let out = f.fetch(&job("order", "250")).await;
    assert!(matches!(&out, FetchOutcome::Failed(r) if r.contains("401")), "{out:?}");
    assert!(!format!("{out:?}{f:?}").contains(secret));
    let f = fetcher(&fake, TOKEN);
    fake.set_mode(BigCommerceMode::Garbage { count: 1 });
    assert!(matches!(f.fetch(&job("product", "1")).await, FetchOutcome::Failed(_)));
}

#[tokio::test]
async fn server_errors_timeouts_and_bare_429s_are_retries_with_growing_backoff() {
    let fake = fake(150, Duration::from_secs(30)).await;
    let f = fetcher(&fake, TOKEN);
    fake.set_mode(BigCommerceMode::ServerError { status: 503, count: 2 });
    let FetchOutcome::Retry { after: a1, .. } = f.fetch(&job("product", "1")).await else { panic!() };
    let FetchOutcome::Retry { after: a2, .. } = f.fetch(&job("product", "1")).await else { panic!() };
    assert!(a2 > a1, "{a1:?} then {a2:?}");
    assert!(matches!(f.fetch(&job("product", "1")).await, FetchOutcome::Fetched(_)));
    fake.set_mode(BigCommerceMode::BareThrottle { count: 1 });
    assert!(matches!(f.fetch(&job("product", "1")).await, FetchOutcome::Retry { .. }));
    fake.set_mode(BigCommerceMode::Slow(Duration::from_secs(2)));
    assert!(
        matches!(f.fetch(&job("product", "1")).await, FetchOutcome::Retry { reason, .. } if reason.contains("timed out"))
    );
}

#[tokio::test]
async fn the_quota_is_waited_out_with_no_429() {
    // Two requests a 700 ms window: five reads need three windows, and none may be answered 429.
    let fake = fake(2, Duration::from_millis(700)).await;
    let f = fetcher(&fake, TOKEN);
    let started = Instant::now();
    for _ in 0..5 {
        assert!(matches!(f.fetch(&job("product", "1")).await, FetchOutcome::Fetched(_)));
    }
    assert_eq!(fake.throttled(), 0, "{:?}", fake.requests());
    assert!(started.elapsed() >= Duration::from_millis(1300), "{:?}", started.elapsed());
}

#[tokio::test]
async fn a_429_carries_the_reset_and_the_next_call_waits_for_it() {
    let fake = fake(1, Duration::from_millis(1500)).await;
    let f = fetcher(&fake, TOKEN);
    // Another client used the window up: our first request is answered 429 with the reset.
    let other = fetcher(&fake, TOKEN);
    assert!(matches!(other.fetch(&job("product", "1")).await, FetchOutcome::Fetched(_)));
    let FetchOutcome::Retry { after, .. } = f.fetch(&job("product", "1")).await else { panic!() };
    assert!(after > Duration::from_millis(1000) && after <= Duration::from_millis(1500), "{after:?}");
    let started = Instant::now();
    assert!(matches!(f.fetch(&job("product", "1")).await, FetchOutcome::Fetched(_)));
    assert!(
        started.elapsed() >= Duration::from_millis(1000),
        "the next call waited: {:?}",
        started.elapsed()
    );
    assert_eq!(fake.throttled(), 1);
}
