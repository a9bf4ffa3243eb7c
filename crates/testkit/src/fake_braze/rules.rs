//! The checks the fake Braze applies to a `/users/track` body, and how an accepted attributes object
//! changes a stored user. Pure functions, so the handler stays a sequence of steps.
//!
//! Whole-request problems (not JSON, not an object, `api_key` in the body, a field other than
//! `attributes` / `events` / `purchases`, a section that is not an array, no objects, more objects than
//! the cap) are fatal: `400` with a `message`. Problems of one record are Braze's non-fatal errors: the
//! record is named in `errors[]` by `input_array` and `index` and the others are still processed.

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Longest string attribute value and event property key, in characters.
pub const MAX_STRING_CHARS: usize = 255;

/// The identifiers that name a user on their own; `email` and `phone` identify only when none of these
/// is present (otherwise they are ordinary attributes).
const PRIMARY_IDENTIFIERS: [&str; 3] = ["external_id", "user_alias", "braze_id"];
const SECTIONS: [&str; 3] = ["attributes", "events", "purchases"];

/// A fatal answer: status and message.
pub(crate) type Fatal = (u16, Value);

/// The sections of a body that passed the whole-request checks.
pub(crate) struct Sections {
    pub attributes: Option<Vec<Value>>,
    pub events: Option<Vec<Value>>,
    pub purchases: Option<Vec<Value>>,
}

impl Sections {
    pub fn count(&self) -> usize {
        [&self.attributes, &self.events, &self.purchases].iter().map(|s| s.as_ref().map_or(0, Vec::len)).sum()
    }
}

fn fatal(message: &str) -> Fatal {
    (400, serde_json::json!({ "message": message }))
}

/// How many objects a body carries, when it is shaped well enough to tell (for the request log).
pub(crate) fn object_count(body: &[u8]) -> usize {
    let Ok(Value::Object(map)) = serde_json::from_slice::<Value>(body) else { return 0 };
    SECTIONS.iter().filter_map(|s| map.get(*s).and_then(Value::as_array)).map(Vec::len).sum()
}

/// The whole-request checks, in order.
pub(crate) fn sections(body: &[u8], cap: usize) -> Result<Sections, Fatal> {
    let json: Value =
        serde_json::from_slice(body).map_err(|_| fatal("Bad Request: the request body is not valid JSON"))?;
    let Value::Object(map) = json else {
        return Err(fatal("Bad Request: the request body must be a JSON object"));
    };
    if map.contains_key("api_key") {
        return Err(fatal(
            "Bad Request: api_key in the request body is no longer accepted; send Authorization: Bearer <key>",
        ));
    }
    if let Some(unknown) = map.keys().find(|k| !SECTIONS.contains(&k.as_str())) {
        return Err(fatal(&format!("Bad Request: unknown field '{unknown}'")));
    }
    let take = |name: &str| -> Result<Option<Vec<Value>>, Fatal> {
        match map.get(name) {
            None => Ok(None),
            Some(Value::Array(items)) => Ok(Some(items.clone())),
            Some(_) => Err(fatal(&format!("Bad Request: '{name}' must be an array"))),
        }
    };
    let sections =
        Sections { attributes: take("attributes")?, events: take("events")?, purchases: take("purchases")? };
    let count = sections.count();
    if count == 0 {
        return Err(fatal("Bad Request: provide at least one of attributes, events or purchases"));
    }
    if count > cap {
        return Err((
            400,
            serde_json::json!({
                "message": "Max Input Length Exceeded",
                "errors": [{"type": format!("{count} objects in one request; at most {cap} attributes, events and purchases combined")}],
            }),
        ));
    }
    Ok(sections)
}

/// The key a record's user is stored under: the `external_id` itself, otherwise `braze_id:…`,
/// `alias:<label>:<name>`, `email:…` or `phone:…`. Only called on records that passed [`identify`].
pub(crate) fn user_key(object: &Map<String, Value>) -> String {
    if let Some(id) = object.get("external_id").and_then(Value::as_str) {
        return id.to_string();
    }
    if let Some(id) = object.get("braze_id").and_then(Value::as_str) {
        return format!("braze_id:{id}");
    }
    if let Some(alias) = object.get("user_alias") {
        let field = |f: &str| alias.get(f).and_then(Value::as_str).unwrap_or_default().to_string();
        return format!("alias:{}:{}", field("alias_label"), field("alias_name"));
    }
    for kind in ["email", "phone"] {
        if let Some(v) = object.get(kind).and_then(Value::as_str) {
            return format!("{kind}:{v}");
        }
    }
    String::new()
}

/// Checks that an object names its user exactly once. In an attributes object `email` and `phone` are
/// attributes when a primary identifier is present; in events and purchases they count as identifiers.
pub(crate) fn identify(object: &Map<String, Value>, attributes: bool) -> Result<(), String> {
    let present = |k: &str| object.get(k).is_some_and(|v| !v.is_null());
    let primary: Vec<&str> = PRIMARY_IDENTIFIERS.iter().copied().filter(|k| present(k)).collect();
    let secondary: Vec<&str> = ["email", "phone"].into_iter().filter(|k| present(k)).collect();
    let count =
        if attributes && !primary.is_empty() { primary.len() } else { primary.len() + secondary.len() };
    if count == 0 {
        return Err(
            "Missing user identifier: give one of external_id, user_alias, braze_id, email or phone".into()
        );
    }
    if count > 1 {
        let all: Vec<&str> = primary.iter().chain(secondary.iter()).copied().collect();
        return Err(format!("More than one user identifier ({}); give exactly one", all.join(", ")));
    }
    if let Some(id) = object.get("external_id")
        && id.as_str().is_none_or(|s| s.trim().is_empty())
    {
        return Err("Invalid 'external_id': a non-empty string is required".into());
    }
    if let Some(id) = object.get("braze_id")
        && !id.is_string()
    {
        return Err("Invalid 'braze_id'".into());
    }
    if let Some(alias) = object.get("user_alias") {
        let ok = ["alias_name", "alias_label"].iter().all(|f| alias.get(*f).is_some_and(Value::is_string));
        if !ok {
            return Err("Invalid 'user_alias': alias_name and alias_label are required".into());
        }
    }
    Ok(())
}

/// The per-record checks of an attributes object.
pub(crate) fn check_attributes(object: &Map<String, Value>) -> Result<(), String> {
    identify(object, true)?;
    for (key, value) in object {
        if PRIMARY_IDENTIFIERS.contains(&key.as_str()) {
            continue;
        }
        match value {
            Value::String(s) if s.chars().count() > MAX_STRING_CHARS => {
                return Err(format!(
                    "Invalid value for '{key}': string attributes are at most {MAX_STRING_CHARS} characters"
                ));
            }
            Value::Object(ops) if ops.contains_key("add") || ops.contains_key("remove") => {
                for op in ["add", "remove"] {
                    if let Some(items) = ops.get(op)
                        && !items.is_array()
                    {
                        return Err(format!("Invalid value for '{key}': '{op}' must be an array"));
                    }
                }
            }
            Value::Object(ops) if ops.contains_key("inc") && !ops.get("inc").is_some_and(Value::is_i64) => {
                return Err(format!("Invalid value for '{key}': 'inc' must be an integer"));
            }
            _ => {}
        }
    }
    Ok(())
}

/// The per-record checks of an event object.
pub(crate) fn check_event(object: &Map<String, Value>) -> Result<(), String> {
    identify(object, false)?;
    if object.get("name").and_then(Value::as_str).is_none_or(|n| n.trim().is_empty()) {
        return Err("Invalid 'name': events need a non-empty name".into());
    }
    check_time(object)?;
    match object.get("properties") {
        None => Ok(()),
        Some(Value::Object(props)) => {
            if property_keys_ok(props) {
                Ok(())
            } else {
                Err("Invalid 'properties' field: keys must be non-empty, at most 255 characters and not start with '$'"
                    .into())
            }
        }
        Some(_) => Err("Invalid 'properties' field: must be an object".into()),
    }
}

/// The per-record checks of a purchase object.
pub(crate) fn check_purchase(object: &Map<String, Value>) -> Result<(), String> {
    identify(object, false)?;
    if object.get("product_id").and_then(Value::as_str).is_none_or(str::is_empty) {
        return Err("Invalid 'product_id'".into());
    }
    let currency_ok = object
        .get("currency")
        .and_then(Value::as_str)
        .is_some_and(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_uppercase()));
    if !currency_ok {
        return Err("Invalid 'currency': an ISO 4217 code is required".into());
    }
    if !object.get("price").is_some_and(Value::is_number) {
        return Err("Invalid 'price'".into());
    }
    check_time(object)
}

fn check_time(object: &Map<String, Value>) -> Result<(), String> {
    let ok = object
        .get("time")
        .and_then(Value::as_str)
        .is_some_and(|t| OffsetDateTime::parse(t, &Rfc3339).is_ok());
    if ok { Ok(()) } else { Err("The value provided for the 'time' field is invalid".into()) }
}

fn property_keys_ok(props: &Map<String, Value>) -> bool {
    props.iter().all(|(k, v)| {
        !k.is_empty() && k.chars().count() <= MAX_STRING_CHARS && !k.starts_with('$') && nested_keys_ok(v)
    })
}

fn nested_keys_ok(value: &Value) -> bool {
    match value {
        Value::Object(map) => property_keys_ok(map),
        Value::Array(items) => items.iter().all(nested_keys_ok),
        _ => true,
    }
}

/// Applies an accepted attributes object to a user's attributes: `null` removes, `{"add":[…]}` and
/// `{"remove":[…]}` change an array (values kept unique), `{"inc":n}` adds to a number, anything else
/// replaces. The primary identifier is not an attribute.
pub(crate) fn apply_attributes(stored: &mut Map<String, Value>, object: &Map<String, Value>) {
    for (key, value) in object {
        if PRIMARY_IDENTIFIERS.contains(&key.as_str()) {
            continue;
        }
        match value {
            Value::Null => {
                stored.remove(key);
            }
            Value::Object(ops) if ops.contains_key("add") || ops.contains_key("remove") => {
                let mut items = stored.get(key).and_then(Value::as_array).cloned().unwrap_or_default();
                for item in ops.get("add").and_then(Value::as_array).into_iter().flatten() {
                    if !items.contains(item) {
                        items.push(item.clone());
                    }
                }
                if let Some(gone) = ops.get("remove").and_then(Value::as_array) {
                    items.retain(|i| !gone.contains(i));
                }
                stored.insert(key.clone(), Value::Array(items));
            }
            Value::Object(ops) if ops.contains_key("inc") => {
                let by = ops.get("inc").and_then(Value::as_i64).unwrap_or(0);
                let now = stored.get(key).and_then(Value::as_i64).unwrap_or(0);
                stored.insert(key.clone(), Value::from(now + by));
            }
            other => {
                stored.insert(key.clone(), other.clone());
            }
        }
    }
}
