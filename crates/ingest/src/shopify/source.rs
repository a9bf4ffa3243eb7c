//! Shopify's HTTPS webhooks as a [`Source`]: the HMAC check and `X-Shopify-*` headers at the edge,
//! [`normalize`] in the workers, compliance topics as privacy requests.

use crate::headers::Headers;
use crate::shopify::normalize::{ComplianceRequest, Normalized, normalize};
use crate::shopify::topic::Topic;
use crate::shopify::verify::verify;
use crate::source::{
    Accepted, Inbound, Parsed, PrivacyRequest, PrivacySubject, Rejection, Source, StoredView, Verified,
};

/// The stored name of every Shopify delivery, whichever transport brought it.
pub const SOURCE: &str = "shopify";

/// Shopify over HTTPS, verified with the app's client secrets (more than one during a rotation).
#[derive(Clone)]
pub struct ShopifySource {
    secrets: Vec<String>,
}

impl std::fmt::Debug for ShopifySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShopifySource")
            .field("secrets", &format_args!("[{} redacted]", self.secrets.len()))
            .finish()
    }
}

impl ShopifySource {
    pub fn new(secrets: Vec<String>) -> Self {
        Self { secrets }
    }
}

/// Shopify metadata headers worth keeping in the audit trail: never the signature.
pub fn auditable_headers(h: &Headers) -> Vec<(String, String)> {
    h.iter()
        .filter(|(k, _)| {
            (k.starts_with("x-shopify-") && *k != "x-shopify-hmac-sha256")
                || *k == "content-type"
                || *k == "user-agent"
        })
        .map(|(k, v)| (k.to_string(), String::from_utf8_lossy(v).into_owned()))
        .collect()
}

impl Source for ShopifySource {
    fn name(&self) -> &'static str {
        SOURCE
    }

    fn verify(&self, req: &Inbound<'_>) -> Result<Verified, Rejection> {
        let meta = verify(req.headers, req.body, &self.secrets)
            .map_err(|e| Rejection { status: e.http_status(), reason: e.to_string() })?;
        let shop = meta.shop_domain.to_ascii_lowercase();
        let mut accepted = Accepted::new(meta.topic.as_str());
        accepted.dedupe_keys.push(format!("shopify:{shop}:webhook:{}", meta.webhook_id));
        if let Some(ev) = &meta.event_id {
            accepted.dedupe_keys.push(format!("shopify:{shop}:event:{ev}"));
        }
        accepted.shop = Some(shop);
        accepted.webhook_id = Some(meta.webhook_id);
        accepted.event_id = meta.event_id;
        accepted.audit_headers = auditable_headers(req.headers);
        accepted.warnings = meta.warnings;
        Ok(Verified::Deliver(accepted))
    }

    fn parse(&self, d: &StoredView<'_>) -> Parsed {
        parse(d)
    }
}

/// The parse every Shopify transport shares.
pub fn parse(d: &StoredView<'_>) -> Parsed {
    let topic = Topic::parse(d.topic);
    match normalize(&topic, d.shop.unwrap_or(""), d.body) {
        Ok(Normalized::Events(evs)) => Parsed::Events(evs),
        Ok(Normalized::Ignored { reason }) => Parsed::Ignored(reason),
        Ok(Normalized::Compliance(req)) => Parsed::Privacy(privacy_request(req)),
        Err(e) => Parsed::Quarantined(e.to_string()),
    }
}

/// A Shopify compliance topic as the privacy request it is.
pub fn privacy_request(req: ComplianceRequest) -> PrivacyRequest {
    let subject = |c: &crate::shopify::normalize::ComplianceCustomer| PrivacySubject {
        customers: c.keys().cloned().collect(),
        email: c.email.clone(),
        phone: c.phone.clone(),
    };
    match req {
        ComplianceRequest::CustomerDataRequest { customer, data_request_id, .. } => {
            PrivacyRequest::Export { subject: subject(&customer), reference: data_request_id }
        }
        ComplianceRequest::CustomerRedact { customer, .. } => {
            PrivacyRequest::Erase { subject: subject(&customer), reference: None }
        }
        ComplianceRequest::ShopRedact { shop } => {
            PrivacyRequest::EraseShop { source: SOURCE.into(), shop: shop.domain }
        }
    }
}
