//! Delivers BigCommerce callbacks as BigCommerce does: a JSON POST signed with the Standard Webhooks
//! scheme (`webhook-id`, `webhook-timestamp`, `webhook-signature`; the HMAC key is the app's client secret
//! bytes), plus the custom headers the hook was created with.

use crate::TestkitError;
use crate::fake_webhook::verify::sign;
use crate::shopify_sender::SentResponse;
use std::time::{Duration, Instant};

/// One callback to send.
#[derive(Debug, Clone)]
pub struct Callback {
    pub body: Vec<u8>,
    /// The `webhook-id`, the same on every retry.
    pub webhook_id: String,
    /// The attempt's Unix seconds; `None` for now.
    pub timestamp: Option<i64>,
}

impl Callback {
    pub fn new(webhook_id: impl Into<String>, body: impl Into<Vec<u8>>) -> Self {
        Callback { body: body.into(), webhook_id: webhook_id.into(), timestamp: None }
    }

    pub fn at(mut self, unix_secs: i64) -> Self {
        self.timestamp = Some(unix_secs);
        self
    }
}

/// Sends callbacks to one URL.
#[derive(Clone)]
pub struct BigCommerceSender {
    client: reqwest::Client,
    target_url: String,
    client_secret: Option<String>,
    headers: Vec<(String, String)>,
}

impl std::fmt::Debug for BigCommerceSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BigCommerceSender").field("target_url", &self.target_url).finish_non_exhaustive()
    }
}

impl BigCommerceSender {
    /// A sender signing with `client_secret` (none: unsigned) and adding `headers` to every callback.
    pub fn new(
        target_url: impl Into<String>,
        client_secret: Option<&str>,
        headers: Vec<(String, String)>,
    ) -> Result<Self, TestkitError> {
        crate::ensure_crypto_provider();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        Ok(BigCommerceSender {
            client,
            target_url: target_url.into(),
            client_secret: client_secret.map(str::to_string),
            headers,
        })
    }

    /// The headers a callback is sent with.
    pub fn headers(&self, cb: &Callback) -> Vec<(String, String)> {
        let mut h = vec![("content-type".to_string(), "application/json".to_string())];
        if let Some(secret) = &self.client_secret {
            let ts = cb.timestamp.unwrap_or_else(|| time::OffsetDateTime::now_utc().unix_timestamp());
            h.push(("webhook-id".into(), cb.webhook_id.clone()));
            h.push(("webhook-timestamp".into(), ts.to_string()));
            h.push(("webhook-signature".into(), sign(secret.as_bytes(), &cb.webhook_id, ts, &cb.body)));
        }
        h.extend(self.headers.iter().cloned());
        h
    }

    pub async fn send(&self, cb: &Callback) -> Result<SentResponse, TestkitError> {
        let mut req = self.client.post(&self.target_url).body(cb.body.clone());
        for (k, v) in self.headers(cb) {
            req = req.header(k, v);
        }
        let started = Instant::now();
        let response = req.send().await?;
        Ok(SentResponse::read(response, started).await?)
    }
}
