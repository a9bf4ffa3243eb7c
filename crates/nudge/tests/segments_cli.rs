//! `nudge segments discover` through the binary: three kinds of customers imported as order history are
//! found as three proposals of the right sizes (k chosen by the criterion), as text, JSON and an HTML page;
//! bad arguments and an empty store are usage errors (exit 2). A stored proposal is adopted under a name,
//! its members computed, refreshed (stable while behaviour stays, joiners and leavers when it changes) and
//! dropped.

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

    import_three_kinds(dir.path(), &data);

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

/// 90 frequent big spenders (8 orders in the last 200 days, ~150 each; customers 1000, 1003, …), 90 lapsed
/// one-timers (one order 300–400 days ago, ~20; 1001, 1004, …), 90 recent regulars (3 orders in the last
/// 60 days, ~40; 1002, 1005, …), imported as order history.
fn import_three_kinds(dir: &Path, data: &Path) {
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
    import(dir, data, &csv);
}

fn import(dir: &Path, data: &Path, csv: &str) {
    let file = dir.join("history.csv");
    std::fs::write(&file, csv).unwrap();
    let o = nudge(data, &["import", "--transactions", file.to_str().unwrap(), "--format", "csv"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
}

fn json(data: &Path, args: &[&str]) -> Value {
    let o = nudge(data, args);
    assert!(o.status.success(), "{args:?}: {}", text(&o.stderr));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{args:?}: {e}: {}", text(&o.stdout)))
}

#[test]
fn a_proposal_is_adopted_refreshed_and_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    // Nothing stored yet.
    let o = nudge(&data, &["segments", "proposals"]);
    assert!(text(&o.stdout).contains("no proposals stored"), "{}", text(&o.stdout));
    import_three_kinds(dir.path(), &data);

    let v =
        json(&data, &["segments", "discover", "--features", "orders,avg_order_value,recency_days", "--json"]);
    let discovery = v["discovery_id"].as_i64().expect("stored");
    // The big spenders' proposal: the highest order value.
    let ps = json(&data, &["segments", "proposals", "--json"]);
    let ps = ps.as_array().unwrap();
    assert_eq!(ps.len(), 3);
    assert!(ps.iter().all(|p| p["id"].as_str().unwrap().starts_with(&format!("{discovery}-"))));
    let aov = |p: &Value| {
        p["features"].as_array().unwrap().iter().find(|f| f["feature"] == "avg_order_value").unwrap()["mean_in"]
            .as_f64()
            .unwrap()
    };
    let big = ps.iter().max_by(|a, b| aov(a).total_cmp(&aov(b))).unwrap();
    let big_id = big["id"].as_str().unwrap().to_string();
    let lapsed = ps.iter().min_by(|a, b| aov(a).total_cmp(&aov(b))).unwrap();
    let lapsed_id = lapsed["id"].as_str().unwrap().to_string();

    let a = json(&data, &["segments", "adopt", &big_id, "--name", "big_spenders", "--json"]);
    assert_eq!(a["adopted"]["name"], "big_spenders");
    let change = &a["refresh"]["segments"][0];
    assert_eq!((change["members"].as_u64(), change["joined"].as_u64()), (Some(90), Some(90)), "{a:#}");
    assert!(change["stability"].is_null(), "no stability before a second membership: {a:#}");
    json(&data, &["segments", "adopt", &lapsed_id, "--name", "lapsed_one_timers", "--json"]);

    // The proposals now say what they were adopted as.
    let ps = json(&data, &["segments", "proposals", "--json"]);
    let adopted_as: Vec<&str> =
        ps.as_array().unwrap().iter().filter_map(|p| p["adopted_as"].as_str()).collect();
    assert_eq!(adopted_as.len(), 2, "{ps:#}");

    // Nothing changed: a refresh keeps everyone (stability 1).
    let r = json(&data, &["segments", "refresh", "--json"]);
    for c in r["segments"].as_array().unwrap() {
        assert_eq!(
            (c["members"].as_u64(), c["joined"].as_u64(), c["left"].as_u64()),
            (Some(90), Some(0), Some(0))
        );
        assert_eq!(c["stability"].as_f64(), Some(1.0), "{r:#}");
    }

    // Ten lapsed one-timers come back as big spenders: they leave one segment and join the other.
    let today = time::OffsetDateTime::now_utc().date();
    let mut csv = String::from("customer_id,date,amount,order_id\n");
    for j in 0..10u32 {
        let customer = 1001 + 3 * j;
        for k in 0..9u32 {
            let date = today - time::Duration::days(i64::from(2 + k * 15));
            csv.push_str(&format!("{customer},{date},160.00,back{customer}-{k}\n"));
        }
    }
    import(dir.path(), &data, &csv);
    let r = json(&data, &["segments", "refresh", "--json"]);
    let by_name =
        |n: &str| r["segments"].as_array().unwrap().iter().find(|c| c["segment"] == n).unwrap().clone();
    let (b, l) = (by_name("big_spenders"), by_name("lapsed_one_timers"));
    assert_eq!(
        (b["joined"].as_u64(), b["left"].as_u64(), b["members"].as_u64()),
        (Some(10), Some(0), Some(100)),
        "{r:#}"
    );
    assert_eq!(
        (l["joined"].as_u64(), l["left"].as_u64(), l["members"].as_u64()),
        (Some(0), Some(10), Some(80)),
        "{r:#}"
    );
    assert!((l["stability"].as_f64().unwrap() - 80.0 / 90.0).abs() < 1e-9, "{r:#}");

    // The list shows the last refresh.
    let list = nudge(&data, &["segments", "list"]);
    let out = text(&list.stdout);
    assert!(out.contains("big_spenders") && out.contains("88.9 %"), "{out}");

    // Mistakes are usage errors.
    for (args, says) in [
        (vec!["segments", "adopt", "x-1", "--name", "a"], "not a proposal id"),
        (vec!["segments", "adopt", &big_id, "--name", "Big Spenders"], "not a segment name"),
        (vec!["segments", "adopt", &big_id, "--name", "again"], "already adopted as `big_spenders`"),
        (vec!["segments", "adopt", "999-1", "--name", "nope"], "no segment discovery 999"),
        (vec!["segments", "adopt", &format!("{discovery}-9"), "--name", "nope"], "has 3 proposals"),
        (
            vec!["segments", "adopt", &big_id, "--name", "x", "--list", "klaviyo:Xy12Ab"],
            "not a configured destination",
        ),
        (vec!["segments", "drop", "nope"], "no adopted segment named `nope`"),
    ] {
        let o = nudge(&data, &args);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o.stderr));
        assert!(text(&o.stderr).contains(says), "{args:?}: {}", text(&o.stderr));
    }
    let remaining: Vec<String> = ps
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["adopted_as"].is_null())
        .map(|p| p["id"].as_str().unwrap().to_string())
        .collect();
    let o = nudge(&data, &["segments", "adopt", &remaining[0], "--name", "big_spenders"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(text(&o.stderr).contains("already adopted"), "{}", text(&o.stderr));

    let o = nudge(&data, &["segments", "drop", "big_spenders"]);
    assert!(o.status.success(), "{}", text(&o.stderr));
    let left = json(&data, &["segments", "list", "--json"]);
    assert_eq!(left.as_array().unwrap().len(), 1);
}
