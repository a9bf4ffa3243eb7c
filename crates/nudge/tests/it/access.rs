//! The admin API's access control over real HTTP: every route of the table × every role, requests without a
//! token or with a bad or revoked one, the audit trail of refusals and changes (which never holds a token),
//! and the loopback restriction.

use crate::*;
use nudge::access::{API_ROUTES, ApiRoute, Role, allows, hash_token};
use nudge::http::AUDIT_TRACE_HEADER;
use nudge_model::{AuditRecord, AuditStage, TraceId};

/// A route's path with its parameters filled in.
fn concrete(route: &ApiRoute) -> String {
    route
        .path
        .replace("{trace_id}", &TraceId::new().to_string())
        .replace("{customer_id}", "shopify:880012")
        .replace("{id}", "17")
}

async fn call(t: &TestApp, method: &str, path: &str, auth: Option<&str>) -> reqwest::Response {
    let url = format!("{}{path}", t.base);
    let mut req = match method {
        "GET" => t.http.get(url),
        "POST" => t.http.post(url).json(&serde_json::json!({})),
        other => panic!("no {other} routes"),
    };
    if let Some(a) = auth {
        req = req.header("authorization", a);
    }
    req.send().await.unwrap()
}

/// The audit record a response names in its trace header.
async fn audited(t: &TestApp, resp: &reqwest::Response) -> AuditRecord {
    let trace: TraceId = resp
        .headers()
        .get(AUDIT_TRACE_HEADER)
        .unwrap_or_else(|| panic!("{} {} names no audit record", resp.status(), resp.url()))
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    let view = t.app.store().trace(trace).await.unwrap().expect("the audited trace exists");
    assert_eq!(view.terminal, None, "an access is not a delivery");
    assert_eq!(view.records.len(), 1);
    let r = view.records.into_iter().next().unwrap();
    assert_eq!(r.stage, AuditStage::ApiAccess);
    assert_eq!(r.customer, None);
    r
}

async fn error_of(resp: reqwest::Response) -> String {
    let v: serde_json::Value = resp.json().await.expect("a JSON error body");
    v["error"].as_str().expect("an `error` string").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_answers_every_role_as_the_matrix_says() {
    let t = spawn_app(|_| {}).await;
    let mut tokens = Vec::new();
    for role in Role::ALL {
        tokens.push((role, api_token(&t, role.as_str(), role).await));
    }
    let mut secrets: Vec<String> = tokens.iter().map(|(_, tok)| tok.clone()).collect();
    secrets.extend(tokens.iter().map(|(_, tok)| hash_token(tok)));
    let clean = |r: &AuditRecord| {
        let text = r.detail.to_string();
        for s in &secrets {
            assert!(!text.contains(s.as_str()), "a token or its hash in the audit trail: {text}");
        }
    };

    for route in API_ROUTES {
        let path = concrete(route);
        for (role, token) in &tokens {
            let resp = call(&t, route.method, &path, Some(&format!("Bearer {token}"))).await;
            let status = resp.status().as_u16();
            let what = format!("{role} × {} {}", route.method, route.path);
            if allows(*role, route.permission) {
                assert!(status != 401 && status != 403, "{what}: allowed, got {status}");
                if route.method == "POST" {
                    // A permitted change is audited, attributed to the token's name.
                    let r = audited(&t, &resp).await;
                    assert_eq!(r.detail["outcome"], "allowed", "{what}: {}", r.detail);
                    assert_eq!(r.detail["token_name"], role.as_str());
                    assert_eq!(r.detail["status"], status);
                    clean(&r);
                } else {
                    assert!(
                        resp.headers().get(AUDIT_TRACE_HEADER).is_none(),
                        "{what}: reads are not audited"
                    );
                }
            } else {
                assert_eq!(status, 403, "{what}: refused");
                let r = audited(&t, &resp).await;
                assert_eq!(r.detail["outcome"], "denied");
                assert_eq!(r.detail["status"], 403);
                assert_eq!(r.detail["method"], route.method);
                // A customer's key in the path is personal data: the audit shows the route's template.
                let shown = if route.path.contains("{customer_id}") { route.path } else { path.as_str() };
                assert_eq!(r.detail["path"], shown);
                assert_eq!(r.detail["token_name"], role.as_str());
                assert_eq!(r.detail["role"], role.as_str());
                assert_eq!(r.detail["permission"], route.permission.as_str());
                clean(&r);
                let msg = error_of(resp).await;
                assert!(msg.contains(route.permission.as_str()), "{what}: {msg}");
            }
        }
        // No token, a malformed header, an unknown token: 401 with a challenge, audited.
        for (auth, reason) in [
            (None, "missing"),
            (Some("Basic dXNlcjpwYXNz".to_string()), "malformed"),
            (Some(format!("Bearer {}x", tokens[4].1)), "unknown"),
            (Some("Bearer nudge_0000".to_string()), "unknown"),
        ] {
            let resp = call(&t, route.method, &path, auth.as_deref()).await;
            assert_eq!(resp.status(), 401, "{} {path} with {reason} credentials", route.method);
            let challenge = resp.headers().get("www-authenticate").expect("a challenge").to_str().unwrap();
            assert!(challenge.starts_with("Bearer"), "{challenge}");
            let r = audited(&t, &resp).await;
            assert_eq!(
                (r.detail["outcome"].as_str(), r.detail["status"].as_u64()),
                (Some("denied"), Some(401))
            );
            assert!(r.detail["reason"].as_str().unwrap().contains(reason), "{}", r.detail);
            assert!(r.detail.get("token_name").is_none(), "{}", r.detail);
            clean(&r);
            assert!(!error_of(resp).await.is_empty());
        }
    }

    // The scheme is case-insensitive; the two routes served today answer as they should.
    let admin = &tokens[4].1;
    let trace = TraceId::new();
    let resp = call(&t, "GET", &format!("/api/audit/events/{trace}"), Some(&format!("bEaReR {admin}"))).await;
    assert_eq!(resp.status(), 404, "an unknown trace");
    assert!(error_of(resp).await.contains("no trace"));
    let resp = call(&t, "GET", "/api/audit/customers/shopify:880012", Some(&format!("Bearer {admin}"))).await;
    assert_eq!(resp.status(), 200);

    // Unknown routes are 404 once the token is checked, 401 before; a known path with another method 405.
    assert_eq!(call(&t, "GET", "/api/nothing/here", Some(&format!("Bearer {admin}"))).await.status(), 404);
    assert_eq!(call(&t, "GET", "/api/nothing/here", None).await.status(), 401);
    assert_eq!(call(&t, "POST", "/api/flows", Some(&format!("Bearer {admin}"))).await.status(), 405);
    assert_eq!(call(&t, "POST", "/api/flows", None).await.status(), 401);
    // Outside /api nothing changes.
    assert_eq!(t.http.get(format!("{}/healthz", t.base)).send().await.unwrap().status(), 200);

    // A revoked token is refused from the next request on.
    let viewer = &tokens[0].1;
    assert_eq!(call(&t, "GET", "/api/flows", Some(&format!("Bearer {viewer}"))).await.status(), 200);
    t.app.store().revoke_token(nudge_store::TokenRef::Name("viewer".into())).await.unwrap();
    let resp = call(&t, "GET", "/api/flows", Some(&format!("Bearer {viewer}"))).await;
    assert_eq!(resp.status(), 401);
    assert!(audited(&t, &resp).await.detail["reason"].as_str().unwrap().contains("revoked"));
    assert_eq!(error_of(resp).await, "unknown or revoked token");

    // Tokens that were used have a last use (recorded off the request's path).
    let used = eventually(5, async || {
        t.app.store().list_tokens().await.unwrap().iter().all(|tok| tok.last_used_at_ms.is_some())
    })
    .await;
    assert!(used, "{:?}", t.app.store().list_tokens().await.unwrap());
    t.app.shutdown().await;
}

/// Without `server.admin_from_any_address` a non-loopback peer is refused even with an admin token (and the
/// refusal is audited); with it, the token decides.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn non_loopback_peers_need_admin_from_any_address() {
    // The machine's address on its default route, if it has one (no packet is sent).
    let local = std::net::UdpSocket::bind("0.0.0.0:0")
        .and_then(|s| s.connect("192.0.2.123:9").map(|_| s))
        .and_then(|s| s.local_addr())
        .map(|a| a.ip());
    let ip = match local {
        Ok(ip) if !ip.is_loopback() && !ip.is_unspecified() => ip,
        other => {
            eprintln!("skipped: no non-loopback address to test from ({other:?})");
            return;
        }
    };
    for any in [false, true] {
        let t = spawn_app_on("0.0.0.0:0", |c| c.server.admin_from_any_address = any).await;
        let token = api_token(&t, "ops", Role::Admin).await;
        let url = format!("http://{ip}:{}/api/audit/customers/shopify:1", t.app.addr.port());
        let resp = t.http.get(&url).bearer_auth(&token).send().await.unwrap();
        if any {
            assert_eq!(resp.status(), 200);
        } else {
            assert_eq!(resp.status(), 403);
            let r = audited(&t, &resp).await;
            assert_eq!(r.detail["peer"], ip.to_string());
            assert!(error_of(resp).await.contains("localhost"));
        }
        // Loopback is served either way.
        assert_eq!(api_get(&t, "/api/audit/customers/shopify:1", &token).await.status(), 200);
        t.app.shutdown().await;
    }
}

/// `GET /api/flows` shows the running set to a viewer: without `[[flows]]`, the two built-in flows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_running_flows_are_listed_to_a_viewer() {
    let t = spawn_app(|_| {}).await;
    let viewer = api_token(&t, "viewer", Role::Viewer).await;
    let resp = api_get(&t, "/api/flows", &viewer).await;
    assert_eq!(resp.status(), 200);
    let doc: serde_json::Value = resp.json().await.unwrap();
    assert_eq!(doc["version"], t.app.flows.current().version.as_str());
    assert_eq!(doc["builtin"], true, "{doc}");
    let flows = doc["flows"].as_array().unwrap();
    let names: Vec<&str> = flows.iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["profile_sync", "checkout_abandoned"]);
    let sync = &flows[0];
    assert_eq!((sync["trigger"].as_str(), sync["mode"].as_str()), (Some("state_changed"), Some("live")));
    assert_eq!(sync["actions"][0]["type"], "sync_profile");
    assert_eq!(sync["actions"][0]["destination"], "klaviyo");
    let abandoned = &flows[1];
    assert_eq!(abandoned["trigger"], "checkout_abandoned");
    assert_eq!(abandoned["actions"][0]["metric"], "AI Checkout Abandoned");
    for key in ["when", "holdout_percent", "frequency_cap", "baseline"] {
        assert!(abandoned.get(key).is_some(), "{key} missing in {abandoned}");
    }
    // Without a token: 401, and the answer tells nothing about the flows.
    let resp = t.http.get(format!("{}/api/flows", t.base)).send().await.unwrap();
    assert_eq!(resp.status(), 401);
    assert!(!resp.text().await.unwrap().contains("profile_sync"));

    // A reload shows at once; a set written by hand is not the built-in one.
    let mut cfg = nudge::config::Config::from_toml("", &Default::default()).unwrap();
    cfg.destinations.klaviyo = Some(nudge_deliver::klaviyo::KlaviyoConfig::new("pk_test"));
    cfg.flows = Some(vec![
        serde_json::from_value(serde_json::json!({
            "name": "winback", "trigger": "order_placed", "mode": "shadow",
            "when": "customer.orders_count >= 2",
            "actions": [{ "type": "track_event", "destination": "klaviyo", "metric": "AI Winback" }],
        }))
        .unwrap(),
    ]);
    let version = t.app.reload_flows(&cfg).unwrap().version;
    let doc: serde_json::Value = api_get(&t, "/api/flows", &viewer).await.json().await.unwrap();
    assert_eq!(doc["version"], version.as_str());
    assert_eq!(doc["builtin"], false);
    assert_eq!(doc["flows"][0]["mode"], "shadow");
    assert_eq!(doc["flows"][0]["when"], "customer.orders_count >= 2");
    t.app.shutdown().await;
}
