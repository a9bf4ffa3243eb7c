//! `nudge models fit --family send_time` (being written).

use crate::config::Config;
use crate::models_cli::FitArgs;

pub async fn fit(cfg: &Config, args: &FitArgs) -> anyhow::Result<()> {
    let _ = (cfg, args);
    anyhow::bail!("fitting the send_time family is not available yet")
}
