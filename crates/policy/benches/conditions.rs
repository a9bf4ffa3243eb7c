//! Flow-condition cost per event: `cargo bench -p nudge-policy --bench conditions [-- --events N]`.
//!
//! 50 flows' conditions of the kinds marketers write (consent, score thresholds, segments, tags, order
//! history with `has()` guards, timestamps, a loop over tags), compiled once. Per event it times:
//! - `facts`: building the `Facts` of one event (what the pipeline would do from the event, state and
//!   scores);
//! - `prepare`: turning them into interpreter values, once per event;
//! - `eval 50` / `eval 10`: evaluating all 50 conditions, or the 10 of the flows one trigger matches,
//!   against the prepared facts;
//! - `event 50` / `event 10`: prepare + evaluate, the per-event cost of the decision's conditions;
//! - `unprepared 50`: `Condition::eval` on each, which prepares the facts again every time;
//! - `decide mixed`: `FlowSet::decide` with 50 flows configured over mixed triggers (the 10 above on
//!   `checkout_abandoned`, one profile sync on `state_changed`, the others on order, customer, score and
//!   checkout triggers; holdouts, caps, baselines, actions with CEL properties) for one abandoned checkout:
//!   what the pipeline runs per event (facts, preparation, the triggered flows' conditions and checks,
//!   their actions built);
//! - `decide all 50`: the same with every one of the 50 flows on `checkout_abandoned`, the worst case.
//!
//! Allocates with mimalloc, as the nudge binary does. Each event is timed on its own, in 5 rounds of N
//! events (default 10,000); prints the median and the 90th percentile in microseconds of the round with
//! the lowest median (the machine may be shared). `--only ROW` times one row (for a profiler).

use nudge_model::{
    Checkout, CheckoutAbandoned, CustomerId, Event, MarketingConsent, Money, Order, Score, ScoreSet, Segment,
};
use nudge_policy::PolicyConfig;
use nudge_policy::condition::{Condition, FactValue, Facts, Schema};
use nudge_policy::flows::{DecideContext, FlowHistory, FlowSet, FlowSpec, Trigger, no_approvals};
use nudge_state::CustomerState;
use std::hint::black_box;
use std::time::Instant;
use time::macros::datetime;

/// The nudge binary's allocator: the interpreter allocates a little for most operations.
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

const CONDITIONS: [&str; 50] = [
    "scores.churn_risk >= 60.0 && customer.email_consent",
    "scores.churn_risk >= 75.0 && customer.sms_consent",
    "scores.segment == \"at_risk\" && customer.orders_count >= 2",
    "scores.segment in [\"at_risk\", \"hibernating\"] && customer.email_consent",
    "scores.p_alive < 0.3 && customer.total_spent > 200.0",
    "scores.predicted_clv > 500.0 && !(\"vip\" in customer.tags)",
    "\"vip\" in customer.tags && customer.email_consent",
    "has(customer.last_order_at) && customer.days_since_last_order > 90.0 && customer.email_consent",
    "has(customer.last_order_at) && customer.days_since_last_order > 180.0 && scores.p_alive > 0.1",
    "customer.orders_count == 1 && has(customer.first_order_at) && customer.days_since_last_order > 30.0",
    "customer.orders_count == 0 && customer.email_consent",
    "customer.orders_count >= 5 && customer.aov > 80.0",
    "customer.total_spent / double(customer.orders_count) > 60.0 && customer.orders_count > 0",
    "event.kind == \"checkout_abandoned\" && event.value >= 50.0 && customer.email_consent",
    "event.kind == \"checkout_abandoned\" && event.value >= 150.0 && customer.sms_consent",
    "event.kind == \"checkout_abandoned\" && scores.churn_risk < 40.0",
    "event.kind == \"order_placed\" && customer.orders_count == 1",
    "event.kind == \"order_placed\" && customer.orders_count == 2 && customer.email_consent",
    "event.kind == \"order_placed\" && event.value > customer.aov * 1.5",
    "event.kind == \"order_placed\" && event.currency == \"EUR\" && event.value > 100.0",
    "customer.open_checkout_value > 0.0 && scores.churn_risk >= 50.0",
    "customer.tags.exists(t, t.startsWith(\"b2b\")) && customer.email_consent",
    "!customer.tags.exists(t, t == \"wholesale\" || t == \"staff\") && scores.churn_risk > 55.0",
    "size(customer.tags) == 0 && customer.orders_count > 1",
    "customer.first_order_at < timestamp(\"2025-01-01T00:00:00Z\") && scores.segment == \"loyal\"",
    "customer.last_order_at < timestamp(\"2026-01-01T00:00:00Z\") - duration(\"2160h\")",
    "has(customer.last_order_at) && customer.last_order_at - customer.first_order_at > duration(\"8760h\")",
    "scores.expected_orders_90d < 0.2 && customer.orders_count >= 3",
    "scores.days_to_next_order < 7.0 && customer.email_consent",
    "scores.days_to_next_order > 60.0 && scores.churn_risk > 50.0 && customer.email_consent",
    "scores.model_version.startsWith(\"btyd\") && scores.churn_risk > 65.0",
    "scores.segment == \"champion\" && customer.total_spent > 1000.0",
    "scores.segment == \"new\" && customer.orders_count == 1 && customer.email_consent",
    "scores.segment != \"lost\" && scores.p_alive > 0.5 && customer.sms_consent",
    "(scores.churn_risk > 70.0 || scores.p_alive < 0.2) && customer.email_consent",
    "(customer.aov > 100.0 || customer.total_spent > 800.0) && scores.churn_risk >= 40.0",
    "customer.email_consent && !customer.sms_consent && scores.churn_risk > 45.0",
    "customer.sms_consent && customer.orders_count >= 2 && \"vip\" in customer.tags",
    "customer.id.startsWith(\"shopify:\") && scores.predicted_clv > 300.0",
    "event.kind == \"customer_updated\" && customer.email_consent && customer.orders_count == 0",
    "event.kind == \"customer_updated\" && \"newsletter\" in customer.tags",
    "has(event.checkout_token) && event.value > 20.0 && customer.open_checkout_value > 0.0",
    "size(event.product_ids) > 2 && event.kind == \"checkout_abandoned\"",
    "\"sku-123\" in event.product_ids && customer.email_consent",
    "scores.churn_risk >= 60.0 && scores.churn_risk < 80.0 && customer.orders_count >= 2",
    "scores.predicted_clv / (customer.total_spent + 1.0) > 2.0",
    "customer.days_since_last_order > scores.days_to_next_order * 2.0",
    "has(customer.last_order_at) ? customer.days_since_last_order > 120.0 : scores.churn_risk > 90.0",
    "customer.orders_count > 1 && customer.aov >= 40.0 && customer.aov <= 120.0 && customer.email_consent",
    "scores.segment in [\"at_risk\", \"hibernating\", \"lost\"] && customer.total_spent >= 150.0 && customer.email_consent && !(\"no_marketing\" in customer.tags)",
];

/// The conditions of the 10 flows an abandoned checkout triggers, say.
const TRIGGERED: [usize; 10] = [0, 7, 13, 14, 15, 20, 41, 42, 43, 46];

fn facts(i: u64) -> Facts {
    let mut f = Facts::default();
    let text = |s: &str| FactValue::Text(s.to_string());
    f.event.insert("kind".into(), text("checkout_abandoned"));
    f.event.insert("value".into(), FactValue::Double(80.0 + (i % 50) as f64));
    f.event.insert("currency".into(), text("EUR"));
    f.event.insert("order_id".into(), FactValue::Null);
    f.event.insert("checkout_token".into(), text("c1a8f0e2b7d94a6c"));
    f.event.insert(
        "product_ids".into(),
        FactValue::TextList(vec!["sku-123".into(), "sku-456".into(), "sku-789".into()]),
    );
    f.customer.insert("id".into(), FactValue::Text(format!("shopify:{}", 880_000 + i)));
    f.customer.insert("email_consent".into(), FactValue::Bool(true));
    f.customer.insert("sms_consent".into(), FactValue::Bool(i.is_multiple_of(3)));
    f.customer.insert("orders_count".into(), FactValue::Int(3));
    f.customer.insert("total_spent".into(), FactValue::Double(240.0));
    f.customer.insert("aov".into(), FactValue::Double(80.0));
    f.customer.insert("first_order_at".into(), FactValue::Timestamp(datetime!(2024-11-02 10:00 UTC)));
    f.customer.insert("last_order_at".into(), FactValue::Timestamp(datetime!(2025-08-05 09:30 UTC)));
    f.customer.insert("days_since_last_order".into(), FactValue::Double(120.0));
    f.customer.insert("tags".into(), FactValue::TextList(vec!["vip".into(), "newsletter".into()]));
    f.customer.insert("open_checkout_value".into(), FactValue::Double(129.9));
    f.scores.insert("churn_risk".into(), FactValue::Double(72.4));
    f.scores.insert("p_alive".into(), FactValue::Double(0.31));
    f.scores.insert("predicted_clv".into(), FactValue::Double(410.0));
    f.scores.insert("expected_orders_90d".into(), FactValue::Double(0.4));
    f.scores.insert("days_to_next_order".into(), FactValue::Double(45.0));
    f.scores.insert("segment".into(), text("at_risk"));
    f.scores.insert("model_version".into(), text("btyd-7"));
    f
}

/// Median and 90th percentile, in microseconds.
fn summary(mut samples: Vec<f64>) -> (f64, f64) {
    samples.sort_by(f64::total_cmp);
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    (at(0.5), at(0.9))
}

/// Times `f` once per event, in [`ROUNDS`] rounds of `events`, and keeps the round with the lowest
/// median: the one least disturbed by whatever else runs on the machine.
fn time_per_event(events: u64, mut f: impl FnMut(u64)) -> (f64, f64) {
    for i in 0..events / 10 {
        f(i);
    }
    (0..ROUNDS)
        .map(|_| {
            let samples = (0..events)
                .map(|i| {
                    let start = Instant::now();
                    f(i);
                    start.elapsed().as_secs_f64() * 1e6
                })
                .collect();
            summary(samples)
        })
        .min_by(|a, b| a.0.total_cmp(&b.0))
        .expect("at least one round")
}

const ROUNDS: usize = 5;

fn main() {
    let mut events: u64 = 10_000;
    let mut only: Option<String> = None;
    let mut args = std::env::args().skip(1).filter(|a| a != "--bench");
    while let Some(flag) = args.next() {
        let value = args.next().unwrap_or_else(|| panic!("{flag} takes a value"));
        match flag.as_str() {
            "--events" => events = value.parse().expect("--events takes a number"),
            "--only" => only = Some(value),
            _ => panic!("usage: conditions [--events N] [--only ROW], not {flag}"),
        }
    }
    let schema = Schema::flows_default();
    let start = Instant::now();
    let conditions: Vec<Condition> = CONDITIONS
        .iter()
        .map(|s| Condition::compile(s, &schema).unwrap_or_else(|e| panic!("{s}: {e}")))
        .collect();
    let compile_ms = start.elapsed().as_secs_f64() * 1e3;
    let triggered: Vec<&Condition> = TRIGGERED.iter().map(|&i| &conditions[i]).collect();
    let sample = facts(0);
    schema.check_facts(&sample).expect("the sample facts fit the schema");
    let fired = conditions.iter().filter(|c| c.eval(&sample) == Ok(true)).count();
    let errors = conditions.iter().filter(|c| c.eval(&sample).is_err()).count();
    println!(
        "{} conditions compiled in {compile_ms:.1} ms; on the sample event {fired} are true, {errors} fail; {events} events",
        conditions.len()
    );

    let prepared_sample = sample.prepare();
    type Row<'a> = (&'static str, Box<dyn FnMut(u64) + 'a>);
    let rows: Vec<Row<'_>> = vec![
        ("facts", Box::new(|i| drop(black_box(facts(i))))),
        ("prepare", Box::new(|_| drop(black_box(black_box(&sample).prepare())))),
        (
            "eval 50",
            Box::new(|_| {
                for c in &conditions {
                    let _ = black_box(c.eval_prepared(black_box(&prepared_sample)));
                }
            }),
        ),
        (
            "eval 10",
            Box::new(|_| {
                for c in &triggered {
                    let _ = black_box(c.eval_prepared(black_box(&prepared_sample)));
                }
            }),
        ),
        (
            "event 50",
            Box::new(|_| {
                let prepared = black_box(&sample).prepare();
                for c in &conditions {
                    let _ = black_box(c.eval_prepared(&prepared));
                }
            }),
        ),
        (
            "event 10",
            Box::new(|_| {
                let prepared = black_box(&sample).prepare();
                for c in &triggered {
                    let _ = black_box(c.eval_prepared(&prepared));
                }
            }),
        ),
        (
            "unprepared 50",
            Box::new(|_| {
                for c in &conditions {
                    let _ = black_box(c.eval(black_box(&sample)));
                }
            }),
        ),
    ];
    let mixed = flow_set(false);
    let all = flow_set(true);
    let (event, state) = abandoned_checkout();
    let scores = score_set();
    let triggers = Trigger::of_event(&event, true);
    let history = FlowHistory::new();
    let policy = PolicyConfig::default();
    let decide = |set: &FlowSet| {
        set.decide(&DecideContext {
            event: &event,
            triggers: &triggers,
            state: &state,
            scores: &scores,
            history: &history,
            now: datetime!(2026-05-01 12:00 UTC),
            policy: &policy,
            approvals_so_far: &no_approvals,
            learners: &nudge_policy::offers::NO_LEARNERS,
        })
    };
    let outcomes = decide(&mixed);
    println!(
        "decide mixed: {} of 50 flows triggered, {} act; decide all 50: {} act",
        outcomes.len(),
        outcomes.iter().filter(|o| o.acted()).count(),
        decide(&all).iter().filter(|o| o.acted()).count()
    );
    let mut rows = rows;
    rows.push(("decide mixed", Box::new(|_| drop(black_box(decide(black_box(&mixed)))))));
    rows.push(("decide all 50", Box::new(|_| drop(black_box(decide(black_box(&all)))))));
    println!("{:<14} {:>9} {:>9}", "per event", "p50 µs", "p90 µs");
    for (name, f) in rows {
        if only.as_deref().is_none_or(|o| o == name) {
            let (p50, p90) = time_per_event(events, f);
            println!("{name:<14} {p50:>9.2} {p90:>9.2}");
        }
    }
}

/// The 50 conditions as flows. With `all_abandoned` every flow listens to `checkout_abandoned`; otherwise the
/// 10 of [`TRIGGERED`] do and the others cycle over five other triggers. Every fifth flow has a 10 %
/// holdout, every third a frequency cap, every fourth a baseline; each sends a trigger event with a
/// property computed by CEL.
fn flow_set(all_abandoned: bool) -> FlowSet {
    const OTHERS: [&str; 5] =
        ["order_placed", "order_updated", "customer_updated", "scores_changed", "checkout_started"];
    let specs: Vec<FlowSpec> = CONDITIONS
        .iter()
        .enumerate()
        .map(|(i, when)| {
            let last = i == CONDITIONS.len() - 1;
            let trigger = if all_abandoned || TRIGGERED.contains(&i) {
                "checkout_abandoned"
            } else if last {
                // The profile sync every configuration has.
                "state_changed"
            } else {
                OTHERS[i % 5]
            };
            let action = if last {
                serde_json::json!({ "type": "sync_profile", "destination": "klaviyo" })
            } else {
                serde_json::json!({ "type": "track_event", "destination": "klaviyo", "metric": format!("AI Flow {i}"),
                                    "properties": { "tier": "scores.segment" } })
            };
            let mut spec = serde_json::json!({
                "name": format!("flow_{i}"), "trigger": trigger, "when": when,
                "holdout_percent": if i % 5 == 0 { 10 } else { 0 },
                "actions": [action],
            });
            if i % 3 == 0 {
                spec["frequency_cap"] = "1/7d".into();
            }
            if i % 4 == 0 {
                spec["baseline"] = "customer.days_since_last_order > 90.0".into();
            }
            serde_json::from_value(spec).expect("a flow spec")
        })
        .collect();
    FlowSet::compile(&specs, &["klaviyo"]).expect("the benchmark's flows compile")
}

fn customer() -> CustomerId {
    "shopify:880012".parse().expect("a customer id")
}

/// A customer with three orders and an open checkout that was just abandoned.
fn abandoned_checkout() -> (Event, CustomerState) {
    let mut state = CustomerState::new(customer());
    state.email = Some("a@example.org".into());
    state.consent = MarketingConsent::Subscribed;
    for (i, day) in [(1, 10), (2, 80), (3, 200)] {
        let at = datetime!(2025-01-01 12:00 UTC) + time::Duration::days(day);
        state.apply(&Event::OrderUpserted(Order {
            id: format!("o{i}"),
            name: None,
            customer: Some(customer()),
            email: Some("a@example.org".into()),
            created_at: at,
            updated_at: at,
            cancelled_at: None,
            total: Money::parse("80.00", "EUR").expect("money"),
            financial_status: None,
            line_items: vec![],
            checkout_token: None,
            cart_token: None,
            accepts_marketing: None,
        }));
    }
    let checkout = Checkout {
        token: "tok1".into(),
        cart_token: None,
        customer: Some(customer()),
        email: Some("a@example.org".into()),
        created_at: datetime!(2026-05-01 9:00 UTC),
        updated_at: datetime!(2026-05-01 9:05 UTC),
        completed_at: None,
        total: Money::parse("129.90", "EUR").expect("money"),
        line_items: vec![],
        recovery_url: Some("https://shop/r/tok1".into()),
        accepts_marketing: Some(true),
    };
    state.apply(&Event::CheckoutUpserted(checkout.clone()));
    let event = Event::CheckoutAbandoned(CheckoutAbandoned {
        customer: customer(),
        email: None,
        idle_since: checkout.updated_at,
        checkout,
    });
    state.apply(&event);
    (event, state)
}

fn score_set() -> ScoreSet {
    let s = |name: &str, value: f64| Score {
        name: name.into(),
        value,
        model_id: "btyd".into(),
        model_version: "btyd-7".into(),
        explanation: String::new(),
    };
    ScoreSet {
        scores: vec![
            s("churn_risk", 72.4),
            s("p_alive", 0.31),
            s("predicted_clv", 410.0),
            s("expected_orders_90d", 0.4),
            s("days_to_next_order", 45.0),
        ],
        segment: Segment::HighValueAtRisk,
        model_version: "btyd-7".into(),
        labels: Default::default(),
        products: Vec::new(),
        scored_at: datetime!(2026-05-01 12:00 UTC),
        adopted_segments: None,
    }
}
