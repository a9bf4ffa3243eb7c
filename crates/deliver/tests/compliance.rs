//! The destination compliance suite: one list of behaviours every connector must show against its faithful
//! fake, run over each connector.
//!
//! It lives in `deliver`'s tests because it needs both sides: the connectors (this crate) and the fakes
//! (`nudge-testkit`, which must not depend on the connectors it checks). A connector joins by
//! implementing [`Harness`] — how to build its client against its fake, with good and bad credentials,
//! which action is valid and which invalid, and how to make the fake throttle, fail and stall — and by a
//! `#[tokio::test]` calling [`run_suite`]. Connector-specific rules (410 for webhooks, Slack's disabling
//! answers) follow the suite. Klaviyo, webhooks and Slack run it.

use nudge_deliver::{
    Destination, Outcome, RateLimit, SlackClient, SlackConfig, WebhookClient, WebhookConfig,
};
use nudge_model::Action;
use nudge_testkit::fake_slack::DEFAULT_PATH;
use nudge_testkit::{
    FakeSlack, FakeSlackConfig, FakeSlackHandle, FakeWebhook, FakeWebhookHandle, SlackMode, WebhookMode,
};
use std::sync::Arc;
use std::time::Duration;
use time::macros::datetime;

/// What the suite needs to know about one connector and its fake.
trait Harness {
    fn name(&self) -> &'static str;
    /// A client the fake accepts, with this per-attempt timeout.
    fn client(&self, timeout: Duration) -> Arc<dyn Destination>;
    /// A client whose credentials (signature, token) the fake refuses.
    fn client_with_bad_credentials(&self) -> Arc<dyn Destination>;
    /// An action the connector sends; `n` makes each one distinct.
    fn valid_action(&self, n: u32) -> Action;
    /// An action the connector must refuse before sending anything.
    fn invalid_action(&self) -> Action;
    fn throttle(&self, retry_after_secs: u64);
    fn fail_5xx(&self, status: u16);
    fn stall(&self, delay: Duration);
    fn normal(&self);
    /// Requests the fake has received so far.
    fn requests_seen(&self) -> usize;
    /// Every credential that must never appear in an outcome or in `Debug` output.
    fn secrets(&self) -> Vec<String>;
    /// The `Debug` output of a client and of its configuration.
    fn debug_output(&self) -> String;
}

async fn run_suite(h: &dyn Harness) {
    let name = h.name();
    let client = h.client(Duration::from_secs(5));
    let mut shown = vec![h.debug_output()];
    let mut check = |o: &Outcome| shown.push(format!("{o} {o:?}"));

    let o = client.deliver(&h.valid_action(1)).await;
    check(&o);
    assert!(o.is_delivered(), "{name}: a valid action is delivered: {o}");

    let o = h.client_with_bad_credentials().deliver(&h.valid_action(2)).await;
    check(&o);
    assert!(
        matches!(o, Outcome::Rejected { status: Some(400..=499), .. }),
        "{name}: refused credentials are a permanent rejection: {o}"
    );

    h.throttle(7);
    let o = client.deliver(&h.valid_action(3)).await;
    check(&o);
    match &o {
        Outcome::Retry { status: Some(429), retry_after, .. } => {
            assert_eq!(*retry_after, Some(Duration::from_secs(7)), "{name}: Retry-After is carried")
        }
        other => panic!("{name}: 429 must be a retry: {other}"),
    }
    h.normal();

    h.fail_5xx(503);
    let o = client.deliver(&h.valid_action(4)).await;
    check(&o);
    assert!(matches!(o, Outcome::Retry { status: Some(503), .. }), "{name}: 5xx is a retry: {o}");
    h.fail_5xx(500);
    let o = client.deliver(&h.valid_action(5)).await;
    assert!(matches!(o, Outcome::Retry { status: Some(500), .. }), "{name}: 500 is a retry: {o}");
    h.normal();

    h.stall(Duration::from_secs(3));
    let impatient = h.client(Duration::from_millis(300));
    let o = impatient.deliver(&h.valid_action(6)).await;
    check(&o);
    assert!(matches!(o, Outcome::Retry { status: None, .. }), "{name}: a timeout is a retry: {o}");
    h.normal();

    let before = h.requests_seen();
    let o = client.deliver(&h.invalid_action()).await;
    check(&o);
    assert!(
        matches!(o, Outcome::Rejected { status: None, .. }),
        "{name}: invalid is rejected client-side: {o}"
    );
    assert_eq!(h.requests_seen(), before, "{name}: nothing is sent for an invalid action");

    let o = client.deliver(&h.valid_action(7)).await;
    assert!(o.is_delivered(), "{name}: the client works again after the failures: {o}");

    let all = shown.join("\n");
    for secret in h.secrets() {
        assert!(!all.contains(&secret), "{name}: a credential shows in an outcome or Debug output:\n{all}");
    }
}

fn alert(n: u32, text: &str) -> Action {
    Action::Alert {
        customer: "shopify:880012".parse().unwrap(),
        flow: "vip_at_risk".into(),
        text: text.into(),
        time: datetime!(2026-05-01 10:00 UTC) + time::Duration::seconds(i64::from(n)),
        unique_id: format!("nudge:vip-at-risk:{n}"),
    }
}

fn trigger_event(n: u32) -> Action {
    Action::TriggerEvent {
        customer: "shopify:880012".parse().unwrap(),
        email: Some("lena@example.org".into()),
        name: "AI Reorder Window".into(),
        properties: serde_json::Map::new(),
        value: None,
        time: time::OffsetDateTime::now_utc(),
        unique_id: format!("nudge:reorder:{n}"),
    }
}

// --- Standard Webhooks -------------------------------------------------------------------------------

const SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw3Mq2kbhnVQs=";
const OTHER_SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";

struct WebhookHarness {
    fake: FakeWebhookHandle,
}

impl WebhookHarness {
    fn config(&self, secret: &str) -> WebhookConfig {
        WebhookConfig::new("crm", self.fake.url(), secret).allowing_private()
    }
}

impl Harness for WebhookHarness {
    fn name(&self) -> &'static str {
        "webhook"
    }
    fn client(&self, timeout: Duration) -> Arc<dyn Destination> {
        Arc::new(WebhookClient::new(self.config(SECRET).with_timeout(timeout)).unwrap())
    }
    fn client_with_bad_credentials(&self) -> Arc<dyn Destination> {
        Arc::new(WebhookClient::new(self.config(OTHER_SECRET)).unwrap())
    }
    fn valid_action(&self, n: u32) -> Action {
        trigger_event(n)
    }
    fn invalid_action(&self) -> Action {
        alert(0, &"x".repeat(nudge_deliver::webhook::request::MAX_BODY_BYTES))
    }
    fn throttle(&self, retry_after_secs: u64) {
        self.fake.set_mode(WebhookMode::Throttle { retry_after_secs, count: 1 });
    }
    fn fail_5xx(&self, status: u16) {
        self.fake.set_mode(WebhookMode::Fail { status, count: 1 });
    }
    fn stall(&self, delay: Duration) {
        self.fake.set_mode(WebhookMode::Slow(delay));
    }
    fn normal(&self) {
        self.fake.set_mode(WebhookMode::Normal);
    }
    fn requests_seen(&self) -> usize {
        self.fake.received().len()
    }
    fn secrets(&self) -> Vec<String> {
        vec![SECRET.into(), SECRET.trim_start_matches("whsec_").into()]
    }
    fn debug_output(&self) -> String {
        let config = self.config(SECRET);
        format!("{:?} {config:?} {config:#?}", WebhookClient::new(config.clone()).unwrap())
    }
}

fn init() {
    nudge_testkit::ensure_crypto_provider();
}

#[tokio::test]
async fn webhook_passes_the_suite() {
    init();
    let h = WebhookHarness { fake: FakeWebhook::start(SECRET).await.unwrap() };
    run_suite(&h).await;
    // Accepted: the first, the stalled one (answered too late) and the last; nothing twice.
    assert_eq!(h.fake.accepted().len(), 3);
    assert_eq!(h.fake.duplicates(), 0);
}

#[tokio::test]
async fn webhook_retries_keep_the_id_and_sign_each_attempt() {
    init();
    let fake = FakeWebhook::start(SECRET).await.unwrap();
    let h = WebhookHarness { fake };
    let client = h.client(Duration::from_secs(5));
    let action = alert(1, "VIP customer shopify:880012 at churn risk 0.81");
    h.fake.set_mode(WebhookMode::Fail { status: 502, count: 1 });
    assert!(matches!(client.deliver(&action).await, Outcome::Retry { status: Some(502), .. }));
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert!(client.deliver(&action).await.is_delivered());
    // A third attempt (a retry after a lost answer) is verified and recognised as a duplicate.
    assert!(client.deliver(&action).await.is_delivered());
    let received = h.fake.received();
    assert_eq!(received.len(), 3);
    let ids: Vec<_> = received.iter().map(|r| r.header("webhook-id").unwrap().to_string()).collect();
    assert!(ids.iter().all(|id| *id == ids[0]), "{ids:?}");
    assert_eq!(ids[0], nudge_deliver::webhook::webhook_id(&action));
    let ts: Vec<i64> =
        received.iter().map(|r| r.header("webhook-timestamp").unwrap().parse().unwrap()).collect();
    assert!(ts[1] > ts[0], "each attempt is signed at its own time: {ts:?}");
    assert_eq!(h.fake.accepted().len(), 1);
    assert_eq!(h.fake.duplicates(), 1);
    let accepted = &h.fake.accepted()[0];
    assert_eq!(accepted.event_type, "nudge.alert");
    assert_eq!(accepted.json["data"]["text"], "VIP customer shopify:880012 at churn risk 0.81");
    assert_eq!(received[1].header("content-type"), Some("application/json"));
}

#[tokio::test]
async fn webhook_410_disables_the_endpoint_and_redirects_are_not_followed() {
    init();
    let h = WebhookHarness { fake: FakeWebhook::start(SECRET).await.unwrap() };
    let client = h.client(Duration::from_secs(5));
    h.fake.set_mode(WebhookMode::Redirect);
    let o = client.deliver(&trigger_event(1)).await;
    assert!(matches!(o, Outcome::Rejected { status: Some(308), .. }), "{o}");
    assert!(o.error().unwrap().contains("redirect"), "{o}");
    assert_eq!(h.fake.received().len(), 1, "the redirect was not followed");

    h.fake.set_mode(WebhookMode::Garbage);
    let o = client.deliver(&trigger_event(2)).await;
    assert!(matches!(o, Outcome::Retry { status: None, .. }), "an answer that is not HTTP is a retry: {o}");

    h.fake.set_mode(WebhookMode::Gone);
    let o = client.deliver(&trigger_event(3)).await;
    assert!(matches!(o, Outcome::Rejected { status: Some(410), .. }), "{o}");
    assert!(o.error().unwrap().contains("endpoint is gone"), "{o}");
    h.fake.set_mode(WebhookMode::Normal);
    let seen = h.fake.received().len();
    let o = client.deliver(&trigger_event(4)).await;
    assert!(matches!(o, Outcome::Rejected { status: None, .. }), "{o}");
    assert_eq!(h.fake.received().len(), seen, "a gone endpoint gets no more requests");
}

#[tokio::test]
async fn webhook_rotation_signs_with_the_old_and_the_new_secret() {
    init();
    // The receiver still verifies with the old secret; the sender has moved to the new one.
    let fake = FakeWebhook::start(OTHER_SECRET).await.unwrap();
    let only_new =
        WebhookClient::new(WebhookConfig::new("crm", fake.url(), SECRET).allowing_private()).unwrap();
    let o = only_new.deliver(&trigger_event(1)).await;
    assert!(matches!(o, Outcome::Rejected { status: Some(401), .. }), "{o}");
    let mut rotating = WebhookConfig::new("crm", fake.url(), SECRET).allowing_private();
    rotating.previous_secrets = vec![OTHER_SECRET.into()];
    let client = WebhookClient::new(rotating).unwrap();
    assert!(client.deliver(&trigger_event(2)).await.is_delivered());
    let signature = fake.accepted()[0].signature.clone();
    assert_eq!(signature.split(' ').filter(|s| s.starts_with("v1,")).count(), 2, "{signature}");
    assert!(!format!("{client:?}").contains("C2FVsBQIhrscChlQIMV"));
}

#[tokio::test]
async fn webhook_events_filter_refuses_other_types_without_a_request() {
    init();
    let fake = FakeWebhook::start(SECRET).await.unwrap();
    let config =
        WebhookConfig::new("crm", fake.url(), SECRET).allowing_private().with_events(&["nudge.alert"]);
    let client = WebhookClient::new(config).unwrap();
    let o = client.deliver(&trigger_event(1)).await;
    assert!(matches!(o, Outcome::Rejected { status: None, .. }), "{o}");
    assert!(client.deliver(&alert(1, "hello")).await.is_delivered());
    assert_eq!(fake.received().len(), 1);
}

#[test]
fn webhook_clients_refuse_internal_hosts_without_the_flag() {
    init();
    let e = WebhookClient::new(WebhookConfig::new("crm", "http://127.0.0.1:9/hook", SECRET)).unwrap_err();
    assert!(e.to_string().contains("private or internal"), "{e}");
    let e =
        WebhookClient::new(WebhookConfig::new("crm", "https://hooks.example.com/in", "whsec_")).unwrap_err();
    assert!(e.to_string().contains("secret"), "{e}");
}

// --- Slack -------------------------------------------------------------------------------------------

struct SlackHarness {
    fake: FakeSlackHandle,
}

impl SlackHarness {
    fn config(&self, url: String, timeout: Duration) -> SlackConfig {
        SlackConfig::new(url)
            .allowing_private()
            .with_timeout(timeout)
            .with_rate_limit(RateLimit::new(50, 3000))
    }
}

impl Harness for SlackHarness {
    fn name(&self) -> &'static str {
        "slack"
    }
    fn client(&self, timeout: Duration) -> Arc<dyn Destination> {
        Arc::new(SlackClient::new(self.config(self.fake.webhook_url(), timeout)).unwrap())
    }
    fn client_with_bad_credentials(&self) -> Arc<dyn Destination> {
        let url = self.fake.webhook_url().replace("fakeSlackWebhookToken0001", "revokedToken");
        Arc::new(SlackClient::new(self.config(url, Duration::from_secs(5))).unwrap())
    }
    fn valid_action(&self, n: u32) -> Action {
        alert(n, &format!("Customer shopify:880012 crossed churn risk 0.8 (alert {n})"))
    }
    fn invalid_action(&self) -> Action {
        trigger_event(1)
    }
    fn throttle(&self, retry_after_secs: u64) {
        self.fake.set_mode(SlackMode::Throttle { retry_after_secs, count: 1 });
    }
    fn fail_5xx(&self, status: u16) {
        self.fake.set_mode(SlackMode::Answer { status, body: "rollup_error".into(), count: 1 });
    }
    fn stall(&self, delay: Duration) {
        self.fake.set_mode(SlackMode::Slow(delay));
    }
    fn normal(&self) {
        self.fake.set_mode(SlackMode::Normal);
    }
    fn requests_seen(&self) -> usize {
        self.fake.requests().len()
    }
    fn secrets(&self) -> Vec<String> {
        vec![self.fake.webhook_url(), "fakeSlackWebhookToken0001".into(), DEFAULT_PATH.into()]
    }
    fn debug_output(&self) -> String {
        let config = self.config(self.fake.webhook_url(), Duration::from_secs(5));
        format!("{:?} {config:?} {config:#?}", SlackClient::new(config.clone()).unwrap())
    }
}

#[tokio::test]
async fn slack_passes_the_suite() {
    init();
    let h = SlackHarness {
        fake: FakeSlack::start(FakeSlackConfig { per_second: None, ..Default::default() }).await.unwrap(),
    };
    run_suite(&h).await;
    let messages = h.fake.messages();
    assert_eq!(messages.len(), 3, "the first, the stalled one (answered too late) and the last");
    assert!(messages[0]["text"].as_str().unwrap().contains("churn risk"));
}

#[tokio::test]
async fn slack_rate_limit_and_disabling_answers() {
    init();
    let fake = FakeSlack::start(FakeSlackConfig::default()).await.unwrap();
    let h = SlackHarness { fake };
    let client = h.client(Duration::from_secs(5));
    // Two messages in one second: Slack's limit answers the second with 429 and Retry-After.
    assert!(client.deliver(&h.valid_action(1)).await.is_delivered());
    let o = client.deliver(&h.valid_action(2)).await;
    assert!(
        matches!(o, Outcome::Retry { status: Some(429), retry_after: Some(d), .. } if d == Duration::from_secs(1)),
        "{o}"
    );
    for (status, answer) in [
        (400, "invalid_payload"),
        (404, "channel_not_found"),
        (410, "channel_is_archived"),
        (403, "action_prohibited"),
    ] {
        let client = h.client(Duration::from_secs(5));
        h.fake.set_mode(SlackMode::Answer { status, body: answer.into(), count: 1 });
        let o = client.deliver(&h.valid_action(3)).await;
        assert!(matches!(o, Outcome::Rejected { status: Some(s), .. } if s == status), "{o}");
        assert!(o.error().unwrap().contains(answer), "{o}");
        assert_eq!(o.endpoint(), "POST slack webhook");
        let seen = h.fake.requests().len();
        let again = client.deliver(&h.valid_action(4)).await;
        if answer == "invalid_payload" {
            tokio::time::sleep(Duration::from_millis(1100)).await;
            assert!(
                client.deliver(&h.valid_action(5)).await.is_delivered(),
                "a bad payload does not disable"
            );
        } else {
            assert!(matches!(again, Outcome::Rejected { status: None, .. }), "{answer} disables: {again}");
            assert_eq!(h.fake.requests().len(), seen);
        }
    }
}

// --- Klaviyo -----------------------------------------------------------------------------------------

const KLAVIYO_KEY: &str = "pk_compliance_suite_key";

struct KlaviyoHarness {
    fake: nudge_testkit::fake_klaviyo::FakeKlaviyoHandle,
}

impl KlaviyoHarness {
    fn config(&self, key: &str) -> nudge_deliver::KlaviyoConfig {
        nudge_deliver::KlaviyoConfig::new(key).with_base_url(self.fake.base_url())
    }
}

impl Harness for KlaviyoHarness {
    fn name(&self) -> &'static str {
        "klaviyo"
    }
    fn client(&self, timeout: Duration) -> Arc<dyn Destination> {
        Arc::new(nudge_deliver::KlaviyoClient::new(self.config(KLAVIYO_KEY).with_timeout(timeout)).unwrap())
    }
    fn client_with_bad_credentials(&self) -> Arc<dyn Destination> {
        Arc::new(nudge_deliver::KlaviyoClient::new(self.config("pk_not_this_account")).unwrap())
    }
    fn valid_action(&self, n: u32) -> Action {
        trigger_event(n)
    }
    fn invalid_action(&self) -> Action {
        // Klaviyo takes no alerts: refused before any request.
        alert(0, "a note for the team")
    }
    fn throttle(&self, retry_after_secs: u64) {
        self.fake.set_mode(nudge_testkit::fake_klaviyo::FakeMode::Throttle { retry_after_secs, count: 1 });
    }
    fn fail_5xx(&self, status: u16) {
        self.fake.set_mode(nudge_testkit::fake_klaviyo::FakeMode::Fail5xx { status, count: 1 });
    }
    fn stall(&self, delay: Duration) {
        self.fake.set_mode(nudge_testkit::fake_klaviyo::FakeMode::Slow(delay));
    }
    fn normal(&self) {
        self.fake.set_mode(nudge_testkit::fake_klaviyo::FakeMode::Normal);
    }
    fn requests_seen(&self) -> usize {
        self.fake.requests().len()
    }
    fn secrets(&self) -> Vec<String> {
        vec![KLAVIYO_KEY.to_string(), "pk_not_this_account".to_string()]
    }
    fn debug_output(&self) -> String {
        let config = self.config(KLAVIYO_KEY);
        let client = nudge_deliver::KlaviyoClient::new(config.clone()).unwrap();
        format!("{config:?} {client:?}")
    }
}

#[tokio::test]
async fn klaviyo_passes_the_suite() {
    init();
    let fake = nudge_testkit::fake_klaviyo::FakeKlaviyo::start(
        nudge_testkit::fake_klaviyo::FakeKlaviyoConfig::new(KLAVIYO_KEY),
    )
    .await
    .unwrap();
    let h = KlaviyoHarness { fake };
    run_suite(&h).await;
    // Stored once each: the first event, the stalled one (stored, answered too late) and the last.
    assert_eq!(h.fake.events().len(), 3, "{:?}", h.fake.events());
}
