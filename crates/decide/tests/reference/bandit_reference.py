"""Reference values for the offer bandit's numerics (crates/decide/src/bandit.rs), computed with numpy and
scipy by direct solves: per-arm ridge estimates shrunk toward the pooled estimate, A⁻¹, noise variances, the
posterior mean and sd at query contexts, Thompson win probabilities (by adaptive quadrature), LinUCB scores,
and the IPS / self-normalised IPS value of the greedy policy on uniformly logged outcomes.

Writes bandit_data.csv (the outcomes, arm,x0..x3,reward) and bandit_reference.json beside this file.
Run: python3 bandit_reference.py   (numpy, scipy)
"""

import json
import os

import numpy as np
from scipy import integrate, stats

HERE = os.path.dirname(os.path.abspath(__file__))
LAMBDA, NU0, V, ALPHA = 1.0, 20.0, 0.5, 1.0
D, K, N = 4, 3, 300

rng = np.random.default_rng(20261204)
X = np.column_stack([np.ones(N), rng.uniform(size=N), rng.uniform(size=N), rng.normal(size=N)])
arm = rng.integers(0, K, size=N)
true = np.array([[1.0, 2.0, -1.0, 0.5], [0.5, 3.0, 0.0, -0.5], [2.0, -1.0, 1.0, 0.0]])
reward = np.einsum("ij,ij->i", X, true[arm]) + rng.normal(scale=0.7, size=N)
X = np.round(X, 6)
reward = np.round(reward, 6)

with open(os.path.join(HERE, "bandit_data.csv"), "w") as f:
    f.write("arm,x0,x1,x2,x3,reward\n")
    for a, x, r in zip(arm, X, reward):
        f.write(f"{a},{x[0]:.6f},{x[1]:.6f},{x[2]:.6f},{x[3]:.6f},{r:.6f}\n")

I = np.eye(D)
pool_a = LAMBDA * I + X.T @ X
m = np.linalg.solve(pool_a, X.T @ reward)
pooled_second_moment = float(np.mean(reward**2))

arms = []
for a in range(K):
    Xa, ra = X[arm == a], reward[arm == a]
    A = LAMBDA * I + Xa.T @ Xa
    theta = np.linalg.solve(A, Xa.T @ ra + LAMBDA * m)
    a_inv = np.linalg.inv(A)
    rss = float(np.sum((ra - Xa @ theta) ** 2))
    n = len(ra)
    noise_var = (NU0 * pooled_second_moment + rss) / (NU0 + max(n - D, 0))
    arms.append(dict(n=n, theta=theta.tolist(), a_inv=a_inv.flatten().tolist(), rss=rss, noise_var=noise_var))

queries = [[1.0, 0.2, 0.8, -0.3], [1.0, 0.9, 0.1, 1.2], [1.0, 0.5, 0.5, 0.0]]
out_queries = []
for q in queries:
    q = np.array(q)
    means = [float(q @ np.array(s["theta"])) for s in arms]
    sds = [float(np.sqrt(s["noise_var"] * q @ np.array(s["a_inv"]).reshape(D, D) @ q)) for s in arms]
    win = []
    for a in range(K):
        def f(t, a=a):
            val = stats.norm.pdf(t, means[a], V * sds[a])
            for j in range(K):
                if j != a:
                    val *= stats.norm.cdf(t, means[j], V * sds[j])
            return val
        lo, hi = means[a] - 12 * V * sds[a], means[a] + 12 * V * sds[a]
        win.append(integrate.quad(f, lo, hi, epsabs=1e-12, epsrel=1e-12, limit=200)[0])
    ucb = [means[a] + ALPHA * sds[a] for a in range(K)]
    out_queries.append(dict(x=q.tolist(), mean=means, sd=sds, thompson_win=win, linucb=ucb))

# Off-policy value of the greedy policy on the same outcomes logged as uniform (propensity 1/K).
thetas = np.array([s["theta"] for s in arms])
greedy = np.argmax(X @ thetas.T, axis=1)
w = (greedy == arm) * K
ips_terms = w * reward
ips = float(ips_terms.mean())
ips_se = float(ips_terms.std(ddof=1) / np.sqrt(N))
snips = float(np.sum(w * reward) / np.sum(w))
snips_se = float(np.sqrt(np.sum((w * (reward - snips)) ** 2)) / np.sum(w))

ref = dict(
    lambda_=LAMBDA, v=V, alpha=ALPHA, pooled_mean=m.tolist(), arms=arms, queries=out_queries,
    ope=dict(matched=int(np.sum(greedy == arm)), ips=ips, ips_se=ips_se, snips=snips, snips_se=snips_se),
)
with open(os.path.join(HERE, "bandit_reference.json"), "w") as f:
    json.dump(ref, f, indent=1)
print("wrote", len(reward), "outcomes")
