//! Braze request bodies: how an [`Action`] becomes one object of a `POST /users/track` body, how several
//! objects are packed into one request, and the documented limits checked before anything is sent. Pure
//! functions only (no HTTP, no clock), so every rule is unit-tested here.
//!
//! The mapping, each object identified by `external_id` (the customer id, such as `shopify:880012`) and
//! nothing else:
//!
//! - `UpsertProfile` → an attributes object: `email`, `first_name`, `last_name` when present, and the
//!   action's attributes as custom attributes.
//! - `TriggerEvent` → an event object: `name`, `time` (RFC 3339, UTC) and `properties`, which always carry
//!   [`EVENT_ID_PROPERTY`] (the action's `unique_id`): Braze keeps every event object as a new occurrence,
//!   so a retried delivery can only be recognised downstream by this id. A value adds `value` and
//!   `currency` properties.
//! - `AddToList` / `RemoveFromList` → an attributes object changing the array attribute
//!   [`LISTS_ATTRIBUTE`] with `{"add": [list]}` / `{"remove": [list]}`. Braze has no lists in its REST API;
//!   segments built on this attribute ("ai_lists includes X") play their part.
//! - `Alert` → refused: Braze takes no alerts.
//!
//! Limits checked (contract 50): event property keys non-empty, at most 255 characters and not starting
//! with `$` (Braze reserves those); string attribute values at most 255 characters.

use super::config::MAX_BATCH_SIZE;
use crate::DeliverError;
use nudge_model::{Action, AttrValue, Money};
use serde_json::{Map, Value};
use time::UtcOffset;
use time::format_description::well_known::Rfc3339;

/// The one endpoint nudge writes to.
pub const TRACK_PATH: &str = "/users/track";
/// Method and path as reported in [`crate::Outcome`].
pub const TRACK_LABEL: &str = "POST /users/track";
/// Braze's user deletion endpoint: profiles named by one kind of identifier (here `external_ids`, nudge's
/// customer keys), at most [`MAX_DELETE_IDS`] per request; deletion cannot be undone.
pub const DELETE_PATH: &str = "/users/delete";
pub const DELETE_LABEL: &str = "POST /users/delete";
/// The most identifiers `/users/delete` takes in one request.
pub const MAX_DELETE_IDS: usize = 50;

/// The bodies deleting `external_ids`, at most [`MAX_DELETE_IDS`] each (a request carries one kind of
/// identifier only).
pub fn delete_requests(external_ids: &[String]) -> Result<Vec<Vec<u8>>, DeliverError> {
    let ids: Vec<&str> = external_ids.iter().map(|i| i.trim()).filter(|i| !i.is_empty()).collect();
    if ids.is_empty() {
        return Err(DeliverError::Invalid(
            "a Braze deletion needs the person's external id; none is known".into(),
        ));
    }
    ids.chunks(MAX_DELETE_IDS)
        .map(|chunk| {
            serde_json::to_vec(&serde_json::json!({ "external_ids": chunk }))
                .map_err(|e| DeliverError::Invalid(e.to_string()))
        })
        .collect()
}
/// Longest string attribute value, event name and property key Braze accepts, in characters.
pub const MAX_STRING_CHARS: usize = 255;
/// The custom array attribute that holds the lists a customer was added to.
pub const LISTS_ATTRIBUTE: &str = "ai_lists";
/// The event property carrying the action's `unique_id`.
pub const EVENT_ID_PROPERTY: &str = "nudge_event_id";
/// The fields that identify a user in a `/users/track` object; an object carries exactly one.
pub const IDENTIFIERS: [&str; 5] = ["external_id", "user_alias", "braze_id", "email", "phone"];

/// Attribute names a profile's own attributes may not use: the identifiers and the fields set from the
/// action itself.
const RESERVED_ATTRIBUTES: [&str; 4] = ["first_name", "last_name", LISTS_ATTRIBUTE, "_update_existing_only"];

/// The part of a `/users/track` body an object goes in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Section {
    Attributes,
    Events,
}

impl Section {
    /// The body key, which Braze also names as `input_array` in its per-record errors.
    pub fn key(self) -> &'static str {
        match self {
            Section::Attributes => "attributes",
            Section::Events => "events",
        }
    }
}

/// One object of a `/users/track` body, checked and ready to pack.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackObject {
    pub section: Section,
    pub object: Map<String, Value>,
}

/// A packed `/users/track` request.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackRequest {
    /// The serialised JSON body.
    pub body: Vec<u8>,
    /// For each object given to [`track_request`], in the same order: its section and its index within
    /// that section's array (how Braze names a record in `errors[]`).
    pub positions: Vec<(Section, usize)>,
}

/// The `/users/track` object for `action`, or which documented limit it breaks.
pub fn object_for(action: &Action) -> Result<TrackObject, DeliverError> {
    match action {
        Action::UpsertProfile { customer, email, first_name, last_name, attributes } => {
            let mut object = identified(&customer.to_string());
            if let Some(email) = checked_email(email.as_deref())? {
                object.insert("email".into(), Value::String(email));
            }
            for (key, value) in [("first_name", first_name), ("last_name", last_name)] {
                if let Some(v) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
                    check_string_value(key, v)?;
                    object.insert(key.into(), Value::String(v.to_string()));
                }
            }
            for (key, value) in attributes {
                check_attribute_name(key)?;
                object.insert(key.clone(), attribute_json(key, value)?);
            }
            Ok(TrackObject { section: Section::Attributes, object })
        }
        Action::TriggerEvent { customer, name, properties, value, time, unique_id, .. } => {
            let name = name.trim();
            if name.is_empty() {
                return Err(invalid("the event name is empty"));
            }
            let chars = name.chars().count();
            if chars > MAX_STRING_CHARS {
                return Err(invalid(format!(
                    "the event name has {chars} characters; Braze accepts at most {MAX_STRING_CHARS}"
                )));
            }
            let unique_id = unique_id.trim();
            if unique_id.is_empty() {
                return Err(invalid(
                    "the event's unique_id is empty; Braze does not deduplicate events, so it is required",
                ));
            }
            check_string_value(EVENT_ID_PROPERTY, unique_id)?;
            check_property_keys(properties, "properties")?;
            let mut props = properties.clone();
            if props.contains_key(EVENT_ID_PROPERTY) {
                return Err(invalid(format!(
                    "the event property `{EVENT_ID_PROPERTY}` is set by nudge itself; rename the flow's property"
                )));
            }
            // The event's value wins over same-named properties (a checkout's own `currency`, say): both
            // describe the same amount.
            props.insert(EVENT_ID_PROPERTY.into(), Value::String(unique_id.to_string()));
            if let Some(money) = value {
                props.insert("value".into(), Value::Number(money_number(money)?));
                props.insert("currency".into(), Value::String(money.currency.to_string()));
            }
            let time = time
                .to_offset(UtcOffset::UTC)
                .format(&Rfc3339)
                .map_err(|e| invalid(format!("cannot format the event time: {e}")))?;
            let mut object = identified(&customer.to_string());
            object.insert("name".into(), Value::String(name.to_string()));
            object.insert("time".into(), Value::String(time));
            object.insert("properties".into(), Value::Object(props));
            Ok(TrackObject { section: Section::Events, object })
        }
        Action::AddToList { customer, list_id, .. } | Action::RemoveFromList { customer, list_id, .. } => {
            let list = list_id.trim();
            if list.is_empty() || list.chars().any(char::is_control) {
                return Err(invalid("the list id is empty or holds control characters"));
            }
            check_string_value("list id", list)?;
            let op = if matches!(action, Action::AddToList { .. }) { "add" } else { "remove" };
            let mut change = Map::new();
            change.insert(op.into(), Value::Array(vec![Value::String(list.to_string())]));
            let mut object = identified(&customer.to_string());
            object.insert(LISTS_ATTRIBUTE.into(), Value::Object(change));
            Ok(TrackObject { section: Section::Attributes, object })
        }
        Action::Alert { .. } => Err(invalid("Braze takes no alerts; route them to Slack or a webhook")),
    }
}

/// Packs `objects` (1 to 75) into one `/users/track` body: `attributes` and `events` arrays, each present
/// only when it has objects.
pub fn track_request(objects: &[&TrackObject]) -> Result<TrackRequest, DeliverError> {
    if objects.is_empty() || objects.len() > MAX_BATCH_SIZE {
        return Err(invalid(format!(
            "a /users/track request carries 1–{MAX_BATCH_SIZE} objects, not {}",
            objects.len()
        )));
    }
    let mut attributes = Vec::new();
    let mut events = Vec::new();
    let mut positions = Vec::with_capacity(objects.len());
    for o in objects {
        let array = match o.section {
            Section::Attributes => &mut attributes,
            Section::Events => &mut events,
        };
        positions.push((o.section, array.len()));
        array.push(Value::Object(o.object.clone()));
    }
    let mut body = Map::new();
    if !attributes.is_empty() {
        body.insert(Section::Attributes.key().into(), Value::Array(attributes));
    }
    if !events.is_empty() {
        body.insert(Section::Events.key().into(), Value::Array(events));
    }
    let body = serde_json::to_vec(&Value::Object(body))
        .map_err(|e| invalid(format!("cannot serialise the request: {e}")))?;
    Ok(TrackRequest { body, positions })
}

fn identified(external_id: &str) -> Map<String, Value> {
    let mut object = Map::new();
    object.insert("external_id".into(), Value::String(external_id.to_string()));
    object
}

fn invalid(message: impl Into<String>) -> DeliverError {
    DeliverError::Invalid(message.into())
}

fn check_string_value(what: &str, value: &str) -> Result<(), DeliverError> {
    let chars = value.chars().count();
    if chars > MAX_STRING_CHARS {
        return Err(invalid(format!(
            "`{what}` is a string of {chars} characters; Braze accepts at most {MAX_STRING_CHARS}"
        )));
    }
    Ok(())
}

fn check_attribute_name(key: &str) -> Result<(), DeliverError> {
    if key.trim().is_empty() {
        return Err(invalid("a profile attribute name is empty"));
    }
    if key.chars().count() > MAX_STRING_CHARS {
        return Err(invalid(format!(
            "a profile attribute name is longer than {MAX_STRING_CHARS} characters"
        )));
    }
    if IDENTIFIERS.contains(&key) || RESERVED_ATTRIBUTES.contains(&key) {
        return Err(invalid(format!(
            "the profile attribute `{key}` would overwrite a field nudge sets itself; rename it"
        )));
    }
    Ok(())
}

/// Event property keys, nested ones included: non-empty, at most 255 characters, no leading `$`.
fn check_property_keys(properties: &Map<String, Value>, at: &str) -> Result<(), DeliverError> {
    for (key, value) in properties {
        if key.is_empty() {
            return Err(invalid(format!("an event property name under `{at}` is empty")));
        }
        let chars = key.chars().count();
        if chars > MAX_STRING_CHARS {
            return Err(invalid(format!(
                "an event property name under `{at}` has {chars} characters; Braze accepts at most \
                 {MAX_STRING_CHARS}"
            )));
        }
        if key.starts_with('$') {
            return Err(invalid(format!(
                "the event property `{at}.{key}` starts with `$`, which Braze reserves; rename it"
            )));
        }
        check_nested_keys(value, &format!("{at}.{key}"))?;
    }
    Ok(())
}

fn check_nested_keys(value: &Value, at: &str) -> Result<(), DeliverError> {
    match value {
        Value::Object(map) => check_property_keys(map, at),
        Value::Array(items) => {
            items.iter().enumerate().try_for_each(|(i, v)| check_nested_keys(v, &format!("{at}[{i}]")))
        }
        _ => Ok(()),
    }
}

fn attribute_json(key: &str, value: &AttrValue) -> Result<Value, DeliverError> {
    Ok(match value {
        AttrValue::Number(n) => serde_json::Number::from_f64(*n)
            .map(Value::Number)
            .ok_or_else(|| invalid(format!("the profile attribute `{key}` is not a finite number")))?,
        AttrValue::Text(s) => {
            check_string_value(key, s)?;
            Value::String(s.clone())
        }
        AttrValue::Bool(b) => Value::Bool(*b),
        // An array of objects is a nested custom attribute; every string inside keeps Braze's limit, since
        // one invalid nested value drops all nested updates of the request.
        AttrValue::Json(v) => {
            check_nested_strings(key, v)?;
            v.clone()
        }
    })
}

fn check_nested_strings(key: &str, v: &Value) -> Result<(), DeliverError> {
    match v {
        Value::String(s) => check_string_value(key, s),
        Value::Array(items) => items.iter().try_for_each(|x| check_nested_strings(key, x)),
        Value::Object(map) => map.values().try_for_each(|x| check_nested_strings(key, x)),
        _ => Ok(()),
    }
}

/// An email worth sending: trimmed, `None` when blank, refused when it cannot be an address.
fn checked_email(email: Option<&str>) -> Result<Option<String>, DeliverError> {
    let Some(email) = email.map(str::trim).filter(|e| !e.is_empty()) else {
        return Ok(None);
    };
    let well_formed = email.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && !domain.is_empty()
            && !domain.contains('@')
            && !email.contains(char::is_whitespace)
    });
    if !well_formed {
        // The address is personal data: the error only says what is wrong.
        return Err(invalid("the profile email is not a valid address"));
    }
    check_string_value("email", email)?;
    Ok(Some(email.to_string()))
}

/// The amount as a JSON number written from its exact decimal text, so `84.90` stays `84.90`.
fn money_number(money: &Money) -> Result<serde_json::Number, DeliverError> {
    let text = money.amount.to_string();
    text.parse::<serde_json::Number>()
        .ok()
        .or_else(|| serde_json::Number::from_f64(money.to_f64()))
        .ok_or_else(|| invalid(format!("the event value `{text}` is not a JSON number")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::collections::BTreeMap;
    use time::macros::datetime;

    fn event(properties: Value, value: Option<Money>) -> Action {
        Action::TriggerEvent {
            customer: "shopify:880012".parse().unwrap(),
            email: Some("lena@example.org".into()),
            name: " AI Reorder Window ".into(),
            properties: properties.as_object().unwrap().clone(),
            value,
            time: datetime!(2026-05-01 12:00:00.5 +02:00),
            unique_id: "nudge:reorder:6120000000001".into(),
        }
    }

    fn profile(attributes: BTreeMap<String, AttrValue>) -> Action {
        Action::UpsertProfile {
            customer: "shopify:880012".parse().unwrap(),
            email: Some(" lena@example.org ".into()),
            first_name: Some("Lena".into()),
            last_name: None,
            attributes,
        }
    }

    fn error_of(action: &Action) -> String {
        match object_for(action) {
            Err(DeliverError::Invalid(m)) => m,
            other => panic!("expected a refusal, got {other:?}"),
        }
    }

    #[test]
    fn a_profile_becomes_one_attributes_object() {
        let attrs = BTreeMap::from([
            ("ai_churn_risk".to_string(), AttrValue::Number(0.18)),
            ("ai_next_best_category".to_string(), AttrValue::Text("outerwear".into())),
            ("ai_vip".to_string(), AttrValue::Bool(true)),
        ]);
        let o = object_for(&profile(attrs)).unwrap();
        assert_eq!(o.section, Section::Attributes);
        assert_eq!(
            Value::Object(o.object),
            json!({"external_id": "shopify:880012", "email": "lena@example.org", "first_name": "Lena",
                   "ai_churn_risk": 0.18, "ai_next_best_category": "outerwear", "ai_vip": true})
        );
    }

    #[test]
    fn an_event_carries_its_id_value_and_utc_time() {
        let money = Money::parse("84.90", "EUR").unwrap();
        let o =
            object_for(&event(json!({"order_id": "6120000000001", "items": [{"sku": "TEE"}]}), Some(money)))
                .unwrap();
        assert_eq!(o.section, Section::Events);
        let text = serde_json::to_string(&o.object).unwrap();
        assert!(text.contains(r#""value":84.90"#), "{text}");
        assert_eq!(
            Value::Object(o.object),
            json!({"external_id": "shopify:880012", "name": "AI Reorder Window", "time": "2026-05-01T10:00:00.5Z",
                   "properties": {"order_id": "6120000000001", "items": [{"sku": "TEE"}],
                                  "nudge_event_id": "nudge:reorder:6120000000001",
                                  "value": Value::Number("84.90".parse().unwrap()), "currency": "EUR"}})
        );
        let plain = object_for(&event(json!({}), None)).unwrap();
        assert_eq!(plain.object["properties"], json!({"nudge_event_id": "nudge:reorder:6120000000001"}));
    }

    #[test]
    fn list_actions_change_the_lists_attribute_only() {
        let add = Action::AddToList {
            customer: "shopify:7".parse().unwrap(),
            email: Some("x@example.org".into()),
            list_id: "winback".into(),
        };
        assert_eq!(
            Value::Object(object_for(&add).unwrap().object),
            json!({"external_id": "shopify:7", "ai_lists": {"add": ["winback"]}})
        );
        let remove = Action::RemoveFromList {
            customer: "shopify:7".parse().unwrap(),
            email: None,
            list_id: "winback".into(),
        };
        assert_eq!(object_for(&remove).unwrap().object["ai_lists"], json!({"remove": ["winback"]}));
        let blank =
            Action::AddToList { customer: "shopify:7".parse().unwrap(), email: None, list_id: " ".into() };
        assert!(error_of(&blank).contains("list id"));
        let long = Action::AddToList {
            customer: "shopify:7".parse().unwrap(),
            email: None,
            list_id: "l".repeat(256),
        };
        assert!(error_of(&long).contains("256 characters"));
    }

    #[test]
    fn property_keys_follow_brazes_rules_at_every_depth() {
        assert!(error_of(&event(json!({"$price": 1}), None)).contains("`properties.$price` starts with `$`"));
        assert!(error_of(&event(json!({"": 1}), None)).contains("empty"));
        assert!(error_of(&event(json!({"k".repeat(256): 1}), None)).contains("256 characters"));
        object_for(&event(json!({"k".repeat(255): 1, "price$": 2}), None)).unwrap();
        let nested = error_of(&event(json!({"cart": {"items": [{"$sku": "x"}]}}), None));
        assert!(nested.contains("properties.cart.items[0].$sku"), "{nested}");
        let taken = error_of(&event(json!({"nudge_event_id": "mine"}), None));
        assert!(taken.contains("set by nudge"), "{taken}");
        object_for(&event(json!({"value": 3}), None)).unwrap();
        // The event's value wins over a same-named property (a checkout's own currency, say).
        let o = object_for(&event(
            json!({"value": 3, "currency": "USD"}),
            Some(Money::parse("1", "EUR").unwrap()),
        ))
        .unwrap();
        assert_eq!(o.object["properties"]["currency"], json!("EUR"));
        assert_eq!(o.object["properties"]["value"], json!(1));
    }

    #[test]
    fn string_attributes_are_at_most_255_characters() {
        let ok = BTreeMap::from([("ai_note".to_string(), AttrValue::Text("é".repeat(255)))]);
        object_for(&profile(ok)).unwrap();
        let long = BTreeMap::from([("ai_note".to_string(), AttrValue::Text("é".repeat(256)))]);
        assert!(error_of(&profile(long)).contains("256 characters"));
        let nan = BTreeMap::from([("ai_score".to_string(), AttrValue::Number(f64::NAN))]);
        assert!(error_of(&profile(nan)).contains("finite"));
        for reserved in ["external_id", "email", "braze_id", "ai_lists", "first_name", " "] {
            let attrs = BTreeMap::from([(reserved.to_string(), AttrValue::Bool(true))]);
            assert!(object_for(&profile(attrs)).is_err(), "{reserved:?}");
        }
    }

    #[test]
    fn alerts_bad_emails_and_empty_names_are_refused() {
        let alert = Action::Alert {
            customer: "shopify:1".parse().unwrap(),
            flow: "f".into(),
            text: "t".into(),
            time: datetime!(2026-05-01 10:00 UTC),
            unique_id: "u".into(),
        };
        assert!(error_of(&alert).contains("no alerts"));
        let Action::UpsertProfile { customer, .. } = profile(BTreeMap::new()) else { unreachable!() };
        let bad = Action::UpsertProfile {
            customer,
            email: Some("lena.example.org".into()),
            first_name: None,
            last_name: None,
            attributes: BTreeMap::new(),
        };
        let e = error_of(&bad);
        assert!(e.contains("email") && !e.contains("lena.example.org"), "{e}");
        let Action::TriggerEvent { customer, email, properties, value, time, unique_id, .. } =
            event(json!({}), None)
        else {
            unreachable!()
        };
        let unnamed = Action::TriggerEvent {
            customer: customer.clone(),
            email: email.clone(),
            name: "  ".into(),
            properties: properties.clone(),
            value,
            time,
            unique_id,
        };
        assert!(error_of(&unnamed).contains("name is empty"));
        let no_id = Action::TriggerEvent {
            customer,
            email,
            name: "AI".into(),
            properties,
            value,
            time,
            unique_id: " ".into(),
        };
        assert!(error_of(&no_id).contains("unique_id"));
    }

    #[test]
    fn packing_keeps_positions_per_section() {
        let p = object_for(&profile(BTreeMap::new())).unwrap();
        let e = object_for(&event(json!({}), None)).unwrap();
        let req = track_request(&[&e, &p, &e, &p]).unwrap();
        assert_eq!(
            req.positions,
            vec![
                (Section::Events, 0),
                (Section::Attributes, 0),
                (Section::Events, 1),
                (Section::Attributes, 1)
            ]
        );
        let body: Value = serde_json::from_slice(&req.body).unwrap();
        assert_eq!(body["attributes"].as_array().unwrap().len(), 2);
        assert_eq!(body["events"].as_array().unwrap().len(), 2);
        assert!(body.get("api_key").is_none() && body.get("purchases").is_none());
        let only_events: Value = serde_json::from_slice(&track_request(&[&e]).unwrap().body).unwrap();
        assert!(only_events.get("attributes").is_none(), "{only_events}");
        assert!(track_request(&[]).is_err());
        let many: Vec<&TrackObject> = std::iter::repeat_n(&e, MAX_BATCH_SIZE + 1).collect();
        assert!(track_request(&many).is_err());
        track_request(&many[..MAX_BATCH_SIZE]).unwrap();
    }
}
