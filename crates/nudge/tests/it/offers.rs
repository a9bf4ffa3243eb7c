//! The offer bandit through the processing worker: a `choose_offer` flow logs the offer it sends, a later
//! order settles it once, and the learner folds each settlement exactly once (after a restart too).

use nudge::offers::OfferLearning;
use nudge::pipeline::{Pipeline, Scoring};
use nudge_model::{CustomerId, Event, Money, Order, TraceId};
use nudge_state::CustomerState;
use nudge_store::sqlite::{Durability, SqliteStore};
use nudge_store::{NewDelivery, Store};
use std::sync::Arc;
use std::time::Duration;
use time::OffsetDateTime;

fn customer() -> CustomerId {
    "shopify:5150".parse().unwrap()
}

fn order(id: &str, at: OffsetDateTime, total: &str) -> Event {
    Event::OrderUpserted(Order {
        id: id.into(),
        name: None,
        customer: Some(customer()),
        email: Some("kim@example.org".into()),
        created_at: at,
        updated_at: at,
        cancelled_at: None,
        total: Money::parse(total, "USD").unwrap(),
        financial_status: None,
        line_items: vec![],
        checkout_token: None,
        cart_token: None,
        accepts_marketing: Some(true),
    })
}

fn delivery(key: &str, ev: &Event) -> NewDelivery {
    NewDelivery {
        trace_id: TraceId::new(),
        source: "timer".into(),
        topic: ev.kind().into(),
        shop: None,
        webhook_id: None,
        event_id: None,
        received_at_ms: 1_000,
        headers_json: "{}".into(),
        body: serde_json::to_vec(ev).unwrap(),
        dedupe_keys: vec![format!("test:{key}")],
        part: None,
    }
}

fn pipeline(store: Arc<dyn Store>) -> Pipeline {
    let specs: Vec<nudge_policy::flows::FlowSpec> = serde_json::from_str(
        r#"[{"name":"offers","trigger":"order_placed","actions":[
            {"type":"choose_offer","arms":["none","content_only","pct_10"],"explore_holdout_percent":0,"window":"7d"},
            {"type":"track_event","destination":"klaviyo","metric":"AI Offer"},
            {"type":"sync_profile","destination":"klaviyo"}]}]"#,
    )
    .unwrap();
    let flows = nudge_policy::flows::FlowSet::compile(&specs, &["klaviyo"]).expect("the flow compiles");
    Pipeline {
        store,
        scoring: Arc::new(Scoring::new(nudge_scoring::RulesScorer::default())),
        policy: nudge_policy::PolicyConfig::default(),
        flows: Arc::new(nudge::pipeline::Flows::new(flows)),
        abandon_after: Duration::from_secs(3600),
        batch_size: 10,
        approval_counts: Default::default(),
        sources: Arc::new(nudge_ingest::source::Registry::new()),
        browse_retention: Duration::from_secs(30 * 86_400),
        offers: Default::default(),
        share: None,
        processed_latency: None,
    }
}

async fn drain(p: &Pipeline) {
    while p.step().await.expect("a batch processes").0 > 0 {}
}

async fn state(store: &Arc<dyn Store>) -> CustomerState {
    let s = store.load_states(&[customer()]).await.unwrap();
    CustomerState::decode(&s[0].state).unwrap()
}

#[tokio::test]
async fn an_order_settles_the_offer_once_and_the_learner_counts_it_once() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path(), Durability::Full).unwrap());
    let p = pipeline(store.clone());
    let now = OffsetDateTime::now_utc();
    store
        .commit_delivery(delivery("o1", &order("1", now - time::Duration::hours(1), "20.00")))
        .await
        .unwrap();
    drain(&p).await;
    let logged = store.offers_of_flow("offers").await.unwrap();
    assert_eq!(logged.len(), 1, "the first order's decision made an offer");
    let first = &logged[0];
    assert!(["none", "content_only", "pct_10"].contains(&first.arm.as_str()));
    assert_eq!(first.context.len(), nudge_decide::bandit::CONTEXT_DIM);
    assert!(first.outcome_value.is_none());
    let s = state(&store).await;
    assert_eq!(s.offers.len(), 1);
    assert_eq!(s.offers[0].arm, first.arm);
    // The decision's audit names the arm, its seed and each arm's estimate.
    let trail = store.customer_audit(&customer(), 100).await.unwrap();
    let decided = trail
        .iter()
        .find_map(|r| r.detail.get("flows").and_then(|f| f.get(0)).filter(|f| f.get("offer").is_some()))
        .expect("the decision is audited");
    assert_eq!(decided["offer"]["arm"], serde_json::json!(first.arm));
    assert!(decided["offer"]["choice"]["seed"].is_u64());
    assert_eq!(decided["offer"]["choice"]["estimates"].as_array().map(Vec::len), Some(3));

    // A second order a minute later settles the open offer with its value (and makes a new offer).
    let second = order("2", OffsetDateTime::now_utc() + time::Duration::minutes(1), "80.00");
    store.commit_delivery(delivery("o2", &second)).await.unwrap();
    drain(&p).await;
    let settled = store.settled_offers_after(0, 10).await.unwrap();
    assert_eq!(settled.len(), 1, "{settled:?}");
    assert_eq!((settled[0].id.as_str(), settled[0].outcome_value), (first.id.as_str(), Some(80.0)));
    assert!(state(&store).await.offers[0].settled);
    // The same order delivered again settles nothing more.
    store.commit_delivery(delivery("o2-again", &second)).await.unwrap();
    drain(&p).await;
    assert_eq!(store.settled_offers_after(0, 10).await.unwrap().len(), 1);

    // The learner has folded it once; so has a fresh one after a "restart", however often it syncs.
    let flows = p.flows.current();
    let learned = p.offers.sync(&*store, &flows).await.unwrap();
    assert_eq!(learned["offers"].counts().iter().sum::<u64>(), 1);
    let restarted = OfferLearning::default();
    restarted.sync(&*store, &flows).await.unwrap();
    let again = restarted.sync(&*store, &flows).await.unwrap();
    assert_eq!(again["offers"].counts(), learned["offers"].counts());
}

/// `nudge models fit --family bandit` rebuilds what the pipeline learned from the same log, saves it as a
/// record (never active) and prints it; `models report` shows it again; activating it is refused.
#[tokio::test]
async fn the_bandit_fit_reports_what_the_offer_log_taught() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn Store> = Arc::new(SqliteStore::open(dir.path(), Durability::Full).unwrap());
    let p = pipeline(store.clone());
    let now = OffsetDateTime::now_utc();
    store
        .commit_delivery(delivery("o1", &order("1", now - time::Duration::hours(1), "20.00")))
        .await
        .unwrap();
    drain(&p).await;
    let later = order("2", OffsetDateTime::now_utc() + time::Duration::minutes(1), "80.00");
    store.commit_delivery(delivery("o2", &later)).await.unwrap();
    drain(&p).await;
    drop(p);
    drop(store);
    let config = dir.path().join("nudge.toml");
    std::fs::write(
        &config,
        r#"[destinations.klaviyo]
api_key = "pk_test"

[[flows]]
name = "offers"
trigger = "order_placed"
actions = [
  { type = "choose_offer", arms = ["none", "content_only", "pct_10"], explore_holdout_percent = 0 },
  { type = "track_event", destination = "klaviyo", metric = "AI Offer" },
]
"#,
    )
    .unwrap();
    let run = |args: &[&str]| {
        std::process::Command::new(env!("CARGO_BIN_EXE_nudge"))
            .arg("--config")
            .arg(&config)
            .arg("--data-dir")
            .arg(dir.path())
            .args(args)
            .env("RUST_LOG", "warn")
            .output()
            .unwrap()
    };
    let o = run(&["models", "fit", "--family", "bandit", "--json"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let body: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let flow = &body["flows"][0];
    assert_eq!(
        (flow["flow"].as_str(), flow["offers"].as_u64(), flow["settled"].as_u64()),
        (Some("offers"), Some(2), Some(1))
    );
    assert_eq!(flow["learned_from"], 1);
    let arms = flow["report"]["arms"].as_array().unwrap();
    assert_eq!(arms.iter().map(|a| a["n"].as_u64().unwrap()).sum::<u64>(), 1);
    let version = body["version"].as_str().expect("saved").to_string();
    let text = run(&["models", "report", &version]);
    assert!(String::from_utf8_lossy(&text.stdout).contains("flow offers: 2 offers (1 settled, 1 open)"));
    let refused = run(&["models", "activate", &version]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("nothing to activate"));
    let refused = run(&["models", "fit", "--family", "bandit", "--activate"]);
    assert!(!refused.status.success());
}
