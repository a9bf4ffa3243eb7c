//! Slack message bodies. Pure: an alert becomes `{"text": …}` with Slack's three control characters
//! escaped (`&`, `<`, `>`), so a value in the text can never turn into a mention or a link.

use crate::DeliverError;
use nudge_model::Action;
use serde_json::json;

/// Slack truncates longer messages; longer alerts are refused instead.
pub const MAX_TEXT_CHARS: usize = 40_000;

/// The body for `action`, or why it cannot be sent to Slack.
pub fn build(action: &Action) -> Result<Vec<u8>, DeliverError> {
    let Action::Alert { text, .. } = action else {
        return Err(DeliverError::Invalid(format!(
            "Slack takes alerts only, not {}; route other actions to a webhook or a marketing platform",
            action.kind()
        )));
    };
    let text = text.trim();
    if text.is_empty() {
        return Err(DeliverError::Invalid("the alert text is empty; Slack requires text".into()));
    }
    let escaped = text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let chars = escaped.chars().count();
    if chars > MAX_TEXT_CHARS {
        return Err(DeliverError::Invalid(format!(
            "the alert text has {chars} characters; Slack takes at most {MAX_TEXT_CHARS}"
        )));
    }
    serde_json::to_vec(&json!({ "text": escaped }))
        .map_err(|e| DeliverError::Invalid(format!("cannot serialise the message: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn alert(text: &str) -> Action {
        Action::Alert {
            customer: "shopify:1".parse().unwrap(),
            flow: "f".into(),
            text: text.into(),
            time: datetime!(2026-05-01 10:00 UTC),
            unique_id: "u".into(),
        }
    }

    #[test]
    fn alerts_become_text_messages_with_escapes() {
        let body: serde_json::Value =
            serde_json::from_slice(&build(&alert(" churn <90> & up ")).unwrap()).unwrap();
        assert_eq!(body, json!({"text": "churn &lt;90&gt; &amp; up"}));
    }

    #[test]
    fn empty_long_and_non_alert_actions_are_refused() {
        assert!(build(&alert("  ")).unwrap_err().to_string().contains("empty"));
        build(&alert(&"x".repeat(MAX_TEXT_CHARS))).unwrap();
        assert!(build(&alert(&"x".repeat(MAX_TEXT_CHARS + 1))).is_err());
        let profile = Action::UpsertProfile {
            customer: "shopify:1".parse().unwrap(),
            email: None,
            first_name: None,
            last_name: None,
            attributes: Default::default(),
        };
        assert!(build(&profile).unwrap_err().to_string().contains("alerts only"));
    }
}
