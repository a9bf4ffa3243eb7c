//! `nudge models fit --family propensity` end to end: a store filled with the customer states of the
//! abandonment simulator (`nudge_decide::sim::abandonment`), fitted through the binary; the saved version,
//! its metrics, the sufficiency gate on activation, `models report`, `models list` and `models activate`
//! beside an active BTYD version (each kind keeps its own active version).

use nudge::config::Config;
use nudge_decide::sim::SimArgs;
use nudge_decide::sim::abandonment;
use nudge_store::StoredState;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The CDNOW summary file (for an active BTYD version), from `NUDGE_CDNOW_DIR` or the shared data folder
/// next to the repository.
fn cdnow_summary() -> String {
    let dir = std::env::var_os("NUDGE_CDNOW_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/cdnow")));
    let file = dir.join("cdnow_customers_summary.csv");
    assert!(
        file.is_file(),
        "CDNOW data not found: looked for {}; set NUDGE_CDNOW_DIR to the folder holding it",
        file.display()
    );
    file.display().to_string()
}

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

fn ok(data_dir: &Path, args: &[&str]) -> String {
    let o = nudge(data_dir, args);
    assert!(o.status.success(), "nudge {args:?} failed:\n{}\n{}", text(&o.stdout), text(&o.stderr));
    text(&o.stdout)
}

/// Runs the binary, insists on failure and returns stdout and stderr.
fn fails(data_dir: &Path, args: &[&str]) -> (String, String) {
    let o = nudge(data_dir, args);
    assert!(!o.status.success(), "nudge {args:?} should have failed:\n{}", text(&o.stdout));
    (text(&o.stdout), text(&o.stderr))
}

fn json(s: &str) -> Value {
    serde_json::from_str(s.trim()).unwrap_or_else(|e| panic!("not one JSON value ({e}):\n{s}"))
}

fn num(v: &Value, pointer: &str) -> f64 {
    v.pointer(pointer).and_then(Value::as_f64).unwrap_or_else(|| panic!("no number at {pointer} in {v}"))
}

/// What a simulated store holds: its checkouts (converted or abandoned), and how many of them are a day
/// older than its latest activity (an order, a checkout or a browse entry), so labelled by the fit.
struct Filled {
    checkouts: usize,
    labelled: usize,
    latest: time::OffsetDateTime,
}

/// Writes the simulated customers' final states into the store in `data_dir`.
async fn fill(data_dir: &Path, customers: usize, days: u32, seed: u64) -> Filled {
    let mut cfg = Config::from_toml("", &BTreeMap::new()).expect("the empty configuration is valid");
    cfg.storage.data_dir = data_dir.to_path_buf();
    cfg.storage.durability = nudge_store::sqlite::Durability::Normal;
    let store = nudge::app::open_store(&cfg).await.expect("the store opens");
    let world = abandonment::simulate(&SimArgs { customers, days, seed });
    let states = world
        .states
        .iter()
        .map(|s| StoredState { customer: s.customer.clone(), email: None, state: s.encode() })
        .collect();
    store.put_states(states).await.expect("the states are stored");
    let latest = world
        .states
        .iter()
        .flat_map(|s| {
            s.orders
                .values()
                .map(|o| o.updated_at)
                .chain(s.open_checkouts.values().map(|c| c.updated_at))
                .chain(s.browse.iter().map(|b| b.at))
        })
        .max()
        .unwrap_or(world.end);
    let cutoff = latest - time::Duration::days(1);
    let labelled = world
        .states
        .iter()
        .map(|s| {
            s.orders.values().filter(|o| o.checkout_token.is_some() && o.created_at <= cutoff).count()
                + s.open_checkouts.values().filter(|c| c.updated_at <= cutoff).count()
        })
        .sum();
    Filled { checkouts: world.truth.len(), labelled, latest }
}

/// The ids of the active versions, from `models list --json`.
fn active(data_dir: &Path) -> Vec<(String, String)> {
    let list = json(&ok(data_dir, &["models", "list", "--json"]));
    list.as_array()
        .expect("a list")
        .iter()
        .filter(|e| e["active"] == true)
        .map(|e| (e["id"].as_str().unwrap().to_string(), e["family"].as_str().unwrap().to_string()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn fit_report_list_and_activate_beside_an_active_btyd_version() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let filled = fill(&data, 800, 150, 11).await;
    assert!(filled.checkouts > 1_500, "{} simulated checkouts", filled.checkouts);

    // An active BTYD version first.
    let btyd = json(&ok(&data, &["models", "fit", "--summary", &cdnow_summary(), "--json"]));
    let btyd = btyd["version"].as_str().expect("a saved BTYD version").to_string();
    ok(&data, &["models", "activate", &btyd]);

    // The propensity fit: a saved, inactive version with holdout metrics for both heads.
    let fit = json(&ok(&data, &["models", "fit", "--family", "propensity", "--json"]));
    let version = fit["version"].as_str().expect("a version id").to_string();
    assert!(version.starts_with('p'), "{version}");
    assert_eq!(fit["family"], "propensity");
    assert_eq!(fit["active"], false);
    assert_eq!(fit["customers"], 800);
    assert_eq!(fit["currency"], "USD");
    assert_eq!(fit["sufficiency"]["ok"], true, "{fit}");
    for head in ["abandon", "purchase_7d"] {
        let m = &fit[head]["metrics"];
        assert!(m.is_object(), "{head} has holdout metrics: {fit}");
        let auc = num(m, "/auc");
        assert!(auc > 0.6 && auc < 1.0, "{head} holdout AUC {auc}");
        let brier = num(m, "/brier");
        assert!(brier > 0.0 && brier < 0.25, "{head} Brier {brier}");
        assert!(num(m, "/ece") < 0.1, "{head}: {m}");
        assert!(num(m, "/pr_auc") > 0.0);
        assert_eq!(m["calibration"].as_array().unwrap().len(), 10);
        // The time split: the holdout follows the training slice.
        let (train_to, holdout_from) =
            (fit[head]["train"]["to"].as_str().unwrap(), fit[head]["holdout"]["from"].as_str().unwrap());
        assert!(train_to <= holdout_from, "{head}: train to {train_to}, holdout from {holdout_from}");
    }
    // The store's history ended long ago: it is labelled as of its latest activity (labelling as of now
    // would call every week since "no purchase"), and every checkout a day older than that is labelled.
    let as_of = fit["labelled_as_of"].as_str().expect("the labelling moment");
    let want = filled.latest.format(&time::format_description::well_known::Rfc3339).unwrap();
    assert_eq!(as_of, want);
    let labelled = num(&fit, "/abandon/fitted_on/examples") + num(&fit, "/abandon/dropped_missing");
    assert_eq!(labelled as usize, filled.labelled, "{fit}");
    assert!(filled.labelled > filled.checkouts * 9 / 10, "{} of {}", filled.labelled, filled.checkouts);
    let weeks = num(&fit, "/purchase_7d/fitted_on/positives");
    assert!(weeks > 100.0, "customer-weeks with a purchase: {fit}");
    let ids: Vec<String> = active(&data).into_iter().map(|(id, _)| id).collect();
    assert_eq!(ids.as_slice(), std::slice::from_ref(&btyd), "the fit activated nothing");

    // The report prints the metrics the fit measured.
    let report = ok(&data, &["models", "report", &version]);
    assert!(report.contains(&format!("propensity version {version}")), "{report}");
    assert!(report.contains("abandon_propensity") && report.contains("purchase_propensity_7d"), "{report}");
    let auc = format!("AUC {:.4}", num(&fit, "/abandon/metrics/auc"));
    assert!(report.contains(&auc), "{auc} in {report}");
    assert!(report.contains("sufficiency: ok"), "{report}");
    let rj = json(&ok(&data, &["models", "report", &version, "--json"]));
    assert_eq!(rj["abandon"]["metrics"], fit["abandon"]["metrics"]);
    assert_eq!(rj["purchase_7d"]["metrics"], fit["purchase_7d"]["metrics"]);

    // The list names each version's family and says what the propensity version measured.
    let list = json(&ok(&data, &["models", "list", "--json"]));
    let entry = list.as_array().unwrap().iter().find(|e| e["id"] == version.as_str()).unwrap().clone();
    assert_eq!(entry["family"], "propensity");
    assert_eq!(entry["kind"], "propensity");
    assert_eq!(entry["converged"], true, "{entry}");
    assert_eq!(entry["holdout"], true, "{entry}");
    assert_eq!(entry["sufficiency"]["ok"], true);
    let b = list.as_array().unwrap().iter().find(|e| e["id"] == btyd.as_str()).unwrap();
    assert_eq!(b["kind"], "btyd");
    let table = ok(&data, &["models", "list"]);
    let line = table.lines().find(|l| l.starts_with(&version)).unwrap_or_else(|| panic!("{table}"));
    assert!(line.contains("propensity") && line.contains("AUC"), "{line}");

    // Activating it leaves the BTYD version active, and names no BTYD version as the one it replaced.
    let out = ok(&data, &["models", "activate", &version]);
    assert!(out.contains(&format!("active model version: {version} (propensity)")), "{out}");
    assert!(!out.contains(&btyd), "the BTYD version was not replaced: {out}");
    let mut now_active = active(&data);
    now_active.sort();
    let mut want = vec![(btyd.clone(), active_family(&data, &btyd)), (version.clone(), "propensity".into())];
    want.sort();
    assert_eq!(now_active, want);

    // A second fit activated at once replaces the first propensity version, and says so.
    let second = json(&ok(&data, &["models", "fit", "--family", "propensity", "--activate", "--json"]));
    let second = second["version"].as_str().unwrap().to_string();
    assert_ne!(second, version);
    let ids: Vec<String> = active(&data).into_iter().map(|(id, _)| id).collect();
    assert!(ids.contains(&btyd) && ids.contains(&second) && !ids.contains(&version), "{ids:?}");
    // Rolling back: the previous one of the same kind is named.
    let out = ok(&data, &["models", "activate", &version]);
    assert!(out.contains(&format!("was {second}")), "{out}");
    let out = ok(&data, &["models", "activate", &version]);
    assert!(out.contains("already active"), "{out}");
}

/// The family of a version, from `models list --json`.
fn active_family(data_dir: &Path, id: &str) -> String {
    let list = json(&ok(data_dir, &["models", "list", "--json"]));
    list.as_array().unwrap().iter().find(|e| e["id"] == id).unwrap()["family"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn too_little_data_is_saved_but_not_activated_without_force() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let filled = fill(&data, 120, 90, 5).await;
    assert!(filled.labelled < 300, "{} checkouts is below the gate", filled.labelled);

    let (out, err) = fails(&data, &["models", "fit", "--family", "propensity", "--activate", "--json"]);
    assert!(err.contains("not activated") && err.contains("--force"), "{err}");
    let fit = json(&out);
    assert_eq!(fit["sufficiency"]["ok"], false, "{fit}");
    let reason = fit["sufficiency"]["reason"].as_str().unwrap();
    assert!(reason.contains("fewer than 300"), "{reason}");
    assert_eq!(fit["active"], false);
    let version = fit["version"].as_str().unwrap().to_string();
    assert!(active(&data).is_empty());

    // The report says why; activation is refused without --force and done with it.
    let report = ok(&data, &["models", "report", &version]);
    assert!(report.contains("sufficiency: NOT met"), "{report}");
    let (_, err) = fails(&data, &["models", "activate", &version]);
    assert!(err.contains("insufficient data") && err.contains("--force"), "{err}");
    let out = ok(&data, &["models", "activate", &version, "--force"]);
    assert!(out.contains(&format!("active model version: {version} (propensity)")), "{out}");
    assert_eq!(active(&data), [(version.clone(), "propensity".to_string())]);

    // `models score` scores with BTYD versions: an active propensity version is not one, and a propensity
    // version named with --version is refused with what it is.
    let summary = cdnow_summary();
    let (_, err) = fails(&data, &["models", "score", "--summary", &summary]);
    assert!(err.contains("no model version is active of the BTYD kind"), "{err}");
    let (_, err) = fails(&data, &["models", "score", "--version", &version, "--summary", &summary]);
    assert!(err.contains("is a propensity version") && err.contains("models report"), "{err}");

    // --force on the fit activates at once.
    let forced =
        json(&ok(&data, &["models", "fit", "--family", "propensity", "--activate", "--force", "--json"]));
    assert_eq!(forced["active"], true);
    let forced = forced["version"].as_str().unwrap().to_string();
    assert_eq!(active(&data), [(forced, "propensity".to_string())]);

    // An empty store has nothing to fit.
    let empty = dir.path().join("empty");
    fill(&empty, 0, 30, 1).await;
    let (_, err) = fails(&empty, &["models", "fit", "--family", "propensity"]);
    assert!(err.contains("no customers"), "{err}");
}
