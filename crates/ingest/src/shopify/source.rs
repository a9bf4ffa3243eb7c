//! Shopify's HTTPS webhooks as a [`Source`]: the HMAC check and `X-Shopify-*` headers at the edge,
//! [`normalize`] in the workers, compliance topics as privacy requests.
//!
//! With customer enrichment on ([`ShopifySource::enrich_customers`], set when the Admin API is
//! configured), an order or checkout whose customer has a Shopify id but no email parses to a
//! [`FetchJob`] for that customer instead; the fetcher's answer (topic [`FETCHED_CUSTOMER_TOPIC`]) carries
//! the original payload and the customer, and parses to the original events with the email filled in
//! (see [`enrich`](crate::shopify::enrich)).

use crate::headers::Headers;
use crate::shopify::normalize::{ComplianceRequest, Normalized, normalize};
use crate::shopify::topic::Topic;
use crate::shopify::verify::{DeliveryMeta, verify};
use crate::source::{
    Accepted, FetchJob, Inbound, Parsed, PrivacyRequest, PrivacySubject, Rejection, Source, StoredView,
    Verified,
};
use nudge_model::Event;

/// The stored name of every Shopify delivery, whichever transport brought it.
pub const SOURCE: &str = "shopify";

/// The topic a fetched customer (the answer to an enrichment job) is stored under.
pub const FETCHED_CUSTOMER_TOPIC: &str = "shopify/fetched/customer";

/// The parse every Shopify transport shares, with or without customer enrichment.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Shopify {
    pub(crate) enrich: bool,
}

impl Shopify {
    pub(crate) fn parse(&self, d: &StoredView<'_>) -> Parsed {
        let parsed = parse(d);
        // An answer is never enriched again: a customer the API no longer has would loop.
        if !self.enrich || d.topic == FETCHED_CUSTOMER_TOPIC {
            return parsed;
        }
        match &parsed {
            Parsed::Events(evs) => match enrichment_job(d, evs) {
                Some(job) => Parsed::Fetch(job),
                None => parsed,
            },
            _ => parsed,
        }
    }
}

/// The enrichment job for a notification whose one order or checkout names a Shopify customer by id
/// and carries no email.
fn enrichment_job(d: &StoredView<'_>, evs: &[Event]) -> Option<FetchJob> {
    let [event] = evs else { return None };
    let (customer, email) = match event {
        Event::OrderUpserted(o) | Event::OrderCancelled(o) => (o.customer.as_ref()?, &o.email),
        Event::CheckoutUpserted(c) => (c.customer.as_ref()?, &c.email),
        _ => return None,
    };
    let id = customer.local();
    if email.as_deref().is_some_and(|e| !e.trim().is_empty()) || !id.bytes().all(|b| b.is_ascii_digit()) {
        return None; // Has an email already, or a guest key (derived from an email).
    }
    Some(FetchJob {
        source: SOURCE.into(),
        shop: d.shop.map(str::to_string),
        resource: "customer".into(),
        id: id.to_string(),
        topic: FETCHED_CUSTOMER_TOPIC.into(),
        notified_topic: d.topic.to_string(),
        carry: Some(std::str::from_utf8(d.body).ok()?.to_string()),
    })
}

/// Shopify over HTTPS, verified with the app's client secrets (more than one during a rotation).
#[derive(Clone)]
pub struct ShopifySource {
    secrets: Vec<String>,
    parser: Shopify,
}

impl std::fmt::Debug for ShopifySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShopifySource")
            .field("secrets", &format_args!("[{} redacted]", self.secrets.len()))
            .field("enrich_customers", &self.parser.enrich)
            .finish()
    }
}

impl ShopifySource {
    pub fn new(secrets: Vec<String>) -> Self {
        Self { secrets, parser: Shopify::default() }
    }

    /// Turns customer enrichment on or off (off by default): on, an order or checkout whose customer has
    /// a Shopify id but no email parses to a fetch of that customer from the Admin API. Turn it on only
    /// where a fetcher for `shopify` runs.
    pub fn enrich_customers(mut self, on: bool) -> Self {
        self.parser.enrich = on;
        self
    }
}

/// What an authentic delivery with these headers is accepted as, whichever transport brought it: the
/// same topic, shop and dedupe keys, so one event delivered two ways is one delivery.
pub(crate) fn accepted_from_meta(meta: DeliveryMeta, headers: &Headers) -> Accepted {
    let shop = meta.shop_domain.to_ascii_lowercase();
    let mut accepted = Accepted::new(meta.topic.as_str());
    accepted.dedupe_keys.push(format!("shopify:{shop}:webhook:{}", meta.webhook_id));
    if let Some(ev) = &meta.event_id {
        accepted.dedupe_keys.push(format!("shopify:{shop}:event:{ev}"));
    }
    accepted.shop = Some(shop);
    accepted.webhook_id = Some(meta.webhook_id);
    accepted.event_id = meta.event_id;
    accepted.audit_headers = auditable_headers(headers);
    accepted.warnings = meta.warnings;
    accepted
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
        Ok(Verified::Deliver(accepted_from_meta(meta, req.headers)))
    }

    fn parse(&self, d: &StoredView<'_>) -> Parsed {
        self.parser.parse(d)
    }
}

/// The parse every Shopify transport shares, without enrichment: a fetched customer (stored under
/// [`FETCHED_CUSTOMER_TOPIC`]) parses to its original events whether or not enrichment is still on.
pub fn parse(d: &StoredView<'_>) -> Parsed {
    if d.topic == FETCHED_CUSTOMER_TOPIC {
        return crate::shopify::enrich::parse_fetched(d);
    }
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
