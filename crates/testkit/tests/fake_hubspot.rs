//! The fake HubSpot's rules, checked with plain HTTP requests.

use nudge_testkit::fake_hubspot::{GROUPS_PATH, PROPERTIES_BATCH_PATH, PROPERTIES_PATH, UPSERT_PATH};
use nudge_testkit::{FakeHubSpot, FakeHubSpotConfig, FakeHubSpotHandle, HubSpotMode};
use serde_json::{Value, json};
use std::time::Duration;

const TOKEN: &str = "pat-na1-fake-test";

struct Answer {
    status: u16,
    headers: reqwest::header::HeaderMap,
    body: Value,
}

async fn post_with(
    fake: &FakeHubSpotHandle,
    path: &str,
    auth: Option<&str>,
    content_type: &str,
    body: String,
) -> Answer {
    nudge_testkit::ensure_crypto_provider();
    let mut request = reqwest::Client::new()
        .post(format!("{}{path}", fake.base_url()))
        .header("content-type", content_type)
        .body(body);
    if let Some(auth) = auth {
        request = request.header("authorization", auth);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = serde_json::from_slice(&response.bytes().await.unwrap()).unwrap_or(Value::Null);
    Answer { status, headers, body }
}

async fn post(fake: &FakeHubSpotHandle, path: &str, body: Value) -> Answer {
    post_with(fake, path, Some(&format!("Bearer {TOKEN}")), "application/json", body.to_string()).await
}

fn input(email: &str, trace: &str, properties: Value) -> Value {
    json!({"idProperty": "email", "id": email, "objectWriteTraceId": trace, "properties": properties})
}

async fn start(config: FakeHubSpotConfig) -> FakeHubSpotHandle {
    FakeHubSpot::start(config).await.unwrap()
}

async fn with_properties(fake: &FakeHubSpotHandle) {
    assert_eq!(post(fake, GROUPS_PATH, json!({"name": "nudge_ai", "label": "nudge AI"})).await.status, 201);
    let defs = json!({"inputs": [
        {"name": "ai_churn_risk", "label": "AI churn risk", "type": "number", "fieldType": "number", "groupName": "nudge_ai"},
        {"name": "ai_vip", "label": "AI vip", "type": "bool", "fieldType": "booleancheckbox", "groupName": "nudge_ai",
         "options": [{"label": "Yes", "value": "true"}, {"label": "No", "value": "false"}]},
        {"name": "ai_scored_at", "label": "AI scored at", "type": "datetime", "fieldType": "date", "groupName": "nudge_ai"},
    ]});
    assert_eq!(post(fake, PROPERTIES_BATCH_PATH, defs).await.status, 201);
}

#[tokio::test]
async fn bearer_token_and_json_are_required() {
    let fake = start(FakeHubSpotConfig::new(TOKEN)).await;
    let body = json!({"inputs": [input("a@example.org", "t1", json!({}))]}).to_string();
    for auth in [None, Some("Bearer wrong"), Some(TOKEN)] {
        let a = post_with(&fake, UPSERT_PATH, auth, "application/json", body.clone()).await;
        assert_eq!(a.status, 401, "{auth:?}");
        assert_eq!(a.body["status"], "error");
        assert_eq!(a.body["category"], "INVALID_AUTHENTICATION");
        assert!(a.body["message"].as_str().is_some_and(|m| !m.is_empty()));
        assert!(a.body["correlationId"].as_str().is_some_and(|m| !m.is_empty()));
    }
    let bearer = format!("Bearer {TOKEN}");
    assert_eq!(post_with(&fake, UPSERT_PATH, Some(&bearer), "text/plain", body.clone()).await.status, 415);
    let a = post_with(&fake, UPSERT_PATH, Some(&bearer), "application/json", "{not json".into()).await;
    assert_eq!((a.status, a.body["category"].as_str()), (400, Some("VALIDATION_ERROR")));
    assert_eq!(post(&fake, "/crm/v3/objects/deals/batch/upsert", json!({})).await.status, 404);
    assert_eq!(post_with(&fake, UPSERT_PATH, Some(&bearer), "application/json", body).await.status, 200);
    assert!(fake.contact("A@example.org").is_some());
}

#[tokio::test]
async fn batch_shape_is_enforced_for_the_whole_request() {
    let fake = start(FakeHubSpotConfig::new(TOKEN).unlimited()).await;
    let many: Vec<Value> =
        (0..101).map(|i| input(&format!("c{i}@example.org"), &format!("t{i}"), json!({}))).collect();
    let a = post(&fake, UPSERT_PATH, json!({ "inputs": many })).await;
    assert_eq!(a.status, 400);
    assert!(a.body["message"].as_str().unwrap().contains("at most 100"));
    let hundred: Vec<Value> =
        (0..100).map(|i| input(&format!("c{i}@example.org"), &format!("t{i}"), json!({}))).collect();
    assert_eq!(post(&fake, UPSERT_PATH, json!({ "inputs": hundred })).await.status, 200);
    assert_eq!(post(&fake, UPSERT_PATH, json!({ "inputs": [] })).await.status, 400);
    let cases = [
        json!({"idProperty": "hs_object_id", "id": "1", "objectWriteTraceId": "t", "properties": {}}),
        json!({"idProperty": "email", "objectWriteTraceId": "t", "properties": {}}),
        json!({"idProperty": "email", "id": "a@example.org", "properties": {}}),
        json!({"idProperty": "email", "id": "a@example.org", "objectWriteTraceId": "t"}),
    ];
    for case in cases {
        let a = post(&fake, UPSERT_PATH, json!({ "inputs": [case] })).await;
        assert_eq!(a.status, 400, "{case}");
    }
    let same_trace =
        json!({"inputs": [input("a@example.org", "t", json!({})), input("b@example.org", "t", json!({}))]});
    assert_eq!(post(&fake, UPSERT_PATH, same_trace).await.status, 400);
    let same_email =
        json!({"inputs": [input("a@example.org", "t1", json!({})), input("A@Example.org", "t2", json!({}))]});
    let a = post(&fake, UPSERT_PATH, same_email).await;
    assert_eq!(a.status, 400);
    assert!(a.body["message"].as_str().unwrap().contains("Duplicate IDs"));
    assert_eq!(fake.contacts().len(), 100, "nothing of a refused batch is stored");
    assert_eq!(fake.upsert_batch_sizes(), [101, 100, 0, 1, 1, 1, 1, 2, 2]);
}

#[tokio::test]
async fn records_fail_alone_in_a_207() {
    let fake = start(FakeHubSpotConfig::new(TOKEN)).await;
    with_properties(&fake).await;
    fake.reject_email("blocked@example.org");
    let body = json!({"inputs": [
        input("ok@example.org", "t-ok", json!({"email": "ok@example.org", "firstname": "Ok", "ai_churn_risk": "0.5",
            "ai_vip": "true", "ai_scored_at": "1777629600000"})),
        input("unknown@example.org", "t-unknown", json!({"ai_not_created": "x"})),
        input("not-an-email", "t-bad-email", json!({})),
        input("blocked@example.org", "t-blocked", json!({})),
        input("typed@example.org", "t-typed", json!({"ai_churn_risk": "high", "ai_vip": "yes"})),
        input("number@example.org", "t-number", json!({"ai_churn_risk": 0.5})),
    ]});
    let a = post(&fake, UPSERT_PATH, body).await;
    assert_eq!(a.status, 207, "{}", a.body);
    assert_eq!(a.body["results"].as_array().unwrap().len(), 1);
    assert_eq!(a.body["numErrors"], 5);
    let errors = a.body["errors"].as_array().unwrap();
    let by_trace = |t: &str| {
        errors
            .iter()
            .find(|e| e["context"]["objectWriteTraceId"] == json!([t]))
            .unwrap_or_else(|| panic!("{t}: {errors:?}"))
    };
    for t in ["t-unknown", "t-bad-email", "t-blocked", "t-typed", "t-number"] {
        assert_eq!(by_trace(t)["category"], "VALIDATION_ERROR");
        assert_eq!(by_trace(t)["status"], "error");
    }
    assert!(by_trace("t-unknown")["message"].as_str().unwrap().contains("PROPERTY_DOESNT_EXIST"));
    assert!(by_trace("t-bad-email")["message"].as_str().unwrap().contains("INVALID_EMAIL"));
    assert!(by_trace("t-typed")["message"].as_str().unwrap().contains("INVALID_PROPERTY_VALUE"));
    let stored = fake.contact("ok@example.org").unwrap();
    assert_eq!(stored.properties["ai_vip"], "true");
    assert_eq!(fake.contacts().len(), 1);
    // Properties merge: a later write keeps what it does not mention.
    let again = json!({"inputs": [input("OK@example.org", "t2", json!({"ai_churn_risk": "0.7"}))]});
    let a = post(&fake, UPSERT_PATH, again).await;
    assert_eq!(a.status, 200);
    assert_eq!(a.body["results"][0]["new"], false);
    let stored = fake.contact("ok@example.org").unwrap();
    assert_eq!(
        (stored.properties["ai_churn_risk"].as_str(), stored.properties["firstname"].as_str()),
        ("0.7", "Ok")
    );
    assert_eq!(stored.writes, 2);
}

#[tokio::test]
async fn groups_and_properties_answer_409_on_duplicates() {
    let fake = start(FakeHubSpotConfig::new(TOKEN)).await;
    let prop = json!({"name": "ai_segment", "label": "AI segment", "type": "string", "fieldType": "text", "groupName": "nudge_ai"});
    let a = post(&fake, PROPERTIES_PATH, prop.clone()).await;
    assert_eq!(a.status, 400, "the group must exist first");
    assert_eq!(post(&fake, GROUPS_PATH, json!({"name": "nudge_ai", "label": "nudge AI"})).await.status, 201);
    let a = post(&fake, GROUPS_PATH, json!({"name": "nudge_ai", "label": "nudge AI"})).await;
    assert_eq!((a.status, a.body["category"].as_str()), (409, Some("OBJECT_ALREADY_EXISTS")));
    assert_eq!(post(&fake, GROUPS_PATH, json!({"name": "Nudge AI", "label": "x"})).await.status, 400);
    assert_eq!(post(&fake, PROPERTIES_PATH, prop.clone()).await.status, 201);
    assert_eq!(post(&fake, PROPERTIES_PATH, prop.clone()).await.status, 409);
    let email = json!({"name": "email", "label": "Email", "type": "string", "fieldType": "text", "groupName": "nudge_ai"});
    assert_eq!(post(&fake, PROPERTIES_PATH, email).await.status, 409, "standard properties exist");
    // A batch with one existing name creates none of them.
    let new = json!({"name": "ai_new", "label": "AI new", "type": "number", "fieldType": "number", "groupName": "nudge_ai"});
    let a = post(&fake, PROPERTIES_BATCH_PATH, json!({"inputs": [new.clone(), prop]})).await;
    assert_eq!(a.status, 409);
    assert_eq!(fake.properties().len(), 1);
    // Definitions are checked.
    for bad in [
        json!({"name": "ai_x", "label": "x", "type": "number", "fieldType": "text", "groupName": "nudge_ai"}),
        json!({"name": "ai_x", "label": "x", "type": "bool", "fieldType": "booleancheckbox", "groupName": "nudge_ai"}),
        json!({"name": "ai_x", "label": "x", "type": "text", "fieldType": "text", "groupName": "nudge_ai"}),
        json!({"name": "AI-x", "label": "x", "type": "string", "fieldType": "text", "groupName": "nudge_ai"}),
        json!({"name": "ai_x", "type": "string", "fieldType": "text", "groupName": "nudge_ai"}),
    ] {
        assert_eq!(
            post(&fake, PROPERTIES_BATCH_PATH, json!({"inputs": [bad.clone()]})).await.status,
            400,
            "{bad}"
        );
    }
    assert_eq!(post(&fake, PROPERTIES_BATCH_PATH, json!({"inputs": [new]})).await.status, 201);
    let names: Vec<String> = fake.properties().into_iter().map(|p| p.name).collect();
    assert_eq!(names, ["ai_new", "ai_segment"]);
}

#[tokio::test]
async fn the_ten_second_limit_answers_429_with_hubspot_headers() {
    let fake = start(FakeHubSpotConfig { per_ten_seconds: Some(2), ..FakeHubSpotConfig::new(TOKEN) }).await;
    let group = |n: u32| json!({"name": format!("g{n}"), "label": "g"});
    let a = post(&fake, GROUPS_PATH, group(1)).await;
    assert_eq!(a.status, 201);
    assert_eq!(a.headers["x-hubspot-ratelimit-max"], "2");
    assert_eq!(a.headers["x-hubspot-ratelimit-remaining"], "1");
    assert_eq!(a.headers["x-hubspot-ratelimit-interval-milliseconds"], "10000");
    assert_eq!(post(&fake, GROUPS_PATH, group(2)).await.status, 201);
    let a = post(&fake, GROUPS_PATH, group(3)).await;
    assert_eq!(a.status, 429);
    assert_eq!(a.body["status"], "error");
    assert_eq!(a.body["errorType"], "RATE_LIMIT");
    assert_eq!(a.body["policyName"], "SECONDLY");
    assert_eq!(a.body["message"], "You have reached your secondly limit.");
    assert_eq!(a.headers["x-hubspot-ratelimit-remaining"], "0");
    assert_eq!(fake.groups().len(), 2);

    let fake =
        start(FakeHubSpotConfig { per_day: Some(1), ..FakeHubSpotConfig::new(TOKEN).unlimited() }).await;
    assert_eq!(post(&fake, GROUPS_PATH, group(1)).await.status, 201);
    let a = post(&fake, GROUPS_PATH, group(2)).await;
    assert_eq!((a.status, a.body["policyName"].as_str()), (429, Some("DAILY")));
    assert_eq!(a.headers["x-hubspot-ratelimit-daily-remaining"], "0");
}

#[tokio::test]
async fn modes_throttle_fail_and_stall_then_return_to_normal() {
    let fake = start(FakeHubSpotConfig::new(TOKEN)).await;
    let body = || json!({"name": "g", "label": "g"});
    fake.set_mode(HubSpotMode::Throttle { retry_after_secs: 4, count: 2 });
    for _ in 0..2 {
        let a = post(&fake, GROUPS_PATH, body()).await;
        assert_eq!((a.status, a.headers["retry-after"].to_str().unwrap()), (429, "4"));
    }
    fake.set_mode(HubSpotMode::Fail { status: 503, count: 1 });
    let a = post(&fake, GROUPS_PATH, body()).await;
    assert_eq!((a.status, a.body["status"].as_str()), (503, Some("error")));
    fake.set_mode(HubSpotMode::Slow(Duration::from_millis(300)));
    let started = std::time::Instant::now();
    assert_eq!(post(&fake, GROUPS_PATH, body()).await.status, 201);
    assert!(started.elapsed() >= Duration::from_millis(300));
    fake.set_mode(HubSpotMode::Normal);
    assert_eq!(post(&fake, GROUPS_PATH, body()).await.status, 409);
    let statuses: Vec<u16> = fake.requests().iter().map(|r| r.status).collect();
    assert_eq!(statuses, [429, 429, 503, 201, 409], "every request is recorded with its answer");
    fake.shutdown().await;
}

#[tokio::test]
async fn serve_runs_on_a_given_listener_until_shutdown() {
    nudge_testkit::ensure_crypto_provider();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(FakeHubSpot::serve(listener, FakeHubSpotConfig::new(TOKEN), async move {
        let _ = stopped.await;
    }));
    let r = reqwest::Client::new()
        .post(format!("http://{addr}{GROUPS_PATH}"))
        .header("authorization", format!("Bearer {TOKEN}"))
        .header("content-type", "application/json")
        .body(json!({"name": "g", "label": "g"}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), server).await.unwrap().unwrap().unwrap();
}
