//! The console under a large store: `cargo bench -p nudge --bench console [-- --deliveries 1000000
//! --audit-per-delivery 5 --requests 40 --rate 200 --seconds 10 --rounds 3]`.
//!
//! Seeds an embedded store with `--deliveries` processed deliveries spread over the last 22 hours (each
//! with its terminal state and one outbox item; a few hundred dead letters, quarantined deliveries and
//! approvals waiting), `--audit-per-delivery` audit records each, and 100,000 customers; then starts
//! `nudge serve` on it (against a Klaviyo fake on loopback) and:
//!
//! 1. renders every console page `--requests` times in turn, signed in as an admin, and prints the median,
//!    95th percentile and maximum server time per page (the time to the last byte over loopback);
//! 2. sends signed Shopify orders at `--rate` per second for `--seconds`, alone and then while another
//!    client reloads the overview (with its charts) every second, `--rounds` times in turn, and prints the
//!    acknowledgement latency of each run and of all, so the console's cost to the ack path is seen side by
//!    side.
//!
//! Everything runs on this machine's loopback and stops by itself.

use nudge::access::Role;
use nudge::config::{Config, ShopifyConfig};
use nudge_ingest::shopify::fixtures::{CustomerFixture, LineItemFixture, OrderFixture};
use nudge_testkit::fake_klaviyo::{FakeKlaviyo, FakeKlaviyoConfig};
use nudge_testkit::shopify_sender::{Delivery, ShopifySender};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SECRET: &str = "bench_secret";
const KEY: &str = "pk_bench";
const CUSTOMERS: i64 = 100_000;
const TOPICS: [&str; 4] = ["orders/create", "orders/updated", "checkouts/update", "customers/update"];

struct Args {
    deliveries: i64,
    audit_per_delivery: i64,
    requests: usize,
    rate: u64,
    seconds: u64,
    rounds: usize,
}

fn args() -> Args {
    let mut a = Args {
        deliveries: 1_000_000,
        audit_per_delivery: 5,
        requests: 40,
        rate: 200,
        seconds: 10,
        rounds: 3,
    };
    let mut it = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(flag) = it.next() {
        let v: u64 =
            it.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{flag} takes a number"));
        match flag.as_str() {
            "--deliveries" => a.deliveries = v as i64,
            "--audit-per-delivery" => a.audit_per_delivery = v as i64,
            "--requests" => a.requests = v as usize,
            "--rate" => a.rate = v,
            "--seconds" => a.seconds = v,
            "--rounds" => a.rounds = v as usize,
            _ => panic!(
                "usage: console [--deliveries N] [--audit-per-delivery N] [--requests N] [--rate N] [--seconds N] [--rounds N], \
                 not {flag}"
            ),
        }
    }
    a
}

fn main() {
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run(a));
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

/// Writes the store's rows directly (the schema made by opening the store first): far faster than
/// processing a million deliveries, and the same rows.
fn seed(dir: &std::path::Path, a: &Args) {
    drop(nudge_store::sqlite::SqliteStore::open(dir, nudge_store::sqlite::Durability::Normal).unwrap());
    let started = Instant::now();
    let n = a.deliveries;
    let now = now_ms();
    // Receipt times over the last 22 hours, oldest first.
    let step_ms = (22 * 3_600_000 / n.max(1)).max(1);
    let first_ms = now - n * step_ms;
    let trace = "printf('%08x-0000-4000-8000-%012x', i / 4294967296, i % 4294967296)";
    let customer = format!("'shopify:' || (1 + i % {CUSTOMERS})");
    let series = |upto: i64| {
        format!("WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {upto})")
    };
    let log = rusqlite::Connection::open(dir.join("ingest.db")).unwrap();
    log.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF;").unwrap();
    let topic = format!(
        "CASE i % 4 WHEN 0 THEN '{}' WHEN 1 THEN '{}' WHEN 2 THEN '{}' ELSE '{}' END",
        TOPICS[0], TOPICS[1], TOPICS[2], TOPICS[3]
    );
    log.execute_batch(&format!(
        "BEGIN;
         INSERT INTO deliveries (seq, trace_id, source, topic, shop, webhook_id, received_at, headers, body)
         {} SELECT i, {trace}, 'shopify', {topic}, 'bench.myshopify.com', 'w' || i, {first_ms} + i * {step_ms},
                   '{{}}', CAST('{{\"id\":' || i || '}}' AS BLOB) FROM s;
         COMMIT;",
        series(n)
    ))
    .unwrap();
    drop(log);
    let db = rusqlite::Connection::open(dir.join("nudge.db")).unwrap();
    db.execute_batch("PRAGMA journal_mode = WAL; PRAGMA synchronous = OFF;").unwrap();
    let quarantined = 300;
    let dead = 400;
    let per = a.audit_per_delivery;
    let sa = format!(
        "WITH RECURSIVE s(i) AS (SELECT {per} UNION ALL SELECT i + 1 FROM s WHERE i < {})",
        n * per + per - 1
    );
    let trace_a =
        format!("printf('%08x-0000-4000-8000-%012x', (i / {per}) / 4294967296, (i / {per}) % 4294967296)");
    let s = series(n);
    db.execute_batch(&format!(
        "BEGIN;
         INSERT INTO processed (seq, trace_id, status, reason)
           {s} SELECT i, {trace}, CASE WHEN i <= {quarantined} THEN 'quarantined' ELSE 'processed' END,
                      CASE WHEN i <= {quarantined} THEN 'body is not JSON' END FROM s;
         INSERT INTO terminal (trace_id, state, reason, at)
           {s} SELECT {trace},
                      CASE WHEN i <= {quarantined} THEN 'quarantined' WHEN i % 10 = 0 THEN 'ignored'
                           WHEN i <= {quarantined} + {dead} THEN 'dead_lettered' ELSE 'delivered' END,
                      NULL, {first_ms} + i * {step_ms} FROM s;
         INSERT INTO outbox (trace_id, customer_id, destination, action, status, attempts, next_attempt_at,
                             last_error, created_at, origin_us)
           {s} SELECT {trace}, {customer}, 'klaviyo',
                      '{{\"type\":\"trigger_event\",\"customer\":\"' || {customer} || '\",\"name\":\"AI Order\"}}',
                      CASE WHEN i > {quarantined} AND i <= {quarantined} + {dead} THEN 'dead' ELSE 'delivered' END,
                      1, 0,
                      CASE WHEN i > {quarantined} AND i <= {quarantined} + {dead} THEN 'HTTP 400: invalid profile' END,
                      {first_ms} + i * {step_ms}, ({first_ms} + i * {step_ms}) * 1000 FROM s;
         INSERT INTO audit (trace_id, customer_id, stage, at, detail)
           {sa} SELECT {trace_a}, 'shopify:' || (1 + (i / {per}) % {CUSTOMERS}),
                       CASE i % {per} WHEN 0 THEN 'received' WHEN 1 THEN 'normalized' WHEN 2 THEN 'state_changed'
                                      WHEN 3 THEN 'scored' ELSE 'decided' END,
                       {first_ms} + (i / {per}) * {step_ms}, '{{\"note\":\"seeded\"}}' FROM s;
         COMMIT;"
    ))
    .unwrap();
    // Customers with stored states, and approvals waiting.
    let tx = db.unchecked_transaction().unwrap();
    {
        let mut ins = tx
            .prepare("INSERT INTO customers (customer_id, email, state, updated_at) VALUES (?1, ?2, ?3, ?4)")
            .unwrap();
        for c in 1..=CUSTOMERS {
            let id: nudge_model::CustomerId = format!("shopify:{c}").parse().unwrap();
            let mut st = nudge_state::CustomerState::new(id.clone());
            st.email = Some(format!("c{c}@example.org"));
            st.consent = nudge_model::MarketingConsent::Subscribed;
            ins.execute(rusqlite::params![
                id.to_string(),
                st.email,
                serde_json::to_string(&st).unwrap(),
                now
            ])
            .unwrap();
        }
        let mut ins = tx
            .prepare(
                "INSERT INTO approvals (trace_id, flow, flow_version, customer_id, actions, created_at, expires_at)
                 VALUES (?1, 'first_orders', 'v1', ?2, '[]', ?3, ?4)",
            )
            .unwrap();
        for i in 0..300i64 {
            let t = format!("{:08x}-0000-4000-8000-{:012x}", 0, n + 1 + i);
            ins.execute(rusqlite::params![t, format!("shopify:{}", 1 + i), now, now + 86_400_000]).unwrap();
        }
    }
    tx.commit().unwrap();
    db.execute_batch("ANALYZE;").unwrap();
    println!(
        "seeded {n} deliveries, {} audit records, {CUSTOMERS} customers in {:.0} s",
        n * a.audit_per_delivery,
        started.elapsed().as_secs_f64()
    );
}

/// A page's address for its `i`th request.
type PathOf = Box<dyn Fn(usize) -> String>;

struct Client {
    http: reqwest::Client,
    base: String,
    cookie: String,
}

impl Client {
    async fn sign_in(base: &str, token: &str) -> Client {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        let r = http
            .post(format!("{base}/ui/login"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(format!("token={token}"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 303, "signed in");
        let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
        Client { http, base: base.to_string(), cookie }
    }

    /// One page, read whole; its time in seconds.
    async fn time(&self, path: &str) -> f64 {
        self.time_sized(path).await.0
    }

    /// One page, read whole; its time in seconds and its size in bytes.
    async fn time_sized(&self, path: &str) -> (f64, usize) {
        let started = Instant::now();
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("cookie", &self.cookie)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let body = r.bytes().await.unwrap();
        let secs = started.elapsed().as_secs_f64();
        assert_eq!(status, 200, "{path}: {}", String::from_utf8_lossy(&body));
        (secs, body.len())
    }
}

fn quantile(sorted: &[f64], q: f64) -> f64 {
    sorted[((sorted.len() as f64 - 1.0) * q).round() as usize]
}

fn order(i: u64) -> Delivery {
    let c = CustomerFixture::new(
        1 + i % CUSTOMERS as u64,
        Some(&format!("c{}@example.org", 1 + i % 100_000)),
        time::OffsetDateTime::now_utc(),
    )
    .consent(Some("subscribed"));
    let o = OrderFixture::new(50_000_000 + i, time::OffsetDateTime::now_utc())
        .customer(c)
        .line_item(LineItemFixture::new(9_100_000_001, "Organic Tee", 1, "39.95"));
    Delivery::new("orders/create", o.to_bytes())
}

/// Sends orders at `rate` per second for `seconds` (open loop: each request's latency counts from when it
/// was due); returns the ack latencies, sorted.
async fn send_at_rate(sender: Arc<ShopifySender>, rate: u64, seconds: u64, offset: u64) -> Vec<f64> {
    let count = rate * seconds;
    let prepared: Vec<Delivery> = (0..count).map(|i| order(offset + i)).collect();
    let start = tokio::time::Instant::now();
    let mut tasks = Vec::with_capacity(prepared.len());
    for (i, d) in prepared.into_iter().enumerate() {
        let due = start + Duration::from_secs_f64(i as f64 / rate as f64);
        tokio::time::sleep_until(due).await;
        let sender = sender.clone();
        tasks.push(tokio::spawn(async move {
            let r = sender.send(&d).await.unwrap();
            assert_eq!(r.status, 200);
            due.elapsed().as_secs_f64()
        }));
    }
    let mut out = Vec::with_capacity(tasks.len());
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out.sort_by(f64::total_cmp);
    out
}

async fn run(a: Args) {
    nudge_testkit::ensure_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    seed(dir.path(), &a);
    let fake = FakeKlaviyo::start(FakeKlaviyoConfig::new(KEY).unthrottled()).await.unwrap();
    let mut cfg = Config::from_toml("", &BTreeMap::new()).unwrap();
    cfg.storage.data_dir = dir.path().to_path_buf();
    cfg.sources.shopify = Some(ShopifyConfig::with_secrets(vec![SECRET.into()]));
    cfg.destinations.klaviyo =
        Some(nudge_deliver::klaviyo::KlaviyoConfig::new(KEY).with_base_url(fake.base_url()));
    cfg.flows = Some(vec![
        serde_json::from_value(serde_json::json!({
            "name": "first_orders", "trigger": "order_placed", "mode": "approval",
            "actions": [{ "type": "track_event", "destination": "klaviyo", "metric": "AI First Order" }],
        }))
        .unwrap(),
    ]);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = nudge::app::run(cfg, listener).await.unwrap();
    let base = format!("http://{}", app.addr);
    let token = nudge::tokens_cli::create(&**app.store(), "bench", Role::Admin).await.unwrap();
    let client = Client::sign_in(&base, &token).await;
    println!(
        "machine: {} cores; {} requests per page, one at a time, after two to warm up",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        a.requests
    );

    // The first page counts the store while it waits (no snapshot yet); every later one reads a snapshot.
    let first = client.time("/ui/").await;
    println!(
        "first overview (counts the store, as the background renewal does every 5 s): {:.0} ms",
        first * 1e3
    );

    // Phase 1: every page.
    let mid = a.deliveries / 2;
    let some_trace = format!("{:08x}-0000-4000-8000-{:012x}", 0, mid);
    let pages: Vec<(&str, PathOf)> = vec![
        ("overview", Box::new(|_| "/ui/".into())),
        ("overview chart: deliveries, day", Box::new(|_| "/ui/charts/deliveries.svg?window=day".into())),
        ("overview chart: terminal states", Box::new(|_| "/ui/charts/terminal.svg".into())),
        ("overview chart: outbox", Box::new(|_| "/ui/charts/outbox.svg".into())),
        (
            "audit search by customer",
            Box::new(|i| format!("/ui/audit?customer=shopify:{}", 1 + i * 997 % 100_000)),
        ),
        ("audit: one trace", Box::new(move |_| format!("/ui/audit?trace={some_trace}"))),
        ("customer", Box::new(|i| format!("/ui/customers?id=shopify:{}", 1 + i * 991 % 100_000))),
        ("approvals", Box::new(|_| "/ui/approvals".into())),
        ("flows", Box::new(|_| "/ui/flows".into())),
        ("flow", Box::new(|_| "/ui/flows/first_orders".into())),
        ("models", Box::new(|_| "/ui/models".into())),
        ("segments", Box::new(|_| "/ui/segments".into())),
        ("dead letters and quarantine", Box::new(|_| "/ui/dead-letters".into())),
    ];
    println!("{:<34} {:>9} {:>9} {:>9} {:>9}", "page", "p50 ms", "p95 ms", "max ms", "KB");
    for (name, path) in &pages {
        for w in 0..2 {
            client.time(&path(w)).await;
        }
        let mut times = Vec::with_capacity(a.requests);
        let mut bytes = 0;
        for i in 0..a.requests {
            let (secs, size) = client.time_sized(&path(i + 2)).await;
            times.push(secs);
            bytes += size;
        }
        times.sort_by(f64::total_cmp);
        println!(
            "{name:<34} {:>9.1} {:>9.1} {:>9.1} {:>9.1}",
            quantile(&times, 0.5) * 1e3,
            quantile(&times, 0.95) * 1e3,
            times[times.len() - 1] * 1e3,
            bytes as f64 / a.requests as f64 / 1024.0
        );
    }

    // Phase 2: the ack path alone, then with the overview reloaded every second, in turn, `--rounds` times
    // (so that a busy moment of the machine does not decide the comparison).
    let sender = Arc::new(ShopifySender::new(format!("{base}/webhooks/shopify"), SECRET).unwrap());
    let report = |label: &str, l: &[f64]| {
        println!(
            "  acks {label}: {} at {}/s: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
            l.len(),
            a.rate,
            quantile(l, 0.5) * 1e3,
            quantile(l, 0.99) * 1e3,
            l[l.len() - 1] * 1e3
        )
    };
    let client = Arc::new(client);
    let (mut alone_all, mut watched_all) = (Vec::new(), Vec::new());
    let mut offset = 0;
    for round in 0..a.rounds {
        println!("round {round}:");
        let alone = send_at_rate(sender.clone(), a.rate, a.seconds, offset).await;
        offset += a.rate * a.seconds;
        report("alone", &alone);
        app.wait_idle(Duration::from_secs(120)).await;
        let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let reloader = {
            let stop = stop.clone();
            let client = client.clone();
            tokio::spawn(async move {
                let mut reloads = 0u32;
                let mut slowest = 0f64;
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let started = Instant::now();
                    for path in [
                        "/ui/",
                        "/ui/charts/deliveries.svg?window=hour",
                        "/ui/charts/deliveries.svg?window=day",
                        "/ui/charts/terminal.svg",
                        "/ui/charts/outbox.svg",
                    ] {
                        slowest = slowest.max(client.time(path).await);
                    }
                    reloads += 1;
                    tokio::time::sleep(Duration::from_secs(1).saturating_sub(started.elapsed())).await;
                }
                (reloads, slowest)
            })
        };
        let watched = send_at_rate(sender.clone(), a.rate, a.seconds, offset).await;
        offset += a.rate * a.seconds;
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let (reloads, slowest) = reloader.await.unwrap();
        report("with the overview reloaded every second", &watched);
        println!(
            "    ({reloads} overview reloads of the page and its 4 charts; slowest request {:.1} ms)",
            slowest * 1e3
        );
        app.wait_idle(Duration::from_secs(120)).await;
        alone_all.extend(alone);
        watched_all.extend(watched);
    }
    alone_all.sort_by(f64::total_cmp);
    watched_all.sort_by(f64::total_cmp);
    println!("all rounds:");
    report("alone", &alone_all);
    report("with the overview reloaded every second", &watched_all);
    app.shutdown().await;
}
