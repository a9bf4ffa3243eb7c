//! Making one campaign digest for a store with a realistic history:
//! `cargo bench -p nudge --bench digest [-- --customers 50000 --flows 4 --runs 7]`.
//!
//! The store (embedded SQLite, in a temporary directory) holds `--customers` customers, each with a stored
//! state (two to four orders, a later one for those who converted), one recorded decision of one of
//! `--flows` flows (each with a 20 % holdout) in the 30-day period, its `scored` audit record (segment and
//! churn score), plus two model versions fitted in the period and a few dead letters. Timed: the digest
//! built from the reports (`nudge::digest::build`: per flow the lift report and the campaign report with
//! its 1,000-resample bootstrap, segments, model quality, dead letters), then its three renderings (Slack
//! blocks, HTML email, text). No LLM call and no sending: those are network time.

use nudge::digest::{self, Period};
use nudge::digest_render as render;
use nudge_model::{AuditRecord, AuditStage, CustomerId, Money, TraceId};
use nudge_policy::flows::{FlowSet, FlowSpec};
use nudge_state::{CustomerState, OrderRecord};
use nudge_store::prelude::*;
use nudge_store::sqlite::{Durability, SqliteStore};
use nudge_store::{
    AttemptRecord, AttemptResult, FlowDecision, ModelVersion, NewOutboxItem, ProcessOutcome, Store,
    StoredState,
};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::time::Instant;
use time::{Duration, OffsetDateTime};

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn arg(name: &str, default: usize) -> usize {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn flows(n: usize) -> FlowSet {
    let specs: Vec<FlowSpec> = (0..n)
        .map(|i| {
            toml::from_str(&format!(
                "name = \"flow_{i}\"\ntrigger = \"order_placed\"\nwhen = \"customer.orders_count >= 1\"\n\
                 holdout_percent = 20\nactions = [ {{ type = \"track_event\", destination = \"klaviyo\", \
                 metric = \"AI Flow {i}\" }} ]\n"
            ))
            .unwrap()
        })
        .collect();
    FlowSet::compile(&specs, &["klaviyo"]).unwrap()
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

async fn fill(store: &dyn Store, customers: usize, n_flows: usize, now: OffsetDateTime) {
    let mut rng = StdRng::seed_from_u64(2026);
    let segments = ["loyal", "active", "at_risk", "lapsed", "new"];
    for chunk in (0..customers).collect::<Vec<_>>().chunks(2000) {
        let mut outcomes = Vec::with_capacity(chunk.len());
        let mut states = Vec::with_capacity(chunk.len());
        for &c in chunk {
            let customer: CustomerId = format!("shopify:{}", 5_000_000 + c).parse().unwrap();
            let flow = format!("flow_{}", c % n_flows);
            let held = nudge_policy::in_holdout(&flow, &customer, 20);
            let segment = segments[c % segments.len()];
            let anchor = now - Duration::days(16 + (c % 14) as i64);
            let mut state = CustomerState::new(customer.clone());
            for k in 0..rng.gen_range(2..5u32) {
                state.orders.insert(
                    format!("p{c}-{k}"),
                    order(anchor - Duration::days(30 * (i64::from(k) + 1)), 45.0),
                );
            }
            let p = if held { 0.10 } else { 0.14 } + if segment == "loyal" { 0.1 } else { 0.0 };
            if rng.gen_bool(p) {
                state.orders.insert(
                    format!("w{c}"),
                    order(anchor + Duration::days(3), f64::from(rng.gen_range(20..200u32))),
                );
            }
            let trace = TraceId::new();
            outcomes.push(ProcessOutcome {
                trace_id: Some(trace),
                decisions: vec![FlowDecision {
                    flow,
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
                    detail: serde_json::json!({"segment": segment, "scores": [
                        {"name": "churn_risk", "value": rng.gen_range(0.0..1.0), "model_id": "rules",
                         "model_version": "rules-v1", "explanation": ""}]}),
                }],
                outbox: if c < 5 {
                    vec![NewOutboxItem {
                        trace_id: trace,
                        customer: customer.clone(),
                        destination: "klaviyo".into(),
                        action_json: "{}".into(),
                        origin_us: 0,
                    }]
                } else {
                    Vec::new()
                },
                ..Default::default()
            });
            states.push(StoredState { customer, email: None, state: state.encode() });
        }
        store.put_states(states).await.unwrap();
        store.commit_processing(outcomes).await.unwrap();
    }
    let due = store.due_outbox(i64::MAX / 2, 10).await.unwrap();
    let dead = due
        .iter()
        .map(|i| AttemptRecord {
            item_id: i.id,
            trace_id: i.trace_id,
            result: AttemptResult::DeadLettered("HTTP 400".into()),
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
    for (id, days, q) in [("bgnbd-a", 20, 0.78), ("bgnbd-b", 4, 0.74)] {
        store
            .save_model_version(ModelVersion {
                id: id.into(),
                family: "bgnbd".into(),
                created_at_ms: (now - Duration::days(days)).unix_timestamp() * 1000,
                active: false,
                body: serde_json::json!({"holdout": {"models": [{"model": "bgnbd", "quality": {"lift_quality": q}}]}}),
            })
            .await
            .unwrap();
    }
}

fn stats(label: &str, mut ms: Vec<f64>) {
    ms.sort_by(f64::total_cmp);
    let median = ms[ms.len() / 2];
    println!(
        "{label:<28} median {median:>9.1} ms   min {:>9.1} ms   max {:>9.1} ms   ({} runs)",
        ms[0],
        ms[ms.len() - 1],
        ms.len()
    );
}

fn main() {
    let customers = arg("--customers", 50_000);
    let n_flows = arg("--flows", 4).max(1);
    let runs = arg("--runs", 7).max(1);
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(dir.path(), Durability::Normal).unwrap();
        let now = OffsetDateTime::now_utc();
        let t = Instant::now();
        fill(&store, customers, n_flows, now).await;
        println!(
            "store: {customers} customers, {n_flows} flows (20 % holdout), one decision each; filled in {:.1} s",
            t.elapsed().as_secs_f64()
        );
        let flows = flows(n_flows);
        let period = Period {
            since_ms: (now - Duration::days(30)).unix_timestamp() * 1000,
            until_ms: now.unix_timestamp() * 1000,
        };
        let (mut build, mut rendering) = (Vec::new(), Vec::new());
        let mut last = None;
        for _ in 0..runs {
            let t = Instant::now();
            let d = digest::build(&store, &flows, period, "14d", 0.05, now).await.unwrap();
            build.push(t.elapsed().as_secs_f64() * 1000.0);
            let t = Instant::now();
            let (_, blocks) = render::slack(&d);
            let html = render::html(&d);
            let text = render::text(&d);
            rendering.push(t.elapsed().as_secs_f64() * 1000.0);
            assert!(!blocks.is_empty() && !html.is_empty() && !text.is_empty());
            last = Some(d);
        }
        let d = last.unwrap();
        let treated: u64 = d.flows.iter().map(|f| f.lift.treated.customers + f.lift.held_out.customers).sum();
        println!(
            "digest: {} flows measured over {treated} customers, {} segments, {} model claims, {} dead-letter \
             claims, {} suggestions",
            d.flows.len(),
            d.segments.len(),
            d.models.len(),
            d.dead_letters.len(),
            d.suggestions.len()
        );
        // Where the time goes: each report alone, the flows one after another.
        let (mut lift, mut campaign) = (Vec::new(), Vec::new());
        for _ in 0..runs {
            let t = Instant::now();
            for f in &flows.flows {
                let q = period.query(&f.spec.name, "14d");
                nudge::report_cli::build(&store, &flows, nudge::report_cli::ReportKind::Lift, &q, now).await.unwrap();
            }
            lift.push(t.elapsed().as_secs_f64() * 1000.0);
            let t = Instant::now();
            for f in &flows.flows {
                let q = nudge::campaign_report::CampaignQuery { report: period.query(&f.spec.name, "14d"), arm: None };
                nudge::campaign_report::build(&store, &flows, &q, now).await.unwrap();
            }
            campaign.push(t.elapsed().as_secs_f64() * 1000.0);
        }
        // The store reads behind them: every decided customer's state (read, then parsed) and every
        // decision's audit trail (the campaign report's `scored` records), one after another.
        let ids: Vec<CustomerId> = (0..customers).map(|c| format!("shopify:{}", 5_000_000 + c).parse().unwrap()).collect();
        let t = Instant::now();
        let mut raw = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(500) {
            raw.extend(store.load_states(chunk).await.unwrap());
        }
        let read_ms = t.elapsed().as_secs_f64() * 1000.0;
        let t = Instant::now();
        for s in &raw {
            let _: CustomerState = CustomerState::decode(&s.state).unwrap();
        }
        let parse_ms = t.elapsed().as_secs_f64() * 1000.0;
        let mut traces = Vec::new();
        for f in &flows.flows {
            traces.extend(store.flow_decisions(&f.spec.name, period.since_ms, period.until_ms).await.unwrap().into_iter().map(|d| d.trace_id));
        }
        let t = Instant::now();
        for tr in &traces {
            store.trace(*tr).await.unwrap();
        }
        let trace_ms = t.elapsed().as_secs_f64() * 1000.0;
        println!(
            "store reads, once over all {customers}: states read {read_ms:.0} ms, parsed {parse_ms:.0} ms; {} traces read {trace_ms:.0} ms",
            traces.len()
        );
        stats("digest built (reports)", build);
        stats("  lift reports alone", lift);
        stats("  campaign reports alone", campaign);
        stats("rendered (slack+html+text)", rendering);
    });
}
