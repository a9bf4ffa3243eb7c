//! A webhook sender that behaves like Shopify: it signs exactly the bytes it sends (HMAC-SHA256 with the
//! app secret, standard base64) and sends the classic `X-Shopify-*` headers over one keep-alive client.
//! Options send a wrong signature, sign with another secret or leave a header out, so the receiving side
//! can be tested for rejecting them. Payload contents are the caller's business; nothing here parses them.

use crate::TestkitError;
use base64::Engine as _;
use bytes::Bytes;
use hmac::{Hmac, Mac};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use sha2::Sha256;
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub const HEADER_HMAC: &str = "X-Shopify-Hmac-Sha256";
pub const HEADER_TOPIC: &str = "X-Shopify-Topic";
pub const HEADER_SHOP_DOMAIN: &str = "X-Shopify-Shop-Domain";
pub const HEADER_API_VERSION: &str = "X-Shopify-API-Version";
pub const HEADER_WEBHOOK_ID: &str = "X-Shopify-Webhook-Id";
pub const HEADER_EVENT_ID: &str = "X-Shopify-Event-Id";
pub const HEADER_TRIGGERED_AT: &str = "X-Shopify-Triggered-At";

/// Shopify gives up on a delivery that has not been answered within 5 seconds.
pub const SHOPIFY_RESPONSE_TIMEOUT: Duration = Duration::from_secs(5);
/// Shopify gives up on connecting after 1 second.
pub const SHOPIFY_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// The standard base64 HMAC-SHA256 of `body` under `secret`, as sent in `X-Shopify-Hmac-Sha256`.
pub fn sign(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC accepts keys of any length");
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

/// One webhook delivery: what Shopify puts in the headers plus the exact body bytes.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    /// Such as `orders/create`.
    pub topic: String,
    /// Such as `demo-store.myshopify.com`.
    pub shop_domain: String,
    /// The API version the payload is serialised in, such as `2026-07`.
    pub api_version: String,
    /// Identifies this delivery; the same on Shopify's retries of it.
    pub webhook_id: String,
    /// Identifies the underlying event; the same across subscriptions.
    pub event_id: String,
    pub triggered_at: OffsetDateTime,
    /// Sent and signed exactly as given.
    pub body: Vec<u8>,
}

impl Delivery {
    /// A delivery for `topic` from the demo shop with fresh ids, triggered now.
    pub fn new(topic: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        Delivery {
            topic: topic.into(),
            shop_domain: "demo-store.myshopify.com".into(),
            api_version: "2026-07".into(),
            webhook_id: uuid::Uuid::new_v4().to_string(),
            event_id: uuid::Uuid::new_v4().to_string(),
            triggered_at: OffsetDateTime::now_utc(),
            body: body.into(),
        }
    }

    /// The same event delivered to a second subscription: same event id, new webhook id.
    pub fn for_another_subscription(&self) -> Self {
        Delivery { webhook_id: uuid::Uuid::new_v4().to_string(), ..self.clone() }
    }
}

/// Which `X-Shopify-Hmac-Sha256` value to send.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum Signature {
    /// The correct signature under the sender's secret.
    #[default]
    Correct,
    /// The correct signature with one bit flipped: well-formed base64 that must not verify.
    Corrupted,
    /// A correct signature under another secret (an old or foreign one).
    SignedWith(String),
    /// This exact header value.
    Raw(String),
}

/// How a delivery deviates from what Shopify would send, for negative tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SendOptions {
    pub signature: Signature,
    /// Header names (any case) to leave out, such as `X-Shopify-Hmac-Sha256`.
    pub omit_headers: Vec<String>,
    /// Headers to add or replace after the standard ones.
    pub extra_headers: Vec<(String, String)>,
}

impl SendOptions {
    pub fn corrupted_signature() -> Self {
        SendOptions { signature: Signature::Corrupted, ..Self::default() }
    }

    pub fn signed_with(secret: impl Into<String>) -> Self {
        SendOptions { signature: Signature::SignedWith(secret.into()), ..Self::default() }
    }

    pub fn omitting(header: impl Into<String>) -> Self {
        SendOptions { omit_headers: vec![header.into()], ..Self::default() }
    }
}

/// What the receiver answered.
#[derive(Debug, Clone)]
pub struct SentResponse {
    pub status: u16,
    pub body: Bytes,
    /// From sending the request to reading the whole response.
    pub elapsed: Duration,
    /// The trace nudge gave the delivery (its `x-nudge-trace-id` header), when it answered with one.
    pub trace_id: Option<String>,
}

impl SentResponse {
    /// Reads a whole response to a request sent at `started`.
    pub async fn read(response: reqwest::Response, started: Instant) -> Result<Self, reqwest::Error> {
        let status = response.status().as_u16();
        let trace_id =
            response.headers().get("x-nudge-trace-id").and_then(|v| v.to_str().ok()).map(str::to_string);
        let body = response.bytes().await?;
        Ok(SentResponse { status, body, elapsed: started.elapsed(), trace_id })
    }
}

/// Delivers webhooks to one URL, signed with one app secret.
#[derive(Debug, Clone)]
pub struct ShopifySender {
    /// One client so that consecutive deliveries reuse a keep-alive connection, as Shopify's do.
    client: reqwest::Client,
    target_url: String,
    /// The app's client secret, used as raw UTF-8 bytes.
    secret: String,
}

impl ShopifySender {
    /// A sender with Shopify's timeouts (1 s to connect, 5 s for the whole response).
    pub fn new(target_url: impl Into<String>, secret: impl Into<String>) -> Result<Self, TestkitError> {
        Self::with_timeout(target_url, secret, SHOPIFY_RESPONSE_TIMEOUT)
    }

    /// A sender that waits up to `timeout` for each response.
    pub fn with_timeout(
        target_url: impl Into<String>,
        secret: impl Into<String>,
        timeout: Duration,
    ) -> Result<Self, TestkitError> {
        crate::ensure_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(SHOPIFY_CONNECT_TIMEOUT.min(timeout))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(ShopifySender { client, target_url: target_url.into(), secret: secret.into() })
    }

    pub fn target_url(&self) -> &str {
        &self.target_url
    }

    /// Sends `delivery` as Shopify would.
    pub async fn send(&self, delivery: &Delivery) -> Result<SentResponse, TestkitError> {
        self.send_with(delivery, &SendOptions::default()).await
    }

    /// Sends `delivery` with the deviations in `options`.
    pub async fn send_with(
        &self,
        delivery: &Delivery,
        options: &SendOptions,
    ) -> Result<SentResponse, TestkitError> {
        let headers = self.headers(delivery, options)?;
        let started = Instant::now();
        let response =
            self.client.post(&self.target_url).headers(headers).body(delivery.body.clone()).send().await?;
        Ok(SentResponse::read(response, started).await?)
    }

    /// The headers `send_with` would send, for inspection in tests.
    pub fn headers(&self, delivery: &Delivery, options: &SendOptions) -> Result<HeaderMap, TestkitError> {
        let hmac = match &options.signature {
            Signature::Correct => sign(self.secret.as_bytes(), &delivery.body),
            Signature::Corrupted => {
                let good = sign(self.secret.as_bytes(), &delivery.body);
                let mut raw = base64::engine::general_purpose::STANDARD
                    .decode(good)
                    .expect("our own signature is valid base64");
                raw[0] ^= 0x01;
                base64::engine::general_purpose::STANDARD.encode(raw)
            }
            Signature::SignedWith(secret) => sign(secret.as_bytes(), &delivery.body),
            Signature::Raw(value) => value.clone(),
        };
        let triggered_at = delivery.triggered_at.format(&Rfc3339).map_err(|e| {
            TestkitError::InvalidHeader { name: HEADER_TRIGGERED_AT.into(), reason: e.to_string() }
        })?;
        let standard = [
            ("Content-Type", "application/json".to_string()),
            ("User-Agent", "Shopify-Captain-Hook".to_string()),
            (HEADER_HMAC, hmac),
            (HEADER_TOPIC, delivery.topic.clone()),
            (HEADER_SHOP_DOMAIN, delivery.shop_domain.clone()),
            (HEADER_API_VERSION, delivery.api_version.clone()),
            (HEADER_WEBHOOK_ID, delivery.webhook_id.clone()),
            (HEADER_EVENT_ID, delivery.event_id.clone()),
            (HEADER_TRIGGERED_AT, triggered_at),
        ];
        let mut headers = HeaderMap::new();
        let extra = options.extra_headers.iter().map(|(n, v)| (n.as_str(), v.clone()));
        for (name, value) in standard.into_iter().chain(extra) {
            if options.omit_headers.iter().any(|o| o.eq_ignore_ascii_case(name)) {
                continue;
            }
            let invalid = |reason: String| TestkitError::InvalidHeader { name: name.to_string(), reason };
            let header_name = HeaderName::from_bytes(name.as_bytes()).map_err(|e| invalid(e.to_string()))?;
            let header_value = HeaderValue::from_str(&value).map_err(|e| invalid(e.to_string()))?;
            headers.insert(header_name, header_value);
        }
        Ok(headers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SECRET: &str = "test_client_secret_123";
    const BODY: &[u8] =
        br#"{"id":5551234567,"email":"ada@example.com","total_price":"59.97","currency":"USD"}"#;

    #[test]
    fn signature_matches_the_documented_vectors() {
        assert_eq!(sign(SECRET.as_bytes(), BODY), "Kx9xOYmfbf/hb4mq1iL+lZJskmKNJdUqfkxRSzZsSUs=");
        let mut with_newline = BODY.to_vec();
        with_newline.push(b'\n');
        assert_eq!(sign(SECRET.as_bytes(), &with_newline), "wAx6wSGWlHBI/r+14fG6Ve/UTmlCyzimUJ2wqHUeTis=");
    }

    #[test]
    fn headers_carry_every_classic_field_and_options_change_them() {
        let sender = ShopifySender::new("http://127.0.0.1:9/webhooks/shopify", SECRET).unwrap();
        let mut delivery = Delivery::new("orders/create", BODY);
        delivery.triggered_at = time::macros::datetime!(2026-05-01 10:00 UTC);
        let h = sender.headers(&delivery, &SendOptions::default()).unwrap();
        assert_eq!(h["x-shopify-hmac-sha256"], "Kx9xOYmfbf/hb4mq1iL+lZJskmKNJdUqfkxRSzZsSUs=");
        assert_eq!(h["x-shopify-topic"], "orders/create");
        assert_eq!(h["x-shopify-shop-domain"], "demo-store.myshopify.com");
        assert_eq!(h["x-shopify-api-version"], "2026-07");
        assert_eq!(h["x-shopify-webhook-id"], delivery.webhook_id.as_str());
        assert_eq!(h["x-shopify-event-id"], delivery.event_id.as_str());
        assert_eq!(h["x-shopify-triggered-at"], "2026-05-01T10:00:00Z");

        let bad = sender.headers(&delivery, &SendOptions::corrupted_signature()).unwrap();
        assert_ne!(bad[HEADER_HMAC], h[HEADER_HMAC]);
        assert_eq!(bad[HEADER_HMAC].len(), h[HEADER_HMAC].len());
        let other = sender.headers(&delivery, &SendOptions::signed_with("old_secret")).unwrap();
        assert_eq!(other[HEADER_HMAC], sign(b"old_secret", BODY).as_str());
        let omitted = sender.headers(&delivery, &SendOptions::omitting("x-shopify-hmac-sha256")).unwrap();
        assert!(!omitted.contains_key(HEADER_HMAC));

        let second = delivery.for_another_subscription();
        assert_eq!(second.event_id, delivery.event_id);
        assert_ne!(second.webhook_id, delivery.webhook_id);
    }
}
