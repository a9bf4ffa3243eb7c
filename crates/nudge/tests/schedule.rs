//! Schedule flows end to end: a `trigger = "schedule"` flow fires for every customer of the store, in
//! chunks through the ingest log, and each matching customer gets exactly one action at the fake Klaviyo,
//! across a restart in the middle of a firing. The scheduler's clock is the `now` given to
//! [`Scheduler::pass`], so nothing here waits for a minute to turn.

use nudge::config::Config;
use nudge::pipeline::{Flows, Pipeline, Scoring};
use nudge::scheduler::{Pass, ScheduleChunk, Scheduler};
use nudge_model::{
    AuditStage, Customer, CustomerId, Event, MarketingConsent, Money, Order, TerminalState, Timestamp,
    TraceId,
};
use nudge_state::CustomerState;
use nudge_store::{NewDelivery, ScheduleRun, Store, StoredState};
use nudge_testkit::fake_klaviyo::{FakeKlaviyo, FakeKlaviyoConfig};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use time::macros::datetime;

const KEY: &str = "pk_test_schedule";

/// A yearly flow for customers with an order; it sends a Klaviyo event.
const NEW_YEAR: &str = r#"
[destinations.klaviyo]
api_key = "pk_test_schedule"

[[flows]]
name = "new_year"
trigger = "schedule"
schedule = "0 0 1 1 *"
when = "event.kind == \"schedule\" && customer.orders_count >= 1"
actions = [{ type = "track_event", destination = "klaviyo", metric = "AI New Year" }]
"#;

/// A flow firing every minute that matches no one.
const EVERY_MINUTE: &str = r#"
[[flows]]
name = "every_minute"
trigger = "schedule"
schedule = "* * * * *"
when = "false"
"#;

fn config(dir: &Path, klaviyo: &str, flows: &str) -> Config {
    let mut cfg = Config::from_toml(flows, &BTreeMap::new()).expect("the configuration is valid");
    cfg.storage.data_dir = dir.to_path_buf();
    cfg.storage.durability = nudge_store::sqlite::Durability::Normal;
    cfg.destinations.klaviyo = Some(
        nudge_deliver::klaviyo::KlaviyoConfig::new(KEY)
            .with_base_url(klaviyo)
            .with_timeout(Duration::from_secs(2)),
    );
    cfg
}

fn customer(n: u32) -> CustomerId {
    format!("shopify:{n}").parse().unwrap()
}

/// A customer with an email, consent as given, and `orders` orders.
fn state(n: u32, consent: MarketingConsent, orders: u32) -> StoredState {
    let id = customer(n);
    let at = datetime!(2025-11-01 10:00 UTC);
    let mut s = CustomerState::new(id.clone());
    s.apply(&Event::CustomerUpserted(Customer {
        id: id.clone(),
        email: Some(format!("c{n}@example.org")),
        first_name: None,
        last_name: None,
        created_at: Some(at),
        updated_at: at,
        email_consent: consent,
        tags: vec![],
        sms_consent: MarketingConsent::Unknown,
    }));
    for o in 0..orders {
        s.apply(&Event::OrderUpserted(Order {
            id: format!("{n}-{o}"),
            name: None,
            customer: Some(id.clone()),
            email: None,
            created_at: at + time::Duration::days(i64::from(o)),
            updated_at: at + time::Duration::days(i64::from(o)),
            cancelled_at: None,
            total: Money::parse("30.00", "EUR").unwrap(),
            financial_status: Some("paid".into()),
            line_items: vec![],
            checkout_token: None,
            cart_token: None,
            accepts_marketing: None,
        }));
    }
    StoredState { customer: id, email: s.email.clone(), state: s.encode() }
}

fn scheduler(store: &Arc<dyn Store>, cfg: &Config, chunk: usize) -> Scheduler {
    Scheduler { store: store.clone(), flows: Arc::new(Flows::new(cfg.flow_set().unwrap())), chunk }
}

fn ms(t: Timestamp) -> i64 {
    (t.unix_timestamp_nanos() / 1_000_000) as i64
}

async fn run_of(store: &dyn Store, flow: &str) -> Option<ScheduleRun> {
    store.schedule_runs().await.unwrap().into_iter().find(|r| r.flow == flow)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_schedule_flow_fires_once_for_every_customer_across_a_restart() {
    nudge_testkit::ensure_crypto_provider();
    let fake = FakeKlaviyo::start(FakeKlaviyoConfig::new(KEY).unthrottled()).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), &fake.base_url(), NEW_YEAR);
    // Seven customers: 1, 2, 4, 6 and 7 have orders and consent (they match); 3 has no order; 5 refused
    // email marketing.
    let customers = [
        state(1, MarketingConsent::Subscribed, 2),
        state(2, MarketingConsent::Subscribed, 1),
        state(3, MarketingConsent::Subscribed, 0),
        state(4, MarketingConsent::Subscribed, 3),
        state(5, MarketingConsent::Unsubscribed, 2),
        state(6, MarketingConsent::Subscribed, 1),
        state(7, MarketingConsent::Subscribed, 1),
    ];
    let matching: BTreeSet<String> = [1, 2, 4, 6, 7].iter().map(|n| customer(*n).to_string()).collect();
    // And 1,100 without orders, after them in key order: the server's firing takes three chunks of 500.
    let many: Vec<StoredState> =
        (90_000..91_100).map(|n| state(n, MarketingConsent::Subscribed, 0)).collect();

    // Before the server starts: the store holds the customers, the flow last fired on 2025-06-01, and a
    // firing of 2026-01-01 gets one chunk of three customers into the log, then stops as a crash would:
    // after the chunk's commit, before its progress was recorded.
    let now = time::OffsetDateTime::now_utc();
    let fired_at = datetime!(2026-01-01 0:00 UTC);
    assert!(now > fired_at, "the test's occurrence is in the past");
    {
        let store = nudge::app::open_store(&cfg).await.unwrap();
        store.put_states(customers.to_vec()).await.unwrap();
        store.put_states(many).await.unwrap();
        store
            .save_schedule_run(ScheduleRun {
                flow: "new_year".into(),
                schedule: "0 0 1 1 *".into(),
                fire_at_ms: ms(datetime!(2025-06-01 0:00 UTC)),
                cursor: None,
                pending_through: None,
                done: true,
            })
            .await
            .unwrap();
        let s = scheduler(&store, &cfg, 3);
        let pass = s.pass(now, 1).await.unwrap();
        assert_eq!(pass, Pass { committed: 1, duplicates: 0, customers: 3, unfinished: true });
        let run = run_of(&*store, "new_year").await.unwrap();
        assert_eq!((run.fire_at_ms, run.cursor.clone(), run.done), (ms(fired_at), Some(customer(3)), false));
        // The record as it stood while the chunk was being committed.
        store
            .save_schedule_run(ScheduleRun { cursor: None, pending_through: Some(customer(3)), ..run })
            .await
            .unwrap();
        let pending = store.pending_deliveries(10).await.unwrap();
        assert_eq!(pending.len(), 1);
        assert_eq!((pending[0].source.as_str(), pending[0].topic.as_str()), ("schedule", "new_year"));
        let chunk: ScheduleChunk = serde_json::from_slice(&pending[0].body).unwrap();
        assert_eq!(chunk.customers, [customer(1), customer(2), customer(3)]);
        assert_eq!(chunk.fired_at, fired_at);
    }

    // The server starts: its scheduler finishes the firing (the first chunk again is a duplicate), the
    // pipeline decides and the outbox sends.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = nudge::app::run(cfg.clone(), listener).await.expect("nudge starts");
    let store = app.store().clone();
    // Four chunks: customers 1–3 from before the restart, then the rest after customer 3 in chunks of 500.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let done = run_of(&*store, "new_year").await.is_some_and(|r| r.done);
        if done && app.wait_idle(Duration::from_secs(30)).await {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline, "the firings did not finish");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let stats = store.stats().await.unwrap();
    assert_eq!(stats.deliveries, 4, "{stats:?}");
    let settled: u64 = stats.terminal_by_state.iter().map(|(_, n)| n).sum();
    assert_eq!(settled, 4, "every delivery has exactly one terminal state: {stats:?}");
    assert_eq!(stats.outbox_delivered, 5, "{stats:?}");

    // Exactly one request per matching customer reached Klaviyo, none for the others.
    let mut sent: BTreeMap<String, usize> = BTreeMap::new();
    for r in fake.requests().iter().filter(|r| r.path.starts_with("/api/events")) {
        let body = r.json().unwrap();
        let attrs = &body["data"]["attributes"];
        assert_eq!(attrs["metric"]["data"]["attributes"]["name"], "AI New Year");
        assert_eq!(attrs["time"], "2026-01-01T00:00:00Z");
        let id = attrs["profile"]["data"]["attributes"]["external_id"].as_str().unwrap().to_string();
        *sent.entry(id).or_default() += 1;
    }
    assert_eq!(sent.keys().cloned().collect::<BTreeSet<_>>(), matching, "{sent:?}");
    assert!(sent.values().all(|&n| n == 1), "{sent:?}");

    // Each customer's decision is audited once, under a chunk's trace, and says why.
    for n in (1..=7).chain([90_000, 90_499, 91_099]) {
        let trail = store.customer_audit(&customer(n), 100).await.unwrap();
        let decided: Vec<_> = trail.iter().filter(|r| r.stage == AuditStage::Decided).collect();
        let new_year: Vec<_> =
            decided.iter().filter(|r| r.detail["flows"][0]["flow"] == "new_year").collect();
        assert_eq!(new_year.len(), 1, "customer {n}: {decided:?}");
        let status = new_year[0].detail["flows"][0]["status"].as_str().unwrap();
        let expected = match n {
            3 | 90_000.. => "not_matched",
            5 => "no_consent",
            _ => "live",
        };
        assert_eq!(status, expected, "customer {n}");
        assert!(
            decided.iter().all(|r| r.detail["flows"].as_array().unwrap().len() == 1),
            "one flow per tick"
        );
        let trace = store.trace(new_year[0].trace_id).await.unwrap().unwrap();
        assert!(trace.terminal.is_some(), "customer {n}'s chunk settled");
    }

    // A reload with a schedule that never fires is refused with the key path; the running set stays.
    let running = app.flows.current().version.clone();
    let mut bad = cfg.clone();
    let mut spec = cfg.flows.clone().unwrap();
    spec[0].schedule = Some("0 0 30 2 *".into());
    bad.flows = Some(spec);
    let e = app.reload_flows(&bad).unwrap_err().to_string();
    assert!(e.contains("flows[0].schedule") && e.contains("never fires"), "{e}");
    assert_eq!(app.flows.current().version, running);

    // Nothing fires again: the occurrence is done, the next one is a year away.
    let s = scheduler(&store, &cfg, 3);
    let again = s.pass(time::OffsetDateTime::now_utc(), 10).await.unwrap();
    assert_eq!((again.committed, again.duplicates), (0, 0));
    app.shutdown().await;
    fake.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_scheduler_fires_due_occurrences_once_and_forgets_removed_flows() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(dir.path(), "http://127.0.0.1:9", &format!("{NEW_YEAR}{EVERY_MINUTE}"));
    let store = nudge::app::open_store(&cfg).await.unwrap();
    store.put_states((1..=5).map(|n| state(n, MarketingConsent::Subscribed, 1)).collect()).await.unwrap();
    let flows = Arc::new(Flows::new(cfg.flow_set().unwrap()));
    let s = Scheduler { store: store.clone(), flows: flows.clone(), chunk: 2 };

    // First seen at 09:00:30: nothing owed before that.
    let t0 = datetime!(2026-05-04 09:00:30 UTC);
    assert_eq!(s.pass(t0, 100).await.unwrap(), Pass::default());
    assert_eq!(s.pass(datetime!(2026-05-04 09:00:59 UTC), 100).await.unwrap(), Pass::default());
    // 09:01: every_minute fires for the five customers, in chunks of two.
    let p = s.pass(datetime!(2026-05-04 09:01:00 UTC), 100).await.unwrap();
    assert_eq!(p, Pass { committed: 3, duplicates: 0, customers: 5, unfinished: false });
    // Down from 09:01 to 09:05:10: one firing, at 09:05.
    let p = s.pass(datetime!(2026-05-04 09:05:10 UTC), 100).await.unwrap();
    assert_eq!(p.customers, 5);
    let run = run_of(&*store, "every_minute").await.unwrap();
    assert_eq!((run.fire_at_ms, run.done), (ms(datetime!(2026-05-04 09:05 UTC)), true));
    let mut by_occurrence: BTreeMap<Timestamp, Vec<CustomerId>> = BTreeMap::new();
    for d in store.pending_deliveries(100).await.unwrap() {
        let chunk: ScheduleChunk = serde_json::from_slice(&d.body).unwrap();
        assert_eq!(chunk.flow, "every_minute");
        by_occurrence.entry(chunk.fired_at).or_default().extend(chunk.customers);
    }
    let all: Vec<CustomerId> = (1..=5).map(customer).collect();
    assert_eq!(
        by_occurrence,
        BTreeMap::from([
            (datetime!(2026-05-04 09:01 UTC), all.clone()),
            (datetime!(2026-05-04 09:05 UTC), all.clone())
        ])
    );

    // A reload that removes the flow: it stops firing and its record goes.
    flows.replace(config(dir.path(), "http://127.0.0.1:9", NEW_YEAR).flow_set().unwrap());
    assert_eq!(s.pass(datetime!(2026-05-04 09:30 UTC), 100).await.unwrap(), Pass::default());
    assert!(run_of(&*store, "every_minute").await.is_none());

    // The chunks already in the log are processed: the flow is gone, so they decide nothing and settle as
    // ignored; a customer no longer in the store is skipped with a reason.
    let pipeline = Pipeline {
        store: store.clone(),
        scoring: Arc::new(Scoring::new(nudge_scoring::RulesScorer { thresholds: cfg.segments.clone() })),
        policy: cfg.policy(),
        flows: flows.clone(),
        abandon_after: Duration::from_secs(3600),
        batch_size: 100,
        approval_counts: Default::default(),
        browse_retention: Duration::from_secs(30 * 86_400),
        offers: Default::default(),
        share: None,
        processed_latency: None,
        sources: Arc::new(nudge::app::sources(&cfg).expect("the default sources")),
    };
    let gone = TraceId::new();
    let body = ScheduleChunk {
        flow: "new_year".into(),
        fired_at: datetime!(2026-01-01 0:00 UTC),
        customers: vec![customer(404)],
    };
    store
        .commit_delivery(NewDelivery {
            trace_id: gone,
            source: "schedule".into(),
            topic: "new_year".into(),
            shop: None,
            webhook_id: None,
            event_id: None,
            received_at_ms: ms(datetime!(2026-05-04 09:30 UTC)),
            headers_json: "{}".into(),
            body: serde_json::to_vec(&body).unwrap(),
            dedupe_keys: vec!["schedule:new_year:test".into()],
            part: None,
        })
        .await
        .unwrap();
    let (n, enqueued) = pipeline.step().await.unwrap();
    assert_eq!((n, enqueued), (7, 0), "six chunks of two firings and one more");
    let left = store.pending_deliveries(100).await.unwrap();
    assert!(left.is_empty(), "left unprocessed: {left:?}");
    let removed: Vec<TraceId> = {
        let trail = store.customer_audit(&customer(1), 100).await.unwrap();
        trail.iter().filter(|r| r.stage == AuditStage::Received).map(|r| r.trace_id).collect()
    };
    assert_eq!(removed.len(), 2, "customer 1 heads both of its firings' first chunks");
    for t in removed {
        match store.trace(t).await.unwrap().unwrap().terminal {
            Some(TerminalState::Ignored(reason)) => {
                assert!(reason.contains("flow `every_minute` is no longer configured"), "{reason}")
            }
            other => panic!("{other:?}"),
        }
    }
    match store.trace(gone).await.unwrap().unwrap().terminal {
        Some(TerminalState::Ignored(reason)) => {
            assert!(reason.contains("shopify:404: no longer in the store"), "{reason}")
        }
        other => panic!("{other:?}"),
    }
    // The missing customer was not created by its tick.
    assert!(store.load_states(&[customer(404)]).await.unwrap().is_empty());
}
