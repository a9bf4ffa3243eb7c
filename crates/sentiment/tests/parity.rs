//! Parity with the reference vaderSentiment: every demo sentence of the reference package, and this
//! file's own review and hostile sentences, get the reference's compound score within 0.001.
//!
//! The reference runs at test time through `tests/vader_reference.py`, which imports it from the
//! directory named by `NUDGE_VADER_DIR` (`pip install --target <dir> vaderSentiment`); `NUDGE_PYTHON`
//! names the interpreter (default `python3`). Without `NUDGE_VADER_DIR` the parity tests are skipped
//! and say so.

use std::io::Write;
use std::process::{Command, Stdio};

use nudge_sentiment::{polarity, review_text};

const TOLERANCE: f64 = 0.001;

struct Scored {
    text: String,
    neg: f64,
    neu: f64,
    pos: f64,
    compound: f64,
}

fn reference_dir() -> Option<String> {
    match std::env::var("NUDGE_VADER_DIR") {
        Ok(dir) if !dir.is_empty() => Some(dir),
        _ => {
            // Straight to stderr, past the test harness's capture, so a skip is never silent.
            let _ = writeln!(
                std::io::stderr(),
                "SKIPPED: VADER parity against the reference needs NUDGE_VADER_DIR (a directory where \
                 `pip install --target DIR vaderSentiment` installed it)"
            );
            None
        }
    }
}

/// Runs the reference script; `stdin` texts are scored instead of the reference's demo sentences.
fn run_reference(dir: &str, stdin: Option<&[String]>) -> Vec<Scored> {
    let python = std::env::var("NUDGE_PYTHON").unwrap_or_else(|_| "python3".to_owned());
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/vader_reference.py");
    let mut cmd = Command::new(python);
    cmd.arg(script).env("NUDGE_VADER_DIR", dir).stdout(Stdio::piped()).stderr(Stdio::inherit());
    if stdin.is_some() {
        cmd.arg("--stdin").stdin(Stdio::piped());
    }
    let mut child = cmd.spawn().expect("start the reference script");
    if let Some(texts) = stdin {
        let mut input = String::new();
        for t in texts {
            input.push_str(&serde_json::to_string(t).unwrap());
            input.push('\n');
        }
        let mut pipe = child.stdin.take().unwrap();
        std::thread::spawn(move || pipe.write_all(input.as_bytes()).expect("write to the reference script"));
    }
    let out = child.wait_with_output().expect("run the reference script");
    assert!(out.status.success(), "the reference script failed: {:?}", out.status);
    String::from_utf8(out.stdout)
        .expect("utf-8 output")
        .lines()
        .map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).expect("a JSON line");
            let num = |k: &str| v[k].to_string().parse::<f64>().unwrap_or_else(|_| panic!("{k} in {line}"));
            Scored {
                text: v["text"].as_str().expect("text").to_owned(),
                neg: num("neg"),
                neu: num("neu"),
                pos: num("pos"),
                compound: num("compound"),
            }
        })
        .collect()
}

fn assert_parity(reference: &[Scored]) {
    let mut failures = Vec::new();
    for r in reference {
        let p = polarity(&r.text);
        let close = |a: f64, b: f64| (a - b).abs() <= TOLERANCE;
        if !close(p.compound, r.compound)
            || !close(p.neg, r.neg)
            || !close(p.neu, r.neu)
            || !close(p.pos, r.pos)
        {
            let shown: String = r.text.chars().take(80).collect();
            failures.push(format!(
                "{shown:?}: ours {:?}, reference neg {} neu {} pos {} compound {}",
                p, r.neg, r.neu, r.pos, r.compound
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} differ:\n{}",
        failures.len(),
        reference.len(),
        failures.join("\n")
    );
}

#[test]
fn the_reference_demo_sentences_score_as_the_reference_scores_them() {
    let Some(dir) = reference_dir() else { return };
    let reference = run_reference(&dir, None);
    // The demo has 80-odd sentences; far fewer means the script stopped finding them.
    assert!(reference.len() >= 50, "only {} reference sentences", reference.len());
    assert_parity(&reference);
    println!("parity: {} reference sentences within {TOLERANCE}", reference.len());
}

/// Review-like and hostile texts written for this crate.
fn own_texts() -> Vec<String> {
    let mut texts: Vec<String> =
        include_str!("../benches/sentences.txt").lines().map(str::to_owned).collect();
    texts.extend(
        [
            "",
            " ",
            "!!!",
            "?!?!?!?!",
            "...",
            ":) :( :D",
            "<p>I <b>LOVE</b> this &amp; would buy again!</p><script>alert('x')</script>",
            "<div class=\"review\">not good</div>",
            "😍😍😍",
            "💔 broke after a week",
            "Me encanta, es perfecto",
            "Das ist nicht gut",
            "これは素晴らしいです",
            "ΣΟΦΙΑ is GREAT",
            "It is NOT bad at all, but the fit is WRONG!!",
            "The least bad option, at least it arrived",
            "kind of good, sort of bad",
            "I don't think it isn't great",
            "the bomb, bad ass, yeah right, cut the mustard",
            "never so good, without doubt the best",
            "\u{0}\u{7}\t\r\n",
            "ＦＵＬＬ ＷＩＤＴＨ good",
            "e\u{301}tonnant and fantastic",
            "a\u{200b}good zero width",
        ]
        .map(str::to_owned),
    );
    // Long: 3,000 words of mixed sentiment (VADER's cost is quadratic in the length, the reference's too).
    texts.push("good bad not great very nice ".repeat(500));
    texts.push(review_text(Some("Long"), &"fine but awful ".repeat(3_000)));
    texts.extend(generated(600));
    // Titles joined to bodies as `score_review` scores them.
    texts.push(review_text(Some("Love it"), "but the sleeves are too long"));
    texts.push(review_text(Some("TERRIBLE"), "never arrived!!"));
    texts
}

/// `n` sentences drawn (with a fixed linear congruential sequence) from the words the rules look at.
fn generated(n: usize) -> Vec<String> {
    const VOCAB: &[&str] = &[
        "good",
        "bad",
        "great",
        "terrible",
        "love",
        "hate",
        "not",
        "never",
        "no",
        "isn't",
        "without",
        "doubt",
        "so",
        "this",
        "very",
        "extremely",
        "kind",
        "of",
        "sort",
        "barely",
        "but",
        "BUT",
        "least",
        "at",
        "the",
        "bomb",
        "yeah",
        "right",
        "kiss",
        "death",
        "or",
        "nor",
        "GOOD",
        "BAD",
        "VERY",
        ":)",
        ":(",
        "lol",
        "!!",
        "?",
        "??",
        "good!",
        "(great)",
        "it",
        "was",
        "fit",
        "cheap",
        "most",
        "slightly",
        "hardly",
        "can't",
        "Bad",
        "okay",
        "stop",
        "beating",
        "shoes",
    ];
    let mut state: u64 = 0x2026_1204;
    let mut next = |m: usize| {
        state = state.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) as usize) % m
    };
    (0..n)
        .map(|_| {
            let len = 1 + next(12);
            (0..len).map(|_| VOCAB[next(VOCAB.len())]).collect::<Vec<_>>().join(" ")
        })
        .collect()
}

#[test]
fn own_review_and_hostile_texts_score_as_the_reference_scores_them() {
    let Some(dir) = reference_dir() else { return };
    let texts = own_texts();
    let reference = run_reference(&dir, Some(&texts));
    assert_eq!(reference.len(), texts.len());
    for (r, t) in reference.iter().zip(&texts) {
        assert_eq!(&r.text, t, "the reference echoes the texts in order");
    }
    assert_parity(&reference);
}
