//! `nudge segments discover` through the binary: three kinds of customers imported as order history are
//! found as three proposals of the right sizes (k chosen by the criterion), as text, JSON and an HTML page;
//! bad arguments and an empty store are usage errors (exit 2).

use serde_json::Value;
use std::path::Path;
use std::process::{Command, Output};

fn nudge(data_dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nudge"))
        .arg("--data-dir")
        .arg(data_dir)
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("NUDGE_CONFIG")
        .output()
        .expect("the nudge binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn three_planted_kinds_are_proposed_and_bad_input_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // An empty store: nothing to cluster.
    let o = nudge(&data, &["segments", "discover"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("no customers"), "{}", text(&o.stderr));

    // 90 frequent big spenders (8 orders in the last 200 days, ~150 each), 90 lapsed one-timers (one order
    // 300–400 days ago, ~20), 90 recent regulars (3 orders in the last 60 days, ~40).
    let today = time::OffsetDateTime::now_utc().date();
    let mut csv = String::from("customer_id,date,amount,order_id\n");
    for i in 0..270u32 {
        let kind = i % 3;
        let (orders, span, offset, amount) = match kind {
            0 => (8, 200, 3, 150.0),
            1 => (1, 100, 300, 20.0),
            _ => (3, 60, 2, 40.0),
        };
        for k in 0..orders {
            let days = offset + (i as i64 * 7 + k as i64 * span / orders as i64) % span;
            let date = today - time::Duration::days(days);
            let amt = amount * (0.9 + f64::from((i * 13 + k) % 20) / 100.0);
            csv.push_str(&format!("{},{date},{amt:.2},o{i}-{k}\n", 1000 + i));
        }
    }
    let file = dir.path().join("history.csv");
    std::fs::write(&file, csv).unwrap();
    let o = nudge(&data, &["import", "--transactions", file.to_str().unwrap(), "--format", "csv"]);
    assert!(o.status.success(), "{}", text(&o.stderr));

    let page = dir.path().join("segments.html");
    let signals = "orders,avg_order_value,recency_days";
    let o = nudge(
        &data,
        &["segments", "discover", "--features", signals, "--json", "--out", page.to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["customers"], 270);
    assert_eq!(v["k"], 3, "{v:#}");
    let mut sizes: Vec<u64> =
        v["proposals"].as_array().unwrap().iter().map(|p| p["size"].as_u64().unwrap()).collect();
    sizes.sort();
    assert_eq!(sizes, vec![90, 90, 90], "{v:#}");
    assert!(
        v["proposals"].as_array().unwrap().iter().all(|p| !p["suggested_name"].as_str().unwrap().is_empty())
    );
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.contains("<h2>1. ") && html.contains("(chosen)"), "{html}");

    // The text form, with a fixed k and chosen signals.
    let o = nudge(
        &data,
        &["segments", "discover", "--k", "2", "--features", "orders,avg_order_value,recency_days"],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let out = text(&o.stdout);
    assert!(out.contains("2 segments (as asked)") && out.contains("proposal 2:"), "{out}");

    for (args, says) in [
        (vec!["segments", "discover", "--features", "orders,nope"], "unknown signal `nope`"),
        (vec!["segments", "discover", "--k", "1"], "--k must be"),
        (vec!["segments", "discover", "--features", "orders"], "at least two signals"),
    ] {
        let o = nudge(&data, &args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o.stderr));
        assert!(text(&o.stderr).contains(says), "{args:?}: {}", text(&o.stderr));
    }
}
