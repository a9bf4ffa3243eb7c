//! The PostgreSQL backend: every concern in one database (or one schema of it) that several nodes share.
//!
//! Each method is one transaction on a pooled connection (READ COMMITTED), so what one node commits every
//! other node sees at once. What makes the shared database safe for several writers:
//! - Dedupe is a primary key (`delivery_keys.key`): of two nodes committing the same key, one insert wins and
//!   the other's delivery is a duplicate.
//! - Each delivery carries its processing status, so deliveries committed out of `seq` order by different
//!   nodes are never skipped, and a processing commit marks exactly its deliveries.
//! - Rows that are claimed (due timers, and what several workers could take at once) are taken with
//!   `FOR UPDATE SKIP LOCKED` or by a conditional update, so each is taken once.
//! - The schema is applied under an advisory lock, so nodes starting together apply it once; its version is
//!   recorded, and a node built for a schema the database no longer keeps readable refuses to start
//!   ([`schema`]).

use crate::codec::*;
use crate::*;
use nudge_model::{AuditRecord, AuditStage, CustomerId, TerminalState, TraceId};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, Row, Transaction};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

mod approvals;
mod audit;
mod bandit;
pub mod cluster;
mod fetch;
mod identity;
mod log;
mod outbox;
pub mod partitions;
mod privacy;
mod processing;
mod registry;
mod retention;
mod routing;
pub mod schema;
mod segments;
mod states;
mod timers;
mod tokens;

const SCHEMA: &str = include_str!("../../migrations/postgres/001_init.sql");
const CLUSTER_SCHEMA: &str = include_str!("../../migrations/postgres/002_cluster.sql");
const PARTITIONS_SCHEMA: &str = include_str!("../../migrations/postgres/003_partitions.sql");
const PACKED_AUDIT_SCHEMA: &str = include_str!("../../migrations/postgres/004_packed_audit.sql");
const STATS_SCHEMA: &str = include_str!("../../migrations/postgres/005_stats.sql");
const VERSIONS_SCHEMA: &str = include_str!("../../migrations/postgres/006_schema_versions.sql");
const ROUTED_SCHEMA: &str = include_str!("../../migrations/postgres/007_routed_processing.sql");

/// The advisory lock key the schema is applied under (any fixed number; "nudge" in ASCII).
const SCHEMA_LOCK: i64 = 0x006e_7564_6765;

/// Where and how to connect.
#[derive(Debug, Clone)]
pub struct PgConfig {
    /// `postgres://user:password@host:port/database?sslmode=…`
    pub url: String,
    /// The schema the tables live in (created if missing); `None` is the connection's default (`public`).
    /// Several deployments can share a database, each in a schema of its own.
    pub schema: Option<String>,
    /// The pool's size per node.
    pub max_connections: u32,
    /// How long a call waits for a pooled connection (or a new one) before it fails. Short enough that a
    /// webhook arriving while the database is unreachable is answered 503 well within the platforms'
    /// timeouts (Shopify waits 5 s), so it is retried rather than counted as a failed delivery.
    pub acquire_timeout: Duration,
    /// `Processing::stats` counts the history of a table exactly while the planner's statistics give it
    /// fewer rows than this, and estimates it from a sample of about [`STATS_SAMPLE_ROWS`] rows above: the
    /// console asks every 40 s, and an exact count reads the whole table.
    pub exact_stats_below: u64,
    /// How long a committer of acknowledgements that found only a few waiting waits for more before it
    /// commits them together: every transaction costs the server a commit (a WAL flush) and a round trip, so
    /// at a steady rate a short wait buys fewer, larger transactions for a little latency. Zero commits at
    /// once what waited.
    pub ack_linger: Duration,
}

/// [`PgConfig::ack_linger`] unless configured (`storage.postgres_ack_linger`).
pub const DEFAULT_ACK_LINGER: Duration = Duration::from_millis(2);

/// About how many rows a sampled count of [`PgConfig::exact_stats_below`] reads.
pub const STATS_SAMPLE_ROWS: f64 = 30_000.0;

impl PgConfig {
    pub fn new(url: impl Into<String>) -> Self {
        PgConfig {
            url: url.into(),
            schema: None,
            max_connections: 16,
            acquire_timeout: Duration::from_secs(2),
            exact_stats_below: 1_000_000,
            ack_linger: DEFAULT_ACK_LINGER,
        }
    }
}

/// The PostgreSQL store.
pub struct PgStore {
    pool: PgPool,
    schema: String,
    /// For connections outside the pool (the leader lease).
    options: PgConnectOptions,
    /// Processing commits of this node go one at a time, in call order: a batch computed on top of one whose
    /// commit is still in flight (`commit_processing_after`) waits for it rather than finding it uncommitted.
    processing_gate: tokio::sync::Mutex<()>,
    /// Wakes the task that tells the leader about new deliveries.
    notifier: Arc<Notifier>,
    /// Acknowledgements waiting to be committed together, and the tasks that commit them (stopped when the
    /// store is dropped or closed).
    acks: log::GroupCommit,
    /// [`PgConfig::exact_stats_below`].
    exact_stats_below: u64,
}

/// A node's coalesced notifications of new deliveries: a NOTIFY inside each acknowledging transaction would
/// take PostgreSQL's notification lock across that transaction's commit flush and so serialise every node's
/// acknowledgements; one small NOTIFY of its own, at most every [`NOTIFY_SPACING`], tells the leader as well.
struct Notifier {
    wake: tokio::sync::Notify,
    stop: std::sync::atomic::AtomicBool,
}

/// The least time between two notifications from one node.
const NOTIFY_SPACING: Duration = Duration::from_millis(2);

impl Drop for PgStore {
    fn drop(&mut self) {
        self.notifier.stop.store(true, std::sync::atomic::Ordering::Relaxed);
        self.notifier.wake.notify_one();
    }
}

pub(crate) type Tx = Transaction<'static, Postgres>;

impl PgStore {
    /// Connects, creates the schema if needed and applies the tables (idempotent, serialised between nodes).
    pub async fn connect(config: &PgConfig) -> Result<Self> {
        let schema = config.schema.clone().unwrap_or_else(|| "public".to_string());
        if !valid_schema_name(&schema) {
            return Err(StoreError::Database(format!(
                "postgres schema {schema:?}: use letters, digits and underscores (not starting with a digit)"
            )));
        }
        // `nudge/<schema>` in pg_stat_activity: an operator sees (and can end) one deployment's sessions.
        let options = PgConnectOptions::from_str(&config.url)
            .map_err(|e| StoreError::Database(format!("postgres_url: {e}")))?
            .application_name(&format!("nudge/{schema}"))
            // JIT compilation pays off for long analytical queries, not for this short-query workload, where
            // a misestimated plan could spend 100 ms compiling.
            .options([("search_path", schema.as_str()), ("jit", "off")]);
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(2))
            .acquire_timeout(config.acquire_timeout)
            .connect_with(options.clone())
            .await?;
        let notifier = Arc::new(Notifier {
            wake: tokio::sync::Notify::new(),
            stop: std::sync::atomic::AtomicBool::new(false),
        });
        tokio::spawn(notify_loop(pool.clone(), notifier.clone()));
        let acks = log::GroupCommit::start(
            pool.clone(),
            notifier.clone(),
            config.max_connections.max(2),
            config.ack_linger,
        );
        let store = PgStore {
            pool,
            schema,
            options,
            processing_gate: tokio::sync::Mutex::new(()),
            notifier,
            acks,
            exact_stats_below: config.exact_stats_below,
        };
        store.apply_schema().await?;
        Ok(store)
    }

    async fn apply_schema(&self) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(SCHEMA_LOCK).execute(&mut *tx).await?;
        // Not a notice per table that already exists, on every start of every node.
        sqlx::query("SET LOCAL client_min_messages = warning").execute(&mut *tx).await?;
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE SCHEMA IF NOT EXISTS {}", self.schema)))
            .execute(&mut *tx)
            .await?;
        // Rolling upgrades: refuse before changing anything if this build cannot run on the schema, or if
        // its migrations cannot run beside a live older node.
        let recorded = schema::recorded(&mut tx).await?;
        let live = schema::live_nodes(&mut tx, now_ms()).await?;
        schema::may_run(recorded.as_ref(), &live, schema::SCHEMA_VERSION, schema::READABLE_FROM)
            .map_err(StoreError::Conflict)?;
        // A database already at this schema (or a newer one) is left alone: even a migration that changes
        // nothing locks its tables (`ALTER TABLE … IF NOT EXISTS` takes the table's exclusive lock), which a
        // node restarting beside live ones must not do to the log they are writing.
        let up_to_date = recorded.as_ref().is_some_and(|r| r.version >= schema::SCHEMA_VERSION);
        if !up_to_date {
            for migration in [
                SCHEMA,
                CLUSTER_SCHEMA,
                PARTITIONS_SCHEMA,
                PACKED_AUDIT_SCHEMA,
                STATS_SCHEMA,
                VERSIONS_SCHEMA,
                ROUTED_SCHEMA,
            ] {
                sqlx::raw_sql(migration).execute(&mut *tx).await?;
            }
        }
        schema::record(&mut tx, recorded.as_ref()).await?;
        tx.commit().await?;
        Ok(())
    }

    /// The connection pool (for the cluster's own tables and leases).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// The schema the tables live in.
    pub fn schema(&self) -> &str {
        &self.schema
    }

    pub(crate) async fn begin(&self) -> Result<Tx> {
        Ok(self.pool.begin().await?)
    }

    /// A transaction whose queries are planned on plain index scans (no sequential, bitmap or index-only
    /// scans): for counts of the pending rows, which partial indexes hold, where the planner would otherwise
    /// scan the whole table whenever the statistics say the status is common. Plain index scans also mark
    /// the entries of rows no longer pending as dead as they pass them (index-only scans do not), so later
    /// scans skip them until a vacuum removes them.
    pub(crate) async fn begin_by_index(&self) -> Result<Tx> {
        let mut tx = self.pool.begin().await?;
        sqlx::raw_sql(
            "SET LOCAL enable_seqscan = off; SET LOCAL enable_bitmapscan = off; \
             SET LOCAL enable_indexonlyscan = off",
        )
        .execute(&mut *tx)
        .await?;
        Ok(tx)
    }

    /// Drops this store's schema with everything in it, then closes the pool: for tests and benchmarks,
    /// which each work in a schema of their own. Refuses the default schema.
    pub async fn drop_schema(&self) -> Result<()> {
        if self.schema == "public" {
            return Err(StoreError::Conflict("the public schema is not dropped".into()));
        }
        sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema)))
            .execute(&self.pool)
            .await?;
        self.close().await;
        Ok(())
    }

    /// Closes the pool: waits for connections in use to be returned. The committers of acknowledgements stop
    /// with it.
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

async fn notify_loop(pool: PgPool, n: Arc<Notifier>) {
    loop {
        n.wake.notified().await;
        if n.stop.load(std::sync::atomic::Ordering::Relaxed) || pool.is_closed() {
            return;
        }
        // A lost hint costs only latency: the leader also polls.
        if let Err(e) =
            sqlx::query("SELECT pg_notify('nudge_deliveries_' || current_schema(), '')").execute(&pool).await
        {
            tracing::debug!(error = %e, "notifying the leader of new deliveries failed");
        }
        tokio::time::sleep(NOTIFY_SPACING).await;
    }
}

fn valid_schema_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !s.starts_with(|c: char| c.is_ascii_digit())
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::PoolClosed => StoreError::Closed,
            other => StoreError::Database(other.to_string()),
        }
    }
}

pub(crate) fn now_ms() -> i64 {
    ts_to_ms(time::OffsetDateTime::now_utc())
}

pub(crate) fn parse_trace(s: &str) -> Result<TraceId> {
    s.parse().map_err(|_| StoreError::Corrupt(format!("trace id {s:?}")))
}

pub(crate) fn parse_customer(s: &str) -> Result<CustomerId> {
    s.parse().map_err(|_| StoreError::Corrupt(format!("customer id {s:?}")))
}

/// Appends audit records, one row each (the detail as JSON text; PostgreSQL compresses large values itself).
pub(crate) async fn insert_audit<'a>(
    tx: &mut Tx,
    records: impl IntoIterator<Item = &'a AuditRecord>,
) -> Result<()> {
    let (mut traces, mut customers, mut stages, mut ats, mut details) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for r in records {
        traces.push(r.trace_id.to_string());
        customers.push(r.customer.as_ref().map(|c| c.to_string()));
        stages.push(r.stage.as_str().to_string());
        ats.push(ts_to_ms(r.at));
        details.push(serde_json::to_string(&r.detail)?);
    }
    if traces.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO audit (trace_id, customer_id, stage, at, detail)
         SELECT u.t, u.c, u.s, u.a, u.d
         FROM UNNEST($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[]) WITH ORDINALITY
           AS u(t, c, s, a, d, n)
         ORDER BY u.n",
    )
    .bind(traces)
    .bind(customers)
    .bind(stages)
    .bind(ats)
    .bind(details)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The columns [`audit_record`] reads, in order.
pub(crate) const AUDIT_COLUMNS: &str = "trace_id, customer_id, stage, at, detail";

/// An audit row read as [`AUDIT_COLUMNS`].
pub(crate) fn audit_record(r: &PgRow) -> Result<AuditRecord> {
    let trace = parse_trace(&r.try_get::<String, _>(0)?)?;
    let customer = r.try_get::<Option<String>, _>(1)?.as_deref().map(parse_customer).transpose()?;
    let stage: String = r.try_get(2)?;
    let detail: String = r.try_get(4)?;
    Ok(AuditRecord {
        trace_id: trace,
        customer,
        stage: AuditStage::parse(&stage)
            .ok_or_else(|| StoreError::Corrupt(format!("audit stage {stage:?}")))?,
        at: ms_to_ts(r.try_get(3)?),
        detail: serde_json::from_str(&detail)?,
    })
}

/// Records a trace's terminal state unless it has one (the first one recorded stands).
pub(crate) async fn insert_terminal(
    tx: &mut Tx,
    trace: TraceId,
    t: &TerminalState,
    at_ms: i64,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO terminal (trace_id, state, reason, at) VALUES ($1, $2, $3, $4) ON CONFLICT (trace_id) DO NOTHING",
    )
    .bind(trace.to_string())
    .bind(t.name())
    .bind(t.reason())
    .bind(at_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Forgets the terminal states of traces put back to work (a requeue): they get new ones when they end again.
pub(crate) async fn reopen_traces(tx: &mut Tx, traces: &[String]) -> Result<()> {
    if !traces.is_empty() {
        sqlx::query("DELETE FROM terminal WHERE trace_id = ANY($1::text[])")
            .bind(traces)
            .execute(&mut **tx)
            .await?;
    }
    Ok(())
}

/// The columns [`stored_delivery`] reads, in order.
pub(crate) const DELIVERY_COLUMNS: &str =
    "seq, trace_id, source, topic, shop, webhook_id, received_at, headers, body, body_codec";

/// A delivery row read as [`DELIVERY_COLUMNS`].
pub(crate) fn stored_delivery(r: &PgRow) -> Result<StoredDelivery> {
    let codec: i16 = r.try_get(9)?;
    Ok(StoredDelivery {
        seq: r.try_get(0)?,
        trace_id: parse_trace(&r.try_get::<String, _>(1)?)?,
        source: r.try_get(2)?,
        topic: r.try_get(3)?,
        shop: r.try_get(4)?,
        webhook_id: r.try_get(5)?,
        received_at_ms: r.try_get(6)?,
        headers_json: r.try_get(7)?,
        body: unpack(i64::from(codec), r.try_get(8)?).map_err(StoreError::Corrupt)?,
    })
}

/// The columns [`outbox_item`] reads, in order.
pub(crate) const OUTBOX_COLUMNS: &str = "id, trace_id, customer_id, destination, action, attempts, origin_us";

/// An outbox row read as [`OUTBOX_COLUMNS`].
pub(crate) fn outbox_item(r: &PgRow) -> Result<OutboxItem> {
    Ok(OutboxItem {
        id: r.try_get(0)?,
        trace_id: parse_trace(&r.try_get::<String, _>(1)?)?,
        customer: parse_customer(&r.try_get::<String, _>(2)?)?,
        destination: r.try_get(3)?,
        action_json: r.try_get(4)?,
        attempts: r.try_get::<i64, _>(5)?.clamp(0, i64::from(u32::MAX)) as u32,
        origin_us: r.try_get(6)?,
    })
}

/// Settles open offers at `value`: a customer's offers whose window holds `order_at_ms` (an order), or, with
/// no customer, every offer whose window ended before `order_at_ms` (expiry). Settlement numbers come from a
/// sequence, so they increase across nodes. Returns how many were settled.
pub(crate) async fn settle_offers(
    tx: &mut Tx,
    customer: Option<&str>,
    order_at_ms: i64,
    value: f64,
    now_ms: i64,
) -> Result<u64> {
    let ids: Vec<String> = match customer {
        Some(c) => {
            sqlx::query_scalar(
                "SELECT id FROM offer_log WHERE customer_id = $1 AND settled_at IS NULL
                 AND decided_at <= $2 AND window_end >= $2 ORDER BY decided_at, id FOR UPDATE",
            )
            .bind(c)
            .bind(order_at_ms)
            .fetch_all(&mut **tx)
            .await?
        }
        None => {
            sqlx::query_scalar(
                "SELECT id FROM offer_log WHERE settled_at IS NULL AND window_end < $1
                 ORDER BY window_end, id FOR UPDATE SKIP LOCKED",
            )
            .bind(order_at_ms)
            .fetch_all(&mut **tx)
            .await?
        }
    };
    for id in &ids {
        sqlx::query(
            "UPDATE offer_log SET outcome_value = $1, settled_at = $2, settle_seq = nextval('offer_settle_seq')
             WHERE id = $3",
        )
        .bind(value)
        .bind(now_ms)
        .bind(id)
        .execute(&mut **tx)
        .await?;
    }
    Ok(ids.len() as u64)
}
