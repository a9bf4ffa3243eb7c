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
