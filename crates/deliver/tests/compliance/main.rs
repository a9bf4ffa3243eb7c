//! The destination compliance suite: one list of behaviours every connector must show against its faithful
//! fake, run over each connector.
//!
//! It lives in `deliver`'s tests because it needs both sides: the connectors (this crate) and the fakes
//! (`nudge-testkit`, which must not depend on the connectors it checks). A connector joins by
//! implementing [`Harness`] — how to build its client against its fake, with good and bad credentials,
//! which action is valid and which invalid, and how to make the fake throttle, fail and stall — and by a
//! `#[tokio::test]` calling [`run_suite`]. Connector-specific rules (410 for webhooks, Slack's disabling
//! answers) follow the suite. Klaviyo, Braze, HubSpot, Marketo, webhooks and Slack run it. Connectors that
//! batch (Braze, HubSpot, Marketo) also implement
//! [`suite::BatchHarness`] and run [`suite::run_batch_suite`]: oversized batches split, partial success
//! settled per record, a whole-request failure retried for every record, invalid records refused alone.

mod suite;

mod braze;
mod erase;
mod hubspot;
mod klaviyo;
mod marketo;
mod slack;
mod webhook;
