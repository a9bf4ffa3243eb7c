//! The fake Klaviyo's list-membership endpoint (`POST` / `DELETE /api/lists/{id}/relationships/profiles`)
//! refuses what the real API would refuse and keeps what it accepts. Raw HTTP, bypassing nudge's client.

use nudge_testkit::fake_klaviyo::{DEFAULT_API_KEY, MAX_LIST_PROFILES};
use nudge_testkit::{FakeKlaviyo, FakeKlaviyoConfig, FakeKlaviyoHandle, FakeMode, FakeRateLimit};
use serde_json::{Value, json};
use std::time::Duration;

const JSON_API: &str = "application/vnd.api+json";
const LIST: &str = "Xy12Ab";

fn http() -> reqwest::Client {
    nudge_testkit::ensure_crypto_provider();
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

/// A request with every header right; tests then break one thing.
fn request(
    fake: &FakeKlaviyoHandle,
    method: reqwest::Method,
    path: &str,
    body: &Value,
) -> reqwest::RequestBuilder {
    http()
        .request(method, format!("{}{path}", fake.base_url()))
        .header("authorization", format!("Klaviyo-API-Key {DEFAULT_API_KEY}"))
        .header("revision", "2026-07-15")
        .header("content-type", JSON_API)
        .header("accept", JSON_API)
        .body(body.to_string())
}

fn add(fake: &FakeKlaviyoHandle, list: &str, body: &Value) -> reqwest::RequestBuilder {
    request(fake, reqwest::Method::POST, &format!("/api/lists/{list}/relationships/profiles"), body)
}

fn remove(fake: &FakeKlaviyoHandle, list: &str, body: &Value) -> reqwest::RequestBuilder {
    request(fake, reqwest::Method::DELETE, &format!("/api/lists/{list}/relationships/profiles"), body)
}

async fn status_and_body(req: reqwest::RequestBuilder) -> (u16, Value, Option<String>) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    let text = resp.text().await.unwrap();
    (status, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() }, retry_after)
}

/// Asserts a JSON:API error document with the given status and (optionally) source pointer.
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

/// Creates a profile through profile-import and returns its id.
async fn profile_id(fake: &FakeKlaviyoHandle, email: &str) -> String {
    let body = json!({"data": {"type": "profile", "attributes": {"email": email}}});
    let (status, doc, _) =
        status_and_body(request(fake, reqwest::Method::POST, "/api/profile-import", &body)).await;
    assert!(status == 200 || status == 201, "{status} {doc}");
    doc["data"]["id"].as_str().unwrap().to_string()
}

fn members(ids: &[&str]) -> Value {
    json!({"data": ids.iter().map(|id| json!({"type": "profile", "id": id})).collect::<Vec<_>>()})
}

/// A fake with Klaviyo's limits but for the list window, so that tests of many refusals are not throttled
/// (the window has its own test).
async fn start() -> FakeKlaviyoHandle {
    let config = FakeKlaviyoConfig { lists_limit: None, ..FakeKlaviyoConfig::default() };
    let fake = FakeKlaviyo::start(config).await.unwrap();
    fake.create_list(LIST);
    fake
}

#[tokio::test]
async fn profile_import_gives_the_same_id_for_the_same_profile() {
    let fake = start().await;
    let first = profile_id(&fake, "lena@example.org").await;
    assert_eq!(profile_id(&fake, "LENA@example.org").await, first);
    assert_ne!(profile_id(&fake, "ada@example.org").await, first);
    fake.shutdown().await;
}

#[tokio::test]
async fn members_are_added_and_removed_with_204_and_repeats_are_harmless() {
    let fake = start().await;
    let lena = profile_id(&fake, "lena@example.org").await;
    let ada = profile_id(&fake, "ada@example.org").await;
    assert_eq!(fake.list_members(LIST), Some(vec![]));
    assert_eq!(fake.list_members("NoSuch"), None);

    let (status, body, _) = status_and_body(add(&fake, LIST, &members(&[&lena]))).await;
    assert_eq!((status, body), (204, Value::Null));
    // Adding again, and together with another profile, keeps one membership each.
    let (status, _, _) = status_and_body(add(&fake, LIST, &members(&[&ada, &lena]))).await;
    assert_eq!(status, 204);
    assert_eq!(fake.list_member_emails(LIST), vec!["lena@example.org", "ada@example.org"]);
    let ids: Vec<String> = fake.list_members(LIST).unwrap().into_iter().map(|p| p.id).collect();
    assert_eq!(ids, vec![lena.clone(), ada.clone()]);

    let (status, body, _) = status_and_body(remove(&fake, LIST, &members(&[&lena]))).await;
    assert_eq!((status, body), (204, Value::Null));
    assert_eq!(fake.list_member_emails(LIST), vec!["ada@example.org"]);
    // Removing a profile that is not a member is a success too.
    let (status, _, _) = status_and_body(remove(&fake, LIST, &members(&[&lena]))).await;
    assert_eq!(status, 204);
    assert_eq!(fake.list_member_emails(LIST), vec!["ada@example.org"]);
    // A trailing slash (as older revisions wrote the path) reaches the same endpoint.
    let path = format!("/api/lists/{LIST}/relationships/profiles/");
    let (status, _, _) =
        status_and_body(request(&fake, reqwest::Method::DELETE, &path, &members(&[&ada]))).await;
    assert_eq!(status, 204);
    assert_eq!(fake.list_members(LIST), Some(vec![]));
    fake.shutdown().await;
}

#[tokio::test]
async fn an_unknown_list_is_404_and_changes_nothing() {
    let fake = start().await;
    let lena = profile_id(&fake, "lena@example.org").await;
    for req in [add(&fake, "Zz99Zz", &members(&[&lena])), remove(&fake, "Zz99Zz", &members(&[&lena]))] {
        let (status, body, _) = status_and_body(req).await;
        assert_error(status, &body, 404, None);
        assert!(body["errors"][0]["detail"].as_str().unwrap().contains("Zz99Zz"), "{body}");
    }
    assert_eq!(fake.list_members("Zz99Zz"), None);
    assert_eq!(fake.list_members(LIST), Some(vec![]));
    fake.shutdown().await;
}

#[tokio::test]
async fn bodies_outside_the_schema_are_refused_with_a_pointer() {
    let fake = start().await;
    let lena = profile_id(&fake, "lena@example.org").await;
    let too_many: Vec<Value> =
        (0..=MAX_LIST_PROFILES).map(|_| json!({"type": "profile", "id": lena.clone()})).collect();
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "/data"),
        (json!({"data": {"type": "profile", "id": lena}}), "/data"),
        (json!({"data": []}), "/data"),
        (json!({"data": too_many}), "/data"),
        (json!({"data": [{"type": "profile", "id": lena}], "meta": {}}), "/meta"),
        (json!({"data": ["just-an-id"]}), "/data/0"),
        (json!({"data": [{"type": "profile", "id": lena}, {"type": "list", "id": lena}]}), "/data/1/type"),
        (json!({"data": [{"id": lena}]}), "/data/0/type"),
        (json!({"data": [{"type": "profile"}]}), "/data/0/id"),
        (json!({"data": [{"type": "profile", "id": ""}]}), "/data/0/id"),
        (json!({"data": [{"type": "profile", "id": 42}]}), "/data/0/id"),
        (
            json!({"data": [{"type": "profile", "id": lena, "attributes": {"email": "x@y.z"}}]}),
            "/data/0/attributes",
        ),
        // A profile the account does not have (Klaviyo does not document this answer; the fake says 400).
        (
            json!({"data": [{"type": "profile", "id": lena}, {"type": "profile", "id": "01NOSUCHPROFILE"}]}),
            "/data/1/id",
        ),
    ];
    for (body, pointer) in cases {
        for req in [add(&fake, LIST, &body), remove(&fake, LIST, &body)] {
            let (status, answer, _) = status_and_body(req).await;
            assert_error(status, &answer, 400, Some(pointer));
        }
    }
    // Exactly the maximum is fine; nothing refused was applied.
    assert_eq!(fake.list_members(LIST), Some(vec![]));
    let max: Vec<Value> =
        (0..MAX_LIST_PROFILES).map(|_| json!({"type": "profile", "id": lena.clone()})).collect();
    let (status, _, _) = status_and_body(add(&fake, LIST, &json!({"data": max}))).await;
    assert_eq!(status, 204);
    assert_eq!(fake.list_member_emails(LIST), vec!["lena@example.org"]);
    // Not JSON at all.
    let (status, answer, _) = status_and_body(add(&fake, LIST, &json!("x")).body("{not json")).await;
    assert_error(status, &answer, 400, None);
    fake.shutdown().await;
}

#[tokio::test]
async fn headers_and_methods_are_checked_as_on_the_other_endpoints() {
    let fake = start().await;
    let lena = profile_id(&fake, "lena@example.org").await;
    let body = members(&[&lena]);
    let path = format!("{}/api/lists/{LIST}/relationships/profiles", fake.base_url());
    let bare = || http().delete(&path).body(body.to_string());
    let (status, answer, _) = status_and_body(bare()).await;
    assert_error(status, &answer, 401, None);
    let keyed = || bare().header("authorization", format!("Klaviyo-API-Key {DEFAULT_API_KEY}"));
    let (status, answer, _) = status_and_body(keyed()).await;
    assert_error(status, &answer, 400, None);
    assert!(answer["errors"][0]["detail"].as_str().unwrap().contains("revision"), "{answer}");
    let revised = || keyed().header("revision", "2026-07-15");
    let (status, answer, _) = status_and_body(revised().header("content-type", "application/json")).await;
    assert_error(status, &answer, 415, None);
    let (status, answer, _) =
        status_and_body(revised().header("content-type", JSON_API).header("accept", "application/json"))
            .await;
    assert_error(status, &answer, 406, None);
    let wrong_key = http()
        .post(&path)
        .header("authorization", "Klaviyo-API-Key pk_wrong")
        .header("revision", "2026-07-15")
        .header("content-type", JSON_API)
        .header("accept", JSON_API)
        .body(body.to_string());
    let (status, answer, _) = status_and_body(wrong_key).await;
    assert_error(status, &answer, 401, None);
    for method in [reqwest::Method::PUT, reqwest::Method::PATCH, reqwest::Method::GET] {
        let path = format!("/api/lists/{LIST}/relationships/profiles");
        let (status, answer, _) = status_and_body(request(&fake, method, &path, &body)).await;
        assert_error(status, &answer, 405, None);
    }
    // Other shapes of path are not this endpoint.
    for path in ["/api/lists/relationships/profiles", &format!("/api/lists/{LIST}/x/relationships/profiles")]
    {
        let (status, answer, _) = status_and_body(request(&fake, reqwest::Method::POST, path, &body)).await;
        assert_error(status, &answer, 404, None);
    }
    assert_eq!(fake.list_members(LIST), Some(vec![]));
    fake.shutdown().await;
}

#[tokio::test]
async fn the_list_window_is_its_own_and_answers_429_with_retry_after() {
    let limit = FakeRateLimit {
        burst: 2,
        burst_window: Duration::from_secs(1),
        steady: 3,
        steady_window: Duration::from_secs(60),
    };
    let config = FakeKlaviyoConfig::default().with_lists_limit(limit).with_list(LIST);
    let fake = FakeKlaviyo::start(config).await.unwrap();
    assert_eq!(fake.list_members(LIST), Some(vec![]), "a configured list exists from the start");
    assert_eq!(fake.list_members("Other"), None);
    let lena = profile_id(&fake, "lena@example.org").await;
    let body = members(&[&lena]);
    let mut statuses = Vec::new();
    for _ in 0..2 {
        statuses.push(status_and_body(add(&fake, LIST, &body)).await.0);
    }
    // Adding and removing share the window.
    let (status, answer, retry_after) = status_and_body(remove(&fake, LIST, &body)).await;
    assert_eq!(statuses, vec![204, 204]);
    if status == 429 {
        assert_error(status, &answer, 429, None);
        let secs: u64 = retry_after.expect("a Retry-After header").parse().expect("whole seconds");
        assert!((1..=60).contains(&secs), "{secs}");
    } else {
        // The burst window rolled over between the calls; the steady window of 3 is then full.
        assert_eq!(status, 204);
        let (status, answer, retry_after) = status_and_body(remove(&fake, LIST, &body)).await;
        assert_error(status, &answer, 429, None);
        assert!(retry_after.is_some());
    }
    // The profile-import window is not touched by the list calls.
    profile_id(&fake, "ada@example.org").await;
    fake.shutdown().await;
}

#[tokio::test]
async fn failure_modes_apply_to_the_list_endpoint() {
    let fake = start().await;
    let lena = profile_id(&fake, "lena@example.org").await;
    fake.set_mode(FakeMode::Fail5xx { status: 503, count: 1 });
    let (status, answer, _) = status_and_body(add(&fake, LIST, &members(&[&lena]))).await;
    assert_error(status, &answer, 503, None);
    assert_eq!(fake.list_members(LIST), Some(vec![]));
    fake.set_mode(FakeMode::Throttle { retry_after_secs: 7, count: 1 });
    let (status, _, retry_after) = status_and_body(add(&fake, LIST, &members(&[&lena]))).await;
    assert_eq!((status, retry_after.as_deref()), (429, Some("7")));
    let (status, _, _) = status_and_body(add(&fake, LIST, &members(&[&lena]))).await;
    assert_eq!(status, 204);
    let recorded = fake.requests();
    let last = recorded.last().unwrap();
    assert_eq!(
        (last.method.as_str(), last.path.as_str()),
        ("POST", "/api/lists/Xy12Ab/relationships/profiles")
    );
    assert_eq!(last.status, 204);
    fake.shutdown().await;
}
