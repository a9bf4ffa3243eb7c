//! Configuration: one TOML file (every key documented in `nudge.example.toml`), overlaid by environment
//! variables, with `${ENV_VAR}` expansion for secrets, validated before anything starts.
//!
//! Environment overrides: `NUDGE__<SECTION>__<KEY>=value` sets `section.key` (double underscores separate
//! path segments; the value is read as TOML when it parses, e.g. `["a","b"]` or `true`, else as text).
//! Every error names the key path and the reason; the CLI exits with code 2 on any of them.

use nudge_deliver::klaviyo::KlaviyoConfig;
use nudge_deliver::{SlackConfig, WebhookConfig};
use nudge_store::sqlite::Durability;
use serde::{Deserialize, Deserializer};
use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub storage: StorageConfig,
    /// This node in a cluster of nodes sharing a PostgreSQL store (`[cluster]`).
    #[serde(default)]
    pub cluster: ClusterConfig,
    /// Where acknowledged deliveries wait, and how delivery is partitioned among the nodes (`[bus]`).
    #[serde(default)]
    pub bus: BusConfig,
    /// What the nodes share that needs no durability: destination rate limits (`[cache]`).
    #[serde(default)]
    pub cache: CacheConfig,
    #[serde(default)]
    pub sources: SourcesConfig,
    #[serde(default)]
    pub destinations: DestinationsConfig,
    /// The delivery engine's keys of each destination table (`enabled`, `max_in_flight`, `max_attempts`,
    /// `dead_letter_after`, `linger`), by destination name; taken out of the tables before the connectors
    /// read theirs.
    #[serde(skip)]
    pub delivery: BTreeMap<String, DeliveryKeys>,
    #[serde(default)]
    pub pipeline: PipelineConfig,
    #[serde(default)]
    pub segments: nudge_scoring::SegmentThresholds,
    #[serde(default)]
    pub models: ModelsConfig,
    /// The flows (`[[flows]]`). Absent: the two built-in flows (profile sync on every state change, the
    /// abandoned-checkout trigger event) toward every configured destination. Present, even empty: exactly
    /// these.
    #[serde(default)]
    pub flows: Option<Vec<nudge_policy::flows::FlowSpec>>,
    #[serde(default)]
    pub privacy: PrivacyConfig,
    /// Product recommendations: how many, from how much history, and the merchandiser rules (`[recs]`).
    #[serde(default)]
    pub recs: nudge_decide::recs::RecsConfig,
    /// The OpenAI-compatible Chat Completions endpoint copy is generated with (`[llm]`); absent: no
    /// generation, every `generate_copy` action uses its prompt's fallback copy.
    #[serde(default)]
    pub llm: Option<nudge_llm::LlmConfig>,
    /// Versioned prompt templates (`[[prompts]]`), by name and version.
    #[serde(default)]
    pub prompts: Vec<nudge_llm::PromptSpec>,
    /// The user's own scoring models (`[[scoring.custom]]`).
    #[serde(default)]
    pub scoring: ScoringConfig,
    /// Campaign digests (`[digest]`): where `pipeline.digest_schedule` and `nudge digest send` send them.
    #[serde(default)]
    pub digest: Option<crate::digest::DigestConfig>,
}

/// `[scoring]`: the user's own models beside the built-in ones.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScoringConfig {
    /// Each an ONNX file run in process or an external HTTP scorer (`[[scoring.custom]]`).
    #[serde(default)]
    pub custom: Vec<nudge_custom::CustomModelSpec>,
}

impl ScoringConfig {
    /// Loads the models (ONNX files relative to the working directory); the error names the key path.
    pub fn load(
        &self,
        key: Option<nudge_model::PseudonymKey>,
    ) -> Result<nudge_custom::CustomModels, ConfigError> {
        nudge_custom::CustomModels::load(&self.custom, Path::new("."), key)
            .map_err(|(i, e)| err(format!("scoring.custom[{i}].{}", e.key), e.reason))
    }

    /// The checks that need no network: every table, the inputs' expressions, the ONNX files (read and
    /// checked against the mapping) and the pseudonym key an HTTP scorer needs.
    fn check(&self, has_key: bool) -> Result<(), ConfigError> {
        let at = |i: usize, e: nudge_custom::config::ConfigError| {
            err(format!("scoring.custom[{i}].{}", e.key), e.reason)
        };
        nudge_custom::check_all(&self.custom).map_err(|(i, e)| at(i, e))?;
        for (i, s) in self.custom.iter().enumerate() {
            nudge_custom::FeatureMap::compile(&s.inputs).map_err(|e| at(i, e))?;
            if s.http.is_some() && !has_key {
                return Err(err(
                    format!("scoring.custom[{i}].http"),
                    "an HTTP scorer needs `privacy.pseudonym_key` (customers are sent as pseudonyms)",
                ));
            }
            if s.onnx.is_some() {
                nudge_custom::CustomModel::load(s, Path::new(".")).map_err(|e| at(i, e))?;
            }
        }
        Ok(())
    }
}

/// Personal data that leaves nudge (`[privacy]`).
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrivacyConfig {
    /// The key of the pseudonyms (HMAC-SHA256) that replace emails, phone numbers, names and addresses in
    /// whatever goes to a model, an external scorer or an LLM; at least 32 bytes. A secret: write
    /// `"${NUDGE_PSEUDONYM_KEY}"`.
    pub pseudonym_key: Option<String>,
}

impl PrivacyConfig {
    /// The pseudonym key, when one is configured.
    pub fn key(&self) -> Option<nudge_model::PseudonymKey> {
        self.pseudonym_key.as_ref().map(|k| nudge_model::PseudonymKey::from_bytes(k.as_bytes()))
    }
}

impl fmt::Debug for PrivacyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivacyConfig")
            .field("pseudonym_key", &self.pseudonym_key.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// How a fit chooses and refuses model families, and how the scheduled refit validates itself.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ModelsConfig {
    /// A family whose expected cumulative repeat purchases deviate from the actual ones inside the
    /// calibration period by more than this share (0.10 = 10 %) is misfit.
    pub max_tracking_deviation: f64,
    /// A family whose frequency-histogram chi-square is significant and above this multiple of the best
    /// family's is misfit.
    pub max_chi_square_ratio: f64,
    /// The scheduled refit holds out this much of the newest history to validate the new version and to
    /// compare it with the active one (`0s`: no holdout; selection and misfit checks only).
    pub refit_holdout: HumanDuration,
    /// The scheduled refit does not activate a version whose churn lift quality on the holdout is lower
    /// than the active version's on the same holdout by more than this (0.05 = 5 points).
    pub refit_max_quality_drop: f64,
    /// The store's offset from UTC in minutes (e.g. 60 for UTC+1), which the send-time model assumes for
    /// customers whose own time zone no event told; unset: UTC.
    pub store_utc_offset_minutes: Option<i16>,
}

impl Default for ModelsConfig {
    fn default() -> Self {
        let rules = nudge_models::MisfitRules::default();
        ModelsConfig {
            max_tracking_deviation: rules.max_tracking_deviation,
            max_chi_square_ratio: rules.max_chi_square_ratio,
            refit_holdout: HumanDuration(Duration::from_secs(91 * 86_400)),
            refit_max_quality_drop: 0.05,
            store_utc_offset_minutes: None,
        }
    }
}

impl ModelsConfig {
    /// The misfit rules these settings give.
    pub fn misfit_rules(&self) -> nudge_models::MisfitRules {
        nudge_models::MisfitRules {
            max_tracking_deviation: self.max_tracking_deviation,
            max_chi_square_ratio: self.max_chi_square_ratio,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ServerConfig {
    /// Address of the webhook and admin listener.
    pub listen: SocketAddr,
    /// Largest accepted request body; larger ones get 413.
    pub max_body_bytes: usize,
    /// Serve `/api/*` (audit, admin) to non-loopback peers too. Every `/api` request needs a token with a
    /// role either way (`nudge tokens create`).
    pub admin_from_any_address: bool,
    /// Mark the console's session cookie `Secure` (sent over HTTPS only; browsers also send it to
    /// `http://localhost` and `127.0.0.1`). Turn off only to sign in to the console over plain HTTP from
    /// another host.
    pub ui_secure_cookie: bool,
    /// A console session unused for this long is over: the next request goes to the sign-in page.
    pub ui_session_idle: HumanDuration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            max_body_bytes: 5 * 1024 * 1024,
            admin_from_any_address: false,
            ui_secure_cookie: true,
            ui_session_idle: HumanDuration(Duration::from_secs(8 * 3600)),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StorageConfig {
    /// `sqlite` (the embedded default: files in `data_dir`) or `postgres` (a database several nodes share).
    pub backend: StorageBackend,
    /// The PostgreSQL database (`postgres://user:password@host:port/database`, `?sslmode=require` for TLS);
    /// required with `backend = "postgres"`. `${VAR}` expansion keeps the password out of the file.
    pub postgres_url: Option<String>,
    /// The schema nudge's tables live in (created when missing), so deployments can share a database.
    pub postgres_schema: String,
    /// Connections per node in the PostgreSQL pool.
    pub postgres_pool: u32,
    /// How long a committer of webhook acknowledgements that finds only a few waiting waits for more, so
    /// they share a transaction (PostgreSQL); at most 50ms, `"0ms"` commits at once.
    pub postgres_ack_linger: HumanDuration,
    /// The embedded SQLite databases (`ingest.db`, the log of deliveries; `nudge.db`, the rest) live here;
    /// with PostgreSQL, only node-local files (the pid file, exports, the pseudonym key when not configured).
    pub data_dir: PathBuf,
    /// `full` (fsync per group commit) or `normal` (survives a process crash, not a power cut).
    pub durability: Durability,
    /// How long webhook and event ids are remembered for dedupe (at least 7 days).
    pub dedupe_retention: HumanDuration,
    /// How long finished work is kept: processed deliveries (the bodies as received) and the pushes of
    /// finished traces. Pending work, quarantined deliveries and dead letters stay until they are dealt
    /// with. At least `dedupe_retention`; unset (the default): kept for ever.
    pub retention: Option<HumanDuration>,
    /// How long the audit trail (and each trace's terminal state) is kept; at least a day, and at least
    /// `retention` when both are set. Unset (the default): kept for ever.
    pub audit_retention: Option<HumanDuration>,
}

/// A node of a cluster (nodes sharing `storage.backend = "postgres"`).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClusterConfig {
    /// The node's name in `nudge cluster status` (unique in the cluster). Default: the host name and the
    /// port the node listens on.
    pub node_id: Option<String>,
}

/// `[bus]`: the delivery log and the delivery partitions.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BusConfig {
    /// `store`: acknowledged deliveries wait in the store's own log (the embedded log, or PostgreSQL's
    /// table, committed before the acknowledgement). `rabbitmq` (with `storage.backend = "postgres"`): a
    /// webhook is acknowledged once a RabbitMQ quorum queue has it (publisher confirm), and a drain moves
    /// the queue into PostgreSQL's log, where it is deduplicated and processed.
    #[serde(default)]
    pub backend: BusBackend,
    /// How many partitions the customers are spread over for delivery (1 to 4096). Fixed when a cluster
    /// first starts; `nudge cluster repartition` changes it while every node is stopped.
    #[serde(default = "default_partitions")]
    pub partitions: u32,
    /// The RabbitMQ broker of `backend = "rabbitmq"`: `amqp://user:password@host:port/vhost` (the vhost
    /// URL-encoded: `%2f` for `/`). Required with it; set with `backend = "store"` it is refused as unused.
    #[serde(default)]
    pub amqp_url: Option<String>,
    /// The quorum queue of `backend = "rabbitmq"` (declared at start if missing). Every node of a
    /// deployment uses the same one; deployments sharing a broker need their own.
    #[serde(default = "default_queue")]
    pub queue: String,
    /// With an `amqps://` URL: a PEM file of CA certificates trusted, besides the system's, to sign the
    /// broker's certificate (a private CA). Relative paths are read from the working directory.
    #[serde(default)]
    pub amqp_ca_file: Option<PathBuf>,
    /// With an `amqps://` URL, for a broker that verifies its clients: this node's certificate chain (PEM),
    /// with `amqp_key_file` (its unencrypted PEM private key). Set both or neither.
    #[serde(default)]
    pub amqp_cert_file: Option<PathBuf>,
    #[serde(default)]
    pub amqp_key_file: Option<PathBuf>,
}

impl BusConfig {
    /// The TLS settings of an `amqps://` broker, read from their files and checked; the error names the key.
    pub fn tls(&self) -> Result<nudge_store::rabbitmq::BusTls, ConfigError> {
        let read = |key: &str, path: &Path| {
            std::fs::read_to_string(path)
                .map_err(|e| err(format!("bus.{key}"), format!("cannot read {}: {e}", path.display())))
        };
        let ca_pem = self.amqp_ca_file.as_deref().map(|p| read("amqp_ca_file", p)).transpose()?;
        let client = match (&self.amqp_cert_file, &self.amqp_key_file) {
            (Some(c), Some(k)) => Some((read("amqp_cert_file", c)?, read("amqp_key_file", k)?)),
            (None, None) => None,
            (Some(_), None) => return Err(err("bus.amqp_key_file", "is required with bus.amqp_cert_file")),
            (None, Some(_)) => return Err(err("bus.amqp_cert_file", "is required with bus.amqp_key_file")),
        };
        let tls = nudge_store::rabbitmq::BusTls { ca_pem, client };
        tls.check().map_err(|(which, why)| {
            let (key, path) = match which {
                "ca" => ("amqp_ca_file", &self.amqp_ca_file),
                "cert" => ("amqp_cert_file", &self.amqp_cert_file),
                _ => ("amqp_key_file", &self.amqp_key_file),
            };
            let shown = path.as_deref().map(|p| p.display().to_string()).unwrap_or_default();
            err(format!("bus.{key}"), format!("{shown} {why}"))
        })?;
        Ok(tls)
    }
}

impl Default for BusConfig {
    fn default() -> Self {
        BusConfig {
            backend: BusBackend::Store,
            partitions: default_partitions(),
            amqp_url: None,
            queue: default_queue(),
            amqp_ca_file: None,
            amqp_cert_file: None,
            amqp_key_file: None,
        }
    }
}

fn default_queue() -> String {
    nudge_store::rabbitmq::DEFAULT_QUEUE.to_string()
}

fn default_partitions() -> u32 {
    32
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BusBackend {
    #[default]
    Store,
    Rabbitmq,
}

/// `[cache]`: state shared by the nodes without durability.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// `embedded` (each node keeps its own) or `redis` (shared: destination rate limits hold across the
    /// nodes, so the nodes can all deliver).
    #[serde(default)]
    pub backend: CacheBackend,
    /// `redis://host:port[/db]` (`rediss://` for TLS); required with `backend = "redis"`.
    pub redis_url: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CacheBackend {
    #[default]
    Embedded,
    Redis,
}

/// Where nudge's durable data lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    Sqlite,
    Postgres,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            backend: StorageBackend::Sqlite,
            postgres_url: None,
            postgres_schema: "public".into(),
            postgres_pool: 16,
            postgres_ack_linger: HumanDuration(nudge_store::postgres::DEFAULT_ACK_LINGER),
            data_dir: PathBuf::from("./nudge-data"),
            durability: Durability::Full,
            dedupe_retention: HumanDuration(Duration::from_secs(14 * 86_400)),
            retention: None,
            audit_retention: None,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SourcesConfig {
    pub shopify: Option<ShopifyConfig>,
    /// One BigCommerce store, served at `POST /webhooks/bigcommerce`.
    pub bigcommerce: Option<BigCommerceSourceConfig>,
    /// Adobe Commerce (`/webhooks/adobe-commerce`): the Webhooks module and Adobe I/O Events.
    pub adobe_commerce: Option<AdobeCommerceConfig>,
    /// Klaviyo system webhooks (`/webhooks/klaviyo`): email engagement and Klaviyo Reviews back from Klaviyo.
    pub klaviyo_webhooks: Option<KlaviyoWebhooksConfig>,
    /// Braze Currents' custom HTTP connector (`/webhooks/braze-currents`): email engagement back from Braze.
    pub braze_currents: Option<BrazeCurrentsSourceConfig>,
    /// Yotpo reviews, served at `POST /webhooks/yotpo?token=<url_token>`.
    pub yotpo: Option<YotpoSourceConfig>,
    /// Smile.io loyalty, served at `POST /webhooks/smile?token=<url_token>`.
    pub smile: Option<SmileSourceConfig>,
    /// The Segment-compatible storefront API (`POST /v1/batch`, `/v1/track`, …).
    pub segment: Option<SegmentSourceConfig>,
}

/// `[sources.klaviyo_webhooks]`: the system webhook's `secret_key` (one, or a list while rotating) and the
/// largest distance allowed between `Klaviyo-Timestamp` and now.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KlaviyoWebhooksConfig {
    #[serde(deserialize_with = "one_or_many")]
    pub secret: Vec<String>,
    #[serde(default = "default_klaviyo_max_skew")]
    pub max_skew: HumanDuration,
}

fn default_klaviyo_max_skew() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}

fn one_or_many<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<String>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum OneOrMany {
        One(String),
        Many(Vec<String>),
    }
    Ok(match OneOrMany::deserialize(d)? {
        OneOrMany::One(s) => vec![s],
        OneOrMany::Many(v) => v,
    })
}

impl fmt::Debug for KlaviyoWebhooksConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KlaviyoWebhooksConfig")
            .field("secret", &format!("[{} redacted]", self.secret.len()))
            .field("max_skew", &self.max_skew)
            .finish()
    }
}

/// `[sources.segment]`: the Segment-compatible API that storefront analytics SDKs send to.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SegmentSourceConfig {
    /// Accepted write keys (several while one is rotated out). None: the API answers 404.
    #[serde(default)]
    pub write_keys: Vec<String>,
    /// Whose id `userId` is: `segment` (the storefront's own, the default), `shopify`,
    /// `bigcommerce:<store_hash>` or `adobe:<instance>`.
    #[serde(default = "default_segment_namespace")]
    pub user_id_namespace: String,
    /// The currency of amounts in events that name none.
    #[serde(default = "default_segment_currency")]
    pub currency: String,
    /// The largest request body, compressed and decompressed alike (default 4 MiB).
    #[serde(default = "default_segment_max_request_bytes")]
    pub max_request_bytes: usize,
}

fn default_segment_namespace() -> String {
    "segment".into()
}

fn default_segment_currency() -> String {
    "USD".into()
}

fn default_segment_max_request_bytes() -> usize {
    nudge_ingest::segment::DEFAULT_MAX_REQUEST_BYTES
}

impl Default for SegmentSourceConfig {
    fn default() -> Self {
        Self {
            write_keys: Vec::new(),
            user_id_namespace: default_segment_namespace(),
            currency: default_segment_currency(),
            max_request_bytes: default_segment_max_request_bytes(),
        }
    }
}

impl fmt::Debug for SegmentSourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SegmentSourceConfig")
            .field("write_keys", &format!("[{} redacted]", self.write_keys.len()))
            .field("user_id_namespace", &self.user_id_namespace)
            .field("currency", &self.currency)
            .field("max_request_bytes", &self.max_request_bytes)
            .finish()
    }
}

impl KlaviyoWebhooksConfig {
    /// A configuration with these secrets and the default skew.
    pub fn with_secrets(secret: Vec<String>) -> Self {
        Self { secret, max_skew: default_klaviyo_max_skew() }
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.secret.is_empty() {
            return Err(err("sources.klaviyo_webhooks.secret", "give the webhook's secret_key"));
        }
        for (i, s) in self.secret.iter().enumerate() {
            if s.trim().chars().count() < 16 {
                return Err(err(
                    format!("sources.klaviyo_webhooks.secret[{i}]"),
                    "use a random secret_key of at least 16 characters (32 or more recommended)",
                ));
            }
        }
        let skew = self.max_skew.0;
        if skew < Duration::from_secs(1) || skew > Duration::from_secs(3600) {
            return Err(err("sources.klaviyo_webhooks.max_skew", "must be between 1s and 1h"));
        }
        Ok(())
    }

    /// The intake's settings.
    pub fn source(&self) -> nudge_ingest::klaviyo_webhooks::KlaviyoWebhookConfig {
        nudge_ingest::klaviyo_webhooks::KlaviyoWebhookConfig {
            secrets: self.secret.clone(),
            max_skew_secs: i64::try_from(self.max_skew.0.as_secs()).unwrap_or(i64::MAX),
        }
    }
}

/// `[sources.braze_currents]`: the bearer token configured on the Currents connector.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BrazeCurrentsSourceConfig {
    pub token: String,
}

impl fmt::Debug for BrazeCurrentsSourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BrazeCurrentsSourceConfig").field("token", &"[redacted]").finish()
    }
}

impl BrazeCurrentsSourceConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let t = &self.token;
        if t.chars().count() < 16 || !t.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(err(
                "sources.braze_currents.token",
                "use a random token of at least 16 printable characters without spaces",
            ));
        }
        Ok(())
    }

    /// The intake's settings.
    pub fn source(&self) -> nudge_ingest::braze_currents::BrazeCurrentsConfig {
        nudge_ingest::braze_currents::BrazeCurrentsConfig { token: self.token.clone() }
    }
}

impl SegmentSourceConfig {
    /// The namespace of `userId`, checked.
    pub fn namespace(&self) -> Result<nudge_ingest::segment::UserIdNamespace, ConfigError> {
        nudge_ingest::segment::UserIdNamespace::parse(&self.user_id_namespace)
            .map_err(|e| err("sources.segment.user_id_namespace", e))
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        const AT: &str = "sources.segment";
        for (i, k) in self.write_keys.iter().enumerate() {
            if k.trim().is_empty() {
                return Err(err(format!("{AT}.write_keys[{i}]"), "write key is empty"));
            }
        }
        self.namespace()?;
        nudge_model::Currency::parse(&self.currency)
            .map_err(|e| err(format!("{AT}.currency"), e.to_string()))?;
        if self.max_request_bytes < 1024 {
            return Err(err(format!("{AT}.max_request_bytes"), "must be at least 1024"));
        }
        Ok(())
    }
}

/// `[sources.bigcommerce]`: one store's callbacks and the API account its fetch jobs read with.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BigCommerceSourceConfig {
    pub store_hash: String,
    /// The API account's `X-Auth-Token`, for the reads behind each callback.
    pub access_token: String,
    /// The app's client secret: the key of the callbacks' Standard Webhooks signature.
    #[serde(default)]
    pub client_secret: Option<String>,
    #[serde(default = "default_bigcommerce_api_base")]
    pub api_base: String,
    /// Custom headers the hooks were created with (name → expected value), checked on every callback.
    #[serde(default)]
    pub auth_headers: std::collections::BTreeMap<String, String>,
    /// Refuse unsigned callbacks; by default, when `client_secret` is set.
    #[serde(default)]
    pub require_signature: Option<bool>,
}

fn default_bigcommerce_api_base() -> String {
    "https://api.bigcommerce.com".into()
}

impl fmt::Debug for BigCommerceSourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BigCommerceSourceConfig")
            .field("store_hash", &self.store_hash)
            .field("access_token", &"[redacted]")
            .field("client_secret", &self.client_secret.as_ref().map(|_| "[redacted]"))
            .field("api_base", &self.api_base)
            .field("auth_headers", &self.auth_headers.keys().collect::<Vec<_>>())
            .field("require_signature", &self.require_signature)
            .finish()
    }
}

impl BigCommerceSourceConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let at = |k: &str| format!("sources.bigcommerce.{k}");
        let h = &self.store_hash;
        if h.is_empty() || h.len() > 64 || !h.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return Err(err(at("store_hash"), "must be the store hash (letters and digits, e.g. `abc123`)"));
        }
        if self.access_token.trim().is_empty() {
            return Err(err(at("access_token"), "must not be empty"));
        }
        if self.client_secret.as_deref().is_some_and(|s| s.trim().is_empty()) {
            return Err(err(
                at("client_secret"),
                "must not be empty (leave it out to use auth_headers only)",
            ));
        }
        for (name, value) in &self.auth_headers {
            let path = at(&format!("auth_headers.{name}"));
            if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
                return Err(err(path, "is not a valid header name"));
            }
            if value.trim().is_empty() {
                return Err(err(path, "expected value must not be empty"));
            }
        }
        if self.client_secret.is_none() && self.auth_headers.is_empty() {
            return Err(err(
                "sources.bigcommerce",
                "set client_secret, auth_headers or both to authenticate callbacks",
            ));
        }
        if self.require_signature == Some(true) && self.client_secret.is_none() {
            return Err(err(at("require_signature"), "needs client_secret to check signatures with"));
        }
        let base = self.api_base.trim_end_matches('/');
        let local = ["http://127.0.0.1:", "http://localhost:"].iter().any(|p| base.starts_with(p));
        if !(base.starts_with("https://") || local) {
            return Err(err(at("api_base"), "must be an https URL (http only for 127.0.0.1/localhost)"));
        }
        Ok(())
    }

    /// The intake's settings.
    pub fn source(&self) -> nudge_ingest::bigcommerce::BigCommerceConfig {
        nudge_ingest::bigcommerce::BigCommerceConfig {
            store_hash: self.store_hash.clone(),
            client_secret: self.client_secret.clone(),
            auth_headers: self.auth_headers.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            require_signature: self.require_signature,
        }
    }
}

/// `[sources.yotpo]`: one Yotpo store (app key): the intake's URL token and the pull API's credentials.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct YotpoSourceConfig {
    pub app_key: String,
    /// The API client secret the pull API's token is requested with.
    pub secret: String,
    /// The per-tenant token in the intake URL (`?token=`): at least 24 characters of `[A-Za-z0-9._~-]`.
    pub url_token: String,
    #[serde(default = "default_yotpo_api_base")]
    pub api_base: String,
}

fn default_yotpo_api_base() -> String {
    "https://api.yotpo.com".into()
}

impl fmt::Debug for YotpoSourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("YotpoSourceConfig")
            .field("app_key", &self.app_key)
            .field("secret", &"[redacted]")
            .field("url_token", &"[redacted]")
            .field("api_base", &self.api_base)
            .finish()
    }
}

fn check_api_base(at: String, base: &str) -> Result<(), ConfigError> {
    let base = base.trim_end_matches('/');
    let local = ["http://127.0.0.1:", "http://localhost:"].iter().any(|p| base.starts_with(p));
    if !(base.starts_with("https://") || local) {
        return Err(err(at, "must be an https URL (http only for 127.0.0.1/localhost)"));
    }
    Ok(())
}

fn check_url_token(at: String, token: &str) -> Result<(), ConfigError> {
    match nudge_ingest::url_token::problem(token) {
        Some(p) => Err(err(at, format!("{p} (use a random token, e.g. `openssl rand -hex 16`)"))),
        None => Ok(()),
    }
}

impl YotpoSourceConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let at = |k: &str| format!("sources.yotpo.{k}");
        let k = &self.app_key;
        if k.is_empty()
            || k.len() > 100
            || !k.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        {
            return Err(err(at("app_key"), "must be the store's app key (letters, digits, `-`, `_`)"));
        }
        if self.secret.trim().is_empty() {
            return Err(err(at("secret"), "must not be empty"));
        }
        check_url_token(at("url_token"), &self.url_token)?;
        check_api_base(at("api_base"), &self.api_base)
    }

    /// The intake's settings.
    pub fn source(&self) -> nudge_ingest::yotpo::YotpoConfig {
        nudge_ingest::yotpo::YotpoConfig { app_key: self.app_key.clone(), url_token: self.url_token.clone() }
    }

    /// The pull API's settings.
    pub fn fetch_config(&self) -> nudge_fetch::YotpoFetchConfig {
        nudge_fetch::YotpoFetchConfig::new(&self.app_key, &self.secret).api_base(&self.api_base)
    }
}

/// `[sources.smile]`: one Smile.io account: the intake's URL token and the REST API key.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmileSourceConfig {
    /// The per-tenant token in the intake URL (`?token=`): at least 24 characters of `[A-Za-z0-9._~-]`.
    pub url_token: String,
    /// The REST API key (`api_…`) or app token (`oa2_…`), sent as `Authorization: Bearer`.
    pub api_key: String,
    #[serde(default = "default_smile_api_base")]
    pub api_base: String,
}

fn default_smile_api_base() -> String {
    "https://api.smile.io".into()
}

impl fmt::Debug for SmileSourceConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmileSourceConfig")
            .field("url_token", &"[redacted]")
            .field("api_key", &"[redacted]")
            .field("api_base", &self.api_base)
            .finish()
    }
}

impl SmileSourceConfig {
    fn validate(&self) -> Result<(), ConfigError> {
        let at = |k: &str| format!("sources.smile.{k}");
        check_url_token(at("url_token"), &self.url_token)?;
        if self.api_key.trim().is_empty() {
            return Err(err(at("api_key"), "must not be empty"));
        }
        check_api_base(at("api_base"), &self.api_base)
    }

    /// The intake's settings.
    pub fn source(&self) -> nudge_ingest::smile::SmileConfig {
        nudge_ingest::smile::SmileConfig { url_token: self.url_token.clone() }
    }

    /// The REST API's settings.
    pub fn fetch_config(&self) -> nudge_fetch::SmileFetchConfig {
        nudge_fetch::SmileFetchConfig::new(&self.api_key).api_base(&self.api_base)
    }
}

/// `[sources.adobe_commerce]`. Public keys are not secrets; nothing here is redacted.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdobeCommerceConfig {
    /// Names this Commerce installation in customer keys (`adobe:<instance>:<id>`) and dedupe keys.
    #[serde(default = "default_adobe_instance")]
    pub instance: String,
    /// The Webhooks module's public key (PEM, as shown in Stores > Configuration > Adobe Services >
    /// Webhooks). Without it hooks are refused.
    pub webhook_public_key: Option<String>,
    /// Adobe I/O Events; without it events are refused.
    pub io_events: Option<AdobeIoEventsConfig>,
}

/// `[sources.adobe_commerce.io_events]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdobeIoEventsConfig {
    /// The Developer Console project's client id; an event whose `recipient_client_id` differs is refused.
    pub client_id: String,
    /// Where `x-adobe-public-key*-path` resolve: https, or plain http for a loopback host only.
    #[serde(default = "default_adobe_key_base")]
    pub public_key_base_url: String,
    /// PEM public keys trusted without fetching (tried first).
    #[serde(default)]
    pub public_keys: Vec<String>,
}

fn default_adobe_instance() -> String {
    nudge_ingest::adobe::DEFAULT_INSTANCE.into()
}

fn default_adobe_key_base() -> String {
    nudge_ingest::adobe::io_events::DEFAULT_KEY_BASE.into()
}

impl AdobeCommerceConfig {
    /// The source these settings describe; errors name the key at fault.
    pub fn source(&self) -> Result<nudge_ingest::adobe::AdobeCommerceSource, ConfigError> {
        use nudge_ingest::adobe::{AdobeCommerceSource, IoEventsSettings, KeyBase, PublicKey};
        const AT: &str = "sources.adobe_commerce";
        nudge_ingest::adobe::check_instance(&self.instance).map_err(|e| err(format!("{AT}.instance"), e))?;
        let webhook_key = self
            .webhook_public_key
            .as_deref()
            .map(|pem| {
                PublicKey::from_pem(pem).map_err(|e| err(format!("{AT}.webhook_public_key"), e.to_string()))
            })
            .transpose()?;
        let io = match &self.io_events {
            None => None,
            Some(io) => {
                if io.client_id.trim().is_empty() {
                    return Err(err(format!("{AT}.io_events.client_id"), "is empty"));
                }
                let key_base = KeyBase::parse(&io.public_key_base_url)
                    .map_err(|e| err(format!("{AT}.io_events.public_key_base_url"), e))?;
                let public_keys = io
                    .public_keys
                    .iter()
                    .enumerate()
                    .map(|(i, pem)| {
                        PublicKey::from_pem(pem)
                            .map_err(|e| err(format!("{AT}.io_events.public_keys[{i}]"), e.to_string()))
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Some(IoEventsSettings { client_id: io.client_id.trim().to_string(), key_base, public_keys })
            }
        };
        AdobeCommerceSource::new(&self.instance, webhook_key, io)
            .map_err(|e| err(format!("{AT}.instance"), e))
    }
}

#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShopifyConfig {
    /// App client secrets; a delivery signed by any of them is accepted (secret rotation). Required
    /// unless Shopify delivers only over Pub/Sub or EventBridge.
    #[serde(default)]
    pub secrets: Vec<String>,
    /// Deliveries pushed by a Google Pub/Sub subscription (`/webhooks/shopify/pubsub`).
    pub pubsub: Option<ShopifyPubSubConfig>,
    /// Deliveries relayed by an EventBridge API destination (`/webhooks/shopify/eventbridge`).
    pub eventbridge: Option<ShopifyEventBridgeConfig>,
    /// The GraphQL Admin API, read for the customer of an order or checkout that carries no email.
    pub admin: Option<ShopifyAdminSettings>,
}

impl fmt::Debug for ShopifyConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShopifyConfig")
            .field("secrets", &format!("[{} redacted]", self.secrets.len()))
            .field("pubsub", &self.pubsub)
            .field("eventbridge", &self.eventbridge)
            .field("admin", &self.admin)
            .finish()
    }
}

/// The push subscription's authentication: the token's audience and service account, and Google's
/// signing keys (nudge cannot fetch them: paste `https://www.googleapis.com/oauth2/v3/certs`, or the
/// `{kid: PEM}` map of `…/oauth2/v1/certs`, or PEM certificates or public keys).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShopifyPubSubConfig {
    pub audience: String,
    pub service_account_email: String,
    pub jwks: String,
}

/// The API-key header of the EventBridge connection.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShopifyEventBridgeConfig {
    #[serde(default = "default_eventbridge_header")]
    pub header: String,
    pub value: String,
}

fn default_eventbridge_header() -> String {
    nudge_ingest::shopify::DEFAULT_API_KEY_HEADER.into()
}

impl fmt::Debug for ShopifyEventBridgeConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShopifyEventBridgeConfig")
            .field("header", &self.header)
            .field("value", &"[redacted]")
            .finish()
    }
}

/// `sources.shopify.admin`.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShopifyAdminSettings {
    pub shop_domain: String,
    pub access_token: String,
    #[serde(default = "default_admin_api_version")]
    pub api_version: String,
    #[serde(default = "default_admin_cache_ttl")]
    pub cache_ttl: HumanDuration,
    /// Overrides `https://<shop_domain>` (a fake, in development).
    pub base_url: Option<String>,
}

fn default_admin_api_version() -> String {
    nudge_fetch::shopify_admin::DEFAULT_API_VERSION.into()
}

fn default_admin_cache_ttl() -> HumanDuration {
    HumanDuration(Duration::from_secs(600))
}

impl fmt::Debug for ShopifyAdminSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ShopifyAdminSettings")
            .field("shop_domain", &self.shop_domain)
            .field("access_token", &"[redacted]")
            .field("api_version", &self.api_version)
            .field("cache_ttl", &self.cache_ttl.0)
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl ShopifyConfig {
    /// HTTPS deliveries signed with `secrets`, nothing else configured.
    pub fn with_secrets(secrets: Vec<String>) -> Self {
        ShopifyConfig { secrets, pubsub: None, eventbridge: None, admin: None }
    }
}

impl ShopifyPubSubConfig {
    /// What a push token must say, with the keys read.
    pub fn policy(&self) -> Result<nudge_ingest::shopify::oidc::TokenPolicy, ConfigError> {
        let keys = nudge_ingest::shopify::oidc::KeySet::parse(&self.jwks)
            .map_err(|e| err("sources.shopify.pubsub.jwks", e))?;
        Ok(nudge_ingest::shopify::oidc::TokenPolicy {
            audience: self.audience.clone(),
            service_account_email: self.service_account_email.clone(),
            keys,
        })
    }
}

impl ShopifyAdminSettings {
    /// The fetcher's settings.
    pub fn fetch_config(&self) -> nudge_fetch::ShopifyAdminConfig {
        let mut c = nudge_fetch::ShopifyAdminConfig::new(self.shop_domain.trim(), self.access_token.clone());
        c.api_version = self.api_version.trim().to_string();
        c.cache_ttl = self.cache_ttl.0;
        c.base_url = self.base_url.clone();
        c
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DestinationsConfig {
    pub klaviyo: Option<KlaviyoConfig>,
    /// Signed webhooks (`[[destinations.webhooks]]`), each the destination `webhook:<name>`.
    #[serde(default)]
    pub webhooks: Vec<WebhookConfig>,
    /// The Slack alert channel, the destination `slack`.
    pub slack: Option<SlackConfig>,
    /// Braze (`/users/track`), the destination `braze`.
    pub braze: Option<nudge_deliver::BrazeConfig>,
    /// HubSpot (batch contact upserts), the destination `hubspot`.
    pub hubspot: Option<nudge_deliver::HubSpotConfig>,
    /// Marketo (Sync Leads, custom activities, static lists), the destination `marketo`.
    pub marketo: Option<nudge_deliver::MarketoConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// A checkout with no update and no completion for this long becomes `CheckoutAbandoned`.
    pub checkout_abandon_after: HumanDuration,
    /// Prefix of every attribute nudge writes.
    pub attribute_prefix: String,
    /// Run everything, push nothing.
    pub shadow: bool,
    /// Percentage of customers held out of trigger flows (deterministic hashing).
    pub holdout_percent: u8,
    /// Attempts per outbox item before it is dead-lettered.
    pub max_attempts: u32,
    /// Deliveries processed per batch (one transaction).
    pub batch_size: usize,
    /// How often due abandonment timers are checked.
    pub timer_tick: HumanDuration,
    /// How often the models are refitted from the store's history; zero turns refits off.
    pub refit_every: HumanDuration,
    /// OS scheduling niceness (0–19) of the background workers (processing, outbox, timers, refits);
    /// the ack path keeps the default priority, so under load acknowledging wins the CPU.
    pub worker_nice: i32,
    /// Scheduling class of the background workers (`auto`: by the storage backend, see
    /// [`Config::worker_priority`]).
    pub worker_scheduling: WorkerScheduling,
    /// When the server pushes every customer's scores to the destinations in bulk (a 5-field cron
    /// expression in UTC, such as `"0 3 * * *"`); absent: never (run `nudge push` by hand).
    pub batch_push_schedule: Option<String>,
    /// When the server refreshes the adopted segments' members (a 5-field cron expression in UTC, such as
    /// `"0 4 * * *"`); absent: never (run `nudge segments refresh` by hand).
    pub segment_refresh_schedule: Option<String>,
    /// The destinations the scheduled push writes to; empty: every configured destination that takes
    /// profiles (all but `slack`).
    pub batch_push_destinations: Vec<String>,
    /// When the server sends a campaign digest (a 5-field cron expression in UTC, such as `"0 8 * * 1"`)
    /// to the destinations of `[digest]`; absent: never (run `nudge digest send` by hand).
    pub digest_schedule: Option<String>,
    /// How long storefront behaviour (product views, cart adds, searches) stays in a customer's state.
    pub browse_retention: HumanDuration,
}

/// How the background workers share the CPU with the ack path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WorkerScheduling {
    /// `idle` with the embedded store, `nice` with PostgreSQL.
    #[default]
    Auto,
    /// Linux's idle class: the workers use only CPU the ack path leaves free, and a webhook arriving
    /// preempts them at once.
    Idle,
    /// Normal class at `worker_nice`: the workers keep a small share of a busy CPU.
    Nice,
}

impl PipelineConfig {
    /// The OS priority the background workers' threads run at with this storage backend. `auto` is the idle
    /// class with the embedded store, where processing shares the store's one writer with the ack path,
    /// and the normal class at `worker_nice` with PostgreSQL, where the workers mostly wait on the
    /// database's processes (normal class themselves): there, the idle class had them preempted by every
    /// other task, for more CPU per delivery and no better latency (BENCHMARKS.md).
    pub fn worker_priority(&self, backend: StorageBackend) -> nudge_store::sqlite::BackgroundPriority {
        let idle = match self.worker_scheduling {
            WorkerScheduling::Auto => backend == StorageBackend::Sqlite,
            WorkerScheduling::Idle => true,
            WorkerScheduling::Nice => false,
        };
        nudge_store::sqlite::BackgroundPriority { nice: self.worker_nice, idle }
    }
}

impl Config {
    /// The OS priority of the background workers' threads (`pipeline.worker_scheduling`, by the storage
    /// backend when `auto`).
    pub fn worker_priority(&self) -> nudge_store::sqlite::BackgroundPriority {
        self.pipeline.worker_priority(self.storage.backend)
    }
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            checkout_abandon_after: HumanDuration(Duration::from_secs(3600)),
            attribute_prefix: "ai_".into(),
            shadow: false,
            holdout_percent: 0,
            max_attempts: 8,
            batch_size: 32,
            timer_tick: HumanDuration(Duration::from_secs(1)),
            refit_every: HumanDuration(Duration::from_secs(86_400)),
            worker_nice: 10,
            worker_scheduling: WorkerScheduling::Auto,
            batch_push_schedule: None,
            segment_refresh_schedule: None,
            batch_push_destinations: Vec::new(),
            digest_schedule: None,
            browse_retention: HumanDuration(Duration::from_secs(30 * 86_400)),
        }
    }
}

/// A duration written as `90s`, `60m`, `2h`, `14d` or `250ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HumanDuration(pub Duration);

impl HumanDuration {
    pub fn parse(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let (num, unit) = s.split_at(split);
        if num.is_empty() && unit.is_empty() {
            return Err("empty duration".into());
        }
        let n: u64 = num.parse().map_err(|_| format!("`{s}` is not a duration like 90s, 60m, 2h or 14d"))?;
        let secs = match unit {
            "ms" => return Ok(HumanDuration(Duration::from_millis(n))),
            "s" => n,
            "m" => n * 60,
            "h" => n * 3600,
            "d" => n * 86_400,
            _ => return Err(format!("`{s}`: unknown unit `{unit}` (use ms, s, m, h or d)")),
        };
        Ok(HumanDuration(Duration::from_secs(secs)))
    }
}

impl<'de> Deserialize<'de> for HumanDuration {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        HumanDuration::parse(&s).map_err(serde::de::Error::custom)
    }
}

/// A configuration problem: where and why.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid configuration at `{path}`: {reason}")]
pub struct ConfigError {
    pub path: String,
    pub reason: String,
}

/// The delivery engine's keys, accepted in every destination table.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeliveryKeys {
    /// `false` keeps the destination's settings but sends it nothing (flows naming it fail to load).
    pub enabled: Option<bool>,
    /// Requests (batches) in flight at once (1–64; default 4).
    pub max_in_flight: Option<usize>,
    /// Attempts per item before it is dead-lettered (default `pipeline.max_attempts`).
    pub max_attempts: Option<u32>,
    /// Dead-letter an item at its next failure once its event is this old (default: only by attempts).
    pub dead_letter_after: Option<HumanDuration>,
    /// How long a part-full batch waits to fill (default 50ms; at most 10s).
    pub linger: Option<HumanDuration>,
}

const DELIVERY_KEY_NAMES: [&str; 5] =
    ["enabled", "max_in_flight", "max_attempts", "dead_letter_after", "linger"];

impl DeliveryKeys {
    fn apply(&self, mut s: crate::outbox::DeliverySettings) -> crate::outbox::DeliverySettings {
        if let Some(n) = self.max_in_flight {
            s.max_in_flight = n;
        }
        if let Some(n) = self.max_attempts {
            s.max_attempts = n;
        }
        if let Some(d) = &self.dead_letter_after {
            s.dead_letter_after = Some(d.0);
        }
        if let Some(d) = &self.linger {
            s.linger = d.0;
        }
        s
    }

    fn check(&self, path: &str) -> Result<(), ConfigError> {
        if let Some(n) = self.max_in_flight
            && !(1..=64).contains(&n)
        {
            return Err(err(format!("{path}.max_in_flight"), "must be between 1 and 64"));
        }
        if self.max_attempts == Some(0) {
            return Err(err(format!("{path}.max_attempts"), "must be at least 1"));
        }
        if let Some(d) = &self.dead_letter_after
            && d.0 < Duration::from_secs(1)
        {
            return Err(err(format!("{path}.dead_letter_after"), "must be at least 1s"));
        }
        if let Some(d) = &self.linger
            && d.0 > Duration::from_secs(10)
        {
            return Err(err(format!("{path}.linger"), "must be at most 10s"));
        }
        Ok(())
    }
}

/// Takes the delivery engine's keys out of every destination table (webhooks keep their own `enabled`),
/// checked, by destination name.
fn take_delivery_keys(value: &mut toml::Value) -> Result<BTreeMap<String, DeliveryKeys>, ConfigError> {
    let mut out = BTreeMap::new();
    let Some(dests) = value.get_mut("destinations").and_then(toml::Value::as_table_mut) else {
        return Ok(out);
    };
    let mut take = |table: &mut toml::Table, path: String, name: String, keep_enabled: bool| {
        let mut keys = toml::Table::new();
        for k in DELIVERY_KEY_NAMES {
            if k == "enabled" && keep_enabled {
                if let Some(v) = table.get(k) {
                    keys.insert(k.to_string(), v.clone());
                }
                continue;
            }
            if let Some(v) = table.remove(k) {
                keys.insert(k.to_string(), v);
            }
        }
        if keys.is_empty() {
            return Ok(());
        }
        let parsed: DeliveryKeys = serde_path_to_error::deserialize(toml::Value::Table(keys))
            .map_err(|e| err(format!("{path}.{}", e.path()), e.into_inner().to_string()))?;
        parsed.check(&path)?;
        out.insert(name, parsed);
        Ok::<(), ConfigError>(())
    };
    for (key, v) in dests.iter_mut() {
        if key == "webhooks" {
            let Some(list) = v.as_array_mut() else { continue };
            for (i, w) in list.iter_mut().enumerate() {
                let Some(t) = w.as_table_mut() else { continue };
                let name = t.get("name").and_then(toml::Value::as_str).unwrap_or_default().to_string();
                take(t, format!("destinations.webhooks[{i}]"), format!("webhook:{name}"), true)?;
            }
        } else if let Some(t) = v.as_table_mut() {
            take(t, format!("destinations.{key}"), key.clone(), false)?;
        }
    }
    Ok(out)
}

fn err(path: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError { path: path.into(), reason: reason.into() }
}

impl Config {
    /// Loads `path` (or only defaults when `None`) with the process environment.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let env: BTreeMap<String, String> = std::env::vars().collect();
        let text = match path {
            Some(p) => {
                std::fs::read_to_string(p).map_err(|e| err("<file>", format!("{}: {e}", p.display())))?
            }
            None => String::new(),
        };
        Config::from_toml(&text, &env)
    }

    /// Parses TOML text, applies `NUDGE__…` overrides and `${VAR}` expansion from `env`, and validates.
    pub fn from_toml(text: &str, env: &BTreeMap<String, String>) -> Result<Config, ConfigError> {
        let mut table: toml::Table =
            text.parse().map_err(|e: toml::de::Error| err("<file>", e.to_string()))?;
        for (k, v) in env {
            let Some(rest) = k.strip_prefix("NUDGE__") else { continue };
            let path: Vec<String> = rest.split("__").map(|p| p.to_ascii_lowercase()).collect();
            if path.iter().any(|p| p.is_empty()) {
                return Err(err(k.clone(), "empty path segment in environment override"));
            }
            set_path(&mut table, &path, parse_env_value(v)).map_err(|r| err(path.join("."), r))?;
        }
        let mut value = toml::Value::Table(table);
        expand_env(&mut value, "", env)?;
        let delivery = take_delivery_keys(&mut value)?;
        let mut cfg: Config = serde_path_to_error::deserialize(value).map_err(|e| {
            let p = e.path().to_string();
            err(if p == "." { "<root>".to_string() } else { p }, e.into_inner().to_string())
        })?;
        cfg.delivery = delivery;
        if let (Some(m), Some(n)) =
            (cfg.destinations.marketo.as_mut(), cfg.delivery.get("marketo").and_then(|k| k.max_in_flight))
        {
            // Marketo allows 10 calls in flight per instance, shared by every integration.
            if n > 10 {
                return Err(err(
                    "destinations.marketo.max_in_flight",
                    "must be at most 10 (Marketo's limit)",
                ));
            }
            m.max_in_flight = n;
        }
        cfg.validate()?;
        Ok(cfg)
    }

    fn validate(&self) -> Result<(), ConfigError> {
        if self.server.max_body_bytes < 1024 {
            return Err(err("server.max_body_bytes", "must be at least 1024"));
        }
        if self.storage.dedupe_retention.0 < Duration::from_secs(7 * 86_400) {
            return Err(err("storage.dedupe_retention", "must be at least 7d"));
        }
        if let Some(r) = self.storage.retention
            && r.0 < self.storage.dedupe_retention.0
        {
            return Err(err(
                "storage.retention",
                "must be at least storage.dedupe_retention: a delivery is kept while its ids are remembered",
            ));
        }
        if let Some(a) = self.storage.audit_retention {
            if a.0 < Duration::from_secs(86_400) {
                return Err(err("storage.audit_retention", "must be at least 1d"));
            }
            if self.storage.retention.is_some_and(|r| a.0 < r.0) {
                return Err(err(
                    "storage.audit_retention",
                    "must be at least storage.retention: a trace's pushes are kept while its terminal state is",
                ));
            }
        }
        if self.storage.backend == StorageBackend::Postgres {
            match self.storage.postgres_url.as_deref() {
                None | Some("") => {
                    return Err(err("storage.postgres_url", "is required with backend = \"postgres\""));
                }
                Some(u) if !(u.starts_with("postgres://") || u.starts_with("postgresql://")) => {
                    return Err(err("storage.postgres_url", "must start with postgres:// or postgresql://"));
                }
                _ => {}
            }
            // Nodes sharing a store must agree on pseudonyms (erasure records, exports, scorers, the LLM):
            // the key kept in a data directory would be each node's own.
            if self.privacy.pseudonym_key.is_none() {
                return Err(err(
                    "privacy.pseudonym_key",
                    "is required with storage.backend = \"postgres\" (the same key on every node)",
                ));
            }
        }
        let schema = &self.storage.postgres_schema;
        if schema.is_empty()
            || schema.len() > 63
            || !schema.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            || schema.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(err(
                "storage.postgres_schema",
                "use 1 to 63 letters, digits and underscores, not starting with a digit",
            ));
        }
        if !(2..=1000).contains(&self.storage.postgres_pool) {
            return Err(err("storage.postgres_pool", "must be between 2 and 1000"));
        }
        if self.storage.postgres_ack_linger.0 > Duration::from_millis(50) {
            return Err(err("storage.postgres_ack_linger", "must be at most 50ms"));
        }
        if self.bus.backend == BusBackend::Rabbitmq {
            if self.storage.backend != StorageBackend::Postgres {
                return Err(err(
                    "bus.backend",
                    "\"rabbitmq\" drains into PostgreSQL's log: it needs storage.backend = \"postgres\"",
                ));
            }
            match self.bus.amqp_url.as_deref() {
                None | Some("") => {
                    return Err(err("bus.amqp_url", "is required with backend = \"rabbitmq\""));
                }
                Some(u) if u.starts_with("amqps://") => {
                    self.bus.tls()?;
                }
                Some(u) if !u.starts_with("amqp://") => {
                    return Err(err("bus.amqp_url", "must start with amqp:// or amqps:// (TLS)"));
                }
                Some(_) => {
                    for (key, set) in [
                        ("amqp_ca_file", self.bus.amqp_ca_file.is_some()),
                        ("amqp_cert_file", self.bus.amqp_cert_file.is_some()),
                        ("amqp_key_file", self.bus.amqp_key_file.is_some()),
                    ] {
                        if set {
                            return Err(err(
                                format!("bus.{key}"),
                                "is only read with an amqps:// (TLS) bus.amqp_url: use amqps:// or remove it",
                            ));
                        }
                    }
                }
            }
            let q = &self.bus.queue;
            if q.is_empty()
                || q.len() > 255
                || q.starts_with("amq.")
                || !q.chars().all(|c| c.is_ascii_alphanumeric() || "._-:".contains(c))
            {
                return Err(err(
                    "bus.queue",
                    "use 1 to 255 letters, digits and . _ - :, not starting with \"amq.\" (reserved by RabbitMQ)",
                ));
            }
        } else if self.bus.amqp_url.is_some() {
            return Err(err("bus.amqp_url", "is only read with backend = \"rabbitmq\": remove it"));
        }
        if !(1..=nudge_store::postgres::partitions::MAX_PARTITIONS).contains(&self.bus.partitions) {
            return Err(err("bus.partitions", "must be between 1 and 4096"));
        }
        if self.cache.backend == CacheBackend::Redis {
            if self.storage.backend != StorageBackend::Postgres {
                return Err(err(
                    "cache.backend",
                    "\"redis\" is for nodes sharing storage.backend = \"postgres\" (one embedded node keeps its limits itself)",
                ));
            }
            match self.cache.redis_url.as_deref() {
                None | Some("") => {
                    return Err(err("cache.redis_url", "is required with backend = \"redis\""));
                }
                Some(u) if !(u.starts_with("redis://") || u.starts_with("rediss://")) => {
                    return Err(err("cache.redis_url", "must start with redis:// or rediss://"));
                }
                _ => {}
            }
        }
        if let Some(s) = &self.sources.shopify {
            if s.secrets.is_empty() && s.pubsub.is_none() && s.eventbridge.is_none() {
                return Err(err("sources.shopify.secrets", "list at least one app client secret"));
            }
            if let Some(i) = s.secrets.iter().position(|x| x.trim().is_empty()) {
                return Err(err(format!("sources.shopify.secrets[{i}]"), "secret is empty"));
            }
            if let Some(p) = &s.pubsub {
                if p.audience.trim().is_empty() {
                    return Err(err(
                        "sources.shopify.pubsub.audience",
                        "is empty (the push subscription's audience)",
                    ));
                }
                if !p.service_account_email.contains('@') {
                    return Err(err(
                        "sources.shopify.pubsub.service_account_email",
                        "is not an email address",
                    ));
                }
                p.policy()?;
            }
            if let Some(e) = &s.eventbridge {
                let h = e.header.trim();
                if h.is_empty() || !h.bytes().all(|b| b.is_ascii_alphanumeric() || b"-_".contains(&b)) {
                    return Err(err(
                        "sources.shopify.eventbridge.header",
                        "must be a header name (letters, digits, - and _)",
                    ));
                }
                if h.eq_ignore_ascii_case("authorization") {
                    return Err(err(
                        "sources.shopify.eventbridge.header",
                        "choose a header of your own, not Authorization",
                    ));
                }
                if e.value.trim().chars().count() < 16 {
                    return Err(err(
                        "sources.shopify.eventbridge.value",
                        "use a random key of at least 16 characters",
                    ));
                }
            }
            if let Some(a) = &s.admin {
                a.fetch_config()
                    .validate()
                    .map_err(|e| err(format!("sources.shopify.admin.{}", e.field), e.message))?;
            }
        }
        if let Some(b) = &self.sources.bigcommerce {
            b.validate()?;
        }
        if let Some(y) = &self.sources.yotpo {
            y.validate()?;
        }
        if let Some(s) = &self.sources.smile {
            s.validate()?;
        }
        if let Some(a) = &self.sources.adobe_commerce {
            a.source()?;
        }
        if let Some(k) = &self.sources.klaviyo_webhooks {
            k.validate()?;
        }
        if let Some(b) = &self.sources.braze_currents {
            b.validate()?;
        }
        if let Some(sg) = &self.sources.segment {
            sg.validate()?;
        }
        if let Some(k) = &self.destinations.klaviyo {
            k.validate().map_err(|e| err("destinations.klaviyo", e.to_string()))?;
        }
        let mut webhook_names = std::collections::BTreeSet::new();
        for (i, w) in self.destinations.webhooks.iter().enumerate() {
            w.check().map_err(|e| err(format!("destinations.webhooks[{i}].{}", e.field), e.message))?;
            if !webhook_names.insert(w.name.as_str()) {
                return Err(err(
                    format!("destinations.webhooks[{i}].name"),
                    format!("a webhook named `{}` is defined twice", w.name),
                ));
            }
        }
        if let Some(b) = &self.destinations.braze {
            b.check().map_err(|(field, e)| err(format!("destinations.braze.{field}"), e))?;
        }
        if let Some(h) = &self.destinations.hubspot {
            h.check().map_err(|(field, e)| err(format!("destinations.hubspot.{field}"), e))?;
        }
        if let Some(m) = &self.destinations.marketo {
            m.check().map_err(|(field, e)| err(format!("destinations.marketo.{field}"), e))?;
        }
        if let Some(s) = &self.destinations.slack {
            s.check().map_err(|(field, e)| err(format!("destinations.slack.{field}"), e))?;
        }
        let p = &self.pipeline;
        if p.checkout_abandon_after.0 < Duration::from_secs(1) {
            return Err(err("pipeline.checkout_abandon_after", "must be at least 1s"));
        }
        let prefix_ok = !p.attribute_prefix.is_empty()
            && p.attribute_prefix.len() <= 32
            && p.attribute_prefix.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !prefix_ok {
            return Err(err("pipeline.attribute_prefix", "use 1–32 ASCII letters, digits or underscores"));
        }
        if p.holdout_percent > 100 {
            return Err(err("pipeline.holdout_percent", "must be between 0 and 100"));
        }
        if p.max_attempts == 0 {
            return Err(err("pipeline.max_attempts", "must be at least 1"));
        }
        if let Some(expr) = &p.batch_push_schedule {
            nudge_policy::schedule::Schedule::parse(expr)
                .map_err(|e| err("pipeline.batch_push_schedule", e))?;
        }
        if let Some(expr) = &p.segment_refresh_schedule {
            nudge_policy::schedule::Schedule::parse(expr)
                .map_err(|e| err("pipeline.segment_refresh_schedule", e))?;
        }
        if let Some(expr) = &p.digest_schedule {
            nudge_policy::schedule::Schedule::parse(expr).map_err(|e| err("pipeline.digest_schedule", e))?;
            if !self.digest.as_ref().is_some_and(|d| d.has_destination()) {
                return Err(err(
                    "pipeline.digest_schedule",
                    "nowhere to send the digest: set `[digest] slack = true` and/or `[digest.email]`",
                ));
            }
        }
        if let Some(d) = &self.digest {
            d.check(self.destinations.slack.is_some()).map_err(|(k, r)| err(k, r))?;
        }
        let names = self.destination_names();
        for (i, d) in p.batch_push_destinations.iter().enumerate() {
            let path = format!("pipeline.batch_push_destinations[{i}]");
            if !names.contains(d) {
                let known = if names.is_empty() { "none".to_string() } else { names.join(", ") };
                return Err(err(path, format!("destination `{d}` is not configured (configured: {known})")));
            }
            if nudge_policy::flows::is_alert_channel(d) {
                return Err(err(path, format!("`{d}` takes alerts only, not profiles")));
            }
        }
        if p.batch_size == 0 || p.batch_size > 10_000 {
            return Err(err("pipeline.batch_size", "must be between 1 and 10000"));
        }
        if !(0..=19).contains(&p.worker_nice) {
            return Err(err(
                "pipeline.worker_nice",
                "must be between 0 (same priority as the ack path) and 19",
            ));
        }
        self.recs.check().map_err(|e| err("recs", e.to_string()))?;
        if let Some(l) = &self.llm {
            l.check().map_err(|e| err(format!("llm.{}", e.key), e.reason))?;
        }
        let mut prompt_ids = std::collections::BTreeSet::new();
        for (i, p) in self.prompts.iter().enumerate() {
            p.check().map_err(|e| err(format!("prompts[{i}].{}", e.key), e.reason))?;
            if !prompt_ids.insert((p.name.as_str(), p.version)) {
                return Err(err(
                    format!("prompts[{i}]"),
                    format!("prompt `{}` version {} is defined twice", p.name, p.version),
                ));
            }
        }
        self.flow_set()?;
        self.scoring.check(self.privacy.pseudonym_key.is_some())?;
        if let Some(k) = &self.privacy.pseudonym_key {
            let min = nudge_model::PseudonymKey::MIN_LEN;
            if k.len() < min {
                return Err(err(
                    "privacy.pseudonym_key",
                    format!(
                        "must be at least {min} bytes (it is {}); generate one with `openssl rand -hex 32`",
                        k.len()
                    ),
                ));
            }
        }
        let m = &self.models;
        if !(m.max_tracking_deviation.is_finite() && m.max_tracking_deviation > 0.0) {
            return Err(err("models.max_tracking_deviation", "must be a share above 0 (0.10 = 10%)"));
        }
        if !(m.max_chi_square_ratio.is_finite() && m.max_chi_square_ratio >= 1.0) {
            return Err(err("models.max_chi_square_ratio", "must be a number of at least 1"));
        }
        if !(m.refit_max_quality_drop.is_finite() && (0.0..=1.0).contains(&m.refit_max_quality_drop)) {
            return Err(err("models.refit_max_quality_drop", "must be between 0 and 1 (0.05 = 5 points)"));
        }
        Ok(())
    }

    /// The destinations `pipeline.batch_push_schedule` pushes to.
    pub fn batch_push_destinations(&self) -> Vec<String> {
        if self.pipeline.batch_push_destinations.is_empty() {
            let mut v = self.destination_names();
            v.retain(|d| !nudge_policy::flows::is_alert_channel(d));
            v
        } else {
            self.pipeline.batch_push_destinations.clone()
        }
    }

    /// The names of the configured (and enabled) destinations, in a fixed order.
    pub fn destination_names(&self) -> Vec<String> {
        let mut v = Vec::new();
        if self.destinations.klaviyo.is_some() {
            v.push("klaviyo".to_string());
        }
        v.extend(
            self.destinations.webhooks.iter().filter(|w| w.enabled).map(WebhookConfig::destination_name),
        );
        if self.destinations.braze.is_some() {
            v.push("braze".to_string());
        }
        if self.destinations.hubspot.is_some() {
            v.push("hubspot".to_string());
        }
        if self.destinations.marketo.is_some() {
            v.push("marketo".to_string());
        }
        if self.destinations.slack.is_some() {
            v.push("slack".to_string());
        }
        v.retain(|name| self.delivery.get(name).and_then(|k| k.enabled).unwrap_or(true));
        v
    }

    /// The delivery engine's settings for each destination that sets any of its keys; the others use
    /// [`Config::default_delivery`].
    pub fn delivery_settings(&self) -> std::collections::HashMap<String, crate::outbox::DeliverySettings> {
        self.delivery.iter().map(|(name, keys)| (name.clone(), keys.apply(self.default_delivery()))).collect()
    }

    /// The delivery settings of one destination (its own keys over the defaults).
    pub fn delivery_for(&self, destination: &str) -> crate::outbox::DeliverySettings {
        match self.delivery.get(destination) {
            Some(keys) => keys.apply(self.default_delivery()),
            None => self.default_delivery(),
        }
    }

    /// The delivery settings of a destination that sets none of the engine's keys.
    pub fn default_delivery(&self) -> crate::outbox::DeliverySettings {
        crate::outbox::DeliverySettings { max_attempts: self.pipeline.max_attempts, ..Default::default() }
    }

    /// The flow set this configuration runs: its `[[flows]]`, checked and compiled, or the built-in flows.
    pub fn flow_set(&self) -> Result<nudge_policy::flows::FlowSet, ConfigError> {
        let names = self.destination_names();
        self.flow_set_for(&names.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// [`Config::flow_set`] against the given destinations instead of this configuration's: a running
    /// server reloads flows against the destinations it started with (new destinations need a restart).
    pub fn flow_set_for(&self, destinations: &[&str]) -> Result<nudge_policy::flows::FlowSet, ConfigError> {
        use nudge_policy::flows::FlowSet;
        let specs = match &self.flows {
            Some(specs) => specs.clone(),
            None => FlowSet::default_specs(destinations, &self.policy()),
        };
        let prompts: Vec<(&str, u32)> = self.prompts.iter().map(|p| (p.name.as_str(), p.version)).collect();
        let set = FlowSet::compile_with_prompts(&specs, destinations, &prompts)
            .map_err(|e| err(e.path, e.message))?;
        // A flow must not route an action type to a webhook whose `events` leave it out: it would never
        // arrive, so that is a configuration error rather than a silent drop.
        for (i, flow) in set.flows.iter().enumerate() {
            for (j, a) in flow.spec.actions.iter().enumerate() {
                let Some(name) = a.destination().strip_prefix("webhook:") else { continue };
                let Some(w) = self.destinations.webhooks.iter().find(|w| w.name == name) else { continue };
                if !w.accepts_kind(a.action_kind()) {
                    return Err(err(
                        format!("flows[{i}].actions[{j}].destination"),
                        format!(
                            "flow `{}`: webhook `{name}` takes {} only (its `events`), not nudge.{} from {}",
                            flow.spec.name,
                            w.events.as_deref().unwrap_or_default().join(", "),
                            a.action_kind(),
                            a.type_name()
                        ),
                    ));
                }
            }
        }
        Ok(set)
    }

    /// The policy settings derived from the pipeline section.
    pub fn policy(&self) -> nudge_policy::PolicyConfig {
        nudge_policy::PolicyConfig {
            attribute_prefix: self.pipeline.attribute_prefix.clone(),
            shadow: self.pipeline.shadow,
            holdout_percent: self.pipeline.holdout_percent,
            ..Default::default()
        }
    }

    /// Every secret in the configuration, so logs and the audit trail can be checked against them.
    pub fn secrets(&self) -> Vec<String> {
        let mut v: Vec<String> = self.sources.shopify.iter().flat_map(|s| s.secrets.clone()).collect();
        if let Some(b) = &self.sources.bigcommerce {
            v.push(b.access_token.clone());
            v.extend(b.client_secret.clone());
            v.extend(b.auth_headers.values().cloned());
        }
        v.extend(self.sources.klaviyo_webhooks.iter().flat_map(|k| k.secret.clone()));
        v.extend(self.sources.braze_currents.iter().map(|b| b.token.clone()));
        if let Some(y) = &self.sources.yotpo {
            v.extend([y.secret.clone(), y.url_token.clone()]);
        }
        if let Some(s) = &self.sources.smile {
            v.extend([s.api_key.clone(), s.url_token.clone()]);
        }
        v.extend(self.sources.segment.iter().flat_map(|s| s.write_keys.clone()));
        if let Some(s) = &self.sources.shopify {
            v.extend(s.eventbridge.iter().map(|e| e.value.clone()));
            v.extend(s.admin.iter().map(|a| a.access_token.clone()));
        }
        v.extend(self.destinations.klaviyo.iter().map(|k| k.api_key.clone()));
        for w in &self.destinations.webhooks {
            v.push(w.secret.clone());
            v.extend(w.previous_secrets.iter().cloned());
        }
        v.extend(self.destinations.slack.iter().map(|s| s.webhook_url.clone()));
        v.extend(self.destinations.braze.iter().map(|b| b.api_key.clone()));
        v.extend(self.destinations.hubspot.iter().map(|h| h.access_token.clone()));
        v.extend(self.destinations.marketo.iter().map(|m| m.client_secret.clone()));
        v.extend(self.privacy.pseudonym_key.clone());
        v
    }
}

fn parse_env_value(v: &str) -> toml::Value {
    let probe = format!("x = {v}");
    match probe.parse::<toml::Table>() {
        Ok(mut t) => t.remove("x").unwrap_or_else(|| toml::Value::String(v.to_string())),
        Err(_) => toml::Value::String(v.to_string()),
    }
}

fn set_path(table: &mut toml::Table, path: &[String], value: toml::Value) -> Result<(), String> {
    let (last, parents) = path.split_last().expect("override paths have at least one segment");
    let mut t = table;
    for p in parents {
        let entry = t.entry(p.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
        t = entry.as_table_mut().ok_or_else(|| format!("`{p}` is not a table"))?;
    }
    t.insert(last.clone(), value);
    Ok(())
}

/// Replaces `${NAME}` in every string with the environment variable's value.
fn expand_env(v: &mut toml::Value, path: &str, env: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    match v {
        toml::Value::String(s) => {
            let mut out = String::with_capacity(s.len());
            let mut rest = s.as_str();
            while let Some(start) = rest.find("${") {
                out.push_str(&rest[..start]);
                let after = &rest[start + 2..];
                let end = after.find('}').ok_or_else(|| err(path, "unterminated `${`"))?;
                let name = &after[..end];
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                    return Err(err(path, format!("`${{{name}}}` is not a valid variable reference")));
                }
                let val = env
                    .get(name)
                    .ok_or_else(|| err(path, format!("environment variable {name} is not set")))?;
                out.push_str(val);
                rest = &after[end + 1..];
            }
            out.push_str(rest);
            *s = out;
        }
        toml::Value::Array(a) => {
            for (i, x) in a.iter_mut().enumerate() {
                expand_env(x, &format!("{path}[{i}]"), env)?;
            }
        }
        toml::Value::Table(t) => {
            for (k, x) in t.iter_mut() {
                let p = if path.is_empty() { k.clone() } else { format!("{path}.{k}") };
                expand_env(x, &p, env)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_without_a_file() {
        let c = Config::from_toml("", &env(&[])).unwrap();
        assert_eq!(c.server.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(c.server.max_body_bytes, 5 * 1024 * 1024);
        assert_eq!(c.storage.data_dir, PathBuf::from("./nudge-data"));
        assert_eq!(c.pipeline.checkout_abandon_after.0, Duration::from_secs(3600));
        assert_eq!(c.pipeline.attribute_prefix, "ai_");
        assert_eq!(c.pipeline.browse_retention.0, Duration::from_secs(30 * 86_400));
    }

    #[test]
    fn expands_secrets_and_applies_env_overrides() {
        let text = r#"
            [sources.shopify]
            secrets = ["${OLD}", "${NEW}"]
            [destinations.klaviyo]
            api_key = "${KEY}"
        "#;
        let c = Config::from_toml(
            text,
            &env(&[
                ("OLD", "s1"),
                ("NEW", "s2"),
                ("KEY", "pk_x"),
                ("NUDGE__PIPELINE__CHECKOUT_ABANDON_AFTER", "90s"),
                ("NUDGE__SERVER__LISTEN", "127.0.0.1:9999"),
            ]),
        )
        .unwrap();
        assert_eq!(c.sources.shopify.as_ref().unwrap().secrets, vec!["s1", "s2"]);
        assert_eq!(c.destinations.klaviyo.as_ref().unwrap().api_key, "pk_x");
        assert_eq!(c.pipeline.checkout_abandon_after.0, Duration::from_secs(90));
        assert_eq!(c.server.listen.port(), 9999);
        assert!(!format!("{c:?}").contains("pk_x") && !format!("{c:?}").contains("s1\""));
    }

    #[test]
    fn retention_is_checked_against_the_dedupe_window_and_the_audit_trail() {
        let ok = Config::from_toml("[storage]\nretention = \"30d\"\naudit_retention = \"400d\"", &env(&[]))
            .unwrap();
        assert_eq!(ok.storage.retention, Some(HumanDuration(Duration::from_secs(30 * 86_400))));
        assert_eq!(ok.storage.audit_retention, Some(HumanDuration(Duration::from_secs(400 * 86_400))));
        assert_eq!(
            Config::from_toml("", &env(&[])).unwrap().storage.retention,
            None,
            "kept for ever by default"
        );
        let e = Config::from_toml("[storage]\nretention = \"7d\"", &env(&[])).unwrap_err();
        assert_eq!(e.path, "storage.retention");
        assert!(e.reason.contains("dedupe_retention"), "{e}");
        let e = Config::from_toml("[storage]\nretention = \"30d\"\naudit_retention = \"20d\"", &env(&[]))
            .unwrap_err();
        assert_eq!(e.path, "storage.audit_retention");
        let e = Config::from_toml("[storage]\naudit_retention = \"2h\"", &env(&[])).unwrap_err();
        assert!(e.reason.contains("at least 1d"), "{e}");
        let e = Config::from_toml("[storage]\nretention = \"a month\"", &env(&[])).unwrap_err();
        assert_eq!(e.path, "storage.retention");
    }

    #[test]
    fn errors_name_the_key_path() {
        let e = Config::from_toml("[server]\nlisten = \"nope\"", &env(&[])).unwrap_err();
        assert_eq!(e.path, "server.listen");
        let e = Config::from_toml("[pipeline]\ncheckout_abandon_after = \"5 weeks\"", &env(&[])).unwrap_err();
        assert_eq!(e.path, "pipeline.checkout_abandon_after");
        let e = Config::from_toml("[sources.shopify]\nsecrets = [\"${MISSING}\"]", &env(&[])).unwrap_err();
        assert_eq!(e.path, "sources.shopify.secrets[0]");
        assert!(e.reason.contains("MISSING"));
        let e = Config::from_toml("[server]\nlisten_typo = 1", &env(&[])).unwrap_err();
        assert!(e.reason.contains("unknown field"), "{e}");
        let e = Config::from_toml("[sources.shopify]\nsecrets = []", &env(&[])).unwrap_err();
        assert_eq!(e.path, "sources.shopify.secrets");
        let e =
            Config::from_toml("[sources.adobe_commerce]\nwebhook_public_key = \"x\"", &env(&[])).unwrap_err();
        assert_eq!(e.path, "sources.adobe_commerce.webhook_public_key");
        let adobe_io = "[sources.adobe_commerce.io_events]\nclient_id = \"c\"\n";
        let e = Config::from_toml(&format!("{adobe_io}public_keys = [\"x\"]"), &env(&[])).unwrap_err();
        assert_eq!(e.path, "sources.adobe_commerce.io_events.public_keys[0]");
        let e =
            Config::from_toml(&format!("{adobe_io}public_key_base_url = \"http://keys.example\""), &env(&[]))
                .unwrap_err();
        assert_eq!(e.path, "sources.adobe_commerce.io_events.public_key_base_url");
        let ok = Config::from_toml(adobe_io, &env(&[])).unwrap();
        assert_eq!(ok.sources.adobe_commerce.unwrap().instance, "default");
        for (text, path) in [
            (
                "[sources.shopify.pubsub]\naudience = \"a\"\nservice_account_email = \"s@x\"\njwks = \"{}\"",
                "sources.shopify.pubsub.jwks",
            ),
            (
                "[sources.shopify.pubsub]\naudience = \" \"\nservice_account_email = \"s@x\"\njwks = \"\"",
                "sources.shopify.pubsub.audience",
            ),
            ("[sources.shopify.eventbridge]\nvalue = \"short\"", "sources.shopify.eventbridge.value"),
            (
                "[sources.shopify.eventbridge]\nheader = \"Authorization\"\nvalue = \"0123456789abcdef\"",
                "sources.shopify.eventbridge.header",
            ),
            (
                "[sources.shopify]\nsecrets = [\"s\"]\n[sources.shopify.admin]\nshop_domain = \"shop.example.com\"\naccess_token = \"t\"",
                "sources.shopify.admin.shop_domain",
            ),
            (
                "[sources.shopify]\nsecrets = [\"s\"]\n[sources.shopify.admin]\nshop_domain = \"a.myshopify.com\"\naccess_token = \"t\"\napi_version = \"2026-02\"",
                "sources.shopify.admin.api_version",
            ),
        ] {
            assert_eq!(Config::from_toml(text, &env(&[])).unwrap_err().path, path, "{text}");
        }
        // Pub/Sub or EventBridge alone need no HTTPS secret; their secrets are known for redaction.
        let c = Config::from_toml(
            "[sources.shopify.eventbridge]\nvalue = \"${EB}\"\n[sources.shopify.admin]\nshop_domain = \"a.myshopify.com\"\naccess_token = \"${TOK}\"",
            &env(&[("EB", "0123456789abcdefXYZ"), ("TOK", "shpat_abc")]),
        )
        .unwrap();
        let shopify = c.sources.shopify.as_ref().unwrap();
        assert_eq!(shopify.eventbridge.as_ref().unwrap().header, "x-nudge-api-key");
        assert_eq!(shopify.admin.as_ref().unwrap().cache_ttl.0, Duration::from_secs(600));
        assert!(c.secrets().contains(&"0123456789abcdefXYZ".to_string()));
        assert!(c.secrets().contains(&"shpat_abc".to_string()));
        let debug = format!("{c:?}");
        assert!(!debug.contains("0123456789abcdefXYZ") && !debug.contains("shpat_abc"), "{debug}");
        let e = Config::from_toml("[pipeline]\nattribute_prefix = \"ai-\"", &env(&[])).unwrap_err();
        assert_eq!(e.path, "pipeline.attribute_prefix");
        let e = Config::from_toml("[destinations.klaviyo]\napi_key = \"\"", &env(&[])).unwrap_err();
        assert_eq!(e.path, "destinations.klaviyo");
        let e = Config::from_toml("[server\n", &env(&[])).unwrap_err();
        assert_eq!(e.path, "<file>");
        let e = Config::from_toml("[pipeline]\nworker_scheduling = \"realtime\"", &env(&[])).unwrap_err();
        assert_eq!(e.path, "pipeline.worker_scheduling");
    }

    #[test]
    fn engagement_sources_read_and_name_the_key_of_each_problem() {
        let one = "[sources.klaviyo_webhooks]\nsecret = \"klaviyo_webhook_secret_0001\"\n[sources.braze_currents]\ntoken = \"currents-token-0123456789\"\n";
        let c = Config::from_toml(one, &env(&[])).unwrap();
        let k = c.sources.klaviyo_webhooks.as_ref().unwrap();
        assert_eq!(k.secret, vec!["klaviyo_webhook_secret_0001".to_string()]);
        assert_eq!(k.source().max_skew_secs, 300);
        assert!(!format!("{c:?}").contains("klaviyo_webhook_secret_0001"));
        assert!(!format!("{c:?}").contains("currents-token-0123456789"));
        assert!(c.secrets().contains(&"currents-token-0123456789".to_string()));
        let many = "[sources.klaviyo_webhooks]\nsecret = [\"klaviyo_webhook_secret_0001\", \"klaviyo_webhook_secret_0002\"]\nmax_skew = \"2m\"\n";
        let c = Config::from_toml(many, &env(&[])).unwrap();
        assert_eq!(c.sources.klaviyo_webhooks.as_ref().unwrap().source().secrets.len(), 2);
        assert_eq!(c.sources.klaviyo_webhooks.as_ref().unwrap().source().max_skew_secs, 120);
        for (toml, key) in [
            ("[sources.klaviyo_webhooks]\nsecret = []", "sources.klaviyo_webhooks.secret"),
            ("[sources.klaviyo_webhooks]\nsecret = \"short\"", "sources.klaviyo_webhooks.secret[0]"),
            (
                "[sources.klaviyo_webhooks]\nsecret = \"klaviyo_webhook_secret_0001\"\nmax_skew = \"2h\"",
                "sources.klaviyo_webhooks.max_skew",
            ),
            ("[sources.braze_currents]\ntoken = \"short\"", "sources.braze_currents.token"),
            (
                "[sources.braze_currents]\ntoken = \"has a space in it, long enough\"",
                "sources.braze_currents.token",
            ),
        ] {
            let e = Config::from_toml(toml, &env(&[])).unwrap_err();
            assert_eq!(e.path, key, "{toml}: {e:?}");
        }
    }

    #[test]
    fn bigcommerce_source_reads_and_names_the_key_of_each_problem() {
        let ok = "[sources.bigcommerce]\nstore_hash = \"abc123\"\naccess_token = \"tok\"\nclient_secret = \"sec\"\n[sources.bigcommerce.auth_headers]\nX-Nudge-Token = \"h\"\n";
        let c = Config::from_toml(ok, &env(&[])).unwrap();
        let b = c.sources.bigcommerce.as_ref().unwrap();
        assert_eq!(b.api_base, "https://api.bigcommerce.com");
        assert_eq!(b.source().auth_headers, vec![("X-Nudge-Token".to_string(), "h".to_string())]);
        let dbg = format!("{b:?}");
        assert!(!dbg.contains("tok\"") && !dbg.contains("sec\"") && !dbg.contains("\"h\""), "{dbg}");
        assert!(c.secrets().contains(&"sec".to_string()) && c.secrets().contains(&"tok".to_string()));
        for (toml, path) in [
            (
                "store_hash = \"a/b\"\naccess_token = \"t\"\nclient_secret = \"s\"",
                "sources.bigcommerce.store_hash",
            ),
            (
                "store_hash = \"abc\"\naccess_token = \"\"\nclient_secret = \"s\"",
                "sources.bigcommerce.access_token",
            ),
            ("store_hash = \"abc\"\naccess_token = \"t\"", "sources.bigcommerce"),
            (
                "store_hash = \"abc\"\naccess_token = \"t\"\nrequire_signature = true\n[sources.bigcommerce.auth_headers]\nX-A = \"v\"",
                "sources.bigcommerce.require_signature",
            ),
            (
                "store_hash = \"abc\"\naccess_token = \"t\"\nclient_secret = \"s\"\napi_base = \"http://example.com\"",
                "sources.bigcommerce.api_base",
            ),
            (
                "store_hash = \"abc\"\naccess_token = \"t\"\n[sources.bigcommerce.auth_headers]\nX-A = \"\"",
                "sources.bigcommerce.auth_headers.X-A",
            ),
        ] {
            let e = Config::from_toml(&format!("[sources.bigcommerce]\n{toml}"), &env(&[])).unwrap_err();
            assert_eq!(e.path, path, "{toml}");
        }
    }

    #[test]
    fn yotpo_and_smile_sources_need_a_long_url_token() {
        let tok = "yt_3e9c1b7f0a5d4e2c8b6a9f10";
        let ok = format!(
            "[sources.yotpo]\napp_key = \"app1\"\nsecret = \"ysec\"\nurl_token = \"{tok}\"\n[sources.smile]\nurl_token = \"{tok}\"\napi_key = \"smk-9z\"\n"
        );
        let c = Config::from_toml(&ok, &env(&[])).unwrap();
        let y = c.sources.yotpo.as_ref().unwrap();
        assert_eq!(y.api_base, "https://api.yotpo.com");
        assert_eq!(c.sources.smile.as_ref().unwrap().api_base, "https://api.smile.io");
        let dbg = format!("{y:?} {:?}", c.sources.smile);
        assert!(!dbg.contains(tok) && !dbg.contains("ysec") && !dbg.contains("smk-9z"), "{dbg}");
        for secret in [tok, "ysec", "smk-9z"] {
            assert!(c.secrets().contains(&secret.to_string()), "{secret}");
        }
        for (toml, path, words) in [
            (
                "[sources.yotpo]\napp_key = \"app1\"\nsecret = \"s\"\nurl_token = \"short-token\"",
                "sources.yotpo.url_token",
                "at least 24",
            ),
            (
                "[sources.smile]\napi_key = \"k\"\nurl_token = \"0123456789abcdef0123456\"",
                "sources.smile.url_token",
                "at least 24",
            ),
            (
                "[sources.smile]\napi_key = \"k\"\nurl_token = \"0123456789abcdef01234567/\"",
                "sources.smile.url_token",
                "only letters",
            ),
            (
                "[sources.yotpo]\napp_key = \"a/b\"\nsecret = \"s\"\nurl_token = \"0123456789abcdef01234567\"",
                "sources.yotpo.app_key",
                "app key",
            ),
            (
                "[sources.yotpo]\napp_key = \"a\"\nsecret = \"\"\nurl_token = \"0123456789abcdef01234567\"",
                "sources.yotpo.secret",
                "empty",
            ),
            (
                "[sources.smile]\napi_key = \"k\"\nurl_token = \"0123456789abcdef01234567\"\napi_base = \"http://example.com\"",
                "sources.smile.api_base",
                "https",
            ),
        ] {
            let e = Config::from_toml(toml, &env(&[])).unwrap_err();
            assert_eq!(e.path, path, "{toml}");
            assert!(e.to_string().contains(words), "{e}");
        }
    }

    #[test]
    fn braze_and_hubspot_are_destinations_checked_with_key_paths() {
        let text = r#"
            [destinations.braze]
            api_key = "${BRAZE_KEY}"
            rest_endpoint = "https://rest.fra-01.braze.eu"
            batch_size = 50
            [destinations.hubspot]
            access_token = "pat-na1-secret"
            max_in_flight = 2
        "#;
        let c = Config::from_toml(text, &env(&[("BRAZE_KEY", "braze-secret")])).unwrap();
        assert_eq!(c.destination_names(), vec!["braze", "hubspot"]);
        assert_eq!(c.delivery_settings()["hubspot"].max_in_flight, 2);
        let secrets = c.secrets();
        assert!(
            secrets.contains(&"braze-secret".to_string()) && secrets.contains(&"pat-na1-secret".to_string())
        );
        assert!(!format!("{c:?}").contains("braze-secret") && !format!("{c:?}").contains("pat-na1-secret"));
        let flows = |action: &str| {
            format!("{text}\n[[flows]]\nname = \"f\"\ntrigger = \"order_placed\"\nactions = [{action}]\n")
        };
        let braze_env = env(&[("BRAZE_KEY", "k")]);
        Config::from_toml(
            &flows(r#"{ type = "add_to_list", destination = "braze", list_id = "vip" }"#),
            &braze_env,
        )
        .unwrap();
        let e = Config::from_toml(
            &flows(r#"{ type = "add_to_list", destination = "hubspot", list_id = "vip" }"#),
            &braze_env,
        )
        .unwrap_err();
        assert_eq!(e.path, "flows[0].actions[0].type", "{e}");
        assert!(e.reason.contains("HubSpot lists are built from contact properties"), "{e}");

        let bad = |t: &str, path: &str| {
            let e = Config::from_toml(t, &env(&[])).unwrap_err();
            assert_eq!(e.path, path, "{e}");
        };
        bad(
            "[destinations.braze]\napi_key = \"k\"\nrest_endpoint = \"http://rest.iad-01.braze.com\"",
            "destinations.braze.rest_endpoint",
        );
        bad(
            "[destinations.braze]\napi_key = \"k\"\nrest_endpoint = \"https://rest.iad-01.braze.com\"\nbatch_size = 76",
            "destinations.braze.batch_size",
        );
        bad(
            "[destinations.braze]\napi_key = \"\"\nrest_endpoint = \"https://rest.iad-01.braze.com\"",
            "destinations.braze.api_key",
        );
        bad("[destinations.hubspot]\naccess_token = \"t\"\nrate = 500", "destinations.hubspot.rate");
        bad(
            "[destinations.hubspot]\naccess_token = \"t\"\nproperty_group = \"Nudge AI\"",
            "destinations.hubspot.property_group",
        );
        bad(
            "[destinations.hubspot]\naccess_token = \"t\"\nbatch_size = 101",
            "destinations.hubspot.batch_size",
        );
    }

    #[test]
    fn every_destination_takes_the_delivery_engine_keys() {
        let text = r#"
            [pipeline]
            max_attempts = 5
            [destinations.klaviyo]
            api_key = "pk_x"
            max_in_flight = 8
            linger = "20ms"
            dead_letter_after = "2h"
            [destinations.slack]
            webhook_url = "https://hooks.slack.com/services/T/B/X"
            enabled = false
            [[destinations.webhooks]]
            name = "crm"
            url = "https://crm.example.com/in"
            secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw3Mq2kbhnVQs="
            max_attempts = 3
        "#;
        let c = Config::from_toml(text, &env(&[])).unwrap();
        assert_eq!(c.destination_names(), vec!["klaviyo", "webhook:crm"], "a disabled destination is none");
        let s = c.delivery_settings();
        let k = &s["klaviyo"];
        assert_eq!((k.max_in_flight, k.max_attempts), (8, 5));
        assert_eq!(k.linger, Duration::from_millis(20));
        assert_eq!(k.dead_letter_after, Some(Duration::from_secs(7200)));
        assert_eq!(s["webhook:crm"].max_attempts, 3);
        assert_eq!(c.default_delivery().max_attempts, 5);
        assert_eq!(c.delivery_for("klaviyo"), s["klaviyo"]);
        assert_eq!(
            c.delivery_for("webhook:none").max_attempts,
            5,
            "a destination without keys gets the defaults"
        );
        assert!(c.destinations.webhooks[0].enabled, "webhooks keep their own enabled");

        let bad = |extra: &str, path: &str| {
            let t = format!("[destinations.klaviyo]\napi_key = \"pk_x\"\n{extra}\n");
            let e = Config::from_toml(&t, &env(&[])).unwrap_err();
            assert_eq!(e.path, path, "{e}");
        };
        bad("max_in_flight = 0", "destinations.klaviyo.max_in_flight");
        bad("max_in_flight = 65", "destinations.klaviyo.max_in_flight");
        bad("max_attempts = 0", "destinations.klaviyo.max_attempts");
        bad("linger = \"11s\"", "destinations.klaviyo.linger");
        bad("linger = \"soon\"", "destinations.klaviyo.linger");
        bad("enabled = \"yes\"", "destinations.klaviyo.enabled");
        bad("dead_letter_after = \"0s\"", "destinations.klaviyo.dead_letter_after");
    }

    #[test]
    fn webhook_and_slack_destinations_are_checked_with_key_paths() {
        let hook = |name: &str, url: &str, secret: &str| {
            format!("[[destinations.webhooks]]\nname = \"{name}\"\nurl = \"{url}\"\nsecret = \"{secret}\"\n")
        };
        const S: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw3Mq2kbhnVQs=";
        let good = hook("crm", "https://hooks.example.com/in", S);
        let c = Config::from_toml(
            &format!("{good}{}", hook("erp", "https://erp.example.com/in", S.trim_end_matches('='))),
            &env(&[]),
        )
        .unwrap();
        assert_eq!(c.destination_names(), vec!["webhook:crm", "webhook:erp"]);
        assert!(c.secrets().iter().any(|s| s == S));
        assert!(!format!("{c:?}").contains("MfKQ9r8GKYqrTwjUPD8"), "the secret never shows in Debug");
        let bad = |second: String, path: &str| {
            let e = Config::from_toml(&format!("{good}{second}"), &env(&[])).unwrap_err();
            assert_eq!(e.path, path, "{e}");
            assert!(!e.reason.contains("MfKQ9r8GKYqrTwjUPD8"), "{e}");
            e
        };
        let e = bad(hook("erp", "https://erp.example.com/in", ""), "destinations.webhooks[1].secret");
        assert!(e.reason.contains("empty"), "{e}");
        bad(hook("erp", "https://erp.example.com/in", "whsec_%%%"), "destinations.webhooks[1].secret");
        let e = bad(
            hook("erp", "https://erp.example.com/in", "whsec_c2hvcnQ="),
            "destinations.webhooks[1].secret",
        );
        assert!(e.reason.contains("5 bytes"), "{e}");
        bad(hook("erp", "http://erp.example.com/in", S), "destinations.webhooks[1].url");
        bad(hook("erp", "https://169.254.169.254/latest", S), "destinations.webhooks[1].url");
        bad(hook("crm", "https://erp.example.com/in", S), "destinations.webhooks[1].name");
        bad(
            format!("{}events = [\"nudge.nothing\"]\n", hook("erp", "https://erp.example.com/in", S)),
            "destinations.webhooks[1].events",
        );
        bad(
            format!("{}timeout = \"45s\"\n", hook("erp", "https://erp.example.com/in", S)),
            "destinations.webhooks[1].timeout",
        );
        let disabled = format!("{}enabled = false\n", hook("erp", "https://erp.example.com/in", S));
        let c = Config::from_toml(&format!("{good}{disabled}"), &env(&[])).unwrap();
        assert_eq!(c.destination_names(), vec!["webhook:crm"], "a disabled webhook is no destination");

        let slack = "[destinations.slack]\nwebhook_url = \"${SLACK_URL}\"";
        let url = "https://hooks.slack.com/services/T000/B000/TOKENTOKEN";
        let c = Config::from_toml(slack, &env(&[("SLACK_URL", url)])).unwrap();
        assert_eq!(c.destination_names(), vec!["slack"]);
        assert!(!format!("{c:?}").contains("TOKENTOKEN"));
        let e = Config::from_toml(slack, &env(&[("SLACK_URL", "http://hooks.slack.com/x/TOKENTOKEN")]))
            .unwrap_err();
        assert_eq!(e.path, "destinations.slack.webhook_url");
        assert!(!e.reason.contains("TOKENTOKEN"), "{e}");
    }

    #[test]
    fn flows_route_alerts_to_slack_and_webhooks_only() {
        let base = "[destinations.slack]\nwebhook_url = \"https://hooks.slack.com/services/T/B/X\"\n[destinations.klaviyo]\napi_key = \"pk_x\"\n";
        let flow = |actions: &str| {
            format!("{base}[[flows]]\nname = \"f\"\ntrigger = \"order_placed\"\nactions = [{actions}]\n")
        };
        Config::from_toml(
            &flow(r#"{ type = "slack_alert", destination = "slack", text = "'order ' + event.order_id" }"#),
            &env(&[]),
        )
        .unwrap();
        let e = Config::from_toml(&flow(r#"{ type = "sync_profile", destination = "slack" }"#), &env(&[]))
            .unwrap_err();
        assert_eq!(e.path, "flows[0].actions[0].type");
        let e = Config::from_toml(
            &flow(r#"{ type = "slack_alert", destination = "klaviyo", text = "'x'" }"#),
            &env(&[]),
        )
        .unwrap_err();
        assert_eq!(e.path, "flows[0].actions[0].type");
        let e = Config::from_toml(
            &flow(r#"{ type = "slack_alert", destination = "slack", text = "customer.email" }"#),
            &env(&[]),
        )
        .unwrap_err();
        assert_eq!(e.path, "flows[0].actions[0].text", "no personal field exists to put in a message");
        // Without flows, the built-in ones go to the marketing platform only.
        let c = Config::from_toml(base, &env(&[])).unwrap();
        let set = c.flow_set().unwrap();
        assert!(set.flows.iter().flat_map(|f| &f.spec.actions).all(|a| a.destination() == "klaviyo"));
    }

    #[test]
    fn the_pseudonym_key_is_a_checked_secret() {
        let text = "[privacy]\npseudonym_key = \"${NUDGE_PSEUDONYM_KEY}\"";
        let key = "k3y-of-at-least-thirty-two-bytes-0123456789";
        let c = Config::from_toml(text, &env(&[("NUDGE_PSEUDONYM_KEY", key)])).unwrap();
        assert_eq!(c.privacy.pseudonym_key.as_deref(), Some(key));
        assert!(c.secrets().iter().any(|s| s == key), "the key is among the secrets");
        assert!(!format!("{c:?}").contains(key), "the key never shows in Debug");
        assert!(!format!("{:?}", c.privacy.key().unwrap()).contains(key));
        let e = Config::from_toml(text, &env(&[("NUDGE_PSEUDONYM_KEY", "short")])).unwrap_err();
        assert_eq!(e.path, "privacy.pseudonym_key");
        assert!(e.reason.contains("32 bytes") && !e.reason.contains("short"), "{e}");
        let e = Config::from_toml(text, &env(&[])).unwrap_err();
        assert_eq!(e.path, "privacy.pseudonym_key");
        assert!(Config::from_toml("", &env(&[])).unwrap().privacy.pseudonym_key.is_none());
    }

    #[test]
    fn worker_scheduling_sets_the_background_priority() {
        use nudge_store::sqlite::BackgroundPriority;
        let d = Config::from_toml("", &env(&[])).unwrap();
        assert_eq!(d.pipeline.worker_scheduling, WorkerScheduling::Auto);
        assert_eq!(d.worker_priority(), BackgroundPriority { nice: 10, idle: true });
        // Auto: the normal class at the niceness on PostgreSQL.
        let pg = "[storage]\nbackend = \"postgres\"\npostgres_url = \"postgres://db/nudge\"\n\
                  [privacy]\npseudonym_key = \"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk\"\n";
        let d = Config::from_toml(pg, &env(&[])).unwrap();
        assert_eq!(d.worker_priority(), BackgroundPriority { nice: 10, idle: false });
        let d =
            Config::from_toml(&format!("{pg}[pipeline]\nworker_scheduling = \"idle\""), &env(&[])).unwrap();
        assert_eq!(d.worker_priority(), BackgroundPriority { nice: 10, idle: true });
        let text = "[pipeline]\nworker_scheduling = \"nice\"\nworker_nice = 19";
        let p = Config::from_toml(text, &env(&[])).unwrap();
        assert_eq!(p.worker_priority(), BackgroundPriority { nice: 19, idle: false });
        let p = Config::from_toml("", &env(&[("NUDGE__PIPELINE__WORKER_SCHEDULING", "nice")])).unwrap();
        assert_eq!(p.pipeline.worker_scheduling, WorkerScheduling::Nice);
    }

    #[test]
    fn the_reference_file_is_valid_and_states_the_defaults() {
        let text = include_str!("../../../nudge.example.toml");
        let c = Config::from_toml(
            text,
            &env(&[("SHOPIFY_APP_SECRET", "shpss_x"), ("KLAVIYO_PRIVATE_KEY", "pk_x")]),
        )
        .unwrap();
        let d = Config::from_toml("", &env(&[])).unwrap();
        assert_eq!(c.server.listen, d.server.listen);
        assert_eq!(c.server.max_body_bytes, d.server.max_body_bytes);
        assert_eq!(c.storage.data_dir, d.storage.data_dir);
        assert_eq!(c.storage.backend, d.storage.backend);
        assert_eq!(c.storage.postgres_schema, d.storage.postgres_schema);
        assert_eq!(c.storage.postgres_pool, d.storage.postgres_pool);
        assert_eq!(c.pipeline.checkout_abandon_after, d.pipeline.checkout_abandon_after);
        assert_eq!(c.pipeline.refit_every, d.pipeline.refit_every);
        assert_eq!(c.worker_priority(), d.worker_priority());
        assert_eq!(c.segments, d.segments);
        assert_eq!(c.models.misfit_rules(), d.models.misfit_rules());
        assert_eq!(c.models.refit_holdout, d.models.refit_holdout);
        assert_eq!(c.models.refit_max_quality_drop, d.models.refit_max_quality_drop);
        let k = c.destinations.klaviyo.unwrap();
        assert_eq!(k.base_url, "https://a.klaviyo.com");
        assert_eq!(k.revision, "2026-07-15");
    }

    #[test]
    fn model_selection_keys_are_checked() {
        let bad = |toml: &str, key: &str| {
            let e = Config::from_toml(toml, &env(&[])).unwrap_err();
            assert!(e.path.starts_with(key), "{toml}: {e}");
        };
        bad("[models]\nmax_tracking_deviation = 0.0", "models.max_tracking_deviation");
        bad("[models]\nmax_chi_square_ratio = 0.5", "models.max_chi_square_ratio");
        bad("[models]\nrefit_max_quality_drop = 1.5", "models.refit_max_quality_drop");
        bad("[models]\nmax_tracking = 0.1", "models");
        let c =
            Config::from_toml("[models]\nmax_tracking_deviation = 0.2\nrefit_holdout = \"0s\"", &env(&[]))
                .unwrap();
        assert_eq!(c.models.misfit_rules().max_tracking_deviation, 0.2);
        assert!(c.models.refit_holdout.0.is_zero());
    }

    #[test]
    fn durations_parse() {
        assert_eq!(HumanDuration::parse("90s").unwrap().0, Duration::from_secs(90));
        assert_eq!(HumanDuration::parse("2h").unwrap().0, Duration::from_secs(7200));
        assert_eq!(HumanDuration::parse("250ms").unwrap().0, Duration::from_millis(250));
        assert!(HumanDuration::parse("h").is_err());
        assert!(HumanDuration::parse("5w").is_err());
    }

    #[test]
    fn the_postgres_backend_needs_a_url_and_a_plain_schema_name() {
        let e = Config::from_toml("[storage]\nbackend = \"postgres\"", &env(&[])).unwrap_err();
        assert!(e.to_string().contains("storage.postgres_url"), "{e}");
        let e =
            Config::from_toml("[storage]\nbackend = \"postgres\"\npostgres_url = \"mysql://x\"", &env(&[]))
                .unwrap_err();
        assert!(e.to_string().contains("postgres://"), "{e}");
        let text = "[storage]\nbackend = \"postgres\"\npostgres_url = \"${PG}\"\npostgres_schema = \"shop_eu\"\n\
                    [cluster]\nnode_id = \"a\"";
        let e = Config::from_toml(text, &env(&[("PG", "postgres://u:p@db:5432/nudge")])).unwrap_err();
        assert!(e.to_string().contains("privacy.pseudonym_key"), "{e}");
        let text = format!("{text}\n[privacy]\npseudonym_key = \"{}\"", "k".repeat(40));
        let c = Config::from_toml(&text, &env(&[("PG", "postgres://u:p@db:5432/nudge")])).unwrap();
        assert_eq!(c.storage.backend, StorageBackend::Postgres);
        assert_eq!(c.storage.postgres_url.as_deref(), Some("postgres://u:p@db:5432/nudge"));
        assert_eq!(c.cluster.node_id.as_deref(), Some("a"));
        for bad in ["\"\"", "\"1st\"", "\"a-b\"", "\"a;drop\""] {
            let text = format!("[storage]\npostgres_schema = {bad}");
            let e = Config::from_toml(&text, &env(&[])).unwrap_err();
            assert!(e.to_string().contains("storage.postgres_schema"), "{bad}: {e}");
        }
        let e = Config::from_toml("[storage]\npostgres_pool = 1", &env(&[])).unwrap_err();
        assert!(e.to_string().contains("storage.postgres_pool"), "{e}");
        let e = Config::from_toml("[storage]\npostgres_ack_linger = \"51ms\"", &env(&[])).unwrap_err();
        assert!(e.to_string().contains("storage.postgres_ack_linger"), "{e}");
        let c = Config::from_toml("[storage]\npostgres_ack_linger = \"0ms\"", &env(&[])).unwrap();
        assert_eq!(c.storage.postgres_ack_linger.0, Duration::ZERO);
        let e = Config::from_toml("[storage]\nbackend = \"mysql\"", &env(&[])).unwrap_err();
        assert!(e.to_string().contains("backend"), "{e}");
    }

    #[test]
    fn bus_and_cache_keys_are_checked() {
        let pg = "[storage]\nbackend = \"postgres\"\npostgres_url = \"postgres://db/n\"\n\
                  [privacy]\npseudonym_key = \"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk\"\n";
        let c = Config::from_toml(pg, &env(&[])).unwrap();
        assert_eq!(
            (c.bus.backend, c.bus.partitions, c.cache.backend),
            (BusBackend::Store, 32, CacheBackend::Embedded)
        );
        let c = Config::from_toml(
            &format!("{pg}[bus]\npartitions = 64\n[cache]\nbackend = \"redis\"\nredis_url = \"redis://127.0.0.1:6379\""),
            &env(&[]),
        )
        .unwrap();
        assert_eq!((c.bus.partitions, c.cache.backend), (64, CacheBackend::Redis));
        let c = Config::from_toml(
            &format!("{pg}[bus]\nbackend = \"rabbitmq\"\namqp_url = \"amqp://guest:guest@mq:5672/%2f\""),
            &env(&[]),
        )
        .unwrap();
        assert_eq!((c.bus.backend, c.bus.queue.as_str()), (BusBackend::Rabbitmq, "nudge.deliveries"));
        for (text, key) in [
            (format!("{pg}[bus]\nbackend = \"rabbitmq\""), "bus.amqp_url"),
            (
                "[bus]\nbackend = \"rabbitmq\"\namqp_url = \"amqp://127.0.0.1:5672\"".to_string(),
                "bus.backend",
            ),
            (
                format!(
                    "{pg}[bus]\nbackend = \"rabbitmq\"\namqp_url = \"amqp://mq\"\namqp_ca_file = \"ca.pem\""
                ),
                "bus.amqp_ca_file",
            ),
            (format!("{pg}[bus]\nbackend = \"rabbitmq\"\namqp_url = \"http://mq\""), "bus.amqp_url"),
            (
                format!("{pg}[bus]\nbackend = \"rabbitmq\"\namqp_url = \"amqp://mq\"\nqueue = \"amq.x\""),
                "bus.queue",
            ),
            (
                format!("{pg}[bus]\nbackend = \"rabbitmq\"\namqp_url = \"amqp://mq\"\nqueue = \"a b\""),
                "bus.queue",
            ),
            (format!("{pg}[bus]\namqp_url = \"amqp://127.0.0.1:5672\""), "bus.amqp_url"),
            (format!("{pg}[bus]\npartitions = 0"), "bus.partitions"),
            (format!("{pg}[bus]\npartitions = 5000"), "bus.partitions"),
            (format!("{pg}[cache]\nbackend = \"redis\""), "cache.redis_url"),
            (format!("{pg}[cache]\nbackend = \"redis\"\nredis_url = \"http://x\""), "cache.redis_url"),
            ("[cache]\nbackend = \"redis\"\nredis_url = \"redis://x\"".to_string(), "cache.backend"),
        ] {
            let e = Config::from_toml(&text, &env(&[])).unwrap_err();
            assert!(e.to_string().contains(key), "{text}: {e}");
        }
    }

    #[test]
    fn an_amqps_bus_reads_and_checks_its_tls_files() {
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: &str| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            p.display().to_string()
        };
        let ca = file("ca.pem", nudge_testkit::tls_front::CA_PEM);
        let cert = file("node.pem", nudge_testkit::tls_front::CLIENT_CERT_PEM);
        let key = file("node.key", nudge_testkit::tls_front::CLIENT_KEY_PEM);
        let junk = file("junk.pem", "not a certificate");
        let missing = dir.path().join("missing.pem").display().to_string();
        let base = "[storage]\nbackend = \"postgres\"\npostgres_url = \"postgres://db/n\"\n\
                    [privacy]\npseudonym_key = \"kkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkkk\"\n\
                    [bus]\nbackend = \"rabbitmq\"\namqp_url = \"amqps://nudge:pw@mq.example.com:5671/%2f\"\n";
        // The system's trust store alone, then a private CA and a client certificate.
        let c = Config::from_toml(base, &env(&[])).unwrap();
        assert_eq!(c.bus.tls().unwrap(), nudge_store::rabbitmq::BusTls::default());
        let text =
            format!("{base}amqp_ca_file = {ca:?}\namqp_cert_file = {cert:?}\namqp_key_file = {key:?}\n");
        let tls = Config::from_toml(&text, &env(&[])).unwrap().bus.tls().unwrap();
        assert_eq!(tls.ca_pem.as_deref(), Some(nudge_testkit::tls_front::CA_PEM));
        assert_eq!(tls.client.map(|c| c.1).as_deref(), Some(nudge_testkit::tls_front::CLIENT_KEY_PEM));
        for (extra, key, says) in [
            (format!("amqp_ca_file = {missing:?}"), "bus.amqp_ca_file", "cannot read"),
            (format!("amqp_ca_file = {junk:?}"), "bus.amqp_ca_file", "no PEM certificate"),
            (format!("amqp_cert_file = {cert:?}"), "bus.amqp_key_file", "is required"),
            (format!("amqp_key_file = {key:?}"), "bus.amqp_cert_file", "is required"),
            (format!("amqp_cert_file = {key:?}\namqp_key_file = {key:?}"), "bus.amqp_cert_file", "no PEM"),
            (
                format!("amqp_cert_file = {cert:?}\namqp_key_file = {cert:?}"),
                "bus.amqp_key_file",
                "private key",
            ),
        ] {
            let e = Config::from_toml(&format!("{base}{extra}\n"), &env(&[])).unwrap_err();
            assert!(e.to_string().contains(key) && e.to_string().contains(says), "{extra}: {e}");
        }
    }
}
