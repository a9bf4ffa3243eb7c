//! Faithful fakes of the services nudge talks to, for tests and for `nudge demo` / `nudge dev`.
//!
//! - [`fake_klaviyo`]: an HTTP server that enforces Klaviyo's request contract (auth, revision, media type,
//!   body limits, schema, rate limits) and keeps the profiles and events it accepted, with switchable
//!   failure modes. A fake that accepted anything would prove nothing, so every rule it checks is one the
//!   real API documents.
//! - [`fake_bigcommerce`]: a BigCommerce store's REST reads (orders, carts, customers, products) with its
//!   token, media type and per-window quota with the `X-Rate-Limit-*` headers, failure switches, and a
//!   sender that signs callbacks as BigCommerce does.
//! - [`fake_braze`]: Braze's `POST /users/track` with its identifier, body, batch-cap and rate-limit rules,
//!   per-record errors inside a 200 on demand, `202 queued`, and the users and events it accepted.
//! - [`fake_marketo`]: a Marketo instance (REST API and Identity) enforcing the token lifecycle, the
//!   answer envelope with its three error levels, Sync Leads, custom activities, static lists, Describe,
//!   and the rate, concurrency and daily limits, keeping the leads, activities and list members it accepted.
//! - [`fake_webhook`]: a Standard Webhooks receiver that verifies signatures as the reference libraries
//!   do, deduplicates on `webhook-id`, and answers 410/429/5xx/redirects/slowness/garbage on demand.
//! - [`fake_hubspot`]: HubSpot's CRM endpoints nudge writes to (batch contact upsert keyed by email,
//!   property groups and properties), with its per-record 207 answers, bearer auth and 10-second limit.
//! - [`fake_shopify_admin`]: Shopify's GraphQL Admin API for one shop's `customer(id:)`, with the token
//!   header, the API version path, the calculated-cost bucket with `extensions.cost` and THROTTLED
//!   answers, and seeded customers.
//! - [`fake_llm`]: an OpenAI-compatible Chat Completions server enforcing the request contract, with
//!   deterministic completions derived from the prompt, latency, 429s, 5xx, malformed and over-long output
//!   on demand, and every request body recorded.
//! - [`fake_scorer`]: an external scorer for `[[scoring.custom]]` HTTP models, enforcing the request
//!   contract (a pseudonymised customer, the named features), answering deterministic scores, and hanging,
//!   500s, garbage, other shapes, out-of-range values or slowness on demand.
//! - [`fake_slack`]: a Slack incoming webhook with Slack's plain-text answers, its Block Kit limits and its
//!   rate limit.
//! - [`fake_smtp`]: a local SMTP sink (EHLO, AUTH PLAIN/LOGIN, MAIL/RCPT/DATA in order) that keeps the
//!   messages it accepted.
//! - [`fake_adobe_io`]: Adobe I/O Events' key server (PEMs at paths, fetches counted) and a sender that
//!   signs I/O Events and Commerce Webhooks-module requests as Adobe does.
//! - [`shopify_sender`]: a client that delivers webhooks the way Shopify does (HMAC over the exact bytes,
//!   the `X-Shopify-*` headers), with options to send deliberately wrong ones.
//!
//! - [`klaviyo_webhook_sender`], [`braze_currents_sender`]: engagement delivered as Klaviyo's system
//!   webhooks (signed batches) and Braze Currents' custom HTTP connector (bearer token) send it.
//!
//! - [`google_oidc`]: RS256 tokens as Google signs them for an authenticated Pub/Sub push, with committed
//!   test keys and the key documents (JWKS, certificate map, PEM) an operator would configure.
//!
//! - [`server`]: what every fake shares (an ephemeral local port, the server task, stopping it), and
//!   [`eventually`], the polling wait the integration tests use.
//!
//! What does not live here: nudge's own logic. The fakes only know the external contracts.

pub mod braze_currents_sender;
pub mod fake_adobe_io;
pub mod fake_bigcommerce;
pub mod fake_braze;
pub mod fake_hubspot;
pub mod fake_klaviyo;
pub mod fake_llm;
pub mod fake_marketo;
pub mod fake_scorer;
pub mod fake_shopify_admin;
pub mod fake_slack;
pub mod fake_smile;
pub mod fake_smtp;
pub mod fake_webhook;
pub mod fake_yotpo;
pub mod google_oidc;
pub mod klaviyo_webhook_sender;
pub mod server;
pub mod shopify_sender;
pub mod tls_front;

pub use fake_bigcommerce::{
    BigCommerceMode, BigCommerceRequest, BigCommerceSender, Callback, FakeBigCommerce, FakeBigCommerceConfig,
    FakeBigCommerceHandle, FakeBigCommerceSeeder,
};
pub use fake_braze::{BrazeMode, FakeBraze, FakeBrazeConfig, FakeBrazeHandle};
pub use fake_hubspot::{FakeHubSpot, FakeHubSpotConfig, FakeHubSpotHandle, HubSpotMode};
pub use fake_klaviyo::{
    FakeKlaviyo, FakeKlaviyoConfig, FakeKlaviyoHandle, FakeMode, FakeRateLimit, RecordedRequest, StoredEvent,
    StoredProfile,
};
pub use fake_llm::{FakeLlm, FakeLlmConfig, FakeLlmHandle, LlmAnswer, LlmProfile, LlmRequest};
pub use fake_marketo::{
    FakeMarketo, FakeMarketoConfig, FakeMarketoHandle, MarketoMode, MarketoRequest, SkipSpelling,
    StoredActivity, StoredLead,
};
pub use fake_scorer::{FakeScorer, FakeScorerConfig, FakeScorerHandle, ScorerMode, ScorerRequest};
pub use fake_shopify_admin::{
    AdminStats, FakeCustomer, FakeShopifyAdmin, FakeShopifyAdminConfig, FakeShopifyAdminHandle,
};
pub use fake_slack::{FakeSlack, FakeSlackConfig, FakeSlackHandle, SlackMode};
pub use fake_smile::{FakeSmile, FakeSmileConfig, FakeSmileHandle, SmileRequest, SmileSender};
pub use fake_webhook::{AcceptedWebhook, FakeWebhook, FakeWebhookHandle, WebhookMode};
pub use fake_yotpo::{FakeYotpo, FakeYotpoConfig, FakeYotpoHandle, YotpoRequest, YotpoSender, YotpoWebhook};
pub use shopify_sender::{Delivery, SendOptions, SentResponse, ShopifySender, Signature};

/// The errors callers of this crate match on.
#[derive(Debug, thiserror::Error)]
pub enum TestkitError {
    /// The fake could not listen on the requested address.
    #[error("could not listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    /// The fake's server loop stopped with an error.
    #[error("the fake server stopped: {0}")]
    Serve(std::io::Error),
    /// A request made by one of the senders failed before a response arrived.
    #[error("HTTP request failed: {0}")]
    Http(#[from] reqwest::Error),
    /// A header value given to a sender cannot be sent.
    #[error("header `{name}` cannot be sent: {reason}")]
    InvalidHeader { name: String, reason: String },
}

/// Installs ring as the process-wide TLS crypto provider unless one is installed already.
///
/// The HTTP client is built without a default provider, so something must install one before the first
/// client is built; the senders here call this themselves because they are used outside the binary too.
pub fn ensure_crypto_provider() {
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        // Losing a race with another thread installing one is fine: either way a provider is installed.
        let _ = rustls::crypto::ring::default_provider().install_default();
    }
}

/// Polls `f` every 50 ms until it returns true (then true) or `secs` pass (then false).
pub async fn eventually(secs: u64, mut f: impl AsyncFnMut() -> bool) -> bool {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(secs);
    while tokio::time::Instant::now() < deadline {
        if f().await {
            return true;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    false
}
