//! Shopify over HTTPS through the source compliance suite.

use crate::source_suite::{Request, SourceHarness, run_suite};
use nudge_ingest::shopify::ShopifySource;
use nudge_ingest::shopify::fixtures::{CustomerFixture, DeliveryFixture, LineItemFixture, OrderFixture};
use nudge_ingest::source::Source;
use std::sync::Arc;
use time::macros::datetime;

pub const SECRET: &str = "shpss_suite_secret";

struct Shopify;

pub fn order(n: u32) -> OrderFixture {
    OrderFixture::new(5_000 + u64::from(n), datetime!(2026-05-01 10:00 UTC))
        .customer(CustomerFixture::new(
            7_000 + u64::from(n),
            Some("ana@example.com"),
            datetime!(2026-04-01 9:00 UTC),
        ))
        .line_item(LineItemFixture::new(1, "Mug", 1, "12.50"))
}

pub fn delivery(n: u32) -> DeliveryFixture {
    DeliveryFixture::new("orders/create", &format!("wh-{n}"), datetime!(2026-05-01 10:00 UTC))
}

pub fn request(d: &DeliveryFixture, body: Vec<u8>, secret: &str) -> Request {
    Request { headers: d.https_headers(&body, secret), body }
}

impl SourceHarness for Shopify {
    fn source(&self) -> Arc<dyn Source> {
        Arc::new(ShopifySource::new(vec![SECRET.into()]))
    }
    fn genuine(&self, n: u32, _now_ms: i64) -> Request {
        request(&delivery(n), order(n).to_bytes(), SECRET)
    }
    fn retry(&self, n: u32, _now_ms: i64) -> Request {
        // Shopify retries with the same webhook id.
        request(&delivery(n), order(n).to_bytes(), SECRET)
    }
    fn wrongly_signed(&self, n: u32, _now_ms: i64) -> Request {
        request(&delivery(n), order(n).to_bytes(), "another-secret")
    }
    fn unsigned(&self, n: u32, now_ms: i64) -> Request {
        let mut r = self.genuine(n, now_ms);
        r.headers.retain(|(k, _)| !k.eq_ignore_ascii_case("x-shopify-hmac-sha256"));
        r
    }
    fn stale(&self, _n: u32, _now_ms: i64) -> Option<Request> {
        None
    }
    fn signed(&self, body: &[u8], _now_ms: i64) -> Request {
        request(&delivery(99), body.to_vec(), SECRET)
    }
    fn order_versions(&self) -> [(String, Vec<u8>); 2] {
        order_versions()
    }
}

/// An older and a newer `orders/updated` body of one order: the same whatever transport brought them.
pub fn order_versions() -> [(String, Vec<u8>); 2] {
    let older = order(1).financial_status("pending").updated_at(datetime!(2026-05-01 10:00 UTC));
    let newer = order(1).financial_status("paid").updated_at(datetime!(2026-05-01 11:00 UTC));
    [("orders/updated".into(), older.to_bytes()), ("orders/updated".into(), newer.to_bytes())]
}

#[test]
fn shopify_passes_the_source_suite() {
    run_suite(&Shopify);
}
