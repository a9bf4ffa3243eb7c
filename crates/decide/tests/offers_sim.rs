//! The offer bandit's quality bars on the offers simulator (fixed seed): after 50,000 decisions the
//! regret of Thompson and LinUCB is at most 25 % of ε-greedy's and 10 % of uniform random's, and the
//! off-policy estimate from the 5 % holdout covers the TRUE value of the final Thompson policy.

use nudge_decide::sim::SimArgs;
use nudge_decide::sim::offers::{DECISIONS, evaluate, render, run};

#[test]
fn bandits_beat_epsilon_greedy_and_uniform_and_the_off_policy_interval_covers_the_truth() {
    let args = SimArgs { customers: 10_000, days: 90, seed: 7 };
    let r = run(&args, DECISIONS);
    let (uniform, eps) = (r.regret("uniform"), r.regret("epsilon_greedy"));
    assert!(uniform > 0.0 && eps > 0.0);
    for policy in ["thompson", "linucb"] {
        let regret = r.regret(policy);
        assert!(regret <= 0.25 * eps, "{policy}: regret {regret:.0} vs ε-greedy {eps:.0}");
        assert!(regret <= 0.10 * uniform, "{policy}: regret {regret:.0} vs uniform {uniform:.0}");
    }
    // The holdout costs regret but keeps every arm observed everywhere.
    assert!(r.regret("thompson_holdout") > r.regret("thompson"));
    assert!(r.ope.explored > 2_000 && r.ope.explored < 3_000, "{} holdout decisions", r.ope.explored);
    for (name, interval) in [("IPS", r.ope.ips.unwrap()), ("SNIPS", r.ope.snips.unwrap())] {
        assert!(interval.contains(r.true_value), "{name} {interval:?} vs TRUE {}", r.true_value);
    }
    // The learned policy is close to the oracle's value.
    assert!(r.true_value > 0.98 * r.oracle_value, "{} vs oracle {}", r.true_value, r.oracle_value);
}

#[test]
fn the_scenario_is_reproducible_and_reports_every_policy() {
    let args = SimArgs { customers: 500, days: 30, seed: 3 };
    let a = run(&args, 3_000);
    let b = run(&args, 3_000);
    let regrets =
        |r: &nudge_decide::sim::offers::OffersResult| r.runs.iter().map(|p| p.regret).collect::<Vec<_>>();
    assert_eq!(regrets(&a), regrets(&b));
    assert_eq!(a.true_value, b.true_value);
    let other = run(&SimArgs { seed: 4, ..args }, 3_000);
    assert_ne!(regrets(&a), regrets(&other));
    let names: Vec<&str> = a.runs.iter().map(|p| p.name).collect();
    assert_eq!(names, ["uniform", "epsilon_greedy", "linucb", "thompson", "thompson_holdout"]);
    assert!(a.runs.iter().all(|p| p.chosen.iter().sum::<u64>() == 3_000));
    assert!(a.runs.iter().all(|p| p.regret >= 0.0));
}

#[test]
fn evaluate_prints_the_table_and_json() {
    let args = SimArgs { customers: 300, days: 10, seed: 1 };
    let report = render(&args, &run(&args, 2_000));
    assert_eq!(report.scenario, "offers");
    assert!(report.text.contains("thompson_holdout") && report.text.contains("TRUE"));
    assert_eq!(report.json["policies"].as_array().unwrap().len(), 5);
    assert_eq!(report.json["decisions"], 2_000);
    assert_eq!(DECISIONS, 50_000);
    let _ = evaluate; // the CLI's entry: `render(args, &run(args, DECISIONS))`
}
