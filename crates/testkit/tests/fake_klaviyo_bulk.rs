//! The fake Klaviyo's bulk profile import jobs, talked to with raw HTTP: the documented limits are
//! enforced, a job moves from `queued` through `processing` to `complete` (or `cancelled`) and stores
//! its profiles as profile-import would, and per-profile failures are listed as import errors.

use nudge_testkit::fake_klaviyo::{BulkJobStatus, DEFAULT_API_KEY};
use nudge_testkit::{FakeKlaviyo, FakeKlaviyoConfig, FakeKlaviyoHandle, FakeRateLimit};
use serde_json::{Value, json};
use std::time::Duration;

const JSON_API: &str = "application/vnd.api+json";
const JOBS: &str = "/api/profile-bulk-import-jobs";

fn http() -> reqwest::Client {
    nudge_testkit::ensure_crypto_provider();
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

fn with_headers(req: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    req.header("authorization", format!("Klaviyo-API-Key {DEFAULT_API_KEY}"))
        .header("revision", "2026-07-15")
        .header("accept", JSON_API)
}

fn post_raw(fake: &FakeKlaviyoHandle, body: String) -> reqwest::RequestBuilder {
    with_headers(http().post(format!("{}{JOBS}", fake.base_url())))
        .header("content-type", JSON_API)
        .body(body)
}

fn get(fake: &FakeKlaviyoHandle, path: &str) -> reqwest::RequestBuilder {
    with_headers(http().get(format!("{}{path}", fake.base_url())))
}

async fn answer(req: reqwest::RequestBuilder) -> (u16, Option<String>, Value) {
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let retry_after = resp.headers().get("retry-after").map(|v| v.to_str().unwrap().to_string());
    let text = resp.text().await.unwrap();
    (status, retry_after, if text.is_empty() { Value::Null } else { serde_json::from_str(&text).unwrap() })
}

fn profile(n: usize) -> Value {
    json!({"type": "profile", "attributes": {
        "email": format!("c{n}@example.org"), "external_id": format!("shopify:{n}"),
        "properties": {"ai_churn_risk": 0.5}}})
}

fn job(profiles: Vec<Value>) -> Value {
    json!({"data": {"type": "profile-bulk-import-job", "attributes": {"profiles": {"data": profiles}}}})
}

async fn fake_with(config: FakeKlaviyoConfig) -> FakeKlaviyoHandle {
    FakeKlaviyo::start(config).await.unwrap()
}

fn quick() -> FakeKlaviyoConfig {
    FakeKlaviyoConfig::default().with_bulk_job_delay(Duration::from_millis(30))
}

fn assert_error(status: u16, body: &Value, expected: u16, pointer: Option<&str>) {
    assert_eq!(status, expected, "{body}");
    for field in ["id", "code", "title", "detail"] {
        assert!(body["errors"][0][field].is_string(), "errors[0].{field} missing in {body}");
    }
    if let Some(pointer) = pointer {
        assert_eq!(body["errors"][0]["source"]["pointer"], pointer, "{body}");
    }
}

async fn wait_until(fake: &FakeKlaviyoHandle, path: &str, status: &str) -> Value {
    for _ in 0..200 {
        let (code, _, body) = answer(get(fake, path)).await;
        assert_eq!(code, 200, "{body}");
        if body["data"]["attributes"]["status"] == status {
            return body;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("{path} never reached {status}");
}

#[tokio::test]
async fn a_job_is_accepted_queued_then_processed_and_its_profiles_stored() {
    let fake = fake_with(quick()).await;
    let (status, _, body) = answer(post_raw(&fake, job((0..3).map(profile).collect()).to_string())).await;
    assert_eq!(status, 202, "{body}");
    assert_eq!(body["data"]["type"], "profile-bulk-import-job");
    assert_eq!(body["data"]["attributes"]["status"], "queued");
    assert_eq!(body["data"]["attributes"]["total_count"], 3);
    let id = body["data"]["id"].as_str().unwrap().to_string();
    assert!(fake.profiles().is_empty(), "nothing is stored while queued");

    let path = format!("{JOBS}/{id}");
    let processing = wait_until(&fake, &path, "processing").await;
    assert!(processing["data"]["attributes"]["started_at"].is_string());
    let done = wait_until(&fake, &path, "complete").await;
    let attrs = &done["data"]["attributes"];
    assert_eq!((attrs["completed_count"].as_u64(), attrs["failed_count"].as_u64()), (Some(3), Some(0)));
    assert!(attrs["completed_at"].is_string() && attrs["expires_at"].is_string());
    assert_eq!(fake.profiles().len(), 3);
    assert_eq!(fake.profile_by_email("C1@example.org").unwrap().external_id.as_deref(), Some("shopify:1"));

    let (status, _, errors) = answer(get(&fake, &format!("{path}/import-errors"))).await;
    assert_eq!((status, errors["data"].as_array().unwrap().len()), (200, 0));
    let jobs = fake.bulk_jobs();
    assert_eq!((jobs.len(), jobs[0].status, jobs[0].total_count), (1, BulkJobStatus::Complete, 3));

    // Importing the same profiles again updates them: still three.
    let (status, _, _) = answer(post_raw(&fake, job((0..3).map(profile).collect()).to_string())).await;
    assert_eq!(status, 202);
    tokio::time::sleep(Duration::from_millis(80)).await;
    assert_eq!(fake.profiles().len(), 3);
    assert!(fake.profiles().iter().all(|p| p.update_count == 1));
}

#[tokio::test]
async fn the_documented_limits_and_headers_are_enforced() {
    let fake = fake_with(quick().unthrottled()).await;
    let too_many = job((0..10_001).map(profile).collect()).to_string();
    let (status, _, body) = answer(post_raw(&fake, too_many)).await;
    assert_error(status, &body, 400, Some("/data/attributes/profiles/data"));
    let (status, _, body) =
        answer(post_raw(&fake, job((0..10_000).map(profile).collect()).to_string())).await;
    assert_eq!(status, 202, "exactly 10,000 is fine: {body}");

    let fat = |n: usize, size: usize| {
        let mut p = profile(n);
        p["attributes"]["properties"]["ai_notes"] = json!("x".repeat(size));
        p
    };
    let (status, _, body) = answer(post_raw(&fake, job(vec![profile(0), fat(1, 100_001)]).to_string())).await;
    assert_error(status, &body, 413, Some("/data/attributes/profiles/data/1"));
    let (status, _, body) =
        answer(post_raw(&fake, job((0..60).map(|n| fat(n, 90_000)).collect()).to_string())).await;
    assert_error(status, &body, 413, None);
    let (status, _, body) = answer(post_raw(&fake, job(vec![]).to_string())).await;
    assert_error(status, &body, 400, Some("/data/attributes/profiles/data"));

    let mut no_identifier = profile(2);
    no_identifier["attributes"] = json!({"first_name": "Lena"});
    let (status, _, body) = answer(post_raw(&fake, job(vec![profile(1), no_identifier]).to_string())).await;
    assert_error(status, &body, 400, Some("/data/attributes/profiles/data/1/attributes"));
    let mut wrong_type = profile(3);
    wrong_type["type"] = json!("profiles");
    let (status, _, body) = answer(post_raw(&fake, job(vec![wrong_type]).to_string())).await;
    assert_error(status, &body, 400, Some("/data/attributes/profiles/data/0/type"));
    let mut unknown = profile(4);
    unknown["attributes"]["propertees"] = json!({});
    let (status, _, body) = answer(post_raw(&fake, job(vec![unknown]).to_string())).await;
    assert_error(status, &body, 400, Some("/data/attributes/profiles/data/0/attributes/propertees"));
    let mut wrong_job = job(vec![profile(5)]);
    wrong_job["data"]["type"] = json!("profile-import-job");
    let (status, _, body) = answer(post_raw(&fake, wrong_job.to_string())).await;
    assert_error(status, &body, 400, Some("/data/type"));
    let mut unknown_list = job(vec![profile(6)]);
    unknown_list["data"]["relationships"] = json!({"lists": {"data": [{"type": "list", "id": "Nope12"}]}});
    let (status, _, body) = answer(post_raw(&fake, unknown_list.to_string())).await;
    assert_error(status, &body, 404, Some("/data/relationships/lists/data/0/id"));

    let body = job(vec![profile(7)]).to_string();
    let url = format!("{}{JOBS}", fake.base_url());
    let no_auth = http()
        .post(&url)
        .header("revision", "2026-07-15")
        .header("content-type", JSON_API)
        .header("accept", JSON_API);
    let (status, _, b) = answer(no_auth.body(body.clone())).await;
    assert_error(status, &b, 401, None);
    let no_revision = http()
        .post(&url)
        .header("authorization", format!("Klaviyo-API-Key {DEFAULT_API_KEY}"))
        .header("content-type", JSON_API)
        .header("accept", JSON_API);
    let (status, _, b) = answer(no_revision.body(body.clone())).await;
    assert_error(status, &b, 400, None);
    let plain_json = with_headers(http().post(&url)).header("content-type", "application/json");
    let (status, _, b) = answer(plain_json.body(body.clone())).await;
    assert_error(status, &b, 415, None);
    let (status, _, b) = answer(get(&fake, &format!("{JOBS}/01NOSUCHJOB"))).await;
    assert_error(status, &b, 404, None);
    let (status, _, b) = answer(with_headers(http().delete(&url))).await;
    assert_error(status, &b, 405, None);
    let (status, _, b) =
        answer(http().get(format!("{url}/01NOSUCHJOB")).header("revision", "2026-07-15")).await;
    assert_error(status, &b, 401, None);
}

#[tokio::test]
async fn failed_profiles_are_listed_page_by_page_with_their_payload() {
    let fake = fake_with(quick()).await;
    fake.fail_bulk_email("C1@Example.org");
    fake.fail_bulk_email("c3@example.org");
    let (_, _, body) = answer(post_raw(&fake, job((0..5).map(profile).collect()).to_string())).await;
    let id = body["data"]["id"].as_str().unwrap().to_string();
    let done = wait_until(&fake, &format!("{JOBS}/{id}"), "complete").await;
    assert_eq!(done["data"]["attributes"]["failed_count"], 2);
    assert_eq!(done["data"]["attributes"]["completed_count"], 3);
    assert!(
        fake.profile_by_email("c1@example.org").is_none()
            && fake.profile_by_email("c2@example.org").is_some()
    );

    let (status, _, page) = answer(get(&fake, &format!("{JOBS}/{id}/import-errors?page[size]=1"))).await;
    assert_eq!(status, 200, "{page}");
    let first = &page["data"][0];
    assert_eq!(first["type"], "import-error");
    for field in ["code", "title", "detail"] {
        assert!(first["attributes"][field].is_string(), "{first}");
    }
    assert_eq!(first["attributes"]["source"]["pointer"], "/data/attributes/profiles/data/1/attributes/email");
    assert_eq!(first["attributes"]["original_payload"], profile(1));
    let next = page["links"]["next"].as_str().expect("a second page");
    let next = next.strip_prefix(&fake.base_url()).unwrap().to_string();
    let (_, _, second) = answer(get(&fake, &next)).await;
    assert_eq!(second["data"][0]["attributes"]["original_payload"], profile(3));
    assert!(second["links"]["next"].is_null(), "{second}");
    let (status, _, b) = answer(get(&fake, &format!("{JOBS}/{id}/import-errors?page%5Bsize%5D=101"))).await;
    assert_error(status, &b, 400, None);
}

#[tokio::test]
async fn a_cancelled_job_stores_nothing() {
    let fake = fake_with(quick()).await;
    fake.cancel_next_job();
    let (_, _, body) = answer(post_raw(&fake, job((0..2).map(profile).collect()).to_string())).await;
    let id = body["data"]["id"].as_str().unwrap().to_string();
    wait_until(&fake, &format!("{JOBS}/{id}"), "cancelled").await;
    assert!(fake.profiles().is_empty());
    // Only the next job was cancelled.
    let (_, _, body) = answer(post_raw(&fake, job((0..2).map(profile).collect()).to_string())).await;
    let id = body["data"]["id"].as_str().unwrap().to_string();
    wait_until(&fake, &format!("{JOBS}/{id}"), "complete").await;
    assert_eq!(fake.profiles().len(), 2);
}

#[tokio::test]
async fn creating_and_reading_jobs_are_rate_limited_separately() {
    let fake = fake_with(
        quick()
            .with_bulk_jobs_limit(FakeRateLimit::per_second_and_minute(2, 150))
            .with_bulk_job_reads_limit(FakeRateLimit::per_second_and_minute(3, 150)),
    )
    .await;
    let body = job(vec![profile(0)]).to_string();
    let mut statuses = Vec::new();
    let mut id = String::new();
    for _ in 0..3 {
        let (status, retry_after, b) = answer(post_raw(&fake, body.clone())).await;
        if status == 202 {
            id = b["data"]["id"].as_str().unwrap().to_string();
        }
        statuses.push((status, retry_after));
    }
    // Fixed one-second windows: the third in the same window is throttled (a window may end mid-loop).
    if statuses[2].0 == 429 {
        assert_eq!(statuses[2].1.as_deref(), Some("1"));
    }
    assert!(statuses.iter().filter(|(s, _)| *s == 202).count() >= 2, "{statuses:?}");
    let mut reads = Vec::new();
    for _ in 0..4 {
        reads.push(answer(get(&fake, &format!("{JOBS}/{id}"))).await.0);
    }
    assert!(reads.contains(&200), "{reads:?}");
    assert!(reads.iter().all(|s| *s == 200 || *s == 429), "{reads:?}");
}
