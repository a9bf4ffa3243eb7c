//! What a digest says and how it looks: the [`Digest`] (built by [`crate::digest`] from the reports of one
//! period) rendered as plain text, as Slack Block Kit blocks and as an HTML email, and the aggregate facts a
//! generated summary is written from. Pure: no I/O.
//!
//! Every statement is a [`Claim`] that carries the figures behind it (shown next to it: fields in Slack, a
//! table in the email) and the command that reproduces them; a [`Suggestion`] names the claim it follows
//! from, and the email links it there.

use crate::campaign_report::CampaignReport;
use crate::svg::escape;
use nudge_policy::reports::LiftReport;
use serde::Serialize;
use serde_json::{Value, json};
use std::fmt::Write as _;

/// Block Kit limits the Slack rendering keeps to (as the fake enforces them).
pub const SLACK_MAX_BLOCKS: usize = 50;
pub const SLACK_MAX_SECTION_TEXT: usize = 3000;
pub const SLACK_MAX_FIELDS: usize = 10;
pub const SLACK_MAX_FIELD_TEXT: usize = 2000;
pub const SLACK_MAX_HEADER: usize = 150;
/// Flows shown one by one in Slack; the rest are counted (the email and the preview show all).
pub const SLACK_MAX_FLOWS: usize = 12;

/// How a claim reads for the business.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Tone {
    Good,
    Neutral,
    Bad,
}

/// One statement with the numbers behind it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Claim {
    /// Unique within the digest; the email's anchor (`flow-winback`).
    pub id: String,
    pub text: String,
    pub tone: Tone,
    /// The figures behind the statement, each as shown (`treated rate`, `15.0 % (12.1 % – 18.4 %)`).
    pub figures: Vec<(String, String)>,
    /// The command that reproduces the figures.
    pub source: String,
}

/// A next step, from one claim.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Suggestion {
    pub text: String,
    /// The id of the claim it follows from.
    pub because: String,
    /// A command to start with, if there is one.
    pub command: Option<String>,
}

/// One flow's outcome in the period: the lift report, and the campaign report when it could be made.
#[derive(Debug, Clone, Serialize)]
pub struct FlowOutcome {
    pub claim: Claim,
    pub lift: LiftReport,
    pub campaign: Option<CampaignReport>,
    /// Why the campaign report (revenue, segments) is missing, when it is.
    pub campaign_missing: Option<String>,
}

/// The generated summary, or why there is none.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum Summary {
    /// No `[llm]` configured, or summaries turned off.
    NotConfigured,
    /// Every figure it states was found in the facts it was given.
    Grounded { text: String, tokens: u64 },
    /// Left out: it stated figures the facts do not hold.
    Rejected { ungrounded: Vec<String>, tokens: u64 },
    /// Left out: the generation failed.
    Failed { reason: String },
}

impl Summary {
    /// The line a digest shows when the summary was left out.
    pub fn note(&self) -> Option<String> {
        match self {
            Summary::NotConfigured | Summary::Grounded { .. } => None,
            Summary::Rejected { ungrounded, .. } => Some(format!(
                "The generated summary was left out: it stated figures not found in the digest's numbers ({}).",
                ungrounded.join(", ")
            )),
            Summary::Failed { reason } => Some(format!("No generated summary this time: {reason}.")),
        }
    }
}

/// A digest of one period.
#[derive(Debug, Clone, Serialize)]
pub struct Digest {
    /// The period of decisions (ms since the epoch).
    pub since_ms: i64,
    pub until_ms: i64,
    /// The conversion window after each customer's first decision (`14d`).
    pub window: String,
    pub flows: Vec<FlowOutcome>,
    /// Flows whose outcome cannot be measured, with why (`no holdout group`).
    pub unmeasured: Vec<(String, String)>,
    pub segments: Vec<Claim>,
    pub models: Vec<Claim>,
    pub dead_letters: Vec<Claim>,
    pub suggestions: Vec<Suggestion>,
    pub summary: Summary,
}

/// `2026-11-24 00:00 UTC`.
pub fn fmt_instant(ms: i64) -> String {
    let t = time::OffsetDateTime::from_unix_timestamp_nanos(i128::from(ms) * 1_000_000)
        .unwrap_or(time::OffsetDateTime::UNIX_EPOCH);
    t.format(time::macros::format_description!("[year]-[month]-[day] [hour]:[minute] UTC"))
        .unwrap_or_default()
}

impl Digest {
    pub fn title(&self) -> String {
        format!("nudge digest: {} to {}", fmt_instant(self.since_ms), fmt_instant(self.until_ms))
    }

    /// Every claim, in the order shown.
    pub fn claims(&self) -> impl Iterator<Item = &Claim> {
        self.flows
            .iter()
            .map(|f| &f.claim)
            .chain(&self.segments)
            .chain(&self.models)
            .chain(&self.dead_letters)
    }

    fn sections(&self) -> [(&'static str, &[Claim], &'static str); 3] {
        [
            (
                "Underperforming segments",
                &self.segments,
                "No segment did worse than its hold-out in the period.",
            ),
            ("Model quality", &self.models, "No model version was fitted in the period."),
            ("Dead letters", &self.dead_letters, "Nothing is dead-lettered."),
        ]
    }
}

/// A share as the reports print it: `15.0 %`.
pub fn pct(v: f64) -> String {
    if v.is_finite() { format!("{:.1} %", v * 100.0) } else { "n/a".into() }
}

/// A difference of shares in points: `+2.1 pp`.
pub fn pp(v: f64) -> String {
    if v.is_finite() { format!("{:+.1} pp", v * 100.0) } else { "n/a".into() }
}

/// A share with its interval: `15.0 % (12.1 % – 18.4 %)`.
pub fn pct_ci(rate: f64, lo: f64, hi: f64) -> String {
    if lo.is_finite() && hi.is_finite() {
        format!("{} ({} – {})", pct(rate), pct(lo), pct(hi))
    } else {
        pct(rate)
    }
}

/// The facts a generated summary is written from: the period and every claim with its figures. Aggregates
/// only: flow, segment, model and destination names and numbers, never a customer.
pub fn facts(d: &Digest) -> String {
    let mut s = format!(
        "Period: decisions from {} to {}; conversion window {}.\n",
        fmt_instant(d.since_ms),
        fmt_instant(d.until_ms),
        d.window
    );
    for c in d.claims() {
        let _ = writeln!(s, "- {}", c.text);
        for (label, value) in &c.figures {
            let _ = writeln!(s, "    {label}: {value}");
        }
    }
    for (flow, why) in &d.unmeasured {
        let _ = writeln!(s, "- Flow {flow} is not measured: {why}.");
    }
    for g in &d.suggestions {
        let _ = writeln!(s, "- Suggested next step: {}", g.text);
    }
    s
}

/// The digest as plain text (the preview, and the email's plain-text part).
pub fn text(d: &Digest) -> String {
    let mut s = format!("{}\n{}\n", d.title(), "=".repeat(d.title().chars().count()));
    let _ = writeln!(s, "Conversion window {} after each customer's first decision.\n", d.window);
    match &d.summary {
        Summary::Grounded { text, .. } => {
            let _ =
                writeln!(s, "Summary (generated; every figure checked against the numbers below):\n{text}\n");
        }
        other => {
            if let Some(note) = other.note() {
                let _ = writeln!(s, "{note}\n");
            }
        }
    }
    let claim = |s: &mut String, c: &Claim| {
        let _ = writeln!(s, "* {}", c.text);
        for (label, value) in &c.figures {
            let _ = writeln!(s, "    {label}: {value}");
        }
        let _ = writeln!(s, "    numbers: {}", c.source);
    };
    s.push_str("Flows\n-----\n");
    if d.flows.is_empty() {
        s.push_str("No flow with a holdout group recorded decisions in the period.\n");
    }
    for f in &d.flows {
        claim(&mut s, &f.claim);
    }
    for (flow, why) in &d.unmeasured {
        let _ = writeln!(s, "* Flow {flow} is not measured: {why}.");
    }
    for (title, claims, none) in d.sections() {
        let _ = write!(s, "\n{title}\n{}\n", "-".repeat(title.len()));
        if claims.is_empty() {
            let _ = writeln!(s, "{none}");
        }
        for c in claims {
            claim(&mut s, c);
        }
    }
    s.push_str("\nNext steps\n----------\n");
    if d.suggestions.is_empty() {
        s.push_str("Nothing calls for action.\n");
    }
    for g in &d.suggestions {
        let _ = writeln!(s, "* {} (from: {})", g.text, g.because);
        if let Some(c) = &g.command {
            let _ = writeln!(s, "    run: {c}");
        }
    }
    s
}

/// Slack's three control characters escaped, so no value becomes a mention or a link.
fn mrkdwn(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// At most `max` characters, with an ellipsis when cut.
fn cap(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

fn section(text: &str) -> Value {
    json!({"type": "section", "text": {"type": "mrkdwn", "text": cap(text, SLACK_MAX_SECTION_TEXT)}})
}

fn context(text: &str) -> Value {
    json!({"type": "context", "elements": [{"type": "mrkdwn", "text": cap(text, SLACK_MAX_SECTION_TEXT)}]})
}

fn tone_mark(t: Tone) -> &'static str {
    match t {
        Tone::Good => ":large_green_circle:",
        Tone::Neutral => ":white_circle:",
        Tone::Bad => ":red_circle:",
    }
}

/// A claim as a section (its text, its figures as fields) and a context line with the command behind it.
fn claim_blocks(c: &Claim) -> Vec<Value> {
    let mut block = section(&format!("{} {}", tone_mark(c.tone), mrkdwn(&c.text)));
    let fields: Vec<Value> = c
        .figures
        .iter()
        .take(SLACK_MAX_FIELDS)
        .map(|(l, v)| {
            json!({"type": "mrkdwn", "text": cap(&format!("*{}*\n{}", mrkdwn(l), mrkdwn(v)), SLACK_MAX_FIELD_TEXT)})
        })
        .collect();
    if !fields.is_empty() {
        block["fields"] = Value::Array(fields);
    }
    let more = c.figures.len().saturating_sub(SLACK_MAX_FIELDS);
    let extra = if more > 0 { format!(" ({more} more figures there)") } else { String::new() };
    vec![block, context(&format!("Numbers: `{}`{extra}", mrkdwn(&c.source)))]
}

/// A group of claims as one section of bullets, and one context line with their commands.
fn list_blocks(claims: &[Claim]) -> Vec<Value> {
    let mut text = String::new();
    let mut sources = Vec::new();
    for c in claims {
        let figures: Vec<String> = c.figures.iter().map(|(l, v)| format!("{l} {v}")).collect();
        let _ =
            writeln!(text, "{} {} _({})_", tone_mark(c.tone), mrkdwn(&c.text), mrkdwn(&figures.join("; ")));
        if !sources.contains(&c.source) {
            sources.push(c.source.clone());
        }
    }
    let sources: Vec<String> = sources.iter().map(|s| format!("`{}`", mrkdwn(s))).collect();
    vec![section(&text), context(&format!("Numbers: {}", sources.join(" · ")))]
}

/// The Slack message: the notification text and the blocks, within Block Kit's limits.
pub fn slack(d: &Digest) -> (String, Vec<Value>) {
    let mut blocks = vec![
        json!({"type": "header", "text": {"type": "plain_text", "text": cap(&d.title(), SLACK_MAX_HEADER)}}),
    ];
    blocks.push(context(&format!("Conversion window {} after each customer's first decision.", d.window)));
    match &d.summary {
        Summary::Grounded { text, .. } => {
            blocks.push(section(&format!("*Summary*\n{}", mrkdwn(text))));
            blocks.push(context("Generated; every figure in it was checked against the numbers below."));
        }
        other => {
            if let Some(note) = other.note() {
                blocks.push(context(&mrkdwn(&note)));
            }
        }
    }
    blocks.push(json!({"type": "divider"}));
    blocks.push(section("*Flows*"));
    if d.flows.is_empty() {
        blocks.push(section("No flow with a holdout group recorded decisions in the period."));
    }
    for f in d.flows.iter().take(SLACK_MAX_FLOWS) {
        blocks.extend(claim_blocks(&f.claim));
    }
    let hidden = d.flows.len().saturating_sub(SLACK_MAX_FLOWS);
    let mut notes = Vec::new();
    if hidden > 0 {
        notes.push(format!("{hidden} more flows in the email and in `nudge digest preview`."));
    }
    if !d.unmeasured.is_empty() {
        let names: Vec<String> = d.unmeasured.iter().map(|(f, why)| format!("{f} ({why})")).collect();
        notes.push(format!("Not measured: {}.", names.join(", ")));
    }
    if !notes.is_empty() {
        blocks.push(context(&mrkdwn(&notes.join(" "))));
    }
    for (title, claims, none) in d.sections() {
        blocks.push(json!({"type": "divider"}));
        if claims.is_empty() {
            blocks.push(section(&format!("*{title}*\n{none}")));
        } else {
            blocks.push(section(&format!("*{title}*")));
            blocks.extend(list_blocks(claims));
        }
    }
    blocks.push(json!({"type": "divider"}));
    let mut steps = String::from("*Next steps*\n");
    if d.suggestions.is_empty() {
        steps.push_str("Nothing calls for action.");
    }
    for g in &d.suggestions {
        let _ = write!(steps, "• {}", mrkdwn(&g.text));
        if let Some(c) = &g.command {
            let _ = write!(steps, " `{}`", mrkdwn(c));
        }
        steps.push('\n');
    }
    blocks.push(section(&steps));
    debug_assert!(blocks.len() <= SLACK_MAX_BLOCKS, "{} blocks", blocks.len());
    blocks.truncate(SLACK_MAX_BLOCKS);
    let fallback = match &d.summary {
        Summary::Grounded { text, .. } => format!("{}\n{text}", d.title()),
        _ => format!("{}: {} flows measured, {} findings", d.title(), d.flows.len(), d.claims().count()),
    };
    (fallback, blocks)
}

const STYLE: &str = "body{font-family:sans-serif;max-width:900px;margin:1em auto;padding:0 1em;color:#222}\
    table{border-collapse:collapse;margin:.3em 0 .8em}td,th{border:1px solid #ccc;padding:3px 8px}\
    td.v{text-align:right}.claim{margin:.8em 0}.good{border-left:4px solid #2a9d3a;padding-left:.5em}\
    .neutral{border-left:4px solid #999;padding-left:.5em}.bad{border-left:4px solid #c0392b;padding-left:.5em}\
    code{background:#f4f4f4;padding:1px 4px}.note{color:#555}";

fn tone_class(t: Tone) -> &'static str {
    match t {
        Tone::Good => "good",
        Tone::Neutral => "neutral",
        Tone::Bad => "bad",
    }
}

fn claim_html(s: &mut String, c: &Claim) {
    let _ = writeln!(
        s,
        "<div class=\"claim {}\" id=\"{}\">\n<p>{}</p>",
        tone_class(c.tone),
        escape(&c.id),
        escape(&c.text)
    );
    if !c.figures.is_empty() {
        s.push_str("<table>\n");
        for (l, v) in &c.figures {
            let _ = writeln!(s, "<tr><td>{}</td><td class=\"v\">{}</td></tr>", escape(l), escape(v));
        }
        s.push_str("</table>\n");
    }
    let _ = writeln!(s, "<p class=\"note\">Numbers: <code>{}</code></p>\n</div>", escape(&c.source));
}

/// The HTML email: a self-contained page (inline style, no images, no script).
pub fn html(d: &Digest) -> String {
    let title = d.title();
    let mut s = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>{t}</title>\n\
         <style>{STYLE}</style>\n</head>\n<body>\n<h1>{t}</h1>\n<p class=\"note\">Conversion window {w} after \
         each customer's first decision.</p>\n",
        t = escape(&title),
        w = escape(&d.window)
    );
    match &d.summary {
        Summary::Grounded { text, .. } => {
            let _ = writeln!(
                s,
                "<h2>Summary</h2>\n<p>{}</p>\n<p class=\"note\">Generated; every figure in it was checked \
                 against the numbers below.</p>",
                escape(text)
            );
        }
        other => {
            if let Some(note) = other.note() {
                let _ = writeln!(s, "<p class=\"note\">{}</p>", escape(&note));
            }
        }
    }
    s.push_str("<h2>Flows</h2>\n");
    if d.flows.is_empty() {
        s.push_str("<p>No flow with a holdout group recorded decisions in the period.</p>\n");
    }
    for f in &d.flows {
        claim_html(&mut s, &f.claim);
    }
    if !d.unmeasured.is_empty() {
        s.push_str("<ul class=\"note\">\n");
        for (flow, why) in &d.unmeasured {
            let _ = writeln!(s, "<li>Flow {} is not measured: {}.</li>", escape(flow), escape(why));
        }
        s.push_str("</ul>\n");
    }
    for (title, claims, none) in d.sections() {
        let _ = writeln!(s, "<h2>{}</h2>", escape(title));
        if claims.is_empty() {
            let _ = writeln!(s, "<p>{}</p>", escape(none));
        }
        for c in claims {
            claim_html(&mut s, c);
        }
    }
    s.push_str("<h2>Next steps</h2>\n");
    if d.suggestions.is_empty() {
        s.push_str("<p>Nothing calls for action.</p>\n");
    } else {
        s.push_str("<ul>\n");
        for g in &d.suggestions {
            let _ =
                write!(s, "<li>{} (<a href=\"#{}\">the numbers</a>)", escape(&g.text), escape(&g.because));
            if let Some(c) = &g.command {
                let _ = write!(s, " <code>{}</code>", escape(c));
            }
            s.push_str("</li>\n");
        }
        s.push_str("</ul>\n");
    }
    s.push_str("</body>\n</html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(id: &str, text: &str, tone: Tone) -> Claim {
        Claim {
            id: id.into(),
            text: text.into(),
            tone,
            figures: vec![
                ("treated rate".into(), "15.0 %".into()),
                ("held-out rate".into(), "10.0 %".into()),
            ],
            source: format!("nudge report lift --flow {id}"),
        }
    }

    fn digest(flows: usize, summary: Summary) -> Digest {
        let lift = nudge_policy::reports::lift(
            "f",
            &[],
            &|_| Vec::new(),
            nudge_policy::reports::ReportWindow { window_ms: 1, since_ms: 0, until_ms: 2, partial: false },
        );
        Digest {
            since_ms: 1_795_000_000_000,
            until_ms: 1_795_604_800_000,
            window: "14d".into(),
            flows: (0..flows)
                .map(|i| FlowOutcome {
                    claim: claim(
                        &format!("flow-f{i}"),
                        &format!("Flow f{i} <raised> conversion & more"),
                        Tone::Good,
                    ),
                    lift: lift.clone(),
                    campaign: None,
                    campaign_missing: None,
                })
                .collect(),
            unmeasured: vec![("thanks".into(), "no holdout group".into())],
            segments: vec![claim("segment-f0-loyal", "Segment loyal in flow f0 did worse", Tone::Bad)],
            models: Vec::new(),
            dead_letters: vec![claim("dead-klaviyo", "3 items dead-lettered at klaviyo", Tone::Bad)],
            suggestions: vec![Suggestion {
                text: "Fix klaviyo, then re-send".into(),
                because: "dead-klaviyo".into(),
                command: Some("nudge replay dead-letters --destination klaviyo".into()),
            }],
            summary,
        }
    }

    #[test]
    fn slack_stays_within_block_kit_limits_and_escapes() {
        for flows in [0, 3, 40] {
            let long = Summary::Grounded { text: "x".repeat(5000), tokens: 1 };
            let (fallback, blocks) = slack(&digest(flows, long));
            assert!(!fallback.trim().is_empty());
            assert!(blocks.len() <= SLACK_MAX_BLOCKS, "{flows} flows: {} blocks", blocks.len());
            nudge_testkit::fake_slack::check_blocks(&Value::Array(blocks.clone())).unwrap();
            let all = Value::Array(blocks).to_string();
            assert!(!all.contains("<raised>") && (flows == 0 || all.contains("&lt;raised&gt;")));
            if flows == 40 {
                assert!(all.contains("28 more flows"), "{all}");
            }
        }
    }

    #[test]
    fn html_links_each_suggestion_to_its_claim_and_escapes() {
        let d = digest(2, Summary::Rejected { ungrounded: vec!["37%".into()], tokens: 5 });
        let h = html(&d);
        assert!(h.contains("id=\"dead-klaviyo\""));
        assert!(h.contains("href=\"#dead-klaviyo\""));
        assert!(h.contains("&lt;raised&gt; conversion &amp; more"));
        assert!(h.contains("left out") && h.contains("37%"), "the rejection is said");
        let t = text(&d);
        assert!(t.contains("left out") && t.contains("numbers: nudge report lift --flow flow-f0"));
    }

    #[test]
    fn facts_hold_every_figure_and_claim() {
        let d = digest(1, Summary::NotConfigured);
        let f = facts(&d);
        for c in d.claims() {
            assert!(f.contains(&c.text));
            for (l, v) in &c.figures {
                assert!(f.contains(&format!("{l}: {v}")));
            }
        }
        assert!(!f.contains('@'), "no contact data");
    }
}
