//! Shopify over Pub/Sub and EventBridge through the running server: accepted at their own paths and
//! deduplicated against the HTTPS delivery of the same event.

use crate::{SECRET, spawn_app};
use nudge::config::{ShopifyEventBridgeConfig, ShopifyPubSubConfig};
use nudge_ingest::shopify::fixtures::{
    CustomerFixture, DeliveryFixture, LineItemFixture, OrderFixture, to_bytes,
};
use nudge_testkit::google_oidc;
use serde_json::Value;
use time::macros::datetime;

const EB_KEY: &str = "eb_integration_key_0123456789";

async fn post(
    http: &reqwest::Client,
    url: &str,
    headers: &[(String, String)],
    body: Vec<u8>,
) -> (u16, Value) {
    let mut req = http.post(url).body(body);
    for (k, v) in headers {
        req = req.header(k.as_str(), v.as_str());
    }
    let r = req.send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

fn now_ms() -> i64 {
    i64::try_from(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis())
        .unwrap()
}

#[tokio::test]
async fn pubsub_and_eventbridge_deliveries_are_accepted_and_deduplicated_against_https() {
    let t = spawn_app(|cfg| {
        let shopify = cfg.sources.shopify.as_mut().unwrap();
        shopify.pubsub = Some(ShopifyPubSubConfig {
            audience: google_oidc::AUDIENCE.into(),
            service_account_email: google_oidc::SERVICE_ACCOUNT.into(),
            jwks: google_oidc::jwks(),
        });
        shopify.eventbridge =
            Some(ShopifyEventBridgeConfig { header: "X-Nudge-Api-Key".into(), value: EB_KEY.into() });
    })
    .await;
    let order = |id: u64| {
        OrderFixture::new(id, datetime!(2026-05-01 10:00 UTC))
            .customer(CustomerFixture::new(880012, Some("lena@example.org"), datetime!(2026-04-01 9:00 UTC)))
            .line_item(LineItemFixture::new(1, "Mug", 1, "12.50"))
    };
    let https_url = format!("{}/webhooks/shopify", t.base);
    let pubsub_url = format!("{}/webhooks/shopify/pubsub", t.base);
    let eb_url = format!("{}/webhooks/shopify/eventbridge", t.base);
    let json_ct = ("Content-Type".to_string(), "application/json".to_string());
    let bearer = || ("Authorization".to_string(), google_oidc::bearer(&google_oidc::token(now_ms())));
    let eb_key = ("x-nudge-api-key".to_string(), EB_KEY.to_string());

    // One event over HTTPS first, then over Pub/Sub and EventBridge: one delivery.
    let d = DeliveryFixture::new("orders/create", "wh-int-1", datetime!(2026-05-01 10:00 UTC));
    let body = order(7001).to_bytes();
    let (status, first) = post(&t.http, &https_url, &d.https_headers(&body, SECRET), body.clone()).await;
    assert_eq!((status, first["status"].as_str()), (200, Some("accepted")), "{first}");
    let (status, ps) =
        post(&t.http, &pubsub_url, &[json_ct.clone(), bearer()], to_bytes(&d.pubsub_push(&body))).await;
    assert_eq!((status, ps["status"].as_str()), (200, Some("duplicate")), "{ps}");
    assert_eq!(ps["trace_id"], first["trace_id"]);
    let envelope = to_bytes(&d.eventbridge_envelope(&order(7001).to_json()));
    let (status, eb) = post(&t.http, &eb_url, &[json_ct.clone(), eb_key.clone()], envelope).await;
    assert_eq!((status, eb["status"].as_str()), (200, Some("duplicate")), "{eb}");
    assert_eq!(eb["trace_id"], first["trace_id"]);

    // Another event first over Pub/Sub: accepted there; the same event over EventBridge and HTTPS (another
    // subscription, same event id) is a duplicate of it.
    let d2 = DeliveryFixture::new("orders/create", "wh-int-2", datetime!(2026-05-01 11:00 UTC));
    let body2 = order(7002).to_bytes();
    let (status, ps2) =
        post(&t.http, &pubsub_url, &[json_ct.clone(), bearer()], to_bytes(&d2.pubsub_push(&body2))).await;
    assert_eq!((status, ps2["status"].as_str()), (200, Some("accepted")), "{ps2}");
    let envelope2 = to_bytes(&d2.eventbridge_envelope(&order(7002).to_json()));
    let (_, eb2) = post(&t.http, &eb_url, &[json_ct.clone(), eb_key.clone()], envelope2).await;
    assert_eq!((eb2["status"].as_str(), &eb2["trace_id"]), (Some("duplicate"), &ps2["trace_id"]), "{eb2}");
    let other_subscription =
        DeliveryFixture::new("orders/create", "wh-int-2b", datetime!(2026-05-01 11:00 UTC))
            .event_id(&d2.event_id);
    let (_, h2) =
        post(&t.http, &https_url, &other_subscription.https_headers(&body2, SECRET), body2.clone()).await;
    assert_eq!(h2["status"].as_str(), Some("duplicate"), "{h2}");

    // Unauthenticated pushes are refused.
    let (status, _) =
        post(&t.http, &pubsub_url, std::slice::from_ref(&json_ct), to_bytes(&d2.pubsub_push(&body2))).await;
    assert_eq!(status, 401);
    let (status, _) =
        post(&t.http, &eb_url, &[json_ct], to_bytes(&d2.eventbridge_envelope(&order(7002).to_json()))).await;
    assert_eq!(status, 401);
}
