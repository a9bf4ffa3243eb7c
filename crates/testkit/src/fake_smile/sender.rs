//! Delivers Smile.io webhooks: a JSON POST of `{"account_id", "topic", "data"}` to the intake URL with the
//! tenant's token as `?token=`.

use crate::TestkitError;
use crate::shopify_sender::SentResponse;
use std::time::{Duration, Instant};

/// Sends webhooks to one intake.
#[derive(Clone)]
pub struct SmileSender {
    client: reqwest::Client,
    intake_url: String,
    url_token: Option<String>,
}

impl std::fmt::Debug for SmileSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SmileSender").field("intake_url", &self.intake_url).finish_non_exhaustive()
    }
}

impl SmileSender {
    /// A sender to `intake_url` (`…/webhooks/smile`) adding `?token=<url_token>` (none: no token).
    pub fn new(intake_url: impl Into<String>, url_token: Option<&str>) -> Result<Self, TestkitError> {
        crate::ensure_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(SmileSender { client, intake_url: intake_url.into(), url_token: url_token.map(str::to_string) })
    }

    pub fn url(&self) -> String {
        match &self.url_token {
            Some(t) => format!("{}?token={t}", self.intake_url),
            None => self.intake_url.clone(),
        }
    }

    pub async fn send(&self, body: &[u8]) -> Result<SentResponse, TestkitError> {
        let started = Instant::now();
        let response = self
            .client
            .post(self.url())
            .header("content-type", "application/json")
            .body(body.to_vec())
            .send()
            .await?;
        Ok(SentResponse::read(response, started).await?)
    }
}
