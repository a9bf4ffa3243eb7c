//! Identity in the PostgreSQL backend.

use super::*;

/// An `aliases` row read as (alias, customer_id, created_at, trace_id).
fn alias_record(r: &PgRow) -> Result<AliasRecord> {
    let customer: String = r.try_get(1)?;
    let trace: Option<String> = r.try_get(3)?;
    Ok(AliasRecord {
        alias: r.try_get(0)?,
        customer: customer
            .parse()
            .map_err(|_| StoreError::Corrupt(format!("alias customer id {customer}")))?,
        at_ms: r.try_get(2)?,
        trace_id: trace
            .map(|t| t.parse().map_err(|_| StoreError::Corrupt(format!("alias trace id {t}"))))
            .transpose()?,
    })
}

#[async_trait]
impl Identity for PgStore {
    async fn customer_by_email(&self, email: &str) -> Result<Option<CustomerId>> {
        let email = email.trim().to_lowercase();
        let id: Option<String> = sqlx::query_scalar(
            "SELECT customer_id FROM customers WHERE email = $1 ORDER BY customer_id LIMIT 1",
        )
        .bind(email)
        .fetch_optional(&self.pool)
        .await?;
        id.as_deref().map(parse_customer).transpose()
    }

    async fn resolve_aliases(&self, aliases: &[String]) -> Result<Vec<AliasRecord>> {
        if aliases.is_empty() {
            return Ok(Vec::new());
        }
        let rows = sqlx::query(
            "SELECT alias, customer_id, created_at, trace_id FROM aliases WHERE alias = ANY($1::text[])",
        )
        .bind(aliases)
        .fetch_all(&self.pool)
        .await?;
        let mut found = std::collections::HashMap::new();
        for r in &rows {
            let a = alias_record(r)?;
            found.insert(a.alias.clone(), a);
        }
        // In the order asked for (once per time asked), as the embedded backend answers.
        Ok(aliases.iter().filter_map(|a| found.get(a).cloned()).collect())
    }

    async fn aliases_of(&self, customer: &CustomerId) -> Result<Vec<AliasRecord>> {
        let rows = sqlx::query(
            "SELECT alias, customer_id, created_at, trace_id FROM aliases WHERE customer_id = $1 ORDER BY alias",
        )
        .bind(customer.to_string())
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(alias_record).collect()
    }
}
