//! BigCommerce: thin webhook callbacks, fetch-after-notify, canonical events.
//!
//! Layout:
//! - [`verify`](mod@verify): the Standard Webhooks signature and the custom auth headers.
//! - [`payload`]: JSON reading with field paths; the thin callback ([`Notification`]).
//! - [`normalize`](mod@normalize): scopes → fetch jobs / privacy requests; fetched answers → events.
//! - [`fixtures`]: callbacks, signatures and REST answers for tests and the demo.
//!
//! [`BigCommerceSource`] is the [`Source`] the server registers at `/webhooks/bigcommerce`.

pub mod fixtures;
pub mod normalize;
pub mod payload;
pub mod verify;

pub use normalize::{FETCHED_PREFIX, Resource, SOURCE, customer_id, guest_customer_id, scope_action};
pub use payload::{FieldError, Notification};

use crate::headers::Headers;
use crate::source::{Accepted, Inbound, Parsed, Rejection, Source, StoredView, Verified};
use verify::VerifyError;

/// How one store's callbacks are authenticated.
#[derive(Clone, Default)]
pub struct BigCommerceConfig {
    pub store_hash: String,
    /// The app's client secret: the Standard Webhooks key (raw bytes, or `whsec_<base64>`).
    pub client_secret: Option<String>,
    /// Custom headers set on the hooks (name → expected value), echoed by BigCommerce on every callback.
    pub auth_headers: Vec<(String, String)>,
    /// Refuse callbacks without a signature; `None` means "when a client secret is set".
    pub require_signature: Option<bool>,
}

impl std::fmt::Debug for BigCommerceConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BigCommerceConfig")
            .field("store_hash", &self.store_hash)
            .field("client_secret", &self.client_secret.as_ref().map(|_| "[redacted]"))
            .field(
                "auth_headers",
                &self.auth_headers.iter().map(|(k, _)| format!("{k}: [redacted]")).collect::<Vec<_>>(),
            )
            .field("require_signature", &self.require_signature)
            .finish()
    }
}

/// One BigCommerce store's intake.
#[derive(Debug, Clone)]
pub struct BigCommerceSource {
    cfg: BigCommerceConfig,
}

impl BigCommerceSource {
    pub fn new(cfg: BigCommerceConfig) -> Self {
        Self { cfg }
    }

    pub fn store_hash(&self) -> &str {
        &self.cfg.store_hash
    }

    fn require_signature(&self) -> bool {
        self.cfg.require_signature.unwrap_or(self.cfg.client_secret.is_some())
    }

    /// Authenticates the request; the `webhook-id` when it was signed.
    fn authenticate(&self, req: &Inbound<'_>) -> Result<Option<String>, VerifyError> {
        let secret = self.cfg.client_secret.as_deref().filter(|s| !s.is_empty());
        if secret.is_none() && self.cfg.auth_headers.is_empty() {
            return Err(VerifyError::NotConfigured);
        }
        let signed = verify::has_signature_headers(req.headers);
        let webhook_id = match secret {
            Some(s) if signed || self.require_signature() => {
                Some(verify::verify_signature(req.headers, req.body, s, req.now_ms)?)
            }
            None if self.require_signature() => return Err(VerifyError::NotConfigured),
            _ => None,
        };
        if !self.cfg.auth_headers.is_empty() {
            verify::verify_auth_headers(req.headers, &self.cfg.auth_headers)?;
        } else if webhook_id.is_none() {
            return Err(VerifyError::Unsigned);
        }
        Ok(webhook_id)
    }

    fn auditable_headers(&self, h: &Headers) -> Vec<(String, String)> {
        h.iter()
            .filter(|(k, _)| {
                matches!(*k, "content-type" | "user-agent" | "webhook-id" | "webhook-timestamp")
                    && !self.cfg.auth_headers.iter().any(|(n, _)| n.eq_ignore_ascii_case(k))
            })
            .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v).into_owned()))
            .collect()
    }
}

impl Source for BigCommerceSource {
    fn name(&self) -> &'static str {
        SOURCE
    }

    fn verify(&self, req: &Inbound<'_>) -> Result<Verified, Rejection> {
        let webhook_id = self
            .authenticate(req)
            .map_err(|e| Rejection { status: e.http_status(), reason: e.to_string() })?;
        let n = Notification::read(req.body)
            .map_err(|e| Rejection::bad_request(format!("bigcommerce callback: {e}")))?;
        let hash = &self.cfg.store_hash;
        if n.store_hash() != Some(hash.as_str()) {
            return Err(Rejection::unauthorized(format!(
                "callback `producer` `{}` is not this store (stores/{hash})",
                n.producer.chars().take(80).collect::<String>()
            )));
        }
        let mut accepted = Accepted::new(n.scope.clone());
        accepted.dedupe_keys.push(format!("bigcommerce:{hash}:hash:{}", n.hash));
        if let Some(id) = &webhook_id {
            accepted.dedupe_keys.push(format!("bigcommerce:{hash}:webhook:{id}"));
        }
        accepted.shop = Some(hash.clone());
        accepted.webhook_id = webhook_id;
        accepted.event_id = Some(n.hash);
        accepted.audit_headers = self.auditable_headers(req.headers);
        accepted.empty_reply = true;
        Ok(Verified::Deliver(accepted))
    }

    fn parse(&self, d: &StoredView<'_>) -> Parsed {
        normalize::parse(d.shop.unwrap_or(&self.cfg.store_hash), d.topic, d.body)
    }
}
