//! HubSpot as a destination: AI attributes and trigger events become contact properties written with
//! `POST /crm/v3/objects/contacts/batch/upsert` (contacts keyed by email, up to 100 per request), after
//! the custom properties they need have been created once in nudge's own property group.
//!
//! - `config`: [`HubSpotConfig`] (`[destinations.hubspot]`), its defaults and checks.
//! - `properties`: which HubSpot property type each attribute gets, and the values as HubSpot writes them.
//! - `request`: how an action becomes one batch-upsert input, the request bodies, and the documented
//!   limits checked before anything is sent; pure.
//! - `client`: [`HubSpotClient`], which creates missing properties, packs inputs into requests, sends
//!   them through one rate limiter and settles every action from HubSpot's per-record answer.
//!
//! How actions map:
//!
//! - `upsert_profile` writes `email`, `firstname`, `lastname` and every attribute as a property of the
//!   same name (the attribute prefix, `ai_` by default, keeps them apart from HubSpot's own).
//! - `trigger_event` writes `ai_last_event` (the event name) and `ai_last_event_at` (its time), so a
//!   HubSpot workflow can enrol contacts when `ai_last_event` changes. HubSpot's custom behavioural
//!   events would carry the event itself but need Marketing Hub Enterprise; properties work on every plan.
//!   The event's own properties and value are not written.
//! - `add_to_list`, `remove_from_list` and `alert` are refused without a request: HubSpot lists are
//!   built from properties (an active list on `ai_segment`, for example), and alerts go to Slack or a
//!   webhook.

pub mod client;
pub mod config;
pub mod properties;
pub mod request;

pub use client::HubSpotClient;
pub use config::{DEFAULT_BASE_URL, DEFAULT_PROPERTY_GROUP, DEFAULT_RATE, HubSpotConfig, MAX_PLAN_RATE};
pub use properties::{PropertyKind, PropertySpec};
pub use request::{ContactInput, Endpoint, MAX_BATCH_INPUTS, MAX_STRING_VALUE_CHARS};
