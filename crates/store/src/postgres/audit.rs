//! AuditTrail in the PostgreSQL backend.
//!
//! Records are stored packed, as the embedded backend stores them: consecutive records of one trace, customer
//! and instant share a row, whose `stage` names their stages joined by `+` and whose detail is the JSON array
//! of their details (a row with one stage holds the detail itself). A detail of 256 bytes or more goes
//! LZ4-compressed into `detail_lz4` (as [`encode_body`] packs a delivery body) when that makes it smaller, with
//! `detail` left NULL; otherwise it is JSON text in `detail`. A delivery's processing is one row instead of
//! about five, and an attempt with the terminal state it settles one instead of two: each row costs a heap
//! tuple and an entry in three indexes, so the trail's share of the rows, the WAL and the disk per delivery
//! shrinks several times. Rows of one record with a text detail (written before packing, by `nudge migrate`,
//! or by [`insert_audit`]) read as they always did.

use super::*;

/// One stored audit row: its records' stages joined by `+`, and their detail, text or compressed.
struct PackedRow {
    trace: String,
    customer: Option<String>,
    stage: String,
    at: i64,
    detail: Option<String>,
    detail_lz4: Option<Vec<u8>>,
}

/// Packs `records` into rows (see the module docs), in order.
fn pack(records: impl IntoIterator<Item = impl std::borrow::Borrow<AuditRecord>>) -> Result<Vec<PackedRow>> {
    let mut rows: Vec<PackedRow> = Vec::new();
    // The open row and how many records it holds.
    let mut open: Option<(PackedRow, usize)> = None;
    let close = |open: Option<(PackedRow, usize)>, rows: &mut Vec<PackedRow>| {
        let Some((mut row, n)) = open else { return };
        let mut json = row.detail.take().unwrap_or_default();
        if n > 1 {
            json.push(']');
        }
        match encode_body(json.into_bytes()) {
            (CODEC_LZ4, packed) => row.detail_lz4 = Some(packed),
            (_, raw) => row.detail = Some(String::from_utf8(raw).expect("kept as it was: the JSON text")),
        }
        rows.push(row);
    };
    for r in records {
        let r = r.borrow();
        let trace = r.trace_id.to_string();
        let customer = r.customer.as_ref().map(|c| c.to_string());
        let at = ts_to_ms(r.at);
        let detail = serde_json::to_string(&r.detail)?;
        if let Some((row, n)) = open.as_mut()
            && row.trace == trace
            && row.customer == customer
            && row.at == at
        {
            let json = row.detail.as_mut().expect("an open row holds its text");
            if *n == 1 {
                json.insert(0, '[');
            }
            json.push(',');
            json.push_str(&detail);
            row.stage.push('+');
            row.stage.push_str(r.stage.as_str());
            *n += 1;
            continue;
        }
        close(open.take(), &mut rows);
        let row = PackedRow {
            trace,
            customer,
            stage: r.stage.as_str().to_string(),
            at,
            detail: Some(detail),
            detail_lz4: None,
        };
        open = Some((row, 1));
    }
    close(open, &mut rows);
    Ok(rows)
}

/// Audit records packed into rows (see the module docs), as the columns of one insert.
#[derive(Default)]
pub(crate) struct AuditColumns {
    traces: Vec<String>,
    customers: Vec<Option<String>>,
    stages: Vec<String>,
    ats: Vec<i64>,
    texts: Vec<Option<String>>,
    packed: Vec<Option<Vec<u8>>>,
}

impl AuditColumns {
    /// `records` packed, in order.
    pub(crate) fn of(
        records: impl IntoIterator<Item = impl std::borrow::Borrow<AuditRecord>>,
    ) -> Result<Self> {
        let mut c = Self::default();
        for r in pack(records)? {
            c.traces.push(r.trace);
            c.customers.push(r.customer);
            c.stages.push(r.stage);
            c.ats.push(r.at);
            c.texts.push(r.detail);
            c.packed.push(r.detail_lz4);
        }
        Ok(c)
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.traces.is_empty()
    }

    /// The statement that inserts the rows in order, their columns bound as its parameters `$first` to
    /// `$first + 5` (by [`Self::bind`]); it fits a statement of its own or a data-modifying `WITH` query.
    pub(crate) fn insert_sql(first: usize) -> String {
        let p = |i: usize| first + i;
        format!(
            "INSERT INTO audit (trace_id, customer_id, stage, at, detail, detail_lz4)
             SELECT u.t, u.c, u.s, u.a, u.d, u.z
             FROM UNNEST(${}::text[], ${}::text[], ${}::text[], ${}::bigint[], ${}::text[], ${}::bytea[])
               WITH ORDINALITY AS u(t, c, s, a, d, z, n)
             ORDER BY u.n",
            p(0),
            p(1),
            p(2),
            p(3),
            p(4),
            p(5)
        )
    }

    /// Binds the six columns, in the order [`Self::insert_sql`] numbers them.
    pub(crate) fn bind<'q>(
        self,
        q: sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, Postgres, sqlx::postgres::PgArguments> {
        q.bind(self.traces)
            .bind(self.customers)
            .bind(self.stages)
            .bind(self.ats)
            .bind(self.texts)
            .bind(self.packed)
    }
}

/// The audit insert as a statement of its own.
static INSERT_AUDIT: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| AuditColumns::insert_sql(1));

/// Appends audit records packed into rows (see the module docs), in order.
pub(crate) async fn insert_packed_audit(
    tx: &mut Tx,
    records: impl IntoIterator<Item = impl std::borrow::Borrow<AuditRecord>>,
) -> Result<()> {
    let columns = AuditColumns::of(records)?;
    if columns.is_empty() {
        return Ok(());
    }
    columns.bind(sqlx::query(INSERT_AUDIT.as_str())).execute(&mut **tx).await?;
    Ok(())
}

/// The records of an audit row read as [`AUDIT_COLUMNS`] and then `detail_lz4`, in order.
pub(crate) fn audit_records(r: &PgRow) -> Result<Vec<AuditRecord>> {
    let stage: String = r.try_get(2)?;
    let detail = match r.try_get::<Option<Vec<u8>>, _>(5)? {
        Some(packed) => String::from_utf8(unpack(CODEC_LZ4, packed).map_err(StoreError::Corrupt)?)
            .map_err(|e| StoreError::Corrupt(format!("audit detail: {e}")))?,
        // One record with its detail as text: the row as it was always read.
        None if !stage.contains('+') => return Ok(vec![audit_record(r)?]),
        None => r.try_get::<String, _>(4)?,
    };
    unpack_records(r, &stage, &detail)
}

/// The records of a row whose detail (`detail`, as text) is packed or was compressed.
fn unpack_records(r: &PgRow, stage: &str, detail: &str) -> Result<Vec<AuditRecord>> {
    let trace = parse_trace(&r.try_get::<String, _>(0)?)?;
    let customer = r.try_get::<Option<String>, _>(1)?.as_deref().map(parse_customer).transpose()?;
    let at = ms_to_ts(r.try_get(3)?);
    let record = |s: &str, detail: serde_json::Value| -> Result<AuditRecord> {
        Ok(AuditRecord {
            trace_id: trace,
            customer: customer.clone(),
            stage: AuditStage::parse(s).ok_or_else(|| StoreError::Corrupt(format!("audit stage {s:?}")))?,
            at,
            detail,
        })
    };
    if !stage.contains('+') {
        return Ok(vec![record(stage, serde_json::from_str(detail)?)?]);
    }
    let stages: Vec<&str> = stage.split('+').collect();
    match serde_json::from_str(detail)? {
        serde_json::Value::Array(details) if details.len() == stages.len() => {
            stages.into_iter().zip(details).map(|(s, d)| record(s, d)).collect()
        }
        _ => {
            Err(StoreError::Corrupt(format!("audit row of stages {stage:?}: its details do not match them")))
        }
    }
}

/// An aggregate over `audit` rows: how many records they hold (one, plus one per `+` in the stage).
pub(crate) const AUDIT_RECORD_COUNT: &str =
    "COALESCE(SUM(1 + length(stage) - length(replace(stage, '+', ''))), 0)::bigint";

#[async_trait]
impl AuditTrail for PgStore {
    async fn append_audit(&self, records: Vec<AuditRecord>) -> Result<()> {
        if let Some(r) = records.iter().find(|r| r.stage == AuditStage::Terminal) {
            return Err(StoreError::Database(format!(
                "trace {}: a terminal state is recorded with its delivery, not appended on its own",
                r.trace_id
            )));
        }
        if records.is_empty() {
            return Ok(());
        }
        // No delivery, processed mark or terminal row: the trace is the records alone.
        let mut tx = self.begin().await?;
        insert_packed_audit(&mut tx, &records).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn audit_of_traces(&self, traces: Vec<TraceId>, stage: AuditStage) -> Result<Vec<AuditRecord>> {
        let mut out = Vec::new();
        // By chunks of traces, each chunk's records by trace (as the embedded backend orders them).
        for chunk in traces.chunks(500) {
            let ids: Vec<String> = chunk.iter().map(ToString::to_string).collect();
            // Only rows holding the stage are decoded (a row may pack several stages as `a+b+c`).
            let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
                "SELECT {AUDIT_COLUMNS}, detail_lz4 FROM audit
                 WHERE trace_id = ANY($1) AND strpos('+' || stage || '+', '+' || $2 || '+') > 0
                 ORDER BY trace_id COLLATE \"C\", id"
            )))
            .bind(&ids)
            .bind(stage.as_str())
            .fetch_all(&self.pool)
            .await?;
            for r in &rows {
                out.extend(audit_records(r)?.into_iter().filter(|a| a.stage == stage));
            }
        }
        Ok(out)
    }

    async fn trace(&self, trace: TraceId) -> Result<Option<TraceView>> {
        let t = trace.to_string();
        // One transaction, so the records and the terminal state are read as of one moment.
        let mut tx = self.begin().await?;
        sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY").execute(&mut *tx).await?;
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {AUDIT_COLUMNS}, detail_lz4 FROM audit WHERE trace_id = $1 ORDER BY id"
        )))
        .bind(&t)
        .fetch_all(&mut *tx)
        .await?;
        let mut records = Vec::with_capacity(rows.len());
        for r in &rows {
            records.extend(audit_records(r)?);
        }
        let terminal: Option<(String, Option<String>)> =
            sqlx::query_as("SELECT state, reason FROM terminal WHERE trace_id = $1")
                .bind(&t)
                .fetch_optional(&mut *tx)
                .await?;
        let terminal = terminal.map(|(state, reason)| terminal_from(&state, reason));
        // A trace with records is returned whether or not it is a delivery's: one of records appended on
        // their own (a model refit's) has neither a delivery nor a terminal state.
        if records.is_empty() && terminal.is_none() {
            let known: Option<i64> =
                sqlx::query_scalar("SELECT seq FROM deliveries WHERE trace_id = $1 LIMIT 1")
                    .bind(&t)
                    .fetch_optional(&mut *tx)
                    .await?;
            if known.is_none() {
                tx.commit().await?;
                return Ok(None);
            }
        }
        tx.commit().await?;
        Ok(Some(TraceView { trace_id: trace, records, terminal }))
    }

    async fn customer_audit(&self, customer: &CustomerId, limit: usize) -> Result<Vec<AuditRecord>> {
        // A row holds one or more records, so `limit` rows hold at least `limit` records.
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {AUDIT_COLUMNS}, detail_lz4 FROM audit WHERE customer_id = $1 ORDER BY id DESC LIMIT $2"
        )))
        .bind(customer.to_string())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        let mut out = Vec::with_capacity(limit.min(rows.len() * 2));
        for r in rows.iter().rev() {
            out.extend(audit_records(r)?);
        }
        let extra = out.len().saturating_sub(limit);
        out.drain(..extra);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(trace: TraceId, stage: AuditStage, at_ms: i64, detail: serde_json::Value) -> AuditRecord {
        AuditRecord { trace_id: trace, customer: None, stage, at: ms_to_ts(at_ms), detail }
    }

    #[test]
    fn consecutive_records_of_one_trace_and_instant_share_a_row() {
        let (a, b) = (TraceId::new(), TraceId::new());
        let big = serde_json::json!({ "text": "abc ".repeat(200) });
        let records = vec![
            record(a, AuditStage::Received, 5, serde_json::json!({ "n": 1 })),
            record(a, AuditStage::Normalized, 5, big.clone()),
            record(a, AuditStage::DeliveryAttempt, 6, serde_json::json!("x")),
            record(b, AuditStage::Terminal, 6, serde_json::json!(null)),
        ];
        let rows = pack(&records).unwrap();
        let stages: Vec<&str> = rows.iter().map(|r| r.stage.as_str()).collect();
        assert_eq!(stages, ["received+normalized", "delivery_attempt", "terminal"]);
        // The large pair is compressed; the small single records stay text.
        let packed = rows[0].detail_lz4.clone().expect("compressed");
        assert!(rows[0].detail.is_none());
        let json = String::from_utf8(unpack(CODEC_LZ4, packed).unwrap()).unwrap();
        let details: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(details, serde_json::json!([{ "n": 1 }, big]));
        assert_eq!(rows[1].detail.as_deref(), Some("\"x\""));
        assert_eq!(rows[2].detail.as_deref(), Some("null"));
    }
}
