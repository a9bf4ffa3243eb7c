//! Abandonment and 7-day purchase propensity: logistic models on features known at decision time,
//! calibrated by Platt scaling, evaluated on a time-based holdout, with a labelled rules fallback.
//!
//! - [`features`] computes the feature row of a customer as of a moment (only orders, browsing and
//!   engagement before it), for a checkout or for the customer alone. Every feature is a number derived
//!   from counts, amounts and times: no name, address or other personal data enters a model.
//! - [`abandon_examples`] and [`purchase_examples`] turn customer states into labelled examples: a
//!   checkout that became an order (an order carrying a checkout or cart token) is *converted*, a checkout
//!   still open longer than the label window is *abandoned*; a customer *purchased within 7 days* of a
//!   reference time when a valid order falls in the following 7 days.
//! - [`fit_head`] fits one model (train on the earlier part, report AUC, PR-AUC, Brier, ECE and the
//!   calibration table on the later part), [`PropensityModel`] holds both heads as a registry version
//!   body and serves them as a [`StateModel`].
//! - [`RulesPropensity`] (`rules-propensity-v1`) is the documented heuristic on the same features: what
//!   serves when no version is active, and for one customer when a fitted model lacks a feature.

use crate::logistic::{self, Logistic, LogisticConfig, Platt, Standardizer};
use crate::metrics::Metrics;
use crate::serve::StateModel;
use crate::{DecideError, names};
use nudge_model::{Currency, Money, Score, ScoreSet, Timestamp};
use nudge_state::{BrowseKind, CustomerState, day_number};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

/// The rules fallback's version label.
pub const RULES_VERSION: &str = "rules-propensity-v1";
/// The body schema this code reads and writes.
pub const BODY_SCHEMA: u32 = 1;

/// Number of features in a row.
pub const N_FEATURES: usize = 16;

/// Every feature: its name (as recorded in a version body) and what it is. All are computed as of the
/// decision moment `t` from what happened strictly before it.
pub const FEATURES: [(&str, &str); N_FEATURES] = [
    ("cart_value_log", "ln(1 + the checkout's total), in the model's currency (missing in another currency)"),
    ("cart_items_log", "ln(1 + the number of items in the checkout)"),
    ("prior_orders_log", "ln(1 + valid orders before t)"),
    ("days_since_last_order_log", "ln(1 + whole days since the last valid order before t); 0 without one"),
    (
        "avg_order_value_log",
        "ln(1 + the mean total of prior orders in the model's currency); 0 without orders, missing when \
         every prior order is in another currency",
    ),
    (
        "days_since_first_seen_log",
        "ln(1 + whole days since the customer was first seen: acquisition time, first order, first browse or \
         first engagement day before t)",
    ),
    ("views_7d_log", "ln(1 + product views in the 7 days before t)"),
    ("cart_adds_7d_log", "ln(1 + cart adds in the 7 days before t)"),
    (
        "open_rate_90d",
        "human opens per delivered message over the 90 days before t's day; 0 without deliveries",
    ),
    ("click_rate_90d", "clicks per delivered message over the 90 days before t's day; 0 without deliveries"),
    ("email_history", "1 when a message was delivered in those 90 days, else 0"),
    ("other_open_checkouts", "other checkouts still open, updated in the 30 days before t"),
    ("hour_sin", "sin(2π·h/24), h the whole hour of t in the customer's time zone (UTC when unknown)"),
    ("hour_cos", "cos(2π·h/24)"),
    ("weekend", "1 when t falls on a Saturday or Sunday in the customer's time zone"),
    ("returning", "1 when the customer has a valid order before t"),
];

const CART_VALUE: usize = 0;
const CART_ITEMS: usize = 1;
const PRIOR_ORDERS: usize = 2;
const DAYS_SINCE_LAST: usize = 3;
const AOV: usize = 4;
const VIEWS_7D: usize = 6;
const ADDS_7D: usize = 7;
const OPEN_RATE: usize = 8;
const CLICK_RATE: usize = 9;
const OTHER_CHECKOUTS: usize = 11;
const RETURNING: usize = 15;

/// The features of the abandonment model: all of them.
pub const ABANDON_FEATURES: [usize; N_FEATURES] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15];
/// The features of the 7-day purchase model: the customer's, not a checkout's (a reference time has no
/// checkout, and checkouts that converted leave the state, so their history cannot be replayed).
pub const PURCHASE_FEATURES: [usize; 10] = [2, 3, 4, 5, 6, 7, 8, 9, 10, 15];

/// The checkout a row is computed for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CheckoutView<'a> {
    /// The checkout token (or, for a converted checkout read from its order, the order id): excluded from
    /// `other_open_checkouts`.
    pub key: &'a str,
    pub total: Money,
    pub item_count: u32,
}

/// A feature row; `NaN` marks a missing value.
pub type Row = [f64; N_FEATURES];

const DAY_S: i64 = 86_400;

/// Whole days between two moments. Times enter the features at day (and hour) resolution on purpose: a
/// converted checkout's moment is its order's, minutes after the checkout itself, and a finer clock would
/// let a model tell converted from abandoned checkouts by that gap alone (a label leak).
fn days_between(earlier: Timestamp, later: Timestamp) -> f64 {
    ((later - earlier).whole_seconds().max(0) / DAY_S) as f64
}

/// The feature row of `state` as of `t` (see [`FEATURES`]), for `checkout` when given (else the
/// checkout features are missing). Amounts count only in `currency`.
pub fn features(
    state: &CustomerState,
    checkout: Option<&CheckoutView<'_>>,
    t: Timestamp,
    currency: Currency,
) -> Row {
    let mut x = [0.0; N_FEATURES];
    match checkout {
        Some(c) => {
            x[CART_VALUE] =
                if c.total.currency == currency { c.total.to_f64().max(0.0).ln_1p() } else { f64::NAN };
            x[CART_ITEMS] = f64::from(c.item_count).ln_1p();
        }
        None => {
            x[CART_VALUE] = f64::NAN;
            x[CART_ITEMS] = f64::NAN;
        }
    }
    // Orders before t.
    let (mut n, mut n_cur, mut sum_cur) = (0u32, 0u32, 0.0);
    let mut first: Option<Timestamp> =
        state.acquisition.as_ref().and_then(|a| a.first_seen_at).filter(|&f| f < t);
    let mut last: Option<Timestamp> = None;
    for o in state.orders.values() {
        if o.cancelled || o.created_at >= t {
            continue;
        }
        n += 1;
        if o.total.currency == currency {
            n_cur += 1;
            sum_cur += o.total.to_f64();
        }
        last = Some(last.map_or(o.created_at, |l| l.max(o.created_at)));
        first = Some(first.map_or(o.created_at, |f| f.min(o.created_at)));
    }
    x[PRIOR_ORDERS] = f64::from(n).ln_1p();
    x[DAYS_SINCE_LAST] = last.map_or(0.0, |l| days_between(l, t).ln_1p());
    x[AOV] = match (n, n_cur) {
        (0, _) => 0.0,
        (_, 0) => f64::NAN,
        _ => (sum_cur / f64::from(n_cur)).max(0.0).ln_1p(),
    };
    x[RETURNING] = f64::from(u8::from(n > 0));
    // Browsing in the 7 days before t.
    let week_ago = t - time::Duration::days(7);
    let (mut views, mut adds) = (0u32, 0u32);
    for b in &state.browse {
        if b.at >= t {
            continue;
        }
        first = Some(first.map_or(b.at, |f| f.min(b.at)));
        if b.at >= week_ago {
            match b.kind {
                BrowseKind::Viewed => views += 1,
                BrowseKind::Added => adds += 1,
                _ => {}
            }
        }
    }
    x[VIEWS_7D] = f64::from(views).ln_1p();
    x[ADDS_7D] = f64::from(adds).ln_1p();
    // Engagement over the 90 days before t's day.
    let today = day_number(t);
    let (mut delivered, mut opened, mut clicked) = (0u32, 0u32, 0u32);
    for (&day, c) in state.engagement.days.range(today - 90..today) {
        delivered += c.delivered.max(c.sent);
        opened += c.opened;
        clicked += c.clicked;
        if first.is_none_or(|f| day_number(f) > day) {
            first = Some(t - time::Duration::days(i64::from(today - day)));
        }
    }
    if delivered > 0 {
        x[OPEN_RATE] = (f64::from(opened) / f64::from(delivered)).min(1.0);
        x[CLICK_RATE] = (f64::from(clicked) / f64::from(delivered)).min(1.0);
        x[10] = 1.0;
    }
    x[5] = first.map_or(0.0, |f| days_between(f, t).ln_1p());
    // Other checkouts still open, touched in the 30 days before t.
    let month_ago = t - time::Duration::days(30);
    let skip = checkout.map(|c| c.key);
    x[OTHER_CHECKOUTS] = state
        .open_checkouts
        .iter()
        .filter(|(k, c)| Some(k.as_str()) != skip && c.updated_at < t && c.updated_at >= month_ago)
        .count() as f64;
    // The hour and the weekday, in the customer's time zone when known.
    let offset = state
        .utc_offset_minutes
        .and_then(|m| time::UtcOffset::from_whole_seconds(i32::from(m) * 60).ok())
        .unwrap_or(time::UtcOffset::UTC);
    let local = t.to_offset(offset);
    let hour = f64::from(local.hour());
    let angle = std::f64::consts::TAU * hour / 24.0;
    x[12] = angle.sin();
    x[13] = angle.cos();
    x[14] = f64::from(u8::from(matches!(local.weekday(), time::Weekday::Saturday | time::Weekday::Sunday)));
    x
}

// ---------------------------------------------------------------------------------------------------------
// Labelled examples.
// ---------------------------------------------------------------------------------------------------------

/// One labelled example.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    /// The customer's index in the input (for joining results back).
    pub customer: usize,
    /// What the example is about: the checkout token, the order id of a converted checkout, or the
    /// reference day of a purchase example.
    pub key: String,
    /// The decision moment: features use only what happened before it.
    pub at: Timestamp,
    pub x: Row,
    /// Abandonment: `true` = abandoned. Purchase: `true` = ordered within the horizon.
    pub label: bool,
}

/// How examples are labelled.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct LabelOptions {
    /// A checkout still open this many hours after its last update counts as abandoned; a newer one is
    /// not labelled yet.
    pub abandon_after_hours: i64,
    /// The purchase horizon in days (7 for `purchase_propensity_7d`).
    pub purchase_horizon_days: i64,
    /// Days between the reference times of purchase examples.
    pub reference_step_days: i64,
    /// How many reference times at most (the newest).
    pub max_reference_times: usize,
}

impl Default for LabelOptions {
    fn default() -> Self {
        LabelOptions {
            abandon_after_hours: 24,
            purchase_horizon_days: 7,
            reference_step_days: 7,
            max_reference_times: 26,
        }
    }
}

/// The checkout examples of one customer as of `as_of`: each order carrying a checkout or cart token is a
/// converted checkout (label `false`, at the order's time, the order's total and items as the cart);
/// each checkout still open `abandon_after_hours` after its last update is abandoned (label `true`).
/// Checkouts and orders newer than `as_of − abandon_after_hours` are not labelled yet.
pub fn abandon_examples(
    customer: usize,
    state: &CustomerState,
    as_of: Timestamp,
    opts: &LabelOptions,
    currency: Currency,
) -> Vec<Example> {
    let mut out = Vec::new();
    // Only checkouts whose label window has closed: a recent conversion is as unlabelled as a recent
    // open checkout (counting one and not the other would bias the newest examples toward conversions).
    let cutoff = as_of - time::Duration::hours(opts.abandon_after_hours);
    for (id, o) in &state.orders {
        if o.checkout_token.is_none() && o.cart_token.is_none() || o.created_at > cutoff {
            continue;
        }
        let items = o.items.iter().map(|i| i.quantity).sum();
        let view = CheckoutView { key: id, total: o.total, item_count: items };
        let x = features(state, Some(&view), o.created_at, currency);
        out.push(Example { customer, key: format!("order:{id}"), at: o.created_at, x, label: false });
    }
    for (token, c) in &state.open_checkouts {
        if c.updated_at > cutoff {
            continue;
        }
        let view = CheckoutView { key: token, total: c.total, item_count: c.item_count };
        let x = features(state, Some(&view), c.updated_at, currency);
        out.push(Example { customer, key: format!("checkout:{token}"), at: c.updated_at, x, label: true });
    }
    out
}

/// The reference times of purchase examples: every `reference_step_days` back from `as_of` minus the
/// horizon (so every label's window is complete), at most `max_reference_times`, not before `start`.
pub fn reference_times(start: Timestamp, as_of: Timestamp, opts: &LabelOptions) -> Vec<Timestamp> {
    let mut out = Vec::new();
    let mut r = as_of - time::Duration::days(opts.purchase_horizon_days);
    while r > start && out.len() < opts.max_reference_times {
        out.push(r);
        r -= time::Duration::days(opts.reference_step_days.max(1));
    }
    out.reverse();
    out
}

/// The purchase examples of one customer: at each reference time after the customer was first seen, the
/// customer's features then and whether a valid order followed within the horizon.
pub fn purchase_examples(
    customer: usize,
    state: &CustomerState,
    refs: &[Timestamp],
    opts: &LabelOptions,
    currency: Currency,
) -> Vec<Example> {
    let horizon = time::Duration::days(opts.purchase_horizon_days);
    let mut out = Vec::new();
    for &r in refs {
        let x = features(state, None, r, currency);
        // Not seen yet at r: no example (days since first seen is 0 and nothing precedes r).
        let seen = state.orders.values().any(|o| o.created_at < r)
            || state.browse.iter().any(|b| b.at < r)
            || state.acquisition.as_ref().and_then(|a| a.first_seen_at).is_some_and(|f| f < r)
            || x[10] > 0.0;
        if !seen {
            continue;
        }
        let label =
            state.orders.values().any(|o| !o.cancelled && o.created_at >= r && o.created_at < r + horizon);
        out.push(Example { customer, key: format!("ref:{}", day_number(r)), at: r, x, label });
    }
    out
}

/// The currency most amounts in the states are in (orders and open checkouts), USD when there are none.
pub fn main_currency<'a>(states: impl IntoIterator<Item = &'a CustomerState>) -> Currency {
    let mut counts: std::collections::BTreeMap<Currency, usize> = Default::default();
    for s in states {
        for o in s.orders.values() {
            *counts.entry(o.total.currency).or_default() += 1;
        }
        for c in s.open_checkouts.values() {
            *counts.entry(c.total.currency).or_default() += 1;
        }
    }
    counts
        .into_iter()
        .max_by_key(|&(_, n)| n)
        .map(|(c, _)| c)
        .unwrap_or_else(|| Currency::parse("USD").expect("USD is a currency code"))
}

/// A digest of the examples (their keys, times, labels and features), order-independent.
pub fn data_digest(examples: &[&Example]) -> String {
    let mut lines: Vec<String> = examples
        .iter()
        .map(|e| {
            let xs: Vec<String> = e.x.iter().map(|v| format!("{v:.9}")).collect();
            format!(
                "{}|{}|{}|{}|{}",
                e.customer,
                e.key,
                e.at.unix_timestamp(),
                u8::from(e.label),
                xs.join(",")
            )
        })
        .collect();
    lines.sort_unstable();
    let mut h = Sha256::new();
    for l in &lines {
        h.update(l.as_bytes());
        h.update(b"\n");
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// Sorts examples by time (then key) and returns the index where the holdout starts: the later
/// `holdout_share` of the examples, moved forward so that examples at the same moment stay together.
pub fn time_split(examples: &mut [Example], holdout_share: f64) -> usize {
    examples.sort_by(|a, b| {
        a.at.cmp(&b.at).then_with(|| a.customer.cmp(&b.customer)).then_with(|| a.key.cmp(&b.key))
    });
    let n = examples.len();
    let mut cut = ((n as f64) * (1.0 - holdout_share.clamp(0.0, 1.0))).round() as usize;
    cut = cut.min(n);
    while cut > 0 && cut < n && examples[cut].at == examples[cut - 1].at {
        cut += 1;
    }
    cut
}

// ---------------------------------------------------------------------------------------------------------
// Fitting.
// ---------------------------------------------------------------------------------------------------------

/// How a head is fitted and gated.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct TrainOptions {
    /// The logistic model's inverse regularisation strength (scikit-learn's `C`) above [`CV_MAX_ROWS`]
    /// rows; below, `C` is chosen by cross-validation from [`C_GRID`].
    pub c: f64,
    /// Time-ordered folds of the cross-validation that chooses `C` and fits Platt scaling (0 or 1: neither,
    /// `c` is used and the model is not recalibrated).
    pub calibration_folds: usize,
    /// The sufficiency gate: labelled examples at least.
    pub min_examples: usize,
    /// The sufficiency gate: examples of each class at least.
    pub min_per_class: usize,
}

impl Default for TrainOptions {
    fn default() -> Self {
        TrainOptions { c: 1.0, calibration_folds: 3, min_examples: 300, min_per_class: 30 }
    }
}

/// The time span of a set of examples.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Span {
    #[serde(with = "time::serde::rfc3339")]
    pub from: Timestamp,
    #[serde(with = "time::serde::rfc3339")]
    pub to: Timestamp,
    pub examples: u64,
    pub positives: u64,
}

impl Span {
    fn of(examples: &[Example]) -> Option<Span> {
        Some(Span {
            from: examples.iter().map(|e| e.at).min()?,
            to: examples.iter().map(|e| e.at).max()?,
            examples: examples.len() as u64,
            positives: examples.iter().filter(|e| e.label).count() as u64,
        })
    }
}

/// One fitted head as a version body records it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct HeadBody {
    /// The names of the features used, in the order of `mean`, `scale` and `coef`.
    pub features: Vec<String>,
    pub mean: Vec<f64>,
    pub scale: Vec<f64>,
    /// Coefficients on the standardised features.
    pub coef: Vec<f64>,
    pub intercept: f64,
    pub calibration: Platt,
    /// The `C` the served coefficients were fitted with.
    pub c: f64,
    pub converged: bool,
    /// The examples the served coefficients were fitted on.
    pub fitted_on: Span,
    /// The evaluation: the training part of the time split …
    pub train: Option<Span>,
    /// … and the later part the metrics are measured on.
    pub holdout: Option<Span>,
    /// Metrics of the calibrated probabilities on the holdout.
    pub metrics: Option<Metrics>,
    /// The holdout ECE before calibration (to show what calibration did).
    pub ece_uncalibrated: Option<f64>,
    /// Training examples dropped for a missing feature.
    pub dropped_missing: u64,
}

/// A fitted head ready to score.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    idx: Vec<usize>,
    model: Logistic,
    platt: Platt,
}

impl Head {
    /// The calibrated probability of a row, `None` when a feature it uses is missing (with its name).
    #[inline]
    pub fn predict(&self, x: &Row) -> Result<f64, &'static str> {
        let s = &self.model.standardizer;
        let mut eta = self.model.intercept;
        for (j, &i) in self.idx.iter().enumerate() {
            let v = x[i];
            if v.is_nan() {
                return Err(FEATURES[i].0);
            }
            eta += self.model.coef[j] * (v - s.mean[j]) / s.scale[j];
        }
        Ok(self.platt.apply(eta))
    }

    /// The uncalibrated log-odds of a row whose features are all present.
    fn log_odds(&self, x: &Row) -> f64 {
        let row: Vec<f64> = self.idx.iter().map(|&i| x[i]).collect();
        self.model.decision(&row)
    }

    /// The two features pushing this row's log-odds furthest from the average row's, as text.
    fn drivers(&self, x: &Row) -> String {
        let s = &self.model.standardizer;
        let mut c: Vec<(f64, usize)> = self
            .idx
            .iter()
            .enumerate()
            .map(|(j, &i)| (self.model.coef[j] * (x[i] - s.mean[j]) / s.scale[j], i))
            .collect();
        c.sort_by(|a, b| b.0.abs().total_cmp(&a.0.abs()));
        c.iter().take(2).map(|(v, i)| format!("{} {:+.2}", FEATURES[*i].0, v)).collect::<Vec<_>>().join(", ")
    }

    fn from_body(b: &HeadBody) -> Result<Head, DecideError> {
        let d = b.features.len();
        if d == 0 || b.mean.len() != d || b.scale.len() != d || b.coef.len() != d {
            return Err(DecideError::Body("a head's features, mean, scale and coef differ in length".into()));
        }
        let idx = b
            .features
            .iter()
            .map(|name| {
                FEATURES.iter().position(|(n, _)| n == name).ok_or_else(|| {
                    DecideError::Body(format!(
                        "unknown feature `{name}` (this build knows {})",
                        feature_names().join(", ")
                    ))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let finite = |v: &[f64]| v.iter().all(|x| x.is_finite());
        let ok = finite(&b.mean)
            && finite(&b.coef)
            && b.scale.iter().all(|s| s.is_finite() && *s > 0.0)
            && b.intercept.is_finite()
            && b.calibration.a.is_finite()
            && b.calibration.b.is_finite();
        if !ok {
            return Err(DecideError::Body(
                "a head holds a non-finite parameter or a non-positive scale".into(),
            ));
        }
        Ok(Head {
            idx,
            model: Logistic {
                standardizer: Standardizer { mean: b.mean.clone(), scale: b.scale.clone() },
                coef: b.coef.clone(),
                intercept: b.intercept,
                iterations: 0,
                converged: b.converged,
            },
            platt: b.calibration,
        })
    }
}

/// The names of every feature, in row order.
pub fn feature_names() -> Vec<&'static str> {
    FEATURES.iter().map(|(n, _)| *n).collect()
}

fn matrix(examples: &[&Example], idx: &[usize]) -> (Vec<f64>, Vec<bool>) {
    let mut x = Vec::with_capacity(examples.len() * idx.len());
    let mut y = Vec::with_capacity(examples.len());
    for e in examples {
        x.extend(idx.iter().map(|&i| e.x[i]));
        y.push(e.label);
    }
    (x, y)
}

/// The values of `C` tried by cross-validation on data sets up to [`CV_MAX_ROWS`] rows.
pub const C_GRID: [f64; 6] = [0.003, 0.01, 0.03, 0.1, 0.3, 1.0];
/// Above this many rows the penalty hardly matters: `TrainOptions::c` is used without a search.
pub const CV_MAX_ROWS: usize = 100_000;

/// Out-of-fold log-odds over contiguous time-ordered folds, each from a model fitted on the other folds
/// (warm started from `init`). Standardisation is the whole data's, which uses no labels.
fn out_of_fold(
    z: &[f64],
    d: usize,
    y: &[bool],
    k: usize,
    cfg: &LogisticConfig,
    init: (&[f64], f64),
) -> Option<Vec<f64>> {
    let n = y.len();
    let mut oof = vec![0.0; n];
    for f in 0..k {
        let (lo, hi) = (f * n / k, (f + 1) * n / k);
        let mut zt = Vec::with_capacity((n - (hi - lo)) * d);
        zt.extend_from_slice(&z[..lo * d]);
        zt.extend_from_slice(&z[hi * d..]);
        let yt: Vec<bool> = y[..lo].iter().chain(&y[hi..]).copied().collect();
        let (w, b, _, _) = logistic::fit_standardized(&zt, d, &yt, cfg, Some(init)).ok()?;
        for i in lo..hi {
            oof[i] = b + z[i * d..(i + 1) * d].iter().zip(&w).map(|(a, c)| a * c).sum::<f64>();
        }
    }
    Some(oof)
}

fn mean_log_loss(log_odds: &[f64], y: &[bool], platt: &Platt) -> f64 {
    let p: Vec<f64> = log_odds.iter().map(|&s| platt.apply(s)).collect();
    crate::metrics::log_loss(y, &p).unwrap_or(f64::INFINITY)
}

/// Fits a logistic model on `examples`. On up to [`CV_MAX_ROWS`] rows, `C` is chosen from [`C_GRID`] by
/// the out-of-fold log loss of time-ordered folds, and Platt scaling is fitted on the chosen `C`'s
/// out-of-fold scores — kept only when it lowers their log loss by more than 0.001 (a logistic model
/// with a well-chosen penalty is usually calibrated already). Returns the head, the `C` used and whether
/// the final fit converged.
fn fit_calibrated(
    examples: &[&Example],
    idx: &[usize],
    opts: &TrainOptions,
) -> Result<(Head, f64, bool), DecideError> {
    let d = idx.len();
    let (x, y) = matrix(examples, idx);
    let standardizer = Standardizer::fit(&x, d);
    let z = standardizer.apply(&x);
    let k = opts.calibration_folds;
    let n = y.len();
    let mut c = opts.c;
    let mut platt = Platt::IDENTITY;
    let cv = k >= 2 && n >= 10 * k;
    let grid: Vec<f64> = if cv && n <= CV_MAX_ROWS { C_GRID.to_vec() } else { vec![opts.c] };
    let mut best: Option<(f64, f64, Vec<f64>)> = None;
    if cv {
        let first = LogisticConfig { c: grid[0], ..LogisticConfig::default() };
        let (w0, b0, _, _) = logistic::fit_standardized(&z, d, &y, &first, None)?;
        for &ci in &grid {
            let cfg = LogisticConfig { c: ci, ..LogisticConfig::default() };
            if let Some(oof) = out_of_fold(&z, d, &y, k, &cfg, (&w0, b0)) {
                let loss = mean_log_loss(&oof, &y, &Platt::IDENTITY);
                if best.as_ref().is_none_or(|b| loss < b.1) {
                    best = Some((ci, loss, oof));
                }
            }
        }
    }
    if let Some((ci, loss, oof)) = best {
        c = ci;
        if let Ok(fitted) = Platt::fit(&oof, &y)
            && mean_log_loss(&oof, &y, &fitted) < loss - 1e-3
        {
            platt = fitted;
        }
    }
    let cfg = LogisticConfig { c, ..LogisticConfig::default() };
    let (coef, intercept, iterations, converged) = logistic::fit_standardized(&z, d, &y, &cfg, None)?;
    let model = Logistic { standardizer, coef, intercept, iterations, converged };
    Ok((Head { idx: idx.to_vec(), model, platt }, c, converged))
}

/// Fits one head: first on `train` with the metrics measured on `holdout` (when not empty), then the
/// served coefficients on `train` and `holdout` together. Examples missing a used feature are dropped.
pub fn fit_head(
    train: &[Example],
    holdout: &[Example],
    idx: &[usize],
    opts: &TrainOptions,
) -> Result<(Head, HeadBody), DecideError> {
    let complete = |e: &&Example| idx.iter().all(|&i| !e.x[i].is_nan());
    let tr: Vec<&Example> = train.iter().filter(complete).collect();
    let ho: Vec<&Example> = holdout.iter().filter(complete).collect();
    let dropped = (train.len() + holdout.len() - tr.len() - ho.len()) as u64;
    let (metrics, ece_uncalibrated) = if ho.is_empty() {
        (None, None)
    } else {
        let (head, _, _) = fit_calibrated(&tr, idx, opts)?;
        let y: Vec<bool> = ho.iter().map(|e| e.label).collect();
        let raw: Vec<f64> = ho.iter().map(|e| head.log_odds(&e.x)).collect();
        let p: Vec<f64> = raw.iter().map(|&s| head.platt.apply(s)).collect();
        let p0: Vec<f64> = raw.iter().map(|&s| logistic::sigmoid(s)).collect();
        (Some(Metrics::evaluate(&y, &p)?), Some(crate::metrics::ece(&y, &p0)?))
    };
    let all: Vec<&Example> = tr.iter().chain(&ho).copied().collect();
    let (head, c, converged) = fit_calibrated(&all, idx, opts)?;
    let owned = |v: &[&Example]| v.iter().map(|e| (*e).clone()).collect::<Vec<_>>();
    let body = HeadBody {
        features: idx.iter().map(|&i| FEATURES[i].0.to_string()).collect(),
        mean: head.model.standardizer.mean.clone(),
        scale: head.model.standardizer.scale.clone(),
        coef: head.model.coef.clone(),
        intercept: head.model.intercept,
        calibration: head.platt,
        c,
        converged,
        fitted_on: Span::of(&owned(&all)).expect("a fit has examples"),
        train: if ho.is_empty() { None } else { Span::of(&owned(&tr)) },
        holdout: Span::of(&owned(&ho)),
        metrics,
        ece_uncalibrated,
        dropped_missing: dropped,
    };
    Ok((head, body))
}

/// Whether a set of labelled examples passes the sufficiency gate, and why not.
pub fn sufficiency(examples: &[Example], opts: &TrainOptions, what: &str) -> Option<String> {
    let pos = examples.iter().filter(|e| e.label).count();
    let neg = examples.len() - pos;
    if examples.len() < opts.min_examples {
        return Some(format!(
            "{} labelled {what} examples, fewer than {}",
            examples.len(),
            opts.min_examples
        ));
    }
    if pos.min(neg) < opts.min_per_class {
        return Some(format!(
            "{pos} positive and {neg} negative {what} examples; each class needs {}",
            opts.min_per_class
        ));
    }
    None
}

// ---------------------------------------------------------------------------------------------------------
// The registry body and the served model.
// ---------------------------------------------------------------------------------------------------------

/// The sufficiency verdict a version records (read by the activation gate at `/sufficiency/ok`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SufficiencyBody {
    pub ok: bool,
    pub reason: Option<String>,
}

/// One documented feature as a body lists it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FeatureDoc {
    pub name: String,
    pub description: String,
}

/// A `propensity` registry version's body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PropensityBody {
    pub schema: u32,
    /// The currency amounts are read in (checkouts and orders in other currencies miss those features).
    pub currency: String,
    pub features: Vec<FeatureDoc>,
    pub labels: LabelOptions,
    pub train: TrainOptions,
    /// The abandonment model (`abandon_propensity`), when there were examples to fit it.
    pub abandon: Option<HeadBody>,
    /// The 7-day purchase model (`purchase_propensity_7d`).
    pub purchase_7d: Option<HeadBody>,
    /// A digest of every labelled example the version was fitted on.
    pub data_digest: String,
    pub sufficiency: SufficiencyBody,
    /// Customers the examples came from.
    pub customers: u64,
}

impl PropensityBody {
    /// The documented feature list.
    pub fn feature_docs() -> Vec<FeatureDoc> {
        FEATURES.iter().map(|(n, d)| FeatureDoc { name: n.to_string(), description: d.to_string() }).collect()
    }
}

/// A fitted propensity version: both heads, served as a [`StateModel`].
#[derive(Debug, Clone, PartialEq)]
pub struct PropensityModel {
    version: String,
    currency: Currency,
    abandon: Option<Head>,
    purchase: Option<Head>,
    body: PropensityBody,
}

impl PropensityModel {
    /// Reads a registry version's body. Refuses a body of another schema, with an unknown feature, with
    /// lengths that disagree or non-finite parameters.
    pub fn from_body(version_id: &str, body: &Value) -> Result<PropensityModel, DecideError> {
        let body: PropensityBody = serde_json::from_value(body.clone())
            .map_err(|e| DecideError::Body(format!("{version_id}: {e}")))?;
        PropensityModel::new(version_id, body)
    }

    /// A model from a typed body.
    pub fn new(version_id: &str, body: PropensityBody) -> Result<PropensityModel, DecideError> {
        if body.schema != BODY_SCHEMA {
            return Err(DecideError::Body(format!(
                "{version_id}: body schema {} (this build reads {BODY_SCHEMA})",
                body.schema
            )));
        }
        let currency = Currency::parse(&body.currency).map_err(|_| {
            DecideError::Body(format!("{version_id}: `{}` is not a currency code", body.currency))
        })?;
        let head = |h: &Option<HeadBody>| h.as_ref().map(Head::from_body).transpose();
        let err = |e: DecideError| match e {
            DecideError::Body(m) => DecideError::Body(format!("{version_id}: {m}")),
            other => other,
        };
        Ok(PropensityModel {
            version: version_id.to_string(),
            currency,
            abandon: head(&body.abandon).map_err(err)?,
            purchase: head(&body.purchase_7d).map_err(err)?,
            body,
        })
    }

    /// The body as JSON (what the registry stores).
    pub fn to_body(&self) -> Value {
        serde_json::to_value(&self.body).expect("a propensity body serialises")
    }

    pub fn body(&self) -> &PropensityBody {
        &self.body
    }

    /// The calibrated abandonment probability of a row, or the name of the missing feature.
    pub fn abandon_probability(&self, x: &Row) -> Result<f64, &'static str> {
        self.abandon.as_ref().ok_or("abandonment model")?.predict(x)
    }

    /// The calibrated 7-day purchase probability of a row, or the name of the missing feature.
    pub fn purchase_probability(&self, x: &Row) -> Result<f64, &'static str> {
        self.purchase.as_ref().ok_or("purchase model")?.predict(x)
    }
}

/// The checkout a customer's abandonment score is about: the most recently updated open checkout.
pub fn current_checkout(state: &CustomerState) -> Option<CheckoutView<'_>> {
    state.open_checkouts.iter().max_by_key(|(k, c)| (c.updated_at, k.as_str())).map(|(k, c)| CheckoutView {
        key: k,
        total: c.total,
        item_count: c.item_count,
    })
}

fn push(out: &mut ScoreSet, name: &str, value: f64, model_id: &str, version: &str, explanation: String) {
    out.scores.retain(|s| s.name != name);
    out.scores.push(Score {
        name: name.to_string(),
        value,
        model_id: model_id.to_string(),
        model_version: version.to_string(),
        explanation,
    });
}

impl StateModel for PropensityModel {
    fn family(&self) -> &'static str {
        crate::families::PROPENSITY
    }
    fn version(&self) -> &str {
        &self.version
    }
    /// `purchase_propensity_7d` for every customer; `abandon_propensity` for a customer with an open
    /// checkout (its newest). A missing feature gives the rules answer for that score, labelled.
    fn score(&self, state: &CustomerState, now: Timestamp, out: &mut ScoreSet) {
        let plain = features(state, None, now, self.currency);
        match self.purchase_probability(&plain) {
            Ok(p) => {
                let why = format!(
                    "logistic model {}: {}",
                    self.version,
                    self.purchase.as_ref().map(|h| h.drivers(&plain)).unwrap_or_default()
                );
                push(out, names::PURCHASE_PROPENSITY_7D, p, "logistic", &self.version, why);
            }
            Err(missing) => {
                let why = format!("{} lacks {missing} for this customer", self.version);
                push(
                    out,
                    names::PURCHASE_PROPENSITY_7D,
                    rules_purchase(state, &plain, now),
                    "rules",
                    RULES_VERSION,
                    format!("rules heuristic: {why}"),
                );
            }
        }
        let Some(checkout) = current_checkout(state) else { return };
        let x = features(state, Some(&checkout), now, self.currency);
        match self.abandon_probability(&x) {
            Ok(p) => {
                let why = format!(
                    "logistic model {}: {}",
                    self.version,
                    self.abandon.as_ref().map(|h| h.drivers(&x)).unwrap_or_default()
                );
                push(out, names::ABANDON_PROPENSITY, p, "logistic", &self.version, why);
            }
            Err(missing) => {
                let why = format!("{} lacks {missing} for this customer", self.version);
                push(
                    out,
                    names::ABANDON_PROPENSITY,
                    rules_abandon(&x),
                    "rules",
                    RULES_VERSION,
                    format!("rules heuristic: {why}"),
                );
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// The rules fallback.
// ---------------------------------------------------------------------------------------------------------

/// The labelled rules fallback (`rules-propensity-v1`): fixed log-odds on the same features, a documented
/// heuristic rather than a fit.
///
/// - Abandonment: log-odds `0.85` (a 70 % base rate, typical of online checkouts), `+0.30` per unit of
///   `ln(1 + cart value)` above `ln 51` (larger carts are left more often; skipped when the value is
///   missing), `−0.70` for a returning customer, `−0.25·ln(1 + prior orders)`, `−1.5·click rate` and
///   `−0.5·open rate` over 90 days (engaged customers finish more often).
/// - 7-day purchase: log-odds `−3.5` (≈ 3 %), `+1.2` for a returning customer, `+0.4·ln(1 + prior
///   orders)`, `−0.35·ln(1 + days since the last order)` for a returning customer, `+0.5·ln(1 + views in
///   7 days)`, `+0.8·ln(1 + cart adds in 7 days)`, `+1.5·click rate`, `+1.0` with a checkout open in the
///   last 7 days.
pub struct RulesPropensity;

/// The rules' abandonment probability of a checkout row.
pub fn rules_abandon(x: &Row) -> f64 {
    let mut z = 0.85;
    if !x[CART_VALUE].is_nan() {
        z += 0.30 * (x[CART_VALUE] - 51f64.ln());
    }
    z += -0.70 * x[RETURNING] - 0.25 * x[PRIOR_ORDERS] - 1.5 * x[CLICK_RATE] - 0.5 * x[OPEN_RATE];
    logistic::sigmoid(z)
}

/// The rules' 7-day purchase probability of a customer row (`now` for the open-checkout bonus).
pub fn rules_purchase(state: &CustomerState, x: &Row, now: Timestamp) -> f64 {
    let week_ago = now - time::Duration::days(7);
    let open = state.open_checkouts.values().any(|c| c.updated_at >= week_ago && c.updated_at <= now);
    let z = -3.5 + 1.2 * x[RETURNING] + 0.4 * x[PRIOR_ORDERS] - 0.35 * x[DAYS_SINCE_LAST] * x[RETURNING]
        + 0.5 * x[VIEWS_7D]
        + 0.8 * x[ADDS_7D]
        + 1.5 * x[CLICK_RATE]
        + if open { 1.0 } else { 0.0 };
    logistic::sigmoid(z)
}

impl StateModel for RulesPropensity {
    fn family(&self) -> &'static str {
        crate::families::PROPENSITY
    }
    fn version(&self) -> &str {
        RULES_VERSION
    }
    fn score(&self, state: &CustomerState, now: Timestamp, out: &mut ScoreSet) {
        // Amounts in the state's most used currency.
        let currency = main_currency([state]);
        let plain = features(state, None, now, currency);
        let why = "rules heuristic: no propensity version is active".to_string();
        push(
            out,
            names::PURCHASE_PROPENSITY_7D,
            rules_purchase(state, &plain, now),
            "rules",
            RULES_VERSION,
            why.clone(),
        );
        if let Some(c) = current_checkout(state) {
            let x = features(state, Some(&c), now, currency);
            push(out, names::ABANDON_PROPENSITY, rules_abandon(&x), "rules", RULES_VERSION, why);
        }
    }
}
