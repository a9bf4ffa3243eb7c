//! Processing by partition on PostgreSQL (runs when `NUDGE_TEST_POSTGRES_URL` is set, in a fresh schema):
//! routes are written once and read back by partition in seq order; requeueing and a new partition count
//! clear them; a processing commit that carries the states it was computed from is refused when another
//! commit changed one of them meanwhile, or created one it read as absent, or pointed one of the ids it
//! resolved elsewhere, and then writes nothing.

use nudge_model::{CustomerId, TraceId};
use nudge_store::conformance::{fresh_postgres, postgres_test_url};
use nudge_store::{
    CommitResult, CustomerStates, DeliveryLog, DeliveryStatus, ExpectedState, Identity, NewAlias,
    NewDelivery, ProcessOutcome, Processing, StoreError, StoredState,
};

fn delivery(n: usize) -> NewDelivery {
    NewDelivery {
        trace_id: TraceId::new(),
        source: "shopify".into(),
        topic: "orders/create".into(),
        shop: Some("demo.myshopify.com".into()),
        webhook_id: Some(format!("w{n}")),
        event_id: None,
        received_at_ms: 1_000,
        headers_json: "{}".into(),
        body: format!("{{\"n\":{n}}}").into_bytes(),
        dedupe_keys: vec![format!("shopify:webhook:w{n}")],
        part: None,
    }
}

async fn commit(store: &nudge_store::postgres::PgStore, n: usize) -> i64 {
    match store.commit_delivery(delivery(n)).await.unwrap() {
        CommitResult::Committed { seq } => seq,
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn routes_are_written_once_and_read_by_partition_in_order() {
    let Some(url) = postgres_test_url() else { return };
    let store = fresh_postgres(&url, "nudge_rt").await;
    let mut seqs = Vec::new();
    for n in 0..6 {
        seqs.push(commit(&store, n).await);
    }
    let unrouted = store.unrouted_deliveries(100).await.unwrap();
    assert_eq!(unrouted.iter().map(|d| d.seq).collect::<Vec<_>>(), seqs);
    assert_eq!(store.pending_routes().await.unwrap(), (6, vec![]));

    // Alternate partitions 0 and 1; the last one stays unrouted.
    let routes: Vec<(i64, u32)> = seqs[..5].iter().enumerate().map(|(i, s)| (*s, (i % 2) as u32)).collect();
    assert_eq!(store.route_deliveries(&routes).await.unwrap(), 5);
    // Routed already: a second route changes nothing.
    assert_eq!(store.route_deliveries(&[(seqs[0], 1)]).await.unwrap(), 0);
    assert_eq!(
        store.unrouted_deliveries(100).await.unwrap().iter().map(|d| d.seq).collect::<Vec<_>>(),
        [seqs[5]]
    );
    let of = |parts: &[u32], in_flight: &[i64]| {
        let store = store.clone();
        let (parts, in_flight) = (parts.to_vec(), in_flight.to_vec());
        async move {
            store
                .pending_deliveries_in(&parts, &in_flight, 100)
                .await
                .unwrap()
                .iter()
                .map(|d| d.seq)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(of(&[0], &[]).await, [seqs[0], seqs[2], seqs[4]]);
    assert_eq!(of(&[1], &[]).await, [seqs[1], seqs[3]]);
    assert_eq!(of(&[0, 1], &[seqs[0], seqs[2]]).await, [seqs[1], seqs[3], seqs[4]]);
    assert_eq!(of(&[2], &[]).await, Vec::<i64>::new());
    assert_eq!(store.pending_routes().await.unwrap(), (1, vec![(0, 3), (1, 2)]));

    // Processed: no longer pending anywhere. Quarantined, then requeued: routed again.
    let mut done =
        ProcessOutcome { seq: seqs[0], status: Some(DeliveryStatus::Processed), ..Default::default() };
    done.trace_id = None;
    let quarantined = ProcessOutcome {
        seq: seqs[1],
        status: Some(DeliveryStatus::Quarantined),
        status_reason: Some("unreadable".into()),
        ..Default::default()
    };
    store.commit_processing(vec![done, quarantined]).await.unwrap();
    assert_eq!(of(&[0, 1], &[]).await, [seqs[2], seqs[3], seqs[4]]);
    assert_eq!(store.requeue_quarantined(None).await.unwrap(), 1);
    assert_eq!(
        store.unrouted_deliveries(100).await.unwrap().iter().map(|d| d.seq).collect::<Vec<_>>(),
        [seqs[1], seqs[5]]
    );

    // Acknowledged with its partition (the node knew the customer): never unrouted.
    let known = NewDelivery { part: Some(1), ..delivery(100) };
    let CommitResult::Committed { seq: routed } = store.commit_delivery(known).await.unwrap() else {
        panic!()
    };
    assert!(!store.unrouted_deliveries(100).await.unwrap().iter().any(|d| d.seq == routed));
    assert_eq!(of(&[1], &[seqs[3]]).await, [routed]);

    // A new partition count: every pending delivery is routed again.
    store.partition_count(2).await.unwrap();
    store.set_partition_count(4).await.unwrap();
    assert_eq!(store.unrouted_deliveries(100).await.unwrap().len(), 6);
    assert_eq!(of(&[0, 1], &[]).await, Vec::<i64>::new());
    store.drop_schema().await.unwrap();
}

fn state(customer: &CustomerId, body: &[u8]) -> StoredState {
    StoredState { customer: customer.clone(), email: None, state: body.to_vec() }
}

/// One delivery's outcome writing `customer`'s state as `body`, computed from `read` (what it read).
fn writes(seq: i64, customer: &CustomerId, body: &[u8], read: Option<&[u8]>) -> ProcessOutcome {
    ProcessOutcome {
        seq,
        status: Some(DeliveryStatus::Processed),
        states: vec![state(customer, body)],
        expected_states: vec![ExpectedState { customer: customer.clone(), state: read.map(<[u8]>::to_vec) }],
        ..Default::default()
    }
}

#[tokio::test]
async fn a_commit_is_refused_when_a_state_it_read_changed_meanwhile() {
    let Some(url) = postgres_test_url() else { return };
    let store = fresh_postgres(&url, "nudge_cas").await;
    let known: CustomerId = "shopify:1".parse().unwrap();
    let new: CustomerId = "shopify:2".parse().unwrap();
    let mut seqs = Vec::new();
    for n in 0..5 {
        seqs.push(commit(&store, n).await);
    }
    let stored = |c: &CustomerId| {
        let (store, c) = (store.clone(), c.clone());
        async move { store.load_states(&[c]).await.unwrap().into_iter().next().map(|s| s.state) }
    };

    // From nothing, then from what the first wrote.
    store.commit_processing(vec![writes(seqs[0], &known, b"v1", None)]).await.unwrap();
    store.commit_processing(vec![writes(seqs[1], &known, b"v2", Some(b"v1"))]).await.unwrap();
    assert_eq!(stored(&known).await.as_deref(), Some(&b"v2"[..]));

    // Computed from v1 (another node wrote v2 since): refused, and nothing of it is written.
    let stale = writes(seqs[2], &known, b"v3", Some(b"v1"));
    match store.commit_processing(vec![stale]).await {
        Err(StoreError::Conflict(why)) => assert!(why.contains("shopify:1"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(stored(&known).await.as_deref(), Some(&b"v2"[..]));
    assert_eq!(
        store.pending_deliveries(10).await.unwrap().iter().map(|d| d.seq).collect::<Vec<_>>(),
        &seqs[2..]
    );

    // Read as absent, but another node created it meanwhile: refused; the customer keeps that node's state.
    store.commit_processing(vec![writes(seqs[2], &new, b"theirs", None)]).await.unwrap();
    match store.commit_processing(vec![writes(seqs[3], &new, b"mine", None)]).await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("{other:?}"),
    }
    assert_eq!(stored(&new).await.as_deref(), Some(&b"theirs"[..]));

    // A removal computed from a stale state is refused too; one from the stored state goes through.
    let remove = |seq, read: &[u8]| ProcessOutcome {
        seq,
        status: Some(DeliveryStatus::Processed),
        deleted_states: vec![new.clone()],
        expected_states: vec![ExpectedState { customer: new.clone(), state: Some(read.to_vec()) }],
        ..Default::default()
    };
    assert!(matches!(
        store.commit_processing(vec![remove(seqs[3], b"old")]).await,
        Err(StoreError::Conflict(_))
    ));
    store.commit_processing(vec![remove(seqs[3], b"theirs")]).await.unwrap();
    assert_eq!(stored(&new).await, None);

    // Without expectations a commit is unconditional, as on a cluster whose leader processes.
    let plain = ProcessOutcome {
        seq: seqs[4],
        status: Some(DeliveryStatus::Processed),
        states: vec![state(&known, b"v9")],
        ..Default::default()
    };
    store.commit_processing(vec![plain]).await.unwrap();
    assert_eq!(stored(&known).await.as_deref(), Some(&b"v9"[..]));
    store.drop_schema().await.unwrap();
}

#[tokio::test]
async fn a_commit_is_refused_when_an_id_it_resolved_was_stitched_meanwhile() {
    let Some(url) = postgres_test_url() else { return };
    let store = fresh_postgres(&url, "nudge_cas_alias").await;
    let mut seqs = Vec::new();
    for n in 0..3 {
        seqs.push(commit(&store, n).await);
    }
    let (one, two): (CustomerId, CustomerId) = ("shopify:1".parse().unwrap(), "shopify:2".parse().unwrap());
    let visitor = "anon:v1".to_string();
    // Computed with the visitor pointing nowhere; it points it at `one`.
    let link = |seq, to: &CustomerId, expected: Option<&CustomerId>| ProcessOutcome {
        seq,
        status: Some(DeliveryStatus::Processed),
        aliases: vec![NewAlias { alias: visitor.clone(), customer: to.clone(), at_ms: 1, trace_id: None }],
        expected_aliases: vec![(visitor.clone(), expected.cloned())],
        ..Default::default()
    };
    store.commit_processing(vec![link(seqs[0], &one, None)]).await.unwrap();
    // Another batch also read it as pointing nowhere, before that commit: refused, nothing written.
    match store.commit_processing(vec![link(seqs[1], &two, None)]).await {
        Err(StoreError::Conflict(why)) => assert!(why.contains("anon:v1"), "{why}"),
        other => panic!("{other:?}"),
    }
    let pointed = store.resolve_aliases(std::slice::from_ref(&visitor)).await.unwrap();
    assert_eq!(pointed.iter().map(|a| a.customer.clone()).collect::<Vec<_>>(), vec![one.clone()]);
    assert_eq!(store.pending_deliveries(10).await.unwrap().len(), 2);
    // Computed from where it points now: goes through.
    store.commit_processing(vec![link(seqs[1], &two, Some(&one))]).await.unwrap();
    let pointed = store.resolve_aliases(std::slice::from_ref(&visitor)).await.unwrap();
    assert_eq!(pointed.iter().map(|a| a.customer.clone()).collect::<Vec<_>>(), vec![two]);
    store.drop_schema().await.unwrap();
}

/// Acknowledgements commit in several transactions at once, so a delivery can become visible after one
/// numbered later, once a processor has read past it: the next read leaves out only the batch in flight and
/// finds it, wherever its number falls.
#[tokio::test]
async fn the_next_batch_is_read_besides_the_one_in_flight_not_after_it() {
    let Some(url) = postgres_test_url() else { return };
    let store = fresh_postgres(&url, "nudge_rb").await;
    let mut seqs = Vec::new();
    for n in 0..4 {
        seqs.push(commit(&store, n).await);
    }
    let read = |in_flight: Vec<i64>| {
        let store = store.clone();
        async move {
            let ds = store.pending_deliveries_besides(&in_flight, 100).await.unwrap();
            ds.iter().map(|d| d.seq).collect::<Vec<_>>()
        }
    };
    assert_eq!(read(vec![]).await, seqs);
    // The batch in flight holds the later two: the earlier two are read, in order.
    assert_eq!(read(vec![seqs[2], seqs[3]]).await, [seqs[0], seqs[1]]);
    assert_eq!(read(vec![seqs[1]]).await, [seqs[0], seqs[2], seqs[3]]);
    let by_one = store.pending_deliveries_besides(&[seqs[0]], 1).await.unwrap();
    assert_eq!(by_one.iter().map(|d| d.seq).collect::<Vec<_>>(), [seqs[1]]);
    store.drop_schema().await.unwrap();
}
