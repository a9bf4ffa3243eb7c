//! Shopify over an Amazon EventBridge API destination through the source compliance suite.

use crate::source_shopify::{delivery, order, order_versions};
use crate::source_suite::{Request, SourceHarness, run_suite};
use nudge_ingest::shopify::ShopifyEventBridgeSource;
use nudge_ingest::shopify::fixtures::to_bytes;
use nudge_ingest::source::Source;
use serde_json::Value;
use std::sync::Arc;

pub const HEADER: &str = "x-nudge-api-key";
pub const KEY: &str = "eb_suite_key_0123456789";

pub struct EventBridge;

pub fn source() -> ShopifyEventBridgeSource {
    ShopifyEventBridgeSource::new(Some((HEADER.into(), KEY.into())))
}

/// An API destination's request carrying `payload` for `delivery(n)`, with the API key when given.
pub fn event(n: u32, payload: &Value, key: Option<&str>) -> Request {
    let mut headers = vec![("Content-Type".to_string(), "application/json".to_string())];
    headers.extend(key.map(|k| (HEADER.to_string(), k.to_string())));
    Request { headers, body: to_bytes(&delivery(n).eventbridge_envelope(payload)) }
}

impl SourceHarness for EventBridge {
    fn source(&self) -> Arc<dyn Source> {
        Arc::new(source())
    }
    fn genuine(&self, n: u32, _now_ms: i64) -> Request {
        event(n, &order(n).to_json(), Some(KEY))
    }
    fn retry(&self, n: u32, now_ms: i64) -> Request {
        self.genuine(n, now_ms)
    }
    fn wrongly_signed(&self, n: u32, _now_ms: i64) -> Request {
        event(n, &order(n).to_json(), Some("eb_suite_key_0123456788"))
    }
    fn unsigned(&self, n: u32, _now_ms: i64) -> Request {
        event(n, &order(n).to_json(), None)
    }
    fn stale(&self, _n: u32, _now_ms: i64) -> Option<Request> {
        None
    }
    fn signed(&self, body: &[u8], _now_ms: i64) -> Request {
        // EventBridge carries a JSON payload; anything else travels as a string.
        let payload = serde_json::from_slice::<Value>(body)
            .ok()
            .filter(Value::is_object)
            .unwrap_or_else(|| Value::String(String::from_utf8_lossy(body).into_owned()));
        event(99, &payload, Some(KEY))
    }
    fn signs_body(&self) -> bool {
        false
    }
    fn order_versions(&self) -> [(String, Vec<u8>); 2] {
        order_versions()
    }
}

#[test]
fn shopify_over_eventbridge_passes_the_source_suite() {
    run_suite(&EventBridge);
}
