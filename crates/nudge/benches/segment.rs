//! Load benchmark of the Segment-compatible API: `POST /v1/batch` requests of 100 track messages each
//! (as analytics-python sends them) over keep-alive loopback connections against an in-process nudge on
//! the embedded store, reporting durable messages/s (every message of an answered request is committed,
//! with its dedupe key, before the 200) and the request latency quantiles.
//!
//! `cargo bench -p nudge --bench segment -- [--connections 8] [--seconds 10] [--durability full|normal]`
//!
//! Every request is built before the clock starts (unique `messageId`s), and written raw over HTTP/1.1
//! from tasks of the same process, so the figure is what nudge sustains, not the cost of building JSON.
//! The workers parse and fold the stored messages meanwhile, as in production.
//!
//! Results, with the machine and the spread, are in BENCHMARKS.md ("Storefront events: the Segment API").

use nudge::config::{Config, SegmentSourceConfig};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const KEY: &str = "wk_bench";
const PER_REQUEST: usize = 100;

fn flags() -> BTreeMap<String, String> {
    let v: Vec<String> = std::env::args().skip(1).filter(|s| s != "--bench").collect();
    v.chunks(2)
        .filter(|p| p.len() == 2)
        .map(|p| (p[0].trim_start_matches("--").to_string(), p[1].clone()))
        .collect()
}

fn request(port: u16, conn: usize, n: usize) -> Vec<u8> {
    let batch: Vec<serde_json::Value> = (0..PER_REQUEST)
        .map(|i| {
            serde_json::json!({"integrations":{},"anonymousId":format!("a-{}", (n * PER_REQUEST + i) % 50_000),
                "properties":{"product_id":"9100000001","sku":"TEE-BLK-M","price":39.95,"currency":"EUR"},
                "timestamp":"2026-05-01T10:00:00.000+00:00","context":{"library":{"name":"analytics-python","version":"2.3.4"}},
                "userId":null,"type":"track","event":"Product Viewed","messageId":format!("c{conn}-r{n}-m{i}")})
        })
        .collect();
    let body = serde_json::to_vec(&serde_json::json!({
        "batch": batch, "sentAt": "2026-05-01T10:00:00.512344+00:00", "writeKey": KEY
    }))
    .unwrap();
    let mut r = format!(
        "POST /v1/batch HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nContent-Type: application/json\r\n\
         User-Agent: analytics-python/2.3.4\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    r.extend_from_slice(&body);
    r
}

/// Reads one response; `true` when it is a 200.
async fn response(s: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> bool {
    buf.clear();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length:"))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while buf.len() < end + 4 + len {
                let n = s.read(&mut chunk).await.expect("read");
                assert!(n > 0, "connection closed");
                buf.extend_from_slice(&chunk[..n]);
            }
            return head.starts_with("http/1.1 200");
        }
        let n = s.read(&mut chunk).await.expect("read");
        assert!(n > 0, "connection closed");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn main() {
    let f = flags();
    let connections: usize = f.get("connections").map_or(8, |v| v.parse().expect("--connections"));
    let seconds: u64 = f.get("seconds").map_or(10, |v| v.parse().expect("--seconds"));
    let durability = match f.get("durability").map(String::as_str) {
        None | Some("full") => nudge_store::sqlite::Durability::Full,
        Some("normal") => nudge_store::sqlite::Durability::Normal,
        Some(o) => panic!("--durability full|normal, not {o}"),
    };
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    nudge_testkit::ensure_crypto_provider();
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::from_toml("", &BTreeMap::new()).unwrap();
        cfg.storage.data_dir = dir.path().to_path_buf();
        cfg.storage.durability = durability;
        cfg.sources.segment = Some(SegmentSourceConfig { write_keys: vec![KEY.into()], ..Default::default() });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let app = nudge::app::run(cfg, listener).await.unwrap();
        let port = app.addr.port();
        // Enough distinct requests per connection for the run (a repeat would be a duplicate).
        let per_conn = 4_000usize;
        println!("building {} requests of {PER_REQUEST} messages…", per_conn * connections);
        let requests: Vec<Vec<Vec<u8>>> =
            (0..connections).map(|c| (0..per_conn).map(|n| request(port, c, n)).collect()).collect();
        let acked = Arc::new(AtomicU64::new(0));
        let failed = Arc::new(AtomicU64::new(0));
        let deadline = Instant::now() + Duration::from_secs(seconds);
        let started = Instant::now();
        let mut tasks = Vec::new();
        for reqs in requests {
            let (acked, failed) = (acked.clone(), failed.clone());
            tasks.push(tokio::spawn(async move {
                let mut s = tokio::net::TcpStream::connect(("127.0.0.1", port)).await.unwrap();
                s.set_nodelay(true).unwrap();
                let mut buf = Vec::with_capacity(8192);
                let mut lat = Vec::new();
                for r in &reqs {
                    if Instant::now() >= deadline {
                        break;
                    }
                    let t = Instant::now();
                    s.write_all(r).await.unwrap();
                    if response(&mut s, &mut buf).await {
                        acked.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    lat.push(t.elapsed());
                }
                lat
            }));
        }
        let mut lat = Vec::new();
        for t in tasks {
            lat.extend(t.await.unwrap());
        }
        let elapsed = started.elapsed().as_secs_f64();
        lat.sort();
        let q = |p: f64| lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1))).copied();
        let requests = acked.load(Ordering::Relaxed);
        let stored = app.shared.store.stats().await.unwrap().deliveries;
        println!(
            "segment /v1/batch ({connections} connections, {durability:?}): {requests} requests answered 200 in \
             {elapsed:.1} s, {} failed; {:.0} durable messages/s; latency p50 {:?} p99 {:?}; {stored} stored",
            failed.load(Ordering::Relaxed),
            (requests as usize * PER_REQUEST) as f64 / elapsed,
            q(0.5).unwrap_or_default(),
            q(0.99).unwrap_or_default(),
        );
        assert!(stored >= requests * PER_REQUEST as u64, "every acknowledged message is stored");
        app.shutdown().await;
    });
}
