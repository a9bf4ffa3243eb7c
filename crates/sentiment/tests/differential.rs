//! This crate's own scoring of ASCII text (with emoji and plain non-ASCII characters) against `vader-parity` (itself checked against the reference
//! vaderSentiment), on many generated sentences built from the words the rules look at: boosters,
//! dampeners, negations, "but", "least", "kind of", idioms, ALL CAPS, emoticons, punctuation runs. Runs
//! without Python; `tests/parity.rs` checks against the reference itself.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use vader_parity::SentimentIntensityAnalyzer;

const VOCAB: &[&str] = &[
    "good",
    "bad",
    "great",
    "terrible",
    "love",
    "hate",
    "ok",
    "fine",
    "not",
    "never",
    "no",
    "isn't",
    "don't",
    "wasn't",
    "without",
    "doubt",
    "so",
    "this",
    "very",
    "extremely",
    "really",
    "kind",
    "of",
    "sort",
    "kinda",
    "barely",
    "just",
    "enough",
    "but",
    "BUT",
    "least",
    "at",
    "the",
    "bomb",
    "shit",
    "bad",
    "ass",
    "yeah",
    "right",
    "kiss",
    "death",
    "to",
    "die",
    "for",
    "bus",
    "stop",
    "beating",
    "heart",
    "or",
    "nor",
    "GOOD",
    "BAD",
    "VERY",
    "LOVE",
    ":)",
    ":(",
    ":-D",
    "<3",
    "lol",
    "sux",
    "!!!",
    "?",
    "??",
    "...",
    "good!",
    "bad.",
    "(great)",
    "'nice'",
    "it",
    "was",
    "shoes",
    "fit",
    "arrived",
    "late",
    "cheap",
    "quality",
    "refund",
    "friggin",
    "uber",
    "slightly",
    "most",
    "less",
    "little",
    "almost",
    "n't",
    "nope",
    "despite",
    "rarely",
    "funny",
    "smart",
    "handsome",
    "hardly",
    "sort-of",
    "kind-of",
    "uh-uh",
    "ain't",
    "cant",
    "can't",
    "Bad",
    "Good",
    "x",
    "a",
    "I",
    "okay",
];

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 0.001
}

#[test]
fn ascii_scoring_matches_the_parity_crate_on_generated_sentences() {
    let reference = SentimentIntensityAnalyzer::new();
    let mut rng = StdRng::seed_from_u64(20_261_204);
    let seps = [" ", " ", " ", "  ", "\t", "\n", ", ", "! "];
    let mut exact = 0;
    let mut cancelled = 0;
    let total = 20_000;
    for _ in 0..total {
        let len = rng.gen_range(0..14);
        let mut text = String::new();
        for k in 0..len {
            if k > 0 {
                text.push_str(seps[rng.gen_range(0..seps.len())]);
            }
            text.push_str(VOCAB[rng.gen_range(0..VOCAB.len())]);
        }
        let ours = nudge_sentiment::polarity(&text);
        let theirs = reference.polarity_scores(&text);
        // Valences that cancel: CPython before 3.12 (and this crate) add floats plainly, CPython 3.12 on
        // (which `vader-parity` follows) with compensation, so one may see 0 where the other sees a
        // residue of 1e-16, and then adds or not the "!" and "?" emphasis. Only then may compounds differ.
        if !close(ours.compound, theirs.compound) && (ours.compound == 0.0 || theirs.compound == 0.0) {
            cancelled += 1;
            continue;
        }
        assert!(
            close(ours.compound, theirs.compound)
                && close(ours.neg, theirs.neg)
                && close(ours.neu, theirs.neu)
                && close(ours.pos, theirs.pos),
            "{text:?}: ours {ours:?}, vader-parity {theirs:?}"
        );
        if ours.compound == theirs.compound {
            exact += 1;
        }
    }
    println!("{exact} of {total} compounds bit-identical, {cancelled} cancelled sums");
    assert!(cancelled * 100 <= total, "{cancelled} cancelled sums");
    assert!(exact + cancelled == total, "{exact} of {total} compounds bit-identical");
}
