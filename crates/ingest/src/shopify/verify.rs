//! Authenticity of a Shopify HTTPS delivery and the metadata its headers carry.
//!
//! Lives here: the HMAC-SHA256 check over the raw body (standard base64, constant-time comparison,
//! every configured secret tried so secret rotation works), the parsing of the `X-Shopify-*` headers
//! into [`DeliveryMeta`], and [`sign`] for fakes and load generators. Not here: anything that reads the
//! body (that is `payload` / `normalize`), and envelope transports, which carry no HMAC (`envelope`).

use crate::headers::Headers;
use crate::shopify::topic::Topic;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use time::OffsetDateTime;
use time::format_description::well_known::{Iso8601, Rfc3339};

type HmacSha256 = Hmac<Sha256>;

/// Base64 HMAC-SHA256 of the raw body.
pub const HMAC_HEADER: &str = "X-Shopify-Hmac-Sha256";
/// The topic, e.g. `orders/create`.
pub const TOPIC_HEADER: &str = "X-Shopify-Topic";
/// The shop's `*.myshopify.com` domain.
pub const SHOP_DOMAIN_HEADER: &str = "X-Shopify-Shop-Domain";
/// The API version the body was serialised with, e.g. `2026-07`.
pub const API_VERSION_HEADER: &str = "X-Shopify-API-Version";
/// The delivery id; the same on retries of one delivery.
pub const WEBHOOK_ID_HEADER: &str = "X-Shopify-Webhook-Id";
/// The underlying event id; shared by the deliveries of one event to several subscriptions.
pub const EVENT_ID_HEADER: &str = "X-Shopify-Event-Id";
/// When Shopify says the event was triggered (ISO 8601).
pub const TRIGGERED_AT_HEADER: &str = "X-Shopify-Triggered-At";
/// The optional name of the subscription that produced this delivery.
pub const NAME_HEADER: &str = "X-Shopify-Name";

/// Why a delivery was not accepted as authentic. Everything except [`VerifyError::NoSecretsConfigured`]
/// is the sender's problem and is answered with `401 Unauthorized` (see [`VerifyError::http_status`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The server has no usable (non-empty) secret, so it cannot tell real deliveries from forged ones.
    #[error("no Shopify client secret is configured, so no delivery can be verified")]
    NoSecretsConfigured,
    #[error("the request body is empty; Shopify always signs a non-empty JSON body")]
    EmptyBody,
    #[error("the `X-Shopify-Hmac-Sha256` header is missing")]
    MissingSignature,
    /// The signature is not base64 of a digest made with any configured secret. Webhooks created by hand
    /// in the store admin are signed with the store's own key rather than the app secret and end up here.
    #[error(
        "the `X-Shopify-Hmac-Sha256` signature does not match the body under any configured secret \
         (it must be standard base64 of HMAC-SHA256 over the exact raw body)"
    )]
    BadSignature,
    /// A header that must appear once appeared several times, so it is ambiguous.
    #[error("the `{0}` header appears more than once")]
    DuplicateHeader(&'static str),
    #[error("the required `{0}` header is missing or empty")]
    MissingHeader(&'static str),
    #[error("the `{header}` header is invalid: {reason}")]
    InvalidHeader { header: &'static str, reason: String },
}

impl VerifyError {
    /// The HTTP status the edge should answer with.
    ///
    /// A missing server secret is answered `500` rather than `401`: the delivery may well be genuine,
    /// and a 5xx makes Shopify retry it once the operator has fixed the configuration.
    pub fn http_status(&self) -> u16 {
        match self {
            VerifyError::NoSecretsConfigured => 500,
            _ => 401,
        }
    }
}

/// What the headers of an accepted delivery say about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryMeta {
    pub topic: Topic,
    /// Lower-cased shop domain, e.g. `demo-store.myshopify.com`.
    pub shop_domain: String,
    /// `X-Shopify-API-Version`, which Shopify always sends but which nudge does not need to act.
    pub api_version: Option<String>,
    /// The delivery id, the dedupe key for retries of one delivery.
    pub webhook_id: String,
    /// The event id, the dedupe key across subscriptions of one event.
    pub event_id: Option<String>,
    /// When the event was triggered, UTC; used to discard stale retries.
    pub triggered_at: Option<OffsetDateTime>,
    /// The subscription name (`X-Shopify-Name`), when the subscription has one.
    pub subscription_name: Option<String>,
    /// Which configured secret matched (its index in the list passed to [`verify`]), so operators can
    /// see when the old secret stops being used after a rotation. `None` for envelope transports.
    pub matched_secret: Option<usize>,
    /// Problems with optional headers that did not justify refusing a genuine delivery (for example an
    /// unparseable `X-Shopify-Triggered-At`). The server logs them; they are never silently dropped.
    pub warnings: Vec<String>,
}

/// Verifies an HTTPS delivery and reads its metadata.
///
/// The signature is checked first, over `body` exactly as received, against every non-empty secret in
/// `secrets` (more than one during a secret rotation); only then are the other headers looked at, so an
/// unauthenticated caller learns nothing about which headers are required.
pub fn verify(headers: &Headers, body: &[u8], secrets: &[String]) -> Result<DeliveryMeta, VerifyError> {
    let matched = verify_signature(headers, body, secrets)?;
    let mut meta = delivery_meta(headers)?;
    meta.matched_secret = Some(matched);
    Ok(meta)
}

/// Checks only the HMAC and returns the index of the secret that produced it.
pub fn verify_signature(headers: &Headers, body: &[u8], secrets: &[String]) -> Result<usize, VerifyError> {
    if secrets.iter().all(|s| s.is_empty()) {
        return Err(VerifyError::NoSecretsConfigured);
    }
    if body.is_empty() {
        return Err(VerifyError::EmptyBody);
    }
    let raw = unique(headers, HMAC_HEADER)?.ok_or(VerifyError::MissingSignature)?;
    // Leading and trailing blanks are HTTP framing, not part of the value; nothing else is forgiven.
    let signature = STANDARD.decode(raw.trim_ascii()).map_err(|_| VerifyError::BadSignature)?;

    // Every secret is tried even after a match, so the time taken does not depend on which one matched.
    let mut matched = None;
    for (index, secret) in secrets.iter().enumerate() {
        if secret.is_empty() {
            continue;
        }
        let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
        mac.update(body);
        if mac.verify_slice(&signature).is_ok() && matched.is_none() {
            matched = Some(index);
        }
    }
    matched.ok_or(VerifyError::BadSignature)
}

/// Reads the `X-Shopify-*` headers without checking any signature.
///
/// Use it directly only for transports whose trust comes from elsewhere (EventBridge and Pub/Sub, where
/// cloud IAM authenticates the publisher); HTTPS deliveries go through [`verify`].
pub fn delivery_meta(headers: &Headers) -> Result<DeliveryMeta, VerifyError> {
    let topic = Topic::parse(&required(headers, TOPIC_HEADER)?);
    let shop_domain = parse_shop_domain(required(headers, SHOP_DOMAIN_HEADER)?)?;
    let webhook_id = required(headers, WEBHOOK_ID_HEADER)?.to_string();
    let api_version = optional(headers, API_VERSION_HEADER)?;
    let event_id = optional(headers, EVENT_ID_HEADER)?;
    let subscription_name = optional(headers, NAME_HEADER)?;

    let mut warnings = Vec::new();
    let triggered_at = match optional(headers, TRIGGERED_AT_HEADER)? {
        None => None,
        Some(text) => match parse_triggered_at(&text) {
            Some(t) => Some(t),
            None => {
                warnings.push(format!(
                    "ignored `{TRIGGERED_AT_HEADER}` value `{text}`: not an ISO 8601 timestamp with an offset"
                ));
                None
            }
        },
    };

    Ok(DeliveryMeta {
        topic,
        shop_domain,
        api_version,
        webhook_id,
        event_id,
        triggered_at,
        subscription_name,
        matched_secret: None,
        warnings,
    })
}

/// The base64 HMAC-SHA256 of `body` under `secret`, as Shopify would put it in `X-Shopify-Hmac-Sha256`.
/// For fakes, fixtures and load generators.
pub fn sign(secret: &str, body: &[u8]) -> String {
    let mut mac = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC accepts keys of any length");
    mac.update(body);
    STANDARD.encode(mac.finalize().into_bytes())
}

/// The single value of a header, refusing repeats.
fn unique<'a>(headers: &'a Headers, name: &'static str) -> Result<Option<&'a [u8]>, VerifyError> {
    let mut values = headers.get_all(name);
    let first = values.next();
    if values.next().is_some() {
        return Err(VerifyError::DuplicateHeader(name));
    }
    Ok(first)
}

/// The single, non-blank, UTF-8 value of a header, trimmed.
fn optional(headers: &Headers, name: &'static str) -> Result<Option<String>, VerifyError> {
    let Some(raw) = unique(headers, name)? else {
        return Ok(None);
    };
    let text = std::str::from_utf8(raw)
        .map_err(|_| VerifyError::InvalidHeader {
            header: name,
            reason: "the value is not UTF-8 text".into(),
        })?
        .trim();
    Ok((!text.is_empty()).then(|| text.to_string()))
}

fn required(headers: &Headers, name: &'static str) -> Result<String, VerifyError> {
    optional(headers, name)?.ok_or(VerifyError::MissingHeader(name))
}

/// A shop domain is a host name; anything else (spaces, slashes) would be unsafe to use as a key.
fn parse_shop_domain(text: String) -> Result<String, VerifyError> {
    let domain = text.to_ascii_lowercase();
    let ok = domain.len() <= 255
        && domain
            .split('.')
            .all(|label| !label.is_empty() && label.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
    if ok {
        Ok(domain)
    } else {
        Err(VerifyError::InvalidHeader {
            header: SHOP_DOMAIN_HEADER,
            reason: format!("`{text}` is not a host name such as `demo-store.myshopify.com`"),
        })
    }
}

fn parse_triggered_at(text: &str) -> Option<OffsetDateTime> {
    OffsetDateTime::parse(text, &Rfc3339)
        .or_else(|_| OffsetDateTime::parse(text, &Iso8601::DEFAULT))
        .ok()
        .map(|t| t.to_offset(time::UtcOffset::UTC))
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "test_client_secret_123";
    const BODY: &[u8] =
        br#"{"id":5551234567,"email":"ada@example.com","total_price":"59.97","currency":"USD"}"#;

    fn headers(hmac: &str) -> Headers {
        Headers::from_pairs([
            (HMAC_HEADER, hmac),
            (TOPIC_HEADER, "orders/create"),
            (SHOP_DOMAIN_HEADER, "Demo-Store.myshopify.com"),
            (WEBHOOK_ID_HEADER, "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"),
            (TRIGGERED_AT_HEADER, "2026-05-01T10:00:00.123+02:00"),
        ])
    }

    #[test]
    fn sign_matches_the_documented_vector() {
        assert_eq!(sign(SECRET, BODY), "Kx9xOYmfbf/hb4mq1iL+lZJskmKNJdUqfkxRSzZsSUs=");
    }

    #[test]
    fn accepted_delivery_carries_its_metadata() {
        let meta = verify(&headers(&sign(SECRET, BODY)), BODY, &[SECRET.to_string()]).unwrap();
        assert_eq!(meta.topic, Topic::OrdersCreate);
        assert_eq!(meta.shop_domain, "demo-store.myshopify.com");
        assert_eq!(meta.matched_secret, Some(0));
        assert_eq!(meta.triggered_at, Some(time::macros::datetime!(2026-05-01 08:00:00.123 UTC)));
        assert!(meta.warnings.is_empty());
    }

    #[test]
    fn configuration_problems_are_500_and_everything_else_401() {
        let h = headers(&sign(SECRET, BODY));
        assert_eq!(verify(&h, BODY, &[]).unwrap_err(), VerifyError::NoSecretsConfigured);
        assert_eq!(verify(&h, BODY, &[String::new()]).unwrap_err().http_status(), 500);
        assert_eq!(verify(&h, b"", &[SECRET.into()]).unwrap_err().http_status(), 401);
    }

    #[test]
    fn a_bad_shop_domain_or_repeated_signature_is_refused() {
        let mut h = headers(&sign(SECRET, BODY));
        h.append(HMAC_HEADER, sign(SECRET, BODY));
        assert_eq!(
            verify(&h, BODY, &[SECRET.into()]).unwrap_err(),
            VerifyError::DuplicateHeader(HMAC_HEADER)
        );

        let h = Headers::from_pairs([
            (HMAC_HEADER, sign(SECRET, BODY).as_str()),
            (TOPIC_HEADER, "orders/create"),
            (SHOP_DOMAIN_HEADER, "evil/../shop"),
            (WEBHOOK_ID_HEADER, "w1"),
        ]);
        let err = verify(&h, BODY, &[SECRET.into()]).unwrap_err();
        assert!(matches!(err, VerifyError::InvalidHeader { header: SHOP_DOMAIN_HEADER, .. }), "{err}");
    }

    #[test]
    fn an_unreadable_triggered_at_is_a_warning_not_a_refusal() {
        let mut h = headers(&sign(SECRET, BODY));
        h = Headers::from_pairs(h.iter().filter(|(n, _)| *n != "x-shopify-triggered-at"));
        h.append(TRIGGERED_AT_HEADER, "yesterday");
        let meta = verify(&h, BODY, &[SECRET.into()]).unwrap();
        assert_eq!(meta.triggered_at, None);
        assert_eq!(meta.warnings.len(), 1, "{:?}", meta.warnings);
    }
}
