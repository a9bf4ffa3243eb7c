//! Identity in the SQLite backend.

use super::*;

#[async_trait]
impl Identity for SqliteStore {
    async fn resolve_with_states(
        &self,
        aliases: &[String],
        customers: &[CustomerId],
    ) -> Result<(Vec<AliasRecord>, Vec<StoredState>)> {
        // One reader on one machine: two reads cost what one would.
        let found = self.resolve_aliases(aliases).await?;
        let mut ids: Vec<CustomerId> =
            customers.iter().cloned().chain(found.iter().map(|a| a.customer.clone())).collect();
        ids.sort();
        ids.dedup();
        let states = crate::CustomerStates::load_states(self, &ids).await?;
        Ok((found, states))
    }

    async fn resolve_aliases(&self, aliases: &[String]) -> Result<Vec<AliasRecord>> {
        let keys = aliases.to_vec();
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT alias, customer_id, created_at, trace_id FROM aliases WHERE alias = ?1",
            )?;
            let mut out = Vec::new();
            for k in keys {
                if let Some(r) = st.query_row([&k], alias_row).optional()? {
                    out.push(r?);
                }
            }
            Ok(out)
        })
        .await
    }

    async fn aliases_of(&self, customer: &CustomerId) -> Result<Vec<AliasRecord>> {
        let id = customer.to_string();
        self.read(move |c| {
            let mut st = c.prepare_cached(
                "SELECT alias, customer_id, created_at, trace_id FROM aliases WHERE customer_id = ?1 ORDER BY alias",
            )?;
            let rows = st.query_map([id], alias_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
            rows.into_iter().collect()
        })
        .await
    }

    async fn customer_by_email(&self, email: &str) -> Result<Option<CustomerId>> {
        let email = email.trim().to_lowercase();
        self.read(move |c| {
            let id: Option<String> = c
                .prepare_cached(
                    "SELECT customer_id FROM customers WHERE email = ?1 ORDER BY customer_id LIMIT 1",
                )?
                .query_row([email], |r| r.get(0))
                .optional()?;
            id.map(|s| s.parse().map_err(|_| StoreError::Corrupt(format!("customer id {s}")))).transpose()
        })
        .await
    }
}
