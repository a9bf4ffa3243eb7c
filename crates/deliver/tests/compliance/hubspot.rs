//! HubSpot against the fake: the common suite, the batch suite, and HubSpot's own rules (properties
//! created once before the first write, 409 meaning "exists", 207 answers settled per record, no email
//! no request, the token kept out of everything shown).

use crate::suite::{BatchHarness, Harness, init, run_batch_suite, run_suite};
use nudge_deliver::{Destination, HubSpotClient, HubSpotConfig, Outcome};
use nudge_model::{Action, AttrValue};
use nudge_testkit::fake_hubspot::{GROUPS_PATH, PROPERTIES_BATCH_PATH, PROPERTIES_PATH, UPSERT_PATH};
use nudge_testkit::{FakeHubSpot, FakeHubSpotConfig, FakeHubSpotHandle, HubSpotMode};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const TOKEN: &str = "pat-na1-compliance-suite-token-0001";
const WRONG_TOKEN: &str = "pat-na1-not-this-account-0002";

struct HubSpotHarness {
    fake: FakeHubSpotHandle,
}

impl HubSpotHarness {
    async fn start(config: FakeHubSpotConfig) -> Self {
        init();
        HubSpotHarness { fake: FakeHubSpot::start(config).await.unwrap() }
    }

    fn config(&self, token: &str) -> HubSpotConfig {
        HubSpotConfig::new(token).with_base_url(self.fake.base_url()).allowing_private()
    }

    fn hubspot(&self) -> HubSpotClient {
        HubSpotClient::new(self.config(TOKEN)).unwrap()
    }

    fn paths(&self) -> Vec<String> {
        self.fake.requests().into_iter().map(|r| r.path).collect()
    }
}

fn email(n: u32) -> String {
    format!("customer{n}@example.org")
}

fn profile(n: u32, email: Option<String>) -> Action {
    let mut attributes = BTreeMap::new();
    attributes.insert("ai_churn_risk".to_string(), AttrValue::Number(0.18 + f64::from(n % 10) / 100.0));
    attributes.insert("ai_segment".to_string(), AttrValue::Text("loyal".into()));
    attributes.insert("ai_vip".to_string(), AttrValue::Bool(n.is_multiple_of(2)));
    attributes.insert("ai_scored_at".to_string(), AttrValue::Text("2026-05-01T10:00:00Z".into()));
    Action::UpsertProfile {
        customer: format!("shopify:{}", 880_000 + n).parse().unwrap(),
        email,
        first_name: Some(format!("Lena{n}")),
        last_name: Some("Berg".into()),
        attributes,
    }
}

impl Harness for HubSpotHarness {
    fn name(&self) -> &'static str {
        "hubspot"
    }
    fn client(&self, timeout: Duration) -> Arc<dyn Destination> {
        Arc::new(HubSpotClient::new(self.config(TOKEN).with_timeout(timeout)).unwrap())
    }
    fn client_with_bad_credentials(&self) -> Arc<dyn Destination> {
        Arc::new(HubSpotClient::new(self.config(WRONG_TOKEN)).unwrap())
    }
    fn valid_action(&self, n: u32) -> Action {
        profile(n, Some(email(n)))
    }
    fn invalid_action(&self) -> Action {
        profile(0, None)
    }
    fn throttle(&self, retry_after_secs: u64) {
        self.fake.set_mode(HubSpotMode::Throttle { retry_after_secs, count: 1 });
    }
    fn fail_5xx(&self, status: u16) {
        self.fake.set_mode(HubSpotMode::Fail { status, count: 1 });
    }
    fn stall(&self, delay: Duration) {
        self.fake.set_mode(HubSpotMode::Slow(delay));
    }
    fn normal(&self) {
        self.fake.set_mode(HubSpotMode::Normal);
        self.fake.clear_rejections();
    }
    fn answer_garbage_200(&self) -> bool {
        // HubSpot's error document where the batch answer belongs.
        self.fake.set_mode(HubSpotMode::Fail { status: 200, count: 1 });
        true
    }
    fn requests_seen(&self) -> usize {
        self.fake.requests().len()
    }
    fn secrets(&self) -> Vec<String> {
        vec![TOKEN.to_string(), WRONG_TOKEN.to_string()]
    }
    fn debug_output(&self) -> String {
        let config = self.config(TOKEN);
        format!("{config:?} {config:#?} {:?}", HubSpotClient::new(config.clone()).unwrap())
    }
}

impl BatchHarness for HubSpotHarness {
    fn max_batch(&self) -> usize {
        100
    }
    fn reject_record(&self, n: u32) {
        self.fake.reject_email(&email(n));
    }
    fn fail_record_retryably(&self, _n: u32) -> bool {
        // HubSpot documents no temporary per-record error for batch upserts.
        false
    }
    fn batch_sizes(&self) -> Vec<usize> {
        self.fake.upsert_batch_sizes()
    }
}

#[tokio::test]
async fn hubspot_passes_the_suite() {
    let h = HubSpotHarness::start(FakeHubSpotConfig::new(TOKEN)).await;
    run_suite(&h).await;
    // The first and the last. The stalled attempt came from a new client, whose first request (creating
    // the group) timed out, so its contact was never written.
    let stored: Vec<String> = h.fake.contacts().into_iter().map(|c| c.email).collect();
    assert_eq!(stored, [email(1), email(7)]);
}

#[tokio::test]
async fn hubspot_passes_the_batch_suite() {
    let h = HubSpotHarness::start(FakeHubSpotConfig::new(TOKEN).unlimited()).await;
    run_batch_suite(&h).await;
    assert!(h.fake.contact(&email(2001)).is_none(), "the refused record was not stored");
    assert!(h.fake.contact(&email(2002)).is_some());
}

#[tokio::test]
async fn properties_are_created_once_in_the_group_before_the_first_write() {
    let h = HubSpotHarness::start(FakeHubSpotConfig::new(TOKEN)).await;
    let client = Arc::new(h.hubspot());
    // Concurrent first calls: one group, one batch create, then the writes.
    let tasks: Vec<_> = (1..=4)
        .map(|n| {
            let client = client.clone();
            tokio::spawn(async move { client.deliver(&profile(n, Some(email(n)))).await })
        })
        .collect();
    for t in tasks {
        let o = t.await.unwrap();
        assert!(o.is_delivered(), "{o}");
    }
    let paths = h.paths();
    assert_eq!(paths[0], GROUPS_PATH, "{paths:?}");
    assert_eq!(paths[1], PROPERTIES_BATCH_PATH, "{paths:?}");
    assert!(paths[2..].iter().all(|p| p == UPSERT_PATH), "{paths:?}");
    assert_eq!(h.fake.groups().iter().map(|g| g.0.as_str()).collect::<Vec<_>>(), ["nudge_ai"]);
    let created: Vec<(String, String, String)> =
        h.fake.properties().into_iter().map(|p| (p.name, p.kind, p.group_name)).collect();
    let expect = |n: &str, k: &str| (n.to_string(), k.to_string(), "nudge_ai".to_string());
    assert_eq!(
        created,
        [
            expect("ai_churn_risk", "number"),
            expect("ai_scored_at", "datetime"),
            expect("ai_segment", "string"),
            expect("ai_vip", "bool"),
        ],
        "standard properties (email, firstname, lastname) are never created"
    );
    // Later writes need nothing new: no property call.
    let before = h.fake.requests().len();
    let event = Action::TriggerEvent {
        customer: "shopify:880001".parse().unwrap(),
        email: Some(email(1)),
        name: "AI Reorder Window".into(),
        properties: serde_json::Map::new(),
        value: None,
        time: time::macros::datetime!(2026-05-01 10:00 UTC),
        unique_id: "nudge:reorder:1".into(),
    };
    assert!(client.deliver(&profile(9, Some(email(9)))).await.is_delivered());
    assert_eq!(h.paths()[before..], [UPSERT_PATH.to_string()]);
    // An event needs its two properties: created once, then written.
    assert!(client.deliver(&event).await.is_delivered());
    assert!(client.deliver(&event).await.is_delivered());
    assert_eq!(
        h.paths()[before + 1..],
        [PROPERTIES_BATCH_PATH, UPSERT_PATH, UPSERT_PATH].map(String::from),
        "the group is known; only the new properties are created, once"
    );
    let contact = h.fake.contact(&email(1)).unwrap();
    assert_eq!(contact.properties["ai_last_event"], "AI Reorder Window");
    assert_eq!(contact.properties["ai_last_event_at"], "1777629600000");
    assert_eq!(contact.properties["ai_scored_at"], "1777629600000");
    assert_eq!(contact.properties["firstname"], "Lena1");
    assert_eq!(contact.properties["ai_churn_risk"], "0.19");
}

#[tokio::test]
async fn a_409_on_creation_means_the_property_exists() {
    let h = HubSpotHarness::start(FakeHubSpotConfig::new(TOKEN)).await;
    // Made earlier in HubSpot (by hand, or by another nudge instance).
    h.fake.add_group("nudge_ai");
    h.fake.add_property("ai_segment", "string", "nudge_ai");
    let o = h.hubspot().deliver(&profile(1, Some(email(1)))).await;
    assert!(o.is_delivered(), "{o}");
    let answered: Vec<(String, u16)> = h.fake.requests().into_iter().map(|r| (r.path, r.status)).collect();
    assert_eq!(answered[0], (GROUPS_PATH.to_string(), 409));
    assert_eq!(answered[1], (PROPERTIES_BATCH_PATH.to_string(), 409));
    let singles: Vec<u16> = answered.iter().filter(|(p, _)| p == PROPERTIES_PATH).map(|(_, s)| *s).collect();
    assert_eq!(singles.iter().filter(|s| **s == 409).count(), 1, "{answered:?}");
    assert_eq!(singles.iter().filter(|s| **s == 201).count(), 3, "{answered:?}");
    assert_eq!(answered.last().unwrap(), &(UPSERT_PATH.to_string(), 200));
    assert_eq!(h.fake.contact(&email(1)).unwrap().properties["ai_segment"], "loyal");
}

#[tokio::test]
async fn a_207_settles_each_record_by_its_trace_id() {
    let h = HubSpotHarness::start(FakeHubSpotConfig::new(TOKEN)).await;
    let client = h.hubspot();
    h.fake.reject_email(&email(2));
    let batch = [profile(1, Some(email(1))), profile(2, Some(email(2))), profile(3, Some(email(3)))];
    let outcomes = client.deliver_batch(&batch).await;
    assert!(outcomes[0].is_delivered() && outcomes[2].is_delivered(), "{outcomes:?}");
    match &outcomes[1] {
        Outcome::Rejected { status: Some(207), error, .. } => {
            assert!(
                error.starts_with("VALIDATION_ERROR: ") && error.contains("blocked by the fake"),
                "{error}"
            )
        }
        other => panic!("the refused record is rejected alone: {other}"),
    }
    let last = h.fake.requests().pop().unwrap();
    assert_eq!((last.path.as_str(), last.status), (UPSERT_PATH, 207));
    let sent = last.json().unwrap();
    let traces: Vec<&str> = sent["inputs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["objectWriteTraceId"].as_str().unwrap())
        .collect();
    assert_eq!(traces.len(), 3);
    assert!(traces.iter().all(|t| t.starts_with("nudge-")));
    assert_ne!(traces[0], traces[1]);
    assert!(sent["inputs"].as_array().unwrap().iter().all(|i| i["idProperty"] == "email"));
    h.fake.clear_rejections();

    // Two actions for one email in one call go in two requests (HubSpot refuses duplicate ids).
    let before = h.fake.upsert_batch_sizes().len();
    let twice =
        [profile(4, Some(email(4))), profile(5, Some(email(4).to_uppercase())), profile(6, Some(email(6)))];
    let outcomes = client.deliver_batch(&twice).await;
    assert!(outcomes.iter().all(Outcome::is_delivered), "{outcomes:?}");
    assert_eq!(h.fake.upsert_batch_sizes()[before..], [2, 1]);

    // A property deleted in HubSpot: the record retries, and the next attempt creates it again.
    h.fake.remove_property("ai_vip");
    let o = client.deliver(&profile(7, Some(email(7)))).await;
    assert!(matches!(&o, Outcome::Retry { error, .. } if error.contains("PROPERTY_DOESNT_EXIST")), "{o}");
    let o = client.deliver(&profile(7, Some(email(7)))).await;
    assert!(o.is_delivered(), "{o}");
    assert!(h.fake.properties().iter().any(|p| p.name == "ai_vip"));
}

#[tokio::test]
async fn no_email_and_unsupported_actions_are_refused_without_a_request() {
    let h = HubSpotHarness::start(FakeHubSpotConfig::new(TOKEN)).await;
    let client = h.hubspot();
    let list = Action::AddToList {
        customer: "shopify:1".parse().unwrap(),
        email: Some(email(1)),
        list_id: "7".into(),
    };
    let alert = Action::Alert {
        customer: "shopify:1".parse().unwrap(),
        flow: "vip".into(),
        text: "hi".into(),
        time: time::OffsetDateTime::now_utc(),
        unique_id: "a".into(),
    };
    let outcomes = client.deliver_batch(&[profile(1, None), list, alert]).await;
    let errors: Vec<&str> = outcomes
        .iter()
        .map(|o| match o {
            Outcome::Rejected { status: None, error, .. } => error.as_str(),
            other => panic!("refused client-side: {other}"),
        })
        .collect();
    assert_eq!(errors[0], "HubSpot contacts are keyed by email; this customer has none");
    assert!(errors[1].contains("lists are built from contact properties"), "{}", errors[1]);
    assert!(errors[2].contains("does not take alerts"), "{}", errors[2]);
    assert!(h.fake.requests().is_empty(), "nothing was sent: {:?}", h.paths());
}

#[tokio::test]
async fn the_token_never_shows() {
    let h = HubSpotHarness::start(FakeHubSpotConfig::new(TOKEN)).await;
    let mut shown =
        vec![h.debug_output(), format!("{:?}", HubSpotClient::new(h.config(WRONG_TOKEN)).unwrap())];
    let bad = h.client_with_bad_credentials().deliver(&profile(1, Some(email(1)))).await;
    assert!(matches!(bad, Outcome::Rejected { status: Some(401), .. }), "{bad}");
    assert!(bad.error().unwrap().contains("INVALID_AUTHENTICATION"), "{bad}");
    shown.push(format!("{bad} {bad:?}"));
    h.fake.set_mode(HubSpotMode::Fail { status: 403, count: 1 });
    let o = h.hubspot().deliver(&profile(2, Some(email(2)))).await;
    assert!(matches!(o, Outcome::Rejected { status: Some(403), .. }), "{o}");
    assert!(o.error().unwrap().contains("crm.schemas.contacts.write"), "{o}");
    shown.push(format!("{o} {o:?}"));
    let all = shown.join("\n");
    assert!(all.contains("[redacted]"), "{all}");
    for secret in [TOKEN, WRONG_TOKEN] {
        assert!(!all.contains(secret), "{all}");
    }
    // The token went where it belongs.
    assert!(
        h.fake
            .requests()
            .iter()
            .all(|r| r.authorization.as_deref().is_some_and(|a| a.starts_with("Bearer pat-")))
    );
}

#[tokio::test]
async fn rate_limit_answers_carry_the_right_wait() {
    // The secondly limit: no Retry-After from HubSpot, so the 10-second window.
    let h = HubSpotHarness::start(FakeHubSpotConfig {
        per_ten_seconds: Some(3),
        ..FakeHubSpotConfig::new(TOKEN)
    })
    .await;
    let client = HubSpotClient::new(h.config(TOKEN).with_rate(190)).unwrap();
    // Group, batch create, upsert: three requests fill the window.
    assert!(client.deliver(&profile(1, Some(email(1)))).await.is_delivered());
    let o = client.deliver(&profile(2, Some(email(2)))).await;
    assert!(
        matches!(o, Outcome::Retry { status: Some(429), retry_after: Some(d), .. } if d == Duration::from_secs(10)),
        "{o}"
    );
    let last = h.fake.requests().pop().unwrap();
    assert_eq!(last.status, 429);

    // The daily limit: wait for the next day (UTC), far longer than the window.
    let h = HubSpotHarness::start(FakeHubSpotConfig {
        per_day: Some(3),
        ..FakeHubSpotConfig::new(TOKEN).unlimited()
    })
    .await;
    let client = h.hubspot();
    assert!(client.deliver(&profile(1, Some(email(1)))).await.is_delivered());
    let o = client.deliver(&profile(2, Some(email(2)))).await;
    match o {
        Outcome::Retry { status: Some(429), retry_after: Some(d), ref error, .. } => {
            assert!(d >= Duration::from_secs(60) && d <= Duration::from_secs(86_400), "{d:?}");
            assert!(error.contains("daily"), "{error}");
        }
        other => panic!("a daily 429 is a long retry: {other}"),
    }
}

#[tokio::test]
async fn the_client_uses_one_ten_second_window_of_the_configured_rate() {
    init();
    let client = HubSpotClient::new(HubSpotConfig::new(TOKEN)).unwrap();
    assert_eq!(client.rate_windows(), vec![(100, Duration::from_secs(10))]);
    assert_eq!(client.max_batch(), 100);
    let client = HubSpotClient::new(HubSpotConfig::new(TOKEN).with_rate(190).with_batch_size(25)).unwrap();
    assert_eq!(client.rate_windows(), vec![(190, Duration::from_secs(10))]);
    assert_eq!(client.max_batch(), 25);
    assert!(HubSpotClient::new(HubSpotConfig::new(TOKEN).with_rate(191)).is_err());
}
