//! The Segment-compatible API over HTTP: the contract cases of the Segment-spec ingest (write key in
//! the body or as Basic user, gzip, text/plain, CORS, every route, JSON errors, 503 on store failure,
//! dedupe on replay, per-message limits, timestamps, ids), and the real analytics-python SDK when its
//! directory is given in `NUDGE_SEGMENT_SDK_DIR`.

use crate::{TestApp, eventually, spawn_app};
use nudge::config::SegmentSourceConfig;
use serde_json::{Value, json};
use std::io::Write;

const KEY: &str = "wk_test_7Fq2";

async fn app() -> TestApp {
    spawn_app(|c| {
        c.sources.segment = Some(SegmentSourceConfig {
            write_keys: vec!["wk_rotated_out".into(), KEY.into()],
            ..Default::default()
        })
    })
    .await
}

fn python_batch(ids: std::ops::Range<u32>) -> Value {
    let batch: Vec<Value> = ids
        .map(|i| {
            json!({"integrations":{},"anonymousId":format!("a-{i}"),"properties":{"product_id":"9100000001","sku":"TEE-BLK-M",
            "price":39.95,"currency":"EUR"},"timestamp":"2026-05-01T10:00:00.000+00:00","context":{"library":{"name":"analytics-python",
            "version":"2.3.4"}},"userId":null,"type":"track","event":"Product Viewed","messageId":format!("5f0f8c3e-{i}")})
        })
        .collect();
    json!({"batch": batch, "sentAt":"2026-05-01T10:00:00.512344+00:00","writeKey":KEY})
}

async fn post(t: &TestApp, path: &str, headers: &[(&str, &str)], body: Vec<u8>) -> (u16, Value) {
    let mut req = t.http.post(format!("{}{path}", t.base)).body(body);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or_else(|_| panic!("{status}: not JSON: {text}")))
}

fn json_bytes(v: &Value) -> Vec<u8> {
    serde_json::to_vec(v).unwrap()
}

async fn deliveries(t: &TestApp) -> u64 {
    t.app.shared.store.stats().await.unwrap().deliveries
}

fn assert_error(status: u16, body: &Value, want_status: u16, want_code: &str) {
    assert_eq!(status, want_status, "{body}");
    assert_eq!(body["code"], want_code, "{body}");
    assert!(body["message"].is_string(), "{body}");
}

/// 2.1, 2.7 (replay), and the stored message parsed by the workers.
#[tokio::test]
async fn python_batch_is_accepted_once_and_replay_stores_nothing_twice() {
    let t = app().await;
    let body = json_bytes(&python_batch(0..3));
    let (status, answer) = post(&t, "/v1/batch", &[("Content-Type", "application/json")], body.clone()).await;
    assert_eq!((status, &answer), (200, &json!({"success": true})));
    assert_eq!(deliveries(&t).await, 3);
    let (status, _) = post(&t, "/v1/batch", &[("Content-Type", "application/json")], body).await;
    assert_eq!(status, 200);
    assert_eq!(deliveries(&t).await, 3, "a replayed batch stores nothing again");
    // The workers parse each stored message alone.
    let anon: nudge_model::CustomerId = "anon:a-1".parse().unwrap();
    let store = t.app.shared.store.clone();
    let parsed = eventually(10, async || {
        let records = store.customer_audit(&anon, 50).await.unwrap();
        records.iter().any(|r| r.detail["events"] == json!(["product_viewed"]))
    })
    .await;
    assert!(parsed, "the message reached the workers as a product_viewed behaviour event");
}

/// 2.2 and 2.6: Basic auth, unknown keys, JSON error bodies.
#[tokio::test]
async fn basic_auth_is_accepted_and_unknown_keys_are_401_with_code_and_message() {
    let t = app().await;
    let mut body = python_batch(0..1);
    body.as_object_mut().unwrap().remove("writeKey");
    let basic = ("Authorization", "Basic d2tfdGVzdF83RnEyOg==");
    assert_eq!(post(&t, "/v1/batch", &[basic], json_bytes(&body)).await.0, 200);
    let (s, b) = post(&t, "/v1/batch", &[("Authorization", "Basic d3Jvbmc6")], json_bytes(&body)).await;
    assert_error(s, &b, 401, "invalid_write_key");
    let (s, b) = post(&t, "/v1/batch", &[], json_bytes(&body)).await;
    assert_error(s, &b, 401, "invalid_write_key");
    let (s, b) = post(&t, "/v1/batch", &[basic], b"{not json".to_vec()).await;
    assert_error(s, &b, 400, "invalid_json");
    let (s, b) = post(&t, "/v1/nope", &[basic], b"{}".to_vec()).await;
    assert_error(s, &b, 404, "not_found");
    let resp = t.http.get(format!("{}/v1/batch", t.base)).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    let b: Value = resp.json().await.unwrap();
    assert!(b["code"].is_string() && b["message"].is_string());
    assert_eq!(deliveries(&t).await, 1);
}

/// Without write keys the API says it is not enabled.
#[tokio::test]
async fn without_write_keys_the_api_is_not_enabled() {
    let t = spawn_app(|_| {}).await;
    let (s, b) = post(&t, "/v1/batch", &[], json_bytes(&python_batch(0..1))).await;
    assert_error(s, &b, 404, "not_enabled");
    assert!(b["message"].as_str().unwrap().contains("sources.segment.write_keys"));
}

/// 2.3: gzip accepted; a gzip bomb past the decompressed cap is 400.
#[tokio::test]
async fn gzip_bodies_are_read_and_a_bomb_is_refused() {
    let t = app().await;
    let gz = |bytes: &[u8]| {
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        enc.write_all(bytes).unwrap();
        enc.finish().unwrap()
    };
    let h = [("Content-Encoding", "gzip"), ("Content-Type", "application/json")];
    assert_eq!(post(&t, "/v1/batch", &h, gz(&json_bytes(&python_batch(0..2)))).await.0, 200);
    assert_eq!(deliveries(&t).await, 2);
    let (s, b) = post(&t, "/v1/batch", &h, gz(&vec![b' '; 64 << 20])).await;
    assert_error(s, &b, 400, "request_too_large");
}

/// 2.4: text/plain bodies and the CORS pre-flight.
#[tokio::test]
async fn text_plain_is_accepted_and_the_preflight_allows_the_sdk_headers() {
    let t = app().await;
    let body = json!({"type":"page","anonymousId":"a-9","name":"Home","writeKey":KEY,"messageId":"p1"});
    let (s, _) = post(&t, "/v1/p", &[("Content-Type", "text/plain")], json_bytes(&body)).await;
    assert_eq!(s, 200);
    let resp = t
        .http
        .request(reqwest::Method::OPTIONS, format!("{}/v1/t", t.base))
        .header("Origin", "https://shop.example")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "authorization,content-type,x-retry-count")
        .send()
        .await
        .unwrap();
    assert!(resp.status().is_success());
    let allowed = resp.headers()["access-control-allow-headers"].to_str().unwrap().to_ascii_lowercase();
    for h in ["authorization", "content-type", "x-retry-count"] {
        assert!(allowed.contains(h), "{allowed}");
    }
    assert_eq!(resp.headers()["access-control-allow-origin"], "*");
}

/// 2.5: every route, long and short, batch and single.
#[tokio::test]
async fn every_route_works() {
    let t = app().await;
    let single = |ty: &str, i: usize| {
        let mut m = json!({"userId": format!("u{i}"), "writeKey": KEY, "messageId": format!("m{i}")});
        match ty {
            "track" => m["event"] = "Cart Viewed".into(),
            "alias" => m["previousId"] = "old".into(),
            "group" => m["groupId"] = "g".into(),
            _ => {}
        }
        m
    };
    let mut n = 0;
    for (long, short) in
        [("track", "t"), ("identify", "i"), ("page", "p"), ("screen", "s"), ("group", "g"), ("alias", "a")]
    {
        for path in [long, short] {
            n += 1;
            let (s, b) = post(&t, &format!("/v1/{path}"), &[], json_bytes(&single(long, n))).await;
            assert_eq!((s, &b), (200, &json!({"success": true})), "/v1/{path}");
        }
    }
    let b = json!({"batch":[{"type":"track","event":"X","userId":"u","messageId":"bb1"}],"writeKey":KEY});
    assert_eq!(post(&t, "/v1/b", &[], json_bytes(&b)).await.0, 200);
    assert_eq!(deliveries(&t).await, n as u64 + 1);
}

/// 2.7: a store failure is 503 with Retry-After, never 4xx; the retry stores the batch once.
/// (Injected at the commit point with the API's test switch: a real store failure takes the same path.)
#[tokio::test]
async fn store_failure_is_503_with_retry_after_and_the_retry_stores_once() {
    let t = app().await;
    t.app.shared.segment.fail_next_requests(1);
    let body = json_bytes(&python_batch(0..5));
    let resp = t.http.post(format!("{}/v1/batch", t.base)).body(body.clone()).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 503);
    assert!(resp.headers().get("retry-after").is_some());
    let b: Value = resp.json().await.unwrap();
    assert!(b["code"].is_string() && b["message"].is_string());
    assert_eq!(deliveries(&t).await, 0);
    assert_eq!(post(&t, "/v1/batch", &[("X-Retry-Count", "1")], body.clone()).await.0, 200);
    assert_eq!(post(&t, "/v1/batch", &[("X-Retry-Count", "2")], body).await.0, 200);
    assert_eq!(deliveries(&t).await, 5);
}

/// 2.8: 100 events in ~500 KB; the one over 32 KB is dropped and counted, the rest accepted.
#[tokio::test]
async fn one_oversize_message_is_dropped_and_the_rest_accepted() {
    let t = app().await;
    let mut body = python_batch(0..100);
    for (i, m) in body["batch"].as_array_mut().unwrap().iter_mut().enumerate() {
        let pad = if i == 7 { 40_000 } else { 4_700 };
        m["properties"]["note"] = "x".repeat(pad).into();
    }
    let bytes = json_bytes(&body);
    assert!(bytes.len() > 480_000 && bytes.len() < 600_000, "{}", bytes.len());
    assert_eq!(post(&t, "/v1/batch", &[], bytes).await.0, 200);
    assert_eq!(deliveries(&t).await, 99);
    let metrics = t.http.get(format!("{}/metrics", t.base)).send().await.unwrap().text().await.unwrap();
    assert!(metrics.contains("nudge_segment_messages_total{outcome=\"dropped_oversize\"}"), "{metrics}");
}

/// 2.9 and 2.10: odd timestamps never fail a batch; numeric ids, explicit nulls; a message without any
/// id is dropped alone.
#[tokio::test]
async fn odd_timestamps_numeric_ids_and_missing_ids() {
    let t = app().await;
    let body = json!({"batch":[
        {"type":"track","event":"Product Viewed","userId":880012,"timestamp":"2015-2-02T00:30:08.276Z","messageId":"t1",
         "properties":{"product_id":9100000001u64,"price":10}},
        {"type":"track","event":"Product Viewed","userId":"u2","anonymousId":null,"timestamp":"2026-05-01T10:00:00.123456+02:00","messageId":"t2","sentAt":"2026-05-01T10:00:01Z"},
        {"type":"track","event":"Product Viewed","anonymousId":"a3","timestamp":"2026-05-01T10:00:00Z","messageId":"t3"},
        {"type":"identify","userId":null,"anonymousId":null,"messageId":"t4"},
        {"type":"track","event":"Product Viewed","anonymousId":"a5","timestamp":"not a time","messageId":"t5"}
    ],"writeKey":KEY,"sentAt":"2026-05-01T10:00:05Z"});
    assert_eq!(post(&t, "/v1/batch", &[], json_bytes(&body)).await.0, 200);
    assert_eq!(deliveries(&t).await, 4, "the message without ids alone is dropped");
    let user: nudge_model::CustomerId = "segment:880012".parse().unwrap();
    let store = t.app.shared.store.clone();
    assert!(
        eventually(10, async || !store.customer_audit(&user, 10).await.unwrap().is_empty()).await,
        "a numeric userId is a string key"
    );
}
