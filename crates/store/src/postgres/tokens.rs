//! Tokens in the PostgreSQL backend.

use super::*;

#[allow(unused_variables)] // Until every method is written.
#[async_trait]
impl Tokens for PgStore {
    async fn create_token(&self, name: &str, role: &str, hash: &str) -> Result<i64> {
        let _ = self;
        Err(StoreError::Database("create_token: not implemented on PostgreSQL yet".into()))
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        let _ = self;
        Err(StoreError::Database("list_tokens: not implemented on PostgreSQL yet".into()))
    }

    async fn revoke_token(&self, token: TokenRef) -> Result<TokenRecord> {
        let _ = self;
        Err(StoreError::Database("revoke_token: not implemented on PostgreSQL yet".into()))
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        let _ = self;
        Err(StoreError::Database("token_by_hash: not implemented on PostgreSQL yet".into()))
    }

    async fn touch_token(&self, id: i64, at_ms: i64) -> Result<()> {
        let _ = self;
        Err(StoreError::Database("touch_token: not implemented on PostgreSQL yet".into()))
    }
}
