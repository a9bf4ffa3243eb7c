//! Benchmarks of the decision models, hand-timed (release build):
//! `cargo bench -p nudge-decide --bench decide -- [--only NAME]`. Each section is its own function.

use std::hint::black_box;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let only = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)).cloned();
    let wanted = |name: &str| only.as_deref().is_none_or(|o| o == name);
    if wanted("uplift") {
        uplift();
    }
}

/// Median and spread (min–max) of `runs` timings of `f`, in milliseconds.
fn time_ms(runs: usize, mut f: impl FnMut()) -> (f64, f64, f64) {
    let mut ms: Vec<f64> = (0..runs)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    ms.sort_by(f64::total_cmp);
    (ms[ms.len() / 2], ms[0], ms[ms.len() - 1])
}

// ---- uplift: the campaign report's analysis --------------------------------------------------------

/// `uplift::analyse` on a campaign of 100,000 customers with 10 features, with and without the revenue
/// bootstrap (1,000 resamples).
fn uplift() {
    use nudge_decide::uplift::{Options, RateIntervals, Unit, analyse};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};

    /// Normal-approximation intervals: the bench times the analysis, not the interval formula.
    struct Wald;
    impl RateIntervals for Wald {
        fn rate(&self, k: u64, n: u64) -> Option<(f64, f64)> {
            let p = k as f64 / n as f64;
            let h = 1.96 * (p * (1.0 - p) / n as f64).sqrt();
            (n > 0).then_some((p - h, p + h))
        }
        fn difference(&self, k1: u64, n1: u64, k2: u64, n2: u64) -> Option<(f64, f64)> {
            let (a, b) = (self.rate(k1, n1)?, self.rate(k2, n2)?);
            let d = k1 as f64 / n1 as f64 - k2 as f64 / n2 as f64;
            let h = (((a.1 - a.0) / 2.0).powi(2) + ((b.1 - b.0) / 2.0).powi(2)).sqrt();
            Some((d - h, d + h))
        }
        fn method(&self) -> &'static str {
            "Wald"
        }
    }

    let n = 100_000;
    let mut rng = StdRng::seed_from_u64(1);
    let segments = ["new", "active", "loyal", "lapsed", "high_value_at_risk"];
    let units: Vec<Unit> = (0..n)
        .map(|_| {
            let treated = rng.gen_bool(0.9);
            let converted = rng.gen_bool(if treated { 0.12 } else { 0.10 });
            Unit {
                treated,
                converted,
                revenue: if converted { rng.gen_range(10.0..300.0) } else { 0.0 },
                segment: segments[rng.gen_range(0..segments.len())].to_string(),
                features: (0..10).map(|_| rng.gen_bool(0.9).then(|| rng.gen_range(0.0..100.0))).collect(),
            }
        })
        .collect();
    let names: Vec<String> = (0..10).map(|i| format!("f{i}")).collect();
    for (label, resamples) in [("without bootstrap", 0), ("with 1,000 bootstrap resamples", 1000)] {
        let opts = Options { resamples, ..Options::default() };
        let (median, lo, hi) = time_ms(5, || {
            black_box(analyse(black_box(&units), &names, &Wald, &opts));
        });
        println!(
            "uplift::analyse, {n} customers, 10 features, {label}: median {median:.1} ms (min {lo:.1}, max {hi:.1}, 5 runs)"
        );
    }
}
