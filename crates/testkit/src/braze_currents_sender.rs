//! A sender that delivers engagement the way Braze Currents' custom HTTP connector does: `POST`
//! `{"events":[…]}` with `Authorization: Bearer <token>` and `Braze-Currents-Version: 1`, each event
//! `{"event_type":"users.messages.email.<Type>","id","time","user":{…},"properties":{…}}`.

use crate::TestkitError;
use crate::klaviyo_webhook_sender::{EmailAction, EmailEngagement};
use crate::shopify_sender::SentResponse;
use serde_json::{Value, json};
use std::time::{Duration, Instant};

/// The Currents `event_type` of an action.
pub fn braze_event_type(a: EmailAction) -> &'static str {
    match a {
        EmailAction::Sent => "users.messages.email.Send",
        EmailAction::Delivered => "users.messages.email.Delivery",
        EmailAction::Opened => "users.messages.email.Open",
        EmailAction::Clicked => "users.messages.email.Click",
        EmailAction::Bounced => "users.messages.email.Bounce",
        EmailAction::Unsubscribed => "users.messages.email.Unsubscribe",
        EmailAction::MarkedAsSpam => "users.messages.email.MarkAsSpam",
    }
}

/// One Currents event for an engagement (`braze_user_id` is Braze's own user id).
pub fn braze_event(e: &EmailEngagement, braze_user_id: &str) -> Value {
    let mut user = serde_json::Map::new();
    user.insert("user_id".into(), json!(braze_user_id));
    if let Some(x) = &e.external_id {
        user.insert("external_user_id".into(), json!(x));
    }
    user.insert("timezone".into(), json!("Europe/Berlin"));
    let mut props = serde_json::Map::new();
    props.insert("campaign_id".into(), json!("c-0001"));
    props.insert("dispatch_id".into(), json!("d-0001"));
    props.insert("send_id".into(), json!("s-0001"));
    if let Some(c) = &e.campaign {
        props.insert("campaign_name".into(), json!(c));
    }
    if let Some(m) = &e.email {
        props.insert("email_address".into(), json!(m));
    }
    if let Some(u) = &e.url {
        props.insert("url".into(), json!(u));
        props.insert("link_id".into(), json!("l-1"));
    }
    if e.action == EmailAction::Opened {
        props.insert("machine_open".into(), json!(e.machine));
        props.insert("is_amp".into(), json!(false));
    }
    json!({
        "event_type": braze_event_type(e.action),
        "id": e.event_id,
        "time": e.at.unix_timestamp(),
        "user": user,
        "properties": props,
    })
}

/// A batch body.
pub fn braze_batch(events: Vec<Value>) -> Vec<u8> {
    serde_json::to_vec(&json!({ "events": events })).expect("JSON")
}

/// The headers the connector sends.
pub fn braze_headers(token: &str) -> Vec<(String, String)> {
    vec![
        ("content-type".into(), "application/json".into()),
        ("authorization".into(), format!("Bearer {token}")),
        ("braze-currents-version".into(), "1".into()),
    ]
}

/// Delivers batches to one URL with one bearer token.
#[derive(Clone)]
pub struct BrazeCurrentsSender {
    client: reqwest::Client,
    url: String,
    token: String,
}

impl std::fmt::Debug for BrazeCurrentsSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BrazeCurrentsSender").field("url", &self.url).finish_non_exhaustive()
    }
}

impl BrazeCurrentsSender {
    pub fn new(url: impl Into<String>, token: &str) -> Result<Self, TestkitError> {
        crate::ensure_crypto_provider();
        let client = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
        Ok(Self { client, url: url.into(), token: token.into() })
    }

    /// Sends the engagement as one batch.
    pub async fn send(&self, events: &[EmailEngagement]) -> Result<SentResponse, TestkitError> {
        let body = braze_batch(events.iter().map(|e| braze_event(e, "braze-user-1")).collect());
        self.send_raw(braze_headers(&self.token), body).await
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
}
