//! `nudge migrate --to postgres`: copies the embedded store (`ingest.db` and `nudge.db` in the data
//! directory) into the PostgreSQL database the configuration names (`storage.postgres_url`,
//! `postgres_schema`), so a deployment can switch to the scale-out backend. `[storage] backend` may still be
//! `sqlite` while migrating; it is set to `postgres` afterwards.
//!
//! The copy keeps every key (delivery seqs, ids), so it can run again after an interruption and copies only
//! what is missing; rows already in PostgreSQL are left as they are. See `nudge_store::migrate`.

use crate::cli::UsageError;
use crate::config::Config;
use clap::{Args, ValueEnum};
use nudge_store::migrate::{MigrationReport, sqlite_to_postgres};
use nudge_store::postgres::{PgConfig, PgStore};
use std::io::{BufRead, IsTerminal, Write};
use std::path::PathBuf;

/// The backend to copy into.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Target {
    /// The PostgreSQL database of `storage.postgres_url` (and `storage.postgres_schema`).
    Postgres,
}

#[derive(Debug, Args)]
pub struct MigrateArgs {
    /// The backend to copy the embedded store into.
    #[arg(long, value_enum)]
    pub to: Target,
    /// The embedded store's data directory (holding `ingest.db` and `nudge.db`). Default: `storage.data_dir`.
    #[arg(long, value_name = "DIR")]
    pub from: Option<PathBuf>,
    /// Copy without asking for confirmation (needed when stdin is not a terminal).
    #[arg(long)]
    pub yes: bool,
}

pub async fn run(cfg: &Config, args: MigrateArgs) -> anyhow::Result<()> {
    let Target::Postgres = args.to;
    let url = cfg.storage.postgres_url.clone().filter(|u| !u.trim().is_empty()).ok_or_else(|| {
        UsageError(
            "storage.postgres_url is not set: name the PostgreSQL database to copy into ([storage] \
             postgres_url = \"postgres://user:password@host:5432/db\" or NUDGE__STORAGE__POSTGRES_URL); \
             `backend` may stay \"sqlite\" while migrating"
                .into(),
        )
    })?;
    if !(url.starts_with("postgres://") || url.starts_with("postgresql://")) {
        return Err(
            UsageError("storage.postgres_url must start with postgres:// or postgresql://".into()).into()
        );
    }
    let from = args.from.clone().unwrap_or_else(|| cfg.storage.data_dir.clone());
    let missing: Vec<&str> =
        ["ingest.db", "nudge.db"].into_iter().filter(|f| !from.join(f).is_file()).collect();
    if !missing.is_empty() {
        return Err(UsageError(format!(
            "{} is not an embedded store's data directory: no {} (name it with --from or storage.data_dir)",
            from.display(),
            missing.join(" or ")
        ))
        .into());
    }
    let schema = cfg.storage.postgres_schema.clone();
    eprintln!(
        "Copying the embedded store in {} into PostgreSQL (schema {schema}).\n\
         Stop the embedded server first (`nudge serve` on this data directory): what it writes during the \
         copy may be missed. The copy can run again: it adds only what is missing.",
        from.display()
    );
    if !args.yes && !confirm()? {
        return Err(UsageError("not migrated (confirm with y, or pass --yes)".into()).into());
    }
    let mut pg = PgConfig::new(url);
    pg.schema = Some(schema.clone());
    pg.max_connections = cfg.storage.postgres_pool;
    let store = PgStore::connect(&pg)
        .await
        .map_err(|e| anyhow::anyhow!("connecting to PostgreSQL (schema {schema}): {e}"))?;
    let spinner = crate::cli::spinner("migrating");
    let report = sqlite_to_postgres(&from, &store, |table, done| {
        if crate::cli::progress_enabled() {
            spinner.set_message(format!("{table}: {done} rows"));
        } else {
            eprintln!("{table}: {done} rows");
        }
    })
    .await;
    spinner.finish_and_clear();
    store.close().await;
    let report = report?;
    print!("{}", summary(&report));
    eprintln!(
        "Migrated. Now set `backend = \"postgres\"` under [storage] (NUDGE__STORAGE__BACKEND=postgres) and start \
         nudge; keep {} until the new deployment is checked.",
        from.display()
    );
    Ok(())
}

/// Asks on the terminal; refuses (false) when stdin is not one.
fn confirm() -> anyhow::Result<bool> {
    if !std::io::stdin().is_terminal() {
        return Err(
            UsageError("stdin is not a terminal: pass --yes to migrate without a prompt".into()).into()
        );
    }
    eprint!("Continue? [y/N] ");
    std::io::stderr().flush()?;
    let mut line = String::new();
    std::io::stdin().lock().read_line(&mut line)?;
    Ok(matches!(line.trim(), "y" | "Y" | "yes" | "YES" | "Yes"))
}

/// The report, one line a table, then the totals.
pub fn summary(report: &MigrationReport) -> String {
    let mut out = format!("{:<22} {:>12} {:>16}\n", "table", "copied", "already present");
    for t in &report.tables {
        if t.absent {
            out.push_str(&format!("{:<22} {:>12} {:>16}  (not in the embedded store)\n", t.table, "-", "-"));
        } else {
            out.push_str(&format!("{:<22} {:>12} {:>16}\n", t.table, t.copied, t.already_present));
        }
    }
    out.push_str(&format!("{:<22} {:>12} {:>16}\n", "total", report.copied(), report.already_present()));
    out
}
