//! The OpenAPI document (`GET /api/openapi.json`) against the route table, the router and the live answers:
//! the three name the same routes with the same methods, every operation says what it needs and what its
//! errors look like, and on a seeded store every route's answer has a status the document lists and a body
//! its schema accepts.

use crate::*;
use nudge::access::{API_ROUTES, Role};
use nudge_ingest::shopify::fixtures::{CustomerFixture, LineItemFixture, OrderFixture};
use nudge_testkit::shopify_sender::Delivery;
use serde_json::{Value, json};
use std::collections::BTreeSet;
use time::OffsetDateTime;

const METHODS: [&str; 8] = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

fn document() -> Value {
    serde_json::to_value(nudge::openapi::document()).unwrap()
}

/// Every (METHOD, path) the document describes.
fn documented(doc: &Value) -> BTreeSet<(String, String)> {
    let mut out = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for m in METHODS {
            if item.get(m).is_some() {
                out.insert((m.to_uppercase(), path.clone()));
            }
        }
    }
    out
}

fn diff(a: &BTreeSet<(String, String)>, b: &BTreeSet<(String, String)>) -> Vec<String> {
    a.difference(b).map(|(m, p)| format!("{m} {p}")).collect()
}

#[test]
fn the_document_the_route_table_and_the_router_name_the_same_routes() {
    let doc = document();
    let in_doc = documented(&doc);
    let in_table: BTreeSet<(String, String)> =
        API_ROUTES.iter().map(|r| (r.method.to_string(), r.path.to_string())).collect();
    assert_eq!(in_table.len(), API_ROUTES.len(), "a route is in the table twice");
    let served_list = nudge::http::served_api_routes();
    let served: BTreeSet<(String, String)> =
        served_list.iter().map(|(m, p)| (m.to_string(), p.clone())).collect();
    assert_eq!(served.len(), served_list.len(), "the router adds a route twice");

    assert!(
        diff(&in_table, &in_doc).is_empty(),
        "in the table, not documented: {:?}",
        diff(&in_table, &in_doc)
    );
    assert!(
        diff(&in_doc, &in_table).is_empty(),
        "documented, not in the table: {:?}",
        diff(&in_doc, &in_table)
    );
    assert!(diff(&in_table, &served).is_empty(), "in the table, not served: {:?}", diff(&in_table, &served));
    assert!(diff(&served, &in_table).is_empty(), "served, not in the table: {:?}", diff(&served, &in_table));
}

#[test]
fn every_operation_says_what_it_needs_and_how_it_fails() {
    let doc = document();
    assert_eq!(doc["openapi"], "3.1.0");
    assert_eq!(doc["info"]["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(doc["security"], json!([{ "bearer": [] }]));
    let scheme = &doc["components"]["securitySchemes"]["bearer"];
    assert_eq!((scheme["type"].as_str(), scheme["scheme"].as_str()), (Some("http"), Some("bearer")));
    let error_ref = json!({ "$ref": "#/components/schemas/ApiErrorBody" });
    let error_schema = &doc["components"]["schemas"]["ApiErrorBody"];
    assert_eq!(error_schema["required"], json!(["error"]), "{error_schema}");

    for (method, path) in documented(&doc) {
        let op = &doc["paths"][&path][method.to_lowercase()];
        let what = format!("{method} {path}");
        assert!(op["summary"].as_str().is_some_and(|s| !s.is_empty()), "{what}: no summary");
        assert!(op["tags"].as_array().is_some_and(|t| !t.is_empty()), "{what}: no tag");
        let responses = op["responses"].as_object().unwrap_or_else(|| panic!("{what}: no responses"));
        assert!(
            responses.keys().any(|s| s.starts_with('2')),
            "{what}: no success answer: {:?}",
            responses.keys()
        );
        for status in ["401", "403", "503"] {
            assert!(responses.contains_key(status), "{what}: the guard's {status} is not documented");
        }
        for (status, r) in responses {
            let schema = &r["content"]["application/json"]["schema"];
            assert!(schema.is_object(), "{what} {status}: no JSON body described");
            if !status.starts_with('2') {
                let is_error = *schema == error_ref || schema == error_schema;
                assert!(is_error, "{what} {status}: an error answer is not ApiErrorBody: {schema}");
            }
        }
        // Each `{name}` of the path is a documented path parameter, and nothing else is.
        let named: BTreeSet<&str> =
            path.split('/').filter_map(|s| s.strip_prefix('{').and_then(|s| s.strip_suffix('}'))).collect();
        let params: BTreeSet<&str> = op["parameters"]
            .as_array()
            .map(|ps| ps.iter().filter(|p| p["in"] == "path").filter_map(|p| p["name"].as_str()).collect())
            .unwrap_or_default();
        assert_eq!(named, params, "{what}: path parameters");
    }
    // Every reference resolves.
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        assert!(resolve(&doc, &r).is_some(), "`{r}` does not resolve");
    }
}

fn collect_refs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            if let Some(Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|v| collect_refs(v, out));
        }
        Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

fn resolve<'a>(doc: &'a Value, r: &str) -> Option<&'a Value> {
    doc.pointer(r.strip_prefix('#')?).filter(|v| !v.is_null())
}

/// Checks `v` against `schema` (the JSON Schema subset the document uses: `$ref`, `type` (one or a list),
/// `properties`, `required`, `additionalProperties`, `items`, `enum`, `oneOf`/`anyOf`/`allOf`,
/// `minimum`/`maximum`); the problems found, with where.
fn check(doc: &Value, schema: &Value, v: &Value, at: &str, problems: &mut Vec<String>) {
    if let Some(r) = schema.get("$ref").and_then(Value::as_str) {
        match resolve(doc, r) {
            Some(s) => check(doc, s, v, at, problems),
            None => problems.push(format!("{at}: `{r}` does not resolve")),
        }
        return;
    }
    let passes = |s: &Value| {
        let mut p = Vec::new();
        check(doc, s, v, at, &mut p);
        p.is_empty()
    };
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        all.iter().for_each(|s| check(doc, s, v, at, problems));
    }
    if let Some(one) = schema.get("oneOf").and_then(Value::as_array) {
        let n = one.iter().filter(|s| passes(s)).count();
        if n != 1 {
            problems.push(format!("{at}: {n} of the oneOf schemas accept {v}"));
        }
    }
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array)
        && !any.iter().any(passes)
    {
        problems.push(format!("{at}: none of the anyOf schemas accept {v}"));
    }
    if let Some(t) = schema.get("type") {
        let types: Vec<&str> = match t {
            Value::String(s) => vec![s.as_str()],
            Value::Array(a) => a.iter().filter_map(Value::as_str).collect(),
            _ => vec![],
        };
        let fits = |t: &str| match t {
            "null" => v.is_null(),
            "boolean" => v.is_boolean(),
            "string" => v.is_string(),
            "array" => v.is_array(),
            "object" => v.is_object(),
            "number" => v.is_number(),
            "integer" => v.is_i64() || v.is_u64(),
            _ => true,
        };
        if !types.iter().any(|t| fits(t)) {
            problems.push(format!("{at}: {v} is not of type {t}"));
            return;
        }
    }
    if let Some(e) = schema.get("enum").and_then(Value::as_array)
        && !e.contains(v)
    {
        problems.push(format!("{at}: {v} is not one of {e:?}"));
    }
    if let Some(n) = v.as_f64() {
        if schema.get("minimum").and_then(Value::as_f64).is_some_and(|m| n < m) {
            problems.push(format!("{at}: {n} is below the minimum"));
        }
        if schema.get("maximum").and_then(Value::as_f64).is_some_and(|m| n > m) {
            problems.push(format!("{at}: {n} is above the maximum"));
        }
    }
    if let Value::Object(obj) = v {
        for key in schema.get("required").and_then(Value::as_array).into_iter().flatten() {
            let key = key.as_str().unwrap_or_default();
            if !obj.contains_key(key) {
                problems.push(format!("{at}: `{key}` is missing"));
            }
        }
        let props = schema.get("properties").and_then(Value::as_object);
        for (k, field) in obj {
            match props.and_then(|p| p.get(k)) {
                Some(s) => check(doc, s, field, &format!("{at}.{k}"), problems),
                None => match schema.get("additionalProperties") {
                    Some(Value::Bool(false)) => problems.push(format!("{at}: `{k}` is not allowed")),
                    Some(s @ Value::Object(_)) => check(doc, s, field, &format!("{at}.{k}"), problems),
                    _ => {}
                },
            }
        }
    }
    if let (Value::Array(items), Some(s)) = (v, schema.get("items")) {
        for (i, item) in items.iter().enumerate() {
            check(doc, s, item, &format!("{at}[{i}]"), problems);
        }
    }
}

#[test]
fn the_checker_refuses_what_a_schema_does_not_allow() {
    // The validator the live test relies on must be able to fail.
    let doc = document();
    let schema = json!({ "$ref": "#/components/schemas/Decided" });
    let mut p = Vec::new();
    check(&doc, &schema, &json!({ "id": 1, "status": "approved", "decided_by": "token:x" }), "$", &mut p);
    assert!(p.is_empty(), "{p:?}");
    for bad in [
        json!({ "status": "approved", "decided_by": "token:x" }),
        json!({ "id": "1", "status": "approved", "decided_by": "token:x" }),
        json!({ "id": 1, "status": null, "decided_by": "token:x" }),
        json!([]),
    ] {
        let mut p = Vec::new();
        check(&doc, &schema, &bad, "$", &mut p);
        assert!(!p.is_empty(), "{bad} passed");
    }
    let mut p = Vec::new();
    let list = json!({ "$ref": "#/components/schemas/ApprovalList" });
    check(&doc, &list, &json!({ "approvals": [{ "id": 1 }], "limit": 1 }), "$", &mut p);
    assert!(p.iter().any(|p| p.contains("flow_version")), "{p:?}");
}

fn order(id: u64, cust: u64, price: &str) -> OrderFixture {
    let c = CustomerFixture::new(cust, Some(&format!("c{cust}@example.org")), OffsetDateTime::now_utc())
        .consent(Some("subscribed"));
    let mut o = OrderFixture::new(id, OffsetDateTime::now_utc()).customer(c).line_item(LineItemFixture::new(
        9_100_000_001,
        "Organic Tee",
        1,
        price,
    ));
    o.buyer_accepts_marketing = true;
    o
}

fn flows() -> Vec<nudge_policy::flows::FlowSpec> {
    serde_json::from_value(json!([
        { "name": "held", "trigger": "order_placed", "mode": "approval",
          "actions": [{ "type": "track_event", "destination": "klaviyo", "metric": "AI Held" }] },
        { "name": "big_spend", "trigger": "order_placed", "mode": "shadow",
          "when": "event.value >= 100.0", "baseline": "event.value >= 50.0",
          "actions": [{ "type": "track_event", "destination": "klaviyo", "metric": "AI Big Spend" }] },
        { "name": "thanks", "trigger": "order_placed", "holdout_percent": 50,
          "actions": [{ "type": "track_event", "destination": "klaviyo", "metric": "AI Thanks" }] },
    ]))
    .unwrap()
}

/// The request the live test makes on a route: the path with its parameters filled in, and a body.
fn request_for(method: &str, template: &str, trace: &str, approvals: &[i64]) -> (String, Option<Value>) {
    let customer = "shopify:9001";
    let path = template.replace("{trace_id}", trace).replace("{customer_id}", customer);
    match (method, template) {
        ("POST", "/api/approvals/{id}/approve") => (path.replace("{id}", &approvals[0].to_string()), None),
        ("POST", "/api/approvals/{id}/reject") => (path.replace("{id}", &approvals[1].to_string()), None),
        ("POST", "/api/approvals/bulk") => (path, Some(json!({ "flow": "held", "decision": "approve" }))),
        ("POST", "/api/privacy/erase") => (path, Some(json!({ "customer": "shopify:9006" }))),
        ("POST", "/api/segments/proposals/{id}/adopt") => {
            (path.replace("{id}", "1-0"), Some(json!({ "name": "loyal" })))
        }
        ("POST", "/api/flows/reload") => (path, None),
        ("GET", "/api/reports/shadow") => (format!("{path}?flow=big_spend&partial=true"), None),
        ("GET", "/api/reports/lift") => (format!("{path}?flow=thanks&partial=true"), None),
        ("GET", "/api/approvals") => (format!("{path}?limit=50"), None),
        ("GET", "/api/privacy/status") => (format!("{path}?customer=shopify:9006"), None),
        ("GET", "/api/campaigns/hypotheses") => (format!("{path}?flow=thanks"), None),
        ("GET", "/api/digest") => (format!("{path}?since=1d"), None),
        ("GET", _) if !template.contains("{id}") => (path, None),
        _ => panic!("the live test makes no request on {method} {template}: add one"),
    }
}

/// On a seeded store, every route (the changes first, then the reads) answers with a status the document
/// lists for it and a body that status's schema accepts; the served document is the document.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_as_the_document_says() {
    let t = spawn_app(|c| c.flows = Some(flows())).await;
    let admin = api_token(&t, "ops", Role::Admin).await;
    let mut trace = String::new();
    for c in 1..=6u64 {
        let price = if c % 2 == 0 { "150.00" } else { "60.00" };
        let delivery = Delivery::new("orders/create", order(70_000 + c, 9000 + c, price).to_bytes());
        let r = t.sender.send(&delivery).await.unwrap();
        assert_eq!(r.status, 200);
        let v: Value = serde_json::from_slice(&r.body).unwrap();
        trace = v["trace_id"].as_str().unwrap().to_string();
    }
    assert!(t.app.wait_idle(Duration::from_secs(20)).await);
    let listed: Value =
        api_get(&t, "/api/approvals?flow=held&status=pending", &admin).await.json().await.unwrap();
    let approvals: Vec<i64> =
        listed["approvals"].as_array().unwrap().iter().map(|a| a["id"].as_i64().unwrap()).collect();
    assert!(approvals.len() >= 3, "the approval flow holds its decisions: {listed}");

    let doc = document();
    let mut routes: Vec<_> = API_ROUTES.iter().collect();
    routes.sort_by_key(|r| r.method != "POST");
    let mut problems = Vec::new();
    for route in routes {
        let (path, body) = request_for(route.method, route.path, &trace, &approvals);
        let url = format!("{}{path}", t.base);
        let req = if route.method == "POST" { t.http.post(url) } else { t.http.get(url) };
        let req = match body {
            Some(b) => req.json(&b),
            None => req,
        };
        let resp = req.bearer_auth(&admin).send().await.unwrap();
        let status = resp.status().as_u16().to_string();
        let content_type =
            resp.headers().get("content-type").map(|v| v.to_str().unwrap().to_string()).unwrap_or_default();
        let text = resp.text().await.unwrap();
        let what = format!("{} {path} → {status}", route.method);
        let Some(documented) =
            doc["paths"][route.path][route.method.to_lowercase()]["responses"].get(&status)
        else {
            problems.push(format!("{what}: status not documented ({text})"));
            continue;
        };
        assert!(content_type.starts_with("application/json"), "{what}: {content_type}");
        let body: Value = serde_json::from_str(&text).unwrap_or_else(|e| panic!("{what}: {e}: {text}"));
        check(&doc, &documented["content"]["application/json"]["schema"], &body, &what, &mut problems);
        eprintln!("{what}");
    }
    assert!(problems.is_empty(), "answers the document does not describe:\n{}", problems.join("\n"));

    // What the route serves is the document; without a token nothing of it is told.
    let served: Value = api_get(&t, "/api/openapi.json", &admin).await.json().await.unwrap();
    assert_eq!(served, doc);
    let viewer = api_token(&t, "viewer", Role::Viewer).await;
    assert_eq!(api_get(&t, "/api/openapi.json", &viewer).await.status(), 200);
    let anonymous = t.http.get(format!("{}/api/openapi.json", t.base)).send().await.unwrap();
    assert_eq!(anonymous.status(), 401);
    t.app.shutdown().await;
}
