//! A sender that delivers engagement the way Klaviyo's system webhooks do: a batch
//! `{"data":[{"topic","external_id","payload"}],"meta":{…}}` with `Klaviyo-Webhook-Id`,
//! `Klaviyo-Timestamp` (IMF-fixdate) and `Klaviyo-Signature` (hex HMAC-SHA256 of body ‖ timestamp). Each
//! item's payload is shaped like Klaviyo's Get Event answer with the profile included. Also the typed
//! engagement ([`EmailEngagement`]) that the Braze Currents sender shares.

use crate::TestkitError;
use crate::shopify_sender::SentResponse;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// What happened to an email.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EmailAction {
    Sent,
    Delivered,
    Opened,
    Clicked,
    Bounced,
    Unsubscribed,
    MarkedAsSpam,
}

/// One engagement event, as the tests and the demo describe it.
#[derive(Debug, Clone, PartialEq)]
pub struct EmailEngagement {
    pub action: EmailAction,
    /// The tool's id for the event.
    pub event_id: String,
    pub email: Option<String>,
    /// The profile's external id (nudge writes its customer key there, e.g. `shopify:880012`).
    pub external_id: Option<String>,
    pub campaign: Option<String>,
    pub url: Option<String>,
    /// An open made by a machine (Apple Mail Privacy Protection).
    pub machine: bool,
    pub at: OffsetDateTime,
}

impl EmailEngagement {
    pub fn new(action: EmailAction, event_id: impl Into<String>, at: OffsetDateTime) -> Self {
        Self {
            action,
            event_id: event_id.into(),
            email: None,
            external_id: None,
            campaign: None,
            url: None,
            machine: false,
            at,
        }
    }
    pub fn email(mut self, e: impl Into<String>) -> Self {
        self.email = Some(e.into());
        self
    }
    pub fn external_id(mut self, x: impl Into<String>) -> Self {
        self.external_id = Some(x.into());
        self
    }
    pub fn campaign(mut self, c: impl Into<String>) -> Self {
        self.campaign = Some(c.into());
        self
    }
    pub fn url(mut self, u: impl Into<String>) -> Self {
        self.url = Some(u.into());
        self
    }
    pub fn machine(mut self) -> Self {
        self.machine = true;
        self
    }
}

/// The Klaviyo topic of an action.
pub fn klaviyo_topic(a: EmailAction) -> &'static str {
    match a {
        EmailAction::Sent | EmailAction::Delivered => "event:klaviyo.received_email",
        EmailAction::Opened => "event:klaviyo.opened_email",
        EmailAction::Clicked => "event:klaviyo.clicked_email",
        EmailAction::Bounced => "event:klaviyo.bounced_email",
        EmailAction::Unsubscribed => "event:klaviyo.unsubscribed_from_email",
        EmailAction::MarkedAsSpam => "event:klaviyo.marked_email_as_spam",
    }
}

/// One `data[]` item for an engagement.
pub fn klaviyo_item(e: &EmailEngagement) -> Value {
    let mut props = serde_json::Map::new();
    if let Some(c) = &e.campaign {
        props.insert("Campaign Name".into(), json!(c));
    }
    if let Some(u) = &e.url {
        props.insert("URL".into(), json!(u));
    }
    if e.machine {
        props.insert("machine_open".into(), json!(true));
    }
    let mut profile = serde_json::Map::new();
    if let Some(m) = &e.email {
        profile.insert("email".into(), json!(m));
    }
    if let Some(x) = &e.external_id {
        profile.insert("external_id".into(), json!(x));
    }
    json!({
        "topic": klaviyo_topic(e.action),
        "external_id": e.event_id,
        "payload": {
            "data": {
                "type": "event",
                "id": e.event_id,
                "attributes": {
                    "timestamp": e.at.unix_timestamp(),
                    "datetime": e.at.format(&Rfc3339).unwrap_or_default(),
                    "event_properties": props,
                },
                "relationships": {"profile": {"data": {"type": "profile", "id": "01PROFILE"}}},
            },
            "included": [{"type": "profile", "id": "01PROFILE", "attributes": profile}],
        },
    })
}

/// A batch body of items (engagement items from [`klaviyo_item`], or any others).
pub fn klaviyo_batch(webhook_id: &str, items: Vec<Value>, now: OffsetDateTime) -> Vec<u8> {
    let body = json!({
        "data": items,
        "meta": {
            "klaviyo_account_id": "AbC123",
            "klaviyo_webhook_id": webhook_id,
            "timestamp": now.format(&Rfc3339).unwrap_or_default(),
        },
    });
    serde_json::to_vec(&body).expect("JSON")
}

/// `Fri, 01 May 2026 10:00:00 GMT`.
pub fn imf_fixdate(t: OffsetDateTime) -> String {
    let fmt = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.to_offset(time::UtcOffset::UTC).format(&fmt).expect("formats")
}

/// `Klaviyo-Signature`: hex HMAC-SHA256 of body ‖ timestamp.
pub fn klaviyo_sign(secret: &str, timestamp: &str, body: &[u8]) -> String {
    let mut m = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("any key length");
    m.update(body);
    m.update(timestamp.as_bytes());
    let bytes = m.finalize().into_bytes();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The headers Klaviyo sends with `body`, signed with `secret` at `at`.
pub fn klaviyo_headers(
    secret: &str,
    webhook_id: &str,
    at: OffsetDateTime,
    body: &[u8],
) -> Vec<(String, String)> {
    let ts = imf_fixdate(at);
    vec![
        ("content-type".into(), "application/json".into()),
        ("Klaviyo-Webhook-Id".into(), webhook_id.into()),
        ("Klaviyo-Signature".into(), klaviyo_sign(secret, &ts, body)),
        ("Klaviyo-Timestamp".into(), ts),
    ]
}

/// Delivers batches to one URL as one Klaviyo webhook.
#[derive(Clone)]
pub struct KlaviyoWebhookSender {
    client: reqwest::Client,
    url: String,
    secret: String,
    webhook_id: String,
}

impl std::fmt::Debug for KlaviyoWebhookSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KlaviyoWebhookSender").field("url", &self.url).finish_non_exhaustive()
    }
}

impl KlaviyoWebhookSender {
    pub fn new(url: impl Into<String>, secret: &str, webhook_id: &str) -> Result<Self, TestkitError> {
        crate::ensure_crypto_provider();
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
        Ok(Self { client, url: url.into(), secret: secret.into(), webhook_id: webhook_id.into() })
    }

    /// Sends the engagement as one signed batch, now.
    pub async fn send(&self, events: &[EmailEngagement]) -> Result<SentResponse, TestkitError> {
        let now = OffsetDateTime::now_utc();
        let body = klaviyo_batch(&self.webhook_id, events.iter().map(klaviyo_item).collect(), now);
        self.send_raw(klaviyo_headers(&self.secret, &self.webhook_id, now, &body), body).await
    }

    /// Sends any headers and body.
    pub async fn send_raw(
        &self,
        headers: Vec<(String, String)>,
        body: Vec<u8>,
    ) -> Result<SentResponse, TestkitError> {
        let mut req = self.client.post(&self.url).body(body);
        for (k, v) in headers {
            req = req.header(k, v);
        }
        let started = Instant::now();
        let r = req.send().await?;
        Ok(SentResponse::read(r, started).await?)
    }

    /// The webhook id the sender signs as.
    pub fn webhook_id(&self) -> &str {
        &self.webhook_id
    }

    /// The secret the sender signs with.
    pub fn secret(&self) -> &str {
        &self.secret
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_vector() {
        let body = r#"{"data":[{"topic":"event:klaviyo.opened_email","external_id":"evt_01","payload":{}}],"meta":{"klaviyo_account_id":"AbC123","klaviyo_webhook_id":"01HWEBHOOK","timestamp":"2026-05-01T10:00:00+00:00"}}"#;
        let ts = imf_fixdate(time::macros::datetime!(2026-05-01 10:00 UTC));
        assert_eq!(ts, "Fri, 01 May 2026 10:00:00 GMT");
        assert_eq!(
            klaviyo_sign("klaviyo_webhook_secret_0001", &ts, body.as_bytes()),
            "2146a9bf6cc8db08d36f0fda921b759ee11d91fd31f6150565a22586cd95ce45"
        );
    }
}
