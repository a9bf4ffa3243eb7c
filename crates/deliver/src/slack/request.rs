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

/// Slack takes at most this many blocks in one message.
pub const MAX_BLOCKS: usize = 50;

/// The body of a Block Kit message: `blocks` (built by the caller within Block Kit's limits) and `text`,
/// the notification fallback Slack shows where blocks cannot be, escaped like an alert's.
pub fn build_blocks(text: &str, blocks: &[serde_json::Value]) -> Result<Vec<u8>, DeliverError> {
    let text = text.trim();
    if text.is_empty() {
        return Err(DeliverError::Invalid("the fallback text is empty; Slack requires text".into()));
    }
    if blocks.is_empty() || blocks.len() > MAX_BLOCKS {
        return Err(DeliverError::Invalid(format!(
            "the message has {} blocks; Slack takes 1 to {MAX_BLOCKS}",
            blocks.len()
        )));
    }
    let escaped = text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;");
    let chars = escaped.chars().count();
    if chars > MAX_TEXT_CHARS {
        return Err(DeliverError::Invalid(format!(
            "the fallback text has {chars} characters; Slack takes at most {MAX_TEXT_CHARS}"
        )));
    }
    serde_json::to_vec(&json!({ "text": escaped, "blocks": blocks }))
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
    fn block_messages_carry_the_fallback_text() {
        let blocks = vec![json!({"type": "divider"})];
        let body: serde_json::Value =
            serde_json::from_slice(&build_blocks("a <b>", &blocks).unwrap()).unwrap();
        assert_eq!(body, json!({"text": "a &lt;b&gt;", "blocks": [{"type": "divider"}]}));
        assert!(build_blocks(" ", &blocks).unwrap_err().to_string().contains("empty"));
        assert!(build_blocks("t", &[]).is_err());
        assert!(
            build_blocks("t", &vec![json!({"type": "divider"}); 51]).unwrap_err().to_string().contains("51")
        );
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
