//! RSA public keys and signatures: PEM in, PKCS#1 v1.5 SHA-256 verification out (ring does the maths).
//!
//! Adobe hands out keys as SPKI PEM (`BEGIN PUBLIC KEY`); ring wants the inner PKCS#1 `RSAPublicKey`, so
//! this file holds a small, strict DER reader for exactly that structure. PKCS#1 PEM (`BEGIN RSA PUBLIC
//! KEY`) is accepted too. Every input gives a key or an error, never a panic.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use ring::signature::{RSA_PKCS1_2048_8192_SHA256, UnparsedPublicKey};

/// The largest PEM document read: a 8192-bit key is under 1.5 KiB.
const MAX_PEM_BYTES: usize = 16 * 1024;
/// The largest signature accepted: 8192 bits.
const MAX_SIGNATURE_BYTES: usize = 1024;
/// `rsaEncryption`, 1.2.840.113549.1.1.1.
const RSA_ENCRYPTION_OID: &[u8] = &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// An RSA public key ready to verify RSA-SHA256 (PKCS#1 v1.5) signatures. Not secret; `Debug` shows its
/// size and a short fingerprint only.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey {
    pkcs1: Vec<u8>,
    bits: usize,
}

impl std::fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PublicKey(rsa-{}, {})", self.bits, self.fingerprint())
    }
}

impl PublicKey {
    /// Reads a PEM public key: SPKI (`BEGIN PUBLIC KEY`) or PKCS#1 (`BEGIN RSA PUBLIC KEY`), RSA of 2048 to
    /// 8192 bits.
    pub fn from_pem(pem: &str) -> Result<Self, KeyError> {
        if pem.len() > MAX_PEM_BYTES {
            return Err(KeyError("the PEM is over 16 KiB".into()));
        }
        let (label, der) = pem_body(pem)?;
        let pkcs1 = match label.as_str() {
            "PUBLIC KEY" => spki_to_pkcs1(&der)?,
            "RSA PUBLIC KEY" => der,
            other => return Err(KeyError(format!("expected a PUBLIC KEY PEM, found `{other}`"))),
        };
        let bits = rsa_modulus_bits(&pkcs1)?;
        if !(2048..=8192).contains(&bits) {
            return Err(KeyError(format!("an RSA key of {bits} bits; 2048 to 8192 are accepted")));
        }
        Ok(Self { pkcs1, bits })
    }

    /// The modulus size in bits.
    pub fn bits(&self) -> usize {
        self.bits
    }

    /// The first 8 bytes of the SHA-256 of the PKCS#1 key, hex: enough to tell keys apart in logs.
    pub fn fingerprint(&self) -> String {
        use sha2::{Digest, Sha256};
        hex::encode(&Sha256::digest(&self.pkcs1)[..8])
    }

    /// True when `signature` is this key's RSA-SHA256 (PKCS#1 v1.5) signature of `message`.
    pub fn verify(&self, message: &[u8], signature: &[u8]) -> bool {
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA256, &self.pkcs1).verify(message, signature).is_ok()
    }
}

/// Why a key could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("not a usable RSA public key: {0}")]
pub struct KeyError(pub String);

/// Decodes a base64 signature header (standard alphabet, padding optional, surrounding space ignored).
pub fn decode_signature(header: &str) -> Option<Vec<u8>> {
    let t = header.trim();
    if t.is_empty() || t.len() > MAX_SIGNATURE_BYTES * 2 {
        return None;
    }
    let sig = STANDARD
        .decode(t)
        .or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(t.trim_end_matches('=')))
        .ok()?;
    (!sig.is_empty() && sig.len() <= MAX_SIGNATURE_BYTES).then_some(sig)
}

/// The label and DER bytes of the first PEM block.
fn pem_body(pem: &str) -> Result<(String, Vec<u8>), KeyError> {
    let start = pem.find("-----BEGIN ").ok_or_else(|| KeyError("no `-----BEGIN` line".into()))?;
    let rest = &pem[start + "-----BEGIN ".len()..];
    let label_end = rest.find("-----").ok_or_else(|| KeyError("an unterminated BEGIN line".into()))?;
    let label = rest[..label_end].to_string();
    let body_and_end = &rest[label_end + 5..];
    let end_marker = format!("-----END {label}-----");
    let body_end =
        body_and_end.find(&end_marker).ok_or_else(|| KeyError(format!("no `{end_marker}` line")))?;
    let body = &body_and_end[..body_end];
    if body.contains(':') {
        return Err(KeyError("an encrypted or annotated PEM (header lines) is not accepted".into()));
    }
    let b64: String = body.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let der = STANDARD.decode(b64).map_err(|e| KeyError(format!("the PEM body is not base64: {e}")))?;
    Ok((label, der))
}

/// One DER element: its tag, its contents, and what follows it.
fn tlv(input: &[u8]) -> Result<(u8, &[u8], &[u8]), KeyError> {
    let bad = |what: &str| KeyError(format!("malformed DER: {what}"));
    let (&tag, rest) = input.split_first().ok_or_else(|| bad("truncated tag"))?;
    let (&first, rest) = rest.split_first().ok_or_else(|| bad("truncated length"))?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 3 || rest.len() < n {
            return Err(bad("unsupported length"));
        }
        let len = rest[..n].iter().fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        if len < 0x80 || rest[0] == 0 {
            return Err(bad("non-minimal length"));
        }
        (len, &rest[n..])
    };
    if rest.len() < len {
        return Err(bad("truncated contents"));
    }
    Ok((tag, &rest[..len], &rest[len..]))
}

/// `SubjectPublicKeyInfo { AlgorithmIdentifier { rsaEncryption, NULL }, BIT STRING { RSAPublicKey } }`.
fn spki_to_pkcs1(der: &[u8]) -> Result<Vec<u8>, KeyError> {
    let (tag, spki, trailing) = tlv(der)?;
    if tag != 0x30 || !trailing.is_empty() {
        return Err(KeyError("the key is not one DER SEQUENCE".into()));
    }
    let (tag, alg, rest) = tlv(spki)?;
    if tag != 0x30 {
        return Err(KeyError("no AlgorithmIdentifier".into()));
    }
    let (tag, oid, params) = tlv(alg)?;
    if tag != 0x06 || oid != RSA_ENCRYPTION_OID {
        return Err(KeyError("not an RSA key (only rsaEncryption keys are accepted)".into()));
    }
    if !(params.is_empty() || params == [0x05, 0x00]) {
        return Err(KeyError("unexpected rsaEncryption parameters".into()));
    }
    let (tag, bits, rest) = tlv(rest)?;
    if tag != 0x03 || !rest.is_empty() {
        return Err(KeyError("no subjectPublicKey BIT STRING".into()));
    }
    match bits.split_first() {
        Some((0, key)) => Ok(key.to_vec()),
        _ => Err(KeyError("the subjectPublicKey has unused bits".into())),
    }
}

/// The bit length of the modulus of `RSAPublicKey { INTEGER n, INTEGER e }`.
fn rsa_modulus_bits(pkcs1: &[u8]) -> Result<usize, KeyError> {
    let (tag, seq, trailing) = tlv(pkcs1)?;
    if tag != 0x30 || !trailing.is_empty() {
        return Err(KeyError("the RSAPublicKey is not one SEQUENCE".into()));
    }
    let (tag, n, rest) = tlv(seq)?;
    let (tag_e, e, rest) = if tag == 0x02 { tlv(rest)? } else { (0, &[][..], rest) };
    if tag != 0x02 || tag_e != 0x02 || !rest.is_empty() || e.is_empty() {
        return Err(KeyError("the RSAPublicKey is not two INTEGERs".into()));
    }
    let n = match n.iter().position(|&b| b != 0) {
        Some(i) => &n[i..],
        None => return Err(KeyError("a zero modulus".into())),
    };
    Ok(n.len() * 8 - n[0].leading_zeros() as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_refused_without_panicking() {
        for pem in [
            "",
            "-----BEGIN PUBLIC KEY-----",
            "-----BEGIN PUBLIC KEY-----\n!!\n-----END PUBLIC KEY-----",
            "-----BEGIN PUBLIC KEY-----\nMAA=\n-----END PUBLIC KEY-----",
            "-----BEGIN PUBLIC KEY-----\nMIIBIjAN\n-----END PUBLIC KEY-----",
            "-----BEGIN CERTIFICATE-----\nMAA=\n-----END CERTIFICATE-----",
            "-----BEGIN RSA PUBLIC KEY-----\nMAYCAQECAQE=\n-----END RSA PUBLIC KEY-----",
        ] {
            assert!(PublicKey::from_pem(pem).is_err(), "{pem:?}");
        }
        assert!(decode_signature("").is_none());
        assert!(decode_signature("***").is_none());
    }
}
