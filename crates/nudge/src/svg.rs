//! Small hand-written SVG charts, used by the model report of `nudge models report`.
//!
//! Only drawing lives here: a line chart (axes with rounded ticks, labelled lines, solid or dashed,
//! vertical markers and a legend), a grouped bar chart, and [`stack`], which puts rendered charts one
//! under the other in one document. What is plotted, and where the file goes, is up to the caller.

use std::fmt::Write;

/// One line of the chart.
#[derive(Debug, Clone)]
pub struct Series {
    pub name: String,
    /// Any SVG colour, such as `#1f77b4`.
    pub color: String,
    pub dashed: bool,
    /// Points in data coordinates, in drawing order.
    pub points: Vec<(f64, f64)>,
}

/// A labelled vertical dashed line at an x value (for example the end of the calibration period).
#[derive(Debug, Clone)]
pub struct Marker {
    pub x: f64,
    pub label: String,
}

/// A complete chart description.
#[derive(Debug, Clone)]
pub struct LineChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub series: Vec<Series>,
    pub markers: Vec<Marker>,
}

const WIDTH: f64 = 860.0;
const HEIGHT: f64 = 500.0;
const LEFT: f64 = 80.0;
const RIGHT: f64 = 30.0;
const TOP: f64 = 50.0;
const BOTTOM: f64 = 60.0;

/// The colours given to series in order, chosen to stay distinguishable in print.
pub const PALETTE: [&str; 6] = ["#222222", "#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e"];

impl LineChart {
    /// Renders the chart as a standalone SVG document.
    pub fn render(&self) -> String {
        let points = self.series.iter().flat_map(|s| s.points.iter().copied());
        let finite: Vec<(f64, f64)> = points.filter(|(x, y)| x.is_finite() && y.is_finite()).collect();
        let (mut x0, mut x1) = bounds(finite.iter().map(|p| p.0).chain(self.markers.iter().map(|m| m.x)));
        let (_, mut y1) = bounds(finite.iter().map(|p| p.1));
        if x1 <= x0 {
            x0 -= 1.0;
            x1 += 1.0;
        }
        if y1 <= 0.0 {
            y1 = 1.0;
        }
        let x_ticks = ticks(x0, x1, 10);
        let y_ticks = ticks(0.0, y1, 8);
        let (x0, x1) = (x0.min(x_ticks[0]), x1.max(*x_ticks.last().unwrap_or(&x1)));
        let y1 = y1.max(*y_ticks.last().unwrap_or(&y1));
        let plot_w = WIDTH - LEFT - RIGHT;
        let plot_h = HEIGHT - TOP - BOTTOM;
        let sx = |x: f64| LEFT + (x - x0) / (x1 - x0) * plot_w;
        let sy = |y: f64| TOP + plot_h - y / y1 * plot_h;

        let mut s = open(&self.title);
        // Grid and ticks.
        for &t in &x_ticks {
            let x = sx(t);
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#e6e6e6"/><text x="{x:.1}" y="{:.1}" text-anchor="middle">{}</text>"##,
                TOP + plot_h,
                TOP + plot_h + 18.0,
                tick_label(t)
            );
        }
        y_axis(&mut s, &y_ticks, sy, &self.x_label, &self.y_label);
        // Markers.
        for m in &self.markers {
            let x = sx(m.x);
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" y1="{TOP}" x2="{x:.1}" y2="{:.1}" stroke="#777" stroke-dasharray="4 4"/><text x="{:.1}" y="{:.1}" fill="#555">{}</text>"##,
                TOP + plot_h,
                x + 4.0,
                TOP + 14.0,
                escape(&m.label)
            );
        }
        // Lines.
        for line in &self.series {
            let path: Vec<String> = line
                .points
                .iter()
                .filter(|(x, y)| x.is_finite() && y.is_finite())
                .map(|&(x, y)| format!("{:.1},{:.1}", sx(x), sy(y)))
                .collect();
            if path.is_empty() {
                continue;
            }
            let dash = if line.dashed { r#" stroke-dasharray="7 4""# } else { "" };
            let _ = writeln!(
                s,
                r#"<polyline fill="none" stroke="{}" stroke-width="2"{dash} points="{}"><title>{}</title></polyline>"#,
                escape(&line.color),
                path.join(" "),
                escape(&line.name)
            );
        }
        // Legend, top left inside the plot.
        for (i, line) in self.series.iter().enumerate() {
            let y = TOP + 14.0 + 18.0 * i as f64;
            let x = LEFT + 14.0;
            let dash = if line.dashed { r#" stroke-dasharray="7 4""# } else { "" };
            let _ = writeln!(
                s,
                r#"<line x1="{x:.1}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="{}" stroke-width="2"{dash}/><text x="{:.1}" y="{:.1}">{}</text>"#,
                x + 28.0,
                escape(&line.color),
                x + 34.0,
                y + 4.0,
                escape(&line.name)
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

/// One group member of a bar chart: a value per category.
#[derive(Debug, Clone)]
pub struct Bars {
    pub name: String,
    /// Any SVG colour, such as `#1f77b4`.
    pub color: String,
    /// One value per category, in the order of [`BarChart::categories`]; missing values draw no bar.
    pub values: Vec<f64>,
    /// Per category, an interval drawn as a whisker over the bar (empty, or `None`, for none).
    pub intervals: Vec<Option<(f64, f64)>>,
}

/// A grouped bar chart: one group per category, one bar per series in each group.
#[derive(Debug, Clone)]
pub struct BarChart {
    pub title: String,
    pub x_label: String,
    pub y_label: String,
    pub categories: Vec<String>,
    pub series: Vec<Bars>,
}

impl BarChart {
    /// Renders the chart as a standalone SVG document.
    pub fn render(&self) -> String {
        let (_, mut y1) =
            bounds(self.series.iter().flat_map(|b| {
                b.values.iter().copied().chain(b.intervals.iter().flatten().map(|&(_, hi)| hi))
            }));
        if y1 <= 0.0 {
            y1 = 1.0;
        }
        let y_ticks = ticks(0.0, y1, 8);
        let y1 = y1.max(*y_ticks.last().unwrap_or(&y1));
        let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
        let sy = |y: f64| TOP + plot_h - y.max(0.0) / y1 * plot_h;
        let mut s = open(&self.title);
        y_axis(&mut s, &y_ticks, sy, &self.x_label, &self.y_label);
        let group_w = plot_w / self.categories.len().max(1) as f64;
        let bar_w = 0.8 * group_w / self.series.len().max(1) as f64;
        for (i, category) in self.categories.iter().enumerate() {
            let x0 = LEFT + group_w * i as f64 + 0.1 * group_w;
            let _ = writeln!(
                s,
                r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
                LEFT + group_w * (i as f64 + 0.5),
                TOP + plot_h + 18.0,
                escape(category)
            );
            for (j, bars) in self.series.iter().enumerate() {
                let Some(&v) = bars.values.get(i).filter(|v| v.is_finite()) else {
                    continue;
                };
                let y = sy(v);
                let _ = writeln!(
                    s,
                    r#"<rect x="{:.1}" y="{y:.1}" width="{:.1}" height="{:.1}" fill="{}"><title>{}: {}</title></rect>"#,
                    x0 + bar_w * j as f64,
                    bar_w,
                    TOP + plot_h - y,
                    escape(&bars.color),
                    escape(&bars.name),
                    tick_label(v)
                );
                if let Some(&Some((lo, hi))) = bars.intervals.get(i) {
                    let xm = x0 + bar_w * (j as f64 + 0.5);
                    let (ylo, yhi) = (sy(lo), sy(hi));
                    let _ = writeln!(
                        s,
                        r##"<path d="M{xm:.1} {ylo:.1}V{yhi:.1}M{:.1} {ylo:.1}H{:.1}M{:.1} {yhi:.1}H{:.1}" stroke="#333" fill="none"><title>{}: {} to {}</title></path>"##,
                        xm - 6.0,
                        xm + 6.0,
                        xm - 6.0,
                        xm + 6.0,
                        escape(&bars.name),
                        tick_label(lo),
                        tick_label(hi)
                    );
                }
            }
        }
        // Legend, top right inside the plot.
        for (i, bars) in self.series.iter().enumerate() {
            let (x, y) = (LEFT + plot_w - 220.0, TOP + 14.0 + 18.0 * i as f64);
            let _ = writeln!(
                s,
                r#"<rect x="{x:.1}" y="{:.1}" width="14" height="10" fill="{}"/><text x="{:.1}" y="{:.1}">{}</text>"#,
                y - 5.0,
                escape(&bars.color),
                x + 20.0,
                y + 4.0,
                escape(&bars.name)
            );
        }
        s.push_str("</svg>\n");
        s
    }
}

/// Stacks rendered charts (standalone SVG documents such as [`LineChart::render`] returns) one under
/// the other into one SVG document: each becomes a nested `<svg>` shifted down by the heights above it.
pub fn stack(charts: &[String]) -> String {
    let (mut inner, mut width, mut height) = (String::new(), 0.0f64, 0.0);
    for chart in charts {
        let chart = chart.trim();
        let Some(rest) = chart.strip_prefix("<svg") else {
            continue;
        };
        let _ = writeln!(inner, r#"<svg y="{height}"{rest}"#);
        width = width.max(dimension(chart, "width").unwrap_or(WIDTH));
        height += dimension(chart, "height").unwrap_or(HEIGHT);
    }
    format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{width}\" height=\"{height}\" viewBox=\"0 0 {width} {height}\">\n{inner}</svg>\n"
    )
}

/// A numeric attribute of an SVG document's root element.
fn dimension(svg: &str, name: &str) -> Option<f64> {
    let tag = &svg[..svg.find('>')?];
    let key = format!(" {name}=\"");
    let start = tag.find(&key)? + key.len();
    let end = start + tag[start..].find('"')?;
    tag[start..end].parse().ok()
}

/// The opening of a chart document: the root element, a white background and the title.
fn open(title: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="12">"#
    );
    let _ = writeln!(s, r#"<rect width="{WIDTH}" height="{HEIGHT}" fill="white"/>"#);
    let _ = writeln!(
        s,
        r#"<text x="{}" y="28" text-anchor="middle" font-size="16">{}</text>"#,
        WIDTH / 2.0,
        escape(title)
    );
    s
}

/// The horizontal grid lines with their y tick labels, both axes and the axis labels.
fn y_axis(s: &mut String, y_ticks: &[f64], sy: impl Fn(f64) -> f64, x_label: &str, y_label: &str) {
    let (plot_w, plot_h) = (WIDTH - LEFT - RIGHT, HEIGHT - TOP - BOTTOM);
    for &t in y_ticks {
        let y = sy(t);
        let _ = writeln!(
            s,
            r##"<line x1="{LEFT}" y1="{y:.1}" x2="{:.1}" y2="{y:.1}" stroke="#e6e6e6"/><text x="{:.1}" y="{:.1}" text-anchor="end">{}</text>"##,
            LEFT + plot_w,
            LEFT - 8.0,
            y + 4.0,
            tick_label(t)
        );
    }
    let _ = writeln!(
        s,
        r##"<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{:.1}" stroke="#000"/><line x1="{LEFT}" y1="{:.1}" x2="{:.1}" y2="{:.1}" stroke="#000"/>"##,
        TOP + plot_h,
        TOP + plot_h,
        LEFT + plot_w,
        TOP + plot_h
    );
    let _ = writeln!(
        s,
        r#"<text x="{:.1}" y="{:.1}" text-anchor="middle">{}</text>"#,
        LEFT + plot_w / 2.0,
        HEIGHT - 15.0,
        escape(x_label)
    );
    let _ = writeln!(
        s,
        r#"<text x="20" y="{:.1}" text-anchor="middle" transform="rotate(-90 20 {:.1})">{}</text>"#,
        TOP + plot_h / 2.0,
        TOP + plot_h / 2.0,
        escape(y_label)
    );
}

/// The smallest and largest finite value, or `(0, 1)` when there is none.
fn bounds(values: impl Iterator<Item = f64>) -> (f64, f64) {
    let (lo, hi) = values
        .filter(|v| v.is_finite())
        .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| (lo.min(v), hi.max(v)));
    if lo.is_finite() { (lo, hi) } else { (0.0, 1.0) }
}

/// About `target` evenly spaced round tick values (steps of 1, 2 or 5 times a power of ten) covering
/// `[lo, hi]`.
pub fn ticks(lo: f64, hi: f64, target: usize) -> Vec<f64> {
    let span = (hi - lo).abs().max(f64::MIN_POSITIVE);
    let raw = span / target.max(1) as f64;
    let magnitude = 10f64.powf(raw.log10().floor());
    let step =
        [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(10.0 * magnitude);
    let first = (lo / step).floor() * step;
    let mut out = Vec::new();
    let mut t = first;
    while t < hi + step * 0.999 && out.len() < 100 {
        out.push(t);
        t += step;
    }
    out
}

fn tick_label(v: f64) -> String {
    if (v - v.round()).abs() < 1e-9 { format!("{}", v.round() as i64) } else { format!("{v:.2}") }
}

/// Escapes text for XML and HTML content and attribute values.
pub fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;").replace('"', "&quot;")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_are_round_and_cover_the_range() {
        let t = ticks(0.0, 4700.0, 8);
        assert_eq!(t[0], 0.0);
        assert!(*t.last().unwrap() >= 4700.0);
        assert!(
            t.windows(2).all(|w| (w[1] - w[0] - 1000.0).abs() < 1e-9 || (w[1] - w[0] - 500.0).abs() < 1e-9)
        );
    }

    #[test]
    fn renders_lines_markers_and_escapes_text() {
        let chart = LineChart {
            title: "a < b".into(),
            x_label: "week".into(),
            y_label: "count".into(),
            series: vec![Series {
                name: "actual".into(),
                color: PALETTE[0].into(),
                dashed: false,
                points: vec![(1.0, 1.0), (2.0, 3.0)],
            }],
            markers: vec![Marker { x: 1.5, label: "end".into() }],
        };
        let svg = chart.render();
        assert!(svg.starts_with("<svg"));
        assert!(svg.contains("a &lt; b"));
        assert!(svg.contains("<polyline"));
        assert!(svg.contains("stroke-dasharray=\"4 4\""));
        assert!(svg.trim_end().ends_with("</svg>"));
    }

    fn bar_chart() -> BarChart {
        BarChart {
            title: "histogram".into(),
            x_label: "repeat purchases".into(),
            y_label: "customers".into(),
            categories: vec!["0".into(), "1".into(), "2+".into()],
            series: vec![
                Bars {
                    name: "actual".into(),
                    color: PALETTE[0].into(),
                    values: vec![100.0, 40.0, 10.0],
                    intervals: vec![Some((90.0, 100.0))],
                },
                Bars {
                    name: "a <model>".into(),
                    color: PALETTE[1].into(),
                    values: vec![95.0, f64::NAN],
                    intervals: Vec::new(),
                },
            ],
        }
    }

    #[test]
    fn bar_chart_draws_one_bar_per_finite_value_in_groups() {
        let svg = bar_chart().render();
        assert!(svg.starts_with("<svg") && svg.trim_end().ends_with("</svg>"));
        // Three actual bars and one model bar (NaN and the missing value draw nothing), plus the legend
        // swatches and the background.
        assert_eq!(svg.matches("<rect x=").count(), 4 + 2);
        // Four bars and the first bar's interval whisker.
        assert_eq!(svg.matches("<title>").count(), 5);
        assert_eq!(svg.matches("<path d=").count(), 1);
        assert!(svg.contains(">2+</text>"));
        assert!(svg.contains("a &lt;model&gt;"));
        // The tallest bar reaches the top tick at 100: y = TOP.
        assert!(svg.contains(&format!(r#"y="{TOP:.1}" width="#)));
    }

    #[test]
    fn stack_nests_charts_with_offsets_and_sums_heights() {
        let charts = vec![bar_chart().render(), bar_chart().render()];
        let svg = stack(&charts);
        assert!(svg.starts_with("<svg"));
        assert_eq!(svg.matches("<svg").count(), 3);
        assert_eq!(svg.matches("</svg>").count(), 3);
        assert!(svg.contains(&format!(r#"height="{}""#, 2.0 * HEIGHT)));
        assert!(svg.contains(r#"<svg y="0" xmlns"#));
        assert!(svg.contains(&format!(r#"<svg y="{HEIGHT}" xmlns"#)));
        assert_eq!(dimension(&charts[0], "width"), Some(WIDTH));
        assert!(stack(&[]).contains(r#"height="0""#));
    }
}
