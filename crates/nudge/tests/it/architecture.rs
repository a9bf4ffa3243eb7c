//! The dependency direction is part of the architecture: pure crates do no I/O and pull in no runtime,
//! and only the binary crate wires everything. This test reads `cargo metadata` and fails when an edge
//! breaks those rules.

use std::collections::{BTreeMap, BTreeSet};

const PURE: [&str; 8] = [
    "nudge-model",
    "nudge-ingest",
    "nudge-state",
    "nudge-models",
    "nudge-scoring",
    "nudge-policy",
    "nudge-sentiment",
    "nudge-decide",
];
const IO_CRATES: [&str; 9] =
    ["tokio", "axum", "hyper", "reqwest", "sqlx", "rusqlite", "mio", "lapin", "redis"];

/// Allowed internal (nudge-*) normal dependencies of each workspace crate.
fn allowed() -> BTreeMap<&'static str, Vec<&'static str>> {
    BTreeMap::from([
        ("nudge-model", vec![]),
        ("nudge-ingest", vec!["nudge-model"]),
        ("nudge-state", vec!["nudge-model"]),
        ("nudge-models", vec![]),
        ("nudge-scoring", vec!["nudge-model", "nudge-state", "nudge-models"]),
        ("nudge-policy", vec!["nudge-model", "nudge-state", "nudge-decide"]),
        ("nudge-decide", vec!["nudge-model", "nudge-state"]),
        ("nudge-sentiment", vec!["nudge-model"]),
        ("nudge-store", vec!["nudge-model"]),
        ("nudge-deliver", vec!["nudge-model"]),
        ("nudge-llm", vec!["nudge-model"]),
        ("nudge-testkit", vec!["nudge-model", "nudge-ingest", "nudge-deliver"]),
    ])
}

#[test]
fn dependency_direction_holds() {
    // Resolve for this machine's platform only, so crates of other platforms need not be at hand offline.
    let rustc = std::process::Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .arg("-vV")
        .output()
        .expect("rustc -vV runs");
    let host = String::from_utf8_lossy(&rustc.stdout)
        .lines()
        .find_map(|l| l.strip_prefix("host: ").map(str::to_string))
        .expect("rustc names its host");
    let out = std::process::Command::new(env!("CARGO"))
        .args(["metadata", "--format-version", "1", "--offline", "--filter-platform", &host])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("cargo metadata runs");
    assert!(out.status.success(), "cargo metadata failed: {}", String::from_utf8_lossy(&out.stderr));
    let meta: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: BTreeMap<String, String> = meta["packages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["id"].as_str().unwrap().to_string(), p["name"].as_str().unwrap().to_string()))
        .collect();
    // Normal (non-dev, non-build) edges of the resolved graph.
    let mut edges: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for node in meta["resolve"]["nodes"].as_array().unwrap() {
        let from = names[node["id"].as_str().unwrap()].clone();
        for dep in node["deps"].as_array().unwrap() {
            let normal = dep["dep_kinds"].as_array().unwrap().iter().any(|k| k["kind"].is_null());
            if normal {
                edges.entry(from.clone()).or_default().push(names[dep["pkg"].as_str().unwrap()].clone());
            }
        }
    }
    let closure = |root: &str| {
        let mut seen = BTreeSet::new();
        let mut stack = vec![root.to_string()];
        while let Some(n) = stack.pop() {
            for d in edges.get(&n).into_iter().flatten() {
                if seen.insert(d.clone()) {
                    stack.push(d.clone());
                }
            }
        }
        seen
    };
    for p in PURE {
        let deps = closure(p);
        for io in IO_CRATES {
            assert!(!deps.contains(io), "pure crate {p} depends (transitively) on {io}");
        }
    }
    for (krate, ok) in allowed() {
        for d in edges.get(krate).into_iter().flatten().filter(|d| d.starts_with("nudge")) {
            assert!(ok.contains(&d.as_str()), "{krate} must not depend on {d}");
        }
    }
    assert!(closure("nudge").contains("nudge-store"), "the binary wires the store");
}
