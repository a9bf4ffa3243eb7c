//! Retention: how fast `Retention::prune` removes finished work and old audit records, in the steps the
//! sweep takes (5,000 rows of a kind a step).
//!
//! Seeds a fresh store with `--traces N` finished traces, each the way the pipeline leaves one: a delivery
//! of ~2 KB received long ago and processed, two audit records, one outbox item delivered (with its attempt
//! record and the terminal state), then forgets the dedupe keys and prunes everything with work and audit
//! cutoffs after the seeding. Prints the seeding rate, then for the prune: steps, rows removed by kind, wall
//! time, rows per second and the slowest step. The embedded store always; PostgreSQL with `--postgres URL`
//! (in a schema of its own, dropped afterwards).
//!
//! ```text
//! cargo bench -p nudge-store --bench retention -- --traces 50000 --postgres postgres://postgres@127.0.0.1:5432/test
//! ```

use nudge_model::{AuditRecord, AuditStage, CustomerId, TraceId};
use nudge_store::prelude::*;
use nudge_store::*;
use std::sync::Arc;
use std::time::{Duration, Instant};

const USAGE: &str = "usage: retention [--traces N] [--postgres URL]";
const STEP: usize = 5_000;
const BATCH: usize = 500;

fn parse_args() -> (usize, Option<String>) {
    let (mut traces, mut postgres) = (50_000, None);
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--traces" => traces = it.next().and_then(|v| v.parse().ok()).expect(USAGE),
            "--postgres" => postgres = Some(it.next().expect(USAGE)),
            "--bench" => {}
            _ => panic!("{USAGE}"),
        }
    }
    (traces, postgres)
}

fn now_ms() -> i64 {
    (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64
}

fn body(i: usize) -> Vec<u8> {
    let mut b = format!("{{\"id\":{i},\"email\":\"c{i}@example.org\",\"line_items\":[");
    while b.len() < 2_000 {
        b.push_str("{\"title\":\"Organic Tee\",\"price\":\"39.95\",\"quantity\":1},");
    }
    b.push_str("{}]}");
    b.into_bytes()
}

async fn seed(s: &Arc<dyn Store>, traces: usize) {
    let started = Instant::now();
    let mut done = 0;
    while done < traces {
        let n = BATCH.min(traces - done);
        let ds: Vec<NewDelivery> = (done..done + n)
            .map(|i| NewDelivery {
                trace_id: TraceId::new(),
                source: "shopify".into(),
                topic: "orders/create".into(),
                shop: Some("demo.myshopify.com".into()),
                webhook_id: Some(format!("w{i}")),
                event_id: None,
                received_at_ms: 1_000 + i as i64,
                headers_json: "{}".into(),
                body: body(i),
                dedupe_keys: vec![format!("shopify:webhook:w{i}")],
                part: None,
            })
            .collect();
        s.commit_deliveries(ds).await.unwrap();
        let pending = s.pending_deliveries(n).await.unwrap();
        let at = time::OffsetDateTime::now_utc();
        let outcomes = pending
            .iter()
            .map(|d| {
                let customer: CustomerId = format!("shopify:{}", d.seq).parse().unwrap();
                let record = |stage| AuditRecord {
                    trace_id: d.trace_id,
                    customer: Some(customer.clone()),
                    stage,
                    at,
                    detail: serde_json::json!({"topic": "orders/create", "segment": "loyal"}),
                };
                ProcessOutcome {
                    seq: d.seq,
                    trace_id: Some(d.trace_id),
                    status: Some(DeliveryStatus::Processed),
                    audit: vec![record(AuditStage::Received), record(AuditStage::Scored)],
                    outbox: vec![NewOutboxItem {
                        trace_id: d.trace_id,
                        customer: customer.clone(),
                        destination: "klaviyo".into(),
                        action_json: "{\"type\":\"profile_sync\",\"properties\":{\"ai_segment\":\"loyal\"}}"
                            .into(),
                        origin_us: 0,
                    }],
                    ..Default::default()
                }
            })
            .collect();
        s.commit_processing(outcomes).await.unwrap();
        let due = s.due_outbox(i64::MAX / 2, n).await.unwrap();
        let attempts = due
            .iter()
            .map(|i| AttemptRecord {
                item_id: i.id,
                trace_id: i.trace_id,
                result: AttemptResult::Delivered,
                audit: AuditRecord {
                    trace_id: i.trace_id,
                    customer: Some(i.customer.clone()),
                    stage: AuditStage::DeliveryAttempt,
                    at,
                    detail: serde_json::json!({"status": 202}),
                },
                at_ms: now_ms(),
            })
            .collect();
        s.record_attempts(attempts).await.unwrap();
        done += n;
    }
    let secs = started.elapsed().as_secs_f64();
    println!("  seeded {traces} finished traces in {secs:.1} s ({:.0}/s)", traces as f64 / secs);
}

/// `sampled`: the same PostgreSQL store opened to count from samples, and the store to refresh the planner's
/// statistics with (as the leader does every 15 s) before counting.
async fn measure(
    name: &str,
    s: Arc<dyn Store>,
    traces: usize,
    sampled: Option<(Arc<dyn Store>, Arc<nudge_store::postgres::PgStore>)>,
) {
    println!("{name}:");
    seed(&s, traces).await;
    if let Some((_, pg)) = &sampled {
        pg.analyze_hot_tables(false).await.unwrap();
    }
    let sampled = sampled.map(|(store, _)| store);
    // What the console's pulse costs on a store this size: `stats` counted exactly, and (PostgreSQL) from a
    // sample of each large table's pages.
    for (how, store) in std::iter::once(("exact", &s)).chain(sampled.iter().map(|x| ("sampled", x))) {
        let t = Instant::now();
        let st = store.stats().await.unwrap();
        println!(
            "  stats ({how}): {:.1} ms; deliveries {}, delivered {}, estimated {}",
            t.elapsed().as_secs_f64() * 1e3,
            st.deliveries,
            st.outbox_delivered,
            st.estimated
        );
    }
    s.prune_dedupe(i64::MAX).await.unwrap();
    let cutoff = now_ms() + 60_000;
    let request = PruneRequest { work_before_ms: Some(cutoff), audit_before_ms: Some(cutoff), limit: STEP };
    let started = Instant::now();
    let (mut total, mut steps, mut slowest) = (Pruned::default(), 0, Duration::ZERO);
    loop {
        let t = Instant::now();
        let p = s.prune(request).await.unwrap();
        slowest = slowest.max(t.elapsed());
        steps += 1;
        total.add(p);
        if !p.more_than(STEP) {
            break;
        }
    }
    let secs = started.elapsed().as_secs_f64();
    let rows = total.deliveries + total.outbox + total.audit + total.terminal;
    println!(
        "  pruned in {steps} steps, {secs:.2} s: deliveries {}, outbox {}, audit rows {}, terminal {}; \
         {:.0} rows/s, {:.0} traces/s; slowest step {:.0} ms",
        total.deliveries,
        total.outbox,
        total.audit,
        total.terminal,
        rows as f64 / secs,
        traces as f64 / secs,
        slowest.as_secs_f64() * 1e3
    );
    let left = s.stats().await.unwrap();
    println!(
        "  left: {} deliveries (the newest processed one may stay), {} outbox items",
        left.deliveries,
        left.outbox_delivered + left.outbox_pending
    );
}

#[tokio::main]
async fn main() {
    let (traces, postgres) = parse_args();
    let dir = tempfile::tempdir().unwrap();
    let sqlite =
        nudge_store::sqlite::SqliteStore::open(dir.path(), nudge_store::sqlite::Durability::Normal).unwrap();
    measure("embedded (SQLite, durability normal)", Arc::new(sqlite), traces, None).await;
    match postgres {
        Some(url) => {
            let pg = nudge_store::conformance::fresh_postgres(&url, "bench_retention").await;
            let mut config = nudge_store::postgres::PgConfig::new(&url);
            config.schema = Some(pg.schema().to_string());
            config.exact_stats_below = 1;
            let sampled = Arc::new(nudge_store::postgres::PgStore::connect(&config).await.unwrap());
            measure("PostgreSQL", pg.clone(), traces, Some((sampled.clone() as Arc<dyn Store>, pg.clone())))
                .await;
            sampled.close().await;
            pg.drop_schema().await.unwrap();
        }
        None => println!("PostgreSQL: skipped (no --postgres URL)"),
    }
}
