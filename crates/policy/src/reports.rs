//! What a flow's decisions were worth: the shadow report (the flow against its baseline rule) and the lift
//! report (treated against held out), computed from the decisions recorded for the flow and the orders its
//! customers placed afterwards. Pure: the caller loads the decisions and each customer's order times.
//!
//! The unit is the customer, not the decision: a customer evaluated ten times by a flow counts once, so a
//! frequent buyer (whose every order triggers the flow) does not weigh ten times as much as anyone else.
//! Each customer has an *anchor*, the instant their outcome is measured from, and converts when they place
//! an order (not cancelled) after the anchor and at most `window` after it.
//!
//! - Lift: the customers whose condition held at least once in the period. The anchor is the first such
//!   decision; the customer is *held out* when that decision was (the holdout is a deterministic hash of
//!   flow and customer, so it is the same at every decision of one flow version), *treated* otherwise.
//!   This is an intention-to-treat comparison: treated customers who were then not sent anything (no
//!   consent, frequency cap, awaiting approval) stay treated, because their held-out twins were set aside
//!   before those checks and would have been filtered the same way. The difference of the two conversion
//!   rates gets a 95 % interval by Newcombe's hybrid score method (his method 10: Wilson intervals of each
//!   rate, combined).
//! - Shadow: the customers the flow evaluated with a baseline rule. The AI says yes when the flow's
//!   condition held at least once, the rule when the baseline held at least once; the anchor is the first
//!   yes of either (the first evaluation when neither said yes). The four cells of the 2×2 give counts and
//!   conversion rates with Wilson intervals.
//!
//! A customer whose window has not closed by the end of the period (`until`) is left out and counted in
//! `pending_window`, since their outcome is not known yet, unless the caller asks for partial windows.

use crate::flows::Status;
use nudge_model::CustomerId;
use serde::Serialize;
use std::collections::BTreeMap;

/// z for a two-sided 95 % interval.
pub const Z95: f64 = 1.959_963_984_540_054;

/// One recorded decision of a flow for a customer.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRow {
    pub customer: CustomerId,
    /// Milliseconds since the epoch.
    pub at_ms: i64,
    pub status: Status,
    /// Whether the flow's condition held (every status past the condition: live, shadow, held out, no
    /// consent, capped, awaiting approval).
    pub matched: bool,
    /// The baseline rule's verdict; `None` when the flow had no baseline at the time.
    pub baseline: Option<bool>,
}

/// The period and window of a report.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct ReportWindow {
    /// The conversion window after each customer's anchor, in milliseconds.
    pub window_ms: i64,
    /// Decisions at or after this instant (ms) are counted.
    pub since_ms: i64,
    /// Decisions before this instant (ms) are counted; outcomes are observed up to it.
    pub until_ms: i64,
    /// Count customers whose window is still open, with what is known so far.
    pub partial: bool,
}

/// A conversion rate with its 95 % Wilson interval.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Proportion {
    pub customers: u64,
    pub conversions: u64,
    /// `conversions / customers`; NaN (null in JSON) with no customers.
    #[serde(serialize_with = "nan_as_null")]
    pub rate: f64,
    #[serde(serialize_with = "nan_as_null")]
    pub ci_low: f64,
    #[serde(serialize_with = "nan_as_null")]
    pub ci_high: f64,
}

fn nan_as_null<S: serde::Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
    if v.is_finite() { s.serialize_f64(*v) } else { s.serialize_none() }
}

impl Proportion {
    pub fn new(conversions: u64, customers: u64) -> Proportion {
        let (ci_low, ci_high) = wilson(conversions, customers, Z95).unwrap_or((f64::NAN, f64::NAN));
        let rate = if customers == 0 { f64::NAN } else { conversions as f64 / customers as f64 };
        Proportion { customers, conversions, rate, ci_low, ci_high }
    }
}

/// Wilson's score interval for `k` successes in `n` trials; `None` for `n = 0`.
pub fn wilson(k: u64, n: u64, z: f64) -> Option<(f64, f64)> {
    if n == 0 || k > n {
        return None;
    }
    let (n, p) = (n as f64, k as f64 / n as f64);
    let z2 = z * z;
    let denom = 1.0 + z2 / n;
    let centre = (p + z2 / (2.0 * n)) / denom;
    let half = z / denom * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt();
    Some(((centre - half).max(0.0), (centre + half).min(1.0)))
}

/// Newcombe's hybrid score interval (method 10) for the difference `k1/n1 − k2/n2`; `None` when either
/// group is empty.
pub fn newcombe(k1: u64, n1: u64, k2: u64, n2: u64, z: f64) -> Option<(f64, f64)> {
    let (l1, u1) = wilson(k1, n1, z)?;
    let (l2, u2) = wilson(k2, n2, z)?;
    let (p1, p2) = (k1 as f64 / n1 as f64, k2 as f64 / n2 as f64);
    let d = p1 - p2;
    let lower = d - ((p1 - l1).powi(2) + (u2 - p2).powi(2)).sqrt();
    let upper = d + ((u1 - p1).powi(2) + (p2 - l2).powi(2)).sqrt();
    Some((lower.max(-1.0), upper.min(1.0)))
}

/// Whether a customer converted: an order time (ms, orders not cancelled) in `(anchor, anchor + window]`.
fn converted(orders: &[i64], anchor_ms: i64, window_ms: i64) -> bool {
    orders.iter().any(|&t| t > anchor_ms && t <= anchor_ms.saturating_add(window_ms))
}

/// The rows of the period, grouped by customer in time order.
fn by_customer<'a>(
    rows: &'a [DecisionRow],
    w: &ReportWindow,
) -> BTreeMap<&'a CustomerId, Vec<&'a DecisionRow>> {
    let mut map: BTreeMap<&CustomerId, Vec<&DecisionRow>> = BTreeMap::new();
    for r in rows.iter().filter(|r| r.at_ms >= w.since_ms && r.at_ms < w.until_ms) {
        map.entry(&r.customer).or_default().push(r);
    }
    for v in map.values_mut() {
        v.sort_by_key(|r| r.at_ms);
    }
    map
}

/// Treated against held out, for one flow.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LiftReport {
    pub flow: String,
    #[serde(flatten)]
    pub window: ReportWindow,
    pub treated: Proportion,
    pub held_out: Proportion,
    /// Treated rate minus held-out rate (NaN/null when a group is empty).
    #[serde(serialize_with = "nan_as_null")]
    pub difference: f64,
    /// 95 % interval of the difference (Newcombe); null when a group is empty.
    pub difference_ci: Option<(f64, f64)>,
    /// `difference / held-out rate`; null when the held-out rate is 0 or unknown.
    pub relative_lift: Option<f64>,
    /// How the treated customers' first matching decisions ended (live, no_consent, capped, …).
    pub treated_by_status: BTreeMap<String, u64>,
    /// Customers left out because their window had not closed by `until`.
    pub pending_window: u64,
    /// One sentence on what the numbers say.
    pub verdict: String,
}

/// The lift report of `flow` from its recorded decisions and each customer's order times.
pub fn lift(
    flow: &str,
    rows: &[DecisionRow],
    orders: &dyn Fn(&CustomerId) -> Vec<i64>,
    w: ReportWindow,
) -> LiftReport {
    let (mut treated, mut held) = ((0u64, 0u64), (0u64, 0u64));
    let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
    let mut pending = 0;
    for (customer, decisions) in by_customer(rows, &w) {
        let Some(first) = decisions.iter().find(|r| r.matched) else { continue };
        if !w.partial && first.at_ms.saturating_add(w.window_ms) > w.until_ms {
            pending += 1;
            continue;
        }
        let hit = u64::from(converted(&orders(customer), first.at_ms, w.window_ms));
        if first.status == Status::HeldOut {
            held = (held.0 + hit, held.1 + 1);
        } else {
            treated = (treated.0 + hit, treated.1 + 1);
            *by_status.entry(first.status.as_str().to_string()).or_default() += 1;
        }
    }
    let t = Proportion::new(treated.0, treated.1);
    let h = Proportion::new(held.0, held.1);
    let difference = t.rate - h.rate;
    let difference_ci = newcombe(treated.0, treated.1, held.0, held.1, Z95);
    let relative_lift =
        (h.rate.is_finite() && h.rate > 0.0 && difference.is_finite()).then(|| difference / h.rate);
    let verdict = lift_verdict(&t, &h, difference, difference_ci);
    LiftReport {
        flow: flow.to_string(),
        window: w,
        treated: t,
        held_out: h,
        difference,
        difference_ci,
        relative_lift,
        treated_by_status: by_status,
        pending_window: pending,
        verdict,
    }
}

fn pct(v: f64) -> String {
    format!("{:.1} %", v * 100.0)
}

fn pp(v: f64) -> String {
    format!("{:+.1} pp", v * 100.0)
}

fn lift_verdict(t: &Proportion, h: &Proportion, d: f64, ci: Option<(f64, f64)>) -> String {
    let Some((lo, hi)) = ci else {
        return if t.customers == 0 && h.customers == 0 {
            "no customer matched the flow in the period with a closed window: nothing to compare yet".into()
        } else if h.customers == 0 {
            "no held-out customer in the period (is holdout_percent above 0?): lift cannot be measured".into()
        } else {
            "no treated customer in the period: lift cannot be measured".into()
        };
    };
    let base = format!(
        "treated customers converted at {} ({} of {}), held-out customers at {} ({} of {}): a difference of {} (95 % CI {} to {})",
        pct(t.rate),
        t.conversions,
        t.customers,
        pct(h.rate),
        h.conversions,
        h.customers,
        pp(d),
        pp(lo),
        pp(hi)
    );
    if lo > 0.0 {
        format!("{base}; the interval is above zero: the flow lifts conversion")
    } else if hi < 0.0 {
        format!("{base}; the interval is below zero: the flow lowers conversion")
    } else {
        format!("{base}; the interval includes zero: no effect can be told apart at this sample size")
    }
}

/// One cell of the shadow report's 2×2.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShadowCell {
    /// Whether the flow's condition said yes.
    pub ai: bool,
    /// Whether the baseline rule said yes.
    pub rule: bool,
    #[serde(flatten)]
    pub outcome: Proportion,
}

/// The flow against its baseline rule, over the same customers and period.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ShadowReport {
    pub flow: String,
    #[serde(flatten)]
    pub window: ReportWindow,
    /// AI yes & rule yes, AI yes & rule no, AI no & rule yes, AI no & rule no.
    pub cells: Vec<ShadowCell>,
    pub customers: u64,
    /// Share of customers on whom the two agree; NaN/null with none.
    #[serde(serialize_with = "nan_as_null")]
    pub agreement: f64,
    /// Conversion of every customer the AI said yes to, and of every one the rule said yes to.
    pub ai_selected: Proportion,
    pub rule_selected: Proportion,
    /// How the AI-yes customers' first matching decisions ended (shadow, live, held_out, …).
    pub ai_by_status: BTreeMap<String, u64>,
    pub pending_window: u64,
    pub verdict: String,
}

/// The shadow report of `flow`: only decisions recorded with a baseline verdict count.
pub fn shadow(
    flow: &str,
    rows: &[DecisionRow],
    orders: &dyn Fn(&CustomerId) -> Vec<i64>,
    w: ReportWindow,
) -> ShadowReport {
    let with_baseline: Vec<DecisionRow> = rows.iter().filter(|r| r.baseline.is_some()).cloned().collect();
    // [ai][rule] → (conversions, customers)
    let mut cells = [[(0u64, 0u64); 2]; 2];
    let mut by_status: BTreeMap<String, u64> = BTreeMap::new();
    let mut pending = 0;
    for (customer, decisions) in by_customer(&with_baseline, &w) {
        let ai_first = decisions.iter().find(|r| r.matched);
        let rule_first = decisions.iter().find(|r| r.baseline == Some(true));
        let anchor = match (ai_first, rule_first) {
            (Some(a), Some(r)) => a.at_ms.min(r.at_ms),
            (Some(a), None) => a.at_ms,
            (None, Some(r)) => r.at_ms,
            (None, None) => decisions[0].at_ms,
        };
        if !w.partial && anchor.saturating_add(w.window_ms) > w.until_ms {
            pending += 1;
            continue;
        }
        if let Some(a) = ai_first {
            *by_status.entry(a.status.as_str().to_string()).or_default() += 1;
        }
        let hit = u64::from(converted(&orders(customer), anchor, w.window_ms));
        let cell = &mut cells[usize::from(ai_first.is_none())][usize::from(rule_first.is_none())];
        *cell = (cell.0 + hit, cell.1 + 1);
    }
    let cell = |ai: bool, rule: bool| {
        let (k, n) = cells[usize::from(!ai)][usize::from(!rule)];
        ShadowCell { ai, rule, outcome: Proportion::new(k, n) }
    };
    let out_cells = vec![cell(true, true), cell(true, false), cell(false, true), cell(false, false)];
    let total: u64 = out_cells.iter().map(|c| c.outcome.customers).sum();
    let agree = out_cells[0].outcome.customers + out_cells[3].outcome.customers;
    let agreement = if total == 0 { f64::NAN } else { agree as f64 / total as f64 };
    let sum = |a: &ShadowCell, b: &ShadowCell| {
        Proportion::new(
            a.outcome.conversions + b.outcome.conversions,
            a.outcome.customers + b.outcome.customers,
        )
    };
    let ai_selected = sum(&out_cells[0], &out_cells[1]);
    let rule_selected = sum(&out_cells[0], &out_cells[2]);
    let verdict = shadow_verdict(&out_cells, total, agreement);
    ShadowReport {
        flow: flow.to_string(),
        window: w,
        cells: out_cells,
        customers: total,
        agreement,
        ai_selected,
        rule_selected,
        ai_by_status: by_status,
        pending_window: pending,
        verdict,
    }
}

fn shadow_verdict(cells: &[ShadowCell], total: u64, agreement: f64) -> String {
    if total == 0 {
        return "no customer evaluated with a baseline in the period has a closed window: nothing to compare yet"
            .into();
    }
    let rate = |c: &ShadowCell| {
        if c.outcome.customers == 0 { "n/a".to_string() } else { pct(c.outcome.rate) }
    };
    format!(
        "the flow and its baseline agree on {} of {total} customers; {} customers only the flow picks converted at {}, \
         {} only the rule picks at {}, {} both pick at {}",
        pct(agreement),
        cells[1].outcome.customers,
        rate(&cells[1]),
        cells[2].outcome.customers,
        rate(&cells[2]),
        cells[0].outcome.customers,
        rate(&cells[0])
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cid(n: u32) -> CustomerId {
        format!("shopify:{n}").parse().unwrap()
    }

    const DAY: i64 = 86_400_000;

    fn window(partial: bool) -> ReportWindow {
        ReportWindow { window_ms: 14 * DAY, since_ms: 0, until_ms: 100 * DAY, partial }
    }

    #[test]
    fn wilson_matches_published_values() {
        // Newcombe (1998), table I: 81/263 → 0.2553 to 0.3662; 15/148 → 0.0624 to 0.1605.
        let (lo, hi) = wilson(81, 263, Z95).unwrap();
        assert!((lo - 0.2553).abs() < 5e-4 && (hi - 0.3662).abs() < 5e-4, "{lo} {hi}");
        let (lo, hi) = wilson(15, 148, Z95).unwrap();
        assert!((lo - 0.0624).abs() < 5e-4 && (hi - 0.1605).abs() < 5e-4, "{lo} {hi}");
        // 0/10 keeps a non-degenerate upper bound.
        let (lo, hi) = wilson(0, 10, Z95).unwrap();
        assert_eq!(lo, 0.0);
        assert!((hi - 0.2775).abs() < 5e-4, "{hi}");
        assert!(wilson(1, 0, Z95).is_none());
    }

    #[test]
    fn newcombe_matches_published_values() {
        // Newcombe (1998), table II, method 10: 56/70 − 48/80 → 0.0524 to 0.3339; 9/10 − 3/10 → 0.1705 to 0.8090.
        let (lo, hi) = newcombe(56, 70, 48, 80, Z95).unwrap();
        assert!((lo - 0.0524).abs() < 5e-4 && (hi - 0.3339).abs() < 5e-4, "{lo} {hi}");
        let (lo, hi) = newcombe(9, 10, 3, 10, Z95).unwrap();
        assert!((lo - 0.1705).abs() < 5e-4 && (hi - 0.8090).abs() < 5e-4, "{lo} {hi}");
        assert!(newcombe(1, 5, 0, 0, Z95).is_none());
    }

    fn row(c: u32, day: i64, status: Status, baseline: Option<bool>) -> DecisionRow {
        let matched = !matches!(status, Status::NotMatched | Status::Error);
        DecisionRow { customer: cid(c), at_ms: day * DAY, status, matched, baseline }
    }

    #[test]
    fn lift_counts_customers_once_from_their_first_matching_decision() {
        let rows = vec![
            // Customer 1: not matched first, then live on day 10, live again on day 20; orders day 12.
            row(1, 5, Status::NotMatched, None),
            row(1, 10, Status::Live, None),
            row(1, 20, Status::Live, None),
            // Customer 2: held out on day 10, orders day 30 (outside the window).
            row(2, 10, Status::HeldOut, None),
            // Customer 3: no consent (treated, intention to treat), orders on day 11.
            row(3, 10, Status::NoConsent, None),
            // Customer 4: held out, orders on day 10 itself before the decision: not a conversion.
            row(4, 10, Status::HeldOut, None),
            // Customer 5: matched on day 95: window still open at day 100.
            row(5, 95, Status::Live, None),
            // Customer 6: never matched.
            row(6, 10, Status::NotMatched, None),
        ];
        let orders = |c: &CustomerId| match c.to_string().as_str() {
            "shopify:1" => vec![12 * DAY],
            "shopify:2" => vec![30 * DAY],
            "shopify:3" => vec![11 * DAY],
            "shopify:4" => vec![10 * DAY - 1],
            "shopify:5" => vec![96 * DAY],
            _ => vec![],
        };
        let r = lift("f", &rows, &orders, window(false));
        assert_eq!((r.treated.conversions, r.treated.customers), (2, 2));
        assert_eq!((r.held_out.conversions, r.held_out.customers), (0, 2));
        assert_eq!(r.pending_window, 1);
        assert_eq!(r.treated_by_status.get("live"), Some(&1));
        assert_eq!(r.treated_by_status.get("no_consent"), Some(&1));
        assert!((r.difference - 1.0).abs() < 1e-12);
        assert!(r.difference_ci.is_some());
        assert!(r.relative_lift.is_none(), "held-out rate 0: relative lift undefined");
        let partial = lift("f", &rows, &orders, window(true));
        assert_eq!((partial.treated.conversions, partial.treated.customers), (3, 3));
        assert_eq!(partial.pending_window, 0);
    }

    #[test]
    fn lift_verdict_says_whether_the_interval_excludes_zero() {
        let mut rows = Vec::new();
        for c in 0..400u32 {
            let status = if c % 2 == 0 { Status::HeldOut } else { Status::Live };
            rows.push(row(c, 1, status, None));
        }
        // Treated convert 1 in 2, held out 1 in 10.
        let orders = |c: &CustomerId| {
            let n: u32 = c.to_string()["shopify:".len()..].parse().unwrap();
            let convert = if n % 2 == 1 { n % 4 == 1 } else { n.is_multiple_of(20) };
            if convert { vec![2 * DAY] } else { vec![] }
        };
        let r = lift("f", &rows, &orders, window(false));
        assert!(r.verdict.contains("lifts conversion"), "{}", r.verdict);
        let (lo, hi) = r.difference_ci.unwrap();
        assert!(lo > 0.0 && hi < 1.0 && lo < r.difference && r.difference < hi);
        let none = lift("f", &[], &orders, window(false));
        assert!(none.verdict.contains("nothing to compare"), "{}", none.verdict);
        assert!(none.difference.is_nan());
        let json = serde_json::to_value(&none).unwrap();
        assert!(json["difference"].is_null() && json["treated"]["rate"].is_null());
    }

    #[test]
    fn shadow_fills_the_two_by_two_by_customer() {
        let rows = vec![
            row(1, 10, Status::Shadow, Some(true)),      // both
            row(2, 10, Status::Shadow, Some(false)),     // AI only
            row(3, 10, Status::NotMatched, Some(true)),  // rule only
            row(4, 10, Status::NotMatched, Some(false)), // neither
            row(4, 12, Status::NotMatched, Some(false)),
            // Customer 5: rule yes on day 10, AI yes on day 20: both, anchored on day 10.
            row(5, 10, Status::NotMatched, Some(true)),
            row(5, 20, Status::Shadow, Some(false)),
            // Recorded before the flow had a baseline: ignored.
            row(6, 10, Status::Shadow, None),
        ];
        let orders = |c: &CustomerId| match c.to_string().as_str() {
            "shopify:1" | "shopify:2" | "shopify:6" => vec![11 * DAY],
            "shopify:5" => vec![21 * DAY], // 11 days after the anchor
            _ => vec![],
        };
        let r = shadow("f", &rows, &orders, window(false));
        let cell = |ai: bool, rule: bool| {
            let c = r.cells.iter().find(|c| c.ai == ai && c.rule == rule).unwrap();
            (c.outcome.conversions, c.outcome.customers)
        };
        assert_eq!(cell(true, true), (2, 2));
        assert_eq!(cell(true, false), (1, 1));
        assert_eq!(cell(false, true), (0, 1));
        assert_eq!(cell(false, false), (0, 1));
        assert_eq!(r.customers, 5);
        assert!((r.agreement - 0.6).abs() < 1e-12);
        assert_eq!((r.ai_selected.conversions, r.ai_selected.customers), (3, 3));
        assert_eq!((r.rule_selected.conversions, r.rule_selected.customers), (2, 3));
        assert_eq!(r.ai_by_status.get("shadow"), Some(&3));
        assert!(r.verdict.contains("agree on 60.0 %"), "{}", r.verdict);
    }
}
