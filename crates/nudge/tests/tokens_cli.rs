//! `nudge tokens` through the binary: create prints a token once, list shows no secret, revoke refuses the
//! token from the next request on; clear errors for a duplicate name, an unknown role and an unknown token.
//! And the server, run as the binary with debug logs: neither the tokens nor their hashes reach the logs,
//! and the tokens do not reach the data directory.

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::Duration;

fn nudge(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nudge"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env("RUST_LOG", "debug")
        .env("USER", "ops-person")
        .env_remove("NUDGE_CONFIG")
        .output()
        .expect("the nudge binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

fn ok(data_dir: &Path, args: &[&str]) -> Output {
    let o = nudge(data_dir, args);
    assert!(o.status.success(), "nudge {args:?} failed:\n{}\n{}", text(&o.stdout), text(&o.stderr));
    o
}

fn fails(data_dir: &Path, args: &[&str]) -> String {
    let o = nudge(data_dir, args);
    assert!(!o.status.success(), "nudge {args:?} should have failed:\n{}", text(&o.stdout));
    text(&o.stderr)
}

/// Creates a token and returns it (stdout is the token alone).
fn create(data_dir: &Path, name: &str, role: &str) -> String {
    let o = ok(data_dir, &["tokens", "create", "--name", name, "--role", role]);
    let token = text(&o.stdout).trim().to_string();
    assert!(token.starts_with("nudge_") && token.len() == 70, "{token}");
    assert!(text(&o.stderr).contains("shown this once"), "{}", text(&o.stderr));
    token
}

fn list(data_dir: &Path) -> Vec<Value> {
    let o = ok(data_dir, &["tokens", "list", "--json"]);
    serde_json::from_slice::<Value>(&o.stdout).unwrap().as_array().unwrap().clone()
}

fn sha256_hex(s: &str) -> String {
    nudge::access::hash_token(s)
}

#[test]
fn tokens_are_created_listed_and_revoked() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ci = create(d, "ci", "viewer");
    let alice = create(d, "alice@example.org", "data_engineer");
    assert_ne!(ci, alice);

    // Clear errors: a duplicate name, an unknown role (with the valid ones), a name the audit cannot use.
    let e = fails(d, &["tokens", "create", "--name", "ci", "--role", "admin"]);
    assert!(e.contains("a token named `ci` already exists"), "{e}");
    let e = fails(d, &["tokens", "create", "--name", "bob", "--role", "superuser"]);
    for role in ["viewer", "marketer", "data_engineer", "compliance", "admin"] {
        assert!(e.contains(role), "{e}");
    }
    let e = fails(d, &["tokens", "create", "--name", "has space", "--role", "admin"]);
    assert!(e.contains("not a usable token name"), "{e}");

    // The list: names, roles, times; no token, no hash, in JSON or as text.
    let tokens = list(d);
    assert_eq!(tokens.len(), 2);
    assert_eq!(tokens[0]["name"], "ci");
    assert_eq!(tokens[0]["role"], "viewer");
    assert_eq!(tokens[1]["role"], "data_engineer");
    assert_eq!(tokens[0]["active"], true);
    assert_eq!(tokens[0]["last_used_at"], Value::Null);
    assert!(tokens[0]["created_at"].as_str().unwrap().ends_with('Z'));
    let table = text(&ok(d, &["tokens", "list"]).stdout);
    assert!(table.contains("alice@example.org") && table.contains("never"), "{table}");
    let listed = format!("{table}{}", serde_json::to_string(&tokens).unwrap());
    for secret in [&ci, &alice, &sha256_hex(&ci), &sha256_hex(&alice)] {
        assert!(!listed.contains(secret.as_str()), "a secret in the list");
    }

    // Revoke: by name; again says so; an unknown name is an error.
    let out = text(&ok(d, &["tokens", "revoke", "ci"]).stdout);
    assert!(out.contains("revoked token `ci`"), "{out}");
    let out = text(&ok(d, &["tokens", "revoke", "ci"]).stdout);
    assert!(out.contains("already revoked"), "{out}");
    let e = fails(d, &["tokens", "revoke", "nobody"]);
    assert!(e.contains("no token named `nobody`"), "{e}");
    let tokens = list(d);
    assert_eq!(tokens[0]["active"], false);
    assert!(tokens[0]["revoked_at"].is_string());
    assert_eq!(tokens[1]["active"], true);
    // A revoked name is not reused.
    let e = fails(d, &["tokens", "create", "--name", "ci", "--role", "viewer"]);
    assert!(e.contains("revoked"), "{e}");
}

async fn wait_healthy(http: &reqwest::Client, base: &str) {
    for _ in 0..200 {
        if let Ok(r) = http.get(format!("{base}/healthz")).send().await
            && r.status() == 200
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("nudge did not become healthy");
}

/// The server as the binary, debug logs on: tokens created and revoked by the CLI while it runs take effect
/// at once; refusals are audited; neither a token nor its hash is in the logs, nor a token in the data
/// directory (its hash is, in `api_tokens` only).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_server_honours_cli_tokens_and_never_logs_them() {
    nudge_testkit::ensure_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let config = dir.path().join("nudge.toml");
    std::fs::write(
        &config,
        format!("[server]\nlisten = \"127.0.0.1:{port}\"\n[storage]\ndata_dir = \"{}\"\n", data.display()),
    )
    .unwrap();
    let log = dir.path().join("serve.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args(["serve", "--config"])
        .arg(&config)
        .env("RUST_LOG", "debug")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .expect("nudge serve starts");
    let base = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    wait_healthy(&http, &base).await;

    let viewer = create(&data, "dashboard", "viewer");
    let compliance = create(&data, "dpo", "compliance");
    let get = |path: &str, token: &str| http.get(format!("{base}{path}")).bearer_auth(token).send();
    let customer = "/api/audit/customers/shopify:1";
    assert_eq!(get(customer, &compliance).await.unwrap().status(), 200);
    let refused = get(customer, &viewer).await.unwrap();
    assert_eq!(refused.status(), 403);
    let trace = refused.headers()["x-nudge-trace-id"].to_str().unwrap().to_string();
    let unknown = get(customer, "nudge_not_a_token").await.unwrap();
    assert_eq!(unknown.status(), 401);
    let trace_401 = unknown.headers()["x-nudge-trace-id"].to_str().unwrap().to_string();
    ok(&data, &["tokens", "revoke", "dpo"]);
    assert_eq!(get(customer, &compliance).await.unwrap().status(), 401, "revoked while serving");

    // The refusals are in the audit trail, attributed by name.
    let shown = text(&ok(&data, &["audit", "show", &trace, "--json"]).stdout);
    let v: Value = serde_json::from_str(&shown).unwrap();
    let detail = &v["records"][0]["detail"];
    assert_eq!(v["records"][0]["stage"], "api_access");
    assert_eq!(detail["token_name"], "dashboard");
    assert_eq!((detail["status"].as_u64(), detail["outcome"].as_str()), (Some(403), Some("denied")));
    let shown_401 = text(&ok(&data, &["audit", "show", &trace_401]).stdout);
    assert!(shown_401.starts_with("admin API access"), "{shown_401}");
    assert!(shown_401.contains("unknown or revoked token"), "{shown_401}");

    child.kill().unwrap();
    child.wait().unwrap();
    let logs = std::fs::read_to_string(&log).unwrap();
    assert!(logs.contains("admin API request refused"), "the log was captured:\n{logs}");
    for t in [&viewer, &compliance] {
        let token_part = &t["nudge_".len()..];
        assert!(!logs.contains(token_part), "a token in the logs");
        assert!(!logs.contains(&sha256_hex(t)), "a token's hash in the logs");
        assert!(!shown.contains(token_part) && !shown.contains(&sha256_hex(t)), "a secret in the audit");
        for entry in std::fs::read_dir(&data).unwrap() {
            let bytes = std::fs::read(entry.unwrap().path()).unwrap();
            assert!(!String::from_utf8_lossy(&bytes).contains(token_part), "a token in the data directory");
        }
    }
}
