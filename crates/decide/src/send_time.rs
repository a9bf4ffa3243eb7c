//! (being written)

use crate::serve::StateModel;
use nudge_model::{ScoreSet, Timestamp};
use nudge_state::CustomerState;

/// The labelled rules fallback (placeholder until the fitted model lands: adds nothing).
pub struct RulesSendTime;

impl StateModel for RulesSendTime {
    fn family(&self) -> &'static str {
        crate::families::SEND_TIME
    }
    fn version(&self) -> &str {
        "rules-send-time-v1"
    }
    fn score(&self, _state: &CustomerState, _now: Timestamp, _out: &mut ScoreSet) {}
}
