//! Keyed pseudonyms for personal data.
//!
//! Anything that leaves nudge for a model, an external scorer or an LLM carries a pseudonym instead of an
//! email, a phone number, a name or an address: `ps_<kind>_<24 hex>`, the first 96 bits of
//! HMAC-SHA256(`privacy.pseudonym_key`, kind ‖ 0x00 ‖ normalised value). The same value under the same key
//! always gives the same pseudonym (so a model can still join on it), a different key gives unrelated ones,
//! and without the key a pseudonym cannot be checked against a guessed value. [`pseudonymize_json`] is the
//! one function such a path sends its context through. Pure: no I/O.

use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::fmt;

/// The secret key of the pseudonyms (`privacy.pseudonym_key`). Its `Debug` never shows the key.
#[derive(Clone)]
pub struct PseudonymKey(Vec<u8>);

impl PseudonymKey {
    /// The shortest key accepted by the configuration, in bytes.
    pub const MIN_LEN: usize = 32;

    pub fn from_bytes(bytes: impl Into<Vec<u8>>) -> PseudonymKey {
        PseudonymKey(bytes.into())
    }
}

impl fmt::Debug for PseudonymKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PseudonymKey(<{} bytes redacted>)", self.0.len())
    }
}

/// What a piece of personal data is; part of the hashed input and of the pseudonym's prefix, so an email
/// and a name that normalise to the same text still get different pseudonyms.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PiiKind {
    Email,
    Phone,
    Name,
    Address,
    /// A customer's key in nudge (`shopify:880012`): what an erasure's records name the person by.
    Customer,
}

impl PiiKind {
    pub fn as_str(self) -> &'static str {
        match self {
            PiiKind::Email => "email",
            PiiKind::Phone => "phone",
            PiiKind::Name => "name",
            PiiKind::Address => "address",
            PiiKind::Customer => "customer",
        }
    }

    /// The kind of data a JSON key holds, by its name, compared case-insensitively and without `_`, `-`,
    /// `.` or spaces (so `first_name`, `firstName` and `First-Name` are one key):
    /// - email: any key containing `email` or `e-mail`;
    /// - phone: any key containing `phone`, or one of `mobile`, `cell`, `tel`, `msisdn`, `sms`;
    /// - address: any key containing `address`, `street` or `postcode`/`postalcode`, or `zip`, `zipcode`;
    /// - name: a person's name — `name`, `firstname`, `lastname`, `fullname`, `givenname`, `familyname`,
    ///   `middlename`, `surname`, `nickname`, `displayname`, and those of a role (`customername`,
    ///   `billingname`, `shippingname`, `contactname`, `recipientname`, `buyername`). Other `…name` keys
    ///   (`product_name`, `metric_name`) are not personal and stay.
    pub fn of_key(key: &str) -> Option<PiiKind> {
        let k: String = key
            .chars()
            .filter(|c| !matches!(c, '_' | '-' | '.' | ' '))
            .map(|c| c.to_ascii_lowercase())
            .collect();
        const NAMES: [&str; 16] = [
            "name",
            "firstname",
            "lastname",
            "fullname",
            "givenname",
            "familyname",
            "middlename",
            "surname",
            "nickname",
            "displayname",
            "customername",
            "billingname",
            "shippingname",
            "contactname",
            "recipientname",
            "buyername",
        ];
        if k.contains("email") {
            Some(PiiKind::Email)
        } else if k.contains("phone") || matches!(k.as_str(), "mobile" | "cell" | "tel" | "msisdn" | "sms") {
            Some(PiiKind::Phone)
        } else if k.contains("address")
            || k.contains("street")
            || k.contains("postcode")
            || k.contains("postalcode")
            || matches!(k.as_str(), "zip" | "zipcode")
        {
            Some(PiiKind::Address)
        } else if NAMES.contains(&k.as_str()) {
            Some(PiiKind::Name)
        } else {
            None
        }
    }
}

/// The value as it is hashed: an email trimmed and lowercased; a phone number's digits, with its leading
/// `+` if it has one; a name or an address trimmed, its whitespace collapsed to single spaces, lowercased.
pub fn normalise(kind: PiiKind, value: &str) -> String {
    match kind {
        PiiKind::Email => value.trim().to_lowercase(),
        PiiKind::Phone => {
            let t = value.trim();
            let mut out = String::with_capacity(t.len());
            if t.starts_with('+') {
                out.push('+');
            }
            out.extend(t.chars().filter(char::is_ascii_digit));
            out
        }
        PiiKind::Customer => value.trim().to_string(),
        PiiKind::Name | PiiKind::Address => {
            value.split_whitespace().collect::<Vec<_>>().join(" ").to_lowercase()
        }
    }
}

/// The pseudonym of one piece of personal data: `ps_<kind>_<first 24 hex of HMAC-SHA256(key, kind ‖ 0x00 ‖
/// normalised value)>`. Deterministic for a key; every path that sends personal data out calls this (or
/// [`pseudonymize_json`]).
pub fn pseudonym(key: &PseudonymKey, kind: PiiKind, value: &str) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&key.0).expect("HMAC takes a key of any length");
    mac.update(kind.as_str().as_bytes());
    mac.update(&[0]);
    mac.update(normalise(kind, value).as_bytes());
    let digest = mac.finalize().into_bytes();
    let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
    format!("ps_{}_{hex}", kind.as_str())
}

/// Replaces, recursively, every value held under a key that names personal data ([`PiiKind::of_key`]) with
/// its pseudonym: a string directly, the strings inside an array or object under such a key each (an
/// `address` object's lines, a list of emails), numbers too (a phone written as a number). Nulls and
/// booleans stay. Every path that sends a customer's context to a model, an external scorer or an LLM sends
/// it through this function.
pub fn pseudonymize_json(key: &PseudonymKey, value: &mut serde_json::Value) {
    walk(key, None, value);
}

fn walk(key: &PseudonymKey, kind: Option<PiiKind>, value: &mut serde_json::Value) {
    use serde_json::Value;
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                // Inside a personal field every leaf is personal (an address object's `city`); the key's
                // own kind wins when it names one.
                walk(key, PiiKind::of_key(k).or(kind), v);
            }
        }
        Value::Array(items) => {
            for v in items {
                walk(key, kind, v);
            }
        }
        Value::String(s) => {
            if let Some(kind) = kind {
                *s = pseudonym(key, kind, s);
            }
        }
        Value::Number(n) => {
            if let Some(kind) = kind {
                *value = Value::String(pseudonym(key, kind, &n.to_string()));
            }
        }
        Value::Null | Value::Bool(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn key(b: u8) -> PseudonymKey {
        PseudonymKey::from_bytes(vec![b; 32])
    }

    #[test]
    fn values_are_normalised_before_hashing() {
        assert_eq!(normalise(PiiKind::Email, "  Ada.Lovelace@Example.ORG "), "ada.lovelace@example.org");
        assert_eq!(normalise(PiiKind::Phone, " +44 (20) 7946-0958 "), "+442079460958");
        assert_eq!(normalise(PiiKind::Phone, "020 7946 0958"), "02079460958");
        assert_eq!(normalise(PiiKind::Name, "  Ada \t  LOVELACE\n"), "ada lovelace");
        assert_eq!(normalise(PiiKind::Address, "12  St James's\nSquare "), "12 st james's square");
        let k = key(7);
        assert_eq!(
            pseudonym(&k, PiiKind::Email, "Ada@Example.org"),
            pseudonym(&k, PiiKind::Email, " ada@example.org")
        );
        assert_eq!(pseudonym(&k, PiiKind::Phone, "+1 555-0100"), pseudonym(&k, PiiKind::Phone, "+15550100"));
        assert_eq!(
            pseudonym(&k, PiiKind::Name, "Ada  Lovelace"),
            pseudonym(&k, PiiKind::Name, "ada lovelace")
        );
    }

    #[test]
    fn pseudonyms_are_deterministic_per_key_and_kind() {
        let (a, b) = (key(1), key(2));
        let p = pseudonym(&a, PiiKind::Email, "ada@example.org");
        assert_eq!(p, pseudonym(&a, PiiKind::Email, "ada@example.org"));
        assert!(p.starts_with("ps_email_"), "{p}");
        let hex = p.strip_prefix("ps_email_").unwrap();
        assert_eq!(hex.len(), 24);
        assert!(hex.chars().all(|c| c.is_ascii_hexdigit() && !c.is_ascii_uppercase()), "{p}");
        assert_ne!(p, pseudonym(&b, PiiKind::Email, "ada@example.org"), "another key, another pseudonym");
        assert_ne!(p, pseudonym(&a, PiiKind::Email, "bob@example.org"));
        // The kind is hashed in: the same text as a name is another pseudonym.
        let n = pseudonym(&a, PiiKind::Name, "ada@example.org");
        assert!(n.starts_with("ps_name_"));
        assert_ne!(n[8..], p[9..]);
        // HMAC-SHA256(key = 32 × 0x01, "email" ‖ 0x00 ‖ "ada@example.org"), computed independently.
        assert_eq!(p, expected_email_pseudonym());
    }

    /// The reference value, computed here with the HMAC primitive the way the docs describe it.
    fn expected_email_pseudonym() -> String {
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&[1u8; 32]).unwrap();
        mac.update(b"email\0ada@example.org");
        let d = mac.finalize().into_bytes();
        format!("ps_email_{}", d[..12].iter().map(|b| format!("{b:02x}")).collect::<String>())
    }

    #[test]
    fn the_key_never_shows_in_debug() {
        let k = PseudonymKey::from_bytes(b"super-secret-pseudonym-key-0123456789".to_vec());
        let d = format!("{k:?}");
        assert!(!d.contains("super-secret"), "{d}");
        assert!(d.contains("redacted"), "{d}");
    }

    #[test]
    fn json_context_holds_pseudonyms_only() {
        let k = key(9);
        let mut v = json!({
            "customer": {
                "id": "shopify:42",
                "email": "Ada@Example.org",
                "first_name": "Ada",
                "last_name": "Lovelace",
                "phone": "+44 20 7946 0958",
                "orders_count": 3,
                "email_consent": true,
                "default_address": { "address1": "12 St James's Square", "city": "London", "zip": "SW1Y 4JH" },
                "addresses": [ { "address1": "1 Main St", "city": "Leeds" } ],
            },
            "contact_emails": ["a@example.org", "b@example.org"],
            "alt_phone": 4_420_794_609_i64,
            "line_items": [ { "title": "Mug", "name": "Mug – blue" } ],
            "total": "40.00",
        });
        pseudonymize_json(&k, &mut v);
        let c = &v["customer"];
        assert_eq!(c["id"], "shopify:42");
        assert_eq!(c["orders_count"], 3);
        assert_eq!(c["email"], pseudonym(&k, PiiKind::Email, "ada@example.org"));
        // `email_consent` contains "email" but is a boolean: it stays.
        assert_eq!(c["email_consent"], true);
        assert_eq!(c["first_name"], pseudonym(&k, PiiKind::Name, "Ada"));
        assert_eq!(c["last_name"], pseudonym(&k, PiiKind::Name, "lovelace"));
        assert_eq!(c["phone"], pseudonym(&k, PiiKind::Phone, "+442079460958"));
        assert_eq!(c["default_address"]["city"], pseudonym(&k, PiiKind::Address, "London"));
        assert!(c["addresses"][0]["address1"].as_str().unwrap().starts_with("ps_address_"));
        assert!(v["contact_emails"][1].as_str().unwrap().starts_with("ps_email_"));
        assert!(v["alt_phone"].as_str().unwrap().starts_with("ps_phone_"));
        assert!(v["line_items"][0]["name"].as_str().unwrap().starts_with("ps_name_"));
        assert_eq!(v["line_items"][0]["title"], "Mug");
        assert_eq!(v["total"], "40.00");
        let text = v.to_string();
        for pii in ["Ada", "ada@", "Lovelace", "7946", "James", "London", "Leeds", "a@example.org"] {
            assert!(!text.contains(pii), "{pii} left in {text}");
        }
    }

    #[test]
    fn keys_are_recognised_whatever_their_case_and_separators() {
        for k in [
            "first_name",
            "firstName",
            "First-Name",
            "LASTNAME",
            "full_name",
            "billing_name",
            "surname",
            "Name",
        ] {
            assert_eq!(PiiKind::of_key(k), Some(PiiKind::Name), "{k}");
        }
        for k in ["e-mail", "contactEmail", "EMAIL_ADDRESS"] {
            assert_eq!(PiiKind::of_key(k), Some(PiiKind::Email), "{k}");
        }
        for k in ["phoneNumber", "mobile", "msisdn", "tel"] {
            assert_eq!(PiiKind::of_key(k), Some(PiiKind::Phone), "{k}");
        }
        for k in ["address1", "street_line", "postalCode", "zip", "shipping_address"] {
            assert_eq!(PiiKind::of_key(k), Some(PiiKind::Address), "{k}");
        }
        for k in ["product_name", "metric_name", "hotel", "flow", "segment", "zipper_sku"] {
            assert_eq!(PiiKind::of_key(k), None, "{k}");
        }
    }
}
