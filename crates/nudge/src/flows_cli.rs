//! `nudge flows`: list the configured flows, dry-run one for a customer, and make a running server re-read
//! them.
//!
//! The flows themselves (checking, compiling, deciding) live in `nudge_policy::flows`; this module reads
//! the customer from the store, scores them as the server would, and prints.

use crate::config::Config;
use crate::pipeline::Scoring;
use anyhow::{Context, anyhow, bail};
use clap::Subcommand;
use nudge_model::CustomerId;
use nudge_policy::flows::{DryRun, FlowSet, Subject};
use nudge_state::CustomerState;
use serde_json::json;
use std::path::{Path, PathBuf};

#[derive(Subcommand, Debug)]
pub enum FlowsCmd {
    /// The configured flows (or the built-in ones), with the set's version.
    List {
        #[arg(long)]
        json: bool,
    },
    /// What a flow would do for one customer now: the condition term by term and every check after it.
    /// Nothing is decided, recorded or sent.
    Test {
        /// The flow's name.
        #[arg(long)]
        flow: String,
        /// The customer, as `source:id` (`shopify:880012`).
        #[arg(long)]
        customer: String,
        #[arg(long)]
        json: bool,
    },
    /// Make the running server re-read its flows (the same as sending it SIGHUP). The flows are checked
    /// first; an invalid set is refused and the running set stays.
    Reload,
}

pub async fn run(cfg: &Config, config_path: Option<&Path>, cmd: FlowsCmd) -> anyhow::Result<()> {
    let set = cfg.flow_set().map_err(|e| anyhow!("{e}"))?;
    match cmd {
        FlowsCmd::List { json } => list(cfg, &set, json),
        FlowsCmd::Test { flow, customer, json } => test(cfg, &set, &flow, &customer, json).await,
        FlowsCmd::Reload => reload(cfg, config_path, &set),
    }
}

fn list(cfg: &Config, set: &FlowSet, json_out: bool) -> anyhow::Result<()> {
    let builtin = cfg.flows.is_none();
    if json_out {
        let flows: Vec<_> = set
            .flows
            .iter()
            .map(|f| {
                json!({
                    "name": f.spec.name, "trigger": f.spec.trigger, "schedule": f.spec.schedule,
                    "mode": f.spec.mode, "when": f.spec.when, "holdout_percent": f.spec.holdout_percent,
                    "frequency_cap": f.spec.frequency_cap, "baseline": f.spec.baseline,
                    "actions": f.spec.actions,
                })
            })
            .collect();
        let doc = json!({ "version": set.version, "builtin": builtin, "flows": flows });
        println!("{}", serde_json::to_string_pretty(&doc)?);
        return Ok(());
    }
    println!(
        "flow set {} ({} flows{})",
        set.version,
        set.flows.len(),
        if builtin { ", built in: the config has no [[flows]]" } else { "" }
    );
    for f in &set.flows {
        let s = &f.spec;
        println!();
        println!("{}  trigger {}  mode {:?}", s.name, s.trigger.as_str(), s.mode);
        if let Some(schedule) = &f.schedule {
            let next = schedule.next_after(time::OffsetDateTime::now_utc());
            let next = next.map_or("none".to_string(), crate::pipeline::fmt_ts);
            println!("  schedule: {} (UTC; next {next})", schedule.as_str());
        }
        println!("  when: {}", s.when.as_deref().unwrap_or("(always)"));
        if let Some(b) = &s.baseline {
            println!("  baseline: {b}");
        }
        if s.holdout_percent > 0 {
            println!("  holdout: {}%", s.holdout_percent);
        }
        if let Some(c) = &s.frequency_cap {
            println!("  frequency cap: {c}");
        }
        for a in &s.actions {
            println!("  action: {}", a.describe());
        }
    }
    Ok(())
}

async fn test(cfg: &Config, set: &FlowSet, flow: &str, customer: &str, json_out: bool) -> anyhow::Result<()> {
    if set.get(flow).is_none() {
        let names: Vec<&str> = set.flows.iter().map(|f| f.spec.name.as_str()).collect();
        bail!("no flow named `{flow}`; the flows are: {}", names.join(", "));
    }
    let id: CustomerId =
        customer.parse().map_err(|e| anyhow!("`{customer}` is not a customer id (source:id): {e}"))?;
    let store = crate::app::open_store(cfg).await?;
    let stored = store.load_states(std::slice::from_ref(&id)).await?;
    let state: CustomerState = match stored.first() {
        Some(s) => CustomerState::decode(&s.state).with_context(|| format!("the stored state of {id}"))?,
        None => bail!("customer {id} is not known to nudge (no event or imported order has named them)"),
    };
    let scoring = Scoring::new(nudge_scoring::RulesScorer { thresholds: cfg.segments.clone() });
    crate::models_cli::load_active_scorer(&*store, &scoring, cfg).await?;
    let now = time::OffsetDateTime::now_utc();
    let (scores, fallback) = scoring.score(&state, now);
    let policy = cfg.policy();
    let subject = Subject {
        state: &state,
        scores: &scores,
        history: &state.flow_history,
        event: None,
        now,
        policy: &policy,
    };
    let run = set.dry_run(flow, &subject).expect("the flow exists");
    if json_out {
        let doc =
            json!({ "customer": id.to_string(), "scores": scores, "fallback": fallback, "result": run });
        println!("{}", serde_json::to_string_pretty(&doc)?);
    } else {
        print_dry_run(&id, &scores, fallback.as_deref(), &run);
    }
    Ok(())
}

fn print_dry_run(id: &CustomerId, scores: &nudge_model::ScoreSet, fallback: Option<&str>, r: &DryRun) {
    println!("flow {} ({}), trigger {}, mode {:?}", r.flow, r.flow_version, r.trigger.as_str(), r.mode);
    println!(
        "customer {id}, scored by {}{}",
        scores.model_version,
        match fallback {
            Some(why) => format!(" (rules fallback: {why})"),
            None => String::new(),
        }
    );
    println!();
    println!("condition: {}", r.condition);
    for (text, value) in &r.terms {
        println!("  {text}  →  {value}");
    }
    match &r.matched {
        Ok(m) => println!("  = {m}"),
        Err(e) => println!("  = error: {e}"),
    }
    if let Some(b) = r.baseline {
        println!("baseline rule: {b}");
    }
    println!("holdout: {}", if r.held_out { "in the holdout group" } else { "not held out" });
    println!("consent: {}", if r.consent { "ok" } else { "no email marketing consent" });
    if let Some(c) = &r.cap {
        println!("frequency cap: {c}");
    }
    println!();
    println!("would: {}", r.verdict);
    for a in &r.actions {
        println!("  {a}");
    }
    println!("(dry run: nothing was recorded or sent)");
}

/// Where a running server writes its process id: `<data_dir>/nudge.pid`.
pub fn pid_file(cfg: &Config) -> PathBuf {
    cfg.storage.data_dir.join("nudge.pid")
}

/// A running server's hold on its pid file: an exclusive advisory lock (`flock`) for the life of the process,
/// so a second server on the same data directory is refused, and a pid file left by a server that died is
/// told apart from a live one (its lock went with the process) before anyone is signalled.
pub struct PidLock {
    _file: std::fs::File,
}

impl PidLock {
    /// Locks `path` (creating it) and writes this process's id into it; fails when another process holds it.
    pub fn acquire(path: &Path) -> anyhow::Result<PidLock> {
        use std::io::Write as _;
        let mut file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(path)
            .with_context(|| format!("cannot open the pid file {}", path.display()))?;
        if !try_lock(&file, libc::LOCK_EX) {
            let other = std::fs::read_to_string(path).unwrap_or_default();
            bail!(
                "another nudge server (pid {}) is running on this data directory ({} is locked)",
                other.trim(),
                path.display()
            );
        }
        file.set_len(0)?;
        writeln!(file, "{}", std::process::id())?;
        file.flush()?;
        Ok(PidLock { _file: file })
    }
}

/// `flock(fd, op | LOCK_NB)`: true when the lock was taken.
fn try_lock(file: &std::fs::File, op: libc::c_int) -> bool {
    use std::os::fd::AsRawFd as _;
    // SAFETY: flock(2) on a descriptor this file owns for the duration of the call.
    unsafe { libc::flock(file.as_raw_fd(), op | libc::LOCK_NB) == 0 }
}

fn reload(cfg: &Config, config_path: Option<&Path>, set: &FlowSet) -> anyhow::Result<()> {
    let path = pid_file(cfg);
    let file = std::fs::File::open(&path)
        .with_context(|| format!("no running server found ({} is missing)", path.display()))?;
    // A live server holds the lock: if it can be taken, the file was left by a server that is gone, and
    // its process id may belong to another program by now.
    if try_lock(&file, libc::LOCK_SH) {
        bail!("no running server found ({} is stale: no server holds it)", path.display());
    }
    let text = std::fs::read_to_string(&path)
        .with_context(|| format!("no running server found ({} is missing)", path.display()))?;
    let pid: i32 =
        text.trim().parse().with_context(|| format!("{} does not hold a process id", path.display()))?;
    #[cfg(unix)]
    {
        // SAFETY: kill(2) with a plain process id and a signal number; no memory is shared.
        let rc = unsafe { libc::kill(pid, libc::SIGHUP) };
        if rc != 0 {
            bail!("cannot signal the server (pid {pid}): {}", std::io::Error::last_os_error());
        }
    }
    println!(
        "flow set {} ({} flows{}) checked; server {pid} asked to reload it",
        set.version,
        set.flows.len(),
        config_path.map(|p| format!(" from {}", p.display())).unwrap_or_default()
    );
    Ok(())
}
