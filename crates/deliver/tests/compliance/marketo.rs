//! Marketo against the fake: the suite, the batch suite, and Marketo's own rules (token lifecycle,
//! 606/607 pauses, Describe field check, custom activities at most once, lists, limits).

use crate::suite::{BatchHarness, Harness, alert, init, run_batch_suite, run_suite};
use nudge_deliver::marketo::request::{ACTIVITIES, SYNC_LEADS, until_quota_reset};
use nudge_deliver::{Destination, ErasureSubject, MarketoClient, MarketoConfig, Outcome};
use nudge_model::{Action, AttrValue};
use nudge_testkit::fake_marketo::DEFAULT_ACTIVITY_TYPE_ID;
use nudge_testkit::{FakeMarketo, FakeMarketoConfig, FakeMarketoHandle, MarketoMode, SkipSpelling};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

const CLIENT_ID: &str = "compliance-marketo-client";
const SECRET: &str = "complianceMarketoSecret0001";
const WRONG_SECRET: &str = "notTheMarketoSecret0002";
const LIST: i64 = 1042;
const LEADS: &str = "/rest/v1/leads.json";
const ACTIVITY_PATH: &str = "/rest/v1/activities/external.json";

struct MarketoHarness {
    fake: FakeMarketoHandle,
}

fn fake_config() -> FakeMarketoConfig {
    FakeMarketoConfig::new(CLIENT_ID, SECRET).with_fields(&["aiChurnRisk", "aiNotes"]).with_list(LIST)
}

async fn start() -> MarketoHarness {
    init();
    MarketoHarness { fake: FakeMarketo::start(fake_config()).await.unwrap() }
}

fn email(n: u32) -> String {
    format!("lead{n}@example.org")
}

fn profile(n: u32) -> Action {
    Action::UpsertProfile {
        customer: format!("shopify:{}", 900_000 + n).parse().unwrap(),
        email: Some(email(n)),
        first_name: Some("Lena".into()),
        last_name: None,
        attributes: BTreeMap::from([(
            "aiChurnRisk".to_string(),
            AttrValue::Number(f64::from(n % 10) / 10.0),
        )]),
    }
}

fn event(n: u32) -> Action {
    Action::TriggerEvent {
        customer: format!("shopify:{}", 900_000 + n).parse().unwrap(),
        email: Some(email(n)),
        name: "AI Reorder Window".into(),
        properties: serde_json::json!({"orderId": format!("order-{n}")}).as_object().unwrap().clone(),
        value: None,
        time: time::OffsetDateTime::now_utc(),
        unique_id: format!("nudge:reorder:{n}"),
    }
}

fn list_action(n: u32, list_id: &str, remove: bool) -> Action {
    let (customer, email, list_id) =
        (format!("shopify:{}", 900_000 + n).parse().unwrap(), Some(email(n)), list_id.to_string());
    if remove {
        Action::RemoveFromList { customer, email, list_id }
    } else {
        Action::AddToList { customer, email, list_id }
    }
}

impl MarketoHarness {
    fn config(&self, secret: &str) -> MarketoConfig {
        MarketoConfig::new(self.fake.base_url(), CLIENT_ID, secret)
            .allowing_private()
            .with_activity_type(DEFAULT_ACTIVITY_TYPE_ID as u64)
    }

    fn marketo(&self, config: MarketoConfig) -> Arc<MarketoClient> {
        Arc::new(MarketoClient::new(config).unwrap())
    }
}

impl Harness for MarketoHarness {
    fn name(&self) -> &'static str {
        "marketo"
    }
    fn client(&self, timeout: Duration) -> Arc<dyn Destination> {
        self.marketo(self.config(SECRET).with_timeout(timeout))
    }
    fn client_with_bad_credentials(&self) -> Arc<dyn Destination> {
        self.marketo(self.config(WRONG_SECRET))
    }
    fn valid_action(&self, n: u32) -> Action {
        profile(n)
    }
    fn invalid_action(&self) -> Action {
        alert(0, "Marketo takes no alerts")
    }
    fn throttle(&self, _retry_after_secs: u64) {
        self.fake.set_mode(MarketoMode::Throttle { count: 1 });
    }
    fn fail_5xx(&self, status: u16) {
        self.fake.set_mode(MarketoMode::FailHttp { status, count: 1 });
    }
    fn stall(&self, delay: Duration) {
        self.fake.set_mode(MarketoMode::Slow(delay));
    }
    fn normal(&self) {
        self.fake.set_mode(MarketoMode::Normal);
        self.fake.clear_skips();
    }
    fn answer_garbage_200(&self) -> bool {
        // A bare JSON string where Marketo's envelope belongs.
        self.fake.set_mode(MarketoMode::FailHttp { status: 200, count: 1 });
        true
    }
    fn requests_seen(&self) -> usize {
        self.fake.requests().len()
    }
    fn secrets(&self) -> Vec<String> {
        vec![SECRET.into(), WRONG_SECRET.into()]
    }
    fn debug_output(&self) -> String {
        let config = self.config(SECRET);
        format!("{config:?} {config:#?} {:?}", MarketoClient::new(config.clone()).unwrap())
    }
    fn throttle_answer(&self, _retry_after_secs: u64) -> (Option<u16>, Duration) {
        // 606 arrives inside an HTTP 200; Marketo's window is 20 s.
        (Some(200), Duration::from_secs(20))
    }
    fn pauses_after_throttle(&self) -> bool {
        true
    }
}

impl BatchHarness for MarketoHarness {
    fn max_batch(&self) -> usize {
        300
    }
    fn reject_record(&self, n: u32) {
        self.fake.skip_email(&email(n), 1003);
    }
    fn fail_record_retryably(&self, _n: u32) -> bool {
        // Marketo's record-level codes (1xxx) are all permanent.
        false
    }
    fn batch_sizes(&self) -> Vec<usize> {
        self.fake.calls_to(LEADS).iter().filter_map(|r| r.records()).collect()
    }
}

#[tokio::test]
async fn marketo_passes_the_suite() {
    let h = start().await;
    run_suite(&h).await;
    for n in [1, 7] {
        assert!(h.fake.lead_by_email(&email(n)).is_some(), "lead {n} stored");
    }
    for n in [2, 3, 4, 5] {
        assert!(h.fake.lead_by_email(&email(n)).is_none(), "lead {n} must not be stored");
    }
}

#[tokio::test]
async fn marketo_passes_the_batch_suite() {
    let h = start().await;
    run_batch_suite(&h).await;
    assert!(h.fake.lead_by_email(&email(2001)).is_none(), "the refused record is not stored");
    assert!(h.fake.lead_by_email(&email(2002)).is_some());
}

#[tokio::test]
async fn marketo_fetches_one_token_for_many_calls_and_sends_it_as_bearer() {
    let h = start().await;
    let client = h.marketo(h.config(SECRET));
    for n in 1..=4 {
        assert!(client.deliver(&profile(n)).await.is_delivered());
    }
    // Concurrent callers of a fresh client share one fetch.
    let fresh = h.marketo(h.config(SECRET));
    let tasks: Vec<_> = (10..18)
        .map(|n| {
            let c = fresh.clone();
            tokio::spawn(async move { c.deliver(&profile(n)).await })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap().is_delivered());
    }
    assert_eq!((client.token_fetches(), fresh.token_fetches()), (1, 1));
    let issued: Vec<serde_json::Value> =
        h.fake.requests().iter().filter(|r| r.is_identity()).filter_map(|r| r.response_json()).collect();
    assert_eq!(issued.len(), 2, "one Identity call per client");
    assert_eq!(issued[0]["access_token"], issued[1]["access_token"], "Identity gives the same token to both");
    for r in h.fake.requests() {
        if r.is_identity() {
            assert_eq!(r.method, "GET");
            for key in ["grant_type", "client_id", "client_secret"] {
                assert!(r.query_keys.iter().any(|k| k == key), "{key} is a query parameter: {}", r.path);
            }
        } else {
            assert_eq!(r.header("authorization"), Some("Bearer [redacted]"), "{}", r.path);
            assert!(r.query_keys.is_empty(), "no access_token in the query: {}", r.path);
            assert_eq!(r.status, 200);
        }
    }
    let sync = &h.fake.calls_to(LEADS)[0];
    assert_eq!(sync.header("content-type"), Some("application/json"));
    let body = sync.json().unwrap();
    assert_eq!(
        (body["action"].as_str(), body["lookupField"].as_str()),
        (Some("createOrUpdate"), Some("email"))
    );
    assert_eq!(body["input"][0]["email"], "lead1@example.org");
    assert_eq!(body["input"][0]["firstName"], "Lena");
    assert_eq!(h.fake.calls_to("/rest/v1/leads/describe.json").len(), 2, "Describe once per client");
}

#[tokio::test]
async fn marketo_refreshes_once_on_602_and_the_call_is_not_lost() {
    let h = start().await;
    let client = h.marketo(h.config(SECRET));
    assert!(client.deliver(&profile(1)).await.is_delivered());
    h.fake.expire_token();
    let o = client.deliver(&profile(2)).await;
    assert!(o.is_delivered(), "{o}");
    assert_eq!(client.token_fetches(), 2);
    let syncs = h.fake.calls_to(LEADS);
    assert_eq!(syncs.len(), 3, "the first, the refused one and its repeat");
    assert_eq!(syncs[1].error_code().as_deref(), Some("602"));
    assert_eq!(syncs[1].body, syncs[2].body, "the same call repeated");
    assert!(h.fake.lead_by_email(&email(2)).is_some());
}

#[tokio::test]
async fn marketo_second_602_is_an_error_not_a_loop() {
    let h = start().await;
    let client = h.marketo(h.config(SECRET));
    assert!(client.deliver(&profile(1)).await.is_delivered());
    h.fake.set_mode(MarketoMode::FailCode { code: 602, count: 5 });
    let o = client.deliver(&profile(2)).await;
    assert!(matches!(o, Outcome::Retry { status: Some(200), .. }), "{o}");
    assert!(o.error().unwrap().contains("602"), "{o}");
    assert_eq!(h.fake.calls_to(LEADS).len(), 3, "one call and one repeat only");
    assert_eq!(client.token_fetches(), 2, "one refresh only");
    assert_eq!(h.fake.mode(), MarketoMode::FailCode { code: 602, count: 3 });
}

#[tokio::test]
async fn marketo_606_pauses_the_destination_for_20_seconds() {
    let h = start().await;
    let client = h.marketo(h.config(SECRET));
    assert!(client.deliver(&profile(1)).await.is_delivered());
    h.fake.set_mode(MarketoMode::Throttle { count: 1 });
    let o = client.deliver_batch(&[profile(2), profile(3)]).await;
    for o in &o {
        assert!(
            matches!(o, Outcome::Retry { retry_after: Some(d), .. } if *d >= Duration::from_secs(20)),
            "{o}"
        );
    }
    assert!(client.paused_for().unwrap() > Duration::from_secs(18));
    let seen = h.fake.requests().len();
    let o = client.deliver(&event(4)).await;
    assert!(
        matches!(o, Outcome::Retry { status: None, retry_after: Some(d), .. } if d > Duration::from_secs(18)),
        "{o}"
    );
    assert_eq!(h.fake.requests().len(), seen, "nothing sent during the 20-s window");
    assert_eq!(
        client.rate_windows(),
        vec![(50, Duration::from_secs(20))],
        "the default budget is 50 per 20 s"
    );
}

#[tokio::test]
async fn marketo_607_pauses_until_the_quota_resets() {
    init();
    let fake = FakeMarketo::start(fake_config().with_daily_quota(2)).await.unwrap();
    let h = MarketoHarness { fake };
    let client = h.marketo(h.config(SECRET));
    assert!(client.deliver(&profile(1)).await.is_delivered(), "Describe and one Sync Leads fit");
    let o = client.deliver(&profile(2)).await;
    let expected = until_quota_reset(time::OffsetDateTime::now_utc());
    match &o {
        Outcome::Retry { status: Some(200), retry_after: Some(d), error, .. } => {
            assert!(error.contains("607"), "{error}");
            assert!(d.abs_diff(expected) < Duration::from_secs(5), "{d:?} vs {expected:?}");
        }
        other => panic!("607 is a retry after the reset: {other}"),
    }
    let seen = h.fake.requests().len();
    let o = client.deliver(&profile(3)).await;
    assert!(matches!(o, Outcome::Retry { status: None, .. }), "{o}");
    assert!(o.error().unwrap().contains("daily quota"), "{o}");
    assert_eq!(h.fake.requests().len(), seen, "paused: nothing sent");
}

#[tokio::test]
async fn marketo_refuses_unknown_fields_before_sending() {
    let h = start().await;
    let client = h.marketo(h.config(SECRET));
    let Action::UpsertProfile { customer, email, .. } = profile(1) else { unreachable!() };
    let typo = Action::UpsertProfile {
        customer,
        email,
        first_name: None,
        last_name: None,
        attributes: BTreeMap::from([("aiChurnRsk".to_string(), AttrValue::Number(0.5))]),
    };
    let outcomes = client.deliver_batch(&[typo.clone(), profile(2)]).await;
    match &outcomes[0] {
        Outcome::Rejected { status: None, error, .. } => {
            assert!(error.contains("`aiChurnRsk`") && error.contains("Admin > Field Management"), "{error}")
        }
        other => panic!("an unknown field is refused client-side: {other}"),
    }
    assert!(outcomes[1].is_delivered());
    let syncs = h.fake.calls_to(LEADS);
    assert_eq!(syncs.len(), 1);
    assert_eq!(syncs[0].records(), Some(1), "only the good record was sent");
    assert!(client.deliver(&typo).await.error().unwrap().contains("aiChurnRsk"));
    assert_eq!(h.fake.calls_to("/rest/v1/leads/describe.json").len(), 1, "Describe is cached");
    assert_eq!(h.fake.calls_to(LEADS).len(), 1);
}

#[tokio::test]
async fn marketo_inserts_one_activity_per_trigger_event_on_the_lead() {
    let h = start().await;
    let client = h.marketo(h.config(SECRET));
    let o = client.deliver(&event(1)).await;
    assert_eq!(o, Outcome::Delivered { endpoint: ACTIVITIES.into(), status: 200 });
    let lead = h.fake.lead_by_email(&email(1)).unwrap();
    let activities = h.fake.activities();
    assert_eq!(activities.len(), 1);
    assert_eq!(activities[0].lead_id, lead.id);
    assert_eq!(activities[0].activity_type_id, DEFAULT_ACTIVITY_TYPE_ID);
    assert_eq!(activities[0].primary_attribute_value, "AI Reorder Window");
    assert_eq!(activities[0].attributes, vec![serde_json::json!({"apiName": "orderId", "value": "order-1"})]);
    assert_eq!(h.fake.calls_to("/rest/v1/leads/describe.json").len(), 0, "events need no Describe");

    let outcomes = client.deliver_batch(&[event(2), event(3), profile(4), event(1)]).await;
    assert!(outcomes.iter().all(Outcome::is_delivered), "{outcomes:?}");
    assert_eq!(outcomes[2].endpoint(), SYNC_LEADS);
    assert_eq!(h.fake.calls_to(ACTIVITY_PATH).len(), 2, "the batch's three activities in one call");
    assert_eq!(h.fake.activities().len(), 4);
    assert_eq!(h.fake.leads().len(), 4, "event 1's lead was found again, not duplicated");

    let no_type = h.marketo(MarketoConfig::new(h.fake.base_url(), CLIENT_ID, SECRET).allowing_private());
    let seen = h.fake.requests().len();
    let o = no_type.deliver(&event(5)).await;
    assert!(
        matches!(o, Outcome::Rejected { status: None, .. })
            && o.error().unwrap().contains("activity_type_id"),
        "{o}"
    );
    assert_eq!(h.fake.requests().len(), seen);
}

#[tokio::test]
async fn marketo_never_repeats_an_activity_insert_after_a_timeout() {
    let h = start().await;
    let client = h.marketo(h.config(SECRET).with_timeout(Duration::from_millis(600)));
    h.fake.set_mode(MarketoMode::SlowOn { path: ACTIVITY_PATH.into(), delay: Duration::from_secs(2) });
    let o = client.deliver(&event(1)).await;
    match &o {
        Outcome::Rejected { endpoint, error, .. } => {
            assert_eq!(endpoint, ACTIVITIES);
            assert!(error.contains("at most once"), "{error}");
        }
        other => panic!("an insert without an answer is not retried: {other}"),
    }
    assert_eq!(h.fake.calls_to(ACTIVITY_PATH).len(), 1, "sent once");
    assert_eq!(h.fake.activities().len(), 1, "and recorded once (the answer was late)");

    // A draft (unapproved) activity type is refused per record, with Marketo's reason.
    init();
    let fake = FakeMarketo::start(fake_config().with_activity_type(100_002, false)).await.unwrap();
    let draft = MarketoClient::new(
        MarketoConfig::new(fake.base_url(), CLIENT_ID, SECRET).allowing_private().with_activity_type(100_002),
    )
    .unwrap();
    let o = draft.deliver(&event(2)).await;
    assert!(matches!(o, Outcome::Rejected { status: Some(200), .. }), "{o}");
    assert!(o.error().unwrap().contains("not approved"), "{o}");
    assert!(fake.activities().is_empty());
}

#[tokio::test]
async fn marketo_settles_skipped_records_in_every_spelling() {
    let h = start().await;
    let client = h.marketo(h.config(SECRET));
    for (i, spelling) in
        [SkipSpelling::Reasons, SkipSpelling::Reason, SkipSpelling::Errors].into_iter().enumerate()
    {
        let n = 10 * (i as u32 + 1);
        h.fake.set_skip_spelling(spelling);
        h.fake.skip_email(&email(n + 1), 1003);
        let outcomes = client.deliver_batch(&[profile(n), profile(n + 1), profile(n + 2)]).await;
        assert!(outcomes[0].is_delivered() && outcomes[2].is_delivered(), "{spelling:?}: {outcomes:?}");
        match &outcomes[1] {
            Outcome::Rejected { status: Some(200), error, .. } => assert!(error.contains("1003"), "{error}"),
            other => panic!("{spelling:?}: {other}"),
        }
    }
    assert_eq!(h.fake.calls_to(LEADS).len(), 3, "no record was resent");
}

#[tokio::test]
async fn marketo_codes_are_retried_or_refused_by_the_table() {
    let h = start().await;
    let client = h.marketo(h.config(SECRET));
    assert!(client.deliver(&profile(1)).await.is_delivered());
    for code in [604, 608, 611, 713, 615, 614] {
        h.fake.set_mode(MarketoMode::FailCode { code, count: 1 });
        let o = client.deliver(&profile(2)).await;
        assert!(matches!(o, Outcome::Retry { status: Some(200), .. }), "{code}: {o}");
        assert!(o.error().unwrap().contains(&code.to_string()), "{o}");
    }
    for code in [603, 605, 609, 610, 612, 613, 616, 701, 711] {
        h.fake.set_mode(MarketoMode::FailCode { code, count: 1 });
        let o = client.deliver(&profile(2)).await;
        assert!(matches!(o, Outcome::Rejected { status: Some(200), .. }), "{code}: {o}");
    }
    h.fake.set_mode(MarketoMode::FailHttp { status: 502, count: 1 });
    assert!(matches!(client.deliver(&profile(2)).await, Outcome::Retry { status: Some(502), .. }));
    assert!(client.deliver(&profile(2)).await.is_delivered());
    assert!(client.paused_for().is_none(), "none of these pauses the destination");
}

#[tokio::test]
async fn marketo_list_membership_changes_after_the_lead_sync() {
    let h = start().await;
    let client = h.marketo(h.config(SECRET));
    let o = client.deliver(&list_action(1, "1042", false)).await;
    assert_eq!(
        o,
        Outcome::Delivered { endpoint: "POST /rest/v1/lists/{listId}/leads.json".into(), status: 200 }
    );
    let lead = h.fake.lead_by_email(&email(1)).unwrap();
    assert_eq!(h.fake.list_members(LIST), Some(vec![lead.id]));
    let add = &h.fake.calls_to("/rest/v1/lists/1042/leads.json")[0];
    assert_eq!(add.json().unwrap(), serde_json::json!({"input": [{"id": lead.id}]}));
    assert!(client.deliver(&list_action(1, "1042", true)).await.is_delivered());
    assert_eq!(h.fake.list_members(LIST), Some(vec![]));
    assert!(
        client.deliver(&list_action(1, "1042", true)).await.is_delivered(),
        "removing a non-member is done"
    );
    let o = client.deliver(&list_action(1, "77", false)).await;
    assert!(
        matches!(o, Outcome::Rejected { status: Some(200), .. }) && o.error().unwrap().contains("1013"),
        "{o}"
    );
    let seen = h.fake.requests().len();
    let o = client.deliver(&list_action(1, "vip-list", false)).await;
    assert!(matches!(o, Outcome::Rejected { status: None, .. }), "{o}");
    assert_eq!(h.fake.requests().len(), seen);
}

#[tokio::test]
async fn marketo_keeps_within_max_in_flight_and_never_syncs_one_lead_twice_at_once() {
    let h = start().await;
    let client = h.marketo(h.config(SECRET).with_max_in_flight(3));
    assert!(client.deliver(&profile(1)).await.is_delivered());
    h.fake.set_mode(MarketoMode::Slow(Duration::from_millis(300)));
    let tasks: Vec<_> = (10..19)
        .map(|n| {
            let c = client.clone();
            tokio::spawn(async move { c.deliver(&profile(n)).await })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap().is_delivered());
    }
    assert_eq!(h.fake.max_in_flight_seen(), 3, "in flight: at most max_in_flight");

    // Two actions for one lead, at the same time and within one batch: one sync at a time.
    let fresh = start().await;
    let client = fresh.marketo(fresh.config(SECRET));
    assert!(client.deliver(&profile(1)).await.is_delivered());
    fresh.fake.set_mode(MarketoMode::Slow(Duration::from_millis(300)));
    let (p2, again) = (profile(2), profile(12 + 90));
    let Action::UpsertProfile { customer, attributes, .. } = again else { unreachable!() };
    let again = Action::UpsertProfile {
        customer,
        email: Some(email(2)),
        first_name: None,
        last_name: None,
        attributes,
    };
    let (a, b) = tokio::join!(client.deliver(&p2), client.deliver(&again));
    assert!(a.is_delivered() && b.is_delivered(), "{a} {b}");
    let outcomes = client.deliver_batch(&[profile(3), list_action(3, "1042", false)]).await;
    assert!(outcomes.iter().all(Outcome::is_delivered), "{outcomes:?}");
    assert_eq!(fresh.fake.max_in_flight_seen(), 1, "the same lead is never synced twice at once");
    let sizes: Vec<_> = fresh.fake.calls_to(LEADS).iter().filter_map(|r| r.records()).collect();
    assert_eq!(sizes, vec![1, 1, 1, 1, 1], "same lookup value: separate calls");
}

#[tokio::test]
async fn marketo_splits_bodies_above_one_megabyte() {
    let h = start().await;
    let client = h.marketo(h.config(SECRET));
    let notes = "n".repeat(300_000);
    let actions: Vec<Action> = (1..=7)
        .map(|n| {
            let Action::UpsertProfile { customer, email, .. } = profile(n) else { unreachable!() };
            Action::UpsertProfile {
                customer,
                email,
                first_name: None,
                last_name: None,
                attributes: BTreeMap::from([("aiNotes".to_string(), AttrValue::Text(notes.clone()))]),
            }
        })
        .collect();
    let outcomes = client.deliver_batch(&actions).await;
    assert!(outcomes.iter().all(Outcome::is_delivered), "{outcomes:?}");
    let syncs = h.fake.calls_to(LEADS);
    assert_eq!(syncs.iter().filter_map(|r| r.records()).collect::<Vec<_>>(), vec![3, 3, 1]);
    assert!(syncs.iter().all(|r| r.body.len() <= 1_000_000 && r.status == 200));
}

#[tokio::test]
async fn marketo_credentials_never_show() {
    let h = start().await;
    let o = h.client_with_bad_credentials().deliver(&profile(1)).await;
    assert!(matches!(o, Outcome::Rejected { status: Some(401), .. }), "{o}");
    assert!(o.error().unwrap().contains("client_secret"), "says what to check: {o}");
    let stalled = h.marketo(h.config(SECRET).with_timeout(Duration::from_millis(300)));
    h.fake.set_mode(MarketoMode::Slow(Duration::from_secs(1)));
    let timed_out = stalled.deliver(&profile(2)).await;
    let shown = format!("{o} {o:?} {timed_out} {timed_out:?} {}", h.debug_output());
    for secret in [SECRET, WRONG_SECRET] {
        assert!(!shown.contains(secret), "{shown}");
    }
    let recorded = format!("{:?}", h.fake.requests());
    assert!(!recorded.contains(SECRET) && !recorded.contains(WRONG_SECRET), "the fake's log is redacted too");
}

#[tokio::test]
async fn marketo_fetches_a_new_token_when_the_old_one_runs_out_without_waiting_for_602() {
    init();
    let fake = FakeMarketo::start(fake_config().with_token_lifetime(Duration::from_secs(3))).await.unwrap();
    let h = MarketoHarness { fake };
    let client = h.marketo(h.config(SECRET));
    assert!(client.deliver(&profile(1)).await.is_delivered());
    assert!(
        client.deliver(&profile(2)).await.is_delivered(),
        "a token with under a minute left is still used"
    );
    assert_eq!(client.token_fetches(), 1);
    tokio::time::sleep(Duration::from_millis(3200)).await;
    assert!(client.deliver(&profile(3)).await.is_delivered());
    assert_eq!(client.token_fetches(), 2, "fetched again once it ran out");
    let codes: Vec<_> = h.fake.requests().iter().filter_map(|r| r.error_code()).collect();
    assert!(codes.is_empty(), "no call was refused for its token: {codes:?}");
}

#[tokio::test]
async fn an_erasure_finds_the_persons_leads_and_deletes_them() {
    let h = start().await;
    let client = h.marketo(h.config(SECRET));
    assert!(client.can_erase());
    for n in [1, 2] {
        assert!(client.deliver(&profile(n)).await.is_delivered());
    }
    assert!(h.fake.lead_by_email(&email(1)).is_some());
    let subject = |email: Option<&str>| ErasureSubject {
        external_ids: vec!["shopify:900001".into()],
        email: email.map(str::to_string),
        phone: None,
    };
    // Marketo finds leads by a field's value; with the lookup field `email`, an id alone finds nothing.
    assert!(matches!(client.erase(&subject(None)).await, Outcome::Rejected { status: None, .. }));
    let bad = h.marketo(h.config(WRONG_SECRET));
    assert!(!bad.erase(&subject(Some(&email(1)))).await.is_delivered(), "refused credentials");
    h.fake.set_mode(MarketoMode::FailHttp { status: 503, count: 1 });
    assert!(matches!(client.erase(&subject(Some(&email(1)))).await, Outcome::Retry { .. }));
    let done = client.erase(&subject(Some("LEAD1@example.org"))).await;
    assert!(matches!(done, Outcome::Delivered { .. }), "{done:?}");
    assert!(h.fake.lead_by_email(&email(1)).is_none(), "the lead is gone");
    assert!(h.fake.lead_by_email(&email(2)).is_some(), "others stay");
    let lookup = h.fake.calls_to("/rest/v1/leads.json").into_iter().rfind(|r| r.method == "GET").unwrap();
    assert!(lookup.path.contains("filterType=email") && lookup.path.contains("fields=id"), "{}", lookup.path);
    let delete = h.fake.calls_to("/rest/v1/leads/delete.json").pop().unwrap();
    let body: serde_json::Value = serde_json::from_slice(&delete.body).unwrap();
    assert_eq!(body["input"].as_array().unwrap().len(), 1);
    // Asked again: nothing is held any more, which is a completed deletion without a delete call.
    let before = h.fake.calls_to("/rest/v1/leads/delete.json").len();
    assert!(client.erase(&subject(Some(&email(1)))).await.is_delivered());
    assert_eq!(h.fake.calls_to("/rest/v1/leads/delete.json").len(), before);
}
