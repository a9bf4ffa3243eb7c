//! Tokens in the PostgreSQL backend.

use super::*;

/// The columns [`token_record`] reads, in order (never the hash).
const TOKEN_COLUMNS: &str = "id, name, role, created_at, revoked_at, last_used_at";

fn token_record(r: &PgRow) -> Result<TokenRecord> {
    Ok(TokenRecord {
        id: r.try_get(0)?,
        name: r.try_get(1)?,
        role: r.try_get(2)?,
        created_at_ms: r.try_get(3)?,
        revoked_at_ms: r.try_get(4)?,
        last_used_at_ms: r.try_get(5)?,
    })
}

fn name_taken(name: &str, revoked: bool) -> StoreError {
    if revoked {
        StoreError::Conflict(format!(
            "a token named `{name}` existed and was revoked; names are not reused, so the audit \
             trail's attributions stay unambiguous: choose another name"
        ))
    } else {
        StoreError::Conflict(format!("a token named `{name}` already exists"))
    }
}

#[async_trait]
impl Tokens for PgStore {
    async fn create_token(&self, name: &str, role: &str, hash: &str) -> Result<i64> {
        let mut tx = self.begin().await?;
        let taken: Option<Option<i64>> =
            sqlx::query_scalar("SELECT revoked_at FROM api_tokens WHERE name = $1")
                .bind(name)
                .fetch_optional(&mut *tx)
                .await?;
        if let Some(revoked_at) = taken {
            return Err(name_taken(name, revoked_at.is_some()));
        }
        // Another node may take the name between the check and the insert: the unique constraint decides.
        let id: i64 = sqlx::query_scalar(
            "INSERT INTO api_tokens (name, role, token_hash, created_at) VALUES ($1, $2, $3, $4) RETURNING id",
        )
        .bind(name)
        .bind(role)
        .bind(hash)
        .bind(now_ms())
        .fetch_one(&mut *tx)
        .await
        .map_err(|e| match &e {
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                if db.constraint() == Some("api_tokens_name_key") {
                    name_taken(name, false)
                } else {
                    StoreError::Conflict("a token with the same hash exists; generate another token".into())
                }
            }
            _ => e.into(),
        })?;
        tx.commit().await?;
        Ok(id)
    }

    async fn list_tokens(&self) -> Result<Vec<TokenRecord>> {
        let rows =
            sqlx::query(sqlx::AssertSqlSafe(format!("SELECT {TOKEN_COLUMNS} FROM api_tokens ORDER BY id")))
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(token_record).collect()
    }

    async fn revoke_token(&self, token: TokenRef) -> Result<TokenRecord> {
        let mut tx = self.begin().await?;
        let now = now_ms();
        // The first revocation's time stands.
        let row = match &token {
            TokenRef::Name(n) => {
                sqlx::query("UPDATE api_tokens SET revoked_at = $2 WHERE name = $1 AND revoked_at IS NULL")
                    .bind(n)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE name = $1"
                )))
                .bind(n)
                .fetch_optional(&mut *tx)
                .await?
            }
            TokenRef::Id(id) => {
                sqlx::query("UPDATE api_tokens SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                    .bind(id)
                    .bind(now)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query(sqlx::AssertSqlSafe(format!(
                    "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE id = $1"
                )))
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?
            }
        };
        let record = row.as_ref().map(token_record).transpose()?;
        let record = record.ok_or_else(|| StoreError::NotFound(format!("no token {token}")))?;
        tx.commit().await?;
        Ok(record)
    }

    async fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>> {
        let row = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT {TOKEN_COLUMNS} FROM api_tokens WHERE token_hash = $1 AND revoked_at IS NULL"
        )))
        .bind(hash)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(token_record).transpose()
    }

    async fn touch_token(&self, id: i64, at_ms: i64) -> Result<()> {
        sqlx::query(
            "UPDATE api_tokens SET last_used_at = $2
             WHERE id = $1 AND (last_used_at IS NULL OR last_used_at <= $2 - 60000)",
        )
        .bind(id)
        .bind(at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
