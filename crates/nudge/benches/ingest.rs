//! Load benchmark of the spine: signed Shopify deliveries over keep-alive connections against an
//! in-process nudge (embedded SQLite, durable group commit) pushing to an unthrottled Klaviyo fake.
//!
//! `cargo bench -p nudge --bench ingest -- [--connections 64] [--seconds 10] [--rate 5000]
//!  [--rate-seconds 10] [--durability full|normal] [--worker-nice N] [--worker-scheduling idle|nice]
//!  [--progress 1] [--timeline 1] [--flows N] [--destinations 5] [--source bigcommerce]`
//! `cargo bench -p nudge --bench ingest -- --sustain 60 --seconds 60 [--customers 1000000] [--perf FILE]`
//!
//! Phase 2 reports event→processed (receipt to the processing commit) besides event→push; `--timeline 1`
//! prints both, and the ack latency, per half second of the phase (on stderr), to tell a stall from a
//! tail spread over the run, and the stage it came from.
//!
//! `--sustain S` measures processing capacity instead of the two phases below: a closed loop of `--seconds`
//! (requests built while sending, so a long fill holds little memory; `--customers` spreads them) fills
//! the durable log, then with no more requests it watches for up to S seconds how fast the backlog is
//! worked off (every stage up to the outbox committed), how fast the outbox pushes to an unthrottled
//! Klaviyo fake run in a process of its own (so its memory and CPU are not nudge's), nudge's resident
//! memory, and CPU per processed delivery by thread. `--perf FILE` records the window with `perf record`.
//!
//! `--source bigcommerce` sends signed BigCommerce callbacks (`store/order/created`, Standard Webhooks
//! signature) to `/webhooks/bigcommerce` instead of Shopify orders: phase 1 measures the durable acks of
//! thin notifications (each then becomes a fetch job the workers run against a fake BigCommerce API with no
//! quota; the orders are not seeded, so each read is a 404, a normal terminal outcome). Phase 2 is replaced
//! by a drain under the API's rate limit: `--drain-orders N` (default 300) seeded orders announced at once
//! against a fake allowing `--quota Q` requests (default 50) per second; it reports how long the fetches took
//! against the least the quota allows, and how many 429s the fake answered (the target is none).
//!
//! `--destinations 5` configures five destinations instead of one: Klaviyo plus Braze, HubSpot, Marketo,
//! Slack and a signed webhook, each against its fake, while the flows still act on Klaviyo only (the
//! built-in two, written out). What it measures is the cost of the other destinations' engines being there
//! (their workers, queues and sweeps) for the spine's figures.
//!
//! `--flows N` runs N live flows instead of the two built-in ones: the two built-in ones written out plus
//! N − 2 flows of mixed triggers, conditions, caps, holdouts and baselines (`bench_flows`).
//!
//! `--in-flight N` sets the Klaviyo destination's `max_in_flight` (requests at once; default 4).
//!
//! The load generator is this same program started again as a child process (`--role loadgen`): it builds
//! and signs every request before the clock starts, then writes them over raw HTTP/1.1 keep-alive
//! connections from one thread, so what is measured is nudge, not the cost of building JSON and HMACs.
//!
//! `--postgres URL [--pool 16] [--ack-linger MS]` runs the in-process nudge on the PostgreSQL backend instead of the embedded
//! store (`URL` as `storage.postgres_url`, e.g. `postgres://postgres@127.0.0.1:5432/test`), in a fresh schema
//! `nudge_bench_<random>` with `--pool` connections, dropped at the end of the run (`--sustain` too; not with
//! `--source bigcommerce`). `--durability` does not apply. The node is alone, so it takes the leader lease,
//! then waits out the takeover grace before its workers start: the phases start once it leads. Each phase
//! also reports PostgreSQL's CPU per delivery (its processes' user + system time on this machine, all of
//! them and nudge's sessions alone), and the end of the run the schema's bytes per delivery, as the run
//! left them and compacted (`VACUUM FULL`), and the server's WAL and checkpoints per phase. `--ack-linger`
//! sets `storage.postgres_ack_linger` in milliseconds.
//!
//! `--amqp URL` (with `--postgres`) acknowledges each webhook on RabbitMQ's publisher confirm
//! (`[bus] backend = "rabbitmq"`, e.g. `amqp://guest:guest@127.0.0.1:5672/%2f`) on a queue of the run's own,
//! deleted at the end; the node drains it into PostgreSQL's log. Not with `--sustain`. With
//! `--amqp-tls front` the node reaches the broker over TLS (`amqps://`), through a TLS front on loopback
//! (in this process, on a thread of its own) that stands for the broker's own TLS listener.
//!
//! `--nodes N` (with `--postgres`) runs N nodes of one cluster in this process, on one schema, each with a
//! listener of its own; the load generator spreads its connections over them, and the figures are the
//! cluster's (acks/s over all nodes, event→push over every node's pushes, CPU of the whole process). With
//! `--redis URL` the nodes share their rate limits in Redis and each processes and delivers its share of
//! the partitions (the leader routes the log to them); without it the leader processes and delivers
//! everything.
//!
//! Phase 1 sends back to back from `--connections` connections (closed loop) and reports sustained durable
//! acks/s with the ack latency quantiles, while nudge processes and pushes concurrently; then how long the
//! backlog took to drain, and the end-to-end rate (acked, processed and pushed). Phase 2 sends at a fixed
//! rate (open loop; latency counts from when each request was due, so a stalled server cannot hide queueing)
//! and reports the ack latency at that rate and the event→push latency of its deliveries. Everything runs on
//! this machine's loopback and stops by itself.

use nudge::config::{BigCommerceSourceConfig, Config, ShopifyConfig};
use nudge_ingest::bigcommerce::fixtures::{CallbackFixture, ItemFixture, OrderFixture as BcOrderFixture};
use nudge_ingest::shopify::fixtures::{CustomerFixture, LineItemFixture, OrderFixture};
use nudge_testkit::fake_klaviyo::{FakeKlaviyo, FakeKlaviyoConfig};
use nudge_testkit::{BigCommerceSender, Callback, FakeBigCommerce, FakeBigCommerceConfig};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The same allocator as the `nudge` binary, so the benchmark measures what ships.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const SECRET: &str = "bench_secret";
const KEY: &str = "pk_bench";
/// Customers the deliveries are spread over.
const CUSTOMERS: u64 = 50_000;

struct Args {
    connections: usize,
    seconds: u64,
    rate: u64,
    rate_seconds: u64,
    durability: nudge_store::sqlite::Durability,
    worker_nice: Option<i32>,
    worker_scheduling: Option<nudge::config::WorkerScheduling>,
}

fn flags() -> BTreeMap<String, String> {
    let v: Vec<String> = std::env::args().skip(1).filter(|s| s != "--bench").collect();
    let mut m = BTreeMap::new();
    for pair in v.chunks(2) {
        let key = pair[0].strip_prefix("--").unwrap_or_else(|| panic!("unexpected argument {}", pair[0]));
        m.insert(key.to_string(), pair.get(1).cloned().unwrap_or_default());
    }
    m
}

fn num(m: &BTreeMap<String, String>, key: &str, default: u64) -> u64 {
    m.get(key).map(|v| v.parse().unwrap_or_else(|_| panic!("--{key} takes a number"))).unwrap_or(default)
}

fn args(m: &BTreeMap<String, String>) -> Args {
    for k in m.keys() {
        let known = [
            "connections",
            "seconds",
            "rate",
            "rate-seconds",
            "durability",
            "worker-nice",
            "worker-scheduling",
            "progress",
            "timeline",
            "flows",
            "destinations",
            "source",
            "drain-orders",
            "quota",
            "sustain",
            "customers",
            "perf",
            "postgres",
            "pool",
            "ack-linger",
            "nodes",
            "redis",
            "amqp",
            "amqp-tls",
            "in-flight",
        ];
        assert!(known.contains(&k.as_str()), "unknown argument --{k}");
    }
    Args {
        connections: num(m, "connections", 64) as usize,
        seconds: num(m, "seconds", 10),
        rate: num(m, "rate", 5000),
        rate_seconds: num(m, "rate-seconds", 10),
        worker_nice: m.get("worker-nice").map(|v| v.parse().expect("--worker-nice takes 0-19")),
        worker_scheduling: m.get("worker-scheduling").map(|v| match v.as_str() {
            "idle" => nudge::config::WorkerScheduling::Idle,
            "nice" => nudge::config::WorkerScheduling::Nice,
            other => panic!("--worker-scheduling idle|nice, not {other}"),
        }),
        durability: match m.get("durability").map(String::as_str) {
            None | Some("full") => nudge_store::sqlite::Durability::Full,
            Some("normal") => nudge_store::sqlite::Durability::Normal,
            Some(other) => panic!("--durability full|normal, not {other}"),
        },
    }
}

// ---------------------------------------------------------------------------------------------------------
// The RabbitMQ bus (`--amqp URL`).

/// `--amqp URL` (with `--postgres`): webhooks acknowledged on RabbitMQ's publisher confirm and drained into
/// PostgreSQL (`[bus] backend = "rabbitmq"`), on a queue of the run's own, deleted when this is dropped.
struct AmqpBench {
    url: String,
    queue: String,
    /// With `--amqp-tls front`: the nodes reach the broker over TLS, through a loopback TLS front.
    tls: Option<TlsBench>,
}

/// A TLS front for the broker on a runtime (one thread) of its own, and the test CA the node trusts.
struct TlsBench {
    front: nudge_testkit::tls_front::TlsFront,
    url: String,
    ca: tempfile::NamedTempFile,
    _rt: tokio::runtime::Runtime,
}

impl AmqpBench {
    fn from_flags(m: &BTreeMap<String, String>) -> Option<AmqpBench> {
        let url = m.get("amqp")?.clone();
        let id = uuid::Uuid::new_v4().simple().to_string();
        let tls = match m.get("amqp-tls").map(String::as_str) {
            None => None,
            Some("front") => {
                let rt = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(1)
                    .enable_all()
                    .build()
                    .unwrap();
                let (target, _) = nudge_testkit::tls_front::amqps_through(&url, 0);
                let front =
                    rt.block_on(nudge_testkit::tls_front::TlsFront::start(&target)).expect("the TLS front");
                let (_, url) = nudge_testkit::tls_front::amqps_through(&url, front.port);
                let ca = tempfile::NamedTempFile::new().unwrap();
                std::fs::write(ca.path(), nudge_testkit::tls_front::CA_PEM).unwrap();
                Some(TlsBench { front, url, ca, _rt: rt })
            }
            Some(other) => panic!("--amqp-tls front, not {other}"),
        };
        Some(AmqpBench { url, queue: format!("nudge.bench.{}", &id[..12]), tls })
    }

    fn configure(&self, cfg: &mut Config) {
        cfg.bus.backend = nudge::config::BusBackend::Rabbitmq;
        cfg.bus.amqp_url = Some(self.url.clone());
        cfg.bus.queue = self.queue.clone();
        if let Some(t) = &self.tls {
            cfg.bus.amqp_url = Some(t.url.clone());
            cfg.bus.amqp_ca_file = Some(t.ca.path().to_path_buf());
        }
    }
}

impl Drop for AmqpBench {
    fn drop(&mut self) {
        nudge_store::conformance::delete_test_queue(&self.url, &self.queue);
    }
}

// ---------------------------------------------------------------------------------------------------------
// The PostgreSQL backend (`--postgres URL`).

/// `--postgres URL`: nudge on the PostgreSQL backend, in a schema of its own (`nudge_bench_<random>`),
/// dropped when this is dropped: at the end of the run, or when the run fails.
struct PgBench {
    url: String,
    schema: String,
    pool: u32,
    /// `storage.postgres_ack_linger` in ms (`--ack-linger`); the configuration's default when not given.
    ack_linger: Option<u64>,
}

/// The tables a delivery's bytes are counted over.
const DELIVERY_TABLES: [&str; 6] =
    ["deliveries", "delivery_keys", "customers", "outbox", "audit", "terminal"];

/// With `--postgres`: a connection to the benchmark's schema, once the node leads (and says so).
async fn lead_probe<'a>(
    pg: Option<&'a PgBench>,
    apps: &[&nudge::app::App],
) -> Option<(&'a PgBench, sqlx::PgPool)> {
    let pg = pg?;
    let probe = pg.probe().await;
    let waited = pg.wait_leads(&probe, apps).await;
    println!("{}; the node leads {waited:.1}s after it started", pg.describe());
    Some((pg, probe))
}

impl PgBench {
    fn from_flags(m: &BTreeMap<String, String>) -> Option<PgBench> {
        let url = m.get("postgres")?.clone();
        assert!(!url.is_empty(), "--postgres takes a URL (postgres://user@host:port/database)");
        let id = uuid::Uuid::new_v4().simple().to_string();
        Some(PgBench {
            url,
            schema: format!("nudge_bench_{}", &id[..12]),
            pool: num(m, "pool", 16) as u32,
            ack_linger: m.get("ack-linger").map(|v| v.parse().expect("--ack-linger takes milliseconds")),
        })
    }

    /// Points nudge's storage at the schema.
    fn configure(&self, cfg: &mut Config) {
        cfg.storage.backend = nudge::config::StorageBackend::Postgres;
        cfg.storage.postgres_url = Some(self.url.clone());
        cfg.storage.postgres_schema = self.schema.clone();
        cfg.storage.postgres_pool = self.pool;
        if let Some(ms) = self.ack_linger {
            cfg.storage.postgres_ack_linger = nudge::config::HumanDuration(Duration::from_millis(ms));
        }
    }

    /// A small pool of the benchmark's own on the schema, named apart from nudge's sessions.
    async fn probe(&self) -> sqlx::PgPool {
        use sqlx::ConnectOptions;
        use std::str::FromStr;
        // Not a slow-statement warning for the compaction at the end.
        let options = sqlx::postgres::PgConnectOptions::from_str(&self.url)
            .expect("--postgres takes a postgres:// URL")
            .application_name("nudge-bench-probe")
            .options([("search_path", self.schema.as_str())])
            .disable_statement_logging();
        sqlx::postgres::PgPoolOptions::new()
            .max_connections(2)
            .connect_with(options)
            .await
            .expect("the benchmark connects to PostgreSQL")
    }

    fn describe(&self) -> String {
        let linger = self.ack_linger.map_or_else(|| "the default".to_string(), |ms| format!("{ms} ms"));
        format!(
            "storage: PostgreSQL, schema {} (dropped at the end), pool {}, acknowledgements linger {linger}",
            self.schema, self.pool
        )
    }

    /// Waits until a node leads: it records itself as the leader when it takes the lease, and starts its
    /// workers after the takeover grace (the `nudge_cluster_leader` gauge turns 1). Returns the seconds waited.
    async fn wait_leads(&self, probe: &sqlx::PgPool, apps: &[&nudge::app::App]) -> f64 {
        let started = Instant::now();
        loop {
            let leads: Option<bool> = sqlx::query_scalar("SELECT bool_or(leader) FROM cluster_nodes")
                .fetch_one(probe)
                .await
                .ok()
                .flatten();
            if leads == Some(true) {
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(60),
                "the node did not take the leader lease in 60 s"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let took = Instant::now();
        loop {
            let workers_up = apps.iter().any(|app| {
                app.shared.metrics.render().lines().any(|l| {
                    l.strip_prefix("nudge_cluster_leader ").and_then(|v| v.trim().parse::<f64>().ok())
                        == Some(1.0)
                })
            });
            if workers_up {
                break;
            }
            if took.elapsed() > nudge::workers::TAKEOVER_GRACE + Duration::from_secs(3) {
                println!("  (the leader gauge did not turn 1; going on after the takeover grace)");
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        started.elapsed().as_secs_f64()
    }

    /// The server processes of nudge's sessions (`application_name` `nudge/<schema>`).
    async fn session_pids(&self, probe: &sqlx::PgPool) -> Vec<i32> {
        sqlx::query_scalar("SELECT pid FROM pg_stat_activity WHERE application_name = $1")
            .bind(format!("nudge/{}", self.schema))
            .fetch_all(probe)
            .await
            .unwrap_or_default()
    }

    /// PostgreSQL's CPU by process, the database's transactions, and the schema's row counters by table
    /// (rows inserted + updated + deleted, index scans, sequential scans), now.
    async fn snapshot(&self, probe: &sqlx::PgPool) -> PgSnapshot {
        let xacts: i64 = sqlx::query_scalar(
            "SELECT (xact_commit + xact_rollback)::bigint FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_one(probe)
        .await
        .unwrap_or(0);
        let tables: Vec<(String, i64, i64, i64)> = sqlx::query_as(
            "SELECT relname::text, (n_tup_ins + n_tup_upd + n_tup_del)::bigint, coalesce(idx_scan, 0)::bigint,
                    seq_scan::bigint
             FROM pg_stat_user_tables WHERE schemaname = $1",
        )
        .bind(&self.schema)
        .fetch_all(probe)
        .await
        .unwrap_or_default();
        let wal: (i64, i64) = sqlx::query_as("SELECT wal_bytes::bigint, wal_fpi::bigint FROM pg_stat_wal")
            .fetch_one(probe)
            .await
            .unwrap_or((0, 0));
        let checkpoints: (i64, i64) =
            sqlx::query_as("SELECT checkpoints_timed::bigint, checkpoints_req::bigint FROM pg_stat_bgwriter")
                .fetch_one(probe)
                .await
                .unwrap_or((0, 0));
        PgSnapshot {
            cpu: postgres_cpu(),
            xacts,
            tables: tables.into_iter().map(|(t, w, i, q)| (t, [w, i, q])).collect(),
            wal: [wal.0, wal.1],
            checkpoints: [checkpoints.0, checkpoints.1],
        }
    }

    /// Prints PostgreSQL's CPU per delivery since `before`: all its processes on this machine (the server's
    /// own, such as the WAL writer and checkpointer, and any other client's sessions), and nudge's sessions;
    /// then the transactions and the schema's row writes and scans per delivery (the statistics reach
    /// PostgreSQL's counters within a second or so of each transaction: the figures lag a little).
    async fn report_cpu(&self, probe: &sqlx::PgPool, before: &PgSnapshot, deliveries: u64) {
        tokio::time::sleep(Duration::from_millis(1_500)).await;
        let now = self.snapshot(probe).await;
        let n = deliveries.max(1) as f64;
        let delta = |t: &str, k: usize| {
            now.tables.get(t).map_or(0, |v| v[k]) - before.tables.get(t).map_or(0, |v| v[k])
        };
        let mut written: Vec<(String, i64)> =
            now.tables.keys().map(|t| (t.clone(), delta(t, 0))).filter(|(_, w)| *w > 0).collect();
        written.sort_by_key(|(_, w)| -w);
        let index_scans: i64 = now.tables.keys().map(|t| delta(t, 1)).sum();
        let seq_scans: i64 = now.tables.keys().map(|t| delta(t, 2)).sum();
        println!(
            "  PostgreSQL per delivery: {:.2} transactions (all of the database's), {:.1} index scans, {:.3} \
             sequential scans; rows written {}",
            (now.xacts - before.xacts) as f64 / n,
            index_scans as f64 / n,
            seq_scans as f64 / n,
            written.iter().map(|(t, w)| format!("{t} {:.2}", *w as f64 / n)).collect::<Vec<_>>().join(", ")
        );
        println!(
            "  PostgreSQL's WAL (the whole server's): {:.0} bytes and {:.2} full-page images per delivery; \
             checkpoints meanwhile: {} timed, {} requested",
            (now.wal[0] - before.wal[0]) as f64 / n,
            (now.wal[1] - before.wal[1]) as f64 / n,
            now.checkpoints[0] - before.checkpoints[0],
            now.checkpoints[1] - before.checkpoints[1],
        );
        let before = &before.cpu;
        let after = now.cpu;
        let used = |pid: &i32| after.get(pid).map_or(0.0, |t| t - before.get(pid).copied().unwrap_or(0.0));
        let all: f64 = after.keys().map(used).sum();
        let ours: f64 = self.session_pids(probe).await.iter().map(used).sum();
        let per = |s: f64| s / deliveries.max(1) as f64 * 1e6;
        println!(
            "  PostgreSQL used {:.0} µs CPU per delivery ({:.1}s over all its processes; nudge's sessions alone \
             {:.0} µs)",
            per(all),
            all,
            per(ours),
        );
    }

    /// (bytes of each of [`DELIVERY_TABLES`], bytes of every table of the schema), indexes and TOAST included.
    async fn sizes(&self, probe: &sqlx::PgPool) -> (Vec<(&'static str, i64)>, i64) {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT c.relname::text, pg_total_relation_size(c.oid) FROM pg_class c
             JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = $1 AND c.relkind = 'r'",
        )
        .bind(&self.schema)
        .fetch_all(probe)
        .await
        .unwrap_or_default();
        let of = |t: &str| rows.iter().find(|(n, _)| n == t).map_or(0, |(_, b)| *b);
        (DELIVERY_TABLES.iter().map(|t| (*t, of(t))).collect(), rows.iter().map(|(_, b)| b).sum())
    }

    /// Prints the bytes the schema's delivery tables take per delivery, as the run left them (dead rows of
    /// updates included) and compacted (`VACUUM FULL`).
    async fn report_size(&self, probe: &sqlx::PgPool) {
        let deliveries: i64 =
            sqlx::query_scalar("SELECT count(*) FROM deliveries").fetch_one(probe).await.unwrap_or(0);
        let per = |b: i64| b as f64 / deliveries.max(1) as f64;
        let show = |label: &str, (named, all): (Vec<(&'static str, i64)>, i64)| {
            let sum: i64 = named.iter().map(|(_, b)| b).sum();
            let parts: Vec<String> = named.iter().map(|(t, b)| format!("{t} {:.0}", per(*b))).collect();
            println!(
                "  PostgreSQL bytes per delivery {label}: {:.0} ({}; every table of the schema {:.0}; {:.1} MB \
                 for {deliveries} deliveries)",
                per(sum),
                parts.join(", "),
                per(all),
                sum as f64 / 1e6,
            );
        };
        show("as the run left them", self.sizes(probe).await);
        let compact_started = Instant::now();
        for t in DELIVERY_TABLES {
            let vacuum = sqlx::raw_sql(sqlx::AssertSqlSafe(format!("VACUUM FULL {}.{t}", self.schema)));
            if let Err(e) = vacuum.execute(probe).await {
                println!("  VACUUM FULL {t} failed: {e}");
            }
        }
        show(
            &format!("compacted (VACUUM FULL, {:.1}s)", compact_started.elapsed().as_secs_f64()),
            self.sizes(probe).await,
        );
    }
}

impl Drop for PgBench {
    /// Drops the schema, from a thread and runtime of its own (this may run while a runtime unwinds).
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        let done = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
            rt.block_on(async {
                use sqlx::Connection;
                let mut conn = sqlx::PgConnection::connect(&url).await?;
                sqlx::raw_sql("SET lock_timeout = '20s'").execute(&mut conn).await?;
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("DROP SCHEMA IF EXISTS {schema} CASCADE")))
                    .execute(&mut conn)
                    .await?;
                conn.close().await
            })
        })
        .join();
        match done {
            Ok(Ok(())) => println!("schema {} dropped", self.schema),
            Ok(Err(e)) => eprintln!("dropping schema {} failed ({e}); drop it by hand", self.schema),
            Err(_) => eprintln!("dropping schema {} failed; drop it by hand", self.schema),
        }
    }
}

/// CPU seconds (user + system) used so far by each process of the PostgreSQL server on this machine
/// (processes named `postgres`), by pid.
/// What [`PgBench::snapshot`] read.
struct PgSnapshot {
    cpu: BTreeMap<i32, f64>,
    xacts: i64,
    tables: BTreeMap<String, [i64; 3]>,
    /// The server's WAL (bytes, full-page images) and checkpoints (timed, requested) so far.
    wal: [i64; 2],
    checkpoints: [i64; 2],
}

fn postgres_cpu() -> BTreeMap<i32, f64> {
    let mut by_pid = BTreeMap::new();
    let Ok(procs) = std::fs::read_dir("/proc") else { return by_pid };
    for p in procs.flatten() {
        let Some(pid) = p.file_name().to_str().and_then(|s| s.parse::<i32>().ok()) else { continue };
        let Ok(stat) = std::fs::read_to_string(p.path().join("stat")) else { continue };
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        if &stat[open + 1..close] != "postgres" {
            continue;
        }
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let (u, s) = (fields[11].parse::<f64>().unwrap_or(0.0), fields[12].parse::<f64>().unwrap_or(0.0));
        by_pid.insert(pid, (u + s) / 100.0); // USER_HZ on Linux
    }
    by_pid
}

// ---------------------------------------------------------------------------------------------------------
// The load generator (child process).

/// A realistic `orders/create` body (about 5 KB) split around the fields each delivery changes, so building
/// one is a few copies rather than a JSON serialisation.
struct BodyTemplate {
    /// Text before each slot, then the tail.
    parts: Vec<String>,
    /// Which value goes after `parts[k]`.
    slots: Vec<&'static str>,
}

impl BodyTemplate {
    const SLOTS: [&'static str; 6] = ["\"@ORDER@\"", "\"@CUST@\"", "@EMAIL1@", "@EMAIL2@", "@CHK@", "@CART@"];

    fn new() -> Self {
        let now = time::OffsetDateTime::now_utc();
        let c = CustomerFixture::new(1_000_000, Some("b0@example.org"), now);
        let o = OrderFixture::new(5_000_000_000, now).customer(c).line_item(LineItemFixture::new(
            9_100_000_000,
            "Item",
            1,
            "25.00",
        ));
        let mut v = o.to_json();
        v["id"] = serde_json::json!("@ORDER@");
        v["email"] = serde_json::json!("@EMAIL1@");
        v["customer"]["id"] = serde_json::json!("@CUST@");
        v["customer"]["email"] = serde_json::json!("@EMAIL2@");
        v["checkout_token"] = serde_json::json!("@CHK@");
        v["cart_token"] = serde_json::json!("@CART@");
        let text = serde_json::to_string(&v).expect("JSON serialises");
        let mut marks: Vec<(usize, &'static str)> = Vec::new();
        for slot in Self::SLOTS {
            let found: Vec<_> = text.match_indices(slot).collect();
            assert_eq!(found.len(), 1, "slot {slot} appears once in the template");
            marks.push((found[0].0, slot));
        }
        marks.sort();
        let (mut parts, mut slots, mut at) = (Vec::new(), Vec::new(), 0);
        for (i, slot) in marks {
            parts.push(text[at..i].to_string());
            slots.push(slot);
            at = i + slot.len();
        }
        parts.push(text[at..].to_string());
        BodyTemplate { parts, slots }
    }

    fn body(&self, i: u64, customers: u64) -> Vec<u8> {
        let cust = i % customers;
        let email = format!("b{cust}@example.org");
        let mut out = String::with_capacity(self.parts.iter().map(String::len).sum::<usize>() + 96);
        for (part, slot) in self.parts.iter().zip(&self.slots) {
            out.push_str(part);
            let value = match *slot {
                "\"@ORDER@\"" => (5_000_000_000u64 + i).to_string(),
                "\"@CUST@\"" => (1_000_000 + cust).to_string(),
                "@CHK@" => format!("chk-{i}"),
                "@CART@" => format!("cart-{i}"),
                _ => email.clone(),
            };
            out.push_str(&value);
        }
        out.push_str(self.parts.last().expect("a tail"));
        out.into_bytes()
    }
}

fn request(host: &str, body: &[u8]) -> Vec<u8> {
    let sig = nudge_testkit::shopify_sender::sign(SECRET.as_bytes(), body);
    let head = format!(
        "POST /webhooks/shopify HTTP/1.1\r\nhost: {host}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         x-shopify-topic: orders/create\r\nx-shopify-hmac-sha256: {sig}\r\nx-shopify-shop-domain: demo-store.myshopify.com\r\n\
         x-shopify-api-version: 2026-07\r\nx-shopify-webhook-id: {}\r\nx-shopify-event-id: {}\r\n\
         x-shopify-triggered-at: 2026-11-27T12:00:00Z\r\n\r\n",
        body.len(),
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
    );
    let mut r = head.into_bytes();
    r.extend_from_slice(body);
    r
}

const BC_SECRET: &str = "bench_bigcommerce_secret";
const BC_STORE: &str = "abc123";

/// A signed `store/order/created` callback for order `id`, as raw HTTP/1.1.
fn bigcommerce_request(host: &str, sender: &BigCommerceSender, id: u64) -> Vec<u8> {
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let body = CallbackFixture::new("store/order/created", id).store(BC_STORE).created_at(now).to_bytes();
    let cb = Callback::new(format!("bench-{id}"), body.clone());
    let mut head =
        format!("POST /webhooks/bigcommerce HTTP/1.1\r\nhost: {host}\r\ncontent-length: {}\r\n", body.len());
    for (k, v) in sender.headers(&cb) {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    head.push_str("\r\n");
    let mut r = head.into_bytes();
    r.extend_from_slice(&body);
    r
}

/// Reads one HTTP/1.1 response from `conn`; returns its status. `buf` keeps bytes across calls.
async fn read_response(conn: &mut tokio::net::TcpStream, buf: &mut Vec<u8>) -> std::io::Result<u16> {
    loop {
        if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = std::str::from_utf8(&buf[..end]).map_err(std::io::Error::other)?;
            let status: u16 = head.get(9..12).and_then(|s| s.parse().ok()).ok_or_else(|| {
                std::io::Error::other(format!("not an HTTP response: {}", &head[..head.len().min(40)]))
            })?;
            let len = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length").then(|| v.trim().parse::<usize>().ok())?
                })
                .unwrap_or(0);
            let total = end + 4 + len;
            while buf.len() < total {
                let mut chunk = [0u8; 4096];
                let n = conn.read(&mut chunk).await?;
                if n == 0 {
                    return Err(std::io::ErrorKind::UnexpectedEof.into());
                }
                buf.extend_from_slice(&chunk[..n]);
            }
            buf.drain(..total);
            return Ok(status);
        }
        let mut chunk = [0u8; 4096];
        let n = conn.read(&mut chunk).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn quantile(v: &[f64], p: f64) -> f64 {
    if v.is_empty() { 0.0 } else { v[((v.len() as f64 - 1.0) * p).round() as usize] }
}

/// Where the load generator's requests come from: all built before the clock starts, or built on a thread
/// while sending (`--stream 1`, for runs too long to hold every request in memory).
#[derive(Clone)]
enum Feed {
    Built(Arc<Vec<Vec<u8>>>),
    Stream(Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Vec<u8>>>>),
}

/// The child: `--role loadgen --addr A --connections C --first N --count K` and either `--seconds S`
/// (closed loop until S seconds have passed or the K requests are used) or `--rate R` (open loop).
fn loadgen(m: &BTreeMap<String, String>) {
    // `--addr A[,B,…]`: the connections are spread over the addresses (the nodes of a cluster).
    let addrs: Vec<String> = m.get("addr").expect("--addr").split(',').map(str::to_string).collect();
    let addr = addrs[0].clone();
    let connections = num(m, "connections", 64) as usize;
    let first = num(m, "first", 0);
    let count = num(m, "count", 100_000);
    let seconds = num(m, "seconds", 0);
    let rate = num(m, "rate", 0);
    let timeline = m.contains_key("timeline");
    let customers = num(m, "customers", CUSTOMERS);
    let built = Instant::now();
    let feed = if m.contains_key("stream") {
        // Built on a thread of its own while the connections send, a bounded queue ahead of them: memory
        // stays small however long the run (at the cost of the building's CPU during the run).
        let (tx, rx) = tokio::sync::mpsc::channel::<Vec<u8>>(8192);
        let addr = addr.clone();
        std::thread::spawn(move || {
            let tpl = BodyTemplate::new();
            for i in 0..count {
                if tx.blocking_send(request(&addr, &tpl.body(first + i, customers))).is_err() {
                    break;
                }
            }
        });
        eprintln!("loadgen: up to {count} signed requests, built while sending");
        Feed::Stream(Arc::new(tokio::sync::Mutex::new(rx)))
    } else {
        let requests: Vec<Vec<u8>> = if m.get("source").map(String::as_str) == Some("bigcommerce") {
            let sender = BigCommerceSender::new("http://unused", Some(BC_SECRET), vec![]).expect("sender");
            (0..count).map(|i| bigcommerce_request(&addr, &sender, first + i)).collect()
        } else {
            let tpl = BodyTemplate::new();
            (0..count).map(|i| request(&addr, &tpl.body(first + i, customers))).collect()
        };
        let bytes: usize = requests.iter().map(Vec::len).sum();
        eprintln!(
            "loadgen: {count} signed requests ({:.1} MB) built in {:.1}s",
            bytes as f64 / 1e6,
            built.elapsed().as_secs_f64()
        );
        Feed::Built(Arc::new(requests))
    };
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let result = rt.block_on(async move {
        let next = Arc::new(AtomicU64::new(0));
        let start = Instant::now() + Duration::from_millis(50);
        let deadline = (seconds > 0).then(|| start + Duration::from_secs(seconds));
        let interval = (rate > 0).then(|| Duration::from_secs_f64(1.0 / rate as f64));
        let mut tasks = Vec::new();
        for c in 0..connections {
            let (feed, next, addr) = (feed.clone(), next.clone(), addrs[c % addrs.len()].clone());
            tasks.push(tokio::spawn(async move {
                let mut conn = tokio::net::TcpStream::connect(&addr).await.expect("connect to nudge");
                conn.set_nodelay(true).unwrap();
                let mut buf = Vec::with_capacity(8192);
                let (mut lat, mut ok, mut other, mut errors) = (Vec::new(), 0u64, 0u64, 0u64);
                let mut late = Vec::new();
                tokio::time::sleep_until(start.into()).await;
                loop {
                    if deadline.is_some_and(|d| Instant::now() >= d) {
                        break;
                    }
                    let (i, owned) = match &feed {
                        Feed::Built(requests) => {
                            let i = next.fetch_add(1, Ordering::Relaxed);
                            if i >= requests.len() as u64 {
                                break;
                            }
                            (i, None)
                        }
                        Feed::Stream(rx) => {
                            let Some(r) = rx.lock().await.recv().await else { break };
                            (next.fetch_add(1, Ordering::Relaxed), Some(r))
                        }
                    };
                    let bytes: &[u8] = match (&feed, &owned) {
                        (_, Some(r)) => r,
                        (Feed::Built(requests), None) => &requests[i as usize],
                        (Feed::Stream(_), None) => unreachable!("a streamed request is owned"),
                    };
                    let t0 = match interval {
                        Some(iv) => {
                            let due = start + iv * i as u32;
                            if Instant::now() < due {
                                // The connection is free before the request is due. The timer has
                                // millisecond resolution and wakes up to a tick late: that lateness is the
                                // load generator's (reported apart), so the clock starts at the send.
                                tokio::time::sleep_until(due.into()).await;
                                let sent = Instant::now();
                                late.push((sent - due).as_secs_f64());
                                sent
                            } else {
                                // Still waiting for this connection's previous answer when due: the wait
                                // counts, so a stalled server cannot hide queueing.
                                due
                            }
                        }
                        None => Instant::now(),
                    };
                    let r = async {
                        conn.write_all(bytes).await?;
                        read_response(&mut conn, &mut buf).await
                    }
                    .await;
                    match r {
                        Ok(200) => {
                            ok += 1;
                            lat.push((t0.elapsed().as_secs_f64(), t0.saturating_duration_since(start)));
                        }
                        Ok(_) => other += 1,
                        Err(_) => {
                            errors += 1;
                            break;
                        }
                    }
                }
                (lat, late, ok, other, errors)
            }));
        }
        // (latency, when the request was due or sent) of every acknowledged request.
        let (mut timed, mut late) = (Vec::new(), Vec::new());
        let (mut ok, mut other, mut errors) = (0, 0, 0);
        for t in tasks {
            let (l, lt, o, n, e) = t.await.unwrap();
            timed.extend(l);
            late.extend(lt);
            ok += o;
            other += n;
            errors += e;
        }
        let secs = (Instant::now() - start).as_secs_f64();
        if timeline {
            print_timeline(&mut timed);
        }
        let mut lat: Vec<f64> = timed.iter().map(|(latency, _)| *latency).collect();
        lat.sort_by(f64::total_cmp);
        late.sort_by(f64::total_cmp);
        serde_json::json!({
            "ok": ok, "other_status": other, "errors": errors, "secs": secs,
            "p50_ms": quantile(&lat, 0.5) * 1e3, "p99_ms": quantile(&lat, 0.99) * 1e3,
            "p999_ms": quantile(&lat, 0.999) * 1e3, "max_ms": lat.last().copied().unwrap_or(0.0) * 1e3,
            "late_p50_ms": quantile(&late, 0.5) * 1e3, "late_p99_ms": quantile(&late, 0.99) * 1e3,
        })
    });
    println!("{result}");
}

/// Ack latency by half second of the run (by when each request was due or sent), on stderr: shows whether a
/// tail comes from one stall or is spread over the run.
fn print_timeline(timed: &mut [(f64, Duration)]) {
    timed.sort_by_key(|(_, at)| *at);
    for window in timed.chunk_by(|a, b| a.1.as_millis() / 500 == b.1.as_millis() / 500) {
        let mut l: Vec<f64> = window.iter().map(|(latency, _)| *latency).collect();
        l.sort_by(f64::total_cmp);
        eprintln!(
            "  {:5.1}s {:6} acks  p50 {:6.2} ms  p99 {:6.2} ms  max {:6.2} ms",
            (window[0].1.as_millis() / 500 * 500) as f64 / 1e3,
            l.len(),
            quantile(&l, 0.5) * 1e3,
            quantile(&l, 0.99) * 1e3,
            l.last().copied().unwrap_or(0.0) * 1e3
        );
    }
}

/// Event→processed and event→push by half second of phase 2 (by when each was recorded), on stderr: shows
/// whether a tail comes from one stall or is spread over the run, and at which stage.
fn print_stage_timeline(processed: Vec<(f64, f64)>, pushed: Vec<(f64, f64)>) {
    let windows = |v: &[(f64, f64)]| -> BTreeMap<u64, Vec<f64>> {
        let mut w: BTreeMap<u64, Vec<f64>> = BTreeMap::new();
        for (at, l) in v {
            w.entry((at * 2.0) as u64).or_default().push(*l);
        }
        w.values_mut().for_each(|l| l.sort_by(f64::total_cmp));
        w
    };
    let (p, q) = (windows(&processed), windows(&pushed));
    let keys: std::collections::BTreeSet<u64> = p.keys().chain(q.keys()).copied().collect();
    let show = |l: Option<&Vec<f64>>| match l {
        Some(l) => format!(
            "{:6} p50 {:6.1} p99 {:6.1} max {:6.1} ms",
            l.len(),
            quantile(l, 0.5) * 1e3,
            quantile(l, 0.99) * 1e3,
            l.last().copied().unwrap_or(0.0) * 1e3
        ),
        None => format!("{:>41}", "-"),
    };
    eprintln!("  stage timeline (s: event→processed | event→push)");
    for k in keys {
        eprintln!("  {:5.1}s {} | {}", k as f64 / 2.0, show(p.get(&k)), show(q.get(&k)));
    }
}

/// Runs the load generator as a child process and returns its result line.
fn spawn_loadgen(extra: &[(&str, String)]) -> serde_json::Value {
    let mut cmd = Command::new(std::env::current_exe().expect("own path"));
    cmd.arg("--role").arg("loadgen");
    for (k, v) in extra {
        cmd.arg(format!("--{k}")).arg(v);
    }
    let mut child = cmd.stdout(Stdio::piped()).spawn().expect("start the load generator");
    let out = BufReader::new(child.stdout.take().unwrap());
    let mut result = serde_json::Value::Null;
    for line in out.lines() {
        result = serde_json::from_str(&line.expect("read the load generator")).expect("a JSON result line");
    }
    assert!(child.wait().expect("the load generator ends").success(), "the load generator failed");
    result
}

/// CPU seconds (user + system) this process has used so far.
fn cpu_seconds() -> f64 {
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: getrusage writes into the struct we own.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let t = |v: libc::timeval| v.tv_sec as f64 + v.tv_usec as f64 / 1e6;
    t(u.ru_utime) + t(u.ru_stime)
}

fn main() {
    let m = flags();
    match m.get("role").map(String::as_str) {
        Some("loadgen") => return loadgen(&m),
        Some("fake") => return fake_child(),
        _ => {}
    }
    nudge_testkit::ensure_crypto_provider();
    // Warnings and errors of the server under test show up in the benchmark's output.
    nudge::telemetry::init_logging(false, "warn");
    let a = args(&m);
    // Dropped last: the schema goes once nudge has stopped (or the run failed).
    let pg = PgBench::from_flags(&m);
    let pg = pg.as_ref();
    let mq = AmqpBench::from_flags(&m);
    assert!(mq.is_none() || pg.is_some(), "--amqp takes --postgres (the bus drains into PostgreSQL)");
    assert!(mq.is_none() || !m.contains_key("sustain"), "--amqp is not supported with --sustain");
    if m.get("source").map(String::as_str) == Some("bigcommerce") {
        assert!(pg.is_none(), "--postgres is not supported with --source bigcommerce (embedded store only)");
        return bigcommerce(&m, &a);
    }
    if let Some(window) = m.get("sustain") {
        return sustain(&m, &a, window.parse().expect("--sustain takes seconds"), pg);
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let mut cfg = spine_config(&m, &a);
    if let Some(pg) = pg {
        pg.configure(&mut cfg);
    }
    if let Some(mq) = &mq {
        mq.configure(&mut cfg);
        println!("bus: RabbitMQ, queue {} (deleted at the end)", mq.queue);
        if let Some(t) = &mq.tls {
            println!("bus over TLS: amqps:// through a loopback TLS front on port {}", t.front.port);
        }
    }
    // The fake stands for Klaviyo, which runs elsewhere: it gets threads of its own at the background
    // workers' priority, so it does not compete with the ack path as if it were part of nudge.
    let fake_priority = cfg.worker_priority();
    let fake_rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("fake-klaviyo")
        .on_thread_start(move || fake_priority.apply())
        .enable_all()
        .build()
        .unwrap();
    let fake_handle = fake_rt.handle().clone();
    rt.block_on(async move {
        let fake = fake_handle
            .spawn(FakeKlaviyo::start(FakeKlaviyoConfig::new(KEY).unthrottled()))
            .await
            .unwrap()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        cfg.storage.data_dir = dir.path().to_path_buf();
        let unlimited = nudge_deliver::RateLimit::new(1_000_000, 60_000_000);
        let mut klaviyo = nudge_deliver::klaviyo::KlaviyoConfig::new(KEY).with_base_url(fake.base_url());
        klaviyo.profile_import_limit = unlimited;
        klaviyo.events_limit = unlimited;
        cfg.destinations.klaviyo = Some(klaviyo);
        let others = if m.get("destinations").map(String::as_str) == Some("5") {
            Some(configure_other_destinations(&mut cfg, &fake_handle).await)
        } else {
            None
        };
        if others.is_some() && cfg.flows.is_none() {
            cfg.flows = Some(bench_flows(2));
        }
        // `--nodes N` (with `--postgres`): N nodes of one cluster in this process, each with its own
        // listener; the load generator spreads its connections over them. `--redis URL` shares the rate
        // limits there, so every node delivers its partitions (otherwise the leader delivers all).
        let nodes = num(&m, "nodes", 1).max(1) as usize;
        assert!(nodes == 1 || pg.is_some(), "--nodes takes --postgres (nodes share a PostgreSQL store)");
        if let Some(r) = m.get("redis") {
            assert!(pg.is_some(), "--redis takes --postgres");
            cfg.cache.backend = nudge::config::CacheBackend::Redis;
            cfg.cache.redis_url = Some(r.clone());
        }
        let mut apps = Vec::new();
        for i in 0..nodes {
            let mut c = cfg.clone();
            if nodes > 1 {
                c.cluster.node_id = Some(format!("bench-{i}"));
                c.storage.data_dir = dir.path().join(format!("node{i}"));
            }
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
            apps.push(nudge::app::run(c, listener).await.unwrap());
        }
        let app = apps.remove(0);
        let addr =
            std::iter::once(&app).chain(&apps).map(|a| a.addr.to_string()).collect::<Vec<_>>().join(",");
        if nodes > 1 {
            println!(
                "{nodes} nodes in this process on one schema; processing and delivery by {}",
                if m.contains_key("redis") {
                    "every node, its partitions (rate limits shared in Redis)"
                } else {
                    "the leader"
                }
            );
        }
        println!(
            "machine: {} cores; durability {:?}; {} connections; worker_nice {}; worker_scheduling {}; \
             load generator in its own process",
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            a.durability,
            a.connections,
            a.worker_nice.map_or("default".to_string(), |n| n.to_string()),
            a.worker_scheduling.map_or("default".to_string(), |s| format!("{s:?}").to_lowercase()),
        );
        let all: Vec<&nudge::app::App> = std::iter::once(&app).chain(&apps).collect();
        let probe = lead_probe(pg, &all).await;

        // Phase 1: sustained throughput, closed loop.
        let count = a.seconds * 40_000;
        let pg_cpu0 = match &probe {
            Some((pg, probe)) => Some(pg.snapshot(probe).await),
            None => None,
        };
        let cpu0 = cpu_seconds();
        let started = Instant::now();
        let (acked, secs) = closed_loop(&addr, &a, count, 0, None).await;
        if m.contains_key("progress") {
            // The backlog once a second while it drains: (deliveries not yet processed, outbox items not yet
            // pushed); shows which stage is behind.
            while let Ok(b) = app.shared.store.backlog().await {
                println!("  {:5.1}s backlog {b:?}", started.elapsed().as_secs_f64());
                if b == (0, 0) {
                    break;
                }
                tokio::time::sleep(Duration::from_secs(1)).await;
            }
        }
        app.wait_idle(Duration::from_secs(900)).await;
        let total = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds() - cpu0;
        println!(
            "  backlog drained {:.1}s after the phase ended: {:.0} deliveries/s acked, processed and pushed \
             end to end; nudge + fake used {:.0} µs CPU per delivery",
            (total - secs).max(0.0),
            acked as f64 / total,
            cpu / acked.max(1) as f64 * 1e6
        );
        if let (Some((pg, probe)), Some(before)) = (&probe, &pg_cpu0) {
            pg.report_cpu(probe, before, acked).await;
        }

        // Phase 2: fixed rate, open loop.
        for a in &all {
            a.push_latency.reset();
            a.processed_latency.reset();
            a.shared.ack_latency.reset();
        }
        let total = a.rate * a.rate_seconds;
        let pg_cpu0 = match &probe {
            Some((pg, probe)) => Some(pg.snapshot(probe).await),
            None => None,
        };
        let cpu0 = cpu_seconds();
        let r = {
            let mut args = vec![
                ("addr", addr.clone()),
                ("connections", (a.connections * 4).to_string()),
                ("first", "100000000".to_string()),
                ("count", total.to_string()),
                ("rate", a.rate.to_string()),
            ];
            if m.contains_key("timeline") {
                args.push(("timeline", "1".to_string()));
            }
            tokio::task::spawn_blocking(move || spawn_loadgen(&args)).await.unwrap()
        };
        println!(
            "phase 2 (open loop, {}/s for {}s): {}/{total} acked in {:.1}s, ack p50 {:.2} ms p99 {:.2} ms \
             p99.9 {:.2} ms max {:.2} ms (load generator's timer late by p50 {:.2} ms p99 {:.2} ms)",
            a.rate,
            a.rate_seconds,
            r["ok"],
            r["secs"].as_f64().unwrap_or(0.0),
            r["p50_ms"].as_f64().unwrap_or(0.0),
            r["p99_ms"].as_f64().unwrap_or(0.0),
            r["p999_ms"].as_f64().unwrap_or(0.0),
            r["max_ms"].as_f64().unwrap_or(0.0),
            r["late_p50_ms"].as_f64().unwrap_or(0.0),
            r["late_p99_ms"].as_f64().unwrap_or(0.0),
        );
        if let Some((_, p50, p99)) = merged(all.iter().map(|a| &*a.shared.ack_latency)) {
            println!(
                "  inside nudge (request read → commit answered): p50 {:.2} ms p99 {:.2} ms",
                p50 * 1e3,
                p99 * 1e3
            );
        }
        app.wait_idle(Duration::from_secs(900)).await;
        let cpu = cpu_seconds() - cpu0;
        if let Some((n, p50, p99)) = merged(all.iter().map(|a| &*a.processed_latency)) {
            println!(
                "event→processed during phase 2 ({n} deliveries): p50 {:.1} ms p99 {:.1} ms",
                p50 * 1e3,
                p99 * 1e3
            );
        }
        if let Some((n, p50, p99)) = merged(all.iter().map(|a| &*a.push_latency)) {
            println!(
                "event→push during phase 2 (unthrottled fake, {n} pushes): p50 {:.1} ms p99 {:.1} ms",
                p50 * 1e3,
                p99 * 1e3
            );
        }
        if m.contains_key("timeline") {
            let processed = all.iter().flat_map(|a| a.processed_latency.timed()).collect();
            let pushed = all.iter().flat_map(|a| a.push_latency.timed()).collect();
            print_stage_timeline(processed, pushed);
        }
        let acked2 = r["ok"].as_u64().unwrap_or(0);
        println!(
            "  phase 2 until every delivery was pushed: nudge + fake used {:.0} µs CPU per delivery",
            cpu / acked2.max(1) as f64 * 1e6
        );
        if let (Some((pg, probe)), Some(before)) = (&probe, &pg_cpu0) {
            pg.report_cpu(probe, before, acked2).await;
            pg.report_size(probe).await;
        }
        drop(all);
        for a in apps {
            a.shutdown().await;
        }
        app.shutdown().await;
        fake.shutdown().await;
        drop(others);
        if let Some((_, probe)) = probe {
            probe.close().await;
        }
    });
    drop(fake_rt);
}

/// (count, p50, p99) over the samples of several nodes.
fn merged<'a>(samples: impl Iterator<Item = &'a nudge::telemetry::LatencySample>) -> Option<(u64, f64, f64)> {
    let mut v: Vec<f64> = samples.flat_map(|s| s.samples()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some((v.len() as u64, quantile(&v, 0.5), quantile(&v, 0.99)))
}

/// nudge's configuration for the Shopify spine: the arguments' durability, worker scheduling and flows,
/// refits off, and `NUDGE_BENCH_BATCH` as the processing batch size when set.
fn spine_config(m: &BTreeMap<String, String>, a: &Args) -> Config {
    let mut cfg = Config::from_toml("", &BTreeMap::new()).unwrap();
    cfg.storage.durability = a.durability;
    cfg.sources.shopify = Some(ShopifyConfig::with_secrets(vec![SECRET.into()]));
    cfg.pipeline.refit_every = nudge::config::HumanDuration(Duration::ZERO);
    if let Some(n) = a.worker_nice {
        cfg.pipeline.worker_nice = n;
    }
    if let Some(s) = a.worker_scheduling {
        cfg.pipeline.worker_scheduling = s;
    }
    if let Some(n) = m.get("flows") {
        cfg.flows = Some(bench_flows(n.parse().expect("--flows takes a number")));
    }
    if let Ok(b) = std::env::var("NUDGE_BENCH_BATCH") {
        cfg.pipeline.batch_size = b.parse().expect("NUDGE_BENCH_BATCH is a number");
    }
    if let Some(n) = m.get("in-flight") {
        // `[destinations.klaviyo] max_in_flight`: requests to the destination at once (default 4).
        let keys = nudge::config::DeliveryKeys {
            max_in_flight: Some(n.parse().expect("--in-flight takes a number (1-64)")),
            ..Default::default()
        };
        cfg.delivery.insert("klaviyo".into(), keys);
    }
    cfg
}

/// Phase 1: `count` requests (numbered from `first`) sent back to back from `a.connections` connections
/// for `a.seconds` by the load generator; prints and returns the durable acks and the seconds taken.
async fn closed_loop(addr: &str, a: &Args, count: u64, first: u64, source: Option<&str>) -> (u64, f64) {
    let mut args = vec![
        ("addr", addr.to_string()),
        ("connections", a.connections.to_string()),
        ("first", first.to_string()),
        ("count", count.to_string()),
        ("seconds", a.seconds.to_string()),
    ];
    args.extend(source.map(|s| ("source", s.to_string())));
    let r = tokio::task::spawn_blocking(move || spawn_loadgen(&args)).await.unwrap();
    let acked = r["ok"].as_u64().unwrap_or(0);
    let secs = r["secs"].as_f64().unwrap_or(1.0);
    println!(
        "phase 1 (closed loop, {}s): {acked} durable acks, {:.0} acks/s, ack p50 {:.2} ms p99 {:.2} ms \
             p99.9 {:.2} ms (non-200: {}, connection errors: {})",
        a.seconds,
        acked as f64 / secs,
        r["p50_ms"].as_f64().unwrap_or(0.0),
        r["p99_ms"].as_f64().unwrap_or(0.0),
        r["p999_ms"].as_f64().unwrap_or(0.0),
        r["other_status"],
        r["errors"],
    );
    (acked, secs)
}

/// `--source bigcommerce`: durable acks of thin callbacks, then a fetch drain under the API's quota.
fn bigcommerce(m: &BTreeMap<String, String>, a: &Args) {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async move {
        // Phase 1: a fake with no practical quota, so the fetches keep up and only the acks are measured.
        let open = FakeBigCommerceConfig {
            store_hash: BC_STORE.into(),
            quota: u32::MAX,
            window: Duration::from_secs(1),
            ..Default::default()
        };
        let fake = FakeBigCommerce::start(open).await.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let app = start_bigcommerce(dir.path(), a, &fake.base_url()).await;
        let addr = app.addr.to_string();
        println!(
            "machine: {} cores; durability {:?}; {} connections; BigCommerce callbacks; load generator in its \
             own process",
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            a.durability,
            a.connections,
        );
        let count = a.seconds * 40_000;
        let started = Instant::now();
        let (_, secs) = closed_loop(&addr, a, count, 1, Some("bigcommerce")).await;
        app.wait_idle(Duration::from_secs(900)).await;
        println!(
            "  every callback processed and its fetch settled {:.1}s after the phase ended ({} API reads)",
            (started.elapsed().as_secs_f64() - secs).max(0.0),
            fake.requests().len()
        );
        app.shutdown().await;
        fake.shutdown().await;

        // Phase 2: seeded orders announced at once, fetched under the quota.
        let orders = num(m, "drain-orders", 300);
        let quota = num(m, "quota", 50) as u32;
        let limited = FakeBigCommerceConfig {
            store_hash: BC_STORE.into(),
            quota,
            window: Duration::from_secs(1),
            ..Default::default()
        };
        let fake = FakeBigCommerce::start(limited).await.unwrap();
        let t = time::OffsetDateTime::now_utc();
        for id in 1..=orders {
            let email = format!("drain-{id}@example.org");
            let o = BcOrderFixture::new(id, 7 + id, Some(email.as_str()), t)
                .item(ItemFixture::new(1, "Mug", 1, "12.5000"));
            fake.seed_order(&id.to_string(), o.order_json(), o.products_json());
        }
        let dir = tempfile::tempdir().unwrap();
        let app = start_bigcommerce(dir.path(), a, &fake.base_url()).await;
        let sender = BigCommerceSender::new(
            format!("http://{}/webhooks/bigcommerce", app.addr),
            Some(BC_SECRET),
            vec![],
        )
        .unwrap();
        let started = Instant::now();
        for id in 1..=orders {
            let now = time::OffsetDateTime::now_utc().unix_timestamp();
            let body = CallbackFixture::new("store/order/created", id).store(BC_STORE).created_at(now).to_bytes();
            let r = sender.send(&Callback::new(format!("drain-{id}"), body)).await.unwrap();
            assert_eq!(r.status, 200);
        }
        app.wait_idle(Duration::from_secs(900)).await;
        let took = started.elapsed().as_secs_f64();
        let reads = fake.requests().len();
        // Each order is two reads (the order and its products); the quota allows `quota` per second.
        let least = (reads as f64 / quota as f64 - 1.0).max(0.0);
        println!(
            "phase 2 (drain under a quota of {quota}/s): {orders} orders, {reads} API reads in {took:.1}s \
             (the quota allows it in {least:.1}s at the least: {:.0} % of the allowed rate), 429s answered: {}",
            least / took * 100.0,
            fake.throttled()
        );
        app.shutdown().await;
        fake.shutdown().await;
    });
}

async fn start_bigcommerce(dir: &std::path::Path, a: &Args, api_base: &str) -> nudge::app::App {
    let mut cfg = Config::from_toml("", &BTreeMap::new()).unwrap();
    cfg.storage.durability = a.durability;
    cfg.storage.data_dir = dir.to_path_buf();
    cfg.pipeline.refit_every = nudge::config::HumanDuration(Duration::ZERO);
    cfg.sources.bigcommerce = Some(BigCommerceSourceConfig {
        store_hash: BC_STORE.into(),
        access_token: FakeBigCommerceConfig::default().access_token,
        client_secret: Some(BC_SECRET.into()),
        api_base: api_base.to_string(),
        auth_headers: BTreeMap::new(),
        require_signature: None,
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    nudge::app::run(cfg, listener).await.unwrap()
}

/// The four other destinations of `--destinations 5`, each against its fake (started on the fakes'
/// runtime), configured in `cfg`; the handles keep the fakes running.
async fn configure_other_destinations(
    cfg: &mut Config,
    fakes: &tokio::runtime::Handle,
) -> Box<dyn std::any::Any + Send> {
    use nudge_testkit::{fake_braze, fake_hubspot, fake_marketo, fake_slack, fake_webhook};
    const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
    let braze = fakes
        .spawn(fake_braze::FakeBraze::start(fake_braze::FakeBrazeConfig::new("braze-bench").unthrottled()))
        .await
        .unwrap()
        .expect("the Braze fake starts");
    let hubspot = fakes
        .spawn(fake_hubspot::FakeHubSpot::start(
            fake_hubspot::FakeHubSpotConfig::new("hubspot-bench").unlimited(),
        ))
        .await
        .unwrap()
        .expect("the HubSpot fake starts");
    let marketo = fakes
        .spawn(fake_marketo::FakeMarketo::start(fake_marketo::FakeMarketoConfig::new(
            "mkto-id",
            "mkto-secret",
        )))
        .await
        .unwrap()
        .expect("the Marketo fake starts");
    let slack = fakes
        .spawn(fake_slack::FakeSlack::start(fake_slack::FakeSlackConfig::default()))
        .await
        .unwrap()
        .expect("the Slack fake starts");
    let webhook = fakes
        .spawn(fake_webhook::FakeWebhook::start(WEBHOOK_SECRET))
        .await
        .unwrap()
        .expect("the webhook fake starts");
    cfg.destinations.braze =
        Some(nudge_deliver::BrazeConfig::new("braze-bench", braze.base_url()).allowing_private());
    cfg.destinations.hubspot = Some(
        nudge_deliver::HubSpotConfig::new("hubspot-bench")
            .with_base_url(hubspot.base_url())
            .allowing_private(),
    );
    cfg.destinations.marketo = Some(
        nudge_deliver::MarketoConfig::new(marketo.base_url(), "mkto-id", "mkto-secret").allowing_private(),
    );
    cfg.destinations.slack = Some(nudge_deliver::SlackConfig::new(slack.webhook_url()).allowing_private());
    cfg.destinations.webhooks =
        vec![nudge_deliver::WebhookConfig::new("bench", webhook.url(), WEBHOOK_SECRET).allowing_private()];
    Box::new((braze, hubspot, marketo, slack, webhook))
}

/// `n` live flows: the two built-in ones, then flows of the kinds a marketing team writes (mixed triggers,
/// conditions over the customer, the event and the scores, caps, holdouts, baselines), cycled with numbered
/// names until there are `n`.
fn bench_flows(n: usize) -> Vec<nudge_policy::flows::FlowSpec> {
    const KINDS: [(&str, &str, &str); 10] = [
        (
            "order_placed",
            "customer.orders_count >= 3 && scores.churn_risk < 30.0",
            r#"frequency_cap = "1/30d""#,
        ),
        ("order_placed", "event.value >= 200.0", "holdout_percent = 10\nbaseline = \"event.value >= 150.0\""),
        ("order_updated", "customer.total_spent > 1000.0", ""),
        ("scores_changed", "scores.segment == 'at_risk'", r#"frequency_cap = "1/7d""#),
        (
            "state_changed",
            "customer.orders_count == 1 && customer.email_consent",
            r#"frequency_cap = "1/365d""#,
        ),
        ("order_placed", "'vip' in customer.tags", ""),
        ("checkout_started", "customer.open_checkout_value > 100.0", r#"frequency_cap = "1/1d""#),
        ("order_cancelled", "customer.orders_count >= 1", ""),
        ("customer_updated", "customer.sms_consent && customer.orders_count >= 2", ""),
        (
            "order_placed",
            "has(customer.last_order_at) && customer.days_since_last_order > 60.0",
            "holdout_percent = 20\nbaseline = \"customer.days_since_last_order > 90.0\"",
        ),
    ];
    let mut toml = String::from(
        r#"
[[flows]]
name = "profile_sync"
trigger = "state_changed"
actions = [{ type = "sync_profile", destination = "klaviyo" }]

[[flows]]
name = "checkout_abandoned"
trigger = "checkout_abandoned"
actions = [{ type = "track_event", destination = "klaviyo", metric = "AI Checkout Abandoned" }]
"#,
    );
    for i in 0..n.saturating_sub(2) {
        let (trigger, when, extra) = KINDS[i % KINDS.len()];
        toml.push_str(&format!(
            "\n[[flows]]\nname = \"bench_{i}\"\ntrigger = \"{trigger}\"\nwhen = \"{when}\"\n{extra}\n\
             actions = [{{ type = \"track_event\", destination = \"klaviyo\", metric = \"AI Bench {i}\", \
             properties = {{ segment = \"scores.segment\" }} }}]\n"
        ));
    }
    #[derive(serde::Deserialize)]
    struct Flows {
        flows: Vec<nudge_policy::flows::FlowSpec>,
    }
    let mut flows = toml::from_str::<Flows>(&toml).expect("the benchmark's flows parse").flows;
    flows.truncate(n);
    flows
}

// ---------------------------------------------------------------------------------------------------------
// Sustained processing (`--sustain S`).

/// The child `--role fake`: an unthrottled Klaviyo fake in a process of its own, so the memory it keeps
/// (every request and profile) and its CPU are not nudge's. Prints its base URL, then once a second
/// `profiles cpu_seconds` (the profiles it holds, its CPU so far), until its standard input closes.
fn fake_child() {
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build().unwrap();
    rt.block_on(async {
        let fake = FakeKlaviyo::start(FakeKlaviyoConfig::new(KEY).unthrottled()).await.unwrap();
        println!("{}", fake.base_url());
        let stdin_closed = tokio::task::spawn_blocking(|| {
            let mut sink = String::new();
            while std::io::stdin().read_line(&mut sink).map(|n| n > 0).unwrap_or(false) {}
        });
        tokio::pin!(stdin_closed);
        loop {
            tokio::select! {
                _ = &mut stdin_closed => break,
                _ = tokio::time::sleep(Duration::from_secs(1)) => {
                    let (_, profiles, _) = fake.counts();
                    println!("{profiles} {:.3}", cpu_seconds());
                }
            }
        }
        fake.shutdown().await;
    });
}

/// CPU seconds used so far by each of this process's threads, summed by thread name.
fn thread_cpu() -> BTreeMap<String, f64> {
    let tick = 100.0; // USER_HZ on Linux
    let mut by_name = BTreeMap::new();
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else { return by_name };
    for t in tasks.flatten() {
        let Ok(stat) = std::fs::read_to_string(t.path().join("stat")) else { continue };
        // `pid (comm) state ppid …`: the name may hold spaces; the fields after it are fixed.
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else { continue };
        let name = stat[open + 1..close].to_string();
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let (u, s) = (fields[11].parse::<f64>().unwrap_or(0.0), fields[12].parse::<f64>().unwrap_or(0.0));
        // Tokio's worker threads are named per runtime; the blocking pool's take the runtime's name too.
        *by_name.entry(name).or_insert(0.0) += (u + s) / tick;
    }
    by_name
}

/// Resident memory of this process now, in MB.
fn rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

/// `--sustain S`: a closed-loop ack phase of `--seconds` (requests built while sending, spread over
/// `--customers`) fills the durable log; then, with no more requests, processing is watched for up to
/// S seconds while it works the backlog off: deliveries processed per second (normalise → state → scores
/// → flows → audit → outbox committed), outbox items pushed to the fake (limits off, in a process of its
/// own) per second, nudge's resident memory, and CPU per processed delivery by thread. `--perf FILE`
/// records a CPU profile of the window with `perf record` (call graphs by DWARF) for `perf report`.
fn sustain(m: &BTreeMap<String, String>, a: &Args, window: u64, pg: Option<&PgBench>) {
    let customers = num(m, "customers", CUSTOMERS);
    let mut fake = Command::new(std::env::current_exe().expect("own path"))
        .args(["--role", "fake"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the fake");
    let mut lines = BufReader::new(fake.stdout.take().unwrap()).lines();
    let base_url = lines.next().expect("the fake's URL").expect("read the fake");
    // (profiles held, CPU seconds) of the fake, as last printed.
    let fake_counts = Arc::new(std::sync::Mutex::new((0u64, 0f64)));
    {
        let fake_counts = fake_counts.clone();
        std::thread::spawn(move || {
            for line in lines.map_while(Result::ok) {
                if let Some((p, c)) = line.split_once(' ') {
                    *fake_counts.lock().unwrap() = (p.parse().unwrap_or(0), c.parse().unwrap_or(0.0));
                }
            }
        });
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let mut cfg = spine_config(m, a);
    let unlimited = nudge_deliver::RateLimit::new(1_000_000, 60_000_000);
    let mut klaviyo = nudge_deliver::klaviyo::KlaviyoConfig::new(KEY).with_base_url(base_url);
    klaviyo.profile_import_limit = unlimited;
    klaviyo.events_limit = unlimited;
    cfg.destinations.klaviyo = Some(klaviyo);
    if let Some(pg) = pg {
        pg.configure(&mut cfg);
    }
    rt.block_on(async move {
        let dir = tempfile::tempdir().unwrap();
        cfg.storage.data_dir = dir.path().to_path_buf();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let app = nudge::app::run(cfg, listener).await.unwrap();
        let addr = app.addr.to_string();
        let probe = lead_probe(pg, &[&app]).await;
        println!(
            "machine: {} cores; durability {:?}; {} connections; {customers} customers; fill {}s closed loop, \
             then up to {window}s of processing watched; the fake in a process of its own",
            std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0),
            a.durability,
            a.connections,
            a.seconds,
        );
        let args = vec![
            ("addr", addr.clone()),
            ("connections", a.connections.to_string()),
            ("first", "0".to_string()),
            ("count", (a.seconds * 60_000).to_string()),
            ("seconds", a.seconds.to_string()),
            ("customers", customers.to_string()),
            ("stream", "1".to_string()),
        ];
        let fill_started = Instant::now();
        let r = tokio::task::spawn_blocking(move || spawn_loadgen(&args)).await.unwrap();
        let acked = r["ok"].as_u64().unwrap_or(0);
        let (backlog0, outbox0) = app.shared.store.backlog().await.unwrap();
        println!(
            "fill (closed loop, {}s): {acked} durable acks, {:.0} acks/s, ack p99 {:.2} ms; {} processed meanwhile \
             ({:.0}/s), {backlog0} waiting, {outbox0} outbox items pending",
            a.seconds,
            acked as f64 / r["secs"].as_f64().unwrap_or(1.0),
            r["p99_ms"].as_f64().unwrap_or(0.0),
            acked.saturating_sub(backlog0),
            acked.saturating_sub(backlog0) as f64 / fill_started.elapsed().as_secs_f64(),
        );

        let perf = m.get("perf").map(|file| {
            Command::new("perf")
                .args(["record", "-F", "249", "--call-graph", "dwarf,16384", "-o", file, "-p"])
                .arg(std::process::id().to_string())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("perf record starts (install linux-perf)")
        });
        let pg_cpu0 = match &probe {
            Some((pg, probe)) => Some(pg.snapshot(probe).await),
            None => None,
        };
        let (cpu0, threads0, fake0) = (cpu_seconds(), thread_cpu(), *fake_counts.lock().unwrap());
        let started = Instant::now();
        let pushed = || {
            // Outbox items settled at the destination, from nudge's own counters: (delivered, merged into a
            // newer profile sync of the same customer).
            let text = app.shared.metrics.render();
            let count = |prefix: &str, label: &str| {
                text.lines()
                    .filter(|l| l.starts_with(prefix) && l.contains(label))
                    .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
                    .sum::<f64>() as u64
            };
            (
                count("nudge_pushes_total{", "outcome=\"delivered\""),
                count("nudge_outbox_coalesced_total{", "destination="),
            )
        };
        let pushed0 = pushed();
        let (mut last_backlog, mut last_pushed) = (backlog0, pushed0);
        let (mut per_second, mut max_rss) = (Vec::new(), rss_mb());
        let mut drained_at = None;
        println!("    t  processed/s   waiting   outbox pending   delivered/s   merged/s   nudge RSS");
        for second in 1..=window {
            tokio::time::sleep_until((started + Duration::from_secs(second)).into()).await;
            let (backlog, outbox) = app.shared.store.backlog().await.unwrap();
            let settled = pushed();
            let rss = rss_mb();
            max_rss = f64::max(max_rss, rss);
            let processed = last_backlog.saturating_sub(backlog);
            println!(
                "  {second:3}s  {processed:11}  {backlog:8}  {outbox:15}  {:12}  {:9}  {rss:7.0} MB",
                settled.0.saturating_sub(last_pushed.0),
                settled.1.saturating_sub(last_pushed.1),
            );
            (last_backlog, last_pushed) = (backlog, settled);
            if backlog == 0 {
                drained_at = Some(started.elapsed().as_secs_f64());
                break;
            }
            per_second.push(processed);
        }
        let secs = started.elapsed().as_secs_f64();
        if let Some(mut p) = perf {
            // SAFETY: a signal to the child we started.
            unsafe { libc::kill(p.id() as i32, libc::SIGINT) };
            let _ = p.wait();
        }
        let processed = backlog0.saturating_sub(last_backlog);
        let cpu = cpu_seconds() - cpu0;
        let fake1 = *fake_counts.lock().unwrap();
        per_second.sort_unstable();
        println!(
            "sustained processing: {processed} deliveries in {secs:.1}s = {:.0} deliveries/s (per full second: \
             median {}, min {}, max {}){}",
            processed as f64 / secs,
            per_second.get(per_second.len() / 2).copied().unwrap_or(0),
            per_second.first().copied().unwrap_or(0),
            per_second.last().copied().unwrap_or(0),
            match drained_at {
                Some(t) => format!("; the backlog ran out at {t:.1}s (fill longer for a longer window)"),
                None => String::new(),
            }
        );
        let settled = pushed();
        let (sent, merged) = (settled.0 - pushed0.0, settled.1 - pushed0.1);
        println!(
            "  outbox items settled: {sent} delivered to the fake ({:.0}/s), {merged} merged into a newer profile \
             sync ({:.0}/s; the fake holds {} profiles); nudge used {:.0} µs CPU per processed delivery (pushing \
             included), the fake {:.0} µs; nudge's RSS peaked at {max_rss:.0} MB",
            sent as f64 / secs,
            merged as f64 / secs,
            fake1.0,
            cpu / processed.max(1) as f64 * 1e6,
            (fake1.1 - fake0.1) / processed.max(1) as f64 * 1e6,
        );
        println!("  CPU per processed delivery by thread:");
        let threads1 = thread_cpu();
        for (name, t1) in &threads1 {
            let used = t1 - threads0.get(name).copied().unwrap_or(0.0);
            if used > 0.0 {
                println!("    {name:28} {:7.1} µs", used / processed.max(1) as f64 * 1e6);
            }
        }
        if let (Some((pg, probe)), Some(before)) = (&probe, &pg_cpu0) {
            pg.report_cpu(probe, before, processed).await;
            pg.report_size(probe).await;
        }
        app.shutdown().await;
        if let Some((_, probe)) = probe {
            probe.close().await;
        }
    });
    drop(fake.stdin.take());
    let _ = fake.wait();
}
