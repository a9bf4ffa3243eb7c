//! `nudge simulate --scenario recs` with the Instacart layout: write the simulated orders, evaluate on the
//! files, and get the same figures; options that do not apply are refused.

use serde_json::Value;
use std::process::{Command, Output};

fn nudge(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nudge"))
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("NUDGE_CONFIG")
        .output()
        .expect("the nudge binary runs")
}

fn json(o: &Output) -> Value {
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    serde_json::from_slice(&o.stdout).expect("JSON on stdout")
}

#[test]
fn writes_and_evaluates_the_instacart_layout() {
    let dir = tempfile::tempdir().unwrap();
    let files = dir.path().join("instacart");
    let f = files.to_str().unwrap();
    let sim = json(&nudge(&[
        "simulate",
        "--scenario",
        "recs",
        "--customers",
        "300",
        "--days",
        "120",
        "--seed",
        "4",
        "--json",
        "--write-instacart",
        f,
    ]));
    for name in ["orders.csv", "order_products__prior.csv", "order_products__train.csv"] {
        assert!(files.join(name).exists(), "{name}");
    }
    let loaded = json(&nudge(&["simulate", "--scenario", "recs", "--instacart", f, "--json"]));
    assert_eq!(sim["scorers"], loaded["scorers"]);
    assert_eq!(sim["held_out_orders"], 300);
    assert_eq!(loaded["held_out_orders"], 300);

    let o = nudge(&["simulate", "--scenario", "offers", "--instacart", f]);
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("--scenario recs"));
    let o =
        nudge(&["simulate", "--scenario", "recs", "--instacart", dir.path().join("none").to_str().unwrap()]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("orders.csv"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}
