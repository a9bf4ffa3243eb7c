//! Batch pushes end to end: `nudge push` walks the store's customers, scores them, and pushes their
//! profiles to the Braze fake in bulk; refusals are counted alone, failures go to the outbox, and a
//! stopped run resumes after its cursor.

use nudge::config::Config;
use nudge::outbox::DeliverySettings;
use nudge::pipeline::Scoring;
use nudge::push::{PushError, PushOptions, Selector};
use nudge::push_cli::PushCmd;
use nudge_deliver::Destination;
use nudge_model::{Customer, CustomerId, Event, MarketingConsent, Money, Order, Segment};
use nudge_state::CustomerState;
use nudge_store::{ProcessOutcome, PushRun, Store, StoredState};
use nudge_testkit::{BrazeMode, FakeBraze, FakeBrazeConfig, FakeBrazeHandle};
use std::collections::BTreeMap;
use std::sync::Arc;
use time::macros::datetime;

const KEY: &str = "braze-push-test-key";

fn customer(n: u32) -> CustomerId {
    format!("shopify:{n}").parse().unwrap()
}

/// A customer with an email and `orders` orders (more orders, a different segment).
fn state(n: u32, orders: u32) -> StoredState {
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
        email_consent: MarketingConsent::Subscribed,
        tags: vec![],
        sms_consent: MarketingConsent::Unknown,
    }));
    for o in 0..orders {
        s.apply(&Event::OrderUpserted(Order {
            id: format!("{n}-{o}"),
            name: None,
            customer: Some(id.clone()),
            email: None,
            created_at: at + time::Duration::days(i64::from(o) * 20),
            updated_at: at + time::Duration::days(i64::from(o) * 20),
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

struct Setup {
    store: Arc<dyn Store>,
    fake: FakeBrazeHandle,
    cfg: Config,
    _dir: tempfile::TempDir,
}

/// `n` customers (ids 1000..) in a fresh store, and Braze configured against its fake.
async fn setup(n: u32) -> Setup {
    nudge_testkit::ensure_crypto_provider();
    let fake = FakeBraze::start(FakeBrazeConfig::new(KEY)).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = Config::from_toml("", &BTreeMap::new()).unwrap();
    cfg.storage.data_dir = dir.path().to_path_buf();
    cfg.storage.durability = nudge_store::sqlite::Durability::Normal;
    cfg.destinations.braze = Some(nudge_deliver::BrazeConfig::new(KEY, fake.base_url()).allowing_private());
    let store = nudge::app::open_store(&cfg).await.unwrap();
    let states = (0..n).map(|i| state(1000 + i, i % 4)).collect();
    store.commit_processing(vec![ProcessOutcome { states, ..Default::default() }]).await.unwrap();
    Setup { store, fake, cfg, _dir: dir }
}

impl Setup {
    fn braze(&self) -> Arc<dyn Destination> {
        nudge::app::destinations(&self.cfg).unwrap().remove("braze").unwrap()
    }

    async fn push(&self, selector: Selector, page: usize) -> Result<nudge::push::PushSummary, PushError> {
        let scoring = Scoring::new(nudge_scoring::RulesScorer { thresholds: self.cfg.segments.clone() });
        let opts = PushOptions {
            destination: "braze".into(),
            selector,
            dry_run: false,
            restart: false,
            page: Some(page),
        };
        nudge::push::run(
            &self.store,
            &scoring,
            &self.cfg.policy(),
            self.braze(),
            &DeliverySettings::default(),
            &opts,
            &|_| {},
        )
        .await
    }
}

#[tokio::test]
async fn pushes_every_customer_in_bulk_and_settles_refusals_alone() {
    let s = setup(230).await;
    s.fake.reject_external_id("shopify:1007");
    let summary = s.push(Selector::All, 100).await.unwrap();
    assert_eq!((summary.scanned, summary.selected), (230, 230));
    assert_eq!((summary.pushed, summary.rejected, summary.deferred), (229, 1, 0), "{summary:?}");
    assert_eq!(summary.errors.len(), 1);
    assert_eq!(summary.errors[0].0, "shopify:1007");
    assert_eq!(s.fake.users().len(), 229);
    // Bulk: 75 objects per request at most, so 230 profiles took 4 requests (pages of 100: 75+25 each,
    // and 30 at the end).
    let sizes: Vec<usize> = s.fake.requests().iter().map(|r| r.objects).collect();
    assert!(sizes.iter().all(|n| *n <= 75), "{sizes:?}");
    assert_eq!(sizes.iter().sum::<usize>(), 230);
    let user = s.fake.users().into_iter().find(|u| u.id == "shopify:1001").unwrap();
    assert!(user.attribute("ai_churn_risk").is_some() && user.attribute("ai_segment").is_some());
    let run = s.store.push_run("braze").await.unwrap().unwrap();
    assert!(run.done && run.cursor.is_none());
    assert_eq!((run.pushed, run.rejected), (229, 1));
}

#[tokio::test]
async fn a_segment_selects_only_its_customers() {
    let s = setup(120).await;
    let all = s.push(Selector::Segment(Segment::Prospect), 50).await.unwrap();
    assert_eq!(all.scanned, 120);
    assert!(all.selected > 0 && all.selected < 120, "{all:?}");
    assert_eq!(all.pushed, all.selected);
    for u in s.fake.users() {
        assert_eq!(u.attribute("ai_segment").unwrap(), "prospect", "{}", u.id);
    }
    assert_eq!(s.store.push_run("braze").await.unwrap().unwrap().selector, "segment:prospect");
}

#[tokio::test]
async fn a_stopped_run_resumes_after_its_cursor() {
    let s = setup(100).await;
    // A run that had settled the customers up to shopify:1039 when it stopped.
    s.store
        .save_push_run(PushRun {
            destination: "braze".into(),
            selector: "all".into(),
            started_at_ms: 1,
            updated_at_ms: 2,
            cursor: Some(customer(1039)),
            pushed: 40,
            rejected: 0,
            deferred: 0,
            done: false,
        })
        .await
        .unwrap();
    let summary = s.push(Selector::All, 30).await.unwrap();
    assert_eq!(summary.resumed_after.as_deref(), Some("shopify:1039"));
    assert_eq!(summary.scanned, 60, "only the customers after the cursor");
    assert_eq!(summary.pushed, 100, "the run's total includes what was pushed before");
    let pushed: Vec<String> = s.fake.users().into_iter().map(|u| u.id).collect();
    assert_eq!(pushed.len(), 60);
    assert!(pushed.iter().all(|id| id.as_str() > "shopify:1039"), "{pushed:?}");
    // A finished run is not resumed: the next one starts from the beginning.
    let again = s.push(Selector::All, 30).await.unwrap();
    assert_eq!((again.resumed_after, again.scanned), (None, 100));
}

#[tokio::test]
async fn profiles_still_failing_are_handed_to_the_outbox() {
    let s = setup(20).await;
    s.fake.set_mode(BrazeMode::Fail { status: 503, count: 1_000 });
    let summary = s.push(Selector::All, 50).await.unwrap();
    assert_eq!((summary.pushed, summary.rejected, summary.deferred), (0, 0, 20));
    assert_eq!(s.store.pending_for("braze").await.unwrap(), 20, "nothing is lost");
    assert_eq!(s.fake.requests().len(), 3, "one request per in-run attempt");
}

fn cmd(destination: &str, segment: Option<&str>, all: bool) -> PushCmd {
    PushCmd {
        destination: destination.into(),
        segment: segment.map(String::from),
        all,
        dry_run: false,
        restart: false,
        json: false,
    }
}

#[tokio::test]
async fn bad_requests_are_usage_errors() {
    let s = setup(1).await;
    let usage = |c: PushCmd| match nudge::push_cli::options(&s.cfg, &c) {
        Err(PushError::Usage(m)) => m,
        other => panic!("expected a usage error, got {other:?}"),
    };
    assert!(usage(cmd("hubspot", None, true)).contains("not configured (configured: braze)"));
    assert!(usage(cmd("braze", None, false)).contains("--all, or --segment"));
    assert!(usage(cmd("braze", Some("vips"), false)).contains("unknown segment `vips`"));
    assert!(nudge::push_cli::options(&s.cfg, &cmd("braze", Some("loyal"), false)).is_ok());

    let dir = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_nudge"))
        .arg("--data-dir")
        .arg(dir.path())
        .args(["push", "--destination", "braze", "--all"])
        .env_remove("NUDGE_CONFIG")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(String::from_utf8_lossy(&out.stderr).contains("destination `braze` is not configured"));
}

#[tokio::test]
async fn the_scheduled_push_finishes_an_interrupted_run_at_start() {
    let s = setup(50).await;
    s.store
        .save_push_run(PushRun {
            destination: "braze".into(),
            selector: "all".into(),
            started_at_ms: 1,
            updated_at_ms: 2,
            cursor: Some(customer(1019)),
            pushed: 20,
            rejected: 0,
            deferred: 0,
            done: false,
        })
        .await
        .unwrap();
    let (stop, rx) = tokio::sync::watch::channel(false);
    let scheduled = nudge::push::ScheduledPush {
        store: s.store.clone(),
        scoring: Arc::new(Scoring::new(nudge_scoring::RulesScorer { thresholds: s.cfg.segments.clone() })),
        policy: s.cfg.policy(),
        schedule: nudge_policy::schedule::Schedule::parse("0 0 1 1 *").unwrap(),
        destinations: vec![("braze".into(), s.braze(), DeliverySettings::default())],
    };
    let task = tokio::spawn(scheduled.run(rx));
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(20);
    while !s.store.push_run("braze").await.unwrap().unwrap().done {
        assert!(tokio::time::Instant::now() < deadline, "the interrupted run was not finished");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    stop.send(true).unwrap();
    task.await.unwrap();
    assert_eq!(s.fake.users().len(), 30, "the 30 customers after the cursor");
    assert_eq!(s.store.push_run("braze").await.unwrap().unwrap().pushed, 50);
}

#[test]
fn the_push_schedule_is_checked_with_key_paths() {
    let base = "[destinations.braze]\napi_key = \"k\"\nrest_endpoint = \"https://rest.iad-01.braze.com\"\n\
                [destinations.slack]\nwebhook_url = \"https://hooks.slack.com/services/T/B/X\"\n[pipeline]\n";
    let load = |extra: &str| Config::from_toml(&format!("{base}{extra}\n"), &BTreeMap::new());
    let c = load("batch_push_schedule = \"0 3 * * *\"").unwrap();
    assert_eq!(c.batch_push_destinations(), vec!["braze"], "every destination that takes profiles");
    let e = load("batch_push_schedule = \"0 25 * * *\"").unwrap_err();
    assert_eq!(e.path, "pipeline.batch_push_schedule", "{e}");
    assert!(e.reason.contains("hour"), "{e}");
    let e = load("batch_push_destinations = [\"braze\", \"hubspot\"]").unwrap_err();
    assert_eq!(e.path, "pipeline.batch_push_destinations[1]", "{e}");
    let e = load("batch_push_destinations = [\"slack\"]").unwrap_err();
    assert!(e.reason.contains("alerts only"), "{e}");
}
