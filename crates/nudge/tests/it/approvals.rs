//! Approvals end to end: a live flow with `approval.first_n` holds its first decisions, a flow in approval
//! mode holds every one; the admin API approves (sent exactly once), rejects (never sent), in bulk too, and
//! answers 404/409 for unknown or already-decided items.

use crate::*;
use nudge::access::Role;
use nudge_ingest::shopify::fixtures::{CustomerFixture, LineItemFixture, OrderFixture};
use nudge_model::{AuditStage, TerminalState, TraceId};
use nudge_testkit::shopify_sender::Delivery;
use time::OffsetDateTime;

fn order(id: u64, cust: u64) -> OrderFixture {
    let c = CustomerFixture::new(cust, Some(&format!("c{cust}@example.org")), OffsetDateTime::now_utc())
        .consent(Some("subscribed"));
    let mut o = OrderFixture::new(id, OffsetDateTime::now_utc()).customer(c).line_item(LineItemFixture::new(
        9_100_000_001,
        "Organic Tee",
        1,
        "39.95",
    ));
    o.buyer_accepts_marketing = true;
    o
}

fn trace_of(body: &[u8]) -> TraceId {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    v["trace_id"].as_str().unwrap().parse().unwrap()
}

fn flow(extra: &str) -> nudge_policy::flows::FlowSpec {
    serde_json::from_str(&format!(
        r#"{{"name":"first_orders","trigger":"order_placed",
            "actions":[{{"type":"track_event","destination":"klaviyo","metric":"AI First Order"}}]{extra}}}"#
    ))
    .unwrap()
}

async fn terminal(t: &TestApp, trace: TraceId) -> Option<TerminalState> {
    nudge_store::terminal_of(&**t.app.store(), trace).await.unwrap()
}

async fn pending(t: &TestApp, token: &str) -> Vec<serde_json::Value> {
    let r = api_get(t, "/api/approvals?flow=first_orders&status=pending", token).await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    v["approvals"].as_array().unwrap().clone()
}

async fn post(t: &TestApp, path: &str, token: &str, body: Option<serde_json::Value>) -> reqwest::Response {
    let mut req = t.http.post(format!("{}{path}", t.base)).bearer_auth(token);
    if let Some(b) = body {
        req = req.json(&b);
    }
    req.send().await.unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_n_holds_the_first_decisions_then_the_flow_goes_live() {
    let t =
        spawn_app(|c| c.flows = Some(vec![flow(r#","approval":{"first_n":2,"expires_after":"48h"}"#)])).await;
    let marketer = api_token(&t, "mia", Role::Marketer).await;
    let viewer = api_token(&t, "vic", Role::Viewer).await;
    let mut traces = Vec::new();
    for (id, cust) in [(7001, 501), (7002, 502)] {
        let r = t.sender.send(&Delivery::new("orders/create", order(id, cust).to_bytes())).await.unwrap();
        assert_eq!(r.status, 200);
        traces.push(trace_of(&r.body));
    }
    let ok = eventually(10, async || pending(&t, &marketer).await.len() == 2).await;
    assert!(ok, "{}", serde_json::to_string_pretty(&t.app.store().trace(traces[0]).await.unwrap()).unwrap());
    // The third decision goes live: sent at once.
    let r = t.sender.send(&Delivery::new("orders/create", order(7003, 503).to_bytes())).await.unwrap();
    let live = trace_of(&r.body);
    assert!(eventually(10, async || terminal(&t, live).await == Some(TerminalState::Delivered)).await);
    assert_eq!(t.fake.events().len(), 1, "only the live decision was sent: {:?}", t.fake.events());
    // The held ones have no terminal state yet: they wait.
    for tr in &traces {
        assert_eq!(terminal(&t, *tr).await, None);
    }
    let items = pending(&t, &marketer).await;
    let (first, second) = (items[0]["id"].as_i64().unwrap(), items[1]["id"].as_i64().unwrap());
    assert_eq!(items[0]["trace_id"], traces[0].to_string());
    assert_eq!(items[0]["actions"][0]["destination"], "klaviyo");
    let unique_id = items[0]["actions"][0]["action"]["unique_id"].as_str().expect("a unique id").to_string();
    // The actions carry the customer's email: a marketer sees it redacted, a compliance token in full.
    let listed = serde_json::to_string(&items).unwrap();
    assert!(listed.contains("(redacted)") && !listed.contains("@example"), "{listed}");
    let compliance = api_token(&t, "cora", Role::Compliance).await;
    let full = serde_json::to_string(&pending(&t, &compliance).await).unwrap();
    assert!(full.contains("@example"), "{full}");

    // A viewer may list but not decide.
    assert_eq!(post(&t, &format!("/api/approvals/{first}/approve"), &viewer, None).await.status(), 403);
    // Approve the first: 200, sent exactly once; approving it again is a conflict.
    let r = post(&t, &format!("/api/approvals/{first}/approve"), &marketer, None).await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["decided_by"], "token:mia");
    let again = post(&t, &format!("/api/approvals/{first}/approve"), &marketer, None).await;
    assert_eq!(again.status(), 409);
    let e: serde_json::Value = again.json().await.unwrap();
    assert!(e["error"].as_str().unwrap().contains("already approved"), "{e}");
    // Reject the second: never sent; an unknown item is 404 with a JSON error.
    assert_eq!(post(&t, &format!("/api/approvals/{second}/reject"), &marketer, None).await.status(), 200);
    assert_eq!(post(&t, &format!("/api/approvals/{second}/approve"), &marketer, None).await.status(), 409);
    let unknown = post(&t, "/api/approvals/999999/approve", &marketer, None).await;
    assert_eq!(unknown.status(), 404);
    assert!(unknown.json::<serde_json::Value>().await.unwrap()["error"].is_string());

    assert!(eventually(10, async || terminal(&t, traces[0]).await == Some(TerminalState::Delivered)).await);
    assert_eq!(terminal(&t, traces[1]).await, Some(TerminalState::Ignored("approval rejected".into())));
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(t.fake.events().len(), 2, "{:?}", t.fake.events());
    assert_eq!(t.fake.count_events_with_unique_id(&unique_id), 1, "the approved action is sent once");
    // The transitions are audited under the items' traces, with who decided.
    let view = t.app.store().trace(traces[0]).await.unwrap().unwrap();
    let rec = view.records.iter().find(|r| r.stage == AuditStage::Approval).expect("approval audited");
    assert_eq!(rec.detail["by"], "token:mia");
    assert_eq!(rec.detail["status"], "approved");
    assert_eq!(view.records.iter().filter(|r| r.stage == AuditStage::Terminal).count(), 1);
    let decided = view.records.iter().find(|r| r.stage == AuditStage::Decided).unwrap();
    assert_eq!(decided.detail["flows"][0]["status"], "awaiting_approval");
    // Bad filters are refused.
    assert_eq!(api_get(&t, "/api/approvals?status=maybe", &marketer).await.status(), 400);
    t.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn approval_mode_holds_every_decision_and_bulk_approve_sends_each_once() {
    let t = spawn_app(|c| c.flows = Some(vec![flow(r#","mode":"approval""#)])).await;
    let marketer = api_token(&t, "mia", Role::Marketer).await;
    for i in 0..5u64 {
        let r = t
            .sender
            .send(&Delivery::new("orders/create", order(8000 + i, 600 + i).to_bytes()))
            .await
            .unwrap();
        assert_eq!(r.status, 200);
    }
    assert!(eventually(10, async || pending(&t, &marketer).await.len() == 5).await);
    assert!(t.fake.events().is_empty());
    let bad = post(
        &t,
        "/api/approvals/bulk",
        &marketer,
        Some(serde_json::json!({"flow": "first_orders", "decision": "maybe"})),
    )
    .await;
    assert_eq!(bad.status(), 400);
    let r = post(
        &t,
        "/api/approvals/bulk",
        &marketer,
        Some(serde_json::json!({"flow": "first_orders", "decision": "approve"})),
    )
    .await;
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().await.unwrap();
    assert_eq!(v["decided"], 5, "{v}");
    assert!(eventually(10, async || t.fake.events().len() == 5).await, "{:?}", t.fake.events());
    let again = post(
        &t,
        "/api/approvals/bulk",
        &marketer,
        Some(serde_json::json!({"flow": "first_orders", "decision": "approve"})),
    )
    .await;
    assert_eq!(again.json::<serde_json::Value>().await.unwrap()["decided"], 0);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(t.fake.events().len(), 5);
    let stats = t.app.store().stats().await.unwrap();
    assert_eq!(stats.terminal_by_state, vec![("delivered".to_string(), 5)]);
    t.app.shutdown().await;
}

/// A restart keeps the queue and the first_n count: the item waiting before it can be approved after it,
/// and decisions go on counting from the stored items.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_keeps_the_queue_and_the_first_n_count() {
    let spec = flow(r#","approval":{"first_n":2}"#);
    let t = spawn_app(|c| c.flows = Some(vec![spec.clone()])).await;
    let marketer = api_token(&t, "mia", Role::Marketer).await;
    let r = t.sender.send(&Delivery::new("orders/create", order(9001, 701).to_bytes())).await.unwrap();
    let before = trace_of(&r.body);
    assert!(eventually(10, async || pending(&t, &marketer).await.len() == 1).await);
    t.app.shutdown().await;

    // The same data directory and Klaviyo fake, a new server.
    let TestApp { fake, _dir: dir, http, .. } = t;
    let mut cfg = nudge::config::Config::from_toml("", &std::collections::BTreeMap::new()).unwrap();
    cfg.storage.data_dir = dir.path().to_path_buf();
    cfg.storage.durability = nudge_store::sqlite::Durability::Normal;
    cfg.sources.shopify = Some(nudge::config::ShopifyConfig::with_secrets(vec![SECRET.into()]));
    cfg.destinations.klaviyo =
        Some(nudge_deliver::klaviyo::KlaviyoConfig::new(KEY).with_base_url(fake.base_url()));
    cfg.flows = Some(vec![spec]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = nudge::app::run(cfg, listener).await.unwrap();
    let base = format!("http://127.0.0.1:{}", app.addr.port());
    let sender =
        nudge_testkit::shopify_sender::ShopifySender::new(format!("{base}/webhooks/shopify"), SECRET)
            .unwrap();
    let t = TestApp { app, fake, sender, base, http, _dir: dir };

    assert_eq!(pending(&t, &marketer).await.len(), 1, "the queue survives the restart");
    // The second decision still waits (one of two counted before the restart), the third goes live.
    let r = t.sender.send(&Delivery::new("orders/create", order(9002, 702).to_bytes())).await.unwrap();
    let second = trace_of(&r.body);
    assert!(eventually(10, async || pending(&t, &marketer).await.len() == 2).await);
    let r = t.sender.send(&Delivery::new("orders/create", order(9003, 703).to_bytes())).await.unwrap();
    let live = trace_of(&r.body);
    assert!(eventually(10, async || terminal(&t, live).await == Some(TerminalState::Delivered)).await);
    assert_eq!(terminal(&t, second).await, None);
    let first = pending(&t, &marketer).await[0]["id"].as_i64().unwrap();
    assert_eq!(post(&t, &format!("/api/approvals/{first}/approve"), &marketer, None).await.status(), 200);
    assert!(eventually(10, async || terminal(&t, before).await == Some(TerminalState::Delivered)).await);
    assert_eq!(t.fake.events().len(), 2);
    t.app.shutdown().await;
}
