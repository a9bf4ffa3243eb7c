//! `nudge migrate --to postgres` through the binary: clear refusals without `storage.postgres_url`, without
//! an embedded store or without `--yes` off a terminal; and (with `NUDGE_TEST_POSTGRES_URL`) a copy with a
//! summary, repeated without copying anything again.

use nudge_store::prelude::*;
use nudge_store::sqlite::{Durability, SqliteStore};
use std::path::Path;
use std::process::{Command, Output, Stdio};

fn nudge(data_dir: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_nudge"));
    c.arg("--data-dir").arg(data_dir).args(args).env_remove("NUDGE_CONFIG").stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("the nudge binary runs")
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

async fn embedded_store(dir: &Path) {
    let s = SqliteStore::open(dir, Durability::Normal).unwrap();
    for n in 0..2 {
        s.commit_delivery(nudge_store::NewDelivery {
            trace_id: nudge_model::TraceId::new(),
            source: "shopify".into(),
            topic: "orders/create".into(),
            shop: None,
            webhook_id: Some(format!("wh-{n}")),
            event_id: None,
            received_at_ms: 1_000,
            headers_json: "{}".into(),
            body: b"{}".to_vec(),
            dedupe_keys: vec![format!("shopify:webhook:wh-{n}")],
            part: None,
        })
        .await
        .unwrap();
    }
    s.create_token("ops", "admin", "hash-ops").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_refuses_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let url = [("NUDGE__STORAGE__POSTGRES_URL", "postgres://nobody@127.0.0.1:1/none")];
    // No embedded store in the directory.
    let o = nudge(dir.path(), &url, &["migrate", "--to", "postgres", "--yes"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("no ingest.db or nudge.db"), "{}", text(&o.stderr));
    embedded_store(dir.path()).await;
    // No database named.
    let o = nudge(dir.path(), &[], &["migrate", "--to", "postgres", "--yes"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("storage.postgres_url is not set"), "{}", text(&o.stderr));
    // Not confirmed, and no terminal to ask on.
    let o = nudge(dir.path(), &url, &["migrate", "--to", "postgres"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("--yes"), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("Stop the embedded server first"), "{}", text(&o.stderr));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migrate_copies_once_and_reports() {
    let Some(url) = nudge_store::conformance::postgres_test_url() else { return };
    let dir = tempfile::tempdir().unwrap();
    embedded_store(dir.path()).await;
    let schema = format!("nudge_t_{}", uuid::Uuid::new_v4().simple());
    let env = [
        ("NUDGE__STORAGE__POSTGRES_URL", url.as_str()),
        ("NUDGE__STORAGE__POSTGRES_SCHEMA", schema.as_str()),
    ];
    let o = nudge(dir.path(), &env, &["migrate", "--to", "postgres", "--yes"]);
    assert!(o.status.success(), "{}\n{}", text(&o.stdout), text(&o.stderr));
    let out = text(&o.stdout);
    let row = |table: &str| -> Vec<String> {
        out.lines()
            .find(|l| l.split_whitespace().next() == Some(table))
            .unwrap_or_else(|| panic!("{table} in the summary:\n{out}"))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(row("deliveries")[1..], ["2", "0"], "{out}");
    assert_eq!(row("api_tokens")[1..], ["1", "0"], "{out}");
    assert!(text(&o.stderr).contains("backend = \"postgres\""), "{}", text(&o.stderr));
    assert!(text(&o.stderr).contains("deliveries: 2 rows"), "progress per table: {}", text(&o.stderr));
    // Again: nothing new.
    let o = nudge(
        dir.path(),
        &env,
        &["migrate", "--to", "postgres", "--yes", "--from", dir.path().to_str().unwrap()],
    );
    assert!(o.status.success(), "{}", text(&o.stderr));
    let again = text(&o.stdout);
    let total: Vec<&str> =
        again.lines().find(|l| l.starts_with("total")).unwrap().split_whitespace().collect();
    assert_eq!(total[1], "0", "{again}");
    // What the PostgreSQL store reads.
    let mut config = nudge_store::postgres::PgConfig::new(&url);
    config.schema = Some(schema.clone());
    let pg = nudge_store::postgres::PgStore::connect(&config).await.unwrap();
    assert_eq!(pg.list_tokens().await.unwrap()[0].name, "ops");
    assert_eq!(pg.pending_deliveries(10).await.unwrap().len(), 2);
    pg.drop_schema().await.unwrap();
}
