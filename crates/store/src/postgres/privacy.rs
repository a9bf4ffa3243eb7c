//! Privacy in the PostgreSQL backend.

use super::*;

#[allow(unused_variables)] // Until every method is written.
#[async_trait]
impl Privacy for PgStore {
    async fn submit_privacy_job(&self, job: NewPrivacyJob) -> Result<i64> {
        let _ = self;
        Err(StoreError::Database("submit_privacy_job: not implemented on PostgreSQL yet".into()))
    }

    async fn preview_erasure(
        &self,
        customers: Vec<CustomerId>,
        email: Option<String>,
    ) -> Result<ErasurePreview> {
        let _ = self;
        Err(StoreError::Database("preview_erasure: not implemented on PostgreSQL yet".into()))
    }

    async fn privacy_jobs(&self, pending_only: bool, pseudonym: Option<String>) -> Result<Vec<PrivacyJob>> {
        let _ = self;
        Err(StoreError::Database("privacy_jobs: not implemented on PostgreSQL yet".into()))
    }

    async fn erase_from_log(&self, job_id: i64) -> Result<u64> {
        let _ = self;
        Err(StoreError::Database("erase_from_log: not implemented on PostgreSQL yet".into()))
    }

    async fn record_erasure_destination(&self, job_id: i64, d: ErasureDestination) -> Result<()> {
        let _ = self;
        Err(StoreError::Database("record_erasure_destination: not implemented on PostgreSQL yet".into()))
    }

    async fn finish_privacy_job(&self, job_id: i64, summary: serde_json::Value) -> Result<()> {
        let _ = self;
        Err(StoreError::Database("finish_privacy_job: not implemented on PostgreSQL yet".into()))
    }

    async fn export_customer(&self, customers: Vec<CustomerId>) -> Result<CustomerExport> {
        let _ = self;
        Err(StoreError::Database("export_customer: not implemented on PostgreSQL yet".into()))
    }
}
