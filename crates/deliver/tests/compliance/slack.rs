//! Slack incoming webhooks against the fake.

use crate::suite::{Harness, alert, init, run_suite, trigger_event};
use nudge_deliver::{Destination, Outcome, RateLimit, SlackClient, SlackConfig};
use nudge_model::Action;
use nudge_testkit::fake_slack::DEFAULT_PATH;
use nudge_testkit::{FakeSlack, FakeSlackConfig, FakeSlackHandle, SlackMode};
use std::sync::Arc;
use std::time::Duration;

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
    fn answer_garbage_200(&self) -> bool {
        self.fake.set_mode(SlackMode::Answer {
            status: 200,
            body: "<html><body>maintenance</body></html>".into(),
            count: 1,
        });
        true
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
