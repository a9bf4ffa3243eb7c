//! The web console in a real browser: headless Chromium driven by a small Playwright script
//! (`tests/browser/console.mjs`, run with Node) against nudge on 127.0.0.1 with seeded data. Sign-in with a
//! good and a bad token and an expired session; every page rendered with the seeded data and checked by
//! axe-core (no serious or critical violation); approving from the page sends exactly one push to the
//! Klaviyo fake; a viewer sees no approve/replay buttons and gets 403 posting the forms; a form without its
//! CSRF token gets 403; stored and reflected `<script>` text is shown as text and never runs.
//!
//! Needs `NUDGE_BROWSER_DIR`, a folder where `npm install playwright-core axe-core` was run (`.ci/run` does
//! it), and Chromium (`/usr/bin/chromium`, or `NUDGE_CHROMIUM`). Without `NUDGE_BROWSER_DIR` the test says
//! why it is skipped and passes; with it, anything missing fails the test. Screenshots of every page go to
//! `<target>/browser-artifacts/`; with `NUDGE_UPDATE_SCREENSHOTS=1` a passing run also copies the overview
//! and the approvals page to `docs/` for the README.

use nudge::access::Role;
use nudge::app::App;
use nudge::config::{Config, HumanDuration, ShopifyConfig};
use nudge_ingest::shopify::fixtures::{CustomerFixture, LineItemFixture, OrderFixture};
use nudge_testkit::eventually;
use nudge_testkit::fake_klaviyo::{FakeKlaviyo, FakeKlaviyoConfig, FakeKlaviyoHandle};
use nudge_testkit::shopify_sender::{Delivery, ShopifySender};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;
use time::OffsetDateTime;

const SECRET: &str = "test_client_secret_123";
const KEY: &str = "pk_test_browser";
/// The whole script, browser start to close; it normally takes well under half of this.
const SCRIPT_LIMIT: Duration = Duration::from_secs(90);

struct TestApp {
    app: App,
    fake: FakeKlaviyoHandle,
    sender: ShopifySender,
    base: String,
    _dir: tempfile::TempDir,
}

/// nudge on 127.0.0.1:0 with a fresh data dir and a fake Klaviyo (as the `it` tests start it).
async fn spawn_app(tweak: impl FnOnce(&mut Config)) -> TestApp {
    nudge_testkit::ensure_crypto_provider();
    let fake = FakeKlaviyo::start(FakeKlaviyoConfig::new(KEY)).await.expect("fake starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = Config::from_toml("", &BTreeMap::new()).expect("defaults");
    cfg.storage.data_dir = dir.path().to_path_buf();
    cfg.storage.durability = nudge_store::sqlite::Durability::Normal;
    cfg.sources.shopify = Some(ShopifyConfig::with_secrets(vec![SECRET.into()]));
    cfg.destinations.klaviyo = Some(
        nudge_deliver::klaviyo::KlaviyoConfig::new(KEY)
            .with_base_url(fake.base_url())
            .with_timeout(Duration::from_secs(2)),
    );
    cfg.pipeline.timer_tick = HumanDuration(Duration::from_millis(100));
    tweak(&mut cfg);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = nudge::app::run(cfg, listener).await.expect("nudge starts");
    let base = format!("http://127.0.0.1:{}", app.addr.port());
    let sender = ShopifySender::new(format!("{base}/webhooks/shopify"), SECRET).unwrap();
    TestApp { app, fake, sender, base, _dir: dir }
}

async fn token(t: &TestApp, name: &str, role: Role) -> String {
    nudge::tokens_cli::create(&**t.app.store(), name, role).await.expect("token created")
}

fn flows() -> Vec<nudge_policy::flows::FlowSpec> {
    serde_json::from_value(serde_json::json!([
        { "name": "first_orders", "trigger": "order_placed", "mode": "approval",
          "actions": [{ "type": "track_event", "destination": "klaviyo", "metric": "AI First Order" }] },
        // Flow names are `[a-z0-9_]+`; the text a flow carries that can hold markup is its config.
        { "name": "vip_watch", "trigger": "order_placed", "mode": "shadow",
          "actions": [{ "type": "track_event", "destination": "klaviyo",
                        "metric": "VIP <script>alert(2)</script> watch" }] },
    ]))
    .unwrap()
}

fn order(id: u64, cust: u64, first_name: &str) -> OrderFixture {
    let c = CustomerFixture::new(cust, Some(&format!("c{cust}@example.org")), OffsetDateTime::now_utc())
        .consent(Some("subscribed"))
        .name(Some(first_name), Some("Berg"));
    let mut o = OrderFixture::new(id, OffsetDateTime::now_utc()).customer(c).line_item(LineItemFixture::new(
        9_100_000_001,
        "Organic Tee",
        1,
        "39.95",
    ));
    o.buyer_accepts_marketing = true;
    o
}

async fn pending_ids(t: &TestApp) -> Vec<i64> {
    let filter = nudge_store::ApprovalFilter {
        flow: Some("first_orders".into()),
        status: Some(nudge_store::ApprovalStatus::Pending),
        limit: 0,
    };
    let mut ids: Vec<i64> =
        t.app.store().list_approvals(filter).await.unwrap().iter().map(|a| a.id).collect();
    ids.sort();
    ids
}

/// What the test needs from its environment, or why it cannot run.
struct Tools {
    modules: PathBuf,
    chromium: PathBuf,
}

fn tools() -> Option<Tools> {
    let Some(modules) = std::env::var_os("NUDGE_BROWSER_DIR").map(PathBuf::from) else {
        eprintln!(
            "skipped: NUDGE_BROWSER_DIR is not set (a folder with `npm install playwright-core axe-core`; \
             .ci/run sets it up)"
        );
        return None;
    };
    let chromium =
        std::env::var_os("NUDGE_CHROMIUM").map_or_else(|| "/usr/bin/chromium".into(), PathBuf::from);
    // Set means CI: nothing may be missing.
    for needed in [
        modules.join("node_modules/playwright-core/package.json"),
        modules.join("node_modules/axe-core/axe.min.js"),
        chromium.clone(),
    ] {
        assert!(needed.exists(), "NUDGE_BROWSER_DIR is set but {} is missing", needed.display());
    }
    Some(Tools { modules, chromium })
}

fn artifacts_dir() -> PathBuf {
    // CARGO_TARGET_TMPDIR is `<target>/tmp`.
    Path::new(env!("CARGO_TARGET_TMPDIR")).parent().expect("the target dir").join("browser-artifacts")
}

/// Runs the script with `input`; answers its JSON report. The browser is closed by the script, also when a
/// step fails; past [`SCRIPT_LIMIT`] Node is stopped (and its browser with it: it talks to Chromium over
/// a pipe, which closes).
async fn run_script(input: &serde_json::Value) -> serde_json::Value {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/browser/console.mjs");
    let mut child = tokio::process::Command::new("node")
        .arg(&script)
        .env("NUDGE_BROWSER_INPUT", input.to_string())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("node runs (Node.js is needed for the browser tests)");
    let mut stdout = child.stdout.take().unwrap();
    let run = async {
        let mut out = Vec::new();
        tokio::io::AsyncReadExt::read_to_end(&mut stdout, &mut out).await.unwrap();
        (child.wait().await.unwrap(), out)
    };
    let (status, out) = match tokio::time::timeout(SCRIPT_LIMIT, run).await {
        Ok(done) => done,
        Err(_) => panic!("the browser script ran longer than {SCRIPT_LIMIT:?}; stopped"),
    };
    let out = String::from_utf8_lossy(&out);
    assert!(status.success(), "the browser script failed ({status}): {out}");
    serde_json::from_str(out.lines().last().unwrap_or_default())
        .unwrap_or_else(|e| panic!("the script's report is not JSON ({e}): {out}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_console_in_headless_chromium() {
    let Some(tools) = tools() else { return };
    let t = spawn_app(|c| c.flows = Some(flows())).await;
    // Three orders waiting for approval; the first customer's name is markup.
    let mut traces = Vec::new();
    for (id, cust, name) in
        [(7101, 701, "<script>alert(1)</script>"), (7102, 702, "Lena"), (7103, 703, "Ola")]
    {
        let r =
            t.sender.send(&Delivery::new("orders/create", order(id, cust, name).to_bytes())).await.unwrap();
        assert_eq!(r.status, 200);
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
        traces.push(v["trace_id"].as_str().unwrap().to_string());
    }
    assert!(eventually(10, async || pending_ids(&t).await.len() == 3).await, "items are queued");
    // The customer's record names them with markup too.
    let record = CustomerFixture::new(701, Some("c701@example.org"), OffsetDateTime::now_utc())
        .consent(Some("subscribed"))
        .name(Some("<script>alert(1)</script>"), Some("Berg"));
    let r = t.sender.send(&Delivery::new("customers/update", record.to_bytes())).await.unwrap();
    assert_eq!(r.status, 200);
    let named = async || {
        let s = t.app.store().load_states(&["shopify:701".parse().unwrap()]).await.unwrap();
        s.first().is_some_and(|s| {
            let state = nudge_state::CustomerState::decode(&s.state).unwrap();
            serde_json::to_string(&state).unwrap().contains("alert(1)")
        })
    };
    assert!(eventually(10, named).await, "the name is stored");
    let version = nudge_store::ModelVersion {
        id: "bgnbd-ui-1".into(),
        family: "bgnbd".into(),
        created_at_ms: 1_700_000_000_000,
        active: false,
        body: serde_json::json!({ "customers": 42 }),
    };
    t.app.store().save_model_version(version).await.unwrap();
    let ids = pending_ids(&t).await;
    // A second app whose sessions end after a second idle, for the expired session.
    let short = spawn_app(|c| c.server.ui_session_idle = HumanDuration(Duration::from_secs(1))).await;
    let artifacts = artifacts_dir();
    let _ = std::fs::remove_dir_all(&artifacts);

    let input = serde_json::json!({
        "base": t.base,
        "short_base": short.base,
        "short_token": token(&short, "sam", Role::Viewer).await,
        "admin": token(&t, "ada", Role::Admin).await,
        "marketer": token(&t, "mia", Role::Marketer).await,
        "viewer": token(&t, "vic", Role::Viewer).await,
        "approve_id": ids[0],
        "guarded_id": ids[1],
        "trace": traces[0],
        "chromium": tools.chromium,
        "artifacts": artifacts,
        "modules": tools.modules,
    });
    let report = run_script(&input).await;

    let checks = report["checks"].as_array().expect("checks");
    let failed: Vec<_> = checks.iter().filter(|c| c["ok"] != true).collect();
    let names: Vec<&str> = checks.iter().filter_map(|c| c["name"].as_str()).collect();
    eprintln!("{} browser checks; screenshots in {}", checks.len(), artifacts.display());
    assert!(failed.is_empty(), "failed browser checks (screenshots in {}): {failed:#?}", artifacts.display());
    // Each part of the script ran (a script that stopped early has fewer checks, not failed ones).
    for part in [
        "bad token: 401",
        "good token: session cookie",
        "overview: status",
        "customer: shows <script>alert(1)</script>",
        "flow: shows VIP <script>alert(2)</script> watch",
        "reflected: no script element",
        "no script from the data ran",
        "live: the overview reloaded in place",
        "csrf: 403",
        "approve: flash",
        "viewer: no decision buttons",
        "viewer: approve posted → 403",
        "viewer: replay posted → 403",
        "expiry: back to sign-in",
    ] {
        assert!(names.contains(&part), "the script checked {part:?}: {names:?}");
    }
    let axe = report["axe"].as_array().expect("axe results");
    for p in axe {
        eprintln!(
            "axe {}: {} serious or critical, {} minor",
            p["page"],
            p["violations"].as_array().unwrap().len(),
            p["minor"]
        );
    }
    assert!(axe.len() >= 14, "axe ran on every page: {axe:?}");
    let violations: Vec<_> = axe.iter().filter(|p| !p["violations"].as_array().unwrap().is_empty()).collect();
    assert!(violations.is_empty(), "serious or critical accessibility violations: {violations:#?}");

    // The one approval clicked in the browser is the one push; the item the forms without CSRF token and from
    // the viewer tried to decide is still pending, and so is the third.
    assert!(eventually(10, async || t.fake.events().len() == 1).await, "{:?}", t.fake.events());
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(t.fake.events().len(), 1, "exactly one push: {:?}", t.fake.events());
    assert_eq!(pending_ids(&t).await, ids[1..].to_vec());

    if std::env::var_os("NUDGE_UPDATE_SCREENSHOTS").is_some_and(|v| v == "1") {
        let docs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs");
        std::fs::create_dir_all(&docs).unwrap();
        for (shot, doc) in [("overview", "console-overview.png"), ("approvals", "console-approvals.png")] {
            std::fs::copy(artifacts.join(format!("{shot}.png")), docs.join(doc)).unwrap();
        }
        eprintln!("updated docs/console-overview.png and docs/console-approvals.png");
    }
    short.app.shutdown().await;
    t.app.shutdown().await;
}
