//! EventBridge and Pub/Sub deliveries map to the same metadata and events as HTTPS (api-contracts §8
//! case 18).

use nudge_ingest::shopify::fixtures::{
    self, CustomerFixture, DeliveryFixture, LineItemFixture, OrderFixture,
};
use nudge_ingest::shopify::{
    Delivery, DeliveryMeta, EnvelopeError, Transport, from_eventbridge, from_pubsub,
};
use nudge_ingest::{Headers, Normalized, Topic, normalize, verify};
use serde_json::{Value, json};

const SECRET: &str = "test_client_secret_123";

fn order() -> OrderFixture {
    OrderFixture::new(9007199254740993, super::at("2026-05-01T12:00:00+02:00"))
        .customer(CustomerFixture::new(880012, Some("lena@example.org"), super::at("2026-04-01T00:00:00Z")))
        .line_item(LineItemFixture::new(9007199254740995, "Organic Tee", 3, "19.99"))
}

fn delivery() -> DeliveryFixture {
    DeliveryFixture::new("orders/create", "b54557e4-bdd9", super::at("2026-05-01T10:00:01Z"))
}

/// The HTTPS path: verify, then normalize.
fn via_https() -> (DeliveryMeta, Normalized) {
    let body = order().to_bytes();
    let headers = Headers::from_pairs(delivery().https_headers(&body, SECRET));
    let meta = verify(&headers, &body, &[SECRET.to_string()]).unwrap();
    let normalized = normalize(&meta.topic, &meta.shop_domain, &body).unwrap();
    (meta, normalized)
}

/// An envelope path: read the metadata (no HMAC on these transports), then normalize.
fn via(delivery: Delivery) -> (DeliveryMeta, Normalized) {
    let meta = delivery.meta().unwrap();
    let normalized = normalize(&meta.topic, &meta.shop_domain, &delivery.body).unwrap();
    (meta, normalized)
}

fn assert_same_as_https((meta, normalized): (DeliveryMeta, Normalized)) {
    let (https_meta, https_normalized) = via_https();
    assert_eq!(normalized, https_normalized);
    assert!(matches!(normalized, Normalized::Events(_)));
    assert_eq!(meta, DeliveryMeta { matched_secret: None, ..https_meta });
}

/// Rewrites every key of a header map.
fn rekey(map: &Value, f: impl Fn(&str) -> String) -> Value {
    Value::Object(map.as_object().unwrap().iter().map(|(k, v)| (f(k), v.clone())).collect())
}

#[test]
fn eventbridge_with_metadata_matches_https() {
    let envelope = delivery().eventbridge_envelope(&fixtures::order_json(&order()));
    let unwrapped = from_eventbridge(&fixtures::to_bytes(&envelope)).unwrap();
    assert_eq!(unwrapped.transport, Transport::EventBridge);
    assert_same_as_https(via(unwrapped));
}

#[test]
fn eventbridge_header_keys_may_be_lower_case_without_the_x_prefix() {
    let mut envelope = delivery().eventbridge_envelope(&fixtures::order_json(&order()));
    let metadata =
        rekey(&envelope["detail"]["metadata"], |k| k.trim_start_matches("X-").to_ascii_lowercase());
    assert!(metadata.get("shopify-topic").is_some());
    envelope["detail"]["metadata"] = metadata;
    assert_same_as_https(via(from_eventbridge(&fixtures::to_bytes(&envelope)).unwrap()));
}

#[test]
fn eventbridge_headers_may_sit_directly_in_detail() {
    let envelope = delivery().eventbridge_envelope(&fixtures::order_json(&order()));
    let mut detail = envelope["detail"]["metadata"].as_object().unwrap().clone();
    detail.insert("payload".into(), fixtures::order_json(&order()));
    let flat =
        json!({"detail-type": "shopifyWebhook", "source": "aws.partner/shopify.com/1/n", "detail": detail});
    assert_same_as_https(via(from_eventbridge(&fixtures::to_bytes(&flat)).unwrap()));
}

#[test]
fn pubsub_push_matches_https() {
    let push = delivery().pubsub_push(&order().to_bytes());
    let unwrapped = from_pubsub(&fixtures::to_bytes(&push)).unwrap();
    assert_eq!(unwrapped.transport, Transport::PubSub);
    assert_eq!(unwrapped.body, order().to_bytes());
    assert_same_as_https(via(unwrapped));
}

#[test]
fn pubsub_bare_message_with_mixed_case_unprefixed_attributes_matches_https() {
    let push = delivery().pubsub_push(&order().to_bytes());
    let mut message = push["message"].clone();
    message["attributes"] = rekey(&message["attributes"], |k| k.trim_start_matches("X-").to_string());
    assert!(message["attributes"].get("Shopify-Topic").is_some());
    assert_same_as_https(via(from_pubsub(&fixtures::to_bytes(&message)).unwrap()));
}

#[test]
fn an_envelope_without_required_metadata_is_refused_like_https() {
    let mut envelope = delivery().eventbridge_envelope(&fixtures::order_json(&order()));
    envelope["detail"]["metadata"].as_object_mut().unwrap().remove("X-Shopify-Topic");
    let unwrapped = from_eventbridge(&fixtures::to_bytes(&envelope)).unwrap();
    assert_eq!(unwrapped.meta().unwrap_err(), nudge_ingest::VerifyError::MissingHeader("X-Shopify-Topic"));
}

#[test]
fn envelope_errors_are_precise() {
    let cases: &[(&[u8], &str)] = &[
        (b"{", "EventBridge envelope: invalid JSON at line 1 column 1: EOF while parsing an object"),
        (
            br#"{"detail-type":"shopifyWebhook"}"#,
            "EventBridge envelope: field `detail`: required but missing",
        ),
        (
            br#"{"detail":{"metadata":{}}}"#,
            "EventBridge envelope: field `detail.payload`: required but missing",
        ),
        (
            br#"{"detail":{"payload":5}}"#,
            "EventBridge envelope: field `detail.payload`: expected an object, found the number 5",
        ),
        (
            br#"{"detail":{"payload":{},"metadata":{"X-Shopify-Topic":["a"]}}}"#,
            "EventBridge envelope: field `detail.metadata.X-Shopify-Topic`: expected a string, found an array",
        ),
    ];
    for (bytes, message) in cases {
        assert_eq!(from_eventbridge(bytes).unwrap_err().to_string(), *message);
    }
    let err = from_pubsub(br#"{"message":{"data":17}}"#).unwrap_err();
    assert_eq!(
        err.to_string(),
        "Pub/Sub envelope: field `message.data`: expected a base64 string, found the number 17"
    );
    assert!(matches!(from_pubsub(b"[]").unwrap_err(), EnvelopeError::Field { .. }));
}

#[test]
fn compliance_topics_arrive_through_envelopes_too() {
    let body = fixtures::customers_redact_json(fixtures::DEMO_SHOP, 880012, "lena@example.org", &[1]);
    let d = DeliveryFixture::new("customers/redact", "w-9", super::at("2026-05-01T10:00:00Z"));
    let unwrapped = from_pubsub(&fixtures::to_bytes(&d.pubsub_push(&fixtures::to_bytes(&body)))).unwrap();
    let meta = unwrapped.meta().unwrap();
    assert_eq!(meta.topic, Topic::CustomersRedact);
    assert!(matches!(
        normalize(&meta.topic, &meta.shop_domain, &unwrapped.body),
        Ok(Normalized::Compliance(_))
    ));
}
