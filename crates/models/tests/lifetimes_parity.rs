//! Parity with the `lifetimes` Python package (0.11.3) on CDNOW: predictions evaluated
//! at lifetimes' fitted parameters, and fits compared on log-likelihood and parameters.
//! The reference files are generated outside this crate and described in the README
//! next to them.

mod common;

use std::path::PathBuf;

use nudge_models::{
    BgNbd, ClvSettings, FitOptions, GammaGamma, MbgNbd, ParetoNbd, Rfm, Spend, TimeUnit, TransactionModel,
    customer_lifetime_value, customer_lifetime_values,
};
use serde_json::Value;

fn dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/data/lifetimes_cdnow"))
}

fn params() -> Value {
    let text = std::fs::read_to_string(dir().join("params.json")).expect("params.json");
    serde_json::from_str(&text).expect("json")
}

fn num(v: &Value, path: &[&str]) -> f64 {
    let mut v = v;
    for p in path {
        v = &v[*p];
    }
    v.to_string().parse().unwrap_or_else(|_| panic!("number at {path:?}"))
}

fn bg(v: &Value) -> BgNbd {
    BgNbd::new(
        num(v, &["bgnbd", "r"]),
        num(v, &["bgnbd", "alpha"]),
        num(v, &["bgnbd", "a"]),
        num(v, &["bgnbd", "b"]),
    )
    .unwrap()
}

fn mbg(v: &Value) -> MbgNbd {
    MbgNbd::new(
        num(v, &["mbgnbd", "r"]),
        num(v, &["mbgnbd", "alpha"]),
        num(v, &["mbgnbd", "a"]),
        num(v, &["mbgnbd", "b"]),
    )
    .unwrap()
}

fn pareto(v: &Value) -> ParetoNbd {
    let k = "pareto_nbd";
    ParetoNbd::new(num(v, &[k, "r"]), num(v, &[k, "alpha"]), num(v, &[k, "s"]), num(v, &[k, "beta"])).unwrap()
}

fn gg(v: &Value) -> GammaGamma {
    let k = "gamma_gamma";
    GammaGamma::new(num(v, &[k, "p"]), num(v, &[k, "q"]), num(v, &[k, "v"])).unwrap()
}

/// The prediction rows keyed by column name.
fn predictions() -> Vec<std::collections::HashMap<String, f64>> {
    let mut r = csv::Reader::from_path(dir().join("predictions.csv")).expect("predictions.csv");
    let headers: Vec<String> = r.headers().unwrap().iter().map(String::from).collect();
    r.records()
        .map(|rec| {
            let rec = rec.unwrap();
            headers.iter().cloned().zip(rec.iter().map(|f| f.parse::<f64>().unwrap())).collect()
        })
        .collect()
}

fn assert_abs(got: f64, want: f64, tol: f64, what: &str) {
    assert!((got - want).abs() <= tol, "{what}: got {got}, lifetimes {want}");
}

fn assert_rel(got: f64, want: f64, tol: f64, what: &str) {
    assert!((got - want).abs() <= tol * want.abs().max(1e-9), "{what}: got {got}, lifetimes {want}");
}

#[test]
fn per_customer_predictions_match_lifetimes() {
    let v = params();
    let (b, m, p, g) = (bg(&v), mbg(&v), pareto(&v), gg(&v));
    let clv = ClvSettings { months: 12, monthly_discount_rate: 0.01, unit: TimeUnit::W };
    let rows = predictions();
    assert_eq!(rows.len(), 2357);
    for row in &rows {
        let c = Rfm::new(row["frequency"] as u32, row["recency"], row["T"]);
        let id = row["ID"];
        let w = |k: &str| row[k];
        assert_abs(b.p_alive(&c), w("bgnbd_p_alive"), 1e-6, &format!("{id} bg p_alive"));
        assert_rel(
            b.conditional_expected_purchases(10.0, &c),
            w("bgnbd_cond_exp_10"),
            1e-6,
            &format!("{id} bg E10"),
        );
        assert_rel(
            b.conditional_expected_purchases(39.0, &c),
            w("bgnbd_cond_exp_39"),
            1e-6,
            &format!("{id} bg E39"),
        );
        for n in 0..3u32 {
            let key = format!("bgnbd_prob_{n}_39");
            assert_abs(b.prob_n_purchases(39.0, n), w(&key), 1e-6, &key);
        }
        assert_abs(m.p_alive(&c), w("mbgnbd_p_alive"), 1e-6, &format!("{id} mbg p_alive"));
        assert_rel(
            m.conditional_expected_purchases(39.0, &c),
            w("mbgnbd_cond_exp_39"),
            1e-6,
            &format!("{id} mbg E39"),
        );
        assert_abs(p.p_alive(&c), w("pareto_p_alive"), 1e-6, &format!("{id} pareto p_alive"));
        assert_rel(
            p.conditional_expected_purchases(39.0, &c),
            w("pareto_cond_exp_39"),
            1e-6,
            &format!("{id} pareto E39"),
        );
        let spend = g.conditional_expected_spend(c.x, w("monetary_value"));
        assert_rel(spend, w("gg_cond_exp_spend"), 1e-6, &format!("{id} spend"));
        let value = customer_lifetime_value(&b, &g, &c, w("monetary_value"), &clv);
        assert_rel(value, w("clv_bgnbd_12m"), 1e-6, &format!("{id} clv"));
    }
    // The batched CLV agrees with the one-at-a-time computation.
    let data: Vec<Rfm> = rows.iter().map(|r| Rfm::new(r["frequency"] as u32, r["recency"], r["T"])).collect();
    let spend: Vec<f64> = rows.iter().map(|r| r["monetary_value"]).collect();
    for (value, row) in customer_lifetime_values(&b, &g, &data, &spend, &clv).iter().zip(&rows) {
        assert_rel(*value, row["clv_bgnbd_12m"], 1e-6, "batched clv");
    }
}

#[test]
fn unconditional_expectations_match_lifetimes() {
    let v = params();
    let (b, m, p) = (bg(&v), mbg(&v), pareto(&v));
    for t in ["1", "3", "32", "78"] {
        let tf: f64 = t.parse().unwrap();
        assert_rel(
            b.expected_purchases(tf),
            num(&v, &["expected_purchases", "bgnbd", t]),
            1e-6,
            "bg E[X(t)]",
        );
        assert_rel(
            m.expected_purchases(tf),
            num(&v, &["expected_purchases", "mbgnbd", t]),
            1e-6,
            "mbg E[X(t)]",
        );
        assert_rel(
            p.expected_purchases(tf),
            num(&v, &["expected_purchases", "pareto_nbd", t]),
            1e-6,
            "pareto E[X(t)]",
        );
    }
    let hardie = b.conditional_expected_purchases(39.0, &Rfm::new(2, 30.43, 38.86));
    assert_rel(hardie, num(&v, &["hardie_conditional", "bgnbd"]), 1e-6, "hardie");
}

#[test]
fn log_likelihoods_and_fits_match_lifetimes() {
    let v = params();
    let data = common::cdnow_rfm();
    let spend: Vec<Spend> = common::cdnow_summary().iter().map(|r| Spend { x: r.1, mean: r.4 }).collect();
    let opts = FitOptions::default();

    // The likelihood at lifetimes' parameters is the same function.
    assert_rel(bg(&v).total_log_likelihood(&data), num(&v, &["bgnbd", "loglik"]), 1e-9, "bg ll");
    assert_rel(mbg(&v).total_log_likelihood(&data), num(&v, &["mbgnbd", "loglik"]), 1e-9, "mbg ll");
    assert_rel(pareto(&v).total_log_likelihood(&data), num(&v, &["pareto_nbd", "loglik"]), 1e-9, "pareto ll");
    assert_rel(gg(&v).total_log_likelihood(&spend), num(&v, &["gamma_gamma", "loglik"]), 1e-9, "gg ll");

    // Our optimum is at least as good, and at the same place.
    let f = BgNbd::fit(&data, &opts).unwrap();
    assert!(f.loglik >= num(&v, &["bgnbd", "loglik"]) - 1e-6);
    let w = bg(&v);
    for (a, b) in [(f.params.r, w.r), (f.params.alpha, w.alpha), (f.params.a, w.a), (f.params.b, w.b)] {
        assert_rel(a, b, 1e-4, "bg param");
    }
    let f = MbgNbd::fit(&data, &opts).unwrap();
    assert!(f.loglik >= num(&v, &["mbgnbd", "loglik"]) - 1e-6);
    let w = mbg(&v);
    for (a, b) in [(f.params.r, w.r), (f.params.alpha, w.alpha), (f.params.a, w.a), (f.params.b, w.b)] {
        assert_rel(a, b, 1e-4, "mbg param");
    }
    // lifetimes fits Pareto/NBD by Nelder-Mead with a loose tolerance; its README asks
    // for about 1e-3 relative agreement on parameters.
    let f = ParetoNbd::fit(&data, &opts).unwrap();
    assert!(f.loglik >= num(&v, &["pareto_nbd", "loglik"]) - 1e-6);
    let w = pareto(&v);
    for (a, b) in [(f.params.r, w.r), (f.params.alpha, w.alpha), (f.params.s, w.s), (f.params.beta, w.beta)] {
        assert_rel(a, b, 1e-3, "pareto param");
    }
    let f = GammaGamma::fit(&spend, &opts).unwrap();
    assert!(f.loglik >= num(&v, &["gamma_gamma", "loglik"]) - 1e-6);
    let w = gg(&v);
    for (a, b) in [(f.params.p, w.p), (f.params.q, w.q), (f.params.v, w.v)] {
        assert_rel(a, b, 1e-4, "gg param");
    }
}
