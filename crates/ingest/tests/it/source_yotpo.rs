//! Yotpo through the source compliance suite, plus contract cases 3.1 (both body shapes and date
//! formats), 3.2 (the URL token; the notification is only a fetch job, the pulled review wins) and 3.3
//! (duplicate deliveries share a key).

use crate::source_suite::{Request, SourceHarness, run_suite};
use nudge_ingest::FetchJob;
use nudge_ingest::source::{Inbound, Parsed, Source, StoredView, Verified};
use nudge_ingest::url_token::HEADER;
use nudge_ingest::yotpo::fixtures::ReviewFixture;
use nudge_ingest::yotpo::{YotpoConfig, YotpoSource};
use nudge_ingest::{Accepted, Headers, Rejection};
use nudge_model::{CustomerId, Event};
use std::sync::Arc;
use time::macros::datetime;

const APP: &str = "yotpo-app-key-1";
const TOKEN: &str = "yt_3e9c1b7f0a5d4e2c8b6a9f10";
const NOW: i64 = 1_780_000_000_000;

fn source() -> YotpoSource {
    YotpoSource::new(YotpoConfig { app_key: APP.into(), url_token: TOKEN.into() })
}

fn review(n: u32) -> ReviewFixture {
    ReviewFixture::new(APP, 219 + u64::from(n), Some("lena@example.org"), datetime!(2026-05-01 10:00 UTC))
}

fn request(body: &[u8], token: Option<&str>, message_id: Option<&str>) -> Request {
    let mut headers = vec![("content-type".to_string(), "application/json".to_string())];
    if let Some(t) = token {
        headers.push((HEADER.into(), t.into()));
    }
    if let Some(m) = message_id {
        headers.push(("WebhookMessageId".into(), m.into()));
    }
    Request { headers, body: body.to_vec() }
}

fn typed(n: u32) -> Vec<u8> {
    serde_json::to_vec(&review(n).webhook_typed("review_create")).unwrap()
}

struct Yotpo;

impl SourceHarness for Yotpo {
    fn source(&self) -> Arc<dyn Source> {
        Arc::new(source())
    }
    fn genuine(&self, n: u32, _now_ms: i64) -> Request {
        request(&typed(n), Some(TOKEN), Some(&format!("wm-{n}")))
    }
    fn retry(&self, n: u32, now_ms: i64) -> Request {
        self.genuine(n, now_ms)
    }
    fn wrongly_signed(&self, n: u32, _now_ms: i64) -> Request {
        request(&typed(n), Some("yt_another_tenants_token_000"), Some(&format!("wm-{n}")))
    }
    fn unsigned(&self, n: u32, _now_ms: i64) -> Request {
        request(&typed(n), None, Some(&format!("wm-{n}")))
    }
    fn stale(&self, _n: u32, _now_ms: i64) -> Option<Request> {
        None
    }
    fn signed(&self, body: &[u8], _now_ms: i64) -> Request {
        request(body, Some(TOKEN), Some("wm-hostile"))
    }
    fn fetched(&self, job: &FetchJob) -> Vec<u8> {
        assert_eq!(job.resource, "review");
        review(job.id.parse::<u32>().unwrap() - 219).pulled_bytes()
    }
    fn signs_body(&self) -> bool {
        // A URL token authenticates the caller, not the bytes; the body is confirmed by the pull API.
        false
    }
    fn order_versions(&self) -> [(String, Vec<u8>); 2] {
        let older = review(1).score(2).updated(datetime!(2026-05-01 10:00 UTC));
        let newer = review(1).score(4).updated(datetime!(2026-05-01 11:00 UTC));
        let t = "yotpo/fetched/review".to_string();
        [(t.clone(), older.pulled_bytes()), (t, newer.pulled_bytes())]
    }
}

#[test]
fn yotpo_passes_the_source_suite() {
    run_suite(&Yotpo);
}

fn verify(r: &Request) -> Result<Verified, Rejection> {
    let h = Headers::from_pairs(r.headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())));
    source().verify(&Inbound { headers: &h, body: &r.body, query: None, now_ms: NOW })
}

fn accepted(r: &Request) -> Accepted {
    match verify(r) {
        Ok(Verified::Deliver(a)) => a,
        other => panic!("{other:?}"),
    }
}

fn parse(topic: &str, body: &[u8]) -> Parsed {
    source().parse(&StoredView { topic, shop: Some(APP), body })
}

#[test]
fn contract_3_1_both_shapes_and_both_date_formats_become_the_same_fetch_job() {
    let r = review(1).updated(datetime!(2026-05-02 08:30:15 UTC));
    for event in ["review_create", "review_updated"] {
        let typed = serde_json::to_vec(&r.webhook_typed(event)).unwrap();
        let strings = serde_json::to_vec(&r.webhook_strings(event)).unwrap();
        let a = accepted(&request(&typed, Some(TOKEN), None));
        let b = accepted(&request(&strings, Some(TOKEN), None));
        assert_eq!(a.topic, event);
        // One review version gives one key whichever shape or date format carried it.
        assert_eq!(a.dedupe_keys, b.dedupe_keys);
        assert_eq!(a.dedupe_keys, vec![format!("yotpo:{APP}:review:220:{}", 1_777_710_615_000i64)]);
        let (Parsed::Fetch(ja), Parsed::Fetch(jb)) = (parse(event, &typed), parse(event, &strings)) else {
            panic!("not fetch jobs")
        };
        assert_eq!(ja, jb);
        assert_eq!((ja.source.as_str(), ja.resource.as_str(), ja.id.as_str()), ("yotpo", "review", "220"));
        assert_eq!(ja.topic, "yotpo/fetched/review");
        assert_eq!(ja.shop.as_deref(), Some(APP));
        assert_eq!(ja.carry.as_deref(), Some("2026-05-02T08:30:15Z"));
    }
    // Other events are recorded as ignored; unreadable notifications are quarantined with the path.
    let other = serde_json::to_vec(&r.webhook_typed("review_request.eligible.on_delivery")).unwrap();
    assert!(matches!(parse("review_request.eligible.on_delivery", &other), Parsed::Ignored(_)));
    let mut bad = r.webhook_typed("review_create");
    bad["data"]["updated_at"] = serde_json::json!("yesterday");
    match parse("review_create", &serde_json::to_vec(&bad).unwrap()) {
        Parsed::Quarantined(reason) => assert!(reason.contains("data.updated_at"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn contract_3_2_the_url_token_is_required_and_another_app_key_is_refused() {
    let body = typed(1);
    assert_eq!(verify(&request(&body, None, None)).unwrap_err().status, 401);
    assert_eq!(verify(&request(&body, Some(&TOKEN[..TOKEN.len() - 1]), None)).unwrap_err().status, 401);
    assert_eq!(verify(&request(&body, Some(&format!("{TOKEN}x")), None)).unwrap_err().status, 401);
    assert!(matches!(verify(&request(&body, Some(TOKEN), None)), Ok(Verified::Deliver(_))));
    let mut other_app = review(1).webhook_typed("review_create");
    other_app["data"]["app_key"] = serde_json::json!("someone-else");
    let r = request(&serde_json::to_vec(&other_app).unwrap(), Some(TOKEN), None);
    assert_eq!(verify(&r).unwrap_err().status, 401);
    // The token is never kept in the audit trail.
    let a = accepted(&request(&body, Some(TOKEN), Some("wm-1")));
    assert!(a.audit_headers.iter().all(|(_, v)| v != TOKEN), "{:?}", a.audit_headers);
    // Unconfigured: 500, so Yotpo retries once the operator has set the token.
    let unconfigured = YotpoSource::new(YotpoConfig { app_key: APP.into(), url_token: String::new() });
    let h = Headers::from_pairs([(HEADER, TOKEN.as_bytes())]);
    let e = unconfigured.verify(&Inbound { headers: &h, body: &body, query: None, now_ms: NOW }).unwrap_err();
    assert_eq!(e.status, 500);
}

#[test]
fn contract_3_2_the_pulled_review_wins_over_the_notification() {
    // The webhook said 5 stars and published; the API says 1 star and deleted: the event is the API's.
    let notified = review(1);
    let Parsed::Fetch(job) =
        parse("review_updated", &serde_json::to_vec(&notified.webhook_typed("review_updated")).unwrap())
    else {
        panic!()
    };
    let api = review(1).score(1).content("Broke", "Handle snapped on day two.").deleted(true);
    let Parsed::Events(evs) = parse(&job.topic, &api.pulled_bytes()) else { panic!() };
    let Event::ReviewPosted(r) = &evs[0] else { panic!("{evs:?}") };
    assert_eq!(r.review_id, format!("yotpo:{APP}:220"));
    assert_eq!(r.customer, CustomerId::for_email("lena@example.org").unwrap());
    assert_eq!(r.email.as_deref(), Some("lena@example.org"));
    assert_eq!(r.rating, Some(1));
    assert_eq!(r.title.as_deref(), Some("Broke"));
    assert_eq!(r.body, "Handle snapped on day two.");
    assert_eq!(r.product_id.as_deref(), Some("MUG-1"));
    assert!(!r.published);
    assert!(r.sentiment.is_none(), "sentiment is the pipeline's to fill");
    assert!(r.is_negative());
    // Archived is unpublished too; a review without an email is ignored with the reason.
    let mut archived = review(2).pulled();
    archived["archived"] = serde_json::json!(true);
    let Parsed::Events(evs) = parse(&job.topic, &serde_json::to_vec(&archived).unwrap()) else { panic!() };
    assert!(matches!(&evs[0], Event::ReviewPosted(r) if !r.published));
    let anonymous = ReviewFixture::new(APP, 300, None, datetime!(2026-05-01 10:00 UTC));
    match parse(&job.topic, &anonymous.pulled_bytes()) {
        Parsed::Ignored(reason) => assert!(reason.contains("no reviewer email"), "{reason}"),
        other => panic!("{other:?}"),
    }
    for garbage in [&b"<html>502</html>"[..], b"{}", b"[]", b"{\"id\":\"x\"}"] {
        assert!(matches!(parse(&job.topic, garbage), Parsed::Quarantined(_)));
    }
}

#[test]
fn contract_3_3_duplicates_share_a_key_by_message_id_event_id_or_review_version() {
    let body = typed(1);
    let first = accepted(&request(&body, Some(TOKEN), Some("wm-77")));
    // Same WebhookMessageId, and a changed body (not the same version): still a duplicate.
    let mut changed = review(1).updated(datetime!(2026-05-03 10:00 UTC)).webhook_typed("review_create");
    changed["data"]["title"] = serde_json::json!("edited");
    let again = accepted(&request(&serde_json::to_vec(&changed).unwrap(), Some(TOKEN), Some("wm-77")));
    assert!(again.dedupe_keys.iter().any(|k| first.dedupe_keys.contains(k)));
    // The older `eventid` header.
    let mut r = request(&body, Some(TOKEN), None);
    r.headers.push(("eventid".into(), "ev-9".into()));
    let e1 = accepted(&r);
    let mut r2 = request(&serde_json::to_vec(&changed).unwrap(), Some(TOKEN), None);
    r2.headers.push(("eventid".into(), "ev-9".into()));
    assert!(accepted(&r2).dedupe_keys.iter().any(|k| e1.dedupe_keys.contains(k)));
    // No header at all: the same (app_key, id, updated_at) in the other shape is a duplicate; a new
    // version is not.
    let strings = serde_json::to_vec(&review(1).webhook_strings("review_updated")).unwrap();
    let s = accepted(&request(&strings, Some(TOKEN), None));
    assert!(s.dedupe_keys.iter().any(|k| first.dedupe_keys.contains(k)));
    let newer = accepted(&request(&serde_json::to_vec(&changed).unwrap(), Some(TOKEN), None));
    assert!(!newer.dedupe_keys.iter().any(|k| first.dedupe_keys.contains(k)));
}
