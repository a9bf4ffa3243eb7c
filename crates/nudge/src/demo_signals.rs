//! The demo's signals beyond orders, played into the same Shopify customers as the live traffic:
//! storefront browsing through the Segment-compatible API (anonymous visitors who view and add products,
//! then identify as their Shopify customer and are merged into it), Yotpo reviews confirmed through the
//! pull API and scored for sentiment, and Klaviyo engagement webhooks (deliveries, opens, clicks, one
//! unsubscribe). It prints what the customers' states hold afterwards.

use crate::app::App;
use crate::config::{Config, KlaviyoWebhooksConfig, SegmentSourceConfig, YotpoSourceConfig};
use nudge_ingest::yotpo::fixtures::ReviewFixture;
use nudge_model::CustomerId;
use nudge_state::CustomerState;
use nudge_testkit::klaviyo_webhook_sender::{EmailAction, EmailEngagement, KlaviyoWebhookSender};
use nudge_testkit::{FakeYotpoHandle, YotpoSender, YotpoWebhook};
use serde_json::json;
use std::time::Duration;
use time::OffsetDateTime;

const WRITE_KEY: &str = "demo_segment_write_key_01";
const KLAVIYO_WEBHOOK_SECRET: &str = "demo_klaviyo_webhook_secret_0001";
const KLAVIYO_WEBHOOK_ID: &str = "01DEMOWEBHOOK";
const YOTPO_URL_TOKEN: &str = "demo_yotpo_url_token_0123456789";

/// What the demo sent, for the summary.
#[derive(Debug, Default)]
pub struct Played {
    pub customers: Vec<CustomerId>,
    pub segment_messages: usize,
    pub segment_requests_ok: usize,
    pub reviews: usize,
    pub reviews_acked: usize,
    pub engagement_events: usize,
    pub engagement_acked: bool,
}

/// Configures the Segment API (user ids are the Shopify customer ids), Klaviyo's engagement webhooks and
/// Yotpo against its fake.
pub fn configure(cfg: &mut Config, yotpo: &FakeYotpoHandle) {
    cfg.sources.segment = Some(SegmentSourceConfig {
        write_keys: vec![WRITE_KEY.into()],
        user_id_namespace: "shopify".into(),
        currency: "EUR".into(),
        ..SegmentSourceConfig::default()
    });
    cfg.sources.klaviyo_webhooks =
        Some(KlaviyoWebhooksConfig::with_secrets(vec![KLAVIYO_WEBHOOK_SECRET.into()]));
    cfg.sources.yotpo = Some(YotpoSourceConfig {
        app_key: yotpo.config().app_key.clone(),
        secret: yotpo.config().secret.clone(),
        url_token: YOTPO_URL_TOKEN.into(),
        api_base: yotpo.base_url(),
    });
}

/// Plays browsing, identification, reviews and engagement for `customers` (Shopify id, email).
pub async fn play(app: &App, yotpo: &FakeYotpoHandle, customers: &[(u64, String)]) -> anyhow::Result<Played> {
    let mut played = Played {
        customers: customers
            .iter()
            .map(|(id, _)| CustomerId::new(nudge_model::Source::Shopify, id.to_string()))
            .collect::<Result<_, _>>()?,
        ..Default::default()
    };
    let now = OffsetDateTime::now_utc();
    let stamp =
        |t: OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
    let http = reqwest::Client::builder().timeout(Duration::from_secs(10)).build()?;
    let segment_url = format!("http://{}/v1/batch", app.addr);

    // 1. Anonymous browsing, then identify: each visitor becomes their Shopify customer.
    for (i, (id, email)) in customers.iter().enumerate() {
        let anon = format!("demo-visitor-{i}");
        let mut batch = Vec::new();
        for k in 0..3u64 {
            batch.push(json!({
                "type": "track", "event": "Product Viewed", "anonymousId": anon, "userId": null,
                "messageId": format!("demo-{i}-view-{k}"), "timestamp": stamp(now + time::Duration::seconds(k as i64)),
                "properties": {"product_id": 9_100_000_000u64 + (i as u64 * 3 + k) % 12, "name": "Linen shirt",
                               "price": 39.95, "currency": "EUR"},
            }));
        }
        batch.push(json!({
            "type": "track", "event": "Product Added", "anonymousId": anon, "messageId": format!("demo-{i}-add"),
            "timestamp": stamp(now + time::Duration::seconds(4)),
            "properties": {"product_id": 9_100_000_000u64 + (i as u64 * 3) % 12, "quantity": 1, "price": 39.95},
        }));
        batch.push(json!({
            "type": "identify", "anonymousId": anon, "userId": id.to_string(),
            "messageId": format!("demo-{i}-identify"), "timestamp": stamp(now + time::Duration::seconds(5)),
            "traits": {"email": email},
        }));
        played.segment_messages += batch.len();
        let body = json!({"batch": batch, "writeKey": WRITE_KEY, "sentAt": stamp(OffsetDateTime::now_utc())});
        let r = http.post(&segment_url).json(&body).send().await?;
        if r.status().as_u16() == 200 {
            played.segment_requests_ok += 1;
        }
    }
    let _ = app.wait_idle(Duration::from_secs(30)).await;

    // 2. Reviews: the notification is confirmed through the pull API, then scored for sentiment.
    let app_key = yotpo.config().app_key.clone();
    let sender = YotpoSender::new(format!("http://{}/webhooks/yotpo", app.addr), Some(YOTPO_URL_TOKEN))?;
    let texts = [
        (5, "Lovely shirt", "The linen is soft and it fits perfectly. Great quality for the price!"),
        (4, "Good", "Nice fabric, shipping was quick. Would buy again."),
        (1, "Very disappointed", "Arrived a week late and the seams split after one wash. Terrible quality."),
        (2, "Runs small", "Had to return it, the sizing is way off and customer service never answered."),
        (5, "Perfect", "Exactly as described, fast delivery and friendly support."),
    ];
    let t = now.replace_nanosecond(0).unwrap_or(now);
    for (i, ((_, email), (score, title, body))) in customers.iter().zip(texts).enumerate() {
        let review =
            ReviewFixture::new(&app_key, 5_000 + i as u64, Some(email), t).score(score).content(title, body);
        yotpo.seed_review(review.pulled());
        let webhook = YotpoWebhook {
            message_id: format!("demo-review-{i}"),
            body: serde_json::to_vec(&review.webhook_typed("review_create"))?,
        };
        played.reviews += 1;
        if sender.send(&webhook).await?.status == 200 {
            played.reviews_acked += 1;
        }
    }

    // 3. Engagement back from Klaviyo: each customer got the campaign, most opened, some clicked, one left.
    let mut events = Vec::new();
    for (i, c) in played.customers.iter().enumerate() {
        let mut add = |action: EmailAction, what: &str| {
            let mut e = EmailEngagement::new(action, format!("demo-{what}-{i}"), now);
            e.external_id = Some(c.to_string());
            e.campaign = Some("Spring linen".into());
            events.push(e);
        };
        add(EmailAction::Delivered, "delivered");
        if i % 4 != 3 {
            add(EmailAction::Opened, "opened");
        }
        if i % 3 == 0 {
            add(EmailAction::Clicked, "clicked");
        }
        if i == 1 {
            add(EmailAction::Unsubscribed, "unsubscribed");
        }
    }
    played.engagement_events = events.len();
    let klaviyo = KlaviyoWebhookSender::new(
        format!("http://{}/webhooks/klaviyo", app.addr),
        KLAVIYO_WEBHOOK_SECRET,
        KLAVIYO_WEBHOOK_ID,
    )?;
    played.engagement_acked = klaviyo.send(&events).await?.status == 200;
    Ok(played)
}

/// What the customers' states hold after the signals.
pub async fn print(app: &App, played: &Played) -> anyhow::Result<()> {
    let _ = app.wait_idle(Duration::from_secs(60)).await;
    let now = OffsetDateTime::now_utc();
    let store = app.store();
    let mut states: Vec<CustomerState> = Vec::new();
    for s in store.load_states(&played.customers).await? {
        states.push(CustomerState::decode(&s.state)?);
    }
    let identified = states.iter().filter(|s| s.aliases.iter().any(|a| a.starts_with("anon:"))).count();
    let views: usize = states
        .iter()
        .map(|s| s.browsed_products(nudge_state::BrowseKind::Viewed, now - time::Duration::days(7)).len())
        .sum();
    let reviews: Vec<nudge_state::ReviewSummary> =
        states.iter().map(|s| s.review_summary()).filter(|r| r.count > 0).collect();
    let negative: u32 = reviews.iter().map(|r| r.negative).sum();
    let compounds: Vec<String> =
        reviews.iter().filter_map(|r| r.last_sentiment).map(|c| format!("{c:+.2}")).collect();
    let rates: Vec<f64> = states.iter().filter_map(|s| s.engagement.open_rate_90d(now)).collect();
    let suppressed = states.iter().filter(|s| s.engagement.suppressed).count();
    println!();
    println!(
        "storefront, reviews and engagement (Segment API, Yotpo, Klaviyo webhooks), {} customers:",
        states.len()
    );
    println!(
        "  segment: {} messages in {} batches ({} answered 200); {identified} anonymous visitors identified and \
         merged into their Shopify customer; {views} product views in the last 7 days",
        played.segment_messages,
        played.customers.len(),
        played.segment_requests_ok
    );
    println!(
        "  yotpo: {}/{} reviews acknowledged, {} folded after the pull-API confirmation, {negative} negative; \
         compound sentiment {}",
        played.reviews_acked,
        played.reviews,
        reviews.len(),
        compounds.join(" ")
    );
    let mean = if rates.is_empty() { 0.0 } else { rates.iter().sum::<f64>() / rates.len() as f64 };
    println!(
        "  klaviyo engagement: {} events in one signed batch ({}); open rate (90 d) averages {:.0} % over {} \
         customers; {suppressed} suppressed by an unsubscribe (no marketing action from any flow)",
        played.engagement_events,
        if played.engagement_acked { "acknowledged" } else { "not acknowledged" },
        mean * 100.0,
        rates.len()
    );
    Ok(())
}
