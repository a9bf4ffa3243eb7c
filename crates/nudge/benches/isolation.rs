//! Isolation of destinations: while Klaviyo is down (503 to everything) or stalled (never answering
//! within the client's timeout), how much do the other destinations' event→push latencies move, and does
//! Klaviyo's backlog drain with nothing lost or duplicated once it recovers?
//!
//! `cargo bench -p nudge --bench isolation -- [--seconds 30] [--rate 200] [--mode down|stall|both]
//!  [--runs 1] [--drain-timeout 900] [--hubspot-linger MS]`
//!
//! Every run starts the Klaviyo, Braze and HubSpot fakes and an in-process nudge (`app::run`) whose two
//! flows act on every order: `profile_sync` (on `state_changed`) syncs the profile to all three, and
//! `order_event` (on `order_placed`) sends a trigger event to all three, so each delivery makes six outbox
//! items, two per destination. Braze and HubSpot run with their documented limits on both sides (Braze
//! 3,000 requests per 3 s, HubSpot 100 per 10 s; the clients' pacing is the default). Klaviyo runs without
//! limits: its steady profile-import limit (750 per minute, one profile per request) is below any rate
//! worth measuring here, so with it on Klaviyo's queue would grow in the healthy run as well.
//! `--hubspot-linger MS` sets HubSpot's `linger` (the engine's default is 50 ms), to see how batch fill
//! against HubSpot's small request budget shapes its latency.
//!
//! A run: one second of traffic to warm up (HubSpot's properties are created then), the queues drained, the
//! latency samples reset; then `--seconds` of signed `orders/create` webhooks at `--rate` per second (each
//! for a different customer) with Klaviyo healthy, down or stalled; then the bench waits for Braze's and
//! HubSpot's queues to empty and reads each destination's own event→push sample; then Klaviyo recovers
//! and the bench waits for the whole backlog to drain and checks every destination's outbox (nothing
//! pending, dead-lettered or rejected; two items per delivery) and Klaviyo's holdings (each trigger event
//! stored once per unique id; accepted event requests per unique id, which a stall can repeat because the
//! fake stores a request whose answer the client gave up on).

use nudge::config::{Config, ShopifyConfig};
use nudge_ingest::shopify::fixtures::{CustomerFixture, LineItemFixture, OrderFixture};
use nudge_testkit::fake_klaviyo::{FakeKlaviyo, FakeKlaviyoConfig, FakeMode};
use nudge_testkit::{Delivery, FakeBraze, FakeBrazeConfig, FakeHubSpot, FakeHubSpotConfig, ShopifySender};
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The same allocator as the `nudge` binary, so the benchmark measures what ships.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SECRET: &str = "bench_secret";
const KLAVIYO_KEY: &str = "pk_bench";
const BRAZE_KEY: &str = "braze-bench-key";
const HUBSPOT_TOKEN: &str = "pat-bench-token";
const DESTINATIONS: [&str; 3] = ["braze", "hubspot", "klaviyo"];

const FLOWS: &str = r#"
[[flows]]
name = "profile_sync"
trigger = "state_changed"
holdout_percent = 0
actions = [
  { type = "sync_profile", destination = "klaviyo" },
  { type = "sync_profile", destination = "braze" },
  { type = "sync_profile", destination = "hubspot" },
]

[[flows]]
name = "order_event"
trigger = "order_placed"
holdout_percent = 0
actions = [
  { type = "track_event", destination = "klaviyo", metric = "AI Order Placed" },
  { type = "track_event", destination = "braze", metric = "AI Order Placed" },
  { type = "track_event", destination = "hubspot", metric = "AI Order Placed" },
]
"#;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Variant {
    Healthy,
    Down,
    Stall,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Healthy => "healthy",
            Variant::Down => "klaviyo down (503)",
            Variant::Stall => "klaviyo stalled",
        }
    }
}

struct Args {
    seconds: u64,
    rate: u64,
    variants: Vec<Variant>,
    runs: usize,
    drain_timeout: Duration,
    hubspot_linger: Option<Duration>,
}

fn args() -> Args {
    let v: Vec<String> = std::env::args().skip(1).filter(|s| s != "--bench").collect();
    let mut m = BTreeMap::new();
    for pair in v.chunks(2) {
        let key = pair[0].strip_prefix("--").unwrap_or_else(|| panic!("unexpected argument {}", pair[0]));
        assert!(
            ["seconds", "rate", "mode", "runs", "drain-timeout", "hubspot-linger"].contains(&key),
            "unknown argument --{key}"
        );
        m.insert(key.to_string(), pair.get(1).cloned().unwrap_or_default());
    }
    let num = |key: &str, default: u64| -> u64 {
        m.get(key).map(|v| v.parse().unwrap_or_else(|_| panic!("--{key} takes a number"))).unwrap_or(default)
    };
    let variants = match m.get("mode").map(String::as_str) {
        Some("down") => vec![Variant::Healthy, Variant::Down],
        Some("stall") => vec![Variant::Healthy, Variant::Stall],
        None | Some("both") => vec![Variant::Healthy, Variant::Down, Variant::Stall],
        Some(other) => panic!("--mode down|stall|both, not {other}"),
    };
    Args {
        seconds: num("seconds", 30),
        rate: num("rate", 200),
        variants,
        runs: num("runs", 1).max(1) as usize,
        drain_timeout: Duration::from_secs(num("drain-timeout", 900)),
        hubspot_linger: m
            .contains_key("hubspot-linger")
            .then(|| Duration::from_millis(num("hubspot-linger", 50))),
    }
}

/// An `orders/create` delivery: order `i` for its own customer, who accepted email marketing at checkout.
fn order(i: u64) -> Delivery {
    let now = time::OffsetDateTime::now_utc();
    let customer = 2_000_000 + i;
    let email = format!("iso{customer}@example.org");
    let body = OrderFixture::new(6_000_000_000 + i, now)
        .customer(CustomerFixture::new(customer, Some(&email), now).consent(Some("subscribed")))
        .line_item(LineItemFixture::new(9_100_000_000, "Item", 1, "25.00"))
        .accepts_marketing(true)
        .to_bytes();
    Delivery::new("orders/create", body)
}

/// Sends orders `first..first + rate × seconds` at `rate` per second; returns how many were acked.
async fn drive(sender: &ShopifySender, first: u64, rate: u64, seconds: f64) -> u64 {
    let total = (rate as f64 * seconds).round() as u64;
    let acked = Arc::new(AtomicU64::new(0));
    let gate = Arc::new(tokio::sync::Semaphore::new(256));
    let start = tokio::time::Instant::now();
    let interval = Duration::from_secs_f64(1.0 / rate as f64);
    let mut tasks = Vec::with_capacity(total as usize);
    for k in 0..total {
        tokio::time::sleep_until(start + interval * k as u32).await;
        let permit = gate.clone().acquire_owned().await.expect("the gate stays open");
        let (sender, acked) = (sender.clone(), acked.clone());
        let delivery = order(first + k);
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            match sender.send(&delivery).await {
                Ok(r) if r.status == 200 => {
                    acked.fetch_add(1, Ordering::Relaxed);
                }
                Ok(r) => eprintln!("webhook answered {}", r.status),
                Err(e) => eprintln!("webhook failed: {e}"),
            }
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    acked.load(Ordering::Relaxed)
}

/// One destination's figures in one run.
#[derive(Clone, Default)]
struct Latency {
    pushes: u64,
    p50_ms: f64,
    p99_ms: f64,
}

struct RunResult {
    variant: Variant,
    acked: u64,
    /// Braze's and HubSpot's latencies once their queues emptied after the phase; Klaviyo's too (in the
    /// failure variants it is read after the recovery, so it includes the outage).
    latency: BTreeMap<&'static str, Latency>,
    /// From Klaviyo's recovery until nothing was pending anywhere.
    drain_secs: f64,
    klaviyo_backlog_at_recovery: u64,
    checks: Vec<String>,
    ok: bool,
}

fn read_latency(app: &nudge::app::App, name: &str) -> Latency {
    app.destination_latency
        .get(name)
        .and_then(|s| s.quantiles())
        .map(|(n, p50, p99)| Latency { pushes: n, p50_ms: p50 * 1e3, p99_ms: p99 * 1e3 })
        .unwrap_or_default()
}

async fn wait_for(app: &nudge::app::App, names: &[&str], timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        let mut pending = 0;
        for n in names {
            pending += app.store().pending_for(n).await.unwrap_or(u64::MAX / 4);
        }
        if pending == 0 {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

async fn run_variant(a: &Args, variant: Variant, fake_rt: &tokio::runtime::Handle) -> RunResult {
    let klaviyo = fake_rt
        .spawn(FakeKlaviyo::start(FakeKlaviyoConfig::new(KLAVIYO_KEY).unthrottled()))
        .await
        .unwrap()
        .expect("the Klaviyo fake starts");
    let braze = fake_rt
        .spawn(FakeBraze::start(FakeBrazeConfig::new(BRAZE_KEY)))
        .await
        .unwrap()
        .expect("the Braze fake starts");
    let hubspot = fake_rt
        .spawn(FakeHubSpot::start(FakeHubSpotConfig::new(HUBSPOT_TOKEN)))
        .await
        .unwrap()
        .expect("the HubSpot fake starts");

    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::from_toml("", &BTreeMap::new()).unwrap();
    cfg.storage.data_dir = dir.path().to_path_buf();
    cfg.sources.shopify = Some(ShopifyConfig::with_secrets(vec![SECRET.into()]));
    cfg.pipeline.refit_every = nudge::config::HumanDuration(Duration::ZERO);
    let unlimited = nudge_deliver::RateLimit::new(1_000_000, 60_000_000);
    let mut k = nudge_deliver::klaviyo::KlaviyoConfig::new(KLAVIYO_KEY).with_base_url(klaviyo.base_url());
    k.profile_import_limit = unlimited;
    k.events_limit = unlimited;
    cfg.destinations.klaviyo = Some(k);
    cfg.destinations.braze =
        Some(nudge_deliver::BrazeConfig::new(BRAZE_KEY, braze.base_url()).allowing_private());
    cfg.destinations.hubspot = Some(
        nudge_deliver::HubSpotConfig::new(HUBSPOT_TOKEN).with_base_url(hubspot.base_url()).allowing_private(),
    );
    if let Some(linger) = a.hubspot_linger {
        let keys = nudge::config::DeliveryKeys {
            linger: Some(nudge::config::HumanDuration(linger)),
            ..Default::default()
        };
        cfg.delivery.insert("hubspot".into(), keys);
    }
    #[derive(serde::Deserialize)]
    struct Flows {
        flows: Vec<nudge_policy::flows::FlowSpec>,
    }
    cfg.flows = Some(toml::from_str::<Flows>(FLOWS).expect("the flows parse").flows);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = nudge::app::run(cfg, listener).await.expect("nudge starts");
    let sender = ShopifySender::new(format!("http://{}/webhooks/shopify", app.addr), SECRET).unwrap();

    // Warm-up: one second of traffic, drained, then the samples start empty.
    let warm = drive(&sender, 0, a.rate, 1.0).await;
    assert!(app.wait_idle(Duration::from_secs(120)).await, "the warm-up drains");
    app.push_latency.reset();
    for s in app.destination_latency.values() {
        s.reset();
    }

    match variant {
        Variant::Healthy => {}
        Variant::Down => klaviyo.set_mode(FakeMode::Fail5xx { status: 503, count: u32::MAX }),
        Variant::Stall => klaviyo.set_mode(FakeMode::Slow(Duration::from_secs(3600))),
    }
    let phase = Instant::now();
    let acked = drive(&sender, 1_000_000, a.rate, a.seconds as f64).await;
    let sent_secs = phase.elapsed().as_secs_f64();
    let others_done = wait_for(&app, &["braze", "hubspot"], Duration::from_secs(300)).await;
    let mut latency = BTreeMap::new();
    for name in ["braze", "hubspot"] {
        latency.insert(name, read_latency(&app, name));
    }
    let klaviyo_backlog_at_recovery = app.store().pending_for("klaviyo").await.unwrap_or(0);
    println!(
        "  {}: {acked} webhooks acked in {sent_secs:.1} s; Braze and HubSpot drained {:.1} s after the \
         phase{}; Klaviyo backlog {klaviyo_backlog_at_recovery}",
        variant.name(),
        phase.elapsed().as_secs_f64() - sent_secs,
        if others_done { "" } else { " (NOT within 300 s)" },
    );

    // Recovery.
    klaviyo.set_mode(FakeMode::Normal);
    let recovered = Instant::now();
    let drained = app.wait_idle(a.drain_timeout).await;
    let drain_secs = recovered.elapsed().as_secs_f64();
    latency.insert("klaviyo", read_latency(&app, "klaviyo"));

    // Checks: the outbox per destination, and Klaviyo's holdings.
    let mut checks = Vec::new();
    let mut ok = drained && others_done;
    if !drained {
        checks.push(format!("backlog NOT drained within {:?}", a.drain_timeout));
    }
    let expected = 2 * (acked + warm);
    let stats = app.store().stats().await.expect("store stats");
    for name in DESTINATIONS {
        let c =
            stats.outbox_by_destination.iter().find(|c| c.destination == name).cloned().unwrap_or_default();
        let good = c.pending == 0 && c.dead == 0 && c.rejected == 0 && c.delivered == expected;
        ok &= good;
        checks.push(format!(
            "{name}: {} delivered of {expected} expected, {} pending, {} dead, {} rejected{}",
            c.delivered,
            c.pending,
            c.dead,
            c.rejected,
            if good { "" } else { "  <-- MISMATCH" }
        ));
    }
    let requests = klaviyo.requests();
    let mut accepted_by_unique: HashMap<String, u32> = HashMap::new();
    let (mut profile_imports, mut failed_requests) = (0u64, 0u64);
    for r in &requests {
        if !(200..300).contains(&r.status) {
            failed_requests += 1;
            continue;
        }
        if r.path.starts_with("/api/profile-import") {
            profile_imports += 1;
        } else if r.path.starts_with("/api/events") {
            let id = r
                .json()
                .and_then(|j| j["data"]["attributes"]["unique_id"].as_str().map(str::to_string))
                .unwrap_or_default();
            *accepted_by_unique.entry(id).or_default() += 1;
        }
    }
    let events = klaviyo.events();
    let mut stored_by_unique: HashMap<String, u32> = HashMap::new();
    for e in &events {
        *stored_by_unique.entry(e.unique_id.clone().unwrap_or_default()).or_default() += 1;
    }
    let stored_twice = stored_by_unique.values().filter(|n| **n > 1).count();
    let accepted_twice = accepted_by_unique.values().filter(|n| **n > 1).count();
    let events_good = stored_twice == 0 && events.len() as u64 == acked + warm;
    ok &= events_good;
    checks.push(format!(
        "klaviyo fake: {} events stored ({} unique ids, {stored_twice} stored twice; {} expected), {} \
         accepted event requests ({accepted_twice} unique ids accepted more than once), {profile_imports} \
         accepted profile imports, {failed_requests} requests answered with an error{}",
        events.len(),
        stored_by_unique.len(),
        acked + warm,
        accepted_by_unique.values().sum::<u32>(),
        if events_good { "" } else { "  <-- MISMATCH" }
    ));
    app.shutdown().await;
    drop((klaviyo, braze, hubspot));
    RunResult { variant, acked, latency, drain_secs, klaviyo_backlog_at_recovery, checks, ok }
}

fn main() {
    nudge_testkit::ensure_crypto_provider();
    nudge::telemetry::init_logging(false, "error");
    let a = args();
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    // The fakes stand for services that run elsewhere: threads of their own at the background workers'
    // priority, as in the ingest benchmark.
    let priority = Config::from_toml("", &BTreeMap::new()).unwrap().worker_priority();
    let fake_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("fake-tools")
        .on_thread_start(move || priority.apply())
        .enable_all()
        .build()
        .unwrap();
    println!(
        "machine: {} cores; {} webhooks/s for {} s per phase; HubSpot linger {}; {} run(s) of {}",
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
        a.rate,
        a.seconds,
        a.hubspot_linger.map_or("default".to_string(), |d| format!("{d:?}")),
        a.runs,
        a.variants.iter().map(|v| v.name()).collect::<Vec<_>>().join(", "),
    );
    let handle = fake_rt.handle().clone();
    let results = rt.block_on(async {
        let mut results = Vec::new();
        for run in 0..a.runs {
            for v in &a.variants {
                println!("run {} — {}", run + 1, v.name());
                let r = run_variant(&a, *v, &handle).await;
                for c in &r.checks {
                    println!("    {c}");
                }
                results.push((run, r));
            }
        }
        results
    });
    drop(fake_rt);

    println!();
    println!("| run | variant | destination | pushes | p50 ms | p99 ms | p99 vs healthy |");
    println!("| --- | --- | --- | --- | --- | --- | --- |");
    let mut all_ok = true;
    for (run, r) in &results {
        all_ok &= r.ok;
        let healthy = results.iter().find(|(n, h)| n == run && h.variant == Variant::Healthy).map(|(_, h)| h);
        for (name, l) in &r.latency {
            let ratio = match (r.variant, healthy.and_then(|h| h.latency.get(name))) {
                (Variant::Healthy, _) | (_, None) => String::new(),
                (_, Some(h)) if h.p99_ms > 0.0 => format!("{:+.1} %", (l.p99_ms / h.p99_ms - 1.0) * 100.0),
                _ => String::new(),
            };
            let note =
                if *name == "klaviyo" && r.variant != Variant::Healthy { " (incl. outage)" } else { "" };
            println!(
                "| {} | {} | {name}{note} | {} | {:.1} | {:.1} | {ratio} |",
                run + 1,
                r.variant.name(),
                l.pushes,
                l.p50_ms,
                l.p99_ms
            );
        }
    }
    println!();
    for (run, r) in &results {
        println!(
            "run {} {}: {} webhooks; Klaviyo backlog at recovery {}, everything drained {:.1} s after; checks {}",
            run + 1,
            r.variant.name(),
            r.acked,
            r.klaviyo_backlog_at_recovery,
            r.drain_secs,
            if r.ok { "passed" } else { "FAILED" }
        );
    }
    if !all_ok {
        std::process::exit(1);
    }
}
