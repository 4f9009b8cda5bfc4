"""Reads every table of misfit run folders with Python Polars, as a Polars
user would, checks the types they rely on, then runs the README's examples.

Usage: python read_tables.py RUN_DIR [RUN_DIR ...] README_EXAMPLES.py
Run by tests/integration/findings.rs; exits non-zero on the first failure.
"""

import glob
import os
import sys

import polars as pl

ID_COLUMNS = {"id", "id_a", "id_b", "neighbor_id", "subject", "related_id"}
FLOAT32_ARRAYS = {"probs", "vector"}


def check_run(run):
    files = sorted(glob.glob(os.path.join(run, "*.parquet")))
    assert files, f"{run}: no tables"
    for path in files:
        df = pl.read_parquet(path)
        lazy = pl.scan_parquet(path)
        assert lazy.collect_schema() == df.schema, path
        for name, dtype in df.schema.items():
            if name in ID_COLUMNS or name.endswith("_name") or name in ("split", "attack", "kind"):
                assert dtype == pl.String, f"{path}: {name} is {dtype}, not a string"
            if name in FLOAT32_ARRAYS:
                assert isinstance(dtype, pl.Array) and dtype.inner == pl.Float32, f"{path}: {name} is {dtype}"
            if dtype == pl.String and name not in ("message", "evidence", "title"):
                json_like = df.filter(pl.col(name).str.starts_with("{") | pl.col(name).str.starts_with("["))
                assert json_like.height == 0, f"{path}: {name} holds JSON text"
        if "id" in df.columns and df.height > 0:
            first = df["id"][0]
            assert lazy.filter(pl.col("id") == first).collect().height >= 1, path
    findings = pl.read_parquet(os.path.join(run, "findings.parquet"))
    assert findings.columns[:6] == ["rule", "title", "severity", "subject_kind", "subject", "message"], findings.columns
    assert findings.schema["rule_matches"] == pl.Int64
    pairs = pl.scan_parquet(os.path.join(run, "pairs.parquet")).filter(pl.col("rank") <= 3).collect()
    assert pairs["pair"].dtype == pl.String
    print(f"read {len(files)} tables of {run}")


def main():
    *runs, examples = sys.argv[1:]
    for run in runs:
        check_run(run)
    with open(examples) as f:
        code = f.read()
    exec(compile(code, "README.md", "exec"), {})
    print("ran the README examples")


if __name__ == "__main__":
    main()
