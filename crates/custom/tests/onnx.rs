//! The committed ONNX models (made by `tests/models/make_models.py`) run in process: both engines (the
//! native tree evaluator and tract) give scikit-learn's probabilities to 1e-5 and agree with each other,
//! live outputs are served, shadow ones only reported, and invalid outputs fall back.
#![cfg(feature = "onnx")]

mod common;
use common::*;
use nudge_custom::onnx::{EngineChoice, OnnxModel};
use nudge_custom::{CustomModel, CustomModels, Prefetched};

fn fixture() -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(models_dir().join("parity.json")).unwrap()).unwrap()
}

fn model(file: &str, mode: &str, outputs: &str) -> nudge_custom::CustomModelSpec {
    spec(&format!(
        "name = \"{}\"\nonnx = \"{file}\"\nmode = \"{mode}\"\n{FIVE_INPUTS}\noutputs = {outputs}",
        file.trim_end_matches(".onnx")
    ))
}

fn probs_spec(name: &str) -> nudge_custom::CustomModelSpec {
    model(&format!("{name}.onnx"), "live", r#"{ s = { output = "probabilities", index = 1 } }"#)
}

/// The model as `load` makes it and, beside it, the same file on tract.
fn both_engines(name: &str) -> (CustomModel, OnnxModel) {
    let spec = probs_spec(name);
    let m = CustomModel::load(&spec, &models_dir()).unwrap();
    let path = models_dir().join(format!("{name}.onnx"));
    let on_tract = OnnxModel::load_with(
        "model",
        &std::fs::read(path).unwrap(),
        &m.features,
        &spec.outputs,
        EngineChoice::Tract,
    )
    .unwrap();
    assert_eq!(on_tract.engine(), "tract");
    (m, on_tract)
}

#[test]
fn both_engines_match_scikit_learn_to_1e5() {
    let f = fixture();
    let inputs = f["inputs"].as_array().unwrap();
    assert!(inputs.len() >= 50);
    for (name, engine) in [("logistic", "tract"), ("gbdt", "trees")] {
        let (m, on_tract) = both_engines(name);
        assert_eq!(m.engine(), engine, "{name}");
        let expected = f["models"][name]["predict_proba"].as_array().unwrap();
        for (label, run) in [
            (engine, &|x: &Vec<Vec<f32>>| m.run_onnx(x).unwrap().unwrap() as _),
            ("tract", &|x: &Vec<Vec<f32>>| on_tract.run(x).unwrap() as _),
        ]
            as [(&str, &dyn Fn(&Vec<Vec<f32>>) -> std::collections::BTreeMap<String, Vec<f64>>); 2]
        {
            let mut worst = 0.0f64;
            for (x, p) in inputs.iter().zip(expected) {
                let features: Vec<f32> =
                    x.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
                let out = run(&vec![features]);
                let probs = &out["probabilities"];
                assert_eq!(probs.len(), 2);
                for k in 0..2 {
                    let want = p[k].as_f64().unwrap();
                    worst = worst.max((probs[k] - want).abs());
                }
            }
            assert!(worst <= 1e-5, "{name} on {label}: largest difference {worst:e}");
        }
        // Not trivially equal: the models separate customers.
        let spread: Vec<f64> = expected.iter().map(|p| p[1].as_f64().unwrap()).collect();
        let (lo, hi) = spread.iter().fold((1.0f64, 0.0f64), |(l, h), v| (l.min(*v), h.max(*v)));
        assert!(hi - lo > 0.3, "{name}: probabilities {lo}..{hi}");
    }
}

#[test]
fn a_gradient_boosted_regressor_runs_natively_and_matches_scikit_learn() {
    let f = fixture();
    let spec = model("gbdt_regressor.onnx", "live", r#"{ spend = { output = "variable", min = 0.0 } }"#);
    let m = CustomModel::load(&spec, &models_dir()).unwrap();
    assert_eq!(m.engine(), "trees");
    let expected = f["models"]["gbdt_regressor"]["predict"].as_array().unwrap();
    let mut worst = 0.0f64;
    let mut values = Vec::new();
    for (x, want) in f["inputs"].as_array().unwrap().iter().zip(expected) {
        let features: Vec<f32> = x.as_array().unwrap().iter().map(|v| v.as_f64().unwrap() as f32).collect();
        let out = m.run_onnx(&vec![features]).unwrap().unwrap();
        assert_eq!(out["variable"].len(), 1);
        let (got, want) = (out["variable"][0], want.as_f64().unwrap());
        // Relative to the value (spend in the hundreds; the operator's output is a float).
        worst = worst.max((got - want).abs() / want.abs().max(1.0));
        values.push(got);
    }
    assert!(worst <= 1e-5, "largest relative difference {worst:e}");
    let (lo, hi) = values.iter().fold((f64::MAX, f64::MIN), |(l, h), v| (l.min(*v), h.max(*v)));
    assert!(hi - lo > 50.0, "predictions {lo}..{hi}");
    // tract has no TreeEnsembleRegressor: on it, the file is refused at load, as a config error.
    let err = OnnxModel::load_with(
        "gbdt_regressor.onnx",
        &std::fs::read(models_dir().join("gbdt_regressor.onnx")).unwrap(),
        &m.features,
        &spec.outputs,
        EngineChoice::Tract,
    )
    .unwrap_err();
    assert!(err.to_string().contains("gbdt_regressor.onnx"), "{err}");
}

#[test]
fn the_native_tree_evaluator_agrees_with_tract_everywhere() {
    // Inputs spread over (and past) the training ranges, with thresholds hit exactly and missing values.
    let (native, on_tract) = both_engines("gbdt");
    let mut seed = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = move || {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed >> 11) as f64 / (1u64 << 53) as f64
    };
    let scale = [12.0, 900.0, 400.0, 100.0, 1.0];
    let mut labels = std::collections::BTreeSet::new();
    for i in 0..3_000 {
        let mut x: Vec<f32> = scale.iter().map(|s| (next() * s * 1.2 - s * 0.1) as f32).collect();
        match i % 10 {
            0 => x[(i / 10) % 5] = f32::NAN,
            1 => x[0] = ((i / 10) % 8) as f32 + 0.5,
            2 => x[2] = 67.111,
            _ => {}
        }
        let a = native.run_onnx(&vec![x.clone()]).unwrap().unwrap();
        let b = on_tract.run(&vec![x.clone()]).unwrap();
        for k in 0..2 {
            let (p, q) = (a["probabilities"][k], b["probabilities"][k]);
            assert!((p - q).abs() <= 1e-6, "{x:?}: native {p}, tract {q}");
        }
        // The label is scikit-learn's `predict`: the class of the larger probability. (tract 0.23 reports
        // the other class for this binary layout, so labels are not compared with it.)
        let p1 = a["probabilities"][1];
        assert_eq!(a["label"], vec![if p1 > 0.5 { 1.0 } else { 0.0 }], "{x:?}");
        labels.insert(a["label"][0] as i64);
    }
    assert_eq!(labels.len(), 2, "both classes are predicted");
}

#[test]
fn live_outputs_are_served_and_shadow_outputs_only_reported() {
    let live = model(
        "gbdt.onnx",
        "live",
        r#"{ custom_churn = { output = "probabilities", index = 1, min = 0.0, max = 1.0 } }"#,
    );
    let mut shadow =
        model("logistic.onnx", "shadow", r#"{ shadow_churn = { output = "probabilities", index = 1 } }"#);
    shadow.name = "logistic_shadow".into();
    let models = CustomModels::load(&[live, shadow], &models_dir(), None).unwrap();
    let state = customer("shopify:1001", 3, 120);
    let mut scores = builtin(70.0, 0.3);
    let reports = models.apply(&state, NOW, &mut scores, &Prefetched::default());
    assert_eq!(reports.len(), 2);
    let served = scores.get("custom_churn").expect("the live output is served");
    assert!((0.0..=1.0).contains(&served.value));
    assert_eq!(served.model_id, "custom:gbdt");
    assert!(served.model_version.starts_with("onnx:"), "{}", served.model_version);
    assert_eq!(reports[0].outputs["custom_churn"], served.value);
    assert!(scores.get("shadow_churn").is_none(), "a shadow output is never served");
    assert!(reports[1].outputs.contains_key("shadow_churn"), "but it is reported: {:?}", reports[1]);
    assert_eq!(reports[1].mode, "shadow");
    // The built-in scores are untouched.
    assert_eq!(scores.value("churn_risk"), Some(70.0));
}

#[test]
fn missing_features_nan_and_out_of_range_outputs_fall_back_and_are_reported() {
    // A customer without orders has no `days_since_last_order`: by default the model is not run.
    let live = model(
        "logistic.onnx",
        "live",
        r#"{ churn_risk = { output = "probabilities", index = 1, min = 0.0, max = 1.0 } }"#,
    );
    let models = CustomModels::load(&[live], &models_dir(), None).unwrap();
    let mut scores = builtin(42.0, 0.5);
    let reports = models.apply(&customer("shopify:2002", 0, 0), NOW, &mut scores, &Prefetched::default());
    let fb = &reports[0].fallbacks;
    assert_eq!(fb.len(), 1, "{reports:?}");
    assert!(fb[0].reason.contains("inputs.X[2]") && fb[0].reason.contains("no value"), "{}", fb[0].reason);
    assert_eq!(fb[0].served.as_deref(), Some("churn_risk"));
    let s = scores.get("churn_risk").unwrap();
    assert_eq!(s.value, 42.0, "the built-in value is served");
    assert!(s.explanation.starts_with("fallback to `churn_risk`"), "{}", s.explanation);

    // y = log(x): NaN below 0, and out of range above e^max.
    let probe = |x: &str| {
        spec(&format!(
            "name = \"probe\"\nonnx = \"log_probe.onnx\"\nmode = \"live\"\ninputs = {{ x = [\"{x}\"] }}\noutputs = {{ custom_log = {{ output = \"y\", max = 0.5, fallback = \"p_alive\" }} }}"
        ))
    };
    let run = |x: &str| {
        let models = CustomModels::load(&[probe(x)], &models_dir(), None).unwrap();
        let mut scores = builtin(42.0, 0.5);
        let reports =
            models.apply(&customer("shopify:3003", 2, 40), NOW, &mut scores, &Prefetched::default());
        (reports.into_iter().next().unwrap(), scores)
    };
    let (r, scores) = run("scores.p_alive - 1.0");
    assert!(r.fallbacks[0].reason.contains("not a number"), "{r:?}");
    let s = scores.get("custom_log").unwrap();
    assert_eq!((s.value, s.model_id.as_str()), (0.5, "rules"), "p_alive's value, labelled as its own");
    let (r, _) = run("scores.p_alive * 4.0");
    assert!(r.fallbacks[0].reason.contains("outside"), "{r:?}");
    let (r, scores) = run("scores.p_alive");
    assert!(r.fallbacks.is_empty(), "{r:?}");
    assert!((scores.value("custom_log").unwrap() - 0.5f64.ln()).abs() < 1e-6);
}
