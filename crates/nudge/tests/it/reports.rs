//! Shadow and lift reports end to end: flows with a baseline rule and a holdout group record their
//! decisions; later orders are conversions; the API and the CLI give the same counts, computed per customer,
//! and refuse what they cannot answer. Also the flows reload over the API.

use crate::*;
use nudge::access::Role;
use nudge_ingest::shopify::fixtures::{CustomerFixture, LineItemFixture, OrderFixture};
use nudge_model::CustomerId;
use nudge_testkit::shopify_sender::Delivery;
use time::OffsetDateTime;

const CUSTOMERS: u64 = 24;

fn order(id: u64, cust: u64, price: &str) -> OrderFixture {
    let c = CustomerFixture::new(cust, Some(&format!("r{cust}@example.org")), OffsetDateTime::now_utc())
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

/// The first order's value: it decides each customer's cell of the shadow report.
fn first_price(c: u64) -> &'static str {
    match c % 4 {
        0 => "150.00", // flow yes, rule yes
        1 => "75.00",  // flow no, rule yes
        2 => "20.00",  // flow no, rule no
        _ => "250.00", // flow yes, rule no
    }
}

fn converts(c: u64) -> bool {
    c.is_multiple_of(3)
}

fn flows_toml() -> &'static str {
    r#"
[[flows]]
name = "big_spend"
trigger = "order_placed"
mode = "shadow"
when = "event.value >= 100.0"
baseline = "event.value >= 50.0 && event.value < 200.0"
actions = [ { type = "track_event", destination = "klaviyo", metric = "AI Big Spend" } ]

[[flows]]
name = "thanks"
trigger = "order_placed"
when = "customer.orders_count >= 1"
holdout_percent = 50
actions = [ { type = "track_event", destination = "klaviyo", metric = "AI Thanks" } ]
"#
}

fn flows() -> Vec<nudge_policy::flows::FlowSpec> {
    #[derive(serde::Deserialize)]
    struct F {
        flows: Vec<nudge_policy::flows::FlowSpec>,
    }
    toml::from_str::<F>(flows_toml()).unwrap().flows
}

fn cid(c: u64) -> CustomerId {
    format!("shopify:{c}").parse().unwrap()
}

async fn get_json(t: &TestApp, path: &str, token: &str) -> (u16, serde_json::Value) {
    let r = api_get(t, path, token).await;
    let status = r.status().as_u16();
    (status, r.json().await.unwrap_or(serde_json::Value::Null))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shadow_and_lift_reports_count_customers_and_their_later_orders() {
    let t = spawn_app(|c| c.flows = Some(flows())).await;
    let viewer = api_token(&t, "vic", Role::Viewer).await;
    for c in 1..=CUSTOMERS {
        let r = t
            .sender
            .send(&Delivery::new("orders/create", order(10_000 + c, c, first_price(c)).to_bytes()))
            .await;
        assert_eq!(r.unwrap().status, 200);
    }
    assert!(t.app.wait_idle(Duration::from_secs(20)).await);
    // Second orders, after the first decisions: conversions. Their own decisions are later ones, which do
    // not move a customer's anchor (and at 20.00 say no to both the flow and the rule).
    for c in (1..=CUSTOMERS).filter(|c| converts(*c)) {
        let r =
            t.sender.send(&Delivery::new("orders/create", order(20_000 + c, c, "20.00").to_bytes())).await;
        assert_eq!(r.unwrap().status, 200);
    }
    assert!(t.app.wait_idle(Duration::from_secs(20)).await);

    // Lift: treated and held out as the deterministic holdout splits them.
    let (status, lift) = get_json(&t, "/api/reports/lift?flow=thanks&partial=true", &viewer).await;
    assert_eq!(status, 200, "{lift}");
    assert_eq!(lift["report"], "lift");
    let held: Vec<u64> =
        (1..=CUSTOMERS).filter(|c| nudge_policy::in_holdout("thanks", &cid(*c), 50)).collect();
    let treated: Vec<u64> = (1..=CUSTOMERS).filter(|c| !held.contains(c)).collect();
    assert!(!held.is_empty() && !treated.is_empty(), "the 50 % holdout splits 24 customers");
    let count = |v: &[u64]| v.iter().filter(|c| converts(**c)).count() as u64;
    assert_eq!(lift["treated"]["customers"], treated.len() as u64, "{lift}");
    assert_eq!(lift["treated"]["conversions"], count(&treated), "{lift}");
    assert_eq!(lift["held_out"]["customers"], held.len() as u64, "{lift}");
    assert_eq!(lift["held_out"]["conversions"], count(&held), "{lift}");
    assert_eq!(lift["treated_by_status"]["live"], treated.len() as u64);
    let ci = lift["difference_ci"].as_array().unwrap();
    let d = lift["difference"].as_f64().unwrap();
    assert!(ci[0].as_f64().unwrap() <= d && d <= ci[1].as_f64().unwrap(), "{lift}");
    assert!(lift["verdict"].as_str().unwrap().contains("held-out customers"), "{lift}");
    // Only treated customers were sent anything: one event per order of theirs.
    let sent = t.fake.events().len() as u64;
    assert_eq!(sent, treated.len() as u64 + count(&treated), "held-out customers get nothing");

    // Without partial windows, no 14-day window has closed yet: every customer is pending.
    let (_, closed) = get_json(&t, "/api/reports/lift?flow=thanks", &viewer).await;
    assert_eq!(closed["treated"]["customers"], 0);
    assert_eq!(closed["pending_window"], CUSTOMERS);
    assert!(closed["treated"]["rate"].is_null() && closed["difference_ci"].is_null(), "{closed}");

    // Shadow: the 2×2 by each customer's first order.
    let (status, shadow) =
        get_json(&t, "/api/reports/shadow?flow=big_spend&partial=true&window=7d", &viewer).await;
    assert_eq!(status, 200, "{shadow}");
    let cell = |ai: bool, rule: bool| {
        let c =
            shadow["cells"].as_array().unwrap().iter().find(|c| c["ai"] == ai && c["rule"] == rule).unwrap();
        (c["customers"].as_u64().unwrap(), c["conversions"].as_u64().unwrap())
    };
    let expect = |m: u64| {
        let cs: Vec<u64> = (1..=CUSTOMERS).filter(|c| c % 4 == m).collect();
        (cs.len() as u64, count(&cs))
    };
    assert_eq!(cell(true, true), expect(0), "{shadow}");
    assert_eq!(cell(false, true), expect(1), "{shadow}");
    assert_eq!(cell(false, false), expect(2), "{shadow}");
    assert_eq!(cell(true, false), expect(3), "{shadow}");
    assert_eq!(shadow["customers"], CUSTOMERS);
    assert_eq!(shadow["ai_by_status"]["shadow"], expect(0).0 + expect(3).0, "the flow runs in shadow");
    assert_eq!(shadow["window_ms"], 7 * 86_400_000i64);

    // What the reports refuse, with a JSON error.
    for (path, want) in [
        ("/api/reports/lift?flow=nope", 404),
        ("/api/reports/lift?flow=big_spend", 409),
        ("/api/reports/shadow?flow=thanks", 409),
        ("/api/reports/lift?flow=thanks&window=soon", 400),
        ("/api/reports/lift?flow=thanks&since=yesterday", 400),
        ("/api/reports/lift", 400),
        ("/api/reports/lift?flow=thanks&colour=red", 400),
    ] {
        let (status, body) = get_json(&t, path, &viewer).await;
        assert_eq!(status, want, "{path}: {body}");
        if status != 400 || path.contains("window") {
            assert!(body["error"].is_string(), "{path}: {body}");
        }
    }
    // No token: 401.
    let r = t.http.get(format!("{}/api/reports/lift?flow=thanks", t.base)).send().await.unwrap();
    assert_eq!(r.status(), 401);

    // The CLI over the same data dir, after the server stopped: the same counts, exit 2 for a usage error.
    let data_dir = t._dir.path().to_path_buf();
    let TestApp { app, .. } = t;
    app.shutdown().await;
    let config = data_dir.join("nudge.toml");
    std::fs::write(&config, format!("[destinations.klaviyo]\napi_key = \"{KEY}\"\n{}", flows_toml()))
        .unwrap();
    let html = data_dir.join("lift.html");
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_nudge"))
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(&data_dir)
            .args(args)
            .output()
            .unwrap()
    };
    let out =
        run(&["report", "lift", "--flow", "thanks", "--partial", "--json", "--out", html.to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let cli: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(cli["treated"], lift["treated"]);
    assert_eq!(cli["held_out"], lift["held_out"]);
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.starts_with("<!DOCTYPE html>") && page.contains("<svg") && page.contains("held out"),
        "{page}"
    );
    let out = run(&["report", "shadow", "--flow", "big_spend", "--partial"]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("shadow report of flow big_spend") && text.contains("agree on"), "{text}");
    let out = run(&["report", "shadow", "--flow", "thanks"]);
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no baseline"));
    let out = run(&["report", "lift", "--flow", "nope"]);
    assert_eq!(out.status.code(), Some(2));
    let out = run(&["report", "lift", "--flow", "thanks", "--window", "forever"]);
    assert_eq!(out.status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn flows_reload_over_the_api_refuses_an_invalid_set_and_needs_the_right_role() {
    let t = spawn_app(|c| c.flows = Some(flows())).await;
    let marketer = api_token(&t, "mia", Role::Marketer).await;
    let viewer = api_token(&t, "vic", Role::Viewer).await;
    let reload = async |token: &str| {
        let r = t.http.post(format!("{}/api/flows/reload", t.base)).bearer_auth(token).send().await.unwrap();
        let status = r.status().as_u16();
        (status, r.json::<serde_json::Value>().await.unwrap_or_default())
    };
    // Started without `nudge serve`: nothing to re-read.
    let (status, body) = reload(&marketer).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(reload(&viewer).await.0, 403, "a viewer cannot reload");
    let before = t.app.flows.current().version.clone();
    let next = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let source = next.clone();
    t.app.shared.set_config_loader(std::sync::Arc::new(move || {
        let text = source.lock().unwrap().clone();
        nudge::config::Config::from_toml(&text, &Default::default())
    }));
    // An invalid condition: refused with its key path, the running set stays.
    *next.lock().unwrap() = format!(
        "[destinations.klaviyo]\napi_key = \"{KEY}\"\n{}",
        flows_toml().replace("event.value >= 100.0", "event.value >= ")
    );
    let (status, body) = reload(&marketer).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("flows[0].when"), "{body}");
    assert_eq!(t.app.flows.current().version, before);
    // A valid set replaces it; settings that need a restart are named.
    *next.lock().unwrap() = format!(
        "[pipeline]\nshadow = true\n[destinations.klaviyo]\napi_key = \"{KEY}\"\n{}",
        flows_toml().replace("holdout_percent = 50", "holdout_percent = 20")
    );
    let (status, body) = reload(&marketer).await;
    assert_eq!(status, 200, "{body}");
    assert_ne!(body["version"], before.as_str());
    assert_eq!(body["version"], t.app.flows.current().version.as_str());
    assert_eq!(body["flows"], 2);
    assert!(body["notes"][0].as_str().unwrap().contains("pipeline.shadow"), "{body}");
    // A file that is itself invalid (its flows name a destination it does not configure) is refused whole.
    let running = t.app.flows.current().version.clone();
    *next.lock().unwrap() = flows_toml().to_string();
    let (status, body) = reload(&marketer).await;
    assert_eq!(status, 422, "{body}");
    assert!(body["error"].as_str().unwrap().contains("destination `klaviyo` is not configured"), "{body}");
    assert_eq!(t.app.flows.current().version, running);
    t.app.shutdown().await;
}
