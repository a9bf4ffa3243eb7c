//! BigCommerce callback authenticity: the Standard Webhooks signature (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature`, HMAC-SHA256 over `id.timestamp.body`) and/or the custom headers chosen when the
//! hook was created, which BigCommerce echoes on every callback.
//!
//! The HMAC key is the app's client secret as raw bytes (BigCommerce's samples base64-encode it only
//! because the `standardwebhooks` library expects base64); a secret written `whsec_<base64>` is decoded
//! as Standard Webhooks secrets are. Timestamps are accepted 5 minutes either way; comparisons are
//! constant-time. Nothing here reads the body's JSON.

use crate::headers::Headers;
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD};
use hmac::{Hmac, Mac};
use sha2::Sha256;

pub const ID_HEADER: &str = "webhook-id";
pub const TIMESTAMP_HEADER: &str = "webhook-timestamp";
pub const SIGNATURE_HEADER: &str = "webhook-signature";
/// How far a signature's timestamp may be from the edge's clock, either way.
pub const TOLERANCE_SECS: i64 = 300;

/// Why a callback was refused. `NotConfigured` is nudge's problem (500); every other one is 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("bigcommerce: no client_secret or auth_headers configured, nothing to verify callbacks with")]
    NotConfigured,
    #[error("missing header `{0}`")]
    MissingHeader(String),
    #[error("header `{0}` does not have the configured value")]
    WrongHeader(String),
    #[error("missing Standard Webhooks signature headers (webhook-id, webhook-timestamp, webhook-signature)")]
    Unsigned,
    #[error("header `{0}` is not readable")]
    BadHeader(&'static str),
    #[error("webhook-timestamp {ts} is outside the 5-minute tolerance")]
    Stale { ts: i64 },
    #[error("no webhook-signature matches")]
    BadSignature,
}

impl VerifyError {
    pub fn http_status(&self) -> u16 {
        match self {
            VerifyError::NotConfigured => 500,
            _ => 401,
        }
    }
}

/// The HMAC key for a configured secret: `whsec_<base64>` decoded, anything else as raw bytes.
pub fn signing_key(secret: &str) -> Vec<u8> {
    if let Some(b64) = secret.strip_prefix("whsec_") {
        let trimmed = b64.trim_end_matches('=');
        if let Ok(bytes) = STANDARD_NO_PAD.decode(trimmed) {
            return bytes;
        }
    }
    secret.as_bytes().to_vec()
}

/// `v1,<base64 HMAC-SHA256(key, "{id}.{timestamp}.{body}")>`.
pub fn sign(secret: &str, webhook_id: &str, timestamp: i64, body: &[u8]) -> String {
    format!("v1,{}", STANDARD.encode(mac(&signing_key(secret), webhook_id, timestamp, body)))
}

fn mac(key: &[u8], id: &str, ts: i64, body: &[u8]) -> Vec<u8> {
    let mut m = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes a key of any length");
    m.update(id.as_bytes());
    m.update(b".");
    m.update(ts.to_string().as_bytes());
    m.update(b".");
    m.update(body);
    m.finalize().into_bytes().to_vec()
}

/// Constant-time equality of two byte strings (the length is not secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Whether the request carries any of the three Standard Webhooks headers.
pub fn has_signature_headers(h: &Headers) -> bool {
    [ID_HEADER, TIMESTAMP_HEADER, SIGNATURE_HEADER].iter().any(|n| h.get_raw(n).is_some())
}

/// Checks the Standard Webhooks signature as of `now_ms`; returns the `webhook-id`.
pub fn verify_signature(h: &Headers, body: &[u8], secret: &str, now_ms: i64) -> Result<String, VerifyError> {
    let id = h.get(ID_HEADER).ok_or(VerifyError::Unsigned)?;
    let ts_text = h.get(TIMESTAMP_HEADER).ok_or(VerifyError::Unsigned)?;
    let sigs = h.get(SIGNATURE_HEADER).ok_or(VerifyError::Unsigned)?;
    if id.is_empty() || id.contains('.') || id.len() > 256 {
        return Err(VerifyError::BadHeader(ID_HEADER));
    }
    let ts: i64 = ts_text.trim().parse().map_err(|_| VerifyError::BadHeader(TIMESTAMP_HEADER))?;
    let now = now_ms.div_euclid(1000);
    if now.saturating_sub(ts) > TOLERANCE_SECS || ts.saturating_sub(now) > TOLERANCE_SECS {
        return Err(VerifyError::Stale { ts });
    }
    let expected = STANDARD.encode(mac(&signing_key(secret), id, ts, body));
    let mut matched = false;
    for token in sigs.split(' ').filter(|t| !t.is_empty()) {
        if let Some(("v1", sig)) = token.split_once(',') {
            matched |= constant_time_eq(sig.as_bytes(), expected.as_bytes());
        }
    }
    if matched { Ok(id.to_string()) } else { Err(VerifyError::BadSignature) }
}

/// Checks every configured custom header (name → expected value) in constant time.
pub fn verify_auth_headers(h: &Headers, expected: &[(String, String)]) -> Result<(), VerifyError> {
    let mut first_wrong = None;
    for (name, value) in expected {
        match h.get_raw(name) {
            None => return Err(VerifyError::MissingHeader(name.clone())),
            Some(got) => {
                if !constant_time_eq(got, value.as_bytes()) && first_wrong.is_none() {
                    first_wrong = Some(name.clone());
                }
            }
        }
    }
    first_wrong.map_or(Ok(()), |n| Err(VerifyError::WrongHeader(n)))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VECTOR_BODY: &str = r#"{"scope":"store/order/created","store_id":"1025646","data":{"type":"order","id":250},"hash":"dd70c0976e06b67aaf671e73f49dcb79230ebf9d","created_at":1777629600,"producer":"stores/abc123"}"#;

    fn headers(id: &str, ts: &str, sig: &str) -> Headers {
        Headers::from_pairs([
            ("webhook-id", id.as_bytes()),
            ("webhook-timestamp", ts.as_bytes()),
            ("webhook-signature", sig.as_bytes()),
        ])
    }

    #[test]
    fn the_documented_bigcommerce_vector_validates() {
        let sig = "v1,fcwTuHz/Trd8FR+p1Ai4PAmF9uPifKuY3ch1qtrtWpc=";
        assert_eq!(sign("bc_client_secret_abc", "msg_2b1e4c", 1_777_629_600, VECTOR_BODY.as_bytes()), sig);
        let h = headers("msg_2b1e4c", "1777629600", sig);
        let now = 1_777_629_600_000;
        assert_eq!(
            verify_signature(&h, VECTOR_BODY.as_bytes(), "bc_client_secret_abc", now).as_deref(),
            Ok("msg_2b1e4c")
        );
        // One body byte, the id or the timestamp changed: invalid.
        let mut body = VECTOR_BODY.as_bytes().to_vec();
        body[10] ^= 1;
        assert_eq!(verify_signature(&h, &body, "bc_client_secret_abc", now), Err(VerifyError::BadSignature));
        let h2 = headers("msg_2b1e4d", "1777629600", sig);
        assert!(verify_signature(&h2, VECTOR_BODY.as_bytes(), "bc_client_secret_abc", now).is_err());
        let h3 = headers("msg_2b1e4c", "1777629601", sig);
        assert!(verify_signature(&h3, VECTOR_BODY.as_bytes(), "bc_client_secret_abc", now).is_err());
    }

    #[test]
    fn the_official_standard_webhooks_vector_validates_with_a_whsec_secret() {
        let body = br#"{"email":"test@example.com","username":"test_user"}"#;
        let h = headers(
            "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk",
            "1649367553",
            "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=",
        );
        let secret = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
        assert!(verify_signature(&h, body, secret, 1_649_367_553_000).is_ok());
    }

    #[test]
    fn any_of_several_signatures_and_the_tolerance_both_ways() {
        let body = b"{}";
        let good = sign("s", "m1", 1_000, body);
        let h = headers("m1", "1000", &format!("v1,AAAA v1a,xyz {good}"));
        assert!(verify_signature(&h, body, "s", 1_000_000).is_ok());
        assert!(verify_signature(&h, body, "s", 1_300_000).is_ok());
        assert_eq!(verify_signature(&h, body, "s", 1_301_000), Err(VerifyError::Stale { ts: 1000 }));
        assert_eq!(verify_signature(&h, body, "s", 699_000), Err(VerifyError::Stale { ts: 1000 }));
        let h = headers("m1", "1000", "v2,whatever");
        assert_eq!(verify_signature(&h, body, "s", 1_000_000), Err(VerifyError::BadSignature));
        let h = headers("m1", "soon", &good);
        assert_eq!(verify_signature(&h, body, "s", 1_000_000), Err(VerifyError::BadHeader(TIMESTAMP_HEADER)));
    }

    #[test]
    fn auth_headers_must_all_be_present_and_equal() {
        let want = vec![("X-Nudge-Token".to_string(), "t0k3n".to_string())];
        let ok = Headers::from_pairs([("x-nudge-token", b"t0k3n".as_slice())]);
        assert!(verify_auth_headers(&ok, &want).is_ok());
        let wrong = Headers::from_pairs([("x-nudge-token", b"t0k3m".as_slice())]);
        assert_eq!(verify_auth_headers(&wrong, &want), Err(VerifyError::WrongHeader("X-Nudge-Token".into())));
        assert!(matches!(verify_auth_headers(&Headers::new(), &want), Err(VerifyError::MissingHeader(_))));
    }
}
