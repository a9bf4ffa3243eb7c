//! The BTYD scorer: evaluates a fitted model version (a BTYD count model plus, optionally, Gamma-Gamma for
//! spend) on one customer's purchase days, in closed form. Microseconds per customer.

use crate::rules::round;
use crate::{ScoreError, Scorer, SegmentThresholds, names, score, segment_for};
use nudge_model::{ScoreSet, Timestamp};
use nudge_models::{
    BgNbd, ClvSettings, GammaGamma, MbgNbd, ParetoNbd, Rfm, TimeUnit, TransactionModel, churn_risk,
    customer_lifetime_value, expected_time_to_next_order,
};
use nudge_state::{CustomerState, day_number};
use serde::{Deserialize, Serialize};

/// The count model of a version, tagged by family.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(tag = "family", rename_all = "snake_case")]
pub enum CountModelParams {
    Bgnbd(BgNbd),
    Mbgnbd(MbgNbd),
    ParetoNbd(ParetoNbd),
}

impl CountModelParams {
    pub fn family(&self) -> &'static str {
        match self {
            CountModelParams::Bgnbd(_) => "bgnbd",
            CountModelParams::Mbgnbd(_) => "mbgnbd",
            CountModelParams::ParetoNbd(_) => "pareto_nbd",
        }
    }
}

/// What the pipeline needs of a model version to score customers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BtydModel {
    /// The registry version id; every score carries it.
    pub version: String,
    /// The time unit the model was fitted in.
    pub unit: TimeUnit,
    pub count: CountModelParams,
    /// Spend model; without it CLV uses the customer's own average order value.
    pub spend: Option<GammaGamma>,
    /// Horizon and discount of `predicted_clv`.
    pub clv: ClvSettings,
}

pub struct BtydScorer {
    pub model: BtydModel,
    pub thresholds: SegmentThresholds,
}

impl BtydScorer {
    pub fn new(model: BtydModel, thresholds: SegmentThresholds) -> Self {
        BtydScorer { model, thresholds }
    }
}

impl Scorer for BtydScorer {
    fn model_id(&self) -> &str {
        self.model.count.family()
    }

    fn model_version(&self) -> &str {
        &self.model.version
    }

    fn score(&self, state: &CustomerState, now: Timestamp) -> Result<ScoreSet, ScoreError> {
        let days = state.purchase_days();
        let mut scores = Vec::new();
        if let (Some(first), Some(last)) = (days.first(), days.last()) {
            let unit_days = self.model.unit.days();
            let today = day_number(now).max(last.0);
            let rfm = Rfm::new(
                (days.len() - 1) as u32,
                f64::from(last.0 - first.0) / unit_days,
                f64::from(today - first.0) / unit_days,
            );
            let repeat: Vec<f64> = days[1..].iter().map(|d| d.1).collect();
            let mean_repeat =
                if repeat.is_empty() { 0.0 } else { repeat.iter().sum::<f64>() / repeat.len() as f64 };
            let aov = days.iter().map(|d| d.1).sum::<f64>() / days.len() as f64;
            let out = match &self.model.count {
                CountModelParams::Bgnbd(m) => evaluate(m, &rfm, &self.model, mean_repeat, aov),
                CountModelParams::Mbgnbd(m) => evaluate(m, &rfm, &self.model, mean_repeat, aov),
                CountModelParams::ParetoNbd(m) => evaluate(m, &rfm, &self.model, mean_repeat, aov),
            };
            if !(out.p_alive.is_finite() && out.clv.is_finite() && out.e90.is_finite()) {
                return Err(ScoreError::Failed {
                    model: self.model.version.clone(),
                    reason: format!("non-finite prediction for x={}, t_x={}, T={}", rfm.x, rfm.t_x, rfm.t),
                });
            }
            let id = self.model.count.family();
            let v = &self.model.version;
            let hist = format!(
                "x={} repeat purchase days, t_x={:.1}, T={:.1} ({:?})",
                rfm.x, rfm.t_x, rfm.t, self.model.unit
            );
            scores.push(score(
                names::CHURN_RISK,
                round(out.churn, 1),
                id,
                v,
                format!("100 × (1 − P(alive)); {hist}"),
            ));
            scores.push(score(
                names::P_ALIVE,
                round(out.p_alive, 4),
                id,
                v,
                format!("{id} P(alive | history); {hist}"),
            ));
            scores.push(score(
                names::EXPECTED_ORDERS_90D,
                round(out.e90, 3),
                id,
                v,
                "conditional expected purchases in the next 90 days".into(),
            ));
            scores.push(score(
                names::PREDICTED_CLV,
                round(out.clv, 2),
                id,
                v,
                format!(
                    "{} months, {:.1}% monthly discount, spend {}",
                    self.model.clv.months,
                    self.model.clv.monthly_discount_rate * 100.0,
                    if self.model.spend.is_some() {
                        "from Gamma-Gamma"
                    } else {
                        "from the customer's average order"
                    }
                ),
            ));
            if let Some(d) = out.days_to_next {
                scores.push(score(
                    names::DAYS_TO_NEXT_ORDER,
                    round(d, 1),
                    id,
                    v,
                    "median wait to the next purchase given alive".into(),
                ));
            }
        }
        let segment = segment_for(state, &scores, now, &self.thresholds);
        Ok(ScoreSet {
            scores,
            segment,
            model_version: self.model.version.clone(),
            labels: Default::default(),
            products: Vec::new(),
            scored_at: now,
            adopted_segments: None,
        })
    }
}

struct Evaluated {
    p_alive: f64,
    churn: f64,
    e90: f64,
    clv: f64,
    days_to_next: Option<f64>,
}

fn evaluate<M: TransactionModel>(
    m: &M,
    rfm: &Rfm,
    model: &BtydModel,
    mean_repeat: f64,
    aov: f64,
) -> Evaluated {
    let unit_days = model.unit.days();
    let p_alive = m.p_alive(rfm);
    let e90 = m.conditional_expected_purchases(90.0 / unit_days, rfm);
    let clv = match &model.spend {
        Some(gg) => customer_lifetime_value(m, gg, rfm, mean_repeat, &model.clv),
        None => {
            let horizon = f64::from(model.clv.months) * model.unit.units_per_month();
            aov * m.conditional_expected_purchases(horizon, rfm)
        }
    };
    Evaluated {
        p_alive,
        churn: churn_risk(m, rfm),
        e90,
        clv,
        days_to_next: expected_time_to_next_order(m, rfm, 0.05).map(|t| t * unit_days),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use time::macros::datetime;

    fn model() -> BtydModel {
        BtydModel {
            version: "v-test".into(),
            unit: TimeUnit::W,
            count: CountModelParams::Bgnbd(BgNbd { r: 0.243, alpha: 4.414, a: 0.793, b: 2.426 }),
            spend: Some(GammaGamma { p: 6.25, q: 3.74, v: 15.44 }),
            clv: ClvSettings::default(),
        }
    }

    #[test]
    fn scores_match_the_model_and_carry_the_version() {
        let sc = BtydScorer::new(model(), SegmentThresholds::default());
        // Hardie's example customer: x = 2, t_x = 30.43 weeks, T = 38.86 weeks (days rounded).
        let s = crate::test_support::state_with_orders(&[0, 108, 213], "30.00");
        let now = datetime!(2026-01-01 12:00 UTC) + time::Duration::days(272);
        let set = sc.score(&s, now).unwrap();
        let m = BgNbd { r: 0.243, alpha: 4.414, a: 0.793, b: 2.426 };
        let rfm = Rfm::new(2, 213.0 / 7.0, 272.0 / 7.0);
        let expect = 100.0 * (1.0 - m.p_alive(&rfm));
        assert!((set.value(names::CHURN_RISK).unwrap() - (expect * 10.0).round() / 10.0).abs() < 1e-9);
        assert_eq!(set.model_version, "v-test");
        assert_eq!(set.get(names::P_ALIVE).unwrap().model_id, "bgnbd");
        assert!(set.value(names::PREDICTED_CLV).unwrap() > 0.0);
    }

    #[test]
    fn churn_risk_grows_with_silence() {
        let sc = BtydScorer::new(model(), SegmentThresholds::default());
        let s = crate::test_support::state_with_orders(&[0, 20, 40, 60], "30.00");
        let soon = sc.score(&s, datetime!(2026-03-05 0:00 UTC)).unwrap().value(names::CHURN_RISK).unwrap();
        let late = sc.score(&s, datetime!(2027-06-01 0:00 UTC)).unwrap().value(names::CHURN_RISK).unwrap();
        assert!(late > soon + 30.0, "{soon} → {late}");
    }
}
