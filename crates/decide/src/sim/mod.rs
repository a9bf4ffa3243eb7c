//! Simulators with a known ground truth, one per scenario of `nudge simulate`. Each documents its
//! generative process and is seeded: the same seed gives the same world and the same evaluation.

pub mod abandonment;
pub mod baskets;
pub mod cold_start;
pub mod hypotheses;
pub mod instacart;
pub mod offers;
pub mod segments;
pub mod send_time;

/// What `nudge simulate` asks of a scenario.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimArgs {
    /// Simulated customers.
    pub customers: usize,
    /// Simulated days.
    pub days: u32,
    pub seed: u64,
}

/// A scenario's evaluation: a human-readable table and the same figures as JSON.
#[derive(Debug, Clone, PartialEq)]
pub struct SimReport {
    /// `offers`, `send_time`, `abandonment`, `cold_start`, `recs`.
    pub scenario: &'static str,
    pub text: String,
    pub json: serde_json::Value,
}
