//! The seam the pipeline scores through. Each decision family is served by a [`StateModel`]: a fitted
//! registry version, or the family's labelled rules fallback when no version is active. A fitted model
//! that lacks a feature for one customer falls back to its rules for that customer and says so in the
//! score's explanation and version (`rules-…`), never a silent default.

use nudge_model::{ScoreSet, Timestamp};
use nudge_state::CustomerState;
use std::sync::Arc;

/// One decision family's scorer: customer state in, scores and labels added to the set.
pub trait StateModel: Send + Sync {
    /// The registry family (`propensity`, `send_time`, `cold_start`).
    fn family(&self) -> &'static str;
    /// The registry version id, or the rules fallback's label (`rules-propensity-v1`).
    fn version(&self) -> &str;
    /// Adds this family's scores (numbers) and labels (text) for the customer to `out`. Must be cheap
    /// (microseconds) and total: a missing feature means the rules answer, labelled as such.
    fn score(&self, state: &CustomerState, now: Timestamp, out: &mut ScoreSet);
}

/// The decision families the pipeline serves, each a fitted version or its rules fallback.
#[derive(Clone)]
pub struct DecisionModels {
    pub propensity: Arc<dyn StateModel>,
    pub send_time: Arc<dyn StateModel>,
    pub cold_start: Arc<dyn StateModel>,
    /// [`DecisionModels::versions`], kept so scoring does not rebuild it per event (see `refreshed`).
    versions: String,
}

impl DecisionModels {
    /// Every family on its rules fallback (what serves before any version is fitted and activated).
    pub fn rules() -> DecisionModels {
        DecisionModels {
            propensity: Arc::new(crate::propensity::RulesPropensity),
            send_time: Arc::new(crate::send_time::RulesSendTime),
            cold_start: Arc::new(crate::cold_start::RulesColdStart),
            versions: String::new(),
        }
        .refreshed()
    }

    /// Recomputes the versions label after a family's model was replaced.
    pub fn refreshed(mut self) -> DecisionModels {
        self.versions = [&self.propensity, &self.send_time, &self.cold_start]
            .iter()
            .map(|m| format!("{}={}", m.family(), m.version()))
            .collect::<Vec<_>>()
            .join(",");
        self
    }

    /// Adds every family's scores and labels to a set the BTYD scorer (or its rules) produced.
    pub fn score(&self, state: &CustomerState, now: Timestamp, out: &mut ScoreSet) {
        self.propensity.score(state, now, out);
        self.send_time.score(state, now, out);
        self.cold_start.score(state, now, out);
        if let Some(arm) = state.offers.last().map(|o| o.arm.clone()) {
            out.labels.insert(crate::names::NEXT_BEST_OFFER.to_string(), arm);
        }
        out.labels.insert(crate::names::MODEL_VERSIONS.to_string(), self.versions.clone());
    }

    /// The versions serving, `family=version` joined by `,` (for the audit and `ai_model_versions`).
    pub fn versions(&self) -> &str {
        &self.versions
    }
}
