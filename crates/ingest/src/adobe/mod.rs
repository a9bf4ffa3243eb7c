//! Adobe Commerce (Magento) as a [`Source`]: one path, `POST /webhooks/adobe-commerce`, for both of
//! Commerce's ways of calling out, told apart by their headers:
//!
//! - the **Webhooks module** ([`webhooks`]): `x-adobe-commerce-webhook-signature`, RSA-SHA256 over the
//!   base64 of the body with the configured `webhook_public_key`; answered `{"op":"success"}` once stored;
//! - **Adobe I/O Events** ([`io_events`]): `x-adobe-digital-signature-1|2` over the raw body with keys from
//!   the configured list or fetched from the key base ([`Verified::NeedKeys`]), `recipient_client_id`
//!   checked, registration challenges (`GET ?challenge=`) answered.
//!
//! Both store under the name `adobe_commerce` and parse alike ([`normalize`](mod@normalize)). Customers are
//! `adobe:<instance>:<id>`, where the instance is configured (`sources.adobe_commerce.instance`), not
//! read from the payload: a hook carries no instance id, and an I/O Event's `source` would key the same
//! store's customers apart from its hooks'.

pub mod fixtures;
pub mod io_events;
pub mod normalize;
mod payload;
pub mod verify;
pub mod webhooks;

pub use io_events::{KeyBase, KeyCache};
pub use verify::{KeyError, PublicKey};

use crate::headers::Headers;
use crate::source::{Accepted, Inbound, Parsed, Rejection, Source, StoredView, Verified};
use io_events::printable;

/// The stored name of every Adobe Commerce delivery.
pub const SOURCE: &str = "adobe_commerce";
/// The instance name used when none is configured.
pub const DEFAULT_INSTANCE: &str = "default";

/// I/O Events settings.
#[derive(Debug, Clone)]
pub struct IoEventsSettings {
    /// The Developer Console project's client id; events addressed to another are refused.
    pub client_id: String,
    /// Where key paths resolve.
    pub key_base: KeyBase,
    /// Keys trusted without a fetch (offline installs, tests), tried first.
    pub public_keys: Vec<PublicKey>,
}

/// Adobe Commerce over HTTPS.
#[derive(Debug)]
pub struct AdobeCommerceSource {
    instance: String,
    webhook_key: Option<PublicKey>,
    io: Option<IoEventsSettings>,
    fetched: KeyCache,
}

/// Checks an instance name: 1 to 48 letters, digits, `-`, `_` or `.`.
pub fn check_instance(instance: &str) -> Result<(), String> {
    let ok = !instance.is_empty()
        && instance.len() <= 48
        && instance.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok { Ok(()) } else { Err("must be 1 to 48 letters, digits, `-`, `_` or `.`".into()) }
}

impl AdobeCommerceSource {
    /// A source for `instance`; without a webhook key hooks are refused, without I/O settings events are.
    pub fn new(
        instance: &str,
        webhook_key: Option<PublicKey>,
        io: Option<IoEventsSettings>,
    ) -> Result<Self, String> {
        check_instance(instance).map_err(|e| format!("instance `{}` {e}", printable(instance)))?;
        Ok(Self { instance: instance.to_string(), webhook_key, io, fetched: KeyCache::default() })
    }

    /// How many fetched keys are cached.
    pub fn cached_keys(&self) -> usize {
        self.fetched.len()
    }

    fn verify_hook(&self, req: &Inbound<'_>, signature: &str) -> Result<Verified, Rejection> {
        let key = self
            .webhook_key
            .as_ref()
            .ok_or_else(|| Rejection::not_configured("no Adobe Commerce webhook public key is configured"))?;
        if !webhooks::signature_valid(key, signature, req.body) {
            return Err(Rejection::unauthorized("the Adobe Commerce webhook signature does not verify"));
        }
        let name = webhooks::event_name(req.body).map_err(Rejection::bad_request)?;
        let mut a = Accepted::new(name);
        a.dedupe_keys.push(format!("{SOURCE}:{}:webhook:{}", self.instance, webhooks::body_digest(req.body)));
        a.shop = Some(self.instance.clone());
        a.audit_headers = auditable_headers(req.headers);
        a.reply = Some(webhooks::success());
        Ok(Verified::Deliver(a))
    }

    fn verify_io(&self, req: &Inbound<'_>) -> Result<Verified, Rejection> {
        let io = self
            .io
            .as_ref()
            .ok_or_else(|| Rejection::not_configured("Adobe I/O Events are not configured (no client id)"))?;
        // Key paths first: a path outside the base is refused before anything is fetched or tried.
        let mut pairs = Vec::new();
        for (sig_h, path_h) in
            [(io_events::SIGNATURE_1, io_events::KEY_PATH_1), (io_events::SIGNATURE_2, io_events::KEY_PATH_2)]
        {
            let url = match req.headers.get(path_h) {
                Some(p) => Some(io.key_base.key_url(p.trim()).map_err(Rejection::unauthorized)?),
                None if req.headers.get_raw(path_h).is_some() => {
                    return Err(Rejection::unauthorized(format!("`{path_h}` is not text")));
                }
                None => None,
            };
            let sig = req.headers.get(sig_h).and_then(verify::decode_signature);
            pairs.push((sig, url));
        }
        if pairs.iter().all(|(s, _)| s.is_none()) {
            return Err(Rejection::unauthorized("no usable Adobe I/O Events digital signature"));
        }
        let configured = pairs
            .iter()
            .filter_map(|(s, _)| s.as_ref())
            .any(|s| io.public_keys.iter().any(|k| k.verify(req.body, s)));
        let mut missing = Vec::new();
        let mut verified = configured;
        if !verified {
            for (sig, url) in &pairs {
                let (Some(sig), Some(url)) = (sig, url) else { continue };
                match self.fetched.get(url) {
                    Some(k) if k.verify(req.body, sig) => verified = true,
                    Some(_) => {}
                    None => missing.push(url.clone()),
                }
            }
        }
        if !verified {
            if missing.is_empty() {
                return Err(Rejection::unauthorized("no Adobe I/O Events digital signature verifies"));
            }
            missing.dedup();
            return Ok(Verified::NeedKeys(missing));
        }
        self.accept_io(io, req)
    }

    fn accept_io(&self, io: &IoEventsSettings, req: &Inbound<'_>) -> Result<Verified, Rejection> {
        #[derive(serde::Deserialize)]
        struct Head {
            #[serde(rename = "type")]
            kind: Option<String>,
            event_id: Option<String>,
            id: Option<String>,
            recipient_client_id: Option<String>,
        }
        let head: Head = serde_json::from_slice(req.body)
            .map_err(|e| Rejection::bad_request(format!("the body is not an I/O Event: {e}")))?;
        if head.recipient_client_id.as_deref() != Some(io.client_id.as_str()) {
            return Err(Rejection::unauthorized("the event's recipient_client_id is not our client id"));
        }
        let topic = head
            .kind
            .filter(|t| !t.is_empty() && t.len() <= 200 && !t.chars().any(char::is_control))
            .ok_or_else(|| Rejection::bad_request("the event has no usable `type`"))?;
        let event_id = head
            .event_id
            .or_else(|| req.headers.get(io_events::EVENT_ID).map(str::to_string))
            .or(head.id)
            .filter(|e| !e.is_empty() && e.len() <= 128 && !e.chars().any(|c| c.is_control() || c == ' '))
            .ok_or_else(|| Rejection::bad_request("the event has no usable `event_id`"))?;
        let mut a = Accepted::new(topic);
        a.dedupe_keys.push(format!("{SOURCE}:{}:event:{event_id}", self.instance));
        a.shop = Some(self.instance.clone());
        a.event_id = Some(event_id);
        a.webhook_id = req.headers.get(io_events::DELIVERY_ID).map(printable);
        a.audit_headers = auditable_headers(req.headers);
        Ok(Verified::Deliver(a))
    }
}

/// Adobe metadata headers worth keeping in the audit trail: never a signature or a key path.
pub fn auditable_headers(h: &Headers) -> Vec<(String, String)> {
    h.iter()
        .filter(|(k, _)| {
            (k.starts_with("x-adobe-") && !k.contains("signature") && !k.contains("key"))
                || *k == "content-type"
                || *k == "user-agent"
        })
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v).chars().take(200).collect()))
        .collect()
}

impl Source for AdobeCommerceSource {
    fn name(&self) -> &'static str {
        SOURCE
    }

    fn verify(&self, req: &Inbound<'_>) -> Result<Verified, Rejection> {
        if let Some(query) = req.query {
            if self.io.is_none() {
                return Err(Rejection::not_configured("Adobe I/O Events are not configured (no client id)"));
            }
            let challenge = io_events::challenge(query).map_err(Rejection::bad_request)?;
            return Ok(Verified::Answer { status: 200, body: serde_json::json!({ "challenge": challenge }) });
        }
        if let Some(sig) = req.headers.get_raw(webhooks::SIGNATURE) {
            let sig = std::str::from_utf8(sig).unwrap_or("");
            return self.verify_hook(req, sig);
        }
        let io_headers =
            [io_events::SIGNATURE_1, io_events::SIGNATURE_2, io_events::KEY_PATH_1, io_events::KEY_PATH_2];
        if io_headers.iter().any(|h| req.headers.get_raw(h).is_some()) {
            return self.verify_io(req);
        }
        // A failed challenge makes Adobe POST a validation URL for a person to open; it is never fetched.
        if self.io.is_some() && is_validation_url(req.body) {
            return Ok(Verified::Answer {
                status: 200,
                body: serde_json::json!({
                    "status": "received",
                    "note": "validationUrl is not fetched; open it by hand within 5 minutes",
                }),
            });
        }
        Err(Rejection::unauthorized("the request carries no Adobe Commerce or Adobe I/O Events signature"))
    }

    fn accept_key(&self, url: &str, pem: &str) -> Result<(), String> {
        let Some(io) = &self.io else { return Err("Adobe I/O Events are not configured".into()) };
        if !url.strip_prefix(io.key_base.as_str()).is_some_and(|p| p.starts_with('/')) {
            return Err(format!("{url} is not under the key base"));
        }
        let key = PublicKey::from_pem(pem).map_err(|e| format!("the key at {url}: {e}"))?;
        self.fetched.insert(url, key);
        Ok(())
    }

    fn parse(&self, d: &StoredView<'_>) -> Parsed {
        parse(d)
    }
}

/// True for `{"validationUrl": "…"}` alone.
fn is_validation_url(body: &[u8]) -> bool {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Validation {
        #[serde(rename = "validationUrl")]
        _url: String,
    }
    serde_json::from_slice::<Validation>(body).is_ok()
}

/// The parse both intakes share: the instance is the stored shop.
pub fn parse(d: &StoredView<'_>) -> Parsed {
    let instance = d.shop.unwrap_or(DEFAULT_INSTANCE);
    match normalize::normalize(d.topic, instance, d.body) {
        Ok(normalize::Normalized::Events(evs)) => Parsed::Events(evs),
        Ok(normalize::Normalized::Ignored(reason)) => Parsed::Ignored(reason),
        Err(reason) => Parsed::Quarantined(reason),
    }
}
