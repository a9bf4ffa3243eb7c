//! Adobe I/O Events: CloudEvents signed with Adobe's rotating key pair.
//!
//! - Registration: `GET <webhook>?challenge=<value>` is answered `200 {"challenge": "<value>"}`. When that
//!   fails Adobe POSTs `{"validationUrl": …}`; it is answered 200 and never fetched (a person must open it).
//! - Authenticity: `x-adobe-digital-signature-1|2` are RSA-SHA256 signatures of the raw body by the keys
//!   published at `x-adobe-public-key1-path|2-path` under `https://static.adobeioevents.com`; either one
//!   verifying is enough (two keys allow rotation). A key path that does not resolve under the configured
//!   base is refused before anything is fetched.
//! - The event must be addressed to us: `recipient_client_id` equals the configured client id.
//! - Dedupe on `event_id` (retries and several registrations share it).

use super::verify::PublicKey;
use std::collections::VecDeque;
use std::sync::Mutex;

pub const SIGNATURE_1: &str = "x-adobe-digital-signature-1";
pub const SIGNATURE_2: &str = "x-adobe-digital-signature-2";
pub const KEY_PATH_1: &str = "x-adobe-public-key1-path";
pub const KEY_PATH_2: &str = "x-adobe-public-key2-path";
pub const EVENT_ID: &str = "x-adobe-event-id";
pub const DELIVERY_ID: &str = "x-adobe-delivery-id";

/// Adobe's key host.
pub const DEFAULT_KEY_BASE: &str = "https://static.adobeioevents.com";
/// Fetched keys kept per source; the oldest is dropped past this.
pub const KEY_CACHE_CAPACITY: usize = 16;
/// The longest key path accepted.
const MAX_KEY_PATH: usize = 256;
/// The longest challenge echoed.
const MAX_CHALLENGE: usize = 256;

/// Where public keys may be read from: `https://host[:port][/prefix]`, or plain `http` for a loopback
/// host only (a local fake key server in tests and `nudge dev`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyBase {
    base: String,
}

impl KeyBase {
    pub fn parse(url: &str) -> Result<Self, String> {
        let (scheme, rest) =
            url.split_once("://").ok_or_else(|| format!("`{url}` is not an absolute URL"))?;
        let (authority, prefix) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].trim_end_matches('/')),
            None => (rest, ""),
        };
        if authority.is_empty()
            || authority.contains(['@', '\\', '?', '#', '%', ' '])
            || prefix.contains(['@', '\\', '?', '#', '%', ' '])
            || prefix.split('/').any(|s| s == "..")
        {
            return Err(format!("`{url}` must be a plain https://host base without user, query or escapes"));
        }
        let host = match authority.rsplit_once(':') {
            Some((h, port)) if !h.ends_with(']') || authority.starts_with('[') => {
                if !port.is_empty() && port.chars().all(|c| c.is_ascii_digit()) { h } else { authority }
            }
            _ => authority,
        };
        match scheme {
            "https" => {}
            "http" if matches!(host, "127.0.0.1" | "localhost" | "[::1]") => {}
            "http" => return Err(format!("`{url}`: plain http is allowed only for a loopback host")),
            other => return Err(format!("`{url}`: scheme `{other}` is not https")),
        }
        Ok(Self { base: format!("{scheme}://{authority}{prefix}") })
    }

    pub fn as_str(&self) -> &str {
        &self.base
    }

    /// The URL of a key path header, or why it does not stay under this base. Only plain path characters
    /// are accepted: no `..` segment, no `//`, no percent escapes, no `@`, `:`, `\`, `?` or `#`.
    pub fn key_url(&self, path: &str) -> Result<String, String> {
        let ok_char = |c: char| c.is_ascii_alphanumeric() || matches!(c, '/' | '-' | '_' | '.');
        if path.is_empty() || path.len() > MAX_KEY_PATH {
            return Err("a public key path must be 1 to 256 characters".into());
        }
        if !path.starts_with('/')
            || path.contains("//")
            || !path.chars().all(ok_char)
            || path.split('/').any(|s| s == "." || s == "..")
        {
            return Err(format!("public key path `{}` does not stay under the key base", printable(path)));
        }
        Ok(format!("{}{path}", self.base))
    }
}

/// The `challenge` of a registration `GET`'s query, percent-decoded; `Err` when the query has none or it is
/// not plain printable text.
pub fn challenge(query: &str) -> Result<String, String> {
    let raw = query
        .split('&')
        .find_map(|kv| kv.strip_prefix("challenge="))
        .ok_or_else(|| "a GET must carry a `challenge` query parameter".to_string())?;
    let decoded =
        percent_decode(raw).ok_or_else(|| "the challenge is not valid percent-encoded text".to_string())?;
    if decoded.is_empty() || decoded.len() > MAX_CHALLENGE || decoded.chars().any(char::is_control) {
        return Err("the challenge must be 1 to 256 printable characters".into());
    }
    Ok(decoded)
}

fn percent_decode(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                let hex = b.get(i + 1..i + 3)?;
                out.push(u8::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?);
                i += 3;
            }
            b'+' => {
                out.push(b' ');
                i += 1;
            }
            c => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8(out).ok()
}

/// Shortens and cleans untrusted text for an error message.
pub(crate) fn printable(s: &str) -> String {
    s.chars().take(80).map(|c| if c.is_control() { '?' } else { c }).collect()
}

/// Keys fetched from the key base, by URL, the oldest dropped past [`KEY_CACHE_CAPACITY`].
#[derive(Debug, Default)]
pub struct KeyCache {
    keys: Mutex<VecDeque<(String, PublicKey)>>,
}

impl KeyCache {
    pub fn get(&self, url: &str) -> Option<PublicKey> {
        let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.iter().find(|(u, _)| u == url).map(|(_, k)| k.clone())
    }

    pub fn insert(&self, url: &str, key: PublicKey) {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.retain(|(u, _)| u != url);
        if keys.len() >= KEY_CACHE_CAPACITY {
            keys.pop_front();
        }
        keys.push_back((url.to_string(), key));
    }

    pub fn len(&self) -> usize {
        self.keys.lock().unwrap_or_else(|e| e.into_inner()).len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_paths_stay_under_the_base() {
        let b = KeyBase::parse(DEFAULT_KEY_BASE).unwrap();
        assert_eq!(
            b.key_url("/prod/keys/pub-key-voy5XEbWmT.pem").unwrap(),
            "https://static.adobeioevents.com/prod/keys/pub-key-voy5XEbWmT.pem"
        );
        for bad in [
            "",
            "prod/keys/a.pem",
            "//evil.example/a.pem",
            "/../a.pem",
            "/prod/../../a.pem",
            "/a%2f..%2fb.pem",
            "@evil.example/a.pem",
            "/a.pem?x=1",
            "/a.pem#x",
            "/a\\b.pem",
            ".evil.example/a.pem",
            "/a:b.pem",
            "/./a.pem",
        ] {
            assert!(b.key_url(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn bases_are_https_or_loopback_http() {
        assert!(KeyBase::parse("https://static.adobeioevents.com/").is_ok());
        assert!(KeyBase::parse("http://127.0.0.1:8081").is_ok());
        assert!(KeyBase::parse("http://localhost:9").is_ok());
        for bad in
            ["http://static.adobeioevents.com", "ftp://x", "x", "https://u@h", "https://h/%2e%2e", "https://"]
        {
            assert!(KeyBase::parse(bad).is_err(), "{bad}");
        }
        assert!(KeyBase::parse("http://127.0.0.1.evil.example").is_err());
    }

    #[test]
    fn challenges_are_read_from_the_query() {
        assert_eq!(challenge("challenge=abc").unwrap(), "abc");
        assert_eq!(challenge("x=1&challenge=a%2Db+c").unwrap(), "a-b c");
        assert!(challenge("x=1").is_err());
        assert!(challenge("challenge=").is_err());
        assert!(challenge("challenge=%ff").is_err());
        assert!(challenge("challenge=%0a").is_err());
        assert!(challenge("challenge=%4").is_err());
    }
}
