//! The Segment API's request reader and the parser of stored messages on random input: no panic; a
//! request with the right write key is answered 2xx or a 4xx with a stable code, never a 5xx; every
//! message the reader accepts parses to events, an ignore, or a quarantine — and never panics the parser.

use nudge_ingest::Headers;
use nudge_ingest::segment::request::RequestSettings;
use nudge_ingest::segment::{MessageType, Route, SegmentSource, UserIdNamespace, read_request};
use nudge_ingest::source::{Source, StoredView};
use proptest::prelude::*;

const KEY: &str = "fuzz_write_key";

fn message() -> impl Strategy<Value = serde_json::Value> {
    let key = prop::sample::select(vec![
        "type",
        "event",
        "userId",
        "anonymousId",
        "messageId",
        "timestamp",
        "sentAt",
        "properties",
        "traits",
        "context",
        "products",
        "product_id",
        "price",
        "currency",
        "quantity",
        "query",
        "email",
        "phone",
        "previousId",
        "name",
        "rating",
        "review_id",
        "writeKey",
        "value",
        "revenue",
    ]);
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        any::<f64>()
            .prop_map(|f| serde_json::Number::from_f64(f)
                .map_or(serde_json::Value::Null, serde_json::Value::Number)),
        "[ -~]{0,16}".prop_map(serde_json::Value::from),
        prop::sample::select(vec![
            "track",
            "identify",
            "page",
            "screen",
            "group",
            "alias",
            "Product Viewed",
            "Viewed Product",
            "Order Completed",
            "Product Reviewed",
            "Products Searched",
            "2015-2-02T00:30:08.276Z",
            "2026-05-01T10:00:00.000+00:00",
            "+49 (151) 1234-5678",
            "EUR",
        ])
        .prop_map(serde_json::Value::from),
    ];
    leaf.prop_recursive(3, 40, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..8).prop_map(|m| serde_json::Value::Object(
                m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            )),
        ]
    })
}

fn body() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        3 => prop::collection::vec(message(), 0..6).prop_map(|batch| {
            serde_json::to_vec(&serde_json::json!({"batch": batch, "writeKey": KEY})).unwrap()
        }),
        2 => message().prop_map(|m| {
            let mut m = m;
            if let Some(o) = m.as_object_mut() {
                o.insert("writeKey".into(), KEY.into());
            }
            serde_json::to_vec(&m).unwrap()
        }),
        1 => prop::collection::vec(any::<u8>(), 0..256),
    ]
}

fn route() -> impl Strategy<Value = Route> {
    prop_oneof![
        Just(Route::Batch),
        Just(Route::Single(MessageType::Track)),
        Just(Route::Single(MessageType::Identify)),
        Just(Route::Single(MessageType::Page)),
        Just(Route::Single(MessageType::Alias)),
        Just(Route::Single(MessageType::Group)),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    #[test]
    fn the_reader_and_the_parser_take_any_request(route in route(), body in body(), gzip_header in any::<bool>()) {
        let settings = RequestSettings { write_keys: vec![KEY.into()], max_request_bytes: 1 << 20 };
        let mut pairs: Vec<(&str, &[u8])> = vec![("content-type", b"text/plain")];
        if gzip_header {
            pairs.push(("content-encoding", b"gzip"));
        }
        let headers = Headers::from_pairs(pairs);
        let parser = SegmentSource::new(UserIdNamespace::parse("segment").unwrap(), "EUR");
        match read_request(&settings, route, &headers, &body, time::OffsetDateTime::now_utc()) {
            Ok(read) => {
                for m in &read.messages {
                    prop_assert!(m.body.len() <= nudge_ingest::segment::request::MAX_MESSAGE_BYTES + 512);
                    let _ = parser.parse(&StoredView { topic: &m.topic, shop: None, body: &m.body });
                }
            }
            Err(e) => prop_assert!((400..500).contains(&e.status), "status {} ({})", e.status, e.code),
        }
        // Any stored body at all: the parser never panics.
        let _ = parser.parse(&StoredView { topic: "track:Product Viewed", shop: None, body: &body });
    }
}
