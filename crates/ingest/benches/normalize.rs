//! Normalisation cost per webhook body: `cargo bench -p nudge-ingest --bench normalize [-- --rounds N]`.
//!
//! Times `normalize` on an `orders/create` body like the ones the spine benchmark sends (about 5 KB: a
//! customer with addresses, a line item, tax and shipping lines), and, as the reference, parsing the
//! same body into a whole `serde_json::Value` tree, which is what normalisation did before it pruned.
//! Prints the median and the spread over the rounds, in microseconds per body.

use nudge_ingest::shopify::fixtures::{CustomerFixture, LineItemFixture, OrderFixture, order_json, to_bytes};
use nudge_ingest::{Normalized, Topic};
use std::hint::black_box;
use std::time::Instant;

const PER_ROUND: u32 = 20_000;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    let rounds: usize = match args.as_slice() {
        [] => 9,
        [flag, n] if flag == "--rounds" => n.parse().expect("--rounds takes a number"),
        other => panic!("usage: normalize [--rounds N], not {other:?}"),
    };
    let at = time::OffsetDateTime::now_utc();
    let customer = CustomerFixture::new(1_000_123, Some("b123@example.org"), at);
    let order = OrderFixture::new(5_000_000_123, at).customer(customer).line_item(LineItemFixture::new(
        9_100_000_000,
        "Item",
        1,
        "25.00",
    ));
    let body = to_bytes(&order_json(&order));
    let topic = Topic::parse("orders/create");
    assert!(matches!(nudge_ingest::normalize(&topic, "s.myshopify.com", &body), Ok(Normalized::Events(_))));

    let time = |f: &dyn Fn()| -> Vec<f64> {
        (0..rounds)
            .map(|_| {
                let t = Instant::now();
                for _ in 0..PER_ROUND {
                    f();
                }
                t.elapsed().as_secs_f64() * 1e6 / f64::from(PER_ROUND)
            })
            .collect()
    };
    let report = |name: &str, mut v: Vec<f64>| {
        v.sort_by(f64::total_cmp);
        println!(
            "{name}: median {:.2} µs per body (min {:.2}, max {:.2}; {rounds} rounds of {PER_ROUND})",
            v[v.len() / 2],
            v[0],
            v[v.len() - 1]
        );
    };
    println!("body: {} bytes, orders/create with a customer and one line item", body.len());
    report(
        "normalize (pruned parse + typed read)",
        time(&|| {
            black_box(nudge_ingest::normalize(&topic, "s.myshopify.com", black_box(&body)).ok());
        }),
    );
    report(
        "reference: whole serde_json::Value tree, parse only",
        time(&|| {
            black_box(serde_json::from_slice::<serde_json::Value>(black_box(&body)).ok());
        }),
    );
}
