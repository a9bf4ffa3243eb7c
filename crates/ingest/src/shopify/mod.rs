//! Shopify: webhook deliveries over HTTPS, EventBridge and Pub/Sub, to canonical events.
//!
//! Layout:
//! - [`topic`]: the `Topic` enum.
//! - [`verify`](mod@verify): HMAC check over the raw body and the `X-Shopify-*` headers → `DeliveryMeta`.
//! - `payload`: typed wire structs read from the JSON body, with field paths in every error.
//! - [`normalize`](mod@normalize): wire structs → `nudge_model::Event`s or a `ComplianceRequest`.
//! - [`envelope`]: EventBridge / Pub/Sub envelopes → the same headers and body as HTTPS.
//! - [`oidc`]: the Google OIDC token of an authenticated Pub/Sub push, checked against configured keys.
//! - [`source`] and [`transports`]: the intakes (HTTPS, Pub/Sub, EventBridge), one stored name `shopify`.
//! - [`enrich`]: the Admin API customer fetched for an order or checkout without an email.
//! - [`fixtures`]: builders of realistic bodies and deliveries for tests, the demo and load generation.
//!
//! The flow at the edge is `verify` (or `envelope` + `Delivery::meta`), then `normalize`. Nothing here
//! does I/O, keeps state or deduplicates; those are the server's and the store's jobs.

pub mod enrich;
pub mod envelope;
pub mod fixtures;
pub mod normalize;
pub mod oidc;
mod payload;
pub mod source;
pub mod topic;
pub mod transports;
pub mod verify;

pub use envelope::{
    Delivery, EnvelopeError, Transport, canonical_header_name, from_eventbridge, from_pubsub,
};
pub use normalize::{
    ComplianceCustomer, ComplianceRequest, ComplianceShop, NormalizeError, Normalized, guest_customer_id,
    normalize,
};
pub use payload::FieldProblem;
pub use source::{FETCHED_CUSTOMER_TOPIC, ShopifySource};
pub use topic::Topic;
pub use transports::{DEFAULT_API_KEY_HEADER, ShopifyEventBridgeSource, ShopifyPubSubSource};
pub use verify::{DeliveryMeta, VerifyError, delivery_meta, sign, verify, verify_signature};
