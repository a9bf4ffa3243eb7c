//! `nudge segments discover`: behavioural segments proposed for a marketer to review and name.
//!
//! Every stored customer is scored as the pipeline scores them (the active models, the decision families,
//! the user's live custom models) and described by behavioural signals read from the flow conditions'
//! `customer.*` and `scores.*` facts ([`SIGNALS`]); the signals are clustered by
//! [`nudge_decide::segments::discover`] (k-means on standardised signals, k by the mean silhouette). A
//! signal the store does not have (the same value for every customer, e.g. email engagement without an
//! email platform's events) is left out and named in the output. A missing value (no orders yet, no
//! score) counts as the signal's mean over the customers who have it.

use crate::config::Config;
use crate::pipeline::Scoring;
use anyhow::Context;
use nudge_custom::config::InputSpec;
use nudge_custom::features::FeatureMap;
use nudge_decide::segments::{self, DiscoverOptions, Discovery, Feature};
use nudge_state::CustomerState;
use std::collections::BTreeMap;

/// The signals discovery may use: (name, the fact expression, the words that describe it, log scale).
pub const SIGNALS: [(&str, &str, &str, bool); 14] = [
    ("recency_days", "customer.days_since_last_order", "days since the last order", true),
    ("orders", "customer.orders_count", "order count", true),
    ("avg_order_value", "customer.aov", "order value", true),
    ("total_spent", "customer.total_spent", "total spend", true),
    ("p_alive", "scores.p_alive", "chance of being active", false),
    ("predicted_clv", "scores.predicted_clv", "predicted value", true),
    ("churn_risk", "scores.churn_risk", "churn risk", false),
    ("expected_orders_90d", "scores.expected_orders_90d", "expected orders", true),
    ("abandonment", "scores.abandon_propensity", "checkout abandonment", false),
    ("purchase_propensity_7d", "scores.purchase_propensity_7d", "purchase intent", false),
    ("email_open_rate", "customer.email_open_rate_90d", "email engagement", false),
    ("email_click_rate", "customer.email_click_rate_90d", "email clicks", false),
    ("loyalty_points", "customer.loyalty_points", "loyalty points", true),
    ("open_checkout_value", "customer.open_checkout_value", "open cart value", true),
];

/// The segments commands.
#[derive(Debug, clap::Subcommand)]
pub enum SegmentsCmd {
    /// Cluster the stored customers on behavioural signals and propose segments to name.
    Discover {
        /// `auto` (chosen by the mean silhouette over 2..10) or a number of segments (2..50).
        #[arg(long, default_value = "auto")]
        k: String,
        /// `default` (every signal the store has) or a comma-separated list of signal names.
        #[arg(long, default_value = "default")]
        features: String,
        /// Also write the proposals as an HTML page.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
        /// Print the proposals as JSON.
        #[arg(long)]
        json: bool,
        /// The seed of the sampling and the k-means starts (the same seed, the same segments).
        #[arg(long, default_value_t = 7)]
        seed: u64,
        /// Only show the proposals; do not store them for adoption.
        #[arg(long)]
        no_store: bool,
    },
    /// The stored proposals (of the latest discovery, or of `--discovery N`), with their ids and whether
    /// they were adopted.
    Proposals {
        #[arg(long)]
        discovery: Option<i64>,
        #[arg(long)]
        json: bool,
    },
    /// Adopt a proposal (`3-2`) as a named segment and compute its members at once.
    Adopt {
        /// The proposal's id, `<discovery>-<n>`.
        id: String,
        /// The segment's name, as flow conditions read it (`"lapsing_vips" in customer.segments`).
        #[arg(long)]
        name: String,
        /// A list the segment's members are kept in, `<destination>:<list id>` (repeatable).
        #[arg(long = "list")]
        lists: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// The adopted segments: members, the last refresh's joiners, leavers and stability.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Place every customer again and update each adopted segment's members (audited; the lists it
    /// follows are updated through the outbox).
    Refresh {
        #[arg(long)]
        json: bool,
    },
    /// Stop using an adopted segment (its membership goes; flows reading it see no one in it).
    Drop { name: String },
}

/// A mistake in what was asked (an unknown signal, a bad `--k`, too few customers): exit status 2.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

/// The signals named by `--features`.
pub fn chosen_signals(
    list: &str,
) -> Result<Vec<(&'static str, &'static str, &'static str, bool)>, UsageError> {
    if list.trim() == "default" {
        return Ok(SIGNALS.to_vec());
    }
    let mut out = Vec::new();
    for name in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some(s) = SIGNALS.iter().find(|s| s.0 == name) else {
            let names: Vec<&str> = SIGNALS.iter().map(|s| s.0).collect();
            return Err(UsageError(format!(
                "unknown signal `{name}` in --features (known: {})",
                names.join(", ")
            )));
        };
        if !out.contains(s) {
            out.push(*s);
        }
    }
    if out.len() < 2 {
        return Err(UsageError("--features needs at least two signals".into()));
    }
    Ok(out)
}

/// `--k`: `None` for auto.
pub fn parse_k(k: &str) -> Result<Option<usize>, UsageError> {
    if k == "auto" {
        return Ok(None);
    }
    match k.parse::<usize>() {
        Ok(n) if (2..=50).contains(&n) => Ok(Some(n)),
        _ => Err(UsageError(format!("--k must be `auto` or a number from 2 to 50, not `{k}`"))),
    }
}

/// What `discover` found, with the signals used and those left out.
#[derive(Debug, serde::Serialize)]
pub struct Report {
    pub customers: usize,
    pub signals: Vec<String>,
    /// Signals with the same value for every customer (the store does not have them).
    pub left_out: Vec<String>,
    pub k: usize,
    pub silhouettes: Vec<(usize, f64)>,
    pub proposals: Vec<segments::Proposal>,
}

/// Clusters `rows` (NaN for missing) on `signals`: imputes, drops constant signals, discovers.
pub fn discover_rows(
    signals: &[(&str, &str, &str, bool)],
    mut rows: Vec<Vec<f64>>,
    opts: &DiscoverOptions,
) -> Result<(Report, Discovery), UsageError> {
    if rows.is_empty() {
        return Err(UsageError(
            "the store holds no customers yet: import order history (nudge import) or send webhooks first"
                .into(),
        ));
    }
    let d = signals.len();
    let mut keep = Vec::new();
    let mut left_out = Vec::new();
    for j in 0..d {
        let present: Vec<f64> = rows.iter().map(|r| r[j]).filter(|v| v.is_finite()).collect();
        let mean = if present.is_empty() { 0.0 } else { present.iter().sum::<f64>() / present.len() as f64 };
        for r in rows.iter_mut() {
            if !r[j].is_finite() {
                r[j] = mean;
            }
        }
        let first = rows.first().map_or(0.0, |r| r[j]);
        if rows.iter().all(|r| (r[j] - first).abs() < 1e-12) {
            left_out.push(signals[j].0.to_string());
        } else {
            keep.push(j);
        }
    }
    if keep.len() < 2 {
        return Err(UsageError(format!(
            "the store varies on fewer than two of the signals asked for (left out, the same for every customer: {})",
            left_out.join(", ")
        )));
    }
    let features: Vec<Feature> =
        keep.iter().map(|&j| Feature::new(signals[j].0, signals[j].2, signals[j].3)).collect();
    let rows: Vec<Vec<f64>> = rows.into_iter().map(|r| keep.iter().map(|&j| r[j]).collect()).collect();
    let found = segments::discover(&features, &rows, opts).map_err(|e| UsageError(e.to_string()))?;
    let report = Report {
        customers: rows.len(),
        signals: features.iter().map(|f| f.name.clone()).collect(),
        left_out,
        k: found.k,
        silhouettes: found.silhouettes.clone(),
        proposals: found.proposals.clone(),
    };
    Ok((report, found))
}

/// The report as text.
pub fn text(r: &Report) -> String {
    let mut s = format!(
        "{} customers, {} signals ({}){}\n",
        r.customers,
        r.signals.len(),
        r.signals.join(", "),
        if r.left_out.is_empty() {
            String::new()
        } else {
            format!("; left out (the same for every customer): {}", r.left_out.join(", "))
        }
    );
    if r.silhouettes.is_empty() {
        s.push_str(&format!("{} segments (as asked)\n", r.k));
    } else {
        let tried: Vec<String> = r.silhouettes.iter().map(|(k, v)| format!("{k}: {v:.3}")).collect();
        s.push_str(&format!("{} segments, the highest mean silhouette ({})\n", r.k, tried.join(", ")));
    }
    for p in &r.proposals {
        s.push_str(&format!(
            "\nproposal {}: \"{}\" — {} customers ({:.1} %)\n",
            p.index + 1,
            p.suggested_name,
            p.size,
            p.share * 100.0
        ));
        for d in &p.defining {
            s.push_str(&format!("  {d}\n"));
        }
    }
    s
}

/// The report as a self-contained HTML page.
pub fn html(r: &Report) -> String {
    let esc = crate::svg::escape;
    let mut s = String::from(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>nudge: proposed segments</title>\
         <style>body{font-family:sans-serif;max-width:60rem;margin:2rem auto}table{border-collapse:collapse}\
         td,th{border:1px solid #ccc;padding:.3rem .6rem;text-align:right}th:first-child,td:first-child{text-align:left}</style>\
         </head><body><h1>Proposed segments</h1>",
    );
    s.push_str(&format!(
        "<p>{} customers; signals: {}.{}</p>",
        r.customers,
        esc(&r.signals.join(", ")),
        if r.left_out.is_empty() {
            String::new()
        } else {
            format!(" Left out (the same for every customer): {}.", esc(&r.left_out.join(", ")))
        }
    ));
    if !r.silhouettes.is_empty() {
        s.push_str("<table><caption>Mean silhouette by number of segments</caption><tr><th>k</th><th>silhouette</th></tr>");
        for (k, v) in &r.silhouettes {
            s.push_str(&format!(
                "<tr><td>{k}{}</td><td>{v:.3}</td></tr>",
                if *k == r.k { " (chosen)" } else { "" }
            ));
        }
        s.push_str("</table>");
    }
    for p in &r.proposals {
        s.push_str(&format!(
            "<h2>{}. {}</h2><p>{} customers ({:.1} %)</p><table><tr><th>signal</th><th>mean in segment</th><th>mean elsewhere</th><th>difference (sd)</th></tr>",
            p.index + 1,
            esc(&p.suggested_name),
            p.size,
            p.share * 100.0
        ));
        for f in &p.features {
            s.push_str(&format!(
                "<tr><td>{}</td><td>{:.3}</td><td>{:.3}</td><td>{:+.2}</td></tr>",
                esc(&f.feature),
                f.mean_in,
                f.mean_out,
                f.z
            ));
        }
        s.push_str("</table>");
    }
    s.push_str("</body></html>\n");
    s
}

/// Reads and scores every stored customer and proposes segments on `signals`.
pub async fn discover_store(
    store: &dyn nudge_store::Store,
    scoring: &Scoring,
    signals: &[(&str, &str, &str, bool)],
    opts: &DiscoverOptions,
) -> anyhow::Result<(Report, Discovery)> {
    let inputs: BTreeMap<String, InputSpec> =
        signals.iter().map(|s| (s.0.to_string(), InputSpec::One(s.1.to_string()))).collect();
    let map = FeatureMap::compile(&inputs).map_err(|e| anyhow::anyhow!("{e}"))?;
    // The compiled inputs are in name order; rows are kept in the signals' order.
    let column: Vec<usize> =
        signals.iter().map(|s| map.inputs.iter().position(|i| i.name == s.0).expect("compiled")).collect();
    let now = time::OffsetDateTime::now_utc();
    let mut rows = Vec::new();
    let mut after = None;
    loop {
        let page = store.scan_states(after.clone(), 2_000).await?;
        let Some(last) = page.last() else { break };
        after = Some(last.customer.clone());
        for s in &page {
            let state: CustomerState = CustomerState::decode(&s.state)
                .with_context(|| format!("the stored state of {} is unreadable", s.customer))?;
            let (scores, _) = scoring.score(&state, now);
            let f = map.features(&state, &scores, now);
            rows.push(column.iter().map(|&c| f64::from(f[c][0])).collect::<Vec<f64>>());
        }
        if page.len() < 2_000 {
            break;
        }
    }
    Ok(discover_rows(signals, rows, opts)?)
}

/// Runs `nudge segments`.
pub async fn run(cfg: &Config, cmd: SegmentsCmd) -> anyhow::Result<()> {
    use crate::segment_adoption as adoption;
    let store = crate::app::open_store(cfg).await?;
    match cmd {
        SegmentsCmd::Discover { k, features, out, json, seed, no_store } => {
            let k = parse_k(&k)?;
            let signals = chosen_signals(&features)?;
            crate::privacy::init_key(cfg).context("the pseudonym key")?;
            let scoring = crate::models_cli::full_scoring(&*store, cfg).await?;
            let opts = DiscoverOptions { k, seed, ..DiscoverOptions::default() };
            let (report, found) = discover_store(&*store, &scoring, &signals, &opts).await?;
            let id = if no_store {
                None
            } else {
                let stored = adoption::StoredDiscovery::new(&report, &found, features_of(&report), seed);
                Some(adoption::save_discovery(&*store, &stored).await?)
            };
            if let Some(path) = &out {
                std::fs::write(path, html(&report)).with_context(|| format!("writing {}", path.display()))?;
            }
            if json {
                let mut v = serde_json::to_value(&report)?;
                v["discovery_id"] = serde_json::json!(id);
                if let (Some(id), Some(ps)) = (id, v["proposals"].as_array_mut()) {
                    for p in ps {
                        let n = p["index"].as_u64().unwrap_or(0) + 1;
                        p["id"] = serde_json::json!(format!("{id}-{n}"));
                    }
                }
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                print!("{}", text(&report));
                if let Some(id) = id {
                    println!(
                        "
stored as discovery {id}: adopt a proposal with `nudge segments adopt {id}-<n> --name <name>`"
                    );
                }
                if let Some(path) = &out {
                    println!("written: {}", path.display());
                }
            }
        }
        SegmentsCmd::Proposals { discovery, json } => {
            let ps = adoption::proposals(&*store, discovery).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&ps)?);
            } else if ps.is_empty() {
                println!("no proposals stored: run `nudge segments discover` first");
            } else {
                for p in &ps {
                    println!(
                        "{}  \"{}\" — {} customers ({:.1} %){}",
                        p.id,
                        p.suggested_name,
                        p.size,
                        p.share * 100.0,
                        p.adopted_as.as_ref().map_or(String::new(), |n| format!(", adopted as `{n}`"))
                    );
                    for d in &p.defining {
                        println!("    {d}");
                    }
                }
            }
        }
        SegmentsCmd::Adopt { id, name, lists, json } => {
            let mut takes = cfg.destination_names();
            takes.retain(|d| !nudge_policy::flows::is_alert_channel(d));
            let lists = lists
                .iter()
                .map(|l| adoption::parse_list(l, &takes))
                .collect::<Result<Vec<_>, UsageError>>()?;
            crate::privacy::init_key(cfg).context("the pseudonym key")?;
            let scoring = crate::models_cli::full_scoring(&*store, cfg).await?;
            let (seg, summary) = adoption::adopt_and_refresh(&store, &scoring, &id, &name, "cli", lists)
                .await
                .map_err(|e| match e {
                    adoption::AdoptError::Other(e) => e,
                    other => anyhow::Error::new(UsageError(other.to_string())),
                })?;
            if json {
                println!(
                    "{}",
                    serde_json::to_string_pretty(&serde_json::json!({"adopted": seg, "refresh": summary}))?
                );
            } else {
                let members =
                    summary.segments.iter().find(|c| c.segment == seg.name).map_or(0, |c| c.members);
                println!("adopted {id} as `{}`: {members} members now", seg.name);
                println!("flows can read it: \"{}\" in customer.segments", seg.name);
            }
        }
        SegmentsCmd::List { json } => {
            let adopted = store.adopted_segments().await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&adopted)?);
            } else if adopted.is_empty() {
                println!("no segment adopted yet: see `nudge segments proposals`");
            } else {
                print!("{}", list_text(&adopted));
            }
        }
        SegmentsCmd::Refresh { json } => {
            crate::privacy::init_key(cfg).context("the pseudonym key")?;
            let scoring = crate::models_cli::full_scoring(&*store, cfg).await?;
            let summary = adoption::refresh(&store, &scoring).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else if summary.segments.is_empty() {
                println!("no segment adopted yet: nothing to refresh");
            } else {
                print!("{}", refresh_text(&summary));
            }
        }
        SegmentsCmd::Drop { name } => match store.drop_segment(&name).await {
            Ok(()) => println!("dropped `{name}`"),
            Err(nudge_store::StoreError::NotFound(_)) => {
                return Err(UsageError(format!("no adopted segment named `{name}`")).into());
            }
            Err(e) => return Err(e.into()),
        },
    }
    Ok(())
}

/// The features a report clustered on, as a refresh reads them again.
pub fn features_of(report: &Report) -> Vec<Feature> {
    report
        .signals
        .iter()
        .filter_map(|n| SIGNALS.iter().find(|s| s.0 == n))
        .map(|s| Feature::new(s.0, s.2, s.3))
        .collect()
}

fn percent(x: Option<f64>) -> String {
    x.map_or("—".to_string(), |v| format!("{:.1} %", v * 100.0))
}

/// The adopted segments as text.
pub fn list_text(adopted: &[nudge_store::AdoptedSegment]) -> String {
    let mut s = format!(
        "{:<24} {:>8} {:>9} {:>8} {:>8} {:>10}  lists\n",
        "segment", "proposal", "members", "joined", "left", "stability"
    );
    for a in adopted {
        let lists: Vec<String> = a.lists.iter().map(|l| format!("{}:{}", l.destination, l.list_id)).collect();
        s.push_str(&format!(
            "{:<24} {:>8} {:>9} {:>8} {:>8} {:>10}  {}\n",
            a.name,
            format!("{}-{}", a.discovery_id, a.proposal + 1),
            a.members,
            a.last_joined,
            a.last_left,
            percent(a.last_stability),
            if lists.is_empty() { "—".to_string() } else { lists.join(", ") }
        ));
    }
    s
}

/// A refresh's summary as text.
pub fn refresh_text(r: &crate::segment_adoption::RefreshSummary) -> String {
    let mut s = format!("{} customers placed in {:.2} s\n", r.customers, r.seconds);
    for c in &r.segments {
        s.push_str(&format!(
            "{}: {} members ({} before; {} joined, {} left; stability {}); {} list changes enqueued\n",
            c.segment,
            c.members,
            c.before,
            c.joined,
            c.left,
            percent(c.stability),
            c.list_changes
        ));
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_arguments_are_usage_errors() {
        assert!(parse_k("auto").unwrap().is_none());
        assert_eq!(parse_k("5").unwrap(), Some(5));
        assert!(parse_k("1").is_err() && parse_k("x").is_err() && parse_k("51").is_err());
        assert_eq!(chosen_signals("default").unwrap().len(), SIGNALS.len());
        assert_eq!(chosen_signals("orders, p_alive,orders").unwrap().len(), 2);
        let e = chosen_signals("orders,nope").unwrap_err().to_string();
        assert!(e.contains("nope") && e.contains("recency_days"), "{e}");
        assert!(chosen_signals("orders").is_err());
    }

    #[test]
    fn constant_signals_are_left_out_and_missing_values_imputed() {
        let signals = &SIGNALS[..3];
        // Two groups on orders and order value; recency constant; a few values missing.
        let rows: Vec<Vec<f64>> = (0..200)
            .map(|i| {
                let g = (i % 2) as f64;
                let jitter = (i % 7) as f64 * 0.01;
                let aov = if i % 13 == 0 { f64::NAN } else { 20.0 + 100.0 * g + jitter };
                vec![30.0, 1.0 + 8.0 * g + jitter, aov]
            })
            .collect();
        let opts = DiscoverOptions { k: Some(2), ..DiscoverOptions::default() };
        let (r, d) = discover_rows(signals, rows, &opts).unwrap();
        assert_eq!(r.left_out, vec!["recency_days".to_string()]);
        assert_eq!(r.signals, vec!["orders".to_string(), "avg_order_value".to_string()]);
        assert_eq!(d.k, 2);
        assert_eq!(r.proposals.iter().map(|p| p.size).sum::<usize>(), 200);
        let t = text(&r);
        assert!(t.contains("left out") && t.contains("proposal 2"), "{t}");
        let h = html(&r);
        assert!(h.starts_with("<!doctype html>") && h.contains("avg_order_value"));
        // Everything constant: an error that says so.
        let flat = vec![vec![1.0, 2.0, 3.0]; 50];
        assert!(discover_rows(signals, flat, &opts).unwrap_err().to_string().contains("fewer than two"));
    }
}
