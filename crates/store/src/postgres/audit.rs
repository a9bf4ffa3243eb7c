//! AuditTrail in the PostgreSQL backend.

use super::*;

#[allow(unused_variables)] // Until every method is written.
#[async_trait]
impl AuditTrail for PgStore {
    async fn append_audit(&self, records: Vec<AuditRecord>) -> Result<()> {
        let _ = self;
        Err(StoreError::Database("append_audit: not implemented on PostgreSQL yet".into()))
    }

    async fn trace(&self, trace: TraceId) -> Result<Option<TraceView>> {
        let _ = self;
        Err(StoreError::Database("trace: not implemented on PostgreSQL yet".into()))
    }

    async fn customer_audit(&self, customer: &CustomerId, limit: usize) -> Result<Vec<AuditRecord>> {
        let _ = self;
        Err(StoreError::Database("customer_audit: not implemented on PostgreSQL yet".into()))
    }
}
