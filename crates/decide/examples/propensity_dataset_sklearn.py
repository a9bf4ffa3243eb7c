"""scikit-learn beside the `propensity_dataset` example, on the same rows, features and split.

The example writes its design matrix (the mapped features, the label, whether the row is held out):

    cargo run --release -p nudge-decide --example propensity_dataset -- \
        --csv online_shoppers_intention.csv --design-out /tmp/shoppers_design.csv
    python3 crates/decide/examples/propensity_dataset_sklearn.py /tmp/shoppers_design.csv [C]

This fits LogisticRegression (standardised features, L2, C = 1 unless given, lbfgs) on the training rows,
and prints its holdout AUC, PR-AUC (average precision), Brier score, log loss and ECE (ten equal-width bins,
binned as calibration_curve bins), then the same for HistGradientBoostingClassifier (defaults) for
context. The metrics come from scikit-learn's own functions, so they also check the example's.
"""

import sys
import time

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, brier_score_loss, log_loss, roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler


def ece(y, p, bins=10):
    edges = np.linspace(0.0, 1.0, bins + 1)
    ids = np.searchsorted(edges[1:-1], p)
    total = 0.0
    for b in range(bins):
        sel = ids == b
        if sel.any():
            total += abs(p[sel].mean() - y[sel].mean()) * sel.sum() / len(y)
    return total


data = np.loadtxt(sys.argv[1], delimiter=",", skiprows=1)
c = float(sys.argv[2]) if len(sys.argv) > 2 else 1.0
x, y, holdout = data[:, :-2], data[:, -2].astype(int), data[:, -1] == 1
xt, yt, xh, yh = x[~holdout], y[~holdout], x[holdout], y[holdout]
print(f"{len(yt)} training rows, {len(yh)} holdout rows, {x.shape[1]} features, C = {c}")

models = {
    "LogisticRegression": lambda: make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=5000)),
    "HistGradientBoosting": lambda: HistGradientBoostingClassifier(random_state=0),
}
print(f"{'holdout':<22} {'AUC':>7} {'PR-AUC':>7} {'Brier':>7} {'log loss':>8} {'ECE':>7} {'fit':>9}")
for name, make in models.items():
    m = make()
    t = time.perf_counter()
    m.fit(xt, yt)
    elapsed = time.perf_counter() - t
    p = m.predict_proba(xh)[:, 1]
    print(
        f"{name:<22} {roc_auc_score(yh, p):>7.4f} {average_precision_score(yh, p):>7.4f} "
        f"{brier_score_loss(yh, p):>7.4f} {log_loss(yh, p):>8.4f} {ece(yh, p):>7.4f} {elapsed * 1e3:>7.1f} ms"
    )
