//! Conformance checks of the model registry, imported history and the catalogue.

use super::*;

pub async fn registry(s: Arc<dyn Store>) {
    assert!(s.active_model_version().await.unwrap().is_none());
    for (i, id) in ["v1", "v2"].iter().enumerate() {
        s.save_model_version(ModelVersion {
            id: id.to_string(),
            family: "bgnbd".into(),
            created_at_ms: i as i64,
            active: false,
            body: serde_json::json!({"r": 0.24}),
        })
        .await
        .unwrap();
    }
    assert!(matches!(s.activate_model_version("nope").await, Err(StoreError::NotFound(_))));
    s.activate_model_version("v1").await.unwrap();
    s.activate_model_version("v2").await.unwrap();
    let versions = s.model_versions().await.unwrap();
    assert_eq!(versions[0].id, "v2", "newest first");
    assert_eq!(versions.iter().filter(|v| v.active).count(), 1, "exactly one active");
    assert_eq!(s.active_model_version().await.unwrap().unwrap().id, "v2");
    s.activate_model_version("v1").await.unwrap();
    assert_eq!(s.active_model_version().await.unwrap().unwrap().id, "v1", "roll back");
    // Each kind has its own active version: a decision family's activation leaves BTYD's alone.
    for (i, (id, family)) in
        [("p1", "propensity"), ("p2", "propensity"), ("m1", "pareto_nbd")].iter().enumerate()
    {
        s.save_model_version(ModelVersion {
            id: id.to_string(),
            family: family.to_string(),
            created_at_ms: 10 + i as i64,
            active: false,
            body: serde_json::json!({}),
        })
        .await
        .unwrap();
    }
    s.activate_model_version("p1").await.unwrap();
    s.activate_model_version("p2").await.unwrap();
    assert_eq!(s.active_model_version().await.unwrap().unwrap().id, "v1", "BTYD untouched");
    assert_eq!(s.active_model_version_of("propensity").await.unwrap().unwrap().id, "p2");
    s.activate_model_version("m1").await.unwrap();
    assert_eq!(s.active_model_version().await.unwrap().unwrap().id, "m1", "BTYD families share a kind");
    assert_eq!(s.active_model_version_of("propensity").await.unwrap().unwrap().id, "p2");
    assert!(s.active_model_version_of("send_time").await.unwrap().is_none());
}

pub async fn import_is_idempotent(s: Arc<dyn Store>) {
    let rows: Vec<ImportedTransaction> = (0..5)
        .map(|i| ImportedTransaction {
            customer_id: format!("c{}", i % 2),
            order_id: format!("o{i}"),
            day: 10_000 + i,
            amount: "12.30".into(),
            source: "csv".into(),
        })
        .collect();
    assert_eq!(s.import_transactions(rows.clone()).await.unwrap(), 5);
    assert_eq!(s.import_transactions(rows).await.unwrap(), 0);
    let all = s.transactions().await.unwrap();
    assert_eq!(all.len(), 5);
    assert_eq!(all[0].amount, "12.30");
}

/// Catalogue records are written with processing; the newest `updated_at` wins (an equal one takes the
/// later commit), and the catalogue reads whole or by ids.
pub async fn products_keep_the_newest_record(s: Arc<dyn Store>) {
    let product = |id: &str, at: i64, title: &str| StoredProduct {
        id: id.into(),
        source: "shopify".into(),
        updated_at_ms: at,
        record: format!(r#"{{"id":"{id}","title":"{title}"}}"#),
    };
    let commit = |products: Vec<StoredProduct>| {
        let s = s.clone();
        async move {
            s.commit_processing(vec![ProcessOutcome {
                trace_id: Some(TraceId::new()),
                terminal: Some(TerminalState::Ignored("catalogue".into())),
                products,
                ..Default::default()
            }])
            .await
            .unwrap();
        }
    };
    assert!(s.products(None).await.unwrap().is_empty());
    commit(vec![product("p2", 2_000, "Mug v2"), product("p1", 1_000, "Tee")]).await;
    // An older record of p2 arrives late: ignored. A newer p1 replaces the stored one.
    commit(vec![product("p2", 1_500, "Mug v1"), product("p1", 3_000, "Tee v2")]).await;
    let all = s.products(None).await.unwrap();
    assert_eq!(
        all.iter().map(|p| (p.id.as_str(), p.updated_at_ms)).collect::<Vec<_>>(),
        [("p1", 3_000), ("p2", 2_000)]
    );
    assert!(all[0].record.contains("Tee v2") && all[1].record.contains("Mug v2"));
    // The same instant again (a second update in the same second): the later commit wins.
    commit(vec![product("p2", 2_000, "Mug v2b")]).await;
    let some = s.products(Some(vec!["p2".into(), "nope".into(), "p2".into()])).await.unwrap();
    assert_eq!(some.len(), 1);
    assert!(some[0].record.contains("Mug v2b"));
    assert!(s.products(Some(Vec::new())).await.unwrap().is_empty());
}
