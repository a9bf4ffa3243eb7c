//! Builders of realistic Adobe Commerce bodies for tests, the fakes and the demo: Magento entities, wrapped
//! as an I/O Event (CloudEvent) or as a Webhooks-module hook. Amounts are JSON numbers, as Magento sends
//! them. Signing lives with the sender in the test kit.

use serde_json::{Map, Value, json};
use std::str::FromStr;

/// A JSON number with exactly this text (`"84.90"` stays `84.90`).
pub fn number(text: &str) -> Value {
    serde_json::Number::from_str(text).map(Value::Number).unwrap_or_else(|_| Value::String(text.into()))
}

/// A Magento order (`sales_order`) as observer data.
#[derive(Debug, Clone)]
pub struct OrderFixture {
    pub entity_id: u64,
    pub increment_id: String,
    pub customer_id: Option<u64>,
    pub email: String,
    pub state: String,
    pub grand_total: String,
    pub currency: String,
    pub created_at: String,
    pub updated_at: String,
    pub items: Vec<(u64, String, String, String)>,
}

impl OrderFixture {
    /// A processing order of one line, `updated_at` equal to `created_at` (Magento's `Y-m-d H:i:s`, UTC).
    pub fn new(entity_id: u64, customer_id: Option<u64>, email: &str, at: &str) -> Self {
        Self {
            entity_id,
            increment_id: format!("{:09}", entity_id),
            customer_id,
            email: email.into(),
            state: "processing".into(),
            grand_total: "84.90".into(),
            currency: "EUR".into(),
            created_at: at.into(),
            updated_at: at.into(),
            items: vec![(501, "MUG-1".into(), "Mug".into(), "42.45".into())],
        }
    }

    pub fn state(mut self, state: &str) -> Self {
        self.state = state.into();
        self
    }

    pub fn updated_at(mut self, at: &str) -> Self {
        self.updated_at = at.into();
        self
    }

    pub fn grand_total(mut self, total: &str) -> Self {
        self.grand_total = total.into();
        self
    }

    pub fn value(&self) -> Value {
        let items: Vec<Value> = self
            .items
            .iter()
            .enumerate()
            .map(|(i, (product, sku, name, price))| {
                json!({
                    "item_id": 9000 + i as u64, "product_id": product, "sku": sku, "name": name,
                    "qty_ordered": number("2.0000"), "price": number(price),
                })
            })
            .collect();
        json!({
            "entity_id": self.entity_id,
            "increment_id": self.increment_id,
            "customer_id": self.customer_id,
            "customer_is_guest": if self.customer_id.is_some() { 0 } else { 1 },
            "customer_email": self.email,
            "customer_firstname": "Ana",
            "state": self.state,
            "status": self.state,
            "grand_total": number(&self.grand_total),
            "order_currency_code": self.currency,
            "base_currency_code": self.currency,
            "quote_id": self.entity_id + 100_000,
            "created_at": self.created_at,
            "updated_at": self.updated_at,
            "items": items,
        })
    }
}

/// A Magento customer as observer data.
pub fn customer_value(id: u64, email: &str, updated_at: &str) -> Value {
    json!({
        "entity_id": id, "email": email, "firstname": "Ana", "lastname": "Lima", "website_id": 1,
        "created_at": "2026-04-01 09:00:00", "updated_at": updated_at,
        "extension_attributes": { "is_subscribed": true },
    })
}

/// A Magento quote (cart) as observer data.
pub fn quote_value(id: u64, customer_id: Option<u64>, email: Option<&str>, updated_at: &str) -> Value {
    json!({
        "entity_id": id, "customer_id": customer_id, "customer_email": email, "is_active": 1,
        "grand_total": number("19.99"), "quote_currency_code": "USD",
        "created_at": updated_at, "updated_at": updated_at,
        "items": [{ "item_id": 1, "product_id": 77, "sku": "TEE", "name": "Tee", "qty": 1, "price": number("19.99") }],
    })
}

/// A Magento product as observer data.
pub fn product_value(id: u64, name: &str, updated_at: &str) -> Value {
    json!({ "entity_id": id, "sku": format!("SKU-{id}"), "name": name, "type_id": "simple",
            "price": number("12.50"), "created_at": updated_at, "updated_at": updated_at })
}

/// An Adobe I/O Event (CloudEvent) of a Commerce observer event (`observer.sales_order_save_commit_after`).
pub fn io_event(event: &str, event_id: &str, client_id: &str, instance_uuid: &str, value: Value) -> Vec<u8> {
    let mut metadata = Map::new();
    metadata.insert("commerceEdition".into(), "Adobe Commerce".into());
    metadata.insert("commerceVersion".into(), "2.4.8".into());
    metadata.insert("eventsClientVersion".into(), "1.12.0".into());
    metadata.insert("storeId".into(), "1".into());
    metadata.insert("websiteId".into(), "1".into());
    metadata.insert("storeGroupId".into(), "1".into());
    let body = json!({
        "specversion": "1.0",
        "id": format!("{event_id}-ce"),
        "source": format!("urn:uuid:{instance_uuid}"),
        "type": format!("com.adobe.commerce.{event}"),
        "datacontenttype": "application/json",
        "time": "2026-05-01T10:00:01.000Z",
        "event_id": event_id,
        "recipient_client_id": client_id,
        "data": {
            "key": event_id,
            "value": value,
            "source": format!("{instance_uuid}.production"),
            "_metadata": Value::Object(metadata),
        },
    });
    serde_json::to_vec(&body).unwrap_or_default()
}

/// A Webhooks-module hook body: `{"eventName": "observer.<event>", "data": {"<entity>": value}}`.
pub fn hook(event: &str, entity: &str, value: Value) -> Vec<u8> {
    let body = json!({ "eventName": event, "data": { entity: value } });
    serde_json::to_vec(&body).unwrap_or_default()
}
