//! HubSpot request bodies: how an [`Action`] becomes one input of
//! `POST /crm/v3/objects/contacts/batch/upsert`, the bodies that create nudge's property group and
//! properties, and the documented limits checked before anything is sent. Pure functions only.
//!
//! An input is `{"idProperty":"email","id":<email>,"objectWriteTraceId":<trace id>,"properties":{…}}`.
//! The trace id is derived from the action (a hash of it), so the same action always carries the same
//! one; HubSpot echoes it in `errors[].context.objectWriteTraceId`, which is how a 207 answer is mapped
//! back to the actions it refused.

use super::properties::{self, PropertySpec};
use crate::DeliverError;
use nudge_model::Action;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

/// Most inputs one batch upsert may carry.
pub const MAX_BATCH_INPUTS: usize = 100;
/// Longest string property value HubSpot stores, in characters.
pub const MAX_STRING_VALUE_CHARS: usize = 65_536;
/// The property a trigger event's name goes to.
pub const LAST_EVENT: &str = "ai_last_event";
/// The property a trigger event's time goes to.
pub const LAST_EVENT_AT: &str = "ai_last_event_at";

/// The HubSpot endpoints nudge calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    /// `POST /crm/v3/objects/contacts/batch/upsert`.
    BatchUpsert,
    /// `POST /crm/v3/properties/contacts/groups`.
    CreateGroup,
    /// `POST /crm/v3/properties/contacts/batch/create`.
    CreateProperties,
    /// `POST /crm/v3/properties/contacts` (one property; used when a batch create answers 409).
    CreateProperty,
    /// `POST /crm/v3/objects/contacts/gdpr-delete`: permanently deletes one contact, here named by email
    /// (`idProperty: "email"`); an unknown email is blocklisted instead. Answers 204.
    GdprDelete,
}

impl Endpoint {
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::BatchUpsert => "/crm/v3/objects/contacts/batch/upsert",
            Endpoint::CreateGroup => "/crm/v3/properties/contacts/groups",
            Endpoint::CreateProperties => "/crm/v3/properties/contacts/batch/create",
            Endpoint::CreateProperty => "/crm/v3/properties/contacts",
            Endpoint::GdprDelete => "/crm/v3/objects/contacts/gdpr-delete",
        }
    }

    /// Method and path, as reported in [`crate::Outcome`].
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::BatchUpsert => "POST /crm/v3/objects/contacts/batch/upsert",
            Endpoint::CreateGroup => "POST /crm/v3/properties/contacts/groups",
            Endpoint::CreateProperties => "POST /crm/v3/properties/contacts/batch/create",
            Endpoint::CreateProperty => "POST /crm/v3/properties/contacts",
            Endpoint::GdprDelete => "POST /crm/v3/objects/contacts/gdpr-delete",
        }
    }
}

/// One action as a batch-upsert input that passed every client-side check.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactInput {
    /// The email as sent (trimmed).
    pub email: String,
    /// The email lowercased: HubSpot matches contacts by email without regard to case, so two inputs
    /// with the same key never share a request.
    pub key: String,
    pub trace_id: String,
    /// Every property written, values as HubSpot takes them (strings).
    pub properties: Map<String, Value>,
    /// The custom properties the input writes (standard ones are not listed).
    pub needs: Vec<PropertySpec>,
}

impl ContactInput {
    /// The input as it goes into `inputs[]`.
    pub fn to_json(&self) -> Value {
        json!({
            "idProperty": "email",
            "id": self.email,
            "objectWriteTraceId": self.trace_id,
            "properties": self.properties,
        })
    }
}

fn invalid(message: impl Into<String>) -> DeliverError {
    DeliverError::Invalid(message.into())
}

/// Turns `action` into a batch-upsert input, or explains why HubSpot cannot take it.
pub fn contact_input(action: &Action) -> Result<ContactInput, DeliverError> {
    let (email, mut writes) = match action {
        Action::UpsertProfile { email, first_name, last_name, attributes, .. } => {
            let mut writes: Vec<(String, String, Option<PropertySpec>)> = Vec::new();
            for (name, value) in [("firstname", first_name), ("lastname", last_name)] {
                if let Some(v) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
                    writes.push((name.to_string(), v.to_string(), None));
                }
            }
            for (name, value) in attributes {
                let (spec, text) = properties::attribute(name, value).map_err(invalid)?;
                writes.push((name.clone(), text, Some(spec)));
            }
            if writes.is_empty() {
                return Err(invalid(
                    "the profile update carries no name and no attributes; nothing to write",
                ));
            }
            (email, writes)
        }
        Action::TriggerEvent { email, name, time, .. } => {
            let name = name.trim();
            if name.is_empty() {
                return Err(invalid("the event name is empty"));
            }
            let writes = vec![
                (
                    LAST_EVENT.to_string(),
                    name.to_string(),
                    Some(PropertySpec::new(LAST_EVENT, properties::PropertyKind::Text)),
                ),
                (
                    LAST_EVENT_AT.to_string(),
                    properties::datetime_value(*time),
                    Some(PropertySpec::new(LAST_EVENT_AT, properties::PropertyKind::DateTime)),
                ),
            ];
            (email, writes)
        }
        Action::AddToList { .. } | Action::RemoveFromList { .. } => {
            return Err(invalid(
                "HubSpot lists are built from contact properties, not added to one by one; write \
                 ai_segment (or another attribute) with upsert_profile and base an active list on it",
            ));
        }
        Action::Alert { .. } => {
            return Err(invalid("HubSpot does not take alerts; route them to Slack or a webhook"));
        }
    };
    let email = checked_email(email.as_deref())?;
    let mut props = Map::new();
    props.insert("email".into(), Value::String(email.clone()));
    let mut needs = Vec::new();
    for (name, text, spec) in writes.drain(..) {
        let chars = text.chars().count();
        if chars > MAX_STRING_VALUE_CHARS {
            return Err(invalid(format!(
                "property `{name}` is {chars} characters; HubSpot stores at most {MAX_STRING_VALUE_CHARS}"
            )));
        }
        props.insert(name, Value::String(text));
        needs.extend(spec);
    }
    Ok(ContactInput {
        key: email.to_lowercase(),
        email,
        trace_id: trace_id(action),
        properties: props,
        needs,
    })
}

/// The action's `objectWriteTraceId`: `nudge-` and 16 hex digits of a SHA-256 of the action, so the same
/// action always gets the same id and different actions practically never share one.
pub fn trace_id(action: &Action) -> String {
    let bytes = serde_json::to_vec(action).unwrap_or_default();
    let digest = Sha256::digest(&bytes);
    let mut id = String::from("nudge-");
    for b in &digest[..8] {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

fn checked_email(email: Option<&str>) -> Result<String, DeliverError> {
    let Some(email) = email.map(str::trim).filter(|e| !e.is_empty()) else {
        return Err(invalid("HubSpot contacts are keyed by email; this customer has none"));
    };
    let well_formed = email.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains('@')
            && !email.contains(char::is_whitespace)
    });
    if !well_formed {
        // The address is personal data, so the error only says what is wrong with it.
        return Err(invalid(
            "the customer's email is not a valid address, so HubSpot cannot key a contact on it",
        ));
    }
    Ok(email.to_string())
}

/// The body of a batch upsert.
pub fn upsert_body(inputs: &[&ContactInput]) -> Vec<u8> {
    let inputs: Vec<Value> = inputs.iter().map(|i| i.to_json()).collect();
    serde_json::to_vec(&json!({ "inputs": inputs })).unwrap_or_default()
}

/// The body creating the property group.
pub fn group_body(group: &str) -> Vec<u8> {
    serde_json::to_vec(&json!({"name": group, "label": "nudge AI", "displayOrder": -1})).unwrap_or_default()
}

/// The body creating `specs` in `group` in one batch.
pub fn properties_body(group: &str, specs: &[PropertySpec]) -> Vec<u8> {
    let inputs: Vec<Value> = specs.iter().map(|s| s.definition(group)).collect();
    serde_json::to_vec(&json!({ "inputs": inputs })).unwrap_or_default()
}

/// The body creating one property.
pub fn property_body(group: &str, spec: &PropertySpec) -> Vec<u8> {
    serde_json::to_vec(&spec.definition(group)).unwrap_or_default()
}

/// The body of a GDPR deletion of the contact with `email`.
pub fn gdpr_delete(email: Option<&str>) -> Result<Vec<u8>, DeliverError> {
    let email = email.map(str::trim).filter(|e| !e.is_empty()).ok_or_else(|| {
        DeliverError::Invalid("a HubSpot deletion needs the person's email; none is known".into())
    })?;
    serde_json::to_vec(&serde_json::json!({ "objectId": email, "idProperty": "email" }))
        .map_err(|e| DeliverError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nudge_model::AttrValue;
    use std::collections::BTreeMap;
    use time::macros::datetime;

    fn upsert(email: Option<&str>) -> Action {
        let mut attributes = BTreeMap::new();
        attributes.insert("ai_churn_risk".to_string(), AttrValue::Number(0.18));
        attributes.insert("ai_segment".to_string(), AttrValue::Text("loyal".into()));
        Action::UpsertProfile {
            customer: "shopify:880012".parse().unwrap(),
            email: email.map(str::to_string),
            first_name: Some("Lena".into()),
            last_name: Some(" ".into()),
            attributes,
        }
    }

    fn event(name: &str) -> Action {
        Action::TriggerEvent {
            customer: "shopify:880012".parse().unwrap(),
            email: Some("lena@example.org".into()),
            name: name.into(),
            properties: Map::new(),
            value: None,
            time: datetime!(2026-05-01 10:00 UTC),
            unique_id: "nudge:reorder:1".into(),
        }
    }

    #[test]
    fn a_profile_becomes_an_email_keyed_input_with_string_values() {
        let input = contact_input(&upsert(Some(" Lena@Example.org "))).unwrap();
        assert_eq!(input.email, "Lena@Example.org");
        assert_eq!(input.key, "lena@example.org");
        let json = input.to_json();
        assert_eq!(json["idProperty"], "email");
        assert_eq!(json["id"], "Lena@Example.org");
        assert_eq!(json["objectWriteTraceId"], input.trace_id.as_str());
        assert_eq!(
            json["properties"],
            json!({"email":"Lena@Example.org","firstname":"Lena","ai_churn_risk":"0.18","ai_segment":"loyal"})
        );
        let names: Vec<&str> = input.needs.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["ai_churn_risk", "ai_segment"], "standard properties are never created");
    }

    #[test]
    fn trace_ids_are_deterministic_and_distinct() {
        let a = trace_id(&upsert(Some("a@example.org")));
        assert_eq!(a, trace_id(&upsert(Some("a@example.org"))));
        assert_ne!(a, trace_id(&upsert(Some("b@example.org"))));
        assert!(a.starts_with("nudge-") && a.len() == 22, "{a}");
    }

    #[test]
    fn an_event_sets_the_last_event_properties() {
        let input = contact_input(&event("AI Reorder Window")).unwrap();
        assert_eq!(input.properties[LAST_EVENT], "AI Reorder Window");
        assert_eq!(input.properties[LAST_EVENT_AT], "1777629600000");
        assert_eq!(input.needs.len(), 2);
        assert!(contact_input(&event("  ")).is_err());
    }

    #[test]
    fn refusals_say_why() {
        let e = contact_input(&upsert(None)).unwrap_err().to_string();
        assert!(e.contains("keyed by email; this customer has none"), "{e}");
        for bad in ["lena", "lena@", "@example.org", "le na@example.org", "lena@localhost"] {
            let e = contact_input(&upsert(Some(bad))).unwrap_err().to_string();
            assert!(e.contains("not a valid address") && !e.contains(bad), "{bad}: {e}");
        }
        let list = Action::AddToList {
            customer: "shopify:1".parse().unwrap(),
            email: Some("a@example.org".into()),
            list_id: "42".into(),
        };
        assert!(
            contact_input(&list).unwrap_err().to_string().contains("lists are built from contact properties")
        );
        let mut attributes = BTreeMap::new();
        attributes.insert("ai_note".to_string(), AttrValue::Text("x".repeat(MAX_STRING_VALUE_CHARS + 1)));
        let long = Action::UpsertProfile {
            customer: "shopify:1".parse().unwrap(),
            email: Some("a@example.org".into()),
            first_name: None,
            last_name: None,
            attributes,
        };
        assert!(contact_input(&long).unwrap_err().to_string().contains("at most 65536"));
    }

    #[test]
    fn bodies() {
        let a = contact_input(&upsert(Some("a@example.org"))).unwrap();
        let b = contact_input(&event("E")).unwrap();
        let body: Value = serde_json::from_slice(&upsert_body(&[&a, &b])).unwrap();
        assert_eq!(body["inputs"].as_array().unwrap().len(), 2);
        let body: Value = serde_json::from_slice(&properties_body("nudge_ai", &a.needs)).unwrap();
        assert_eq!(body["inputs"][0]["groupName"], "nudge_ai");
        let body: Value = serde_json::from_slice(&group_body("nudge_ai")).unwrap();
        assert_eq!(body["name"], "nudge_ai");
        assert!(body["label"].as_str().is_some_and(|l| !l.is_empty()));
    }
}
