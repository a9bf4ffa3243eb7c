//! The campaign analysis against reference values (scipy, scikit-learn and statsmodels, computed once by
//! `reference/uplift_reference.py`) and on seeded synthetic campaigns whose true effect is known.

use nudge_decide::uplift::{
    self, Analysis, Options, RateIntervals, SummaryContext, Unit, bootstrap_mean_difference,
    standardized_mean_difference, univariate_auc, welch_interval,
};
use nudge_policy::reports::{Z95, newcombe, wilson};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::Deserialize;

/// The intervals the lift report uses.
struct Newcombe;

impl RateIntervals for Newcombe {
    fn rate(&self, k: u64, n: u64) -> Option<(f64, f64)> {
        wilson(k, n, Z95)
    }
    fn difference(&self, k1: u64, n1: u64, k2: u64, n2: u64) -> Option<(f64, f64)> {
        newcombe(k1, n1, k2, n2, Z95)
    }
    fn method(&self) -> &'static str {
        "Newcombe hybrid score"
    }
}

#[derive(Deserialize)]
struct Reference {
    welch: Vec<WelchCase>,
    auc: Vec<AucCase>,
    proportions: Vec<ProportionCase>,
}

#[derive(Deserialize)]
struct WelchCase {
    name: String,
    a: Vec<f64>,
    b: Vec<f64>,
    difference: f64,
    low: f64,
    high: f64,
    df: f64,
}

#[derive(Deserialize)]
struct AucCase {
    name: String,
    pos: Vec<f64>,
    neg: Vec<f64>,
    auc: f64,
    smd: f64,
}

#[derive(Deserialize)]
struct ProportionCase {
    k1: u64,
    n1: u64,
    k2: u64,
    n2: u64,
    wilson1: (f64, f64),
    wilson2: (f64, f64),
    newcombe: (f64, f64),
}

fn reference() -> Reference {
    serde_json::from_str(include_str!("reference/uplift_reference.json")).unwrap()
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol * (1.0 + b.abs())
}

#[test]
fn welch_matches_scipy() {
    for c in reference().welch {
        let w = welch_interval(&c.a, &c.b, 0.95).unwrap();
        assert!(close(w.difference, c.difference, 1e-12), "{}: {w:?}", c.name);
        assert!(close(w.df, c.df, 1e-9), "{}: df {} vs {}", c.name, w.df, c.df);
        assert!(
            close(w.low, c.low, 1e-8) && close(w.high, c.high, 1e-8),
            "{}: {w:?} vs {} {}",
            c.name,
            c.low,
            c.high
        );
    }
}

#[test]
fn auc_and_smd_match_scikit_learn_and_numpy() {
    for c in reference().auc {
        let auc = univariate_auc(&c.pos, &c.neg).unwrap();
        assert!(close(auc, c.auc, 1e-12), "{}: {auc} vs {}", c.name, c.auc);
        let smd = standardized_mean_difference(&c.pos, &c.neg).unwrap();
        assert!(close(smd, c.smd, 1e-10), "{}: {smd} vs {}", c.name, c.smd);
    }
}

#[test]
fn the_rate_intervals_handed_in_match_statsmodels() {
    for c in reference().proportions {
        let (w1, w2) = (Newcombe.rate(c.k1, c.n1).unwrap(), Newcombe.rate(c.k2, c.n2).unwrap());
        let d = Newcombe.difference(c.k1, c.n1, c.k2, c.n2).unwrap();
        for (got, want) in [(w1, c.wilson1), (w2, c.wilson2), (d, c.newcombe)] {
            assert!(close(got.0, want.0, 1e-9) && close(got.1, want.1, 1e-9), "{got:?} vs {want:?}");
        }
    }
}

#[test]
fn bootstrap_is_seeded_and_agrees_with_welch_on_a_large_sample() {
    let r = reference();
    let c = r.welch.iter().find(|c| c.name == "zero_inflated").unwrap();
    let a = bootstrap_mean_difference(&c.a, &c.b, 2000, 7, 0.95).unwrap();
    assert_eq!(a, bootstrap_mean_difference(&c.a, &c.b, 2000, 7, 0.95).unwrap(), "same seed, same interval");
    let b = bootstrap_mean_difference(&c.a, &c.b, 2000, 8, 0.95).unwrap();
    assert_ne!(a, b, "another seed resamples differently");
    // Around 580 customers: the percentile interval is close to the t interval (within 15 % of its width).
    let width = c.high - c.low;
    assert!(a.0 < c.difference && c.difference < a.1, "{a:?}");
    assert!(
        (a.0 - c.low).abs() < 0.15 * width && (a.1 - c.high).abs() < 0.15 * width,
        "{a:?} vs {} {}",
        c.low,
        c.high
    );
    assert!(bootstrap_mean_difference(&[], &c.b, 100, 1, 0.95).is_none());
    assert!(bootstrap_mean_difference(&c.a, &c.b, 0, 1, 0.95).is_none());
}

/// A campaign with a known truth. Each customer has `orders_before` (0–9), `days_since_last_order`
/// (1–365) and a noise feature; the base probability of ordering rises with orders and falls with days
/// since the last order; treatment adds `effect_loyal` in segment `loyal` and `effect_lapsed` in `lapsed`.
/// Buyers spend 40 + 10·orders_before on average (exponential spread).
struct Truth {
    effect_loyal: f64,
    effect_lapsed: f64,
}

fn base_probability(orders: f64, days: f64) -> f64 {
    0.04 + 0.02 * orders + 0.08 * (1.0 - days / 365.0)
}

const FEATURES: [&str; 3] = ["orders_before", "days_since_last_order", "noise"];

fn population(n: usize, truth: &Truth, seed: u64) -> Vec<Unit> {
    let mut rng = StdRng::seed_from_u64(seed);
    (0..n)
        .map(|_| {
            let treated = rng.gen_bool(0.5);
            let loyal = rng.gen_bool(0.5);
            let orders = f64::from(if loyal { rng.gen_range(2..10) } else { rng.gen_range(0..3) });
            let days = f64::from(if loyal { rng.gen_range(1..120) } else { rng.gen_range(90..366) });
            let effect = if loyal { truth.effect_loyal } else { truth.effect_lapsed };
            let p = base_probability(orders, days) + if treated { effect } else { 0.0 };
            let converted = rng.gen_bool(p.clamp(0.0, 1.0));
            let spend = 40.0 + 10.0 * orders;
            let revenue = if converted { -spend * (1.0 - rng.gen_range(0.0..1.0f64)).ln() } else { 0.0 };
            Unit {
                treated,
                converted,
                revenue,
                segment: if loyal { "loyal" } else { "lapsed" }.into(),
                features: vec![Some(orders), Some(days), Some(rng.gen_range(0.0..1.0))],
            }
        })
        .collect()
}

fn names() -> Vec<String> {
    FEATURES.iter().map(|s| s.to_string()).collect()
}

fn run(units: &[Unit]) -> Analysis {
    uplift::analyse(units, &names(), &Newcombe, &Options::default())
}

fn ctx() -> SummaryContext<'static> {
    SummaryContext { flow: "winback", window: "14 days", arm: None, currency: Some("EUR") }
}

/// The average treatment effect in a population split evenly between the segments.
fn true_effect(t: &Truth) -> f64 {
    (t.effect_loyal + t.effect_lapsed) / 2.0
}

#[test]
fn a_known_effect_is_covered_and_called_a_gain() {
    let truth = Truth { effect_loyal: 0.10, effect_lapsed: 0.0 };
    let units = population(6_000, &truth, 42);
    let a = run(&units);
    let (lo, hi) = (a.uplift.ci_low.unwrap(), a.uplift.ci_high.unwrap());
    assert!(lo <= true_effect(&truth) && true_effect(&truth) <= hi, "{lo} {hi}");
    assert!(lo > 0.0, "an effect of 5 pp at 6,000 customers is detected: {lo} {hi}");
    assert_eq!(a.treated.n + a.control.n, 6_000);
    assert!(a.uplift.relative.unwrap() > 0.0);
    // Per segment: the loyal interval covers +10 pp, the lapsed one covers 0.
    let seg = |name: &str| a.segments.iter().find(|s| s.segment == name).unwrap();
    let loyal = &seg("loyal").uplift;
    assert!(loyal.ci_low.unwrap() <= 0.10 && 0.10 <= loyal.ci_high.unwrap(), "{loyal:?}");
    assert_eq!(loyal.excludes_zero(), Some(true));
    let lapsed = &seg("lapsed").uplift;
    assert_eq!(lapsed.excludes_zero(), None, "{lapsed:?}");
    // Revenue: treated buyers add effect × mean spend; the Welch interval covers the true difference.
    let true_revenue = 0.10 * 0.5 * (40.0 + 10.0 * 5.5);
    let r = &a.revenue_uplift.welch;
    assert!(r.ci_low.unwrap() <= true_revenue && true_revenue <= r.ci_high.unwrap(), "{r:?}");
    let (blo, bhi) =
        (a.revenue_uplift.bootstrap_ci_low.unwrap(), a.revenue_uplift.bootstrap_ci_high.unwrap());
    assert!(blo < r.abs.unwrap() && r.abs.unwrap() < bhi);
    // Drivers: orders before (higher) and days since the last order (lower) separate responders; noise
    // comes last, near 0.5.
    let top: Vec<&str> = a.drivers.iter().map(|d| d.feature.as_str()).collect();
    assert_eq!(top.len(), 3);
    assert_eq!(top[2], "noise", "{:?}", a.drivers);
    let d = |f: &str| a.drivers.iter().find(|d| d.feature == f).unwrap();
    assert_eq!(d("orders_before").direction, "higher");
    assert!(d("orders_before").auc > 0.6 && d("orders_before").smd > 0.3, "{:?}", d("orders_before"));
    assert_eq!(d("days_since_last_order").direction, "lower");
    assert!((d("noise").auc - 0.5).abs() < 0.05);
    let s = uplift::summary(&ctx(), &a);
    assert!(s.contains("raised conversion"), "{s}");
    assert!(s.contains("loyal (up"), "the segment whose interval excludes zero is named: {s}");
    assert!(s.contains("associations, not effects"), "{s}");
}

/// With no true effect the summary says so, except in the about 5 % of campaigns whose interval misses
/// zero by chance; a summary never claims a gain or a loss its interval does not show.
#[test]
fn a_null_effect_is_reported_as_no_detectable_effect() {
    let truth = Truth { effect_loyal: 0.0, effect_lapsed: 0.0 };
    let mut detected = 0;
    for seed in 0..40 {
        let opts = Options { resamples: 100, ..Options::default() };
        let a = uplift::analyse(&population(3_000, &truth, 500 + seed), &names(), &Newcombe, &opts);
        let s = uplift::summary(&ctx(), &a);
        match a.uplift.excludes_zero() {
            None => {
                assert!(s.contains("no detectable effect on conversion"), "{s}");
                assert!(!s.contains("raised") && !s.contains("lowered"), "{s}");
            }
            Some(up) => {
                detected += 1;
                assert!(s.contains(if up { "raised conversion" } else { "lowered conversion" }), "{s}");
            }
        }
        if a.revenue_uplift.welch.excludes_zero().is_none() {
            assert!(s.contains("no detectable effect on revenue"), "{s}");
        }
    }
    assert!(detected <= 6, "{detected} of 40 null campaigns called an effect");
}

#[test]
fn a_harmful_campaign_is_called_a_loss() {
    let truth = Truth { effect_loyal: -0.08, effect_lapsed: -0.08 };
    let a = run(&population(6_000, &truth, 3));
    assert_eq!(a.uplift.excludes_zero(), Some(false), "{:?}", a.uplift);
    assert!(uplift::summary(&ctx(), &a).contains("lowered conversion"));
}

/// Over many seeded campaigns, the 95 % intervals cover the true effects about 95 % of the time.
#[test]
fn intervals_cover_the_truth_at_their_nominal_rate() {
    let truth = Truth { effect_loyal: 0.06, effect_lapsed: 0.02 };
    let (mut conv, mut rev) = (0, 0);
    let runs = 300;
    let opts = Options { resamples: 0, ..Options::default() };
    for seed in 0..runs {
        let units = population(1_500, &truth, 1_000 + seed);
        let a = uplift::analyse(&units, &names(), &Newcombe, &opts);
        let e = true_effect(&truth);
        conv += usize::from(a.uplift.ci_low.unwrap() <= e && e <= a.uplift.ci_high.unwrap());
        let true_rev = 0.5 * (0.06 * (40.0 + 10.0 * 5.5) + 0.02 * (40.0 + 10.0 * 1.0));
        let r = &a.revenue_uplift.welch;
        rev += usize::from(r.ci_low.unwrap() <= true_rev && true_rev <= r.ci_high.unwrap());
    }
    let (conv, rev) = (conv as f64 / runs as f64, rev as f64 / runs as f64);
    assert!((0.91..=0.99).contains(&conv), "conversion coverage {conv}");
    assert!((0.91..=0.99).contains(&rev), "revenue coverage {rev}");
}

#[test]
fn empty_groups_give_no_interval_and_say_why() {
    let units: Vec<Unit> = population(200, &Truth { effect_loyal: 0.0, effect_lapsed: 0.0 }, 1)
        .into_iter()
        .map(|u| Unit { treated: true, ..u })
        .collect();
    let a = run(&units);
    assert_eq!(a.control.n, 0);
    assert!(a.uplift.abs.is_none() && a.uplift.ci_low.is_none());
    assert!(a.revenue_uplift.welch.ci_low.is_none() && a.revenue_uplift.bootstrap_ci_low.is_none());
    let s = uplift::summary(&ctx(), &a);
    assert!(s.contains("No held-out customer") && s.contains("cannot be estimated"), "{s}");
    let json = serde_json::to_value(&a).unwrap();
    assert!(json["uplift"]["abs"].is_null() && json["control"]["rate"].is_null(), "{json}");
}

#[test]
fn drivers_need_both_classes_and_skip_constant_features() {
    let mut units = population(400, &Truth { effect_loyal: 0.0, effect_lapsed: 0.0 }, 5);
    for u in &mut units {
        u.features.push(Some(20.0 / 3.0)); // constant (whose computed variance rounds above zero)
        u.features.push(u.converted.then_some(2.0)); // known for responders only
    }
    let mut n = names();
    n.push("constant".into());
    n.push("responders_only".into());
    let a = uplift::analyse(&units, &n, &Newcombe, &Options::default());
    assert!(
        a.drivers.iter().all(|d| d.feature != "constant" && d.feature != "responders_only"),
        "{:?}",
        a.drivers
    );
    let a = uplift::analyse(&units, &n, &Newcombe, &Options { top_drivers: 1, ..Options::default() });
    assert_eq!(a.drivers.len(), 1);
    // A driver that barely separates is listed but not named in the summary as what set responders apart.
    let mut a = uplift::analyse(&units, &n, &Newcombe, &Options::default());
    for d in &mut a.drivers {
        d.auc = 0.5 + (d.auc - 0.5).signum() * 0.02;
    }
    let s = uplift::summary(&ctx(), &a);
    assert!(s.contains("No feature known at decision time separates") && !s.contains("differed most"), "{s}");
}
