//! The audit trail's vocabulary: the stages an inbound delivery passes through and the one terminal state
//! each ends in, and the records of work that belongs to no delivery (a scheduled model refit, an access to
//! the admin API), each under a trace id of its own that has no delivery and no terminal state.

use crate::Timestamp;
use crate::ids::{CustomerId, TraceId};
use serde::{Deserialize, Serialize};
use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum AuditStage {
    /// The delivery was verified and durably committed (headers without secrets, body digest).
    Received,
    /// Canonical events produced by normalisation.
    Normalized,
    /// Customer state before/after summary.
    StateChanged,
    /// Scores with inputs, outputs, model version and explanation.
    Scored,
    /// The decision and its actions.
    Decided,
    /// One attempt to call a destination (endpoint, status, error).
    DeliveryAttempt,
    /// The one terminal state.
    Terminal,
    /// A scheduled model refit: the version it saved, whether it was activated, and why (or why not: a
    /// misfit family, a drop in holdout quality). Belongs to no delivery: its trace id is its own, with no
    /// delivery and no terminal state.
    ModelRefit,
    /// An access to the admin API (`/api/*`) or a change to its tokens: a refused request (401, 403), a
    /// permitted one that changes something, a token created or revoked. The detail names the method, the
    /// path, the token's name and role and the outcome, never the token or its hash. Belongs to no delivery,
    /// like a refit.
    ApiAccess,
    /// A decision waiting for approval changed state: approved (its actions enqueued), rejected or expired,
    /// by whom. Recorded under the trace of the delivery whose decision it is.
    Approval,
    /// A thin notification's fetch job was recorded (source, resource, id): the trace stays open until
    /// the fetched answer is processed, the resource is found gone, or the job is dead-lettered.
    FetchPending,
    /// One attempt at a fetch job: fetched, gone, retried (with the wait) or failed, with the reason.
    FetchAttempt,
    /// A person was erased (`nudge privacy erase`, a platform's redact request): what remains of them in the
    /// audit trail is this record, naming a keyed pseudonym and how much was removed, never the person.
    /// Belongs to the erasure request's own trace.
    Erasure,
    /// Copy for a `generate_copy` action was generated (or the prompt's fallback used): the prompt's name
    /// and version, tokens, attempts, whether the fallback was used and why, and the copy itself (which
    /// holds no personal data: the prompt saw a pseudonymous context only). Recorded under the trace of the
    /// delivery whose decision it is.
    CopyGenerated,
    /// A refresh of the adopted segments (`nudge segments refresh`, `segments.refresh_schedule`): one record
    /// per customer who joined or left a segment (naming the segment), and one per segment without a
    /// customer with its members, joiners, leavers and stability. Belongs to the refresh's own trace.
    SegmentMembership,
    /// A campaign digest was built and sent (`pipeline.digest_schedule`, `nudge digest send`): its period,
    /// where it went and with what outcome, and whether a generated summary was included or left out and
    /// why. Belongs to no delivery, like a refit.
    Digest,
}

impl AuditStage {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditStage::Received => "received",
            AuditStage::Normalized => "normalized",
            AuditStage::StateChanged => "state_changed",
            AuditStage::Scored => "scored",
            AuditStage::Decided => "decided",
            AuditStage::DeliveryAttempt => "delivery_attempt",
            AuditStage::Terminal => "terminal",
            AuditStage::ModelRefit => "model_refit",
            AuditStage::ApiAccess => "api_access",
            AuditStage::Approval => "approval",
            AuditStage::FetchPending => "fetch_pending",
            AuditStage::FetchAttempt => "fetch_attempt",
            AuditStage::Erasure => "erasure",
            AuditStage::CopyGenerated => "copy_generated",
            AuditStage::SegmentMembership => "segment_membership",
            AuditStage::Digest => "digest",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "received" => AuditStage::Received,
            "normalized" => AuditStage::Normalized,
            "state_changed" => AuditStage::StateChanged,
            "scored" => AuditStage::Scored,
            "decided" => AuditStage::Decided,
            "delivery_attempt" => AuditStage::DeliveryAttempt,
            "terminal" => AuditStage::Terminal,
            "model_refit" => AuditStage::ModelRefit,
            "api_access" => AuditStage::ApiAccess,
            "approval" => AuditStage::Approval,
            "fetch_pending" => AuditStage::FetchPending,
            "fetch_attempt" => AuditStage::FetchAttempt,
            "erasure" => AuditStage::Erasure,
            "copy_generated" => AuditStage::CopyGenerated,
            "segment_membership" => AuditStage::SegmentMembership,
            "digest" => AuditStage::Digest,
            _ => return None,
        })
    }

    /// Stages recorded on their own through `Store::append_audit`, under a trace id of their own with no
    /// delivery and no terminal state.
    pub fn belongs_to_no_delivery(self) -> bool {
        matches!(
            self,
            AuditStage::ModelRefit
                | AuditStage::ApiAccess
                | AuditStage::SegmentMembership
                | AuditStage::Digest
        )
    }
}

/// Every delivery ends in exactly one of these.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "state", content = "reason", rename_all = "snake_case")]
pub enum TerminalState {
    /// Everything the decision asked for was accepted by the destination (or nothing needed pushing).
    Delivered,
    /// A destination refused it permanently.
    Rejected(String),
    /// Retries ran out.
    DeadLettered(String),
    /// Nothing to do (unknown topic, duplicate, stale, shadow mode).
    Ignored(String),
    /// The payload could not be parsed; kept verbatim for replay.
    Quarantined(String),
}

impl TerminalState {
    pub fn name(&self) -> &'static str {
        match self {
            TerminalState::Delivered => "delivered",
            TerminalState::Rejected(_) => "rejected",
            TerminalState::DeadLettered(_) => "dead_lettered",
            TerminalState::Ignored(_) => "ignored",
            TerminalState::Quarantined(_) => "quarantined",
        }
    }

    pub fn reason(&self) -> Option<&str> {
        match self {
            TerminalState::Delivered => None,
            TerminalState::Rejected(r)
            | TerminalState::DeadLettered(r)
            | TerminalState::Ignored(r)
            | TerminalState::Quarantined(r) => Some(r),
        }
    }
}

impl fmt::Display for TerminalState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.reason() {
            Some(r) => write!(f, "{} ({r})", self.name()),
            None => f.write_str(self.name()),
        }
    }
}

/// One line of the audit trail.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditRecord {
    pub trace_id: TraceId,
    pub customer: Option<CustomerId>,
    pub stage: AuditStage,
    #[serde(with = "time::serde::rfc3339")]
    pub at: Timestamp,
    /// Stage-specific detail; never contains secrets or raw personal data beyond identifiers.
    pub detail: serde_json::Value,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The stored name (`as_str`/`parse`) and the JSON name are the same, and every stage reads back.
    #[test]
    fn stage_names_round_trip() {
        for stage in [
            AuditStage::Received,
            AuditStage::Normalized,
            AuditStage::StateChanged,
            AuditStage::Scored,
            AuditStage::Decided,
            AuditStage::DeliveryAttempt,
            AuditStage::Terminal,
            AuditStage::ModelRefit,
            AuditStage::ApiAccess,
            AuditStage::Approval,
            AuditStage::FetchPending,
            AuditStage::FetchAttempt,
            AuditStage::Erasure,
            AuditStage::CopyGenerated,
            AuditStage::SegmentMembership,
            AuditStage::Digest,
        ] {
            assert_eq!(AuditStage::parse(stage.as_str()), Some(stage));
            assert_eq!(serde_json::to_value(stage).unwrap(), serde_json::json!(stage.as_str()));
        }
        assert_eq!(AuditStage::ModelRefit.as_str(), "model_refit");
        assert_eq!(AuditStage::parse("refit"), None);
        assert_eq!(AuditStage::ApiAccess.as_str(), "api_access");
        assert!(
            AuditStage::ApiAccess.belongs_to_no_delivery() && !AuditStage::Decided.belongs_to_no_delivery()
        );
    }
}
