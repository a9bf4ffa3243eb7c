//! Which decision models serve: the active registry version of each decision family (propensity, send
//! time, cold start), read into its `StateModel`; a family with no active version, or one whose body
//! cannot be read, is served by its labelled rules (and the failure is logged).

use crate::pipeline::Scoring;
use nudge_decide::families;
use nudge_decide::serve::{DecisionModels, StateModel};
use nudge_store::{ModelVersion, Store};
use std::sync::Arc;

/// The ids of the active decision versions, one per family (`None` for rules): what the server compares
/// to notice an activation.
pub async fn active_ids(store: &dyn Store) -> anyhow::Result<Vec<Option<String>>> {
    let versions = store.model_versions().await?;
    Ok(SERVED
        .iter()
        .map(|family| versions.iter().find(|v| v.active && v.kind() == *family).map(|v| v.id.clone()))
        .collect())
}

/// The decision families the pipeline serves (the bandit learns online, from the offer log).
const SERVED: [&str; 3] = [families::PROPENSITY, families::SEND_TIME, families::COLD_START];

/// Reads a version of a served family into its model.
pub fn model_of(v: &ModelVersion) -> anyhow::Result<Arc<dyn StateModel>> {
    Ok(match v.family.as_str() {
        families::PROPENSITY => {
            Arc::new(nudge_decide::propensity::PropensityModel::from_body(&v.id, &v.body)?)
        }
        families::SEND_TIME => Arc::new(nudge_decide::send_time::SendTimeModel::from_body(&v.id, &v.body)?),
        families::COLD_START => {
            Arc::new(nudge_decide::cold_start::ColdStartModel::from_body(&v.id, &v.body)?)
        }
        other => anyhow::bail!("family `{other}` is not served by a state model"),
    })
}

/// Loads the active version of every served family (rules where there is none) into `scoring`.
pub async fn load(store: &dyn Store, scoring: &Scoring) -> anyhow::Result<()> {
    let versions = store.model_versions().await?;
    let mut models = DecisionModels::rules();
    for v in versions.iter().filter(|v| v.active && SERVED.contains(&v.kind())) {
        match model_of(v) {
            Ok(m) => {
                tracing::info!(version = %v.id, family = %v.family, "serving the active decision model version");
                match v.family.as_str() {
                    families::PROPENSITY => models.propensity = m,
                    families::SEND_TIME => models.send_time = m,
                    _ => models.cold_start = m,
                }
            }
            Err(e) => tracing::warn!(
                version = %v.id, family = %v.family, error = %format!("{e:#}"),
                "the active decision model version cannot be loaded; its rules serve"
            ),
        }
    }
    scoring.set_decision_models(models.refreshed());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use nudge_model::{Engagement, EngagementKind, Event};
    use nudge_state::CustomerState;
    use serde_json::json;
    use time::macros::datetime;

    fn version(id: &str, family: &str, body: serde_json::Value) -> ModelVersion {
        ModelVersion { id: id.into(), family: family.into(), created_at_ms: 0, active: true, body }
    }

    /// A send-time body fitted on customers who open email in the evening.
    fn send_time_body() -> serde_json::Value {
        let states: Vec<CustomerState> = (0..40)
            .map(|i| {
                let mut s = CustomerState::new(format!("shopify:{i}").parse().unwrap());
                for k in 0..6 {
                    s.apply(&Event::Engagement(Engagement {
                        customer: s.customer.clone(),
                        email: None,
                        kind: EngagementKind::Opened,
                        channel: "email".into(),
                        platform: "klaviyo".into(),
                        event_id: format!("o{i}-{k}"),
                        campaign: None,
                        url: None,
                        machine: false,
                        at: datetime!(2026-05-01 20:10 UTC) + time::Duration::days(k),
                    }));
                }
                s
            })
            .collect();
        let refs: Vec<&CustomerState> = states.iter().collect();
        let opts = nudge_decide::send_time::SendTimeFitOptions {
            store_utc_offset_minutes: Some(0),
            ..Default::default()
        };
        let body = nudge_decide::send_time::fit(&refs, &opts).unwrap();
        nudge_decide::send_time::SendTimeModel::new("s1", body).to_body()
    }

    #[test]
    fn every_served_family_reads_its_version() {
        let cold = json!({
            "population_mean": 60.0, "horizon_days": 365, "features": ["acquisition.source"],
            "tables": {"source": {"strength": 2.0, "between_variance": 1.0, "within_variance": 2.0,
                "levels": {"newsletter": {"n": 10, "raw": 30.0, "effect": 25.0}}}},
            "training_window": null, "data_digest": "x", "metrics": {}, "sufficiency": {"ok": true}
        });
        let served =
            [version("c1", families::COLD_START, cold), version("s1", families::SEND_TIME, send_time_body())];
        for v in &served {
            let m = model_of(v).unwrap_or_else(|e| panic!("{}: {e:#}", v.family));
            assert_eq!((m.family(), m.version()), (v.family.as_str(), v.id.as_str()));
        }
        let bandit = version("b1", families::BANDIT, json!({}));
        assert!(
            model_of(&bandit)
                .err()
                .expect("the bandit is not a state model")
                .to_string()
                .contains("not served")
        );
    }
}
