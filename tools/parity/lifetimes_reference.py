#!/usr/bin/env python3
"""Reference values from the Python library `lifetimes` on the CDNOW summary data.

What it does
    Fits BG/NBD (BetaGeoFitter), MBG/NBD (ModifiedBetaGeoFitter), Pareto/NBD
    (ParetoNBDFitter) and Gamma-Gamma (GammaGammaFitter) with penalizer_coef=0
    on the CDNOW cohort summary (2357 customers, time unit = weeks), then writes
    reference numbers that the Rust parity tests compare against:

        OUT/params.json      fitted parameters, total log-likelihoods (weeks),
                             unconditional expectations, library versions
        OUT/predictions.csv  per-customer predictions, one row per customer in
                             input file order, floats printed with %.17g
        OUT/README.md        meaning of every file / column and the conventions

How to run (from the repository root, in an environment built from
tools/parity/requirements.txt, Python 3.11):

    python tools/parity/lifetimes_reference.py \
        --cdnow DIR --out crates/models/tests/data/lifetimes_cdnow

    DIR must contain cdnow_customers_summary_with_transactions.csv with columns
    ID,x,t_x,T,zbar (x = repeat purchases, t_x = recency in weeks, T = age in
    weeks, zbar = mean value of the repeat purchases, 0 when x = 0).

Library versions used for the committed files
    lifetimes 0.11.3, numpy 1.26.4, scipy 1.11.4, pandas 1.5.3, autograd 1.9.1
    (setuptools < 81 because lifetimes.datasets imports pkg_resources).

The Pareto/NBD fit in lifetimes starts Nelder-Mead from a random point; the
script seeds numpy's global RNG (--seed, default 0) so the output is
reproducible.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
from importlib import metadata

import numpy as np
import pandas as pd
import scipy
from scipy.special import betaln, gammaln, hyp2f1

import lifetimes
from lifetimes import BetaGeoFitter, GammaGammaFitter, ModifiedBetaGeoFitter, ParetoNBDFitter

INPUT_NAME = "cdnow_customers_summary_with_transactions.csv"
EXPECTED_TIMES = (1, 3, 32, 78)
HARDIE_ARGS = (39, 2, 30.43, 38.86)  # t, x, t_x, T  (Hardie's worked example)

PREDICTION_COLUMNS = [
    "ID",
    "frequency",
    "recency",
    "T",
    "monetary_value",
    "bgnbd_p_alive",
    "bgnbd_cond_exp_10",
    "bgnbd_cond_exp_39",
    "bgnbd_prob_0_39",
    "bgnbd_prob_1_39",
    "bgnbd_prob_2_39",
    "mbgnbd_p_alive",
    "mbgnbd_cond_exp_39",
    "pareto_p_alive",
    "pareto_cond_exp_39",
    "gg_cond_exp_spend",
    "clv_bgnbd_12m",
]


# ---------------------------------------------------------------------------
# Independent log-likelihood formulas (data time unit, no rescaling), used only
# to cross-check the values obtained through lifetimes' own functions.
# ---------------------------------------------------------------------------

def ll_bgnbd(params, x, tx, T):
    r, alpha, a, b = params
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    t1 = betaln(a, b + x) - betaln(a, b) + common - (r + x) * np.log(alpha + T)
    xm = np.maximum(x, 1)
    t2 = betaln(a + 1, b + xm - 1) - betaln(a, b) + common - (r + x) * np.log(alpha + tx)
    return np.where(x > 0, np.logaddexp(t1, t2), t1)


def ll_mbgnbd(params, x, tx, T):
    r, alpha, a, b = params
    common = gammaln(r + x) - gammaln(r) + r * np.log(alpha)
    t1 = betaln(a, b + x + 1) - betaln(a, b) + common - (r + x) * np.log(alpha + T)
    t2 = betaln(a + 1, b + x) - betaln(a, b) + common - (r + x) * np.log(alpha + tx)
    return np.logaddexp(t1, t2)


def ll_pareto(params, x, tx, T):
    r, alpha, s, beta = params
    rsx = r + s + x
    if alpha >= beta:
        m, second = alpha, s + 1.0
    else:
        m, second = beta, r + x
    d = abs(alpha - beta)
    a0 = hyp2f1(rsx, second, rsx + 1, d / (m + tx)) / (m + tx) ** rsx - hyp2f1(
        rsx, second, rsx + 1, d / (m + T)
    ) / (m + T) ** rsx
    lead = gammaln(r + x) - gammaln(r) + r * np.log(alpha) + s * np.log(beta)
    inner = 1.0 / ((alpha + T) ** (r + x) * (beta + T) ** s) + s / rsx * a0
    return lead + np.log(inner)


def ll_gamma_gamma(params, x, m):
    p, q, v = params
    px = p * x
    return (
        gammaln(px + q)
        - gammaln(px)
        - gammaln(q)
        + q * np.log(v)
        + (px - 1) * np.log(m)
        + px * np.log(x)
        - (px + q) * np.log(x * m + v)
    )


# ---------------------------------------------------------------------------
# Total log-likelihood through lifetimes' own _negative_log_likelihood,
# evaluated on the unscaled data (scale 1, penalizer 0).
# ---------------------------------------------------------------------------

def total_ll_lifetimes(model, params, cols):
    n = len(cols[0])
    w = np.ones(n)
    if model == "bgnbd":
        return -BetaGeoFitter._negative_log_likelihood(np.log(params), *cols, w, 0.0) * n
    if model == "mbgnbd":
        return -ModifiedBetaGeoFitter._negative_log_likelihood(np.log(params), *cols, w, 0.0) * n
    if model == "pareto_nbd":
        # lifetimes divides the Pareto/NBD sum by weights.mean() (= 1): already a total.
        return -ParetoNBDFitter._negative_log_likelihood(np.asarray(params), *cols, w, 0.0)
    if model == "gamma_gamma":
        return -GammaGammaFitter._negative_log_likelihood(np.log(params), *cols, w, 0.0) * n
    raise ValueError(model)


def grad_wrt_log_params(model, params, cols, h=1e-5):
    """Central finite difference of the total log-likelihood w.r.t. log(params)."""
    lp = np.log(np.asarray(params, dtype=float))
    g = []
    for i in range(len(lp)):
        up, dn = lp.copy(), lp.copy()
        up[i] += h
        dn[i] -= h
        g.append(
            (total_ll_lifetimes(model, np.exp(up), cols) - total_ll_lifetimes(model, np.exp(dn), cols)) / (2 * h)
        )
    return g


def check_close(name, a, b, rtol=1e-9):
    if not math.isclose(a, b, rel_tol=rtol, abs_tol=0.0):
        raise SystemExit(f"{name}: lifetimes-based {a!r} != independent {b!r}")


def fmt(v):
    if isinstance(v, (int, np.integer)):
        return str(int(v))
    return "%.17g" % float(v)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--cdnow", required=True, help="directory holding " + INPUT_NAME)
    ap.add_argument("--out", required=True, help="output directory (created if missing)")
    ap.add_argument("--seed", type=int, default=0, help="numpy seed for the Pareto/NBD random start (default 0)")
    args = ap.parse_args(argv)

    df = pd.read_csv(os.path.join(args.cdnow, INPUT_NAME))
    for c in ("ID", "x", "t_x", "T", "zbar"):
        if c not in df.columns:
            raise SystemExit(f"missing column {c}")
    x = df["x"].to_numpy().astype(int)
    tx = df["t_x"].to_numpy(dtype=float)
    T = df["T"].to_numpy(dtype=float)
    zbar = df["zbar"].to_numpy(dtype=float)
    freq_s, rec_s, T_s, m_s = df["x"].astype(int), df["t_x"].astype(float), df["T"].astype(float), df["zbar"].astype(float)
    n = len(df)

    # ---- fits (penalizer 0, lifetimes defaults otherwise) ------------------
    bgf = BetaGeoFitter(penalizer_coef=0.0).fit(freq_s, rec_s, T_s)
    mbgf = ModifiedBetaGeoFitter(penalizer_coef=0.0).fit(freq_s, rec_s, T_s)
    np.random.seed(args.seed)
    pnf = ParetoNBDFitter(penalizer_coef=0.0).fit(freq_s, rec_s, T_s)
    rep = df[df["x"] > 0]
    ggf = GammaGammaFitter(penalizer_coef=0.0).fit(rep["x"].astype(int), rep["zbar"].astype(float))

    def P(f, names):
        return [float(f.params_[k]) for k in names]

    bg_p = P(bgf, ["r", "alpha", "a", "b"])
    mbg_p = P(mbgf, ["r", "alpha", "a", "b"])
    pn_p = P(pnf, ["r", "alpha", "s", "beta"])
    gg_p = P(ggf, ["p", "q", "v"])

    # ---- total log-likelihoods in weeks ------------------------------------
    cols_rfm = (x, tx, T)
    xr = rep["x"].to_numpy(dtype=float)
    mr = rep["zbar"].to_numpy(dtype=float)
    ll = {
        "bgnbd": float(total_ll_lifetimes("bgnbd", bg_p, cols_rfm)),
        "mbgnbd": float(total_ll_lifetimes("mbgnbd", mbg_p, cols_rfm)),
        "pareto_nbd": float(total_ll_lifetimes("pareto_nbd", pn_p, cols_rfm)),
        "gamma_gamma": float(total_ll_lifetimes("gamma_gamma", gg_p, (xr, mr))),
    }
    check_close("bgnbd loglik", ll["bgnbd"], float(ll_bgnbd(bg_p, x, tx, T).sum()))
    check_close("mbgnbd loglik", ll["mbgnbd"], float(ll_mbgnbd(mbg_p, x, tx, T).sum()))
    check_close("pareto loglik", ll["pareto_nbd"], float(ll_pareto(pn_p, x, tx, T).sum()))
    check_close("gamma_gamma loglik", ll["gamma_gamma"], float(ll_gamma_gamma(gg_p, xr, mr).sum()))
    # lifetimes' own fitted objective is on time rescaled by 1/max(T); the
    # relation total_weeks = total_scaled + sum(x) * log(scale) must hold.
    for name, f in (("bgnbd", bgf), ("mbgnbd", mbgf)):
        scaled_total = -f._negative_log_likelihood_ * n
        check_close(name + " scaled relation", ll[name], scaled_total + x.sum() * math.log(f._scale), rtol=1e-7)
    check_close(
        "pareto scaled relation", ll["pareto_nbd"], -pnf._negative_log_likelihood_ + x.sum() * math.log(pnf._scale), rtol=1e-7
    )

    diagnostics = {
        "grad_total_loglik_wrt_log_params": {
            "bgnbd": grad_wrt_log_params("bgnbd", bg_p, cols_rfm),
            "mbgnbd": grad_wrt_log_params("mbgnbd", mbg_p, cols_rfm),
            "pareto_nbd": grad_wrt_log_params("pareto_nbd", pn_p, cols_rfm),
            "gamma_gamma": grad_wrt_log_params("gamma_gamma", gg_p, (xr, mr)),
        },
        "time_scale_used_by_lifetimes": float(bgf._scale),
        "lifetimes_reported_negative_log_likelihood_": {
            "bgnbd": float(bgf._negative_log_likelihood_),
            "mbgnbd": float(mbgf._negative_log_likelihood_),
            "pareto_nbd": float(pnf._negative_log_likelihood_),
            "gamma_gamma": float(ggf._negative_log_likelihood_),
        },
        "n_customers": int(n),
        "n_repeat_customers": int(len(rep)),
        "pareto_seed": args.seed,
    }

    params = {
        "versions": {
            "lifetimes": lifetimes.__version__,
            "numpy": np.__version__,
            "scipy": scipy.__version__,
            "pandas": pd.__version__,
            "autograd": metadata.version("autograd"),
            "python": platform.python_version(),
        },
        "bgnbd": dict(zip(["r", "alpha", "a", "b"], bg_p), loglik=ll["bgnbd"]),
        "mbgnbd": dict(zip(["r", "alpha", "a", "b"], mbg_p), loglik=ll["mbgnbd"]),
        "pareto_nbd": dict(zip(["r", "alpha", "s", "beta"], pn_p), loglik=ll["pareto_nbd"]),
        "gamma_gamma": dict(zip(["p", "q", "v"], gg_p), loglik=ll["gamma_gamma"]),
        "expected_purchases": {
            name: {str(t): float(f.expected_number_of_purchases_up_to_time(t)) for t in EXPECTED_TIMES}
            for name, f in (("bgnbd", bgf), ("mbgnbd", mbgf), ("pareto_nbd", pnf))
        },
        "hardie_conditional": {
            "bgnbd": float(np.squeeze(bgf.conditional_expected_number_of_purchases_up_to_time(*HARDIE_ARGS)))
        },
        "diagnostics": diagnostics,
    }

    # ---- per-customer predictions -----------------------------------------
    pred = pd.DataFrame({"ID": df["ID"].astype(int), "frequency": x, "recency": tx, "T": T, "monetary_value": zbar})
    pred["bgnbd_p_alive"] = bgf.conditional_probability_alive(x, tx, T)
    pred["bgnbd_cond_exp_10"] = bgf.conditional_expected_number_of_purchases_up_to_time(10, x, tx, T)
    pred["bgnbd_cond_exp_39"] = bgf.conditional_expected_number_of_purchases_up_to_time(39, x, tx, T)
    for k in (0, 1, 2):
        pred[f"bgnbd_prob_{k}_39"] = float(bgf.probability_of_n_purchases_up_to_time(39, k))
    pred["mbgnbd_p_alive"] = mbgf.conditional_probability_alive(x, tx, T)
    pred["mbgnbd_cond_exp_39"] = mbgf.conditional_expected_number_of_purchases_up_to_time(39, x, tx, T)
    pred["pareto_p_alive"] = pnf.conditional_probability_alive(x, tx, T)
    pred["pareto_cond_exp_39"] = pnf.conditional_expected_number_of_purchases_up_to_time(39, x, tx, T)
    pred["gg_cond_exp_spend"] = np.asarray(ggf.conditional_expected_average_profit(freq_s, m_s), dtype=float)
    clv = ggf.customer_lifetime_value(bgf, freq_s, rec_s, T_s, m_s, time=12, discount_rate=0.01, freq="W")
    pred["clv_bgnbd_12m"] = np.asarray(clv, dtype=float)
    pred = pred[PREDICTION_COLUMNS]
    bad = [c for c in PREDICTION_COLUMNS if not np.all(np.isfinite(pred[c].to_numpy(dtype=float)))]
    if bad:
        raise SystemExit(f"non-finite values in columns {bad}")

    os.makedirs(args.out, exist_ok=True)
    with open(os.path.join(args.out, "params.json"), "w") as fh:
        json.dump(params, fh, indent=2)
        fh.write("\n")
    with open(os.path.join(args.out, "predictions.csv"), "w", newline="") as fh:
        fh.write(",".join(PREDICTION_COLUMNS) + "\n")
        for row in pred.itertuples(index=False):
            fh.write(",".join(fmt(v) for v in row) + "\n")
    with open(os.path.join(args.out, "README.md"), "w") as fh:
        fh.write(readme(params))

    s = params
    print(
        json.dumps(
            {k: s[k] for k in ("bgnbd", "mbgnbd", "pareto_nbd", "gamma_gamma", "hardie_conditional")}, indent=1
        ),
        file=sys.stderr,
    )


def readme(p):
    v = p["versions"]
    d = p["diagnostics"]
    return f"""# lifetimes reference values on CDNOW

Generated by `tools/parity/lifetimes_reference.py`; do not edit by hand. Regenerate with
(Python 3.11, packages from `tools/parity/requirements.txt`):

```
python tools/parity/lifetimes_reference.py --cdnow DIR --out crates/models/tests/data/lifetimes_cdnow
```

where `DIR` holds `cdnow_customers_summary_with_transactions.csv` (columns `ID,x,t_x,T,zbar`;
{d['n_customers']} customers, {d['n_repeat_customers']} with x > 0; time unit = **weeks**).

Library versions: lifetimes {v['lifetimes']}, numpy {v['numpy']}, scipy {v['scipy']}, pandas {v['pandas']},
autograd {v['autograd']}, Python {v['python']}.

## Fits

All fits use `penalizer_coef=0` and lifetimes' defaults otherwise:

* `BetaGeoFitter`, `ModifiedBetaGeoFitter`: `fit(frequency=x, recency=t_x, T=T)` on all customers.
  Optimiser: scipy `minimize` (BFGS, autograd gradient) over log-parameters, `tol=1e-7`.
* `ParetoNBDFitter`: same inputs; Nelder-Mead over the raw parameters, `tol=1e-4`, `maxiter=2000`,
  one start drawn from `N(1, 0.05)`; numpy's global RNG is seeded with {d['pareto_seed']} first.
  The Pareto/NBD likelihood is very flat here: different seeds move the parameters by about
  2e-4 relative (beta the most) while the log-likelihood changes by < 1e-7. Compare Pareto/NBD
  parameters with a relative tolerance of about 1e-3, and the log-likelihood instead.
* `GammaGammaFitter`: `fit(frequency=x, monetary_value=zbar)` on the customers with x > 0 only.

**Rescaled time.** lifetimes fits the three transaction models on time multiplied by
`scale = 1 / max(T)` (= {d['time_scale_used_by_lifetimes']!r} here) and afterwards divides the
rate parameters (`alpha`, and `beta` for Pareto/NBD) by `scale`. All parameters in `params.json`
are the final ones, i.e. in weeks. The objective lifetimes stores (`_negative_log_likelihood_`)
is on the rescaled time (mean per customer for BG/NBD, MBG/NBD and Gamma-Gamma, total for
Pareto/NBD) and is NOT what `loglik` holds; it is kept for information under
`diagnostics.lifetimes_reported_negative_log_likelihood_`.

## params.json

* `versions`: library versions used.
* `bgnbd` / `mbgnbd`: `r, alpha, a, b`; `pareto_nbd`: `r, alpha, s, beta`; `gamma_gamma`: `p, q, v`.
  Full double precision (shortest round-trip representation).
* `loglik`: the **total** log-likelihood of the data in the data's own time unit (weeks) at the
  fitted parameters, i.e. the sum over customers of log L(x, t_x, T) with the usual
  (Fader-Hardie) likelihood for transaction models, and the sum over repeat customers of the
  log density of zbar given x (Hardie note 025, eq. 1a) for Gamma-Gamma. Computed as
  `-_negative_log_likelihood(log params in weeks, x, t_x, T, weights=1, penalizer=0) * N`
  with lifetimes' own static function on unscaled data (for Pareto/NBD the function already
  returns a total, so no `* N`). The script checks it against an independent scipy
  implementation of each formula (relative difference < 1e-9) and checks the identity
  `loglik = total_on_rescaled_time + sum(x) * ln(scale)`.
  Published: BG/NBD -9582.4, Pareto/NBD -9595.0.
* `expected_purchases.<model>.<t>`: `expected_number_of_purchases_up_to_time(t)` (unconditional
  expected repeat purchases of a new customer in (0, t] weeks) for t = 1, 3, 32, 78.
* `hardie_conditional.bgnbd`: BG/NBD
  `conditional_expected_number_of_purchases_up_to_time(39, 2, 30.43, 38.86)` (Hardie's worked
  example, published 1.226).
* `diagnostics`: not reference values. `grad_total_loglik_wrt_log_params` is a central
  finite-difference gradient (step 1e-5 in log-parameter space) of `loglik` at the fitted
  parameters: it shows how close each lifetimes fit is to the exact optimum (BG/NBD, MBG/NBD
  and Gamma-Gamma are tight; Pareto/NBD is only as tight as Nelder-Mead with tol 1e-4).

## predictions.csv

One row per customer, in input file order; numbers printed with `%.17g` (integers as integers).

| column | meaning |
| --- | --- |
| `ID` | customer ID from the input |
| `frequency` | x, number of repeat purchases |
| `recency` | t_x, weeks from first to last purchase |
| `T` | weeks from first purchase to the end of the calibration period |
| `monetary_value` | zbar, mean value of the repeat purchases (0 when x = 0) |
| `bgnbd_p_alive` | BG/NBD `conditional_probability_alive(x, t_x, T)` (1 when x = 0, lifetimes' convention) |
| `bgnbd_cond_exp_10` | BG/NBD `conditional_expected_number_of_purchases_up_to_time(10, x, t_x, T)` |
| `bgnbd_cond_exp_39` | same with t = 39 weeks |
| `bgnbd_prob_{{0,1,2}}_39` | BG/NBD `probability_of_n_purchases_up_to_time(39, n)`: unconditional P(N(39) = n) for a new customer; the same value on every row |
| `mbgnbd_p_alive` | MBG/NBD `conditional_probability_alive(x, t_x, T)` (below 1 also when x = 0) |
| `mbgnbd_cond_exp_39` | MBG/NBD `conditional_expected_number_of_purchases_up_to_time(39, x, t_x, T)` |
| `pareto_p_alive` | Pareto/NBD `conditional_probability_alive(x, t_x, T)` |
| `pareto_cond_exp_39` | Pareto/NBD `conditional_expected_number_of_purchases_up_to_time(39, x, t_x, T)` |
| `gg_cond_exp_spend` | Gamma-Gamma `conditional_expected_average_profit(x, zbar)` = (1-w)·v·p/(q-1) + w·zbar with w = p·x/(p·x+q-1); computed for every row, so x = 0 gives the population mean v·p/(q-1) |
| `clv_bgnbd_12m` | `GammaGammaFitter.customer_lifetime_value(bgf, x, t_x, T, zbar, time=12, discount_rate=0.01, freq='W')` |

### lifetimes' CLV convention (`clv_bgnbd_12m`)

With `factor = 4.345` weeks per month (for `freq='W'`; 30 for `'D'`), `E(t)` = BG/NBD
`conditional_expected_number_of_purchases_up_to_time(t, x, t_x, T)` and `m` =
`gg_cond_exp_spend`:

```
CLV = sum_{{k=1..12}} m * (E(t_k) - E(t_k - factor)) / (1 + 0.01) ** (t_k / factor),  t_k = k * factor
```

i.e. monthly steps of 4.345 weeks, the discount exponent is the month index k (1..12, computed
in floating point as `t_k / factor`), no mid-period adjustment, and `E(0) = 0`. `t_k` is computed as
`numpy.arange(1, 13) * 4.345` and `t_k - factor` by floating-point subtraction.
"""


if __name__ == "__main__":
    main()
