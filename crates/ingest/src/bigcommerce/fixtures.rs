//! Builders of BigCommerce callbacks, their Standard Webhooks signatures and the REST answers nudge
//! fetches, for tests, the fake BigCommerce API and the demo.
//!
//! Amounts are the strings BigCommerce's v2 API sends (`"59.9700"`) and the JSON numbers of v3, emitted
//! verbatim; v2 dates are RFC 2822, v3 dates RFC 3339, as the real APIs send them.

use crate::bigcommerce::verify::{ID_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use time::format_description::well_known::{Rfc2822, Rfc3339};

/// The store the demo and the tests pretend to be.
pub const DEMO_STORE_HASH: &str = "abc123";
/// Its numeric store id.
pub const DEMO_STORE_ID: &str = "1025646";

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn rfc2822(t: OffsetDateTime) -> String {
    t.format(&Rfc2822).unwrap_or_default()
}

/// A thin callback.
#[derive(Debug, Clone, PartialEq)]
pub struct CallbackFixture {
    pub scope: String,
    pub store_hash: String,
    pub data: Value,
    pub created_at: i64,
}

impl CallbackFixture {
    /// A callback for `scope` about the resource `id` (an integer, or a cart's UUID as a string).
    pub fn new(scope: &str, id: impl Into<Value>) -> Self {
        let kind = scope.split('/').nth(1).unwrap_or("order").to_string();
        CallbackFixture {
            scope: scope.into(),
            store_hash: DEMO_STORE_HASH.into(),
            data: json!({"type": kind, "id": id.into()}),
            created_at: 1_777_629_600,
        }
    }

    pub fn store(mut self, hash: &str) -> Self {
        self.store_hash = hash.into();
        self
    }

    pub fn created_at(mut self, unix_secs: i64) -> Self {
        self.created_at = unix_secs;
        self
    }

    /// Adds a field to `data` (`orderId` of a converted cart, `token` of an abandoned one).
    pub fn data_field(mut self, key: &str, value: impl Into<Value>) -> Self {
        if let Some(o) = self.data.as_object_mut() {
            o.insert(key.into(), value.into());
        }
        self
    }

    /// The payload hash: a 40-hex-digit digest of the scope, data and time (BigCommerce's is SHA-1 of
    /// the data; what matters is that a re-fired event carries the same one).
    pub fn hash(&self) -> String {
        let d = Sha256::digest(format!("{}|{}|{}", self.scope, self.data, self.created_at).as_bytes());
        hex::encode(d)[..40].to_string()
    }

    pub fn to_json(&self) -> Value {
        json!({
            "scope": self.scope,
            "store_id": DEMO_STORE_ID,
            "data": self.data,
            "hash": self.hash(),
            "created_at": self.created_at,
            "producer": format!("stores/{}", self.store_hash),
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.to_json()).unwrap_or_default()
    }
}

/// The Standard Webhooks headers BigCommerce sends with `body`.
pub fn signed_headers(secret: &str, webhook_id: &str, timestamp: i64, body: &[u8]) -> Vec<(String, String)> {
    vec![
        ("content-type".into(), "application/json".into()),
        (ID_HEADER.into(), webhook_id.into()),
        (TIMESTAMP_HEADER.into(), timestamp.to_string()),
        (SIGNATURE_HEADER.into(), sign(secret, webhook_id, timestamp, body)),
    ]
}

/// One line of an order or a cart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemFixture {
    pub product_id: u64,
    pub variant_id: u64,
    pub name: String,
    pub quantity: u32,
    /// Unit price including tax, as BigCommerce's text (`"12.5000"`).
    pub price: String,
}

impl ItemFixture {
    pub fn new(product_id: u64, name: &str, quantity: u32, price: &str) -> Self {
        ItemFixture {
            product_id,
            variant_id: product_id + 1000,
            name: name.into(),
            quantity,
            price: price.into(),
        }
    }
}

/// The sum of the lines' prices times quantities.
fn lines_total(items: &[ItemFixture]) -> rust_decimal::Decimal {
    items.iter().fold(rust_decimal::Decimal::ZERO, |acc, i| {
        acc + i.price.parse::<rust_decimal::Decimal>().unwrap_or_default()
            * rust_decimal::Decimal::from(i.quantity)
    })
}

/// An order as `GET /v2/orders/{id}` and `GET /v2/orders/{id}/products` answer it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderFixture {
    pub id: u64,
    /// 0 for a guest.
    pub customer_id: u64,
    pub email: Option<String>,
    pub created_at: OffsetDateTime,
    pub modified_at: OffsetDateTime,
    pub status_id: u32,
    pub status: String,
    pub currency: String,
    pub total: Option<String>,
    pub cart_id: Option<String>,
    pub items: Vec<ItemFixture>,
}

impl OrderFixture {
    pub fn new(id: u64, customer_id: u64, email: Option<&str>, created_at: OffsetDateTime) -> Self {
        OrderFixture {
            id,
            customer_id,
            email: email.map(str::to_string),
            created_at,
            modified_at: created_at,
            status_id: 11,
            status: "Awaiting Fulfillment".into(),
            currency: "USD".into(),
            total: None,
            cart_id: None,
            items: Vec::new(),
        }
    }

    pub fn item(mut self, item: ItemFixture) -> Self {
        self.items.push(item);
        self
    }

    pub fn status(mut self, id: u32, name: &str) -> Self {
        self.status_id = id;
        self.status = name.into();
        self
    }

    pub fn modified(mut self, at: OffsetDateTime) -> Self {
        self.modified_at = at;
        self
    }

    pub fn currency(mut self, code: &str) -> Self {
        self.currency = code.into();
        self
    }

    pub fn cart(mut self, cart_id: &str) -> Self {
        self.cart_id = Some(cart_id.into());
        self
    }

    /// The total: the given one, or the sum of the lines.
    pub fn total(&self) -> String {
        if let Some(t) = &self.total {
            return t.clone();
        }
        format!("{:.4}", lines_total(&self.items))
    }

    /// `GET /v2/orders/{id}`.
    pub fn order_json(&self) -> Value {
        json!({
            "id": self.id,
            "customer_id": self.customer_id,
            "date_created": rfc2822(self.created_at),
            "date_modified": rfc2822(self.modified_at),
            "status_id": self.status_id,
            "status": self.status,
            "subtotal_inc_tax": self.total(),
            "total_inc_tax": self.total(),
            "total_ex_tax": self.total(),
            "items_total": self.items.iter().map(|i| i.quantity).sum::<u32>(),
            "payment_status": if self.status_id == 4 { "refunded" } else { "captured" },
            "currency_code": self.currency,
            "currency_exchange_rate": "1.0000000000",
            "default_currency_code": self.currency,
            "cart_id": self.cart_id,
            "is_deleted": false,
            "billing_address": {
                "first_name": "Ana", "last_name": "Lima", "country_iso2": "US",
                "email": self.email.clone().unwrap_or_default(),
            },
            "products": {"url": format!("https://api.bigcommerce.com/stores/{DEMO_STORE_HASH}/v2/orders/{}/products", self.id), "resource": format!("/orders/{}/products", self.id)},
        })
    }

    /// `GET /v2/orders/{id}/products`.
    pub fn products_json(&self) -> Value {
        Value::Array(
            self.items
                .iter()
                .enumerate()
                .map(|(n, i)| {
                    json!({
                        "id": self.id * 100 + n as u64,
                        "order_id": self.id,
                        "product_id": i.product_id,
                        "variant_id": i.variant_id,
                        "name": i.name,
                        "sku": format!("SKU-{}", i.product_id),
                        "quantity": i.quantity,
                        "base_price": i.price,
                        "price_ex_tax": i.price,
                        "price_inc_tax": i.price,
                        "total_inc_tax": i.price,
                        "type": "physical",
                    })
                })
                .collect(),
        )
    }

    /// The body nudge stores under `bigcommerce/fetched/order`.
    pub fn fetched(&self) -> Value {
        json!({"order": self.order_json(), "products": self.products_json()})
    }

    pub fn fetched_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.fetched()).unwrap_or_default()
    }
}

/// A cart as `GET /v3/carts/{id}` answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartFixture {
    pub id: String,
    pub customer_id: u64,
    pub email: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub currency: String,
    pub items: Vec<ItemFixture>,
}

impl CartFixture {
    pub fn new(id: &str, customer_id: u64, email: Option<&str>, at: OffsetDateTime) -> Self {
        CartFixture {
            id: id.into(),
            customer_id,
            email: email.map(str::to_string),
            created_at: at,
            updated_at: at,
            currency: "USD".into(),
            items: Vec::new(),
        }
    }

    pub fn item(mut self, item: ItemFixture) -> Self {
        self.items.push(item);
        self
    }

    pub fn updated(mut self, at: OffsetDateTime) -> Self {
        self.updated_at = at;
        self
    }

    pub fn fetched(&self) -> Value {
        let amount = lines_total(&self.items);
        let number = |s: &str| -> Value { serde_json::from_str(s).unwrap_or(Value::Null) };
        let items: Vec<Value> = self
            .items
            .iter()
            .map(|i| {
                json!({
                    "id": format!("{}-li", i.product_id),
                    "product_id": i.product_id,
                    "variant_id": i.variant_id,
                    "sku": format!("SKU-{}", i.product_id),
                    "name": i.name,
                    "quantity": i.quantity,
                    "list_price": number(&i.price),
                    "sale_price": number(&i.price),
                })
            })
            .collect();
        let mut data = json!({
            "id": self.id,
            "customer_id": self.customer_id,
            "channel_id": 1,
            "currency": {"code": self.currency},
            "tax_included": true,
            "base_amount": number(&amount.to_string()),
            "discount_amount": 0,
            "cart_amount": number(&amount.to_string()),
            "line_items": {"physical_items": items, "digital_items": [], "gift_certificates": [], "custom_items": []},
            "created_time": rfc3339(self.created_at),
            "updated_time": rfc3339(self.updated_at),
            "redirect_urls": {"checkout_url": format!("https://store-{DEMO_STORE_HASH}.mybigcommerce.com/cart.php?action=load&id={}", self.id)},
        });
        if let (Some(e), Some(o)) = (&self.email, data.as_object_mut()) {
            o.insert("email".into(), Value::String(e.clone()));
        }
        json!({"data": data, "meta": {}})
    }

    pub fn fetched_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.fetched()).unwrap_or_default()
    }
}

/// A customer as `GET /v3/customers?id:in={id}` answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerFixture {
    pub id: u64,
    pub email: String,
    pub first_name: String,
    pub last_name: String,
    pub created_at: OffsetDateTime,
    pub modified_at: OffsetDateTime,
    pub accepts_emails: bool,
}

impl CustomerFixture {
    pub fn new(id: u64, email: &str, at: OffsetDateTime) -> Self {
        CustomerFixture {
            id,
            email: email.into(),
            first_name: "Ana".into(),
            last_name: "Lima".into(),
            created_at: at,
            modified_at: at,
            accepts_emails: true,
        }
    }

    pub fn accepts_emails(mut self, yes: bool) -> Self {
        self.accepts_emails = yes;
        self
    }

    pub fn record(&self) -> Value {
        json!({
            "id": self.id,
            "email": self.email,
            "first_name": self.first_name,
            "last_name": self.last_name,
            "company": "",
            "phone": "",
            "customer_group_id": 0,
            "date_created": rfc3339(self.created_at),
            "date_modified": rfc3339(self.modified_at),
            "accepts_product_review_abandoned_cart_emails": self.accepts_emails,
            "channel_ids": [1],
        })
    }

    pub fn fetched(&self) -> Value {
        json!({"data": [self.record()], "meta": {"pagination": {"total": 1, "count": 1, "per_page": 50, "current_page": 1, "total_pages": 1}}})
    }

    pub fn fetched_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.fetched()).unwrap_or_default()
    }
}

/// A product as `GET /v3/catalog/products/{id}` answers it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductFixture {
    pub id: u64,
    pub name: String,
    pub price: String,
    pub modified_at: OffsetDateTime,
}

impl ProductFixture {
    pub fn new(id: u64, name: &str, price: &str, at: OffsetDateTime) -> Self {
        ProductFixture { id, name: name.into(), price: price.into(), modified_at: at }
    }

    pub fn fetched(&self) -> Value {
        json!({"data": {
            "id": self.id,
            "name": self.name,
            "type": "physical",
            "sku": format!("SKU-{}", self.id),
            "price": serde_json::from_str::<Value>(&self.price).unwrap_or(Value::Null),
            "categories": [23],
            "brand_id": 0,
            "date_created": rfc3339(self.modified_at),
            "date_modified": rfc3339(self.modified_at),
        }, "meta": {}})
    }

    pub fn fetched_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(&self.fetched()).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bigcommerce::normalize::parse;
    use crate::source::Parsed;
    use nudge_model::Event;
    use time::macros::datetime;

    #[test]
    fn every_fixture_parses_to_its_event() {
        let t = datetime!(2026-05-01 10:00 UTC);
        let order = OrderFixture::new(250, 7, Some("ana@example.com"), t)
            .item(ItemFixture::new(1, "Mug", 2, "12.5000"));
        let Parsed::Events(evs) = parse("abc123", "bigcommerce/fetched/order", &order.fetched_bytes()) else {
            panic!("order")
        };
        let Event::OrderUpserted(o) = &evs[0] else { panic!("{evs:?}") };
        assert_eq!(o.total.to_string(), "25 USD");
        assert_eq!(o.customer.as_ref().map(ToString::to_string).as_deref(), Some("bigcommerce:abc123:7"));
        let cart = CartFixture::new("5d0b2b8e-1f7c", 7, None, t).item(ItemFixture::new(1, "Mug", 1, "12.50"));
        assert!(matches!(
            parse("abc123", "bigcommerce/fetched/cart", &cart.fetched_bytes()),
            Parsed::Events(e) if matches!(e[0], Event::CheckoutUpserted(_))
        ));
        let c = CustomerFixture::new(7, "ana@example.com", t);
        assert!(matches!(
            parse("abc123", "bigcommerce/fetched/customer", &c.fetched_bytes()),
            Parsed::Events(e) if matches!(e[0], Event::CustomerUpserted(_))
        ));
        let p = ProductFixture::new(1, "Mug", "12.50", t);
        assert!(matches!(
            parse("abc123", "bigcommerce/fetched/product", &p.fetched_bytes()),
            Parsed::Events(e) if matches!(e[0], Event::ProductUpserted(_))
        ));
    }
}
