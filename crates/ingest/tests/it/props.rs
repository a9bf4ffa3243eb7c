//! Property tests: the verifier accepts exactly what a configured secret signed, the normaliser is total
//! (any bytes give `Ok` or `Err`, never a panic), and fixture orders round-trip their values.

use super::SHOP;
use nudge_ingest::shopify::fixtures::{CustomerFixture, LineItemFixture, OrderFixture};
use nudge_ingest::shopify::sign;
use nudge_ingest::{Headers, Normalized, Topic, VerifyError, guest_customer_id, normalize, verify};
use nudge_model::{CustomerId, Event, Source};
use proptest::prelude::*;
use serde_json::Value;
use time::{OffsetDateTime, UtcOffset};

fn headers(hmac: &str) -> Headers {
    Headers::from_pairs([
        ("X-Shopify-Hmac-Sha256", hmac),
        ("X-Shopify-Topic", "orders/create"),
        ("X-Shopify-Shop-Domain", SHOP),
        ("X-Shopify-Webhook-Id", "w-1"),
    ])
}

fn any_topic() -> impl Strategy<Value = Topic> {
    prop::sample::select(Topic::KNOWN.to_vec())
}

/// JSON values built from the field names the normaliser reads, so random inputs reach deep code paths.
fn shopify_like_json() -> impl Strategy<Value = Value> {
    let key = prop::sample::select(vec![
        "id",
        "token",
        "created_at",
        "updated_at",
        "total_price",
        "currency",
        "presentment_currency",
        "line_items",
        "price",
        "quantity",
        "title",
        "customer",
        "email",
        "email_marketing_consent",
        "state",
        "total_price_set",
        "shop_money",
        "amount",
        "currency_code",
        "shop_domain",
        "orders_to_redact",
        "orders_requested",
        "data_request",
        "product_id",
        "accepts_marketing",
        "product_type",
        "tags",
        "sms_marketing_consent",
    ]);
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<u64>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        any::<f64>().prop_filter("finite", |f| f.is_finite()).prop_map(Value::from),
        prop::sample::select(vec![
            "2026-05-01T10:00:00Z",
            "59.97",
            "USD",
            "5x",
            "",
            "subscribed",
            "9007199254740993",
            "demo-store.myshopify.com",
            " vip, ,Wholesale ,vip"
        ])
        .prop_map(|s| Value::String(s.to_string())),
        ".{0,12}".prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 64, 8, move |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((key.clone(), inner), 0..8)
                .prop_map(|kv| Value::Object(kv.into_iter().map(|(k, v)| (k.to_string(), v)).collect())),
        ]
    })
}

fn price() -> impl Strategy<Value = String> {
    (0u64..1_000_000, 0u32..100).prop_map(|(units, cents)| format!("{units}.{cents:02}"))
}

fn instant() -> impl Strategy<Value = OffsetDateTime> {
    // 2000-01-01 .. 2100-01-01, in whole seconds, with a whole-minute offset between -12:00 and +14:00.
    (946_684_800i64..4_102_444_800, -48i8..=56).prop_map(|(secs, quarter_hours)| {
        let offset = UtcOffset::from_whole_seconds(i32::from(quarter_hours) * 15 * 60).unwrap();
        OffsetDateTime::from_unix_timestamp(secs).unwrap().to_offset(offset)
    })
}

fn email() -> impl Strategy<Value = String> {
    "[a-zA-Z0-9._%+-]{1,16}@[a-z0-9-]{1,12}\\.[a-z]{2,6}"
}

proptest! {
    #[test]
    fn a_body_signed_with_any_configured_secret_verifies_and_any_byte_change_does_not(
        secrets in prop::collection::vec("[ -~]{1,40}", 1..4),
        pick in any::<prop::sample::Index>(),
        body in prop::collection::vec(any::<u8>(), 1..512),
        flip_at in any::<prop::sample::Index>(),
        flip in 1u8..=255,
    ) {
        let signer = pick.index(secrets.len());
        let signature = sign(&secrets[signer], &body);
        let meta = verify(&headers(&signature), &body, &secrets).unwrap();
        // Equal secrets may appear twice; the first match is reported.
        prop_assert_eq!(&secrets[meta.matched_secret.unwrap()], &secrets[signer]);

        let mut tampered = body.clone();
        tampered[flip_at.index(body.len())] ^= flip;
        prop_assert_eq!(verify(&headers(&signature), &tampered, &secrets), Err(VerifyError::BadSignature));
    }

    #[test]
    fn normalize_never_panics_on_arbitrary_bytes(
        topic in any_topic(),
        body in prop::collection::vec(any::<u8>(), 0..256),
    ) {
        prop_assert!(normalize(&topic, SHOP, &body).is_err());
    }

    #[test]
    fn normalize_never_panics_on_shopify_like_json(topic in any_topic(), value in shopify_like_json()) {
        let body = serde_json::to_vec(&value).unwrap();
        if let Err(e) = normalize(&topic, SHOP, &body) {
            // Every error message names the topic it happened on.
            prop_assert!(e.to_string().starts_with(topic.as_str()), "{}", e);
        }
    }

    #[test]
    fn fixture_orders_round_trip_through_normalize(
        id in 1u64..=u64::MAX,
        customer_id in prop::option::of(1u64..=u64::MAX),
        email in prop::option::of(email()),
        created_at in instant(),
        updated_at in instant(),
        currency in prop::sample::select(vec!["USD", "EUR", "GBP", "JPY", "CHF"]),
        lines in prop::collection::vec((1u64..=u64::MAX, "[A-Za-z][A-Za-z ]{0,20}", 0u32..50, price()), 0..5),
        total in prop::option::of(price()),
        accepts in any::<bool>(),
    ) {
        let mut order = OrderFixture::new(id, created_at)
            .updated_at(updated_at)
            .currency(currency)
            .accepts_marketing(accepts);
        match (customer_id, &email) {
            (Some(cid), e) => order = order.customer(CustomerFixture::new(cid, e.as_deref(), created_at)),
            (None, Some(e)) => order = order.guest(e),
            (None, None) => {}
        }
        for (product_id, title, quantity, unit) in &lines {
            let item = LineItemFixture::new(*product_id, title.clone(), *quantity, unit.clone());
            order = order.line_item(item);
        }
        if let Some(t) = &total {
            order = order.total(t);
        }

        let normalized = normalize(&Topic::OrdersCreate, SHOP, &order.to_bytes()).unwrap();
        let Normalized::Events(events) = normalized else {
            panic!("an order normalises to events");
        };
        let [Event::OrderUpserted(o)] = events.as_slice() else { panic!("{events:?}") };
        prop_assert_eq!(&o.id, &id.to_string());
        prop_assert_eq!(o.created_at, created_at);
        prop_assert_eq!(o.created_at.offset(), UtcOffset::UTC);
        prop_assert_eq!(o.updated_at, updated_at);
        prop_assert_eq!(o.total.amount.to_string(), order.total_price());
        prop_assert_eq!(o.total.currency.as_str(), currency);
        prop_assert_eq!(o.accepts_marketing, Some(accepts));
        prop_assert_eq!(&o.email, &email);
        let expected_customer = match (customer_id, &email) {
            (Some(cid), _) => Some(CustomerId::new(Source::Shopify, cid.to_string()).unwrap()),
            (None, Some(e)) => Some(guest_customer_id(e)),
            (None, None) => None,
        };
        prop_assert_eq!(&o.customer, &expected_customer);
        prop_assert_eq!(o.line_items.len(), lines.len());
        for (item, (product_id, title, quantity, unit)) in o.line_items.iter().zip(&lines) {
            prop_assert_eq!(item.product_id.clone(), Some(product_id.to_string()));
            prop_assert_eq!(&item.title, title);
            prop_assert_eq!(item.quantity, *quantity);
            prop_assert_eq!(item.price.amount.to_string(), unit.clone());
            prop_assert_eq!(item.price.currency.as_str(), currency);
        }
    }
}
