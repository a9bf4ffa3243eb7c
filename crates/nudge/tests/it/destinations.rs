//! Signed webhooks and Slack end to end: a flow on placed orders sends a trigger event to `webhook:crm`
//! and an alert to Slack; the webhook fake verifies the signature, the Slack fake shows the message, the
//! trace reaches its terminal state, and neither the webhook secret nor the Slack URL is in the audit.

use crate::*;
use nudge_ingest::shopify::fixtures::{CustomerFixture, LineItemFixture, OrderFixture};
use nudge_model::{AuditStage, TerminalState, TraceId};
use nudge_testkit::shopify_sender::Delivery;
use nudge_testkit::{FakeSlack, FakeSlackConfig, FakeWebhook};
use time::OffsetDateTime;

const WEBHOOK_SECRET: &str = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw3Mq2kbhnVQs=";

fn order(id: u64, cust: u64) -> OrderFixture {
    let c = CustomerFixture::new(cust, Some(&format!("c{cust}@example.org")), OffsetDateTime::now_utc())
        .consent(Some("subscribed"));
    let mut o = OrderFixture::new(id, OffsetDateTime::now_utc()).customer(c).line_item(LineItemFixture::new(
        9_100_000_001,
        "Organic Tee",
        2,
        "39.95",
    ));
    o.buyer_accepts_marketing = true;
    o
}

fn flow() -> nudge_policy::flows::FlowSpec {
    serde_json::from_str(
        r#"{"name":"orders_out","trigger":"order_placed",
            "actions":[
              {"type":"track_event","destination":"webhook:crm","metric":"AI Order Placed"},
              {"type":"slack_alert","destination":"slack",
               "text":"'Order ' + event.order_id + ' worth ' + string(event.value) + ' ' + event.currency + ' from ' + customer.id"}
            ]}"#,
    )
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flow_sends_a_signed_webhook_and_a_slack_alert() {
    nudge_testkit::ensure_crypto_provider();
    let hook = FakeWebhook::start(WEBHOOK_SECRET).await.unwrap();
    let slack = FakeSlack::start(FakeSlackConfig::default()).await.unwrap();
    let (hook_url, slack_url) = (hook.url(), slack.webhook_url());
    let t = spawn_app(|c| {
        c.destinations.webhooks =
            vec![nudge_deliver::WebhookConfig::new("crm", hook_url, WEBHOOK_SECRET).allowing_private()];
        c.destinations.slack = Some(nudge_deliver::SlackConfig::new(slack_url).allowing_private());
        c.flows = Some(vec![flow()]);
    })
    .await;
    let r = t.sender.send(&Delivery::new("orders/create", order(7001, 801).to_bytes())).await.unwrap();
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let trace: TraceId = v["trace_id"].as_str().unwrap().parse().unwrap();
    let terminal = async || nudge_store::terminal_of(&**t.app.store(), trace).await.unwrap();
    assert!(eventually(15, async || terminal().await.is_some()).await, "the trace reaches a terminal state");
    assert_eq!(terminal().await, Some(TerminalState::Delivered));

    let accepted = hook.accepted();
    assert_eq!(accepted.len(), 1, "{:?}", hook.received());
    let w = &accepted[0];
    assert_eq!(w.event_type, "nudge.trigger_event");
    assert_eq!(w.json["data"]["name"], "AI Order Placed");
    assert_eq!(w.json["data"]["customer"], "shopify:801");
    assert!(w.id.starts_with("msg_") && w.signature.starts_with("v1,"));
    // The fake verified the signature over exactly the bytes it received; check it once more here.
    let key = nudge_testkit::fake_webhook::verify::decode_secret(WEBHOOK_SECRET).unwrap();
    assert_eq!(nudge_testkit::fake_webhook::verify::sign(&key, &w.id, w.timestamp, &w.body), w.signature);

    let messages = slack.messages();
    assert_eq!(messages.len(), 1);
    let text = messages[0]["text"].as_str().unwrap();
    assert!(text.starts_with("Order 7001 worth 79.9") && text.ends_with(" from shopify:801"), "{text}");
    assert!(!text.contains("@example.org"));

    let audit = t.app.store().customer_audit(&"shopify:801".parse().unwrap(), 1000).await.unwrap();
    let attempts: Vec<_> = audit.iter().filter(|a| a.stage == AuditStage::DeliveryAttempt).collect();
    assert_eq!(attempts.len(), 2, "one attempt per destination");
    let shown = serde_json::to_string(&audit.iter().map(|a| &a.detail).collect::<Vec<_>>()).unwrap();
    assert!(shown.contains("POST slack webhook") && shown.contains("POST webhook:crm"), "{shown}");
    assert!(!shown.contains(nudge_testkit::fake_slack::DEFAULT_PATH), "the Slack URL is not audited");
    assert!(!shown.contains(WEBHOOK_SECRET.trim_start_matches("whsec_")), "the secret is not audited");
    t.app.shutdown().await;
}

#[test]
fn a_flow_cannot_route_a_type_the_webhook_filters_out() {
    let text = r#"
        [[destinations.webhooks]]
        name = "crm"
        url = "https://hooks.example.com/in"
        secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw3Mq2kbhnVQs="
        events = ["nudge.alert"]

        [[flows]]
        name = "orders_out"
        trigger = "order_placed"
        actions = [{ type = "track_event", destination = "webhook:crm", metric = "AI Order" }]
    "#;
    let e = nudge::config::Config::from_toml(text, &Default::default()).unwrap_err();
    assert_eq!(e.path, "flows[0].actions[0].destination");
    assert!(e.reason.contains("nudge.alert") && e.reason.contains("nudge.trigger_event"), "{e}");
    let ok =
        text.replace("events = [\"nudge.alert\"]", "events = [\"nudge.alert\", \"nudge.trigger_event\"]");
    nudge::config::Config::from_toml(&ok, &Default::default()).unwrap();
}
