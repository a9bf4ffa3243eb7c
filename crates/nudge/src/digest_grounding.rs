//! The grounding check of a digest's generated summary: every figure the summary states must appear in
//! the data the model was given. Pure.
//!
//! Figures are read the same way from both texts ([`figures`]): integers and decimals, with thousands
//! separators (`1,234.5`), a sign only where it stands apart (`-2.1`, `+0.4`, `−3`; the `-` in
//! `2026-11-01` separates), a percent (`12.5%`, `12.5 %`, `12.5 percent`), a scale (`1.2k`, `3 thousand`,
//! `2 million`, `1.5bn`), currency symbols or codes around them (ignored), and number words from `zero` to
//! `ninety` (`three flows`). Digits inside names count too (`winback_30d` states 30), on both sides.
//!
//! A summary figure is grounded when some data figure matches it:
//! - a percent `p %` matches a data percent `p` or a data number `p / 100` (a rate given as a fraction:
//!   `12.5%` is grounded by `0.125`);
//! - a plain number `x` matches a data number `x` or a data percent `x` (`rose 2.1 points` by `+2.1 pp`);
//! - the summary may round: it matches when the data value rounded to the summary's precision equals it
//!   (`12.5%` is grounded by `0.12537`; `12.6%` is not);
//! - a figure written with a sign must match the data's sign; one written without compares magnitudes
//!   (`fell by 2.1 points` is grounded by `-2.1`).

/// One figure as written.
#[derive(Debug, Clone, PartialEq)]
pub struct Figure {
    /// The text it was read from.
    pub text: String,
    /// Its value, scale applied (`1.2k` = 1200); for a percent, the number before the sign (`12.5`).
    pub value: f64,
    pub percent: bool,
    /// Written with an explicit sign.
    pub signed: bool,
    /// Half a unit of its last written digit, scale applied: the rounding it may hide.
    pub half_unit: f64,
}

const SMALL: [&str; 21] = [
    "zero",
    "one",
    "two",
    "three",
    "four",
    "five",
    "six",
    "seven",
    "eight",
    "nine",
    "ten",
    "eleven",
    "twelve",
    "thirteen",
    "fourteen",
    "fifteen",
    "sixteen",
    "seventeen",
    "eighteen",
    "nineteen",
    "twenty",
];
const TENS: [(&str, f64); 7] = [
    ("thirty", 30.0),
    ("forty", 40.0),
    ("fifty", 50.0),
    ("sixty", 60.0),
    ("seventy", 70.0),
    ("eighty", 80.0),
    ("ninety", 90.0),
];

fn word_value(w: &str) -> Option<f64> {
    let w = w.to_ascii_lowercase();
    if let Some(i) = SMALL.iter().position(|s| *s == w) {
        return Some(i as f64);
    }
    TENS.iter().find(|(s, _)| *s == w).map(|(_, v)| *v)
}

/// Every figure in `text`, in order.
pub fn figures(text: &str) -> Vec<Figure> {
    let chars: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphabetic() {
            // A whole word: a number word, or letters to skip (digits after them are still read).
            let start = i;
            while i < chars.len() && chars[i].is_alphabetic() {
                i += 1;
            }
            let word: String = chars[start..i].iter().collect();
            if let Some(v) = word_value(&word) {
                let (value, percent, end) = suffixes(&chars, i, v, 0.5);
                out.push(Figure {
                    text: chars[start..end].iter().collect(),
                    value: value.0,
                    percent,
                    signed: false,
                    half_unit: value.1,
                });
                i = end;
            }
            continue;
        }
        let sign_here = matches!(c, '-' | '+' | '\u{2212}')
            && i + 1 < chars.len()
            && chars[i + 1].is_ascii_digit()
            && (i == 0 || !(chars[i - 1].is_alphanumeric() || chars[i - 1] == '.' || chars[i - 1] == ','));
        if !(c.is_ascii_digit() || sign_here) {
            i += 1;
            continue;
        }
        let start = i;
        let negative = sign_here && c != '+';
        if sign_here {
            i += 1;
        }
        // Digits, thousands groups (`,ddd` followed by no further digit) and one decimal part.
        let mut digits = String::new();
        while i < chars.len() {
            if chars[i].is_ascii_digit() {
                digits.push(chars[i]);
                i += 1;
            } else if chars[i] == ','
                && !digits.is_empty()
                && chars[i + 1..].iter().take(3).filter(|c| c.is_ascii_digit()).count() == 3
                && chars.get(i + 4).is_none_or(|c| !c.is_ascii_digit())
            {
                i += 1;
            } else {
                break;
            }
        }
        let mut decimals = 0i32;
        if i + 1 < chars.len() && chars[i] == '.' && chars[i + 1].is_ascii_digit() {
            digits.push('.');
            i += 1;
            while i < chars.len() && chars[i].is_ascii_digit() {
                digits.push(chars[i]);
                decimals += 1;
                i += 1;
            }
        }
        let Ok(mut v) = digits.parse::<f64>() else { continue };
        if negative {
            v = -v;
        }
        let half = 0.5 * 10f64.powi(-decimals);
        let ((value, half_unit), percent, end) = suffixes(&chars, i, v, half);
        out.push(Figure {
            text: chars[start..end].iter().collect(),
            value,
            percent,
            signed: sign_here,
            half_unit,
        });
        i = end;
    }
    out
}

/// Reads a scale and a percent after a number ending at `i`: `((value, half unit), percent, end)`.
fn suffixes(chars: &[char], i: usize, v: f64, half: f64) -> ((f64, f64), bool, usize) {
    let word_at = |from: usize| -> (String, usize) {
        let mut j = from;
        while j < chars.len() && chars[j] == ' ' {
            j += 1;
        }
        let s = j;
        while j < chars.len() && chars[j].is_alphabetic() {
            j += 1;
        }
        (chars[s..j].iter().collect::<String>().to_ascii_lowercase(), j)
    };
    let mut end = i;
    let (mut value, mut half) = (v, half);
    // A scale letter glued to the number (`1.2k`, `2M`, `1.5bn`) or a scale word after it.
    let glued: String = chars[i..].iter().take_while(|c| c.is_alphabetic()).collect();
    let scale = match glued.as_str() {
        "k" | "K" => Some((1e3, i + glued.len())),
        "M" => Some((1e6, i + 1)),
        "bn" => Some((1e9, i + 2)),
        _ => match word_at(i) {
            (w, j) if w == "thousand" => Some((1e3, j)),
            (w, j) if w == "million" => Some((1e6, j)),
            (w, j) if w == "billion" => Some((1e9, j)),
            _ => None,
        },
    };
    if let Some((k, j)) = scale {
        value *= k;
        half *= k;
        end = j;
    }
    // A percent sign, with or without a space, or the words `percent` / `per cent` (not `percentage
    // points`, which are plain numbers).
    let mut j = end;
    while j < chars.len() && chars[j] == ' ' {
        j += 1;
    }
    if j < chars.len() && chars[j] == '%' {
        return ((value, half), true, j + 1);
    }
    let (w, after) = word_at(end);
    if w == "percent" {
        let (next, _) = word_at(after);
        if next != "points" && next != "point" {
            return ((value, half), true, after);
        }
    }
    if w == "per" {
        let (next, after2) = word_at(after);
        if next == "cent" {
            return ((value, half), true, after2);
        }
    }
    ((value, half), false, end)
}

/// Whether summary figure `s` is grounded by data figure `d` (see the module's rules).
fn grounded_by(s: &Figure, d: &Figure) -> bool {
    // The candidate values of the data figure in the summary figure's unit.
    let candidates: Vec<f64> = match (s.percent, d.percent) {
        (true, true) => vec![d.value],
        (true, false) => vec![d.value * 100.0],
        (false, true) => vec![d.value],
        (false, false) => vec![d.value],
    };
    let tolerance = s.half_unit + 1e-9 * s.value.abs().max(1.0);
    candidates.iter().any(|&c| {
        if s.signed { (c - s.value).abs() <= tolerance } else { (c.abs() - s.value.abs()).abs() <= tolerance }
    })
}

/// The summary's figures that no data figure grounds (empty: the summary is grounded).
pub fn ungrounded(summary: &str, data: &str) -> Vec<Figure> {
    let data = figures(data);
    figures(summary).into_iter().filter(|s| !data.iter().any(|d| grounded_by(s, d))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(t: &str) -> Vec<(f64, bool)> {
        figures(t).iter().map(|f| (f.value, f.percent)).collect()
    }

    fn ok(summary: &str, data: &str) -> bool {
        ungrounded(summary, data).is_empty()
    }

    #[test]
    fn reads_the_forms_numbers_take() {
        assert_eq!(
            values("12.5% and 12.5 % and 12.5 percent and 3 per cent"),
            vec![(12.5, true), (12.5, true), (12.5, true), (3.0, true)]
        );
        assert_eq!(
            values("$1,234.50 from €12 and USD 7"),
            vec![(1234.5, false), (12.0, false), (7.0, false)]
        );
        assert_eq!(
            values("1.2k customers, 3 thousand orders, 2M visits, 1.5bn"),
            vec![(1200.0, false), (3000.0, false), (2e6, false), (1.5e9, false)]
        );
        assert_eq!(
            values("from 2026-11-01 to 14:05"),
            vec![(2026.0, false), (11.0, false), (1.0, false), (14.0, false), (5.0, false)]
        );
        assert_eq!(
            values("fell -2.1 pp, rose +0.4, \u{2212}3"),
            vec![(-2.1, false), (0.4, false), (-3.0, false)]
        );
        assert_eq!(
            values("ended in 2026. Then 3,5 and 1,23"),
            vec![(2026.0, false), (3.0, false), (5.0, false), (1.0, false), (23.0, false)]
        );
        assert_eq!(
            values("three flows, twenty segments, ninety"),
            vec![(3.0, false), (20.0, false), (90.0, false)]
        );
        assert_eq!(values("2.1 percentage points"), vec![(2.1, false)]);
        assert_eq!(values("winback_30d and v2"), vec![(30.0, false), (2.0, false)]);
        assert!(figures("no figures at all.").is_empty());
    }

    #[test]
    fn percent_and_fraction_are_the_same_figure() {
        assert!(ok("converted 12.5%", "rate 0.125"));
        assert!(ok("converted 12.5 percent", "rate 0.125"));
        assert!(ok("converted 12.5%", "rate: 12.5 %"));
        assert!(ok("a rate of 0.125", "rate 0.125"));
        // A percent is not grounded by the same bare number of something else, nor a fraction by a percent.
        assert!(!ok("converted 12.5%", "12.5 customers"));
        assert!(!ok("a rate of 0.125", "rate: 12.5 %"));
    }

    #[test]
    fn rounding_to_the_stated_precision_is_allowed_and_no_more() {
        assert!(ok("12.5%", "0.12537"));
        assert!(ok("13%", "0.12537"));
        assert!(!ok("12.6%", "0.12537"));
        assert!(!ok("12.54%", "12.5 %"), "more precise than the data is not in the data");
        assert!(ok("$1,234.50", "revenue 1234.5"));
        assert!(ok("about 1.2k customers", "1234 customers"));
        assert!(!ok("about 1.3k customers", "1234 customers"));
        assert!(ok("1,234 customers", "1234 customers"));
    }

    #[test]
    fn signs_count_when_written() {
        assert!(ok("fell by 2.1 points", "difference -2.1 pp"));
        assert!(ok("a change of -2.1 pp", "difference -2.1 pp"));
        assert!(!ok("a change of +2.1 pp", "difference -2.1 pp"));
        assert!(ok("rose 2.1 percentage points", "difference +2.1 pp"));
    }

    #[test]
    fn invented_figures_are_caught() {
        let data = "flow winback: treated 420 customers, 63 conversions (15.0 %); held out 180, 18 (10.0 %); \
                    difference +5.0 pp (95 % CI +0.1 to +9.9 pp)";
        assert!(ok(
            "Winback lifted conversion by 5.0 points (15.0% against 10.0%, 95% interval 0.1 to 9.9).",
            data
        ));
        let bad = ungrounded("Winback lifted conversion by 37% across 3 segments.", data);
        let texts: Vec<&str> = bad.iter().map(|f| f.text.as_str()).collect();
        assert_eq!(texts, vec!["37%", "3"]);
        assert!(!ok("about two thousand orders", data));
        assert!(!ok("three flows", data));
        assert!(ok("no figures, only words", data));
        assert!(!ok("in 2027", "from 2026-11-01"));
    }
}
