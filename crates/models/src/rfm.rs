//! Per-customer recency/frequency/monetary summaries built from raw transactions.
//!
//! This module turns a flat list of [`Transaction`]s into one [`CustomerSummary`] per
//! customer, split into a calibration period and an optional holdout period. It knows
//! nothing about models; fitting and prediction live in the model modules.
//!
//! # Conventions
//!
//! * Days are integers counted from 1970-01-01. All purchases by one customer on the
//!   same day are merged into a single transaction whose amount is the day's sum.
//! * `T` (age) is `(calibration_end − first purchase day)` and recency `t_x` is
//!   `(last calibration purchase day − first purchase day)`, both plain day
//!   differences divided by the unit length. With weeks, a first purchase on
//!   1997-01-01 and a calibration end of 1997-09-30 give 272 days, so
//!   `T = 272 / 7 = 38.857…`, printed as 38.86 in the published CDNOW summary.
//! * Frequency counts repeat purchase days only (the first purchase is excluded),
//!   and the monetary value is the mean amount of those repeat purchases (zero when
//!   there are none), as in the `lifetimes` Python package.
//! * Customers whose first purchase falls after the calibration end are left out.
//! * With a holdout, `frequency_holdout` counts the purchase days in
//!   `(calibration_end, observation_end]`, `monetary_value_holdout` is the mean amount
//!   of those days (each day's orders summed) and `duration_holdout` is
//!   `(observation_end − calibration_end)` divided by the unit length.
//! * A purchase's day is its date alone (whoever builds the [`Transaction`]s drops the
//!   time of day; `nudge models` and the customer states take the UTC date), so two
//!   orders one second apart across midnight are two purchase days, and the
//!   calibration-end and observation-end days are included whole.
//!
//! # Equivalence with `lifetimes`
//!
//! The unit is a plain divisor of day differences: 1 for [`TimeUnit::D`], 7 for
//! [`TimeUnit::W`] and 365.25 / 12 = 30.4375 for [`TimeUnit::M`]. In `lifetimes` 0.11.3
//! that is `freq="D"` with `freq_multiplier` set to the unit's days:
//!
//! * `summarize(tx, cal, None, unit)` equals
//!   `summary_data_from_transaction_data(tx, id, date, monetary_value_col=amount,
//!   observation_period_end=cal, freq="D", freq_multiplier=unit_days)` on the
//!   transactions as they are (times of day allowed: that function cuts them to dates).
//! * `summarize(tx, cal, Some(obs), unit)` equals `calibration_and_holdout_data(tx, id,
//!   date, cal, obs, freq="D", freq_multiplier=unit_days, monetary_value_col=amount)`
//!   only once the transactions are cut to dates and same-day amounts summed. On the
//!   raw rows that function splits at the instant `cal 00:00:00` (an order later on
//!   the calibration-end day becomes a holdout purchase, and a customer whose first
//!   order is such an order drops out), cuts at `obs 00:00:00` (orders later on the
//!   observation-end day are lost), and takes `monetary_value_holdout` as the mean over
//!   holdout *orders* rather than holdout days (`frequency_holdout` does count days).
//!   On CDNOW (dates only) the last point alone changes 49 of 2,357 customers.
//!
//! `tests/summary_parity.rs` checks all of this against lifetimes' output, for every unit.
//!
//! `lifetimes`' plain `freq="W"` / `freq="M"` is a different discretisation, which nudge
//! does not use: every time is first cut to its calendar period (weeks Monday to
//! Sunday, calendar months), purchases in one period merge, and recency and `T` are
//! differences between period starts, so whole weeks, or days divided by numpy's mean
//! month of 30.436875 days. Orders on Wed 2024-01-03 (10), Fri 01-05 (20) and Mon
//! 01-15 (30) with a calibration end of Sun 2024-02-04 give:
//!
//! | call | frequency | recency | `T` | monetary value |
//! | --- | --- | --- | --- | --- |
//! | nudge `W` = `freq="D", freq_multiplier=7` | 2 | 12/7 = 1.714 | 32/7 = 4.571 | 25 |
//! | lifetimes `freq="W"` | 1 | 2 | 4 | 30 |
//! | nudge `M` = `freq="D", freq_multiplier=30.4375` | 2 | 0.394 | 1.051 | 25 |
//! | lifetimes `freq="M"` | 0 | 0 | 31/30.436875 = 1.0185 | 0 |

use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One purchase event.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Transaction {
    /// The customer identifier.
    pub customer: u64,
    /// The purchase day, counted in days since 1970-01-01.
    pub day: i32,
    /// The purchase amount (may be zero).
    pub amount: f64,
}

/// The time unit in which recency, age and holdout durations are expressed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, Default)]
pub enum TimeUnit {
    /// Days.
    D,
    /// Fractional weeks: days divided by 7.
    #[default]
    W,
    /// Fractional months: days divided by 365.25 / 12.
    M,
}

impl TimeUnit {
    /// The number of days in one unit.
    pub fn days(self) -> f64 {
        match self {
            TimeUnit::D => 1.0,
            TimeUnit::W => 7.0,
            TimeUnit::M => 365.25 / 12.0,
        }
    }

    /// The number of units in one month as used by the CLV convention of `lifetimes`
    /// (30 for days, 4.345 for weeks, 1 for months).
    pub fn units_per_month(self) -> f64 {
        match self {
            TimeUnit::D => 30.0,
            TimeUnit::W => 4.345,
            TimeUnit::M => 1.0,
        }
    }
}

/// The summary of one customer's history.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct CustomerSummary {
    /// The customer identifier.
    pub customer: u64,
    /// The day of the first purchase.
    pub first_day: i32,
    /// `x`: the number of repeat purchase days in the calibration period.
    pub frequency: u32,
    /// `t_x`: time from the first to the last calibration purchase.
    pub recency: f64,
    /// `T`: time from the first purchase to the calibration end.
    pub t: f64,
    /// The mean amount of the repeat calibration purchases (zero when `frequency` is zero).
    pub monetary_value: f64,
    /// The number of purchase days in the holdout period `(calibration_end, observation_end]`.
    pub frequency_holdout: u32,
    /// The mean amount of the holdout purchases (zero when there are none).
    pub monetary_value_holdout: f64,
    /// The holdout length `observation_end − calibration_end` in the chosen unit.
    pub duration_holdout: f64,
    /// The unit that `recency`, `t` and `duration_holdout` are expressed in.
    pub unit: TimeUnit,
}

/// Builds one summary per customer, sorted by customer identifier.
///
/// `calibration_end` is the last day (inclusive) of the calibration period and
/// `observation_end` the last day (inclusive) of the holdout period, defaulting to
/// `calibration_end` (no holdout). Transactions after `observation_end` are ignored.
/// The work is sorted and scanned in parallel.
pub fn summarize(
    transactions: &[Transaction],
    calibration_end: i32,
    observation_end: Option<i32>,
    unit: TimeUnit,
) -> Result<Vec<CustomerSummary>> {
    let observation_end = observation_end.unwrap_or(calibration_end);
    if observation_end < calibration_end {
        return Err(Error::InvalidInput(format!(
            "observation end {observation_end} is before calibration end {calibration_end}"
        )));
    }
    if let Some(bad) = transactions.iter().find(|t| !t.amount.is_finite()) {
        return Err(Error::InvalidInput(format!("non-finite amount for customer {}", bad.customer)));
    }
    let mut rows: Vec<(u64, i32, f64)> = transactions
        .par_iter()
        .filter(|t| t.day <= observation_end)
        .map(|t| (t.customer, t.day, t.amount))
        .collect();
    rows.par_sort_unstable_by_key(|&(c, d, _)| (c, d));

    let ctx = ScanContext {
        calibration_end,
        scale: 1.0 / unit.days(),
        duration_holdout: f64::from(observation_end - calibration_end) / unit.days(),
        unit,
    };
    let chunks = split_at_customers(&rows, rayon::current_num_threads() * 8);
    let parts: Vec<Vec<CustomerSummary>> = chunks.par_iter().map(|c| ctx.scan(c)).collect();
    let mut out = Vec::with_capacity(parts.iter().map(Vec::len).sum());
    for p in parts {
        out.extend(p);
    }
    Ok(out)
}

/// Splits customer-sorted rows into about `pieces` slices without splitting a customer.
fn split_at_customers(rows: &[(u64, i32, f64)], pieces: usize) -> Vec<&[(u64, i32, f64)]> {
    let mut out = Vec::new();
    let step = rows.len().div_ceil(pieces.max(1)).max(1);
    let mut start = 0;
    while start < rows.len() {
        let mut end = (start + step).min(rows.len());
        while end < rows.len() && rows[end].0 == rows[end - 1].0 {
            end += 1;
        }
        out.push(&rows[start..end]);
        start = end;
    }
    out
}

/// The constants needed while scanning sorted rows.
struct ScanContext {
    calibration_end: i32,
    scale: f64,
    duration_holdout: f64,
    unit: TimeUnit,
}

impl ScanContext {
    /// Summarises every customer in a slice sorted by (customer, day).
    fn scan(&self, rows: &[(u64, i32, f64)]) -> Vec<CustomerSummary> {
        let mut out = Vec::with_capacity(rows.len() / 2 + 1);
        let mut i = 0;
        while i < rows.len() {
            let customer = rows[i].0;
            let mut j = i;
            while j < rows.len() && rows[j].0 == customer {
                j += 1;
            }
            if let Some(s) = self.one(&rows[i..j]) {
                out.push(s);
            }
            i = j;
        }
        out
    }

    /// Summarises one customer's day-sorted rows.
    fn one(&self, rows: &[(u64, i32, f64)]) -> Option<CustomerSummary> {
        let first_day = rows[0].1;
        if first_day > self.calibration_end {
            return None;
        }
        let mut frequency = 0u32;
        let mut last_day = first_day;
        let mut repeat_sum = 0.0;
        let mut frequency_holdout = 0u32;
        let mut holdout_sum = 0.0;
        let mut k = 0;
        while k < rows.len() {
            let day = rows[k].1;
            let mut amount = 0.0;
            while k < rows.len() && rows[k].1 == day {
                amount += rows[k].2;
                k += 1;
            }
            if day == first_day {
                continue;
            }
            if day <= self.calibration_end {
                frequency += 1;
                last_day = day;
                repeat_sum += amount;
            } else {
                frequency_holdout += 1;
                holdout_sum += amount;
            }
        }
        let mean = |sum: f64, n: u32| if n > 0 { sum / f64::from(n) } else { 0.0 };
        Some(CustomerSummary {
            customer: rows[0].0,
            first_day,
            frequency,
            recency: f64::from(last_day - first_day) * self.scale,
            t: f64::from(self.calibration_end - first_day) * self.scale,
            monetary_value: mean(repeat_sum, frequency),
            frequency_holdout,
            monetary_value_holdout: mean(holdout_sum, frequency_holdout),
            duration_holdout: self.duration_holdout,
            unit: self.unit,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tx(customer: u64, day: i32, amount: f64) -> Transaction {
        Transaction { customer, day, amount }
    }

    #[test]
    fn merges_same_day_and_splits_holdout() {
        let t = [
            tx(2, 10, 5.0),
            tx(1, 0, 1.0),
            tx(1, 7, 2.0),
            tx(1, 7, 3.0),
            tx(1, 14, 10.0),
            tx(1, 30, 4.0),
            tx(3, 29, 1.0),
        ];
        let s = summarize(&t, 21, Some(35), TimeUnit::W).unwrap();
        assert_eq!(s.len(), 2);
        let a = s[0];
        assert_eq!(a.customer, 1);
        assert_eq!(a.frequency, 2);
        assert!((a.recency - 2.0).abs() < 1e-12);
        assert!((a.t - 3.0).abs() < 1e-12);
        assert!((a.monetary_value - 7.5).abs() < 1e-12);
        assert_eq!(a.frequency_holdout, 1);
        assert!((a.monetary_value_holdout - 4.0).abs() < 1e-12);
        assert!((a.duration_holdout - 2.0).abs() < 1e-12);
        let b = s[1];
        assert_eq!((b.customer, b.frequency, b.monetary_value), (2, 0, 0.0));
    }

    #[test]
    fn rejects_inverted_periods() {
        assert!(summarize(&[], 10, Some(5), TimeUnit::D).is_err());
    }
}
