#!/usr/bin/env bash
# Recipe levers on the 10,000-image CIFAR-10 subset (docs/recipe.md).
#   scripts/recipe-levers.sh BIN OUTDIR NAME [misfit audit options...]
# Runs `BIN audit data/cifar10-sub10k.tar.gz --inject-noise 0.1 --noise confusion`
# with the options, then prints one line: name, test accuracy, wall seconds,
# F1 of likely_mislabeled and label_issue, AUROC of issue_score.
# Make the subset first: python3 scripts/cifar-subset.py (see its header).
set -euo pipefail
bin=$1 out=$2 name=$3; shift 3
py=${MISFIT_PYTHON:-python3}
mkdir -p "$out"
start=$(date +%s.%N)
"$bin" audit data/cifar10-sub10k.tar.gz --run "$name" --outputs "$out" -q "$@"
end=$(date +%s.%N)
"$py" - "$out/$name" "$start" "$end" "$name" <<'PY'
import json, sys, polars as pl
run, start, end, name = sys.argv[1], float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
d = json.load(open(f"{run}/run.json"))
acc = d["evaluation"]["accuracy"]
s = pl.read_parquet(f"{run}/selfcheck.parquet")
def get(n, c):
    r = s.filter(pl.col("name") == n)
    return r[c][0] if r.height else float("nan")
print(f"{name}\tacc={acc:.4f}\twall_s={end-start:.0f}\tstages={ {k: round(v) for k, v in d['timing_s'].items()} }"
      f"\tf1_mislabeled={get('likely_mislabeled','f1'):.3f}\tf1_label_issue={get('label_issue','f1'):.3f}"
      f"\tauroc_issue_score={get('issue_score','auroc'):.3f}\tjobs={list(d['model']['last_epoch'])}")
PY
