//! Buy-till-you-die customer-base models and the Gamma-Gamma spend model.
//!
//! The crate is pure computation: numbers in, numbers out, no I/O. Typical use:
//!
//! 1. build per-customer summaries from transactions with [`rfm::summarize`];
//! 2. check there is enough history with [`sufficiency::check_sufficiency`];
//! 3. fit a transaction model ([`BgNbd`], [`MbgNbd`], [`ParetoNbd`]) through
//!    [`TransactionModel::fit`] and a spend model with [`GammaGamma::fit`];
//! 4. predict: [`TransactionModel::p_alive`], expected purchases, lifetime value
//!    ([`clv`]), churn risk and the time to the next order (see [`model`]);
//! 5. compare families on a holdout period with [`holdout`], check their fit and
//!    prediction quality and choose one with [`diagnostics`].
//!
//! All models use the time unit the summaries were built with.

pub mod bgnbd;
pub mod clv;
pub mod diagnostics;
pub mod error;
pub mod fit;
pub mod gamma_gamma;
pub mod holdout;
pub mod model;
mod optim;
pub mod pareto;
mod pareto_integral;
pub mod rfm;
pub mod simulate;
pub mod special;
pub mod sufficiency;

pub use bgnbd::{BgNbd, MbgNbd};
pub use clv::{ClvSettings, customer_lifetime_value, customer_lifetime_values};
pub use diagnostics::{
    ChurnQuality, FamilyCheck, FrequencyFit, HoldoutScores, MisfitRules, Selection, SpendQuality,
    TrackingFit, assess, churn_quality, frequency_fit, holdout_scores, select_family, spend_quality,
    tracking_fit,
};
pub use error::{Error, Result};
pub use fit::{FitOptions, FitReport, Rfm};
pub use gamma_gamma::{GammaGamma, Spend};
pub use holdout::{HoldoutComparison, compare_holdout, tracking_series};
pub use model::{TransactionModel, churn_risk, expected_time_to_next_order};
pub use pareto::ParetoNbd;
pub use rfm::{CustomerSummary, TimeUnit, Transaction, summarize};
pub use simulate::{
    CappedSimulation, ParetoSimulation, Simulation, simulate_bgnbd, simulate_capped_dropout,
    simulate_pareto_nbd,
};
pub use sufficiency::{Insufficient, Requirements, check_sufficiency};
