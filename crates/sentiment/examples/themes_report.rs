//! Prints precision and recall of the theme detector per theme on the labelled sample, and the
//! reviews it gets wrong. `cargo run -p nudge-sentiment --example themes_report`

use nudge_sentiment::theme::{evaluate, parse_sample, themes};

fn main() {
    let sample = parse_sample(include_str!("../data/themes_sample.tsv")).expect("the sample parses");
    println!("{} labelled reviews", sample.len());
    println!("{:<10} {:>5} {:>5} {:>5} {:>10} {:>8}", "theme", "tp", "fp", "fn", "precision", "recall");
    for m in evaluate(&sample) {
        println!(
            "{:<10} {:>5} {:>5} {:>5} {:>10.3} {:>8.3}",
            m.theme.as_str(),
            m.true_positives,
            m.false_positives,
            m.false_negatives,
            m.precision(),
            m.recall()
        );
    }
    println!("\nmisses and false alarms:");
    for r in &sample {
        let found = themes(&r.text);
        let mut labels = r.labels.clone();
        labels.sort();
        if found != labels {
            let names =
                |ts: &[nudge_sentiment::Theme]| ts.iter().map(|t| t.as_str()).collect::<Vec<_>>().join(",");
            println!("  labelled [{}] found [{}]: {}", names(&labels), names(&found), r.text);
        }
    }
}
