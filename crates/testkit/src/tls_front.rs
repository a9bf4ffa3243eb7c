//! A TLS front for a plain TCP service on loopback, standing in for a broker that only speaks TLS
//! (`amqps://`, port 5671 on a real RabbitMQ). It terminates TLS with a test certificate for `localhost`
//! and `127.0.0.1`, signed by the test CA in `keys/amqp-test-ca.cert.pem`, and relays the plain bytes to
//! the target. With [`TlsFront::requiring_client_certificates`] it also demands a client certificate signed
//! by that CA (`keys/amqp-test-client.*`), as a broker with `verify_peer` and `fail_if_no_peer_cert` does.
//!
//! The certificates are test material generated for this kit; they protect nothing.

use rustls::pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::net::{TcpListener, TcpStream};

/// The test CA a client must trust to accept the front's certificate.
pub const CA_PEM: &str = include_str!("../keys/amqp-test-ca.cert.pem");
/// The front's certificate (for `localhost` and `127.0.0.1`).
const BROKER_CERT_PEM: &str = include_str!("../keys/amqp-test-broker.cert.pem");
const BROKER_KEY_PEM: &str = include_str!("../keys/amqp-test-broker.pk8.pem");
/// A client certificate the test CA signed, and its PKCS#8 key.
pub const CLIENT_CERT_PEM: &str = include_str!("../keys/amqp-test-client.cert.pem");
pub const CLIENT_KEY_PEM: &str = include_str!("../keys/amqp-test-client.pk8.pem");

/// Splits a broker's `amqp://user:password@host:port/vhost` into its `host:port` (a loopback front's
/// target) and the `scheme://` URL that reaches the same broker through a front on loopback `port`.
pub fn fronted(amqp_url: &str, scheme: &str, port: u16) -> (String, String) {
    let rest = amqp_url.strip_prefix("amqp://").unwrap_or(amqp_url);
    let (auth, rest) = rest.rsplit_once('@').unwrap_or(("", rest));
    let (target, vhost) = rest.split_once('/').unwrap_or((rest, ""));
    let target = if target.contains(':') { target.to_string() } else { format!("{target}:5672") };
    let at = if auth.is_empty() { String::new() } else { format!("{auth}@") };
    (target, format!("{scheme}://{at}127.0.0.1:{port}/{vhost}"))
}

/// [`fronted`] for a TLS front: the broker's `host:port` and its `amqps://` URL through the front.
pub fn amqps_through(amqp_url: &str, port: u16) -> (String, String) {
    fronted(amqp_url, "amqps", port)
}

/// A running TLS front; it stops when dropped.
pub struct TlsFront {
    /// The loopback port it listens on.
    pub port: u16,
    handshakes: Arc<Counts>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
struct Counts {
    completed: AtomicU64,
    failed: AtomicU64,
}

fn certificates(pem: &str) -> Vec<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .expect("the kit's test certificates are PEM")
}

impl TlsFront {
    /// Relays TLS connections on a loopback port to `target` (`host:port`), without asking the client
    /// for a certificate.
    pub async fn start(target: &str) -> std::io::Result<TlsFront> {
        TlsFront::with(target, false).await
    }

    /// As [`TlsFront::start`], and refuses a client that shows no certificate signed by the test CA.
    pub async fn requiring_client_certificates(target: &str) -> std::io::Result<TlsFront> {
        TlsFront::with(target, true).await
    }

    async fn with(target: &str, client_certificates: bool) -> std::io::Result<TlsFront> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(std::io::Error::other)?;
        let builder = if client_certificates {
            let mut roots = rustls::RootCertStore::empty();
            for c in certificates(CA_PEM) {
                roots.add(c).map_err(std::io::Error::other)?;
            }
            let verifier =
                rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(std::io::Error::other)?;
            builder.with_client_cert_verifier(verifier)
        } else {
            builder.with_no_client_auth()
        };
        let key = PrivateKeyDer::from_pem_slice(BROKER_KEY_PEM.as_bytes()).map_err(std::io::Error::other)?;
        let config =
            builder.with_single_cert(certificates(BROKER_CERT_PEM), key).map_err(std::io::Error::other)?;
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let handshakes = Arc::new(Counts::default());
        let counts = handshakes.clone();
        let target = target.to_string();
        let task = tokio::spawn(async move {
            loop {
                let Ok((inbound, _)) = listener.accept().await else { return };
                let (acceptor, target, counts) = (acceptor.clone(), target.clone(), counts.clone());
                tokio::spawn(async move {
                    let mut tls = match acceptor.accept(inbound).await {
                        Ok(tls) => tls,
                        Err(_) => {
                            counts.failed.fetch_add(1, Ordering::Relaxed);
                            return;
                        }
                    };
                    counts.completed.fetch_add(1, Ordering::Relaxed);
                    let Ok(mut outbound) = TcpStream::connect(&target).await else { return };
                    let _ = tokio::io::copy_bidirectional(&mut tls, &mut outbound).await;
                });
            }
        });
        Ok(TlsFront { port, handshakes, task })
    }

    /// TLS handshakes that completed so far.
    pub fn handshakes(&self) -> u64 {
        self.handshakes.completed.load(Ordering::Relaxed)
    }

    /// TLS handshakes the front refused so far (an untrusted or missing client certificate, or a client
    /// that gave up on the front's certificate).
    pub fn refused(&self) -> u64 {
        self.handshakes.failed.load(Ordering::Relaxed)
    }
}

impl Drop for TlsFront {
    fn drop(&mut self) {
        self.task.abort();
    }
}
