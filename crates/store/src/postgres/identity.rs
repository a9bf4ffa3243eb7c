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

    async fn resolve_with_states(
        &self,
        aliases: &[String],
        customers: &[CustomerId],
    ) -> Result<(Vec<AliasRecord>, Vec<StoredState>)> {
        if aliases.is_empty() && customers.is_empty() {
            return Ok((Vec::new(), Vec::new()));
        }
        let ids: Vec<String> = customers.iter().map(ToString::to_string).collect();
        // One snapshot for both: the aliases found, then the states of the customers asked for and of those
        // the aliases point at (one array, so the states are read by their key's index).
        let rows = sqlx::query(
            "WITH a AS MATERIALIZED (
                 SELECT alias, customer_id, created_at, trace_id FROM aliases WHERE alias = ANY($1::text[])
             )
             SELECT alias, customer_id, created_at, trace_id, FALSE, NULL::text, NULL::bytea FROM a
             UNION ALL
             SELECT NULL, c.customer_id, NULL, NULL, TRUE, c.email, c.state FROM customers c
             WHERE c.customer_id = ANY($2::text[] || ARRAY(SELECT customer_id FROM a))",
        )
        .bind(aliases)
        .bind(&ids)
        .fetch_all(&self.pool)
        .await?;
        // `= ANY` matches each state once, however often its id is in the array.
        let mut found = std::collections::HashMap::new();
        let mut states = Vec::new();
        for r in &rows {
            if r.try_get::<bool, _>(4)? {
                states.push(StoredState {
                    customer: parse_customer(&r.try_get::<String, _>(1)?)?,
                    email: r.try_get(5)?,
                    state: r.try_get(6)?,
                });
            } else {
                let a = alias_record(r)?;
                found.insert(a.alias.clone(), a);
            }
        }
        // In the order asked for (once per time asked), as `resolve_aliases` answers.
        Ok((aliases.iter().filter_map(|a| found.get(a).cloned()).collect(), states))
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
