//! Klaviyo system-webhook authenticity: `Klaviyo-Signature` is the lower-case hex HMAC-SHA256, keyed with
//! the webhook's `secret_key`, of the raw body followed by the `Klaviyo-Timestamp` header exactly as sent
//! (no separator). The timestamp has been seen both as an IMF-fixdate (`Fri, 01 May 2026 10:00:00 GMT`)
//! and as ISO 8601, so it is signed verbatim and only parsed for the replay window. Comparisons are
//! constant-time. Nothing here reads the body's JSON.

use crate::bigcommerce::verify::constant_time_eq;
use crate::headers::Headers;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub const SIGNATURE_HEADER: &str = "klaviyo-signature";
pub const TIMESTAMP_HEADER: &str = "klaviyo-timestamp";
pub const WEBHOOK_ID_HEADER: &str = "klaviyo-webhook-id";

/// Why a request was refused. `NotConfigured` is nudge's problem (500); every other one is 401.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("klaviyo: no webhook secret configured, nothing to verify requests with")]
    NotConfigured,
    #[error("missing header `{0}`")]
    Missing(&'static str),
    #[error("header `{0}` is not readable")]
    BadHeader(&'static str),
    #[error("Klaviyo-Signature does not match")]
    BadSignature,
    #[error("Klaviyo-Timestamp `{0}` is outside the allowed skew")]
    Stale(String),
}

impl VerifyError {
    pub fn http_status(&self) -> u16 {
        match self {
            VerifyError::NotConfigured => 500,
            _ => 401,
        }
    }
}

/// The hex HMAC-SHA256 of `body || timestamp` under `secret`, as Klaviyo sends it in `Klaviyo-Signature`.
pub fn sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    m.update(body);
    m.update(timestamp.as_bytes());
    hex::encode(m.finalize().into_bytes())
}

/// Reads a `Klaviyo-Timestamp`: IMF-fixdate, RFC 3339 / ISO 8601 with an offset, or Unix seconds.
pub fn parse_timestamp(text: &str) -> Option<OffsetDateTime> {
    let t = text.trim();
    if let Ok(at) = OffsetDateTime::parse(t, &Rfc3339) {
        return Some(at);
    }
    if let Ok(at) = OffsetDateTime::parse(t, &time::format_description::well_known::Rfc2822) {
        return Some(at);
    }
    // IMF-fixdate: `Fri, 01 May 2026 10:00:00 GMT` (RFC 9110), the zone always `GMT`.
    if let Some(rest) = t.strip_suffix(" GMT") {
        let fmt = time::macros::format_description!(
            "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second]"
        );
        if let Ok(p) = time::PrimitiveDateTime::parse(rest, &fmt) {
            return Some(p.assume_utc());
        }
    }
    // ISO without a offset (`2026-05-01T10:00:00`), read as UTC.
    let iso = time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]");
    if let Ok(p) = time::PrimitiveDateTime::parse(t.trim_end_matches('Z'), &iso) {
        return Some(p.assume_utc());
    }
    if !t.is_empty() && t.len() <= 12 && t.bytes().all(|b| b.is_ascii_digit()) {
        return OffsetDateTime::from_unix_timestamp(t.parse().ok()?).ok();
    }
    None
}

/// Checks the signature against every configured secret (rotation), then the timestamp's skew as of
/// `now_ms`; returns the `Klaviyo-Webhook-Id`.
pub fn verify(
    h: &Headers,
    body: &[u8],
    secrets: &[String],
    max_skew_secs: i64,
    now_ms: i64,
) -> Result<String, VerifyError> {
    if secrets.iter().all(|s| s.is_empty()) {
        return Err(VerifyError::NotConfigured);
    }
    let sig = h.get_raw(SIGNATURE_HEADER).ok_or(VerifyError::Missing("Klaviyo-Signature"))?;
    let ts_raw = h.get_raw(TIMESTAMP_HEADER).ok_or(VerifyError::Missing("Klaviyo-Timestamp"))?;
    let ts = std::str::from_utf8(ts_raw).map_err(|_| VerifyError::BadHeader("Klaviyo-Timestamp"))?;
    let sig = sig.trim_ascii().to_ascii_lowercase();
    let mut matched = false;
    for s in secrets.iter().filter(|s| !s.is_empty()) {
        matched |= constant_time_eq(sign(s, ts, body).as_bytes(), &sig);
    }
    if !matched {
        return Err(VerifyError::BadSignature);
    }
    let at = parse_timestamp(ts).ok_or(VerifyError::BadHeader("Klaviyo-Timestamp"))?;
    let skew = (at.unix_timestamp() - now_ms.div_euclid(1000)).abs();
    if skew > max_skew_secs {
        return Err(VerifyError::Stale(ts.chars().take(64).collect()));
    }
    let id = h.get(WEBHOOK_ID_HEADER).ok_or(VerifyError::Missing("Klaviyo-Webhook-Id"))?.trim();
    if id.is_empty() || id.len() > 256 {
        return Err(VerifyError::BadHeader("Klaviyo-Webhook-Id"));
    }
    Ok(id.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "klaviyo_webhook_secret_0001";
    const TS: &str = "Fri, 01 May 2026 10:00:00 GMT";
    const BODY: &str = r#"{"data":[{"topic":"event:klaviyo.opened_email","external_id":"evt_01","payload":{}}],"meta":{"klaviyo_account_id":"AbC123","klaviyo_webhook_id":"01HWEBHOOK","timestamp":"2026-05-01T10:00:00+00:00"}}"#;
    const SIG: &str = "2146a9bf6cc8db08d36f0fda921b759ee11d91fd31f6150565a22586cd95ce45";

    fn headers(sig: &str, ts: &str) -> Headers {
        Headers::from_pairs([
            ("Klaviyo-Signature", sig),
            ("Klaviyo-Timestamp", ts),
            ("Klaviyo-Webhook-Id", "01HWEBHOOK"),
        ])
    }

    fn now() -> i64 {
        parse_timestamp(TS).unwrap().unix_timestamp() * 1000
    }

    #[test]
    fn the_documented_vector_validates_and_the_timestamp_first_order_does_not() {
        assert_eq!(sign(SECRET, TS, BODY.as_bytes()), SIG);
        let ok = verify(&headers(SIG, TS), BODY.as_bytes(), &[SECRET.into()], 300, now());
        assert_eq!(ok.as_deref(), Ok("01HWEBHOOK"));
        // Timestamp first: a different MAC, refused.
        let mut m = Hmac::<Sha256>::new_from_slice(SECRET.as_bytes()).unwrap();
        m.update(TS.as_bytes());
        m.update(BODY.as_bytes());
        let ts_first = hex::encode(m.finalize().into_bytes());
        assert!(ts_first.starts_with("734a9c19") && ts_first.ends_with("6801"), "{ts_first}");
        let r = verify(&headers(&ts_first, TS), BODY.as_bytes(), &[SECRET.into()], 300, now());
        assert_eq!(r, Err(VerifyError::BadSignature));
        // Base64 of the same MAC, or the timestamp re-formatted as ISO: refused.
        use base64::Engine as _;
        let b64 = base64::engine::general_purpose::STANDARD.encode(hex::decode(SIG).unwrap());
        let r = verify(&headers(&b64, TS), BODY.as_bytes(), &[SECRET.into()], 300, now());
        assert_eq!(r, Err(VerifyError::BadSignature));
        let r = verify(&headers(SIG, "2026-05-01T10:00:00Z"), BODY.as_bytes(), &[SECRET.into()], 300, now());
        assert_eq!(r, Err(VerifyError::BadSignature));
        // Upper-case hex is the same signature.
        let r = verify(&headers(&SIG.to_uppercase(), TS), BODY.as_bytes(), &[SECRET.into()], 300, now());
        assert!(r.is_ok());
    }

    #[test]
    fn any_configured_secret_and_the_skew_both_ways() {
        let secrets = vec!["old-secret".to_string(), SECRET.to_string()];
        assert!(verify(&headers(SIG, TS), BODY.as_bytes(), &secrets, 300, now()).is_ok());
        assert!(verify(&headers(SIG, TS), BODY.as_bytes(), &secrets, 300, now() + 300_000).is_ok());
        assert!(matches!(
            verify(&headers(SIG, TS), BODY.as_bytes(), &secrets, 300, now() + 301_000),
            Err(VerifyError::Stale(_))
        ));
        assert!(matches!(
            verify(&headers(SIG, TS), BODY.as_bytes(), &secrets, 300, now() - 301_000),
            Err(VerifyError::Stale(_))
        ));
        assert_eq!(
            verify(&headers(SIG, TS), BODY.as_bytes(), &[], 300, now()),
            Err(VerifyError::NotConfigured)
        );
    }

    #[test]
    fn both_timestamp_forms_parse() {
        let a = parse_timestamp("Fri, 01 May 2026 10:00:00 GMT").unwrap();
        assert_eq!(parse_timestamp("2026-05-01T10:00:00+00:00"), Some(a));
        assert_eq!(parse_timestamp("2026-05-01T12:00:00+02:00"), Some(a));
        assert_eq!(parse_timestamp("2026-05-01T10:00:00Z"), Some(a));
        assert_eq!(parse_timestamp("2026-05-01T10:00:00"), Some(a));
        assert_eq!(parse_timestamp(&a.unix_timestamp().to_string()), Some(a));
        assert_eq!(parse_timestamp("yesterday"), None);
    }
}
