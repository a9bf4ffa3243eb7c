//! The binary under `kill -9`: everything acknowledged is processed after a restart, abandonment timers
//! survive it, nothing is pushed twice, and no secret reaches the logs or the data directory.

use crate::*;
use nudge_ingest::shopify::fixtures::{CheckoutFixture, CustomerFixture, LineItemFixture, OrderFixture};
use nudge_testkit::shopify_sender::Delivery;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;
use time::OffsetDateTime;

const CRASH_SECRET: &str = "shpss_crash_test_secret_5d1e";
const CRASH_KEY: &str = "pk_crash_test_key_77aa";

/// A `nudge serve` child process, killed (SIGKILL) and reaped when dropped, so that a failing or timed-out
/// test leaves no server behind.
struct Node {
    child: Child,
    log: PathBuf,
}

impl Node {
    fn start(config: &Path, log: &Path) -> Node {
        let child = Command::new(env!("CARGO_BIN_EXE_nudge"))
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "debug")
            .env("T_SHOPIFY_SECRET", CRASH_SECRET)
            .env("T_KLAVIYO_KEY", CRASH_KEY)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .expect("nudge binary starts");
        Node { child, log: log.to_path_buf() }
    }

    fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// The last lines the server logged, for a failure message.
    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(30)..].join("\n")
    }

    /// The address the server listens on (it binds port 0 and logs the port it got), once `/healthz`
    /// answers 200 there; at most 60 s, each look at most 2 s. A port picked by the test and handed over
    /// would be free for a moment, and another test's server could take it.
    async fn wait_healthy(&mut self) -> String {
        let http = reqwest::Client::builder().timeout(Duration::from_secs(2)).build().unwrap();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        while tokio::time::Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("nudge exited ({status}) before it was healthy:\n{}", self.log_tail());
            }
            if let Some(base) = self.listening_on()
                && let Ok(r) = http.get(format!("{base}/healthz")).send().await
                && r.status() == 200
            {
                return base;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("nudge did not become healthy within 60 s:\n{}", self.log_tail());
    }

    /// `http://127.0.0.1:PORT` from the log's "nudge is listening" line, once it is there.
    fn listening_on(&self) -> Option<String> {
        let text = std::fs::read_to_string(&self.log).ok()?;
        let line = text.lines().find(|l| l.contains("nudge is listening"))?;
        let at = line.find("127.0.0.1:")? + "127.0.0.1:".len();
        let port: String = line[at..].chars().take_while(char::is_ascii_digit).collect();
        (!port.is_empty()).then(|| format!("http://127.0.0.1:{port}"))
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_right_after_acks_loses_nothing_and_pushes_nothing_twice() {
    // A bound on the whole test: a hang fails it (and its servers are killed) instead of stalling the run.
    tokio::time::timeout(Duration::from_secs(300), kill_9_and_restart())
        .await
        .expect("the crash test finished within 300 s");
}

async fn kill_9_and_restart() {
    nudge_testkit::ensure_crypto_provider();
    let fake = nudge_testkit::fake_klaviyo::FakeKlaviyo::start(
        nudge_testkit::fake_klaviyo::FakeKlaviyoConfig::new(CRASH_KEY).unthrottled(),
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let config = dir.path().join("nudge.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = "127.0.0.1:0"
[storage]
data_dir = "{}"
[sources.shopify]
secrets = ["${{T_SHOPIFY_SECRET}}"]
[destinations.klaviyo]
api_key = "${{T_KLAVIYO_KEY}}"
base_url = "{}"
[pipeline]
checkout_abandon_after = "2s"
timer_tick = "100ms"
"#,
            data.display(),
            fake.base_url()
        ),
    )
    .unwrap();
    let log1 = dir.path().join("run1.log");
    let mut node = Node::start(&config, &log1);
    let base = node.wait_healthy().await;

    let sender =
        nudge_testkit::shopify_sender::ShopifySender::new(format!("{base}/webhooks/shopify"), CRASH_SECRET)
            .unwrap();
    let now = OffsetDateTime::now_utc();
    let item = LineItemFixture::new(9_100_000_003, "Boots", 1, "80.00");
    let mut deliveries = Vec::new();
    for i in 0..200u64 {
        let c = CustomerFixture::new(10_000 + i, Some(&format!("o{i}@example.org")), now);
        let o = OrderFixture::new(8_000_000 + i, now).customer(c).line_item(item.clone());
        deliveries.push(Delivery::new("orders/create", o.to_bytes()));
    }
    for i in 0..20u64 {
        let c = CustomerFixture::new(20_000 + i, Some(&format!("k{i}@example.org")), now);
        let k = CheckoutFixture::new(9_000_000 + i, now)
            .token(&format!("crash-{i}"))
            .customer(c)
            .line_item(item.clone())
            .accepts_marketing(true);
        deliveries.push(Delivery::new("checkouts/create", k.to_bytes()));
    }
    let mut handles = Vec::new();
    for d in deliveries {
        let s = sender.clone();
        handles.push(tokio::spawn(async move { (d.topic.clone(), s.send(&d).await.map(|r| r.status)) }));
    }
    let mut acked_orders = 0;
    let mut acked_checkouts = 0;
    for h in handles {
        if let (topic, Ok(200)) = h.await.unwrap() {
            if topic == "orders/create" { acked_orders += 1 } else { acked_checkouts += 1 }
        }
    }
    // Kill -9 right after the last acknowledgement: most of the work is still queued.
    node.kill();
    assert!(acked_orders > 0 && acked_checkouts > 0);

    let log2 = dir.path().join("run2.log");
    let mut node = Node::start(&config, &log2);
    node.wait_healthy().await;
    let done = eventually(90, async || {
        let profiles =
            fake.profiles().iter().filter(|p| p.email.as_deref().is_some_and(|e| e.starts_with('o'))).count();
        let abandoned = fake.events().iter().filter(|e| e.metric == "AI Checkout Abandoned").count();
        profiles >= acked_orders && abandoned >= acked_checkouts
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    node.kill();
    assert!(done, "every acknowledged delivery was processed after the restart:\n{}", node.log_tail());
    let events = fake.events();
    let mut ids: Vec<&str> = events.iter().filter_map(|e| e.unique_id.as_deref()).collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "no event stored twice");
    assert_eq!(n, acked_checkouts, "one abandoned-checkout event per acknowledged checkout");
    for i in 0..20 {
        assert!(fake.count_events_with_unique_id(&format!("nudge:checkout-abandoned:crash-{i}")) <= 1);
    }

    // Secrets never appear in logs or in anything nudge stored.
    for f in [&log1, &log2] {
        let text = std::fs::read_to_string(f).unwrap();
        assert!(!text.contains(CRASH_SECRET) && !text.contains(CRASH_KEY), "secret in {}", f.display());
        assert!(text.contains("nudge is listening"), "the log was captured");
    }
    for entry in std::fs::read_dir(&data).unwrap() {
        let bytes = std::fs::read(entry.unwrap().path()).unwrap();
        let hay = String::from_utf8_lossy(&bytes);
        assert!(!hay.contains(CRASH_SECRET) && !hay.contains(CRASH_KEY), "secret in the data directory");
    }
    fake.shutdown().await;
}
