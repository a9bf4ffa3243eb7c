//! The checks the fake HubSpot applies to request bodies, and its error documents. Pure functions.

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Most inputs one batch accepts.
pub const MAX_BATCH_INPUTS: usize = 100;
/// Longest string property value, in characters.
pub const MAX_STRING_VALUE_CHARS: usize = 65_536;

/// Contact properties every account has (a subset of HubSpot's defaults); they are never created.
pub const STANDARD_PROPERTIES: &[&str] = &[
    "email",
    "firstname",
    "lastname",
    "phone",
    "company",
    "website",
    "jobtitle",
    "city",
    "state",
    "zip",
    "country",
    "lifecyclestage",
    "hs_object_id",
    "createdate",
    "lastmodifieddate",
];

/// Property types HubSpot knows.
const TYPES: &[&str] = &["string", "number", "date", "datetime", "enumeration", "bool"];

/// A refusal: status, category and message, as HubSpot's error document.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub category: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, category: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, category, message: message.into() }
    }

    pub fn validation(message: impl Into<String>) -> Self {
        Self::new(400, "VALIDATION_ERROR", message)
    }

    pub fn exists(message: impl Into<String>) -> Self {
        Self::new(409, "OBJECT_ALREADY_EXISTS", message)
    }

    /// `{"status":"error","message":…,"correlationId":…,"category":…}`.
    pub fn body(&self) -> Value {
        json!({
            "status": "error",
            "message": self.message,
            "correlationId": uuid::Uuid::new_v4().to_string(),
            "category": self.category,
        })
    }
}

/// Whether `name` is an internal name: lowercase letters, digits and `_`, starting with a letter.
pub fn is_internal_name(name: &str) -> bool {
    name.chars().next().is_some_and(|c| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
}

/// Whether `email` looks like an address HubSpot stores.
pub fn is_valid_email(email: &str) -> bool {
    email.split_once('@').is_some_and(|(local, domain)| {
        !local.is_empty()
            && domain.contains('.')
            && !domain.starts_with('.')
            && !domain.ends_with('.')
            && !domain.contains('@')
            && !email.contains(char::is_whitespace)
    })
}

/// A property definition that passed the checks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CreatedProperty {
    pub name: String,
    pub label: String,
    /// HubSpot's `type` (`string`, `number`, `datetime`, `bool`, …).
    pub kind: String,
    pub field_type: String,
    pub group_name: String,
    /// The option values of `bool` and `enumeration` properties.
    pub options: Vec<String>,
}

impl CreatedProperty {
    pub fn to_json(&self) -> Value {
        json!({
            "name": self.name,
            "label": self.label,
            "type": self.kind,
            "fieldType": self.field_type,
            "groupName": self.group_name,
            "options": self.options.iter().map(|o| json!({"label": o, "value": o})).collect::<Vec<_>>(),
            "archived": false,
        })
    }

    /// Why `value` cannot be stored in this property, if it cannot.
    pub fn value_problem(&self, value: &str) -> Option<String> {
        let ok = match self.kind.as_str() {
            "number" => value.trim().parse::<f64>().is_ok_and(f64::is_finite),
            "bool" => value == "true" || value == "false",
            "datetime" | "date" => {
                value.chars().all(|c| c.is_ascii_digit()) && !value.is_empty()
                    || OffsetDateTime::parse(value, &Rfc3339).is_ok()
            }
            "enumeration" => self.options.iter().any(|o| o == value),
            _ => value.chars().count() <= MAX_STRING_VALUE_CHARS,
        };
        (!ok).then(|| format!("{value:.60} was not a valid {} value for property {}", self.kind, self.name))
    }
}

/// Checks one property definition; `group_exists` says whether its group is there.
pub fn property_definition(
    def: &Value,
    group_exists: impl Fn(&str) -> bool,
) -> Result<CreatedProperty, ApiError> {
    let obj =
        def.as_object().ok_or_else(|| ApiError::validation("a property definition must be an object"))?;
    let text = |key: &str| obj.get(key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty());
    let name = text("name").ok_or_else(|| ApiError::validation("property `name` is required"))?;
    if !is_internal_name(name) {
        return Err(ApiError::validation(format!(
            "property name {name} is invalid: use lowercase letters, digits and _, starting with a letter"
        )));
    }
    let label =
        text("label").ok_or_else(|| ApiError::validation(format!("property {name}: `label` is required")))?;
    let kind =
        text("type").ok_or_else(|| ApiError::validation(format!("property {name}: `type` is required")))?;
    if !TYPES.contains(&kind) {
        return Err(ApiError::validation(format!("property {name}: unknown type {kind}")));
    }
    let field_type = text("fieldType")
        .ok_or_else(|| ApiError::validation(format!("property {name}: `fieldType` is required")))?;
    let allowed: &[&str] = match kind {
        "string" => &["text", "textarea", "html", "phonenumber", "file"],
        "number" => &["number", "calculation_equation"],
        "date" | "datetime" => &["date"],
        "bool" => &["booleancheckbox", "calculation_equation"],
        _ => &["select", "radio", "checkbox", "booleancheckbox"],
    };
    if !allowed.contains(&field_type) {
        return Err(ApiError::validation(format!(
            "property {name}: fieldType {field_type} does not go with type {kind}"
        )));
    }
    let group = text("groupName")
        .ok_or_else(|| ApiError::validation(format!("property {name}: `groupName` is required")))?;
    if !group_exists(group) {
        return Err(ApiError::validation(format!("property {name}: property group {group} does not exist")));
    }
    let mut options = Vec::new();
    if let Some(list) = obj.get("options").and_then(Value::as_array) {
        for option in list {
            let value = option.get("value").and_then(Value::as_str);
            let label = option.get("label").and_then(Value::as_str);
            match (value, label) {
                (Some(v), Some(_)) => options.push(v.to_string()),
                _ => {
                    return Err(ApiError::validation(format!(
                        "property {name}: every option needs a label and a value"
                    )));
                }
            }
        }
    }
    if kind == "bool" && !(options.contains(&"true".to_string()) && options.contains(&"false".to_string())) {
        return Err(ApiError::validation(format!(
            "property {name}: a bool property needs the options true and false"
        )));
    }
    if kind == "enumeration" && options.is_empty() {
        return Err(ApiError::validation(format!("property {name}: an enumeration needs options")));
    }
    Ok(CreatedProperty {
        name: name.to_string(),
        label: label.to_string(),
        kind: kind.to_string(),
        field_type: field_type.to_string(),
        group_name: group.to_string(),
        options,
    })
}

/// One batch-upsert input that passed the whole-batch checks.
#[derive(Debug, Clone)]
pub struct UpsertInput {
    pub id: String,
    pub trace_id: String,
    pub properties: Map<String, Value>,
}

/// The whole-batch checks of a batch upsert: `inputs` of 1–100 objects, each with `idProperty:"email"`,
/// a string `id`, an `objectWriteTraceId` unique in the batch and a `properties` object; no id twice.
pub fn upsert_inputs(body: &Value) -> Result<Vec<UpsertInput>, ApiError> {
    let inputs = body
        .get("inputs")
        .and_then(Value::as_array)
        .ok_or_else(|| ApiError::validation("Invalid input JSON: `inputs` must be an array"))?;
    if inputs.is_empty() {
        return Err(ApiError::validation("Batch input must contain at least one input"));
    }
    if inputs.len() > MAX_BATCH_INPUTS {
        return Err(ApiError::validation(format!(
            "Batch input must contain at most {MAX_BATCH_INPUTS} inputs; it had {}",
            inputs.len()
        )));
    }
    let mut out: Vec<UpsertInput> = Vec::with_capacity(inputs.len());
    for (i, input) in inputs.iter().enumerate() {
        let at = |what: &str| ApiError::validation(format!("inputs[{i}]: {what}"));
        let obj = input.as_object().ok_or_else(|| at("must be an object"))?;
        if obj.get("idProperty").and_then(Value::as_str) != Some("email") {
            return Err(at("idProperty must be \"email\" (contacts are upserted by email)"));
        }
        let id = obj
            .get("id")
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| at("id is required"))?;
        let trace = obj
            .get("objectWriteTraceId")
            .and_then(Value::as_str)
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| at("objectWriteTraceId is required"))?;
        let properties = obj
            .get("properties")
            .and_then(Value::as_object)
            .ok_or_else(|| at("properties must be an object"))?;
        if out.iter().any(|o| o.trace_id == trace) {
            return Err(at(&format!("objectWriteTraceId {trace} is used twice in this batch")));
        }
        if out.iter().any(|o| o.id.eq_ignore_ascii_case(id)) {
            return Err(ApiError::validation(format!("Duplicate IDs found in batch input: [{id}]")));
        }
        out.push(UpsertInput {
            id: id.to_string(),
            trace_id: trace.to_string(),
            properties: properties.clone(),
        })
    }
    Ok(out)
}

/// A per-record error entry of a 207 answer.
pub fn record_error(trace_id: &str, category: &str, message: &str) -> Value {
    json!({
        "status": "error",
        "category": category,
        "message": message,
        "context": {"objectWriteTraceId": [trace_id]},
    })
}

/// HubSpot's message for property values it refuses: `Property values were not valid: [{…}]`.
pub fn invalid_values_message(problems: &[(String, &str, String)]) -> String {
    let items: Vec<Value> = problems
        .iter()
        .map(|(name, error, message)| json!({"isValid": false, "message": message, "error": error, "name": name}))
        .collect();
    format!("Property values were not valid: {}", Value::Array(items))
}
