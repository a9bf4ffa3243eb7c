//! The operations files in `deploy/`: the Grafana dashboard and the Prometheus alert rules query only
//! metrics nudge exports (as `telemetry::METRICS` lists them; a histogram as `_bucket`, `_sum`, `_count`),
//! cover what on call needs, and the list itself names every metric the code records.

use nudge::telemetry::{METRICS, MetricKind};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Every series name a Prometheus server sees from nudge.
fn exported_series() -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for m in METRICS {
        match m.kind {
            MetricKind::Histogram => {
                for suffix in ["_bucket", "_sum", "_count"] {
                    out.insert(format!("{}{suffix}", m.name));
                }
            }
            MetricKind::Counter | MetricKind::Gauge => {
                out.insert(m.name.to_string());
            }
        }
    }
    out
}

/// The `nudge_*` names an expression uses, outside its string literals (label values).
fn metric_names(expr: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut chars = expr.chars().peekable();
    let mut word = String::new();
    let flush = |word: &mut String, names: &mut Vec<String>| {
        if word.starts_with("nudge_") {
            names.push(word.clone());
        }
        word.clear();
    };
    while let Some(c) = chars.next() {
        match c {
            '"' | '\'' | '`' => {
                flush(&mut word, &mut names);
                // Skip to the closing quote (PromQL escapes with a backslash).
                while let Some(d) = chars.next() {
                    if d == '\\' {
                        chars.next();
                    } else if d == c {
                        break;
                    }
                }
            }
            c if c.is_ascii_alphanumeric() || c == '_' || c == ':' => word.push(c),
            _ => flush(&mut word, &mut names),
        }
    }
    flush(&mut word, &mut names);
    names
}

#[test]
fn names_are_read_from_expressions_but_not_from_label_values() {
    let e = r#"sum by (destination) (increase(nudge_pushes_total{outcome="nudge_x"}[1h])) / nudge_ack_seconds_count"#;
    assert_eq!(metric_names(e), ["nudge_pushes_total", "nudge_ack_seconds_count"]);
    assert!(metric_names("rate(up[5m])").is_empty());
}

/// Every `expr` of the dashboard's panels (rows' nested panels too), with the panel's title.
fn dashboard_queries(dashboard: &serde_json::Value) -> Vec<(String, String)> {
    fn walk(panels: &serde_json::Value, out: &mut Vec<(String, String)>) {
        for p in panels.as_array().into_iter().flatten() {
            let title = p["title"].as_str().unwrap_or("?").to_string();
            for t in p["targets"].as_array().into_iter().flatten() {
                out.push((title.clone(), t["expr"].as_str().expect("a target with an expr").to_string()));
            }
            walk(&p["panels"], out);
        }
    }
    let mut out = Vec::new();
    walk(&dashboard["panels"], &mut out);
    out
}

fn check_queries(file: &str, queries: &[(String, String)]) -> BTreeSet<String> {
    let exported = exported_series();
    let mut used = BTreeSet::new();
    for (what, expr) in queries {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{file}: `{what}` queries no nudge metric: {expr}");
        for n in names {
            assert!(
                exported.contains(&n),
                "{file}: `{what}` queries `{n}`, which nudge does not export: {expr}"
            );
            used.insert(n);
        }
    }
    used
}

#[test]
fn the_dashboard_queries_only_exported_metrics_and_covers_on_call() {
    let path = repo().join("deploy/grafana/nudge.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let dashboard: serde_json::Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert_eq!(dashboard["title"], "nudge");
    let queries = dashboard_queries(&dashboard);
    assert!(queries.len() >= 20, "{} queries", queries.len());
    let used = check_queries("nudge.json", &queries);
    // What on call looks at first: traffic, ack latency, backlogs, outbox, throttles, circuits, dead
    // letters, decisions, models, the LLM budget.
    for needed in [
        "nudge_webhooks_total",
        "nudge_ack_seconds_bucket",
        "nudge_ingest_backlog",
        "nudge_destination_backlog",
        "nudge_pushes_total",
        "nudge_destination_throttled_total",
        "nudge_destination_circuit_open",
        "nudge_fetch_jobs_total",
        "nudge_decisions_total",
        "nudge_model_refits_total",
        "nudge_llm_tokens_used",
        "nudge_llm_token_budget",
    ] {
        assert!(used.contains(needed), "the dashboard has no panel over {needed}");
    }
    assert!(text.contains(r#"outcome=\"dead_lettered\""#), "the dashboard shows dead letters");
    // Each panel has an id of its own and a description.
    let mut ids = BTreeSet::new();
    for p in dashboard["panels"].as_array().unwrap() {
        assert!(ids.insert(p["id"].as_i64().expect("a panel id")), "panel id {} twice", p["id"]);
        if p["type"] != "row" {
            assert!(
                p["description"].as_str().is_some_and(|d| !d.is_empty()),
                "{} has no description",
                p["title"]
            );
        }
    }
}

#[test]
fn the_alerts_query_only_exported_metrics_and_cover_on_call() {
    let path = repo().join("deploy/prometheus/alerts.yml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let rules: serde_json::Value = yaml_serde::from_str(&text).expect("the alert rules are YAML");
    let mut queries = Vec::new();
    let mut alerts = BTreeSet::new();
    for group in rules["groups"].as_array().expect("groups") {
        for rule in group["rules"].as_array().expect("rules") {
            let name = rule["alert"].as_str().expect("an alerting rule").to_string();
            assert!(alerts.insert(name.clone()), "{name} twice");
            let summary = rule["annotations"]["summary"].as_str();
            assert!(summary.is_some_and(|s| !s.is_empty()), "{name} has no summary");
            let severity = rule["labels"]["severity"].as_str();
            assert!(matches!(severity, Some("warning" | "critical")), "{name}: severity {severity:?}");
            queries.push((name, rule["expr"].as_str().expect("an expr").to_string()));
        }
    }
    check_queries("alerts.yml", &queries);
    for needed in [
        "NudgeIngestBacklogGrowing",
        "NudgeOutboxBacklogGrowing",
        "NudgeDestinationCircuitOpen",
        "NudgeDeadLettersRising",
        "NudgeModelGateFailing",
        "NudgeAckP99OverTarget",
    ] {
        assert!(alerts.contains(needed), "no alert {needed}");
    }
}

/// The metric list is complete: every metric the code records with a literal name is in [`METRICS`],
/// with the same kind, and the list names each metric once.
#[test]
fn the_metric_list_names_every_recorded_metric() {
    let mut listed = BTreeSet::new();
    for m in METRICS {
        assert!(listed.insert(m.name), "{} listed twice", m.name);
        assert!(m.name.starts_with("nudge_") && !m.help.is_empty(), "{}", m.name);
    }
    let src = repo().join("crates/nudge/src");
    let mut recorded = 0;
    for entry in std::fs::read_dir(&src).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|e| e != "rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        for (macro_name, kind) in [
            ("counter!(\"", MetricKind::Counter),
            ("gauge!(\"", MetricKind::Gauge),
            ("histogram!(\"", MetricKind::Histogram),
        ] {
            for (at, _) in text.match_indices(macro_name) {
                let rest = &text[at + macro_name.len()..];
                let name = &rest[..rest.find('"').unwrap()];
                recorded += 1;
                let m = METRICS.iter().find(|m| m.name == name).unwrap_or_else(|| {
                    panic!("{}: `{name}` is recorded but not in telemetry::METRICS", path.display())
                });
                assert_eq!(m.kind, kind, "{name}: recorded as {kind:?}, listed as {:?}", m.kind);
            }
        }
    }
    assert!(recorded >= METRICS.len(), "found {recorded} recording sites");
}

/// The configuration the compose file's nodes run with is valid, on the PostgreSQL store, and the compose
/// file gives each node its own id and every variable the configuration expands.
#[test]
fn the_compose_setup_configures_two_nodes_on_postgres_and_rabbitmq() {
    let text = std::fs::read_to_string(repo().join("deploy/scale.toml")).unwrap();
    let env: std::collections::BTreeMap<String, String> = [
        ("NUDGE_POSTGRES_URL", "postgres://nudge:pw@postgres:5432/nudge"),
        ("NUDGE_REDIS_URL", "redis://redis:6379"),
        ("NUDGE_AMQP_URL", "amqp://guest:guest@rabbitmq:5672/%2f"),
        ("NUDGE_PSEUDONYM_KEY", "change-me-to-32-or-more-random-bytes-0001"),
        ("SHOPIFY_APP_SECRET", "shpss_x"),
        ("KLAVIYO_PRIVATE_KEY", "pk_fake_demo"),
        ("NUDGE__CLUSTER__NODE_ID", "nudge-a"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    let cfg = nudge::config::Config::from_toml(&text, &env).expect("deploy/scale.toml is valid");
    assert_eq!(cfg.storage.backend, nudge::config::StorageBackend::Postgres);
    assert_eq!(cfg.cluster.node_id.as_deref(), Some("nudge-a"));
    assert_eq!(cfg.cache.backend, nudge::config::CacheBackend::Redis, "the nodes share delivery");
    assert_eq!(cfg.bus.backend, nudge::config::BusBackend::Rabbitmq, "acknowledged through RabbitMQ");
    let compose = std::fs::read_to_string(repo().join("deploy/docker-compose.yml")).unwrap();
    for var in [
        "NUDGE_POSTGRES_URL",
        "NUDGE_REDIS_URL",
        "NUDGE_AMQP_URL",
        "NUDGE_PSEUDONYM_KEY",
        "SHOPIFY_APP_SECRET",
        "KLAVIYO_PRIVATE_KEY",
    ] {
        assert!(compose.contains(&format!("{var}:")), "the compose file sets {var}");
    }
    // RabbitMQ's guest user is refused from other hosts: the nodes connect as the user the compose file
    // creates.
    assert!(compose.contains("RABBITMQ_DEFAULT_USER: nudge"), "the broker gets a user of its own");
    assert!(compose.contains("NUDGE_AMQP_URL: amqp://nudge:"), "the nodes connect as that user");
    assert!(
        compose.contains("NUDGE__CLUSTER__NODE_ID: nudge-a")
            && compose.contains("NUDGE__CLUSTER__NODE_ID: nudge-b")
    );
}
