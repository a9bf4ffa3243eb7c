//! Approvals in the SQLite backend.

use super::*;

#[async_trait]
impl Approvals for SqliteStore {
    async fn list_approvals(&self, filter: ApprovalFilter) -> Result<Vec<ApprovalRecord>> {
        self.read(move |c| {
            let limit = if filter.limit == 0 { i64::MAX } else { filter.limit as i64 };
            let mut st = c.prepare_cached(&format!(
                "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE (?1 IS NULL OR flow = ?1) AND (?2 IS NULL OR status = ?2)
                 ORDER BY id LIMIT ?3"
            ))?;
            let rows = st
                .query_map(params![filter.flow, filter.status.map(ApprovalStatus::as_str), limit], approval_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn decide_approvals(
        &self,
        target: ApprovalTarget,
        decision: ApprovalDecision,
        by: &str,
        reason: Option<String>,
        now_ms: i64,
    ) -> Result<Vec<(i64, DecideResult)>> {
        let by = by.to_string();
        self.write(move |tx| {
            let items: Vec<(i64, Option<ApprovalRecord>)> = match target {
                ApprovalTarget::Ids(ids) => {
                    let mut st =
                        tx.prepare_cached(&format!("SELECT {APPROVAL_COLUMNS} FROM approvals WHERE id = ?1"))?;
                    ids.into_iter()
                        .map(|id| Ok((id, st.query_row([id], approval_row).optional()?)))
                        .collect::<Result<_>>()?
                }
                ApprovalTarget::AllPending { flow } => {
                    let mut st = tx.prepare_cached(&format!(
                        "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE status = 'pending' AND (?1 IS NULL OR flow = ?1)
                         ORDER BY id"
                    ))?;
                    st.query_map(params![flow], approval_row)?
                        .map(|r| r.map(|a| (a.id, Some(a))))
                        .collect::<rusqlite::Result<_>>()?
                }
            };
            let mut out = Vec::with_capacity(items.len());
            for (id, item) in items {
                let Some(item) = item else {
                    out.push((id, DecideResult::NotFound));
                    continue;
                };
                let result = match item.status {
                    ApprovalStatus::Expired => DecideResult::Expired,
                    ApprovalStatus::Approved | ApprovalStatus::Rejected => DecideResult::AlreadyDecided(item.status),
                    ApprovalStatus::Pending if item.expires_at_ms <= now_ms => {
                        settle_approval(tx, &item, ApprovalStatus::Expired, "system", Some("expired"), now_ms)?;
                        DecideResult::Expired
                    }
                    ApprovalStatus::Pending => {
                        let status = match decision {
                            ApprovalDecision::Approve => ApprovalStatus::Approved,
                            ApprovalDecision::Reject => ApprovalStatus::Rejected,
                        };
                        if settle_approval(tx, &item, status, &by, reason.as_deref(), now_ms)? {
                            DecideResult::Decided
                        } else {
                            // Named again in the same call: decided by its first mention.
                            DecideResult::AlreadyDecided(status)
                        }
                    }
                };
                out.push((id, result));
            }
            Ok(out)
        })
        .await
    }

    async fn expire_approvals(&self, now_ms: i64) -> Result<usize> {
        // In write jobs of at most `CHUNK` items, so a mass expiry (a flow's whole queue left for days)
        // never holds the writer, and every processing batch behind it, for one long transaction.
        const CHUNK: i64 = 1000;
        let mut total = 0;
        loop {
            let n = self
                .write(move |tx| {
                    let due: Vec<ApprovalRecord> = tx
                        .prepare_cached(&format!(
                            "SELECT {APPROVAL_COLUMNS} FROM approvals INDEXED BY approvals_pending_expiry
                             WHERE status = 'pending' AND expires_at <= ?1 ORDER BY expires_at LIMIT ?2"
                        ))?
                        .query_map(params![now_ms, CHUNK], approval_row)?
                        .collect::<rusqlite::Result<_>>()?;
                    for item in &due {
                        settle_approval(
                            tx,
                            item,
                            ApprovalStatus::Expired,
                            "system",
                            Some("expired"),
                            now_ms,
                        )?;
                    }
                    Ok(due.len())
                })
                .await?;
            total += n;
            if (n as i64) < CHUNK {
                return Ok(total);
            }
        }
    }

    async fn approval_count(&self, flow: &str) -> Result<u64> {
        let flow = flow.to_string();
        self.read(move |c| {
            let n: i64 = c
                .prepare_cached("SELECT COUNT(*) FROM approvals WHERE flow = ?1")?
                .query_row([flow], |r| r.get(0))?;
            Ok(n as u64)
        })
        .await
    }

    async fn store_generated_copy(&self, fill: CopyFill) -> Result<CopyStored> {
        if let Some(r) = fill.audit.iter().find(|r| r.stage == AuditStage::Terminal) {
            return Err(StoreError::Database(format!(
                "trace {}: a terminal state is recorded with its delivery, not with generated copy",
                r.trace_id
            )));
        }
        let rows = pack_audit(fill.audit)?;
        let (outbox, approvals, usage) = (fill.outbox, fill.approvals, fill.usage);
        self.write(move |tx| {
            let mut stored = CopyStored::default();
            {
                let mut st = tx.prepare_cached(
                    "UPDATE outbox SET action = ?2 WHERE id = ?1 AND status = 'pending' AND instr(action, ?3) > 0",
                )?;
                for (id, action) in &outbox {
                    stored.outbox += st.execute(params![id, action, nudge_model::COPY_REQUEST_PROPERTY])?;
                }
                let mut st = tx.prepare_cached(
                    "UPDATE approvals SET actions = ?2 WHERE id = ?1 AND status = 'pending' AND instr(actions, ?3) > 0",
                )?;
                for (id, actions) in &approvals {
                    stored.approvals += st.execute(params![id, actions, nudge_model::COPY_REQUEST_PROPERTY])?;
                }
            }
            for r in &rows {
                insert_audit(tx, r)?;
            }
            if let Some(u) = usage {
                tx.prepare_cached(
                    "INSERT INTO llm_usage (month, tokens, generations, fallbacks) VALUES (?1, ?2, ?3, ?4)
                     ON CONFLICT(month) DO UPDATE SET tokens = tokens + ?2, generations = generations + ?3,
                     fallbacks = fallbacks + ?4",
                )?
                .execute(params![u.month, u.tokens as i64, u.generations as i64, u.fallbacks as i64])?;
            }
            Ok(stored)
        })
        .await
    }

    async fn llm_usage(&self, month: &str) -> Result<LlmUsage> {
        let month = month.to_string();
        self.read(move |c| {
            let row = c
                .prepare_cached("SELECT tokens, generations, fallbacks FROM llm_usage WHERE month = ?1")?
                .query_row([&month], |r| Ok((r.get::<_, i64>(0)?, r.get::<_, i64>(1)?, r.get::<_, i64>(2)?)))
                .optional()?;
            let (tokens, generations, fallbacks) = row.unwrap_or((0, 0, 0));
            Ok(LlmUsage {
                month,
                tokens: tokens.max(0) as u64,
                generations: generations.max(0) as u64,
                fallbacks: fallbacks.max(0) as u64,
            })
        })
        .await
    }

    async fn approvals_awaiting_copy(&self, limit: usize) -> Result<Vec<ApprovalRecord>> {
        self.read(move |c| {
            let mut st = c.prepare_cached(&format!(
                "SELECT {APPROVAL_COLUMNS} FROM approvals WHERE status = 'pending' AND instr(actions, ?1) > 0
                 ORDER BY id LIMIT ?2"
            ))?;
            let rows = st
                .query_map(params![nudge_model::COPY_REQUEST_PROPERTY, limit as i64], approval_row)?
                .collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(rows)
        })
        .await
    }

    async fn replace_approval_actions(&self, updates: Vec<(i64, String)>) -> Result<usize> {
        self.write(move |tx| {
            let mut st =
                tx.prepare_cached("UPDATE approvals SET actions = ?2 WHERE id = ?1 AND status = 'pending'")?;
            let mut n = 0;
            for (id, actions) in &updates {
                n += st.execute(params![id, actions])?;
            }
            Ok(n)
        })
        .await
    }

    async fn flow_decisions(&self, flow: &str, since_ms: i64, until_ms: i64) -> Result<Vec<FlowDecision>> {
        let flow = flow.to_string();
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT flow, flow_version, customer_id, at, status, matched, baseline, trace_id, arm
                 FROM flow_decisions WHERE flow = ?1 AND at >= ?2 AND at < ?3 ORDER BY at, id",
            )?;
            let rows = st.query_map(params![flow, since_ms, until_ms], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, String>(2)?,
                    r.get::<_, i64>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, bool>(5)?,
                    r.get::<_, Option<bool>>(6)?,
                    r.get::<_, String>(7)?,
                    r.get::<_, Option<String>>(8)?,
                ))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (flow, flow_version, customer, at_ms, status, matched, baseline, trace, arm) = row?;
                out.push(FlowDecision {
                    flow,
                    flow_version,
                    customer: customer
                        .parse()
                        .map_err(|_| StoreError::Corrupt(format!("flow decision customer id {customer}")))?,
                    at_ms,
                    status,
                    matched,
                    baseline,
                    trace_id: trace
                        .parse()
                        .map_err(|_| StoreError::Corrupt(format!("flow decision trace id {trace}")))?,
                    arm,
                });
            }
            Ok(out)
        })
        .await
    }
}
