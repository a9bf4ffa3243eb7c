//! DeliveryLog in the PostgreSQL backend.
//!
//! A delivery's dedupe keys are rows of `delivery_keys` (one a key, the key the primary key), so dedupe is
//! cluster-wide: of two nodes committing the same key at once, one insert wins and the other waits for the
//! winner's transaction, then sees the conflict and reports a duplicate of the winner's delivery.
//!
//! A batch none of whose keys is held (the common case) is one statement, in a transaction of its own: its
//! sequence numbers, keys and deliveries go in together, and it undoes itself when a key turns out to be
//! held ([`insert_new_deliveries`]). Any other batch is one transaction of a few statements whatever its
//! size: sequence numbers are taken for every
//! delivery first, then every key of the batch goes in with one insert (in byte order, so two batches
//! never wait on each other in a cycle), the keys found taken name the deliveries that hold them, and the
//! batch is then decided in order as the embedded log does (a delivery is a duplicate if any key of it is
//! held, by an earlier delivery or one of its own batch). The keys of the deliveries that lost are given
//! back or handed to a later delivery of the batch that holds them, and the winners go in with one insert.

use super::*;
use std::collections::{BTreeMap, HashMap, HashSet};

/// Why a batch failed: a database error (retried when it is a deadlock or a serialisation failure, which
/// roll back everything the transaction wrote), a key whose holder vanished under the commit (pruned
/// meanwhile: retried), or anything else.
pub(crate) enum LogFail {
    Sql(sqlx::Error),
    Store(StoreError),
    Vanished(String),
}

impl From<sqlx::Error> for LogFail {
    fn from(e: sqlx::Error) -> Self {
        LogFail::Sql(e)
    }
}

impl From<StoreError> for LogFail {
    fn from(e: StoreError) -> Self {
        LogFail::Store(e)
    }
}

impl From<LogFail> for StoreError {
    fn from(e: LogFail) -> Self {
        match e {
            LogFail::Sql(e) => e.into(),
            LogFail::Store(e) => e,
            LogFail::Vanished(key) => StoreError::Database(format!(
                "dedupe key {key:?} was taken and then removed while the delivery was committed; retry"
            )),
        }
    }
}

impl LogFail {
    /// The transaction rolled back whole and may simply run again.
    fn retryable(&self) -> bool {
        match self {
            LogFail::Sql(e) => {
                e.as_database_error().and_then(|d| d.code()).is_some_and(|c| c == "40P01" || c == "40001")
            }
            LogFail::Vanished(_) => true,
            LogFail::Store(_) => false,
        }
    }
}

/// How many times a batch runs when it keeps meeting deadlocks or vanishing keys.
const ATTEMPTS: usize = 4;

/// Refuses a key the log cannot take (with the embedded backend's message).
fn check_keys<'a>(keys: impl IntoIterator<Item = &'a String>) -> Result<()> {
    for k in keys {
        if k.is_empty() || k.contains('\n') {
            return Err(StoreError::Database(format!("dedupe key {k:?} is empty or contains a newline")));
        }
    }
    Ok(())
}

/// A prepared body: the codec and the stored bytes.
pub(crate) type Encoded = (i64, Vec<u8>);

/// Stores deliveries in `tx`, in order, each unless one of its keys is held (by a delivery stored before,
/// or by an earlier one of `ds`), with their bodies already encoded. Returns the results in order.
pub(crate) async fn insert_deliveries(
    tx: &mut Tx,
    ds: &[(NewDelivery, Encoded)],
) -> std::result::Result<Vec<CommitResult>, LogFail> {
    if ds.is_empty() {
        return Ok(Vec::new());
    }
    // Sequence numbers for all, in batch order (a duplicate leaves a gap, as a rolled-back insert would).
    let mut seqs: Vec<i64> = sqlx::query_scalar(
        "SELECT nextval(pg_get_serial_sequence('deliveries', 'seq')) FROM generate_series(1, $1::bigint)",
    )
    .bind(ds.len() as i64)
    .fetch_all(&mut **tx)
    .await?;
    seqs.sort_unstable();
    if seqs.len() != ds.len() {
        return Err(StoreError::Database("deliveries: sequence numbers missing".into()).into());
    }

    // Every key of the batch, under its first claimant, in byte order.
    let mut claim: BTreeMap<&str, usize> = BTreeMap::new();
    for (i, (d, _)) in ds.iter().enumerate() {
        for k in &d.dedupe_keys {
            claim.entry(k.as_str()).or_insert(i);
        }
    }
    let mut won: HashSet<String> = HashSet::new();
    if !claim.is_empty() {
        let keys: Vec<&str> = claim.keys().copied().collect();
        let key_seqs: Vec<i64> = claim.values().map(|&i| seqs[i]).collect();
        let key_ats: Vec<i64> = claim.values().map(|&i| ds[i].0.received_at_ms).collect();
        let inserted: Vec<String> = sqlx::query_scalar(
            "INSERT INTO delivery_keys (key, seq, created_at)
             SELECT key, seq, at FROM UNNEST($1::text[], $2::bigint[], $3::bigint[]) WITH ORDINALITY
                 AS u(key, seq, at, n)
             ORDER BY n
             ON CONFLICT (key) DO NOTHING RETURNING key",
        )
        .bind(&keys)
        .bind(&key_seqs)
        .bind(&key_ats)
        .fetch_all(&mut **tx)
        .await?;
        won.extend(inserted);
    }

    // The keys held already, with the deliveries that hold them.
    let taken: Vec<&str> = claim.keys().copied().filter(|k| !won.contains(*k)).collect();
    let mut held: HashMap<String, TraceId> = HashMap::new();
    if !taken.is_empty() {
        let rows: Vec<(String, String)> = sqlx::query_as(
            "SELECT k.key, d.trace_id FROM delivery_keys k JOIN deliveries d ON d.seq = k.seq
             WHERE k.key = ANY($1::text[])",
        )
        .bind(&taken)
        .fetch_all(&mut **tx)
        .await?;
        for (k, t) in rows {
            held.insert(k, parse_trace(&t)?);
        }
        if let Some(k) = taken.iter().find(|k| !held.contains_key(**k)) {
            return Err(LogFail::Vanished(k.to_string()));
        }
    }

    // Decided in order: the first key of a delivery (in its own order) that is held makes it a duplicate.
    let mut holder: HashMap<&str, usize> = HashMap::new();
    let mut out = Vec::with_capacity(ds.len());
    let mut stored = Vec::with_capacity(ds.len());
    for (i, (d, _)) in ds.iter().enumerate() {
        let dup = d.dedupe_keys.iter().find_map(|k| {
            held.get(k).copied().or_else(|| holder.get(k.as_str()).map(|&j| ds[j].0.trace_id)).map(|t| (t, k))
        });
        match dup {
            Some((original, key)) => out.push(CommitResult::Duplicate { original, key: key.clone() }),
            None => {
                for k in &d.dedupe_keys {
                    holder.insert(k.as_str(), i);
                }
                stored.push(i);
                out.push(CommitResult::Committed { seq: seqs[i] });
            }
        }
    }

    // Keys this batch took for a delivery that lost: handed to the one of the batch that holds them, or
    // given back.
    let mut moved: (Vec<&str>, Vec<i64>, Vec<i64>) = (Vec::new(), Vec::new(), Vec::new());
    let mut freed: Vec<&str> = Vec::new();
    for (k, &first) in &claim {
        if !won.contains(*k) {
            continue;
        }
        match holder.get(k) {
            Some(&j) if j == first => {}
            Some(&j) => {
                moved.0.push(k);
                moved.1.push(seqs[j]);
                moved.2.push(ds[j].0.received_at_ms);
            }
            None => freed.push(k),
        }
    }
    if !moved.0.is_empty() {
        sqlx::query(
            "UPDATE delivery_keys AS k SET seq = u.seq, created_at = u.at
             FROM UNNEST($1::text[], $2::bigint[], $3::bigint[]) AS u(key, seq, at) WHERE k.key = u.key",
        )
        .bind(&moved.0)
        .bind(&moved.1)
        .bind(&moved.2)
        .execute(&mut **tx)
        .await?;
    }
    if !freed.is_empty() {
        sqlx::query("DELETE FROM delivery_keys WHERE key = ANY($1::text[])")
            .bind(&freed)
            .execute(&mut **tx)
            .await?;
    }

    // The winners, in one insert.
    if !stored.is_empty() {
        let mut cols = DeliveryColumns::default();
        for &i in &stored {
            cols.seq.push(seqs[i]);
            cols.push(&ds[i])?;
        }
        sqlx::query(
            "INSERT INTO deliveries (seq, trace_id, source, topic, shop, webhook_id, event_id, received_at,
                 headers, body, body_codec, part)
             OVERRIDING SYSTEM VALUE
             SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                 $7::text[], $8::bigint[], $9::text[], $10::bytea[], $11::smallint[], $12::int[])",
        )
        .bind(cols.seq)
        .bind(cols.trace)
        .bind(cols.source)
        .bind(cols.topic)
        .bind(cols.shop)
        .bind(cols.webhook)
        .bind(cols.event)
        .bind(cols.received)
        .bind(cols.headers)
        .bind(cols.body)
        .bind(cols.codec)
        .bind(cols.part)
        .execute(&mut **tx)
        .await?;
    }
    Ok(out)
}

/// The marker of the error [`insert_new_deliveries`] raises to undo itself when a key is held.
const HELD_MARKER: &str = "nudge: dedupe keys held";

/// Stores deliveries none of whose keys is held, the common case, in one statement (its own transaction,
/// one round trip instead of the five of [`insert_deliveries`] in a transaction): sequence numbers, every
/// key and every delivery. Returns `None`, having written nothing, when the batch names a key or a trace
/// twice or a key turns out to be held already (by a delivery stored before, or one another node is committing at the
/// same moment, whose commit the insert waits for): such a batch is decided by [`insert_deliveries`].
///
/// Undoing is the statement's own: when fewer keys went in than the batch holds, its last part fails on
/// purpose (a text that is not a number, naming the count, cast to one), which rolls back all of it; that
/// error is recognised by its SQLSTATE (22P02) and [`HELD_MARKER`].
async fn insert_new_deliveries(
    pool: &PgPool,
    ds: &[(NewDelivery, Encoded)],
) -> std::result::Result<Option<Vec<CommitResult>>, LogFail> {
    if ds.is_empty() {
        return Ok(Some(Vec::new()));
    }
    // Every key with the place of its delivery, in byte order (as the other path takes them, so two batches
    // never wait on each other in a cycle); a key or a trace named twice is for the other path.
    let mut keys: BTreeMap<&str, usize> = BTreeMap::new();
    let mut seen = HashSet::new();
    for (i, (d, _)) in ds.iter().enumerate() {
        if !seen.insert(d.trace_id) {
            return Ok(None);
        }
        for k in &d.dedupe_keys {
            if keys.insert(k.as_str(), i).is_some() {
                return Ok(None);
            }
        }
    }
    let mut cols = DeliveryColumns::default();
    for d in ds {
        cols.push(d)?;
    }
    let traces: Vec<&str> = keys.values().map(|&n| cols.trace[n].as_str()).collect();
    let key_ats: Vec<i64> = keys.values().map(|&n| ds[n].0.received_at_ms).collect();
    // The deliveries take their sequence numbers as they go in (in batch order), and each key the number of
    // its delivery, found by trace id (unique in the batch). The statement is one a connection plans once:
    // PostgreSQL keeps a generic plan for it after a few runs, where a form that numbered the rows itself
    // was planned again each time, at more than its run's cost.
    let rows = sqlx::query_as::<_, (String, i64)>(sqlx::AssertSqlSafe(format!(
        "WITH d AS (
             INSERT INTO deliveries (trace_id, source, topic, shop, webhook_id, event_id, received_at, headers,
                 body, body_codec, part)
             SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[],
                 $7::bigint[], $8::text[], $9::bytea[], $10::smallint[], $11::int[])
             RETURNING trace_id, seq
         ),
         k AS (
             INSERT INTO delivery_keys (key, seq, created_at)
             SELECT u.key, d.seq, u.at FROM UNNEST($12::text[], $13::text[], $14::bigint[]) WITH ORDINALITY
                 AS u(key, trace, at, n)
             JOIN d ON d.trace_id = u.trace
             ORDER BY u.n
             ON CONFLICT (key) DO NOTHING RETURNING 1
         )
         SELECT d.trace_id, CASE WHEN taken.n = $15 THEN d.seq
                                 ELSE CAST('{HELD_MARKER}: ' || taken.n || ' of ' || $15 || ' taken' AS bigint) END
         FROM d CROSS JOIN (SELECT COUNT(*) AS n FROM k) AS taken"
    )))
    .bind(&cols.trace)
    .bind(&cols.source)
    .bind(&cols.topic)
    .bind(&cols.shop)
    .bind(&cols.webhook)
    .bind(&cols.event)
    .bind(&cols.received)
    .bind(&cols.headers)
    .bind(&cols.body)
    .bind(&cols.codec)
    .bind(&cols.part)
    .bind(keys.keys().copied().collect::<Vec<_>>())
    .bind(&traces)
    .bind(&key_ats)
    .bind(keys.len() as i64)
    .fetch_all(pool)
    .await;
    match result_in_order(rows, &cols.trace) {
        Ok(seqs) => Ok(Some(seqs.into_iter().map(|seq| CommitResult::Committed { seq }).collect())),
        Err(LogFail::Sql(e)) if held_marker(&e) => Ok(None),
        Err(e) => Err(e),
    }
}

/// The sequence numbers of [`insert_new_deliveries`]'s rows, in the order of `traces`.
fn result_in_order(
    rows: std::result::Result<Vec<(String, i64)>, sqlx::Error>,
    traces: &[String],
) -> std::result::Result<Vec<i64>, LogFail> {
    let by_trace: HashMap<String, i64> = rows?.into_iter().collect();
    traces
        .iter()
        .map(|t| {
            by_trace
                .get(t)
                .copied()
                .ok_or_else(|| StoreError::Database("deliveries: sequence numbers missing".into()).into())
        })
        .collect()
}

/// The error [`insert_new_deliveries`] raises to undo itself.
fn held_marker(e: &sqlx::Error) -> bool {
    e.as_database_error()
        .is_some_and(|d| d.code().as_deref() == Some("22P02") && d.message().contains(HELD_MARKER))
}

/// The columns of the deliveries a batch stores, one array each.
#[derive(Default)]
struct DeliveryColumns<'a> {
    seq: Vec<i64>,
    trace: Vec<String>,
    source: Vec<&'a str>,
    topic: Vec<&'a str>,
    shop: Vec<Option<&'a str>>,
    webhook: Vec<Option<&'a str>>,
    event: Vec<Option<&'a str>>,
    received: Vec<i64>,
    headers: Vec<&'a str>,
    body: Vec<&'a [u8]>,
    codec: Vec<i16>,
    part: Vec<Option<i32>>,
}

impl<'a> DeliveryColumns<'a> {
    /// Adds a delivery's columns (all but its sequence number).
    fn push(&mut self, (d, (codec, body)): &'a (NewDelivery, Encoded)) -> Result<()> {
        self.trace.push(d.trace_id.to_string());
        self.source.push(d.source.as_str());
        self.topic.push(d.topic.as_str());
        self.shop.push(d.shop.as_deref());
        self.webhook.push(d.webhook_id.as_deref());
        self.event.push(d.event_id.as_deref());
        self.received.push(d.received_at_ms);
        self.headers.push(d.headers_json.as_str());
        self.body.push(body.as_slice());
        self.codec
            .push(i16::try_from(*codec).map_err(|_| StoreError::Database(format!("body codec {codec}")))?);
        self.part.push(d.part.map(|p| p as i32));
        Ok(())
    }
}

/// What commits batches of deliveries: the pool and the notifier that tells the leader about them. The
/// committer tasks hold one each rather than the store, so dropping the store stops them.
#[derive(Clone)]
pub(crate) struct LogWriter {
    pool: PgPool,
    notifier: Arc<Notifier>,
}

impl LogWriter {
    /// Commits deliveries in one transaction, retried whole on a deadlock.
    async fn commit_encoded(
        &self,
        ds: &[(NewDelivery, Encoded)],
    ) -> std::result::Result<Vec<CommitResult>, LogFail> {
        let mut attempt = 0;
        loop {
            attempt += 1;
            match self.try_commit_encoded(ds).await {
                Ok(out) => return Ok(out),
                Err(e) if attempt < ATTEMPTS && e.retryable() => continue,
                Err(e) => return Err(e),
            }
        }
    }

    async fn try_commit_encoded(
        &self,
        ds: &[(NewDelivery, Encoded)],
    ) -> std::result::Result<Vec<CommitResult>, LogFail> {
        let out = match insert_new_deliveries(&self.pool, ds).await? {
            Some(out) => out,
            None => {
                let mut tx = self.pool.begin().await?;
                let out = insert_deliveries(&mut tx, ds).await?;
                tx.commit().await?;
                out
            }
        };
        if out.iter().any(|r| matches!(r, CommitResult::Committed { .. })) {
            // Soon and coalesced: one small NOTIFY of the node's own, not one inside each transaction.
            self.notifier.wake.notify_one();
        }
        Ok(out)
    }

    /// Commits one delivery in a transaction of its own.
    async fn commit_one(&self, d: (NewDelivery, Encoded)) -> Result<CommitResult> {
        let mut out = self.commit_encoded(std::slice::from_ref(&d)).await?;
        out.pop().ok_or_else(|| StoreError::Database("commit_delivery: no result".into()))
    }

    /// Commits a batch of waiting acknowledgements in one transaction and answers each waiter with its own
    /// result, or every waiter with the error. A batch the database refuses for what one delivery holds (a
    /// value it cannot store, a key too long for the index) is committed again one delivery at a time, so
    /// that delivery fails alone instead of failing every acknowledgement it was batched with each time
    /// the platform retries it.
    async fn commit_batch(&self, batch: Vec<Waiting>) {
        let (ds, answers): (Vec<_>, Vec<_>) = batch.into_iter().map(|w| (w.delivery, w.answer)).unzip();
        match self.commit_encoded(&ds).await {
            Ok(out) => {
                // A waiter that went away (its request was cancelled) is not answered; its delivery stands.
                for (answer, r) in answers.into_iter().zip(out) {
                    let _ = answer.send(Ok(r));
                }
            }
            Err(e) if ds.len() > 1 && refused_data(&e) => {
                for (d, answer) in ds.into_iter().zip(answers) {
                    let _ = answer.send(self.commit_one(d).await);
                }
            }
            Err(e) => {
                let e = StoreError::from(e);
                tracing::warn!(error = %e, deliveries = ds.len(), "a group commit of acknowledgements failed");
                for answer in answers {
                    let _ = answer.send(Err(same_error(&e)));
                }
            }
        }
    }
}

/// The database refused the data itself (SQLSTATE classes 22, data exception; 23, integrity constraint
/// violation; 54, program limit exceeded): other deliveries would go in without the one at fault.
fn refused_data(e: &LogFail) -> bool {
    match e {
        LogFail::Sql(e) => e
            .as_database_error()
            .and_then(|d| d.code())
            .is_some_and(|c| c.starts_with("22") || c.starts_with("23") || c.starts_with("54")),
        LogFail::Store(_) | LogFail::Vanished(_) => false,
    }
}

/// A copy of an error, for each waiter of a failed batch.
fn same_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Database(m) => StoreError::Database(m.clone()),
        StoreError::Corrupt(m) => StoreError::Corrupt(m.clone()),
        StoreError::NotFound(m) => StoreError::NotFound(m.clone()),
        StoreError::Closed => StoreError::Closed,
        StoreError::Conflict(m) => StoreError::Conflict(m.clone()),
    }
}

/// The most acknowledgements one transaction commits.
const GROUP_MAX: usize = 256;

/// A committer that found fewer acknowledgements than this waiting lingers for more (see
/// [`PgConfig::ack_linger`]).
const LINGER_FILL: usize = 16;

/// How many acknowledgements may wait for a committer; a caller beyond them waits to join the queue.
const GROUP_QUEUE: usize = 1024;

/// One acknowledgement waiting for a committer: its delivery, with the body encoded, and where its result
/// goes.
struct Waiting {
    delivery: (NewDelivery, Encoded),
    answer: tokio::sync::oneshot::Sender<Result<CommitResult>>,
}

/// Group commit of acknowledgements: concurrent [`DeliveryLog::commit_delivery`] calls share transactions.
///
/// Each call queues its delivery and waits for its own answer. A few committer tasks take turns at the
/// queue: the one whose turn it is waits for a delivery, takes it with whatever else is waiting (up to
/// [`GROUP_MAX`]), gives the queue to the next and commits its batch as [`DeliveryLog::commit_deliveries`]
/// would, in queue order. A batch is what waited while the committers were busy; when that is fewer than
/// [`LINGER_FILL`], the committer waits up to [`PgConfig::ack_linger`] for more before it commits (a steady
/// 1,000 a second otherwise commits one or two a transaction, and each transaction costs the server a WAL
/// flush and a round trip). A call returns once its delivery is committed (or the batch failed), as it did
/// with a transaction of its own.
///
/// The committers stop when the store is dropped (the queue closes) or its pool is closed. A call that
/// finds no committer left commits in a transaction of its own; one whose committer went away mid-commit
/// (a panic, a runtime shutting down) gets an error, and its retry stores only what is missing.
pub(crate) struct GroupCommit {
    queue: tokio::sync::mpsc::Sender<Waiting>,
    writer: LogWriter,
}

impl GroupCommit {
    /// Starts the committers: a quarter of the pool, between one and four (each holds a connection while it
    /// commits; the rest of the pool is for everything else).
    pub(crate) fn start(
        pool: PgPool,
        notifier: Arc<Notifier>,
        max_connections: u32,
        linger: Duration,
    ) -> Self {
        let writer = LogWriter { pool, notifier };
        let (queue, rx) = tokio::sync::mpsc::channel(GROUP_QUEUE);
        let rx = Arc::new(tokio::sync::Mutex::new(rx));
        for _ in 0..(max_connections / 4).clamp(1, 4) {
            tokio::spawn(committer(writer.clone(), rx.clone(), linger));
        }
        GroupCommit { queue, writer }
    }

    /// Commits one delivery with whatever else is waiting; returns once it is committed.
    async fn commit(&self, d: (NewDelivery, Encoded)) -> Result<CommitResult> {
        let (answer, result) = tokio::sync::oneshot::channel();
        if let Err(refused) = self.queue.send(Waiting { delivery: d, answer }).await {
            return self.writer.commit_one(refused.0.delivery).await;
        }
        match result.await {
            Ok(r) => r,
            Err(_) if self.writer.pool.is_closed() => Err(StoreError::Closed),
            Err(_) => Err(StoreError::Database(
                "the acknowledgement's commit was cut short (whether it was stored is unknown); retry".into(),
            )),
        }
    }
}

/// A committer: takes its turn at the queue, commits a batch, and again, until the queue closes (the store
/// was dropped) or the pool does.
async fn committer(
    writer: LogWriter,
    queue: Arc<tokio::sync::Mutex<tokio::sync::mpsc::Receiver<Waiting>>>,
    linger: Duration,
) {
    let mut closed = writer.pool.close_event();
    loop {
        let mut batch = Vec::with_capacity(GROUP_MAX);
        let taken = closed
            .do_until(async {
                let mut rx = queue.lock().await;
                let first = rx.recv_many(&mut batch, GROUP_MAX).await;
                if first == 0 || linger.is_zero() || batch.len() >= LINGER_FILL {
                    return first;
                }
                let until = tokio::time::Instant::now() + linger;
                while batch.len() < LINGER_FILL {
                    let room = GROUP_MAX - batch.len();
                    match tokio::time::timeout_at(until, rx.recv_many(&mut batch, room)).await {
                        Ok(n) if n > 0 => {}
                        _ => break,
                    }
                }
                batch.len()
            })
            .await;
        if !matches!(taken, Ok(n) if n > 0) {
            // Waiters still queued are answered with an error when the last committer drops the queue.
            return;
        }
        // In a task of its own: should the commit panic, its waiters get an error (their answers are
        // dropped) and this committer carries on.
        let w = writer.clone();
        if let Err(e) = tokio::spawn(async move { w.commit_batch(batch).await }).await {
            tracing::error!(error = %e, "a group commit of acknowledgements did not finish");
        }
    }
}

impl PgStore {
    /// Commits deliveries in one transaction, retried whole on a deadlock.
    async fn commit_encoded(&self, ds: &[(NewDelivery, Encoded)]) -> Result<Vec<CommitResult>> {
        Ok(self.acks.writer.commit_encoded(ds).await?)
    }
}

/// Separates the bodies from their deliveries, encoded.
fn encode_all(ds: Vec<NewDelivery>) -> Vec<(NewDelivery, Encoded)> {
    ds.into_iter()
        .map(|mut d| {
            let encoded = encode_body(std::mem::take(&mut d.body));
            (d, encoded)
        })
        .collect()
}

#[async_trait]
impl DeliveryLog for PgStore {
    async fn commit_delivery(&self, mut d: NewDelivery) -> Result<CommitResult> {
        check_keys(&d.dedupe_keys)?;
        let encoded = encode_body(std::mem::take(&mut d.body));
        self.acks.commit((d, encoded)).await
    }

    async fn commit_deliveries(&self, ds: Vec<NewDelivery>) -> Result<Vec<CommitResult>> {
        check_keys(ds.iter().flat_map(|d| &d.dedupe_keys))?;
        if ds.is_empty() {
            return Ok(Vec::new());
        }
        self.commit_encoded(&encode_all(ds)).await
    }

    async fn pending_deliveries_after(
        &self,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<StoredDelivery>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE status = 'pending' AND seq > $1 ORDER BY seq LIMIT $2"
        )))
        .bind(after.unwrap_or(i64::MIN))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(stored_delivery).collect()
    }

    async fn pending_deliveries_besides(
        &self,
        in_flight: &[i64],
        limit: usize,
    ) -> Result<Vec<StoredDelivery>> {
        // Acknowledgements commit in several transactions at once, so a delivery can become visible after
        // one numbered later: read from the oldest pending one, leaving out only the batch in flight.
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {DELIVERY_COLUMNS} FROM deliveries WHERE status = 'pending' AND seq <> ALL($1::bigint[])
             ORDER BY seq LIMIT $2"
        )))
        .bind(in_flight)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(stored_delivery).collect()
    }

    async fn requeue_quarantined(&self, trace: Option<TraceId>) -> Result<usize> {
        let mut tx = self.begin().await?;
        let traces: Vec<String> = sqlx::query_scalar(
            "UPDATE deliveries SET status = 'pending', reason = NULL, part = NULL
             WHERE status = 'quarantined' AND ($1::text IS NULL OR trace_id = $1) RETURNING trace_id",
        )
        .bind(trace.map(|t| t.to_string()))
        .fetch_all(&mut *tx)
        .await?;
        reopen_traces(&mut tx, &traces).await?;
        tx.commit().await?;
        Ok(traces.len())
    }

    async fn quarantined(&self, before_seq: Option<i64>, limit: usize) -> Result<Vec<QuarantinedItem>> {
        let rows = sqlx::query(
            "SELECT seq, trace_id, source, topic, received_at, reason FROM deliveries
             WHERE status = 'quarantined' AND seq < $1 ORDER BY seq DESC LIMIT $2",
        )
        .bind(before_seq.unwrap_or(i64::MAX))
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(QuarantinedItem {
                    seq: r.try_get(0)?,
                    trace_id: parse_trace(&r.try_get::<String, _>(1)?)?,
                    source: r.try_get(2)?,
                    topic: r.try_get(3)?,
                    received_at_ms: r.try_get(4)?,
                    reason: r.try_get(5)?,
                })
            })
            .collect()
    }

    async fn delivery_ticks(
        &self,
        after_seq: Option<i64>,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<DeliveryTick>> {
        let mut c = self.pool.acquire().await?;
        let after = match after_seq {
            Some(s) => s,
            None => {
                // The first delivery received at or after `since_ms`, by the receipt-time index (receipt
                // times grow with the sequence, give or take the clocks of the nodes).
                let first: Option<i64> = sqlx::query_scalar(
                    "SELECT seq FROM deliveries WHERE received_at >= $1 ORDER BY received_at, seq LIMIT 1",
                )
                .bind(since_ms)
                .fetch_optional(&mut *c)
                .await?;
                match first {
                    Some(seq) => seq - 1,
                    None => return Ok(Vec::new()),
                }
            }
        };
        let rows = sqlx::query(
            "SELECT seq, source, topic, received_at FROM deliveries WHERE seq > $1 ORDER BY seq LIMIT $2",
        )
        .bind(after)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&mut *c)
        .await?;
        rows.iter()
            .map(|r| {
                Ok(DeliveryTick {
                    seq: r.try_get(0)?,
                    source: r.try_get(1)?,
                    topic: r.try_get(2)?,
                    received_at_ms: r.try_get(3)?,
                })
            })
            .collect()
    }

    async fn prune_dedupe(&self, older_than_ms: i64) -> Result<usize> {
        let n = sqlx::query("DELETE FROM delivery_keys WHERE created_at < $1")
            .bind(older_than_ms)
            .execute(&self.pool)
            .await?
            .rows_affected();
        Ok(usize::try_from(n).unwrap_or(usize::MAX))
    }
}
