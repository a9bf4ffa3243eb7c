//! Bulk approval: `cargo bench -p nudge --bench approvals [-- --items 10000 --rounds 5]`.
//!
//! Each round fills a fresh embedded store with `--items` pending approval items of one flow (customers
//! with stored states; each item a trigger event and a profile sync), then times approving them all at once
//! as `POST /api/approvals/bulk` and `nudge approvals approve --all --flow F` do
//! (`approvals_cli::decide_checked`: the consent check and the profile sync brought up to date for every
//! item, then one transaction that settles every item and enqueues its actions). Prints each round and the
//! median, minimum and maximum.

use nudge::approvals_cli::{ApprovalChecks, decide_checked};
use nudge_model::{Action, AttrValue, MarketingConsent, TraceId};
use nudge_store::{ApprovalDecision, ApprovalTarget, NewApproval, ProcessOutcome, Store, StoredState};
use std::sync::Arc;
use std::time::Instant;

#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let mut items = 10_000usize;
    let mut rounds = 5usize;
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(flag) = args.next() {
        let value: usize =
            args.next().and_then(|v| v.parse().ok()).unwrap_or_else(|| panic!("{flag} takes a number"));
        match flag.as_str() {
            "--items" => items = value,
            "--rounds" => rounds = value,
            _ => panic!("usage: approvals [--items N] [--rounds N], not {flag}"),
        }
    }
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().unwrap();
    let mut times = Vec::new();
    for round in 0..rounds {
        let secs = rt.block_on(one_round(items));
        println!("round {round}: {items} items approved in {:.1} ms", secs * 1e3);
        times.push(secs);
    }
    times.sort_by(f64::total_cmp);
    println!(
        "bulk approve of {items} items: median {:.1} ms (min {:.1}, max {:.1}) over {rounds} rounds",
        times[times.len() / 2] * 1e3,
        times[0] * 1e3,
        times[times.len() - 1] * 1e3
    );
}

async fn one_round(items: usize) -> f64 {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(
        nudge_store::sqlite::SqliteStore::open(dir.path(), nudge_store::sqlite::Durability::Full).unwrap(),
    );
    let now = (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64;
    let mut states = Vec::with_capacity(items);
    let mut outcomes = Vec::with_capacity(items);
    for i in 0..items {
        let customer: nudge_model::CustomerId = format!("shopify:{}", 1_000_000 + i).parse().unwrap();
        let mut st = nudge_state::CustomerState::new(customer.clone());
        st.consent = MarketingConsent::Subscribed;
        st.email = Some(format!("c{i}@example.org"));
        states.push(StoredState { customer: customer.clone(), email: st.email.clone(), state: st.encode() });
        let event = Action::TriggerEvent {
            customer: customer.clone(),
            email: st.email.clone(),
            name: "AI Winback".into(),
            properties: Default::default(),
            value: None,
            time: time::OffsetDateTime::now_utc(),
            unique_id: format!("nudge:winback:{i}"),
        };
        let sync = Action::UpsertProfile {
            customer: customer.clone(),
            email: st.email.clone(),
            first_name: None,
            last_name: None,
            attributes: [("ai_churn_risk".to_string(), AttrValue::Number(70.0))].into_iter().collect(),
        };
        let t = TraceId::new();
        let actions = serde_json::json!([
            { "destination": "klaviyo", "action": event },
            { "destination": "klaviyo", "action": sync },
        ]);
        outcomes.push(ProcessOutcome {
            trace_id: Some(t),
            approvals: vec![NewApproval {
                trace_id: t,
                flow: "winback".into(),
                flow_version: "bench".into(),
                customer,
                actions_json: actions.to_string(),
                created_at_ms: now,
                expires_at_ms: now + 3_600_000,
            }],
            ..Default::default()
        });
    }
    store.put_states(states).await.unwrap();
    for chunk in outcomes.chunks(1000) {
        store.commit_processing(chunk.to_vec()).await.unwrap();
    }
    let scoring =
        nudge::pipeline::Scoring::new(nudge_scoring::RulesScorer { thresholds: Default::default() });
    let policy = nudge_policy::PolicyConfig::default();
    let checks = ApprovalChecks { scoring: &scoring, policy: &policy };
    let start = Instant::now();
    let checked = decide_checked(
        &*store,
        &checks,
        ApprovalTarget::AllPending { flow: Some("winback".into()) },
        ApprovalDecision::Approve,
        "bench",
        None,
        (time::OffsetDateTime::now_utc().unix_timestamp_nanos() / 1_000_000) as i64,
    )
    .await
    .unwrap();
    let secs = start.elapsed().as_secs_f64();
    assert_eq!(checked.results.len(), items);
    assert_eq!(store.backlog().await.unwrap().1, 2 * items as u64, "every item's two actions enqueued");
    secs
}
