//! Delivers Yotpo review webhooks: a JSON POST to the intake URL with the tenant's token as `?token=`,
//! and a `WebhookMessageId` header (the same on a retry).

use crate::TestkitError;
use crate::shopify_sender::SentResponse;
use std::time::{Duration, Instant};

/// One webhook.
#[derive(Debug, Clone)]
pub struct YotpoWebhook {
    pub message_id: String,
    pub body: Vec<u8>,
}

/// Sends webhooks to one intake.
#[derive(Clone)]
pub struct YotpoSender {
    client: reqwest::Client,
    intake_url: String,
    url_token: Option<String>,
}

impl std::fmt::Debug for YotpoSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YotpoSender").field("intake_url", &self.intake_url).finish_non_exhaustive()
    }
}

impl YotpoSender {
    /// A sender to `intake_url` (`…/webhooks/yotpo`) adding `?token=<url_token>` (none: no token).
    pub fn new(intake_url: impl Into<String>, url_token: Option<&str>) -> Result<Self, TestkitError> {
        crate::ensure_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(YotpoSender { client, intake_url: intake_url.into(), url_token: url_token.map(str::to_string) })
    }

    /// The URL a webhook is posted to.
    pub fn url(&self) -> String {
        match &self.url_token {
            Some(t) => format!("{}?token={t}", self.intake_url),
            None => self.intake_url.clone(),
        }
    }

    pub async fn send(&self, w: &YotpoWebhook) -> Result<SentResponse, TestkitError> {
        let started = Instant::now();
        let response = self
            .client
            .post(self.url())
            .header("content-type", "application/json")
            .header("WebhookMessageId", &w.message_id)
            .body(w.body.clone())
            .send()
            .await?;
        Ok(SentResponse::read(response, started).await?)
    }
}
