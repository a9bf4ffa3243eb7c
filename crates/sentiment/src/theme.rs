//! Review themes by keywords.
//!
//! # Method
//!
//! The text is lower-cased and cut into words (runs of letters, digits and apostrophes; a curly
//! apostrophe counts as a straight one). Each theme has a list of cues; a cue is a sequence of one to
//! three word patterns, and a pattern is either a whole word (`fit`) or a stem ending in `*` (`ship*`
//! matches `ship`, `shipping`, `shipped`). A theme is reported when any of its cues matches at any
//! position. A `$`, `€` or `£` followed by a digit is a price cue on its own.
//!
//! The cue lists were written for precision: words that are ambiguous across themes are only cues in
//! phrases that settle them (`cheap` alone is not a price cue, `cheaply made` is a quality cue; `long`
//! alone is neither sizing nor shipping, `took forever` is shipping; `return` is a service cue only in
//! `return process`, `easy return`, …; `support` only as `support was`, `contacted support`, … so
//! that arch support is not a service; `loose` only as `loose fit`, `a bit loose`, … so that loose
//! threads are not sizing). There is no negation window: "no problem with the delivery"
//! still mentions delivery, which is what a theme is.
//!
//! The labelled sample `data/themes_sample.tsv` measures it; the test `tests/themes.rs` requires a
//! precision of at least 0.8 for every theme.

use std::fmt;
use std::sync::LazyLock;

use crate::vader::FxMap;

/// A theme a review can talk about.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Theme {
    Shipping,
    Sizing,
    Quality,
    Price,
    Service,
}

impl Theme {
    /// Every theme, in the order [`themes`] reports them.
    pub const ALL: [Theme; 5] =
        [Theme::Shipping, Theme::Sizing, Theme::Quality, Theme::Price, Theme::Service];

    /// The theme's name: `shipping`, `sizing`, `quality`, `price`, `service`.
    pub fn as_str(self) -> &'static str {
        match self {
            Theme::Shipping => "shipping",
            Theme::Sizing => "sizing",
            Theme::Quality => "quality",
            Theme::Price => "price",
            Theme::Service => "service",
        }
    }

    /// The theme named `name` (as [`Theme::as_str`] spells it).
    pub fn from_name(name: &str) -> Option<Theme> {
        Theme::ALL.into_iter().find(|t| t.as_str() == name)
    }

    fn cues(self) -> &'static [&'static str] {
        match self {
            Theme::Shipping => SHIPPING,
            Theme::Sizing => SIZING,
            Theme::Quality => QUALITY,
            Theme::Price => PRICE,
            Theme::Service => SERVICE,
        }
    }
}

impl fmt::Display for Theme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

const SHIPPING: &[&str] = &[
    "ship*",
    "deliver*",
    "arriv*",
    "courier*",
    "tracking",
    "parcel*",
    "postage",
    "postal",
    "dispatch*",
    "transit",
    "packag*",
    "package",
    "box arrived",
    "in the mail",
    "took forever",
    "took weeks",
    "took ages",
    "came quickly",
    "came fast",
    "came early",
    "came late",
    "came on time",
    "showed up",
    "fedex",
    "usps",
    "dhl",
    "royal mail",
    "lost in",
    "never came",
    "never received",
    "still waiting",
    "on time",
];

const SIZING: &[&str] = &[
    "size*",
    "sizing",
    "fit",
    "fits",
    "fitted",
    "fitting",
    "too small",
    "too big",
    "too large",
    "too tight",
    "too loose",
    "too baggy",
    "too snug",
    "too wide",
    "too narrow",
    "runs small",
    "runs large",
    "runs big",
    "run small",
    "run large",
    "run big",
    "tight",
    "loose fit",
    "loose around",
    "loose in",
    "loose on",
    "bit loose",
    "little loose",
    "snug",
    "baggy",
    "length",
    "waist*",
    "inseam",
    "sleeves are",
    "sleeves too",
    "too short",
    "true to",
    "smaller than",
    "bigger than",
    "larger than",
    "went up a",
    "sized up",
    "size up",
    "order up",
    "order a size",
    "size down",
    "sized down",
];

const QUALITY: &[&str] = &[
    "quality",
    "durab*",
    "sturd*",
    "flims*",
    "broke",
    "broken",
    "breaks",
    "broke*",
    "tore",
    "torn",
    "ripped",
    "rips",
    "fell apart",
    "fall apart",
    "falls apart",
    "falling apart",
    "stitch*",
    "loose thread*",
    "seam",
    "seams",
    "material*",
    "fabric*",
    "well made",
    "poorly made",
    "badly made",
    "cheaply",
    "feels cheap",
    "felt cheap",
    "looks cheap",
    "cheap material*",
    "cheap plastic",
    "defect*",
    "faded",
    "fades",
    "fading",
    "pilling",
    "pilled",
    "craftsmanship",
    "construction",
    "holding up",
    "held up",
    "holds up",
    "lasted",
    "last long",
    "wore out",
    "worn out",
    "a hole",
    "holes",
    "shrank",
    "shrunk",
    "shrink*",
    "well built",
    "feels solid",
    "solid build",
    "premium",
    "zipper",
    "peel*",
    "cracked",
    "scratch*",
    "stopped working",
    "leather",
    "thin",
];

const PRICE: &[&str] = &[
    "price*",
    "pricey",
    "pricing",
    "expensive",
    "overpriced",
    "cost",
    "costs",
    "costly",
    "value",
    "worth the money",
    "worth every",
    "worth the price",
    "not worth",
    "penny",
    "bargain",
    "great deal",
    "good deal",
    "a steal",
    "discount*",
    "on sale",
    "sale price",
    "money",
    "affordable",
    "budget",
    "for the price",
    "cheaper",
    "cheap for",
    "cheap price",
    "dollars",
    "bucks",
    "coupon",
    "promo",
    "spend",
    "spent",
    "paid",
    "pay",
];

const SERVICE: &[&str] = &[
    "customer service",
    "customer support",
    "customer care",
    "support team",
    "service",
    "support was",
    "support were",
    "support is",
    "contacted support",
    "their support",
    "tech support",
    "staff",
    "seller",
    "agent",
    "representative",
    "rep",
    "refund*",
    "return process",
    "returns process",
    "return policy",
    "easy return*",
    "easy to return",
    "hassle free",
    "exchange*",
    "sent a replacement",
    "sent me a replacement",
    "free replacement",
    "replied",
    "reply",
    "responded",
    "response",
    "responsive",
    "unresponsive",
    "rude",
    "emailed",
    "email*",
    "contacted",
    "got back to me",
    "get back to me",
    "apolog*",
    "resolved",
    "live chat",
    "the company",
    "shop owner",
    "store owner",
    "helpful team",
    "phone call",
    "called them",
    "no answer",
    "ignored",
];

/// One cue, compiled: its theme and its word patterns (text, whether a stem).
struct Cue {
    theme: Theme,
    parts: Vec<(&'static str, bool)>,
}

/// Cues indexed by their first pattern: whole words in a hash map, stems in a list.
struct CueIndex {
    cues: Vec<Cue>,
    by_word: FxMap<Vec<usize>>,
    by_stem: Vec<(&'static str, usize)>,
}

static CUES: LazyLock<CueIndex> = LazyLock::new(|| {
    let mut index = CueIndex { cues: Vec::new(), by_word: FxMap::default(), by_stem: Vec::new() };
    for theme in Theme::ALL {
        for cue in theme.cues() {
            let parts: Vec<(&'static str, bool)> = cue
                .split(' ')
                .map(|p| match p.strip_suffix('*') {
                    Some(stem) => (stem, true),
                    None => (p, false),
                })
                .collect();
            let id = index.cues.len();
            match parts[0] {
                (stem, true) => index.by_stem.push((stem, id)),
                (word, false) => index.by_word.entry(word).or_default().push(id),
            }
            index.cues.push(Cue { theme, parts });
        }
    }
    index
});

/// The themes `text` talks about, each once, in [`Theme::ALL`] order. Never panics; the empty text
/// has none.
pub fn themes(text: &str) -> Vec<Theme> {
    let lower = text.to_lowercase();
    let words: Vec<&str> = lower
        .split(|c: char| !(c.is_alphanumeric() || c == '\'' || c == '\u{2019}'))
        .map(|w| w.trim_matches(|c| c == '\'' || c == '\u{2019}'))
        .filter(|w| !w.is_empty())
        .collect();
    let index = &*CUES;
    let mut found = [false; 5];
    if has_currency_amount(&lower) {
        found[Theme::Price as usize] = true;
    }
    for (p, word) in words.iter().enumerate() {
        let exact = index.by_word.get(word).map(Vec::as_slice).unwrap_or(&[]);
        let stems = index.by_stem.iter().filter(|(stem, _)| word.starts_with(stem)).map(|&(_, id)| id);
        for id in exact.iter().copied().chain(stems) {
            let cue = &index.cues[id];
            if !found[cue.theme as usize] && matches_at(&words[p..], &cue.parts) {
                found[cue.theme as usize] = true;
            }
        }
    }
    Theme::ALL.into_iter().filter(|t| found[*t as usize]).collect()
}

fn has_currency_amount(text: &str) -> bool {
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if matches!(c, '$' | '€' | '£') && chars.peek().is_some_and(|d| d.is_ascii_digit()) {
            return true;
        }
    }
    false
}

/// Whether `words` starts with the cue's patterns.
fn matches_at(words: &[&str], parts: &[(&str, bool)]) -> bool {
    parts.len() <= words.len()
        && words.iter().zip(parts).all(|(w, &(p, stem))| if stem { w.starts_with(p) } else { *w == p })
}

/// Precision and recall of [`themes`] for one theme on a labelled sample.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ThemeMetrics {
    pub theme: Theme,
    /// Reviews labelled with the theme and found to have it.
    pub true_positives: usize,
    /// Reviews found to have the theme but not labelled with it.
    pub false_positives: usize,
    /// Reviews labelled with the theme but not found to have it.
    pub false_negatives: usize,
}

impl ThemeMetrics {
    /// Of the reviews given the theme, the share labelled with it (1 when none was given it).
    pub fn precision(&self) -> f64 {
        ratio(self.true_positives, self.true_positives + self.false_positives)
    }

    /// Of the reviews labelled with the theme, the share given it (1 when none is labelled with it).
    pub fn recall(&self) -> f64 {
        ratio(self.true_positives, self.true_positives + self.false_negatives)
    }
}

fn ratio(num: usize, den: usize) -> f64 {
    if den == 0 { 1.0 } else { num as f64 / den as f64 }
}

/// A labelled review: its text and the themes a reader files it under.
#[derive(Debug, Clone, PartialEq)]
pub struct Labelled {
    pub labels: Vec<Theme>,
    pub text: String,
}

/// Reads a labelled sample: tab-separated `themes<TAB>review` lines, themes comma-separated or `-` for
/// none; `#` comments, blank lines and a `themes<TAB>review` header are skipped.
pub fn parse_sample(tsv: &str) -> Result<Vec<Labelled>, String> {
    let mut out = Vec::new();
    for (i, line) in tsv.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') || line.starts_with("themes\t") {
            continue;
        }
        let (labels, text) = line.split_once('\t').ok_or_else(|| format!("line {}: no tab", i + 1))?;
        let labels = if labels.trim() == "-" {
            Vec::new()
        } else {
            labels
                .split(',')
                .map(|name| {
                    Theme::from_name(name.trim())
                        .ok_or_else(|| format!("line {}: unknown theme {name:?}", i + 1))
                })
                .collect::<Result<Vec<_>, _>>()?
        };
        out.push(Labelled { labels, text: text.to_owned() });
    }
    Ok(out)
}

/// Precision and recall of [`themes`] per theme (in [`Theme::ALL`] order) on `sample`.
pub fn evaluate(sample: &[Labelled]) -> Vec<ThemeMetrics> {
    let mut metrics: Vec<ThemeMetrics> = Theme::ALL
        .into_iter()
        .map(|theme| ThemeMetrics { theme, true_positives: 0, false_positives: 0, false_negatives: 0 })
        .collect();
    for review in sample {
        let found = themes(&review.text);
        for m in &mut metrics {
            match (review.labels.contains(&m.theme), found.contains(&m.theme)) {
                (true, true) => m.true_positives += 1,
                (false, true) => m.false_positives += 1,
                (true, false) => m.false_negatives += 1,
                (false, false) => {}
            }
        }
    }
    metrics
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stems_phrases_and_currency() {
        assert_eq!(
            themes("Shipped fast, runs small, great price!"),
            vec![Theme::Shipping, Theme::Sizing, Theme::Price]
        );
        assert_eq!(
            themes("Cheaply made and customer service never replied"),
            vec![Theme::Quality, Theme::Service]
        );
        assert_eq!(themes("Paid $40 for it"), vec![Theme::Price]);
        assert_eq!(themes("$ 40"), vec![]);
        assert!(themes("").is_empty());
        assert!(themes("I love it").is_empty());
    }

    #[test]
    fn names_round_trip() {
        for t in Theme::ALL {
            assert_eq!(Theme::from_name(t.as_str()), Some(t));
            assert_eq!(t.to_string(), t.as_str());
        }
        assert_eq!(Theme::from_name("colour"), None);
    }
}
