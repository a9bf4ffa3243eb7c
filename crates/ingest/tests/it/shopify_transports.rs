//! One Shopify event over HTTPS, Pub/Sub and EventBridge is one delivery with one meaning; the edge cases
//! of the Pub/Sub token and the EventBridge key; customer enrichment's fetch job and the parse of its
//! answer.

use crate::source_shopify::{SECRET, delivery, order, request};
use crate::source_shopify_eventbridge::{self as eb, EventBridge};
use crate::source_shopify_pubsub::{self as ps, PubSub, policy};
use crate::source_suite::{Request, SourceHarness};
use nudge_ingest::shopify::enrich::answer_body;
use nudge_ingest::shopify::fixtures::{CheckoutFixture, CustomerFixture, LineItemFixture, OrderFixture};
use nudge_ingest::shopify::oidc::{KeySet, TokenPolicy};
use nudge_ingest::shopify::{FETCHED_CUSTOMER_TOPIC, ShopifyPubSubSource, ShopifySource};
use nudge_ingest::source::{Accepted, Inbound, Parsed, Source, StoredView, Verified};
use nudge_ingest::{FetchJob, Rejection};
use nudge_testkit::google_oidc::{self, TokenSigner};
use serde_json::{Value, json};
use time::macros::datetime;

const NOW: i64 = 1_780_000_000_000;

fn verify(source: &dyn Source, r: &Request) -> Result<Verified, Rejection> {
    let h = r.headers();
    source.verify(&Inbound { headers: &h, body: &r.body, query: None, now_ms: NOW })
}

fn accepted(source: &dyn Source, r: &Request) -> Accepted {
    match verify(source, r) {
        Ok(Verified::Deliver(a)) => a,
        other => panic!("not accepted: {other:?}"),
    }
}

fn stored_parse(source: &dyn Source, a: &Accepted, r: &Request) -> Parsed {
    let body = a.body.clone().unwrap_or_else(|| r.body.clone());
    source.parse(&StoredView { topic: &a.topic, shop: a.shop.as_deref(), body: &body })
}

#[test]
fn one_event_three_ways_is_one_delivery_with_one_meaning() {
    let https_source = ShopifySource::new(vec![SECRET.into()]);
    let https_req = request(&delivery(5), order(5).to_bytes(), SECRET);
    let https = accepted(&https_source, &https_req);
    let pubsub_source = PubSub.source();
    let pubsub_req = PubSub.genuine(5, NOW);
    let pubsub = accepted(pubsub_source.as_ref(), &pubsub_req);
    let eb_source = EventBridge.source();
    let eb_req = EventBridge.genuine(5, NOW);
    let eventbridge = accepted(eb_source.as_ref(), &eb_req);

    let expected_keys = vec![
        "shopify:demo-store.myshopify.com:webhook:wh-5".to_string(),
        "shopify:demo-store.myshopify.com:event:evt-wh-5".to_string(),
    ];
    for (name, a) in [("HTTPS", &https), ("Pub/Sub", &pubsub), ("EventBridge", &eventbridge)] {
        assert_eq!(a.dedupe_keys, expected_keys, "{name}");
        assert_eq!(a.topic, "orders/create", "{name}");
        assert_eq!(a.shop.as_deref(), Some("demo-store.myshopify.com"), "{name}");
        assert_eq!(a.webhook_id.as_deref(), Some("wh-5"), "{name}");
        assert!(a.audit_headers.iter().all(|(k, _)| !k.contains("authorization") && !k.contains("api-key")));
    }
    assert_eq!(pubsub.body.as_deref(), Some(order(5).to_bytes().as_slice()), "Pub/Sub stores the payload");
    assert!(eventbridge.body.is_some(), "EventBridge stores the payload, not the envelope");

    let parsed = stored_parse(&https_source, &https, &https_req);
    assert!(matches!(&parsed, Parsed::Events(evs) if !evs.is_empty()), "{parsed:?}");
    // Whatever intake stored it, the parser of the name `shopify` reads it the same.
    assert_eq!(stored_parse(&https_source, &pubsub, &pubsub_req), parsed);
    assert_eq!(stored_parse(&https_source, &eventbridge, &eb_req), parsed);
    assert_eq!(stored_parse(pubsub_source.as_ref(), &pubsub, &pubsub_req), parsed);
    assert_eq!(stored_parse(eb_source.as_ref(), &eventbridge, &eb_req), parsed);
}

fn with_claims(edit: impl FnOnce(&mut Value)) -> String {
    let mut claims = google_oidc::claims(NOW);
    edit(&mut claims);
    google_oidc::bearer(&TokenSigner::trusted().sign(&claims))
}

#[test]
fn pubsub_tokens_that_are_not_google_pushing_for_this_subscription_are_401() {
    let source = PubSub.source();
    let body = order(1).to_bytes();
    let cases: Vec<(&str, Option<String>)> = vec![
        ("wrong audience", Some(with_claims(|c| c["aud"] = json!("https://other.example.com/push")))),
        ("wrong email", Some(with_claims(|c| c["email"] = json!("someone@evil.example.com")))),
        ("unverified email", Some(with_claims(|c| c["email_verified"] = json!(false)))),
        (
            "no email_verified",
            Some(with_claims(|c| {
                c.as_object_mut().unwrap().remove("email_verified").map(drop).unwrap_or(())
            })),
        ),
        ("wrong issuer", Some(with_claims(|c| c["iss"] = json!("https://evil.example.com")))),
        ("expired", Some(with_claims(|c| c["exp"] = json!(NOW / 1000 - 120)))),
        ("issued in the future", Some(with_claims(|c| c["iat"] = json!(NOW / 1000 + 600)))),
        ("no exp", Some(with_claims(|c| c.as_object_mut().unwrap().remove("exp").map(drop).unwrap_or(())))),
        ("alg none", Some(google_oidc::bearer(&google_oidc::unsigned_token(&google_oidc::claims(NOW))))),
        ("HS256", Some(google_oidc::bearer(&google_oidc::hs256_token(&google_oidc::claims(NOW))))),
        (
            "unknown kid",
            Some(google_oidc::bearer(
                &TokenSigner::trusted().with_kid("rotated-away").sign(&google_oidc::claims(NOW)),
            )),
        ),
        ("another key", Some(google_oidc::bearer(&TokenSigner::impostor().sign(&google_oidc::claims(NOW))))),
        ("malformed", Some("Bearer not-a-jwt".into())),
        ("four parts", Some("Bearer a.b.c.d".into())),
        ("bad base64", Some("Bearer ***.***.***".into())),
        ("empty bearer", Some("Bearer ".into())),
        ("basic scheme", Some("Basic dXNlcjpwYXNz".into())),
        ("raw token without scheme", Some(google_oidc::token(NOW))),
        ("huge", Some(format!("Bearer {}", "a".repeat(100_000)))),
        ("no header", None),
    ];
    for (what, auth) in cases {
        match verify(source.as_ref(), &ps::push(1, &body, auth)) {
            Err(e) => {
                assert_eq!(e.status, 401, "{what}: {e:?}");
                assert!(
                    !e.reason.contains("eyJ"),
                    "{what}: the reason must not echo the token: {}",
                    e.reason
                );
            }
            Ok(v) => panic!("{what} was accepted: {v:?}"),
        }
    }
    // Within the leeway both ways is fine.
    let edge = with_claims(|c| {
        c["exp"] = json!(NOW / 1000 - 30);
        c["iat"] = json!(NOW / 1000 + 30);
    });
    assert!(verify(source.as_ref(), &ps::push(1, &body, Some(edge))).is_ok());
    // `accounts.google.com` without the scheme is Google's too.
    let bare = with_claims(|c| c["iss"] = json!("accounts.google.com"));
    assert!(verify(source.as_ref(), &ps::push(1, &body, Some(bare))).is_ok());
}

#[test]
fn pubsub_keys_can_be_configured_as_jwks_certificates_or_pem() {
    let body = order(1).to_bytes();
    let genuine = ps::push(1, &body, Some(google_oidc::bearer(&google_oidc::token(NOW))));
    for text in [google_oidc::jwks(), google_oidc::certs_map(), google_oidc::certificate_pem().to_string()] {
        let keys = KeySet::parse(&text).unwrap_or_else(|e| panic!("{e}: {text}"));
        let source = ShopifyPubSubSource::new(Some(TokenPolicy { keys, ..policy() }));
        assert!(matches!(verify(&source, &genuine), Ok(Verified::Deliver(_))), "{text}");
    }
    for bad in ["", "{}", "not a key", "{\"keys\":[{\"kty\":\"EC\"}]}", "{\"kid\":5}"] {
        assert!(KeySet::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn pubsub_refusals_other_than_authentication() {
    let unconfigured = ShopifyPubSubSource::new(None);
    let genuine = PubSub.genuine(1, NOW);
    assert_eq!(verify(&unconfigured, &genuine).unwrap_err().status, 500);
    let source = PubSub.source();
    let auth = Some(google_oidc::bearer(&google_oidc::token(NOW)));
    let mut not_an_envelope = ps::push(1, b"{}", auth.clone());
    not_an_envelope.body = b"[1,2]".to_vec();
    assert_eq!(verify(source.as_ref(), &not_an_envelope).unwrap_err().status, 400);
    let mut no_topic = ps::push(1, b"{}", auth);
    no_topic.body =
        br#"{"message":{"data":"e30=","attributes":{"X-Shopify-Shop-Domain":"demo-store.myshopify.com"}}}"#
            .to_vec();
    assert_eq!(verify(source.as_ref(), &no_topic).unwrap_err().status, 400);
}

#[test]
fn eventbridge_key_header_is_any_case_and_checked_exactly() {
    let source = eb::source();
    let mut r = eb::event(1, &order(1).to_json(), None);
    r.headers.push(("X-Nudge-Api-Key".into(), eb::KEY.into()));
    assert!(matches!(verify(&source, &r), Ok(Verified::Deliver(_))));
    for wrong in ["", "eb_suite_key_012345678", "eb_suite_key_01234567890", "EB_SUITE_KEY_0123456789"] {
        let r = eb::event(1, &order(1).to_json(), Some(wrong));
        assert_eq!(verify(&source, &r).unwrap_err().status, 401, "{wrong:?}");
    }
    let unconfigured = nudge_ingest::shopify::ShopifyEventBridgeSource::new(None);
    assert_eq!(verify(&unconfigured, &EventBridge.genuine(1, NOW)).unwrap_err().status, 500);
    assert!(!format!("{source:?}").contains(eb::KEY), "Debug must not show the key");
    let not_shopify = Request {
        headers: vec![(eb::HEADER.into(), eb::KEY.into())],
        body: br#"{"detail-type":"Scheduled Event","detail":{}}"#.to_vec(),
    };
    assert_eq!(verify(&source, &not_shopify).unwrap_err().status, 400);
}

fn thin_order(id: u64) -> OrderFixture {
    OrderFixture::new(id, datetime!(2026-05-01 10:00 UTC))
        .customer(CustomerFixture::new(880_012, None, datetime!(2026-04-01 9:00 UTC)))
        .line_item(LineItemFixture::new(1, "Mug", 1, "12.50"))
}

fn full_order(id: u64) -> OrderFixture {
    OrderFixture::new(id, datetime!(2026-05-01 10:00 UTC))
        .customer(CustomerFixture::new(880_012, Some("lena@example.org"), datetime!(2026-04-01 9:00 UTC)))
        .line_item(LineItemFixture::new(1, "Mug", 1, "12.50"))
}

/// The customer as the GraphQL Admin API answers it.
fn admin_customer(id: u64) -> Value {
    json!({
        "id": format!("gid://shopify/Customer/{id}"),
        "firstName": "Lena", "lastName": "Berg",
        "defaultEmailAddress": {
            "emailAddress": "lena@example.org", "marketingState": "SUBSCRIBED",
            "marketingOptInLevel": "SINGLE_OPT_IN", "marketingUpdatedAt": "2026-04-01T09:00:00Z"
        },
        "defaultPhoneNumber": {"phoneNumber": "+4915112345678", "marketingState": "NOT_SUBSCRIBED"}
    })
}

fn parse(source: &dyn Source, topic: &str, body: &[u8]) -> Parsed {
    source.parse(&StoredView { topic, shop: Some("demo-store.myshopify.com"), body })
}

fn fetch_job(p: Parsed) -> FetchJob {
    match p {
        Parsed::Fetch(job) => job,
        other => panic!("expected a fetch job, got {other:?}"),
    }
}

#[test]
fn enrichment_asks_for_the_customer_of_an_order_without_email_only_when_on() {
    let plain = ShopifySource::new(vec![SECRET.into()]);
    let enriching = ShopifySource::new(vec![SECRET.into()]).enrich_customers(true);
    let thin = thin_order(6_001).to_bytes();
    assert!(matches!(parse(&plain, "orders/create", &thin), Parsed::Events(_)), "off by default");
    let job = fetch_job(parse(&enriching, "orders/create", &thin));
    assert_eq!(
        job,
        FetchJob {
            source: "shopify".into(),
            shop: Some("demo-store.myshopify.com".into()),
            resource: "customer".into(),
            id: "880012".into(),
            topic: FETCHED_CUSTOMER_TOPIC.into(),
            notified_topic: "orders/create".into(),
            carry: Some(String::from_utf8(thin.clone()).unwrap()),
        }
    );
    // A checkout too; not an order that has an email, a guest order, or another topic.
    let checkout = CheckoutFixture::new(3_300_001, datetime!(2026-05-01 10:00 UTC))
        .customer(CustomerFixture::new(880_012, None, datetime!(2026-04-01 9:00 UTC)))
        .line_item(LineItemFixture::new(1, "Mug", 1, "12.50"));
    assert_eq!(fetch_job(parse(&enriching, "checkouts/update", &checkout.to_bytes())).id, "880012");
    assert!(matches!(parse(&enriching, "orders/create", &full_order(6_002).to_bytes()), Parsed::Events(_)));
    let guest = OrderFixture::new(6_003, datetime!(2026-05-01 10:00 UTC))
        .guest("g@example.org")
        .line_item(LineItemFixture::new(1, "Mug", 1, "12.50"));
    assert!(matches!(parse(&enriching, "orders/create", &guest.to_bytes()), Parsed::Events(_)));
    let customer = CustomerFixture::new(880_012, None, datetime!(2026-04-01 9:00 UTC)).to_bytes();
    assert!(matches!(parse(&enriching, "customers/update", &customer), Parsed::Events(_)));
}

#[test]
fn the_fetched_customer_parses_to_the_original_events_with_the_email_filled_in() {
    let enriching = ShopifySource::new(vec![SECRET.into()]).enrich_customers(true);
    let thin = thin_order(6_001).to_bytes();
    let job = fetch_job(parse(&enriching, "orders/create", &thin));
    let carry = job.carry.clone().unwrap();

    let answer = answer_body(&job.notified_topic, &carry, &admin_customer(880_012));
    let enriched = parse(&enriching, &job.topic, &answer);
    let expected = parse(&enriching, "orders/create", &full_order(6_001).to_bytes());
    assert!(matches!(&expected, Parsed::Events(_)));
    assert_eq!(enriched, expected);
    // The plain parser reads an answer the same (a job in flight when enrichment was turned off).
    assert_eq!(parse(&ShopifySource::new(vec![]), &job.topic, &answer), expected);

    // A customer the API no longer has: the original events, without an email.
    let gone = answer_body(&job.notified_topic, &carry, &Value::Null);
    assert_eq!(
        parse(&enriching, &job.topic, &gone),
        parse(&ShopifySource::new(vec![]), "orders/create", &thin)
    );

    // Another customer's answer is never merged.
    let other = answer_body(&job.notified_topic, &carry, &admin_customer(999));
    assert!(matches!(parse(&enriching, &job.topic, &other), Parsed::Quarantined(r) if r.contains("999")));

    // Hostile answers quarantine, never panic.
    for body in [
        &b""[..],
        b"{}",
        b"[]",
        b"{\"notified_topic\":\"orders/create\",\"payload\":\"[]\",\"customer\":{}}",
        b"{\"notified_topic\":\"orders/create\",\"payload\":\"{\",\"customer\":{}}",
        b"{\"notified_topic\":\"orders/create\",\"payload\":\"{}\",\"customer\":7}",
    ] {
        assert!(
            matches!(parse(&enriching, FETCHED_CUSTOMER_TOPIC, body), Parsed::Quarantined(_)),
            "{body:?}"
        );
    }
}
