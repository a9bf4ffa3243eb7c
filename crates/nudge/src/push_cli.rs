//! `nudge push`: a batch push of every selected customer's current scores to one destination, with a
//! progress bar and a summary (see [`crate::push`] for what a run does).

use crate::config::Config;
use crate::push::{PushError, PushOptions, PushProgress, PushSummary, Selector};
use std::sync::Arc;

#[derive(Debug, clap::Args)]
pub struct PushCmd {
    /// The destination to push to (`klaviyo`, `braze`, `hubspot`, `marketo`, `webhook:<name>`).
    #[arg(long)]
    pub destination: String,
    /// Push only the customers currently in this segment.
    #[arg(long, conflicts_with = "all")]
    pub segment: Option<String>,
    /// Push every customer.
    #[arg(long)]
    pub all: bool,
    /// Count what would be pushed and show one profile update; send nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Start from the first customer even when an unfinished run with the same selection exists.
    #[arg(long)]
    pub restart: bool,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
}

/// Checks the command against the configuration and builds the run's options.
pub fn options(cfg: &Config, cmd: &PushCmd) -> Result<PushOptions, PushError> {
    let known = cfg.destination_names();
    if !known.contains(&cmd.destination) {
        return Err(PushError::Usage(format!(
            "destination `{}` is not configured (configured: {})",
            cmd.destination,
            if known.is_empty() { "none".to_string() } else { known.join(", ") }
        )));
    }
    if nudge_policy::flows::is_alert_channel(&cmd.destination) {
        return Err(PushError::Usage(format!(
            "`{}` takes alerts only; push profiles to a marketing platform or a webhook",
            cmd.destination
        )));
    }
    let selector = match (&cmd.segment, cmd.all) {
        (Some(s), _) => Selector::segment(s)?,
        (None, true) => Selector::All,
        (None, false) => {
            return Err(PushError::Usage(
                "say which customers to push: --all, or --segment <name>".to_string(),
            ));
        }
    };
    Ok(PushOptions {
        destination: cmd.destination.clone(),
        selector,
        dry_run: cmd.dry_run,
        restart: cmd.restart,
        page: None,
    })
}

pub async fn run(cfg: &Config, cmd: PushCmd) -> anyhow::Result<()> {
    let opts = options(cfg, &cmd)?;
    let store = crate::app::open_store(cfg).await?;
    let scoring =
        crate::pipeline::Scoring::new(nudge_scoring::RulesScorer { thresholds: cfg.segments.clone() });
    crate::models_cli::load_active_scorer(&*store, &scoring, cfg).await?;
    let mut dests = crate::app::destinations(cfg)?;
    let destination = dests.remove(&opts.destination).expect("checked against the configured names");
    let settings = cfg.delivery_for(&opts.destination);
    let total = store.stats().await?.customers;
    let bar = indicatif::ProgressBar::new(total);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "{spinner} {elapsed_precise} [{bar:30}] {pos}/{len} customers ({per_sec}, eta {eta}) {msg}",
        )
        .expect("a valid template")
        .progress_chars("=> "),
    );
    if let Some(previous) = store.push_run(&opts.destination).await?
        && !previous.done
        && previous.selector == opts.selector.key()
        && !opts.restart
        && !opts.dry_run
    {
        eprintln!(
            "resuming the push to {} started {} (after customer {}; {} pushed so far)",
            opts.destination,
            crate::pipeline::fmt_ts(crate::pipeline::ms_to_ts(previous.started_at_ms)),
            previous.cursor.map(|c| c.to_string()).unwrap_or_else(|| "-".into()),
            previous.pushed
        );
    }
    let progress = {
        let bar = bar.clone();
        move |p: PushProgress| {
            bar.set_position(p.scanned);
            bar.set_message(format!(
                "pushed {} · refused {} · to outbox {}",
                p.pushed, p.rejected, p.deferred
            ));
        }
    };
    let summary = crate::push::run(
        &store,
        &scoring,
        &cfg.policy(),
        Arc::clone(&destination),
        &settings,
        &opts,
        &progress,
    )
    .await?;
    bar.finish_and_clear();
    if cmd.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    } else {
        print_summary(&summary);
    }
    Ok(())
}

fn print_summary(s: &PushSummary) {
    let verb = if s.dry_run { "would push" } else { "pushed" };
    println!(
        "push to {} ({}){}",
        s.destination,
        s.selector,
        if s.dry_run { " — dry run, nothing sent" } else { "" }
    );
    if let Some(c) = &s.resumed_after {
        println!("  resumed after customer {c}");
    }
    println!("  customers scanned {} · selected {}", s.scanned, s.selected);
    if s.dry_run {
        println!("  {verb} {} profiles in about {} bulk calls", s.selected, s.calls);
        if let Some(sample) = &s.sample {
            println!("  one profile update: {sample}");
        }
        return;
    }
    println!(
        "  {verb} {} · refused {} · handed to the outbox {} · {} bulk calls in {:.1}s ({:.0} profiles/s)",
        s.pushed,
        s.rejected,
        s.deferred,
        s.calls,
        s.seconds,
        if s.seconds > 0.0 { s.selected as f64 / s.seconds } else { 0.0 }
    );
    for (customer, error) in &s.errors {
        println!("  refused {customer}: {error}");
    }
    if s.deferred > 0 {
        println!("  the outbox retries the {} deferred profiles while the server runs", s.deferred);
    }
}
