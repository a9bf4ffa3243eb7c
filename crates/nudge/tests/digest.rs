//! Campaign digests on a store filled with two measured flows' decisions, their customers' orders and
//! segments, two model versions and dead letters: the digest's numbers equal the reports' for the same
//! period, it renders as Slack blocks the fake accepts and as an HTML email the SMTP sink receives, a
//! generated summary is kept only when grounded in the digest's numbers, and the binary previews it.

use base64::Engine as _;
use nudge::campaign_report::{self, CampaignQuery};
use nudge::digest::{self, DigestConfig, Digester, EmailConfig, Period, TlsMode};
use nudge::digest_render::{self as render, Summary, Tone, pct, pp};
use nudge::report_cli::{self, Report, ReportKind};
use nudge_llm::LlmConfig;
use nudge_model::{AuditRecord, AuditStage, CustomerId, Money, TraceId};
use nudge_policy::flows::{FlowSet, FlowSpec};
use nudge_state::{CustomerState, OrderRecord};
use nudge_store::sqlite::{Durability, SqliteStore};
use nudge_store::{
    AttemptRecord, AttemptResult, FlowDecision, ModelVersion, NewOutboxItem, ProcessOutcome, Store,
    StoredState,
};
use nudge_testkit::fake_llm::{FakeLlm, FakeLlmConfig, LlmAnswer};
use nudge_testkit::fake_slack::{FakeSlack, FakeSlackConfig, SlackMode};
use nudge_testkit::fake_smtp::{FakeSmtp, FakeSmtpConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;
use std::time::Duration as StdDuration;
use time::{Duration, OffsetDateTime};

const FLOWS: &str = r#"
[[flows]]
name = "winback"
trigger = "order_placed"
when = "customer.orders_count >= 1"
holdout_percent = 30
actions = [ { type = "track_event", destination = "klaviyo", metric = "AI Winback" } ]

[[flows]]
name = "welcome"
trigger = "order_placed"
when = "customer.orders_count >= 1"
holdout_percent = 20
actions = [ { type = "track_event", destination = "klaviyo", metric = "AI Welcome" } ]

[[flows]]
name = "thanks"
trigger = "order_placed"
when = "customer.orders_count >= 1"
actions = [ { type = "track_event", destination = "klaviyo", metric = "AI Thanks" } ]
"#;

const CUSTOMERS: u64 = 800;

fn flows() -> FlowSet {
    #[derive(serde::Deserialize)]
    struct F {
        flows: Vec<FlowSpec>,
    }
    FlowSet::compile(&toml::from_str::<F>(FLOWS).unwrap().flows, &["klaviyo"]).unwrap()
}

fn cid(c: u64) -> CustomerId {
    format!("shopify:{}", 9_000_000 + c).parse().unwrap()
}

fn order(at: OffsetDateTime, amount: f64) -> OrderRecord {
    OrderRecord {
        created_at: at,
        updated_at: at,
        total: Money::parse(&format!("{amount:.2}"), "EUR").unwrap(),
        cancelled: false,
        items: Vec::new(),
        checkout_token: None,
        cart_token: None,
    }
}

/// The digest's period: decisions of the 30 days before `now`, each customer decided 18–27 days ago (their
/// 14-day windows closed). `winback` works for `active` customers and backfires for `loyal` ones;
/// `welcome` works little. Two BTYD versions fitted in the period, the newer one worse; two pushes to
/// klaviyo dead-lettered.
fn period(now: OffsetDateTime) -> Period {
    let ms = |t: OffsetDateTime| t.unix_timestamp() * 1000;
    Period { since_ms: ms(now - Duration::days(30)), until_ms: ms(now) }
}

async fn fill(store: &dyn Store, now: OffsetDateTime) {
    let mut rng = StdRng::seed_from_u64(22);
    let mut outcomes = Vec::new();
    let mut states = Vec::new();
    for c in 0..CUSTOMERS {
        let customer = cid(c);
        let flow = if c % 2 == 0 { "winback" } else { "welcome" };
        let held = nudge_policy::in_holdout(flow, &customer, if flow == "winback" { 30 } else { 20 });
        let loyal = c % 5 < 2;
        let anchor = now - Duration::days(18 + (c % 10) as i64);
        let p = match (flow, loyal, held) {
            ("winback", false, false) => 0.40,
            ("winback", false, true) => 0.10,
            ("winback", true, false) => 0.05,
            ("winback", true, true) => 0.35,
            (_, _, false) => 0.22,
            (_, _, true) => 0.20,
        };
        let mut state = CustomerState::new(customer.clone());
        state.orders.insert(format!("p{c}"), order(anchor - Duration::days(40), 60.0));
        if rng.gen_bool(p) {
            let amount = f64::from(rng.gen_range(20..150u32));
            state.orders.insert(format!("w{c}"), order(anchor + Duration::days(4), amount));
        }
        let trace = TraceId::new();
        outcomes.push(ProcessOutcome {
            trace_id: Some(trace),
            decisions: vec![FlowDecision {
                flow: flow.into(),
                flow_version: "v1".into(),
                customer: customer.clone(),
                at_ms: anchor.unix_timestamp() * 1000,
                status: if held { "held_out" } else { "live" }.into(),
                matched: true,
                baseline: None,
                trace_id: trace,
                arm: None,
            }],
            audit: vec![AuditRecord {
                trace_id: trace,
                customer: Some(customer.clone()),
                stage: AuditStage::Scored,
                at: anchor,
                detail: serde_json::json!({
                    "segment": if loyal { "loyal" } else { "active" },
                    "scores": [{"name": "churn_risk", "value": if loyal { 0.2 } else { 0.6 },
                                "model_id": "rules", "model_version": "rules-v1", "explanation": ""}],
                }),
            }],
            outbox: if c < 2 {
                vec![NewOutboxItem {
                    trace_id: trace,
                    customer: customer.clone(),
                    destination: "klaviyo".into(),
                    action_json: "{\"n\":1}".into(),
                    origin_us: 0,
                }]
            } else {
                Vec::new()
            },
            ..Default::default()
        });
        states.push(StoredState {
            customer: customer.clone(),
            email: Some(format!("c{c}@example.org")),
            state: state.encode(),
        });
    }
    store.put_states(states).await.unwrap();
    store.commit_processing(outcomes).await.unwrap();
    // Both pushes run out of retries.
    let due = store.due_outbox(i64::MAX / 2, 10).await.unwrap();
    assert_eq!(due.len(), 2);
    let dead = due
        .iter()
        .map(|i| AttemptRecord {
            item_id: i.id,
            trace_id: i.trace_id,
            result: AttemptResult::DeadLettered("HTTP 400: invalid profile".into()),
            audit: AuditRecord {
                trace_id: i.trace_id,
                customer: Some(i.customer.clone()),
                stage: AuditStage::DeliveryAttempt,
                at: now,
                detail: serde_json::json!({}),
            },
            at_ms: now.unix_timestamp() * 1000,
        })
        .collect();
    store.record_attempts(dead).await.unwrap();
    let version = |id: &str, days_ago: i64, q: f64, active: bool| ModelVersion {
        id: id.into(),
        family: "bgnbd".into(),
        created_at_ms: (now - Duration::days(days_ago)).unix_timestamp() * 1000,
        active,
        body: serde_json::json!({"customers": 800, "holdout": {"models": [
            {"model": "bgnbd", "quality": {"lift_quality": q}}
        ]}}),
    };
    store.save_model_version(version("bgnbd-older", 20, 0.81, false)).await.unwrap();
    store.save_model_version(version("bgnbd-newer", 5, 0.62, true)).await.unwrap();
    store.activate_model_version("bgnbd-newer").await.unwrap();
}

async fn filled(dir: &Path, now: OffsetDateTime) -> Arc<dyn Store> {
    let store = SqliteStore::open(&dir.join("data"), Durability::Normal).unwrap();
    fill(&store, now).await;
    Arc::new(store)
}

fn settings(slack: bool, email: Option<EmailConfig>) -> DigestConfig {
    DigestConfig { slack, email, period: None, window: "14d".into(), summary: true }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_numbers_are_the_reports_numbers_for_the_same_period() {
    let dir = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    let store = filled(dir.path(), now).await;
    let p = period(now);
    let flows = flows();
    let d = digest::build(&*store, &flows, p, "14d", 0.05, now).await.unwrap();

    let names: Vec<&str> = d.flows.iter().map(|f| f.lift.flow.as_str()).collect();
    assert_eq!(names, vec!["winback", "welcome"]);
    assert_eq!(d.unmeasured, vec![("thanks".to_string(), "no holdout group".to_string())]);
    for f in &d.flows {
        // The same reports, asked for the same period as `nudge report` would be.
        let q = p.query(&f.lift.flow, "14d");
        let Report::Lift(lift) = report_cli::build(&*store, &flows, ReportKind::Lift, &q, now).await.unwrap()
        else {
            panic!("a lift report")
        };
        assert_eq!(serde_json::to_value(&f.lift).unwrap(), serde_json::to_value(&lift).unwrap());
        let campaign = campaign_report::build(&*store, &flows, &CampaignQuery { report: q, arm: None }, now)
            .await
            .unwrap();
        assert_eq!(
            serde_json::to_value(f.campaign.as_ref().unwrap()).unwrap(),
            serde_json::to_value(&campaign).unwrap()
        );
        assert!(lift.treated.customers > 100 && lift.held_out.customers > 50, "{lift:?}");
        // The figures the digest shows are the report's, as every rendering prints them.
        let figures = [
            lift.treated.customers.to_string(),
            lift.held_out.conversions.to_string(),
            pct(lift.treated.rate),
            pct(lift.held_out.rate),
            pp(lift.difference),
            pp(lift.difference_ci.unwrap().0),
            pp(lift.difference_ci.unwrap().1),
        ];
        let shown: Vec<&String> = f.claim.figures.iter().map(|(_, v)| v).collect();
        for fig in &figures {
            assert!(shown.iter().any(|v| v.contains(fig.as_str())), "{fig} in {shown:?}");
        }
        let (_, blocks) = render::slack(&d);
        let slack = serde_json::Value::Array(blocks).to_string();
        let (html, text) = (render::html(&d), render::text(&d));
        for fig in &figures {
            assert!(
                slack.contains(fig.as_str()) && html.contains(fig.as_str()) && text.contains(fig.as_str()),
                "{fig}"
            );
        }
        assert!(f.claim.source.contains(&format!("nudge report lift --flow {}", lift.flow)));
    }
    let winback = &d.flows[0];
    assert_eq!(winback.claim.tone, Tone::Good, "{:?}", winback.claim);

    // The loyal segment of winback does worse than its own hold-out, with the campaign report's numbers.
    let seg = d.segments.iter().find(|c| c.id == "segment-winback-loyal").expect("loyal is underperforming");
    let row =
        winback.campaign.as_ref().unwrap().analysis.segments.iter().find(|s| s.segment == "loyal").unwrap();
    assert_eq!(seg.figures[0].1, row.treated.n.to_string());
    assert!(seg.figures.iter().any(|(_, v)| v.starts_with(&pp(row.uplift.abs.unwrap()))), "{seg:?}");
    assert!(
        d.segments.iter().all(|c| c.id != "segment-winback-active"),
        "active does better than its hold-out"
    );
    assert!(d.suggestions.iter().any(|s| s.because == seg.id));

    // Model quality: the newer version measures worse than the one before it.
    let m = d.models.iter().find(|c| c.id == "model-bgnbd-newer").unwrap();
    assert_eq!(m.tone, Tone::Bad);
    assert!(m.text.contains("(bgnbd, active)"), "{m:?}");
    assert!(m.figures.iter().any(|(l, v)| l.ends_with("this version") && v == "62.0 %"), "{m:?}");
    assert!(m.figures.iter().any(|(l, v)| l.ends_with("change") && v == "-19.0 pp"), "{m:?}");
    let review = d.suggestions.iter().find(|s| s.because == "model-bgnbd-newer").unwrap();
    assert_eq!(review.command.as_deref(), Some("nudge models report bgnbd-newer"));
    assert!(review.text.contains("activating bgnbd-older again rolls back"), "{review:?}");

    // Dead letters: the two pushes to klaviyo, with what to run.
    let dl = d.dead_letters.iter().find(|c| c.id == "dead-klaviyo").unwrap();
    assert_eq!(dl.figures[0], ("dead-lettered items".to_string(), "2".to_string()));
    assert!(
        d.suggestions
            .iter()
            .any(|s| s.command.as_deref() == Some("nudge replay dead-letters --destination klaviyo"))
    );

    // Every suggestion follows from a claim the digest makes; the facts for a summary hold no customer.
    let ids: Vec<&str> = d.claims().map(|c| c.id.as_str()).collect();
    assert!(d.suggestions.iter().all(|s| ids.contains(&s.because.as_str())));
    let facts = render::facts(&d);
    assert!(!facts.contains("shopify:") && !facts.contains('@'), "{facts}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn digest_goes_to_slack_as_blocks_and_by_email_as_html() {
    nudge_testkit::ensure_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    let store = filled(dir.path(), now).await;
    let slack = FakeSlack::start(FakeSlackConfig::default()).await.unwrap();
    let sink = FakeSmtp::start(FakeSmtpConfig {
        credentials: Some(("digest".into(), "s3cret-pass".into())),
        ..Default::default()
    })
    .await
    .unwrap();
    // SAFETY: set before any thread of this test reads the environment; the name is this test's own.
    unsafe { std::env::set_var("NUDGE_TEST_DIGEST_SMTP_PASSWORD", "s3cret-pass") };
    let email = EmailConfig {
        smtp_host: sink.host(),
        smtp_port: Some(sink.port()),
        tls: TlsMode::None,
        username: Some("digest".into()),
        password_env: Some("NUDGE_TEST_DIGEST_SMTP_PASSWORD".into()),
        from: "Nudge <digest@shop.example>".into(),
        to: vec!["team@shop.example".into(), "Lead <lead@shop.example>".into()],
        timeout: nudge::config::HumanDuration(StdDuration::from_secs(5)),
    };
    email.check().unwrap();
    let client = nudge_deliver::slack::SlackClient::new(
        nudge_deliver::slack::SlackConfig::new(slack.webhook_url()).allowing_private(),
    )
    .unwrap();
    let digester = Digester {
        store: store.clone(),
        flows: Arc::new(flows()),
        settings: settings(true, Some(email.clone())),
        slack: Some(Arc::new(client)),
        llm: None,
        max_quality_drop: 0.05,
    };
    let d = tokio::time::timeout(StdDuration::from_secs(60), digester.make(period(now), now))
        .await
        .unwrap()
        .unwrap();
    let (sent, trace) = tokio::time::timeout(StdDuration::from_secs(60), digester.send(&d)).await.unwrap();
    assert!(sent.iter().all(|s| s.outcome.is_ok()), "{sent:?}");
    assert_eq!(sent.len(), 2);
    // Audited: the period and each destination's outcome, under a trace of its own.
    let view = store.trace(trace).await.unwrap().expect("the digest's audit record");
    assert_eq!(view.records.len(), 1);
    assert_eq!(view.records[0].stage, AuditStage::Digest);
    assert!(view.terminal.is_none(), "a digest is not a delivery");
    let detail = &view.records[0].detail;
    assert_eq!(detail["sent"][0]["destination"], "slack");
    assert_eq!(detail["sent"][1]["ok"], true);
    assert_eq!(detail["flows"], 2);

    // Slack: one Block Kit message the fake accepted, with the notification text and the flows' figures.
    let messages = slack.messages();
    assert_eq!(messages.len(), 1);
    let m = &messages[0];
    assert!(m["text"].as_str().unwrap().contains("nudge digest"));
    let blocks = m["blocks"].as_array().unwrap();
    assert!(blocks.len() <= 50 && blocks[0]["type"] == "header");
    nudge_testkit::fake_slack::check_blocks(&m["blocks"]).unwrap();
    let all = m["blocks"].to_string();
    assert!(all.contains(&pct(d.flows[0].lift.treated.rate)) && all.contains("Dead letters"), "{all}");

    // Email: authenticated, to both recipients, HTML with a plain-text alternative.
    let mails = sink.mails();
    assert_eq!(mails.len(), 1);
    let mail = &mails[0];
    assert_eq!(mail.user.as_deref(), Some("digest"));
    assert_eq!(mail.from, "digest@shop.example");
    assert_eq!(mail.to, vec!["team@shop.example".to_string(), "lead@shop.example".to_string()]);
    assert!(mail.data.contains("multipart/alternative"), "{}", mail.data);
    let parts = mime_parts(&mail.data);
    let html =
        parts.iter().find(|(t, _)| t.starts_with("text/html")).map(|p| p.1.clone()).expect("an HTML part");
    let plain =
        parts.iter().find(|(t, _)| t.starts_with("text/plain")).map(|p| p.1.clone()).expect("a text part");
    // (The sink's message ends each part's last line with the boundary's CRLF.)
    assert_eq!(html.trim_end(), render::html(&d).trim_end());
    assert_eq!(plain.trim_end(), render::text(&d).trim_end());
    assert!(html.contains("href=\"#dead-klaviyo\"") && html.contains(&pp(d.flows[0].lift.difference)));
    let subject = mail.data.lines().find(|l| l.starts_with("Subject:")).unwrap();
    assert!(subject.contains("nudge digest"), "{subject}");

    // Failures are reported per destination: Slack's channel is gone, the relay refuses the message.
    slack.set_mode(SlackMode::Answer { status: 404, body: "channel_not_found".into(), count: 1 });
    sink.fail_next_data(554, "5.6.0 Message rejected");
    let (sent, _) = digester.send(&d).await;
    let errors: Vec<String> = sent.iter().map(|s| s.outcome.clone().unwrap_err()).collect();
    assert!(errors[0].contains("channel_not_found"), "{errors:?}");
    assert!(errors[1].contains("554") || errors[1].contains("rejected"), "{errors:?}");
    // A wrong password is refused by the relay and said so.
    let wrong = EmailConfig { password_env: Some("NUDGE_TEST_DIGEST_SMTP_WRONG".into()), ..email };
    unsafe { std::env::set_var("NUDGE_TEST_DIGEST_SMTP_WRONG", "nope") };
    let e = digest::send_email(&wrong, wrong.password().unwrap(), &d).await.unwrap_err();
    assert!(e.contains("535") || e.to_lowercase().contains("authentication"), "{e}");
    assert_eq!(sink.mails().len(), 1, "nothing more was accepted");
    slack.shutdown().await;
    sink.shutdown().await;
}

/// The parts of a MIME message (content type, decoded body), for one level of multipart.
fn mime_parts(data: &str) -> Vec<(String, String)> {
    let boundary = data
        .split("boundary=")
        .nth(1)
        .map(|b| b.trim_start_matches('"').split(['"', '\r', '\n', ';']).next().unwrap().to_string())
        .expect("a boundary");
    let mut out = Vec::new();
    for part in data.split(&format!("--{boundary}")).skip(1) {
        let Some((head, body)) = part.split_once("\r\n\r\n") else { continue };
        let header = |name: &str| {
            head.lines()
                .find(|l| l.to_ascii_lowercase().starts_with(name))
                .map(|l| l.split_once(':').unwrap().1.trim().to_ascii_lowercase())
                .unwrap_or_default()
        };
        let kind = header("content-type");
        let body = body.trim_end_matches("\r\n");
        let decoded = match header("content-transfer-encoding").as_str() {
            "base64" => String::from_utf8(
                base64::engine::general_purpose::STANDARD.decode(body.replace("\r\n", "")).unwrap(),
            )
            .unwrap(),
            "quoted-printable" => quoted_printable(body),
            _ => body.replace("\r\n", "\n"),
        };
        out.push((kind, decoded));
    }
    out
}

fn quoted_printable(s: &str) -> String {
    let joined = s.replace("=\r\n", "");
    let bytes = joined.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' && i + 2 < bytes.len() + 1 {
            let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap();
            out.push(u8::from_str_radix(hex, 16).unwrap());
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).unwrap().replace("\r\n", "\n")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_summary_is_kept_only_when_every_figure_is_in_the_numbers() {
    nudge_testkit::ensure_crypto_provider();
    let dir = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    let store = filled(dir.path(), now).await;
    let fake = FakeLlm::start(FakeLlmConfig::default()).await.unwrap();
    let llm = LlmConfig::new(
        &fake.base_url(),
        nudge_testkit::fake_llm::DEFAULT_MODEL,
        nudge_testkit::fake_llm::DEFAULT_API_KEY,
    );
    let client = Arc::new(nudge_llm::LlmClient::new(llm).unwrap());
    let digester = Digester {
        store: store.clone(),
        flows: Arc::new(flows()),
        settings: settings(false, None),
        slack: None,
        llm: Some(client),
        max_quality_drop: 0.05,
    };
    let base = digest::build(&*store, &flows(), period(now), "14d", 0.05, now).await.unwrap();
    let w = &base.flows[0].lift;
    let (lo, hi) = w.difference_ci.unwrap();
    // Figures taken from the digest's own numbers, as the model is told to: grounded.
    let grounded = format!(
        "Winback worked: {} of treated customers converted against {} held out, a lift of {} (95% interval {} to \
         {}). Its loyal segment did worse than its hold-out. 2 pushes to klaviyo are dead-lettered; fix them first.",
        pct(w.treated.rate),
        pct(w.held_out.rate),
        pp(w.difference),
        pp(lo),
        pp(hi)
    );
    fake.push([LlmAnswer::Content(serde_json::json!({"summary": grounded}).to_string())]);
    let d = digester.make(period(now), now).await.unwrap();
    assert!(
        matches!(&d.summary, Summary::Grounded { text, tokens } if *text == grounded && *tokens > 0),
        "{:?}",
        d.summary
    );
    assert!(render::text(&d).contains(&grounded));
    let (_, blocks) = render::slack(&d);
    assert!(serde_json::Value::Array(blocks).to_string().contains("Winback worked"));
    // What the model saw: the digest's facts, aggregates only.
    let sent = fake.received_text();
    assert!(
        sent.contains("Flow winback") && !sent.contains("shopify:") && !sent.contains("example.org"),
        "{sent}"
    );

    // Invented figures: the summary is left out, and the digest says why.
    let invented =
        format!("Winback lifted conversion by 37.5 pp across 123456 customers, {}.", pct(w.treated.rate));
    fake.push([LlmAnswer::Content(serde_json::json!({"summary": invented}).to_string())]);
    let d = digester.make(period(now), now).await.unwrap();
    let Summary::Rejected { ungrounded, .. } = &d.summary else { panic!("{:?}", d.summary) };
    assert_eq!(ungrounded, &vec!["37.5".to_string(), "123456".to_string()]);
    // Said in the audit record too.
    let (sent, trace) = digester.send(&d).await;
    assert!(sent.is_empty(), "no destination configured");
    let view = store.trace(trace).await.unwrap().unwrap();
    let detail = &view.records[0].detail;
    assert_eq!(detail["summary"]["status"], "rejected");
    assert!(detail["summary_note"].as_str().unwrap().contains("left out"), "{detail}");
    for rendered in
        [render::text(&d), render::html(&d), serde_json::Value::Array(render::slack(&d).1).to_string()]
    {
        assert!(
            rendered.contains("left out")
                && rendered.contains("37.5")
                && !rendered.contains("123456 customers")
        );
    }
    // A failed generation: no summary, and the reason.
    fake.push([LlmAnswer::InsufficientQuota]);
    let d = digester.make(period(now), now).await.unwrap();
    assert!(matches!(&d.summary, Summary::Failed { reason } if reason.contains("quota")), "{:?}", d.summary);
    assert!(render::text(&d).contains("No generated summary"));
    fake.shutdown().await;
}

fn nudge(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nudge"))
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--config")
        .arg(dir.join("nudge.toml"))
        .args(args)
        .env("RUST_LOG", "warn")
        .env_remove("NUDGE_CONFIG")
        .env("KLAVIYO_PRIVATE_KEY", "pk_test_digest")
        .output()
        .expect("the nudge binary runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_cli_previews_and_refuses_what_it_cannot_do() {
    let dir = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    let d = {
        let store = filled(dir.path(), now).await;
        digest::build(&*store, &flows(), period(now), "14d", 0.05, now).await.unwrap()
    };
    std::fs::write(
        dir.path().join("nudge.toml"),
        format!("[destinations.klaviyo]\napi_key = \"${{KLAVIYO_PRIVATE_KEY}}\"\n{FLOWS}"),
    )
    .unwrap();
    let rfc = |ms: i64| {
        OffsetDateTime::from_unix_timestamp(ms / 1000)
            .unwrap()
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap()
    };
    let (since, until) = (rfc(d.since_ms), rfc(d.until_ms));
    let o = nudge(
        dir.path(),
        &["digest", "preview", "--since", &since, "--until", &until, "--format", "slack-json"],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    nudge_testkit::fake_slack::check_blocks(&json["blocks"]).unwrap();
    assert_eq!(
        json["blocks"],
        serde_json::Value::Array(render::slack(&d).1),
        "the binary shows the same digest"
    );
    let o = nudge(dir.path(), &["digest", "preview", "--since", &since, "--until", &until]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success() && out.contains("Underperforming segments") && out.contains("winback"),
        "{out}"
    );
    let o =
        nudge(dir.path(), &["digest", "preview", "--since", &since, "--until", &until, "--format", "html"]);
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("<!DOCTYPE html>"));
    // Bad input and nowhere to send: exit 2 with what to do.
    let o = nudge(dir.path(), &["digest", "preview", "--since", "yesterday"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("since:"));
    let o = nudge(dir.path(), &["digest", "send", "--since", "7d"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("nowhere to send"));
    // Configuration errors name the key.
    for (extra, key) in [
        ("[pipeline]\ndigest_schedule = \"0 8 * * 1\"\n", "pipeline.digest_schedule"),
        (
            "[pipeline]\ndigest_schedule = \"every monday\"\n[digest]\nslack = false\n",
            "pipeline.digest_schedule",
        ),
        ("[digest]\nslack = true\n", "digest.slack"),
        ("[digest]\nwindow = \"soon\"\n", "digest.window"),
        (
            "[digest.email]\nsmtp_host = \"smtp.shop.example\"\nfrom = \"a@shop.example\"\nto = [\"nope\"]\n",
            "digest.email.to[0]",
        ),
    ] {
        std::fs::write(
            dir.path().join("nudge.toml"),
            format!("{extra}[destinations.klaviyo]\napi_key = \"${{KLAVIYO_PRIVATE_KEY}}\"\n{FLOWS}"),
        )
        .unwrap();
        let o = nudge(dir.path(), &["digest", "preview"]);
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success() && err.contains(key), "{extra}: {err}");
    }
}
