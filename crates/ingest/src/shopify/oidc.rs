//! The OpenID Connect token Google Pub/Sub puts on an authenticated push (`Authorization: Bearer <JWT>`),
//! checked offline against keys the operator configured.
//!
//! Lives here: reading the keys (a JWKS document as Google publishes it at
//! `https://www.googleapis.com/oauth2/v3/certs`, Google's `{kid: certificate PEM}` map from
//! `…/oauth2/v1/certs`, or PEM blocks: certificates, `PUBLIC KEY` or `RSA PUBLIC KEY`), the RS256
//! signature check (ring's PKCS#1 v1.5 SHA-256 verifier on the key's modulus and exponent), and the claim
//! rules: `iss` is Google's, `aud` is the configured audience, `email` is the configured service account
//! with `email_verified` true, `exp` not past and `iat` not ahead of the clock (both with a small leeway).
//! Not here: fetching keys (nudge cannot reach Google; the operator refreshes them) or the envelope.
//!
//! Every input gives `Ok` or an error; the error never repeats the token.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};
use serde_json::Value;

/// The issuers Google writes in the tokens it signs.
pub const GOOGLE_ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];

/// How far `exp` and `iat` may be off the edge's clock, in seconds.
pub const LEEWAY_SECS: i64 = 60;

/// Longer tokens are refused unread (Google's are about a kilobyte).
const MAX_TOKEN_BYTES: usize = 16 * 1024;

/// One RSA public key: its id when the source named one, modulus and exponent as big-endian bytes.
#[derive(Clone, PartialEq, Eq)]
pub struct RsaKey {
    pub kid: Option<String>,
    n: Vec<u8>,
    e: Vec<u8>,
}

impl std::fmt::Debug for RsaKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RsaKey").field("kid", &self.kid).field("bits", &(self.n.len() * 8)).finish()
    }
}

/// The keys tokens may be signed with.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeySet {
    pub keys: Vec<RsaKey>,
}

impl KeySet {
    /// Reads keys from a JWKS document, a `{kid: PEM}` map, or PEM text. A set with no usable RSA key is
    /// an error naming what was found.
    pub fn parse(text: &str) -> Result<KeySet, String> {
        let trimmed = text.trim();
        let keys = if trimmed.starts_with('{') {
            let v: Value = serde_json::from_str(trimmed).map_err(|e| format!("invalid JSON: {e}"))?;
            match v.get("keys") {
                Some(Value::Array(list)) => jwks_keys(list)?,
                Some(_) => return Err("`keys` must be an array of JWKs".into()),
                None => pem_map_keys(&v)?,
            }
        } else {
            pem_keys(trimmed, None)?
        };
        if keys.is_empty() {
            return Err("no RSA signing key found".into());
        }
        Ok(KeySet { keys })
    }
}

fn jwks_keys(list: &[Value]) -> Result<Vec<RsaKey>, String> {
    let mut keys = Vec::new();
    for (i, k) in list.iter().enumerate() {
        let field = |name: &str| k.get(name).and_then(Value::as_str);
        if field("kty") != Some("RSA") {
            continue; // Other key types cannot verify RS256.
        }
        if field("use").is_some_and(|u| u != "sig") {
            continue;
        }
        let n = field("n").ok_or_else(|| format!("keys[{i}].n: required"))?;
        let e = field("e").ok_or_else(|| format!("keys[{i}].e: required"))?;
        let decode = |name: &str, text: &str| {
            URL_SAFE_NO_PAD
                .decode(text.trim_end_matches('='))
                .map_err(|e| format!("keys[{i}].{name}: not base64url: {e}"))
        };
        keys.push(RsaKey {
            kid: field("kid").map(str::to_string),
            n: strip_zeros(decode("n", n)?),
            e: strip_zeros(decode("e", e)?),
        });
    }
    Ok(keys)
}

fn pem_map_keys(v: &Value) -> Result<Vec<RsaKey>, String> {
    let map = v.as_object().ok_or("expected a JWKS document or a {kid: PEM} object")?;
    let mut keys = Vec::new();
    for (kid, pem) in map {
        let pem = pem.as_str().ok_or_else(|| format!("`{kid}`: expected a PEM string"))?;
        keys.extend(pem_keys(pem, Some(kid)).map_err(|e| format!("`{kid}`: {e}"))?);
    }
    Ok(keys)
}

/// Every PEM block of a kind that holds an RSA public key.
fn pem_keys(text: &str, kid: Option<&str>) -> Result<Vec<RsaKey>, String> {
    let mut keys = Vec::new();
    let mut rest = text;
    while let Some(start) = rest.find("-----BEGIN ") {
        let after = &rest[start + 11..];
        let label_end = after.find("-----").ok_or("unterminated PEM header")?;
        let label = &after[..label_end];
        let body_start = &after[label_end + 5..];
        let end_marker = format!("-----END {label}-----");
        let body_end = body_start.find(&end_marker).ok_or_else(|| format!("no `{end_marker}`"))?;
        let b64: String = body_start[..body_end].chars().filter(|c| !c.is_whitespace()).collect();
        let der = STANDARD.decode(b64).map_err(|e| format!("{label}: not base64: {e}"))?;
        let (n, e) = match label {
            "CERTIFICATE" => der::certificate_rsa(&der),
            "PUBLIC KEY" => der::spki_rsa(&der),
            "RSA PUBLIC KEY" => der::rsa_public_key(&der),
            _ => None,
        }
        .ok_or_else(|| format!("{label}: not an RSA public key this reader understands"))?;
        keys.push(RsaKey { kid: kid.map(str::to_string), n: strip_zeros(n), e: strip_zeros(e) });
        rest = &body_start[body_end + end_marker.len()..];
    }
    if keys.is_empty() {
        return Err("no PEM block found".into());
    }
    Ok(keys)
}

fn strip_zeros(mut v: Vec<u8>) -> Vec<u8> {
    let zeros = v.iter().take_while(|b| **b == 0).count();
    v.drain(..zeros);
    v
}

/// What a token must say to be accepted.
#[derive(Clone)]
pub struct TokenPolicy {
    pub audience: String,
    pub service_account_email: String,
    pub keys: KeySet,
}

impl std::fmt::Debug for TokenPolicy {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenPolicy")
            .field("audience", &self.audience)
            .field("service_account_email", &self.service_account_email)
            .field("keys", &self.keys.keys.len())
            .finish()
    }
}

/// The claims of an accepted token worth keeping.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenClaims {
    pub email: String,
    pub subject: Option<String>,
}

/// Why a token was refused. The message is safe to send back and to log: it never holds the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Pub/Sub token: {0}")]
pub struct TokenError(pub String);

fn fail<T>(reason: impl Into<String>) -> Result<T, TokenError> {
    Err(TokenError(reason.into()))
}

/// Checks an `Authorization` header value (`Bearer <JWT>`) at `now_ms`.
pub fn verify_bearer(
    policy: &TokenPolicy,
    authorization: Option<&str>,
    now_ms: i64,
) -> Result<TokenClaims, TokenError> {
    let Some(value) = authorization else { return fail("no Authorization header") };
    let value = value.trim();
    let token = match value.split_once(' ') {
        Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => token.trim(),
        _ => return fail("the Authorization header is not a Bearer token"),
    };
    verify_token(policy, token, now_ms)
}

/// Checks a compact JWT at `now_ms`.
pub fn verify_token(policy: &TokenPolicy, token: &str, now_ms: i64) -> Result<TokenClaims, TokenError> {
    if token.len() > MAX_TOKEN_BYTES {
        return fail("the token is too long");
    }
    let mut parts = token.split('.');
    let (Some(h64), Some(p64), Some(s64), None) = (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return fail("not a JWT (three dot-separated parts)");
    };
    let header = decode_json(h64).ok_or_else(|| TokenError("the JWT header is not base64url JSON".into()))?;
    match header.get("alg").and_then(Value::as_str) {
        Some("RS256") => {}
        Some(other) => return fail(format!("algorithm `{}` is not accepted (RS256 only)", clip(other))),
        None => return fail("the JWT header names no algorithm"),
    }
    let signature =
        URL_SAFE_NO_PAD.decode(s64).map_err(|_| TokenError("the signature is not base64url".into()))?;
    let kid = header.get("kid").and_then(Value::as_str);
    let candidates: Vec<&RsaKey> = policy
        .keys
        .keys
        .iter()
        .filter(|k| match (kid, k.kid.as_deref()) {
            (Some(want), Some(have)) => want == have,
            _ => true,
        })
        .collect();
    if candidates.is_empty() {
        return fail(format!(
            "signed with key `{}`, which is not configured (refresh sources.shopify.pubsub.jwks)",
            clip(kid.unwrap_or(""))
        ));
    }
    let signed = &token.as_bytes()[..h64.len() + 1 + p64.len()];
    let valid = candidates.iter().any(|k| {
        RsaPublicKeyComponents { n: &k.n, e: &k.e }
            .verify(&RSA_PKCS1_2048_8192_SHA256, signed, &signature)
            .is_ok()
    });
    if !valid {
        return fail("the signature does not verify with the configured keys");
    }
    let claims =
        decode_json(p64).ok_or_else(|| TokenError("the JWT claims are not base64url JSON".into()))?;
    check_claims(policy, &claims, now_ms)
}

fn check_claims(policy: &TokenPolicy, claims: &Value, now_ms: i64) -> Result<TokenClaims, TokenError> {
    let text = |name: &str| claims.get(name).and_then(Value::as_str);
    match text("iss") {
        Some(iss) if GOOGLE_ISSUERS.contains(&iss) => {}
        _ => return fail("the issuer is not Google"),
    }
    let aud_ok = match claims.get("aud") {
        Some(Value::String(a)) => *a == policy.audience,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(policy.audience.as_str())),
        _ => false,
    };
    if !aud_ok {
        return fail("the audience is not the one configured");
    }
    let email = match text("email") {
        Some(e) if e.eq_ignore_ascii_case(&policy.service_account_email) => e.to_string(),
        Some(_) => return fail("signed for another service account"),
        None => return fail("the token carries no email"),
    };
    let verified = match claims.get("email_verified") {
        Some(Value::Bool(b)) => *b,
        Some(Value::String(s)) => s == "true",
        _ => false,
    };
    if !verified {
        return fail("the service account email is not verified");
    }
    let now = now_ms.div_euclid(1000);
    let seconds =
        |name: &str| claims.get(name).and_then(|v| v.as_i64().or_else(|| v.as_f64().map(|f| f as i64)));
    match seconds("exp") {
        Some(exp) if exp.saturating_add(LEEWAY_SECS) > now => {}
        Some(_) => return fail("the token has expired"),
        None => return fail("the token has no expiry"),
    }
    match seconds("iat") {
        Some(iat) if iat <= now.saturating_add(LEEWAY_SECS) => {}
        Some(_) => return fail("the token is issued in the future"),
        None => return fail("the token has no issue time"),
    }
    Ok(TokenClaims { email, subject: text("sub").map(str::to_string) })
}

fn decode_json(part: &str) -> Option<Value> {
    let bytes = URL_SAFE_NO_PAD.decode(part).ok()?;
    serde_json::from_slice::<Value>(&bytes).ok().filter(Value::is_object)
}

/// A caller-chosen string in an error, cut short.
fn clip(s: &str) -> String {
    s.chars().take(64).collect()
}

/// The few DER structures between a PEM block and an RSA key's modulus and exponent.
mod der {
    /// One TLV: its tag, its contents and what follows it.
    fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let count = usize::from(first & 0x7f);
            if count == 0 || count > 4 || rest.len() < count {
                return None;
            }
            let len = rest[..count].iter().fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, &rest[count..])
        };
        if rest.len() < len {
            return None;
        }
        Some((tag, &rest[..len], &rest[len..]))
    }

    fn expect(input: &[u8], tag: u8) -> Option<(&[u8], &[u8])> {
        let (t, body, rest) = tlv(input)?;
        (t == tag).then_some((body, rest))
    }

    const SEQUENCE: u8 = 0x30;
    const INTEGER: u8 = 0x02;
    const BIT_STRING: u8 = 0x03;
    const OID: u8 = 0x06;
    /// 1.2.840.113549.1.1.1, rsaEncryption.
    const RSA_ENCRYPTION: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

    /// `RSAPublicKey ::= SEQUENCE { modulus INTEGER, publicExponent INTEGER }`.
    pub fn rsa_public_key(der: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
        let (seq, _) = expect(der, SEQUENCE)?;
        let (n, rest) = expect(seq, INTEGER)?;
        let (e, _) = expect(rest, INTEGER)?;
        Some((n.to_vec(), e.to_vec()))
    }

    /// `SubjectPublicKeyInfo ::= SEQUENCE { algorithm AlgorithmIdentifier, subjectPublicKey BIT STRING }`.
    pub fn spki_rsa(der: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
        let (seq, _) = expect(der, SEQUENCE)?;
        spki_body(seq)
    }

    fn spki_body(seq: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
        let (alg, rest) = expect(seq, SEQUENCE)?;
        let (oid, _) = expect(alg, OID)?;
        if oid != RSA_ENCRYPTION {
            return None;
        }
        let (bits, _) = expect(rest, BIT_STRING)?;
        let (&unused, key) = bits.split_first()?;
        if unused != 0 {
            return None;
        }
        rsa_public_key(key)
    }

    /// An X.509 certificate's subject public key: `tbsCertificate` is `[0] version` (optional), serial,
    /// signature algorithm, issuer, validity, subject, then the key.
    pub fn certificate_rsa(der: &[u8]) -> Option<(Vec<u8>, Vec<u8>)> {
        let (cert, _) = expect(der, SEQUENCE)?;
        let (tbs, _) = expect(cert, SEQUENCE)?;
        let mut rest = tbs;
        let (tag, _, after) = tlv(rest)?;
        if tag == 0xa0 {
            rest = after;
        }
        for _ in 0..5 {
            let (_, _, after) = tlv(rest)?;
            rest = after;
        }
        let (spki, _) = expect(rest, SEQUENCE)?;
        spki_body(spki)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn malformed_keys_are_errors_not_panics() {
        for text in [
            "",
            "{}",
            "{\"keys\":3}",
            "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----",
            "{\"k\":\"x\"}",
        ] {
            assert!(KeySet::parse(text).is_err(), "{text}");
        }
        assert!(der::certificate_rsa(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]).is_none());
    }
}
