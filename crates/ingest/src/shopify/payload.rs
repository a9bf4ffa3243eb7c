//! Shopify webhook bodies as typed wire structs: the fields nudge relies on, read from the JSON with the
//! exact path of any field that is wrong.
//!
//! Lives here: one struct per payload shape (order, checkout, customer, cart, product, compliance
//! request), each holding already-parsed values (ids as exact text, amounts as exact decimals, instants
//! in UTC), and the leaf parsers for those values. Unknown fields are ignored so new API versions keep
//! working, and `null` means the same as absent. Not here: choosing between fallbacks, guest keys,
//! consent mapping or anything else that decides what the canonical event says; that is `normalize`.
//!
//! The structs are read from a `serde_json::Value` by hand rather than by `#[derive(Deserialize)]` so
//! every error names its field path (`line_items[2].price`), which derived code cannot report. The JSON
//! is parsed with `arbitrary_precision`, so a number keeps the exact text Shopify sent: ids above 2^53
//! and amounts never pass through `f64`. [`parse_body`] builds only the keys these readers look up
//! ([`READ_KEYS`]) and skips the rest of the body (addresses, tax and shipping lines, fulfilment details,
//! …) without building it; a unit test checks that the outcome equals reading the whole tree.

use rust_decimal::Decimal;
use serde_json::{Map, Value};
use std::str::FromStr;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// A field whose value cannot be used, with the path to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// Dotted path from the body's root, e.g. `customer.id` or `line_items[0].price`.
    pub field: String,
    pub problem: FieldProblem,
}

/// What is wrong with one field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FieldProblem {
    #[error("required but missing or null")]
    Missing,
    #[error("expected {expected}, found {found}")]
    WrongType { expected: &'static str, found: String },
    #[error("`{0}` is not a decimal")]
    NotDecimal(String),
    #[error("`{0}` is not an RFC 3339 timestamp with an offset")]
    NotTimestamp(String),
    #[error("`{0}` is not a positive 64-bit integer id")]
    NotId(String),
    #[error("`{0}` is not a quantity (a whole number from 0 to 4294967295)")]
    NotQuantity(String),
    #[error("`{0}` is not a three-letter ISO 4217 currency code")]
    NotCurrency(String),
    #[error("an empty string is not a usable value here")]
    Empty,
    #[error(
        "no currency: none of `currency`, `total_price_set.shop_money.currency_code`, \
         `presentment_currency` or a line item's `price_set.shop_money.currency_code` is present"
    )]
    NoCurrency,
    #[error("the compliance request names neither `customer.id` nor `customer.email`")]
    NoCustomerIdentity,
}

/// A Shopify numeric id (order, customer, product, variant, line item, shop) as exact decimal text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShopifyId(String);

impl ShopifyId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

/// An amount as Shopify writes it (`"59.97"`) together with the currency its money bag names, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Amount {
    pub amount: Decimal,
    /// `<field>_set.shop_money.currency_code`, when the payload has that money bag.
    pub bag_currency: Option<String>,
}

/// The nested `customer` object of an order or checkout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerRef {
    pub id: Option<ShopifyId>,
    pub email: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineItemWire {
    pub product_id: Option<ShopifyId>,
    pub variant_id: Option<ShopifyId>,
    pub sku: Option<String>,
    /// `title`, or `name` when a payload has no title.
    pub title: String,
    pub quantity: u32,
    /// Unit price (`price`, or `price_set.shop_money.amount`).
    pub price: Amount,
}

/// Currency fields shared by orders and checkouts, in the order `normalize` consults them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CurrencyFields {
    pub currency: Option<String>,
    pub presentment_currency: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderWire {
    pub id: ShopifyId,
    pub name: Option<String>,
    pub email: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: Option<OffsetDateTime>,
    pub cancelled_at: Option<OffsetDateTime>,
    pub total_price: Amount,
    pub currency: CurrencyFields,
    pub financial_status: Option<String>,
    pub checkout_token: Option<String>,
    pub cart_token: Option<String>,
    pub buyer_accepts_marketing: Option<bool>,
    pub customer: Option<CustomerRef>,
    pub line_items: Vec<LineItemWire>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CheckoutWire {
    pub token: String,
    pub cart_token: Option<String>,
    pub email: Option<String>,
    pub created_at: OffsetDateTime,
    pub updated_at: Option<OffsetDateTime>,
    pub completed_at: Option<OffsetDateTime>,
    pub total_price: Amount,
    pub currency: CurrencyFields,
    pub abandoned_checkout_url: Option<String>,
    pub buyer_accepts_marketing: Option<bool>,
    pub customer: Option<CustomerRef>,
    pub line_items: Vec<LineItemWire>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerWire {
    pub id: ShopifyId,
    pub email: Option<String>,
    pub first_name: Option<String>,
    pub last_name: Option<String>,
    pub created_at: Option<OffsetDateTime>,
    pub updated_at: Option<OffsetDateTime>,
    /// `email_marketing_consent.state`, verbatim.
    pub email_consent_state: Option<String>,
    /// The legacy `accepts_marketing` flag of older API versions.
    pub accepts_marketing: Option<bool>,
    /// `tags`, verbatim: Shopify's comma-separated list (`"vip, wholesale"`), split by `normalize`.
    pub tags: Option<String>,
    /// `sms_marketing_consent.state`, verbatim.
    pub sms_consent_state: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CartWire {
    /// `token`, or the string `id` (which equals the token) when there is no `token`.
    pub token: String,
    pub currency: Option<String>,
    pub created_at: Option<OffsetDateTime>,
    pub updated_at: Option<OffsetDateTime>,
    pub line_items: Vec<LineItemWire>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProductWire {
    pub id: ShopifyId,
    pub title: String,
    pub product_type: Option<String>,
    pub vendor: Option<String>,
    pub created_at: Option<OffsetDateTime>,
    pub updated_at: Option<OffsetDateTime>,
    pub handle: Option<String>,
    /// `active`, `draft` or `archived`.
    pub status: Option<String>,
    /// Comma-separated.
    pub tags: Option<String>,
    /// The storefront URL when the payload carries it (GraphQL-shaped bodies).
    pub online_store_url: Option<String>,
    /// `images[0].src`, else `image.src`.
    pub image_src: Option<String>,
    pub variants: Vec<VariantWire>,
}

/// A product variant: its price and, when the shop tracks it, its stock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VariantWire {
    pub price: Option<Decimal>,
    pub inventory_quantity: Option<i64>,
    /// `deny` (not sold out of stock) or `continue`.
    pub inventory_policy: Option<String>,
}

/// The body of `customers/data_request`, `customers/redact` and `shop/redact` (unused parts absent).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ComplianceWire {
    pub shop_id: Option<ShopifyId>,
    pub shop_domain: Option<String>,
    pub customer_id: Option<ShopifyId>,
    pub customer_email: Option<String>,
    pub customer_phone: Option<String>,
    /// `orders_requested` or `orders_to_redact`, whichever the topic uses.
    pub orders: Vec<ShopifyId>,
    pub data_request_id: Option<ShopifyId>,
}

/// Which list of order ids a compliance body carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ComplianceKind {
    DataRequest,
    CustomerRedact,
    ShopRedact,
}

impl OrderWire {
    pub fn read(o: &Obj<'_>) -> Result<Self, FieldError> {
        Ok(OrderWire {
            id: o.req("id", id)?,
            name: o.opt_text("name")?,
            email: o.opt_email("email")?,
            created_at: o.req("created_at", timestamp)?,
            updated_at: o.opt("updated_at", timestamp)?,
            cancelled_at: o.opt("cancelled_at", timestamp)?,
            total_price: o.req_amount("total_price")?,
            currency: CurrencyFields::read(o)?,
            financial_status: o.opt_text("financial_status")?,
            checkout_token: o.opt_text("checkout_token")?,
            cart_token: o.opt_text("cart_token")?,
            buyer_accepts_marketing: o.opt("buyer_accepts_marketing", boolean)?,
            customer: o.opt_obj("customer")?.map(|c| CustomerRef::read(&c)).transpose()?,
            line_items: o.list("line_items", LineItemWire::read)?,
        })
    }
}

impl CheckoutWire {
    pub fn read(o: &Obj<'_>) -> Result<Self, FieldError> {
        Ok(CheckoutWire {
            token: o.req("token", token)?,
            cart_token: o.opt_text("cart_token")?,
            email: o.opt_email("email")?,
            created_at: o.req("created_at", timestamp)?,
            updated_at: o.opt("updated_at", timestamp)?,
            completed_at: o.opt("completed_at", timestamp)?,
            total_price: o.req_amount("total_price")?,
            currency: CurrencyFields::read(o)?,
            abandoned_checkout_url: o.opt_text("abandoned_checkout_url")?,
            buyer_accepts_marketing: o.opt("buyer_accepts_marketing", boolean)?,
            customer: o.opt_obj("customer")?.map(|c| CustomerRef::read(&c)).transpose()?,
            line_items: o.list("line_items", LineItemWire::read)?,
        })
    }
}

impl CustomerWire {
    pub fn read(o: &Obj<'_>) -> Result<Self, FieldError> {
        let consent = o.opt_obj("email_marketing_consent")?;
        let sms_consent = o.opt_obj("sms_marketing_consent")?;
        Ok(CustomerWire {
            id: o.req("id", id)?,
            email: o.opt_email("email")?,
            first_name: o.opt_text("first_name")?,
            last_name: o.opt_text("last_name")?,
            created_at: o.opt("created_at", timestamp)?,
            updated_at: o.opt("updated_at", timestamp)?,
            email_consent_state: consent.map(|c| c.opt_text("state")).transpose()?.flatten(),
            accepts_marketing: o.opt("accepts_marketing", boolean)?,
            tags: o.opt_text("tags")?,
            sms_consent_state: sms_consent.map(|c| c.opt_text("state")).transpose()?.flatten(),
        })
    }
}

impl CartWire {
    pub fn read(o: &Obj<'_>) -> Result<Self, FieldError> {
        let token = match o.opt("token", token)? {
            Some(t) => t,
            None => o.req("id", token)?,
        };
        Ok(CartWire {
            token,
            currency: o.opt_text("currency")?,
            created_at: o.opt("created_at", timestamp)?,
            updated_at: o.opt("updated_at", timestamp)?,
            line_items: o.list("line_items", LineItemWire::read)?,
        })
    }
}

impl ProductWire {
    pub fn read(o: &Obj<'_>) -> Result<Self, FieldError> {
        Ok(ProductWire {
            id: o.req("id", id)?,
            title: o.req("title", text)?,
            product_type: o.opt_text("product_type")?,
            vendor: o.opt_text("vendor")?,
            created_at: o.opt("created_at", timestamp)?,
            updated_at: o.opt("updated_at", timestamp)?,
            handle: o.opt_text("handle")?,
            status: o.opt_text("status")?,
            tags: o.opt_text("tags")?,
            online_store_url: o.opt_text("online_store_url")?,
            image_src: match o.list("images", |i| i.object()?.opt_text("src"))?.into_iter().next().flatten() {
                Some(src) => Some(src),
                None => match o.opt_obj("image")? {
                    Some(img) => img.opt_text("src")?,
                    None => None,
                },
            },
            variants: o.list("variants", |i| {
                let v = i.object()?;
                Ok(VariantWire {
                    price: v.opt("price", decimal)?,
                    inventory_quantity: v.opt("inventory_quantity", integer)?,
                    inventory_policy: v.opt_text("inventory_policy")?,
                })
            })?,
        })
    }
}

impl ComplianceWire {
    pub fn read(o: &Obj<'_>, kind: ComplianceKind) -> Result<Self, FieldError> {
        let customer = o.opt_obj("customer")?;
        let (customer_id, customer_email, customer_phone) = match &customer {
            Some(c) => (c.opt("id", id)?, c.opt_email("email")?, c.opt_text("phone")?),
            None => (None, None, None),
        };
        let orders = match kind {
            ComplianceKind::DataRequest => o.list("orders_requested", |item| item.id())?,
            ComplianceKind::CustomerRedact => o.list("orders_to_redact", |item| item.id())?,
            ComplianceKind::ShopRedact => Vec::new(),
        };
        let data_request_id = match o.opt_obj("data_request")? {
            Some(d) => d.opt("id", id)?,
            None => None,
        };
        Ok(ComplianceWire {
            shop_id: o.opt("shop_id", id)?,
            shop_domain: o.opt_text("shop_domain")?,
            customer_id,
            customer_email,
            customer_phone,
            orders,
            data_request_id,
        })
    }
}

impl CustomerRef {
    fn read(o: &Obj<'_>) -> Result<Self, FieldError> {
        Ok(CustomerRef { id: o.opt("id", id)?, email: o.opt_email("email")? })
    }
}

impl LineItemWire {
    fn read(item: Item<'_>) -> Result<Self, FieldError> {
        let o = item.object()?;
        let title = match o.opt_text("title")? {
            Some(t) => t,
            None => o.req("name", text)?,
        };
        Ok(LineItemWire {
            product_id: o.opt("product_id", id)?,
            variant_id: o.opt("variant_id", id)?,
            sku: o.opt_text("sku")?,
            title,
            quantity: o.req("quantity", quantity)?,
            price: o.req_amount("price")?,
        })
    }
}

impl CurrencyFields {
    fn read(o: &Obj<'_>) -> Result<Self, FieldError> {
        Ok(CurrencyFields {
            currency: o.opt_text("currency")?,
            presentment_currency: o.opt_text("presentment_currency")?,
        })
    }
}

/// Every object key any reader in this module looks up, at whatever depth. [`parse_body`] keeps these and
/// nothing else; `Obj::get` checks (in debug builds, so in every test) that it is asked for no other key.
pub const READ_KEYS: &[&str] = &[
    "abandoned_checkout_url",
    "accepts_marketing",
    "amount",
    "buyer_accepts_marketing",
    "cancelled_at",
    "cart_token",
    "checkout_token",
    "completed_at",
    "created_at",
    "currency",
    "currency_code",
    "customer",
    "data_request",
    "email",
    "email_marketing_consent",
    "financial_status",
    "first_name",
    "handle",
    "id",
    "image",
    "images",
    "inventory_policy",
    "inventory_quantity",
    "last_name",
    "line_items",
    "name",
    "online_store_url",
    "orders_requested",
    "orders_to_redact",
    "phone",
    "presentment_currency",
    "price",
    "price_set",
    "product_id",
    "product_type",
    "quantity",
    "shop_domain",
    "shop_id",
    "shop_money",
    "sku",
    "sms_marketing_consent",
    "src",
    "state",
    "status",
    "tags",
    "title",
    "token",
    "total_price",
    "total_price_set",
    "updated_at",
    "variant_id",
    "variants",
    "vendor",
];

/// Parses a webhook body into a JSON tree holding only the object keys in [`READ_KEYS`]; values under
/// other keys are checked for well-formedness and skipped without being built. Numbers keep their exact
/// text, as with a full parse.
pub fn parse_body(body: &[u8]) -> Result<Value, serde_json::Error> {
    serde_json::from_slice::<Pruned>(body).map(|p| p.0)
}

/// The entry of [`READ_KEYS`] equal to `key`. Every object key of every body goes through here, so it
/// compares only against the keys of the same length (at most 8); a binary search over them all
/// compared strings ~6 times per key and showed in the processing profile (~5%).
fn read_key(key: &str) -> Option<&'static str> {
    static BY_LENGTH: std::sync::OnceLock<Vec<Vec<&'static str>>> = std::sync::OnceLock::new();
    let by_length = BY_LENGTH.get_or_init(|| {
        let longest = READ_KEYS.iter().map(|k| k.len()).max().unwrap_or(0);
        let mut t = vec![Vec::new(); longest + 1];
        for k in READ_KEYS {
            t[k.len()].push(*k);
        }
        t
    });
    by_length.get(key.len())?.iter().copied().find(|k| *k == key)
}

/// A JSON value with only the keys readers use (see [`parse_body`]).
struct Pruned(Value);

/// An object key as [`Pruned`] sees it: one readers use, the marker serde_json uses to hand over a
/// number's exact text (`arbitrary_precision`), or one to skip.
enum Key {
    Read(&'static str),
    Number,
    Skip,
}

impl<'de> serde::Deserialize<'de> for Key {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Key;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("an object key")
            }
            fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<Key, E> {
                Ok(match read_key(key) {
                    Some(k) => Key::Read(k),
                    None if key.starts_with("$serde_json::private::Number") => Key::Number,
                    None => Key::Skip,
                })
            }
        }
        d.deserialize_str(V)
    }
}

impl<'de> serde::Deserialize<'de> for Pruned {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::{Error, IgnoredAny, MapAccess, SeqAccess};
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = Pruned;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E: Error>(self, v: bool) -> Result<Pruned, E> {
                Ok(Pruned(Value::Bool(v)))
            }
            fn visit_i64<E: Error>(self, v: i64) -> Result<Pruned, E> {
                Ok(Pruned(Value::from(v)))
            }
            fn visit_u64<E: Error>(self, v: u64) -> Result<Pruned, E> {
                Ok(Pruned(Value::from(v)))
            }
            fn visit_f64<E: Error>(self, v: f64) -> Result<Pruned, E> {
                Ok(Pruned(serde_json::Number::from_f64(v).map_or(Value::Null, Value::Number)))
            }
            fn visit_str<E: Error>(self, v: &str) -> Result<Pruned, E> {
                Ok(Pruned(Value::String(v.to_string())))
            }
            fn visit_string<E: Error>(self, v: String) -> Result<Pruned, E> {
                Ok(Pruned(Value::String(v)))
            }
            fn visit_unit<E: Error>(self) -> Result<Pruned, E> {
                Ok(Pruned(Value::Null))
            }
            fn visit_none<E: Error>(self) -> Result<Pruned, E> {
                Ok(Pruned(Value::Null))
            }
            fn visit_some<D2: serde::Deserializer<'de>>(self, d: D2) -> Result<Pruned, D2::Error> {
                serde::Deserialize::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Pruned, A::Error> {
                let mut items = Vec::new();
                while let Some(Pruned(v)) = seq.next_element()? {
                    items.push(v);
                }
                Ok(Pruned(Value::Array(items)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Pruned, A::Error> {
                let mut out = Map::new();
                while let Some(key) = map.next_key::<Key>()? {
                    match key {
                        Key::Read(k) => {
                            let Pruned(v) = map.next_value()?;
                            out.insert(k.to_string(), v);
                        }
                        Key::Number => {
                            let text: String = map.next_value()?;
                            let n = text.parse::<serde_json::Number>().map_err(A::Error::custom)?;
                            return Ok(Pruned(Value::Number(n)));
                        }
                        Key::Skip => {
                            map.next_value::<IgnoredAny>()?;
                        }
                    }
                }
                Ok(Pruned(Value::Object(out)))
            }
        }
        d.deserialize_any(V)
    }
}

/// A JSON object being read, with its path from the body's root.
pub struct Obj<'a> {
    map: &'a Map<String, Value>,
    path: String,
}

/// One element of a JSON array being read, with its path (`line_items[3]`).
pub struct Item<'a> {
    value: &'a Value,
    path: String,
}

impl<'a> Obj<'a> {
    /// The body's top level, which must be an object; otherwise returns what was found instead.
    pub fn root(value: &'a Value) -> Result<Self, String> {
        match value {
            Value::Object(map) => Ok(Obj { map, path: String::new() }),
            other => Err(describe(other)),
        }
    }

    fn path_of(&self, key: &str) -> String {
        if self.path.is_empty() { key.to_string() } else { format!("{}.{key}", self.path) }
    }

    /// The value of `key`, treating `null` as absent.
    fn get(&self, key: &str) -> Option<&'a Value> {
        debug_assert!(
            READ_KEYS.contains(&key),
            "`{key}` is read but not in READ_KEYS, so parse_body drops it"
        );
        self.map.get(key).filter(|v| !v.is_null())
    }

    fn error(&self, key: &str, problem: FieldProblem) -> FieldError {
        FieldError { field: self.path_of(key), problem }
    }

    /// An optional field read with a leaf parser.
    pub fn opt<T>(
        &self,
        key: &str,
        parse: impl FnOnce(&Value) -> Result<T, FieldProblem>,
    ) -> Result<Option<T>, FieldError> {
        self.get(key).map(parse).transpose().map_err(|p| self.error(key, p))
    }

    /// A required field read with a leaf parser.
    pub fn req<T>(
        &self,
        key: &str,
        parse: impl FnOnce(&Value) -> Result<T, FieldProblem>,
    ) -> Result<T, FieldError> {
        self.opt(key, parse)?.ok_or_else(|| self.error(key, FieldProblem::Missing))
    }

    /// An optional string, verbatim; blank strings count as absent (Shopify sends `""` for unset emails
    /// and SKUs).
    pub fn opt_text(&self, key: &str) -> Result<Option<String>, FieldError> {
        Ok(self.opt(key, text)?.filter(|s| !s.trim().is_empty()))
    }

    /// An optional email address without surrounding blanks, which are never part of an address.
    pub fn opt_email(&self, key: &str) -> Result<Option<String>, FieldError> {
        Ok(self.opt_text(key)?.map(|s| s.trim().to_string()))
    }

    /// An optional nested object.
    pub fn opt_obj(&self, key: &str) -> Result<Option<Obj<'a>>, FieldError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Object(map)) => Ok(Some(Obj { map, path: self.path_of(key) })),
            Some(other) => Err(self.error(key, wrong("an object", other))),
        }
    }

    /// A list field, absent meaning empty, each element read by `read`.
    pub fn list<T>(
        &self,
        key: &str,
        mut read: impl FnMut(Item<'a>) -> Result<T, FieldError>,
    ) -> Result<Vec<T>, FieldError> {
        match self.get(key) {
            None => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, value)| read(Item { value, path: format!("{}[{i}]", self.path_of(key)) }))
                .collect(),
            Some(other) => Err(self.error(key, wrong("an array", other))),
        }
    }

    /// A required money field: `key` (a decimal string), or else `<key>_set.shop_money.amount`. The
    /// money bag's currency is kept either way so `normalize` can use it as a currency fallback.
    pub fn req_amount(&self, key: &str) -> Result<Amount, FieldError> {
        let set_key = format!("{key}_set");
        let shop_money = match self.opt_obj(&set_key)? {
            Some(set) => set.opt_obj("shop_money")?,
            None => None,
        };
        let (bag_amount, bag_currency) = match &shop_money {
            Some(m) => (m.opt("amount", decimal)?, m.opt_text("currency_code")?),
            None => (None, None),
        };
        let amount = match self.opt(key, decimal)? {
            Some(a) => a,
            None => bag_amount.ok_or_else(|| self.error(key, FieldProblem::Missing))?,
        };
        Ok(Amount { amount, bag_currency })
    }
}

impl<'a> Item<'a> {
    /// The element as an object.
    pub fn object(&self) -> Result<Obj<'a>, FieldError> {
        match self.value {
            Value::Object(map) => Ok(Obj { map, path: self.path.clone() }),
            other => Err(FieldError { field: self.path.clone(), problem: wrong("an object", other) }),
        }
    }

    /// The element as a Shopify id.
    pub fn id(self) -> Result<ShopifyId, FieldError> {
        id(self.value).map_err(|problem| FieldError { field: self.path, problem })
    }
}

/// A positive 64-bit integer id, sent as a JSON number or a string of digits, kept as canonical text.
pub fn id(value: &Value) -> Result<ShopifyId, FieldProblem> {
    let text = match value {
        Value::Number(n) => n.to_string(),
        Value::String(s) => s.trim().to_string(),
        other => return Err(wrong("an integer id", other)),
    };
    match text.parse::<u64>() {
        Ok(n) if n > 0 && text.bytes().all(|b| b.is_ascii_digit()) => Ok(ShopifyId(n.to_string())),
        _ => Err(FieldProblem::NotId(text)),
    }
}

/// An opaque non-empty token (checkout and cart tokens); numbers are accepted as their exact text.
pub fn token(value: &Value) -> Result<String, FieldProblem> {
    let text = match value {
        Value::String(s) => s.trim().to_string(),
        Value::Number(n) => n.to_string(),
        other => return Err(wrong("a string token", other)),
    };
    if text.is_empty() { Err(FieldProblem::Empty) } else { Ok(text) }
}

pub fn text(value: &Value) -> Result<String, FieldProblem> {
    match value {
        Value::String(s) => Ok(s.clone()),
        other => Err(wrong("a string", other)),
    }
}

pub fn boolean(value: &Value) -> Result<bool, FieldProblem> {
    match value {
        Value::Bool(b) => Ok(*b),
        other => Err(wrong("true or false", other)),
    }
}

/// An exact decimal from a string (`"59.97"`, Shopify's form) or a JSON number's exact text.
pub fn decimal(value: &Value) -> Result<Decimal, FieldProblem> {
    let text = match value {
        Value::String(s) => s.clone(),
        Value::Number(n) => n.to_string(),
        other => return Err(wrong("a decimal amount", other)),
    };
    let trimmed = text.trim();
    let parsed = if trimmed.contains(['e', 'E']) {
        Decimal::from_scientific(trimmed)
    } else {
        Decimal::from_str(trimmed)
    };
    // `Decimal` also accepts `_` digit separators; a money amount never contains them.
    match parsed {
        Ok(d) if !trimmed.contains('_') && !trimmed.is_empty() => Ok(d),
        _ => Err(FieldProblem::NotDecimal(text)),
    }
}

/// An RFC 3339 instant with an offset, normalised to UTC.
pub fn timestamp(value: &Value) -> Result<OffsetDateTime, FieldProblem> {
    let Value::String(s) = value else {
        return Err(wrong("an RFC 3339 timestamp string", value));
    };
    OffsetDateTime::parse(s.trim(), &Rfc3339)
        .map(|t| t.to_offset(time::UtcOffset::UTC))
        .map_err(|_| FieldProblem::NotTimestamp(s.clone()))
}

/// A whole number, possibly negative (a stock level can be oversold).
pub fn integer(value: &Value) -> Result<i64, FieldProblem> {
    match value {
        Value::Number(n) => {
            n.to_string().parse::<i64>().map_err(|_| FieldProblem::NotQuantity(n.to_string()))
        }
        other => Err(wrong("a whole number", other)),
    }
}

/// A whole, non-negative item count that fits in `u32`.
pub fn quantity(value: &Value) -> Result<u32, FieldProblem> {
    match value {
        Value::Number(n) => {
            n.to_string().parse::<u32>().map_err(|_| FieldProblem::NotQuantity(n.to_string()))
        }
        other => Err(wrong("a whole number", other)),
    }
}

fn wrong(expected: &'static str, found: &Value) -> FieldProblem {
    FieldProblem::WrongType { expected, found: describe(found) }
}

/// A short description of a JSON value for error messages; long strings are cut.
pub fn describe(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => format!("the number {n}"),
        Value::String(s) => {
            let mut shown: String = s.chars().take(40).collect();
            if s.chars().nth(40).is_some() {
                shown.push('…');
            }
            format!("the string {shown:?}")
        }
        Value::Array(_) => "an array".into(),
        Value::Object(_) => "an object".into(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn read_key_finds_exactly_the_read_keys() {
        for k in READ_KEYS {
            assert_eq!(read_key(k), Some(*k));
        }
        // Same length as a read key, a prefix, an extension, other case, empty, longer than any.
        for other in
            ["ie", "sk", "emai", "emails", "Email", "", "abandoned_checkout_url_x", "x".repeat(200).as_str()]
        {
            assert_eq!(read_key(other), None, "{other}");
        }
        let body = br#"{"id":1,"idx":2,"Email":"a","email":"b","line_items":[{"sku":"s","skus":"t"}]}"#;
        assert_eq!(parse_body(body).unwrap(), json!({"id":1,"email":"b","line_items":[{"sku":"s"}]}));
    }

    #[test]
    fn parse_body_keeps_customer_tags_and_sms_consent_state() {
        let body = br#"{"id":1,"tags":"vip, wholesale","tag":"x","sms_marketing_consent":{"state":"pending",
            "opt_in_level":"single_opt_in","consent_collected_from":"OTHER"},"sms_marketing_phone":null,
            "customer":{"tags":"","sms_marketing_consent":null}}"#;
        assert_eq!(
            parse_body(body).unwrap(),
            json!({"id":1,"tags":"vip, wholesale","sms_marketing_consent":{"state":"pending"},
                   "customer":{"tags":"","sms_marketing_consent":null}})
        );
    }

    #[test]
    fn customer_wire_reads_tags_and_sms_consent_state_verbatim() {
        let read = |body: Value| CustomerWire::read(&Obj::root(&body).unwrap());
        let w = read(
            json!({"id": 5, "tags": " vip,  wholesale ", "sms_marketing_consent": {"state": "subscribed"}}),
        )
        .unwrap();
        assert_eq!(w.tags.as_deref(), Some(" vip,  wholesale "));
        assert_eq!(w.sms_consent_state.as_deref(), Some("subscribed"));
        for body in [
            json!({"id": 5}),
            json!({"id": 5, "tags": null, "sms_marketing_consent": null}),
            json!({"id": 5, "tags": "", "sms_marketing_consent": {}}),
            json!({"id": 5, "tags": "  ", "sms_marketing_consent": {"state": ""}}),
        ] {
            let w = read(body.clone()).unwrap();
            assert_eq!((w.tags, w.sms_consent_state), (None, None), "{body}");
        }
        let err = read(json!({"id": 5, "tags": ["vip"]})).unwrap_err();
        assert_eq!(err.field, "tags");
        let err = read(json!({"id": 5, "sms_marketing_consent": {"state": false}})).unwrap_err();
        assert_eq!(err.field, "sms_marketing_consent.state");
    }

    fn parse(text: &str) -> Value {
        serde_json::from_str(text).unwrap()
    }

    #[test]
    fn ids_keep_their_exact_text() {
        assert_eq!(id(&parse("9007199254740993")).unwrap().as_str(), "9007199254740993");
        assert_eq!(id(&parse("18446744073709551615")).unwrap().as_str(), "18446744073709551615");
        assert_eq!(id(&json!("9007199254740993")).unwrap().as_str(), "9007199254740993");
        assert_eq!(
            id(&parse("18446744073709551616")),
            Err(FieldProblem::NotId("18446744073709551616".into()))
        );
        assert!(matches!(id(&parse("1.0")), Err(FieldProblem::NotId(_))));
        assert!(matches!(id(&parse("-4")), Err(FieldProblem::NotId(_))));
        assert!(matches!(id(&json!("+4")), Err(FieldProblem::NotId(_))));
        assert!(matches!(id(&json!(true)), Err(FieldProblem::WrongType { .. })));
    }

    #[test]
    fn decimals_are_exact() {
        assert_eq!(decimal(&json!("59.97")).unwrap().to_string(), "59.97");
        assert_eq!(decimal(&parse("0.1")).unwrap().to_string(), "0.1");
        assert_eq!(decimal(&json!("5x")), Err(FieldProblem::NotDecimal("5x".into())));
        assert_eq!(decimal(&json!("")), Err(FieldProblem::NotDecimal("".into())));
        assert_eq!(decimal(&json!("1_0")), Err(FieldProblem::NotDecimal("1_0".into())));
    }

    #[test]
    fn timestamps_are_utc() {
        let t = timestamp(&json!("2026-05-01T12:00:00+02:00")).unwrap();
        assert_eq!(t, time::macros::datetime!(2026-05-01 10:00 UTC));
        assert_eq!(t.offset(), time::UtcOffset::UTC);
        assert!(matches!(timestamp(&json!("2026-05-01 12:00")), Err(FieldProblem::NotTimestamp(_))));
    }

    #[test]
    fn paths_name_nested_fields() {
        let body = json!({"line_items": [{"title": "a", "quantity": 1, "price": "1"},
                                         {"title": "b", "quantity": 1, "price": "x"}]});
        let o = Obj::root(&body).unwrap();
        let err = o.list("line_items", LineItemWire::read).unwrap_err();
        assert_eq!(err.field, "line_items[1].price");
        assert_eq!(err.problem, FieldProblem::NotDecimal("x".into()));
    }

    #[test]
    fn money_bag_is_a_fallback_for_the_amount() {
        let body = json!({"total_price_set": {"shop_money": {"amount": "12.50", "currency_code": "EUR"}}});
        let amount = Obj::root(&body).unwrap().req_amount("total_price").unwrap();
        assert_eq!(amount.amount.to_string(), "12.50");
        assert_eq!(amount.bag_currency.as_deref(), Some("EUR"));
    }
}
