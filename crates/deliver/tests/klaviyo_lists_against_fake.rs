//! List actions through the Klaviyo client against the contract-enforcing fake: the profile lookup, then
//! the membership change; repeats are harmless, an unknown list is a refusal with Klaviyo's detail,
//! throttling and server errors are retries, and the list endpoint's own quota is kept client-side.

use nudge_deliver::{Destination, KlaviyoClient, KlaviyoConfig, Outcome, RateLimit};
use nudge_model::Action;
use nudge_testkit::{FakeKlaviyo, FakeKlaviyoConfig, FakeKlaviyoHandle, FakeMode, FakeRateLimit};
use serde_json::json;
use std::time::{Duration, Instant};

const LIST: &str = "Xy12Ab";
const ADD: &str = "POST /api/lists/{id}/relationships/profiles";
const REMOVE: &str = "DELETE /api/lists/{id}/relationships/profiles";

async fn fake_with(config: FakeKlaviyoConfig) -> FakeKlaviyoHandle {
    let fake = FakeKlaviyo::start(config).await.unwrap();
    fake.create_list(LIST);
    fake
}

async fn fake() -> FakeKlaviyoHandle {
    fake_with(FakeKlaviyoConfig::default()).await
}

fn client_with(fake: &FakeKlaviyoHandle, edit: impl FnOnce(KlaviyoConfig) -> KlaviyoConfig) -> KlaviyoClient {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let config = KlaviyoConfig::new(fake.api_key()).with_base_url(fake.base_url());
    KlaviyoClient::new(edit(config)).unwrap()
}

fn client_for(fake: &FakeKlaviyoHandle) -> KlaviyoClient {
    client_with(fake, |c| c)
}

fn add(customer: &str, email: &str, list_id: &str) -> Action {
    Action::AddToList {
        customer: customer.parse().unwrap(),
        email: Some(email.into()),
        list_id: list_id.into(),
    }
}

fn remove(customer: &str, email: &str, list_id: &str) -> Action {
    Action::RemoveFromList {
        customer: customer.parse().unwrap(),
        email: Some(email.into()),
        list_id: list_id.into(),
    }
}

#[tokio::test]
async fn adding_looks_the_profile_up_then_adds_it_by_id() {
    let fake = fake().await;
    let client = client_for(&fake);
    let outcome = client.deliver(&add("shopify:880012", "lena@example.org", LIST)).await;
    assert_eq!(outcome, Outcome::Delivered { endpoint: ADD.into(), status: 204 });
    assert_eq!(fake.list_member_emails(LIST), vec!["lena@example.org"]);

    let profile = fake.profile_by_email("lena@example.org").unwrap();
    assert_eq!(profile.external_id.as_deref(), Some("shopify:880012"));
    let requests = fake.requests();
    assert_eq!(requests.len(), 2);
    assert_eq!((requests[0].method.as_str(), requests[0].path.as_str()), ("POST", "/api/profile-import"));
    assert_eq!(
        requests[0].json().unwrap(),
        json!({"data": {"type": "profile", "attributes": {"email": "lena@example.org", "external_id": "shopify:880012"}}})
    );
    assert_eq!(
        (requests[1].method.as_str(), requests[1].path.as_str(), requests[1].status),
        ("POST", "/api/lists/Xy12Ab/relationships/profiles", 204)
    );
    assert_eq!(requests[1].json().unwrap(), json!({"data": [{"type": "profile", "id": profile.id}]}));
    for r in &requests {
        assert_eq!(r.header("authorization"), Some("Klaviyo-API-Key [redacted]"));
        assert_eq!(r.header("revision"), Some("2026-07-15"));
        assert_eq!(r.header("content-type"), Some("application/vnd.api+json"));
        assert_eq!(r.header("accept"), Some("application/vnd.api+json"));
    }
    // The lookup does not touch what a profile sync wrote.
    assert!(profile.properties.is_empty() && profile.first_name.is_none());
    fake.shutdown().await;
}

#[tokio::test]
async fn adding_twice_and_removing_a_non_member_are_successes() {
    let fake = fake().await;
    let client = client_for(&fake);
    let lena = add("shopify:880012", "lena@example.org", LIST);
    for _ in 0..2 {
        assert_eq!(client.deliver(&lena).await, Outcome::Delivered { endpoint: ADD.into(), status: 204 });
    }
    assert_eq!(fake.list_member_emails(LIST), vec!["lena@example.org"]);
    assert_eq!(fake.profiles().len(), 1, "the lookup found the same profile again");

    let out = remove("shopify:880012", "lena@example.org", LIST);
    for _ in 0..2 {
        assert_eq!(client.deliver(&out).await, Outcome::Delivered { endpoint: REMOVE.into(), status: 204 });
    }
    assert_eq!(fake.list_members(LIST), Some(vec![]));
    let deletes: Vec<_> = fake.requests().into_iter().filter(|r| r.method == "DELETE").collect();
    assert_eq!(deletes.len(), 2);
    assert_eq!(deletes[0].path, "/api/lists/Xy12Ab/relationships/profiles");

    // Someone who was never on the list (nor known at all) is removed without complaint.
    let stranger = remove("shopify:77", "ada@example.org", LIST);
    assert!(client.deliver(&stranger).await.is_delivered());
    // Removing takes only that member off.
    client.deliver(&add("shopify:1", "a@example.org", LIST)).await;
    client.deliver(&add("shopify:2", "b@example.org", LIST)).await;
    client.deliver(&remove("shopify:1", "a@example.org", LIST)).await;
    assert_eq!(fake.list_member_emails(LIST), vec!["b@example.org"]);
    fake.shutdown().await;
}

#[tokio::test]
async fn an_unknown_list_is_rejected_with_klaviyos_detail() {
    let fake = fake().await;
    let client = client_for(&fake);
    for action in [
        add("shopify:880012", "lena@example.org", "Zz99Zz"),
        remove("shopify:880012", "lena@example.org", "Zz99Zz"),
    ] {
        match client.deliver(&action).await {
            Outcome::Rejected { endpoint, status, error } => {
                assert_eq!(endpoint, if matches!(action, Action::AddToList { .. }) { ADD } else { REMOVE });
                assert_eq!(status, Some(404));
                assert!(error.contains("Zz99Zz") && error.contains("does not exist"), "{error}");
            }
            other => panic!("expected a refusal, got {other:?}"),
        }
    }
    assert_eq!(fake.list_members(LIST), Some(vec![]));
    fake.shutdown().await;
}

#[tokio::test]
async fn a_list_id_that_could_change_the_path_is_never_sent() {
    let fake = fake().await;
    let client = client_for(&fake);
    for bad in ["../../profile-import", "Xy12Ab/relationships", "a?b", "a%2F", " ", ""] {
        match client.deliver(&add("shopify:880012", "lena@example.org", bad)).await {
            Outcome::Rejected { endpoint, status: None, error } => {
                assert_eq!(endpoint, ADD);
                assert!(error.contains("list id"), "{error}");
            }
            other => panic!("{bad:?}: expected a client-side refusal, got {other:?}"),
        }
    }
    assert!(fake.requests().is_empty(), "{:?}", fake.requests());
    fake.shutdown().await;
}

#[tokio::test]
async fn throttling_and_server_errors_are_retries_at_either_step() {
    let fake = fake().await;
    let client = client_for(&fake);
    let action = add("shopify:880012", "lena@example.org", LIST);
    // The lookup is throttled: a retry of the profile-import, with the server's Retry-After.
    fake.set_mode(FakeMode::Throttle { retry_after_secs: 3, count: 1 });
    match client.deliver(&action).await {
        Outcome::Retry { endpoint, status, retry_after, error } => {
            assert_eq!(endpoint, "POST /api/profile-import");
            assert_eq!((status, retry_after), (Some(429), Some(Duration::from_secs(3))));
            assert!(error.contains("Xy12Ab") && error.contains("throttled"), "{error}");
        }
        other => panic!("expected a retry, got {other:?}"),
    }
    fake.set_mode(FakeMode::Fail5xx { status: 502, count: 1 });
    let outcome = client.deliver(&action).await;
    assert!(matches!(outcome, Outcome::Retry { status: Some(502), .. }), "{outcome:?}");
    assert_eq!(fake.list_members(LIST), Some(vec![]));
    assert!(client.deliver(&action).await.is_delivered());
    assert_eq!(fake.list_member_emails(LIST), vec!["lena@example.org"]);
    fake.shutdown().await;
}

#[tokio::test]
async fn the_list_endpoints_own_429_is_a_retry_with_retry_after() {
    // The fake's list window allows one call a minute; profile-import stays free.
    let limit = FakeRateLimit {
        burst: 10,
        burst_window: Duration::from_secs(1),
        steady: 1,
        steady_window: Duration::from_secs(60),
    };
    let fake = fake_with(FakeKlaviyoConfig::default().with_lists_limit(limit)).await;
    let client = client_for(&fake);
    assert!(client.deliver(&add("shopify:1", "a@example.org", LIST)).await.is_delivered());
    match client.deliver(&remove("shopify:1", "a@example.org", LIST)).await {
        Outcome::Retry { endpoint, status, retry_after, .. } => {
            assert_eq!((endpoint.as_str(), status), (REMOVE, Some(429)));
            let wait = retry_after.expect("the fake's Retry-After");
            assert!(wait >= Duration::from_secs(1) && wait <= Duration::from_secs(60), "{wait:?}");
        }
        other => panic!("expected a retry, got {other:?}"),
    }
    assert_eq!(fake.list_member_emails(LIST), vec!["a@example.org"]);
    fake.shutdown().await;
}

#[tokio::test]
async fn the_client_keeps_the_list_quota_for_adding_and_removing_together() {
    // 2 per second for the list endpoint: six list calls need at least two further seconds.
    let fake = fake().await;
    let client = std::sync::Arc::new(client_with(&fake, |mut c| {
        c.lists_limit = RateLimit::new(2, 600);
        c
    }));
    let started = Instant::now();
    let tasks: Vec<_> = (0..6)
        .map(|i| {
            let client = client.clone();
            tokio::spawn(async move {
                let email = format!("c{i}@example.org");
                let customer = format!("shopify:{i}");
                if i % 2 == 0 {
                    client.deliver(&add(&customer, &email, LIST)).await
                } else {
                    client.deliver(&remove(&customer, &email, LIST)).await
                }
            })
        })
        .collect();
    for task in tasks {
        let outcome = task.await.unwrap();
        assert!(outcome.is_delivered(), "{outcome:?}");
    }
    assert!(started.elapsed() >= Duration::from_secs(2), "{:?}", started.elapsed());
    assert_eq!(fake.list_members(LIST).unwrap().len(), 3);
    fake.shutdown().await;
}

#[tokio::test]
async fn the_lists_limit_is_configurable() {
    let config: KlaviyoConfig =
        toml::from_str("api_key = \"k\"\n[lists_limit]\nburst_per_sec = 5\nsteady_per_min = 60").unwrap();
    assert_eq!(config.lists_limit, RateLimit::new(5, 60));
    let defaults: KlaviyoConfig = toml::from_str("api_key = \"k\"").unwrap();
    assert_eq!(defaults.lists_limit, RateLimit::new(10, 150));
}
