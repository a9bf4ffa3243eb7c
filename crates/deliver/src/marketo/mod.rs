//! Marketo Engage as a destination (REST API): profile attributes go to Sync Leads
//! (`POST /rest/v1/leads.json`, `createOrUpdate`), trigger events become custom activities
//! (`POST /rest/v1/activities/external.json`) on the lead Sync Leads returns, and list actions add leads
//! to or remove them from static lists (`POST` / `DELETE /rest/v1/lists/{listId}/leads.json`), again after
//! a Sync Leads that yields the lead id. Alerts are not taken.
//!
//! - `config`: [`MarketoConfig`], the `[destinations.marketo]` settings.
//! - `token`: the access token from Marketo Identity, cached and refreshed.
//! - `request`: records, limits (300 records, 1 MB), packing, and reading Marketo's envelope and codes.
//! - `client`: [`MarketoClient`], batched calls within Marketo's rate, concurrency and quota limits.
//!
//! Lead fields are checked against Describe (cached up to a day) before sending; nudge never creates
//! fields, because Marketo fields cannot be deleted.

pub mod client;
pub mod config;
pub mod request;
mod token;

pub use client::{FIELDS_MAX_AGE, MarketoClient};
pub use config::{MAX_BATCH_SIZE, MAX_IN_FLIGHT, MAX_RATE, MarketoConfig};
pub use token::REFRESH_MARGIN;
