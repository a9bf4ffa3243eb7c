//! The Shopify sender against a small receiver that checks what arrives: the signature verifies over the
//! exact bytes, every classic header is present, the negative options really break the delivery, and
//! consecutive deliveries reuse one connection.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{ConnectInfo, State};
use axum::http::{HeaderMap, StatusCode};
use nudge_testkit::shopify_sender::sign;
use nudge_testkit::{Delivery, SendOptions, ShopifySender};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

const SECRET: &str = "test_client_secret_123";

/// What the receiver saw: the peer address of each request and the headers.
type Seen = Arc<Mutex<Vec<(SocketAddr, HeaderMap)>>>;

async fn receive(
    State(seen): State<Seen>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Bytes,
) -> StatusCode {
    seen.lock().unwrap().push((peer, headers.clone()));
    let Some(hmac) = headers.get("x-shopify-hmac-sha256").and_then(|v| v.to_str().ok()) else {
        return StatusCode::UNAUTHORIZED;
    };
    if hmac != sign(SECRET.as_bytes(), &body) {
        return StatusCode::UNAUTHORIZED;
    }
    let required =
        ["x-shopify-topic", "x-shopify-shop-domain", "x-shopify-api-version", "x-shopify-webhook-id"];
    if required.iter().any(|h| !headers.contains_key(*h)) {
        return StatusCode::BAD_REQUEST;
    }
    StatusCode::OK
}

async fn receiver() -> (String, Seen) {
    let seen: Seen = Arc::default();
    let app = Router::new().fallback(receive).with_state(seen.clone());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await.unwrap();
    });
    (format!("http://{addr}/webhooks/shopify"), seen)
}

#[tokio::test]
async fn signed_deliveries_are_accepted_and_broken_ones_refused() {
    let (url, seen) = receiver().await;
    let sender = ShopifySender::new(&url, SECRET).unwrap();
    let body = br#"{"id":5551234567,"email":"ada@example.com","total_price":"59.97","currency":"USD"}"#;
    let delivery = Delivery::new("orders/create", body.to_vec());

    let ok = sender.send(&delivery).await.unwrap();
    assert_eq!(ok.status, 200);
    assert!(ok.elapsed.as_secs() < 30);

    assert_eq!(sender.send_with(&delivery, &SendOptions::corrupted_signature()).await.unwrap().status, 401);
    assert_eq!(
        sender.send_with(&delivery, &SendOptions::signed_with("another_secret")).await.unwrap().status,
        401
    );
    let no_hmac = SendOptions::omitting("X-Shopify-Hmac-Sha256");
    assert_eq!(sender.send_with(&delivery, &no_hmac).await.unwrap().status, 401);
    let no_topic = SendOptions::omitting("x-shopify-topic");
    assert_eq!(sender.send_with(&delivery, &no_topic).await.unwrap().status, 400);

    let seen = seen.lock().unwrap();
    let (first_peer, headers) = &seen[0];
    assert_eq!(headers["x-shopify-topic"], "orders/create");
    assert_eq!(headers["x-shopify-event-id"], delivery.event_id.as_str());
    assert!(headers.contains_key("x-shopify-triggered-at"));
    assert!(seen.iter().all(|(peer, _)| peer == first_peer), "one keep-alive connection for every delivery");
}
