//! The external scorer client: one `POST` of JSON per customer, all of a batch's customers at once (at most
//! `max_concurrency` in flight), every call bounded by the batch's deadline (`timeout` from the start of
//! the batch), and a circuit breaker.
//!
//! # The contract
//!
//! Request (`Content-Type: application/json`):
//!
//! ```json
//! {"model": "churn_http", "customer": "ps_customer_5f0c…", "scored_at": "2026-03-01T10:00:00Z",
//!  "features": {"orders": 3, "recency": [12.5, null]}}
//! ```
//!
//! `customer` is the keyed pseudonym of the customer's key (`privacy.pseudonym_key`): stable per customer,
//! never the email or the shop's id. `features` has every declared input by name: a number (or `null` when
//! the expression gave nothing) for an input written as one expression, an array for a list.
//!
//! Answer: `200` with `{"scores": {"NAME": NUMBER, …}}`; each output's `output` names a key. Anything else
//! (another status, a body that is not that shape, no answer by the deadline) is a failed call: the
//! customer's outputs get their fallbacks. A key that is missing or not a number fails that output only.
//!
//! # The breaker
//!
//! After `failures` consecutive failed calls the breaker opens: no call is made for `cooldown` (every
//! customer gets the fallback at once, reason `circuit breaker open`). Then one probe call is let through;
//! its success closes the breaker, its failure opens it for another `cooldown`.

use crate::config::HttpSpec;
use futures::StreamExt;
use nudge_model::CustomerId;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;
use std::time::Duration;
use tokio::time::Instant;

/// One customer's answer: the `scores` object's numbers by key, or why there is none.
pub type Answer = Result<BTreeMap<String, Option<f64>>, String>;

/// What a batch asks for one customer.
#[derive(Debug, Clone)]
pub struct Request {
    pub customer: CustomerId,
    /// The body to post (see the module documentation).
    pub body: Value,
}

#[derive(Debug, Default)]
struct Breaker {
    consecutive_failures: u32,
    open_until: Option<Instant>,
    probing: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Permit {
    Call,
    Probe,
    Skip,
}

/// The breaker's state, for `/metrics` and tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    Closed,
    Open,
    /// Open, and its cool-down is over: the next call is a probe.
    HalfOpen,
}

pub struct HttpScorer {
    client: reqwest::Client,
    spec: HttpSpec,
    breaker: Mutex<Breaker>,
}

impl std::fmt::Debug for HttpScorer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpScorer").field("url", &self.spec.url).finish_non_exhaustive()
    }
}

impl HttpScorer {
    /// A client for `spec` (already checked). A TLS crypto provider must be installed for https URLs.
    pub fn new(spec: HttpSpec) -> Result<HttpScorer, String> {
        if rustls::crypto::CryptoProvider::get_default().is_none() {
            return Err("no TLS crypto provider is installed".into());
        }
        let client = reqwest::Client::builder()
            .connect_timeout(spec.timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("nudge/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| format!("the HTTP client cannot be built: {e}"))?;
        Ok(HttpScorer { client, spec, breaker: Mutex::new(Breaker::default()) })
    }

    pub fn timeout(&self) -> Duration {
        self.spec.timeout
    }

    pub fn breaker_state(&self) -> BreakerState {
        let b = self.breaker.lock().expect("breaker lock");
        match b.open_until {
            None => BreakerState::Closed,
            Some(t) if Instant::now() < t || b.probing => BreakerState::Open,
            Some(_) => BreakerState::HalfOpen,
        }
    }

    fn permit(&self) -> Permit {
        let mut b = self.breaker.lock().expect("breaker lock");
        match b.open_until {
            None => Permit::Call,
            Some(t) if Instant::now() < t => Permit::Skip,
            Some(_) if b.probing => Permit::Skip,
            Some(_) => {
                b.probing = true;
                Permit::Probe
            }
        }
    }

    fn record(&self, ok: bool) {
        let mut b = self.breaker.lock().expect("breaker lock");
        if ok {
            *b = Breaker::default();
            return;
        }
        b.consecutive_failures = b.consecutive_failures.saturating_add(1);
        if b.probing || b.consecutive_failures >= self.spec.failures {
            b.open_until = Some(Instant::now() + self.spec.cooldown);
            b.probing = false;
        }
    }

    /// Asks for every request's scores, all within `timeout` from now; each customer gets an answer (or
    /// why not) by then.
    pub async fn score_batch(&self, requests: Vec<Request>) -> HashMap<CustomerId, Answer> {
        let deadline = Instant::now() + self.spec.timeout;
        let mut answers = HashMap::with_capacity(requests.len());
        // An open breaker skips the whole batch at once.
        if self.breaker_state() == BreakerState::Open {
            for r in requests {
                answers.insert(r.customer, Err("circuit breaker open".to_string()));
            }
            return answers;
        }
        let mut calls = futures::stream::iter(requests.into_iter().map(|r| async move {
            let answer = match self.permit() {
                Permit::Skip => Err("circuit breaker open".to_string()),
                Permit::Call | Permit::Probe => {
                    let a = self.call(&r.body, deadline).await;
                    self.record(a.is_ok());
                    a
                }
            };
            (r.customer, answer)
        }))
        .buffer_unordered(self.spec.max_concurrency);
        // Every call stops at the deadline by itself; the outer bound is a safety net.
        let safety = deadline + Duration::from_millis(50);
        while let Ok(Some((c, a))) = tokio::time::timeout_at(safety, calls.next()).await {
            answers.insert(c, a);
        }
        answers
    }

    async fn call(&self, body: &Value, deadline: Instant) -> Answer {
        let timeout_ms = self.spec.timeout.as_millis();
        let send = self.client.post(&self.spec.url).json(body).send();
        let response = match tokio::time::timeout_at(deadline, send).await {
            Err(_) => return Err(format!("no answer within {timeout_ms}ms")),
            Ok(Err(e)) => return Err(format!("the call failed: {}", without_url(&e))),
            Ok(Ok(r)) => r,
        };
        let status = response.status();
        let bytes = match tokio::time::timeout_at(deadline, response.bytes()).await {
            Err(_) => return Err(format!("no answer within {timeout_ms}ms")),
            Ok(Err(e)) => return Err(format!("the answer could not be read: {}", without_url(&e))),
            Ok(Ok(b)) => b,
        };
        if !status.is_success() {
            return Err(format!("the scorer answered {}", status.as_u16()));
        }
        parse_answer(&bytes)
    }
}

fn without_url(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    if let Some(u) = e.url() {
        s = s.replace(u.as_str(), "<scorer>");
    }
    s
}

/// Reads a 200's body: `{"scores": {name: number, …}}`. A value that is not a number is `None` (that
/// output falls back); a body of another shape is an error.
pub fn parse_answer(body: &[u8]) -> Answer {
    let v: Value = serde_json::from_slice(body).map_err(|_| "the answer is not JSON".to_string())?;
    let scores: &Map<String, Value> = v
        .get("scores")
        .and_then(Value::as_object)
        .ok_or_else(|| "the answer has no `scores` object".to_string())?;
    Ok(scores.iter().map(|(k, v)| (k.clone(), v.as_f64())).collect())
}
