//! Benchmarks of the decision models, hand-timed (release build):
//! `cargo bench -p nudge-decide --bench decide -- [--only NAME]`, NAME one of the sections below.
//! Each section prints the median and the spread (min–max) of repeated timings.

use std::hint::black_box;
use std::time::Instant;

fn main() {
    let mut only: Option<String> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        if a == "--only" {
            only = args.next();
        }
    }
    let run = |name: &str| only.as_deref().is_none_or(|o| o == name);
    if run("send_time") {
        send_time();
    }
    if run("cold_start") {
        cold_start();
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
        scored_at: time::OffsetDateTime::UNIX_EPOCH,
    }
}
