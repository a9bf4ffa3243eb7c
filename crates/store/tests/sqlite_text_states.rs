//! States stored as text (rows written before states were bytes) read back beside binary ones, and are
//! listed for rewriting until they are written again.

use nudge_model::CustomerId;
use nudge_store::StoredState;
use nudge_store::prelude::*;
use nudge_store::sqlite::{Durability, SqliteStore};

fn cust(i: u32) -> CustomerId {
    format!("shopify:{i}").parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_rows_read_back_and_are_listed_until_rewritten() {
    let dir = tempfile::tempdir().unwrap();
    let binary: Vec<u8> = vec![1, 0, 0xff, b'{', 0];
    {
        let s = SqliteStore::open(dir.path(), Durability::Normal).unwrap();
        s.put_states(vec![StoredState { customer: cust(2), email: None, state: binary.clone() }])
            .await
            .unwrap();
        assert!(s.scan_text_states(None, 10).await.unwrap().is_empty(), "states written now are bytes");
    }
    // Rows as an earlier version wrote them: the JSON as text.
    {
        let c = rusqlite::Connection::open(dir.path().join("nudge.db")).unwrap();
        c.busy_timeout(std::time::Duration::from_secs(10)).unwrap();
        for i in [1u32, 3, 4] {
            c.execute(
                "INSERT INTO customers (customer_id, email, state, updated_at) VALUES (?1, ?2, ?3, 0)",
                rusqlite::params![cust(i).to_string(), format!("c{i}@example.org"), format!("{{\"n\":{i}}}")],
            )
            .unwrap();
        }
        let kind: String = c
            .query_row("SELECT typeof(state) FROM customers WHERE customer_id = 'shopify:1'", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(kind, "text");
    }
    let s = SqliteStore::open(dir.path(), Durability::Normal).unwrap();
    let loaded = s.load_states(&[cust(1), cust(2)]).await.unwrap();
    assert_eq!(loaded[0].state, b"{\"n\":1}");
    assert_eq!(loaded[1].state, binary);
    let all = s.scan_states(None, 10).await.unwrap();
    assert_eq!(all.len(), 4);
    // The text rows alone, in key order, a page at a time.
    let page = s.scan_text_states(None, 2).await.unwrap();
    assert_eq!(page.iter().map(|p| p.customer.clone()).collect::<Vec<_>>(), vec![cust(1), cust(3)]);
    assert_eq!(page[1].email.as_deref(), Some("c3@example.org"));
    let rest = s.scan_text_states(Some(cust(3)), 2).await.unwrap();
    assert_eq!(rest.iter().map(|p| p.customer.clone()).collect::<Vec<_>>(), vec![cust(4)]);
    // Written again (as bytes), they are no longer listed, and read back as written.
    let rewritten: Vec<StoredState> = page
        .into_iter()
        .chain(rest)
        .map(|mut p| {
            p.state = vec![1, p.state.len() as u8];
            p
        })
        .collect();
    s.put_states(rewritten).await.unwrap();
    assert!(s.scan_text_states(None, 10).await.unwrap().is_empty());
    assert_eq!(s.load_states(&[cust(3)]).await.unwrap()[0].state, vec![1, 7]);
    assert_eq!(s.customer_by_email("c4@example.org").await.unwrap(), Some(cust(4)));
}
