//! Builders for realistic Shopify webhook bodies and deliveries, for tests, the demo's synthetic store and
//! the load generator.
//!
//! Lives here: one builder per payload shape (order, checkout, customer, cart, product), functions for
//! the three compliance bodies, and [`DeliveryFixture`], which produces signed HTTPS headers and
//! EventBridge / Pub/Sub envelopes around a body. The bodies carry the many fields real Shopify payloads
//! carry (money bags, addresses, admin GraphQL ids, …) so that "unknown fields are ignored" is exercised
//! every time. Not here: parsing or any assertion about what a body means (`payload`, `normalize`).
//!
//! Builders take simple values: ids as `u64` (emitted as exact JSON integers, so ids above 2^53 survive),
//! amounts as the strings Shopify uses (`"59.97"`, emitted verbatim), instants as `OffsetDateTime`
//! (emitted as RFC 3339 with their own offset, as a shop in a non-UTC zone would send them).

use crate::shopify::verify::{
    API_VERSION_HEADER, EVENT_ID_HEADER, HMAC_HEADER, SHOP_DOMAIN_HEADER, TOPIC_HEADER, TRIGGERED_AT_HEADER,
    WEBHOOK_ID_HEADER, sign,
};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use rust_decimal::Decimal;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use std::str::FromStr;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// The shop the demo and the tests pretend to be.
pub const DEMO_SHOP: &str = "demo-store.myshopify.com";
/// The numeric id of [`DEMO_SHOP`].
pub const DEMO_SHOP_ID: u64 = 70011;
/// The API version fixtures claim to be serialised with.
pub const API_VERSION: &str = "2026-07";

/// One line of an order, checkout or cart.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineItemFixture {
    /// The line item's own id; derived from the parent's id when `None`.
    pub id: Option<u64>,
    pub product_id: u64,
    pub variant_id: u64,
    /// Emitted as `""` when `None`, as Shopify does for products without a SKU.
    pub sku: Option<String>,
    pub title: String,
    pub vendor: String,
    pub quantity: u32,
    /// Unit price, emitted verbatim.
    pub price: String,
}

impl LineItemFixture {
    /// A line for `quantity` × `product_id` at unit `price`; the variant id and SKU are derived.
    pub fn new(product_id: u64, title: impl Into<String>, quantity: u32, price: impl Into<String>) -> Self {
        LineItemFixture {
            id: None,
            product_id,
            variant_id: product_id.wrapping_add(1_000_000),
            sku: Some(format!("SKU-{product_id}")),
            title: title.into(),
            vendor: "Nudge Demo Co".into(),
            quantity,
            price: price.into(),
        }
    }

    pub fn id(mut self, id: u64) -> Self {
        self.id = Some(id);
        self
    }

    pub fn variant(mut self, variant_id: u64) -> Self {
        self.variant_id = variant_id;
        self
    }

    pub fn sku(mut self, sku: Option<&str>) -> Self {
        self.sku = sku.map(str::to_string);
        self
    }

    fn to_json(&self, parent_id: u64, index: usize, currency: &str) -> Value {
        let id = self.id.unwrap_or_else(|| (parent_id % 1_000_000_000_000) * 100 + index as u64 + 1);
        let line_price = line_total(self);
        json!({
            "id": id,
            "admin_graphql_api_id": format!("gid://shopify/LineItem/{id}"),
            "product_id": self.product_id,
            "variant_id": self.variant_id,
            "sku": self.sku.clone().unwrap_or_default(),
            "title": self.title,
            "name": format!("{} - Default Title", self.title),
            "variant_title": "Default Title",
            "vendor": self.vendor,
            "quantity": self.quantity,
            "current_quantity": self.quantity,
            "fulfillable_quantity": self.quantity,
            "price": self.price,
            "price_set": money_set(&self.price, currency),
            "line_price": line_price.to_string(),
            "total_discount": "0.00",
            "total_discount_set": money_set("0.00", currency),
            "discount_allocations": [],
            "grams": 250,
            "gift_card": false,
            "taxable": true,
            "requires_shipping": true,
            "fulfillment_service": "manual",
            "fulfillment_status": null,
            "product_exists": true,
            "properties": [],
            "tax_lines": [],
            "duties": []
        })
    }
}

/// A customer, as the `customers/*` body or nested in an order or checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerFixture {
    pub id: u64,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub phone: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// `email_marketing_consent.state`; `None` emits `"email_marketing_consent": null`.
    pub consent_state: Option<String>,
    /// The legacy `accepts_marketing` flag; `None` leaves the field out, as current API versions do.
    pub accepts_marketing: Option<bool>,
    /// `tags`, verbatim (Shopify's comma-separated string, `""` for none); `None` emits `"tags": null`.
    pub tags: Option<String>,
    /// `sms_marketing_consent.state`; `None` emits `"sms_marketing_consent": null`.
    pub sms_consent_state: Option<String>,
}

impl CustomerFixture {
    /// A customer created and last updated at `at`, not subscribed to email marketing.
    pub fn new(id: u64, email: Option<&str>, at: OffsetDateTime) -> Self {
        CustomerFixture {
            id,
            email: email.map(str::to_string),
            first_name: Some("Lena".into()),
            last_name: Some("Berg".into()),
            phone: None,
            created_at: at,
            updated_at: at,
            consent_state: Some("not_subscribed".into()),
            accepts_marketing: None,
            tags: Some(String::new()),
            sms_consent_state: None,
        }
    }

    pub fn name(mut self, first: Option<&str>, last: Option<&str>) -> Self {
        self.first_name = first.map(str::to_string);
        self.last_name = last.map(str::to_string);
        self
    }

    pub fn phone(mut self, phone: &str) -> Self {
        self.phone = Some(phone.into());
        self
    }

    pub fn updated_at(mut self, at: OffsetDateTime) -> Self {
        self.updated_at = at;
        self
    }

    /// Sets `email_marketing_consent.state` (`subscribed`, `not_subscribed`, `unsubscribed`, `pending`, …),
    /// or `None` for a null consent object.
    pub fn consent(mut self, state: Option<&str>) -> Self {
        self.consent_state = state.map(str::to_string);
        self
    }

    /// Sets the tags, joined as Shopify joins them (`["vip", "wholesale"]` → `"vip, wholesale"`).
    pub fn tags(mut self, tags: &[&str]) -> Self {
        self.tags = Some(tags.join(", "));
        self
    }

    /// Sets the `tags` field verbatim (odd spacing, empty pieces, …), or `None` for `"tags": null`.
    pub fn raw_tags(mut self, tags: Option<&str>) -> Self {
        self.tags = tags.map(str::to_string);
        self
    }

    /// Sets `sms_marketing_consent.state` (`subscribed`, `not_subscribed`, `unsubscribed`, `pending`, …),
    /// or `None` for a null consent object (the default, as for a customer without a phone).
    pub fn sms_consent(mut self, state: Option<&str>) -> Self {
        self.sms_consent_state = state.map(str::to_string);
        self
    }

    /// Adds the legacy `accepts_marketing` flag of older API versions.
    pub fn legacy_accepts_marketing(mut self, accepts: bool) -> Self {
        self.accepts_marketing = Some(accepts);
        self
    }

    pub fn to_json(&self) -> Value {
        let consent = self.consent_state.as_ref().map(|state| {
            let updated = (state == "subscribed").then(|| rfc3339(self.updated_at));
            json!({"state": state, "opt_in_level": "single_opt_in", "consent_updated_at": updated})
        });
        let sms_consent = self.sms_consent_state.as_ref().map(|state| {
            let updated = (state == "subscribed").then(|| rfc3339(self.updated_at));
            json!({
                "state": state, "opt_in_level": "single_opt_in", "consent_updated_at": updated,
                "consent_collected_from": "OTHER"
            })
        });
        let mut body = json!({
            "id": self.id,
            "admin_graphql_api_id": format!("gid://shopify/Customer/{}", self.id),
            "email": self.email,
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at),
            "first_name": self.first_name,
            "last_name": self.last_name,
            "state": "enabled",
            "note": null,
            "verified_email": true,
            "multipass_identifier": null,
            "tax_exempt": false,
            "tax_exemptions": [],
            "phone": self.phone,
            "tags": self.tags,
            "currency": "USD",
            "email_marketing_consent": consent,
            "sms_marketing_consent": sms_consent,
            "addresses": [address(self.first_name.as_deref(), self.last_name.as_deref())],
            "default_address": address(self.first_name.as_deref(), self.last_name.as_deref())
        });
        if let Some(accepts) = self.accepts_marketing {
            body["accepts_marketing"] = json!(accepts);
        }
        body
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        to_bytes(&self.to_json())
    }
}

/// An order, for `orders/create`, `orders/updated`, `orders/paid` and `orders/cancelled`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderFixture {
    pub id: u64,
    /// `order_number`; `name` is `#<number>`.
    pub number: u32,
    /// The order's `email`; a guest order has this and no customer.
    pub email: Option<String>,
    pub customer: Option<CustomerFixture>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub cancelled_at: Option<OffsetDateTime>,
    pub currency: String,
    pub line_items: Vec<LineItemFixture>,
    /// `total_price`; the sum of the line items when `None`.
    pub total_price: Option<String>,
    pub financial_status: String,
    pub checkout_token: Option<String>,
    pub cart_token: Option<String>,
    pub buyer_accepts_marketing: bool,
}

impl OrderFixture {
    /// A paid USD order without customer, email or line items, created and updated at `created_at`.
    pub fn new(id: u64, created_at: OffsetDateTime) -> Self {
        OrderFixture {
            id,
            number: 1001,
            email: None,
            customer: None,
            created_at,
            updated_at: created_at,
            cancelled_at: None,
            currency: "USD".into(),
            line_items: Vec::new(),
            total_price: None,
            financial_status: "paid".into(),
            checkout_token: Some(token("checkout", id)),
            cart_token: Some(token("cart", id)),
            buyer_accepts_marketing: false,
        }
    }

    pub fn number(mut self, number: u32) -> Self {
        self.number = number;
        self
    }

    /// The order's customer; the order's email becomes the customer's when it has none yet.
    pub fn customer(mut self, customer: CustomerFixture) -> Self {
        if self.email.is_none() {
            self.email = customer.email.clone();
        }
        self.customer = Some(customer);
        self
    }

    /// A guest order: an email and no customer record.
    pub fn guest(mut self, email: &str) -> Self {
        self.email = Some(email.into());
        self.customer = None;
        self
    }

    pub fn line_item(mut self, item: LineItemFixture) -> Self {
        self.line_items.push(item);
        self
    }

    pub fn currency(mut self, currency: &str) -> Self {
        self.currency = currency.into();
        self
    }

    pub fn total(mut self, total: &str) -> Self {
        self.total_price = Some(total.into());
        self
    }

    pub fn updated_at(mut self, at: OffsetDateTime) -> Self {
        self.updated_at = at;
        self
    }

    /// Cancels the order at `at` (also its last update), as in an `orders/cancelled` body.
    pub fn cancelled(mut self, at: OffsetDateTime) -> Self {
        self.cancelled_at = Some(at);
        self.updated_at = at;
        self.financial_status = "voided".into();
        self
    }

    pub fn financial_status(mut self, status: &str) -> Self {
        self.financial_status = status.into();
        self
    }

    pub fn tokens(mut self, checkout_token: Option<&str>, cart_token: Option<&str>) -> Self {
        self.checkout_token = checkout_token.map(str::to_string);
        self.cart_token = cart_token.map(str::to_string);
        self
    }

    pub fn accepts_marketing(mut self, accepts: bool) -> Self {
        self.buyer_accepts_marketing = accepts;
        self
    }

    /// The `total_price` this order will carry.
    pub fn total_price(&self) -> String {
        self.total_price.clone().unwrap_or_else(|| sum_lines(&self.line_items))
    }

    pub fn to_json(&self) -> Value {
        let c = self.currency.as_str();
        let total = self.total_price();
        let customer = self.customer.as_ref().map(CustomerFixture::to_json);
        let (first, last) = match &self.customer {
            Some(cu) => (cu.first_name.as_deref(), cu.last_name.as_deref()),
            None => (None, None),
        };
        let head = json!({
            "id": self.id,
            "admin_graphql_api_id": format!("gid://shopify/Order/{}", self.id),
            "app_id": 580111,
            "browser_ip": "203.0.113.7",
            "buyer_accepts_marketing": self.buyer_accepts_marketing,
            "cancel_reason": self.cancelled_at.map(|_| "customer"),
            "cancelled_at": self.cancelled_at.map(rfc3339),
            "cart_token": self.cart_token,
            "checkout_id": self.id.wrapping_add(7),
            "checkout_token": self.checkout_token,
            "client_details": {
                "accept_language": "en-US", "browser_ip": "203.0.113.7", "user_agent": "Mozilla/5.0"
            },
            "closed_at": null,
            "confirmation_number": format!("CNF{}", self.number),
            "confirmed": true,
            "contact_email": self.email,
            "created_at": rfc3339(self.created_at),
            "currency": c,
            "current_subtotal_price": total,
            "current_subtotal_price_set": money_set(&total, c),
            "current_total_price": total,
            "current_total_price_set": money_set(&total, c),
            "current_total_tax": "0.00",
            "customer_locale": "en",
            "discount_applications": [],
            "discount_codes": [],
            "email": self.email,
            "estimated_taxes": false,
            "financial_status": self.financial_status,
            "fulfillment_status": null,
            "landing_site": "/products/organic-tee",
            "name": format!("#{}", self.number),
            "note": null,
            "note_attributes": [],
            "number": self.number.saturating_sub(1000),
            "order_number": self.number,
            "order_status_url": format!("https://{DEMO_SHOP}/{DEMO_SHOP_ID}/orders/{}/authenticate", self.id),
            "payment_gateway_names": ["shopify_payments"]
        });
        // Split in two because one `json!` this large exceeds the macro recursion limit.
        let line_items: Vec<Value> =
            self.line_items.iter().enumerate().map(|(i, li)| li.to_json(self.id, i, c)).collect();
        let rest = json!({
            "phone": null,
            "presentment_currency": c,
            "processed_at": rfc3339(self.created_at),
            "referring_site": "https://www.example.com/",
            "source_name": "web",
            "subtotal_price": total,
            "subtotal_price_set": money_set(&total, c),
            "tags": "",
            "tax_lines": [],
            "taxes_included": false,
            "test": false,
            "token": token("order", self.id),
            "total_discounts": "0.00",
            "total_discounts_set": money_set("0.00", c),
            "total_line_items_price": sum_lines(&self.line_items),
            "total_price": total,
            "total_price_set": money_set(&total, c),
            "total_shipping_price_set": money_set("0.00", c),
            "total_tax": "0.00",
            "total_tax_set": money_set("0.00", c),
            "total_weight": 500,
            "updated_at": rfc3339(self.updated_at),
            "billing_address": address(first, last),
            "shipping_address": address(first, last),
            "customer": customer,
            "fulfillments": [],
            "line_items": line_items,
            "refunds": [],
            "shipping_lines": []
        });
        merge(head, rest)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        to_bytes(&self.to_json())
    }
}

/// A checkout, for `checkouts/create` and `checkouts/update`, in the abandoned-checkout resource shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutFixture {
    pub id: u64,
    pub token: String,
    pub cart_token: Option<String>,
    pub email: Option<String>,
    pub customer: Option<CustomerFixture>,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    pub completed_at: Option<OffsetDateTime>,
    pub currency: String,
    pub line_items: Vec<LineItemFixture>,
    /// `total_price`; the sum of the line items when `None`.
    pub total_price: Option<String>,
    pub shop_domain: String,
    /// `abandoned_checkout_url`; derived from the shop and token when `None`.
    pub recovery_url: Option<String>,
    pub buyer_accepts_marketing: bool,
}

impl CheckoutFixture {
    /// An open USD checkout on [`DEMO_SHOP`] with a derived token, created and updated at `created_at`.
    pub fn new(id: u64, created_at: OffsetDateTime) -> Self {
        CheckoutFixture {
            id,
            token: token("checkout", id),
            cart_token: Some(token("cart", id)),
            email: None,
            customer: None,
            created_at,
            updated_at: created_at,
            completed_at: None,
            currency: "USD".into(),
            line_items: Vec::new(),
            total_price: None,
            shop_domain: DEMO_SHOP.into(),
            recovery_url: None,
            buyer_accepts_marketing: false,
        }
    }

    pub fn token(mut self, token: &str) -> Self {
        self.token = token.into();
        self
    }

    pub fn cart_token(mut self, cart_token: Option<&str>) -> Self {
        self.cart_token = cart_token.map(str::to_string);
        self
    }

    /// The checkout's customer; the checkout's email becomes the customer's when it has none yet.
    pub fn customer(mut self, customer: CustomerFixture) -> Self {
        if self.email.is_none() {
            self.email = customer.email.clone();
        }
        self.customer = Some(customer);
        self
    }

    /// A guest checkout: an email and no customer record.
    pub fn guest(mut self, email: &str) -> Self {
        self.email = Some(email.into());
        self.customer = None;
        self
    }

    pub fn line_item(mut self, item: LineItemFixture) -> Self {
        self.line_items.push(item);
        self
    }

    pub fn currency(mut self, currency: &str) -> Self {
        self.currency = currency.into();
        self
    }

    pub fn total(mut self, total: &str) -> Self {
        self.total_price = Some(total.into());
        self
    }

    pub fn updated_at(mut self, at: OffsetDateTime) -> Self {
        self.updated_at = at;
        self
    }

    pub fn completed(mut self, at: OffsetDateTime) -> Self {
        self.completed_at = Some(at);
        self.updated_at = at;
        self
    }

    pub fn accepts_marketing(mut self, accepts: bool) -> Self {
        self.buyer_accepts_marketing = accepts;
        self
    }

    /// The `abandoned_checkout_url` this checkout will carry.
    pub fn recovery_url(&self) -> String {
        self.recovery_url.clone().unwrap_or_else(|| {
            format!(
                "https://{}/{DEMO_SHOP_ID}/checkouts/{}/recover?key={}",
                self.shop_domain,
                self.token,
                &token("key", self.id)[..16]
            )
        })
    }

    /// The `total_price` this checkout will carry.
    pub fn total_price(&self) -> String {
        self.total_price.clone().unwrap_or_else(|| sum_lines(&self.line_items))
    }

    pub fn to_json(&self) -> Value {
        let c = self.currency.as_str();
        let total = self.total_price();
        let (first, last) = match &self.customer {
            Some(cu) => (cu.first_name.as_deref(), cu.last_name.as_deref()),
            None => (None, None),
        };
        let head = json!({
            "id": self.id,
            "token": self.token,
            "cart_token": self.cart_token,
            "email": self.email,
            "gateway": null,
            "buyer_accepts_marketing": self.buyer_accepts_marketing,
            "buyer_accepts_sms_marketing": false,
            "sms_marketing_phone": null,
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at),
            "completed_at": self.completed_at.map(rfc3339),
            "closed_at": null,
            "landing_site": "/",
            "note": null,
            "note_attributes": [],
            "referring_site": "",
            "shipping_lines": [],
            "taxes_included": false,
            "total_weight": 500,
            "currency": c,
            "presentment_currency": c,
            "customer_locale": "en-US",
            "source_identifier": null,
            "source_url": null,
            "device_id": null,
            "user_id": null,
            "location_id": null,
            "source_name": "web"
        });
        let rest = json!({
            "phone": null,
            "abandoned_checkout_url": self.recovery_url(),
            "discount_codes": [],
            "tax_lines": [],
            "subtotal_price": total,
            "total_discounts": "0.00",
            "total_line_items_price": sum_lines(&self.line_items),
            "total_price": total,
            "total_tax": "0.00",
            "total_duties": null,
            "billing_address": address(first, last),
            "shipping_address": address(first, last),
            "customer": self.customer.as_ref().map(CustomerFixture::to_json),
            "line_items": self.line_items.iter().enumerate().map(|(i, li)| {
                let mut line = li.to_json(self.id, i, c);
                let key = token("line", self.id.wrapping_add(i as u64));
                line["key"] = json!(format!("{}:{key}", li.variant_id));
                line["applied_discounts"] = json!([]);
                line
            }).collect::<Vec<_>>()
        });
        merge(head, rest)
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        to_bytes(&self.to_json())
    }
}

/// An online-store cart, for `carts/create` and `carts/update`. Carts name no customer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartFixture {
    pub token: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// The currency of the line items' money bags (carts have no top-level `currency`).
    pub currency: String,
    pub line_items: Vec<LineItemFixture>,
}

impl CartFixture {
    pub fn new(token: &str, created_at: OffsetDateTime) -> Self {
        CartFixture {
            token: token.into(),
            created_at,
            updated_at: created_at,
            currency: "USD".into(),
            line_items: Vec::new(),
        }
    }

    pub fn line_item(mut self, item: LineItemFixture) -> Self {
        self.line_items.push(item);
        self
    }

    pub fn currency(mut self, currency: &str) -> Self {
        self.currency = currency.into();
        self
    }

    pub fn updated_at(mut self, at: OffsetDateTime) -> Self {
        self.updated_at = at;
        self
    }

    pub fn to_json(&self) -> Value {
        let c = self.currency.as_str();
        json!({
            "id": self.token,
            "token": self.token,
            "note": null,
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at),
            "line_items": self.line_items.iter().enumerate().map(|(i, li)| {
                let mut line = li.to_json(li.product_id, i, c);
                let line_price = line_total(li).to_string();
                line["key"] = json!(format!("{}:{}", li.variant_id, &self.token));
                line["original_price"] = json!(li.price);
                line["discounted_price"] = json!(li.price);
                line["original_line_price"] = json!(line_price);
                line["discounts"] = json!([]);
                line["original_price_set"] = money_set(&li.price, c);
                line["discounted_price_set"] = money_set(&li.price, c);
                line["line_price_set"] = money_set(&line_price, c);
                line
            }).collect::<Vec<_>>()
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        to_bytes(&self.to_json())
    }
}

/// A product, for `products/create` and `products/update`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductFixture {
    pub id: u64,
    pub title: String,
    /// `product_type`, which nudge uses as the category; `""` when `None`, as Shopify sends it.
    pub product_type: Option<String>,
    pub vendor: String,
    /// The single variant's price.
    pub price: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
    /// `active` by default.
    pub status: String,
    /// Shopify's comma-separated tags string.
    pub tags: String,
    /// The single variant's stock.
    pub inventory_quantity: i64,
    /// The main image's URL (none by default).
    pub image: Option<String>,
}

impl ProductFixture {
    pub fn new(id: u64, title: &str, created_at: OffsetDateTime) -> Self {
        ProductFixture {
            id,
            title: title.into(),
            product_type: Some("Apparel".into()),
            vendor: "Nudge Demo Co".into(),
            price: "39.95".into(),
            created_at,
            updated_at: created_at,
            status: "active".into(),
            tags: String::new(),
            inventory_quantity: 42,
            image: None,
        }
    }

    pub fn status(mut self, status: &str) -> Self {
        self.status = status.into();
        self
    }

    pub fn tags(mut self, tags: &str) -> Self {
        self.tags = tags.into();
        self
    }

    pub fn inventory_quantity(mut self, quantity: i64) -> Self {
        self.inventory_quantity = quantity;
        self
    }

    pub fn image(mut self, src: &str) -> Self {
        self.image = Some(src.into());
        self
    }

    pub fn product_type(mut self, product_type: Option<&str>) -> Self {
        self.product_type = product_type.map(str::to_string);
        self
    }

    pub fn vendor(mut self, vendor: &str) -> Self {
        self.vendor = vendor.into();
        self
    }

    pub fn price(mut self, price: &str) -> Self {
        self.price = price.into();
        self
    }

    pub fn updated_at(mut self, at: OffsetDateTime) -> Self {
        self.updated_at = at;
        self
    }

    pub fn to_json(&self) -> Value {
        let variant_id = self.id.wrapping_add(1_000_000);
        let handle: String =
            self.title.to_lowercase().chars().map(|c| if c.is_alphanumeric() { c } else { '-' }).collect();
        json!({
            "id": self.id,
            "admin_graphql_api_id": format!("gid://shopify/Product/{}", self.id),
            "title": self.title,
            "body_html": format!("<p>{}</p>", self.title),
            "handle": handle,
            "vendor": self.vendor,
            "product_type": self.product_type.clone().unwrap_or_default(),
            "status": self.status,
            "tags": self.tags,
            "created_at": rfc3339(self.created_at),
            "updated_at": rfc3339(self.updated_at),
            "published_at": rfc3339(self.created_at),
            "published_scope": "web",
            "template_suffix": null,
            "options": [{
                "id": self.id.wrapping_add(2_000_000), "product_id": self.id, "name": "Title",
                "position": 1, "values": ["Default Title"]
            }],
            "variants": [{
                "id": variant_id,
                "admin_graphql_api_id": format!("gid://shopify/ProductVariant/{variant_id}"),
                "product_id": self.id,
                "title": "Default Title",
                "price": self.price,
                "sku": format!("SKU-{}", self.id),
                "position": 1,
                "inventory_policy": "deny",
                "compare_at_price": null,
                "option1": "Default Title",
                "taxable": true,
                "barcode": null,
                "inventory_quantity": self.inventory_quantity,
                "created_at": rfc3339(self.created_at),
                "updated_at": rfc3339(self.updated_at)
            }],
            "images": self.image.iter().enumerate().map(|(i, src)| json!({
                "id": self.id.wrapping_add(3_000_000 + i as u64), "product_id": self.id, "position": i + 1,
                "src": src
            })).collect::<Vec<_>>(),
            "image": self.image.as_ref().map(|src| json!({
                "id": self.id.wrapping_add(3_000_000), "product_id": self.id, "position": 1, "src": src
            }))
        })
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        to_bytes(&self.to_json())
    }
}

/// The body of an order topic.
pub fn order_json(order: &OrderFixture) -> Value {
    order.to_json()
}

/// The body of a checkout topic.
pub fn checkout_json(checkout: &CheckoutFixture) -> Value {
    checkout.to_json()
}

/// The body of a customer topic.
pub fn customer_json(customer: &CustomerFixture) -> Value {
    customer.to_json()
}

/// The body of a cart topic.
pub fn cart_json(cart: &CartFixture) -> Value {
    cart.to_json()
}

/// The body of a product topic.
pub fn product_json(product: &ProductFixture) -> Value {
    product.to_json()
}

/// The body of `customers/data_request`.
pub fn customers_data_request_json(
    shop_domain: &str,
    customer_id: u64,
    email: &str,
    orders_requested: &[u64],
    data_request_id: u64,
) -> Value {
    json!({
        "shop_id": DEMO_SHOP_ID,
        "shop_domain": shop_domain,
        "orders_requested": orders_requested,
        "customer": {"id": customer_id, "email": email, "phone": "+4915112345678"},
        "data_request": {"id": data_request_id}
    })
}

/// The body of `customers/redact`.
pub fn customers_redact_json(
    shop_domain: &str,
    customer_id: u64,
    email: &str,
    orders_to_redact: &[u64],
) -> Value {
    json!({
        "shop_id": DEMO_SHOP_ID,
        "shop_domain": shop_domain,
        "customer": {"id": customer_id, "email": email, "phone": "+4915112345678"},
        "orders_to_redact": orders_to_redact
    })
}

/// The body of `shop/redact`.
pub fn shop_redact_json(shop_domain: &str) -> Value {
    json!({"shop_id": DEMO_SHOP_ID, "shop_domain": shop_domain})
}

/// Compact JSON bytes, as Shopify sends them (no trailing newline).
pub fn to_bytes(body: &Value) -> Vec<u8> {
    serde_json::to_vec(body).expect("a JSON value always serialises")
}

/// The transport-level facts of one delivery, from which HTTPS headers or cloud envelopes are built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeliveryFixture {
    pub topic: String,
    pub shop_domain: String,
    pub api_version: String,
    pub webhook_id: String,
    pub event_id: String,
    pub triggered_at: OffsetDateTime,
}

impl DeliveryFixture {
    /// A delivery of `topic` from [`DEMO_SHOP`]; the event id is derived from the webhook id.
    pub fn new(topic: &str, webhook_id: &str, triggered_at: OffsetDateTime) -> Self {
        DeliveryFixture {
            topic: topic.into(),
            shop_domain: DEMO_SHOP.into(),
            api_version: API_VERSION.into(),
            webhook_id: webhook_id.into(),
            event_id: format!("evt-{webhook_id}"),
            triggered_at,
        }
    }

    pub fn shop(mut self, shop_domain: &str) -> Self {
        self.shop_domain = shop_domain.into();
        self
    }

    /// Another subscription's delivery of the same event: same event id, different webhook id.
    pub fn event_id(mut self, event_id: &str) -> Self {
        self.event_id = event_id.into();
        self
    }

    /// The `X-Shopify-*` headers other than the signature.
    pub fn metadata(&self) -> Vec<(String, String)> {
        vec![
            (TOPIC_HEADER.into(), self.topic.clone()),
            (SHOP_DOMAIN_HEADER.into(), self.shop_domain.clone()),
            (API_VERSION_HEADER.into(), self.api_version.clone()),
            (WEBHOOK_ID_HEADER.into(), self.webhook_id.clone()),
            (EVENT_ID_HEADER.into(), self.event_id.clone()),
            (TRIGGERED_AT_HEADER.into(), rfc3339(self.triggered_at)),
        ]
    }

    /// All headers of an HTTPS delivery of `body`, signed with `secret`.
    pub fn https_headers(&self, body: &[u8], secret: &str) -> Vec<(String, String)> {
        let mut headers = vec![
            ("Content-Type".to_string(), "application/json".to_string()),
            (HMAC_HEADER.into(), sign(secret, body)),
        ];
        headers.extend(self.metadata());
        headers
    }

    /// An EventBridge event carrying `payload`.
    pub fn eventbridge_envelope(&self, payload: &Value) -> Value {
        let metadata: serde_json::Map<String, Value> =
            self.metadata().into_iter().map(|(k, v)| (k, Value::String(v))).collect();
        json!({
            "version": "0",
            "id": format!("eb-{}", self.webhook_id),
            "detail-type": "shopifyWebhook",
            "source": "aws.partner/shopify.com/1234567/nudge",
            "account": "123456789012",
            "time": rfc3339(self.triggered_at),
            "region": "eu-west-1",
            "resources": [],
            "detail": {"payload": payload, "metadata": metadata}
        })
    }

    /// A Pub/Sub push request carrying `body` as base64 `data`.
    pub fn pubsub_push(&self, body: &[u8]) -> Value {
        let attributes: serde_json::Map<String, Value> =
            self.metadata().into_iter().map(|(k, v)| (k, Value::String(v))).collect();
        json!({
            "message": {
                "attributes": attributes,
                "data": STANDARD.encode(body),
                "messageId": format!("ps-{}", self.webhook_id),
                "publishTime": rfc3339(self.triggered_at)
            },
            "subscription": "projects/nudge-demo/subscriptions/shopify-webhooks"
        })
    }
}

/// The members of two JSON objects in one object.
fn merge(mut head: Value, rest: Value) -> Value {
    if let (Value::Object(a), Value::Object(b)) = (&mut head, rest) {
        a.extend(b);
    }
    head
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).expect("fixture instants must be in years 0000–9999 with a whole-minute offset")
}

/// Shopify's money bag: the same amount in shop and presentment money.
fn money_set(amount: &str, currency: &str) -> Value {
    json!({
        "shop_money": {"amount": amount, "currency_code": currency},
        "presentment_money": {"amount": amount, "currency_code": currency}
    })
}

fn address(first: Option<&str>, last: Option<&str>) -> Value {
    json!({
        "first_name": first, "last_name": last, "company": null,
        "address1": "Torstraße 1", "address2": null, "city": "Berlin", "province": null,
        "country": "Germany", "zip": "10119", "phone": null, "province_code": null,
        "country_code": "DE", "country_name": "Germany", "default": true
    })
}

/// A deterministic 32-hex-digit token, so fixtures built twice are byte-identical.
fn token(kind: &str, id: u64) -> String {
    hex::encode(Sha256::digest(format!("{kind}-{id}").as_bytes()))[..32].to_string()
}

/// Amounts that are not decimals (deliberately bad fixtures) count as zero in derived totals.
fn decimal_or_zero(amount: &str) -> Decimal {
    Decimal::from_str(amount.trim()).unwrap_or(Decimal::ZERO)
}

/// Unit price × quantity; an overflowing product (only from absurd fixture inputs) counts as zero.
fn line_total(item: &LineItemFixture) -> Decimal {
    decimal_or_zero(&item.price).checked_mul(Decimal::from(item.quantity)).unwrap_or(Decimal::ZERO)
}

fn sum_lines(items: &[LineItemFixture]) -> String {
    if items.is_empty() {
        return "0.00".into();
    }
    items.iter().map(line_total).fold(Decimal::ZERO, |a, b| a.checked_add(b).unwrap_or(a)).to_string()
}
