//! Standard Webhooks v1 verification, done the way the reference libraries do it: the three headers
//! looked up case-insensitively, the timestamp within 5 minutes either way of "now", the signature header
//! split on spaces into `version,base64` tokens (split on the first comma; tokens without one and versions
//! other than `v1` skipped), any `v1` match accepted, compared in constant time, UTF-8 body required.

use base64::Engine;
use base64::alphabet;
use base64::engine::general_purpose::STANDARD;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// How far a timestamp may be from "now", either way.
pub const TOLERANCE_SECS: i64 = 300;

/// Why a delivery failed verification.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("missing header {0}")]
    MissingHeader(&'static str),
    #[error("webhook-timestamp is not an integer")]
    BadTimestamp,
    #[error("message timestamp too old")]
    TooOld,
    #[error("message timestamp too new")]
    TooNew,
    #[error("no matching signature found")]
    NoMatchingSignature,
    #[error("the body is not UTF-8")]
    InvalidPayload,
}

/// Decodes a `whsec_` secret as the Python library does (prefix optional, padding optional).
pub fn decode_secret(secret: &str) -> Option<Vec<u8>> {
    let text = secret.trim();
    let text = text.strip_prefix("whsec_").unwrap_or(text);
    let engine = GeneralPurpose::new(
        &alphabet::STANDARD,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    engine.decode(text).ok().filter(|k| !k.is_empty())
}

/// The `v1,<base64>` signature of `id.timestamp.body` under `key`.
pub fn sign(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(id.as_bytes());
    mac.update(b".");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// Verifies one delivery; `headers` are (name, value) pairs in any case. Returns the id and timestamp.
pub fn verify(
    key: &[u8],
    headers: &[(String, String)],
    body: &[u8],
    now: i64,
) -> Result<(String, i64), VerifyError> {
    let get = |name: &'static str| {
        headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
            .ok_or(VerifyError::MissingHeader(name))
    };
    let id = get("webhook-id")?;
    let ts_text = get("webhook-timestamp")?;
    let sig_header = get("webhook-signature")?;
    let ts: i64 = ts_text.trim().parse().map_err(|_| VerifyError::BadTimestamp)?;
    if now - ts > TOLERANCE_SECS {
        return Err(VerifyError::TooOld);
    }
    if ts > now + TOLERANCE_SECS {
        return Err(VerifyError::TooNew);
    }
    if std::str::from_utf8(body).is_err() {
        return Err(VerifyError::InvalidPayload);
    }
    let expected = sign(key, id, ts, body);
    let expected_b64 = &expected.as_bytes()[3..];
    let matched = sig_header
        .split(' ')
        .filter_map(|token| token.split_once(','))
        .any(|(version, sig)| version == "v1" && constant_time_eq(sig.as_bytes(), expected_b64));
    if !matched {
        return Err(VerifyError::NoMatchingSignature);
    }
    Ok((id.to_string(), ts))
}

/// Compares without an early exit on the first differing byte.
pub(crate) fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TS: i64 = 1649367553;
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const SIG: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    fn headers(sig: &str, ts: i64) -> Vec<(String, String)> {
        vec![
            ("Webhook-Id".into(), ID.into()),
            ("WEBHOOK-TIMESTAMP".into(), ts.to_string()),
            ("webhook-signature".into(), sig.into()),
        ]
    }

    fn key() -> Vec<u8> {
        decode_secret(SECRET).unwrap()
    }

    #[test]
    fn official_vector_verifies_and_each_negative_variant_fails() {
        assert_eq!(verify(&key(), &headers(SIG, TS), BODY, TS), Ok((ID.to_string(), TS)));
        for wrong in [
            "v1,n6rJjo/CnEaFyJ+uWWflwGkHSGocTY6bAD6ImjhpG8E=",
            "v1,h4qX9FKaAseJeepyR4bu2aQDOFPAVQpYe6yuWRsWhwE=",
            "v1,vx27exWJbE7+6XRHIZvK7r62heXfvAx9qjUZC7JfqME=",
            "v1,p88Qdebppme2DLlpxbeTQjxMhGP8IvLzuOTyeHtk77w=",
            "v1,b59d48e3f843ca000980ee5363189277a49dd240d6ea13de9c37be6d36b72a4c",
        ] {
            assert_eq!(verify(&key(), &headers(wrong, TS), BODY, TS), Err(VerifyError::NoMatchingSignature));
        }
        let mut newline = BODY.to_vec();
        newline.push(b'\n');
        assert_eq!(verify(&key(), &headers(SIG, TS), &newline, TS), Err(VerifyError::NoMatchingSignature));
        assert!(verify(&key(), &headers(SIG, TS + 1), BODY, TS).is_err(), "the timestamp is signed");
    }

    #[test]
    fn five_minute_tolerance_both_ways() {
        let k = key();
        assert_eq!(verify(&k, &headers(SIG, TS), BODY, TS + 301), Err(VerifyError::TooOld));
        assert_eq!(verify(&k, &headers(SIG, TS), BODY, TS - 301), Err(VerifyError::TooNew));
        verify(&k, &headers(SIG, TS), BODY, TS + 300).unwrap();
        verify(&k, &headers(SIG, TS), BODY, TS - 300).unwrap();
        assert_eq!(
            verify(
                &k,
                &headers(SIG, 0)
                    .iter()
                    .map(|(n, v)| (
                        n.clone(),
                        if n == "WEBHOOK-TIMESTAMP" { "soon".into() } else { v.clone() }
                    ))
                    .collect::<Vec<_>>(),
                BODY,
                TS
            ),
            Err(VerifyError::BadTimestamp)
        );
    }

    #[test]
    fn any_v1_in_a_space_delimited_list_matches() {
        let list = format!("v1,Zm9v v1a,anything nocomma {SIG}");
        verify(&key(), &headers(&list, TS), BODY, TS).unwrap();
        let only_other_versions = SIG.replace("v1,", "v2,");
        assert!(verify(&key(), &headers(&only_other_versions, TS), BODY, TS).is_err());
        assert!(verify(&key(), &headers("nocomma", TS), BODY, TS).is_err());
    }

    #[test]
    fn every_header_is_required() {
        for missing in ["webhook-id", "webhook-timestamp", "webhook-signature"] {
            let h: Vec<_> =
                headers(SIG, TS).into_iter().filter(|(n, _)| !n.eq_ignore_ascii_case(missing)).collect();
            assert!(matches!(verify(&key(), &h, BODY, TS), Err(VerifyError::MissingHeader(_))), "{missing}");
        }
        assert_eq!(verify(&key(), &headers(SIG, TS), b"\xff\xfe", TS), Err(VerifyError::InvalidPayload));
    }

    #[test]
    fn secrets_with_and_without_prefix_and_padding_are_one_key() {
        assert_eq!(decode_secret("C2FVsBQIhrscChlQIMV+b5sSYspob7oD"), Some(key()));
        assert_eq!(decode_secret("whsec_"), None);
        assert_eq!(
            decode_secret("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw3Mq2kbhnVQs"),
            decode_secret("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw3Mq2kbhnVQs=")
        );
    }
}
