//! Klaviyo request bodies: how an [`Action`] becomes a JSON:API document for `POST /api/profile-import`,
//! `POST /api/events` or the list-membership endpoint, how many profile upserts are packed into bulk
//! profile import jobs ([`bulk_profile`], [`bulk_import_jobs`]), and the documented limits checked before
//! anything is sent. Pure functions only: no HTTP, no clock reads (the caller passes "now"), so every rule is
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
/// Most profiles one bulk profile import job may carry.
pub const MAX_BULK_PROFILES: usize = 10_000;
/// Largest bulk profile import job body, in bytes ("5 MB", read strictly).
pub const MAX_BULK_BODY_BYTES: usize = 5_000_000;
/// Largest single profile inside a bulk import job, in bytes ("100 KB", read strictly).
pub const MAX_BULK_PROFILE_BYTES: usize = 100_000;

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
    /// `POST /api/profile-bulk-import-jobs` (`bulk_import_profiles`).
    BulkImportJobs,
    /// `GET /api/profile-bulk-import-jobs/{id}` (`get_bulk_import_profiles_job`).
    BulkImportJob,
    /// `GET /api/profile-bulk-import-jobs/{id}/import-errors` (`get_errors_for_bulk_import_profiles_job`).
    BulkImportErrors,
    /// `POST /api/data-privacy-deletion-jobs` (`request_profile_deletion`).
    DataPrivacyDeletionJobs,
}

impl Endpoint {
    /// The path; for the list endpoints the template, with `{id}` where the list id goes.
    pub fn path(self) -> &'static str {
        match self {
            Endpoint::ProfileImport => "/api/profile-import",
            Endpoint::Events => "/api/events",
            Endpoint::AddToList | Endpoint::RemoveFromList => "/api/lists/{id}/relationships/profiles",
            Endpoint::BulkImportJobs => "/api/profile-bulk-import-jobs",
            Endpoint::BulkImportJob => "/api/profile-bulk-import-jobs/{id}",
            Endpoint::BulkImportErrors => "/api/profile-bulk-import-jobs/{id}/import-errors",
            Endpoint::DataPrivacyDeletionJobs => "/api/data-privacy-deletion-jobs",
        }
    }

    pub fn method(self) -> &'static str {
        match self {
            Endpoint::ProfileImport
            | Endpoint::Events
            | Endpoint::AddToList
            | Endpoint::BulkImportJobs
            | Endpoint::DataPrivacyDeletionJobs => "POST",
            Endpoint::RemoveFromList => "DELETE",
            Endpoint::BulkImportJob | Endpoint::BulkImportErrors => "GET",
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
            Endpoint::BulkImportJobs => "POST /api/profile-bulk-import-jobs",
            Endpoint::BulkImportJob => "GET /api/profile-bulk-import-jobs/{id}",
            Endpoint::BulkImportErrors => "GET /api/profile-bulk-import-jobs/{id}/import-errors",
            Endpoint::DataPrivacyDeletionJobs => "POST /api/data-privacy-deletion-jobs",
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

/// The deletion job for one person (`request_profile_deletion`). Klaviyo takes exactly one identifier
/// (email, phone number or profile id; more than one is an error) and deletes every profile it matches,
/// asynchronously, answering 202. The email is used when there is one, the phone number otherwise.
pub fn deletion_job(subject: &crate::ErasureSubject) -> Result<KlaviyoRequest, DeliverError> {
    let email = subject.email.as_deref().map(str::trim).filter(|e| !e.is_empty());
    let phone = subject.phone.as_deref().map(str::trim).filter(|p| !p.is_empty());
    let attributes = match (email, phone) {
        (Some(email), _) => json!({"email": email}),
        (None, Some(phone)) => json!({"phone_number": phone}),
        (None, None) => {
            return Err(invalid(
                "a Klaviyo deletion needs the person's email or phone number; neither is known",
            ));
        }
    };
    let body = serialize(&json!({"data": {
        "type": "data-privacy-deletion-job",
        "attributes": {"profile": {"data": {"type": "profile", "attributes": attributes}}},
    }}))?;
    Ok(KlaviyoRequest::fixed(Endpoint::DataPrivacyDeletionJobs, body))
}

/// Builds the request for `action`, or explains which documented limit it breaks.
pub fn build(action: &Action, now: OffsetDateTime) -> Result<KlaviyoRequest, DeliverError> {
    match action {
        Action::UpsertProfile { .. } => {
            let body = serialize(&json!({"data": profile_resource(action)?}))?;
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

/// The profile resource (`{"type":"profile","attributes":{…}}`) an [`Action::UpsertProfile`] writes: the
/// `data` of a profile-import, and one entry of a bulk import job.
fn profile_resource(action: &Action) -> Result<Value, DeliverError> {
    let Action::UpsertProfile { customer, email, first_name, last_name, attributes } = action else {
        return Err(invalid(format!("a {} action is not a profile upsert", action.kind())));
    };
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
    Ok(json!({"type": "profile", "attributes": attrs}))
}

/// One profile ready for a bulk import job: the serialised profile resource, with the identifiers an
/// import error is matched back by.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkProfile {
    /// `{"type":"profile","attributes":{…}}`, exactly as it goes into `profiles.data`.
    pub json: Vec<u8>,
    /// The `external_id` sent (nudge's customer id).
    pub external_id: String,
    /// The email sent, lower-cased, if any.
    pub email: Option<String>,
}

/// Checks an [`Action::UpsertProfile`] for a bulk import job: the same rules as for profile-import, and
/// at most [`MAX_BULK_PROFILE_BYTES`] serialised.
pub fn bulk_profile(action: &Action) -> Result<BulkProfile, DeliverError> {
    let resource = profile_resource(action)?;
    let json = serialize(&resource)?;
    if json.len() > MAX_BULK_PROFILE_BYTES {
        return Err(invalid(format!(
            "profile is {} bytes; Klaviyo accepts at most {MAX_BULK_PROFILE_BYTES} per profile in a bulk import",
            json.len()
        )));
    }
    let text = |key: &str| resource.pointer(&format!("/attributes/{key}")).and_then(Value::as_str);
    Ok(BulkProfile {
        external_id: text("external_id").unwrap_or_default().to_string(),
        email: text("email").map(str::to_lowercase),
        json,
    })
}

/// One bulk import job to create: the request, and which of the caller's records it carries, in order.
#[derive(Debug, Clone, PartialEq)]
pub struct BulkJob {
    pub request: KlaviyoRequest,
    /// Indices (into the caller's list) of the profiles in `profiles.data`, in the same order.
    pub records: Vec<usize>,
}

const BULK_JOB_HEAD: &[u8] =
    br#"{"data":{"type":"profile-bulk-import-job","attributes":{"profiles":{"data":["#;
const BULK_JOB_TAIL: &[u8] = b"]}}}}";

/// Packs `profiles` (record index, checked profile), in order, into as few bulk import job bodies as
/// the limits allow: at most `max_profiles` (itself at most [`MAX_BULK_PROFILES`]) profiles and at most
/// [`MAX_BULK_BODY_BYTES`] per body. Every profile fits in a job of its own, since each passed
/// [`bulk_profile`].
pub fn bulk_import_jobs(profiles: &[(usize, BulkProfile)], max_profiles: usize) -> Vec<BulkJob> {
    let max_profiles = max_profiles.clamp(1, MAX_BULK_PROFILES);
    let frame = BULK_JOB_HEAD.len() + BULK_JOB_TAIL.len();
    let mut jobs = Vec::new();
    let mut body: Vec<u8> = Vec::new();
    let mut records: Vec<usize> = Vec::new();
    let finish = |body: &mut Vec<u8>, records: &mut Vec<usize>, jobs: &mut Vec<BulkJob>| {
        if records.is_empty() {
            return;
        }
        let mut bytes = Vec::with_capacity(body.len() + frame);
        bytes.extend_from_slice(BULK_JOB_HEAD);
        bytes.append(body);
        bytes.extend_from_slice(BULK_JOB_TAIL);
        jobs.push(BulkJob {
            request: KlaviyoRequest::fixed(Endpoint::BulkImportJobs, bytes),
            records: std::mem::take(records),
        });
    };
    for (index, profile) in profiles {
        let separator = usize::from(!records.is_empty());
        let grown = frame + body.len() + separator + profile.json.len();
        if records.len() == max_profiles || (grown > MAX_BULK_BODY_BYTES && !records.is_empty()) {
            finish(&mut body, &mut records, &mut jobs);
        }
        if !records.is_empty() {
            body.push(b',');
        }
        body.extend_from_slice(&profile.json);
        records.push(*index);
    }
    finish(&mut body, &mut records, &mut jobs);
    jobs
}

/// `GET /api/profile-bulk-import-jobs/{id}`, for polling a job's status.
pub fn bulk_job_status(job_id: &str) -> Result<KlaviyoRequest, DeliverError> {
    let endpoint = Endpoint::BulkImportJob;
    Ok(KlaviyoRequest {
        endpoint,
        path: endpoint.path().replace("{id}", &path_segment(checked_job_id(job_id)?)),
        body: Vec::new(),
    })
}

/// The first page of `GET /api/profile-bulk-import-jobs/{id}/import-errors`, 100 errors per page (the
/// most Klaviyo allows); later pages follow the answer's `links.next`.
pub fn bulk_job_errors(job_id: &str) -> Result<KlaviyoRequest, DeliverError> {
    let endpoint = Endpoint::BulkImportErrors;
    let path = endpoint.path().replace("{id}", &path_segment(checked_job_id(job_id)?));
    Ok(KlaviyoRequest { endpoint, path: format!("{path}?page[size]=100"), body: Vec::new() })
}

/// A job id as Klaviyo hands them out (letters and digits); anything else could change the path.
fn checked_job_id(job_id: &str) -> Result<&str, DeliverError> {
    let ok = !job_id.is_empty()
        && job_id.len() <= 128
        && job_id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
    if ok {
        Ok(job_id)
    } else {
        Err(invalid("Klaviyo answered with a bulk import job id that is not usable"))
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
        // Klaviyo profile properties take arrays and objects as they are.
        AttrValue::Json(v) => v.clone(),
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

    fn numbered(n: usize, notes: usize) -> Action {
        Action::UpsertProfile {
            customer: format!("shopify:{n}").parse().unwrap(),
            email: Some(format!("C{n}@Example.org")),
            first_name: None,
            last_name: None,
            attributes: BTreeMap::from([("ai_notes".to_string(), AttrValue::Text("x".repeat(notes)))]),
        }
    }

    #[test]
    fn a_bulk_profile_is_the_profile_import_resource_with_its_identifiers() {
        let p = bulk_profile(&profile(BTreeMap::new())).unwrap();
        let resource: Value = serde_json::from_slice(&p.json).unwrap();
        assert_eq!(resource, body(&build(&profile(BTreeMap::new()), NOW).unwrap())["data"]);
        assert_eq!(
            (p.external_id.as_str(), p.email.as_deref()),
            ("shopify:880012", Some("lena@example.org"))
        );
        let err = bulk_profile(&numbered(1, MAX_BULK_PROFILE_BYTES)).unwrap_err();
        assert!(err.to_string().contains("per profile in a bulk import"), "{err}");
        assert!(bulk_profile(&list_action(true, "Xy12Ab")).is_err());
    }

    #[test]
    fn bulk_jobs_split_by_count_and_by_bytes_keeping_the_order() {
        let profiles: Vec<(usize, BulkProfile)> =
            (0..25).map(|i| (i * 2, bulk_profile(&numbered(i, 10)).unwrap())).collect();
        let jobs = bulk_import_jobs(&profiles, 10);
        assert_eq!(jobs.iter().map(|j| j.records.len()).collect::<Vec<_>>(), vec![10, 10, 5]);
        assert_eq!(
            jobs.iter().flat_map(|j| j.records.clone()).collect::<Vec<_>>(),
            (0..25).map(|i| i * 2).collect::<Vec<_>>()
        );
        let doc: Value = serde_json::from_slice(&jobs[2].request.body).unwrap();
        assert_eq!(doc["data"]["type"], "profile-bulk-import-job");
        let sent = doc["data"]["attributes"]["profiles"]["data"].as_array().unwrap();
        assert_eq!(sent.len(), 5);
        assert_eq!(sent[0]["attributes"]["external_id"], "shopify:20");
        assert_eq!(
            (jobs[0].request.endpoint, jobs[0].request.path.as_str()),
            (Endpoint::BulkImportJobs, "/api/profile-bulk-import-jobs")
        );
        assert_eq!(bulk_import_jobs(&profiles, 50_000).len(), 1, "the count is capped at 10,000, not above");
        assert!(bulk_import_jobs(&[], 10).is_empty());

        // ~90 KB profiles: 55 fit in 5 MB; every body stays within it.
        let big: Vec<(usize, BulkProfile)> =
            (0..120).map(|i| (i, bulk_profile(&numbered(i, 90_000)).unwrap())).collect();
        let jobs = bulk_import_jobs(&big, MAX_BULK_PROFILES);
        assert_eq!(jobs.iter().map(|j| j.records.len()).sum::<usize>(), 120);
        assert_eq!(jobs.len(), 3);
        for job in &jobs {
            assert!(job.request.body.len() <= MAX_BULK_BODY_BYTES, "{}", job.request.body.len());
            let doc: Value = serde_json::from_slice(&job.request.body).unwrap();
            assert_eq!(
                doc["data"]["attributes"]["profiles"]["data"].as_array().unwrap().len(),
                job.records.len()
            );
        }
        // A job filled to the byte: one more profile would cross 5 MB.
        let first = &jobs[0];
        assert!(first.request.body.len() + 1 + big[first.records.len()].1.json.len() > MAX_BULK_BODY_BYTES);
    }

    #[test]
    fn job_paths_take_only_plain_ids() {
        assert_eq!(bulk_job_status("01JOB").unwrap().path, "/api/profile-bulk-import-jobs/01JOB");
        let errors = bulk_job_errors("01JOB").unwrap();
        assert_eq!(
            (errors.endpoint.method(), errors.path.as_str()),
            ("GET", "/api/profile-bulk-import-jobs/01JOB/import-errors?page[size]=100")
        );
        for bad in ["", "../x", "a/b", "a?b", "a b"] {
            assert!(bulk_job_status(bad).is_err() && bulk_job_errors(bad).is_err(), "{bad:?}");
        }
    }
}
