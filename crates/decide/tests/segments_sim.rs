//! Segment discovery on the simulator's planted store (`sim::segments`): the planted five are found by the
//! `auto` criterion, the adjusted Rand index against the planted types is at least 0.8, and a refresh a week
//! later with no change in behaviour keeps at least 90 % of every segment's members.

use nudge_decide::segments::{self, DiscoverOptions, adjusted_rand_index, stability};
use nudge_decide::sim::segments as sim;

#[test]
fn planted_segments_are_found_named_and_stable() {
    let store = sim::store(20_000, 3);
    let features = sim::features();
    let d = segments::discover(&features, &store.rows, &DiscoverOptions::default()).unwrap();
    let ari = adjusted_rand_index(&d.assignments, &store.types);
    eprintln!("k = {}, silhouettes {:?}, ARI {ari:.3}", d.k, d.silhouettes);
    for p in &d.proposals {
        eprintln!("{} ({:.1} %): {}", p.suggested_name, p.share * 100.0, p.defining.join("; "));
    }
    assert_eq!(d.k, 5, "auto chose {} (silhouettes {:?})", d.k, d.silhouettes);
    assert!(ari >= 0.8, "ARI {ari}");
    // Sizes in decreasing order, shares adding to 1, each with a name and defining features.
    assert!(d.proposals.windows(2).all(|w| w[0].size >= w[1].size));
    assert!((d.proposals.iter().map(|p| p.share).sum::<f64>() - 1.0).abs() < 1e-9);
    assert!(d.proposals.iter().all(|p| !p.defining.is_empty() && p.suggested_name != "typical customers"));
    // The discount-heavy type is described by its discount use.
    let bargain =
        d.proposals.iter().find(|p| p.features[0].feature == "discount_share" && p.features[0].z > 0.0);
    assert!(bargain.is_some_and(|p| p.suggested_name.starts_with("high discount use")), "{:?}", d.proposals);
    // A refresh a week later, against the adopted segments.
    let later = sim::week_later(&store, 3);
    let after = segments::assign(&features, &later, &d);
    let s = stability(&d.assignments, &after);
    eprintln!("stability over a week {s:.4}");
    assert!(s >= 0.9, "stability {s}");
    // The same seed gives the same segments.
    let again = segments::discover(&features, &store.rows, &DiscoverOptions::default()).unwrap();
    assert_eq!(again.assignments, d.assignments);
}

#[test]
fn a_fixed_k_is_used_as_given() {
    let store = sim::store(3_000, 9);
    let opts = DiscoverOptions { k: Some(3), ..DiscoverOptions::default() };
    let d = segments::discover(&sim::features(), &store.rows, &opts).unwrap();
    assert_eq!(d.k, 3);
    assert!(d.silhouettes.is_empty());
    assert_eq!(d.proposals.len(), 3);
}
