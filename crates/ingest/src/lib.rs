//! Inbound platform deliveries → canonical nudge events, as pure functions.
//!
//! A delivery is its headers plus its raw body bytes. This crate checks that it is authentic, reads what
//! its headers say about it, and turns its body into `nudge_model::Event`s (or a privacy request), with
//! an error precise enough to quarantine the body under. It does no I/O and holds no state: receiving
//! requests, deduplicating deliveries and persisting events are the server's and the store's jobs.
//!
//! Layout:
//! - [`source`]: the `Source` seam every platform implements (verify at the edge, parse in the workers).
//! - [`adobe`]: Adobe Commerce: the Webhooks module and Adobe I/O Events on one path (RSA signatures).
//! - [`headers`]: `Headers`, the case-insensitive header set every platform's verifier reads.
//! - [`bigcommerce`]: BigCommerce callbacks (Standard Webhooks signature and/or custom auth headers),
//!   fetch jobs for the resources they name, and the fetched REST answers → events.
//! - [`klaviyo_webhooks`]: Klaviyo system webhooks (signed engagement and review batches) → events.
//! - [`braze_currents`]: Braze Currents' custom HTTP connector (email engagement batches) → events.
//! - [`yotpo`], [`smile`]: Yotpo reviews and Smile.io loyalty, authenticated by a URL token
//!   ([`url_token`]) and confirmed by reading the record from the platform's API.
//! - [`segment`]: the Segment-spec storefront API (analytics SDKs' batches and messages).
//! - [`shopify`]: Shopify webhooks over HTTPS, EventBridge and Pub/Sub (`verify`, `normalize`,
//!   `envelope`, `fixtures`). Its main entry points are re-exported here.
//!
//! Invariants: ids from platforms are exact text and amounts exact decimals, never `f64`; a body is
//! verified as the exact bytes received; every input gives `Ok` or a descriptive error, never a panic.

pub mod adobe;
pub mod bigcommerce;
pub mod braze_currents;
pub mod headers;
pub mod klaviyo_webhooks;
pub mod segment;
pub mod shopify;
pub mod smile;
pub mod source;
pub mod url_token;
pub mod yotpo;

pub use headers::Headers;
pub use shopify::{
    ComplianceRequest, DeliveryMeta, NormalizeError, Normalized, Topic, VerifyError, guest_customer_id,
    normalize, verify,
};
pub use source::{
    Accepted, FetchJob, Inbound, Parsed, PrivacyRequest, PrivacySubject, Rejection, Source, StoredView,
    Verified,
};
