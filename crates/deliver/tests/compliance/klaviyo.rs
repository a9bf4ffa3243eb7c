//! Klaviyo against the fake.

use crate::suite::{Harness, alert, init, run_suite, trigger_event};
use nudge_deliver::Destination;
use nudge_model::Action;
use std::sync::Arc;
use std::time::Duration;

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
