//! BigCommerce end to end: signed callbacks → 200 → a durable fetch job → the fake BigCommerce API →
//! events → state → the Klaviyo fake; a converted cart that is gone; a rate limit waited out; a restart
//! in the middle of a fetch.

use crate::{KEY, eventually};
use nudge::app::App;
use nudge::config::{BigCommerceSourceConfig, Config, HumanDuration};
use nudge_ingest::bigcommerce::fixtures::{CallbackFixture, ItemFixture, OrderFixture, ProductFixture};
use nudge_model::{TerminalState, TraceId};
use nudge_testkit::fake_klaviyo::{FakeKlaviyo, FakeKlaviyoConfig, FakeKlaviyoHandle};
use nudge_testkit::{
    BigCommerceMode, BigCommerceSender, Callback, FakeBigCommerce, FakeBigCommerceConfig,
    FakeBigCommerceHandle,
};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

const CLIENT_SECRET: &str = "bc_client_secret_abc";
const TOKEN: &str = "fake-bigcommerce-token";

struct Bc {
    app: App,
    klaviyo: FakeKlaviyoHandle,
    sender: BigCommerceSender,
}

async fn start(dir: &Path, bc: &FakeBigCommerceHandle, klaviyo: Option<FakeKlaviyoHandle>) -> Bc {
    nudge_testkit::ensure_crypto_provider();
    let klaviyo = match klaviyo {
        Some(k) => k,
        None => FakeKlaviyo::start(FakeKlaviyoConfig::new(KEY)).await.expect("fake starts"),
    };
    let mut cfg = Config::from_toml("", &BTreeMap::new()).expect("defaults");
    cfg.storage.data_dir = dir.to_path_buf();
    cfg.storage.durability = nudge_store::sqlite::Durability::Normal;
    cfg.sources.bigcommerce = Some(BigCommerceSourceConfig {
        store_hash: "abc123".into(),
        access_token: TOKEN.into(),
        client_secret: Some(CLIENT_SECRET.into()),
        api_base: bc.base_url(),
        auth_headers: BTreeMap::new(),
        require_signature: None,
    });
    cfg.destinations.klaviyo = Some(
        nudge_deliver::klaviyo::KlaviyoConfig::new(KEY)
            .with_base_url(klaviyo.base_url())
            .with_timeout(Duration::from_secs(2)),
    );
    cfg.pipeline.checkout_abandon_after = HumanDuration(Duration::from_secs(3600));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let app = nudge::app::run(cfg, listener).await.expect("nudge starts");
    let url = format!("http://127.0.0.1:{}/webhooks/bigcommerce", app.addr.port());
    let sender = BigCommerceSender::new(url, Some(CLIENT_SECRET), vec![]).unwrap();
    Bc { app, klaviyo, sender }
}

async fn fake_store(quota: u32, window: Duration) -> FakeBigCommerceHandle {
    let bc =
        FakeBigCommerce::start(FakeBigCommerceConfig { quota, window, ..Default::default() }).await.unwrap();
    let t = time::OffsetDateTime::now_utc();
    let order =
        OrderFixture::new(250, 7, Some("ana@example.com"), t).item(ItemFixture::new(1, "Mug", 2, "12.5000"));
    bc.seed_order("250", order.order_json(), order.products_json());
    bc.seed_product("1", ProductFixture::new(1, "Mug", "12.50", t).fetched());
    bc
}

async fn send(b: &Bc, id: &str, cb: &CallbackFixture) -> TraceId {
    let r = b.sender.send(&Callback::new(id, cb.to_bytes())).await.unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    // BigCommerce is answered with an empty body; the trace is in a short header.
    assert!(r.body.is_empty(), "{}", String::from_utf8_lossy(&r.body));
    r.trace_id.as_deref().expect("x-nudge-trace-id").parse().unwrap()
}

async fn terminal(b: &Bc, trace: TraceId) -> Option<TerminalState> {
    nudge_store::terminal_of(&**b.app.store(), trace).await.unwrap()
}

async fn dump(b: &Bc, bc: &FakeBigCommerceHandle, trace: TraceId) -> String {
    let view = b.app.store().trace(trace).await.unwrap();
    format!("trace: {}\nbigcommerce: {:#?}", serde_json::to_string_pretty(&view).unwrap(), bc.requests())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_order_callback_is_fetched_and_reaches_klaviyo_once() {
    let dir = tempfile::tempdir().unwrap();
    let bc = fake_store(150, Duration::from_secs(30)).await;
    let b = start(dir.path(), &bc, None).await;
    let cb = CallbackFixture::new("store/order/created", 250)
        .created_at(time::OffsetDateTime::now_utc().unix_timestamp());
    let trace = send(&b, "msg_1", &cb).await;
    let ok = eventually(15, async || terminal(&b, trace).await == Some(TerminalState::Delivered)).await;
    assert!(ok, "{}", dump(&b, &bc, trace).await);
    let p = b.klaviyo.profile_by_email("ana@example.com").expect("profile upserted");
    assert_eq!(p.external_id.as_deref(), Some("bigcommerce:abc123:7"));
    // The same event again (BigCommerce's retry: same hash, new attempt id): acknowledged, no second fetch.
    let r = b.sender.send(&Callback::new("msg_1b", cb.to_bytes())).await.unwrap();
    assert_eq!(r.status, 200);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let reads = bc.requests().iter().filter(|r| r.target.ends_with("/v2/orders/250")).count();
    assert_eq!(reads, 1, "{:#?}", bc.requests());
    assert!(bc.requests().iter().all(|r| r.authenticated));
    // An unsigned callback is refused.
    let unsigned = BigCommerceSender::new(b.sender_url(), None, vec![]).unwrap();
    assert_eq!(unsigned.send(&Callback::new("m", cb.to_bytes())).await.unwrap().status, 401);
    b.app.shutdown().await;
}

impl Bc {
    fn sender_url(&self) -> String {
        format!("http://127.0.0.1:{}/webhooks/bigcommerce", self.app.addr.port())
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_converted_cart_that_is_gone_ends_ignored_and_audited() {
    let dir = tempfile::tempdir().unwrap();
    let bc = fake_store(150, Duration::from_secs(30)).await;
    let b = start(dir.path(), &bc, None).await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let cb = CallbackFixture::new("store/cart/converted", "5d0b2b8e-1f7c-4f4e-9c3e-2f0d7a1b9c11")
        .data_field("orderId", 250)
        .created_at(now);
    let trace = send(&b, "msg_cart", &cb).await;
    let ok =
        eventually(10, async || matches!(terminal(&b, trace).await, Some(TerminalState::Ignored(_)))).await;
    assert!(ok, "{}", dump(&b, &bc, trace).await);
    let Some(TerminalState::Ignored(reason)) = terminal(&b, trace).await else { unreachable!() };
    assert!(reason.contains("cart 5d0b2b8e-1f7c-4f4e-9c3e-2f0d7a1b9c11 is gone"), "{reason}");
    let view = b.app.store().trace(trace).await.unwrap().unwrap();
    let stages: Vec<&str> = view.records.iter().map(|r| r.stage.as_str()).collect();
    assert!(stages.contains(&"fetch_pending") && stages.contains(&"fetch_attempt"), "{stages:?}");
    b.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_rate_limit_is_waited_out_without_a_429() {
    let dir = tempfile::tempdir().unwrap();
    // One request per 1.5 s window: the order's two reads and the product's read need three windows.
    let bc = fake_store(1, Duration::from_millis(1500)).await;
    let b = start(dir.path(), &bc, None).await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let t1 = send(&b, "m1", &CallbackFixture::new("store/order/created", 250).created_at(now)).await;
    let t2 = send(&b, "m2", &CallbackFixture::new("store/product/updated", 1).created_at(now)).await;
    for t in [t1, t2] {
        let ok = eventually(20, async || terminal(&b, t).await.is_some()).await;
        assert!(ok, "{}", dump(&b, &bc, t).await);
    }
    assert_eq!(bc.throttled(), 0, "{:#?}", bc.requests());
    b.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_in_the_middle_of_a_fetch_resumes_it() {
    let dir = tempfile::tempdir().unwrap();
    let bc = fake_store(150, Duration::from_secs(30)).await;
    bc.set_mode(BigCommerceMode::ServerError { status: 503, count: 1_000 });
    let b = start(dir.path(), &bc, None).await;
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let trace =
        send(&b, "m-restart", &CallbackFixture::new("store/order/created", 250).created_at(now)).await;
    assert!(eventually(10, async || !bc.requests().is_empty()).await, "the fetch was tried");
    assert_eq!(terminal(&b, trace).await, None);
    let klaviyo = b.klaviyo;
    b.app.shutdown().await;
    bc.set_mode(BigCommerceMode::Normal);
    let b = start(dir.path(), &bc, Some(klaviyo)).await;
    let ok = eventually(15, async || terminal(&b, trace).await == Some(TerminalState::Delivered)).await;
    assert!(ok, "{}", dump(&b, &bc, trace).await);
    assert!(b.klaviyo.profile_by_email("ana@example.com").is_some());
    b.app.shutdown().await;
}
