//! Load benchmark of the spine: signed Shopify deliveries over keep-alive connections against an
//! in-process nudge (embedded SQLite, durable group commit) pushing to an unthrottled Klaviyo fake.
//!
//! `cargo bench -p nudge --bench ingest -- [--connections 64] [--seconds 10] [--rate 5000]
//!  [--rate-seconds 10] [--durability full|normal]`
//!
//! Phase 1 sends back to back from `--connections` tasks and reports sustained durable acks/s with the
//! ack latency quantiles. Phase 2 sends at a fixed rate (open loop) and reports the ack latency at that
//! rate and the event→push latency of the deliveries of that phase. Everything runs on this machine's
//! loopback and stops by itself.

use nudge::config::{Config, ShopifyConfig};
use nudge_ingest::shopify::fixtures::{CustomerFixture, LineItemFixture, OrderFixture};
use nudge_testkit::fake_klaviyo::{FakeKlaviyo, FakeKlaviyoConfig};
use nudge_testkit::shopify_sender::{Delivery, ShopifySender};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

const SECRET: &str = "bench_secret";
const KEY: &str = "pk_bench";

struct Args {
    connections: usize,
    seconds: u64,
    rate: u64,
    rate_seconds: u64,
    durability: nudge_store::sqlite::Durability,
}

fn args() -> Args {
    let mut a = Args {
        connections: 64,
        seconds: 10,
        rate: 5000,
        rate_seconds: 10,
        durability: nudge_store::sqlite::Durability::Full,
    };
    let v: Vec<String> = std::env::args().skip(1).filter(|s| s != "--bench").collect();
    let mut i = 0;
    while i < v.len() {
        let val = v.get(i + 1).cloned().unwrap_or_default();
        match v[i].as_str() {
            "--connections" => a.connections = val.parse().expect("--connections N"),
            "--seconds" => a.seconds = val.parse().expect("--seconds N"),
            "--rate" => a.rate = val.parse().expect("--rate N"),
            "--rate-seconds" => a.rate_seconds = val.parse().expect("--rate-seconds N"),
            "--durability" => {
                a.durability = match val.as_str() {
                    "full" => nudge_store::sqlite::Durability::Full,
                    "normal" => nudge_store::sqlite::Durability::Normal,
                    other => panic!("--durability full|normal, not {other}"),
                }
            }
            other => panic!("unknown argument {other}"),
        }
        i += 2;
    }
    a
}

/// A realistic order body (about 5 KB) built once; each delivery gets its own order id and one of 50,000
/// customers, so the load generator spends its time sending rather than building fixtures.
fn template() -> serde_json::Value {
    let now = time::OffsetDateTime::now_utc();
    let c = CustomerFixture::new(1_000_000, Some("b0@example.org"), now);
    let o = OrderFixture::new(5_000_000_000, now).customer(c).line_item(LineItemFixture::new(
        9_100_000_000,
        "Item",
        1,
        "25.00",
    ));
    o.to_json()
}

fn delivery(template: &serde_json::Value, i: u64) -> Delivery {
    let mut v = template.clone();
    let cust = i % 50_000;
    v["id"] = serde_json::json!(5_000_000_000u64 + i);
    v["email"] = serde_json::json!(format!("b{cust}@example.org"));
    v["customer"]["id"] = serde_json::json!(1_000_000 + cust);
    v["customer"]["email"] = serde_json::json!(format!("b{cust}@example.org"));
    v["checkout_token"] = serde_json::json!(format!("chk-{i}"));
    v["cart_token"] = serde_json::json!(format!("cart-{i}"));
    Delivery::new("orders/create", serde_json::to_vec(&v).expect("JSON serialises"))
}

fn quantiles(mut v: Vec<f64>) -> (f64, f64) {
    if v.is_empty() {
        return (0.0, 0.0);
    }
    v.sort_by(f64::total_cmp);
    let q = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    (q(0.5), q(0.99))
}

fn main() {
    nudge_testkit::ensure_crypto_provider();
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        let fake = FakeKlaviyo::start(FakeKlaviyoConfig::new(KEY).unthrottled()).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::from_toml("", &BTreeMap::new()).unwrap();
        cfg.storage.data_dir = dir.path().to_path_buf();
        cfg.storage.durability = a.durability;
        cfg.sources.shopify = Some(ShopifyConfig { secrets: vec![SECRET.into()] });
        cfg.destinations.klaviyo =
            Some(nudge_deliver::klaviyo::KlaviyoConfig::new(KEY).with_base_url(fake.base_url()));
        let unlimited = nudge_deliver::RateLimit::new(1_000_000, 60_000_000);
        if let Some(k) = cfg.destinations.klaviyo.as_mut() {
            k.profile_import_limit = unlimited;
            k.events_limit = unlimited;
        }
        cfg.pipeline.refit_every = nudge::config::HumanDuration(Duration::ZERO);
        if let Ok(b) = std::env::var("NUDGE_BENCH_BATCH") {
            cfg.pipeline.batch_size = b.parse().expect("NUDGE_BENCH_BATCH is a number");
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let app = nudge::app::run(cfg, listener).await.unwrap();
        let sender = ShopifySender::new(format!("http://{}/webhooks/shopify", app.addr), SECRET).unwrap();
        println!(
            "machine: {} cores; durability {:?}; {} connections",
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            a.durability,
            a.connections
        );

        let tpl = Arc::new(template());
        // Phase 1: sustained throughput, closed loop.
        let seq = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs(a.seconds);
        let mut tasks = Vec::new();
        for _ in 0..a.connections {
            let s = sender.clone();
            let seq = seq.clone();
            let tpl = tpl.clone();
            tasks.push(tokio::spawn(async move {
                let mut lat = Vec::new();
                let mut ok = 0u64;
                while Instant::now() < deadline {
                    let d = delivery(&tpl, seq.fetch_add(1, Ordering::Relaxed));
                    if let Ok(r) = s.send(&d).await
                        && r.status == 200
                    {
                        ok += 1;
                        lat.push(r.elapsed.as_secs_f64());
                    }
                }
                (ok, lat)
            }));
        }
        let started = Instant::now();
        let mut ok = 0;
        let mut lat = Vec::new();
        for t in tasks {
            let (n, l) = t.await.unwrap();
            ok += n;
            lat.extend(l);
        }
        let secs = started.elapsed().as_secs_f64();
        let (p50, p99) = quantiles(lat);
        println!(
            "phase 1 (closed loop, {}s): {ok} durable acks, {:.0} acks/s, ack p50 {:.2} ms p99 {:.2} ms",
            a.seconds,
            ok as f64 / secs,
            p50 * 1e3,
            p99 * 1e3
        );
        let drain = Instant::now();
        app.wait_idle(Duration::from_secs(600)).await;
        println!(
            "  backlog drained (processed + pushed) {:.1}s after the phase ended",
            drain.elapsed().as_secs_f64()
        );

        // Phase 2: fixed rate, open loop.
        app.push_latency.reset();
        let total = a.rate * a.rate_seconds;
        let interval = Duration::from_secs_f64(1.0 / a.rate as f64);
        let start = Instant::now();
        let mut handles = Vec::with_capacity(total as usize);
        for i in 0..total {
            let due = start + interval * i as u32;
            let now = Instant::now();
            if due > now {
                tokio::time::sleep(due - now).await;
            }
            let s = sender.clone();
            let d = delivery(&tpl, 10_000_000 + i);
            handles.push(tokio::spawn(async move {
                let t0 = Instant::now();
                let r = s.send(&d).await;
                (r.map(|r| r.status).unwrap_or(0), t0.elapsed().as_secs_f64())
            }));
        }
        let mut lat = Vec::new();
        let mut ok = 0;
        for h in handles {
            let (status, l) = h.await.unwrap();
            if status == 200 {
                ok += 1;
                lat.push(l);
            }
        }
        let sent_secs = start.elapsed().as_secs_f64();
        let (p50, p99) = quantiles(lat);
        println!(
            "phase 2 (open loop, {}/s for {}s): {ok}/{total} acked in {:.1}s, ack p50 {:.2} ms p99 {:.2} ms",
            a.rate,
            a.rate_seconds,
            sent_secs,
            p50 * 1e3,
            p99 * 1e3
        );
        app.wait_idle(Duration::from_secs(600)).await;
        if let Some((n, p50, p99)) = app.push_latency.quantiles() {
            println!(
                "event→push during phase 2 (unthrottled fake, {n} pushes): p50 {:.1} ms p99 {:.1} ms",
                p50 * 1e3,
                p99 * 1e3
            );
        }
        app.shutdown().await;
        fake.shutdown().await;
    });
}
