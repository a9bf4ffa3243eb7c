//! Amazon EventBridge and Google Pub/Sub deliveries, unwrapped into the same (headers, body) pair an
//! HTTPS delivery has, so the rest of the pipeline cannot tell the transports apart.
//!
//! Lives here: reading the two envelope shapes and mapping their header keys (any case, with or without
//! the `X-` prefix, `-` or `_`) onto the `X-Shopify-*` names. Not here: trust. These transports carry no
//! HMAC (the cloud's IAM authenticates the publisher), so a [`Delivery`] is read with
//! [`Delivery::meta`] rather than `verify`, and its body then goes through `normalize` like any other.

use crate::headers::Headers;
use crate::shopify::payload::describe;
use crate::shopify::verify::{DeliveryMeta, VerifyError, delivery_meta};
use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use serde_json::{Map, Value};
use std::fmt;

/// The transport a delivery arrived on, for error messages and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Transport {
    EventBridge,
    PubSub,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::EventBridge => "EventBridge",
            Transport::PubSub => "Pub/Sub",
        })
    }
}

/// A delivery unwrapped from an envelope: what the HTTPS transport would have sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub transport: Transport,
    /// Header keys are canonical (`x-shopify-topic`), so [`Headers::get`] finds them under the HTTPS names.
    pub headers: Headers,
    /// The webhook body. For EventBridge it is the payload re-serialised from the envelope (numbers keep
    /// their exact text); for Pub/Sub it is the decoded `data` bytes.
    pub body: Vec<u8>,
}

impl Delivery {
    /// The delivery's metadata. No signature is checked: trust comes from the cloud transport.
    pub fn meta(&self) -> Result<DeliveryMeta, VerifyError> {
        delivery_meta(&self.headers)
    }
}

/// Why an envelope could not be unwrapped.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EnvelopeError {
    #[error("{transport} envelope: invalid JSON at line {line} column {column}: {message}")]
    InvalidJson { transport: Transport, line: usize, column: usize, message: String },
    #[error("{transport} envelope: field `{field}`: {problem}")]
    Field { transport: Transport, field: String, problem: String },
    #[error("EventBridge envelope: `detail-type` is `{0}`, not a Shopify webhook (`shopifyWebhook`)")]
    NotShopify(String),
}

/// Unwraps an EventBridge event: `detail.payload` is the body and `detail.metadata` the headers.
///
/// Some producers put the header keys directly in `detail` next to `payload` instead of under
/// `metadata`; both are accepted.
pub fn from_eventbridge(envelope: &[u8]) -> Result<Delivery, EnvelopeError> {
    const T: Transport = Transport::EventBridge;
    let value = parse(T, envelope)?;
    let root = object(T, "(top level)", &value)?;
    if let Some(kind) = root.get("detail-type") {
        let kind = kind.as_str().unwrap_or_default();
        if !kind.eq_ignore_ascii_case("shopifyWebhook") {
            return Err(EnvelopeError::NotShopify(kind.to_string()));
        }
    }
    let detail = object(T, "detail", required(T, root, "detail", "detail")?)?;
    let body = match required(T, detail, "payload", "detail.payload")? {
        Value::String(text) => text.clone().into_bytes(),
        payload @ (Value::Object(_) | Value::Array(_)) => {
            serde_json::to_vec(payload).expect("a JSON value always serialises")
        }
        other => {
            return Err(field(T, "detail.payload", format!("expected an object, found {}", describe(other))));
        }
    };
    let headers = match detail.get("metadata") {
        Some(metadata) => {
            header_map(T, "detail.metadata", object(T, "detail.metadata", metadata)?, |_| true)?
        }
        None => header_map(T, "detail", detail, |name| name.starts_with("x-shopify-"))?,
    };
    Ok(Delivery { transport: T, headers, body })
}

/// Unwraps a Pub/Sub message, in push form (`{"message": {...}, "subscription": ...}`) or as the bare
/// message: `attributes` are the headers and the base64 `data` is the body.
pub fn from_pubsub(message: &[u8]) -> Result<Delivery, EnvelopeError> {
    const T: Transport = Transport::PubSub;
    let value = parse(T, message)?;
    let root = object(T, "(top level)", &value)?;
    let (prefix, message) = match root.get("message") {
        Some(inner) => ("message.", object(T, "message", inner)?),
        None => ("", root),
    };
    let data_field = format!("{prefix}data");
    let data = match required(T, message, "data", &data_field)? {
        Value::String(s) => s,
        other => {
            return Err(field(
                T,
                &data_field,
                format!("expected a base64 string, found {}", describe(other)),
            ));
        }
    };
    let body = decode_base64(data.trim()).map_err(|reason| field(T, &data_field, reason))?;
    let attributes_field = format!("{prefix}attributes");
    let headers = match message.get("attributes") {
        Some(Value::Null) | None => Headers::new(),
        Some(attrs) => header_map(T, &attributes_field, object(T, &attributes_field, attrs)?, |_| true)?,
    };
    Ok(Delivery { transport: T, headers, body })
}

/// Maps an envelope's header key onto the HTTPS name: `Shopify-Topic`, `shopify_topic` and
/// `X-SHOPIFY-TOPIC` all become `x-shopify-topic`. Keys that are not Shopify's are kept as they are.
pub fn canonical_header_name(key: &str) -> String {
    let lower = key.trim().to_ascii_lowercase().replace('_', "-");
    let bare = lower.strip_prefix("x-").unwrap_or(&lower);
    if bare.starts_with("shopify-") { format!("x-{bare}") } else { key.trim().to_string() }
}

fn parse(transport: Transport, bytes: &[u8]) -> Result<Value, EnvelopeError> {
    serde_json::from_slice(bytes).map_err(|e| {
        let full = e.to_string();
        let suffix = format!(" at line {} column {}", e.line(), e.column());
        let message = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
        EnvelopeError::InvalidJson { transport, line: e.line(), column: e.column(), message }
    })
}

fn field(transport: Transport, name: &str, problem: impl Into<String>) -> EnvelopeError {
    EnvelopeError::Field { transport, field: name.to_string(), problem: problem.into() }
}

fn object<'a>(
    transport: Transport,
    name: &str,
    value: &'a Value,
) -> Result<&'a Map<String, Value>, EnvelopeError> {
    value
        .as_object()
        .ok_or_else(|| field(transport, name, format!("expected an object, found {}", describe(value))))
}

/// A required member `key` of `map`, which sits at `path` in the envelope (for the error message).
fn required<'a>(
    transport: Transport,
    map: &'a Map<String, Value>,
    key: &str,
    path: &str,
) -> Result<&'a Value, EnvelopeError> {
    map.get(key).filter(|v| !v.is_null()).ok_or_else(|| field(transport, path, "required but missing"))
}

/// Header values are strings on both transports; numbers and booleans are taken as their text and
/// `null` as absent, while nested values cannot be a header and are refused.
fn header_map(
    transport: Transport,
    name: &str,
    map: &Map<String, Value>,
    keep: impl Fn(&str) -> bool,
) -> Result<Headers, EnvelopeError> {
    let mut headers = Headers::new();
    for (key, value) in map {
        let canonical = canonical_header_name(key);
        if !keep(&canonical) {
            continue;
        }
        let text = match value {
            Value::Null => continue,
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => {
                return Err(field(
                    transport,
                    &format!("{name}.{key}"),
                    format!("expected a string, found {}", describe(other)),
                ));
            }
        };
        headers.append(canonical, text);
    }
    Ok(headers)
}

/// Pub/Sub's REST form is standard base64; URL-safe and unpadded forms are accepted too because client
/// libraries differ.
fn decode_base64(text: &str) -> Result<Vec<u8>, String> {
    let config = GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    GeneralPurpose::new(&alphabet::STANDARD, config)
        .decode(text)
        .or_else(|_| GeneralPurpose::new(&alphabet::URL_SAFE, config).decode(text))
        .map_err(|e| format!("not base64: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_are_canonicalised() {
        for key in ["X-Shopify-Topic", "x-shopify-topic", "Shopify-Topic", "shopify_topic", "X_SHOPIFY_TOPIC"]
        {
            assert_eq!(canonical_header_name(key), "x-shopify-topic", "{key}");
        }
        assert_eq!(canonical_header_name("Content-Type"), "Content-Type");
    }

    #[test]
    fn pubsub_errors_name_the_field() {
        let err = from_pubsub(br#"{"message":{"data":"***"}}"#).unwrap_err();
        assert!(err.to_string().starts_with("Pub/Sub envelope: field `message.data`: not base64"), "{err}");
        let err = from_pubsub(br#"{"message":{"attributes":{}}}"#).unwrap_err();
        assert_eq!(err.to_string(), "Pub/Sub envelope: field `message.data`: required but missing");
    }

    #[test]
    fn eventbridge_refuses_other_detail_types() {
        let err =
            from_eventbridge(br#"{"detail-type":"EC2 Instance State-change","detail":{}}"#).unwrap_err();
        assert_eq!(err, EnvelopeError::NotShopify("EC2 Instance State-change".into()));
    }
}
