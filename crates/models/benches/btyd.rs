//! Benchmark: simulate a large BG/NBD customer base, then time summarising, fitting
//! every family and computing lifetime values. Optionally times the `lifetimes` Python
//! package on the same data when `NUDGE_BENCH_PYTHON` names a Python that has it.
//!
//! Run with `cargo bench -p nudge-models --bench btyd -- [--customers N] [--runs K]`.
//!
//! The second part times the fit diagnostics `nudge models fit --calibration-end` runs for
//! every family, on a calibration/holdout split of the same simulated transactions: first
//! purchases fall on days 0–364 and purchases are recorded to day 547, so calibration ends
//! on day 364 (the last acquisition day, two thirds of the 548 days; every customer is in
//! it) and the holdout is days 365–547 (183 days, 26.1 weeks).
//!
//! `--write-csv PATH` writes the simulated transactions as a `customer_id,date,amount` CSV
//! (`nudge import --format csv`, `nudge models fit --transactions`) with day 0 on
//! 2025-01-01, so the split above is `--calibration-end 2025-12-31`, and exits.

use std::hint::black_box;
use std::time::Instant;

use nudge_models::holdout::{TrackingPoint, evaluate_holdout};
use nudge_models::{
    BgNbd, ClvSettings, CustomerSummary, FamilyCheck, FitOptions, GammaGamma, MbgNbd, MisfitRules, ParetoNbd,
    Rfm, Simulation, Spend, TimeUnit, Transaction, TransactionModel, assess, churn_quality,
    customer_lifetime_values, frequency_fit, holdout_scores, select_family, simulate_bgnbd, spend_quality,
    summarize, tracking_fit, tracking_series,
};
use rayon::prelude::*;

const TRUE_BG: BgNbd = BgNbd { r: 0.25, alpha: 4.0, a: 0.8, b: 2.5 };
const TRUE_GG: GammaGamma = GammaGamma { p: 6.0, q: 4.0, v: 15.0 };
const ACQUISITION_DAYS: i32 = 365;
const CALIBRATION_END: i32 = 365 + 182;
/// The calibration end of the diagnostics' split (the holdout runs to [`CALIBRATION_END`]).
const SPLIT_CALIBRATION_END: i32 = ACQUISITION_DAYS - 1;
/// The tracking series' step, as in `nudge models fit`.
const TRACKING_STEP_DAYS: i32 = 7;
/// Day 0 of the simulation in the `--write-csv` file: 2025-01-01.
const CSV_FIRST_DAY: i32 = 20_089;

/// Runs `f` `runs` times and returns the last result with the median, minimum and
/// maximum wall time in seconds.
fn time<T>(runs: usize, mut f: impl FnMut() -> T) -> (T, [f64; 3]) {
    let mut times = Vec::with_capacity(runs);
    let mut out = None;
    for _ in 0..runs.max(1) {
        let start = Instant::now();
        let v = black_box(f());
        times.push(start.elapsed().as_secs_f64());
        out = Some(v);
    }
    times.sort_by(f64::total_cmp);
    let stats = [times[times.len() / 2], times[0], times[times.len() - 1]];
    (out.expect("at least one run"), stats)
}

fn line(name: &str, stats: [f64; 3], target: f64) {
    let flag = if stats[0] <= target { "ok" } else { "SLOW" };
    println!(
        "{name:<28} median {:>8.4} s   min {:>8.4}   max {:>8.4}   target {target:>5.2} s  {flag}",
        stats[0], stats[1], stats[2]
    );
}

/// A timed step without a target.
fn row(name: &str, stats: [f64; 3]) {
    println!("{name:<44} median {:>8.4} s   min {:>8.4}   max {:>8.4}", stats[0], stats[1], stats[2]);
}

fn arg_str(name: &str) -> Option<String> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).cloned()
}

fn arg(name: &str) -> Option<usize> {
    arg_str(name).and_then(|v| v.parse().ok())
}

fn main() {
    let customers = arg("--customers").unwrap_or(1_000_000);
    let runs = arg("--runs").unwrap_or(5);
    let sim = Simulation {
        model: TRUE_BG,
        spend: Some(TRUE_GG),
        customers,
        first_day: 0,
        acquisition_days: ACQUISITION_DAYS,
        observation_end: CALIBRATION_END,
        unit: TimeUnit::W,
        seed: 42,
    };
    let start = Instant::now();
    let tx = simulate_bgnbd(&sim).expect("simulate");
    println!(
        "simulated {customers} customers, {} transactions in {:.2} s ({} threads)",
        tx.len(),
        start.elapsed().as_secs_f64(),
        rayon::current_num_threads()
    );
    if let Some(path) = arg_str("--write-csv") {
        write_csv(&path, &tx);
        return;
    }

    let (summary, t_sum) =
        time(runs, || summarize(&tx, CALIBRATION_END, None, TimeUnit::W).expect("summary"));
    let data: Vec<Rfm> = summary.iter().map(Rfm::from).collect();
    let spend: Vec<Spend> = summary
        .iter()
        .filter(|s| s.frequency > 0 && s.monetary_value > 0.0)
        .map(|s| Spend { x: s.frequency, mean: s.monetary_value })
        .collect();
    let opts = FitOptions::default();
    let (bg, t_bg) = time(runs, || BgNbd::fit(&data, &opts).expect("bg fit"));
    let (mbg, t_mbg) = time(runs, || MbgNbd::fit(&data, &opts).expect("mbg fit"));
    let (pnbd, t_pnbd) = time(runs.min(3), || ParetoNbd::fit(&data, &opts).expect("pareto fit"));
    let (gg, t_gg) = time(runs, || GammaGamma::fit(&spend, &opts).expect("gg fit"));
    let repeat: Vec<(Rfm, f64)> =
        summary.iter().filter(|s| s.frequency > 0).map(|s| (Rfm::from(s), s.monetary_value)).collect();
    let (rd, rm): (Vec<Rfm>, Vec<f64>) = repeat.into_iter().unzip();
    let settings = ClvSettings { months: 12, monthly_discount_rate: 0.01, unit: TimeUnit::W };
    let (clv, t_clv) = time(runs, || customer_lifetime_values(&bg.params, &gg.params, &rd, &rm, &settings));

    println!();
    println!("{} customers in summary, {} repeat buyers", summary.len(), rd.len());
    line("RFM summary", t_sum, 0.3);
    line("BG/NBD fit", t_bg, 0.3);
    line("MBG/NBD fit", t_mbg, 0.3);
    line("Pareto/NBD fit", t_pnbd, 3.0);
    line("Gamma-Gamma fit", t_gg, 0.1);
    line("12-month CLV (repeat buyers)", t_clv, 0.1);
    println!();
    println!("(purchases are recorded on whole days and same-day purchases merge, so the");
    println!(" recovered parameters carry a small discretisation bias)");
    let p = bg.params;
    println!(
        "BG/NBD  true r={:.4} alpha={:.4} a={:.4} b={:.4}",
        TRUE_BG.r, TRUE_BG.alpha, TRUE_BG.a, TRUE_BG.b
    );
    println!(
        "        fit  r={:.4} alpha={:.4} a={:.4} b={:.4}  (ll {:.1}, {} iterations, converged {})",
        p.r, p.alpha, p.a, p.b, bg.loglik, bg.iterations, bg.converged
    );
    let m = mbg.params;
    println!(
        "MBG/NBD fit  r={:.4} alpha={:.4} a={:.4} b={:.4}  (ll {:.1}, converged {})",
        m.r, m.alpha, m.a, m.b, mbg.loglik, mbg.converged
    );
    let q = pnbd.params;
    println!(
        "Pareto  fit  r={:.4} alpha={:.4} s={:.4} beta={:.4}  (ll {:.1}, converged {})",
        q.r, q.alpha, q.s, q.beta, pnbd.loglik, pnbd.converged
    );
    println!(
        "Gamma-Gamma true p={:.4} q={:.4} v={:.4}\n            fit  p={:.4} q={:.4} v={:.4}  (converged {})",
        TRUE_GG.p, TRUE_GG.q, TRUE_GG.v, gg.params.p, gg.params.q, gg.params.v, gg.converged
    );
    println!(
        "total 12-month CLV of repeat buyers: {:.0}; E[X(52)] fitted {:.4} vs true {:.4}",
        clv.iter().sum::<f64>(),
        bg.params.expected_purchases(52.0),
        TRUE_BG.expected_purchases(52.0)
    );

    diagnostics(&tx, runs);

    if let Some(python) = std::env::var_os("NUDGE_BENCH_PYTHON") {
        let ours = [t_sum[0], t_bg[0], t_pnbd[0], t_gg[0], t_clv[0]];
        compare_with_lifetimes(&python, &tx, ours);
    }
}

/// Writes the transactions as `customer_id,date,amount` with day 0 on 2025-01-01.
fn write_csv(path: &str, tx: &[Transaction]) {
    use std::io::Write;
    let start = Instant::now();
    let mut w = std::io::BufWriter::new(std::fs::File::create(path).expect("create the CSV"));
    writeln!(w, "customer_id,date,amount").expect("write");
    for t in tx {
        let (y, m, d) = civil_from_days(CSV_FIRST_DAY + t.day);
        writeln!(w, "c{},{y:04}-{m:02}-{d:02},{:.2}", t.customer, t.amount).expect("write");
    }
    w.flush().expect("flush");
    let (y, m, d) = civil_from_days(CSV_FIRST_DAY + SPLIT_CALIBRATION_END);
    println!(
        "wrote {} transactions to {path} in {:.2} s; the diagnostics' split is --calibration-end {y:04}-{m:02}-{d:02}",
        tx.len(),
        start.elapsed().as_secs_f64()
    );
}

/// Median, minimum and maximum of one family's diagnostic steps.
struct FamilyTimes {
    name: &'static str,
    before: [f64; 3],
    scores: [f64; 3],
    churn: [f64; 3],
    spend: [f64; 3],
    holdout: [f64; 3],
    frequency: [f64; 3],
    tracking: [f64; 3],
    check: [f64; 3],
}

/// One family's diagnostics as `nudge models fit` computes them (`FamilyContext::check`):
/// the holdout evaluation with the spend model, the weekly tracking series and its
/// calibration summary, and the frequency histogram.
fn check_family<M: TransactionModel>(
    model: &M,
    params: &[f64],
    loglik: f64,
    converged: bool,
    summaries: &[CustomerSummary],
    tx: &[Transaction],
    spend: &GammaGamma,
) -> FamilyCheck {
    let holdout = evaluate_holdout(model, params.to_vec(), loglik, converged, summaries, Some(spend));
    let points = tracking_series(model, tx, summaries, CALIBRATION_END, TRACKING_STEP_DAYS);
    FamilyCheck {
        model: M::NAME.to_string(),
        trusted: converged,
        plausible: true,
        loglik,
        holdout_log_score: holdout.log_score,
        holdout_error: (holdout.actual_total > 0.0)
            .then(|| holdout.predicted_total / holdout.actual_total - 1.0),
        tracking: tracking_fit(&points, SPLIT_CALIBRATION_END),
        frequency: Some(frequency_fit(model, summaries)),
        misfit: None,
    }
}

/// Times each diagnostic step of one fitted family.
#[allow(clippy::too_many_arguments)]
fn time_family<M: TransactionModel>(
    model: &M,
    params: &[f64],
    loglik: f64,
    converged: bool,
    summaries: &[CustomerSummary],
    tx: &[Transaction],
    spend: &GammaGamma,
    runs: usize,
) -> (FamilyTimes, FamilyCheck) {
    // What `evaluate_holdout` computed before the diagnostics: E[X(T, T + holdout)] only.
    let (_, before) = time(runs, || {
        summaries
            .par_iter()
            .map(|s| model.conditional_expected_purchases(s.duration_holdout, &Rfm::from(s)))
            .collect::<Vec<f64>>()
    });
    let (scores, t_scores) = time(runs, || holdout_scores(model, summaries));
    let (_, churn) = time(runs, || churn_quality(&scores, summaries));
    let (_, t_spend) = time(runs, || spend_quality(&scores, spend, summaries));
    let (_, holdout) =
        time(runs, || evaluate_holdout(model, params.to_vec(), loglik, converged, summaries, Some(spend)));
    let (_, frequency) = time(runs, || frequency_fit(model, summaries));
    let (_, tracking) = time(runs, || {
        let points: Vec<TrackingPoint> =
            tracking_series(model, tx, summaries, CALIBRATION_END, TRACKING_STEP_DAYS);
        tracking_fit(&points, SPLIT_CALIBRATION_END)
    });
    let (c, check) = time(runs, || check_family(model, params, loglik, converged, summaries, tx, spend));
    let times = FamilyTimes {
        name: M::NAME,
        before,
        scores: t_scores,
        churn,
        spend: t_spend,
        holdout,
        frequency,
        tracking,
        check,
    };
    (times, c)
}

/// The diagnostics of `nudge models fit --calibration-end` at scale: summary with a holdout,
/// the four fits (once), then every family's diagnostic steps and their total.
fn diagnostics(tx: &[Transaction], runs: usize) {
    println!();
    println!(
        "diagnostics: calibration days 0-{SPLIT_CALIBRATION_END}, holdout days {}-{CALIBRATION_END} ({:.1} weeks)",
        SPLIT_CALIBRATION_END + 1,
        f64::from(CALIBRATION_END - SPLIT_CALIBRATION_END) / 7.0
    );
    let (summaries, t_sum) = time(runs, || {
        summarize(tx, SPLIT_CALIBRATION_END, Some(CALIBRATION_END), TimeUnit::W).expect("summary")
    });
    let data: Vec<Rfm> = summaries.iter().map(Rfm::from).collect();
    let spends: Vec<Spend> = summaries
        .iter()
        .filter(|s| s.frequency > 0 && s.monetary_value > 0.0)
        .map(|s| Spend { x: s.frequency, mean: s.monetary_value })
        .collect();
    let opts = FitOptions::default();
    let (bg, t_bg) = time(1, || BgNbd::fit(&data, &opts).expect("bg fit"));
    let (mbg, t_mbg) = time(1, || MbgNbd::fit(&data, &opts).expect("mbg fit"));
    let (pnbd, t_pnbd) = time(1, || ParetoNbd::fit(&data, &opts).expect("pareto fit"));
    let (gg, t_gg) = time(1, || GammaGamma::fit(&spends, &opts).expect("gg fit"));
    let holdout_buyers = summaries.iter().filter(|s| s.frequency_holdout > 0).count();
    println!(
        "{} customers in calibration, {} repeat buyers, {} with holdout purchases",
        summaries.len(),
        spends.len(),
        holdout_buyers
    );
    row("RFM summary with holdout", t_sum);
    row("BG/NBD fit (calibration, 1 run)", t_bg);
    row("MBG/NBD fit (calibration, 1 run)", t_mbg);
    row("Pareto/NBD fit (calibration, 1 run)", t_pnbd);
    row("Gamma-Gamma fit (calibration, 1 run)", t_gg);

    let (b, m, p, g) = (bg.params, mbg.params, pnbd.params, gg.params);
    let s = &summaries;
    let families = [
        time_family(&b, &[b.r, b.alpha, b.a, b.b], bg.loglik, bg.converged, s, tx, &g, runs),
        time_family(&m, &[m.r, m.alpha, m.a, m.b], mbg.loglik, mbg.converged, s, tx, &g, runs),
        time_family(&p, &[p.r, p.alpha, p.s, p.beta], pnbd.loglik, pnbd.converged, s, tx, &g, runs),
    ];
    // Everything `diagnose` does after the fits: three families, the misfit verdicts, the choice.
    let (selection, t_total) = time(runs, || {
        let mut checks = vec![
            check_family(&b, &[b.r, b.alpha, b.a, b.b], bg.loglik, bg.converged, s, tx, &g),
            check_family(&m, &[m.r, m.alpha, m.a, m.b], mbg.loglik, mbg.converged, s, tx, &g),
            check_family(&p, &[p.r, p.alpha, p.s, p.beta], pnbd.loglik, pnbd.converged, s, tx, &g),
        ];
        assess(&mut checks, &MisfitRules::default());
        select_family(&checks)
    });
    for (t, c) in &families {
        println!();
        println!("{}:", t.name);
        row("  before: holdout E[X] only (old evaluate_holdout)", t.before);
        row("  holdout_scores", t.scores);
        row("  churn_quality", t.churn);
        row("  spend_quality", t.spend);
        row("  evaluate_holdout with Gamma-Gamma (all above)", t.holdout);
        row("  frequency_fit", t.frequency);
        row("  tracking_series + tracking_fit", t.tracking);
        row("  all diagnostics of the family", t.check);
        println!(
            "  holdout log score {:.5}, holdout error {:+.2}%, chi-square {:.1}, tracking {:+.2}%",
            c.holdout_log_score.unwrap_or(f64::NAN),
            100.0 * c.holdout_error.unwrap_or(f64::NAN),
            c.frequency.as_ref().map_or(f64::NAN, |f| f.chi_square),
            100.0 * c.tracking.as_ref().map_or(f64::NAN, |t| t.max_relative_deviation)
        );
    }
    println!();
    row("diagnostics of one fit (3 families)", t_total);
    let before: f64 = families.iter().map(|(t, _)| t.before[0] + t.tracking[0]).sum();
    println!(
        "  of which the pre-diagnostics work (holdout E[X] + tracking series, sum of medians): {before:.4} s"
    );
    // The target is on what the diagnostics add to a fit, not on the work a fit did before them.
    let added = t_total[0] - before;
    let flag = if added <= 1.0 { "ok" } else { "SLOW" };
    println!(
        "  added by the diagnostics (median total − pre-diagnostics work): {added:.4} s   target  1.00 s  {flag}"
    );
    println!("  selected {}: {}", selection.selected, selection.because);
}

/// The Python side of the comparison; prints one `name seconds` line per step.
const PY_SCRIPT: &str = r#"
import sys, time, warnings
warnings.filterwarnings("ignore")
import pandas as pd
from lifetimes import BetaGeoFitter, ParetoNBDFitter, GammaGammaFitter
from lifetimes.utils import summary_data_from_transaction_data
path, end = sys.argv[1], sys.argv[2]
tx = pd.read_csv(path, parse_dates=["date"])
def timed(name, f):
    t = time.perf_counter(); v = f(); print(name, time.perf_counter() - t, flush=True); return v
s = timed("summary", lambda: summary_data_from_transaction_data(
    tx, "customer", "date", "amount", observation_period_end=end, freq="D", freq_multiplier=7))
bgf = BetaGeoFitter()
timed("bgnbd", lambda: bgf.fit(s["frequency"], s["recency"], s["T"]))
pnf = ParetoNBDFitter()
timed("pareto", lambda: pnf.fit(s["frequency"], s["recency"], s["T"]))
r = s[(s["frequency"] > 0) & (s["monetary_value"] > 0)]
ggf = GammaGammaFitter()
timed("gamma_gamma", lambda: ggf.fit(r["frequency"], r["monetary_value"]))
timed("clv", lambda: ggf.customer_lifetime_value(bgf, r["frequency"], r["recency"], r["T"],
    r["monetary_value"], time=12, discount_rate=0.01, freq="W"))
"#;

fn compare_with_lifetimes(python: &std::ffi::OsStr, tx: &[nudge_models::Transaction], ours: [f64; 5]) {
    use std::io::Write;
    let dir = std::env::temp_dir().join(format!("nudge-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("temp dir");
    let csv_path = dir.join("transactions.csv");
    {
        let mut w = std::io::BufWriter::new(std::fs::File::create(&csv_path).expect("csv"));
        writeln!(w, "customer,date,amount").unwrap();
        for t in tx {
            // Days since 1970-01-01 to a calendar date.
            let (y, m, d) = civil_from_days(t.day);
            writeln!(w, "{},{y:04}-{m:02}-{d:02},{:.2}", t.customer, t.amount).unwrap();
        }
    }
    let (y, m, d) = civil_from_days(CALIBRATION_END);
    println!("\nrunning lifetimes (this can take minutes)...");
    let out = std::process::Command::new(python)
        .arg("-c")
        .arg(PY_SCRIPT)
        .arg(&csv_path)
        .arg(format!("{y:04}-{m:02}-{d:02}"))
        .output()
        .expect("run python");
    let _ = std::fs::remove_dir_all(&dir);
    if !out.status.success() {
        println!("lifetimes run failed:\n{}", String::from_utf8_lossy(&out.stderr));
        return;
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let names = ["summary", "bgnbd", "pareto", "gamma_gamma", "clv"];
    println!("{:<14} {:>12} {:>12} {:>10}", "step", "nudge (s)", "lifetimes (s)", "speed-up");
    for (name, ours) in names.iter().zip(ours) {
        let theirs = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.trim().parse::<f64>().ok());
        match theirs {
            Some(t) => println!("{name:<14} {ours:>12.4} {t:>12.4} {:>9.1}x", t / ours),
            None => println!("{name:<14} {ours:>12.4} {:>12}", "n/a"),
        }
    }
}

/// The calendar date of a day count since 1970-01-01.
fn civil_from_days(z: i32) -> (i32, u32, u32) {
    let z = z + 719_468;
    let era = if z >= 0 { z } else { z - 146_096 } / 146_097;
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i32::from(m <= 2);
    (y, m, d)
}
