//! The copy stage's overhead beyond the LLM's own latency, and the fallback time against a hanging LLM:
//! `cargo bench -p nudge --bench copy [-- --runs 500 --latency-ms 20 --timeout-ms 300]`.
//!
//! The LLM fake answers after a fixed `--latency-ms`. Each run fills one outbox item that holds a copy
//! request (`CopyStage::fill_outbox`: the request read, the prompt rendered, the bearer POST, the answer
//! validated, the filled action, its audit record and the month's usage committed to an embedded store);
//! the overhead is the run's time minus the fake's latency. Also timed: the generation alone (without the
//! store write), a batch of 32 items filled concurrently (its wall time against one latency), and, against
//! the fake set to hang, how long past `llm.timeout` the fallback copy comes back.

use nudge::copy::CopyStage;
use nudge_llm::{LlmConfig, PromptSpec};
use nudge_model::{Action, COPY_REQUEST_PROPERTY, CopyRequest, CustomerId, Segment, TraceId};
use nudge_store::{NewOutboxItem, ProcessOutcome, Store};
use nudge_testkit::{FakeLlm, FakeLlmConfig, LlmAnswer};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn prompt() -> PromptSpec {
    serde_json::from_value(serde_json::json!({
        "name": "winback", "version": 1,
        "system": "You write short retail copy for a {{segment}} customer.",
        "user": "Scores: {{scores}}. Likes: {{preferred_category}}. Recommended: {{products}}.",
        "slots": {"subject": {"max_chars": 60}, "preheader": {"max_chars": 90}, "body": {"max_chars": 400}},
        "fallback": {"subject": "Picked for you", "preheader": "A few things we think you'll like",
                     "body": "We saved a few picks for you."}
    }))
    .unwrap()
}

fn action(n: usize) -> Action {
    let request = CopyRequest {
        prompt: "winback".into(),
        version: 1,
        target: "ai_copy".into(),
        segment: Segment::Lapsed,
        scores: [("churn_risk".to_string(), 71.0), ("predicted_clv".to_string(), 182.5)]
            .into_iter()
            .collect(),
        labels: [("preferred_category".to_string(), "outdoor".to_string())].into_iter().collect(),
        products: vec!["Trail running shoe".into(), "Merino wool socks".into()],
    };
    let mut properties = serde_json::Map::new();
    properties.insert(COPY_REQUEST_PROPERTY.into(), serde_json::to_value(request).unwrap());
    Action::TriggerEvent {
        customer: customer(n),
        email: Some(format!("c{n}@example.org")),
        name: "AI Winback".into(),
        properties,
        value: None,
        time: time::OffsetDateTime::now_utc(),
        unique_id: format!("nudge:winback:{n}"),
    }
}

fn customer(n: usize) -> CustomerId {
    format!("shopify:{n}").parse().unwrap()
}

fn arg(name: &str, default: u64) -> u64 {
    std::env::args().skip_while(|a| a != name).nth(1).and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn quantiles(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    let q = |q: f64| v[((v.len() - 1) as f64 * q).round() as usize];
    (q(0.5), q(0.99), v[v.len() - 1])
}

/// Enqueues `n` outbox items holding copy requests; returns (id, trace, customer, action) per item.
async fn enqueue(store: &Arc<dyn Store>, first: usize, n: usize) -> Vec<(i64, TraceId, CustomerId, Action)> {
    let trace = TraceId::new();
    let outbox = (first..first + n)
        .map(|i| NewOutboxItem {
            trace_id: trace,
            customer: customer(i),
            destination: "klaviyo".into(),
            action_json: serde_json::to_string(&action(i)).unwrap(),
            origin_us: 0,
        })
        .collect();
    store
        .commit_processing(vec![ProcessOutcome { trace_id: Some(trace), outbox, ..Default::default() }])
        .await
        .unwrap();
    let due = store.due_outbox_for("klaviyo", i64::MAX / 2, n * 2 + first).await.unwrap();
    due.into_iter()
        .filter(|i| {
            let c: usize = i.customer.to_string()["shopify:".len()..].parse().unwrap();
            (first..first + n).contains(&c)
        })
        .map(|i| {
            let a: Action = serde_json::from_str(&i.action_json).unwrap();
            (i.id, i.trace_id, i.customer, a)
        })
        .collect()
}

fn main() {
    let runs = arg("--runs", 500) as usize;
    let latency = Duration::from_millis(arg("--latency-ms", 20));
    let timeout = Duration::from_millis(arg("--timeout-ms", 300));
    nudge_testkit::ensure_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    rt.block_on(async {
        let fake = FakeLlm::start(FakeLlmConfig::default()).await.unwrap();
        fake.set_latency(latency);
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(
            nudge_store::sqlite::SqliteStore::open(dir.path(), nudge_store::sqlite::Durability::Normal).unwrap(),
        );
        let mut cfg = LlmConfig::new(&fake.base_url(), &fake.config().model, &fake.config().api_key);
        cfg.timeout = timeout.max(latency * 4);
        let client = Arc::new(nudge_llm::LlmClient::new(cfg).unwrap());
        let stage = CopyStage::new(store.clone(), Some(client), vec![prompt()]);
        let lat = latency.as_secs_f64() * 1e3;

        // Warm up the connection pool and the store.
        let warm = enqueue(&store, 0, 5).await;
        for w in warm {
            stage.fill_outbox(vec![w]).await;
        }
        let items = enqueue(&store, 1_000, runs).await;
        let mut filled = Vec::with_capacity(runs);
        let mut generated = Vec::with_capacity(runs);
        let mut paired = Vec::with_capacity(runs);
        let raw = reqwest::Client::new();
        let endpoint = format!("{}/chat/completions", fake.base_url());
        for item in items {
            let request = match &item.3 {
                Action::TriggerEvent { properties, .. } => CopyRequest::pending_in(properties).unwrap().unwrap(),
                _ => unreachable!(),
            };
            // The same request by a bare HTTP client: the LLM's latency as any caller sees it.
            let body = nudge_llm::build_body(
                stage.client().unwrap().config(),
                &prompt(),
                &nudge_llm::render(&prompt(), &nudge_llm::CopyContext::from_request(&request)),
            );
            let t = Instant::now();
            let r = raw.post(&endpoint).bearer_auth(&fake.config().api_key).json(&body).send().await.unwrap();
            let _ = r.bytes().await.unwrap();
            let bare = t.elapsed().as_secs_f64() * 1e3;
            let t = Instant::now();
            let copy = stage.generate(&request).await.unwrap();
            let took = t.elapsed().as_secs_f64() * 1e3;
            generated.push(took - lat);
            paired.push(took - bare);
            assert!(!copy.fallback, "{:?}", copy.reason);
            let t = Instant::now();
            let r = stage.fill_outbox(vec![item]).await;
            filled.push(t.elapsed().as_secs_f64() * 1e3 - lat);
            assert!(matches!(r[0], Some(Ok(_))), "{r:?}");
        }
        let (p50, p99, max) = quantiles(generated);
        println!("generation alone, beyond the LLM's {lat:.0} ms ({runs} runs): p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms");
        let (p50, p99, max) = quantiles(paired);
        println!("generation alone, beyond a bare POST of the same body ({runs} runs): p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms");
        let (p50, p99, max) = quantiles(filled);
        println!("generation + stored fill, beyond the LLM's {lat:.0} ms ({runs} runs): p50 {p50:.2} ms, p99 {p99:.2} ms, max {max:.2} ms");

        let mut batches = Vec::new();
        for b in 0..10 {
            let items = enqueue(&store, 10_000 + b * 100, 32).await;
            let t = Instant::now();
            let r = stage.fill_outbox(items).await;
            batches.push(t.elapsed().as_secs_f64() * 1e3);
            assert!(r.iter().all(|x| matches!(x, Some(Ok(_)))));
        }
        let (p50, _, max) = quantiles(batches);
        println!("a batch of 32 filled concurrently (10 batches): wall p50 {p50:.1} ms, max {max:.1} ms (one LLM latency: {lat:.0} ms)");

        // A hanging LLM: the fallback comes back at the timeout.
        let mut cfg = LlmConfig::new(&fake.base_url(), &fake.config().model, &fake.config().api_key);
        cfg.timeout = timeout;
        let client = Arc::new(nudge_llm::LlmClient::new(cfg).unwrap());
        let hanging = CopyStage::new(store.clone(), Some(client), vec![prompt()]);
        fake.set_mode(LlmAnswer::Hang);
        let mut late = Vec::new();
        for i in 0..20 {
            let items = enqueue(&store, 20_000 + i, 1).await;
            let t = Instant::now();
            let r = hanging.fill_outbox(items).await;
            late.push(t.elapsed().as_secs_f64() * 1e3 - timeout.as_secs_f64() * 1e3);
            match &r[0] {
                Some(Ok(Action::TriggerEvent { properties, .. })) => assert_eq!(properties["ai_copy"]["fallback"], true),
                other => panic!("{other:?}"),
            }
        }
        let (p50, p99, max) = quantiles(late);
        println!(
            "hanging LLM, llm.timeout {} ms: fallback stored {p50:.1} ms past the timeout (p50), p99 {p99:.1} ms, max {max:.1} ms (20 runs)",
            timeout.as_millis()
        );
        fake.shutdown().await;
    });
}
