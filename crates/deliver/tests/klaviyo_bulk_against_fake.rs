//! Batch pushes through Klaviyo's bulk profile import jobs against the contract-enforcing fake: jobs
//! split by count and bytes, polled until they finish, per-profile import errors rejected alone with
//! Klaviyo's reason, cancelled or unfinished jobs and throttled creations given back as retries, and the
//! key never shown.

use nudge_deliver::{Destination, KlaviyoClient, KlaviyoConfig, Outcome};
use nudge_model::{Action, AttrValue};
use nudge_testkit::fake_klaviyo::BulkJobStatus;
use nudge_testkit::{FakeKlaviyo, FakeKlaviyoConfig, FakeKlaviyoHandle, FakeMode, FakeRateLimit};
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

const CREATE: &str = "POST /api/profile-bulk-import-jobs";

async fn fake_with(config: FakeKlaviyoConfig) -> FakeKlaviyoHandle {
    FakeKlaviyo::start(config).await.unwrap()
}

fn quick() -> FakeKlaviyoConfig {
    FakeKlaviyoConfig::default().with_bulk_job_delay(Duration::from_millis(20))
}

fn client_with(fake: &FakeKlaviyoHandle, edit: impl FnOnce(KlaviyoConfig) -> KlaviyoConfig) -> KlaviyoClient {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = KlaviyoConfig::new(fake.api_key()).with_base_url(fake.base_url()).with_bulk_polling(
        Duration::from_millis(10),
        Duration::from_millis(50),
        Duration::from_secs(30),
    );
    KlaviyoClient::new(edit(config)).unwrap()
}

fn client_for(fake: &FakeKlaviyoHandle) -> KlaviyoClient {
    client_with(fake, |c| c)
}

fn upsert(n: usize, notes: usize) -> Action {
    let mut attributes = BTreeMap::from([("ai_churn_risk".to_string(), AttrValue::Number(0.25))]);
    if notes > 0 {
        attributes.insert("ai_notes".into(), AttrValue::Text("n".repeat(notes)));
    }
    Action::UpsertProfile {
        customer: format!("shopify:{n}").parse().unwrap(),
        email: Some(format!("c{n}@example.org")),
        first_name: Some("Lena".into()),
        last_name: None,
        attributes,
    }
}

fn upserts(range: std::ops::Range<usize>) -> Vec<Action> {
    range.map(|n| upsert(n, 0)).collect()
}

/// The POSTs the fake received: status and profile count of each.
fn job_posts(fake: &FakeKlaviyoHandle) -> Vec<(u16, usize, usize)> {
    fake.requests()
        .iter()
        .filter(|r| r.method == "POST" && r.path == "/api/profile-bulk-import-jobs")
        .map(|r| {
            let count = r
                .json()
                .and_then(|d| {
                    d.pointer("/data/attributes/profiles/data").and_then(Value::as_array).map(Vec::len)
                })
                .unwrap_or(0);
            (r.status, count, r.body.len())
        })
        .collect()
}

fn assert_key_hidden(fake: &FakeKlaviyoHandle, outcomes: &[Outcome]) {
    let shown: String = outcomes.iter().map(|o| format!("{o} {o:?}\n")).collect();
    assert!(!shown.contains(fake.api_key()), "the key shows in an outcome:\n{shown}");
}

#[tokio::test]
async fn profiles_beyond_one_job_go_in_as_few_jobs_as_allowed_and_are_all_stored() {
    let fake = fake_with(quick()).await;
    let client = client_for(&fake);
    assert_eq!(client.max_bulk(), 10_000);
    let actions = upserts(0..25_001);
    let outcomes = client.push_profiles(&actions).await;
    assert_eq!(outcomes.len(), actions.len());
    for o in &outcomes {
        assert_eq!(*o, Outcome::Delivered { endpoint: CREATE.into(), status: 202 });
    }
    let posts = job_posts(&fake);
    assert_eq!(
        posts.iter().map(|p| (p.0, p.1)).collect::<Vec<_>>(),
        vec![(202, 10_000), (202, 10_000), (202, 5_001)]
    );
    let jobs = fake.bulk_jobs();
    assert!(jobs.iter().all(|j| j.status == BulkJobStatus::Complete && j.failed_count == 0), "{jobs:?}");
    assert_eq!(fake.profiles().len(), 25_001);
    let last = fake.profile_by_email("c25000@example.org").unwrap();
    assert_eq!(last.external_id.as_deref(), Some("shopify:25000"));
    assert_eq!(last.properties["ai_churn_risk"], 0.25);
    // Each job was polled with GETs carrying the same headers.
    let polls: Vec<_> = fake.requests().into_iter().filter(|r| r.method == "GET").collect();
    assert!(polls.len() >= 3, "{}", polls.len());
    for r in &polls {
        assert!(r.path.starts_with("/api/profile-bulk-import-jobs/"), "{}", r.path);
        assert_eq!(r.header("authorization"), Some("Klaviyo-API-Key [redacted]"));
        assert_eq!(r.header("revision"), Some("2026-07-15"));
        assert_eq!(r.header("accept"), Some("application/vnd.api+json"));
    }
    assert_key_hidden(&fake, &outcomes);
}

#[tokio::test]
async fn jobs_also_split_at_five_megabytes_and_a_configured_bulk_size_is_kept() {
    let fake = fake_with(quick()).await;
    let client = client_for(&fake);
    // ~80 KB each: about 62 fit in 5 MB.
    let actions: Vec<Action> = (0..150).map(|n| upsert(n, 80_000)).collect();
    let outcomes = client.push_profiles(&actions).await;
    assert!(outcomes.iter().all(Outcome::is_delivered), "{outcomes:?}");
    let posts = job_posts(&fake);
    assert_eq!(posts.len(), 3, "{posts:?}");
    assert!(posts.iter().all(|(status, _, bytes)| *status == 202 && *bytes <= 5_000_000), "{posts:?}");
    assert_eq!(posts.iter().map(|p| p.1).sum::<usize>(), 150);
    assert_eq!(fake.profiles().len(), 150);

    let small = client_with(&fake, |mut c| {
        c.bulk_size = 40;
        c
    });
    assert_eq!(small.max_bulk(), 40);
    fake.clear_requests();
    assert!(small.push_profiles(&upserts(1000..1100)).await.iter().all(Outcome::is_delivered));
    assert_eq!(job_posts(&fake).iter().map(|p| p.1).collect::<Vec<_>>(), vec![40, 40, 20]);
}

#[tokio::test]
async fn a_failed_profile_is_rejected_alone_with_klaviyos_reason() {
    let fake = fake_with(quick()).await;
    let client = client_for(&fake);
    fake.fail_bulk_email("c2@example.org");
    let mut actions = upserts(0..5);
    actions.push(upsert(5, 100_000)); // Over 100 KB: refused before sending.
    let outcomes = client.push_profiles(&actions).await;
    for (i, o) in outcomes.iter().enumerate().take(5) {
        if i == 2 {
            match o {
                Outcome::Rejected { endpoint, status: Some(202), error } => {
                    assert_eq!(endpoint, CREATE);
                    assert!(error.contains("the email address was refused"), "{error}");
                    assert!(error.contains("/data/attributes/profiles/data/2"), "{error}");
                }
                other => panic!("the failed profile is rejected: {other}"),
            }
        } else {
            assert!(o.is_delivered(), "{i}: {o}");
        }
    }
    assert!(
        matches!(&outcomes[5], Outcome::Rejected { status: None, error, .. } if error.contains("100000")),
        "{}",
        outcomes[5]
    );
    assert_eq!(job_posts(&fake).iter().map(|p| p.1).collect::<Vec<_>>(), vec![5]);
    assert!(fake.profile_by_email("c2@example.org").is_none());
    assert_eq!(fake.profiles().len(), 4);
    assert_key_hidden(&fake, &outcomes);
}

#[tokio::test]
async fn many_failures_are_read_across_pages() {
    let fake = fake_with(quick()).await;
    let client = client_for(&fake);
    for n in (0..300).filter(|n| n % 2 == 1) {
        fake.fail_bulk_email(&format!("c{n}@example.org"));
    }
    let outcomes = client.push_profiles(&upserts(0..300)).await;
    for (n, o) in outcomes.iter().enumerate() {
        if n % 2 == 1 {
            assert!(matches!(o, Outcome::Rejected { status: Some(202), .. }), "{n}: {o}");
        } else {
            assert!(o.is_delivered(), "{n}: {o}");
        }
    }
    let pages = fake.requests().iter().filter(|r| r.path.contains("/import-errors")).count();
    assert_eq!(pages, 2, "150 errors at 100 a page");
}

#[tokio::test]
async fn a_cancelled_job_gives_every_record_back_as_a_retry() {
    let fake = fake_with(quick()).await;
    let client = client_for(&fake);
    fake.cancel_next_job();
    let outcomes = client.push_profiles(&upserts(0..3)).await;
    for o in &outcomes {
        assert!(
            matches!(o, Outcome::Retry { error, .. } if error.contains("cancelled") && error.contains("again is safe")),
            "{o}"
        );
    }
    assert!(fake.profiles().is_empty());
    let again = client.push_profiles(&upserts(0..3)).await;
    assert!(again.iter().all(Outcome::is_delivered), "{again:?}");
    assert_eq!(fake.profiles().len(), 3);
}

#[tokio::test]
async fn a_throttled_creation_is_a_retry_with_the_wait_and_holds_back_the_rest() {
    let fake = fake_with(quick()).await;
    let client = client_with(&fake, |mut c| {
        c.bulk_size = 2;
        c
    });
    fake.set_mode(FakeMode::Throttle { retry_after_secs: 3, count: 1 });
    let outcomes = client.push_profiles(&upserts(0..3)).await;
    for o in &outcomes[..2] {
        assert!(
            matches!(o, Outcome::Retry { status: Some(429), retry_after: Some(d), .. } if *d == Duration::from_secs(3)),
            "{o}"
        );
    }
    assert!(
        matches!(&outcomes[2], Outcome::Retry { status: None, retry_after: Some(d), .. } if *d == Duration::from_secs(3)),
        "{}",
        outcomes[2]
    );
    assert_eq!(job_posts(&fake).len(), 1, "the second job was not sent");

    fake.set_mode(FakeMode::Fail5xx { status: 503, count: 1 });
    let outcomes = client.push_profiles(&upserts(0..1)).await;
    assert!(matches!(outcomes[0], Outcome::Retry { status: Some(503), .. }), "{}", outcomes[0]);
    assert!(fake.profiles().is_empty());
}

#[tokio::test]
async fn a_refused_key_is_a_rejection_with_the_detail_and_never_shows_the_key() {
    let fake = fake_with(quick()).await;
    let _ = rustls::crypto::ring::default_provider().install_default();
    let wrong = "pk_wrong_bulk_key_123";
    let client = KlaviyoClient::new(KlaviyoConfig::new(wrong).with_base_url(fake.base_url())).unwrap();
    let outcomes = client.push_profiles(&upserts(0..2)).await;
    for o in &outcomes {
        assert!(
            matches!(o, Outcome::Rejected { status: Some(401), error, .. } if error.contains("not valid")),
            "{o}"
        );
    }
    let shown: String = outcomes.iter().map(|o| format!("{o} {o:?}")).collect();
    assert!(!shown.contains(wrong) && !shown.contains(fake.api_key()), "{shown}");
}

#[tokio::test]
async fn polls_wait_out_a_throttle_and_give_up_at_the_bound() {
    // Reads allowed once a second: the second poll is answered 429 with Retry-After, and waited out.
    let fake = fake_with(
        FakeKlaviyoConfig::default()
            .with_bulk_job_delay(Duration::from_millis(150))
            .with_bulk_job_reads_limit(FakeRateLimit::per_second_and_minute(1, 150)),
    )
    .await;
    let client = client_for(&fake);
    let started = Instant::now();
    let outcomes = client.push_profiles(&upserts(0..2)).await;
    assert!(outcomes.iter().all(Outcome::is_delivered), "{outcomes:?}");
    let statuses: Vec<u16> = fake.requests().iter().filter(|r| r.method == "GET").map(|r| r.status).collect();
    assert!(statuses.contains(&429), "{statuses:?}");
    let after_throttle = statuses.iter().skip_while(|s| **s != 429).skip(1).filter(|s| **s == 429).count();
    assert_eq!(after_throttle, 0, "the Retry-After is respected: {statuses:?}");
    assert!(started.elapsed() >= Duration::from_millis(900), "{:?}", started.elapsed());

    // A job that does not finish in time: the records come back as retries with the reason.
    let slow = fake_with(FakeKlaviyoConfig::default().with_bulk_job_delay(Duration::from_secs(30))).await;
    let impatient = client_with(&slow, |c| {
        c.with_bulk_polling(Duration::from_millis(20), Duration::from_millis(50), Duration::from_millis(300))
    });
    let started = Instant::now();
    let outcomes = impatient.push_profiles(&upserts(0..2)).await;
    assert!(started.elapsed() < Duration::from_secs(5));
    for o in &outcomes {
        assert!(
            matches!(o, Outcome::Retry { status: None, error, .. } if error.contains("did not finish") && error.contains("again is safe")),
            "{o}"
        );
    }
}

#[tokio::test]
async fn other_actions_in_a_push_are_delivered_the_usual_way() {
    let fake = fake_with(quick()).await;
    let client = client_for(&fake);
    let event = Action::TriggerEvent {
        customer: "shopify:9".parse().unwrap(),
        email: Some("c9@example.org".into()),
        name: "AI Reorder Window".into(),
        properties: serde_json::Map::new(),
        value: None,
        time: time::OffsetDateTime::now_utc(),
        unique_id: "nudge:reorder:9".into(),
    };
    let outcomes = client.push_profiles(&[upsert(1, 0), event]).await;
    assert_eq!(outcomes[0], Outcome::Delivered { endpoint: CREATE.into(), status: 202 });
    assert_eq!(outcomes[1], Outcome::Delivered { endpoint: "POST /api/events".into(), status: 202 });
    assert_eq!(fake.events().len(), 1);
}
