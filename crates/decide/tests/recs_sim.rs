//! The recs scenario's quality bar at a fixed seed.

use nudge_decide::sim::{SimArgs, baskets};

#[test]
fn blend_beats_own_frequency_overall() {
    let r = baskets::evaluate(&SimArgs { customers: 3_000, days: 365, seed: 17 });
    println!("{}", r.text);
    let s = &r.json["scorers"];
    let ndcg = |name: &str, part: &str| s[name][part]["ndcg_at_10"].as_f64().unwrap();
    let recall = |name: &str, part: &str| s[name][part]["recall_at_10"].as_f64().unwrap();
    assert!(ndcg("blend", "overall") > ndcg("own", "overall"), "{}", r.text);
    assert!(recall("blend", "overall") > recall("own", "overall"), "{}", r.text);
    // Each scorer is what it claims: own frequency finds repeats, kNN finds new products better than
    // popularity alone.
    assert!(ndcg("own", "repeat") > ndcg("popularity", "repeat"), "{}", r.text);
    assert!(ndcg("knn", "new") > ndcg("popularity", "new"), "{}", r.text);
    assert_eq!(r.scenario, "recs");
}

#[test]
fn same_seed_same_report() {
    let a = baskets::evaluate(&SimArgs { customers: 300, days: 180, seed: 3 });
    let b = baskets::evaluate(&SimArgs { customers: 300, days: 180, seed: 3 });
    assert_eq!(a.json, b.json);
}
