//! Reading BigCommerce JSON: the thin callback and the REST answers its fetch jobs store. Every error
//! names the exact field path (`order.date_modified`, `products[2].price_inc_tax`), which is what a
//! quarantined body is kept under.
//!
//! BigCommerce sends amounts as decimal strings in the v2 API and as JSON numbers in v3; both are read as
//! exact decimals (the workspace's `serde_json` keeps number text verbatim), never through `f64`. Ids are
//! positive integers (orders, customers, products) or UUID-like text (carts), kept as exact text.

use rust_decimal::Decimal;
use serde_json::Value;
use std::str::FromStr;
use time::OffsetDateTime;
use time::format_description::well_known::{Rfc2822, Rfc3339};

/// A field that cannot be read, with its path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{path}`: {problem}")]
pub struct FieldError {
    pub path: String,
    pub problem: String,
}

/// A JSON value and the path it was reached by.
#[derive(Debug, Clone)]
pub struct At<'a> {
    pub value: &'a Value,
    path: String,
}

impl<'a> At<'a> {
    pub fn root(value: &'a Value) -> Self {
        At { value, path: String::new() }
    }

    /// The dotted path of this value from the root.
    pub fn path(&self) -> &str {
        if self.path.is_empty() { "(body)" } else { &self.path }
    }

    pub fn fail(&self, problem: impl Into<String>) -> FieldError {
        FieldError { path: self.path().to_string(), problem: problem.into() }
    }

    fn child(&self, key: &str) -> String {
        if self.path.is_empty() { key.to_string() } else { format!("{}.{key}", self.path) }
    }

    /// A required field of this object.
    pub fn field(&self, key: &str) -> Result<At<'a>, FieldError> {
        self.opt(key)?.ok_or_else(|| FieldError { path: self.child(key), problem: "missing".into() })
    }

    /// An optional field (missing or null is `None`); an error if this is not an object.
    pub fn opt(&self, key: &str) -> Result<Option<At<'a>>, FieldError> {
        let obj = self
            .value
            .as_object()
            .ok_or_else(|| self.fail(format!("expected an object, got {}", kind(self.value))))?;
        Ok(obj.get(key).filter(|v| !v.is_null()).map(|v| At { value: v, path: self.child(key) }))
    }

    /// The elements of this array.
    pub fn items(&self) -> Result<Vec<At<'a>>, FieldError> {
        let arr = self
            .value
            .as_array()
            .ok_or_else(|| self.fail(format!("expected an array, got {}", kind(self.value))))?;
        Ok(arr
            .iter()
            .enumerate()
            .map(|(i, v)| At { value: v, path: format!("{}[{i}]", self.path) })
            .collect())
    }

    pub fn str(&self) -> Result<&'a str, FieldError> {
        self.value.as_str().ok_or_else(|| self.fail(format!("expected a string, got {}", kind(self.value))))
    }

    pub fn bool(&self) -> Result<bool, FieldError> {
        self.value.as_bool().ok_or_else(|| self.fail(format!("expected a boolean, got {}", kind(self.value))))
    }

    /// A non-negative integer id (as a JSON integer or its decimal text), as exact text.
    pub fn int_id(&self) -> Result<String, FieldError> {
        let text = match self.value {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.clone(),
            other => return Err(self.fail(format!("expected an integer id, got {}", kind(other)))),
        };
        if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
            return Err(self.fail(format!("expected a non-negative integer id, got `{}`", clip(&text))));
        }
        let trimmed = text.trim_start_matches('0');
        Ok(if trimmed.is_empty() { "0".into() } else { trimmed.to_string() })
    }

    /// A cart id (UUID-like text: ASCII letters, digits and `-`, at most 64 characters).
    pub fn token_id(&self) -> Result<String, FieldError> {
        let s = self.str()?;
        if is_token_id(s) {
            Ok(s.to_string())
        } else {
            Err(self.fail(format!("not a valid id: `{}`", clip(s))))
        }
    }

    pub fn u32(&self) -> Result<u32, FieldError> {
        let n = self.int_id()?;
        n.parse().map_err(|_| self.fail(format!("`{n}` is out of range")))
    }

    /// An exact decimal amount, from a string (`"12.5000"`) or a JSON number.
    pub fn decimal(&self) -> Result<Decimal, FieldError> {
        let text = match self.value {
            Value::Number(n) => n.to_string(),
            Value::String(s) => s.trim().to_string(),
            other => return Err(self.fail(format!("expected an amount, got {}", kind(other)))),
        };
        let d = Decimal::from_str(&text)
            .or_else(|_| Decimal::from_scientific(&text))
            .map_err(|_| self.fail(format!("`{}` is not a decimal amount", clip(&text))))?;
        if d.is_sign_negative() {
            return Err(self.fail(format!("`{}` is negative", clip(&text))));
        }
        Ok(d.normalize())
    }

    /// An instant in RFC 3339 (v3 APIs) or RFC 2822 (`Tue, 20 Nov 2012 00:00:00 +0000`, the v2 API).
    pub fn instant(&self) -> Result<OffsetDateTime, FieldError> {
        let s = self.str()?;
        OffsetDateTime::parse(s, &Rfc3339)
            .or_else(|_| OffsetDateTime::parse(s, &Rfc2822))
            .map_err(|_| self.fail(format!("`{}` is not an RFC 3339 or RFC 2822 date", clip(s))))
    }
}

/// Cart ids and other text ids that end up in a request path: letters, digits and `-`, 1..=64.
pub fn is_token_id(s: &str) -> bool {
    !s.is_empty() && s.len() <= 64 && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn clip(s: &str) -> String {
    if s.chars().count() <= 40 {
        s.to_string()
    } else {
        format!("{}…", s.chars().take(40).collect::<String>())
    }
}

/// Parses a body as JSON, with a body-level error.
pub fn json(body: &[u8]) -> Result<Value, FieldError> {
    serde_json::from_slice(body)
        .map_err(|e| FieldError { path: "(body)".into(), problem: format!("not JSON: {e}") })
}

/// The thin callback BigCommerce sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Notification {
    pub scope: String,
    pub store_id: Option<String>,
    /// `stores/<hash>`.
    pub producer: String,
    /// SHA-1 of the payload data: the same for a re-fired event.
    pub hash: String,
    pub created_at: Option<i64>,
    pub data_type: Option<String>,
    /// `data.id` as exact text (an integer or a cart's UUID).
    pub id: Option<String>,
    /// `data.orderId` of `store/cart/converted`.
    pub order_id: Option<String>,
    /// `data.token` of `store/cart/abandoned`.
    pub token: Option<String>,
}

impl Notification {
    pub fn read(body: &[u8]) -> Result<Self, FieldError> {
        let v = json(body)?;
        let root = At::root(&v);
        let text = |at: &At<'_>| -> Result<String, FieldError> {
            match at.value {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                other => Err(at.fail(format!("expected text, got {}", kind(other)))),
            }
        };
        let scope = root.field("scope")?.str()?.to_string();
        let producer = root.field("producer")?.str()?.to_string();
        let hash_at = root.field("hash")?;
        let hash = hash_at.str()?.to_string();
        if hash.is_empty() || hash.len() > 128 || !hash.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(hash_at.fail("expected the payload's hex digest"));
        }
        let store_id = root.opt("store_id")?.as_ref().map(text).transpose()?;
        let created_at = match root.opt("created_at")? {
            Some(at) => Some(at.value.as_i64().ok_or_else(|| at.fail("expected Unix seconds"))?),
            None => None,
        };
        let (mut data_type, mut id, mut order_id, mut token) = (None, None, None, None);
        if let Some(data) = root.opt("data")? {
            data.opt("type")?; // checks `data` is an object
            data_type = data.opt("type")?.map(|t| t.str().map(str::to_string)).transpose()?;
            if let Some(at) = data.opt("id")? {
                id = Some(match at.value {
                    Value::String(_) => at.token_id()?,
                    _ => at.int_id()?,
                });
            }
            order_id = data.opt("orderId")?.map(|a| a.int_id()).transpose()?;
            token = data.opt("token")?.map(|a| a.str().map(str::to_string)).transpose()?;
        }
        Ok(Notification { scope, store_id, producer, hash, created_at, data_type, id, order_id, token })
    }

    /// The store hash from `producer` (`stores/<hash>`).
    pub fn store_hash(&self) -> Option<&str> {
        self.producer.strip_prefix("stores/").filter(|h| !h.is_empty())
    }
}
