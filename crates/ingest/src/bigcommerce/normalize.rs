//! BigCommerce callbacks and fetched REST answers → what they mean.
//!
//! A callback (`store/order/created`, …) is thin: it becomes a [`FetchJob`] for the resource it names,
//! except `store/customer/deleted` (a privacy erase, nothing to read) and scopes nudge does not act on
//! (ignored). The answer to a fetch job is stored under `bigcommerce/fetched/<resource>` and becomes
//! canonical events here:
//!
//! - `order`: `{"order": <GET /v2/orders/{id}>, "products": <GET /v2/orders/{id}/products>}` →
//!   `OrderUpserted`, or `OrderCancelled` for status 4 (Refunded), 5 (Cancelled) and 6 (Declined);
//!   status 0 (Incomplete: a checkout that never became an order) is ignored. `date_modified` is the
//!   version, so an older answer applied after a newer one changes nothing.
//! - `cart`: `<GET /v3/carts/{id}>` (`data`) → `CheckoutUpserted` when the cart belongs to a customer or
//!   carries an email (BigCommerce carts are what its checkouts are made of, and what `store/cart/abandoned`
//!   reports: nudge's own abandonment timer runs on them, and an order's `cart_id` completes them);
//!   `CartUpserted` for an anonymous cart.
//! - `customer`: `<GET /v3/customers?id:in={id}>` (`data[0]`) → `CustomerUpserted`; the email consent is
//!   `accepts_product_review_abandoned_cart_emails` (true: subscribed, false: not subscribed).
//! - `product`: `<GET /v3/catalog/products/{id}>` (`data`) → `ProductUpserted`.
//!
//! Customers are keyed `bigcommerce:<store_hash>:<id>`; a guest (customer id 0) by the hashed email,
//! `bigcommerce:<store_hash>:guest-<digest>`.

use crate::bigcommerce::payload::{At, FieldError, Notification, json};
use crate::shopify::normalize::guest_local_part;
use crate::source::{FetchJob, Parsed, PrivacyRequest, PrivacySubject};
use nudge_model::{
    Cart, Checkout, Currency, Customer, CustomerId, Event, LineItem, MarketingConsent, Money, Order, Product,
    Source,
};
use time::OffsetDateTime;

/// The stored name of every BigCommerce delivery.
pub const SOURCE: &str = "bigcommerce";
/// The prefix of the topics fetched answers are stored under.
pub const FETCHED_PREFIX: &str = "bigcommerce/fetched/";

/// What a fetch job reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Order,
    Cart,
    Customer,
    Product,
}

impl Resource {
    pub fn as_str(self) -> &'static str {
        match self {
            Resource::Order => "order",
            Resource::Cart => "cart",
            Resource::Customer => "customer",
            Resource::Product => "product",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "order" => Resource::Order,
            "cart" => Resource::Cart,
            "customer" => Resource::Customer,
            "product" => Resource::Product,
            _ => return None,
        })
    }

    /// The topic its fetched answer is stored under.
    pub fn fetched_topic(self) -> String {
        format!("{FETCHED_PREFIX}{}", self.as_str())
    }
}

/// What a callback's scope asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScopeAction {
    Fetch(Resource),
    Erase,
    Ignore(String),
}

/// The action for a callback scope.
pub fn scope_action(scope: &str) -> ScopeAction {
    let fetch = ScopeAction::Fetch;
    match scope {
        "store/order/created"
        | "store/order/updated"
        | "store/order/statusUpdated"
        | "store/order/refund/created" => fetch(Resource::Order),
        "store/cart/created"
        | "store/cart/updated"
        | "store/cart/abandoned"
        | "store/cart/converted"
        | "store/cart/couponApplied" => fetch(Resource::Cart),
        "store/customer/created" | "store/customer/updated" => fetch(Resource::Customer),
        "store/customer/deleted" => ScopeAction::Erase,
        "store/product/created" | "store/product/updated" => fetch(Resource::Product),
        other => ScopeAction::Ignore(format!("bigcommerce scope `{other}` is not acted on")),
    }
}

/// The local part of a BigCommerce customer's key.
pub fn customer_id(store_hash: &str, id: &str) -> Result<CustomerId, String> {
    CustomerId::new(Source::BigCommerce, format!("{store_hash}:{id}"))
        .map_err(|e| format!("customer `{id}` of store `{store_hash}`: {e}"))
}

/// A guest's key: the store and the hashed email.
pub fn guest_customer_id(store_hash: &str, email: &str) -> Result<CustomerId, String> {
    customer_id(store_hash, &guest_local_part(email))
}

/// Parses a stored BigCommerce delivery: a callback or a fetched answer.
pub fn parse(store_hash: &str, topic: &str, body: &[u8]) -> Parsed {
    if let Some(resource) = topic.strip_prefix(FETCHED_PREFIX) {
        return match Resource::parse(resource) {
            Some(r) => match fetched(store_hash, r, body) {
                Ok(p) => p,
                Err(e) => Parsed::Quarantined(format!("bigcommerce {} answer: {e}", r.as_str())),
            },
            None => Parsed::Quarantined(format!("unknown bigcommerce fetched resource `{resource}`")),
        };
    }
    let n = match Notification::read(body) {
        Ok(n) => n,
        Err(e) => return Parsed::Quarantined(format!("bigcommerce callback: {e}")),
    };
    notification(store_hash, topic, &n)
}

fn notification(store_hash: &str, topic: &str, n: &Notification) -> Parsed {
    let action = match scope_action(&n.scope) {
        ScopeAction::Ignore(reason) => return Parsed::Ignored(reason),
        action => action,
    };
    let Some(id) = n.id.clone() else {
        return Parsed::Quarantined(format!("bigcommerce callback `{}`: `data.id`: missing", n.scope));
    };
    match action {
        ScopeAction::Fetch(resource) => {
            let valid = match resource {
                Resource::Cart => crate::bigcommerce::payload::is_token_id(&id),
                _ => !id.is_empty() && id != "0" && id.bytes().all(|b| b.is_ascii_digit()),
            };
            if !valid {
                return Parsed::Quarantined(format!(
                    "bigcommerce callback `{}`: `data.id`: `{id}` is not a {} id",
                    n.scope,
                    resource.as_str()
                ));
            }
            Parsed::Fetch(FetchJob {
                carry: None,
                source: SOURCE.into(),
                shop: Some(store_hash.to_string()),
                resource: resource.as_str().into(),
                id,
                topic: resource.fetched_topic(),
                notified_topic: if topic.is_empty() { n.scope.clone() } else { topic.to_string() },
            })
        }
        ScopeAction::Erase => match customer_id(store_hash, &id) {
            Ok(c) => Parsed::Privacy(PrivacyRequest::Erase {
                subject: PrivacySubject { customers: vec![c], email: None, phone: None },
                reference: Some(format!("bigcommerce:{store_hash}:hash:{}", n.hash)),
            }),
            Err(e) => Parsed::Quarantined(format!("bigcommerce callback `{}`: `data.id`: {e}", n.scope)),
        },
        ScopeAction::Ignore(reason) => Parsed::Ignored(reason),
    }
}

fn fetched(store_hash: &str, r: Resource, body: &[u8]) -> Result<Parsed, FieldError> {
    let v = json(body)?;
    let root = At::root(&v);
    let ev = match r {
        Resource::Order => return order(store_hash, &root),
        Resource::Cart => cart(store_hash, &root.field("data")?)?,
        Resource::Customer => {
            let data = root.field("data")?;
            let items = data.items()?;
            let Some(first) = items.first() else {
                return Ok(Parsed::Ignored("the customer is gone (the list answer is empty)".into()));
            };
            Event::CustomerUpserted(customer(store_hash, first)?)
        }
        Resource::Product => Event::ProductUpserted(product(&root.field("data")?)?),
    };
    Ok(Parsed::Events(vec![ev]))
}

fn id_error(at: &At<'_>, e: String) -> FieldError {
    at.fail(e)
}

fn opt_email(at: Option<At<'_>>) -> Result<Option<String>, FieldError> {
    Ok(at.map(|a| a.str().map(|s| s.trim().to_string())).transpose()?.filter(|s| !s.is_empty()))
}

fn opt_text(at: Option<At<'_>>) -> Result<Option<String>, FieldError> {
    Ok(at.map(|a| a.str().map(str::to_string)).transpose()?.filter(|s| !s.is_empty()))
}

/// The customer key of a record with a customer id (0: a guest) and maybe an email.
fn customer_key(
    store_hash: &str,
    id_at: Option<At<'_>>,
    email: Option<&str>,
) -> Result<Option<CustomerId>, FieldError> {
    if let Some(at) = id_at {
        let id = at.int_id()?;
        if id != "0" {
            return customer_id(store_hash, &id).map(Some).map_err(|e| id_error(&at, e));
        }
    }
    match email {
        Some(e) => guest_customer_id(store_hash, e)
            .map(Some)
            .map_err(|e| FieldError { path: "email".into(), problem: e }),
        None => Ok(None),
    }
}

fn currency(at: &At<'_>) -> Result<Currency, FieldError> {
    let code = at.str()?;
    Currency::parse(code).map_err(|e| at.fail(e.to_string()))
}

/// Statuses that undo a purchase: 4 Refunded, 5 Cancelled, 6 Declined.
pub const CANCELLED_STATUSES: [u32; 3] = [4, 5, 6];
/// Status 0, Incomplete: an order that was never placed.
pub const INCOMPLETE_STATUS: u32 = 0;

fn order(store_hash: &str, root: &At<'_>) -> Result<Parsed, FieldError> {
    let o = root.field("order")?;
    let id = o.field("id")?.int_id()?;
    let status_id = o.field("status_id")?.u32()?;
    if status_id == INCOMPLETE_STATUS {
        return Ok(Parsed::Ignored(format!("bigcommerce order {id} is incomplete (status 0)")));
    }
    let cur = currency(&o.field("currency_code")?)?;
    let created_at = o.field("date_created")?.instant()?;
    let updated_at = match o.opt("date_modified")? {
        Some(at) => at.instant()?,
        None => created_at,
    };
    let email = match o.opt("billing_address")? {
        Some(b) => opt_email(b.opt("email")?)?,
        None => None,
    };
    let customer = customer_key(store_hash, o.opt("customer_id")?, email.as_deref())?;
    let total = Money::new(o.field("total_inc_tax")?.decimal()?, cur);
    let mut line_items = Vec::new();
    for p in root.field("products")?.items()? {
        line_items.push(LineItem {
            product_id: p.opt("product_id")?.map(|a| a.int_id()).transpose()?,
            variant_id: p.opt("variant_id")?.map(|a| a.int_id()).transpose()?,
            sku: opt_text(p.opt("sku")?)?,
            title: p.field("name")?.str()?.to_string(),
            quantity: p.field("quantity")?.u32()?,
            price: Money::new(p.field("price_inc_tax")?.decimal()?, cur),
        });
    }
    let cart_id = opt_text(o.opt("cart_id")?)?;
    let cancelled = CANCELLED_STATUSES.contains(&status_id);
    let order = Order {
        name: Some(format!("#{id}")),
        id,
        customer,
        email,
        created_at,
        updated_at,
        cancelled_at: cancelled.then_some(updated_at),
        total,
        financial_status: opt_text(o.opt("payment_status")?)?.or(opt_text(o.opt("status")?)?),
        line_items,
        checkout_token: cart_id.clone(),
        cart_token: cart_id,
        accepts_marketing: None,
    };
    Ok(Parsed::Events(vec![if cancelled {
        Event::OrderCancelled(order)
    } else {
        Event::OrderUpserted(order)
    }]))
}

fn cart(store_hash: &str, d: &At<'_>) -> Result<Event, FieldError> {
    let token = d.field("id")?.token_id()?;
    let cur = currency(&d.field("currency")?.field("code")?)?;
    let created_at = d.field("created_time")?.instant()?;
    let updated_at = match d.opt("updated_time")? {
        Some(at) => at.instant()?,
        None => created_at,
    };
    let email = opt_email(d.opt("email")?)?;
    let customer = customer_key(store_hash, d.opt("customer_id")?, email.as_deref())?;
    let mut line_items = Vec::new();
    if let Some(li) = d.opt("line_items")? {
        for kind in ["physical_items", "digital_items", "custom_items"] {
            let Some(items) = li.opt(kind)? else { continue };
            for it in items.items()? {
                let price = match it.opt("sale_price")? {
                    Some(p) => p.decimal()?,
                    None => it.field("list_price")?.decimal()?,
                };
                line_items.push(LineItem {
                    product_id: it.opt("product_id")?.map(|a| a.int_id()).transpose()?,
                    variant_id: it.opt("variant_id")?.map(|a| a.int_id()).transpose()?,
                    sku: opt_text(it.opt("sku")?)?,
                    title: it.field("name")?.str()?.to_string(),
                    quantity: it.field("quantity")?.u32()?,
                    price: Money::new(price, cur),
                });
            }
        }
    }
    if customer.is_none() {
        return Ok(Event::CartUpserted(Cart { token, updated_at, line_items }));
    }
    let total = Money::new(d.field("cart_amount")?.decimal()?, cur);
    let recovery_url = match d.opt("redirect_urls")? {
        Some(r) => opt_text(r.opt("checkout_url")?)?,
        None => None,
    };
    Ok(Event::CheckoutUpserted(Checkout {
        cart_token: Some(token.clone()),
        token,
        customer,
        email,
        created_at,
        updated_at,
        completed_at: None,
        total,
        line_items,
        recovery_url,
        accepts_marketing: None,
    }))
}

fn customer(store_hash: &str, d: &At<'_>) -> Result<Customer, FieldError> {
    let id_at = d.field("id")?;
    let id = id_at.int_id()?;
    let key = customer_id(store_hash, &id).map_err(|e| id_error(&id_at, e))?;
    let created_at: Option<OffsetDateTime> = d.opt("date_created")?.map(|a| a.instant()).transpose()?;
    let updated_at = match (d.opt("date_modified")?, created_at) {
        (Some(at), _) => at.instant()?,
        (None, Some(c)) => c,
        (None, None) => return Err(d.field("date_modified").err().unwrap_or_else(|| d.fail("no date"))),
    };
    let email_consent = match d.opt("accepts_product_review_abandoned_cart_emails")? {
        Some(a) if a.bool()? => MarketingConsent::Subscribed,
        Some(_) => MarketingConsent::NotSubscribed,
        None => MarketingConsent::Unknown,
    };
    Ok(Customer {
        id: key,
        email: opt_email(d.opt("email")?)?,
        first_name: opt_text(d.opt("first_name")?)?,
        last_name: opt_text(d.opt("last_name")?)?,
        created_at,
        updated_at,
        email_consent,
        tags: Vec::new(),
        sms_consent: MarketingConsent::Unknown,
    })
}

fn product(d: &At<'_>) -> Result<Product, FieldError> {
    let id = d.field("id")?.int_id()?;
    let updated_at = match d.opt("date_modified")? {
        Some(a) => a.instant()?,
        None => d.field("date_created")?.instant()?,
    };
    // The catalogue answer's price and visibility, when it has them (a hidden product is not on sale).
    let price = match d.opt("price")? {
        Some(p) => Some(p.decimal()?.to_string()),
        None => None,
    };
    let available = match d.opt("is_visible")? {
        Some(v) => Some(v.bool()?),
        None => None,
    };
    Ok(Product {
        id,
        title: d.field("name")?.str()?.to_string(),
        category: None,
        vendor: None,
        updated_at,
        url: None,
        image_url: None,
        price,
        currency: None,
        available,
        tags: Vec::new(),
    })
}
