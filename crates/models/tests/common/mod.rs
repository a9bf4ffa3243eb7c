//! Helpers shared by the integration tests: locating and loading the CDNOW sample.

#![allow(dead_code)]

use std::path::PathBuf;

use nudge_models::{Rfm, Transaction};

/// The folder holding the CDNOW files, from `NUDGE_CDNOW_DIR` or the shared data folder
/// next to the repository.
pub fn cdnow_dir() -> PathBuf {
    let dir = std::env::var_os("NUDGE_CDNOW_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../../shared/data/cdnow")));
    if !dir.join("CDNOW_sample.txt").is_file() {
        panic!(
            "CDNOW data not found: looked for CDNOW_sample.txt in {}; set NUDGE_CDNOW_DIR to \
             the folder holding CDNOW_sample.txt and the cdnow_customers_summary*.csv files",
            dir.display()
        );
    }
    dir
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(y: i32, m: u32, d: u32) -> i32 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = if y >= 0 { y } else { y - 399 } / 400;
    let yoe = y - era * 400;
    let m = m as i32;
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + d as i32 - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146097 + doe - 719468
}

/// Parses a `YYYYMMDD` date into days since 1970-01-01.
pub fn parse_yyyymmdd(s: &str) -> i32 {
    let v: u32 = s.parse().expect("date");
    days_from_civil((v / 10000) as i32, (v / 100) % 100, v % 100)
}

/// The CDNOW transactions with `master_id` as the customer, and each customer's
/// `sample_id`, indexed by master id.
pub fn cdnow_transactions() -> (Vec<Transaction>, std::collections::HashMap<u64, u64>) {
    let text = std::fs::read_to_string(cdnow_dir().join("CDNOW_sample.txt")).expect("read");
    let mut out = Vec::new();
    let mut ids = std::collections::HashMap::new();
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let f: Vec<&str> = line.split_whitespace().collect();
        let customer: u64 = f[0].parse().expect("master id");
        ids.insert(customer, f[1].parse().expect("sample id"));
        out.push(Transaction { customer, day: parse_yyyymmdd(f[2]), amount: f[4].parse().expect("amount") });
    }
    (out, ids)
}

/// Rows of `cdnow_customers_summary_with_transactions.csv`: `(ID, x, t_x, T, zbar)`.
pub fn cdnow_summary() -> Vec<(u64, u32, f64, f64, f64)> {
    let mut r = csv::Reader::from_path(cdnow_dir().join("cdnow_customers_summary_with_transactions.csv"))
        .expect("open summary");
    r.records()
        .map(|rec| {
            let rec = rec.expect("record");
            (
                rec[0].parse().unwrap(),
                rec[1].parse().unwrap(),
                rec[2].parse().unwrap(),
                rec[3].parse().unwrap(),
                rec[4].parse().unwrap(),
            )
        })
        .collect()
}

/// The published calibration summary as model rows.
pub fn cdnow_rfm() -> Vec<Rfm> {
    cdnow_summary().iter().map(|&(_, x, tx, t, _)| Rfm::new(x, tx, t)).collect()
}
