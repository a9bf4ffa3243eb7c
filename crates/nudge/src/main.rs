//! The `nudge` command line.

use clap::{Parser, Subcommand};
use nudge::config::Config;
use std::path::PathBuf;
use std::process::ExitCode;

/// mimalloc: the request path allocates small buffers on several threads; glibc malloc spent ~10% of the
/// CPU under load in profiles, mimalloc a fraction of that.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "nudge", version, about = "The AI layer between an online store and its marketing platform")]
struct Cli {
    /// Configuration file (TOML). Without it, defaults and NUDGE__* environment overrides apply.
    #[arg(long, short, global = true, env = "NUDGE_CONFIG")]
    config: Option<PathBuf>,
    /// Overrides `storage.data_dir`.
    #[arg(long, global = true)]
    data_dir: Option<PathBuf>,
    /// Log as JSON lines.
    #[arg(long, global = true)]
    log_json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server: webhooks in, scores and events out.
    Serve,
    /// Run a synthetic store end to end on this machine (no services, no accounts) and print a summary.
    Demo(nudge::demo::DemoArgs),
    /// Configuration commands.
    #[command(subcommand)]
    Config(ConfigCmd),
    /// Show the audit trail.
    #[command(subcommand)]
    Audit(nudge::audit_cli::AuditCmd),
    /// Re-process quarantined deliveries or re-send dead-lettered pushes.
    #[command(subcommand)]
    Replay(nudge::audit_cli::ReplayCmd),
    /// Push every selected customer's current scores to one destination in bulk (progress bar,
    /// resumable).
    Push(nudge::push_cli::PushCmd),
    /// Import order history (idempotent).
    Import(nudge::import::ImportArgs),
    /// Fit, score, list and activate predictive models.
    #[command(subcommand)]
    Models(nudge::models_cli::ModelsCmd),
    /// List the flows, dry-run one for a customer, make the server reload them.
    #[command(subcommand)]
    Flows(nudge::flows_cli::FlowsCmd),
    /// Create, list and revoke the admin API's tokens.
    #[command(subcommand)]
    Tokens(nudge::tokens_cli::TokensCmd),
    /// Decisions waiting for approval: list, approve, reject (one by one or --all).
    #[command(subcommand)]
    Approvals(nudge::approvals_cli::ApprovalsCmd),
    /// A flow's shadow report (against its baseline rule) or lift report (treated against held out).
    #[command(subcommand)]
    Report(nudge::report_cli::ReportCmd),
    /// Run a decision model's simulator (known ground truth) and print how the models do on it.
    Simulate(nudge::simulate_cli::SimulateArgs),
    /// Erase or export one person; the state of erasures at each destination.
    #[command(subcommand)]
    Privacy(nudge::privacy_cli::PrivacyCmd),
    /// Prompts for generated copy: render one for a customer, optionally call the LLM.
    #[command(subcommand)]
    Prompts(nudge::prompts_cli::PromptsCmd),
    /// A customer's recommended products (from the active `recs` version and the catalogue).
    #[command(subcommand)]
    Recs(nudge::recs::RecsCmd),
    /// Behavioural segments proposed from the stored customers, for a marketer to review and name.
    #[command(subcommand)]
    Segments(nudge::segments_cli::SegmentsCmd),
    /// Test hypotheses proposed from a flow's past results, and their variants adopted as flows.
    #[command(subcommand)]
    Campaigns(nudge::campaigns_cli::CampaignsCmd),
    /// Campaign digests: preview one period's, or send it now to Slack and/or email.
    #[command(subcommand)]
    Digest(nudge::digest::DigestCmd),
    /// Nodes sharing a PostgreSQL store: which are live, which leads, what is waiting.
    #[command(subcommand)]
    Cluster(nudge::cluster_cli::ClusterCmd),
    /// Copy the embedded store's data into the PostgreSQL store the configuration names.
    Migrate(nudge::migrate_cli::MigrateArgs),
    /// Developer tools.
    #[command(subcommand)]
    Dev(DevCmd),
}

#[derive(Subcommand)]
enum ConfigCmd {
    /// Validate the configuration and print the effective values (secrets redacted).
    Check,
}

#[derive(Subcommand)]
enum DevCmd {
    /// Run the Klaviyo-compatible fake standalone, to dry-run a configuration.
    FakeKlaviyo {
        #[arg(long, default_value = "127.0.0.1:8090")]
        listen: std::net::SocketAddr,
        /// The private API key the fake accepts.
        #[arg(long, default_value = "pk_fake_demo")]
        api_key: String,
        /// Turn off the fake's rate limits.
        #[arg(long)]
        unthrottled: bool,
        /// A list id that exists in the fake (for add_to_list / remove_from_list flows); repeatable.
        #[arg(long = "list", value_name = "LIST_ID")]
        lists: Vec<String>,
    },
    /// Run a fake of a destination, of BigCommerce's, Yotpo's or Smile.io's API, or of Adobe I/O Events'
    /// key server (`--kind adobe-io`) standalone (each enforces its contract), to dry-run a configuration.
    Fake {
        #[arg(long, value_enum)]
        kind: nudge::demo::FakeKind,
        #[arg(long, default_value = "127.0.0.1:8091")]
        listen: std::net::SocketAddr,
        /// The webhook secret the fake verifies with (`--kind webhook`).
        #[arg(long, default_value = nudge_testkit::fake_webhook::DEFAULT_SECRET)]
        secret: String,
        /// The API key or token the fake accepts (`klaviyo`, `braze`, `hubspot`, `bigcommerce`, `smile`; the
        /// client secret for `yotpo`); each has a default.
        #[arg(long)]
        api_key: Option<String>,
        /// Turn off the fake's rate limits.
        #[arg(long)]
        unthrottled: bool,
        /// A list id that exists in the fake (`--kind klaviyo`); repeatable.
        #[arg(long = "list", value_name = "LIST_ID")]
        lists: Vec<String>,
        /// Milliseconds added to every answer (`--kind llm`, `--kind scorer`).
        #[arg(long, default_value_t = 0)]
        latency_ms: u64,
    },
}

fn main() -> ExitCode {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let cli = Cli::parse();
    // Commands that only print may stop quietly on a closed pipe; the server keeps Rust's default, where a
    // peer that went away is an error on that connection, never a signal to the process.
    if !matches!(cli.command, Command::Serve | Command::Demo(_) | Command::Dev(_)) {
        restore_default_sigpipe();
    }
    // The demo prints its own summary; its logs stay at warnings unless RUST_LOG asks for more.
    let level = if matches!(cli.command, Command::Demo(_)) { "warn" } else { "info" };
    nudge::telemetry::init_logging(cli.log_json, level);
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    rt.block_on(async move {
        let data_dir = cli.data_dir.clone();
        let load = || {
            Config::load(cli.config.as_deref()).map(|mut c| {
                if let Some(d) = &data_dir {
                    c.storage.data_dir = d.clone();
                }
                c
            })
        };
        let result: anyhow::Result<()> = match cli.command {
            Command::Config(ConfigCmd::Check) => match load() {
                Ok(cfg) => {
                    println!("configuration is valid");
                    println!("{cfg:#?}");
                    Ok(())
                }
                Err(e) => return config_error(e),
            },
            Command::Serve => {
                let cfg = match load() {
                    Ok(c) => c,
                    Err(e) => return config_error(e),
                };
                let (config_path, data_dir) = (cli.config.clone(), cli.data_dir.clone());
                let loader: nudge::app::ConfigLoader = std::sync::Arc::new(move || {
                    Config::load(config_path.as_deref()).map(|mut c| {
                        if let Some(d) = &data_dir {
                            c.storage.data_dir = d.clone();
                        }
                        c
                    })
                });
                serve(cfg, loader).await
            }
            Command::Demo(args) => nudge::demo::run(args).await,
            Command::Simulate(args) => nudge::simulate_cli::run(args).await,
            Command::Audit(cmd) => match load() {
                Ok(cfg) => nudge::audit_cli::audit(&cfg, cmd).await,
                Err(e) => return config_error(e),
            },
            Command::Replay(cmd) => match load() {
                Ok(cfg) => nudge::audit_cli::replay(&cfg, cmd).await,
                Err(e) => return config_error(e),
            },
            Command::Push(cmd) => match load() {
                Ok(cfg) => match nudge::push_cli::run(&cfg, cmd).await {
                    Err(e) if matches!(e.downcast_ref(), Some(nudge::push::PushError::Usage(_))) => {
                        eprintln!("error: {e}");
                        return ExitCode::from(2);
                    }
                    r => r,
                },
                Err(e) => return config_error(e),
            },
            Command::Privacy(cmd) => match load() {
                Ok(cfg) => nudge::privacy_cli::run(&cfg, cmd).await,
                Err(e) => return config_error(e),
            },
            Command::Import(args) => match load() {
                Ok(cfg) => nudge::import::run(&cfg, args).await,
                Err(e) => return config_error(e),
            },
            Command::Models(cmd) => match load() {
                Ok(cfg) => nudge::models_cli::run(&cfg, cmd).await,
                Err(e) => return config_error(e),
            },
            Command::Flows(cmd) => match load() {
                Ok(cfg) => match cfg.flow_set() {
                    Ok(_) => nudge::flows_cli::run(&cfg, cli.config.as_deref(), cmd).await,
                    Err(e) => return config_error(e),
                },
                Err(e) => return config_error(e),
            },
            Command::Prompts(cmd) => match load() {
                Ok(cfg) => match nudge::prompts_cli::run(&cfg, cmd).await {
                    Err(e) if e.downcast_ref::<nudge::prompts_cli::UsageError>().is_some() => {
                        eprintln!("error: {e}");
                        return ExitCode::from(2);
                    }
                    r => r,
                },
                Err(e) => return config_error(e),
            },
            Command::Cluster(cmd) => match load() {
                Ok(cfg) => nudge::cluster_cli::run(&cfg, cmd).await,
                Err(e) => return config_error(e),
            },
            Command::Migrate(args) => match load() {
                Ok(cfg) => nudge::migrate_cli::run(&cfg, args).await,
                Err(e) => return config_error(e),
            },
            Command::Tokens(cmd) => match load() {
                Ok(cfg) => nudge::tokens_cli::run(&cfg, cmd).await,
                Err(e) => return config_error(e),
            },
            Command::Recs(cmd) => match load() {
                Ok(cfg) => nudge::recs::run_cli(&cfg, cmd).await,
                Err(e) => return config_error(e),
            },
            Command::Segments(cmd) => match load() {
                Ok(cfg) => match nudge::segments_cli::run(&cfg, cmd).await {
                    Err(e) if e.downcast_ref::<nudge::segments_cli::UsageError>().is_some() => {
                        eprintln!("error: {e}");
                        return ExitCode::from(2);
                    }
                    r => r,
                },
                Err(e) => return config_error(e),
            },
            Command::Campaigns(cmd) => match load() {
                Ok(cfg) => match nudge::campaigns_cli::run(&cfg, cmd).await {
                    Err(e) if e.downcast_ref::<nudge::campaigns_cli::UsageError>().is_some() => {
                        eprintln!("error: {e}");
                        return ExitCode::from(2);
                    }
                    r => r,
                },
                Err(e) => return config_error(e),
            },
            Command::Digest(cmd) => match load() {
                Ok(cfg) => match nudge::digest::run(&cfg, cmd).await {
                    Err(e) if e.downcast_ref::<nudge::digest::UsageError>().is_some() => {
                        eprintln!("error: {e}");
                        return ExitCode::from(2);
                    }
                    r => r,
                },
                Err(e) => return config_error(e),
            },
            Command::Approvals(cmd) => match load() {
                Ok(cfg) => nudge::approvals_cli::run(&cfg, cmd).await,
                Err(e) => return config_error(e),
            },
            Command::Report(cmd) => match load() {
                Ok(cfg) => match cfg.flow_set() {
                    Ok(_) => match nudge::report_cli::run(&cfg, cmd).await {
                        Err(e)
                            if e.downcast_ref::<nudge::report_cli::ReportError>()
                                .is_some_and(|e| e.is_usage()) =>
                        {
                            eprintln!("error: {e}");
                            return ExitCode::from(2);
                        }
                        r => r,
                    },
                    Err(e) => return config_error(e),
                },
                Err(e) => return config_error(e),
            },
            Command::Dev(DevCmd::FakeKlaviyo { listen, api_key, unthrottled, lists }) => {
                nudge::demo::run_fake_klaviyo(listen, api_key, unthrottled, lists).await
            }
            Command::Dev(DevCmd::Fake { kind, listen, secret, api_key, unthrottled, lists, latency_ms }) => {
                let o = nudge::demo::FakeOptions {
                    kind,
                    listen,
                    secret,
                    api_key,
                    unthrottled,
                    lists,
                    latency_ms,
                };
                nudge::demo::run_fake(o).await
            }
        };
        match result {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: {e:#}");
                // 2 for a usage or configuration error of any command, 1 for a failure (`nudge::cli`).
                ExitCode::from(nudge::cli::exit_code(&e))
            }
        }
    })
}

/// Rust ignores SIGPIPE, which turns `nudge audit … | head` into a panic on the closed pipe; a printing
/// command should simply stop, as other Unix tools do.
fn restore_default_sigpipe() {
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to the default at start-up, before any thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

fn config_error(e: nudge::config::ConfigError) -> ExitCode {
    eprintln!("error: {e}");
    ExitCode::from(2)
}

/// Runs the server until Ctrl-C or SIGTERM. SIGHUP (or `nudge flows reload`) re-reads the configuration's
/// flows with `load`: a valid set replaces the running one, an invalid one is refused and logged.
async fn serve(cfg: Config, load: nudge::app::ConfigLoader) -> anyhow::Result<()> {
    let pid_file = nudge::flows_cli::pid_file(&cfg);
    // Installed before the pid file exists: a reload asked for while the server is still starting is
    // kept and handled once it runs, instead of SIGHUP's default action ending the process.
    let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    std::fs::create_dir_all(&cfg.storage.data_dir).map_err(|e| {
        anyhow::anyhow!("cannot create the data directory {}: {e}", cfg.storage.data_dir.display())
    })?;
    // Held until the process ends: a second server on this data directory is refused before it opens it.
    let _pid_lock = nudge::flows_cli::PidLock::acquire(&pid_file)?;
    let listener = tokio::net::TcpListener::bind(cfg.server.listen)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {}: {e}", cfg.server.listen))?;
    let app = nudge::app::run(cfg, listener).await?;
    app.shared.set_config_loader(load.clone());
    loop {
        tokio::select! {
            r = tokio::signal::ctrl_c() => { r?; break; }
            _ = terminate.recv() => break,
            _ = hangup.recv() => match load() {
                Ok(new) => match app.reload_flows(&new) {
                    Ok(r) => {
                        tracing::info!(version = %r.version, flows = r.flows, "flows reloaded");
                        for note in r.notes {
                            tracing::warn!("{note}");
                        }
                    }
                    Err(e) => tracing::error!(error = %e, "flows not reloaded: the new set is invalid; the running set stays"),
                },
                Err(e) => tracing::error!(error = %e, "flows not reloaded: the configuration is invalid; the running set stays"),
            },
        }
    }
    tracing::info!("shutting down");
    let _ = std::fs::remove_file(&pid_file);
    app.shutdown().await;
    Ok(())
}
