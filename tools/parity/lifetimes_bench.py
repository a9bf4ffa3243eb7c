#!/usr/bin/env python3
"""Time the Python library `lifetimes` on a transaction log, as a baseline for the Rust crates.

Input: a CSV with header `customer_id,day,amount`, where `day` is an integer day number
(any origin) and `amount` is the value of the transaction (> 0).

Steps, each timed separately with time.perf_counter (wall clock):

    convert_s     day numbers -> pandas datetimes (origin 2000-01-01 + day days); not part of
                  lifetimes, reported separately because lifetimes only accepts dates
    summary_s     lifetimes.utils.summary_data_from_transaction_data(freq='D',
                  observation_period_end = calibration end, monetary_value_col='amount'):
                  transactions on days <= --calibration-end are kept, several transactions of one
                  customer on one day are merged into one (amounts summed), the first purchase is
                  not counted in frequency / monetary_value; recency and T are in days
    bgnbd_fit_s   BetaGeoFitter(penalizer_coef=0).fit(frequency, recency, T)
    pareto_fit_s  ParetoNBDFitter(penalizer_coef=0).fit(...) with numpy seeded (--seed); null
                  with --skip-pareto (at 1M customers it takes about 5 minutes)
    gg_fit_s      GammaGammaFitter(penalizer_coef=0).fit on customers with frequency > 0
    clv_s         GammaGammaFitter.customer_lifetime_value(bgf, ..., time=12,
                  discount_rate=0.01, freq='D') for customers with frequency > 0

Reading the CSV is timed as read_s. The fits use lifetimes' defaults (one row per customer,
no aggregation through `weights`). Prints one JSON object to stdout:

    {"read_s", "convert_s", "summary_s", "bgnbd_fit_s", "pareto_fit_s", "gg_fit_s", "clv_s",
     "n_transactions", "n_customers", "n_repeat", "clv_sum", "versions", "params": {...}}

Usage (Python 3.11, packages from tools/parity/requirements.txt):

    python tools/parity/lifetimes_bench.py --transactions tx.csv --calibration-end 547 [--skip-pareto]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings

import numpy as np
import pandas as pd
import scipy

import lifetimes
from lifetimes import BetaGeoFitter, GammaGammaFitter, ParetoNBDFitter
from lifetimes.utils import summary_data_from_transaction_data

ORIGIN = pd.Timestamp("2000-01-01")


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--transactions", required=True, help="CSV with columns customer_id,day,amount")
    ap.add_argument("--calibration-end", required=True, type=int, help="last day (inclusive) of the calibration period")
    ap.add_argument("--skip-pareto", action="store_true", help="do not fit Pareto/NBD")
    ap.add_argument("--seed", type=int, default=0, help="numpy seed for the Pareto/NBD random start")
    args = ap.parse_args(argv)
    warnings.simplefilter("ignore")

    out = {}
    params = {}

    t0 = time.perf_counter()
    tx = pd.read_csv(args.transactions, dtype={"day": np.int64, "amount": np.float64})
    out["read_s"] = time.perf_counter() - t0
    for c in ("customer_id", "day", "amount"):
        if c not in tx.columns:
            raise SystemExit(f"missing column {c}")

    t0 = time.perf_counter()
    tx["date"] = ORIGIN + pd.to_timedelta(tx["day"].to_numpy(), unit="D")
    end = ORIGIN + pd.Timedelta(days=args.calibration_end)
    out["convert_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    summary = summary_data_from_transaction_data(
        tx, "customer_id", "date", monetary_value_col="amount", observation_period_end=end, freq="D"
    )
    out["summary_s"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    bgf = BetaGeoFitter(penalizer_coef=0.0).fit(summary["frequency"], summary["recency"], summary["T"])
    out["bgnbd_fit_s"] = time.perf_counter() - t0
    params["bgnbd"] = {k: float(v) for k, v in bgf.params_.items()}

    if args.skip_pareto:
        out["pareto_fit_s"] = None
    else:
        np.random.seed(args.seed)
        t0 = time.perf_counter()
        pnf = ParetoNBDFitter(penalizer_coef=0.0).fit(summary["frequency"], summary["recency"], summary["T"])
        out["pareto_fit_s"] = time.perf_counter() - t0
        params["pareto_nbd"] = {k: float(v) for k, v in pnf.params_.items()}

    rep = summary[summary["frequency"] > 0]
    t0 = time.perf_counter()
    ggf = GammaGammaFitter(penalizer_coef=0.0).fit(rep["frequency"], rep["monetary_value"])
    out["gg_fit_s"] = time.perf_counter() - t0
    params["gamma_gamma"] = {k: float(v) for k, v in ggf.params_.items()}

    t0 = time.perf_counter()
    clv = ggf.customer_lifetime_value(
        bgf, rep["frequency"], rep["recency"], rep["T"], rep["monetary_value"], time=12, discount_rate=0.01, freq="D"
    )
    out["clv_s"] = time.perf_counter() - t0

    out["n_transactions"] = int(len(tx))
    out["n_customers"] = int(len(summary))
    out["n_repeat"] = int(len(rep))
    out["clv_sum"] = float(np.sum(clv))
    out["versions"] = {
        "lifetimes": lifetimes.__version__,
        "numpy": np.__version__,
        "scipy": scipy.__version__,
        "pandas": pd.__version__,
    }
    out["params"] = params
    json.dump(out, sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
