//! `[[scoring.custom]]` through nudge: configuration errors exit 2 naming the key; the pipeline serves a
//! live model's scores in profile pushes, records a shadow model's in the audit trail only, and keeps
//! processing (with the labelled fallback) when the HTTP scorer hangs or fails.

use nudge::pipeline::{Pipeline, Scoring};
use nudge_custom::CustomModels;
use nudge_ingest::shopify::fixtures::{CustomerFixture, LineItemFixture, OrderFixture, order_json, to_bytes};
use nudge_model::{AuditStage, CustomerId, PseudonymKey, TraceId};
use nudge_store::sqlite::{Durability, SqliteStore};
use nudge_store::{NewDelivery, Store};
use nudge_testkit::{FakeScorer, FakeScorerConfig, ScorerMode};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;

const KEY: &str = "0123456789abcdef0123456789abcdef-test-key";

fn nudge(dir: &Path, config: &str, args: &[&str]) -> Output {
    let path = dir.join("nudge.toml");
    std::fs::write(&path, config).unwrap();
    Command::new(env!("CARGO_BIN_EXE_nudge"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--config")
        .arg(&path)
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("NUDGE_CONFIG")
        .output()
        .expect("the nudge binary runs")
}

#[test]
fn bad_custom_models_are_config_errors_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let key = format!("[privacy]\npseudonym_key = \"{KEY}\"\n");
    let http = |extra: &str| {
        format!(
            "{key}[[scoring.custom]]\nname = \"m\"\nhttp = {{ url = \"http://127.0.0.1:9/score\" }}\ninputs = {{ x = \"customer.orders_count\" }}\noutputs = {{ s = {{ output = \"s\" }} }}\n{extra}"
        )
    };
    let cases: Vec<(String, &str)> = vec![
        (
            format!(
                "{key}[[scoring.custom]]\nname = \"m\"\nonnx = \"m.onnx\"\nhttp = {{ url = \"http://127.0.0.1:9/score\" }}\ninputs = {{ x = \"customer.orders_count\" }}\noutputs = {{ s = {{ output = \"s\" }} }}\n"
            ),
            "scoring.custom[0].onnx",
        ),
        (http("").replace("http://127.0.0.1:9/score", "ftp://127.0.0.1/score"), "scoring.custom[0].http.url"),
        (http("").replace("customer.orders_count", "customer.orders"), "scoring.custom[0].inputs.x"),
        (
            http("").replace("[privacy]\npseudonym_key", "[pipeline]\nattribute_prefix = \"ai_\"\n#"),
            "scoring.custom[0].http",
        ),
        (
            http(
                "[[scoring.custom]]\nname = \"m\"\nhttp = { url = \"http://127.0.0.1:9/other\" }\ninputs = { x = \"customer.aov\" }\noutputs = { t = { output = \"t\" } }\n",
            ),
            "scoring.custom[1].name",
        ),
        (
            http(
                "[[scoring.custom]]\nname = \"n\"\nhttp = { url = \"http://127.0.0.1:9/other\" }\ninputs = { x = \"customer.aov\" }\noutputs = { s = { output = \"t\" } }\n",
            ),
            "scoring.custom[1].outputs.s",
        ),
    ];
    for (config, key_path) in cases {
        let out = nudge(dir.path(), &config, &["config", "check"]);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{config}\n{err}");
        assert!(err.contains(key_path), "expected `{key_path}` in: {err}\n{config}");
    }
}

#[cfg(not(feature = "onnx"))]
#[test]
fn an_onnx_model_without_the_feature_says_how_to_build() {
    let dir = tempfile::tempdir().unwrap();
    let config = "[[scoring.custom]]\nname = \"m\"\nonnx = \"m.onnx\"\ninputs = { X = [\"customer.orders_count\"] }\noutputs = { s = { output = \"probabilities\", index = 1 } }\n";
    let out = nudge(dir.path(), config, &["config", "check"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("scoring.custom[0].onnx") && err.contains("--features onnx"), "{err}");
}

fn delivery(n: u64) -> NewDelivery {
    order_delivery(n, n % 3, Duration::from_secs(60 * n))
}

/// Order `n` of customer `c`, `after` the first instant.
fn order_delivery(n: u64, c: u64, after: Duration) -> NewDelivery {
    let at = OffsetDateTime::from_unix_timestamp(1_780_000_000).unwrap() + after;
    let customer = CustomerFixture::new(1_000 + c, Some(&format!("c{c}@example.org")), at);
    let order = OrderFixture::new(5_000_000_000 + n, at).customer(customer).line_item(LineItemFixture::new(
        9_100_000_000,
        "Tee",
        1,
        "19.90",
    ));
    NewDelivery {
        trace_id: TraceId::new(),
        source: "shopify".into(),
        topic: "orders/create".into(),
        shop: Some("s.myshopify.com".into()),
        webhook_id: Some(format!("w{n}")),
        event_id: None,
        received_at_ms: 1_000,
        headers_json: "{}".into(),
        body: to_bytes(&order_json(&order)),
        dedupe_keys: vec![format!("shopify:webhook:{n}")],
        part: None,
    }
}

async fn setup(models: CustomModels, n: u64) -> (Arc<dyn Store>, Arc<Pipeline>, tempfile::TempDir) {
    setup_with(models, (0..n).map(delivery).collect()).await
}

async fn setup_with(
    models: CustomModels,
    deliveries: Vec<NewDelivery>,
) -> (Arc<dyn Store>, Arc<Pipeline>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path(), Durability::Full).unwrap());
    for d in deliveries {
        store.commit_delivery(d).await.unwrap();
    }
    let scoring = Arc::new(Scoring::new(nudge_scoring::RulesScorer::default()));
    scoring.set_custom(models);
    let policy = nudge_policy::PolicyConfig::default();
    let flows = nudge_policy::flows::FlowSet::compile(
        &nudge_policy::flows::FlowSet::default_specs(&["klaviyo"], &policy),
        &["klaviyo"],
    )
    .unwrap();
    let pipeline = Arc::new(Pipeline {
        store: store.clone(),
        scoring,
        policy,
        flows: Arc::new(nudge::pipeline::Flows::new(flows)),
        abandon_after: Duration::from_secs(3600),
        batch_size: 50,
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
    });
    (store, pipeline, dir)
}

fn http_models(url: &str, mode: &str, output: &str) -> CustomModels {
    nudge_testkit::ensure_crypto_provider();
    let spec: nudge_custom::CustomModelSpec = toml::from_str(&format!(
        r#"name = "churn_http"
http = {{ url = "{url}", timeout = "300ms", failures = 2, cooldown = "1h" }}
mode = "{mode}"
inputs = {{ orders = "customer.orders_count", spent = "customer.total_spent" }}
outputs = {{ {output} = {{ output = "churn", min = 0.0, max = 1.0, fallback = "churn_risk" }} }}"#
    ))
    .unwrap();
    CustomModels::load(&[spec], Path::new("."), Some(PseudonymKey::from_bytes(KEY.as_bytes()))).unwrap()
}

/// Every pushed profile's attributes.
async fn pushes(store: &Arc<dyn Store>) -> Vec<serde_json::Map<String, serde_json::Value>> {
    store
        .due_outbox(i64::MAX / 2, 10_000)
        .await
        .unwrap()
        .into_iter()
        .filter_map(|i| {
            let a: serde_json::Value = serde_json::from_str(&i.action_json).unwrap();
            a["attributes"].as_object().cloned()
        })
        .collect()
}

/// The `custom` part of every scored audit record of a customer.
async fn audited(store: &Arc<dyn Store>, customer: &str) -> Vec<serde_json::Value> {
    let c: CustomerId = customer.parse().unwrap();
    store
        .customer_audit(&c, 1_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.stage == AuditStage::Scored)
        .map(|r| r.detail["custom"].clone())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_scorer_reaches_the_profile_push_and_a_shadow_one_only_the_audit() {
    let fake = FakeScorer::start(FakeScorerConfig::default()).await.unwrap();
    let (store, p, _d) = setup(http_models(&fake.url(), "live", "custom_churn"), 6).await;
    assert_eq!(p.step().await.unwrap().0, 6);
    let pushed = pushes(&store).await;
    assert!(!pushed.is_empty());
    for a in &pushed {
        // The fake's logistic of the features of the state the batch started from (new customers: none).
        let v = a["ai_custom_churn"].as_f64().expect("the live score is pushed");
        assert!((0.5..1.0).contains(&v), "{v}");
        assert_ne!(a["ai_custom_churn"], a["ai_churn_risk"], "not the fallback");
    }
    let records = audited(&store, "shopify:1000").await;
    assert!(!records.is_empty());
    assert_eq!(records[0][0]["model"], "churn_http");
    assert!(records[0][0]["outputs"]["custom_churn"].is_number(), "{}", records[0]);
    assert!(fake.requests().iter().all(|r| r.status == 200 && !r.body.contains("shopify:")));
    fake.shutdown().await;

    let fake = FakeScorer::start(FakeScorerConfig::default()).await.unwrap();
    let (store, p, _d) = setup(http_models(&fake.url(), "shadow", "shadow_churn"), 6).await;
    p.step().await.unwrap();
    for a in pushes(&store).await {
        assert!(!a.contains_key("ai_shadow_churn"), "a shadow score is never pushed: {a:?}");
    }
    let records = audited(&store, "shopify:1001").await;
    assert_eq!(records[0][0]["mode"], "shadow");
    assert!(records[0][0]["outputs"]["shadow_churn"].is_number(), "recorded: {}", records[0]);
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hanging_or_failing_scorer_never_stops_the_pipeline() {
    for mode in [ScorerMode::Hang, ScorerMode::ServerError, ScorerMode::Garbage] {
        let fake = FakeScorer::start(FakeScorerConfig::default()).await.unwrap();
        fake.set_mode(mode);
        let models = http_models(&fake.url(), "live", "custom_churn");
        let (store, p, _d) = setup(models, 9).await;
        let started = Instant::now();
        let mut processed = 0;
        while processed < 9 {
            let (n, _) = p.step().await.unwrap();
            assert!(n > 0, "{mode:?}: the pipeline stalled");
            processed += n;
        }
        // 300ms per batch at most, with 10x slack for a loaded machine.
        assert!(started.elapsed() < Duration::from_secs(3), "{mode:?}: {:?}", started.elapsed());
        for a in pushes(&store).await {
            assert_eq!(a["ai_custom_churn"], a["ai_churn_risk"], "{mode:?}: the labelled fallback is pushed");
        }
        let records = audited(&store, "shopify:1002").await;
        let fb = &records[0][0]["fallbacks"][0];
        assert_eq!(fb["served"], "churn_risk", "{mode:?}: {}", records[0]);
        fake.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn report_models_compares_a_builtin_score_with_a_shadow_model() {
    // Customers 0–2 order every 15 days for 300 days; customers 3–5 stop after 150 days.
    let mut ds = Vec::new();
    let mut n = 0;
    for day in (0..300u64).step_by(15) {
        for c in 0..6 {
            if c >= 3 && day >= 150 {
                continue;
            }
            ds.push(order_delivery(n, c, Duration::from_secs(day * 86_400 + c * 60)));
            n += 1;
        }
    }
    let fake = FakeScorer::start(FakeScorerConfig::default()).await.unwrap();
    let (store, p, _d) = setup_with(http_models(&fake.url(), "shadow", "shadow_churn"), ds).await;
    while p.step().await.unwrap().0 > 0 {}
    let args = |a: &str, b: &str| nudge::models_compare::ModelsReportArgs {
        compare: vec![a.into(), b.into()],
        cutoff: None,
        horizon: "90d".into(),
        outcome: "churn".into(),
        json: true,
    };
    let now = OffsetDateTime::now_utc();
    let r = nudge::models_compare::build(&*store, &p.scoring, &args("churn_risk", "shadow_churn"), now)
        .await
        .unwrap();
    assert_eq!(r.a, nudge::models_compare::ScorerRef::Builtin("churn_risk".into()));
    assert_eq!(r.b, nudge::models_compare::ScorerRef::Custom("shadow_churn".into()));
    assert_eq!(r.customers, 6);
    assert_eq!((r.agreement.n, r.missing), (6, [0, 0]));
    assert!(r.agreement.spearman.is_some() && r.agreement.mean_abs_diff.unwrap() > 0.0);
    let h = r.holdout.expect("a holdout");
    // Cut 90 days before the newest order: the three who stopped did not order after it.
    assert_eq!((h.a.n, h.a.positives), (6, 3), "{h:?}");
    assert_eq!(h.b.n, 6);
    assert!(h.a.auc.is_some_and(|a| (0.0..=1.0).contains(&a)));
    assert!(h.a.brier.is_none(), "churn_risk is 0–100, not a probability");
    assert!(h.b.brier.is_some(), "the scorer's outputs are probabilities");
    let json = serde_json::to_value(
        nudge::models_compare::build(&*store, &p.scoring, &args("p_alive", "custom:shadow_churn"), now)
            .await
            .unwrap(),
    )
    .unwrap();
    assert_eq!(json["a"]["kind"], "builtin");
    assert!(json["holdout"]["b"]["auc"].is_number(), "{json}");
    let e = nudge::models_compare::build(&*store, &p.scoring, &args("churn_risk", "nope"), now)
        .await
        .unwrap_err();
    assert!(e.downcast_ref::<nudge::report_cli::ReportError>().is_some_and(|e| e.is_usage()), "{e}");
    fake.shutdown().await;
}
