//! Benchmarks of the decision models, hand-timed on one thread. Each family has its own section,
//! selected with `--only NAME` (all sections run without it).
//!
//! Run with `cargo bench -p nudge-decide --bench decide -- [--only propensity|bandit|send_time|cold_start|uplift|recs|segments|hypotheses] [section options]`.

use std::hint::black_box;
use std::time::Instant;

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let only = args.iter().position(|a| a == "--only").and_then(|i| args.get(i + 1)).cloned();
    let wants = |name: &str| only.as_deref().is_none_or(|o| o == name);
    if wants("propensity") {
        propensity::run(&args);
    }
    if wants("bandit") {
        bandit();
    }
    if wants("send_time") {
        send_time();
    }
    if wants("cold_start") {
        cold_start();
    }
    if wants("uplift") {
        uplift::run();
    }
    if wants("recs") {
        recs::run();
    }
    if wants("segments") {
        segments();
    }
    if wants("hypotheses") {
        hypotheses();
    }
}

/// Test hypotheses from a flow's past results: 200,000 customers of the planted history (5 segments, 3
/// arms, 4 hours, 3 subject-line features), every comparison made, Holm-adjusted, proposals ranked. Bar: 1 s.
fn hypotheses() {
    use nudge_decide::hypotheses::{Options, propose};
    use nudge_decide::sim::hypotheses::{self as sim, World};
    use nudge_policy::reports::{Z95, newcombe, wilson};
    struct Newcombe;
    impl nudge_decide::uplift::RateIntervals for Newcombe {
        fn rate(&self, k: u64, n: u64) -> Option<(f64, f64)> {
            wilson(k, n, Z95)
        }
        fn difference(&self, k1: u64, n1: u64, k2: u64, n2: u64) -> Option<(f64, f64)> {
            newcombe(k1, n1, k2, n2, Z95)
        }
        fn method(&self) -> &'static str {
            "Newcombe"
        }
    }
    let units = sim::history(200_000, World::Planted, 1);
    let mut comparisons = 0;
    let ms: Vec<f64> = (0..7)
        .map(|_| {
            let start = Instant::now();
            let p = black_box(propose(black_box(&units), &Newcombe, &Options::default()));
            comparisons = p.comparisons;
            start.elapsed().as_secs_f64() * 1000.0
        })
        .collect();
    let (med, lo, hi) = median_and_spread(ms);
    println!(
        "hypotheses: propose from 200,000 customers ({comparisons} comparisons): median {med:.1} ms (min {lo:.1}, max {hi:.1}), bar 1 s"
    );
}

/// Segment discovery on 1M customers of the planted store (10 signals): the `auto` search on the sample,
/// then every customer assigned and the segments described; and a refresh (assigning 1M customers to
/// adopted segments). Bar: 10 s.
fn segments() {
    use nudge_decide::segments::{self as s, DiscoverOptions};
    use nudge_decide::sim::segments as sim;
    let store = sim::store(1_000_000, 3);
    let features = sim::features();
    let mut times = Vec::new();
    let mut last = None;
    for _ in 0..3 {
        let t = Instant::now();
        last = Some(
            s::discover(&features, black_box(&store.rows), &DiscoverOptions::default()).expect("discovers"),
        );
        times.push(t.elapsed().as_secs_f64());
    }
    let d = last.expect("ran");
    let (med, lo, hi) = median_and_spread(times);
    println!(
        "segments: discover on 1,000,000 customers, k auto (2..10): median {med:.2} s (min {lo:.2}, max {hi:.2}), bar 10 s; k = {}, ARI {:.3}",
        d.k,
        s::adjusted_rand_index(&d.assignments, &store.types)
    );
    let mut times = Vec::new();
    for _ in 0..3 {
        let t = Instant::now();
        black_box(s::assign(&features, &store.rows, &d));
        times.push(t.elapsed().as_secs_f64());
    }
    let (med, lo, hi) = median_and_spread(times);
    println!(
        "segments: refresh (assign 1,000,000 to the adopted segments): median {med:.2} s (min {lo:.2}, max {hi:.2})"
    );
}

fn median_and_spread(mut v: Vec<f64>) -> (f64, f64, f64) {
    v.sort_by(f64::total_cmp);
    (v[v.len() / 2], v[0], v[v.len() - 1])
}

// ---------------------------------------------------------------------------------------------------------
// propensity: training time on 1M labelled checkouts, inference per customer, the holdout AUC beside
// scikit-learn (`--csv PATH` writes the simulated examples for `benches/propensity_reference.py`).
// ---------------------------------------------------------------------------------------------------------
mod propensity {
    use super::{Instant, median_and_spread};
    use nudge_decide::propensity::{
        self as p, ABANDON_FEATURES, BODY_SCHEMA, Example, LabelOptions, PropensityBody, PropensityModel,
        SufficiencyBody, TrainOptions,
    };
    use nudge_decide::serve::StateModel;
    use nudge_decide::sim::{SimArgs, abandonment};
    use rand::{Rng, SeedableRng};
    use std::io::Write;

    fn arg<T: std::str::FromStr>(args: &[String], name: &str) -> Option<T> {
        args.iter().position(|a| a == name).and_then(|i| args.get(i + 1)).and_then(|v| v.parse().ok())
    }

    pub fn run(args: &[String]) {
        let rows: usize = arg(args, "--rows").unwrap_or(1_000_000);
        let rounds: usize = arg(args, "--rounds").unwrap_or(3);
        let sim = SimArgs { customers: 40_000, days: 90, seed: 7 };
        let t = Instant::now();
        let world = abandonment::simulate(&sim);
        let (ex, _truth, cut) = abandonment::examples(&world);
        println!(
            "propensity: simulated {} customers, {} labelled checkouts ({} held out) in {:.2} s",
            sim.customers,
            ex.len(),
            ex.len() - cut,
            t.elapsed().as_secs_f64()
        );
        if let Some(path) = arg::<String>(args, "--csv") {
            let mut f =
                std::io::BufWriter::new(std::fs::File::create(&path).expect("the CSV path is writable"));
            let names: Vec<&str> = ABANDON_FEATURES.iter().map(|&i| p::FEATURES[i].0).collect();
            writeln!(f, "{},label,holdout", names.join(",")).unwrap();
            for (i, e) in ex.iter().enumerate() {
                let xs: Vec<String> = ABANDON_FEATURES.iter().map(|&j| format!("{}", e.x[j])).collect();
                writeln!(f, "{},{},{}", xs.join(","), u8::from(e.label), u8::from(i >= cut)).unwrap();
            }
            println!("propensity: wrote {path}");
        }
        // The holdout AUC of the model trained on everything before the holdout, and its fit time.
        let mut times = Vec::new();
        let mut auc = 0.0;
        for _ in 0..rounds {
            let t = Instant::now();
            let (_, body) =
                p::fit_head(&ex[..cut], &ex[cut..], &ABANDON_FEATURES, &TrainOptions::default()).unwrap();
            times.push(t.elapsed().as_secs_f64());
            auc = body.metrics.unwrap().auc.unwrap();
        }
        let (m, lo, hi) = median_and_spread(times);
        println!(
            "propensity: {} training checkouts, holdout AUC {auc:.4}; fit + evaluate + refit {m:.3} s (min {lo:.3}, max {hi:.3})",
            cut
        );
        // Training time on `rows` labelled checkouts (resampled from the simulated ones).
        let mut rng = rand::rngs::StdRng::seed_from_u64(11);
        let mut big: Vec<Example> = (0..rows).map(|_| ex[rng.gen_range(0..ex.len())].clone()).collect();
        let cut_big = p::time_split(&mut big, 0.0);
        let mut times = Vec::new();
        let mut served = None;
        for _ in 0..rounds {
            let t = Instant::now();
            let (_, body) =
                p::fit_head(&big[..cut_big], &[], &ABANDON_FEATURES, &TrainOptions::default()).unwrap();
            times.push(t.elapsed().as_secs_f64());
            served = Some(body);
        }
        let (m, lo, hi) = median_and_spread(times);
        println!(
            "propensity: training on {rows} labelled checkouts (with calibration folds): {m:.3} s (min {lo:.3}, max {hi:.3})"
        );
        // Inference: score every simulated customer with a fitted version (both heads).
        let purchase = {
            let refs =
                p::reference_times(world.end - time::Duration::days(90), world.end, &LabelOptions::default());
            let usd = nudge_model::Currency::parse("USD").unwrap();
            let mut pe: Vec<Example> = world
                .states
                .iter()
                .enumerate()
                .take(5_000)
                .flat_map(|(i, s)| p::purchase_examples(i, s, &refs, &LabelOptions::default(), usd))
                .collect();
            let c = p::time_split(&mut pe, 0.25);
            p::fit_head(&pe[..c], &pe[c..], &p::PURCHASE_FEATURES, &TrainOptions::default()).unwrap().1
        };
        let body = PropensityBody {
            schema: BODY_SCHEMA,
            currency: "USD".into(),
            features: PropensityBody::feature_docs(),
            labels: LabelOptions::default(),
            train: TrainOptions::default(),
            abandon: served,
            purchase_7d: Some(purchase),
            data_digest: "bench".into(),
            sufficiency: SufficiencyBody { ok: true, reason: None },
            customers: sim.customers as u64,
        };
        let model = PropensityModel::from_body("bench", &serde_json::to_value(&body).unwrap()).unwrap();
        let now = world.end;
        let mut times = Vec::new();
        let mut with_checkout = 0;
        for _ in 0..rounds.max(3) {
            let t = Instant::now();
            with_checkout = 0;
            for s in &world.states {
                let mut out = nudge_model::ScoreSet {
                    scores: Vec::new(),
                    segment: nudge_model::Segment::Prospect,
                    model_version: String::new(),
                    labels: Default::default(),
                    products: Vec::new(),
                    scored_at: now,
                    adopted_segments: None,
                };
                model.score(s, now, &mut out);
                with_checkout += usize::from(out.scores.len() == 2);
                std::hint::black_box(&out);
            }
            times.push(t.elapsed().as_secs_f64() * 1e6 / world.states.len() as f64);
        }
        let (m, lo, hi) = median_and_spread(times);
        println!(
            "propensity: inference {m:.2} µs per customer (min {lo:.2}, max {hi:.2}; both scores, {with_checkout} of {} with an open checkout)",
            world.states.len()
        );
    }
}

/// Median and range of `rounds` timings of `f` (seconds per round).
fn timed(rounds: usize, mut f: impl FnMut()) -> (f64, f64, f64) {
    let mut t: Vec<f64> = (0..rounds)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64()
        })
        .collect();
    t.sort_by(|a, b| a.partial_cmp(b).unwrap());
    (t[t.len() / 2], t[0], t[t.len() - 1])
}

// ---- bandit: the offer bandit (updates/s, µs per choice) and the offers simulator's regret table ----

fn bandit() {
    use nudge_decide::bandit::{Arm, CONTEXT_DIM, Learner, PolicyKind, SeedStream};
    use nudge_decide::sim::{SimArgs, offers};

    let arms: Vec<Arm> = offers::ARMS.iter().map(|a| Arm::parse(a, offers::SHIPPING_COST).unwrap()).collect();
    let mut rng = SeedStream::new(1);
    let contexts: Vec<Vec<f64>> = (0..4096)
        .map(|_| {
            let mut x: Vec<f64> = (0..CONTEXT_DIM).map(|_| rng.uniform()).collect();
            x[0] = 1.0;
            x
        })
        .collect();
    let rewards: Vec<f64> =
        (0..4096).map(|_| if rng.uniform() < 0.3 { 60.0 * rng.uniform() } else { 0.0 }).collect();

    let n = 1_000_000;
    let mut learner = Learner::new(arms.clone(), PolicyKind::Thompson);
    let (med, lo, hi) = timed(5, || {
        for i in 0..n {
            let j = i % 4096;
            learner.update(i % arms.len(), &contexts[j], rewards[j]);
        }
    });
    println!(
        "bandit update ({} arms, d = {CONTEXT_DIM}): {:.2} M outcomes/s median (range {:.2}–{:.2}), 5 rounds of {n}",
        arms.len(),
        n as f64 / med / 1e6,
        n as f64 / hi / 1e6,
        n as f64 / lo / 1e6
    );
    let all = vec![true; arms.len()];
    for policy in [PolicyKind::Thompson, PolicyKind::LinUcb] {
        let l = learner.clone().with_policy(policy);
        let m = 100_000;
        let (med, lo, hi) = timed(7, || {
            for i in 0..m {
                black_box(l.choose(&contexts[i % 4096], &all, i as u64, 5).arm);
            }
        });
        println!(
            "bandit choice {policy:?}: {:.2} µs median (range {:.2}–{:.2}), 7 rounds of {m} (with the audit's per-arm estimates{})",
            med / m as f64 * 1e6,
            lo / m as f64 * 1e6,
            hi / m as f64 * 1e6,
            if policy == PolicyKind::Thompson { " and the propensity" } else { "" }
        );
    }

    println!("offers simulator, {} decisions per policy, 10,000 customers:", offers::DECISIONS);
    println!(
        "seed  uniform  ε-greedy  LinUCB (÷ε, ÷unif)     Thompson (÷ε, ÷unif)   +holdout  OPE IPS [95 %]        TRUE   s"
    );
    for seed in 1..=10 {
        let start = Instant::now();
        let r = offers::run(&SimArgs { customers: 10_000, days: 90, seed }, offers::DECISIONS);
        let (u, e, l, t, h) = (
            r.regret("uniform"),
            r.regret("epsilon_greedy"),
            r.regret("linucb"),
            r.regret("thompson"),
            r.regret("thompson_holdout"),
        );
        let ips = r.ope.ips.unwrap();
        println!(
            "{seed:>4} {u:>8.0} {e:>9.0} {l:>7.0} ({:>4.1}%, {:>3.1}%) {t:>9.0} ({:>4.1}%, {:>3.1}%) {h:>9.0}  {:.2} [{:.2}, {:.2}]  {:.2}  {:.1}",
            100.0 * l / e,
            100.0 * l / u,
            100.0 * t / e,
            100.0 * t / u,
            ips.estimate,
            ips.low,
            ips.high,
            r.true_value,
            start.elapsed().as_secs_f64()
        );
    }
}

/// Times `f` over `n` items `reps` times; prints the median and min–max per item in µs.
fn report(name: &str, reps: usize, n: usize, mut f: impl FnMut()) {
    let mut per_item: Vec<f64> = (0..reps)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed().as_secs_f64() * 1e6 / n as f64
        })
        .collect();
    per_item.sort_by(f64::total_cmp);
    println!(
        "{name:<52} median {:>8.3} µs  (min {:.3}, max {:.3}; {reps} runs of {n})",
        per_item[reps / 2],
        per_item[0],
        per_item[reps - 1]
    );
}

// ---------------------------------------------------------------------------------------------------------
// send_time: the best-hour lookup per customer (the whole `StateModel::score`: hours, labels, category).
// ---------------------------------------------------------------------------------------------------------

fn send_time() {
    use nudge_decide::send_time::{self, SendTimeModel};
    use nudge_decide::serve::StateModel;
    use nudge_decide::sim::{SimArgs, send_time as sim};
    let w = sim::world(&SimArgs { customers: 2_000, days: 180, seed: 7 });
    let refs: Vec<&nudge_state::CustomerState> = w.states.iter().collect();
    let t = Instant::now();
    let body = send_time::fit(
        &refs,
        &send_time::SendTimeFitOptions { store_utc_offset_minutes: Some(60), ..Default::default() },
    )
    .expect("the simulated world fits");
    println!("send_time fit on {} customers: {:.1} ms", refs.len(), t.elapsed().as_secs_f64() * 1e3);
    let model = SendTimeModel::new("bench", body);
    let now = time::OffsetDateTime::UNIX_EPOCH;
    let mut set = empty_set();
    report("send_time score (best hours, channel, category)", 15, refs.len(), || {
        for s in &refs {
            set.scores.clear();
            set.labels.clear();
            model.score(black_box(s), now, &mut set);
        }
        black_box(&set);
    });
    let local: Vec<(Option<send_time::Hours>, Option<&str>)> = refs
        .iter()
        .map(|s| {
            let (shift, _) = send_time::customer_shift(s, Some(60));
            let c = send_time::local_channel_counts(s, shift).remove("email");
            (c, s.acquisition.as_ref().and_then(|a| a.device.as_deref()))
        })
        .collect();
    report("send_time best-hour lookup (one channel)", 15, local.len(), || {
        for (c, seg) in &local {
            black_box(model.best_hour("email", black_box(c.as_ref()), *seg));
        }
    });
    report("send_time rules score", 15, refs.len(), || {
        for s in &refs {
            set.scores.clear();
            set.labels.clear();
            send_time::RulesSendTime.score(black_box(s), now, &mut set);
        }
        black_box(&set);
    });
}

// ---------------------------------------------------------------------------------------------------------
// cold_start: fitting on a store's states and scoring a new customer.
// ---------------------------------------------------------------------------------------------------------

fn cold_start() {
    use nudge_decide::cold_start::{self, ColdStartModel};
    use nudge_decide::serve::StateModel;
    use nudge_decide::sim::{SimArgs, cold_start as sim};
    let w = sim::world(&SimArgs { customers: 20_000, days: 730, seed: 7 });
    let refs: Vec<&nudge_state::CustomerState> = w.states.iter().collect();
    let mut body = None;
    report("cold_start fit (per customer state)", 5, refs.len(), || {
        body = Some(cold_start::fit(&refs, w.now, &Default::default()).expect("the simulated world fits"));
    });
    let model = ColdStartModel { version_id: "bench".into(), body: body.expect("fitted") };
    let new: Vec<&nudge_state::CustomerState> =
        w.new_customers.iter().map(|(i, _, _)| &w.states[*i]).collect();
    let mut set = empty_set();
    report("cold_start score (new customer)", 15, new.len(), || {
        for s in &new {
            set.scores.clear();
            model.score(black_box(s), w.now, &mut set);
        }
        black_box(&set);
    });
}

fn empty_set() -> nudge_model::ScoreSet {
    nudge_model::ScoreSet {
        scores: Vec::new(),
        segment: nudge_model::Segment::Prospect,
        model_version: String::new(),
        labels: Default::default(),
        products: Vec::new(),
        scored_at: time::OffsetDateTime::UNIX_EPOCH,
        adopted_segments: None,
    }
}

// ---------------------------------------------------------------------------------------------------------
// uplift: the campaign report's analysis (`uplift::analyse`) on 100,000 customers with 10 features, with and
// without the revenue bootstrap (1,000 resamples).
// ---------------------------------------------------------------------------------------------------------
mod uplift {
    use super::{Instant, median_and_spread};
    use nudge_decide::uplift::{Options, RateIntervals, Unit, analyse};
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use std::hint::black_box;

    /// Normal-approximation intervals: the bench times the analysis, not the interval formula.
    struct Wald;

    impl RateIntervals for Wald {
        fn rate(&self, k: u64, n: u64) -> Option<(f64, f64)> {
            let p = k as f64 / n as f64;
            let h = 1.96 * (p * (1.0 - p) / n as f64).sqrt();
            (n > 0).then_some((p - h, p + h))
        }
        fn difference(&self, k1: u64, n1: u64, k2: u64, n2: u64) -> Option<(f64, f64)> {
            let (a, b) = (self.rate(k1, n1)?, self.rate(k2, n2)?);
            let d = k1 as f64 / n1 as f64 - k2 as f64 / n2 as f64;
            let h = (((a.1 - a.0) / 2.0).powi(2) + ((b.1 - b.0) / 2.0).powi(2)).sqrt();
            Some((d - h, d + h))
        }
        fn method(&self) -> &'static str {
            "Wald"
        }
    }

    pub fn run() {
        let n = 100_000;
        let mut rng = StdRng::seed_from_u64(1);
        let segments = ["new", "active", "loyal", "lapsed", "high_value_at_risk"];
        let units: Vec<Unit> = (0..n)
            .map(|_| {
                let treated = rng.gen_bool(0.9);
                let converted = rng.gen_bool(if treated { 0.12 } else { 0.10 });
                Unit {
                    treated,
                    converted,
                    revenue: if converted { rng.gen_range(10.0..300.0) } else { 0.0 },
                    segment: segments[rng.gen_range(0..segments.len())].to_string(),
                    features: (0..10).map(|_| rng.gen_bool(0.9).then(|| rng.gen_range(0.0..100.0))).collect(),
                }
            })
            .collect();
        let names: Vec<String> = (0..10).map(|i| format!("f{i}")).collect();
        for (label, resamples) in [("without bootstrap", 0), ("with 1,000 bootstrap resamples", 1000)] {
            let opts = Options { resamples, ..Options::default() };
            let ms: Vec<f64> = (0..5)
                .map(|_| {
                    let start = Instant::now();
                    black_box(analyse(black_box(&units), &names, &Wald, &opts));
                    start.elapsed().as_secs_f64() * 1000.0
                })
                .collect();
            let (median, lo, hi) = median_and_spread(ms);
            println!(
                "uplift::analyse, {n} customers, 10 features, {label}: median {median:.1} ms (min {lo:.1}, max {hi:.1}, 5 runs)"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------------------
// recs: fit time on about 3M simulated order lines, scoring time for every customer (one thread).
// ---------------------------------------------------------------------------------------------------------
mod recs {
    use super::{Instant, median_and_spread};
    use nudge_decide::recs::{self as r, FitOptions};
    use nudge_decide::sim::{SimArgs, baskets};
    use std::hint::black_box;

    pub fn run() {
        let t = Instant::now();
        let w = baskets::world(&SimArgs { customers: 64_000, days: 365, seed: 5 });
        let lines: usize = w.orders.iter().map(|o| o.products.len()).sum();
        println!(
            "recs: simulated {} orders, {lines} order lines in {:.2} s",
            w.orders.len(),
            t.elapsed().as_secs_f64()
        );
        let opts = FitOptions { now: Some(baskets::NOW), ..FitOptions::default() };
        let mut fits = Vec::new();
        let mut model = None;
        for _ in 0..3 {
            let t = Instant::now();
            model = Some(r::fit(black_box(&w.orders), &w.products, &opts).expect("fits"));
            fits.push(t.elapsed().as_secs_f64());
        }
        let m = model.expect("fitted");
        let (med, lo, hi) = median_and_spread(fits);
        println!("recs: fit on {lines} order lines: median {med:.3} s (min {lo:.3}, max {hi:.3}), bar 2 s");
        // Scoring: every customer's history, top 10 by the blend.
        let mut starts = vec![0];
        for i in 1..w.orders.len() {
            if w.orders[i].customer != w.orders[i - 1].customer {
                starts.push(i);
            }
        }
        starts.push(w.orders.len());
        let hists: Vec<Vec<(i64, Vec<u32>)>> =
            starts.windows(2).map(|s| m.index_history(&w.orders[s[0]..s[1]])).collect();
        let served = m.body.metrics["served"].as_str().unwrap_or("?").to_string();
        let time = |f: &dyn Fn(&r::IndexedHistory)| {
            let mut per_100k = Vec::new();
            for _ in 0..3 {
                let t = Instant::now();
                for h in &hists {
                    f(h);
                }
                per_100k.push(t.elapsed().as_secs_f64() * 100_000.0 / hists.len() as f64);
            }
            median_and_spread(per_100k)
        };
        let (med, lo, hi) = time(&|h| {
            black_box(m.top_of(h, baskets::NOW, 10));
        });
        println!(
            "recs: scoring {} customers (served: {served}): median {med:.3} s per 100k (min {lo:.3}, max {hi:.3}), bar 1 s",
            hists.len()
        );
        // The same on every core (each thread a share of the customers; the model is shared, the scratch
        // space is per thread): how fast a whole store is scored, which is what precomputing does.
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut per_100k = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            std::thread::scope(|scope| {
                for part in hists.chunks(hists.len().div_ceil(threads)) {
                    let m = &m;
                    scope.spawn(move || {
                        for h in part {
                            black_box(m.top_of(h, baskets::NOW, 10));
                        }
                    });
                }
            });
            per_100k.push(t.elapsed().as_secs_f64() * 100_000.0 / hists.len() as f64);
        }
        let (med, lo, hi) = median_and_spread(per_100k);
        println!(
            "recs: the same on {threads} threads: median {med:.3} s per 100k (min {lo:.3}, max {hi:.3}), bar 1 s"
        );
        // What serving runs per customer: the history indexed from its baskets, scored, and the default
        // merchandiser rules applied against the whole catalogue (5 products).
        let catalogue = r::Catalogue::new(&w.products);
        let config = r::RecsConfig::default();
        let customers: Vec<&[r::Basket]> = starts.windows(2).map(|s| &w.orders[s[0]..s[1]]).collect();
        let mut per_100k = Vec::new();
        for _ in 0..3 {
            let t = Instant::now();
            for orders in &customers {
                black_box(m.recommend(
                    r::CustomerHistory { orders, segments: &[] },
                    baskets::NOW,
                    r::Rules { config: &config, catalogue: &catalogue },
                ));
            }
            per_100k.push(t.elapsed().as_secs_f64() * 100_000.0 / customers.len() as f64);
        }
        let (med, lo, hi) = median_and_spread(per_100k);
        println!(
            "recs: recommend() with the default rules (from baskets): median {med:.3} s per 100k (min {lo:.3}, max {hi:.3})"
        );
        let (med, lo, hi) = time(&|h| {
            black_box(m.top(&m.candidates(h, baskets::NOW), 10));
        });
        println!(
            "recs: the same through every candidate's parts: median {med:.3} s per 100k (min {lo:.3}, max {hi:.3})"
        );
        let (med, lo, hi) = time(&|h| {
            black_box(m.candidates(h, baskets::NOW).top(m.body.weights, 10));
        });
        println!(
            "recs: the same with the linear blend: median {med:.3} s per 100k (min {lo:.3}, max {hi:.3})"
        );
        let (med, lo, hi) = time(&|h| {
            black_box(m.candidates(h, baskets::NOW));
        });
        println!("recs: the candidates alone: median {med:.3} s per 100k (min {lo:.3}, max {hi:.3})");
    }
}
