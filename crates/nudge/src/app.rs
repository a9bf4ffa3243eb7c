//! The boot sequence, top to bottom: open the store, build destinations and scorers, start the workers and
//! the HTTP server. [`run`] is what `nudge serve`, `nudge demo` and the integration tests call; the one
//! place where backends and destinations are chosen.

use crate::config::{Config, StorageBackend};
use crate::outbox::OutboxWorker;
use crate::pipeline::{Pipeline, Scoring};
use crate::telemetry::{self, LatencySample};
use anyhow::Context;
use metrics_exporter_prometheus::PrometheusHandle;
use nudge_deliver::Destination;
use nudge_store::Store;
use nudge_store::postgres::{PgConfig, PgStore};
use nudge_store::sqlite::{BackgroundPriority, SqliteStore};
use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{Notify, watch};
use tokio::task::JoinHandle;

/// Counters the summary needs that are not in the store.
#[derive(Default)]
pub struct Counters {
    pub rejected: AtomicU64,
    pub duplicates: AtomicU64,
}

/// State shared by the HTTP handlers.
pub struct Shared {
    pub store: Arc<dyn Store>,
    /// The commerce sources, each served at `/webhooks/<path>`.
    pub sources: Arc<nudge_ingest::source::Registry>,
    /// Reads the public keys a source asks for when verifying.
    pub key_fetcher: crate::keys::KeyFetcher,
    pub max_body_bytes: usize,
    pub admin_from_any_address: bool,
    /// The console's session settings (`server.ui_secure_cookie`, `server.ui_session_idle`).
    pub ui: crate::ui::UiSettings,
    /// Wakes the processing worker right after a commit, so event→push latency is not a poll interval.
    pub wake_pipeline: Arc<Notify>,
    pub metrics: PrometheusHandle,
    pub ack_latency: Arc<LatencySample>,
    pub counters: Counters,
    /// The running flow set (`GET /api/flows`); the same one the pipeline decides with.
    pub flows: Arc<crate::pipeline::Flows>,
    /// The scorer the pipeline uses: approvals bring a profile sync up to date with it.
    pub scoring: Arc<Scoring>,
    /// The destinations the server started with: reloaded flows are checked against these.
    pub destinations: Vec<String>,
    /// The policy settings the server started with (`pipeline.*`), which a reload does not change.
    pub policy: nudge_policy::PolicyConfig,
    /// The configuration the server started with (what the analyst's endpoints read their settings from).
    pub config: Arc<Config>,
    /// Re-reads the configuration for a reload over the API (`POST /api/flows/reload`); set by `serve`.
    pub config_loader: std::sync::RwLock<Option<ConfigLoader>>,
    /// The Segment-compatible API's keys and limits (`sources.segment`).
    pub segment: Arc<crate::segment_api::SegmentApi>,
    /// Generated copy (`generate_copy`): the outbox worker and the approval filler share it.
    pub copy: Arc<crate::copy::CopyStage>,
    /// The outbox's destination workers (the console reads their circuits and 429s).
    pub outbox: Arc<OutboxWorker>,
    /// With `[bus] backend = "rabbitmq"`: webhooks are acknowledged once this bus has them.
    pub bus: Option<Arc<nudge_store::rabbitmq::AmqpBus>>,
    /// On a cluster that processes by partition (and acknowledges into PostgreSQL's log): the partition
    /// count, so that a webhook naming a customer is stored with its partition and the leader need not
    /// route it (one write of the row fewer).
    pub route_by: Option<u32>,
}

/// Reads the configuration again, as the server was started with it (file, environment, overrides).
pub type ConfigLoader = Arc<dyn Fn() -> Result<Config, crate::config::ConfigError> + Send + Sync>;

/// What a reload did.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Reloaded {
    /// The new set's version (content hash).
    pub version: String,
    pub flows: usize,
    /// Changes in the configuration a reload does not apply (they need a restart).
    pub notes: Vec<String>,
}

impl Shared {
    /// Replaces the running flows with those of `cfg`, checked against the destinations the server runs;
    /// an invalid set is refused (the error names the key) and the running one stays.
    pub fn reload_flows(&self, cfg: &Config) -> Result<Reloaded, crate::config::ConfigError> {
        let running: Vec<&str> = self.destinations.iter().map(String::as_str).collect();
        let set = cfg.flow_set_for(&running)?;
        let mut notes = Vec::new();
        let configured = cfg.destination_names();
        if configured.iter().any(|d| !running.contains(&d.as_str()))
            || running.iter().any(|d| !configured.iter().any(|c| c == d))
        {
            notes.push(format!(
                "destinations changed ({} configured, {} running): the running ones stay until a restart",
                configured.join(", "),
                running.join(", ")
            ));
        }
        let new_policy = cfg.policy();
        if new_policy.shadow != self.policy.shadow {
            notes.push(format!(
                "pipeline.shadow changed to {}: it applies after a restart (the running value is {})",
                new_policy.shadow, self.policy.shadow
            ));
        }
        let reloaded = Reloaded { version: set.version.clone(), flows: set.flows.len(), notes };
        // The flows were checked against the new prompts: the copy stage serves those from now on.
        self.copy.replace_prompts(cfg.prompts.clone());
        self.flows.replace(set);
        Ok(reloaded)
    }

    /// The configuration loader for API reloads.
    pub fn set_config_loader(&self, loader: ConfigLoader) {
        *self.config_loader.write().unwrap_or_else(|e| e.into_inner()) = Some(loader);
    }
}

/// A running nudge.
pub struct App {
    pub addr: SocketAddr,
    pub shared: Arc<Shared>,
    pub scoring: Arc<Scoring>,
    pub push_latency: Arc<LatencySample>,
    /// Event→processed latency: receipt to the processing commit (every pipeline of this node).
    pub processed_latency: Arc<LatencySample>,
    /// Event→push latency per destination (each destination's pushes alone), by destination name.
    pub destination_latency: BTreeMap<String, Arc<LatencySample>>,
    /// The running flow set; [`App::reload_flows`] replaces it.
    pub flows: Arc<crate::pipeline::Flows>,
    shutdown: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
    /// The runtime of the background workers; shut down with the app.
    work: Option<tokio::runtime::Runtime>,
}

/// The background workers (processing, outbox, timers, schedule flows, refits) run on a runtime of their own whose threads
/// run at a lower OS priority (`pipeline.worker_scheduling`, `pipeline.worker_nice`): when the CPU is
/// contended, the ack path wins and the durable backlog is worked off with what is left.
fn work_runtime(priority: BackgroundPriority) -> anyhow::Result<tokio::runtime::Runtime> {
    let threads = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2).min(4);
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(threads)
        .thread_name("nudge-work")
        .on_thread_start(move || priority.apply())
        .enable_all()
        .build()
        .context("starting the background worker runtime")
}

/// The one place a storage backend is chosen.
pub async fn open_store(cfg: &Config) -> anyhow::Result<Arc<dyn Store>> {
    Ok(open_backend(cfg).await?.0)
}

/// A node's id when `cluster.node_id` is not set: the host name and the port it listens on.
fn default_node_id(listener: &TcpListener) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "node".into());
    let port = listener.local_addr().map(|a| a.port()).unwrap_or(0);
    format!("{host}:{port}")
}

/// The store, and with the PostgreSQL backend the same store as the cluster's (leases, nodes).
pub async fn open_backend(cfg: &Config) -> anyhow::Result<(Arc<dyn Store>, Option<Arc<PgStore>>)> {
    match cfg.storage.backend {
        StorageBackend::Sqlite => {
            let store = SqliteStore::open_with_priority(
                &cfg.storage.data_dir,
                cfg.storage.durability,
                cfg.worker_priority(),
            )
            .with_context(|| format!("opening the store in {}", cfg.storage.data_dir.display()))?;
            Ok((Arc::new(store), None))
        }
        StorageBackend::Postgres => {
            let url = cfg.storage.postgres_url.clone().context("storage.postgres_url is not set")?;
            let mut pg = PgConfig::new(url);
            pg.schema = Some(cfg.storage.postgres_schema.clone());
            pg.max_connections = cfg.storage.postgres_pool;
            pg.ack_linger = cfg.storage.postgres_ack_linger.0;
            let store = PgStore::connect(&pg).await.with_context(|| {
                format!("opening the PostgreSQL store (schema {})", cfg.storage.postgres_schema)
            })?;
            let store = Arc::new(store);
            Ok((store.clone(), Some(store)))
        }
    }
}

/// States rewritten per store transaction by [`migrate_text_states`].
const STATE_MIGRATION_CHUNK: usize = 10_000;

/// Rewrites the customer states still stored as JSON text (by a version before the compact encoding) in
/// the compact encoding, a chunk at a time; returns how many were rewritten. Nothing to do reads nothing
/// (the store indexes its text rows). A state that does not decode is left as it is, with a warning.
/// Every reader decodes both forms, so this only saves space and decoding time, and may be cut short.
pub async fn migrate_text_states(store: &dyn Store) -> anyhow::Result<usize> {
    let mut after = None;
    let (mut rewritten, mut unreadable) = (0, 0);
    loop {
        let page = store.scan_text_states(after.clone(), STATE_MIGRATION_CHUNK).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.customer.clone());
        let n = page.len();
        let mut out = Vec::with_capacity(n);
        for mut s in page {
            match nudge_state::CustomerState::decode(&s.state) {
                Ok(state) => {
                    s.state = state.encode();
                    out.push(s);
                }
                Err(e) => {
                    unreadable += 1;
                    tracing::warn!(customer = %s.customer, error = %e, "a stored state is unreadable; left as it is");
                }
            }
        }
        rewritten += out.len();
        store.put_states(out).await?;
        if n < STATE_MIGRATION_CHUNK {
            break;
        }
    }
    if rewritten + unreadable > 0 {
        tracing::info!(
            rewritten,
            unreadable,
            "customer states stored as JSON rewritten in the compact encoding"
        );
    }
    Ok(rewritten)
}

/// The commerce sources, chosen in this one place: each line serves a source at `/webhooks/<path>`.
/// Shopify, BigCommerce and Adobe Commerce are always registered (without secrets or keys every delivery
/// is refused with 500, so the platform retries once the operator configures them).
///
/// Shopify's Pub/Sub and EventBridge intakes are served when configured; they store under the same name
/// as HTTPS. Customer enrichment is on when the Admin API is configured (see [`fetchers`]).
pub fn sources(cfg: &Config) -> anyhow::Result<nudge_ingest::source::Registry> {
    use nudge_ingest::shopify::{ShopifyEventBridgeSource, ShopifyPubSubSource, ShopifySource};
    let mut r = nudge_ingest::source::Registry::new();
    let shopify = cfg.sources.shopify.as_ref();
    let shopify_secrets = shopify.map(|s| s.secrets.clone()).unwrap_or_default();
    let enrich = shopify.is_some_and(|s| s.admin.is_some());
    r.register("shopify", Arc::new(ShopifySource::new(shopify_secrets).enrich_customers(enrich)));
    if let Some(p) = shopify.and_then(|s| s.pubsub.as_ref()) {
        let policy = p.policy().map_err(|e| anyhow::anyhow!("{}: {}", e.path, e.reason))?;
        r.register(
            "shopify/pubsub",
            Arc::new(ShopifyPubSubSource::new(Some(policy)).enrich_customers(enrich)),
        );
    }
    if let Some(e) = shopify.and_then(|s| s.eventbridge.as_ref()) {
        let key = Some((e.header.clone(), e.value.clone()));
        r.register(
            "shopify/eventbridge",
            Arc::new(ShopifyEventBridgeSource::new(key).enrich_customers(enrich)),
        );
    }
    // Registered even when not configured, like Shopify: a callback then gets 500 not_configured, so
    // BigCommerce retries it once the operator has configured the store.
    let bigcommerce = cfg.sources.bigcommerce.as_ref().map(|b| b.source()).unwrap_or_default();
    r.register("bigcommerce", Arc::new(nudge_ingest::bigcommerce::BigCommerceSource::new(bigcommerce)));
    // Adobe Commerce: the Webhooks module and Adobe I/O Events on one path. Unconfigured, it refuses with
    // 500 like Shopify without secrets.
    let adobe = match &cfg.sources.adobe_commerce {
        Some(a) => a.source().map_err(|e| anyhow::anyhow!("{}: {}", e.path, e.reason))?,
        None => {
            nudge_ingest::adobe::AdobeCommerceSource::new(nudge_ingest::adobe::DEFAULT_INSTANCE, None, None)
                .map_err(anyhow::Error::msg)?
        }
    };
    r.register("adobe-commerce", Arc::new(adobe));
    // Engagement back from the marketing tools; unconfigured, they refuse with 500 like the others.
    let klaviyo = cfg.sources.klaviyo_webhooks.as_ref().map(|k| k.source()).unwrap_or_default();
    r.register("klaviyo", Arc::new(nudge_ingest::klaviyo_webhooks::KlaviyoWebhookSource::new(klaviyo)));
    let currents = cfg.sources.braze_currents.as_ref().map(|b| b.source()).unwrap_or_default();
    r.register("braze-currents", Arc::new(nudge_ingest::braze_currents::BrazeCurrentsSource::new(currents)));
    // Yotpo and Smile.io: a URL token (`?token=`) instead of a signature; unconfigured, 500 like the rest.
    let yotpo = cfg.sources.yotpo.as_ref().map(|y| y.source()).unwrap_or_default();
    r.register("yotpo", Arc::new(nudge_ingest::yotpo::YotpoSource::new(yotpo)));
    let smile = cfg.sources.smile.as_ref().map(|s| s.source()).unwrap_or_default();
    r.register("smile", Arc::new(nudge_ingest::smile::SmileSource::new(smile)));
    // Segment messages arrive at `/v1/…` (`segment_api`), never at `/webhooks/`; the workers parse them.
    let segment = cfg.sources.segment.clone().unwrap_or_default();
    let namespace = segment.namespace().map_err(|e| anyhow::anyhow!("{e}"))?;
    r.register_parser(Arc::new(nudge_ingest::segment::SegmentSource::new(namespace, segment.currency)));
    Ok(r)
}

/// The one place fetchers are chosen: one per configured source that fetches, by source name
/// (BigCommerce's fetch-after-notify; Shopify Admin enrichment when `sources.shopify.admin` is configured).
pub fn fetchers(cfg: &Config) -> anyhow::Result<HashMap<String, Arc<dyn nudge_fetch::Fetcher>>> {
    let mut map: HashMap<String, Arc<dyn nudge_fetch::Fetcher>> = HashMap::new();
    if let Some(b) = &cfg.sources.bigcommerce {
        let fc =
            nudge_fetch::BigCommerceFetchConfig::new(&b.store_hash, &b.access_token).api_base(&b.api_base);
        let f = nudge_fetch::BigCommerceFetcher::new(fc).map_err(|e| anyhow::anyhow!(e))?;
        map.insert("bigcommerce".into(), Arc::new(f));
    }
    if let Some(a) = cfg.sources.shopify.as_ref().and_then(|s| s.admin.as_ref()) {
        let fetcher = nudge_fetch::ShopifyAdminFetcher::new(a.fetch_config())
            .map_err(|e| anyhow::anyhow!("sources.shopify.admin.{e}"))?;
        map.insert("shopify".into(), Arc::new(fetcher));
    }
    if let Some(y) = &cfg.sources.yotpo {
        map.insert(
            "yotpo".into(),
            Arc::new(nudge_fetch::YotpoFetcher::new(y.fetch_config()).map_err(anyhow::Error::msg)?),
        );
    }
    if let Some(s) = &cfg.sources.smile {
        map.insert(
            "smile".into(),
            Arc::new(nudge_fetch::SmileFetcher::new(s.fetch_config()).map_err(anyhow::Error::msg)?),
        );
    }
    Ok(map)
}

/// The one place destinations are chosen.
pub fn destinations(cfg: &Config) -> anyhow::Result<HashMap<String, Arc<dyn Destination>>> {
    destinations_sharing(cfg, None)
}

/// The rate limits shared by a cluster's nodes (`[cache] backend = "redis"`), keyed by deployment (the
/// PostgreSQL schema); `None` with the embedded cache.
pub async fn shared_limits(cfg: &Config) -> anyhow::Result<Option<nudge_deliver::SharedLimits>> {
    if cfg.cache.backend != crate::config::CacheBackend::Redis {
        return Ok(None);
    }
    let url = cfg.cache.redis_url.as_deref().context("cache.redis_url is not set")?;
    let prefix = format!("nudge:{}", cfg.storage.postgres_schema);
    let limits = nudge_deliver::SharedLimits::connect(url, &prefix)
        .await
        .map_err(|e| anyhow::anyhow!("cache.redis_url: {e}"))?;
    Ok(Some(limits))
}

/// The configured destinations, their request limits kept in `shared` when given (each destination's
/// limits under its own name, so every node sending to one account draws on one budget).
pub fn destinations_sharing(
    cfg: &Config,
    shared: Option<&nudge_deliver::SharedLimits>,
) -> anyhow::Result<HashMap<String, Arc<dyn Destination>>> {
    let mut map: HashMap<String, Arc<dyn Destination>> = HashMap::new();
    if let Some(k) = &cfg.destinations.klaviyo {
        let mut client =
            nudge_deliver::klaviyo::KlaviyoClient::new(k.clone()).context("building the Klaviyo client")?;
        if let Some(l) = shared {
            client = client.with_shared_limits(l, "klaviyo");
        }
        map.insert("klaviyo".into(), Arc::new(client));
    }
    for w in cfg.destinations.webhooks.iter().filter(|w| w.enabled) {
        let client = nudge_deliver::WebhookClient::new(w.clone())
            .with_context(|| format!("building the webhook client `{}`", w.name))?;
        map.insert(w.destination_name(), Arc::new(client));
    }
    if let Some(s) = &cfg.destinations.slack {
        let mut client = nudge_deliver::SlackClient::new(s.clone()).context("building the Slack client")?;
        if let Some(l) = shared {
            client = client.with_shared_limits(l, "slack");
        }
        map.insert("slack".into(), Arc::new(client));
    }
    if let Some(b) = &cfg.destinations.braze {
        let mut client = nudge_deliver::BrazeClient::new(b.clone()).context("building the Braze client")?;
        if let Some(l) = shared {
            client = client.with_shared_limits(l, "braze");
        }
        map.insert("braze".into(), Arc::new(client));
    }
    if let Some(h) = &cfg.destinations.hubspot {
        let mut client =
            nudge_deliver::HubSpotClient::new(h.clone()).context("building the HubSpot client")?;
        if let Some(l) = shared {
            client = client.with_shared_limits(l, "hubspot");
        }
        map.insert("hubspot".into(), Arc::new(client));
    }
    if let Some(m) = &cfg.destinations.marketo {
        let mut client =
            nudge_deliver::MarketoClient::new(m.clone()).context("building the Marketo client")?;
        if let Some(l) = shared {
            client = client.with_shared_limits(l, "marketo");
        }
        map.insert("marketo".into(), Arc::new(client));
    }
    let enabled = cfg.destination_names();
    map.retain(|name, _| enabled.contains(name));
    Ok(map)
}

/// The RabbitMQ bus of `[bus] backend = "rabbitmq"` (None otherwise), connected as `name`; the error
/// names the key to look at.
pub(crate) async fn connect_bus(
    cfg: &Config,
    name: &str,
) -> anyhow::Result<Option<Arc<nudge_store::rabbitmq::AmqpBus>>> {
    let (crate::config::BusBackend::Rabbitmq, Some(url)) = (&cfg.bus.backend, cfg.bus.amqp_url.as_deref())
    else {
        return Ok(None);
    };
    let tls = cfg.bus.tls()?;
    match nudge_store::rabbitmq::AmqpBus::connect_tls(url, tls, &cfg.bus.queue, name).await {
        Ok(bus) => Ok(Some(bus)),
        Err(e) => {
            let hint = if url.starts_with("amqps://") && e.to_string().contains("certificate") {
                " (TLS: is the broker's certificate signed by a CA in the system's trust store or in \
                 bus.amqp_ca_file, for the host in bus.amqp_url? does the broker want bus.amqp_cert_file?)"
            } else {
                ""
            };
            Err(anyhow::anyhow!(e)).with_context(|| {
                format!("connecting to RabbitMQ (bus.amqp_url), queue `{}`{hint}", cfg.bus.queue)
            })
        }
    }
}

/// Starts nudge on `listener` with `cfg`.
pub async fn run(cfg: Config, listener: TcpListener) -> anyhow::Result<App> {
    let (store, cluster) = open_backend(&cfg).await?;
    migrate_text_states(&*store).await.context("rewriting stored states in the compact encoding")?;
    crate::privacy::init_key(&cfg).context("the pseudonym key")?;
    let limits = shared_limits(&cfg).await?;
    let dests = destinations_sharing(&cfg, limits.as_ref())?;
    let erasing = dests.clone();
    let sources = Arc::new(sources(&cfg)?);
    let scoring = Arc::new(Scoring::new(nudge_scoring::RulesScorer { thresholds: cfg.segments.clone() }));
    crate::models_cli::load_active_scorer(&*store, &scoring, &cfg).await?;
    crate::decision_models::load(&*store, &scoring).await?;
    scoring.set_custom(cfg.scoring.load(cfg.privacy.key()).map_err(|e| anyhow::anyhow!("{e}"))?);
    let recs = Arc::new(crate::recs::Recs::new(cfg.recs.clone()));
    scoring.set_recs(recs.clone());
    let recs_active = recs.load(&*store).await.context("loading the recommendation model")?;

    // On a cluster, the partition count is the one the cluster first started with. With the rate limits
    // shared in Redis, every node delivers its share of the partitions; otherwise the leader delivers all.
    let partitions = match &cluster {
        Some(pg) => {
            let n = pg
                .partition_count(cfg.bus.partitions)
                .await
                .context("reading the cluster's partition count")?;
            if n != cfg.bus.partitions {
                anyhow::bail!(
                    "bus.partitions = {} but this cluster runs {n} partitions (fixed when it first started): \
                     set bus.partitions = {n}, or change the count with `nudge cluster repartition` while every node is stopped",
                    cfg.bus.partitions
                );
            }
            n
        }
        None => cfg.bus.partitions,
    };
    let spread = cluster.is_some() && cfg.cache.backend == crate::config::CacheBackend::Redis;
    let node_id = cfg.cluster.node_id.clone().unwrap_or_else(|| default_node_id(&listener));
    let bus = connect_bus(&cfg, &format!("nudge/{node_id}")).await?;
    if let Some(bus) = &bus {
        tracing::info!(queue = %cfg.bus.queue, "webhooks are acknowledged once RabbitMQ has them");
        // A webhook's partition, computed at its acknowledgement, travels with it through the queue.
        bus.route_by(spread.then_some(partitions));
    }

    let (shutdown, shutdown_rx) = watch::channel(false);
    let wake_pipeline = Arc::new(Notify::new());
    let wake_outbox = Arc::new(Notify::new());
    let flow_set = cfg.flow_set().map_err(|e| anyhow::anyhow!("invalid flows: {e}"))?;
    tracing::info!(version = %flow_set.version, flows = flow_set.flows.len(), "flows loaded");
    let flows = Arc::new(crate::pipeline::Flows::new(flow_set));
    let push_latency = Arc::new(LatencySample::new(100_000));
    let processed_latency = Arc::new(LatencySample::new(100_000));
    let delivery =
        crate::outbox::DeliverySettings { max_attempts: cfg.pipeline.max_attempts, ..Default::default() };
    let pushed_to: Vec<(String, Arc<dyn Destination>, crate::outbox::DeliverySettings)> = cfg
        .batch_push_destinations()
        .into_iter()
        .filter_map(|name| {
            let dest = dests.get(&name)?.clone();
            let settings = cfg.delivery_for(&name);
            Some((name, dest, settings))
        })
        .collect();
    // Generated copy: off the decision path, filled by the outbox worker before a send and by the
    // approval filler before a person looks; this month's token use is restored into the budget.
    let copy = Arc::new(crate::copy::CopyStage::from_config(store.clone(), &cfg).await?);
    let outbox = Arc::new(
        OutboxWorker::new(store.clone(), dests, &cfg.delivery_settings(), delivery, push_latency.clone())
            .with_copy(copy.clone()),
    );
    let destination_latency = outbox.destination_latency();
    let work = work_runtime(cfg.worker_priority())?;
    let parse =
        |expr: &Option<String>, key: &str| -> anyhow::Result<Option<nudge_policy::schedule::Schedule>> {
            expr.as_deref()
                .map(|e| {
                    nudge_policy::schedule::Schedule::parse(e).map_err(|err| anyhow::anyhow!("{key}: {err}"))
                })
                .transpose()
        };
    // Whether this node runs the batch work (always on the embedded store; the leader's on a cluster).
    let leading = Arc::new(std::sync::atomic::AtomicBool::new(cluster.is_none()));
    let workers = {
        let (p_store, p_scoring, p_flows, p_sources, p_latency) =
            (store.clone(), scoring.clone(), flows.clone(), sources.clone(), processed_latency.clone());
        let (policy, abandon_after, batch_size, browse_retention) = (
            cfg.policy(),
            cfg.pipeline.checkout_abandon_after.0,
            cfg.pipeline.batch_size,
            cfg.pipeline.browse_retention.0,
        );
        Arc::new(crate::workers::Workers {
            runtime: work.handle().clone(),
            store: store.clone(),
            make_pipeline: Box::new(move || Pipeline {
                store: p_store.clone(),
                scoring: p_scoring.clone(),
                policy: policy.clone(),
                flows: p_flows.clone(),
                abandon_after,
                batch_size,
                approval_counts: Default::default(),
                sources: p_sources.clone(),
                browse_retention,
                offers: Default::default(),
                share: None,
                processed_latency: Some(p_latency.clone()),
            }),
            outbox: outbox.clone(),
            copy: copy.clone(),
            flows: flows.clone(),
            scoring: scoring.clone(),
            fetchers: fetchers(&cfg)?,
            max_attempts: cfg.pipeline.max_attempts,
            timer_tick: cfg.pipeline.timer_tick.0,
            erasing,
            data_dir: cfg.storage.data_dir.clone(),
            segment_refresh: parse(
                &cfg.pipeline.segment_refresh_schedule,
                "pipeline.segment_refresh_schedule",
            )?,
            batch_push: parse(&cfg.pipeline.batch_push_schedule, "pipeline.batch_push_schedule")?
                .map(|s| (s, cfg.policy(), pushed_to)),
            digest: parse(&cfg.pipeline.digest_schedule, "pipeline.digest_schedule")?
                .map(|s| (s, cfg.clone())),
            dedupe_retention: cfg.storage.dedupe_retention.0,
            retention: (cfg.storage.retention.map(|d| d.0), cfg.storage.audit_retention.map(|d| d.0)),
            wake_pipeline: wake_pipeline.clone(),
            wake_outbox: wake_outbox.clone(),
            leading: leading.clone(),
            spread_over: cluster.clone().filter(|_| spread),
            partitions,
            wake_partitions: Arc::new(Notify::new()),
        })
    };
    // A digest's settings are checked at boot, not when a node first leads.
    if cfg.pipeline.digest_schedule.is_some() {
        crate::digest::Digester::from_config(store.clone(), &cfg, true)?;
    }
    let mut tasks = match &cluster {
        None => workers.spawn(shutdown_rx.clone())?,
        Some(pg) => {
            let node = nudge_store::postgres::cluster::NodeRecord {
                node_id: node_id.clone(),
                address: listener.local_addr().map(|a| a.to_string()).unwrap_or_default(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                started_at_ms: crate::outbox::now_ms(),
                seen_at_ms: crate::outbox::now_ms(),
                leader: false,
                schema_version: nudge_store::postgres::schema::SCHEMA_VERSION,
            };
            tracing::info!(node = %node.node_id, "joining the cluster on PostgreSQL");
            let mut tasks = Vec::new();
            if spread {
                tasks.push(work.spawn(crate::workers::deliver_share(
                    pg.clone(),
                    outbox.clone(),
                    wake_outbox.clone(),
                    node.node_id.clone(),
                    partitions,
                    Some(workers.clone()),
                    shutdown_rx.clone(),
                )));
            }
            tasks.push(tokio::spawn(crate::workers::lead(
                pg.clone(),
                workers.clone(),
                node,
                shutdown_rx.clone(),
            )));
            tasks
        }
    };

    // Every node drains the bus into the log; the broker lets one at a time (single active consumer).
    if let Some(bus) = &bus {
        let wake = wake_pipeline.clone();
        let on_batch = move |d: nudge_store::rabbitmq::Drained| {
            if d.committed > 0 {
                wake.notify_one();
            }
            telemetry::bus_drained(d);
        };
        tasks.push(tokio::spawn(bus.clone().drain(store.clone(), on_batch, shutdown_rx.clone())));
        let (bus, mut rx) = (bus.clone(), shutdown_rx.clone());
        tasks.push(tokio::spawn(async move {
            loop {
                if let Ok(d) = bus.depth().await {
                    telemetry::bus_backlog(d.ready);
                }
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(10)) => {}
                    _ = rx.changed() => return,
                }
            }
        }));
    }

    // The active model version is reloaded when it changes (`nudge models activate` while serving), and
    // the models are refitted from the store's history every `pipeline.refit_every`.
    {
        let store = store.clone();
        let scoring = scoring.clone();
        let cfg = cfg.clone();
        let mut rx = shutdown_rx.clone();
        let leading = leading.clone();
        tasks.push(work.spawn(async move {
            let mut active = store.active_model_version().await.ok().flatten().map(|v| v.id);
            let mut decision_active = crate::decision_models::active_ids(&*store).await.ok();
            let mut recs_active = recs_active;
            let recs = recs.clone();
            // Every stored customer's list, in the background (boot does not wait for it).
            if recs_active.is_some() {
                crate::recs::precompute_in_background(store.clone(), scoring.clone());
            }
            // The adopted segments' membership, reloaded when a refresh or an adoption changes it.
            let mut segments_seen = crate::segment_adoption::fingerprint(&*store).await.ok();
            if let Err(e) = crate::segment_adoption::load_into(&*store, &scoring).await {
                tracing::error!(error = %format!("{e:#}"), "loading the adopted segments failed");
            }
            let refit_every = cfg.pipeline.refit_every.0;
            let mut next_refit = (!refit_every.is_zero()).then(|| tokio::time::Instant::now() + refit_every);
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_secs(10)) => {}
                    _ = rx.changed() => return,
                }
                // A refit is a batch run: on a cluster, only the leader does it (every node reloads it).
                if next_refit.is_some_and(|t| tokio::time::Instant::now() >= t)
                    && leading.load(std::sync::atomic::Ordering::Relaxed)
                {
                    next_refit = Some(tokio::time::Instant::now() + refit_every);
                    let outcome = match crate::models_cli::refit_from_store(&*store, &cfg).await {
                        Ok(Some(o)) if o.activated => {
                            tracing::info!(version = %o.version, "scheduled refit activated a new model version");
                            "activated"
                        }
                        Ok(Some(o)) => {
                            tracing::warn!(version = %o.version, reason = %o.reason, "scheduled refit saved a version it did not activate");
                            "not_activated"
                        }
                        Ok(None) => {
                            tracing::info!("scheduled refit: nothing new to fit");
                            "skipped"
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "scheduled refit failed");
                            "failed"
                        }
                    };
                    crate::telemetry::model_refit(outcome);
                }
                if let Ok((pending_deliveries, _)) = store.backlog().await {
                    crate::telemetry::ingest_backlog(pending_deliveries);
                }
                let now_active = store.active_model_version().await.ok().flatten().map(|v| v.id);
                if now_active != active {
                    active = now_active;
                    if let Err(e) = crate::models_cli::load_active_scorer(&*store, &scoring, &cfg).await {
                        tracing::error!(error = %e, "loading the active model version failed; rules fallback");
                        scoring.set_primary(None);
                    }
                }
                let now_recs = store
                    .active_model_version_of(nudge_decide::families::RECS)
                    .await
                    .ok()
                    .map(|v| v.map(|v| v.id));
                if let Some(now_recs) = now_recs
                    && now_recs != recs_active
                {
                    match recs.load(&*store).await {
                        Ok(v) => {
                            tracing::info!(version = ?v, "serving the active recommendation model version");
                            recs_active = now_recs;
                            if recs_active.is_some() {
                                crate::recs::precompute_in_background(store.clone(), scoring.clone());
                            }
                        }
                        Err(e) => tracing::error!(error = %format!("{e:#}"), "loading the recommendation model failed"),
                    }
                }
                let now_segments = crate::segment_adoption::fingerprint(&*store).await.ok();
                if now_segments.is_some() && now_segments != segments_seen {
                    segments_seen = now_segments;
                    if let Err(e) = crate::segment_adoption::load_into(&*store, &scoring).await {
                        tracing::error!(error = %format!("{e:#}"), "loading the adopted segments failed");
                    }
                }
                let now_decision = crate::decision_models::active_ids(&*store).await.ok();
                if now_decision.is_some() && now_decision != decision_active {
                    decision_active = now_decision;
                    if let Err(e) = crate::decision_models::load(&*store, &scoring).await {
                        tracing::error!(error = %e, "loading the active decision models failed");
                    }
                }
            }
        }));
    }

    let shared = Arc::new(Shared {
        store,
        sources: sources.clone(),
        key_fetcher: crate::keys::KeyFetcher::new(),
        max_body_bytes: cfg.server.max_body_bytes,
        admin_from_any_address: cfg.server.admin_from_any_address,
        ui: crate::ui::UiSettings {
            secure_cookie: cfg.server.ui_secure_cookie,
            session_idle: cfg.server.ui_session_idle.0,
        },
        wake_pipeline,
        metrics: telemetry::metrics_handle(),
        ack_latency: Arc::new(LatencySample::new(100_000)),
        counters: Counters::default(),
        flows: flows.clone(),
        scoring: scoring.clone(),
        destinations: cfg.destination_names(),
        policy: cfg.policy(),
        config: Arc::new(cfg.clone()),
        config_loader: Default::default(),
        segment: crate::segment_api::SegmentApi::new(cfg.sources.segment.as_ref()),
        copy,
        outbox,
        route_by: spread.then_some(partitions),
        bus,
    });
    let addr = listener.local_addr()?;
    let router = crate::http::router(shared.clone());
    let mut rx = shutdown_rx;
    tasks.push(tokio::spawn(async move {
        let serve = axum::serve(listener, router.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(async move {
                let _ = rx.wait_for(|s| *s).await;
            });
        if let Err(e) = serve.await {
            tracing::error!(error = %e, "HTTP server failed");
        }
    }));
    tracing::info!(%addr, "nudge is listening");
    Ok(App {
        addr,
        shared,
        scoring,
        push_latency,
        processed_latency,
        destination_latency,
        flows,
        shutdown,
        tasks,
        work: Some(work),
    })
}

impl App {
    /// Replaces the running flows with those of `cfg`, when they are valid; an invalid set is refused and
    /// the running one stays. Returns the new set's version.
    pub fn reload_flows(&self, cfg: &Config) -> Result<Reloaded, crate::config::ConfigError> {
        self.shared.reload_flows(cfg)
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.shared.store
    }

    /// Waits until nothing is pending (deliveries, outbox) or `timeout` passes; true when idle.
    /// Serves the active `recs` version at once (what the server does by itself within ten seconds of an
    /// activation) and precomputes every stored customer's list; returns how many were computed.
    pub async fn reload_recs(&self) -> anyhow::Result<usize> {
        let recs = self.scoring.recs().context("recommendations are not being served")?;
        recs.load(&*self.shared.store).await?;
        crate::recs::precompute(&*self.shared.store, &self.scoring).await
    }

    /// Waits until nothing is pending (deliveries, fetch jobs, outbox items) or `timeout` passes; true when
    /// idle. Looks often at first and then every 200 ms, so a long drain does not load the store with
    /// its own polling.
    pub async fn wait_idle(&self, timeout: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut every = Duration::from_millis(10);
        loop {
            if let Ok((0, 0)) = self.shared.store.backlog().await {
                return true;
            }
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(every).await;
            every = (every * 2).min(Duration::from_millis(200));
        }
    }

    /// Stops the server and the workers and waits for them.
    pub async fn shutdown(mut self) {
        let _ = self.shutdown.send(true);
        for t in std::mem::take(&mut self.tasks) {
            let _ = t.await;
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.shutdown.send(true);
        if let Some(rt) = self.work.take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use nudge_model::CustomerId;
    use nudge_state::CustomerState;
    use nudge_store::StoredState;
    use nudge_store::prelude::*;
    use nudge_store::sqlite::Durability;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn states_stored_as_json_are_rewritten_compact_once() {
        let dir = tempfile::tempdir().unwrap();
        let states: Vec<CustomerState> = (1..=5)
            .map(|i| {
                let mut s = CustomerState::new(format!("shopify:{i}").parse().unwrap());
                s.email = Some(format!("c{i}@example.org"));
                s.revision = i;
                s
            })
            .collect();
        {
            // One state written now (compact), then the others as an earlier version wrote them: JSON text.
            let store = SqliteStore::open(dir.path(), Durability::Normal).unwrap();
            let s = &states[4];
            store
                .put_states(vec![StoredState {
                    customer: s.customer.clone(),
                    email: s.email.clone(),
                    state: s.encode(),
                }])
                .await
                .unwrap();
        }
        {
            let c = rusqlite::Connection::open(dir.path().join("nudge.db")).unwrap();
            c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
            for s in &states[..4] {
                c.execute(
                    "INSERT INTO customers (customer_id, email, state, updated_at) VALUES (?1, ?2, ?3, 0)",
                    rusqlite::params![s.customer.to_string(), s.email, serde_json::to_string(s).unwrap()],
                )
                .unwrap();
            }
        }
        let store = SqliteStore::open(dir.path(), Durability::Normal).unwrap();
        // Mixed rows read fine before the rewrite.
        let ids: Vec<CustomerId> = states.iter().map(|s| s.customer.clone()).collect();
        let read = |rows: Vec<StoredState>| -> Vec<CustomerState> {
            rows.iter().map(|r| CustomerState::decode(&r.state).unwrap()).collect()
        };
        assert_eq!(read(store.load_states(&ids).await.unwrap()), states);
        assert_eq!(store.scan_text_states(None, 10).await.unwrap().len(), 4);

        assert_eq!(migrate_text_states(&store).await.unwrap(), 4);
        assert!(store.scan_text_states(None, 10).await.unwrap().is_empty());
        let rows = store.scan_states(None, 10).await.unwrap();
        assert!(rows.iter().all(|r| !nudge_state::compact::is_legacy_json(&r.state)), "all compact now");
        assert_eq!(read(rows), states, "the same states");
        assert_eq!(migrate_text_states(&store).await.unwrap(), 0, "once");
    }
}
