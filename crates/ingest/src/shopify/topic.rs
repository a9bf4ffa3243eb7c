//! Shopify webhook topics: the closed set nudge subscribes to, plus `Unknown` for everything else.
//!
//! Only the topic vocabulary lives here; what each topic's body looks like is in `payload`, and what it
//! becomes is in `normalize`.

use std::fmt;
use std::str::FromStr;

/// The `X-Shopify-Topic` of a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Topic {
    OrdersCreate,
    OrdersUpdated,
    OrdersPaid,
    OrdersCancelled,
    CheckoutsCreate,
    CheckoutsUpdate,
    CustomersCreate,
    CustomersUpdate,
    CartsCreate,
    CartsUpdate,
    ProductsCreate,
    ProductsUpdate,
    /// Mandatory compliance topic: a customer asked the merchant for their data.
    CustomersDataRequest,
    /// Mandatory compliance topic: erase one customer.
    CustomersRedact,
    /// Mandatory compliance topic: erase everything for a shop (48 hours after uninstall).
    ShopRedact,
    /// A topic nudge does not handle, kept verbatim (trimmed) so it can be reported.
    Unknown(String),
}

impl Topic {
    /// Every topic nudge handles, in a stable order (used by subscription setup and tests).
    pub const KNOWN: [Topic; 15] = [
        Topic::OrdersCreate,
        Topic::OrdersUpdated,
        Topic::OrdersPaid,
        Topic::OrdersCancelled,
        Topic::CheckoutsCreate,
        Topic::CheckoutsUpdate,
        Topic::CustomersCreate,
        Topic::CustomersUpdate,
        Topic::CartsCreate,
        Topic::CartsUpdate,
        Topic::ProductsCreate,
        Topic::ProductsUpdate,
        Topic::CustomersDataRequest,
        Topic::CustomersRedact,
        Topic::ShopRedact,
    ];

    /// Parses a topic as sent in `X-Shopify-Topic` (`orders/create`).
    ///
    /// Case is ignored, and the GraphQL enum spelling (`ORDERS_CREATE`, `CUSTOMERS_DATA_REQUEST`) is
    /// accepted too because some envelope transports report it. Anything else becomes `Unknown`.
    pub fn parse(s: &str) -> Topic {
        let trimmed = s.trim();
        let mut lower = trimmed.to_ascii_lowercase();
        if !lower.contains('/')
            && let Some(i) = lower.find('_')
        {
            lower.replace_range(i..=i, "/");
        }
        Topic::KNOWN
            .iter()
            .find(|t| t.as_str() == lower)
            .cloned()
            .unwrap_or_else(|| Topic::Unknown(trimmed.to_string()))
    }

    /// The topic as Shopify spells it in `X-Shopify-Topic`.
    pub fn as_str(&self) -> &str {
        match self {
            Topic::OrdersCreate => "orders/create",
            Topic::OrdersUpdated => "orders/updated",
            Topic::OrdersPaid => "orders/paid",
            Topic::OrdersCancelled => "orders/cancelled",
            Topic::CheckoutsCreate => "checkouts/create",
            Topic::CheckoutsUpdate => "checkouts/update",
            Topic::CustomersCreate => "customers/create",
            Topic::CustomersUpdate => "customers/update",
            Topic::CartsCreate => "carts/create",
            Topic::CartsUpdate => "carts/update",
            Topic::ProductsCreate => "products/create",
            Topic::ProductsUpdate => "products/update",
            Topic::CustomersDataRequest => "customers/data_request",
            Topic::CustomersRedact => "customers/redact",
            Topic::ShopRedact => "shop/redact",
            Topic::Unknown(s) => s,
        }
    }

    /// Whether this is one of the three mandatory privacy topics (which must answer 401 on a bad HMAC).
    pub fn is_compliance(&self) -> bool {
        matches!(self, Topic::CustomersDataRequest | Topic::CustomersRedact | Topic::ShopRedact)
    }
}

impl fmt::Display for Topic {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Topic {
    type Err = std::convert::Infallible;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(Topic::parse(s))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_known_topic_round_trips() {
        for t in Topic::KNOWN {
            assert_eq!(Topic::parse(t.as_str()), t);
            assert_eq!(Topic::parse(&t.as_str().to_uppercase()), t);
        }
    }

    #[test]
    fn graphql_spelling_and_unknowns() {
        assert_eq!(Topic::parse("CUSTOMERS_DATA_REQUEST"), Topic::CustomersDataRequest);
        assert_eq!(Topic::parse(" shop/redact "), Topic::ShopRedact);
        assert_eq!(Topic::parse("app/uninstalled"), Topic::Unknown("app/uninstalled".into()));
        assert_eq!(Topic::parse("app/uninstalled").as_str(), "app/uninstalled");
        assert!(Topic::ShopRedact.is_compliance());
        assert!(!Topic::OrdersPaid.is_compliance());
    }
}
