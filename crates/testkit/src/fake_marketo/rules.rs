//! The contract the fake Marketo enforces per endpoint, as functions from a parsed request to Marketo's
//! answer envelope: Sync Leads, custom activities, static-list membership and Describe. Response-level
//! failures are `success:false` with one `errors[]` entry; record-level ones are `status:"skipped"` with
//! the reasons. Authentication, limits and modes are checked before these, in the module root.

use super::SkipSpelling;
use super::store::{Store, StoredActivity, Synced};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// Most records in one lead-database call.
pub const MAX_RECORDS: usize = 300;
/// Largest request body (1 MB, read strictly); bigger ones are answered HTTP 413.
pub const MAX_BODY_BYTES: usize = 1_000_000;
/// Largest `attributes` array of one activity, in bytes of JSON (`1049` above it).
pub const MAX_ACTIVITY_ATTRIBUTES_BYTES: usize = 65_536;

/// A custom activity type the instance has.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FakeActivityType {
    pub id: i64,
    /// Draft types cannot be used until approved.
    pub approved: bool,
}

/// `{"requestId","success":true,"result":[…]}`.
pub(crate) fn ok(result: Vec<Value>) -> Value {
    json!({"requestId": request_id(), "success": true, "result": result})
}

/// `{"requestId","success":false,"errors":[{"code":"…","message":"…"}]}` (the code quoted, as Marketo does).
pub(crate) fn failure(code: u16, message: impl Into<String>) -> Value {
    json!({"requestId": request_id(), "success": false,
           "errors": [{"code": code.to_string(), "message": message.into()}]})
}

fn request_id() -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{}#{}", &id[..4], &id[4..15])
}

fn reason(code: u16, message: impl Into<String>) -> Value {
    json!({"code": code.to_string(), "message": message.into()})
}

fn skipped(spelling: SkipSpelling, code: u16, message: impl Into<String>) -> Value {
    let r = reason(code, message);
    match spelling {
        SkipSpelling::Reasons => json!({"status": "skipped", "reasons": [r]}),
        SkipSpelling::Reason => json!({"status": "skipped", "reason": r}),
        SkipSpelling::Errors => json!({"status": "skipped", "errors": [r]}),
    }
}

fn input(doc: &Value) -> Result<&Vec<Value>, Value> {
    let Some(input) = doc.get("input").and_then(Value::as_array) else {
        return Err(failure(701, "'input' cannot be blank"));
    };
    if input.is_empty() {
        return Err(failure(701, "'input' cannot be blank"));
    }
    if input.len() > MAX_RECORDS {
        return Err(failure(1003, format!("Batch size of {} exceeds {MAX_RECORDS} records", input.len())));
    }
    Ok(input)
}

/// `POST /rest/v1/leads.json`.
pub(crate) fn sync_leads(
    doc: &Value,
    store: &mut Store,
    fields: &[String],
    refusals: &HashMap<String, u16>,
    spelling: SkipSpelling,
    now: OffsetDateTime,
) -> Value {
    let input = match input(doc) {
        Ok(i) => i,
        Err(e) => return e,
    };
    let action = doc.get("action").and_then(Value::as_str).unwrap_or("createOrUpdate");
    if action != "createOrUpdate" {
        return failure(
            1003,
            format!("Action '{action}' is not supported by this fake (createOrUpdate only)"),
        );
    }
    let lookup = doc.get("lookupField").and_then(Value::as_str).unwrap_or("email");
    if !fields.iter().any(|f| f == lookup) {
        return failure(1003, format!("Invalid lookupField '{lookup}'"));
    }
    let mut result = Vec::with_capacity(input.len());
    for record in input {
        let Some(record) = record.as_object() else {
            result.push(skipped(spelling, 1003, "Record is not an object"));
            continue;
        };
        let missing = match record.get(lookup) {
            None | Some(Value::Null) => true,
            Some(Value::String(s)) => s.trim().is_empty(),
            _ => false,
        };
        if missing {
            result.push(skipped(spelling, 1002, format!("Missing value for lookup field '{lookup}'")));
            continue;
        }
        if let Some(unknown) = record.keys().find(|k| !fields.iter().any(|f| f == *k)) {
            result.push(skipped(spelling, 1006, format!("Field '{unknown}' not found")));
            continue;
        }
        let email = record.get("email").and_then(Value::as_str);
        if let Some(email) = email
            && (!email.is_ascii() || !email.contains('@'))
        {
            result.push(skipped(spelling, 1003, "Invalid email address"));
            continue;
        }
        if let Some(code) = email.and_then(|e| refusals.get(&e.trim().to_lowercase())) {
            result.push(skipped(spelling, *code, "Refused by the test"));
            continue;
        }
        let (synced, id) = store.upsert(lookup, record, now);
        let status = if synced == Synced::Created { "created" } else { "updated" };
        result.push(json!({"id": id, "status": status}));
    }
    ok(result)
}

fn integer(v: Option<&Value>) -> Option<i64> {
    v.and_then(Value::as_i64)
}

/// `POST /rest/v1/activities/external.json`.
pub(crate) fn insert_activities(doc: &Value, store: &mut Store, types: &[FakeActivityType]) -> Value {
    let input = match input(doc) {
        Ok(i) => i,
        Err(e) => return e,
    };
    let skip = |code: u16, message: String| json!({"status": "skipped", "errors": [reason(code, message)]});
    let mut result = Vec::with_capacity(input.len());
    for record in input {
        let Some(record) = record.as_object() else {
            result.push(skip(1003, "Record is not an object".into()));
            continue;
        };
        let Some(lead_id) = integer(record.get("leadId")) else {
            result.push(skip(1003, "leadId must be an integer".into()));
            continue;
        };
        let date = record.get("activityDate").and_then(Value::as_str);
        if date.is_none_or(|d| OffsetDateTime::parse(d, &Rfc3339).is_err()) {
            result.push(skip(1003, "activityDate must be a datetime".into()));
            continue;
        }
        let Some(type_id) = integer(record.get("activityTypeId")) else {
            result.push(skip(1003, "activityTypeId must be an integer".into()));
            continue;
        };
        match types.iter().find(|t| t.id == type_id) {
            None => {
                result.push(skip(1004, format!("Activity type '{type_id}' not found")));
                continue;
            }
            Some(t) if !t.approved => {
                result.push(skip(1003, format!("Activity type '{type_id}' is not approved")));
                continue;
            }
            Some(_) => {}
        }
        let Some(primary) = record.get("primaryAttributeValue").and_then(Value::as_str) else {
            result.push(skip(1002, "Missing value for required field 'primaryAttributeValue'".into()));
            continue;
        };
        let Some(attributes) = record.get("attributes").and_then(Value::as_array) else {
            result.push(skip(1002, "Missing value for required field 'attributes'".into()));
            continue;
        };
        if Value::Array(attributes.clone()).to_string().len() > MAX_ACTIVITY_ATTRIBUTES_BYTES {
            result.push(skip(1049, "Attribute array too large".into()));
            continue;
        }
        if store.lead(lead_id).is_none() {
            result.push(skip(1004, "Lead not found".into()));
            continue;
        }
        let guid = (store.activities.len() + 1).to_string();
        store.activities.push(StoredActivity {
            marketo_guid: guid.clone(),
            lead_id,
            activity_type_id: type_id,
            activity_date: date.unwrap_or_default().to_string(),
            primary_attribute_value: primary.to_string(),
            attributes: attributes.clone(),
        });
        result.push(json!({"id": store.activities.len(), "marketoGUID": guid, "status": "added"}));
    }
    ok(result)
}

/// `POST` (add) or `DELETE` (remove) `/rest/v1/lists/{listId}/leads.json`.
pub(crate) fn change_list(
    doc: &Value,
    store: &mut Store,
    list_id: i64,
    remove: bool,
    spelling: SkipSpelling,
) -> Value {
    if !store.lists.contains_key(&list_id) {
        return failure(1013, format!("Static list '{list_id}' not found"));
    }
    let input = match input(doc) {
        Ok(i) => i,
        Err(e) => return e,
    };
    let mut result = Vec::with_capacity(input.len());
    for record in input {
        let Some(id) = integer(record.get("id")) else {
            result.push(skipped(spelling, 1003, "id must be an integer"));
            continue;
        };
        if store.lead(id).is_none() {
            result.push(skipped(spelling, 1004, "Lead not found"));
            continue;
        }
        let members = store.lists.entry(list_id).or_default();
        if remove {
            match members.iter().position(|m| *m == id) {
                Some(at) => {
                    members.remove(at);
                    result.push(json!({"id": id, "status": "removed"}));
                }
                None => result.push(skipped(spelling, 1015, "Lead not in list")),
            }
        } else {
            if !members.contains(&id) {
                members.push(id);
            }
            result.push(json!({"id": id, "status": "added"}));
        }
    }
    ok(result)
}

/// `GET /rest/v1/leads/describe.json`: one entry per configured field.
pub(crate) fn describe(fields: &[String]) -> Value {
    let result: Vec<Value> = fields
        .iter()
        .enumerate()
        .map(|(i, name)| {
            json!({"id": i + 1, "displayName": name, "dataType": "string",
                   "rest": {"name": name, "readOnly": false}, "soap": {"name": name, "readOnly": false}})
        })
        .collect();
    ok(result)
}

/// The `input` records of a JSON body, for counting.
pub(crate) fn record_count(body: &[u8]) -> Option<usize> {
    let doc: Value = serde_json::from_slice(body).ok()?;
    doc.get("input").and_then(Value::as_array).map(Vec::len)
}

/// An object from a body, for checks that need one.
pub(crate) fn object(doc: &Value) -> Option<&Map<String, Value>> {
    doc.as_object()
}

/// `GET /rest/v1/leads.json?filterType=F&filterValues=a,b&fields=…`: the leads whose field `F` holds one of
/// the values (at most 300), with `id` and the requested fields.
pub(crate) fn get_leads(query: &[(String, String)], store: &Store) -> Value {
    let get = |k: &str| query.iter().find(|(n, _)| n == k).map(|(_, v)| v.as_str());
    let Some(field) = get("filterType").filter(|f| !f.is_empty()) else {
        return failure(1003, "filterType is required");
    };
    let values: Vec<&str> = get("filterValues").unwrap_or("").split(',').filter(|v| !v.is_empty()).collect();
    if values.is_empty() {
        return failure(1003, "filterValues is required");
    }
    if values.len() > MAX_RECORDS {
        return failure(1003, format!("More than {MAX_RECORDS} filterValues"));
    }
    let fields: Vec<&str> = get("fields").unwrap_or("").split(',').filter(|f| !f.is_empty()).collect();
    let mut result = Vec::new();
    for lead in &store.leads {
        let matches = lead.fields.get(field).is_some_and(|v| {
            let text = match v {
                Value::String(s) => s.trim().to_lowercase(),
                other => other.to_string(),
            };
            values.iter().any(|want| want.trim().to_lowercase() == text)
        });
        if matches {
            let mut row = Map::new();
            row.insert("id".into(), json!(lead.id));
            for f in &fields {
                if let Some(v) = lead.fields.get(*f) {
                    row.insert((*f).to_string(), v.clone());
                }
            }
            result.push(Value::Object(row));
        }
    }
    ok(result)
}

/// `POST /rest/v1/leads/delete.json` with `{"input":[{"id":N},…]}`: deletes the leads (their list
/// memberships and activities go with them).
pub(crate) fn delete_leads(doc: &Value, store: &mut Store) -> Value {
    let input = match input(doc) {
        Ok(i) => i,
        Err(e) => return e,
    };
    let mut result = Vec::with_capacity(input.len());
    for record in input {
        let Some(id) = integer(record.get("id")) else {
            result.push(skipped(SkipSpelling::Reasons, 1003, "id must be an integer"));
            continue;
        };
        match store.leads.iter().position(|l| l.id == id) {
            Some(at) => {
                store.leads.remove(at);
                store.activities.retain(|a| a.lead_id != id);
                for members in store.lists.values_mut() {
                    members.retain(|m| *m != id);
                }
                result.push(json!({"id": id, "status": "deleted"}));
            }
            None => {
                let mut r = skipped(SkipSpelling::Reasons, 1004, "Lead not found");
                r["id"] = json!(id);
                result.push(r);
            }
        }
    }
    ok(result)
}
