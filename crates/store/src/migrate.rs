//! `nudge migrate --to postgres`: copies an embedded store (`ingest.db` and `nudge.db` in a data directory)
//! into the PostgreSQL store, so a deployment can move to the scale-out backend.
//!
//! The SQLite files are read directly, read-only, inside one read transaction (a consistent snapshot), a
//! page of rows at a time in key order (at most [`CHUNK_ROWS`] rows or about [`CHUNK_BYTES`] bytes), and each
//! page goes into PostgreSQL as one `INSERT … SELECT FROM UNNEST(…) ON CONFLICT DO NOTHING` while the next
//! page is read. Nothing is held whole in memory, and running the migration again (after an interruption,
//! say) copies only what is missing: every row keeps its key, and a row already present is left as it is.
//!
//! How the embedded layout maps onto PostgreSQL's:
//! - `deliveries`: same `seq`, body and codec as stored; the status comes from `processed` (status and
//!   reason), or is `pending` for a delivery above the highest processed seq or listed in `requeued`, or
//!   `processed` for one below it that processing passed over without marking; a tombstone left by an
//!   erasure (empty body, headers `{}`) is `erased`, as the PostgreSQL backend writes one.
//! - `delivery_keys`: one row a key (the embedded log keeps a delivery's keys newline-separated).
//! - `customers`: the state's bytes, with `is_text` for a state still stored as JSON text.
//! - `audit`: one row a record (the embedded trail packs consecutive records of a trace into one row and
//!   compresses large details). A record's id is the row's id × [`AUDIT_ID_SCALE`] plus its place in the
//!   row, so records keep their order and a second run finds them by id.
//! - Integer flags become booleans; identity ids are kept, and each identity sequence (and
//!   `offer_settle_seq`) is moved past the highest value copied.
//!
//! Not copied: `processed` and `requeued` (folded into `deliveries.status`) and `privacy_scrub` (always
//! empty between transactions).

use crate::codec::{CODEC_LZ4, unpack};
use crate::postgres::PgStore;
use crate::{Result, StoreError};
use nudge_model::AuditStage;
use rusqlite::types::{Value, ValueRef};
use rusqlite::{Connection, OpenFlags};
use std::path::Path;
use std::sync::Arc;

/// The most rows one page (and one insert) holds.
pub const CHUNK_ROWS: usize = 5_000;
/// A page ends early once its text and bytes reach this size (large delivery bodies).
pub const CHUNK_BYTES: usize = 32 << 20;
/// An audit record's id in PostgreSQL: the embedded row's id times this, plus the record's place in it.
pub const AUDIT_ID_SCALE: i64 = 4096;

/// What one table's copy did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct TableReport {
    /// The PostgreSQL table.
    pub table: String,
    /// Rows inserted now.
    pub copied: u64,
    /// Rows read that were there already (an earlier run, or the same key written since).
    pub already_present: u64,
    /// The embedded store has no such table (written by a version before it existed).
    pub absent: bool,
}

/// What a migration did, table by table in the order copied.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct MigrationReport {
    pub tables: Vec<TableReport>,
}

impl MigrationReport {
    /// The report of one PostgreSQL table.
    pub fn table(&self, name: &str) -> Option<&TableReport> {
        self.tables.iter().find(|t| t.table == name)
    }

    /// Rows inserted now, in all.
    pub fn copied(&self) -> u64 {
        self.tables.iter().map(|t| t.copied).sum()
    }

    /// Rows found already present, in all.
    pub fn already_present(&self) -> u64 {
        self.tables.iter().map(|t| t.already_present).sum()
    }
}

/// How a column is read from SQLite and bound for PostgreSQL.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// BIGINT.
    Int,
    /// SMALLINT (the body codec).
    Small,
    /// DOUBLE PRECISION.
    Real,
    /// BOOLEAN from SQLite's 0/1.
    Bool,
    /// TEXT.
    Text,
    /// BYTEA from a BLOB (or the bytes of a TEXT).
    Bytes,
    /// An audit detail: JSON text, or LZ4-packed JSON as a BLOB; read as text.
    Detail,
}

impl Kind {
    fn pg_array(self) -> &'static str {
        match self {
            Kind::Int => "bigint[]",
            Kind::Small => "smallint[]",
            Kind::Real => "float8[]",
            Kind::Bool => "boolean[]",
            Kind::Text | Kind::Detail => "text[]",
            Kind::Bytes => "bytea[]",
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Val {
    Null,
    Int(i64),
    Real(f64),
    Bool(bool),
    Text(String),
    Bytes(Vec<u8>),
}

impl Val {
    fn size(&self) -> usize {
        match self {
            Val::Text(s) => s.len(),
            Val::Bytes(b) => b.len(),
            _ => 8,
        }
    }

    fn int(&self) -> Option<i64> {
        match self {
            Val::Int(i) => Some(*i),
            _ => None,
        }
    }

    fn into_text(self) -> Option<String> {
        match self {
            Val::Text(s) => Some(s),
            _ => None,
        }
    }
}

/// A column: its PostgreSQL name, the SQLite expression it is read from, and its kind.
#[derive(Debug, Clone)]
struct Col {
    pg: &'static str,
    sqlite: &'static str,
    kind: Kind,
}

fn col(name: &'static str, kind: Kind) -> Col {
    Col { pg: name, sqlite: name, kind }
}

fn expr(pg: &'static str, sqlite: &'static str, kind: Kind) -> Col {
    Col { pg, sqlite, kind }
}

/// Turns a page of SQLite rows into PostgreSQL rows (see `Spec::expand`).
type Expand = fn(Vec<Vec<Val>>) -> Result<Vec<Vec<Val>>>;

/// One table's copy.
struct Spec {
    /// The PostgreSQL table (and the report's name).
    table: &'static str,
    /// The SQLite table (in `main` or `log`) whose presence decides whether there is anything to copy.
    source: &'static str,
    log: bool,
    /// The FROM clause (the source table unless set).
    from: Option<&'static str>,
    cols: Vec<Col>,
    /// Positions in `cols` of the paging key (unique, in order).
    key: Vec<usize>,
    /// The PostgreSQL columns written when they differ from `cols` (with `expand`).
    target: Option<Vec<(&'static str, Kind)>>,
    expand: Option<Expand>,
    /// The identity column: rows keep their ids (`OVERRIDING SYSTEM VALUE`) and its sequence moves past them.
    identity: Option<&'static str>,
}

impl Spec {
    fn simple(table: &'static str, cols: Vec<Col>, key: Vec<usize>) -> Self {
        Spec {
            table,
            source: table,
            log: false,
            from: None,
            cols,
            key,
            target: None,
            expand: None,
            identity: None,
        }
    }

    fn with_identity(table: &'static str, cols: Vec<Col>) -> Self {
        let id = cols[0].pg;
        Spec { identity: Some(id), ..Spec::simple(table, cols, vec![0]) }
    }

    fn target(&self) -> Vec<(&'static str, Kind)> {
        match &self.target {
            Some(t) => t.clone(),
            None => self
                .cols
                .iter()
                .map(|c| (c.pg, if c.kind == Kind::Detail { Kind::Text } else { c.kind }))
                .collect(),
        }
    }
}

/// Every table, in the order copied (a segment's discovery before the segment).
fn specs() -> Vec<Spec> {
    use Kind::*;
    // A delivery's status: requeued (or above the highest processed seq and unmarked) is pending; an emptied
    // one (an erasure's tombstone) erased; else what `processed` says, or processed when processing passed
    // over it without a mark.
    const STATUS: &str = "CASE WHEN r.seq IS NOT NULL
              OR (p.seq IS NULL AND d.seq > (SELECT COALESCE(MAX(seq), 0) FROM main.processed)) THEN 'pending'
         WHEN length(d.body) = 0 AND d.headers = '{}' THEN 'erased'
         WHEN p.seq IS NOT NULL THEN p.status
         ELSE 'processed' END";
    const REASON: &str = "CASE WHEN r.seq IS NOT NULL OR (length(d.body) = 0 AND d.headers = '{}') THEN NULL
         ELSE p.reason END";
    vec![
        Spec {
            table: "deliveries",
            source: "deliveries",
            log: true,
            from: Some(
                "log.deliveries AS d LEFT JOIN main.processed AS p ON p.seq = d.seq
                 LEFT JOIN main.requeued AS r ON r.seq = d.seq",
            ),
            cols: vec![
                expr("seq", "d.seq", Int),
                expr("trace_id", "d.trace_id", Text),
                expr("source", "d.source", Text),
                expr("topic", "d.topic", Text),
                expr("shop", "d.shop", Text),
                expr("webhook_id", "d.webhook_id", Text),
                expr("event_id", "d.event_id", Text),
                expr("received_at", "d.received_at", Int),
                expr("headers", "d.headers", Text),
                expr("body", "d.body", Bytes),
                expr("body_codec", "d.body_codec", Small),
                expr("status", STATUS, Text),
                expr("reason", REASON, Text),
            ],
            key: vec![0],
            target: None,
            expand: None,
            identity: Some("seq"),
        },
        Spec {
            table: "delivery_keys",
            source: "delivery_keys",
            log: true,
            from: Some("log.delivery_keys"),
            cols: vec![col("seq", Int), col("created_at", Int), col("keys", Text)],
            key: vec![0],
            target: Some(vec![("key", Text), ("seq", Int), ("created_at", Int)]),
            expand: Some(expand_keys),
            identity: None,
        },
        Spec::simple(
            "customers",
            vec![
                col("customer_id", Text),
                col("email", Text),
                expr("state", "CAST(state AS BLOB)", Bytes),
                expr("is_text", "typeof(state) = 'text'", Bool),
                col("updated_at", Int),
            ],
            vec![0],
        ),
        Spec::simple(
            "aliases",
            vec![col("alias", Text), col("customer_id", Text), col("created_at", Int), col("trace_id", Text)],
            vec![0],
        ),
        Spec::with_identity(
            "outbox",
            vec![
                col("id", Int),
                col("trace_id", Text),
                col("customer_id", Text),
                col("destination", Text),
                col("action", Text),
                col("status", Text),
                col("attempts", Int),
                col("next_attempt_at", Int),
                col("last_error", Text),
                col("created_at", Int),
                col("origin_us", Int),
            ],
        ),
        Spec::simple(
            "push_runs",
            vec![
                col("destination", Text),
                col("selector", Text),
                col("started_at", Int),
                col("updated_at", Int),
                col("cursor", Text),
                col("pushed", Int),
                col("rejected", Int),
                col("deferred", Int),
                col("done", Bool),
            ],
            vec![0],
        ),
        Spec {
            table: "audit",
            source: "audit",
            log: false,
            from: None,
            cols: vec![
                col("id", Int),
                col("trace_id", Text),
                col("customer_id", Text),
                col("stage", Text),
                col("at", Int),
                col("detail", Detail),
            ],
            key: vec![0],
            target: None,
            expand: Some(expand_audit),
            identity: Some("id"),
        },
        Spec::simple(
            "terminal",
            vec![col("trace_id", Text), col("state", Text), col("reason", Text), col("at", Int)],
            vec![0],
        ),
        Spec::simple(
            "timers",
            vec![
                col("checkout_token", Text),
                col("cart_token", Text),
                col("customer_id", Text),
                col("due_at", Int),
                col("payload", Text),
                col("origin_trace", Text),
            ],
            vec![0],
        ),
        Spec::simple(
            "schedule_runs",
            vec![
                col("flow", Text),
                col("schedule", Text),
                col("fire_at", Int),
                col("cursor", Text),
                col("pending_through", Text),
                col("done", Bool),
            ],
            vec![0],
        ),
        Spec::with_identity(
            "fetch_jobs",
            vec![
                col("id", Int),
                col("trace_id", Text),
                col("source", Text),
                col("job", Text),
                col("status", Text),
                col("attempts", Int),
                col("next_attempt_at", Int),
                col("last_error", Text),
                col("created_at", Int),
                col("settled_at", Int),
            ],
        ),
        Spec::simple(
            "transactions",
            vec![
                col("customer_id", Text),
                col("order_id", Text),
                col("day", Int),
                col("amount", Text),
                col("source", Text),
            ],
            vec![0, 1],
        ),
        Spec::simple(
            "model_versions",
            vec![
                col("id", Text),
                col("family", Text),
                col("created_at", Int),
                col("active", Bool),
                col("body", Text),
            ],
            vec![0],
        ),
        Spec::simple(
            "products",
            vec![col("id", Text), col("source", Text), col("updated_at", Int), col("record", Text)],
            vec![0],
        ),
        Spec::with_identity(
            "segment_discoveries",
            vec![col("id", Int), col("created_at", Int), col("body", Text)],
        ),
        Spec::simple(
            "adopted_segments",
            vec![
                col("name", Text),
                col("discovery_id", Int),
                col("proposal", Int),
                col("adopted_at", Int),
                col("adopted_by", Text),
                col("lists", Text),
                col("members", Int),
                col("refreshed_at", Int),
                col("refreshes", Int),
                col("last_stability", Real),
                col("last_joined", Int),
                col("last_left", Int),
            ],
            vec![0],
        ),
        Spec::simple(
            "segment_members",
            vec![col("segment", Text), col("customer_id", Text), col("since", Int)],
            vec![0, 1],
        ),
        Spec::with_identity(
            "api_tokens",
            vec![
                col("id", Int),
                col("name", Text),
                col("role", Text),
                col("token_hash", Text),
                col("created_at", Int),
                col("revoked_at", Int),
                col("last_used_at", Int),
            ],
        ),
        Spec::with_identity(
            "approvals",
            vec![
                col("id", Int),
                col("trace_id", Text),
                col("flow", Text),
                col("flow_version", Text),
                col("customer_id", Text),
                col("actions", Text),
                col("created_at", Int),
                col("expires_at", Int),
                col("status", Text),
                col("decided_at", Int),
                col("decided_by", Text),
                col("reason", Text),
            ],
        ),
        Spec::with_identity(
            "flow_decisions",
            vec![
                col("id", Int),
                col("flow", Text),
                col("flow_version", Text),
                col("customer_id", Text),
                col("at", Int),
                col("status", Text),
                col("matched", Bool),
                col("baseline", Bool),
                col("trace_id", Text),
                col("arm", Text),
            ],
        ),
        Spec::simple(
            "llm_usage",
            vec![col("month", Text), col("tokens", Int), col("generations", Int), col("fallbacks", Int)],
            vec![0],
        ),
        Spec::simple(
            "offer_log",
            vec![
                col("id", Text),
                col("flow", Text),
                col("customer_id", Text),
                col("arm", Text),
                col("propensity", Real),
                col("explored", Bool),
                col("context", Text),
                col("decided_at", Int),
                col("window_end", Int),
                col("outcome_value", Real),
                col("settled_at", Int),
                col("settle_seq", Int),
            ],
            vec![0],
        ),
        Spec::with_identity(
            "privacy_jobs",
            vec![
                col("id", Int),
                col("kind", Text),
                col("pseudonym", Text),
                col("trace_id", Text),
                col("requested_by", Text),
                col("reference", Text),
                col("created_at", Int),
                col("updated_at", Int),
                col("done", Bool),
                col("log_erased", Bool),
                col("customers", Text),
                col("email", Text),
                col("phone", Text),
                col("summary", Text),
            ],
        ),
        Spec::simple("privacy_job_traces", vec![col("job_id", Int), col("trace_id", Text)], vec![0, 1]),
        Spec::simple(
            "privacy_destinations",
            vec![
                col("job_id", Int),
                col("destination", Text),
                col("status", Text),
                col("attempts", Int),
                col("next_attempt_at", Int),
                col("detail", Text),
                col("updated_at", Int),
            ],
            vec![0, 1],
        ),
    ]
}

/// `delivery_keys`: (seq, created_at, keys newline-separated) → (key, seq, created_at) a key.
fn expand_keys(rows: Vec<Vec<Val>>) -> Result<Vec<Vec<Val>>> {
    let mut out = Vec::with_capacity(rows.len() * 2);
    for r in rows {
        let mut it = r.into_iter();
        let (seq, created, keys) = (it.next(), it.next(), it.next());
        let (Some(seq), Some(created), Some(Val::Text(keys))) = (seq, created, keys) else {
            continue;
        };
        for k in keys.split('\n').filter(|k| !k.is_empty()) {
            out.push(vec![Val::Text(k.to_string()), seq.clone(), created.clone()]);
        }
    }
    Ok(out)
}

/// A stage name as the embedded backend reads it (an unknown one reads as `received`).
fn stage_name(s: &str) -> &'static str {
    AuditStage::parse(s).unwrap_or(AuditStage::Received).as_str()
}

/// `audit`: one embedded row (possibly several records packed) → one row a record, in order, each detail as
/// JSON text, read exactly as the embedded backend reads it (`audit_row` in `sqlite/mod.rs`).
fn expand_audit(rows: Vec<Vec<Val>>) -> Result<Vec<Vec<Val>>> {
    let mut out = Vec::with_capacity(rows.len() * 2);
    for r in rows {
        let [id, trace, customer, stage, at, detail]: [Val; 6] =
            r.try_into().map_err(|_| StoreError::Corrupt("an audit row of the wrong width".into()))?;
        let id = id.int().ok_or_else(|| StoreError::Corrupt("an audit row without an id".into()))?;
        let stage = stage.into_text().unwrap_or_default();
        let detail = detail.into_text().unwrap_or_default();
        let mut records: Vec<(&'static str, String)> = Vec::new();
        if stage.contains('+') {
            let stages: Vec<&str> = stage.split('+').collect();
            if let Ok(serde_json::Value::Array(details)) = serde_json::from_str(&detail)
                && details.len() == stages.len()
            {
                for (s, d) in stages.into_iter().zip(details) {
                    records.push((stage_name(s), serde_json::to_string(&d)?));
                }
            }
        }
        if records.is_empty() {
            let json = match serde_json::from_str::<serde_json::Value>(&detail) {
                Ok(_) => detail,
                Err(_) => serde_json::to_string(&serde_json::Value::String(detail))?,
            };
            records.push((stage_name(&stage), json));
        }
        if records.len() as i64 > AUDIT_ID_SCALE {
            return Err(StoreError::Corrupt(format!(
                "audit row {id} packs {} records (at most {AUDIT_ID_SCALE} can be migrated)",
                records.len()
            )));
        }
        let base = id
            .checked_mul(AUDIT_ID_SCALE)
            .ok_or_else(|| StoreError::Corrupt(format!("audit row id {id} is too large to migrate")))?;
        for (i, (s, d)) in records.into_iter().enumerate() {
            out.push(vec![
                Val::Int(base + i as i64),
                trace.clone(),
                customer.clone(),
                Val::Text(s.to_string()),
                at.clone(),
                Val::Text(d),
            ]);
        }
    }
    Ok(out)
}

/// The SQL of one table's pages, ready for the reading thread.
struct PageQuery {
    table: &'static str,
    /// The first page (no cursor) and the next ones (the cursor bound as ?1, ?2…).
    first: String,
    next: String,
    kinds: Vec<Kind>,
    names: Vec<&'static str>,
    key: Vec<usize>,
}

struct Page {
    rows: Vec<Vec<Val>>,
    /// The key of the last row, when there may be more.
    more: Option<Vec<Value>>,
}

fn convert(v: ValueRef<'_>, kind: Kind, table: &str, column: &str) -> Result<Val> {
    let bad =
        |what: &str| StoreError::Corrupt(format!("{table}.{column}: {what} where {kind:?} was expected"));
    let text = |b: &[u8]| {
        String::from_utf8(b.to_vec()).map_err(|_| StoreError::Corrupt(format!("{table}.{column}: not UTF-8")))
    };
    Ok(match (kind, v) {
        (_, ValueRef::Null) => Val::Null,
        (Kind::Int | Kind::Small, ValueRef::Integer(i)) => Val::Int(i),
        (Kind::Int | Kind::Small, ValueRef::Real(f)) if f.fract() == 0.0 => Val::Int(f as i64),
        (Kind::Real, ValueRef::Integer(i)) => Val::Real(i as f64),
        (Kind::Real, ValueRef::Real(f)) => Val::Real(f),
        (Kind::Bool, ValueRef::Integer(i)) => Val::Bool(i != 0),
        (Kind::Text, ValueRef::Text(b) | ValueRef::Blob(b)) => Val::Text(text(b)?),
        (Kind::Text, ValueRef::Integer(i)) => Val::Text(i.to_string()),
        (Kind::Text, ValueRef::Real(f)) => Val::Text(f.to_string()),
        (Kind::Bytes, ValueRef::Blob(b) | ValueRef::Text(b)) => Val::Bytes(b.to_vec()),
        (Kind::Detail, ValueRef::Text(b)) => Val::Text(text(b)?),
        (Kind::Detail, ValueRef::Blob(b)) => {
            let raw = unpack(CODEC_LZ4, b.to_vec())
                .map_err(|e| StoreError::Corrupt(format!("{table}.{column}: a packed detail: {e}")))?;
            Val::Text(text(&raw)?)
        }
        (_, ValueRef::Integer(_)) => return Err(bad("an integer")),
        (_, ValueRef::Real(_)) => return Err(bad("a real")),
        (_, ValueRef::Text(_)) => return Err(bad("text")),
        (_, ValueRef::Blob(_)) => return Err(bad("a blob")),
    })
}

fn read_page(c: &Connection, q: &PageQuery, cursor: Option<&[Value]>) -> Result<Page> {
    let mut st = c.prepare(match cursor {
        None => &q.first,
        Some(_) => &q.next,
    })?;
    let mut rows = match cursor {
        None => st.query([])?,
        Some(k) => st.query(rusqlite::params_from_iter(k.iter()))?,
    };
    let (mut out, mut bytes, mut last) = (Vec::new(), 0usize, None);
    while let Some(r) = rows.next()? {
        let mut vals = Vec::with_capacity(q.kinds.len());
        for (i, kind) in q.kinds.iter().enumerate() {
            let v = convert(r.get_ref(i)?, *kind, q.table, q.names[i])?;
            bytes += v.size();
            vals.push(v);
        }
        last = Some(q.key.iter().map(|&k| r.get::<_, Value>(k)).collect::<rusqlite::Result<Vec<_>>>()?);
        out.push(vals);
        if bytes >= CHUNK_BYTES {
            break;
        }
    }
    let more = if out.len() >= CHUNK_ROWS || bytes >= CHUNK_BYTES { last } else { None };
    Ok(Page { rows: out, more })
}

/// The embedded store, read-only: `nudge.db` with `ingest.db` attached as `log`, in one read transaction.
/// The connection moves to a blocking thread for each page and back.
struct Source {
    conn: Option<Connection>,
}

impl Source {
    fn open(dir: &Path) -> Result<Self> {
        let main = dir.join("nudge.db");
        let log = dir.join("ingest.db");
        for f in [&main, &log] {
            if !f.is_file() {
                return Err(StoreError::NotFound(format!(
                    "{}: not an embedded store's data directory (no {})",
                    dir.display(),
                    f.file_name().and_then(|n| n.to_str()).unwrap_or_default()
                )));
            }
        }
        let c = Connection::open_with_flags(
            &main,
            OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )?;
        c.busy_timeout(std::time::Duration::from_secs(10))?;
        let log = log.to_str().ok_or_else(|| StoreError::Database("data dir is not UTF-8".into()))?;
        c.execute("ATTACH DATABASE ?1 AS log", [log])?;
        let legacy: bool = c.query_row(
            "SELECT EXISTS(SELECT 1 FROM main.sqlite_master WHERE type = 'table' AND name = 'deliveries')",
            [],
            |r| r.get(0),
        )?;
        if legacy {
            return Err(StoreError::Conflict(format!(
                "{} is in the layout of an earlier version of nudge: start this version on it once (it \
                 moves the deliveries into ingest.db), stop it, then migrate",
                dir.display()
            )));
        }
        // One snapshot of both files for the whole copy.
        c.execute_batch("BEGIN")?;
        Ok(Source { conn: Some(c) })
    }

    /// Runs `f` on the connection on a blocking thread.
    async fn with<R: Send + 'static>(
        &mut self,
        f: impl FnOnce(&Connection) -> Result<R> + Send + 'static,
    ) -> Result<R> {
        let conn = self.conn.take().ok_or(StoreError::Closed)?;
        let (conn, r) = tokio::task::spawn_blocking(move || {
            let r = f(&conn);
            (conn, r)
        })
        .await
        .map_err(|e| StoreError::Database(format!("the reading thread failed: {e}")))?;
        self.conn = Some(conn);
        r
    }

    /// The tables of `main` or `log`.
    async fn tables(&mut self, schema: &'static str) -> Result<Vec<String>> {
        self.with(move |c| {
            let mut st =
                c.prepare(&format!("SELECT name FROM {schema}.sqlite_master WHERE type = 'table'"))?;
            let names = st.query_map([], |r| r.get::<_, String>(0))?;
            Ok(names.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    /// The columns of a table of `main`.
    async fn columns(&mut self, table: &'static str) -> Result<Vec<String>> {
        self.with(move |c| {
            let mut st = c.prepare("SELECT name FROM pragma_table_info(?1)")?;
            let names = st.query_map([table], |r| r.get::<_, String>(0))?;
            Ok(names.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }
}

/// Whether `s` is a plain column name (not an expression).
fn is_identifier(s: &str) -> bool {
    !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// Inserts PostgreSQL rows of `table` in one statement; returns how many went in (the rest were present).
async fn insert_rows(
    pg: &PgStore,
    table: &str,
    target: &[(&'static str, Kind)],
    identity: bool,
    rows: &[Vec<Val>],
) -> Result<u64> {
    if rows.is_empty() {
        return Ok(0);
    }
    let names: Vec<&str> = target.iter().map(|(n, _)| *n).collect();
    let arrays: Vec<String> =
        target.iter().enumerate().map(|(i, (_, k))| format!("${}::{}", i + 1, k.pg_array())).collect();
    let sql = format!(
        "INSERT INTO {table} ({}) {}SELECT * FROM UNNEST({}) ON CONFLICT DO NOTHING",
        names.join(", "),
        if identity { "OVERRIDING SYSTEM VALUE " } else { "" },
        arrays.join(", ")
    );
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for (i, (name, kind)) in target.iter().enumerate() {
        let bad = || StoreError::Corrupt(format!("{table}.{name}: a value of the wrong kind"));
        macro_rules! column {
            ($pat:pat => $v:expr) => {
                rows.iter()
                    .map(|r| match &r[i] {
                        Val::Null => Ok(None),
                        $pat => Ok(Some($v)),
                        _ => Err(bad()),
                    })
                    .collect::<Result<Vec<_>>>()?
            };
        }
        q = match kind {
            Kind::Int => q.bind(column!(Val::Int(v) => *v)),
            Kind::Small => q.bind(column!(Val::Int(v) => i16::try_from(*v).map_err(|_| bad())?)),
            Kind::Real => q.bind(column!(Val::Real(v) => *v)),
            Kind::Bool => q.bind(column!(Val::Bool(v) => *v)),
            Kind::Text | Kind::Detail => q.bind(column!(Val::Text(v) => v.clone())),
            Kind::Bytes => q.bind(column!(Val::Bytes(v) => v.clone())),
        };
    }
    Ok(q.execute(pg.pool()).await?.rows_affected())
}

/// Moves `table`'s identity sequence past the highest `column` (never back).
async fn advance_identity(pg: &PgStore, table: &str, column: &str) -> Result<()> {
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT setval(q.s, GREATEST(x.m, COALESCE(pg_sequence_last_value(q.s), 0)))
         FROM (SELECT pg_get_serial_sequence($1, $2)::regclass AS s) AS q,
              (SELECT MAX({column}) AS m FROM {table}) AS x
         WHERE x.m > 0"
    )))
    .bind(table)
    .bind(column)
    .execute(pg.pool())
    .await?;
    Ok(())
}

/// Copies one table, a page at a time, reading the next page while the current one is written.
async fn copy_table(
    src: &mut Source,
    pg: &PgStore,
    spec: &Spec,
    present_columns: Option<&[String]>,
    progress: &mut impl FnMut(&str, u64),
) -> Result<TableReport> {
    let mut report = TableReport { table: spec.table.to_string(), ..Default::default() };
    let exprs: Vec<String> = spec
        .cols
        .iter()
        .map(|c| match present_columns {
            // A column a version before it lacks (added since): NULL.
            Some(cols) if is_identifier(c.sqlite) && !cols.iter().any(|n| n == c.sqlite) => {
                "NULL".to_string()
            }
            _ => c.sqlite.to_string(),
        })
        .collect();
    let keys: Vec<&str> = spec.key.iter().map(|&k| spec.cols[k].sqlite).collect();
    let from = spec.from.unwrap_or(spec.source);
    let placeholders: Vec<String> = (1..=keys.len()).map(|i| format!("?{i}")).collect();
    let order = keys.join(", ");
    let q = Arc::new(PageQuery {
        table: spec.table,
        first: format!("SELECT {} FROM {from} ORDER BY {order} LIMIT {CHUNK_ROWS}", exprs.join(", ")),
        next: format!(
            "SELECT {} FROM {from} WHERE ({order}) > ({}) ORDER BY {order} LIMIT {CHUNK_ROWS}",
            exprs.join(", "),
            placeholders.join(", ")
        ),
        kinds: spec.cols.iter().map(|c| c.kind).collect(),
        names: spec.cols.iter().map(|c| c.pg).collect(),
        key: spec.key.clone(),
    });
    let target = spec.target();
    let read = |conn: Connection, q: Arc<PageQuery>, cursor: Option<Vec<Value>>| {
        tokio::task::spawn_blocking(move || {
            let page = read_page(&conn, &q, cursor.as_deref());
            (conn, page)
        })
    };
    let conn = src.conn.take().ok_or(StoreError::Closed)?;
    let mut reading = read(conn, q.clone(), None);
    loop {
        let (conn, page) = (&mut reading)
            .await
            .map_err(|e| StoreError::Database(format!("the reading thread failed: {e}")))?;
        let page = match page {
            Ok(p) => p,
            Err(e) => {
                src.conn = Some(conn);
                return Err(e);
            }
        };
        let more = page.more.is_some();
        match page.more {
            Some(cursor) => reading = read(conn, q.clone(), Some(cursor)),
            None => src.conn = Some(conn),
        }
        let rows = match spec.expand {
            Some(f) => f(page.rows)?,
            None => page.rows,
        };
        let n = rows.len() as u64;
        let inserted = insert_rows(pg, spec.table, &target, spec.identity.is_some(), &rows).await?;
        report.copied += inserted;
        report.already_present += n.saturating_sub(inserted);
        progress(spec.table, report.copied + report.already_present);
        if !more {
            break;
        }
    }
    if let Some(column) = spec.identity {
        advance_identity(pg, spec.table, column).await?;
    }
    Ok(report)
}

/// Copies the embedded store in `sqlite_dir` (`ingest.db` and `nudge.db`) into `pg` (see the module docs).
/// `progress` hears each table's name and how many of its rows are done, after each page. Stop the
/// embedded server first: what it writes meanwhile may be missed (a second run copies it).
pub async fn sqlite_to_postgres(
    sqlite_dir: &Path,
    pg: &PgStore,
    mut progress: impl FnMut(&str, u64),
) -> Result<MigrationReport> {
    let dir = sqlite_dir.to_path_buf();
    let mut src = tokio::task::spawn_blocking(move || Source::open(&dir))
        .await
        .map_err(|e| StoreError::Database(format!("the reading thread failed: {e}")))??;
    let main_tables = src.tables("main").await?;
    let log_tables = src.tables("log").await?;
    let mut report = MigrationReport::default();
    for spec in specs() {
        let present = if spec.log { &log_tables } else { &main_tables };
        if !present.iter().any(|t| t == spec.source) {
            report.tables.push(TableReport {
                table: spec.table.to_string(),
                absent: true,
                ..Default::default()
            });
            continue;
        }
        let columns = if spec.from.is_none() { Some(src.columns(spec.source).await?) } else { None };
        progress(spec.table, 0);
        let t = copy_table(&mut src, pg, &spec, columns.as_deref(), &mut progress).await?;
        report.tables.push(t);
    }
    // Settlement numbers continue after the highest copied.
    sqlx::query(
        "SELECT setval('offer_settle_seq', GREATEST(x.m, COALESCE(pg_sequence_last_value('offer_settle_seq'), 0)))
         FROM (SELECT MAX(settle_seq) AS m FROM offer_log) AS x WHERE x.m > 0",
    )
    .execute(pg.pool())
    .await?;
    src.with(|c| Ok(c.execute_batch("COMMIT")?)).await?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packed_audit_rows_unpack_in_order() {
        let rows = vec![
            vec![
                Val::Int(3),
                Val::Text("t".into()),
                Val::Null,
                Val::Text("received+normalized".into()),
                Val::Int(10),
                Val::Text(r#"[{"a":1},"x"]"#.into()),
            ],
            vec![
                Val::Int(4),
                Val::Text("t".into()),
                Val::Null,
                Val::Text("decided".into()),
                Val::Int(11),
                Val::Text("not json".into()),
            ],
        ];
        let out = expand_audit(rows).unwrap();
        assert_eq!(out.len(), 3);
        assert_eq!(out[0][0], Val::Int(3 * AUDIT_ID_SCALE));
        assert_eq!(out[1][0], Val::Int(3 * AUDIT_ID_SCALE + 1));
        assert_eq!(out[0][3], Val::Text("received".into()));
        assert_eq!(out[1][3], Val::Text("normalized".into()));
        assert_eq!(out[0][5], Val::Text(r#"{"a":1}"#.into()));
        assert_eq!(out[1][5], Val::Text(r#""x""#.into()));
        assert_eq!(out[2][0], Val::Int(4 * AUDIT_ID_SCALE));
        assert_eq!(out[2][5], Val::Text(r#""not json""#.into()));
    }

    #[test]
    fn keys_expand_one_row_a_key() {
        let out = expand_keys(vec![vec![Val::Int(7), Val::Int(99), Val::Text("a\nb".into())]]).unwrap();
        assert_eq!(
            out,
            vec![
                vec![Val::Text("a".into()), Val::Int(7), Val::Int(99)],
                vec![Val::Text("b".into()), Val::Int(7), Val::Int(99)],
            ]
        );
    }
}
