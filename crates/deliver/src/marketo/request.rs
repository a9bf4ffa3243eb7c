//! Pure pieces of the Marketo connector: what each action becomes (a lead record for Sync Leads, a
//! custom-activity record, a list-membership change), the documented limits checked before sending, the
//! packing of records into calls, and the reading of Marketo's answer envelope and error codes.
//! Nothing here talks to the network, so every rule is unit-tested here.

use super::config::MarketoConfig;
use nudge_model::{Action, AttrValue};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use std::collections::HashSet;
use std::ops::Range;
use std::time::Duration;
use time::format_description::well_known::Rfc3339;
use time::{OffsetDateTime, UtcOffset};

/// Sync Leads (`syncLeadUsingPOST`).
pub const SYNC_LEADS: &str = "POST /rest/v1/leads.json";
/// Insert custom activities.
pub const ACTIVITIES: &str = "POST /rest/v1/activities/external.json";
/// The lead fields of the instance.
pub const DESCRIBE: &str = "GET /rest/v1/leads/describe.json";
/// Adding leads to a static list.
pub const LIST_ADD: &str = "POST /rest/v1/lists/{listId}/leads.json";
/// Removing leads from a static list.
pub const LIST_REMOVE: &str = "DELETE /rest/v1/lists/{listId}/leads.json";
/// Leads by a field's values (`getLeadsByFilterUsingGET`), used to find whom to delete.
pub const GET_LEADS: &str = "GET /rest/v1/leads.json";
/// Deleting leads by id (`deleteLeadsUsingPOST`).
pub const DELETE_LEADS: &str = "POST /rest/v1/leads/delete.json";
/// Marketo Identity's token endpoint.
pub const IDENTITY: &str = "GET /identity/oauth/token";

/// Largest request body Marketo takes (1 MB, read strictly); bigger bodies are answered HTTP 413.
pub const MAX_BODY_BYTES: usize = 1_000_000;
/// Largest `attributes` array of one custom activity (bytes of its JSON), above which Marketo skips the
/// record with `1049`.
pub const MAX_ACTIVITY_ATTRIBUTES_BYTES: usize = 65_536;
/// Longest string Marketo stores in a `primaryAttributeValue` (a string field).
pub const MAX_PRIMARY_ATTRIBUTE_CHARS: usize = 255;
/// How long the answer to one 606 keeps the whole destination quiet: Marketo's rolling window.
pub const RATE_PAUSE: Duration = Duration::from_secs(20);

/// One lead as it goes into Sync Leads.
#[derive(Debug, Clone, PartialEq)]
pub struct LeadRecord {
    /// The `lookupField` of the call this record must go in.
    pub lookup_field: String,
    /// The lookup value, lower-cased: two records with the same key are never in flight together.
    pub key: String,
    /// The record: REST field API names to values.
    pub fields: Map<String, Value>,
    /// The record's size as JSON, plus the comma between records.
    pub bytes: usize,
}

/// What one action turns into.
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    /// Sync the lead; done when Marketo created or updated it.
    Upsert { lead: LeadRecord },
    /// Sync the lead (by email) for its id, then insert one custom activity.
    Event { lead: LeadRecord, activity: Map<String, Value> },
    /// Sync the lead (by email) for its id, then add it to or remove it from a static list.
    List { lead: LeadRecord, list_id: u64, remove: bool },
}

impl Plan {
    pub fn lead(&self) -> &LeadRecord {
        match self {
            Plan::Upsert { lead } | Plan::Event { lead, .. } | Plan::List { lead, .. } => lead,
        }
    }
}

/// The endpoint an action ends at, for outcomes of actions refused before any call.
pub fn endpoint_of(action: &Action) -> &'static str {
    match action {
        Action::UpsertProfile { .. } | Action::Alert { .. } => SYNC_LEADS,
        Action::TriggerEvent { .. } => ACTIVITIES,
        Action::AddToList { .. } => LIST_ADD,
        Action::RemoveFromList { .. } => LIST_REMOVE,
    }
}

/// Checks `action` against what Marketo documents and builds what it turns into, or says why it cannot
/// be sent. Lead fields are checked against Describe separately ([`check_fields`]).
pub fn plan(action: &Action, config: &MarketoConfig) -> Result<Plan, String> {
    match action {
        Action::UpsertProfile { email, first_name, last_name, attributes, .. } => {
            let mut fields = Map::new();
            if let Some(email) = checked_email(email.as_deref())? {
                fields.insert("email".into(), Value::String(email));
            }
            for (key, value) in [("firstName", first_name), ("lastName", last_name)] {
                if let Some(v) = value.as_deref().map(str::trim).filter(|v| !v.is_empty()) {
                    fields.insert(key.into(), Value::String(v.to_string()));
                }
            }
            for (name, value) in attributes {
                if fields.contains_key(name) {
                    return Err(format!("attribute `{name}` repeats a field nudge fills itself"));
                }
                fields.insert(name.clone(), attr_json(name, value)?);
            }
            let lead = lead_record(&config.lookup_field, fields)?;
            Ok(Plan::Upsert { lead })
        }
        Action::TriggerEvent { email, name, properties, time, .. } => {
            let Some(type_id) = config.activity_type_id else {
                return Err("trigger events become Marketo custom activities: set activity_type_id in \
                            [destinations.marketo] to the id of an approved custom activity type (Admin > \
                            Marketo Custom Activities)"
                    .into());
            };
            let lead = email_lead(email.as_deref(), "a trigger event")?;
            let name = name.trim();
            if name.is_empty() {
                return Err("the event name is empty; it is the activity's primary attribute".into());
            }
            if name.chars().count() > MAX_PRIMARY_ATTRIBUTE_CHARS {
                return Err(format!(
                    "the event name has {} characters; Marketo's primary attribute holds at most \
                     {MAX_PRIMARY_ATTRIBUTE_CHARS}",
                    name.chars().count()
                ));
            }
            let date = time
                .to_offset(UtcOffset::UTC)
                .format(&Rfc3339)
                .map_err(|e| format!("cannot format the event time: {e}"))?;
            let attributes: Vec<Value> = properties
                .iter()
                .map(|(key, value)| {
                    let value = match value {
                        Value::String(_) | Value::Number(_) | Value::Bool(_) => value.clone(),
                        Value::Null => Value::String(String::new()),
                        // Attributes are scalar; a nested property is carried as its JSON text.
                        other => Value::String(other.to_string()),
                    };
                    json!({"apiName": key, "value": value})
                })
                .collect();
            let attributes = Value::Array(attributes);
            let size = attributes.to_string().len();
            if size > MAX_ACTIVITY_ATTRIBUTES_BYTES {
                return Err(format!(
                    "the event properties are {size} bytes as activity attributes; Marketo takes at most \
                     {MAX_ACTIVITY_ATTRIBUTES_BYTES}"
                ));
            }
            let mut activity = Map::new();
            activity.insert("activityDate".into(), Value::String(date));
            activity.insert("activityTypeId".into(), json!(type_id));
            activity.insert("primaryAttributeValue".into(), Value::String(name.to_string()));
            activity.insert("attributes".into(), attributes);
            Ok(Plan::Event { lead, activity })
        }
        Action::AddToList { email, list_id, .. } | Action::RemoveFromList { email, list_id, .. } => {
            let remove = matches!(action, Action::RemoveFromList { .. });
            let list_id = checked_list_id(list_id)?;
            let lead = email_lead(email.as_deref(), "a list change")?;
            Ok(Plan::List { lead, list_id, remove })
        }
        Action::Alert { .. } => Err("Marketo takes no alerts; route alerts to Slack or a webhook".into()),
    }
}

/// A static list id: Marketo's are positive integers.
fn checked_list_id(list_id: &str) -> Result<u64, String> {
    list_id.trim().parse::<u64>().ok().filter(|id| *id > 0).ok_or_else(|| {
        format!(
            "`{}` is not a Marketo static list id (a number, as in the list's URL)",
            list_id.escape_debug()
        )
    })
}

/// The lead record (just the email) that finds or creates the customer's lead for its id.
fn email_lead(email: Option<&str>, what: &str) -> Result<LeadRecord, String> {
    let Some(email) = checked_email(email)? else {
        return Err(format!("{what} needs the customer's email: Marketo finds the lead by it"));
    };
    let mut fields = Map::new();
    fields.insert("email".into(), Value::String(email));
    lead_record("email", fields)
}

fn lead_record(lookup_field: &str, fields: Map<String, Value>) -> Result<LeadRecord, String> {
    let key = match fields.get(lookup_field) {
        Some(Value::String(s)) if !s.trim().is_empty() => s.trim().to_lowercase(),
        Some(Value::Number(n)) => n.to_string(),
        _ if lookup_field == "email" => {
            return Err(
                "the profile has no email, and Marketo matches leads on it (lookupField email)".into()
            );
        }
        _ => {
            return Err(format!(
                "the profile has no value for `{lookup_field}`, the lookupField Marketo matches leads on"
            ));
        }
    };
    let bytes = serde_json::to_vec(&fields).map(|b| b.len() + 1).unwrap_or(usize::MAX);
    if bytes > MAX_BODY_BYTES - sync_overhead(lookup_field) {
        return Err(format!("the lead record is {bytes} bytes; a Marketo call carries at most 1 MB"));
    }
    Ok(LeadRecord { lookup_field: lookup_field.to_string(), key, fields, bytes })
}

/// An email worth sending: trimmed, `None` when blank, refused when it cannot be an address or is not
/// ASCII (Marketo takes ASCII email values only).
fn checked_email(email: Option<&str>) -> Result<Option<String>, String> {
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
        // The address is personal data, so the message only says what is wrong with it.
        return Err("the email is not a valid address".into());
    }
    if !email.is_ascii() {
        return Err("the email has non-ASCII characters, which Marketo does not take".into());
    }
    Ok(Some(email.to_string()))
}

fn attr_json(key: &str, value: &AttrValue) -> Result<Value, String> {
    Ok(match value {
        AttrValue::Number(n) => serde_json::Number::from_f64(*n)
            .map(Value::Number)
            .ok_or_else(|| format!("attribute `{key}` is not a finite number"))?,
        AttrValue::Text(s) => Value::String(s.clone()),
        AttrValue::Bool(b) => Value::Bool(*b),
        // Lead fields hold scalars: the JSON text (a text-area field takes it).
        AttrValue::Json(v) => Value::String(v.to_string()),
    })
}

/// Refuses a record carrying a field the instance does not have (Marketo would skip it with 1006).
pub fn check_fields(lead: &LeadRecord, known: &HashSet<String>) -> Result<(), String> {
    match lead.fields.keys().find(|k| !known.contains(k.as_str())) {
        None => Ok(()),
        Some(field) => Err(format!(
            "lead field `{field}` does not exist in Marketo; create it there (Admin > Field Management) \
             with this API name, or rename the attribute. nudge never creates Marketo fields because they \
             cannot be deleted"
        )),
    }
}

fn sync_overhead(lookup_field: &str) -> usize {
    r#"{"action":"createOrUpdate","lookupField":"","input":[]}"#.len() + lookup_field.len()
}

/// The Sync Leads body for `records`.
pub fn sync_leads_body<'a>(lookup_field: &str, records: impl Iterator<Item = &'a LeadRecord>) -> Vec<u8> {
    let input: Vec<&Map<String, Value>> = records.map(|r| &r.fields).collect();
    serde_json::to_vec(&json!({"action": "createOrUpdate", "lookupField": lookup_field, "input": input}))
        .unwrap_or_default()
}

/// The body inserting custom activities.
pub fn activities_body(records: &[Value]) -> Vec<u8> {
    serde_json::to_vec(&json!({"input": records})).unwrap_or_default()
}

/// The body adding leads to or removing them from a list.
pub fn list_body(lead_ids: &[i64]) -> Vec<u8> {
    let input: Vec<Value> = lead_ids.iter().map(|id| json!({"id": id})).collect();
    serde_json::to_vec(&json!({"input": input})).unwrap_or_default()
}

/// The activity record for a lead id.
pub fn activity_record(activity: &Map<String, Value>, lead_id: i64) -> Value {
    let mut record = Map::new();
    record.insert("leadId".into(), json!(lead_id));
    record.extend(activity.clone());
    Value::Object(record)
}

/// Splits records of the given sizes (bytes, comma included) into consecutive runs of at most
/// `max_records` records and at most `max_bytes` bytes of records, as few as the limits allow.
pub fn pack(sizes: &[usize], max_records: usize, max_bytes: usize) -> Vec<Range<usize>> {
    let mut runs = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, size) in sizes.iter().enumerate() {
        let full = i - start >= max_records.max(1) || (i > start && bytes + size > max_bytes);
        if full {
            runs.push(start..i);
            start = i;
            bytes = 0;
        }
        bytes += size;
    }
    if start < sizes.len() {
        runs.push(start..sizes.len());
    }
    runs
}

/// The byte budget for the records of one call carrying `overhead` bytes of its own.
pub fn record_budget(overhead: usize) -> usize {
    MAX_BODY_BYTES.saturating_sub(overhead)
}

/// The overhead of a Sync Leads body besides its records.
pub fn sync_leads_overhead(lookup_field: &str) -> usize {
    sync_overhead(lookup_field)
}

/// Marketo's answer envelope (`requestId`, `success`, `result`, `errors`, `warnings`); unknown fields
/// are ignored.
#[derive(Debug, Clone, Deserialize)]
pub struct Envelope {
    #[serde(default)]
    pub success: bool,
    #[serde(default)]
    pub result: Vec<Value>,
    #[serde(default)]
    pub errors: Vec<ApiError>,
}

/// One `errors[]` entry. `code` is a quoted integer in the docs; a bare number is accepted too.
#[derive(Debug, Clone, Deserialize)]
pub struct ApiError {
    #[serde(default)]
    pub code: Value,
    #[serde(default)]
    pub message: Option<String>,
}

impl ApiError {
    pub fn code(&self) -> String {
        match &self.code {
            Value::String(s) => s.trim().to_string(),
            Value::Null => String::new(),
            other => other.to_string(),
        }
    }

    pub fn text(&self) -> String {
        let message = self.message.as_deref().map(str::trim).unwrap_or("no message");
        format!("{} {}", self.code(), message.chars().take(300).collect::<String>())
    }
}

/// Why Marketo skipped one record, when it did: `status: "skipped"` with the reasons under `reasons[]`,
/// `reason` or `errors[]` (all three spellings occur). `None` when the record went through.
pub fn skip_reason(result: &Value) -> Option<(String, String)> {
    if result.get("status").and_then(Value::as_str) != Some("skipped") {
        return None;
    }
    let mut reasons: Vec<ApiError> = Vec::new();
    for key in ["reasons", "errors"] {
        if let Some(Value::Array(items)) = result.get(key) {
            reasons.extend(items.iter().filter_map(|v| serde_json::from_value(v.clone()).ok()));
        }
    }
    if let Some(single) =
        result.get("reason").and_then(|v| serde_json::from_value::<ApiError>(v.clone()).ok())
    {
        reasons.push(single);
    }
    let code = reasons.first().map(ApiError::code).unwrap_or_default();
    let text = if reasons.is_empty() {
        "skipped without a reason".to_string()
    } else {
        reasons.iter().map(ApiError::text).collect::<Vec<_>>().join("; ")
    };
    Some((code, text))
}

/// What a response-level error code asks of the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CodeAction {
    /// 601/602: fetch a token and repeat the call once.
    RefreshToken,
    /// Try again later; `pause` keeps the whole destination quiet for that long (606, 607).
    Retry { retry_after: Option<Duration>, pause: Option<Duration> },
    /// The request or the configuration is wrong; repeating it cannot succeed.
    Reject,
}

/// The table of response-level codes (api-contracts-2 §1.6), `now` for the daily-quota reset.
pub fn code_action(code: &str, now: OffsetDateTime) -> CodeAction {
    match code {
        "601" | "602" => CodeAction::RefreshToken,
        "606" => CodeAction::Retry { retry_after: Some(RATE_PAUSE), pause: Some(RATE_PAUSE) },
        "607" => {
            let wait = until_quota_reset(now);
            CodeAction::Retry { retry_after: Some(wait), pause: Some(wait) }
        }
        "615" => CodeAction::Retry { retry_after: Some(Duration::from_secs(2)), pause: None },
        // Temporary by the docs: time-out, unavailable, system error, transient; 614 "usually temporary".
        "604" | "608" | "611" | "713" | "614" => CodeAction::Retry { retry_after: None, pause: None },
        _ => CodeAction::Reject,
    }
}

/// How long until Marketo's daily quota resets: midnight US Central. Taken as UTC−6 all year (Central
/// Standard Time); during daylight saving the real reset is an hour earlier, so this errs on waiting.
pub fn until_quota_reset(now: OffsetDateTime) -> Duration {
    let central = UtcOffset::from_hms(-6, 0, 0).unwrap_or(UtcOffset::UTC);
    let local = now.to_offset(central);
    let next_midnight = local.date().next_day().map(|d| d.midnight().assume_offset(central));
    match next_midnight {
        Some(reset) => {
            let secs = (reset - now).whole_seconds().max(1);
            Duration::from_secs(u64::try_from(secs).unwrap_or(1))
        }
        None => Duration::from_secs(24 * 3600),
    }
}

/// A lead id from a Sync Leads result record.
pub fn lead_id(result: &Value) -> Option<i64> {
    match result.get("id")? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;
    use time::macros::datetime;

    fn config() -> MarketoConfig {
        MarketoConfig::new("https://123-ABC-456.mktorest.com", "id", "secret").with_activity_type(100001)
    }

    fn profile(email: Option<&str>, attrs: &[(&str, AttrValue)]) -> Action {
        Action::UpsertProfile {
            customer: "shopify:880012".parse().unwrap(),
            email: email.map(str::to_string),
            first_name: Some(" Lena ".into()),
            last_name: None,
            attributes: attrs.iter().map(|(k, v)| (k.to_string(), v.clone())).collect::<BTreeMap<_, _>>(),
        }
    }

    fn event(email: Option<&str>, properties: Map<String, Value>) -> Action {
        Action::TriggerEvent {
            customer: "shopify:880012".parse().unwrap(),
            email: email.map(str::to_string),
            name: "AI Reorder Window".into(),
            properties,
            value: None,
            time: datetime!(2026-05-01 12:00:00 +02:00),
            unique_id: "nudge:reorder:1".into(),
        }
    }

    #[test]
    fn a_profile_becomes_a_lead_record() {
        let plan = plan(
            &profile(Some(" Lena@Example.org "), &[("aiChurnRisk", AttrValue::Number(0.18))]),
            &config(),
        )
        .unwrap();
        let Plan::Upsert { lead } = plan else { panic!("{plan:?}") };
        assert_eq!(
            Value::Object(lead.fields.clone()),
            json!({"email": "Lena@Example.org", "firstName": "Lena", "aiChurnRisk": 0.18})
        );
        assert_eq!((lead.lookup_field.as_str(), lead.key.as_str()), ("email", "lena@example.org"));
        let body: Value = serde_json::from_slice(&sync_leads_body("email", [&lead].into_iter())).unwrap();
        assert_eq!(body["action"], "createOrUpdate");
        assert_eq!(body["lookupField"], "email");
        assert_eq!(body["input"][0]["email"], "Lena@Example.org");
    }

    #[test]
    fn leads_need_their_lookup_value_and_ascii_email() {
        let e = plan(&profile(None, &[]), &config()).unwrap_err();
        assert!(e.contains("no email"), "{e}");
        assert!(plan(&profile(Some("léna@example.org"), &[]), &config()).unwrap_err().contains("ASCII"));
        assert!(plan(&profile(Some("not-an-address"), &[]), &config()).is_err());
        let mut by_id = config();
        by_id.lookup_field = "customerNumber".into();
        assert!(plan(&profile(Some("a@b.c"), &[]), &by_id).unwrap_err().contains("customerNumber"));
        let p = plan(&profile(None, &[("customerNumber", AttrValue::Text("C-1".into()))]), &by_id).unwrap();
        assert_eq!(p.lead().key, "c-1");
        assert!(plan(&profile(Some("a@b.c"), &[("x", AttrValue::Number(f64::NAN))]), &config()).is_err());
        let huge = AttrValue::Text("x".repeat(MAX_BODY_BYTES));
        assert!(plan(&profile(Some("a@b.c"), &[("aiNotes", huge)]), &config()).unwrap_err().contains("1 MB"));
    }

    #[test]
    fn a_trigger_event_becomes_a_custom_activity() {
        let props =
            json!({"orderId": "6120000000001", "days": 21, "items": ["a"]}).as_object().unwrap().clone();
        let p = plan(&event(Some("lena@example.org"), props), &config()).unwrap();
        let Plan::Event { lead, activity } = p else { panic!() };
        assert_eq!(Value::Object(lead.fields), json!({"email": "lena@example.org"}));
        assert_eq!(
            activity_record(&activity, 318581),
            json!({"leadId": 318581, "activityDate": "2026-05-01T10:00:00Z", "activityTypeId": 100001,
                   "primaryAttributeValue": "AI Reorder Window",
                   "attributes": [{"apiName": "days", "value": 21}, {"apiName": "items", "value": "[\"a\"]"},
                                  {"apiName": "orderId", "value": "6120000000001"}]})
        );
    }

    #[test]
    fn events_need_the_activity_type_and_an_email() {
        let no_type = MarketoConfig::new("https://123-ABC-456.mktorest.com", "id", "secret");
        let e = plan(&event(Some("a@b.c"), Map::new()), &no_type).unwrap_err();
        assert!(e.contains("activity_type_id"), "{e}");
        assert!(plan(&event(None, Map::new()), &config()).unwrap_err().contains("email"));
        let big: Map<String, Value> = (0..10).map(|i| (format!("p{i}"), json!("x".repeat(7000)))).collect();
        assert!(plan(&event(Some("a@b.c"), big), &config()).unwrap_err().contains("65536"));
    }

    #[test]
    fn list_ids_are_numbers_and_alerts_are_refused() {
        let list = |id: &str| Action::AddToList {
            customer: "shopify:1".parse().unwrap(),
            email: Some("a@b.c".into()),
            list_id: id.into(),
        };
        assert!(matches!(
            plan(&list("1042"), &config()),
            Ok(Plan::List { list_id: 1042, remove: false, .. })
        ));
        for bad in ["", "abc", "../1", "0", "-3", "12a"] {
            assert!(plan(&list(bad), &config()).unwrap_err().contains("static list id"), "{bad}");
        }
        let alert = Action::Alert {
            customer: "shopify:1".parse().unwrap(),
            flow: "f".into(),
            text: "t".into(),
            time: datetime!(2026-05-01 10:00 UTC),
            unique_id: "u".into(),
        };
        assert!(plan(&alert, &config()).unwrap_err().contains("no alerts"));
        assert_eq!(list_body(&[5, 7]), br#"{"input":[{"id":5},{"id":7}]}"#.to_vec());
    }

    #[test]
    fn unknown_fields_are_named() {
        let p = plan(&profile(Some("a@b.c"), &[("aiChurnRsk", AttrValue::Number(0.5))]), &config()).unwrap();
        let known: HashSet<String> =
            ["email", "firstName", "lastName", "aiChurnRisk"].map(String::from).into();
        let e = check_fields(p.lead(), &known).unwrap_err();
        assert!(e.contains("`aiChurnRsk`") && e.contains("Field Management"), "{e}");
        let ok =
            plan(&profile(Some("a@b.c"), &[("aiChurnRisk", AttrValue::Number(0.5))]), &config()).unwrap();
        check_fields(ok.lead(), &known).unwrap();
    }

    #[test]
    fn packing_respects_count_and_bytes() {
        assert_eq!(pack(&[10; 7], 3, 1000), vec![0..3, 3..6, 6..7]);
        assert_eq!(pack(&[400, 400, 400, 100], 300, 1000), vec![0..2, 2..4]);
        assert_eq!(pack(&[2000, 1], 300, 1000), vec![0..1, 1..2], "an oversized record goes alone");
        assert!(pack(&[], 3, 10).is_empty());
        assert_eq!(pack(&[1; 601], 300, MAX_BODY_BYTES).len(), 3);
    }

    #[test]
    fn skip_reasons_are_read_in_all_three_spellings() {
        let reasons =
            json!({"status": "skipped", "reasons": [{"code": "1006", "message": "Field 'x' not found"}]});
        assert_eq!(skip_reason(&reasons), Some(("1006".into(), "1006 Field 'x' not found".into())));
        let reason = json!({"status": "skipped", "reason": {"code": "1004", "message": "Lead not found"}});
        assert_eq!(skip_reason(&reason).unwrap().0, "1004");
        let errors = json!({"status": "skipped", "errors": [{"code": 1003, "message": "bad"}]});
        assert_eq!(skip_reason(&errors).unwrap().0, "1003");
        assert_eq!(skip_reason(&json!({"status": "skipped"})).unwrap().1, "skipped without a reason");
        assert_eq!(skip_reason(&json!({"id": 5, "status": "updated"})), None);
        assert_eq!(lead_id(&json!({"id": 5, "status": "updated"})), Some(5));
    }

    #[test]
    fn codes_follow_the_table() {
        let now = datetime!(2026-05-01 10:00 UTC);
        assert_eq!(code_action("601", now), CodeAction::RefreshToken);
        assert_eq!(code_action("602", now), CodeAction::RefreshToken);
        let CodeAction::Retry { retry_after: Some(wait), pause: Some(p) } = code_action("606", now) else {
            panic!()
        };
        assert!(wait >= Duration::from_secs(20) && p == wait);
        for code in ["604", "608", "611", "713", "614", "615"] {
            assert!(matches!(code_action(code, now), CodeAction::Retry { pause: None, .. }), "{code}");
        }
        for code in ["603", "605", "609", "610", "612", "613", "616", "701", "711", "1003"] {
            assert_eq!(code_action(code, now), CodeAction::Reject, "{code}");
        }
        let CodeAction::Retry { pause: Some(p), .. } = code_action("607", now) else { panic!() };
        // 10:00 UTC is 04:00 at UTC−6: 20 h to midnight there.
        assert_eq!(p, Duration::from_secs(20 * 3600));
    }

    #[test]
    fn the_quota_resets_at_midnight_utc_minus_six() {
        assert_eq!(until_quota_reset(datetime!(2026-05-01 05:59:59 UTC)), Duration::from_secs(1));
        assert_eq!(until_quota_reset(datetime!(2026-05-01 06:00 UTC)), Duration::from_secs(24 * 3600));
        assert_eq!(until_quota_reset(datetime!(2026-12-31 23:00 UTC)), Duration::from_secs(7 * 3600));
    }
}

/// A query-string value, percent-encoded (everything but the unreserved characters).
pub fn query_value(v: &str) -> String {
    let mut out = String::with_capacity(v.len());
    for b in v.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The path of a lookup of leads whose `field` holds `value`, asking for their ids only.
pub fn get_leads_path(field: &str, value: &str) -> String {
    format!(
        "/rest/v1/leads.json?filterType={}&filterValues={}&fields=id",
        query_value(field),
        query_value(value)
    )
}

/// The body deleting the leads `ids`.
pub fn delete_leads_body(ids: &[i64]) -> Vec<u8> {
    let input: Vec<Value> = ids.iter().map(|id| json!({ "id": id })).collect();
    json!({ "input": input }).to_string().into_bytes()
}

#[cfg(test)]
mod erase_tests {
    use super::*;

    #[test]
    fn lookups_encode_their_values_and_deletions_name_ids() {
        assert_eq!(
            get_leads_path("email", "lena+vip@example.org"),
            "/rest/v1/leads.json?filterType=email&filterValues=lena%2Bvip%40example.org&fields=id"
        );
        assert_eq!(
            get_leads_path("nudgeId", "a,b"),
            "/rest/v1/leads.json?filterType=nudgeId&filterValues=a%2Cb&fields=id"
        );
        assert_eq!(delete_leads_body(&[318581, 7]), br#"{"input":[{"id":318581},{"id":7}]}"#.to_vec());
    }
}
