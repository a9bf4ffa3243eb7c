//! Benchmarks of the decision models, hand-timed (release build, one thread):
//! `cargo bench -p nudge-decide --bench decide -- [--only NAME]`, NAME one of the sections below.

use std::hint::black_box;
use std::time::Instant;

fn main() {
    let mut only: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--only" {
            only = args.next();
        }
    }
    let want = |name: &str| only.as_deref().is_none_or(|o| o == name);
    if want("bandit") {
        bandit();
    }
}

/// Median and range of `rounds` timings of `f` (seconds per round).
fn timed(rounds: usize, mut f: impl FnMut()) -> (f64, f64, f64) {
    let mut t: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (t[t.len() / 2], t[0], t[t.len() - 1])
}

// ---- bandit: the offer bandit (updates/s, µs per choice) and the offers simulator's regret table ----

fn bandit() {
    use nudge_decide::bandit::{Arm, CONTEXT_DIM, Learner, PolicyKind, SeedStream};
    use nudge_decide::sim::{SimArgs, offers};

    let arms: Vec<Arm> = offers::ARMS.iter().map(|a| Arm::parse(a, offers::SHIPPING_COST).unwrap()).collect();
    let mut rng = SeedStream::new(1);
    let contexts: Vec<Vec<f64>> = (0..4096)
        .map(|_| {
            let mut x: Vec<f64> = (0..CONTEXT_DIM).map(|_| rng.uniform()).collect();
            x[0] = 1.0;
            x
        })
        .collect();
    let rewards: Vec<f64> =
        (0..4096).map(|_| if rng.uniform() < 0.3 { 60.0 * rng.uniform() } else { 0.0 }).collect();

    let n = 1_000_000;
    let mut learner = Learner::new(arms.clone(), PolicyKind::Thompson);
    let (med, lo, hi) = timed(5, || {
        for i in 0..n {
            let j = i % 4096;
            learner.update(i % arms.len(), &contexts[j], rewards[j]);
        }
    });
    println!(
        "bandit update ({} arms, d = {CONTEXT_DIM}): {:.2} M outcomes/s median (range {:.2}–{:.2}), 5 rounds of {n}",
        arms.len(),
        n as f64 / med / 1e6,
        n as f64 / hi / 1e6,
        n as f64 / lo / 1e6
    );
    let all = vec![true; arms.len()];
    for policy in [PolicyKind::Thompson, PolicyKind::LinUcb] {
        let l = learner.clone().with_policy(policy);
        let m = 100_000;
        let (med, lo, hi) = timed(7, || {
            for i in 0..m {
                black_box(l.choose(&contexts[i % 4096], &all, i as u64, 5).arm);
            }
        });
        println!(
            "bandit choice {policy:?}: {:.2} µs median (range {:.2}–{:.2}), 7 rounds of {m} (with the audit's per-arm estimates{})",
            med / m as f64 * 1e6,
            lo / m as f64 * 1e6,
            hi / m as f64 * 1e6,
            if policy == PolicyKind::Thompson { " and the propensity" } else { "" }
        );
    }

    println!("offers simulator, {} decisions per policy, 10,000 customers:", offers::DECISIONS);
    println!(
        "seed  uniform  ε-greedy  LinUCB (÷ε, ÷unif)     Thompson (÷ε, ÷unif)   +holdout  OPE IPS [95 %]        TRUE   s"
    );
    for seed in 1..=10 {
        let start = Instant::now();
        let r = offers::run(&SimArgs { customers: 10_000, days: 90, seed }, offers::DECISIONS);
        let (u, e, l, t, h) = (
            r.regret("uniform"),
            r.regret("epsilon_greedy"),
            r.regret("linucb"),
            r.regret("thompson"),
            r.regret("thompson_holdout"),
        );
        let ips = r.ope.ips.unwrap();
        println!(
            "{seed:>4} {u:>8.0} {e:>9.0} {l:>7.0} ({:>4.1}%, {:>3.1}%) {t:>9.0} ({:>4.1}%, {:>3.1}%) {h:>9.0}  {:.2} [{:.2}, {:.2}]  {:.2}  {:.1}",
            100.0 * l / e,
            100.0 * l / u,
            100.0 * t / e,
            100.0 * t / u,
            ips.estimate,
            ips.low,
            ips.high,
            r.true_value,
            start.elapsed().as_secs_f64()
        );
    }
}
