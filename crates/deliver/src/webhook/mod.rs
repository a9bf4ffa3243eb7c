//! Signed webhooks (Standard Webhooks v1) as a destination: every action can go to any HTTPS endpoint
//! the store owner runs, as `POST` of `{"type":"nudge.<kind>","timestamp":…,"data":<the action>}`,
//! signed with HMAC-SHA256 so the receiver can check it came from nudge, unchanged and recently.
//!
//! - `config`: [`WebhookConfig`] (one `[[destinations.webhooks]]` table) and [`WebhookSecret`].
//! - `sign`: the signature scheme (signed content, header value), pure and tested on the official vector.
//! - `request`: the body, the `webhook-id` and the event-type filter; pure, the caller passes "now".
//! - `client`: [`WebhookClient`], one HTTP attempt per call, answered statuses turned into an
//!   [`crate::Outcome`] by the producer rules (2xx only is success, redirects are not followed, 410 means
//!   the endpoint is gone).

pub mod client;
pub mod config;
pub mod request;
pub mod sign;

pub use client::WebhookClient;
pub use config::{WebhookConfig, WebhookSecret};
pub use request::{WebhookRequest, build, event_type, webhook_id};
pub use sign::{signature, signature_header, signed_content};
