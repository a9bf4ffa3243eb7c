//! The propensity family's numerics against scikit-learn: the metrics (`roc_auc_score`,
//! `average_precision_score`, `brier_score_loss`, `log_loss`, `calibration_curve`) and
//! `LogisticRegression(lbfgs)` coefficients on the standardised features of a committed dataset.
//! The values were computed by `reference/propensity_reference.py`.

use nudge_decide::logistic::{self, LogisticConfig};
use nudge_decide::metrics::{self, Metrics};
use serde_json::Value;

fn reference() -> Value {
    serde_json::from_str(include_str!("reference/propensity_reference.json")).unwrap()
}

fn floats(v: &Value) -> Vec<f64> {
    v.as_array().unwrap().iter().map(|x| x.as_f64().unwrap()).collect()
}

fn close(a: f64, b: f64, tol: f64, what: &str) {
    assert!((a - b).abs() <= tol, "{what}: {a} against scikit-learn's {b}");
}

#[test]
fn metrics_match_scikit_learn() {
    let r = reference();
    for case in r["metrics"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let labels: Vec<bool> =
            case["labels"].as_array().unwrap().iter().map(|v| v.as_i64() == Some(1)).collect();
        let scores = floats(&case["scores"]);
        let m = Metrics::evaluate(&labels, &scores).unwrap();
        close(m.auc.unwrap(), case["roc_auc"].as_f64().unwrap(), 1e-12, &format!("{name} AUC"));
        close(m.pr_auc.unwrap(), case["average_precision"].as_f64().unwrap(), 1e-12, &format!("{name} AP"));
        close(m.brier, case["brier"].as_f64().unwrap(), 1e-12, &format!("{name} Brier"));
        close(m.log_loss, case["log_loss"].as_f64().unwrap(), 1e-9, &format!("{name} log loss"));
        close(m.ece, case["ece"].as_f64().unwrap(), 1e-12, &format!("{name} ECE"));
        let nonempty: Vec<_> = m.calibration.iter().filter(|b| b.count > 0).collect();
        let counts: Vec<u64> =
            case["calibration_counts"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap()).collect();
        assert_eq!(nonempty.iter().map(|b| b.count).collect::<Vec<_>>(), counts, "{name} bin counts");
        for (b, (obs, pred)) in nonempty.iter().zip(
            floats(&case["calibration_observed"]).into_iter().zip(floats(&case["calibration_predicted"])),
        ) {
            close(b.observed_rate.unwrap(), obs, 1e-12, &format!("{name} observed rate"));
            close(b.mean_predicted.unwrap(), pred, 1e-12, &format!("{name} mean predicted"));
        }
        close(metrics::ece(&labels, &scores).unwrap(), m.ece, 0.0, "ece()");
    }
}

fn dataset() -> (Vec<f64>, Vec<bool>) {
    let mut rdr = csv::Reader::from_reader(include_str!("reference/propensity_logistic.csv").as_bytes());
    let (mut x, mut y) = (Vec::new(), Vec::new());
    for rec in rdr.records() {
        let rec = rec.unwrap();
        let vals: Vec<f64> = rec.iter().map(|v| v.parse().unwrap()).collect();
        x.extend_from_slice(&vals[..5]);
        y.push(vals[5] == 1.0);
    }
    (x, y)
}

#[test]
fn logistic_coefficients_match_scikit_learn() {
    let r = reference();
    let (x, y) = dataset();
    for fit in r["logistic"].as_array().unwrap() {
        let c = fit["c"].as_f64().unwrap();
        let m = logistic::fit(&x, 5, &y, &LogisticConfig { c, ..LogisticConfig::default() }).unwrap();
        assert!(m.converged);
        for (i, (ours, theirs)) in m.coef.iter().zip(floats(&fit["coef"])).enumerate() {
            close(*ours, theirs, 1e-5, &format!("C={c} coefficient {i}"));
        }
        close(m.intercept, fit["intercept"].as_f64().unwrap(), 1e-5, &format!("C={c} intercept"));
    }
}
