//! Runs the store conformance suite against the PostgreSQL backend, each check in a fresh schema of the
//! database `NUDGE_TEST_POSTGRES_URL` names (skipped, with a note, when it is not set).
//! `NUDGE_CONFORMANCE_ONLY=check,check` runs only the named checks.

use nudge_store::Store;
use nudge_store::postgres::{PgConfig, PgStore};
use std::sync::Arc;

fn test_url() -> Option<String> {
    let url = std::env::var("NUDGE_TEST_POSTGRES_URL").ok().filter(|u| !u.is_empty());
    if url.is_none() {
        eprintln!(
            "skipped: NUDGE_TEST_POSTGRES_URL is not set (e.g. postgres://postgres@127.0.0.1:5432/test)"
        );
    }
    url
}

/// A store in a schema of its own, and the schema's name.
async fn fresh_store(url: &str) -> (Arc<PgStore>, String) {
    let schema = format!("nudge_t_{}", uuid::Uuid::new_v4().simple());
    let mut config = PgConfig::new(url);
    config.schema = Some(schema.clone());
    config.max_connections = 4;
    (Arc::new(PgStore::connect(&config).await.expect("connect to PostgreSQL")), schema)
}

async fn drop_schema(store: &PgStore, schema: &str) {
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {schema} CASCADE")))
        .execute(store.pool())
        .await
        .expect("drop the test schema");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_conformance() {
    let Some(url) = test_url() else { return };
    let only: Option<Vec<String>> = std::env::var("NUDGE_CONFORMANCE_ONLY")
        .ok()
        .map(|v| v.split(',').map(|s| s.trim().to_string()).filter(|s| !s.is_empty()).collect());
    let mut failed = Vec::new();
    let mut ran = 0;
    for (name, check) in nudge_store::conformance::checks() {
        if only.as_ref().is_some_and(|o| !o.iter().any(|n| n == name)) {
            continue;
        }
        ran += 1;
        let (store, schema) = fresh_store(&url).await;
        let outcome = tokio::spawn(check(store.clone() as Arc<dyn Store>)).await;
        drop_schema(&store, &schema).await;
        store.close().await;
        if outcome.is_err() {
            eprintln!("FAILED: {name}");
            failed.push(name);
        }
    }
    assert!(ran > 0, "no check matched NUDGE_CONFORMANCE_ONLY");
    assert!(failed.is_empty(), "{} of {ran} checks failed on PostgreSQL: {failed:?}", failed.len());
}
