//! `nudge privacy erase | export | status` (see [`crate::privacy`] for what an erasure does).

use crate::config::Config;
use crate::privacy::{self, PrivacyWorker};
use anyhow::Context;
use nudge_ingest::PrivacyRequest;
use nudge_model::{CustomerId, TraceId};
use std::path::PathBuf;
use std::time::Duration;

#[derive(Debug, clap::Subcommand)]
pub enum PrivacyCmd {
    /// Erase one person: from nudge's own files at once, then at every destination that holds them
    /// (each request tracked until it is done or failed). Irreversible.
    Erase {
        /// The customer's key, such as `shopify:880012`.
        #[arg(long)]
        customer: String,
        /// Show what would be removed and which destinations would be asked; change nothing.
        #[arg(long)]
        dry_run: bool,
        /// How long to wait for the destinations' answers before leaving the rest to the server.
        #[arg(long, default_value = "60")]
        wait_secs: u64,
    },
    /// Write everything nudge holds about one person as one JSON document.
    Export {
        #[arg(long)]
        customer: String,
        /// The file to write (standard output when absent).
        #[arg(long)]
        out: Option<PathBuf>,
    },
    /// Erasures and exports, with each destination's state.
    Status {
        /// Only this customer's jobs.
        #[arg(long)]
        customer: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

fn customer(s: &str) -> anyhow::Result<CustomerId> {
    s.parse().map_err(|e| anyhow::anyhow!("--customer `{s}`: {e}"))
}

pub async fn run(cfg: &Config, cmd: PrivacyCmd) -> anyhow::Result<()> {
    privacy::init_key(cfg).context("the pseudonym key")?;
    let store = crate::app::open_store(cfg).await?;
    match cmd {
        PrivacyCmd::Erase { customer: c, dry_run, wait_secs } => {
            let c = customer(&c)?;
            let subject = privacy::subject_for(&*store, &c).await?;
            if dry_run {
                let p = store.preview_erasure(subject.customers.clone(), subject.email.clone()).await?;
                println!("dry run: erasing {} would remove", privacy::pseudonym_of(&c));
                println!("{}", serde_json::to_string_pretty(&p)?);
                return Ok(());
            }
            let req = PrivacyRequest::Erase { subject, reference: None };
            let job = privacy::job_for(&req, TraceId::new(), "cli".into(), crate::outbox::now_ms())
                .context("the request names nobody")?;
            let pseudonym = job.pseudonym.clone();
            let id = store.submit_privacy_job(job).await?;
            println!("erased {pseudonym} from nudge (job {id}); asking the destinations");
            let worker = PrivacyWorker {
                store: store.clone(),
                destinations: crate::app::destinations(cfg)?,
                data_dir: cfg.storage.data_dir.clone(),
            };
            let pass = worker.run_until_done(Duration::from_secs(wait_secs)).await?;
            for j in store.privacy_jobs(false, Some(pseudonym)).await?.iter().filter(|j| j.id == id) {
                println!("{}", privacy::describe(j));
            }
            if pass.pending > 0 {
                println!(
                    "some requests are still being retried; the server continues them (`nudge privacy status`)"
                );
            }
            Ok(())
        }
        PrivacyCmd::Export { customer: c, out } => {
            let c = customer(&c)?;
            let subject = privacy::subject_for(&*store, &c).await?;
            let doc = privacy::export_document(&*store, subject.customers).await?;
            let text = serde_json::to_string_pretty(&doc)?;
            match out {
                Some(path) => {
                    std::fs::write(&path, text).with_context(|| format!("writing {}", path.display()))?;
                    eprintln!("wrote {}", path.display());
                }
                None => println!("{text}"),
            }
            Ok(())
        }
        PrivacyCmd::Status { customer: c, json } => {
            let pseudonym = c.as_deref().map(customer).transpose()?.map(|c| privacy::pseudonym_of(&c));
            let jobs = store.privacy_jobs(false, pseudonym).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&jobs)?);
            } else if jobs.is_empty() {
                println!("no privacy jobs");
            } else {
                for j in &jobs {
                    println!("{}", privacy::describe(j));
                }
            }
            Ok(())
        }
    }
}
