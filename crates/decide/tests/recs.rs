//! Ranking metrics against hand-computed values, the config checks and the merchandiser rules.

use nudge_decide::recs::{
    self, Basket, BlendWeights, Catalogue, CustomerHistory, FitOptions, Pin, Product, Reason, RecsConfig,
    RecsModel, Rules, ndcg_at_k, recall_at_k,
};

#[test]
fn ndcg_and_recall_by_hand() {
    // Relevant {a, c}; ranked a, b, c: DCG = 1/log2(2) + 1/log2(4) = 1.5; ideal = 1 + 1/log2(3) = 1.6309298.
    let r = ndcg_at_k(&["a", "b", "c"], &["a", "c"], 10).unwrap();
    assert!((r - 1.5 / (1.0 + 1.0 / 3f64.log2())).abs() < 1e-12);
    assert!((r - 0.919_720_6).abs() < 1e-6);
    // Only the second of three relevant is ranked (k = 2): DCG = 1/log2(3) = 0.6309298, ideal = 1.6309298.
    let r = ndcg_at_k(&["x", "b", "c"], &["a", "b", "z"], 2).unwrap();
    assert!((r - 0.386_852_8).abs() < 1e-6, "{r}");
    assert_eq!(ndcg_at_k(&["a"], &["a"], 10), Some(1.0));
    assert_eq!(ndcg_at_k(&["a"], &[] as &[&str], 10), None);
    assert_eq!(ndcg_at_k(&["b", "c"], &["a"], 10), Some(0.0));
    // recall@2 of {a, b, z} with ranked x, b, c: 1 of 3.
    assert!((recall_at_k(&["x", "b", "c"], &["a", "b", "z"], 2).unwrap() - 1.0 / 3.0).abs() < 1e-12);
    assert_eq!(recall_at_k(&["a", "b"], &["a", "b"], 1), Some(0.5));
    assert_eq!(recall_at_k(&["a"], &[] as &[&str], 1), None);
}

#[test]
fn config_parses_and_checks_name_bad_keys() {
    let c: RecsConfig = serde_json::from_str(
        r#"{"count": 4, "lookback": "52w", "pins": [{"product": "p1", "segment": "vip"}], "exclude": ["tag:gift"]}"#,
    )
    .unwrap();
    assert_eq!(c.count, 4);
    assert_eq!(c.lookback_days(), 364);
    assert_eq!(c.exclude_recent_days, 30);
    c.check().unwrap();
    let e = serde_json::from_str::<RecsConfig>(r#"{"cuont": 4}"#).unwrap_err().to_string();
    assert!(e.contains("cuont"), "{e}");
    let e =
        serde_json::from_str::<RecsConfig>(r#"{"pins": [{"product": "a", "segmnet": "x"}]}"#).unwrap_err();
    assert!(e.to_string().contains("segmnet"));
    let bad = RecsConfig {
        count: 0,
        lookback: "1y".into(),
        pins: vec![Pin { product: " ".into(), segment: Some("category:".into()) }],
        exclude: vec!["tag:".into()],
        ..RecsConfig::default()
    };
    let e = bad.check().unwrap_err().to_string();
    for key in
        ["recs.count", "recs.lookback", "recs.pins[0].product", "recs.pins[0].segment", "recs.exclude[0]"]
    {
        assert!(e.contains(key), "{key} in {e}");
    }
}

fn product(id: &str, brand: &str, tags: &[&str], available: bool) -> Product {
    Product {
        id: id.into(),
        category: Some("c".into()),
        brand: Some(brand.into()),
        tags: tags.iter().map(|t| t.to_string()).collect(),
        available,
    }
}

const DAY: i64 = 86_400;
const NOW: i64 = 1_000 * DAY;

fn basket(c: &str, day: i64, items: &[&str]) -> Basket {
    Basket {
        customer: c.into(),
        at: NOW - day * DAY,
        products: items.iter().map(|s| s.to_string()).collect(),
    }
}

/// `a` and `b` are always bought together; `c`, `d`, `e` are best sellers.
fn fixture() -> (RecsModel, Vec<Product>) {
    let mut orders = Vec::new();
    for k in 0..40 {
        let c = format!("u{k}");
        orders.push(basket(&c, 100, &["a", "b", "c"]));
        orders.push(basket(&c, 50, &["c", "d", "e"]));
        if k % 2 == 0 {
            orders.push(basket(&c, 20, &["d", "e", "f"]));
        }
    }
    let products = vec![
        product("a", "x", &[], true),
        product("b", "x", &[], true),
        product("c", "y", &["consumable"], true),
        product("d", "y", &[], true),
        product("e", "y", &["gift"], true),
        product("f", "z", &[], false),
        product("g", "z", &[], true),
    ];
    let m = recs::fit(&orders, &products, &FitOptions { now: Some(NOW), ..FitOptions::default() }).unwrap();
    (m, products)
}

#[test]
fn rules_filter_pin_and_cap() {
    let (mut m, products) = fixture();
    // Fixed weights, so that the test reads the rules rather than the weight search.
    m.body.weights = BlendWeights { own: 0.5, knn: 0.5, popularity: 0.0 };
    m.body.ranker = None;
    let cat = Catalogue::new(&products);
    let hist = vec![basket("new", 5, &["a"]), basket("new", 200, &["c"])];
    let segs = vec!["vip".to_string()];
    let cust = CustomerHistory { orders: &hist, segments: &segs };
    let cfg = RecsConfig { count: 5, max_per_brand: 0, ..RecsConfig::default() };
    let recs = m.recommend(cust, NOW, Rules { config: &cfg, catalogue: &cat });
    let ids: Vec<&str> = recs.iter().map(|r| r.product_id.as_str()).collect();
    // `a` was bought 5 days ago and is not consumable; `f` is unavailable; `b` is a's neighbour.
    assert!(!ids.contains(&"a") && !ids.contains(&"f"), "{ids:?}");
    assert_eq!(recs[0].product_id, "b", "{recs:?}");
    assert_eq!(recs[0].reason, Reason::BoughtWith("a".into()));
    assert!(ids.contains(&"c"));
    assert!(recs.windows(2).all(|w| w[0].score >= w[1].score));
    // Consumables may come back within the recent window.
    let hist2 = vec![basket("new", 5, &["c"])];
    let r2 = m.recommend(
        CustomerHistory { orders: &hist2, segments: &[] },
        NOW,
        Rules { config: &cfg, catalogue: &cat },
    );
    assert!(r2.iter().any(|r| r.product_id == "c" && r.reason == Reason::BoughtBefore), "{r2:?}");

    // Pins (global and for a segment the customer is not in), exclusions, the brand cap, the count.
    let cfg = RecsConfig {
        count: 3,
        max_per_brand: 1,
        pins: vec![
            Pin { product: "g".into(), segment: None },
            Pin { product: "d".into(), segment: Some("lapsed".into()) },
        ],
        exclude: vec!["tag:gift".into(), "b".into()],
        ..RecsConfig::default()
    };
    let recs = m.recommend(cust, NOW, Rules { config: &cfg, catalogue: &cat });
    let ids: Vec<&str> = recs.iter().map(|r| r.product_id.as_str()).collect();
    // a: bought recently; b: excluded; e: tag excluded; f: unavailable; d: brand y is already full (c).
    assert_eq!(ids, ["g", "c"], "{recs:?}");
    assert_eq!(recs[0].product_id, "g");
    assert_eq!(recs[0].reason, Reason::Pinned);
    assert!(!ids.contains(&"b") && !ids.contains(&"e"), "{ids:?}");
    let y = recs.iter().filter(|r| ["c", "d", "e"].contains(&r.product_id.as_str())).count();
    assert_eq!(y, 1, "{ids:?}");
    // A segment pin applies to customers in it.
    let lapsed = vec!["lapsed".to_string()];
    let r3 = m.recommend(
        CustomerHistory { orders: &hist, segments: &lapsed },
        NOW,
        Rules { config: &cfg, catalogue: &cat },
    );
    assert_eq!(r3[1].product_id, "d");
    assert_eq!(r3[1].reason, Reason::Pinned);
}

#[test]
fn body_round_trips_and_bad_bodies_are_refused() {
    let (m, _) = fixture();
    let body = m.to_body();
    let back = RecsModel::from_body(&body).unwrap();
    assert_eq!(back.body, m.body);
    assert_eq!(m.body.data_digest.len(), 64);
    let mut bad = body.clone();
    bad["neighbours"][0] = serde_json::json!([[99, 0.5]]);
    assert!(RecsModel::from_body(&bad).is_err());
    // A ranker must name the features in order, with a coefficient each and an intercept.
    let features: Vec<&str> = recs::FEATURES.to_vec();
    let good = vec![0.5; recs::NF + 1];
    let mut ok = body.clone();
    ok["ranker"] = serde_json::json!({"features": features, "repeat": good, "explore": good});
    let served = RecsModel::from_body(&ok).unwrap();
    assert!(served.body.ranker.is_some());
    for bad_ranker in [
        serde_json::json!({"features": features, "repeat": [1.0], "explore": good}),
        serde_json::json!({"features": ["own"], "repeat": good, "explore": good}),
    ] {
        let mut bad = body.clone();
        bad["ranker"] = bad_ranker;
        assert!(RecsModel::from_body(&bad).unwrap_err().to_string().contains("ranker"));
    }
    // A body of the previous schema is refused with what to do.
    let mut old = body.clone();
    old["schema"] = serde_json::json!(1);
    old.as_object_mut().unwrap().remove("ranker");
    assert!(RecsModel::from_body(&old).unwrap_err().to_string().contains("fit the model again"));
    let mut bad = body.clone();
    bad["surprise"] = serde_json::json!(1);
    bad["schema"] = serde_json::json!(9);
    assert!(RecsModel::from_body(&bad).unwrap_err().to_string().contains("schema"));
}

#[test]
fn bad_input_is_an_error() {
    assert!(recs::fit(&[], &[], &FitOptions::default()).is_err());
    let o = vec![basket("u", 1, &["a"])];
    let opts = FitOptions { half_life_days: 0.0, ..FitOptions::default() };
    assert!(recs::fit(&o, &[], &opts).unwrap_err().to_string().contains("half-life"));
    // Orders older than the lookback are not used.
    let old = vec![basket("u", 500, &["a"])];
    let opts = FitOptions { now: Some(NOW), lookback_days: 365, ..FitOptions::default() };
    assert!(recs::fit(&old, &[], &opts).is_err());
}

#[test]
fn the_fused_paths_rank_as_the_candidates_do() {
    use nudge_decide::sim::{SimArgs, baskets};
    let w = baskets::world(&SimArgs { customers: 600, days: 365, seed: 11 });
    let opts = FitOptions { now: Some(baskets::NOW), validation_customers: 300, ..FitOptions::default() };
    let m = recs::fit(&w.orders, &w.products, &opts).unwrap();
    // Every product available, no brand cap, no tags.
    let catalogue = Catalogue::new(
        &w.products
            .iter()
            .map(|p| Product { brand: None, tags: vec![], available: true, ..p.clone() })
            .collect::<Vec<_>>(),
    );
    let config = RecsConfig { count: 60, exclude_recent_days: 0, ..RecsConfig::default() };
    let rules = Rules { config: &config, catalogue: &catalogue };
    let mut checked = 0;
    for chunk in w.orders.chunk_by(|a, b| a.customer == b.customer).take(200) {
        let hist = m.index_history(chunk);
        let cands = m.candidates(&hist, baskets::NOW);
        for k in [1, 5, 10, 500] {
            assert_eq!(m.top_of(&hist, baskets::NOW, k), m.top(&cands, k), "k = {k}");
        }
        // Past the head `recommend` orders first (4 × count + 16 = 256 > 60: ask for all to reach the tail).
        let all = m.top(&cands, usize::MAX);
        let config_all = RecsConfig { count: all.len(), ..config.clone() };
        for cfg in [&config, &config_all] {
            let got = m.recommend(
                CustomerHistory { orders: chunk, segments: &[] },
                baskets::NOW,
                Rules { config: cfg, ..rules },
            );
            let ids: Vec<&str> = got.iter().map(|r| r.product_id.as_str()).collect();
            let want: Vec<&str> =
                all.iter().take(cfg.count).map(|&i| m.body.products[i as usize].as_str()).collect();
            assert_eq!(ids, want);
        }
        checked += 1;
    }
    assert!(checked >= 100);
}
