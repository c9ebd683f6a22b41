#!/usr/bin/env python3
"""Independent checks of fixtures/reference/cv_glmnet_insurance_smoker{,_tight}.json (numpy only,
design rebuilt from the Parquet file without R):

 1. cvm / cvsd of the LOO and 10-fold runs recomputed from fit_preval_link at the stored lambda
    indices (cv.lognet's deviance with probabilities clipped to [1e-5, 1-1e-5]; class error);
 2. exact LOO refits for a few rows with an own IRLS + coordinate-descent lasso solver, compared
    with fit_preval_link, both for cv.glmnet's standardize = TRUE LOO (each refit re-standardizes
    with the sd of its n-1 rows, 1/(n-1) divisor) and for the fixed-standardization LOO;
 3. the 10-fold foldid rule;
 4. (informational, no assertion) ALO from the full-data path at the stored lambdas against the two
    exact LOO oracles: the mean-form Newton step with the centered score (afif.md 1),
       eta_i + (a_i l'_i + z_iE' H_E^-1 (lambda * sign(b_E))) / (1 - h_i),
    and the plain sum-form ALO eta_i + a_i l'_i / (1 - h_i), with z = [1, standardized x] (full-data
    mean/sd), H_E = Z_E' diag(l'') Z_E (sum form, intercept in E, sign 0 for it), a_i = z_iE' H_E^-1 z_iE,
    h_i = l''_i a_i. Metric: median_i |eta_alo - eta_loo| / |eta_loo - eta|, and cvm (deviance).
Usage: python3 scripts/reference/check_cv_glmnet.py [json ...]
"""
import json
import os
import sys

import numpy as np
import pyarrow.parquet as pq

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
sig = lambda t: 1 / (1 + np.exp(-t))


def design(j):
    t = pq.read_table(os.path.join(ROOT, j["data"])).to_pydict()
    cols, names = [], []
    for c in j["design"]["numeric"]:
        cols.append(np.asarray(t[c], float)); names.append(c)
    for c in j["design"]["categorical"]:
        v = np.asarray(t[c], dtype=object)
        for lv in sorted(set(v))[1:]:
            cols.append((v == lv).astype(float)); names.append(c + lv)
    X = np.column_stack(cols)[np.asarray(j["row_index"])]
    y = np.asarray(t[j["label"]], float)[np.asarray(j["row_index"])]
    assert ["(Intercept)"] + names == j["coef_names"], (names, j["coef_names"])
    return X, y


def lasso_logistic(Z, y, lam):
    """mean-form binomial lasso, unpenalized intercept, columns of Z already scaled."""
    m, p = Z.shape; b0 = 0.0; b = np.zeros(p)
    for _ in range(500):
        e = b0 + Z @ b; pr = sig(e); w = pr * (1 - pr); z = e + (y - pr) / w
        for _ in range(5000):
            old = np.r_[b0, b]
            r = z - b0 - Z @ b; b0 += (w @ r) / w.sum(); r = z - b0 - Z @ b
            for k in range(p):
                r += Z[:, k] * b[k]; v = (w * Z[:, k]) @ r / m; a = (w * Z[:, k] ** 2).sum() / m
                b[k] = np.sign(v) * max(abs(v) - lam, 0) / a; r -= Z[:, k] * b[k]
            if np.abs(np.r_[b0, b] - old).max() < 1e-15:
                break
        if np.abs(b0 + Z @ b - e).max() < 1e-14:
            break
    return b0, b


def per_row(y, eta):
    p = np.clip(sig(eta), 1e-5, 1 - 1e-5)
    dev = -2 * (y * np.log(p) + (1 - y) * np.log(1 - p))
    cls = np.where(y == 1, p <= 0.5, p > 0.5).astype(float)
    return dev, cls


def check(path):
    j = json.load(open(path)); X, y = design(j); n = len(y)
    print(os.path.relpath(path, ROOT), "n=%d thresh=%g max kkt_rel=%.1e" % (n, j["thresh"], max(j["kkt_rel_path"])))
    idx = j["preval_lambda_index_0based"]
    worst = 0.0
    for k, li in enumerate(idx):
        e = np.asarray(j["loo"]["deviance"]["fit_preval_link"][k]); dev, cls = per_row(y, e)
        worst = max(worst, abs(dev.mean() - j["loo"]["deviance"]["cvm"][li]), abs(cls.mean() - j["loo"]["class"]["cvm"][li]),
                    abs(np.sqrt(((dev - dev.mean()) ** 2).mean() / (n - 1)) - j["loo"]["deviance"]["cvsd"][li]))
        e = np.asarray(j["kfold"]["deviance"]["fit_preval_link"][k]); dev, cls = per_row(y, e)
        f = np.asarray(j["kfold"]["foldid"]); K = j["kfold"]["K"]
        fm = np.array([dev[f == q].mean() for q in range(1, K + 1)]); fs = np.array([(f == q).sum() for q in range(1, K + 1)])
        worst = max(worst, abs(dev.mean() - j["kfold"]["deviance"]["cvm"][li]), abs(cls.mean() - j["kfold"]["class"]["cvm"][li]),
                    abs(np.sqrt((fs * (fm - dev.mean()) ** 2).sum() / fs.sum() / (K - 1)) - j["kfold"]["deviance"]["cvsd"][li]))
    assert np.array_equal(np.asarray(j["kfold"]["foldid"]), np.arange(n) % j["kfold"]["K"] + 1)
    print("  1. cvm/cvsd recomputed from fit_preval_link: max |diff| = %.1e" % worst)
    mu, sd = X.mean(0), X.std(0)
    d_std, d_fix = [], []
    for k, li in enumerate(idx):
        lam = j["lambda"][li]
        for i in (0, 5, 100, n - 1):
            m = np.ones(n, bool); m[i] = False
            Z = (X - mu) / sd; b0, b = lasso_logistic(Z[m], y[m], lam)
            d_fix.append(abs(b0 + Z[i] @ b - j["loo_fixed_standardization"]["deviance"]["fit_preval_link"][k][i]))
            mu2, sd2 = X[m].mean(0), X[m].std(0); Z = (X - mu2) / sd2; b0, b = lasso_logistic(Z[m], y[m], lam)
            d_std.append(abs(b0 + Z[i] @ b - j["loo"]["deviance"]["fit_preval_link"][k][i]))
    print("  2. own exact LOO refits (rows 0, 5, 100, n-1 at %d lambdas) vs fit_preval_link: "
          "max |eta diff| standardize=TRUE LOO %.1e, fixed-standardization LOO %.1e" % (len(idx), max(d_std), max(d_fix)))
    print("  4. ALO vs exact LOO (median rel. err of the LOO shift; cvm = mean deviance):")
    print("     lambda#  |E|+1  sum h | mean-ALO vs fixedLOO  sum-ALO vs fixedLOO | mean-ALO vs stdLOO | cvm fixedLOO  stdLOO  mean-ALO  sum-ALO")
    Z = np.column_stack([np.ones(n), (X - mu) / sd])
    for k, li in enumerate(idx):
        c = np.asarray(j["coef_path"][li]); lam = j["lambda"][li]
        bs = np.r_[c[0] + (c[1:] * mu).sum(), c[1:] * sd]; E = np.union1d([0], np.flatnonzero(bs != 0))
        eta = Z @ bs; pr = sig(eta); d1 = pr - y; d2 = pr * (1 - pr); sg = np.sign(bs[E]); sg[0] = 0
        ZE = Z[:, E]; Hi = np.linalg.inv(ZE.T @ (d2[:, None] * ZE))
        a = np.einsum("ij,jk,ik->i", ZE, Hi, ZE); h = d2 * a
        alo_sum = eta + d1 * a / (1 - h); alo_mean = eta + (d1 * a + ZE @ (Hi @ (lam * sg))) / (1 - h)
        fx = np.asarray(j["loo_fixed_standardization"]["deviance"]["fit_preval_link"][k])
        st = np.asarray(j["loo"]["deviance"]["fit_preval_link"][k])
        rel = lambda e, ref: np.median(np.abs(e - ref) / np.abs(ref - eta))
        print("     %7d %5d %7.3f | %19.4f %20.4f | %18.4f | %11.6f %8.6f %9.6f %8.6f" % (
            li + 1, len(E), h.sum(), rel(alo_mean, fx), rel(alo_sum, fx), rel(alo_mean, st),
            per_row(y, fx)[0].mean(), per_row(y, st)[0].mean(), per_row(y, alo_mean)[0].mean(), per_row(y, alo_sum)[0].mean()))


if __name__ == "__main__":
    files = sys.argv[1:] or [os.path.join(ROOT, "fixtures", "reference", f) for f in
                             ("cv_glmnet_insurance_smoker.json", "cv_glmnet_insurance_smoker_tight.json")]
    for f in files:
        check(f)
