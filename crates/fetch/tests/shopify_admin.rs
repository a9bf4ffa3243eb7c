//! The Shopify Admin customer fetcher against the fake Admin API.

use nudge_fetch::{FetchJob, FetchOutcome, Fetcher, ShopifyAdminConfig, ShopifyAdminFetcher};
use nudge_ingest::shopify::{FETCHED_CUSTOMER_TOPIC, ShopifySource};
use nudge_ingest::source::{Parsed, Source, StoredView};
use nudge_testkit::fake_shopify_admin::{DEFAULT_SHOP, DEFAULT_TOKEN};
use nudge_testkit::{FakeCustomer, FakeShopifyAdmin, FakeShopifyAdminConfig, FakeShopifyAdminHandle};
use std::time::Duration;

const PAYLOAD: &str = r#"{"id":6001,"email":null,"created_at":"2026-05-01T10:00:00Z","currency":"EUR","total_price":"12.50","customer":{"id":880012,"email":null},"line_items":[]}"#;

fn job(id: &str) -> FetchJob {
    FetchJob {
        source: "shopify".into(),
        shop: Some(DEFAULT_SHOP.into()),
        resource: "customer".into(),
        id: id.into(),
        topic: FETCHED_CUSTOMER_TOPIC.into(),
        notified_topic: "orders/create".into(),
        carry: Some(PAYLOAD.replace("880012", id)),
    }
}

fn config(fake: &FakeShopifyAdminHandle) -> ShopifyAdminConfig {
    let mut c = ShopifyAdminConfig::new(DEFAULT_SHOP, DEFAULT_TOKEN);
    c.base_url = Some(fake.base_url());
    c
}

async fn start(customers: impl IntoIterator<Item = u64>, bucket: (f64, f64)) -> FakeShopifyAdminHandle {
    nudge_testkit::ensure_crypto_provider();
    let mut cfg = FakeShopifyAdminConfig::default().bucket(bucket.0, bucket.1);
    for id in customers {
        cfg = cfg.with_customer(FakeCustomer::new(id, &format!("c{id}@example.org")));
    }
    FakeShopifyAdmin::start(cfg).await.unwrap()
}

#[tokio::test]
async fn a_fetched_customer_parses_to_the_order_with_its_email() {
    let fake = start([880012], (100.0, 50.0)).await;
    let fetcher = ShopifyAdminFetcher::new(config(&fake)).unwrap();
    assert_eq!(fetcher.source(), "shopify");
    let FetchOutcome::Fetched(body) = fetcher.fetch(&job("880012")).await else { panic!("not fetched") };
    let parsed = ShopifySource::new(vec![]).parse(&StoredView {
        topic: FETCHED_CUSTOMER_TOPIC,
        shop: Some(DEFAULT_SHOP),
        body: &body,
    });
    let Parsed::Events(evs) = parsed else { panic!("{parsed:?}") };
    let json = serde_json::to_value(&evs).unwrap();
    assert_eq!(json[0]["email"], "c880012@example.org", "{json}");

    // The second order of the same customer comes from the cache.
    assert!(matches!(fetcher.fetch(&job("880012")).await, FetchOutcome::Fetched(_)));
    assert_eq!(fake.stats().answered, 1);
    assert!(!format!("{fetcher:?}").contains(DEFAULT_TOKEN), "Debug must not show the token");
}

#[tokio::test]
async fn gone_refused_and_misaddressed_jobs() {
    let fake = start([1], (100.0, 50.0)).await;
    let fetcher = ShopifyAdminFetcher::new(config(&fake)).unwrap();
    assert!(matches!(fetcher.fetch(&job("404404")).await, FetchOutcome::Gone(r) if r.contains("404404")));

    let mut bad_token = config(&fake);
    bad_token.access_token = "shpat_wrong".into();
    let outcome = ShopifyAdminFetcher::new(bad_token).unwrap().fetch(&job("1")).await;
    assert!(
        matches!(&outcome, FetchOutcome::Failed(r) if r.contains("401") && !r.contains("shpat_wrong")),
        "{outcome:?}"
    );

    let mut old_version = config(&fake);
    old_version.api_version = "2019-04".into();
    let outcome = ShopifyAdminFetcher::new(old_version).unwrap().fetch(&job("1")).await;
    assert!(matches!(&outcome, FetchOutcome::Failed(r) if r.contains("404")), "{outcome:?}");

    let mut other_shop = job("1");
    other_shop.shop = Some("other.myshopify.com".into());
    let mut order = job("1");
    order.resource = "order".into();
    let mut no_payload = job("1");
    no_payload.carry = None;
    for j in [other_shop, order, no_payload, job("abc"), job("")] {
        assert!(matches!(fetcher.fetch(&j).await, FetchOutcome::Failed(_)), "{j:?}");
    }
    assert_eq!(fake.stats().throttled, 0);

    let mut c = ShopifyAdminConfig::new("shop.example.com", "t");
    assert_eq!(ShopifyAdminFetcher::new(c.clone()).unwrap_err().field, "shop_domain");
    c.shop_domain = DEFAULT_SHOP.into();
    c.api_version = "2026-13".into();
    assert_eq!(ShopifyAdminFetcher::new(c).unwrap_err().field, "api_version");

    // A server that is down is a retry.
    let mut down = config(&fake);
    fake.shutdown().await;
    down.timeout = Duration::from_secs(2);
    assert!(matches!(
        ShopifyAdminFetcher::new(down).unwrap().fetch(&job("1")).await,
        FetchOutcome::Retry { .. }
    ));
}

#[tokio::test]
async fn the_cost_bucket_is_never_overdrawn() {
    // A small bucket: ten points, three a second; each customer query costs three.
    let ids: Vec<u64> = (1..=8).collect();
    let fake = start(ids.clone(), (10.0, 3.0)).await;
    let mut cfg = config(&fake);
    cfg.cache_ttl = Duration::ZERO;
    let fetcher = ShopifyAdminFetcher::new(cfg).unwrap();
    let jobs: Vec<FetchJob> = ids.iter().map(|i| job(&i.to_string())).collect();
    let outcomes = futures::future::join_all(jobs.iter().map(|j| fetcher.fetch(j))).await;
    for o in &outcomes {
        assert!(matches!(o, FetchOutcome::Fetched(_)), "{o:?}");
    }
    assert_eq!(fake.stats().answered, 8);
    assert_eq!(fake.stats().throttled, 0, "no avoidable THROTTLED answer");
}

#[tokio::test]
async fn a_bucket_emptied_by_another_client_is_a_retry_after_the_refill() {
    // A hundred points refilling one a second; the fetcher learns the level from its first answer.
    let fake = start([1], (100.0, 1.0)).await;
    let mut cfg = config(&fake);
    cfg.cache_ttl = Duration::ZERO;
    let fetcher = ShopifyAdminFetcher::new(cfg).unwrap();
    assert!(matches!(fetcher.fetch(&job("1")).await, FetchOutcome::Fetched(_)));
    fake.spend(100.0);
    match fetcher.fetch(&job("1")).await {
        FetchOutcome::Retry { after, reason } => {
            assert!(reason.contains("THROTTLED"), "{reason}");
            // Three points at one a second.
            assert!(after >= Duration::from_millis(2500) && after <= Duration::from_secs(4), "{after:?}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(fake.stats().throttled, 1);
}
