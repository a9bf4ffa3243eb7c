//! Bad `[[scoring.custom]]` tables are refused at load with the key that is wrong.

mod common;
use common::*;
use nudge_custom::{CustomModel, CustomModels, check_all};

fn key_of(toml_text: &str) -> String {
    let s = spec(toml_text);
    match CustomModel::load(&s, &models_dir()) {
        Ok(_) => panic!("accepted:\n{toml_text}"),
        Err(e) => e.key,
    }
}

#[test]
fn onnx_and_http_are_exclusive_and_one_is_required() {
    let both = r#"name = "m"
onnx = "logistic.onnx"
http = { url = "http://127.0.0.1:9/score" }
inputs = { a = "customer.orders_count" }
outputs = { s = { output = "x" } }"#;
    assert_eq!(key_of(both), "onnx");
    let neither = r#"name = "m"
inputs = { a = "customer.orders_count" }
outputs = { s = { output = "x" } }"#;
    assert_eq!(key_of(neither), "onnx");
}

#[test]
fn an_http_url_must_be_http_or_https() {
    for url in ["ftp://scorer/score", "file:///etc/passwd", "scorer:8080/score", "http://"] {
        let t = format!(
            "name = \"m\"\nhttp = {{ url = \"{url}\" }}\ninputs = {{ a = \"customer.orders_count\" }}\noutputs = {{ s = {{ output = \"x\" }} }}"
        );
        assert_eq!(key_of(&t), "http.url", "{url}");
    }
}

#[test]
fn unknown_cel_fields_name_the_input() {
    let t = r#"name = "m"
http = { url = "http://127.0.0.1:9/score" }
inputs = { v = ["customer.orders_count", "customer.order_cnt"] }
outputs = { s = { output = "x" } }"#;
    let s = spec(t);
    let e = CustomModel::load(&s, &models_dir()).unwrap_err();
    assert_eq!(e.key, "inputs.v[1]");
    assert!(e.reason.contains("order_cnt"), "{}", e.reason);
    // `event` is not available to a model.
    let t = t.replace("customer.order_cnt", "event.value");
    assert_eq!(key_of(&t), "inputs.v[1]");
}

#[test]
fn outputs_are_checked() {
    let base = |outputs: &str| {
        format!(
            "name = \"m\"\nhttp = {{ url = \"http://127.0.0.1:9/score\" }}\ninputs = {{ a = \"customer.orders_count\" }}\noutputs = {outputs}"
        )
    };
    assert_eq!(key_of(&base(r#"{ s = { output = "x", min = 1.0, max = 0.0 } }"#)), "outputs.s.min");
    assert_eq!(
        key_of(&base(r#"{ s = { output = "x", fallback = "no_such_score" } }"#)),
        "outputs.s.fallback"
    );
    assert_eq!(key_of(&base(r#"{ segment = { output = "x" } }"#)), "outputs.segment");
    assert_eq!(key_of(&base(r#"{ "Bad-Name" = { output = "x" } }"#)), "outputs.Bad-Name");
    assert_eq!(key_of(&base(r#"{ s = { output = "x", index = 1 } }"#)), "outputs.s.index");
}

#[test]
fn names_must_not_clash() {
    let a = spec(
        r#"name = "m"
http = { url = "http://127.0.0.1:9/score" }
inputs = { a = "customer.orders_count" }
outputs = { s = { output = "x" } }"#,
    );
    let (i, e) = check_all(&[a.clone(), a.clone()]).unwrap_err();
    assert_eq!((i, e.key.as_str()), (1, "name"));
    let mut b = a.clone();
    b.name = "other".into();
    let (i, e) = check_all(&[a.clone(), b]).unwrap_err();
    assert_eq!((i, e.key.as_str()), (1, "outputs.s"));
    // An HTTP scorer needs the pseudonym key.
    let (i, e) = CustomModels::load(&[a], &models_dir(), None).unwrap_err();
    assert_eq!((i, e.key.as_str()), (0, "http"));
}

#[cfg(not(feature = "onnx"))]
#[test]
fn an_onnx_model_in_a_build_without_onnx_says_how_to_build() {
    let t = format!(
        "name = \"m\"\nonnx = \"logistic.onnx\"\n{FIVE_INPUTS}\noutputs = {{ s = {{ output = \"probabilities\", index = 1 }} }}"
    );
    let e = CustomModel::load(&spec(&t), &models_dir()).unwrap_err();
    assert_eq!(e.key, "onnx");
    assert!(e.reason.contains("--features onnx"), "{}", e.reason);
}

#[cfg(feature = "onnx")]
#[test]
fn onnx_files_must_exist_and_match_the_mapping() {
    let with = |file: &str, inputs: &str, outputs: &str| {
        format!("name = \"m\"\nonnx = \"{file}\"\n{inputs}\noutputs = {outputs}")
    };
    let ok_out = r#"{ s = { output = "probabilities", index = 1 } }"#;
    // Missing file.
    let e = CustomModel::load(&spec(&with("nope.onnx", FIVE_INPUTS, ok_out)), &models_dir()).unwrap_err();
    assert_eq!(e.key, "onnx");
    assert!(e.reason.contains("nope.onnx"), "{}", e.reason);
    // Not an ONNX file.
    assert_eq!(key_of(&with("make_models.py", FIVE_INPUTS, ok_out)), "onnx");
    // Wrong width: four expressions for a five-wide input.
    let four = r#"inputs = { X = ["customer.orders_count", "customer.total_spent", "scores.churn_risk", "scores.p_alive"] }"#;
    let e = CustomModel::load(&spec(&with("logistic.onnx", four, ok_out)), &models_dir()).unwrap_err();
    assert_eq!(e.key, "inputs.X");
    assert!(e.reason.contains("[N, 5]") || e.reason.contains("shape"), "{}", e.reason);
    // Wrong input name, and an extra one.
    let renamed = FIVE_INPUTS.replace("X =", "features =");
    assert_eq!(key_of(&with("logistic.onnx", &renamed, ok_out)), "inputs");
    let extra = FIVE_INPUTS.replace(" }", ", Y = \"customer.aov\" }");
    assert_eq!(key_of(&with("logistic.onnx", &extra, ok_out)), "inputs.Y");
    // Unknown output, index past the width.
    assert_eq!(
        key_of(&with("gbdt.onnx", FIVE_INPUTS, r#"{ s = { output = "proba" } }"#)),
        "outputs.s.output"
    );
    assert_eq!(
        key_of(&with("gbdt.onnx", FIVE_INPUTS, r#"{ s = { output = "probabilities", index = 2 } }"#)),
        "outputs.s.index"
    );
    // And the right one loads.
    CustomModel::load(&spec(&with("gbdt.onnx", FIVE_INPUTS, ok_out)), &models_dir()).unwrap();
}
