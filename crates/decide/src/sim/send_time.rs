//! The send-time scenario. Generative process (seeded):
//!
//! - Each customer has a device class (60 % `mobile`, 40 % `desktop`) and a time zone (UTC+1, the
//!   store's, for 55 %; UTC+2 20 %; UTC 10 %; UTC−5 10 %; UTC+5:30 5 %). 85 % of customers tell their
//!   time zone through a storefront event's context; for the rest the model assumes the store's.
//! - A TRUE preferred local hour: mobile customers around 20:00, desktop around 10:00 (normal, sd 2.5 h,
//!   wrapped), except 15 % whose preferred hour is uniform over the day.
//! - A TRUE open probability per channel and local send hour:
//!   `p_c(h) = base_c · (0.15 + 0.85 · exp(−d(h, peak)² / (2 · 2²)))` with `d` the circular distance in hours
//!   and `base` 0.30 for email, 0.12 for push, 0.45 for sms.
//! - History: emails sent at uniformly random local hours until the customer has opened
//!   [`OBSERVED_OPENS`]; a third also get push messages over the same stretch, a fifth sms. Every open is an
//!   engagement event folded into the customer's state by the real fold; a fifth of the customers also
//!   have machine opens (privacy-protection prefetches) at the send time, which the fold must ignore.
//!
//! Evaluation: the send-time model is fitted on the states; each customer's email is sent at the learned
//! `best_send_hour_email` (converted to UTC with the offset the model assumed, so a wrong assumed time zone
//! costs what it would); the expected open rate from the true curves is compared with the oracle (each
//! customer at their true peak), the population's single best local hour, and the rules fallback.

use super::{SimArgs, SimReport};
use crate::send_time::{self, SendTimeFitOptions, SendTimeModel};
use crate::serve::StateModel;
use nudge_model::{
    Behaviour, BehaviourKind, CustomerId, Engagement, EngagementKind, Event, ScoreSet, Segment,
    VisitorContext,
};
use nudge_state::CustomerState;
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, Normal};
use serde_json::json;

/// The opens observed per customer before the evaluation (the quality bar's condition).
pub const OBSERVED_OPENS: usize = 5;
/// The store's offset (UTC+1).
pub const STORE_OFFSET_MINUTES: i16 = 60;
/// The share of the peak open probability at any hour, and the width (sd, hours) of the peak.
pub const FLOOR: f64 = 0.02;
pub const WIDTH: f64 = 3.0;
const CHANNEL_BASE: [(&str, f64); 3] = [("email", 0.30), ("push", 0.12), ("sms", 0.45)];

/// One simulated customer's truth.
#[derive(Debug, Clone)]
pub struct TrueCustomer {
    pub offset_minutes: i16,
    pub offset_known: bool,
    pub device: &'static str,
    pub peak: f64,
}

impl TrueCustomer {
    /// The true probability that a message on `channel` sent at local hour `h` is opened.
    pub fn open_probability(&self, channel: &str, h: f64) -> f64 {
        let base = CHANNEL_BASE.iter().find(|(c, _)| *c == channel).map_or(0.0, |(_, b)| *b);
        let d = (h - self.peak).rem_euclid(24.0);
        let d = d.min(24.0 - d);
        base * (FLOOR + (1.0 - FLOOR) * (-d * d / (2.0 * WIDTH * WIDTH)).exp())
    }
}

/// The simulated world: the truths and the states the fold made of the history.
pub struct World {
    pub truth: Vec<TrueCustomer>,
    pub states: Vec<CustomerState>,
}

/// Generates the customers and folds their history into states.
pub fn world(args: &SimArgs) -> World {
    let mut rng = rand::rngs::StdRng::seed_from_u64(args.seed);
    let start = time::macros::datetime!(2026-01-05 00:00 UTC);
    let days = args.days.max(1);
    let zones: [(i16, f64); 5] = [(60, 0.55), (120, 0.20), (0, 0.10), (-300, 0.10), (330, 0.05)];
    let mut truth = Vec::with_capacity(args.customers);
    let mut states = Vec::with_capacity(args.customers);
    for i in 0..args.customers {
        let device = if rng.gen_bool(0.6) { "mobile" } else { "desktop" };
        let mut u = rng.gen_range(0.0..1.0);
        let offset = zones
            .iter()
            .find(|(_, p)| {
                u -= p;
                u < 0.0
            })
            .map_or(60, |(o, _)| *o);
        let peak = if rng.gen_bool(0.15) {
            rng.gen_range(0.0..24.0)
        } else {
            let centre: f64 = if device == "mobile" { 20.0 } else { 10.0 };
            Normal::new(centre, 2.5).expect("valid normal").sample(&mut rng).rem_euclid(24.0)
        };
        let t = TrueCustomer { offset_minutes: offset, offset_known: rng.gen_bool(0.85), device, peak };
        let id: CustomerId = format!("shopify:{}", 100_000 + i).parse().expect("a valid id");
        let mut s = CustomerState::new(id.clone());
        s.apply(&Event::Behaviour(Behaviour {
            customer: id.clone(),
            anonymous_id: None,
            email: None,
            kind: BehaviourKind::PageViewed,
            name: "Home".into(),
            message_id: Some(format!("page-{i}")),
            at: start,
            products: Vec::new(),
            cart_id: None,
            order_id: None,
            query: None,
            value: None,
            url: None,
            properties: serde_json::Value::Null,
            context: VisitorContext {
                device: Some(device.into()),
                utc_offset_minutes: t.offset_known.then_some(offset),
                ..Default::default()
            },
        }));
        let channels: Vec<&str> = std::iter::once("email")
            .chain(rng.gen_bool(1.0 / 3.0).then_some("push"))
            .chain(rng.gen_bool(0.2).then_some("sms"))
            .collect();
        let machine = rng.gen_bool(0.2);
        let (mut opens, mut n) = (0, 0u32);
        while opens < OBSERVED_OPENS && n < 10_000 {
            n += 1;
            let day = i64::from(rng.gen_range(0..days));
            for c in &channels {
                let local = rng.gen_range(0.0..24.0f64);
                let utc_min = ((local * 60.0) as i64 - i64::from(offset)).rem_euclid(24 * 60);
                let at = start + time::Duration::days(day) + time::Duration::minutes(utc_min);
                let mut event = |kind, machine_open: bool, tag: &str| {
                    s.apply(&Event::Engagement(Engagement {
                        customer: id.clone(),
                        email: None,
                        kind,
                        channel: (*c).into(),
                        platform: "sim".into(),
                        event_id: format!("{tag}-{c}-{n}"),
                        campaign: None,
                        url: None,
                        machine: machine_open,
                        at,
                    }));
                };
                if machine && *c == "email" {
                    event(EngagementKind::Opened, true, "mpp");
                }
                if rng.gen_bool(t.open_probability(c, local)) {
                    event(EngagementKind::Opened, false, "open");
                    if *c == "email" {
                        opens += 1;
                    }
                }
            }
        }
        truth.push(t);
        states.push(s);
    }
    World { truth, states }
}

fn email_hour(model: &dyn StateModel, s: &CustomerState) -> Option<f64> {
    let mut set = ScoreSet {
        scores: Vec::new(),
        segment: Segment::Prospect,
        model_version: String::new(),
        labels: Default::default(),
        products: Vec::new(),
        scored_at: time::OffsetDateTime::UNIX_EPOCH,
        adopted_segments: None,
    };
    model.score(s, time::OffsetDateTime::UNIX_EPOCH, &mut set);
    set.value(&send_time::channel_score_name("email"))
}

/// The true email open rate when each customer is sent the hour a model learned, sent at the UTC hour the
/// model's assumed offset gives.
fn open_rate(model: &dyn StateModel, w: &World, assumed_store: Option<i16>) -> f64 {
    let mut sum = 0.0;
    for (t, s) in w.truth.iter().zip(&w.states) {
        let h = email_hour(model, s).unwrap_or(send_time::DEFAULT_SEND_HOUR as f64);
        let (assumed, _) = send_time::customer_shift(s, assumed_store);
        let true_local = h + 0.5 - f64::from(assumed) + f64::from(t.offset_minutes) / 60.0;
        sum += t.open_probability("email", true_local);
    }
    sum / w.truth.len().max(1) as f64
}

/// Runs the scenario and evaluates the models on it.
pub fn evaluate(args: &SimArgs) -> SimReport {
    let w = world(args);
    let refs: Vec<&CustomerState> = w.states.iter().collect();
    let opts =
        SendTimeFitOptions { store_utc_offset_minutes: Some(STORE_OFFSET_MINUTES), ..Default::default() };
    let n = w.truth.len().max(1) as f64;
    let oracle = w.truth.iter().map(|t| t.open_probability("email", t.peak)).sum::<f64>() / n;
    let (pop_hour, population) = (0..24)
        .map(|h| (h, w.truth.iter().map(|t| t.open_probability("email", h as f64 + 0.5)).sum::<f64>() / n))
        .max_by(|a, b| a.1.total_cmp(&b.1))
        .unwrap_or((0, 0.0));
    let rules = open_rate(&send_time::RulesSendTime, &w, None);
    let (learned, strength, metrics) = match send_time::fit(&refs, &opts) {
        Ok(body) => {
            let strength = body.channels.get("email").map(|c| (c.strength, c.bandwidth));
            let metrics = body.metrics.clone();
            let model = SendTimeModel::new("sim", body);
            (Some(open_rate(&model, &w, Some(STORE_OFFSET_MINUTES))), strength, metrics)
        }
        Err(_) => (None, None, serde_json::Value::Null),
    };
    let fmt = |x: Option<f64>| x.map_or("-".to_string(), |x| format!("{x:.4}"));
    let text = format!(
        "send_time: {} customers, {OBSERVED_OPENS} observed email opens each (seed {})\n\
         email open rate at the hour sent:\n\
         \x20 oracle (true best hour per customer)   {oracle:.4}\n\
         \x20 learned (send_time model)              {}  ({} of the oracle; strength {})\n\
         \x20 rules (own most frequent hour)         {rules:.4}\n\
         \x20 population's single best hour ({pop_hour:02}:00) {population:.4}\n",
        w.truth.len(),
        args.seed,
        fmt(learned),
        learned.map_or("-".into(), |l| format!("{:.1} %", 100.0 * l / oracle)),
        strength.map_or("-".into(), |(a, b)| format!("{a}, smoothing {b} h")),
    );
    SimReport {
        scenario: "send_time",
        text,
        json: json!({
            "customers": w.truth.len(),
            "observed_opens": OBSERVED_OPENS,
            "seed": args.seed,
            "oracle_open_rate": oracle,
            "learned_open_rate": learned,
            "learned_share_of_oracle": learned.map(|l| l / oracle),
            "rules_open_rate": rules,
            "population_best_hour": pop_hour,
            "population_open_rate": population,
            "strength": strength.map(|s| s.0),
            "bandwidth_hours": strength.map(|s| s.1),
            "fit_metrics": metrics,
        }),
    }
}
