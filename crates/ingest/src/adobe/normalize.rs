//! Stored Adobe Commerce deliveries → canonical events.
//!
//! Both intakes store the body they received: an I/O Event (a CloudEvent whose entity is `data.value`) or a
//! Webhooks-module hook (`{"eventName", "data": {"order": {...}}}`, the entity under its name or `data`
//! itself). The event name, whatever its prefix (`com.adobe.commerce.`, `observer.`, `plugin.`), decides:
//!
//! | event | canonical event |
//! | --- | --- |
//! | `sales_order_save_commit_after` (and `_save_after`, `_place_after`) | `OrderUpserted`, `OrderCancelled` when its state or status is `canceled` |
//! | `customer_save_commit_after` (and `_save_after`, `customer_register_success`) | `CustomerUpserted` |
//! | `customer_login` | ignored: a login changes nothing nudge keeps, and its customer snapshot would only repeat the last save |
//! | `checkout_cart_save_commit_after` (the quote) | `CheckoutUpserted` when the quote names a customer or an email (what abandonment needs), else `CartUpserted`; an inactive quote (converted to an order) is completed |
//! | `catalog_product_save_commit_after` (and `_save_after`) | `ProductUpserted` |
//! | anything else | ignored |
//!
//! Customers are `adobe:<instance>:<customer id>`; a guest order or quote is keyed by the digest of its
//! email (`adobe:<instance>:guest-<16 hex>`). `updated_at` is every entity's version (newest wins).

use super::payload::{FieldResult, Obj};
use nudge_model::{
    Cart, Checkout, Customer, CustomerId, Event, LineItem, MarketingConsent, Money, Order, Product, Source,
};
use rust_decimal::Decimal;
use rust_decimal::prelude::ToPrimitive;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};

/// What a stored Adobe Commerce delivery means.
#[derive(Debug, Clone, PartialEq)]
pub enum Normalized {
    Events(Vec<Event>),
    Ignored(String),
}

/// The event name without its transport's prefix: `sales_order_save_commit_after`.
pub fn base_event_name(name: &str) -> &str {
    let mut n = name.trim();
    for prefix in ["com.adobe.commerce.", "commerce.", "observer.", "plugin."] {
        n = n.strip_prefix(prefix).unwrap_or(n);
    }
    n
}

enum Kind {
    Order,
    Customer,
    Quote,
    Product,
}

fn kind(name: &str) -> Result<Kind, String> {
    Ok(match name {
        "sales_order_save_commit_after" | "sales_order_save_after" | "sales_order_place_after" => Kind::Order,
        "customer_save_commit_after" | "customer_save_after" | "customer_register_success" => Kind::Customer,
        "checkout_cart_save_commit_after" | "checkout_cart_save_after" => Kind::Quote,
        "catalog_product_save_commit_after" | "catalog_product_save_after" => Kind::Product,
        "customer_login" => {
            return Err("customer_login: a login changes nothing nudge keeps (profiles come with \
                        customer_save_commit_after)"
                .into());
        }
        other => {
            return Err(format!("event `{}` is not one nudge acts on", super::io_events::printable(other)));
        }
    })
}

/// Normalises a stored body under its topic for `instance`.
pub fn normalize(topic: &str, instance: &str, body: &[u8]) -> FieldResult<Normalized> {
    let name = base_event_name(topic);
    let kind = match kind(name) {
        Ok(k) => k,
        Err(reason) => return Ok(Normalized::Ignored(reason)),
    };
    let root: Value = serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    let root = root.as_object().ok_or("the body is not a JSON object")?;
    let (entity, path) = entity(root, &kind)?;
    let o = Obj { map: entity, path: &path };
    let event = match kind {
        Kind::Order => order(o, instance)?,
        Kind::Customer => Event::CustomerUpserted(customer(o, instance)?),
        Kind::Quote => quote(o, instance)?,
        Kind::Product => Event::ProductUpserted(product(o)?),
    };
    Ok(Normalized::Events(vec![event]))
}

/// The entity object: `data.value` (I/O Events), `data.<name>` (a hook), or `data` itself.
fn entity<'a>(root: &'a Map<String, Value>, kind: &Kind) -> FieldResult<(&'a Map<String, Value>, String)> {
    let data = root.get("data").and_then(Value::as_object).ok_or("data: missing or not an object")?;
    if let Some(v) = data.get("value").and_then(Value::as_object) {
        return Ok((v, "data.value".into()));
    }
    let names: &[&str] = match kind {
        Kind::Order => &["order"],
        Kind::Customer => &["customer"],
        Kind::Quote => &["quote", "cart"],
        Kind::Product => &["product"],
    };
    for n in names {
        if let Some(v) = data.get(*n).and_then(Value::as_object) {
            return Ok((v, format!("data.{n}")));
        }
    }
    Ok((data, "data".into()))
}

fn customer_key(instance: &str, local: &str) -> FieldResult<CustomerId> {
    CustomerId::new(Source::Adobe, format!("{instance}:{local}")).map_err(|e| e.to_string())
}

/// The key of a customer who ordered without an account: `<instance>:guest-` and the first 16 hex digits
/// of the SHA-256 of the trimmed, lower-cased email.
pub fn guest_customer_id(instance: &str, email: &str) -> FieldResult<CustomerId> {
    let digest = Sha256::digest(email.trim().to_lowercase().as_bytes());
    customer_key(instance, &format!("guest-{}", &hex::encode(digest)[..16]))
}

/// The customer an order or quote belongs to: its account, else its email as a guest.
fn owner(o: Obj<'_>, instance: &str, email: Option<&str>) -> FieldResult<Option<CustomerId>> {
    let guest = o.flag("customer_is_guest")?.unwrap_or(false);
    match (o.id("customer_id")?, email) {
        (Some(id), _) if !guest => customer_key(instance, &id).map(Some),
        (_, Some(email)) => guest_customer_id(instance, email).map(Some),
        _ => Ok(None),
    }
}

fn currency(o: Obj<'_>, keys: &[&str]) -> FieldResult<String> {
    for k in keys {
        if let Some(c) = o.text(k)? {
            return Ok(c);
        }
    }
    Err(format!("{}.{}: missing", o.path, keys[0]))
}

fn money(amount: Decimal, currency: &str, at: &str) -> FieldResult<Money> {
    let c = nudge_model::Currency::parse(currency).map_err(|e| format!("{at}: {e}"))?;
    Ok(Money::new(amount, c))
}

fn line_items(o: Obj<'_>, qty_key: &str, currency: &str) -> FieldResult<Vec<LineItem>> {
    let path = format!("{}.items", o.path);
    let mut out = Vec::new();
    for (i, item) in o.array("items")?.into_iter().enumerate() {
        let ip = format!("{path}[{i}]");
        let it = Obj { map: item, path: &ip };
        // A configurable product's child line repeats its parent's; the parent carries the price.
        if it.id("parent_item_id")?.is_some() {
            continue;
        }
        let qty = it.decimal(qty_key)?.or(it.decimal("qty")?).unwrap_or(Decimal::ONE);
        let price = it.decimal("price")?.unwrap_or(Decimal::ZERO);
        out.push(LineItem {
            product_id: it.id("product_id")?,
            variant_id: None,
            sku: it.text("sku")?,
            title: it.text("name")?.unwrap_or_default(),
            quantity: qty.trunc().to_u32().unwrap_or(0),
            price: money(price, currency, &ip)?,
        });
    }
    Ok(out)
}

fn order(o: Obj<'_>, instance: &str) -> FieldResult<Event> {
    let currency = currency(o, &["order_currency_code", "base_currency_code"])?;
    let total = o.decimal("grand_total")?.ok_or_else(|| format!("{}.grand_total: missing", o.path))?;
    let email = o.text("customer_email")?;
    let updated_at = o.required_time("updated_at")?;
    let created_at = o.time("created_at")?.unwrap_or(updated_at);
    let state = o.text("state")?;
    let status = o.text("status")?;
    let cancelled = state.as_deref() == Some("canceled") || status.as_deref() == Some("canceled");
    let order = Order {
        id: o.id("entity_id")?.map_or_else(|| o.required_id("increment_id"), Ok)?,
        name: o.text("increment_id")?,
        customer: owner(o, instance, email.as_deref())?,
        email,
        created_at,
        updated_at,
        cancelled_at: cancelled.then_some(updated_at),
        total: money(total, &currency, o.path)?,
        financial_status: status.or(state),
        line_items: line_items(o, "qty_ordered", &currency)?,
        checkout_token: o.id("quote_id")?,
        cart_token: None,
        accepts_marketing: None,
    };
    Ok(if cancelled { Event::OrderCancelled(order) } else { Event::OrderUpserted(order) })
}

fn customer(o: Obj<'_>, instance: &str) -> FieldResult<Customer> {
    let id = o.id("entity_id")?.map_or_else(|| o.required_id("id"), Ok)?;
    let consent = match o
        .obj("extension_attributes")
        .map(|m| Obj { map: m, path: "extension_attributes" }.flag("is_subscribed"))
        .transpose()?
        .flatten()
    {
        Some(true) => MarketingConsent::Subscribed,
        Some(false) => MarketingConsent::NotSubscribed,
        None => MarketingConsent::Unknown,
    };
    Ok(Customer {
        id: customer_key(instance, &id)?,
        email: o.text("email")?,
        first_name: o.text("firstname")?,
        last_name: o.text("lastname")?,
        created_at: o.time("created_at")?,
        updated_at: o.required_time("updated_at")?,
        email_consent: consent,
        tags: Vec::new(),
        sms_consent: MarketingConsent::Unknown,
    })
}

fn quote(o: Obj<'_>, instance: &str) -> FieldResult<Event> {
    let id = o.id("entity_id")?.map_or_else(|| o.required_id("id"), Ok)?;
    let updated_at = o.required_time("updated_at")?;
    let currency = currency(o, &["quote_currency_code", "base_currency_code"])?;
    let items = line_items(o, "qty", &currency)?;
    let email = o.text("customer_email")?;
    let customer = owner(o, instance, email.as_deref())?;
    if customer.is_none() {
        return Ok(Event::CartUpserted(Cart { token: id, updated_at, line_items: items }));
    }
    let total = o.decimal("grand_total")?.unwrap_or(Decimal::ZERO);
    let active = o.flag("is_active")?.unwrap_or(true);
    Ok(Event::CheckoutUpserted(Checkout {
        token: id.clone(),
        cart_token: Some(id),
        customer,
        email,
        created_at: o.time("created_at")?.unwrap_or(updated_at),
        updated_at,
        completed_at: (!active).then_some(updated_at),
        total: money(total, &currency, o.path)?,
        line_items: items,
        recovery_url: None,
        accepts_marketing: None,
    }))
}

fn product(o: Obj<'_>) -> FieldResult<Product> {
    let id = o.id("entity_id")?.map_or_else(|| o.required_id("id"), Ok)?;
    let title = match o.text("name")? {
        Some(n) => n,
        None => o.text("sku")?.ok_or_else(|| format!("{}.name: missing", o.path))?,
    };
    Ok(Product {
        id,
        title,
        category: o.text("type_id")?,
        vendor: None,
        updated_at: o.required_time("updated_at")?,
        url: None,
        image_url: None,
        price: None,
        currency: None,
        available: None,
        tags: Vec::new(),
    })
}
