//! The crate's single error type.
//!
//! Every fallible public function returns [`Error`]. Data-sufficiency failures
//! are reported separately by [`crate::sufficiency::Insufficient`] because they
//! are an expected outcome rather than a fault.

use thiserror::Error;

/// Everything that can go wrong when building summaries, fitting or predicting.
#[derive(Debug, Error, Clone, PartialEq)]
pub enum Error {
    /// The input held no usable rows (for example no customers, or no repeat buyers for Gamma-Gamma).
    #[error("no data: {0}")]
    NoData(String),
    /// An input value was outside its domain (negative time, recency above age, non-finite number...).
    #[error("invalid input: {0}")]
    InvalidInput(String),
    /// A model parameter was outside its domain (all parameters must be finite and positive).
    #[error("invalid parameter: {0}")]
    InvalidParameter(String),
    /// The optimiser could not produce a finite log-likelihood from its starting point.
    #[error("fit failed: {0}")]
    FitFailed(String),
}

/// Shorthand for results carrying [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
