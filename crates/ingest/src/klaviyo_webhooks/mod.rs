//! Klaviyo system webhooks: engagement (received, opened, clicked, bounced, unsubscribed, spam) and
//! Klaviyo Reviews' submitted reviews, pushed in signed batches.
//!
//! Layout:
//! - [`verify`](mod@verify): `Klaviyo-Signature` (hex HMAC-SHA256 over body ‖ timestamp), the timestamp's
//!   skew.
//! - [`normalize`](mod@normalize): a batch's items → [`nudge_model::Event`]s, the topic mapping.
//!
//! [`KlaviyoWebhookSource`] is the [`Source`] the server registers at `/webhooks/klaviyo`. Its deliveries
//! are stored under the name `klaviyo`; a retried batch (same webhook id, same bytes) shares the dedupe
//! key `klaviyo:<webhook id>:<body digest>`. Items repeated inside one batch give one event; the same
//! item in two different batches is left to the event's `event_id` (the item's `external_id`).

pub mod normalize;
pub mod verify;

pub use normalize::{SOURCE, Skipped, TopicMeaning, topic_meaning};

use crate::headers::Headers;
use crate::source::{Accepted, Inbound, Parsed, Rejection, Source, StoredView, Verified};
use sha2::Digest;

/// The default allowed distance between `Klaviyo-Timestamp` and the edge's clock: 5 minutes.
pub const DEFAULT_MAX_SKEW_SECS: i64 = 300;

/// How the webhook's requests are authenticated.
#[derive(Clone)]
pub struct KlaviyoWebhookConfig {
    /// The webhook's `secret_key`s; a request signed with any of them is accepted (rotation).
    pub secrets: Vec<String>,
    /// Largest accepted distance between `Klaviyo-Timestamp` and now, either way, in seconds.
    pub max_skew_secs: i64,
}

impl Default for KlaviyoWebhookConfig {
    fn default() -> Self {
        Self { secrets: Vec::new(), max_skew_secs: DEFAULT_MAX_SKEW_SECS }
    }
}

impl std::fmt::Debug for KlaviyoWebhookConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KlaviyoWebhookConfig")
            .field("secrets", &format!("[{} redacted]", self.secrets.len()))
            .field("max_skew_secs", &self.max_skew_secs)
            .finish()
    }
}

/// Klaviyo's system-webhook intake.
#[derive(Debug, Clone, Default)]
pub struct KlaviyoWebhookSource {
    cfg: KlaviyoWebhookConfig,
}

impl KlaviyoWebhookSource {
    pub fn new(cfg: KlaviyoWebhookConfig) -> Self {
        Self { cfg }
    }
}

/// The first 32 hex digits of the SHA-256 of a body.
pub fn body_digest(body: &[u8]) -> String {
    hex::encode(&sha2::Sha256::digest(body)[..16])
}

fn auditable_headers(h: &Headers) -> Vec<(String, String)> {
    h.iter()
        .filter(|(k, _)| {
            matches!(*k, "content-type" | "user-agent" | "klaviyo-webhook-id" | "klaviyo-timestamp")
        })
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v).chars().take(256).collect()))
        .collect()
}

impl Source for KlaviyoWebhookSource {
    fn name(&self) -> &'static str {
        SOURCE
    }

    fn verify(&self, req: &Inbound<'_>) -> Result<Verified, Rejection> {
        let webhook_id =
            verify::verify(req.headers, req.body, &self.cfg.secrets, self.cfg.max_skew_secs, req.now_ms)
                .map_err(|e| Rejection { status: e.http_status(), reason: e.to_string() })?;
        let v: serde_json::Value = serde_json::from_slice(req.body)
            .map_err(|e| Rejection::bad_request(format!("klaviyo webhook body is not JSON: {e}")))?;
        let Some(items) = v.get("data").and_then(serde_json::Value::as_array) else {
            return Err(Rejection::bad_request("klaviyo webhook body: `data`: missing or not an array"));
        };
        // Klaviyo: a body whose `meta.klaviyo_webhook_id` is not the header's must be dropped.
        if v.pointer("/meta/klaviyo_webhook_id").and_then(serde_json::Value::as_str)
            != Some(webhook_id.as_str())
        {
            return Err(Rejection::unauthorized(
                "`meta.klaviyo_webhook_id` does not match the Klaviyo-Webhook-Id header",
            ));
        }
        let mut topics =
            items.iter().map(|i| i.get("topic").and_then(serde_json::Value::as_str).unwrap_or(""));
        let first = topics.next().unwrap_or("");
        let topic = if !first.is_empty() && topics.all(|t| t == first) {
            first.chars().take(128).collect()
        } else {
            "klaviyo/batch".to_string()
        };
        let mut a = Accepted::new(topic);
        a.shop = v
            .pointer("/meta/klaviyo_account_id")
            .and_then(serde_json::Value::as_str)
            .map(|s| s.chars().take(64).collect());
        a.dedupe_keys.push(format!("klaviyo:{webhook_id}:{}", body_digest(req.body)));
        if items.len() == 1 {
            a.event_id = items[0]
                .get("external_id")
                .and_then(serde_json::Value::as_str)
                .map(|s| s.chars().take(256).collect());
        }
        a.webhook_id = Some(webhook_id);
        a.audit_headers = auditable_headers(req.headers);
        Ok(Verified::Deliver(a))
    }

    fn parse(&self, d: &StoredView<'_>) -> Parsed {
        normalize::parse(d.body)
    }
}
