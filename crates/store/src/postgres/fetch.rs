//! FetchJobs in the PostgreSQL backend.

use super::*;

#[allow(unused_variables)] // Until every method is written.
#[async_trait]
impl FetchJobs for PgStore {
    async fn due_fetch_jobs(&self, now_ms: i64, limit: usize) -> Result<Vec<FetchJobRecord>> {
        let _ = self;
        Err(StoreError::Database("due_fetch_jobs: not implemented on PostgreSQL yet".into()))
    }

    async fn settle_fetch_job(&self, s: FetchSettlement) -> Result<()> {
        let _ = self;
        Err(StoreError::Database("settle_fetch_job: not implemented on PostgreSQL yet".into()))
    }

    async fn requeue_fetch_jobs(&self, trace: Option<TraceId>) -> Result<usize> {
        let _ = self;
        Err(StoreError::Database("requeue_fetch_jobs: not implemented on PostgreSQL yet".into()))
    }

    async fn fetch_jobs_of(&self, trace: TraceId) -> Result<Vec<FetchJobRecord>> {
        let _ = self;
        Err(StoreError::Database("fetch_jobs_of: not implemented on PostgreSQL yet".into()))
    }
}
