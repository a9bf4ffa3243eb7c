//! Property: whatever the order and repetition of deliveries, each dedupe key commits exactly once and
//! every duplicate points at the trace that committed first.

use nudge_model::TraceId;
use nudge_store::prelude::*;
use nudge_store::sqlite::{Durability, SqliteStore};
use nudge_store::{CommitResult, NewDelivery};
use proptest::prelude::*;
use std::collections::HashMap;

fn delivery(webhook: u8, event: Option<u8>) -> NewDelivery {
    let mut keys = vec![format!("w:{webhook}")];
    if let Some(e) = event {
        keys.push(format!("e:{e}"));
    }
    NewDelivery {
        trace_id: TraceId::new(),
        source: "shopify".into(),
        topic: "orders/create".into(),
        shop: None,
        webhook_id: Some(webhook.to_string()),
        event_id: event.map(|e| e.to_string()),
        received_at_ms: 0,
        headers_json: "{}".into(),
        body: vec![webhook],
        dedupe_keys: keys,
        part: None,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 24, ..ProptestConfig::default() })]
    #[test]
    fn each_key_commits_once(seq in proptest::collection::vec((0u8..12, proptest::option::of(0u8..6)), 1..60)) {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), Durability::Normal).unwrap();
        // The model: a delivery commits unless one of its keys was committed before; then it is a
        // duplicate of the trace that committed that key.
        let mut owner: HashMap<String, TraceId> = HashMap::new();
        let mut committed = 0u64;
        for (w, e) in seq {
            let d = delivery(w, e);
            let expected = d.dedupe_keys.iter().find_map(|k| owner.get(k).copied());
            let trace = d.trace_id;
            let keys = d.dedupe_keys.clone();
            match rt.block_on(store.commit_delivery(d)).unwrap() {
                CommitResult::Committed { .. } => {
                    prop_assert!(expected.is_none(), "committed although a key was seen");
                    committed += 1;
                    for k in keys {
                        owner.insert(k, trace);
                    }
                }
                CommitResult::Duplicate { original, .. } => {
                    prop_assert_eq!(Some(original), expected);
                }
            }
        }
        prop_assert_eq!(rt.block_on(store.stats()).unwrap().deliveries, committed);
    }
}
