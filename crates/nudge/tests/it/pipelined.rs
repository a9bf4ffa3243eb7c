//! The processing worker overlaps a batch's commit with computing the next batch on top of it. These tests
//! hold it to the one-batch-at-a-time result.

use nudge::pipeline::{Pipeline, Scoring};
use nudge_ingest::shopify::fixtures::{CustomerFixture, LineItemFixture, OrderFixture, order_json, to_bytes};
use nudge_model::TraceId;
use nudge_store::sqlite::{Durability, SqliteStore};
use nudge_store::{NewDelivery, Store};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

const CUSTOMERS: u64 = 4;
const ROUNDS: u64 = 40;

/// Orders from a few customers, interleaved so consecutive batches keep touching the same customers,
/// plus guest orders under those customers' emails (resolved through the secondary key).
fn deliveries() -> Vec<NewDelivery> {
    let t0 = OffsetDateTime::from_unix_timestamp(1_780_000_000).expect("valid instant");
    let mut out = Vec::new();
    for round in 0..ROUNDS {
        for c in 0..CUSTOMERS {
            let at = t0 + Duration::from_secs(60 * (round * CUSTOMERS + c));
            let id = 5_000_000_000 + round * 100 + c;
            let item = LineItemFixture::new(9_100_000_000 + c % 3, "Tee", 1 + (round % 2) as u32, "19.90");
            let order = if round % 5 == 3 {
                OrderFixture::new(id, at).guest(&format!("c{c}@example.org")).line_item(item)
            } else {
                let customer = CustomerFixture::new(1_000 + c, Some(&format!("c{c}@example.org")), at);
                OrderFixture::new(id, at).customer(customer).line_item(item)
            };
            out.push(NewDelivery {
                trace_id: TraceId::new(),
                source: "shopify".into(),
                topic: "orders/create".into(),
                shop: Some("s.myshopify.com".into()),
                webhook_id: Some(format!("w{id}")),
                event_id: None,
                received_at_ms: 1_000,
                headers_json: "{}".into(),
                body: to_bytes(&order_json(&order)),
                dedupe_keys: vec![format!("shopify:webhook:{id}")],
                part: None,
            });
        }
    }
    out
}

async fn store_with(ds: &[NewDelivery]) -> (Arc<dyn Store>, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store: Arc<dyn Store> =
        Arc::new(SqliteStore::open(dir.path(), Durability::Full).expect("store opens"));
    for d in ds {
        store.commit_delivery(d.clone()).await.expect("delivery commits");
    }
    (store, dir)
}

fn pipeline(store: Arc<dyn Store>) -> Arc<Pipeline> {
    Arc::new(Pipeline {
        store,
        scoring: Arc::new(Scoring::new(nudge_scoring::RulesScorer::default())),
        policy: nudge_policy::PolicyConfig::default(),
        flows: Arc::new(nudge::pipeline::Flows::new(
            nudge_policy::flows::FlowSet::compile(
                &nudge_policy::flows::FlowSet::default_specs(
                    &["klaviyo"],
                    &nudge_policy::PolicyConfig::default(),
                ),
                &["klaviyo"],
            )
            .expect("the built-in flows compile"),
        )),
        abandon_after: Duration::from_secs(3600),
        batch_size: 3,
        approval_counts: Default::default(),
        browse_retention: Duration::from_secs(30 * 86_400),
        offers: Default::default(),
        share: None,
        processed_latency: None,
        sources: Arc::new({
            let mut r = nudge_ingest::source::Registry::new();
            r.register("shopify", Arc::new(nudge_ingest::shopify::ShopifySource::new(Vec::new())));
            r
        }),
    })
}

/// What processing derived, in a comparable form: the states, how many pushes wait, and each customer's
/// first push (without its scoring instant, which is wall-clock time).
async fn derived(store: &Arc<dyn Store>) -> (Vec<(String, Vec<u8>)>, u64, Vec<(String, serde_json::Value)>) {
    let states = store
        .scan_states(None, 1_000)
        .await
        .unwrap()
        .into_iter()
        .map(|s| (s.customer.to_string(), s.state))
        .collect();
    let outbox = store
        .due_outbox(i64::MAX / 2, 10_000)
        .await
        .unwrap()
        .into_iter()
        .map(|i| {
            let mut action: serde_json::Value = serde_json::from_str(&i.action_json).unwrap();
            if let Some(a) = action["attributes"].as_object_mut() {
                a.remove("ai_scored_at");
            }
            (i.customer.to_string(), action)
        })
        .collect();
    (states, store.stats().await.unwrap().outbox_pending, outbox)
}

/// Equal, except that numbers may differ by one unit of the scores' coarsest rounding (0.1): the two
/// runs score at their own wall-clock instants, seconds apart (more under load), and a score that moves
/// continuously with time can cross a rounding boundary in between.
fn same_but_for_the_clock(a: &serde_json::Value, b: &serde_json::Value) -> bool {
    use serde_json::Value;
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => {
            (x.as_f64().unwrap_or(f64::NAN) - y.as_f64().unwrap_or(f64::NAN)).abs() <= 0.1 + 1e-9
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(a, b)| same_but_for_the_clock(a, b))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter().all(|(k, a)| y.get(k).is_some_and(|b| same_but_for_the_clock(a, b)))
        }
        _ => a == b,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overlapping_batches_derive_what_one_batch_at_a_time_derives() {
    let ds = deliveries();
    let (one_at_a_time, _d1) = store_with(&ds).await;
    let p = pipeline(one_at_a_time.clone());
    while p.step().await.expect("step").0 > 0 {}

    let (overlapped, _d2) = store_with(&ds).await;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let worker = tokio::spawn(pipeline(overlapped.clone()).run(
        Arc::new(tokio::sync::Notify::new()),
        Arc::new(tokio::sync::Notify::new()),
        stopped,
    ));
    // A guard against a hang, generous for a machine starved by other tests.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while let backlog @ 1.. = overlapped.backlog().await.unwrap().0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "processing did not finish: {backlog} deliveries pending"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    worker.await.unwrap();

    let got = derived(&overlapped).await;
    assert_eq!(got.0.len(), CUSTOMERS as usize, "guest orders were resolved to the known customers");
    assert_eq!(got.1, ds.len() as u64, "one push per delivery");
    let want = derived(&one_at_a_time).await;
    assert!(got.0 == want.0 && got.1 == want.1, "overlapped processing derived other states or counts");
    assert_eq!(got.2.len(), want.2.len());
    for ((c1, a1), (c2, a2)) in got.2.iter().zip(&want.2) {
        assert_eq!(c1, c2, "the pushes are in the same order");
        assert!(same_but_for_the_clock(a1, a2), "overlapped processing pushed something else:\n{a1}\n{a2}");
    }
    for d in &ds {
        let t = nudge_store::terminal_of(&*overlapped, d.trace_id).await.unwrap();
        let view = overlapped.trace(d.trace_id).await.unwrap().expect("trace");
        assert!(t.is_some() || !view.records.is_empty(), "every delivery was processed");
    }
}
