//! What the fake Marketo keeps: leads (with ids), custom activities and static-list membership.

use serde_json::{Map, Value};
use std::collections::BTreeMap;
use time::OffsetDateTime;

/// A lead as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredLead {
    pub id: i64,
    /// Field API names to values, as last synced (merged over earlier syncs).
    pub fields: Map<String, Value>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

impl StoredLead {
    pub fn email(&self) -> Option<&str> {
        self.fields.get("email").and_then(Value::as_str)
    }
}

/// A custom activity as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct StoredActivity {
    pub marketo_guid: String,
    pub lead_id: i64,
    pub activity_type_id: i64,
    pub activity_date: String,
    pub primary_attribute_value: String,
    /// The `attributes` array as sent.
    pub attributes: Vec<Value>,
}

#[derive(Debug, Default)]
pub(crate) struct Store {
    pub(crate) leads: Vec<StoredLead>,
    pub(crate) activities: Vec<StoredActivity>,
    /// Static lists by id: member lead ids in the order they were added.
    pub(crate) lists: BTreeMap<i64, Vec<i64>>,
    next_lead_id: i64,
}

/// Whether a sync created or updated the lead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Synced {
    Created,
    Updated,
}

fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => x.trim().eq_ignore_ascii_case(y.trim()),
        _ => a == b,
    }
}

impl Store {
    /// createOrUpdate on `lookup_field`; the record must carry it.
    pub(crate) fn upsert(
        &mut self,
        lookup_field: &str,
        record: &Map<String, Value>,
        now: OffsetDateTime,
    ) -> (Synced, i64) {
        let key = record.get(lookup_field).cloned().unwrap_or(Value::Null);
        if let Some(lead) =
            self.leads.iter_mut().find(|l| l.fields.get(lookup_field).is_some_and(|v| same_value(v, &key)))
        {
            lead.fields.extend(record.clone());
            lead.updated_at = now;
            return (Synced::Updated, lead.id);
        }
        if self.next_lead_id == 0 {
            self.next_lead_id = 318_581;
        }
        let id = self.next_lead_id;
        self.next_lead_id += 1;
        self.leads.push(StoredLead { id, fields: record.clone(), created_at: now, updated_at: now });
        (Synced::Created, id)
    }

    pub(crate) fn lead(&self, id: i64) -> Option<&StoredLead> {
        self.leads.iter().find(|l| l.id == id)
    }
}
