//! The fake Braze must refuse every request the real API would refuse, so that a wrong client fails
//! tests. These tests talk to it with raw HTTP requests, bypassing nudge's own client.

use nudge_testkit::fake_braze::DEFAULT_API_KEY;
use nudge_testkit::{BrazeMode, FakeBraze, FakeBrazeConfig, FakeBrazeHandle};
use serde_json::{Value, json};
use std::time::Duration;

fn http() -> reqwest::Client {
    nudge_testkit::ensure_crypto_provider();
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

/// A request with every header right; tests then break one thing.
fn post(fake: &FakeBrazeHandle, body: &Value) -> reqwest::RequestBuilder {
    post_with(fake, Some(&format!("Bearer {DEFAULT_API_KEY}")), "application/json").body(body.to_string())
}

/// A request to `/users/track` with exactly these headers (reqwest adds a header twice rather than
/// replacing it, so broken variants are built from scratch).
fn post_with(
    fake: &FakeBrazeHandle,
    authorization: Option<&str>,
    content_type: &str,
) -> reqwest::RequestBuilder {
    let req = http().post(format!("{}/users/track", fake.base_url())).header("content-type", content_type);
    match authorization {
        Some(auth) => req.header("authorization", auth),
        None => req,
    }
}

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

async fn send(req: reqwest::RequestBuilder) -> Answer {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    let text = resp.text().await.unwrap();
    Answer { status, headers, body: serde_json::from_str(&text).unwrap_or(Value::String(text)) }
}

async fn start(config: FakeBrazeConfig) -> FakeBrazeHandle {
    FakeBraze::start(config).await.unwrap()
}

fn event(id: &str) -> Value {
    json!({"external_id": id, "name": "AI Reorder Window", "time": "2026-05-01T10:00:00Z",
           "properties": {"nudge_event_id": format!("e-{id}")}})
}

#[tokio::test]
async fn a_good_request_is_processed_with_counts_and_rate_headers() {
    let fake = start(FakeBrazeConfig::default()).await;
    let body = json!({"attributes": [{"external_id": "shopify:1", "email": "a@example.org", "ai_score": 0.5}],
                      "events": [event("shopify:1"), event("shopify:1")]});
    let a = send(post(&fake, &body)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body, json!({"message": "success", "attributes_processed": 1, "events_processed": 2}));
    assert_eq!(a.headers["x-ratelimit-limit"], "3000");
    assert_eq!(a.headers["x-ratelimit-remaining"], "2999");
    assert!(a.headers.contains_key("x-ratelimit-reset"));
    // Events are not deduplicated: both are kept.
    assert_eq!(fake.events().len(), 2);
    let user = fake.user("shopify:1").unwrap();
    assert_eq!(user.attribute("email"), Some(&json!("a@example.org")));
    let r = &fake.requests()[0];
    assert_eq!((r.objects, r.status), (3, 200));
    assert_eq!(r.header("authorization"), Some("Bearer [the configured key]"));
}

#[tokio::test]
async fn keys_paths_methods_and_content_types_are_enforced() {
    let fake = start(FakeBrazeConfig::default()).await;
    let body = json!({"events": [event("shopify:1")]});
    let text = body.to_string();
    let a = send(post_with(&fake, Some("Bearer wrong-key-123"), "application/json").body(text.clone())).await;
    assert_eq!((a.status, a.body["message"].as_str()), (401, Some("Invalid API key: wrong-key-123")));
    let a = send(post_with(&fake, None, "application/json").body(text.clone())).await;
    assert_eq!((a.status, a.body["message"].as_str()), (401, Some("Unknown or missing REST API key")));
    let basic = format!("Basic {DEFAULT_API_KEY}");
    let a = send(post_with(&fake, Some(&basic), "application/json").body(text.clone())).await;
    assert_eq!(a.status, 401, "only Bearer");
    let bearer = format!("Bearer {DEFAULT_API_KEY}");
    let a = send(post_with(&fake, Some(&bearer), "text/plain").body(text.clone())).await;
    assert_eq!(a.status, 415);
    let a = send(post_with(&fake, Some(&bearer), "application/json; charset=utf-8").body(text)).await;
    assert_eq!(a.status, 200, "a charset parameter is fine");
    let a = send(
        http()
            .post(format!("{}/users/trak", fake.base_url()))
            .header("authorization", format!("Bearer {DEFAULT_API_KEY}")),
    )
    .await;
    assert_eq!(a.status, 404);
    let a = send(http().get(format!("{}/users/track", fake.base_url()))).await;
    assert_eq!(a.status, 405);
    assert_eq!(fake.events().len(), 1, "only the good request was stored");
    assert!(fake.requests().iter().all(|r| !r.headers.iter().any(|(_, v)| v.contains("wrong-key-123"))));
}

#[tokio::test]
async fn the_body_shape_is_enforced() {
    let fake = start(FakeBrazeConfig::default()).await;
    for (body, why) in [
        (json!([]), "must be a JSON object"),
        (json!({"api_key": DEFAULT_API_KEY, "events": [event("shopify:1")]}), "api_key"),
        (json!({"events": {"external_id": "x"}}), "must be an array"),
        (json!({"users": []}), "unknown field"),
        (json!({}), "at least one"),
        (json!({"events": []}), "at least one"),
    ] {
        let a = send(post(&fake, &body)).await;
        assert_eq!(a.status, 400, "{body}");
        assert!(a.body["message"].as_str().unwrap().contains(why), "{body}: {}", a.body);
    }
    let a = send(
        post_with(&fake, Some(&format!("Bearer {DEFAULT_API_KEY}")), "application/json").body("{not json"),
    )
    .await;
    assert_eq!(a.status, 400);
    assert!(fake.users().is_empty());
}

#[tokio::test]
async fn the_cap_counts_objects_of_every_section_together() {
    let fake = start(FakeBrazeConfig::default().with_batch_cap(3)).await;
    let two_and_two = json!({"attributes": [{"external_id": "a"}, {"external_id": "b"}],
                             "events": [event("a"), event("b")]});
    let a = send(post(&fake, &two_and_two)).await;
    assert_eq!((a.status, a.body["message"].as_str()), (400, Some("Max Input Length Exceeded")));
    assert!(fake.users().is_empty(), "nothing of a refused request is stored");
    let three = json!({"attributes": [{"external_id": "a"}], "events": [event("a"), event("b")]});
    assert_eq!(send(post(&fake, &three)).await.status, 200);
    let default = start(FakeBrazeConfig::default()).await;
    let many: Vec<Value> = (0..76).map(|i| event(&format!("c{i}"))).collect();
    assert_eq!(send(post(&default, &json!({"events": many[..75]}))).await.status, 200);
    assert_eq!(send(post(&default, &json!({"events": many}))).await.status, 400);
}

#[tokio::test]
async fn bad_records_are_named_in_errors_and_the_rest_processed() {
    let fake = start(FakeBrazeConfig::default()).await;
    let body = json!({
        "attributes": [
            {"external_id": "ok-1", "email": "x@example.org"},
            {"ai_score": 1},
            {"external_id": "two", "braze_id": "b-2"},
            {"external_id": "long", "ai_note": "x".repeat(256)},
            {"email": "only@example.org", "ai_score": 2},
        ],
        "events": [
            event("ok-2"),
            {"external_id": "e1", "name": "x", "time": "yesterday"},
            {"external_id": "e2", "time": "2026-05-01T10:00:00Z"},
            {"external_id": "e3", "name": "x", "time": "2026-05-01T10:00:00Z", "properties": {"$price": 1}},
            {"external_id": "e4", "name": "x", "time": "2026-05-01T10:00:00Z", "properties": {"a": {"": 1}}},
            {"external_id": "e5", "email": "e5@example.org", "name": "x", "time": "2026-05-01T10:00:00Z"},
            "not an object",
        ],
    });
    let a = send(post(&fake, &body)).await;
    assert_eq!(a.status, 200, "{}", a.body);
    assert_eq!(a.body["attributes_processed"], 2);
    assert_eq!(a.body["events_processed"], 1);
    let named: Vec<(String, u64)> = a.body["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["input_array"].as_str().unwrap().to_string(), e["index"].as_u64().unwrap()))
        .collect();
    let expected: Vec<(String, u64)> = [("attributes", 1), ("attributes", 2), ("attributes", 3)]
        .into_iter()
        .chain((1..=6).map(|i| ("events", i)))
        .map(|(s, i)| (s.to_string(), i))
        .collect();
    assert_eq!(named, expected);
    let reasons: Vec<&str> =
        a.body["errors"].as_array().unwrap().iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert!(reasons[3].contains("'time'"), "{reasons:?}");
    assert!(reasons[5].contains("'properties'"), "{reasons:?}");
    assert!(reasons[7].contains("More than one user identifier"), "{reasons:?}");
    assert!(fake.user("ok-1").is_some() && fake.user("email:only@example.org").is_some());
    assert_eq!(fake.users().len(), 3, "ok-1, ok-2 (from its event) and the email-identified user");
}

#[tokio::test]
async fn refusal_on_demand_names_the_record_inside_a_success() {
    let fake = start(FakeBrazeConfig::default()).await;
    fake.reject_external_id("shopify:2");
    let body = json!({"events": [event("shopify:1"), event("shopify:2"), event("shopify:3")]});
    let a = send(post(&fake, &body)).await;
    assert_eq!((a.status, a.body["message"].as_str()), (200, Some("success")));
    assert_eq!(a.body["errors"][0]["input_array"], "events");
    assert_eq!(a.body["errors"][0]["index"], 1);
    assert_eq!(a.body["errors"].as_array().unwrap().len(), 1);
    assert_eq!(fake.events().iter().map(|e| e.user.as_str()).collect::<Vec<_>>(), ["shopify:1", "shopify:3"]);
    fake.clear_rejections();
    assert!(send(post(&fake, &body)).await.body.get("errors").is_none());
}

#[tokio::test]
async fn attributes_merge_and_arrays_change_by_add_and_remove() {
    let fake = start(FakeBrazeConfig::default()).await;
    for attrs in [
        json!({"external_id": "u", "ai_score": 1, "ai_tier": "gold", "ai_lists": {"add": ["a", "b"]}}),
        json!({"external_id": "u", "ai_score": 2, "ai_lists": {"add": ["b", "c"]}, "visits": {"inc": 2}}),
        json!({"external_id": "u", "ai_tier": null, "ai_lists": {"remove": ["a"]}, "visits": {"inc": 3}}),
    ] {
        assert_eq!(send(post(&fake, &json!({"attributes": [attrs]}))).await.status, 200);
    }
    let user = fake.user("u").unwrap();
    assert_eq!(user.attribute("ai_score"), Some(&json!(2)));
    assert_eq!(user.attribute("ai_tier"), None);
    assert_eq!(user.array("ai_lists"), ["b", "c"]);
    assert_eq!(user.attribute("visits"), Some(&json!(5)));
    assert_eq!(user.attribute("external_id"), None, "the identifier is not an attribute");
}

#[tokio::test]
async fn the_rate_limit_answers_429_with_brazes_header_only() {
    let fake = start(FakeBrazeConfig::default().with_rate_limit(2)).await;
    let body = json!({"events": [event("shopify:1")]});
    assert_eq!(send(post(&fake, &body)).await.headers["x-ratelimit-remaining"], "1");
    assert_eq!(send(post(&fake, &body)).await.status, 200);
    let a = send(post(&fake, &body)).await;
    assert_eq!(a.status, 429);
    let wait: u64 = a.headers["x-ratelimit-retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=3).contains(&wait), "{wait}");
    for h in ["x-ratelimit-limit", "x-ratelimit-remaining", "x-ratelimit-reset"] {
        assert!(!a.headers.contains_key(h), "{h} on a 429");
    }
    assert_eq!(fake.events().len(), 2);
    tokio::time::sleep(Duration::from_secs(wait)).await;
    assert_eq!(send(post(&fake, &body)).await.status, 200, "a new window");
    let unlimited = start(FakeBrazeConfig::default().unthrottled()).await;
    let a = send(post(&unlimited, &body)).await;
    assert!(!a.headers.contains_key("x-ratelimit-limit"));
}

#[tokio::test]
async fn modes_throttle_fail_queue_stall_and_break_json() {
    let fake = start(FakeBrazeConfig::default()).await;
    let body = json!({"events": [event("shopify:1")]});
    fake.set_mode(BrazeMode::Throttle { retry_after_secs: 9, count: 2 });
    for _ in 0..2 {
        let a = send(post(&fake, &body)).await;
        assert_eq!((a.status, a.headers["x-ratelimit-retry-after"].to_str().unwrap()), (429, "9"));
    }
    assert_eq!(fake.mode(), BrazeMode::Normal);
    fake.set_mode(BrazeMode::Fail { status: 503, count: 1 });
    assert_eq!(send(post(&fake, &body)).await.status, 503);
    assert_eq!(send(post(&fake, &body)).await.status, 200);
    fake.set_mode(BrazeMode::Queued);
    let a = send(post(&fake, &body)).await;
    assert_eq!((a.status, a.body.clone()), (202, json!({"message": "queued"})));
    fake.set_mode(BrazeMode::NotJson);
    let a = send(post(&fake, &body)).await;
    assert_eq!(a.status, 200);
    assert!(a.body.is_string(), "not JSON: {}", a.body);
    fake.set_mode(BrazeMode::Slow(Duration::from_millis(400)));
    let started = std::time::Instant::now();
    assert_eq!(send(post(&fake, &body)).await.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(400));
    // Stored: the normal one, the queued one and the slow one.
    assert_eq!(fake.events().len(), 3);
    fake.shutdown().await;
}

#[tokio::test]
async fn serve_runs_on_a_given_listener_until_told_to_stop() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(FakeBraze::serve(listener, FakeBrazeConfig::new("dev-key"), async {
        let _ = stopped.await;
    }));
    let a = send(
        http()
            .post(format!("http://{addr}/users/track"))
            .header("authorization", "Bearer dev-key")
            .header("content-type", "application/json")
            .body(json!({"events": [event("shopify:1")]}).to_string()),
    )
    .await;
    assert_eq!(a.status, 200, "{}", a.body);
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap().unwrap();
}
