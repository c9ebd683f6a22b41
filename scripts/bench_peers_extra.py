#!/usr/bin/env python3
"""Peer runs the shared ../shared/tools/bench_peers.py does not have, for scripts/bench.sh.

Both reuse bench_peers.py's loader and design builders (imported, not copied), so the data,
the dropped reference levels and the objective are exactly the shared benchmark's:

  skglm_path --data D --lambda-file L --out O [--nlambda 20] [--tol 1e-6]
      skglm's SparseLogisticRegression along the same 20-point path as glmnet and fulcrum
      (geometric from lambda_max down to the lambda in L), warm-started from one lambda to the
      next; the full design (n x 120,537 CSC). Times the path only (the load and design are
      reported separately), and the objective at the last lambda with bench_peers.result_common.
  glum_fit --data D --rows N --out O
      glum's unpenalised binomial GLM (alpha = 0, IRLS) on the first N rows, with the design of
      bench_peers.py's statsmodels run (x00..x19 + one-hot c20 and c500) as a tabmat SplitMatrix
      (dense block + categorical blocks, drop_first). glum computes no influence diagnostics,
      so this is a fit-only comparison.
"""
import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "tools"))


def bench_peers():
    sys.dont_write_bytecode = True  # nothing written into ../shared
    sys.path.insert(0, SHARED)
    import bench_peers as bp

    return bp


def skglm_path(a):
    import numpy as np
    import skglm
    from skglm import SparseLogisticRegression

    bp = bench_peers()
    d = bp.load(a.data)
    X, t_design = bp.full_csr(d)
    t0 = time.perf_counter()
    Xc = X.tocsc()
    t_csc = time.perf_counter() - t0
    with open(a.lambda_file) as f:
        L = json.load(f)
    lams = np.geomspace(L["lambda_max"], L["lambda"], a.nlambda)
    m = SparseLogisticRegression(alpha=lams[0], tol=a.tol, max_iter=50, fit_intercept=True, warm_start=True)
    df = []
    t0 = time.perf_counter()
    for lam in lams:
        m.alpha = float(lam)
        m.fit(Xc, d["y"])
        df.append(int(np.count_nonzero(m.coef_)))
    t_path = time.perf_counter() - t0
    out = {"peer": "skglm_path", "version": skglm.__version__, "n": d["n"], "p": X.shape[1],
           "t_read_parquet_s": d["t_read"], "t_design_s": t_design + t_csc, "t_path_s": t_path,
           "nlambda": a.nlambda, "tol": a.tol, "lambda_max": float(lams[0]), "lambda_last": float(lams[-1]),
           "df_path": df, "peak_rss_mb_self": bp.peak_rss_mb()}
    out.update(bp.result_common(X, m.coef_.ravel(), float(np.ravel(m.intercept_)[0]), d["y"], float(lams[-1])))
    return out


def glum_fit(a):
    import glum
    import numpy as np
    import pandas as pd
    import tabmat
    from glum import GeneralizedLinearRegressor

    bp = bench_peers()
    d = bp.load(a.data, a.rows)
    t0 = time.perf_counter()
    parts = [tabmat.DenseMatrix(np.ascontiguousarray(d["dense"]))]
    for nm, k in bp.CATS[:2]:
        cat = pd.Categorical.from_codes(d["codes"][nm], categories=[f"{nm}_{i}" for i in range(k)])
        cat = cat.remove_unused_categories()
        parts.append(tabmat.CategoricalMatrix(cat, drop_first=True))
    X = tabmat.SplitMatrix(parts)
    t_design = time.perf_counter() - t0
    m = GeneralizedLinearRegressor(family="binomial", alpha=0.0, fit_intercept=True, gradient_tol=1e-8, max_iter=100)
    t0 = time.perf_counter()
    m.fit(X, d["y"])
    t_fit = time.perf_counter() - t0
    eta = X.matvec(np.asarray(m.coef_)) + float(m.intercept_)
    y = d["y"]
    dev = float(2.0 * np.sum(np.logaddexp(0, eta) - y * eta))
    return {"peer": "glum_fit", "version": glum.__version__, "n": d["n"], "p": int(X.shape[1]) + 1,
            "t_read_parquet_s": d["t_read"], "t_design_s": t_design, "t_fit_s": t_fit,
            "n_iter": int(getattr(m, "n_iter_", -1)), "deviance": dev, "peak_rss_mb_self": bp.peak_rss_mb()}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("peer", choices=["skglm_path", "glum_fit"])
    ap.add_argument("--data", required=True)
    ap.add_argument("--rows", type=int, default=None)
    ap.add_argument("--lambda-file")
    ap.add_argument("--nlambda", type=int, default=20)
    ap.add_argument("--tol", type=float, default=1e-6)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    out = skglm_path(a) if a.peer == "skglm_path" else glum_fit(a)
    tmp = a.out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(out, f, indent=1)
    os.replace(tmp, a.out)
    print(json.dumps({k: v for k, v in out.items() if k != "df_path"}))


if __name__ == "__main__":
    main()
