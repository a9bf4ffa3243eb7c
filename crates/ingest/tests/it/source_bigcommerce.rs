//! BigCommerce through the source compliance suite, plus what is particular to it: custom auth headers,
//! the store check, each scope family, and fetched answers that do not parse.

use crate::source_suite::{Request, SourceHarness, run_suite};
use nudge_ingest::FetchJob;
use nudge_ingest::bigcommerce::fixtures::{
    CallbackFixture, CartFixture, CustomerFixture, ItemFixture, OrderFixture, ProductFixture, signed_headers,
};
use nudge_ingest::bigcommerce::{BigCommerceConfig, BigCommerceSource};
use nudge_ingest::source::{Inbound, Parsed, PrivacyRequest, Source, StoredView, Verified};
use nudge_ingest::{Headers, Rejection};
use nudge_model::Event;
use std::sync::Arc;
use time::macros::datetime;

const SECRET: &str = "bc_client_secret_abc";
const HASH: &str = "abc123";
const NOW: i64 = 1_780_000_000_000;

fn source(cfg: BigCommerceConfig) -> BigCommerceSource {
    BigCommerceSource::new(cfg)
}

fn signed_cfg() -> BigCommerceConfig {
    BigCommerceConfig { store_hash: HASH.into(), client_secret: Some(SECRET.into()), ..Default::default() }
}

fn headers_cfg() -> BigCommerceConfig {
    BigCommerceConfig {
        store_hash: HASH.into(),
        auth_headers: vec![("X-Nudge-Token".into(), "hook-token-1".into())],
        ..Default::default()
    }
}

fn order_callback(n: u32) -> CallbackFixture {
    CallbackFixture::new("store/order/created", 250 + n).created_at(NOW / 1000)
}

fn signed(body: &[u8], id: &str, now_ms: i64, secret: &str) -> Request {
    Request { headers: signed_headers(secret, id, now_ms / 1000, body), body: body.to_vec() }
}

fn order(n: u32) -> OrderFixture {
    OrderFixture::new(250 + u64::from(n), 7, Some("ana@example.com"), datetime!(2026-05-01 10:00 UTC))
        .item(ItemFixture::new(1, "Mug", 2, "12.5000"))
}

struct BigCommerce;

impl SourceHarness for BigCommerce {
    fn source(&self) -> Arc<dyn Source> {
        Arc::new(source(signed_cfg()))
    }
    fn genuine(&self, n: u32, now_ms: i64) -> Request {
        signed(&order_callback(n).to_bytes(), &format!("msg_{n}"), now_ms, SECRET)
    }
    fn retry(&self, n: u32, now_ms: i64) -> Request {
        // A retry keeps the webhook id and the payload hash; only the attempt's timestamp changes.
        self.genuine(n, now_ms)
    }
    fn wrongly_signed(&self, n: u32, now_ms: i64) -> Request {
        signed(&order_callback(n).to_bytes(), &format!("msg_{n}"), now_ms, "another-secret")
    }
    fn unsigned(&self, n: u32, now_ms: i64) -> Request {
        let mut r = self.genuine(n, now_ms);
        r.headers.retain(|(k, _)| !k.starts_with("webhook-"));
        r
    }
    fn stale(&self, n: u32, now_ms: i64) -> Option<Request> {
        Some(self.genuine(n, now_ms - 301_000))
    }
    fn signed(&self, body: &[u8], now_ms: i64) -> Request {
        signed(body, "msg_hostile", now_ms, SECRET)
    }
    fn fetched(&self, job: &FetchJob) -> Vec<u8> {
        assert_eq!(job.resource, "order");
        order(job.id.parse::<u32>().unwrap() - 250).fetched_bytes()
    }
    fn order_versions(&self) -> [(String, Vec<u8>); 2] {
        let older = order(1).status(11, "Awaiting Fulfillment").modified(datetime!(2026-05-01 10:00 UTC));
        let newer = order(1).status(2, "Shipped").modified(datetime!(2026-05-01 11:00 UTC));
        let topic = "bigcommerce/fetched/order".to_string();
        [(topic.clone(), older.fetched_bytes()), (topic, newer.fetched_bytes())]
    }
}

#[test]
fn bigcommerce_passes_the_source_suite() {
    run_suite(&BigCommerce);
}

fn verify(s: &BigCommerceSource, r: &Request) -> Result<Verified, Rejection> {
    let h = Headers::from_pairs(r.headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())));
    s.verify(&Inbound { headers: &h, body: &r.body, query: None, now_ms: NOW })
}

fn status(r: Result<Verified, Rejection>) -> u16 {
    match r {
        Ok(_) => 200,
        Err(e) => e.status,
    }
}

#[test]
fn auth_headers_mode_needs_the_configured_header_and_value() {
    let s = source(headers_cfg());
    let body = order_callback(1).to_bytes();
    let with = |v: &str| Request {
        headers: vec![("X-Nudge-Token".into(), v.into()), ("content-type".into(), "application/json".into())],
        body: body.clone(),
    };
    let Ok(Verified::Deliver(a)) = verify(&s, &with("hook-token-1")) else { panic!("genuine refused") };
    assert_eq!(a.dedupe_keys, vec![format!("bigcommerce:{HASH}:hash:{}", order_callback(1).hash())]);
    assert!(a.audit_headers.iter().all(|(k, _)| k != "x-nudge-token"), "the token is not audited");
    assert_eq!(status(verify(&s, &with("hook-token-2"))), 401);
    assert_eq!(status(verify(&s, &Request { headers: vec![], body: body.clone() })), 401);
}

#[test]
fn both_modes_need_both() {
    let mut cfg = signed_cfg();
    cfg.auth_headers = headers_cfg().auth_headers;
    let s = source(cfg);
    let body = order_callback(1).to_bytes();
    let mut r = signed(&body, "msg_1", NOW, SECRET);
    assert_eq!(status(verify(&s, &r)), 401, "signature without the header");
    r.headers.push(("x-nudge-token".into(), "hook-token-1".into()));
    let Ok(Verified::Deliver(a)) = verify(&s, &r) else { panic!("both present refused") };
    assert!(a.dedupe_keys.contains(&format!("bigcommerce:{HASH}:webhook:msg_1")));
    let unsigned = Request { headers: vec![("x-nudge-token".into(), "hook-token-1".into())], body };
    assert_eq!(status(verify(&s, &unsigned)), 401, "signature required once a secret is set");
}

#[test]
fn signature_optional_when_configured_so() {
    let mut cfg = signed_cfg();
    cfg.auth_headers = headers_cfg().auth_headers;
    cfg.require_signature = Some(false);
    let s = source(cfg);
    let body = order_callback(1).to_bytes();
    let unsigned =
        Request { headers: vec![("x-nudge-token".into(), "hook-token-1".into())], body: body.clone() };
    assert_eq!(status(verify(&s, &unsigned)), 200);
    // A signature that is present is still checked.
    let mut bad = signed(&body, "msg_1", NOW, "wrong");
    bad.headers.push(("x-nudge-token".into(), "hook-token-1".into()));
    assert_eq!(status(verify(&s, &bad)), 401);
}

#[test]
fn nothing_configured_is_500_and_another_store_is_refused() {
    let s = source(BigCommerceConfig { store_hash: HASH.into(), ..Default::default() });
    let body = order_callback(1).to_bytes();
    assert_eq!(status(verify(&s, &signed(&body, "m", NOW, SECRET))), 500);
    let other = order_callback(1).store("zzz999").to_bytes();
    let r = verify(&source(signed_cfg()), &signed(&other, "m", NOW, SECRET));
    assert_eq!(status(r), 401);
}

#[test]
fn stale_and_future_timestamps_are_refused() {
    let s = source(signed_cfg());
    let body = order_callback(1).to_bytes();
    assert_eq!(status(verify(&s, &signed(&body, "m", NOW - 301_000, SECRET))), 401);
    assert_eq!(status(verify(&s, &signed(&body, "m", NOW + 301_000, SECRET))), 401);
    assert_eq!(status(verify(&s, &signed(&body, "m", NOW - 299_000, SECRET))), 200);
}

fn parse(s: &BigCommerceSource, topic: &str, body: &[u8]) -> Parsed {
    s.parse(&StoredView { topic, shop: Some(HASH), body })
}

#[test]
fn each_scope_family_becomes_its_fetch_or_meaning() {
    let s = source(signed_cfg());
    let cart = "5d0b2b8e-1f7c-4f4e-9c3e-2f0d7a1b9c11";
    for (scope, id, resource) in [
        ("store/order/created", serde_json::json!(250), "order"),
        ("store/order/statusUpdated", serde_json::json!(250), "order"),
        ("store/cart/abandoned", serde_json::json!(cart), "cart"),
        ("store/cart/converted", serde_json::json!(cart), "cart"),
        ("store/cart/updated", serde_json::json!(cart), "cart"),
        ("store/customer/updated", serde_json::json!(7), "customer"),
        ("store/product/created", serde_json::json!(1), "product"),
    ] {
        let body = CallbackFixture::new(scope, id.clone()).to_bytes();
        match parse(&s, scope, &body) {
            Parsed::Fetch(job) => {
                assert_eq!(job.resource, resource, "{scope}");
                assert_eq!(job.topic, format!("bigcommerce/fetched/{resource}"));
                assert_eq!(job.shop.as_deref(), Some(HASH));
                assert_eq!(job.notified_topic, scope);
                assert_eq!(
                    serde_json::Value::String(job.id.clone()),
                    id.as_str().map_or(serde_json::json!(id.to_string()), |s| serde_json::json!(s))
                );
            }
            other => panic!("{scope}: {other:?}"),
        }
    }
    let abandoned = CallbackFixture::new("store/cart/abandoned", cart).data_field("token", "tok").to_bytes();
    assert!(matches!(parse(&s, "store/cart/abandoned", &abandoned), Parsed::Fetch(_)));
    let converted = CallbackFixture::new("store/cart/converted", cart).data_field("orderId", 251).to_bytes();
    assert!(matches!(parse(&s, "store/cart/converted", &converted), Parsed::Fetch(_)));
    let deleted = CallbackFixture::new("store/customer/deleted", 7).to_bytes();
    match parse(&s, "store/customer/deleted", &deleted) {
        Parsed::Privacy(PrivacyRequest::Erase { subject, .. }) => {
            assert_eq!(subject.customers[0].to_string(), "bigcommerce:abc123:7");
        }
        other => panic!("{other:?}"),
    }
    for scope in
        ["store/product/deleted", "store/cart/deleted", "store/app/uninstalled", "store/order/archived"]
    {
        let body = CallbackFixture::new(scope, 1).to_bytes();
        assert!(matches!(parse(&s, scope, &body), Parsed::Ignored(_)), "{scope}");
    }
    // An id that would change the request path is never fetched.
    let body = CallbackFixture::new("store/cart/updated", "../../v2/orders").to_bytes();
    assert!(matches!(parse(&s, "store/cart/updated", &body), Parsed::Quarantined(_)));
}

#[test]
fn fetched_answers_become_events() {
    let s = source(signed_cfg());
    let t = datetime!(2026-05-01 10:00 UTC);
    // A guest order is keyed by the hashed email; a cancelled one is a cancellation.
    let guest = OrderFixture::new(300, 0, Some("Guest@Example.com "), t)
        .item(ItemFixture::new(2, "Tea", 1, "9.9900"));
    let Parsed::Events(evs) = parse(&s, "bigcommerce/fetched/order", &guest.fetched_bytes()) else {
        panic!()
    };
    let Event::OrderUpserted(o) = &evs[0] else { panic!("{evs:?}") };
    let key = o.customer.as_ref().unwrap().to_string();
    assert!(key.starts_with("bigcommerce:abc123:guest-"), "{key}");
    assert_eq!(o.total.amount.to_string(), "9.99");
    for status in [4, 5, 6] {
        let c = guest.clone().status(status, "Cancelled");
        let Parsed::Events(evs) = parse(&s, "bigcommerce/fetched/order", &c.fetched_bytes()) else {
            panic!()
        };
        assert!(matches!(&evs[0], Event::OrderCancelled(o) if o.cancelled_at.is_some()), "status {status}");
    }
    let incomplete = guest.clone().status(0, "Incomplete");
    assert!(matches!(
        parse(&s, "bigcommerce/fetched/order", &incomplete.fetched_bytes()),
        Parsed::Ignored(_)
    ));
    // An anonymous cart is a cart; a customer's is a checkout with its recovery link.
    let anon = CartFixture::new("c-1", 0, None, t).item(ItemFixture::new(1, "Mug", 1, "12.5"));
    let Parsed::Events(evs) = parse(&s, "bigcommerce/fetched/cart", &anon.fetched_bytes()) else { panic!() };
    assert!(matches!(&evs[0], Event::CartUpserted(_)));
    let known = CartFixture::new("c-2", 7, None, t).item(ItemFixture::new(1, "Mug", 3, "12.5"));
    let Parsed::Events(evs) = parse(&s, "bigcommerce/fetched/cart", &known.fetched_bytes()) else { panic!() };
    let Event::CheckoutUpserted(c) = &evs[0] else { panic!() };
    assert_eq!(c.total.amount.to_string(), "37.5");
    assert!(c.recovery_url.is_some());
    let cust = CustomerFixture::new(7, "ana@example.com", t).accepts_emails(false);
    let Parsed::Events(evs) = parse(&s, "bigcommerce/fetched/customer", &cust.fetched_bytes()) else {
        panic!()
    };
    assert!(
        matches!(&evs[0], Event::CustomerUpserted(c) if c.email_consent == nudge_model::MarketingConsent::NotSubscribed)
    );
    // A customer list that is empty: the customer is gone.
    assert!(matches!(
        parse(&s, "bigcommerce/fetched/customer", br#"{"data":[],"meta":{}}"#),
        Parsed::Ignored(_)
    ));
    let p = ProductFixture::new(1, "Mug", "12.50", t);
    assert!(matches!(parse(&s, "bigcommerce/fetched/product", &p.fetched_bytes()), Parsed::Events(_)));
}

#[test]
fn fetched_bodies_that_do_not_parse_are_quarantined_with_the_field_path() {
    let s = source(signed_cfg());
    let t = datetime!(2026-05-01 10:00 UTC);
    let mut v = OrderFixture::new(300, 7, None, t).item(ItemFixture::new(2, "Tea", 1, "9.99")).fetched();
    v["products"][0]["price_inc_tax"] = serde_json::json!("free");
    let body = serde_json::to_vec(&v).unwrap();
    match parse(&s, "bigcommerce/fetched/order", &body) {
        Parsed::Quarantined(reason) => assert!(reason.contains("products[0].price_inc_tax"), "{reason}"),
        other => panic!("{other:?}"),
    }
    v["order"]["date_modified"] = serde_json::json!("yesterday");
    match parse(&s, "bigcommerce/fetched/order", &serde_json::to_vec(&v).unwrap()) {
        Parsed::Quarantined(reason) => assert!(reason.contains("order.date_modified"), "{reason}"),
        other => panic!("{other:?}"),
    }
    for garbage in [&b"<html>502</html>"[..], b"{}", b"[]", b"{\"data\":\"x\"}"] {
        for r in ["order", "cart", "customer", "product"] {
            assert!(
                matches!(parse(&s, &format!("bigcommerce/fetched/{r}"), garbage), Parsed::Quarantined(_)),
                "{r}: {}",
                String::from_utf8_lossy(garbage)
            );
        }
    }
}
