//! The HTTP side: one query per job, paced by the cost bucket, answers → [`FetchOutcome`]s.

use super::config::{ConfigError, ShopifyAdminConfig};
use super::request::{Answer, Bucket, customer_gid, customer_request, endpoint, read_answer};
use crate::{FetchJob, FetchOutcome, Fetcher};
use nudge_ingest::shopify::enrich::answer_body;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// The cost assumed for the customer query until an answer reports the real one.
const FIRST_ESTIMATE: f64 = 10.0;
/// At most this many customers are cached.
const CACHE_CAP: usize = 10_000;
/// The wait after a failure that says nothing about when to try again (a 5xx, a timeout).
const BACKOFF: Duration = Duration::from_secs(5);

/// Reads customers from one shop's GraphQL Admin API for Shopify's enrichment jobs.
pub struct ShopifyAdminFetcher {
    config: ShopifyAdminConfig,
    url: String,
    http: reqwest::Client,
    state: Mutex<State>,
}

struct State {
    bucket: Bucket,
    /// The customer query's cost as last requested.
    estimate: f64,
    cache: HashMap<String, (Instant, Value)>,
}

impl std::fmt::Debug for ShopifyAdminFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShopifyAdminFetcher").field("config", &self.config).finish()
    }
}

impl ShopifyAdminFetcher {
    pub fn new(config: ShopifyAdminConfig) -> Result<Self, ConfigError> {
        config.validate()?;
        let http = reqwest::Client::builder()
            .timeout(config.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ConfigError {
                field: "base_url",
                message: format!("cannot build the client: {e}"),
            })?;
        let url = endpoint(&config.base(), config.api_version.trim());
        let state =
            State { bucket: Bucket::new(Instant::now()), estimate: FIRST_ESTIMATE, cache: HashMap::new() };
        Ok(Self { config, url, http, state: Mutex::new(state) })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn cached(&self, gid: &str) -> Option<Value> {
        let ttl = self.config.cache_ttl;
        let mut s = self.lock();
        match s.cache.get(gid) {
            Some((at, v)) if at.elapsed() < ttl => Some(v.clone()),
            Some(_) => {
                s.cache.remove(gid);
                None
            }
            None => None,
        }
    }

    fn remember(&self, gid: String, customer: &Value) {
        let ttl = self.config.cache_ttl;
        if ttl.is_zero() {
            return;
        }
        let mut s = self.lock();
        if s.cache.len() >= CACHE_CAP {
            s.cache.retain(|_, (at, _)| at.elapsed() < ttl);
            if s.cache.len() >= CACHE_CAP {
                s.cache.clear();
            }
        }
        s.cache.insert(gid, (Instant::now(), customer.clone()));
    }

    /// Waits until the bucket holds the query's estimated cost and takes it out; returns what it took.
    async fn reserve(&self) -> f64 {
        loop {
            let wait = {
                let mut s = self.lock();
                let cost = s.estimate;
                match s.bucket.reserve(cost, Instant::now()) {
                    Ok(()) => return cost,
                    Err(wait) => wait,
                }
            };
            tokio::time::sleep(wait).await;
        }
    }

    /// One query for `gid`: the customer object, `None` when the shop has no such customer, or the
    /// outcome that ends this attempt.
    pub async fn customer(&self, gid: &str) -> Result<Option<Value>, FetchOutcome> {
        if let Some(hit) = self.cached(gid) {
            return Ok(Some(hit));
        }
        let reserved = self.reserve().await;
        let sent = self
            .http
            .post(&self.url)
            .header("X-Shopify-Access-Token", self.config.access_token.trim())
            .header("Content-Type", "application/json")
            .header("Accept", "application/json")
            .json(&customer_request(gid))
            .send()
            .await;
        let response = match sent {
            Ok(r) => r,
            Err(e) => {
                self.lock().bucket.settle(reserved, None, Instant::now());
                let what = if e.is_timeout() { "timed out" } else { "failed" };
                return Err(FetchOutcome::Retry {
                    after: BACKOFF,
                    reason: format!("Shopify Admin request {what}"),
                });
            }
        };
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse::<f64>().ok())
            .filter(|s| s.is_finite() && *s >= 0.0)
            .map(|s| Duration::from_secs_f64(s.min(3600.0)));
        let body = response.bytes().await.unwrap_or_default();
        let read = if status == 200 { Some(read_answer(&body)) } else { None };
        let cost = read.as_ref().and_then(|r| r.as_ref().ok()).and_then(|(_, c)| *c);
        let wait = {
            let mut s = self.lock();
            s.bucket.settle(reserved, cost.as_ref(), Instant::now());
            if let Some(c) = &cost {
                s.estimate = c.requested.max(1.0);
            }
            s.bucket.wait_for(s.estimate)
        };
        let shop = &self.config.shop_domain;
        match status {
            200 => {}
            401 | 403 => {
                return Err(FetchOutcome::Failed(format!(
                    "Shopify Admin refused the access token for {shop} ({status}); check sources.shopify.admin.access_token and the app's read_customers scope"
                )));
            }
            404 => {
                return Err(FetchOutcome::Failed(format!(
                    "Shopify Admin answered 404 for {shop} API {}; check shop_domain and api_version",
                    self.config.api_version
                )));
            }
            429 => {
                return Err(FetchOutcome::Retry {
                    after: retry_after.unwrap_or(wait),
                    reason: "Shopify Admin answered 429".into(),
                });
            }
            s if s >= 500 => {
                return Err(FetchOutcome::Retry {
                    after: retry_after.unwrap_or(BACKOFF),
                    reason: format!("Shopify Admin answered {s}"),
                });
            }
            s => return Err(FetchOutcome::Failed(format!("Shopify Admin answered {s}"))),
        }
        match read {
            Some(Ok((Answer::Customer(c), _))) => {
                self.remember(gid.to_string(), &c);
                Ok(Some(c))
            }
            Some(Ok((Answer::NotFound, _))) => Ok(None),
            Some(Ok((Answer::Throttled, _))) => {
                Err(FetchOutcome::Retry { after: wait, reason: "Shopify Admin answered THROTTLED".into() })
            }
            Some(Ok((Answer::Errors(e), _))) => {
                Err(FetchOutcome::Failed(format!("Shopify Admin refused the query: {e}")))
            }
            Some(Err(e)) => Err(FetchOutcome::Failed(format!("Shopify Admin answered 200 with {e}"))),
            None => Err(FetchOutcome::Failed("Shopify Admin answer unread".into())),
        }
    }
}

#[async_trait::async_trait]
impl Fetcher for ShopifyAdminFetcher {
    fn source(&self) -> &'static str {
        nudge_ingest::shopify::source::SOURCE
    }

    async fn fetch(&self, job: &FetchJob) -> FetchOutcome {
        if job.resource != "customer" {
            return FetchOutcome::Failed(format!("shopify cannot fetch a `{}`", job.resource));
        }
        if let Some(shop) = &job.shop
            && !shop.eq_ignore_ascii_case(self.config.shop_domain.trim())
        {
            return FetchOutcome::Failed(format!(
                "no Admin API access is configured for {shop} (sources.shopify.admin is for {})",
                self.config.shop_domain
            ));
        }
        let Some(payload) = &job.carry else {
            return FetchOutcome::Failed("the enrichment job carries no payload".into());
        };
        let gid = match customer_gid(&job.id) {
            Ok(g) => g,
            Err(e) => return FetchOutcome::Failed(e),
        };
        match self.customer(&gid).await {
            Ok(Some(customer)) => FetchOutcome::Fetched(answer_body(&job.notified_topic, payload, &customer)),
            Ok(None) => FetchOutcome::Gone(format!(
                "customer {} no longer exists in {}",
                job.id, self.config.shop_domain
            )),
            Err(outcome) => outcome,
        }
    }
}
