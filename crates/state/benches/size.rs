//! Size and speed of the stored state encodings, on states shaped like a real store's.
//!
//! `cargo bench -p nudge-state --bench size [-- CUSTOMERS]` prints, per shape, the average bytes of a
//! state as JSON (the legacy form), in the compact encoding, and in the compact encoding forced through
//! LZ4, with the encode and decode time per state. Shapes:
//! - `imported`: what a history import leaves: about five orders a customer (dates only, a total, a
//!   derived order id), no line items, no profile.
//! - `webhook`: a customer record (email, name, consent, tags) and about five orders of one to three
//!   line items with product ids and titles, from the commerce platform's webhooks.

use nudge_model::{Customer, CustomerId, Event, LineItem, MarketingConsent, Money, Order};
use nudge_state::CustomerState;
use std::hint::black_box;
use std::time::Instant;

/// A small deterministic generator (splitmix64), so runs compare.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn hex(&mut self, digits: usize) -> String {
        (0..digits).map(|_| char::from_digit(self.below(16) as u32, 16).unwrap()).collect()
    }
}

const TITLES: &[&str] = &[
    "Linen shirt",
    "Organic cotton tee",
    "Merino crew sweater",
    "Canvas tote bag",
    "Ceramic pour-over set",
    "Waxed cotton jacket",
    "Wool socks (3 pack)",
    "Leather card holder",
];

fn order_count(rng: &mut Rng) -> usize {
    // Mean about 5.2, as in the imported store (5.18M orders over 1M customers).
    1 + rng.below(9) as usize + usize::from(rng.below(5) == 0)
}

fn order(
    rng: &mut Rng,
    customer: &CustomerId,
    id: String,
    day: i64,
    items: Vec<LineItem>,
    midnight: bool,
) -> Order {
    let base = time::macros::datetime!(2021-01-01 00:00 UTC) + time::Duration::days(day);
    let at = if midnight { base } else { base + time::Duration::seconds(rng.below(86_400) as i64) };
    let cents = 1_000 + rng.below(20_000);
    Order {
        id,
        name: None,
        customer: Some(customer.clone()),
        email: None,
        created_at: at,
        updated_at: if midnight { at } else { at + time::Duration::seconds(rng.below(3_600) as i64) },
        cancelled_at: None,
        total: Money::parse(&format!("{}.{:02}", cents / 100, cents % 100), "USD").unwrap(),
        financial_status: None,
        line_items: items,
        checkout_token: None,
        cart_token: None,
        accepts_marketing: None,
    }
}

fn imported(rng: &mut Rng, i: u64) -> CustomerState {
    let customer: CustomerId = format!("shopify:{}", 6_000_000_000_000 + i).parse().unwrap();
    let mut s = CustomerState::new(customer.clone());
    for _ in 0..order_count(rng) {
        let id = format!("h-{}", rng.hex(20));
        let day = rng.below(1_500) as i64;
        let o = order(rng, &customer, id, day, Vec::new(), true);
        s.apply(&Event::OrderUpserted(o));
    }
    s
}

fn webhook(rng: &mut Rng, i: u64) -> CustomerState {
    let customer: CustomerId = format!("shopify:{}", 7_000_000_000_000 + i).parse().unwrap();
    let mut s = CustomerState::new(customer.clone());
    s.apply(&Event::CustomerUpserted(Customer {
        id: customer.clone(),
        email: Some(format!("customer{i}@example.com")),
        first_name: Some("Alexandra".into()),
        last_name: Some("Johnson".into()),
        created_at: Some(time::macros::datetime!(2020-12-01 10:00 UTC)),
        updated_at: time::macros::datetime!(2021-01-01 10:00 UTC),
        email_consent: MarketingConsent::Subscribed,
        tags: ["newsletter", "vip", "wholesale"][..1 + rng.below(3) as usize]
            .iter()
            .map(|t| t.to_string())
            .collect(),
        sms_consent: MarketingConsent::NotSubscribed,
    }));
    for _ in 0..order_count(rng) {
        let items = (0..1 + rng.below(3))
            .map(|_| {
                let p = rng.below(TITLES.len() as u64);
                LineItem {
                    product_id: Some(format!("{}", 7_890_123_456 + p)),
                    variant_id: Some(format!("{}", 41_234_567_890_123 + p)),
                    sku: None,
                    title: TITLES[p as usize].to_string(),
                    quantity: 1 + rng.below(2) as u32,
                    price: Money::parse("39.95", "USD").unwrap(),
                }
            })
            .collect();
        let id = format!("{}", 5_000_000_000_000 + rng.below(1_000_000_000));
        let day = rng.below(1_500) as i64;
        let o = order(rng, &customer, id, day, items, false);
        s.apply(&Event::OrderUpserted(o));
    }
    s
}

fn measure(name: &str, states: &[CustomerState]) {
    let n = states.len() as f64;
    let t = Instant::now();
    let json: Vec<Vec<u8>> = states.iter().map(|s| black_box(serde_json::to_vec(s).unwrap())).collect();
    let json_encode_us = t.elapsed().as_secs_f64() * 1e6 / n;
    let t = Instant::now();
    let compact: Vec<Vec<u8>> = states.iter().map(|s| black_box(s.encode())).collect();
    let encode_us = t.elapsed().as_secs_f64() * 1e6 / n;
    let t = Instant::now();
    for b in &compact {
        black_box(CustomerState::decode(b).unwrap());
    }
    let decode_us = t.elapsed().as_secs_f64() * 1e6 / n;
    let t = Instant::now();
    for b in &json {
        black_box(CustomerState::decode(b).unwrap());
    }
    let json_decode_us = t.elapsed().as_secs_f64() * 1e6 / n;
    let lz4: usize = compact.iter().map(|b| 1 + lz4_flex::block::compress_prepend_size(&b[1..]).len()).sum();
    let avg = |v: &[Vec<u8>]| v.iter().map(Vec::len).sum::<usize>() as f64 / n;
    let orders = states.iter().map(|s| s.orders.len()).sum::<usize>() as f64 / n;
    println!(
        "{name:<9} {:>7} states, {orders:.2} orders each: JSON {:>6.0} B, compact {:>5.0} B, compact+LZ4 {:>5.0} B; \
         encode {encode_us:.2} µs, decode {decode_us:.2} µs (JSON: {json_encode_us:.2} µs, {json_decode_us:.2} µs)",
        states.len(),
        avg(&json),
        avg(&compact),
        lz4 as f64 / n,
    );
}

fn main() {
    let customers: u64 = std::env::args().skip(1).find_map(|a| a.parse().ok()).unwrap_or(100_000);
    let mut rng = Rng(42);
    let states: Vec<CustomerState> = (0..customers).map(|i| imported(&mut rng, i)).collect();
    measure("imported", &states);
    let states: Vec<CustomerState> = (0..customers).map(|i| webhook(&mut rng, i)).collect();
    measure("webhook", &states);
}
