//! Contact properties: which HubSpot property type an attribute gets, how its value is written, and the
//! property definition nudge creates for it. Pure functions only.
//!
//! HubSpot takes every property value as a string in a batch upsert. The type of a property nudge
//! creates follows the first value it writes:
//!
//! | attribute                                  | HubSpot `type` / `fieldType`          | value sent           |
//! |--------------------------------------------|---------------------------------------|----------------------|
//! | name ending in `_at` (an RFC 3339 time)    | `datetime` / `date`                   | ms since the epoch   |
//! | number                                     | `number` / `number`                   | decimal, `"0.18"`    |
//! | boolean                                    | `bool` / `booleancheckbox` (true/false) | `"true"`, `"false"` |
//! | any other text                             | `string` / `text`                     | as given             |
//!
//! Datetimes are sent as milliseconds since the Unix epoch, the form HubSpot documents for datetime
//! properties (it also reads ISO 8601, but milliseconds carry no time-zone ambiguity).

use nudge_model::AttrValue;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Longest property name nudge creates (HubSpot's own limit is not documented; names this long are
/// already unreadable in its UI).
pub const MAX_NAME_CHARS: usize = 100;

/// Contact properties every HubSpot account has; nudge writes these but never creates them.
pub const STANDARD_PROPERTIES: &[&str] = &["email", "firstname", "lastname"];

/// Whether `name` is a HubSpot internal name: lowercase ASCII letters, digits and `_`, starting with a
/// letter, at most [`MAX_NAME_CHARS`].
pub fn is_internal_name(name: &str) -> bool {
    name.len() <= MAX_NAME_CHARS
        && name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// The kind of a custom property.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PropertyKind {
    Number,
    Bool,
    DateTime,
    Text,
}

impl PropertyKind {
    /// HubSpot's `type`.
    pub fn hubspot_type(self) -> &'static str {
        match self {
            PropertyKind::Number => "number",
            PropertyKind::Bool => "bool",
            PropertyKind::DateTime => "datetime",
            PropertyKind::Text => "string",
        }
    }

    /// HubSpot's `fieldType` (how the property shows in forms and the UI).
    pub fn field_type(self) -> &'static str {
        match self {
            PropertyKind::Number => "number",
            PropertyKind::Bool => "booleancheckbox",
            PropertyKind::DateTime => "date",
            PropertyKind::Text => "text",
        }
    }
}

/// A custom property nudge needs before it can write a value.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PropertySpec {
    pub name: String,
    pub kind: PropertyKind,
}

impl PropertySpec {
    pub fn new(name: impl Into<String>, kind: PropertyKind) -> Self {
        PropertySpec { name: name.into(), kind }
    }

    /// The label shown in HubSpot: the name in words, `ai_churn_risk` → `AI churn risk`.
    pub fn label(&self) -> String {
        let mut words: Vec<String> =
            self.name.split('_').filter(|w| !w.is_empty()).map(str::to_string).collect();
        if let Some(first) = words.first_mut() {
            *first = if first == "ai" {
                "AI".to_string()
            } else {
                let mut chars = first.chars();
                chars.next().map(|c| c.to_ascii_uppercase().to_string() + chars.as_str()).unwrap_or_default()
            };
        }
        words.join(" ")
    }

    /// One input of `POST /crm/v3/properties/contacts/batch/create` (and the body of the single create).
    pub fn definition(&self, group: &str) -> Value {
        let mut def = json!({
            "name": self.name,
            "label": self.label(),
            "type": self.kind.hubspot_type(),
            "fieldType": self.kind.field_type(),
            "groupName": group,
            "description": "Written by nudge.",
        });
        if self.kind == PropertyKind::Bool {
            def["options"] = json!([
                {"label": "Yes", "value": "true", "displayOrder": 0},
                {"label": "No", "value": "false", "displayOrder": 1},
            ]);
        }
        def
    }
}

/// The property an attribute needs and its value as HubSpot takes it, or why it cannot be written.
pub fn attribute(name: &str, value: &AttrValue) -> Result<(PropertySpec, String), String> {
    if !is_internal_name(name) {
        return Err(format!(
            "attribute `{name}` is not a valid HubSpot property name (lowercase letters, digits and _, \
             starting with a letter, at most {MAX_NAME_CHARS} characters); rename it in the flow or model"
        ));
    }
    if STANDARD_PROPERTIES.contains(&name) {
        return Err(format!(
            "attribute `{name}` would overwrite HubSpot's own contact property; keep the attribute prefix"
        ));
    }
    if name.ends_with("_at") {
        let AttrValue::Text(text) = value else {
            return Err(format!(
                "attribute `{name}` ends in _at, so it is a HubSpot datetime; give an RFC 3339 time"
            ));
        };
        let at = OffsetDateTime::parse(text.trim(), &Rfc3339).map_err(|_| {
            format!("attribute `{name}` ends in _at, so it is a HubSpot datetime, but its value is not an RFC 3339 time")
        })?;
        return Ok((PropertySpec::new(name, PropertyKind::DateTime), datetime_value(at)));
    }
    match value {
        AttrValue::Number(n) => {
            if !n.is_finite() {
                return Err(format!("attribute `{name}` is not a finite number"));
            }
            Ok((PropertySpec::new(name, PropertyKind::Number), number_value(*n)))
        }
        AttrValue::Bool(b) => Ok((PropertySpec::new(name, PropertyKind::Bool), b.to_string())),
        AttrValue::Text(s) => Ok((PropertySpec::new(name, PropertyKind::Text), s.clone())),
        // Contact properties hold scalars: the JSON text in a text property.
        AttrValue::Json(v) => Ok((PropertySpec::new(name, PropertyKind::Text), v.to_string())),
    }
}

/// A time as HubSpot's datetime value: milliseconds since the Unix epoch, as a decimal string.
pub fn datetime_value(at: OffsetDateTime) -> String {
    (at.unix_timestamp_nanos() / 1_000_000).to_string()
}

/// A number as a plain decimal string (`0.18`, `3`, `-12.5`); Rust never prints floats in exponent form.
pub fn number_value(n: f64) -> String {
    if n == n.trunc() && n.abs() < 1e15 { format!("{}", n as i64) } else { format!("{n}") }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    #[test]
    fn internal_names() {
        for ok in ["ai_churn_risk", "a", "x9_", "nudge_ai"] {
            assert!(is_internal_name(ok), "{ok}");
        }
        for bad in ["", "_ai", "9ai", "AI_x", "ai-x", "ai x", "aï", &"a".repeat(101)] {
            assert!(!is_internal_name(bad), "{bad}");
        }
    }

    #[test]
    fn attributes_get_a_type_and_a_string_value() {
        let (spec, v) = attribute("ai_churn_risk", &AttrValue::Number(0.18)).unwrap();
        assert_eq!((spec.kind, v.as_str()), (PropertyKind::Number, "0.18"));
        assert_eq!(attribute("ai_orders", &AttrValue::Number(3.0)).unwrap().1, "3");
        assert_eq!(attribute("ai_x", &AttrValue::Number(-12.5)).unwrap().1, "-12.5");
        assert_eq!(attribute("ai_tiny", &AttrValue::Number(1e-7)).unwrap().1, "0.0000001");
        let (spec, v) = attribute("ai_vip", &AttrValue::Bool(true)).unwrap();
        assert_eq!((spec.kind, v.as_str()), (PropertyKind::Bool, "true"));
        let (spec, v) = attribute("ai_segment", &AttrValue::Text("loyal".into())).unwrap();
        assert_eq!((spec.kind, v.as_str()), (PropertyKind::Text, "loyal"));
        let (spec, v) = attribute("ai_scored_at", &AttrValue::Text("2026-05-01T10:00:00Z".into())).unwrap();
        assert_eq!((spec.kind, v.as_str()), (PropertyKind::DateTime, "1777629600000"));
        assert!(
            attribute("ai_scored_at", &AttrValue::Text("yesterday".into())).unwrap_err().contains("RFC 3339")
        );
        assert!(attribute("ai_scored_at", &AttrValue::Number(1.0)).is_err());
        assert!(attribute("ai_x", &AttrValue::Number(f64::NAN)).is_err());
        assert!(attribute("AI_Risk", &AttrValue::Number(1.0)).unwrap_err().contains("property name"));
        assert!(attribute("email", &AttrValue::Text("x".into())).unwrap_err().contains("HubSpot's own"));
        assert_eq!(datetime_value(datetime!(1970-01-01 00:00:01.5 UTC)), "1500");
    }

    #[test]
    fn definitions_carry_type_field_type_group_and_options() {
        let def = PropertySpec::new("ai_vip", PropertyKind::Bool).definition("nudge_ai");
        assert_eq!(def["name"], "ai_vip");
        assert_eq!(def["label"], "AI vip");
        assert_eq!(
            (def["type"].as_str(), def["fieldType"].as_str()),
            (Some("bool"), Some("booleancheckbox"))
        );
        assert_eq!(def["groupName"], "nudge_ai");
        assert_eq!(def["options"][0]["value"], "true");
        assert_eq!(def["options"][1]["value"], "false");
        let def = PropertySpec::new("ai_scored_at", PropertyKind::DateTime).definition("g");
        assert_eq!((def["type"].as_str(), def["fieldType"].as_str()), (Some("datetime"), Some("date")));
        assert!(def.get("options").is_none());
        assert_eq!(PropertySpec::new("last_seen", PropertyKind::Text).label(), "Last seen");
    }
}
