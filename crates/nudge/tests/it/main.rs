//! Integration tests over real HTTP on ephemeral ports: nudge against the contract-enforcing Klaviyo fake,
//! fed by the Shopify sender of the test kit.

mod access;
mod adobe;
mod adopted_segments;
mod approvals;
mod architecture;
mod bigcommerce;
mod coalescing;
mod copy;
mod crash;
mod destinations;
mod engagement;
mod identity;
mod isolation;
mod lists;
mod offers;
mod openapi;
mod pipelined;
mod privacy;
mod recs;
mod reports;
mod retention;
mod reviews_loyalty;
mod segment;
mod segment_sdk;
mod shopify_transports;
mod spine;
mod ui;

use nudge::app::App;
use nudge::config::{Config, HumanDuration, ShopifyConfig};
pub use nudge_testkit::eventually;
use nudge_testkit::fake_klaviyo::{FakeKlaviyo, FakeKlaviyoConfig, FakeKlaviyoHandle};
use nudge_testkit::shopify_sender::ShopifySender;
use std::collections::BTreeMap;
use std::time::Duration;

pub const SECRET: &str = "test_client_secret_123";
pub const OLD_SECRET: &str = "test_client_secret_old";
pub const KEY: &str = "pk_test_integration";

pub struct TestApp {
    pub app: App,
    pub fake: FakeKlaviyoHandle,
    pub sender: ShopifySender,
    pub base: String,
    pub http: reqwest::Client,
    pub _dir: tempfile::TempDir,
}

/// Starts nudge on 127.0.0.1:0 with a fresh data dir and a fake Klaviyo; `tweak` adjusts the config.
pub async fn spawn_app(tweak: impl FnOnce(&mut Config)) -> TestApp {
    spawn_app_on("127.0.0.1:0", tweak).await
}

/// [`spawn_app`] on another address (`0.0.0.0:0` to be reached from a non-loopback peer).
pub async fn spawn_app_on(listen: &str, tweak: impl FnOnce(&mut Config)) -> TestApp {
    nudge_testkit::ensure_crypto_provider();
    let fake = FakeKlaviyo::start(FakeKlaviyoConfig::new(KEY)).await.expect("fake starts");
    let dir = tempfile::tempdir().expect("temp dir");
    let mut cfg = Config::from_toml("", &BTreeMap::new()).expect("defaults");
    cfg.storage.data_dir = dir.path().to_path_buf();
    cfg.storage.durability = nudge_store::sqlite::Durability::Normal;
    cfg.sources.shopify = Some(ShopifyConfig::with_secrets(vec![SECRET.into(), OLD_SECRET.into()]));
    cfg.destinations.klaviyo = Some(
        nudge_deliver::klaviyo::KlaviyoConfig::new(KEY)
            .with_base_url(fake.base_url())
            .with_timeout(Duration::from_secs(2)),
    );
    cfg.pipeline.checkout_abandon_after = HumanDuration(Duration::from_secs(1));
    cfg.pipeline.timer_tick = HumanDuration(Duration::from_millis(100));
    tweak(&mut cfg);
    let listener = tokio::net::TcpListener::bind(listen).await.unwrap();
    let app = nudge::app::run(cfg, listener).await.expect("nudge starts");
    let base = format!("http://127.0.0.1:{}", app.addr.port());
    let sender = ShopifySender::new(format!("{base}/webhooks/shopify"), SECRET).unwrap();
    TestApp { app, fake, sender, base, http: reqwest::Client::new(), _dir: dir }
}

/// Creates an API token named `name` with `role` directly in the app's store (as `nudge tokens create`
/// does) and returns it.
pub async fn api_token(t: &TestApp, name: &str, role: nudge::access::Role) -> String {
    nudge::tokens_cli::create(&**t.app.store(), name, role).await.expect("token created")
}

/// A GET of `path` on the app with a bearer token.
pub async fn api_get(t: &TestApp, path: &str, token: &str) -> reqwest::Response {
    t.http.get(format!("{}{path}", t.base)).bearer_auth(token).send().await.unwrap()
}
