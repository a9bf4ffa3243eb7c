//! A flow's past results with planted effects, for the hypotheses `nudge campaigns hypotheses` proposes.
//!
//! Generative process (seeded): each customer belongs to one of five segments, drawn with the shares below,
//! and has one decision of a `choose_offer` flow. 10 % are held out; the others are offered one of
//! [`ARMS`] uniformly at random, decided at one of the flow's [`HOURS`] (UTC) uniformly at random, and sent
//! a subject line that has each of [`SUBJECT_FEATURES`] with probability ½, independently. The customer
//! orders within the window with the segment's base probability, plus, in [`World::Planted`] only:
//!
//! - every offer other than `none`: +1 pp (a small message effect, for every segment);
//! - `free_shipping` to segment [`FREE_SHIPPING_SEGMENT`]: +[`PLANTED_LIFT`] more;
//! - a decision at [`PLANTED_HOUR`] in segment [`SEND_HOUR_SEGMENT`]: +[`PLANTED_LIFT`].
//!
//! In [`World::Null`] nothing matters: every customer orders with their segment's base probability,
//! whatever the arm, hour, subject line or holdout. An order's revenue is log-normal (median 60).
//!
//! | segment | share | base conversion |
//! |---|---|---|
//! | new | 20 % | 6 % |
//! | active | 25 % | 10 % |
//! | loyal | 20 % | 14 % |
//! | lapsed | 20 % | 4 % |
//! | high_value_at_risk | 15 % | 8 % |

use crate::hypotheses::PastUnit;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, LogNormal};

pub const SEGMENTS: [&str; 5] = ["new", "active", "loyal", "lapsed", "high_value_at_risk"];
const SHARES: [f64; 5] = [0.20, 0.25, 0.20, 0.20, 0.15];
const BASE: [f64; 5] = [0.06, 0.10, 0.14, 0.04, 0.08];
pub const ARMS: [&str; 3] = ["none", "free_shipping", "pct_10"];
pub const HOURS: [u8; 4] = [9, 13, 18, 21];
pub const SUBJECT_FEATURES: [&str; 3] = ["question", "emoji", "personalised"];
pub const HOLDOUT: f64 = 0.10;
/// The segment that responds to free shipping, and the one that responds to a send hour.
pub const FREE_SHIPPING_SEGMENT: &str = "lapsed";
pub const SEND_HOUR_SEGMENT: &str = "loyal";
pub const PLANTED_HOUR: u8 = 18;
/// The planted effects' size (absolute conversion).
pub const PLANTED_LIFT: f64 = 0.06;
/// The message effect of any offer but `none`.
const MESSAGE_LIFT: f64 = 0.01;

/// With the planted effects, or with none at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum World {
    Planted,
    Null,
}

/// One customer per unit, as the process above draws them.
pub fn history(customers: usize, world: World, seed: u64) -> Vec<PastUnit> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let revenue = LogNormal::new(60f64.ln(), 0.6).expect("valid log-normal parameters");
    (0..customers)
        .map(|_| {
            let u: f64 = rng.r#gen();
            let mut s = 0;
            let mut acc = SHARES[0];
            while u >= acc && s < SEGMENTS.len() - 1 {
                s += 1;
                acc += SHARES[s];
            }
            let segment = SEGMENTS[s];
            let treated = !rng.gen_bool(HOLDOUT);
            let (arm, hour, features) = if treated {
                let arm = ARMS[rng.gen_range(0..ARMS.len())];
                let hour = HOURS[rng.gen_range(0..HOURS.len())];
                let features: Vec<String> =
                    SUBJECT_FEATURES.iter().filter(|_| rng.gen_bool(0.5)).map(|f| f.to_string()).collect();
                (Some(arm), Some(hour), features)
            } else {
                (None, None, Vec::new())
            };
            let mut p = BASE[s];
            if world == World::Planted {
                if arm.is_some_and(|a| a != "none") {
                    p += MESSAGE_LIFT;
                }
                if arm == Some("free_shipping") && segment == FREE_SHIPPING_SEGMENT {
                    p += PLANTED_LIFT;
                }
                if hour == Some(PLANTED_HOUR) && segment == SEND_HOUR_SEGMENT {
                    p += PLANTED_LIFT;
                }
            }
            let converted = rng.gen_bool(p);
            PastUnit {
                segment: segment.to_string(),
                treated,
                arm: arm.map(str::to_string),
                send_hour: hour,
                subject_features: features,
                converted,
                revenue: if converted { revenue.sample(&mut rng) } else { 0.0 },
            }
        })
        .collect()
}
