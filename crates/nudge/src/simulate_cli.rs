//! `nudge simulate --scenario offers|send_time|abandonment|cold_start|recs` (recs also on Instacart-layout
//! files: `--instacart DIR`, `--write-instacart DIR`): runs a documented simulator
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
    /// `recs` only: evaluate on next-basket data in the Instacart layout in this directory (orders.csv,
    /// order_products__prior.csv and, when present, order_products__train.csv) instead of simulating.
    #[arg(long, value_name = "DIR", conflicts_with = "write_instacart")]
    pub instacart: Option<std::path::PathBuf>,
    /// `recs` only: also write the simulated orders in the Instacart layout to this directory.
    #[arg(long, value_name = "DIR")]
    pub write_instacart: Option<std::path::PathBuf>,
}

/// Reads the Instacart layout from a directory (see `nudge_decide::sim::instacart`).
fn load_instacart(dir: &std::path::Path) -> anyhow::Result<sim::baskets::World> {
    use anyhow::Context;
    use std::io::BufReader;
    let open = |name: &str| {
        let p = dir.join(name);
        std::fs::File::open(&p).map(BufReader::new).with_context(|| format!("opening {}", p.display()))
    };
    let train = dir.join("order_products__train.csv");
    let train = if train.exists() { Some(open("order_products__train.csv")?) } else { None };
    Ok(sim::instacart::load(open("orders.csv")?, open("order_products__prior.csv")?, train)?)
}

/// Writes the simulated world in the Instacart layout.
fn write_instacart(dir: &std::path::Path, world: &sim::baskets::World) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    let f = sim::instacart::write(world);
    for (name, text) in [
        ("orders.csv", &f.orders),
        ("order_products__prior.csv", &f.prior),
        ("order_products__train.csv", &f.train),
    ] {
        let p = dir.join(name);
        std::fs::write(&p, text).with_context(|| format!("writing {}", p.display()))?;
    }
    Ok(())
}

/// Runs the scenario (CPU-bound, on a blocking thread) and prints its evaluation.
pub async fn run(args: SimulateArgs) -> anyhow::Result<()> {
    if args.customers == 0 || args.days == 0 {
        anyhow::bail!("--customers and --days must be above zero");
    }
    if (args.instacart.is_some() || args.write_instacart.is_some()) && args.scenario != Scenario::Recs {
        anyhow::bail!("--instacart and --write-instacart apply to --scenario recs only");
    }
    let sim_args = SimArgs { customers: args.customers, days: args.days, seed: args.seed };
    let scenario = args.scenario;
    let (instacart, write_to) = (args.instacart.clone(), args.write_instacart.clone());
    let report: SimReport = tokio::task::spawn_blocking(move || -> anyhow::Result<SimReport> {
        Ok(match scenario {
            Scenario::Offers => sim::offers::evaluate(&sim_args),
            Scenario::SendTime => sim::send_time::evaluate(&sim_args),
            Scenario::Abandonment => sim::abandonment::evaluate(&sim_args),
            Scenario::ColdStart => sim::cold_start::evaluate(&sim_args),
            Scenario::Recs => match (instacart, write_to) {
                (Some(dir), _) => {
                    let world = load_instacart(&dir)?;
                    sim::baskets::evaluate_world(&world, &format!("Instacart layout, {}", dir.display()))
                }
                (None, Some(dir)) => {
                    write_instacart(&dir, &sim::baskets::world(&sim_args))?;
                    sim::baskets::evaluate(&sim_args)
                }
                (None, None) => sim::baskets::evaluate(&sim_args),
            },
        })
    })
    .await??;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.json)?);
    } else {
        print!("{}", report.text);
    }
    Ok(())
}
