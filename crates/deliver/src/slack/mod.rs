//! Slack incoming webhooks as a destination for alerts (`POST {"text": …}`) and for Block Kit messages such
//! as digests (`{"text": …, "blocks": […]}`) to the webhook URL, which is
//! itself the credential (it is never logged, shown in `Debug` or put in an outcome).
//!
//! - `config`: [`SlackConfig`] (`[destinations.slack]`).
//! - `request`: the message body and its checks; pure.
//! - `client`: [`SlackClient`], one attempt per call, Slack's plain-text answers turned into an
//!   [`crate::Outcome`]: `ok` is success; `invalid_payload`, `action_prohibited`, `channel_not_found`,
//!   `channel_is_archived`, `no_service`, … are permanent; 429 and 5xx are retried.

pub mod client;
pub mod config;
pub mod request;

pub use client::{ENDPOINT_LABEL, SlackClient};
pub use config::SlackConfig;
pub use request::{MAX_BLOCKS, MAX_TEXT_CHARS, build, build_blocks};
