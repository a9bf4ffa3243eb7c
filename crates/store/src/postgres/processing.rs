//! Processing in the PostgreSQL backend.

use super::*;

#[allow(unused_variables)] // Until every method is written.
#[async_trait]
impl Processing for PgStore {
    async fn commit_processing_after(&self, batch: Vec<ProcessOutcome>, after: Option<i64>) -> Result<()> {
        let _ = self;
        Err(StoreError::Database("commit_processing_after: not implemented on PostgreSQL yet".into()))
    }

    async fn stats(&self) -> Result<StoreStats> {
        let _ = self;
        Err(StoreError::Database("stats: not implemented on PostgreSQL yet".into()))
    }

    async fn backlog(&self) -> Result<(u64, u64)> {
        let _ = self;
        Err(StoreError::Database("backlog: not implemented on PostgreSQL yet".into()))
    }

    async fn compact(&self) -> Result<()> {
        let _ = self;
        Err(StoreError::Database("compact: not implemented on PostgreSQL yet".into()))
    }
}
