//! `nudge models`: fit, score, list, activate and report predictive-model versions, and the two hooks the
//! server uses: [`load_active_scorer`] at boot and [`refit_from_store`] for the scheduled refit.
//!
//! A fit reads customer histories (a transactions file, a per-customer summary file, or the store's
//! customer states), fits BG/NBD, MBG/NBD, Pareto/NBD and Gamma-Gamma, validates them on a holdout
//! period when there is one, picks a family and saves everything as one registry version whose body is
//! [`VersionBody`]. Only activation makes a version score live customers; activation refuses versions
//! whose data failed the sufficiency gate unless forced. The statistics live in `nudge_models` and the
//! live scorer in `nudge_scoring`; file parsing is shared with [`crate::import`], plotting with
//! [`crate::svg`].

use crate::config::Config;
use crate::import::{HistoryFormat, date_to_day, day_to_date, parse_history, parse_iso_date};
use crate::model_report;
use crate::pipeline::Scoring;
use anyhow::{Context, anyhow, bail};
use clap::{Args, Subcommand, ValueEnum};
use nudge_model::Currency;
use nudge_models::holdout::{
    ActualRepeats, ModelHoldout, TrackingPoint, best_by_log_score, evaluate_holdout,
};
use nudge_models::{
    BgNbd, ClvSettings, CustomerSummary, FamilyCheck, FitOptions, FitReport, GammaGamma, HoldoutComparison,
    MbgNbd, MisfitRules, ParetoNbd, Requirements, Rfm, Spend, TimeUnit, Transaction, TransactionModel,
    assess, check_sufficiency, churn_risk, customer_lifetime_values, expected_time_to_next_order,
    frequency_fit, select_family, summarize, tracking_fit,
};
use nudge_scoring::{BtydModel, BtydScorer, CountModelParams};
use nudge_state::CustomerState;
use nudge_store::{ModelVersion, Store};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use time::Date;

/// The three count-model families, in display order.
const FAMILIES: [&str; 3] = ["bgnbd", "mbgnbd", "pareto_nbd"];

/// Customer states read per store call when the store is the data source.
const SCAN_PAGE: usize = 2_000;

/// The time unit on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum UnitArg {
    /// Days.
    #[value(name = "D")]
    D,
    /// Weeks.
    #[value(name = "W")]
    W,
    /// Months.
    #[value(name = "M")]
    M,
}

impl From<UnitArg> for TimeUnit {
    fn from(u: UnitArg) -> Self {
        match u {
            UnitArg::D => TimeUnit::D,
            UnitArg::W => TimeUnit::W,
            UnitArg::M => TimeUnit::M,
        }
    }
}

/// A transaction-model family on the command line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum FamilyArg {
    #[value(name = "bgnbd")]
    Bgnbd,
    #[value(name = "mbgnbd")]
    Mbgnbd,
    #[value(name = "pareto_nbd", alias = "pareto-nbd")]
    ParetoNbd,
}

impl FamilyArg {
    pub const ALL: [FamilyArg; 3] = [FamilyArg::Bgnbd, FamilyArg::Mbgnbd, FamilyArg::ParetoNbd];
}

fn parse_date_arg(s: &str) -> Result<Date, String> {
    parse_iso_date(s)
}

#[derive(Args, Debug)]
pub struct FitArgs {
    /// Order history to fit on. Without it (and without --summary), the store's customer states are used.
    #[arg(long, conflicts_with = "summary")]
    pub transactions: Option<PathBuf>,
    /// The layout of --transactions.
    #[arg(long, value_enum, default_value_t = HistoryFormat::Csv)]
    pub format: HistoryFormat,
    /// A per-customer summary CSV: id first, then `frequency` (or `x`), `recency` (or `t_x`), `T`, and
    /// optionally `monetary_value` (or `zbar`), times in --unit.
    #[arg(long)]
    pub summary: Option<PathBuf>,
    /// The time unit of the models: days, weeks or months.
    #[arg(long, value_enum, default_value_t = UnitArg::W, ignore_case = true)]
    pub unit: UnitArg,
    /// The last day of the calibration period (YYYY-MM-DD); later purchases form the holdout period.
    /// Defaults to the last day in the data (no holdout).
    #[arg(long, value_parser = parse_date_arg, conflicts_with = "summary")]
    pub calibration_end: Option<Date>,
    /// What to fit: `btyd` (the transaction families below, the default), or a decision model:
    /// `propensity`, `bandit`, `send_time`, `cold_start` (README, "Decision models").
    #[arg(long, value_enum, default_value_t = FitFamily::Btyd)]
    pub family: FitFamily,
    /// The transaction-model families to fit, comma separated (Pareto/NBD is the slowest to fit).
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = FamilyArg::ALL)]
    pub families: Vec<FamilyArg>,
    /// L2 penalty on the parameters (0 = plain maximum likelihood).
    #[arg(long, default_value_t = 0.0)]
    pub penalizer: f64,
    /// Print one JSON object to stdout instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Do not save the fit as a registry version.
    #[arg(long, conflicts_with = "activate")]
    pub no_save: bool,
    /// Activate the new version right away (refused when the data is insufficient, unless --force).
    #[arg(long)]
    pub activate: bool,
    /// With --activate: activate even when the data failed the sufficiency check, the fit did not
    /// converge or the selected family is misfit.
    #[arg(long, requires = "activate")]
    pub force: bool,
    /// The calibration-tracking bound beyond which a family is misfit (0.10 = 10%; default
    /// `models.max_tracking_deviation`).
    #[arg(long)]
    pub max_tracking_deviation: Option<f64>,
    /// The multiple of the best family's histogram chi-square beyond which a family is misfit (default
    /// `models.max_chi_square_ratio`).
    #[arg(long)]
    pub max_chi_square_ratio: Option<f64>,
}

#[derive(Args, Debug)]
pub struct ScoreArgs {
    /// The version whose parameters are used (default: the active one).
    #[arg(long)]
    pub version: Option<String>,
    /// Order history to score. Without it (and without --summary), the store's customer states are used.
    #[arg(long, conflicts_with = "summary")]
    pub transactions: Option<PathBuf>,
    /// The layout of --transactions.
    #[arg(long, value_enum, default_value_t = HistoryFormat::Csv)]
    pub format: HistoryFormat,
    /// A per-customer summary CSV, in the version's time unit (see `models fit --summary`).
    #[arg(long)]
    pub summary: Option<PathBuf>,
    /// The horizon of the lifetime value, in months.
    #[arg(long, default_value_t = 12)]
    pub horizon_months: u32,
    /// The monthly discount rate of the lifetime value (0.01 = 1% a month).
    #[arg(long, default_value_t = 0.01)]
    pub discount_rate: f64,
    /// Where to write the predictions: CSV, or JSON lines when the name ends in `.jsonl`. Default: stdout
    /// as CSV.
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Subcommand, Debug)]
pub enum ModelsCmd {
    /// Fit every model family on customer histories and save the result as a new version.
    Fit(FitArgs),
    /// Per-customer predictions (P(alive), churn risk, expected purchases, CLV, next order) from a version.
    Score(ScoreArgs),
    /// List model versions, newest first.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Make a version the active one (rolling back is activating an older version).
    Activate {
        version: String,
        /// Activate even when the version's data failed the sufficiency check, its fit did not converge or
        /// its family is misfit.
        #[arg(long)]
        force: bool,
    },
    /// The holdout report of a version: predicted against actual purchases, and a tracking plot as SVG.
    Report {
        version: String,
        /// Where to write the plot (default: `<version>.svg` in the current directory).
        #[arg(long)]
        out: Option<PathBuf>,
        #[arg(long)]
        json: bool,
    },
}

pub async fn run(cfg: &Config, cmd: ModelsCmd) -> anyhow::Result<()> {
    match cmd {
        ModelsCmd::Fit(args) => {
            // A spinner while the fit runs (hidden unless stderr is a terminal; `nudge::cli`).
            let family = clap::ValueEnum::to_possible_value(&args.family).map(|v| v.get_name().to_string());
            let spinner = crate::cli::spinner(format!("fitting {} models", family.unwrap_or_default()));
            let r = fit_cmd(cfg, args).await;
            spinner.finish_and_clear();
            r
        }
        ModelsCmd::Score(args) => score_cmd(cfg, args).await,
        ModelsCmd::List { json } => list_cmd(cfg, json).await,
        ModelsCmd::Activate { version, force } => activate_cmd(cfg, &version, force).await,
        ModelsCmd::Report { version, out, json } => report_cmd(cfg, &version, out, json).await,
    }
}

// ---------------------------------------------------------------------------------------------------------
// The registry body.
// ---------------------------------------------------------------------------------------------------------

/// Everything a registry version records. Stored as the version's JSON body.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionBody {
    /// Where the data came from: `transactions`, `summary` or `store`.
    pub source: String,
    pub unit: TimeUnit,
    /// The last calibration day (`YYYY-MM-DD`); absent for summary input.
    pub calibration_end: Option<String>,
    /// The last day of the data (`YYYY-MM-DD`); after `calibration_end` when there is a holdout.
    pub observation_end: Option<String>,
    /// SHA-256 of the sorted per-customer summary rows: equal digests mean equal training data.
    pub data_digest: String,
    pub customers: usize,
    pub repeat_buyers: usize,
    pub penalizer: f64,
    pub fits: Fits,
    pub holdout: Option<HoldoutComparison>,
    pub tracking: Option<Tracking>,
    pub sufficiency: Sufficiency,
    /// The family the scorer uses.
    pub selected: String,
    /// Why that family was selected: the criterion, its value and the margins over the other families.
    pub selected_because: String,
    /// `true` when the selected family is misfit (every family was): activation needs `--force`.
    #[serde(default)]
    pub selected_misfit: bool,
    /// Each fitted family's diagnostics (calibration tracking, frequency histogram, holdout log score) and
    /// misfit verdict. Empty in versions made before diagnostics existed.
    #[serde(default)]
    pub diagnostics: Vec<FamilyCheck>,
    /// The rules the misfit verdicts were reached with.
    #[serde(default)]
    pub misfit_rules: Option<MisfitRules>,
    /// What the live scorer loads.
    pub scorer: BtydModel,
}

/// Every fit report, and why a family could not be fitted.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Fits {
    pub bgnbd: Option<FitReport<BgNbd>>,
    pub mbgnbd: Option<FitReport<MbgNbd>>,
    pub pareto_nbd: Option<FitReport<ParetoNbd>>,
    pub gamma_gamma: Option<FitReport<GammaGamma>>,
    #[serde(default)]
    pub failures: BTreeMap<String, String>,
}

impl Fits {
    /// The log-likelihood, convergence and plausibility of a count family, when it was fitted.
    fn status(&self, family: &str) -> Option<FitStatus> {
        let of = |ll: f64, converged: bool, params: &[f64]| FitStatus {
            converged,
            plausible: ll.is_finite() && params.iter().all(|p| p.is_finite() && (1e-8..=1e8).contains(p)),
        };
        match family {
            "bgnbd" => self
                .bgnbd
                .as_ref()
                .map(|f| of(f.loglik, f.converged, &[f.params.r, f.params.alpha, f.params.a, f.params.b])),
            "mbgnbd" => self
                .mbgnbd
                .as_ref()
                .map(|f| of(f.loglik, f.converged, &[f.params.r, f.params.alpha, f.params.a, f.params.b])),
            "pareto_nbd" => self
                .pareto_nbd
                .as_ref()
                .map(|f| of(f.loglik, f.converged, &[f.params.r, f.params.alpha, f.params.s, f.params.beta])),
            _ => None,
        }
    }

    fn count_params(&self, family: &str) -> Option<CountModelParams> {
        match family {
            "bgnbd" => self.bgnbd.as_ref().map(|f| CountModelParams::Bgnbd(f.params)),
            "mbgnbd" => self.mbgnbd.as_ref().map(|f| CountModelParams::Mbgnbd(f.params)),
            "pareto_nbd" => self.pareto_nbd.as_ref().map(|f| CountModelParams::ParetoNbd(f.params)),
            _ => None,
        }
    }
}

/// How trustworthy one fit is.
#[derive(Debug, Clone, Copy)]
struct FitStatus {
    converged: bool,
    /// Every parameter within `[1e-8, 1e8]` and a finite log-likelihood; fits that run off to the edge of
    /// the parameter space (tiny or degenerate data) are not.
    plausible: bool,
}

impl FitStatus {
    fn trusted(&self) -> bool {
        self.converged && self.plausible
    }
}

/// The weekly cumulative repeat-transaction series, actual against each family's prediction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Tracking {
    pub step_days: i32,
    /// The earliest first purchase; period `k` ends `k * step_days` after it.
    pub start_day: i32,
    pub calibration_end_day: i32,
    pub series: BTreeMap<String, Vec<TrackingPoint>>,
}

/// The outcome of the data-sufficiency gate.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Sufficiency {
    pub ok: bool,
    pub reason: Option<String>,
}

// ---------------------------------------------------------------------------------------------------------
// Data sources.
// ---------------------------------------------------------------------------------------------------------

/// Customer histories, either as transactions (customers numbered densely) or already summarised.
struct Dataset {
    source: &'static str,
    /// Customer keys, indexed by the dense number used in `transactions` and summaries.
    names: Vec<String>,
    data: Data,
}

enum Data {
    Transactions(Vec<Transaction>),
    Summary(Vec<CustomerSummary>),
}

impl Dataset {
    fn from_history_file(path: &Path, format: HistoryFormat) -> anyhow::Result<Dataset> {
        let usd = Currency::parse("USD").expect("USD is a currency code");
        let rows = parse_history(path, format, usd)?;
        let mut names: Vec<String> = rows.iter().map(|r| r.customer.to_string()).collect();
        names.sort_unstable();
        names.dedup();
        let transactions = rows
            .iter()
            .map(|r| {
                let key = r.customer.to_string();
                let customer = names.binary_search(&key).expect("every customer is named") as u64;
                Transaction {
                    customer,
                    day: r.day,
                    amount: rust_decimal::prelude::ToPrimitive::to_f64(&r.amount).unwrap_or(0.0),
                }
            })
            .collect();
        Ok(Dataset { source: "transactions", names, data: Data::Transactions(transactions) })
    }

    fn from_summary_file(path: &Path, unit: TimeUnit) -> anyhow::Result<Dataset> {
        let (names, rows) = read_summary(path, unit)?;
        Ok(Dataset { source: "summary", names, data: Data::Summary(rows) })
    }

    /// Every stored customer with a valid order, in the store's key order, with their purchase days. Each
    /// page is decoded on a blocking thread while the next is read, so reading and decoding share the two
    /// cores of a small machine, and decoding converts the orders alone
    /// ([`CustomerState::decode_purchase_days`]).
    async fn from_store(store: &dyn Store) -> anyhow::Result<Dataset> {
        let mut names = Vec::new();
        let mut transactions = Vec::new();
        let mut page = store.scan_states(None, SCAN_PAGE).await?;
        while let Some(last) = page.last() {
            let after = (page.len() == SCAN_PAGE).then(|| last.customer.clone());
            let first = names.len() as u64;
            let decoding = tokio::task::spawn_blocking(move || purchase_days_of(page, first));
            let reading = async {
                match after {
                    Some(after) => store.scan_states(Some(after), SCAN_PAGE).await,
                    None => Ok(Vec::new()),
                }
            };
            let (decoded, read) = tokio::join!(decoding, reading);
            let (page_names, page_transactions) = decoded??;
            names.extend(page_names);
            transactions.extend(page_transactions);
            page = read?;
        }
        Ok(Dataset { source: "store", names, data: Data::Transactions(transactions) })
    }

    async fn load(
        store: &dyn Store,
        transactions: Option<&Path>,
        format: HistoryFormat,
        summary: Option<&Path>,
        unit: TimeUnit,
    ) -> anyhow::Result<Dataset> {
        let ds = match (transactions, summary) {
            (Some(path), _) => {
                let path = path.to_path_buf();
                tokio::task::spawn_blocking(move || Dataset::from_history_file(&path, format)).await??
            }
            (None, Some(path)) => {
                let path = path.to_path_buf();
                tokio::task::spawn_blocking(move || Dataset::from_summary_file(&path, unit)).await??
            }
            (None, None) => Dataset::from_store(store).await?,
        };
        if ds.names.is_empty() {
            bail!(match ds.source {
                "store" =>
                    "the store has no customers with orders yet; import history with `nudge import` first",
                _ => "the input holds no customers",
            });
        }
        Ok(ds)
    }
}

/// The customers of one page of stored states that have a valid order, numbered from `first`, and their
/// purchase days as transactions.
fn purchase_days_of(
    page: Vec<nudge_store::StoredState>,
    first: u64,
) -> anyhow::Result<(Vec<String>, Vec<Transaction>)> {
    let mut names = Vec::with_capacity(page.len());
    let mut transactions = Vec::with_capacity(page.len() * 3);
    for s in page {
        let days = CustomerState::decode_purchase_days(&s.state)
            .with_context(|| format!("the stored state of {} is unreadable", s.customer))?;
        if days.is_empty() {
            continue;
        }
        let customer = first + names.len() as u64;
        names.push(s.customer.to_string());
        transactions.extend(days.into_iter().map(|(day, amount)| Transaction { customer, day, amount }));
    }
    Ok((names, transactions))
}

/// Reads a per-customer summary CSV. Every bad row is reported with its line number.
fn read_summary(path: &Path, unit: TimeUnit) -> anyhow::Result<(Vec<String>, Vec<CustomerSummary>)> {
    let mut rdr = csv::ReaderBuilder::new()
        .trim(csv::Trim::All)
        .flexible(true)
        .from_path(path)
        .with_context(|| format!("cannot read {}", path.display()))?;
    let headers: Vec<String> = rdr
        .headers()
        .with_context(|| format!("cannot read the header of {}", path.display()))?
        .iter()
        .map(|h| h.trim_start_matches('\u{feff}').to_string())
        .collect();
    let find =
        |names: &[&str]| names.iter().find_map(|n| headers.iter().position(|h| h.eq_ignore_ascii_case(n)));
    let missing = |what: &str| {
        anyhow!(
            "{}: the header has no {what} column (expected id,frequency,recency,T[,monetary_value] or id,x,t_x,T[,zbar])",
            path.display()
        )
    };
    let c_x = find(&["frequency", "x"]).ok_or_else(|| missing("`frequency` (or `x`)"))?;
    let c_tx = find(&["recency", "t_x"]).ok_or_else(|| missing("`recency` (or `t_x`)"))?;
    let c_t = headers.iter().position(|h| h == "T").or_else(|| find(&["t"])).ok_or_else(|| missing("`T`"))?;
    let c_m = find(&["monetary_value", "zbar"]);
    let mut names = Vec::new();
    let mut rows = Vec::new();
    let mut errors: Vec<String> = Vec::new();
    for rec in rdr.records() {
        let rec = match rec {
            Ok(r) => r,
            Err(e) => {
                let line = e.position().map_or(0, |p| p.line());
                errors.push(format!("line {line}: unreadable row: {e}"));
                continue;
            }
        };
        let line = rec.position().map_or(0, |p| p.line());
        let get = |i: usize| rec.get(i).unwrap_or("");
        let num = |i: usize, what: &str| -> Result<f64, String> {
            let s = get(i);
            match s.parse::<f64>() {
                Ok(v) if v.is_finite() && v >= 0.0 => Ok(v),
                _ => Err(format!("{what} `{s}` is not a number of at least 0")),
            }
        };
        let row = (|| {
            let id = get(0);
            if id.is_empty() {
                return Err("missing customer id".to_string());
            }
            let x = get(c_x);
            let frequency: u32 = x.parse().map_err(|_| format!("frequency `{x}` is not a whole number"))?;
            let recency = num(c_tx, "recency")?;
            let t = num(c_t, "T")?;
            if recency > t {
                return Err(format!("recency {recency} is greater than T {t}"));
            }
            if frequency == 0 && recency != 0.0 {
                return Err(format!("recency is {recency} but frequency is 0 (recency must be 0 then)"));
            }
            let monetary_value = match c_m {
                Some(i) if !get(i).is_empty() => num(i, "monetary_value")?,
                _ => 0.0,
            };
            Ok((id.to_string(), frequency, recency, t, monetary_value))
        })();
        match row {
            Ok((id, frequency, recency, t, monetary_value)) => {
                rows.push(CustomerSummary {
                    customer: names.len() as u64,
                    first_day: 0,
                    frequency,
                    recency,
                    t,
                    monetary_value,
                    frequency_holdout: 0,
                    monetary_value_holdout: 0.0,
                    duration_holdout: 0.0,
                    unit,
                });
                names.push(id);
            }
            Err(m) => errors.push(format!("line {line}: {m}")),
        }
        if errors.len() >= crate::import::MAX_REPORTED_ERRORS {
            break;
        }
    }
    if !errors.is_empty() {
        bail!("{}: bad rows:\n  {}", path.display(), errors.join("\n  "));
    }
    Ok((names, rows))
}

/// The summaries a fit or a scoring run works on, with their window.
struct Window {
    summaries: Vec<CustomerSummary>,
    calibration_end: Option<i32>,
    observation_end: Option<i32>,
}

impl Window {
    fn has_holdout(&self) -> bool {
        matches!((self.calibration_end, self.observation_end), (Some(c), Some(o)) if o > c)
    }
}

/// Summarises a dataset: calibration up to `calibration_end` (default: the last day of the data), holdout
/// from there to the last day.
fn window(ds: &Dataset, unit: TimeUnit, calibration_end: Option<i32>) -> anyhow::Result<Window> {
    match &ds.data {
        Data::Summary(rows) => {
            if calibration_end.is_some() {
                bail!("--calibration-end needs transactions; a summary file has no dates");
            }
            Ok(Window { summaries: rows.clone(), calibration_end: None, observation_end: None })
        }
        Data::Transactions(tx) => {
            let last =
                tx.iter().map(|t| t.day).max().ok_or_else(|| anyhow!("the input holds no transactions"))?;
            let first = tx.iter().map(|t| t.day).min().unwrap_or(last);
            let cal = calibration_end.unwrap_or(last);
            if cal < first {
                bail!(
                    "the calibration end {} is before the first purchase in the data ({})",
                    day_to_date(cal),
                    day_to_date(first)
                );
            }
            let obs = last.max(cal);
            let summaries = summarize(tx, cal, Some(obs), unit)?;
            Ok(Window { summaries, calibration_end: Some(cal), observation_end: Some(obs) })
        }
    }
}

/// SHA-256 over the sorted per-customer summary rows (customer keys left out, so equal histories give
/// equal digests whatever the ids).
fn data_digest(summaries: &[CustomerSummary]) -> String {
    let mut rows: Vec<(u32, u64, u64, u64, u32, u64)> = summaries
        .iter()
        .map(|s| {
            (
                s.frequency,
                s.recency.to_bits(),
                s.t.to_bits(),
                s.monetary_value.to_bits(),
                s.frequency_holdout,
                s.duration_holdout.to_bits(),
            )
        })
        .collect();
    rows.sort_unstable();
    let mut h = Sha256::new();
    for r in rows {
        h.update(r.0.to_le_bytes());
        h.update(r.1.to_le_bytes());
        h.update(r.2.to_le_bytes());
        h.update(r.3.to_le_bytes());
        h.update(r.4.to_le_bytes());
        h.update(r.5.to_le_bytes());
    }
    hex::encode(h.finalize())
}

// ---------------------------------------------------------------------------------------------------------
// Fitting.
// ---------------------------------------------------------------------------------------------------------

/// Everything a fit produced, before it has a version id.
struct Fitted {
    source: &'static str,
    unit: TimeUnit,
    calibration_end: Option<i32>,
    observation_end: Option<i32>,
    digest: String,
    customers: usize,
    repeat_buyers: usize,
    penalizer: f64,
    fits: Fits,
    holdout: Option<HoldoutComparison>,
    tracking: Option<Tracking>,
    sufficiency: Sufficiency,
    selected: String,
    selected_because: String,
    selected_misfit: bool,
    diagnostics: Vec<FamilyCheck>,
    misfit_rules: MisfitRules,
}

impl Fitted {
    fn into_body(self, version: &str) -> anyhow::Result<VersionBody> {
        let count = self
            .fits
            .count_params(&self.selected)
            .ok_or_else(|| anyhow!("the selected family {} has no fit", self.selected))?;
        let spend = self.fits.gamma_gamma.as_ref().map(|f| f.params);
        let scorer = BtydModel {
            version: version.to_string(),
            unit: self.unit,
            count,
            spend,
            clv: ClvSettings { months: 12, monthly_discount_rate: 0.01, unit: self.unit },
        };
        Ok(VersionBody {
            source: self.source.to_string(),
            unit: self.unit,
            calibration_end: self.calibration_end.map(|d| day_to_date(d).to_string()),
            observation_end: self.observation_end.map(|d| day_to_date(d).to_string()),
            data_digest: self.digest,
            customers: self.customers,
            repeat_buyers: self.repeat_buyers,
            penalizer: self.penalizer,
            fits: self.fits,
            holdout: self.holdout,
            tracking: self.tracking,
            sufficiency: self.sufficiency,
            selected: self.selected,
            selected_because: self.selected_because,
            selected_misfit: self.selected_misfit,
            diagnostics: self.diagnostics,
            misfit_rules: Some(self.misfit_rules),
            scorer,
        })
    }
}

/// Fits every family on a dataset. CPU-bound: run it off the async runtime.
fn fit_dataset(
    ds: &Dataset,
    unit: TimeUnit,
    calibration_end: Option<i32>,
    penalizer: f64,
    families: &[FamilyArg],
    rules: &MisfitRules,
) -> anyhow::Result<Fitted> {
    if !(penalizer.is_finite() && penalizer >= 0.0) {
        bail!("--penalizer must be a number of at least 0");
    }
    // Phase timings (`RUST_LOG=nudge::models_cli=debug`).
    let phase = std::time::Instant::now();
    let w = window(ds, unit, calibration_end)?;
    tracing::debug!(
        elapsed_s = phase.elapsed().as_secs_f64(),
        customers = w.summaries.len(),
        "models fit: summary"
    );
    let phase = std::time::Instant::now();
    if w.summaries.is_empty() {
        bail!("no customer made a first purchase on or before the calibration end");
    }
    let opts = FitOptions { penalizer_coef: penalizer, ..FitOptions::default() };
    let data: Vec<Rfm> = w.summaries.iter().map(Rfm::from).collect();
    let spends: Vec<Spend> = w
        .summaries
        .iter()
        .filter(|s| s.frequency > 0 && s.monetary_value > 0.0)
        .map(|s| Spend { x: s.frequency, mean: s.monetary_value })
        .collect();

    // The four fits are independent; run them side by side.
    let wanted = |f: FamilyArg| families.contains(&f);
    let (data, opts) = (&data, &opts);
    let (bg, mbg, pareto, gg) = std::thread::scope(|scope| {
        let bg =
            scope.spawn(move || if wanted(FamilyArg::Bgnbd) { BgNbd::fit(data, opts) } else { skipped() });
        let mbg =
            scope.spawn(move || if wanted(FamilyArg::Mbgnbd) { MbgNbd::fit(data, opts) } else { skipped() });
        let pareto = scope
            .spawn(move || if wanted(FamilyArg::ParetoNbd) { ParetoNbd::fit(data, opts) } else { skipped() });
        let gg = if spends.is_empty() {
            Err(nudge_models::Error::NoData("no repeat buyers with a positive spend".into()))
        } else {
            GammaGamma::fit(&spends, opts)
        };
        (join(bg), join(mbg), join(pareto), gg)
    });
    tracing::debug!(elapsed_s = phase.elapsed().as_secs_f64(), "models fit: fits (in parallel)");
    let mut failures = BTreeMap::new();
    let fits = Fits {
        bgnbd: keep(&mut failures, "bgnbd", bg),
        mbgnbd: keep(&mut failures, "mbgnbd", mbg),
        pareto_nbd: keep(&mut failures, "pareto_nbd", pareto),
        gamma_gamma: keep(&mut failures, "gamma_gamma", gg),
        failures,
    };
    if FAMILIES.iter().all(|f| fits.status(f).is_none()) {
        bail!(
            "no transaction model could be fitted: {}",
            fits.failures.iter().map(|(k, v)| format!("{k}: {v}")).collect::<Vec<_>>().join("; ")
        );
    }

    let tx = match &ds.data {
        Data::Transactions(tx) => Some(tx.as_slice()),
        Data::Summary(_) => None,
    };
    let phase = std::time::Instant::now();
    let d = diagnose(&fits, &w, tx, rules);
    tracing::debug!(elapsed_s = phase.elapsed().as_secs_f64(), "models fit: diagnostics");
    let phase = std::time::Instant::now();
    let (holdout, tracking, diagnostics) = (d.holdout, d.tracking, d.checks);
    let selection = select_family(&diagnostics);
    let sufficiency = match check_sufficiency(&w.summaries, &Requirements::default()) {
        Ok(()) => Sufficiency { ok: true, reason: None },
        Err(e) => Sufficiency { ok: false, reason: Some(e.reason) },
    };
    let digest = data_digest(&w.summaries);
    tracing::debug!(elapsed_s = phase.elapsed().as_secs_f64(), "models fit: selection, sufficiency, digest");
    Ok(Fitted {
        source: ds.source,
        unit,
        calibration_end: w.calibration_end,
        observation_end: w.observation_end,
        digest,
        customers: w.summaries.len(),
        repeat_buyers: w.summaries.iter().filter(|s| s.frequency > 0).count(),
        penalizer,
        fits,
        holdout,
        tracking,
        sufficiency,
        selected: selection.selected,
        selected_because: selection.because,
        selected_misfit: selection.misfit,
        diagnostics,
        misfit_rules: *rules,
    })
}

/// Waits for a fit thread; a panic in a fit is a bug and is passed on.
fn join<T>(h: std::thread::ScopedJoinHandle<'_, T>) -> T {
    match h.join() {
        Ok(v) => v,
        Err(panic) => std::panic::resume_unwind(panic),
    }
}

/// The outcome recorded for a family left out with `--families`.
fn skipped<T>() -> nudge_models::Result<T> {
    Err(nudge_models::Error::NoData("not requested (see --families)".into()))
}

/// Keeps a successful fit, or records why it failed.
fn keep<T>(failures: &mut BTreeMap<String, String>, name: &str, r: nudge_models::Result<T>) -> Option<T> {
    match r {
        Ok(f) => Some(f),
        Err(e) => {
            failures.insert(name.to_string(), e.to_string());
            None
        }
    }
}

/// What [`diagnose`] finds out about the fitted families.
struct Diagnosis {
    /// The holdout comparison, when the window has a holdout period.
    holdout: Option<HoldoutComparison>,
    /// The weekly tracking series, when the data has dates (transactions).
    tracking: Option<Tracking>,
    /// One check per fitted family, misfit verdicts included.
    checks: Vec<FamilyCheck>,
}

/// Checks every fitted family: the calibration frequency histogram always; with transactions, the weekly
/// tracking series and its deviation inside the calibration period; with a holdout, the holdout
/// predictions, log score and prediction quality. Then marks misfit families by `rules`.
fn diagnose(fits: &Fits, w: &Window, tx: Option<&[Transaction]>, rules: &MisfitRules) -> Diagnosis {
    let spend = fits.gamma_gamma.as_ref().map(|f| f.params);
    // The actual repeat purchases per week are the same for every family: counted once.
    let actual = match (tx, w.calibration_end, w.observation_end) {
        (Some(tx), Some(_), Some(obs)) => Some(ActualRepeats::count(tx, &w.summaries, obs, 7)),
        _ => None,
    };
    let ctx = FamilyContext { w, actual: actual.as_ref(), spend: spend.as_ref() };
    let mut results = Vec::new();
    if let Some(f) = &fits.bgnbd {
        let p = f.params;
        results.push(ctx.check(&p, vec![p.r, p.alpha, p.a, p.b], f.loglik, f.converged, fits));
    }
    if let Some(f) = &fits.mbgnbd {
        let p = f.params;
        results.push(ctx.check(&p, vec![p.r, p.alpha, p.a, p.b], f.loglik, f.converged, fits));
    }
    if let Some(f) = &fits.pareto_nbd {
        let p = f.params;
        results.push(ctx.check(&p, vec![p.r, p.alpha, p.s, p.beta], f.loglik, f.converged, fits));
    }
    let mut models = Vec::new();
    let mut series = BTreeMap::new();
    let mut checks = Vec::new();
    for (holdout, points, check) in results {
        models.extend(holdout);
        if let Some(points) = points {
            series.insert(check.model.clone(), points);
        }
        checks.push(check);
    }
    assess(&mut checks, rules);
    let holdout = (!models.is_empty()).then(|| {
        let best = best_by_log_score(&models).unwrap_or_default();
        HoldoutComparison { models, best }
    });
    let tracking = match (w.calibration_end, series.is_empty()) {
        (Some(cal), false) => Some(Tracking {
            step_days: 7,
            start_day: w.summaries.iter().map(|s| s.first_day).min().unwrap_or(cal),
            calibration_end_day: cal,
            series,
        }),
        _ => None,
    };
    Diagnosis { holdout, tracking, checks }
}

/// The data every family is checked against.
struct FamilyContext<'a> {
    w: &'a Window,
    actual: Option<&'a ActualRepeats>,
    spend: Option<&'a GammaGamma>,
}

impl FamilyContext<'_> {
    /// One family's holdout evaluation, tracking series and check (misfit not yet assessed).
    fn check<M: TransactionModel>(
        &self,
        model: &M,
        params: Vec<f64>,
        loglik: f64,
        converged: bool,
        fits: &Fits,
    ) -> (Option<ModelHoldout>, Option<Vec<TrackingPoint>>, FamilyCheck) {
        let summaries = &self.w.summaries;
        let holdout = self
            .w
            .has_holdout()
            .then(|| evaluate_holdout(model, params, loglik, converged, summaries, self.spend));
        let points = self.actual.map(|a| a.track(model, summaries));
        let status = fits.status(M::NAME);
        let check = FamilyCheck {
            model: M::NAME.to_string(),
            trusted: status.is_some_and(|s| s.trusted()),
            plausible: status.is_some_and(|s| s.plausible),
            loglik,
            holdout_log_score: holdout.as_ref().and_then(|h| h.log_score),
            holdout_error: holdout
                .as_ref()
                .filter(|h| h.actual_total > 0.0)
                .map(|h| h.predicted_total / h.actual_total - 1.0),
            tracking: points.as_deref().and_then(|p| tracking_fit(p, self.w.calibration_end?)),
            frequency: Some(frequency_fit(model, summaries)),
            misfit: None,
        };
        (holdout, points, check)
    }
}

/// A version id not taken yet: `<prefix><UTC stamp>-<first 8 of the digest>`, with `-2`, `-3`… if taken.
async fn fresh_version_id(store: &dyn Store, prefix: &str, digest: &str) -> anyhow::Result<String> {
    let stamp = time::OffsetDateTime::now_utc()
        .format(time::macros::format_description!("[year][month][day]T[hour][minute][second]Z"))?;
    let base = format!("{prefix}{stamp}-{}", &digest[..digest.len().min(8)]);
    let existing: std::collections::HashSet<String> =
        store.model_versions().await?.into_iter().map(|v| v.id).collect();
    let mut id = base.clone();
    let mut n = 2;
    while existing.contains(&id) {
        id = format!("{base}-{n}");
        n += 1;
    }
    Ok(id)
}

/// Saves `body` as a new, inactive registry version of `family` under a fresh id and returns the id.
/// Every decision family's fit saves through this.
pub(crate) async fn save_new_version(
    store: &dyn Store,
    prefix: &str,
    digest: &str,
    family: &str,
    body: Value,
) -> anyhow::Result<String> {
    let id = fresh_version_id(store, prefix, digest).await?;
    store
        .save_model_version(ModelVersion {
            id: id.clone(),
            family: family.to_string(),
            created_at_ms: (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64,
            active: false,
            body,
        })
        .await?;
    Ok(id)
}

/// Saves a BTYD fit as a new, inactive registry version and returns its id and body (which names the id).
async fn save_version(store: &dyn Store, fitted: Fitted) -> anyhow::Result<(String, VersionBody)> {
    let id = fresh_version_id(store, "v", &fitted.digest).await?;
    let family = fitted.selected.clone();
    let body = fitted.into_body(&id)?;
    store
        .save_model_version(ModelVersion {
            id: id.clone(),
            family,
            created_at_ms: (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64,
            active: false,
            body: serde_json::to_value(&body)?,
        })
        .await?;
    Ok((id, body))
}

// ---------------------------------------------------------------------------------------------------------
// `models fit`.
// ---------------------------------------------------------------------------------------------------------

/// What `nudge models fit --family` fits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum FitFamily {
    /// The BTYD transaction families and Gamma-Gamma (churn risk, P(alive), CLV).
    Btyd,
    /// Abandonment and 7-day purchase propensity.
    Propensity,
    /// The offer bandit's learning, from the offer log.
    Bandit,
    /// Best send hour per customer and channel.
    SendTime,
    /// New customers' 12-month value.
    ColdStart,
    /// Product recommendations from order history (`[recs]`).
    Recs,
}

async fn fit_cmd(cfg: &Config, args: FitArgs) -> anyhow::Result<()> {
    match args.family {
        FitFamily::Btyd => {}
        FitFamily::Propensity => return crate::fit_propensity::fit(cfg, &args).await,
        FitFamily::Bandit => return crate::fit_bandit::fit(cfg, &args).await,
        FitFamily::SendTime => return crate::fit_send_time::fit(cfg, &args).await,
        FitFamily::ColdStart => return crate::fit_cold_start::fit(cfg, &args).await,
        FitFamily::Recs => return crate::fit_recs::fit(cfg, &args).await,
    }
    let unit: TimeUnit = args.unit.into();
    let needs_store = !args.no_save || (args.transactions.is_none() && args.summary.is_none());
    // Phase timings (`RUST_LOG=nudge::models_cli=debug`).
    let phase = std::time::Instant::now();
    let store = if needs_store { Some(crate::app::open_store(cfg).await?) } else { None };
    tracing::debug!(elapsed_s = phase.elapsed().as_secs_f64(), "models fit: open the store");
    let phase = std::time::Instant::now();
    let ds = match (&args.transactions, &args.summary, &store) {
        (Some(path), _, _) => {
            let (path, format) = (path.clone(), args.format);
            tokio::task::spawn_blocking(move || Dataset::from_history_file(&path, format)).await??
        }
        (None, Some(path), _) => {
            let path = path.clone();
            tokio::task::spawn_blocking(move || Dataset::from_summary_file(&path, unit)).await??
        }
        (None, None, Some(store)) => Dataset::from_store(&**store).await?,
        (None, None, None) => unreachable!("the store is opened when it is the data source"),
    };
    tracing::debug!(
        elapsed_s = phase.elapsed().as_secs_f64(),
        source = ds.source,
        "models fit: read the data"
    );
    if ds.names.is_empty() {
        bail!(match ds.source {
            "store" => "the store has no customers with orders yet; import history with `nudge import` first",
            _ => "the input holds no customers",
        });
    }
    eprintln!(
        "fitting BG/NBD, MBG/NBD, Pareto/NBD and Gamma-Gamma on {} customers ({})…",
        ds.names.len(),
        ds.source
    );
    let calibration_end = args.calibration_end.map(date_to_day);
    let penalizer = args.penalizer;
    let families = args.families.clone();
    let rules = misfit_rules(cfg, args.max_tracking_deviation, args.max_chi_square_ratio)?;
    let phase = std::time::Instant::now();
    let fitted = tokio::task::spawn_blocking(move || {
        fit_dataset(&ds, unit, calibration_end, penalizer, &families, &rules)
    })
    .await??;
    tracing::debug!(elapsed_s = phase.elapsed().as_secs_f64(), "models fit: fit_dataset");
    let phase = std::time::Instant::now();

    let (version, body) = match &store {
        Some(store) if !args.no_save => {
            let (id, body) = save_version(&**store, fitted).await?;
            (Some(id), body)
        }
        _ => (None, fitted.into_body("unsaved")?),
    };
    tracing::debug!(elapsed_s = phase.elapsed().as_secs_f64(), "models fit: save the version");
    let mut activated = false;
    let mut refused = None;
    if let (true, Some(id), Some(store)) = (args.activate, &version, &store) {
        match activation_blocker(&serde_json::to_value(&body)?, &body.selected) {
            Some(why) if !args.force => {
                refused = Some(format!(
                    "version {id} was saved but not activated: {why}; pass --force to activate it anyway"
                ));
            }
            _ => {
                store.activate_model_version(id).await?;
                activated = true;
            }
        }
    }
    if args.json {
        println!("{}", serde_json::to_string(&fit_json(&body, version.as_deref(), activated))?);
    } else {
        print_fit(&body, version.as_deref(), activated);
    }
    match refused {
        Some(message) => Err(anyhow!(message)),
        None => Ok(()),
    }
}

/// The misfit rules: the configuration's, with the command line's overrides checked like the config keys.
fn misfit_rules(cfg: &Config, tracking: Option<f64>, chi_ratio: Option<f64>) -> anyhow::Result<MisfitRules> {
    let mut rules = cfg.models.misfit_rules();
    if let Some(v) = tracking {
        if !(v.is_finite() && v > 0.0) {
            bail!("--max-tracking-deviation must be a share above 0 (0.10 = 10%)");
        }
        rules.max_tracking_deviation = v;
    }
    if let Some(v) = chi_ratio {
        if !(v.is_finite() && v >= 1.0) {
            bail!("--max-chi-square-ratio must be a number of at least 1");
        }
        rules.max_chi_square_ratio = v;
    }
    Ok(rules)
}

/// The `--json` object of `models fit`: the contract keys plus the registry details.
fn fit_json(body: &VersionBody, version: Option<&str>, activated: bool) -> Value {
    let f = &body.fits;
    json!({
        "bgnbd": f.bgnbd.as_ref().map(|f| json!({
            "r": f.params.r, "alpha": f.params.alpha, "a": f.params.a, "b": f.params.b,
            "loglik": f.loglik, "converged": f.converged, "iterations": f.iterations,
        })),
        "mbgnbd": f.mbgnbd.as_ref().map(|f| json!({
            "r": f.params.r, "alpha": f.params.alpha, "a": f.params.a, "b": f.params.b,
            "loglik": f.loglik, "converged": f.converged, "iterations": f.iterations,
        })),
        "pareto_nbd": f.pareto_nbd.as_ref().map(|f| json!({
            "r": f.params.r, "alpha": f.params.alpha, "s": f.params.s, "beta": f.params.beta,
            "loglik": f.loglik, "converged": f.converged, "iterations": f.iterations,
        })),
        "gamma_gamma": f.gamma_gamma.as_ref().map(|f| json!({
            "p": f.params.p, "q": f.params.q, "v": f.params.v,
            "loglik": f.loglik, "converged": f.converged, "iterations": f.iterations,
        })),
        "customers": body.customers,
        "repeat_buyers": body.repeat_buyers,
        "version": version,
        "activated": activated,
        "selected": body.selected,
        "selected_because": body.selected_because,
        "selected_misfit": body.selected_misfit,
        "diagnostics": body.diagnostics,
        "misfit_rules": body.misfit_rules,
        "unit": body.unit,
        "source": body.source,
        "calibration_end": body.calibration_end,
        "observation_end": body.observation_end,
        "data_digest": body.data_digest,
        "sufficiency": body.sufficiency,
        "failures": f.failures,
        "holdout": body.holdout.as_ref().map(|h| json!({
            "best": h.best,
            "models": h.models.iter().map(|m| json!({
                "model": m.model, "predicted_total": m.predicted_total, "actual_total": m.actual_total,
                "mae": m.mae, "rmse": m.rmse, "log_score": m.log_score,
                "auc_p_alive": m.quality.as_ref().map(|q| q.auc_p_alive),
                "lift_quality": m.quality.as_ref().map(|q| q.lift_quality),
                "spend_error": m.spend.as_ref().map(|q| q.relative_error),
            })).collect::<Vec<_>>(),
        })),
    })
}

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

/// A parameter for the table: four decimals, or scientific notation when that would hide it.
fn fp(v: f64) -> String {
    if v != 0.0 && !(1e-3..1e6).contains(&v.abs()) { format!("{v:.3e}") } else { format!("{v:.4}") }
}

fn unit_name(u: TimeUnit) -> &'static str {
    match u {
        TimeUnit::D => "days",
        TimeUnit::W => "weeks",
        TimeUnit::M => "months",
    }
}

/// The readable form of a fit.
fn print_fit(body: &VersionBody, version: Option<&str>, activated: bool) {
    let f = &body.fits;
    println!(
        "data: {} customers ({} repeat buyers) from {}, time in {}",
        body.customers,
        body.repeat_buyers,
        body.source,
        unit_name(body.unit)
    );
    if let Some(cal) = &body.calibration_end {
        match (&body.observation_end, &body.holdout) {
            (Some(obs), Some(_)) => println!("calibration up to {cal}, holdout to {obs}"),
            _ => println!("calibration up to {cal} (no holdout)"),
        }
    }
    println!();
    println!("{:<12} {:<46} {:>12} {:>6} {:>10}", "model", "parameters", "log-lik", "iters", "converged");
    let row = |name: &str, params: String, ll: f64, it: usize, conv: bool| {
        println!("{name:<12} {params:<46} {ll:>12.2} {it:>6} {:>10}", yes_no(conv));
    };
    if let Some(x) = &f.bgnbd {
        let p = x.params;
        let s = format!("r={} alpha={} a={} b={}", fp(p.r), fp(p.alpha), fp(p.a), fp(p.b));
        row("bgnbd", s, x.loglik, x.iterations, x.converged);
    }
    if let Some(x) = &f.mbgnbd {
        let p = x.params;
        let s = format!("r={} alpha={} a={} b={}", fp(p.r), fp(p.alpha), fp(p.a), fp(p.b));
        row("mbgnbd", s, x.loglik, x.iterations, x.converged);
    }
    if let Some(x) = &f.pareto_nbd {
        let p = x.params;
        let s = format!("r={} alpha={} s={} beta={}", fp(p.r), fp(p.alpha), fp(p.s), fp(p.beta));
        row("pareto_nbd", s, x.loglik, x.iterations, x.converged);
    }
    if let Some(x) = &f.gamma_gamma {
        let p = x.params;
        let s = format!("p={} q={} v={}", fp(p.p), fp(p.q), fp(p.v));
        row("gamma_gamma", s, x.loglik, x.iterations, x.converged);
    }
    for (name, why) in &f.failures {
        println!("{name:<12} not fitted: {why}");
    }
    if !body.diagnostics.is_empty() {
        println!();
        print_diagnostics(body);
    }
    if let Some(h) = &body.holdout {
        println!();
        print_holdout_totals(h);
    }
    println!();
    println!("selected: {} ({})", body.selected, body.selected_because);
    if body.selected_misfit {
        println!("WARNING: every family is misfit; this version is not activated without --force");
    }
    match (&body.sufficiency.ok, &body.sufficiency.reason) {
        (true, _) => println!("sufficiency: ok"),
        (false, reason) => {
            println!("sufficiency: NOT met: {}", reason.as_deref().unwrap_or("insufficient data"))
        }
    }
    match version {
        Some(id) if activated => println!("version: {id} (saved and active)"),
        Some(id) => println!("version: {id} (saved, inactive; `nudge models activate {id}` makes it live)"),
        None => println!("version: not saved"),
    }
}

/// One line per family: calibration tracking, histogram chi-square and the misfit verdict.
fn print_diagnostics(body: &VersionBody) {
    println!("{:<12} {:>10} {:>12} {:>12}  fit", "diagnostics", "tracking", "chi-square", "holdout LL");
    for c in &body.diagnostics {
        let tracking = c
            .tracking
            .as_ref()
            .map(|t| format!("{:+.1}%", 100.0 * t.max_relative_deviation))
            .unwrap_or("-".into());
        let chi = c.frequency.as_ref().map(|f| format!("{:.1}", f.chi_square)).unwrap_or("-".into());
        let ll = c.holdout_log_score.map(|v| format!("{v:.5}")).unwrap_or("-".into());
        let verdict = match (&c.misfit, c.trusted, c.plausible) {
            (Some(m), _, _) => format!("MISFIT: {m}"),
            (None, true, _) => "ok".to_string(),
            (None, false, true) => "not converged".to_string(),
            (None, false, false) => "degenerate".to_string(),
        };
        println!("{:<12} {tracking:>10} {chi:>12} {ll:>12}  {verdict}", c.model);
    }
}

fn print_holdout_totals(h: &HoldoutComparison) {
    println!(
        "{:<12} {:>12} {:>10} {:>9} {:>9} {:>9}",
        "holdout", "predicted", "actual", "error", "MAE", "RMSE"
    );
    for m in &h.models {
        let err =
            if m.actual_total > 0.0 { 100.0 * (m.predicted_total / m.actual_total - 1.0) } else { f64::NAN };
        println!(
            "{:<12} {:>12.1} {:>10.0} {:>8.1}% {:>9.4} {:>9.4}{}",
            m.model,
            m.predicted_total,
            m.actual_total,
            err,
            m.mae,
            m.rmse,
            if m.model == h.best { "  (best holdout log-likelihood)" } else { "" }
        );
    }
}

// ---------------------------------------------------------------------------------------------------------
// `models score`.
// ---------------------------------------------------------------------------------------------------------

/// One customer's predictions, as written by `models score`.
#[derive(Debug, Clone, Serialize)]
struct ScoreRow {
    customer_id: String,
    frequency: u32,
    recency: f64,
    #[serde(rename = "T")]
    t: f64,
    monetary_value: f64,
    p_alive: f64,
    churn_risk: f64,
    expected_purchases_90d: f64,
    expected_spend: f64,
    clv: f64,
    days_to_next_order: Option<f64>,
}

fn round6(v: f64) -> f64 {
    (v * 1e6).round() / 1e6
}

/// Predictions for every summarised customer. `aov[i]` is the average order value of `summaries[i]`,
/// used for spend when the version has no Gamma-Gamma model.
fn predict<M: TransactionModel>(
    m: &M,
    spend: Option<&GammaGamma>,
    summaries: &[CustomerSummary],
    names: &[String],
    aov: &[f64],
    settings: &ClvSettings,
) -> Vec<ScoreRow> {
    let data: Vec<Rfm> = summaries.iter().map(Rfm::from).collect();
    let unit_days = settings.unit.days();
    let horizon = f64::from(settings.months) * settings.unit.units_per_month();
    let clv: Vec<f64> = match spend {
        Some(gg) => {
            let means: Vec<f64> = summaries.iter().map(|s| s.monetary_value).collect();
            customer_lifetime_values(m, gg, &data, &means, settings)
        }
        None => data.iter().zip(aov).map(|(c, a)| a * m.conditional_expected_purchases(horizon, c)).collect(),
    };
    summaries
        .iter()
        .zip(&data)
        .zip(aov)
        .zip(clv)
        .map(|(((s, c), &a), clv)| ScoreRow {
            customer_id: names[s.customer as usize].clone(),
            frequency: s.frequency,
            recency: round6(s.recency),
            t: round6(s.t),
            monetary_value: round6(s.monetary_value),
            p_alive: round6(m.p_alive(c)),
            churn_risk: round6(churn_risk(m, c)),
            expected_purchases_90d: round6(m.conditional_expected_purchases(90.0 / unit_days, c)),
            expected_spend: round6(match spend {
                Some(gg) => gg.conditional_expected_spend(s.frequency, s.monetary_value),
                None => a,
            }),
            clv: round6(clv),
            days_to_next_order: expected_time_to_next_order(m, c, 0.05).map(|t| round6(t * unit_days)),
        })
        .collect()
}

/// Average order value per summarised customer: the mean amount per purchase day (the summary's
/// monetary value for summary input).
fn average_order_values(
    ds: &Dataset,
    summaries: &[CustomerSummary],
    observation_end: Option<i32>,
) -> Vec<f64> {
    let Data::Transactions(tx) = &ds.data else {
        return summaries.iter().map(|s| s.monetary_value).collect();
    };
    let end = observation_end.unwrap_or(i32::MAX);
    let mut rows: Vec<(u64, i32, f64)> =
        tx.iter().filter(|t| t.day <= end).map(|t| (t.customer, t.day, t.amount)).collect();
    rows.sort_unstable_by_key(|r| (r.0, r.1));
    let mut per_customer = vec![(0.0f64, 0u32); ds.names.len()];
    let mut last: Option<(u64, i32)> = None;
    for (c, d, a) in rows {
        let e = &mut per_customer[c as usize];
        e.0 += a;
        if last != Some((c, d)) {
            e.1 += 1;
        }
        last = Some((c, d));
    }
    summaries
        .iter()
        .map(|s| {
            let (sum, days) = per_customer[s.customer as usize];
            if days > 0 { sum / f64::from(days) } else { 0.0 }
        })
        .collect()
}

/// Writes predictions as CSV, or as JSON lines.
fn write_scores(rows: &[ScoreRow], sink: Box<dyn Write>, jsonl: bool) -> std::io::Result<()> {
    let mut sink = std::io::BufWriter::new(sink);
    if jsonl {
        for r in rows {
            serde_json::to_writer(&mut sink, r)?;
            sink.write_all(b"\n")?;
        }
    } else {
        let mut w = csv::Writer::from_writer(&mut sink);
        for r in rows {
            w.serialize(r).map_err(csv_to_io)?;
        }
        w.flush()?;
    }
    sink.flush()
}

/// Keeps the I/O error inside a CSV error, so a closed pipe stays recognisable.
fn csv_to_io(e: csv::Error) -> std::io::Error {
    match e.into_kind() {
        csv::ErrorKind::Io(io) => io,
        other => std::io::Error::other(format!("{other:?}")),
    }
}

async fn score_cmd(cfg: &Config, args: ScoreArgs) -> anyhow::Result<()> {
    if args.horizon_months == 0 {
        bail!("--horizon-months must be at least 1");
    }
    if !(args.discount_rate.is_finite() && args.discount_rate >= 0.0) {
        bail!("--discount-rate must be a number of at least 0 (0.01 = 1% a month)");
    }
    let store = crate::app::open_store(cfg).await?;
    let version = match &args.version {
        Some(id) => find_version(&*store, id).await?,
        None => store.active_model_version().await?.ok_or_else(|| {
            anyhow!(
                "no model version is active of the BTYD kind (the one `nudge models score` uses); activate one with \
                 `nudge models activate VERSION` or pass --version"
            )
        })?,
    };
    if version.kind() != "btyd" {
        bail!(
            "model version {} is a {} version; `nudge models score` scores with BTYD versions (`nudge models \
             report {}` shows what it measured)",
            version.id,
            version.family,
            version.id
        );
    }
    let model = scorer_of(&version)?;
    let ds = Dataset::load(
        &*store,
        args.transactions.as_deref(),
        args.format,
        args.summary.as_deref(),
        model.unit,
    )
    .await?;
    let settings = ClvSettings {
        months: args.horizon_months,
        monthly_discount_rate: args.discount_rate,
        unit: model.unit,
    };
    let spinner = crate::cli::spinner(format!("scoring {} customers", ds.names.len()));
    let rows = tokio::task::spawn_blocking(move || -> anyhow::Result<(Vec<ScoreRow>, Option<i32>)> {
        let w = window(&ds, model.unit, None)?;
        let aov = average_order_values(&ds, &w.summaries, w.observation_end);
        let spend = model.spend.as_ref();
        let rows = match &model.count {
            CountModelParams::Bgnbd(m) => predict(m, spend, &w.summaries, &ds.names, &aov, &settings),
            CountModelParams::Mbgnbd(m) => predict(m, spend, &w.summaries, &ds.names, &aov, &settings),
            CountModelParams::ParetoNbd(m) => predict(m, spend, &w.summaries, &ds.names, &aov, &settings),
        };
        Ok((rows, w.observation_end))
    })
    .await;
    spinner.finish_and_clear();
    let (rows, as_of) = rows??;
    let sink: Box<dyn Write> = match &args.out {
        Some(p) => {
            Box::new(std::fs::File::create(p).with_context(|| format!("cannot create {}", p.display()))?)
        }
        None => Box::new(std::io::stdout().lock()),
    };
    let jsonl =
        args.out.as_ref().is_some_and(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("jsonl")));
    match write_scores(&rows, sink, jsonl) {
        // A reader that stops early (`| head`) is not an error.
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => return Ok(()),
        other => other.context("writing the predictions")?,
    }
    eprintln!(
        "scored {} customers with version {} ({}){}{}",
        rows.len(),
        version.id,
        version.family,
        as_of.map(|d| format!(" as of {}", day_to_date(d))).unwrap_or_default(),
        args.out.as_ref().map(|p| format!(" into {}", p.display())).unwrap_or_default()
    );
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// `models list`, `models activate`, `models report`.
// ---------------------------------------------------------------------------------------------------------

async fn find_version(store: &dyn Store, id: &str) -> anyhow::Result<ModelVersion> {
    store
        .model_versions()
        .await?
        .into_iter()
        .find(|v| v.id == id)
        .ok_or_else(|| anyhow!("model version `{id}` not found; `nudge models list` shows the versions"))
}

/// The scorer a version carries.
fn scorer_of(v: &ModelVersion) -> anyhow::Result<BtydModel> {
    let raw = v.body.get("scorer").ok_or_else(|| anyhow!("model version {} carries no scorer", v.id))?;
    let mut model: BtydModel = serde_json::from_value(raw.clone())
        .with_context(|| format!("the scorer of model version {} is unreadable", v.id))?;
    model.version = v.id.clone();
    Ok(model)
}

/// Why a version should not score live customers without `--force`: its data failed the sufficiency
/// gate, the fit of its family did not converge, or its family is misfit.
fn activation_blocker(body: &Value, family: &str) -> Option<String> {
    if body.pointer("/sufficiency/ok").and_then(Value::as_bool) == Some(false) {
        let reason =
            body.pointer("/sufficiency/reason").and_then(Value::as_str).unwrap_or("too little history");
        return Some(format!("it was fitted on insufficient data ({reason})"));
    }
    if body.pointer(&format!("/fits/{family}/converged")).and_then(Value::as_bool) == Some(false) {
        return Some(format!("its {family} fit did not converge"));
    }
    if let Some(reason) = misfit_reason(body, family) {
        return Some(format!("its {family} fit is misfit: {reason}"));
    }
    None
}

/// The misfit verdict a version records for a family, if any.
fn misfit_reason<'a>(body: &'a Value, family: &str) -> Option<&'a str> {
    body.get("diagnostics")?
        .as_array()?
        .iter()
        .find(|c| c.get("model").and_then(Value::as_str) == Some(family))?
        .get("misfit")?
        .as_str()
}

fn created_at(ms: i64) -> String {
    time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .ok()
        .and_then(|t| {
            t.format(time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z")).ok()
        })
        .unwrap_or_else(|| ms.to_string())
}

/// The facts `models list` shows about a version, read leniently from its body.
pub(crate) fn list_entry(v: &ModelVersion) -> Value {
    let b = &v.body;
    if v.family == nudge_decide::families::PROPENSITY {
        return propensity_list_entry(v);
    }
    let converged = b.pointer(&format!("/fits/{}/converged", v.family)).and_then(Value::as_bool);
    json!({
        "id": v.id,
        "family": v.family,
        "kind": v.kind(),
        "created": created_at(v.created_at_ms),
        "created_at_ms": v.created_at_ms,
        "active": v.active,
        "customers": b.get("customers").and_then(Value::as_u64),
        "converged": converged,
        "sufficiency": b.get("sufficiency").cloned().unwrap_or(Value::Null),
        "holdout": b.get("holdout").is_some_and(|h| !h.is_null()),
        "misfit": misfit_reason(b, &v.family),
        "lift_quality": b.get("holdout").and_then(|h| h.get("models")).and_then(Value::as_array).and_then(|ms| {
            ms.iter()
                .find(|m| m.get("model").and_then(Value::as_str) == Some(v.family.as_str()))
                .and_then(|m| m.pointer("/quality/lift_quality"))
                .and_then(Value::as_f64)
        }),
        "calibration_end": b.get("calibration_end").cloned().unwrap_or(Value::Null),
        "data_digest": b.get("data_digest").cloned().unwrap_or(Value::Null),
    })
}

/// The facts `models list` shows about a propensity version: its heads converged, whether they were
/// measured on a time-based holdout, and each head's holdout AUC.
fn propensity_list_entry(v: &ModelVersion) -> Value {
    let b = &v.body;
    let heads: Vec<(&str, &Value)> = ["abandon", "purchase_7d"]
        .into_iter()
        .filter_map(|h| b.get(h).filter(|v| !v.is_null()).map(|v| (h, v)))
        .collect();
    let converged = (!heads.is_empty())
        .then(|| heads.iter().all(|(_, h)| h.get("converged").and_then(Value::as_bool) == Some(true)));
    let auc: serde_json::Map<String, Value> = heads
        .iter()
        .filter_map(|(name, h)| {
            h.pointer("/metrics/auc").filter(|a| a.is_number()).map(|a| (name.to_string(), a.clone()))
        })
        .collect();
    json!({
        "id": v.id,
        "family": v.family,
        "kind": v.kind(),
        "created": created_at(v.created_at_ms),
        "created_at_ms": v.created_at_ms,
        "active": v.active,
        "customers": b.get("customers").and_then(Value::as_u64),
        "converged": converged,
        "sufficiency": b.get("sufficiency").cloned().unwrap_or(Value::Null),
        "holdout": !auc.is_empty(),
        "holdout_auc": auc,
        "misfit": Value::Null,
        "lift_quality": Value::Null,
        "calibration_end": Value::Null,
        "data_digest": b.get("data_digest").cloned().unwrap_or(Value::Null),
    })
}

async fn list_cmd(cfg: &Config, json_out: bool) -> anyhow::Result<()> {
    let store = crate::app::open_store(cfg).await?;
    let versions = store.model_versions().await?;
    let entries: Vec<Value> = versions.iter().map(list_entry).collect();
    if json_out {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(());
    }
    if entries.is_empty() {
        println!("no model versions yet; `nudge models fit` creates one");
        return Ok(());
    }
    println!(
        "{:<32} {:<11} {:<21} {:<6} {:>9} {:>9} {:<7} {:>7} sufficiency; fit",
        "id", "family", "created", "active", "customers", "converged", "holdout", "quality"
    );
    for e in &entries {
        let text = |k: &str| e.get(k).and_then(Value::as_str).unwrap_or("").to_string();
        let suff = match e.pointer("/sufficiency/ok").and_then(Value::as_bool) {
            Some(true) => "ok".to_string(),
            Some(false) => format!(
                "NOT met: {}",
                e.pointer("/sufficiency/reason").and_then(Value::as_str).unwrap_or("insufficient data")
            ),
            None => "-".to_string(),
        };
        let mut fit = match e["misfit"].as_str() {
            Some(reason) => format!("MISFIT: {reason}"),
            None => "ok".to_string(),
        };
        if let Some(auc) = e["holdout_auc"].as_object().filter(|a| !a.is_empty()) {
            let each: Vec<String> =
                auc.iter().filter_map(|(head, a)| a.as_f64().map(|a| format!("{head} {a:.3}"))).collect();
            fit.push_str(&format!("; holdout AUC {}", each.join(", ")));
        }
        let quality =
            e["lift_quality"].as_f64().map(|q| format!("{:.0}%", 100.0 * q)).unwrap_or_else(|| "-".into());
        println!(
            "{:<32} {:<11} {:<21} {:<6} {:>9} {:>9} {:<7} {:>7} {}; fit {}",
            text("id"),
            text("family"),
            text("created"),
            if e["active"].as_bool() == Some(true) { "*" } else { "" },
            e["customers"].as_u64().map(|n| n.to_string()).unwrap_or_else(|| "-".into()),
            e["converged"].as_bool().map(yes_no).unwrap_or("-"),
            yes_no(e["holdout"].as_bool() == Some(true)),
            quality,
            suff,
            fit
        );
    }
    Ok(())
}

async fn activate_cmd(cfg: &Config, id: &str, force: bool) -> anyhow::Result<()> {
    let store = crate::app::open_store(cfg).await?;
    match activate(&*store, id, force).await? {
        Activation::AlreadyActive => {
            println!("model version {id} is already active");
            return Ok(());
        }
        Activation::Activated { family, previous: Some(p) } => {
            println!("active model version: {id} ({family}), was {p}")
        }
        Activation::Activated { family, previous: None } => println!("active model version: {id} ({family})"),
    }
    println!("a running server scores with it from its next model reload or restart");
    Ok(())
}

/// What [`activate`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Activation {
    /// The version was the active one of its kind already; nothing changed.
    AlreadyActive,
    /// The version is now the active one of its kind; `previous` is the one it replaced.
    Activated { family: String, previous: Option<String> },
}

/// Makes a version the active one of its kind (rolling back is activating an older version), as
/// `nudge models activate` and the console do: the version must load, and one that failed its checks
/// (insufficient data, no convergence, misfit) is refused unless `force`.
pub async fn activate(store: &dyn Store, id: &str, force: bool) -> anyhow::Result<Activation> {
    let v = find_version(store, id).await?;
    if v.family == nudge_decide::families::BANDIT {
        bail!(
            "model version {id} is a record of what the offer bandit learned; the bandit learns online, nothing to activate"
        );
    }
    if v.family == nudge_decide::families::RECS {
        crate::recs::ServedVersion::from_version(&v)?;
    } else if nudge_store::DECISION_FAMILIES.contains(&v.family.as_str()) {
        crate::decision_models::model_of(&v)?;
    } else {
        scorer_of(&v)?;
    }
    if let Some(why) = activation_blocker(&v.body, &v.family)
        && !force
    {
        bail!("model version {id} is not activated: {why}; pass --force to activate it anyway");
    }
    // The version it replaces is the active one of its own kind: a propensity version leaves the active
    // BTYD version active, and the other way round.
    let previous = store.active_model_version_of(v.kind()).await?.map(|p| p.id);
    if previous.as_deref() == Some(id) {
        return Ok(Activation::AlreadyActive);
    }
    store.activate_model_version(id).await?;
    Ok(Activation::Activated { family: v.family, previous })
}

async fn report_cmd(cfg: &Config, id: &str, out: Option<PathBuf>, json_out: bool) -> anyhow::Result<()> {
    let store = crate::app::open_store(cfg).await?;
    let v = find_version(&*store, id).await?;
    if v.family == nudge_decide::families::PROPENSITY {
        return crate::fit_propensity::report(&v, json_out);
    }
    if v.family == nudge_decide::families::SEND_TIME
        || v.family == nudge_decide::families::COLD_START
        || v.family == nudge_decide::families::RECS
    {
        if json_out {
            println!("{}", serde_json::to_string_pretty(&v.body)?);
        } else {
            println!(
                "model version {} ({}), {}",
                v.id,
                v.family,
                if v.active { "active" } else { "inactive" }
            );
            for key in ["training_window", "features", "metrics", "sufficiency", "data_digest"] {
                if let Some(x) = v.body.get(key) {
                    println!("{key}: {}", serde_json::to_string_pretty(x)?);
                }
            }
        }
        return Ok(());
    }
    if v.family == nudge_decide::families::BANDIT {
        if json_out {
            println!("{}", serde_json::to_string_pretty(&v.body)?);
        } else {
            print!("{}", crate::fit_bandit::report_text(&v.body));
        }
        return Ok(());
    }
    let body: VersionBody = serde_json::from_value(v.body.clone()).with_context(|| {
        format!("model version {id} has no fit report (it was not made by `nudge models fit`)")
    })?;
    // The charts go to --out: a self-contained HTML page with every section when the name ends in
    // `.html`, else one SVG document (the tracking plot, the frequency histogram, the calibration plot).
    let path = out.unwrap_or_else(|| PathBuf::from(format!("{id}.svg")));
    let html =
        path.extension().is_some_and(|e| e.eq_ignore_ascii_case("html") || e.eq_ignore_ascii_case("htm"));
    let document = if html { model_report::html(id, &body) } else { model_report::svg(id, &body) };
    let plottable = html || body.tracking.is_some() || !body.diagnostics.is_empty();
    let written = if plottable {
        std::fs::write(&path, document).with_context(|| format!("cannot write {}", path.display()))?;
        Some(path.display().to_string())
    } else {
        None
    };
    if json_out {
        println!("{}", serde_json::to_string(&model_report::json(id, &body, written.as_deref()))?);
        return Ok(());
    }
    print!("{}", model_report::text(id, &body));
    if let Some(path) = written {
        println!();
        println!(
            "{}: {path}",
            if html { "report" } else { "charts (tracking, frequency histogram, calibration)" }
        );
    }
    Ok(())
}

// ---------------------------------------------------------------------------------------------------------
// Server hooks.
// ---------------------------------------------------------------------------------------------------------

/// Scoring as the pipeline does it, for a command that reads the store: the rules, the active registry
/// version, the decision families' versions and the configured custom models.
pub async fn full_scoring(store: &dyn Store, cfg: &Config) -> anyhow::Result<Scoring> {
    let scoring = Scoring::new(nudge_scoring::RulesScorer { thresholds: cfg.segments.clone() });
    load_active_scorer(store, &scoring, cfg).await?;
    crate::decision_models::load(store, &scoring).await?;
    scoring.set_custom(cfg.scoring.load(cfg.privacy.key()).map_err(|e| anyhow::anyhow!("{e}"))?);
    Ok(scoring)
}

/// Makes the active registry version the pipeline's primary scorer (rules remain the fallback). With no
/// active version, or one whose scorer cannot be read, scoring stays with the rules; the latter is logged.
pub async fn load_active_scorer(store: &dyn Store, scoring: &Scoring, cfg: &Config) -> anyhow::Result<()> {
    let Some(v) = store.active_model_version().await? else {
        scoring.set_primary(None);
        return Ok(());
    };
    match scorer_of(&v) {
        Ok(model) => {
            tracing::info!(version = %v.id, family = model.count.family(), "scoring with the active model version");
            scoring.set_primary(Some(Arc::new(BtydScorer::new(model, cfg.segments.clone()))));
        }
        Err(e) => {
            tracing::warn!(version = %v.id, error = %format!("{e:#}"), "the active model version cannot be loaded; scoring with rules");
        }
    }
    Ok(())
}

/// What the scheduled refit did with the version it saved.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RefitOutcome {
    /// The version saved.
    pub version: String,
    /// Whether it was activated.
    pub activated: bool,
    /// Why it was or was not activated.
    pub reason: String,
    /// The selected family and why.
    pub selected: String,
    pub selected_because: String,
    /// The holdout the validation used (`YYYY-MM-DD` calibration end), if any.
    pub calibration_end: Option<String>,
    /// The new version's churn lift quality on the holdout, and the active version's on the same holdout.
    pub lift_quality: Option<f64>,
    pub active_version: Option<String>,
    pub active_lift_quality: Option<f64>,
}

/// The scheduled refit: when the store's customer states pass the sufficiency gate, fits every family on
/// them (weeks) with the newest `models.refit_holdout` of history held out, and saves a version unless the
/// newest version was fitted on the same data. The version is activated only when the selection's rules
/// hold: the selected fit converged to a plausible optimum, it is not misfit, and its churn lift quality on
/// the holdout is not lower than the active version's on the same holdout by more than
/// `models.refit_max_quality_drop`. The served parameters are the validated ones (fitted up to the holdout).
/// Every saved version's outcome is audited (stage `model_refit`). Returns the outcome, so the caller can
/// reload the scorer with [`load_active_scorer`] when a version was activated.
pub async fn refit_from_store(store: &dyn Store, cfg: &Config) -> anyhow::Result<Option<RefitOutcome>> {
    let ds = Dataset::from_store(store).await?;
    if ds.names.is_empty() {
        tracing::info!("model refit skipped: no customers with orders yet");
        return Ok(None);
    }
    // The gate is checked before fitting: thin data cannot be activated anyway, and fits on it can be slow.
    let (ds, gate) = tokio::task::spawn_blocking(move || {
        let gate = window(&ds, TimeUnit::W, None)
            .map(|w| check_sufficiency(&w.summaries, &Requirements::default()).map_err(|e| e.reason));
        (ds, gate)
    })
    .await?;
    if let Err(reason) = gate? {
        tracing::info!(reason = %reason, "model refit skipped: insufficient data");
        return Ok(None);
    }
    let rules = cfg.models.misfit_rules();
    let holdout_days = (cfg.models.refit_holdout.0.as_secs() / 86_400) as i32;
    let active = store.active_model_version().await?;
    let active_model = active.as_ref().and_then(|v| scorer_of(v).ok());
    let (fitted, active_quality) = tokio::task::spawn_blocking(move || -> anyhow::Result<_> {
        let cal = refit_calibration_end(&ds, holdout_days);
        let fitted = fit_dataset(&ds, TimeUnit::W, cal, 0.0, &FamilyArg::ALL, &rules)?;
        // The active version on the same holdout, in its own unit.
        let active_quality = match (&active_model, cal) {
            (Some(m), Some(cal)) => {
                window(&ds, m.unit, Some(cal)).ok().and_then(|w| lift_quality_of(&m.count, &w))
            }
            _ => None,
        };
        Ok((fitted, active_quality))
    })
    .await??;
    let newest = store.model_versions().await?.into_iter().next();
    // Nothing new: the same data under the same rules was fitted last time (a change of the misfit rules
    // refits the same data).
    let same_rules = |b: &Value| {
        b.get("misfit_rules").and_then(|r| serde_json::from_value::<MisfitRules>(r.clone()).ok())
            == Some(rules)
    };
    if let Some(n) = newest
        && n.body.get("data_digest").and_then(Value::as_str) == Some(fitted.digest.as_str())
        && same_rules(&n.body)
    {
        tracing::info!(version = %n.id, "model refit skipped: the data has not changed since the newest version");
        return Ok(None);
    }
    let converged = fitted.fits.status(&fitted.selected).is_some_and(|s| s.trusted());
    let misfit = fitted.selected_misfit;
    let quality = fitted
        .holdout
        .as_ref()
        .and_then(|h| h.models.iter().find(|m| m.model == fitted.selected))
        .and_then(|m| m.quality.as_ref())
        .map(|q| q.lift_quality)
        .filter(|v| v.is_finite());
    let max_drop = cfg.models.refit_max_quality_drop;
    let refusal = if !converged {
        Some("the selected fit did not converge to a plausible optimum".to_string())
    } else if misfit {
        let why = fitted
            .diagnostics
            .iter()
            .find(|c| c.model == fitted.selected)
            .and_then(|c| c.misfit.clone())
            .unwrap_or_default();
        Some(format!("every family is misfit; the selected {} is misfit: {why}", fitted.selected))
    } else {
        match (quality, active_quality) {
            (Some(new), Some(old)) if new < old - max_drop => Some(format!(
                "its churn lift quality on the holdout is {:.1}% against the active version's {:.1}% on the same \
                 holdout (allowed drop {:.1} points)",
                100.0 * new,
                100.0 * old,
                100.0 * max_drop
            )),
            _ => None,
        }
    };
    let (selected, because) = (fitted.selected.clone(), fitted.selected_because.clone());
    let calibration_end = fitted.calibration_end.map(|d| day_to_date(d).to_string());
    let (id, _) = save_version(store, fitted).await?;
    let activated = refusal.is_none();
    if activated {
        store.activate_model_version(&id).await?;
    }
    let outcome = RefitOutcome {
        version: id.clone(),
        activated,
        reason: refusal.clone().unwrap_or_else(|| match (quality, active_quality) {
            (Some(new), Some(old)) => format!(
                "selected {selected}, not misfit; churn lift quality {:.1}% (active version {:.1}%)",
                100.0 * new,
                100.0 * old
            ),
            (Some(new), None) => {
                format!("selected {selected}, not misfit; churn lift quality {:.1}%", 100.0 * new)
            }
            _ => format!("selected {selected}, not misfit (no holdout to measure quality on)"),
        }),
        selected,
        selected_because: because,
        calibration_end,
        lift_quality: quality,
        active_version: active.map(|v| v.id),
        active_lift_quality: active_quality,
    };
    store
        .append_audit(vec![nudge_model::AuditRecord {
            trace_id: nudge_model::TraceId::new(),
            customer: None,
            stage: nudge_model::AuditStage::ModelRefit,
            at: time::OffsetDateTime::now_utc(),
            detail: serde_json::to_value(&outcome)?,
        }])
        .await?;
    match &refusal {
        Some(why) => tracing::warn!(version = %id, reason = %why, "model refit saved but not activated"),
        None => tracing::info!(version = %id, "model refit activated"),
    }
    Ok(Some(outcome))
}

/// The calibration end of a refit's validation: `holdout_days` before the last day of the data, when the
/// calibration period left is at least as long as the holdout; otherwise no holdout.
fn refit_calibration_end(ds: &Dataset, holdout_days: i32) -> Option<i32> {
    let Data::Transactions(tx) = &ds.data else { return None };
    let first = tx.iter().map(|t| t.day).min()?;
    let last = tx.iter().map(|t| t.day).max()?;
    let cal = last - holdout_days;
    (holdout_days > 0 && cal - first >= holdout_days).then_some(cal)
}

/// The churn lift quality of a count model on a window's holdout (`None` without a holdout or without
/// both buyers and non-buyers in it).
fn lift_quality_of(count: &CountModelParams, w: &Window) -> Option<f64> {
    if !w.has_holdout() {
        return None;
    }
    let s = &w.summaries;
    let q = match count {
        CountModelParams::Bgnbd(m) => nudge_models::churn_quality(&nudge_models::holdout_scores(m, s), s),
        CountModelParams::Mbgnbd(m) => nudge_models::churn_quality(&nudge_models::holdout_scores(m, s), s),
        CountModelParams::ParetoNbd(m) => nudge_models::churn_quality(&nudge_models::holdout_scores(m, s), s),
    };
    Some(q.lift_quality).filter(|v| v.is_finite())
}
