//! The embedded backend: one SQLite database file in the data directory, in WAL mode.
//!
//! All writes go through one writer thread that owns the write connection. Deliveries on the ack path are
//! group-committed: the log's writer drains every delivery waiting in its queue into one transaction, so one
//! flush acknowledges many webhooks, and a sync thread does that flush while the writer goes on with the
//! next group. Reads use a small pool of read-only connections on blocking threads,
//! so the audit API never waits behind the writer.

use crate::codec::*;
use crate::*;
use nudge_model::{AuditRecord, AuditStage, CustomerId, TerminalState, TraceId};
use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

mod approvals;
mod audit;
mod bandit;
mod fetch;
mod identity;
mod log;
mod outbox;
mod privacy;
mod processing;
mod registry;
mod retention;
mod segments;
mod states;
mod timers;
mod tokens;

const MIGRATION: &str = include_str!("../../migrations/sqlite_001_init.sql");
const LOG_MIGRATION: &str = include_str!("../../migrations/sqlite_log_001.sql");
/// Applied after [`MIGRATION`] on every open (idempotent): databases from before API tokens gain the table.
const TOKENS_MIGRATION: &str = include_str!("../../migrations/sqlite_002_api_tokens.sql");
/// Applied after [`TOKENS_MIGRATION`] on every open (idempotent): the approval queue.
const APPROVALS_MIGRATION: &str = include_str!("../../migrations/sqlite_003_approvals.sql");
/// Decisions of measured flows, for the shadow and lift reports.
const FLOW_DECISIONS_MIGRATION: &str = include_str!("../../migrations/sqlite_004_flow_decisions.sql");
/// Applied after the migrations before it on every open (idempotent): the progress of schedule flows.
const SCHEDULE_RUNS_MIGRATION: &str = include_str!("../../migrations/sqlite_005_schedule_runs.sql");
/// Applied after the migrations before it on every open (idempotent): per-destination outbox indexes.
const OUTBOX_PER_DESTINATION_MIGRATION: &str =
    include_str!("../../migrations/sqlite_006_outbox_per_destination.sql");
/// Applied after the migrations before it on every open (idempotent): batch pushes' progress.
const PUSH_RUNS_MIGRATION: &str = include_str!("../../migrations/sqlite_007_push_runs.sql");
/// Applied after the migrations before it on every open (idempotent): durable fetch jobs.
const FETCH_JOBS_MIGRATION: &str = include_str!("../../migrations/sqlite_008_fetch_jobs.sql");
/// Applied after the others on every open (idempotent): privacy jobs and the indexes erasure looks up by.
const PRIVACY_MIGRATION: &str = include_str!("../../migrations/sqlite_009_privacy.sql");
/// Applied after the others on every open (idempotent): customer aliases (identity stitching).
const ALIASES_MIGRATION: &str = include_str!("../../migrations/sqlite_010_aliases.sql");
/// Applied after [`ALIASES_MIGRATION`] on every open (idempotent): the offer log.
const OFFERS_MIGRATION: &str = include_str!("../../migrations/sqlite_011_offers.sql");
/// Applied after the migrations before it on every open (idempotent): the catalogue.
const PRODUCTS_MIGRATION: &str = include_str!("../../migrations/sqlite_012_products.sql");
/// Applied after the others on every open (idempotent): generated copy's token use per month.
const LLM_USAGE_MIGRATION: &str = include_str!("../../migrations/sqlite_013_llm_usage.sql");
/// Applied after the migrations before it on every open (idempotent): discovered and adopted segments.
const SEGMENTS_MIGRATION: &str = include_str!("../../migrations/sqlite_014_segments.sql");
/// Applied after the migrations before it on every open (idempotent): the console's dead-letter and
/// quarantine lists.
const DEAD_LETTER_LIST_MIGRATION: &str = include_str!("../../migrations/sqlite_015_dead_letter_list.sql");
/// Applied after the migrations before it on every open (idempotent): the index of states still stored as
/// text.
const STATE_BYTES_MIGRATION: &str = include_str!("../../migrations/sqlite_016_state_bytes.sql");
/// The most deliveries one group commit takes; bounds the latency of the first one in the batch.
const MAX_GROUP: usize = 4096;
/// The most other write jobs (processing batches, attempts, …) one group commit takes.
const MAX_JOBS: usize = 64;
/// Page size of a new ingest log. A stored delivery is typically 2–2.5 KB (an LZ4-compressed order and its
/// headers): a 4 KB page holds one, an 8 KB page three, so the log writes (and flushes before each ack)
/// about a third less per delivery. The derived database keeps 4 KB pages: its writes are random-key rows,
/// where a larger page is only more to write.
const LOG_PAGE_SIZE: u32 = 8192;
/// The main database's writer commits at most once per this long under load (the first commit after an
/// idle spell goes at once); what arrives meanwhile joins the open transaction. Each commit of
/// `nudge.db` is flushed (SQLite's own flush) and rewrites the pages its rows landed on; committing per
/// processing batch as it came gave ~1,100 commits/s for 2,000 deliveries/s (under two deliveries per
/// commit), ~40 KB of WAL per delivery, and a WAL that reached SQLite's automatic checkpoint about once a
/// second, run by the writer itself and visible as a stall in event→push latency.
const MAIN_COMMIT_SPACING: Duration = Duration::from_millis(2);

/// At most this often the background thread checkpoints the WAL.
const CHECKPOINT_EVERY_MS: u64 = 50;
/// SQLite's own checkpoint (run by the committing writer) only past this many WAL pages.
const BACKSTOP_CHECKPOINT_PAGES: i64 = 20_000;

/// How hard SQLite works to make a commit durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Durability {
    /// fsync on every commit: survives power loss.
    #[default]
    Full,
    /// fsync at checkpoints only: survives a process crash (kill -9), not a power cut.
    Normal,
}

/// What a write job hands back: called once the transaction it ran in has committed (`Ok`) or failed.
type Reply = Box<dyn FnOnce(std::result::Result<(), String>) + Send>;
/// A write run by the writer thread inside the current group transaction (in a savepoint of its own).
type Job = Box<dyn FnOnce(&Connection) -> Reply + Send>;

enum Cmd {
    Deliver(Box<NewDelivery>, i64, oneshot::Sender<Result<CommitResult>>),
    Run(Job),
    /// From the writer's syncer: the oldest commit handed to it is flushed (and answered).
    Flushed,
    /// The store is gone: commit what is open, answer everything, stop.
    Close,
}

pub struct SqliteStore {
    /// Queue of the ingest log's writer (deliveries from the ack path and the timers). `Sender` is `Sync`
    /// and sends without a lock.
    log_tx: mpsc::Sender<Cmd>,
    /// Queue of the main database's writer (every other write).
    tx: mpsc::Sender<Cmd>,
    /// Idle read connections, reused so reads don't pay for opening the file.
    readers: Arc<Mutex<Vec<Connection>>>,
    path: PathBuf,
    log_path: PathBuf,
    /// Dedupe keys by hash; owned by the writer, shared with the pruning job.
    keys: Arc<Mutex<KeyIndex>>,
    /// The highest delivery seq known durable: processing reads no further, so nothing derived ever rests
    /// on a delivery a power cut could still take back.
    durable: Arc<std::sync::atomic::AtomicI64>,
}

/// In-memory index of the dedupe keys in `delivery_keys`: a 64-bit hash of each key → the delivery's seq.
/// A hit is confirmed against the table, so a hash collision can never drop a delivery; the few keys whose
/// hash collides live in `more`. About 20 bytes per key.
pub(crate) struct KeyIndex {
    hasher: std::collections::hash_map::RandomState,
    first: std::collections::HashMap<u64, i64>,
    more: std::collections::HashMap<u64, Vec<i64>>,
}

impl KeyIndex {
    fn empty() -> Self {
        KeyIndex {
            hasher: std::collections::hash_map::RandomState::new(),
            first: std::collections::HashMap::new(),
            more: std::collections::HashMap::new(),
        }
    }

    fn load(conn: &Connection) -> Result<Self> {
        let mut idx = KeyIndex::empty();
        let mut st = conn.prepare("SELECT seq, keys FROM delivery_keys ORDER BY seq")?;
        let mut rows = st.query([])?;
        while let Some(r) = rows.next()? {
            let seq: i64 = r.get(0)?;
            let keys: String = r.get(1)?;
            for k in keys.split('\n') {
                idx.insert(k, seq);
            }
        }
        Ok(idx)
    }

    fn hash(&self, key: &str) -> u64 {
        use std::hash::BuildHasher;
        self.hasher.hash_one(key)
    }

    fn insert(&mut self, key: &str, seq: i64) {
        let h = self.hash(key);
        match self.first.entry(h) {
            std::collections::hash_map::Entry::Vacant(v) => {
                v.insert(seq);
            }
            std::collections::hash_map::Entry::Occupied(_) => self.more.entry(h).or_default().push(seq),
        }
    }

    /// Deliveries that may carry `key` (same hash).
    fn candidates(&self, key: &str) -> impl Iterator<Item = i64> + '_ {
        let h = self.hash(key);
        self.first.get(&h).copied().into_iter().chain(self.more.get(&h).into_iter().flatten().copied())
    }

    /// Forgets every key of deliveries before `seq`; returns how many.
    fn forget_before(&mut self, seq: i64) -> usize {
        let before = self.first.len() + self.more.values().map(Vec::len).sum::<usize>();
        self.first.retain(|_, s| *s >= seq);
        self.more.retain(|_, v| {
            v.retain(|s| *s >= seq);
            !v.is_empty()
        });
        before - (self.first.len() + self.more.values().map(Vec::len).sum::<usize>())
    }
}

/// Adds a column that a database written by an earlier version lacks.
/// Settles open offers at `value`: the customer's whose window holds `order_at_ms` (an order), or with no
/// customer every offer whose window ended before `order_at_ms` (expiry, at zero). Each takes the next
/// `settle_seq`, so the learner reads every settlement once. Returns how many were settled.
fn settle_offers(
    tx: &Connection,
    customer: Option<&str>,
    order_at_ms: i64,
    value: f64,
    now_ms: i64,
) -> Result<u64> {
    let ids: Vec<String> = match customer {
        Some(c) => tx
            .prepare_cached(
                "SELECT id FROM offer_log WHERE customer_id = ?1 AND settled_at IS NULL
                 AND decided_at <= ?2 AND window_end >= ?2 ORDER BY decided_at, id",
            )?
            .query_map(params![c, order_at_ms], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?,
        None => tx
            .prepare_cached(
                "SELECT id FROM offer_log WHERE settled_at IS NULL AND window_end < ?1 ORDER BY window_end, id",
            )?
            .query_map([order_at_ms], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?,
    };
    if ids.is_empty() {
        return Ok(0);
    }
    let mut seq: i64 = tx
        .prepare_cached("SELECT COALESCE(MAX(settle_seq), 0) FROM offer_log")?
        .query_row([], |r| r.get(0))?;
    for id in &ids {
        seq += 1;
        tx.prepare_cached(
            "UPDATE offer_log SET outcome_value = ?1, settled_at = ?2, settle_seq = ?3 WHERE id = ?4",
        )?
        .execute(params![value, now_ms, seq, id])?;
    }
    Ok(ids.len() as u64)
}

const OFFER_COLUMNS: &str = "id, flow, customer_id, arm, propensity, explored, context, decided_at, window_end, \
     outcome_value, settled_at, settle_seq";

fn read_offers(c: &Connection, sql: &str, args: impl rusqlite::Params) -> Result<Vec<LoggedOffer>> {
    let mut st = c.prepare_cached(sql)?;
    let mut rows = st.query(args)?;
    let mut out = Vec::new();
    while let Some(r) = rows.next()? {
        let customer: String = r.get(2)?;
        let context: String = r.get(6)?;
        out.push(LoggedOffer {
            id: r.get(0)?,
            flow: r.get(1)?,
            customer: customer
                .parse()
                .map_err(|_| StoreError::Corrupt(format!("offer customer id {customer}")))?,
            arm: r.get(3)?,
            propensity: r.get(4)?,
            explored: r.get(5)?,
            context: serde_json::from_str(&context)?,
            decided_at_ms: r.get(7)?,
            window_end_ms: r.get(8)?,
            outcome_value: r.get(9)?,
            settled_at_ms: r.get(10)?,
            settle_seq: r.get(11)?,
        });
    }
    Ok(out)
}

fn add_column_if_missing(conn: &Connection, table: &str, column: &str, decl: &str) -> Result<()> {
    let present: bool = conn.query_row(
        &format!("SELECT EXISTS(SELECT 1 FROM pragma_table_info('{table}') WHERE name = ?1)"),
        [column],
        |r| r.get(0),
    )?;
    if !present {
        conn.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {decl}"))?;
    }
    Ok(())
}

/// Databases written by earlier versions kept the deliveries (with their processing status) and the dedupe
/// keys in `nudge.db`. Move them into the ingest log once: copy (idempotent), then record what was
/// processed and drop the old tables. A crash in between repeats the copy harmlessly.
/// Logs created before fetch jobs had `trace_id` UNIQUE; a fetched answer is stored under its
/// notification's trace, so such a log's table is rebuilt once without the constraint (an index instead).
fn allow_shared_trace_ids(log: &Connection) -> Result<()> {
    let sql: String = log.query_row(
        "SELECT sql FROM sqlite_master WHERE type = 'table' AND name = 'deliveries'",
        [],
        |r| r.get(0),
    )?;
    if sql.contains("UNIQUE") {
        log.execute_batch(
            "BEGIN IMMEDIATE;
             CREATE TABLE deliveries_shared_trace (
                 seq INTEGER PRIMARY KEY AUTOINCREMENT, trace_id TEXT NOT NULL, source TEXT NOT NULL,
                 topic TEXT NOT NULL, shop TEXT, webhook_id TEXT, event_id TEXT, received_at INTEGER NOT NULL,
                 headers TEXT NOT NULL, body BLOB NOT NULL, body_codec INTEGER NOT NULL DEFAULT 0);
             INSERT INTO deliveries_shared_trace SELECT seq, trace_id, source, topic, shop, webhook_id, event_id,
                 received_at, headers, body, body_codec FROM deliveries;
             DROP TABLE deliveries;
             ALTER TABLE deliveries_shared_trace RENAME TO deliveries;
             COMMIT;",
        )?;
    }
    log.execute_batch("CREATE INDEX IF NOT EXISTS deliveries_trace ON deliveries(trace_id);")?;
    Ok(())
}

fn migrate_legacy_layout(main: &Connection, log: &Connection, main_path: &Path) -> Result<()> {
    let has = |c: &Connection, table: &str| -> Result<bool> {
        Ok(c.query_row(
            "SELECT EXISTS(SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1)",
            [table],
            |r| r.get(0),
        )?)
    };
    if !has(main, "deliveries")? {
        return Ok(());
    }
    add_column_if_missing(main, "deliveries", "body_codec", "INTEGER NOT NULL DEFAULT 0")?;
    let main_path = main_path.to_str().ok_or_else(|| StoreError::Database("data dir is not UTF-8".into()))?;
    log.execute("ATTACH DATABASE ?1 AS legacy", [main_path])?;
    let copy = (|| -> Result<()> {
        log.execute_batch(
            "BEGIN IMMEDIATE;
             INSERT OR IGNORE INTO deliveries
               (seq, trace_id, source, topic, shop, webhook_id, event_id, received_at, headers, body, body_codec)
               SELECT seq, trace_id, source, topic, shop, webhook_id, event_id, received_at, headers, body, body_codec
               FROM legacy.deliveries;",
        )?;
        if has(main, "delivery_keys")? {
            log.execute_batch(
                "INSERT OR IGNORE INTO delivery_keys (seq, created_at, keys)
                 SELECT seq, created_at, keys FROM legacy.delivery_keys;",
            )?;
        }
        if has(main, "dedupe")? {
            log.execute_batch(
                "INSERT OR IGNORE INTO delivery_keys (seq, created_at, keys)
                 SELECT d.seq, MIN(k.created_at), group_concat(k.key, char(10))
                 FROM legacy.dedupe k JOIN legacy.deliveries d ON d.trace_id = k.trace_id GROUP BY d.seq;",
            )?;
        }
        log.execute_batch("COMMIT")?;
        Ok(())
    })();
    if copy.is_err() {
        let _ = log.execute_batch("ROLLBACK");
    }
    log.execute_batch("DETACH DATABASE legacy")?;
    copy?;
    main.execute_batch(
        "BEGIN IMMEDIATE;
         INSERT OR IGNORE INTO processed (seq, trace_id, status, reason)
           SELECT seq, trace_id, status, status_reason FROM deliveries WHERE status != 'pending';
         INSERT OR IGNORE INTO requeued (seq)
           SELECT seq FROM deliveries WHERE status = 'pending'
             AND seq < (SELECT COALESCE(MAX(seq), 0) FROM processed);
         DROP TABLE deliveries;
         DROP TABLE IF EXISTS delivery_keys;
         DROP TABLE IF EXISTS dedupe;
         COMMIT;",
    )?;
    Ok(())
}

/// Plans statements without looking at the values bound to them. Otherwise SQLite marks a statement with a
/// bound `LIMIT ?` (to plan with its value) and compiles it again every time a value is bound — for every
/// pending-delivery, due-outbox and timer read, a parse and a plan per call. The plans don't need the
/// values: there are no statistics tables.
fn stable_plans(conn: &Connection) -> Result<()> {
    conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
    Ok(())
}

/// Opens a database's write connection in WAL mode with the chosen durability. `page_size` applies to a
/// database created now (SQLite fixes it when the file is first written); an existing one keeps its own.
fn open_writer(path: &Path, durability: Durability, migration: &str, page_size: u32) -> Result<Connection> {
    let conn = Connection::open(path)?;
    conn.pragma_update(None, "page_size", page_size)?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(
        None,
        "synchronous",
        match durability {
            Durability::Full => "FULL",
            Durability::Normal => "NORMAL",
        },
    )?;
    conn.busy_timeout(std::time::Duration::from_secs(10))?;
    stable_plans(&conn)?;
    // Room for every statement the writer runs per group (rusqlite keeps 16 by default).
    conn.set_prepared_statement_cache_capacity(64);
    // Every job runs in a savepoint, whose journal (the pages it changed, as they were) SQLite would move
    // to a temporary file past 64 KiB: a file created, written and deleted per processing batch. In memory
    // it is a copy.
    conn.pragma_update(None, "temp_store", "MEMORY")?;
    conn.execute_batch(migration)?;
    conn.pragma_update(None, "wal_autocheckpoint", BACKSTOP_CHECKPOINT_PAGES)?;
    Ok(conn)
}

/// `ioprio_set`'s target: one thread (`who` 0: the calling one).
#[cfg(target_os = "linux")]
const IOPRIO_WHO_PROCESS: libc::c_int = 1;
/// I/O class best effort (2, shifted by 13) at level 7, its lowest.
#[cfg(target_os = "linux")]
const IOPRIO_BEST_EFFORT_LOWEST: libc::c_int = (2 << 13) | 7;

/// How a background thread (the processing side) is scheduled next to the ack path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackgroundPriority {
    /// Niceness, 0–19 (Linux keeps it per thread).
    pub nice: i32,
    /// Linux's `SCHED_IDLE` class: the thread runs only on CPU no normal thread wants, and a waking normal
    /// thread (an ack) preempts it at once instead of waiting out its time slice.
    pub idle: bool,
}

impl BackgroundPriority {
    /// The same priority as the ack path.
    pub const NORMAL: BackgroundPriority = BackgroundPriority { nice: 0, idle: false };

    /// Applies this priority to the calling thread (Linux; elsewhere it does nothing).
    pub fn apply(self) {
        #[cfg(target_os = "linux")]
        {
            if self.nice > 0 {
                // SAFETY: plain system call on the calling thread's own id.
                let rc =
                    unsafe { libc::setpriority(libc::PRIO_PROCESS, libc::gettid() as libc::id_t, self.nice) };
                if rc != 0 {
                    tracing::warn!(nice = self.nice, "could not lower the priority of a background thread");
                }
            }
            if self.idle {
                let param = libc::sched_param { sched_priority: 0 };
                // SAFETY: plain system call; pid 0 is the calling thread, `param` outlives the call.
                let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
                if rc != 0 {
                    tracing::warn!("could not move a background thread to the idle scheduling class");
                }
                // Linux can derive a thread's I/O class from its CPU class: idle (it does under
                // mq-deadline). A write of the idle class waits in the block layer's queue while normal ones
                // are pending (milliseconds under load), and a writer holds locks shared with the ack path's
                // flush meanwhile: several files' inodes share a block, and the thread writing that block
                // holds it until the write is done. The ack's flush then waited behind the idle write
                // (priority inversion, the ack tail). Best effort at its lowest level keeps the threads fair
                // and out of that trap.
                // SAFETY: plain system call; who 0 is the calling thread.
                let rc = unsafe {
                    libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, IOPRIO_BEST_EFFORT_LOWEST)
                };
                if rc != 0 {
                    tracing::warn!("could not set the I/O priority of a background thread");
                }
            }
        }
        #[cfg(not(target_os = "linux"))]
        let _ = self;
    }
}

/// Starts a writer thread on `conn` (and its checkpoint thread) at `priority`; returns its queue. Only
/// the ingest log's writer takes deliveries (`log`), and only its commits are flushed by a sync thread of
/// their own (with `durability = "full"`; see [`WalSyncer`]): from here on what was committed before is
/// flushed now, and SQLite no longer waits for the disk in a commit. The main database keeps SQLite's own
/// flush in each commit: its rows are read and acted on (pushed, fired) as soon as they are visible, so
/// they must be durable by then.
fn start_writer(
    name: &str,
    mut conn: Connection,
    durability: Durability,
    log: Option<LogSide>,
    priority: BackgroundPriority,
) -> Result<mpsc::Sender<Cmd>> {
    let path = PathBuf::from(
        conn.path().ok_or_else(|| StoreError::Database(format!("{name}: the database has no file")))?,
    );
    let (tx, rx) = mpsc::channel::<Cmd>();
    let syncer = match (durability, &log) {
        (Durability::Full, Some(log)) => {
            // The WAL beside the file SQLite really opened (it resolves symbolic links to name it).
            let wal = wal_path(&path);
            // What an earlier process committed is all durable from here on (it may have stopped between
            // a commit and its flush: then nothing acknowledged it, and it is kept all the same).
            if wal.exists() {
                sync_wal(&wal, &mut None).map_err(StoreError::Database)?;
            }
            conn.pragma_update(None, "synchronous", "NORMAL")?;
            Some(WalSyncer::start(wal, log.durable.clone(), tx.clone())?)
        }
        _ => None,
    };
    let checkpointer = Checkpointer::start(path, priority)?;
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || {
            priority.apply();
            // The log commits as soon as its last flush is done (an ack waits on it); the main database's
            // writer spaces its commits (see `MAIN_COMMIT_SPACING`).
            let spacing = if log.is_some() { Duration::ZERO } else { MAIN_COMMIT_SPACING };
            writer_loop(&mut conn, rx, checkpointer, log, syncer, spacing)
        })
        .map_err(|e| StoreError::Database(format!("cannot start writer thread: {e}")))?;
    Ok(tx)
}

impl SqliteStore {
    /// Opens (creating if needed) `dir/nudge.db` and the ingest log `dir/ingest.db`, applies migrations and
    /// starts one writer thread for each.
    pub fn open(dir: &Path, durability: Durability) -> Result<Self> {
        Self::open_with_priority(dir, durability, BackgroundPriority::NORMAL)
    }

    /// [`Self::open`], with the main database's writer and checkpoint threads (the processing side) at
    /// `background`; the ingest log's threads, which acknowledgements wait on, keep the default priority.
    pub fn open_with_priority(
        dir: &Path,
        durability: Durability,
        background: BackgroundPriority,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir)
            .map_err(|e| StoreError::Database(format!("cannot create data dir {}: {e}", dir.display())))?;
        let path = dir.join("nudge.db");
        let log_path = dir.join("ingest.db");
        let log = open_writer(&log_path, durability, LOG_MIGRATION, LOG_PAGE_SIZE)?;
        let conn = open_writer(&path, durability, MIGRATION, 4096)?;
        conn.execute_batch(TOKENS_MIGRATION)?;
        conn.execute_batch(APPROVALS_MIGRATION)?;
        conn.execute_batch(FLOW_DECISIONS_MIGRATION)?;
        conn.execute_batch(SCHEDULE_RUNS_MIGRATION)?;
        conn.execute_batch(OUTBOX_PER_DESTINATION_MIGRATION)?;
        conn.execute_batch(PUSH_RUNS_MIGRATION)?;
        conn.execute_batch(FETCH_JOBS_MIGRATION)?;
        conn.execute_batch(PRIVACY_MIGRATION)?;
        conn.execute_batch(ALIASES_MIGRATION)?;
        conn.execute_batch(OFFERS_MIGRATION)?;
        conn.execute_batch(PRODUCTS_MIGRATION)?;
        conn.execute_batch(LLM_USAGE_MIGRATION)?;
        conn.execute_batch(SEGMENTS_MIGRATION)?;
        conn.execute_batch(DEAD_LETTER_LIST_MIGRATION)?;
        conn.execute_batch(STATE_BYTES_MIGRATION)?;
        add_column_if_missing(&conn, "flow_decisions", "arm", "TEXT")?;
        // Deleted rows are overwritten with zeros where they lay (no extra I/O: the page is written
        // anyway); an erasure turns the full mode on for its own deletes (see `sqlite::privacy`).
        conn.pragma_update(None, "secure_delete", "FAST")?;
        migrate_legacy_layout(&conn, &log, &path)?;
        allow_shared_trace_ids(&log)?;
        let keys = Arc::new(Mutex::new(KeyIndex::load(&log)?));
        let durable: i64 = log.query_row("SELECT COALESCE(MAX(seq), 0) FROM deliveries", [], |r| r.get(0))?;
        let durable = Arc::new(std::sync::atomic::AtomicI64::new(durable));
        let log_side = LogSide { keys: keys.clone(), durable: durable.clone() };
        let log_tx =
            start_writer("nudge-sqlite-log", log, durability, Some(log_side), BackgroundPriority::NORMAL)?;
        let tx = match start_writer("nudge-sqlite-writer", conn, durability, None, background) {
            Ok(tx) => tx,
            Err(e) => {
                // The log's syncer holds its queue open: its writer must be told to stop.
                let _ = log_tx.send(Cmd::Close);
                return Err(e);
            }
        };
        Ok(SqliteStore {
            log_tx,
            tx,
            readers: Arc::new(Mutex::new(Vec::new())),
            path,
            log_path,
            keys,
            durable,
        })
    }

    /// Runs `f` on the writer thread inside the next group transaction; resolves once that transaction is
    /// durably committed. An error from `f` rolls back only `f`'s own changes.
    async fn write<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        self.write_on(&self.tx, f).await
    }

    /// [`Self::write`] on the given writer's queue (the main database's or the ingest log's).
    async fn write_on<R: Send + 'static>(
        &self,
        queue: &mpsc::Sender<Cmd>,
        f: impl FnOnce(&Connection) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let (otx, orx) = oneshot::channel();
        let job = Cmd::Run(Box::new(move |c| {
            let r = in_savepoint(c, f);
            Box::new(move |committed: std::result::Result<(), String>| {
                let _ = otx.send(match (r, committed) {
                    (Err(e), _) => Err(e),
                    (Ok(_), Err(msg)) => Err(StoreError::Database(msg)),
                    (Ok(v), Ok(())) => Ok(v),
                });
            })
        }));
        queue.send(job).map_err(|_| StoreError::Closed)?;
        orx.await.map_err(|_| StoreError::Closed)?
    }

    async fn read<R: Send + 'static>(
        &self,
        f: impl FnOnce(&Connection) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let pool = self.readers.clone();
        let path = self.path.clone();
        let log_path = self.log_path.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match pool.lock().expect("reader pool lock poisoned").pop() {
                Some(c) => c,
                None => {
                    let c = Connection::open_with_flags(
                        &path,
                        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
                    )?;
                    c.busy_timeout(std::time::Duration::from_secs(10))?;
                    stable_plans(&c)?;
                    let log = log_path
                        .to_str()
                        .ok_or_else(|| StoreError::Database("data dir is not UTF-8".into()))?;
                    c.execute("ATTACH DATABASE ?1 AS log", [log])?;
                    c
                }
            };
            let r = f(&conn);
            let mut p = pool.lock().expect("reader pool lock poisoned");
            if p.len() < 8 {
                p.push(conn);
            }
            r
        })
        .await
        .map_err(|e| StoreError::Database(format!("read task failed: {e}")))?
    }
}

/// Runs `f` between `SAVEPOINT` and `RELEASE`; on error its changes are rolled back and the error returned.
fn in_savepoint<R>(c: &Connection, f: impl FnOnce(&Connection) -> Result<R>) -> Result<R> {
    control(c, "SAVEPOINT job")?;
    match f(c) {
        Ok(v) => {
            control(c, "RELEASE job")?;
            Ok(v)
        }
        Err(e) => {
            // Some errors (a full disk, I/O, out of memory) make SQLite roll back the whole transaction,
            // savepoint included: then there is nothing to roll back to, and `e` is what matters.
            if !c.is_autocommit() {
                control(c, "ROLLBACK TO job")?;
                control(c, "RELEASE job")?;
            }
            Err(e)
        }
    }
}

/// Runs a transaction control statement (`BEGIN`, `COMMIT`, `SAVEPOINT`, …) from the connection's
/// statement cache: the writers run several per group, and compiling them each time showed in the log
/// writer's profile (the parser, ~4% of its time).
fn control(c: &Connection, sql: &str) -> rusqlite::Result<()> {
    c.prepare_cached(sql)?.execute([]).map(|_| ())
}

/// What only the ingest log's writer has: the dedupe index and the durable watermark.
struct LogSide {
    keys: Arc<Mutex<KeyIndex>>,
    durable: Arc<std::sync::atomic::AtomicI64>,
}

/// A reply held until the commit it belongs to is durable.
enum Finish {
    /// A delivery's answer, as its transaction left it.
    Delivery(oneshot::Sender<Result<CommitResult>>, Result<CommitResult>),
    /// A job's reply, with whether its transaction committed.
    Job(Reply, std::result::Result<(), String>),
}

impl Finish {
    /// Sends the reply, given whether the commit is durable (`Ok`) or the reason it is not.
    fn send(self, durable: std::result::Result<(), String>) {
        match self {
            Finish::Delivery(reply, r) => {
                let _ = reply.send(match (r, durable) {
                    (Ok(_), Err(msg)) => Err(StoreError::Database(msg)),
                    (r, _) => r,
                });
            }
            Finish::Job(reply, committed) => reply(committed.and(durable)),
        }
    }
}

/// The writer thread: takes everything waiting in its queue (deliveries from the ack path, processing
/// batches, delivery attempts, timer firings, …) into one transaction, so one flush serves many. Replies go
/// out only after the commit: with a syncer (`durability = "full"`) once it has flushed the commit, at once
/// otherwise.
///
/// With a syncer, one commit waits for its flush at a time (more only when a group reaches `MAX_GROUP`
/// deliveries, or on closing). While the syncer flushes, the writer goes on running what arrives inside an
/// open transaction and commits it the moment the flush is reported (`Cmd::Flushed`): one commit per
/// flush, however many groups arrive meanwhile. Committing each group as it came instead rewrote the log's
/// last pages (the table's and its indexes' right edges) once per small commit, several times per flush:
/// about four times the delivery's own bytes went to the WAL.
///
/// Commits are also at least `spacing` apart (zero for the log; see `MAIN_COMMIT_SPACING`):
/// the first after an idle spell goes at once, and what arrives before the next is due joins it.
fn writer_loop(
    conn: &mut Connection,
    rx: mpsc::Receiver<Cmd>,
    checkpointer: Checkpointer,
    log: Option<LogSide>,
    syncer: Option<WalSyncer>,
    spacing: Duration,
) {
    let mut open = OpenGroup::default();
    // Commits handed to the syncer whose flush has not been reported yet.
    let mut unsynced = 0usize;
    let mut closing = false;
    // When the last commit began: the next one waits until `spacing` has passed since (none waits when
    // the writer was idle that long).
    let mut last_commit: Option<Instant> = None;
    let due = |last: Option<Instant>| last.map(|t| t + spacing);
    loop {
        // With a group open and nothing else to wait for, wait for more work only until the commit is due.
        let waiting_for_spacing = open.began && unsynced == 0 && !closing;
        let first = match (waiting_for_spacing, due(last_commit)) {
            (true, Some(at)) => match rx.recv_timeout(at.saturating_duration_since(Instant::now())) {
                Ok(c) => Some(c),
                Err(mpsc::RecvTimeoutError::Timeout) => None,
                Err(mpsc::RecvTimeoutError::Disconnected) => Some(Cmd::Close),
            },
            _ => Some(rx.recv().unwrap_or(Cmd::Close)),
        };
        let mut deliveries: Vec<Pending> = Vec::new();
        let mut jobs: Vec<Job> = Vec::new();
        let mut next = first;
        while let Some(cmd) = next {
            match cmd {
                Cmd::Deliver(d, codec, r) => deliveries.push((d, codec, r)),
                Cmd::Run(j) => jobs.push(j),
                Cmd::Flushed => unsynced = unsynced.saturating_sub(1),
                Cmd::Close => closing = true,
            }
            next = if deliveries.len() < MAX_GROUP && jobs.len() < MAX_JOBS && !closing {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        if !deliveries.is_empty() || !jobs.is_empty() {
            open.add(conn, log.as_ref(), deliveries, jobs);
        }
        let spaced = due(last_commit).is_none_or(|at| Instant::now() >= at);
        let full = open.deliveries.len() >= MAX_GROUP || open.jobs.len() >= MAX_JOBS;
        if open.began && ((unsynced == 0 && spaced) || full || closing) {
            last_commit = Some(Instant::now());
            let (finishes, last_seq) = open.commit(conn);
            checkpointer.nudge();
            match &syncer {
                Some(syncer) => {
                    if syncer.after_flush(finishes, last_seq) {
                        unsynced += 1;
                    } else {
                        // No flush will be reported: wait for none (every later commit is refused by
                        // `after_flush` the same way).
                        unsynced = 0;
                    }
                }
                None => {
                    if let (Some(log), Some(seq)) = (&log, last_seq) {
                        log.durable.fetch_max(seq, std::sync::atomic::Ordering::SeqCst);
                    }
                    for f in finishes {
                        f.send(Ok(()));
                    }
                }
            }
        }
        if closing && !open.began {
            // Dropping `syncer` stops it once it has flushed and answered everything handed to it.
            return;
        }
    }
}

/// The writer's open transaction: what it holds and the replies that wait for its commit.
#[derive(Default)]
struct OpenGroup {
    began: bool,
    /// The transaction could not begin; everything added is refused with this reason.
    failed: Option<String>,
    deliveries: Vec<(oneshot::Sender<Result<CommitResult>>, Result<CommitResult>)>,
    jobs: Vec<Reply>,
}

impl OpenGroup {
    /// Runs deliveries and jobs inside the open transaction (beginning it if needed), each batch of
    /// deliveries and each job in a savepoint of its own, so a failure rolls back only its own changes.
    fn add(&mut self, conn: &Connection, log: Option<&LogSide>, deliveries: Vec<Pending>, jobs: Vec<Job>) {
        if !self.began {
            self.began = true;
            self.failed = control(conn, "BEGIN IMMEDIATE").err().map(|e| e.to_string());
        }
        if !deliveries.is_empty() {
            self.check_open(conn);
            let results: std::result::Result<Vec<CommitResult>, String> = match (&self.failed, log) {
                (Some(e), _) => Err(e.clone()),
                (None, Some(log)) => {
                    let mut keys = log.keys.lock().expect("key index lock poisoned");
                    in_savepoint(conn, |c| insert_deliveries(c, &mut keys, &deliveries))
                        .map_err(|e| e.to_string())
                }
                (None, None) => Err("deliveries go to the ingest log's writer".to_string()),
            };
            let replies = deliveries.into_iter().map(|(_, _, reply)| reply);
            match results {
                Ok(results) => self.deliveries.extend(replies.zip(results.into_iter().map(Ok))),
                Err(msg) => self
                    .deliveries
                    .extend(replies.map(|reply| (reply, Err(StoreError::Database(msg.clone()))))),
            }
        }
        for job in jobs {
            self.check_open(conn);
            match &self.failed {
                None => self.jobs.push(job(conn)),
                // Not run: dropping a job drops its reply channel, and its caller gets `StoreError::Closed`.
                Some(e) => tracing::error!(error = %e, "a write job was dropped: its transaction failed"),
            }
        }
    }

    /// Marks the group failed when SQLite has rolled its transaction back (after a full disk or an I/O
    /// error in a job): what follows must not run outside it, each statement committing on its own.
    fn check_open(&mut self, conn: &Connection) {
        if self.failed.is_none() && conn.is_autocommit() {
            self.failed = Some("the transaction was rolled back after an error".into());
        }
    }

    /// Commits (or, when it could not begin, gives up) the open transaction; returns the replies waiting
    /// for it and the highest delivery it committed.
    fn commit(&mut self, conn: &Connection) -> (Vec<Finish>, Option<i64>) {
        let group = std::mem::take(self);
        let committed = match group.failed {
            Some(e) => Err(e),
            None => control(conn, "COMMIT").map_err(|e| {
                let _ = conn.execute_batch("ROLLBACK");
                e.to_string()
            }),
        };
        let mut last_seq = None;
        let mut finishes = Vec::with_capacity(group.deliveries.len() + group.jobs.len());
        for (reply, r) in group.deliveries {
            // When the commit failed, a duplicate is refused too: its original may have been in it.
            let r = match (&committed, r) {
                (Err(msg), _) => Err(StoreError::Database(msg.clone())),
                (Ok(()), r) => r,
            };
            if let Ok(CommitResult::Committed { seq }) = &r {
                last_seq = Some(last_seq.map_or(*seq, |l: i64| l.max(*seq)));
            }
            finishes.push(Finish::Delivery(reply, r));
        }
        finishes.extend(group.jobs.into_iter().map(|reply| Finish::Job(reply, committed.clone())));
        (finishes, last_seq)
    }
}

/// The `-wal` file beside a database.
fn wal_path(db: &Path) -> PathBuf {
    let mut p = db.as_os_str().to_owned();
    p.push("-wal");
    PathBuf::from(p)
}

/// `fdatasync` of the WAL file (opened on first use and kept: it lives as long as the writer's connection).
/// On first use the directory holding it is flushed too, so the WAL's own entry survives a power cut (as
/// SQLite does at its first sync of a WAL).
fn sync_wal(wal: &Path, file: &mut Option<std::fs::File>) -> std::result::Result<(), String> {
    if file.is_none() {
        let opened = std::fs::File::open(wal).map_err(|e| format!("cannot open {}: {e}", wal.display()))?;
        if let Some(dir) = wal.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(|e| format!("cannot flush directory {}: {e}", dir.display()))?;
        }
        *file = Some(opened);
    }
    let f = file.as_ref().expect("opened above");
    f.sync_data().map_err(|e| format!("cannot flush {}: {e}", wal.display()))
}

/// Makes the ingest log's commits durable on a thread of its own. The log's connection commits with
/// `synchronous = NORMAL` (frames written, not flushed; SQLite still flushes before each checkpoint and
/// when the WAL starts over) and hands the commit's replies here; one `fdatasync` of the WAL then serves
/// every commit made before it, after which the durable watermark moves, the replies go out and the
/// writer hears `Cmd::Flushed`. Meanwhile the writer is already running the next group: the flush of one
/// group and the work of the next overlap, where a flush inside each commit made them take turns. Replies
/// leave in commit order.
struct WalSyncer {
    tx: mpsc::Sender<(Vec<Finish>, Option<i64>)>,
}

impl WalSyncer {
    /// `durable` moves to the highest delivery flushed; `writer` is the log writer's queue, told
    /// `Cmd::Flushed` after each flushed commit.
    fn start(
        wal: PathBuf,
        durable: Arc<std::sync::atomic::AtomicI64>,
        writer: mpsc::Sender<Cmd>,
    ) -> Result<Self> {
        let (tx, rx) = mpsc::channel::<(Vec<Finish>, Option<i64>)>();
        std::thread::Builder::new()
            .name("nudge-sqlite-sync".into())
            .spawn(move || {
                let mut file: Option<std::fs::File> = None;
                // A failed flush is final: Linux reports a writeback error once, so a later flush that
                // succeeds proves nothing about the frames the failed one held. From then on every commit
                // is refused (and nothing more counts as durable) until nudge is restarted, when the log
                // is flushed again on opening.
                let mut failed: Option<String> = None;
                while let Ok(first) = rx.recv() {
                    let mut groups = vec![first];
                    groups.extend(rx.try_iter());
                    let synced = match &failed {
                        Some(e) => Err(format!("{e} (earlier; restart nudge once the disk is fixed)")),
                        None => sync_wal(&wal, &mut file),
                    };
                    match &synced {
                        Ok(()) => {
                            if let Some(seq) = groups.iter().filter_map(|(_, s)| *s).max() {
                                durable.fetch_max(seq, std::sync::atomic::Ordering::SeqCst);
                            }
                        }
                        Err(e) if failed.is_none() => {
                            tracing::error!(error = %e, "the ingest log could not be flushed; deliveries are refused until restart");
                            failed = Some(e.clone());
                        }
                        Err(_) => {}
                    }
                    for (finishes, _) in groups {
                        for f in finishes {
                            f.send(synced.clone());
                        }
                        // The writer may commit its next group now (it may be gone: shutting down).
                        let _ = writer.send(Cmd::Flushed);
                    }
                }
            })
            .map_err(|e| StoreError::Database(format!("cannot start the log's sync thread: {e}")))?;
        Ok(WalSyncer { tx })
    }

    /// Runs `finishes` once everything committed so far is flushed; `last_seq` is the highest delivery they
    /// committed. False when the sync thread is gone (the replies then report it at once, and no
    /// `Cmd::Flushed` will follow).
    fn after_flush(&self, finishes: Vec<Finish>, last_seq: Option<i64>) -> bool {
        match self.tx.send((finishes, last_seq)) {
            Ok(()) => true,
            Err(mpsc::SendError((finishes, _))) => {
                for f in finishes {
                    f.send(Err("the ingest log's sync thread stopped".into()));
                }
                false
            }
        }
    }
}

/// A delivery waiting for the group commit: its body already encoded (codec, bytes), and the reply.
type Pending = (Box<NewDelivery>, i64, oneshot::Sender<Result<CommitResult>>);

/// Stores the deliveries of one group, skipping (and reporting) those whose dedupe key is already known.
/// Keys enter the index as soon as their row is written: a later delivery in the same group sees them, and
/// should the group roll back, the confirmation against the table finds no row and the key counts as new.
fn insert_deliveries(tx: &Connection, keys: &mut KeyIndex, batch: &[Pending]) -> Result<Vec<CommitResult>> {
    let mut out = Vec::with_capacity(batch.len());
    let mut confirm = tx.prepare_cached(
        "SELECT d.trace_id, k.keys FROM delivery_keys k JOIN deliveries d ON d.seq = k.seq WHERE k.seq = ?1",
    )?;
    let mut ins_d = tx.prepare_cached(
        "INSERT INTO deliveries (trace_id, source, topic, shop, webhook_id, event_id, received_at, headers, body,
         body_codec) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)",
    )?;
    let mut ins_k =
        tx.prepare_cached("INSERT INTO delivery_keys (seq, created_at, keys) VALUES (?1, ?2, ?3)")?;
    'next: for (d, codec, _) in batch {
        for key in &d.dedupe_keys {
            for seq in keys.candidates(key) {
                let row: Option<(String, String)> =
                    confirm.query_row([seq], |r| Ok((r.get(0)?, r.get(1)?))).optional()?;
                if let Some((t, stored)) = row
                    && stored.split('\n').any(|k| k == key)
                {
                    let original = t.parse().map_err(|_| StoreError::Corrupt(format!("trace id {t}")))?;
                    out.push(CommitResult::Duplicate { original, key: key.clone() });
                    continue 'next;
                }
            }
        }
        ins_d.execute(params![
            d.trace_id.to_string(),
            d.source,
            d.topic,
            d.shop,
            d.webhook_id,
            d.event_id,
            d.received_at_ms,
            d.headers_json,
            d.body,
            codec
        ])?;
        let seq = tx.last_insert_rowid();
        if !d.dedupe_keys.is_empty() {
            ins_k.execute(params![seq, d.received_at_ms, d.dedupe_keys.join("\n")])?;
            for key in &d.dedupe_keys {
                keys.insert(key, seq);
            }
        }
        out.push(CommitResult::Committed { seq });
    }
    Ok(out)
}

/// Copies committed WAL frames into the database file on a thread of its own, so the writer (and the acks
/// waiting on it) never pays for a checkpoint. SQLite's own automatic checkpoint stays on as a backstop,
/// at a larger WAL size, for when this thread falls behind.
struct Checkpointer {
    /// (a checkpoint is wanted, the store is closing)
    state: Arc<(Mutex<(bool, bool)>, std::sync::Condvar)>,
}

impl Checkpointer {
    fn start(path: PathBuf, priority: BackgroundPriority) -> Result<Self> {
        let state = Arc::new((Mutex::new((false, false)), std::sync::Condvar::new()));
        let conn = Connection::open(&path)?;
        conn.busy_timeout(std::time::Duration::from_secs(10))?;
        let st = state.clone();
        std::thread::Builder::new()
            .name("nudge-sqlite-checkpoint".into())
            .spawn(move || {
                priority.apply();
                loop {
                    {
                        let (lock, cv) = &*st;
                        let mut s = lock.lock().expect("checkpoint lock poisoned");
                        while !s.0 && !s.1 {
                            s = cv.wait(s).expect("checkpoint lock poisoned");
                        }
                        if s.1 {
                            return;
                        }
                        s.0 = false;
                    }
                    if let Err(e) = conn.query_row("PRAGMA wal_checkpoint(PASSIVE)", [], |_| Ok(())) {
                        tracing::warn!(error = %e, "background WAL checkpoint failed; SQLite's own takes over");
                    }
                    std::thread::sleep(std::time::Duration::from_millis(CHECKPOINT_EVERY_MS));
                }
            })
            .map_err(|e| StoreError::Database(format!("cannot start checkpoint thread: {e}")))?;
        Ok(Checkpointer { state })
    }

    /// Asks for a checkpoint soon; cheap when one is already pending.
    fn nudge(&self) {
        let (lock, cv) = &*self.state;
        let mut s = lock.lock().expect("checkpoint lock poisoned");
        if !s.0 {
            s.0 = true;
            cv.notify_one();
        }
    }
}

impl Drop for SqliteStore {
    /// The log's writer does not see its queue close (its syncer holds a sender to it): it is told. (The
    /// main writer's queue closes with the store; telling it too costs nothing.)
    fn drop(&mut self) {
        let _ = self.log_tx.send(Cmd::Close);
        let _ = self.tx.send(Cmd::Close);
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        let (lock, cv) = &*self.state;
        if let Ok(mut s) = lock.lock() {
            s.1 = true;
            cv.notify_one();
        }
    }
}

fn parse_trace(s: &str) -> rusqlite::Result<TraceId> {
    s.parse()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
}

impl SqliteStore {
    /// A page of `customers` rows in key order after `after`, from `from` (the table, with an index hint) and
    /// rows matching `filter` (a condition followed by `AND`, or nothing).
    async fn scan_customers(
        &self,
        from: &'static str,
        filter: &'static str,
        after: Option<CustomerId>,
        limit: usize,
    ) -> Result<Vec<StoredState>> {
        let after = after.map(|c| c.to_string()).unwrap_or_default();
        self.read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT customer_id, email, state FROM {from} WHERE {filter} customer_id > ?1
                 ORDER BY customer_id LIMIT ?2"
            ))?;
            let rows = st.query_map(params![after, limit as i64], |r| {
                Ok(StoredState {
                    customer: parse_customer(&r.get::<_, String>(0)?)?,
                    email: r.get(1)?,
                    state: state_bytes(r.get_ref(2)?)?,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }
}

/// A stored state's bytes: a BLOB as written now, or the text of a row written before states were bytes.
fn state_bytes(v: rusqlite::types::ValueRef<'_>) -> rusqlite::Result<Vec<u8>> {
    match v {
        rusqlite::types::ValueRef::Blob(b) | rusqlite::types::ValueRef::Text(b) => Ok(b.to_vec()),
        other => Err(rusqlite::Error::FromSqlConversionFailure(
            0,
            other.data_type(),
            "a customer state is text or bytes".into(),
        )),
    }
}

fn parse_customer(s: &str) -> rusqlite::Result<CustomerId> {
    s.parse()
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, Box::new(e)))
}

/// Audit records as stored: consecutive records of one trace, customer and instant share a row, whose
/// `stage` names their stages joined by `+` and whose `detail` is the JSON array of their details. A
/// delivery's processing is one row instead of five, and an attempt with the terminal state it settles one
/// instead of two; rows with a single stage (and those written before packing) hold the detail itself.
///
/// A `detail` of 256 bytes or more is stored LZ4-compressed (as [`encode_body`] does, a BLOB) when that makes it
/// smaller, and as text otherwise; reads tell the two apart by the value's type. A delivery's processing row
/// (~2.6 KB of JSON) no longer fills a page of its own: the audit table takes about half the disk it did.
struct AuditRow {
    trace: String,
    customer: Option<String>,
    stage: String,
    at: i64,
    detail: rusqlite::types::Value,
}

/// An audit detail as stored (see [`AuditRow`]).
fn stored_detail(json: String) -> rusqlite::types::Value {
    use rusqlite::types::Value;
    match encode_body(json.into_bytes()) {
        (CODEC_LZ4, packed) => Value::Blob(packed),
        (_, raw) => Value::Text(String::from_utf8(raw).expect("kept as it was: the JSON text")),
    }
}

/// An audit record with its detail serialized, ready to be packed into a row.
struct SerializedRecord {
    trace: String,
    customer: Option<String>,
    stage: &'static str,
    at: i64,
    detail: String,
}

impl SerializedRecord {
    fn new(r: &AuditRecord) -> Result<Self> {
        Ok(SerializedRecord {
            trace: r.trace_id.to_string(),
            customer: r.customer.as_ref().map(|c| c.to_string()),
            stage: r.stage.as_str(),
            at: ts_to_ms(r.at),
            detail: serde_json::to_string(&r.detail)?,
        })
    }
}

/// Packs records into rows (see [`AuditRow`]).
fn pack_rows(records: impl IntoIterator<Item = SerializedRecord>) -> Vec<AuditRow> {
    let mut rows: Vec<AuditRow> = Vec::new();
    let mut group: Vec<SerializedRecord> = Vec::new();
    let flush = |group: &mut Vec<SerializedRecord>, rows: &mut Vec<AuditRow>| {
        let mut members = group.drain(..);
        let Some(first) = members.next() else { return };
        let (mut stage, mut detail) = (first.stage.to_string(), first.detail);
        // More than one: the JSON array of the details, as `serde_json` writes one.
        let mut several = false;
        for r in members {
            if !several {
                detail.insert(0, '[');
                several = true;
            }
            stage.push('+');
            stage.push_str(r.stage);
            detail.push(',');
            detail.push_str(&r.detail);
        }
        if several {
            detail.push(']');
        }
        rows.push(AuditRow {
            trace: first.trace,
            customer: first.customer,
            stage,
            at: first.at,
            detail: stored_detail(detail),
        });
    };
    for r in records {
        if let Some(first) = group.first()
            && (first.trace != r.trace || first.customer != r.customer || first.at != r.at)
        {
            flush(&mut group, &mut rows);
        }
        group.push(r);
    }
    flush(&mut group, &mut rows);
    rows
}

/// Packs `records` into rows (see [`AuditRow`]); done on the caller's thread (the JSON, the compression and
/// freeing the records), so the writer thread only inserts.
fn pack_audit(records: Vec<AuditRecord>) -> Result<Vec<AuditRow>> {
    Ok(pack_rows(records.iter().map(SerializedRecord::new).collect::<Result<Vec<_>>>()?))
}

fn insert_audit(tx: &Connection, r: &AuditRow) -> Result<()> {
    tx.prepare_cached(
        "INSERT INTO audit (trace_id, customer_id, stage, at, detail) VALUES (?1, ?2, ?3, ?4, ?5)",
    )?
    .execute(params![r.trace, r.customer, r.stage, r.at, r.detail])?;
    Ok(())
}

const FETCH_JOB_COLUMNS: &str = "id, trace_id, source, job, status, attempts, next_attempt_at, last_error";

fn fetch_job_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<FetchJobRecord> {
    Ok(FetchJobRecord {
        id: r.get(0)?,
        trace_id: parse_trace(&r.get::<_, String>(1)?)?,
        source: r.get(2)?,
        job: r.get(3)?,
        status: r.get(4)?,
        attempts: r.get::<_, i64>(5)?.clamp(0, i64::from(u32::MAX)) as u32,
        next_attempt_at_ms: r.get(6)?,
        last_error: r.get(7)?,
    })
}

fn insert_terminal(tx: &Connection, trace: TraceId, t: &TerminalState, at_ms: i64) -> Result<()> {
    tx.prepare_cached(
        "INSERT OR IGNORE INTO terminal (trace_id, state, reason, at) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![trace.to_string(), t.name(), t.reason(), at_ms])?;
    Ok(())
}

/// The records of one audit row (see [`AuditRow`]).
fn audit_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Vec<AuditRecord>> {
    let trace = parse_trace(&r.get::<_, String>(0)?)?;
    let customer = r.get::<_, Option<String>>(1)?.as_deref().map(parse_customer).transpose()?;
    let stage: String = r.get(2)?;
    let at = ms_to_ts(r.get(3)?);
    let detail: String = match r.get_ref(4)? {
        rusqlite::types::ValueRef::Blob(packed) => {
            String::from_utf8(decode_body(CODEC_LZ4, packed.to_vec())?).map_err(|e| {
                rusqlite::Error::FromSqlConversionFailure(4, rusqlite::types::Type::Blob, Box::new(e))
            })?
        }
        _ => r.get(4)?,
    };
    let record = |stage: &str, detail: serde_json::Value| AuditRecord {
        trace_id: trace,
        customer: customer.clone(),
        stage: AuditStage::parse(stage).unwrap_or(AuditStage::Received),
        at,
        detail,
    };
    if stage.contains('+') {
        let stages: Vec<&str> = stage.split('+').collect();
        if let Ok(serde_json::Value::Array(details)) = serde_json::from_str(&detail)
            && details.len() == stages.len()
        {
            return Ok(stages.into_iter().zip(details).map(|(s, d)| record(s, d)).collect());
        }
    }
    let detail = serde_json::from_str(&detail).unwrap_or(serde_json::Value::String(detail));
    Ok(vec![record(&stage, detail)])
}

fn stored_delivery(r: &rusqlite::Row<'_>) -> rusqlite::Result<StoredDelivery> {
    Ok(StoredDelivery {
        seq: r.get(0)?,
        trace_id: parse_trace(&r.get::<_, String>(1)?)?,
        source: r.get(2)?,
        topic: r.get(3)?,
        shop: r.get(4)?,
        webhook_id: r.get(5)?,
        received_at_ms: r.get(6)?,
        headers_json: r.get(7)?,
        body: decode_body(r.get(9)?, r.get(8)?)?,
    })
}

/// Deliveries in the log not yet processed: after the highest processed seq, plus those requeued below it.
/// An outbox row read as `id, trace_id, customer_id, destination, action, attempts, origin_us` (columns 0–6).
fn outbox_item_of(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxItem> {
    Ok(OutboxItem {
        id: r.get(0)?,
        trace_id: parse_trace(&r.get::<_, String>(1)?)?,
        customer: parse_customer(&r.get::<_, String>(2)?)?,
        destination: r.get(3)?,
        action_json: r.get(4)?,
        attempts: r.get(5)?,
        origin_us: r.get(6)?,
    })
}

const PENDING_COUNT: &str = "SELECT
    (SELECT COUNT(*) FROM log.deliveries WHERE seq > (SELECT COALESCE(MAX(seq), 0) FROM main.processed))
  + (SELECT COUNT(*) FROM main.requeued WHERE seq <= (SELECT COALESCE(MAX(seq), 0) FROM main.processed))";

/// An attempt as the writer records it: its audit record already serialized by the caller.
struct Attempt {
    item_id: i64,
    trace_id: TraceId,
    result: AttemptResult,
    at_ms: i64,
    customer: Option<CustomerId>,
    at: nudge_model::Timestamp,
    audit: SerializedRecord,
}

impl Attempt {
    fn new(a: AttemptRecord) -> Result<Self> {
        Ok(Attempt {
            audit: SerializedRecord::new(&a.audit)?,
            item_id: a.item_id,
            trace_id: a.trace_id,
            result: a.result,
            at_ms: a.at_ms,
            customer: a.audit.customer,
            at: a.audit.at,
        })
    }
}

/// One attempt inside an open transaction (see `Store::record_attempts`).
fn record_one(tx: &Connection, a: Attempt) -> Result<()> {
    let (status, next, err) = match &a.result {
        AttemptResult::Delivered => ("delivered", None, None),
        AttemptResult::RetryAt(t) => ("pending", Some(*t), None),
        AttemptResult::Rejected(e) => ("rejected", None, Some(e.clone())),
        AttemptResult::DeadLettered(e) => ("dead", None, Some(e.clone())),
        AttemptResult::Coalesced { .. } => ("coalesced", None, None),
    };
    tx.prepare_cached(
        "UPDATE outbox SET status = ?1, attempts = attempts + 1, next_attempt_at = COALESCE(?2, next_attempt_at),
         last_error = COALESCE(?3, last_error) WHERE id = ?4",
    )?
    .execute(params![status, next, err, a.item_id])?;
    // The trace is final once none of its items is pending.
    let trace = a.trace_id.to_string();
    let counts: (i64, i64, i64) = tx
        .prepare_cached(
            "SELECT SUM(status = 'pending'), SUM(status = 'rejected'), SUM(status = 'dead') FROM outbox WHERE trace_id = ?1",
        )?
        .query_row([&trace], |r| {
            Ok((
                r.get::<_, Option<i64>>(0)?.unwrap_or(0),
                r.get::<_, Option<i64>>(1)?.unwrap_or(0),
                r.get::<_, Option<i64>>(2)?.unwrap_or(0),
            ))
        })?;
    let mut settled: Option<SerializedRecord> = None;
    if counts.0 == 0 && !has_pending_approval(tx, &trace)? {
        let terminal = outbox_outcome(tx, &trace, counts.1, counts.2)?;
        // A replayed trace gets its new outcome: it replaces the earlier terminal state.
        tx.prepare_cached(
            "INSERT OR REPLACE INTO terminal (trace_id, state, reason, at) VALUES (?1, ?2, ?3, ?4)",
        )?
        .execute(params![trace, terminal.name(), terminal.reason(), a.at_ms])?;
        settled = Some(SerializedRecord::new(&AuditRecord {
            trace_id: a.trace_id,
            customer: a.customer,
            stage: AuditStage::Terminal,
            at: a.at,
            detail: serde_json::json!({ "state": terminal.name(), "reason": terminal.reason() }),
        })?);
    }
    for row in pack_rows(std::iter::once(a.audit).chain(settled)) {
        insert_audit(tx, &row)?;
    }
    Ok(())
}

fn has_pending_approval(tx: &Connection, trace: &str) -> Result<bool> {
    Ok(tx
        .prepare_cached("SELECT 1 FROM approvals WHERE trace_id = ?1 AND status = 'pending' LIMIT 1")?
        .query_row([trace], |_| Ok(()))
        .optional()?
        .is_some())
}

fn approval_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApprovalRecord> {
    let actions: String = r.get(5)?;
    let status: String = r.get(8)?;
    Ok(ApprovalRecord {
        id: r.get(0)?,
        trace_id: parse_trace(&r.get::<_, String>(1)?)?,
        flow: r.get(2)?,
        flow_version: r.get(3)?,
        customer: parse_customer(&r.get::<_, String>(4)?)?,
        actions: serde_json::from_str(&actions).unwrap_or(serde_json::Value::String(actions)),
        created_at_ms: r.get(6)?,
        expires_at_ms: r.get(7)?,
        status: ApprovalStatus::parse(&status).unwrap_or(ApprovalStatus::Pending),
        decided_at_ms: r.get(9)?,
        decided_by: r.get(10)?,
        reason: r.get(11)?,
    })
}

const APPROVAL_COLUMNS: &str =
    "id, trace_id, flow, flow_version, customer_id, actions, created_at, expires_at, status,
     decided_at, decided_by, reason";

/// The terminal state a settled trace's outbox items give: delivered when none was rejected or
/// dead-lettered, else dead-lettered (or rejected) with their errors.
fn outbox_outcome(tx: &Connection, trace: &str, rejected: i64, dead: i64) -> Result<TerminalState> {
    if rejected + dead == 0 {
        return Ok(TerminalState::Delivered);
    }
    let errors: Vec<String> = tx
        .prepare_cached(
            "SELECT last_error FROM outbox WHERE trace_id = ?1 AND status IN ('rejected', 'dead') ORDER BY id",
        )?
        .query_map([trace], |r| Ok(r.get::<_, Option<String>>(0)?.unwrap_or_default()))?
        .collect::<rusqlite::Result<_>>()?;
    Ok(if dead > 0 {
        TerminalState::DeadLettered(errors.join("; "))
    } else {
        TerminalState::Rejected(errors.join("; "))
    })
}

/// One approval item's transition inside an open transaction: the row's new status, for an approval its
/// actions into the outbox, the audit record, and the trace's terminal state when nothing of it is pending
/// any more. `item` is the row as read in the same transaction (pending).
fn settle_approval(
    tx: &Connection,
    item: &ApprovalRecord,
    status: ApprovalStatus,
    by: &str,
    reason: Option<&str>,
    now_ms: i64,
) -> Result<bool> {
    // Only a pending item changes (an id named twice in one call, or decided meanwhile, changes once).
    let changed = tx
        .prepare_cached(
            "UPDATE approvals SET status = ?1, decided_at = ?2, decided_by = ?3, reason = ?4
             WHERE id = ?5 AND status = 'pending'",
        )?
        .execute(params![status.as_str(), now_ms, by, reason, item.id])?;
    if changed == 0 {
        return Ok(false);
    }
    let trace = item.trace_id.to_string();
    let customer = item.customer.to_string();
    let mut enqueued = 0usize;
    if status == ApprovalStatus::Approved {
        let actions = item.actions.as_array().cloned().unwrap_or_default();
        for a in &actions {
            let destination = a.get("destination").and_then(|d| d.as_str()).ok_or_else(|| {
                StoreError::Corrupt(format!("approval {}: an action without a destination", item.id))
            })?;
            let action = a.get("action").ok_or_else(|| {
                StoreError::Corrupt(format!("approval {}: an action without its body", item.id))
            })?;
            tx.prepare_cached(
                "INSERT INTO outbox (trace_id, customer_id, destination, action, next_attempt_at, created_at, origin_us)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)",
            )?
            .execute(params![trace, customer, destination, action.to_string(), now_ms, now_ms * 1000])?;
            enqueued += 1;
        }
    }
    let at = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(now_ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    let mut records = vec![SerializedRecord::new(&AuditRecord {
        trace_id: item.trace_id,
        customer: Some(item.customer.clone()),
        stage: AuditStage::Approval,
        at,
        detail: serde_json::json!({
            "approval_id": item.id, "flow": item.flow, "flow_version": item.flow_version,
            "status": status.as_str(), "by": by, "reason": reason, "enqueued": enqueued,
        }),
    })?];
    // Nothing pending any more for the trace (no outbox item, no approval), and no terminal state yet: it
    // settles now, from what its outbox items became (none: ignored, the approval's outcome as the reason).
    if (status != ApprovalStatus::Approved || enqueued == 0) && !has_pending_approval(tx, &trace)? {
        let counts: (i64, i64, i64, i64) = tx
            .prepare_cached(
                "SELECT SUM(status = 'pending'), SUM(status = 'rejected'), SUM(status = 'dead'), COUNT(*)
                 FROM outbox WHERE trace_id = ?1",
            )?
            .query_row([&trace], |r| {
                Ok((
                    r.get::<_, Option<i64>>(0)?.unwrap_or(0),
                    r.get::<_, Option<i64>>(1)?.unwrap_or(0),
                    r.get::<_, Option<i64>>(2)?.unwrap_or(0),
                    r.get::<_, i64>(3)?,
                ))
            })?;
        let has_terminal = tx
            .prepare_cached("SELECT 1 FROM terminal WHERE trace_id = ?1")?
            .query_row([&trace], |_| Ok(()))
            .optional()?
            .is_some();
        if counts.0 == 0 && !has_terminal {
            let terminal = if counts.3 == 0 {
                TerminalState::Ignored(match status {
                    ApprovalStatus::Approved => "approved; nothing to send".to_string(),
                    _ => format!("approval {}", status.as_str()),
                })
            } else {
                outbox_outcome(tx, &trace, counts.1, counts.2)?
            };
            insert_terminal(tx, item.trace_id, &terminal, now_ms)?;
            records.push(SerializedRecord::new(&AuditRecord {
                trace_id: item.trace_id,
                customer: Some(item.customer.clone()),
                stage: AuditStage::Terminal,
                at,
                detail: serde_json::json!({ "state": terminal.name(), "reason": terminal.reason() }),
            })?);
        }
    }
    for row in pack_rows(records) {
        insert_audit(tx, &row)?;
    }
    Ok(true)
}

/// The columns [`token_row`] reads: everything but the hash.
const TOKEN_COLUMNS: &str = "id, name, role, created_at, revoked_at, last_used_at";

fn token_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TokenRecord> {
    Ok(TokenRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        role: r.get(2)?,
        created_at_ms: r.get(3)?,
        revoked_at_ms: r.get(4)?,
        last_used_at_ms: r.get(5)?,
    })
}

/// An imported transaction from a row of `SELECT customer_id, order_id, day, amount, source FROM transactions`.
fn transaction_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<ImportedTransaction> {
    Ok(ImportedTransaction {
        customer_id: r.get(0)?,
        order_id: r.get(1)?,
        day: r.get(2)?,
        amount: r.get(3)?,
        source: r.get(4)?,
    })
}

/// One row of `aliases`, read as (alias, customer_id, created_at, trace_id).
fn alias_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Result<AliasRecord>> {
    let (alias, customer, at_ms, trace): (String, String, i64, Option<String>) =
        (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?);
    Ok((|| {
        let customer =
            customer.parse().map_err(|_| StoreError::Corrupt(format!("alias customer id {customer}")))?;
        let trace_id = trace
            .map(|t| t.parse().map_err(|_| StoreError::Corrupt(format!("alias trace id {t}"))))
            .transpose()?;
        Ok(AliasRecord { alias, customer, at_ms, trace_id })
    })())
}

fn decode_body(codec: i64, stored: Vec<u8>) -> rusqlite::Result<Vec<u8>> {
    unpack(codec, stored)
        .map_err(|e| rusqlite::Error::FromSqlConversionFailure(8, rusqlite::types::Type::Blob, e.into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(target_os = "linux")]
    #[test]
    fn background_priority_applies_to_the_calling_thread_only() {
        // (scheduling class, niceness, I/O priority) of a new thread after `p.apply()`.
        let on_new_thread = |p: BackgroundPriority| {
            std::thread::spawn(move || {
                p.apply();
                // SAFETY: plain system calls about the calling thread.
                unsafe {
                    (
                        libc::sched_getscheduler(0),
                        libc::getpriority(libc::PRIO_PROCESS, libc::gettid() as _),
                        libc::syscall(libc::SYS_ioprio_get, IOPRIO_WHO_PROCESS, 0) as libc::c_int,
                    )
                }
            })
            .join()
            .unwrap()
        };
        // The idle CPU class, but not the idle I/O class Linux would derive from it: best effort, lowest.
        assert_eq!(
            on_new_thread(BackgroundPriority { nice: 7, idle: true }),
            (libc::SCHED_IDLE, 7, IOPRIO_BEST_EFFORT_LOWEST)
        );
        let nice_only = on_new_thread(BackgroundPriority { nice: 3, idle: false });
        assert_eq!((nice_only.0, nice_only.1), (libc::SCHED_OTHER, 3));
        // SAFETY: as above.
        assert_eq!(unsafe { libc::sched_getscheduler(0) }, libc::SCHED_OTHER, "the test thread is untouched");
    }

    /// A statement with a bound `LIMIT ?` runs again and again without being compiled again.
    #[test]
    fn bound_limits_do_not_recompile_statements() {
        let reprepares = |stable: bool| {
            let c = Connection::open_in_memory().unwrap();
            if stable {
                stable_plans(&c).unwrap();
            }
            c.execute_batch("CREATE TABLE t (x INTEGER PRIMARY KEY); INSERT INTO t VALUES (1), (2), (3);")
                .unwrap();
            for n in 1..=5 {
                let mut st = c.prepare_cached("SELECT x FROM t WHERE x > ?2 ORDER BY x LIMIT ?1").unwrap();
                let rows: Vec<i64> =
                    st.query_map(params![n, 0], |r| r.get(0)).unwrap().map(|r| r.unwrap()).collect();
                assert_eq!(rows.len(), n.min(3) as usize);
            }
            let st = c.prepare_cached("SELECT x FROM t WHERE x > ?2 ORDER BY x LIMIT ?1").unwrap();
            st.get_status(rusqlite::StatementStatus::RePrepare)
        };
        assert_eq!(reprepares(true), 0);
        assert!(reprepares(false) > 0, "SQLite's default recompiles it (what `stable_plans` avoids)");
    }

    /// The syncer answers every commit handed to it after a flush, moves the durable watermark only when
    /// the flush succeeded, reports a failed flush to each waiting commit and refuses every later one.
    /// The main writer's spacing: the first commit after an idle spell goes at once; a job arriving within
    /// the spacing waits and shares its commit with what arrives meanwhile.
    #[test]
    fn main_writer_spaces_its_commits() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("spaced.db");
        let mut conn = open_writer(&path, Durability::Full, "CREATE TABLE t (n INTEGER);", 4096).unwrap();
        let spacing = Duration::from_millis(800);
        let checkpointer = Checkpointer::start(path.clone(), BackgroundPriority::NORMAL).unwrap();
        let (tx, rx) = mpsc::channel::<Cmd>();
        let writer =
            std::thread::spawn(move || writer_loop(&mut conn, rx, checkpointer, None, None, spacing));
        let (seen_tx, seen) = mpsc::channel();
        // A job inserting `n`; its reply reports how many rows another connection sees once it committed.
        let job = |n: i64| {
            let (seen_tx, path) = (seen_tx.clone(), path.clone());
            Cmd::Run(Box::new(move |c: &Connection| {
                c.execute("INSERT INTO t VALUES (?1)", [n]).unwrap();
                Box::new(move |r: std::result::Result<(), String>| {
                    r.unwrap();
                    let rows: i64 = Connection::open(&path)
                        .unwrap()
                        .query_row("SELECT count(*) FROM t", [], |r| r.get(0))
                        .unwrap();
                    seen_tx.send((n, rows, Instant::now())).unwrap();
                }) as Reply
            }))
        };
        let started = Instant::now();
        tx.send(job(1)).unwrap();
        let (n, rows, at) = seen.recv().unwrap();
        assert_eq!((n, rows), (1, 1));
        assert!(at - started < spacing, "the first commit after an idle spell does not wait");
        // Within the spacing: job 2 waits, job 3 (sent 50 ms later) joins it, one commit for both.
        tx.send(job(2)).unwrap();
        std::thread::sleep(Duration::from_millis(50));
        tx.send(job(3)).unwrap();
        let (n2, rows2, at2) = seen.recv().unwrap();
        let (n3, rows3, _) = seen.recv().unwrap();
        assert_eq!((n2, n3), (2, 3));
        assert_eq!((rows2, rows3), (3, 3), "jobs 2 and 3 committed together");
        assert!(at2 - at >= spacing - Duration::from_millis(50), "not before the spacing has passed");
        tx.send(Cmd::Close).unwrap();
        writer.join().unwrap();
    }

    #[test]
    fn wal_syncer_answers_after_the_flush() {
        use std::sync::atomic::{AtomicI64, Ordering};
        let dir = tempfile::tempdir().unwrap();
        let wal = dir.path().join("ingest.db-wal");
        std::fs::write(&wal, b"frames").unwrap();
        let durable = Arc::new(AtomicI64::new(3));
        let (writer, flushed) = mpsc::channel();
        let syncer = WalSyncer::start(wal, durable.clone(), writer.clone()).unwrap();
        let (tx, rx) = mpsc::channel();
        // A committed job whose reply reports `(n, durable or why not)`.
        let job = |n: i32| {
            let tx = tx.clone();
            Finish::Job(Box::new(move |r| tx.send((n, r)).unwrap()), Ok(()))
        };
        for (n, seq) in [(0, Some(7)), (1, None), (2, Some(5))] {
            syncer.after_flush(vec![job(n)], seq);
        }
        let answers: Vec<_> = (0..3).map(|_| rx.recv().unwrap()).collect();
        assert_eq!(answers, vec![(0, Ok(())), (1, Ok(())), (2, Ok(()))], "in commit order, all flushed");
        assert_eq!(durable.load(Ordering::SeqCst), 7, "the highest flushed seq; never backwards");
        // The writer hears of each flushed commit (and may commit its next group).
        for _ in 0..3 {
            assert!(matches!(flushed.recv().unwrap(), Cmd::Flushed));
        }

        let missing = Arc::new(AtomicI64::new(3));
        let gone = dir.path().join("gone-wal");
        let syncer = WalSyncer::start(gone, missing.clone(), writer).unwrap();
        syncer.after_flush(vec![job(9)], Some(10));
        let (n, r) = rx.recv().unwrap();
        assert_eq!(n, 9);
        assert!(r.unwrap_err().contains("cannot open"), "the reason reaches the commit");
        assert_eq!(missing.load(Ordering::SeqCst), 3, "nothing unflushed counts as durable");
        // Once a flush failed, later commits are refused even when a flush would now succeed.
        std::fs::write(dir.path().join("gone-wal"), b"frames").unwrap();
        syncer.after_flush(vec![job(10)], Some(11));
        let (n, r) = rx.recv().unwrap();
        assert_eq!(n, 10);
        assert!(r.unwrap_err().contains("restart"), "refused until restart");
        assert_eq!(missing.load(Ordering::SeqCst), 3);
    }

    /// Bodies of every shape come back byte for byte, on one thread reusing its scratch space, and the LZ4
    /// form is the crate's size-prepended format (what earlier versions stored).
    #[test]
    fn bodies_round_trip_through_the_codec() {
        let json: Vec<u8> = (0..400)
            .flat_map(|i| format!("{{\"id\":{i},\"title\":\"Item {i}\",\"price\":\"{i}.99\"}},").into_bytes())
            .collect();
        let mut noise = Vec::with_capacity(70_000);
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        while noise.len() < 70_000 {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            noise.extend_from_slice(&x.to_le_bytes());
        }
        let big: Vec<u8> = json.iter().copied().cycle().take(3 << 20).collect();
        let bodies = [
            Vec::new(),
            b"{}".to_vec(),
            vec![b'a'; 255],
            vec![b'a'; 256],
            json.clone(),
            noise.clone(),
            big,
            json[..1000].to_vec(),
            noise[..300].to_vec(),
        ];
        for body in bodies {
            let (codec, stored) = encode_body(body.clone());
            if codec == CODEC_LZ4 {
                assert!(stored.len() < body.len());
                assert_eq!(lz4_flex::decompress_size_prepended(&stored).unwrap(), body);
            } else {
                assert_eq!(stored, body);
            }
            assert_eq!(decode_body(codec, stored).unwrap(), body, "a body of {} bytes", body.len());
        }
        assert_eq!(encode_body(json.clone()).0, CODEC_LZ4, "JSON compresses");
        assert_eq!(encode_body(noise).0, CODEC_RAW, "noise is kept as it is");
        let old = lz4_flex::compress_prepend_size(&json);
        assert_eq!(decode_body(CODEC_LZ4, old).unwrap(), json, "rows written by earlier versions still read");
    }
}
