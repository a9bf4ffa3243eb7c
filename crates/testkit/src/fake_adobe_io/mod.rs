//! Adobe's side of Adobe Commerce's outbound calls, for tests and `nudge dev fake --kind adobe-io`:
//!
//! - [`FakeKeyServer`]: serves PEM public keys at paths, as `static.adobeioevents.com` does, counting the
//!   fetches so tests can prove keys are cached;
//! - [`AdobeSender`] and the header builders: requests signed exactly as Adobe signs them. I/O Events carry
//!   `x-adobe-digital-signature-1|2`, RSA-SHA256 (PKCS#1 v1.5) of the raw body, with the key paths in
//!   `x-adobe-public-key1-path|2-path`; the Commerce Webhooks module carries
//!   `x-adobe-commerce-webhook-signature`, RSA-SHA256 of the base64 of the body;
//! - [`keys`]: RSA key pairs made for these tests (test data, never used anywhere else).

pub mod keys;

use crate::TestkitError;
use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use tokio::net::TcpListener;

/// The path the fake serves key 1 at by default, shaped like Adobe's.
pub const KEY1_PATH: &str = "/prod/keys/pub-key-fake1.pem";
/// The path of key 2.
pub const KEY2_PATH: &str = "/prod/keys/pub-key-fake2.pem";

/// RSA-SHA256 (PKCS#1 v1.5) signature of `message` by the PKCS#8 PEM private key, base64.
///
/// Panics on a malformed key: the keys are the test kit's own.
pub fn sign(private_pem: &str, message: &[u8]) -> String {
    let der = pem_der(private_pem).expect("a PKCS#8 PEM private key");
    let pair = ring::signature::RsaKeyPair::from_pkcs8(&der).expect("an RSA PKCS#8 key");
    let mut sig = vec![0u8; pair.public().modulus_len()];
    pair.sign(&ring::signature::RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), message, &mut sig)
        .expect("RSA signing succeeds");
    STANDARD.encode(sig)
}

fn pem_der(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect::<Vec<_>>().concat();
    STANDARD.decode(body.trim()).ok()
}

/// One I/O Events signature: the private key to sign with and the key path to announce.
#[derive(Debug, Clone, Copy)]
pub struct IoSignature<'a> {
    pub private_pem: &'a str,
    pub key_path: &'a str,
}

/// The headers of an I/O Events delivery of `body`: each given signature in slot 1 and 2 (either may be
/// absent), plus the event id and delivery headers.
pub fn io_headers(
    body: &[u8],
    event_id: &str,
    sig1: Option<IoSignature<'_>>,
    sig2: Option<IoSignature<'_>>,
) -> Vec<(String, String)> {
    let mut h = vec![
        ("content-type".to_string(), "application/json".to_string()),
        ("x-adobe-event-id".into(), event_id.into()),
        ("x-adobe-delivery-id".into(), format!("dlv-{event_id}")),
        ("x-adobe-provider".into(), "commerce".into()),
        ("x-adobe-event-code".into(), "com.adobe.commerce.observer".into()),
    ];
    for (n, s) in [(1, sig1), (2, sig2)] {
        if let Some(s) = s {
            h.push((format!("x-adobe-digital-signature-{n}"), sign(s.private_pem, body)));
            h.push((format!("x-adobe-public-key{n}-path"), s.key_path.into()));
        }
    }
    h
}

/// The headers of a Commerce Webhooks-module call of `body`, signed with `private_pem` (`None`: unsigned).
pub fn hook_headers(body: &[u8], private_pem: Option<&str>) -> Vec<(String, String)> {
    let mut h = vec![("content-type".to_string(), "application/json".to_string())];
    if let Some(k) = private_pem {
        let signed = STANDARD.encode(body);
        h.push(("x-adobe-commerce-webhook-signature".into(), sign(k, signed.as_bytes())));
    }
    h
}

/// Sends Adobe's requests to nudge's `/webhooks/adobe-commerce`.
#[derive(Debug, Clone)]
pub struct AdobeSender {
    url: String,
    http: reqwest::Client,
}

/// What nudge answered.
#[derive(Debug, Clone)]
pub struct Answer {
    pub status: u16,
    pub body: serde_json::Value,
}

impl AdobeSender {
    pub fn new(url: impl Into<String>) -> Self {
        crate::ensure_crypto_provider();
        Self { url: url.into(), http: reqwest::Client::new() }
    }

    /// POSTs `body` with `headers`.
    pub async fn post(&self, headers: &[(String, String)], body: &[u8]) -> Result<Answer, TestkitError> {
        let mut req = self.http.post(&self.url).body(body.to_vec());
        for (k, v) in headers {
            req = req.header(k, v);
        }
        answer(req.send().await?).await
    }

    /// The registration handshake: `GET ?challenge=<value>`.
    pub async fn challenge(&self, value: &str) -> Result<Answer, TestkitError> {
        let encoded: String = value
            .bytes()
            .map(|b| {
                if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                    (b as char).to_string()
                } else {
                    format!("%{b:02X}")
                }
            })
            .collect();
        answer(self.http.get(format!("{}?challenge={encoded}", self.url)).send().await?).await
    }
}

async fn answer(resp: reqwest::Response) -> Result<Answer, TestkitError> {
    let status = resp.status().as_u16();
    let text = resp.text().await?;
    let body = serde_json::from_str(&text).unwrap_or(serde_json::Value::String(text));
    Ok(Answer { status, body })
}

struct Shared {
    keys: BTreeMap<String, String>,
    fetches: Mutex<BTreeMap<String, usize>>,
}

/// A key server like `static.adobeioevents.com`: `GET <path>` answers the PEM registered there, 404 else.
pub struct FakeKeyServer;

impl FakeKeyServer {
    /// Starts on an ephemeral port of 127.0.0.1 serving `keys` (path → PEM).
    pub async fn start(keys: Vec<(String, String)>) -> Result<FakeKeyServerHandle, TestkitError> {
        let shared = Arc::new(Shared { keys: keys.into_iter().collect(), fetches: Mutex::default() });
        let state = shared.clone();
        let server = crate::server::Running::start(|listener, stop| run(listener, state, stop)).await?;
        Ok(FakeKeyServerHandle { server, shared })
    }

    /// Serves `keys` on `listener` until `shutdown`; for `nudge dev fake --kind adobe-io`.
    pub async fn serve(
        listener: TcpListener,
        keys: Vec<(String, String)>,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> Result<(), TestkitError> {
        run(
            listener,
            Arc::new(Shared { keys: keys.into_iter().collect(), fetches: Mutex::default() }),
            shutdown,
        )
        .await
    }

    /// The two default test keys at [`KEY1_PATH`] and [`KEY2_PATH`].
    pub fn default_keys() -> Vec<(String, String)> {
        vec![(KEY1_PATH.into(), keys::IO_1_PUBLIC.into()), (KEY2_PATH.into(), keys::IO_2_PUBLIC.into())]
    }
}

async fn run(
    listener: TcpListener,
    shared: Arc<Shared>,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), TestkitError> {
    let app = Router::new().fallback(serve_key).with_state(shared);
    axum::serve(listener, app).with_graceful_shutdown(shutdown).await.map_err(TestkitError::Serve)
}

async fn serve_key(State(shared): State<Arc<Shared>>, uri: Uri) -> Response {
    let path = uri.path().to_string();
    *shared.fetches.lock().unwrap_or_else(|e| e.into_inner()).entry(path.clone()).or_default() += 1;
    match shared.keys.get(&path) {
        Some(pem) => ([("content-type", "application/x-pem-file")], pem.clone()).into_response(),
        None => (StatusCode::NOT_FOUND, "no such key").into_response(),
    }
}

/// A running key server.
pub struct FakeKeyServerHandle {
    server: crate::server::Running,
    shared: Arc<Shared>,
}

impl FakeKeyServerHandle {
    /// The base to configure as `public_key_base_url`.
    pub fn base_url(&self) -> String {
        format!("http://{}", self.server.addr())
    }

    /// How many times `path` was fetched.
    pub fn fetches(&self, path: &str) -> usize {
        self.shared.fetches.lock().unwrap_or_else(|e| e.into_inner()).get(path).copied().unwrap_or(0)
    }

    pub async fn shutdown(mut self) {
        self.server.shutdown().await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_key_server_serves_and_counts() {
        crate::ensure_crypto_provider();
        let s = FakeKeyServer::start(FakeKeyServer::default_keys()).await.unwrap();
        let r = reqwest::get(format!("{}{KEY1_PATH}", s.base_url())).await.unwrap();
        assert_eq!(r.status(), 200);
        assert!(r.text().await.unwrap().starts_with("-----BEGIN PUBLIC KEY-----"));
        let r = reqwest::get(format!("{}/nope.pem", s.base_url())).await.unwrap();
        assert_eq!(r.status(), 404);
        assert_eq!(s.fetches(KEY1_PATH), 1);
        assert_eq!(s.fetches(KEY2_PATH), 0);
    }

    #[test]
    fn signatures_are_base64_of_the_modulus_size() {
        let sig = STANDARD.decode(sign(keys::IO_1_PRIVATE, b"{}")).unwrap();
        assert_eq!(sig.len(), 256);
    }
}
