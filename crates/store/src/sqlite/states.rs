//! CustomerStates in the SQLite backend.

use super::*;

#[async_trait]
impl CustomerStates for SqliteStore {
    async fn load_states(&self, customers: &[CustomerId]) -> Result<Vec<StoredState>> {
        let ids: Vec<String> = customers.iter().map(|c| c.to_string()).collect();
        self.read(move |c| {
            let mut st = c.prepare_cached("SELECT email, state FROM customers WHERE customer_id = ?1")?;
            let mut out = Vec::new();
            for id in ids {
                if let Some((email, state)) =
                    st.query_row([&id], |r| Ok((r.get(0)?, state_bytes(r.get_ref(1)?)?))).optional()?
                {
                    let customer =
                        id.parse().map_err(|_| StoreError::Corrupt(format!("customer id {id}")))?;
                    out.push(StoredState { customer, email, state });
                }
            }
            Ok(out)
        })
        .await
    }

    async fn scan_states(&self, after: Option<CustomerId>, limit: usize) -> Result<Vec<StoredState>> {
        self.scan_customers("customers", "", after, limit).await
    }

    async fn scan_text_states(&self, after: Option<CustomerId>, limit: usize) -> Result<Vec<StoredState>> {
        self.scan_customers(
            "customers INDEXED BY customers_text_state",
            "typeof(state) = 'text' AND",
            after,
            limit,
        )
        .await
    }

    async fn put_states(&self, states: Vec<StoredState>) -> Result<()> {
        self.commit_processing(vec![ProcessOutcome { states, ..Default::default() }]).await
    }
}
