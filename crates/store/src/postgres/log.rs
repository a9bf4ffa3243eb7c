//! DeliveryLog in the PostgreSQL backend.

use super::*;

#[allow(unused_variables)] // Until every method is written.
#[async_trait]
impl DeliveryLog for PgStore {
    async fn commit_delivery(&self, d: NewDelivery) -> Result<CommitResult> {
        let _ = self;
        Err(StoreError::Database("commit_delivery: not implemented on PostgreSQL yet".into()))
    }

    async fn pending_deliveries_after(
        &self,
        after: Option<i64>,
        limit: usize,
    ) -> Result<Vec<StoredDelivery>> {
        let _ = self;
        Err(StoreError::Database("pending_deliveries_after: not implemented on PostgreSQL yet".into()))
    }

    async fn requeue_quarantined(&self, trace: Option<TraceId>) -> Result<usize> {
        let _ = self;
        Err(StoreError::Database("requeue_quarantined: not implemented on PostgreSQL yet".into()))
    }

    async fn quarantined(&self, before_seq: Option<i64>, limit: usize) -> Result<Vec<QuarantinedItem>> {
        let _ = self;
        Err(StoreError::Database("quarantined: not implemented on PostgreSQL yet".into()))
    }

    async fn delivery_ticks(
        &self,
        after_seq: Option<i64>,
        since_ms: i64,
        limit: usize,
    ) -> Result<Vec<DeliveryTick>> {
        let _ = self;
        Err(StoreError::Database("delivery_ticks: not implemented on PostgreSQL yet".into()))
    }

    async fn prune_dedupe(&self, older_than_ms: i64) -> Result<usize> {
        let _ = self;
        Err(StoreError::Database("prune_dedupe: not implemented on PostgreSQL yet".into()))
    }
}
