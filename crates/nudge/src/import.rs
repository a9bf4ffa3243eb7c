//! `nudge import`: order history from a file into the store, so the models have something to learn from
//! and live scoring sees each customer's past orders.
//!
//! Two layers live here. [`parse_history`] is pure: it reads one file in one of the supported formats and
//! returns validated [`HistoryRow`]s, or every bad row with its line number (nothing is imported when any
//! row is bad). [`import_rows`] writes rows into the store: the transactions table (idempotent on
//! customer and order id) and a backfill of customer states, one `OrderUpserted` per order. Fitting and
//! scoring do not live here; see [`crate::models_cli`].
//!
//! `nudge import` streams: [`read_history`] reads and validates the whole file, writing the rows to
//! sorted runs on disk, and only then does [`write_history`] merge them back customer by customer and
//! write chunks of whole customers (see `import_spill`). Neither holds the whole file.
//!
//! Supported formats:
//! - `csv`: a header naming `customer_id`, `date` and `amount`, optionally `order_id` and `currency`.
//!   Dates are `YYYY-MM-DD` or RFC 3339; amounts are exact decimals, zero or more.
//! - `cdnow`: the CDNOW research sample, whitespace separated `master_id sample_id YYYYMMDD ncds amount`;
//!   the customer is the master id.
//! - `shopify-orders`: Shopify's order export, columns found by header name (`Name`, `Email`,
//!   `Created at`, `Currency`, `Total`, `Cancelled at`, optionally `Id`). The export has one row per line
//!   item with the order's totals on its first row, so orders are deduplicated by `Name`; cancelled orders
//!   and orders without an email are skipped. The customer is the store's customer with that email, or
//!   the same guest key the webhook path gives a guest checkout.

use crate::config::Config;
use indicatif::{ProgressBar, ProgressStyle};
use nudge_model::{Currency, CustomerId, Event, Money, Order, Source};
use nudge_state::CustomerState;
use nudge_store::{ImportedTransaction, Store, StoredState};
use rust_decimal::Decimal;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use time::{Date, OffsetDateTime, UtcOffset};

/// The number of bad rows reported before parsing stops.
pub const MAX_REPORTED_ERRORS: usize = 20;

/// Rows written per chunk of an import: the chunk's transactions go to the store in one transaction and
/// its customers' states after them. Chunks hold whole customers, so one may hold a few rows more.
const CHUNK_ROWS: usize = 50_000;

/// Customer states loaded and written per store transaction during the backfill.
const STATE_CHUNK: usize = 10_000;

/// The layout of a history file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum HistoryFormat {
    /// A header with `customer_id,date,amount` and optionally `order_id` and `currency`.
    Csv,
    /// Shopify's order export (one row per line item).
    ShopifyOrders,
    /// The CDNOW research sample (`master_id sample_id YYYYMMDD ncds amount`).
    Cdnow,
}

impl HistoryFormat {
    /// The name used on the command line and recorded as the source of imported rows.
    pub fn name(self) -> &'static str {
        match self {
            HistoryFormat::Csv => "csv",
            HistoryFormat::ShopifyOrders => "shopify-orders",
            HistoryFormat::Cdnow => "cdnow",
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct ImportArgs {
    /// The history file.
    #[arg(long)]
    pub transactions: PathBuf,
    /// The file's layout.
    #[arg(long, value_enum, default_value_t = HistoryFormat::Csv)]
    pub format: HistoryFormat,
    /// The currency of amounts in files without a currency column (ISO 4217).
    #[arg(long, default_value = "USD", value_parser = parse_currency_arg)]
    pub currency: Currency,
}

fn parse_currency_arg(s: &str) -> Result<Currency, String> {
    Currency::parse(s).map_err(|e| e.to_string())
}

/// One validated order from a history file.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryRow {
    /// The line of the file the order starts on (1-based; 0 for rows that did not come from a file).
    pub line: u64,
    /// The customer key. For Shopify exports this is the guest key of the email until [`import_rows`]
    /// finds a stored customer with that email.
    pub customer: CustomerId,
    /// The trimmed, lower-cased email, when the file has one.
    pub email: Option<String>,
    /// The order id: the file's own, or one derived deterministically from the row.
    pub order_id: String,
    /// The human order name (Shopify `#1001`), when the file has one.
    pub order_name: Option<String>,
    /// The purchase day, counted in days since 1970-01-01 (UTC).
    pub day: i32,
    /// The exact purchase time, when the file has one; otherwise the day at 00:00 UTC is used.
    pub at: Option<OffsetDateTime>,
    /// The order total.
    pub amount: Decimal,
    pub currency: Currency,
    /// Where the row came from (`csv`, `cdnow`, `shopify-orders`, …), recorded with the transaction.
    pub source: &'static str,
}

impl HistoryRow {
    /// The moment the order is recorded at in customer state.
    pub fn timestamp(&self) -> OffsetDateTime {
        self.at.unwrap_or_else(|| day_to_date(self.day).midnight().assume_utc())
    }
}

/// One bad row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub line: u64,
    pub message: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ImportError {
    #[error("cannot read {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{}: {message}", path.display())]
    Header { path: PathBuf, message: String },
    #[error("{}", bad_rows_message(path, errors, *truncated))]
    BadRows { path: PathBuf, errors: Vec<RowError>, truncated: bool },
    #[error("cannot write the import's temporary files: {0}")]
    Spill(#[source] std::io::Error),
}

fn bad_rows_message(path: &Path, errors: &[RowError], truncated: bool) -> String {
    let mut s = format!(
        "{}: {}{} bad row{}, nothing was imported",
        path.display(),
        if truncated { "at least " } else { "" },
        errors.len(),
        if errors.len() == 1 { "" } else { "s" }
    );
    for e in errors {
        s.push_str(&format!("\n  line {}: {}", e.line, e.message));
    }
    if truncated {
        s.push_str(&format!("\n  (stopped after {MAX_REPORTED_ERRORS} errors)"));
    }
    s
}

/// A parsed file with the counts of what was left out on purpose.
#[derive(Debug, Clone, Default)]
pub struct ParsedHistory {
    pub rows: Vec<HistoryRow>,
    /// Data rows read (for Shopify exports, line-item rows included).
    pub records: u64,
    /// Shopify line-item rows that belong to an order already read.
    pub merged_line_items: u64,
    /// Cancelled orders (Shopify exports).
    pub skipped_cancelled: u64,
    /// Orders without an email, which cannot be attributed to a customer (Shopify exports).
    pub skipped_no_customer: u64,
}

/// Parses a history file into validated rows. See [`parse_history_detailed`] for the skip counts.
pub fn parse_history(
    path: &Path,
    format: HistoryFormat,
    default_currency: Currency,
) -> Result<Vec<HistoryRow>, ImportError> {
    parse_history_detailed(path, format, default_currency).map(|p| p.rows)
}

/// Parses a history file into validated rows, counting what was skipped on purpose. Fails with every
/// bad row (up to [`MAX_REPORTED_ERRORS`]) and its line number when any row is bad.
pub fn parse_history_detailed(
    path: &Path,
    format: HistoryFormat,
    default_currency: Currency,
) -> Result<ParsedHistory, ImportError> {
    let mut rows = Vec::new();
    let mut parsed = scan_history(path, format, default_currency, &mut |row| {
        rows.push(row);
        Ok(())
    })?;
    derive_order_ids(&mut rows);
    parsed.rows = rows;
    Ok(parsed)
}

/// Where a parser passes each good row; an error (writing the row somewhere) stops the parse.
type OnRow<'a> = &'a mut dyn FnMut(HistoryRow) -> Result<(), ImportError>;

/// Reads a history file and passes each validated row to `on_row` in file order, with an empty order id
/// where the file has none (see [`derive_order_ids`]). Returns the counts (without rows), or fails with
/// every bad row (up to [`MAX_REPORTED_ERRORS`]) and its line number when any row is bad: only then does
/// a caller know whether the rows it was given may be written.
fn scan_history(
    path: &Path,
    format: HistoryFormat,
    default_currency: Currency,
    on_row: OnRow<'_>,
) -> Result<ParsedHistory, ImportError> {
    let io = |source| ImportError::Io { path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut errors = Errors::default();
    let parsed = match format {
        HistoryFormat::Csv => parse_csv(file, path, default_currency, &mut errors, on_row)?,
        HistoryFormat::Cdnow => parse_cdnow(file, path, default_currency, &mut errors, on_row)?,
        HistoryFormat::ShopifyOrders => parse_shopify(file, path, default_currency, &mut errors, on_row)?,
    };
    if errors.list.is_empty() {
        Ok(parsed)
    } else {
        Err(ImportError::BadRows {
            path: path.to_path_buf(),
            errors: errors.list,
            truncated: errors.truncated,
        })
    }
}

/// Bad rows collected while parsing.
#[derive(Default)]
struct Errors {
    list: Vec<RowError>,
    truncated: bool,
}

impl Errors {
    /// Passes a good row on or records a bad one; returns `false` when parsing should stop.
    fn keep(
        &mut self,
        line: u64,
        row: Result<HistoryRow, String>,
        on_row: OnRow<'_>,
    ) -> Result<bool, ImportError> {
        match row {
            Ok(r) => {
                on_row(r)?;
                Ok(true)
            }
            Err(m) => Ok(self.push(line, m)),
        }
    }

    /// Records a bad row; returns `false` when parsing should stop.
    fn push(&mut self, line: u64, message: String) -> bool {
        if self.list.len() >= MAX_REPORTED_ERRORS {
            self.truncated = true;
            return false;
        }
        self.list.push(RowError { line, message });
        true
    }
}

/// Gives the rows without an order id their derived one (see [`OrderIds`]). `rows` are in file order and
/// hold every row of their customers: all rows of a file, or one customer's.
fn derive_order_ids(rows: &mut [HistoryRow]) {
    let mut ids = OrderIds::default();
    for r in rows.iter_mut().filter(|r| r.order_id.is_empty()) {
        r.order_id = ids.derive(&r.customer, r.day, r.amount);
    }
}

/// Derives order ids for files that have none: the same row content at the same occurrence gets the
/// same id, so importing a file twice adds nothing while two identical orders in one file stay two.
#[derive(Default)]
struct OrderIds {
    seen: HashMap<(String, i32, Decimal), u32>,
}

impl OrderIds {
    fn derive(&mut self, customer: &CustomerId, day: i32, amount: Decimal) -> String {
        let key = (customer.to_string(), day, amount.normalize());
        let n = self.seen.entry(key.clone()).or_insert(0);
        let occurrence = *n;
        *n += 1;
        let digest = Sha256::digest(format!("{}|{}|{}|{}", key.0, key.1, key.2, occurrence).as_bytes());
        format!("h-{}", &hex::encode(digest)[..20])
    }
}

/// Column positions found by header name (case and surrounding spaces ignored).
struct Columns(Vec<String>);

impl Columns {
    fn new(headers: &csv::StringRecord) -> Self {
        Columns(
            headers.iter().map(|h| h.trim().trim_start_matches('\u{feff}').to_ascii_lowercase()).collect(),
        )
    }

    fn find(&self, names: &[&str]) -> Option<usize> {
        names.iter().find_map(|n| self.0.iter().position(|h| h == n))
    }
}

fn csv_reader(file: std::fs::File) -> csv::Reader<std::io::BufReader<std::fs::File>> {
    csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(std::io::BufReader::with_capacity(1 << 20, file))
}

fn field(rec: &csv::StringRecord, i: Option<usize>) -> &str {
    i.and_then(|i| rec.get(i)).unwrap_or("")
}

fn parse_csv(
    file: std::fs::File,
    path: &Path,
    currency: Currency,
    errors: &mut Errors,
    on_row: OnRow<'_>,
) -> Result<ParsedHistory, ImportError> {
    let header_error = |message: String| ImportError::Header { path: path.to_path_buf(), message };
    let mut rdr = csv_reader(file);
    let cols = Columns::new(
        &rdr.headers().map_err(|e| header_error(format!("cannot read the header: {e}")))?.clone(),
    );
    let need = |name: &str| {
        cols.find(&[name]).ok_or_else(|| {
            header_error(format!(
                "the header has no `{name}` column (expected customer_id,date,amount and optionally order_id, currency)"
            ))
        })
    };
    let (c_customer, c_date, c_amount) = (need("customer_id")?, need("date")?, need("amount")?);
    let c_order = cols.find(&["order_id"]);
    let c_currency = cols.find(&["currency"]);
    let mut out = ParsedHistory::default();
    let mut rec = csv::StringRecord::new();
    loop {
        let line = rdr.position().line();
        match rdr.read_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(line, |p| p.line());
                if !errors.push(line, format!("unreadable row: {e}")) {
                    break;
                }
                continue;
            }
        }
        out.records += 1;
        let line = rec.position().map_or(line, |p| p.line());
        let row = (|| {
            let customer = customer_key(field(&rec, Some(c_customer)))?;
            let (day, at) = parse_date(field(&rec, Some(c_date)))?;
            let amount = parse_amount(field(&rec, Some(c_amount)))?;
            let currency = match field(&rec, c_currency) {
                "" => currency,
                c => Currency::parse(c).map_err(|e| e.to_string())?,
            };
            let order_id = match field(&rec, c_order) {
                "" => String::new(),
                o => o.to_string(),
            };
            Ok::<_, String>(HistoryRow {
                line,
                customer,
                email: None,
                order_id,
                order_name: None,
                day,
                at,
                amount,
                currency,
                source: HistoryFormat::Csv.name(),
            })
        })();
        if !errors.keep(line, row, on_row)? {
            break;
        }
    }
    Ok(out)
}

fn parse_cdnow(
    file: std::fs::File,
    path: &Path,
    currency: Currency,
    errors: &mut Errors,
    on_row: OnRow<'_>,
) -> Result<ParsedHistory, ImportError> {
    use std::io::BufRead;
    let mut out = ParsedHistory::default();
    let reader = std::io::BufReader::with_capacity(1 << 20, file);
    for (i, line) in reader.lines().enumerate() {
        let line = line.map_err(|source| ImportError::Io { path: path.to_path_buf(), source })?;
        let number = i as u64 + 1;
        if line.trim().is_empty() {
            continue;
        }
        out.records += 1;
        let row = (|| {
            let f: Vec<&str> = line.split_whitespace().collect();
            if f.len() != 5 {
                return Err(format!(
                    "expected 5 fields (master_id sample_id YYYYMMDD ncds amount), found {}",
                    f.len()
                ));
            }
            let master: u64 = f[0].parse().map_err(|_| format!("master_id `{}` is not a number", f[0]))?;
            let customer = CustomerId::new(Source::Import, master.to_string()).map_err(|e| e.to_string())?;
            let day = parse_yyyymmdd(f[2])?;
            f[3].parse::<u32>().map_err(|_| format!("ncds `{}` is not a count", f[3]))?;
            let amount = parse_amount(f[4])?;
            let order_id = String::new();
            Ok(HistoryRow {
                line: number,
                customer,
                email: None,
                order_id,
                order_name: None,
                day,
                at: None,
                amount,
                currency,
                source: HistoryFormat::Cdnow.name(),
            })
        })();
        if !errors.keep(number, row, on_row)? {
            break;
        }
    }
    Ok(out)
}

fn parse_shopify(
    file: std::fs::File,
    path: &Path,
    currency: Currency,
    errors: &mut Errors,
    on_row: OnRow<'_>,
) -> Result<ParsedHistory, ImportError> {
    let header_error = |message: String| ImportError::Header { path: path.to_path_buf(), message };
    let mut rdr = csv_reader(file);
    let cols = Columns::new(
        &rdr.headers().map_err(|e| header_error(format!("cannot read the header: {e}")))?.clone(),
    );
    let need = |name: &str| {
        cols.find(&[&name.to_ascii_lowercase()]).ok_or_else(|| {
            header_error(format!("the header has no `{name}` column; is this Shopify's order export?"))
        })
    };
    let (c_name, c_email, c_created, c_total) =
        (need("Name")?, need("Email")?, need("Created at")?, need("Total")?);
    let c_currency = cols.find(&["currency"]);
    let c_cancelled = cols.find(&["cancelled at"]);
    let c_id = cols.find(&["id"]);
    let mut out = ParsedHistory::default();
    let mut seen: HashSet<String> = HashSet::new();
    let mut rec = csv::StringRecord::new();
    loop {
        let line = rdr.position().line();
        match rdr.read_record(&mut rec) {
            Ok(false) => break,
            Ok(true) => {}
            Err(e) => {
                let line = e.position().map_or(line, |p| p.line());
                if !errors.push(line, format!("unreadable row: {e}")) {
                    break;
                }
                continue;
            }
        }
        out.records += 1;
        let line = rec.position().map_or(line, |p| p.line());
        let name = field(&rec, Some(c_name));
        if name.is_empty() {
            if !errors.push(line, "missing order Name".into()) {
                break;
            }
            continue;
        }
        if !seen.insert(name.to_string()) {
            out.merged_line_items += 1;
            continue;
        }
        if !field(&rec, c_cancelled).is_empty() {
            out.skipped_cancelled += 1;
            continue;
        }
        let email = field(&rec, Some(c_email)).trim().to_lowercase();
        if email.is_empty() {
            out.skipped_no_customer += 1;
            continue;
        }
        let row = (|| {
            let (day, at) = parse_shopify_time(field(&rec, Some(c_created)))?;
            let total = field(&rec, Some(c_total));
            if total.is_empty() {
                return Err(format!("order {name} has no Total on its first row"));
            }
            let amount = parse_amount(total)?;
            let currency = match field(&rec, c_currency) {
                "" => currency,
                c => Currency::parse(c).map_err(|e| e.to_string())?,
            };
            let order_id = match field(&rec, c_id) {
                "" => name.to_string(),
                id => id.to_string(),
            };
            Ok::<_, String>(HistoryRow {
                line,
                customer: nudge_ingest::guest_customer_id(&email),
                email: Some(email.clone()),
                order_id,
                order_name: Some(name.to_string()),
                day,
                at: Some(at),
                amount,
                currency,
                source: HistoryFormat::ShopifyOrders.name(),
            })
        })();
        if !errors.keep(line, row, on_row)? {
            break;
        }
    }
    Ok(out)
}

/// A customer key from a file: kept when it already is one (`shopify:123`), else `import:<id>`.
fn customer_key(s: &str) -> Result<CustomerId, String> {
    if s.is_empty() {
        return Err("missing customer_id".into());
    }
    if let Some(id) = s.contains(':').then(|| s.parse::<CustomerId>().ok()).flatten() {
        return Ok(id);
    }
    CustomerId::new(Source::Import, s).map_err(|e| format!("customer_id `{s}`: {e}"))
}

/// An exact decimal amount, zero or more.
fn parse_amount(s: &str) -> Result<Decimal, String> {
    if s.is_empty() {
        return Err("missing amount".into());
    }
    let d = Decimal::from_str(s).map_err(|_| format!("amount `{s}` is not a decimal number"))?;
    if d.is_sign_negative() && !d.is_zero() {
        return Err(format!("amount `{s}` is negative"));
    }
    Ok(d)
}

/// The Unix epoch as a Julian day number.
const EPOCH_JULIAN_DAY: i32 = 2_440_588;

/// Days since 1970-01-01 of a date.
pub fn date_to_day(d: Date) -> i32 {
    d.to_julian_day() - EPOCH_JULIAN_DAY
}

/// The date of a day counted since 1970-01-01.
pub fn day_to_date(day: i32) -> Date {
    Date::from_julian_day(day + EPOCH_JULIAN_DAY).unwrap_or(Date::MIN)
}

/// Parses `YYYY-MM-DD` into a date.
pub fn parse_iso_date(s: &str) -> Result<Date, String> {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    Date::parse(s, format).map_err(|e| format!("date `{s}` is not a valid YYYY-MM-DD date ({e})"))
}

/// A `YYYY-MM-DD` date or an RFC 3339 timestamp, as a day number and, for timestamps, the instant.
fn parse_date(s: &str) -> Result<(i32, Option<OffsetDateTime>), String> {
    if s.is_empty() {
        return Err("missing date".into());
    }
    if s.len() == 10 {
        if let Some(d) = plain_iso_date(s) {
            return Ok((date_to_day(d), None));
        }
        return parse_iso_date(s).map(|d| (date_to_day(d), None));
    }
    let t = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| format!("date `{s}` is neither YYYY-MM-DD nor an RFC 3339 timestamp"))?;
    Ok((utc_day(t), Some(t)))
}

/// A valid `YYYY-MM-DD` date read without a format description (the common case of a large file);
/// `None` for anything else, which [`parse_iso_date`] then reads or explains.
fn plain_iso_date(s: &str) -> Option<Date> {
    let b = s.as_bytes();
    if b.len() != 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let num = |r: std::ops::Range<usize>| {
        b[r].iter().try_fold(0u32, |n, &c| c.is_ascii_digit().then(|| n * 10 + u32::from(c - b'0')))
    };
    let month = time::Month::try_from(num(5..7)? as u8).ok()?;
    Date::from_calendar_date(num(0..4)? as i32, month, num(8..10)? as u8).ok()
}

/// Shopify's export time (`2024-01-15 10:22:33 -0500`), also accepting RFC 3339.
fn parse_shopify_time(s: &str) -> Result<(i32, OffsetDateTime), String> {
    if s.is_empty() {
        return Err("missing Created at".into());
    }
    let format = time::macros::format_description!(
        "[year]-[month]-[day] [hour]:[minute]:[second] [offset_hour sign:mandatory][offset_minute]"
    );
    let t = OffsetDateTime::parse(s, format)
        .or_else(|_| OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339))
        .map_err(|_| format!("Created at `{s}` is not a time like 2024-01-15 10:22:33 -0500"))?;
    Ok((utc_day(t), t))
}

fn utc_day(t: OffsetDateTime) -> i32 {
    date_to_day(t.to_offset(UtcOffset::UTC).date())
}

fn parse_yyyymmdd(s: &str) -> Result<i32, String> {
    let bad = || format!("date `{s}` is not a valid YYYYMMDD date");
    if s.len() != 8 || !s.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let v: u32 = s.parse().map_err(|_| bad())?;
    let month = time::Month::try_from((v / 100 % 100) as u8).map_err(|_| bad())?;
    let date = Date::from_calendar_date((v / 10_000) as i32, month, (v % 100) as u8).map_err(|_| bad())?;
    Ok(date_to_day(date))
}

/// What an import did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct ImportSummary {
    /// Orders offered to the store.
    pub rows: usize,
    /// Orders the store did not have yet.
    pub new_transactions: usize,
    /// Orders the store already had (from an earlier import or repeated in the file).
    pub duplicates: usize,
    /// Distinct customers among the orders.
    pub customers: usize,
    /// Customer states that changed in the backfill.
    pub states_updated: usize,
}

/// Whether progress bars are drawn: only when a person is watching stderr.
pub fn progress_enabled() -> bool {
    crate::cli::progress_enabled()
}

/// A progress bar on stderr, or a hidden one.
pub fn progress_bar(len: u64, message: &'static str, enabled: bool) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let style = ProgressStyle::with_template("{msg:>14} [{bar:40}] {pos}/{len} ({per_sec}, {eta} left)")
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ");
    ProgressBar::new(len).with_style(style).with_message(message)
}

/// Writes rows into the store: resolves Shopify emails to known customers, imports the transactions
/// (idempotent), and backfills the customer states so live scoring sees the history. For rows already in
/// memory (the demo, tests); a file goes through [`read_history`] and [`write_history`], which stream.
pub async fn import_rows(
    store: &dyn Store,
    rows: Vec<HistoryRow>,
    progress: bool,
) -> anyhow::Result<ImportSummary> {
    let bar = progress_bar(rows.len() as u64, "importing", progress);
    let mut keyed: Vec<(String, HistoryRow)> =
        rows.into_iter().map(|r| (r.customer.to_string(), r)).collect();
    // Stable: each customer's rows keep their order.
    keyed.sort_by(|a, b| a.0.cmp(&b.0));
    let mut writer = ChunkWriter::default();
    let mut chunk = Vec::new();
    let mut chunk_rows = 0;
    let mut keyed = keyed.into_iter().peekable();
    while let Some((key, row)) = keyed.next() {
        let mut group = vec![row];
        while let Some((_, r)) = keyed.next_if(|(k, _)| *k == key) {
            group.push(r);
        }
        chunk_rows += group.len();
        chunk.push(group);
        if chunk_rows >= CHUNK_ROWS {
            writer.write(store, std::mem::take(&mut chunk)).await?;
            bar.inc(std::mem::take(&mut chunk_rows) as u64);
        }
    }
    if !chunk.is_empty() {
        writer.write(store, chunk).await?;
    }
    bar.finish_and_clear();
    Ok(writer.summary)
}

/// Writes chunks of whole customers, adding up what it did.
#[derive(Default)]
struct ChunkWriter {
    summary: ImportSummary,
}

impl ChunkWriter {
    /// Writes one chunk: each group holds all the rows of one customer key. The transactions go in one
    /// store transaction, then the customers' states.
    async fn write(&mut self, store: &dyn Store, mut groups: Vec<Vec<HistoryRow>>) -> anyhow::Result<()> {
        // A known email means a known customer: the order belongs to them, not to a new guest key. An
        // email's rows share one guest key, so they are all in this chunk.
        let mut known: HashMap<String, Option<CustomerId>> = HashMap::new();
        for row in groups.iter_mut().flatten() {
            let Some(email) = row.email.as_deref() else { continue };
            if !known.contains_key(email) {
                let found = store.customer_by_email(email).await?;
                known.insert(email.to_string(), found);
            }
            if let Some(Some(id)) = known.get(email) {
                row.customer = id.clone();
            }
        }

        let mut batch: Vec<ImportedTransaction> = groups
            .iter()
            .flatten()
            .map(|r| ImportedTransaction {
                customer_id: r.customer.to_string(),
                order_id: r.order_id.clone(),
                day: r.day,
                amount: r.amount.to_string(),
                source: r.source.to_string(),
            })
            .collect();
        // In primary key order, so the inserts walk the table's index once.
        batch.sort_unstable_by(|a, b| (&a.customer_id, &a.order_id).cmp(&(&b.customer_id, &b.order_id)));
        let rows = batch.len();
        let customers: Vec<(&CustomerId, Vec<&HistoryRow>)> =
            groups.iter().filter_map(|g| Some((&g.first()?.customer, g.iter().collect()))).collect();
        // The two are independent (other tables): the states are folded while the store inserts.
        let (new_transactions, states_updated) = futures::try_join!(
            async { Ok::<_, anyhow::Error>(store.import_transactions(batch).await?) },
            backfill_states(store, &customers),
        )?;

        let s = &mut self.summary;
        s.rows += rows;
        s.new_transactions += new_transactions;
        s.duplicates += rows - new_transactions;
        s.customers += customers.len();
        s.states_updated += states_updated;
        Ok(())
    }
}

/// Applies each customer's orders to their stored state (one `OrderUpserted` per order) and writes the
/// states that changed; returns how many did.
async fn backfill_states(
    store: &dyn Store,
    customers: &[(&CustomerId, Vec<&HistoryRow>)],
) -> anyhow::Result<usize> {
    let mut states_updated = 0;
    for chunk in customers.chunks(STATE_CHUNK) {
        let ids: Vec<CustomerId> = chunk.iter().map(|(c, _)| (*c).clone()).collect();
        let mut stored: HashMap<CustomerId, CustomerState> = HashMap::new();
        for s in store.load_states(&ids).await? {
            let state: CustomerState = CustomerState::decode(&s.state)
                .map_err(|e| anyhow::anyhow!("the stored state of {} is unreadable: {e}", s.customer))?;
            stored.insert(s.customer, state);
        }
        let mut changed = Vec::new();
        for (customer, orders) in chunk {
            let mut state =
                stored.remove(*customer).unwrap_or_else(|| CustomerState::new((*customer).clone()));
            let mut dirty = false;
            for r in orders {
                let at = r.timestamp();
                let event = Event::OrderUpserted(Order {
                    id: r.order_id.clone(),
                    name: r.order_name.clone(),
                    customer: Some((*customer).clone()),
                    email: r.email.clone(),
                    created_at: at,
                    updated_at: at,
                    cancelled_at: None,
                    total: Money::new(r.amount, r.currency),
                    financial_status: None,
                    line_items: Vec::new(),
                    checkout_token: None,
                    cart_token: None,
                    accepts_marketing: None,
                });
                dirty |= matches!(state.apply(&event), nudge_state::Applied::Changed);
            }
            if dirty {
                changed.push(StoredState {
                    customer: (*customer).clone(),
                    email: state.email.clone(),
                    state: state.encode(),
                });
            }
        }
        states_updated += changed.len();
        if !changed.is_empty() {
            store.put_states(changed).await?;
        }
    }
    Ok(states_updated)
}

/// A history file read and validated by [`read_history`], its rows waiting on disk in sorted runs.
pub struct ReadHistory {
    /// The counts of the file (without rows).
    pub parsed: ParsedHistory,
    /// The rows to write.
    pub rows: u64,
    runs: crate::import_spill::Runs,
}

/// The first pass of a streamed import: reads and validates the whole file, writing its rows to sorted
/// runs in a temporary directory. Nothing reaches the store here, so a file with a bad row imports
/// nothing. Blocking; memory holds one run of rows at most.
pub fn read_history(
    path: &Path,
    format: HistoryFormat,
    currency: Currency,
    progress: bool,
) -> Result<ReadHistory, ImportError> {
    let bar = if progress {
        let style = ProgressStyle::with_template("{msg:>14} {pos} rows ({per_sec})")
            .unwrap_or_else(|_| ProgressStyle::default_spinner());
        ProgressBar::new_spinner().with_style(style).with_message("reading")
    } else {
        ProgressBar::hidden()
    };
    let mut runs = crate::import_spill::Runs::new().map_err(ImportError::Spill)?;
    let mut rows = 0u64;
    let parsed = scan_history(path, format, currency, &mut |row| {
        rows += 1;
        if rows.is_multiple_of(65_536) {
            bar.set_position(rows);
        }
        runs.push(row).map_err(ImportError::Spill)
    })?;
    bar.finish_and_clear();
    Ok(ReadHistory { parsed, rows, runs })
}

/// The second pass of a streamed import: merges the runs back one customer at a time (on a blocking
/// thread, while this task writes) and writes chunks of about [`CHUNK_ROWS`] rows of whole customers,
/// each chunk's transactions in one store transaction and its customers' states after them. Memory holds
/// a few chunks at most.
pub async fn write_history(
    store: &dyn Store,
    read: ReadHistory,
    progress: bool,
) -> anyhow::Result<ImportSummary> {
    let bar = progress_bar(read.rows, "importing", progress);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<Vec<Vec<HistoryRow>>>(1);
    let runs = read.runs;
    let merging = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
        let mut merge = runs.into_merge()?;
        let mut chunk = Vec::new();
        let mut chunk_rows = 0;
        while let Some(mut group) = merge.next_customer()? {
            derive_order_ids(&mut group);
            chunk_rows += group.len();
            chunk.push(group);
            if chunk_rows >= CHUNK_ROWS {
                chunk_rows = 0;
                if tx.blocking_send(std::mem::take(&mut chunk)).is_err() {
                    // The writer stopped on an error of its own.
                    return Ok(());
                }
            }
        }
        if !chunk.is_empty() {
            let _ = tx.blocking_send(chunk);
        }
        Ok(())
    });
    let mut writer = ChunkWriter::default();
    let mut written = Ok(());
    while let Some(chunk) = rx.recv().await {
        let n = chunk.iter().map(Vec::len).sum::<usize>();
        if let Err(e) = writer.write(store, chunk).await {
            written = Err(e);
            break;
        }
        bar.inc(n as u64);
    }
    drop(rx);
    let merged = merging.await?;
    written?;
    merged.map_err(ImportError::Spill)?;
    bar.finish_and_clear();
    Ok(writer.summary)
}

/// A whole streamed import: [`read_history`], then [`write_history`].
pub async fn import_file(
    store: &dyn Store,
    path: &Path,
    format: HistoryFormat,
    currency: Currency,
    progress: bool,
) -> anyhow::Result<(ParsedHistory, ImportSummary)> {
    let p = path.to_path_buf();
    let read = tokio::task::spawn_blocking(move || read_history(&p, format, currency, progress)).await??;
    let parsed = read.parsed.clone();
    Ok((parsed, write_history(store, read, progress).await?))
}

/// `nudge import`: read and validate the whole file first (nothing is written when a row is bad), then
/// import it, streamed.
pub async fn run(cfg: &Config, args: ImportArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let path = args.transactions.clone();
    let progress = progress_enabled();
    let read = tokio::task::spawn_blocking(move || read_history(&path, args.format, args.currency, progress))
        .await??;
    let store = crate::app::open_store(cfg).await?;
    let records = read.parsed.records;
    let skipped =
        (read.parsed.merged_line_items, read.parsed.skipped_cancelled, read.parsed.skipped_no_customer);
    let summary = write_history(&*store, read, progress).await?;
    println!(
        "imported {} ({}): {records} rows in {:.1}s",
        args.transactions.display(),
        args.format.name(),
        started.elapsed().as_secs_f64()
    );
    if args.format == HistoryFormat::ShopifyOrders {
        println!(
            "orders: {} (line-item rows merged: {}, cancelled skipped: {}, without email skipped: {})",
            summary.rows, skipped.0, skipped.1, skipped.2
        );
    }
    println!("new transactions: {}", summary.new_transactions);
    println!("already imported (skipped): {}", summary.duplicates);
    println!("customers: {} (states updated: {})", summary.customers, summary.states_updated);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nudge_store::prelude::*;

    #[test]
    fn dates_and_amounts() {
        assert_eq!(parse_date("1970-01-02").unwrap(), (1, None));
        let (day, at) = parse_date("1970-01-02T23:30:00-02:00").unwrap();
        assert_eq!(day, 2);
        assert!(at.is_some());
        assert!(parse_date("1970-13-02").is_err());
        assert_eq!(parse_yyyymmdd("19970101").unwrap(), date_to_day(parse_iso_date("1997-01-01").unwrap()));
        assert!(parse_yyyymmdd("19970230").is_err());
        assert_eq!(
            parse_shopify_time("2024-01-15 22:22:33 -0500").unwrap().0,
            utc_day(time::macros::datetime!(2024-01-16 03:22:33 UTC))
        );
        assert_eq!(parse_amount("12.50").unwrap().to_string(), "12.50");
        assert!(parse_amount("-1").is_err());
        assert!(parse_amount("1e3x").is_err());
    }

    #[test]
    fn customer_keys() {
        assert_eq!(customer_key("shopify:42").unwrap().to_string(), "shopify:42");
        assert_eq!(customer_key("42").unwrap().to_string(), "import:42");
        assert!(customer_key("").is_err());
    }

    #[test]
    fn derived_order_ids_are_stable_and_distinct() {
        let c: CustomerId = "import:1".parse().unwrap();
        let mut a = OrderIds::default();
        let mut b = OrderIds::default();
        let one = Decimal::from_str("1.0").unwrap();
        let first = a.derive(&c, 5, one);
        let second = a.derive(&c, 5, Decimal::from_str("1.00").unwrap());
        assert_ne!(first, second);
        assert_eq!(first, b.derive(&c, 5, one));
    }

    #[test]
    fn plain_dates_read_as_the_format_reads_them() {
        for s in
            ["1970-01-01", "2024-02-29", "1999-12-31", "0001-01-01", "2024-1-011", "2023-02-29", "2024-13-01"]
        {
            assert_eq!(plain_iso_date(s).ok_or(()), parse_iso_date(s).map_err(|_| ()), "{s}");
        }
        assert_eq!(plain_iso_date("+024-01-01"), None);
    }

    /// The streamed import writes what the whole-file parse reads (derived order ids included, rows of
    /// one customer scattered over the file), and a second import adds nothing.
    #[tokio::test]
    async fn streamed_import_matches_the_parse_and_is_idempotent() {
        let dir = tempfile::tempdir().unwrap();
        let csv = dir.path().join("history.csv");
        let mut text = String::from("customer_id,date,amount,order_id\n");
        for i in 0..300 {
            let order = if i % 4 == 0 { String::new() } else { format!("o{i}") };
            // Repeats of one customer, day and amount without an order id: distinct derived ids.
            text.push_str(&format!("{},2024-01-{:02},{}.50,{order}\n", i % 7, 1 + i % 3, i % 2));
        }
        std::fs::write(&csv, text).unwrap();
        let usd = Currency::parse("USD").unwrap();
        let parsed = parse_history(&csv, HistoryFormat::Csv, usd).unwrap();
        let store =
            nudge_store::sqlite::SqliteStore::open(&dir.path().join("data"), Default::default()).unwrap();

        let (counts, first) = import_file(&store, &csv, HistoryFormat::Csv, usd, false).await.unwrap();
        assert_eq!(counts.records, 300);
        assert_eq!(
            (first.rows, first.new_transactions, first.customers, first.states_updated),
            (300, 300, 7, 7)
        );
        let mut expected: Vec<(String, String)> =
            parsed.iter().map(|r| (r.customer.to_string(), r.order_id.clone())).collect();
        expected.sort();
        let mut stored: Vec<(String, String)> =
            store.transactions().await.unwrap().into_iter().map(|t| (t.customer_id, t.order_id)).collect();
        stored.sort();
        assert_eq!(stored, expected);
        let states = store.load_states(&[parsed[0].customer.clone()]).await.unwrap();
        let state = CustomerState::decode(&states[0].state).unwrap();
        assert_eq!(state.orders.len(), parsed.iter().filter(|r| r.customer == parsed[0].customer).count());

        let (_, again) = import_file(&store, &csv, HistoryFormat::Csv, usd, false).await.unwrap();
        assert_eq!((again.new_transactions, again.duplicates, again.states_updated), (0, 300, 0));
    }
}
