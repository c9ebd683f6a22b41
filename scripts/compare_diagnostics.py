#!/usr/bin/env python3
"""Compare two `fulcrum diagnose` output directories (e.g. the dense and the blocked F⁻¹ of one
model): per-row columns joined on `row`, and DFBETAS joined on `row` (rows with tied Cook's
distances may be listed in a different order). Prints one JSON object.

Usage: python3 scripts/compare_diagnostics.py DIR_A DIR_B
"""
import json
import sys

import numpy as np
import pyarrow.parquet as pq


def rel_max(x, y):
    ok = np.isfinite(x) & np.isfinite(y)
    return float(np.max(np.abs(x[ok] - y[ok]) / (1e-12 + np.abs(x[ok])))) if ok.any() else 0.0


def main():
    a_dir, b_dir = sys.argv[1:3]
    a = pq.read_table(f"{a_dir}/diagnostics.parquet").to_pandas().set_index("row")
    b = pq.read_table(f"{b_dir}/diagnostics.parquet").to_pandas().set_index("row").loc[a.index]
    out = {"rows": len(a)}
    for c in ["hat", "cooks_d", "resid_studentized", "dffits"]:
        x, y = a[c].to_numpy(), b[c].to_numpy()
        out[c] = {"max_rel_diff": rel_max(x, y), "same_nan": bool((np.isnan(x) == np.isnan(y)).all())}
    out["hat_one_rows"] = [int((a["hat"] >= 1 - 1e-10).sum()), int((b["hat"] >= 1 - 1e-10).sum())]
    out["sum_hat"] = [float(a["hat"].sum()), float(b["hat"].sum())]
    da = pq.read_table(f"{a_dir}/dfbetas.parquet").to_pandas().set_index("row")
    db = pq.read_table(f"{b_dir}/dfbetas.parquet").to_pandas().set_index("row")
    common = da.index.intersection(db.index)
    x, y = da.loc[common].to_numpy(), db.loc[common][da.columns].to_numpy()
    ok = np.isfinite(x) & np.isfinite(y)
    out["dfbetas"] = {
        "rows": [len(da), len(db)],
        "common_rows": len(common),
        "same_order": bool((da.index == db.index).all()) if len(da) == len(db) else False,
        "max_abs_diff": float(np.max(np.abs(x[ok] - y[ok]))) if ok.any() else 0.0,
        "same_nan": bool((np.isnan(x) == np.isnan(y)).all()),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
