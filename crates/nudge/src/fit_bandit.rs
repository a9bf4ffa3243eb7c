//! `nudge models fit --family bandit`: what each offer flow's bandit has learned, rebuilt from the offer
//! log exactly as the running pipeline folds it (settled offers in settlement order), with each arm's
//! estimate and the off-policy value of the learned policy from the random holdout. Saved as a registry
//! version of family `bandit`: a dated record of what was learned. Nothing serves from it (the bandit
//! learns online), so it is never activated.

use crate::config::Config;
use crate::models_cli::FitArgs;
use anyhow::bail;
use nudge_decide::bandit::{self, LoggedOutcome};
use nudge_store::Store;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

pub async fn fit(cfg: &Config, args: &FitArgs) -> anyhow::Result<()> {
    if args.transactions.is_some() || args.summary.is_some() {
        bail!(
            "the bandit family is rebuilt from the store's offer log; --transactions and --summary do not apply"
        );
    }
    if args.activate {
        bail!(
            "a bandit version is a record of what the offer flows learned; the bandit learns online from the \
             offer log, so there is nothing to activate (run without --activate)"
        );
    }
    let flows = cfg.flow_set().map_err(|e| anyhow::anyhow!("{e}"))?;
    let offer_flows: Vec<_> =
        flows.flows.iter().filter_map(|f| f.offer.as_ref().map(|o| (f.spec.name.clone(), o))).collect();
    if offer_flows.is_empty() {
        bail!("no flow has a choose_offer action (README, \"Offers (choose_offer)\")");
    }
    let store = crate::app::open_store(cfg).await?;
    let mut digest = Sha256::new();
    let mut reports = Vec::new();
    for (name, offer) in offer_flows {
        let mut rows = store.offers_of_flow(&name).await?;
        rows.sort_by_key(|r| r.settle_seq.unwrap_or(i64::MAX));
        let mut learner = offer.prior.clone();
        let logged: Vec<LoggedOutcome> =
            rows.iter().filter_map(|r| crate::offers::fold(&mut learner, r)).collect();
        for r in &rows {
            digest.update(format!("{}:{:?}:{:?};", r.id, r.settle_seq, r.outcome_value).as_bytes());
        }
        let open = rows.iter().filter(|r| r.settle_seq.is_none()).count();
        reports.push(json!({
            "flow": name,
            "offers": rows.len(),
            "settled": rows.len() - open,
            "open": open,
            "learned_from": logged.len(),
            "explored": logged.iter().filter(|o| o.explored).count(),
            "report": bandit::report(&learner, &logged),
        }));
    }
    let data_digest = hex::encode(digest.finalize());
    let body = json!({ "schema": 1, "flows": reports, "data_digest": data_digest });
    let version = if args.no_save { None } else { Some(save(&*store, &body, &data_digest).await?) };
    if args.json {
        let mut out = body.clone();
        out["version"] = json!(version);
        println!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        print!("{}", report_text(&body));
        match version {
            Some(v) => println!("saved as version {v} (family bandit; a record, never active)"),
            None => println!("not saved (--no-save)"),
        }
    }
    Ok(())
}

async fn save(store: &dyn Store, body: &Value, digest: &str) -> anyhow::Result<String> {
    let family = nudge_decide::families::BANDIT;
    crate::models_cli::save_new_version(store, "b", digest, family, body.clone()).await
}

/// A bandit version's body as text: per flow, the offers, each arm's figures and the off-policy value.
pub fn report_text(body: &Value) -> String {
    let mut s = String::new();
    let num = |v: &Value| v.as_f64().map_or("–".to_string(), |x| format!("{x:.2}"));
    for f in body["flows"].as_array().into_iter().flatten() {
        s += &format!(
            "flow {}: {} offers ({} settled, {} open); learned from {}, {} of them from the random holdout\n",
            f["flow"].as_str().unwrap_or("?"),
            f["offers"],
            f["settled"],
            f["open"],
            f["learned_from"],
            f["explored"]
        );
        let r = &f["report"];
        s += &format!("  policy {}\n", r["policy"].as_str().unwrap_or("?"));
        s += "  arm             n   mean reward   estimate ± sd (at the mean context)\n";
        for a in r["arms"].as_array().into_iter().flatten() {
            s += &format!(
                "  {:<13} {:>5}   {:>11}   {} ± {}\n",
                a["arm"].as_str().unwrap_or("?"),
                a["n"],
                num(&a["mean_reward"]),
                num(&a["estimate_at_mean_context"]),
                num(&a["sd"])
            );
        }
        let ope = &r["off_policy"];
        let interval = |k: &str| {
            let i = &ope[k];
            if i.is_null() {
                "–".to_string()
            } else {
                format!("{} [{}, {}]", num(&i["estimate"]), num(&i["low"]), num(&i["high"]))
            }
        };
        s += &format!(
            "  learned policy's value per decision (from {} holdout decisions, {} matching): IPS {}, SNIPS {}\n",
            ope["explored"],
            ope["matched"],
            interval("ips"),
            interval("snips")
        );
    }
    s
}
