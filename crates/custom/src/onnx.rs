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
use crate::trees::{Kind, TreeAttrs, TreeEnsemble, Unsupported};
use std::collections::BTreeMap;
use tract_onnx::pb;
use tract_onnx::prelude::*;

/// A loaded, checked and optimised ONNX model.
pub struct OnnxModel {
    engine: Engine,
    /// For each graph input (in the graph's order): which declared input feeds it, and its shape.
    feeds: Vec<(usize, Vec<usize>)>,
    /// The graph's output names, in the order a run returns them.
    output_names: Vec<String>,
}

impl std::fmt::Debug for OnnxModel {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OnnxModel")
            .field("engine", &self.engine())
            .field("outputs", &self.output_names)
            .finish_non_exhaustive()
    }
}

enum Engine {
    /// One reusable run state (made once: making one per run costs more than a small model's run).
    Tract(std::sync::Mutex<TypedSimpleState>),
    /// The native tree evaluator; `sources[i]` is what graph output `i` is.
    Trees { ensemble: TreeEnsemble, sources: Vec<TreeOutput> },
}

/// What a graph output of a tree-ensemble graph carries.
#[derive(Debug, Clone, Copy, PartialEq)]
enum TreeOutput {
    /// The classifier's label (empty when the labels are strings).
    Label { numeric: bool },
    /// The probabilities or scores, one per column.
    Columns,
}

/// Which engines [`OnnxModel::load_with`] may use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EngineChoice {
    /// The native tree evaluator when the graph is a tree ensemble it takes, else tract (the default).
    Auto,
    /// tract for every graph (to compare the two engines).
    Tract,
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
        OnnxModel::load_with(path, bytes, features, outputs, EngineChoice::Auto)
    }

    /// [`OnnxModel::load`] with a choice of engine.
    pub fn load_with(
        path: &str,
        bytes: &[u8],
        features: &FeatureMap,
        outputs: &BTreeMap<String, OutputSpec>,
        choice: EngineChoice,
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
        if choice == EngineChoice::Auto
            && let [(_, shape)] = feeds.as_slice()
        {
            let width = *shape.last().expect("a shape has a dimension");
            let input = &graph_inputs[0].name;
            match tree_graph(graph, input, width) {
                Ok(Some((ensemble, sources))) => {
                    return Ok(OnnxModel {
                        engine: Engine::Trees { ensemble, sources },
                        feeds,
                        output_names,
                    });
                }
                Ok(None) | Err(Unsupported::Layout(_)) => {}
                Err(Unsupported::Malformed(why)) => {
                    return Err(bad("onnx", format!("`{path}` has a broken tree ensemble: {why}")));
                }
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
        Ok(OnnxModel { engine: Engine::Tract(std::sync::Mutex::new(state)), feeds, output_names })
    }

    /// `trees` (the native evaluator) or `tract`.
    pub fn engine(&self) -> &'static str {
        match self.engine {
            Engine::Tract(_) => "tract",
            Engine::Trees { .. } => "trees",
        }
    }

    /// One inference: the values of each graph output, flattened, as f64 (an output that is not numeric
    /// is left empty).
    pub fn run(&self, features: &Features) -> Result<BTreeMap<String, Vec<f64>>, String> {
        let state = match &self.engine {
            Engine::Tract(state) => state,
            Engine::Trees { ensemble, sources } => {
                let row = &features[self.feeds[0].0];
                let (label, columns) = ensemble.eval(row);
                let mut values = BTreeMap::new();
                for (name, source) in self.output_names.iter().zip(sources) {
                    let v = match source {
                        TreeOutput::Label { numeric: true } => {
                            label.map(|l| vec![l as f64]).unwrap_or_default()
                        }
                        TreeOutput::Label { numeric: false } => Vec::new(),
                        TreeOutput::Columns => columns.clone(),
                    };
                    values.insert(name.clone(), v);
                }
                return Ok(values);
            }
        };
        let mut inputs: TVec<TValue> = TVec::new();
        for (ix, shape) in &self.feeds {
            let t = Tensor::from_shape(shape, &features[*ix]).map_err(|e| e.to_string())?;
            inputs.push(t.into_tvalue());
        }
        let out =
            state.lock().unwrap_or_else(|e| e.into_inner()).run(inputs).map_err(|e| format!("{e:#}"))?;
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

/// ONNX's element types a `Cast` may turn a tree ensemble's outputs into.
const ONNX_INT64: i64 = 7;
const ONNX_DOUBLE: i64 = 11;

/// The graph as one tree ensemble fed `input` (rows of `width` features), with what each graph output
/// carries; `None` when the graph is something else.
fn tree_graph(
    graph: &pb::GraphProto,
    input: &str,
    width: usize,
) -> Result<Option<(TreeEnsemble, Vec<TreeOutput>)>, Unsupported> {
    let is_tree = |n: &pb::NodeProto| {
        n.domain == "ai.onnx.ml"
            && (n.op_type == "TreeEnsembleClassifier" || n.op_type == "TreeEnsembleRegressor")
    };
    let mut trees = graph.node.iter().filter(|n| is_tree(n));
    let (Some(node), None) = (trees.next(), trees.next()) else { return Ok(None) };
    if node.input.first().map(String::as_str) != Some(input)
        || graph.node.iter().any(|n| !is_tree(n) && n.op_type != "Identity" && n.op_type != "Cast")
    {
        return Ok(None);
    }
    let attrs = tree_attrs(node)?;
    let numeric_labels = !node.attribute.iter().any(|a| a.name == "classlabels_strings");
    // Follow Identity and Cast from the operator's outputs, in the graph's (topological) order.
    let mut carries: BTreeMap<&str, TreeOutput> = BTreeMap::new();
    match attrs.kind {
        Kind::Classifier { .. } => {
            if let Some(y) = node.output.first() {
                carries.insert(y, TreeOutput::Label { numeric: numeric_labels });
            }
            if let Some(z) = node.output.get(1) {
                carries.insert(z, TreeOutput::Columns);
            }
        }
        Kind::Regressor { .. } => {
            if let Some(y) = node.output.first() {
                carries.insert(y, TreeOutput::Columns);
            }
        }
    }
    for n in graph.node.iter().filter(|n| !is_tree(n)) {
        let (Some(from), Some(to)) = (n.input.first(), n.output.first()) else { return Ok(None) };
        let Some(&what) = carries.get(from.as_str()) else { return Ok(None) };
        if n.op_type == "Cast" {
            let target = n.attribute.iter().find(|a| a.name == "to").map(|a| a.i);
            let fits = match what {
                TreeOutput::Columns => {
                    matches!(target, Some(t) if t == i64::from(ONNX_FLOAT) || t == ONNX_DOUBLE)
                }
                TreeOutput::Label { .. } => {
                    matches!(target, Some(t) if t == i64::from(ONNX_FLOAT) || t == ONNX_DOUBLE || t == ONNX_INT64)
                }
            };
            if !fits {
                return Ok(None);
            }
        }
        carries.insert(to, what);
    }
    let mut sources = Vec::new();
    for o in &graph.output {
        let Some(&what) = carries.get(o.name.as_str()) else { return Ok(None) };
        sources.push(what);
    }
    Ok(Some((TreeEnsemble::new(&attrs, width)?, sources)))
}

/// The attributes of a tree ensemble node.
fn tree_attrs(node: &pb::NodeProto) -> Result<TreeAttrs, Unsupported> {
    let attr = |name: &str| node.attribute.iter().find(|a| a.name == name);
    let ints = |name: &str| attr(name).map(|a| a.ints.clone()).unwrap_or_default();
    let string =
        |name: &str| attr(name).map(|a| String::from_utf8_lossy(&a.s).into_owned()).unwrap_or_default();
    let reals =
        |name: &str| -> Result<Vec<f64>, Unsupported> {
            if let Some(a) = attr(&format!("{name}_as_tensor")) {
                return a.t.as_ref().map(tensor_reals).unwrap_or_else(|| {
                    Err(Unsupported::Malformed(format!("{name}_as_tensor holds no tensor")))
                });
            }
            Ok(attr(name).map(|a| a.floats.iter().map(|f| f64::from(*f)).collect()).unwrap_or_default())
        };
    let classifier = node.op_type == "TreeEnsembleClassifier";
    let leaf = if classifier { "class" } else { "target" };
    let kind = if classifier {
        let labels = ints("classlabels_int64s");
        let labels = if labels.is_empty() {
            let n = attr("classlabels_strings").map_or(0, |a| a.strings.len());
            (0..n as i64).collect()
        } else {
            labels
        };
        Kind::Classifier { labels }
    } else {
        let n_targets = attr("n_targets").map_or(1, |a| a.i.max(1) as usize);
        Kind::Regressor { n_targets, aggregate: string("aggregate_function") }
    };
    Ok(TreeAttrs {
        nodes_treeids: ints("nodes_treeids"),
        nodes_nodeids: ints("nodes_nodeids"),
        nodes_featureids: ints("nodes_featureids"),
        nodes_values: reals("nodes_values")?,
        nodes_modes: attr("nodes_modes")
            .map(|a| a.strings.iter().map(|s| String::from_utf8_lossy(s).into_owned()).collect())
            .unwrap_or_default(),
        nodes_truenodeids: ints("nodes_truenodeids"),
        nodes_falsenodeids: ints("nodes_falsenodeids"),
        nodes_missing_value_tracks_true: ints("nodes_missing_value_tracks_true"),
        leaf_treeids: ints(&format!("{leaf}_treeids")),
        leaf_nodeids: ints(&format!("{leaf}_nodeids")),
        leaf_ids: ints(&format!("{leaf}_ids")),
        leaf_weights: reals(&format!("{leaf}_weights"))?,
        base_values: reals("base_values")?,
        post_transform: string("post_transform"),
        kind,
    })
}

/// A float or double tensor's values.
fn tensor_reals(t: &pb::TensorProto) -> Result<Vec<f64>, Unsupported> {
    match i64::from(t.data_type) {
        d if d == i64::from(ONNX_FLOAT) => Ok(if t.raw_data.is_empty() {
            t.float_data.iter().map(|f| f64::from(*f)).collect()
        } else {
            t.raw_data
                .chunks_exact(4)
                .map(|b| f64::from(f32::from_le_bytes([b[0], b[1], b[2], b[3]])))
                .collect()
        }),
        ONNX_DOUBLE => Ok(if t.raw_data.is_empty() {
            t.double_data.clone()
        } else {
            t.raw_data
                .chunks_exact(8)
                .map(|b| f64::from_le_bytes(b.try_into().expect("eight bytes")))
                .collect()
        }),
        other => Err(Unsupported::Malformed(format!("a tree attribute tensor of element type {other}"))),
    }
}
