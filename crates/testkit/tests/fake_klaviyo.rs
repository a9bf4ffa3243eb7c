//! The fake Klaviyo must refuse every request the real API would refuse, so that a wrong client fails
//! tests. These tests talk to it with raw HTTP requests, bypassing nudge's own client.

use nudge_testkit::fake_klaviyo::DEFAULT_API_KEY;
use nudge_testkit::{FakeKlaviyo, FakeKlaviyoConfig, FakeKlaviyoHandle, FakeMode, FakeRateLimit};
use serde_json::{Value, json};
use std::time::Duration;

const JSON_API: &str = "application/vnd.api+json";

fn http() -> reqwest::Client {
    nudge_testkit::ensure_crypto_provider();
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

/// A request with every header right; tests then break one thing.
fn post(fake: &FakeKlaviyoHandle, path: &str, body: &Value) -> reqwest::RequestBuilder {
    http()
        .post(format!("{}{path}", fake.base_url()))
        .header("authorization", format!("Klaviyo-API-Key {DEFAULT_API_KEY}"))
        .header("revision", "2026-07-15")
        .header("content-type", JSON_API)
        .header("accept", JSON_API)
        .body(body.to_string())
}

async fn status_and_body(req: reqwest::RequestBuilder) -> (u16, Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() })
}

fn profile(email: &str) -> Value {
    json!({"data": {"type": "profile", "attributes": {
        "email": email, "external_id": "shopify:880012", "first_name": "Lena",
        "properties": {"ai_churn_risk": 0.18}}}})
}

fn event(unique_id: &str) -> Value {
    json!({"data": {"type": "event", "attributes": {
        "metric": {"data": {"type": "metric", "attributes": {"name": "AI Predicted Reorder Window"}}},
        "profile": {"data": {"type": "profile", "attributes": {"email": "lena@example.org", "external_id": "shopify:880012"}}},
        "properties": {"order_id": "6120000000001", "predicted_days": 21},
        "value": 84.90, "value_currency": "EUR", "time": "2026-05-01T10:00:00+00:00",
        "unique_id": unique_id}}})
}

/// Asserts a JSON:API error document with the given status, code and (optionally) source pointer.
fn assert_error(status: u16, body: &Value, expected_status: u16, pointer: Option<&str>) {
    assert_eq!(status, expected_status, "{body}");
    let error = &body["errors"][0];
    for field in ["id", "code", "title", "detail"] {
        assert!(error[field].is_string(), "errors[0].{field} missing in {body}");
    }
    if let Some(pointer) = pointer {
        assert_eq!(error["source"]["pointer"], pointer, "{body}");
    }
}

async fn start() -> FakeKlaviyoHandle {
    FakeKlaviyo::start(FakeKlaviyoConfig::default()).await.unwrap()
}

#[tokio::test]
async fn accepts_the_documented_examples() {
    let fake = start().await;
    let (status, body) =
        status_and_body(post(&fake, "/api/profile-import", &profile("lena@example.org"))).await;
    assert_eq!(status, 201, "{body}");
    assert_eq!(body["data"]["type"], "profile");
    assert_eq!(body["data"]["attributes"]["properties"]["ai_churn_risk"], 0.18);
    let (status, _) = status_and_body(post(&fake, "/api/events", &event("u-1"))).await;
    assert_eq!(status, 202);
    assert_eq!(fake.events().len(), 1);
    assert_eq!(fake.profiles().len(), 1, "the event's profile is the imported one");
    let log = fake.requests();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].header("authorization"), Some("Klaviyo-API-Key [redacted]"));
    assert!(!format!("{log:?}").contains(DEFAULT_API_KEY), "the key never reaches the log");
    fake.shutdown().await;
}

#[tokio::test]
async fn profile_import_creates_then_updates_and_merges_properties() {
    let fake = start().await;
    let (first, _) = status_and_body(post(&fake, "/api/profile-import", &profile("Lena@Example.org"))).await;
    let update = json!({"data": {"type": "profile", "attributes": {
        "email": "lena@example.org", "properties": {"ai_predicted_clv": 412.5}}}});
    let (second, body) = status_and_body(post(&fake, "/api/profile-import", &update)).await;
    assert_eq!((first, second), (201, 200));
    assert_eq!(body["data"]["attributes"]["external_id"], "shopify:880012");
    let stored = fake.profile_by_email("LENA@example.org").unwrap();
    assert_eq!(stored.properties["ai_churn_risk"], 0.18);
    assert_eq!(stored.properties["ai_predicted_clv"], 412.5);
    assert_eq!(stored.update_count, 1);
    assert_eq!(fake.profiles().len(), 1);

    let by_external_id =
        json!({"data": {"type": "profile", "attributes": {"external_id": "shopify:880012"}}});
    assert_eq!(status_and_body(post(&fake, "/api/profile-import", &by_external_id)).await.0, 200);

    // Identifiers naming two different stored profiles are a conflict, as in Klaviyo.
    let other = json!({"data": {"type": "profile", "attributes": {"email": "max@example.org"}}});
    assert_eq!(status_and_body(post(&fake, "/api/profile-import", &other)).await.0, 201);
    let mixed = json!({"data": {"type": "profile", "attributes": {"email": "max@example.org", "external_id": "shopify:880012"}}});
    let (status, body) = status_and_body(post(&fake, "/api/profile-import", &mixed)).await;
    assert_error(status, &body, 409, Some("/data/attributes"));
    fake.shutdown().await;
}

#[tokio::test]
async fn rejects_missing_or_wrong_headers() {
    let fake = start().await;
    let body = profile("lena@example.org");
    let url = format!("{}/api/profile-import", fake.base_url());
    let full = |h: &[(&str, &str)]| {
        let mut req = http().post(&url).body(body.to_string());
        for (name, value) in h {
            req = req.header(*name, *value);
        }
        req
    };
    let key = format!("Klaviyo-API-Key {DEFAULT_API_KEY}");
    let auth = ("authorization", key.as_str());
    let rev = ("revision", "2026-07-15");
    let ct = ("content-type", JSON_API);
    let acc = ("accept", JSON_API);

    let cases: Vec<(Vec<(&str, &str)>, u16)> = vec![
        (vec![rev, ct, acc], 401),
        (vec![("authorization", "Klaviyo-API-Key pk_wrong"), rev, ct, acc], 401),
        (vec![("authorization", "Bearer pk_test_fake_klaviyo"), rev, ct, acc], 401),
        (vec![auth, ct, acc], 400),
        (vec![auth, ("revision", "latest"), ct, acc], 400),
        (vec![auth, ("revision", "2024-02-15"), ct, acc], 400),
        (vec![auth, rev, acc], 415),
        (vec![auth, rev, ("content-type", "application/json"), acc], 415),
        (vec![auth, rev, ct], 406),
        (vec![auth, rev, ct, ("accept", "application/json")], 406),
    ];
    for (headers, expected) in cases {
        let (status, body) = status_and_body(full(&headers)).await;
        assert_error(status, &body, expected, None);
    }
    assert!(fake.profiles().is_empty(), "nothing is stored from a refused request");
    let (status, _) =
        status_and_body(full(&[auth, rev, ("content-type", "application/vnd.api+json; charset=utf-8"), acc]))
            .await;
    assert_eq!(status, 201, "media type parameters are fine");
    fake.shutdown().await;
}

#[tokio::test]
async fn rejects_malformed_profile_imports() {
    let fake = start().await;
    let cases = [
        (json!({"data": {"type": "profiles", "attributes": {"email": "a@example.org"}}}), 400, "/data/type"),
        (json!({"data": {"type": "profile"}}), 400, "/data/attributes"),
        (json!({"data": {"type": "profile", "attributes": []}}), 400, "/data/attributes"),
        (json!({"data": {"type": "profile", "attributes": {"first_name": "Lena"}}}), 400, "/data/attributes"),
        (
            json!({"data": {"type": "profile", "attributes": {"email": "not-an-address"}}}),
            400,
            "/data/attributes/email",
        ),
        (
            json!({"data": {"type": "profile", "attributes": {"phone_number": "0170 123"}}}),
            400,
            "/data/attributes/phone_number",
        ),
        (
            json!({"data": {"type": "profile", "attributes": {"email": "a@example.org", "propertees": {}}}}),
            400,
            "/data/attributes/propertees",
        ),
        (
            json!({"data": {"type": "profile", "attributes": {"email": "a@example.org", "properties": "x"}}}),
            400,
            "/data/attributes/properties",
        ),
        (json!({"profile": {}}), 400, "/profile"),
    ];
    for (doc, expected, pointer) in cases {
        let (status, body) = status_and_body(post(&fake, "/api/profile-import", &doc)).await;
        assert_error(status, &body, expected, Some(pointer));
    }
    let (status, body) =
        status_and_body(post(&fake, "/api/profile-import", &json!({})).body("{not json")).await;
    assert_error(status, &body, 400, None);

    let big = json!({"data": {"type": "profile", "attributes": {
        "email": "a@example.org", "properties": {"notes": "x".repeat(100_000)}}}});
    let (status, body) = status_and_body(post(&fake, "/api/profile-import", &big)).await;
    assert_error(status, &body, 413, None);
    assert!(fake.profiles().is_empty());
    fake.shutdown().await;
}

#[tokio::test]
async fn rejects_malformed_events() {
    let fake = start().await;
    let with = |edit: &dyn Fn(&mut Value)| {
        let mut doc = event("u-1");
        edit(&mut doc);
        doc
    };
    let cases: Vec<(Value, &str)> = vec![
        (with(&|d| d["data"]["type"] = json!("events")), "/data/type"),
        (
            with(&|d| d["data"]["attributes"]["metric"]["data"]["attributes"] = json!({})),
            "/data/attributes/metric/data/attributes/name",
        ),
        (
            with(&|d| {
                d["data"]["attributes"].as_object_mut().unwrap().remove("metric");
            }),
            "/data/attributes/metric",
        ),
        (
            with(&|d| {
                d["data"]["attributes"].as_object_mut().unwrap().remove("properties");
            }),
            "/data/attributes/properties",
        ),
        (
            with(&|d| {
                d["data"]["attributes"]["profile"]["data"]["attributes"] = json!({"first_name": "Lena"})
            }),
            "/data/attributes/profile/data/attributes",
        ),
        (
            with(&|d| {
                d["data"]["attributes"]["metric"]["data"]["attributes"]["name"] = json!("m".repeat(129))
            }),
            "/data/attributes/metric/data/attributes/name",
        ),
        (
            with(&|d| {
                d["data"]["attributes"]["properties"] =
                    (0..401).map(|i| (format!("p{i}"), json!(i))).collect();
            }),
            "/data/attributes/properties",
        ),
        (
            with(&|d| d["data"]["attributes"]["properties"]["note"] = json!("x".repeat(100_001))),
            "/data/attributes/properties/note",
        ),
        (with(&|d| d["data"]["attributes"]["value"] = json!("84.90")), "/data/attributes/value"),
        (
            with(&|d| d["data"]["attributes"]["value_currency"] = json!("EURO")),
            "/data/attributes/value_currency",
        ),
        (with(&|d| d["data"]["attributes"]["time"] = json!("1989-12-31T23:59:59Z")), "/data/attributes/time"),
        (with(&|d| d["data"]["attributes"]["time"] = json!("2099-01-01T00:00:00Z")), "/data/attributes/time"),
        (with(&|d| d["data"]["attributes"]["time"] = json!("yesterday")), "/data/attributes/time"),
        (
            with(&|d| d["data"]["attributes"]["value_curency"] = json!("EUR")),
            "/data/attributes/value_curency",
        ),
    ];
    for (doc, pointer) in cases {
        let (status, body) = status_and_body(post(&fake, "/api/events", &doc)).await;
        assert_error(status, &body, 400, Some(pointer));
        assert!(body["errors"][0]["detail"].as_str().unwrap().len() > 5);
    }
    assert!(fake.events().is_empty(), "nothing is stored from a refused event");

    // A metric name of exactly 128 characters and 400 properties are fine.
    let edge = with(&|d| {
        d["data"]["attributes"]["metric"]["data"]["attributes"]["name"] = json!("m".repeat(128));
        d["data"]["attributes"]["properties"] = (0..400).map(|i| (format!("p{i}"), json!(i))).collect();
    });
    assert_eq!(status_and_body(post(&fake, "/api/events", &edge)).await.0, 202);
    fake.shutdown().await;
}

#[tokio::test]
async fn duplicate_unique_ids_are_accepted_but_stored_once() {
    let fake = start().await;
    for _ in 0..3 {
        assert_eq!(
            status_and_body(post(&fake, "/api/events", &event("shopify:order:1:placed"))).await.0,
            202
        );
    }
    assert_eq!(status_and_body(post(&fake, "/api/events", &event("shopify:order:2:placed"))).await.0, 202);
    assert_eq!(fake.count_events_with_unique_id("shopify:order:1:placed"), 1);
    assert_eq!(fake.events().len(), 2);

    // The same unique id on another metric is another event.
    let mut other_metric = event("shopify:order:1:placed");
    other_metric["data"]["attributes"]["metric"]["data"]["attributes"]["name"] = json!("AI Other");
    assert_eq!(status_and_body(post(&fake, "/api/events", &other_metric)).await.0, 202);
    assert_eq!(fake.count_events_with_unique_id("shopify:order:1:placed"), 2);
    fake.shutdown().await;
}

#[tokio::test]
async fn rate_limits_answer_429_with_an_integer_retry_after() {
    // A steady window of a minute makes the test independent of how fast the machine is.
    let limit = FakeRateLimit {
        burst: 100,
        burst_window: Duration::from_secs(1),
        steady: 2,
        steady_window: Duration::from_secs(60),
    };
    let fake = FakeKlaviyo::start(FakeKlaviyoConfig::default().with_events_limit(limit)).await.unwrap();
    for i in 0..2 {
        assert_eq!(status_and_body(post(&fake, "/api/events", &event(&format!("u-{i}")))).await.0, 202);
    }
    let resp = post(&fake, "/api/events", &event("u-3")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 429);
    let retry_after: u64 = resp.headers()["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry_after), "{retry_after}");
    let body: Value = serde_json::from_str(&resp.text().await.unwrap()).unwrap();
    assert_error(429, &body, 429, None);
    assert_eq!(fake.events().len(), 2);
    // The limit is per endpoint: profile imports still go through.
    let other = json!({"data": {"type": "profile", "attributes": {"email": "a@example.org"}}});
    assert_eq!(status_and_body(post(&fake, "/api/profile-import", &other)).await.0, 201);
    fake.shutdown().await;

    let fake = FakeKlaviyo::start(FakeKlaviyoConfig::default().unthrottled()).await.unwrap();
    for i in 0..400 {
        assert_eq!(status_and_body(post(&fake, "/api/events", &event(&format!("u-{i}")))).await.0, 202);
    }
    fake.shutdown().await;
}

#[tokio::test]
async fn failure_modes_switch_at_runtime() {
    let fake = start().await;
    fake.set_mode(FakeMode::Fail5xx { status: 500, count: 2 });
    for _ in 0..2 {
        let (status, body) = status_and_body(post(&fake, "/api/events", &event("u-1"))).await;
        assert_error(status, &body, 500, None);
    }
    assert_eq!(fake.mode(), FakeMode::Normal);
    assert_eq!(status_and_body(post(&fake, "/api/events", &event("u-1"))).await.0, 202);

    fake.set_mode(FakeMode::Throttle { retry_after_secs: 3, count: 1 });
    let resp = post(&fake, "/api/events", &event("u-2")).send().await.unwrap();
    assert_eq!((resp.status().as_u16(), resp.headers()["retry-after"].to_str().unwrap()), (429, "3"));

    fake.set_mode(FakeMode::Down);
    for path in ["/api/events", "/api/profile-import"] {
        let (status, body) = status_and_body(post(&fake, path, &event("u-3"))).await;
        assert_error(status, &body, 503, None);
    }

    fake.set_mode(FakeMode::DropConnections);
    let err = post(&fake, "/api/events", &event("u-4")).send().await.unwrap_err();
    assert!(!err.is_status(), "{err}");

    fake.set_mode(FakeMode::Slow(Duration::from_millis(300)));
    let started = std::time::Instant::now();
    assert_eq!(status_and_body(post(&fake, "/api/events", &event("u-5"))).await.0, 202);
    assert!(started.elapsed() >= Duration::from_millis(300));

    fake.set_mode(FakeMode::Normal);
    assert_eq!(status_and_body(post(&fake, "/api/events", &event("u-6"))).await.0, 202);
    assert_eq!(fake.events().len(), 3, "u-1, u-5 and u-6 were stored");
    fake.shutdown().await;
}

#[tokio::test]
async fn unknown_paths_and_methods_get_json_api_errors() {
    let fake = start().await;
    let (status, body) = status_and_body(post(&fake, "/api/profiles", &profile("a@example.org"))).await;
    assert_error(status, &body, 404, None);
    let resp = http().get(format!("{}/api/events", fake.base_url())).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    fake.shutdown().await;
}

#[tokio::test]
async fn serve_runs_until_told_to_stop() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(FakeKlaviyo::serve(listener, FakeKlaviyoConfig::default(), async move {
        let _ = stopped.await;
    }));
    let resp = http()
        .post(format!("http://{addr}/api/events"))
        .header("revision", "2026-07-15")
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status().as_u16(), 401);
    stop.send(()).unwrap();
    server.await.unwrap().unwrap();
}
