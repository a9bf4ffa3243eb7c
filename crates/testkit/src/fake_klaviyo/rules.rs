//! The contract the fake Klaviyo enforces, as pure checks: request headers, body limits, the JSON:API
//! schema of `POST /api/profile-import`, `POST /api/events`, the list-membership body and
//! `POST /api/profile-bulk-import-jobs`, and the
//! fixed-window rate limits. Each
//! failure carries the status and JSON:API error Klaviyo would answer with. Storing what passed is in
//! `store`; the HTTP plumbing is in the module root.

use axum::http::HeaderMap;
use serde_json::{Map, Value, json};
use std::time::Duration;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::time::Instant;

/// Largest profile-import body ("100 KB", read strictly).
pub const MAX_PROFILE_BODY_BYTES: usize = 100_000;
/// Largest event body ("5 MB", read strictly).
pub const MAX_EVENT_BODY_BYTES: usize = 5_000_000;
/// Longest string anywhere in event properties ("100 KB", read strictly).
pub const MAX_STRING_BYTES: usize = 100_000;
pub const MAX_METRIC_NAME_CHARS: usize = 128;
pub const MAX_EVENT_PROPERTIES: usize = 400;
/// Most profiles one list-membership call may name ("a maximum of 1000 profiles per call").
pub const MAX_LIST_PROFILES: usize = 1000;
pub const JSON_API: &str = "application/vnd.api+json";
/// Most profiles one bulk profile import job may carry.
pub const MAX_BULK_PROFILES: usize = 10_000;
/// Largest bulk profile import job body ("5 MB", read strictly).
pub const MAX_BULK_BODY_BYTES: usize = 5_000_000;
/// Largest single profile inside a bulk import job ("100 KB", read strictly).
pub const MAX_BULK_PROFILE_BYTES: usize = 100_000;

/// One JSON:API error response.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ApiError {
    pub(crate) status: u16,
    pub(crate) code: &'static str,
    pub(crate) title: &'static str,
    pub(crate) detail: String,
    pub(crate) pointer: Option<String>,
    /// Whole seconds for the `Retry-After` header of a 429.
    pub(crate) retry_after: Option<u64>,
}

impl ApiError {
    pub(crate) fn new(
        status: u16,
        code: &'static str,
        title: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        ApiError { status, code, title, detail: detail.into(), pointer: None, retry_after: None }
    }

    pub(crate) fn invalid(detail: impl Into<String>, pointer: impl Into<String>) -> Self {
        ApiError { pointer: Some(pointer.into()), ..Self::new(400, "invalid", "Invalid input.", detail) }
    }

    /// `{"errors":[{"id","status","code","title","detail","source":{"pointer"}}]}`.
    pub(crate) fn body(&self) -> Value {
        let mut error = json!({
            "id": uuid::Uuid::new_v4().to_string(),
            "status": self.status,
            "code": self.code,
            "title": self.title,
            "detail": self.detail,
        });
        if let Some(pointer) = &self.pointer {
            error["source"] = json!({"pointer": pointer});
        }
        json!({"errors": [error]})
    }
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// Checks `Authorization: Klaviyo-API-Key <key>`.
pub(crate) fn check_auth(headers: &HeaderMap, api_key: &str) -> Result<(), ApiError> {
    let Some(value) = header(headers, "authorization") else {
        return Err(ApiError::new(
            401,
            "not_authenticated",
            "Authentication credentials were not provided.",
            "Missing `Authorization: Klaviyo-API-Key <private key>` header.",
        ));
    };
    match value.strip_prefix("Klaviyo-API-Key ") {
        Some(key) if key == api_key => Ok(()),
        Some(_) => Err(ApiError::new(
            401,
            "authentication_failed",
            "Incorrect authentication credentials.",
            "The private API key is not valid.",
        )),
        None => Err(ApiError::new(
            401,
            "not_authenticated",
            "Authentication credentials were not provided.",
            "The Authorization header must use the `Klaviyo-API-Key` scheme.",
        )),
    }
}

/// Checks the `revision` header: present, shaped like a revision, and the pinned one when pinned.
pub(crate) fn check_revision(headers: &HeaderMap, pinned: Option<&str>) -> Result<(), ApiError> {
    let Some(revision) = header(headers, "revision") else {
        return Err(ApiError::new(400, "invalid", "Invalid input.", "The `revision` header is required."));
    };
    let date = revision.strip_suffix(".pre").unwrap_or(revision);
    let shaped = date.len() == 10
        && date
            .bytes()
            .enumerate()
            .all(|(i, c)| if i == 4 || i == 7 { c == b'-' } else { c.is_ascii_digit() });
    if !shaped {
        return Err(ApiError::new(
            400,
            "invalid",
            "Invalid input.",
            format!("`{revision}` is not a valid revision."),
        ));
    }
    if let Some(pinned) = pinned
        && revision != pinned
    {
        return Err(ApiError::new(
            400,
            "invalid",
            "Invalid input.",
            format!("This fake serves revision {pinned}; the request asked for {revision}."),
        ));
    }
    Ok(())
}

fn media_type(value: &str) -> String {
    value.split(';').next().unwrap_or_default().trim().to_ascii_lowercase()
}

/// Checks `Accept` includes the JSON:API media type (for requests without a body).
pub(crate) fn check_accept(headers: &HeaderMap) -> Result<(), ApiError> {
    let accepts =
        header(headers, "accept").is_some_and(|a| a.split(',').any(|part| media_type(part) == JSON_API));
    if accepts {
        Ok(())
    } else {
        Err(ApiError::new(
            406,
            "not_acceptable",
            "Could not satisfy the request Accept header.",
            format!("Accept must include `{JSON_API}`."),
        ))
    }
}

/// Checks `Content-Type` and `Accept` are the JSON:API media type.
pub(crate) fn check_media_types(headers: &HeaderMap) -> Result<(), ApiError> {
    let content_type = header(headers, "content-type").map(media_type);
    if content_type.as_deref() != Some(JSON_API) {
        return Err(ApiError::new(
            415,
            "unsupported_media_type",
            "Unsupported media type.",
            format!(
                "Content-Type must be `{JSON_API}`, not `{}`.",
                content_type.as_deref().unwrap_or("(missing)")
            ),
        ));
    }
    let accepts =
        header(headers, "accept").is_some_and(|a| a.split(',').any(|part| media_type(part) == JSON_API));
    if !accepts {
        return Err(ApiError::new(
            406,
            "not_acceptable",
            "Could not satisfy the request Accept header.",
            format!("Accept must include `{JSON_API}`."),
        ));
    }
    Ok(())
}

/// Parses the body as a JSON object.
pub(crate) fn parse_document(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err(ApiError::invalid("The request body must be a JSON object.", "/")),
        Err(e) => {
            Err(ApiError::new(400, "parse_error", "Malformed request.", format!("JSON parse error: {e}")))
        }
    }
}

fn object<'a>(
    value: Option<&'a Value>,
    pointer: &str,
    what: &str,
) -> Result<&'a Map<String, Value>, ApiError> {
    match value {
        Some(Value::Object(map)) => Ok(map),
        Some(_) => Err(ApiError::invalid(format!("{what} must be an object."), pointer)),
        None => Err(ApiError::invalid(format!("{what} is required."), pointer)),
    }
}

fn reject_unknown(map: &Map<String, Value>, allowed: &[&str], pointer: &str) -> Result<(), ApiError> {
    match map.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(key) => {
            Err(ApiError::invalid(format!("`{key}` is not a valid field."), format!("{pointer}/{key}")))
        }
        None => Ok(()),
    }
}

fn check_type(data: &Map<String, Value>, expected: &str, pointer: &str) -> Result<(), ApiError> {
    match data.get("type").and_then(Value::as_str) {
        Some(t) if t == expected => Ok(()),
        Some(t) => {
            Err(ApiError::invalid(format!("`{t}` is not a valid type; expected `{expected}`."), pointer))
        }
        None => Err(ApiError::invalid(format!("`type` is required and must be `{expected}`."), pointer)),
    }
}

fn check_optional_strings(attrs: &Map<String, Value>, keys: &[&str], pointer: &str) -> Result<(), ApiError> {
    for key in keys {
        if let Some(v) = attrs.get(*key)
            && !(v.is_string() || v.is_null())
        {
            return Err(ApiError::invalid(format!("`{key}` must be a string."), format!("{pointer}/{key}")));
        }
    }
    Ok(())
}

fn non_empty(attrs: &Map<String, Value>, key: &str) -> bool {
    attrs.get(key).and_then(Value::as_str).is_some_and(|s| !s.trim().is_empty())
}

/// Checks the shape of an email and an E.164 phone number when given.
fn check_identifiers(attrs: &Map<String, Value>, pointer: &str) -> Result<(), ApiError> {
    if let Some(email) = attrs.get("email").and_then(Value::as_str) {
        let ok =
            email.split_once('@').is_some_and(|(l, d)| !l.is_empty() && d.contains('.') && !d.contains('@'))
                && !email.contains(char::is_whitespace);
        if !ok {
            return Err(ApiError::invalid("Invalid email address.", format!("{pointer}/email")));
        }
    }
    if let Some(phone) = attrs.get("phone_number").and_then(Value::as_str) {
        let digits = phone.strip_prefix('+').unwrap_or("");
        if digits.len() < 8 || digits.len() > 15 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return Err(ApiError::invalid(
                "Invalid phone number format (E.164 expected).",
                format!("{pointer}/phone_number"),
            ));
        }
    }
    Ok(())
}

const PROFILE_ATTRIBUTES: &[&str] = &[
    "email",
    "phone_number",
    "external_id",
    "_kx",
    "first_name",
    "last_name",
    "organization",
    "locale",
    "title",
    "image",
    "location",
    "properties",
];
const PROFILE_STRING_ATTRIBUTES: &[&str] = &[
    "email",
    "phone_number",
    "external_id",
    "_kx",
    "first_name",
    "last_name",
    "organization",
    "locale",
    "title",
    "image",
];

/// A checked profile-import: the optional profile id and the attributes to apply.
pub(crate) struct ProfileImport<'a> {
    pub(crate) id: Option<&'a str>,
    pub(crate) attributes: &'a Map<String, Value>,
}

/// Checks a `POST /api/profile-import` document.
pub(crate) fn check_profile_import(doc: &Map<String, Value>) -> Result<ProfileImport<'_>, ApiError> {
    reject_unknown(doc, &["data"], "")?;
    let data = object(doc.get("data"), "/data", "`data`")?;
    check_profile_data(data, "/data")
}

/// Checks one profile resource (`ProfileUpsertQueryResourceObject`) found at `at`: the `data` of a
/// profile-import, or one entry of a bulk import job's `profiles.data`.
fn check_profile_data<'a>(data: &'a Map<String, Value>, at: &str) -> Result<ProfileImport<'a>, ApiError> {
    reject_unknown(data, &["type", "id", "attributes", "meta"], at)?;
    check_type(data, "profile", &format!("{at}/type"))?;
    let attrs_at = format!("{at}/attributes");
    let attrs = object(data.get("attributes"), &attrs_at, "`attributes`")?;
    reject_unknown(attrs, PROFILE_ATTRIBUTES, &attrs_at)?;
    check_optional_strings(attrs, PROFILE_STRING_ATTRIBUTES, &attrs_at)?;
    check_identifiers(attrs, &attrs_at)?;
    if let Some(props) = attrs.get("properties")
        && !(props.is_object() || props.is_null())
    {
        return Err(ApiError::invalid("`properties` must be an object.", format!("{attrs_at}/properties")));
    }
    if let Some(meta) = data.get("meta")
        && !meta.is_object()
    {
        return Err(ApiError::invalid("`meta` must be an object.", format!("{at}/meta")));
    }
    let id = match data.get("id") {
        None | Some(Value::Null) => None,
        Some(Value::String(id)) => Some(id.as_str()),
        Some(_) => return Err(ApiError::invalid("`id` must be a string.", format!("{at}/id"))),
    };
    if id.is_none() && !["email", "phone_number", "external_id"].iter().any(|k| non_empty(attrs, k)) {
        return Err(ApiError::invalid(
            "A profile needs at least one identifier: email, phone_number or external_id.",
            attrs_at,
        ));
    }
    Ok(ProfileImport { id, attributes: attrs })
}

/// A checked bulk profile import job: its profiles (each as sent) and the lists to add them to.
pub(crate) struct BulkImport<'a> {
    pub(crate) profiles: Vec<&'a Value>,
    pub(crate) lists: Vec<&'a str>,
}

/// Checks a `POST /api/profile-bulk-import-jobs` document (`ProfileImportJobCreateQuery`):
/// `data.type = "profile-bulk-import-job"`, 1–[`MAX_BULK_PROFILES`] profiles in
/// `data.attributes.profiles.data`, each shaped as for profile-import and at most
/// [`MAX_BULK_PROFILE_BYTES`] serialised (413 above), and optional `data.relationships.lists.data`.
pub(crate) fn check_bulk_import_job(doc: &Map<String, Value>) -> Result<BulkImport<'_>, ApiError> {
    reject_unknown(doc, &["data"], "")?;
    let data = object(doc.get("data"), "/data", "`data`")?;
    reject_unknown(data, &["type", "attributes", "relationships"], "/data")?;
    check_type(data, "profile-bulk-import-job", "/data/type")?;
    let attrs = object(data.get("attributes"), "/data/attributes", "`data.attributes`")?;
    reject_unknown(attrs, &["profiles"], "/data/attributes")?;
    let profiles = object(attrs.get("profiles"), "/data/attributes/profiles", "`profiles`")?;
    reject_unknown(profiles, &["data"], "/data/attributes/profiles")?;
    let items = match profiles.get("data") {
        Some(Value::Array(items)) => items,
        Some(_) => {
            return Err(ApiError::invalid(
                "`profiles.data` must be an array of profiles.",
                "/data/attributes/profiles/data",
            ));
        }
        None => {
            return Err(ApiError::invalid("`profiles.data` is required.", "/data/attributes/profiles/data"));
        }
    };
    if items.is_empty() {
        return Err(ApiError::invalid(
            "A job must carry at least one profile.",
            "/data/attributes/profiles/data",
        ));
    }
    if items.len() > MAX_BULK_PROFILES {
        return Err(ApiError::invalid(
            format!("A job may carry at most {MAX_BULK_PROFILES} profiles; got {}.", items.len()),
            "/data/attributes/profiles/data",
        ));
    }
    for (i, item) in items.iter().enumerate() {
        let at = format!("/data/attributes/profiles/data/{i}");
        let size = serde_json::to_vec(item).map_or(0, |b| b.len());
        if size > MAX_BULK_PROFILE_BYTES {
            return Err(ApiError {
                pointer: Some(at),
                ..ApiError::new(
                    413,
                    "request_too_large",
                    "Request entity too large.",
                    format!(
                        "A profile may be at most {MAX_BULK_PROFILE_BYTES} bytes; profile {i} is {size}."
                    ),
                )
            });
        }
        check_profile_data(object(Some(item), &at, "Each profile")?, &at)?;
    }
    let mut lists = Vec::new();
    if let Some(relationships) = data.get("relationships") {
        let relationships = object(Some(relationships), "/data/relationships", "`relationships`")?;
        reject_unknown(relationships, &["lists"], "/data/relationships")?;
        if let Some(l) = relationships.get("lists") {
            let l = object(Some(l), "/data/relationships/lists", "`lists`")?;
            let Some(Value::Array(entries)) = l.get("data") else {
                return Err(ApiError::invalid(
                    "`lists.data` must be an array.",
                    "/data/relationships/lists/data",
                ));
            };
            for (i, entry) in entries.iter().enumerate() {
                let at = format!("/data/relationships/lists/data/{i}");
                let entry = object(Some(entry), &at, "Each list")?;
                check_type(entry, "list", &format!("{at}/type"))?;
                match entry.get("id").and_then(Value::as_str) {
                    Some(id) if !id.trim().is_empty() => lists.push(id),
                    _ => return Err(ApiError::invalid("`id` is required.", format!("{at}/id"))),
                }
            }
        }
    }
    Ok(BulkImport { profiles: items.iter().collect(), lists })
}

const EVENT_ATTRIBUTES: &[&str] =
    &["properties", "time", "value", "value_currency", "unique_id", "metric", "profile", "backfill"];

/// Checks a `POST /api/events` document and returns its attributes.
pub(crate) fn check_event(
    doc: &Map<String, Value>,
    now: OffsetDateTime,
) -> Result<&Map<String, Value>, ApiError> {
    reject_unknown(doc, &["data"], "")?;
    let data = object(doc.get("data"), "/data", "`data`")?;
    reject_unknown(data, &["type", "attributes"], "/data")?;
    check_type(data, "event", "/data/type")?;
    let attrs = object(data.get("attributes"), "/data/attributes", "`data.attributes`")?;
    reject_unknown(attrs, EVENT_ATTRIBUTES, "/data/attributes")?;

    let properties = object(attrs.get("properties"), "/data/attributes/properties", "`properties`")?;
    if properties.len() > MAX_EVENT_PROPERTIES {
        return Err(ApiError::invalid(
            format!("An event may have at most {MAX_EVENT_PROPERTIES} properties; got {}.", properties.len()),
            "/data/attributes/properties",
        ));
    }
    for (key, value) in properties {
        check_strings(value, &format!("/data/attributes/properties/{key}"))?;
    }

    let metric = object(attrs.get("metric"), "/data/attributes/metric", "`metric`")?;
    let metric_data = object(metric.get("data"), "/data/attributes/metric/data", "`metric.data`")?;
    check_type(metric_data, "metric", "/data/attributes/metric/data/type")?;
    let metric_attrs = object(
        metric_data.get("attributes"),
        "/data/attributes/metric/data/attributes",
        "`metric.data.attributes`",
    )?;
    let name_pointer = "/data/attributes/metric/data/attributes/name";
    let name = match metric_attrs.get("name") {
        Some(Value::String(name)) if !name.trim().is_empty() => name,
        _ => return Err(ApiError::invalid("The metric name is required.", name_pointer)),
    };
    let chars = name.chars().count();
    if chars > MAX_METRIC_NAME_CHARS {
        return Err(ApiError::invalid(
            format!("The metric name may have at most {MAX_METRIC_NAME_CHARS} characters; got {chars}."),
            name_pointer,
        ));
    }

    let profile = object(attrs.get("profile"), "/data/attributes/profile", "`profile`")?;
    let profile_data = object(profile.get("data"), "/data/attributes/profile/data", "`profile.data`")?;
    check_type(profile_data, "profile", "/data/attributes/profile/data/type")?;
    let profile_attrs = object(
        profile_data.get("attributes"),
        "/data/attributes/profile/data/attributes",
        "`profile.data.attributes`",
    )?;
    check_identifiers(profile_attrs, "/data/attributes/profile/data/attributes")?;
    let identified = profile_data.get("id").and_then(Value::as_str).is_some()
        || ["email", "phone_number", "external_id", "anonymous_id", "_kx"]
            .iter()
            .any(|k| non_empty(profile_attrs, k));
    if !identified {
        return Err(ApiError::invalid(
            "The event's profile needs at least one identifier (email, phone_number, external_id, anonymous_id).",
            "/data/attributes/profile/data/attributes",
        ));
    }

    if let Some(time) = attrs.get("time") {
        let parsed = time.as_str().and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok());
        let Some(parsed) = parsed else {
            return Err(ApiError::invalid("`time` must be an ISO 8601 date-time.", "/data/attributes/time"));
        };
        if parsed < time::macros::datetime!(1990-01-01 00:00 UTC) || parsed > now + time::Duration::days(365)
        {
            return Err(ApiError::invalid(
                "`time` must be after 1990-01-01 and at most one year in the future.",
                "/data/attributes/time",
            ));
        }
    }
    if let Some(value) = attrs.get("value")
        && !value.is_number()
    {
        return Err(ApiError::invalid("`value` must be a number.", "/data/attributes/value"));
    }
    if let Some(currency) = attrs.get("value_currency") {
        let ok =
            currency.as_str().is_some_and(|c| c.len() == 3 && c.bytes().all(|b| b.is_ascii_alphabetic()));
        if !ok {
            return Err(ApiError::invalid(
                "`value_currency` must be an ISO 4217 code.",
                "/data/attributes/value_currency",
            ));
        }
    }
    if let Some(unique_id) = attrs.get("unique_id")
        && !unique_id.is_string()
    {
        return Err(ApiError::invalid("`unique_id` must be a string.", "/data/attributes/unique_id"));
    }
    if let Some(backfill) = attrs.get("backfill")
        && !backfill.is_boolean()
    {
        return Err(ApiError::invalid("`backfill` must be a boolean.", "/data/attributes/backfill"));
    }
    Ok(attrs)
}

/// Checks a list-membership document (`ListMembersAddQuery` / `ListMembersDeleteQuery`): exactly
/// `{"data":[{"type":"profile","id":"…"}, …]}` with 1–[`MAX_LIST_PROFILES`] members; returns the ids.
/// A `data-privacy-deletion-job` document: `data.type`, then `data.attributes.profile.data` of type
/// `profile` whose attributes hold exactly one identifier (`email`, `phone_number` or `id`). Returns those
/// attributes.
pub(crate) fn check_deletion_job(doc: &Map<String, Value>) -> Result<&Map<String, Value>, ApiError> {
    let data = doc
        .get("data")
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::invalid("`data` is required.", "/data"))?;
    if data.get("type").and_then(Value::as_str) != Some("data-privacy-deletion-job") {
        return Err(ApiError::invalid("`type` must be `data-privacy-deletion-job`.", "/data/type"));
    }
    let profile = data
        .get("attributes")
        .and_then(|a| a.get("profile"))
        .and_then(|p| p.get("data"))
        .and_then(Value::as_object)
        .ok_or_else(|| ApiError::invalid("`profile.data` is required.", "/data/attributes/profile/data"))?;
    if profile.get("type").and_then(Value::as_str) != Some("profile") {
        return Err(ApiError::invalid("`type` must be `profile`.", "/data/attributes/profile/data/type"));
    }
    let attrs = profile.get("attributes").and_then(Value::as_object).ok_or_else(|| {
        ApiError::invalid("`attributes` is required.", "/data/attributes/profile/data/attributes")
    })?;
    let given = ["email", "phone_number", "id"]
        .iter()
        .filter(|k| attrs.get(**k).and_then(Value::as_str).is_some_and(|v| !v.trim().is_empty()))
        .count();
    if given != 1 || attrs.len() != 1 {
        return Err(ApiError::invalid(
            "Exactly one of `email`, `phone_number` or `id` must be given.",
            "/data/attributes/profile/data/attributes",
        ));
    }
    Ok(attrs)
}

pub(crate) fn check_list_members(doc: &Map<String, Value>) -> Result<Vec<&str>, ApiError> {
    reject_unknown(doc, &["data"], "")?;
    let items = match doc.get("data") {
        Some(Value::Array(items)) => items,
        Some(_) => return Err(ApiError::invalid("`data` must be an array of profiles.", "/data")),
        None => return Err(ApiError::invalid("`data` is required.", "/data")),
    };
    if items.is_empty() {
        return Err(ApiError::invalid("`data` must name at least one profile.", "/data"));
    }
    if items.len() > MAX_LIST_PROFILES {
        return Err(ApiError::invalid(
            format!("At most {MAX_LIST_PROFILES} profiles may be given per call; got {}.", items.len()),
            "/data",
        ));
    }
    let mut ids = Vec::with_capacity(items.len());
    for (i, item) in items.iter().enumerate() {
        let at = format!("/data/{i}");
        let member = object(Some(item), &at, "Each member")?;
        reject_unknown(member, &["type", "id"], &at)?;
        check_type(member, "profile", &format!("{at}/type"))?;
        match member.get("id") {
            Some(Value::String(id)) if !id.trim().is_empty() => ids.push(id.as_str()),
            Some(Value::String(_)) | None => {
                return Err(ApiError::invalid("`id` is required.", format!("{at}/id")));
            }
            Some(_) => return Err(ApiError::invalid("`id` must be a string.", format!("{at}/id"))),
        }
    }
    Ok(ids)
}

fn check_strings(value: &Value, pointer: &str) -> Result<(), ApiError> {
    match value {
        Value::String(s) if s.len() > MAX_STRING_BYTES => Err(ApiError::invalid(
            format!("Strings may be at most {MAX_STRING_BYTES} bytes; got {}.", s.len()),
            pointer,
        )),
        Value::Array(items) => {
            items.iter().enumerate().try_for_each(|(i, v)| check_strings(v, &format!("{pointer}/{i}")))
        }
        Value::Object(map) => map.iter().try_for_each(|(k, v)| check_strings(v, &format!("{pointer}/{k}"))),
        _ => Ok(()),
    }
}

/// A per-endpoint limit in fixed windows, as Klaviyo counts: a short (burst) and a long (steady) one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FakeRateLimit {
    pub burst: u32,
    pub burst_window: Duration,
    pub steady: u32,
    pub steady_window: Duration,
}

impl FakeRateLimit {
    /// Klaviyo's shape: `burst_per_sec` per 1-second window and `steady_per_min` per 60-second window.
    pub const fn per_second_and_minute(burst_per_sec: u32, steady_per_min: u32) -> Self {
        FakeRateLimit {
            burst: burst_per_sec,
            burst_window: Duration::from_secs(1),
            steady: steady_per_min,
            steady_window: Duration::from_secs(60),
        }
    }
}

/// Counts requests in fixed windows that start when the fake started.
#[derive(Debug)]
pub(crate) struct WindowCounter {
    limit: u32,
    window: Duration,
    /// Index of the window `count` belongs to.
    current: u128,
    count: u32,
}

impl WindowCounter {
    fn new(limit: u32, window: Duration) -> Self {
        WindowCounter { limit, window: window.max(Duration::from_millis(1)), current: 0, count: 0 }
    }

    /// Seconds until the current window ends when it is full, after moving to the window of `now`.
    fn full(&mut self, since_start: Duration) -> Option<u64> {
        let index = since_start.as_nanos() / self.window.as_nanos();
        if index != self.current {
            self.current = index;
            self.count = 0;
        }
        if self.count < self.limit {
            return None;
        }
        let ends = self.window.as_nanos() * (index + 1);
        let left = Duration::from_nanos((ends - since_start.as_nanos()) as u64);
        Some(left.as_secs_f64().ceil().max(1.0) as u64)
    }
}

/// Both windows of one endpoint.
#[derive(Debug)]
pub(crate) struct EndpointLimiter {
    burst: WindowCounter,
    steady: WindowCounter,
}

impl EndpointLimiter {
    pub(crate) fn new(limit: FakeRateLimit) -> Self {
        EndpointLimiter {
            burst: WindowCounter::new(limit.burst, limit.burst_window),
            steady: WindowCounter::new(limit.steady, limit.steady_window),
        }
    }

    /// Counts one request, or answers the 429 Klaviyo would send when either window is full.
    pub(crate) fn admit(&mut self, epoch: Instant) -> Result<(), ApiError> {
        let since_start = Instant::now().saturating_duration_since(epoch);
        let wait = [self.burst.full(since_start), self.steady.full(since_start)].into_iter().flatten().max();
        if let Some(seconds) = wait {
            return Err(throttled(seconds));
        }
        self.burst.count += 1;
        self.steady.count += 1;
        Ok(())
    }
}

/// The 429 Klaviyo answers when throttling, with an integer `Retry-After`.
pub(crate) fn throttled(seconds: u64) -> ApiError {
    ApiError {
        retry_after: Some(seconds),
        ..ApiError::new(
            429,
            "throttled",
            "Request was throttled.",
            format!("Request was throttled. Expected available in {seconds} seconds."),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn fixed_windows_reset_and_report_the_wait() {
        let epoch = Instant::now();
        let mut limiter = EndpointLimiter::new(FakeRateLimit::per_second_and_minute(2, 3));
        limiter.admit(epoch).unwrap();
        limiter.admit(epoch).unwrap();
        tokio::time::advance(Duration::from_millis(300)).await;
        assert_eq!(limiter.admit(epoch).unwrap_err().retry_after, Some(1));
        tokio::time::advance(Duration::from_millis(700)).await;
        limiter.admit(epoch).unwrap();
        let err = limiter.admit(epoch).unwrap_err();
        assert_eq!((err.status, err.retry_after), (429, Some(59)));
        tokio::time::advance(Duration::from_secs(59)).await;
        limiter.admit(epoch).unwrap();
    }
}
