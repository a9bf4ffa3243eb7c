//! Benchmark of the one-time rewrite of JSON customer states in the compact encoding at start
//! ([`migrate_text_states`]) on a large store: seconds, states per second and the database size.
//!
//! `cargo bench -p nudge --bench migrate -- [--rows 5000000] [--customers 1000000] [--runs 3]
//!  [--history FILE] [--data DIR] [--durability full|normal]`
//!
//! It builds a store the way the import benchmark does (a generated history of `--rows` orders over
//! `--customers` customers, or the `customer_id,date,amount[,order_id]` CSV `--history` names, imported
//! through [`read_history`] and [`write_history`]), then rewrites every customer state in its legacy form,
//! the JSON text a version before the compact encoding stored (`serde_json::to_vec(&state)` as TEXT), and
//! compacts the file (`VACUUM`), as an older store would be. Each of the `--runs` runs starts from a copy of
//! that JSON store, opens it and times [`migrate_text_states`] alone, as `nudge serve` runs it before it
//! listens. It prints the database size after the import (compact), with JSON states, and after the
//! migration (the file keeps its size; the freed pages are listed), then the median, minimum and maximum.
//!
//! `--data DIR` keeps the store in `DIR` (reused when `DIR/nudge.db` exists, so a second invocation skips
//! the import); without it, everything lives in a temporary directory.
//!
//! [`migrate_text_states`]: nudge::app::migrate_text_states
//! [`read_history`]: nudge::import::read_history
//! [`write_history`]: nudge::import::write_history

use nudge::app::migrate_text_states;
use nudge::import::{HistoryFormat, read_history, write_history};
use nudge_model::Currency;
use nudge_state::CustomerState;
use nudge_store::sqlite::{Durability, SqliteStore};
use std::path::{Path, PathBuf};
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
    history: Option<PathBuf>,
    data: Option<PathBuf>,
    durability: Durability,
}

fn args() -> Args {
    let mut a = Args {
        rows: 5_000_000,
        customers: 1_000_000,
        runs: 3,
        history: None,
        data: None,
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
            "--history" => a.history = Some(value.into()),
            "--data" => a.data = Some(value.into()),
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

fn mb(bytes: u64) -> f64 {
    bytes as f64 / 1_000_000.0
}

/// The main database's size: the file, its write-ahead log, and the pages SQLite holds free inside it.
struct Size {
    file: u64,
    wal: u64,
    free: u64,
}

fn size(data: &Path) -> anyhow::Result<Size> {
    let len = |p: PathBuf| std::fs::metadata(p).map(|m| m.len()).unwrap_or(0);
    let c = rusqlite::Connection::open(data.join("nudge.db"))?;
    let free: i64 = c.query_row("PRAGMA freelist_count", [], |r| r.get(0))?;
    let page: i64 = c.query_row("PRAGMA page_size", [], |r| r.get(0))?;
    Ok(Size {
        file: len(data.join("nudge.db")),
        wal: len(data.join("nudge.db-wal")),
        free: (free * page) as u64,
    })
}

fn print_size(what: &str, s: &Size) {
    println!(
        "{what}: nudge.db {:.0} MB (of which free pages {:.0} MB), WAL {:.0} MB",
        mb(s.file),
        mb(s.free),
        mb(s.wal)
    );
}

/// Rewrites every state in its legacy form (JSON as text), then checkpoints and compacts the file;
/// returns how many states it rewrote and their bytes before and after.
fn to_json_states(db: &Path) -> anyhow::Result<(usize, u64, u64)> {
    let mut c = rusqlite::Connection::open(db)?;
    c.busy_timeout(std::time::Duration::from_secs(60))?;
    let mut after = String::new();
    let (mut n, mut compact, mut json) = (0, 0, 0);
    loop {
        let page: Vec<(String, Vec<u8>)> = {
            let mut st = c.prepare_cached(
                "SELECT customer_id, state FROM customers WHERE customer_id > ?1 ORDER BY customer_id LIMIT 10000",
            )?;
            st.query_map([&after], |r| Ok((r.get(0)?, r.get_ref(1)?.as_bytes()?.to_vec())))?
                .collect::<rusqlite::Result<_>>()?
        };
        let Some((last, _)) = page.last() else { break };
        after = last.clone();
        let tx = c.transaction()?;
        {
            let mut up = tx.prepare_cached("UPDATE customers SET state = ?1 WHERE customer_id = ?2")?;
            for (id, bytes) in &page {
                let state = CustomerState::decode(bytes)?;
                let text = serde_json::to_string(&state)?;
                (compact, json) = (compact + bytes.len() as u64, json + text.len() as u64);
                up.execute(rusqlite::params![text, id])?;
            }
        }
        tx.commit()?;
        n += page.len();
    }
    c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); VACUUM; PRAGMA wal_checkpoint(TRUNCATE);")?;
    Ok((n, compact, json))
}

fn main() -> anyhow::Result<()> {
    let a = args();
    let tmp = tempfile::tempdir()?;
    let data = a.data.clone().unwrap_or_else(|| tmp.path().join("data"));
    let db = data.join("nudge.db");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    if db.exists() {
        println!("reusing the store in {}", data.display());
    } else {
        let file = match &a.history {
            Some(f) => f.clone(),
            None => {
                let file = tmp.path().join("history.csv");
                history::write_history_file(&file, a.rows, a.customers, true)?;
                file
            }
        };
        let started = Instant::now();
        let store = SqliteStore::open(&data, a.durability)?;
        let read = read_history(&file, HistoryFormat::Csv, Currency::parse("USD")?, false)?;
        let summary = rt.block_on(write_history(&store, read, false))?;
        drop(store);
        println!(
            "imported {} orders of {} customers from {} in {:.1}s",
            summary.new_transactions,
            summary.customers,
            file.display(),
            started.elapsed().as_secs_f64()
        );
    }
    // Whatever the store holds now (compact after an import; reused stores may hold either form).
    {
        let c = rusqlite::Connection::open(&db)?;
        c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
    }
    print_size("store as imported (compact states)", &size(&data)?);
    let started = Instant::now();
    let (n, compact, json) = to_json_states(&db)?;
    println!(
        "{n} states rewritten as JSON text in {:.1}s (on average {:.0} bytes compact, {:.0} bytes JSON)",
        started.elapsed().as_secs_f64(),
        compact as f64 / n.max(1) as f64,
        json as f64 / n.max(1) as f64
    );
    let json = size(&data)?;
    print_size("with JSON states (after VACUUM)", &json);
    let backup = data.join("nudge-json.db.bench");
    std::fs::copy(&db, &backup)?;

    let mut secs = Vec::new();
    let mut rewritten = 0;
    for run in 1..=a.runs.max(1) {
        if run > 1 {
            let _ = std::fs::remove_file(data.join("nudge.db-wal"));
            let _ = std::fs::remove_file(data.join("nudge.db-shm"));
            std::fs::copy(&backup, &db)?;
        }
        let store = SqliteStore::open(&data, a.durability)?;
        let started = Instant::now();
        rewritten = rt.block_on(migrate_text_states(&store))?;
        let s = started.elapsed().as_secs_f64();
        drop(store);
        println!("run {run}: {rewritten} states rewritten in {s:.2}s, {:.0} states/s", rewritten as f64 / s);
        secs.push(s);
    }
    std::fs::remove_file(&backup)?;
    print_size("after the migration", &size(&data)?);
    {
        let c = rusqlite::Connection::open(&db)?;
        c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE);")?;
    }
    print_size("after the migration, checkpointed", &size(&data)?);
    secs.sort_by(f64::total_cmp);
    let (median, min, max) = (secs[secs.len() / 2], secs[0], secs[secs.len() - 1]);
    println!(
        "migration: median {median:.2}s (min {min:.2}, max {max:.2}; {} runs), {:.0} states/s at the median; \
         JSON store {:.0} MB",
        secs.len(),
        rewritten as f64 / median,
        mb(json.file)
    );
    Ok(())
}
