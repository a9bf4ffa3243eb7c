//! The cost of a processing round on PostgreSQL: `n` deliveries (default 20,000) are acknowledged, then
//! processed in batches (default 10, a round's size at 1,000 deliveries a second) as the pipeline commits
//! them: each round reads its customers' aliases and states (one statement; `--split-reads`: one for
//! each, as before they were read together), then each delivery writes a customer's state, an outbox item,
//! four audit records and cancels two timer tokens. Prints the wall time, PostgreSQL's CPU (every process of the server on this machine) and this
//! process's CPU per round. Needs `NUDGE_TEST_POSTGRES_URL`; works in a fresh schema, dropped at the end.
//!
//! `NUDGE_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/test cargo bench -p nudge-store --bench pg_processing [-- N BATCH] [--split-reads]`

use nudge_model::{AuditRecord, AuditStage, CustomerId, TraceId};
use nudge_store::*;
use std::time::Instant;

/// User + system CPU seconds of a `/proc/<pid>/stat` line (clock ticks of 1/100 s).
fn cpu_of(stat: &str) -> f64 {
    let f: Vec<&str> = stat.rsplit(')').next().unwrap_or("").split_whitespace().collect();
    let tick = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    (tick(11) + tick(12)) / 100.0
}

/// CPU seconds used so far by every PostgreSQL process on this machine.
fn pg_cpu() -> f64 {
    let read = |p: &std::path::Path, f: &str| std::fs::read_to_string(p.join(f)).ok();
    std::fs::read_dir("/proc")
        .map(|d| {
            d.flatten()
                .map(|e| e.path())
                .filter(|p| read(p, "comm").is_some_and(|c| c.trim() == "postgres"))
                .filter_map(|p| read(&p, "stat"))
                .map(|s| cpu_of(&s))
                .sum()
        })
        .unwrap_or(0.0)
}

/// CPU seconds used so far by this process.
fn self_cpu() -> f64 {
    std::fs::read_to_string("/proc/self/stat").map(|s| cpu_of(&s)).unwrap_or(0.0)
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let Ok(url) = std::env::var("NUDGE_TEST_POSTGRES_URL") else {
        eprintln!("pg_processing: set NUDGE_TEST_POSTGRES_URL to a PostgreSQL database to run it");
        return;
    };
    let arg = |i: usize, default: usize| {
        std::env::args()
            .filter(|a| !a.starts_with("--"))
            .nth(i)
            .and_then(|a| a.parse().ok())
            .unwrap_or(default)
    };
    let (n, batch) = (arg(1, 20_000).max(100) / 100 * 100, arg(2, 10).max(1));
    let split_reads = std::env::args().any(|a| a == "--split-reads");
    let store = nudge_store::conformance::fresh_postgres(&url, "nudge_bench").await;
    for chunk in 0..(n / 100) {
        let ds: Vec<NewDelivery> = (0..100)
            .map(|i| {
                let k = chunk * 100 + i;
                NewDelivery {
                    trace_id: TraceId::new(),
                    source: "shopify".into(),
                    topic: "orders/create".into(),
                    shop: Some("demo.myshopify.com".into()),
                    webhook_id: Some(format!("w{k}")),
                    event_id: None,
                    received_at_ms: 1_000,
                    headers_json: "{}".into(),
                    body: vec![b'x'; 400],
                    dedupe_keys: vec![format!("shopify:webhook:w{k}")],
                    part: None,
                }
            })
            .collect();
        store.commit_deliveries(ds).await.unwrap();
    }
    let (c0, s0, t0) = (pg_cpu(), self_cpu(), Instant::now());
    let mut rounds = 0;
    loop {
        let b = store.pending_deliveries(batch).await.unwrap();
        if b.is_empty() {
            break;
        }
        // What the batch starts from: its customers' aliases (an id and an email key each) and states.
        let customers: Vec<CustomerId> =
            b.iter().map(|d| format!("shopify:{}", d.seq % 5000).parse().unwrap()).collect();
        let keys: Vec<String> =
            customers.iter().flat_map(|c| [c.to_string(), format!("email:{c}")]).collect();
        if split_reads {
            store.resolve_aliases(&keys).await.unwrap();
            store.load_states(&customers).await.unwrap();
        } else {
            store.resolve_with_states(&keys, &customers).await.unwrap();
        }
        let outs: Vec<ProcessOutcome> = b
            .iter()
            .map(|d| {
                let c: CustomerId = format!("shopify:{}", d.seq % 5000).parse().unwrap();
                let rec = |stage| AuditRecord {
                    trace_id: d.trace_id,
                    customer: Some(c.clone()),
                    stage,
                    at: time::OffsetDateTime::now_utc(),
                    detail: serde_json::json!({"k": "v", "seq": d.seq}),
                };
                ProcessOutcome {
                    seq: d.seq,
                    trace_id: Some(d.trace_id),
                    status: Some(DeliveryStatus::Processed),
                    states: vec![StoredState { customer: c.clone(), email: None, state: vec![7u8; 300] }],
                    audit: vec![
                        rec(AuditStage::Received),
                        rec(AuditStage::Normalized),
                        rec(AuditStage::Scored),
                        rec(AuditStage::Decided),
                    ],
                    outbox: vec![NewOutboxItem {
                        trace_id: d.trace_id,
                        customer: c.clone(),
                        destination: "klaviyo".into(),
                        action_json: "{\"a\":1}".into(),
                        origin_us: 0,
                    }],
                    cancel_timers: vec![format!("co{}", d.seq), format!("cart{}", d.seq)],
                    ..Default::default()
                }
            })
            .collect();
        store.commit_processing(outs).await.unwrap();
        rounds += 1;
    }
    let (c1, s1, el) = (pg_cpu(), self_cpu(), t0.elapsed());
    println!(
        "{rounds} rounds of {batch}: {:.0} µs wall/round, PostgreSQL {:.0} µs CPU/round, client {:.0} µs CPU/round",
        el.as_secs_f64() * 1e6 / rounds as f64,
        (c1 - c0) * 1e6 / rounds as f64,
        (s1 - s0) * 1e6 / rounds as f64
    );
    store.drop_schema().await.unwrap();
}
