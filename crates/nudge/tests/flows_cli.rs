//! The flows through the `nudge` binary: configuration errors with key paths and positions (exit 2), the
//! listing of the built-in and configured flows, and a dry run for a customer with the condition term by
//! term, which records and sends nothing.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn nudge(dir: &Path, config: Option<&Path>, args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_nudge"));
    cmd.arg("--data-dir").arg(dir.join("data"));
    if let Some(c) = config {
        cmd.arg("--config").arg(c);
    }
    cmd.args(args)
        .env("RUST_LOG", "warn")
        .env_remove("NUDGE_CONFIG")
        .env("KLAVIYO_PRIVATE_KEY", "pk_test_flows")
        .output()
        .expect("the nudge binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

const DESTINATION: &str = "[destinations.klaviyo]\napi_key = \"${KLAVIYO_PRIVATE_KEY}\"\n";

fn write(dir: &Path, body: &str) -> std::path::PathBuf {
    let path = dir.join("nudge.toml");
    std::fs::write(&path, format!("{DESTINATION}\n{body}")).unwrap();
    path
}

#[test]
fn bad_flows_exit_2_naming_the_flow_the_key_and_the_position() {
    let dir = tempfile::tempdir().unwrap();
    let cases = [
        (
            "[[flows]]\nname = \"winback\"\ntrigger = \"order_placed\"\nwhen = \"customer.orders_count >= 2 &&\\n  scores.churn_rsk > 60.0\"\n",
            vec!["flows[0].when", "winback", "line 2", "churn_rsk"],
        ),
        ("[[flows]]\nname = \"a\"\ntrigger = \"order_shipped\"\n", vec!["flows[0].trigger", "order_shipped"]),
        (
            "[[flows]]\nname = \"a\"\ntrigger = \"order_placed\"\nactions = [{ type = \"sync_profile\", destination = \"braze\" }]\n",
            vec!["flows[0].actions[0].destination", "braze", "configured: klaviyo"],
        ),
        (
            "[[flows]]\nname = \"a\"\ntrigger = \"order_placed\"\n[[flows]]\nname = \"a\"\ntrigger = \"order_placed\"\n",
            vec!["flows[1].name", "twice"],
        ),
        (
            "[[flows]]\nname = \"a\"\ntrigger = \"order_placed\"\nactions = [{ type = \"send_fax\", destination = \"klaviyo\" }]\n",
            vec!["flows[0].actions[0]", "send_fax"],
        ),
        (
            "[[flows]]\nname = \"a\"\ntrigger = \"order_placed\"\nactions = [{ type = \"add_to_list\", destination = \"klaviyo\", list_id = \" \" }]\n",
            vec!["flows[0].actions[0].list_id", "empty"],
        ),
        (
            "[[flows]]\nname = \"a\"\ntrigger = \"order_placed\"\nactions = [{ type = \"remove_from_list\", destination = \"klaviyo\", list_id = \"../Xy\" }]\n",
            vec!["flows[0].actions[0].list_id", "not a list id"],
        ),
        (
            "[[flows]]\nname = \"a\"\ntrigger = \"order_placed\"\n[[flows]]\nname = \"weekly\"\ntrigger = \"schedule\"\n",
            vec!["flows[1].schedule", "weekly", "needs a schedule"],
        ),
        (
            "[[flows]]\nname = \"a\"\ntrigger = \"order_placed\"\nschedule = \"0 9 * * 1\"\n",
            vec!["flows[0].schedule", "only a flow with trigger = \"schedule\""],
        ),
        (
            "[[flows]]\nname = \"weekly\"\ntrigger = \"schedule\"\nschedule = \"0 9 * * MOON\"\n",
            vec!["flows[0].schedule", "weekly", "field 5 (day of week) `MOON`"],
        ),
        (
            "[[flows]]\nname = \"feb30\"\ntrigger = \"schedule\"\nschedule = \"0 0 30 2 *\"\n",
            vec!["flows[0].schedule", "feb30", "never fires"],
        ),
    ];
    for (body, wanted) in cases {
        let config = write(dir.path(), body);
        let o = nudge(dir.path(), Some(&config), &["config", "check"]);
        assert_eq!(o.status.code(), Some(2), "{body}\n{}", text(&o.stderr));
        let err = text(&o.stderr);
        for w in wanted {
            assert!(err.contains(w), "{body}: `{w}` missing from: {err}");
        }
        // The flows commands refuse the same set the same way.
        assert_eq!(nudge(dir.path(), Some(&config), &["flows", "list"]).status.code(), Some(2));
    }
}

#[test]
fn flows_are_listed_and_dry_run_for_a_customer_without_side_effects() {
    let dir = tempfile::tempdir().unwrap();
    // Without [[flows]]: the two built-in flows.
    let plain = write(dir.path(), "");
    let o = nudge(dir.path(), Some(&plain), &["flows", "list", "--json"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["builtin"], true);
    let names: Vec<&str> =
        v["flows"].as_array().unwrap().iter().map(|f| f["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["profile_sync", "checkout_abandoned"]);

    // A customer with three orders, imported.
    let csv = dir.path().join("orders.csv");
    std::fs::write(
        &csv,
        "customer_id,date,amount\nshopify:880012,2026-01-05,40.00\nshopify:880012,2026-02-10,55.50\nshopify:880012,2026-03-01,20.00\n",
    )
    .unwrap();
    let o = nudge(
        dir.path(),
        Some(&plain),
        &["import", "--transactions", csv.to_str().unwrap(), "--format", "csv"],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));

    let trail_before = nudge(dir.path(), Some(&plain), &["audit", "customer", "shopify:880012"]).stdout;
    let stats_before = nudge(dir.path(), Some(&plain), &["audit", "stats"]).stdout;
    let config = write(
        dir.path(),
        r#"[[flows]]
name = "winback"
trigger = "order_placed"
when = "customer.orders_count >= 2 && scores.churn_risk >= 0.0 && customer.total_spent > 100.0"
holdout_percent = 0
frequency_cap = "1/7d"
actions = [{ type = "sync_profile", destination = "klaviyo" }]
"#,
    );
    let o = nudge(
        dir.path(),
        Some(&config),
        &["flows", "test", "--flow", "winback", "--customer", "shopify:880012"],
    );
    let out = text(&o.stdout);
    assert!(o.status.success(), "{out}{}", text(&o.stderr));
    assert!(out.contains("customer.orders_count >= 2  →  3 >= 2 → true"), "{out}");
    assert!(out.contains("customer.total_spent > 100.0  →  115.5 > 100.0 → true"), "{out}");
    assert!(out.contains("would: 1 action(s) would be sent"), "{out}");
    assert!(out.contains("sync_profile → klaviyo"), "{out}");
    assert!(out.contains("frequency cap: 0 used of 1"), "{out}");
    let o = nudge(
        dir.path(),
        Some(&config),
        &["flows", "test", "--flow", "winback", "--customer", "shopify:880012", "--json"],
    );
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["result"]["matched"]["Ok"], true, "{v}");
    assert_eq!(v["result"]["inputs"]["customer.orders_count"], 3);
    // Nothing was recorded: the customer's audit trail and the store's counts are as before the dry runs.
    assert_eq!(
        nudge(dir.path(), Some(&config), &["audit", "customer", "shopify:880012"]).stdout,
        trail_before
    );
    assert_eq!(nudge(dir.path(), Some(&config), &["audit", "stats"]).stdout, stats_before);

    // Unknown flow, unknown customer: clear errors.
    let o = nudge(
        dir.path(),
        Some(&config),
        &["flows", "test", "--flow", "nope", "--customer", "shopify:880012"],
    );
    assert!(text(&o.stderr).contains("no flow named `nope`; the flows are: winback"), "{}", text(&o.stderr));
    let o =
        nudge(dir.path(), Some(&config), &["flows", "test", "--flow", "winback", "--customer", "shopify:1"]);
    assert!(text(&o.stderr).contains("not known to nudge"), "{}", text(&o.stderr));
}

/// `nudge flows reload` against the server as the binary: the server holds its pid file locked, a second
/// server on the same data directory is refused, a reload with a valid set is applied and an invalid one
/// refused before any signal, and once the server is gone (killed, its pid file left behind) the reload
/// says so instead of signalling whatever process has that id now.
#[test]
fn reload_signals_only_a_live_server_and_a_second_server_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let flow = |metric: &str| {
        format!(
            "[server]\nlisten = \"127.0.0.1:{port}\"\n[[flows]]\nname = \"thanks\"\ntrigger = \"order_placed\"\n\
             actions = [{{ type = \"track_event\", destination = \"klaviyo\", metric = \"{metric}\" }}]\n"
        )
    };
    let config = write(dir.path(), &flow("AI Thanks"));
    let log = dir.path().join("serve.log");
    let mut server = Command::new(env!("CARGO_BIN_EXE_nudge"))
        .arg("--data-dir")
        .arg(dir.path().join("data"))
        .arg("--config")
        .arg(&config)
        .arg("serve")
        .env("RUST_LOG", "info")
        .env_remove("NUDGE_CONFIG")
        .env("KLAVIYO_PRIVATE_KEY", "pk_test_flows")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let pid_file = dir.path().join("data").join("nudge.pid");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while std::fs::read_to_string(&pid_file).map_or(true, |s| s.trim() != server.id().to_string()) {
        assert!(std::time::Instant::now() < deadline, "the server wrote no pid file");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // A second server on the same data directory stops at once, naming the first.
    let second = nudge(dir.path(), Some(&config), &["serve"]);
    assert!(!second.status.success());
    assert!(
        text(&second.stderr).contains(&format!("another nudge server (pid {})", server.id())),
        "{}",
        text(&second.stderr)
    );

    // A changed, valid set: checked, then the server is signalled and reloads it.
    write(dir.path(), &flow("AI Thank You"));
    let out = nudge(dir.path(), Some(&config), &["flows", "reload"]);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("server {} asked to reload", server.id())));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !std::fs::read_to_string(&log).unwrap().contains("flows reloaded") {
        assert!(
            std::time::Instant::now() < deadline,
            "the server did not reload: {}",
            std::fs::read_to_string(&log).unwrap()
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    // An invalid set is refused by the command itself (exit 2): nothing is signalled.
    write(
        dir.path(),
        "[[flows]]\nname = \"thanks\"\ntrigger = \"order_placed\"\nwhen = \"customer.nope\"\nactions = []\n",
    );
    assert_eq!(nudge(dir.path(), Some(&config), &["flows", "reload"]).status.code(), Some(2));

    server.kill().unwrap();
    server.wait().unwrap();
    assert!(pid_file.exists(), "a killed server leaves its pid file");
    write(dir.path(), &flow("AI Thanks"));
    let out = nudge(dir.path(), Some(&config), &["flows", "reload"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("is stale: no server holds it"), "{}", text(&out.stderr));
}
