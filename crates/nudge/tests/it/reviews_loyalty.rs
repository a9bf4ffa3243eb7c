//! Yotpo and Smile.io end to end through a running nudge: a URL-token notification → 200 → a durable
//! fetch job → the fake's API → the confirmed record as a canonical event, processed to a terminal state
//! with the fetch in the audit trail. Also: no token → 401, a Smile.io `ping` stores nothing, an unknown
//! Smile.io customer (404) ends audited with nothing folded.

use crate::eventually;
use nudge::app::App;
use nudge::config::{Config, SmileSourceConfig, YotpoSourceConfig};
use nudge_ingest::smile::fixtures::{CustomerFixture, ping};
use nudge_ingest::yotpo::fixtures::ReviewFixture;
use nudge_model::{TerminalState, TraceId};
use nudge_testkit::{
    FakeSmile, FakeSmileConfig, FakeSmileHandle, FakeYotpo, FakeYotpoConfig, FakeYotpoHandle, SmileSender,
    YotpoSender, YotpoWebhook,
};
use std::collections::BTreeMap;
use std::path::Path;

const YOTPO_TOKEN: &str = "yt_3e9c1b7f0a5d4e2c8b6a9f10";
const SMILE_TOKEN: &str = "sm_a61f0c2d9e8b7a6f5e4d3c2b";

async fn start(dir: &Path, yotpo: &FakeYotpoHandle, smile: &FakeSmileHandle) -> App {
    nudge_testkit::ensure_crypto_provider();
    let mut cfg = Config::from_toml("", &BTreeMap::new()).expect("defaults");
    cfg.storage.data_dir = dir.to_path_buf();
    cfg.storage.durability = nudge_store::sqlite::Durability::Normal;
    cfg.sources.yotpo = Some(YotpoSourceConfig {
        app_key: yotpo.config().app_key.clone(),
        secret: yotpo.config().secret.clone(),
        url_token: YOTPO_TOKEN.into(),
        api_base: yotpo.base_url(),
    });
    cfg.sources.smile = Some(SmileSourceConfig {
        url_token: SMILE_TOKEN.into(),
        api_key: smile.config().api_key.clone(),
        api_base: smile.base_url(),
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    nudge::app::run(cfg, listener).await.expect("nudge starts")
}

fn intake(app: &App, path: &str) -> String {
    format!("http://127.0.0.1:{}/webhooks/{path}", app.addr.port())
}

fn trace_of(body: &[u8]) -> TraceId {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    v["trace_id"].as_str().unwrap().parse().unwrap()
}

async fn terminal(app: &App, trace: TraceId) -> Option<TerminalState> {
    nudge_store::terminal_of(&**app.store(), trace).await.unwrap()
}

async fn audit_of(app: &App, trace: TraceId) -> (Vec<String>, String) {
    let view = app.store().trace(trace).await.unwrap().unwrap();
    let stages = view.records.iter().map(|r| r.stage.as_str().to_string()).collect();
    (stages, serde_json::to_string(&view).unwrap())
}

async fn fakes() -> (FakeYotpoHandle, FakeSmileHandle) {
    nudge_testkit::ensure_crypto_provider();
    (
        FakeYotpo::start(FakeYotpoConfig::default()).await.unwrap(),
        FakeSmile::start(FakeSmileConfig::default()).await.unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_yotpo_notification_is_confirmed_by_the_pull_api_and_becomes_review_posted() {
    let dir = tempfile::tempdir().unwrap();
    let (yotpo, smile) = fakes().await;
    let app = start(dir.path(), &yotpo, &smile).await;
    let app_key = yotpo.config().app_key.clone();
    let t = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    // The webhook says 5 stars; the API (which wins) says 2.
    let notified = ReviewFixture::new(&app_key, 219, Some("lena@example.org"), t);
    yotpo.seed_review(notified.clone().score(2).pulled());
    let body = serde_json::to_vec(&notified.webhook_strings("review_create")).unwrap();

    // No token, a wrong token: 401, nothing read from Yotpo.
    let none = YotpoSender::new(intake(&app, "yotpo"), None).unwrap();
    let w = YotpoWebhook { message_id: "wm-1".into(), body: body.clone() };
    assert_eq!(none.send(&w).await.unwrap().status, 401);
    let wrong = YotpoSender::new(intake(&app, "yotpo"), Some("yt_000000000000000000000000")).unwrap();
    assert_eq!(wrong.send(&w).await.unwrap().status, 401);
    // The pseudo-header the edge uses is never taken from the caller: only the URL's token counts.
    let smuggled = reqwest::Client::new()
        .post(intake(&app, "yotpo"))
        .header(nudge_ingest::url_token::HEADER, YOTPO_TOKEN)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(smuggled.status().as_u16(), 401);
    assert!(yotpo.requests().is_empty());

    let sender = YotpoSender::new(intake(&app, "yotpo"), Some(YOTPO_TOKEN)).unwrap();
    let r = sender.send(&w).await.unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    assert!(r.elapsed < std::time::Duration::from_secs(1), "acknowledged in {:?}", r.elapsed);
    println!("yotpo: acknowledged in {:?}", r.elapsed);
    let trace = trace_of(&r.body);
    let done = eventually(15, async || terminal(&app, trace).await.is_some()).await;
    let (stages, view) = audit_of(&app, trace).await;
    assert!(done, "{view}\n{:#?}", yotpo.requests());
    assert!(
        stages.iter().any(|s| s == "fetch_pending") && stages.iter().any(|s| s == "fetch_attempt"),
        "{stages:?}"
    );
    assert!(view.contains("review_posted"), "the normalised event is a review: {view}");
    assert!(
        !view.contains(YOTPO_TOKEN) && !view.contains(&yotpo.config().secret),
        "no secret in the audit trail"
    );
    let state = terminal(&app, trace).await.unwrap();
    assert!(
        !matches!(
            state,
            TerminalState::Quarantined(_) | TerminalState::DeadLettered(_) | TerminalState::Rejected(_)
        ),
        "{state:?}"
    );
    println!("yotpo: terminal state {state:?}");
    let reads: Vec<_> = yotpo.requests().into_iter().filter(|r| r.target.contains("/reviews")).collect();
    assert_eq!(reads.len(), 1, "{reads:?}");
    assert!(reads[0].target.contains("count=100") && reads[0].target.contains("deleted=true"));

    // A retry (same WebhookMessageId): acknowledged, no second read.
    assert_eq!(sender.send(&w).await.unwrap().status, 200);
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(yotpo.requests().iter().filter(|r| r.target.contains("/reviews")).count(), 1);
    app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_smile_update_is_confirmed_by_the_api_ping_stores_nothing_and_unknown_is_audited() {
    let dir = tempfile::tempdir().unwrap();
    let (yotpo, smile) = fakes().await;
    let app = start(dir.path(), &yotpo, &smile).await;
    let t = time::OffsetDateTime::now_utc().replace_nanosecond(0).unwrap();
    let c = CustomerFixture::new(9001, Some("lena@example.org"), 120, t).tier(3);
    smile.seed_customer(c.clone().points(300).object());
    let sender = SmileSender::new(intake(&app, "smile"), Some(SMILE_TOKEN)).unwrap();

    // ping: 200, nothing stored, nothing read.
    let before = app.store().stats().await.unwrap().deliveries;
    let r = sender.send(&serde_json::to_vec(&ping(42_001)).unwrap()).await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(app.store().stats().await.unwrap().deliveries, before);
    // No token: 401.
    let none = SmileSender::new(intake(&app, "smile"), None).unwrap();
    assert_eq!(none.send(&serde_json::to_vec(&c.webhook(42_001)).unwrap()).await.unwrap().status, 401);

    let r = sender.send(&serde_json::to_vec(&c.webhook(42_001)).unwrap()).await.unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let trace = trace_of(&r.body);
    let done = eventually(15, async || terminal(&app, trace).await.is_some()).await;
    let (stages, view) = audit_of(&app, trace).await;
    assert!(done, "{view}\n{:#?}", smile.requests());
    assert!(stages.iter().any(|s| s == "fetch_attempt"), "{stages:?}");
    assert!(view.contains("loyalty_changed"), "{view}");
    let state = terminal(&app, trace).await.unwrap();
    assert!(!matches!(state, TerminalState::Quarantined(_) | TerminalState::DeadLettered(_)), "{state:?}");
    println!("smile: terminal state {state:?}");
    assert_eq!(smile.requests().iter().filter(|r| r.path == "/v1/customers/9001").count(), 1);

    // An unknown customer: the API answers 404, the delivery ends ignored and audited.
    let ghost = CustomerFixture::new(777, Some("ghost@example.org"), 1, t);
    let r = sender.send(&serde_json::to_vec(&ghost.webhook(42_001)).unwrap()).await.unwrap();
    let trace = trace_of(&r.body);
    let ended =
        eventually(15, async || matches!(terminal(&app, trace).await, Some(TerminalState::Ignored(_)))).await;
    let (_, view) = audit_of(&app, trace).await;
    assert!(ended, "{view}");
    assert!(view.contains("404"), "{view}");
    assert!(!view.contains("loyalty_changed"), "nothing folded: {view}");
    app.shutdown().await;
}
