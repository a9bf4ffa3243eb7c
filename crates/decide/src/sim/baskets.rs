//! The `recs` scenario: an Instacart-format next-basket benchmark (orders of customers, each a basket of
//! products, the last order of each customer held out). Generative process (seeded):
//!
//! - A catalogue of 2,000 products in 20 categories of 100, 5 brands per category; product `p`'s base
//!   popularity is Zipf-like, `1 / (rank + 10)` over a random rank. Each product has 3 complements in its
//!   own category (drawn by popularity), the products it is bought with. 20 % of products are tagged
//!   `consumable`; 95 % are available.
//! - Each customer prefers 2 categories and has 3–10 favourite products (drawn by popularity, 80 % from the
//!   preferred categories), each with a personal rebuy probability ~ Beta(2, 3).
//! - A customer places `3 + Poisson(6)` orders on uniformly drawn days among the simulated days (at a
//!   uniform hour of the day: whole hours, as the Instacart layout records them). Each basket holds:
//!   every favourite with its rebuy probability; for each product so far, with probability 0.35, one of
//!   its complements; and `Poisson(1.2)` discoveries (from a preferred category by popularity with
//!   probability 0.6, else from the whole catalogue by popularity). A discovery becomes a favourite (rebuy
//!   probability ~ Beta(2, 3)) with probability 0.3. An empty basket gets one favourite.
//!
//! Evaluation: the models are fitted on every order but each customer's last, and rank products for that
//! last order; NDCG@10 and recall@10 are averaged over customers, for the whole basket, for its repeat
//! products (bought before) and for its new products, for popularity, own frequency, item kNN, the linear
//! blend and the served model (the ranker when the fit chose it). [`evaluate_world`] runs the same
//! evaluation on any orders, such as Instacart files read by [`super::instacart::load`].

use super::{SimArgs, SimReport};
use crate::recs::{self, Basket, BlendWeights, FitOptions, Product, ndcg_at_k, recall_at_k};
use rand::{Rng, SeedableRng};
use rand_distr::{Beta, Distribution, Poisson};
use serde_json::json;

const CATEGORIES: usize = 20;
const PER_CATEGORY: usize = 100;
const PRODUCTS: usize = CATEGORIES * PER_CATEGORY;
const DAY: i64 = 86_400;
/// "Now" of the simulated world (2026-06-01, Unix seconds).
pub const NOW: i64 = 1_780_272_000;

/// The simulated catalogue and orders.
#[derive(Debug, Clone, PartialEq)]
pub struct World {
    pub products: Vec<Product>,
    /// Every order, customers' orders in time order.
    pub orders: Vec<Basket>,
}

fn draw(rng: &mut impl Rng, cum: &[f64]) -> usize {
    let u = rng.gen_range(0.0..cum[cum.len() - 1]);
    cum.partition_point(|&c| c <= u).min(cum.len() - 1)
}

fn cumulative(w: impl Iterator<Item = f64>) -> Vec<f64> {
    w.scan(0.0, |s, x| {
        *s += x;
        Some(*s)
    })
    .collect()
}

/// Generates the world (see the module documentation).
pub fn world(args: &SimArgs) -> World {
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let mut ranks: Vec<usize> = (0..PRODUCTS).collect();
    for i in (1..PRODUCTS).rev() {
        ranks.swap(i, rng.gen_range(0..=i));
    }
    let weight: Vec<f64> = ranks.iter().map(|&r| 1.0 / (r as f64 + 10.0)).collect();
    let all = cumulative(weight.iter().copied());
    let by_cat: Vec<Vec<f64>> = (0..CATEGORIES)
        .map(|c| cumulative(weight[c * PER_CATEGORY..(c + 1) * PER_CATEGORY].iter().copied()))
        .collect();
    let pick_in = |rng: &mut rand::rngs::StdRng, c: usize| c * PER_CATEGORY + draw(rng, &by_cat[c]);
    let complements: Vec<Vec<usize>> = (0..PRODUCTS)
        .map(|p| {
            let c = p / PER_CATEGORY;
            (0..3).map(|_| pick_in(&mut rng, c)).filter(|&q| q != p).collect()
        })
        .collect();
    let products: Vec<Product> = (0..PRODUCTS)
        .map(|p| Product {
            id: format!("p{p}"),
            category: Some(format!("c{}", p / PER_CATEGORY)),
            brand: Some(format!("b{}-{}", p / PER_CATEGORY, p % 5)),
            tags: if rng.gen_bool(0.2) { vec!["consumable".into()] } else { Vec::new() },
            available: rng.gen_bool(0.95),
        })
        .collect();
    let beta = Beta::new(2.0, 3.0).expect("valid beta");
    let n_orders = Poisson::new(6.0).expect("valid rate");
    let discoveries = Poisson::new(1.2).expect("valid rate");
    let days = i64::from(args.days.max(1));
    let mut orders = Vec::new();
    for c in 0..args.customers {
        let cats = [rng.gen_range(0..CATEGORIES), rng.gen_range(0..CATEGORIES)];
        let mut favs: Vec<(usize, f64)> = (0..rng.gen_range(3..=10))
            .map(|_| {
                let p = if rng.gen_bool(0.8) {
                    {
                        let c = cats[rng.gen_range(0..2)];
                        pick_in(&mut rng, c)
                    }
                } else {
                    draw(&mut rng, &all)
                };
                (p, beta.sample(&mut rng))
            })
            .collect();
        let k = 3 + n_orders.sample(&mut rng) as usize;
        // Whole days and hours, as the Instacart layout records them.
        let mut times: Vec<i64> =
            (0..k).map(|_| NOW - rng.gen_range(1..=days) * DAY + rng.gen_range(0..24) * 3_600).collect();
        times.sort_unstable();
        let customer = format!("u{c}");
        for at in times {
            let mut basket: Vec<usize> = favs.iter().filter(|f| rng.gen_bool(f.1)).map(|f| f.0).collect();
            let base = basket.len();
            for i in 0..base {
                if rng.gen_bool(0.35) {
                    let comp = &complements[basket[i]];
                    if !comp.is_empty() {
                        basket.push(comp[rng.gen_range(0..comp.len())]);
                    }
                }
            }
            for _ in 0..discoveries.sample(&mut rng) as usize {
                let p = if rng.gen_bool(0.6) {
                    {
                        let c = cats[rng.gen_range(0..2)];
                        pick_in(&mut rng, c)
                    }
                } else {
                    draw(&mut rng, &all)
                };
                basket.push(p);
                if rng.gen_bool(0.3) {
                    favs.push((p, beta.sample(&mut rng)));
                }
            }
            if basket.is_empty() {
                basket.push(favs[rng.gen_range(0..favs.len())].0);
            }
            basket.sort_unstable();
            basket.dedup();
            orders.push(Basket {
                customer: customer.clone(),
                at,
                products: basket.iter().map(|&p| format!("p{p}")).collect(),
            });
        }
    }
    World { products, orders }
}

/// Mean NDCG@10 and recall@10 per scorer and per part of the held-out basket.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Scores {
    /// [overall, repeat, new] × (ndcg sum, recall sum, customers)
    sums: [(f64, f64, usize); 3],
}

impl Scores {
    fn add(&mut self, part: usize, ranked: &[u32], relevant: &[u32]) {
        if let (Some(n), Some(r)) = (ndcg_at_k(ranked, relevant, 10), recall_at_k(ranked, relevant, 10)) {
            let s = &mut self.sums[part];
            s.0 += n;
            s.1 += r;
            s.2 += 1;
        }
    }
    /// (NDCG@10, recall@10) of a part: 0 overall, 1 repeat products, 2 new products.
    pub fn mean(&self, part: usize) -> (f64, f64) {
        let s = self.sums[part];
        let n = s.2.max(1) as f64;
        (s.0 / n, s.1 / n)
    }
}

/// Runs the scenario: generates the world, then [`evaluate_world`].
pub fn evaluate(args: &SimArgs) -> SimReport {
    let w = world(args);
    let mut r = evaluate_world(
        &w,
        &format!("simulated, {} customers, {} days, seed {}", args.customers, args.days, args.seed),
    );
    if let Some(o) = r.json.as_object_mut() {
        o.insert("customers".into(), json!(args.customers));
        o.insert("seed".into(), json!(args.seed));
    }
    r
}

/// The scorers compared, in the report's order: name, and the weights (`None`: the served scorer).
const SCORERS: [(&str, Option<BlendWeights>); 5] = [
    ("popularity", Some(BlendWeights::POPULARITY)),
    ("own", Some(BlendWeights::OWN)),
    ("knn", Some(BlendWeights::KNN)),
    ("linear_blend", None),
    ("blend", None),
];

/// Evaluates next-basket recommendations on any world whose orders are grouped by customer in time order
/// (the simulator's, or Instacart files read by [`super::instacart::load`]): the model is fitted on every
/// order but each customer's last and ranks products for that last order. `linear_blend` is the fitted
/// weights over own, kNN and popularity; `blend` is what the model serves (the ranker when the fit chose it).
pub fn evaluate_world(w: &World, source: &str) -> SimReport {
    let mut train = Vec::with_capacity(w.orders.len());
    let mut test: Vec<&Basket> = Vec::new();
    for (i, o) in w.orders.iter().enumerate() {
        if w.orders.get(i + 1).is_some_and(|n| n.customer == o.customer) {
            train.push(o.clone());
        } else {
            test.push(o);
        }
    }
    let (first, last) =
        (w.orders.iter().map(|o| o.at).min().unwrap_or(0), w.orders.iter().map(|o| o.at).max().unwrap_or(0));
    let lookback_days = ((last - first) / DAY + 2) as u32;
    let opts = FitOptions { now: Some(last), lookback_days, ..FitOptions::default() };
    let model = recs::fit(&train, &w.products, &opts);
    let (scores, weights, fit_metrics) = match &model {
        Ok(m) => {
            let mut scores = vec![Scores::default(); SCORERS.len()];
            let mut s = 0;
            for t in &test {
                let start = s;
                while s < train.len() && train[s].customer == t.customer {
                    s += 1;
                }
                let hist = m.index_history(&train[start..s]);
                let before: std::collections::HashSet<u32> =
                    hist.iter().flat_map(|h| h.1.iter().copied()).collect();
                let target: Vec<u32> = t.products.iter().filter_map(|p| m.index_of(p)).collect();
                let (rep, new): (Vec<u32>, Vec<u32>) = target.iter().partition(|p| before.contains(p));
                let cands = m.candidates(&hist, t.at);
                for (k, (name, ws)) in SCORERS.iter().enumerate() {
                    let top = match ws {
                        Some(ws) => cands.top(*ws, 10),
                        None if *name == "linear_blend" => cands.top(m.body.weights, 10),
                        None => m.top(&cands, 10),
                    };
                    scores[k].add(0, &top, &target);
                    scores[k].add(1, &top, &rep);
                    scores[k].add(2, &top, &new);
                }
            }
            (scores, Some(m.body.weights), m.body.metrics.clone())
        }
        Err(_) => (vec![Scores::default(); SCORERS.len()], None, serde_json::Value::Null),
    };
    let mut text = format!(
        "recs: {source}: {} orders, {} order lines\n\
         next basket, {} held-out orders: NDCG@10 / recall@10\n\
         \x20 scorer         overall          repeat           new\n",
        w.orders.len(),
        w.orders.iter().map(|o| o.products.len()).sum::<usize>(),
        test.len(),
    );
    let mut table = serde_json::Map::new();
    for ((name, _), s) in SCORERS.iter().zip(&scores) {
        let parts: Vec<(f64, f64)> = (0..3).map(|p| s.mean(p)).collect();
        text.push_str(&format!(
            "  {name:<13} {:.3} / {:.3}    {:.3} / {:.3}    {:.3} / {:.3}\n",
            parts[0].0, parts[0].1, parts[1].0, parts[1].1, parts[2].0, parts[2].1
        ));
        let j = |p: (f64, f64)| json!({"ndcg_at_10": p.0, "recall_at_10": p.1});
        table.insert(
            name.to_string(),
            json!({"overall": j(parts[0]), "repeat": j(parts[1]), "new": j(parts[2])}),
        );
    }
    if let Some(wt) = weights {
        text.push_str(&format!(
            "  linear blend weights (chosen on validation): own {:.2}, knn {:.2}, popularity {:.2}\n",
            wt.own, wt.knn, wt.popularity
        ));
        text.push_str(&format!(
            "  served: {}\n",
            fit_metrics["served"].as_str().unwrap_or("blend (fixed weights)")
        ));
    }
    SimReport {
        scenario: "recs",
        text,
        json: json!({
            "source": source,
            "orders": w.orders.len(),
            "held_out_orders": test.len(),
            "scorers": table,
            "weights": weights,
            "fit_metrics": fit_metrics,
        }),
    }
}
