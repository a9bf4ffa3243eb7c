//! Webhook bodies: the envelope around an action, its event type and its `webhook-id`. Pure functions
//! only (the caller passes "now"), so every rule is unit-tested here.
//!
//! - The type is `nudge.<action kind>` (`nudge.trigger_event`, `nudge.upsert_profile`, `nudge.alert`).
//! - `timestamp` is when the action happened (a trigger event's or an alert's time); a profile sync has
//!   no time of its own and carries the attempt's.
//! - `data` is the action itself, as nudge stores it: destination-neutral, tagged by `kind`.
//! - The `webhook-id` is `msg_` + the first 16 bytes (hex) of SHA-256 over the action's JSON. The outbox
//!   stores the action, so every retry of one item has the same id (the receiver's idempotency key),
//!   while two different actions never share one. Two actions that are equal in every field are the same
//!   message and share it, which is what a receiver deduplicating on the id should see.

use crate::DeliverError;
use nudge_model::Action;
use serde_json::json;
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Largest body sent; the spec recommends staying far below (20 KB), receivers often cap at 1 MB.
pub const MAX_BODY_BYTES: usize = 256 * 1024;

/// A request that passed every client-side check and is ready to sign and send.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookRequest {
    /// The `webhook-id`: the same for every attempt at this action.
    pub id: String,
    /// `nudge.<kind>`.
    pub event_type: String,
    /// The JSON body, signed exactly as sent.
    pub body: Vec<u8>,
}

/// `nudge.<kind>` for an action.
pub fn event_type(action: &Action) -> String {
    format!("nudge.{}", action.kind())
}

/// The action's `webhook-id` (see the module documentation).
pub fn webhook_id(action: &Action) -> String {
    let json = serde_json::to_vec(action).expect("actions serialise");
    let digest = Sha256::digest(&json);
    let hex: String = digest[..16].iter().map(|b| format!("{b:02x}")).collect();
    format!("msg_{hex}")
}

/// Builds the request for `action`, or says why it cannot be sent to an endpoint taking only `events`.
pub fn build(
    action: &Action,
    events: Option<&[String]>,
    now: OffsetDateTime,
) -> Result<WebhookRequest, DeliverError> {
    let event_type = event_type(action);
    if let Some(events) = events
        && !events.contains(&event_type)
    {
        return Err(DeliverError::Invalid(format!(
            "this endpoint takes {} only, not {event_type}",
            events.join(", ")
        )));
    }
    let at = match action {
        Action::TriggerEvent { time, .. } | Action::Alert { time, .. } => *time,
        Action::UpsertProfile { .. } | Action::AddToList { .. } | Action::RemoveFromList { .. } => now,
    };
    let timestamp = at
        .to_offset(time::UtcOffset::UTC)
        .format(&Rfc3339)
        .map_err(|e| DeliverError::Invalid(format!("cannot format the time: {e}")))?;
    let body = serde_json::to_vec(&json!({"type": event_type, "timestamp": timestamp, "data": action}))
        .map_err(|e| DeliverError::Invalid(format!("cannot serialise the body: {e}")))?;
    if body.len() > MAX_BODY_BYTES {
        return Err(DeliverError::Invalid(format!(
            "the body is {} bytes; webhooks are sent up to {MAX_BODY_BYTES}",
            body.len()
        )));
    }
    Ok(WebhookRequest { id: webhook_id(action), event_type, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-05-01 10:00 UTC);

    fn alert(text: &str) -> Action {
        Action::Alert {
            customer: "shopify:880012".parse().unwrap(),
            flow: "vip_at_risk".into(),
            text: text.into(),
            time: datetime!(2026-05-01 11:30:05 +02:00),
            unique_id: "nudge:vip-at-risk:order:1".into(),
        }
    }

    #[test]
    fn envelope_has_type_timestamp_and_the_action() {
        let req = build(&alert("VIP at risk"), None, NOW).unwrap();
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(req.event_type, "nudge.alert");
        assert_eq!(body["type"], "nudge.alert");
        assert_eq!(body["timestamp"], "2026-05-01T09:30:05Z");
        assert_eq!(body["data"]["kind"], "alert");
        assert_eq!(body["data"]["text"], "VIP at risk");
        assert_eq!(body["data"]["customer"], "shopify:880012");
        let profile = Action::UpsertProfile {
            customer: "shopify:1".parse().unwrap(),
            email: None,
            first_name: None,
            last_name: None,
            attributes: Default::default(),
        };
        let body: Value = serde_json::from_slice(&build(&profile, None, NOW).unwrap().body).unwrap();
        assert_eq!(body["timestamp"], "2026-05-01T10:00:00Z", "a profile sync carries the attempt's time");
    }

    #[test]
    fn id_is_stable_per_action_and_differs_between_actions() {
        let a = build(&alert("one"), None, NOW).unwrap();
        let again = build(&alert("one"), None, NOW + time::Duration::hours(5)).unwrap();
        assert_eq!(a.id, again.id);
        assert_eq!(a.body, again.body, "an action with a time of its own is sent the same on every retry");
        assert_ne!(a.id, build(&alert("two"), None, NOW).unwrap().id);
        assert!(a.id.starts_with("msg_") && a.id.len() == 36 && !a.id.contains('.'));
    }

    #[test]
    fn filtered_types_and_huge_bodies_are_refused() {
        let only_events = vec!["nudge.trigger_event".to_string()];
        let e = build(&alert("x"), Some(&only_events), NOW).unwrap_err();
        assert!(e.to_string().contains("not nudge.alert"), "{e}");
        let both = vec!["nudge.trigger_event".to_string(), "nudge.alert".to_string()];
        build(&alert("x"), Some(&both), NOW).unwrap();
        let e = build(&alert(&"x".repeat(MAX_BODY_BYTES)), None, NOW).unwrap_err();
        assert!(e.to_string().contains("bytes"), "{e}");
    }
}
