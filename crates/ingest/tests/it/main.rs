//! The integration tests of `nudge-ingest`, as one test binary.
//!
//! - `verify`: the signature and header contract (api-contracts §8 cases 1–9).
//! - `normalize`: body → canonical event snapshots and error messages (cases 13–17, 19 at function level).
//! - `envelope`: EventBridge and Pub/Sub give the same result as HTTPS (case 18).
//! - `source_suite`: the source compliance suite every commerce source passes; `source_shopify` runs it
//!   over Shopify over HTTPS; `source_shopify_pubsub` and `source_shopify_eventbridge` over the cloud
//!   transports; `source_bigcommerce` over BigCommerce (and its own auth, scope and fetched-answer cases);
//!   `source_adobe` over Adobe Commerce (once per intake, plus its own contract).
//! - `source_klaviyo_webhooks`, `source_braze_currents`: the engagement intakes through the suite, plus
//!   their contract cases (signature vector, webhook-id check, batches, probes, forward compatibility).
//! - `source_yotpo`, `source_smile`: Yotpo and Smile.io (URL token, fetch-after-notify) through the suite,
//!   plus contract cases 3.1–3.3 and 4.1, 4.2, 4.4 at the source level.
//! - `shopify_transports`: one event over HTTPS, Pub/Sub and EventBridge is one delivery with one
//!   meaning; the Pub/Sub token's edge cases; customer enrichment's fetch job and its answer.
//! - `source_fuzz`: every source's verifier and parser against arbitrary requests and bodies.
//! - `props`: property tests for the verifier, the normaliser's totality and fixture round trips.
//!
//! Everything goes through the crate's public API only, as the server will.

mod envelope;
mod normalize;
mod props;
mod segment_fuzz;
mod shopify_transports;
mod source_adobe;
mod source_bigcommerce;
mod source_braze_currents;
mod source_fuzz;
mod source_klaviyo_webhooks;
mod source_shopify;
mod source_shopify_eventbridge;
mod source_shopify_pubsub;
mod source_smile;
mod source_suite;
mod source_yotpo;
mod verify;

use nudge_ingest::{Normalized, Topic};
use serde_json::{Value, json};

/// The shop every test delivery comes from.
pub const SHOP: &str = "demo-store.myshopify.com";

/// The one snapshot helper: normalises `body` on `topic` and compares the outcome, as JSON, with
/// `expected`. Events appear as `{"events": [...]}`, privacy requests as `{"compliance": ...}`, ignored
/// topics as `{"ignored": reason}` and failures as `{"error": message}`, so error wording is pinned too.
#[track_caller]
pub fn check(topic: &str, body: &[u8], expected: Value) {
    let actual = outcome(topic, body);
    assert!(
        actual == expected,
        "snapshot mismatch for {topic}\n--- expected\n{}\n--- actual\n{}",
        serde_json::to_string_pretty(&expected).unwrap(),
        serde_json::to_string_pretty(&actual).unwrap()
    );
}

/// What `check` compares: the normalised outcome as JSON.
pub fn outcome(topic: &str, body: &[u8]) -> Value {
    match nudge_ingest::normalize(&Topic::parse(topic), SHOP, body) {
        Ok(Normalized::Events(events)) => json!({ "events": events }),
        Ok(Normalized::Compliance(request)) => json!({ "compliance": request }),
        Ok(Normalized::Ignored { reason }) => json!({ "ignored": reason }),
        Err(error) => json!({ "error": error.to_string() }),
    }
}

/// A fixed instant with a shop-local offset, so UTC normalisation is visible in snapshots.
pub fn at(rfc3339: &str) -> time::OffsetDateTime {
    time::OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339).unwrap()
}
