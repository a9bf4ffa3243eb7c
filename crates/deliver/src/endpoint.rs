//! Outbound URLs a user configures (a webhook endpoint, a Slack webhook) and the rules they must meet,
//! shared by every connector that posts to such a URL.
//!
//! The rule, checked at load ([`check_url`]) and again for every address a host name resolves to
//! ([`GuardedResolver`]), so a public name that resolves to an internal address is refused too:
//!
//! - the scheme is `https`; plain `http` is accepted only for a loopback host (a fake or a local receiver
//!   during development);
//! - the host must not be private or internal — loopback, RFC 1918, carrier-grade NAT, link-local (cloud
//!   metadata at 169.254.169.254), unique-local IPv6, unspecified, multicast, broadcast, documentation and
//!   benchmarking ranges, and the names `localhost`, `*.localhost`, `*.local`, `*.internal` — unless the
//!   destination says `allow_private = true`. Loopback is internal: `http://127.0.0.1` needs the flag too.
//!
//! Pure functions apart from the resolver, so every case is unit-tested here.

use reqwest::Url;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Checks a configured destination URL against the rule above and returns it parsed.
///
/// Errors never repeat the URL: for Slack the URL is the secret.
pub fn check_url(url: &str, allow_private: bool) -> Result<Url, String> {
    let parsed = Url::parse(url.trim()).map_err(|e| format!("not a URL ({e})"))?;
    if !parsed.username().is_empty() || parsed.password().is_some() {
        return Err("the URL must not carry a user name or password".into());
    }
    let host = parsed.host_str().filter(|h| !h.is_empty()).ok_or("the URL has no host")?;
    let ip: Option<IpAddr> = host.trim_start_matches('[').trim_end_matches(']').parse().ok();
    let loopback = match ip {
        None => is_loopback_name(host),
        Some(IpAddr::V4(v4)) => v4.is_loopback(),
        Some(IpAddr::V6(v6)) => v6.is_loopback() || v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
    };
    match parsed.scheme() {
        "https" => {}
        "http" if loopback => {}
        "http" => return Err("use https (plain http is accepted only for a loopback host)".into()),
        other => return Err(format!("scheme `{other}` is not allowed; use https")),
    }
    if !allow_private {
        let internal = match ip {
            None => is_internal_name(host),
            Some(ip) => is_internal_ip(ip),
        };
        if internal {
            return Err("the host is a private or internal address; set allow_private = true if that is \
                        intended"
                .into());
        }
    }
    Ok(parsed)
}

fn is_loopback_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    name == "localhost" || name.ends_with(".localhost")
}

/// Host names that only resolve inside a network.
pub fn is_internal_name(name: &str) -> bool {
    let name = name.trim_end_matches('.').to_ascii_lowercase();
    is_loopback_name(&name)
        || name.ends_with(".local")
        || name.ends_with(".internal")
        || name.ends_with(".lan")
        || name.ends_with(".home.arpa")
        || !name.contains('.')
}

/// Whether `ip` is an address no outbound webhook should reach without an explicit opt-in.
pub fn is_internal_ip(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_internal_v4(v4);
            }
            let first = v6.segments()[0];
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (first & 0xfe00) == 0xfc00 // unique local fc00::/7
                || (first & 0xffc0) == 0xfe80 // link-local fe80::/10
                || (first & 0xffc0) == 0xfec0 // site-local (deprecated) fec0::/10
                || first == 0x2001 && v6.segments()[1] == 0x0db8 // documentation 2001:db8::/32
                || first == 0x0064 && v6.segments()[1] == 0xff9b // NAT64 64:ff9b::/96 reaches IPv4
                || (v6.segments()[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible ::a.b.c.d
        }
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || a == 0 // "this network"
        || (a == 100 && (64..128).contains(&b)) // carrier-grade NAT 100.64.0.0/10
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments 192.0.0.0/24
        || (a == 192 && b == 0 && c == 2) // TEST-NET-1
        || (a == 198 && b == 51 && c == 100) // TEST-NET-2
        || (a == 203 && b == 0 && c == 113) // TEST-NET-3
        || (a == 198 && (18..20).contains(&b)) // benchmarking 198.18.0.0/15
        || a >= 240 // reserved
}

/// A DNS resolver that drops internal addresses (unless allowed), so a name cannot smuggle a request to
/// an internal host past [`check_url`] — including one whose DNS answer changes after the check.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver {
    pub allow_private: bool,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let allow_private = self.allow_private;
        Box::pin(async move {
            let host = name.as_str().to_string();
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let allowed: Vec<SocketAddr> =
                found.into_iter().filter(|a| allow_private || !is_internal_ip(a.ip())).collect();
            if allowed.is_empty() {
                let error: Box<dyn std::error::Error + Send + Sync> =
                    "the host resolves only to private or internal addresses".into();
                return Err(error);
            }
            let addrs: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// The HTTP client a JSON API connector uses: a sensitive `Authorization: Bearer` default header when
/// `bearer` is given (`field` names the setting in errors, never the value), JSON content type, the
/// attempt and connect timeouts, no redirects (one would carry the credential to another host), the
/// guarded resolver, and nudge's user agent. Fails when no TLS crypto provider is installed.
pub(crate) fn json_client(
    bearer: Option<(&str, &str)>,
    timeout: std::time::Duration,
    allow_private: bool,
) -> Result<reqwest::Client, crate::DeliverError> {
    use reqwest::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderMap, HeaderValue};
    if rustls::crypto::CryptoProvider::get_default().is_none() {
        return Err(crate::DeliverError::NoCryptoProvider);
    }
    let mut headers = HeaderMap::new();
    if let Some((field, secret)) = bearer {
        let mut auth = HeaderValue::from_str(&format!("Bearer {secret}"))
            .map_err(|_| crate::DeliverError::Config(format!("{field} is not a valid header value")))?;
        auth.set_sensitive(true);
        headers.insert(AUTHORIZATION, auth);
        headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
    }
    Ok(reqwest::Client::builder()
        .default_headers(headers)
        .timeout(timeout)
        .connect_timeout(timeout.min(std::time::Duration::from_secs(5)))
        .redirect(reqwest::redirect::Policy::none())
        .dns_resolver(std::sync::Arc::new(GuardedResolver { allow_private }))
        .user_agent(concat!("nudge/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// Reads at most `max` bytes of a response body; a body that fails to arrive reads as what came.
pub(crate) async fn read_capped(mut response: reqwest::Response, max: usize) -> Vec<u8> {
    let mut body = Vec::new();
    while let Ok(Some(chunk)) = response.chunk().await {
        let room = max - body.len();
        body.extend_from_slice(&chunk[..chunk.len().min(room)]);
        if body.len() >= max {
            break;
        }
    }
    body
}

/// A one-line description of a request that got no response, without the URL (it can be a secret).
pub(crate) fn transport_error(e: &reqwest::Error, timeout: std::time::Duration) -> String {
    let mut text = if e.is_timeout() {
        format!("no response within {timeout:?}")
    } else if e.is_connect() {
        "could not connect".to_string()
    } else {
        "the connection failed".to_string()
    };
    let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
    while let Some(cause) = source {
        let shown = cause.to_string();
        // hyper and reqwest name the URL in some messages; it is left out.
        if !shown.contains("://") {
            text.push_str(&format!(": {shown}"));
        }
        source = cause.source();
    }
    text
}

/// The start of a response body as one line of text, for an error message.
pub(crate) fn body_excerpt(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    text.trim().chars().take(200).map(|c| if c.is_control() { ' ' } else { c }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_public_hosts_pass() {
        check_url("https://hooks.example.com/in/nudge", false).unwrap();
        check_url("https://93.184.216.34/hook", false).unwrap();
        check_url("https://[2606:4700::1111]/hook", false).unwrap();
    }

    #[test]
    fn plain_http_only_to_loopback() {
        let e = check_url("http://hooks.example.com/in", false).unwrap_err();
        assert!(e.contains("use https"), "{e}");
        assert!(check_url("ftp://hooks.example.com/in", true).unwrap_err().contains("scheme"));
        check_url("http://127.0.0.1:9/hook", true).unwrap();
        check_url("http://localhost:9/hook", true).unwrap();
        check_url("http://[::1]:9/hook", true).unwrap();
        assert!(check_url("http://10.0.0.5/hook", true).is_err(), "http to a non-loopback private host");
    }

    #[test]
    fn internal_addresses_need_the_flag() {
        for url in [
            "https://127.0.0.1/x",
            "http://127.0.0.1:8080/x",
            "https://localhost/x",
            "https://api.localhost/x",
            "https://10.1.2.3/x",
            "https://172.16.0.1/x",
            "https://172.31.255.255/x",
            "https://192.168.1.1/x",
            "https://169.254.169.254/latest/meta-data",
            "https://100.64.0.1/x",
            "https://0.0.0.0/x",
            "https://[::1]/x",
            "https://[fd00::1]/x",
            "https://[fe80::1]/x",
            "https://[::ffff:10.0.0.1]/x",
            "https://printer.local/x",
            "https://metadata.google.internal/x",
            "https://intranet/x",
        ] {
            let e = check_url(url, false).unwrap_err();
            assert!(e.contains("private or internal"), "{url}: {e}");
            check_url(url, true).unwrap_or_else(|e| panic!("{url} with allow_private: {e}"));
        }
        for ip in ["172.15.255.255", "172.32.0.1", "100.128.0.1", "8.8.8.8", "192.0.3.1"] {
            assert!(!is_internal_ip(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn credentials_in_the_url_are_refused_and_errors_do_not_repeat_it() {
        assert!(check_url("https://user:pw@hooks.example.com/x", true).is_err());
        let e = check_url("https://10.0.0.1/services/T000/B000/SECRETPART", false).unwrap_err();
        assert!(!e.contains("SECRETPART"), "{e}");
        let e = check_url("not a url SECRETPART", false).unwrap_err();
        assert!(!e.contains("SECRETPART"), "{e}");
    }

    #[test]
    fn excerpts_are_one_short_line() {
        assert_eq!(body_excerpt(b" invalid_payload\n"), "invalid_payload");
        assert_eq!(body_excerpt(&[b'x'; 500]).len(), 200);
        assert_eq!(body_excerpt(b"a\nb"), "a b");
    }
}
