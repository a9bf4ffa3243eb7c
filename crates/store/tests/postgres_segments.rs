//! Segments (discoveries, adoption, membership refreshes) behave the same on both backends: the check runs
//! against SQLite always, and against PostgreSQL in a fresh schema of the database `NUDGE_TEST_POSTGRES_URL`
//! names (skipped, with a note, when it is not set).

use nudge_model::CustomerId;
use nudge_store::Store;
use nudge_store::conformance::{fresh_postgres, postgres_test_url};
use nudge_store::sqlite::{Durability, SqliteStore};
use nudge_store::{AdoptedSegment, SegmentList, SegmentRefresh, StoreError};
use std::sync::Arc;

fn cust(local: &str) -> CustomerId {
    format!("shopify:{local}").parse().expect("valid id")
}

fn adopted(name: &str, discovery_id: i64, proposal: u32) -> AdoptedSegment {
    AdoptedSegment {
        name: name.into(),
        discovery_id,
        proposal,
        adopted_at_ms: 5_000,
        adopted_by: "cli".into(),
        lists: Vec::new(),
        members: 0,
        refreshed_at_ms: None,
        refreshes: 0,
        last_stability: None,
        last_joined: 0,
        last_left: 0,
    }
}

fn refresh(segment: &str, at_ms: i64, members: &[&str], stability: Option<f64>) -> SegmentRefresh {
    SegmentRefresh {
        segment: segment.into(),
        at_ms,
        members: members.iter().map(|m| cust(m)).collect(),
        stability,
        joined: 2,
        left: 1,
    }
}

async fn segments_behave(s: Arc<dyn Store>) {
    // Discoveries: increasing ids, newest first, unknown ones absent.
    assert!(s.segment_discoveries(10).await.unwrap().is_empty());
    let d1 = s.save_segment_discovery(1_000, serde_json::json!({"k": 1})).await.unwrap();
    let d2 = s.save_segment_discovery(2_000, serde_json::json!({"k": 2, "proposals": [1, 2]})).await.unwrap();
    assert!(d2 > d1, "ids increase");
    let latest = s.segment_discoveries(1).await.unwrap();
    assert_eq!(latest.len(), 1);
    assert_eq!((latest[0].id, latest[0].created_at_ms), (d2, 2_000));
    assert_eq!(latest[0].body, serde_json::json!({"k": 2, "proposals": [1, 2]}));
    assert_eq!(
        s.segment_discoveries(10).await.unwrap().iter().map(|d| d.id).collect::<Vec<_>>(),
        [d2, d1],
        "newest first"
    );
    let one = s.segment_discovery(d1).await.unwrap().expect("stored");
    assert_eq!((one.id, one.created_at_ms, one.body), (d1, 1_000, serde_json::json!({"k": 1})));
    assert!(s.segment_discovery(d2 + 100).await.unwrap().is_none());

    // Adoption: an unknown discovery, a taken name, a proposal already adopted are refused.
    assert!(matches!(s.adopt_segment(adopted("vip", d2 + 100, 0)).await, Err(StoreError::NotFound(_))));
    s.adopt_segment(adopted("vip", d2, 0)).await.unwrap();
    match s.adopt_segment(adopted("vip", d2, 1)).await {
        Err(StoreError::Conflict(msg)) => assert!(msg.contains("`vip`"), "{msg}"),
        other => panic!("a taken name: expected a conflict, got {other:?}"),
    }
    match s.adopt_segment(adopted("again", d2, 0)).await {
        Err(StoreError::Conflict(msg)) => assert!(msg.contains("`vip`"), "{msg}"),
        other => panic!("an adopted proposal: expected a conflict, got {other:?}"),
    }
    let mut lapsed = adopted("Lapsed", d2, 1);
    lapsed.lists = vec![SegmentList { destination: "klaviyo".into(), list_id: "L1".into() }];
    lapsed.adopted_by = "alice".into();
    s.adopt_segment(lapsed).await.unwrap();
    s.adopt_segment(adopted("early", d1, 0)).await.unwrap();

    // By name, in byte order (upper case first).
    let all = s.adopted_segments().await.unwrap();
    assert_eq!(all.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["Lapsed", "early", "vip"]);
    assert_eq!(all[0], {
        let mut a = adopted("Lapsed", d2, 1);
        a.lists = vec![SegmentList { destination: "klaviyo".into(), list_id: "L1".into() }];
        a.adopted_by = "alice".into();
        a
    });
    assert_eq!(all[2], adopted("vip", d2, 0), "no members before a refresh");

    // Refreshes: unknown segments are refused; members are replaced and the figures recorded.
    assert!(matches!(
        s.replace_segment_members(refresh("nobody", 6_000, &["1"], None)).await,
        Err(StoreError::NotFound(_))
    ));
    s.replace_segment_members(refresh("vip", 6_000, &["b", "10", "9", "B", "10"], None)).await.unwrap();
    assert_eq!(
        s.segment_members("vip").await.unwrap(),
        [cust("10"), cust("9"), cust("B"), cust("b")],
        "members once each, in byte order"
    );
    s.replace_segment_members(refresh("early", 6_500, &["9", "a"], Some(0.5))).await.unwrap();
    s.replace_segment_members(refresh("vip", 7_000, &["9", "B", "c"], Some(0.75))).await.unwrap();
    assert_eq!(s.segment_members("vip").await.unwrap(), [cust("9"), cust("B"), cust("c")]);
    assert!(s.segment_members("Lapsed").await.unwrap().is_empty());
    assert!(s.segment_members("nobody").await.unwrap().is_empty());
    let vip = s.adopted_segments().await.unwrap().pop().unwrap();
    assert_eq!(
        (vip.members, vip.refreshed_at_ms, vip.refreshes, vip.last_stability, vip.last_joined, vip.last_left),
        (3, Some(7_000), 2, Some(0.75), 2, 1)
    );
    assert_eq!(
        s.segment_memberships().await.unwrap(),
        [
            (cust("9"), "early".to_string()),
            (cust("9"), "vip".to_string()),
            (cust("B"), "vip".to_string()),
            (cust("a"), "early".to_string()),
            (cust("c"), "vip".to_string()),
        ]
    );
    // An empty refresh empties the segment.
    s.replace_segment_members(refresh("early", 8_000, &[], Some(0.0))).await.unwrap();
    assert!(s.segment_members("early").await.unwrap().is_empty());
    assert_eq!(s.adopted_segments().await.unwrap()[1].members, 0);

    // Dropping removes the segment and its membership; the name and the proposal are free again.
    assert!(matches!(s.drop_segment("nobody").await, Err(StoreError::NotFound(_))));
    s.drop_segment("vip").await.unwrap();
    assert!(matches!(s.drop_segment("vip").await, Err(StoreError::NotFound(_))));
    assert!(s.segment_members("vip").await.unwrap().is_empty());
    assert!(s.segment_memberships().await.unwrap().is_empty());
    assert_eq!(
        s.adopted_segments().await.unwrap().iter().map(|a| a.name.as_str()).collect::<Vec<_>>(),
        ["Lapsed", "early"]
    );
    s.adopt_segment(adopted("vip", d2, 0)).await.unwrap();
    let vip = s.adopted_segments().await.unwrap().pop().unwrap();
    assert_eq!(vip, adopted("vip", d2, 0), "adopted afresh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_segments() {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = SqliteStore::open(dir.path(), Durability::Normal).expect("open store");
    segments_behave(Arc::new(store)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_segments() {
    let Some(url) = postgres_test_url() else { return };
    let store = fresh_postgres(&url, "nudge_t").await;
    let outcome = tokio::spawn(segments_behave(store.clone() as Arc<dyn Store>)).await;
    store.drop_schema().await.expect("drop the test schema");
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}
