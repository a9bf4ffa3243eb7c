//! Body → canonical event snapshots and error messages (api-contracts §8 cases 13–17, and the shape of
//! the compliance requests behind case 19).

use super::{SHOP, at, check, outcome};
use nudge_ingest::shopify::fixtures::{
    self, CartFixture, CheckoutFixture, CustomerFixture, LineItemFixture, OrderFixture, ProductFixture,
};
use nudge_ingest::{Normalized, Topic, guest_customer_id, normalize};
use nudge_model::Event;
use serde_json::json;

/// The constructed `orders/create` example from api-contracts §1.6, verbatim.
const DOC_ORDER: &str = r##"{
  "id": 6120000000001, "admin_graphql_api_id": "gid://shopify/Order/6120000000001",
  "name": "#1042", "email": "lena@example.org", "created_at": "2026-05-01T12:00:00+02:00",
  "updated_at": "2026-05-01T12:00:03+02:00", "currency": "EUR", "total_price": "84.90",
  "financial_status": "paid", "fulfillment_status": null, "checkout_token": "c1f0...", "cart_token": "a77e...",
  "customer": {"id": 880012, "email": "lena@example.org", "first_name": "Lena",
               "email_marketing_consent": {"state": "subscribed", "opt_in_level": "single_opt_in", "consent_updated_at": null}},
  "line_items": [{"id": 15000000001, "product_id": 9100000001, "variant_id": 4700000001, "sku": "TEE-BLK-M",
                  "title": "Organic Tee", "quantity": 2, "price": "39.95"}]
}"##;

#[test]
fn the_documented_order_example() {
    check(
        "orders/create",
        DOC_ORDER.as_bytes(),
        json!({"events": [{
            "type": "order_upserted",
            "id": "6120000000001",
            "name": "#1042",
            "customer": "shopify:880012",
            "email": "lena@example.org",
            "created_at": "2026-05-01T10:00:00Z",
            "updated_at": "2026-05-01T10:00:03Z",
            "cancelled_at": null,
            "total": {"amount": "84.90", "currency": "EUR"},
            "financial_status": "paid",
            "line_items": [{
                "product_id": "9100000001", "variant_id": "4700000001", "sku": "TEE-BLK-M",
                "title": "Organic Tee", "quantity": 2, "price": {"amount": "39.95", "currency": "EUR"}
            }],
            "checkout_token": "c1f0...",
            "cart_token": "a77e...",
            "accepts_marketing": null
        }]}),
    );
}

#[test]
fn a_fixture_order_with_a_customer() {
    let order = OrderFixture::new(450001, at("2026-05-01T12:00:00+02:00"))
        .number(1042)
        .customer(CustomerFixture::new(880012, Some("lena@example.org"), at("2026-04-01T09:00:00+02:00")))
        .line_item(LineItemFixture::new(9100000001, "Organic Tee", 3, "19.99").variant(4700000001))
        .tokens(Some("chk-1"), Some("cart-1"))
        .accepts_marketing(true)
        .currency("EUR");
    check(
        "orders/paid",
        &order.to_bytes(),
        json!({"events": [{
            "type": "order_upserted",
            "id": "450001",
            "name": "#1042",
            "customer": "shopify:880012",
            "email": "lena@example.org",
            "created_at": "2026-05-01T10:00:00Z",
            "updated_at": "2026-05-01T10:00:00Z",
            "cancelled_at": null,
            "total": {"amount": "59.97", "currency": "EUR"},
            "financial_status": "paid",
            "line_items": [{
                "product_id": "9100000001", "variant_id": "4700000001", "sku": "SKU-9100000001",
                "title": "Organic Tee", "quantity": 3, "price": {"amount": "19.99", "currency": "EUR"}
            }],
            "checkout_token": "chk-1",
            "cart_token": "cart-1",
            "accepts_marketing": true
        }]}),
    );
}

#[test]
fn a_cancelled_order() {
    let order = OrderFixture::new(450002, at("2026-05-01T12:00:00Z"))
        .guest("Guest@Example.org")
        .line_item(LineItemFixture::new(1, "Mug", 1, "12.00"))
        .cancelled(at("2026-05-02T08:30:00-04:00"));
    let Ok(Normalized::Events(events)) = normalize(&Topic::OrdersCancelled, SHOP, &order.to_bytes()) else {
        panic!("{:?}", outcome("orders/cancelled", &order.to_bytes()));
    };
    let [Event::OrderCancelled(o)] = events.as_slice() else { panic!("{events:?}") };
    assert_eq!(o.cancelled_at, Some(time::macros::datetime!(2026-05-02 12:30 UTC)));
    assert_eq!(o.updated_at, time::macros::datetime!(2026-05-02 12:30 UTC));
    assert_eq!(o.customer, Some(guest_customer_id("guest@example.org")));
    assert_eq!(o.financial_status.as_deref(), Some("voided"));
}

#[test]
fn a_guest_checkout_gets_a_hashed_key_and_its_recovery_url() {
    let checkout = CheckoutFixture::new(3300001, at("2026-05-01T12:00:00+02:00"))
        .token("tok-abc")
        .cart_token(Some("cart-abc"))
        .guest("  Ada@Example.com ")
        .line_item(LineItemFixture::new(9100000001, "Organic Tee", 2, "39.95").sku(None))
        .updated_at(at("2026-05-01T12:05:00+02:00"))
        .accepts_marketing(true);
    let guest = guest_customer_id("ada@example.com");
    assert!(guest.local().starts_with("guest-") && guest.local().len() == 22, "{guest}");
    check(
        "checkouts/update",
        &checkout.to_bytes(),
        json!({"events": [{
            "type": "checkout_upserted",
            "token": "tok-abc",
            "cart_token": "cart-abc",
            "customer": guest.to_string(),
            "email": "Ada@Example.com",
            "created_at": "2026-05-01T10:00:00Z",
            "updated_at": "2026-05-01T10:05:00Z",
            "completed_at": null,
            "total": {"amount": "79.90", "currency": "USD"},
            "line_items": [{
                "product_id": "9100000001", "variant_id": "9101000001", "sku": null,
                "title": "Organic Tee", "quantity": 2, "price": {"amount": "39.95", "currency": "USD"}
            }],
            "recovery_url": checkout.recovery_url(),
            "accepts_marketing": true
        }]}),
    );
}

#[test]
fn a_checkout_with_a_customer_uses_the_customer_id() {
    let checkout = CheckoutFixture::new(3300002, at("2026-05-01T12:00:00Z"))
        .customer(CustomerFixture::new(880012, Some("lena@example.org"), at("2026-04-01T00:00:00Z")))
        .completed(at("2026-05-01T12:10:00Z"));
    let value = outcome("checkouts/create", &checkout.to_bytes());
    let event = &value["events"][0];
    assert_eq!(event["customer"], "shopify:880012");
    assert_eq!(event["completed_at"], "2026-05-01T12:10:00Z");
    assert_eq!(event["total"], json!({"amount": "0.00", "currency": "USD"}));
}

#[test]
fn customers_and_their_consent() {
    let base = || CustomerFixture::new(880012, Some("lena@example.org"), at("2026-04-01T09:00:00+02:00"));
    check(
        "customers/create",
        &base().consent(Some("subscribed")).phone("+4915112345678").to_bytes(),
        json!({"events": [{
            "type": "customer_upserted",
            "id": "shopify:880012",
            "email": "lena@example.org",
            "first_name": "Lena",
            "last_name": "Berg",
            "created_at": "2026-04-01T07:00:00Z",
            "updated_at": "2026-04-01T07:00:00Z",
            "email_consent": "subscribed",
            "tags": [],
            "sms_consent": "unknown"
        }]}),
    );
    let consent_of =
        |c: CustomerFixture| outcome("customers/update", &c.to_bytes())["events"][0]["email_consent"].clone();
    assert_eq!(consent_of(base().consent(Some("not_subscribed"))), "not_subscribed");
    assert_eq!(consent_of(base().consent(Some("unsubscribed"))), "unsubscribed");
    assert_eq!(consent_of(base().consent(Some("pending"))), "pending");
    assert_eq!(consent_of(base().consent(Some("redacted"))), "unknown");
    // With no consent object the legacy flag decides; with neither, consent is unknown.
    assert_eq!(consent_of(base().consent(None).legacy_accepts_marketing(true)), "subscribed");
    assert_eq!(consent_of(base().consent(None).legacy_accepts_marketing(false)), "not_subscribed");
    assert_eq!(consent_of(base().consent(None)), "unknown");
    // The consent object wins over the legacy flag when both are present.
    assert_eq!(
        consent_of(base().consent(Some("unsubscribed")).legacy_accepts_marketing(true)),
        "unsubscribed"
    );
}

#[test]
fn customers_with_tags_and_sms_consent() {
    let base = || CustomerFixture::new(880012, Some("lena@example.org"), at("2026-04-01T09:00:00+02:00"));
    check(
        "customers/update",
        &base()
            .tags(&["vip", "wholesale"])
            .sms_consent(Some("subscribed"))
            .phone("+4915112345678")
            .to_bytes(),
        json!({"events": [{
            "type": "customer_upserted",
            "id": "shopify:880012",
            "email": "lena@example.org",
            "first_name": "Lena",
            "last_name": "Berg",
            "created_at": "2026-04-01T07:00:00Z",
            "updated_at": "2026-04-01T07:00:00Z",
            "email_consent": "not_subscribed",
            "tags": ["vip", "wholesale"],
            "sms_consent": "subscribed"
        }]}),
    );
    // The fixture writes tags as Shopify does: one comma-separated string.
    assert_eq!(fixtures::customer_json(&base().tags(&["vip", "wholesale"]))["tags"], "vip, wholesale");
}

#[test]
fn customer_tags_are_split_on_commas_trimmed_and_deduplicated() {
    let base = || CustomerFixture::new(880012, Some("lena@example.org"), at("2026-04-01T09:00:00Z"));
    let tags_of =
        |c: CustomerFixture| outcome("customers/update", &c.to_bytes())["events"][0]["tags"].clone();
    assert_eq!(tags_of(base().raw_tags(Some("vip, wholesale"))), json!(["vip", "wholesale"]));
    assert_eq!(tags_of(base().raw_tags(Some("vip,wholesale"))), json!(["vip", "wholesale"]));
    // Odd spacing, tabs and newlines around tags; spaces inside a tag are part of it.
    assert_eq!(
        tags_of(base().raw_tags(Some("  vip ,\twholesale,\n  early access  "))),
        json!(["vip", "wholesale", "early access"])
    );
    // Empty pieces are dropped; Shopify's order is kept.
    assert_eq!(tags_of(base().raw_tags(Some(",b,, a ,c,"))), json!(["b", "a", "c"]));
    // Repeats go, in any case (Shopify's tags are case-insensitive); the first spelling stays.
    assert_eq!(tags_of(base().raw_tags(Some("VIP, wholesale, vip, VIP"))), json!(["VIP", "wholesale"]));
    // No tags: an empty or blank string, only commas, null, or no field at all.
    for raw in [Some(""), Some("   "), Some(" , ,"), None] {
        assert_eq!(tags_of(base().raw_tags(raw)), json!([]), "{raw:?}");
    }
    let mut body = fixtures::customer_json(&base().tags(&["vip"]));
    body.as_object_mut().unwrap().remove("tags");
    let value = outcome("customers/update", &fixtures::to_bytes(&body));
    assert_eq!(value["events"][0]["tags"], json!([]));
}

#[test]
fn customer_sms_consent_maps_like_email_consent() {
    let base = || CustomerFixture::new(880012, Some("lena@example.org"), at("2026-04-01T09:00:00Z"));
    let sms_of =
        |c: CustomerFixture| outcome("customers/update", &c.to_bytes())["events"][0]["sms_consent"].clone();
    assert_eq!(sms_of(base().sms_consent(Some("subscribed"))), "subscribed");
    assert_eq!(sms_of(base().sms_consent(Some("not_subscribed"))), "not_subscribed");
    assert_eq!(sms_of(base().sms_consent(Some("unsubscribed"))), "unsubscribed");
    assert_eq!(sms_of(base().sms_consent(Some("pending"))), "pending");
    assert_eq!(sms_of(base().sms_consent(Some(" SUBSCRIBED "))), "subscribed");
    assert_eq!(sms_of(base().sms_consent(Some("redacted"))), "unknown");
    assert_eq!(sms_of(base().sms_consent(Some(""))), "unknown");
    // A null consent object, or none at all, says nothing; the legacy email flag does not apply to SMS.
    assert_eq!(sms_of(base().sms_consent(None)), "unknown");
    assert_eq!(sms_of(base().sms_consent(None).legacy_accepts_marketing(true)), "unknown");
    let mut body = fixtures::customer_json(&base().sms_consent(Some("subscribed")));
    body.as_object_mut().unwrap().remove("sms_marketing_consent");
    assert_eq!(
        outcome("customers/update", &fixtures::to_bytes(&body))["events"][0]["sms_consent"],
        "unknown"
    );
    body["sms_marketing_consent"] = json!({"state": null, "opt_in_level": null});
    assert_eq!(
        outcome("customers/update", &fixtures::to_bytes(&body))["events"][0]["sms_consent"],
        "unknown"
    );
    // The two channels are independent.
    let value = outcome(
        "customers/update",
        &base().consent(Some("unsubscribed")).sms_consent(Some("subscribed")).to_bytes(),
    );
    assert_eq!(value["events"][0]["email_consent"], "unsubscribed");
    assert_eq!(value["events"][0]["sms_consent"], "subscribed");
}

#[test]
fn an_order_or_checkout_customer_does_not_become_a_customer_event() {
    // Orders and checkouts name their customer only by id and email; tags and SMS consent reach the
    // state through customers/create and customers/update.
    let customer = CustomerFixture::new(880012, Some("lena@example.org"), at("2026-04-01T09:00:00Z"))
        .tags(&["vip"])
        .sms_consent(Some("subscribed"));
    let order = OrderFixture::new(450001, at("2026-05-01T12:00:00Z")).customer(customer.clone());
    let checkout = CheckoutFixture::new(3300002, at("2026-05-01T12:00:00Z")).customer(customer);
    for (topic, body) in [("orders/create", order.to_bytes()), ("checkouts/update", checkout.to_bytes())] {
        let value = outcome(topic, &body);
        let events = value["events"].as_array().unwrap();
        assert_eq!(events.len(), 1, "{value}");
        assert_ne!(events[0]["type"], "customer_upserted");
        assert_eq!(events[0]["customer"], "shopify:880012");
    }
}

#[test]
fn carts_take_their_currency_from_the_line_item_money_bags() {
    let cart = CartFixture::new("eeafa272cebfd4b22385bc4b645e762c", at("2026-05-01T12:00:00+02:00"))
        .currency("CAD")
        .line_item(LineItemFixture::new(9100000001, "Organic Tee", 1, "39.95"))
        .updated_at(at("2026-05-01T12:01:00+02:00"));
    check(
        "carts/update",
        &cart.to_bytes(),
        json!({"events": [{
            "type": "cart_upserted",
            "token": "eeafa272cebfd4b22385bc4b645e762c",
            "updated_at": "2026-05-01T10:01:00Z",
            "line_items": [{
                "product_id": "9100000001", "variant_id": "9101000001", "sku": "SKU-9100000001",
                "title": "Organic Tee", "quantity": 1, "price": {"amount": "39.95", "currency": "CAD"}
            }]
        }]}),
    );
    // An empty cart needs no currency at all.
    check(
        "carts/create",
        br#"{"id":"t1","token":"t1","line_items":[],"updated_at":"2026-05-01T10:00:00Z"}"#,
        json!({"events": [{"type": "cart_upserted", "token": "t1", "updated_at": "2026-05-01T10:00:00Z", "line_items": []}]}),
    );
}

#[test]
fn products_use_product_type_as_category() {
    let product = ProductFixture::new(9100000001, "Organic Tee", at("2026-03-01T08:00:00Z")).vendor("Acme");
    check(
        "products/create",
        &product.to_bytes(),
        json!({"events": [{
            "type": "product_upserted",
            "id": "9100000001",
            "title": "Organic Tee",
            "category": "Apparel",
            "vendor": "Acme",
            "updated_at": "2026-03-01T08:00:00Z",
            "url": format!("https://{SHOP}/products/organic-tee"),
            "price": "39.95",
            "available": true
        }]}),
    );
    let untyped = product.product_type(None);
    assert_eq!(fixtures::product_json(&untyped)["product_type"], "");
    assert_eq!(outcome("products/update", &untyped.to_bytes())["events"][0]["category"], json!(null));
}

#[test]
fn compliance_requests() {
    let guest = guest_customer_id("lena@example.org").to_string();
    check(
        "customers/data_request",
        &fixtures::to_bytes(&fixtures::customers_data_request_json(
            SHOP,
            880012,
            "lena@example.org",
            &[450001, 9007199254740993],
            9001,
        )),
        json!({"compliance": {
            "type": "customer_data_request",
            "shop": {"id": "70011", "domain": SHOP},
            "customer": {"id": "shopify:880012", "guest_id": guest, "email": "lena@example.org", "phone": "+4915112345678"},
            "orders_requested": ["450001", "9007199254740993"],
            "data_request_id": "9001"
        }}),
    );
    // The constructed customers/redact example from api-contracts §1.5, verbatim.
    check(
        "customers/redact",
        br#"{"shop_id": 70011, "shop_domain": "demo-store.myshopify.com",
             "customer": {"id": 880012, "email": "lena@example.org", "phone": "+4915112345678"},
             "orders_to_redact": [450001, 450002]}"#,
        json!({"compliance": {
            "type": "customer_redact",
            "shop": {"id": "70011", "domain": SHOP},
            "customer": {"id": "shopify:880012", "guest_id": guest, "email": "lena@example.org", "phone": "+4915112345678"},
            "orders_to_redact": ["450001", "450002"]
        }}),
    );
    check(
        "shop/redact",
        &fixtures::to_bytes(&fixtures::shop_redact_json(SHOP)),
        json!({"compliance": {"type": "shop_redact", "shop": {"id": "70011", "domain": SHOP}}}),
    );
}

#[test]
fn compliance_bodies_must_match_the_delivering_shop_and_name_a_customer() {
    check(
        "shop/redact",
        &fixtures::to_bytes(&fixtures::shop_redact_json("other-store.myshopify.com")),
        json!({"error": "shop/redact: the body is for shop `other-store.myshopify.com` but the delivery came from `demo-store.myshopify.com`"}),
    );
    check(
        "customers/redact",
        br#"{"shop_domain":"demo-store.myshopify.com","customer":{"phone":"+49"},"orders_to_redact":[]}"#,
        json!({"error": "customers/redact: field `customer`: the compliance request names neither `customer.id` nor `customer.email`"}),
    );
}

#[test]
fn unknown_topics_are_ignored_with_a_reason() {
    check(
        "app/uninstalled",
        b"not even json",
        json!({"ignored": "topic `app/uninstalled` is not one nudge handles; the body was not read"}),
    );
}

#[test]
fn errors_name_the_topic_and_the_field() {
    let cases: &[(&str, &str, &str)] = &[
        (
            "orders/create",
            r#"{"id":1,"created_at":"2026-05-01T10:00:00Z","currency":"USD","total_price":"5x"}"#,
            "orders/create: field `total_price`: `5x` is not a decimal",
        ),
        (
            "orders/create",
            r#"{"created_at":"2026-05-01T10:00:00Z","currency":"USD","total_price":"1"}"#,
            "orders/create: field `id`: required but missing or null",
        ),
        (
            "orders/updated",
            r#"{"id":1,"created_at":null,"currency":"USD","total_price":"1"}"#,
            "orders/updated: field `created_at`: required but missing or null",
        ),
        (
            "orders/create",
            r#"{"id":1,"created_at":"yesterday","currency":"USD","total_price":"1"}"#,
            "orders/create: field `created_at`: `yesterday` is not an RFC 3339 timestamp with an offset",
        ),
        (
            "orders/create",
            r#"{"id":1.5,"created_at":"2026-05-01T10:00:00Z"}"#,
            "orders/create: field `id`: `1.5` is not a positive 64-bit integer id",
        ),
        (
            "orders/create",
            r#"{"id":1,"created_at":"2026-05-01T10:00:00Z","total_price":"1"}"#,
            "orders/create: field `currency`: no currency: none of `currency`, `total_price_set.shop_money.currency_code`, `presentment_currency` or a line item's `price_set.shop_money.currency_code` is present",
        ),
        (
            "orders/create",
            r#"{"id":1,"created_at":"2026-05-01T10:00:00Z","total_price":"1","currency":"dollars"}"#,
            "orders/create: field `currency`: `dollars` is not a three-letter ISO 4217 currency code",
        ),
        (
            "orders/create",
            r#"{"id":1,"created_at":"2026-05-01T10:00:00Z","total_price":"1","currency":"USD","line_items":[{"title":"a","quantity":1,"price":"1"},{"title":"b","quantity":-1,"price":"1"}]}"#,
            "orders/create: field `line_items[1].quantity`: `-1` is not a quantity (a whole number from 0 to 4294967295)",
        ),
        (
            "orders/create",
            r#"{"id":1,"created_at":"2026-05-01T10:00:00Z","total_price":"1","currency":"USD","customer":"ada"}"#,
            "orders/create: field `customer`: expected an object, found the string \"ada\"",
        ),
        (
            "orders/create",
            r#"{"id":1,"created_at":"2026-05-01T10:00:00Z","total_price":"1","currency":"USD","customer":{"id":"x9"}}"#,
            "orders/create: field `customer.id`: `x9` is not a positive 64-bit integer id",
        ),
        (
            "orders/create",
            r#"{"id":1,"created_at":"2026-05-01T10:00:00Z","total_price":"1","currency":"USD","email":42}"#,
            "orders/create: field `email`: expected a string, found the number 42",
        ),
        (
            "checkouts/create",
            r#"{"token":"","created_at":"2026-05-01T10:00:00Z"}"#,
            "checkouts/create: field `token`: an empty string is not a usable value here",
        ),
        (
            "customers/update",
            r#"{"id":5}"#,
            "customers/update: field `updated_at`: required but missing or null",
        ),
        (
            "customers/update",
            r#"{"id":5,"updated_at":"2026-05-01T10:00:00Z","email_marketing_consent":{"state":true}}"#,
            "customers/update: field `email_marketing_consent.state`: expected a string, found true",
        ),
        (
            "customers/update",
            r#"{"id":5,"updated_at":"2026-05-01T10:00:00Z","tags":["vip"]}"#,
            "customers/update: field `tags`: expected a string, found an array",
        ),
        (
            "customers/update",
            r#"{"id":5,"updated_at":"2026-05-01T10:00:00Z","sms_marketing_consent":"subscribed"}"#,
            "customers/update: field `sms_marketing_consent`: expected an object, found the string \"subscribed\"",
        ),
        (
            "customers/update",
            r#"{"id":5,"updated_at":"2026-05-01T10:00:00Z","sms_marketing_consent":{"state":1}}"#,
            "customers/update: field `sms_marketing_consent.state`: expected a string, found the number 1",
        ),
        (
            "products/create",
            r#"{"id":5,"updated_at":"2026-05-01T10:00:00Z"}"#,
            "products/create: field `title`: required but missing or null",
        ),
        (
            "carts/create",
            r#"{"token":"t","updated_at":"2026-05-01T10:00:00Z","line_items":[{"title":"a","quantity":1,"price":"1"}]}"#,
            "carts/create: field `currency`: no currency: none of `currency`, `total_price_set.shop_money.currency_code`, `presentment_currency` or a line item's `price_set.shop_money.currency_code` is present",
        ),
        (
            "orders/create",
            r#"{"id": 1,,}"#,
            "orders/create: invalid JSON at line 1 column 10: key must be a string",
        ),
        (
            "orders/create",
            r#"[1, 2]"#,
            "orders/create: expected a JSON object at the top level, found an array",
        ),
        ("orders/create", "  \n", "orders/create: the body is empty"),
    ];
    for (topic, body, message) in cases {
        check(topic, body.as_bytes(), json!({ "error": message }));
    }
}

#[test]
fn invalid_utf8_is_reported_as_invalid_json() {
    let body = b"{\"id\": \"\xff\"}";
    let error = outcome("orders/create", body)["error"].as_str().unwrap().to_string();
    assert!(error.starts_with("orders/create: invalid JSON at line 1 column "), "{error}");
}

#[test]
fn case_13_updated_at_is_normalised_to_utc_so_staleness_compares_across_offsets() {
    let created = at("2026-05-01T12:00:00+02:00");
    let newer = OrderFixture::new(1, created).updated_at(at("2026-05-01T06:30:00-04:00")).total("1.00");
    let older = OrderFixture::new(1, created).updated_at(at("2026-05-01T12:15:00+02:00")).total("1.00");
    let updated_at = |o: &OrderFixture| match normalize(&Topic::OrdersUpdated, SHOP, &o.to_bytes()).unwrap() {
        Normalized::Events(e) => match &e[0] {
            Event::OrderUpserted(o) => o.updated_at,
            other => panic!("{other:?}"),
        },
        other => panic!("{other:?}"),
    };
    assert!(updated_at(&newer) > updated_at(&older));
    assert_eq!(updated_at(&newer).offset(), time::UtcOffset::UTC);
    // A missing `updated_at` falls back to `created_at`, never to "now".
    let mut body = fixtures::order_json(&newer);
    body.as_object_mut().unwrap().remove("updated_at");
    let value = outcome("orders/updated", &fixtures::to_bytes(&body));
    assert_eq!(value["events"][0]["updated_at"], "2026-05-01T10:00:00Z");
}

#[test]
fn case_14_updated_before_create_is_the_same_upsert() {
    let order = OrderFixture::new(77, at("2026-05-01T12:00:00Z")).total("10.00");
    let updated = outcome("orders/updated", &order.to_bytes());
    let created = outcome("orders/create", &order.to_bytes());
    assert_eq!(updated, created);
    assert_eq!(updated["events"][0]["type"], "order_upserted");
}

#[test]
fn case_15_ids_above_2_pow_53_round_trip_exactly() {
    let big = 9007199254740993_u64;
    let order = OrderFixture::new(big, at("2026-05-01T12:00:00Z"))
        .customer(CustomerFixture::new(big, Some("a@example.org"), at("2026-05-01T12:00:00Z")))
        .line_item(LineItemFixture::new(big, "Tee", 1, "1.00").variant(u64::MAX));
    // The fixture really emits the integer, not a rounded float.
    let body = order.to_bytes();
    assert!(String::from_utf8_lossy(&body).contains("\"id\":9007199254740993,"));
    let value = outcome("orders/create", &body);
    let event = &value["events"][0];
    assert_eq!(event["id"], "9007199254740993");
    assert_eq!(event["customer"], "shopify:9007199254740993");
    assert_eq!(event["line_items"][0]["product_id"], "9007199254740993");
    assert_eq!(event["line_items"][0]["variant_id"], "18446744073709551615");

    // Hand-written bodies with the big ids as numbers and as strings agree.
    let as_number = br#"{"id":9007199254740993,"created_at":"2026-05-01T12:00:00Z","currency":"USD","total_price":"1","customer":{"id":9007199254740993}}"#;
    let as_string = br#"{"id":"9007199254740993","created_at":"2026-05-01T12:00:00Z","currency":"USD","total_price":"1","customer":{"id":"9007199254740993"}}"#;
    assert_eq!(outcome("orders/create", as_number), outcome("orders/create", as_string));
    let value =
        outcome("customers/create", br#"{"id":9007199254740993,"updated_at":"2026-05-01T12:00:00Z"}"#);
    assert_eq!(value["events"][0]["id"], "shopify:9007199254740993");
}

#[test]
fn case_16_money_is_exact_and_currency_has_fallbacks() {
    let order = OrderFixture::new(5551234567, at("2026-05-01T12:00:00Z")).total("59.97").currency("USD");
    let Normalized::Events(events) = normalize(&Topic::OrdersCreate, SHOP, &order.to_bytes()).unwrap() else {
        panic!()
    };
    let Event::OrderUpserted(o) = &events[0] else { panic!() };
    assert_eq!(o.total.amount, rust_decimal::Decimal::new(5997, 2));
    assert_eq!(o.total.amount.to_string(), "59.97");
    assert_eq!(o.total.currency.as_str(), "USD");

    let base = |extra: serde_json::Value| {
        let mut body = json!({"id": 1, "created_at": "2026-05-01T12:00:00Z", "total_price": "0.10"});
        body.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        outcome("orders/create", &fixtures::to_bytes(&body))["events"][0]["total"].clone()
    };
    assert_eq!(base(json!({"currency": "eur"})), json!({"amount": "0.10", "currency": "EUR"}));
    assert_eq!(base(json!({"presentment_currency": "GBP"})), json!({"amount": "0.10", "currency": "GBP"}));
    assert_eq!(
        base(
            json!({"presentment_currency": "GBP", "total_price_set": {"shop_money": {"amount": "0.10", "currency_code": "CHF"}}})
        ),
        json!({"amount": "0.10", "currency": "CHF"})
    );
    assert_eq!(
        base(json!({"currency": "SEK", "presentment_currency": "GBP"})),
        json!({"amount": "0.10", "currency": "SEK"})
    );
    // A JSON number amount is taken by its exact text, not through a float.
    let value = outcome(
        "orders/create",
        br#"{"id":1,"created_at":"2026-05-01T12:00:00Z","currency":"USD","total_price":0.1}"#,
    );
    assert_eq!(value["events"][0]["total"]["amount"], "0.1");
    // Without `total_price`, the shop-money bag supplies the amount.
    let value = outcome(
        "orders/create",
        br#"{"id":1,"created_at":"2026-05-01T12:00:00Z","total_price_set":{"shop_money":{"amount":"84.90","currency_code":"EUR"}}}"#,
    );
    assert_eq!(value["events"][0]["total"], json!({"amount": "84.90", "currency": "EUR"}));
}

#[test]
fn case_17_unknown_fields_are_accepted() {
    let order =
        OrderFixture::new(1, at("2026-05-01T12:00:00Z")).line_item(LineItemFixture::new(2, "Tee", 1, "5.00"));
    let plain = outcome("orders/create", &order.to_bytes());

    let mut body = fixtures::order_json(&order);
    body["brand_new_field"] = json!({"nested": [1, 2, {"deep": null}]});
    body["line_items"][0]["future_flag"] = json!(true);
    body["customer_journey_summary"] = json!(null);
    body["total_price_set"]["shop_money"]["extra"] = json!("x");
    let extended = outcome("orders/create", &fixtures::to_bytes(&body));
    assert_eq!(extended, plain);
    assert!(plain.get("events").is_some(), "{plain}");
}
