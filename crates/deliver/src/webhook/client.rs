//! The webhook HTTP client: one signed `POST` per attempt and the producer rules for what the answer
//! means. 2xx is success and nothing else is; a redirect is not followed and is a rejection (the same
//! request would be redirected again); 410 means the receiver asked for no more deliveries, so the
//! endpoint is disabled until restart and every later action is rejected without a request; 408, 429 and
//! 5xx are retried, with the receiver's `Retry-After`; every other status is a rejection.

use super::config::{WebhookConfig, WebhookSecret};
use super::{request, sign};
use crate::endpoint::{GuardedResolver, body_excerpt, read_capped, transport_error};
use crate::{DeliverError, Destination, Outcome, StatusClass, classify_status, parse_retry_after};
use nudge_model::Action;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use time::OffsetDateTime;

const MAX_ERROR_BODY_BYTES: usize = 4096;

/// A [`crate::Destination`] posting signed webhooks to one endpoint.
pub struct WebhookClient {
    http: reqwest::Client,
    config: WebhookConfig,
    /// The current secret first, then those being rotated out.
    secrets: Vec<WebhookSecret>,
    /// The endpoint label in outcomes: `POST webhook:<name>` (the URL can hold a token, so it is not shown).
    label: String,
    /// Set when the receiver answered 410 Gone.
    gone: Arc<AtomicBool>,
}

impl WebhookClient {
    /// Builds a client after checking `config`. A TLS crypto provider must already be installed.
    pub fn new(config: WebhookConfig) -> Result<Self, DeliverError> {
        config.validate()?;
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            return Err(DeliverError::NoCryptoProvider);
        }
        let secrets = std::iter::once(&config.secret)
            .chain(&config.previous_secrets)
            .map(|s| WebhookSecret::parse(s).map_err(DeliverError::Config))
            .collect::<Result<Vec<_>, _>>()?;
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(std::time::Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(GuardedResolver { allow_private: config.allow_private }))
            .user_agent(concat!("nudge/", env!("CARGO_PKG_VERSION")))
            .build()?;
        let label = format!("POST {}", config.destination_name());
        Ok(WebhookClient { http, config, secrets, label, gone: Arc::new(AtomicBool::new(false)) })
    }

    pub fn config(&self) -> &WebhookConfig {
        &self.config
    }

    /// Whether the receiver answered 410 Gone (the endpoint is disabled until restart).
    pub fn is_gone(&self) -> bool {
        self.gone.load(Ordering::SeqCst)
    }

    fn rejected(&self, status: Option<u16>, error: String) -> Outcome {
        Outcome::Rejected { endpoint: self.label.clone(), status, error }
    }

    /// Sends `req` signed at `timestamp` (unix seconds of this attempt).
    async fn send(&self, req: request::WebhookRequest, timestamp: i64) -> Outcome {
        let signature = sign::signature_header(&self.secrets, &req.id, timestamp, &req.body);
        let result = self
            .http
            .post(self.config.url.trim())
            .header(CONTENT_TYPE, "application/json")
            .header("webhook-id", &req.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header("webhook-signature", signature)
            .body(req.body)
            .send()
            .await;
        let response = match result {
            Ok(r) => r,
            Err(e) => {
                let error = transport_error(&e, self.config.timeout);
                tracing::warn!(endpoint = %self.label, %error, "webhook request failed before a response");
                return Outcome::Retry {
                    endpoint: self.label.clone(),
                    status: None,
                    error,
                    retry_after: None,
                };
            }
        };
        let status = response.status().as_u16();
        let retry_after =
            response.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
        let outcome = match (status, classify_status(status)) {
            (_, StatusClass::Success) => Outcome::Delivered { endpoint: self.label.clone(), status },
            (300..=399, _) => self.rejected(
                Some(status),
                format!("HTTP {status}: the endpoint redirects, and webhooks do not follow redirects; configure the final URL"),
            ),
            (410, _) => {
                self.gone.store(true, Ordering::SeqCst);
                self.rejected(
                    Some(status),
                    "HTTP 410: the endpoint is gone (the receiver asked for no more deliveries); it is disabled until the webhook is fixed and the server restarted".into(),
                )
            }
            (_, StatusClass::Retryable) => {
                let body = read_capped(response, MAX_ERROR_BODY_BYTES).await;
                Outcome::Retry {
                    endpoint: self.label.clone(),
                    status: Some(status),
                    error: error_text(status, &body),
                    retry_after,
                }
            }
            (_, StatusClass::Permanent) => {
                let body = read_capped(response, MAX_ERROR_BODY_BYTES).await;
                self.rejected(Some(status), error_text(status, &body))
            }
        };
        tracing::debug!(outcome = %outcome, "webhook attempt finished");
        outcome
    }
}

fn error_text(status: u16, body: &[u8]) -> String {
    let excerpt = body_excerpt(body);
    if excerpt.is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {excerpt}") }
}

impl fmt::Debug for WebhookClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookClient").field("config", &self.config).finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl Destination for WebhookClient {
    fn name(&self) -> &'static str {
        "webhook"
    }

    async fn deliver(&self, action: &Action) -> Outcome {
        if self.is_gone() {
            return self.rejected(
                None,
                "the endpoint answered 410 Gone earlier and is disabled until the server restarts".into(),
            );
        }
        let now = OffsetDateTime::now_utc();
        match request::build(action, self.config.events.as_deref(), now) {
            Ok(req) => self.send(req, now.unix_timestamp()).await,
            Err(DeliverError::Invalid(message)) => self.rejected(None, message),
            Err(other) => self.rejected(None, other.to_string()),
        }
    }
}
