//! Braze against the fake: the common suite, the batch suite, and Braze's own rules (202 queued, the
//! attribute and list mapping, `$` property keys, the key kept out of everything shown).

use crate::suite::{BatchHarness, Harness, alert, init, run_batch_suite, run_suite};
use nudge_deliver::{BrazeClient, BrazeConfig, Destination, Outcome};
use nudge_model::{Action, AttrValue, Money};
use nudge_testkit::{BrazeMode, FakeBraze, FakeBrazeConfig, FakeBrazeHandle};
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const KEY: &str = "braze-compliance-suite-key-7f3c";
const BAD_KEY: &str = "braze-not-this-workspace-key-91ab";

struct BrazeHarness {
    fake: FakeBrazeHandle,
}

impl BrazeHarness {
    async fn start(config: FakeBrazeConfig) -> Self {
        init();
        BrazeHarness { fake: FakeBraze::start(config).await.unwrap() }
    }

    fn config(&self, key: &str) -> BrazeConfig {
        BrazeConfig::new(key, self.fake.base_url()).allowing_private()
    }

    fn customer(n: u32) -> String {
        format!("shopify:{}", 880_000 + n)
    }
}

fn event_for(customer: &str, n: u32, properties: serde_json::Value) -> Action {
    Action::TriggerEvent {
        customer: customer.parse().unwrap(),
        email: None,
        name: "AI Reorder Window".into(),
        properties: properties.as_object().unwrap().clone(),
        value: None,
        time: time::OffsetDateTime::now_utc(),
        unique_id: format!("nudge:reorder:{n}"),
    }
}

impl Harness for BrazeHarness {
    fn name(&self) -> &'static str {
        "braze"
    }
    fn client(&self, timeout: Duration) -> Arc<dyn Destination> {
        Arc::new(BrazeClient::new(self.config(KEY).with_timeout(timeout)).unwrap())
    }
    fn client_with_bad_credentials(&self) -> Arc<dyn Destination> {
        Arc::new(BrazeClient::new(self.config(BAD_KEY)).unwrap())
    }
    fn valid_action(&self, n: u32) -> Action {
        event_for(&Self::customer(n), n, json!({"predicted_days": 21}))
    }
    fn invalid_action(&self) -> Action {
        // Braze reserves property keys starting with `$`: refused before any request.
        event_for(&Self::customer(999_999), 0, json!({"$revenue": 12}))
    }
    fn throttle(&self, retry_after_secs: u64) {
        self.fake.set_mode(BrazeMode::Throttle { retry_after_secs, count: 1 });
    }
    fn fail_5xx(&self, status: u16) {
        self.fake.set_mode(BrazeMode::Fail { status, count: 1 });
    }
    fn stall(&self, delay: Duration) {
        self.fake.set_mode(BrazeMode::Slow(delay));
    }
    fn normal(&self) {
        self.fake.set_mode(BrazeMode::Normal);
        self.fake.clear_rejections();
    }
    fn answer_garbage_200(&self) -> bool {
        self.fake.set_mode(BrazeMode::NotJson);
        true
    }
    fn requests_seen(&self) -> usize {
        self.fake.requests().len()
    }
    fn secrets(&self) -> Vec<String> {
        vec![KEY.to_string(), BAD_KEY.to_string()]
    }
    fn debug_output(&self) -> String {
        let config = self.config(KEY);
        format!("{config:?} {config:#?} {:?}", BrazeClient::new(config.clone()).unwrap())
    }
}

impl BatchHarness for BrazeHarness {
    fn max_batch(&self) -> usize {
        75
    }
    fn reject_record(&self, n: u32) {
        self.fake.reject_external_id(&Self::customer(n));
    }
    fn fail_record_retryably(&self, _n: u32) -> bool {
        // Braze's per-record errors are all about the record itself; none is documented as temporary.
        false
    }
    fn batch_sizes(&self) -> Vec<usize> {
        self.fake.requests().iter().filter(|r| r.path == "/users/track").map(|r| r.objects).collect()
    }
}

#[tokio::test]
async fn braze_passes_the_suite() {
    let h = BrazeHarness::start(FakeBrazeConfig::new(KEY)).await;
    run_suite(&h).await;
    // Stored once each: the first event, the stalled one (stored, answered too late) and the last.
    let ids: Vec<_> = h.fake.events().iter().map(|e| e.properties["nudge_event_id"].clone()).collect();
    assert_eq!(ids, vec![json!("nudge:reorder:1"), json!("nudge:reorder:6"), json!("nudge:reorder:7")]);
    for r in h.fake.requests() {
        assert!(r.json().is_some_and(|b| b.get("api_key").is_none()), "no api_key in the body");
    }
}

#[tokio::test]
async fn braze_passes_the_batch_suite() {
    let h = BrazeHarness::start(FakeBrazeConfig::new(KEY)).await;
    run_batch_suite(&h).await;
    // The refused record was not stored; its neighbours were.
    let users: Vec<String> = h.fake.events().iter().map(|e| e.user.clone()).collect();
    assert!(users.contains(&BrazeHarness::customer(2000)) && users.contains(&BrazeHarness::customer(2002)));
    assert!(!users.contains(&BrazeHarness::customer(2001)));
    let first = h.fake.requests().into_iter().find(|r| r.objects > 0).unwrap();
    assert_eq!(first.header("authorization"), Some("Bearer [the configured key]"));
    assert_eq!(first.header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn braze_queued_is_delivered() {
    let h = BrazeHarness::start(FakeBrazeConfig::new(KEY)).await;
    h.fake.set_mode(BrazeMode::Queued);
    let client = h.client(Duration::from_secs(5));
    let o = client.deliver(&h.valid_action(1)).await;
    assert!(matches!(o, Outcome::Delivered { status: 202, .. }), "{o}");
    assert_eq!(h.fake.requests()[0].status, 202);
}

#[tokio::test]
async fn braze_a_200_that_is_not_brazes_answer_is_retried() {
    let h = BrazeHarness::start(FakeBrazeConfig::new(KEY)).await;
    h.fake.set_mode(BrazeMode::NotJson);
    let o = h.client(Duration::from_secs(5)).deliver(&h.valid_action(1)).await;
    assert!(matches!(o, Outcome::Retry { status: Some(200), .. }), "{o}");
    assert!(o.error().unwrap().contains("not counted as delivered"), "{o}");
}

#[tokio::test]
async fn braze_attributes_and_lists_land_on_the_user() {
    let h = BrazeHarness::start(FakeBrazeConfig::new(KEY)).await;
    let client = h.client(Duration::from_secs(5));
    let customer = "shopify:880012";
    let profile = Action::UpsertProfile {
        customer: customer.parse().unwrap(),
        email: Some("lena@example.org".into()),
        first_name: Some("Lena".into()),
        last_name: Some("Berg".into()),
        attributes: BTreeMap::from([
            ("ai_churn_risk".to_string(), AttrValue::Number(0.18)),
            ("ai_next_best_category".to_string(), AttrValue::Text("outerwear".into())),
        ]),
    };
    let list = |add: bool, id: &str| {
        let (customer, list_id) = (customer.parse().unwrap(), id.to_string());
        if add {
            Action::AddToList { customer, email: None, list_id }
        } else {
            Action::RemoveFromList { customer, email: None, list_id }
        }
    };
    for action in [profile, list(true, "winback"), list(true, "vip"), list(false, "winback")] {
        let o = client.deliver(&action).await;
        assert!(o.is_delivered(), "{o}");
    }
    let user = h.fake.user(customer).expect("the user is stored under the external_id");
    assert_eq!(user.attribute("email"), Some(&json!("lena@example.org")));
    assert_eq!(user.attribute("first_name"), Some(&json!("Lena")));
    assert_eq!(user.attribute("last_name"), Some(&json!("Berg")));
    assert_eq!(user.attribute("ai_churn_risk").and_then(|v| v.as_f64()), Some(0.18));
    assert_eq!(user.attribute("ai_next_best_category"), Some(&json!("outerwear")));
    assert_eq!(user.array("ai_lists"), vec!["vip".to_string()]);
    assert_eq!(h.fake.users().len(), 1, "one user, identified by external_id only");

    let mut with_value = event_for(customer, 42, json!({"order_id": "6120000000001"}));
    if let Action::TriggerEvent { value, .. } = &mut with_value {
        *value = Some(Money::parse("84.90", "EUR").unwrap());
    }
    assert!(client.deliver(&with_value).await.is_delivered());
    let event = h.fake.events().pop().unwrap();
    assert_eq!((event.user.as_str(), event.name.as_str()), (customer, "AI Reorder Window"));
    assert_eq!(event.properties["nudge_event_id"], json!("nudge:reorder:42"));
    assert_eq!(event.properties["currency"], json!("EUR"));
    assert_eq!(event.properties["value"].as_f64(), Some(84.90));
    assert!(event.time.ends_with('Z'), "{}", event.time);
}

#[tokio::test]
async fn braze_refuses_reserved_keys_long_strings_and_alerts_without_a_request() {
    let h = BrazeHarness::start(FakeBrazeConfig::new(KEY)).await;
    let client = h.client(Duration::from_secs(5));
    let long_attr = Action::UpsertProfile {
        customer: "shopify:1".parse().unwrap(),
        email: None,
        first_name: None,
        last_name: None,
        attributes: BTreeMap::from([("ai_note".to_string(), AttrValue::Text("x".repeat(256)))]),
    };
    let refused = [
        (h.invalid_action(), "starts with `$`"),
        (event_for("shopify:1", 1, json!({"": 1})), "empty"),
        (event_for("shopify:1", 1, json!({"k".repeat(256): 1})), "256 characters"),
        (long_attr, "256 characters"),
        (alert(1, "hello"), "no alerts"),
    ];
    for (action, why) in &refused {
        let o = client.deliver(action).await;
        assert!(matches!(o, Outcome::Rejected { status: None, .. }), "{o}");
        assert!(o.error().unwrap().contains(why), "{why}: {o}");
    }
    assert!(h.fake.requests().is_empty(), "nothing was sent");
}

#[tokio::test]
async fn braze_never_shows_the_key() {
    let h = BrazeHarness::start(FakeBrazeConfig::new(KEY)).await;
    // The fake repeats a refused key in its 401 message, as Braze does; the client must not pass it on.
    let o = h.client_with_bad_credentials().deliver(&h.valid_action(1)).await;
    assert!(matches!(o, Outcome::Rejected { status: Some(401), .. }), "{o}");
    assert!(h.fake.requests()[0].response_body.contains(BAD_KEY), "the fake did repeat it");
    let shown = format!("{o} {o:?} {}", h.debug_output());
    for secret in h.secrets() {
        assert!(!shown.contains(&secret), "{shown}");
    }
    assert!(o.error().unwrap().contains("api_key"), "says what to check: {o}");
    for status in [403, 404, 400] {
        h.fake.set_mode(BrazeMode::Fail { status, count: 1 });
        let o = h.client(Duration::from_secs(5)).deliver(&h.valid_action(2)).await;
        assert!(
            matches!(o, Outcome::Rejected { status: Some(s), .. } if s == status),
            "{status} is final: {o}"
        );
    }
}

#[tokio::test]
async fn braze_a_workspace_with_a_lower_cap_is_explained() {
    // An MAU-priced workspace taking 50 objects per request, with the client left at 75.
    let h = BrazeHarness::start(FakeBrazeConfig::new(KEY).with_batch_cap(50)).await;
    let actions: Vec<Action> = (0..60).map(|n| h.valid_action(n)).collect();
    let outcomes = h.client(Duration::from_secs(5)).deliver_batch(&actions).await;
    for o in &outcomes {
        assert!(matches!(o, Outcome::Rejected { status: Some(400), .. }), "{o}");
        assert!(o.error().unwrap().contains("lower batch_size"), "{o}");
    }
    let fitted = BrazeClient::new(h.config(KEY).with_batch_size(50)).unwrap();
    assert_eq!(fitted.max_batch(), 50);
    let outcomes = fitted.deliver_batch(&actions).await;
    assert!(outcomes.iter().all(Outcome::is_delivered));
    let sizes: Vec<usize> = h.fake.requests()[1..].iter().map(|r| r.objects).collect();
    assert_eq!(sizes, vec![50, 10]);
}

#[tokio::test]
async fn braze_throttling_by_the_fakes_own_limit_carries_brazes_wait() {
    let h = BrazeHarness::start(FakeBrazeConfig::new(KEY).with_rate_limit(1)).await;
    let client = h.client(Duration::from_secs(5));
    assert!(client.deliver(&h.valid_action(1)).await.is_delivered());
    let o = client.deliver(&h.valid_action(2)).await;
    match o {
        Outcome::Retry { status: Some(429), retry_after: Some(wait), .. } => {
            assert!(wait >= Duration::from_secs(1) && wait <= Duration::from_secs(3), "{wait:?}")
        }
        other => panic!("{other}"),
    }
}
