#!/usr/bin/env python3
"""Reference per-customer summaries from the Python library `lifetimes`, for
crates/models/tests/summary_parity.rs.

What it checks
    nudge's `summarize` (crates/models/src/rfm.rs) works on whole days: a
    purchase's day is the date part of its time, all of a customer's purchases
    on one day are one purchase whose amount is the day's sum, and recency, T
    and the holdout length are day differences divided by the unit length
    (D = 1, W = 7, M = 365.25 / 12 days). In lifetimes 0.11.3 that is

        summary_data_from_transaction_data(
            tx, "customer_id", "date", monetary_value_col="amount",
            observation_period_end=CALIBRATION_END,
            freq="D", freq_multiplier=UNIT_DAYS)

    on the raw transactions, and for a calibration/holdout split

        calibration_and_holdout_data(
            daily, "customer_id", "date", CALIBRATION_END, OBSERVATION_END,
            freq="D", freq_multiplier=UNIT_DAYS, monetary_value_col="amount")

    where `daily` is the transactions with each time cut to its date and the
    amounts of one customer's day summed. On the raw transactions
    calibration_and_holdout_data differs in three places (all three are
    exercised by the fixture and pinned by the Rust test):

    * it splits at the instant CALIBRATION_END 00:00:00, so an order later on
      the calibration-end day is a holdout purchase (and a customer whose
      first order is such an order is left out);
    * it cuts at OBSERVATION_END 00:00:00, so an order later on the
      observation-end day is dropped;
    * monetary_value_holdout is the mean over holdout *orders*, not over
      holdout purchase days (frequency_holdout does count days).

    Plain freq="W" / freq="M" (freq_multiplier=1) is a different
    discretisation that nudge does not use: every time is first cut to its
    calendar period (weeks Monday to Sunday, calendar months), purchases in
    the same period merge, and recency/T are differences of period starts,
    i.e. whole numbers of weeks, or days divided by numpy's average month of
    30.436875 days.

What it writes (to OUT, by default crates/models/tests/data/summary_parity)
    transactions.csv        a small transactions file we own (columns
                            customer_id,date,amount), built deterministically
                            by `fixture_rows` below
    fixture_summary.csv     summary_data_from_transaction_data on
                            transactions.csv, one block of rows per unit
    fixture_holdout.csv     calibration_and_holdout_data on the day-aggregated
                            transactions.csv, one block per unit
    fixture_holdout_raw.csv calibration_and_holdout_data on transactions.csv as
                            it is, one block per unit
    cdnow_weeks.csv         calibration_and_holdout_data on the day-aggregated
                            CDNOW sample, weeks, plus the holdout mean of the
                            call on the CDNOW sample as it is
    README.md is written by hand, not by this script.

    Every float is printed with %.17g (it reads back to the same double).

How to run (from the repository root, in a Python 3.11 venv with
tools/parity/requirements.txt installed):

    python tools/parity/summary_reference.py --cdnow DIR \
        [--out crates/models/tests/data/summary_parity]

    DIR holds CDNOW_sample.txt (no header, whitespace separated:
    master_id sample_id date(YYYYMMDD) number_of_cds dollar_value).
    The script never copies the CDNOW file; it writes numbers computed from it.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import random
import sys
from importlib import metadata

import pandas as pd

from lifetimes.utils import calibration_and_holdout_data, summary_data_from_transaction_data

UNITS = {"D": 1.0, "W": 7.0, "M": 365.25 / 12.0}

FIXTURE_CALIBRATION_END = "2024-03-31"
FIXTURE_OBSERVATION_END = "2024-06-30"
CDNOW_CALIBRATION_END = "1997-09-30"
CDNOW_OBSERVATION_END = "1998-06-30"

SUMMARY_COLUMNS = ["frequency", "recency", "T", "monetary_value"]
HOLDOUT_COLUMNS = [
    "frequency_cal",
    "recency_cal",
    "T_cal",
    "monetary_value_cal",
    "frequency_holdout",
    "monetary_value_holdout",
    "duration_holdout",
]


# ---------------------------------------------------------------------------
# The fixture


def fixture_rows() -> list[tuple[int, str, str]]:
    """The transactions of the fixture as (customer_id, date, amount) strings.

    Customers 1-20 are written by hand, one edge case each; 21-52 are drawn
    from a seeded generator (Python's `random.Random(20240331)`), with
    same-day repeats and times of day.
    """
    rows: list[tuple[int, str, str]] = [
        # 1: one order only.
        (1, "2024-01-05 12:00:00", "12.5"),
        # 2: two orders on the first day (merged into the first purchase), one repeat.
        (2, "2024-01-10 09:15:00", "20"),
        (2, "2024-01-10 17:40:00", "5.25"),
        (2, "2024-02-01", "8.75"),
        # 3: three orders on one repeat day, and another repeat day.
        (3, "2024-01-02 10:00:00", "3"),
        (3, "2024-02-14 08:00:00", "10.1"),
        (3, "2024-02-14 12:30:00", "0.2"),
        (3, "2024-02-14 23:59:59", "7.7"),
        (3, "2024-03-01 11:11:11", "4.4"),
        # 4: a repeat on the calibration-end day at midnight (date only).
        (4, "2023-12-20", "15"),
        (4, "2024-03-31", "9.99"),
        # 5: a repeat on the calibration-end day in the afternoon, and a holdout order.
        (5, "2023-11-30 08:00:00", "30"),
        (5, "2024-02-02 10:00:00", "11"),
        (5, "2024-03-31 15:30:00", "6.5"),
        (5, "2024-05-05 09:00:00", "2.5"),
        # 6: first and only calibration order on the calibration-end day in the evening, one holdout order.
        (6, "2024-03-31 20:00:00", "40"),
        (6, "2024-04-20 13:00:00", "1.5"),
        # 7: first order after the calibration end (left out of every summary).
        (7, "2024-04-15 10:00:00", "25"),
        (7, "2024-05-01 10:00:00", "5"),
        # 8: two orders on one holdout day with different amounts, and one more holdout day.
        (8, "2024-01-20 14:00:00", "10"),
        (8, "2024-02-20 14:00:00", "12"),
        (8, "2024-04-10 09:00:00", "1"),
        (8, "2024-04-10 19:00:00", "9"),
        (8, "2024-06-01 12:00:00", "4"),
        # 9: an order on the observation-end day in the morning.
        (9, "2024-02-10 16:00:00", "18"),
        (9, "2024-06-30 10:00:00", "22.22"),
        # 10: an order on the observation-end day, date only.
        (10, "2024-03-03", "7"),
        (10, "2024-06-30", "3.3"),
        # 11: orders after the observation end (ignored).
        (11, "2024-01-15 10:00:00", "5"),
        (11, "2024-03-15 10:00:00", "6"),
        (11, "2024-07-05 10:00:00", "100"),
        (11, "2024-08-01", "50"),
        # 12: a zero-amount repeat.
        (12, "2024-01-08 10:00:00", "14.99"),
        (12, "2024-02-08 10:00:00", "0"),
        (12, "2024-04-08 10:00:00", "0"),
        # 13: all amounts zero, two on one day.
        (13, "2024-01-09", "0"),
        (13, "2024-01-30 09:00:00", "0"),
        (13, "2024-01-30 21:00:00", "0"),
        (13, "2024-03-20", "0"),
        # 14: an order on the day after the calibration end, at midnight.
        (14, "2024-02-25 10:00:00", "8"),
        (14, "2024-04-01 00:00:00", "16"),
        # 15: a long history from 2023.
        (15, "2023-06-01 10:00:00", "55.5"),
        (15, "2023-07-14 10:00:00", "0.01"),
        (15, "2023-09-09 10:00:00", "19.99"),
        (15, "2023-12-24 18:00:00", "120.45"),
        (15, "2024-03-10 10:00:00", "33.33"),
        (15, "2024-05-20 10:00:00", "44.44"),
        # 16: one second apart across midnight: two purchase days, not one.
        (16, "2024-01-11 23:59:59", "6"),
        (16, "2024-01-12 00:00:00", "7"),
        # 17: two repeats in the same Monday-Sunday week on different days (two purchases for nudge).
        (17, "2024-01-03 10:00:00", "9"),
        (17, "2024-02-05 10:00:00", "4"),
        (17, "2024-02-07 10:00:00", "6"),
        # 18: orders on the calibration-end day only, two of them (00:00 and later).
        (18, "2024-03-31 00:00:00", "3"),
        (18, "2024-03-31 09:00:00", "4"),
        # 19: first order on the first day of the fixture's window, fractional cents.
        (19, "2023-10-01 00:00:00", "0.1"),
        (19, "2023-10-01 00:00:01", "0.2"),
        (19, "2024-01-01 00:00:00", "0.3"),
        (19, "2024-06-29 23:59:59", "0.7"),
        # 20: rows out of time order in the file.
        (20, "2024-03-05 10:00:00", "2"),
        (20, "2024-01-25 10:00:00", "1"),
        (20, "2024-02-15 10:00:00", "3"),
    ]

    rng = random.Random(20240331)
    start = dt.date(2023, 10, 1)
    calibration_end = dt.date.fromisoformat(FIXTURE_CALIBRATION_END)
    observation_end = dt.date.fromisoformat(FIXTURE_OBSERVATION_END)
    for customer in range(21, 53):
        first = start + dt.timedelta(days=rng.randrange((calibration_end - start).days + 1))
        days = [first]
        for _ in range(rng.randrange(6)):
            days.append(first + dt.timedelta(days=rng.randrange((observation_end - first).days + 1)))
        for day in days:
            for _ in range(1 + (rng.random() < 0.25) + (rng.random() < 0.1)):
                if rng.random() < 0.3:
                    date = day.isoformat()
                else:
                    seconds = rng.randrange(86400)
                    hh, mm, ss = seconds // 3600, seconds // 60 % 60, seconds % 60
                    date = f"{day.isoformat()} {hh:02d}:{mm:02d}:{ss:02d}"
                amount = "0" if rng.random() < 0.08 else f"{rng.randrange(1, 20000) / 100:.2f}"
                rows.append((customer, date, amount))
    return rows


def write_fixture(path: str) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("customer_id,date,amount\n")
        for customer, date, amount in fixture_rows():
            f.write(f"{customer},{date},{amount}\n")


def read_transactions(path: str) -> pd.DataFrame:
    """Reads customer_id,date,amount; amounts through Python's float (correctly rounded, as Rust's parse)."""
    raw = pd.read_csv(path, dtype=str)
    out = pd.DataFrame(
        {
            "customer_id": [int(v) for v in raw["customer_id"]],
            "date": pd.to_datetime(raw["date"]),
            "amount": [float(v) for v in raw["amount"]],
        }
    )
    # Every date must be read as written (a date alone is midnight).
    for text, parsed in zip(raw["date"], out["date"]):
        written = text if len(text) > 10 else text + " 00:00:00"
        assert parsed.strftime("%Y-%m-%d %H:%M:%S") == written, text
    return out


def daily(tx: pd.DataFrame) -> pd.DataFrame:
    """One row per customer and date: the time cut to its date and the day's amounts summed in time order."""
    t = tx.sort_values(["customer_id", "date"], kind="stable").copy()
    t["date"] = t["date"].dt.normalize()
    return t.groupby(["customer_id", "date"], as_index=False, sort=True)["amount"].sum()


# ---------------------------------------------------------------------------
# lifetimes calls


def lifetimes_summary(tx: pd.DataFrame, calibration_end: str, unit_days: float) -> pd.DataFrame:
    return summary_data_from_transaction_data(
        tx,
        "customer_id",
        "date",
        monetary_value_col="amount",
        observation_period_end=calibration_end,
        freq="D",
        freq_multiplier=unit_days,
    ).sort_index()


def lifetimes_holdout(
    tx: pd.DataFrame, calibration_end: str, observation_end: str, unit_days: float
) -> pd.DataFrame:
    return calibration_and_holdout_data(
        tx,
        "customer_id",
        "date",
        calibration_end,
        observation_end,
        freq="D",
        freq_multiplier=unit_days,
        monetary_value_col="amount",
    ).sort_index()


# ---------------------------------------------------------------------------
# Output


def fmt(v) -> str:
    return "%.17g" % float(v)


def write_table(path: str, header: list[str], rows: list[list]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write(",".join(header) + "\n")
        for r in rows:
            f.write(",".join(r) + "\n")


def unit_blocks(frames: dict[str, pd.DataFrame], columns: list[str]) -> list[list]:
    rows = []
    for unit, df in frames.items():
        for customer, r in df.iterrows():
            rows.append([unit, str(int(customer))] + [fmt(r[c]) for c in columns])
    return rows


def read_cdnow(directory: str) -> pd.DataFrame:
    customers, dates, amounts = [], [], []
    with open(os.path.join(directory, "CDNOW_sample.txt"), encoding="utf-8") as f:
        for line in f:
            fields = line.split()
            if not fields:
                continue
            customers.append(int(fields[0]))
            dates.append(fields[2])
            amounts.append(float(fields[4]))
    return pd.DataFrame(
        {"customer_id": customers, "date": pd.to_datetime(dates, format="%Y%m%d"), "amount": amounts}
    )


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cdnow", required=True, help="folder holding CDNOW_sample.txt")
    ap.add_argument("--out", default="crates/models/tests/data/summary_parity")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)

    fixture_path = os.path.join(args.out, "transactions.csv")
    write_fixture(fixture_path)
    tx = read_transactions(fixture_path)
    tx_daily = daily(tx)

    summaries = {u: lifetimes_summary(tx, FIXTURE_CALIBRATION_END, d) for u, d in UNITS.items()}
    write_table(
        os.path.join(args.out, "fixture_summary.csv"),
        ["unit", "customer_id"] + SUMMARY_COLUMNS,
        unit_blocks(summaries, SUMMARY_COLUMNS),
    )
    ends = (FIXTURE_CALIBRATION_END, FIXTURE_OBSERVATION_END)
    holdouts = {u: lifetimes_holdout(tx_daily, *ends, d) for u, d in UNITS.items()}
    write_table(
        os.path.join(args.out, "fixture_holdout.csv"),
        ["unit", "customer_id"] + HOLDOUT_COLUMNS,
        unit_blocks(holdouts, HOLDOUT_COLUMNS),
    )
    raw = {u: lifetimes_holdout(tx, *ends, d) for u, d in UNITS.items()}
    write_table(
        os.path.join(args.out, "fixture_holdout_raw.csv"),
        ["unit", "customer_id"] + HOLDOUT_COLUMNS,
        unit_blocks(raw, HOLDOUT_COLUMNS),
    )

    # The calibration part of a day-aggregated split is the plain summary (same call inside).
    for u in UNITS:
        cal = holdouts[u][[c + "_cal" for c in SUMMARY_COLUMNS]]
        cal.columns = SUMMARY_COLUMNS
        pd.testing.assert_frame_equal(cal, summaries[u], check_exact=False, rtol=1e-15, atol=0)

    cdnow = read_cdnow(args.cdnow)
    weeks = UNITS["W"]
    cd = lifetimes_holdout(daily(cdnow), CDNOW_CALIBRATION_END, CDNOW_OBSERVATION_END, weeks)
    cd_raw = lifetimes_holdout(cdnow, CDNOW_CALIBRATION_END, CDNOW_OBSERVATION_END, weeks)
    cd_summary = lifetimes_summary(cdnow, CDNOW_CALIBRATION_END, weeks)
    # With dates only, the raw call differs from the day-aggregated one in monetary_value_holdout alone,
    # and the calibration columns equal summary_data_from_transaction_data's.
    same = [c for c in HOLDOUT_COLUMNS if c != "monetary_value_holdout"]
    # (the day sums may be added in another order: equal to rounding)
    pd.testing.assert_frame_equal(cd[same], cd_raw[same], check_exact=False, rtol=1e-14, atol=0)
    cal = cd[[c + "_cal" for c in SUMMARY_COLUMNS]]
    cal.columns = SUMMARY_COLUMNS
    pd.testing.assert_frame_equal(cal, cd_summary, check_exact=False, rtol=1e-15, atol=0)
    rows = [
        [str(int(customer))]
        + [fmt(r[c]) for c in HOLDOUT_COLUMNS]
        + [fmt(cd_raw.loc[customer, "monetary_value_holdout"])]
        for customer, r in cd.iterrows()
    ]
    write_table(
        os.path.join(args.out, "cdnow_weeks.csv"),
        ["customer_id"] + HOLDOUT_COLUMNS + ["monetary_value_holdout_raw_input"],
        rows,
    )

    differing = int((cd["monetary_value_holdout"] != cd_raw["monetary_value_holdout"]).sum())
    print(
        f"fixture: {len(tx)} transactions, {tx['customer_id'].nunique()} customers; "
        f"CDNOW: {len(cdnow)} transactions, {len(cd)} customers, {differing} with a different holdout mean "
        f"on the raw input",
        file=sys.stderr,
    )
    print(
        "versions: " + ", ".join(f"{p} {metadata.version(p)}" for p in ("lifetimes", "pandas", "numpy")),
        file=sys.stderr,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
