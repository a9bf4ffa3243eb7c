//! Tokens in the SQLite backend.

use super::*;

#[async_trait]
impl Tokens for SqliteStore {
    async fn create_token(&self, name: &str, role: &str, hash: &str) -> Result<i64> {
        let (name, role, hash) = (name.to_string(), role.to_string(), hash.to_string());
        self.write(move |tx| {
            // The writer runs one job at a time: nothing can take the name between this check and the insert.
            let taken: Option<Option<i64>> = tx
                .prepare_cached("SELECT revoked_at FROM api_tokens WHERE name = ?1")?
                .query_row([&name], |r| r.get(0))
                .optional()?;
            match taken {
                Some(None) => {
                    return Err(StoreError::Conflict(format!("a token named `{name}` already exists")));
                }
                Some(Some(_)) => {
                    return Err(StoreError::Conflict(format!(
                        "a token named `{name}` existed and was revoked; names are not reused, so the audit \
                         trail's attributions stay unambiguous: choose another name"
                    )));
                }
                None => {}
            }
            let now = ts_to_ms(time::OffsetDateTime::now_utc());
            tx.prepare_cached(
                "INSERT INTO api_tokens (name, role, token_hash, created_at) VALUES (?1, ?2, ?3, ?4)",
            )?
            .execute(params![name, role, hash, now])
            .map_err(|e| match e {
                rusqlite::Error::SqliteFailure(f, _)
                    if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                {
                    StoreError::Conflict("a token with the same hash exists; generate another token".into())
                }
                e => e.into(),
            })?;
            Ok(tx.last_insert_rowid())
        })
        .await
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        self.read(|c| {
            let mut st = c.prepare_cached(&format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY id"))?;
            Ok(st.query_map([], token_row)?.collect::<rusqlite::Result<Vec<_>>>()?)
        })
        .await
    }

    async fn revoke_token(&self, token: TokenRef) -> Result<TokenRecord> {
        self.write(move |tx| {
            let (by, key) = match &token {
                TokenRef::Name(n) => ("name", rusqlite::types::Value::Text(n.clone())),
                TokenRef::Id(id) => ("id", rusqlite::types::Value::Integer(*id)),
            };
            let now = ts_to_ms(time::OffsetDateTime::now_utc());
            tx.prepare_cached(&format!(
                "UPDATE api_tokens SET revoked_at = ?2 WHERE {by} = ?1 AND revoked_at IS NULL"
            ))?
            .execute(params![key, now])?;
            tx.prepare_cached(&format!("SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE {by} = ?1"))?
                .query_row([key], token_row)
                .optional()?
                .ok_or_else(|| StoreError::NotFound(format!("no token {token}")))
        })
        .await
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        let hash = hash.to_string();
        self.read(move |c| {
            Ok(c.prepare_cached(&format!(
                "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = ?1 AND revoked_at IS NULL"
            ))?
            .query_row([hash], token_row)
            .optional()?)
        })
        .await
    }

    async fn touch_token(&self, id: i64, at_ms: i64) -> Result<()> {
        self.write(move |tx| {
            tx.prepare_cached(
                "UPDATE api_tokens SET last_used_at = ?2
                 WHERE id = ?1 AND (last_used_at IS NULL OR last_used_at <= ?2 - 60000)",
            )?
            .execute(params![id, at_ms])?;
            Ok(())
        })
        .await
    }
}
