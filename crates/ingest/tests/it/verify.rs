//! Signature and header contract: api-contracts §1.3 vector and §8 cases 1–9.

use super::SHOP;
use nudge_ingest::shopify::fixtures::{self, DeliveryFixture};
use nudge_ingest::shopify::sign;
use nudge_ingest::{Headers, Normalized, Topic, VerifyError, normalize, verify};

const SECRET: &str = "test_client_secret_123";
const BODY: &[u8] = br#"{"id":5551234567,"email":"ada@example.com","total_price":"59.97","currency":"USD"}"#;
const GOOD: &str = "Kx9xOYmfbf/hb4mq1iL+lZJskmKNJdUqfkxRSzZsSUs=";

fn headers_with(hmac: &str) -> Headers {
    Headers::from_pairs([
        ("X-Shopify-Hmac-Sha256", hmac),
        ("X-Shopify-Topic", "orders/create"),
        ("X-Shopify-Shop-Domain", SHOP),
        ("X-Shopify-API-Version", "2026-07"),
        ("X-Shopify-Webhook-Id", "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043"),
        ("X-Shopify-Event-Id", "98880550-7158-44d4-b7cd-2c97c8a091b5"),
        ("X-Shopify-Triggered-At", "2026-05-01T10:00:00.000Z"),
    ])
}

fn secrets(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

#[test]
fn case_1_worked_vector_is_accepted_over_the_exact_bytes() {
    assert_eq!(sign(SECRET, BODY), GOOD);
    let meta = verify(&headers_with(GOOD), BODY, &secrets(&[SECRET])).unwrap();
    assert_eq!(meta.topic, Topic::OrdersCreate);
    assert_eq!(meta.shop_domain, SHOP);
    assert_eq!(meta.api_version.as_deref(), Some("2026-07"));
    assert_eq!(meta.webhook_id, "b54557e4-bdd9-4b37-8a5f-bf7d70bcd043");
    assert_eq!(meta.event_id.as_deref(), Some("98880550-7158-44d4-b7cd-2c97c8a091b5"));
    assert_eq!(meta.triggered_at, Some(time::macros::datetime!(2026-05-01 10:00 UTC)));
    assert_eq!(meta.subscription_name, None);
}

#[test]
fn case_2_a_trailing_newline_breaks_the_signature_both_ways() {
    let with_newline = [BODY, b"\n"].concat();
    let err = verify(&headers_with(GOOD), &with_newline, &secrets(&[SECRET])).unwrap_err();
    assert_eq!(err, VerifyError::BadSignature);
    assert_eq!(err.http_status(), 401);

    // The signature of the body with a newline, presented with the newline stripped.
    let newline_sig = "wAx6wSGWlHBI/r+14fG6Ve/UTmlCyzimUJ2wqHUeTis=";
    assert_eq!(sign(SECRET, &with_newline), newline_sig);
    assert_eq!(verify(&headers_with(newline_sig), BODY, &secrets(&[SECRET])), Err(VerifyError::BadSignature));
    assert!(verify(&headers_with(newline_sig), &with_newline, &secrets(&[SECRET])).is_ok());
}

#[test]
fn case_3_hex_encoding_of_the_right_mac_is_rejected() {
    let hex = "2b1f7139899f6dffe16f89aad622fe95926c92628d25d52a7e4c514b366c494b";
    assert_eq!(verify(&headers_with(hex), BODY, &secrets(&[SECRET])), Err(VerifyError::BadSignature));
    assert_eq!(
        verify(&headers_with(&hex.to_uppercase()), BODY, &secrets(&[SECRET])),
        Err(VerifyError::BadSignature)
    );
}

#[test]
fn case_4_a_reserialised_body_fails_so_raw_bytes_are_what_is_verified() {
    // The same JSON written with spaces, as a parse-then-serialise step would produce.
    let respaced: &[u8] =
        br#"{"id": 5551234567, "email": "ada@example.com", "total_price": "59.97", "currency": "USD"}"#;
    assert_eq!(sign(SECRET, respaced), "ZrZJH/U6S3htzW/WJfjKseg9D01aPdxROOgE8vesJiQ=");
    assert_eq!(verify(&headers_with(GOOD), respaced, &secrets(&[SECRET])), Err(VerifyError::BadSignature));

    // And the compact re-serialisation, which reorders keys, fails as well.
    let value: serde_json::Value = serde_json::from_slice(BODY).unwrap();
    let reordered = serde_json::to_vec(&value).unwrap();
    assert_ne!(reordered, BODY);
    assert_eq!(verify(&headers_with(GOOD), &reordered, &secrets(&[SECRET])), Err(VerifyError::BadSignature));
}

#[test]
fn case_5_header_names_are_case_insensitive() {
    for transform in [str::to_ascii_lowercase as fn(&str) -> String, str::to_ascii_uppercase] {
        let headers: Headers = headers_with(GOOD).iter().map(|(n, v)| (transform(n), v.to_vec())).collect();
        let meta = verify(&headers, BODY, &secrets(&[SECRET])).unwrap();
        assert_eq!(meta.topic, Topic::OrdersCreate);
    }
    let lower = Headers::from_pairs([
        ("x-shopify-hmac-sha256", GOOD),
        ("x-shopify-topic", "orders/create"),
        ("x-shopify-shop-domain", SHOP),
        ("x-shopify-webhook-id", "w-1"),
    ]);
    assert!(verify(&lower, BODY, &secrets(&[SECRET])).is_ok());
}

#[test]
fn case_6_missing_signature_and_empty_body_are_401_not_500() {
    let without: Headers = headers_with(GOOD).iter().filter(|(n, _)| !n.contains("hmac")).collect();
    let err = verify(&without, BODY, &secrets(&[SECRET])).unwrap_err();
    assert_eq!(err, VerifyError::MissingSignature);
    assert_eq!(err.http_status(), 401);

    let err = verify(&headers_with(GOOD), b"", &secrets(&[SECRET])).unwrap_err();
    assert_eq!(err, VerifyError::EmptyBody);
    assert_eq!(err.http_status(), 401);

    let err = verify(&headers_with(""), BODY, &secrets(&[SECRET])).unwrap_err();
    assert_eq!(err, VerifyError::BadSignature);
}

#[test]
fn required_headers_are_named_when_missing_and_the_api_version_is_optional() {
    for (name, expected) in [
        ("x-shopify-topic", "X-Shopify-Topic"),
        ("x-shopify-shop-domain", "X-Shopify-Shop-Domain"),
        ("x-shopify-webhook-id", "X-Shopify-Webhook-Id"),
    ] {
        let headers: Headers = headers_with(GOOD).iter().filter(|(n, _)| *n != name).collect();
        let err = verify(&headers, BODY, &secrets(&[SECRET])).unwrap_err();
        assert_eq!(err, VerifyError::MissingHeader(expected));
        assert_eq!(err.http_status(), 401);
        assert_eq!(err.to_string(), format!("the required `{expected}` header is missing or empty"));
    }
    let headers: Headers = headers_with(GOOD).iter().filter(|(n, _)| *n != "x-shopify-api-version").collect();
    assert_eq!(verify(&headers, BODY, &secrets(&[SECRET])).unwrap().api_version, None);
}

#[test]
fn the_signature_is_checked_before_other_headers_are_reported() {
    let headers = Headers::from_pairs([("X-Shopify-Hmac-Sha256", "AAAA")]);
    assert_eq!(verify(&headers, BODY, &secrets(&[SECRET])), Err(VerifyError::BadSignature));
}

#[test]
fn case_7_compliance_topics_are_401_on_a_bad_signature_and_accepted_on_a_good_one() {
    let bodies = [
        (
            "customers/data_request",
            fixtures::customers_data_request_json(SHOP, 880012, "lena@example.org", &[450001], 9001),
        ),
        (
            "customers/redact",
            fixtures::customers_redact_json(SHOP, 880012, "lena@example.org", &[450001, 450002]),
        ),
        ("shop/redact", fixtures::shop_redact_json(SHOP)),
    ];
    for (topic, body) in bodies {
        let body = fixtures::to_bytes(&body);
        let delivery =
            DeliveryFixture::new(topic, "w-compliance", time::macros::datetime!(2026-05-01 10:00 UTC));

        let forged = Headers::from_pairs(delivery.https_headers(&body, "not-the-secret"));
        let err = verify(&forged, &body, &secrets(&[SECRET])).unwrap_err();
        assert_eq!(err.http_status(), 401, "{topic}");

        let genuine = Headers::from_pairs(delivery.https_headers(&body, SECRET));
        let meta = verify(&genuine, &body, &secrets(&[SECRET])).unwrap();
        assert!(meta.topic.is_compliance());
        let normalized = normalize(&meta.topic, &meta.shop_domain, &body).unwrap();
        assert!(matches!(normalized, Normalized::Compliance(_)), "{topic}: {normalized:?}");
    }
}

#[test]
fn case_8_both_secrets_verify_during_rotation_and_only_configured_ones_after() {
    let (old, new) = ("old_client_secret", "new_client_secret");
    let during = secrets(&[new, old]);
    let by_old = sign(old, BODY);
    let by_new = sign(new, BODY);
    assert_eq!(verify(&headers_with(&by_new), BODY, &during).unwrap().matched_secret, Some(0));
    assert_eq!(verify(&headers_with(&by_old), BODY, &during).unwrap().matched_secret, Some(1));

    let after = secrets(&[new]);
    assert!(verify(&headers_with(&by_new), BODY, &after).is_ok());
    assert_eq!(verify(&headers_with(&by_old), BODY, &after), Err(VerifyError::BadSignature));

    let stranger = sign("someone_elses_secret", BODY);
    assert_eq!(verify(&headers_with(&stranger), BODY, &during), Err(VerifyError::BadSignature));

    // Blank entries in the configuration are never used as keys.
    let empty_key_sig = sign("", BODY);
    assert_eq!(
        verify(&headers_with(&empty_key_sig), BODY, &secrets(&["", new])),
        Err(VerifyError::BadSignature)
    );
    assert_eq!(verify(&headers_with(&by_new), BODY, &secrets(&[""])), Err(VerifyError::NoSecretsConfigured));
}

/// The comparison itself is `hmac::Mac::verify_slice`, which is constant-time (via `subtle`) and demands
/// the full 32-byte length; timing is not measured here because it would be flaky. What is checked is
/// that near-misses are refused like any other wrong signature.
#[test]
fn case_9_near_miss_signatures_are_refused() {
    use base64::Engine as _;
    let engine = base64::engine::general_purpose::STANDARD;
    let mac = engine.decode(GOOD).unwrap();

    let mut last_byte_wrong = mac.clone();
    *last_byte_wrong.last_mut().unwrap() ^= 1;
    let truncated = &mac[..16];
    let extended = [mac.as_slice(), &[0]].concat();
    for candidate in [last_byte_wrong.as_slice(), truncated, extended.as_slice()] {
        let sig = engine.encode(candidate);
        assert_eq!(verify(&headers_with(&sig), BODY, &secrets(&[SECRET])), Err(VerifyError::BadSignature));
    }
    // Unpadded base64 of the right MAC is not standard base64 either.
    let unpadded = GOOD.trim_end_matches('=');
    assert_eq!(verify(&headers_with(unpadded), BODY, &secrets(&[SECRET])), Err(VerifyError::BadSignature));
}

#[test]
fn an_unknown_topic_verifies_and_is_then_ignored() {
    let headers: Headers = headers_with(GOOD)
        .iter()
        .map(|(n, v)| {
            if n == "x-shopify-topic" {
                (n.to_string(), b"app/uninstalled".to_vec())
            } else {
                (n.to_string(), v.to_vec())
            }
        })
        .collect();
    let meta = verify(&headers, BODY, &secrets(&[SECRET])).unwrap();
    assert_eq!(meta.topic, Topic::Unknown("app/uninstalled".into()));
    assert!(matches!(normalize(&meta.topic, SHOP, BODY).unwrap(), Normalized::Ignored { .. }));
}
