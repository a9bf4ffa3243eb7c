//! ModelRegistry in the PostgreSQL backend.
//!
//! Text keys are ordered with `COLLATE "C"` (byte order), as the embedded backend orders them.

use super::*;

/// Rows per `INSERT … SELECT FROM UNNEST` of an import (imports can be millions of rows).
const IMPORT_BATCH: usize = 10_000;

/// The advisory lock activations take, so two nodes activating versions of one kind at once leave one active.
const ACTIVATION_LOCK: i64 = 0x006e_7564_6d76;

#[async_trait]
impl ModelRegistry for PgStore {
    async fn import_transactions(&self, rows: Vec<ImportedTransaction>) -> Result<usize> {
        let mut tx = self.begin().await?;
        let mut n = 0u64;
        for chunk in rows.chunks(IMPORT_BATCH) {
            let mut customers = Vec::with_capacity(chunk.len());
            let mut orders = Vec::with_capacity(chunk.len());
            let mut days = Vec::with_capacity(chunk.len());
            let mut amounts = Vec::with_capacity(chunk.len());
            let mut sources = Vec::with_capacity(chunk.len());
            for r in chunk {
                customers.push(r.customer_id.as_str());
                orders.push(r.order_id.as_str());
                days.push(i64::from(r.day));
                amounts.push(r.amount.as_str());
                sources.push(r.source.as_str());
            }
            n += sqlx::query(
                "INSERT INTO transactions (customer_id, order_id, day, amount, source)
                 SELECT * FROM UNNEST($1::text[], $2::text[], $3::bigint[], $4::text[], $5::text[])
                 ON CONFLICT (customer_id, order_id) DO NOTHING",
            )
            .bind(customers)
            .bind(orders)
            .bind(days)
            .bind(amounts)
            .bind(sources)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        }
        tx.commit().await?;
        Ok(n as usize)
    }

    async fn transactions(&self) -> Result<Vec<ImportedTransaction>> {
        let rows = sqlx::query(
            "SELECT customer_id, order_id, day, amount, source FROM transactions
             ORDER BY customer_id COLLATE \"C\", day, order_id COLLATE \"C\"",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(transaction).collect()
    }

    async fn save_model_version(&self, v: ModelVersion) -> Result<()> {
        sqlx::query(
            "INSERT INTO model_versions (id, family, created_at, active, body) VALUES ($1, $2, $3, FALSE, $4)",
        )
        .bind(&v.id)
        .bind(&v.family)
        .bind(v.created_at_ms)
        .bind(serde_json::to_string(&v.body)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn model_versions(&self) -> Result<Vec<ModelVersion>> {
        let rows = sqlx::query(
            "SELECT id, family, created_at, active, body FROM model_versions
             ORDER BY created_at DESC, id COLLATE \"C\" DESC",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| {
                let body: String = r.try_get(4)?;
                Ok(ModelVersion {
                    id: r.try_get(0)?,
                    family: r.try_get(1)?,
                    created_at_ms: r.try_get(2)?,
                    active: r.try_get(3)?,
                    body: serde_json::from_str(&body)?,
                })
            })
            .collect()
    }

    async fn activate_model_version(&self, id: &str) -> Result<()> {
        let mut tx = self.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock($1)").bind(ACTIVATION_LOCK).execute(&mut *tx).await?;
        let family: Option<String> = sqlx::query_scalar("SELECT family FROM model_versions WHERE id = $1")
            .bind(id)
            .fetch_optional(&mut *tx)
            .await?;
        let Some(family) = family else {
            return Err(StoreError::NotFound(format!("model version {id}")));
        };
        let kind = crate::types::model_kind(&family);
        // Only the versions of the same kind give way.
        let families: Vec<String> = sqlx::query_scalar("SELECT DISTINCT family FROM model_versions")
            .fetch_all(&mut *tx)
            .await?
            .into_iter()
            .filter(|f: &String| crate::types::model_kind(f) == kind)
            .collect();
        sqlx::query(
            "UPDATE model_versions SET active = (id = $1)
             WHERE family = ANY($2::text[]) AND active IS DISTINCT FROM (id = $1)",
        )
        .bind(id)
        .bind(families)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn products(&self, ids: Option<Vec<String>>) -> Result<Vec<StoredProduct>> {
        let rows = match ids {
            None => {
                sqlx::query("SELECT id, source, updated_at, record FROM products ORDER BY id COLLATE \"C\"")
                    .fetch_all(&self.pool)
                    .await?
            }
            Some(mut ids) => {
                ids.sort();
                ids.dedup();
                if ids.is_empty() {
                    return Ok(Vec::new());
                }
                sqlx::query(
                    "SELECT id, source, updated_at, record FROM products WHERE id = ANY($1::text[])
                     ORDER BY id COLLATE \"C\"",
                )
                .bind(ids)
                .fetch_all(&self.pool)
                .await?
            }
        };
        rows.iter()
            .map(|r| {
                Ok(StoredProduct {
                    id: r.try_get(0)?,
                    source: r.try_get(1)?,
                    updated_at_ms: r.try_get(2)?,
                    record: r.try_get(3)?,
                })
            })
            .collect()
    }
}

/// An imported transaction from a row of `SELECT customer_id, order_id, day, amount, source FROM transactions`.
pub(crate) fn transaction(r: &PgRow) -> Result<ImportedTransaction> {
    let day: i64 = r.try_get(2)?;
    Ok(ImportedTransaction {
        customer_id: r.try_get(0)?,
        order_id: r.try_get(1)?,
        day: i32::try_from(day).map_err(|_| StoreError::Corrupt(format!("transaction day {day}")))?,
        amount: r.try_get(3)?,
        source: r.try_get(4)?,
    })
}
