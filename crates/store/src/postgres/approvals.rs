//! Approvals in the PostgreSQL backend.

use super::*;

#[allow(unused_variables)] // Until every method is written.
#[async_trait]
impl Approvals for PgStore {
    async fn list_approvals(&self, filter: ApprovalFilter) -> Result<Vec<ApprovalRecord>> {
        let _ = self;
        Err(StoreError::Database("list_approvals: not implemented on PostgreSQL yet".into()))
    }

    async fn decide_approvals(
        &self,
        target: ApprovalTarget,
        decision: ApprovalDecision,
        by: &str,
        reason: Option<String>,
        now_ms: i64,
    ) -> Result<Vec<(i64, DecideResult)>> {
        let _ = self;
        Err(StoreError::Database("decide_approvals: not implemented on PostgreSQL yet".into()))
    }

    async fn replace_approval_actions(&self, updates: Vec<(i64, String)>) -> Result<usize> {
        let _ = self;
        Err(StoreError::Database("replace_approval_actions: not implemented on PostgreSQL yet".into()))
    }

    async fn store_generated_copy(&self, fill: CopyFill) -> Result<CopyStored> {
        let _ = self;
        Err(StoreError::Database("store_generated_copy: not implemented on PostgreSQL yet".into()))
    }

    async fn llm_usage(&self, month: &str) -> Result<LlmUsage> {
        let _ = self;
        Err(StoreError::Database("llm_usage: not implemented on PostgreSQL yet".into()))
    }

    async fn approvals_awaiting_copy(&self, limit: usize) -> Result<Vec<ApprovalRecord>> {
        let _ = self;
        Err(StoreError::Database("approvals_awaiting_copy: not implemented on PostgreSQL yet".into()))
    }

    async fn expire_approvals(&self, now_ms: i64) -> Result<usize> {
        let _ = self;
        Err(StoreError::Database("expire_approvals: not implemented on PostgreSQL yet".into()))
    }

    async fn flow_decisions(&self, flow: &str, since_ms: i64, until_ms: i64) -> Result<Vec<FlowDecision>> {
        let _ = self;
        Err(StoreError::Database("flow_decisions: not implemented on PostgreSQL yet".into()))
    }

    async fn approval_count(&self, flow: &str) -> Result<u64> {
        let _ = self;
        Err(StoreError::Database("approval_count: not implemented on PostgreSQL yet".into()))
    }
}
