//! The Klaviyo client against the contract-enforcing fake: what it sends is accepted, and every kind of
//! answer (success, throttling, server errors, refusals, timeouts, dropped connections) becomes the right
//! `Outcome`.

use nudge_deliver::{Destination, KlaviyoClient, KlaviyoConfig, Outcome, RateLimit};
use nudge_model::{Action, AttrValue, Money};
use nudge_testkit::{FakeKlaviyo, FakeKlaviyoConfig, FakeKlaviyoHandle, FakeMode};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

async fn fake() -> FakeKlaviyoHandle {
    FakeKlaviyo::start(FakeKlaviyoConfig::default()).await.unwrap()
}

fn client_for(fake: &FakeKlaviyoHandle) -> KlaviyoClient {
    client_with(fake, |c| c)
}

fn client_with(fake: &FakeKlaviyoHandle, edit: impl FnOnce(KlaviyoConfig) -> KlaviyoConfig) -> KlaviyoClient {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = KlaviyoConfig::new(fake.api_key()).with_base_url(fake.base_url());
    KlaviyoClient::new(edit(config)).unwrap()
}

fn upsert(email: &str, attributes: &[(&str, AttrValue)]) -> Action {
    upsert_for("shopify:880012", email, attributes)
}

fn upsert_for(customer: &str, email: &str, attributes: &[(&str, AttrValue)]) -> Action {
    Action::UpsertProfile {
        customer: customer.parse().unwrap(),
        email: Some(email.into()),
        first_name: Some("Lena".into()),
        last_name: Some("Berg".into()),
        attributes: attributes.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<BTreeMap<_, _>>(),
    }
}

fn trigger(unique_id: &str) -> Action {
    trigger_with(
        unique_id,
        "AI Predicted Reorder Window",
        json!({"order_id": "6120000000001", "predicted_days": 21}),
    )
}

fn trigger_with(unique_id: &str, name: &str, properties: Value) -> Action {
    Action::TriggerEvent {
        customer: "shopify:880012".parse().unwrap(),
        email: Some("lena@example.org".into()),
        name: name.into(),
        properties: properties.as_object().cloned().unwrap_or_default(),
        value: Some(Money::parse("84.90", "EUR").unwrap()),
        time: time::OffsetDateTime::now_utc(),
        unique_id: unique_id.into(),
    }
}

#[tokio::test]
async fn profile_upsert_is_created_then_updated() {
    let fake = fake().await;
    let client = client_for(&fake);
    assert_eq!(client.name(), "klaviyo");

    let first =
        client.deliver(&upsert("lena@example.org", &[("ai_churn_risk", AttrValue::Number(0.18))])).await;
    assert_eq!(first, Outcome::Delivered { endpoint: "POST /api/profile-import".into(), status: 201 });
    let second = client
        .deliver(&upsert(
            "lena@example.org",
            &[("ai_next_best_category", AttrValue::Text("outerwear".into()))],
        ))
        .await;
    assert_eq!(second.status(), Some(200));
    assert!(second.is_delivered());

    let profile = fake.profile_by_email("lena@example.org").unwrap();
    assert_eq!(profile.external_id.as_deref(), Some("shopify:880012"));
    assert_eq!((profile.first_name.as_deref(), profile.last_name.as_deref()), (Some("Lena"), Some("Berg")));
    assert_eq!(profile.properties["ai_churn_risk"], 0.18);
    assert_eq!(profile.properties["ai_next_best_category"], "outerwear");

    let request = &fake.requests()[0];
    assert_eq!(request.header("authorization"), Some("Klaviyo-API-Key [redacted]"));
    assert_eq!(request.header("revision"), Some("2026-07-15"));
    assert_eq!(request.header("content-type"), Some("application/vnd.api+json"));
    assert_eq!(request.header("accept"), Some("application/vnd.api+json"));
    fake.shutdown().await;
}

#[tokio::test]
async fn events_are_accepted_and_a_resent_unique_id_is_stored_once() {
    let fake = fake().await;
    let client = client_for(&fake);
    let action = trigger("shopify:order:6120000000001:reorder-window");
    for _ in 0..3 {
        assert_eq!(
            client.deliver(&action).await,
            Outcome::Delivered { endpoint: "POST /api/events".into(), status: 202 }
        );
    }
    assert_eq!(fake.requests().len(), 3);
    assert_eq!(fake.count_events_with_unique_id("shopify:order:6120000000001:reorder-window"), 1);
    let event = &fake.events()[0];
    assert_eq!(event.metric, "AI Predicted Reorder Window");
    assert_eq!(event.value_currency.as_deref(), Some("EUR"));
    assert_eq!(event.properties["predicted_days"], 21);
    assert_eq!(event.profile["external_id"], "shopify:880012");
    fake.shutdown().await;
}

#[tokio::test]
async fn throttling_becomes_retry_with_the_servers_retry_after() {
    let fake = fake().await;
    let client = client_for(&fake);
    fake.set_mode(FakeMode::Throttle { retry_after_secs: 3, count: 1 });
    match client.deliver(&trigger("u-1")).await {
        Outcome::Retry { status, retry_after, error, .. } => {
            assert_eq!(status, Some(429));
            assert_eq!(retry_after, Some(Duration::from_secs(3)));
            assert!(error.contains("throttled"), "{error}");
        }
        other => panic!("expected a retry, got {other:?}"),
    }
    // The backoff the outbox uses never undercuts the server's instruction.
    let backoff = nudge_deliver::Backoff::default();
    assert!(backoff.delay(0, Some(Duration::from_secs(3))) >= Duration::from_secs(3));
    assert!(client.deliver(&trigger("u-1")).await.is_delivered());
    fake.shutdown().await;
}

#[tokio::test]
async fn the_fakes_own_window_limit_is_reported_as_retry() {
    let limit = nudge_testkit::FakeRateLimit {
        burst: 10,
        burst_window: Duration::from_secs(1),
        steady: 1,
        steady_window: Duration::from_secs(60),
    };
    let fake = FakeKlaviyo::start(FakeKlaviyoConfig::default().with_events_limit(limit)).await.unwrap();
    let client = client_for(&fake);
    assert!(client.deliver(&trigger("u-1")).await.is_delivered());
    let Outcome::Retry { status: Some(429), retry_after: Some(wait), .. } =
        client.deliver(&trigger("u-2")).await
    else {
        panic!("expected a throttled retry");
    };
    let answer = fake.requests()[1].response_body.clone();
    assert!(answer.contains("throttled"), "{answer}");
    assert!(wait >= Duration::from_secs(1) && wait <= Duration::from_secs(60), "{wait:?}");
    fake.shutdown().await;
}

#[tokio::test]
async fn server_errors_are_retried_and_client_errors_rejected() {
    let fake = fake().await;
    let client = client_for(&fake);
    for status in [500, 503, 504, 524] {
        fake.set_mode(FakeMode::Fail5xx { status, count: 1 });
        let outcome = client.deliver(&trigger("u-1")).await;
        assert!(matches!(outcome, Outcome::Retry { status: Some(s), .. } if s == status), "{outcome:?}");
    }
    fake.set_mode(FakeMode::Down);
    assert!(matches!(client.deliver(&trigger("u-1")).await, Outcome::Retry { status: Some(503), .. }));
    fake.set_mode(FakeMode::Normal);

    // An email our light check lets through but Klaviyo (and the fake) refuses: the detail is reported.
    let outcome = client.deliver(&upsert("lena@localhost", &[])).await;
    match outcome {
        Outcome::Rejected { status: Some(400), error, endpoint } => {
            assert_eq!(endpoint, "POST /api/profile-import");
            assert!(error.contains("Invalid email address"), "{error}");
            assert!(error.contains("/data/attributes/email"), "{error}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    fake.shutdown().await;
}

#[tokio::test]
async fn a_wrong_key_is_rejected_with_401() {
    let fake = fake().await;
    let client = client_with(&fake, |mut c| {
        c.api_key = "pk_wrong".into();
        c
    });
    let outcome = client.deliver(&trigger("u-1")).await;
    assert!(matches!(&outcome, Outcome::Rejected { status: Some(401), .. }), "{outcome:?}");
    assert!(!outcome.to_string().contains("pk_wrong"));
    assert!(fake.events().is_empty());
    fake.shutdown().await;
}

#[tokio::test]
async fn a_revision_the_fake_does_not_serve_is_rejected() {
    let fake = fake().await;
    let client = client_with(&fake, |mut c| {
        c.revision = "2026-10-15".into();
        c
    });
    assert!(matches!(client.deliver(&trigger("u-1")).await, Outcome::Rejected { status: Some(400), .. }));
    fake.shutdown().await;
}

#[tokio::test]
async fn a_slow_answer_is_a_timeout_retry_and_resending_does_not_duplicate() {
    let fake = fake().await;
    let client = client_with(&fake, |c| c.with_timeout(Duration::from_millis(300)));
    fake.set_mode(FakeMode::Slow(Duration::from_secs(2)));
    let outcome = client.deliver(&trigger("shopify:order:1:placed")).await;
    match &outcome {
        Outcome::Retry { status: None, error, retry_after: None, .. } => {
            assert!(error.contains("no response within"), "{error}")
        }
        other => panic!("expected a timeout retry, got {other:?}"),
    }
    fake.set_mode(FakeMode::Normal);
    assert!(client.deliver(&trigger("shopify:order:1:placed")).await.is_delivered());
    // The slow fake stored the first attempt although the answer never arrived; the resend is deduplicated.
    assert_eq!(fake.count_events_with_unique_id("shopify:order:1:placed"), 1);
    fake.shutdown().await;
}

#[tokio::test]
async fn dropped_connections_and_unreachable_hosts_are_retries() {
    let fake = fake().await;
    let client = client_for(&fake);
    fake.set_mode(FakeMode::DropConnections);
    let outcome = client.deliver(&trigger("u-1")).await;
    assert!(matches!(outcome, Outcome::Retry { status: None, .. }), "{outcome:?}");
    fake.shutdown().await;

    // Nothing listens on a port that was just released.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let _ = rustls::crypto::ring::default_provider().install_default();
    let client =
        KlaviyoClient::new(KlaviyoConfig::new("pk_x").with_base_url(format!("http://{addr}"))).unwrap();
    let outcome = client.deliver(&trigger("u-1")).await;
    assert!(
        matches!(&outcome, Outcome::Retry { status: None, error, .. } if error.contains("connect")),
        "{outcome:?}"
    );
}

#[tokio::test]
async fn invalid_actions_are_rejected_without_sending_anything() {
    let fake = fake().await;
    let client = client_for(&fake);
    let too_many: Value = (0..401).map(|i| (format!("p{i}"), json!(i))).collect::<Map<_, _>>().into();
    let mut long_ago = trigger("u-3");
    if let Action::TriggerEvent { time, .. } = &mut long_ago {
        *time = time::macros::datetime!(1989-06-01 00:00 UTC);
    }
    let mut next_year = trigger("u-4");
    if let Action::TriggerEvent { time, .. } = &mut next_year {
        *time = time::OffsetDateTime::now_utc() + time::Duration::days(400);
    }
    let invalid = [
        trigger_with("u-1", &"m".repeat(129), json!({})),
        trigger_with("u-2", "AI Test", too_many),
        trigger_with("u-5", "AI Test", json!({"note": "x".repeat(100_001)})),
        long_ago,
        next_year,
        trigger_with("", "AI Test", json!({})),
        upsert("lena@example.org", &[("ai_notes", AttrValue::Text("x".repeat(100_000)))]),
        upsert("lena@example.org", &[("ai_score", AttrValue::Number(f64::INFINITY))]),
        upsert("not an email", &[]),
    ];
    for action in &invalid {
        let outcome = client.deliver(action).await;
        assert!(matches!(outcome, Outcome::Rejected { status: None, .. }), "{outcome:?}");
    }
    assert!(fake.requests().is_empty(), "no invalid action reached the API");
    fake.shutdown().await;
}

#[tokio::test]
async fn a_burst_within_the_limit_is_never_throttled() {
    // The fake enforces Klaviyo's 75/s for profile imports; 75 concurrent upserts all get through.
    let fake = fake().await;
    let client = std::sync::Arc::new(client_for(&fake));
    let tasks: Vec<_> = (0..75)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let action = upsert_for(
                    &format!("shopify:{i}"),
                    &format!("user{i}@example.org"),
                    &[("ai_rank", AttrValue::Number(i as f64))],
                );
                client.deliver(&action).await
            })
        })
        .collect();
    for task in tasks {
        let outcome = task.await.unwrap();
        assert_eq!(outcome.status(), Some(201), "{outcome:?}");
    }
    assert_eq!(fake.profiles().len(), 75);
    fake.shutdown().await;
}

#[tokio::test]
async fn the_client_side_limiter_spaces_requests_beyond_the_burst() {
    // With 4 per second, 10 requests need at least two further seconds after the first four.
    let fake = fake().await;
    let client = std::sync::Arc::new(client_with(&fake, |mut c| {
        c.events_limit = RateLimit::new(4, 600);
        c
    }));
    let started = Instant::now();
    let tasks: Vec<_> = (0..10)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move { client.deliver(&trigger(&format!("u-{i}"))).await })
        })
        .collect();
    for task in tasks {
        assert!(task.await.unwrap().is_delivered());
    }
    assert!(started.elapsed() >= Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(fake.events().len(), 10);
    fake.shutdown().await;
}

#[tokio::test]
async fn building_a_client_checks_the_configuration() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    assert!(KlaviyoClient::new(KlaviyoConfig::new("")).is_err());
    let client = KlaviyoClient::new(KlaviyoConfig::new("pk_live_secret")).unwrap();
    assert!(!format!("{client:?}").contains("pk_live_secret"));
}
