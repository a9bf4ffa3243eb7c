//! Pure: the prompt rendered from a context, the Chat Completions body, and the answer validated.

use crate::config::{LlmConfig, PromptSpec};
use crate::context::{CopyContext, Template};
use serde_json::{Map, Value, json};
use std::collections::BTreeMap;

/// Why an answer cannot be used; the template's fallback is used instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ValidationError {
    #[error("the answer is not a chat completion: {0}")]
    NotACompletion(String),
    #[error("the model refused: {0}")]
    Refused(String),
    #[error("the completion was cut off (finish_reason `length`)")]
    Truncated,
    #[error("the completion was filtered (finish_reason `content_filter`)")]
    Filtered,
    #[error("the completion has no content")]
    NoContent,
    #[error("the content is not a JSON object")]
    NotJson,
    #[error("slot `{0}` is missing")]
    MissingSlot(String),
    #[error("slot `{0}` is not a non-empty string")]
    NotText(String),
    #[error("slot `{slot}` has {chars} characters, over its limit of {max}")]
    TooLong { slot: String, chars: usize, max: usize },
    #[error("`{0}` is not a slot of this prompt")]
    UnknownSlot(String),
}

/// The two messages of a prompt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rendered {
    pub system: String,
    pub user: String,
}

/// Renders the prompt's messages from the context. The spec must have passed [`PromptSpec::check`];
/// a template that does not parse renders as its raw text.
pub fn render(prompt: &PromptSpec, context: &CopyContext) -> Rendered {
    let vars = context.vars();
    let one =
        |text: &str| Template::parse(text).map(|t| t.render(&vars)).unwrap_or_else(|_| text.to_string());
    Rendered { system: one(&prompt.system), user: one(&prompt.user) }
}

/// The JSON schema of the answer: an object with every slot, a string of at most `max_chars`.
pub fn slot_schema(prompt: &PromptSpec) -> Value {
    let mut properties = Map::new();
    for (slot, spec) in &prompt.slots {
        properties.insert(slot.clone(), json!({"type": "string", "maxLength": spec.max_chars.unwrap_or(0)}));
    }
    json!({
        "type": "object",
        "properties": properties,
        "required": prompt.slots.keys().collect::<Vec<_>>(),
        "additionalProperties": false,
    })
}

/// The schema's name: `nudge_copy_<prompt>_v<version>`, within the contract's `[a-zA-Z0-9_-]{1,64}`.
pub fn schema_name(prompt: &PromptSpec) -> String {
    let mut name: String = format!("nudge_copy_{}_v{}", prompt.name, prompt.version)
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() || c == '_' || c == '-' { c } else { '_' })
        .collect();
    name.truncate(64);
    name
}

/// The Chat Completions body: the model, a system message that also asks for the JSON object (so servers
/// that only honour `json_object` still answer JSON), the user message, the token cap under the
/// provider's field name, and `response_format` with the slots' schema.
pub fn build_body(config: &LlmConfig, prompt: &PromptSpec, rendered: &Rendered) -> Value {
    let limits: Vec<String> = prompt
        .slots
        .iter()
        .map(|(s, spec)| format!("\"{s}\" (at most {} characters)", spec.max_chars.unwrap_or(0)))
        .collect();
    let system = format!(
        "{}\n\nAnswer with one JSON object and nothing else, with exactly these string keys: {}.",
        rendered.system.trim_end(),
        limits.join(", ")
    );
    let mut body = json!({
        "model": config.model,
        "messages": [
            {"role": "system", "content": system},
            {"role": "user", "content": rendered.user},
        ],
        "response_format": {
            "type": "json_schema",
            "json_schema": {"name": schema_name(prompt), "schema": slot_schema(prompt), "strict": false},
        },
        "n": 1,
        "stream": false,
    });
    let obj = body.as_object_mut().expect("built as an object");
    obj.insert(config.provider.token_field().into(), json!(config.max_tokens));
    if let Some(t) = config.temperature {
        obj.insert("temperature".into(), json!(t));
    }
    body
}

/// Token counts of an answer, when the server sent them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Usage {
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub total_tokens: u64,
}

/// Reads `usage` if present (servers may leave it out).
pub fn usage(answer: &Value) -> Option<Usage> {
    let u = answer.get("usage")?;
    let get = |k: &str| u.get(k).and_then(Value::as_u64);
    let prompt_tokens = get("prompt_tokens").unwrap_or(0);
    let completion_tokens = get("completion_tokens").unwrap_or(0);
    let total_tokens = get("total_tokens").unwrap_or(prompt_tokens + completion_tokens);
    Some(Usage { prompt_tokens, completion_tokens, total_tokens })
}

/// Validates a 200 answer: the first choice finished normally and its content is a JSON object with every
/// slot as a non-empty string within its `max_chars`, and nothing else.
pub fn parse_answer(
    prompt: &PromptSpec,
    answer: &Value,
) -> Result<BTreeMap<String, String>, ValidationError> {
    let choice = answer
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| c.first())
        .ok_or_else(|| ValidationError::NotACompletion("no `choices[0]`".into()))?;
    let message =
        choice.get("message").ok_or_else(|| ValidationError::NotACompletion("no `message`".into()))?;
    if let Some(refusal) = message.get("refusal").and_then(Value::as_str) {
        return Err(ValidationError::Refused(refusal.chars().take(200).collect()));
    }
    match choice.get("finish_reason").and_then(Value::as_str) {
        Some("length") => return Err(ValidationError::Truncated),
        Some("content_filter") => return Err(ValidationError::Filtered),
        _ => {}
    }
    let content = message.get("content").and_then(Value::as_str).ok_or(ValidationError::NoContent)?;
    let Ok(Value::Object(fields)) = serde_json::from_str::<Value>(strip_fence(content)) else {
        return Err(ValidationError::NotJson);
    };
    if let Some(extra) = fields.keys().find(|k| !prompt.slots.contains_key(*k)) {
        return Err(ValidationError::UnknownSlot(extra.clone()));
    }
    let mut slots = BTreeMap::new();
    for (slot, spec) in &prompt.slots {
        let value = fields.get(slot).ok_or_else(|| ValidationError::MissingSlot(slot.clone()))?;
        let text = value.as_str().map(str::trim).filter(|t| !t.is_empty());
        let text = text.ok_or_else(|| ValidationError::NotText(slot.clone()))?;
        let chars = text.chars().count();
        let max = spec.max_chars.unwrap_or(0);
        if chars > max {
            return Err(ValidationError::TooLong { slot: slot.clone(), chars, max });
        }
        slots.insert(slot.clone(), text.to_string());
    }
    Ok(slots)
}

/// Some servers wrap JSON in a Markdown code fence even when asked not to.
fn strip_fence(content: &str) -> &str {
    let t = content.trim();
    let Some(inner) = t.strip_prefix("```") else { return t };
    let inner = inner.strip_prefix("json").unwrap_or(inner);
    inner.strip_suffix("```").unwrap_or(inner).trim()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::SlotSpec;

    fn prompt() -> PromptSpec {
        PromptSpec {
            name: "winback".into(),
            version: 3,
            system: "You write short retail copy.".into(),
            user: "Segment {{segment}}; products: {{products}}".into(),
            slots: BTreeMap::from([("subject".into(), SlotSpec { max_chars: Some(20) })]),
            fallback: BTreeMap::from([("subject".into(), "We miss you".into())]),
        }
    }

    fn answer(content: Value, finish: &str) -> Value {
        json!({"id": "c1", "object": "chat.completion", "created": 1, "model": "m",
               "choices": [{"index": 0, "message": {"role": "assistant", "content": content, "refusal": null}, "finish_reason": finish}]})
    }

    #[test]
    fn body_follows_the_contract() {
        let p = prompt();
        let mut cfg = LlmConfig::new("http://x/v1", "small-model", "k");
        let ctx = CopyContext::new(nudge_model::Segment::Lapsed).product("Boots");
        let body = build_body(&cfg, &p, &render(&p, &ctx));
        assert_eq!(body["model"], "small-model");
        assert_eq!(body["max_completion_tokens"], 400);
        assert!(body.get("max_tokens").is_none());
        assert_eq!(body["messages"][1]["content"], "Segment lapsed; products: Boots");
        assert_eq!(body["response_format"]["json_schema"]["name"], "nudge_copy_winback_v3");
        assert_eq!(
            body["response_format"]["json_schema"]["schema"]["properties"]["subject"]["maxLength"],
            20
        );
        cfg.provider = crate::config::Provider::Ollama;
        let body = build_body(&cfg, &p, &render(&p, &ctx));
        assert_eq!(body["max_tokens"], 400);
        assert!(body.get("max_completion_tokens").is_none());
    }

    #[test]
    fn answers_are_validated() {
        let p = prompt();
        let ok = answer(json!("{\"subject\": \"Back in stock\"}"), "stop");
        assert_eq!(parse_answer(&p, &ok).unwrap()["subject"], "Back in stock");
        let fenced = answer(json!("```json\n{\"subject\": \"Hi\"}\n```"), "stop");
        assert_eq!(parse_answer(&p, &fenced).unwrap()["subject"], "Hi");
        let long = answer(json!("{\"subject\": \"a subject line far too long\"}"), "stop");
        assert!(matches!(parse_answer(&p, &long), Err(ValidationError::TooLong { chars: 27, max: 20, .. })));
        assert_eq!(
            parse_answer(&p, &answer(json!("{}"), "stop")),
            Err(ValidationError::MissingSlot("subject".into()))
        );
        assert_eq!(
            parse_answer(&p, &answer(json!("{\"subject\": 3}"), "stop")),
            Err(ValidationError::NotText("subject".into()))
        );
        assert_eq!(parse_answer(&p, &answer(json!("Sure! {"), "stop")), Err(ValidationError::NotJson));
        assert_eq!(
            parse_answer(&p, &answer(json!("{\"subject\":\"x\""), "length")),
            Err(ValidationError::Truncated)
        );
        assert_eq!(parse_answer(&p, &answer(Value::Null, "stop")), Err(ValidationError::NoContent));
        assert_eq!(
            parse_answer(&p, &answer(json!("{\"subject\":\"x\",\"body\":\"y\"}"), "stop")),
            Err(ValidationError::UnknownSlot("body".into()))
        );
        let mut refused = answer(Value::Null, "stop");
        refused["choices"][0]["message"]["refusal"] = json!("I can't help with that");
        assert!(matches!(parse_answer(&p, &refused), Err(ValidationError::Refused(_))));
        assert!(usage(&ok).is_none());
    }
}
