//! The source compliance suite: every commerce source passes it against requests its harness builds.
//!
//! A harness knows how its platform signs and what a genuine notification looks like; the suite checks
//! what every source must do with them: genuine requests accepted with dedupe keys that name the source,
//! a retry recognised by a shared key, tampered, unsigned, wrongly signed and stale requests refused with
//! 401, hostile bodies that were signed never panicking and never becoming events without a customer,
//! and out-of-order updates of one order settling on the newest. One file per source implements
//! [`SourceHarness`] and calls [`run_suite`].

use nudge_ingest::source::{Inbound, Parsed, Source, StoredView, Verified};
use nudge_ingest::{Accepted, Headers};
use nudge_model::Event;
use nudge_state::{Applied, CustomerState};
use std::sync::Arc;

/// A request as a platform would send it.
#[derive(Debug, Clone)]
pub struct Request {
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Request {
    pub fn headers(&self) -> Headers {
        Headers::from_pairs(self.headers.iter().map(|(k, v)| (k.as_str(), v.as_bytes())))
    }
}

/// What each source's test file provides.
pub trait SourceHarness {
    /// The source under test, configured with the harness's secrets or keys.
    fn source(&self) -> Arc<dyn Source>;
    /// A genuine notification about an order (`n` makes its delivery id unique), signed as of `now_ms`.
    fn genuine(&self, n: u32, now_ms: i64) -> Request;
    /// The platform delivering `genuine(n, …)` again later (a retry of the same event).
    fn retry(&self, n: u32, now_ms: i64) -> Request;
    /// `genuine(n, …)` signed with a key nudge was not given.
    fn wrongly_signed(&self, n: u32, now_ms: i64) -> Request;
    /// `genuine(n, …)` without its signature headers.
    fn unsigned(&self, n: u32, now_ms: i64) -> Request;
    /// `genuine(n, …)` signed as of a time outside the replay window; `None` when the platform's
    /// signature carries no time.
    fn stale(&self, n: u32, now_ms: i64) -> Option<Request>;
    /// Any body, signed as the platform would sign it.
    fn signed(&self, body: &[u8], now_ms: i64) -> Request;
    /// For a stored delivery that parsed to a fetch job, what the platform's API answers for it (the body
    /// stored under the job's topic). Sources that never fetch keep the default.
    fn fetched(&self, job: &nudge_ingest::FetchJob) -> Vec<u8> {
        panic!("{} asked for a fetch the harness cannot answer: {job:?}", job.source)
    }
    /// Whether the platform's authentication covers the body's bytes. Transports that authenticate the
    /// caller only (a cloud's bearer token or API key over TLS) say `false`, and the tampered-body check
    /// is skipped for them: a changed body there is a different (authenticated) delivery.
    fn signs_body(&self) -> bool {
        true
    }
    /// Two stored views (topic, body) of one order, the first older than the second: the suite applies
    /// them newest first and expects the newest to stay.
    fn order_versions(&self) -> [(String, Vec<u8>); 2];
    /// Whether the source carries orders. Sources of other signals (engagement back from a marketing
    /// tool) say `false`: the out-of-order check is skipped and `order_versions` is never called.
    fn has_orders(&self) -> bool {
        true
    }
    /// The customer-key source the genuine request's customer carries; `None` means the source's own
    /// (engagement names the customer by the key nudge gave the marketing tool, e.g. `shopify:…`).
    fn customer_source(&self) -> Option<&'static str> {
        None
    }
}

const NOW: i64 = 1_780_000_000_000;

fn verify(source: &dyn Source, r: &Request, now_ms: i64) -> Result<Verified, nudge_ingest::Rejection> {
    let h = r.headers();
    source.verify(&Inbound { headers: &h, body: &r.body, now_ms, query: None })
}

fn accepted(source: &dyn Source, r: &Request, now_ms: i64) -> Accepted {
    match verify(source, r, now_ms) {
        Ok(Verified::Deliver(a)) => a,
        other => panic!("{}: a genuine request was not accepted: {other:?}", source.name()),
    }
}

/// Parses a stored delivery, following one fetch job through the harness, to its final meaning.
fn parse_through(
    h: &dyn SourceHarness,
    source: &dyn Source,
    topic: &str,
    shop: Option<&str>,
    body: &[u8],
) -> Parsed {
    match source.parse(&StoredView { topic, shop, body }) {
        Parsed::Fetch(job) => {
            assert_eq!(job.source, source.name(), "a fetch job names the source that parses its answer");
            let answer = h.fetched(&job);
            source.parse(&StoredView { topic: &job.topic, shop: job.shop.as_deref(), body: &answer })
        }
        other => other,
    }
}

fn assert_unauthorized(source: &dyn Source, r: &Request, what: &str) {
    match verify(source, r, NOW) {
        Err(e) => assert_eq!(e.status, 401, "{}: {what} must be 401, got {e:?}", source.name()),
        Ok(v) => panic!("{}: {what} was accepted: {v:?}", source.name()),
    }
}

/// Hostile bodies every source gets, signed.
fn hostile_bodies() -> Vec<Vec<u8>> {
    let mut v: Vec<Vec<u8>> = vec![
        b"".to_vec(),
        b"null".to_vec(),
        b"[]".to_vec(),
        b"{}".to_vec(),
        b"\"text\"".to_vec(),
        b"{\"id\":".to_vec(),
        b"<html><body>hi</body></html>".to_vec(),
        vec![0xff, 0xfe, 0x00, 0x7b],
        b"{\"data\":{\"id\":-1,\"type\":\"order\"},\"scope\":\"store/order/created\"}".to_vec(),
        b"{\"id\":1e400,\"customer\":{\"id\":\"\"}}".to_vec(),
        b"{\"id\":\"1\",\"email\":\"a@b.c\",\"total_price\":\"NaN\"}".to_vec(),
    ];
    // Deep nesting.
    let mut deep = "[".repeat(10_000);
    deep.push_str(&"]".repeat(10_000));
    v.push(deep.into_bytes());
    // A long string.
    v.push(format!("{{\"id\":\"{}\"}}", "9".repeat(100_000)).into_bytes());
    v
}

pub fn run_suite(h: &dyn SourceHarness) {
    let source = h.source();
    let s = source.as_ref();
    let name = s.name();

    // A genuine request is accepted, with dedupe keys that name the source.
    let first = h.genuine(1, NOW);
    let a1 = accepted(s, &first, NOW);
    assert!(!a1.dedupe_keys.is_empty(), "{name}: an accepted delivery needs at least one dedupe key");
    for k in &a1.dedupe_keys {
        assert!(
            k.starts_with(&format!("{name}:")),
            "{name}: dedupe key `{k}` must start with the source name"
        );
    }
    assert!(!a1.topic.is_empty(), "{name}: an accepted delivery has a topic");
    for (k, _) in &a1.audit_headers {
        let k = k.to_ascii_lowercase();
        assert!(
            !(k.contains("signature")
                || k.contains("hmac")
                || k.contains("authorization")
                || k.contains("token")),
            "{name}: header `{k}` must not be kept in the audit trail"
        );
    }

    // A retry of the same event shares a key; another event shares none.
    let a_retry = accepted(s, &h.retry(1, NOW + 60_000), NOW + 60_000);
    assert!(
        a_retry.dedupe_keys.iter().any(|k| a1.dedupe_keys.contains(k)),
        "{name}: a retry must share a dedupe key with the first delivery ({:?} vs {:?})",
        a_retry.dedupe_keys,
        a1.dedupe_keys
    );
    let a2 = accepted(s, &h.genuine(2, NOW), NOW);
    assert!(
        !a2.dedupe_keys.iter().any(|k| a1.dedupe_keys.contains(k)),
        "{name}: two different events must not share a dedupe key"
    );

    // The genuine delivery parses (through its fetch, if the source fetches) to events with a customer.
    let body = a1.body.clone().unwrap_or_else(|| first.body.clone());
    match parse_through(h, s, &a1.topic, a1.shop.as_deref(), &body) {
        Parsed::Events(evs) => {
            assert!(!evs.is_empty(), "{name}: the genuine order gave no events");
            assert!(
                evs.iter().any(|e| e.customer().is_some()),
                "{name}: the genuine order names no customer"
            );
            for e in &evs {
                if let Some(c) = e.customer() {
                    assert_eq!(
                        c.source().as_str(),
                        h.customer_source().unwrap_or(name_prefix(name)),
                        "{name}: customer {c} carries another source"
                    );
                }
            }
        }
        other => panic!("{name}: the genuine order did not parse to events: {other:?}"),
    }

    // Refusals: a flipped byte, no signature, a wrong key, a stale time. All 401.
    if h.signs_body() {
        let mut tampered = h.genuine(3, NOW);
        let last = tampered.body.len() - 2;
        tampered.body[last] ^= 0x01;
        assert_unauthorized(s, &tampered, "a tampered body");
    }
    assert_unauthorized(s, &h.unsigned(3, NOW), "an unsigned request");
    assert_unauthorized(s, &h.wrongly_signed(3, NOW), "a request signed with another key");
    if let Some(stale) = h.stale(3, NOW) {
        assert_unauthorized(s, &stale, "a request signed outside the replay window");
    }

    // Hostile bodies, correctly signed: no panic; never events without a customer-bearing meaning.
    for body in hostile_bodies() {
        let r = h.signed(&body, NOW);
        match verify(s, &r, NOW) {
            Ok(Verified::Deliver(a)) => {
                let stored = a.body.clone().unwrap_or_else(|| r.body.clone());
                let _ = s.parse(&StoredView { topic: &a.topic, shop: a.shop.as_deref(), body: &stored });
            }
            Ok(_) => {}
            Err(e) => assert!(
                (400..500).contains(&e.status),
                "{name}: a signed hostile body must be refused with a 4xx, got {e:?}"
            ),
        }
    }

    // Out-of-order updates: the newer version applied first stays.
    if !h.has_orders() {
        return;
    }
    let [older, newer] = h.order_versions();
    let events_of = |(topic, body): &(String, Vec<u8>)| -> Vec<Event> {
        match parse_through(h, s, topic, None, body) {
            Parsed::Events(evs) => evs,
            other => panic!("{name}: an order version did not parse to events: {other:?}"),
        }
    };
    let newer_evs = events_of(&newer);
    let older_evs = events_of(&older);
    let customer = newer_evs.iter().find_map(|e| e.customer().cloned()).expect("the order has a customer");
    let mut state = CustomerState::new(customer.clone());
    for e in &newer_evs {
        state.apply(e);
    }
    let after_newer = state.clone();
    for e in &older_evs {
        let applied = state.apply(e);
        assert!(
            !matches!(applied, Applied::Changed),
            "{name}: an older version of an order applied after the newer one changed the state"
        );
    }
    assert_eq!(
        format!("{:?}", state.orders),
        format!("{:?}", after_newer.orders),
        "{name}: the newest version of the order must stay"
    );
}

/// The customer-id source of a stored source name (`adobe_commerce` keys customers as `adobe:`; Yotpo
/// and Smile.io know people only by email and key them `email:`).
fn name_prefix(name: &str) -> &str {
    match name {
        "adobe_commerce" => "adobe",
        "yotpo" | "smile" => "email",
        other => other,
    }
}
