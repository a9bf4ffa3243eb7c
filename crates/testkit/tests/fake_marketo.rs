//! The fake Marketo must refuse every call the real API would refuse (contract tests 1.1–1.10), so that a
//! wrong client fails tests. These tests talk to it with raw HTTP, bypassing nudge's own client.

use nudge_testkit::fake_marketo::{DEFAULT_ACTIVITY_TYPE_ID, DEFAULT_CLIENT_ID, DEFAULT_CLIENT_SECRET};
use nudge_testkit::{FakeMarketo, FakeMarketoConfig, FakeMarketoHandle, MarketoMode, SkipSpelling};
use serde_json::{Value, json};
use std::time::Duration;

fn http() -> reqwest::Client {
    nudge_testkit::ensure_crypto_provider();
    reqwest::Client::builder().timeout(Duration::from_secs(30)).build().unwrap()
}

async fn fake(config: FakeMarketoConfig) -> FakeMarketoHandle {
    FakeMarketo::start(config).await.unwrap()
}

fn token_url(fake: &FakeMarketoHandle, secret: &str) -> String {
    format!(
        "{}/identity/oauth/token?grant_type=client_credentials&client_id={DEFAULT_CLIENT_ID}&client_secret={secret}",
        fake.base_url()
    )
}

async fn json_of(resp: reqwest::Response) -> (u16, Value) {
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::String(text)))
}

async fn fetch_token(fake: &FakeMarketoHandle) -> (String, u64) {
    let (status, body) =
        json_of(http().get(token_url(fake, DEFAULT_CLIENT_SECRET)).send().await.unwrap()).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["token_type"], "bearer");
    assert!(body["scope"].is_string());
    (body["access_token"].as_str().unwrap().to_string(), body["expires_in"].as_u64().unwrap())
}

async fn post(fake: &FakeMarketoHandle, token: &str, path: &str, body: &Value) -> (u16, Value) {
    json_of(
        http()
            .post(format!("{}{path}", fake.base_url()))
            .bearer_auth(token)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap(),
    )
    .await
}

fn code(answer: &Value) -> Option<&str> {
    answer["errors"][0]["code"].as_str()
}

fn sync(records: Vec<Value>) -> Value {
    json!({"action": "createOrUpdate", "lookupField": "email", "input": records})
}

#[tokio::test]
async fn identity_takes_query_parameters_and_gives_the_same_token_until_it_expires() {
    let fake = fake(FakeMarketoConfig::default().with_token_lifetime(Duration::from_secs(3))).await;
    let (first, left) = fetch_token(&fake).await;
    assert_eq!(left, 3);
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let (again, left) = fetch_token(&fake).await;
    assert_eq!(again, first, "the same token before expiry");
    assert!(left < 3, "with its remaining lifetime: {left}");
    // Credentials in a form body instead of the query are not credentials.
    let form = http()
        .post(format!("{}/identity/oauth/token", fake.base_url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("grant_type=client_credentials&client_id={DEFAULT_CLIENT_ID}&client_secret={DEFAULT_CLIENT_SECRET}"))
        .send()
        .await
        .unwrap();
    assert_eq!(form.status().as_u16(), 400);
    let (status, _) = json_of(http().get(token_url(&fake, "wrong")).send().await.unwrap()).await;
    assert_eq!(status, 401, "bad client credentials");
    let (status, _) =
        json_of(http().post(token_url(&fake, DEFAULT_CLIENT_SECRET)).send().await.unwrap()).await;
    assert_eq!(status, 200, "POST with query parameters works too");

    tokio::time::sleep(Duration::from_millis(2100)).await;
    let (status, answer) =
        post(&fake, &first, "/rest/v1/leads.json", &sync(vec![json!({"email": "a@b.c"})])).await;
    assert_eq!((status, code(&answer)), (200, Some("602")), "expired, inside HTTP 200: {answer}");
    let (fresh, left) = fetch_token(&fake).await;
    assert_ne!(fresh, first);
    assert_eq!(left, 3);
    assert!(fake.requests().iter().all(|r| !r.path.contains(DEFAULT_CLIENT_SECRET)), "the log is redacted");
}

#[tokio::test]
async fn rest_calls_need_a_bearer_header() {
    let fake = fake(FakeMarketoConfig::default()).await;
    let (token, _) = fetch_token(&fake).await;
    let body = sync(vec![json!({"email": "a@b.c"})]);
    let url = format!("{}/rest/v1/leads.json?access_token={token}", fake.base_url());
    let (status, answer) = json_of(
        http()
            .post(url)
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!((status, code(&answer), answer["success"].as_bool()), (200, Some("601"), Some(false)));
    let (_, answer) = post(&fake, "not-a-token", "/rest/v1/leads.json", &body).await;
    assert_eq!(code(&answer), Some("601"));
    let (_, answer) = post(&fake, &token, "/rest/v1/leads.json", &body).await;
    assert_eq!(answer["success"], true, "{answer}");
    assert_eq!(answer["result"][0]["status"], "created");
    assert!(fake.leads().iter().all(|l| l.email() == Some("a@b.c")));
    assert_eq!(fake.leads().len(), 1, "only the bearer call stored");
}

#[tokio::test]
async fn sync_leads_enforces_its_contract() {
    let fake = fake(FakeMarketoConfig::default().with_fields(&["aiChurnRisk"])).await;
    let (token, _) = fetch_token(&fake).await;
    let too_many: Vec<Value> = (0..301).map(|i| json!({"email": format!("l{i}@b.c")})).collect();
    let (_, answer) = post(&fake, &token, "/rest/v1/leads.json", &sync(too_many)).await;
    assert_eq!((answer["success"].as_bool(), code(&answer)), (Some(false), Some("1003")), "{answer}");
    let exactly: Vec<Value> = (0..300).map(|i| json!({"email": format!("l{i}@b.c")})).collect();
    let (_, answer) = post(&fake, &token, "/rest/v1/leads.json", &sync(exactly)).await;
    assert_eq!(answer["result"].as_array().unwrap().len(), 300);

    let records = vec![
        json!({"email": "lena@example.org", "aiChurnRisk": 0.18}),
        json!({"email": "bad@example.org", "aiChurnRsk": 0.5}),
        json!({"firstName": "No lookup"}),
        json!({"email": "lena@example.org", "firstName": "Lena"}),
    ];
    let (status, answer) = post(&fake, &token, "/rest/v1/leads.json", &sync(records)).await;
    assert_eq!(status, 200);
    let result = answer["result"].as_array().unwrap();
    assert_eq!(result[0]["status"], "created");
    assert_eq!(result[1]["status"], "skipped");
    assert_eq!(result[1]["reasons"][0]["code"], "1006");
    assert_eq!(result[2]["reasons"][0]["code"], "1002");
    assert_eq!((result[3]["status"].as_str(), &result[3]["id"]), (Some("updated"), &result[0]["id"]));
    let lead = fake.lead_by_email("LENA@example.org").unwrap();
    assert_eq!(lead.fields["firstName"], "Lena");
    assert_eq!(lead.fields["aiChurnRisk"], json!(0.18));

    let big = sync(vec![json!({"email": "x@b.c", "firstName": "x".repeat(1_000_001)})]);
    let (status, _) = post(&fake, &token, "/rest/v1/leads.json", &big).await;
    assert_eq!(status, 413);
    let text = http()
        .post(format!("{}/rest/v1/leads.json", fake.base_url()))
        .bearer_auth(&token)
        .header("content-type", "text/plain")
        .body(sync(vec![json!({"email": "x@b.c"})]).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(code(&json_of(text).await.1), Some("612"));
    let broken = http()
        .post(format!("{}/rest/v1/leads.json", fake.base_url()))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body("{\"input\": [")
        .send()
        .await
        .unwrap();
    assert_eq!(code(&json_of(broken).await.1), Some("609"));
    let (_, answer) = json_of(
        http()
            .get(format!("{}/rest/v1/leads.json", fake.base_url()))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code(&answer), Some("1003"), "a lead lookup needs filterType and filterValues");
    let (_, answer) = json_of(
        http()
            .delete(format!("{}/rest/v1/leads.json", fake.base_url()))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(code(&answer), Some("605"));
    let (_, answer) = post(&fake, &token, "/rest/v1/nothing.json", &json!({})).await;
    assert_eq!(code(&answer), Some("610"));
}

#[tokio::test]
async fn describe_lists_the_configured_fields() {
    let fake = fake(FakeMarketoConfig::default().with_fields(&["aiChurnRisk"])).await;
    let (token, _) = fetch_token(&fake).await;
    let (_, answer) = json_of(
        http()
            .get(format!("{}/rest/v1/leads/describe.json", fake.base_url()))
            .bearer_auth(&token)
            .send()
            .await
            .unwrap(),
    )
    .await;
    let names: Vec<&str> =
        answer["result"].as_array().unwrap().iter().map(|f| f["rest"]["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"email") && names.contains(&"aiChurnRisk"), "{names:?}");
    assert!(!names.contains(&"aiChurnRsk"));
}

#[tokio::test]
async fn activities_need_an_approved_type_and_an_existing_lead() {
    let fake = fake(FakeMarketoConfig::default().with_activity_type(100_002, false)).await;
    let (token, _) = fetch_token(&fake).await;
    let (_, answer) =
        post(&fake, &token, "/rest/v1/leads.json", &sync(vec![json!({"email": "a@b.c"})])).await;
    let lead = answer["result"][0]["id"].as_i64().unwrap();
    let activity = |lead: Value, type_id: i64| {
        json!({"leadId": lead, "activityDate": "2026-05-01T10:00:00Z", "activityTypeId": type_id,
               "primaryAttributeValue": "AI Reorder Window", "attributes": [{"apiName": "orderId", "value": "1"}]})
    };
    let mut no_attributes = activity(json!(lead), DEFAULT_ACTIVITY_TYPE_ID);
    no_attributes.as_object_mut().unwrap().remove("attributes");
    let input = vec![
        activity(json!(lead), DEFAULT_ACTIVITY_TYPE_ID),
        activity(json!(lead), 100_002),
        activity(json!(lead), 999),
        activity(json!(lead + 1000), DEFAULT_ACTIVITY_TYPE_ID),
        activity(json!(lead.to_string()), DEFAULT_ACTIVITY_TYPE_ID),
        no_attributes,
    ];
    let (_, answer) =
        post(&fake, &token, "/rest/v1/activities/external.json", &json!({"input": input})).await;
    let result = answer["result"].as_array().unwrap();
    assert_eq!(result[0]["status"], "added");
    assert!(result[0]["marketoGUID"].is_string());
    let codes: Vec<&str> = result[1..].iter().map(|r| r["errors"][0]["code"].as_str().unwrap()).collect();
    assert_eq!(codes, vec!["1003", "1004", "1004", "1003", "1002"]);
    assert!(result[1]["errors"][0]["message"].as_str().unwrap().contains("not approved"));
    assert_eq!(fake.activities().len(), 1);
    assert_eq!(fake.activities()[0].lead_id, lead);
    let too_many: Vec<Value> = (0..301).map(|_| activity(json!(lead), DEFAULT_ACTIVITY_TYPE_ID)).collect();
    let (_, answer) =
        post(&fake, &token, "/rest/v1/activities/external.json", &json!({"input": too_many})).await;
    assert_eq!(code(&answer), Some("1003"));
    assert_eq!(fake.activities().len(), 1);
}

#[tokio::test]
async fn rate_quota_and_concurrency_limits_answer_606_607_615() {
    let fake = fake(FakeMarketoConfig::default().with_rate_limit(3, Duration::from_secs(20))).await;
    let (token, _) = fetch_token(&fake).await;
    let body = sync(vec![json!({"email": "a@b.c"})]);
    for _ in 0..3 {
        assert_eq!(post(&fake, &token, "/rest/v1/leads.json", &body).await.1["success"], true);
    }
    fetch_token(&fake).await; // Identity is not counted.
    assert_eq!(code(&post(&fake, &token, "/rest/v1/leads.json", &body).await.1), Some("606"));

    let quota = FakeMarketo::start(FakeMarketoConfig::default().with_daily_quota(1)).await.unwrap();
    let (t, _) = fetch_token(&quota).await;
    assert_eq!(post(&quota, &t, "/rest/v1/leads.json", &body).await.1["success"], true);
    assert_eq!(code(&post(&quota, &t, "/rest/v1/leads.json", &body).await.1), Some("607"));
    assert_eq!(quota.quota_used(), 1);
    // 601/602 are not counted: a bad token still gets 601, not 607.
    assert_eq!(code(&post(&quota, "bad", "/rest/v1/leads.json", &body).await.1), Some("601"));

    let busy = FakeMarketo::start(FakeMarketoConfig { max_concurrent: Some(2), ..Default::default() })
        .await
        .unwrap();
    let (t, _) = fetch_token(&busy).await;
    busy.set_mode(MarketoMode::Slow(Duration::from_millis(400)));
    let calls: Vec<_> = (0..4)
        .map(|i| {
            let (url, t) = (format!("{}/rest/v1/leads.json", busy.base_url()), t.clone());
            let body = sync(vec![json!({"email": format!("c{i}@b.c")})]).to_string();
            tokio::spawn(async move {
                let resp = http()
                    .post(url)
                    .bearer_auth(t)
                    .header("content-type", "application/json")
                    .body(body)
                    .send()
                    .await
                    .unwrap();
                json_of(resp).await.1
            })
        })
        .collect();
    let mut codes = Vec::new();
    for c in calls {
        codes.push(code(&c.await.unwrap()).map(str::to_string));
    }
    assert_eq!(codes.iter().filter(|c| c.as_deref() == Some("615")).count(), 2, "{codes:?}");
    assert_eq!(busy.max_in_flight_seen(), 4);
}

#[tokio::test]
async fn modes_and_refusals_on_demand() {
    let fake = fake(FakeMarketoConfig::default().with_list(1042)).await;
    let (token, _) = fetch_token(&fake).await;
    let body = sync(vec![json!({"email": "a@b.c"}), json!({"email": "refused@b.c"})]);
    fake.set_mode(MarketoMode::Throttle { count: 1 });
    assert_eq!(code(&post(&fake, &token, "/rest/v1/leads.json", &body).await.1), Some("606"));
    fake.set_mode(MarketoMode::FailCode { code: 611, count: 1 });
    assert_eq!(code(&post(&fake, &token, "/rest/v1/leads.json", &body).await.1), Some("611"));
    fake.set_mode(MarketoMode::FailHttp { status: 502, count: 1 });
    assert_eq!(post(&fake, &token, "/rest/v1/leads.json", &body).await.0, 502);
    assert_eq!(fake.mode(), MarketoMode::Normal);
    assert!(fake.leads().is_empty(), "nothing stored by failed calls");

    for (spelling, key) in [
        (SkipSpelling::Reasons, "reasons"),
        (SkipSpelling::Reason, "reason"),
        (SkipSpelling::Errors, "errors"),
    ] {
        fake.set_skip_spelling(spelling);
        fake.skip_email("Refused@b.c", 1005);
        let (_, answer) = post(&fake, &token, "/rest/v1/leads.json", &body).await;
        let skipped = &answer["result"][1];
        assert_eq!(skipped["status"], "skipped");
        let reason = if key == "reason" { &skipped[key] } else { &skipped[key][0] };
        assert_eq!(reason["code"], "1005", "{answer}");
    }
    fake.clear_skips();
    fake.set_skip_spelling(SkipSpelling::Reasons);
    fake.expire_token();
    assert_eq!(code(&post(&fake, &token, "/rest/v1/leads.json", &body).await.1), Some("602"));

    let (token, _) = fetch_token(&fake).await;
    let lead = fake.lead_by_email("a@b.c").unwrap().id;
    let list = |id: i64| json!({"input": [{"id": id}]});
    let (_, answer) = post(&fake, &token, "/rest/v1/lists/1042/leads.json", &list(lead)).await;
    assert_eq!(answer["result"][0]["status"], "added");
    assert_eq!(fake.list_members(1042), Some(vec![lead]));
    let remove = |id: i64| {
        http()
            .delete(format!("{}/rest/v1/lists/1042/leads.json", fake.base_url()))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(list(id).to_string())
            .send()
    };
    assert_eq!(json_of(remove(lead).await.unwrap()).await.1["result"][0]["status"], "removed");
    assert_eq!(json_of(remove(lead).await.unwrap()).await.1["result"][0]["reasons"][0]["code"], "1015");
    assert_eq!(code(&post(&fake, &token, "/rest/v1/lists/77/leads.json", &list(lead)).await.1), Some("1013"));
}

#[tokio::test]
async fn serve_runs_until_shutdown() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(FakeMarketo::serve(listener, FakeMarketoConfig::default(), async move {
        let _ = stopped.await;
    }));
    let url = format!(
        "http://{addr}/identity/oauth/token?grant_type=client_credentials&client_id={DEFAULT_CLIENT_ID}&client_secret={DEFAULT_CLIENT_SECRET}"
    );
    assert_eq!(http().get(url).send().await.unwrap().status().as_u16(), 200);
    stop.send(()).unwrap();
    tokio::time::timeout(Duration::from_secs(5), task).await.unwrap().unwrap().unwrap();
}
