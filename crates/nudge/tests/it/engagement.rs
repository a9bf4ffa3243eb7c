//! Engagement back from the marketing tools, end to end: a signed Klaviyo system-webhook batch and a
//! Braze Currents batch about a customer nudge knows are each stored as one delivery, processed to a
//! terminal state and audited; a re-sent batch is a duplicate; wrong credentials get 401.

use crate::*;
use nudge::config::{BrazeCurrentsSourceConfig, KlaviyoWebhooksConfig};
use nudge_ingest::shopify::fixtures::{CustomerFixture, LineItemFixture, OrderFixture};
use nudge_model::TraceId;
use nudge_testkit::braze_currents_sender::{BrazeCurrentsSender, braze_batch, braze_event, braze_headers};
use nudge_testkit::klaviyo_webhook_sender::{
    EmailAction, EmailEngagement, KlaviyoWebhookSender, klaviyo_batch, klaviyo_headers, klaviyo_item,
};
use nudge_testkit::shopify_sender::Delivery;
use time::OffsetDateTime;

const KLAVIYO_SECRET: &str = "klaviyo_webhook_secret_0001";
const CURRENTS_TOKEN: &str = "currents-token-0123456789abcdef";

async fn app() -> TestApp {
    spawn_app(|c| {
        c.sources.klaviyo_webhooks = Some(KlaviyoWebhooksConfig::with_secrets(vec![KLAVIYO_SECRET.into()]));
        c.sources.braze_currents = Some(BrazeCurrentsSourceConfig { token: CURRENTS_TOKEN.into() });
    })
    .await
}

/// Makes shopify:880012 known to nudge with one order.
async fn known_customer(t: &TestApp) {
    let now = OffsetDateTime::now_utc();
    let order = OrderFixture::new(6_120_000_000_001, now)
        .customer(CustomerFixture::new(880_012, Some("ana@example.org"), now).consent(Some("subscribed")))
        .line_item(LineItemFixture::new(9_100_000_001, "Organic Tee", 2, "39.95"));
    let r = t.sender.send(&Delivery::new("orders/create", order.to_bytes())).await.unwrap();
    assert_eq!(r.status, 200);
    let trace = trace_of(&r.body);
    assert!(eventually(10, async || terminal(t, trace).await.is_some()).await, "the order was not processed");
}

fn open_and_click(prefix: &str) -> Vec<EmailEngagement> {
    let at = OffsetDateTime::now_utc() - time::Duration::minutes(2);
    vec![
        EmailEngagement::new(EmailAction::Opened, format!("{prefix}-open"), at)
            .external_id("shopify:880012")
            .email("ana@example.org")
            .campaign("Spring sale"),
        EmailEngagement::new(EmailAction::Clicked, format!("{prefix}-click"), at)
            .external_id("shopify:880012")
            .email("ana@example.org")
            .campaign("Spring sale")
            .url("https://shop.example/sale"),
    ]
}

fn trace_of(body: &[u8]) -> TraceId {
    let v: serde_json::Value = serde_json::from_slice(body).unwrap();
    v["trace_id"].as_str().unwrap_or_else(|| panic!("no trace in {v}")).parse().unwrap()
}

async fn terminal(t: &TestApp, trace: TraceId) -> Option<nudge_model::TerminalState> {
    nudge_store::terminal_of(&**t.app.store(), trace).await.unwrap()
}

async fn deliveries(t: &TestApp) -> u64 {
    t.app.store().stats().await.unwrap().deliveries
}

/// The batch's trace reaches a terminal state and its audit names both engagement events.
async fn processed_and_audited(t: &TestApp, trace: TraceId) {
    let done = eventually(10, async || terminal(t, trace).await.is_some()).await;
    let view = t.app.store().trace(trace).await.unwrap();
    let dump = serde_json::to_string_pretty(&view).unwrap();
    assert!(done, "not processed: {dump}");
    let view = view.unwrap();
    assert!(!view.records.is_empty(), "{dump}");
    assert!(dump.contains("email_opened") && dump.contains("email_clicked"), "{dump}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_klaviyo_batch_is_one_delivery_processed_and_audited() {
    let t = app().await;
    known_customer(&t).await;
    let url = format!("{}/webhooks/klaviyo", t.base);
    let sender = KlaviyoWebhookSender::new(&url, KLAVIYO_SECRET, "01HWEBHOOK").unwrap();
    let before = deliveries(&t).await;
    let now = OffsetDateTime::now_utc();
    let body = klaviyo_batch("01HWEBHOOK", open_and_click("k1").iter().map(klaviyo_item).collect(), now);
    let r = sender
        .send_raw(klaviyo_headers(KLAVIYO_SECRET, "01HWEBHOOK", now, &body), body.clone())
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let trace = trace_of(&r.body);
    assert_eq!(deliveries(&t).await, before + 1, "the open and the click are one delivery");
    processed_and_audited(&t, trace).await;
    // Klaviyo re-sending the same batch later (a new timestamp and signature): acknowledged, not stored.
    let later = now + time::Duration::seconds(30);
    let again = sender
        .send_raw(klaviyo_headers(KLAVIYO_SECRET, "01HWEBHOOK", later, &body), body.clone())
        .await
        .unwrap();
    assert_eq!(again.status, 200, "{}", String::from_utf8_lossy(&again.body));
    assert_eq!(deliveries(&t).await, before + 1);
    // A wrong signature, another webhook's body, no signature: 401.
    let bad = klaviyo_headers("another-secret-0000000000", "01HWEBHOOK", now, &body);
    assert_eq!(sender.send_raw(bad, body.clone()).await.unwrap().status, 401);
    let other = KlaviyoWebhookSender::new(&url, KLAVIYO_SECRET, "01HOTHER").unwrap();
    let mut h = klaviyo_headers(KLAVIYO_SECRET, "01HOTHER", now, &body);
    h.retain(|(k, _)| k != "Klaviyo-Webhook-Id");
    h.push(("Klaviyo-Webhook-Id".into(), "01HOTHER".into()));
    assert_eq!(other.send_raw(h, body.clone()).await.unwrap().status, 401);
    let unsigned = vec![("content-type".to_string(), "application/json".to_string())];
    assert_eq!(sender.send_raw(unsigned, body).await.unwrap().status, 401);
    // The sender's own `send` is accepted too.
    assert_eq!(sender.send(&open_and_click("k2")).await.unwrap().status, 200);
    t.app.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_braze_currents_batch_is_one_delivery_processed_and_audited() {
    let t = app().await;
    known_customer(&t).await;
    let url = format!("{}/webhooks/braze-currents", t.base);
    let sender = BrazeCurrentsSender::new(&url, CURRENTS_TOKEN).unwrap();
    // Braze's credential probe: 200, nothing stored.
    let before = deliveries(&t).await;
    let probe = sender.send_raw(braze_headers(CURRENTS_TOKEN), br#"{"events":[]}"#.to_vec()).await.unwrap();
    assert_eq!(probe.status, 200);
    assert_eq!(deliveries(&t).await, before);
    let body = braze_batch(open_and_click("b1").iter().map(|e| braze_event(e, "braze-user-1")).collect());
    let r = sender.send_raw(braze_headers(CURRENTS_TOKEN), body.clone()).await.unwrap();
    assert_eq!(r.status, 200, "{}", String::from_utf8_lossy(&r.body));
    let trace = trace_of(&r.body);
    assert_eq!(deliveries(&t).await, before + 1);
    processed_and_audited(&t, trace).await;
    // The same batch re-sent: acknowledged, not stored again.
    assert_eq!(sender.send_raw(braze_headers(CURRENTS_TOKEN), body.clone()).await.unwrap().status, 200);
    assert_eq!(deliveries(&t).await, before + 1);
    // A wrong token: 401, also for a probe.
    let wrong = BrazeCurrentsSender::new(&url, "not-the-token-0123456789").unwrap();
    assert_eq!(wrong.send(&open_and_click("b2")).await.unwrap().status, 401);
    assert_eq!(wrong.send_raw(braze_headers("nope"), Vec::new()).await.unwrap().status, 401);
    t.app.shutdown().await;
}
