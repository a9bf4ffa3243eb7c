//! Klaviyo request bodies: how an [`Action`] becomes a JSON:API document for `POST /api/profile-import`,
//! `POST /api/events` or the list-membership endpoint, and the documented limits checked before anything
//! is sent. Pure functions only: no HTTP, no clock reads (the caller passes "now"), so every rule is
//! unit-tested here.
//!
//! A list action takes two requests, because Klaviyo's list endpoint names members by profile id only:
//! [`build`] gives the first, a profile-import carrying just the customer's identifiers (an upsert, so it
//! is safe to repeat, whose answer carries the profile id), and [`list_membership`] the second.

use crate::DeliverError;
use nudge_model::{Action, AttrValue, Money};
use serde_json::{Map, Value, json};
use time::format_description::well_known::Rfc3339;
use time::{Duration as TimeSpan, OffsetDateTime, UtcOffset};

/// Longest metric name Klaviyo accepts, in characters.
pub const MAX_METRIC_NAME_CHARS: usize = 128;
/// Most properties one event may carry.
pub const MAX_EVENT_PROPERTIES: usize = 400;
/// Longest string value anywhere in an event's properties, in bytes ("100 KB", read strictly).
pub const MAX_STRING_BYTES: usize = 100_000;
/// Largest `POST /api/profile-import` body, in bytes ("100 KB", read strictly).
pub const MAX_PROFILE_BODY_BYTES: usize = 100_000;
/// Largest `POST /api/events` body, in bytes ("5 MB", read strictly).
pub const MAX_EVENT_BODY_BYTES: usize = 5_000_000;

/// Most profiles one list-membership call may name (Klaviyo: "a maximum of 1000 profiles per call").
pub const MAX_LIST_PROFILES: usize = 1000;
/// Longest list id accepted; Klaviyo's list ids are six characters.
pub const MAX_LIST_ID_CHARS: usize = 64;

/// The Klaviyo endpoints nudge writes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Endpoint {
    ProfileImport,
    Events,
    /// `POST /api/lists/{id}/relationships/profiles` (`add_profiles_to_list`).
    AddToList,
    /// `DELETE /api/lists/{id}/relationships/profiles` (`remove_profiles_from_list`).
    RemoveFromList,
}

impl Endpoint {
    /// The path; for the list endpoints the template, with `{id}` where the list id goes.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ProfileImport => "/api/profile-import",
            Endpoint::Events => "/api/events",
            Endpoint::AddToList | Endpoint::RemoveFromList => "/api/lists/{id}/relationships/profiles",
        }
    }

    pub fn method(self) -> &'static str {
        match self {
            Endpoint::ProfileImport | Endpoint::Events | Endpoint::AddToList => "POST",
            Endpoint::RemoveFromList => "DELETE",
        }
    }

    /// Method and path (the template for the list endpoints, so the label stays one per endpoint), as
    /// reported in [`crate::Outcome`].
    pub fn label(self) -> &'static str {
        match self {
            Endpoint::ProfileImport => "POST /api/profile-import",
            Endpoint::Events => "POST /api/events",
            Endpoint::AddToList => "POST /api/lists/{id}/relationships/profiles",
            Endpoint::RemoveFromList => "DELETE /api/lists/{id}/relationships/profiles",
        }
    }

    /// The endpoint that settles an action: for a list action the list endpoint, although the profile
    /// lookup goes first.
    pub fn for_action(action: &Action) -> Self {
        match action {
            Action::UpsertProfile { .. } => Endpoint::ProfileImport,
            Action::TriggerEvent { .. } => Endpoint::Events,
            Action::AddToList { .. } => Endpoint::AddToList,
            Action::RemoveFromList { .. } => Endpoint::RemoveFromList,
            // Not sent: `build` rejects alerts; the label only names where it would have gone.
            Action::Alert { .. } => Endpoint::Events,
        }
    }
}

/// A request that passed every client-side check and is ready to send.
#[derive(Debug, Clone, PartialEq)]
pub struct KlaviyoRequest {
    pub endpoint: Endpoint,
    /// The path to call, with any id in it already checked and percent-encoded.
    pub path: String,
    /// The serialised JSON:API document.
    pub body: Vec<u8>,
}

impl KlaviyoRequest {
    fn fixed(endpoint: Endpoint, body: Vec<u8>) -> Self {
        KlaviyoRequest { endpoint, path: endpoint.path().to_string(), body }
    }
}

/// Builds the request for `action`, or explains which documented limit it breaks.
pub fn build(action: &Action, now: OffsetDateTime) -> Result<KlaviyoRequest, DeliverError> {
    match action {
        Action::UpsertProfile { customer, email, first_name, last_name, attributes } => {
            let mut attrs = Map::new();
            if let Some(email) = checked_email(email.as_deref())? {
                attrs.insert("email".into(), Value::String(email));
            }
            attrs.insert("external_id".into(), Value::String(customer.to_string()));
            for (key, value) in [("first_name", first_name), ("last_name", last_name)] {
                if let Some(v) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
                    attrs.insert(key.into(), Value::String(v.to_string()));
                }
            }
            let mut properties = Map::new();
            for (key, value) in attributes {
                if key.trim().is_empty() {
                    return Err(invalid("profile property names must not be empty"));
                }
                properties.insert(key.clone(), attr_json(key, value)?);
            }
            attrs.insert("properties".into(), Value::Object(properties));
            let body = serialize(&json!({"data": {"type": "profile", "attributes": attrs}}))?;
            if body.len() > MAX_PROFILE_BODY_BYTES {
                return Err(invalid(format!(
                    "profile-import body is {} bytes; Klaviyo accepts at most {MAX_PROFILE_BODY_BYTES}",
                    body.len()
                )));
            }
            Ok(KlaviyoRequest::fixed(Endpoint::ProfileImport, body))
        }
        Action::TriggerEvent { customer, email, name, properties, value, time, unique_id } => {
            let name = name.trim();
            if name.is_empty() {
                return Err(invalid("the event (metric) name is empty"));
            }
            let name_chars = name.chars().count();
            if name_chars > MAX_METRIC_NAME_CHARS {
                return Err(invalid(format!(
                    "metric name has {name_chars} characters; Klaviyo accepts at most {MAX_METRIC_NAME_CHARS}"
                )));
            }
            if properties.len() > MAX_EVENT_PROPERTIES {
                return Err(invalid(format!(
                    "event has {} properties; Klaviyo accepts at most {MAX_EVENT_PROPERTIES}",
                    properties.len()
                )));
            }
            for (key, value) in properties {
                check_strings(value, &format!("/properties/{key}"))?;
            }
            if unique_id.trim().is_empty() {
                return Err(invalid("the event's unique_id is empty; retries would create duplicates"));
            }
            check_strings(&Value::String(unique_id.clone()), "/unique_id")?;
            let time = checked_time(*time, now)?;

            let mut profile = Map::new();
            if let Some(email) = checked_email(email.as_deref())? {
                profile.insert("email".into(), Value::String(email));
            }
            profile.insert("external_id".into(), Value::String(customer.to_string()));

            let mut attrs = Map::new();
            attrs.insert("metric".into(), json!({"data": {"type": "metric", "attributes": {"name": name}}}));
            attrs.insert("profile".into(), json!({"data": {"type": "profile", "attributes": profile}}));
            attrs.insert("properties".into(), Value::Object(properties.clone()));
            if let Some(money) = value {
                attrs.insert("value".into(), Value::Number(money_number(money)?));
                attrs.insert("value_currency".into(), Value::String(money.currency.to_string()));
            }
            attrs.insert("time".into(), Value::String(time));
            attrs.insert("unique_id".into(), Value::String(unique_id.clone()));
            let body = serialize(&json!({"data": {"type": "event", "attributes": attrs}}))?;
            if body.len() > MAX_EVENT_BODY_BYTES {
                return Err(invalid(format!(
                    "event body is {} bytes; Klaviyo accepts at most {MAX_EVENT_BODY_BYTES}",
                    body.len()
                )));
            }
            Ok(KlaviyoRequest::fixed(Endpoint::Events, body))
        }
        Action::AddToList { customer, email, list_id }
        | Action::RemoveFromList { customer, email, list_id } => {
            checked_list_id(list_id)?;
            let mut attrs = Map::new();
            if let Some(email) = checked_email(email.as_deref())? {
                attrs.insert("email".into(), Value::String(email));
            }
            attrs.insert("external_id".into(), Value::String(customer.to_string()));
            // Identifiers only: attributes left out are left unchanged by an upsert, so the lookup never
            // overwrites what the profile sync wrote.
            let body = serialize(&json!({"data": {"type": "profile", "attributes": attrs}}))?;
            Ok(KlaviyoRequest::fixed(Endpoint::ProfileImport, body))
        }
        Action::Alert { .. } => {
            Err(invalid("Klaviyo does not take alerts; route them to Slack or a webhook"))
        }
    }
}

/// The second request of a list action: add the profile `profile_id` (from the profile-import answer) to
/// the action's list, or remove it.
///
/// What this relies on, from Klaviyo's OpenAPI description of the operations `add_profiles_to_list` and
/// `remove_profiles_from_list` (the 2026-04-15 spec files; the 2026-07-15 reference pages give the same
/// method, path and limits): both are `/api/lists/{id}/relationships/profiles`, `POST` to add and
/// `DELETE` to remove, each with the body `{"data":[{"type":"profile","id":"…"}]}` (schemas
/// `ListMembersAddQuery` / `ListMembersDeleteQuery`, at most 1000 profiles per call), answering
/// `204 No Content`, errors as JSON:API documents; each is rate limited at burst 10/s, steady 150/m (one
/// client-side limiter covers both, which is stricter). Neither changes the profile's consent. The spec
/// does not say what an unknown profile id is answered with.
pub fn list_membership(action: &Action, profile_id: &str) -> Result<KlaviyoRequest, DeliverError> {
    let (endpoint, list_id) = match action {
        Action::AddToList { list_id, .. } => (Endpoint::AddToList, list_id),
        Action::RemoveFromList { list_id, .. } => (Endpoint::RemoveFromList, list_id),
        other => return Err(invalid(format!("a {} action has no list", other.kind()))),
    };
    checked_list_id(list_id)?;
    let profile_id = profile_id.trim();
    if profile_id.is_empty() || profile_id.len() > 256 {
        return Err(invalid("Klaviyo answered the profile lookup without a usable profile id"));
    }
    let body = serialize(&json!({"data": [{"type": "profile", "id": profile_id}]}))?;
    let path = endpoint.path().replace("{id}", &path_segment(list_id));
    Ok(KlaviyoRequest { endpoint, path, body })
}

/// A list id fit for a request path: 1–[`MAX_LIST_ID_CHARS`] ASCII letters, digits, `-` or `_`. Nothing
/// else is let through, so no id can reach another path (`../`, `/`, `?`, `#`, `%`).
fn checked_list_id(list_id: &str) -> Result<(), DeliverError> {
    let ok = !list_id.is_empty()
        && list_id.len() <= MAX_LIST_ID_CHARS
        && list_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(invalid(format!(
            "`{}` is not a Klaviyo list id (1–{MAX_LIST_ID_CHARS} letters, digits, - or _)",
            list_id.escape_debug()
        )))
    }
}

/// Percent-encodes everything but RFC 3986's unreserved characters, for use as one path segment. The ids
/// that pass [`checked_list_id`] come out unchanged; this keeps the path safe even if that check widens.
fn path_segment(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn invalid(message: impl Into<String>) -> DeliverError {
    DeliverError::Invalid(message.into())
}

fn serialize(document: &Value) -> Result<Vec<u8>, DeliverError> {
    serde_json::to_vec(document).map_err(|e| invalid(format!("cannot serialise the request: {e}")))
}

/// An email worth sending: trimmed, `None` when blank, rejected when it cannot be an address.
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
        // The address itself is personal data, so the error only says what is wrong with it.
        return Err(invalid("the profile email is not a valid address"));
    }
    Ok(Some(email.to_string()))
}

fn attr_json(key: &str, value: &AttrValue) -> Result<Value, DeliverError> {
    Ok(match value {
        AttrValue::Number(n) => serde_json::Number::from_f64(*n)
            .map(Value::Number)
            .ok_or_else(|| invalid(format!("profile property `{key}` is not a finite number")))?,
        AttrValue::Text(s) => Value::String(s.clone()),
        AttrValue::Bool(b) => Value::Bool(*b),
    })
}

/// The amount as a JSON number written from its exact decimal text, so `84.90` stays `84.90`.
fn money_number(money: &Money) -> Result<serde_json::Number, DeliverError> {
    let text = money.amount.to_string();
    text.parse::<serde_json::Number>()
        .ok()
        .or_else(|| serde_json::Number::from_f64(money.to_f64()))
        .ok_or_else(|| invalid(format!("event value `{text}` is not a JSON number")))
}

/// Rejects any string longer than Klaviyo's per-field limit, however deeply nested.
fn check_strings(value: &Value, pointer: &str) -> Result<(), DeliverError> {
    match value {
        Value::String(s) if s.len() > MAX_STRING_BYTES => Err(invalid(format!(
            "{pointer} is a string of {} bytes; Klaviyo accepts at most {MAX_STRING_BYTES}",
            s.len()
        ))),
        Value::Array(items) => {
            items.iter().enumerate().try_for_each(|(i, v)| check_strings(v, &format!("{pointer}/{i}")))
        }
        Value::Object(map) => map.iter().try_for_each(|(k, v)| {
            if k.len() > MAX_STRING_BYTES {
                return Err(invalid(format!(
                    "a property name under {pointer} is longer than {MAX_STRING_BYTES} bytes"
                )));
            }
            check_strings(v, &format!("{pointer}/{k}"))
        }),
        _ => Ok(()),
    }
}

/// The earliest event time Klaviyo accepts.
fn earliest_event_time() -> OffsetDateTime {
    time::macros::datetime!(1990-01-01 00:00 UTC)
}

/// Checks that `time` is within [1990-01-01, now + 1 year] and formats it in UTC, truncated to the second
/// as Klaviyo stores it.
fn checked_time(time: OffsetDateTime, now: OffsetDateTime) -> Result<String, DeliverError> {
    let latest = now + TimeSpan::days(365);
    if time < earliest_event_time() || time > latest {
        let shown = time.format(&Rfc3339).unwrap_or_else(|_| time.to_string());
        return Err(invalid(format!("event time {shown} is outside [1990-01-01, one year from now]")));
    }
    let truncated = time.to_offset(UtcOffset::UTC).replace_nanosecond(0).unwrap_or(time);
    truncated.format(&Rfc3339).map_err(|e| invalid(format!("cannot format the event time: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use time::macros::datetime;

    const NOW: OffsetDateTime = datetime!(2026-05-01 10:00 UTC);

    fn event(name: &str, properties: Map<String, Value>) -> Action {
        Action::TriggerEvent {
            customer: "shopify:880012".parse().unwrap(),
            email: Some("lena@example.org".into()),
            name: name.into(),
            properties,
            value: Some(Money::parse("84.90", "EUR").unwrap()),
            time: datetime!(2026-05-01 10:00:00.75 +02:00),
            unique_id: "shopify:order:6120000000001:reorder-window".into(),
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

    fn body(req: &KlaviyoRequest) -> Value {
        serde_json::from_slice(&req.body).unwrap()
    }

    #[test]
    fn profile_import_document_has_the_documented_shape() {
        let attrs = BTreeMap::from([
            ("ai_churn_risk".to_string(), AttrValue::Number(0.18)),
            ("ai_next_best_category".to_string(), AttrValue::Text("outerwear".into())),
            ("ai_vip".to_string(), AttrValue::Bool(true)),
        ]);
        let req = build(&profile(attrs), NOW).unwrap();
        assert_eq!(req.endpoint, Endpoint::ProfileImport);
        assert_eq!(
            body(&req),
            json!({"data": {"type": "profile", "attributes": {
                "email": "lena@example.org", "external_id": "shopify:880012", "first_name": "Lena",
                "properties": {"ai_churn_risk": 0.18, "ai_next_best_category": "outerwear", "ai_vip": true}}}})
        );
    }

    #[test]
    fn event_document_has_the_documented_shape() {
        let props = json!({"order_id": "6120000000001", "predicted_days": 21}).as_object().unwrap().clone();
        let req = build(&event("AI Predicted Reorder Window", props), NOW).unwrap();
        assert_eq!(req.endpoint, Endpoint::Events);
        let text = String::from_utf8(req.body.clone()).unwrap();
        assert!(text.contains(r#""value":84.90"#), "the exact decimal is kept: {text}");
        assert_eq!(
            body(&req),
            json!({"data": {"type": "event", "attributes": {
                "metric": {"data": {"type": "metric", "attributes": {"name": "AI Predicted Reorder Window"}}},
                "profile": {"data": {"type": "profile", "attributes": {"email": "lena@example.org", "external_id": "shopify:880012"}}},
                "properties": {"order_id": "6120000000001", "predicted_days": 21},
                "value": Value::Number("84.90".parse().unwrap()), "value_currency": "EUR",
                "time": "2026-05-01T08:00:00Z",
                "unique_id": "shopify:order:6120000000001:reorder-window"}}})
        );
    }

    #[test]
    fn blank_email_is_left_out_and_a_malformed_one_rejected() {
        let Action::UpsertProfile { customer, .. } = profile(BTreeMap::new()) else { unreachable!() };
        let blank = Action::UpsertProfile {
            customer: customer.clone(),
            email: Some("  ".into()),
            first_name: None,
            last_name: None,
            attributes: BTreeMap::new(),
        };
        let doc = body(&build(&blank, NOW).unwrap());
        assert_eq!(doc["data"]["attributes"], json!({"external_id": "shopify:880012", "properties": {}}));
        let bad = Action::UpsertProfile {
            customer,
            email: Some("not-an-address".into()),
            first_name: None,
            last_name: None,
            attributes: BTreeMap::new(),
        };
        assert!(matches!(build(&bad, NOW), Err(DeliverError::Invalid(_))));
    }

    #[test]
    fn metric_name_limit_counts_characters() {
        let ok = "é".repeat(128);
        build(&event(&ok, Map::new()), NOW).unwrap();
        let err = build(&event(&"é".repeat(129), Map::new()), NOW).unwrap_err();
        assert!(err.to_string().contains("129 characters"), "{err}");
        assert!(build(&event("  ", Map::new()), NOW).is_err());
    }

    #[test]
    fn property_count_and_string_length_are_limited() {
        let props: Map<String, Value> = (0..400).map(|i| (format!("p{i}"), json!(i))).collect();
        build(&event("AI Test", props.clone()), NOW).unwrap();
        let mut too_many = props;
        too_many.insert("p400".into(), json!(1));
        assert!(build(&event("AI Test", too_many), NOW).unwrap_err().to_string().contains("401 properties"));

        let nested =
            json!({"items": [{"note": "x".repeat(MAX_STRING_BYTES + 1)}]}).as_object().unwrap().clone();
        let err = build(&event("AI Test", nested), NOW).unwrap_err();
        assert!(err.to_string().contains("/properties/items/0/note"), "{err}");
        let exact = json!({"note": "x".repeat(MAX_STRING_BYTES)}).as_object().unwrap().clone();
        build(&event("AI Test", exact), NOW).unwrap();
    }

    #[test]
    fn event_time_must_be_between_1990_and_a_year_ahead() {
        let with_time = |t: OffsetDateTime| {
            let Action::TriggerEvent { customer, email, name, properties, value, unique_id, .. } =
                event("AI Test", Map::new())
            else {
                unreachable!()
            };
            Action::TriggerEvent { customer, email, name, properties, value, time: t, unique_id }
        };
        build(&with_time(datetime!(1990-01-01 00:00 UTC)), NOW).unwrap();
        assert!(build(&with_time(datetime!(1989-12-31 23:59:59 UTC)), NOW).is_err());
        build(&with_time(NOW + TimeSpan::days(365)), NOW).unwrap();
        assert!(build(&with_time(NOW + TimeSpan::days(366)), NOW).is_err());
    }

    #[test]
    fn oversized_profile_body_and_bad_numbers_are_rejected() {
        let big =
            BTreeMap::from([("ai_notes".to_string(), AttrValue::Text("x".repeat(MAX_PROFILE_BODY_BYTES)))]);
        assert!(build(&profile(big), NOW).unwrap_err().to_string().contains("profile-import body"));
        let nan = BTreeMap::from([("ai_score".to_string(), AttrValue::Number(f64::NAN))]);
        assert!(build(&profile(nan), NOW).unwrap_err().to_string().contains("finite"));
    }

    fn list_action(add: bool, list_id: &str) -> Action {
        let (customer, email, list_id) =
            ("shopify:880012".parse().unwrap(), Some("Lena@example.org ".to_string()), list_id.to_string());
        if add {
            Action::AddToList { customer, email, list_id }
        } else {
            Action::RemoveFromList { customer, email, list_id }
        }
    }

    #[test]
    fn a_list_action_looks_the_profile_up_by_its_identifiers_first() {
        for add in [true, false] {
            let req = build(&list_action(add, "Xy12Ab"), NOW).unwrap();
            assert_eq!(req.endpoint, Endpoint::ProfileImport);
            assert_eq!(req.path, "/api/profile-import");
            assert_eq!(
                body(&req),
                json!({"data": {"type": "profile", "attributes": {
                    "email": "Lena@example.org", "external_id": "shopify:880012"}}})
            );
        }
        let no_email = Action::AddToList {
            customer: "shopify:7".parse().unwrap(),
            email: None,
            list_id: "Xy12Ab".into(),
        };
        assert_eq!(
            body(&build(&no_email, NOW).unwrap()),
            json!({"data": {"type": "profile", "attributes": {"external_id": "shopify:7"}}})
        );
    }

    #[test]
    fn list_membership_documents_have_the_documented_shape() {
        let add = list_membership(&list_action(true, "Xy12Ab"), "01J0PROFILE").unwrap();
        assert_eq!((add.endpoint, add.endpoint.method()), (Endpoint::AddToList, "POST"));
        assert_eq!(add.path, "/api/lists/Xy12Ab/relationships/profiles");
        assert_eq!(body(&add), json!({"data": [{"type": "profile", "id": "01J0PROFILE"}]}));
        let remove = list_membership(&list_action(false, "Xy12Ab"), "01J0PROFILE").unwrap();
        assert_eq!((remove.endpoint, remove.endpoint.method()), (Endpoint::RemoveFromList, "DELETE"));
        assert_eq!(remove.path, add.path);
        assert_eq!(remove.body, add.body);
        assert_eq!(remove.endpoint.label(), "DELETE /api/lists/{id}/relationships/profiles");
        assert!(list_membership(&list_action(true, "Xy12Ab"), " ").is_err());
        assert!(list_membership(&profile(BTreeMap::new()), "01J0PROFILE").is_err());
    }

    #[test]
    fn no_list_id_can_change_the_path() {
        for bad in ["", "../../api/profiles", "Xy12Ab/relationships", "a?b=c", "a#b", "a%2Fb", "a b", "Äb"] {
            assert!(build(&list_action(true, bad), NOW).is_err(), "{bad:?}");
            let err = list_membership(&list_action(false, bad), "P1").unwrap_err();
            assert!(err.to_string().contains("not a Klaviyo list id"), "{bad:?}: {err}");
        }
        assert!(build(&list_action(true, &"a".repeat(MAX_LIST_ID_CHARS + 1)), NOW).is_err());
        build(&list_action(true, &"a".repeat(MAX_LIST_ID_CHARS)), NOW).unwrap();
        assert_eq!(path_segment("a/b?c%d e"), "a%2Fb%3Fc%25d%20e");
        assert_eq!(path_segment("Xy12Ab-_.~"), "Xy12Ab-_.~");
    }

    #[test]
    fn empty_unique_id_is_rejected() {
        let Action::TriggerEvent { customer, email, name, properties, value, time, .. } =
            event("AI Test", Map::new())
        else {
            unreachable!()
        };
        let action =
            Action::TriggerEvent { customer, email, name, properties, value, time, unique_id: " ".into() };
        assert!(build(&action, NOW).is_err());
    }
}
