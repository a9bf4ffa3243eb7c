//! Runs the store conformance suite against the PostgreSQL backend, each check in a fresh schema of the
//! database `NUDGE_TEST_POSTGRES_URL` names (skipped, with a note, when it is not set).
//! `NUDGE_CONFORMANCE_ONLY=check,check` runs only the named checks.

use nudge_store::Store;
use nudge_store::conformance::{fresh_postgres, postgres_test_url};
use std::sync::Arc;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_passes_conformance() {
    let Some(url) = postgres_test_url() else { return };
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
        let store = fresh_postgres(&url, "nudge_t").await;
        let outcome = tokio::spawn(check(store.clone() as Arc<dyn Store>)).await;
        store.drop_schema().await.expect("drop the test schema");
        if outcome.is_err() {
            eprintln!("FAILED: {name}");
            failed.push(name);
        }
    }
    assert!(ran > 0, "no check matched NUDGE_CONFORMANCE_ONLY");
    assert!(failed.is_empty(), "{} of {ran} checks failed on PostgreSQL: {failed:?}", failed.len());
}

/// A schema left by a test process of this host that died is dropped when the next fresh schema is made; one
/// of a live process (this one) stays.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemas_of_dead_test_processes_are_dropped() {
    use sqlx::Connection;
    let Some(url) = postgres_test_url() else { return };
    let host = nudge_store::conformance::host_tag();
    let dead =
        (1..4_000_000u32).rev().find(|p| !std::path::Path::new(&format!("/proc/{p}")).exists()).unwrap();
    let random = || uuid::Uuid::new_v4().simple().to_string()[..20].to_string();
    let left = format!("nudge_t_{host}_{dead}_{}", random());
    let live = format!("nudge_t_{host}_{}_{}", std::process::id(), random());
    let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
    for s in [&left, &live] {
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA \"{s}\"")))
            .execute(&mut conn)
            .await
            .unwrap();
    }
    let store = fresh_postgres(&url, "nudge_t").await;
    let exists = async |conn: &mut sqlx::PgConnection, s: &str| -> bool {
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
            .bind(s)
            .fetch_one(conn)
            .await
            .unwrap()
    };
    assert!(!exists(&mut conn, &left).await, "the dead process's schema is gone");
    assert!(exists(&mut conn, &live).await, "a live process's schema stays");
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA \"{live}\""))).execute(&mut conn).await.unwrap();
    store.drop_schema().await.unwrap();
}
