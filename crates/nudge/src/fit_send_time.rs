//! `nudge models fit --family send_time`: the send-time priors from the store's customer states (README,
//! "Send time, channel and category"), saved as a `send_time` registry version. Also the helpers the
//! state-fitted decision families share: reading every state, saving a version, gating its activation.

use crate::config::Config;
use crate::models_cli::FitArgs;
use anyhow::{Context, anyhow, bail};
use nudge_decide::send_time::{self, SendTimeFitOptions};
use nudge_state::CustomerState;
use nudge_store::Store;
use serde_json::{Value, json};

/// Customer states read per store call.
pub(crate) const SCAN_PAGE: usize = 2_000;

/// Every customer state in the store.
pub(crate) async fn all_states(store: &dyn Store) -> anyhow::Result<Vec<CustomerState>> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page = store.scan_states(after.clone(), SCAN_PAGE).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.customer.clone());
        for s in &page {
            out.push(
                CustomerState::decode(&s.state)
                    .with_context(|| format!("the stored state of {} is unreadable", s.customer))?,
            );
        }
        if page.len() < SCAN_PAGE {
            break;
        }
    }
    Ok(out)
}

/// What saving (and maybe activating) a fitted body did.
pub(crate) struct Saved {
    pub version: Option<String>,
    pub activated: bool,
    /// Why --activate was refused (the command then fails after printing).
    pub refused: Option<String>,
}

/// Saves `body` as a new inactive version of `family` (unless --no-save) with an id
/// `<family>-v<UTC stamp>-<first 8 digits of the data digest>`, and activates it with --activate unless
/// its sufficiency verdict failed (then only with --force).
pub(crate) async fn save_and_activate(
    store: &dyn Store,
    family: &str,
    body: &Value,
    args: &FitArgs,
) -> anyhow::Result<Saved> {
    if args.no_save {
        return Ok(Saved { version: None, activated: false, refused: None });
    }
    let digest = body.get("data_digest").and_then(Value::as_str).unwrap_or("00000000");
    let id = crate::models_cli::save_new_version(store, &format!("{family}-v"), digest, family, body.clone())
        .await?;
    let mut saved = Saved { version: Some(id.clone()), activated: false, refused: None };
    if args.activate {
        let insufficient = body.pointer("/sufficiency/ok").and_then(Value::as_bool) == Some(false);
        if insufficient && !args.force {
            let why =
                body.pointer("/sufficiency/reason").and_then(Value::as_str).unwrap_or("too little data");
            saved.refused = Some(format!(
                "version {id} was saved but not activated: it was fitted on insufficient data ({why}); pass --force to activate it anyway"
            ));
        } else {
            store.activate_model_version(&id).await?;
            saved.activated = true;
        }
    }
    Ok(saved)
}

/// The version line of the table output.
pub(crate) fn version_line(saved: &Saved) -> String {
    match (&saved.version, saved.activated) {
        (Some(id), true) => format!("version: {id} (saved and active)"),
        (Some(id), false) => {
            format!("version: {id} (saved, inactive; `nudge models activate {id}` makes it live)")
        }
        (None, _) => "version: not saved (--no-save)".into(),
    }
}

/// Prints `{family, version, activated, body}` (--json) or `table`, then fails when activation was refused.
pub(crate) fn finish(
    family: &str,
    body: &Value,
    saved: Saved,
    json_out: bool,
    table: String,
) -> anyhow::Result<()> {
    if json_out {
        println!(
            "{}",
            serde_json::to_string(
                &json!({"family": family, "version": saved.version, "activated": saved.activated, "body": body})
            )?
        );
    } else {
        print!("{table}");
        println!("{}", version_line(&saved));
    }
    match saved.refused {
        Some(m) => Err(anyhow!(m)),
        None => Ok(()),
    }
}

pub async fn fit(cfg: &Config, args: &FitArgs) -> anyhow::Result<()> {
    let offset = cfg.models.store_utc_offset_minutes;
    if offset.is_some_and(|o| o.abs() > 14 * 60) {
        bail!("models.store_utc_offset_minutes must be within ±840 minutes (UTC−14 to UTC+14)");
    }
    let store = crate::app::open_store(cfg).await?;
    let states = all_states(&*store).await?;
    let opts = SendTimeFitOptions { store_utc_offset_minutes: offset, ..Default::default() };
    let body = tokio::task::spawn_blocking(move || {
        let refs: Vec<&CustomerState> = states.iter().collect();
        send_time::fit(&refs, &opts)
    })
    .await?
    .map_err(|e| {
        anyhow!("{e}; send time is learned from opens and clicks coming back from the marketing tools")
    })?;
    let value = serde_json::to_value(&body)?;
    let saved = save_and_activate(&*store, nudge_decide::families::SEND_TIME, &value, args).await?;
    let mut t = String::new();
    let s = &body.sufficiency;
    t.push_str(&format!(
        "send_time: {} customers with human opens or clicks, {} in all; sufficient: {}\n",
        s["customers"],
        s["engagements"],
        if s["ok"] == true {
            "yes".to_string()
        } else {
            format!("no ({})", s["reason"].as_str().unwrap_or(""))
        }
    ));
    t.push_str(&format!(
        "time zone for customers without one: {}\n",
        offset.map_or("UTC".to_string(), |o| format!("store offset {o:+} minutes"))
    ));
    t.push_str("channel  customers  engagements  strength  smoothing  population peak  holdout hit ±1h (population)\n");
    for (c, p) in &body.channels {
        let pop: send_time::Hours = std::array::from_fn(|h| p.population.get(h).copied().unwrap_or(0.0));
        let m = &body.metrics[c];
        let rate = |k: &str| m[k].as_f64().map_or("-".to_string(), |x| format!("{:.1} %", 100.0 * x));
        t.push_str(&format!(
            "{c:<8} {:>9}  {:>11}  {:>8.2}  {:>7.1} h  {:>13}:00  {} ({})\n",
            p.customers,
            p.engagements,
            p.strength,
            p.bandwidth,
            send_time::smoothed_mode(&pop, p.bandwidth),
            rate("hit_rate_within_1h"),
            rate("population_hit_rate_within_1h"),
        ));
    }
    finish(nudge_decide::families::SEND_TIME, &value, saved, args.json, t)
}
