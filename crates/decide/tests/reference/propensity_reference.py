"""Reference values for the propensity family's numerics, computed once with scikit-learn.

Writes, next to this script:
- propensity_logistic.csv: a seeded synthetic dataset (5 features on different scales, a binary label);
- propensity_reference.json: scikit-learn's LogisticRegression(lbfgs) coefficients on the standardised
  features for two values of C, and roc_auc_score, average_precision_score, brier_score_loss, log_loss and
  the uniform 10-bin calibration curve (with ECE) of fixed score vectors, some with ties.

Run: python3 propensity_reference.py   (numpy and scikit-learn needed; the tests only read the output)
"""

import json
import os

import numpy as np
from sklearn.calibration import calibration_curve
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score
from sklearn.preprocessing import StandardScaler

HERE = os.path.dirname(os.path.abspath(__file__))
rng = np.random.default_rng(20261204)

# The logistic dataset: features on different scales, one nearly useless, one binary.
n = 3000
x = np.column_stack(
    [
        rng.normal(60.0, 25.0, n),  # a money-like value
        rng.poisson(2.0, n).astype(float),  # a count
        rng.uniform(0.0, 1.0, n),  # a rate
        (rng.uniform(size=n) < 0.3).astype(float),  # a flag
        rng.normal(0.0, 1.0, n),  # noise
    ]
)
eta = -0.4 + 0.02 * (x[:, 0] - 60.0) - 0.5 * x[:, 1] + 1.5 * x[:, 2] - 0.8 * x[:, 3]
y = (rng.uniform(size=n) < 1.0 / (1.0 + np.exp(-eta))).astype(int)
with open(os.path.join(HERE, "propensity_logistic.csv"), "w") as f:
    f.write("x0,x1,x2,x3,x4,y\n")
    for row, label in zip(x, y):
        f.write(",".join(repr(float(v)) for v in row) + f",{label}\n")

z = StandardScaler().fit_transform(x)
fits = []
for c in (1.0, 0.01):
    m = LogisticRegression(C=c, solver="lbfgs", tol=1e-12, max_iter=100000).fit(z, y)
    fits.append({"c": c, "coef": m.coef_[0].tolist(), "intercept": float(m.intercept_[0])})

# Metric cases: a continuous score, a score with heavy ties, a small hand-made case.
labels_a = (rng.uniform(size=500) < 0.3).astype(int)
scores_a = np.clip(0.3 + 0.25 * (labels_a - 0.3) + rng.normal(0, 0.2, 500), 0.0, 1.0)
labels_b = (rng.uniform(size=400) < 0.5).astype(int)
scores_b = np.round(np.clip(0.5 + 0.2 * (labels_b - 0.5) + rng.normal(0, 0.25, 400), 0, 1), 1)
labels_c = np.array([0, 0, 1, 1, 0, 1, 0, 1])
scores_c = np.array([0.1, 0.4, 0.35, 0.8, 0.4, 0.4, 0.95, 1.0])

cases = []
for name, yl, s in (("continuous", labels_a, scores_a), ("ties", labels_b, scores_b), ("small", labels_c, scores_c)):
    prob_true, prob_pred = calibration_curve(yl, s, n_bins=10, strategy="uniform")
    bins = np.searchsorted(np.linspace(0.0, 1.0, 11)[1:-1], s)  # as calibration_curve bins
    counts = np.bincount(bins, minlength=10)
    nonempty = counts[counts > 0]
    ece = float(np.sum(nonempty / len(s) * np.abs(prob_true - prob_pred)))
    cases.append(
        {
            "name": name,
            "labels": yl.tolist(),
            "scores": s.tolist(),
            "roc_auc": float(roc_auc_score(yl, s)),
            "average_precision": float(average_precision_score(yl, s)),
            "brier": float(brier_score_loss(yl, s)),
            "log_loss": float(log_loss(yl, s)),
            "calibration_counts": nonempty.tolist(),
            "calibration_observed": prob_true.tolist(),
            "calibration_predicted": prob_pred.tolist(),
            "ece": ece,
        }
    )

with open(os.path.join(HERE, "propensity_reference.json"), "w") as f:
    json.dump({"logistic": fits, "metrics": cases}, f, indent=1)
print("wrote propensity_logistic.csv and propensity_reference.json")
