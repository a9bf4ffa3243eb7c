//! Tokens as Google signs them for an authenticated Pub/Sub push: RS256 JWTs with `iss`, `aud`, `email`,
//! `email_verified`, `iat`, `exp`, `sub`, signed with test keys committed under `keys/` (a trusted signer,
//! with a certificate, and an impostor). Also the key documents an operator would configure: the JWKS
//! (`…/oauth2/v3/certs` shape), Google's `{kid: certificate}` map (`…/oauth2/v1/certs` shape) and PEM.
//!
//! The keys are for tests only: they are public in this repository.

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use hmac::{Hmac, Mac};
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde_json::{Value, json};

/// The key id the trusted signer (and the impostor, to test signatures rather than key lookup) uses.
pub const KID: &str = "nudge-test-signer-1";
/// The push audience tests configure.
pub const AUDIENCE: &str = "https://nudge.example.com/webhooks/shopify/pubsub";
/// The push service account tests configure.
pub const SERVICE_ACCOUNT: &str = "shopify-push@nudge-demo.iam.gserviceaccount.com";

const SIGNER_PK8: &str = include_str!("../keys/pubsub-signer.pk8.pem");
const SIGNER_CERT: &str = include_str!("../keys/pubsub-signer.cert.pem");
const IMPOSTOR_PK8: &str = include_str!("../keys/pubsub-impostor.pk8.pem");

/// Signs tokens with one RSA key.
pub struct TokenSigner {
    pair: RsaKeyPair,
    kid: String,
}

impl std::fmt::Debug for TokenSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSigner").field("kid", &self.kid).finish()
    }
}

fn pem_der(pem: &str) -> Vec<u8> {
    let b64: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
    STANDARD.decode(b64).expect("the committed test keys are valid PEM")
}

impl TokenSigner {
    /// The signer whose public key [`jwks`], [`certs_map`] and [`certificate_pem`] describe.
    pub fn trusted() -> Self {
        Self::from_pem(SIGNER_PK8, KID)
    }

    /// Another key, under the same key id.
    pub fn impostor() -> Self {
        Self::from_pem(IMPOSTOR_PK8, KID)
    }

    fn from_pem(pem: &str, kid: &str) -> Self {
        let pair = RsaKeyPair::from_pkcs8(&pem_der(pem)).expect("the committed test keys are PKCS#8 RSA");
        TokenSigner { pair, kid: kid.into() }
    }

    /// The same key under another key id.
    pub fn with_kid(mut self, kid: &str) -> Self {
        self.kid = kid.into();
        self
    }

    /// An RS256 JWT of `claims`.
    pub fn sign(&self, claims: &Value) -> String {
        let header = json!({"alg": "RS256", "kid": self.kid, "typ": "JWT"});
        let signing_input = format!("{}.{}", b64_json(&header), b64_json(claims));
        let mut sig = vec![0u8; self.pair.public().modulus_len()];
        self.pair
            .sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), signing_input.as_bytes(), &mut sig)
            .expect("RSA signing with a valid key succeeds");
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig))
    }

    /// The JWK of this key's public half.
    pub fn jwk(&self) -> Value {
        let public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(self.pair.public());
        json!({
            "kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid,
            "n": URL_SAFE_NO_PAD.encode(&public.n),
            "e": URL_SAFE_NO_PAD.encode(&public.e),
        })
    }
}

fn b64_json(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(v.to_string())
}

/// Claims of a genuine push token issued at `now_ms`, valid for an hour.
pub fn claims(now_ms: i64) -> Value {
    let iat = now_ms.div_euclid(1000);
    json!({
        "aud": AUDIENCE,
        "azp": "113774264463038321964",
        "email": SERVICE_ACCOUNT,
        "email_verified": true,
        "exp": iat + 3600,
        "iat": iat,
        "iss": "https://accounts.google.com",
        "sub": "113774264463038321964",
    })
}

/// A genuine push token issued at `now_ms`.
pub fn token(now_ms: i64) -> String {
    TokenSigner::trusted().sign(&claims(now_ms))
}

/// `Bearer <token>`.
pub fn bearer(token: &str) -> String {
    format!("Bearer {token}")
}

/// A token with `alg: none` and no signature.
pub fn unsigned_token(claims: &Value) -> String {
    format!("{}.{}.", b64_json(&json!({"alg": "none", "typ": "JWT"})), b64_json(claims))
}

/// A token "signed" with HS256, keyed with the trusted JWKS text (the classic algorithm confusion).
pub fn hs256_token(claims: &Value) -> String {
    let input =
        format!("{}.{}", b64_json(&json!({"alg": "HS256", "kid": KID, "typ": "JWT"})), b64_json(claims));
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(jwks().as_bytes()).expect("HMAC takes any key");
    mac.update(input.as_bytes());
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes()))
}

/// The trusted key as a JWKS document.
pub fn jwks() -> String {
    json!({"keys": [TokenSigner::trusted().jwk()]}).to_string()
}

/// The trusted key's certificate.
pub fn certificate_pem() -> &'static str {
    SIGNER_CERT
}

/// The trusted key as Google's `{kid: certificate PEM}` map.
pub fn certs_map() -> String {
    json!({ KID: SIGNER_CERT }).to_string()
}
