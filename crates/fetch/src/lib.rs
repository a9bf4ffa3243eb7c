//! The reads a source needs from its platform's API before a delivery can be processed: BigCommerce's
//! fetch-after-notify (its webhooks carry only ids), Shopify Admin enrichment, and the confirming reads
//! behind Yotpo review and Smile.io loyalty notifications (`yotpo`, `smile`).
//!
//! A source's parser turns a thin notification into a [`FetchJob`]; the server stores the job durably and
//! its fetch worker hands it to the [`Fetcher`] registered for the job's source. What the fetcher answers
//! decides what happens next: the fetched body is committed to the ingest log as a delivery of the same
//! source and trace (topic [`FetchJob::topic`]) and parsed like any other; a resource that is gone (404) is
//! a normal, audited end; a retry waits and tries again; a failure dead-letters the job with its reason.
//!
//! Each platform is a folder of the same shape as the destinations': `config.rs`, `request.rs` (pure request
//! builders), `client.rs` (HTTP, rate-limit headers, answers → [`FetchOutcome`]); its fake is in the test kit.

pub mod bigcommerce;

pub use bigcommerce::{BigCommerceFetchConfig, BigCommerceFetcher};
pub mod shopify_admin;
pub mod smile;
pub mod yotpo;

pub use nudge_ingest::FetchJob;
pub use shopify_admin::{ShopifyAdminConfig, ShopifyAdminFetcher};
pub use smile::{SmileFetchConfig, SmileFetcher};
use std::time::Duration;
pub use yotpo::{YotpoFetchConfig, YotpoFetcher};

/// What one attempt at a fetch job came to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FetchOutcome {
    /// The platform's answer, to be stored under the job's topic and parsed by its source.
    Fetched(Vec<u8>),
    /// The resource no longer exists (a converted cart, a deleted customer): the delivery ends here,
    /// with this reason in the audit trail.
    Gone(String),
    /// Try again after `after` (a 429's reset, a 5xx's backoff, a timeout).
    Retry { after: Duration, reason: String },
    /// Will never succeed as it stands (refused credentials, an answer that is not the API's): the job is
    /// dead-lettered with this reason and can be replayed once fixed.
    Failed(String),
}

/// One platform's reads.
#[async_trait::async_trait]
pub trait Fetcher: Send + Sync {
    /// The source whose jobs this fetcher answers (`FetchJob::source`).
    fn source(&self) -> &'static str;

    /// Makes one attempt at `job`. Waits for the platform's rate limit itself, so a caller never sends a
    /// request the platform would answer 429.
    async fn fetch(&self, job: &FetchJob) -> FetchOutcome;
}

/// The HTTP client a fetcher reads its platform's API with: `timeout` per request (connecting within
/// at most 5 s of it), no redirects (an API answer is never a redirect to follow with credentials).
pub(crate) fn http_client(platform: &str, timeout: std::time::Duration) -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .timeout(timeout)
        .connect_timeout(timeout.min(std::time::Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(|e| format!("{platform} HTTP client: {e}"))
}
