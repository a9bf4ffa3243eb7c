//! VADER on ASCII text, written for speed: one lower-cased copy of the text, tokens as slices of it,
//! a hash map of the lexicon with a cheap hasher, no other allocation but the token and valence lists.
//!
//! Emoji are replaced by their descriptions first, as the reference does; curly quotes, dashes,
//! symbols and pictographs (no case, not whitespace) pass through as they would in Python. Text with
//! any other non-ASCII character (accents, other scripts, unusual spaces) goes to the `vader-parity`
//! crate instead, which reproduces Python's Unicode casing and whitespace rules.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::LazyLock;

use crate::Polarity;

/// Added to (or, for a negative context, taken from) a word's valence by a booster before it.
const B_INCR: f64 = 0.293;
/// Emphasis of a word in ALL CAPS when the text also has words that are not.
const C_INCR: f64 = 0.733;
/// A negated word's valence is multiplied by this.
const N_SCALAR: f64 = -0.74;
/// The normalisation constant of the compound score.
const ALPHA: f64 = 15.0;

/// Words that negate the word after them (up to three words on); any word containing "n't" does too.
const NEGATIONS: &[&str] = &[
    "aint",
    "arent",
    "cannot",
    "cant",
    "couldnt",
    "darent",
    "didnt",
    "doesnt",
    "ain't",
    "aren't",
    "can't",
    "couldn't",
    "daren't",
    "didn't",
    "doesn't",
    "dont",
    "hadnt",
    "hasnt",
    "havent",
    "isnt",
    "mightnt",
    "mustnt",
    "neither",
    "don't",
    "hadn't",
    "hasn't",
    "haven't",
    "isn't",
    "mightn't",
    "mustn't",
    "neednt",
    "needn't",
    "never",
    "none",
    "nope",
    "nor",
    "not",
    "nothing",
    "nowhere",
    "oughtnt",
    "shant",
    "shouldnt",
    "uhuh",
    "wasnt",
    "werent",
    "oughtn't",
    "shan't",
    "shouldn't",
    "uh-uh",
    "wasn't",
    "weren't",
    "without",
    "wont",
    "wouldnt",
    "won't",
    "wouldn't",
    "rarely",
    "seldom",
    "despite",
];

/// Intensifiers (+) and dampeners (−) of the word after them.
const BOOSTERS_UP: &[&str] = &[
    "absolutely",
    "amazingly",
    "awfully",
    "completely",
    "considerable",
    "considerably",
    "decidedly",
    "deeply",
    "effing",
    "enormous",
    "enormously",
    "entirely",
    "especially",
    "exceptional",
    "exceptionally",
    "extreme",
    "extremely",
    "fabulously",
    "flipping",
    "flippin",
    "frackin",
    "fracking",
    "fricking",
    "frickin",
    "frigging",
    "friggin",
    "fully",
    "fuckin",
    "fucking",
    "fuggin",
    "fugging",
    "greatly",
    "hella",
    "highly",
    "hugely",
    "incredible",
    "incredibly",
    "intensely",
    "major",
    "majorly",
    "more",
    "most",
    "particularly",
    "purely",
    "quite",
    "really",
    "remarkably",
    "so",
    "substantially",
    "thoroughly",
    "total",
    "totally",
    "tremendous",
    "tremendously",
    "uber",
    "unbelievably",
    "unusually",
    "utter",
    "utterly",
    "very",
];
const BOOSTERS_DOWN: &[&str] = &[
    "almost",
    "barely",
    "hardly",
    "just enough",
    "kind of",
    "kinda",
    "kindof",
    "kind-of",
    "less",
    "little",
    "marginal",
    "marginally",
    "occasional",
    "occasionally",
    "partly",
    "scarce",
    "scarcely",
    "slight",
    "slightly",
    "somewhat",
    "sort of",
    "sorta",
    "sortof",
    "sort-of",
];

/// Phrases whose valence replaces the word's.
const SPECIAL_CASES: &[(&str, f64)] = &[
    ("the shit", 3.0),
    ("the bomb", 3.0),
    ("bad ass", 1.5),
    ("badass", 1.5),
    ("bus stop", 0.0),
    ("yeah right", -2.0),
    ("kiss of death", -1.5),
    ("to die for", 3.0),
    ("beating heart", 3.5),
];

/// A small multiplicative hasher for short keys (the lexicon's words).
#[derive(Default)]
pub(crate) struct FxHasher(u64);

impl Hasher for FxHasher {
    fn write(&mut self, bytes: &[u8]) {
        const K: u64 = 0x51_7c_c1_b7_27_22_0a_95;
        let mut chunks = bytes.chunks_exact(8);
        for c in &mut chunks {
            let word = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
            self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(K);
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut buf = [0u8; 8];
            buf[..rest.len()].copy_from_slice(rest);
            self.0 =
                (self.0.rotate_left(5) ^ u64::from_le_bytes(buf) ^ (rest.len() as u64) << 59).wrapping_mul(K);
        }
    }
    fn finish(&self) -> u64 {
        self.0
    }
}

pub(crate) type FxMap<V> = HashMap<&'static str, V, BuildHasherDefault<FxHasher>>;

/// What the rules need to know of a lower-cased word, found with one look-up.
#[derive(Debug, Clone, Copy, Default)]
struct Entry {
    /// Its valence, when the word is in the lexicon.
    lexicon: Option<f64>,
    /// Its booster (+) or dampener (−) increment.
    booster: Option<f64>,
    /// Whether it is a negation word (words containing "n't" are checked apart).
    negation: bool,
}

static TABLE: LazyLock<FxMap<Entry>> = LazyLock::new(|| {
    let mut table: FxMap<Entry> = FxMap::default();
    for line in include_str!("../data/vader_lexicon.txt").lines() {
        let mut cols = line.trim().split('\t');
        if let (Some(word), Some(mean)) = (cols.next(), cols.next())
            && let Ok(mean) = mean.parse::<f64>()
        {
            table.entry(word).or_default().lexicon = Some(mean);
        }
    }
    for w in BOOSTERS_UP {
        table.entry(w).or_default().booster = Some(B_INCR);
    }
    for w in BOOSTERS_DOWN {
        table.entry(w).or_default().booster = Some(-B_INCR);
    }
    for w in NEGATIONS {
        table.entry(w).or_default().negation = true;
    }
    table
});

/// Python's `str.isspace` on ASCII.
fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r' | 0x1c..=0x1f)
}

/// Python's `str.isupper` on ASCII and plain characters: some upper-case letter and no lower-case one.
fn is_upper(word: &str) -> bool {
    if word.is_ascii() {
        let b = word.as_bytes();
        return b.iter().any(u8::is_ascii_uppercase) && !b.iter().any(u8::is_ascii_lowercase);
    }
    word.chars().any(char::is_uppercase) && !word.chars().any(char::is_lowercase)
}

/// Python's `str.lower` on ASCII and plain characters; every plain letter lower-cases to one letter of
/// the same UTF-8 length, so byte offsets stay valid. `None` if one would not.
fn lower_plain(text: &str) -> Option<String> {
    if text.is_ascii() {
        return Some(text.to_ascii_lowercase());
    }
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        let mut lower = c.to_lowercase();
        match (lower.next(), lower.next()) {
            (Some(l), None) if l.len_utf8() == c.len_utf8() => out.push(l),
            _ => return None,
        }
    }
    Some(out)
}

/// Python's `round(x, decimals)`: the decimal nearest to the exact binary value, ties to even. Values
/// far from a tie take the quick way; near one, the exact decimal expansion decides (the standard
/// library's fixed-precision formatting rounds the exact value, ties to even).
fn round_to(x: f64, decimals: usize) -> f64 {
    let f = 10f64.powi(decimals as i32);
    let y = x * f;
    if (y - y.floor() - 0.5).abs() > 1e-6 {
        return y.round() / f;
    }
    format!("{x:.decimals$}").parse().unwrap_or(x)
}

/// A token: as written, lower-cased, and what the table says of it.
struct Token<'a> {
    word: &'a str,
    lower: &'a str,
    entry: Entry,
}

impl Token<'_> {
    fn in_lexicon(&self) -> bool {
        self.entry.lexicon.is_some()
    }

    fn negates(&self) -> bool {
        self.entry.negation || self.lower.contains("n't")
    }
}

static EMOJI: LazyLock<HashMap<char, &'static str, BuildHasherDefault<FxHasher>>> = LazyLock::new(|| {
    let mut map = HashMap::default();
    for line in include_str!("../data/emoji_utf8_lexicon.txt").lines() {
        let mut cols = line.trim().split('\t');
        if let (Some(key), Some(description)) = (cols.next(), cols.next()) {
            let mut chars = key.chars();
            // The reference looks emoji up one character at a time: longer keys never match.
            if let (Some(c), None) = (chars.next(), chars.next()) {
                map.insert(c, description);
            }
        }
    }
    map
});

/// Non-ASCII characters on which Python's casing and whitespace rules agree with Rust's: not
/// whitespace, and either without case (curly quotes, dashes, ellipsis, symbols, pictographs, joiners,
/// variation selectors) or Latin letters with accents whose case mappings are one letter each way in
/// both (Latin-1 and Latin Extended-A, less the dotted capital I, whose lower case is two characters).
/// Conservative: anything else goes to `vader-parity`.
fn is_plain(c: char) -> bool {
    matches!(u32::from(c),
        0xA1..=0xA9 | 0xAB..=0xB4 | 0xB6..=0xB9 | 0xBB..=0xBF
        | 0xC0..=0x12F | 0x131..=0x17F
        | 0x200B..=0x200D | 0x2010..=0x2027 | 0x2030..=0x205E
        | 0x2190..=0x21FF | 0x2300..=0x23FF | 0x25A0..=0x27BF | 0x2B00..=0x2BFF
        | 0xFE0E | 0xFE0F
        | 0x1F000..=0x1F0FF | 0x1F200..=0x1FAFF)
}

/// Scores `text` when its rules reduce to ASCII ones: all ASCII, or ASCII and plain characters once
/// emoji are replaced by their descriptions (as the reference does). `None` otherwise.
pub(crate) fn polarity_plain(text: &str) -> Option<Polarity> {
    if text.is_ascii() {
        return polarity_ascii(text);
    }
    let emoji = &*EMOJI;
    // The reference's substitution: a description takes the emoji's place, after a space unless one
    // (a plain ' ', or an earlier emoji's substitution start) comes just before it.
    let mut out = String::with_capacity(text.len() + 32);
    let mut prev_space = true;
    for c in text.chars() {
        if let Some(description) = emoji.get(&c) {
            if !prev_space {
                out.push(' ');
            }
            out.push_str(description);
            prev_space = false;
        } else {
            if !c.is_ascii() && !is_plain(c) {
                return None;
            }
            out.push(c);
            prev_space = c == ' ';
        }
    }
    if !out.chars().all(|c| c.is_ascii() || is_plain(c)) {
        return None;
    }
    polarity_ascii(&out)
}

/// Scores `text`, whose non-ASCII characters are all plain (see [`is_plain`]).
fn polarity_ascii(text: &str) -> Option<Polarity> {
    let table = &*TABLE;
    let lower_text = lower_plain(text)?;
    // Tokens: whitespace-separated, with leading and trailing punctuation stripped unless that leaves
    // two characters or fewer (an emoticon such as ":)" or ":-(" stays whole).
    let mut tokens: Vec<Token<'_>> = Vec::with_capacity(text.len() / 5 + 1);
    let bytes = text.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        while i < bytes.len() && is_space(bytes[i]) {
            i += 1;
        }
        let start = i;
        while i < bytes.len() && !is_space(bytes[i]) {
            i += 1;
        }
        if start < i {
            let (mut s, mut e) = (start, i);
            while s < e && bytes[s].is_ascii_punctuation() {
                s += 1;
            }
            while e > s && bytes[e - 1].is_ascii_punctuation() {
                e -= 1;
            }
            // Python counts characters: a multi-byte character is one.
            let chars = bytes[s..e].iter().filter(|&&b| (b & 0xC0) != 0x80).count();
            let (s, e) = if chars <= 2 { (start, i) } else { (s, e) };
            let lower = &lower_text[s..e];
            tokens.push(Token {
                word: &text[s..e],
                lower,
                entry: table.get(lower).copied().unwrap_or_default(),
            });
        }
    }
    let n = tokens.len();
    let upper_count = tokens.iter().filter(|t| is_upper(t.word)).count();
    let cap_diff = upper_count > 0 && upper_count < n;
    let lower = |k: usize| tokens[k].lower;

    let mut sentiments: Vec<f64> = Vec::with_capacity(n);
    for i in 0..n {
        let tok = &tokens[i];
        if tok.entry.booster.is_some() || (i + 1 < n && tok.lower == "kind" && lower(i + 1) == "of") {
            sentiments.push(0.0);
            continue;
        }
        let Some(base) = tok.entry.lexicon else {
            sentiments.push(0.0);
            continue;
        };
        let mut valence = base;
        // "no" before a lexicon word negates it rather than counting itself.
        if tok.lower == "no" && i + 1 < n && tokens[i + 1].in_lexicon() {
            valence = 0.0;
        }
        if (i > 0 && lower(i - 1) == "no")
            || (i > 1 && lower(i - 2) == "no")
            || (i > 2 && lower(i - 3) == "no" && matches!(lower(i - 1), "or" | "nor"))
        {
            valence = base * N_SCALAR;
        }
        if cap_diff && is_upper(tok.word) {
            valence += if valence > 0.0 { C_INCR } else { -C_INCR };
        }
        for back in 0..3 {
            if i <= back || tokens[i - back - 1].in_lexicon() {
                continue;
            }
            let mut s = booster_scalar(&tokens[i - back - 1], valence, cap_diff);
            if back == 1 && s != 0.0 {
                s *= 0.95;
            }
            if back == 2 && s != 0.0 {
                s *= 0.9;
            }
            valence += s;
            valence = negation(valence, &tokens, back, i);
            if back == 2 {
                valence = special_idioms(valence, &tokens, i);
            }
        }
        valence = least(valence, &tokens, i);
        sentiments.push(valence);
    }
    contrast_but(&tokens, &mut sentiments);
    Some(score(&sentiments, text))
}

fn booster_scalar(tok: &Token<'_>, valence: f64, cap_diff: bool) -> f64 {
    let Some(b) = tok.entry.booster else { return 0.0 };
    let mut scalar = if valence < 0.0 { -b } else { b };
    if cap_diff && is_upper(tok.word) {
        scalar += if valence > 0.0 { C_INCR } else { -C_INCR };
    }
    scalar
}

fn negation(valence: f64, tokens: &[Token<'_>], back: usize, i: usize) -> f64 {
    let lower = |k: usize| tokens[k].lower;
    let so_or_this = |w: &str| w == "so" || w == "this";
    match back {
        0 if tokens[i - 1].negates() => valence * N_SCALAR,
        1 => {
            if lower(i - 2) == "never" && so_or_this(lower(i - 1)) {
                valence * 1.25
            } else if lower(i - 2) == "without" && lower(i - 1) == "doubt" {
                valence
            } else if tokens[i - 2].negates() {
                valence * N_SCALAR
            } else {
                valence
            }
        }
        2 => {
            if (lower(i - 3) == "never" && so_or_this(lower(i - 2))) || so_or_this(lower(i - 1)) {
                valence * 1.25
            } else if lower(i - 3) == "without" && (lower(i - 2) == "doubt" || lower(i - 1) == "doubt") {
                valence
            } else if tokens[i - 3].negates() {
                valence * N_SCALAR
            } else {
                valence
            }
        }
        _ => valence,
    }
}

/// Whether the words of `seq` joined by spaces are `phrase`.
fn is_phrase(seq: &[Token<'_>], phrase: &str) -> bool {
    let mut parts = phrase.split(' ');
    seq.iter().all(|t| parts.next() == Some(t.lower)) && parts.next().is_none()
}

fn special_case(seq: &[Token<'_>]) -> Option<f64> {
    SPECIAL_CASES.iter().find(|(p, _)| is_phrase(seq, p)).map(|&(_, v)| v)
}

/// The boosters of two words (all dampeners).
const TWO_WORD_BOOSTERS: [&str; 3] = ["just enough", "kind of", "sort of"];

fn two_word_booster(seq: &[Token<'_>]) -> Option<f64> {
    TWO_WORD_BOOSTERS.iter().any(|p| is_phrase(seq, p)).then_some(-B_INCR)
}

/// Whether any idiom or two-word booster could start at `tok`; when none of the words before a word
/// can, its idiom check changes nothing.
fn may_start_phrase(tok: &Token<'_>) -> bool {
    matches!(tok.lower, "the" | "bad" | "bus" | "yeah" | "kiss" | "to" | "beating" | "just" | "kind" | "sort")
}

/// Idioms around the word at `i` (which is at least 3): the first match of the phrases ending at or
/// just before the word sets the valence; phrases starting at the word override it; two-word
/// dampeners just before the word ("kind of", "sort of") add theirs.
fn special_idioms(mut valence: f64, tokens: &[Token<'_>], i: usize) -> f64 {
    let n = tokens.len();
    if !tokens[i - 3..=i].iter().any(may_start_phrase) {
        return valence;
    }
    let before: [&[Token<'_>]; 5] =
        [&tokens[i - 1..=i], &tokens[i - 2..=i], &tokens[i - 2..i], &tokens[i - 3..i], &tokens[i - 3..i - 1]];
    if let Some(v) = before.iter().find_map(|seq| special_case(seq)) {
        valence = v;
    }
    if n > i + 1
        && let Some(v) = special_case(&tokens[i..i + 2])
    {
        valence = v;
    }
    if n > i + 2
        && let Some(v) = special_case(&tokens[i..i + 3])
    {
        valence = v;
    }
    for seq in [&tokens[i - 3..i], &tokens[i - 3..i - 1], &tokens[i - 2..i]] {
        if let Some(b) = two_word_booster(seq) {
            valence += b;
        }
    }
    valence
}

fn least(valence: f64, tokens: &[Token<'_>], i: usize) -> f64 {
    if i > 0 && tokens[i - 1].lower == "least" && !tokens[i - 1].in_lexicon() {
        if i > 1 {
            let before = tokens[i - 2].lower;
            if before != "at" && before != "very" {
                return valence * N_SCALAR;
            }
            return valence;
        }
        return valence * N_SCALAR;
    }
    valence
}

/// After the first "but", each valence the reference reaches counts half before it and one and a half
/// times after it. The reference finds each value's slot by searching for its first equal value in the
/// list as it is being rewritten, so equal valences land on the first slot; this does the same.
fn contrast_but(tokens: &[Token<'_>], sentiments: &mut [f64]) {
    let Some(bi) = tokens.iter().position(|t| t.lower == "but") else { return };
    for k in 0..sentiments.len() {
        let v = sentiments[k];
        let Some(si) = sentiments.iter().position(|x| *x == v) else { continue };
        if si < bi {
            sentiments[si] = v * 0.5;
        } else if si > bi {
            sentiments[si] = v * 1.5;
        }
    }
}

fn score(sentiments: &[f64], text: &str) -> Polarity {
    if sentiments.is_empty() {
        return Polarity { neg: 0.0, neu: 0.0, pos: 0.0, compound: 0.0 };
    }
    let bytes = text.as_bytes();
    let exclamations = bytes.iter().filter(|&&b| b == b'!').count().min(4);
    let questions = bytes.iter().filter(|&&b| b == b'?').count();
    let ep = exclamations as f64 * 0.292;
    let qm = match questions {
        0 | 1 => 0.0,
        2 | 3 => questions as f64 * 0.18,
        _ => 0.96,
    };
    let emphasis = ep + qm;
    let mut sum: f64 = sentiments.iter().sum();
    if sum > 0.0 {
        sum += emphasis;
    } else if sum < 0.0 {
        sum -= emphasis;
    }
    let compound = (sum / (sum * sum + ALPHA).sqrt()).clamp(-1.0, 1.0);
    let (mut pos, mut neg, mut neu) = (0.0, 0.0, 0usize);
    for &s in sentiments {
        if s > 0.0 {
            pos += s + 1.0;
        } else if s < 0.0 {
            neg += s - 1.0;
        } else {
            neu += 1;
        }
    }
    if pos > neg.abs() {
        pos += emphasis;
    } else if pos < neg.abs() {
        neg -= emphasis;
    }
    let total = pos + neg.abs() + neu as f64;
    Polarity {
        neg: round_to((neg / total).abs(), 3),
        neu: round_to((neu as f64 / total).abs(), 3),
        pos: round_to((pos / total).abs(), 3),
        compound: round_to(compound, 4),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emoji_and_plain_characters_stay_on_the_own_path() {
        for text in ["I love it 😍", "don’t like it — at all…", "👍🏽👍🏽", "★★★★★ “great”", "©2026"]
        {
            assert!(polarity_plain(text).is_some(), "{text:?}");
        }
        // Accents, other scripts and non-ASCII spaces go to the parity crate.
        for text in ["İyi", "Это хорошо", "good\u{a0}bad", "ΣΟΦΙΑ", "ª", "good\u{85}bad"] {
            assert!(polarity_plain(text).is_none(), "{text:?}");
        }
    }

    #[test]
    fn an_emoji_reads_as_its_description() {
        let with_emoji = polarity_plain("ok😍").unwrap();
        let described = polarity_plain(&format!("ok {}", EMOJI[&'😍'])).unwrap();
        assert_eq!(with_emoji, described);
        assert!(with_emoji.compound > polarity_plain("ok").unwrap().compound);
    }

    #[test]
    fn python_rounding_ties_to_even_on_the_exact_value() {
        assert_eq!(round_to(0.3125, 3), 0.312);
        assert_eq!(round_to(0.3135, 3), 0.314); // 0.3135 is stored just above the tie
        assert_eq!(round_to(0.12345678, 4), 0.1235);
        assert_eq!(round_to(-0.55555, 4), -0.5555); // stored just below the tie in magnitude
    }
}
