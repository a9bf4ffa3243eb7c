//! Several `nudge serve` processes on one PostgreSQL store (runs when `NUDGE_TEST_POSTGRES_URL` is set, and
//! the tests whose nodes share their rate limits when `NUDGE_TEST_REDIS_URL` is too; each test in a schema of
//! its own). Load is spread over the nodes; the leader, or a node delivering partitions, is killed with
//! `kill -9` mid-load and started again later, the database's connections are cut mid-load, PostgreSQL and
//! Redis are crashed and restarted mid-load, the same webhook goes to two nodes at once, and webhooks reach
//! nodes that process by partition through RabbitMQ, each with the partition computed where it was
//! acknowledged. Every
//! acknowledged delivery must reach exactly one terminal state, no event reaches Klaviyo twice, and each
//! customer's profile updates reach Klaviyo in the order of the customer's events.
//!
//! A test binary of its own: these tests start several servers and load the machine, so they run after the
//! other integration tests rather than beside them.

use nudge_ingest::shopify::fixtures::{CheckoutFixture, CustomerFixture, LineItemFixture};
use nudge_model::TraceId;
use nudge_store::postgres::PgStore;
use nudge_store::prelude::*;
use nudge_testkit::FakeRateLimit;
use nudge_testkit::eventually;
use nudge_testkit::fake_klaviyo::{FakeKlaviyo, FakeKlaviyoConfig, FakeKlaviyoHandle};
use nudge_testkit::shopify_sender::{Delivery, ShopifySender};
use std::collections::{BTreeMap, HashMap};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use time::OffsetDateTime;

const SECRET: &str = "shpss_cluster_test_secret_9c2f";
const KEY: &str = "pk_cluster_test_key_41be";
const PSEUDONYM_KEY: &str = "cluster-test-pseudonym-key-0123456789abcdef";

struct Cluster {
    dir: tempfile::TempDir,
    url: String,
    schema: String,
    fake_url: String,
    ports: Vec<u16>,
    children: Vec<Option<Child>>,
    store: Arc<PgStore>,
    /// With a Redis URL, the nodes share their rate limits there and every node delivers its partitions.
    redis: Option<String>,
    /// Keys added to the `[destinations.klaviyo]` table.
    klaviyo_keys: String,
    /// With `(amqp_url, queue)`, webhooks are acknowledged once RabbitMQ has them (`[bus] backend = "rabbitmq"`).
    bus: Option<(String, String)>,
    /// With the bus: the URL and further `[bus]` keys the nodes use instead (a TLS front's `amqps://` URL
    /// and its certificate files); the test itself uses the broker's plain URL.
    bus_tls: Option<(String, String)>,
}

impl Cluster {
    async fn start(url: &str, fake_url: &str, nodes: usize) -> Cluster {
        Self::start_with(url, fake_url, nodes, None, "").await
    }

    async fn start_with(
        url: &str,
        fake_url: &str,
        nodes: usize,
        redis: Option<String>,
        klaviyo_keys: &str,
    ) -> Cluster {
        let store = nudge_store::conformance::fresh_postgres(url, "nudge_c").await;
        let schema = store.schema().to_string();
        let ports = (0..nodes)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port())
            .collect();
        let mut c = Cluster {
            dir: tempfile::tempdir().unwrap(),
            url: url.to_string(),
            schema,
            fake_url: fake_url.to_string(),
            ports,
            children: (0..nodes).map(|_| None).collect(),
            store,
            redis,
            klaviyo_keys: klaviyo_keys.to_string(),
            bus: None,
            bus_tls: None,
        };
        c.start_all(nodes).await;
        c
    }

    /// A cluster whose webhooks go through RabbitMQ at `amqp` (a queue of its own).
    async fn start_on_bus(url: &str, fake_url: &str, nodes: usize, amqp: &str) -> Cluster {
        Self::start_on_bus_tls(url, fake_url, nodes, amqp, None, None).await
    }

    /// [`Cluster::start_on_bus`], with the broker behind TLS (`tls`) and with the rate limits shared in
    /// Redis (`redis`: processing and delivery by partition).
    async fn start_on_bus_tls(
        url: &str,
        fake_url: &str,
        nodes: usize,
        amqp: &str,
        tls: Option<(String, String)>,
        redis: Option<String>,
    ) -> Cluster {
        let mut c = Self::start_with(url, fake_url, 0, redis, "").await;
        c.bus_tls = tls;
        c.ports = (0..nodes)
            .map(|_| std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port())
            .collect();
        c.children = (0..nodes).map(|_| None).collect();
        c.bus = Some((amqp.to_string(), format!("nudge.test.{}", uuid::Uuid::new_v4().simple())));
        c.start_all(nodes).await;
        c
    }

    async fn start_all(&mut self, nodes: usize) {
        let c = self;
        for i in 0..nodes {
            c.start_node(i);
        }
        let http = reqwest::Client::new();
        for i in 0..nodes {
            c.wait_healthy(&http, i).await;
        }
    }

    fn config(&self, i: usize) -> std::path::PathBuf {
        let path = self.dir.path().join(format!("n{i}.toml"));
        std::fs::write(
            &path,
            format!(
                r#"
[server]
listen = "127.0.0.1:{port}"
[storage]
backend = "postgres"
postgres_url = "{url}"
postgres_schema = "{schema}"
postgres_pool = 6
data_dir = "{data}"
[cluster]
node_id = "n{i}"
[privacy]
pseudonym_key = "${{T_PSEUDONYM_KEY}}"
[sources.shopify]
secrets = ["${{T_SHOPIFY_SECRET}}"]
[destinations.klaviyo]
api_key = "${{T_KLAVIYO_KEY}}"
base_url = "{fake}"
{klaviyo_keys}
[pipeline]
checkout_abandon_after = "2s"
timer_tick = "100ms"
{spread}"#,
                port = self.ports[i],
                url = self.url,
                schema = self.schema,
                data = self.dir.path().join(format!("data{i}")).display(),
                fake = self.fake_url,
                klaviyo_keys = self.klaviyo_keys,
                spread = {
                    let mut bus = String::new();
                    if let Some((amqp, queue)) = &self.bus {
                        let (amqp, keys) = self.bus_tls.as_ref().map_or((amqp.as_str(), ""), |(u, k)| (u, k));
                        bus = format!(
                            "backend = \"rabbitmq\"\namqp_url = \"{amqp}\"\nqueue = \"{queue}\"\n{keys}"
                        );
                    }
                    match &self.redis {
                        Some(r) => format!(
                            "[bus]\npartitions = 8\n{bus}[cache]\nbackend = \"redis\"\nredis_url = \"{r}\"\n"
                        ),
                        None if bus.is_empty() => String::new(),
                        None => format!("[bus]\n{bus}"),
                    }
                },
            ),
        )
        .unwrap();
        path
    }

    fn start_node(&mut self, i: usize) {
        let config = self.config(i);
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("n{i}.log")))
            .unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_nudge"))
            .args(["serve", "--config"])
            .arg(config)
            .env("RUST_LOG", "info")
            .env("T_SHOPIFY_SECRET", SECRET)
            .env("T_KLAVIYO_KEY", KEY)
            .env("T_PSEUDONYM_KEY", PSEUDONYM_KEY)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("nudge starts");
        self.children[i] = Some(child);
    }

    fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.children[i].take() {
            c.kill().unwrap();
            c.wait().unwrap();
        }
    }

    fn base(&self, i: usize) -> String {
        format!("http://127.0.0.1:{}", self.ports[i])
    }

    async fn wait_healthy(&self, http: &reqwest::Client, i: usize) {
        for _ in 0..400 {
            if let Ok(r) = http.get(format!("{}/healthz", self.base(i))).send().await
                && r.status() == 200
            {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("node {i} did not become healthy:\n{}", self.log(i));
    }

    fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("n{i}.log"))).unwrap_or_default()
    }

    /// The live leader's index, once one leads.
    async fn leader(&self) -> Option<usize> {
        let nodes = self.store.nodes().await.ok()?;
        let now = nudge::outbox::now_ms();
        let id = nodes.into_iter().find(|n| n.leader && now - n.seen_at_ms < 3_000)?.node_id;
        id.strip_prefix('n')?.parse().ok()
    }

    /// How many deliveries node `i` processed, by its metrics (0 when it does not answer).
    async fn processed_on(&self, i: usize) -> f64 {
        self.counted_on(i, "nudge_deliveries_processed_total").await
    }

    /// Node `i`'s counter `name`, summed over its labels (0 when the node does not answer).
    async fn counted_on(&self, i: usize, name: &str) -> f64 {
        let Ok(r) = reqwest::get(format!("{}/metrics", self.base(i))).await else { return 0.0 };
        let text = r.text().await.unwrap_or_default();
        text.lines()
            .filter(|l| l.strip_prefix(name).is_some_and(|rest| rest.starts_with(['{', ' '])))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum()
    }

    /// `nudge cluster status --json` as node `i`'s configuration sees it.
    fn status(&self, i: usize) -> serde_json::Value {
        serde_json::from_str(&self.cli(i, &["cluster", "status", "--json"])).unwrap()
    }

    /// Runs `nudge <args> --config <node i's>`; its standard output.
    fn cli(&self, i: usize, args: &[&str]) -> String {
        let out = Command::new(env!("CARGO_BIN_EXE_nudge"))
            .args(args)
            .arg("--config")
            .arg(self.config(i))
            .env("T_SHOPIFY_SECRET", SECRET)
            .env("T_KLAVIYO_KEY", KEY)
            .env("T_PSEUDONYM_KEY", PSEUDONYM_KEY)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    /// The partitions each live node delivers, by node index (from the nodes' records).
    async fn partitions(&self) -> BTreeMap<usize, Vec<u32>> {
        let now = nudge::outbox::now_ms();
        let live: Vec<String> = self
            .store
            .nodes()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|n| now - n.seen_at_ms < 3_000)
            .map(|n| n.node_id)
            .collect();
        self.store
            .partition_owners()
            .await
            .unwrap_or_default()
            .into_iter()
            .filter(|o| live.contains(&o.node_id))
            .filter_map(|o| Some((o.node_id.strip_prefix('n')?.parse().ok()?, o.partitions)))
            .collect()
    }

    /// True when the live nodes `nodes` each deliver some partitions, none twice, all 8 covered.
    async fn spread_over(&self, nodes: &[usize]) -> bool {
        let parts = self.partitions().await;
        let mut all: Vec<u32> = parts.values().flatten().copied().collect();
        all.sort_unstable();
        nodes.iter().all(|i| parts.get(i).is_some_and(|p| !p.is_empty())) && all == (0..8).collect::<Vec<_>>()
    }

    async fn finish(mut self) {
        for i in 0..self.children.len() {
            self.kill(i);
        }
        self.store.drop_schema().await.unwrap();
    }
}

impl Drop for Cluster {
    /// A failed test leaves no node running, and no queue.
    fn drop(&mut self) {
        for c in self.children.iter_mut().flatten() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some((amqp, queue)) = &self.bus {
            nudge_store::conformance::delete_test_queue(amqp, queue);
        }
    }
}

/// Sends `d` to the nodes in turn, starting at `first`, until one acknowledges it (as a platform retries);
/// returns the trace of the acknowledgement.
async fn send_anywhere(senders: &[ShopifySender], first: usize, d: &Delivery) -> TraceId {
    for attempt in 0..400 {
        let s = &senders[(first + attempt) % senders.len()];
        if let Ok(r) = s.send(d).await
            && r.status == 200
        {
            return trace_of(&r.body);
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("no node acknowledged a delivery");
}

fn trace_of(body: &[u8]) -> TraceId {
    let v: serde_json::Value = serde_json::from_slice(body).expect("JSON acknowledgement");
    v["trace_id"].as_str().and_then(|t| t.parse().ok()).expect("trace_id in the acknowledgement")
}

/// Each customer's profile names as Klaviyo received them, in request order: `(email, version)`.
fn profile_versions(fake: &FakeKlaviyoHandle) -> BTreeMap<String, Vec<u32>> {
    let mut out: BTreeMap<String, Vec<u32>> = BTreeMap::new();
    for r in fake.requests() {
        if r.method != "POST" || r.status >= 300 || !r.path.contains("profile") {
            continue;
        }
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(&r.body) else { continue };
        let mut profiles = Vec::new();
        collect_profiles(&v, &mut profiles);
        for (email, name) in profiles {
            if let Some(n) = name.strip_prefix('v').and_then(|n| n.parse().ok()) {
                out.entry(email).or_default().push(n);
            }
        }
    }
    out
}

fn collect_profiles(v: &serde_json::Value, out: &mut Vec<(String, String)>) {
    match v {
        serde_json::Value::Object(m) => {
            if let (Some(e), Some(n)) =
                (m.get("email").and_then(|e| e.as_str()), m.get("first_name").and_then(|n| n.as_str()))
            {
                out.push((e.to_lowercase(), n.to_string()));
            }
            for x in m.values() {
                collect_profiles(x, out);
            }
        }
        serde_json::Value::Array(a) => a.iter().for_each(|x| collect_profiles(x, out)),
        _ => {}
    }
}

/// The load: for each customer, three updates of the first name (v1, v2, v3) sent one after the other (the
/// next only once the one before is acknowledged), and for some an abandoned checkout; customers in
/// parallel, spread over the nodes. Calls `midway` once a third of the customers are done.
async fn load(
    senders: Arc<Vec<ShopifySender>>,
    customers: u64,
    checkouts: u64,
    midway: impl AsyncFnOnce(),
) -> (Vec<TraceId>, u64) {
    let now = OffsetDateTime::now_utc();
    let done = Arc::new(AtomicUsize::new(0));
    let traces = Arc::new(std::sync::Mutex::new(Vec::new()));
    let next = Arc::new(AtomicUsize::new(0));
    let mut workers = Vec::new();
    for w in 0..24 {
        let (senders, done, traces, next) = (senders.clone(), done.clone(), traces.clone(), next.clone());
        workers.push(tokio::spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as u64;
                if i >= customers {
                    return;
                }
                let id = 500_000 + i;
                let email = format!("c{i}@example.org");
                for v in 1..=3i64 {
                    let c = CustomerFixture::new(id, Some(&email), now)
                        .name(Some(&format!("v{v}")), Some("Lane"))
                        .consent(Some("subscribed"))
                        .updated_at(now + time::Duration::seconds(v));
                    let topic = if v == 1 { "customers/create" } else { "customers/update" };
                    let t =
                        send_anywhere(&senders, w + v as usize, &Delivery::new(topic, c.to_bytes())).await;
                    traces.lock().unwrap().push(t);
                }
                if i < checkouts {
                    let c = CustomerFixture::new(id, Some(&email), now)
                        .name(Some("v3"), Some("Lane"))
                        .consent(Some("subscribed"));
                    let k = CheckoutFixture::new(7_000_000 + i, now)
                        .token(&format!("cluster-{i}"))
                        .customer(c)
                        .line_item(LineItemFixture::new(9_100_000_009, "Lamp", 1, "40.00"))
                        .accepts_marketing(true);
                    let t =
                        send_anywhere(&senders, w, &Delivery::new("checkouts/create", k.to_bytes())).await;
                    traces.lock().unwrap().push(t);
                }
                done.fetch_add(1, Ordering::Relaxed);
            }
        }));
    }
    let third = (customers / 3) as usize;
    while done.load(Ordering::Relaxed) < third {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    midway().await;
    for w in workers {
        w.await.unwrap();
    }
    let traces = std::mem::take(&mut *traces.lock().unwrap());
    (traces, checkouts)
}

/// After the load: everything processed and delivered, each acknowledged delivery with one terminal state,
/// no event twice, each customer's profile versions in order and ending at v3.
async fn check_outcome(
    cluster: &Cluster,
    fake: &FakeKlaviyoHandle,
    traces: &[TraceId],
    customers: u64,
    checkouts: u64,
) {
    let store = cluster.store.clone();
    let idle = eventually(240, async || {
        let versions = profile_versions(fake);
        let complete = (0..customers)
            .all(|i| versions.get(&format!("c{i}@example.org")).and_then(|v| v.last()) == Some(&3));
        let abandoned = fake.events().iter().filter(|e| e.metric == "AI Checkout Abandoned").count() as u64;
        complete && abandoned >= checkouts && store.backlog().await.ok() == Some((0, 0))
    })
    .await;
    let versions = profile_versions(fake);
    assert!(
        idle,
        "not everything was processed: backlog {:?}, {} customers with profiles, {} abandoned events\n{}",
        store.backlog().await.ok(),
        versions.len(),
        fake.events().len(),
        (0..cluster.children.len()).map(|i| cluster.log(i)).collect::<Vec<_>>().join("\n----\n")
    );
    // A retry after a lost acknowledgement is answered with the original's trace: each trace once.
    let mut traces = traces.to_vec();
    traces.sort();
    traces.dedup();
    let mut unterminated = Vec::new();
    for t in &traces {
        let mut view = store.trace(*t).await.unwrap();
        // Through RabbitMQ a retry is acknowledged under a trace of its own, which the drain records as a
        // duplicate of the original: the original's terminal state is the delivery's.
        let original = view.as_ref().and_then(|v| {
            v.records.iter().find_map(|r| r.detail["duplicate_of"].as_str()?.parse::<TraceId>().ok())
        });
        if let Some(o) = original {
            view = store.trace(o).await.unwrap();
        }
        if view.and_then(|v| v.terminal).is_none() {
            unterminated.push(*t);
        }
    }
    assert!(unterminated.is_empty(), "{} acknowledged deliveries have no terminal state", unterminated.len());
    let events = fake.events();
    let mut ids: Vec<&str> = events.iter().filter_map(|e| e.unique_id.as_deref()).collect();
    let n = ids.len();
    ids.sort();
    ids.dedup();
    assert_eq!(ids.len(), n, "no event reached Klaviyo twice");
    assert_eq!(n as u64, checkouts, "one abandoned-checkout event per checkout");
    let mut out_of_order = Vec::new();
    for (email, seq) in &versions {
        if seq.windows(2).any(|w| w[0] > w[1]) {
            out_of_order.push(format!("{email}: {seq:?}"));
        }
    }
    assert!(out_of_order.is_empty(), "profile updates out of order: {out_of_order:?}");
}

async fn fake() -> FakeKlaviyoHandle {
    nudge_testkit::ensure_crypto_provider();
    FakeKlaviyo::start(FakeKlaviyoConfig::new(KEY).unthrottled()).await.unwrap()
}

fn senders(c: &Cluster) -> Arc<Vec<ShopifySender>> {
    Arc::new(
        (0..c.ports.len())
            .map(|i| ShopifySender::new(format!("{}/webhooks/shopify", c.base(i)), SECRET).unwrap())
            .collect(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_survive_the_leader_killed_mid_load() {
    let Some(url) = nudge_store::conformance::postgres_test_url() else { return };
    let fake = fake().await;
    let mut cluster = Cluster::start(&url, &fake.base_url(), 3).await;
    let leader = eventually(20, async || cluster.leader().await.is_some()).await;
    assert!(leader, "a node leads: {:?}\n{}", cluster.store.nodes().await, cluster.log(0));
    let first = cluster.leader().await.unwrap();
    let senders = senders(&cluster);
    let customers =
        std::env::var("NUDGE_CLUSTER_CUSTOMERS").ok().and_then(|v| v.parse().ok()).unwrap_or(2_000);
    let checkouts = 100.min(customers);
    let killed = std::sync::Mutex::new(None);
    let (traces, _) = load(senders, customers, checkouts, async || {
        // kill -9 the leader in the middle of the load; the others take over.
        let i = cluster.leader().await.unwrap_or(first);
        cluster.kill(i);
        *killed.lock().unwrap() = Some(i);
    })
    .await;
    let killed = killed.lock().unwrap().unwrap();
    let took_over = eventually(30, async || cluster.leader().await.is_some_and(|l| l != killed)).await;
    assert!(
        took_over,
        "another node leads after the leader was killed: {:?}\n{}",
        cluster.store.nodes().await,
        (0..3).map(|i| cluster.log(i)).collect::<Vec<_>>().join("\n----\n")
    );
    // The killed node comes back and rejoins as a follower.
    cluster.start_node(killed);
    cluster.wait_healthy(&reqwest::Client::new(), killed).await;
    check_outcome(&cluster, &fake, &traces, customers, checkouts).await;
    let nodes = cluster.store.nodes().await.unwrap();
    assert_eq!(nodes.len(), 3, "{nodes:?}");
    cluster.finish().await;
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_connections_cut_mid_load_lose_nothing() {
    let Some(url) = nudge_store::conformance::postgres_test_url() else { return };
    let fake = fake().await;
    let cluster = Cluster::start(&url, &fake.base_url(), 2).await;
    assert!(eventually(20, async || cluster.leader().await.is_some()).await, "a node leads");
    let senders = senders(&cluster);
    let (customers, checkouts) = (600, 40);
    let app_name = format!("nudge/{}", cluster.schema);
    let admin = cluster.store.clone();
    let (traces, _) = load(senders, customers, checkouts, async || {
        // Every session of this deployment ended by the server, as a restart or a failover would.
        let ended: Vec<bool> = sqlx::query_scalar(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity
             WHERE application_name = $1 AND pid <> pg_backend_pid()",
        )
        .bind(&app_name)
        .fetch_all(admin.pool())
        .await
        .unwrap_or_default();
        assert!(!ended.is_empty(), "sessions were ended");
    })
    .await;
    check_outcome(&cluster, &fake, &traces, customers, checkouts).await;
    cluster.finish().await;
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_same_webhook_to_two_nodes_at_once_is_processed_once() {
    let Some(url) = nudge_store::conformance::postgres_test_url() else { return };
    let fake = fake().await;
    let cluster = Cluster::start(&url, &fake.base_url(), 2).await;
    same_webhook_to_two_nodes(cluster, fake).await;
}

/// Two nodes on a broker reached over TLS (`amqps://`, a private CA, client certificates): the same
/// webhook sent to both at once is processed once, and `nudge cluster status` reads the queue over TLS too.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn through_rabbitmq_over_tls_the_same_webhook_to_two_nodes_at_once_is_processed_once() {
    let Some(url) = nudge_store::conformance::postgres_test_url() else { return };
    let Some(amqp) = nudge_store::conformance::amqp_test_url() else { return };
    let fake = fake().await;
    // The broker is reached over TLS, through a front that also verifies the nodes' client certificates.
    let (target, _) = nudge_testkit::tls_front::amqps_through(&amqp, 0);
    let front = nudge_testkit::tls_front::TlsFront::requiring_client_certificates(&target).await.unwrap();
    let files = tempfile::tempdir().unwrap();
    let file = |name: &str, text: &str| {
        let p = files.path().join(name);
        std::fs::write(&p, text).unwrap();
        p.display().to_string()
    };
    let keys = format!(
        "amqp_ca_file = {:?}\namqp_cert_file = {:?}\namqp_key_file = {:?}\n",
        file("ca.pem", nudge_testkit::tls_front::CA_PEM),
        file("node.pem", nudge_testkit::tls_front::CLIENT_CERT_PEM),
        file("node.key", nudge_testkit::tls_front::CLIENT_KEY_PEM),
    );
    let (_, tls_url) = nudge_testkit::tls_front::amqps_through(&amqp, front.port);
    let cluster =
        Cluster::start_on_bus_tls(&url, &fake.base_url(), 2, &amqp, Some((tls_url, keys)), None).await;
    assert!(front.handshakes() >= 2, "both nodes connected over TLS");
    // The console's overview shows what is still in the queue.
    let token = cluster.cli(0, &["tokens", "create", "--name", "ops", "--role", "viewer"]);
    let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
    let r = http
        .post(format!("{}/ui/login", cluster.base(1)))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={}", token.trim()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 303);
    let cookie = r.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_string();
    let page = http.get(format!("{}/ui/", cluster.base(1))).header("cookie", cookie).send().await.unwrap();
    let page = page.text().await.unwrap();
    assert!(page.contains("Acknowledged, still in RabbitMQ"), "{page}");
    same_webhook_to_two_nodes(cluster, fake).await;
}

/// 100 webhooks, each sent to both nodes at once: both copies acknowledged, one stored and processed.
async fn same_webhook_to_two_nodes(cluster: Cluster, fake: FakeKlaviyoHandle) {
    let senders = senders(&cluster);
    let now = OffsetDateTime::now_utc();
    let mut handles = Vec::new();
    for i in 0..100u64 {
        let c =
            CustomerFixture::new(800_000 + i, Some(&format!("d{i}@example.org")), now).name(Some("v1"), None);
        let mut d = Delivery::new("customers/create", c.to_bytes());
        d.webhook_id = format!("dup-{i}");
        for n in 0..2 {
            let (s, d) = (senders[n].clone(), d.clone());
            handles.push(tokio::spawn(async move { s.send(&d).await.map(|r| r.status) }));
        }
    }
    let mut statuses: HashMap<u16, usize> = HashMap::new();
    for h in handles {
        *statuses.entry(h.await.unwrap().unwrap()).or_default() += 1;
    }
    assert_eq!(statuses.get(&200), Some(&200), "both copies acknowledged: {statuses:?}");
    let done = eventually(60, async || {
        (0..100).all(|i| fake.profile_by_email(&format!("d{i}@example.org")).is_some())
            && cluster.store.backlog().await.ok() == Some((0, 0))
    })
    .await;
    assert!(done, "every webhook processed");
    if cluster.bus.is_some() {
        // Every copy drained from the queue (the second of each a duplicate).
        let drained = eventually(30, async || cluster.status(0)["bus"]["pending"] == 0).await;
        assert!(drained, "{}", cluster.status(0));
    }
    let stats = cluster.store.stats().await.unwrap();
    assert_eq!(stats.deliveries, 100, "one delivery stored per webhook id");
    let pushes: usize = profile_versions(&fake).values().map(|v| v.len()).sum();
    assert!(pushes >= 100, "{pushes}");
    assert_eq!(cluster.store.stats().await.unwrap().customers, 100);
    // `nudge cluster status` sees both nodes, the one that leads, and nothing waiting.
    let status = cluster.status(1);
    assert_eq!(status["backend"], "postgres");
    assert_eq!(status["delivery"], "leader", "{status}");
    let nodes = status["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 2, "{status}");
    assert!(nodes.iter().all(|n| n["live"] == true), "{status}");
    let leader = status["leader"].as_str().expect("a leader");
    assert!(leader == "n0" || leader == "n1", "{status}");
    assert_eq!(nodes.iter().filter(|n| n["leader"] == true).count(), 1, "{status}");
    assert_eq!(
        (status["deliveries_pending"].as_u64(), status["outbox_pending"].as_u64()),
        (Some(0), Some(0))
    );
    cluster.finish().await;
    fake.shutdown().await;
}

/// The Redis server for the tests whose nodes share their rate limits (`NUDGE_TEST_REDIS_URL`).
fn redis_test_url() -> Option<String> {
    match std::env::var("NUDGE_TEST_REDIS_URL") {
        Ok(u) if !u.is_empty() => Some(u),
        _ => {
            eprintln!("skipped: NUDGE_TEST_REDIS_URL is not set");
            None
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_nodes_share_delivery_by_partition_and_survive_one_killed() {
    let Some(url) = nudge_store::conformance::postgres_test_url() else { return };
    let Some(redis) = redis_test_url() else { return };
    let fake = fake().await;
    let mut cluster = Cluster::start_with(&url, &fake.base_url(), 3, Some(redis), "").await;
    // The 8 partitions are shared out: every node delivers some, none is delivered twice.
    let spread = eventually(40, async || cluster.spread_over(&[0, 1, 2]).await).await;
    assert!(
        spread,
        "the partitions are shared by the three nodes: {:?}\n{}",
        cluster.partitions().await,
        cluster.log(0)
    );
    let status = cluster.status(0);
    assert_eq!((status["delivery"].as_str(), status["partitions"].as_u64()), (Some("partitions"), Some(8)));
    assert_eq!(status["processing"].as_str(), Some("partitions"), "{status}");
    assert_eq!(status["partitions_undelivered"].as_array().map(Vec::len), Some(0), "{status}");
    let leader = eventually(20, async || cluster.leader().await.is_some()).await;
    assert!(leader, "a node leads");
    let senders = senders(&cluster);
    let customers =
        std::env::var("NUDGE_CLUSTER_CUSTOMERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_200);
    let checkouts = 80.min(customers);
    let killed = std::sync::Mutex::new(None);
    let (traces, _) = load(senders, customers, checkouts, async || {
        // kill -9 a node that delivers partitions but does not lead: the others take its partitions over.
        let leader = cluster.leader().await;
        let victim = (0..3).find(|i| Some(*i) != leader).unwrap();
        cluster.kill(victim);
        *killed.lock().unwrap() = Some(victim);
    })
    .await;
    let killed = killed.lock().unwrap().unwrap();
    let rest: Vec<usize> = (0..3).filter(|i| *i != killed).collect();
    let taken_over = eventually(40, async || cluster.spread_over(&rest).await).await;
    assert!(taken_over, "the two others deliver every partition: {:?}", cluster.partitions().await);
    check_outcome(&cluster, &fake, &traces, customers, checkouts).await;
    // Processing was spread too: both survivors processed deliveries of their own partitions.
    for i in &rest {
        let n = cluster.processed_on(*i).await;
        assert!(n > 0.0, "node {i} processed no delivery\n{}", cluster.log(*i));
    }
    // The killed node comes back and gets its share again.
    cluster.start_node(killed);
    cluster.wait_healthy(&reqwest::Client::new(), killed).await;
    let rebalanced = eventually(40, async || cluster.spread_over(&[0, 1, 2]).await).await;
    assert!(rebalanced, "the node back delivers partitions again: {:?}", cluster.partitions().await);
    cluster.finish().await;
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_delivering_nodes_keep_one_shared_rate_limit() {
    let Some(url) = nudge_store::conformance::postgres_test_url() else { return };
    let Some(redis) = redis_test_url() else { return };
    nudge_testkit::ensure_crypto_provider();
    // Klaviyo's profile endpoints at 5 requests a second (the fake answers 429 above that), and nudge
    // configured with the same limit: three nodes sending at their own 5/s would be refused.
    let limit = FakeRateLimit::per_second_and_minute(5, 300);
    let fake = FakeKlaviyo::start(
        FakeKlaviyoConfig::new(KEY)
            .unthrottled()
            .with_profile_import_limit(limit)
            .with_bulk_jobs_limit(limit),
    )
    .await
    .unwrap();
    let keys = "profile_import_limit = { burst_per_sec = 5, steady_per_min = 300 }\n\
                bulk_jobs_limit = { burst_per_sec = 5, steady_per_min = 300 }";
    let cluster = Cluster::start_with(&url, &fake.base_url(), 3, Some(redis), keys).await;
    assert!(
        eventually(40, async || cluster.spread_over(&[0, 1, 2]).await).await,
        "the partitions are shared"
    );
    let senders = senders(&cluster);
    let now = OffsetDateTime::now_utc();
    let customers = 90u64;
    let started = std::time::Instant::now();
    for i in 0..customers {
        let c =
            CustomerFixture::new(900_000 + i, Some(&format!("r{i}@example.org")), now).name(Some("v1"), None);
        send_anywhere(&senders, i as usize, &Delivery::new("customers/create", c.to_bytes())).await;
    }
    let done = eventually(120, async || {
        (0..customers).all(|i| fake.profile_by_email(&format!("r{i}@example.org")).is_some())
            && cluster.store.backlog().await.ok() == Some((0, 0))
    })
    .await;
    assert!(done, "every profile arrived: backlog {:?}", cluster.store.backlog().await);
    let took = started.elapsed();
    let requests = fake.requests();
    let refused = requests.iter().filter(|r| r.status == 429).count();
    let sent = requests.iter().filter(|r| r.method == "POST").count();
    // Three limiters of their own would send at 15/s: most requests refused, and done in about 6 s. One
    // shared budget takes about 18 s; a rare 429 is a request delayed on its way across a window's edge
    // (answered by a retry after Retry-After, as from the platform itself).
    assert!(refused <= 3, "requests stay within the shared limit: {refused} of {sent} answered 429");
    assert!(took >= Duration::from_secs(12), "90 profiles at 5/s take over 12 s, not {took:?}");
    // All three nodes held partitions throughout, so the requests came from all of them.
    assert!(cluster.spread_over(&[0, 1, 2]).await, "{:?}", cluster.partitions().await);
    cluster.finish().await;
    fake.shutdown().await;
}

/// A PostgreSQL server of the test's own (initdb in a temporary directory, on a free loopback port), so it
/// can be crashed and started again mid-load. `None` (with a note) where the server's programs are missing.
struct OwnPostgres {
    bin: std::path::PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl OwnPostgres {
    fn start() -> Option<OwnPostgres> {
        let bin = Command::new("pg_config").arg("--bindir").output().ok().filter(|o| o.status.success())?;
        let bin = std::path::PathBuf::from(String::from_utf8_lossy(&bin.stdout).trim());
        if !bin.join("initdb").exists() {
            eprintln!("skipped: no initdb next to pg_config");
            return None;
        }
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let pg = OwnPostgres { bin, dir, port };
        // The server refuses to run as root: as root, it runs as the `postgres` user.
        if unsafe { libc::geteuid() } == 0 {
            let ok = Command::new("chown").args(["-R", "postgres"]).arg(pg.dir.path()).status().unwrap();
            assert!(ok.success());
        }
        let data = pg.data();
        let init = pg
            .as_server(&pg.bin.join("initdb"), &["-A", "trust", "-U", "postgres", "--no-sync", "-D", &data]);
        assert!(init.status.success(), "initdb: {}", String::from_utf8_lossy(&init.stderr));
        pg.run();
        Some(pg)
    }

    fn data(&self) -> String {
        self.dir.path().join("data").display().to_string()
    }

    fn as_server(&self, program: &std::path::Path, args: &[&str]) -> std::process::Output {
        let mut c = if unsafe { libc::geteuid() } == 0 {
            let mut c = Command::new("runuser");
            c.args(["-u", "postgres", "--"]).arg(program);
            c
        } else {
            Command::new(program)
        };
        c.args(args).output().unwrap()
    }

    /// Starts the server and waits until it accepts connections.
    fn run(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("server.log").display().to_string();
        let out = self.as_server(
            &self.bin.join("pg_ctl"),
            &["-D", &self.data(), "-o", &opts, "-l", &log, "-w", "start"],
        );
        assert!(out.status.success(), "pg_ctl start: {}", String::from_utf8_lossy(&out.stderr));
    }

    /// Stops the server the way a crash would (no shutdown checkpoint, clients cut off).
    fn crash(&self) {
        let out =
            self.as_server(&self.bin.join("pg_ctl"), &["-D", &self.data(), "-m", "immediate", "-w", "stop"]);
        assert!(out.status.success(), "pg_ctl stop: {}", String::from_utf8_lossy(&out.stderr));
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for OwnPostgres {
    fn drop(&mut self) {
        let _ =
            self.as_server(&self.bin.join("pg_ctl"), &["-D", &self.data(), "-m", "immediate", "-w", "stop"]);
    }
}

/// A Redis server of the test's own on a free loopback port (nothing kept on disk), killed and started
/// again mid-load.
struct OwnRedis {
    port: u16,
    child: Option<Child>,
}

impl OwnRedis {
    fn start() -> Option<OwnRedis> {
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut r = OwnRedis { port, child: None };
        r.run()?;
        Some(r)
    }

    fn run(&mut self) -> Option<()> {
        let child = Command::new("redis-server")
            .args([
                "--bind",
                "127.0.0.1",
                "--port",
                &self.port.to_string(),
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn();
        let Ok(child) = child else {
            eprintln!("skipped: redis-server is not installed");
            return None;
        };
        self.child = Some(child);
        for _ in 0..100 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Some(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        panic!("redis-server did not start");
    }

    fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for OwnRedis {
    fn drop(&mut self) {
        self.kill();
    }
}

/// PostgreSQL crashes mid-load and comes back 3 s later, with delivery spread over two nodes sharing their
/// limits in a Redis that is also killed and restarted: while the database is down every webhook is
/// answered 503 (never a 200 that could be lost); afterwards nothing acknowledged is missing, no event is
/// sent twice, and each customer's updates arrive in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_and_redis_restarted_mid_load_lose_nothing() {
    if nudge_store::conformance::postgres_test_url().is_none() {
        return;
    }
    let Some(own) = OwnPostgres::start() else { return };
    let Some(mut redis) = OwnRedis::start() else { return };
    let fake = fake().await;
    let cluster = Cluster::start_with(&own.url(), &fake.base_url(), 2, Some(redis.url()), "").await;
    assert!(eventually(40, async || cluster.spread_over(&[0, 1]).await).await, "the partitions are shared");
    let senders = senders(&cluster);
    let (customers, checkouts) = (600, 40);
    let probe = senders[0].clone();
    let (traces, _) = load(senders, customers, checkouts, async || {
        own.crash();
        redis.kill();
        // While the database is down, an acknowledgement is never given; the answer (503) comes within
        // Shopify's 5 s.
        never_acknowledged_for(&probe, Duration::from_secs(4), "the database is down").await;
        own.run();
        redis.run().expect("redis-server starts again");
    })
    .await;
    check_outcome(&cluster, &fake, &traces, customers, checkouts).await;
    cluster.finish().await;
    fake.shutdown().await;
}

/// Sends new customers' webhooks through `probe` for `window` while a service is down (`why`): none may be
/// acknowledged, and the node answers 503 so the platform retries.
async fn never_acknowledged_for(probe: &ShopifySender, window: Duration, why: &str) {
    let now = OffsetDateTime::now_utc();
    let mut answered = Vec::new();
    let until = tokio::time::Instant::now() + window;
    let mut i = 0u64;
    while tokio::time::Instant::now() < until {
        i += 1;
        let c = CustomerFixture::new(990_000 + i, Some(&format!("down{i}@example.org")), now);
        let status = probe.send(&Delivery::new("customers/create", c.to_bytes())).await;
        answered.push(status.map(|r| r.status).map_err(|e| e.to_string()));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(answered.iter().all(|s| *s != Ok(200)), "no webhook is acknowledged while {why}: {answered:?}");
    assert!(answered.contains(&Ok(503)), "the node answers 503 so the platform retries: {answered:?}");
}

/// A loopback TCP proxy in front of RabbitMQ whose connections the test cuts, as a broker restart or a
/// network failure would: while it is cut, open connections are closed and new ones are closed at once.
struct CuttableProxy {
    /// `amqp_url` with the proxy in place of the broker.
    url: String,
    cut: Arc<tokio::sync::watch::Sender<bool>>,
    task: tokio::task::JoinHandle<()>,
}

impl CuttableProxy {
    async fn start(amqp: &str) -> CuttableProxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let (target, url) = nudge_testkit::tls_front::fronted(amqp, "amqp", port);
        let (cut, _) = tokio::sync::watch::channel(false);
        let cut = Arc::new(cut);
        let switch = cut.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { return };
                if *switch.borrow() {
                    continue;
                }
                let target = target.clone();
                let mut rx = switch.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(&target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = rx.wait_for(|c| *c) => {}
                    }
                });
            }
        });
        CuttableProxy { url, cut, task }
    }

    fn set_cut(&self, cut: bool) {
        self.cut.send_replace(cut);
    }
}

impl Drop for CuttableProxy {
    fn drop(&mut self) {
        self.set_cut(true);
        self.task.abort();
    }
}

/// Three nodes acknowledging through RabbitMQ: mid-load the leader is killed with `kill -9` and every
/// connection to the broker is cut for 3 s. While cut, webhooks are answered 503 (never a 200 that could
/// be lost); afterwards every acknowledged delivery has one terminal state, no event reached Klaviyo
/// twice, and each customer's updates arrived in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn through_rabbitmq_a_node_killed_and_the_broker_cut_off_lose_nothing() {
    let Some(url) = nudge_store::conformance::postgres_test_url() else { return };
    let Some(amqp) = nudge_store::conformance::amqp_test_url() else { return };
    let proxy = CuttableProxy::start(&amqp).await;
    let fake = fake().await;
    let mut cluster = Cluster::start_on_bus(&url, &fake.base_url(), 3, &proxy.url).await;
    assert!(eventually(20, async || cluster.leader().await.is_some()).await, "a node leads");
    let senders = senders(&cluster);
    let probes = senders.clone();
    let customers = std::env::var("NUDGE_CLUSTER_CUSTOMERS").ok().and_then(|v| v.parse().ok()).unwrap_or(900);
    let checkouts = 60.min(customers);
    let killed = std::sync::Mutex::new(None);
    let (traces, _) = load(senders, customers, checkouts, async || {
        let victim = cluster.leader().await.unwrap_or(0);
        cluster.kill(victim);
        *killed.lock().unwrap() = Some(victim);
        proxy.set_cut(true);
        never_acknowledged_for(&probes[(victim + 1) % 3], Duration::from_secs(3), "the broker is cut off")
            .await;
        proxy.set_cut(false);
    })
    .await;
    let killed = killed.lock().unwrap().unwrap();
    cluster.start_node(killed);
    cluster.wait_healthy(&reqwest::Client::new(), killed).await;
    check_outcome(&cluster, &fake, &traces, customers, checkouts).await;
    let status = cluster.status(0);
    assert_eq!(status["bus"]["pending"], 0, "{status}");
    assert_eq!(status["bus"]["draining"], true, "{status}");
    cluster.finish().await;
    fake.shutdown().await;
}

/// Through RabbitMQ, with processing and delivery by partition (Redis): a webhook's partition, computed by
/// the node that acknowledges it, travels in its message, so the leader routes only what names nobody (the
/// abandonment timers); both nodes process their partitions, and everything lands once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn through_rabbitmq_by_partition_each_webhook_brings_its_partition() {
    let Some(url) = nudge_store::conformance::postgres_test_url() else { return };
    let Some(amqp) = nudge_store::conformance::amqp_test_url() else { return };
    let Some(redis) = redis_test_url() else { return };
    let fake = fake().await;
    let cluster = Cluster::start_on_bus_tls(&url, &fake.base_url(), 2, &amqp, None, Some(redis)).await;
    assert!(eventually(40, async || cluster.spread_over(&[0, 1]).await).await, "the partitions are shared");
    let status = cluster.status(0);
    assert_eq!(status["processing"].as_str(), Some("partitions"), "{status}");
    let customers = std::env::var("NUDGE_CLUSTER_CUSTOMERS").ok().and_then(|v| v.parse().ok()).unwrap_or(400);
    let checkouts = 40.min(customers);
    let (traces, _) = load(senders(&cluster), customers, checkouts, async || {}).await;
    check_outcome(&cluster, &fake, &traces, customers, checkouts).await;
    let mut routed = 0.0;
    for i in 0..2 {
        assert!(cluster.processed_on(i).await > 0.0, "node {i} processed no delivery\n{}", cluster.log(i));
        routed += cluster.counted_on(i, "nudge_deliveries_routed_total").await;
    }
    // Every webhook names its customer; only the abandonment timers (one a checkout at most) are routed.
    assert!(
        routed <= checkouts as f64,
        "the leader routed {routed} of {} webhooks' deliveries",
        traces.len()
    );
    cluster.finish().await;
    fake.shutdown().await;
}

/// Through RabbitMQ, PostgreSQL crashes mid-load and comes back 3 s later: webhooks are still acknowledged
/// meanwhile (they wait in the queue), and afterwards they and the load are all processed, once, in order.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn through_rabbitmq_webhooks_are_acknowledged_while_postgres_is_down() {
    if nudge_store::conformance::postgres_test_url().is_none() {
        return;
    }
    let Some(amqp) = nudge_store::conformance::amqp_test_url() else { return };
    let Some(own) = OwnPostgres::start() else { return };
    let fake = fake().await;
    let cluster = Cluster::start_on_bus(&own.url(), &fake.base_url(), 2, &amqp).await;
    assert!(eventually(20, async || cluster.leader().await.is_some()).await, "a node leads");
    let senders = senders(&cluster);
    let probe = senders[1].clone();
    let (customers, checkouts) = (400, 30);
    let during = std::sync::Mutex::new(Vec::new());
    let (mut traces, _) = load(senders, customers, checkouts, async || {
        own.crash();
        let now = OffsetDateTime::now_utc();
        for i in 0..20u64 {
            let c = CustomerFixture::new(995_000 + i, Some(&format!("queued{i}@example.org")), now)
                .name(Some("v1"), None);
            let r = probe.send(&Delivery::new("customers/create", c.to_bytes())).await.expect("an answer");
            assert_eq!(r.status, 200, "acknowledged into the queue while the database is down");
            during.lock().unwrap().push(trace_of(&r.body));
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
        own.run();
    })
    .await;
    traces.extend(during.into_inner().unwrap());
    check_outcome(&cluster, &fake, &traces, customers, checkouts).await;
    let queued = eventually(60, async || {
        (0..20).all(|i| fake.profile_by_email(&format!("queued{i}@example.org")).is_some())
    })
    .await;
    assert!(queued, "the webhooks acknowledged while the database was down reached Klaviyo");
    cluster.finish().await;
    fake.shutdown().await;
}
