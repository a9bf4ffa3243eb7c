//! Shopify over an authenticated Google Pub/Sub push through the source compliance suite.

use crate::source_shopify::{delivery, order, order_versions};
use crate::source_suite::{Request, SourceHarness, run_suite};
use nudge_ingest::shopify::ShopifyPubSubSource;
use nudge_ingest::shopify::fixtures::to_bytes;
use nudge_ingest::shopify::oidc::{KeySet, TokenPolicy};
use nudge_ingest::source::Source;
use nudge_testkit::google_oidc::{self, AUDIENCE, SERVICE_ACCOUNT, TokenSigner};
use std::sync::Arc;

pub struct PubSub;

pub fn policy() -> TokenPolicy {
    TokenPolicy {
        audience: AUDIENCE.into(),
        service_account_email: SERVICE_ACCOUNT.into(),
        keys: KeySet::parse(&google_oidc::jwks()).unwrap(),
    }
}

/// A push of `body` (the Shopify payload) for `delivery(n)`, with `authorization` when given.
pub fn push(n: u32, body: &[u8], authorization: Option<String>) -> Request {
    let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
    headers.extend(authorization.map(|a| ("Authorization".to_string(), a)));
    Request { headers, body: to_bytes(&delivery(n).pubsub_push(body)) }
}

fn bearer(now_ms: i64) -> Option<String> {
    Some(google_oidc::bearer(&google_oidc::token(now_ms)))
}

impl SourceHarness for PubSub {
    fn source(&self) -> Arc<dyn Source> {
        Arc::new(ShopifyPubSubSource::new(Some(policy())))
    }
    fn genuine(&self, n: u32, now_ms: i64) -> Request {
        push(n, &order(n).to_bytes(), bearer(now_ms))
    }
    fn retry(&self, n: u32, now_ms: i64) -> Request {
        // Pub/Sub redelivers the same message (same attributes) with a fresh token.
        self.genuine(n, now_ms)
    }
    fn wrongly_signed(&self, n: u32, now_ms: i64) -> Request {
        let token = TokenSigner::impostor().sign(&google_oidc::claims(now_ms));
        push(n, &order(n).to_bytes(), Some(google_oidc::bearer(&token)))
    }
    fn unsigned(&self, n: u32, _now_ms: i64) -> Request {
        push(n, &order(n).to_bytes(), None)
    }
    fn stale(&self, n: u32, now_ms: i64) -> Option<Request> {
        Some(push(n, &order(n).to_bytes(), bearer(now_ms - 2 * 3_600_000)))
    }
    fn signed(&self, body: &[u8], now_ms: i64) -> Request {
        push(99, body, bearer(now_ms))
    }
    fn signs_body(&self) -> bool {
        false
    }
    fn order_versions(&self) -> [(String, Vec<u8>); 2] {
        order_versions()
    }
}

#[test]
fn shopify_over_pubsub_passes_the_source_suite() {
    run_suite(&PubSub);
}
