//! Klaviyo system webhooks through the source compliance suite, plus their contract cases (api-contracts
//! §4.9 cases 42–44, api-contracts-2 case 5.4): the signature vector and its wrong variants, the webhook
//! id check, batches, reviews, unknown topics and customers that cannot be named.

use crate::source_suite::{Request, SourceHarness, run_suite};
use nudge_ingest::klaviyo_webhooks::{KlaviyoWebhookConfig, KlaviyoWebhookSource};
use nudge_ingest::source::{Inbound, Parsed, Source, StoredView, Verified};
use nudge_ingest::{Accepted, Headers, Rejection};
use nudge_model::behaviour::EngagementKind;
use nudge_model::{CustomerId, Event};
use nudge_testkit::klaviyo_webhook_sender::{
    EmailAction, EmailEngagement, imf_fixdate, klaviyo_batch, klaviyo_headers, klaviyo_item, klaviyo_sign,
};
use serde_json::{Value, json};
use std::sync::Arc;
use time::OffsetDateTime;

const SECRET: &str = "klaviyo_webhook_secret_0001";
const HOOK: &str = "01HWEBHOOK";
const NOW: i64 = 1_780_000_000_000;

fn at(ms: i64) -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(ms / 1000).unwrap()
}

fn source() -> KlaviyoWebhookSource {
    KlaviyoWebhookSource::new(KlaviyoWebhookConfig { secrets: vec![SECRET.into()], ..Default::default() })
}

fn open_and_click(n: u32) -> Vec<EmailEngagement> {
    let t = at(NOW - 60_000);
    vec![
        EmailEngagement::new(EmailAction::Opened, format!("evt_{n}_open"), t)
            .email("ana@example.com")
            .external_id("shopify:880012")
            .campaign("Spring sale"),
        EmailEngagement::new(EmailAction::Clicked, format!("evt_{n}_click"), t)
            .email("ana@example.com")
            .external_id("shopify:880012")
            .campaign("Spring sale")
            .url("https://shop.example/sale"),
    ]
}

fn batch_body(items: Vec<Value>) -> Vec<u8> {
    klaviyo_batch(HOOK, items, at(NOW))
}

fn signed(body: Vec<u8>, now_ms: i64, secret: &str) -> Request {
    Request { headers: klaviyo_headers(secret, HOOK, at(now_ms), &body), body }
}

struct Klaviyo;

impl SourceHarness for Klaviyo {
    fn source(&self) -> Arc<dyn Source> {
        Arc::new(source())
    }
    fn genuine(&self, n: u32, now_ms: i64) -> Request {
        signed(batch_body(open_and_click(n).iter().map(klaviyo_item).collect()), now_ms, SECRET)
    }
    fn retry(&self, n: u32, now_ms: i64) -> Request {
        // A retry is the same batch with a new timestamp and signature.
        self.genuine(n, now_ms)
    }
    fn wrongly_signed(&self, n: u32, now_ms: i64) -> Request {
        let r = self.genuine(n, now_ms);
        signed(r.body, now_ms, "another-secret")
    }
    fn unsigned(&self, n: u32, now_ms: i64) -> Request {
        let mut r = self.genuine(n, now_ms);
        r.headers.retain(|(k, _)| k != "Klaviyo-Signature");
        r
    }
    fn stale(&self, n: u32, now_ms: i64) -> Option<Request> {
        Some(self.genuine(n, now_ms - 301_000))
    }
    fn signed(&self, body: &[u8], now_ms: i64) -> Request {
        signed(body.to_vec(), now_ms, SECRET)
    }
    fn order_versions(&self) -> [(String, Vec<u8>); 2] {
        unreachable!("Klaviyo webhooks carry no orders")
    }
    fn has_orders(&self) -> bool {
        false
    }
    fn customer_source(&self) -> Option<&'static str> {
        Some("shopify")
    }
}

#[test]
fn klaviyo_webhooks_pass_the_source_suite() {
    run_suite(&Klaviyo);
}

fn verify_at(s: &KlaviyoWebhookSource, r: &Request, now_ms: i64) -> Result<Verified, Rejection> {
    let h = Headers::from_pairs(r.headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())));
    s.verify(&Inbound { headers: &h, body: &r.body, now_ms, query: None })
}

fn accepted(r: &Request, now_ms: i64) -> Accepted {
    match verify_at(&source(), r, now_ms) {
        Ok(Verified::Deliver(a)) => a,
        other => panic!("not accepted: {other:?}"),
    }
}

fn parse(body: &[u8]) -> Parsed {
    source().parse(&StoredView { topic: "klaviyo/batch", shop: None, body })
}

fn events(body: &[u8]) -> Vec<Event> {
    match parse(body) {
        Parsed::Events(e) => e,
        other => panic!("no events: {other:?}"),
    }
}

const VECTOR_BODY: &str = r#"{"data":[{"topic":"event:klaviyo.opened_email","external_id":"evt_01","payload":{}}],"meta":{"klaviyo_account_id":"AbC123","klaviyo_webhook_id":"01HWEBHOOK","timestamp":"2026-05-01T10:00:00+00:00"}}"#;
const VECTOR_TS: &str = "Fri, 01 May 2026 10:00:00 GMT";
const VECTOR_SIG: &str = "2146a9bf6cc8db08d36f0fda921b759ee11d91fd31f6150565a22586cd95ce45";
const VECTOR_NOW: i64 = 1_777_629_600_000;

fn vector(sig: &str, ts: &str, id: &str) -> Request {
    Request {
        headers: vec![
            ("Klaviyo-Signature".into(), sig.into()),
            ("Klaviyo-Timestamp".into(), ts.into()),
            ("Klaviyo-Webhook-Id".into(), id.into()),
        ],
        body: VECTOR_BODY.as_bytes().to_vec(),
    }
}

/// Case 42: the vector validates; timestamp-first, base64 and a re-formatted timestamp fail.
#[test]
fn case_42_the_signature_vector_and_its_wrong_variants() {
    let s = source();
    let a = match verify_at(&s, &vector(VECTOR_SIG, VECTOR_TS, HOOK), VECTOR_NOW) {
        Ok(Verified::Deliver(a)) => a,
        other => panic!("the vector was refused: {other:?}"),
    };
    assert_eq!(a.topic, "event:klaviyo.opened_email");
    assert_eq!(a.webhook_id.as_deref(), Some(HOOK));
    assert_eq!(a.shop.as_deref(), Some("AbC123"));
    assert_eq!(a.event_id.as_deref(), Some("evt_01"));
    let ts_first = {
        use hmac::Mac;
        let mut m = hmac::Hmac::<sha2::Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        m.update(VECTOR_TS.as_bytes());
        m.update(VECTOR_BODY.as_bytes());
        hex::encode(m.finalize().into_bytes())
    };
    assert!(ts_first.starts_with("734a9c19"));
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::STANDARD.encode(hex::decode(VECTOR_SIG).unwrap());
    for (sig, ts) in
        [(ts_first.as_str(), VECTOR_TS), (b64.as_str(), VECTOR_TS), (VECTOR_SIG, "2026-05-01T10:00:00+00:00")]
    {
        let e = verify_at(&s, &vector(sig, ts, HOOK), VECTOR_NOW).unwrap_err();
        assert_eq!(e.status, 401, "{sig} / {ts}: {e:?}");
    }
    // An ISO timestamp, signed as sent, is as good as an IMF-fixdate one.
    let iso = "2026-05-01T10:00:00+00:00";
    let sig = klaviyo_sign(SECRET, iso, VECTOR_BODY.as_bytes());
    assert!(matches!(verify_at(&s, &vector(&sig, iso, HOOK), VECTOR_NOW), Ok(Verified::Deliver(_))));
    // Stale by more than the skew, either way.
    assert_eq!(
        verify_at(&s, &vector(VECTOR_SIG, VECTOR_TS, HOOK), VECTOR_NOW + 301_000).unwrap_err().status,
        401
    );
    assert_eq!(
        verify_at(&s, &vector(VECTOR_SIG, VECTOR_TS, HOOK), VECTOR_NOW - 301_000).unwrap_err().status,
        401
    );
    // A configured skew widens the window.
    let wide =
        KlaviyoWebhookSource::new(KlaviyoWebhookConfig { secrets: vec![SECRET.into()], max_skew_secs: 3600 });
    assert!(verify_at(&wide, &vector(VECTOR_SIG, VECTOR_TS, HOOK), VECTOR_NOW + 1_800_000).is_ok());
    // Unconfigured: 500, so Klaviyo retries once the operator has set the secret.
    let none = KlaviyoWebhookSource::new(KlaviyoWebhookConfig::default());
    assert_eq!(verify_at(&none, &vector(VECTOR_SIG, VECTOR_TS, HOOK), VECTOR_NOW).unwrap_err().status, 500);
}

/// Case 43: `meta.klaviyo_webhook_id` must equal the `Klaviyo-Webhook-Id` header.
#[test]
fn case_43_a_body_for_another_webhook_is_dropped() {
    let s = source();
    let e = verify_at(&s, &vector(VECTOR_SIG, VECTOR_TS, "01HOTHER"), VECTOR_NOW).unwrap_err();
    assert_eq!(e.status, 401);
    assert!(e.reason.contains("klaviyo_webhook_id"), "{e:?}");
    let no_id = Request {
        headers: vec![
            ("Klaviyo-Signature".into(), VECTOR_SIG.into()),
            ("Klaviyo-Timestamp".into(), VECTOR_TS.into()),
        ],
        body: VECTOR_BODY.as_bytes().to_vec(),
    };
    assert_eq!(verify_at(&s, &no_id, VECTOR_NOW).unwrap_err().status, 401);
}

/// Case 44: one engagement record per item, deduped on `external_id`; a retried batch shares its key.
#[test]
fn case_44_one_event_per_item_deduped_on_external_id() {
    let mut evs = open_and_click(1);
    evs.push(evs[1].clone());
    let body = batch_body(evs.iter().map(klaviyo_item).collect());
    let r = signed(body.clone(), NOW, SECRET);
    let a = accepted(&r, NOW);
    assert_eq!(a.topic, "klaviyo/batch");
    let retried = accepted(&signed(body.clone(), NOW + 90_000, SECRET), NOW + 90_000);
    assert_eq!(a.dedupe_keys, retried.dedupe_keys);
    let got = events(&body);
    assert_eq!(got.len(), 2);
    let Event::Engagement(open) = &got[0] else { panic!("{got:?}") };
    let Event::Engagement(click) = &got[1] else { panic!("{got:?}") };
    assert_eq!((open.kind, open.event_id.as_str()), (EngagementKind::Opened, "evt_1_open"));
    assert_eq!((click.kind, click.event_id.as_str()), (EngagementKind::Clicked, "evt_1_click"));
    assert_eq!(open.customer.to_string(), "shopify:880012");
    assert_eq!(open.channel, "email");
    assert_eq!(open.platform, "klaviyo");
    assert_eq!(open.campaign.as_deref(), Some("Spring sale"));
    assert_eq!(open.url, None);
    assert_eq!(click.url.as_deref(), Some("https://shop.example/sale"));
    assert_eq!(click.at, at(NOW - 60_000));
    assert_eq!(click.email.as_deref(), Some("ana@example.com"));
}

#[test]
fn every_mapped_topic_and_the_machine_open() {
    let t = at(NOW);
    let cases = [
        (EmailAction::Delivered, EngagementKind::Delivered),
        (EmailAction::Opened, EngagementKind::Opened),
        (EmailAction::Clicked, EngagementKind::Clicked),
        (EmailAction::Bounced, EngagementKind::Bounced),
        (EmailAction::Unsubscribed, EngagementKind::Unsubscribed),
        (EmailAction::MarkedAsSpam, EngagementKind::SpamComplaint),
    ];
    for (i, (action, kind)) in cases.into_iter().enumerate() {
        let e = EmailEngagement::new(action, format!("e{i}"), t).external_id("shopify:1");
        let got = events(&batch_body(vec![klaviyo_item(&e)]));
        let [Event::Engagement(g)] = got.as_slice() else { panic!("{got:?}") };
        assert_eq!(g.kind, kind, "{action:?}");
    }
    let mut item =
        klaviyo_item(&EmailEngagement::new(EmailAction::Opened, "m", t).external_id("shopify:1").machine());
    let got = events(&batch_body(vec![item.clone()]));
    let [Event::Engagement(g)] = got.as_slice() else { panic!() };
    assert!(g.machine);
    item["topic"] = json!("event:klaviyo.unsubscribed");
    let got = events(&batch_body(vec![item]));
    let [Event::Engagement(g)] = got.as_slice() else { panic!() };
    assert_eq!(g.kind, EngagementKind::Unsubscribed);
    assert!(!g.machine);
}

#[test]
fn the_customer_is_the_nudge_key_else_the_email_else_the_item_is_skipped() {
    let t = at(NOW);
    let not_a_key =
        EmailEngagement::new(EmailAction::Opened, "a", t).external_id("crm-991").email("Lena@Example.org");
    let email_only = EmailEngagement::new(EmailAction::Opened, "b", t).email("ben@example.org");
    let nobody = EmailEngagement::new(EmailAction::Opened, "c", t);
    let got = events(&batch_body([not_a_key, email_only, nobody.clone()].iter().map(klaviyo_item).collect()));
    let ids: Vec<_> = got.iter().map(|e| e.customer().unwrap().clone()).collect();
    assert_eq!(
        ids,
        vec![
            CustomerId::for_email("lena@example.org").unwrap(),
            CustomerId::for_email("ben@example.org").unwrap()
        ]
    );
    match parse(&batch_body(vec![klaviyo_item(&nobody)])) {
        Parsed::Ignored(reason) => assert!(reason.contains("1 without a customer"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn unknown_topics_are_skipped_without_failing_the_batch() {
    let t = at(NOW);
    let known = klaviyo_item(&EmailEngagement::new(EmailAction::Clicked, "k", t).external_id("shopify:1"));
    let mut unknown = known.clone();
    unknown["topic"] = json!("event:klaviyo.viewed_product_in_space");
    unknown["external_id"] = json!("u");
    let body = batch_body(vec![unknown.clone(), known]);
    assert!(matches!(
        verify_at(&source(), &signed(body.clone(), NOW, SECRET), NOW),
        Ok(Verified::Deliver(_))
    ));
    assert_eq!(events(&body).len(), 1);
    match parse(&batch_body(vec![unknown])) {
        Parsed::Ignored(reason) => assert!(reason.contains("1 unknown topic"), "{reason}"),
        other => panic!("{other:?}"),
    }
}

/// Case 5.4: a Klaviyo Reviews topic becomes a review.
#[test]
fn case_5_4_a_review_topic_is_a_review() {
    let item = json!({
        "topic": "event:klaviyo.submitted_review",
        "external_id": "evt_rev_1",
        "payload": {
            "data": {"type": "event", "attributes": {
                "datetime": "2026-05-01T10:00:00+00:00",
                "event_properties": {"Review ID": "r-77", "Rating": 2, "Review Title": "Late",
                    "Review Content": "Arrived late and the seams split.", "Product ID": "9100000001"}
            }},
            "included": [{"type": "profile", "id": "01P", "attributes": {"email": "lena@example.org", "external_id": "shopify:42"}}]
        }
    });
    let got = events(&batch_body(vec![item]));
    let [Event::ReviewPosted(r)] = got.as_slice() else { panic!("{got:?}") };
    assert_eq!(r.review_id, "klaviyo:r-77");
    assert_eq!(r.customer.to_string(), "shopify:42");
    assert_eq!(r.rating, Some(2));
    assert_eq!(r.title.as_deref(), Some("Late"));
    assert_eq!(r.body, "Arrived late and the seams split.");
    assert_eq!(r.product_id.as_deref(), Some("9100000001"));
    assert!(r.published && r.is_negative());
}

#[test]
fn hostile_items_in_a_verified_batch_never_fail_it() {
    let items = vec![
        json!(null),
        json!(7),
        json!({"topic": 5}),
        json!({"topic": "event:klaviyo.opened_email"}),
        json!({"topic": "event:klaviyo.opened_email", "external_id": "x", "payload": "nope"}),
        json!({"topic": "event:klaviyo.opened_email", "external_id": "y", "payload": {"included": 3, "profile": []}}),
        json!({"topic": "event:klaviyo.clicked_email", "external_id": "z", "payload": {"data": {"attributes": {"datetime": 1e300}}}}),
    ];
    let body = batch_body(items);
    assert!(matches!(
        verify_at(&source(), &signed(body.clone(), NOW, SECRET), NOW),
        Ok(Verified::Deliver(_))
    ));
    // The batch's meta.timestamp stands in for a missing time; nobody is named, so nothing comes out.
    assert!(matches!(parse(&body), Parsed::Ignored(_)));
    let ts = imf_fixdate(at(NOW));
    assert!(ts.ends_with(" GMT"));
}
