//! Identity in the PostgreSQL backend.

use super::*;

#[allow(unused_variables)] // Until every method is written.
#[async_trait]
impl Identity for PgStore {
    async fn customer_by_email(&self, email: &str) -> Result<Option<CustomerId>> {
        let _ = self;
        Err(StoreError::Database("customer_by_email: not implemented on PostgreSQL yet".into()))
    }

    async fn resolve_aliases(&self, aliases: &[String]) -> Result<Vec<AliasRecord>> {
        let _ = self;
        Err(StoreError::Database("resolve_aliases: not implemented on PostgreSQL yet".into()))
    }

    async fn aliases_of(&self, customer: &CustomerId) -> Result<Vec<AliasRecord>> {
        let _ = self;
        Err(StoreError::Database("aliases_of: not implemented on PostgreSQL yet".into()))
    }
}
