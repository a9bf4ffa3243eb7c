//! ModelRegistry in the SQLite backend.

use super::*;

#[async_trait]
impl ModelRegistry for SqliteStore {
    async fn import_transactions(&self, rows: Vec<ImportedTransaction>) -> Result<usize> {
        self.write(move |tx| {
            let mut n = 0;
            {
                let mut st = tx.prepare_cached(
                    "INSERT OR IGNORE INTO transactions (customer_id, order_id, day, amount, source) VALUES (?1, ?2, ?3, ?4, ?5)",
                )?;
                for r in &rows {
                    n += st.execute(params![r.customer_id, r.order_id, r.day, r.amount, r.source])?;
                }
            }
            Ok(n)
        })
        .await
    }

    async fn transactions(&self) -> Result<Vec<ImportedTransaction>> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT customer_id, order_id, day, amount, source FROM transactions ORDER BY customer_id, day, order_id",
            )?;
            let rows = st.query_map([], transaction_row)?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn save_model_version(&self, v: ModelVersion) -> Result<()> {
        self.write(move |c| {
            c.execute(
                "INSERT INTO model_versions (id, family, created_at, active, body) VALUES (?1, ?2, ?3, 0, ?4)",
                params![v.id, v.family, v.created_at_ms, serde_json::to_string(&v.body)?],
            )?;
            Ok(())
        })
        .await
    }

    async fn model_versions(&self) -> Result<Vec<ModelVersion>> {
        self.read(|c| {
            let mut st = c.prepare(
                "SELECT id, family, created_at, active, body FROM model_versions ORDER BY created_at DESC, id DESC",
            )?;
            let rows = st.query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get(1)?, r.get(2)?, r.get::<_, i64>(3)? != 0, r.get::<_, String>(4)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (id, family, created_at_ms, active, body) = row?;
                out.push(ModelVersion { id, family, created_at_ms, active, body: serde_json::from_str(&body)? });
            }
            Ok(out)
        })
        .await
    }

    async fn activate_model_version(&self, id: &str) -> Result<()> {
        let id = id.to_string();
        self.write(move |tx| {
            let family: Option<String> = tx
                .query_row("SELECT family FROM model_versions WHERE id = ?1", [&id], |r| r.get(0))
                .optional()?;
            let Some(family) = family else {
                return Err(StoreError::NotFound(format!("model version {id}")));
            };
            let kind = crate::types::model_kind(&family).to_string();
            // Only the versions of the same kind give way.
            let mut families: Vec<String> = Vec::new();
            {
                let mut st = tx.prepare("SELECT DISTINCT family FROM model_versions")?;
                for f in st.query_map([], |r| r.get::<_, String>(0))? {
                    let f = f?;
                    if crate::types::model_kind(&f) == kind {
                        families.push(f);
                    }
                }
            }
            for f in families {
                tx.execute("UPDATE model_versions SET active = (id = ?1) WHERE family = ?2", params![id, f])?;
            }
            Ok(())
        })
        .await
    }

    async fn products(&self, ids: Option<Vec<String>>) -> Result<Vec<StoredProduct>> {
        self.read(move |c| {
            let row = |r: &rusqlite::Row<'_>| {
                Ok(StoredProduct {
                    id: r.get(0)?,
                    source: r.get(1)?,
                    updated_at_ms: r.get(2)?,
                    record: r.get(3)?,
                })
            };
            let mut out = Vec::new();
            match ids {
                None => {
                    let mut st =
                        c.prepare_cached("SELECT id, source, updated_at, record FROM products ORDER BY id")?;
                    for p in st.query_map([], row)? {
                        out.push(p?);
                    }
                }
                Some(mut ids) => {
                    ids.sort();
                    ids.dedup();
                    let mut st = c.prepare_cached(
                        "SELECT id, source, updated_at, record FROM products WHERE id = ?1",
                    )?;
                    for id in &ids {
                        if let Some(p) = st.query_map([id], row)?.next() {
                            out.push(p?);
                        }
                    }
                }
            }
            Ok(out)
        })
        .await
    }
}
