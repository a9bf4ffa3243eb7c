//! Standard Webhooks against the fake receiver.

use crate::suite::{Harness, alert, init, run_suite, trigger_event};
use nudge_deliver::{Destination, Outcome, WebhookClient, WebhookConfig};
use nudge_model::Action;
use nudge_testkit::{FakeWebhook, FakeWebhookHandle, WebhookMode};
use std::sync::Arc;
use std::time::Duration;

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
