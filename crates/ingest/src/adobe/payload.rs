//! Reading Magento entities from JSON with the exact field path in every error. Magento sends ids and
//! amounts as numbers or strings depending on the path (REST, observer data, I/O Events); both are read as
//! their exact text (the workspace's serde_json keeps a number's text), amounts as exact decimals.

use rust_decimal::Decimal;
use serde_json::{Map, Value};
use std::str::FromStr;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use time::macros::format_description;

/// A JSON object and where it sits in the body.
#[derive(Clone, Copy)]
pub(crate) struct Obj<'a> {
    pub map: &'a Map<String, Value>,
    pub path: &'a str,
}

pub(crate) type FieldResult<T> = Result<T, String>;

impl<'a> Obj<'a> {
    fn at(&self, key: &str) -> String {
        format!("{}.{key}", self.path)
    }

    fn present(&self, key: &str) -> Option<&'a Value> {
        self.map.get(key).filter(|v| !v.is_null())
    }

    /// An object field, when present.
    pub fn obj(&self, key: &str) -> Option<&'a Map<String, Value>> {
        self.present(key).and_then(Value::as_object)
    }

    /// A string field; numbers and booleans are read as their text.
    pub fn text(&self, key: &str) -> FieldResult<Option<String>> {
        match self.present(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok((!s.trim().is_empty()).then(|| s.trim().to_string())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(Value::Bool(b)) => Ok(Some(b.to_string())),
            Some(_) => Err(format!("{}: expected text", self.at(key))),
        }
    }

    /// An id: a number or a string of 1..=64 letters, digits, `-` or `_`.
    pub fn id(&self, key: &str) -> FieldResult<Option<String>> {
        let Some(t) = self.text(key)? else { return Ok(None) };
        let ok = t.len() <= 64 && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_');
        if !ok {
            return Err(format!("{}: `{}` is not an id", self.at(key), super::io_events::printable(&t)));
        }
        if t == "0" { Ok(None) } else { Ok(Some(t)) }
    }

    pub fn required_id(&self, key: &str) -> FieldResult<String> {
        self.id(key)?.ok_or_else(|| format!("{}: missing", self.at(key)))
    }

    /// A boolean, also as Magento's `0`/`1` and `"0"`/`"1"`.
    pub fn flag(&self, key: &str) -> FieldResult<Option<bool>> {
        match self.text(key)?.as_deref() {
            None => Ok(None),
            Some("1" | "true") => Ok(Some(true)),
            Some("0" | "false") => Ok(Some(false)),
            Some(other) => {
                Err(format!("{}: `{}` is not a boolean", self.at(key), super::io_events::printable(other)))
            }
        }
    }

    /// An exact decimal amount.
    pub fn decimal(&self, key: &str) -> FieldResult<Option<Decimal>> {
        let Some(t) = self.text(key)? else { return Ok(None) };
        Decimal::from_str(&t).or_else(|_| Decimal::from_scientific(&t)).map(Some).map_err(|_| {
            format!("{}: `{}` is not a decimal amount", self.at(key), super::io_events::printable(&t))
        })
    }

    /// A time: Magento's `YYYY-MM-DD HH:MM:SS` (UTC) or RFC 3339.
    pub fn time(&self, key: &str) -> FieldResult<Option<OffsetDateTime>> {
        let Some(t) = self.text(key)? else { return Ok(None) };
        parse_time(&t)
            .map(Some)
            .ok_or_else(|| format!("{}: `{}` is not a time", self.at(key), super::io_events::printable(&t)))
    }

    pub fn required_time(&self, key: &str) -> FieldResult<OffsetDateTime> {
        self.time(key)?.ok_or_else(|| format!("{}: missing", self.at(key)))
    }

    /// The objects of an array field (absent: none).
    pub fn array(&self, key: &str) -> FieldResult<Vec<&'a Map<String, Value>>> {
        match self.present(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    v.as_object().ok_or_else(|| format!("{}[{i}]: expected an object", self.at(key)))
                })
                .collect(),
            Some(_) => Err(format!("{}: expected an array", self.at(key))),
        }
    }
}

fn parse_time(s: &str) -> Option<OffsetDateTime> {
    if let Ok(t) = OffsetDateTime::parse(s, &Rfc3339) {
        return Some(t.to_offset(time::UtcOffset::UTC));
    }
    let f = format_description!("[year]-[month]-[day] [hour]:[minute]:[second]");
    time::PrimitiveDateTime::parse(s, f).ok().map(|p| p.assume_utc())
}
