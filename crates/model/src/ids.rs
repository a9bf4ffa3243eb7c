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
    /// A storefront's own user id, as its analytics SDK sends it (Segment's `userId`), when it is not
    /// a commerce platform's id.
    Segment,
    /// An anonymous visitor (Segment's `anonymousId`): provisional until identified.
    #[serde(rename = "anon")]
    Anonymous,
    /// Someone known only by an email address (a review or loyalty record, an engagement event): the
    /// local part is [`CustomerId::for_email`]'s digest, never the address. Provisional.
    Email,
    /// A Braze user known only by Braze's own `user_id` (Currents events of anonymous users).
    Braze,
}

impl Source {
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Shopify => "shopify",
            Source::BigCommerce => "bigcommerce",
            Source::Adobe => "adobe",
            Source::Import => "import",
            Source::Segment => "segment",
            Source::Anonymous => "anon",
            Source::Email => "email",
            Source::Braze => "braze",
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
            "segment" => Ok(Source::Segment),
            "anon" => Ok(Source::Anonymous),
            "email" => Ok(Source::Email),
            "braze" => Ok(Source::Braze),
            other => Err(IdError::UnknownSource(other.to_string())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error(
        "unknown source `{0}` (expected shopify, bigcommerce, adobe, import, segment, anon, email or braze)"
    )]
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

    /// The key of someone known only by an email address: `email:` and the first 16 hex digits of the
    /// SHA-256 of the trimmed, lower-cased address, so no raw email ends up in a key. `None` for a blank
    /// address.
    pub fn for_email(email: &str) -> Option<CustomerId> {
        use sha2::Digest;
        let norm = email.trim().to_lowercase();
        if norm.is_empty() {
            return None;
        }
        let digest = sha2::Sha256::digest(norm.as_bytes());
        let hex: String = digest.iter().take(8).map(|b| format!("{b:02x}")).collect();
        Some(CustomerId { source: Source::Email, local: hex })
    }

    /// Whether this key only stands in until the person is identified: an anonymous visitor, an
    /// email-only key, or a platform's guest (`guest-…` local part). The pipeline resolves provisional
    /// keys to a known customer (by alias or email) before it applies their events.
    pub fn is_provisional(&self) -> bool {
        matches!(self.source, Source::Anonymous | Source::Email)
            || self.local.starts_with("guest-")
            || self.local.contains(":guest-")
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

    #[test]
    fn behaviour_sources_round_trip_and_provisional_keys_are_known() {
        for s in ["segment:u-42", "anon:7f3c-a", "email:0123456789abcdef", "braze:5f0f8c3e"] {
            let id: CustomerId = s.parse().unwrap();
            assert_eq!(id.to_string(), s);
        }
        let e = CustomerId::for_email("  Lena@Example.org ").unwrap();
        assert_eq!(e, CustomerId::for_email("lena@example.org").unwrap());
        assert_eq!(e.source(), Source::Email);
        assert_eq!(e.local().len(), 16);
        assert!(!e.to_string().contains('@'));
        assert!(CustomerId::for_email("  ").is_none());
        assert!(e.is_provisional());
        assert!("anon:x".parse::<CustomerId>().unwrap().is_provisional());
        assert!("shopify:guest-0011223344556677".parse::<CustomerId>().unwrap().is_provisional());
        assert!("bigcommerce:abc:guest-0011223344556677".parse::<CustomerId>().unwrap().is_provisional());
        assert!(!"shopify:880012".parse::<CustomerId>().unwrap().is_provisional());
        assert!(!"segment:u-42".parse::<CustomerId>().unwrap().is_provisional());
    }
}
