//! Per-customer inference of the committed ONNX test models (`tests/models`), hand-timed on one thread:
//! the features from a customer's state and scores (the CEL mapping) plus one run, and the run alone on
//! the engine `load` chose (the native tree evaluator for the tree ensembles, tract for the logistic
//! regression), with the tree classifier also timed on tract for comparison. Needs the `onnx` feature.
//!
//! Run with `cargo bench -p nudge-custom --features onnx --bench inference`.

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[cfg(not(feature = "onnx"))]
fn main() {
    eprintln!("build with --features onnx");
}

#[cfg(feature = "onnx")]
fn main() {
    use nudge_custom::{CustomModel, CustomModels, Prefetched};
    use nudge_model::{Money, Score, ScoreSet, Segment};
    use nudge_state::{CustomerState, ItemRecord, OrderRecord};
    use std::hint::black_box;
    use std::time::Instant;

    let now = time::macros::datetime!(2026-03-01 10:00 UTC);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/models");
    let customers: Vec<(CustomerState, ScoreSet)> = (0..1_000u32)
        .map(|i| {
            let mut s = CustomerState::new(format!("shopify:{}", 10_000 + i).parse().unwrap());
            for k in 0..(1 + i % 6) {
                let at = now - time::Duration::days(i64::from(5 + (i * 7 + k * 40) % 300));
                s.orders.insert(
                    format!("o{k}"),
                    OrderRecord {
                        created_at: at,
                        updated_at: at,
                        total: Money::parse(&format!("{}.50", 10 + (i + k) % 90), "USD").unwrap(),
                        cancelled: false,
                        items: vec![ItemRecord {
                            product_id: Some("p1".into()),
                            title: "Tea".into(),
                            quantity: 1,
                        }],
                        checkout_token: None,
                        cart_token: None,
                    },
                );
            }
            let score = |name: &str, value: f64| Score {
                name: name.into(),
                value,
                model_id: "rules".into(),
                model_version: "rules-v1".into(),
                explanation: String::new(),
            };
            let set = ScoreSet {
                scores: vec![
                    score("churn_risk", f64::from(i % 100)),
                    score("p_alive", f64::from(100 - i % 100) / 100.0),
                ],
                segment: Segment::Loyal,
                model_version: "rules-v1".into(),
                labels: Default::default(),
                products: Vec::new(),
                scored_at: now,
                adopted_segments: None,
            };
            (s, set)
        })
        .collect();

    let churn = r#"{ custom_churn = { output = "probabilities", index = 1, min = 0.0, max = 1.0, fallback = "churn_risk" } }"#;
    let spend = r#"{ custom_spend = { output = "variable", min = 0.0 } }"#;
    for (name, outputs) in [("logistic", churn), ("gbdt", churn), ("gbdt_regressor", spend)] {
        let spec: nudge_custom::CustomModelSpec = toml::from_str(&format!(
            r#"name = "{name}"
onnx = "{name}.onnx"
mode = "live"
inputs = {{ X = ["customer.orders_count", "customer.total_spent", "customer.days_since_last_order", "scores.churn_risk", "scores.p_alive"] }}
outputs = {outputs}"#
        ))
        .unwrap();
        let model = CustomModel::load(&spec, &dir).unwrap();
        let models = CustomModels::load(std::slice::from_ref(&spec), &dir, None).unwrap();
        let features: Vec<_> = customers.iter().map(|(s, b)| model.features.features(s, b, now)).collect();
        let pre = Prefetched::default();
        let mut full = Vec::new();
        let mut feats = Vec::new();
        let mut run = Vec::new();
        // The same file on tract, when the native tree evaluator runs it and tract can load it.
        let on_tract = (model.engine() == "trees")
            .then(|| {
                nudge_custom::onnx::OnnxModel::load_with(
                    name,
                    &std::fs::read(dir.join(format!("{name}.onnx"))).unwrap(),
                    &model.features,
                    &spec.outputs,
                    nudge_custom::onnx::EngineChoice::Tract,
                )
                .ok()
            })
            .flatten();
        let mut tract_run = Vec::new();
        for _round in 0..7 {
            let t = Instant::now();
            for (s, b) in &customers {
                let mut set = b.clone();
                black_box(models.apply(s, now, &mut set, &pre));
            }
            full.push(t.elapsed().as_secs_f64() * 1e6 / customers.len() as f64);
            let t = Instant::now();
            for (s, b) in &customers {
                black_box(model.features.features(s, b, now));
            }
            feats.push(t.elapsed().as_secs_f64() * 1e6 / customers.len() as f64);
            let t = Instant::now();
            for f in &features {
                black_box(model.run_onnx(f).unwrap().unwrap());
            }
            run.push(t.elapsed().as_secs_f64() * 1e6 / customers.len() as f64);
            if let Some(m) = &on_tract {
                let t = Instant::now();
                for f in &features {
                    black_box(m.run(f).unwrap());
                }
                tract_run.push(t.elapsed().as_secs_f64() * 1e6 / customers.len() as f64);
            }
        }
        let stat = |mut v: Vec<f64>| {
            v.sort_by(f64::total_cmp);
            format!("median {:.2} µs (min {:.2}, max {:.2})", v[v.len() / 2], v[0], v[v.len() - 1])
        };
        println!("{name}: per customer, features + run + validation: {}", stat(full));
        println!("{name}:   features alone (facts + CEL): {}", stat(feats));
        println!("{name}:   {} run alone: {}", model.engine(), stat(run));
        if !tract_run.is_empty() {
            println!("{name}:   (the same file on tract: {})", stat(tract_run));
        }
    }
}
