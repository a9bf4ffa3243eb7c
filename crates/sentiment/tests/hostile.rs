//! Hostile input never panics, and scores stay in range.

use nudge_sentiment::{Theme, polarity, review_text, score_review, themes};

fn in_range(text: &str) {
    let p = if text.len() > 30_000 { polarity(&review_text(None, text)) } else { polarity(text) };
    assert!((-1.0..=1.0).contains(&p.compound), "{text:?}: {p:?}");
    for v in [p.neg, p.neu, p.pos] {
        assert!((0.0..=1.0).contains(&v), "{text:?}: {p:?}");
    }
    let _ = themes(text);
    let s = score_review(Some(text), text);
    assert!((-1.0..=1.0).contains(&s.compound));
}

#[test]
fn hostile_texts_never_panic() {
    let huge = "This is great but the shipping was awful!!! ".repeat(25_000); // about 1 MB
    let texts = [
        "",
        "    ",
        "!!!!!!!!!!!!!!!!!!!!",
        "?????",
        ".,;:-_()[]{}",
        "<html><body><h1>Great</h1><img src=x onerror=alert(1)></body></html>",
        "&lt;3 &amp; &#128525;",
        "😀😃😄😁😆😅😂🤣🥲☺️😊😇🙂🙃😉",
        "👍🏽👎🏿",
        "Отличный товар, но доставка медленная",
        "非常好，但是太贵了",
        "ممتاز",
        "\u{0}\u{1}\u{2}",
        "\u{feff}good",
        "\u{d7ff}\u{e000}\u{10ffff}",
        "İSTANBUL is NICE", // a capital whose lower case is longer
        "n't n't n't",
        "but but but",
        "kind of",
        "least",
        &huge[..20_000],
        huge.as_str(),
    ];
    for t in texts {
        in_range(t);
    }
}

#[test]
fn nothing_scoreable_is_neutral() {
    for t in ["", "   ", "!!!", "the a of", "1234"] {
        let p = polarity(t);
        assert_eq!(p.compound, 0.0, "{t:?}");
    }
    // Words but no valence: all neutral. No word at all: all zero, as the reference scores it.
    assert_eq!(polarity("the a of").neu, 1.0);
    assert_eq!(polarity("!!!").neu, 1.0);
    assert_eq!(polarity("").neu, 0.0);
    assert_eq!(polarity("   ").neu, 0.0);
}

#[test]
fn the_rules_move_the_score_the_right_way() {
    let good = polarity("The jacket is good.").compound;
    assert!(good > 0.0);
    assert!(polarity("The jacket is very good.").compound > good, "booster");
    assert!(polarity("The jacket is kind of good.").compound < good, "dampener");
    assert!(
        polarity("The jacket is GOOD, really.").compound > polarity("The jacket is good, really.").compound,
        "caps"
    );
    assert!(polarity("The jacket is good!!!").compound > good, "exclamation");
    assert!(polarity("The jacket is not good.").compound < 0.0, "negation");
    assert!(polarity("The jacket isn't good.").compound < 0.0, "n't");
    assert!(polarity("The jacket is good, but the zip is bad.").compound < 0.0, "but");
}

#[test]
fn a_review_is_its_title_and_body_scored_together() {
    let s = score_review(Some("Arrived broken"), "Customer service sent a replacement quickly, love it!");
    assert_eq!(
        s.compound,
        polarity(&review_text(
            Some("Arrived broken"),
            "Customer service sent a replacement quickly, love it!"
        ))
        .compound
    );
    assert_eq!(s.themes, vec!["shipping", "quality", "service"]);
    assert_eq!(review_text(Some("  "), "body"), "body");
    assert_eq!(review_text(None, "body"), "body");
    let untitled = score_review(None, "Runs small and the price is too high");
    assert!(untitled.compound <= 0.0);
    assert_eq!(untitled.themes, vec![Theme::Sizing.as_str(), Theme::Price.as_str()]);
}

#[test]
fn a_long_review_is_scored_on_its_first_part_cut_between_words() {
    let body = "great value ".repeat(2_000);
    let text = review_text(Some("Title"), &body);
    assert!(text.chars().count() <= nudge_sentiment::MAX_REVIEW_CHARS);
    assert!(text.ends_with("value") || text.ends_with("great"), "{}", &text[text.len() - 20..]);
    let multibyte = "é".repeat(20_000);
    assert_eq!(review_text(None, &multibyte).chars().count(), nudge_sentiment::MAX_REVIEW_CHARS);
    assert_eq!(review_text(None, "short"), "short");
}
