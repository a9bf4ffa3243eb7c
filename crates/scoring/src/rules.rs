//! The rules fallback scorer: recency, frequency and monetary value with fixed formulas. It is labelled
//! `rules` / `rules-v1` in every score so nobody mistakes it for a fitted model.

use crate::{ScoreError, Scorer, SegmentThresholds, names, score, segment_for};
use nudge_model::{ScoreSet, Timestamp};
use nudge_state::CustomerState;

/// Churn risk = 100 · (1 − exp(−days since last order / (2 · typical gap))), where the typical gap is the
/// customer's mean gap between purchase days (90 days for one-time buyers). Expected orders over a window
/// = observed purchase rate × window × (1 − churn risk / 100); predicted CLV = that over 365 days × AOV.
#[derive(Debug, Clone, Default)]
pub struct RulesScorer {
    pub thresholds: SegmentThresholds,
}

pub const RULES_ID: &str = "rules";
pub const RULES_VERSION: &str = "rules-v1";

impl Scorer for RulesScorer {
    fn model_id(&self) -> &str {
        RULES_ID
    }

    fn model_version(&self) -> &str {
        RULES_VERSION
    }

    fn score(&self, state: &CustomerState, now: Timestamp) -> Result<ScoreSet, ScoreError> {
        let summary = state.summary();
        let mut scores = Vec::new();
        if let (Some(first), Some(last)) = (summary.first_order_at, summary.last_order_at) {
            let days_since = (now - last).as_seconds_f64().max(0.0) / 86_400.0;
            let n = summary.order_days.max(1) as f64;
            let span = (last - first).as_seconds_f64() / 86_400.0;
            let gap = if n >= 2.0 { (span / (n - 1.0)).max(1.0) } else { 90.0 };
            let churn = 100.0 * (1.0 - (-days_since / (2.0 * gap)).exp());
            let alive = 1.0 - churn / 100.0;
            let tenure_days = ((now - first).as_seconds_f64() / 86_400.0).max(91.0);
            let rate = n / tenure_days;
            let aov = summary.average_order_value.map(|m| m.to_f64()).unwrap_or(0.0);
            let e90 = rate * 90.0 * alive;
            let clv = rate * 365.0 * alive * aov;
            let days_to_next = (gap - days_since).max(0.0);
            let v = RULES_VERSION;
            scores.push(score(
                names::CHURN_RISK,
                round(churn, 1),
                RULES_ID,
                v,
                format!("{days_since:.0} days since last order vs a typical gap of {gap:.0} days"),
            ));
            scores.push(score(names::P_ALIVE, round(alive, 4), RULES_ID, v, "1 − churn risk / 100".into()));
            scores.push(score(
                names::EXPECTED_ORDERS_90D,
                round(e90, 3),
                RULES_ID,
                v,
                format!("{n:.0} purchase days over {tenure_days:.0} days of tenure, damped by churn risk"),
            ));
            scores.push(score(
                names::PREDICTED_CLV,
                round(clv, 2),
                RULES_ID,
                v,
                format!("expected orders in 365 days × average order value {aov:.2}"),
            ));
            scores.push(score(
                names::DAYS_TO_NEXT_ORDER,
                round(days_to_next, 1),
                RULES_ID,
                v,
                format!("typical gap {gap:.0} days minus {days_since:.0} days elapsed"),
            ));
        }
        let segment = segment_for(state, &scores, now, &self.thresholds);
        Ok(ScoreSet {
            scores,
            segment,
            model_version: RULES_VERSION.into(),
            labels: Default::default(),
            products: Vec::new(),
            scored_at: now,
            adopted_segments: None,
        })
    }
}

pub(crate) fn round(x: f64, dp: i32) -> f64 {
    let f = 10f64.powi(dp);
    (x * f).round() / f
}

#[cfg(test)]
mod tests {
    use super::*;
    use nudge_model::Segment;
    use time::macros::datetime;

    #[test]
    fn prospects_get_no_scores() {
        let s = crate::test_support::state_with_orders(&[], "50.00");
        let set = RulesScorer::default().score(&s, datetime!(2026-06-01 0:00 UTC)).unwrap();
        assert!(set.scores.is_empty());
        assert_eq!(set.segment, Segment::Prospect);
    }

    #[test]
    fn churn_risk_rises_with_recency() {
        let s = crate::test_support::state_with_orders(&[0, 30, 60], "50.00");
        let r = RulesScorer::default();
        let soon = r.score(&s, datetime!(2026-03-05 0:00 UTC)).unwrap();
        let late = r.score(&s, datetime!(2026-12-01 0:00 UTC)).unwrap();
        let soon_risk = soon.value(names::CHURN_RISK).unwrap();
        let late_risk = late.value(names::CHURN_RISK).unwrap();
        assert!(soon_risk < 20.0 && late_risk > 95.0, "{soon_risk} {late_risk}");
        assert_eq!(soon.segment, Segment::Loyal);
        assert_eq!(late.segment, Segment::Lapsed);
        assert!(soon.get(names::CHURN_RISK).unwrap().model_version == "rules-v1");
    }

    #[test]
    fn one_time_recent_buyer_is_new() {
        let s = crate::test_support::state_with_orders(&[0], "50.00");
        let set = RulesScorer::default().score(&s, datetime!(2026-01-10 0:00 UTC)).unwrap();
        assert_eq!(set.segment, Segment::New);
        assert!(set.value(names::PREDICTED_CLV).unwrap() > 0.0);
    }
}
