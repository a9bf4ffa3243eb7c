//! The report of one fitted model version (`nudge models report`): pure renderers from a version's
//! [`VersionBody`] to terminal text, an SVG of the charts, a self-contained HTML page and JSON. No I/O.
//!
//! Text and HTML share one description of the report ([`sections`]): header, selection, fit
//! diagnostics, the calibration frequency histogram, the holdout comparison, the prediction quality of
//! the selected family's churn score and its holdout spend. Versions made before a figure existed
//! render with that figure marked as not recorded.

use crate::import::day_to_date;
use crate::models_cli::{Tracking, VersionBody};
use crate::svg;
use nudge_models::diagnostics::CalibrationRow;
use nudge_models::holdout::ModelHoldout;
use nudge_models::{ChurnQuality, FamilyCheck, TimeUnit};
use serde_json::{Value, json};

/// A piece of a report section.
enum Block {
    Line(String),
    /// A warning: shouted in text, highlighted in HTML.
    Loud(String),
    Table(Table),
    /// A rendered SVG chart (HTML only).
    Chart(String),
}

struct Table {
    head: Vec<String>,
    /// Cells, and whether the row is flagged (a misfit family).
    rows: Vec<(Vec<String>, bool)>,
    /// Columns aligned left (the others are numbers, aligned right).
    left: Vec<usize>,
}

struct Section {
    title: String,
    blocks: Vec<Block>,
}

/// The terminal report.
pub fn text(id: &str, body: &VersionBody) -> String {
    let mut s = String::new();
    for (i, sec) in sections(id, body, false).iter().enumerate() {
        let rule = if i == 0 { "=" } else { "-" }.repeat(sec.title.chars().count());
        s.push_str(&format!("{}{}\n{rule}\n", if i == 0 { "" } else { "\n" }, sec.title));
        for (j, block) in sec.blocks.iter().enumerate() {
            let more = sec.blocks[j + 1..].iter().any(|b| !matches!(b, Block::Chart(_)));
            s.push_str(&match block {
                Block::Line(l) => format!("{l}\n"),
                Block::Loud(l) => format!("!!! {l}\n"),
                Block::Table(t) => text_table(t) + if more { "\n" } else { "" },
                Block::Chart(_) => String::new(),
            });
        }
    }
    s
}

fn text_table(t: &Table) -> String {
    let mut widths: Vec<usize> = t.head.iter().map(|h| h.chars().count()).collect();
    for (cells, _) in &t.rows {
        widths.iter_mut().zip(cells).for_each(|(w, c)| *w = (*w).max(c.chars().count()));
    }
    let mut s = String::new();
    for cells in std::iter::once(&t.head).chain(t.rows.iter().map(|r| &r.0)) {
        let line: Vec<String> = (cells.iter().zip(&widths).enumerate())
            .map(|(i, (c, &w))| if t.left.contains(&i) { format!("{c:<w$}") } else { format!("{c:>w$}") })
            .collect();
        s.push_str(line.join("  ").trim_end());
        s.push('\n');
    }
    s
}

const STYLE: &str = "body{font-family:sans-serif;max-width:1000px;margin:2em auto;padding:0 1em;color:#222}\
    table{border-collapse:collapse;margin:.6em 0}th,td{border:1px solid #ccc;padding:3px 8px;text-align:right}\
    th{background:#f3f3f3}.l{text-align:left}tr.misfit td{background:#fde2e2;color:#8b0000;font-weight:bold}\
    .loud{background:#fde2e2;border-left:5px solid #c00;padding:.5em;font-weight:bold}\
    .chart svg{max-width:100%;height:auto}";

/// A self-contained HTML page (no external assets, no script) with the report's tables and charts.
pub fn html(id: &str, body: &VersionBody) -> String {
    let e = svg::escape;
    let mut s = format!(
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>Model version {}</title>\n\
         <style>{STYLE}</style>\n</head>\n<body>\n",
        e(id)
    );
    for (i, sec) in sections(id, body, true).iter().enumerate() {
        let h = if i == 0 { "h1" } else { "h2" };
        s.push_str(&format!("<{h}>{}</{h}>\n", e(&sec.title)));
        for block in &sec.blocks {
            s.push_str(&match block {
                Block::Line(l) => format!("<p>{}</p>\n", e(l)),
                Block::Loud(l) => format!("<p class=\"loud\">{}</p>\n", e(l)),
                Block::Chart(c) => format!("<div class=\"chart\">\n{c}</div>\n"),
                Block::Table(t) => {
                    let row = |tag: &str, cells: &[String]| -> String {
                        let cell = |(i, c): (usize, &String)| {
                            let class = if t.left.contains(&i) { " class=\"l\"" } else { "" };
                            format!("<{tag}{class}>{}</{tag}>", e(c))
                        };
                        cells.iter().enumerate().map(cell).collect()
                    };
                    let mut out = format!("<table>\n<tr>{}</tr>\n", row("th", &t.head));
                    for (cells, flagged) in &t.rows {
                        let class = if *flagged { " class=\"misfit\"" } else { "" };
                        out.push_str(&format!("<tr{class}>{}</tr>\n", row("td", cells)));
                    }
                    out + "</table>\n"
                }
            });
        }
    }
    s + "</body>\n</html>\n"
}

/// One SVG document with the charts stacked vertically: calibration tracking, the frequency histogram
/// and the selected family's calibration plot, each when its data was recorded.
pub fn svg(id: &str, body: &VersionBody) -> String {
    let selected = selected_holdout(body).and_then(|m| m.quality.as_ref());
    let charts: Vec<String> = [
        body.tracking.as_ref().and_then(|t| tracking_chart(id, t)).map(|c| c.render()),
        histogram_chart(id, &body.diagnostics).map(|c| c.render()),
        selected.and_then(|q| calibration_chart(id, &body.selected, q)).map(|c| c.render()),
    ]
    .into_iter()
    .flatten()
    .collect();
    svg::stack(&charts)
}

/// The `--json` document; `svg_path` is where the charts were written, if anywhere.
pub fn json(id: &str, body: &VersionBody, svg_path: Option<&str>) -> Value {
    let selected = selected_holdout(body);
    json!({
        "version": id,
        "selected": body.selected,
        "selected_because": body.selected_because,
        "selected_misfit": body.selected_misfit,
        "unit": body.unit,
        "calibration_end": body.calibration_end,
        "observation_end": body.observation_end,
        "customers": body.customers,
        "holdout": body.holdout,
        "tracking": body.tracking,
        "diagnostics": body.diagnostics,
        "misfit_rules": body.misfit_rules,
        "quality": selected.and_then(|m| m.quality.as_ref()),
        "spend": selected.and_then(|m| m.spend.as_ref()),
        "svg": svg_path,
    })
}

// ---------------------------------------------------------------------------------------------------------
// The sections.
// ---------------------------------------------------------------------------------------------------------

fn sections(id: &str, body: &VersionBody, charts: bool) -> Vec<Section> {
    let mut out = vec![header(id, body), selection(body), diagnostics(id, body, charts)];
    out.extend(histogram(id, body, charts));
    out.push(holdout(body));
    if body.holdout.is_some() {
        out.push(quality(id, body, charts));
        out.push(spend(body));
    }
    out
}

fn header(id: &str, body: &VersionBody) -> Section {
    let unit = match body.unit {
        TimeUnit::D => "days",
        TimeUnit::W => "weeks",
        TimeUnit::M => "months",
    };
    let mut blocks = vec![Block::Line(format!(
        "{} customers ({} repeat buyers) from {}, time in {unit}",
        body.customers, body.repeat_buyers, body.source
    ))];
    let cal = body.calibration_end.as_deref().unwrap_or("a date not recorded (summary input)");
    blocks.push(Block::Line(match (&body.holdout, &body.observation_end) {
        (Some(_), obs) => format!("calibration up to {cal}, holdout to {}", obs.as_deref().unwrap_or("?")),
        (None, _) => format!("calibration up to {cal} (no holdout)"),
    }));
    if !body.sufficiency.ok {
        let reason = body.sufficiency.reason.as_deref().unwrap_or("no reason recorded");
        blocks.push(Block::Loud(format!("the data failed the sufficiency gate: {reason}")));
    }
    Section { title: format!("Model version {id}"), blocks }
}

fn selection(body: &VersionBody) -> Section {
    let name = if body.selected.is_empty() { "none" } else { &body.selected };
    let mut blocks = vec![
        Block::Line(format!("selected family: {name}")),
        Block::Line(format!("because: {}", body.selected_because)),
    ];
    if body.selected_misfit {
        blocks.push(Block::Loud(format!(
            "the selected family {name} is MISFIT (every family was); activation needs --force"
        )));
    }
    Section { title: "Selection".into(), blocks }
}

fn diagnostics(id: &str, body: &VersionBody, charts: bool) -> Section {
    let mut blocks = Vec::new();
    if body.diagnostics.is_empty() {
        blocks.push(Block::Line(
            "fit diagnostics not recorded (this version was made before they existed)".into(),
        ));
    } else {
        let bound = match &body.misfit_rules {
            Some(r) => format!("bound ±{:.1}%", 100.0 * r.max_tracking_deviation),
            None => "bound not recorded".into(),
        };
        let rows = body
            .diagnostics
            .iter()
            .map(|d| {
                let verdict = match &d.misfit {
                    Some(reason) => format!("MISFIT: {reason}"),
                    None if !d.plausible => "degenerate".into(),
                    None if !d.trusted => "not converged".into(),
                    None => "ok".into(),
                };
                let cells = vec![
                    mark(&d.model, body),
                    num(d.loglik, 2),
                    d.holdout_log_score.map_or("-".into(), |v| num(v, 5)),
                    d.tracking.as_ref().map_or("-".into(), |t| pct(t.max_relative_deviation)),
                    d.frequency.as_ref().map_or("-".into(), |f| {
                        let (chi, df) = (num(f.chi_square, 1), f.degrees_of_freedom);
                        format!("{chi} (df {df}, p {})", p_value(f.p_value))
                    }),
                    verdict,
                ];
                (cells, d.misfit.is_some())
            })
            .collect();
        let head = format!(
            "family|cal. log-lik|holdout log-lik/customer|tracking max dev. ({bound})|histogram chi-square|verdict"
        );
        let head = head.split('|').map(String::from).collect();
        blocks.push(Block::Table(Table { head, rows, left: vec![0, 5] }));
    }
    if charts && let Some(c) = body.tracking.as_ref().and_then(|t| tracking_chart(id, t)) {
        blocks.push(Block::Chart(c.render()));
    }
    Section { title: "Fit diagnostics".into(), blocks }
}

fn histogram(id: &str, body: &VersionBody, charts: bool) -> Option<Section> {
    let fits: Vec<(&str, &[_])> = body
        .diagnostics
        .iter()
        .filter_map(|d| d.frequency.as_ref().map(|f| (d.model.as_str(), f.buckets.as_slice())))
        .collect();
    let (_, actual) = *fits.first()?;
    let names: Vec<String> = fits.iter().map(|(m, _)| format!("{m} expected")).collect();
    let rows = actual.iter().enumerate().map(|(i, b)| {
        let mut cells = vec![bucket_label(b.frequency, i + 1 == actual.len()), b.actual.to_string()];
        cells.extend(fits.iter().map(|(_, bs)| bs.get(i).map_or("-".into(), |b| num(b.expected, 1))));
        cells
    });
    let mut blocks = vec![table(&format!("repeat purchases|actual|{}", names.join("|")), &[0], rows)];
    if charts && let Some(c) = histogram_chart(id, &body.diagnostics) {
        blocks.push(Block::Chart(c.render()));
    }
    Some(Section { title: "Frequency histogram (calibration repeat purchases)".into(), blocks })
}

fn holdout(body: &VersionBody) -> Section {
    let title = "Holdout".to_string();
    let Some(h) = &body.holdout else {
        let line = "no holdout period: prediction quality (AUC, lift, calibration, spend error) needs a holdout; \
                    refit with `nudge models fit --calibration-end YYYY-MM-DD` (a date before the last purchase)";
        return Section { title, blocks: vec![Block::Line(line.into())] };
    };
    let rows = h
        .models
        .iter()
        .map(|m| {
            let err =
                if m.actual_total > 0.0 { pct(m.predicted_total / m.actual_total - 1.0) } else { "-".into() };
            let cells = vec![
                mark(&m.model, body),
                num(m.predicted_total, 1),
                num(m.actual_total, 0),
                err,
                num(m.mae, 4),
                num(m.rmse, 4),
                m.log_score.map_or("not recorded".into(), |v| num(v, 5)),
            ];
            (cells, is_misfit(body, &m.model))
        })
        .collect();
    let head = "family|predicted|actual|error|MAE|RMSE|log score".split('|').map(String::from).collect();
    let mut blocks = vec![Block::Table(Table { head, rows, left: vec![0] })];
    blocks.push(Block::Line(
        "mean holdout purchases by calibration frequency (actual, then each model's conditional expectation):"
            .into(),
    ));
    let names: Vec<&str> = h.models.iter().map(|m| m.model.as_str()).collect();
    let first = h.models.first().map_or(&[][..], |m| m.by_frequency.as_slice());
    let rows = first.iter().enumerate().map(|(i, b)| {
        let label = bucket_label(b.frequency, i + 1 == first.len());
        let mut cells = vec![label, b.customers.to_string(), num(b.actual_mean, 3)];
        let mean = |m: &ModelHoldout| m.by_frequency.get(i).map_or("-".into(), |b| num(b.predicted_mean, 3));
        cells.extend(h.models.iter().map(mean));
        cells
    });
    blocks.push(table(&format!("x|customers|actual|{}", names.join("|")), &[0], rows));
    Section { title, blocks }
}

fn quality(id: &str, body: &VersionBody, charts: bool) -> Section {
    let title = format!("Prediction quality (churn score) of {}", body.selected);
    let Some(q) = selected_holdout(body).and_then(|m| m.quality.as_ref()) else {
        let line = "prediction quality not recorded (this version was made before it existed)";
        return Section { title, blocks: vec![Block::Line(line.into())] };
    };
    let mut blocks = vec![
        Block::Line(format!("AUC of P(alive): {} (0.5 is random, 1 perfect)", num(q.auc_p_alive, 3))),
        Block::Line(format!(
            "lift quality of P(alive): {}; Braze's bands: 60–100% excellent, 40–60% good, 20–40% fair, 0–20% poor",
            lift(q.lift_quality)
        )),
        Block::Line(format!("AUC of P(purchase): {}", num(q.auc_p_purchase, 3))),
        Block::Line(format!("Brier score of P(purchase): {}", num(q.brier_p_purchase, 4))),
        Block::Line(format!(
            "base rate: {:.1}% ({} of {} customers purchased in the holdout)",
            100.0 * q.base_rate,
            q.purchasers,
            q.customers
        )),
    ];
    let rows = q.calibration.iter().map(|r| {
        let range = format!("{}–{}", num(r.min_p_alive, 3), num(r.max_p_alive, 3));
        let cells = [num(r.mean_p_alive, 3), num(r.mean_p_purchase, 3), num(r.observed_share, 3)];
        [vec![r.decile.to_string(), r.customers.to_string(), range], cells.to_vec()].concat()
    });
    let head = "decile|customers|P(alive) range|mean P(alive)|mean predicted P(purchase)|observed share";
    blocks.push(table(head, &[], rows));
    let others: Vec<String> = body
        .holdout
        .iter()
        .flat_map(|h| &h.models)
        .filter(|m| m.model != body.selected)
        .map(|m| match &m.quality {
            Some(o) => {
                format!("{}: AUC {}, lift quality {}", m.model, num(o.auc_p_alive, 3), lift(o.lift_quality))
            }
            None => format!("{}: not recorded", m.model),
        })
        .collect();
    if !others.is_empty() {
        blocks.push(Block::Line(format!("other families: {}", others.join("; "))));
    }
    if charts && let Some(c) = calibration_chart(id, &body.selected, q) {
        blocks.push(Block::Chart(c.render()));
    }
    Section { title, blocks }
}

fn spend(body: &VersionBody) -> Section {
    let title = format!("Lifetime value (holdout spend) of {}", body.selected);
    let Some(sp) = selected_holdout(body).and_then(|m| m.spend.as_ref()) else {
        let line =
            "holdout spend not recorded (no spend model was fitted, or the version predates the check)";
        return Section { title, blocks: vec![Block::Line(line.into())] };
    };
    let line = format!(
        "predicted holdout spend {}, actual {}, error {}",
        num(sp.predicted_total, 2),
        num(sp.actual_total, 2),
        pct(sp.relative_error)
    );
    let rows = sp.deciles.iter().map(|r| {
        let (d, c) = (r.decile.to_string(), r.customers.to_string());
        vec![d, c, num(r.predicted_mean, 2), num(r.actual_mean, 2), pct(r.relative_error)]
    });
    let head = "decile|customers|predicted mean|actual mean|error";
    Section { title, blocks: vec![Block::Line(line), table(head, &[], rows)] }
}

// ---------------------------------------------------------------------------------------------------------
// Charts.
// ---------------------------------------------------------------------------------------------------------

/// The tracking plot: actual cumulative repeat transactions against each family's prediction, with the
/// calibration end marked. `None` without series.
fn tracking_chart(id: &str, t: &Tracking) -> Option<svg::LineChart> {
    let step = f64::from(t.step_days.max(1));
    let x_of = |day: i32| f64::from(day - t.start_day) / step;
    let actual = t.series.values().next()?;
    let mut series = vec![svg::Series {
        name: "actual".into(),
        color: svg::PALETTE[0].into(),
        dashed: false,
        points: actual.iter().map(|p| (x_of(p.end_day), p.actual)).collect(),
    }];
    series.extend(t.series.iter().map(|(name, points)| svg::Series {
        name: format!("{name} (predicted)"),
        color: color(name).into(),
        dashed: true,
        points: points.iter().map(|p| (x_of(p.end_day), p.predicted)).collect(),
    }));
    Some(svg::LineChart {
        title: format!("Cumulative repeat transactions, model version {id}"),
        x_label: if t.step_days == 7 { "week".into() } else { format!("period of {} days", t.step_days) },
        y_label: "cumulative repeat transactions".into(),
        series,
        markers: vec![svg::Marker {
            x: x_of(t.calibration_end_day),
            label: format!("calibration end {}", day_to_date(t.calibration_end_day)),
        }],
    })
}

/// The calibration frequency histogram, actual against each family's expected, as grouped bars.
fn histogram_chart(id: &str, diagnostics: &[FamilyCheck]) -> Option<svg::BarChart> {
    let fits: Vec<_> = diagnostics.iter().filter_map(|d| d.frequency.as_ref().map(|f| (d, f))).collect();
    let actual = &fits.first()?.1.buckets;
    let mut series = vec![svg::Bars {
        name: "actual".into(),
        color: svg::PALETTE[0].into(),
        values: actual.iter().map(|b| b.actual as f64).collect(),
        intervals: Vec::new(),
    }];
    series.extend(fits.iter().map(|(d, f)| svg::Bars {
        name: format!("{} (expected){}", d.model, if d.misfit.is_some() { ", MISFIT" } else { "" }),
        color: color(&d.model).into(),
        values: f.buckets.iter().map(|b| b.expected).collect(),
        intervals: Vec::new(),
    }));
    Some(svg::BarChart {
        title: format!("Calibration repeat purchases per customer, model version {id}"),
        x_label: "repeat purchases in the calibration period".into(),
        y_label: "customers".into(),
        categories: actual
            .iter()
            .enumerate()
            .map(|(i, b)| bucket_label(b.frequency, i + 1 == actual.len()))
            .collect(),
        series,
    })
}

/// The calibration plot of a family's churn score by `P(alive)` decile.
fn calibration_chart(id: &str, family: &str, q: &ChurnQuality) -> Option<svg::LineChart> {
    if q.calibration.is_empty() {
        return None;
    }
    let line = |name: &str, i: usize, dashed: bool, f: fn(&CalibrationRow) -> f64| svg::Series {
        name: name.into(),
        color: svg::PALETTE[i].into(),
        dashed,
        points: q.calibration.iter().map(|r| (f64::from(r.decile), f(r))).collect(),
    };
    Some(svg::LineChart {
        title: format!("Calibration of {family}'s churn score on the holdout, model version {id}"),
        x_label: "P(alive) decile (1 = lowest)".into(),
        y_label: "probability / share".into(),
        series: vec![
            line("observed share who purchased", 0, false, |r| r.observed_share),
            line("mean P(alive)", 1, true, |r| r.mean_p_alive),
            line("mean predicted P(purchase)", 2, true, |r| r.mean_p_purchase),
        ],
        markers: vec![],
    })
}

// ---------------------------------------------------------------------------------------------------------
// Helpers.
// ---------------------------------------------------------------------------------------------------------

/// A table without flagged rows from `|`-separated column titles.
fn table(head: &str, left: &[usize], rows: impl Iterator<Item = Vec<String>>) -> Block {
    let head = head.split('|').map(String::from).collect();
    Block::Table(Table { head, rows: rows.map(|r| (r, false)).collect(), left: left.to_vec() })
}

fn selected_holdout(body: &VersionBody) -> Option<&ModelHoldout> {
    body.holdout.as_ref()?.models.iter().find(|m| m.model == body.selected)
}

fn is_misfit(body: &VersionBody, family: &str) -> bool {
    body.diagnostics.iter().any(|d| d.model == family && d.misfit.is_some())
}

/// The family name, marked when it is the selected one.
fn mark(family: &str, body: &VersionBody) -> String {
    if family == body.selected { format!("{family} (selected)") } else { family.to_string() }
}

/// A family's colour, the same in every chart.
fn color(family: &str) -> &'static str {
    let i = ["bgnbd", "mbgnbd", "pareto_nbd"].iter().position(|f| *f == family).unwrap_or(3);
    svg::PALETTE[i + 1]
}

fn bucket_label(frequency: u32, last: bool) -> String {
    if last { format!("{frequency}+") } else { frequency.to_string() }
}

fn num(v: f64, decimals: usize) -> String {
    if v.is_finite() { format!("{v:.decimals$}") } else { "n/a".into() }
}

/// A signed percentage from a ratio.
fn pct(v: f64) -> String {
    if v.is_finite() { format!("{:+.1}%", 100.0 * v) } else { "n/a".into() }
}

fn p_value(p: f64) -> String {
    if p.is_finite() && p < 0.001 { "< 0.001".into() } else { num(p, 3) }
}

/// Lift quality as a percentage with its band.
fn lift(q: f64) -> String {
    let p = 100.0 * q;
    let band = match p {
        _ if !p.is_finite() => return "n/a (the holdout has only purchasers or only non-purchasers)".into(),
        _ if p >= 60.0 => "excellent",
        _ if p >= 40.0 => "good",
        _ if p >= 20.0 => "fair",
        _ => "poor",
    };
    format!("{p:.1}% ({band})")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A version body: the fields every version has, with `extra` merged over them.
    fn body(extra: Value) -> VersionBody {
        let mut v = json!({
            "source": "transactions", "unit": "W", "calibration_end": "1997-09-30", "observation_end": "1998-06-30",
            "data_digest": "d", "customers": 100, "repeat_buyers": 40, "penalizer": 0.0, "fits": {}, "holdout": null,
            "tracking": null, "sufficiency": { "ok": true, "reason": null }, "selected": "bgnbd",
            "selected_because": "highest holdout log-likelihood per customer (-0.50000)",
            "scorer": { "version": "v1", "unit": "W", "spend": null,
                "count": { "family": "bgnbd", "r": 0.24, "alpha": 4.4, "a": 0.79, "b": 2.4 },
                "clv": { "months": 12, "monthly_discount_rate": 0.01, "unit": "W" } },
        });
        v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
        serde_json::from_value(v).unwrap()
    }

    fn check(model: &str, misfit: Option<&str>) -> Value {
        let buckets: Vec<Value> = (0..8)
            .map(|k| json!({ "frequency": k, "actual": 50 >> k, "expected": 48.0 / f64::from(1 << k) }))
            .collect();
        json!({ "model": model, "trusted": true, "plausible": true, "loglik": -1234.5, "holdout_log_score": -0.5,
            "tracking": { "max_relative_deviation": 0.14, "at_day": 10, "actual_at_end": 50.0,
                "predicted_at_end": 57.0, "periods": 20 },
            "frequency": { "buckets": buckets, "chi_square": 12.5, "degrees_of_freedom": 3, "p_value": 0.0058 },
            "misfit": misfit })
    }

    fn holdout_model(model: &str, lift: f64) -> Value {
        let calibration: Vec<Value> = (1..=10)
            .map(f64::from)
            .map(|d| json!({ "decile": d as u32, "customers": 10, "min_p_alive": 0.1 * d - 0.1, "max_p_alive": 0.1 * d,
                "mean_p_alive": 0.1 * d - 0.05, "mean_p_purchase": 0.05 * d, "observed_share": 0.06 * d }))
            .collect();
        json!({ "model": model, "params": [1.0, 2.0, 3.0, 4.0], "loglik": -1234.5, "converged": true,
            "predicted_total": 55.0, "actual_total": 50.0, "mae": 0.4, "rmse": 0.7, "log_score": -0.5,
            "by_frequency": [{ "frequency": 0, "customers": 60, "actual_mean": 0.2, "predicted_mean": 0.25 },
                             { "frequency": 7, "customers": 40, "actual_mean": 2.0, "predicted_mean": 1.8 }],
            "quality": { "customers": 100, "purchasers": 30, "base_rate": 0.3, "auc_p_alive": (1.0 + lift) / 2.0,
                "lift_quality": lift, "auc_p_purchase": 0.75, "brier_p_purchase": 0.18, "calibration": calibration },
            "spend": { "predicted_total": 900.0, "actual_total": 1000.0, "relative_error": -0.1, "deciles": [
                { "decile": 1, "customers": 10, "predicted_mean": 1.0, "actual_mean": 2.0, "relative_error": -0.5 }] } })
    }

    fn full() -> VersionBody {
        let series: Vec<Value> = [(1.0, 1.2), (3.0, 2.9), (5.0, 5.5)]
            .iter()
            .enumerate()
            .map(|(k, (a, p))| json!({ "period": k + 1, "end_day": 9807 + 7 * k as i32, "actual": a, "predicted": p }))
            .collect();
        body(json!({
            "holdout": { "best": "pareto_nbd",
                "models": [holdout_model("bgnbd", 0.62), holdout_model("pareto_nbd", 0.35)] },
            "tracking": { "step_days": 7, "start_day": 9800, "calibration_end_day": 9814,
                "series": { "bgnbd": series, "pareto_nbd": series } },
            "diagnostics": [check("bgnbd", None), check("pareto_nbd", Some("calibration tracking off by +14.0% <tight>"))],
            "misfit_rules": { "max_tracking_deviation": 0.1, "max_chi_square_ratio": 3.0 },
        }))
    }

    #[test]
    fn text_has_every_section_the_misfit_reason_and_the_lift_band() {
        let t = text("v7", &full());
        for title in [
            "Model version v7",
            "Selection",
            "Fit diagnostics",
            "Frequency histogram",
            "Holdout",
            "mean holdout purchases by calibration frequency",
            "Prediction quality (churn score)",
            "Lifetime value (holdout spend)",
        ] {
            assert!(t.contains(title), "{title} missing:\n{t}");
        }
        assert!(t.contains("MISFIT: calibration tracking off by +14.0% <tight>"), "{t}");
        assert!(
            t.contains("62.0% (excellent)") && t.contains("pareto_nbd: AUC 0.675, lift quality 35.0% (fair)")
        );
        assert!(
            t.contains("bound ±10.0%") && t.contains("+14.0%") && t.contains("12.5 (df 3, p 0.006)"),
            "{t}"
        );
        assert!(t.contains("bgnbd (selected)") && t.contains("7+") && !t.contains("<svg"), "{t}");
    }

    #[test]
    fn html_has_tables_charts_escaped_text_and_marked_misfits() {
        let h = html("v7", &full());
        assert!(h.starts_with("<!DOCTYPE html>") && h.contains("<table>") && h.matches("<svg").count() == 3);
        assert!(h.contains("&lt;tight&gt;") && !h.contains("<tight>"));
        assert!(h.contains("<tr class=\"misfit\">"));
        assert!(!h.contains("<script") && !h.contains("src=") && !h.contains("href="));
    }

    #[test]
    fn svg_is_one_document_with_the_three_charts_and_json_has_the_selected_quality() {
        let s = svg("v7", &full());
        assert!(s.starts_with("<svg") && s.trim_end().ends_with("</svg>"));
        assert_eq!((s.matches("<svg").count(), s.matches("</svg>").count()), (4, 4));
        let j = json("v7", &full(), Some("v7.svg"));
        assert_eq!((&j["svg"], &j["quality"]["lift_quality"]), (&json!("v7.svg"), &json!(0.62)));
        assert_eq!(j["diagnostics"][1]["model"], "pareto_nbd");
    }

    #[test]
    fn old_and_holdout_free_bodies_render() {
        let mut old = holdout_model("bgnbd", 0.5);
        for key in ["log_score", "quality", "spend"] {
            old.as_object_mut().unwrap().remove(key);
        }
        let old = body(json!({ "holdout": { "best": "bgnbd", "models": [old] } }));
        let t = text("v1", &old);
        assert!(
            t.contains("fit diagnostics not recorded") && t.contains("prediction quality not recorded"),
            "{t}"
        );
        assert!(t.contains("not recorded") && !t.contains("Frequency histogram"), "{t}");
        assert_eq!(svg("v1", &old).matches("<svg").count(), 1);
        assert!(html("v1", &old).contains("<table>") && json("v1", &old, None)["quality"].is_null());
        let mut no_holdout = full();
        (no_holdout.holdout, no_holdout.selected_misfit) = (None, true);
        let t = text("v2", &no_holdout);
        assert!(t.contains("!!! the selected family bgnbd is MISFIT"), "{t}");
        assert!(t.contains("needs a holdout") && t.contains("--calibration-end YYYY-MM-DD"), "{t}");
        assert!(t.contains("Fit diagnostics") && !t.contains("Prediction quality"), "{t}");
        assert_eq!(svg("v2", &no_holdout).matches("<svg").count(), 1 + 2);
    }
}
