//! `nudge audit` and `nudge replay`: read the audit trail, and put quarantined deliveries or dead-lettered
//! pushes back into processing. Both work on the data directory directly, with or without a running server
//! (a running server picks replayed work up within a second).

use crate::config::Config;
use clap::Subcommand;
use nudge_model::{AuditRecord, CustomerId, TraceId};

#[derive(Subcommand)]
pub enum AuditCmd {
    /// Everything that happened to one delivery, from receipt to its terminal state.
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
    /// Counts by state: deliveries, quarantine, outbox, terminal states.
    Stats,
}

#[derive(Subcommand)]
pub enum ReplayCmd {
    /// Re-process deliveries kept in quarantine (all, or one trace).
    Quarantined {
        #[arg(long)]
        trace: Option<String>,
    },
    /// Re-send pushes that ran out of retries (all, or one trace).
    DeadLetters {
        #[arg(long)]
        trace: Option<String>,
    },
}

fn parse_trace(s: &str) -> anyhow::Result<TraceId> {
    s.parse()
        .map_err(|_| anyhow::anyhow!("`{s}` is not a trace id (a UUID such as the one in the audit trail)"))
}

pub async fn audit(cfg: &Config, cmd: AuditCmd) -> anyhow::Result<()> {
    let store = crate::app::open_store(cfg)?;
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
                println!("trace {trace}");
                for r in &view.records {
                    print_record(r);
                }
                match &view.terminal {
                    Some(t) => println!("terminal: {t}"),
                    None => println!("terminal: (not yet — still in progress)"),
                }
            }
        }
        AuditCmd::Customer { customer_id, limit, json } => {
            let id: CustomerId = customer_id.parse()?;
            let records = store.customer_audit(&id, limit).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&records)?);
            } else if records.is_empty() {
                println!("no audit records for {id}");
            } else {
                for r in &records {
                    print_record(r);
                }
            }
        }
        AuditCmd::Stats => {
            let s = store.stats().await?;
            println!("{}", serde_json::to_string_pretty(&s)?);
        }
    }
    Ok(())
}

fn print_record(r: &AuditRecord) {
    let at = crate::pipeline::fmt_ts(r.at);
    let who = r.customer.as_ref().map(|c| c.to_string()).unwrap_or_else(|| "-".into());
    println!("{at}  {:<16} {:<22} {}", r.stage.as_str(), who, r.detail);
}

pub async fn replay(cfg: &Config, cmd: ReplayCmd) -> anyhow::Result<()> {
    let store = crate::app::open_store(cfg)?;
    match cmd {
        ReplayCmd::Quarantined { trace } => {
            let t = trace.as_deref().map(parse_trace).transpose()?;
            let n = store.requeue_quarantined(t).await?;
            println!("{n} quarantined deliveries queued for processing");
        }
        ReplayCmd::DeadLetters { trace } => {
            let t = trace.as_deref().map(parse_trace).transpose()?;
            let n = store.requeue_dead_letters(t).await?;
            println!("{n} dead-lettered pushes queued for delivery");
        }
    }
    Ok(())
}
