"""scikit-learn beside nudge's propensity model on the same simulated checkouts.

The bench binary writes the examples (the abandonment features, the label, whether the row is in the
time-based holdout):

    cargo bench -p nudge-decide --bench decide -- --only propensity --csv /tmp/propensity.csv
    python3 crates/decide/benches/propensity_reference.py /tmp/propensity.csv

This fits LogisticRegression (standardised features, C=1, lbfgs) and HistGradientBoostingClassifier
(defaults) on the training rows, and prints each one's holdout AUC and fit time (median of 3).
"""

import sys
import time

import numpy as np
from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

data = np.loadtxt(sys.argv[1], delimiter=",", skiprows=1)
x, y, holdout = data[:, :-2], data[:, -2].astype(int), data[:, -1] == 1
xt, yt, xh, yh = x[~holdout], y[~holdout], x[holdout], y[holdout]
print(f"{len(yt)} training rows, {len(yh)} holdout rows, {x.shape[1]} features")

models = {
    "LogisticRegression": lambda: make_pipeline(StandardScaler(), LogisticRegression(C=1.0, max_iter=1000)),
    "HistGradientBoosting": lambda: HistGradientBoostingClassifier(random_state=0),
}
for name, make in models.items():
    times = []
    for _ in range(3):
        m = make()
        t = time.perf_counter()
        m.fit(xt, yt)
        times.append(time.perf_counter() - t)
    auc = roc_auc_score(yh, m.predict_proba(xh)[:, 1])
    print(f"{name:<22} holdout AUC {auc:.4}  fit {sorted(times)[1]:.3f} s (min {min(times):.3f}, max {max(times):.3f})")
