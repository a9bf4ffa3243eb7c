//! Braze as a destination: profile attributes, list membership and trigger events all go to
//! `POST /users/track` on the workspace's instance (`https://rest.<cluster>.braze.com` or `.braze.eu`),
//! packed up to 75 objects per request.
//!
//! - `config`: [`BrazeConfig`], the `[destinations.braze]` settings, their defaults and checks.
//! - `request`: how each action becomes one attributes or event object, how objects are packed into a
//!   request, and the documented limits checked before sending.
//! - `client`: [`BrazeClient`], one HTTP attempt per request, rate limited (3,000 per 3 s by default),
//!   each action settled by Braze's answer, per record where Braze answers per record.
//!
//! Braze has no lists in its REST API: list actions change the array attribute `ai_lists`, which
//! segments can filter on. Purchases, `/campaigns/trigger/send` and `/canvas/trigger/send`, and reading
//! engagement back (Currents) are not here.

pub mod client;
pub mod config;
pub mod request;

pub use client::BrazeClient;
pub use config::{BrazeConfig, DOCUMENTED_RATE, MAX_BATCH_SIZE};
pub use request::{
    EVENT_ID_PROPERTY, LISTS_ATTRIBUTE, Section, TrackObject, TrackRequest, object_for, track_request,
};
