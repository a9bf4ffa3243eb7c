//! The access token of one LaunchPoint service (one `client_id`): fetched from Marketo Identity, cached,
//! fetched again shortly before it runs out, and fetched again once when Marketo calls it invalid (601)
//! or expired (602).
//!
//! How Identity behaves shapes this: `GET <base>/identity/oauth/token?grant_type=client_credentials&
//! client_id=…&client_secret=…` (all three are query parameters) answers with the *same* token and its
//! *remaining* `expires_in` until that token expires; only then is a new one issued. So a fetch made in
//! the token's last minute usually brings back the same token; it is then used until it expires rather
//! than fetched again on every call. Identity calls do not count against Marketo's limits, so they do not
//! wait for the rate limiter. Concurrent callers share one fetch: the cache is behind an async lock held
//! while fetching. The URL (it carries the secret) and the token are never logged or put in an outcome.

use super::request::IDENTITY;
use crate::Outcome;
use crate::endpoint::{body_excerpt, read_capped, transport_error};
use serde::Deserialize;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// A token is fetched again once it has less than this left.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(60);
const MAX_IDENTITY_BODY_BYTES: usize = 64 * 1024;

#[derive(Clone)]
struct Cached {
    value: String,
    /// When the token stops working, by Identity's `expires_in`.
    expires_at: Instant,
    /// When to fetch again: [`REFRESH_MARGIN`] before expiry, or at expiry for a token that came back
    /// with less than that left.
    refresh_at: Instant,
}

/// The token cache of one client id.
pub(crate) struct TokenSource {
    /// `<base>/identity/oauth/token` with the three query parameters; a secret, never shown.
    url: reqwest::Url,
    timeout: Duration,
    cached: Mutex<Option<Cached>>,
    fetches: AtomicU64,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    token_type: Option<String>,
    expires_in: i64,
}

impl TokenSource {
    pub(crate) fn new(
        base_url: &str,
        client_id: &str,
        client_secret: &str,
        timeout: Duration,
    ) -> Option<Self> {
        let mut url = reqwest::Url::parse(&format!("{base_url}/identity/oauth/token")).ok()?;
        url.query_pairs_mut()
            .append_pair("grant_type", "client_credentials")
            .append_pair("client_id", client_id)
            .append_pair("client_secret", client_secret);
        Some(TokenSource { url, timeout, cached: Mutex::new(None), fetches: AtomicU64::new(0) })
    }

    /// How many times Identity was asked.
    pub(crate) fn fetches(&self) -> u64 {
        self.fetches.load(Ordering::Relaxed)
    }

    /// A token to call with: the cached one while it is fresh, else one fetched now.
    pub(crate) async fn get(&self, http: &reqwest::Client) -> Result<String, Outcome> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref()
            && Instant::now() < token.refresh_at
        {
            return Ok(token.value.clone());
        }
        let token = self.fetch(http).await?;
        let value = token.value.clone();
        *cached = Some(token);
        Ok(value)
    }

    /// A token after Marketo refused `refused` (601/602). When another caller has already replaced it,
    /// that token is used; otherwise one is fetched. Either way the caller repeats its call once only.
    pub(crate) async fn replace(&self, http: &reqwest::Client, refused: &str) -> Result<String, Outcome> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref()
            && token.value != refused
            && Instant::now() < token.expires_at
        {
            return Ok(token.value.clone());
        }
        *cached = None;
        let token = self.fetch(http).await?;
        let value = token.value.clone();
        *cached = Some(token);
        Ok(value)
    }

    async fn fetch(&self, http: &reqwest::Client) -> Result<Cached, Outcome> {
        self.fetches.fetch_add(1, Ordering::Relaxed);
        let retry = |status: Option<u16>, error: String| Outcome::Retry {
            endpoint: IDENTITY.into(),
            status,
            error,
            retry_after: None,
        };
        let started = Instant::now();
        let response = match http.get(self.url.clone()).timeout(self.timeout).send().await {
            Ok(r) => r,
            Err(e) => {
                let error = format!("fetching a Marketo access token: {}", transport_error(&e, self.timeout));
                tracing::warn!(%error, "marketo identity call failed before an answer");
                return Err(retry(None, error));
            }
        };
        let status = response.status().as_u16();
        let body = read_capped(response, MAX_IDENTITY_BODY_BYTES).await;
        match status {
            200 => {}
            401 => {
                return Err(Outcome::Rejected {
                    endpoint: IDENTITY.into(),
                    status: Some(401),
                    error: "Marketo Identity refused the client credentials (HTTP 401): check client_id \
                            and client_secret in [destinations.marketo] against the LaunchPoint service \
                            (Admin > Integration > LaunchPoint > View Details)"
                        .into(),
                });
            }
            408 | 429 | 500..=599 => {
                return Err(retry(
                    Some(status),
                    format!("Marketo Identity answered HTTP {status}: {}", body_excerpt(&body)),
                ));
            }
            other => {
                return Err(Outcome::Rejected {
                    endpoint: IDENTITY.into(),
                    status: Some(other),
                    error: format!(
                        "Marketo Identity answered HTTP {other}: {}; check base_url and the LaunchPoint \
                         service",
                        body_excerpt(&body)
                    ),
                });
            }
        }
        let answer: TokenAnswer = serde_json::from_slice(&body).map_err(|_| {
            retry(Some(200), "Marketo Identity answered without a usable access_token".to_string())
        })?;
        if answer.access_token.trim().is_empty()
            || answer.token_type.as_deref().is_some_and(|t| !t.eq_ignore_ascii_case("bearer"))
        {
            return Err(retry(Some(200), "Marketo Identity answered without a bearer access_token".into()));
        }
        let left = Duration::from_secs(u64::try_from(answer.expires_in).unwrap_or(0));
        let expires_at = started + left;
        let refresh_at = if left > REFRESH_MARGIN { expires_at - REFRESH_MARGIN } else { expires_at };
        tracing::debug!(expires_in = answer.expires_in, "fetched a marketo access token");
        Ok(Cached { value: answer.access_token, expires_at, refresh_at })
    }
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource").field("fetches", &self.fetches()).finish_non_exhaustive()
    }
}
