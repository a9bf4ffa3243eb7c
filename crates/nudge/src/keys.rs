//! Fetches the public keys a source asks for ([`Verified::NeedKeys`](nudge_ingest::Verified)) and hands
//! them to it. The source has already checked each URL against its configured base; this only reads it, with
//! a short timeout and a size bound, and never follows a redirect.

use nudge_ingest::Source;
use std::time::Duration;

/// The largest key document accepted: a PEM public key is well under 2 KiB.
const MAX_KEY_BYTES: usize = 16 * 1024;

pub struct KeyFetcher {
    http: reqwest::Client,
}

impl Default for KeyFetcher {
    fn default() -> Self {
        Self::new()
    }
}

impl KeyFetcher {
    pub fn new() -> Self {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .expect("an HTTP client with a timeout builds");
        Self { http }
    }

    /// Reads every URL and gives its body to `source`; the first failure is the reason returned.
    pub async fn fetch_into(&self, source: &dyn Source, urls: &[String]) -> Result<(), String> {
        for url in urls {
            let resp =
                self.http.get(url).send().await.map_err(|e| format!("fetching the key at {url}: {e}"))?;
            if !resp.status().is_success() {
                return Err(format!("fetching the key at {url}: HTTP {}", resp.status().as_u16()));
            }
            let bytes = resp.bytes().await.map_err(|e| format!("reading the key at {url}: {e}"))?;
            if bytes.len() > MAX_KEY_BYTES {
                return Err(format!("the key at {url} is over {MAX_KEY_BYTES} bytes"));
            }
            let pem = std::str::from_utf8(&bytes).map_err(|_| format!("the key at {url} is not text"))?;
            source.accept_key(url, pem)?;
        }
        Ok(())
    }
}
