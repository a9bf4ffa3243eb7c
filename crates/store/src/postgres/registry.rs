//! ModelRegistry in the PostgreSQL backend.

use super::*;

#[allow(unused_variables)] // Until every method is written.
#[async_trait]
impl ModelRegistry for PgStore {
    async fn import_transactions(&self, rows: Vec<ImportedTransaction>) -> Result<usize> {
        let _ = self;
        Err(StoreError::Database("import_transactions: not implemented on PostgreSQL yet".into()))
    }

    async fn transactions(&self) -> Result<Vec<ImportedTransaction>> {
        let _ = self;
        Err(StoreError::Database("transactions: not implemented on PostgreSQL yet".into()))
    }

    async fn save_model_version(&self, v: ModelVersion) -> Result<()> {
        let _ = self;
        Err(StoreError::Database("save_model_version: not implemented on PostgreSQL yet".into()))
    }

    async fn model_versions(&self) -> Result<Vec<ModelVersion>> {
        let _ = self;
        Err(StoreError::Database("model_versions: not implemented on PostgreSQL yet".into()))
    }

    async fn activate_model_version(&self, id: &str) -> Result<()> {
        let _ = self;
        Err(StoreError::Database("activate_model_version: not implemented on PostgreSQL yet".into()))
    }

    async fn products(&self, ids: Option<Vec<String>>) -> Result<Vec<StoredProduct>> {
        let _ = self;
        Err(StoreError::Database("products: not implemented on PostgreSQL yet".into()))
    }
}
