//! Outbox in the PostgreSQL backend.

use super::*;

#[allow(unused_variables)] // Until every method is written.
#[async_trait]
impl Outbox for PgStore {
    async fn due_outbox(&self, now_ms: i64, limit: usize) -> Result<Vec<OutboxItem>> {
        let _ = self;
        Err(StoreError::Database("due_outbox: not implemented on PostgreSQL yet".into()))
    }

    async fn due_outbox_for(&self, destination: &str, now_ms: i64, limit: usize) -> Result<Vec<OutboxItem>> {
        let _ = self;
        Err(StoreError::Database("due_outbox_for: not implemented on PostgreSQL yet".into()))
    }

    async fn pending_for(&self, destination: &str) -> Result<u64> {
        let _ = self;
        Err(StoreError::Database("pending_for: not implemented on PostgreSQL yet".into()))
    }

    async fn pending_destinations(&self) -> Result<Vec<String>> {
        let _ = self;
        Err(StoreError::Database("pending_destinations: not implemented on PostgreSQL yet".into()))
    }

    async fn push_run(&self, destination: &str) -> Result<Option<PushRun>> {
        let _ = self;
        Err(StoreError::Database("push_run: not implemented on PostgreSQL yet".into()))
    }

    async fn save_push_run(&self, run: PushRun) -> Result<()> {
        let _ = self;
        Err(StoreError::Database("save_push_run: not implemented on PostgreSQL yet".into()))
    }

    async fn record_attempts(&self, attempts: Vec<AttemptRecord>) -> Result<()> {
        let _ = self;
        Err(StoreError::Database("record_attempts: not implemented on PostgreSQL yet".into()))
    }

    async fn requeue_dead_letters(&self, filter: DeadLetterFilter) -> Result<usize> {
        let _ = self;
        Err(StoreError::Database("requeue_dead_letters: not implemented on PostgreSQL yet".into()))
    }

    async fn dead_letters(
        &self,
        filter: DeadLetterFilter,
        before_id: Option<i64>,
        limit: usize,
    ) -> Result<Vec<DeadLetterItem>> {
        let _ = self;
        Err(StoreError::Database("dead_letters: not implemented on PostgreSQL yet".into()))
    }
}
