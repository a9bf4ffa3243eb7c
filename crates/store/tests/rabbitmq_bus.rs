//! The RabbitMQ ingest bus against a real broker and a real PostgreSQL (runs when `NUDGE_TEST_AMQP_URL` and
//! `NUDGE_TEST_POSTGRES_URL` are set; each test on a queue and in a schema of its own, both removed after).
//! Published deliveries reach the log once each, in queue order, with duplicates recognised; a message
//! delivered again after its commit is stored once; a message that is not a delivery is rejected and the
//! drain goes on; of two draining nodes one drains at a time, and the other takes over when it stops; a
//! broker behind TLS is used when its CA is trusted and refused otherwise; a message of a newer envelope
//! format is left in the queue, in order, for an upgraded node; a partition computed at publish is stored
//! with its delivery when the drain routes by the same count, and left to the leader otherwise.

use lapin::options::{BasicPublishOptions, QueueDeleteOptions};
use lapin::{BasicProperties, Connection, ConnectionProperties};
use nudge_model::TraceId;
use nudge_store::postgres::PgStore;
use nudge_store::prelude::*;
use nudge_store::rabbitmq::{AmqpBus, BusTls, Drained};
use nudge_store::{NewDelivery, Store};
use nudge_testkit::tls_front;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::watch;

struct Setup {
    amqp: String,
    queue: String,
    store: Arc<PgStore>,
}

impl Setup {
    async fn new() -> Option<Setup> {
        let amqp = nudge_store::conformance::amqp_test_url()?;
        let pg = nudge_store::conformance::postgres_test_url()?;
        let store = nudge_store::conformance::fresh_postgres(&pg, "nudge_bus").await;
        let queue = format!("nudge.test.{}", uuid::Uuid::new_v4().simple());
        Some(Setup { amqp, queue, store })
    }

    async fn bus(&self, name: &str) -> Arc<AmqpBus> {
        AmqpBus::connect(&self.amqp, &self.queue, name).await.expect("connect to RabbitMQ")
    }

    /// Starts a drain; returns its shutdown switch, its task and its running counts.
    fn drain(&self, bus: Arc<AmqpBus>) -> (watch::Sender<bool>, tokio::task::JoinHandle<()>, Arc<Counts>) {
        let (tx, rx) = watch::channel(false);
        let counts = Arc::new(Counts::default());
        let c = counts.clone();
        let store: Arc<dyn Store> = self.store.clone();
        let task = tokio::spawn(bus.drain(store, move |d: Drained| c.add(d), rx));
        (tx, task, counts)
    }

    /// Publishes `body` to the queue as another application would (no envelope of this build's), on a
    /// connection of its own, returned open.
    async fn raw_publish(&self, body: &[u8]) -> (Connection, lapin::Channel) {
        let conn = Connection::connect(&self.amqp, ConnectionProperties::default()).await.unwrap();
        let ch = conn.create_channel().await.unwrap();
        ch.basic_publish(
            "".into(),
            self.queue.as_str().into(),
            BasicPublishOptions::default(),
            body,
            BasicProperties::default(),
        )
        .await
        .unwrap();
        (conn, ch)
    }

    async fn finish(self) {
        self.store.drop_schema().await.unwrap();
    }

    /// Stops a drain, waits for it, then [`Setup::finish`].
    async fn finish_after(self, (stop, task): (watch::Sender<bool>, tokio::task::JoinHandle<()>)) {
        stop.send(true).unwrap();
        task.await.unwrap();
        self.finish().await;
    }
}

impl Drop for Setup {
    /// The queue goes whether the test passed or failed.
    fn drop(&mut self) {
        nudge_store::conformance::delete_test_queue(&self.amqp, &self.queue);
    }
}

#[derive(Default)]
struct Counts {
    committed: AtomicUsize,
    duplicates: AtomicUsize,
    unreadable: AtomicUsize,
}

impl Counts {
    fn add(&self, d: Drained) {
        self.committed.fetch_add(d.committed, Ordering::SeqCst);
        self.duplicates.fetch_add(d.duplicates, Ordering::SeqCst);
        self.unreadable.fetch_add(d.unreadable, Ordering::SeqCst);
    }
    fn get(&self) -> (usize, usize, usize) {
        (
            self.committed.load(Ordering::SeqCst),
            self.duplicates.load(Ordering::SeqCst),
            self.unreadable.load(Ordering::SeqCst),
        )
    }
}

fn delivery(n: usize, webhook: &str) -> NewDelivery {
    NewDelivery {
        trace_id: TraceId::new(),
        source: "shopify".into(),
        topic: "customers/update".into(),
        shop: Some("bus.myshopify.com".into()),
        webhook_id: Some(webhook.into()),
        event_id: None,
        received_at_ms: 1_700_000_000_000 + n as i64,
        headers_json: "{}".into(),
        body: format!("{{\"n\":{n}}}\n").into_bytes(),
        dedupe_keys: vec![format!("shopify:{webhook}")],
        part: None,
    }
}

async fn until(secs: u64, mut f: impl AsyncFnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + Duration::from_secs(secs);
    while tokio::time::Instant::now() < end {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    f().await
}

/// The bodies' numbers of the pending deliveries, in processing order.
async fn log_order(store: &PgStore) -> Vec<usize> {
    store
        .pending_deliveries(100_000)
        .await
        .unwrap()
        .iter()
        .map(|d| {
            let v: serde_json::Value = serde_json::from_slice(&d.body).unwrap();
            v["n"].as_u64().unwrap() as usize
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn published_deliveries_reach_the_log_once_in_order() {
    let Some(s) = Setup::new().await else { return };
    let bus = s.bus("t-publisher").await;
    // 400 deliveries; every tenth is sent again (a platform's retry) under a new trace.
    let mut sent = Vec::new();
    let mut retries = Vec::new();
    for n in 0..400 {
        let d = delivery(n, &format!("w{n}"));
        bus.publish(&d).await.expect("published");
        sent.push(d.trace_id);
        if n % 10 == 0 {
            let mut again = delivery(n + 10_000, &format!("w{n}"));
            again.received_at_ms += 1;
            bus.publish(&again).await.expect("published");
            retries.push((again.trace_id, d.trace_id));
        }
    }
    let (stop, task, counts) = s.drain(bus.clone());
    assert!(until(60, async || counts.get().0 + counts.get().1 >= 440).await, "drained: {:?}", counts.get());
    assert_eq!(counts.get(), (400, 40, 0));
    assert_eq!(log_order(&s.store).await, (0..400).collect::<Vec<_>>(), "queue order is log order");
    // A retry's trace names its original.
    let (retry, original) = retries[3];
    let view = s.store.trace(retry).await.unwrap().expect("the retry's trace is recorded");
    assert_eq!(view.records[0].detail["duplicate_of"], original.to_string());
    assert!(s.store.trace(sent[5]).await.unwrap().is_some());
    assert!(until(10, async || bus.depth().await.unwrap().ready == 0).await, "the queue is empty");
    s.finish_after((stop, task)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_computed_at_publish_is_stored_by_the_drain_under_the_same_count() {
    let Some(s) = Setup::new().await else { return };
    let bus = s.bus("t-routed").await;
    bus.route_by(Some(8));
    // Deliveries 0..30 carry their partition (n % 8); 30..40 name no customer (the leader routes them).
    for n in 0..40 {
        let part = (n < 30).then_some((n % 8) as u32);
        bus.publish(&NewDelivery { part, ..delivery(n, &format!("r{n}")) }).await.unwrap();
    }
    let (stop, task, counts) = s.drain(bus.clone());
    assert!(until(60, async || counts.get().0 >= 40).await, "drained: {:?}", counts.get());
    let (unrouted, routed) = s.store.pending_routes().await.unwrap();
    assert_eq!(unrouted, 10);
    assert_eq!(routed, (0..8).map(|p| (p, if p < 6 { 4 } else { 3 })).collect::<Vec<_>>());
    let in_five: Vec<usize> = s
        .store
        .pending_deliveries_in(&[5], &[], 100)
        .await
        .unwrap()
        .iter()
        .map(|d| {
            serde_json::from_slice::<serde_json::Value>(&d.body).unwrap()["n"].as_u64().unwrap() as usize
        })
        .collect();
    assert_eq!(in_five, vec![5, 13, 21, 29], "a partition's deliveries, in queue order");
    stop.send(true).unwrap();
    task.await.unwrap();
    // Drained by a node whose count is another (the cluster was repartitioned meanwhile): not trusted.
    for n in 40..45 {
        bus.publish(&NewDelivery { part: Some(1), ..delivery(n, &format!("r{n}")) }).await.unwrap();
    }
    let other = s.bus("t-repartitioned").await;
    other.route_by(Some(16));
    let (stop, task, counts) = s.drain(other);
    assert!(until(60, async || counts.get().0 >= 5).await, "drained: {:?}", counts.get());
    assert_eq!(s.store.pending_routes().await.unwrap().0, 15, "routed again by the leader");
    s.finish_after((stop, task)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_delivered_again_after_its_commit_is_stored_once() {
    let Some(s) = Setup::new().await else { return };
    let bus = s.bus("t-again").await;
    // A node committed these and died before acknowledging them: the broker hands them out again.
    let ds: Vec<NewDelivery> = (0..50).map(|n| delivery(n, &format!("a{n}"))).collect();
    let committed: Vec<NewDelivery> = ds
        .iter()
        .map(|d| nudge_store::rabbitmq::decode(&nudge_store::rabbitmq::encode(d, None), None).unwrap())
        .collect();
    s.store.commit_deliveries(committed).await.unwrap();
    for d in &ds {
        bus.publish(d).await.unwrap();
    }
    bus.publish(&delivery(50, "a50")).await.unwrap();
    let (stop, task, counts) = s.drain(bus.clone());
    assert!(until(60, async || counts.get().0 + counts.get().1 >= 51).await, "{:?}", counts.get());
    assert_eq!(counts.get(), (1, 50, 0));
    assert_eq!(s.store.stats().await.unwrap().deliveries, 51);
    // The redelivered messages are their own originals: no duplicate note under their traces.
    let view = s.store.trace(ds[0].trace_id).await.unwrap().unwrap();
    assert!(view.records.iter().all(|r| r.detail.get("duplicate_of").is_none()), "{:?}", view.records);
    s.finish_after((stop, task)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_that_is_not_a_delivery_is_rejected_and_the_drain_goes_on() {
    let Some(s) = Setup::new().await else { return };
    let bus = s.bus("t-unreadable").await;
    bus.publish(&delivery(0, "u0")).await.unwrap();
    let (conn, _) = s.raw_publish(b"hello from another application").await;
    let _ = conn.close(200, "done".into()).await;
    bus.publish(&delivery(1, "u1")).await.unwrap();
    let (stop, task, counts) = s.drain(bus.clone());
    assert!(until(60, async || counts.get().0 >= 2 && counts.get().2 >= 1).await, "{:?}", counts.get());
    assert_eq!(counts.get(), (2, 0, 1));
    assert_eq!(log_order(&s.store).await, vec![0, 1]);
    assert!(until(10, async || bus.depth().await.unwrap().ready == 0).await, "nothing left queued");
    s.finish_after((stop, task)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn of_two_draining_nodes_one_drains_and_the_other_takes_over() {
    let Some(s) = Setup::new().await else { return };
    let (a, b) = (s.bus("t-node-a").await, s.bus("t-node-b").await);
    let (stop_a, task_a, counts_a) = s.drain(a.clone());
    let mut task_a = Some(task_a);
    // Node a registered first: it is the active consumer.
    assert!(until(10, async || a.depth().await.unwrap().consumers == 1).await);
    let (stop_b, task_b, counts_b) = s.drain(b.clone());
    // The broker counts the active consumer only: node b waits its turn.
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(a.depth().await.unwrap().consumers, 1);
    let publisher = s.bus("t-publisher").await;
    for n in 0..300 {
        publisher.publish(&delivery(n, &format!("t{n}"))).await.unwrap();
        if n == 150 {
            // Node a stops mid-load (its unacknowledged messages go back to the queue for node b).
            assert!(until(30, async || counts_a.get().0 > 0).await);
            stop_a.send(true).unwrap();
            task_a.take().unwrap().await.unwrap();
        }
    }
    assert!(
        until(60, async || counts_a.get().0 + counts_b.get().0 >= 300).await,
        "{:?} {:?}",
        counts_a.get(),
        counts_b.get()
    );
    assert!(counts_b.get().0 > 0, "node b took over");
    assert_eq!(counts_a.get().0 + counts_b.get().0, 300, "each stored once");
    assert_eq!(log_order(&s.store).await, (0..300).collect::<Vec<_>>(), "in order across the handover");
    stop_b.send(true).unwrap();
    task_b.await.unwrap();
    s.finish().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_to_a_deleted_queue_fails_and_the_next_declares_it_again() {
    let Some(s) = Setup::new().await else { return };
    let bus = s.bus("t-deleted").await;
    bus.publish(&delivery(0, "q0")).await.unwrap();
    let conn = Connection::connect(&s.amqp, ConnectionProperties::default()).await.unwrap();
    let ch = conn.create_channel().await.unwrap();
    ch.queue_delete(s.queue.as_str().into(), QueueDeleteOptions::default()).await.unwrap();
    let _ = conn.close(200, "done".into()).await;
    // Unroutable: returned by the broker, so not acknowledged (a webhook would get 503 and come again).
    let e = bus.publish(&delivery(1, "q1")).await.expect_err("no queue to take it");
    assert!(e.to_string().contains("does not exist"), "{e}");
    bus.publish(&delivery(2, "q2")).await.expect("the queue is declared again");
    let (stop, task, counts) = s.drain(bus.clone());
    assert!(until(30, async || counts.get().0 >= 1).await, "{:?}", counts.get());
    assert_eq!(log_order(&s.store).await, vec![2]);
    s.finish_after((stop, task)).await;
}

/// A message written by a newer build (a newer envelope format) is neither stored nor rejected: the drain
/// commits what came before it, leaves it and everything after it in the queue in order, and steps back
/// so that an upgraded node can take the queue.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_of_a_newer_format_is_left_in_the_queue_for_an_upgraded_node() {
    let Some(s) = Setup::new().await else { return };
    let bus = s.bus("t-newer").await;
    for n in 0..3 {
        bus.publish(&delivery(n, &format!("n{n}"))).await.unwrap();
    }
    let newer =
        format!("{{\"nudge\":{},\"what\":\"changed\"}}\n{{}}", nudge_store::rabbitmq::ENVELOPE_FORMAT + 1);
    let (conn, ch) = s.raw_publish(newer.as_bytes()).await;
    for n in 3..5 {
        bus.publish(&delivery(n, &format!("n{n}"))).await.unwrap();
    }
    let (stop, task, counts) = s.drain(bus.clone());
    assert!(until(30, async || counts.get().0 >= 3).await, "{:?}", counts.get());
    // Stepped back: three messages wait, the newer one first.
    assert!(
        until(10, async || bus.depth().await.unwrap()
            == nudge_store::rabbitmq::QueueDepth { ready: 3, consumers: 0 })
        .await
    );
    assert_eq!(counts.get(), (3, 0, 0));
    assert_eq!(log_order(&s.store).await, vec![0, 1, 2]);
    // An upgraded node (here a plain consumer) takes the queue while this node stays off it, and gets the
    // newer message first, then the two after it.
    let mut upgraded = ch
        .basic_consume(
            s.queue.as_str().into(),
            "t-upgraded".into(),
            lapin::options::BasicConsumeOptions::default(),
            lapin::types::FieldTable::default(),
        )
        .await
        .unwrap();
    let mut got = Vec::new();
    for _ in 0..3 {
        let m = tokio::time::timeout(Duration::from_secs(10), futures::StreamExt::next(&mut upgraded))
            .await
            .expect("the upgraded node is handed the queue")
            .unwrap()
            .unwrap();
        got.push(m.data.clone());
    }
    assert_eq!(got[0], newer.as_bytes());
    let later: Vec<usize> = got[1..]
        .iter()
        .map(|m| nudge_store::rabbitmq::decode(m, None).unwrap().received_at_ms as usize - 1_700_000_000_000)
        .collect();
    assert_eq!(later, vec![3, 4]);
    let _ = conn.close(200, "done".into()).await;
    s.finish_after((stop, task)).await;
}

/// A broker reached over TLS (`amqps://`) that also verifies its clients: a node that does not trust the
/// CA that signed the broker's certificate refuses the connection; one that trusts it but shows no client
/// certificate is refused by the broker; with both, deliveries are published and drained as over plain
/// AMQP, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn over_tls_a_trusted_broker_is_used_and_an_untrusted_one_refused() {
    let Some(s) = Setup::new().await else { return };
    let (target, _) = tls_front::amqps_through(&s.amqp, 0);
    let front = tls_front::TlsFront::requiring_client_certificates(&target).await.unwrap();
    let (_, url) = tls_front::amqps_through(&s.amqp, front.port);
    let client = Some((tls_front::CLIENT_CERT_PEM.to_string(), tls_front::CLIENT_KEY_PEM.to_string()));
    let ca = Some(tls_front::CA_PEM.to_string());

    let untrusted = BusTls { ca_pem: None, client: client.clone() };
    let err = AmqpBus::connect_tls(&url, untrusted, &s.queue, "t-untrusted").await.err().expect("refused");
    assert!(err.to_string().contains("certificate"), "{err}");
    assert_eq!(front.handshakes(), 0);

    let anonymous = BusTls { ca_pem: ca.clone(), client: None };
    assert!(AmqpBus::connect_tls(&url, anonymous, &s.queue, "t-anonymous").await.is_err());
    assert!(front.refused() >= 2, "the front refused {} handshakes", front.refused());

    let both = BusTls { ca_pem: ca, client };
    assert_eq!(both.check(), Ok(()));
    let bus = AmqpBus::connect_tls(&url, both, &s.queue, "t-tls").await.expect("connected over TLS");
    for n in 0..50 {
        bus.publish(&delivery(n, &format!("t{n}"))).await.expect("published over TLS");
    }
    let (stop, task, counts) = s.drain(bus.clone());
    assert!(until(60, async || counts.get().0 >= 50).await, "drained: {:?}", counts.get());
    assert_eq!(log_order(&s.store).await, (0..50).collect::<Vec<_>>());
    assert!(front.handshakes() >= 2, "publishing and draining went through the front");
    s.finish_after((stop, task)).await;
}

#[test]
fn tls_settings_are_checked_before_use() {
    let pem = |s: &str| Some(s.to_string());
    let ok = BusTls { ca_pem: pem(tls_front::CA_PEM), client: None };
    assert_eq!(ok.check(), Ok(()));
    let not_pem = BusTls { ca_pem: pem("hello"), client: None };
    assert_eq!(not_pem.check().unwrap_err().0, "ca");
    let (cert, key) = (tls_front::CLIENT_CERT_PEM, tls_front::CLIENT_KEY_PEM);
    for (pair, wrong) in [((key, key), "cert"), ((cert, cert), "key")] {
        let tls = BusTls { ca_pem: None, client: Some((pair.0.into(), pair.1.into())) };
        assert_eq!(tls.check().unwrap_err().0, wrong);
    }
}
