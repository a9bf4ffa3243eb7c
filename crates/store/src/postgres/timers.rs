//! Timers in the PostgreSQL backend.

use super::*;

#[allow(unused_variables)] // Until every method is written.
#[async_trait]
impl Timers for PgStore {
    async fn fire_due_timers(&self, now_ms: i64, limit: usize) -> Result<usize> {
        let _ = self;
        Err(StoreError::Database("fire_due_timers: not implemented on PostgreSQL yet".into()))
    }

    async fn schedule_runs(&self) -> Result<Vec<ScheduleRun>> {
        let _ = self;
        Err(StoreError::Database("schedule_runs: not implemented on PostgreSQL yet".into()))
    }

    async fn save_schedule_run(&self, run: ScheduleRun) -> Result<()> {
        let _ = self;
        Err(StoreError::Database("save_schedule_run: not implemented on PostgreSQL yet".into()))
    }

    async fn delete_schedule_run(&self, flow: &str) -> Result<()> {
        let _ = self;
        Err(StoreError::Database("delete_schedule_run: not implemented on PostgreSQL yet".into()))
    }
}
