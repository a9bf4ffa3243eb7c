//! The propensity model's logistic regression and metrics on real shopping sessions: the UCI "Online
//! Shoppers Purchasing Intention" data set (12,330 sessions of one online shop over a year, label
//! `Revenue` = the session ended in a purchase; Sakar et al. 2019, licensed CC BY 4.0). The data is not in
//! the repository: download `online_shoppers_intention.csv` from the UCI Machine Learning Repository
//! (data set 468) and run
//!
//! ```text
//! cargo run --release -p nudge-decide --example propensity_dataset -- --csv online_shoppers_intention.csv
//! ```
//!
//! Options: `--split month` (the default: train on the sessions of February–October, evaluate on November
//! and December, a time-based holdout) or `--split random --seed S --test-share F` (a seeded random
//! holdout, 25 % by default); `--c C`, the inverse L2 penalty (scikit-learn's `C`, default 1);
//! `--design-out FILE`, which writes the mapped features, the label and the holdout flag as CSV for
//! `propensity_dataset_sklearn.py` beside this file to fit scikit-learn's `LogisticRegression` on exactly
//! the same rows and split.
//!
//! ## The feature mapping
//!
//! | column(s) | feature |
//! | --- | --- |
//! | `Administrative`, `Informational`, `ProductRelated` (pages viewed) | `ln(1 + count)` each |
//! | `*_Duration` (seconds on those pages; −1 = unknown is read as 0) | `ln(1 + seconds)` each |
//! | `BounceRates`, `ExitRates` | as given (0–0.2) |
//! | `PageValues` | `ln(1 + value)` |
//! | `SpecialDay` | as given (0–1) |
//! | `Weekend` | 1 for `TRUE` |
//! | `VisitorType` | indicators of `New_Visitor` and `Other` (returning visitors are the baseline) |
//! | `OperatingSystems`, `Browser`, `Region`, `TrafficType` (category codes) | an indicator per code seen in at least 100 training rows; rarer codes are the baseline |
//! | `Month` | not a feature: it defines the time split, and the test months are unseen in training |
//!
//! The model is `nudge_decide::logistic::fit` (standardised features, L2, Newton) without recalibration;
//! the metrics are `nudge_decide::metrics::Metrics` (AUC, PR-AUC as average precision, Brier, log loss,
//! ECE over ten bins and the calibration table), measured on the holdout beside the base rate's.

use nudge_decide::logistic::{self, LogisticConfig};
use nudge_decide::metrics::{self, Metrics};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

/// A category code needs this many training rows for an indicator of its own.
const MIN_LEVEL_ROWS: usize = 100;

/// The columns the mapping reads, as the UCI file names them.
const COLUMNS: [&str; 18] = [
    "Administrative",
    "Administrative_Duration",
    "Informational",
    "Informational_Duration",
    "ProductRelated",
    "ProductRelated_Duration",
    "BounceRates",
    "ExitRates",
    "PageValues",
    "SpecialDay",
    "Month",
    "OperatingSystems",
    "Browser",
    "Region",
    "TrafficType",
    "VisitorType",
    "Weekend",
    "Revenue",
];

/// The categorical code columns that get one indicator per frequent code.
const CODES: [&str; 4] = ["OperatingSystems", "Browser", "Region", "TrafficType"];

/// One session as read from the file.
#[derive(Debug, Clone, PartialEq)]
struct Session {
    /// The ten numeric columns, in `COLUMNS` order.
    numeric: [f64; 10],
    /// Month number, 1–12.
    month: u8,
    /// The four category codes, in `CODES` order.
    codes: [String; 4],
    visitor: String,
    weekend: bool,
    revenue: bool,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Split {
    Month,
    Random { seed: u64, test_share: f64 },
}

#[derive(Debug)]
struct Args {
    csv: PathBuf,
    split: Split,
    c: f64,
    design_out: Option<PathBuf>,
}

fn usage() -> String {
    "usage: propensity_dataset --csv online_shoppers_intention.csv [--split month|random] [--seed S] \
     [--test-share F] [--c C] [--design-out FILE]"
        .to_string()
}

fn parse_args(argv: &[String]) -> Result<Args, String> {
    let mut csv = None;
    let mut split = "month".to_string();
    let mut seed = 7u64;
    let mut test_share: f64 = 0.25;
    let mut c: f64 = 1.0;
    let mut design_out = None;
    let mut it = argv.iter();
    while let Some(flag) = it.next() {
        let mut value = || it.next().cloned().ok_or_else(|| format!("{flag} needs a value\n{}", usage()));
        match flag.as_str() {
            "--csv" => csv = Some(PathBuf::from(value()?)),
            "--split" => split = value()?,
            "--seed" => seed = value()?.parse().map_err(|e| format!("--seed: {e}"))?,
            "--test-share" => test_share = value()?.parse().map_err(|e| format!("--test-share: {e}"))?,
            "--c" => c = value()?.parse().map_err(|e| format!("--c: {e}"))?,
            "--design-out" => design_out = Some(PathBuf::from(value()?)),
            "--bench" => {} // cargo passes it to examples run as benches
            "-h" | "--help" => return Err(usage()),
            other => return Err(format!("unknown argument `{other}`\n{}", usage())),
        }
    }
    let csv = csv.ok_or_else(|| format!("--csv is required\n{}", usage()))?;
    let split = match split.as_str() {
        "month" => Split::Month,
        "random" => {
            if !(test_share > 0.0 && test_share < 1.0) {
                return Err("--test-share must lie strictly between 0 and 1".into());
            }
            Split::Random { seed, test_share }
        }
        other => return Err(format!("--split must be `month` or `random`, not `{other}`")),
    };
    if !(c.is_finite() && c > 0.0) {
        return Err("--c must be a positive number".into());
    }
    Ok(Args { csv, split, c, design_out })
}

fn month_number(s: &str) -> Option<u8> {
    let m = s.trim().to_ascii_lowercase();
    let names = ["jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"];
    names.iter().position(|n| m.starts_with(n)).map(|i| i as u8 + 1)
}

fn boolean(s: &str) -> Option<bool> {
    match s.trim().to_ascii_lowercase().as_str() {
        "true" | "1" => Some(true),
        "false" | "0" => Some(false),
        _ => None,
    }
}

/// Reads every session; a missing column or an unreadable value is an error naming the line.
fn read_sessions(reader: impl std::io::Read) -> Result<Vec<Session>, String> {
    let mut rdr = csv::ReaderBuilder::new().trim(csv::Trim::All).from_reader(reader);
    let headers = rdr.headers().map_err(|e| format!("cannot read the header: {e}"))?.clone();
    let mut at = BTreeMap::new();
    for name in COLUMNS {
        let i = headers.iter().position(|h| h == name).ok_or_else(|| {
            format!("the file has no `{name}` column (is it online_shoppers_intention.csv?)")
        })?;
        at.insert(name, i);
    }
    let mut out = Vec::new();
    for (n, rec) in rdr.records().enumerate() {
        let line = n + 2;
        let rec = rec.map_err(|e| format!("line {line}: {e}"))?;
        let field = |name: &str| rec.get(at[name]).unwrap_or("");
        let mut numeric = [0.0; 10];
        for (k, v) in numeric.iter_mut().enumerate() {
            let raw = field(COLUMNS[k]);
            *v = raw
                .parse::<f64>()
                .ok()
                .filter(|v| v.is_finite())
                .ok_or_else(|| format!("line {line}: {} is `{raw}`, not a number", COLUMNS[k]))?;
        }
        let month = month_number(field("Month"))
            .ok_or_else(|| format!("line {line}: Month is `{}`, not a month", field("Month")))?;
        let weekend = boolean(field("Weekend"))
            .ok_or_else(|| format!("line {line}: Weekend is `{}`, not TRUE or FALSE", field("Weekend")))?;
        let revenue = boolean(field("Revenue"))
            .ok_or_else(|| format!("line {line}: Revenue is `{}`, not TRUE or FALSE", field("Revenue")))?;
        out.push(Session {
            numeric,
            month,
            codes: CODES.map(|c| field(c).to_string()),
            visitor: field("VisitorType").to_string(),
            weekend,
            revenue,
        });
    }
    if out.is_empty() {
        return Err("the file holds no sessions".into());
    }
    Ok(out)
}

/// Which sessions are held out.
fn holdout_flags(sessions: &[Session], split: Split) -> Vec<bool> {
    match split {
        // The last two months of the year: November and December.
        Split::Month => sessions.iter().map(|s| s.month >= 11).collect(),
        Split::Random { seed, test_share } => {
            let mut idx: Vec<usize> = (0..sessions.len()).collect();
            idx.shuffle(&mut rand::rngs::StdRng::seed_from_u64(seed));
            let n_test = (sessions.len() as f64 * test_share).round() as usize;
            let mut flags = vec![false; sessions.len()];
            for &i in &idx[..n_test] {
                flags[i] = true;
            }
            flags
        }
    }
}

/// The feature mapping, its levels chosen on the training rows.
struct Mapping {
    names: Vec<String>,
    /// Per code column, the codes with an indicator.
    levels: [Vec<String>; 4],
}

impl Mapping {
    fn fit(train: &[&Session]) -> Mapping {
        let levels = std::array::from_fn(|k| {
            let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
            for s in train {
                *counts.entry(s.codes[k].as_str()).or_default() += 1;
            }
            counts.into_iter().filter(|&(_, n)| n >= MIN_LEVEL_ROWS).map(|(c, _)| c.to_string()).collect()
        });
        let mut names: Vec<String> = [
            "ln1p_administrative",
            "ln1p_administrative_seconds",
            "ln1p_informational",
            "ln1p_informational_seconds",
            "ln1p_product_related",
            "ln1p_product_related_seconds",
            "bounce_rate",
            "exit_rate",
            "ln1p_page_value",
            "special_day",
            "weekend",
            "new_visitor",
            "other_visitor",
        ]
        .map(String::from)
        .to_vec();
        for (k, col) in CODES.iter().enumerate() {
            let lv: &Vec<String> = &levels[k];
            names.extend(lv.iter().map(|l| format!("{}_{l}", col.to_ascii_lowercase())));
        }
        Mapping { names, levels }
    }

    fn row(&self, s: &Session, out: &mut Vec<f64>) {
        let v = &s.numeric;
        out.extend(v[..6].iter().map(|c| c.max(0.0).ln_1p()));
        out.extend([v[6], v[7], v[8].max(0.0).ln_1p(), v[9]]);
        out.push(f64::from(u8::from(s.weekend)));
        out.push(f64::from(u8::from(s.visitor == "New_Visitor")));
        out.push(f64::from(u8::from(s.visitor == "Other")));
        for (k, lv) in self.levels.iter().enumerate() {
            out.extend(lv.iter().map(|l| f64::from(u8::from(&s.codes[k] == l))));
        }
    }
}

fn fmt(v: Option<f64>) -> String {
    v.map_or("-".into(), |v| format!("{v:.4}"))
}

fn run(args: &Args) -> Result<(), String> {
    let file =
        std::fs::File::open(&args.csv).map_err(|e| format!("cannot open {}: {e}", args.csv.display()))?;
    let sessions = read_sessions(std::io::BufReader::new(file))?;
    let held = holdout_flags(&sessions, args.split);
    let train: Vec<&Session> = sessions.iter().zip(&held).filter(|(_, h)| !**h).map(|(s, _)| s).collect();
    let test: Vec<&Session> = sessions.iter().zip(&held).filter(|(_, h)| **h).map(|(s, _)| s).collect();
    if train.is_empty() || test.is_empty() {
        return Err(format!("the split leaves {} training and {} holdout sessions", train.len(), test.len()));
    }
    let mapping = Mapping::fit(&train);
    let d = mapping.names.len();
    let matrix = |rows: &[&Session]| {
        let mut x = Vec::with_capacity(rows.len() * d);
        for s in rows {
            mapping.row(s, &mut x);
        }
        (x, rows.iter().map(|s| s.revenue).collect::<Vec<bool>>())
    };
    let (xt, yt) = matrix(&train);
    let (xh, yh) = matrix(&test);
    let split = match args.split {
        Split::Month => "by month: train February–October, holdout November–December".to_string(),
        Split::Random { seed, test_share } => {
            format!("random, seed {seed}, {:.0} % held out", 100.0 * test_share)
        }
    };
    let pos = |y: &[bool]| y.iter().filter(|&&v| v).count();
    println!(
        "{} sessions ({} purchases); split {split}\ntrain {} sessions ({} purchases), holdout {} sessions ({} purchases)",
        sessions.len(),
        pos(&yt) + pos(&yh),
        yt.len(),
        pos(&yt),
        yh.len(),
        pos(&yh)
    );
    println!("{d} features: {}", mapping.names.join(", "));

    let started = Instant::now();
    let model = logistic::fit(&xt, d, &yt, &LogisticConfig { c: args.c, ..LogisticConfig::default() })
        .map_err(|e| e.to_string())?;
    let fit_time = started.elapsed();
    let p: Vec<f64> = xh.chunks_exact(d).map(|r| model.predict(r)).collect();
    let m = Metrics::evaluate(&yh, &p).map_err(|e| e.to_string())?;
    let base = pos(&yt) as f64 / yt.len() as f64;
    let mb = Metrics::evaluate(&yh, &vec![base; yh.len()]).map_err(|e| e.to_string())?;
    println!(
        "logistic (C = {}): {} Newton iterations{}, fitted in {:.1} ms\n",
        args.c,
        model.iterations,
        if model.converged { "" } else { " (did NOT converge)" },
        fit_time.as_secs_f64() * 1e3
    );
    println!("{:<26} {:>7} {:>7} {:>7} {:>8} {:>7}", "holdout", "AUC", "PR-AUC", "Brier", "log loss", "ECE");
    for (name, m) in [("nudge logistic", &m), ("base rate (train)", &mb)] {
        println!(
            "{name:<26} {:>7} {:>7} {:>7.4} {:>8.4} {:>7.4}",
            fmt(m.auc),
            fmt(m.pr_auc),
            m.brier,
            m.log_loss,
            m.ece
        );
    }
    println!("\ncalibration on the holdout:\n{}", metrics::calibration_text(&m.calibration));

    if let Some(path) = &args.design_out {
        let mut w = std::io::BufWriter::new(
            std::fs::File::create(path).map_err(|e| format!("cannot write {}: {e}", path.display()))?,
        );
        let io = |e: std::io::Error| format!("cannot write {}: {e}", path.display());
        writeln!(w, "{},label,holdout", mapping.names.join(",")).map_err(io)?;
        for (x, y, h) in [(&xt, &yt, 0), (&xh, &yh, 1)] {
            for (row, &label) in x.chunks_exact(d).zip(y.iter()) {
                let cells: Vec<String> = row.iter().map(|v| format!("{v}")).collect();
                writeln!(w, "{},{},{h}", cells.join(","), u8::from(label)).map_err(io)?;
            }
        }
        w.flush().map_err(io)?;
        println!("design matrix written to {}", path.display());
    }
    Ok(())
}

fn main() {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    let result = parse_args(&argv).and_then(|a| run(&a));
    if let Err(e) = result {
        eprintln!("propensity_dataset: {e}");
        std::process::exit(2);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HEADER: &str = "Administrative,Administrative_Duration,Informational,Informational_Duration,\
ProductRelated,ProductRelated_Duration,BounceRates,ExitRates,PageValues,SpecialDay,Month,OperatingSystems,\
Browser,Region,TrafficType,VisitorType,Weekend,Revenue";

    #[test]
    fn reads_the_uci_layout_and_maps_a_session() {
        let text = format!(
            "{HEADER}\n0,0,0,0,1,0,0.2,0.2,0,0,Feb,1,1,1,1,Returning_Visitor,FALSE,FALSE\n\
             2,-1,0,0,19,600.5,0.01,0.02,12.5,0.4,June,2,2,3,2,New_Visitor,TRUE,TRUE\n"
        );
        let s = read_sessions(text.as_bytes()).unwrap();
        assert_eq!(s.len(), 2);
        assert_eq!((s[0].month, s[1].month), (2, 6));
        assert!(s[1].weekend && s[1].revenue && !s[0].revenue);
        let train: Vec<&Session> = s.iter().collect();
        let mut m = Mapping::fit(&train);
        // Too few rows for any code's indicator; give the browser code 2 one by hand.
        assert!(m.levels.iter().all(Vec::is_empty));
        m.levels[1] = vec!["2".into()];
        let mut row = Vec::new();
        m.row(&s[1], &mut row);
        let want = [
            3f64.ln(),
            0.0, // −1 (unknown) seconds read as 0
            0.0,
            0.0,
            20f64.ln(),
            601.5f64.ln(),
            0.01,
            0.02,
            13.5f64.ln(),
            0.4,
            1.0,
            1.0,
            0.0,
            1.0,
        ];
        assert_eq!(row.len(), want.len());
        for (g, w) in row.iter().zip(want) {
            assert!((g - w).abs() < 1e-12, "{row:?}");
        }
    }

    #[test]
    fn bad_files_name_the_problem() {
        let e = read_sessions("a,b\n1,2\n".as_bytes()).unwrap_err();
        assert!(e.contains("`Administrative`"), "{e}");
        let text = format!("{HEADER}\n0,0,0,0,1,0,0.2,0.2,0,0,Smarch,1,1,1,1,Other,FALSE,FALSE\n");
        let e = read_sessions(text.as_bytes()).unwrap_err();
        assert!(e.contains("line 2") && e.contains("Smarch"), "{e}");
        let text = format!("{HEADER}\n0,x,0,0,1,0,0.2,0.2,0,0,Mar,1,1,1,1,Other,FALSE,FALSE\n");
        let e = read_sessions(text.as_bytes()).unwrap_err();
        assert!(e.contains("Administrative_Duration is `x`"), "{e}");
        assert!(read_sessions(format!("{HEADER}\n").as_bytes()).unwrap_err().contains("no sessions"));
    }

    #[test]
    fn splits_by_month_or_at_random_with_a_seed() {
        let mk = |month| Session {
            numeric: [0.0; 10],
            month,
            codes: Default::default(),
            visitor: String::new(),
            weekend: false,
            revenue: false,
        };
        let s: Vec<Session> = [2, 3, 5, 10, 11, 12].into_iter().map(mk).collect();
        assert_eq!(holdout_flags(&s, Split::Month), [false, false, false, false, true, true]);
        let many: Vec<Session> = (0..1000).map(|_| mk(5)).collect();
        let r = Split::Random { seed: 3, test_share: 0.25 };
        let a = holdout_flags(&many, r);
        assert_eq!(a.iter().filter(|&&h| h).count(), 250);
        assert_eq!(a, holdout_flags(&many, r));
        assert_ne!(a, holdout_flags(&many, Split::Random { seed: 4, test_share: 0.25 }));
    }

    #[test]
    fn arguments_are_checked() {
        let v = |s: &[&str]| s.iter().map(|a| a.to_string()).collect::<Vec<_>>();
        assert!(parse_args(&v(&[])).unwrap_err().contains("--csv is required"));
        assert!(parse_args(&v(&["--csv", "f", "--split", "weekly"])).unwrap_err().contains("month"));
        assert!(parse_args(&v(&["--csv", "f", "--c", "0"])).is_err());
        let a = parse_args(&v(&["--csv", "f", "--split", "random", "--seed", "9"])).unwrap();
        assert_eq!(a.split, Split::Random { seed: 9, test_share: 0.25 });
    }
}
