//! The hypotheses' quality bar on the planted flow history (`nudge_decide::sim::hypotheses`): the two
//! planted effects (free shipping for one segment, a send hour for another) are among the top proposals and
//! significant; and on null histories, where nothing has any effect, the share of runs that call any
//! comparison significant stays within the stated error rate (alpha), up to the binomial spread of the
//! number of runs.

use nudge_decide::hypotheses::{Change, Options, propose};
use nudge_decide::sim::hypotheses::{self as sim, World};
use nudge_decide::uplift::RateIntervals;
use nudge_policy::reports::{Z95, newcombe, wilson};

struct Newcombe;

impl RateIntervals for Newcombe {
    fn rate(&self, k: u64, n: u64) -> Option<(f64, f64)> {
        wilson(k, n, Z95)
    }
    fn difference(&self, k1: u64, n1: u64, k2: u64, n2: u64) -> Option<(f64, f64)> {
        newcombe(k1, n1, k2, n2, Z95)
    }
    fn method(&self) -> &'static str {
        "Newcombe"
    }
}

fn is_free_shipping(c: &Change) -> bool {
    matches!(c, Change::Offer { segment: Some(s), arm, baseline_arm }
        if s == sim::FREE_SHIPPING_SEGMENT && arm == "free_shipping" && baseline_arm == "none")
}

fn is_send_hour(c: &Change) -> bool {
    matches!(c, Change::SendHour { segment: Some(s), hour } if s == sim::SEND_HOUR_SEGMENT && *hour == sim::PLANTED_HOUR)
}

#[test]
fn planted_effects_are_among_the_top_proposals() {
    let opts = Options::default();
    for seed in 1..=5u64 {
        let units = sim::history(30_000, World::Planted, seed);
        let p = propose(&units, &Newcombe, &opts);
        let summary: Vec<String> =
            p.hypotheses.iter().map(|h| format!("{} {} p_adj={:.4}", h.id, h.title, h.p_adjusted)).collect();
        assert!((3..=5).contains(&p.hypotheses.len()), "seed {seed}: {summary:#?}");
        let rank = |f: fn(&Change) -> bool| p.hypotheses.iter().position(|h| f(&h.change));
        let (fs, hour) = (rank(is_free_shipping), rank(is_send_hour));
        println!("seed {seed}: free shipping rank {fs:?}, send hour rank {hour:?}; {summary:?}");
        // Both planted effects are proposed, ahead of anything else, and called significant.
        let (fs, hour) = (fs.expect("free shipping proposed"), hour.expect("send hour proposed"));
        assert!(fs < 2 && hour < 2, "seed {seed}: ranks {fs}, {hour}: {summary:#?}");
        for i in [fs, hour] {
            let h = &p.hypotheses[i];
            assert!(h.significant, "seed {seed}: {summary:#?}");
            // The interval covers the planted lift (free shipping's also carries the 1 pp message effect).
            let (lo, hi) = (h.ci_low.unwrap(), h.ci_high.unwrap());
            assert!(lo > 0.0 && lo < sim::PLANTED_LIFT + 0.01 && hi > sim::PLANTED_LIFT, "{}", h.rationale);
            assert!(h.n_per_arm_needed.is_some_and(|n| n > 100), "{h:?}");
        }
    }
}

#[test]
fn null_histories_call_nothing_significant_beyond_alpha() {
    let opts = Options::default();
    let runs: u64 = std::env::var("NULL_RUNS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let mut with_any = 0u64;
    let mut proposed_as_significant = 0u64;
    let mut comparisons = 0usize;
    for seed in 0..runs {
        let units = sim::history(4_000, World::Null, 10_000 + seed);
        let p = propose(&units, &Newcombe, &opts);
        comparisons = comparisons.max(p.comparisons);
        with_any += u64::from(p.significant > 0);
        proposed_as_significant += u64::from(p.hypotheses.iter().any(|h| h.significant));
        // Proposals are still made (promising ones, labelled so), and say they are not significant.
        assert!(p.hypotheses.iter().all(|h| h.significant == (h.status == "significant")));
    }
    let rate = with_any as f64 / runs as f64;
    // Two binomial standard deviations above alpha over this many runs.
    let bound = opts.alpha + 2.0 * (opts.alpha * (1.0 - opts.alpha) / runs as f64).sqrt();
    println!(
        "null: {with_any} of {runs} runs ({:.1} %) called any of up to {comparisons} comparisons significant; \
         {proposed_as_significant} proposed one as significant; bound {:.1} %",
        rate * 100.0,
        bound * 100.0
    );
    assert!(comparisons > 50, "the family is large enough to matter: {comparisons}");
    assert!(rate <= bound, "false-positive rate {rate} above {bound}");
    assert!(proposed_as_significant <= with_any);
}
