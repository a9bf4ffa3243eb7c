//! Approvals in the PostgreSQL backend.
//!
//! Deciding or expiring items settles their traces, so it locks them first ([`lock_traces`]: the traces'
//! outbox rows, then their pending items, in id order) and reads the items again under the locks: what
//! another node decided meanwhile is seen as decided.

use super::outbox::{limit_of, lock_traces, trace_summaries};
use super::*;
use std::collections::{HashMap, HashSet};

#[async_trait]
impl Approvals for PgStore {
    async fn list_approvals(&self, filter: ApprovalFilter) -> Result<Vec<ApprovalRecord>> {
        let limit = if filter.limit == 0 { i64::MAX } else { limit_of(filter.limit) };
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {APPROVAL_COLUMNS} FROM approvals
             WHERE ($1::text IS NULL OR flow = $1) AND ($2::text IS NULL OR status = $2)
             ORDER BY id LIMIT $3"
        )))
        .bind(filter.flow.as_deref())
        .bind(filter.status.map(ApprovalStatus::as_str))
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(approval_record).collect()
    }

    async fn decide_approvals(
        &self,
        target: ApprovalTarget,
        decision: ApprovalDecision,
        by: &str,
        reason: Option<String>,
        now_ms: i64,
    ) -> Result<Vec<(i64, DecideResult)>> {
        let mut tx = self.begin().await?;
        // The items' traces, locked; then the items as they are under the locks.
        let (wanted, traces): (Vec<i64>, Vec<String>) = match &target {
            ApprovalTarget::Ids(ids) => {
                let traces = sqlx::query_scalar("SELECT DISTINCT trace_id FROM approvals WHERE id = ANY($1)")
                    .bind(ids)
                    .fetch_all(&mut *tx)
                    .await?;
                (ids.clone(), traces)
            }
            ApprovalTarget::AllPending { flow } => {
                let rows: Vec<(i64, String)> = sqlx::query_as(
                    "SELECT id, trace_id FROM approvals WHERE status = 'pending' AND ($1::text IS NULL OR flow = $1)
                     ORDER BY id",
                )
                .bind(flow.as_deref())
                .fetch_all(&mut *tx)
                .await?;
                let mut traces: Vec<String> = rows.iter().map(|r| r.1.clone()).collect();
                traces.sort_unstable();
                traces.dedup();
                (rows.into_iter().map(|r| r.0).collect(), traces)
            }
        };
        lock_traces(&mut tx, &traces, true).await?;
        let fresh = read_approvals(&mut tx, &wanted).await?;
        let items: Vec<(i64, Option<&ApprovalRecord>)> = match &target {
            ApprovalTarget::Ids(_) => wanted.iter().map(|id| (*id, fresh.get(id))).collect(),
            // Decided by someone else since the first read: not part of "every pending item" any more.
            ApprovalTarget::AllPending { .. } => wanted
                .iter()
                .filter_map(|id| {
                    fresh.get(id).filter(|a| a.status == ApprovalStatus::Pending).map(|a| (*id, Some(a)))
                })
                .collect(),
        };

        enum Plan {
            Done(DecideResult),
            Expire,
            Decide(usize, ApprovalStatus),
        }
        let decided = match decision {
            ApprovalDecision::Approve => ApprovalStatus::Approved,
            ApprovalDecision::Reject => ApprovalStatus::Rejected,
        };
        let mut transitions = Vec::new();
        let mut plans = Vec::with_capacity(items.len());
        for (id, item) in items {
            let plan = match item {
                None => Plan::Done(DecideResult::NotFound),
                Some(item) => match item.status {
                    ApprovalStatus::Expired => Plan::Done(DecideResult::Expired),
                    ApprovalStatus::Approved | ApprovalStatus::Rejected => {
                        Plan::Done(DecideResult::AlreadyDecided(item.status))
                    }
                    ApprovalStatus::Pending if item.expires_at_ms <= now_ms => {
                        transitions.push(Transition {
                            item,
                            status: ApprovalStatus::Expired,
                            by: "system",
                            reason: Some("expired"),
                        });
                        Plan::Expire
                    }
                    ApprovalStatus::Pending => {
                        transitions.push(Transition { item, status: decided, by, reason: reason.as_deref() });
                        Plan::Decide(transitions.len() - 1, decided)
                    }
                },
            };
            plans.push((id, plan));
        }
        let changed = settle_approvals(&mut tx, &transitions, now_ms).await?;
        tx.commit().await?;
        Ok(plans
            .into_iter()
            .map(|(id, plan)| {
                let result = match plan {
                    Plan::Done(r) => r,
                    Plan::Expire => DecideResult::Expired,
                    Plan::Decide(i, _) if changed[i] => DecideResult::Decided,
                    // Named again in the same call: decided by its first mention.
                    Plan::Decide(_, status) => DecideResult::AlreadyDecided(status),
                };
                (id, result)
            })
            .collect())
    }

    async fn replace_approval_actions(&self, updates: Vec<(i64, String)>) -> Result<usize> {
        let mut updates = updates;
        // In id order (rows are locked in id order everywhere).
        updates.sort_by_key(|u| u.0);
        let mut tx = self.begin().await?;
        let mut n = 0;
        for (id, actions) in &updates {
            n += sqlx::query("UPDATE approvals SET actions = $2 WHERE id = $1 AND status = 'pending'")
                .bind(id)
                .bind(actions)
                .execute(&mut *tx)
                .await?
                .rows_affected();
        }
        tx.commit().await?;
        Ok(n as usize)
    }

    async fn store_generated_copy(&self, fill: CopyFill) -> Result<CopyStored> {
        if let Some(r) = fill.audit.iter().find(|r| r.stage == AuditStage::Terminal) {
            return Err(StoreError::Database(format!(
                "trace {}: a terminal state is recorded with its delivery, not with generated copy",
                r.trace_id
            )));
        }
        let CopyFill { mut outbox, mut approvals, audit, usage } = fill;
        // In id order (rows are locked in id order everywhere); an id named twice keeps its first fill.
        outbox.sort_by_key(|u| u.0);
        approvals.sort_by_key(|u| u.0);
        let mut tx = self.begin().await?;
        let mut stored = CopyStored::default();
        for (id, action) in &outbox {
            stored.outbox += sqlx::query(
                "UPDATE outbox SET action = $2 WHERE id = $1 AND status = 'pending' AND strpos(action, $3) > 0",
            )
            .bind(id)
            .bind(action)
            .bind(nudge_model::COPY_REQUEST_PROPERTY)
            .execute(&mut *tx)
            .await?
            .rows_affected() as usize;
        }
        for (id, actions) in &approvals {
            stored.approvals += sqlx::query(
                "UPDATE approvals SET actions = $2 WHERE id = $1 AND status = 'pending' AND strpos(actions, $3) > 0",
            )
            .bind(id)
            .bind(actions)
            .bind(nudge_model::COPY_REQUEST_PROPERTY)
            .execute(&mut *tx)
            .await?
            .rows_affected() as usize;
        }
        insert_audit(&mut tx, &audit).await?;
        if let Some(u) = usage {
            sqlx::query(
                "INSERT INTO llm_usage (month, tokens, generations, fallbacks) VALUES ($1, $2, $3, $4)
                 ON CONFLICT (month) DO UPDATE SET tokens = llm_usage.tokens + excluded.tokens,
                   generations = llm_usage.generations + excluded.generations,
                   fallbacks = llm_usage.fallbacks + excluded.fallbacks",
            )
            .bind(&u.month)
            .bind(i64::try_from(u.tokens).unwrap_or(i64::MAX))
            .bind(i64::try_from(u.generations).unwrap_or(i64::MAX))
            .bind(i64::try_from(u.fallbacks).unwrap_or(i64::MAX))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(stored)
    }

    async fn llm_usage(&self, month: &str) -> Result<LlmUsage> {
        let row: Option<(i64, i64, i64)> =
            sqlx::query_as("SELECT tokens, generations, fallbacks FROM llm_usage WHERE month = $1")
                .bind(month)
                .fetch_optional(&self.pool)
                .await?;
        let (tokens, generations, fallbacks) = row.unwrap_or((0, 0, 0));
        Ok(LlmUsage {
            month: month.to_string(),
            tokens: tokens.max(0) as u64,
            generations: generations.max(0) as u64,
            fallbacks: fallbacks.max(0) as u64,
        })
    }

    async fn approvals_awaiting_copy(&self, limit: usize) -> Result<Vec<ApprovalRecord>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE status = 'pending' AND strpos(actions, $1) > 0
             ORDER BY id LIMIT $2"
        )))
        .bind(nudge_model::COPY_REQUEST_PROPERTY)
        .bind(limit_of(limit))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(approval_record).collect()
    }

    async fn expire_approvals(&self, now_ms: i64) -> Result<usize> {
        // In transactions of at most `CHUNK` items, so a mass expiry (a flow's whole queue left for days)
        // never holds its locks for one long transaction.
        const CHUNK: i64 = 1000;
        let mut total = 0;
        loop {
            let mut tx = self.begin().await?;
            let due: Vec<(i64, String)> = sqlx::query_as(
                "SELECT id, trace_id FROM approvals WHERE status = 'pending' AND expires_at <= $1
                 ORDER BY expires_at, id LIMIT $2",
            )
            .bind(now_ms)
            .bind(CHUNK)
            .fetch_all(&mut *tx)
            .await?;
            let mut traces: Vec<String> = due.iter().map(|r| r.1.clone()).collect();
            traces.sort_unstable();
            traces.dedup();
            lock_traces(&mut tx, &traces, true).await?;
            let ids: Vec<i64> = due.iter().map(|r| r.0).collect();
            let fresh = read_approvals(&mut tx, &ids).await?;
            // Still pending and due under the locks (another node may have expired or decided some).
            let transitions: Vec<Transition> = ids
                .iter()
                .filter_map(|id| fresh.get(id))
                .filter(|a| a.status == ApprovalStatus::Pending && a.expires_at_ms <= now_ms)
                .map(|item| Transition {
                    item,
                    status: ApprovalStatus::Expired,
                    by: "system",
                    reason: Some("expired"),
                })
                .collect();
            let changed = settle_approvals(&mut tx, &transitions, now_ms).await?;
            tx.commit().await?;
            total += changed.iter().filter(|c| **c).count();
            if (due.len() as i64) < CHUNK {
                return Ok(total);
            }
        }
    }

    async fn flow_decisions(&self, flow: &str, since_ms: i64, until_ms: i64) -> Result<Vec<FlowDecision>> {
        let rows = sqlx::query(
            "SELECT flow, flow_version, customer_id, at, status, matched, baseline, trace_id, arm
             FROM flow_decisions WHERE flow = $1 AND at >= $2 AND at < $3 ORDER BY at, id",
        )
        .bind(flow)
        .bind(since_ms)
        .bind(until_ms)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let customer: String = r.try_get(2)?;
                let trace: String = r.try_get(7)?;
                Ok(FlowDecision {
                    flow: r.try_get(0)?,
                    flow_version: r.try_get(1)?,
                    customer: customer
                        .parse()
                        .map_err(|_| StoreError::Corrupt(format!("flow decision customer id {customer}")))?,
                    at_ms: r.try_get(3)?,
                    status: r.try_get(4)?,
                    matched: r.try_get(5)?,
                    baseline: r.try_get(6)?,
                    trace_id: trace
                        .parse()
                        .map_err(|_| StoreError::Corrupt(format!("flow decision trace id {trace}")))?,
                    arm: r.try_get(8)?,
                })
            })
            .collect()
    }

    async fn approval_count(&self, flow: &str) -> Result<u64> {
        let n: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM approvals WHERE flow = $1")
            .bind(flow)
            .fetch_one(&self.pool)
            .await?;
        Ok(n.max(0) as u64)
    }
}

/// The columns [`approval_record`] reads, in order.
pub(crate) const APPROVAL_COLUMNS: &str = "id, trace_id, flow, flow_version, customer_id, actions, created_at, \
     expires_at, status, decided_at, decided_by, reason";

/// An approval row read as [`APPROVAL_COLUMNS`].
pub(crate) fn approval_record(r: &PgRow) -> Result<ApprovalRecord> {
    let actions: String = r.try_get(5)?;
    let status: String = r.try_get(8)?;
    Ok(ApprovalRecord {
        id: r.try_get(0)?,
        trace_id: parse_trace(&r.try_get::<String, _>(1)?)?,
        flow: r.try_get(2)?,
        flow_version: r.try_get(3)?,
        customer: parse_customer(&r.try_get::<String, _>(4)?)?,
        actions: serde_json::from_str(&actions).unwrap_or(serde_json::Value::String(actions)),
        created_at_ms: r.try_get(6)?,
        expires_at_ms: r.try_get(7)?,
        status: ApprovalStatus::parse(&status).unwrap_or(ApprovalStatus::Pending),
        decided_at_ms: r.try_get(9)?,
        decided_by: r.try_get(10)?,
        reason: r.try_get(11)?,
    })
}

/// Approval items by id, as they are now.
async fn read_approvals(tx: &mut Tx, ids: &[i64]) -> Result<HashMap<i64, ApprovalRecord>> {
    if ids.is_empty() {
        return Ok(HashMap::new());
    }
    let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
        "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = ANY($1)"
    )))
    .bind(ids)
    .fetch_all(&mut **tx)
    .await?;
    rows.iter().map(|r| approval_record(r).map(|a| (a.id, a))).collect()
}

/// One pending item's change of status.
struct Transition<'a> {
    item: &'a ApprovalRecord,
    status: ApprovalStatus,
    by: &'a str,
    reason: Option<&'a str>,
}

/// Applies transitions of pending items (their traces locked, the items read under the locks), in order:
/// each item's new status (only while it is pending: an item named twice changes once), an approved item's
/// actions into the outbox (after what its customer has pending), an audit record (stage `approval`) each,
/// and the terminal state of each trace with nothing left pending (from what its outbox items became;
/// none: ignored, with the approval's outcome as the reason). Returns whether each transition changed its
/// item.
async fn settle_approvals(tx: &mut Tx, transitions: &[Transition<'_>], now_ms: i64) -> Result<Vec<bool>> {
    if transitions.is_empty() {
        return Ok(Vec::new());
    }
    let mut seen = HashSet::new();
    let first: Vec<bool> = transitions.iter().map(|t| seen.insert(t.item.id)).collect();
    let ups: Vec<&Transition> = transitions.iter().zip(&first).filter(|(_, f)| **f).map(|(t, _)| t).collect();
    let updated: HashSet<i64> = sqlx::query_scalar(
        "UPDATE approvals a SET status = u.status, decided_at = $5, decided_by = u.by, reason = u.reason
         FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::text[]) AS u(id, status, by, reason)
         WHERE a.id = u.id AND a.status = 'pending'
         RETURNING a.id",
    )
    .bind(ups.iter().map(|t| t.item.id).collect::<Vec<_>>())
    .bind(ups.iter().map(|t| t.status.as_str()).collect::<Vec<_>>())
    .bind(ups.iter().map(|t| t.by).collect::<Vec<_>>())
    .bind(ups.iter().map(|t| t.reason).collect::<Vec<_>>())
    .bind(now_ms)
    .fetch_all(&mut **tx)
    .await?
    .into_iter()
    .collect();
    let changed: Vec<bool> =
        transitions.iter().zip(&first).map(|(t, f)| *f && updated.contains(&t.item.id)).collect();

    // Approved items' actions, in the items' order and each item's actions in order.
    let mut enqueued = vec![0usize; transitions.len()];
    let (mut o_traces, mut o_customers, mut o_dests, mut o_actions) = (vec![], vec![], vec![], vec![]);
    for (i, t) in transitions.iter().enumerate() {
        if !changed[i] || t.status != ApprovalStatus::Approved {
            continue;
        }
        let item = t.item;
        for a in item.actions.as_array().map(Vec::as_slice).unwrap_or_default() {
            let destination = a.get("destination").and_then(|d| d.as_str()).ok_or_else(|| {
                StoreError::Corrupt(format!("approval {}: an action without a destination", item.id))
            })?;
            let action = a.get("action").ok_or_else(|| {
                StoreError::Corrupt(format!("approval {}: an action without its body", item.id))
            })?;
            o_traces.push(item.trace_id.to_string());
            o_customers.push(item.customer.to_string());
            o_dests.push(destination.to_string());
            o_actions.push(action.to_string());
            enqueued[i] += 1;
        }
    }
    if !o_traces.is_empty() {
        sqlx::query(
            "INSERT INTO outbox (trace_id, customer_id, destination, action, next_attempt_at, created_at, origin_us)
             SELECT u.t, u.c, u.d, u.a, $5, $5, $6
             FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[]) WITH ORDINALITY AS u(t, c, d, a, n)
             ORDER BY u.n",
        )
        .bind(&o_traces)
        .bind(&o_customers)
        .bind(&o_dests)
        .bind(&o_actions)
        .bind(now_ms)
        .bind(now_ms.saturating_mul(1000))
        .execute(&mut **tx)
        .await?;
    }

    // A trace can settle only after its last transition here (before it, that item was still pending), and
    // only when that one left nothing to send.
    let mut last: HashMap<TraceId, usize> = HashMap::new();
    for (i, t) in transitions.iter().enumerate() {
        if changed[i] {
            last.insert(t.item.trace_id, i);
        }
    }
    let mut candidates: Vec<String> = last
        .iter()
        .filter(|(_, i)| transitions[**i].status != ApprovalStatus::Approved || enqueued[**i] == 0)
        .map(|(t, _)| t.to_string())
        .collect();
    candidates.sort_unstable();
    let summaries = trace_summaries(tx, &candidates).await?;

    let at = ms_to_ts(now_ms);
    let mut records = Vec::with_capacity(transitions.len());
    let mut ended: Vec<(String, TerminalState)> = Vec::new();
    for (i, t) in transitions.iter().enumerate() {
        if !changed[i] {
            continue;
        }
        let item = t.item;
        records.push(AuditRecord {
            trace_id: item.trace_id,
            customer: Some(item.customer.clone()),
            stage: AuditStage::Approval,
            at,
            detail: serde_json::json!({
                "approval_id": item.id, "flow": item.flow, "flow_version": item.flow_version,
                "status": t.status.as_str(), "by": t.by, "reason": t.reason, "enqueued": enqueued[i],
            }),
        });
        if last.get(&item.trace_id) != Some(&i) {
            continue;
        }
        let trace = item.trace_id.to_string();
        let Some(s) = summaries.get(&trace) else { continue };
        if s.pending > 0 || s.pending_approval || s.has_terminal {
            continue;
        }
        let terminal = if s.total == 0 {
            TerminalState::Ignored(match t.status {
                ApprovalStatus::Approved => "approved; nothing to send".to_string(),
                other => format!("approval {}", other.as_str()),
            })
        } else {
            s.outcome()
        };
        records.push(AuditRecord {
            trace_id: item.trace_id,
            customer: Some(item.customer.clone()),
            stage: AuditStage::Terminal,
            at,
            detail: serde_json::json!({ "state": terminal.name(), "reason": terminal.reason() }),
        });
        ended.push((trace, terminal));
    }
    if !ended.is_empty() {
        sqlx::query(
            "INSERT INTO terminal (trace_id, state, reason, at)
             SELECT u.t, u.s, u.r, $4 FROM UNNEST($1::text[], $2::text[], $3::text[]) AS u(t, s, r)
             ON CONFLICT (trace_id) DO NOTHING",
        )
        .bind(ended.iter().map(|e| e.0.as_str()).collect::<Vec<_>>())
        .bind(ended.iter().map(|e| e.1.name()).collect::<Vec<_>>())
        .bind(ended.iter().map(|e| e.1.reason()).collect::<Vec<_>>())
        .bind(now_ms)
        .execute(&mut **tx)
        .await?;
    }
    insert_audit(tx, &records).await?;
    Ok(changed)
}
