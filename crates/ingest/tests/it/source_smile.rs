//! Smile.io through the source compliance suite, plus contract cases 4.1 (`ping` answered, nothing
//! stored), 4.2 (the standing reported: points, tier from `vip_status` or the deprecated field) and 4.4
//! (the webhook body is never acted on: a fetch of `GET /v1/customers/{id}` is).

use crate::source_suite::{Request, SourceHarness, run_suite};
use nudge_ingest::FetchJob;
use nudge_ingest::smile::fixtures::{CustomerFixture, ping};
use nudge_ingest::smile::{SmileConfig, SmileSource};
use nudge_ingest::source::{Inbound, Parsed, Source, StoredView, Verified};
use nudge_ingest::url_token::HEADER;
use nudge_ingest::{Headers, Rejection};
use nudge_model::{CustomerId, Event};
use std::sync::Arc;
use time::macros::datetime;

const TOKEN: &str = "sm_a61f0c2d9e8b7a6f5e4d3c2b";
const ACCOUNT: u64 = 42_001;
const NOW: i64 = 1_780_000_000_000;

fn source() -> SmileSource {
    SmileSource::new(SmileConfig { url_token: TOKEN.into() })
}

fn customer(n: u32) -> CustomerFixture {
    CustomerFixture::new(9000 + u64::from(n), Some("lena@example.org"), 120, datetime!(2026-05-01 10:00 UTC))
}

fn request(body: &[u8], token: Option<&str>) -> Request {
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    if let Some(t) = token {
        headers.push((HEADER.into(), t.into()));
    }
    Request { headers, body: body.to_vec() }
}

fn webhook(n: u32) -> Vec<u8> {
    serde_json::to_vec(&customer(n).webhook(ACCOUNT)).unwrap()
}

struct Smile;

impl SourceHarness for Smile {
    fn source(&self) -> Arc<dyn Source> {
        Arc::new(source())
    }
    fn genuine(&self, n: u32, _now_ms: i64) -> Request {
        request(&webhook(n), Some(TOKEN))
    }
    fn retry(&self, n: u32, now_ms: i64) -> Request {
        self.genuine(n, now_ms)
    }
    fn wrongly_signed(&self, n: u32, _now_ms: i64) -> Request {
        request(&webhook(n), Some("sm_another_accounts_token_0"))
    }
    fn unsigned(&self, n: u32, _now_ms: i64) -> Request {
        request(&webhook(n), None)
    }
    fn stale(&self, _n: u32, _now_ms: i64) -> Option<Request> {
        None
    }
    fn signed(&self, body: &[u8], _now_ms: i64) -> Request {
        request(body, Some(TOKEN))
    }
    fn fetched(&self, job: &FetchJob) -> Vec<u8> {
        assert_eq!(job.resource, "customer");
        customer(job.id.parse::<u32>().unwrap() - 9000).fetched_bytes()
    }
    fn signs_body(&self) -> bool {
        // A URL token authenticates the caller, not the bytes; the body is confirmed by the REST API.
        false
    }
    fn order_versions(&self) -> [(String, Vec<u8>); 2] {
        let older = customer(1).points(100).updated(datetime!(2026-05-01 10:00 UTC));
        let newer = customer(1).points(150).updated(datetime!(2026-05-01 11:00 UTC));
        let t = "smile/fetched/customer".to_string();
        [(t.clone(), older.fetched_bytes()), (t, newer.fetched_bytes())]
    }
}

#[test]
fn smile_passes_the_source_suite() {
    run_suite(&Smile);
}

fn verify(r: &Request) -> Result<Verified, Rejection> {
    let h = Headers::from_pairs(r.headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())));
    source().verify(&Inbound { headers: &h, body: &r.body, query: None, now_ms: NOW })
}

fn parse(topic: &str, body: &[u8]) -> Parsed {
    source().parse(&StoredView { topic, shop: Some("42001"), body })
}

#[test]
fn contract_4_1_ping_is_answered_200_and_nothing_is_stored() {
    let body = serde_json::to_vec(&ping(ACCOUNT)).unwrap();
    match verify(&request(&body, Some(TOKEN))) {
        Ok(Verified::Answer { status, .. }) => assert_eq!(status, 200),
        other => panic!("a ping must be answered without storing: {other:?}"),
    }
    // A ping still needs the token.
    assert_eq!(verify(&request(&body, None)).unwrap_err().status, 401);
    // Were one stored anyway, it would mean nothing.
    assert!(matches!(parse("ping", &body), Parsed::Ignored(_)));
}

#[test]
fn contract_4_2_the_standing_is_reported_with_tier_from_either_field() {
    let t = datetime!(2026-05-01 10:00 UTC);
    let c = CustomerFixture::new(9001, Some("Lena@Example.org"), 250, t).tier(77);
    let Parsed::Events(evs) = parse("smile/fetched/customer", &c.fetched_bytes()) else { panic!() };
    let Event::LoyaltyChanged(l) = &evs[0] else { panic!("{evs:?}") };
    assert_eq!(l.program, "smile");
    assert_eq!(l.member_id, "9001");
    assert_eq!(l.points, Some(250));
    assert_eq!(l.tier.as_deref(), Some("77"));
    assert_eq!(l.state.as_deref(), Some("member"));
    assert_eq!(l.updated_at, t);
    assert_eq!(l.customer, CustomerId::for_email("lena@example.org").unwrap());
    let old = CustomerFixture::new(9001, Some("lena@example.org"), 250, t).tier(78).deprecated_tier();
    let Parsed::Events(evs) = parse("smile/fetched/customer", &old.fetched_bytes()) else { panic!() };
    assert!(matches!(&evs[0], Event::LoyaltyChanged(l) if l.tier.as_deref() == Some("78")));
    let none = CustomerFixture::new(9001, Some("lena@example.org"), 0, t);
    let Parsed::Events(evs) = parse("smile/fetched/customer", &none.fetched_bytes()) else { panic!() };
    assert!(matches!(&evs[0], Event::LoyaltyChanged(l) if l.tier.is_none() && l.points == Some(0)));
    // No email: ignored with the reason; unreadable answers are quarantined with the path.
    let anon = CustomerFixture::new(9002, None, 10, t);
    assert!(matches!(parse("smile/fetched/customer", &anon.fetched_bytes()), Parsed::Ignored(_)));
    let mut bad = c.fetched();
    bad["customer"]["points_balance"] = serde_json::json!("lots");
    match parse("smile/fetched/customer", &serde_json::to_vec(&bad).unwrap()) {
        Parsed::Quarantined(reason) => assert!(reason.contains("customer.points_balance"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn contract_4_4_the_webhook_body_is_only_a_fetch_of_the_customer() {
    let body = webhook(1);
    let Ok(Verified::Deliver(a)) = verify(&request(&body, Some(TOKEN))) else { panic!() };
    assert_eq!(a.topic, "customer/updated");
    assert_eq!(a.shop.as_deref(), Some("42001"));
    match source().parse(&StoredView { topic: &a.topic, shop: a.shop.as_deref(), body: &body }) {
        Parsed::Fetch(job) => {
            assert_eq!(
                (job.source.as_str(), job.resource.as_str(), job.id.as_str()),
                ("smile", "customer", "9001")
            );
            assert_eq!(job.topic, "smile/fetched/customer");
        }
        other => panic!("the webhook body must not be acted on directly: {other:?}"),
    }
    // A retry of the same version shares its key; a newer version does not.
    let Ok(Verified::Deliver(again)) = verify(&request(&body, Some(TOKEN))) else { panic!() };
    assert_eq!(a.dedupe_keys, again.dedupe_keys);
    let newer =
        serde_json::to_vec(&customer(1).updated(datetime!(2026-05-02 10:00 UTC)).webhook(ACCOUNT)).unwrap();
    let Ok(Verified::Deliver(n)) = verify(&request(&newer, Some(TOKEN))) else { panic!() };
    assert_ne!(a.dedupe_keys, n.dedupe_keys);
    // Other topics are ignored; a customer/updated without an id is quarantined.
    let other = br#"{"account_id":1,"topic":"reward_fulfillment/created","data":{"id":3}}"#;
    assert!(matches!(parse("reward_fulfillment/created", other), Parsed::Ignored(_)));
    let no_id = br#"{"account_id":1,"topic":"customer/updated","data":{"email":"a@b.c"}}"#;
    assert!(matches!(parse("customer/updated", no_id), Parsed::Quarantined(_)));
}
