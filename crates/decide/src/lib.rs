//! Decision models: numbers in, decisions and their evidence out. No I/O.
//!
//! - [`propensity`]: will this checkout become an order (abandonment) and will this customer buy within 7
//!   days: a logistic model on features known at decision time, calibrated, with its metrics
//!   ([`metrics`]: AUC, PR-AUC, Brier, expected calibration error, the calibration table).
//! - [`bandit`]: which offer arm to make (Thompson sampling or LinUCB over per-arm ridge regressions),
//!   within guardrails, with a uniform-random holdout whose logged propensities give an unbiased
//!   off-policy estimate.
//! - [`send_time`]: the customer's best hour per channel, shrunk toward the population when data is thin.
//! - [`cold_start`]: a new customer's 12-month value by empirical Bayes over what is known at sign-up.
//! - [`uplift`]: did a campaign work: uplift against holdout with intervals, per segment, and the
//!   features that separate responders.
//! - [`recs`]: which products to recommend: the customer's own repeat purchases blended with item-to-item
//!   co-occurrence, then merchandiser rules.
//! - [`segments`]: discovering behavioural segments a marketer names (k-means on standardised signals, k
//!   by the mean silhouette, each segment described against the rest), and refreshing adopted ones.
//! - [`hypotheses`]: what to test next: A/B hypotheses from a flow's past results (offers, send hours,
//!   subject lines, segments), Holm-adjusted, each with the sample size a test needs.
//! - [`sim`]: the simulators whose ground truth is known, which the quality bars are measured on.
//! - [`serve`]: the seam the pipeline scores through: every family's fitted model or its labelled rules
//!   fallback, as [`serve::StateModel`]s.

pub mod bandit;
pub mod cold_start;
pub mod hypotheses;
pub mod logistic;
pub mod metrics;
pub mod propensity;
pub mod recs;
pub mod segments;
pub mod send_time;
pub mod serve;
pub mod sim;
pub mod uplift;

/// Names of the decision scores (written to profiles with the configured prefix, `ai_` by default).
pub mod names {
    /// 0–1, calibrated: the probability that the customer's open checkout is abandoned.
    pub const ABANDON_PROPENSITY: &str = "abandon_propensity";
    /// 0–1: the probability that the customer orders within 7 days.
    pub const PURCHASE_PROPENSITY_7D: &str = "purchase_propensity_7d";
    /// 0–23, in the customer's time zone: the hour a message is most likely to be opened.
    pub const BEST_SEND_HOUR: &str = "best_send_hour";
    /// A label: the channel the customer engages with most (`email`, `sms`, `push`).
    pub const BEST_CHANNEL: &str = "best_channel";
    /// A label: the product category the customer buys and browses most.
    pub const PREFERRED_CATEGORY: &str = "preferred_category";
    /// The 12-month value (the BTYD estimate once there are orders; the cold-start estimate before).
    pub const PREDICTED_CLV: &str = "predicted_clv";
    /// A label: the offer arm last chosen for the customer.
    pub const NEXT_BEST_OFFER: &str = "next_best_offer";
    /// A label: the decision families' versions that scored (`propensity=…,send_time=…,cold_start=…`),
    /// beside `model_version`, the BTYD version.
    pub const MODEL_VERSIONS: &str = "model_versions";
}

/// The registry families this crate fits (besides the BTYD families of `nudge-models`).
pub mod families {
    pub const PROPENSITY: &str = "propensity";
    pub const BANDIT: &str = "bandit";
    pub const SEND_TIME: &str = "send_time";
    pub const COLD_START: &str = "cold_start";
    /// Product recommendations (served beside the scores, not as a `StateModel`).
    pub const RECS: &str = "recs";
    pub const ALL: [&str; 4] = [PROPENSITY, BANDIT, SEND_TIME, COLD_START];
}

/// A model body that cannot be read, or data a model cannot be fitted on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecideError {
    #[error("not enough data: {0}")]
    Insufficient(String),
    #[error("invalid model body: {0}")]
    Body(String),
    #[error("invalid input: {0}")]
    Input(String),
}
