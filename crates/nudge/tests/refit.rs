//! The server's scheduled refit (`nudge::models_cli::refit_from_store`) on the CDNOW history imported into
//! a store: it refuses to activate a misfit selection, activates a sound one, skips unchanged data, and
//! refuses a version whose churn lift quality on the holdout is below the active version's. Each saved
//! version's outcome is audited (stage `model_refit`).

use nudge::config::Config;
use nudge::import::{HistoryFormat, import_rows, parse_history};
use nudge::models_cli::{RefitOutcome, refit_from_store};
use nudge_model::{AuditStage, Currency, TraceId};
use nudge_store::Store;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;

/// The folder holding the CDNOW files, from `NUDGE_CDNOW_DIR` or the shared data folder next to the
/// repository.
fn cdnow_dir() -> PathBuf {
    let dir = std::env::var_os("NUDGE_CDNOW_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/cdnow")));
    if !dir.join("CDNOW_sample.txt").is_file() {
        panic!(
            "CDNOW data not found: looked for CDNOW_sample.txt in {}; set NUDGE_CDNOW_DIR to the folder holding \
             CDNOW_sample.txt",
            dir.display()
        );
    }
    dir
}

/// A configuration with its data in `dir` and `models` settings from TOML text.
fn config(dir: &Path, models_toml: &str) -> Config {
    let mut cfg = Config::from_toml(models_toml, &BTreeMap::new()).expect("the configuration is valid");
    cfg.storage.data_dir = dir.to_path_buf();
    cfg.storage.durability = nudge_store::sqlite::Durability::Normal;
    cfg
}

/// Opens the store of `cfg` and imports the CDNOW sample into it (transactions and customer states).
async fn store_with_cdnow(cfg: &Config) -> Arc<dyn Store> {
    let store = nudge::app::open_store(cfg).await.expect("the store opens");
    let path = cdnow_dir().join("CDNOW_sample.txt");
    let usd = Currency::parse("USD").unwrap();
    let rows = tokio::task::spawn_blocking(move || parse_history(&path, HistoryFormat::Cdnow, usd))
        .await
        .unwrap()
        .expect("the CDNOW sample parses");
    let summary = import_rows(&*store, rows, false).await.expect("the import succeeds");
    assert_eq!(summary.new_transactions, 6919, "{summary:?}");
    assert_eq!(summary.customers, 2357, "{summary:?}");
    store
}

/// The trace ids of the `model_refit` audit records, oldest first, read from `nudge.db` with the `sqlite3`
/// command-line shell (read-only); `None` when the shell is not installed. There is no store API that lists
/// refit traces, and the test has no SQLite library of its own.
fn refit_trace_ids(dir: &Path) -> Option<Vec<TraceId>> {
    let uri = format!("file:{}?mode=ro", dir.join("nudge.db").display());
    let out = Command::new("sqlite3")
        .arg(&uri)
        .arg("SELECT trace_id FROM audit WHERE stage = 'model_refit' ORDER BY id")
        .output()
        .ok()?;
    assert!(out.status.success(), "sqlite3 failed: {}", String::from_utf8_lossy(&out.stderr));
    Some(
        String::from_utf8(out.stdout)
            .unwrap()
            .lines()
            .map(|l| l.trim().parse().unwrap_or_else(|e| panic!("not a trace id `{l}`: {e:?}")))
            .collect(),
    )
}

/// Checks that the audit holds exactly `outcomes` as `model_refit` records (in order), each readable
/// through `Store::trace` as one record without a customer whose detail is the outcome. Skipped (with a
/// note) when the `sqlite3` shell is missing.
async fn assert_audited(store: &dyn Store, dir: &Path, outcomes: &[&RefitOutcome]) {
    let Some(ids) = refit_trace_ids(dir) else {
        eprintln!("note: the sqlite3 shell is not installed; the refit audit records were not checked");
        return;
    };
    assert_eq!(ids.len(), outcomes.len(), "model_refit records: {ids:?}");
    for (id, outcome) in ids.into_iter().zip(outcomes) {
        let view = store.trace(id).await.unwrap().expect("the refit's trace is readable");
        assert!(view.terminal.is_none(), "{:?}", view.terminal);
        assert_eq!(view.records.len(), 1, "{:?}", view.records);
        let r = &view.records[0];
        assert_eq!(r.stage, AuditStage::ModelRefit);
        assert_eq!(r.customer, None);
        assert_eq!(r.detail, serde_json::to_value(outcome).unwrap());
    }
}

/// Runs `nudge models fit` on the store's history in `dir` and insists on success.
fn cli_fit(dir: &Path, args: &[&str]) {
    let out = Command::new(env!("CARGO_BIN_EXE_nudge"))
        .arg("--data-dir")
        .arg(dir)
        .args(["models", "fit"])
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("NUDGE_CONFIG")
        .output()
        .expect("the nudge binary runs");
    assert!(
        out.status.success(),
        "nudge models fit {args:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// CDNOW's orders run to 1998-06-30: the default 91-day holdout starts after 1998-03-31.
const REFIT_CALIBRATION_END: &str = "1998-03-31";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refit_refuses_a_misfit_selection_but_saves_and_audits_it() {
    let dir = tempfile::tempdir().unwrap();
    // Every family tracks CDNOW's cumulative repeat purchases within about 4.5–6%; a 2% bound makes each
    // one misfit.
    let cfg = config(dir.path(), "[models]\nmax_tracking_deviation = 0.02\n");
    let store = store_with_cdnow(&cfg).await;
    let stats = store.stats().await.unwrap();

    let outcome = refit_from_store(&*store, &cfg).await.unwrap().expect("CDNOW passes the sufficiency gate");
    eprintln!("refit outcome: {outcome:#?}");
    assert!(!outcome.activated, "{outcome:#?}");
    assert!(outcome.reason.contains("misfit"), "{outcome:#?}");
    assert_eq!(outcome.calibration_end.as_deref(), Some(REFIT_CALIBRATION_END), "{outcome:#?}");
    assert_eq!(outcome.active_version, None);
    assert_eq!(outcome.active_lift_quality, None);

    // Saved, flagged misfit, not active; nothing is active.
    let versions = store.model_versions().await.unwrap();
    assert_eq!(versions.len(), 1, "{versions:?}");
    let v = &versions[0];
    assert_eq!(v.id, outcome.version);
    assert!(!v.active);
    assert_eq!(v.family, outcome.selected);
    assert_eq!(v.body["selected_misfit"], true, "{}", v.body);
    assert!(store.active_model_version().await.unwrap().is_none());

    // The refit touches neither deliveries, customers, the outbox nor terminal states.
    assert_eq!(store.stats().await.unwrap(), stats);
    assert_audited(&*store, dir.path(), &[&outcome]).await;

    // The same data under other rules is fitted again (the refused version does not block it).
    let relaxed = config(dir.path(), "");
    let again = refit_from_store(&*store, &relaxed).await.unwrap().expect("new rules refit the same data");
    assert!(again.activated, "{again:#?}");
    assert_ne!(again.version, outcome.version);
    assert_eq!(store.active_model_version().await.unwrap().map(|v| v.id), Some(again.version.clone()));
    assert_audited(&*store, dir.path(), &[&outcome, &again]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refit_activates_a_sound_selection_and_skips_unchanged_data() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "");
    let store = store_with_cdnow(&cfg).await;
    let stats = store.stats().await.unwrap();

    let outcome = refit_from_store(&*store, &cfg).await.unwrap().expect("CDNOW passes the sufficiency gate");
    eprintln!("refit outcome: {outcome:#?}");
    assert!(outcome.activated, "{outcome:#?}");
    assert!(outcome.reason.contains("not misfit"), "{outcome:#?}");
    assert_eq!(outcome.calibration_end.as_deref(), Some(REFIT_CALIBRATION_END), "{outcome:#?}");
    let quality = outcome.lift_quality.expect("the holdout measures the lift quality");
    assert!(quality.is_finite() && quality > 0.0, "{outcome:#?}");
    assert!(outcome.reason.contains(&format!("churn lift quality {:.1}%", 100.0 * quality)), "{outcome:#?}");
    assert_eq!(outcome.active_version, None);
    assert_eq!(outcome.active_lift_quality, None);

    let active = store.active_model_version().await.unwrap().expect("a version is active");
    assert_eq!(active.id, outcome.version);
    assert_eq!(active.family, outcome.selected);
    assert_eq!(active.body["selected_misfit"], false, "{}", active.body);

    // Unchanged data: no new version, no activation change, no audit record.
    assert_eq!(refit_from_store(&*store, &cfg).await.unwrap(), None);
    let versions = store.model_versions().await.unwrap();
    assert_eq!(versions.len(), 1, "{versions:?}");
    assert_eq!(store.active_model_version().await.unwrap().map(|v| v.id), Some(outcome.version.clone()));

    assert_eq!(store.stats().await.unwrap(), stats);
    assert_audited(&*store, dir.path(), &[&outcome]).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refit_refuses_a_version_below_the_active_ones_lift_quality() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "[models]\nrefit_max_quality_drop = 0.0\n");
    let store = store_with_cdnow(&cfg).await;

    // The active version: Pareto/NBD alone, calibrated to 1997-09-30 (other training data than the
    // refit's, so the refit is not skipped as unchanged). On the refit's holdout its churn lift quality
    // (~58%) is above that of the family the refit selects (MBG/NBD, ~57%).
    cli_fit(dir.path(), &["--families", "pareto_nbd", "--calibration-end", "1997-09-30", "--activate"]);
    let before = store.active_model_version().await.unwrap().expect("the Pareto/NBD version is active");
    assert_eq!(before.family, "pareto_nbd");
    let stats = store.stats().await.unwrap();

    let outcome = refit_from_store(&*store, &cfg).await.unwrap().expect("CDNOW passes the sufficiency gate");
    eprintln!("refit outcome: {outcome:#?}");
    assert_eq!(outcome.active_version.as_deref(), Some(before.id.as_str()), "{outcome:#?}");
    assert_eq!(outcome.calibration_end.as_deref(), Some(REFIT_CALIBRATION_END), "{outcome:#?}");
    let new = outcome.lift_quality.expect("the new version's lift quality");
    let old = outcome.active_lift_quality.expect("the active version's lift quality on the same holdout");
    assert!(new < old, "the refit's selection is expected below the active Pareto/NBD: {outcome:#?}");
    assert!(!outcome.activated, "{outcome:#?}");
    assert!(outcome.reason.contains("lift quality"), "{outcome:#?}");
    assert!(
        outcome.reason.contains(&format!(
            "{:.1}% against the active version's {:.1}%",
            100.0 * new,
            100.0 * old
        )),
        "{outcome:#?}"
    );
    assert!(outcome.reason.contains("allowed drop 0.0 points"), "{outcome:#?}");

    // Saved beside the active version, which stays active.
    let versions = store.model_versions().await.unwrap();
    assert_eq!(versions.len(), 2, "{versions:?}");
    let saved = versions.iter().find(|v| v.id == outcome.version).expect("the refit's version is saved");
    assert!(!saved.active);
    assert_eq!(saved.body["selected_misfit"], false, "{}", saved.body);
    assert_eq!(store.active_model_version().await.unwrap().map(|v| v.id), Some(before.id));

    assert_eq!(store.stats().await.unwrap(), stats);
    assert_audited(&*store, dir.path(), &[&outcome]).await;
}
