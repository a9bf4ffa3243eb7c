//! OfferLog in the PostgreSQL backend.

use super::*;

#[allow(unused_variables)] // Until every method is written.
#[async_trait]
impl OfferLog for PgStore {
    async fn expire_offers(&self, now_ms: i64) -> Result<u64> {
        let _ = self;
        Err(StoreError::Database("expire_offers: not implemented on PostgreSQL yet".into()))
    }

    async fn settled_offers_after(&self, after: i64, limit: usize) -> Result<Vec<LoggedOffer>> {
        let _ = self;
        Err(StoreError::Database("settled_offers_after: not implemented on PostgreSQL yet".into()))
    }

    async fn offers_of_flow(&self, flow: &str) -> Result<Vec<LoggedOffer>> {
        let _ = self;
        Err(StoreError::Database("offers_of_flow: not implemented on PostgreSQL yet".into()))
    }
}
