//! Typed identifiers. Platform ids are kept as the exact decimal text the platform sent (Shopify ids can
//! exceed 2^53, so they are never `f64`), and every customer is keyed by its source plus that id.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Where a record came from. A closed enum: adding a platform is a deliberate change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    Shopify,
    /// BigCommerce; a customer's local part is `<store_hash>:<id>`, since ids are per store.
    #[serde(rename = "bigcommerce")]
    BigCommerce,
    /// Adobe Commerce (Magento); the local part is `<instance>:<platform id>`.
    Adobe,
    /// Customers created by a history import (CSV) that have no platform of their own.
    Import,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Shopify => "shopify",
            Source::BigCommerce => "bigcommerce",
            Source::Adobe => "adobe",
            Source::Import => "import",
        }
    }
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Source {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        match s {
            "shopify" => Ok(Source::Shopify),
            "bigcommerce" => Ok(Source::BigCommerce),
            "adobe" => Ok(Source::Adobe),
            "import" => Ok(Source::Import),
            other => Err(IdError::UnknownSource(other.to_string())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("unknown source `{0}` (expected shopify, bigcommerce, adobe or import)")]
    UnknownSource(String),
    #[error("customer id `{0}` must look like `<source>:<id>`")]
    Malformed(String),
    #[error("customer id part must be 1..=128 printable characters without spaces")]
    BadLocalPart,
}

/// A customer key: the source plus the platform's id for the customer, written `shopify:880012`.
///
/// Guest customers (a checkout with an email but no platform customer id) get the local part
/// `guest-<hex digest of the normalised email>`, so no raw email ends up in a key.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CustomerId {
    source: Source,
    local: String,
}

impl CustomerId {
    pub fn new(source: Source, local: impl Into<String>) -> Result<Self, IdError> {
        let local = local.into();
        if local.is_empty() || local.len() > 128 || local.chars().any(|c| c.is_whitespace() || c.is_control())
        {
            return Err(IdError::BadLocalPart);
        }
        Ok(Self { source, local })
    }

    pub fn source(&self) -> Source {
        self.source
    }

    /// The platform's own id for the customer, as text.
    pub fn local(&self) -> &str {
        &self.local
    }
}

impl fmt::Display for CustomerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.source, self.local)
    }
}

impl FromStr for CustomerId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        let (src, local) = s.split_once(':').ok_or_else(|| IdError::Malformed(s.to_string()))?;
        CustomerId::new(src.parse()?, local)
    }
}

impl Serialize for CustomerId {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for CustomerId {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// Identifies one inbound delivery and everything that follows from it in the audit trail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct TraceId(pub uuid::Uuid);

impl TraceId {
    /// A new time-ordered trace id (UUIDv7), so traces sort by arrival.
    pub fn new() -> Self {
        TraceId(uuid::Uuid::now_v7())
    }
}

impl Default for TraceId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for TraceId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for TraceId {
    type Err = uuid::Error;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Ok(TraceId(s.parse()?))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn customer_id_round_trips_and_keeps_big_ids_exact() {
        let id: CustomerId = "shopify:9007199254740993".parse().unwrap();
        assert_eq!(id.local(), "9007199254740993");
        assert_eq!(id.to_string(), "shopify:9007199254740993");
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, "\"shopify:9007199254740993\"");
        assert_eq!(serde_json::from_str::<CustomerId>(&json).unwrap(), id);
    }

    #[test]
    fn customer_id_rejects_bad_input() {
        assert!(matches!("880012".parse::<CustomerId>(), Err(IdError::Malformed(_))));
        assert!(matches!("magento:1".parse::<CustomerId>(), Err(IdError::UnknownSource(_))));
        assert!(matches!("shopify:".parse::<CustomerId>(), Err(IdError::BadLocalPart)));
        assert!(matches!("shopify:a b".parse::<CustomerId>(), Err(IdError::BadLocalPart)));
    }
}
