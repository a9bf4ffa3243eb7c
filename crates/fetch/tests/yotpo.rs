//! The Yotpo fetcher against the fake Yotpo (contract 3.4): the token obtained once and reused, one
//! re-authentication after expiry, `count` ≤ 100 with `deleted=true` and a lookback on
//! `since_updated_at`, paging to the review, 429 retried later.

use nudge_fetch::{FetchJob, FetchOutcome, Fetcher, YotpoFetchConfig, YotpoFetcher};
use nudge_ingest::source::{Parsed, Source, StoredView};
use nudge_ingest::yotpo::fixtures::ReviewFixture;
use nudge_ingest::yotpo::{YotpoConfig, YotpoSource};
use nudge_model::Event;
use nudge_testkit::{FakeYotpo, FakeYotpoConfig, FakeYotpoHandle};
use std::time::Duration;
use time::macros::datetime;

const APP: &str = "yotpo-app-key-1";

fn job(id: &str, carry: Option<&str>) -> FetchJob {
    FetchJob {
        source: "yotpo".into(),
        shop: Some(APP.into()),
        resource: "review".into(),
        id: id.into(),
        topic: "yotpo/fetched/review".into(),
        notified_topic: "review_updated".into(),
        carry: carry.map(str::to_string),
    }
}

async fn fake() -> FakeYotpoHandle {
    nudge_testkit::ensure_crypto_provider();
    let fake = FakeYotpo::start(FakeYotpoConfig::default()).await.unwrap();
    // 150 older reviews, so the one wanted is on the second page of a wide window.
    for i in 0..150u64 {
        let t = time::OffsetDateTime::now_utc() - time::Duration::days(3) + time::Duration::minutes(i as i64);
        fake.seed_review(ReviewFixture::new(APP, 1000 + i, Some("x@example.org"), t).pulled());
    }
    let wanted = ReviewFixture::new(APP, 219, Some("lena@example.org"), datetime!(2026-05-01 10:00 UTC))
        .score(1)
        .deleted(true);
    fake.seed_review(wanted.pulled());
    fake
}

fn fetcher(fake: &FakeYotpoHandle, secret: &str) -> YotpoFetcher {
    let mut cfg = YotpoFetchConfig::new(APP, secret).api_base(fake.base_url());
    cfg.timeout = Duration::from_millis(2000);
    cfg.base_backoff = Duration::from_millis(100);
    YotpoFetcher::new(cfg).unwrap()
}

#[tokio::test]
async fn contract_3_4_token_reuse_lookback_count_deleted_and_the_api_content() {
    let fake = fake().await;
    let f = fetcher(&fake, &fake.config().secret.clone());
    let j = job("219", Some("2026-05-01T10:00:00Z"));
    let FetchOutcome::Fetched(body) = f.fetch(&j).await else { panic!("not fetched") };
    // Twice: the token is reused.
    assert!(matches!(f.fetch(&j).await, FetchOutcome::Fetched(_)));
    assert_eq!(fake.tokens_issued(), 1);
    let reads: Vec<_> = fake.requests().into_iter().filter(|r| r.target.contains("/reviews")).collect();
    for r in &reads {
        assert!(r.target.contains("count=100"), "{}", r.target);
        assert!(r.target.contains("deleted=true"), "{}", r.target);
        // One hour of lookback before the notification's `updated_at`.
        assert!(r.target.contains("since_updated_at=2026-05-01T09%3A00%3A00Z"), "{}", r.target);
        assert!(!r.target.contains("utoken"), "the fake never records the token");
    }
    // The deleted review is found (deleted=true) and its content is the API's.
    let source = YotpoSource::new(YotpoConfig { app_key: APP.into(), url_token: String::new() });
    let Parsed::Events(evs) = source.parse(&StoredView { topic: &j.topic, shop: Some(APP), body: &body })
    else {
        panic!()
    };
    assert!(matches!(&evs[0], Event::ReviewPosted(r) if !r.published && r.rating == Some(1)));
}

#[tokio::test]
async fn pages_through_a_wide_window_and_a_missing_review_is_gone() {
    let fake = fake().await;
    let f = fetcher(&fake, &fake.config().secret.clone());
    // No hint: the default window (7 days back) covers the 150 recent reviews and this one, the newest,
    // on page 2; review 219 (May) is outside it.
    let recent = time::OffsetDateTime::now_utc() - time::Duration::hours(1);
    fake.seed_review(ReviewFixture::new(APP, 220, Some("ana@example.org"), recent).pulled());
    assert!(matches!(f.fetch(&job("220", None)).await, FetchOutcome::Fetched(_)));
    let pages: Vec<_> = fake.requests().into_iter().filter(|r| r.target.contains("/reviews")).collect();
    assert_eq!(pages.len(), 2, "{pages:?}");
    assert!(pages[1].target.contains("page=2"));
    assert!(matches!(f.fetch(&job("999999", None)).await, FetchOutcome::Gone(_)));
    assert!(matches!(f.fetch(&job("219", None)).await, FetchOutcome::Gone(_)));
    assert!(matches!(f.fetch(&job("../x", None)).await, FetchOutcome::Failed(_)));
}

#[tokio::test]
async fn contract_3_4_an_expired_token_is_renewed_once_then_a_second_401_fails() {
    let fake = fake().await;
    let f = fetcher(&fake, &fake.config().secret.clone());
    let j = job("219", Some("2026-05-01T10:00:00Z"));
    assert!(matches!(f.fetch(&j).await, FetchOutcome::Fetched(_)));
    fake.expire_tokens();
    assert!(matches!(f.fetch(&j).await, FetchOutcome::Fetched(_)));
    assert_eq!(fake.tokens_issued(), 2, "one re-authentication after expiry");
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses.iter().filter(|s| **s == 401).count(), 1, "{statuses:?}");
    // Wrong secret: the token request is refused, a failure (not a retry loop).
    let bad = fetcher(&fake, "not-the-secret");
    assert!(matches!(bad.fetch(&j).await, FetchOutcome::Failed(_)));
}

#[tokio::test]
async fn contract_3_4_a_429_is_retried_later() {
    let fake = fake().await;
    let f = fetcher(&fake, &fake.config().secret.clone());
    let j = job("219", Some("2026-05-01T10:00:00Z"));
    fake.throttle_next(1);
    match f.fetch(&j).await {
        FetchOutcome::Retry { after, reason } => {
            assert!(after >= Duration::from_secs(1), "Retry-After is obeyed: {after:?}");
            assert!(reason.contains("429"));
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(f.fetch(&j).await, FetchOutcome::Fetched(_)));
}

#[tokio::test]
async fn the_fake_refuses_pages_over_100() {
    let fake = fake().await;
    let client = reqwest::Client::new();
    let token: serde_json::Value = client
        .post(format!("{}/oauth/token", fake.base_url()))
        .body(format!("client_id={APP}&client_secret={}&grant_type=client_credentials", fake.config().secret))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let t = token["access_token"].as_str().unwrap();
    let url =
        |count: u32| format!("{}/v1/apps/{APP}/reviews?utoken={t}&count={count}&page=1", fake.base_url());
    assert_eq!(client.get(url(101)).send().await.unwrap().status().as_u16(), 400);
    assert_eq!(client.get(url(100)).send().await.unwrap().status().as_u16(), 200);
    let no_token = format!("{}/v1/apps/{APP}/reviews?count=10", fake.base_url());
    assert_eq!(client.get(no_token).send().await.unwrap().status().as_u16(), 401);
}
