//! Seeded synthetic transactions from the BG/NBD process with Gamma-Gamma spend, for
//! benchmarks, demos and parameter-recovery tests.
//!
//! Generation is deterministic for a given seed regardless of the number of threads.

use rand::{Rng, SeedableRng, rngs::StdRng};
use rand_distr::{Beta, Distribution, Exp, Gamma};
use rayon::prelude::*;
use serde::{Deserialize, Serialize};

use crate::bgnbd::BgNbd;
use crate::error::{Error, Result};
use crate::gamma_gamma::GammaGamma;
use crate::rfm::{TimeUnit, Transaction};

/// What to simulate.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Simulation {
    /// The purchase and dropout process, in `unit`.
    pub model: BgNbd,
    /// The spend process; `None` gives every transaction an amount of zero.
    pub spend: Option<GammaGamma>,
    /// The number of customers, numbered `0..customers`.
    pub customers: usize,
    /// The first possible first-purchase day.
    pub first_day: i32,
    /// First purchases are spread uniformly over this many days from `first_day`.
    pub acquisition_days: i32,
    /// The last day (inclusive) on which transactions are recorded.
    pub observation_end: i32,
    /// The time unit of the model parameters.
    pub unit: TimeUnit,
    /// The random seed.
    pub seed: u64,
}

/// Customers per independently seeded block.
const BLOCK: usize = 8192;

/// Generates transactions, sorted by customer and then day.
///
/// Each customer gets `λ ~ Gamma(r, 1/alpha)` and `p ~ Beta(a, b)`, buys at day
/// `first_day + U[0, acquisition_days)`, then after exponential waiting times with rate
/// `λ` (in `unit`, truncated to whole days) until, after each repeat purchase, they drop
/// out with probability `p` or the observation ends. With spend, the customer's
/// `ν ~ Gamma(q, 1/v)` and each amount is `Gamma(p, 1/ν)`.
pub fn simulate_bgnbd(sim: &Simulation) -> Result<Vec<Transaction>> {
    let m = sim.model;
    let rate = Gamma::new(m.r, 1.0 / m.alpha).map_err(|e| Error::InvalidParameter(e.to_string()))?;
    let drop = Beta::new(m.a, m.b).map_err(|e| Error::InvalidParameter(e.to_string()))?;
    let spend = sim
        .spend
        .map(|g| Gamma::new(g.q, 1.0 / g.v).map(|nu| (g.p, nu)))
        .transpose()
        .map_err(|e| Error::InvalidParameter(e.to_string()))?;
    if sim.acquisition_days < 1 {
        return Err(Error::InvalidInput("acquisition_days must be at least 1".into()));
    }
    let days_per_unit = sim.unit.days();
    let blocks = sim.customers.div_ceil(BLOCK);
    let parts: Vec<Vec<Transaction>> = (0..blocks)
        .into_par_iter()
        .map(|block| {
            let mut rng =
                StdRng::seed_from_u64(sim.seed ^ (block as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15));
            let lo = block * BLOCK;
            let hi = (lo + BLOCK).min(sim.customers);
            let mut out = Vec::with_capacity((hi - lo) * 3);
            for customer in lo..hi {
                let lambda: f64 = rate.sample(&mut rng);
                let p: f64 = drop.sample(&mut rng);
                let amount = match spend {
                    Some((shape, nu_dist)) => {
                        let nu: f64 = nu_dist.sample(&mut rng);
                        Some(Gamma::new(shape, 1.0 / nu).ok())
                    }
                    None => None,
                };
                let value = |rng: &mut StdRng| match &amount {
                    Some(Some(g)) => g.sample(rng),
                    _ => 0.0,
                };
                let first = sim.first_day + rng.gen_range(0..sim.acquisition_days);
                if first > sim.observation_end {
                    continue;
                }
                out.push(Transaction { customer: customer as u64, day: first, amount: value(&mut rng) });
                let Ok(wait) = Exp::new(lambda.max(1e-300)) else {
                    continue;
                };
                let mut t = 0.0;
                loop {
                    t += wait.sample(&mut rng) * days_per_unit;
                    let day = f64::from(first) + t.floor();
                    if day > f64::from(sim.observation_end) {
                        break;
                    }
                    out.push(Transaction {
                        customer: customer as u64,
                        day: day as i32,
                        amount: value(&mut rng),
                    });
                    if rng.r#gen::<f64>() < p {
                        break;
                    }
                }
            }
            out
        })
        .collect();
    Ok(parts.concat())
}
