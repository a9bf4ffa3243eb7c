//! Erasure of one customer in a large store: `ERASE_BENCH_DELIVERIES` deliveries (default 1,000,000), of
//! which the customer's own are `ERASE_BENCH_PERSON_TRACES` (default 1,000) carrying
//! `ERASE_BENCH_PERSON_RECORDS` audit records (default 10,000) between them. Measures the erasure in
//! `nudge.db` (`submit_privacy_job`), the ingest log's step (`erase_from_log`) and the write-ahead logs'
//! truncation (`compact`), each and together. Target: the whole under 1 s on a developer machine.
//!
//! `cargo bench -p nudge-store --bench erase` (release); for a quick look at small scale in debug:
//! `ERASE_BENCH_DELIVERIES=20000 ERASE_BENCH_PERSON_RECORDS=2000 cargo test -p nudge-store --bench erase`.

use nudge_model::{AuditRecord, AuditStage, CustomerId, TraceId};
use nudge_store::sqlite::{Durability, SqliteStore};
use nudge_store::*;
use std::sync::Arc;
use std::time::Instant;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    let deliveries = env("ERASE_BENCH_DELIVERIES", 1_000_000);
    let person_traces = env("ERASE_BENCH_PERSON_TRACES", 1_000).min(deliveries);
    let person_records = env("ERASE_BENCH_PERSON_RECORDS", 10_000);
    let per_trace = person_records.div_ceil(person_traces.max(1));
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let dir = tempfile::tempdir().expect("temp dir");
    rt.block_on(async {
        let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path(), Durability::Normal).expect("store"));
        let person: CustomerId = "shopify:7364019283746".parse().unwrap();
        let started = Instant::now();
        // Every `step`-th delivery is the person's.
        let step = (deliveries / person_traces.max(1)).max(1);
        let mut seq_done = 0usize;
        const CHUNK: usize = 2_000;
        while seq_done < deliveries {
            let n = CHUNK.min(deliveries - seq_done);
            let mut handles = Vec::with_capacity(n);
            for i in seq_done..seq_done + n {
                let s = store.clone();
                handles.push(tokio::spawn(async move {
                    let trace = TraceId::new();
                    let body = format!(
                        "{{\"id\":{i},\"email\":\"c{i}@example.org\",\"line_items\":[{{\"title\":\"Organic Tee\",\"price\":\"39.95\"}}]}}"
                    );
                    s.commit_delivery(NewDelivery {
                        trace_id: trace,
                        source: "shopify".into(),
                        topic: "orders/create".into(),
                        shop: Some("bench.myshopify.com".into()),
                        webhook_id: Some(format!("w{i}")),
                        event_id: None,
                        received_at_ms: 1,
                        headers_json: "{}".into(),
                        body: body.repeat(8).into_bytes(),
                        dedupe_keys: vec![format!("bench:webhook:w{i}")],
                        part: None,
                    })
                    .await
                    .expect("commit");
                }));
            }
            for h in handles {
                h.await.expect("task");
            }
            // Process them: the person's every `step`-th, others one record each.
            let pending = store.pending_deliveries(n).await.expect("pending");
            let at = time::OffsetDateTime::now_utc();
            let outcomes: Vec<ProcessOutcome> = pending
                .iter()
                .map(|d| {
                    let mine = (d.seq as usize).is_multiple_of(step);
                    let customer: CustomerId =
                        if mine { person.clone() } else { format!("shopify:{}", d.seq).parse().unwrap() };
                    let records = if mine { per_trace } else { 1 };
                    let audit = (0..records)
                        .map(|k| AuditRecord {
                            trace_id: d.trace_id,
                            customer: Some(customer.clone()),
                            stage: AuditStage::Decided,
                            at: at + time::Duration::milliseconds(k as i64),
                            detail: serde_json::json!({"flow": "bench", "k": k}),
                        })
                        .collect();
                    ProcessOutcome {
                        seq: d.seq,
                        trace_id: Some(d.trace_id),
                        status: Some(DeliveryStatus::Processed),
                        states: vec![StoredState {
                            customer: customer.clone(),
                            email: Some(format!("{customer}@example.org")),
                            state: format!("{{\"orders\":{}}}", d.seq).into_bytes(),
                        }],
                        audit,
                        ..Default::default()
                    }
                })
                .collect();
            store.commit_processing(outcomes).await.expect("processing");
            seq_done += n;
        }
        let audit = store.customer_audit(&person, person_records * 2).await.expect("audit").len();
        println!(
            "store: {deliveries} deliveries, the person's audit records: {audit} (built in {:.1?})",
            started.elapsed()
        );
        store.compact().await.ok();

        let t0 = Instant::now();
        let id = store
            .submit_privacy_job(NewPrivacyJob {
                kind: PrivacyJobKind::Erase,
                customers: vec![person.clone()],
                email: Some(format!("{person}@example.org")),
                phone: None,
                pseudonym: "ps_customer_bench".into(),
                reference: None,
                requested_by: "bench".into(),
                trace_id: TraceId::new(),
                at_ms: 1,
                destinations: Vec::new(),
            })
            .await
            .expect("erase");
        let t1 = Instant::now();
        let emptied = store.erase_from_log(id).await.expect("log");
        let t2 = Instant::now();
        let compacted = store.compact().await;
        let t3 = Instant::now();
        println!("erase in nudge.db: {:.1?}", t1 - t0);
        println!("ingest log ({emptied} deliveries emptied): {:.1?}", t2 - t1);
        println!("WAL truncation ({}): {:.1?}", if compacted.is_ok() { "done" } else { "partial" }, t3 - t2);
        println!("total: {:.1?} (target: under 1 s)", t3 - t0);
        assert!(store.customer_audit(&person, 10).await.expect("audit").is_empty());
    });
}
