//! The propensity model's quality bars on the abandonment simulator (fixed seed): AUC within 0.02 of the
//! true-probability oracle's and ECE ≤ 0.02 when trained on 2,000 labelled checkouts; gain over random
//! ≥ 0.7 of the oracle's at 300; holdout AUC ≈ 0.5 when the training labels are shuffled (no leakage).

use nudge_decide::sim::SimArgs;
use nudge_decide::sim::abandonment;

#[test]
fn propensity_meets_the_bars_on_the_simulator() {
    let args = SimArgs { customers: 40_000, days: 90, seed: 7 };
    let ev = abandonment::run(&args, &[300, 2_000]).unwrap();
    println!("{}", abandonment::evaluate(&args).text);
    let oracle = ev.oracle.auc.unwrap();
    let at_300 = &ev.rows[0];
    let at_2000 = &ev.rows[1];
    assert_eq!(at_300.train, 300);
    assert_eq!(at_2000.train, 2_000);
    assert!(ev.holdout >= 5_000, "the holdout is large enough to measure ECE: {}", ev.holdout);
    let auc = at_2000.model.auc.unwrap();
    assert!(oracle - auc <= 0.02, "AUC {auc} vs the oracle's {oracle}");
    assert!(at_2000.model.ece <= 0.02, "ECE {}", at_2000.model.ece);
    assert!(at_300.gain_ratio >= 0.7, "gain ratio at 300: {}", at_300.gain_ratio);
    assert!((ev.shuffled_auc - 0.5).abs() <= 0.05, "shuffled-label AUC {}", ev.shuffled_auc);
}
