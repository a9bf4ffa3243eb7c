//! The in-process ONNX runner (tract, pure Rust; built with the `onnx` feature).
//!
//! [`OnnxModel::load`] reads the file once, checks its inputs and outputs against the declared mapping
//! (every graph input declared and no other; each a float tensor of shape `[N, k]`, `[1, k]` or `[k]` where
//! `k` is the number of expressions; every declared output present, its `index` inside its width when the
//! file says the width), then optimises it for one customer per run. [`OnnxModel::run`] is one inference.
//!
//! tract implements the ONNX-ML operators scikit-learn exports use for classifiers
//! (`TreeEnsembleClassifier`, `LinearClassifier`, `LinearRegressor`) but not `TreeEnsembleRegressor` or
//! `ZipMap`: export classifiers with `options={"zipmap": False}` so their probabilities are a tensor.

use crate::config::{ConfigError, OutputSpec, bad};
use crate::features::{FeatureMap, Features};
use std::collections::BTreeMap;
use tract_onnx::pb;
use tract_onnx::prelude::*;

/// A loaded, checked and optimised ONNX model.
pub struct OnnxModel {
    /// One reusable run state (made once: making one per run costs more than a small model's run).
    state: std::sync::Mutex<TypedSimpleState>,
    /// For each graph input (in the graph's order): which declared input feeds it, and its shape.
    feeds: Vec<(usize, Vec<usize>)>,
    /// The graph's output names, in the order a run returns them.
    output_names: Vec<String>,
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel").field("outputs", &self.output_names).finish_non_exhaustive()
    }
}

fn dims(v: &pb::ValueInfoProto) -> Option<Vec<Option<i64>>> {
    use pb::tensor_shape_proto::dimension::Value;
    let pb::type_proto::Value::TensorType(t) = v.r#type.as_ref()?.value.as_ref()?;
    Some(
        t.shape
            .as_ref()?
            .dim
            .iter()
            .map(|d| match &d.value {
                Some(Value::DimValue(n)) if *n > 0 => Some(*n),
                _ => None,
            })
            .collect(),
    )
}

fn elem_type(v: &pb::ValueInfoProto) -> Option<i32> {
    let pb::type_proto::Value::TensorType(t) = v.r#type.as_ref()?.value.as_ref()?;
    Some(t.elem_type)
}

/// ONNX's FLOAT element type.
const ONNX_FLOAT: i32 = 1;

impl OnnxModel {
    /// Loads `bytes` (the file at `path`, named in errors) and checks it against `features` and `outputs`.
    pub fn load(
        path: &str,
        bytes: &[u8],
        features: &FeatureMap,
        outputs: &BTreeMap<String, OutputSpec>,
    ) -> Result<OnnxModel, ConfigError> {
        let onnx = tract_onnx::onnx();
        let proto = onnx
            .proto_model_for_read(&mut &bytes[..])
            .map_err(|e| bad("onnx", format!("`{path}` is not an ONNX model: {e}")))?;
        let graph = proto.graph.as_ref().ok_or_else(|| bad("onnx", format!("`{path}` has no graph")))?;
        let initialisers: Vec<&str> = graph.initializer.iter().map(|t| t.name.as_str()).collect();
        let graph_inputs: Vec<&pb::ValueInfoProto> =
            graph.input.iter().filter(|i| !initialisers.contains(&i.name.as_str())).collect();
        let declared: Vec<&str> = features.inputs.iter().map(|i| i.name.as_str()).collect();
        let names: Vec<&str> = graph_inputs.iter().map(|i| i.name.as_str()).collect();
        if let Some(missing) = names.iter().find(|n| !declared.contains(n)) {
            return Err(bad(
                "inputs",
                format!(
                    "`{path}` takes input `{missing}`, which is not declared (it takes: {})",
                    names.join(", ")
                ),
            ));
        }
        if let Some(extra) = declared.iter().find(|n| !names.contains(n)) {
            return Err(bad(
                format!("inputs.{extra}"),
                format!("`{path}` has no input named `{extra}` (it takes: {})", names.join(", ")),
            ));
        }
        let mut feeds = Vec::new();
        for gi in &graph_inputs {
            let ix = declared.iter().position(|d| *d == gi.name).expect("checked above");
            let k = features.inputs[ix].exprs.len();
            let key = format!("inputs.{}", gi.name);
            if elem_type(gi) != Some(ONNX_FLOAT) {
                return Err(bad(key, format!("`{path}`: input `{}` is not a float tensor", gi.name)));
            }
            let shape =
                dims(gi).ok_or_else(|| bad(&key, format!("`{path}`: input `{}` has no shape", gi.name)))?;
            let fits = match shape.as_slice() {
                [n] => n.is_none_or(|n| n as usize == k),
                [b, n] => b.is_none_or(|b| b == 1) && n.is_none_or(|n| n as usize == k),
                _ => false,
            };
            if !fits {
                let shown: Vec<String> =
                    shape.iter().map(|d| d.map_or("N".into(), |n| n.to_string())).collect();
                return Err(bad(
                    key,
                    format!(
                        "`{path}`: input `{}` has shape [{}]; {k} expression(s) are declared (it needs [N, {k}] or [{k}])",
                        gi.name,
                        shown.join(", ")
                    ),
                ));
            }
            let run_shape = if shape.len() == 1 { vec![k] } else { vec![1, k] };
            feeds.push((ix, run_shape));
        }
        let output_names: Vec<String> = graph.output.iter().map(|o| o.name.clone()).collect();
        for (score, o) in outputs {
            let Some(gout) = graph.output.iter().find(|g| g.name == o.output) else {
                return Err(bad(
                    format!("outputs.{score}.output"),
                    format!(
                        "`{path}` has no output named `{}` (it has: {})",
                        o.output,
                        output_names.join(", ")
                    ),
                ));
            };
            if let Some(width) = dims(gout).and_then(|d| d.last().copied().flatten())
                && dims(gout).is_some_and(|d| d.len() >= 2)
                && o.index >= width as usize
            {
                return Err(bad(
                    format!("outputs.{score}.index"),
                    format!(
                        "output `{}` of `{path}` has {width} value(s) per customer; index {} is past them",
                        o.output, o.index
                    ),
                ));
            }
        }
        let mut model = onnx
            .model_for_proto_model(&proto)
            .map_err(|e| bad("onnx", format!("`{path}` cannot be loaded: {e:#}")))?;
        for (i, (_, shape)) in feeds.iter().enumerate() {
            model = model
                .with_input_fact(i, f32::fact(shape).into())
                .map_err(|e| bad("onnx", format!("`{path}`: {e:#}")))?;
        }
        let plan = model.into_optimized().and_then(|m| m.into_runnable()).map_err(|e| {
            bad("onnx", format!("`{path}` cannot be prepared to run (an unsupported operator?): {e:#}"))
        })?;
        let state =
            plan.spawn().map_err(|e| bad("onnx", format!("`{path}` cannot be prepared to run: {e:#}")))?;
        Ok(OnnxModel { state: std::sync::Mutex::new(state), feeds, output_names })
    }

    /// One inference: the values of each graph output, flattened, as f64 (an output that is not numeric
    /// is left empty).
    pub fn run(&self, features: &Features) -> Result<BTreeMap<String, Vec<f64>>, String> {
        let mut inputs: TVec<TValue> = TVec::new();
        for (ix, shape) in &self.feeds {
            let t = Tensor::from_shape(shape, &features[*ix]).map_err(|e| e.to_string())?;
            inputs.push(t.into_tvalue());
        }
        let out =
            self.state.lock().unwrap_or_else(|e| e.into_inner()).run(inputs).map_err(|e| format!("{e:#}"))?;
        let mut values = BTreeMap::new();
        for (name, v) in self.output_names.iter().zip(out.iter()) {
            let vals = match v.cast_to::<f64>() {
                Ok(t) => {
                    t.to_plain_array_view::<f64>().map(|a| a.iter().copied().collect()).unwrap_or_default()
                }
                Err(_) => Vec::new(),
            };
            values.insert(name.clone(), vals);
        }
        Ok(values)
    }
}
