//! Benchmark of `nudge import` on a large CSV order history: rows per second and peak memory.
//!
//! `cargo bench -p nudge --bench import -- [--rows 5000000] [--customers 1000000] [--runs 3]
//!  [--order-ids 1] [--durability full|normal]`
//!
//! It writes a history of `--rows` orders (`customer_id,date,amount,order_id`, two years of days in file
//! order, customers drawn uniformly from `--customers`, amounts with cents; `--order-ids 0` leaves the
//! order id column out so the import derives them) into a temporary directory, then imports it `--runs`
//! times, each into a fresh store, through the functions `nudge import` calls ([`read_history`], then
//! [`write_history`]), and once more into the last store to show that a second import adds nothing.
//!
//! Per run it prints the seconds of each pass (reading and validating the file into sorted runs; writing
//! transactions and customer states), the rows per second of the whole import and the peak resident
//! memory of the process during the run (`VmHWM` of `/proc/self/status`, reset before each run through
//! `/proc/self/clear_refs`), then the median, minimum and maximum rows per second.
//!
//! [`read_history`]: nudge::import::read_history
//! [`write_history`]: nudge::import::write_history

use nudge::import::{HistoryFormat, read_history, write_history};
use nudge_model::Currency;
use nudge_store::sqlite::{Durability, SqliteStore};
use std::time::Instant;

// The allocator of the `nudge` binary, so the figures are the command's.
#[path = "common/history.rs"]
mod history;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

struct Args {
    rows: u64,
    customers: u64,
    runs: usize,
    order_ids: bool,
    durability: Durability,
}

fn args() -> Args {
    let mut a = Args {
        rows: 5_000_000,
        customers: 1_000_000,
        runs: 3,
        order_ids: true,
        durability: Durability::Full,
    };
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < argv.len() {
        let value = argv.get(i + 1).cloned().unwrap_or_default();
        match argv[i].as_str() {
            "--rows" => a.rows = value.parse().expect("--rows N"),
            "--customers" => a.customers = value.parse().expect("--customers N"),
            "--runs" => a.runs = value.parse().expect("--runs N"),
            "--order-ids" => a.order_ids = value != "0",
            "--durability" => {
                a.durability = match value.as_str() {
                    "normal" => Durability::Normal,
                    _ => Durability::Full,
                }
            }
            // `cargo bench` passes `--bench`; anything else unknown is ignored the same way.
            _ => {
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    a
}

fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let kb: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmHWM:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0.0);
    kb / 1024.0
}

fn reset_peak_rss() {
    // Writing 5 resets the peak resident set size (Linux 4.0 and later); ignored elsewhere.
    let _ = std::fs::write("/proc/self/clear_refs", "5");
}

fn main() -> anyhow::Result<()> {
    let a = args();
    let dir = tempfile::tempdir()?;
    let file = dir.path().join("history.csv");
    let t = Instant::now();
    history::write_history_file(&file, a.rows, a.customers, a.order_ids)?;
    println!(
        "history: {} rows, {} customers, {} MB, written in {:.1}s",
        a.rows,
        a.customers,
        std::fs::metadata(&file)?.len() / 1_000_000,
        t.elapsed().as_secs_f64()
    );
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    let usd = Currency::parse("USD")?;
    let mut rates = Vec::new();
    let mut last_store = None;
    for run in 1..=a.runs.max(1) {
        let data = dir.path().join(format!("data-{run}"));
        let store = SqliteStore::open(&data, a.durability)?;
        reset_peak_rss();
        let started = Instant::now();
        let read = read_history(&file, HistoryFormat::Csv, usd, false)?;
        let read_s = started.elapsed().as_secs_f64();
        let summary = rt.block_on(write_history(&store, read, false))?;
        let total = started.elapsed().as_secs_f64();
        let rate = a.rows as f64 / total;
        println!(
            "run {run}: read {read_s:.2}s + write {:.2}s = {total:.2}s, {:.0} rows/s, peak RSS {:.0} MB \
             ({} new transactions, {} customers, {} states updated)",
            total - read_s,
            rate,
            peak_rss_mb(),
            summary.new_transactions,
            summary.customers,
            summary.states_updated
        );
        rates.push(rate);
        if let Some(old) = last_store.replace(store) {
            drop(old);
        }
        if run > 1 {
            let _ = std::fs::remove_dir_all(dir.path().join(format!("data-{}", run - 1)));
        }
    }
    if let Some(store) = last_store {
        let started = Instant::now();
        let read = read_history(&file, HistoryFormat::Csv, usd, false)?;
        let again = rt.block_on(write_history(&store, read, false))?;
        println!(
            "again into the last store: {:.2}s, {} new transactions, {} states updated",
            started.elapsed().as_secs_f64(),
            again.new_transactions,
            again.states_updated
        );
    }
    rates.sort_by(f64::total_cmp);
    println!(
        "rows/s: median {:.0}, min {:.0}, max {:.0} ({} runs)",
        rates[rates.len() / 2],
        rates[0],
        rates[rates.len() - 1],
        rates.len()
    );
    Ok(())
}
