//! The Adobe Commerce Webhooks module: synchronous hooks, answered with an operation
//! (`{"op":"success"}`) inside Commerce's own request.
//!
//! With signature verification enabled in Commerce (Stores > Configuration > Adobe Services > Webhooks),
//! each request carries `x-adobe-commerce-webhook-signature`: the base64 RSA-SHA256 signature, by
//! Commerce's private key, of the **base64 encoding of the body** (not of the body itself). nudge requires
//! it: an unsigned hook is refused.
//!
//! The body is `{"eventName": "<hook>", "data": {...}}`. It carries no delivery or event id, so a retry is
//! recognised by the digest of its body.

use super::verify::{PublicKey, decode_signature};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use sha2::{Digest, Sha256};

pub const SIGNATURE: &str = "x-adobe-commerce-webhook-signature";

/// The operation answered once a hook is stored.
pub fn success() -> serde_json::Value {
    serde_json::json!({ "op": "success" })
}

/// What Commerce signs: the base64 (standard alphabet, padded) of the raw body.
pub fn signed_content(body: &[u8]) -> String {
    STANDARD.encode(body)
}

/// True when `header` is `key`'s signature of this body.
pub fn signature_valid(key: &PublicKey, header: &str, body: &[u8]) -> bool {
    decode_signature(header).is_some_and(|sig| key.verify(signed_content(body).as_bytes(), &sig))
}

/// The hook's event name, read from a verified body.
pub fn event_name(body: &[u8]) -> Result<String, String> {
    #[derive(serde::Deserialize)]
    struct Head {
        #[serde(rename = "eventName")]
        event_name: Option<String>,
    }
    let head: Head =
        serde_json::from_slice(body).map_err(|e| format!("the body is not a hook's JSON: {e}"))?;
    match head.event_name {
        Some(n) if !n.is_empty() && n.len() <= 200 && !n.chars().any(char::is_control) => Ok(n),
        Some(_) => Err("`eventName` must be 1 to 200 printable characters".into()),
        None => Err("the body has no `eventName`".into()),
    }
}

/// The part of a dedupe key naming one hook body: the first 16 bytes of its SHA-256, hex.
pub fn body_digest(body: &[u8]) -> String {
    hex::encode(&Sha256::digest(body)[..16])
}
