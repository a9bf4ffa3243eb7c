//! Braze Currents through the source compliance suite, plus its contract cases (api-contracts cases
//! 52–54, api-contracts-2 cases 5.1–5.3): probes, forward compatibility, malformed events, machine opens,
//! clicks with and without link aliasing, anonymous users and repeated ids.

use crate::source_suite::{Request, SourceHarness, run_suite};
use nudge_ingest::braze_currents::{BrazeCurrentsConfig, BrazeCurrentsSource};
use nudge_ingest::source::{Inbound, Parsed, Source, StoredView, Verified};
use nudge_ingest::{Headers, Rejection};
use nudge_model::behaviour::EngagementKind;
use nudge_model::{CustomerId, Event};
use nudge_testkit::braze_currents_sender::{braze_batch, braze_event, braze_headers};
use nudge_testkit::klaviyo_webhook_sender::{EmailAction, EmailEngagement};
use serde_json::{Value, json};
use std::sync::Arc;
use time::OffsetDateTime;

const TOKEN: &str = "currents-token-0123456789abcdef";
const NOW: i64 = 1_780_000_000_000;

fn source() -> BrazeCurrentsSource {
    BrazeCurrentsSource::new(BrazeCurrentsConfig { token: TOKEN.into() })
}

fn t() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(NOW / 1000 - 60).unwrap()
}

fn open_and_click(n: u32) -> Vec<Value> {
    [
        EmailEngagement::new(EmailAction::Opened, format!("b{n}-open"), t())
            .external_id("shopify:880012")
            .email("ana@example.com")
            .campaign("Spring sale"),
        EmailEngagement::new(EmailAction::Clicked, format!("b{n}-click"), t())
            .external_id("shopify:880012")
            .url("https://shop.example/sale"),
    ]
    .iter()
    .map(|e| braze_event(e, "5f0c-braze"))
    .collect()
}

fn authed(body: Vec<u8>, token: &str) -> Request {
    Request { headers: braze_headers(token), body }
}

struct Braze;

impl SourceHarness for Braze {
    fn source(&self) -> Arc<dyn Source> {
        Arc::new(source())
    }
    fn genuine(&self, n: u32, _now_ms: i64) -> Request {
        authed(braze_batch(open_and_click(n)), TOKEN)
    }
    fn retry(&self, n: u32, now_ms: i64) -> Request {
        self.genuine(n, now_ms)
    }
    fn wrongly_signed(&self, n: u32, _now_ms: i64) -> Request {
        authed(braze_batch(open_and_click(n)), "another-token-0123456789abcdef")
    }
    fn unsigned(&self, n: u32, now_ms: i64) -> Request {
        let mut r = self.genuine(n, now_ms);
        r.headers.retain(|(k, _)| k != "authorization");
        r
    }
    fn stale(&self, _n: u32, _now_ms: i64) -> Option<Request> {
        None
    }
    fn signed(&self, body: &[u8], _now_ms: i64) -> Request {
        authed(body.to_vec(), TOKEN)
    }
    fn signs_body(&self) -> bool {
        false
    }
    fn order_versions(&self) -> [(String, Vec<u8>); 2] {
        unreachable!("Currents carries no orders")
    }
    fn has_orders(&self) -> bool {
        false
    }
    fn customer_source(&self) -> Option<&'static str> {
        Some("shopify")
    }
}

#[test]
fn braze_currents_passes_the_source_suite() {
    run_suite(&Braze);
}

fn verify(r: &Request) -> Result<Verified, Rejection> {
    let h = Headers::from_pairs(r.headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())));
    source().verify(&Inbound { headers: &h, body: &r.body, now_ms: NOW, query: None })
}

fn parse(body: &[u8]) -> Parsed {
    source().parse(&StoredView { topic: "currents/batch", shop: None, body })
}

fn engagements(body: &[u8]) -> Vec<nudge_model::behaviour::Engagement> {
    match parse(body) {
        Parsed::Events(e) => e
            .into_iter()
            .map(|e| match e {
                Event::Engagement(g) => g,
                other => panic!("{other:?}"),
            })
            .collect(),
        other => panic!("no events: {other:?}"),
    }
}

/// Case 52: probes are answered 2xx with a good token, 401 with a bad one; nothing is stored.
#[test]
fn case_52_empty_probes() {
    for body in [&b""[..], b"{\"events\":[]}", b"  \n"] {
        match verify(&authed(body.to_vec(), TOKEN)) {
            Ok(Verified::Answer { status, .. }) => assert_eq!(status, 200),
            other => panic!("{other:?}"),
        }
        assert_eq!(verify(&authed(body.to_vec(), "nope")).unwrap_err().status, 401);
        assert_eq!(verify(&Request { headers: vec![], body: body.to_vec() }).unwrap_err().status, 401);
    }
    let none = BrazeCurrentsSource::new(BrazeCurrentsConfig::default());
    let h = Headers::from_pairs(braze_headers(TOKEN));
    assert_eq!(
        none.verify(&Inbound { headers: &h, body: b"", now_ms: NOW, query: None }).unwrap_err().status,
        500
    );
}

#[test]
fn the_bearer_scheme_is_case_insensitive_and_nothing_else_passes() {
    let body = braze_batch(open_and_click(1));
    let with = |v: &str| Request { headers: vec![("authorization".into(), v.into())], body: body.clone() };
    assert!(matches!(verify(&with(&format!("bearer {TOKEN}"))), Ok(Verified::Deliver(_))));
    for bad in [
        TOKEN.to_string(),
        format!("Basic {TOKEN}"),
        format!("Bearer {TOKEN}x"),
        "Bearer ".into(),
        format!("Bearer {}", &TOKEN[..10]),
    ] {
        assert_eq!(verify(&with(&bad)).unwrap_err().status, 401, "{bad}");
    }
}

/// Case 53: no `Braze-Currents-Version` and an unknown `event_type` do not fail the batch.
#[test]
fn case_53_forward_compatible() {
    let mut evs = open_and_click(1);
    evs.push(json!({"event_type": "users.messages.email.Teleport", "id": "u1", "time": 1, "user": {"user_id": "x"}}));
    evs.push(json!({"event_type": "users.behaviors.app.NewsFeedImpression", "id": "u2", "time": 1}));
    let body = braze_batch(evs);
    let mut r = authed(body.clone(), TOKEN);
    r.headers.retain(|(k, _)| k != "braze-currents-version");
    let Ok(Verified::Deliver(a)) = verify(&r) else { panic!("refused") };
    assert_eq!(a.topic, "currents/batch");
    assert!(a.dedupe_keys.iter().all(|k| k.starts_with("braze_currents:")));
    assert_eq!(engagements(&body).len(), 2);
}

/// Case 54: a malformed event inside a readable batch is skipped; only an unreadable body is a 400.
#[test]
fn case_54_one_malformed_event() {
    let mut evs = open_and_click(1);
    evs.insert(0, json!({"event_type": "users.messages.email.Open", "time": "soon"}));
    evs.insert(0, json!("not an event"));
    let body = braze_batch(evs);
    assert!(matches!(verify(&authed(body.clone(), TOKEN)), Ok(Verified::Deliver(_))));
    assert_eq!(engagements(&body).len(), 2);
    match parse(&braze_batch(vec![json!({"event_type": "users.messages.email.Open"})])) {
        Parsed::Quarantined(reason) => assert!(reason.contains("1 unreadable"), "{reason}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(verify(&authed(b"{\"events\":".to_vec(), TOKEN)).unwrap_err().status, 400);
    assert_eq!(verify(&authed(b"{\"evts\":[]}".to_vec(), TOKEN)).unwrap_err().status, 400);
}

/// Cases 5.1–5.3: machine opens kept and marked; clicks with and without link aliasing; anonymous users
/// by `user_id`; a repeated id once.
#[test]
fn cases_5_1_to_5_3() {
    let open = braze_event(
        &EmailEngagement::new(EmailAction::Opened, "o1", t()).external_id("shopify:7").machine(),
        "u-7",
    );
    let mut click_plain = braze_event(
        &EmailEngagement::new(EmailAction::Clicked, "c1", t())
            .external_id("shopify:7")
            .url("https://a.example/x"),
        "u-7",
    );
    click_plain["properties"].as_object_mut().unwrap().remove("link_id");
    let mut click_alias = click_plain.clone();
    click_alias["id"] = json!("c2");
    click_alias["properties"]["link_id"] = json!("l-9");
    click_alias["properties"]["link_alias"] = json!("hero");
    let anon = json!({"event_type": "users.messages.email.Delivery", "id": "d1", "time": NOW / 1000,
        "user": {"user_id": "65a1b2c3d4"}, "properties": {"canvas_name": "Welcome"}});
    let by_email = json!({"event_type": "users.messages.email.Send", "id": "s1", "time": NOW / 1000,
        "user": {"user_id": "65a1", "external_user_id": "merchant-own-id"}, "properties": {"email_address": "Ana@Example.com"}});
    let body = braze_batch(vec![open.clone(), click_plain, click_alias, anon, by_email, open]);
    let got = engagements(&body);
    assert_eq!(got.iter().map(|e| e.event_id.as_str()).collect::<Vec<_>>(), ["o1", "c1", "c2", "d1", "s1"]);
    assert!(got[0].machine && got[0].kind == EngagementKind::Opened);
    assert_eq!(got[1].url.as_deref(), Some("https://a.example/x"));
    assert_eq!(got[2].url.as_deref(), Some("https://a.example/x"));
    assert_eq!(got[3].customer.to_string(), "braze:65a1b2c3d4");
    assert_eq!(got[3].campaign.as_deref(), Some("Welcome"));
    assert_eq!(got[4].customer, CustomerId::for_email("ana@example.com").unwrap());
    assert!(got.iter().all(|e| e.platform == "braze" && e.channel == "email"));
}

#[test]
fn every_email_type_maps_and_abort_is_skipped() {
    let cases = [
        ("Send", Some(EngagementKind::Sent)),
        ("Delivery", Some(EngagementKind::Delivered)),
        ("Open", Some(EngagementKind::Opened)),
        ("Click", Some(EngagementKind::Clicked)),
        ("Bounce", Some(EngagementKind::Bounced)),
        ("SoftBounce", Some(EngagementKind::Bounced)),
        ("MarkAsSpam", Some(EngagementKind::SpamComplaint)),
        ("Unsubscribe", Some(EngagementKind::Unsubscribed)),
        ("Abort", None),
    ];
    for (ty, kind) in cases {
        let e = json!({"event_type": format!("users.messages.email.{ty}"), "id": ty, "time": NOW / 1000,
            "user": {"external_user_id": "shopify:1"}, "properties": {"machine_open": "true"}});
        match (parse(&braze_batch(vec![e])), kind) {
            (Parsed::Events(evs), Some(k)) => {
                let [Event::Engagement(g)] = evs.as_slice() else { panic!() };
                assert_eq!(g.kind, k);
                assert_eq!(g.machine, k == EngagementKind::Opened, "{ty}");
            }
            (Parsed::Ignored(_), None) => {}
            (other, _) => panic!("{ty}: {other:?}"),
        }
    }
}

#[test]
fn an_event_over_braze_s_limit_is_skipped() {
    let mut big = open_and_click(1);
    big[0]["properties"]["huge"] = json!("x".repeat(nudge_ingest::braze_currents::MAX_EVENT_BYTES));
    let got = engagements(&braze_batch(big));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].event_id, "b1-click");
}
