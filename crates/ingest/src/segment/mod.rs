//! The Segment-spec intake: what storefronts' analytics SDKs (analytics.js, analytics-python,
//! analytics-node, RudderStack's) send to `/v1/batch`, `/v1/track`, … and what it means.
//!
//! - [`request`]: reading one request (write key, gzip, the route's form, per-message limits) into
//!   normalised messages, each stored as a delivery of its own with its dedupe key.
//! - [`parse`]: [`SegmentSource`], the parser of stored messages (`track` with the e-commerce spec's v1
//!   and v2 names, `page`, `screen`, `identify`, `alias`; `group` is ignored).
//! - [`timestamp`]: the lenient timestamps SDKs write.
//!
//! Pure: bytes and a clock reading in, messages or events out.

pub mod parse;
pub mod request;
pub mod timestamp;

pub use parse::{SOURCE_NAME, SegmentSource, UserIdNamespace, e164, track_kind};
pub use request::{
    DEFAULT_MAX_REQUEST_BYTES, Dropped, MAX_BATCH_MESSAGES, MAX_MESSAGE_BYTES, MessageType, ReadMessage,
    ReadRequest, RequestError, RequestSettings, Route, key_id, read_request,
};

#[cfg(test)]
mod tests;
