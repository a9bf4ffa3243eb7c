//! nudge: the AI layer between an online store and its marketing platform.
//!
//! This crate is the binary's library: configuration, the boot sequence, the HTTP edge, the workers and
//! the CLI commands. It wires the pure crates (`model`, `ingest`, `state`, `scoring`, `policy`) to the I/O
//! crates (`store`, `deliver`), and it is the only crate that chooses backends.
//!
//! Layout:
//! - [`config`]: TOML + environment configuration, validated.
//! - [`app`]: `run(cfg, listener)`, the boot sequence; backends and destinations are chosen here.
//! - [`keys`]: fetches the public keys a source asks for when verifying.
//! - [`http`]: routes (webhooks at `/webhooks/<source path>`, health, metrics, audit API) and the guard of every `/api` route.
//! - [`access`]: roles, permissions, the one role × permission matrix, the `/api` route table, tokens.
//! - [`ui`]: the web console at `/ui/` (server-rendered pages, token sign-in, sessions, CSRF).
//! - [`pipeline`]: the processing worker (delivery → events → state → scores → decision → outbox).
//! - [`outbox`]: the delivery worker and the abandonment-timer worker.
//! - [`scheduler`]: fires `schedule` flows (cron, UTC) for every customer, in chunks, through the ingest log.
//! - [`telemetry`]: logs and metrics, each metric defined once.
//! - [`demo`]: `nudge demo`, a synthetic store end to end against the built-in Klaviyo fake.
//! - [`audit_cli`], [`models_cli`], [`import`], [`tokens_cli`], [`approvals_cli`], [`push_cli`]: the other
//!   subcommands; [`push`]: batch pushes of every selected customer's scores to one destination.
//! - [`model_report`]: the renderers of `nudge models report` (text, HTML, SVG, JSON); [`svg`]: its charts.
//! - [`digest`]: campaign digests to Slack and email (`pipeline.digest_schedule`, `nudge digest`);
//!   [`digest_render`] and [`digest_grounding`]: their pure rendering and the summary's grounding check.

pub mod access;
pub mod app;
pub mod approvals_cli;
pub mod audit_cli;
pub mod campaign_report;
pub mod campaigns_cli;
pub mod cli;
pub mod cluster_cli;
pub mod config;
pub mod copy;
pub mod decision_models;
pub mod demo;
pub mod demo_signals;
pub mod digest;
pub mod digest_grounding;
pub mod digest_render;
pub mod fetch;
pub mod fit_bandit;
pub mod fit_cold_start;
pub mod fit_propensity;
pub mod fit_recs;
pub mod fit_send_time;
pub mod flows_cli;
pub mod http;
pub mod import;
mod import_spill;
pub mod keys;
pub mod migrate_cli;
pub mod model_report;
pub mod models_cli;
pub mod models_compare;
pub mod offers;
pub mod openapi;
pub mod outbox;
pub mod pipeline;
pub mod privacy;
pub mod privacy_cli;
pub mod prompts_cli;
pub mod push;
pub mod push_cli;
pub mod recs;
pub mod report_cli;
pub mod retention;
pub mod scheduler;
pub mod segment_adoption;
pub mod segment_api;
pub mod segments_cli;
pub mod simulate_cli;
pub mod svg;
pub mod telemetry;
pub mod tokens_cli;
pub mod ui;
pub mod workers;
