//! The data-sufficiency gate: whether a customer base has enough buyers, repeat buyers
//! and history for the models to be trusted.
//!
//! Only counting happens here; what to do when data is insufficient is up to the caller.

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::rfm::CustomerSummary;

/// Minimum amounts of data before model output is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Requirements {
    /// The minimum number of customers with at least one purchase.
    pub min_buyers: usize,
    /// The minimum number of customers with at least one repeat purchase.
    pub min_repeat_buyers: usize,
    /// The minimum span in days from the earliest first purchase to the calibration end.
    pub min_history_days: u32,
}

impl Default for Requirements {
    /// 500 buyers, 100 repeat buyers and 180 days of history, in line with what
    /// commercial predictive-analytics tools ask for.
    fn default() -> Self {
        Requirements { min_buyers: 500, min_repeat_buyers: 100, min_history_days: 180 }
    }
}

/// Why the data does not meet the [`Requirements`].
#[derive(Debug, Clone, PartialEq, Eq, Error, Serialize, Deserialize)]
#[error("insufficient data: {reason}")]
pub struct Insufficient {
    /// A human-readable explanation naming the unmet requirement and the observed amount.
    pub reason: String,
}

/// Checks the requirements in order (buyers, repeat buyers, history) and reports the
/// first one that fails.
pub fn check_sufficiency(summary: &[CustomerSummary], req: &Requirements) -> Result<(), Insufficient> {
    let buyers = summary.len();
    if buyers < req.min_buyers {
        return Err(Insufficient { reason: format!("{buyers} buyers, need at least {}", req.min_buyers) });
    }
    let repeat = summary.iter().filter(|s| s.frequency > 0).count();
    if repeat < req.min_repeat_buyers {
        return Err(Insufficient {
            reason: format!("{repeat} repeat buyers, need at least {}", req.min_repeat_buyers),
        });
    }
    let days = summary.iter().map(|s| s.t * s.unit.days()).fold(0.0, f64::max).round();
    if days < f64::from(req.min_history_days) {
        return Err(Insufficient {
            reason: format!("{days} days of history, need at least {}", req.min_history_days),
        });
    }
    Ok(())
}
