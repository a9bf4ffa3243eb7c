//! CustomerStates in the PostgreSQL backend.

use super::*;

#[allow(unused_variables)] // Until every method is written.
#[async_trait]
impl CustomerStates for PgStore {
    async fn load_states(&self, customers: &[CustomerId]) -> Result<Vec<StoredState>> {
        let _ = self;
        Err(StoreError::Database("load_states: not implemented on PostgreSQL yet".into()))
    }

    async fn scan_states(&self, after: Option<CustomerId>, limit: usize) -> Result<Vec<StoredState>> {
        let _ = self;
        Err(StoreError::Database("scan_states: not implemented on PostgreSQL yet".into()))
    }

    async fn scan_text_states(&self, after: Option<CustomerId>, limit: usize) -> Result<Vec<StoredState>> {
        let _ = self;
        Err(StoreError::Database("scan_text_states: not implemented on PostgreSQL yet".into()))
    }

    async fn put_states(&self, states: Vec<StoredState>) -> Result<()> {
        let _ = self;
        Err(StoreError::Database("put_states: not implemented on PostgreSQL yet".into()))
    }
}
