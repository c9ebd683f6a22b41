#!/usr/bin/env python3
"""Sanity checks for the extra glmnet fixtures written by run_glmnet_extra.sh.

For every fixture: rebuilds the design from the Parquet file (row_index, numeric columns,
categorical levels with the first level dropped) independently of R, checks the column names,
that lambda is strictly decreasing, dev_ratio non-decreasing, df == nnz of each coefficient
vector, recomputes dev_ratio from the coefficients, and evaluates the KKT conditions of the
objective documented in the fixture (weights normalised to sum 1, x standardized by the
weighted 1/n sd when standardize=TRUE, penalty factors rescaled to sum p).  For the Gaussian
family both possible lambda scalings are reported (see fixtures/README.md).

Usage: python3 scripts/reference/check_glmnet_extra.py [fixture.json ...]
Exits non-zero if a structural check fails or the KKT violation exceeds 1e-5 (absolute, in units of
the gradient w.r.t. a standardized coefficient; for Gaussian relative to lambda).  glmnet's
binomial/Poisson paths at thresh=1e-10 are only KKT-accurate to ~1e-6 absolute.
"""
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[2]
DEFAULT = [
    "glmnet_adult_enet05.json",
    "glmnet_communities_lasso_nostd.json",
    "glmnet_communities_lasso_pf.json",
    "glmnet_insurance_poisson_lasso.json",
    "glmnet_insurance_gaussian_enet.json",
    "glmnet_adult_lasso_weights.json",
]


# the two original fixtures (reference_glmnet.R) have no "label" key
LABEL_BY_DATA = {"adult": "income_gt50k", "communities": "high_crime"}


def design(fx):
    d = fx["design"]
    if "label" not in fx:
        fx["label"] = LABEL_BY_DATA[Path(fx["data"]).stem]
        fx["data"] = "fixtures/" + Path(fx["data"]).name
    cols = list(d["numeric"]) + list(d["categorical"]) + [fx["label"]]
    if fx.get("weights_column"):
        cols.append(fx["weights_column"])
    t = pq.read_table(ROOT / fx["data"], columns=list(dict.fromkeys(cols))).to_pydict()
    rows = np.asarray(fx["row_index"])
    blocks, names = [], []
    for c in d["numeric"]:
        blocks.append(np.asarray(t[c], dtype=float)[rows][:, None])
        names.append(c)
    for c in d["categorical"]:
        v = np.asarray(t[c], dtype=object)[rows]
        for lv in d["categorical_levels"][c][1:]:
            blocks.append((v == lv).astype(float)[:, None])
            names.append(c + lv)
    X = np.hstack(blocks)
    y = np.asarray(t[fx["label"]], dtype=float)[rows]
    if fx.get("weights_column"):
        w = np.asarray(t[fx["weights_column"]], dtype=float)[rows] / fx["weights_divisor"]
    else:
        w = np.ones(len(rows))
    return X, y, w, names


def deviance(family, y, eta, w):
    if family == "binomial":
        # 2 * sum w * [log(1+exp(eta)) - y*eta]  (y in {0,1}: saturated loglik = 0)
        return 2 * np.sum(w * (np.logaddexp(0, eta) - y * eta))
    if family == "poisson":
        mu = np.exp(eta)
        ylogy = np.where(y > 0, y * np.log(np.where(y > 0, y, 1)), 0.0)
        return 2 * np.sum(w * (ylogy - y * eta - (y - mu)))
    if family == "gaussian":
        return np.sum(w * (y - eta) ** 2)
    raise ValueError(family)


def mean_fn(family, eta):
    return {"binomial": lambda e: 1 / (1 + np.exp(-e)), "poisson": np.exp, "gaussian": lambda e: e}[family](eta)


def check(path):
    fx = json.loads(Path(path).read_text())
    X, y, w, names = design(fx)
    fam, alpha = fx["family"], fx["alpha"]
    n, p = X.shape
    bad = []
    if names != fx["coef_names"][1:]:
        bad.append("coef_names differ from the rebuilt design")
    lam = np.asarray(fx["lambda"])
    B = np.asarray(fx["coef_path"])
    dr = np.asarray(fx["dev_ratio"])
    if not np.all(np.diff(lam) < 0):
        bad.append("lambda not strictly decreasing")
    if not np.all(np.diff(dr) >= -1e-10):
        bad.append("dev_ratio decreasing somewhere")
    nnz = (B[:, 1:] != 0).sum(1)
    if not np.array_equal(nnz, np.asarray(fx["df"])):
        bad.append("df != nnz(coef)")
    if B.shape != (len(lam), p + 1):
        bad.append(f"coef_path shape {B.shape}")

    wn = w / w.sum()
    pf = np.asarray(fx.get("penalty_factor", np.ones(p)), dtype=float)
    vp = pf * p / pf.sum()
    if fx["standardize"]:
        xm = wn @ X
        s = np.sqrt(wn @ (X - xm) ** 2)
    else:
        s = np.ones(p)
    ysd = np.sqrt(wn @ (y - wn @ y) ** 2)

    # null deviance: intercept-only fit
    ybar = wn @ y
    eta0 = {"binomial": lambda: np.log(ybar / (1 - ybar)), "poisson": lambda: np.log(ybar),
            "gaussian": lambda: ybar}[fam]()
    nulldev = deviance(fam, y, np.full(n, eta0), w)
    dev_rel_err = abs(nulldev - fx["nulldev"]) / fx["nulldev"]

    kkt = {"ridge_over_ysd": [], "plain": []}
    dr_err = 0.0
    for k in range(len(lam)):
        b0, b = B[k, 0], B[k, 1:]
        eta = b0 + X @ b
        mu = mean_fn(fam, eta)
        dr_err = max(dr_err, abs(1 - deviance(fam, y, eta, w) / fx["nulldev"] - dr[k]))
        g = -(X.T @ (wn * (y - mu)))  # gradient of the mean (weight-normalised) negative loglik
        g0 = -np.sum(wn * (y - mu))
        for mode in kkt:
            ridge_scale = 1 / ysd if (mode == "ridge_over_ysd" and fam == "gaussian") else 1.0
            pen_l1 = lam[k] * vp * alpha * s
            pen_l2 = lam[k] * vp * (1 - alpha) * s**2 * ridge_scale
            act = b != 0
            r = np.where(act, np.abs(g + pen_l2 * b + pen_l1 * np.sign(b)),
                         np.maximum(np.abs(g) - pen_l1, 0))
            # in units of the gradient w.r.t. a standardized coefficient (r / s_j); the intercept's
            # stationarity |mean_w(y - mu)| is included
            viol = max(np.max(r / np.maximum(s, 1e-300)), abs(g0))
            rel = viol / lam[k]
            if fam == "gaussian":
                viol /= ysd  # glmnet works on y / sd_w(y): report in those units
            kkt[mode].append((viol, rel))
    res = {
        "file": Path(path).name, "n_obs": n, "p": p, "nlambda": len(lam), "lambda0": lam[0],
        "lambda_last": lam[-1], "final_dev_ratio": dr[-1], "final_nnz": int(nnz[-1]),
        "nulldev_rel_err": dev_rel_err, "dev_ratio_max_abs_err": dr_err,
        "max_kkt_abs": max(v[0] for v in kkt["plain"]),
        "max_kkt_rel_to_lambda": max(v[1] for v in kkt["plain"]),
    }
    best = res["max_kkt_abs"]
    if fam == "gaussian":
        # gaussian: violations divided by sd_w(y) (units of glmnet's internally standardized y).
        # "plain" = ridge term lambda*vp*(1-alpha)*b^2/2 on the original y scale;
        # "ridge_over_ysd" = ridge term divided by sd_w(y) (what glmnet actually solves).
        res["max_kkt_abs_ridge_over_ysd"] = max(v[0] for v in kkt["ridge_over_ysd"])
        res["max_kkt_rel_to_lambda_ridge_over_ysd"] = max(v[1] for v in kkt["ridge_over_ysd"])
        res["y_sd_weighted_1_over_n"] = ysd
        best = min(best, res["max_kkt_abs_ridge_over_ysd"])
    if best > 1e-5:
        bad.append(f"KKT violation {best:.3g}")
    if dev_rel_err > 1e-8 or dr_err > 1e-7:
        bad.append("deviance recomputation mismatch")
    res["problems"] = bad
    return res


def main():
    files = sys.argv[1:] or [ROOT / "fixtures" / "reference" / f for f in DEFAULT]
    ok = True
    for f in files:
        r = check(f)
        ok &= not r["problems"]
        print(json.dumps(r, default=float))
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
