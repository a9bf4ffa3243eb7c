//! `nudge demo`: a synthetic store end to end on this machine, with no services and no accounts.
//!
//! It builds a store (customers, products and a year of order history from the BG/NBD + Gamma-Gamma
//! process, seeded), imports the history and fits the models, starts nudge on 127.0.0.1 with the built-in
//! Klaviyo-compatible fake (real rate limits), then plays live storefront traffic as correctly signed
//! Shopify webhooks — orders, updates, checkouts that complete and checkouts that are abandoned, customer
//! updates, carts, products, plus a few duplicates, bad signatures, unknown topics and malformed bodies —
//! and prints a summary. It exits non-zero when an invariant fails (an acknowledged delivery without a
//! terminal state, or a trigger event pushed twice).
//!
//! Its flows are the two built-in ones written out, plus `vip_thanks` (its first five decisions wait for
//! approval; the demo rejects the oldest and approves the rest) and `winback_shadow`, a flow a marketing
//! team would add and run in shadow first: its decisions are recorded and audited, nothing is sent; and
//! `abandoned_offer`, whose offer bandit chooses an offer arm for each abandoned checkout. The summary
//! counts every flow's decisions by status and the offers by arm.

use crate::app::App;
use crate::config::{Config, HumanDuration};
use anyhow::Context;
use nudge_ingest::shopify::fixtures::{
    CheckoutFixture, CustomerFixture, LineItemFixture, OrderFixture, ProductFixture,
};
use nudge_testkit::fake_klaviyo::{FakeKlaviyo, FakeKlaviyoConfig};
use nudge_testkit::shopify_sender::{Delivery, SendOptions, ShopifySender};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};
use time::OffsetDateTime;
use tokio::sync::Mutex;

#[derive(clap::Args, Debug, Clone)]
pub struct DemoArgs {
    /// Customers in the synthetic store.
    #[arg(long, default_value_t = 1000)]
    pub customers: usize,
    /// Live webhook deliveries per second.
    #[arg(long, default_value_t = 50.0)]
    pub rate: f64,
    /// How long live traffic runs (e.g. 10s, 2m).
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Keep the server running after the summary (until Ctrl-C).
    #[arg(long)]
    pub keep_serving: bool,
    /// Where the demo keeps its data (recreated on each run; inspect it with `nudge --data-dir DIR audit …`).
    #[arg(long, default_value = "./nudge-demo")]
    pub dir: PathBuf,
    /// Seed of the synthetic store and traffic.
    #[arg(long, default_value_t = 7)]
    pub seed: u64,
    /// Abandonment window used in the demo (the production default is 60m).
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub abandon_after: Duration,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    HumanDuration::parse(s).map(|d| d.0)
}

const SECRET: &str = "demo_app_secret_current";
const OLD_SECRET: &str = "demo_app_secret_previous";
const KLAVIYO_KEY: &str = "pk_demo_fake_key";
const BRAZE_KEY: &str = "braze-demo-fake-key";
const HUBSPOT_TOKEN: &str = "pat-demo-fake-token";

/// The marketing tools the demo pushes to, each a fake that enforces its tool's contract.
struct Fakes {
    klaviyo: nudge_testkit::fake_klaviyo::FakeKlaviyoHandle,
    braze: nudge_testkit::FakeBrazeHandle,
    hubspot: nudge_testkit::FakeHubSpotHandle,
    /// The second store: BigCommerce's REST API, read behind each callback.
    bigcommerce: nudge_testkit::FakeBigCommerceHandle,
    yotpo: nudge_testkit::FakeYotpoHandle,
    /// The OpenAI-compatible LLM generated copy comes from.
    llm: nudge_testkit::FakeLlmHandle,
}

/// The BigCommerce store's client secret (the key of its callbacks' signatures).
const BIGCOMMERCE_SECRET: &str = "demo_bigcommerce_client_secret";
/// How many orders the BigCommerce store places during the demo (one customer each).
const BIGCOMMERCE_ORDERS: u64 = 40;
const MARKER: &str = ".nudge-demo";
const ID_BASE: u64 = 7_000_000_000_000;
const CATEGORIES: [&str; 5] = ["Tees", "Outerwear", "Shoes", "Accessories", "Home"];

/// The demo's flows: the two built-in ones written out (as in `nudge.example.toml`) and a win-back flow in
/// shadow.
const FLOWS: &str = r#"
[[flows]]
name = "profile_sync"
trigger = "state_changed"
actions = [
  { type = "sync_profile", destination = "klaviyo" },
  { type = "sync_profile", destination = "braze" },
  { type = "sync_profile", destination = "hubspot" },
]

[[flows]]
name = "checkout_abandoned"
trigger = "checkout_abandoned"
holdout_percent = 0
actions = [
  { type = "track_event", destination = "klaviyo", metric = "AI Checkout Abandoned" },
  { type = "track_event", destination = "braze", metric = "AI Checkout Abandoned" },
  { type = "track_event", destination = "hubspot", metric = "AI Checkout Abandoned" },
]

# A win-back in shadow. It listens to checkout_started, not order_placed: right after an order the model
# sees the customer alive (churn risk near 0), so a churn condition on order_placed never matches.
[[flows]]
name = "winback_shadow"
trigger = "checkout_started"
when = "scores.churn_risk >= 50.0 && customer.orders_count >= 2"
mode = "shadow"
holdout_percent = 10
frequency_cap = "1/7d"
baseline = "customer.days_since_last_order > 90.0"
actions = [
  { type = "track_event", destination = "klaviyo", metric = "AI Winback", properties = { tier = "scores.segment" } },
]

# Offers on abandoned checkouts: the offer bandit picks an arm for each customer within the guardrails
# (25 % of customers held out as the control group the campaign report compares with; 5 % of choices
# made at random, for the off-policy estimate). The arm rides on the event as `ai_offer`.
[[flows]]
name = "abandoned_offer"
trigger = "checkout_abandoned"
holdout_percent = 25
actions = [
  { type = "choose_offer", arms = ["none", "content_only", "free_shipping", "pct_10"], policy = "thompson", guardrails = { max_discount_pct = 15, min_days_between_offers = 14 }, explore_holdout_percent = 5, window = "7d", shipping_cost = 6.0 },
  { type = "track_event", destination = "klaviyo", metric = "AI Checkout Offer" },
  { type = "generate_copy", prompt = "checkout_nudge" },
]

# A thank-you to repeat buyers whose first decisions wait for a person: the demo approves all but one of
# them after the traffic and rejects that one.
[[flows]]
name = "vip_thanks"
trigger = "order_placed"
when = "customer.orders_count >= 3"
actions = [{ type = "track_event", destination = "klaviyo", metric = "AI VIP Thanks" }]
[flows.approval]
first_n = 5
expires_after = "48h"
"#;

/// The prompt the demo's offer events get their copy from (`generate_copy` in `abandoned_offer`).
const PROMPTS: &str = r#"
[[prompts]]
name = "checkout_nudge"
version = 1
system = "You write short, warm e-commerce copy. Never invent discounts."
user = "A {{segment}} customer left a checkout. Preferred category: {{preferred_category}}. Recommended: {{products}}. Scores: {{scores}}."
slots = { subject = { max_chars = 60 }, preheader = { max_chars = 90 }, body = { max_chars = 280 } }
fallback = { subject = "You left something behind", preheader = "Your basket is saved", body = "Your basket is still here when you are ready." }
"#;

fn demo_prompts() -> Vec<nudge_llm::PromptSpec> {
    #[derive(serde::Deserialize)]
    struct Doc {
        prompts: Vec<nudge_llm::PromptSpec>,
    }
    toml::from_str::<Doc>(PROMPTS).expect("the demo's prompts parse").prompts
}

/// The statuses the summary shows a column for, in order (`error` is added when a flow has one).
const FLOW_STATUSES: [&str; 7] =
    ["live", "shadow", "awaiting_approval", "held_out", "no_consent", "capped", "not_matched"];

/// Rejects the oldest pending approval item and approves the others; returns (approved, rejected).
async fn decide_demo_approvals(app: &crate::app::App) -> anyhow::Result<(usize, usize)> {
    use nudge_store::{ApprovalDecision, ApprovalFilter, ApprovalStatus, ApprovalTarget, DecideResult};
    let store = app.store();
    let filter = ApprovalFilter { status: Some(ApprovalStatus::Pending), ..Default::default() };
    let mut pending: Vec<i64> = store.list_approvals(filter).await?.into_iter().map(|a| a.id).collect();
    pending.sort_unstable();
    let Some((&oldest, rest)) = pending.split_first() else { return Ok((0, 0)) };
    let now = OffsetDateTime::now_utc().unix_timestamp() * 1000;
    let count = |r: Vec<(i64, DecideResult)>| r.iter().filter(|(_, d)| *d == DecideResult::Decided).count();
    let rejected = count(
        store
            .decide_approvals(ApprovalTarget::Ids(vec![oldest]), ApprovalDecision::Reject, "demo", None, now)
            .await?,
    );
    let approved = if rest.is_empty() {
        0
    } else {
        count(
            store
                .decide_approvals(
                    ApprovalTarget::Ids(rest.to_vec()),
                    ApprovalDecision::Approve,
                    "demo",
                    None,
                    now,
                )
                .await?,
        )
    };
    Ok((approved, rejected))
}

fn demo_flows() -> Vec<nudge_policy::flows::FlowSpec> {
    #[derive(serde::Deserialize)]
    struct Doc {
        flows: Vec<nudge_policy::flows::FlowSpec>,
    }
    toml::from_str::<Doc>(FLOWS).expect("the demo's flows parse").flows
}

/// Per flow, its decisions by status, from the metrics' `nudge_flow_decisions_total{flow,status}` counters
/// in the Prometheus text `rendered`.
fn flow_decision_counts(rendered: &str) -> BTreeMap<String, BTreeMap<String, u64>> {
    let mut out: BTreeMap<String, BTreeMap<String, u64>> = BTreeMap::new();
    for line in rendered.lines() {
        let Some(rest) = line.strip_prefix("nudge_flow_decisions_total{") else { continue };
        let Some((labels, value)) = rest.rsplit_once('}') else { continue };
        let Ok(n) = value.trim().parse::<f64>() else { continue };
        let label = |name: &str| {
            labels.split(',').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k.trim() == name).then(|| v.trim().trim_matches('"').to_string())
            })
        };
        if let (Some(flow), Some(status)) = (label("flow"), label("status")) {
            *out.entry(flow).or_default().entry(status).or_default() += n as u64;
        }
    }
    out
}

/// Runs the standalone fake (`nudge dev fake-klaviyo`).
pub async fn run_fake_klaviyo(
    listen: std::net::SocketAddr,
    api_key: String,
    unthrottled: bool,
    lists: Vec<String>,
) -> anyhow::Result<()> {
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let mut cfg = FakeKlaviyoConfig::new(api_key);
    if unthrottled {
        cfg = cfg.unthrottled();
    }
    for list in lists {
        cfg = cfg.with_list(list);
    }
    eprintln!("fake Klaviyo listening on http://{listen} (Ctrl-C to stop)");
    FakeKlaviyo::serve(listener, cfg, async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;
    Ok(())
}

/// The fakes `nudge dev fake` runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum FakeKind {
    /// Klaviyo's API (profiles, events, lists).
    Klaviyo,
    /// Braze's `/users/track`.
    Braze,
    /// HubSpot's contact upserts and properties.
    Hubspot,
    /// Marketo's REST API and Identity (leads, custom activities, lists).
    Marketo,
    /// A Standard Webhooks receiver that verifies signatures.
    Webhook,
    /// A Slack incoming webhook.
    Slack,
    /// A BigCommerce store's REST reads (orders, carts, customers, products), seeded with demo records.
    Bigcommerce,
    /// Adobe I/O Events' public key server (the test kit's key pairs at Adobe-shaped paths), to configure
    /// as `sources.adobe_commerce.io_events.public_key_base_url`.
    AdobeIo,
    /// Shopify's GraphQL Admin API (`customer(id:)`, cost throttle), for `sources.shopify.admin`.
    ShopifyAdmin,
    /// Yotpo's pull API (OAuth token, reviews listing), seeded with one review, for `sources.yotpo`.
    Yotpo,
    /// Smile.io's REST API (`GET /v1/customers/{id}`, 10 req/s), seeded with one customer, for `sources.smile`.
    Smile,
    /// An OpenAI-compatible Chat Completions server (`/v1/chat/completions`, `/health`) with deterministic
    /// completions, for `llm.base_url`.
    Llm,
    /// An external scorer for `[[scoring.custom]]` (`POST /score`, the documented request checked, scores
    /// under the key `churn`), for `http.url`.
    Scorer,
}

/// What `nudge dev fake` was asked for.
#[derive(Debug, Clone)]
pub struct FakeOptions {
    pub kind: FakeKind,
    pub listen: std::net::SocketAddr,
    /// The webhook secret (`--kind webhook`).
    pub secret: String,
    /// The API key or token the fake accepts (Klaviyo, Braze); each fake has a default.
    pub api_key: Option<String>,
    /// Turn off the fake's rate limits.
    pub unthrottled: bool,
    /// Lists that exist in the fake (Klaviyo).
    pub lists: Vec<String>,
    /// Milliseconds added to every answer (LLM).
    pub latency_ms: u64,
}

/// Runs a fake on `listen` until Ctrl-C.
pub async fn run_fake(o: FakeOptions) -> anyhow::Result<()> {
    let listen = o.listen;
    if o.kind == FakeKind::Klaviyo {
        let key = o.api_key.unwrap_or_else(|| "pk_fake_demo".into());
        return run_fake_klaviyo(listen, key, o.unthrottled, o.lists).await;
    }
    let listener =
        tokio::net::TcpListener::bind(listen).await.with_context(|| format!("cannot listen on {listen}"))?;
    let stop = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    match o.kind {
        FakeKind::Klaviyo => unreachable!("handled above"),
        FakeKind::Braze => {
            let key = o.api_key.unwrap_or_else(|| nudge_testkit::fake_braze::DEFAULT_API_KEY.into());
            let mut cfg = nudge_testkit::FakeBrazeConfig::new(key);
            if o.unthrottled {
                cfg = cfg.unthrottled();
            }
            eprintln!("fake Braze listening on http://{listen} (rest_endpoint; Ctrl-C to stop)");
            nudge_testkit::FakeBraze::serve(listener, cfg, stop).await?;
        }
        FakeKind::Hubspot => {
            let token = o.api_key.unwrap_or_else(|| "pat-fake-demo".into());
            let mut cfg = nudge_testkit::FakeHubSpotConfig::new(token);
            if o.unthrottled {
                cfg = cfg.unlimited();
            }
            eprintln!("fake HubSpot listening on http://{listen} (base_url; Ctrl-C to stop)");
            nudge_testkit::FakeHubSpot::serve(listener, cfg, stop).await?;
        }
        FakeKind::Marketo => {
            let mut cfg = nudge_testkit::FakeMarketoConfig::default();
            // The lead fields nudge's profile sync writes, as an admin would have created them.
            use nudge_scoring::names;
            let scores = [
                names::CHURN_RISK,
                names::P_ALIVE,
                names::PREDICTED_CLV,
                names::EXPECTED_ORDERS_90D,
                names::DAYS_TO_NEXT_ORDER,
                "segment",
                "model_version",
                "scored_at",
            ];
            cfg.fields.extend(scores.iter().map(|n| format!("ai_{n}")));
            if o.unthrottled {
                cfg.rate_limit = None;
                cfg.daily_quota = None;
            }
            eprintln!(
                "fake Marketo listening on http://{listen} (base_url; client id {}, secret {}; Ctrl-C to stop)",
                cfg.client_id, cfg.client_secret
            );
            nudge_testkit::FakeMarketo::serve(listener, cfg, stop).await?;
        }
        FakeKind::Webhook => {
            if nudge_testkit::fake_webhook::verify::decode_secret(&o.secret).is_none() {
                anyhow::bail!("--secret must be whsec_ followed by base64");
            }
            eprintln!("fake webhook receiver listening on http://{listen}/hook (Ctrl-C to stop)");
            nudge_testkit::FakeWebhook::serve(listener, &o.secret, stop).await?;
        }
        FakeKind::Scorer => {
            eprintln!(
                "fake scorer listening on http://{listen}/score (http.url; answers `churn`; Ctrl-C to stop)"
            );
            let latency = std::time::Duration::from_millis(o.latency_ms);
            nudge_testkit::FakeScorer::serve(
                listener,
                nudge_testkit::FakeScorerConfig::default(),
                nudge_testkit::ScorerMode::Ok,
                latency,
                stop,
            )
            .await?;
        }
        FakeKind::Llm => {
            let mut cfg = nudge_testkit::FakeLlmConfig::default();
            if let Some(key) = o.api_key {
                cfg.api_key = key;
            }
            eprintln!(
                "fake Chat Completions API listening on http://{listen}/v1 (llm.base_url; model {}, API key {}; Ctrl-C to stop)",
                cfg.model, cfg.api_key
            );
            let latency = std::time::Duration::from_millis(o.latency_ms);
            nudge_testkit::FakeLlm::serve(listener, cfg, latency, stop).await?;
        }
        FakeKind::Slack => {
            let cfg = nudge_testkit::FakeSlackConfig::default();
            eprintln!("fake Slack webhook listening on http://{listen}{} (Ctrl-C to stop)", cfg.path);
            nudge_testkit::FakeSlack::serve(listener, cfg, stop).await?;
        }
        FakeKind::Bigcommerce => {
            let mut cfg = nudge_testkit::FakeBigCommerceConfig::default();
            if let Some(token) = o.api_key {
                cfg.access_token = token;
            }
            if o.unthrottled {
                cfg.quota = u32::MAX;
            }
            eprintln!(
                "fake BigCommerce API listening on http://{listen} (api_base; store {}, X-Auth-Token {}; \
                 order 250, cart {DEMO_CART}, customer 7, product 1; Ctrl-C to stop)",
                cfg.store_hash, cfg.access_token
            );
            nudge_testkit::FakeBigCommerce::serve(listener, cfg, seed_bigcommerce, stop).await?;
        }
        FakeKind::AdobeIo => {
            use nudge_testkit::fake_adobe_io::{FakeKeyServer, KEY1_PATH, KEY2_PATH};
            eprintln!(
                "fake Adobe I/O Events key server on http://{listen} (public_key_base_url), keys at {KEY1_PATH} \
                 and {KEY2_PATH} (Ctrl-C to stop)"
            );
            FakeKeyServer::serve(listener, FakeKeyServer::default_keys(), stop).await?;
        }
        FakeKind::ShopifyAdmin => {
            use nudge_testkit::fake_shopify_admin::{DEFAULT_SHOP, DEFAULT_TOKEN};
            let token = o.api_key.unwrap_or_else(|| DEFAULT_TOKEN.into());
            let mut cfg =
                nudge_testkit::FakeShopifyAdminConfig { access_token: token.clone(), ..Default::default() }
                    .with_customer(nudge_testkit::FakeCustomer::new(880012, "lena@example.org"));
            if o.unthrottled {
                cfg = cfg.bucket(1_000_000.0, 1_000_000.0);
            }
            eprintln!(
                "fake Shopify Admin API for {DEFAULT_SHOP} listening on http://{listen} (base_url; access token {token}; customer 880012 seeded; Ctrl-C to stop)"
            );
            nudge_testkit::FakeShopifyAdmin::serve(listener, cfg, stop).await?;
        }
        FakeKind::Yotpo => {
            let mut cfg = nudge_testkit::FakeYotpoConfig::default();
            if let Some(secret) = o.api_key {
                cfg.secret = secret;
            }
            if o.unthrottled {
                cfg.rate_limit = u32::MAX;
            }
            let t = OffsetDateTime::now_utc();
            let review = nudge_ingest::yotpo::fixtures::ReviewFixture::new(
                &cfg.app_key,
                219,
                Some("lena@example.org"),
                t,
            );
            eprintln!(
                "fake Yotpo API listening on http://{listen} (api_base; app key {}, secret {}; review 219 seeded; Ctrl-C to stop)",
                cfg.app_key, cfg.secret
            );
            nudge_testkit::FakeYotpo::serve(listener, cfg, vec![review.pulled()], stop).await?;
        }
        FakeKind::Smile => {
            let mut cfg = nudge_testkit::FakeSmileConfig::default();
            if let Some(key) = o.api_key {
                cfg.api_key = key;
            }
            if o.unthrottled {
                cfg.per_second = u32::MAX;
            }
            let t = OffsetDateTime::now_utc();
            let customer =
                nudge_ingest::smile::fixtures::CustomerFixture::new(9001, Some("lena@example.org"), 120, t)
                    .tier(3);
            eprintln!(
                "fake Smile.io API listening on http://{listen} (api_base; API key {}; customer 9001 seeded; Ctrl-C to stop)",
                cfg.api_key
            );
            nudge_testkit::FakeSmile::serve(listener, cfg, vec![customer.object()], stop).await?;
        }
    }
    Ok(())
}

/// The cart the BigCommerce fake is seeded with.
const DEMO_CART: &str = "5d0b2b8e-1f7c-4f4e-9c3e-2f0d7a1b9c11";

/// The second store: `BIGCOMMERCE_ORDERS` orders seeded in the BigCommerce fake, each announced by a signed
/// `store/order/created` callback (thin: an id), which nudge acknowledges, then fetches and processes.
/// Returns how many callbacks were acknowledged.
async fn demo_bigcommerce(app: &App, fake: &nudge_testkit::FakeBigCommerceHandle) -> anyhow::Result<u64> {
    use nudge_ingest::bigcommerce::fixtures::{CallbackFixture, ItemFixture, OrderFixture, ProductFixture};
    let t = OffsetDateTime::now_utc();
    fake.seed_product("1", ProductFixture::new(1, "Mug", "12.50", t).fetched());
    let url = format!("http://{}/webhooks/bigcommerce", app.addr);
    let sender = nudge_testkit::BigCommerceSender::new(url, Some(BIGCOMMERCE_SECRET), vec![])?;
    let mut acked = 0;
    for i in 0..BIGCOMMERCE_ORDERS {
        let (order_id, customer) = (1_000 + i, 500 + i);
        let email = format!("bc-shopper-{i}@example.com");
        let order = OrderFixture::new(order_id, customer, Some(&email), t).item(ItemFixture::new(
            1,
            "Mug",
            1 + (i % 3) as u32,
            "12.5000",
        ));
        fake.seed_order(&order_id.to_string(), order.order_json(), order.products_json());
        let cb = CallbackFixture::new("store/order/created", order_id).created_at(t.unix_timestamp());
        let r = sender.send(&nudge_testkit::Callback::new(format!("demo-bc-{i}"), cb.to_bytes())).await?;
        if r.status == 200 {
            acked += 1;
        }
    }
    Ok(acked)
}

/// What became of the BigCommerce store's callbacks.
async fn print_bigcommerce(app: &App, fakes: &Fakes, acked: u64) -> anyhow::Result<()> {
    let reads = fakes.bigcommerce.requests().len();
    let mut in_klaviyo = 0;
    for i in 0..BIGCOMMERCE_ORDERS {
        if fakes.klaviyo.profile_by_email(&format!("bc-shopper-{i}@example.com")).is_some() {
            in_klaviyo += 1;
        }
    }
    let stats = app.store().stats().await?;
    println!();
    println!(
        "BigCommerce store ({}): {acked}/{BIGCOMMERCE_ORDERS} order callbacks acknowledged, {reads} API reads \
         (fetch-after-notify, {} throttled), {in_klaviyo} shoppers' profiles in the Klaviyo fake; fetch jobs \
         pending {}, dead {}",
        fakes.bigcommerce.config().store_hash,
        fakes.bigcommerce.throttled(),
        stats.fetch_jobs_pending,
        stats.fetch_jobs_dead,
    );
    Ok(())
}

/// A few demo records, so callbacks about them can be fetched.
fn seed_bigcommerce(s: &nudge_testkit::FakeBigCommerceSeeder) {
    use nudge_ingest::bigcommerce::fixtures::{
        CartFixture, CustomerFixture, ItemFixture, OrderFixture, ProductFixture,
    };
    let t = time::OffsetDateTime::now_utc();
    let order =
        OrderFixture::new(250, 7, Some("ana@example.com"), t).item(ItemFixture::new(1, "Mug", 2, "12.5000"));
    s.seed_order("250", order.order_json(), order.products_json());
    let cart = CartFixture::new(DEMO_CART, 7, Some("ana@example.com"), t)
        .item(ItemFixture::new(1, "Mug", 1, "12.50"));
    s.seed_cart(DEMO_CART, cart.fetched());
    s.seed_customer("7", CustomerFixture::new(7, "ana@example.com", t).record());
    s.seed_product("1", ProductFixture::new(1, "Mug", "12.50", t).fetched());
}

fn prepare_dir(dir: &std::path::Path) -> anyhow::Result<()> {
    if dir.exists() {
        let is_demo = dir.join(MARKER).exists();
        let empty = std::fs::read_dir(dir)?.next().is_none();
        if !is_demo && !empty {
            anyhow::bail!("{} exists and is not a demo directory; choose another with --dir", dir.display());
        }
        std::fs::remove_dir_all(dir)
            .with_context(|| format!("removing the previous demo in {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    std::fs::write(dir.join(MARKER), "created by nudge demo\n")?;
    Ok(())
}

/// One planned webhook: when to send it (offset from the start) and how.
struct Planned {
    at: Duration,
    delivery: Delivery,
    kind: Kind,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Normal,
    Duplicate,
    OtherSubscription,
    BadSignature,
    OldSecret,
}

#[derive(Default)]
struct Tally {
    by_topic: BTreeMap<String, u64>,
    accepted: u64,
    duplicates: u64,
    rejected: u64,
    errors: u64,
    client_latency: Vec<f64>,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<()> {
    anyhow::ensure!(args.customers >= 10, "--customers must be at least 10");
    anyhow::ensure!(
        args.rate > 0.0 && args.rate <= 20_000.0,
        "--rate must be between 0 and 20000 per second"
    );
    prepare_dir(&args.dir)?;
    let started = Instant::now();
    let fakes = Fakes {
        klaviyo: FakeKlaviyo::start(FakeKlaviyoConfig::new(KLAVIYO_KEY)).await?,
        braze: nudge_testkit::FakeBraze::start(nudge_testkit::FakeBrazeConfig::new(BRAZE_KEY)).await?,
        hubspot: nudge_testkit::FakeHubSpot::start(nudge_testkit::FakeHubSpotConfig::new(HUBSPOT_TOKEN))
            .await?,
        bigcommerce: nudge_testkit::FakeBigCommerce::start(nudge_testkit::FakeBigCommerceConfig::default())
            .await?,
        yotpo: nudge_testkit::FakeYotpo::start(nudge_testkit::FakeYotpoConfig::default()).await?,
        llm: nudge_testkit::FakeLlm::start(nudge_testkit::FakeLlmConfig::default()).await?,
    };

    let mut cfg = Config::from_toml("", &BTreeMap::new()).expect("defaults are valid");
    cfg.storage.data_dir = args.dir.clone();
    cfg.sources.shopify =
        Some(crate::config::ShopifyConfig::with_secrets(vec![SECRET.into(), OLD_SECRET.into()]));
    cfg.destinations.klaviyo =
        Some(nudge_deliver::klaviyo::KlaviyoConfig::new(KLAVIYO_KEY).with_base_url(fakes.klaviyo.base_url()));
    cfg.destinations.braze =
        Some(nudge_deliver::BrazeConfig::new(BRAZE_KEY, fakes.braze.base_url()).allowing_private());
    cfg.destinations.hubspot = Some(
        nudge_deliver::HubSpotConfig::new(HUBSPOT_TOKEN)
            .with_base_url(fakes.hubspot.base_url())
            .allowing_private(),
    );
    let bc = fakes.bigcommerce.config();
    cfg.sources.bigcommerce = Some(crate::config::BigCommerceSourceConfig {
        store_hash: bc.store_hash.clone(),
        access_token: bc.access_token.clone(),
        client_secret: Some(BIGCOMMERCE_SECRET.into()),
        api_base: fakes.bigcommerce.base_url(),
        auth_headers: BTreeMap::new(),
        require_signature: None,
    });
    cfg.pipeline.checkout_abandon_after = HumanDuration(args.abandon_after);
    cfg.pipeline.timer_tick = HumanDuration(Duration::from_millis(200));
    cfg.flows = Some(demo_flows());
    cfg.llm = Some(nudge_llm::LlmConfig::new(
        &fakes.llm.base_url(),
        &fakes.llm.config().model,
        &fakes.llm.config().api_key,
    ));
    cfg.prompts = demo_prompts();
    crate::demo_signals::configure(&mut cfg, &fakes.yotpo);

    // 1. The synthetic store's history, imported and fitted before the server starts.
    let now = OffsetDateTime::now_utc();
    let today = nudge_state::day_number(now);
    let sim = nudge_models::Simulation {
        model: nudge_models::BgNbd { r: 0.25, alpha: 4.0, a: 0.8, b: 2.5 },
        spend: Some(nudge_models::GammaGamma { p: 6.0, q: 4.0, v: 15.0 }),
        customers: args.customers,
        first_day: today - 400,
        acquisition_days: 90,
        observation_end: today - 1,
        unit: nudge_models::TimeUnit::W,
        seed: args.seed,
    };
    let history = nudge_models::simulate_bgnbd(&sim)?;
    load_history(&cfg, &history).await?;

    // 2. nudge itself.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let app = crate::app::run(cfg, listener).await?;
    let url = format!("http://{}/webhooks/shopify", app.addr);
    eprintln!(
        "nudge listening on http://{}; live traffic for {:?} at {}/s",
        app.addr, args.duration, args.rate
    );

    // 3. Live traffic.
    // Event times start now, so the abandonment window runs from when each checkout is actually sent.
    let plan = plan_traffic(
        &args,
        history.iter().map(|t| t.customer).max().unwrap_or(0) + 1,
        OffsetDateTime::now_utc(),
    );
    let tally = Arc::new(Mutex::new(Tally::default()));
    let sender = ShopifySender::new(url, SECRET)?;
    let live_start = Instant::now();
    let sem = Arc::new(tokio::sync::Semaphore::new(64));
    let mut tasks = Vec::with_capacity(plan.len());
    for p in plan {
        let wait = p.at.saturating_sub(live_start.elapsed());
        if !wait.is_zero() {
            tokio::time::sleep(wait).await;
        }
        let permit = sem.clone().acquire_owned().await?;
        let sender = sender.clone();
        let tally = tally.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = permit;
            let opts = match p.kind {
                Kind::BadSignature => SendOptions::corrupted_signature(),
                Kind::OldSecret => SendOptions::signed_with(OLD_SECRET),
                _ => SendOptions::default(),
            };
            let res = sender.send_with(&p.delivery, &opts).await;
            let mut t = tally.lock().await;
            *t.by_topic.entry(p.delivery.topic.clone()).or_default() += 1;
            match res {
                Ok(r) if r.status == 200 => {
                    t.client_latency.push(r.elapsed.as_secs_f64());
                    if String::from_utf8_lossy(&r.body).contains("\"duplicate\"") {
                        t.duplicates += 1;
                    } else {
                        t.accepted += 1;
                    }
                }
                Ok(r) if r.status == 401 => t.rejected += 1,
                _ => t.errors += 1,
            }
        }));
    }
    for t in tasks {
        t.await?;
    }
    let live_secs = live_start.elapsed().as_secs_f64();
    let bigcommerce_acks = demo_bigcommerce(&app, &fakes.bigcommerce).await?;
    // Storefront browsing, reviews and engagement for twenty of the store's customers.
    let signal_customers: Vec<(u64, String)> = (0..20u64.min(args.customers as u64))
        .map(|c| (ID_BASE + c, format!("customer{c}@example.com")))
        .collect();
    let signals = crate::demo_signals::play(&app, &fakes.yotpo, &signal_customers).await?;
    // Recommendations: the catalogue, a `recs` version fitted on the orders so far, and pushes that carry
    // each customer's list.
    let recs_line = demo_recs(&app, &sender, args.customers as u64).await?;

    // 4. Let abandonment timers fire, decide the approval queue (as a marketer would: reject the oldest,
    // approve the rest), and let the outbox drain.
    tokio::time::sleep(args.abandon_after + Duration::from_millis(600)).await;
    let _ = app.wait_idle(Duration::from_secs(60)).await;
    let approvals = decide_demo_approvals(&app).await?;
    let idle = app.wait_idle(Duration::from_secs(120)).await;
    if approvals != (0, 0) {
        println!("approvals: {} approved, {} rejected (flow vip_thanks)", approvals.0, approvals.1);
    }

    let ok = summarize(&app, &fakes, &tally, live_secs, started, &args, idle).await?;
    print_recs(&fakes, &recs_line);
    print_reports(&app).await?;
    print_offers(&app).await?;
    print_copy(&app, &fakes).await?;
    print_bigcommerce(&app, &fakes, bigcommerce_acks).await?;
    crate::demo_signals::print(&app, &signals).await?;
    demo_erasure(&app, &fakes).await?;
    if args.keep_serving {
        use crate::access::Role;
        let viewer = crate::tokens_cli::create(&**app.store(), "demo-viewer", Role::Viewer).await?;
        let marketer = crate::tokens_cli::create(&**app.store(), "demo-marketer", Role::Marketer).await?;
        eprintln!("serving on http://{} until Ctrl-C", app.addr);
        eprintln!("console: http://{}/ui/ (sign in with a token)", app.addr);
        eprintln!("  viewer token:   {viewer}");
        eprintln!("  marketer token: {marketer} (approves, adopts segments)");
        tokio::signal::ctrl_c().await?;
    }
    app.shutdown().await;
    fakes.klaviyo.shutdown().await;
    fakes.braze.shutdown().await;
    fakes.hubspot.shutdown().await;
    fakes.llm.shutdown().await;
    if !ok {
        anyhow::bail!("the demo found an invariant violation (see above)");
    }
    Ok(())
}

/// One generated subject line the Klaviyo fake received, and the tokens generated copy used.
async fn print_copy(app: &App, fakes: &Fakes) -> anyhow::Result<()> {
    let events: Vec<_> =
        fakes.klaviyo.events().into_iter().filter(|e| e.properties.contains_key("ai_copy")).collect();
    let usage = app.store().llm_usage(&crate::copy::month_of(OffsetDateTime::now_utc())).await?;
    println!();
    match events.iter().find(|e| e.properties["ai_copy"]["fallback"] == false).or(events.first()) {
        Some(e) => println!(
            "generated copy: {} events carry ai_copy ({} generations, {} fallback, {} tokens), e.g. subject \"{}\"",
            events.len(),
            usage.generations,
            usage.fallbacks,
            usage.tokens,
            e.properties["ai_copy"]["subject"].as_str().unwrap_or_default()
        ),
        None => println!("generated copy: no event needed copy this run ({} tokens)", usage.tokens),
    }
    Ok(())
}

/// Sends the catalogue (twenty products with prices, images and tags; one a draft), fits and activates a
/// `recs` version on the orders so far, serves it, and sends a profile update and a checkout (abandoned:
/// a trigger event follows) for ten customers with recommendations. Returns the line showing one list.
async fn demo_recs(app: &App, sender: &ShopifySender, customers: u64) -> anyhow::Result<String> {
    let now = OffsetDateTime::now_utc();
    for product in 0..20u64 {
        let mut p = ProductFixture::new(9_100_000_000 + product, &format!("Product {product}"), now)
            .product_type(Some(CATEGORIES[(product % 5) as usize]))
            .vendor(["Acme", "Northwind", "Globex", "Initech"][(product % 4) as usize])
            .price(&format!("{}.90", 12 + product * 5))
            .image(&format!("https://cdn.example.com/products/{product}.jpg"));
        if product % 7 == 3 {
            p = p.tags("consumable");
        }
        if product == 19 {
            p = p.status("draft");
        }
        sender.send(&Delivery::new("products/create", p.to_bytes())).await?;
    }
    let _ = app.wait_idle(Duration::from_secs(30)).await;
    let store = &*app.shared.store;
    let id = match crate::fit_recs::fit_and_activate(store, &nudge_decide::recs::RecsConfig::default()).await
    {
        Ok(id) => id,
        Err(e) => return Ok(format!("recommendations: not fitted ({e:#})")),
    };
    let precomputed = app.reload_recs().await?;
    let recs = app.scoring.recs().context("recommendations are served")?;
    let mut shown = None;
    let mut chosen = Vec::new();
    for c in 0..customers {
        let cid = nudge_model::CustomerId::new(nudge_model::Source::Shopify, (ID_BASE + c).to_string())?;
        let Some(a) = recs.cached(&cid, 5) else { continue };
        if a.products.is_empty() {
            continue;
        }
        if shown.is_none() && a.products.iter().any(|p| p.reason != "popular") {
            let list: Vec<String> =
                a.products.iter().map(|p| format!("{} ({})", p.title, p.reason)).collect();
            shown = Some(format!("recommendations for {cid} ({id}): {}", list.join(", ")));
        }
        if chosen.len() < 10 {
            chosen.push(c);
        }
        if chosen.len() >= 10 && shown.is_some() {
            break;
        }
    }
    let at = OffsetDateTime::now_utc();
    for (n, c) in chosen.iter().enumerate() {
        let email = format!("customer{c}@example.com");
        let customer = CustomerFixture::new(ID_BASE + c, Some(&email), now - time::Duration::days(400))
            .name(Some("Demo"), Some(&format!("Customer {c}")))
            .consent(Some("subscribed"))
            .updated_at(at);
        sender.send(&Delivery::new("customers/update", customer.to_bytes())).await?;
        let oid = 6_500_000_000_000 + n as u64;
        let checkout = CheckoutFixture::new(oid, at)
            .token(&format!("chk-recs-{oid}"))
            .customer(customer)
            .line_item(LineItemFixture::new(
                9_100_000_000 + (*c % 20),
                format!("Product {}", c % 20),
                1,
                "19.90",
            ))
            .accepts_marketing(true);
        sender.send(&Delivery::new("checkouts/create", checkout.to_bytes())).await?;
    }
    Ok(format!(
        "{}
  {precomputed} customers' lists precomputed; {} customers sent a profile update and an abandoned checkout",
        shown.unwrap_or_else(|| format!("recommendations ({id}): no customer with a list")),
        chosen.len()
    ))
}

/// The recommendations line, and how many pushes to the Klaviyo fake carried them.
fn print_recs(fakes: &Fakes, line: &str) {
    let key = format!("ai_{}", nudge_policy::RECOMMENDED_PRODUCTS);
    let profiles = fakes.klaviyo.profiles().iter().filter(|p| p.properties.contains_key(&key)).count();
    let events = fakes.klaviyo.events().iter().filter(|e| e.properties.contains_key(&key)).count();
    println!();
    println!("{line}");
    println!("  Klaviyo fake: {profiles} profiles and {events} trigger events carry {key}");
}

/// Erases one customer the Braze fake holds, as `POST /api/privacy/erase` would (through the ingest log),
/// and prints what became of the erasure at each destination.
async fn demo_erasure(app: &App, fakes: &Fakes) -> anyhow::Result<()> {
    let Some(customer) =
        fakes.braze.users().into_iter().find_map(|u| u.id.parse::<nudge_model::CustomerId>().ok())
    else {
        return Ok(());
    };
    let store = app.store();
    let subject = crate::privacy::subject_for(&**store, &customer).await?;
    let req = nudge_ingest::PrivacyRequest::Erase { subject, reference: None };
    crate::privacy::submit_via_log(&**store, &req, "demo").await?;
    app.shared.wake_pipeline.notify_one();
    let pseudonym = crate::privacy::pseudonym_of(&customer);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let jobs = store.privacy_jobs(false, Some(pseudonym.clone())).await?;
        if let Some(job) = jobs.first().filter(|j| j.done) {
            println!();
            println!("erasure of one customer (as `nudge privacy erase` does):");
            println!("{}", crate::privacy::describe(job));
            println!("  braze fake still holds them: {}", fakes.braze.user(&customer.to_string()).is_some());
            return Ok(());
        }
        if Instant::now() >= deadline {
            println!("\nerasure of one customer: still in progress after 30 s (`nudge privacy status`)");
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

/// The offers `abandoned_offer` made, by arm: how many, how many an order settled so far, and how many
/// came from the random holdout.
async fn print_offers(app: &crate::app::App) -> anyhow::Result<()> {
    let offers = app.store().offers_of_flow("abandoned_offer").await?;
    println!();
    println!("offers chosen by abandoned_offer ({} sent):", offers.len());
    println!("  {:<14} {:>7} {:>10} {:>9}", "arm", "offers", "converted", "explored");
    let mut arms: std::collections::BTreeMap<&str, (usize, usize, usize)> = Default::default();
    for o in &offers {
        let e = arms.entry(o.arm.as_str()).or_default();
        e.0 += 1;
        e.1 += usize::from(o.outcome_value.is_some_and(|v| v > 0.0));
        e.2 += usize::from(o.explored);
    }
    for (arm, (n, converted, explored)) in arms {
        println!("  {arm:<14} {n:>7} {converted:>10} {explored:>9}");
    }
    // The campaign report of the offers against the flow's holdout, windows still open (as `nudge report
    // campaign --flow abandoned_offer --partial` prints it).
    let q = crate::campaign_report::CampaignQuery {
        report: crate::report_cli::ReportQuery {
            flow: "abandoned_offer".into(),
            partial: true,
            ..Default::default()
        },
        arm: None,
    };
    let flows = app.flows.current();
    match crate::campaign_report::build(&**app.store(), &flows, &q, OffsetDateTime::now_utc()).await {
        Ok(report) => {
            println!();
            print!("{}", crate::campaign_report::text(&report));
        }
        Err(e) => println!("\ncampaign report of abandoned_offer: {e:#}"),
    }
    Ok(())
}

/// The shadow report of `winback_shadow` against its baseline rule, and its lift against its holdout, with
/// the demo's windows still open (the live traffic lasts seconds): what `nudge report … --partial` prints.
async fn print_reports(app: &crate::app::App) -> anyhow::Result<()> {
    use crate::report_cli::{ReportKind, ReportQuery, build, text};
    let flows = app.flows.current();
    let q = ReportQuery { flow: "winback_shadow".into(), partial: true, ..Default::default() };
    for kind in [ReportKind::Shadow, ReportKind::Lift] {
        let report = build(&**app.store(), &flows, kind, &q, time::OffsetDateTime::now_utc()).await?;
        println!();
        print!("{}", text(&report));
    }
    Ok(())
}

/// Imports the simulated history (orders of `shopify:<id>` customers, backfilled into their states) and
/// fits the models; activates the new version when the data passes the sufficiency gate.
async fn load_history(cfg: &Config, history: &[nudge_models::Transaction]) -> anyhow::Result<()> {
    let currency = nudge_model::Currency::parse("USD").expect("USD is a currency code");
    let rows: Vec<crate::import::HistoryRow> = history
        .iter()
        .enumerate()
        .map(|(i, t)| crate::import::HistoryRow {
            line: 0,
            customer: nudge_model::CustomerId::new(
                nudge_model::Source::Shopify,
                (ID_BASE + t.customer).to_string(),
            )
            .expect("numeric ids are valid"),
            email: Some(format!("customer{}@example.com", t.customer)),
            order_id: format!("hist-{i}"),
            order_name: None,
            day: t.day,
            at: None,
            amount: rust_decimal::Decimal::from_f64_retain(t.amount.max(1.0))
                .unwrap_or(rust_decimal::Decimal::ONE)
                .round_dp(2),
            currency,
            source: "demo",
        })
        .collect();
    let store = crate::app::open_store(cfg).await?;
    let summary = crate::import::import_rows(&*store, rows, false).await?;
    eprintln!(
        "history: {} orders of {} customers imported into customer state",
        summary.new_transactions, summary.customers
    );
    match crate::models_cli::refit_from_store(&*store, cfg).await? {
        Some(o) if o.activated => eprintln!("models: fitted and activated {} ({})", o.version, o.reason),
        Some(o) => eprintln!("models: fitted {} but did not activate it: {}", o.version, o.reason),
        None => eprintln!("models: not enough history for a model; scoring with the rules fallback"),
    }
    Ok(())
}

fn plan_traffic(args: &DemoArgs, customers: u64, now: OffsetDateTime) -> Vec<Planned> {
    let mut rng = StdRng::seed_from_u64(args.seed ^ 0x5eed);
    let total = (args.rate * args.duration.as_secs_f64()).round().max(1.0) as usize;
    let step = Duration::from_secs_f64(1.0 / args.rate);
    let mut plan: Vec<Planned> = Vec::with_capacity(total + total / 4);
    let mut order_seq: u64 = 0;
    let mut i = 0usize;
    while plan.len() < total {
        let at = step * i as u32;
        let planned_before = plan.len();
        let c = rng.gen_range(0..customers);
        let cid = ID_BASE + c;
        let email = format!("customer{c}@example.com");
        let customer = CustomerFixture::new(cid, Some(&email), now - time::Duration::days(400))
            .name(Some("Demo"), Some(&format!("Customer {c}")))
            .consent(Some("subscribed"));
        let product = rng.gen_range(0..20u64);
        let price = format!("{}.{:02}", rng.gen_range(12..120), rng.gen_range(0..100));
        let item = LineItemFixture::new(
            9_100_000_000 + product,
            format!("Product {product}"),
            rng.gen_range(1..3),
            &price,
        );
        let ts = now + time::Duration::milliseconds(at.as_millis() as i64);
        let roll: f64 = rng.r#gen();
        let push = |plan: &mut Vec<Planned>, at: Duration, topic: &str, body: Vec<u8>, kind: Kind| {
            plan.push(Planned { at, delivery: Delivery::new(topic, body), kind });
        };
        if roll < 0.35 {
            // A checkout: created, updated, then completed by an order — or abandoned.
            order_seq += 1;
            let oid = 6_100_000_000_000 + order_seq;
            let token = format!("chk-{oid}");
            let cart = format!("cart-{oid}");
            let checkout = CheckoutFixture::new(oid, ts)
                .token(&token)
                .cart_token(Some(&cart))
                .customer(customer.clone())
                .line_item(item.clone())
                .accepts_marketing(true);
            push(&mut plan, at, "checkouts/create", checkout.to_bytes(), Kind::Normal);
            let later = checkout.clone().updated_at(ts + time::Duration::milliseconds(300));
            push(
                &mut plan,
                at + Duration::from_millis(300),
                "checkouts/update",
                later.to_bytes(),
                Kind::Normal,
            );
            if rng.gen_bool(0.6) {
                let order = OrderFixture::new(oid, ts + time::Duration::milliseconds(800))
                    .number(1000 + order_seq as u32)
                    .customer(customer.clone())
                    .line_item(item)
                    .tokens(Some(&token), Some(&cart));
                push(
                    &mut plan,
                    at + Duration::from_millis(800),
                    "orders/create",
                    order.to_bytes(),
                    Kind::Normal,
                );
            }
        } else if roll < 0.55 {
            order_seq += 1;
            let oid = 6_100_000_000_000 + order_seq;
            let order = OrderFixture::new(oid, ts)
                .number(1000 + order_seq as u32)
                .customer(customer)
                .line_item(item)
                .accepts_marketing(true);
            let d = Delivery::new("orders/create", order.to_bytes());
            plan.push(Planned { at, delivery: d.clone(), kind: Kind::Normal });
            if rng.gen_bool(0.3) {
                let upd = order.clone().updated_at(ts + time::Duration::seconds(1)).financial_status("paid");
                push(
                    &mut plan,
                    at + Duration::from_millis(500),
                    "orders/updated",
                    upd.to_bytes(),
                    Kind::Normal,
                );
            }
            if rng.gen_bool(0.1) {
                // Shopify retries the same delivery: same webhook id, same body.
                plan.push(Planned {
                    at: at + Duration::from_millis(200),
                    delivery: d.clone(),
                    kind: Kind::Duplicate,
                });
            }
            if rng.gen_bool(0.05) {
                plan.push(Planned {
                    at: at + Duration::from_millis(250),
                    delivery: d.for_another_subscription(),
                    kind: Kind::OtherSubscription,
                });
            }
        } else if roll < 0.70 {
            let consent = if rng.gen_bool(0.8) { "subscribed" } else { "unsubscribed" };
            let upd = customer.updated_at(ts).consent(Some(consent));
            push(&mut plan, at, "customers/update", upd.to_bytes(), Kind::Normal);
        } else if roll < 0.80 {
            let cart = nudge_ingest::shopify::fixtures::CartFixture::new(&format!("cart-live-{i}"), ts)
                .line_item(item);
            push(&mut plan, at, "carts/update", cart.to_bytes(), Kind::Normal);
        } else if roll < 0.85 {
            let p = ProductFixture::new(9_100_000_000 + product, &format!("Product {product}"), ts)
                .product_type(Some(CATEGORIES[(product % 5) as usize]))
                .updated_at(ts);
            push(&mut plan, at, "products/update", p.to_bytes(), Kind::Normal);
        } else if roll < 0.90 {
            let upd = customer.updated_at(ts);
            push(&mut plan, at, "customers/create", upd.to_bytes(), Kind::OldSecret);
        } else if roll < 0.94 {
            let order = OrderFixture::new(6_900_000_000_000 + i as u64, ts).customer(customer);
            push(&mut plan, at, "orders/create", order.to_bytes(), Kind::BadSignature);
        } else if roll < 0.97 {
            push(&mut plan, at, "app/uninstalled", br#"{"id":1}"#.to_vec(), Kind::Normal);
        } else {
            // Signed but malformed: kept in quarantine, answered 200.
            push(&mut plan, at, "orders/create", br#"{"id": 5, "total_price": "5x""#.to_vec(), Kind::Normal);
        }
        // Scenarios send one to four deliveries; advancing by that many keeps the rate per delivery.
        i += (plan.len() - planned_before).max(1);
    }
    plan.sort_by_key(|p| p.at);
    plan
}

async fn summarize(
    app: &App,
    fakes: &Fakes,
    tally: &Mutex<Tally>,
    live_secs: f64,
    started: Instant,
    args: &DemoArgs,
    idle: bool,
) -> anyhow::Result<bool> {
    let t = tally.lock().await;
    let fake = &fakes.klaviyo;
    let stats = app.store().stats().await?;
    let requests = fake.requests();
    let mut by_endpoint: BTreeMap<(String, u16), u64> = BTreeMap::new();
    for r in &requests {
        *by_endpoint.entry((r.path.clone(), r.status)).or_default() += 1;
    }
    let events = fake.events();
    let abandoned = events.iter().filter(|e| e.metric == "AI Checkout Abandoned").count();
    let mut unique: std::collections::HashSet<(String, String, Option<String>)> = Default::default();
    let mut twice = 0;
    for e in &events {
        if !unique.insert((e.profile_id.clone(), e.metric.clone(), e.unique_id.clone())) {
            twice += 1;
        }
    }
    let mut lat = t.client_latency.clone();
    lat.sort_by(f64::total_cmp);
    let q =
        |v: &[f64], p: f64| if v.is_empty() { 0.0 } else { v[((v.len() as f64 - 1.0) * p).round() as usize] };
    let terminal_total: u64 = stats.terminal_by_state.iter().map(|(_, n)| n).sum();

    println!(
        "nudge demo — {} customers, {:.1}s of live traffic, total {:.1}s",
        args.customers,
        live_secs,
        started.elapsed().as_secs_f64()
    );
    println!();
    println!("webhooks sent by topic:");
    for (topic, n) in &t.by_topic {
        println!("  {topic:<20} {n:>7}");
    }
    println!(
        "acknowledged {} · deduplicated {} · rejected (bad signature) {} · transport errors {}",
        t.accepted, t.duplicates, t.rejected, t.errors
    );
    println!(
        "pipeline: {} deliveries stored ({} from abandonment timers), {} quarantined, {} customers, {} decisions",
        stats.deliveries,
        stats.deliveries.saturating_sub(t.accepted),
        stats.quarantined,
        stats.customers,
        crate::telemetry::DECISIONS.load(std::sync::atomic::Ordering::Relaxed)
    );
    println!("terminal states:");
    for (state, n) in &stats.terminal_by_state {
        println!("  {state:<20} {n:>7}");
    }
    println!("pushes to the Klaviyo fake:");
    for ((path, status), n) in &by_endpoint {
        println!("  {path:<24} {status} {n:>7}");
    }
    println!(
        "Klaviyo fake holds {} profiles and {} events ({} × AI Checkout Abandoned)",
        fake.profiles().len(),
        events.len(),
        abandoned
    );
    let braze_events = fakes.braze.events();
    let mut braze_by_status: BTreeMap<u16, (u64, usize)> = BTreeMap::new();
    for r in fakes.braze.requests() {
        let e = braze_by_status.entry(r.status).or_default();
        e.0 += 1;
        e.1 += r.objects;
    }
    println!("pushes to the Braze fake:");
    for (status, (n, objects)) in &braze_by_status {
        println!("  {:<24} {status} {n:>7} ({objects} objects)", "/users/track");
    }
    println!(
        "Braze fake holds {} users and {} events ({} × AI Checkout Abandoned)",
        fakes.braze.users().len(),
        braze_events.len(),
        braze_events.iter().filter(|e| e.name == "AI Checkout Abandoned").count()
    );
    let mut hubspot_by_endpoint: BTreeMap<(String, u16), u64> = BTreeMap::new();
    for r in fakes.hubspot.requests() {
        *hubspot_by_endpoint.entry((r.path.clone(), r.status)).or_default() += 1;
    }
    println!("pushes to the HubSpot fake:");
    for ((path, status), n) in &hubspot_by_endpoint {
        println!("  {path:<40} {status} {n:>7}");
    }
    println!(
        "HubSpot fake holds {} contacts and {} nudge properties",
        fakes.hubspot.contacts().len(),
        fakes.hubspot.properties().len()
    );
    println!("outbox by destination:      pending  delivered   rejected       dead");
    for d in &stats.outbox_by_destination {
        println!(
            "  {:<20} {:>10} {:>10} {:>10} {:>10}",
            d.destination, d.pending, d.delivered, d.rejected, d.dead
        );
    }
    let counts = flow_decision_counts(&app.shared.metrics.render());
    let mut columns: Vec<&str> = FLOW_STATUSES.to_vec();
    if counts.values().any(|c| c.contains_key("error")) {
        columns.push("error");
    }
    println!("flows: decisions by status (flow set {}):", app.flows.current().version);
    print!("  {:<20} {:<7}", "flow", "mode");
    for c in &columns {
        print!(" {c:>11}");
    }
    println!();
    for f in &app.flows.current().flows {
        let mode = serde_json::to_value(f.spec.mode).ok().and_then(|v| v.as_str().map(String::from));
        let mode = mode.unwrap_or_default();
        print!("  {:<20} {mode:<7}", f.spec.name);
        let by_status = counts.get(&f.spec.name);
        for c in &columns {
            print!(" {:>11}", by_status.and_then(|m| m.get(*c)).copied().unwrap_or(0));
        }
        println!();
    }
    if let Some((n, p50, p99)) = app.shared.ack_latency.quantiles() {
        println!("ingest ack latency (server, {n}): p50 {:.2} ms, p99 {:.2} ms", p50 * 1e3, p99 * 1e3);
    }
    println!(
        "ingest round trip (client, {}): p50 {:.2} ms, p99 {:.2} ms",
        lat.len(),
        q(&lat, 0.5) * 1e3,
        q(&lat, 0.99) * 1e3
    );
    if let Some((n, p50, p99)) = app.push_latency.quantiles() {
        println!("event→push latency ({n}): p50 {:.1} ms, p99 {:.1} ms", p50 * 1e3, p99 * 1e3);
    }
    // The analyst: segments proposed from the demo store's customers.
    let opts = nudge_decide::segments::DiscoverOptions::default();
    match crate::segments_cli::discover_store(
        &**app.store(),
        &app.scoring,
        &crate::segments_cli::SIGNALS,
        &opts,
    )
    .await
    {
        Ok((r, found)) => {
            println!(
                "segments proposed ({} customers, {} signals, k = {} by the mean silhouette; nudge segments discover):",
                r.customers,
                r.signals.len(),
                r.k
            );
            for p in &r.proposals {
                println!("  {:>5.1} %  {}", p.share * 100.0, p.suggested_name);
            }
            demo_adopt(app, &r, &found, opts.seed).await;
        }
        Err(e) => println!("segments: none proposed ({e:#})"),
    }
    // Show where to look: the trail of an abandoned checkout when there is one.
    let sample_customer = events
        .iter()
        .find(|e| e.metric == "AI Checkout Abandoned")
        .and_then(|e| e.profile.get("external_id"))
        .and_then(|v| v.as_str())
        .and_then(|s| s.parse::<nudge_model::CustomerId>().ok());
    let sample = match sample_customer {
        Some(c) => app.store().customer_audit(&c, 1).await?,
        None => Vec::new(),
    };
    let dir = args.dir.display();
    match sample.first() {
        Some(r) => println!("\ninspect: nudge --data-dir {dir} audit show {}", r.trace_id),
        None => println!("\ninspect: nudge --data-dir {dir} audit stats"),
    }

    let mut ok = true;
    if !idle {
        println!("INVARIANT: work was still pending after 120 s");
        ok = false;
    }
    if terminal_total != stats.deliveries {
        println!(
            "INVARIANT: {} deliveries but {} terminal states — every delivery must end in exactly one",
            stats.deliveries, terminal_total
        );
        ok = false;
    }
    if twice > 0 {
        println!("INVARIANT: {twice} events stored twice in the fake");
        ok = false;
    }
    let mut braze_ids = std::collections::HashSet::new();
    let braze_twice = braze_events
        .iter()
        .filter_map(|e| e.properties.get("nudge_event_id").and_then(|v| v.as_str()))
        .filter(|id| !braze_ids.insert(id.to_string()))
        .count();
    if braze_twice > 0 {
        println!("INVARIANT: {braze_twice} events sent twice to the Braze fake");
        ok = false;
    }
    if t.errors > 0 {
        println!("INVARIANT: {} deliveries got no 200/401 answer", t.errors);
        ok = false;
    }
    Ok(ok)
}

#[cfg(test)]
mod slug_tests {
    #[test]
    fn suggested_names_become_segment_names() {
        assert_eq!(
            super::segment_slug("high discount use, low order value"),
            "high_discount_use_low_order_value"
        );
        assert_eq!(super::segment_slug("  9 orders+ (loyal) "), "segment_9_orders_loyal");
        assert_eq!(super::segment_slug(""), "segment");
        let long = super::segment_slug(&"word ".repeat(30));
        assert!(long.len() <= 64 && !long.ends_with('_'), "{long}");
        for s in ["high discount use, low order value", "  9 orders+ (loyal) ", &"word ".repeat(30)] {
            crate::segment_adoption::check_name(&super::segment_slug(s)).unwrap();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_flows_compile_with_a_shadow_flow() {
        let dests = ["klaviyo", "braze", "hubspot"];
        let prompts: Vec<(String, u32)> =
            demo_prompts().iter().map(|p| (p.name.clone(), p.version)).collect();
        let prompts: Vec<(&str, u32)> = prompts.iter().map(|(n, v)| (n.as_str(), *v)).collect();
        let set =
            nudge_policy::flows::FlowSet::compile_with_prompts(&demo_flows(), &dests, &prompts).unwrap();
        assert_eq!(set.flows[3].copy, Some(("checkout_nudge".to_string(), 1)), "abandoned_offer writes copy");
        let names: Vec<&str> = set.flows.iter().map(|f| f.spec.name.as_str()).collect();
        assert_eq!(
            names,
            ["profile_sync", "checkout_abandoned", "winback_shadow", "abandoned_offer", "vip_thanks"]
        );
        assert!(set.flows[3].offer.is_some(), "abandoned_offer chooses an offer");
        assert_eq!(set.flows[2].spec.mode, nudge_policy::flows::Mode::Shadow);
        // The two built-in flows, written out, are the built-in ones.
        let builtin =
            nudge_policy::flows::FlowSet::default_specs(&dests, &nudge_policy::PolicyConfig::default());
        assert_eq!(&demo_flows()[..2], &builtin[..]);
    }

    #[test]
    fn flow_counts_are_read_from_the_metrics() {
        let text = "# TYPE nudge_flow_decisions_total counter\n\
            nudge_flow_decisions_total{flow=\"winback_shadow\",status=\"shadow\"} 12\n\
            nudge_flow_decisions_total{status=\"held_out\",flow=\"winback_shadow\"} 2\n\
            nudge_flow_decisions_total{flow=\"profile_sync\",status=\"live\"} 340\n\
            nudge_decisions_total{shadow=\"true\"} 12\n";
        let c = flow_decision_counts(text);
        assert_eq!(c["winback_shadow"]["shadow"], 12);
        assert_eq!(c["winback_shadow"]["held_out"], 2);
        assert_eq!(c["profile_sync"]["live"], 340);
        assert_eq!(c.len(), 2);
    }
}

/// Adopts the largest proposed segment under a name made from its suggested one, as a marketer would
/// with `nudge segments adopt`, then refreshes it once more and prints the stability.
async fn demo_adopt(
    app: &App,
    report: &crate::segments_cli::Report,
    found: &nudge_decide::segments::Discovery,
    seed: u64,
) {
    use crate::segment_adoption as adoption;
    let Some(first) = report.proposals.first() else { return };
    let stored =
        adoption::StoredDiscovery::new(report, found, crate::segments_cli::features_of(report), seed);
    let name = segment_slug(&first.suggested_name);
    let result = async {
        let id = adoption::save_discovery(&**app.store(), &stored).await?;
        let proposal = format!("{id}-{}", first.index + 1);
        let (_, adopted) =
            adoption::adopt_and_refresh(app.store(), &app.scoring, &proposal, &name, "demo", Vec::new())
                .await
                .map_err(|e| anyhow::anyhow!("{e}"))?;
        let again = adoption::refresh(app.store(), &app.scoring).await?;
        anyhow::Ok((proposal, adopted, again))
    }
    .await;
    match result {
        Ok((proposal, adopted, again)) => {
            let members = adopted.segments.first().map_or(0, |c| c.members);
            let stability = again.segments.first().and_then(|c| c.stability).unwrap_or(0.0);
            println!(
                "  adopted {proposal} as `{name}` ({members} members; flows read it as customer.segments); \
                 a second refresh keeps {:.1} % of them (nudge segments adopt / refresh)",
                stability * 100.0
            );
        }
        Err(e) => println!("  adopting a segment failed: {e:#}"),
    }
}

/// "high discount use, low order value" → `high_discount_use_low_order_value` (at most 64 characters).
fn segment_slug(suggested: &str) -> String {
    let mut s = String::new();
    for c in suggested.chars() {
        if c.is_ascii_alphanumeric() {
            s.push(c.to_ascii_lowercase());
        } else if !s.ends_with('_') && !s.is_empty() {
            s.push('_');
        }
    }
    let s = s.trim_end_matches('_');
    let mut s: String = s.chars().take(64).collect();
    while s.ends_with('_') {
        s.pop();
    }
    if s.is_empty() {
        s = "segment".into();
    } else if !s.starts_with(|c: char| c.is_ascii_lowercase()) {
        s = format!("segment_{s}").chars().take(64).collect();
    }
    s
}
