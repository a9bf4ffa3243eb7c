//! Every source's verifier and parser against arbitrary input (property-based fuzzing that runs with the
//! tests): any headers and body give an answer or a refusal with a 4xx/5xx status, never a panic; any
//! stored body under any of a source's topics parses to a meaning, never a panic.

use nudge_ingest::adobe::{AdobeCommerceSource, DEFAULT_INSTANCE};
use nudge_ingest::bigcommerce::{BigCommerceConfig, BigCommerceSource};
use nudge_ingest::shopify::ShopifySource;
use nudge_ingest::shopify::transports::{ShopifyEventBridgeSource, ShopifyPubSubSource};
use nudge_ingest::smile::{SmileConfig, SmileSource};
use nudge_ingest::source::{Inbound, Source, StoredView};
use nudge_ingest::yotpo::{YotpoConfig, YotpoSource};
use nudge_ingest::{Headers, Verified};
use proptest::prelude::*;

fn sources() -> Vec<Box<dyn Source>> {
    vec![
        Box::new(ShopifySource::new(vec!["fuzz-secret".into()])),
        Box::new(BigCommerceSource::new(BigCommerceConfig {
            store_hash: "abc123".into(),
            client_secret: Some("fuzz-secret".into()),
            auth_headers: vec![("x-nudge-token".into(), "fuzz-token".into())],
            require_signature: None,
        })),
        Box::new(AdobeCommerceSource::new(DEFAULT_INSTANCE, None, None).expect("the default instance")),
        Box::new(ShopifyPubSubSource::new(None)),
        Box::new(ShopifyEventBridgeSource::new(Some(("x-nudge-api-key".into(), "0123456789abcdef".into())))),
        Box::new(nudge_ingest::klaviyo_webhooks::KlaviyoWebhookSource::new(
            nudge_ingest::klaviyo_webhooks::KlaviyoWebhookConfig {
                secrets: vec!["fuzz-secret".into()],
                ..Default::default()
            },
        )),
        Box::new(nudge_ingest::braze_currents::BrazeCurrentsSource::new(
            nudge_ingest::braze_currents::BrazeCurrentsConfig { token: "fuzz-token".into() },
        )),
        Box::new(YotpoSource::new(YotpoConfig {
            app_key: "fuzz-app".into(),
            url_token: "fuzz-token".into(),
        })),
        Box::new(SmileSource::new(SmileConfig { url_token: "fuzz-token".into() })),
    ]
}

/// Header names the verifiers read, so random requests reach past the first check.
const HEADER_NAMES: [&str; 23] = [
    "x-shopify-hmac-sha256",
    "x-shopify-topic",
    "x-shopify-shop-domain",
    "x-shopify-webhook-id",
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-nudge-token",
    "x-adobe-commerce-webhook-signature",
    "x-adobe-digital-signature-1",
    "x-adobe-public-key1-path",
    "authorization",
    "x-nudge-api-key",
    "content-type",
    "x-shopify-event-id",
    "x-shopify-triggered-at",
    "klaviyo-signature",
    "klaviyo-timestamp",
    "klaviyo-webhook-id",
    "braze-currents-version",
    "x-nudge-url-token",
    "webhookmessageid",
    "eventid",
];

/// Topics the parsers know, plus unknown ones.
const TOPICS: [&str; 24] = [
    "orders/create",
    "orders/updated",
    "checkouts/update",
    "customers/redact",
    "shopify/fetched/customer",
    "store/order/created",
    "store/cart/abandoned",
    "store/customer/deleted",
    "bigcommerce/fetched/order",
    "bigcommerce/fetched/cart",
    "bigcommerce/fetched/customer",
    "bigcommerce/fetched/product",
    "observer.sales_order_save_commit_after",
    "observer.checkout_cart_save_commit_after",
    "com.adobe.commerce.observer.customer_save_commit_after",
    "review_create",
    "review_updated",
    "yotpo/fetched/review",
    "ping",
    "customer/updated",
    "smile/fetched/customer",
    "no/such/topic",
    "klaviyo/batch",
    "currents/batch",
];

/// Bodies that are often JSON objects with fields the parsers read, sometimes anything at all.
fn body() -> impl Strategy<Value = Vec<u8>> {
    let key = prop::sample::select(vec![
        "id",
        "data",
        "scope",
        "store_id",
        "producer",
        "hash",
        "customer_id",
        "email",
        "status_id",
        "date_modified",
        "total_inc_tax",
        "currency_code",
        "line_items",
        "eventName",
        "value",
        "order",
        "customer",
        "quote",
        "entity_id",
        "grand_total",
        "updated_at",
        "created_at",
        "message",
        "attributes",
        "detail",
        "payload",
        "event_id",
        "recipient_client_id",
        "original",
        "fetched",
        "topic",
        "external_id",
        "meta",
        "klaviyo_webhook_id",
        "included",
        "event_properties",
        "events",
        "event_type",
        "time",
        "user",
        "properties",
        "external_user_id",
        "email_address",
        "event",
        "account_id",
        "app_key",
        "score",
        "deleted",
        "points_balance",
        "vip_status",
        "vip_tier_id",
        "reviews",
    ]);
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::from),
        any::<i64>().prop_map(serde_json::Value::from),
        "[ -~]{0,12}".prop_map(serde_json::Value::from),
        Just(serde_json::Value::from("12.50")),
        Just(serde_json::Value::from("2026-05-01T10:00:00Z")),
        Just(serde_json::Value::from("2018-02-20 14:12:13 UTC")),
        Just(serde_json::Value::from("fuzz-token")),
    ];
    let json = leaf.prop_recursive(4, 48, 6, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(serde_json::Value::Array),
            prop::collection::btree_map(key.clone(), inner, 0..6).prop_map(|m| serde_json::Value::Object(
                m.into_iter().map(|(k, v)| (k.to_string(), v)).collect()
            )),
        ]
    });
    prop_oneof![
        4 => json.prop_map(|v| serde_json::to_vec(&v).unwrap()),
        1 => prop::collection::vec(any::<u8>(), 0..256),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 384, ..ProptestConfig::default() })]

    #[test]
    fn verifiers_answer_any_request_without_panicking(
        headers in prop::collection::vec((prop::sample::select(HEADER_NAMES.to_vec()), prop_oneof![3 => "[ -~]{0,80}", 1 => Just("fuzz-token".to_string())]), 0..8),
        body in body(),
        query in prop::option::of("[ -~]{0,40}"),
        now_ms in 0i64..4_000_000_000_000,
    ) {
        let h = Headers::from_pairs(headers.iter().map(|(k, v)| (*k, v.as_bytes())));
        for s in sources() {
            match s.verify(&Inbound { headers: &h, body: &body, query: query.as_deref(), now_ms }) {
                Ok(Verified::Deliver(a)) => prop_assert!(!a.dedupe_keys.is_empty(), "{}: accepted without keys", s.name()),
                Ok(_) => {}
                Err(e) => prop_assert!((400..600).contains(&e.status), "{}: status {}", s.name(), e.status),
            }
        }
    }

    #[test]
    fn parsers_read_any_stored_body_without_panicking(
        topic in prop::sample::select(TOPICS.to_vec()),
        shop in prop::option::of(prop::sample::select(vec!["abc123", "demo-store.myshopify.com", "default", ""])),
        body in body(),
    ) {
        for s in sources() {
            let _ = s.parse(&StoredView { topic, shop, body: &body });
        }
    }
}
