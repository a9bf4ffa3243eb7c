//! The user's own scoring models (`[[scoring.custom]]`): an ONNX file run in process, or an external HTTP
//! scorer, fed by a declared feature mapping and giving named scores, live or in shadow.
//!
//! - [`config`]: the table as written and its checks (exactly one of `onnx`/`http`, an http(s) URL,
//!   output names and ranges, fallbacks that name a built-in score, no name clashes).
//! - [`features`]: the inputs, CEL expressions over the flow conditions' `customer` and `scores` facts,
//!   compiled at load and evaluated to numbers per customer.
//! - [`onnx`] (feature `onnx`): the ONNX runner, loaded, checked against the mapping and optimised once:
//!   tree ensembles on the native evaluator ([`trees`]), every other graph on tract.
//! - [`trees`]: the native evaluator of ONNX-ML tree ensembles (pure; fed the operator's attributes).
//! - [`http`]: the scorer client (the JSON contract, the batch deadline, the circuit breaker).
//! - [`CustomModels`]: the set as the pipeline uses it: [`CustomModels::prefetch`] asks the HTTP scorers
//!   for a batch's customers at once (before the batch is processed, from the states it starts from);
//!   [`CustomModels::apply`] runs the ONNX models on the post-event state, validates every output (NaN,
//!   out of range, missing → the output's fallback) and serves the live ones into the score set, and
//!   returns a [`ModelReport`] per model for the audit trail (shadow outputs included).

pub mod compare;
pub mod config;
pub mod features;
pub mod http;
#[cfg(feature = "onnx")]
pub mod onnx;
pub mod trees;

pub use config::{CustomModelSpec, HttpSpec, InputSpec, Missing, Mode, OutputSpec, check_all};
pub use features::{FeatureMap, Features};
pub use http::{BreakerState, HttpScorer};

use config::{ConfigError, bad};
use nudge_model::{CustomerId, PseudonymKey, Score, ScoreSet, Timestamp};
use nudge_state::CustomerState;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::path::Path;
use std::sync::Arc;

/// Whether this build can load ONNX models.
pub const ONNX_SUPPORTED: bool = cfg!(feature = "onnx");

enum Runner {
    #[cfg(feature = "onnx")]
    Onnx(onnx::OnnxModel),
    Http(HttpScorer),
}

/// One loaded model.
pub struct CustomModel {
    pub spec: CustomModelSpec,
    pub features: FeatureMap,
    /// `onnx:<first 12 hex of the file's SHA-256>` or `http:<url>`: what its scores are labelled with.
    pub version: String,
    runner: Runner,
}

impl std::fmt::Debug for CustomModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CustomModel").field("name", &self.spec.name).field("version", &self.version).finish()
    }
}

impl CustomModel {
    pub fn kind(&self) -> &'static str {
        match self.runner {
            #[cfg(feature = "onnx")]
            Runner::Onnx(_) => "onnx",
            Runner::Http(_) => "http",
        }
    }

    /// What runs it: `trees` (the native tree evaluator), `tract` (other ONNX graphs) or `http`.
    pub fn engine(&self) -> &'static str {
        match &self.runner {
            #[cfg(feature = "onnx")]
            Runner::Onnx(m) => m.engine(),
            Runner::Http(_) => "http",
        }
    }

    /// The HTTP scorer, for an HTTP model.
    pub fn http(&self) -> Option<&HttpScorer> {
        match &self.runner {
            Runner::Http(h) => Some(h),
            #[cfg(feature = "onnx")]
            Runner::Onnx(_) => None,
        }
    }

    /// Loads one model: compiles its inputs and, for an ONNX file (relative paths from `base_dir`),
    /// reads and checks it. The error's key is below the model's table.
    pub fn load(spec: &CustomModelSpec, base_dir: &Path) -> Result<CustomModel, ConfigError> {
        spec.check()?;
        let features = FeatureMap::compile(&spec.inputs)?;
        let (runner, version) = match (&spec.onnx, &spec.http) {
            (Some(path), None) => load_onnx(path, base_dir, &features, spec)?,
            (None, Some(h)) => (
                Runner::Http(HttpScorer::new(h.clone()).map_err(|e| bad("http", e))?),
                format!("http:{}", h.url),
            ),
            _ => unreachable!("checked: exactly one of onnx and http"),
        };
        Ok(CustomModel { spec: spec.clone(), features, version, runner })
    }

    /// The raw outputs of the ONNX model for `features` (none for an HTTP model).
    pub fn run_onnx(&self, features: &Features) -> Option<Result<BTreeMap<String, Vec<f64>>, String>> {
        match &self.runner {
            #[cfg(feature = "onnx")]
            Runner::Onnx(m) => Some(m.run(features)),
            Runner::Http(_) => {
                let _ = features;
                None
            }
        }
    }
}

#[cfg(feature = "onnx")]
fn load_onnx(
    path: &str,
    base_dir: &Path,
    features: &FeatureMap,
    spec: &CustomModelSpec,
) -> Result<(Runner, String), ConfigError> {
    use sha2::Digest;
    let full = base_dir.join(path);
    let bytes =
        std::fs::read(&full).map_err(|e| bad("onnx", format!("cannot read `{}`: {e}", full.display())))?;
    let model = onnx::OnnxModel::load(path, &bytes, features, &spec.outputs)?;
    let digest = hex::encode(sha2::Sha256::digest(&bytes));
    Ok((Runner::Onnx(model), format!("onnx:{}", &digest[..12])))
}

#[cfg(not(feature = "onnx"))]
fn load_onnx(
    _path: &str,
    _base_dir: &Path,
    _features: &FeatureMap,
    _spec: &CustomModelSpec,
) -> Result<(Runner, String), ConfigError> {
    Err(bad(
        "onnx",
        "this nudge was built without ONNX support: build it with `cargo build --release -p nudge --features onnx` \
         (or use an HTTP scorer)",
    ))
}

/// Why an output was not served as the model gave it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Fallback {
    /// The output's score name.
    pub output: String,
    pub reason: String,
    /// The built-in score served in its place (live models), if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub served: Option<String>,
}

/// What one model did for one customer: the audit trail's record.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelReport {
    pub model: String,
    pub mode: &'static str,
    pub version: String,
    /// The valid outputs, by score name (served when live, recorded only when shadow).
    pub outputs: BTreeMap<String, f64>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub fallbacks: Vec<Fallback>,
}

/// The HTTP scorers' answers for one batch, by model and customer.
#[derive(Debug, Default)]
pub struct Prefetched {
    answers: HashMap<String, HashMap<CustomerId, http::Answer>>,
}

impl Prefetched {
    fn get(&self, model: &str, customer: &CustomerId) -> Option<&http::Answer> {
        self.answers.get(model)?.get(customer)
    }
}

/// The configured models.
pub struct CustomModels {
    models: Vec<CustomModel>,
    key: Option<PseudonymKey>,
}

impl std::fmt::Debug for CustomModels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.models.iter().map(|m| &m.spec.name)).finish()
    }
}

impl CustomModels {
    /// Loads every model; the error carries the model's index. `key` (`privacy.pseudonym_key`) is
    /// required when an HTTP scorer is configured: the customer leaves nudge as its pseudonym only.
    pub fn load(
        specs: &[CustomModelSpec],
        base_dir: &Path,
        key: Option<PseudonymKey>,
    ) -> Result<CustomModels, (usize, ConfigError)> {
        check_all(specs)?;
        let mut models = Vec::with_capacity(specs.len());
        for (i, s) in specs.iter().enumerate() {
            if s.http.is_some() && key.is_none() {
                return Err((
                    i,
                    bad(
                        "http",
                        "an HTTP scorer needs `privacy.pseudonym_key` (customers are sent as pseudonyms)",
                    ),
                ));
            }
            models.push(CustomModel::load(s, base_dir).map_err(|e| (i, e))?);
        }
        Ok(CustomModels { models, key })
    }

    pub fn empty() -> CustomModels {
        CustomModels { models: Vec::new(), key: None }
    }

    pub fn is_empty(&self) -> bool {
        self.models.is_empty()
    }

    pub fn models(&self) -> &[CustomModel] {
        &self.models
    }

    pub fn has_http(&self) -> bool {
        self.models.iter().any(|m| m.http().is_some())
    }

    /// Asks every HTTP scorer for these customers at once, each from its state and built-in scores
    /// (what the pipeline has before the batch). Returns within the scorers' timeouts (+ scheduling slack).
    pub async fn prefetch(
        &self,
        customers: &[(CustomerId, CustomerState, ScoreSet)],
        now: Timestamp,
    ) -> Prefetched {
        let mut out = Prefetched::default();
        let Some(key) = &self.key else { return out };
        let scored_at = now.format(&time::format_description::well_known::Rfc3339).unwrap_or_default();
        let mut batches = Vec::new();
        for m in self.models.iter() {
            let Some(h) = m.http() else { continue };
            let mut skipped = HashMap::new();
            let requests: Vec<http::Request> = customers
                .iter()
                .filter_map(|(c, state, scores)| {
                    let features = m.features.features(state, scores, now);
                    if m.spec.missing == Missing::Fallback
                        && let Some(which) = m.features.first_missing(&features)
                    {
                        skipped.insert(c.clone(), Err(format!("{which} has no value")));
                        return None;
                    }
                    Some(http::Request {
                        customer: c.clone(),
                        body: serde_json::json!({
                            "model": m.spec.name,
                            "customer": features::pseudonymous_id(key, c),
                            "scored_at": scored_at,
                            "features": m.features.to_json(&features),
                        }),
                    })
                })
                .collect();
            batches.push(async move {
                let mut answers = h.score_batch(requests).await;
                answers.extend(skipped);
                (m.spec.name.clone(), answers)
            });
        }
        for (name, answers) in futures::future::join_all(batches).await {
            out.answers.insert(name, answers);
        }
        out
    }

    /// Runs every model for one customer on `state` (after the event) and `scores` (the built-in ones):
    /// live outputs are served into `scores` (replacing a built-in score of the same name), invalid ones
    /// replaced by their fallbacks; shadow outputs only reported. HTTP models read `prefetched`.
    pub fn apply(
        &self,
        state: &CustomerState,
        now: Timestamp,
        scores: &mut ScoreSet,
        prefetched: &Prefetched,
    ) -> Vec<ModelReport> {
        if self.models.is_empty() {
            return Vec::new();
        }
        let builtin = scores.clone();
        let facts = FeatureMap::facts(state, &builtin, now);
        let mut reports = Vec::with_capacity(self.models.len());
        for m in &self.models {
            let raw = self.raw_outputs(m, &facts, &state.customer, prefetched);
            let mut report = ModelReport {
                model: m.spec.name.clone(),
                mode: m.spec.mode.as_str(),
                version: m.version.clone(),
                outputs: BTreeMap::new(),
                fallbacks: Vec::new(),
            };
            for (name, o) in &m.spec.outputs {
                let checked = raw
                    .as_ref()
                    .map_err(Clone::clone)
                    .and_then(|r| validate(o, r.get(name).copied().flatten()));
                match checked {
                    Ok(v) => {
                        report.outputs.insert(name.clone(), v);
                        if m.spec.mode == Mode::Live {
                            upsert(
                                scores,
                                Score {
                                    name: name.clone(),
                                    value: v,
                                    model_id: format!("custom:{}", m.spec.name),
                                    model_version: m.version.clone(),
                                    explanation: format!("your model `{}` ({})", m.spec.name, m.kind()),
                                },
                            );
                        }
                    }
                    Err(reason) => {
                        let fb = m.spec.fallback_of(name);
                        let served = match (m.spec.mode, fb.as_deref().and_then(|f| builtin.get(f))) {
                            (Mode::Live, Some(b)) => {
                                upsert(
                                    scores,
                                    Score {
                                        name: name.clone(),
                                        value: b.value,
                                        model_id: b.model_id.clone(),
                                        model_version: b.model_version.clone(),
                                        explanation: format!(
                                            "fallback to `{}`: your model `{}` gave no valid value ({reason})",
                                            b.name, m.spec.name
                                        ),
                                    },
                                );
                                Some(b.name.clone())
                            }
                            _ => None,
                        };
                        report.fallbacks.push(Fallback { output: name.clone(), reason, served });
                    }
                }
            }
            reports.push(report);
        }
        reports
    }

    /// The model's outputs by score name (before validation), or why there are none.
    fn raw_outputs(
        &self,
        m: &CustomModel,
        facts: &nudge_policy::condition::Facts,
        customer: &CustomerId,
        prefetched: &Prefetched,
    ) -> Result<BTreeMap<String, Option<f64>>, String> {
        if m.http().is_some() {
            let answer = prefetched
                .get(&m.spec.name, customer)
                .cloned()
                .unwrap_or_else(|| Err("not asked (the customer was not in the batch's prefetch)".into()))?;
            return Ok(m
                .spec
                .outputs
                .iter()
                .map(|(n, o)| (n.clone(), answer.get(&o.output).copied().flatten()))
                .collect());
        }
        let features = m.features.eval(facts);
        if m.spec.missing == Missing::Fallback
            && let Some(which) = m.features.first_missing(&features)
        {
            return Err(format!("{which} has no value"));
        }
        match m.run_onnx(&features) {
            Some(Ok(values)) => Ok(m
                .spec
                .outputs
                .iter()
                .map(|(n, o)| (n.clone(), values.get(&o.output).and_then(|v| v.get(o.index)).copied()))
                .collect()),
            Some(Err(e)) => Err(format!("the model failed: {e}")),
            None => Err("no runner".into()),
        }
    }
}

/// An output's value if it is a number within `[min, max]`; why not otherwise.
pub fn validate(o: &OutputSpec, v: Option<f64>) -> Result<f64, String> {
    let v = v.ok_or_else(|| format!("output `{}` is missing", o.output))?;
    if !v.is_finite() {
        return Err(format!("output `{}` is {v}, not a number", o.output));
    }
    if o.min.is_some_and(|lo| v < lo) || o.max.is_some_and(|hi| v > hi) {
        let lo = o.min.map_or("-inf".to_string(), |x| x.to_string());
        let hi = o.max.map_or("inf".to_string(), |x| x.to_string());
        return Err(format!("output `{}` is {v}, outside [{lo}, {hi}]", o.output));
    }
    Ok(v)
}

fn upsert(set: &mut ScoreSet, score: Score) {
    match set.scores.iter_mut().find(|s| s.name == score.name) {
        Some(s) => *s = score,
        None => set.scores.push(score),
    }
}

/// The models as the pipeline holds them (shared by the batches in flight).
pub type Shared = Arc<CustomModels>;
