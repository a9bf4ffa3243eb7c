//! Delivery partitions on PostgreSQL (runs when `NUDGE_TEST_POSTGRES_URL` is set, in a fresh schema): the
//! partition computed in SQL is `partition_of`'s, the count is the first one recorded, a lease is held by
//! one connection at a time and freed when given back or when its connection ends, and the due-items
//! query returns only the customers of the partitions asked for.

use nudge_store::conformance::{fresh_postgres, postgres_test_url};
use nudge_store::prelude::*;
use nudge_store::{Partitions, partition_of};

const FAR: i64 = i64::MAX / 2;

#[tokio::test]
async fn partitions_leases_and_the_share_of_due_items() {
    let Some(url) = postgres_test_url() else { return };
    let pg = fresh_postgres(&url, "nudge_p").await;

    // The same partition in SQL as in Rust, for keys of every shape.
    let keys: Vec<String> = (0..300)
        .map(|i| match i % 3 {
            0 => format!("shopify:{i}"),
            1 => format!("email:ünïcode{i}@example.org"),
            _ => format!("anon:{i:x}"),
        })
        .collect();
    let sql: Vec<i64> = sqlx::query_scalar(
        "SELECT ('x' || left(md5(k), 8))::bit(32)::bigint % 32 FROM UNNEST($1::text[]) WITH ORDINALITY AS u(k, n)
         ORDER BY n",
    )
    .bind(&keys)
    .fetch_all(pg.pool())
    .await
    .unwrap();
    let rust: Vec<i64> = keys.iter().map(|k| i64::from(partition_of(k, 32))).collect();
    assert_eq!(sql, rust);
    let mut seen: Vec<i64> = rust.clone();
    seen.sort_unstable();
    seen.dedup();
    assert_eq!(seen.len(), 32, "300 keys fall in every one of 32 partitions");

    // The first count recorded stays.
    assert_eq!(pg.recorded_partition_count().await.unwrap(), None);
    assert_eq!(pg.partition_count(16).await.unwrap(), 16);
    assert_eq!(pg.partition_count(64).await.unwrap(), 16);
    pg.set_partition_count(64).await.unwrap();
    assert_eq!(pg.recorded_partition_count().await.unwrap(), Some(64));

    // One holder per partition; given back or disconnected, it is free again.
    let mut a = pg.partition_leases().await.unwrap();
    let mut b = pg.partition_leases().await.unwrap();
    assert!(a.try_take(3).await.unwrap());
    assert!(!b.try_take(3).await.unwrap());
    assert!(b.try_take(4).await.unwrap());
    a.give_back(3).await.unwrap();
    assert!(b.try_take(3).await.unwrap());
    b.release_all().await;
    assert!(a.try_take(3).await.unwrap() && a.try_take(4).await.unwrap());
    a.release_all().await;

    // Due items of a share: only its customers, each customer's oldest first.
    let customers: Vec<String> = (0..40).map(|i| format!("shopify:{i}")).collect();
    for c in &customers {
        enqueue(&pg, c).await;
    }
    let share = Partitions { of: 4, parts: vec![1, 2] };
    let due = pg.due_outbox_in("klaviyo", FAR, 1000, &share).await.unwrap();
    let expected = customers.iter().filter(|c| share.contains(c)).count();
    assert!(expected > 0 && expected < customers.len());
    assert_eq!(due.len(), expected);
    assert!(due.iter().all(|i| share.contains(&i.customer.to_string())));
    let all = pg.due_outbox_for("klaviyo", FAR, 1000).await.unwrap();
    assert_eq!(all.len(), customers.len());
    let none = pg.due_outbox_in("klaviyo", FAR, 1000, &Partitions { of: 4, parts: vec![] }).await.unwrap();
    assert!(none.is_empty());
    pg.drop_schema().await.unwrap();
}

/// One outbox item for `customer` (as the pipeline's processing commit enqueues).
async fn enqueue(pg: &nudge_store::postgres::PgStore, customer: &str) {
    let t = nudge_model::TraceId::new();
    pg.commit_processing(vec![nudge_store::ProcessOutcome {
        trace_id: Some(t),
        outbox: vec![nudge_store::NewOutboxItem {
            trace_id: t,
            customer: customer.parse().expect("valid id"),
            destination: "klaviyo".into(),
            action_json: "{}".into(),
            origin_us: 0,
        }],
        ..Default::default()
    }])
    .await
    .unwrap();
}
