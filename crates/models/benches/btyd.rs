//! Benchmark: simulate a large BG/NBD customer base, then time summarising, fitting
//! every family and computing lifetime values. Optionally times the `lifetimes` Python
//! package on the same data when `NUDGE_BENCH_PYTHON` names a Python that has it.
//!
//! Run with `cargo bench -p nudge-models --bench btyd -- [--customers N] [--runs K]`.

use std::hint::black_box;
use std::time::Instant;

use nudge_models::{
    BgNbd, ClvSettings, FitOptions, GammaGamma, MbgNbd, ParetoNbd, Rfm, Simulation, Spend, TimeUnit,
    TransactionModel, customer_lifetime_values, simulate_bgnbd, summarize,
};

const TRUE_BG: BgNbd = BgNbd { r: 0.25, alpha: 4.0, a: 0.8, b: 2.5 };
const TRUE_GG: GammaGamma = GammaGamma { p: 6.0, q: 4.0, v: 15.0 };
const ACQUISITION_DAYS: i32 = 365;
const CALIBRATION_END: i32 = 365 + 182;

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

fn arg(name: &str) -> Option<usize> {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok())
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

    if let Some(python) = std::env::var_os("NUDGE_BENCH_PYTHON") {
        let ours = [t_sum[0], t_bg[0], t_pnbd[0], t_gg[0], t_clv[0]];
        compare_with_lifetimes(&python, &tx, ours);
    }
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
