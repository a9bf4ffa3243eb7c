"""Reference values for the campaign-analysis numerics (crates/decide/src/uplift.rs).

Run once with numpy, scipy, scikit-learn and statsmodels installed; the output, uplift_reference.json, is
committed and read by crates/decide/tests/uplift.rs (the tests do not need Python):

    python3 uplift_reference.py > uplift_reference.json
"""

import json

import numpy as np
from scipy import stats
from sklearn.metrics import roc_auc_score
from statsmodels.stats.proportion import confint_proportions_2indep, proportion_confint

rng = np.random.default_rng(20261204)


def revenue(n, p_buy, mean_order):
    """Revenue per customer: mostly zeros, a lognormal order value for the buyers."""
    buys = rng.random(n) < p_buy
    values = rng.lognormal(np.log(mean_order), 0.8, n)
    return np.round(np.where(buys, values, 0.0), 2)


welch = []
for name, a, b in [
    ("zero_inflated", revenue(300, 0.18, 60.0), revenue(280, 0.12, 55.0)),
    ("small_unequal", np.round(rng.normal(10.0, 4.0, 12), 3), np.round(rng.normal(7.0, 1.0, 30), 3)),
    ("equal_means", np.round(rng.normal(5.0, 2.0, 50), 3), np.round(rng.normal(5.0, 2.0, 50), 3)),
]:
    res = stats.ttest_ind(a, b, equal_var=False)
    ci = res.confidence_interval(0.95)
    welch.append(
        {
            "name": name,
            "a": a.tolist(),
            "b": b.tolist(),
            "difference": float(a.mean() - b.mean()),
            "low": float(ci.low),
            "high": float(ci.high),
            "df": float(res.df),
        }
    )

auc = []
for name, pos, neg in [
    ("continuous", rng.normal(1.0, 1.0, 40), rng.normal(0.0, 1.0, 60)),
    ("ties", rng.integers(0, 5, 35).astype(float), rng.integers(0, 4, 50).astype(float)),
    ("reversed", rng.normal(-0.5, 1.0, 25), rng.normal(0.0, 2.0, 45)),
]:
    pos, neg = np.round(pos, 4), np.round(neg, 4)
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    x = np.r_[pos, neg]
    pooled = np.sqrt((pos.var(ddof=1) + neg.var(ddof=1)) / 2.0)
    auc.append(
        {
            "name": name,
            "pos": pos.tolist(),
            "neg": neg.tolist(),
            "auc": float(roc_auc_score(y, x)),
            "smd": float((pos.mean() - neg.mean()) / pooled),
        }
    )

proportions = []
for k1, n1, k2, n2 in [(56, 70, 48, 80), (9, 10, 3, 10), (130, 1000, 101, 1000), (0, 25, 2, 30), (7, 7, 5, 9)]:
    w1 = proportion_confint(k1, n1, alpha=0.05, method="wilson")
    w2 = proportion_confint(k2, n2, alpha=0.05, method="wilson")
    d = confint_proportions_2indep(k1, n1, k2, n2, method="newcomb", compare="diff", alpha=0.05)
    proportions.append(
        {
            "k1": k1,
            "n1": n1,
            "k2": k2,
            "n2": n2,
            "wilson1": [float(w1[0]), float(w1[1])],
            "wilson2": [float(w2[0]), float(w2[1])],
            "newcombe": [float(d[0]), float(d[1])],
        }
    )

print(json.dumps({"welch": welch, "auc": auc, "proportions": proportions}, indent=1))
