//! Authenticity by an unguessable per-tenant URL token, for platforms that document no webhook signature
//! (Yotpo, Smile.io).
//!
//! The platform is given the intake URL with the token as a query parameter,
//! `https://<host>/webhooks/<path>?token=<url_token>`. The edge reads `token` from the query of a `POST`
//! and hands it to the source as the [`HEADER`] pseudo-header (replacing any header of that name the
//! caller sent), so the source sees it exactly as it sees any other header. The source compares it with
//! the configured token in constant time. A token is at least [`MIN_LEN`] characters of
//! `[A-Za-z0-9._~-]`, so it never needs percent-encoding.
//!
//! Every notification authenticated this way is only a hint: the source turns it into a fetch job and
//! acts on what the platform's API answers.

use crate::headers::Headers;
use crate::source::Rejection;

/// The pseudo-header the edge carries the URL's `token` in.
pub const HEADER: &str = "x-nudge-url-token";
/// The query parameter the token is read from.
pub const QUERY_PARAM: &str = "token";
/// The shortest token accepted in the configuration.
pub const MIN_LEN: usize = 24;

/// The raw value of `token=` in a query string (no percent-decoding: valid tokens need none).
pub fn from_query(query: &str) -> Option<&str> {
    query.split('&').find_map(|p| p.strip_prefix("token="))
}

/// Why a configured token is not usable, or `None` when it is.
pub fn problem(token: &str) -> Option<String> {
    if token.chars().count() < MIN_LEN {
        return Some(format!("is {} characters long; it must be at least {MIN_LEN}", token.chars().count()));
    }
    if !token.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'~' | b'-')) {
        return Some("may contain only letters, digits, `.`, `_`, `~` and `-`".into());
    }
    None
}

/// Constant-time equality of two byte strings (the length is not secret).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Checks the request's URL token against `expected`: 500 when no usable token is configured, 401 when
/// the request has none or another one.
pub fn check(source: &str, headers: &Headers, expected: &str) -> Result<(), Rejection> {
    if expected.is_empty() {
        return Err(Rejection::not_configured(format!("{source}: no url_token configured")));
    }
    match headers.get_raw(HEADER) {
        None => Err(Rejection::unauthorized(format!("{source}: the intake URL's `token` is missing"))),
        Some(got) if constant_time_eq(got, expected.as_bytes()) => Ok(()),
        Some(_) => Err(Rejection::unauthorized(format!("{source}: the intake URL's `token` is wrong"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_tokens_and_configured_tokens() {
        assert_eq!(from_query("a=1&token=abc&b=2"), Some("abc"));
        assert_eq!(from_query("tokens=abc"), None);
        assert!(problem("short").is_some());
        assert!(problem("abcdefghijklmnopqrstuvw%").is_some());
        assert!(problem("abcdefghijklmnopqrstuvwx").is_none());
        let h = Headers::from_pairs([(HEADER, b"abcdefghijklmnopqrstuvwx".as_slice())]);
        assert!(check("t", &h, "abcdefghijklmnopqrstuvwx").is_ok());
        assert_eq!(check("t", &h, "abcdefghijklmnopqrstuvwy").unwrap_err().status, 401);
        assert_eq!(check("t", &Headers::new(), "abcdefghijklmnopqrstuvwx").unwrap_err().status, 401);
        assert_eq!(check("t", &h, "").unwrap_err().status, 500);
    }
}
