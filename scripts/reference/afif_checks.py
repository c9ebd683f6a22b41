#!/usr/bin/env python3
"""Outside-oracle fixtures for issue 7 (AFIF / approximate leave-one-out influence).

numpy/scipy only, fixed seeds, the SAME data generation (same RNG streams, same draw order) and
the same solver as ../shared/research/checks/check_alo.py and check_noncanon.py, so the numbers
quoted in ../shared/research/afif.md (sections 2, 3.2, 5, 6.4, 10.3) reproduce; the script prints
the lines those checks print.  Differences from the checks: every fit is run tighter (proximal
Newton to |step| < 1e-13, then a Newton polish on the active set to ~1e-15, with the KKT residual
recorded), the per-row arrays are written out, and the mean-form exact LOO is done for ALL rows.

Fixtures written (paths relative to the repo root; run from anywhere):

  fixtures/alo_l1_logistic.parquet          x1..x40 (float64), y (float64 0/1); n = 300
  fixtures/reference/alo_l1_logistic.json   (check_alo.py section 1)
      L1-penalised logistic regression, NO intercept, SUM form:
          J(b) = sum_i l_i(b) + Lambda * ||b||_1,   Lambda = 2,
          l_i  = log(1 + exp(eta_i)) - y_i * eta_i  (logistic NLL in nats = deviance_i / 2),
          eta_i = x_i . b.
      The same fit in glmnet's MEAN form is  (1/n) sum_i l_i + lambda_mean * ||b||_1  with
      lambda_mean = Lambda / n (glmnet(..., family = "binomial", intercept = FALSE,
      standardize = FALSE, lambda = lambda_mean)).
      Exact LOO at fixed Lambda (sum form: remove l_i only) -> eta_loo_exact_sum;
      exact LOO at the same lambda_mean (= glmnet / cv.glmnet refit: sum form with
      Lambda' = (n-1) * lambda_mean, i.e. remove l_i AND lambda_mean * ||b||_1) -> eta_loo_exact_mean.
      ALO (Rad & Maleki, active set E, observed = Fisher weights for the logit link):
          h_i = l''_i x_iE' (X_E' diag(l'') X_E)^-1 x_iE,
          eta_alo_i = eta_i + (l'_i / l''_i) h_i / (1 - h_i),  eta_if_i = eta_i + (l'_i / l''_i) h_i.
      "logloss" = mean over rows of l(y_i, eta) in nats (NOT deviance: deviance = 2 * logloss).
  fixtures/alo_group_logistic.parquet       x1..x24, y; n = 250
  fixtures/reference/alo_group_logistic.json (check_alo.py section 2)
      group-lasso logistic, NO intercept, SUM form: sum_i l_i + Lambda * sum_g w_g ||b_g||_2,
      Lambda = 3, 8 groups of 3 consecutive columns, w_g = sqrt(3). ALO with and without the
      group-penalty curvature Lambda * w_g (I/||b_g|| - b_g b_g'/||b_g||^3) on the active groups.
  fixtures/noncanon_probit.parquet          x1..x4, y (0/1); n = 2000
  fixtures/reference/noncanon_probit.json   (check_alo.py section 3; note: it lives in
      check_alo.py, not check_noncanon.py, and its data come from the seed-0 stream after
      sections 1 and 2) unpenalised probit WITH intercept (design = [1, x1..x4]), loss = -loglik.
  fixtures/noncanon_gaussian_log.parquet    x1..x3, y; n = 2000
  fixtures/reference/noncanon_gaussian_log.json (check_noncanon.py, seed 2) unpenalised Gaussian
      family with log link WITH intercept (design = [1, x1..x3]), loss = 0.5 (y - mu)^2 (phi = 1;
      the IF / LOO delta-beta do not depend on phi).
  For both non-canonical fixtures: exact LOO delta-beta (beta_{-i} - beta, sign = removal effect)
  for the 40 rows with the largest |l'_i| (row indices 0-based), and
      Hessian-IF  H^-1 x_i l'_i,   Fisher-IF  F^-1 x_i l'_i,   Newton  (H - w^H_i x_i x_i')^-1 x_i l'_i
  (+ Fisher-Newton (F - w^F_i x_i x_i')^-1 x_i l'_i for Gaussian-log), H = X' diag(w^H) X,
  F = X' diag(w^F) X, l'_i = d loss_i / d eta_i.

Conventions for every JSON: row indices and column indices are 0-based; "x1" is column 0 of the
penalised design (the L1 / group fixtures have no intercept column at all); all numbers are full
precision float64; eta_* are linear predictors (logit / probit / log scale).

If Rscript with glmnet is available, the L1 fixture is also cross-checked against R glmnet
(scripts/reference/afif_glmnet_crosscheck.R): coefficients at lambda_mean and the exact mean-form
LOO for every row, written under "glmnet_crosscheck".

Usage: python3 scripts/reference/afif_checks.py   (about 2 minutes)
"""
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy
from numpy.linalg import solve, norm
from scipy.stats import norm as normal

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
FIX = os.path.join(ROOT, "fixtures")
REF = os.path.join(FIX, "reference")

sig = lambda t: 1 / (1 + np.exp(-t))
ll = lambda y, e: np.logaddexp(0, e) - y * e          # logistic NLL, eta = logit
TOL = 1e-13


# ----------------------------------------------------------------------------------------------
# solver (verbatim from check_alo.py, tolerance exposed) + active-set Newton polish
# ----------------------------------------------------------------------------------------------
def prox_newton(X, y, Lam, groups, wg, b0=None, tol=1e-12):
    """min_b sum_i ll(y_i, x_i'b) + Lam * sum_g wg*||b_g||_2  (groups of size 1 => lasso)."""
    p = X.shape[1]; b = np.zeros(p) if b0 is None else b0.copy()
    F = lambda b: ll(y, X@b).sum() + Lam*sum(wg*np.linalg.norm(b[g]) for g in groups)
    for outer in range(200):
        mu = sig(X@b); g = X.T@(mu-y); H = X.T@((mu*(1-mu))[:, None]*X) + 1e-12*np.eye(p)
        c = H@b - g; z = b.copy()
        Lg = [np.linalg.eigvalsh(H[np.ix_(gr, gr)]).max() for gr in groups]
        for inner in range(5000):
            zold = z.copy()
            for gi, gr in enumerate(groups):
                r = c[gr] - H[gr]@z + H[np.ix_(gr, gr)]@z[gr]      # partial residual
                if len(gr) == 1:
                    j = gr[0]; v = r[0]; z[j] = np.sign(v)*max(abs(v)-Lam*wg, 0)/H[j, j]
                else:
                    for _ in range(50):   # prox-gradient on the block
                        v = z[gr] + (r - H[np.ix_(gr, gr)]@z[gr])/Lg[gi]
                        nv = np.linalg.norm(v); z[gr] = max(0, 1-Lam*wg/(Lg[gi]*nv))*v if nv > 0 else 0*v
            if np.abs(z-zold).max() < 1e-15: break
        d = z-b; t = 1.0; f0 = F(b)
        while F(b+t*d) > f0 + 1e-14*abs(f0) and t > 1e-8: t *= 0.5
        b = b + t*d
        if np.abs(t*d).max() < tol: break
    return b


def kkt_group(X, y, b, Lam, groups, wg):
    """max KKT violation of sum_i ll + Lam*sum_g wg||b_g||, relative to Lam*wg."""
    g = X.T @ (sig(X @ b) - y); worst = 0.0
    for gr in groups:
        nb = norm(b[gr])
        if nb > 0:
            worst = max(worst, norm(g[gr] + Lam * wg * b[gr] / nb))
        else:
            worst = max(worst, max(norm(g[gr]) - Lam * wg, 0.0))
    return worst / (Lam * wg)


def polish(X, y, b, Lam, groups, wg, iters=30):
    """Newton on the active groups of the (smooth there) objective; keeps the support.
    Returns the polished b if it stays on the same support with a smaller KKT residual."""
    act = [gr for gr in groups if norm(b[gr]) > 0]
    if not act:
        return b
    A = np.concatenate(act); bb = b.copy()
    for _ in range(iters):
        mu = sig(X @ bb); XA = X[:, A]
        g = XA.T @ (mu - y); H = XA.T @ ((mu * (1 - mu))[:, None] * XA)
        off = 0
        for gr in act:
            k = len(gr); bg = bb[gr]; nb = norm(bg)
            g[off:off + k] += Lam * wg * bg / nb
            H[off:off + k, off:off + k] += Lam * wg * (np.eye(k) / nb - np.outer(bg, bg) / nb**3)
            off += k
        step = solve(H, g); bb[A] -= step
        if np.abs(step).max() < 1e-16:
            break
    same = all(norm(bb[gr]) > 0 for gr in act) and all(
        np.all(np.sign(bb[gr]) == np.sign(b[gr])) for gr in act if len(gr) == 1)
    if same and kkt_group(X, y, bb, Lam, groups, wg) <= kkt_group(X, y, b, Lam, groups, wg):
        return bb
    return b


def fit(X, y, Lam, groups, wg, b0=None):
    b = prox_newton(X, y, Lam, groups, wg, b0=b0, tol=TOL)
    b = polish(X, y, b, Lam, groups, wg)
    return b, kkt_group(X, y, b, Lam, groups, wg)


def alo_block(X, y, b, A, Hpen):
    eta = X@b; mu = sig(eta); d1 = mu-y; d2 = mu*(1-mu)
    XA = X[:, A]; H = XA.T@(d2[:, None]*XA) + Hpen
    h = d2*np.einsum('ij,ji->i', XA, solve(H, XA.T))
    return eta, d1, d2, h


def summary(y, eta, eta_loo, eta_alo, eta_if):
    s = eta_loo - eta
    return dict(
        loocv_logloss_exact=float(ll(y, eta_loo).mean()), loocv_logloss_alo=float(ll(y, eta_alo).mean()),
        loocv_logloss_if=float(ll(y, eta_if).mean()), insample_logloss=float(ll(y, eta).mean()),
        median_relerr_shift_alo=float(np.median(np.abs(eta_alo - eta_loo) / np.abs(s))),
        median_relerr_shift_if=float(np.median(np.abs(eta_if - eta_loo) / np.abs(s))),
        slope_loo_shift_on_if_shift=float(np.polyfit(eta_if - eta, s, 1)[0]))


def report(tag, S):
    print("%s LOO-CV logloss exact=%.5f ALO=%.5f IF=%.5f in-sample=%.5f" % (
        tag, S["loocv_logloss_exact"], S["loocv_logloss_alo"], S["loocv_logloss_if"], S["insample_logloss"]))
    print("%s median rel.err of LOO shift: ALO=%.4f IF=%.4f ; slope(LOO shift ~ IF shift)=%.3f" % (
        tag, S["median_relerr_shift_alo"], S["median_relerr_shift_if"], S["slope_loo_shift_on_if_shift"]))


def fl(a):
    return np.asarray(a, dtype=float).tolist()


def write_parquet(path, X, y, names):
    cols = {nm: pa.array(np.ascontiguousarray(X[:, j]), pa.float64()) for j, nm in enumerate(names)}
    cols["y"] = pa.array(np.asarray(y, float), pa.float64())
    pq.write_table(pa.table(cols), path, compression="zstd", compression_level=9)


def write_json(path, obj):
    with open(path, "w") as f:
        json.dump(obj, f, indent=1, allow_nan=False)
        f.write("\n")


def versions():
    return dict(python=platform.python_version(), numpy=np.__version__, scipy=scipy.__version__,
                pyarrow=pa.__version__)


t_start = time.time()
# ----------------------------------------------------------------------------------------------
# data: the seed-0 stream of check_alo.py, drawn in the same order (sections 1, 2, 3)
# ----------------------------------------------------------------------------------------------
rng = np.random.default_rng(0)
n1, p1 = 300, 40
X1 = rng.standard_normal((n1, p1))/np.sqrt(p1)*3
bt1 = np.zeros(p1); bt1[:8] = rng.standard_normal(8)*2
y1 = (rng.random(n1) < sig(X1@bt1)).astype(float)
n2, G2, gs2 = 250, 8, 3; p2 = G2*gs2
X2 = rng.standard_normal((n2, p2))/np.sqrt(p2)*3
bt2 = np.zeros(p2); bt2[:6] = rng.standard_normal(6)*2
y2 = (rng.random(n2) < sig(X2@bt2)).astype(float)
n3, p3 = 2000, 5
X3 = np.column_stack([np.ones(n3), rng.standard_normal((n3, p3-1))])
bt3 = np.array([-0.3, 1.0, -0.5, 0.25, 0.0])
y3 = (rng.random(n3) < normal.cdf(X3@bt3)).astype(float)

# ----------------------------------------------------------------------------------------------
# a. L1 logistic, sum form, no intercept
# ----------------------------------------------------------------------------------------------
n, p, X, y = n1, p1, X1, y1
Lam = 2.0; lam = Lam / n; groups1 = [np.array([j]) for j in range(p)]
b, kkt_full = fit(X, y, Lam, groups1, 1.0)
E = np.flatnonzero(np.abs(b) > 1e-9)
eta, d1, d2, h = alo_block(X, y, b, E, 0)
eta_alo = eta + d1/d2*h/(1-h); eta_if = eta + d1/d2*h
B_sum = np.empty((n, p)); B_mean = np.empty((n, p)); kkt_sum = []; kkt_mean = []
for i in range(n):
    Xi, yi = np.delete(X, i, 0), np.delete(y, i)
    B_sum[i], k1 = fit(Xi, yi, Lam, groups1, 1.0, b0=b); kkt_sum.append(k1)
    B_mean[i], k2 = fit(Xi, yi, (n-1)*lam, groups1, 1.0, b0=b); kkt_mean.append(k2)
eta_loo = np.einsum("ij,ij->i", X, B_sum); eta_loo_mean = np.einsum("ij,ij->i", X, B_mean)
S1 = summary(y, eta, eta_loo, eta_alo, eta_if)
print("[L1-logistic] n=%d p=%d |E|=%d max h=%.3f mean h=%.4f (sum h=%.2f)" % (n, p, len(E), h.max(), h.mean(), h.sum()))
report("  ", S1)
g = X.T@(sig(X@b)-y); kkt_inactive = float(np.abs(np.delete(g, E)).max()/Lam)
print("   KKT max |g_j|/Lam on inactive = %.6f (must be <=1)" % kkt_inactive)
# mean-form Newton step (centered score) and the sum-vs-mean comparison of check_alo.py
s = np.sign(b[E]); XE = X[:, E]; HE = XE.T@(d2[:, None]*XE)
rows = []; eta_newton_mean = np.empty(n)
for i in range(n):
    H = HE - d2[i]*np.outer(XE[i], XE[i])
    dm = solve(H, XE[i]*d1[i] + lam*s); ds = solve(H, XE[i]*d1[i])
    eta_newton_mean[i] = eta[i] + XE[i]@dm
    bs, bm = B_sum[i], B_mean[i]
    rows.append([norm(bs-b), norm(bm-bs), norm(ds-(bs-b)[E])/norm(bs-b), norm(dm-(bm-b)[E])/norm(bm-b),
                 norm(ds-(bm-b)[E])/norm(bm-b)])
rows = np.array(rows); r15 = np.median(rows[:15], 0); rall = np.median(rows, 0)
print("   sum vs mean form: med||b_-i-b||=%.4g med||b_mean-b_sum||=%.4g | Newton rel.err: sum-step vs sum-LOO %.4f, mean-step vs mean-LOO %.4f, sum-step vs mean-LOO %.4f" % tuple(r15))
print("   (same over all %d rows: %.4g %.4g | %.4f %.4f %.4f)" % ((n,) + tuple(rall)))
Sm = summary(y, eta, eta_loo_mean, eta_newton_mean, eta_if)
print("   mean-form exact LOO-CV logloss=%.5f ; mean-form Newton (centered score) logloss=%.5f, median rel.err of LOO shift %.4f" % (
    Sm["loocv_logloss_exact"], Sm["loocv_logloss_alo"], Sm["median_relerr_shift_alo"]))
print("   max KKT residual: full fit %.2e, sum-form refits %.2e, mean-form refits %.2e" % (kkt_full, max(kkt_sum), max(kkt_mean)))
supp_changes = int(sum(not np.array_equal(np.flatnonzero(np.abs(B_sum[i]) > 0), E) for i in range(n)))

names1 = ["x%d" % (j + 1) for j in range(p)]
write_parquet(os.path.join(FIX, "alo_l1_logistic.parquet"), X, y, names1)
J1 = dict(
    description="L1-penalised logistic regression, no intercept, sum form; data and solver of "
                "../shared/research/checks/check_alo.py section 1 (afif.md 10.3 items 3-5)",
    generator="scripts/reference/afif_checks.py (numpy default_rng(0): X = N(0,1)/sqrt(p)*3, "
              "beta_true[:8] = N(0,1)*2, y ~ Bernoulli(sigmoid(X beta_true)))",
    data="fixtures/alo_l1_logistic.parquet", columns=names1, label="y",
    intercept=False, standardize=False, n=n, p=p,
    objective_sum="J(b) = sum_i [log(1+exp(eta_i)) - y_i eta_i] + Lambda_sum * ||b||_1, eta_i = x_i . b",
    objective_mean="(1/n) sum_i [log(1+exp(eta_i)) - y_i eta_i] + lambda_mean * ||b||_1 (glmnet binomial, "
                   "intercept=FALSE, standardize=FALSE); the per-row loss is deviance_i / 2",
    Lambda_sum=Lam, lambda_mean=lam,
    loss_units="logloss = mean_i [log(1+exp(eta)) - y eta] in nats (deviance = 2 * logloss)",
    coefficients=fl(b), active_set=E.tolist(), active_signs=fl(s),
    kkt_max_abs_grad_over_Lambda_inactive=kkt_inactive,
    kkt_residual_rel={"full_fit": kkt_full, "loo_sum_max": max(kkt_sum), "loo_mean_max": max(kkt_mean)},
    solver="proximal Newton (check_alo.py prox_newton) to |step| < 1e-13, then Newton on the active set "
           "(support kept); kkt_residual_rel = max_j |g_j + Lambda s_j| / Lambda on the support, "
           "max(|g_j| - Lambda, 0)/Lambda off it",
    eta=fl(eta), dloss_deta=fl(d1), d2loss_deta2=fl(d2), h=fl(h), sum_h=float(h.sum()),
    eta_loo_exact_sum=fl(eta_loo), eta_alo=fl(eta_alo), eta_if=fl(eta_if),
    eta_loo_exact_mean=fl(eta_loo_mean), eta_newton_mean=fl(eta_newton_mean),
    beta_loo_exact_sum=[fl(r) for r in B_sum], beta_loo_exact_mean=[fl(r) for r in B_mean],
    loo_support_changes_sum=supp_changes,
    formulas={
        "h": "h_i = d2_i * x_iE' (X_E' diag(d2) X_E)^-1 x_iE, d1 = mu - y, d2 = mu (1 - mu)",
        "eta_alo": "eta_i + d1_i/d2_i * h_i/(1-h_i)",
        "eta_if": "eta_i + d1_i/d2_i * h_i",
        "eta_loo_exact_sum": "x_i . argmin_b sum_{j != i} l_j(b) + Lambda_sum ||b||_1",
        "eta_loo_exact_mean": "x_i . argmin_b (1/(n-1)) sum_{j != i} l_j(b) + lambda_mean ||b||_1 "
                              "(= sum form with Lambda' = (n-1) lambda_mean; what glmnet/cv.glmnet refits)",
        "eta_newton_mean": "eta_i + x_iE' (X_E' diag(d2) X_E - d2_i x_iE x_iE')^-1 (x_iE d1_i + lambda_mean sign(b_E)) "
                           "(mean-form Newton step with the centered score, afif.md 1)",
        "beta_loo_exact_*": "n x p, row i = full coefficient vector of the refit without row i",
        "median_relerr_shift_X": "median_i |eta_X_i - eta_loo_i| / |eta_loo_i - eta_i|",
        "slope": "least-squares slope of (eta_loo - eta) on (eta_if - eta), with intercept (np.polyfit deg 1)",
    },
    loocv_logloss_exact_sum=S1["loocv_logloss_exact"], loocv_logloss_alo=S1["loocv_logloss_alo"],
    loocv_logloss_if=S1["loocv_logloss_if"], loocv_logloss_exact_mean=Sm["loocv_logloss_exact"],
    loocv_logloss_newton_mean=Sm["loocv_logloss_alo"], insample_logloss=S1["insample_logloss"],
    median_relerr_shift_alo=S1["median_relerr_shift_alo"], median_relerr_shift_if=S1["median_relerr_shift_if"],
    median_relerr_shift_newton_mean_vs_loo_mean=Sm["median_relerr_shift_alo"],
    slope_loo_shift_on_if_shift=S1["slope_loo_shift_on_if_shift"],
    sum_vs_mean_first15=dict(zip(["med_norm_dbeta_sum", "med_norm_bmean_minus_bsum", "newton_sum_vs_loo_sum",
                                  "newton_mean_vs_loo_mean", "newton_sum_vs_loo_mean"], map(float, r15))),
    sum_vs_mean_all=dict(zip(["med_norm_dbeta_sum", "med_norm_bmean_minus_bsum", "newton_sum_vs_loo_sum",
                              "newton_mean_vs_loo_mean", "newton_sum_vs_loo_mean"], map(float, rall))),
    afif_md_targets={"loocv_logloss_exact": 0.39478, "loocv_logloss_alo": 0.39693, "loocv_logloss_if": 0.38726,
                     "insample_logloss": 0.32583, "active": 24, "sum_h": 24.00, "median_relerr_alo": 0.0031,
                     "median_relerr_if": 0.068, "slope": 1.114},
    versions=versions(),
)

# ----------------------------------------------------------------------------------------------
# b. group-lasso logistic, sum form, no intercept
# ----------------------------------------------------------------------------------------------
n, p, X, y, G, gs = n2, p2, X2, y2, G2, gs2
groups = [np.arange(k*gs, (k+1)*gs) for k in range(G)]; wg = np.sqrt(gs); Lam = 3.0
b, kkt_full_g = fit(X, y, Lam, groups, wg)
act = [k for k in range(G) if np.linalg.norm(b[groups[k]]) > 1e-9]; A = np.concatenate([groups[k] for k in act])
Hpen = np.zeros((len(A), len(A))); off = 0
for k in act:
    bg = b[groups[k]]; nb = np.linalg.norm(bg)
    Hpen[off:off+gs, off:off+gs] = Lam*wg*(np.eye(gs)/nb - np.outer(bg, bg)/nb**3); off += gs
Bg = np.empty((n, p)); kkt_g = []
for i in range(n):
    Bg[i], k1 = fit(np.delete(X, i, 0), np.delete(y, i), Lam, groups, wg, b0=b); kkt_g.append(k1)
eta_loo = np.einsum("ij,ij->i", X, Bg)
J2 = dict(
    description="group-lasso logistic regression, no intercept, sum form; data and solver of "
                "../shared/research/checks/check_alo.py section 2 (afif.md 5 and 10.3 item 6)",
    generator="scripts/reference/afif_checks.py (numpy default_rng(0) stream after the L1 fixture's draws: "
              "X = N(0,1)/sqrt(p)*3, beta_true[:6] = N(0,1)*2, y ~ Bernoulli(sigmoid(X beta_true)))",
    data="fixtures/alo_group_logistic.parquet", columns=["x%d" % (j + 1) for j in range(p)], label="y",
    intercept=False, standardize=False, n=n, p=p,
    groups=[gr.tolist() for gr in groups], group_weights=[float(wg)] * G, wg=float(wg),
    objective_sum="J(b) = sum_i [log(1+exp(eta_i)) - y_i eta_i] + Lambda_sum * sum_g wg_g ||b_g||_2",
    Lambda_sum=Lam, lambda_mean=Lam / n,
    loss_units="logloss = mean_i [log(1+exp(eta)) - y eta] in nats (deviance = 2 * logloss)",
    coefficients=fl(b), active_groups=act, active_coordinates=A.tolist(),
    kkt_residual_rel={"full_fit": kkt_full_g, "loo_sum_max": max(kkt_g)},
    solver="proximal Newton (check_alo.py prox_newton) to |step| < 1e-13, then Newton on the active groups; "
           "kkt_residual_rel = max over groups of ||g_g + Lambda wg b_g/||b_g|| || (active) or "
           "max(||g_g|| - Lambda wg, 0) (inactive), divided by Lambda wg",
    penalty_curvature="Lambda * wg * (I/||b_g|| - b_g b_g'/||b_g||^3) on each active group (block diagonal)",
    eta_loo_exact_sum=fl(eta_loo), beta_loo_exact_sum=[fl(r) for r in Bg],
    formulas={"h": "h_i = d2_i x_iA' (X_A' diag(d2) X_A + Hpen)^-1 x_iA",
              "eta_alo": "eta_i + d1_i/d2_i * h_i/(1-h_i)", "eta_if": "eta_i + d1_i/d2_i * h_i",
              "eta_loo_exact_sum": "x_i . argmin_b sum_{j != i} l_j(b) + Lambda_sum sum_g wg ||b_g||"},
    afif_md_targets={"with_curvature": {"loocv_logloss_exact": 0.32942, "loocv_logloss_alo": 0.32999,
                                        "median_relerr_alo": 0.016},
                     "without_curvature": {"loocv_logloss_alo": 0.34535, "median_relerr_alo": 0.51}},
    versions=versions(),
)
for key, tag, HP in [("with_curvature", "[group-lasso +pen curvature] ", Hpen),
                     ("without_curvature", "[group-lasso  NO pen curv.]  ", 0*Hpen)]:
    eta, d1, d2, h = alo_block(X, y, b, A, HP)
    S = summary(y, eta, eta_loo, eta + d1/d2*h/(1-h), eta + d1/d2*h)
    print("%s active groups=%d/%d mean h=%.4f" % (tag, len(act), G, h.mean()))
    report("  ", S)
    J2[key] = dict(h=fl(h), sum_h=float(h.sum()), eta_alo=fl(eta + d1/d2*h/(1-h)), eta_if=fl(eta + d1/d2*h), **S)
J2["eta"] = fl(eta); J2["dloss_deta"] = fl(d1); J2["d2loss_deta2"] = fl(d2)
J2["loocv_logloss_exact_sum"] = J2["with_curvature"]["loocv_logloss_exact"]
J2["insample_logloss"] = J2["with_curvature"]["insample_logloss"]
print("   max KKT residual: full fit %.2e, refits %.2e" % (kkt_full_g, max(kkt_g)))
write_parquet(os.path.join(FIX, "alo_group_logistic.parquet"), X, y, J2["columns"])


# ----------------------------------------------------------------------------------------------
# c1. probit (check_alo.py section 3)
# ----------------------------------------------------------------------------------------------
def fit_probit(X, y, b0):
    b = b0.copy()
    for it in range(200):
        e = X@b; P = np.clip(normal.cdf(e), 1e-15, 1-1e-15); f = normal.pdf(e)
        step = solve(X.T@((f**2/(P*(1-P)))[:, None]*X), X.T@((y-P)*f/(P*(1-P))))
        b = b + step
        if np.abs(step).max() < 1e-14: break
    return b


n, p, X, y = n3, p3, X3, y3
b = fit_probit(X, y, np.zeros(p))
e = X@b; P = normal.cdf(e); f = normal.pdf(e)
wF = f**2/(P*(1-P))
dl = -(y-P)*f/(P*(1-P))
dg = (-e*f*P*(1-P) - f*f*(1-2*P))/(P*(1-P))**2
wH = wF - (y-P)*dg
F = X.T@(wF[:, None]*X); Hm = X.T@(wH[:, None]*X)
eps = 1e-6; i0 = 7
lossi = lambda t: -(y[i0]*normal.logcdf(t) + (1-y[i0])*normal.logcdf(-t))
fd = (lossi(e[i0]+eps) - 2*lossi(e[i0]) + lossi(e[i0]-eps))/eps**2
print("[probit] FD check obs weight: analytic %.6f vs FD %.6f" % (wH[i0], fd))
print("[probit] min wH=%.4f max wH=%.4f ; rel ||H-F||_F/||F||_F = %.4f ; mean(wH)/mean(wF)=%.4f" % (
    wH.min(), wH.max(), np.linalg.norm(Hm-F)/np.linalg.norm(F), wH.mean()/wF.mean()))
idx = np.argsort(-np.abs(dl))[:40]
D = {k: [] for k in ["exact", "hessian_if", "fisher_if", "newton_hessian", "newton_fisher"]}
for i in idx:
    bi = fit_probit(np.delete(X, i, 0), np.delete(y, i), b)
    gi = X[i]*dl[i]
    D["exact"].append(bi-b); D["hessian_if"].append(solve(Hm, gi)); D["fisher_if"].append(solve(F, gi))
    D["newton_hessian"].append(solve(Hm - wH[i]*np.outer(X[i], X[i]), gi))
    D["newton_fisher"].append(solve(F - wF[i]*np.outer(X[i], X[i]), gi))
D = {k: np.array(v) for k, v in D.items()}
relerr = {k: norm(D[k]-D["exact"], axis=1)/norm(D["exact"], axis=1) for k in D if k != "exact"}
print("[probit] LOO dtheta rel.err (40 largest-|score| pts): Hessian-IF %.4f  Fisher-IF %.4f  Newton(H_-i) %.4f (medians)" % (
    np.median(relerr["hessian_if"]), np.median(relerr["fisher_if"]), np.median(relerr["newton_hessian"])))
names3 = ["x%d" % j for j in range(1, p)]
write_parquet(os.path.join(FIX, "noncanon_probit.parquet"), X[:, 1:], y, names3)


def noncanon_json(kind, desc, gen, data, names, b, eta, mu, dl, wF, wH, F, H, idx, D, relerr, extra, targets):
    return dict(
        description=desc, generator=gen, data=data, columns=names, label="y", intercept=True,
        coef_names=["(Intercept)"] + names, n=len(eta), p=len(b), penalty=None, **kind,
        coefficients=fl(b), eta=fl(eta), mu=fl(mu), dloss_deta=fl(dl), w_fisher=fl(wF), w_hessian=fl(wH),
        fisher_matrix=[fl(r) for r in F], hessian_matrix=[fl(r) for r in H],
        rel_frobenius_H_minus_F=float(norm(H-F)/norm(F)),
        checked_rows=idx.tolist(), checked_rows_rule="the 40 rows with the largest |dloss_deta| (np.argsort(-|l'|)[:40])",
        delta_beta_sign="beta_{-i} - beta_hat (removal effect), sum form, no penalty",
        formulas={"hessian_if": "H^-1 x_i l'_i", "fisher_if": "F^-1 x_i l'_i",
                  "newton_hessian": "(H - w^H_i x_i x_i')^-1 x_i l'_i", "newton_fisher": "(F - w^F_i x_i x_i')^-1 x_i l'_i",
                  "H": "X' diag(w_hessian) X", "F": "X' diag(w_fisher) X",
                  "relerr": "||est - exact||_2 / ||exact||_2 per checked row"},
        delta_beta={k: [fl(r) for r in v] for k, v in D.items()},
        relerr={k: fl(v) for k, v in relerr.items()},
        median_relerr={k: float(np.median(v)) for k, v in relerr.items()},
        afif_md_targets=targets, versions=versions(), **extra)


J3 = noncanon_json(
    dict(family="binomial", link="probit",
         loss="l_i = -[y_i log Phi(eta_i) + (1-y_i) log(1-Phi(eta_i))]"),
    "unpenalised probit regression with intercept; data and code of ../shared/research/checks/check_alo.py section 3 "
    "(afif.md 2: Fisher vs Hessian IF)",
    "scripts/reference/afif_checks.py (numpy default_rng(0) stream after the L1 and group fixtures' draws: "
    "x ~ N(0,1), beta_true = [-0.3, 1, -0.5, 0.25, 0], y ~ Bernoulli(Phi(eta)))",
    "fixtures/noncanon_probit.parquet", names3, b, e, P, dl, wF, wH, F, Hm, idx, D, relerr,
    dict(fit="Fisher scoring to max|step| < 1e-14", fd_check={"row": i0, "w_hessian": float(wH[i0]), "fd": float(fd)},
         w_fisher_formula="phi(eta)^2 / (Phi (1 - Phi))",
         w_hessian_formula="w_fisher - (y - Phi) d/deta[phi/(Phi(1-Phi))]"),
    {"hessian_if": 0.0087, "fisher_if": 0.0167, "newton_hessian": 0.0029, "rel_frobenius_H_minus_F": 0.016})

# ----------------------------------------------------------------------------------------------
# c2. Gaussian family, log link (check_noncanon.py, seed 2)
# ----------------------------------------------------------------------------------------------
rng = np.random.default_rng(2)
n, p = 2000, 4
X = np.column_stack([np.ones(n), rng.standard_normal((n, p-1))*0.5])
bt = np.array([0.5, 0.8, -0.4, 0.3])
mu_t = np.exp(X@bt); y = mu_t + rng.standard_normal(n)*(0.3+0.5*mu_t)


def fit_glog(X, y, b):
    for _ in range(300):
        mu = np.exp(X@b); step = solve(X.T@((mu**2)[:, None]*X), X.T@((y-mu)*mu)); b = b+step
        if np.abs(step).max() < 1e-14: break
    return b


b = fit_glog(X, y, np.zeros(p)); mu = np.exp(X@b)
dl = -(y-mu)*mu; wF = mu**2; wH = mu**2 - (y-mu)*mu
F = X.T@(wF[:, None]*X); H = X.T@(wH[:, None]*X)
print("[gauss-log] fraction negative observed weights = %.3f ; H pos.def? %s" % ((wH < 0).mean(), np.all(np.linalg.eigvalsh(H) > 0)))
print("[gauss-log] ||H-F||_F/||F||_F = %.3f" % (norm(H-F)/norm(F)))
idx = np.argsort(-np.abs(dl))[:40]
D = {k: [] for k in ["exact", "hessian_if", "fisher_if", "newton_hessian", "newton_fisher"]}
for i in idx:
    m = np.ones(n, bool); m[i] = False
    gi = X[i]*dl[i]
    D["exact"].append(fit_glog(X[m], y[m], b) - b); D["hessian_if"].append(solve(H, gi)); D["fisher_if"].append(solve(F, gi))
    D["newton_hessian"].append(solve(H - wH[i]*np.outer(X[i], X[i]), gi))
    D["newton_fisher"].append(solve(F - wF[i]*np.outer(X[i], X[i]), gi))
D = {k: np.array(v) for k, v in D.items()}
relerr = {k: norm(D[k]-D["exact"], axis=1)/norm(D["exact"], axis=1) for k in D if k != "exact"}
print("[gauss-log] LOO dtheta median rel.err: Hessian-IF %.4f Fisher-IF %.4f Newton(H_-i) %.4f FisherNewton(F_-i) %.4f" % tuple(
    np.median(relerr[k]) for k in ["hessian_if", "fisher_if", "newton_hessian", "newton_fisher"]))
names4 = ["x%d" % j for j in range(1, p)]
write_parquet(os.path.join(FIX, "noncanon_gaussian_log.parquet"), X[:, 1:], y, names4)
J4 = noncanon_json(
    dict(family="gaussian", link="log", loss="l_i = 0.5 (y_i - mu_i)^2, mu = exp(eta), phi = 1 (delta-beta is phi-free)"),
    "unpenalised Gaussian GLM with log link and intercept, heteroscedastic (misspecified) data; "
    "../shared/research/checks/check_noncanon.py (afif.md 2: observed weights can be negative)",
    "scripts/reference/afif_checks.py (numpy default_rng(2): x ~ N(0,1)*0.5, beta_true = [0.5, 0.8, -0.4, 0.3], "
    "y = mu + N(0,1)*(0.3 + 0.5 mu))",
    "fixtures/noncanon_gaussian_log.parquet", names4, b, X@b, mu, dl, wF, wH, F, H, idx, D, relerr,
    dict(fit="Fisher scoring (IRLS weights mu^2) to max|step| < 1e-14",
         w_fisher_formula="mu^2", w_hessian_formula="mu (2 mu - y)",
         fraction_negative_w_hessian=float((wH < 0).mean()),
         H_positive_definite=bool(np.all(np.linalg.eigvalsh(H) > 0))),
    {"hessian_if": 0.0068, "fisher_if": 0.0207, "newton_hessian": 0.0056, "newton_fisher": 0.0209,
     "fraction_negative_w_hessian": 0.070, "rel_frobenius_H_minus_F": 0.006})


# ----------------------------------------------------------------------------------------------
# optional outside cross-check of the L1 fixture with R glmnet (mean form)
# ----------------------------------------------------------------------------------------------
def glmnet_crosscheck():
    rscript = shutil.which("Rscript")
    if rscript is None:
        return None
    with tempfile.TemporaryDirectory() as td:
        csv = os.path.join(td, "l1.csv"); out = os.path.join(td, "out.json")
        np.savetxt(csv, np.column_stack([X1, y1]), delimiter=",", fmt="%.17g",
                   header=",".join(names1 + ["y"]), comments="")
        env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
        r = subprocess.run([rscript, os.path.join(ROOT, "scripts", "reference", "afif_glmnet_crosscheck.R"),
                            csv, repr(J1["lambda_mean"]), out], capture_output=True, text=True, env=env)
        if r.returncode != 0:
            print("glmnet cross-check failed:", r.stderr[-2000:])
            return None
        with open(out) as fh:
            g = json.load(fh)
    cb = np.array(g["coefficients"]); el = np.array(g["eta_loo_mean"])
    g["max_abs_diff_coefficients"] = float(np.abs(cb - np.array(J1["coefficients"])).max())
    g["max_abs_diff_eta_loo_mean"] = float(np.abs(el - np.array(J1["eta_loo_exact_mean"])).max())
    g["loocv_logloss_mean_glmnet"] = float(ll(y1, el).mean())
    print("[glmnet cross-check] glmnet %s: max|coef diff| = %.2e, max|eta_loo_mean diff| = %.2e, LOO-CV logloss (mean form) glmnet %.6f vs %.6f" % (
        g["glmnet_version"], g["max_abs_diff_coefficients"], g["max_abs_diff_eta_loo_mean"],
        g["loocv_logloss_mean_glmnet"], J1["loocv_logloss_exact_mean"]))
    return g


gx = glmnet_crosscheck()
if gx is not None:
    J1["glmnet_crosscheck"] = gx

write_json(os.path.join(REF, "alo_l1_logistic.json"), J1)
write_json(os.path.join(REF, "alo_group_logistic.json"), J2)
write_json(os.path.join(REF, "noncanon_probit.json"), J3)
write_json(os.path.join(REF, "noncanon_gaussian_log.json"), J4)
print("done in %.1f s" % (time.time() - t_start))
