//! Shopify over Google Pub/Sub push and Amazon EventBridge API destinations, as [`Source`]s stored under
//! the name `shopify`.
//!
//! These transports carry no HMAC: trust comes from the cloud. A Pub/Sub push subscription with
//! authentication sends Google's OIDC token (checked in [`oidc`](crate::shopify::oidc)); an EventBridge
//! API destination sends the API-key header of its connection (name and value chosen by the operator).
//! Once the caller is trusted the envelope is unwrapped ([`from_pubsub`], [`from_eventbridge`]) and the
//! delivery is accepted exactly as the HTTPS one would be: same topic, shop, dedupe keys
//! (`shopify:<shop>:webhook:<id>`, `shopify:<shop>:event:<id>`), and the inner Shopify payload stored as
//! the body, so a delivery that arrives both ways is one delivery and parses the same.

use crate::shopify::envelope::{Delivery, EnvelopeError, from_eventbridge, from_pubsub};
use crate::shopify::oidc::{TokenPolicy, verify_bearer};
use crate::shopify::source::{SOURCE, Shopify, accepted_from_meta};
use crate::source::{Inbound, Parsed, Rejection, Source, StoredView, Verified};
use sha2::{Digest, Sha256};

/// The header an EventBridge connection sends the API key in unless configured otherwise.
pub const DEFAULT_API_KEY_HEADER: &str = "x-nudge-api-key";

/// Shopify webhooks pushed by a Google Pub/Sub subscription with authentication.
#[derive(Debug, Clone)]
pub struct ShopifyPubSubSource {
    policy: Option<TokenPolicy>,
    parser: Shopify,
}

impl ShopifyPubSubSource {
    /// `None` refuses every push with 500 (nudge cannot verify), so Pub/Sub keeps it until configured.
    pub fn new(policy: Option<TokenPolicy>) -> Self {
        Self { policy, parser: Shopify::default() }
    }

    /// Parses as [`ShopifySource::enrich_customers`](crate::shopify::ShopifySource::enrich_customers).
    pub fn enrich_customers(mut self, on: bool) -> Self {
        self.parser.enrich = on;
        self
    }
}

impl Source for ShopifyPubSubSource {
    fn name(&self) -> &'static str {
        SOURCE
    }

    fn verify(&self, req: &Inbound<'_>) -> Result<Verified, Rejection> {
        let Some(policy) = &self.policy else {
            return Err(Rejection::not_configured("sources.shopify.pubsub is not configured"));
        };
        verify_bearer(policy, req.headers.get("authorization"), req.now_ms)
            .map_err(|e| Rejection::unauthorized(e.to_string()))?;
        accept(from_pubsub(req.body))
    }

    fn parse(&self, d: &StoredView<'_>) -> Parsed {
        self.parser.parse(d)
    }
}

/// Shopify webhooks relayed by an Amazon EventBridge rule to an API destination.
#[derive(Clone)]
pub struct ShopifyEventBridgeSource {
    /// Lower-cased header name and the expected value; `None` refuses with 500.
    key: Option<(String, String)>,
    parser: Shopify,
}

impl std::fmt::Debug for ShopifyEventBridgeSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShopifyEventBridgeSource")
            .field("header", &self.key.as_ref().map(|(h, _)| h.as_str()))
            .field("value", &"[redacted]")
            .finish()
    }
}

impl ShopifyEventBridgeSource {
    /// `header` and `value`: the API-key header of the EventBridge connection; `None` refuses every
    /// delivery with 500.
    pub fn new(key: Option<(String, String)>) -> Self {
        Self { key: key.map(|(h, v)| (h.trim().to_ascii_lowercase(), v)), parser: Shopify::default() }
    }

    /// Parses as [`ShopifySource::enrich_customers`](crate::shopify::ShopifySource::enrich_customers).
    pub fn enrich_customers(mut self, on: bool) -> Self {
        self.parser.enrich = on;
        self
    }
}

impl Source for ShopifyEventBridgeSource {
    fn name(&self) -> &'static str {
        SOURCE
    }

    fn verify(&self, req: &Inbound<'_>) -> Result<Verified, Rejection> {
        let Some((header, expected)) = &self.key else {
            return Err(Rejection::not_configured("sources.shopify.eventbridge is not configured"));
        };
        let Some(given) = req.headers.get_raw(header) else {
            return Err(Rejection::unauthorized(format!("no `{header}` header")));
        };
        if !constant_time_eq(given, expected.as_bytes()) {
            return Err(Rejection::unauthorized(format!("the `{header}` header does not match")));
        }
        accept(from_eventbridge(req.body))
    }

    fn parse(&self, d: &StoredView<'_>) -> Parsed {
        self.parser.parse(d)
    }
}

/// Compares the SHA-256 digests of both values without an early exit, so the time taken says nothing
/// about how much of the key was right (nor its length).
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let (da, db) = (Sha256::digest(a), Sha256::digest(b));
    da.iter().zip(db.iter()).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// An unwrapped envelope accepted as its HTTPS twin would be, with the inner payload as the body.
fn accept(delivery: Result<Delivery, EnvelopeError>) -> Result<Verified, Rejection> {
    let delivery = delivery.map_err(|e| Rejection::bad_request(e.to_string()))?;
    let meta = delivery.meta().map_err(|e| Rejection::bad_request(format!("{}: {e}", delivery.transport)))?;
    let mut accepted = accepted_from_meta(meta, &delivery.headers);
    accepted.body = Some(delivery.body);
    Ok(Verified::Deliver(accepted))
}
