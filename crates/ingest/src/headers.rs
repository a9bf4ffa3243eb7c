//! The request headers of one inbound delivery, looked up case-insensitively.
//!
//! This is platform-neutral: it knows nothing about which headers a platform requires or how a signature
//! is checked (that lives in each platform's `verify` module). Values are kept as the raw bytes that
//! arrived, because HTTP does not promise UTF-8 and a verifier must be able to say "this header is not
//! text" rather than never seeing it.

use std::fmt;

/// Header name/value pairs of one delivery.
///
/// Names are compared ASCII-case-insensitively (HTTP semantics, and what Shopify's own library does).
/// Repeated names are kept in arrival order so a verifier can refuse an ambiguous signature.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Headers {
    /// Lower-cased name and raw value, in arrival order.
    entries: Vec<(String, Vec<u8>)>,
}

impl Headers {
    /// An empty header set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Builds a header set from name/value pairs, e.g. `[("X-Shopify-Topic", "orders/create")]`.
    pub fn from_pairs<K, V>(pairs: impl IntoIterator<Item = (K, V)>) -> Self
    where
        K: AsRef<str>,
        V: AsRef<[u8]>,
    {
        pairs.into_iter().collect()
    }

    /// Adds a header, keeping any earlier value with the same name.
    pub fn append(&mut self, name: impl AsRef<str>, value: impl AsRef<[u8]>) {
        self.entries.push((name.as_ref().trim().to_ascii_lowercase(), value.as_ref().to_vec()));
    }

    /// The first value of `name` as text, or `None` when it is absent or not valid UTF-8.
    ///
    /// Use [`Headers::get_raw`] when the difference between "absent" and "not text" matters.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.get_raw(name).and_then(|v| std::str::from_utf8(v).ok())
    }

    /// The first value of `name` as raw bytes.
    pub fn get_raw(&self, name: &str) -> Option<&[u8]> {
        self.entries.iter().find(|(n, _)| n.eq_ignore_ascii_case(name)).map(|(_, v)| v.as_slice())
    }

    /// Every value of `name`, in arrival order.
    pub fn get_all<'a>(&'a self, name: &str) -> impl Iterator<Item = &'a [u8]> + use<'a> {
        let name = name.to_ascii_lowercase();
        self.entries.iter().filter(move |(n, _)| *n == name).map(|(_, v)| v.as_slice())
    }

    /// All headers as (lower-cased name, raw value), in arrival order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &[u8])> {
        self.entries.iter().map(|(n, v)| (n.as_str(), v.as_slice()))
    }

    /// The number of header lines.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether there are no headers at all.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

impl<K: AsRef<str>, V: AsRef<[u8]>> FromIterator<(K, V)> for Headers {
    fn from_iter<I: IntoIterator<Item = (K, V)>>(iter: I) -> Self {
        let mut headers = Headers::new();
        for (name, value) in iter {
            headers.append(name, value);
        }
        headers
    }
}

impl<K: AsRef<str>, V: AsRef<[u8]>> Extend<(K, V)> for Headers {
    fn extend<I: IntoIterator<Item = (K, V)>>(&mut self, iter: I) {
        for (name, value) in iter {
            self.append(name, value);
        }
    }
}

/// Values are shown lossily; signatures are shortened so debug logs never carry a full MAC.
impl fmt::Debug for Headers {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut map = f.debug_map();
        for (name, value) in &self.entries {
            let text = String::from_utf8_lossy(value);
            if name.contains("hmac") || name.contains("signature") {
                let prefix: String = text.chars().take(6).collect();
                map.entry(name, &format_args!("{prefix}…"));
            } else {
                map.entry(name, &text);
            }
        }
        map.finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lookup_ignores_case_and_keeps_repeats() {
        let h = Headers::from_pairs([("X-Shopify-Topic", "orders/create"), ("x-shopify-topic", "other")]);
        assert_eq!(h.get("x-SHOPIFY-topic"), Some("orders/create"));
        assert_eq!(h.get_all("X-Shopify-Topic").count(), 2);
        assert_eq!(h.get("missing"), None);
    }

    #[test]
    fn non_utf8_values_are_raw_only() {
        let h = Headers::from_pairs([("a", &[0xff_u8, 0xfe][..])]);
        assert_eq!(h.get("a"), None);
        assert_eq!(h.get_raw("a"), Some(&[0xff_u8, 0xfe][..]));
    }

    #[test]
    fn debug_hides_signatures() {
        let h =
            Headers::from_pairs([("X-Shopify-Hmac-Sha256", "Kx9xOYmfbf/hb4mq1iL+lZJskmKNJdUqfkxRSzZsSUs=")]);
        let shown = format!("{h:?}");
        assert!(!shown.contains("lZJskmKNJdUqfkx"), "{shown}");
    }
}
