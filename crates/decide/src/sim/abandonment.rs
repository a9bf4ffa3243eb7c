//! The abandonment simulator: a store whose checkouts' true abandonment probabilities are known, and the
//! evaluation of the propensity model against the oracle that scores each checkout by that probability.
//!
//! ## The generative process
//!
//! Each customer `i` has latent traits drawn once:
//! - engagement `eᵢ ~ Beta(2, 4)`: the chance a delivered email is opened (a click follows an open with
//!   probability 0.3);
//! - intent `λᵢ ~ Gamma(1.5, 0.02)`: checkouts started per day (mean 0.03);
//! - price sensitivity `sᵢ ~ LogNormal(0, 0.25)`, which scales how much cart value matters;
//! - the day they are first seen, uniform over the first 60 % of the simulated days.
//!
//! From that day on, each day: an email is delivered with probability 2/7 (opened with `eᵢ`, clicked
//! with `0.3·eᵢ` given an open); the customer views `Poisson(0.2 + 3λᵢ)` products at random times; a
//! checkout starts with probability `λᵢ` at an hour drawn from a day-shaped profile (evenings busy,
//! nights quiet), preceded by `1 + Poisson(0.5)` cart adds in the minutes before. The cart's value is
//! `LogNormal(ln 55, 0.7)`, its items `1 + Poisson(value/50)`.
//!
//! The checkout is abandoned with the true probability `σ(η)`,
//! `η = 1.0 + 0.8·sᵢ·(ln(1+value) − ln 56) − 0.9·returning − 0.3·ln(1+prior orders)
//!      + 0.25·returning·ln(1+days since the last order) − 2.5·(eᵢ − 1/3) + 0.5·night − 0.3·ln(1+adds in 7 d)`,
//! with `night` = the hour is before 6. Otherwise it becomes an order five minutes later carrying the
//! checkout's token; an abandoned checkout stays open in the customer's state.
//!
//! The model sees the customer state the store would hold at the end (orders, open checkouts, browse
//! entries, daily engagement counts), builds its examples with [`propensity::abandon_examples`] exactly as
//! `nudge models fit --family propensity` does, and never sees `eᵢ`, `sᵢ` or `λᵢ`: engagement only through
//! observed open and click rates, price sensitivity not at all. The oracle scores each checkout by its
//! true probability.
//!
//! ## The evaluation
//!
//! The checkouts are split by time: the latest 30 % form the holdout. The model is trained on the newest
//! 2,000 and the newest 300 labelled checkouts before the holdout (and on all of them), and evaluated on
//! the whole holdout beside the oracle: AUC, PR-AUC, Brier, ECE, and the gain over random
//! `(AUC − 0.5)/(oracle AUC − 0.5)`. A label-shuffling run checks that nothing leaks: with the training
//! labels permuted, the holdout AUC must be ≈ 0.5.

use super::{SimArgs, SimReport};
use crate::metrics::{self, Metrics};
use crate::propensity::{self, ABANDON_FEATURES, Example, LabelOptions, TrainOptions};
use nudge_model::{CustomerId, Money, Source, Timestamp};
use nudge_state::{BrowseEntry, BrowseKind, CheckoutRecord, CustomerState, ItemRecord, OrderRecord};
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_distr::{Beta, Distribution, Gamma, LogNormal, Poisson};
use serde_json::{Value, json};
use std::collections::HashMap;

/// The simulated world: final customer states, and the true abandonment probability of every checkout
/// by the example key [`propensity::abandon_examples`] gives it.
pub struct World {
    pub states: Vec<CustomerState>,
    pub truth: HashMap<(usize, String), f64>,
    /// The end of the simulation (the moment examples are labelled as of).
    pub end: Timestamp,
}

/// The relative weight of each hour of the day for checkouts (UTC; the simulated customers' zone).
const HOUR_WEIGHTS: [f64; 24] =
    [3., 2., 1., 1., 1., 1., 2., 3., 4., 5., 6., 6., 7., 6., 6., 6., 7., 8., 9., 10., 11., 10., 8., 5.];

fn money(v: f64) -> Money {
    Money::parse(&format!("{v:.2}"), "USD").expect("a formatted amount parses")
}

/// Simulates `args.customers` customers over `args.days` days.
pub fn simulate(args: &SimArgs) -> World {
    let mut rng = StdRng::seed_from_u64(args.seed);
    let start = time::macros::datetime!(2025-01-01 00:00 UTC);
    let end = start + time::Duration::days(i64::from(args.days));
    let beta = Beta::new(2.0, 4.0).expect("valid");
    let gamma = Gamma::new(1.5, 0.02).expect("valid");
    let lognorm_s = LogNormal::new(0.0, 0.25).expect("valid");
    let lognorm_v = LogNormal::new(55f64.ln(), 0.7).expect("valid");
    let hour_total: f64 = HOUR_WEIGHTS.iter().sum();
    let mut states = Vec::with_capacity(args.customers);
    let mut truth = HashMap::new();
    let first_day_span = ((f64::from(args.days) * 0.6).ceil() as u32).max(1);
    for i in 0..args.customers {
        let e: f64 = beta.sample(&mut rng);
        let lambda: f64 = gamma.sample(&mut rng);
        let s: f64 = lognorm_s.sample(&mut rng);
        let first_day = rng.gen_range(0..first_day_span);
        let mut st =
            CustomerState::new(CustomerId::new(Source::Shopify, format!("sim{i}")).expect("valid id"));
        let views = Poisson::new(0.2 + 3.0 * lambda).expect("valid");
        let adds = Poisson::new(0.5).expect("valid");
        let mut orders: Vec<Timestamp> = Vec::new();
        let mut adds_at: Vec<Timestamp> = Vec::new();
        let mut n_checkouts = 0;
        for day in first_day..args.days {
            let day_start = start + time::Duration::days(i64::from(day));
            if rng.gen_bool(2.0 / 7.0) {
                let c = st.engagement.days.entry(nudge_state::day_number(day_start)).or_default();
                c.sent += 1;
                c.delivered += 1;
                if rng.gen_bool(e) {
                    c.opened += 1;
                    if rng.gen_bool(0.3) {
                        c.clicked += 1;
                    }
                }
            }
            for _ in 0..(views.sample(&mut rng) as u32) {
                let at = day_start + time::Duration::seconds(rng.gen_range(0..86_400));
                st.browse.push(BrowseEntry {
                    kind: BrowseKind::Viewed,
                    at,
                    product_id: Some(format!("p{}", rng.gen_range(0..50))),
                    query: None,
                    key: format!("v{i}-{}", st.browse.len()),
                });
            }
            if !rng.gen_bool(lambda.min(1.0)) {
                continue;
            }
            // A checkout at an hour from the day profile, with cart adds in the minutes before.
            let mut u = rng.r#gen::<f64>() * hour_total;
            let mut hour = 0;
            while hour < 23 && u >= HOUR_WEIGHTS[hour] {
                u -= HOUR_WEIGHTS[hour];
                hour += 1;
            }
            let at = day_start + time::Duration::seconds(hour as i64 * 3600 + rng.gen_range(1_200..3_600));
            let n_adds = 1 + adds.sample(&mut rng) as u32;
            for k in 0..n_adds {
                let a = at - time::Duration::seconds(60 * (i64::from(k) + 1));
                st.browse.push(BrowseEntry {
                    kind: BrowseKind::Added,
                    at: a,
                    product_id: Some(format!("p{}", rng.gen_range(0..50))),
                    query: None,
                    key: format!("a{i}-{}", st.browse.len()),
                });
                adds_at.push(a);
            }
            let value: f64 = lognorm_v.sample(&mut rng);
            let items = 1 + Poisson::new(value / 50.0).expect("valid").sample(&mut rng) as u32;
            let prior = orders.len() as f64;
            let returning = if orders.is_empty() { 0.0 } else { 1.0 };
            let since_last =
                orders.last().map_or(0.0, |&l| ((at - l).whole_seconds() as f64 / 86_400.0).ln_1p());
            let week_ago = at - time::Duration::days(7);
            let adds_7d = adds_at.iter().filter(|&&a| a >= week_ago && a < at).count() as f64;
            let night = if hour < 6 { 1.0 } else { 0.0 };
            let eta = 1.0 + 0.8 * s * ((value.ln_1p()) - 56f64.ln()) - 0.9 * returning - 0.3 * prior.ln_1p()
                + 0.25 * returning * since_last
                - 2.5 * (e - 1.0 / 3.0)
                + 0.5 * night
                - 0.3 * adds_7d.ln_1p();
            let p = crate::logistic::sigmoid(eta);
            let token = format!("c{i}-{n_checkouts}");
            n_checkouts += 1;
            if rng.gen_bool(p) {
                st.open_checkouts.insert(
                    token.clone(),
                    CheckoutRecord {
                        cart_token: None,
                        updated_at: at,
                        total: money(value),
                        item_count: items,
                        recovery_url: None,
                        abandoned: true,
                    },
                );
                truth.insert((i, format!("checkout:{token}")), p);
            } else {
                let placed = at + time::Duration::minutes(5);
                let id = format!("o{i}-{}", orders.len());
                st.orders.insert(
                    id.clone(),
                    OrderRecord {
                        created_at: placed,
                        updated_at: placed,
                        total: money(value),
                        cancelled: false,
                        items: vec![ItemRecord {
                            product_id: Some("p0".into()),
                            title: "item".into(),
                            quantity: items,
                        }],
                        checkout_token: Some(token),
                        cart_token: None,
                    },
                );
                orders.push(placed);
                truth.insert((i, format!("order:{id}")), p);
            }
        }
        st.browse.sort_by_key(|b| b.at);
        states.push(st);
    }
    World { states, truth, end }
}

/// The labelled checkouts of a world, each with its true probability, sorted by time, and where the
/// holdout starts.
pub fn examples(world: &World) -> (Vec<Example>, Vec<f64>, usize) {
    let usd = nudge_model::Currency::parse("USD").expect("USD");
    let opts = LabelOptions::default();
    let mut ex: Vec<Example> = world
        .states
        .iter()
        .enumerate()
        .flat_map(|(i, s)| propensity::abandon_examples(i, s, world.end, &opts, usd))
        .collect();
    let cut = propensity::time_split(&mut ex, 0.3);
    let truth = ex.iter().map(|e| world.truth[&(e.customer, e.key.clone())]).collect();
    (ex, truth, cut)
}

/// One training size's evaluation.
#[derive(Debug, Clone)]
pub struct Row {
    pub train: usize,
    pub model: Metrics,
    pub ece_uncalibrated: Option<f64>,
    /// (AUC − 0.5)/(oracle AUC − 0.5).
    pub gain_ratio: f64,
}

/// The whole evaluation.
#[derive(Debug, Clone)]
pub struct Evaluation {
    pub checkouts: usize,
    pub holdout: usize,
    pub oracle: Metrics,
    pub rows: Vec<Row>,
    /// The mean holdout AUC of models trained on the 2,000 newest training checkouts with shuffled labels.
    pub shuffled_auc: f64,
}

/// Trains on the newest `n` labelled checkouts before the holdout (all of them when `n` is larger) and
/// evaluates on the holdout.
pub fn train_and_evaluate(
    ex: &[Example],
    cut: usize,
    n: usize,
    oracle_auc: f64,
) -> Result<Row, crate::DecideError> {
    let train = &ex[cut.saturating_sub(n)..cut];
    let (_, body) = propensity::fit_head(train, &ex[cut..], &ABANDON_FEATURES, &TrainOptions::default())?;
    let model = body.metrics.expect("a holdout was given");
    let auc = model.auc.unwrap_or(0.5);
    Ok(Row {
        train: train.len(),
        gain_ratio: (auc - 0.5) / (oracle_auc - 0.5),
        ece_uncalibrated: body.ece_uncalibrated,
        model,
    })
}

/// Runs the simulation and the evaluation at the given training sizes.
pub fn run(args: &SimArgs, sizes: &[usize]) -> Result<Evaluation, crate::DecideError> {
    let world = simulate(args);
    let (ex, truth, cut) = examples(&world);
    if cut < 50 || ex.len() - cut < 50 {
        return Err(crate::DecideError::Insufficient(format!(
            "{} labelled checkouts; simulate more customers or days",
            ex.len()
        )));
    }
    let labels: Vec<bool> = ex[cut..].iter().map(|e| e.label).collect();
    let oracle = Metrics::evaluate(&labels, &truth[cut..])?;
    let oracle_auc = oracle.auc.unwrap_or(0.5);
    let rows =
        sizes.iter().map(|&n| train_and_evaluate(&ex, cut, n, oracle_auc)).collect::<Result<Vec<_>, _>>()?;
    let shuffled_auc = shuffled_auc(&ex, cut, args.seed, SHUFFLES);
    Ok(Evaluation { checkouts: ex.len(), holdout: ex.len() - cut, oracle, rows, shuffled_auc })
}

/// How many label permutations the leakage check averages over.
pub const SHUFFLES: usize = 10;

/// The label leakage check: the mean holdout AUC of models trained on the 2,000 newest training
/// checkouts with their labels permuted (`rounds` permutations). A model fitted on noise points in a
/// random direction, so one permutation's AUC strays from 0.5 by chance; the mean over several does not,
/// unless something in the features leaks the label.
pub fn shuffled_auc(ex: &[Example], cut: usize, seed: u64, rounds: usize) -> f64 {
    let n_train = cut.min(2_000);
    let lo = cut - n_train;
    let mut rng = StdRng::seed_from_u64(seed ^ 0x5eed);
    let mut sum = 0.0;
    for _ in 0..rounds {
        let mut train: Vec<Example> = ex[lo..cut].to_vec();
        let mut ys: Vec<bool> = train.iter().map(|e| e.label).collect();
        ys.shuffle(&mut rng);
        for (e, y) in train.iter_mut().zip(ys) {
            e.label = y;
        }
        let auc = propensity::fit_head(&train, &ex[cut..], &ABANDON_FEATURES, &TrainOptions::default())
            .ok()
            .and_then(|(_, b)| b.metrics)
            .and_then(|m| m.auc)
            .unwrap_or(0.5);
        sum += auc;
    }
    sum / rounds as f64
}

/// The training sizes the scenario reports: 300, 2,000 and everything before the holdout.
pub const SIZES: [usize; 3] = [300, 2_000, usize::MAX];

fn metrics_json(m: &Metrics) -> Value {
    json!({ "auc": m.auc, "pr_auc": m.pr_auc, "brier": m.brier, "log_loss": m.log_loss, "ece": m.ece, "calibration": m.calibration })
}

/// Runs the scenario and evaluates the models on it.
pub fn evaluate(args: &SimArgs) -> SimReport {
    let ev = match run(args, &SIZES) {
        Ok(ev) => ev,
        Err(e) => {
            return SimReport {
                scenario: "abandonment",
                text: format!("abandonment: {e}\n"),
                json: json!({ "error": e.to_string() }),
            };
        }
    };
    let oracle_auc = ev.oracle.auc.unwrap_or(0.5);
    let mut text = format!(
        "abandonment: {} customers, {} days, seed {}: {} labelled checkouts, the latest {} held out\n\n",
        args.customers, args.days, args.seed, ev.checkouts, ev.holdout
    );
    text.push_str(&format!(
        "{:<22} {:>7} {:>7} {:>7} {:>7} {:>11} {:>6}\n",
        "scorer", "AUC", "PR-AUC", "Brier", "ECE", "ECE uncal.", "gain"
    ));
    let f = |v: Option<f64>| v.map_or("-".to_string(), |v| format!("{v:.4}"));
    text.push_str(&format!(
        "{:<22} {:>7} {:>7} {:>7.4} {:>7.4} {:>11} {:>6}\n",
        "oracle (true p)",
        f(ev.oracle.auc),
        f(ev.oracle.pr_auc),
        ev.oracle.brier,
        ev.oracle.ece,
        "-",
        "1.00"
    ));
    for r in &ev.rows {
        text.push_str(&format!(
            "{:<22} {:>7} {:>7} {:>7.4} {:>7.4} {:>11} {:>6.2}\n",
            format!("model, {} trained", r.train),
            f(r.model.auc),
            f(r.model.pr_auc),
            r.model.brier,
            r.model.ece,
            f(r.ece_uncalibrated),
            r.gain_ratio
        ));
    }
    text.push_str(&format!(
        "\nshuffled training labels: mean holdout AUC over {SHUFFLES} permutations {:.4} (chance is 0.5)\n",
        ev.shuffled_auc
    ));
    if let Some(best) = ev.rows.last() {
        text.push_str("\ncalibration on the holdout, model trained on all before it:\n");
        text.push_str(&metrics::calibration_text(&best.model.calibration));
    }
    let json = json!({
        "scenario": "abandonment",
        "customers": args.customers,
        "days": args.days,
        "seed": args.seed,
        "checkouts": ev.checkouts,
        "holdout": ev.holdout,
        "oracle": metrics_json(&ev.oracle),
        "models": ev.rows.iter().map(|r| json!({
            "trained_on": r.train,
            "metrics": metrics_json(&r.model),
            "ece_uncalibrated": r.ece_uncalibrated,
            "gain_ratio": r.gain_ratio,
            "auc_gap_to_oracle": r.model.auc.map(|a| oracle_auc - a),
        })).collect::<Vec<_>>(),
        "shuffled_labels_auc": ev.shuffled_auc,
    });
    SimReport { scenario: "abandonment", text, json }
}
