//! The Slack client: one `POST` per attempt, paced by the client-side limiter, the plain-text answer
//! turned into an [`Outcome`]. A channel that is gone for good (`channel_not_found`,
//! `channel_is_archived`, `action_prohibited`, `no_service`, `invalid_token`, `no_team`) disables the
//! destination until restart: later alerts are rejected without a request.

use super::config::SlackConfig;
use super::request;
use crate::endpoint::{GuardedResolver, body_excerpt, read_capped, transport_error};
use crate::{
    DeliverError, Destination, Outcome, RateLimiter, SharedLimits, StatusClass, classify_status,
    parse_retry_after,
};
use nudge_model::Action;
use reqwest::header::{CONTENT_TYPE, RETRY_AFTER};
use std::fmt;
use std::sync::Arc;
use std::sync::Mutex;

/// How every Slack outcome names its endpoint: the URL is the credential and is never shown.
pub const ENDPOINT_LABEL: &str = "POST slack webhook";
const MAX_ANSWER_BYTES: usize = 4096;
/// Answers that mean the channel or the webhook itself is gone.
const DISABLING: &[&str] = &[
    "channel_not_found",
    "channel_is_archived",
    "action_prohibited",
    "no_service",
    "invalid_token",
    "no_team",
];

/// A [`Destination`] posting alerts to one Slack incoming webhook.
pub struct SlackClient {
    http: reqwest::Client,
    config: SlackConfig,
    limiter: RateLimiter,
    /// Slack's answer that disabled the destination, if one did.
    disabled: Arc<Mutex<Option<String>>>,
}

impl SlackClient {
    /// Builds a client after checking `config`. A TLS crypto provider must already be installed.
    pub fn new(config: SlackConfig) -> Result<Self, DeliverError> {
        config.validate()?;
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            return Err(DeliverError::NoCryptoProvider);
        }
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .connect_timeout(config.timeout.min(std::time::Duration::from_secs(5)))
            .redirect(reqwest::redirect::Policy::none())
            .dns_resolver(Arc::new(GuardedResolver { allow_private: config.allow_private }))
            .user_agent(concat!("nudge/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(SlackClient {
            http,
            limiter: RateLimiter::new(config.rate_limit),
            config,
            disabled: Arc::new(Mutex::new(None)),
        })
    }

    /// This client with its rate limiter shared by every node of the deployment through Redis, so that
    /// together they stay within the webhook's quota. `destination` names the webhook's limit in the key
    /// (`<prefix>:limit:<destination>:webhook`): nodes posting to one webhook must use the same name.
    pub fn with_shared_limits(mut self, limits: &SharedLimits, destination: &str) -> Self {
        self.limiter = self.limiter.shared(limits, &format!("{destination}:webhook"));
        self
    }

    /// Posts a Block Kit message (`blocks` with the fallback `text`, see [`request::build_blocks`]): one
    /// attempt, paced and answered like an alert.
    pub async fn post_blocks(&self, text: &str, blocks: &[serde_json::Value]) -> Outcome {
        if let Some(answer) = self.disabled_by() {
            return Self::rejected(
                None,
                format!(
                    "Slack answered `{answer}` earlier; messages are off until the webhook is fixed and the server restarted"
                ),
            );
        }
        match request::build_blocks(text, blocks) {
            Ok(body) => self.send(body).await,
            Err(e) => Self::rejected(None, e.to_string()),
        }
    }

    /// Slack's answer that disabled this destination, if one did.
    pub fn disabled_by(&self) -> Option<String> {
        self.disabled.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    fn rejected(status: Option<u16>, error: String) -> Outcome {
        Outcome::Rejected { endpoint: ENDPOINT_LABEL.into(), status, error }
    }

    async fn send(&self, body: Vec<u8>) -> Outcome {
        self.limiter.acquire().await;
        let result = self
            .http
            .post(self.config.webhook_url.trim())
            .header(CONTENT_TYPE, "application/json")
            .body(body)
            .send()
            .await;
        let response = match result {
            Ok(r) => r,
            Err(e) => {
                let error = transport_error(&e, self.config.timeout);
                tracing::warn!(endpoint = ENDPOINT_LABEL, %error, "slack request failed before a response");
                return Outcome::Retry {
                    endpoint: ENDPOINT_LABEL.into(),
                    status: None,
                    error,
                    retry_after: None,
                };
            }
        };
        let status = response.status().as_u16();
        let retry_after =
            response.headers().get(RETRY_AFTER).and_then(|v| v.to_str().ok()).and_then(parse_retry_after);
        let answer = body_excerpt(&read_capped(response, MAX_ANSWER_BYTES).await);
        let error =
            if answer.is_empty() { format!("HTTP {status}") } else { format!("HTTP {status}: {answer}") };
        let outcome = match classify_status(status) {
            StatusClass::Success if status == 200 && answer == "ok" => {
                Outcome::Delivered { endpoint: ENDPOINT_LABEL.into(), status }
            }
            StatusClass::Success => Self::rejected(Some(status), format!("{error} (Slack answers `ok`)")),
            StatusClass::Retryable => {
                Outcome::Retry { endpoint: ENDPOINT_LABEL.into(), status: Some(status), error, retry_after }
            }
            StatusClass::Permanent => {
                if DISABLING.contains(&answer.as_str()) {
                    *self.disabled.lock().unwrap_or_else(|e| e.into_inner()) = Some(answer.clone());
                }
                Self::rejected(Some(status), error)
            }
        };
        tracing::debug!(outcome = %outcome, "slack attempt finished");
        outcome
    }
}

impl fmt::Debug for SlackClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SlackClient").field("config", &self.config).finish_non_exhaustive()
    }
}

#[async_trait::async_trait]
impl Destination for SlackClient {
    fn name(&self) -> &'static str {
        "slack"
    }

    async fn deliver(&self, action: &Action) -> Outcome {
        if let Some(answer) = self.disabled_by() {
            return Self::rejected(
                None,
                format!(
                    "Slack answered `{answer}` earlier; alerts are off until the webhook is fixed and the server restarted"
                ),
            );
        }
        match request::build(action) {
            Ok(body) => self.send(body).await,
            Err(DeliverError::Invalid(message)) => Self::rejected(None, message),
            Err(other) => Self::rejected(None, other.to_string()),
        }
    }
}
