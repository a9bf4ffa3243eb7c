//! Reading Yotpo (and Smile.io) JSON whose value types vary between documented shapes: ids and scores as
//! numbers or their text, booleans as `true` or `"true"`, dates as RFC 3339 (`2024-02-20T21:31:13.000Z`)
//! or Yotpo's older `2018-02-20 14:12:13 UTC`. Errors name the field path, as BigCommerce's reader does.

pub use crate::bigcommerce::payload::{At, FieldError, json};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

/// Text or a number, as text; `None` for an empty string.
pub fn text(at: &At<'_>) -> Result<Option<String>, FieldError> {
    match at.value {
        Value::String(s) => Ok(Some(s.trim().to_string()).filter(|s| !s.is_empty())),
        Value::Number(n) => Ok(Some(n.to_string())),
        _ => Err(at.fail("expected text or a number")),
    }
}

/// An optional field read with [`text`].
pub fn opt_text(parent: &At<'_>, key: &str) -> Result<Option<String>, FieldError> {
    match parent.opt(key)? {
        Some(a) => text(&a),
        None => Ok(None),
    }
}

/// `true`/`false` or their text (`"true"`, `"false"`, `"1"`, `"0"`).
pub fn boolish(at: &At<'_>) -> Result<bool, FieldError> {
    match at.value {
        Value::Bool(b) => Ok(*b),
        Value::String(s) => match s.trim().to_ascii_lowercase().as_str() {
            "true" | "1" => Ok(true),
            "false" | "0" | "" => Ok(false),
            _ => Err(at.fail("expected a boolean or its text")),
        },
        Value::Number(n) if n.as_u64() == Some(0) => Ok(false),
        Value::Number(n) if n.as_u64() == Some(1) => Ok(true),
        _ => Err(at.fail("expected a boolean or its text")),
    }
}

/// An optional boolean field (missing or null: false).
pub fn opt_bool(parent: &At<'_>, key: &str) -> Result<bool, FieldError> {
    parent.opt(key)?.map(|a| boolish(&a)).transpose().map(|b| b.unwrap_or(false))
}

/// A date in either documented format.
pub fn date(at: &At<'_>) -> Result<OffsetDateTime, FieldError> {
    let s = at.str()?.trim();
    parse_date(s)
        .ok_or_else(|| at.fail(format!("`{}` is not a date", s.chars().take(40).collect::<String>())))
}

/// `2024-02-20T21:31:13.000Z` (RFC 3339) or `2018-02-20 14:12:13 UTC`.
pub fn parse_date(s: &str) -> Option<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t);
    }
    let legacy = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    let body = s.strip_suffix(" UTC")?;
    time::PrimitiveDateTime::parse(body, legacy).ok().map(|p| p.assume_utc())
}

/// A positive integer id (a number or its text), as exact text.
pub fn id(at: &At<'_>) -> Result<String, FieldError> {
    let id = at.int_id()?;
    if id == "0" {
        return Err(at.fail("an id is never 0"));
    }
    Ok(id)
}

/// A star rating 1–5 (a number or its text); anything else is no rating.
pub fn rating(at: Option<At<'_>>) -> Result<Option<u8>, FieldError> {
    let Some(at) = at else { return Ok(None) };
    let t = text(&at)?;
    Ok(t.and_then(|t| t.parse::<f64>().ok())
        .filter(|s| s.fract() == 0.0 && (1.0..=5.0).contains(s))
        .map(|s| s as u8))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_date_formats_and_loose_values() {
        let a = parse_date("2018-02-20 14:12:13 UTC").unwrap();
        let b = parse_date("2018-02-20T14:12:13.000Z").unwrap();
        assert_eq!(a, b);
        assert!(parse_date("2018-02-20 14:12:13").is_none());
        let v = serde_json::json!({"a": "true", "b": false, "c": "5", "d": 4, "e": "x"});
        let r = At::root(&v);
        assert!(boolish(&r.field("a").unwrap()).unwrap());
        assert!(!boolish(&r.field("b").unwrap()).unwrap());
        assert_eq!(rating(r.opt("c").unwrap()).unwrap(), Some(5));
        assert_eq!(rating(r.opt("d").unwrap()).unwrap(), Some(4));
        assert_eq!(rating(r.opt("e").unwrap()).unwrap(), None);
        assert!(boolish(&r.field("e").unwrap()).is_err());
    }
}
