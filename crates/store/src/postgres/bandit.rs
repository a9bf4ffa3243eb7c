//! OfferLog in the PostgreSQL backend.

use super::*;

/// The columns [`logged_offer`] reads, in order.
pub(crate) const OFFER_COLUMNS: &str = "id, flow, customer_id, arm, propensity, explored, context, decided_at, \
     window_end, outcome_value, settled_at, settle_seq";

/// An offer row read as [`OFFER_COLUMNS`].
pub(crate) fn logged_offer(r: &PgRow) -> Result<LoggedOffer> {
    let customer: String = r.try_get(2)?;
    let context: String = r.try_get(6)?;
    Ok(LoggedOffer {
        id: r.try_get(0)?,
        flow: r.try_get(1)?,
        customer: customer
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("offer customer id {customer}")))?,
        arm: r.try_get(3)?,
        propensity: r.try_get(4)?,
        explored: r.try_get(5)?,
        context: serde_json::from_str(&context)?,
        decided_at_ms: r.try_get(7)?,
        window_end_ms: r.try_get(8)?,
        outcome_value: r.try_get(9)?,
        settled_at_ms: r.try_get(10)?,
        settle_seq: r.try_get(11)?,
    })
}

#[async_trait]
impl OfferLog for PgStore {
    async fn expire_offers(&self, now_ms: i64) -> Result<u64> {
        let mut tx = self.begin().await?;
        let n = settle_offers(&mut tx, None, now_ms, 0.0, now_ms).await?;
        tx.commit().await?;
        Ok(n)
    }

    async fn settled_offers_after(&self, after: i64, limit: usize) -> Result<Vec<LoggedOffer>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {OFFER_COLUMNS} FROM offer_log WHERE settle_seq > $1 ORDER BY settle_seq LIMIT $2"
        )))
        .bind(after)
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(logged_offer).collect()
    }

    async fn offers_of_flow(&self, flow: &str) -> Result<Vec<LoggedOffer>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {OFFER_COLUMNS} FROM offer_log WHERE flow = $1 ORDER BY decided_at, id COLLATE \"C\""
        )))
        .bind(flow)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(logged_offer).collect()
    }
}
