//! The RabbitMQ ingest bus (`[bus] backend = "rabbitmq"`): webhooks are acknowledged once RabbitMQ has
//! them, and a drain moves them from RabbitMQ into the PostgreSQL delivery log where they are processed.
//!
//! - **Publish** ([`AmqpBus::publish`]): a delivery is a persistent message on a durable quorum queue,
//!   published on a channel in confirm mode; the webhook is answered 200 only when the broker's publisher
//!   confirm arrives as an ack. Anything else (no connection, a nack, no confirm within
//!   [`CONFIRM_TIMEOUT`]) is an error, and the webhook is answered 503 so the platform retries. A broken
//!   connection is dropped and opened again by the next publish, at most once per [`RECONNECT_PAUSE`].
//! - **Drain** ([`AmqpBus::drain`]): every node consumes the queue as a single active consumer, so the
//!   broker hands the queue to one node at a time, in queue order, and to another when that node's
//!   connection ends. The active node commits what it has received to the delivery log in batches
//!   ([`crate::DeliveryLog::commit_deliveries`], which checks the dedupe keys cluster-wide) and only then
//!   acknowledges the batch to RabbitMQ. Each message also carries its trace id as a dedupe key
//!   (`bus:<trace>`): a message delivered again after a node died between its commit and its
//!   acknowledgement is recognised and stored once.
//! - **Duplicates**: a webhook whose id was seen already is answered 200 at publish (nothing is known
//!   then); the drain finds it a duplicate and records under its trace an audit record naming the original.
//!
//! - **TLS**: an `amqps://` URL is opened over TLS (rustls). The broker's certificate is checked against the
//!   system's trust store and, with [`BusTls::ca_pem`], a private CA; a broker that demands a client
//!   certificate gets [`BusTls::client`].
//!
//! The message is a JSON envelope (everything but the body) on one line, a newline, and the body verbatim.

use crate::{CommitResult, NewDelivery, Store, StoreError};
use futures::StreamExt;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicPublishOptions, BasicQosOptions, BasicRejectOptions,
    ConfirmSelectOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use nudge_model::{AuditRecord, AuditStage, TraceId};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// The queue's default name (`bus.queue`).
pub const DEFAULT_QUEUE: &str = "nudge.deliveries";

/// Channels a node publishes on (in turn).
const PUBLISH_CHANNELS: usize = 4;

/// How long opening a connection (and declaring the queue) may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// How long a publish waits for the broker's confirm: under Shopify's 5 s, so the platform gets a 503 rather
/// than a timeout. A message confirmed after that is in the queue; the platform's retry is then a duplicate.
pub const CONFIRM_TIMEOUT: Duration = Duration::from_secs(4);

/// After a failed connection attempt, publishes fail at once for this long rather than each trying again.
pub const RECONNECT_PAUSE: Duration = Duration::from_millis(500);

/// Unacknowledged messages the broker hands the draining node at a time.
const PREFETCH: u16 = 2_000;

/// Messages the drain commits in one transaction, at most.
pub const DRAIN_BATCH: usize = 500;

/// The dedupe key every message carries, so a redelivered message is stored once.
pub fn bus_key(trace: TraceId) -> String {
    format!("bus:{trace}")
}

/// Why the bus could not take or give a message.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    #[error("RabbitMQ is unreachable: {0}")]
    Unavailable(String),
    #[error("RabbitMQ refused the message (publisher confirm was a nack)")]
    Refused,
    #[error("RabbitMQ did not confirm the message within {0:?}")]
    Unconfirmed(Duration),
    /// The delivery cannot be stored (the same check the delivery log makes).
    #[error("{0}")]
    Invalid(String),
}

impl From<lapin::Error> for BusError {
    fn from(e: lapin::Error) -> Self {
        BusError::Unavailable(e.to_string())
    }
}

/// The envelope format this build writes, and the newest it reads. A build that changes the envelope in a
/// way older builds would misread raises it; an older node draining such a message leaves it in the queue
/// for an upgraded node ([`STEP_BACK`]) instead of rejecting it.
pub const ENVELOPE_FORMAT: u32 = 1;

/// How long a node that met a message of a newer envelope format stays off the queue, so that an upgraded
/// node (the next consumer in line) takes it.
pub const STEP_BACK: Duration = Duration::from_secs(30);

/// Why a message could not be read as a delivery.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Unreadable {
    /// Not a nudge delivery at all: rejected, since nothing could ever store it.
    #[error("not a nudge delivery: {0}")]
    NotOurs(String),
    /// A delivery in an envelope format newer than this build reads (written by an upgraded node).
    #[error("envelope format {0}, newer than this node reads ({ENVELOPE_FORMAT}): upgrade this node")]
    Newer(u32),
}

fn first_format() -> u32 {
    1
}

/// Everything of a delivery but its body.
#[derive(Serialize, Deserialize)]
struct Envelope {
    /// The envelope format, under a key another application's JSON is unlikely to have (absent in
    /// messages of builds before it was written: format 1).
    #[serde(rename = "nudge", default = "first_format")]
    v: u32,
    trace_id: TraceId,
    source: String,
    topic: String,
    shop: Option<String>,
    webhook_id: Option<String>,
    event_id: Option<String>,
    received_at_ms: i64,
    headers_json: String,
    dedupe_keys: Vec<String>,
    /// The partition the publishing node computed for the delivery, and the partition count it used
    /// (absent when it computed none). Builds before it was written skip it and leave the routing to the
    /// leader, as they always did: it only adds a field, so the format stays the same.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    route: Option<Route>,
}

/// A delivery's partition as its publisher computed it, out of `of` partitions.
#[derive(Serialize, Deserialize, Clone, Copy, Debug, PartialEq, Eq)]
struct Route {
    part: u32,
    of: u32,
}

/// The message for `d`: the envelope as one JSON line, then the body. `d.part`, computed out of `of`
/// partitions, goes with it.
pub fn encode(d: &NewDelivery, of: Option<u32>) -> Vec<u8> {
    let envelope = Envelope {
        v: ENVELOPE_FORMAT,
        trace_id: d.trace_id,
        source: d.source.clone(),
        topic: d.topic.clone(),
        shop: d.shop.clone(),
        webhook_id: d.webhook_id.clone(),
        event_id: d.event_id.clone(),
        received_at_ms: d.received_at_ms,
        headers_json: d.headers_json.clone(),
        dedupe_keys: d.dedupe_keys.clone(),
        route: d.part.zip(of).map(|(part, of)| Route { part, of }),
    };
    // serde_json escapes every newline inside strings: the first newline ends the envelope.
    let mut out = serde_json::to_vec(&envelope).expect("an envelope always serialises");
    out.push(b'\n');
    out.extend_from_slice(&d.body);
    out
}

/// The delivery a message holds, with the bus's own dedupe key added, and with the partition its publisher
/// computed when that was out of `of` partitions, the count in force (a message published before the count
/// was changed is routed again, by the leader).
pub fn decode(message: &[u8], of: Option<u32>) -> Result<NewDelivery, Unreadable> {
    let split = message
        .iter()
        .position(|&b| b == b'\n')
        .ok_or_else(|| Unreadable::NotOurs("no envelope line".into()))?;
    let line = &message[..split];
    let e: Envelope = match serde_json::from_slice(line) {
        Ok(e) => e,
        Err(why) => {
            // A newer format may have changed any other field: its number alone says it is ours.
            #[derive(Deserialize)]
            struct Format {
                #[serde(rename = "nudge")]
                v: u32,
            }
            return Err(match serde_json::from_slice::<Format>(line) {
                Ok(Format { v }) if v > ENVELOPE_FORMAT => Unreadable::Newer(v),
                _ => Unreadable::NotOurs(format!("envelope: {why}")),
            });
        }
    };
    if e.v > ENVELOPE_FORMAT {
        return Err(Unreadable::Newer(e.v));
    }
    let mut dedupe_keys = e.dedupe_keys;
    dedupe_keys.push(bus_key(e.trace_id));
    Ok(NewDelivery {
        trace_id: e.trace_id,
        source: e.source,
        topic: e.topic,
        shop: e.shop,
        webhook_id: e.webhook_id,
        event_id: e.event_id,
        received_at_ms: e.received_at_ms,
        headers_json: e.headers_json,
        body: message[split + 1..].to_vec(),
        dedupe_keys,
        part: e.route.filter(|r| Some(r.of) == of && r.part < r.of).map(|r| r.part),
    })
}

/// An open connection with its publishing channels.
struct Link {
    connection: Connection,
    channels: Vec<Channel>,
}

impl Link {
    fn usable(&self) -> bool {
        self.connection.status().connected() && self.channels.iter().all(|c| c.status().connected())
    }
}

/// The connection state publishes share.
#[derive(Default)]
struct Publishing {
    link: Option<Arc<Link>>,
    /// Set after a failed connection attempt: until then publishes fail at once.
    down_until: Option<(Instant, String)>,
}

/// What the queue holds, as the broker reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueDepth {
    /// Messages waiting to be handed to the draining node.
    pub ready: u32,
    /// Active consumers as the broker counts them: 1 while a node drains the queue, 0 when none does (the
    /// nodes waiting their turn are not counted).
    pub consumers: u32,
}

/// What one drained batch came to.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Drained {
    pub committed: usize,
    pub duplicates: usize,
    /// Messages that are not nudge deliveries (rejected, not requeued).
    pub unreadable: usize,
}

/// TLS settings of an `amqps://` broker (ignored for `amqp://`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BusTls {
    /// PEM certificates trusted, besides the system's, to sign the broker's certificate (a private CA).
    pub ca_pem: Option<String>,
    /// A client certificate chain and its PKCS#8 key, both PEM, for a broker that verifies its clients.
    pub client: Option<(String, String)>,
}

impl BusTls {
    /// Checks the PEM texts before they are used: the CA file holds certificates, the client certificate
    /// file holds certificates and the key file one PKCS#8, PKCS#1 or SEC1 private key. The error names
    /// which of the three is wrong.
    pub fn check(&self) -> Result<(), (&'static str, String)> {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certificates = |pem: &str| -> Result<usize, String> {
            let n = CertificateDer::pem_slice_iter(pem.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .map_err(|e| format!("is not PEM: {e}"))?
                .len();
            if n == 0 { Err("holds no PEM certificate (-----BEGIN CERTIFICATE-----)".into()) } else { Ok(n) }
        };
        if let Some(ca) = &self.ca_pem {
            certificates(ca).map_err(|e| ("ca", e))?;
        }
        if let Some((cert, key)) = &self.client {
            certificates(cert).map_err(|e| ("cert", e))?;
            PrivateKeyDer::from_pem_slice(key.as_bytes())
                .map_err(|e| ("key", format!("holds no unencrypted PEM private key: {e}")))?;
        }
        Ok(())
    }

    fn lapin(&self) -> lapin::tcp::OwnedTLSConfig {
        lapin::tcp::OwnedTLSConfig {
            identity: self.client.as_ref().map(|(cert, key)| lapin::tcp::OwnedIdentity::PKCS8 {
                pem: cert.as_bytes().to_vec(),
                key: key.as_bytes().to_vec(),
            }),
            cert_chain: self.ca_pem.clone(),
        }
    }
}

/// The bus: publishes deliveries and drains them into the delivery log.
pub struct AmqpBus {
    url: String,
    tls: BusTls,
    queue: ShortString,
    /// The name connections show in the broker's management UI.
    name: String,
    publishing: tokio::sync::Mutex<Publishing>,
    next: AtomicUsize,
    /// The partition count deliveries are routed by on a cluster that processes by partition (0: none):
    /// a published delivery's partition goes with it, and a drained one keeps it when it was computed out
    /// of this count.
    route_of: AtomicU32,
}

impl AmqpBus {
    /// Connects to `url`, declares the queue, and keeps the connection for publishing. Fails when the
    /// broker cannot be reached or refuses the queue (a classic queue of that name, say).
    pub async fn connect(url: &str, queue: &str, name: &str) -> Result<Arc<AmqpBus>, BusError> {
        AmqpBus::connect_tls(url, BusTls::default(), queue, name).await
    }

    /// [`AmqpBus::connect`] with the TLS settings of an `amqps://` broker.
    pub async fn connect_tls(
        url: &str,
        tls: BusTls,
        queue: &str,
        name: &str,
    ) -> Result<Arc<AmqpBus>, BusError> {
        let bus = Arc::new(AmqpBus {
            url: url.to_string(),
            tls,
            queue: queue.into(),
            name: name.to_string(),
            publishing: Default::default(),
            next: AtomicUsize::new(0),
            route_of: AtomicU32::new(0),
        });
        let link = bus.open(PUBLISH_CHANNELS).await?;
        bus.publishing.lock().await.link = Some(Arc::new(link));
        Ok(bus)
    }

    pub fn queue(&self) -> &str {
        self.queue.as_str()
    }

    /// Routes deliveries by `of` partitions (`None`: not at all): the partition a published delivery carries
    /// ([`NewDelivery::part`]) goes with it into the queue, and the drain stores it with the delivery when
    /// it was computed out of the same count, so that the leader need not route it.
    pub fn route_by(&self, of: Option<u32>) {
        self.route_of.store(of.unwrap_or(0), Ordering::Relaxed);
    }

    fn routing(&self) -> Option<u32> {
        Some(self.route_of.load(Ordering::Relaxed)).filter(|&of| of > 0)
    }

    /// Opens a connection with `channels` channels in confirm mode and declares the queue: durable, a
    /// quorum queue, one active consumer at a time.
    async fn open(&self, channels: usize) -> Result<Link, BusError> {
        let open = async {
            let props = ConnectionProperties::default().with_connection_name(self.name.clone().into());
            let connection = Connection::connect_with_config(
                &self.url,
                props,
                self.tls.lapin(),
                lapin::runtime::default_runtime()?,
            )
            .await?;
            let admin = connection.create_channel().await?;
            admin
                .queue_declare(
                    self.queue.clone(),
                    QueueDeclareOptions { durable: true, ..Default::default() },
                    queue_arguments(),
                )
                .await?;
            let _ = admin.close(200, "declared".into()).await;
            let mut out = Vec::with_capacity(channels);
            for _ in 0..channels {
                let c = connection.create_channel().await?;
                c.confirm_select(ConfirmSelectOptions::default()).await?;
                out.push(c);
            }
            Ok::<_, BusError>(Link { connection, channels: out })
        };
        match tokio::time::timeout(CONNECT_TIMEOUT, open).await {
            Ok(r) => r,
            Err(_) => Err(BusError::Unavailable(format!("no connection within {CONNECT_TIMEOUT:?}"))),
        }
    }

    /// The open link, opened again if it broke (at most one attempt per [`RECONNECT_PAUSE`]).
    async fn link(&self) -> Result<Arc<Link>, BusError> {
        let mut p = self.publishing.lock().await;
        if let Some(l) = p.link.as_ref().filter(|l| l.usable()) {
            return Ok(l.clone());
        }
        if let Some((until, why)) = &p.down_until
            && Instant::now() < *until
        {
            return Err(BusError::Unavailable(why.clone()));
        }
        if let Some(old) = p.link.take() {
            let _ = old.connection.close(200, "reconnecting".into()).await;
        }
        match self.open(PUBLISH_CHANNELS).await {
            Ok(l) => {
                tracing::info!(queue = %self.queue, "connected to RabbitMQ");
                let l = Arc::new(l);
                p.link = Some(l.clone());
                p.down_until = None;
                Ok(l)
            }
            Err(e) => {
                p.down_until = Some((Instant::now() + RECONNECT_PAUSE, e.to_string()));
                Err(e)
            }
        }
    }

    /// Makes `d` durable in RabbitMQ: returns once the broker confirmed it.
    pub async fn publish(&self, d: &NewDelivery) -> Result<(), BusError> {
        storable(d)?;
        let link = self.link().await?;
        // A broker under a memory or disk alarm holds publishes: answer at once instead of waiting.
        if link.connection.status().blocked() {
            return Err(BusError::Unavailable(
                "the broker is blocking publishes (memory or disk alarm)".into(),
            ));
        }
        let channel = &link.channels[self.next.fetch_add(1, Ordering::Relaxed) % link.channels.len()];
        let properties = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(d.trace_id.to_string().into())
            .with_timestamp(u64::try_from(d.received_at_ms / 1000).unwrap_or(0));
        let body = encode(d, self.routing());
        let publish = async {
            channel
                // Mandatory: if the queue is gone (deleted by hand), the broker returns the message rather
                // than confirming a message it dropped.
                .basic_publish(
                    "".into(),
                    self.queue.clone(),
                    BasicPublishOptions { mandatory: true, ..Default::default() },
                    &body,
                    properties,
                )
                .await?
                .await
        };
        match tokio::time::timeout(CONFIRM_TIMEOUT, publish).await {
            Ok(Ok(lapin::Confirmation::Ack(None))) => Ok(()),
            Ok(Ok(lapin::Confirmation::Ack(Some(_)))) => {
                // The queue no longer exists: declared again by the next connection.
                self.publishing.lock().await.link = None;
                Err(BusError::Unavailable(format!("queue `{}` does not exist (deleted?)", self.queue)))
            }
            Ok(Ok(_)) => Err(BusError::Refused),
            Ok(Err(e)) => Err(e.into()),
            Err(_) => Err(BusError::Unconfirmed(CONFIRM_TIMEOUT)),
        }
    }

    /// The queue's depth (a passive declare on a channel of its own).
    pub async fn depth(&self) -> Result<QueueDepth, BusError> {
        let link = self.link().await?;
        let channel = link.connection.create_channel().await?;
        let q = channel
            .queue_declare(
                self.queue.clone(),
                QueueDeclareOptions { passive: true, ..Default::default() },
                FieldTable::default(),
            )
            .await?;
        let _ = channel.close(200, "depth".into()).await;
        Ok(QueueDepth { ready: q.message_count(), consumers: q.consumer_count() })
    }

    /// Drains the queue into `log` until `shutdown` turns true: registers as a single active consumer, and
    /// while active commits what arrives in batches, acknowledging each batch after its commit. A failed
    /// commit is tried again (the batch stays unacknowledged meanwhile); a broken connection is opened
    /// again after a pause, and the broker hands the unacknowledged messages to the next active consumer.
    /// `on_batch` is called after each acknowledged batch.
    pub async fn drain(
        self: Arc<Self>,
        store: Arc<dyn Store>,
        on_batch: impl Fn(Drained) + Send + Sync,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let mut pause = Duration::from_millis(200);
        while !*shutdown.borrow() {
            match self.drain_once(&*store, &on_batch, &mut shutdown).await {
                Ok(Stopped::Shutdown) => return,
                Ok(Stopped::SteppedBack) => {
                    tokio::select! {
                        _ = tokio::time::sleep(STEP_BACK) => {}
                        _ = shutdown.changed() => return,
                    }
                }
                Err(e) => {
                    tracing::warn!(error = %e, queue = %self.queue, "draining RabbitMQ stopped; connecting again");
                    tokio::select! {
                        _ = tokio::time::sleep(pause) => {}
                        _ = shutdown.changed() => return,
                    }
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            }
        }
    }

    /// One consuming connection, until it fails (an error), `shutdown`, or a message of a newer envelope
    /// format (the node steps back).
    async fn drain_once(
        &self,
        store: &dyn Store,
        on_batch: &(impl Fn(Drained) + Send + Sync),
        shutdown: &mut watch::Receiver<bool>,
    ) -> Result<Stopped, BusError> {
        let link = self.open(0).await?;
        let channel = link.connection.create_channel().await?;
        channel.basic_qos(PREFETCH, BasicQosOptions::default()).await?;
        let mut consumer = channel
            .basic_consume(
                self.queue.clone(),
                format!("{}-drain", self.name).into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await?;
        let closed = async {
            let _ = channel.close(200, "shutting down".into()).await;
            let _ = link.connection.close(200, "shutting down".into()).await;
        };
        loop {
            // The first message of a batch, then whatever else has arrived, up to DRAIN_BATCH.
            let first = tokio::select! {
                m = consumer.next() => m,
                _ = shutdown.changed() => { closed.await; return Ok(Stopped::Shutdown); }
            };
            let Some(first) = first else {
                return Err(BusError::Unavailable("the broker ended the consumer".into()));
            };
            let mut batch = vec![first?];
            while batch.len() < DRAIN_BATCH {
                match futures::FutureExt::now_or_never(consumer.next()) {
                    Some(Some(m)) => batch.push(m?),
                    Some(None) | None => break,
                }
            }
            // Acknowledged up to the last message committed (rejected ones are settled already).
            let mut last_tag = None;
            let mut drained = Drained::default();
            let mut deliveries = Vec::with_capacity(batch.len());
            let mut newer = None;
            for m in &batch {
                match decode(&m.data, self.routing()) {
                    Ok(d) => {
                        deliveries.push(d);
                        last_tag = Some(m.delivery_tag);
                    }
                    Err(Unreadable::Newer(v)) => {
                        // Written by an upgraded node: this one and everything after it stay in the queue,
                        // in order, for a node that reads them.
                        newer = Some(v);
                        break;
                    }
                    Err(why) => {
                        // Not ours: nothing can store it, and requeueing it would block the queue.
                        tracing::error!(reason = %why, tag = m.delivery_tag, "rejected an unreadable message on the bus");
                        channel.basic_reject(m.delivery_tag, BasicRejectOptions { requeue: false }).await?;
                        drained.unreadable += 1;
                    }
                }
            }
            let traces: Vec<TraceId> = deliveries.iter().map(|d| d.trace_id).collect();
            let mut failures = 0u32;
            let results = loop {
                match commit(store, deliveries.clone()).await {
                    Ok(r) => break r,
                    Err(e) => {
                        failures += 1;
                        if failures.is_multiple_of(20) {
                            // Ten seconds of failures: name the batch, in case one of it is what fails.
                            let first =
                                deliveries.first().map(|d| d.trace_id.to_string()).unwrap_or_default();
                            tracing::error!(error = %e, failures, first_trace = %first, batch = deliveries.len(),
                                "drained deliveries still cannot be committed; the queue waits behind them");
                        }
                        tracing::warn!(error = %e, "committing drained deliveries failed; retrying");
                        tokio::select! {
                            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                            // Unacknowledged: the broker hands them to the next active consumer.
                            _ = shutdown.changed() => { closed.await; return Ok(Stopped::Shutdown); }
                        }
                    }
                }
            };
            let mut notes = Vec::new();
            for (trace, r) in traces.into_iter().zip(results) {
                match r {
                    CommitResult::Committed { .. } => drained.committed += 1,
                    CommitResult::Duplicate { original, key } => {
                        drained.duplicates += 1;
                        // A message delivered again after its commit carries its own trace: no note.
                        if original != trace {
                            notes.push(duplicate_note(trace, original, &key));
                        }
                    }
                }
            }
            if !notes.is_empty()
                && let Err(e) = store.append_audit(notes).await
            {
                tracing::warn!(error = %e, "recording duplicate deliveries in the audit trail failed");
            }
            if let Some(tag) = last_tag {
                channel.basic_ack(tag, BasicAckOptions { multiple: true }).await?;
            }
            on_batch(drained);
            if let Some(v) = newer {
                tracing::error!(
                    format = v, reads = ENVELOPE_FORMAT, queue = %self.queue, step_back = ?STEP_BACK,
                    "a message on the bus was written by a newer nudge: it is left in the queue for an upgraded \
                     node, and this node stops draining for a while (upgrade it)"
                );
                // Closing the channel returns every unacknowledged message to the queue, in order.
                closed.await;
                return Ok(Stopped::SteppedBack);
            }
        }
    }
}

/// How a drain connection ended without an error.
enum Stopped {
    Shutdown,
    SteppedBack,
}

/// Refuses what the log would refuse, before it is acknowledged: once in the queue, a message the log
/// refuses would hold up every message behind it.
pub fn storable(d: &NewDelivery) -> Result<(), BusError> {
    if let Some(k) = d.dedupe_keys.iter().find(|k| k.is_empty() || k.contains('\n')) {
        return Err(BusError::Invalid(format!("dedupe key {k:?} is empty or contains a newline")));
    }
    let texts =
        [Some(&d.source), Some(&d.topic), d.shop.as_ref(), d.webhook_id.as_ref(), d.event_id.as_ref()];
    if texts.into_iter().flatten().chain(&d.dedupe_keys).any(|t| t.contains('\0')) {
        return Err(BusError::Invalid("a header or key of the delivery contains a NUL character".into()));
    }
    Ok(())
}

/// The queue's arguments: a quorum queue whose messages go to one consumer at a time.
fn queue_arguments() -> FieldTable {
    let mut arguments = FieldTable::default();
    arguments.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
    arguments.insert("x-single-active-consumer".into(), AMQPValue::Boolean(true));
    arguments
}

/// Commits a batch in one transaction; a batch refused as a whole is committed one delivery at a time, so
/// a delivery the database cannot store fails alone (its error is returned after the others are in).
async fn commit(log: &dyn Store, ds: Vec<NewDelivery>) -> Result<Vec<CommitResult>, StoreError> {
    match log.commit_deliveries(ds.clone()).await {
        Ok(r) => Ok(r),
        Err(whole) if ds.len() > 1 => {
            tracing::debug!(error = %whole, "a drained batch failed whole; committing one at a time");
            let mut out = Vec::with_capacity(ds.len());
            for d in ds {
                out.push(log.commit_delivery(d).await?);
            }
            Ok(out)
        }
        Err(e) => Err(e),
    }
}

/// The audit record of a delivery found a duplicate when it was drained.
fn duplicate_note(trace: TraceId, original: TraceId, key: &str) -> AuditRecord {
    AuditRecord {
        trace_id: trace,
        customer: None,
        stage: AuditStage::Received,
        at: time::OffsetDateTime::now_utc(),
        detail: serde_json::json!({ "duplicate_of": original, "dedupe_key": key, "via": "rabbitmq" }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn delivery() -> NewDelivery {
        NewDelivery {
            trace_id: TraceId::new(),
            source: "shopify".into(),
            topic: "orders/create".into(),
            shop: Some("s.myshopify.com".into()),
            webhook_id: Some("w\n1".into()),
            event_id: None,
            received_at_ms: 1_700_000_000_000,
            headers_json: "{\"a\":\"b\\nc\"}".into(),
            body: b"{\"x\":1}\n\nsecond line".to_vec(),
            dedupe_keys: vec!["shopify:w\n1".into()],
            part: None,
        }
    }

    #[test]
    fn a_message_holds_the_delivery_and_its_bus_key() {
        let d = delivery();
        let back = decode(&encode(&d, None), None).unwrap();
        assert_eq!(back.body, d.body);
        assert_eq!(back.webhook_id, d.webhook_id);
        assert_eq!(back.headers_json, d.headers_json);
        assert_eq!(back.dedupe_keys, vec!["shopify:w\n1".to_string(), bus_key(d.trace_id)]);
        assert!(decode(b"not ours", None).is_err());
        // The log refuses these keys; so does the bus, before acknowledging.
        assert!(storable(&d).is_err());
        let mut ok = d.clone();
        ok.dedupe_keys = vec!["shopify:w1".into()];
        assert!(storable(&ok).is_ok());
        let mut nul = ok.clone();
        nul.topic = "orders/\0create".into();
        assert!(storable(&nul).unwrap_err().to_string().contains("NUL"));
        assert!(matches!(decode(b"{\"x\":1}\nbody", None), Err(Unreadable::NotOurs(_))));
    }

    #[test]
    fn envelope_formats_old_current_and_newer() {
        let d = NewDelivery { shop: None, dedupe_keys: vec!["shopify:w1".into()], ..delivery() };
        let message = encode(&d, None);
        assert!(message.starts_with(format!("{{\"nudge\":{ENVELOPE_FORMAT},").as_bytes()));
        // Before the format was written, and with a field a later format added: both read.
        let text = String::from_utf8(message.clone()).unwrap();
        let unversioned = text.replacen(&format!("\"nudge\":{ENVELOPE_FORMAT},"), "", 1);
        assert_eq!(decode(unversioned.as_bytes(), None).unwrap().trace_id, d.trace_id);
        let added = text.replacen("{", "{\"extra\":[1],", 1);
        assert_eq!(decode(added.as_bytes(), None).unwrap().trace_id, d.trace_id);
        // A newer format, whatever else it changed, is named as such (not rejected as not ours).
        let newer = format!("{{\"nudge\":{},\"trace\":\"renamed\"}}\nbody", ENVELOPE_FORMAT + 1);
        assert_eq!(decode(newer.as_bytes(), None).unwrap_err(), Unreadable::Newer(ENVELOPE_FORMAT + 1));
        // A newer format that only added fields reads as this one would, and is still newer.
        let bumped = text.replacen(
            &format!("\"nudge\":{ENVELOPE_FORMAT},"),
            &format!("\"nudge\":{},", ENVELOPE_FORMAT + 1),
            1,
        );
        assert_eq!(decode(bumped.as_bytes(), None).unwrap_err(), Unreadable::Newer(ENVELOPE_FORMAT + 1));
        // Another application's JSON with a version of its own is not ours, whatever the number.
        assert!(matches!(decode(b"{\"v\":7,\"x\":1}\nbody", None), Err(Unreadable::NotOurs(_))));
    }

    #[test]
    fn a_partition_goes_with_its_count_and_is_kept_only_under_that_count() {
        let d = NewDelivery { dedupe_keys: vec!["shopify:w1".into()], part: Some(5), ..delivery() };
        let routed = encode(&d, Some(8));
        assert_eq!(decode(&routed, Some(8)).unwrap().part, Some(5));
        // Drained under another count (repartitioned meanwhile), or by a node that does not route: the
        // leader routes it.
        assert_eq!(decode(&routed, Some(16)).unwrap().part, None);
        assert_eq!(decode(&routed, None).unwrap().part, None);
        // Published by a node that does not route, or with no partition: nothing is written for it, so the
        // message reads as before.
        for message in [encode(&d, None), encode(&NewDelivery { part: None, ..d.clone() }, Some(8))] {
            assert!(!String::from_utf8_lossy(&message).contains("route"));
            assert_eq!(decode(&message, Some(8)).unwrap().part, None);
        }
        // A partition out of its count is not trusted.
        let text = String::from_utf8(routed).unwrap().replacen("\"part\":5", "\"part\":9", 1);
        assert_eq!(decode(text.as_bytes(), Some(8)).unwrap().part, None);
    }
}
