//! The Smile.io fetcher against the fake Smile.io (contract 4.3): never more than 10 requests in any
//! second per token, at least 1 s of backoff after a 429; 404 is a normal end; a bad key fails.

use nudge_fetch::{FetchJob, FetchOutcome, Fetcher, SmileFetchConfig, SmileFetcher};
use nudge_ingest::smile::fixtures::CustomerFixture;
use nudge_testkit::{FakeSmile, FakeSmileConfig, FakeSmileHandle};
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::macros::datetime;

fn job(id: &str) -> FetchJob {
    FetchJob {
        source: "smile".into(),
        shop: Some("42001".into()),
        resource: "customer".into(),
        id: id.into(),
        topic: "smile/fetched/customer".into(),
        notified_topic: "customer/updated".into(),
        carry: None,
    }
}

async fn fake() -> FakeSmileHandle {
    nudge_testkit::ensure_crypto_provider();
    let fake = FakeSmile::start(FakeSmileConfig::default()).await.unwrap();
    for id in 1..=40u64 {
        fake.seed_customer(
            CustomerFixture::new(id, Some("a@example.org"), 10, datetime!(2026-05-01 10:00 UTC)).object(),
        );
    }
    fake
}

fn fetcher(fake: &FakeSmileHandle, key: &str) -> SmileFetcher {
    let mut cfg = SmileFetchConfig::new(key).api_base(fake.base_url());
    cfg.timeout = Duration::from_millis(2000);
    SmileFetcher::new(cfg).unwrap()
}

#[tokio::test]
async fn contract_4_3_the_client_never_exceeds_10_per_second() {
    let fake = fake().await;
    let f = Arc::new(fetcher(&fake, &fake.config().api_key.clone()));
    let started = Instant::now();
    // 35 jobs at once, from 35 tasks.
    let tasks: Vec<_> = (1..=35u64)
        .map(|id| {
            let f = f.clone();
            tokio::spawn(async move { f.fetch(&job(&id.to_string())).await })
        })
        .collect();
    for t in tasks {
        let outcome = t.await.unwrap();
        assert!(matches!(outcome, FetchOutcome::Fetched(_)), "{outcome:?}\n{:#?}", fake.requests());
    }
    let elapsed = started.elapsed();
    assert_eq!(fake.throttled(), 0, "the fake never had to refuse");
    assert!(fake.max_per_second() <= 10, "{} requests within one second", fake.max_per_second());
    assert!(elapsed >= Duration::from_secs(3), "35 requests at 10/s take over 3 s: {elapsed:?}");
    println!("smile: 35 fetches in {elapsed:?}, at most {} in any second", fake.max_per_second());
}

#[tokio::test]
async fn contract_4_3_after_a_429_the_client_backs_off_at_least_a_second() {
    let fake = fake().await;
    let key = fake.config().api_key.clone();
    // Another client on the same token uses up this second.
    let other = reqwest::Client::new();
    for _ in 0..10 {
        other.get(format!("{}/v1/customers/1", fake.base_url())).bearer_auth(&key).send().await.unwrap();
    }
    let f = fetcher(&fake, &key);
    let t429 = Instant::now();
    match f.fetch(&job("2")).await {
        FetchOutcome::Retry { after, .. } => assert!(after >= Duration::from_secs(1), "{after:?}"),
        other => panic!("{other:?}"),
    }
    // The next attempt waits out the backoff on its own before sending.
    assert!(matches!(f.fetch(&job("2")).await, FetchOutcome::Fetched(_)));
    assert!(t429.elapsed() >= Duration::from_secs(1), "{:?}", t429.elapsed());
    let reqs = fake.requests();
    let (last_429, next) = (reqs[reqs.len() - 2].clone(), reqs[reqs.len() - 1].clone());
    assert_eq!((last_429.status, next.status), (429, 200));
    assert!(next.at.duration_since(last_429.at) >= Duration::from_secs(1));
}

#[tokio::test]
async fn unknown_customers_are_gone_and_a_bad_key_fails() {
    let fake = fake().await;
    let f = fetcher(&fake, &fake.config().api_key.clone());
    assert!(matches!(f.fetch(&job("9999")).await, FetchOutcome::Gone(_)));
    assert!(matches!(f.fetch(&job("1/../2")).await, FetchOutcome::Failed(_)));
    let bad = fetcher(&fake, "api_wrong");
    assert!(matches!(bad.fetch(&job("1")).await, FetchOutcome::Failed(_)));
}
