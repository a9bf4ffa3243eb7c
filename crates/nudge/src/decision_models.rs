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
