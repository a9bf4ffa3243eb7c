//! Recommendations served: `cargo bench -p nudge --bench recs [-- --customers 100000 --requests 20000]`.
//!
//! Builds a store of `--customers` customers with order histories over 2,000 products (a skewed
//! popularity, three orders each on average), fits and activates a `recs` version on them, and starts
//! nudge on it. Then times:
//! - the per-customer serving cost: `Recs::fill` (the model's list under the rules, cached, and the score
//!   set's products) over every customer's state in memory, and the boot precompute (every stored state
//!   read and scored in full, which fills the cache);
//! - `GET /api/recs/{customer_id}?count=5` over real HTTP on loopback, `--requests` requests for random
//!   cached customers, one at a time and then 8 at once: p50, p99 and max.

use nudge_model::{CustomerId, Event, LineItem, Money, Order, ScoreSet, Segment};
use nudge_state::CustomerState;
use nudge_store::prelude::*;
use nudge_store::{ProcessOutcome, StoredState};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A small deterministic generator (SplitMix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
    /// A product with popularity falling off as a power law.
    fn product(&mut self) -> u64 {
        (2_000.0 * self.unit().powf(2.5)) as u64
    }
}

fn states(customers: usize) -> Vec<CustomerState> {
    let mut rng = Rng(7);
    let now = time::OffsetDateTime::now_utc();
    (0..customers)
        .map(|i| {
            let id: CustomerId = format!("shopify:{}", 1_000_000 + i).parse().unwrap();
            let mut st = CustomerState::new(id.clone());
            let orders = 1 + (rng.next() % 5) as usize;
            for o in 0..orders {
                let at = now - time::Duration::days((rng.next() % 300) as i64 + 1);
                let lines = 1 + (rng.next() % 3) as usize;
                let line_items = (0..lines)
                    .map(|_| {
                        let p = rng.product();
                        LineItem {
                            product_id: Some((9_100_000_000 + p).to_string()),
                            variant_id: None,
                            sku: None,
                            title: format!("Product {p}"),
                            quantity: 1,
                            price: Money::parse("19.90", "EUR").unwrap(),
                        }
                    })
                    .collect();
                st.apply(&Event::OrderUpserted(Order {
                    id: format!("{i}-{o}"),
                    name: None,
                    customer: Some(id.clone()),
                    email: None,
                    created_at: at,
                    updated_at: at,
                    cancelled_at: None,
                    total: Money::parse("39.80", "EUR").unwrap(),
                    financial_status: Some("paid".into()),
                    line_items,
                    checkout_token: None,
                    cart_token: None,
                    accepts_marketing: None,
                }));
            }
            st
        })
        .collect()
}

fn percentiles(mut xs: Vec<f64>) -> String {
    xs.sort_by(f64::total_cmp);
    let q = |p: f64| xs[((xs.len() - 1) as f64 * p).round() as usize] * 1e3;
    format!("p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms ({} requests)", q(0.5), q(0.99), q(1.0), xs.len())
}

fn main() {
    let mut customers = 100_000usize;
    let mut requests = 20_000usize;
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(flag) = args.next() {
        let value: usize =
            args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{flag} takes a number"));
        match flag.as_str() {
            "--customers" => customers = value,
            "--requests" => requests = value,
            _ => panic!("usage: recs [--customers N] [--requests N], not {flag}"),
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(run(customers, requests));
}

async fn run(customers: usize, requests: usize) {
    nudge_testkit::ensure_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let states = states(customers);
    {
        let store =
            nudge_store::sqlite::SqliteStore::open(dir.path(), nudge_store::sqlite::Durability::Normal)
                .unwrap();
        for chunk in states.chunks(2_000) {
            let outcome = ProcessOutcome {
                states: chunk
                    .iter()
                    .map(|s| StoredState { customer: s.customer.clone(), email: None, state: s.encode() })
                    .collect(),
                ..Default::default()
            };
            store.commit_processing(vec![outcome]).await.unwrap();
        }
        let started = Instant::now();
        let id = nudge::fit_recs::fit_and_activate(&store, &Default::default()).await.unwrap();
        println!("fit and activate {id} on {customers} customers: {:.2} s", started.elapsed().as_secs_f64());
    }

    // Serving cost per customer: the list alone, on states in memory.
    let mut cfg = nudge::config::Config::from_toml("", &BTreeMap::new()).unwrap();
    cfg.storage.data_dir = dir.path().to_path_buf();
    cfg.storage.durability = nudge_store::sqlite::Durability::Normal;
    {
        let store = nudge::app::open_store(&cfg).await.unwrap();
        let recs = nudge::recs::Recs::new(cfg.recs.clone());
        recs.load(&*store).await.unwrap();
        let now = time::OffsetDateTime::now_utc();
        let mut set = ScoreSet {
            scores: Vec::new(),
            segment: Segment::Loyal,
            model_version: "bench".into(),
            labels: Default::default(),
            products: Vec::new(),
            scored_at: now,
            adopted_segments: None,
        };
        let mut runs = Vec::new();
        for _ in 0..3 {
            let started = Instant::now();
            for s in &states {
                recs.fill(s, now, &mut set);
            }
            runs.push(started.elapsed().as_secs_f64() / states.len() as f64);
        }
        runs.sort_by(f64::total_cmp);
        println!(
            "Recs::fill per customer: median {:.2} µs (min {:.2}, max {:.2}) over 3 passes of {customers}; {} cached",
            runs[1] * 1e6,
            runs[0] * 1e6,
            runs[2] * 1e6,
            recs.cached_customers()
        );
    }

    // nudge itself: boot, wait for the background precompute, then the API.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let started = Instant::now();
    let app = nudge::app::run(cfg, listener).await.unwrap();
    println!("boot (recs loaded; precompute in the background): {:.2} s", started.elapsed().as_secs_f64());
    let recs = app.scoring.recs().unwrap().clone();
    while recs.cached_customers() < customers {
        assert!(started.elapsed() < Duration::from_secs(600), "precompute did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "precompute of {customers} customers (full scoring, lists cached): {:.2} s after boot started",
        started.elapsed().as_secs_f64()
    );
    let token =
        nudge::tokens_cli::create(&**app.store(), "bench", nudge::access::Role::Viewer).await.unwrap();
    let base = format!("http://127.0.0.1:{}/api/recs", app.addr.port());
    let http = reqwest::Client::new();
    let mut rng = Rng(11);
    let one =
        |rng: &mut Rng| format!("{base}/shopify:{}?count=5", 1_000_000 + rng.next() as usize % customers);
    // Warm-up.
    for _ in 0..200 {
        let r = http.get(one(&mut rng)).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), 200);
        r.bytes().await.unwrap();
    }
    let mut lat = Vec::with_capacity(requests);
    for _ in 0..requests {
        let url = one(&mut rng);
        let t = Instant::now();
        let r = http.get(url).bearer_auth(&token).send().await.unwrap();
        assert_eq!(r.status(), 200);
        let body = r.bytes().await.unwrap();
        lat.push(t.elapsed().as_secs_f64());
        assert!(body.len() > 20);
    }
    println!("GET /api/recs, one at a time: {}", percentiles(lat));
    let urls: Vec<String> = (0..requests).map(|_| one(&mut rng)).collect();
    let lat = Arc::new(std::sync::Mutex::new(Vec::with_capacity(requests)));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for chunk in urls.chunks(requests.div_ceil(8)) {
        let (chunk, http, token, lat) = (chunk.to_vec(), http.clone(), token.clone(), lat.clone());
        tasks.push(tokio::spawn(async move {
            for url in chunk {
                let t = Instant::now();
                let r = http.get(url).bearer_auth(&token).send().await.unwrap();
                assert_eq!(r.status(), 200);
                r.bytes().await.unwrap();
                lat.lock().unwrap().push(t.elapsed().as_secs_f64());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let secs = started.elapsed().as_secs_f64();
    let lat = std::mem::take(&mut *lat.lock().unwrap());
    println!("GET /api/recs, 8 at once: {} ({:.0} requests/s)", percentiles(lat), requests as f64 / secs);
    app.shutdown().await;
}
