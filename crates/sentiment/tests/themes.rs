//! The theme detector on the labelled sample: precision at least 0.8 for every theme.

use nudge_sentiment::Theme;
use nudge_sentiment::theme::{evaluate, parse_sample};

const SAMPLE: &str = include_str!("../data/themes_sample.tsv");

#[test]
fn the_sample_is_large_enough_and_covers_every_theme() {
    let sample = parse_sample(SAMPLE).unwrap();
    assert!(sample.len() >= 120, "{} reviews", sample.len());
    for theme in Theme::ALL {
        let n = sample.iter().filter(|r| r.labels.contains(&theme)).count();
        assert!(n >= 15, "{theme}: {n} labelled reviews");
    }
    assert!(sample.iter().filter(|r| r.labels.is_empty()).count() >= 15);
}

#[test]
fn precision_is_at_least_0_8_for_every_theme() {
    let sample = parse_sample(SAMPLE).unwrap();
    let metrics = evaluate(&sample);
    for m in &metrics {
        println!("{:<9} precision {:.3} recall {:.3} ({m:?})", m.theme, m.precision(), m.recall());
    }
    for m in &metrics {
        assert!(m.true_positives > 0, "{}: found none", m.theme);
        assert!(m.precision() >= 0.8, "{}: precision {:.3}", m.theme, m.precision());
    }
}

#[test]
fn a_malformed_sample_is_refused() {
    assert!(parse_sample("shipping no tab here").is_err());
    assert!(parse_sample("colour\tNice red").is_err());
    assert_eq!(parse_sample("-\tNice\nshipping,price\tFree shipping").unwrap().len(), 2);
}
