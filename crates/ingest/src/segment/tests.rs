use super::*;
use crate::headers::Headers;
use crate::source::Parsed;
use nudge_model::{BehaviourKind, CustomerId, Event, MarketingConsent};
use serde_json::{Value, json};
use std::io::Write;
use time::macros::datetime;

const KEY: &str = "wk_test_7Fq2";

fn settings() -> RequestSettings {
    RequestSettings {
        write_keys: vec!["wk_old".into(), KEY.into()],
        max_request_bytes: DEFAULT_MAX_REQUEST_BYTES,
    }
}

fn received() -> time::OffsetDateTime {
    datetime!(2026-05-01 10:00:01 UTC)
}

fn python_batch() -> Value {
    json!({"batch":[{"integrations":{},"anonymousId":"a-7f3c","properties":{"product_id":"9100000001","sku":"TEE-BLK-M",
      "price":39.95,"currency":"EUR"},"timestamp":"2026-05-01T10:00:00.000+00:00","context":{"library":{"name":"analytics-python",
      "version":"2.3.4"}},"userId":null,"type":"track","event":"Product Viewed","messageId":"5f0f8c3e-2b1a-4f7e-9d1c-1b2a3c4d5e6f"}],
     "sentAt":"2026-05-01T10:00:00.512344+00:00","writeKey":KEY})
}

fn read(route: Route, headers: &Headers, body: &Value) -> Result<ReadRequest, RequestError> {
    read_request(&settings(), route, headers, &serde_json::to_vec(body).unwrap(), received())
}

fn stored(m: &ReadMessage) -> Value {
    serde_json::from_slice(&m.body).unwrap()
}

fn events(source: &SegmentSource, message: Value) -> Vec<Event> {
    match source.parse_message(&serde_json::to_vec(&message).unwrap()) {
        Parsed::Events(e) => e,
        other => panic!("expected events, got {other:?}"),
    }
}

#[test]
fn the_python_sdk_batch_is_read_with_its_key_in_the_body() {
    let r = read(Route::Batch, &Headers::new(), &python_batch()).unwrap();
    assert_eq!(r.messages.len(), 1);
    let m = &r.messages[0];
    assert_eq!(m.topic, "track:Product Viewed");
    assert_eq!(
        m.dedupe_key.as_deref(),
        Some(&*format!("segment:{}:5f0f8c3e-2b1a-4f7e-9d1c-1b2a3c4d5e6f", key_id(KEY)))
    );
    assert_eq!(key_id(KEY).len(), 16);
    let body = stored(m);
    assert_eq!(body["receivedAt"], "2026-05-01T10:00:01.000Z");
    assert_eq!(body["originalTimestamp"], "2026-05-01T10:00:00.000+00:00");
    // receivedAt − (sentAt − timestamp) = 10:00:01 − 0.512344 s
    assert_eq!(body["timestamp"], "2026-05-01T10:00:00.487Z");
    assert!(body.get("userId").is_none(), "an explicit null id is dropped, not kept as null");
    assert!(body.get("writeKey").is_none());
}

#[test]
fn the_write_key_comes_from_basic_auth_and_must_be_configured() {
    let mut body = python_batch();
    body.as_object_mut().unwrap().remove("writeKey");
    let basic = Headers::from_pairs([("Authorization", "Basic d2tfdGVzdF83RnEyOg==")]);
    assert_eq!(read(Route::Batch, &basic, &body).unwrap().messages.len(), 1);
    let wrong = Headers::from_pairs([("Authorization", "Basic d3Jvbmc6")]);
    let e = read(Route::Batch, &wrong, &body).unwrap_err();
    assert_eq!((e.status, e.code), (401, "invalid_write_key"));
    let e = read(Route::Batch, &Headers::new(), &body).unwrap_err();
    assert_eq!((e.status, e.code), (401, "invalid_write_key"));
    let none = RequestSettings { write_keys: vec![], max_request_bytes: 1 << 20 };
    let e = read_request(&none, Route::Batch, &basic, b"{}", received()).unwrap_err();
    assert_eq!(e.status, 404);
}

#[test]
fn gzip_is_read_and_a_bomb_is_refused() {
    let gz = |bytes: &[u8]| {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    };
    let h = Headers::from_pairs([("Content-Encoding", "gzip")]);
    let body = gz(&serde_json::to_vec(&python_batch()).unwrap());
    assert_eq!(read_request(&settings(), Route::Batch, &h, &body, received()).unwrap().messages.len(), 1);
    let bomb = gz(&vec![b' '; 8 << 20]);
    assert!(bomb.len() < 64 << 10);
    let e = read_request(&settings(), Route::Batch, &h, &bomb, received()).unwrap_err();
    assert_eq!((e.status, e.code), (400, "request_too_large"));
    let e = read_request(&settings(), Route::Batch, &h, b"not gzip", received()).unwrap_err();
    assert_eq!((e.status, e.code), (400, "invalid_gzip"));
}

#[test]
fn per_message_limits_drop_only_the_message() {
    let mut items: Vec<Value> = (0..2_502)
        .map(|i| json!({"type":"track","event":"Product Viewed","userId":i,"messageId":format!("m{i}")}))
        .collect();
    items[1] = json!({"type":"track","event":"Big","userId":"u","properties":{"blob":"x".repeat(40_000)}});
    items[2] = json!({"type":"track","event":"Nobody","userId":null,"anonymousId":null});
    items[3] = json!({"type":"alias","userId":"u1","previousId":"a-1"});
    items[4] = json!("not an object");
    items[5]["writeKey"] = KEY.into();
    let r = read(Route::Batch, &Headers::new(), &json!({"batch": items, "writeKey": KEY})).unwrap();
    assert_eq!(r.dropped, Dropped { oversize: 1, no_id: 1, over_limit: 2, invalid: 1 });
    assert_eq!(r.messages.len(), 2_500 - 3);
    assert_eq!(stored(&r.messages[0])["userId"], "0", "numeric ids become strings");
    assert_eq!(r.messages[1].kind, MessageType::Alias);
    assert!(r.messages[1].dedupe_key.is_none(), "no messageId, no dedupe key");
    assert!(r.messages.iter().all(|m| stored(m).get("writeKey").is_none()));
}

#[test]
fn single_routes_take_one_message_and_batch_context_is_merged() {
    let body =
        json!({"userId":"u1","event":"Cart Viewed","writeKey":KEY,"timestamp":"2015-2-02T00:30:08.276Z"});
    let r = read(Route::from_segment("t").unwrap(), &Headers::new(), &body).unwrap();
    let m = stored(&r.messages[0]);
    assert_eq!(m["type"], "track");
    assert_eq!(m["timestamp"], "2015-02-02T00:30:08.276Z", "no sentAt: the timestamp as sent");
    let batch = json!({"batch":[{"type":"page","anonymousId":"a","context":{"ip":"1.2.3.4"},"sentAt":"garbage","timestamp":"never"}],
        "context":{"ip":"9.9.9.9","library":{"name":"x"}},"integrations":{"All":true},"writeKey":KEY});
    let m = stored(&read(Route::Batch, &Headers::new(), &batch).unwrap().messages[0]);
    assert_eq!(m["context"]["ip"], "1.2.3.4");
    assert_eq!(m["context"]["library"]["name"], "x");
    assert_eq!(m["integrations"]["All"], true);
    assert_eq!(m["timestamp"], "2026-05-01T10:00:01.000Z", "unreadable times fall back to receipt");
    for (seg, route) in [
        ("b", Route::Batch),
        ("identify", Route::Single(MessageType::Identify)),
        ("g", Route::Single(MessageType::Group)),
    ] {
        assert_eq!(Route::from_segment(seg), Some(route));
    }
    assert_eq!(Route::from_segment("x"), None);
}

#[test]
fn invalid_json_and_oversize_requests_are_400() {
    let e = read_request(&settings(), Route::Batch, &Headers::new(), b"{nope", received()).unwrap_err();
    assert_eq!((e.status, e.code), (400, "invalid_json"));
    let small = RequestSettings { write_keys: vec![KEY.into()], max_request_bytes: 1024 };
    let e = read_request(&small, Route::Batch, &Headers::new(), &[b' '; 2000], received()).unwrap_err();
    assert_eq!((e.status, e.code), (400, "request_too_large"));
}

#[test]
fn product_events_map_to_behaviour_with_money_and_string_ids() {
    let src = SegmentSource::default();
    let e = events(
        &src,
        json!({"type":"track","event":"Viewed Product","anonymousId":"a-7f3c","messageId":"m1",
        "timestamp":"2026-05-01T10:00:00.000Z","properties":{"product_id":9100000001u64,"price":39.95,"currency":"EUR","url":"https://s/p"},
        "context":{"traits":{"email":"lena@example.org"}}}),
    );
    let Event::Behaviour(b) = &e[0] else { panic!() };
    assert_eq!(b.kind, BehaviourKind::ProductViewed);
    assert_eq!(b.name, "Product Viewed");
    assert_eq!(b.customer.to_string(), "anon:a-7f3c");
    assert_eq!(b.email.as_deref(), Some("lena@example.org"));
    assert_eq!(b.products[0].product_id.as_deref(), Some("9100000001"));
    assert_eq!(b.products[0].price.unwrap().to_string(), "39.95 EUR");
    assert_eq!(b.url.as_deref(), Some("https://s/p"));
    assert_eq!(b.at, datetime!(2026-05-01 10:00 UTC));

    let e = events(
        &SegmentSource::new(UserIdNamespace::parse("shopify").unwrap(), "GBP"),
        json!({"type":"track","event":"Completed Order","userId":880012,"timestamp":"2026-05-01T10:00:00Z",
        "properties":{"order_id":1001,"total":59.97,"products":[{"product_id":"p1","quantity":2,"price":19.99}]}}),
    );
    let Event::Behaviour(b) = &e[0] else { panic!() };
    assert_eq!((b.kind, b.name.as_str()), (BehaviourKind::OrderCompleted, "Order Completed"));
    assert_eq!(b.customer.to_string(), "shopify:880012");
    assert_eq!(b.order_id.as_deref(), Some("1001"));
    assert_eq!(b.value.unwrap().to_string(), "59.97 GBP");
    assert_eq!(b.products[0].quantity, Some(2));

    for (name, kind) in [
        ("Products Searched", BehaviourKind::Search),
        ("Added Product", BehaviourKind::ProductAdded),
        ("Removed Product", BehaviourKind::ProductRemoved),
        ("Viewed Product Category", BehaviourKind::ProductListViewed),
        ("Started Order", BehaviourKind::CheckoutStarted),
        ("Cart Viewed", BehaviourKind::CartViewed),
        ("Clicked Product", BehaviourKind::ProductClicked),
    ] {
        assert_eq!(track_kind(name).0, kind, "{name}");
    }
    let e = events(
        &src,
        json!({"type":"track","event":"Quiz Done","userId":"u","timestamp":"2026-05-01T10:00:00Z","properties":{"score":3}}),
    );
    let Event::Behaviour(b) = &e[0] else { panic!() };
    assert_eq!((b.kind, b.name.as_str()), (BehaviourKind::Custom, "Quiz Done"));
    assert_eq!(b.customer.to_string(), "segment:u");
    assert_eq!(b.properties["score"], 3);
}

#[test]
fn a_review_takes_its_rating_as_string_or_number() {
    for rating in [json!("4"), json!(4)] {
        let e = events(
            &SegmentSource::default(),
            json!({"type":"track","event":"Product Reviewed","userId":"u7","timestamp":"2026-05-01T10:00:00Z",
            "properties":{"product_id":"p1","review_id":"r9","review_body":"Lovely","rating":rating}}),
        );
        let Event::ReviewPosted(r) = &e[0] else { panic!("{e:?}") };
        assert_eq!((r.review_id.as_str(), r.rating, r.published), ("segment:r9", Some(4), true));
        assert_eq!(r.body, "Lovely");
    }
}

#[test]
fn identify_links_the_visitor_and_email_and_reads_explicit_consent() {
    let src = SegmentSource::new(UserIdNamespace::parse("bigcommerce:abc123").unwrap(), "USD");
    let e = events(
        &src,
        json!({"type":"identify","userId":"42","anonymousId":"a-1","timestamp":"2026-05-01T10:00:00Z",
        "traits":{"email":"Lena@Example.org","phone":"+49 (151) 123-45678","first_name":"Lena","lastName":"K",
        "email_consent":"subscribed","sms_opt_in":false}}),
    );
    let Event::Identified(i) = &e[0] else { panic!() };
    assert_eq!(i.customer.to_string(), "bigcommerce:abc123:42");
    assert_eq!(
        i.links,
        vec!["anon:a-1".parse().unwrap(), CustomerId::for_email("lena@example.org").unwrap()]
    );
    assert_eq!(i.phone.as_deref(), Some("+4915112345678"));
    assert_eq!((i.first_name.as_deref(), i.last_name.as_deref()), (Some("Lena"), Some("K")));
    assert_eq!(
        (i.email_consent, i.sms_consent),
        (MarketingConsent::Subscribed, MarketingConsent::Unsubscribed)
    );

    let e = events(
        &src,
        json!({"type":"identify","userId":"42","timestamp":"2026-05-01T10:00:00Z","traits":{"phone":"0151 1234567"}}),
    );
    let Event::Identified(i) = &e[0] else { panic!() };
    assert_eq!((i.phone.as_ref(), i.email_consent), (None, MarketingConsent::Unknown));
    assert_eq!(e164("0049 151 1234567").as_deref(), Some("+491511234567"));
}

#[test]
fn alias_page_group_and_garbage() {
    let src = SegmentSource::default();
    let e = events(
        &src,
        json!({"type":"alias","userId":"u1","previousId":"old","timestamp":"2026-05-01T10:00:00Z"}),
    );
    let Event::Identified(i) = &e[0] else { panic!() };
    assert_eq!((i.customer.to_string(), i.links[0].to_string()), ("segment:u1".into(), "segment:old".into()));
    let e = events(
        &src,
        json!({"type":"alias","userId":"u1","previousId":"a-9","anonymousId":"a-9","receivedAt":"2026-05-01T10:00:00Z"}),
    );
    let Event::Identified(i) = &e[0] else { panic!() };
    assert_eq!(i.links[0].to_string(), "anon:a-9");
    let e = events(
        &src,
        json!({"type":"page","anonymousId":"a","name":"Home","timestamp":"2026-05-01T10:00:00Z","context":{"page":{"url":"https://s/"}}}),
    );
    let Event::Behaviour(b) = &e[0] else { panic!() };
    assert_eq!(
        (b.kind, b.name.as_str(), b.url.as_deref()),
        (BehaviourKind::PageViewed, "Home", Some("https://s/"))
    );
    let e = events(&src, json!({"type":"screen","userId":"u","timestamp":"2026-05-01T10:00:00Z"}));
    assert_eq!(e[0].kind(), "screen_viewed");
    assert!(matches!(
        src.parse_message(
            br#"{"type":"group","userId":"u","groupId":"g","timestamp":"2026-05-01T10:00:00Z"}"#
        ),
        Parsed::Ignored(_)
    ));
    assert!(matches!(src.parse_message(b"{oops"), Parsed::Quarantined(_)));
    assert!(matches!(src.parse_message(br#"{"type":"track","userId":"u"}"#), Parsed::Quarantined(_)));
    assert!(UserIdNamespace::parse("magento").is_err());
}

#[test]
fn every_stored_message_parses_alone() {
    let body = json!({"batch":[
        {"type":"track","event":"Product Added","anonymousId":"a","properties":{"cart_id":"c1","product_id":5,"price":10}},
        {"type":"identify","userId":"u","traits":{"email":"x@example.org"}},
        {"type":"page","userId":"u","name":"Home"}],"writeKey":KEY,"sentAt":"2026-05-01T10:00:00Z"});
    let r = read(Route::Batch, &Headers::new(), &body).unwrap();
    for m in &r.messages {
        assert!(matches!(SegmentSource::default().parse_message(&m.body), Parsed::Events(_)), "{}", m.topic);
    }
}

#[test]
fn the_context_gives_the_visitors_source_country_device_and_utc_offset() {
    let src = SegmentSource::default();
    let msg = |context: Value, ts: &str| {
        let e = events(
            &src,
            json!({"type":"page","anonymousId":"a-1","messageId":"m1","timestamp":ts,"context":context}),
        );
        let Event::Behaviour(b) = &e[0] else { panic!() };
        b.context.clone()
    };
    let c = msg(
        json!({"campaign":{"source":"Newsletter"},"location":{"country":" DE "},"timezone":"Europe/Berlin",
        "userAgent":"Mozilla/5.0 (iPhone; CPU iPhone OS 17_0 like Mac OS X) Mobile/15E148"}),
        "2026-07-01T10:00:00Z",
    );
    assert_eq!(c.source.as_deref(), Some("newsletter"));
    assert_eq!(c.country.as_deref(), Some("DE"));
    assert_eq!(c.device.as_deref(), Some("mobile"));
    // Summer time in Berlin is UTC+2, winter time UTC+1.
    assert_eq!(c.utc_offset_minutes, Some(120));
    let c = msg(json!({"timezone":"Europe/Berlin"}), "2026-01-15T10:00:00Z");
    assert_eq!(c.utc_offset_minutes, Some(60));
    let c = msg(json!({"timezone":"Asia/Kolkata","device":{"type":"android"}}), "2026-01-15T10:00:00Z");
    assert_eq!((c.utc_offset_minutes, c.device.as_deref()), (Some(330), Some("mobile")));
    // A referrer's host when there is no campaign; an unknown zone gives no offset.
    let c = msg(
        json!({"page":{"referrer":"https://www.Google.com/search?q=x"},"timezone":"Mars/Olympus",
        "userAgent":"Mozilla/5.0 (Windows NT 10.0; Win64; x64)"}),
        "2026-01-15T10:00:00Z",
    );
    assert_eq!(c.source.as_deref(), Some("google.com"));
    assert_eq!(c.utc_offset_minutes, None);
    assert_eq!(c.device.as_deref(), Some("desktop"));
    assert!(msg(json!({"library":{"name":"analytics.js"}}), "2026-01-15T10:00:00Z").is_empty());
}
