//! `nudge import`: order history from a file into the store, so the models have something to learn from
//! and live scoring sees each customer's past orders.
//!
//! Two layers live here. [`parse_history`] is pure: it reads one file in one of the supported formats and
//! returns validated [`HistoryRow`]s, or every bad row with its line number (nothing is imported when any
//! row is bad). [`import_rows`] writes rows into the store: the transactions table (idempotent on
//! customer and order id) and a backfill of customer states, one `OrderUpserted` per order. Fitting and
//! scoring do not live here; see [`crate::models_cli`].
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
use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use time::{Date, OffsetDateTime, UtcOffset};

/// The number of bad rows reported before parsing stops.
pub const MAX_REPORTED_ERRORS: usize = 20;

/// Transactions written per store transaction.
const TRANSACTION_CHUNK: usize = 10_000;

/// Customer states loaded and written per store transaction during the backfill.
const STATE_CHUNK: usize = 1_000;

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
    let io = |source| ImportError::Io { path: path.to_path_buf(), source };
    let file = std::fs::File::open(path).map_err(io)?;
    let mut errors = Errors::default();
    let parsed = match format {
        HistoryFormat::Csv => parse_csv(file, path, default_currency, &mut errors)?,
        HistoryFormat::Cdnow => parse_cdnow(file, default_currency, &mut errors).map_err(io)?,
        HistoryFormat::ShopifyOrders => parse_shopify(file, path, default_currency, &mut errors)?,
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
    /// Keeps a good row or records a bad one; returns `false` when parsing should stop.
    fn keep(&mut self, line: u64, row: Result<HistoryRow, String>, rows: &mut Vec<HistoryRow>) -> bool {
        match row {
            Ok(r) => {
                rows.push(r);
                true
            }
            Err(m) => self.push(line, m),
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
    let mut ids = OrderIds::default();
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
                "" => ids.derive(&customer, day, amount),
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
        if !errors.keep(line, row, &mut out.rows) {
            break;
        }
    }
    Ok(out)
}

fn parse_cdnow(
    file: std::fs::File,
    currency: Currency,
    errors: &mut Errors,
) -> std::io::Result<ParsedHistory> {
    use std::io::BufRead;
    let mut out = ParsedHistory::default();
    let mut ids = OrderIds::default();
    let reader = std::io::BufReader::with_capacity(1 << 20, file);
    for (i, line) in reader.lines().enumerate() {
        let line = line?;
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
            let order_id = ids.derive(&customer, day, amount);
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
        if !errors.keep(number, row, &mut out.rows) {
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
        if !errors.keep(line, row, &mut out.rows) {
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
    if let Ok(id) = s.parse::<CustomerId>() {
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
        return parse_iso_date(s).map(|d| (date_to_day(d), None));
    }
    let t = OffsetDateTime::parse(s, &time::format_description::well_known::Rfc3339)
        .map_err(|_| format!("date `{s}` is neither YYYY-MM-DD nor an RFC 3339 timestamp"))?;
    Ok((utc_day(t), Some(t)))
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
/// (idempotent), and backfills the customer states so live scoring sees the history.
pub async fn import_rows(
    store: &dyn Store,
    mut rows: Vec<HistoryRow>,
    progress: bool,
) -> anyhow::Result<ImportSummary> {
    // A known email means a known customer: the order belongs to them, not to a new guest key.
    let mut known: HashMap<String, Option<CustomerId>> = HashMap::new();
    for row in rows.iter_mut() {
        let Some(email) = row.email.as_deref() else { continue };
        if !known.contains_key(email) {
            let found = store.customer_by_email(email).await?;
            known.insert(email.to_string(), found);
        }
        if let Some(Some(id)) = known.get(email) {
            row.customer = id.clone();
        }
    }

    let bar = progress_bar(rows.len() as u64, "transactions", progress);
    let mut new_transactions = 0;
    for chunk in rows.chunks(TRANSACTION_CHUNK) {
        let batch: Vec<ImportedTransaction> = chunk
            .iter()
            .map(|r| ImportedTransaction {
                customer_id: r.customer.to_string(),
                order_id: r.order_id.clone(),
                day: r.day,
                amount: r.amount.to_string(),
                source: r.source.to_string(),
            })
            .collect();
        new_transactions += store.import_transactions(batch).await?;
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();

    let mut by_customer: BTreeMap<&CustomerId, Vec<&HistoryRow>> = BTreeMap::new();
    for r in &rows {
        by_customer.entry(&r.customer).or_default().push(r);
    }
    let customers: Vec<(&CustomerId, Vec<&HistoryRow>)> = by_customer.into_iter().collect();
    let bar = progress_bar(customers.len() as u64, "customers", progress);
    let mut states_updated = 0;
    for chunk in customers.chunks(STATE_CHUNK) {
        let ids: Vec<CustomerId> = chunk.iter().map(|(c, _)| (*c).clone()).collect();
        let mut stored: HashMap<CustomerId, CustomerState> = HashMap::new();
        for s in store.load_states(&ids).await? {
            let state: CustomerState = serde_json::from_str(&s.state_json)
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
                    state_json: serde_json::to_string(&state)?,
                });
            }
        }
        states_updated += changed.len();
        if !changed.is_empty() {
            store.put_states(changed).await?;
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();

    Ok(ImportSummary {
        rows: rows.len(),
        new_transactions,
        duplicates: rows.len() - new_transactions,
        customers: customers.len(),
        states_updated,
    })
}

/// `nudge import`: parse the whole file first (nothing is written when a row is bad), then import.
pub async fn run(cfg: &Config, args: ImportArgs) -> anyhow::Result<()> {
    let started = std::time::Instant::now();
    let path = args.transactions.clone();
    let parsed =
        tokio::task::spawn_blocking(move || parse_history_detailed(&path, args.format, args.currency))
            .await??;
    let store = crate::app::open_store(cfg)?;
    let records = parsed.records;
    let skipped = (parsed.merged_line_items, parsed.skipped_cancelled, parsed.skipped_no_customer);
    let summary = import_rows(&*store, parsed.rows, progress_enabled()).await?;
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
}
