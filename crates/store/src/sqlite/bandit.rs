//! OfferLog in the SQLite backend.

use super::*;

#[async_trait]
impl OfferLog for SqliteStore {
    async fn expire_offers(&self, now_ms: i64) -> Result<u64> {
        self.write(move |tx| settle_offers(tx, None, now_ms, 0.0, now_ms)).await
    }

    async fn settled_offers_after(&self, after: i64, limit: usize) -> Result<Vec<LoggedOffer>> {
        self.read(move |c| {
            read_offers(
                c,
                &format!(
                    "SELECT {OFFER_COLUMNS} FROM offer_log WHERE settle_seq > ?1 ORDER BY settle_seq LIMIT ?2"
                ),
                params![after, limit as i64],
            )
        })
        .await
    }

    async fn offers_of_flow(&self, flow: &str) -> Result<Vec<LoggedOffer>> {
        let flow = flow.to_string();
        self.read(move |c| {
            read_offers(
                c,
                &format!("SELECT {OFFER_COLUMNS} FROM offer_log WHERE flow = ?1 ORDER BY decided_at, id"),
                [&flow],
            )
        })
        .await
    }
}
