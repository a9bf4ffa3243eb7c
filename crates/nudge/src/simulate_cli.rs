//! `nudge simulate --scenario offers|send_time|abandonment|cold_start`: runs a documented simulator
//! whose ground truth is known (`nudge_decide::sim`) and prints how the decision models do on it.

use clap::{Args, ValueEnum};
use nudge_decide::sim::{self, SimArgs, SimReport};

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum Scenario {
    /// The offer bandit against ε-greedy, uniform random and the oracle; the off-policy estimate.
    Offers,
    /// Learned send hours against the oracle's and the population's best hour.
    SendTime,
    /// Abandonment propensity against the true-probability oracle (AUC, calibration).
    Abandonment,
    /// New customers' 12-month value against the population-mean baseline.
    ColdStart,
    /// Recommendations (popularity, own frequency, item kNN, the blend) on held-out next baskets.
    Recs,
}

#[derive(Args, Debug)]
pub struct SimulateArgs {
    #[arg(long, value_enum)]
    pub scenario: Scenario,
    /// Simulated customers.
    #[arg(long, default_value_t = 10_000)]
    pub customers: usize,
    /// Simulated days.
    #[arg(long, default_value_t = 90)]
    pub days: u32,
    /// The seed: the same seed gives the same world and the same figures.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Print one JSON object instead of the table.
    #[arg(long)]
    pub json: bool,
}

/// Runs the scenario (CPU-bound, on a blocking thread) and prints its evaluation.
pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    if args.customers == 0 || args.days == 0 {
        anyhow::bail!("--customers and --days must be above zero");
    }
    let sim_args = SimArgs { customers: args.customers, days: args.days, seed: args.seed };
    let scenario = args.scenario;
    let report: SimReport = tokio::task::spawn_blocking(move || match scenario {
        Scenario::Offers => sim::offers::evaluate(&sim_args),
        Scenario::SendTime => sim::send_time::evaluate(&sim_args),
        Scenario::Abandonment => sim::abandonment::evaluate(&sim_args),
        Scenario::ColdStart => sim::cold_start::evaluate(&sim_args),
        Scenario::Recs => sim::baskets::evaluate(&sim_args),
    })
    .await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.json)?);
    } else {
        print!("{}", report.text);
    }
    Ok(())
}
