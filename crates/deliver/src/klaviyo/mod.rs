//! Klaviyo as a destination (API revision 2026-07-15): profile attributes go to
//! `POST /api/profile-import`, trigger events to `POST /api/events`, list membership to
//! `POST` / `DELETE /api/lists/{id}/relationships/profiles` after a profile-import that yields the
//! profile id.
//!
//! - `config`: [`KlaviyoConfig`], the settings the server reads from its configuration file.
//! - `request`: the JSON:API documents and the documented limits checked before sending.
//! - `client`: [`KlaviyoClient`], one HTTP attempt per call, rate limited per endpoint.
//! - `bulk`: profile upserts of a batch run (`Destination::push_profiles`) as bulk profile import jobs,
//!   polled until they finish, with per-profile import errors mapped back to their records.
//!
//! Reading engagement back is not here yet.

pub mod bulk;
pub mod client;
pub mod config;
pub mod request;

pub use client::{JSON_API, KlaviyoClient};
pub use config::{DEFAULT_BASE_URL, DEFAULT_REVISION, KlaviyoConfig};
pub use request::{Endpoint, KlaviyoRequest, build, list_membership};
