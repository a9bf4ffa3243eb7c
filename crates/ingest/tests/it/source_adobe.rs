//! Adobe Commerce through the source compliance suite, once per intake (the Webhooks module and Adobe I/O
//! Events share the path and the stored name), and the Adobe-specific contract (api-contracts §8 cases
//! 28–31, second document 8.3).

use crate::source_suite::{Request, SourceHarness, run_suite};
use nudge_ingest::adobe::fixtures::{
    OrderFixture, customer_value, hook, io_event, product_value, quote_value,
};
use nudge_ingest::adobe::{AdobeCommerceSource, IoEventsSettings, KeyBase, PublicKey};
use nudge_ingest::source::{Inbound, Parsed, Source, StoredView, Verified};
use nudge_ingest::{Headers, Rejection};
use nudge_model::Event;
use nudge_testkit::fake_adobe_io::{IoSignature, KEY1_PATH, KEY2_PATH, hook_headers, io_headers, keys};
use serde_json::json;
use std::sync::Arc;

const CLIENT_ID: &str = "nudge-client-4711";
const BASE: &str = "https://static.adobeioevents.com";
const INSTANCE_UUID: &str = "5c0a8d1e-0000-4000-8000-00000000a001";
const ORDER_EVENT: &str = "observer.sales_order_save_commit_after";

fn key(pem: &str) -> PublicKey {
    PublicKey::from_pem(pem).expect("a test public key")
}

fn io_settings(public_keys: Vec<PublicKey>) -> IoEventsSettings {
    IoEventsSettings { client_id: CLIENT_ID.into(), key_base: KeyBase::parse(BASE).unwrap(), public_keys }
}

fn order(n: u32) -> OrderFixture {
    OrderFixture::new(
        5_000 + u64::from(n),
        Some(7_000 + u64::from(n)),
        "ana@example.com",
        "2026-05-01 10:00:00",
    )
}

fn verify(s: &dyn Source, headers: &[(String, String)], body: &[u8]) -> Result<Verified, Rejection> {
    let h = Headers::from_pairs(headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())));
    s.verify(&Inbound { headers: &h, body, now_ms: 0, query: None })
}

fn sig1(private_pem: &str) -> Option<IoSignature<'_>> {
    Some(IoSignature { private_pem, key_path: KEY1_PATH })
}

fn sig2(private_pem: &str) -> Option<IoSignature<'_>> {
    Some(IoSignature { private_pem, key_path: KEY2_PATH })
}

fn order_versions(wrap: impl Fn(&OrderFixture) -> Vec<u8>, topic: &str) -> [(String, Vec<u8>); 2] {
    let older = order(1).state("pending_payment").updated_at("2026-05-01 10:00:00");
    let newer = order(1).state("processing").updated_at("2026-05-01 11:00:00");
    [(topic.into(), wrap(&older)), (topic.into(), wrap(&newer))]
}

/// The Webhooks module, signature verification on.
struct Hooks;

fn hook_body(o: &OrderFixture) -> Vec<u8> {
    hook(ORDER_EVENT, "order", o.value())
}

impl SourceHarness for Hooks {
    fn source(&self) -> Arc<dyn Source> {
        Arc::new(AdobeCommerceSource::new("main", Some(key(keys::COMMERCE_PUBLIC)), None).unwrap())
    }
    fn genuine(&self, n: u32, _now_ms: i64) -> Request {
        self.signed(&hook_body(&order(n)), 0)
    }
    fn retry(&self, n: u32, now_ms: i64) -> Request {
        self.genuine(n, now_ms)
    }
    fn wrongly_signed(&self, n: u32, _now_ms: i64) -> Request {
        let body = hook_body(&order(n));
        Request { headers: hook_headers(&body, Some(keys::STRANGER_PRIVATE)), body }
    }
    fn unsigned(&self, n: u32, _now_ms: i64) -> Request {
        let body = hook_body(&order(n));
        Request { headers: hook_headers(&body, None), body }
    }
    fn stale(&self, _n: u32, _now_ms: i64) -> Option<Request> {
        None
    }
    fn signed(&self, body: &[u8], _now_ms: i64) -> Request {
        Request { headers: hook_headers(body, Some(keys::COMMERCE_PRIVATE)), body: body.to_vec() }
    }
    fn order_versions(&self) -> [(String, Vec<u8>); 2] {
        order_versions(hook_body, ORDER_EVENT)
    }
}

/// Adobe I/O Events, with key 1 configured and both keys' URLs already fetched.
struct IoEvents;

fn io_body(o: &OrderFixture, event_id: &str) -> Vec<u8> {
    io_event(ORDER_EVENT, event_id, CLIENT_ID, INSTANCE_UUID, o.value())
}

fn io_request(body: Vec<u8>, event_id: &str, signer: &str) -> Request {
    Request { headers: io_headers(&body, event_id, sig1(signer), None), body }
}

impl SourceHarness for IoEvents {
    fn source(&self) -> Arc<dyn Source> {
        let s =
            AdobeCommerceSource::new("main", None, Some(io_settings(vec![key(keys::IO_1_PUBLIC)]))).unwrap();
        s.accept_key(&format!("{BASE}{KEY1_PATH}"), keys::IO_1_PUBLIC).unwrap();
        s.accept_key(&format!("{BASE}{KEY2_PATH}"), keys::IO_2_PUBLIC).unwrap();
        Arc::new(s)
    }
    fn genuine(&self, n: u32, _now_ms: i64) -> Request {
        io_request(io_body(&order(n), &format!("evt-{n}")), &format!("evt-{n}"), keys::IO_1_PRIVATE)
    }
    fn retry(&self, n: u32, now_ms: i64) -> Request {
        self.genuine(n, now_ms)
    }
    fn wrongly_signed(&self, n: u32, _now_ms: i64) -> Request {
        io_request(io_body(&order(n), &format!("evt-{n}")), &format!("evt-{n}"), keys::STRANGER_PRIVATE)
    }
    fn unsigned(&self, n: u32, _now_ms: i64) -> Request {
        let body = io_body(&order(n), &format!("evt-{n}"));
        Request { headers: io_headers(&body, &format!("evt-{n}"), None, None), body }
    }
    fn stale(&self, _n: u32, _now_ms: i64) -> Option<Request> {
        None
    }
    fn signed(&self, body: &[u8], _now_ms: i64) -> Request {
        io_request(body.to_vec(), "evt-any", keys::IO_1_PRIVATE)
    }
    fn order_versions(&self) -> [(String, Vec<u8>); 2] {
        order_versions(|o| io_body(o, "evt-v"), &format!("com.adobe.commerce.{ORDER_EVENT}"))
    }
}

#[test]
fn the_webhooks_module_passes_the_source_suite() {
    run_suite(&Hooks);
}

#[test]
fn io_events_pass_the_source_suite() {
    run_suite(&IoEvents);
}

#[test]
fn a_hook_is_answered_with_the_success_operation_and_keyed_by_its_body() {
    let s = Hooks.source();
    let r = Hooks.genuine(1, 0);
    let Ok(Verified::Deliver(a)) = verify(s.as_ref(), &r.headers, &r.body) else { panic!("not accepted") };
    assert_eq!(a.reply, Some(json!({"op": "success"})));
    assert_eq!(a.topic, ORDER_EVENT);
    assert_eq!(a.shop.as_deref(), Some("main"));
    assert!(a.dedupe_keys[0].starts_with("adobe_commerce:main:webhook:"), "{:?}", a.dedupe_keys);
}

#[test]
fn a_hook_signed_over_the_raw_body_instead_of_its_base64_is_refused() {
    let s = Hooks.source();
    let body = hook_body(&order(1));
    let sig = nudge_testkit::fake_adobe_io::sign(keys::COMMERCE_PRIVATE, &body);
    let headers = vec![("x-adobe-commerce-webhook-signature".to_string(), sig)];
    assert_eq!(verify(s.as_ref(), &headers, &body).unwrap_err().status, 401);
}

#[test]
fn without_a_configured_key_hooks_and_events_are_refused_with_500() {
    let s = AdobeCommerceSource::new("main", None, None).unwrap();
    let r = Hooks.genuine(1, 0);
    assert_eq!(verify(&s, &r.headers, &r.body).unwrap_err().status, 500);
    let r = IoEvents.genuine(1, 0);
    assert_eq!(verify(&s, &r.headers, &r.body).unwrap_err().status, 500);
}

#[test]
fn the_registration_challenge_is_echoed() {
    let s = IoEvents.source();
    let h = Headers::new();
    let v = s
        .verify(&Inbound { headers: &h, body: b"", now_ms: 0, query: Some("challenge=8f2c-41%2Bx") })
        .unwrap();
    assert_eq!(v, Verified::Answer { status: 200, body: json!({"challenge": "8f2c-41+x"}) });
    let e = s.verify(&Inbound { headers: &h, body: b"", now_ms: 0, query: Some("other=1") }).unwrap_err();
    assert_eq!(e.status, 400);
}

#[test]
fn a_validation_url_post_is_answered_and_never_fetched() {
    let s = IoEvents.source();
    let body = br#"{"validationUrl":"https://csm.adobe.io/csm/registrations/validate?id=1&challenge=2"}"#;
    match verify(s.as_ref(), &[], body) {
        Ok(Verified::Answer { status: 200, .. }) => {}
        other => panic!("{other:?}"),
    }
}

#[test]
fn key_paths_outside_the_base_are_refused_before_any_fetch() {
    let s = AdobeCommerceSource::new("main", None, Some(io_settings(vec![]))).unwrap();
    let body = io_body(&order(1), "evt-1");
    for path in [
        "//evil.example/k.pem",
        "/../k.pem",
        "/prod/%2e%2e/k.pem",
        "@evil.example/k.pem",
        "https://evil.example/k.pem",
        ".evil.example/k.pem",
        "/k.pem?x=https://static.adobeioevents.com",
    ] {
        let headers = io_headers(
            &body,
            "evt-1",
            Some(IoSignature { private_pem: keys::IO_1_PRIVATE, key_path: path }),
            None,
        );
        let e = verify(&s, &headers, &body).unwrap_err();
        assert_eq!(e.status, 401, "{path}");
    }
    // Even when the configured key verifies the signature, a hostile path is refused.
    let s = AdobeCommerceSource::new("main", None, Some(io_settings(vec![key(keys::IO_1_PUBLIC)]))).unwrap();
    let headers = io_headers(
        &body,
        "evt-1",
        Some(IoSignature { private_pem: keys::IO_1_PRIVATE, key_path: "/../k" }),
        None,
    );
    assert_eq!(verify(&s, &headers, &body).unwrap_err().status, 401);
}

#[test]
fn an_event_for_another_client_id_is_refused() {
    let s = IoEvents.source();
    let body = io_event(ORDER_EVENT, "evt-9", "someone-else", INSTANCE_UUID, order(9).value());
    let r = io_request(body, "evt-9", keys::IO_1_PRIVATE);
    let e = verify(s.as_ref(), &r.headers, &r.body).unwrap_err();
    assert_eq!(e.status, 401);
    assert!(e.reason.contains("recipient_client_id"), "{e:?}");
}

#[test]
fn unknown_keys_are_asked_for_then_cached_and_the_second_signature_alone_suffices() {
    let s = AdobeCommerceSource::new("main", None, Some(io_settings(vec![]))).unwrap();
    let body = io_body(&order(1), "evt-1");
    // Signature 1 by a stranger, signature 2 by Adobe's second key.
    let headers = io_headers(&body, "evt-1", sig1(keys::STRANGER_PRIVATE), sig2(keys::IO_2_PRIVATE));
    let url1 = format!("{BASE}{KEY1_PATH}");
    let url2 = format!("{BASE}{KEY2_PATH}");
    assert_eq!(verify(&s, &headers, &body).unwrap(), Verified::NeedKeys(vec![url1.clone(), url2.clone()]));
    assert!(s.accept_key(&url1, "not a key").is_err());
    assert!(s.accept_key("https://evil.example/k.pem", keys::IO_1_PUBLIC).is_err());
    s.accept_key(&url1, keys::IO_1_PUBLIC).unwrap();
    s.accept_key(&url2, keys::IO_2_PUBLIC).unwrap();
    let Ok(Verified::Deliver(a)) = verify(&s, &headers, &body) else { panic!("not accepted after the keys") };
    assert_eq!(a.dedupe_keys, vec!["adobe_commerce:main:event:evt-1".to_string()]);
    assert_eq!(a.reply, None);
    assert_eq!(a.event_id.as_deref(), Some("evt-1"));
    assert_eq!(s.cached_keys(), 2);
    // Known keys: no further fetch; a signature no known key verifies is refused.
    let other = io_body(&order(2), "evt-2");
    let ok = io_headers(&other, "evt-2", sig1(keys::IO_1_PRIVATE), None);
    assert!(matches!(verify(&s, &ok, &other), Ok(Verified::Deliver(_))));
    let bad = io_headers(&other, "evt-2", sig1(keys::STRANGER_PRIVATE), sig2(keys::STRANGER_PRIVATE));
    assert_eq!(verify(&s, &bad, &other).unwrap_err().status, 401);
}

fn parse(topic: &str, body: &[u8]) -> Parsed {
    Hooks.source().parse(&StoredView { topic, shop: Some("main"), body })
}

fn one_event(p: Parsed) -> Event {
    match p {
        Parsed::Events(mut evs) if evs.len() == 1 => evs.remove(0),
        other => panic!("{other:?}"),
    }
}

#[test]
fn orders_normalise_with_exact_money_and_instance_keyed_customers() {
    let o = order(1).grand_total("12345678901234567890.01");
    let Event::OrderUpserted(ord) = one_event(parse(ORDER_EVENT, &hook_body(&o))) else { panic!() };
    assert_eq!(ord.id, "5001");
    assert_eq!(ord.total.amount.to_string(), "12345678901234567890.01");
    assert_eq!(ord.total.currency.as_str(), "EUR");
    assert_eq!(ord.customer.unwrap().to_string(), "adobe:main:7001");
    assert_eq!(ord.line_items.len(), 1);
    assert_eq!(ord.line_items[0].price.amount.to_string(), "42.45");
    assert_eq!(ord.line_items[0].quantity, 2);

    let cancelled = order(1).state("canceled");
    assert!(matches!(one_event(parse(ORDER_EVENT, &io_body(&cancelled, "e"))), Event::OrderCancelled(_)));

    let guest = OrderFixture::new(6, None, " Bo@Example.com ", "2026-05-01 10:00:00");
    let Event::OrderUpserted(g) = one_event(parse(ORDER_EVENT, &hook_body(&guest))) else { panic!() };
    let key = g.customer.unwrap().to_string();
    assert!(key.starts_with("adobe:main:guest-") && !key.contains('@'), "{key}");

    let mut missing = order(1).value();
    missing.as_object_mut().unwrap().remove("updated_at");
    match parse(ORDER_EVENT, &hook(ORDER_EVENT, "order", missing)) {
        Parsed::Quarantined(r) => assert_eq!(r, "data.order.updated_at: missing"),
        other => panic!("{other:?}"),
    }
}

#[test]
fn customers_carts_products_and_other_events() {
    let c = io_event(
        "observer.customer_save_commit_after",
        "e1",
        CLIENT_ID,
        INSTANCE_UUID,
        customer_value(42, "ana@example.com", "2026-05-02 08:00:00"),
    );
    let Event::CustomerUpserted(cu) =
        one_event(parse("com.adobe.commerce.observer.customer_save_commit_after", &c))
    else {
        panic!()
    };
    assert_eq!(cu.id.to_string(), "adobe:main:42");
    assert_eq!(cu.email_consent, nudge_model::MarketingConsent::Subscribed);

    let login = io_event(
        "observer.customer_login",
        "e2",
        CLIENT_ID,
        INSTANCE_UUID,
        customer_value(42, "a@b.c", "2026-05-02 08:00:00"),
    );
    assert!(matches!(parse("com.adobe.commerce.observer.customer_login", &login), Parsed::Ignored(_)));

    let q = hook(
        "observer.checkout_cart_save_commit_after",
        "quote",
        quote_value(300, Some(42), Some("ana@example.com"), "2026-05-02 09:00:00"),
    );
    let Event::CheckoutUpserted(ch) = one_event(parse("observer.checkout_cart_save_commit_after", &q)) else {
        panic!()
    };
    assert_eq!(ch.token, "300");
    assert_eq!(ch.customer.unwrap().to_string(), "adobe:main:42");
    assert_eq!(ch.total.amount.to_string(), "19.99");

    let anon = hook(
        "observer.checkout_cart_save_commit_after",
        "quote",
        quote_value(301, None, None, "2026-05-02 09:00:00"),
    );
    assert!(matches!(
        one_event(parse("observer.checkout_cart_save_commit_after", &anon)),
        Event::CartUpserted(_)
    ));

    let p = hook(
        "observer.catalog_product_save_commit_after",
        "product",
        product_value(77, "Tee", "2026-05-02 09:00:00"),
    );
    let Event::ProductUpserted(pr) = one_event(parse("observer.catalog_product_save_commit_after", &p))
    else {
        panic!()
    };
    assert_eq!((pr.id.as_str(), pr.title.as_str()), ("77", "Tee"));

    assert!(matches!(parse("observer.sales_order_invoice_pay", b"{}"), Parsed::Ignored(_)));
}
