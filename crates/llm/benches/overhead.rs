//! What `LlmClient::generate` adds beyond the model's own latency, hand-timed.
//!
//! Against the fake with no added latency: the time of `generate` minus the time of a bare POST of the same
//! body with a plain HTTP client (the round trip any client pays), per call, p50 and p99 over the runs; and
//! the pure part alone (render, request body, answer validation).
//!
//! `cargo bench -p nudge-llm --bench overhead [-- --runs N]`

use nudge_llm::request::{build_body, parse_answer, render};
use nudge_llm::{CopyContext, LlmClient, LlmConfig, PromptSpec, SlotSpec};
use nudge_model::Segment;
use nudge_testkit::{FakeLlm, FakeLlmConfig};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

fn prompt() -> PromptSpec {
    PromptSpec {
        name: "winback".into(),
        version: 1,
        system: "You write short retail copy for a {{segment}} customer.".into(),
        user: "Scores: {{scores}}. Likes: {{preferred_category}}. Recommended: {{products}}.".into(),
        slots: BTreeMap::from([
            ("subject".into(), SlotSpec { max_chars: Some(60) }),
            ("preheader".into(), SlotSpec { max_chars: Some(90) }),
            ("body".into(), SlotSpec { max_chars: Some(400) }),
        ]),
        fallback: BTreeMap::from([
            ("subject".into(), "Picked for you".into()),
            ("preheader".into(), "A few things we think you'll like".into()),
            ("body".into(), "We saved a few picks for you.".into()),
        ]),
    }
}

fn quantile(sorted: &[Duration], q: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * q).round() as usize]
}

fn main() {
    let runs: usize =
        std::env::args().skip_while(|a| a != "--runs").nth(1).and_then(|n| n.parse().ok()).unwrap_or(2000);
    nudge_testkit::ensure_crypto_provider();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    let p = prompt();
    let ctx = CopyContext::new(Segment::Lapsed)
        .score("churn_risk", 0.8)
        .score("predicted_clv", 182.5)
        .label("preferred_category", "outdoor")
        .product("Trail running shoe")
        .product("Merino wool socks")
        .product("Insulated bottle");

    rt.block_on(async {
        let fake = FakeLlm::start(FakeLlmConfig::default()).await.unwrap();
        let cfg = LlmConfig::new(&fake.base_url(), &fake.config().model, &fake.config().api_key);
        let body = serde_json::to_vec(&build_body(&cfg, &p, &render(&p, &ctx))).unwrap();
        let llm = LlmClient::new(cfg.clone()).unwrap();
        let raw = reqwest::Client::new();
        let mut with_client = Vec::with_capacity(runs);
        let mut bare = Vec::with_capacity(runs);
        for i in 0..runs + 100 {
            let t = Instant::now();
            let g = llm.generate(&p, &ctx).await;
            let a = t.elapsed();
            assert!(!g.fallback_used, "{:?}", g.reason);
            let t = Instant::now();
            let r = raw
                .post(cfg.endpoint())
                .bearer_auth(&cfg.api_key)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            let _ = r.bytes().await.unwrap();
            let b = t.elapsed();
            if i >= 100 {
                with_client.push(a);
                bare.push(b);
            }
        }
        let mut over: Vec<Duration> =
            with_client.iter().zip(&bare).map(|(a, b)| a.saturating_sub(*b)).collect();
        over.sort();
        with_client.sort();
        bare.sort();
        println!(
            "llm/generate vs bare POST ({runs} calls, fake with no latency): generate p50 {:?} p99 {:?}; bare p50 {:?} p99 {:?}; overhead p50 {:?} p99 {:?}",
            quantile(&with_client, 0.5),
            quantile(&with_client, 0.99),
            quantile(&bare, 0.5),
            quantile(&bare, 0.99),
            quantile(&over, 0.5),
            quantile(&over, 0.99),
        );
        let answer: serde_json::Value = {
            let r = raw
                .post(cfg.endpoint())
                .bearer_auth(&cfg.api_key)
                .header("content-type", "application/json")
                .body(body.clone())
                .send()
                .await
                .unwrap();
            r.json().await.unwrap()
        };
        let mut pure = Vec::with_capacity(runs);
        for _ in 0..runs {
            let t = Instant::now();
            let b = serde_json::to_vec(&build_body(&cfg, &p, &render(&p, &ctx))).unwrap();
            let slots = parse_answer(&p, &answer).unwrap();
            std::hint::black_box((b, slots));
            pure.push(t.elapsed());
        }
        pure.sort();
        println!(
            "llm/pure render + body + validation ({runs} runs): p50 {:?} p99 {:?}",
            quantile(&pure, 0.5),
            quantile(&pure, 0.99)
        );
        fake.shutdown().await;
    });
}
