"""Builds the test models of nudge-custom and their parity fixture.

Trains, on a seeded synthetic dataset of customer features, a scikit-learn LogisticRegression and a small
GradientBoostingClassifier (20 trees, depth 3), exports both to ONNX with skl2onnx (`zipmap=False`, so the
probabilities are a plain [N, 2] tensor), and writes the source models' `predict_proba` on held-out inputs
to `parity.json`. It also trains a GradientBoostingRegressor (20 trees, depth 3) on a spend target and
writes its `predict` (the ONNX TreeEnsembleRegressor operator, which only the native tree evaluator runs).
The Rust tests load the .onnx files and compare to 1e-5.

The five features, in order, are what the README's example mapping feeds:
  customer.orders_count, customer.total_spent, customer.days_since_last_order (0 when none),
  scores.churn_risk, scores.p_alive.
The label is "did not buy again" (churned), drawn from a logistic function of those features.

Run: python3 make_models.py (needs scikit-learn, skl2onnx, onnx, numpy).
"""
import json
import os

import numpy as np
from skl2onnx import to_onnx
from sklearn.ensemble import GradientBoostingClassifier, GradientBoostingRegressor
from sklearn.linear_model import LogisticRegression

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(20261205)


def synthetic(n):
    orders = rng.poisson(2.5, n).astype(np.float64)
    spent = orders * rng.gamma(4.0, 20.0, n)
    days = rng.exponential(80.0, n)
    churn_risk = np.clip(100 / (1 + np.exp(-(days - 90) / 30)) + rng.normal(0, 5, n), 0, 100)
    p_alive = np.clip(1 - churn_risk / 100 + rng.normal(0, 0.05, n), 0, 1)
    x = np.column_stack([orders, spent, days, churn_risk, p_alive]).astype(np.float32)
    logit = -1.0 - 0.4 * orders + 0.02 * days + 0.015 * churn_risk - 1.5 * p_alive
    y = (rng.random(n) < 1 / (1 + np.exp(-logit))).astype(np.int64)
    return x, y


x_train, y_train = synthetic(4000)
x_test, _ = synthetic(50)

models = {
    "logistic": LogisticRegression(max_iter=1000).fit(x_train, y_train),
    "gbdt": GradientBoostingClassifier(n_estimators=20, max_depth=3, random_state=7).fit(x_train, y_train),
}

fixture = {"features": ["customer.orders_count", "customer.total_spent", "customer.days_since_last_order",
                        "scores.churn_risk", "scores.p_alive"],
           "inputs": x_test.tolist(), "models": {}}


def tract_compatible(onx):
    """skl2onnx writes a binary tree classifier's `base_values` with one value (the score of class 1 before
    the logistic); tract wants one per class label. In the binary layout it adds the first value to the
    single score and does not read the second, so [b] becomes [b, 0]: the same model."""
    for node in onx.graph.node:
        if node.op_type != "TreeEnsembleClassifier":
            continue
        attrs = {a.name: a for a in node.attribute}
        labels = attrs.get("classlabels_int64s")
        base = attrs.get("base_values")
        if labels is not None and base is not None and len(labels.ints) == 2 and len(base.floats) == 1:
            base.floats.append(0.0)
    return onx


for name, model in models.items():
    onx = to_onnx(model, x_train[:1], options={id(model): {"zipmap": False}}, target_opset={"": 15, "ai.onnx.ml": 3})
    onx = tract_compatible(onx)
    with open(os.path.join(HERE, f"{name}.onnx"), "wb") as f:
        f.write(onx.SerializeToString())
    fixture["models"][name] = {
        "inputs": [{"name": i.name, "shape": [d.dim_value or None for d in i.type.tensor_type.shape.dim]}
                   for i in onx.graph.input],
        "outputs": [o.name for o in onx.graph.output],
        # Computed by scikit-learn in float64 from the float32 inputs.
        "predict_proba": model.predict_proba(x_test.astype(np.float64)).tolist(),
    }

with open(os.path.join(HERE, "parity.json"), "w") as f:
    json.dump(fixture, f, indent=1)
    f.write("\n")
print({k: v["inputs"] for k, v in fixture["models"].items()}, {k: v["outputs"] for k, v in fixture["models"].items()})

# A regressor: next-year spend from the same features (drawn after everything above, so the models above
# do not change).
spend = np.maximum(0, 40 + 25 * x_train[:, 0] + 0.1 * x_train[:, 1] - 0.3 * x_train[:, 2] + rng.normal(0, 10, len(x_train)))
regressor = GradientBoostingRegressor(n_estimators=20, max_depth=3, random_state=7).fit(x_train, spend)
onx = to_onnx(regressor, x_train[:1], target_opset={"": 15, "ai.onnx.ml": 3})
with open(os.path.join(HERE, "gbdt_regressor.onnx"), "wb") as f:
    f.write(onx.SerializeToString())
fixture["models"]["gbdt_regressor"] = {
    "inputs": [{"name": i.name, "shape": [d.dim_value or None for d in i.type.tensor_type.shape.dim]}
               for i in onx.graph.input],
    "outputs": [o.name for o in onx.graph.output],
    "predict": regressor.predict(x_test.astype(np.float64)).tolist(),
}
with open(os.path.join(HERE, "parity.json"), "w") as f:
    json.dump(fixture, f, indent=1)
    f.write("\n")

# A probe for invalid outputs: y = log(x), NaN for x < 0 and -inf for x = 0 (tract keeps both as they are).
from onnx import TensorProto, helper

probe = helper.make_model(
    helper.make_graph(
        [helper.make_node("Log", ["x"], ["y"])],
        "log_probe",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 1])],
    ),
    opset_imports=[helper.make_opsetid("", 15)],
)
probe.ir_version = 8
with open(os.path.join(HERE, "log_probe.onnx"), "wb") as f:
    f.write(probe.SerializeToString())
