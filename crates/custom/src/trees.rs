//! A native evaluator for ONNX-ML tree ensembles (`TreeEnsembleClassifier`, `TreeEnsembleRegressor`).
//!
//! Gradient-boosted trees and random forests exported from scikit-learn, XGBoost or LightGBM are one
//! ensemble operator whose attributes list every node. Walking them directly costs well under a
//! microsecond per tree walk, where a general graph runtime spends most of a run on bookkeeping; it also
//! covers `TreeEnsembleRegressor`, which tract does not implement. The ONNX runner ([`crate::onnx`])
//! uses this evaluator when a graph is one ensemble (plus `Identity`/`Cast` on its outputs) in a layout
//! listed below, and tract for every other graph.
//!
//! This module is pure: it takes the operator's attributes as plain vectors ([`TreeAttrs`]) and never
//! reads a file.
//!
//! Semantics (the ONNX-ML operator definitions):
//! - Each tree is walked from its root (the one node of the tree no other node points to). A branch
//!   compares feature `nodes_featureids[i]` with `nodes_values[i]` by its mode (`BRANCH_LEQ`, `BRANCH_LT`,
//!   `BRANCH_GTE`, `BRANCH_GT`, `BRANCH_EQ`, `BRANCH_NEQ`) and goes to `nodes_truenodeids[i]` when the
//!   comparison holds, else to `nodes_falsenodeids[i]`; a missing (NaN) feature goes to the true branch
//!   when `nodes_missing_value_tracks_true[i]` is 1, else to the false branch.
//! - A leaf adds each of its weights (`class_weights` / `target_weights`) to its column
//!   (`class_ids` / `target_ids`). Classifiers sum over trees; regressors aggregate by
//!   `aggregate_function` (SUM, AVERAGE, MIN, MAX). `base_values`, when given, are added per column.
//! - `post_transform`: NONE, LOGISTIC (each column), SOFTMAX, SOFTMAX_ZERO (zeros stay zero).
//! - The binary classifier layout (two class labels, every leaf weight in one column, as scikit-learn's
//!   gradient boosting, XGBoost and LightGBM export it) is one score `s` (plus the first base value) for the
//!   second label: with LOGISTIC the probabilities are `[1 - σ(s), σ(s)]`. That layout with another
//!   transform is not evaluated here (tract is used).
//! - The label is the class label of the largest output column (the first on a tie).

/// A tree ensemble operator's attributes, as read from the file (floats widened to f64).
#[derive(Debug, Clone, Default)]
pub struct TreeAttrs {
    pub nodes_treeids: Vec<i64>,
    pub nodes_nodeids: Vec<i64>,
    pub nodes_featureids: Vec<i64>,
    pub nodes_values: Vec<f64>,
    pub nodes_modes: Vec<String>,
    pub nodes_truenodeids: Vec<i64>,
    pub nodes_falsenodeids: Vec<i64>,
    /// Empty means all 0.
    pub nodes_missing_value_tracks_true: Vec<i64>,
    /// The leaves' entries: `class_treeids`/`target_treeids`, `..._nodeids`, `..._ids`, `..._weights`.
    pub leaf_treeids: Vec<i64>,
    pub leaf_nodeids: Vec<i64>,
    pub leaf_ids: Vec<i64>,
    pub leaf_weights: Vec<f64>,
    pub base_values: Vec<f64>,
    /// `NONE` when absent.
    pub post_transform: String,
    /// What the operator predicts.
    pub kind: Kind,
}

/// Classifier or regressor, with what each needs beyond the node lists.
#[derive(Debug, Clone)]
pub enum Kind {
    /// `classlabels_int64s` (string labels are reported as their index).
    Classifier { labels: Vec<i64> },
    /// `n_targets` and `aggregate_function` (`SUM` when absent).
    Regressor { n_targets: usize, aggregate: String },
}

impl Default for Kind {
    fn default() -> Self {
        Kind::Regressor { n_targets: 1, aggregate: "SUM".into() }
    }
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Leq,
    Lt,
    Gte,
    Gt,
    Eq,
    Neq,
    Leaf,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Post {
    None,
    Logistic,
    Softmax,
    SoftmaxZero,
}

#[derive(Debug, Clone, Copy, PartialEq)]
enum Aggregate {
    Sum,
    Average,
    Min,
    Max,
}

/// One node, with its children as indices into the ensemble's node list.
#[derive(Debug, Clone, Copy)]
struct Node {
    mode: Mode,
    missing_true: bool,
    feature: u32,
    threshold: f64,
    yes: u32,
    no: u32,
    /// This leaf's weights: `weights[leaf.0..leaf.1]`.
    leaf: (u32, u32),
}

/// What a layout the evaluator does not take is (the caller then uses tract).
#[derive(Debug, Clone, PartialEq)]
pub enum Unsupported {
    /// The attributes are inconsistent: a broken model (a config error, not a reason to try tract).
    Malformed(String),
    /// A valid layout this evaluator does not implement.
    Layout(String),
}

/// A checked, flattened tree ensemble.
#[derive(Debug, Clone)]
pub struct TreeEnsemble {
    nodes: Vec<Node>,
    roots: Vec<u32>,
    weights: Vec<(u32, f64)>,
    /// Output columns (classes or targets).
    columns: usize,
    base: Vec<f64>,
    post: Post,
    aggregate: Aggregate,
    /// Binary classifier with every weight in one column (see the module text).
    binary_single: bool,
    labels: Vec<i64>,
    features: usize,
}

fn malformed(msg: impl Into<String>) -> Unsupported {
    Unsupported::Malformed(msg.into())
}

impl TreeEnsemble {
    /// Checks and flattens `a`. `width` is the number of features per row the graph is fed.
    pub fn new(a: &TreeAttrs, width: usize) -> Result<TreeEnsemble, Unsupported> {
        let n = a.nodes_nodeids.len();
        if n == 0 {
            return Err(malformed("the ensemble has no nodes"));
        }
        for (name, len) in [
            ("nodes_treeids", a.nodes_treeids.len()),
            ("nodes_featureids", a.nodes_featureids.len()),
            ("nodes_values", a.nodes_values.len()),
            ("nodes_modes", a.nodes_modes.len()),
            ("nodes_truenodeids", a.nodes_truenodeids.len()),
            ("nodes_falsenodeids", a.nodes_falsenodeids.len()),
        ] {
            if len != n {
                return Err(malformed(format!("{name} has {len} entries; nodes_nodeids has {n}")));
            }
        }
        if !a.nodes_missing_value_tracks_true.is_empty() && a.nodes_missing_value_tracks_true.len() != n {
            return Err(malformed("nodes_missing_value_tracks_true does not have one entry per node"));
        }
        let l = a.leaf_nodeids.len();
        if a.leaf_treeids.len() != l || a.leaf_ids.len() != l || a.leaf_weights.len() != l {
            return Err(malformed(
                "the leaf weight lists (tree ids, node ids, columns, weights) differ in length",
            ));
        }
        let post = match a.post_transform.as_str() {
            "" | "NONE" => Post::None,
            "LOGISTIC" => Post::Logistic,
            "SOFTMAX" => Post::Softmax,
            "SOFTMAX_ZERO" => Post::SoftmaxZero,
            other => return Err(Unsupported::Layout(format!("post_transform {other}"))),
        };
        let (columns, aggregate, labels) = match &a.kind {
            Kind::Classifier { labels } => {
                if labels.is_empty() {
                    return Err(Unsupported::Layout("a classifier without integer class labels".into()));
                }
                (labels.len(), Aggregate::Sum, labels.clone())
            }
            Kind::Regressor { n_targets, aggregate } => {
                let agg = match aggregate.as_str() {
                    "" | "SUM" => Aggregate::Sum,
                    "AVERAGE" => Aggregate::Average,
                    "MIN" => Aggregate::Min,
                    "MAX" => Aggregate::Max,
                    other => return Err(malformed(format!("aggregate_function {other}"))),
                };
                ((*n_targets).max(1), agg, Vec::new())
            }
        };
        // Index nodes by (tree, node id).
        let mut index = std::collections::HashMap::with_capacity(n);
        for i in 0..n {
            if index.insert((a.nodes_treeids[i], a.nodes_nodeids[i]), i as u32).is_some() {
                return Err(malformed(format!(
                    "node {} of tree {} is listed twice",
                    a.nodes_nodeids[i], a.nodes_treeids[i]
                )));
            }
        }
        let mut nodes = Vec::with_capacity(n);
        let mut referenced = vec![false; n];
        for i in 0..n {
            let mode = match a.nodes_modes[i].as_str() {
                "BRANCH_LEQ" => Mode::Leq,
                "BRANCH_LT" => Mode::Lt,
                "BRANCH_GTE" => Mode::Gte,
                "BRANCH_GT" => Mode::Gt,
                "BRANCH_EQ" => Mode::Eq,
                "BRANCH_NEQ" => Mode::Neq,
                "LEAF" => Mode::Leaf,
                other => return Err(malformed(format!("node mode {other}"))),
            };
            let tree = a.nodes_treeids[i];
            let (mut yes, mut no, mut feature) = (0u32, 0u32, 0u32);
            if mode != Mode::Leaf {
                let child = |id: i64, which: &str| {
                    index.get(&(tree, id)).copied().ok_or_else(|| {
                        malformed(format!(
                            "node {} of tree {tree} points ({which}) to node {id}, which the tree lacks",
                            a.nodes_nodeids[i]
                        ))
                    })
                };
                yes = child(a.nodes_truenodeids[i], "true")?;
                no = child(a.nodes_falsenodeids[i], "false")?;
                referenced[yes as usize] = true;
                referenced[no as usize] = true;
                let f = a.nodes_featureids[i];
                if f < 0 || f as usize >= width {
                    return Err(malformed(format!(
                        "node {} of tree {tree} reads feature {f}; the input has {width}",
                        a.nodes_nodeids[i]
                    )));
                }
                feature = f as u32;
            }
            let missing_true = a.nodes_missing_value_tracks_true.get(i).is_some_and(|m| *m != 0);
            nodes.push(Node {
                mode,
                missing_true,
                feature,
                threshold: a.nodes_values[i],
                yes,
                no,
                leaf: (0, 0),
            });
        }
        // Leaf weights, grouped per leaf in the order they are listed.
        let mut per_leaf: Vec<Vec<(u32, f64)>> = vec![Vec::new(); n];
        let mut used_columns = std::collections::BTreeSet::new();
        for j in 0..l {
            let Some(&ix) = index.get(&(a.leaf_treeids[j], a.leaf_nodeids[j])) else {
                return Err(malformed(format!(
                    "a weight is given for node {} of tree {}, which does not exist",
                    a.leaf_nodeids[j], a.leaf_treeids[j]
                )));
            };
            let c = a.leaf_ids[j];
            if c < 0 || c as usize >= columns {
                return Err(malformed(format!("a weight is given for column {c}; the model has {columns}")));
            }
            used_columns.insert(c);
            per_leaf[ix as usize].push((c as u32, a.leaf_weights[j]));
        }
        let mut weights = Vec::with_capacity(l);
        for (i, w) in per_leaf.into_iter().enumerate() {
            let start = weights.len() as u32;
            weights.extend(w);
            nodes[i].leaf = (start, weights.len() as u32);
        }
        // Roots: per tree, the node nobody points to, in order of first appearance.
        let mut roots = Vec::new();
        let mut seen_trees = Vec::new();
        for i in 0..n {
            let tree = a.nodes_treeids[i];
            if seen_trees.contains(&tree) {
                continue;
            }
            seen_trees.push(tree);
            let candidates: Vec<usize> =
                (0..n).filter(|&k| a.nodes_treeids[k] == tree && !referenced[k]).collect();
            match candidates.as_slice() {
                [r] => roots.push(*r as u32),
                [] => return Err(malformed(format!("tree {tree} has no root (it has a cycle)"))),
                _ => return Err(malformed(format!("tree {tree} has {} roots", candidates.len()))),
            }
        }
        // A cycle would make a walk loop forever: in trees every node is reached once, from one root.
        let mut reached = vec![false; n];
        for &r in &roots {
            let mut stack = vec![r];
            while let Some(ix) = stack.pop() {
                if std::mem::replace(&mut reached[ix as usize], true) {
                    return Err(malformed(
                        "a node is reached twice: the trees have a cycle or a shared node",
                    ));
                }
                let node = nodes[ix as usize];
                if node.mode != Mode::Leaf {
                    stack.push(node.yes);
                    stack.push(node.no);
                }
            }
        }
        if let Some(i) = reached.iter().position(|r| !r) {
            return Err(malformed(format!(
                "node {} of tree {} cannot be reached from its tree's root",
                a.nodes_nodeids[i], a.nodes_treeids[i]
            )));
        }
        let binary_single =
            matches!(a.kind, Kind::Classifier { .. }) && columns == 2 && used_columns.len() <= 1;
        if binary_single && post != Post::Logistic {
            return Err(Unsupported::Layout(format!(
                "a binary classifier with one score column and post_transform {}",
                a.post_transform
            )));
        }
        if !a.base_values.is_empty() && !binary_single && a.base_values.len() != columns {
            return Err(malformed(format!(
                "base_values has {} entries; the model has {columns} columns",
                a.base_values.len()
            )));
        }
        let features = width;
        Ok(TreeEnsemble {
            nodes,
            roots,
            weights,
            columns,
            base: a.base_values.clone(),
            post,
            aggregate,
            binary_single,
            labels,
            features,
        })
    }

    /// The number of output columns (classes or targets).
    pub fn columns(&self) -> usize {
        self.columns
    }

    /// Whether this is a classifier (it has a label output).
    pub fn is_classifier(&self) -> bool {
        !self.labels.is_empty()
    }

    fn leaf_of(&self, root: u32, x: &[f32]) -> &Node {
        let mut node = &self.nodes[root as usize];
        loop {
            let next = match node.mode {
                Mode::Leaf => return node,
                mode => {
                    let v = x[node.feature as usize];
                    let holds = if v.is_nan() {
                        node.missing_true
                    } else {
                        let v = f64::from(v);
                        match mode {
                            Mode::Leq => v <= node.threshold,
                            Mode::Lt => v < node.threshold,
                            Mode::Gte => v >= node.threshold,
                            Mode::Gt => v > node.threshold,
                            Mode::Eq => v == node.threshold,
                            Mode::Neq => v != node.threshold,
                            Mode::Leaf => unreachable!(),
                        }
                    };
                    if holds { node.yes } else { node.no }
                }
            };
            node = &self.nodes[next as usize];
        }
    }

    /// Evaluates one row of features: the label (classifiers; `None` for regressors) and the output
    /// columns (probabilities or scores after the transform, rounded to f32 as the operator's float
    /// output is).
    pub fn eval(&self, x: &[f32]) -> (Option<i64>, Vec<f64>) {
        assert_eq!(x.len(), self.features, "one row of {} features", self.features);
        let mut acc = vec![
            match self.aggregate {
                Aggregate::Min => f64::INFINITY,
                Aggregate::Max => f64::NEG_INFINITY,
                _ => 0.0,
            };
            self.columns
        ];
        let mut hit = vec![false; self.columns];
        for &root in &self.roots {
            let leaf = self.leaf_of(root, x);
            for &(c, w) in &self.weights[leaf.leaf.0 as usize..leaf.leaf.1 as usize] {
                let c = c as usize;
                hit[c] = true;
                match self.aggregate {
                    Aggregate::Sum | Aggregate::Average => acc[c] += w,
                    Aggregate::Min => acc[c] = acc[c].min(w),
                    Aggregate::Max => acc[c] = acc[c].max(w),
                }
            }
        }
        for (c, v) in acc.iter_mut().enumerate() {
            if !hit[c] && matches!(self.aggregate, Aggregate::Min | Aggregate::Max) {
                *v = 0.0;
            }
            if self.aggregate == Aggregate::Average {
                *v /= self.roots.len() as f64;
            }
        }
        let mut out = if self.binary_single {
            let s = acc.iter().sum::<f64>() + self.base.first().copied().unwrap_or(0.0);
            let p = sigmoid(s);
            vec![1.0 - p, p]
        } else {
            for (v, b) in acc.iter_mut().zip(&self.base) {
                *v += b;
            }
            match self.post {
                Post::None => {}
                Post::Logistic => acc.iter_mut().for_each(|v| *v = sigmoid(*v)),
                Post::Softmax => softmax(&mut acc, false),
                Post::SoftmaxZero => softmax(&mut acc, true),
            }
            acc
        };
        for v in &mut out {
            *v = f64::from(*v as f32);
        }
        let label = (!self.labels.is_empty()).then(|| {
            let mut best = 0;
            for (i, v) in out.iter().enumerate() {
                if *v > out[best] {
                    best = i;
                }
            }
            self.labels[best]
        });
        (label, out)
    }
}

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

fn softmax(v: &mut [f64], keep_zeros: bool) {
    let max = v.iter().filter(|x| !keep_zeros || **x != 0.0).fold(f64::NEG_INFINITY, |m, x| m.max(*x));
    let mut sum = 0.0;
    for x in v.iter_mut() {
        if keep_zeros && *x == 0.0 {
            continue;
        }
        *x = (*x - max).exp();
        sum += *x;
    }
    if sum > 0.0 {
        v.iter_mut().for_each(|x| *x /= sum);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two stumps on feature 0 and 1, regression, SUM.
    fn stumps(aggregate: &str) -> TreeAttrs {
        TreeAttrs {
            nodes_treeids: vec![0, 0, 0, 1, 1, 1],
            nodes_nodeids: vec![0, 1, 2, 0, 1, 2],
            nodes_featureids: vec![0, 0, 0, 1, 0, 0],
            nodes_values: vec![1.5, 0.0, 0.0, 10.0, 0.0, 0.0],
            nodes_modes: ["BRANCH_LEQ", "LEAF", "LEAF", "BRANCH_LT", "LEAF", "LEAF"]
                .map(String::from)
                .to_vec(),
            nodes_truenodeids: vec![1, 0, 0, 1, 0, 0],
            nodes_falsenodeids: vec![2, 0, 0, 2, 0, 0],
            nodes_missing_value_tracks_true: vec![1, 0, 0, 0, 0, 0],
            leaf_treeids: vec![0, 0, 1, 1],
            leaf_nodeids: vec![1, 2, 1, 2],
            leaf_ids: vec![0, 0, 0, 0],
            leaf_weights: vec![1.0, 2.0, 10.0, 20.0],
            base_values: vec![0.5],
            post_transform: "NONE".into(),
            kind: Kind::Regressor { n_targets: 1, aggregate: aggregate.into() },
        }
    }

    #[test]
    fn regressor_walks_each_mode_and_aggregates() {
        let t = TreeEnsemble::new(&stumps("SUM"), 2).unwrap();
        assert_eq!(t.eval(&[1.5, 9.0]), (None, vec![11.5]));
        assert_eq!(t.eval(&[1.6, 10.0]), (None, vec![22.5]));
        // NaN on feature 0 goes true (tracks true); on feature 1 goes false.
        assert_eq!(t.eval(&[f32::NAN, f32::NAN]), (None, vec![21.5]));
        let avg = TreeEnsemble::new(&stumps("AVERAGE"), 2).unwrap();
        assert_eq!(avg.eval(&[1.6, 10.0]).1, vec![11.5]);
        let max = TreeEnsemble::new(&stumps("MAX"), 2).unwrap();
        assert_eq!(max.eval(&[1.6, 10.0]).1, vec![20.5]);
        let min = TreeEnsemble::new(&stumps("MIN"), 2).unwrap();
        assert_eq!(min.eval(&[1.6, 10.0]).1, vec![2.5]);
    }

    #[test]
    fn binary_single_column_is_the_positive_class_after_the_logistic() {
        let mut a = stumps("SUM");
        a.kind = Kind::Classifier { labels: vec![0, 1] };
        a.post_transform = "LOGISTIC".into();
        a.leaf_weights = vec![-1.0, 1.0, -0.5, 0.5];
        a.base_values = vec![0.25, 0.0];
        let t = TreeEnsemble::new(&a, 2).unwrap();
        let (label, p) = t.eval(&[2.0, 20.0]);
        let s = 1.0f64 + 0.5 + 0.25;
        let want = 1.0 / (1.0 + (-s).exp());
        assert!((p[1] - want).abs() < 1e-6 && (p[0] + p[1] - 1.0).abs() < 1e-6);
        assert_eq!(label, Some(1));
        assert_eq!(t.eval(&[0.0, 0.0]).0, Some(0));
        a.post_transform = "NONE".into();
        assert!(matches!(TreeEnsemble::new(&a, 2), Err(Unsupported::Layout(_))));
    }

    #[test]
    fn multiclass_softmax_and_labels() {
        let mut a = stumps("SUM");
        a.kind = Kind::Classifier { labels: vec![3, 5, 7] };
        a.post_transform = "SOFTMAX".into();
        a.leaf_ids = vec![0, 1, 2, 1];
        a.leaf_weights = vec![1.0, 1.0, 1.0, 2.0];
        a.base_values = vec![];
        let t = TreeEnsemble::new(&a, 2).unwrap();
        let (label, p) = t.eval(&[2.0, 20.0]);
        // Column 1 gets 1 + 2 = 3, the others 0.
        let e = 3f64.exp();
        assert!((p[1] - e / (e + 2.0)).abs() < 1e-6);
        assert_eq!(label, Some(5));
    }

    #[test]
    fn broken_attributes_are_malformed() {
        let mut a = stumps("SUM");
        a.nodes_truenodeids[0] = 9;
        assert!(matches!(TreeEnsemble::new(&a, 2), Err(Unsupported::Malformed(m)) if m.contains("lacks")));
        let mut a = stumps("SUM");
        a.nodes_featureids[3] = 4;
        assert!(
            matches!(TreeEnsemble::new(&a, 2), Err(Unsupported::Malformed(m)) if m.contains("feature 4"))
        );
        let mut a = stumps("SUM");
        a.nodes_truenodeids[0] = 0;
        assert!(matches!(TreeEnsemble::new(&a, 2), Err(Unsupported::Malformed(_))));
        let mut a = stumps("SUM");
        a.leaf_ids[0] = 3;
        assert!(matches!(TreeEnsemble::new(&a, 2), Err(Unsupported::Malformed(m)) if m.contains("column 3")));
        let mut a = stumps("SUM");
        a.nodes_values.pop();
        assert!(
            matches!(TreeEnsemble::new(&a, 2), Err(Unsupported::Malformed(m)) if m.contains("nodes_values"))
        );
    }
}
