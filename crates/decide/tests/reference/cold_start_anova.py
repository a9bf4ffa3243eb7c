"""Reference values for the cold-start model's one-fact shrinkage (tests/cold_start.rs).

The one-way random-effects method-of-moments (ANOVA) estimator for unbalanced groups, written from the
textbook formulas with numpy, on a fixed small data set:
  MSW = sum_l sum_i (y_li - ybar_l)^2 / (N - L)
  MSB = sum_l n_l (ybar_l - ybar)^2 / (L - 1)
  n0  = (N - sum_l n_l^2 / N) / (L - 1)
  tau2 = max(0, (MSB - MSW) / n0),  k = MSW / tau2
  effect_l = n_l / (n_l + k) * (ybar_l - ybar)
Run: python3 cold_start_anova.py  (prints the JSON committed as cold_start_anova.json)
"""
import json
import numpy as np

groups = {
    "google": [0.0, 35.0, 80.0, 12.5, 0.0, 60.0],
    "newsletter": [120.0, 95.0, 210.0, 0.0, 150.0, 88.0, 175.0, 140.0],
    "tiktok": [0.0, 0.0, 22.0],
    "direct": [45.0, 70.0, 0.0, 110.0, 65.0],
}
ys = np.concatenate([np.array(v) for v in groups.values()])
N, L = len(ys), len(groups)
grand = ys.mean()
n = {k: len(v) for k, v in groups.items()}
means = {k: np.mean(v) for k, v in groups.items()}
msw = sum(((np.array(v) - np.mean(v)) ** 2).sum() for v in groups.values()) / (N - L)
msb = sum(n[k] * (means[k] - grand) ** 2 for k in groups) / (L - 1)
n0 = (N - sum(c * c for c in n.values()) / N) / (L - 1)
tau2 = max(0.0, (msb - msw) / n0)
k = msw / tau2
print(json.dumps({
    "groups": groups,
    "population_mean": grand,
    "within_variance": msw,
    "between_variance": tau2,
    "strength": k,
    "effects": {g: n[g] / (n[g] + k) * (means[g] - grand) for g in groups},
}, indent=1))
