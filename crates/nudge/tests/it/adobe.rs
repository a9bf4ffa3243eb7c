//! Adobe Commerce end to end over real HTTP: a signed Webhooks-module order answered `{"op":"success"}`,
//! folded into the customer's state and pushed to the Klaviyo fake; an I/O Event whose signing key nudge
//! fetches (once) from the fake key server; a repeated `event_id` answered as a duplicate; the
//! registration challenge over `GET`.

use crate::*;
use nudge::config::{AdobeCommerceConfig, AdobeIoEventsConfig};
use nudge_ingest::adobe::fixtures::{OrderFixture, customer_value, hook, io_event};
use nudge_model::CustomerId;
use nudge_testkit::fake_adobe_io::{
    AdobeSender, FakeKeyServer, IoSignature, KEY1_PATH, hook_headers, io_headers, keys,
};

const CLIENT_ID: &str = "nudge-e2e-client";

async fn state_has_order(t: &TestApp, customer: &str, order: &str) -> bool {
    let id: CustomerId = customer.parse().unwrap();
    let states = t.app.store().load_states(std::slice::from_ref(&id)).await.unwrap();
    states
        .first()
        .is_some_and(|s| nudge_state::CustomerState::decode(&s.state).unwrap().orders.contains_key(order))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adobe_hooks_and_io_events_reach_state_and_klaviyo() {
    let key_server = FakeKeyServer::start(FakeKeyServer::default_keys()).await.unwrap();
    let key_base = key_server.base_url();
    let t = spawn_app(|c| {
        c.sources.adobe_commerce = Some(AdobeCommerceConfig {
            instance: "eu".into(),
            webhook_public_key: Some(keys::COMMERCE_PUBLIC.into()),
            io_events: Some(AdobeIoEventsConfig {
                client_id: CLIENT_ID.into(),
                public_key_base_url: key_base,
                public_keys: vec![],
            }),
        })
    })
    .await;
    let adobe = AdobeSender::new(format!("{}/webhooks/adobe-commerce", t.base));

    // The registration handshake.
    let a = adobe.challenge("c2f1-77").await.unwrap();
    assert_eq!((a.status, a.body.clone()), (200, serde_json::json!({"challenge": "c2f1-77"})));

    // The Webhooks module: a subscribed customer, then their order; each answered with the operation.
    let cust = hook(
        "observer.customer_save_commit_after",
        "customer",
        customer_value(7001, "ana.adobe@example.org", "2026-05-01 09:00:00"),
    );
    let a = adobe.post(&hook_headers(&cust, Some(keys::COMMERCE_PRIVATE)), &cust).await.unwrap();
    assert_eq!((a.status, a.body.clone()), (200, serde_json::json!({"op": "success"})));
    let order = OrderFixture::new(5001, Some(7001), "ana.adobe@example.org", "2026-05-01 10:00:00");
    let body = hook("observer.sales_order_save_commit_after", "order", order.value());
    let a = adobe.post(&hook_headers(&body, Some(keys::COMMERCE_PRIVATE)), &body).await.unwrap();
    assert_eq!((a.status, a.body.clone()), (200, serde_json::json!({"op": "success"})));
    // Unsigned: refused.
    let a = adobe.post(&hook_headers(&body, None), &body).await.unwrap();
    assert_eq!(a.status, 401);

    assert!(eventually(10, async || state_has_order(&t, "adobe:eu:7001", "5001").await).await, "order state");
    let ok = eventually(10, async || {
        t.fake
            .profile_by_email("ana.adobe@example.org")
            .is_some_and(|p| p.external_id.as_deref() == Some("adobe:eu:7001"))
    })
    .await;
    assert!(ok, "Klaviyo profile: {:#?}", t.fake.requests());

    // I/O Events: the key is fetched from the key server once, then cached.
    let sig = Some(IoSignature { private_pem: keys::IO_1_PRIVATE, key_path: KEY1_PATH });
    let io_order = OrderFixture::new(5002, Some(7002), "bo.adobe@example.org", "2026-05-02 10:00:00");
    let ev =
        io_event("observer.sales_order_save_commit_after", "evt-e2e-1", CLIENT_ID, "inst", io_order.value());
    let a = adobe.post(&io_headers(&ev, "evt-e2e-1", sig, None), &ev).await.unwrap();
    assert_eq!(a.status, 200, "{:?}", a.body);
    assert_eq!(a.body["status"], "accepted");
    assert_eq!(key_server.fetches(KEY1_PATH), 1);
    // The same event_id again (a retry): a duplicate, and no second fetch.
    let a = adobe.post(&io_headers(&ev, "evt-e2e-1", sig, None), &ev).await.unwrap();
    assert_eq!((a.status, a.body["status"].as_str()), (200, Some("duplicate")));
    assert_eq!(key_server.fetches(KEY1_PATH), 1);
    // A key path off the key base: refused before any fetch.
    let off = Some(IoSignature { private_pem: keys::IO_1_PRIVATE, key_path: "//evil.example/k.pem" });
    let a = adobe.post(&io_headers(&ev, "evt-e2e-1", off, None), &ev).await.unwrap();
    assert_eq!(a.status, 401);
    assert!(
        eventually(10, async || state_has_order(&t, "adobe:eu:7002", "5002").await).await,
        "I/O order state"
    );
    key_server.shutdown().await;
}
