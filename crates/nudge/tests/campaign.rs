//! `nudge report campaign` on a store filled with a flow's decisions, its customers' orders and the
//! decisions' audit trail: the counts, revenue, segments and drivers come out as generated, shadow-mode
//! decisions and open windows are left out, bad requests are refused with what to do, and the binary prints
//! the same numbers as JSON and writes the HTML page.

use nudge::campaign_report::{self, CampaignQuery, CampaignReport};
use nudge::report_cli::{ReportError, ReportQuery};
use nudge_model::{AuditRecord, AuditStage, CustomerId, Money, TraceId};
use nudge_policy::flows::{FlowSet, FlowSpec};
use nudge_state::{CustomerState, OrderRecord};
use nudge_store::sqlite::{Durability, SqliteStore};
use nudge_store::{FlowDecision, ProcessOutcome, Store, StoredState};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::path::Path;
use std::process::{Command, Output};
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

const CUSTOMERS: u64 = 600;

fn flows() -> FlowSet {
    #[derive(serde::Deserialize)]
    struct F {
        flows: Vec<FlowSpec>,
    }
    FlowSet::compile(&toml::from_str::<F>(FLOWS).unwrap().flows, &["klaviyo"]).unwrap()
}

fn cid(c: u64) -> CustomerId {
    format!("shopify:{}", 7_000_000 + c).parse().unwrap()
}

fn order(at: OffsetDateTime, amount: f64, cancelled: bool) -> OrderRecord {
    OrderRecord {
        created_at: at,
        updated_at: at,
        total: Money::parse(&format!("{amount:.2}"), "EUR").unwrap(),
        cancelled,
        items: Vec::new(),
        checkout_token: None,
        cart_token: None,
    }
}

/// What the test generated, to compare the report with.
#[derive(Default)]
struct Expected {
    treated: (u64, u64, f64),
    control: (u64, u64, f64),
    at_decision: u64,
    unknown: u64,
    shadow_decisions: u64,
    /// Treated customers offered `pct_10`: (customers, conversions).
    pct_10: (u64, u64),
}

/// 600 customers decided 30–40 days ago: held out by the flow's own hash (30 %); treated customers order
/// within 14 days with probability 0.30 + 0.04·prior orders, held-out ones with 0.10 + 0.04·prior orders.
/// One customer in ten has no `scored` audit record (segment unknown). Extra rows the report must ignore:
/// orders outside the window or cancelled, a shadow-mode version's decisions, a not-matched decision, and a
/// customer decided two days ago (window still open).
async fn fill(store: &dyn Store, now: OffsetDateTime) -> Expected {
    let mut rng = StdRng::seed_from_u64(16);
    let mut exp = Expected::default();
    let mut outcomes = Vec::new();
    let mut states = Vec::new();
    for c in 0..CUSTOMERS {
        let customer = cid(c);
        let held = nudge_policy::in_holdout("winback", &customer, 30);
        let anchor = now - Duration::days(30 + (c % 10) as i64);
        let prior = rng.gen_range(0..6u32);
        let mut state = CustomerState::new(customer.clone());
        for k in 0..prior {
            let at = anchor - Duration::days(20 + 30 * i64::from(k));
            state.orders.insert(format!("p{c}-{k}"), order(at, 50.0, false));
        }
        let p = if held { 0.10 } else { 0.30 } + 0.04 * f64::from(prior);
        let converted = rng.gen_bool(p);
        let mut revenue = 0.0;
        if converted {
            revenue = f64::from(rng.gen_range(20..200u32));
            state.orders.insert(format!("w{c}"), order(anchor + Duration::days(3), revenue, false));
        } else if c % 3 == 0 {
            // Ordered, but after the window; or inside it, then cancelled.
            state.orders.insert(format!("late{c}"), order(anchor + Duration::days(15), 80.0, false));
            state.orders.insert(format!("cx{c}"), order(anchor + Duration::days(2), 80.0, true));
        }
        let g = if held { &mut exp.control } else { &mut exp.treated };
        g.0 += 1;
        g.1 += u64::from(converted);
        g.2 += revenue;
        let trace = TraceId::new();
        let at_ms = anchor.unix_timestamp() * 1000;
        // Treated customers were offered an arm: `pct_10` to even ones, `free_shipping` to odd ones.
        let arm = (!held).then(|| if c % 2 == 0 { "pct_10" } else { "free_shipping" }.to_string());
        if c % 2 == 0 && !held {
            exp.pct_10 = (exp.pct_10.0 + 1, exp.pct_10.1 + u64::from(converted));
        }
        let decision = |at_ms: i64, status: &str, matched: bool, version: &str| FlowDecision {
            flow: "winback".into(),
            flow_version: version.into(),
            customer: customer.clone(),
            at_ms,
            status: status.into(),
            matched,
            baseline: None,
            trace_id: trace,
            arm: if status == "live" { arm.clone() } else { None },
        };
        let mut decisions = vec![
            decision(at_ms, if held { "held_out" } else { "live" }, true, "v2"),
            // A later decision does not move the anchor.
            decision(at_ms + 86_400_000, if held { "held_out" } else { "capped" }, true, "v2"),
            decision(at_ms - 86_400_000, "not_matched", false, "v2"),
        ];
        if c % 7 == 0 {
            // The flow ran in shadow mode under v1: these decisions (held-out ones too) measure nothing.
            decisions.push(decision(
                at_ms - 5 * 86_400_000,
                if held { "held_out" } else { "shadow" },
                true,
                "v1",
            ));
            exp.shadow_decisions += 1;
        }
        let mut audit = Vec::new();
        if c % 10 == 0 {
            exp.unknown += 1;
        } else {
            exp.at_decision += 1;
            let segment = if prior >= 3 { "loyal" } else { "active" };
            let churn = 0.9 - 0.15 * f64::from(prior) + rng.gen_range(-0.05..0.05);
            audit.push(AuditRecord {
                trace_id: trace,
                customer: Some(customer.clone()),
                stage: AuditStage::Scored,
                at: anchor,
                detail: serde_json::json!({
                    "segment": segment,
                    "scores": [{"name": "churn_risk", "value": churn, "model_id": "rules",
                                "model_version": "rules-v1", "explanation": ""}],
                }),
            });
        }
        outcomes.push(ProcessOutcome { trace_id: Some(trace), audit, decisions, ..Default::default() });
        states.push(StoredState { customer: customer.clone(), email: None, state: state.encode() });
    }
    // Decided two days ago: the 14-day window is still open.
    let late = cid(CUSTOMERS + 1);
    let trace = TraceId::new();
    outcomes.push(ProcessOutcome {
        trace_id: Some(trace),
        decisions: vec![FlowDecision {
            flow: "winback".into(),
            flow_version: "v2".into(),
            customer: late.clone(),
            at_ms: (now - Duration::days(2)).unix_timestamp() * 1000,
            status: "live".into(),
            matched: true,
            baseline: None,
            trace_id: trace,
            arm: None,
        }],
        ..Default::default()
    });
    // The flow without a holdout recorded decisions too.
    outcomes.push(ProcessOutcome {
        trace_id: Some(trace),
        decisions: vec![FlowDecision {
            flow: "thanks".into(),
            flow_version: "v2".into(),
            customer: late,
            at_ms: (now - Duration::days(20)).unix_timestamp() * 1000,
            status: "live".into(),
            matched: true,
            baseline: None,
            trace_id: trace,
            arm: None,
        }],
        ..Default::default()
    });
    // A flow with a holdout but no offer arm.
    outcomes.push(ProcessOutcome {
        trace_id: Some(trace),
        decisions: ["live", "held_out"]
            .iter()
            .enumerate()
            .map(|(i, status)| FlowDecision {
                flow: "welcome".into(),
                flow_version: "v2".into(),
                customer: cid(i as u64),
                at_ms: (now - Duration::days(20)).unix_timestamp() * 1000,
                status: status.to_string(),
                matched: true,
                baseline: None,
                trace_id: trace,
                arm: None,
            })
            .collect(),
        ..Default::default()
    });
    store.put_states(states).await.unwrap();
    store.commit_processing(outcomes).await.unwrap();
    exp
}

fn query(flow: &str) -> CampaignQuery {
    CampaignQuery {
        report: ReportQuery { flow: flow.into(), window: Some("14d".into()), ..Default::default() },
        arm: None,
    }
}

async fn report(
    store: &dyn Store,
    q: CampaignQuery,
    now: OffsetDateTime,
) -> Result<CampaignReport, ReportError> {
    campaign_report::build(store, &flows(), &q, now).await
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
        .env("KLAVIYO_PRIVATE_KEY", "pk_test_campaign")
        .output()
        .expect("the nudge binary runs")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn campaign_report_from_a_store_of_decisions_and_orders() {
    let dir = tempfile::tempdir().unwrap();
    let now = OffsetDateTime::now_utc();
    let exp = {
        let store = SqliteStore::open(&dir.path().join("data"), Durability::Normal).unwrap();
        let exp = fill(&store, now).await;

        let r = report(&store, query("winback"), now).await.unwrap();
        let a = &r.analysis;
        assert_eq!((a.treated.n, a.treated.conversions), (exp.treated.0, exp.treated.1));
        assert_eq!((a.control.n, a.control.conversions), (exp.control.0, exp.control.1));
        let rev = |g: (u64, u64, f64)| g.2 / g.0 as f64;
        assert!((a.treated.revenue_per_customer.unwrap() - rev(exp.treated)).abs() < 1e-9);
        assert!((a.control.revenue_per_customer.unwrap() - rev(exp.control)).abs() < 1e-9);
        assert_eq!(r.pending_window, 1);
        assert_eq!(r.excluded_shadow_decisions, exp.shadow_decisions);
        assert_eq!(r.treated_by_status.get("live"), Some(&exp.treated.0), "the anchor is the first decision");
        assert_eq!(r.currency.as_deref(), Some("EUR"));
        // The true difference is 20 pp: detected, and the interval is the lift report's.
        let (lo, hi) = (a.uplift.ci_low.unwrap(), a.uplift.ci_high.unwrap());
        assert!(lo > 0.0 && lo <= 0.20 && 0.20 <= hi, "{lo} {hi}");
        let lift_ci = nudge_policy::reports::newcombe(
            exp.treated.1,
            exp.treated.0,
            exp.control.1,
            exp.control.0,
            nudge_policy::reports::Z95,
        )
        .unwrap();
        assert_eq!((lo, hi), lift_ci);
        assert!(r.summary.contains("raised conversion"), "{}", r.summary);
        // Segments as recorded at decision time; one customer in ten unknown.
        assert_eq!(r.segment_source.get("at_decision"), Some(&exp.at_decision));
        assert_eq!(r.segment_source.get("unknown"), Some(&exp.unknown));
        let names: Vec<&str> = a.segments.iter().map(|s| s.segment.as_str()).collect();
        assert!(
            names.contains(&"loyal") && names.contains(&"active") && names.contains(&"unknown"),
            "{names:?}"
        );
        let seg_n: u64 = a.segments.iter().map(|s| s.treated.n + s.control.n).sum();
        assert_eq!(seg_n, exp.treated.0 + exp.control.0);
        // Prior orders drive conversion; churn risk (recorded at decision, falling with orders) goes the
        // other way.
        let driver = |f: &str| a.drivers.iter().find(|d| d.feature == f);
        let orders = driver("orders_before").expect("orders before is a driver");
        assert_eq!(orders.direction, "higher");
        assert!(orders.auc > 0.55, "{orders:?}");
        assert_eq!(driver("score.churn_risk").map(|d| d.direction), Some("lower"), "{:?}", a.drivers);
        assert!(a.drivers.len() <= 5);
        assert!(driver("days_since_last_order").is_none(), "every last order was 20 days before: constant");

        // JSON keys, HTML with two plots.
        let json = serde_json::to_value(&r).unwrap();
        for key in [
            "flow",
            "window_days",
            "arm",
            "treated",
            "control",
            "uplift",
            "revenue_uplift",
            "segments",
            "drivers",
            "summary",
        ] {
            assert!(json.get(key).is_some(), "{key} missing: {json}");
        }
        assert_eq!(json["window_days"], 14.0);
        for key in ["n", "conversions", "rate", "revenue_per_customer"] {
            assert!(json["treated"].get(key).is_some() && json["control"].get(key).is_some(), "{key}");
        }
        for key in ["abs", "ci_low", "ci_high", "relative"] {
            assert!(json["uplift"].get(key).is_some() && json["revenue_uplift"].get(key).is_some(), "{key}");
        }
        let html = campaign_report::html(&r);
        assert_eq!(html.matches("<svg").count(), 2);
        assert!(html.contains("raised conversion") && html.contains("orders_before"));
        let text = campaign_report::text(&r);
        assert!(text.contains("conversion uplift") && text.contains("drivers among the treated"), "{text}");

        // A 48-hour window: the orders 3 days after the anchor fall outside it.
        let mut q = query("winback");
        q.report.window = Some("48h".into());
        let short = report(&store, q, now).await.unwrap();
        assert_eq!(short.analysis.treated.conversions + short.analysis.control.conversions, 0);
        assert_eq!(short.window_days, 2.0);
        assert!(short.summary.contains("no detectable effect"), "{}", short.summary);

        // Refusals.
        let err = |r: Result<CampaignReport, ReportError>| r.unwrap_err();
        let e = err(report(&store, query("nope"), now).await);
        assert!(matches!(e, ReportError::UnknownFlow(_)) && e.to_string().contains("winback"), "{e}");
        let e = err(report(&store, query("thanks"), now).await);
        assert!(matches!(e, ReportError::NotMeasured(_)) && e.to_string().contains("holdout_percent"), "{e}");
        let mut q = query("winback");
        q.report.window = Some("soon".into());
        let e = err(report(&store, q, now).await);
        assert!(matches!(e, ReportError::BadInput(_)) && e.to_string().starts_with("window:"), "{e}");
        let mut q = query("winback");
        q.report.until = Some("2020-01-01".into());
        let e = err(report(&store, q, now).await);
        assert!(e.to_string().contains("recorded no decisions in the period"), "{e}");
        let mut q = query("welcome");
        q.arm = Some("pct_10".into());
        let e = err(report(&store, q, now).await);
        assert!(e.to_string().contains("this flow has recorded no offer arms"), "{e}");

        // One arm against the holdout.
        let mut q = query("winback");
        q.arm = Some("pct_10".into());
        let one = report(&store, q, now).await.unwrap();
        assert_eq!((one.analysis.treated.n, one.analysis.treated.conversions), exp.pct_10);
        assert_eq!(
            (one.analysis.control.n, one.analysis.control.conversions),
            (exp.control.0, exp.control.1)
        );
        assert_eq!(one.other_arms, exp.treated.0 - exp.pct_10.0);
        assert_eq!(one.arm.as_deref(), Some("pct_10"));
        assert!(one.summary.contains("offered `pct_10`"), "{}", one.summary);
        assert!(one.notes.iter().any(|n| n.contains("not intention to treat")), "{:?}", one.notes);
        let mut q = query("winback");
        q.arm = Some("pct_99".into());
        let none = report(&store, q, now).await.unwrap();
        assert_eq!(none.analysis.treated.n, 0);
        assert!(none.summary.contains("cannot be estimated"), "{}", none.summary);
        exp
    };

    // Through the binary: the same counts as JSON, the HTML page, and exit 2 for an unknown flow.
    std::fs::write(
        dir.path().join("nudge.toml"),
        format!("[destinations.klaviyo]\napi_key = \"${{KLAVIYO_PRIVATE_KEY}}\"\n{FLOWS}"),
    )
    .unwrap();
    let page = dir.path().join("campaign.html");
    let o = nudge(
        dir.path(),
        &[
            "report",
            "campaign",
            "--flow",
            "winback",
            "--window",
            "14d",
            "--json",
            "--out",
            page.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let json: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(json["treated"]["n"], exp.treated.0);
    assert_eq!(json["control"]["conversions"], exp.control.1);
    assert!(std::fs::read_to_string(&page).unwrap().contains("<svg"));
    let o = nudge(dir.path(), &["report", "campaign", "--flow", "winback"]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(o.status.success() && out.contains("held out") && out.contains("raised conversion"), "{out}");
    let o = nudge(dir.path(), &["report", "campaign", "--flow", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no flow named `nope`"));
}
