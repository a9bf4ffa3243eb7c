//! The declared feature mapping: each input of a model is one or more CEL expressions over `customer` and
//! `scores` (the flow conditions' facts, without `event`), each evaluated to a number.
//!
//! Booleans are 1/0, integers and doubles as they are; an expression that gives nothing (an absent field,
//! `customer.days_since_last_order` of a customer without orders) or fails gives NaN, which an ONNX model
//! sees as a missing value and the HTTP request carries as `null`. Compiled once when the configuration
//! loads: an unknown field is a configuration error naming `inputs.NAME[i]`.

use crate::config::{ConfigError, InputSpec, bad};
use nudge_model::{CustomerId, Event, ScheduleTick, ScoreSet, Timestamp};
use nudge_policy::condition::{Condition, FactValue, Facts, Schema};
use nudge_state::CustomerState;
use std::collections::BTreeMap;

/// The schema inputs are checked against: the flow conditions' `customer` and `scores` fields.
pub fn input_schema() -> Schema {
    let flows = Schema::flows_default();
    let mut schema = Schema::new();
    for var in ["customer", "scores"] {
        for (field, ty) in flows.fields(var) {
            schema = schema.with_field(var, field, ty);
        }
    }
    schema
}

/// One input's compiled expressions.
#[derive(Debug, Clone)]
pub struct Input {
    pub name: String,
    pub exprs: Vec<Condition>,
    /// Whether it was written as one expression (a scalar feature) rather than a list.
    pub scalar: bool,
}

/// A model's inputs, in name order.
#[derive(Debug, Clone)]
pub struct FeatureMap {
    pub inputs: Vec<Input>,
}

/// One customer's features: per input, its values in order.
pub type Features = Vec<Vec<f32>>;

impl FeatureMap {
    /// Compiles every expression; the error names `inputs.NAME` or `inputs.NAME[i]`.
    pub fn compile(inputs: &BTreeMap<String, InputSpec>) -> Result<FeatureMap, ConfigError> {
        let schema = input_schema();
        let mut out = Vec::with_capacity(inputs.len());
        for (name, spec) in inputs {
            let scalar = matches!(spec, InputSpec::One(_));
            let mut exprs = Vec::new();
            for (i, src) in spec.exprs().into_iter().enumerate() {
                let key = if scalar { format!("inputs.{name}") } else { format!("inputs.{name}[{i}]") };
                let c = Condition::compile_value(src, &schema).map_err(|e| bad(&key, e.to_string()))?;
                exprs.push(c);
            }
            out.push(Input { name: name.clone(), exprs, scalar });
        }
        Ok(FeatureMap { inputs: out })
    }

    /// The facts the inputs read: the customer's state at `now` and its built-in scores.
    pub fn facts(state: &CustomerState, scores: &ScoreSet, now: Timestamp) -> Facts {
        let tick = Event::ScheduleTick(ScheduleTick {
            customer: state.customer.clone(),
            flow: String::new(),
            fired_at: now,
        });
        let mut facts = nudge_policy::flows::facts_of(&tick, state, scores, now);
        facts.event.clear();
        facts
    }

    /// The features of one customer.
    pub fn eval(&self, facts: &Facts) -> Features {
        let prepared = facts.prepare();
        self.inputs
            .iter()
            .map(|i| i.exprs.iter().map(|e| number(e.value_prepared(&prepared))).collect())
            .collect()
    }

    /// [`FeatureMap::facts`] then [`FeatureMap::eval`].
    pub fn features(&self, state: &CustomerState, scores: &ScoreSet, now: Timestamp) -> Features {
        self.eval(&Self::facts(state, scores, now))
    }

    /// The first input without a value, as `inputs.NAME[i] (`expression`)`.
    pub fn first_missing(&self, features: &Features) -> Option<String> {
        for (input, vals) in self.inputs.iter().zip(features) {
            if let Some(i) = vals.iter().position(|v| v.is_nan()) {
                let at = if input.scalar { String::new() } else { format!("[{i}]") };
                return Some(format!("inputs.{}{at} (`{}`)", input.name, input.exprs[i].source()));
            }
        }
        None
    }

    /// The features as the HTTP request's `features` object: a number (or `null`) for a scalar input, an
    /// array for a list.
    pub fn to_json(&self, features: &Features) -> serde_json::Map<String, serde_json::Value> {
        let num = |v: f32| {
            if v.is_finite() {
                serde_json::Number::from_f64(f64::from(v)).map_or(serde_json::Value::Null, Into::into)
            } else {
                serde_json::Value::Null
            }
        };
        self.inputs
            .iter()
            .zip(features)
            .map(|(i, vals)| {
                let v = if i.scalar {
                    vals.first().copied().map_or(serde_json::Value::Null, num)
                } else {
                    vals.iter().copied().map(num).collect()
                };
                (i.name.clone(), v)
            })
            .collect()
    }
}

fn number(v: Result<FactValue, String>) -> f32 {
    match v {
        Ok(FactValue::Double(d)) => d as f32,
        Ok(FactValue::Int(i)) => i as f32,
        Ok(FactValue::Bool(b)) => f32::from(u8::from(b)),
        Ok(FactValue::Timestamp(t)) => t.unix_timestamp() as f32,
        _ => f32::NAN,
    }
}

/// The customer id as it leaves nudge: `ps_customer_…`, the keyed pseudonym of the customer key.
pub fn pseudonymous_id(key: &nudge_model::PseudonymKey, customer: &CustomerId) -> String {
    nudge_model::pseudonym(key, nudge_model::PiiKind::Customer, &customer.to_string())
}
