//! Deletion requests (`Destination::erase`) against the fakes: the request the tool documents, refused
//! credentials rejected, nothing sent without an identifier the tool takes, 429 and 5xx retried, and the
//! person actually gone from the fake afterwards while others stay.

use crate::suite::init;
use nudge_deliver::{
    BrazeClient, BrazeConfig, Destination, ErasureSubject, KlaviyoClient, KlaviyoConfig, Outcome,
};
use nudge_model::{Action, CustomerId};
use nudge_testkit::fake_klaviyo::{FakeKlaviyo, FakeKlaviyoConfig, FakeMode};
use nudge_testkit::{BrazeMode, FakeBraze, FakeBrazeConfig};
use std::collections::BTreeMap;

fn upsert(customer: &str, email: &str) -> Action {
    Action::UpsertProfile {
        customer: customer.parse::<CustomerId>().unwrap(),
        email: Some(email.into()),
        first_name: Some("Ana".into()),
        last_name: None,
        attributes: BTreeMap::new(),
    }
}

fn subject(ids: &[&str], email: Option<&str>) -> ErasureSubject {
    ErasureSubject {
        external_ids: ids.iter().map(|s| s.to_string()).collect(),
        email: email.map(str::to_string),
        phone: None,
    }
}

#[tokio::test]
async fn klaviyo_deletion_jobs() {
    init();
    let fake = FakeKlaviyo::start(FakeKlaviyoConfig::new("pk_erase_key")).await.unwrap();
    let client =
        KlaviyoClient::new(KlaviyoConfig::new("pk_erase_key").with_base_url(fake.base_url())).unwrap();
    assert!(client.can_erase());
    for (c, e) in [("shopify:1", "ana@example.org"), ("shopify:2", "ben@example.org")] {
        assert!(client.deliver(&upsert(c, e)).await.is_delivered());
    }
    // Without an email or phone nothing is sent.
    let before = fake.requests().len();
    assert!(matches!(client.erase(&subject(&["shopify:1"], None)).await, Outcome::Rejected { .. }));
    assert_eq!(fake.requests().len(), before, "no request without an identifier Klaviyo takes");
    // Refused credentials: rejected.
    let bad = KlaviyoClient::new(KlaviyoConfig::new("pk_other").with_base_url(fake.base_url())).unwrap();
    assert!(matches!(
        bad.erase(&subject(&[], Some("ana@example.org"))).await,
        Outcome::Rejected { status: Some(401), .. }
    ));
    // 429 and 5xx: retries.
    fake.set_mode(FakeMode::Throttle { retry_after_secs: 1, count: 1 });
    assert!(matches!(client.erase(&subject(&[], Some("ana@example.org"))).await, Outcome::Retry { .. }));
    fake.set_mode(FakeMode::Fail5xx { status: 503, count: 1 });
    assert!(matches!(client.erase(&subject(&[], Some("ana@example.org"))).await, Outcome::Retry { .. }));
    // Accepted (202), and the profile is gone; the other stays.
    let done = client.erase(&subject(&["shopify:1"], Some("Ana@Example.org"))).await;
    assert!(matches!(done, Outcome::Delivered { status: 202, .. }), "{done:?}");
    assert!(fake.profile_by_email("ana@example.org").is_none(), "the profile is gone");
    assert!(fake.profile_by_email("ben@example.org").is_some(), "others stay");
    assert_eq!(fake.deletions(), vec![1]);
    let req = fake.requests().into_iter().last().unwrap();
    assert_eq!(req.path, "/api/data-privacy-deletion-jobs");
    let body = req.json().unwrap();
    assert_eq!(body["data"]["type"], "data-privacy-deletion-job");
    assert_eq!(
        body["data"]["attributes"]["profile"]["data"]["attributes"],
        serde_json::json!({"email": "Ana@Example.org"})
    );
    assert!(
        !format!("{:?}", subject(&["shopify:1"], Some("ana@example.org"))).contains("ana@"),
        "Debug hides values"
    );
}

#[tokio::test]
async fn braze_users_delete() {
    init();
    let fake = FakeBraze::start(FakeBrazeConfig::new("braze-erase-key-0001")).await.unwrap();
    let cfg = |k: &str| BrazeConfig::new(k, fake.base_url()).allowing_private();
    let client = BrazeClient::new(cfg("braze-erase-key-0001")).unwrap();
    assert!(client.can_erase());
    for (c, e) in [("shopify:1", "ana@example.org"), ("shopify:2", "ben@example.org")] {
        assert!(client.deliver(&upsert(c, e)).await.is_delivered());
    }
    assert!(fake.user("shopify:1").is_some());
    assert!(matches!(
        client.erase(&subject(&[], Some("ana@example.org"))).await,
        Outcome::Rejected { status: None, .. }
    ));
    let bad = BrazeClient::new(cfg("braze-not-this-key-0002")).unwrap();
    let refused = bad.erase(&subject(&["shopify:1"], None)).await;
    assert!(matches!(refused, Outcome::Rejected { status: Some(401), .. }));
    assert!(!refused.to_string().contains("braze-not-this-key-0002"), "the key never shows");
    fake.set_mode(BrazeMode::Throttle { retry_after_secs: 1, count: 1 });
    assert!(matches!(client.erase(&subject(&["shopify:1"], None)).await, Outcome::Retry { .. }));
    fake.set_mode(BrazeMode::NotJson);
    assert!(
        matches!(client.erase(&subject(&["shopify:1"], None)).await, Outcome::Retry { .. }),
        "a 200 that is not Braze's answer"
    );
    fake.set_mode(BrazeMode::Normal);
    // More than 50 ids: split into requests of at most 50.
    let many: Vec<String> =
        (0..60).map(|i| format!("shopify:9{i:03}")).chain(["shopify:1".to_string()]).collect();
    let many: Vec<&str> = many.iter().map(String::as_str).collect();
    fake.clear_requests();
    assert!(client.erase(&subject(&many, None)).await.is_delivered());
    let sent = fake.requests();
    assert_eq!(sent.len(), 2, "61 ids in two requests");
    assert!(sent.iter().all(|r| r.path == "/users/delete" && r.status == 200));
    assert!(fake.user("shopify:1").is_none(), "the user is gone");
    assert!(fake.user("shopify:2").is_some(), "others stay");
    assert_eq!(fake.deletions(), 1);
}

#[tokio::test]
async fn hubspot_gdpr_delete() {
    use nudge_deliver::{HubSpotClient, HubSpotConfig};
    use nudge_testkit::{FakeHubSpot, FakeHubSpotConfig, HubSpotMode};
    init();
    let fake = FakeHubSpot::start(FakeHubSpotConfig::new("pat-erase-token-0001")).await.unwrap();
    let cfg = |t: &str| HubSpotConfig::new(t).with_base_url(fake.base_url()).allowing_private();
    let client = HubSpotClient::new(cfg("pat-erase-token-0001")).unwrap();
    assert!(client.can_erase());
    for (c, e) in [("shopify:1", "ana@example.org"), ("shopify:2", "ben@example.org")] {
        assert!(client.deliver(&upsert(c, e)).await.is_delivered());
    }
    assert!(fake.contact("ana@example.org").is_some());
    assert!(matches!(
        client.erase(&subject(&["shopify:1"], None)).await,
        Outcome::Rejected { status: None, .. }
    ));
    let bad = HubSpotClient::new(cfg("pat-not-this-token-0002")).unwrap();
    assert!(matches!(
        bad.erase(&subject(&[], Some("ana@example.org"))).await,
        Outcome::Rejected { status: Some(401), .. }
    ));
    fake.set_mode(HubSpotMode::Fail { status: 502, count: 1 });
    assert!(matches!(client.erase(&subject(&[], Some("ana@example.org"))).await, Outcome::Retry { .. }));
    let done = client.erase(&subject(&[], Some("ana@example.org"))).await;
    assert!(matches!(done, Outcome::Delivered { status: 204, .. }), "{done:?}");
    assert!(fake.contact("ana@example.org").is_none(), "the contact is gone");
    assert!(fake.contact("ben@example.org").is_some(), "others stay");
    let req = fake.requests().into_iter().last().unwrap();
    assert_eq!(req.path, "/crm/v3/objects/contacts/gdpr-delete");
    let body: serde_json::Value = serde_json::from_slice(&req.body).unwrap();
    assert_eq!(body, serde_json::json!({"objectId": "ana@example.org", "idProperty": "email"}));
}
