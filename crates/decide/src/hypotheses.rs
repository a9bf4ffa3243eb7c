//! What to test next: A/B hypotheses proposed from a flow's past results, for `nudge campaigns hypotheses`.
//!
//! The caller reduces a flow's recorded decisions to one [`PastUnit`] per customer (as `nudge report
//! campaign` does: intention to treat, the customer's first matched decision as the anchor): treated or held
//! out, the offer arm chosen, the hour the decision was made, the subject-line features of the message when
//! they are known, the segment, and whether the customer ordered within the window (and for how much).
//! [`propose`] then compares, in every segment and over all customers together:
//!
//! - **offers**: each offer arm against the baseline arm (`none` when the flow has it, else the arm given
//!   most often), among the treated;
//! - **send hours**: the customers decided at one hour (UTC) against those decided at the other hours,
//!   among the treated;
//! - **subject-line features**: messages with a feature (`question`, `emoji`, …) against those without;
//! - **targeting**: treated against held out, per segment (does the flow pay in this segment at all).
//!
//! **Evidence.** Each comparison is a difference of conversion rates (treatment − comparison) with its
//! 95 % interval from the caller's [`RateIntervals`] (the same Newcombe interval as the campaign report) and
//! a two-sided two-proportion z-test (pooled variance, with Yates's continuity correction, which keeps the
//! small p-values of rare outcomes in small groups honest). A group needs at least [`Options::min_group`]
//! customers for a comparison to be made.
//!
//! **Multiple comparisons.** Many comparisons are made, so some would look significant by chance. The
//! p-values are adjusted with Holm's step-down method over *all* the comparisons made (positive and
//! negative effects alike), which keeps the chance of calling any null effect significant at most
//! [`Options::alpha`] whatever the dependence between the comparisons (they overlap: a segment's arm
//! comparison is part of the all-customers one). A proposal is *significant* when its Holm-adjusted p-value
//! is at most alpha; otherwise it is *not yet significant — test it*.
//!
//! **Proposals.** Only improvements are proposed (a positive difference). Significant ones come first
//! (smallest adjusted p first), then the promising ones (smallest raw p first). One change is not proposed
//! twice: when a segment's version of a change is significant, the all-customers version of the same change
//! is left out (the effect is the segment's), and when only the all-customers version is significant, the
//! segments' versions of it are left out. At most [`Options::max_proposals`] are returned (3–5 when the
//! data has that many improvements); fewer come with a note that says why.
//!
//! **Sample size.** For each proposal, the customers needed per arm for a two-sided two-proportion test at
//! [`Options::alpha`] and [`Options::power`] to detect the difference seen, with the comparison's rate as the
//! baseline: `n = (z_{1−α/2}·√(2·p̄·(1−p̄)) + z_{power}·√(p₁(1−p₁) + p₂(1−p₂)))² / (p₂ − p₁)²`, p̄ the mean of
//! the two rates.
//!
//! **Variant.** Each proposal says which change to test, as a 50/50 split ([`Change`], [`Split`]); the
//! caller turns it into a flow config.
//!
//! Pure: no I/O, no randomness.

use crate::uplift::RateIntervals;
use serde::Serialize;
use statrs::distribution::{ContinuousCDF, Normal};
use std::collections::{BTreeMap, BTreeSet};

/// One customer of the flow's past decisions.
#[derive(Debug, Clone, PartialEq)]
pub struct PastUnit {
    /// The customer's segment at decision time (`unknown` when none is known).
    pub segment: String,
    /// Treated (the flow acted, or would have) rather than held out.
    pub treated: bool,
    /// The offer arm the decision chose (treated customers of a `choose_offer` flow).
    pub arm: Option<String>,
    /// The hour of the day (0–23, UTC) the decision was made, when known.
    pub send_hour: Option<u8>,
    /// The subject-line features of the message sent (`question`, `emoji`, `personalised`, …), when known.
    pub subject_features: Vec<String>,
    /// Ordered within the window after the decision.
    pub converted: bool,
    /// Revenue of those orders.
    pub revenue: f64,
}

/// Settings of [`propose`].
#[derive(Debug, Clone, PartialEq)]
pub struct Options {
    /// The error rate: the chance of calling any null effect significant (Holm), and the test's alpha in
    /// the sample-size calculation.
    pub alpha: f64,
    /// The power the sample size is computed for.
    pub power: f64,
    /// A group needs this many customers for a comparison.
    pub min_group: u64,
    /// At most this many proposals (3–5 is what a marketer can act on).
    pub max_proposals: usize,
}

impl Default for Options {
    fn default() -> Self {
        Options { alpha: 0.05, power: 0.8, min_group: 30, max_proposals: 5 }
    }
}

/// What a hypothesis changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Offer,
    SendHour,
    Subject,
    Targeting,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Offer => "offer",
            Kind::SendHour => "send_hour",
            Kind::Subject => "subject",
            Kind::Targeting => "targeting",
        }
    }
}

/// The change a hypothesis proposes to test, in the segment (`None`: every customer of the flow).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Change {
    /// Make offer `arm` instead of `baseline_arm`.
    Offer { segment: Option<String>, baseline_arm: String, arm: String },
    /// Send at `hour` (UTC) instead of the other hours.
    SendHour { segment: Option<String>, hour: u8 },
    /// Use subject lines with `feature`.
    Subject { segment: Option<String>, feature: String },
    /// Keep running the flow for the segment (it pays there), measured against a holdout.
    Targeting { segment: String },
}

impl Change {
    pub fn kind(&self) -> Kind {
        match self {
            Change::Offer { .. } => Kind::Offer,
            Change::SendHour { .. } => Kind::SendHour,
            Change::Subject { .. } => Kind::Subject,
            Change::Targeting { .. } => Kind::Targeting,
        }
    }

    pub fn segment(&self) -> Option<&str> {
        match self {
            Change::Offer { segment, .. }
            | Change::SendHour { segment, .. }
            | Change::Subject { segment, .. } => segment.as_deref(),
            Change::Targeting { segment } => Some(segment),
        }
    }

    /// The change without its segment: the same change for another audience has the same level.
    fn level(&self) -> (Kind, String) {
        let l = match self {
            Change::Offer { arm, baseline_arm, .. } => format!("{arm}/{baseline_arm}"),
            Change::SendHour { hour, .. } => hour.to_string(),
            Change::Subject { feature, .. } => feature.clone(),
            Change::Targeting { .. } => String::new(),
        };
        (self.kind(), l)
    }

    fn audience(&self) -> String {
        match self.segment() {
            Some(s) => format!("segment `{s}`"),
            None => "all the flow's customers".into(),
        }
    }

    /// The change in a few words (`free_shipping instead of none for segment `lapsed``).
    pub fn describe(&self) -> String {
        match self {
            Change::Offer { arm, baseline_arm, .. } => {
                format!("offer `{arm}` instead of `{baseline_arm}` to {}", self.audience())
            }
            Change::SendHour { hour, .. } => format!("send at {hour:02}:00 UTC to {}", self.audience()),
            Change::Subject { feature, .. } => {
                format!("subject lines with the `{feature}` feature for {}", self.audience())
            }
            Change::Targeting { segment } => format!("run the flow for segment `{segment}`"),
        }
    }
}

/// The A/B split that tests a hypothesis: `a` (what is done now) against `b` (the change), `b_percent` of
/// the customers getting `b`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Split {
    pub a: String,
    pub b: String,
    pub b_percent: u8,
}

/// One group of a comparison.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Arm {
    pub n: u64,
    pub conversions: u64,
    pub rate: f64,
    pub revenue_per_customer: f64,
}

impl Arm {
    fn of(c: &Counts) -> Arm {
        let n = c.n.max(1) as f64;
        Arm { n: c.n, conversions: c.k, rate: c.k as f64 / n, revenue_per_customer: c.revenue / n }
    }
}

/// One proposed test.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hypothesis {
    /// `h1`, `h2`, … in the order proposed.
    pub id: String,
    pub kind: Kind,
    /// The segment tested (null: every customer of the flow).
    pub segment: Option<String>,
    pub change: Change,
    /// The hypothesis in one line.
    pub title: String,
    /// Why: the numbers behind it, in words.
    pub rationale: String,
    /// The customers who had the change in the past, and those they are compared with.
    pub treatment: Arm,
    pub comparison: Arm,
    /// Difference in conversion rate, treatment − comparison.
    pub effect: f64,
    /// Its 95 % interval (null when the intervals could not be computed).
    pub ci_low: Option<f64>,
    pub ci_high: Option<f64>,
    /// `effect / comparison rate`; null with a zero comparison rate.
    pub relative: Option<f64>,
    /// Revenue per customer, treatment − comparison.
    pub revenue_difference: f64,
    /// Two-sided p-value of the two-proportion z-test, and after Holm's adjustment.
    pub p_value: f64,
    pub p_adjusted: f64,
    pub significant: bool,
    /// `significant` or `not yet significant — test it`.
    pub status: String,
    /// Customers per arm needed to detect the difference seen at alpha and power; null when the
    /// difference is too small to plan for.
    pub n_per_arm_needed: Option<u64>,
    pub split: Split,
}

/// What [`propose`] gives.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Proposals {
    pub hypotheses: Vec<Hypothesis>,
    /// Customers analysed: all, treated, held out.
    pub units: u64,
    pub treated: u64,
    pub held_out: u64,
    /// Comparisons made (the Holm family).
    pub comparisons: usize,
    /// Of them, significant after adjustment (improvements or not).
    pub significant: usize,
    pub alpha: f64,
    pub power: f64,
    pub method: String,
    /// Why fewer proposals than asked for, and what was not compared.
    pub notes: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq)]
struct Counts {
    n: u64,
    k: u64,
    revenue: f64,
}

impl Counts {
    fn add(&mut self, u: &PastUnit) {
        self.n += 1;
        self.k += u64::from(u.converted);
        self.revenue += u.revenue;
    }
    fn minus(self, o: Counts) -> Counts {
        Counts { n: self.n - o.n, k: self.k - o.k, revenue: self.revenue - o.revenue }
    }
}

/// A comparison made.
struct Candidate {
    change: Change,
    split: Split,
    treatment: Counts,
    comparison: Counts,
    effect: f64,
    p: f64,
    p_adj: f64,
}

/// The tallies of one audience (a segment, or everyone).
#[derive(Default)]
struct Tally {
    treated: Counts,
    held_out: Counts,
    by_arm: BTreeMap<String, Counts>,
    by_hour: BTreeMap<u8, Counts>,
    /// Treated with a known hour.
    with_hour: Counts,
    by_feature: BTreeMap<String, Counts>,
    /// Treated whose subject-line features are known (at least one recorded).
    with_subject: Counts,
}

impl Tally {
    fn add(&mut self, u: &PastUnit) {
        if !u.treated {
            self.held_out.add(u);
            return;
        }
        self.treated.add(u);
        if let Some(a) = &u.arm {
            if let Some(c) = self.by_arm.get_mut(a.as_str()) {
                c.add(u);
            } else {
                self.by_arm.entry(a.clone()).or_default().add(u);
            }
        }
        if let Some(h) = u.send_hour.filter(|h| *h < 24) {
            self.by_hour.entry(h).or_default().add(u);
            self.with_hour.add(u);
        }
        if !u.subject_features.is_empty() {
            self.with_subject.add(u);
            for f in &u.subject_features {
                if let Some(c) = self.by_feature.get_mut(f.as_str()) {
                    c.add(u);
                } else {
                    self.by_feature.entry(f.clone()).or_default().add(u);
                }
            }
        }
    }
}

/// Two-sided p-value of the pooled two-proportion z-test with Yates's continuity correction; 1 when
/// neither group varies.
pub fn two_proportion_p(k1: u64, n1: u64, k2: u64, n2: u64) -> f64 {
    if n1 == 0 || n2 == 0 {
        return 1.0;
    }
    let (n1f, n2f) = (n1 as f64, n2 as f64);
    let pooled = (k1 + k2) as f64 / (n1f + n2f);
    let se = (pooled * (1.0 - pooled) * (1.0 / n1f + 1.0 / n2f)).sqrt();
    if se <= 0.0 || !se.is_finite() {
        return 1.0;
    }
    // Yates's continuity correction: the normal tail of a difference of counts is too thin for rare
    // outcomes in small groups, which would make small p-values too small.
    let diff = (k1 as f64 / n1f - k2 as f64 / n2f).abs();
    let z = (diff - 0.5 * (1.0 / n1f + 1.0 / n2f)).max(0.0) / se;
    (2.0 * standard_normal().sf(z)).min(1.0)
}

fn standard_normal() -> Normal {
    Normal::new(0.0, 1.0).expect("the standard normal distribution")
}

/// Holm's step-down adjustment: adjusted p-values in the input's order.
pub fn holm(p: &[f64]) -> Vec<f64> {
    let m = p.len();
    let mut order: Vec<usize> = (0..m).collect();
    order.sort_by(|&a, &b| p[a].total_cmp(&p[b]));
    let mut out = vec![1.0; m];
    let mut running: f64 = 0.0;
    for (rank, &i) in order.iter().enumerate() {
        let adj = ((m - rank) as f64 * p[i]).min(1.0);
        running = running.max(adj);
        out[i] = running;
    }
    out
}

/// Customers per arm for a two-sided two-proportion test at `alpha` and `power` to tell `p1` from `p2`;
/// `None` when the rates are equal or outside 0..1, or the answer is beyond a billion.
pub fn n_per_arm(p1: f64, p2: f64, alpha: f64, power: f64) -> Option<u64> {
    let valid = |p: f64| p.is_finite() && (0.0..=1.0).contains(&p);
    if !(valid(p1) && valid(p2)) || (p2 - p1).abs() < 1e-9 || !(0.0 < alpha && alpha < 1.0) {
        return None;
    }
    if !(0.0 < power && power < 1.0) {
        return None;
    }
    let nd = standard_normal();
    let za = nd.inverse_cdf(1.0 - alpha / 2.0);
    let zb = nd.inverse_cdf(power);
    let pbar = (p1 + p2) / 2.0;
    let num = za * (2.0 * pbar * (1.0 - pbar)).sqrt() + zb * (p1 * (1.0 - p1) + p2 * (1.0 - p2)).sqrt();
    let n = (num * num / (p2 - p1).powi(2)).ceil();
    (n.is_finite() && n <= 1e9).then_some(n as u64)
}

/// Proposes up to [`Options::max_proposals`] tests from the flow's past units (see the module
/// documentation for the method).
pub fn propose(units: &[PastUnit], intervals: &dyn RateIntervals, opts: &Options) -> Proposals {
    let mut all = Tally::default();
    let mut by_segment: BTreeMap<&str, Tally> = BTreeMap::new();
    for u in units {
        all.add(u);
        by_segment.entry(u.segment.as_str()).or_default().add(u);
    }
    let mut notes = Vec::new();
    let arms: BTreeSet<&String> = all.by_arm.keys().collect();
    let baseline_arm: Option<String> = if arms.len() >= 2 {
        if all.by_arm.contains_key("none") {
            Some("none".to_string())
        } else {
            all.by_arm.iter().max_by(|a, b| a.1.n.cmp(&b.1.n).then(b.0.cmp(a.0))).map(|(a, _)| a.clone())
        }
    } else {
        None
    };
    if arms.len() < 2 {
        notes.push(if arms.is_empty() {
            "offers are not compared: the flow recorded no offer arms (only a `choose_offer` flow does)"
                .into()
        } else {
            "offers are not compared: the flow made one offer arm only".to_string()
        });
    }
    if all.by_hour.len() < 2 {
        notes.push("send hours are not compared: the decisions were all made at one hour of the day".into());
    }
    if all.by_feature.is_empty() {
        notes.push(
            "subject-line features are not compared: none were recorded for the flow's messages".into(),
        );
    }
    if all.held_out.n == 0 {
        notes.push("targeting is not compared: the flow held no customers out".into());
    }

    let min = opts.min_group;
    let mut candidates: Vec<Candidate> = Vec::new();
    let mut push = |change: Change, split: Split, t: Counts, c: Counts| {
        if t.n < min || c.n < min {
            return;
        }
        let effect = t.k as f64 / t.n as f64 - c.k as f64 / c.n as f64;
        let p = two_proportion_p(t.k, t.n, c.k, c.n);
        candidates.push(Candidate { change, split, treatment: t, comparison: c, effect, p, p_adj: 1.0 });
    };
    let mut audiences: Vec<(Option<&str>, &Tally)> = vec![(None, &all)];
    // A single segment is the same audience as everyone.
    if by_segment.len() > 1 {
        audiences.extend(by_segment.iter().map(|(s, t)| (Some(*s), t)));
    }
    for (segment, t) in &audiences {
        let seg = segment.map(str::to_string);
        if let Some(base) = &baseline_arm
            && let Some(b) = t.by_arm.get(base)
        {
            for (arm, c) in &t.by_arm {
                if arm == base {
                    continue;
                }
                push(
                    Change::Offer { segment: seg.clone(), baseline_arm: base.clone(), arm: arm.clone() },
                    Split { a: format!("offer `{base}`"), b: format!("offer `{arm}`"), b_percent: 50 },
                    *c,
                    *b,
                );
            }
        }
        if t.by_hour.len() >= 2 {
            for (hour, c) in &t.by_hour {
                push(
                    Change::SendHour { segment: seg.clone(), hour: *hour },
                    Split {
                        a: "the current send time".into(),
                        b: format!("send at {hour:02}:00 UTC"),
                        b_percent: 50,
                    },
                    *c,
                    t.with_hour.minus(*c),
                );
            }
        }
        for (feature, c) in &t.by_feature {
            push(
                Change::Subject { segment: seg.clone(), feature: feature.clone() },
                Split {
                    a: "the current subject lines".into(),
                    b: format!("subject lines with `{feature}`"),
                    b_percent: 50,
                },
                *c,
                t.with_subject.minus(*c),
            );
        }
        if let Some(s) = segment {
            push(
                Change::Targeting { segment: s.to_string() },
                Split { a: "held out".into(), b: "the flow as configured".into(), b_percent: 50 },
                t.treated,
                t.held_out,
            );
        }
    }

    let adjusted = holm(&candidates.iter().map(|c| c.p).collect::<Vec<_>>());
    for (c, a) in candidates.iter_mut().zip(adjusted) {
        c.p_adj = a;
    }
    let m = candidates.len();
    let significant_count = candidates.iter().filter(|c| c.p_adj <= opts.alpha).count();
    let sig = |c: &Candidate| c.p_adj <= opts.alpha;

    // Which (kind, level) pairs have a significant segment version, or a significant pooled version.
    let mut seg_sig: BTreeSet<(Kind, String)> = BTreeSet::new();
    let mut pooled_sig: BTreeSet<(Kind, String)> = BTreeSet::new();
    for c in candidates.iter().filter(|c| sig(c) && c.effect > 0.0) {
        if c.change.segment().is_some() && c.change.kind() != Kind::Targeting {
            seg_sig.insert(c.change.level());
        } else {
            pooled_sig.insert(c.change.level());
        }
    }
    let mut improving: Vec<&Candidate> = candidates
        .iter()
        .filter(|c| c.effect > 0.0)
        .filter(|c| {
            let level = c.change.level();
            match c.change.segment() {
                None => !seg_sig.contains(&level),
                Some(_) if c.change.kind() == Kind::Targeting => true,
                Some(_) => sig(c) || !pooled_sig.contains(&level),
            }
        })
        .collect();
    improving.sort_by(|a, b| {
        sig(b)
            .cmp(&sig(a))
            .then(if sig(a) { a.p_adj.total_cmp(&b.p_adj) } else { a.p.total_cmp(&b.p) })
            .then(a.p.total_cmp(&b.p))
            .then(b.effect.total_cmp(&a.effect))
            .then(a.change.cmp(&b.change))
    });

    let hypotheses: Vec<Hypothesis> = improving
        .iter()
        .take(opts.max_proposals)
        .enumerate()
        .map(|(i, c)| hypothesis(i, c, m, intervals, opts))
        .collect();

    if units.is_empty() {
        notes.insert(
            0,
            "no customers to learn from: the flow has no past decisions with closed windows".into(),
        );
    } else if m == 0 {
        notes.insert(
            0,
            format!(
                "too little data: no group reached {min} customers, so nothing could be compared; \
                 wait for more decisions or widen the period"
            ),
        );
    } else if hypotheses.len() < 3.min(opts.max_proposals) {
        notes.insert(
            0,
            format!(
                "only {} of the {m} comparisons showed an improvement worth testing; the others showed none",
                improving.len()
            ),
        );
    }
    Proposals {
        hypotheses,
        units: units.len() as u64,
        treated: all.treated.n,
        held_out: all.held_out.n,
        comparisons: m,
        significant: significant_count,
        alpha: opts.alpha,
        power: opts.power,
        method: format!(
            "difference in conversion rate with its 95 % interval ({}); two-sided two-proportion z-test \
             (continuity-corrected), p-values adjusted by Holm's method over all {m} comparisons (family-wise error ≤ {})",
            intervals.method(),
            opts.alpha
        ),
        notes,
    }
}

fn pp(v: f64) -> String {
    format!("{:+.1} pp", v * 100.0)
}

fn pct(v: f64) -> String {
    format!("{:.1} %", v * 100.0)
}

fn p_text(p: f64) -> String {
    if p < 0.0001 { "< 0.0001".into() } else { format!("{p:.4}") }
}

fn hypothesis(
    i: usize,
    c: &Candidate,
    m: usize,
    intervals: &dyn RateIntervals,
    opts: &Options,
) -> Hypothesis {
    let (t, k) = (Arm::of(&c.treatment), Arm::of(&c.comparison));
    let ci = intervals.difference(t.conversions, t.n, k.conversions, k.n);
    let significant = c.p_adj <= opts.alpha;
    let n_needed = n_per_arm(k.rate, k.rate + c.effect, opts.alpha, opts.power);
    let (who, against) = match &c.change {
        Change::Offer { arm, baseline_arm, .. } => {
            (format!("offered `{arm}`"), format!("offered `{baseline_arm}`"))
        }
        Change::SendHour { hour, .. } => {
            (format!("decided at {hour:02}:00 UTC"), "decided at the other hours".to_string())
        }
        Change::Subject { feature, .. } => {
            (format!("sent subject lines with `{feature}`"), "sent subject lines without it".to_string())
        }
        Change::Targeting { .. } => ("treated by the flow".to_string(), "held out".to_string()),
    };
    let audience = match c.change.segment() {
        Some(s) => format!("In segment `{s}`, customers"),
        None => "Customers".to_string(),
    };
    let ci_text =
        ci.map_or_else(|| "interval n/a".into(), |(lo, hi)| format!("95 % CI {} to {}", pp(lo), pp(hi)));
    let verdict = if significant {
        format!("significant after Holm's adjustment over {m} comparisons (adjusted p {})", p_text(c.p_adj))
    } else {
        format!(
            "not yet significant after Holm's adjustment over {m} comparisons (adjusted p {}): a test will tell",
            p_text(c.p_adj)
        )
    };
    let plan = n_needed.map_or_else(
        || "the difference is too small to plan a test for".to_string(),
        |n| {
            format!(
                "a 50/50 test needs {n} customers per arm to detect it (alpha {}, power {:.0} %)",
                opts.alpha,
                opts.power * 100.0
            )
        },
    );
    let rationale = format!(
        "{audience} {who} ordered at {} (n = {}) against {} for those {against} (n = {}): {} ({ci_text}), \
         p = {}, {verdict}; {plan}.",
        pct(t.rate),
        t.n,
        pct(k.rate),
        k.n,
        pp(c.effect),
        p_text(c.p),
    );
    Hypothesis {
        id: format!("h{}", i + 1),
        kind: c.change.kind(),
        segment: c.change.segment().map(str::to_string),
        change: c.change.clone(),
        title: c.change.describe(),
        rationale,
        treatment: t,
        comparison: k,
        effect: c.effect,
        ci_low: ci.map(|x| x.0),
        ci_high: ci.map(|x| x.1),
        relative: (k.rate > 0.0).then(|| c.effect / k.rate),
        revenue_difference: t.revenue_per_customer - k.revenue_per_customer,
        p_value: c.p,
        p_adjusted: c.p_adj,
        significant,
        status: if significant { "significant".into() } else { "not yet significant — test it".into() },
        n_per_arm_needed: n_needed,
        split: c.split.clone(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Wald;
    impl RateIntervals for Wald {
        fn rate(&self, k: u64, n: u64) -> Option<(f64, f64)> {
            let p = k as f64 / n as f64;
            let h = 1.96 * (p * (1.0 - p) / n as f64).sqrt();
            (n > 0).then_some((p - h, p + h))
        }
        fn difference(&self, k1: u64, n1: u64, k2: u64, n2: u64) -> Option<(f64, f64)> {
            let (p1, p2) = (k1 as f64 / n1 as f64, k2 as f64 / n2 as f64);
            let h = 1.96 * (p1 * (1.0 - p1) / n1 as f64 + p2 * (1.0 - p2) / n2 as f64).sqrt();
            Some((p1 - p2 - h, p1 - p2 + h))
        }
        fn method(&self) -> &'static str {
            "Wald"
        }
    }

    #[test]
    fn holm_adjusts_step_down_and_stays_monotone() {
        let adj = holm(&[0.01, 0.04, 0.03, 0.5]);
        // Sorted: 0.01·4 = 0.04, 0.03·3 = 0.09, 0.04·2 = 0.08 → 0.09 (monotone), 0.5·1 = 0.5.
        let want = [0.04, 0.09, 0.09, 0.5];
        for (a, w) in adj.iter().zip(want) {
            assert!((a - w).abs() < 1e-12, "{adj:?}");
        }
        assert_eq!(holm(&[0.9, 0.9]), vec![1.0, 1.0]);
        assert!(holm(&[]).is_empty());
    }

    #[test]
    fn sample_size_matches_the_textbook_formula() {
        // 10 % against 15 %, alpha 0.05 two-sided, power 0.8: 686 per arm (the usual table value).
        assert_eq!(n_per_arm(0.10, 0.15, 0.05, 0.8), Some(686));
        // Halving the difference needs almost four times the customers.
        let n = n_per_arm(0.10, 0.125, 0.05, 0.8).unwrap();
        assert!((2450..2600).contains(&n), "{n}");
        assert_eq!(n_per_arm(0.1, 0.1, 0.05, 0.8), None);
        assert_eq!(n_per_arm(0.1, 1.2, 0.05, 0.8), None);
    }

    #[test]
    fn z_test_p_values() {
        // 60/200 against 40/200: pooled 0.25, z = (0.1 − 0.005) / √(0.25·0.75·2/200) = 2.194, p ≈ 0.0282
        // (0.0209 without the continuity correction).
        let p = two_proportion_p(60, 200, 40, 200);
        assert!((p - 0.0282).abs() < 0.0005, "{p}");
        assert_eq!(two_proportion_p(0, 100, 0, 100), 1.0);
        assert_eq!(two_proportion_p(1, 0, 0, 10), 1.0);
    }

    fn unit(segment: &str, arm: &str, converted: bool) -> PastUnit {
        PastUnit {
            segment: segment.into(),
            treated: true,
            arm: Some(arm.into()),
            send_hour: None,
            subject_features: Vec::new(),
            converted,
            revenue: if converted { 50.0 } else { 0.0 },
        }
    }

    #[test]
    fn a_clear_offer_effect_is_proposed_first_with_its_numbers() {
        let mut units = Vec::new();
        for i in 0..1000 {
            units.push(unit("lapsed", "none", i % 10 == 0));
            units.push(unit("lapsed", "free_shipping", i % 4 == 0));
            units.push(unit("loyal", "none", i % 5 == 0));
            units.push(unit("loyal", "free_shipping", i % 5 == 0));
        }
        let p = propose(&units, &Wald, &Options::default());
        let h = &p.hypotheses[0];
        assert_eq!(
            h.change,
            Change::Offer {
                segment: Some("lapsed".into()),
                baseline_arm: "none".into(),
                arm: "free_shipping".into()
            }
        );
        assert!(h.significant && h.status == "significant");
        assert!((h.effect - 0.15).abs() < 1e-12);
        assert_eq!((h.treatment.n, h.treatment.conversions, h.comparison.conversions), (1000, 250, 100));
        assert!(h.ci_low.unwrap() > 0.0 && h.ci_high.unwrap() > h.effect);
        assert_eq!(h.n_per_arm_needed, n_per_arm(0.10, 0.25, 0.05, 0.8));
        assert!(
            h.rationale.contains("segment `lapsed`") && h.rationale.contains("+15.0 pp"),
            "{}",
            h.rationale
        );
        // The pooled version of the same change is left out: the effect is the segment's.
        assert!(!p.hypotheses.iter().any(|h| matches!(&h.change, Change::Offer { segment: None, .. })));
        // Three comparisons, one improvement; no holdout, one hour, no subject lines: each said.
        assert_eq!(p.comparisons, 3);
        assert!(p.notes[0].starts_with("only 1 of the 3 comparisons"), "{:?}", p.notes);
        assert_eq!(p.notes.len(), 4, "{:?}", p.notes);
    }

    #[test]
    fn thin_data_gives_no_proposal_and_says_why() {
        let units: Vec<PastUnit> =
            (0..20).map(|i| unit("lapsed", ["none", "pct_10"][i % 2], i % 3 == 0)).collect();
        let p = propose(&units, &Wald, &Options::default());
        assert!(p.hypotheses.is_empty());
        assert_eq!(p.comparisons, 0);
        assert!(p.notes[0].starts_with("too little data"), "{:?}", p.notes);
        let p = propose(&[], &Wald, &Options::default());
        assert!(p.notes[0].starts_with("no customers"), "{:?}", p.notes);
    }
}
