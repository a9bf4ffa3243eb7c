//! What the fake Klaviyo keeps: profiles (upserted by email, phone number or external id, properties
//! merged), events (deduplicated on profile + metric + unique id, as Klaviyo documents) and lists with
//! their members (profile ids, each at most once). Requests have
//! been validated by `rules` before they get here, so this module only applies them.

use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use time::OffsetDateTime;

/// A profile as the fake stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredProfile {
    /// The fake's own profile id, returned as `data.id`.
    pub id: String,
    /// Stored lower-cased, as Klaviyo normalises addresses.
    pub email: Option<String>,
    pub phone_number: Option<String>,
    pub external_id: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    /// Custom properties, merged across upserts.
    pub properties: Map<String, Value>,
    /// Other standard attributes (organization, locale, location, …) as last sent.
    pub other: Map<String, Value>,
    pub created: OffsetDateTime,
    pub updated: OffsetDateTime,
    /// How many profile-import calls updated (rather than created) this profile.
    pub update_count: u32,
}

/// An event as the fake stores it.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredEvent {
    /// The id of the profile the event was attached to (created on the fly if it did not exist).
    pub profile_id: String,
    pub metric: String,
    pub unique_id: Option<String>,
    pub properties: Map<String, Value>,
    pub value: Option<Value>,
    pub value_currency: Option<String>,
    /// The `time` attribute as sent, if any.
    pub time: Option<String>,
    /// The profile identifiers the event named, as sent.
    pub profile: Map<String, Value>,
    pub received_at: OffsetDateTime,
}

/// Whether a profile-import created or updated a profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Upserted {
    Created,
    Updated,
}

/// Several stored profiles match the identifiers of one request.
#[derive(Debug)]
pub(crate) struct Conflict;

#[derive(Debug, Default)]
pub(crate) struct Store {
    pub(crate) profiles: Vec<StoredProfile>,
    pub(crate) events: Vec<StoredEvent>,
    /// (profile id, metric name, unique id) of every stored event, for deduplication.
    event_keys: HashSet<(String, String, String)>,
    /// Profile indices by identifier, so lookups stay constant-time when a benchmark stores many profiles.
    by_identifier: HashMap<(Ident, String), usize>,
    /// Lists by id, each with its members' profile ids in the order they were added.
    pub(crate) lists: BTreeMap<String, Vec<String>>,
}

/// The identifiers a profile can be found by.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Ident {
    Id,
    Email,
    Phone,
    External,
}

fn identifiers(p: &StoredProfile) -> Vec<(Ident, String)> {
    let mut v = vec![(Ident::Id, p.id.clone())];
    v.extend(p.email.clone().map(|e| (Ident::Email, e)));
    v.extend(p.phone_number.clone().map(|e| (Ident::Phone, e)));
    v.extend(p.external_id.clone().map(|e| (Ident::External, e)));
    v
}

fn text(attrs: &Map<String, Value>, key: &str) -> Option<String> {
    attrs.get(key).and_then(Value::as_str).map(str::trim).filter(|s| !s.is_empty()).map(str::to_string)
}

impl Store {
    /// Indices of the stored profiles any identifier in `attrs` (or the profile id) points at.
    fn matching(&self, id: Option<&str>, attrs: &Map<String, Value>) -> Vec<usize> {
        let email = text(attrs, "email").map(|e| e.to_lowercase());
        let phone = text(attrs, "phone_number");
        let external = text(attrs, "external_id");
        let wanted = [
            id.map(|i| (Ident::Id, i.to_string())),
            email.map(|e| (Ident::Email, e)),
            phone.map(|p| (Ident::Phone, p)),
            external.map(|e| (Ident::External, e)),
        ];
        let mut found: Vec<usize> =
            wanted.into_iter().flatten().filter_map(|k| self.by_identifier.get(&k).copied()).collect();
        found.sort_unstable();
        found.dedup();
        found
    }

    fn unindex(&mut self, index: usize) {
        for k in identifiers(&self.profiles[index]) {
            if self.by_identifier.get(&k) == Some(&index) {
                self.by_identifier.remove(&k);
            }
        }
    }

    fn index(&mut self, index: usize) {
        for k in identifiers(&self.profiles[index]) {
            self.by_identifier.insert(k, index);
        }
    }

    fn create(&mut self, attrs: &Map<String, Value>, now: OffsetDateTime) -> usize {
        self.profiles.push(StoredProfile {
            id: new_profile_id(),
            email: None,
            phone_number: None,
            external_id: None,
            first_name: None,
            last_name: None,
            properties: Map::new(),
            other: Map::new(),
            created: now,
            updated: now,
            update_count: 0,
        });
        let index = self.profiles.len() - 1;
        apply_attributes(&mut self.profiles[index], attrs);
        self.index(index);
        index
    }

    /// Creates or updates the profile named by `attrs`, as `POST /api/profile-import` does.
    pub(crate) fn upsert_profile(
        &mut self,
        id: Option<&str>,
        attrs: &Map<String, Value>,
        now: OffsetDateTime,
    ) -> Result<(Upserted, StoredProfile), Conflict> {
        match self.matching(id, attrs).as_slice() {
            [] => {
                let index = self.create(attrs, now);
                Ok((Upserted::Created, self.profiles[index].clone()))
            }
            &[index] => {
                self.unindex(index);
                let profile = &mut self.profiles[index];
                apply_attributes(profile, attrs);
                profile.updated = now;
                profile.update_count += 1;
                let out = profile.clone();
                self.index(index);
                Ok((Upserted::Updated, out))
            }
            _ => Err(Conflict),
        }
    }

    /// The stored profile with this Klaviyo profile id.
    /// Deletes every profile matching the one identifier in `attrs` (`email`, `phone_number` or `id`), with
    /// its events and list memberships, as a data-privacy deletion job does; returns how many.
    pub(crate) fn delete_matching(&mut self, attrs: &Map<String, Value>) -> usize {
        let id = text(attrs, "id");
        let doomed: Vec<String> =
            self.matching(id.as_deref(), attrs).into_iter().map(|i| self.profiles[i].id.clone()).collect();
        if doomed.is_empty() {
            return 0;
        }
        self.profiles.retain(|p| !doomed.contains(&p.id));
        self.events.retain(|e| !doomed.contains(&e.profile_id));
        self.event_keys.retain(|(p, _, _)| !doomed.contains(p));
        for members in self.lists.values_mut() {
            members.retain(|m| !doomed.contains(m));
        }
        self.by_identifier.clear();
        for i in 0..self.profiles.len() {
            self.index(i);
        }
        doomed.len()
    }

    pub(crate) fn profile_by_id(&self, id: &str) -> Option<&StoredProfile> {
        self.by_identifier.get(&(Ident::Id, id.to_string())).map(|&i| &self.profiles[i])
    }

    /// Adds profiles to an existing list; members already there stay where they are.
    pub(crate) fn add_to_list(&mut self, list_id: &str, profile_ids: &[&str]) {
        if let Some(members) = self.lists.get_mut(list_id) {
            for id in profile_ids {
                if !members.iter().any(|m| m == id) {
                    members.push((*id).to_string());
                }
            }
        }
    }

    /// Removes profiles from an existing list; ids that are not members are ignored.
    pub(crate) fn remove_from_list(&mut self, list_id: &str, profile_ids: &[&str]) {
        if let Some(members) = self.lists.get_mut(list_id) {
            members.retain(|m| !profile_ids.contains(&m.as_str()));
        }
    }

    /// Stores an event unless one with the same profile, metric and unique id exists; returns whether it
    /// was stored. Without a unique id the event time to the second is the key, as Klaviyo documents.
    pub(crate) fn add_event(&mut self, attrs: &Map<String, Value>, now: OffsetDateTime) -> bool {
        let profile_attrs = attrs
            .get("profile")
            .and_then(|p| p.pointer("/data/attributes"))
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let profile_id = attrs.get("profile").and_then(|p| p.pointer("/data/id")).and_then(Value::as_str);
        let matches = self.matching(profile_id, &profile_attrs);
        let index = match matches.first() {
            Some(index) => *index,
            None => self.create(&profile_attrs, now),
        };
        let profile_id = self.profiles[index].id.clone();
        let metric = attrs
            .get("metric")
            .and_then(|m| m.pointer("/data/attributes/name"))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        let unique_id = attrs.get("unique_id").and_then(Value::as_str).map(str::to_string);
        let time = attrs.get("time").and_then(Value::as_str).map(str::to_string);
        let dedupe = unique_id.clone().unwrap_or_else(|| {
            let received = now.replace_nanosecond(0).unwrap_or(now).unix_timestamp().to_string();
            time.as_deref().map(|t| t.chars().take(19).collect()).unwrap_or(received)
        });
        if !self.event_keys.insert((profile_id.clone(), metric.clone(), dedupe)) {
            return false;
        }
        self.events.push(StoredEvent {
            profile_id,
            metric,
            unique_id,
            properties: attrs.get("properties").and_then(Value::as_object).cloned().unwrap_or_default(),
            value: attrs.get("value").cloned(),
            value_currency: attrs.get("value_currency").and_then(Value::as_str).map(str::to_string),
            time,
            profile: profile_attrs,
            received_at: now,
        });
        true
    }
}

/// Sets what `attrs` names on `profile`: `null` clears a field, an absent key leaves it alone, and
/// properties are merged key by key.
fn apply_attributes(profile: &mut StoredProfile, attrs: &Map<String, Value>) {
    for (key, value) in attrs {
        let as_text = value.as_str().map(str::to_string);
        match key.as_str() {
            "email" => profile.email = as_text.map(|e| e.trim().to_lowercase()),
            "phone_number" => profile.phone_number = as_text,
            "external_id" => profile.external_id = as_text,
            "first_name" => profile.first_name = as_text,
            "last_name" => profile.last_name = as_text,
            "properties" => {
                if let Value::Object(props) = value {
                    for (k, v) in props {
                        profile.properties.insert(k.clone(), v.clone());
                    }
                }
            }
            _ if value.is_null() => {
                profile.other.remove(key);
            }
            _ => {
                profile.other.insert(key.clone(), value.clone());
            }
        }
    }
}

/// A fresh id shaped like Klaviyo's (26 upper-case alphanumerics).
fn new_profile_id() -> String {
    let hex = uuid::Uuid::now_v7().simple().to_string().to_uppercase();
    format!("01{}", &hex[..24])
}

/// The JSON:API resource returned for a stored profile.
pub(crate) fn profile_resource(p: &StoredProfile, base: &str) -> Value {
    let fmt =
        |t: OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let mut attributes = Map::new();
    attributes.insert("email".into(), p.email.clone().map_or(Value::Null, Value::String));
    attributes.insert("phone_number".into(), p.phone_number.clone().map_or(Value::Null, Value::String));
    attributes.insert("external_id".into(), p.external_id.clone().map_or(Value::Null, Value::String));
    attributes.insert("first_name".into(), p.first_name.clone().map_or(Value::Null, Value::String));
    attributes.insert("last_name".into(), p.last_name.clone().map_or(Value::Null, Value::String));
    for (k, v) in &p.other {
        attributes.insert(k.clone(), v.clone());
    }
    attributes.insert("created".into(), Value::String(fmt(p.created)));
    attributes.insert("updated".into(), Value::String(fmt(p.updated)));
    attributes.insert("properties".into(), Value::Object(p.properties.clone()));
    serde_json::json!({"data": {
        "type": "profile",
        "id": p.id,
        "attributes": attributes,
        "links": {"self": format!("{base}/api/profiles/{}/", p.id)}
    }})
}
