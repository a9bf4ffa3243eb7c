//! `nudge models fit --family cold_start`: new customers' 12-month value by acquisition facts, from the
//! store's customer states (README, "Cold-start value"), saved as a `cold_start` registry version.

use crate::config::Config;
use crate::fit_send_time::{all_states, finish, save_and_activate};
use crate::models_cli::FitArgs;
use anyhow::anyhow;
use nudge_decide::cold_start::{self, ColdStartFitOptions};
use nudge_state::CustomerState;

pub async fn fit(cfg: &Config, args: &FitArgs) -> anyhow::Result<()> {
    let store = crate::app::open_store(cfg).await?;
    let states = all_states(&*store).await?;
    let now = time::OffsetDateTime::now_utc();
    let body = tokio::task::spawn_blocking(move || {
        let refs: Vec<&CustomerState> = states.iter().collect();
        cold_start::fit(&refs, now, &ColdStartFitOptions::default())
    })
    .await?
    .map_err(|e| anyhow!("{e}; the cold-start value needs customers first seen a year or more ago"))?;
    let value = serde_json::to_value(&body)?;
    let saved = save_and_activate(&*store, nudge_decide::families::COLD_START, &value, args).await?;
    let mut t = String::new();
    let s = &body.sufficiency;
    t.push_str(&format!(
        "cold_start: {} customers with a complete {}-day horizon; sufficient: {}\n",
        s["customers"],
        body.horizon_days,
        if s["ok"] == true {
            "yes".to_string()
        } else {
            format!("no ({})", s["reason"].as_str().unwrap_or(""))
        }
    ));
    t.push_str(&format!("population mean 12-month value: {:.2}\n", body.population_mean));
    let m = &body.metrics;
    match (m["mae"].as_f64(), m["population_mean_mae"].as_f64()) {
        (Some(a), Some(b)) => t.push_str(&format!(
            "holdout (newest {} customers): MAE {a:.2} vs {b:.2} for the population mean ({:+.1} %)\n",
            m["holdout_customers"],
            if b > 0.0 { -100.0 * (1.0 - a / b) } else { 0.0 }
        )),
        _ => t.push_str("holdout: too few customers\n"),
    }
    for (f, table) in &body.tables {
        let k = table
            .strength
            .map_or("no effect (between-level variance 0)".to_string(), |k| format!("strength {k:.1}"));
        t.push_str(&format!("{f}: {} levels, {k}\n", table.levels.len()));
        let mut levels: Vec<_> = table.levels.iter().collect();
        levels.sort_by(|a, b| b.1.n.cmp(&a.1.n).then(a.0.cmp(b.0)));
        for (name, l) in levels.iter().take(8) {
            t.push_str(&format!("  {name:<20} n={:<6} raw {:+9.2}  effect {:+9.2}\n", l.n, l.raw, l.effect));
        }
    }
    finish(nudge_decide::families::COLD_START, &value, saved, args.json, t)
}
