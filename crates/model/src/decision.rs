//! Decisions and the destination-neutral actions they carry. A destination (`deliver`) turns an
//! [`Action`] into its own request shape; nothing here knows Klaviyo or Braze.

use crate::Timestamp;
use crate::ids::{CustomerId, TraceId};
use crate::money::Money;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// A profile attribute value. Numbers are floats here because they are statistical outputs, not money.
/// `Json` holds an array or an object (the recommended products): a destination whose profiles take
/// structured values (Klaviyo properties, Braze custom attributes, webhooks) sends it as it is; one that
/// takes only scalars (HubSpot properties, Marketo fields) sends its JSON text.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(untagged)]
pub enum AttrValue {
    Number(f64),
    Text(String),
    Bool(bool),
    Json(serde_json::Value),
}

impl AttrValue {
    /// The value as a scalar text for a destination that takes no arrays or objects: a `Json` value's
    /// compact JSON text; `None` for the scalar variants, which each destination maps itself.
    pub fn json_text(&self) -> Option<String> {
        match self {
            AttrValue::Json(v) => Some(v.to_string()),
            _ => None,
        }
    }
}

// Written by hand rather than derived: an untagged derive buffers numbers in a way that breaks when
// serde_json keeps exact number text (its `arbitrary_precision` feature, which ingest relies on).
impl<'de> Deserialize<'de> for AttrValue {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match serde_json::Value::deserialize(d)? {
            serde_json::Value::Number(n) => n
                .as_f64()
                .map(AttrValue::Number)
                .ok_or_else(|| serde::de::Error::custom(format!("attribute number {n} is out of range"))),
            serde_json::Value::String(s) => Ok(AttrValue::Text(s)),
            serde_json::Value::Bool(b) => Ok(AttrValue::Bool(b)),
            v @ (serde_json::Value::Array(_) | serde_json::Value::Object(_)) => Ok(AttrValue::Json(v)),
            serde_json::Value::Null => Err(serde::de::Error::custom(
                "an attribute is a number, a string, a boolean, an array or an object, not null",
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attribute_values_round_trip_through_json() {
        let v = vec![AttrValue::Number(12.5), AttrValue::Text("loyal".into()), AttrValue::Bool(true)];
        let json = serde_json::to_string(&v).unwrap();
        assert_eq!(json, r#"[12.5,"loyal",true]"#);
        assert_eq!(serde_json::from_str::<Vec<AttrValue>>(&json).unwrap(), v);
        assert!(serde_json::from_str::<AttrValue>("null").is_err());
        let products = AttrValue::Json(serde_json::json!([{"id": "p1", "title": "Tee", "price": "24.90"}]));
        let json = serde_json::to_string(&products).unwrap();
        assert_eq!(json, r#"[{"id":"p1","price":"24.90","title":"Tee"}]"#);
        assert_eq!(serde_json::from_str::<AttrValue>(&json).unwrap(), products);
        assert_eq!(products.json_text().as_deref(), Some(json.as_str()));
        assert_eq!(AttrValue::Bool(true).json_text(), None);
    }

    #[test]
    fn list_actions_round_trip_and_name_their_kind() {
        let add = Action::AddToList {
            customer: "shopify:880012".parse().unwrap(),
            email: Some("lena@example.org".into()),
            list_id: "Xy12Ab".into(),
        };
        let json = serde_json::to_value(&add).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"kind": "add_to_list", "customer": "shopify:880012",
                "email": "lena@example.org", "list_id": "Xy12Ab"})
        );
        assert_eq!(serde_json::from_value::<Action>(json).unwrap(), add);
        let remove = Action::RemoveFromList {
            customer: "shopify:880012".parse().unwrap(),
            email: None,
            list_id: "Xy12Ab".into(),
        };
        assert_eq!(remove.kind(), "remove_from_list");
        assert_eq!(remove.list_id(), Some("Xy12Ab"));
        assert_eq!(remove.customer().to_string(), "shopify:880012");
        let back: Action = serde_json::from_str(&serde_json::to_string(&remove).unwrap()).unwrap();
        assert_eq!(back, remove);
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Action {
    /// Write (prefixed) attributes onto the customer's profile.
    UpsertProfile {
        customer: CustomerId,
        email: Option<String>,
        first_name: Option<String>,
        last_name: Option<String>,
        attributes: BTreeMap<String, AttrValue>,
    },
    /// Record a trigger event on the customer's profile, which marketing flows listen to.
    TriggerEvent {
        customer: CustomerId,
        email: Option<String>,
        /// Event (metric) name such as `AI Checkout Abandoned`.
        name: String,
        properties: serde_json::Map<String, serde_json::Value>,
        value: Option<Money>,
        #[serde(with = "time::serde::rfc3339")]
        time: Timestamp,
        /// Deterministic: the same cause always produces the same id, so retries never duplicate.
        unique_id: String,
    },
    /// Make the customer a member of a list (an audience) in the marketing platform. Adding twice is
    /// the same as adding once.
    AddToList {
        customer: CustomerId,
        email: Option<String>,
        /// The destination's own id of the list, as configured on the flow.
        list_id: String,
    },
    /// End the customer's membership of a list. Removing someone who is not a member is not an error.
    RemoveFromList { customer: CustomerId, email: Option<String>, list_id: String },
    /// Tell the team something about a customer (a Slack message, a webhook). The text is built from
    /// flow facts (scores, counts, ids), which hold no personal data.
    Alert {
        customer: CustomerId,
        /// The flow that raised the alert.
        flow: String,
        text: String,
        #[serde(with = "time::serde::rfc3339")]
        time: Timestamp,
        /// Deterministic, like a trigger event's: the same cause always produces the same id.
        unique_id: String,
    },
}

impl Action {
    pub fn customer(&self) -> &CustomerId {
        match self {
            Action::UpsertProfile { customer, .. }
            | Action::TriggerEvent { customer, .. }
            | Action::AddToList { customer, .. }
            | Action::RemoveFromList { customer, .. }
            | Action::Alert { customer, .. } => customer,
        }
    }

    pub fn kind(&self) -> &'static str {
        match self {
            Action::UpsertProfile { .. } => "upsert_profile",
            Action::TriggerEvent { .. } => "trigger_event",
            Action::AddToList { .. } => "add_to_list",
            Action::RemoveFromList { .. } => "remove_from_list",
            Action::Alert { .. } => "alert",
        }
    }

    /// The list a list action is about.
    pub fn list_id(&self) -> Option<&str> {
        match self {
            Action::AddToList { list_id, .. } | Action::RemoveFromList { list_id, .. } => Some(list_id),
            Action::UpsertProfile { .. } | Action::TriggerEvent { .. } | Action::Alert { .. } => None,
        }
    }

    /// Every value [`Action::kind`] can return.
    pub const KINDS: &'static [&'static str] =
        &["upsert_profile", "trigger_event", "add_to_list", "remove_from_list", "alert"];
}

/// What the policy decided for one customer after one event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Decision {
    pub trace_id: TraceId,
    pub customer: CustomerId,
    /// Why these actions (flow name and condition that fired).
    pub reason: String,
    /// When true the whole pipeline ran but nothing is pushed.
    pub shadow: bool,
    pub actions: Vec<Action>,
}
