//! CustomerStates in the PostgreSQL backend.

use super::*;

/// A `customers` row read as (customer_id, email, state).
fn stored_state(r: &PgRow) -> Result<StoredState> {
    Ok(StoredState {
        customer: parse_customer(&r.try_get::<String, _>(0)?)?,
        email: r.try_get(1)?,
        state: r.try_get(2)?,
    })
}

impl PgStore {
    /// A page of `customers` rows in key order after `after`, those matching `filter` (a condition followed
    /// by `AND`, or nothing).
    async fn scan_customers(
        &self,
        filter: &'static str,
        after: Option<CustomerId>,
        limit: usize,
    ) -> Result<Vec<StoredState>> {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT customer_id, email, state FROM customers WHERE {filter} customer_id > $1
             ORDER BY customer_id LIMIT $2"
        )))
        .bind(after.map(|c| c.to_string()).unwrap_or_default())
        .bind(i64::try_from(limit).unwrap_or(i64::MAX))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(stored_state).collect()
    }
}

/// Upserts customer states (as bytes, so no longer text), emails trimmed and lowercased, in `tx`. Of
/// several states of one customer the last one stands, as if written one after the other.
pub(crate) async fn upsert_states(tx: &mut Tx, states: &[StoredState], now_ms: i64) -> Result<()> {
    let mut last: std::collections::HashMap<String, usize> = std::collections::HashMap::new();
    for (i, s) in states.iter().enumerate() {
        last.insert(s.customer.to_string(), i);
    }
    let mut ids = Vec::with_capacity(last.len());
    let mut emails = Vec::with_capacity(last.len());
    let mut bodies = Vec::with_capacity(last.len());
    for (i, s) in states.iter().enumerate() {
        let id = s.customer.to_string();
        if last.get(&id) != Some(&i) {
            continue;
        }
        ids.push(id);
        emails.push(s.email.as_ref().map(|e| e.trim().to_lowercase()));
        bodies.push(s.state.as_slice());
    }
    if ids.is_empty() {
        return Ok(());
    }
    sqlx::query(
        "INSERT INTO customers (customer_id, email, state, is_text, updated_at)
         SELECT id, email, state, FALSE, $4 FROM UNNEST($1::text[], $2::text[], $3::bytea[]) AS u(id, email, state)
         ON CONFLICT (customer_id) DO UPDATE SET state = excluded.state, is_text = FALSE,
             updated_at = excluded.updated_at, email = excluded.email",
    )
    .bind(ids)
    .bind(emails)
    .bind(bodies)
    .bind(now_ms)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

#[async_trait]
impl CustomerStates for PgStore {
    async fn load_states(&self, customers: &[CustomerId]) -> Result<Vec<StoredState>> {
        if customers.is_empty() {
            return Ok(Vec::new());
        }
        let ids: Vec<String> = customers.iter().map(|c| c.to_string()).collect();
        let rows = sqlx::query(
            "SELECT customer_id, email, state FROM customers WHERE customer_id = ANY($1::text[])",
        )
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?;
        let mut found: std::collections::HashMap<String, StoredState> = std::collections::HashMap::new();
        for r in &rows {
            found.insert(r.try_get::<String, _>(0)?, stored_state(r)?);
        }
        // In the order asked for, as the embedded backend answers.
        Ok(ids.iter().filter_map(|id| found.get(id).cloned()).collect())
    }

    async fn scan_states(&self, after: Option<CustomerId>, limit: usize) -> Result<Vec<StoredState>> {
        self.scan_customers("", after, limit).await
    }

    async fn scan_text_states(&self, after: Option<CustomerId>, limit: usize) -> Result<Vec<StoredState>> {
        self.scan_customers("is_text AND", after, limit).await
    }

    async fn put_states(&self, states: Vec<StoredState>) -> Result<()> {
        let mut tx = self.begin().await?;
        upsert_states(&mut tx, &states, now_ms()).await?;
        tx.commit().await?;
        Ok(())
    }
}
