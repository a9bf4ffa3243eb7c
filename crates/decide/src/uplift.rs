//! Did a campaign work, and for whom: the numbers of `nudge report campaign`, from plain vectors.
//!
//! The caller reduces a flow's recorded decisions to one [`Unit`] per customer: treated or held out, whether
//! they ordered within the window after their first decision, the revenue of those orders, their segment,
//! and the features known at decision time. [`analyse`] then gives:
//!
//! - conversion per group with its 95 % interval, and the uplift (treated − control) with its 95 %
//!   interval, both through [`RateIntervals`] (the caller passes the Wilson / Newcombe implementation the
//!   lift report uses, so both reports agree to the last digit);
//! - revenue per customer per group and its difference with a 95 % Welch interval (unequal variances,
//!   Welch–Satterthwaite degrees of freedom), plus a seeded percentile bootstrap interval of the same
//!   difference (groups resampled separately, with replacement) as a check that does not lean on
//!   normality — revenue is mostly zeros with a long tail;
//! - the same conversion comparison per segment;
//! - the top drivers: among the treated, the features that best separate customers who converted from
//!   those who did not, by the univariate AUC (the probability that a random responder has a higher value
//!   than a random non-responder, ties counting half) with the standardised mean difference (difference of
//!   means over the root of the mean of the two variances). These are associations, not effects;
//! - a plain-language [`summary`] from a template that never claims more than the intervals allow.
//!
//! Pure: no I/O, and the only randomness is the bootstrap's, from [`Options::seed`] (rand's `SmallRng`, a
//! fast non-cryptographic generator: the resamples draw tens of millions of indices on a large campaign).

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use statrs::distribution::{ContinuousCDF, StudentsT};
use std::collections::BTreeMap;
use std::fmt::Write as _;

/// The 95 % intervals of one conversion rate and of a difference of two, supplied by the caller.
pub trait RateIntervals {
    /// The 95 % interval of `k / n`; `None` for `n = 0`.
    fn rate(&self, k: u64, n: u64) -> Option<(f64, f64)>;
    /// The 95 % interval of `k1 / n1 − k2 / n2`; `None` when either group is empty.
    fn difference(&self, k1: u64, n1: u64, k2: u64, n2: u64) -> Option<(f64, f64)>;
    /// The method's name, for the output (`Newcombe hybrid score`).
    fn method(&self) -> &'static str;
}

/// One customer of the campaign.
#[derive(Debug, Clone, PartialEq)]
pub struct Unit {
    /// Treated (the flow acted, or would have) rather than held out.
    pub treated: bool,
    /// Ordered within the window after the first decision.
    pub converted: bool,
    /// Revenue of the orders within the window (0 without).
    pub revenue: f64,
    /// The customer's segment (`loyal`, `lapsed`, …; `unknown` when none is known).
    pub segment: String,
    /// Feature values known at decision time, aligned with the feature names given to [`analyse`];
    /// `None` where unknown (a customer without orders has no days since their last order).
    pub features: Vec<Option<f64>>,
}

/// Settings of [`analyse`].
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// Seed of the bootstrap's generator: the same units and seed give the same interval.
    pub seed: u64,
    /// Bootstrap resamples (0 for none).
    pub resamples: usize,
    /// How many drivers to keep.
    pub top_drivers: usize,
    /// A feature is ranked only with at least this many responders and non-responders that have a value.
    pub min_class: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { seed: 0x5eed_cafe, resamples: 1000, top_drivers: 5, min_class: 5 }
    }
}

/// One group's outcomes.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Group {
    /// Customers.
    pub n: u64,
    pub conversions: u64,
    /// `conversions / n`; null with no customers.
    pub rate: Option<f64>,
    /// 95 % interval of the rate.
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    /// Mean revenue within the window per customer (zeros included); null with no customers.
    pub revenue_per_customer: Option<f64>,
    /// Sample standard deviation of revenue per customer; null below two customers.
    pub revenue_sd: Option<f64>,
}

/// A difference treated − control with its 95 % interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Difference {
    /// Null when either group is empty.
    pub abs: Option<f64>,
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    /// `abs / control`; null when the control value is 0 or unknown.
    pub relative: Option<f64>,
    /// How the interval is computed.
    pub method: String,
}

impl Difference {
    /// Whether the interval lies wholly above (`Some(true)`) or below (`Some(false)`) zero; `None` when it
    /// contains zero or is unknown.
    pub fn excludes_zero(&self) -> Option<bool> {
        match (self.ci_low, self.ci_high) {
            (Some(lo), _) if lo > 0.0 => Some(true),
            (_, Some(hi)) if hi < 0.0 => Some(false),
            _ => None,
        }
    }
}

/// The revenue difference, with the bootstrap check beside the Welch interval.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct RevenueDifference {
    #[serde(flatten)]
    pub welch: Difference,
    /// Welch–Satterthwaite degrees of freedom.
    pub df: Option<f64>,
    /// 95 % percentile bootstrap interval of the same difference; null without resamples.
    pub bootstrap_ci_low: Option<f64>,
    pub bootstrap_ci_high: Option<f64>,
    pub bootstrap_resamples: usize,
    pub bootstrap_seed: u64,
}

/// One segment's comparison.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct SegmentRow {
    pub segment: String,
    pub treated: Group,
    pub control: Group,
    pub uplift: Difference,
}

/// A feature that separates responders from non-responders among the treated.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Driver {
    pub feature: String,
    /// P(a responder's value > a non-responder's), ties half: 0.5 separates nothing.
    pub auc: f64,
    /// Standardised mean difference, responders − non-responders.
    pub smd: f64,
    /// `higher` or `lower` among responders.
    pub direction: &'static str,
    pub responders_mean: f64,
    pub non_responders_mean: f64,
    /// Treated customers with a value: responders and non-responders.
    pub n_responders: usize,
    pub n_non_responders: usize,
}

/// What [`analyse`] finds.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Analysis {
    pub treated: Group,
    pub control: Group,
    pub uplift: Difference,
    pub revenue_uplift: RevenueDifference,
    pub segments: Vec<SegmentRow>,
    pub drivers: Vec<Driver>,
}

/// A 95 % Welch interval of a difference of means.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct WelchInterval {
    pub difference: f64,
    pub low: f64,
    pub high: f64,
    pub df: f64,
}

fn mean(x: &[f64]) -> f64 {
    x.iter().sum::<f64>() / x.len() as f64
}

/// Sample variance (n − 1); 0 below two values.
fn variance(x: &[f64]) -> f64 {
    if x.len() < 2 {
        return 0.0;
    }
    let m = mean(x);
    x.iter().map(|v| (v - m).powi(2)).sum::<f64>() / (x.len() - 1) as f64
}

/// Welch's interval at `level` (0.95) for `mean(a) − mean(b)`; `None` when a group has fewer than two
/// values. With no spread in either group the interval is the difference itself.
pub fn welch_interval(a: &[f64], b: &[f64], level: f64) -> Option<WelchInterval> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let (na, nb) = (a.len() as f64, b.len() as f64);
    let (va, vb) = (variance(a) / na, variance(b) / nb);
    let difference = mean(a) - mean(b);
    let se2 = va + vb;
    if se2 <= 0.0 {
        return Some(WelchInterval { difference, low: difference, high: difference, df: na + nb - 2.0 });
    }
    let df = se2 * se2 / (va * va / (na - 1.0) + vb * vb / (nb - 1.0));
    let t = StudentsT::new(0.0, 1.0, df).ok()?.inverse_cdf(0.5 + level / 2.0);
    let half = t * se2.sqrt();
    Some(WelchInterval { difference, low: difference - half, high: difference + half, df })
}

/// The `q` quantile of sorted values, interpolating linearly between order statistics (numpy's default).
fn quantile(sorted: &[f64], q: f64) -> f64 {
    let pos = q * (sorted.len() - 1) as f64;
    let (i, frac) = (pos.floor() as usize, pos - pos.floor());
    if i + 1 < sorted.len() { sorted[i] + frac * (sorted[i + 1] - sorted[i]) } else { sorted[i] }
}

/// Percentile bootstrap interval at `level` for `mean(a) − mean(b)`: each group resampled with
/// replacement on its own, `resamples` times, from a generator seeded with `seed`. `None` when a group is
/// empty or `resamples` is 0.
pub fn bootstrap_mean_difference(
    a: &[f64],
    b: &[f64],
    resamples: usize,
    seed: u64,
    level: f64,
) -> Option<(f64, f64)> {
    if a.is_empty() || b.is_empty() || resamples == 0 {
        return None;
    }
    let mut rng = SmallRng::seed_from_u64(seed);
    let resampled_mean = |x: &[f64], rng: &mut SmallRng| {
        (0..x.len()).map(|_| x[rng.gen_range(0..x.len())]).sum::<f64>() / x.len() as f64
    };
    let mut diffs: Vec<f64> =
        (0..resamples).map(|_| resampled_mean(a, &mut rng) - resampled_mean(b, &mut rng)).collect();
    diffs.sort_by(f64::total_cmp);
    let tail = (1.0 - level) / 2.0;
    Some((quantile(&diffs, tail), quantile(&diffs, 1.0 - tail)))
}

/// Standardised mean difference `(mean(a) − mean(b)) / sqrt((var(a) + var(b)) / 2)` with sample variances;
/// `None` below two values in a group or when neither varies.
pub fn standardized_mean_difference(a: &[f64], b: &[f64]) -> Option<f64> {
    if a.len() < 2 || b.len() < 2 {
        return None;
    }
    let pooled = ((variance(a) + variance(b)) / 2.0).sqrt();
    (pooled > 0.0).then(|| (mean(a) - mean(b)) / pooled)
}

/// The AUC of a single score: the probability that a value from `pos` exceeds one from `neg`, ties
/// counting half (the Mann–Whitney U over `|pos| · |neg|`, by mid-ranks); `None` when a side is empty.
pub fn univariate_auc(pos: &[f64], neg: &[f64]) -> Option<f64> {
    if pos.is_empty() || neg.is_empty() {
        return None;
    }
    let mut all: Vec<(f64, bool)> =
        pos.iter().map(|&v| (v, true)).chain(neg.iter().map(|&v| (v, false))).collect();
    all.sort_by(|x, y| x.0.total_cmp(&y.0));
    let mut rank_sum = 0.0;
    let mut i = 0;
    while i < all.len() {
        let mut j = i;
        while j + 1 < all.len() && all[j + 1].0 == all[i].0 {
            j += 1;
        }
        // Ranks i+1 ..= j+1 share their mean.
        let mid = (i + j) as f64 / 2.0 + 1.0;
        rank_sum += mid * all[i..=j].iter().filter(|x| x.1).count() as f64;
        i = j + 1;
    }
    let (np, nn) = (pos.len() as f64, neg.len() as f64);
    Some((rank_sum - np * (np + 1.0) / 2.0) / (np * nn))
}

fn group(units: &[&Unit], intervals: &dyn RateIntervals) -> Group {
    let n = units.len() as u64;
    let conversions = units.iter().filter(|u| u.converted).count() as u64;
    let ci = intervals.rate(conversions, n);
    let revenue: Vec<f64> = units.iter().map(|u| u.revenue).collect();
    Group {
        n,
        conversions,
        rate: (n > 0).then(|| conversions as f64 / n as f64),
        ci_low: ci.map(|c| c.0),
        ci_high: ci.map(|c| c.1),
        revenue_per_customer: (n > 0).then(|| mean(&revenue)),
        revenue_sd: (n > 1).then(|| variance(&revenue).sqrt()),
    }
}

fn relative(abs: Option<f64>, base: Option<f64>) -> Option<f64> {
    match (abs, base) {
        (Some(a), Some(b)) if b > 0.0 => Some(a / b),
        _ => None,
    }
}

fn conversion_uplift(t: &Group, c: &Group, intervals: &dyn RateIntervals) -> Difference {
    let ci = intervals.difference(t.conversions, t.n, c.conversions, c.n);
    let abs = t.rate.zip(c.rate).map(|(a, b)| a - b);
    Difference {
        abs,
        ci_low: ci.map(|c| c.0),
        ci_high: ci.map(|c| c.1),
        relative: relative(abs, c.rate),
        method: intervals.method().to_string(),
    }
}

/// The campaign's numbers: groups, uplift, revenue, segments (largest first) and drivers.
pub fn analyse(
    units: &[Unit],
    feature_names: &[String],
    intervals: &dyn RateIntervals,
    opts: &Options,
) -> Analysis {
    let (treated_units, control_units): (Vec<&Unit>, Vec<&Unit>) = units.iter().partition(|u| u.treated);
    let treated = group(&treated_units, intervals);
    let control = group(&control_units, intervals);
    let uplift = conversion_uplift(&treated, &control, intervals);

    let rev = |us: &[&Unit]| us.iter().map(|u| u.revenue).collect::<Vec<f64>>();
    let (rt, rc) = (rev(&treated_units), rev(&control_units));
    let welch = welch_interval(&rt, &rc, 0.95);
    let boot = bootstrap_mean_difference(&rt, &rc, opts.resamples, opts.seed, 0.95);
    let rev_abs = treated.revenue_per_customer.zip(control.revenue_per_customer).map(|(a, b)| a - b);
    let revenue_uplift = RevenueDifference {
        welch: Difference {
            abs: rev_abs,
            ci_low: welch.map(|w| w.low),
            ci_high: welch.map(|w| w.high),
            relative: relative(rev_abs, control.revenue_per_customer),
            method: "Welch t interval (unequal variances)".into(),
        },
        df: welch.map(|w| w.df),
        bootstrap_ci_low: boot.map(|b| b.0),
        bootstrap_ci_high: boot.map(|b| b.1),
        bootstrap_resamples: opts.resamples,
        bootstrap_seed: opts.seed,
    };

    let mut by_segment: BTreeMap<&str, (Vec<&Unit>, Vec<&Unit>)> = BTreeMap::new();
    for u in units {
        let e = by_segment.entry(u.segment.as_str()).or_default();
        if u.treated { e.0.push(u) } else { e.1.push(u) }
    }
    let mut segments: Vec<SegmentRow> = by_segment
        .into_iter()
        .map(|(name, (t, c))| {
            let (treated, control) = (group(&t, intervals), group(&c, intervals));
            let uplift = conversion_uplift(&treated, &control, intervals);
            SegmentRow { segment: name.to_string(), treated, control, uplift }
        })
        .collect();
    segments.sort_by_key(|s| std::cmp::Reverse(s.treated.n + s.control.n));

    let drivers = drivers(&treated_units, feature_names, opts);
    Analysis { treated, control, uplift, revenue_uplift, segments, drivers }
}

/// The features that best separate responders among the treated, strongest first (by |AUC − 0.5|).
fn drivers(treated: &[&Unit], names: &[String], opts: &Options) -> Vec<Driver> {
    let mut out = Vec::new();
    for (j, name) in names.iter().enumerate() {
        let (mut pos, mut neg) = (Vec::new(), Vec::new());
        for u in treated {
            if let Some(v) = u.features.get(j).copied().flatten().filter(|v| v.is_finite()) {
                if u.converted { pos.push(v) } else { neg.push(v) }
            }
        }
        if pos.len() < opts.min_class.max(2) || neg.len() < opts.min_class.max(2) {
            continue;
        }
        // A constant feature separates nothing (its variance may still round above zero).
        if pos.iter().chain(&neg).all(|v| *v == pos[0]) {
            continue;
        }
        let (Some(auc), Some(smd)) = (univariate_auc(&pos, &neg), standardized_mean_difference(&pos, &neg))
        else {
            continue;
        };
        out.push(Driver {
            feature: name.clone(),
            auc,
            smd,
            direction: if auc >= 0.5 { "higher" } else { "lower" },
            responders_mean: mean(&pos),
            non_responders_mean: mean(&neg),
            n_responders: pos.len(),
            n_non_responders: neg.len(),
        });
    }
    out.sort_by(|a, b| {
        (b.auc - 0.5).abs().total_cmp(&(a.auc - 0.5).abs()).then(b.smd.abs().total_cmp(&a.smd.abs()))
    });
    out.truncate(opts.top_drivers);
    out
}

/// A driver is named in the summary only when its AUC is at least this far from 0.5.
pub const NOTABLE_AUC: f64 = 0.05;

/// What the summary's sentences name.
#[derive(Debug, Clone, PartialEq)]
pub struct SummaryContext<'a> {
    pub flow: &'a str,
    /// The window as said (`14 days`, `48 hours`).
    pub window: &'a str,
    pub arm: Option<&'a str>,
    /// The currency revenue is in (`EUR`), when one.
    pub currency: Option<&'a str>,
}

fn pct(v: f64) -> String {
    format!("{:.1} %", v * 100.0)
}

fn pp(v: f64) -> String {
    format!("{:+.1} pp", v * 100.0)
}

fn money(v: f64, currency: Option<&str>) -> String {
    // `+ 0.0` prints a negative zero (a sum of nothing) as 0.00.
    let v = v + 0.0;
    match currency {
        Some(c) => format!("{v:.2} {c}"),
        None => format!("{v:.2}"),
    }
}

fn signed_money(v: f64, currency: Option<&str>) -> String {
    let sign = if v >= 0.0 { "+" } else { "−" };
    format!("{sign}{}", money(v.abs(), currency))
}

/// The plain-language summary: every number comes from `a`, and an interval that contains zero is
/// reported as no detectable effect, never as a gain or a loss.
pub fn summary(ctx: &SummaryContext<'_>, a: &Analysis) -> String {
    let mut s = String::new();
    let who = match ctx.arm {
        Some(arm) => format!("customers offered `{arm}` by flow {}", ctx.flow),
        None => format!("customers treated by flow {}", ctx.flow),
    };
    let (t, c, u) = (&a.treated, &a.control, &a.uplift);
    let (Some(rt), Some(rc), Some(d), Some(lo), Some(hi)) = (t.rate, c.rate, u.abs, u.ci_low, u.ci_high)
    else {
        let missing = if t.n == 0 { "treated" } else { "held-out" };
        return format!(
            "No {missing} customer with a closed window: the uplift of flow {} cannot be estimated yet.",
            ctx.flow
        );
    };
    let _ = write!(
        s,
        "Within {} of their first decision, {} of {} {who} ordered ({}), against {} of {} held-out customers \
         ({}): a difference of {} (95 % CI {} to {}). ",
        ctx.window,
        t.conversions,
        t.n,
        pct(rt),
        c.conversions,
        c.n,
        pct(rc),
        pp(d),
        pp(lo),
        pp(hi)
    );
    let rel = u
        .relative
        .map(|r| format!(", {:+.0} % relative at the point estimate", r * 100.0))
        .unwrap_or_default();
    match u.excludes_zero() {
        Some(true) => {
            let _ = write!(
                s,
                "The interval is above zero: the campaign raised conversion, by between {:.1} and {:.1} percentage \
                 points{rel}. ",
                lo * 100.0,
                hi * 100.0
            );
        }
        Some(false) => {
            let _ = write!(
                s,
                "The interval is below zero: the campaign lowered conversion, by between {:.1} and {:.1} percentage points. ",
                -hi * 100.0,
                -lo * 100.0
            );
        }
        None => {
            s.push_str(
                "The interval crosses zero: no detectable effect on conversion at this sample size \
                 (the data are consistent with both a gain and a loss). ",
            );
        }
    }
    let r = &a.revenue_uplift.welch;
    if let (Some(tr), Some(cr), Some(d), Some(lo), Some(hi)) =
        (t.revenue_per_customer, c.revenue_per_customer, r.abs, r.ci_low, r.ci_high)
    {
        let cur = ctx.currency;
        let _ = write!(
            s,
            "Revenue per customer was {} treated against {} held out, a difference of {} (95 % CI {} to {}): ",
            money(tr, cur),
            money(cr, cur),
            signed_money(d, cur),
            signed_money(lo, cur),
            signed_money(hi, cur)
        );
        s.push_str(match r.excludes_zero() {
            Some(true) => "higher for the treated beyond chance. ",
            Some(false) => "lower for the treated beyond chance. ",
            None => "no detectable effect on revenue. ",
        });
    }
    let notable: Vec<String> = a
        .segments
        .iter()
        .filter_map(|seg| {
            let dir = seg.uplift.excludes_zero()?;
            Some(format!(
                "{} ({} {}, 95 % CI {} to {})",
                seg.segment,
                if dir { "up" } else { "down" },
                pp(seg.uplift.abs?),
                pp(seg.uplift.ci_low?),
                pp(seg.uplift.ci_high?)
            ))
        })
        .collect();
    let compared = a.segments.iter().filter(|seg| seg.uplift.abs.is_some()).count();
    if compared > 1 {
        if notable.is_empty() {
            let _ = write!(s, "No segment of the {compared} compared shows a detectable effect on its own. ");
        } else {
            let _ = write!(
                s,
                "Segments whose interval excludes zero: {} (with {compared} segments compared, one such result \
                 can arise by chance). ",
                notable.join("; ")
            );
        }
    }
    if !a.drivers.is_empty() {
        let named: Vec<String> = a
            .drivers
            .iter()
            .filter(|d| (d.auc - 0.5).abs() >= NOTABLE_AUC)
            .take(3)
            .map(|d| format!("{} ({} among responders, AUC {:.2})", d.feature, d.direction, d.auc))
            .collect();
        if named.is_empty() {
            let _ = write!(
                s,
                "No feature known at decision time separates the treated who ordered from the others noticeably \
                 (every AUC within {NOTABLE_AUC} of 0.5)."
            );
        } else {
            let _ = write!(
                s,
                "Among the treated, those who ordered differed most in {} — associations, not effects of the \
                 campaign.",
                named.join(", ")
            );
        }
    }
    s.trim_end().to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auc_counts_ties_half() {
        assert_eq!(univariate_auc(&[2.0, 3.0], &[1.0]), Some(1.0));
        assert_eq!(univariate_auc(&[1.0], &[1.0, 1.0]), Some(0.5));
        assert_eq!(univariate_auc(&[1.0, 2.0], &[2.0, 3.0]), Some(0.125));
        assert_eq!(univariate_auc(&[], &[1.0]), None);
    }

    #[test]
    fn quantile_interpolates_like_numpy() {
        let v = [1.0, 2.0, 4.0, 8.0];
        assert_eq!(quantile(&v, 0.0), 1.0);
        assert_eq!(quantile(&v, 1.0), 8.0);
        assert!((quantile(&v, 0.5) - 3.0).abs() < 1e-12);
        assert!((quantile(&v, 0.25) - 1.75).abs() < 1e-12);
    }

    #[test]
    fn welch_without_spread_is_the_difference() {
        let w = welch_interval(&[2.0, 2.0], &[1.0, 1.0, 1.0], 0.95).unwrap();
        assert_eq!((w.low, w.high), (1.0, 1.0));
        assert!(welch_interval(&[1.0], &[1.0, 2.0], 0.95).is_none());
    }
}
