//! `nudge audit` and `nudge replay`: read the audit trail, and put quarantined deliveries, dead-lettered
//! pushes or dead-lettered fetch jobs back into processing. Both work on the data directory directly, with or without a running server
//! (a running server picks replayed work up within a second).

use crate::config::Config;
use clap::Subcommand;
use nudge_model::{AuditRecord, AuditStage, CustomerId, TraceId};
use nudge_store::TraceView;

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Everything that happened to one delivery, from receipt to its terminal state (or what one scheduled
    /// model refit saved and activated, or refused to, and why).
    Show {
        trace_id: String,
        #[arg(long)]
        json: bool,
    },
    /// The newest audit records about one customer (e.g. `shopify:880012`).
    Customer {
        customer_id: String,
        #[arg(long, default_value_t = 200)]
        limit: usize,
        #[arg(long)]
        json: bool,
    },
    /// Counts by state: deliveries, fetch jobs (pending, dead), quarantine, outbox, terminal states.
    Stats,
}

#[derive(Subcommand)]
pub enum ReplayCmd {
    /// Re-process deliveries kept in quarantine (all, or one trace).
    Quarantined {
        #[arg(long)]
        trace: Option<String>,
    },
    /// Re-send pushes that ran out of retries (all, one trace, one destination, those since an instant).
    DeadLetters {
        #[arg(long)]
        trace: Option<String>,
        /// Only pushes to this destination (`klaviyo`, `slack`, `webhook:crm`).
        #[arg(long)]
        destination: Option<String>,
        /// Only pushes enqueued at or after this instant (`2026-11-01`, RFC 3339) or this long ago (`24h`).
        #[arg(long)]
        since: Option<String>,
    },
    /// Re-run dead-lettered fetch jobs (a thin notification's API read that failed or ran out of
    /// retries): all, or one trace's.
    FetchJobs {
        #[arg(long)]
        trace: Option<String>,
    },
}

fn parse_trace(s: &str) -> anyhow::Result<TraceId> {
    s.parse().map_err(|_| {
        anyhow::Error::new(crate::cli::UsageError(format!(
            "`{s}` is not a trace id (a UUID such as the one in the audit trail)"
        )))
    })
}

pub async fn audit(cfg: &Config, cmd: AuditCmd) -> anyhow::Result<()> {
    let store = crate::app::open_store(cfg).await?;
    match cmd {
        AuditCmd::Show { trace_id, json } => {
            let trace = parse_trace(&trace_id)?;
            let view = store
                .trace(trace)
                .await?
                .ok_or_else(|| anyhow::anyhow!("no trace {trace} in {}", cfg.storage.data_dir.display()))?;
            if json {
                println!("{}", serde_json::to_string_pretty(&view)?);
            } else {
                print!("{}", show_text(&view));
            }
        }
        AuditCmd::Customer { customer_id, limit, json } => {
            let id: CustomerId = customer_id.parse()?;
            let records = store.customer_audit(&id, limit).await?;
            let aliases = store.aliases_of(&id).await?;
            if json {
                // The records as before; the aliases only when there are any.
                if aliases.is_empty() {
                    println!("{}", serde_json::to_string_pretty(&records)?);
                } else {
                    let v = serde_json::json!({ "aliases": aliases, "records": records });
                    println!("{}", serde_json::to_string_pretty(&v)?);
                }
            } else {
                print!("{}", customer_text(&id, &aliases, &records));
            }
        }
        AuditCmd::Stats => {
            let s = store.stats().await?;
            let mut out = serde_json::to_value(&s)?;
            let mut runs = Vec::new();
            for d in cfg.destination_names() {
                if let Some(r) = store.push_run(&d).await? {
                    runs.push(r);
                }
            }
            out["push_runs"] = serde_json::to_value(runs)?;
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
    }
    Ok(())
}

/// `audit customer` as text: the ids the customer is known by and the customers merged into it (no
/// email: aliases are ids and digests), then the audit records, newest first.
fn customer_text(id: &CustomerId, aliases: &[nudge_store::AliasRecord], records: &[AuditRecord]) -> String {
    let mut out = String::new();
    for a in aliases {
        let at = crate::pipeline::ms_to_ts(a.at_ms);
        let trace = a.trace_id.map(|t| format!(" (trace {t})")).unwrap_or_default();
        out.push_str(&format!("alias {} → {id} since {}{trace}\n", a.alias, crate::pipeline::fmt_ts(at)));
    }
    for r in records {
        if let Some(from) = r.detail.get("merged_from").and_then(|v| v.as_str()) {
            out.push_str(&format!(
                "merged {from} into {id} at {} (trace {})\n",
                crate::pipeline::fmt_ts(r.at),
                r.trace_id
            ));
        }
    }
    if records.is_empty() {
        out.push_str(&format!("no audit records for {id}\n"));
    }
    for r in records {
        out.push_str(&record_line(r));
        out.push('\n');
    }
    out
}

/// `audit show` as text. A delivery's trail ends in its terminal state, or says it is still in progress. A
/// model refit's trace, or an admin API access's, belongs to no delivery and never has a terminal state: it
/// is headed as what it is and has no terminal line (it is not a delivery waiting for one).
fn show_text(view: &TraceView) -> String {
    let own = view.terminal.is_none()
        && !view.records.is_empty()
        && view.records.iter().all(|r| r.stage.belongs_to_no_delivery());
    let only = |stage: AuditStage| view.records.iter().all(|r| r.stage == stage);
    let mut out = if own && only(AuditStage::ModelRefit) {
        format!("model refit (trace {})\n", view.trace_id)
    } else if own && only(AuditStage::ApiAccess) {
        format!("admin API access (trace {})\n", view.trace_id)
    } else {
        format!("trace {}\n", view.trace_id)
    };
    for r in &view.records {
        out.push_str(&record_line(r));
        out.push('\n');
    }
    if !own {
        match &view.terminal {
            Some(t) => out.push_str(&format!("terminal: {t}\n")),
            None => out.push_str("terminal: (not yet — still in progress)\n"),
        }
    }
    out
}

fn record_line(r: &AuditRecord) -> String {
    let at = crate::pipeline::fmt_ts(r.at);
    let who = r.customer.as_ref().map(|c| c.to_string()).unwrap_or_else(|| "-".into());
    format!("{at}  {:<16} {:<22} {}", r.stage.as_str(), who, r.detail)
}

pub async fn replay(cfg: &Config, cmd: ReplayCmd) -> anyhow::Result<()> {
    let store = crate::app::open_store(cfg).await?;
    match cmd {
        ReplayCmd::Quarantined { trace } => {
            let t = trace.as_deref().map(parse_trace).transpose()?;
            let spinner = crate::cli::spinner("queueing quarantined deliveries");
            let n = store.requeue_quarantined(t).await?;
            spinner.finish_and_clear();
            println!("{n} quarantined deliveries queued for processing");
        }
        ReplayCmd::DeadLetters { trace, destination, since } => {
            let t = trace.as_deref().map(parse_trace).transpose()?;
            let known = cfg.destination_names();
            if let Some(d) = &destination
                && !known.iter().any(|k| k == d)
            {
                return Err(crate::cli::UsageError(format!(
                    "destination `{d}` is not configured (configured: {}); dead letters are replayed to a destination \
                     the server can reach",
                    if known.is_empty() { "none".to_string() } else { known.join(", ") }
                ))
                .into());
            }
            let since_ms = since
                .as_deref()
                .map(|s| crate::report_cli::parse_instant("since", s, time::OffsetDateTime::now_utc()))
                .transpose()?;
            let filter =
                nudge_store::DeadLetterFilter { trace: t, destination: destination.clone(), since_ms };
            let spinner = crate::cli::spinner("queueing dead-lettered pushes");
            let n = store.requeue_dead_letters(filter).await?;
            spinner.finish_and_clear();
            match destination {
                Some(d) => println!("{n} dead-lettered pushes to {d} queued for delivery"),
                None => println!("{n} dead-lettered pushes queued for delivery"),
            }
        }
        ReplayCmd::FetchJobs { trace } => {
            let t = trace.as_deref().map(parse_trace).transpose()?;
            let spinner = crate::cli::spinner("queueing dead-lettered fetch jobs");
            let n = store.requeue_fetch_jobs(t).await?;
            spinner.finish_and_clear();
            println!("{n} dead-lettered fetch jobs queued to run again");
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nudge_model::TerminalState;

    fn record(trace: TraceId, stage: AuditStage, detail: serde_json::Value) -> AuditRecord {
        let at = time::OffsetDateTime::from_unix_timestamp(1_700_000_000).unwrap();
        AuditRecord { trace_id: trace, customer: None, stage, at, detail }
    }

    /// Dead letters are replayed per destination; an unknown destination or a bad instant is refused.
    #[tokio::test]
    async fn dead_letters_replay_names_a_configured_destination() {
        let dir = tempfile::tempdir().unwrap();
        let mut cfg = Config::from_toml("", &Default::default()).unwrap();
        cfg.storage.data_dir = dir.path().to_path_buf();
        cfg.destinations.klaviyo = Some(nudge_deliver::klaviyo::KlaviyoConfig::new("pk_test_replay"));
        let cmd = |destination: Option<&str>, since: Option<&str>| ReplayCmd::DeadLetters {
            trace: None,
            destination: destination.map(str::to_string),
            since: since.map(str::to_string),
        };
        let e = replay(&cfg, cmd(Some("braze"), None)).await.unwrap_err().to_string();
        assert!(e.contains("destination `braze` is not configured (configured: klaviyo)"), "{e}");
        let e = replay(&cfg, cmd(Some("klaviyo"), Some("last tuesday"))).await.unwrap_err().to_string();
        assert!(e.starts_with("since:"), "{e}");
        replay(&cfg, cmd(Some("klaviyo"), Some("24h"))).await.unwrap();
    }

    /// A refit's trace is shown as a refit, not as a delivery still waiting for its terminal state.
    #[test]
    fn show_heads_a_refit_trace_as_a_refit() {
        let t = TraceId::new();
        let detail = serde_json::json!({ "version": "bgnbd-7", "activated": false, "reason": "holdout quality dropped" });
        let view = TraceView {
            trace_id: t,
            records: vec![record(t, AuditStage::ModelRefit, detail)],
            terminal: None,
        };
        let text = show_text(&view);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], format!("model refit (trace {t})"));
        assert_eq!(lines.len(), 2, "{text}");
        assert!(lines[1].contains("model_refit") && lines[1].contains("holdout quality dropped"), "{text}");
        assert!(!text.contains("terminal") && !text.contains("in progress"), "{text}");
        // The JSON form keeps the trace view's shape.
        let json = serde_json::to_value(&view).unwrap();
        assert_eq!(json["terminal"], serde_json::Value::Null);
        assert_eq!(json["records"][0]["stage"], "model_refit");
    }

    /// An admin API access's trace is headed as one, with no terminal line.
    #[test]
    fn show_heads_an_api_access_trace_as_one() {
        let t = TraceId::new();
        let detail = serde_json::json!({ "method": "GET", "path": "/api/flows", "status": 401 });
        let view = TraceView {
            trace_id: t,
            records: vec![record(t, AuditStage::ApiAccess, detail)],
            terminal: None,
        };
        let text = show_text(&view);
        assert!(text.starts_with(&format!("admin API access (trace {t})\n")), "{text}");
        assert!(!text.contains("terminal"), "{text}");
    }

    /// A customer's trail names the ids stitched to it and the states merged into it.
    #[test]
    fn customer_text_lists_aliases_and_merges() {
        let id: CustomerId = "shopify:1".parse().unwrap();
        let t = TraceId::new();
        let aliases = vec![nudge_store::AliasRecord {
            alias: "anon:v-1".into(),
            customer: id.clone(),
            at_ms: 1_700_000_000_000,
            trace_id: Some(t),
        }];
        let mut merged =
            record(t, AuditStage::StateChanged, serde_json::json!({ "merged_from": "anon:v-1" }));
        merged.customer = Some(id.clone());
        let text = customer_text(&id, &aliases, &[merged]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], format!("alias anon:v-1 → shopify:1 since 2023-11-14T22:13:20Z (trace {t})"));
        assert!(lines[1].starts_with("merged anon:v-1 into shopify:1 at "), "{text}");
        assert_eq!(lines.len(), 3, "{text}");
        assert_eq!(customer_text(&id, &[], &[]), "no audit records for shopify:1\n");
    }

    /// A delivery's trace keeps its header and terminal line, settled or not.
    #[test]
    fn show_ends_a_delivery_trace_with_its_terminal_state() {
        let t = TraceId::new();
        let mut view = TraceView {
            trace_id: t,
            records: vec![record(t, AuditStage::Received, serde_json::json!({ "topic": "orders/create" }))],
            terminal: None,
        };
        let text = show_text(&view);
        assert!(text.starts_with(&format!("trace {t}\n")), "{text}");
        assert!(text.ends_with("terminal: (not yet — still in progress)\n"), "{text}");
        view.terminal = Some(TerminalState::Ignored("nothing to do".into()));
        assert!(show_text(&view).ends_with("terminal: ignored (nothing to do)\n"));
    }
}
