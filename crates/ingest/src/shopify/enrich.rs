//! Customer enrichment from Shopify's GraphQL Admin API: the answer body an enrichment fetch stores and
//! how it parses.
//!
//! An order or checkout that names a customer by id without an email becomes a fetch job (see
//! [`ShopifySource::enrich_customers`](crate::shopify::ShopifySource::enrich_customers)). The fetcher
//! answers with [`answer_body`]: the notification's topic, its original payload (verbatim text) and the
//! `data.customer` object the Admin API returned. [`parse_fetched`] fills the customer's email, phone,
//! names and email consent into the payload where the payload has none (what the payload says wins),
//! then normalises it on the original topic, so the events are the original ones with the email in.
//! A customer the API no longer has (`null`) leaves the payload as it was: enrichment never loses an
//! event.

use crate::shopify::normalize::{Normalized, normalize};
use crate::shopify::source::privacy_request;
use crate::shopify::topic::Topic;
use crate::source::{Parsed, StoredView};
use serde_json::{Map, Value, json};

/// The body stored under [`FETCHED_CUSTOMER_TOPIC`](crate::shopify::source::FETCHED_CUSTOMER_TOPIC):
/// `{"notified_topic", "payload" (the original body as text), "customer" (the API's object or null)}`.
pub fn answer_body(notified_topic: &str, payload: &str, customer: &Value) -> Vec<u8> {
    json!({ "notified_topic": notified_topic, "payload": payload, "customer": customer })
        .to_string()
        .into_bytes()
}

/// Parses a stored enrichment answer to the original events, enriched.
pub fn parse_fetched(d: &StoredView<'_>) -> Parsed {
    let answer: Value = match serde_json::from_slice(d.body) {
        Ok(v) => v,
        Err(e) => return Parsed::Quarantined(format!("fetched customer: invalid JSON: {e}")),
    };
    let (Some(topic), Some(payload)) =
        (answer.get("notified_topic").and_then(Value::as_str), answer.get("payload").and_then(Value::as_str))
    else {
        return Parsed::Quarantined(
            "fetched customer: `notified_topic` and `payload` must be strings".into(),
        );
    };
    let body = match answer.get("customer") {
        None | Some(Value::Null) => payload.as_bytes().to_vec(),
        Some(Value::Object(customer)) => match merge(payload, customer) {
            Ok(body) => body,
            Err(reason) => return Parsed::Quarantined(format!("fetched customer: {reason}")),
        },
        Some(_) => {
            return Parsed::Quarantined("fetched customer: `customer` must be an object or null".into());
        }
    };
    match normalize(&Topic::parse(topic), d.shop.unwrap_or(""), &body) {
        Ok(Normalized::Events(evs)) => Parsed::Events(evs),
        Ok(Normalized::Ignored { reason }) => Parsed::Ignored(reason),
        Ok(Normalized::Compliance(req)) => Parsed::Privacy(privacy_request(req)),
        Err(e) => Parsed::Quarantined(e.to_string()),
    }
}

/// The payload with the customer's contact details filled in where it has none.
fn merge(payload: &str, customer: &Map<String, Value>) -> Result<Vec<u8>, String> {
    let mut root: Value = serde_json::from_str(payload).map_err(|e| format!("payload: invalid JSON: {e}"))?;
    let Some(obj) = root.as_object_mut() else { return Err("payload: not a JSON object".into()) };
    let email = text(customer.get("defaultEmailAddress").and_then(|e| e.get("emailAddress")))
        .or_else(|| text(customer.get("email")));
    let phone = text(customer.get("defaultPhoneNumber").and_then(|p| p.get("phoneNumber")))
        .or_else(|| text(customer.get("phone")));

    let payload_customer = obj.get("customer").and_then(|c| c.get("id")).map(id_text);
    let fetched = text(customer.get("id")).map(|gid| gid.rsplit('/').next().unwrap_or(gid).to_string());
    if let (Some(want), Some(got)) = (&payload_customer, &fetched)
        && want != got
    {
        return Err(format!("the API answered for customer {got}, the payload names customer {want}"));
    }

    let empty = |v: Option<&Value>| text(v).is_none();
    if let Some(email) = email
        && empty(obj.get("email"))
    {
        obj.insert("email".into(), Value::String(email.into()));
    }
    if let Some(Value::Object(c)) = obj.get_mut("customer") {
        let mut fill = |key: &str, value: Option<&str>| {
            if let Some(v) = value
                && empty(c.get(key))
            {
                c.insert(key.into(), Value::String(v.into()));
            }
        };
        fill("email", email);
        fill("phone", phone);
        fill("first_name", text(customer.get("firstName")));
        fill("last_name", text(customer.get("lastName")));
        let consent = customer.get("defaultEmailAddress").and_then(|e| e.get("marketingState"));
        if let Some(state) = text(consent)
            && c.get("email_marketing_consent").is_none_or(Value::is_null)
        {
            let address = customer.get("defaultEmailAddress");
            let level = text(address.and_then(|a| a.get("marketingOptInLevel"))).map(str::to_ascii_lowercase);
            let updated = text(address.and_then(|a| a.get("marketingUpdatedAt")));
            c.insert(
                "email_marketing_consent".into(),
                json!({
                    "state": state.to_ascii_lowercase(),
                    "opt_in_level": level,
                    "consent_updated_at": updated,
                }),
            );
        }
    }
    serde_json::to_vec(&root).map_err(|e| format!("payload: {e}"))
}

/// A non-empty string value, trimmed.
fn text(v: Option<&Value>) -> Option<&str> {
    v.and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty())
}

/// An id as text, whether the payload wrote it as a number or a string.
fn id_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
