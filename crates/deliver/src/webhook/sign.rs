//! The Standard Webhooks v1 signature: HMAC-SHA256, keyed with the decoded secret, over
//! `"{webhook-id}.{webhook-timestamp}.{body}"`, sent as `v1,<standard base64 with padding>`.

use super::config::WebhookSecret;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;

/// The bytes that are signed: id, timestamp and the body exactly as sent, joined by `.`.
pub fn signed_content(id: &str, timestamp: i64, body: &[u8]) -> Vec<u8> {
    let mut content = Vec::with_capacity(id.len() + 24 + body.len());
    content.extend_from_slice(id.as_bytes());
    content.push(b'.');
    content.extend_from_slice(timestamp.to_string().as_bytes());
    content.push(b'.');
    content.extend_from_slice(body);
    content
}

/// The `webhook-signature` value for one secret: `v1,<base64 of the MAC>`.
pub fn signature(secret: &WebhookSecret, id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.key()).expect("HMAC takes keys of any length");
    mac.update(&signed_content(id, timestamp, body));
    format!("v1,{}", STANDARD.encode(mac.finalize().into_bytes()))
}

/// The `webhook-signature` header: one `v1` signature per secret, space-delimited (rotation).
pub fn signature_header(secrets: &[WebhookSecret], id: &str, timestamp: i64, body: &[u8]) -> String {
    secrets.iter().map(|s| signature(s, id, timestamp, body)).collect::<Vec<_>>().join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    // The official vector of the Standard Webhooks reference library.
    const SECRET: &str = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
    const ID: &str = "msg_27UH4WbU6Z5A5EzD8u03UvzRbpk";
    const TS: i64 = 1649367553;
    const BODY: &[u8] = br#"{"email":"test@example.com","username":"test_user"}"#;
    const EXPECTED: &str = "v1,tZ1I4/hDygAJgO5TYxiSd6Sd0kDW6hPenDe+bTa3Kkw=";

    fn raw_key(bytes: &[u8]) -> WebhookSecret {
        // A key of the raw, undecoded text: what a signer that forgot to decode would use.
        let encoded = STANDARD.encode(bytes);
        WebhookSecret::parse(&encoded).unwrap()
    }

    #[test]
    fn official_vector() {
        assert_eq!(signature(&WebhookSecret::parse(SECRET).unwrap(), ID, TS, BODY), EXPECTED);
        // Without the prefix or padding the key is the same, and so is the signature.
        assert_eq!(
            signature(&WebhookSecret::parse("C2FVsBQIhrscChlQIMV+b5sSYspob7oD").unwrap(), ID, TS, BODY),
            EXPECTED
        );
    }

    #[test]
    fn negative_variants_give_the_documented_other_signatures() {
        let key = WebhookSecret::parse(SECRET).unwrap();
        let undecoded_with_prefix = signature(&raw_key(SECRET.as_bytes()), ID, TS, BODY);
        assert_eq!(undecoded_with_prefix, "v1,n6rJjo/CnEaFyJ+uWWflwGkHSGocTY6bAD6ImjhpG8E=");
        let undecoded = signature(&raw_key(&SECRET.as_bytes()[6..]), ID, TS, BODY);
        assert_eq!(undecoded, "v1,h4qX9FKaAseJeepyR4bu2aQDOFPAVQpYe6yuWRsWhwE=");
        let mut newline = BODY.to_vec();
        newline.push(b'\n');
        assert_eq!(signature(&key, ID, TS, &newline), "v1,vx27exWJbE7+6XRHIZvK7r62heXfvAx9qjUZC7JfqME=");
        assert_eq!(signature(&key, ID, TS + 1, BODY), "v1,p88Qdebppme2DLlpxbeTQjxMhGP8IvLzuOTyeHtk77w=");
        for wrong in [&undecoded_with_prefix, &undecoded] {
            assert_ne!(wrong, EXPECTED);
        }
        // Hex is not the encoding: the same MAC in hex must not be what is sent.
        let mut mac = Hmac::<Sha256>::new_from_slice(key.key()).unwrap();
        mac.update(&signed_content(ID, TS, BODY));
        let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(hex, "b59d48e3f843ca000980ee5363189277a49dd240d6ea13de9c37be6d36b72a4c");
        assert_ne!(format!("v1,{hex}"), EXPECTED);
    }

    #[test]
    fn rotation_signs_with_every_secret() {
        let new = WebhookSecret::parse("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw3Mq2kbhnVQs=").unwrap();
        let old = WebhookSecret::parse(SECRET).unwrap();
        let header = signature_header(&[new.clone(), old], ID, TS, BODY);
        let parts: Vec<&str> = header.split(' ').collect();
        assert_eq!(parts.len(), 2);
        assert_eq!(parts[0], signature(&new, ID, TS, BODY));
        assert_eq!(parts[1], EXPECTED);
    }

    #[test]
    fn signed_content_joins_with_dots() {
        assert_eq!(signed_content("msg_1", 5, b"{}"), b"msg_1.5.{}");
    }
}
