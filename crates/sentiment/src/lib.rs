//! Review sentiment and review themes. Pure: no I/O, no global state beyond the lexicons parsed once.
//!
//! # Polarity: VADER at parity with the reference
//!
//! [`polarity`] scores a text the way the reference implementation, the Python package
//! `vaderSentiment` 3.3.2, does: VADER (Hutto & Gilbert, ICWSM-14) is a lexicon of about 7,500 words,
//! emoticons and initialisms, each with a mean human-rated valence from −4 to 4, plus rules that adjust a
//! word's valence from its context:
//!
//! - boosters and dampeners before a word ("very", "extremely", "kind of", "barely", …) add or remove
//!   0.293, and less for the second and third word back;
//! - a word in ALL CAPS among mixed-case text is emphasised by a further 0.733;
//! - a negation ("not", "never", "isn't", any word containing "n't", …) within three words before flips
//!   the valence and scales it by −0.74; "least" negates unless it follows "at" or "very";
//! - after "but", earlier words count half and later words one and a half times;
//! - idioms and special cases the reference knows ("the bomb", "bad ass", "kiss of death", "never so
//!   good", "without doubt", …);
//! - emoji are replaced by their textual descriptions from VADER's emoji lexicon before scoring;
//! - "!" (up to four) and "?" (up to three, or 0.96 beyond) push the sum away from zero.
//!
//! The sum `s` of the adjusted valences is normalised into the compound score `s / √(s² + α)` with
//! α = 15, clamped to [−1, 1] and rounded to four decimals as the reference rounds it; `neg`, `neu` and
//! `pos` are the proportions of negative, neutral and positive weight, rounded to three decimals.
//!
//! Text in ASCII, accented Latin letters, emoji, curly quotes, dashes and symbols (nearly every review
//! in a Latin script) is scored by this crate's own implementation of the rules (`vader.rs`), over the
//! VADER lexicon and emoji descriptions committed in `data/` (MIT-licensed data of the VADER project;
//! notice in `data/LICENSE-vader-lexicon`). Any other text — other scripts, unusual spaces, letters
//! whose case mappings differ between Python and Rust — goes to the `vader-parity` crate (pinned),
//! which reproduces Python's Unicode casing and whitespace rules. **Parity claim**: on every
//! demo sentence of the reference package (its example, tricky, paragraph, tag and translation
//! sentences), on this crate's own review and hostile sentences and on 600 generated sentences dense in
//! the words the rules look at, all four scores equal the reference's within 0.001 (in practice
//! exactly). The test `tests/parity.rs` checks it at test time by running the reference through
//! `tests/vader_reference.py` when `NUDGE_VADER_DIR` names a directory where `vaderSentiment` is
//! installed; without it the test says it is skipped. `tests/differential.rs` compares the ASCII
//! scoring with `vader-parity` on 20,000 generated sentences without Python.
//!
//! One difference comes from Python itself: from CPython 3.12 on, `sum` adds floats with compensation,
//! so when the valences nearly cancel (−1.2, 3.2, −2.0 sum to 0 added plainly, to 2e-16 with
//! compensation) the two see different signs and add or not the punctuation emphasis. The ASCII
//! scoring adds plainly, as CPython up to 3.11 does (the one the parity test runs here);
//! `vader-parity` follows 3.12 on. Such sums are rare (1 in 20,000 generated sentences).
//!
//! # Themes
//!
//! [`themes`] finds which of five themes a review talks about — shipping, sizing, quality, price,
//! service — with a keyword method described in [`theme`]'s module docs, measured on a labelled sample
//! in `data/themes_sample.tsv` (precision and recall per theme: `cargo run -p nudge-sentiment --example
//! themes_report`).
//!
//! # Reviews
//!
//! [`score_review`] is what the pipeline calls: the compound of the title and the body scored as one
//! text (title, a newline, body) and the themes of both. A review is read up to [`MAX_REVIEW_CHARS`]
//! characters (VADER's cost grows with the square of the length for some texts).
//!
//! # Speed
//!
//! `cargo bench -p nudge-sentiment --bench vader` times it on the review sentences in
//! `benches/sentences.txt`; `benches/vader_reference.py` times the reference on the same sentences.

use std::sync::LazyLock;

use nudge_model::ReviewSentiment;
use vader_parity::SentimentIntensityAnalyzer;

pub mod theme;
mod vader;

pub use theme::{Theme, themes};

/// VADER's scores of a text.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Polarity {
    /// Proportion of negative weight, 0 … 1, three decimals.
    pub neg: f64,
    /// Proportion of neutral weight, 0 … 1, three decimals.
    pub neu: f64,
    /// Proportion of positive weight, 0 … 1, three decimals.
    pub pos: f64,
    /// Normalised sum of valences, −1 … 1, four decimals.
    pub compound: f64,
}

static ANALYZER: LazyLock<SentimentIntensityAnalyzer> = LazyLock::new(SentimentIntensityAnalyzer::new);

/// Scores `text` as the reference vaderSentiment 3.3.2 does. Total: any text gets scores; text with
/// words but nothing scoreable is neutral (compound 0, neu 1), text with no word at all (empty, only
/// whitespace) scores 0 everywhere, as in the reference.
pub fn polarity(text: &str) -> Polarity {
    vader::polarity_plain(text).unwrap_or_else(|| {
        let s = ANALYZER.polarity_scores(text);
        Polarity { neg: s.neg, neu: s.neu, pos: s.pos, compound: s.compound }
    })
}

/// The most characters of a review [`score_review`] reads. VADER's rules look back over the whole
/// text for each word ("but", the idioms), so its cost grows with the square of the length, in the
/// reference as here; a review longer than this (a few pages) is scored on its first part, cut at a
/// whitespace so that no word is split.
pub const MAX_REVIEW_CHARS: usize = 10_000;

/// The text [`score_review`] scores: the title and the body joined by a newline (VADER splits on
/// whitespace, so the join adds no token), or the body alone; cut to [`MAX_REVIEW_CHARS`].
pub fn review_text(title: Option<&str>, body: &str) -> String {
    let mut text = match title.map(str::trim).filter(|t| !t.is_empty()) {
        Some(t) => format!("{t}\n{body}"),
        None => body.to_owned(),
    };
    if let Some((cut, _)) = text.char_indices().nth(MAX_REVIEW_CHARS) {
        let end = text[..cut].rfind(char::is_whitespace).unwrap_or(cut);
        text.truncate(end);
    }
    text
}

/// A review's sentiment: the compound of [`review_text`] and the themes of the title and the body, in
/// [`Theme::ALL`] order, as their names (`shipping`, `sizing`, `quality`, `price`, `service`).
pub fn score_review(title: Option<&str>, body: &str) -> ReviewSentiment {
    let text = review_text(title, body);
    ReviewSentiment {
        compound: polarity(&text).compound,
        themes: themes(&text).into_iter().map(|t| t.as_str().to_owned()).collect(),
    }
}
