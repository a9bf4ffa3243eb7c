//! Benchmark: VADER polarity, sentences per second on one thread, over the fixed review sentences in
//! `benches/sentences.txt` (the same file `benches/vader_reference.py` times the Python reference on).
//! Also times [`nudge_sentiment::themes`] and [`nudge_sentiment::score_review`] on them.
//!
//! Run with `cargo bench -p nudge-sentiment --bench vader -- [--rounds N]` (release build), and
//! `NUDGE_VADER_DIR=… python3 crates/sentiment/benches/vader_reference.py` beside it.

use std::hint::black_box;
use std::time::Instant;

const SENTENCES: &str = include_str!("sentences.txt");

fn main() {
    let mut rounds: usize = 20_000;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        if arg == "--rounds"
            && let Some(n) = args.next().and_then(|v| v.parse().ok())
        {
            rounds = n;
        }
    }
    let sentences: Vec<&str> = SENTENCES.lines().filter(|l| !l.trim().is_empty()).collect();
    // Warm up: parses the lexicons once.
    let mut sum = 0.0;
    for s in &sentences {
        sum += nudge_sentiment::polarity(s).compound;
    }
    println!("{} sentences, compound sum {sum:.4}, {rounds} rounds", sentences.len());

    time("polarity", rounds, &sentences, |s| {
        black_box(nudge_sentiment::polarity(black_box(s)).compound);
    });
    let ascii: Vec<&str> = sentences.iter().copied().filter(|s| s.is_ascii()).collect();
    time("polarity, ASCII sentences only", rounds, &ascii, |s| {
        black_box(nudge_sentiment::polarity(black_box(s)).compound);
    });
    let other: Vec<&str> = sentences.iter().copied().filter(|s| !s.is_ascii()).collect();
    time("polarity, non-ASCII sentences only", rounds, &other, |s| {
        black_box(nudge_sentiment::polarity(black_box(s)).compound);
    });
    time("themes", rounds, &sentences, |s| {
        black_box(nudge_sentiment::themes(black_box(s)).len());
    });
    time("score_review", rounds, &sentences, |s| {
        black_box(nudge_sentiment::score_review(Some("Review"), black_box(s)).compound);
    });
}

fn time(name: &str, rounds: usize, sentences: &[&str], mut f: impl FnMut(&str)) {
    let start = Instant::now();
    for _ in 0..rounds {
        for s in sentences {
            f(s);
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let n = (rounds * sentences.len()) as f64;
    println!("{name:<36} {:>10.0} sentences/s single-threaded ({n} in {elapsed:.3} s)", n / elapsed);
}
