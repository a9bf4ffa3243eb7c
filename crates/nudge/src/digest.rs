//! Campaign digests: one period's outcomes sent to Slack and/or by email, on `pipeline.digest_schedule` or
//! by hand (`nudge digest preview|send`).
//!
//! A digest is made from the reports of the period, called here exactly as `nudge report` calls them, so
//! its numbers are theirs:
//! - each configured flow with a holdout group: the lift report ([`crate::report_cli::build`]) and the
//!   campaign report ([`crate::campaign_report::build`], revenue and segments);
//! - underperforming segments: campaign-report segments whose conversion uplift against their own
//!   hold-out is negative, with at least [`MIN_SEGMENT_CUSTOMERS`] customers on each side;
//! - model quality: versions fitted in the period against the previous version of their kind, with the
//!   figures `nudge models list` shows;
//! - dead letters: outbox items that ran out of retries, per destination (`nudge audit stats`), as they
//!   stand when the digest is made;
//! - next steps, each from one of those claims.
//!
//! With `[llm]` configured, a plain-language summary is generated from the digest's facts (aggregates only:
//! names and numbers, never a customer) and kept only when every figure it states is found in those facts
//! ([`crate::digest_grounding`]); otherwise the digest says it was left out, and why, as do the audit
//! record (stage `digest`) and the log.

use crate::config::{Config, HumanDuration};
use crate::digest_render::{
    self as render, Claim, Digest, FlowOutcome, Suggestion, Summary, Tone, pct, pct_ci, pp,
};
use crate::report_cli::{self, Report, ReportError, ReportKind, ReportQuery, parse_instant};
use clap::{Args, Subcommand, ValueEnum};
use futures::StreamExt;
use nudge_llm::{CopyContext, LlmClient, PromptSpec, SlotSpec};
use nudge_model::{AuditRecord, AuditStage, TraceId};
use nudge_policy::flows::FlowSet;
use nudge_store::{CopyFill, LlmUsage, Store};
use serde::Deserialize;
use serde_json::json;
use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

/// A segment is reported as underperforming only with at least this many customers treated and held out.
pub const MIN_SEGMENT_CUSTOMERS: u64 = 20;
/// At most this many underperforming segments are listed (the worst first).
pub const MAX_SEGMENTS: usize = 5;
/// The longest generated summary, in characters.
pub const SUMMARY_MAX_CHARS: usize = 1200;
const DEFAULT_WINDOW: &str = "14d";

/// `[digest]`: where digests go and what they cover.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DigestConfig {
    /// Post each digest to the Slack webhook of `[destinations.slack]`.
    #[serde(default)]
    pub slack: bool,
    /// Email each digest (`[digest.email]`).
    #[serde(default)]
    pub email: Option<EmailConfig>,
    /// The period a scheduled digest covers, back from its firing; default: the span since the schedule's
    /// previous firing.
    #[serde(default)]
    pub period: Option<HumanDuration>,
    /// The conversion window after each customer's first decision, as in `nudge report lift --window`.
    #[serde(default = "default_window")]
    pub window: String,
    /// Add a generated summary when `[llm]` is configured.
    #[serde(default = "yes")]
    pub summary: bool,
}

fn default_window() -> String {
    DEFAULT_WINDOW.into()
}

fn yes() -> bool {
    true
}

/// How the SMTP connection is secured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TlsMode {
    /// Plain text (a relay on the same host or network); no password is sent this way.
    None,
    /// Plain connection upgraded with STARTTLS, which is required (port 587).
    #[default]
    Starttls,
    /// TLS from the first byte (port 465).
    Tls,
}

/// `[digest.email]`: the SMTP relay and the addresses. The password is read from the environment variable
/// named by `password_env`, never from the file.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    pub smtp_host: String,
    /// Default: 25 for `none`, 587 for `starttls`, 465 for `tls`.
    #[serde(default)]
    pub smtp_port: Option<u16>,
    #[serde(default)]
    pub tls: TlsMode,
    #[serde(default)]
    pub username: Option<String>,
    /// The name of the environment variable holding the password (`NUDGE_SMTP_PASSWORD`).
    #[serde(default)]
    pub password_env: Option<String>,
    /// `Nudge <digest@shop.example>` or a bare address.
    pub from: String,
    pub to: Vec<String>,
    /// The limit for one SMTP command.
    #[serde(default = "default_smtp_timeout")]
    pub timeout: HumanDuration,
}

fn default_smtp_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}

impl fmt::Debug for EmailConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmailConfig")
            .field("smtp_host", &self.smtp_host)
            .field("smtp_port", &self.port())
            .field("tls", &self.tls)
            .field("username", &self.username)
            .field("password_env", &self.password_env)
            .field("from", &self.from)
            .field("to", &self.to)
            .field("timeout", &self.timeout)
            .finish()
    }
}

impl EmailConfig {
    pub fn port(&self) -> u16 {
        self.smtp_port.unwrap_or(match self.tls {
            TlsMode::None => 25,
            TlsMode::Starttls => 587,
            TlsMode::Tls => 465,
        })
    }

    fn loopback(&self) -> bool {
        let h = self.smtp_host.trim().trim_start_matches('[').trim_end_matches(']');
        h == "localhost" || h.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
    }

    /// Checks the settings; the error names the key under `digest.email`.
    pub fn check(&self) -> Result<(), (String, String)> {
        let bad = |k: &str, e: String| Err((k.to_string(), e));
        let host = self.smtp_host.trim();
        if host.is_empty() || host.contains(['/', ' ', ':']) && !host.starts_with('[') {
            return bad("smtp_host", format!("`{host}` is not a host name or address"));
        }
        if self.smtp_port == Some(0) {
            return bad("smtp_port", "must be between 1 and 65535".into());
        }
        match (&self.username, &self.password_env) {
            (Some(u), _) if u.trim().is_empty() => return bad("username", "is empty".into()),
            (Some(_), None) => {
                return bad("password_env", "name the environment variable that holds the password".into());
            }
            (None, Some(_)) => return bad("username", "a password needs a username".into()),
            _ => {}
        }
        if let Some(v) = &self.password_env
            && (v.is_empty() || !v.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
        {
            return bad("password_env", format!("`{v}` is not an environment variable name"));
        }
        if self.tls == TlsMode::None && self.username.is_some() && !self.loopback() {
            return bad(
                "tls",
                "`none` would send the password in clear to a remote host; use `starttls` or `tls`".into(),
            );
        }
        self.from
            .parse::<lettre::message::Mailbox>()
            .map_err(|e| ("from".to_string(), format!("`{}`: {e}", self.from)))?;
        if self.to.is_empty() {
            return bad("to", "at least one address is needed".into());
        }
        for (i, t) in self.to.iter().enumerate() {
            t.parse::<lettre::message::Mailbox>().map_err(|e| (format!("to[{i}]"), format!("`{t}`: {e}")))?;
        }
        if self.timeout.0.is_zero() || self.timeout.0 > Duration::from_secs(300) {
            return bad("timeout", "must be above zero and at most 5m".into());
        }
        Ok(())
    }

    /// The password from the environment, when a username is set; the error names the key.
    pub fn password(&self) -> anyhow::Result<Option<String>> {
        let Some(var) = &self.password_env else { return Ok(None) };
        match std::env::var(var) {
            Ok(p) if !p.is_empty() => Ok(Some(p)),
            _ => anyhow::bail!("digest.email.password_env: the environment variable `{var}` is not set"),
        }
    }
}

impl DigestConfig {
    /// Checks `[digest]` against the rest of the configuration; the error names the key.
    pub fn check(&self, slack_configured: bool) -> Result<(), (String, String)> {
        if self.slack && !slack_configured {
            return Err((
                "digest.slack".into(),
                "needs `[destinations.slack]` (the webhook the digest is posted to)".into(),
            ));
        }
        if let Some(e) = &self.email {
            e.check().map_err(|(k, r)| (format!("digest.email.{k}"), r))?;
        }
        if let Some(p) = &self.period
            && (p.0 < Duration::from_secs(3600) || p.0 > Duration::from_secs(366 * 86_400))
        {
            return Err(("digest.period".into(), "must be between 1h and 366d".into()));
        }
        let w = self.window.trim();
        match nudge_policy::flows::parse_duration_secs(w) {
            Some(s) if s > 0 && s <= 366 * 86_400 => {}
            _ => return Err(("digest.window".into(), format!("`{w}` is not a duration such as 14d or 48h"))),
        }
        Ok(())
    }

    /// Whether it sends anywhere.
    pub fn has_destination(&self) -> bool {
        self.slack || self.email.is_some()
    }
}

/// The digest settings in force: `[digest]`, or defaults for a preview without it.
fn settings(cfg: &Config) -> DigestConfig {
    cfg.digest.clone().unwrap_or(DigestConfig {
        slack: false,
        email: None,
        period: None,
        window: default_window(),
        summary: true,
    })
}

/// One period.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Period {
    pub since_ms: i64,
    pub until_ms: i64,
}

impl Period {
    fn rfc3339(ms: i64) -> String {
        crate::pipeline::fmt_ts(crate::pipeline::ms_to_ts(ms))
    }

    /// The report query of `flow` over this period: the same the digest shows as its source.
    pub fn query(&self, flow: &str, window: &str) -> ReportQuery {
        ReportQuery {
            flow: flow.to_string(),
            window: Some(window.to_string()),
            since: Some(Self::rfc3339(self.since_ms)),
            until: Some(Self::rfc3339(self.until_ms)),
            partial: false,
        }
    }

    fn args(&self, window: &str) -> String {
        format!(
            "--since {} --until {} --window {window}",
            Self::rfc3339(self.since_ms),
            Self::rfc3339(self.until_ms)
        )
    }
}

fn is_usage(e: &ReportError) -> bool {
    e.is_usage()
}

/// Builds the digest of `period` from the store (no summary yet: see [`summarise`]).
pub async fn build(
    store: &dyn Store,
    flows: &FlowSet,
    period: Period,
    window: &str,
    max_quality_drop: f64,
    now: OffsetDateTime,
) -> Result<Digest, ReportError> {
    let mut out = Digest {
        since_ms: period.since_ms,
        until_ms: period.until_ms,
        window: window.to_string(),
        flows: Vec::new(),
        unmeasured: Vec::new(),
        segments: Vec::new(),
        models: Vec::new(),
        dead_letters: Vec::new(),
        suggestions: Vec::new(),
        summary: Summary::NotConfigured,
    };
    // The flows' reports are independent: they run a few at a time (the store serves reads on several
    // threads), and come back in the configured order.
    let pending: Vec<_> = flows.flows.iter().map(|f| measure(store, flows, f, period, window, now)).collect();
    let measured: Vec<Result<Measured, ReportError>> =
        futures::stream::iter(pending).buffered(FLOWS_AT_ONCE).collect().await;
    let mut segment_rows = Vec::new();
    for m in measured {
        let (lift, campaign, campaign_missing) = match m? {
            Measured::Not(name, why) => {
                out.unmeasured.push((name, why));
                continue;
            }
            Measured::Flow(flow) => *flow,
        };
        let args = period.args(window);
        let claim = flow_claim(&lift, campaign.as_ref(), &args);
        if let Some(c) = &campaign {
            for row in &c.analysis.segments {
                segment_rows.push((lift.flow.clone(), row.clone(), c.currency.clone()));
            }
        }
        out.suggestions.extend(flow_suggestion(&lift, &claim, &args));
        out.flows.push(FlowOutcome { claim, lift, campaign, campaign_missing });
    }
    segment_claims(&mut out, segment_rows, &period.args(window));
    model_claims(&mut out, store, period, max_quality_drop).await?;
    dead_letter_claims(&mut out, store).await?;
    Ok(out)
}

/// Flows whose reports are made at once.
const FLOWS_AT_ONCE: usize = 4;

/// One flow's reports, or why it is not measured.
enum Measured {
    Not(String, String),
    /// The lift report, the campaign report, and why the campaign report is missing when it is.
    Flow(
        Box<(
            nudge_policy::reports::LiftReport,
            Option<crate::campaign_report::CampaignReport>,
            Option<String>,
        )>,
    ),
}

/// The lift and campaign reports of one flow over the period, made as `nudge report` makes them.
async fn measure(
    store: &dyn Store,
    flows: &FlowSet,
    f: &nudge_policy::flows::CompiledFlow,
    period: Period,
    window: &str,
    now: OffsetDateTime,
) -> Result<Measured, ReportError> {
    let name = f.spec.name.as_str();
    if f.spec.holdout_percent == 0 {
        return Ok(Measured::Not(name.to_string(), "no holdout group".into()));
    }
    let q = period.query(name, window);
    let cq = crate::campaign_report::CampaignQuery { report: q.clone(), arm: None };
    // The two reports read the same customers' states: once, through one cache.
    let cache = report_cli::StateCache::default();
    let lift = report_cli::build_with(store, flows, ReportKind::Lift, &q, now, Some(&cache)).await;
    let campaign = crate::campaign_report::build_with(store, flows, &cq, now, Some(&cache)).await;
    let lift = match lift {
        Ok(Report::Lift(l)) => l,
        Ok(Report::Shadow(_)) => unreachable!("a lift query answers a lift report"),
        Err(e) if is_usage(&e) && !matches!(e, ReportError::BadInput(_)) => {
            return Ok(Measured::Not(name.to_string(), e.to_string()));
        }
        Err(e) => return Err(e),
    };
    if lift.treated.customers + lift.held_out.customers == 0 {
        let why = if lift.pending_window > 0 {
            format!("{} customers' conversion windows are still open", lift.pending_window)
        } else {
            "no decisions in the period".to_string()
        };
        return Ok(Measured::Not(name.to_string(), why));
    }
    let (campaign, campaign_missing) = match campaign {
        Ok(c) => (Some(c), None),
        Err(e) if is_usage(&e) => (None, Some(e.to_string())),
        Err(e) => return Err(e),
    };
    Ok(Measured::Flow(Box::new((lift, campaign, campaign_missing))))
}

fn ci_pp(ci: Option<(f64, f64)>) -> String {
    match ci {
        Some((lo, hi)) => format!("{} to {}", pp(lo), pp(hi)),
        None => "n/a".into(),
    }
}

fn money(v: Option<f64>, currency: Option<&str>) -> String {
    match v {
        Some(v) if v.is_finite() => {
            format!("{:.2}{}", v + 0.0, currency.map(|c| format!(" {c}")).unwrap_or_default())
        }
        _ => "n/a".into(),
    }
}

fn flow_claim(
    l: &nudge_policy::reports::LiftReport,
    campaign: Option<&crate::campaign_report::CampaignReport>,
    args: &str,
) -> Claim {
    let (text, tone) = match l.difference_ci {
        Some((lo, _)) if lo > 0.0 => (
            format!(
                "Flow {} raised conversion by {} against its hold-out: {} of treated customers converted, {} of \
                 held-out ones.",
                l.flow,
                pp(l.difference),
                pct(l.treated.rate),
                pct(l.held_out.rate)
            ),
            Tone::Good,
        ),
        Some((_, hi)) if hi < 0.0 => (
            format!(
                "Flow {} lowered conversion by {} against its hold-out: {} of treated customers converted, {} \
                 of held-out ones.",
                l.flow,
                pp(l.difference),
                pct(l.treated.rate),
                pct(l.held_out.rate)
            ),
            Tone::Bad,
        ),
        Some(_) => (
            format!(
                "Flow {}: no measurable difference yet ({}, and the 95 % interval spans zero).",
                l.flow,
                pp(l.difference)
            ),
            Tone::Neutral,
        ),
        None => (format!("Flow {}: too few customers on one side to compare.", l.flow), Tone::Neutral),
    };
    let mut figures = vec![
        ("treated customers".to_string(), l.treated.customers.to_string()),
        ("treated conversions".to_string(), l.treated.conversions.to_string()),
        ("treated rate (95 % CI)".to_string(), pct_ci(l.treated.rate, l.treated.ci_low, l.treated.ci_high)),
        ("held-out customers".to_string(), l.held_out.customers.to_string()),
        ("held-out conversions".to_string(), l.held_out.conversions.to_string()),
        (
            "held-out rate (95 % CI)".to_string(),
            pct_ci(l.held_out.rate, l.held_out.ci_low, l.held_out.ci_high),
        ),
        ("difference".to_string(), pp(l.difference)),
        ("difference 95 % CI".to_string(), ci_pp(l.difference_ci)),
    ];
    if let Some(r) = l.relative_lift {
        figures.push(("relative lift".to_string(), format!("{:+.0} %", r * 100.0)));
    }
    let mut source = format!("nudge report lift --flow {} {args}", l.flow);
    if let Some(c) = campaign {
        let a = &c.analysis;
        let cur = c.currency.as_deref();
        figures.push((
            "revenue per customer, treated / held out".to_string(),
            format!(
                "{} / {}",
                money(a.treated.revenue_per_customer, cur),
                money(a.control.revenue_per_customer, cur)
            ),
        ));
        let r = &a.revenue_uplift.welch;
        let ci = match (r.ci_low, r.ci_high) {
            (Some(lo), Some(hi)) => {
                format!(" (95 % CI {} to {})", money(Some(lo), cur), money(Some(hi), cur))
            }
            _ => String::new(),
        };
        figures.push(("revenue uplift per customer".to_string(), format!("{}{ci}", money(r.abs, cur))));
        if let Some(d) = a.drivers.first() {
            figures.push((
                "top driver among responders".to_string(),
                format!("{} ({}, AUC {:.2})", d.feature, d.direction, d.auc),
            ));
        }
        source.push_str(&format!("; nudge report campaign --flow {} {args}", l.flow));
    }
    Claim { id: format!("flow-{}", l.flow), text, tone, figures, source }
}

fn flow_suggestion(l: &nudge_policy::reports::LiftReport, claim: &Claim, args: &str) -> Option<Suggestion> {
    let campaign = format!("nudge report campaign --flow {} {args}", l.flow);
    match claim.tone {
        Tone::Bad => Some(Suggestion {
            text: format!(
                "Pause or revise flow {}: it converts fewer customers than its hold-out. See which segments and \
                 drivers explain it.",
                l.flow
            ),
            because: claim.id.clone(),
            command: Some(campaign),
        }),
        Tone::Good => Some(Suggestion {
            text: format!("Keep flow {} running, and test a variant to grow its lift.", l.flow),
            because: claim.id.clone(),
            command: Some(campaign),
        }),
        Tone::Neutral => None,
    }
}

fn segment_claims(
    out: &mut Digest,
    rows: Vec<(String, nudge_decide::uplift::SegmentRow, Option<String>)>,
    args: &str,
) {
    let mut worse: Vec<_> = rows
        .into_iter()
        .filter(|(_, r, _)| r.treated.n >= MIN_SEGMENT_CUSTOMERS && r.control.n >= MIN_SEGMENT_CUSTOMERS)
        .filter(|(_, r, _)| r.uplift.abs.is_some_and(|a| a < 0.0))
        .collect();
    worse.sort_by(|a, b| a.1.uplift.abs.partial_cmp(&b.1.uplift.abs).unwrap_or(std::cmp::Ordering::Equal));
    for (flow, r, _) in worse.into_iter().take(MAX_SEGMENTS) {
        let u = &r.uplift;
        let clear = u.excludes_zero() == Some(false);
        let text = format!(
            "Segment {} in flow {} converted {} against its own hold-out{}.",
            r.segment,
            flow,
            pp(u.abs.unwrap_or(f64::NAN)),
            if clear { ", and the 95 % interval lies below zero" } else { " (the 95 % interval spans zero)" }
        );
        let rate = |g: &nudge_decide::uplift::Group| {
            pct_ci(g.rate.unwrap_or(f64::NAN), g.ci_low.unwrap_or(f64::NAN), g.ci_high.unwrap_or(f64::NAN))
        };
        let id = format!("segment-{flow}-{}", r.segment);
        let claim = Claim {
            id: id.clone(),
            text,
            tone: if clear { Tone::Bad } else { Tone::Neutral },
            figures: vec![
                ("treated customers".into(), r.treated.n.to_string()),
                ("treated rate (95 % CI)".into(), rate(&r.treated)),
                ("held-out customers".into(), r.control.n.to_string()),
                ("held-out rate (95 % CI)".into(), rate(&r.control)),
                (
                    "uplift (95 % CI)".into(),
                    format!("{} ({})", pp(u.abs.unwrap_or(f64::NAN)), ci_pp(u.ci_low.zip(u.ci_high))),
                ),
            ],
            source: format!("nudge report campaign --flow {flow} {args}"),
        };
        out.suggestions.push(Suggestion {
            text: format!(
                "Leave segment {} out of flow {} (a condition on scores.segment), or give it different content.",
                r.segment, flow
            ),
            because: id,
            command: Some(claim.source.clone()),
        });
        out.segments.push(claim);
    }
}

/// A version's holdout figures as `models list` reads them: `(name, value)`, higher is better.
fn quality(entry: &serde_json::Value) -> Vec<(String, f64)> {
    if let Some(q) = entry["lift_quality"].as_f64() {
        return vec![("holdout quality".into(), q)];
    }
    entry["holdout_auc"]
        .as_object()
        .map(|m| m.iter().filter_map(|(k, v)| Some((format!("holdout AUC {k}"), v.as_f64()?))).collect())
        .unwrap_or_default()
}

async fn model_claims(
    out: &mut Digest,
    store: &dyn Store,
    p: Period,
    max_drop: f64,
) -> Result<(), ReportError> {
    let versions = store.model_versions().await?; // newest first
    for (i, v) in versions.iter().enumerate() {
        if v.created_at_ms < p.since_ms || v.created_at_ms >= p.until_ms {
            continue;
        }
        let entry = crate::models_cli::list_entry(v);
        let now_q = quality(&entry);
        let previous = versions[i + 1..].iter().find(|o| o.kind() == v.kind());
        let before_q = previous.map(|o| quality(&crate::models_cli::list_entry(o))).unwrap_or_default();
        let active = if v.active { "active" } else { "not active" };
        let mut figures = Vec::new();
        let mut worst: Option<f64> = None;
        let as_shown =
            |name: &str, x: f64| if name.starts_with("holdout AUC") { format!("{x:.3}") } else { pct(x) };
        for (name, q) in &now_q {
            figures.push((format!("{name}, this version"), as_shown(name, *q)));
            if let Some((_, b)) = before_q.iter().find(|(n, _)| n == name) {
                figures.push((format!("{name}, previous version"), as_shown(name, *b)));
                let change = q - b;
                figures.push((
                    format!("{name}, change"),
                    if name.starts_with("holdout AUC") { format!("{change:+.3}") } else { pp(change) },
                ));
                worst = Some(worst.map_or(change, |w: f64| w.min(change)));
            }
        }
        let id = format!("model-{}", v.id);
        let (text, tone) = match (previous, worst) {
            (Some(prev), Some(w)) if w < -max_drop => (
                format!(
                    "Model version {} ({}, {active}) measures worse on its holdout than version {} before it.",
                    v.id, v.family, prev.id
                ),
                Tone::Bad,
            ),
            (Some(prev), Some(w)) => (
                format!(
                    "Model version {} ({}, {active}) {} version {} before it on its holdout.",
                    v.id,
                    v.family,
                    if w >= 0.0 { "matches or beats" } else { "is close to" },
                    prev.id
                ),
                if w >= 0.0 { Tone::Good } else { Tone::Neutral },
            ),
            (Some(prev), None) => (
                format!(
                    "Model version {} ({}, {active}) was fitted; no holdout figure compares it with version {}.",
                    v.id, v.family, prev.id
                ),
                Tone::Neutral,
            ),
            (None, _) => (
                format!("Model version {} ({}, {active}) is the first of its kind.", v.id, v.family),
                Tone::Neutral,
            ),
        };
        if tone == Tone::Bad {
            out.suggestions.push(Suggestion {
                text: if v.active {
                    format!(
                        "Review model version {}: it is active and measures worse than {}; activating {} again rolls back.",
                        v.id,
                        previous.map(|p| p.id.as_str()).unwrap_or(""),
                        previous.map(|p| p.id.as_str()).unwrap_or("")
                    )
                } else {
                    format!("Review model version {} before activating it.", v.id)
                },
                because: id.clone(),
                command: Some(format!("nudge models report {}", v.id)),
            });
        }
        out.models.push(Claim { id, text, tone, figures, source: "nudge models list".into() });
    }
    Ok(())
}

async fn dead_letter_claims(out: &mut Digest, store: &dyn Store) -> Result<(), ReportError> {
    let stats = store.stats().await?;
    for d in stats.outbox_by_destination.iter().filter(|d| d.dead > 0) {
        let id = format!("dead-{}", d.destination.replace(':', "-"));
        let mut figures = vec![
            ("dead-lettered items".to_string(), d.dead.to_string()),
            ("retrying".to_string(), d.retrying.to_string()),
            ("delivered".to_string(), d.delivered.to_string()),
        ];
        if let Some(e) = &d.last_error {
            figures.push(("last error".to_string(), e.chars().take(300).collect()));
        }
        out.suggestions.push(Suggestion {
            text: format!("Fix what {} refuses, then re-send its dead letters.", d.destination),
            because: id.clone(),
            command: Some(format!("nudge replay dead-letters --destination {}", d.destination)),
        });
        out.dead_letters.push(Claim {
            id,
            text: format!(
                "{} pushes to {} ran out of retries and wait in the dead letters.",
                d.dead, d.destination
            ),
            tone: Tone::Bad,
            figures,
            source: "nudge audit stats".into(),
        });
    }
    if stats.fetch_jobs_dead > 0 {
        out.dead_letters.push(Claim {
            id: "dead-fetch-jobs".into(),
            text: format!(
                "{} fetch jobs (API reads of thin notifications) are dead-lettered.",
                stats.fetch_jobs_dead
            ),
            tone: Tone::Bad,
            figures: vec![("dead fetch jobs".into(), stats.fetch_jobs_dead.to_string())],
            source: "nudge audit stats".into(),
        });
        out.suggestions.push(Suggestion {
            text: "Re-run the dead fetch jobs once the source API answers again.".into(),
            because: "dead-fetch-jobs".into(),
            command: Some("nudge replay fetch-jobs".into()),
        });
    }
    Ok(())
}

const SYSTEM: &str = "You summarise a marketing digest for the store's marketer in plain language, in 3 to 5 \
    sentences. Use only the facts given. Every number you write must appear in the facts exactly as written \
    there (same rounding, in digits, never spelled out); never compute a number of your own (no sums, ratios \
    or differences). Say which flows worked and which did not, the most worrying finding, and the most useful \
    next step. No greeting, no markdown.";

/// The prompt of the summary, with the digest's facts as its user message.
pub fn summary_prompt(facts: &str) -> PromptSpec {
    PromptSpec {
        name: "digest_summary".into(),
        version: 1,
        system: SYSTEM.into(),
        user: facts.to_string(),
        slots: BTreeMap::from([("summary".to_string(), SlotSpec { max_chars: Some(SUMMARY_MAX_CHARS) })]),
        fallback: BTreeMap::from([("summary".to_string(), "No summary.".to_string())]),
    }
}

/// Asks the LLM for a summary of `d` and keeps it only when it is grounded; counts its tokens in the
/// month's usage (the budget copy generation shares).
pub async fn summarise(store: &dyn Store, client: &LlmClient, d: &Digest) -> Summary {
    let month = crate::copy::month_of(OffsetDateTime::now_utc());
    if let Ok(u) = store.llm_usage(&month).await {
        client.set_tokens_used(u.tokens);
    }
    let facts = render::facts(d);
    let generated = client.generate(&summary_prompt(&facts), &CopyContext::default()).await;
    let usage = LlmUsage {
        month,
        tokens: generated.tokens,
        generations: 1,
        fallbacks: u64::from(generated.fallback_used),
    };
    let fill = CopyFill { outbox: Vec::new(), approvals: Vec::new(), audit: Vec::new(), usage: Some(usage) };
    if let Err(e) = store.store_generated_copy(fill).await {
        tracing::warn!(error = %e, "the digest summary's token use could not be recorded");
    }
    if generated.fallback_used {
        let reason =
            generated.reason.map(|r| r.to_string()).unwrap_or_else(|| "the generation failed".into());
        tracing::warn!(%reason, "digest summary left out: the generation failed");
        return Summary::Failed { reason };
    }
    let text = generated.slots.get("summary").cloned().unwrap_or_default();
    let bad = crate::digest_grounding::ungrounded(&text, &facts);
    if bad.is_empty() {
        Summary::Grounded { text, tokens: generated.tokens }
    } else {
        let ungrounded: Vec<String> = bad.into_iter().map(|f| f.text).collect();
        tracing::warn!(figures = ?ungrounded, "digest summary left out: it states figures not in the digest's numbers");
        Summary::Rejected { ungrounded, tokens: generated.tokens }
    }
}

/// Where a digest went, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sent {
    pub destination: &'static str,
    pub outcome: Result<String, String>,
}

/// Posts the digest to Slack: up to three attempts, waiting as Slack asks (at most 30 s) between them.
pub async fn send_slack(client: &nudge_deliver::slack::SlackClient, d: &Digest) -> Result<String, String> {
    let (text, blocks) = render::slack(d);
    let mut last = String::new();
    for attempt in 1..=3u32 {
        match client.post_blocks(&text, &blocks).await {
            nudge_deliver::Outcome::Delivered { status, .. } => return Ok(format!("HTTP {status}")),
            nudge_deliver::Outcome::Rejected { error, .. } => return Err(error),
            nudge_deliver::Outcome::Retry { error, retry_after, .. } => {
                last = error;
                if attempt < 3 {
                    let wait = retry_after.unwrap_or(Duration::from_secs(u64::from(attempt) * 2));
                    tokio::time::sleep(wait.min(Duration::from_secs(30))).await;
                }
            }
        }
    }
    Err(format!("gave up after 3 attempts: {last}"))
}

/// The email: HTML with a plain-text alternative.
pub fn email_message(e: &EmailConfig, d: &Digest) -> anyhow::Result<lettre::Message> {
    use lettre::message::{Mailbox, MultiPart};
    let from: Mailbox = e.from.parse().map_err(|x| anyhow::anyhow!("digest.email.from: {x}"))?;
    let mut b = lettre::Message::builder().from(from).subject(d.title());
    for (i, t) in e.to.iter().enumerate() {
        b = b.to(t.parse::<Mailbox>().map_err(|x| anyhow::anyhow!("digest.email.to[{i}]: {x}"))?);
    }
    b.multipart(MultiPart::alternative_plain_html(render::text(d), render::html(d)))
        .map_err(|x| anyhow::anyhow!("the digest email cannot be built: {x}"))
}

/// Sends the digest by email through the configured relay.
pub async fn send_email(e: &EmailConfig, password: Option<String>, d: &Digest) -> Result<String, String> {
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::transport::smtp::client::{Tls, TlsParameters};
    use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
    let _ = rustls::crypto::ring::default_provider().install_default();
    let message = email_message(e, d).map_err(|x| x.to_string())?;
    let host = e.smtp_host.trim().to_string();
    let tls = |h: &str| TlsParameters::new(h.to_string()).map_err(|x| format!("TLS for {h}: {x}"));
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host)
        .port(e.port())
        .timeout(Some(e.timeout.0));
    builder = match e.tls {
        TlsMode::None => builder.tls(Tls::None),
        TlsMode::Starttls => builder.tls(Tls::Required(tls(&host)?)),
        TlsMode::Tls => builder.tls(Tls::Wrapper(tls(&host)?)),
    };
    if let (Some(user), Some(pass)) = (&e.username, password) {
        builder = builder.credentials(Credentials::new(user.clone(), pass));
    }
    let transport = builder.build();
    match transport.send(message).await {
        Ok(r) => Ok(format!("SMTP {}", r.code())),
        Err(x) => Err(format!("SMTP {}:{}: {x}", host, e.port())),
    }
}

/// Everything needed to make and send digests.
pub struct Digester {
    pub store: Arc<dyn Store>,
    pub flows: Arc<FlowSet>,
    pub settings: DigestConfig,
    pub slack: Option<Arc<nudge_deliver::slack::SlackClient>>,
    pub llm: Option<Arc<LlmClient>>,
    pub max_quality_drop: f64,
}

impl Digester {
    /// From the configuration; `sending` also checks what sending needs (the SMTP password).
    pub fn from_config(store: Arc<dyn Store>, cfg: &Config, sending: bool) -> anyhow::Result<Digester> {
        let settings = settings(cfg);
        let _ = rustls::crypto::ring::default_provider().install_default();
        let slack = match (&cfg.destinations.slack, settings.slack) {
            (Some(s), true) => Some(Arc::new(
                nudge_deliver::slack::SlackClient::new(s.clone())
                    .map_err(|e| anyhow::anyhow!("digest.slack: {e}"))?,
            )),
            _ => None,
        };
        if sending && let Some(e) = &settings.email {
            e.password()?;
        }
        let llm = match (&cfg.llm, settings.summary) {
            (Some(l), true) => {
                Some(Arc::new(LlmClient::new(l.clone()).map_err(|e| anyhow::anyhow!("llm: {e}"))?))
            }
            _ => None,
        };
        Ok(Digester {
            store,
            flows: Arc::new(cfg.flow_set()?),
            settings,
            slack,
            llm,
            max_quality_drop: cfg.models.refit_max_quality_drop,
        })
    }

    /// The digest of `period`, with its summary when an LLM is configured.
    pub async fn make(&self, period: Period, now: OffsetDateTime) -> Result<Digest, ReportError> {
        let mut d =
            build(&*self.store, &self.flows, period, &self.settings.window, self.max_quality_drop, now)
                .await?;
        if let Some(llm) = &self.llm {
            d.summary = summarise(&*self.store, llm, &d).await;
        }
        Ok(d)
    }

    /// Sends `d` to every configured destination and records the outcome in the audit trail (stage
    /// `digest`, under the trace returned: `nudge audit show <trace>`).
    pub async fn send(&self, d: &Digest) -> (Vec<Sent>, TraceId) {
        let mut sent = Vec::new();
        if let Some(s) = &self.slack {
            sent.push(Sent { destination: "slack", outcome: send_slack(s, d).await });
        }
        if let Some(e) = &self.settings.email {
            let outcome = match e.password() {
                Ok(p) => send_email(e, p, d).await,
                Err(x) => Err(x.to_string()),
            };
            sent.push(Sent { destination: "email", outcome });
        }
        for s in &sent {
            match &s.outcome {
                Ok(r) => tracing::info!(destination = s.destination, answer = %r, "digest sent"),
                Err(e) => tracing::error!(destination = s.destination, error = %e, "digest not sent"),
            }
        }
        let detail = json!({
            "since": Period::rfc3339(d.since_ms),
            "until": Period::rfc3339(d.until_ms),
            "window": d.window,
            "flows": d.flows.len(),
            "findings": d.claims().count(),
            "suggestions": d.suggestions.len(),
            "summary": &d.summary,
            "summary_note": d.summary.note(),
            "sent": sent.iter().map(|s| json!({
                "destination": s.destination,
                "ok": s.outcome.is_ok(),
                "answer": match &s.outcome { Ok(a) | Err(a) => a },
            })).collect::<Vec<_>>(),
        });
        let trace = TraceId::new();
        let record = AuditRecord {
            trace_id: trace,
            customer: None,
            stage: AuditStage::Digest,
            at: OffsetDateTime::now_utc(),
            detail,
        };
        if let Err(e) = self.store.append_audit(vec![record]).await {
            tracing::error!(error = %e, "the digest's audit record could not be written");
        }
        (sent, trace)
    }
}

/// The period a digest fired at `at` covers: `period`, or back to the schedule's previous firing.
pub fn scheduled_period(
    schedule: &nudge_policy::schedule::Schedule,
    period: Option<Duration>,
    at: OffsetDateTime,
) -> Period {
    let until_ms = crate::pipeline::ts_to_ms(at);
    let since_ms = match period {
        Some(p) => until_ms - p.as_millis() as i64,
        None => schedule
            .due(OffsetDateTime::UNIX_EPOCH, at - time::Duration::seconds(1))
            .map(crate::pipeline::ts_to_ms)
            .unwrap_or(until_ms - 7 * 86_400_000),
    };
    Period { since_ms, until_ms }
}

/// `pipeline.digest_schedule` in the server.
pub struct ScheduledDigest {
    pub digester: Digester,
    pub schedule: nudge_policy::schedule::Schedule,
}

impl ScheduledDigest {
    /// Runs until `shutdown`: at every occurrence of the schedule, makes the period's digest and sends it.
    pub async fn run(self, mut shutdown: tokio::sync::watch::Receiver<bool>) {
        loop {
            let now = OffsetDateTime::now_utc();
            let Some(next) = self.schedule.next_after(now) else { return };
            let wait = Duration::try_from(next - now).unwrap_or_default();
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = shutdown.changed() => return,
            }
            if *shutdown.borrow() {
                return;
            }
            let period = scheduled_period(&self.schedule, self.digester.settings.period.map(|p| p.0), next);
            tokio::select! {
                r = self.digester.make(period, next) => match r {
                    Ok(d) => { self.digester.send(&d).await; }
                    Err(e) => tracing::error!(error = %e, "the scheduled digest could not be made"),
                },
                _ = shutdown.changed() => return,
            }
        }
    }
}

#[derive(Subcommand, Debug)]
pub enum DigestCmd {
    /// Print the digest of a period as it would go out (nothing is sent).
    Preview(DigestArgs),
    /// Make the digest of a period and send it now to the configured destinations.
    Send(DigestArgs),
}

/// How a preview is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PreviewFormat {
    Text,
    /// The Slack message body (`text` and `blocks`).
    SlackJson,
    /// The email's HTML part.
    Html,
    /// The digest's data with every report behind it.
    Json,
}

#[derive(Args, Debug)]
pub struct DigestArgs {
    /// Decisions from this instant (`2026-11-01`, RFC 3339) or this long ago (`7d`); default: `digest.period`
    /// back from `--until`, else 7 days.
    #[arg(long)]
    pub since: Option<String>,
    /// Decisions before this instant (date, RFC 3339, or a duration back from now); default: now.
    #[arg(long)]
    pub until: Option<String>,
    #[arg(long, value_enum, default_value = "text")]
    pub format: PreviewFormat,
    /// Leave out the generated summary (no LLM call).
    #[arg(long)]
    pub no_summary: bool,
}

/// A mistake in the command (exit 2).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

fn period_of(cfg: &DigestConfig, args: &DigestArgs, now: OffsetDateTime) -> Result<Period, UsageError> {
    let usage = |e: ReportError| UsageError(e.to_string());
    let until_ms = match &args.until {
        Some(u) => parse_instant("until", u, now).map_err(usage)?,
        None => crate::pipeline::ts_to_ms(now),
    };
    let since_ms = match &args.since {
        Some(s) => parse_instant("since", s, now).map_err(usage)?,
        None => until_ms - cfg.period.map_or(7 * 86_400_000, |p| p.0.as_millis() as i64),
    };
    if since_ms >= until_ms {
        return Err(UsageError("since: the period is empty (since is not before until)".into()));
    }
    Ok(Period { since_ms, until_ms })
}

/// The digest of `since`..`until` (the same defaults as `nudge digest preview`), without a summary: what
/// `GET /api/digest` answers. A bad period is a [`UsageError`].
pub async fn preview(
    cfg: &Config,
    store: &dyn Store,
    flows: &FlowSet,
    since: Option<String>,
    until: Option<String>,
    now: OffsetDateTime,
) -> anyhow::Result<Digest> {
    let settings = settings(cfg);
    let args = DigestArgs { since, until, format: PreviewFormat::Json, no_summary: true };
    let period = period_of(&settings, &args, now)?;
    build(store, flows, period, &settings.window, cfg.models.refit_max_quality_drop, now).await.map_err(|e| {
        match e {
            e if e.is_usage() => anyhow::Error::from(UsageError(e.to_string())),
            e => anyhow::Error::from(e),
        }
    })
}

/// Runs `nudge digest …`.
pub async fn run(cfg: &Config, cmd: DigestCmd) -> anyhow::Result<()> {
    let (args, sending) = match cmd {
        DigestCmd::Preview(a) => (a, false),
        DigestCmd::Send(a) => (a, true),
    };
    let now = OffsetDateTime::now_utc();
    let settings = settings(cfg);
    let period = period_of(&settings, &args, now)?;
    if sending && !settings.has_destination() {
        return Err(UsageError(
            "digest: nowhere to send: set `[digest] slack = true` and/or `[digest.email]`; `nudge digest preview` \
             shows the digest without sending"
                .into(),
        )
        .into());
    }
    let store = crate::app::open_store(cfg).await?;
    let mut digester = Digester::from_config(store, cfg, sending)?;
    if args.no_summary {
        digester.llm = None;
    }
    let d = digester.make(period, now).await.map_err(|e| match e {
        e if e.is_usage() => anyhow::Error::from(UsageError(e.to_string())),
        e => anyhow::Error::from(e),
    })?;
    if sending {
        let (sent, trace) = digester.send(&d).await;
        let mut failed = 0;
        for s in &sent {
            match &s.outcome {
                Ok(a) => println!("{}: sent ({a})", s.destination),
                Err(e) => {
                    failed += 1;
                    println!("{}: NOT sent: {e}", s.destination);
                }
            }
        }
        if let Some(note) = d.summary.note() {
            println!("{note}");
        }
        println!("audit: nudge audit show {trace}");
        if failed > 0 {
            anyhow::bail!("{failed} of {} destinations did not take the digest", sent.len());
        }
        return Ok(());
    }
    match args.format {
        PreviewFormat::Text => print!("{}", render::text(&d)),
        PreviewFormat::Html => print!("{}", render::html(&d)),
        PreviewFormat::SlackJson => {
            let (text, blocks) = render::slack(&d);
            println!("{}", serde_json::to_string_pretty(&json!({"text": text, "blocks": blocks}))?);
        }
        PreviewFormat::Json => println!("{}", serde_json::to_string_pretty(&d)?),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn email(toml_text: &str) -> Result<(), (String, String)> {
        toml::from_str::<EmailConfig>(toml_text).map_err(|e| ("parse".into(), e.to_string()))?.check()
    }

    #[test]
    fn email_settings_are_checked_by_key() {
        let base = "smtp_host = \"smtp.shop.example\"\nfrom = \"Nudge <digest@shop.example>\"\nto = [\"team@shop.example\"]\n";
        email(base).unwrap();
        let key = |extra: &str| email(&format!("{base}{extra}")).unwrap_err().0;
        assert_eq!(key("username = \"u\"\n"), "password_env");
        assert_eq!(key("password_env = \"P\"\n"), "username");
        assert_eq!(key("username = \"u\"\npassword_env = \"NOT VALID\"\n"), "password_env");
        assert_eq!(key("username = \"u\"\npassword_env = \"P\"\ntls = \"none\"\n"), "tls");
        assert_eq!(key("smtp_port = 0\n"), "smtp_port");
        assert_eq!(key("timeout = \"0s\"\n"), "timeout");
        let bad_to = base.replace("[\"team@shop.example\"]", "[\"team@shop.example\", \"not an address\"]");
        assert_eq!(email(&bad_to).unwrap_err().0, "to[1]");
        assert_eq!(email(&base.replace("[\"team@shop.example\"]", "[]")).unwrap_err().0, "to");
        assert_eq!(email(&base.replace("Nudge <digest@shop.example>", "nobody")).unwrap_err().0, "from");
        assert_eq!(email(&base.replace("smtp.shop.example", "")).unwrap_err().0, "smtp_host");
        // A local relay may take a password in clear.
        let local = base.replace("smtp.shop.example", "127.0.0.1");
        email(&format!("{local}username = \"u\"\npassword_env = \"P\"\ntls = \"none\"\n")).unwrap();
        let e: EmailConfig = toml::from_str(base).unwrap();
        assert_eq!((e.tls, e.port()), (TlsMode::Starttls, 587));
        let bad = toml::from_str::<EmailConfig>(&format!("{base}tls = \"ssl\"\n")).unwrap_err().to_string();
        assert!(bad.contains("ssl"), "{bad}");
    }

    #[test]
    fn default_period_is_the_span_since_the_previous_firing() {
        let s = nudge_policy::schedule::Schedule::parse("0 8 * * 1").unwrap();
        let at = time::macros::datetime!(2026-11-30 08:00 UTC);
        let p = scheduled_period(&s, None, at);
        assert_eq!(p.until_ms - p.since_ms, 7 * 86_400_000);
        let p = scheduled_period(&s, Some(Duration::from_secs(86_400)), at);
        assert_eq!(p.until_ms - p.since_ms, 86_400_000);
        let daily = nudge_policy::schedule::Schedule::parse("30 6 * * *").unwrap();
        let p = scheduled_period(&daily, None, time::macros::datetime!(2026-11-30 06:30 UTC));
        assert_eq!(p.until_ms - p.since_ms, 86_400_000);
    }

    #[test]
    fn the_reference_file_documents_every_digest_key() {
        // The commented `[digest]` and `[digest.email]` tables of the reference file, uncommented.
        let text = include_str!("../../../nudge.example.toml");
        let start = text.find("# [digest]\n").expect("the reference file has [digest]");
        let block: String = text[start..]
            .lines()
            .filter_map(|l| l.strip_prefix("# "))
            .filter(|l| {
                l.starts_with('[')
                    || l.split(" = ").next().is_some_and(|k| {
                        !k.is_empty() && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
                    }) && l.contains(" = ")
            })
            .map(|l| format!("{l}\n"))
            .collect();
        #[derive(Deserialize)]
        struct File {
            digest: DigestConfig,
        }
        let d = toml::from_str::<File>(&block).unwrap_or_else(|e| panic!("{e}\n{block}")).digest;
        d.check(true).unwrap();
        let e = d.email.expect("the email keys");
        for key in ["smtp_host", "smtp_port", "tls", "username", "password_env", "from", "to", "timeout"] {
            assert!(block.contains(&format!("\n{key} = ")), "{key} is documented");
        }
        for key in ["slack", "window", "period", "summary"] {
            assert!(block.contains(&format!("\n{key} = ")), "{key} is documented");
        }
        assert_eq!((e.tls, e.port(), e.timeout.0), (TlsMode::Starttls, 587, Duration::from_secs(30)));
        assert!(text.contains("# digest_schedule = "), "pipeline.digest_schedule is documented");
    }

    #[test]
    fn the_summary_prompt_is_valid_and_holds_only_the_facts() {
        let p = summary_prompt(
            "Period: decisions from 2026-11-23 08:00 UTC\n- Flow w raised conversion by +5.0 pp",
        );
        p.check().unwrap();
        assert!(p.user.contains("+5.0 pp"));
    }
}
