//! The behaviours every connector shows against its fake, and helpers the connectors' tests share.

use nudge_deliver::{Destination, Outcome};
use nudge_model::Action;
use std::sync::Arc;
use std::time::Duration;
use time::macros::datetime;

/// What the suite needs to know about one connector and its fake.
pub trait Harness {
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
    /// Makes the fake answer the next request with a 200 that is not the tool's answer (an HTML page, an
    /// error document, a bare string). Returns false for tools where any 2xx is success by contract
    /// (Standard Webhooks, Klaviyo's body-less 202).
    fn answer_garbage_200(&self) -> bool {
        false
    }
    /// Requests the fake has received so far.
    fn requests_seen(&self) -> usize;
    /// Every credential that must never appear in an outcome or in `Debug` output.
    fn secrets(&self) -> Vec<String>;
    /// The `Debug` output of a client and of its configuration.
    fn debug_output(&self) -> String;
    /// What a throttled call comes back as after `throttle(retry_after_secs)`: the status and the wait
    /// the `Retry` carries. Most platforms answer 429 with `Retry-After`; Marketo answers `606` inside an
    /// HTTP 200, and its window is a fixed 20 s whatever the test asked for.
    fn throttle_answer(&self, retry_after_secs: u64) -> (Option<u16>, Duration) {
        (Some(429), Duration::from_secs(retry_after_secs))
    }
    /// Whether the client stays quiet for the throttle's wait after being throttled (Marketo: the next
    /// call no sooner than 20 s later). When true the suite checks that the next action is a `Retry`
    /// sent nowhere, then goes on with a new client.
    fn pauses_after_throttle(&self) -> bool {
        false
    }
}

/// After a throttle: for a connector that pauses itself, checks the pause (a `Retry` carrying the rest of
/// the wait, nothing sent) and returns a fresh client; otherwise returns `client` unchanged.
async fn after_throttle(
    h: &dyn Harness,
    client: Arc<dyn Destination>,
    timeout: Duration,
    wait: Duration,
    n: u32,
) -> Arc<dyn Destination> {
    if !h.pauses_after_throttle() {
        return client;
    }
    let name = h.name();
    let before = h.requests_seen();
    let o = client.deliver(&h.valid_action(n)).await;
    assert!(
        matches!(o, Outcome::Retry { status: None, retry_after: Some(d), .. } if !d.is_zero() && d <= wait),
        "{name}: a paused client answers Retry with the rest of the wait: {o}"
    );
    assert_eq!(h.requests_seen(), before, "{name}: nothing is sent while paused");
    h.client(timeout)
}

pub async fn run_suite(h: &dyn Harness) {
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
    let (throttled, wait) = h.throttle_answer(7);
    match &o {
        Outcome::Retry { status, retry_after, .. } if *status == throttled => {
            assert_eq!(*retry_after, Some(wait), "{name}: the wait is carried")
        }
        other => panic!("{name}: throttling ({throttled:?}) must be a retry: {other}"),
    }
    h.normal();
    let client = after_throttle(h, client, Duration::from_secs(5), wait, 30).await;

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

    if h.answer_garbage_200() {
        let o = client.deliver(&h.valid_action(8)).await;
        check(&o);
        assert!(
            !o.is_delivered(),
            "{name}: a 200 that is not the tool's answer is never a silent success: {o}"
        );
        assert!(!o.error().unwrap_or_default().is_empty(), "{name}: it says why: {o}");
        h.normal();
    }

    let o = client.deliver(&h.valid_action(7)).await;
    assert!(o.is_delivered(), "{name}: the client works again after the failures: {o}");

    let all = shown.join("\n");
    for secret in h.secrets() {
        assert!(!all.contains(&secret), "{name}: a credential shows in an outcome or Debug output:\n{all}");
    }
}

/// What the batch part of the suite needs from a connector that sends several records per request.
#[allow(dead_code)] // Used by the batching connectors' tests.
pub trait BatchHarness: Harness {
    /// The most records the connector puts in one request with the harness's client.
    fn max_batch(&self) -> usize;
    /// Makes the fake refuse the record of `valid_action(n)` for good, inside a 2xx answer (the tool's
    /// own per-record error shape).
    fn reject_record(&self, n: u32);
    /// Makes the fake fail the record of `valid_action(n)` with a per-record error the tool documents as
    /// temporary. Returns false when the tool has no such per-record answer.
    fn fail_record_retryably(&self, n: u32) -> bool;
    /// How many records each batch request the fake has received so far carried, in arrival order.
    fn batch_sizes(&self) -> Vec<usize>;
}

/// The batch behaviours. `valid_action(n)` must give a different customer for each `n`, because a batch
/// never carries two items of one customer.
#[allow(dead_code)] // Used by the batching connectors' tests.
pub async fn run_batch_suite(h: &dyn BatchHarness) {
    let name = h.name();
    let client = h.client(Duration::from_secs(10));
    let max = h.max_batch();
    assert!(max > 1, "{name}: a batching connector carries more than one record per request");
    assert_eq!(client.max_batch(), max, "{name}: the client reports its batch size");

    // Oversized: 2 × max + 1 records go out in three requests, none above the maximum, all delivered.
    let actions: Vec<Action> = (1000..1000 + 2 * max as u32 + 1).map(|n| h.valid_action(n)).collect();
    let before = h.batch_sizes().len();
    let outcomes = client.deliver_batch(&actions).await;
    assert_eq!(outcomes.len(), actions.len(), "{name}: one outcome per action");
    for o in &outcomes {
        assert!(o.is_delivered(), "{name}: every record of a good batch is delivered: {o}");
    }
    let sizes = h.batch_sizes()[before..].to_vec();
    assert_eq!(sizes.iter().sum::<usize>(), actions.len(), "{name}: every record sent once: {sizes:?}");
    assert!(sizes.iter().all(|s| *s <= max), "{name}: no request above {max}: {sizes:?}");
    assert_eq!(sizes.len(), 3, "{name}: as few requests as the limit allows: {sizes:?}");

    // Partial success: only the refused record is rejected, with the tool's reason.
    h.reject_record(2001);
    let batch = [h.valid_action(2000), h.valid_action(2001), h.valid_action(2002)];
    let outcomes = client.deliver_batch(&batch).await;
    assert!(outcomes[0].is_delivered() && outcomes[2].is_delivered(), "{name}: {outcomes:?}");
    match &outcomes[1] {
        Outcome::Rejected { error, .. } => assert!(!error.is_empty(), "{name}: the reason is kept"),
        other => panic!("{name}: a record refused inside a 2xx is rejected alone: {other}"),
    }
    h.normal();

    if h.fail_record_retryably(3001) {
        let batch = [h.valid_action(3000), h.valid_action(3001)];
        let outcomes = client.deliver_batch(&batch).await;
        assert!(outcomes[0].is_delivered(), "{name}: {outcomes:?}");
        assert!(
            matches!(outcomes[1], Outcome::Retry { .. }),
            "{name}: a temporary record error retries alone"
        );
        h.normal();
    }

    // A whole request throttled: every record in it is a retry carrying the wait.
    h.throttle(3);
    let batch = [h.valid_action(4000), h.valid_action(4001)];
    let outcomes = client.deliver_batch(&batch).await;
    for o in &outcomes {
        assert!(matches!(o, Outcome::Retry { retry_after: Some(_), .. }), "{name}: throttled batch: {o}");
    }
    h.normal();
    let (_, wait) = h.throttle_answer(3);
    let client = after_throttle(h, client, Duration::from_secs(10), wait, 4002).await;

    // An invalid record is refused client-side; the others still go, in one request.
    let before = h.batch_sizes().len();
    let batch = [h.valid_action(5000), h.invalid_action(), h.valid_action(5001)];
    let outcomes = client.deliver_batch(&batch).await;
    assert!(outcomes[0].is_delivered() && outcomes[2].is_delivered(), "{name}: {outcomes:?}");
    assert!(
        matches!(outcomes[1], Outcome::Rejected { status: None, .. }),
        "{name}: invalid refused client-side: {}",
        outcomes[1]
    );
    assert_eq!(h.batch_sizes()[before..].to_vec(), vec![2], "{name}: the valid two went together");
}

pub fn alert(n: u32, text: &str) -> Action {
    Action::Alert {
        customer: "shopify:880012".parse().unwrap(),
        flow: "vip_at_risk".into(),
        text: text.into(),
        time: datetime!(2026-05-01 10:00 UTC) + time::Duration::seconds(i64::from(n)),
        unique_id: format!("nudge:vip-at-risk:{n}"),
    }
}

pub fn trigger_event(n: u32) -> Action {
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

pub fn init() {
    nudge_testkit::ensure_crypto_provider();
}
