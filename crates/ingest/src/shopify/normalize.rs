//! Shopify wire structs → canonical `nudge_model::Event`s and compliance requests.
//!
//! Lives here: the topic → event mapping, the customer key (platform id, or a hashed guest key when a
//! checkout or order has only an email), the currency fallback order, `updated_at` fallbacks, and the
//! consent mapping, plus [`NormalizeError`], whose message is what the server stores next to a
//! quarantined body. Not here: signatures and headers (`verify`) or reading JSON fields (`payload`).

use crate::shopify::payload::{
    Amount, CartWire, CheckoutWire, ComplianceKind, ComplianceWire, CurrencyFields, CustomerRef,
    CustomerWire, FieldError, FieldProblem, LineItemWire, Obj, OrderWire, ProductWire, ShopifyId,
};
use crate::shopify::topic::Topic;
use nudge_model::{
    Cart, Checkout, Currency, Customer, CustomerId, Event, LineItem, MarketingConsent, Money, Order, Product,
    Source,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// What one delivery's body means to nudge.
#[derive(Debug, Clone, PartialEq)]
pub enum Normalized {
    /// Canonical events, in the order they should be applied.
    Events(Vec<Event>),
    /// A topic nudge does not handle; the delivery is acknowledged and recorded, not processed.
    Ignored { reason: String },
    /// One of the mandatory privacy topics.
    Compliance(ComplianceRequest),
}

/// A mandatory privacy request. Persisted as a job by the server, hence serialisable.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ComplianceRequest {
    /// `customers/data_request`: gather what nudge holds about the customer for the merchant.
    CustomerDataRequest {
        shop: ComplianceShop,
        customer: ComplianceCustomer,
        /// Shopify order ids, exact text.
        orders_requested: Vec<String>,
        /// `data_request.id`, the merchant-facing reference for this request.
        data_request_id: Option<String>,
    },
    /// `customers/redact`: erase the customer here and at every destination.
    CustomerRedact {
        shop: ComplianceShop,
        customer: ComplianceCustomer,
        /// Shopify order ids, exact text.
        orders_to_redact: Vec<String>,
    },
    /// `shop/redact`: erase everything held for the shop.
    ShopRedact { shop: ComplianceShop },
}

impl ComplianceRequest {
    pub fn shop(&self) -> &ComplianceShop {
        match self {
            ComplianceRequest::CustomerDataRequest { shop, .. }
            | ComplianceRequest::CustomerRedact { shop, .. }
            | ComplianceRequest::ShopRedact { shop } => shop,
        }
    }

    /// The customer the request is about; `None` for `shop/redact`.
    pub fn customer(&self) -> Option<&ComplianceCustomer> {
        match self {
            ComplianceRequest::CustomerDataRequest { customer, .. }
            | ComplianceRequest::CustomerRedact { customer, .. } => Some(customer),
            ComplianceRequest::ShopRedact { .. } => None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComplianceShop {
    /// `shop_id`, exact text.
    pub id: Option<String>,
    /// The lower-cased shop domain.
    pub domain: String,
}

/// Who a customer compliance request is about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ComplianceCustomer {
    /// The key for `customer.id`.
    pub id: Option<CustomerId>,
    /// The guest key for `customer.email`: orders and checkouts placed without an account were stored
    /// under it, so erasure and export must cover it too.
    pub guest_id: Option<CustomerId>,
    pub email: Option<String>,
    pub phone: Option<String>,
}

impl ComplianceCustomer {
    /// Every key this customer's data may be stored under.
    pub fn keys(&self) -> impl Iterator<Item = &CustomerId> {
        self.id.iter().chain(self.guest_id.iter())
    }
}

/// Why a body could not be turned into canonical events. The message is stored with the quarantined
/// body, so it names the topic and, where there is one, the exact field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum NormalizeError {
    #[error("{topic}: the body is empty")]
    EmptyBody { topic: Topic },
    #[error("{topic}: invalid JSON at line {line} column {column}: {message}")]
    InvalidJson { topic: Topic, line: usize, column: usize, message: String },
    #[error("{topic}: expected a JSON object at the top level, found {found}")]
    NotAnObject { topic: Topic, found: String },
    #[error("{topic}: field `{field}`: {problem}")]
    Field { topic: Topic, field: String, problem: FieldProblem },
    #[error("{topic}: the body is for shop `{body}` but the delivery came from `{delivery}`")]
    ShopMismatch { topic: Topic, delivery: String, body: String },
}

impl NormalizeError {
    fn field(topic: &Topic, e: FieldError) -> Self {
        NormalizeError::Field { topic: topic.clone(), field: e.field, problem: e.problem }
    }
}

/// Turns the body of a delivery on `topic` from `shop_domain` into what it means to nudge.
///
/// Pure and total: any byte string gives `Ok` or a descriptive `Err`, never a panic. Unknown fields are
/// ignored; unknown topics give [`Normalized::Ignored`] without reading the body. `shop_domain` (from
/// [`DeliveryMeta`](crate::shopify::DeliveryMeta)) is what a compliance body's own `shop_domain` must
/// match, so a request can never erase another shop's data; the other topics do not use it.
pub fn normalize(topic: &Topic, shop_domain: &str, body: &[u8]) -> Result<Normalized, NormalizeError> {
    normalize_with(topic, shop_domain, body, crate::shopify::payload::parse_body)
}

/// [`normalize`] with the given JSON parser (tests compare the pruning parser with a full one).
fn normalize_with(
    topic: &Topic,
    shop_domain: &str,
    body: &[u8],
    parse: fn(&[u8]) -> Result<serde_json::Value, serde_json::Error>,
) -> Result<Normalized, NormalizeError> {
    if let Topic::Unknown(name) = topic {
        return Ok(Normalized::Ignored {
            reason: format!("topic `{name}` is not one nudge handles; the body was not read"),
        });
    }
    if body.trim_ascii().is_empty() {
        return Err(NormalizeError::EmptyBody { topic: topic.clone() });
    }
    let value = parse(body).map_err(|e| invalid_json(topic, &e))?;
    let root =
        Obj::root(&value).map_err(|found| NormalizeError::NotAnObject { topic: topic.clone(), found })?;
    let fail = |e: FieldError| NormalizeError::field(topic, e);

    let event = match topic {
        Topic::OrdersCreate | Topic::OrdersUpdated | Topic::OrdersPaid => {
            Event::OrderUpserted(order(OrderWire::read(&root).map_err(fail)?).map_err(fail)?)
        }
        Topic::OrdersCancelled => {
            Event::OrderCancelled(order(OrderWire::read(&root).map_err(fail)?).map_err(fail)?)
        }
        Topic::CheckoutsCreate | Topic::CheckoutsUpdate => {
            Event::CheckoutUpserted(checkout(CheckoutWire::read(&root).map_err(fail)?).map_err(fail)?)
        }
        Topic::CustomersCreate | Topic::CustomersUpdate => {
            Event::CustomerUpserted(customer(CustomerWire::read(&root).map_err(fail)?).map_err(fail)?)
        }
        Topic::CartsCreate | Topic::CartsUpdate => {
            Event::CartUpserted(cart(CartWire::read(&root).map_err(fail)?).map_err(fail)?)
        }
        Topic::ProductsCreate | Topic::ProductsUpdate => Event::ProductUpserted(
            product(ProductWire::read(&root).map_err(fail)?, shop_domain).map_err(fail)?,
        ),
        Topic::CustomersDataRequest => {
            return compliance(topic, shop_domain, &root, ComplianceKind::DataRequest);
        }
        Topic::CustomersRedact => {
            return compliance(topic, shop_domain, &root, ComplianceKind::CustomerRedact);
        }
        Topic::ShopRedact => return compliance(topic, shop_domain, &root, ComplianceKind::ShopRedact),
        Topic::Unknown(_) => unreachable!("unknown topics returned above"),
    };
    Ok(Normalized::Events(vec![event]))
}

/// The key of a customer who checked out without an account: `guest-` and the first 16 hex digits of
/// the SHA-256 of the trimmed, lower-cased email, so no raw email ends up in a key.
pub fn guest_customer_id(email: &str) -> CustomerId {
    CustomerId::new(Source::Shopify, guest_local_part(email))
        .expect("`guest-` plus hex digits is a valid id part")
}

/// `guest-` and the first 16 hex digits of the SHA-256 of the trimmed, lower-cased email: the local part
/// of a guest's key on every platform.
pub fn guest_local_part(email: &str) -> String {
    let digest = Sha256::digest(email.trim().to_lowercase().as_bytes());
    format!("guest-{}", &hex::encode(digest)[..16])
}

fn order(w: OrderWire) -> Result<Order, FieldError> {
    let currency = resolve_currency(&w.currency, &w.total_price, &w.line_items)?;
    let email = w.email.or_else(|| w.customer.as_ref().and_then(|c| c.email.clone()));
    Ok(Order {
        id: w.id.into_string(),
        name: w.name,
        customer: customer_key(w.customer.as_ref(), email.as_deref()),
        email,
        created_at: w.created_at,
        updated_at: w.updated_at.unwrap_or(w.created_at),
        cancelled_at: w.cancelled_at,
        total: Money::new(w.total_price.amount, currency),
        financial_status: w.financial_status,
        line_items: line_items(w.line_items, currency),
        checkout_token: w.checkout_token,
        cart_token: w.cart_token,
        accepts_marketing: w.buyer_accepts_marketing,
    })
}

fn checkout(w: CheckoutWire) -> Result<Checkout, FieldError> {
    let currency = resolve_currency(&w.currency, &w.total_price, &w.line_items)?;
    let email = w.email.or_else(|| w.customer.as_ref().and_then(|c| c.email.clone()));
    Ok(Checkout {
        token: w.token,
        cart_token: w.cart_token,
        customer: customer_key(w.customer.as_ref(), email.as_deref()),
        email,
        created_at: w.created_at,
        updated_at: w.updated_at.unwrap_or(w.created_at),
        completed_at: w.completed_at,
        total: Money::new(w.total_price.amount, currency),
        line_items: line_items(w.line_items, currency),
        recovery_url: w.abandoned_checkout_url,
        accepts_marketing: w.buyer_accepts_marketing,
    })
}

fn customer(w: CustomerWire) -> Result<Customer, FieldError> {
    let updated_at = w
        .updated_at
        .or(w.created_at)
        .ok_or(FieldError { field: "updated_at".into(), problem: FieldProblem::Missing })?;
    let email_consent = match (w.email_consent_state.as_deref(), w.accepts_marketing) {
        (Some(state), _) => consent_from_state(state),
        (None, Some(true)) => MarketingConsent::Subscribed,
        (None, Some(false)) => MarketingConsent::NotSubscribed,
        (None, None) => MarketingConsent::Unknown,
    };
    // SMS consent has no legacy flag on the customer resource: the state or nothing.
    let sms_consent = w.sms_consent_state.as_deref().map_or(MarketingConsent::Unknown, consent_from_state);
    Ok(Customer {
        id: platform_customer_id(&w.id),
        email: w.email,
        first_name: w.first_name,
        last_name: w.last_name,
        created_at: w.created_at,
        updated_at,
        email_consent,
        tags: w.tags.as_deref().map(split_tags).unwrap_or_default(),
        sms_consent,
    })
}

/// Shopify's `tags` string (`"vip, wholesale"`) as a list: split on commas, each tag trimmed, empty
/// pieces dropped, the order kept. Shopify treats tags case-insensitively (`VIP` and `vip` are one tag),
/// so a repeat in other case is dropped too and the first spelling is the one kept.
fn split_tags(raw: &str) -> Vec<String> {
    let mut seen = std::collections::HashSet::new();
    raw.split(',')
        .map(str::trim)
        .filter(|tag| !tag.is_empty() && seen.insert(tag.to_lowercase()))
        .map(str::to_string)
        .collect()
}

fn cart(w: CartWire) -> Result<Cart, FieldError> {
    let updated_at = w
        .updated_at
        .or(w.created_at)
        .ok_or(FieldError { field: "updated_at".into(), problem: FieldProblem::Missing })?;
    // A cart without line items carries no money, so only a non-empty cart needs a currency.
    let line_items = if w.line_items.is_empty() {
        Vec::new()
    } else {
        let candidates =
            [("currency", w.currency.as_deref())].into_iter().chain(line_item_bag_currency(&w.line_items));
        let currency = first_currency(candidates)?;
        line_items(w.line_items, currency)
    };
    Ok(Cart { token: w.token, updated_at, line_items })
}

fn product(w: ProductWire, shop_domain: &str) -> Result<Product, FieldError> {
    let updated_at = w
        .updated_at
        .or(w.created_at)
        .ok_or(FieldError { field: "updated_at".into(), problem: FieldProblem::Missing })?;
    // The storefront page: the payload's own URL, else the handle under the shop's domain (the
    // `*.myshopify.com` domain redirects to the shop's primary domain).
    let url = w.online_store_url.or_else(|| {
        let domain = shop_domain.trim();
        let handle = w.handle.as_deref().map(str::trim).filter(|h| !h.is_empty())?;
        (!domain.is_empty()).then(|| format!("https://{domain}/products/{handle}"))
    });
    // Buyable: active (a draft or archived product is not on sale) and, when every variant reports its
    // stock, some variant in stock or sold when out of stock (`inventory_policy = continue`).
    let active = w.status.as_deref().is_none_or(|s| s.trim().eq_ignore_ascii_case("active"));
    let stock_known = !w.variants.is_empty() && w.variants.iter().all(|v| v.inventory_quantity.is_some());
    let in_stock = !stock_known
        || w.variants.iter().any(|v| {
            v.inventory_quantity.is_some_and(|q| q > 0)
                || v.inventory_policy.as_deref().is_some_and(|p| p.eq_ignore_ascii_case("continue"))
        });
    let stated = w.status.is_some() || stock_known;
    Ok(Product {
        id: w.id.into_string(),
        title: w.title,
        category: w.product_type,
        vendor: w.vendor,
        updated_at,
        url,
        image_url: w.image_src,
        price: w.variants.first().and_then(|v| v.price).map(|p| p.to_string()),
        // A product body carries no currency (prices are in the shop's currency); orders tell it.
        currency: None,
        available: stated.then_some(active && in_stock),
        tags: w.tags.as_deref().map(split_tags).unwrap_or_default(),
    })
}

fn compliance(
    topic: &Topic,
    shop_domain: &str,
    root: &Obj<'_>,
    kind: ComplianceKind,
) -> Result<Normalized, NormalizeError> {
    let w = ComplianceWire::read(root, kind).map_err(|e| NormalizeError::field(topic, e))?;
    let delivery = shop_domain.trim().to_ascii_lowercase();
    if let Some(body) = &w.shop_domain
        && !body.trim().eq_ignore_ascii_case(&delivery)
    {
        return Err(NormalizeError::ShopMismatch { topic: topic.clone(), delivery, body: body.clone() });
    }
    let shop = ComplianceShop { id: w.shop_id.map(ShopifyId::into_string), domain: delivery };
    let orders: Vec<String> = w.orders.into_iter().map(ShopifyId::into_string).collect();
    let customer = || -> Result<ComplianceCustomer, NormalizeError> {
        if w.customer_id.is_none() && w.customer_email.is_none() {
            return Err(NormalizeError::Field {
                topic: topic.clone(),
                field: "customer".into(),
                problem: FieldProblem::NoCustomerIdentity,
            });
        }
        Ok(ComplianceCustomer {
            id: w.customer_id.as_ref().map(platform_customer_id),
            guest_id: w.customer_email.as_deref().map(guest_customer_id),
            email: w.customer_email.clone(),
            phone: w.customer_phone.clone(),
        })
    };
    let request = match kind {
        ComplianceKind::DataRequest => ComplianceRequest::CustomerDataRequest {
            customer: customer()?,
            shop,
            orders_requested: orders,
            data_request_id: w.data_request_id.clone().map(ShopifyId::into_string),
        },
        ComplianceKind::CustomerRedact => {
            ComplianceRequest::CustomerRedact { customer: customer()?, shop, orders_to_redact: orders }
        }
        ComplianceKind::ShopRedact => ComplianceRequest::ShopRedact { shop },
    };
    Ok(Normalized::Compliance(request))
}

fn platform_customer_id(id: &ShopifyId) -> CustomerId {
    CustomerId::new(Source::Shopify, id.as_str()).expect("a 64-bit id's digits are a valid id part")
}

/// The platform customer when there is one, else a guest key from the email, else nobody.
fn customer_key(customer: Option<&CustomerRef>, email: Option<&str>) -> Option<CustomerId> {
    match customer.and_then(|c| c.id.as_ref()) {
        Some(id) => Some(platform_customer_id(id)),
        None => email.map(guest_customer_id),
    }
}

/// `email_marketing_consent.state` or `sms_marketing_consent.state` as Shopify spells it; states nudge
/// does not know (such as `redacted` or `invalid`) are `Unknown`, which no flow treats as permission to
/// email or text.
fn consent_from_state(state: &str) -> MarketingConsent {
    match state.trim().to_ascii_lowercase().as_str() {
        "subscribed" => MarketingConsent::Subscribed,
        "not_subscribed" => MarketingConsent::NotSubscribed,
        "unsubscribed" => MarketingConsent::Unsubscribed,
        "pending" => MarketingConsent::Pending,
        _ => MarketingConsent::Unknown,
    }
}

/// The currency of an order or checkout.
///
/// `total_price` is in the shop's currency, so the shop-currency sources come first: `currency`, then
/// the total's shop-money bag; `presentment_currency` (the buyer's currency, equal to the shop's in a
/// single-currency store) and line-item bags are last resorts for trimmed payloads.
fn resolve_currency(
    fields: &CurrencyFields,
    total: &Amount,
    items: &[LineItemWire],
) -> Result<Currency, FieldError> {
    let candidates = [
        ("currency", fields.currency.as_deref()),
        ("total_price_set.shop_money.currency_code", total.bag_currency.as_deref()),
        ("presentment_currency", fields.presentment_currency.as_deref()),
    ]
    .into_iter()
    .chain(line_item_bag_currency(items));
    first_currency(candidates)
}

fn line_item_bag_currency(items: &[LineItemWire]) -> impl Iterator<Item = (&'static str, Option<&str>)> {
    let bag = items.iter().find_map(|i| i.price.bag_currency.as_deref());
    std::iter::once(("line_items[].price_set.shop_money.currency_code", bag))
}

/// The first present candidate, which must then be valid: a malformed `currency` is an error rather
/// than a reason to quietly use a fallback.
fn first_currency<'a>(
    candidates: impl Iterator<Item = (&'static str, Option<&'a str>)>,
) -> Result<Currency, FieldError> {
    for (field, value) in candidates {
        if let Some(code) = value {
            return Currency::parse(code.trim()).map_err(|_| FieldError {
                field: field.to_string(),
                problem: FieldProblem::NotCurrency(code.to_string()),
            });
        }
    }
    Err(FieldError { field: "currency".into(), problem: FieldProblem::NoCurrency })
}

/// Line items priced in the order's currency (Shopify's `price` is in shop money like the total).
fn line_items(items: Vec<LineItemWire>, currency: Currency) -> Vec<LineItem> {
    items
        .into_iter()
        .map(|i| LineItem {
            product_id: i.product_id.map(ShopifyId::into_string),
            variant_id: i.variant_id.map(ShopifyId::into_string),
            sku: i.sku,
            title: i.title,
            quantity: i.quantity,
            price: Money::new(i.price.amount, currency),
        })
        .collect()
}

fn invalid_json(topic: &Topic, e: &serde_json::Error) -> NormalizeError {
    let full = e.to_string();
    let suffix = format!(" at line {} column {}", e.line(), e.column());
    let message = full.strip_suffix(&suffix).unwrap_or(&full).to_string();
    NormalizeError::InvalidJson { topic: topic.clone(), line: e.line(), column: e.column(), message }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn product_of(body: serde_json::Value) -> Product {
        let bytes = serde_json::to_vec(&body).unwrap();
        match normalize(&Topic::ProductsUpdate, "demo-store.myshopify.com", &bytes).unwrap() {
            Normalized::Events(evs) => match evs.into_iter().next() {
                Some(Event::ProductUpserted(p)) => p,
                other => panic!("{other:?}"),
            },
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn products_carry_their_catalogue_facts() {
        use crate::shopify::fixtures::ProductFixture;
        let at = time::macros::datetime!(2026-05-01 10:00 UTC);
        let f = ProductFixture::new(9_100_000_001, "Organic Tee", at)
            .price("24.90")
            .tags("consumable,  summer ,")
            .image("https://cdn.example/tee.jpg");
        let p = product_of(f.to_json());
        assert_eq!(p.url.as_deref(), Some("https://demo-store.myshopify.com/products/organic-tee"));
        assert_eq!(p.image_url.as_deref(), Some("https://cdn.example/tee.jpg"));
        assert_eq!(p.price.as_deref(), Some("24.90"));
        assert_eq!(p.currency, None, "a product body carries no currency");
        assert_eq!(p.available, Some(true));
        assert_eq!(p.tags, ["consumable", "summer"]);
        // Out of stock and not sold when out of stock; a draft; the storefront URL when the body has one.
        assert_eq!(product_of(f.clone().inventory_quantity(0).to_json()).available, Some(false));
        let mut body = f.clone().inventory_quantity(0).to_json();
        body["variants"][0]["inventory_policy"] = "continue".into();
        assert_eq!(product_of(body).available, Some(true));
        assert_eq!(product_of(f.clone().status("draft").to_json()).available, Some(false));
        let mut body = f.to_json();
        body["online_store_url"] = "https://shop.example/products/tee".into();
        body["images"] = serde_json::json!([]);
        body["image"] = serde_json::json!({"src": "https://cdn.example/main.jpg"});
        let p = product_of(body);
        assert_eq!(p.url.as_deref(), Some("https://shop.example/products/tee"));
        assert_eq!(p.image_url.as_deref(), Some("https://cdn.example/main.jpg"));
        // A minimal body says nothing about availability.
        let p = product_of(serde_json::json!({"id": 7, "title": "T", "updated_at": "2026-05-01T10:00:00Z"}));
        assert_eq!((p.available, p.url, p.price), (None, None, None));
    }

    #[test]
    fn guest_keys_ignore_case_and_blanks() {
        let a = guest_customer_id("  Lena@Example.org ");
        assert_eq!(a, guest_customer_id("lena@example.org"));
        assert!(a.local().starts_with("guest-"));
        assert_eq!(a.local().len(), "guest-".len() + 16);
        assert_ne!(a, guest_customer_id("ada@example.org"));
    }

    #[test]
    fn consent_states() {
        assert_eq!(consent_from_state("subscribed"), MarketingConsent::Subscribed);
        assert_eq!(consent_from_state("NOT_SUBSCRIBED"), MarketingConsent::NotSubscribed);
        assert_eq!(consent_from_state("unsubscribed"), MarketingConsent::Unsubscribed);
        assert_eq!(consent_from_state("pending"), MarketingConsent::Pending);
        assert_eq!(consent_from_state("redacted"), MarketingConsent::Unknown);
    }

    #[test]
    fn tags_are_split_trimmed_and_deduplicated_in_order() {
        assert_eq!(split_tags("vip, wholesale"), ["vip", "wholesale"]);
        assert_eq!(split_tags("vip,wholesale"), ["vip", "wholesale"]);
        assert_eq!(split_tags("  vip ,\twholesale  ,\n eu "), ["vip", "wholesale", "eu"]);
        assert_eq!(split_tags("b, a, c"), ["b", "a", "c"], "Shopify's order is kept, not sorted");
        assert_eq!(split_tags("Big Spender, early access"), ["Big Spender", "early access"]);
        assert_eq!(split_tags(""), Vec::<String>::new());
        assert_eq!(split_tags(" , ,, "), Vec::<String>::new());
        assert_eq!(split_tags(",vip,,wholesale,"), ["vip", "wholesale"]);
        assert_eq!(split_tags("vip, wholesale, vip"), ["vip", "wholesale"]);
        assert_eq!(split_tags("VIP, wholesale, vip, Wholesale"), ["VIP", "wholesale"], "first spelling wins");
        assert_eq!(split_tags("Ärger, ärger"), ["Ärger"]);
    }

    /// Every path of `v` (objects and arrays, depth first), as keys and indexes.
    fn paths(v: &serde_json::Value, prefix: &mut Vec<String>, out: &mut Vec<Vec<String>>) {
        let children: Vec<(String, &serde_json::Value)> = match v {
            serde_json::Value::Object(m) => m.iter().map(|(k, c)| (k.clone(), c)).collect(),
            serde_json::Value::Array(a) => a.iter().enumerate().map(|(i, c)| (i.to_string(), c)).collect(),
            _ => return,
        };
        for (k, c) in children {
            prefix.push(k);
            out.push(prefix.clone());
            paths(c, prefix, out);
            prefix.pop();
        }
    }

    fn replace(v: &mut serde_json::Value, path: &[String], with: serde_json::Value) {
        let mut at = v;
        for p in path {
            at = match at {
                serde_json::Value::Object(m) => m.get_mut(p).expect("path exists"),
                serde_json::Value::Array(a) => &mut a[p.parse::<usize>().expect("index")],
                _ => unreachable!("paths only descend into containers"),
            };
        }
        *at = with;
    }

    /// The pruning parser must change nothing: for every fixture body, with every field in turn replaced
    /// by values of every JSON kind, and cut short at many points, the outcome (events or the exact error)
    /// equals the one from parsing the whole tree.
    #[test]
    fn pruned_parsing_gives_the_same_outcome_as_the_full_tree() {
        use crate::shopify::fixtures::*;
        let at = time::OffsetDateTime::from_unix_timestamp(1_780_000_000).expect("valid instant");
        let customer = CustomerFixture::new(7_000_000_000_000_001, Some("Lena@Example.org"), at)
            .consent(Some("subscribed"))
            .tags(&["vip", "wholesale"])
            .sms_consent(Some("pending"));
        let item =
            LineItemFixture::new(9_100_000_001, "Tee", 2, "19.99").variant(9_200_000_001).sku(Some("T-1"));
        let shop = "s.myshopify.com";
        let bodies: Vec<(&str, serde_json::Value)> = vec![
            (
                "orders/create",
                order_json(
                    &OrderFixture::new(5_000_000_001, at).customer(customer.clone()).line_item(item.clone()),
                ),
            ),
            (
                "orders/cancelled",
                order_json(&OrderFixture::new(5_000_000_002, at).guest("g@example.org").cancelled(at)),
            ),
            (
                "checkouts/update",
                checkout_json(
                    &CheckoutFixture::new(3_300_001, at).customer(customer.clone()).line_item(item.clone()),
                ),
            ),
            ("customers/update", customer_json(&customer)),
            ("carts/update", cart_json(&CartFixture::new("c0ffee", at).line_item(item.clone()))),
            ("products/create", product_json(&ProductFixture::new(9_100_000_001, "Tee", at).vendor("Acme"))),
            ("customers/data_request", customers_data_request_json(shop, 7, "a@example.org", &[1, 2], 9001)),
            ("customers/redact", customers_redact_json(shop, 7, "a@example.org", &[3])),
            ("shop/redact", shop_redact_json(shop)),
        ];
        let kinds: Vec<serde_json::Value> = [
            "null",
            "true",
            "0",
            "-1",
            "1.5e3",
            "123456789012345678901234567890",
            "\"\"",
            "\" x \"",
            "\"2026-01-01T00:00:00Z\"",
            "\"12.50\"",
            "\"EUR\"",
            "[]",
            "[1]",
            "{}",
            "{\"id\": 1, \"amount\": \"1\"}",
        ]
        .iter()
        .map(|t| serde_json::from_str(t).expect("valid JSON"))
        .collect();
        let full: fn(&[u8]) -> Result<serde_json::Value, serde_json::Error> = |b| serde_json::from_slice(b);
        // Malformed JSON is refused at the same line and column; serde_json may word the reason differently
        // when it skips a value instead of building it.
        let same = |topic: &Topic, body: &[u8]| match (
            normalize(topic, shop, body),
            normalize_with(topic, shop, body, full),
        ) {
            (
                Err(NormalizeError::InvalidJson { line, column, .. }),
                Err(NormalizeError::InvalidJson { line: l2, column: c2, .. }),
            ) => assert_eq!((line, column), (l2, c2), "{}", String::from_utf8_lossy(body)),
            (pruned, whole) => {
                assert_eq!(pruned, whole, "{} {}", topic.as_str(), String::from_utf8_lossy(body))
            }
        };
        let mut checked = 0;
        for (topic, body) in &bodies {
            let topic = Topic::parse(topic);
            let bytes = to_bytes(body);
            assert!(normalize(&topic, shop, &bytes).is_ok(), "{} fixture normalises", topic.as_str());
            same(&topic, &bytes);
            for cut in (0..bytes.len()).step_by(7) {
                same(&topic, &bytes[..cut]);
            }
            let mut all = Vec::new();
            paths(body, &mut Vec::new(), &mut all);
            for path in &all {
                for kind in &kinds {
                    let mut changed = body.clone();
                    replace(&mut changed, path, kind.clone());
                    same(&topic, &to_bytes(&changed));
                    checked += 1;
                }
            }
        }
        assert!(checked > 1000, "{checked} variants checked");
    }

    #[test]
    fn read_keys_are_unique_and_in_order() {
        let keys = crate::shopify::payload::READ_KEYS;
        assert!(keys.windows(2).all(|w| w[0] < w[1]), "READ_KEYS must be unique (kept in order to read)");
    }

    #[test]
    fn invalid_json_message_has_position_once() {
        let err = normalize(&Topic::OrdersCreate, "s.myshopify.com", b"{\"id\": 1,,}").unwrap_err();
        let text = err.to_string();
        assert!(text.starts_with("orders/create: invalid JSON at line 1 column 10: "), "{text}");
        assert_eq!(text.matches("line").count(), 1, "{text}");
    }
}
