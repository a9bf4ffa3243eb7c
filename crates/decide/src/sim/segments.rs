//! A store with planted behavioural segments, for segment discovery.
//!
//! Generative process (seeded): each customer belongs to one of five types, drawn with the shares below,
//! and their ten behavioural signals are drawn around the type's centre: counts, days and money
//! log-normally (σ = 0.5 on the log scale; counts rounded, at least 1), rates normally (sd 0.14, clamped to
//! 0..1).
//!
//! | type | share | days since last order | orders | order value | P(alive) | predicted value | abandonment | discount share | email opens | pages per visit | category breadth |
//! |---|---|---|---|---|---|---|---|---|---|---|---|
//! | loyal high spenders | 20 % | 20 | 10 | 120 | 0.90 | 600 | 0.10 | 0.10 | 0.45 | 6 | 0.60 |
//! | bargain hunters | 25 % | 40 | 5 | 35 | 0.70 | 120 | 0.30 | 0.70 | 0.30 | 8 | 0.40 |
//! | lapsed | 25 % | 250 | 2.5 | 60 | 0.15 | 20 | 0.20 | 0.20 | 0.05 | 3 | 0.30 |
//! | window shoppers | 15 % | 120 | 1 | 50 | 0.40 | 40 | 0.70 | 0.30 | 0.25 | 15 | 0.70 |
//! | new one-timers | 15 % | 10 | 1 | 70 | 0.80 | 90 | 0.25 | 0.15 | 0.50 | 5 | 0.20 |
//!
//! [`week_later`] is the same customers a week on with no change in behaviour: seven more days since the
//! last order, and the rates re-measured (the same centre, fresh noise of sd 0.02).

use crate::segments::Feature;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};

/// The planted types, in the table's order.
pub const TYPES: [&str; 5] =
    ["loyal high spenders", "bargain hunters", "lapsed", "window shoppers", "new one-timers"];
const SHARES: [f64; 5] = [0.20, 0.25, 0.25, 0.15, 0.15];
/// Centres, per type, in [`features`] order.
const CENTRES: [[f64; 10]; 5] = [
    [20.0, 10.0, 120.0, 0.90, 600.0, 0.10, 0.10, 0.45, 6.0, 0.60],
    [40.0, 5.0, 35.0, 0.70, 120.0, 0.30, 0.70, 0.30, 8.0, 0.40],
    [250.0, 2.5, 60.0, 0.15, 20.0, 0.20, 0.20, 0.05, 3.0, 0.30],
    [120.0, 1.0, 50.0, 0.40, 40.0, 0.70, 0.30, 0.25, 15.0, 0.70],
    [10.0, 1.0, 70.0, 0.80, 90.0, 0.25, 0.15, 0.50, 5.0, 0.20],
];

/// The ten signals, as `nudge segments discover` names them.
pub fn features() -> Vec<Feature> {
    vec![
        Feature::new("recency_days", "days since the last order", true),
        Feature::new("orders", "order count", true),
        Feature::new("avg_order_value", "order value", true),
        Feature::new("p_alive", "chance of being active", false),
        Feature::new("predicted_clv", "predicted value", true),
        Feature::new("abandonment", "checkout abandonment", false),
        Feature::new("discount_share", "discount use", false),
        Feature::new("email_open_rate", "email engagement", false),
        Feature::new("pages_per_visit", "browsing depth", true),
        Feature::new("category_breadth", "category breadth", false),
    ]
}

/// The planted store: each customer's type and signals.
#[derive(Debug, Clone)]
pub struct Store {
    pub types: Vec<u32>,
    pub rows: Vec<Vec<f64>>,
}

fn is_rate(j: usize) -> bool {
    matches!(j, 3 | 5 | 6 | 7 | 9)
}

pub fn store(customers: usize, seed: u64) -> Store {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let log_noise = Normal::new(0.0f64, 0.5).expect("a valid sd");
    let rate_noise = Normal::new(0.0f64, 0.14).expect("a valid sd");
    let mut types = Vec::with_capacity(customers);
    let mut rows = Vec::with_capacity(customers);
    for _ in 0..customers {
        let u: f64 = rng.r#gen();
        let mut t = 0;
        let mut acc = SHARES[0];
        while u >= acc && t < 4 {
            t += 1;
            acc += SHARES[t];
        }
        let row: Vec<f64> = (0..10)
            .map(|j| {
                let c = CENTRES[t][j];
                if is_rate(j) {
                    (c + rate_noise.sample(&mut rng)).clamp(0.0, 1.0)
                } else if j == 1 {
                    (c * log_noise.sample(&mut rng).exp()).round().max(1.0)
                } else {
                    c * log_noise.sample(&mut rng).exp()
                }
            })
            .collect();
        types.push(t as u32);
        rows.push(row);
    }
    Store { types, rows }
}

/// The same customers a week later with no change in behaviour (see the module text).
pub fn week_later(s: &Store, seed: u64) -> Vec<Vec<f64>> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x5eed);
    let noise = Normal::new(0.0f64, 0.02).expect("a valid sd");
    s.rows
        .iter()
        .map(|r| {
            r.iter()
                .enumerate()
                .map(|(j, &x)| {
                    if j == 0 {
                        x + 7.0
                    } else if is_rate(j) {
                        (x + noise.sample(&mut rng)).clamp(0.0, 1.0)
                    } else {
                        x
                    }
                })
                .collect()
        })
        .collect()
}
