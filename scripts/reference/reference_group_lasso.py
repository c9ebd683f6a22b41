#!/usr/bin/env python3
"""Group-lasso logistic reference on insurance (label smoker_yes), raw (unscaled) columns.

Design (intercept separate, unpenalized):
  age | bmi | children | region[northwest] region[southeast] region[southwest] | sex[male]
  = 5 groups (sizes 1, 1, 1, 3, 1); categoricals one-hot with the first level in sorted order
  dropped (region: northeast, sex: female), exactly like the glmnet / statsmodels fixtures.

Peers:
  * group-lasso 1.5.0  `group_lasso.LogisticGroupLasso(groups, group_reg, l1_reg=0, ...)`
  * asgl 2.2.0         `asgl.Regressor(model="logit", penalization="gl", lambda1=...)` (CVXPY/Clarabel)
  * an own numpy solver (proximal Newton with exact group block-coordinate inner solves) run to
    KKT < 1e-9 -> `coef_refined`.

Objective actually minimised by LogisticGroupLasso for a binary y (derived from the source of
group_lasso/_group_lasso.py and _fista.py, and checked numerically, see fixtures/README.md):

    F(b0, b) = (1/n) sum_i [ log(1 + exp(eta_i)) - y_i * eta_i ]
               + lambda * sum_g sqrt(p_g) * ||b_g||_2,          eta_i = b0 + x_i . b,
    lambda = sqrt(2) * group_reg

The same F with lambda1 = lambda is asgl's "logit"/"gl" objective, so asgl is run with
lambda1 = sqrt(2) * group_reg.

Usage: python3 reference_group_lasso.py --data fixtures/insurance.parquet --out fixtures/reference/grouplasso_insurance_smoker.json
"""
import argparse
import json
import platform
import sys
import time
import warnings
from math import sqrt

import numpy as np
import pyarrow.parquet as pq

GROUP_REGS = None  # chosen from lambda_max below (fractions), see FRACTIONS
# lambda / lambda_max: all-zero | age | age+bmi+sex | age+region+sex | all five groups
FRACTIONS = [1.05, 0.3, 0.08, 0.05, 0.01]
PKG_N_ITER = 20000
PKG_TOL = 1e-10
ASGL_ZERO = 1e-7


def build(data):
    t = pq.read_table(data, columns=["age", "bmi", "children", "region", "sex", "smoker_yes"]).to_pydict()
    n = len(t["age"])
    for c, v in t.items():
        if any(x is None for x in v):
            raise SystemExit(f"unexpected nulls in {c}")
    region = np.asarray(t["region"], dtype=object)
    sex = np.asarray(t["sex"], dtype=object)
    rl, sl = sorted(set(region)), sorted(set(sex))
    cols = [np.asarray(t["age"], float), np.asarray(t["bmi"], float), np.asarray(t["children"], float)]
    names = ["age", "bmi", "children"]
    for lv in rl[1:]:
        cols.append((region == lv).astype(float))
        names.append(f"region[{lv}]")
    for lv in sl[1:]:
        cols.append((sex == lv).astype(float))
        names.append(f"sex[{lv}]")
    X = np.column_stack(cols)
    y = np.asarray(t["smoker_yes"], float)
    group_index = [0, 1, 2] + [3] * (len(rl) - 1) + [4] * (len(sl) - 1)
    levels = {"region": rl, "sex": sl}
    return X, y, names, group_index, levels, n


class Problem:
    def __init__(self, X, y, group_index):
        self.X, self.y = X, y
        self.n, self.p = X.shape
        gi = np.asarray(group_index)
        self.groups = [np.flatnonzero(gi == g) for g in sorted(set(group_index))]
        self.w = np.array([sqrt(len(g)) for g in self.groups])
        self.Xa = np.column_stack([np.ones(self.n), X])  # intercept first

    def loss(self, b0, b):
        eta = b0 + self.X @ b
        return np.mean(np.logaddexp(0.0, eta) - self.y * eta)

    def penalty(self, b, lam):
        return lam * sum(wg * np.linalg.norm(b[g]) for g, wg in zip(self.groups, self.w))

    def objective(self, b0, b, lam):
        return self.loss(b0, b) + self.penalty(b, lam)

    def grad(self, b0, b):
        mu = 0.5 * (1 + np.tanh(0.5 * (b0 + self.X @ b)))  # stable sigmoid
        r = mu - self.y
        return r.mean(), self.X.T @ r / self.n

    def kkt(self, b0, b, lam):
        """Absolute KKT violations: intercept |mean(mu - y)|; zero group: max(0, ||X_g'(mu-y)/n|| - lam*w_g);
        nonzero group: ||X_g'(mu-y)/n + lam*w_g*b_g/||b_g|| ||."""
        g0, g = self.grad(b0, b)
        per = []
        for grp, wg in zip(self.groups, self.w):
            nb = np.linalg.norm(b[grp])
            if nb == 0.0:
                per.append(max(0.0, np.linalg.norm(g[grp]) - lam * wg))
            else:
                per.append(float(np.linalg.norm(g[grp] + lam * wg * b[grp] / nb)))
        return max([abs(g0)] + per), abs(g0), per

    def lambda_max(self):
        r = self.y - self.y.mean()
        return max(np.linalg.norm(self.X[:, g].T @ r) / self.n / wg for g, wg in zip(self.groups, self.w))


def group_block_solve(Hgg, c, t):
    """argmin_b 0.5 b'Hgg b - c'b + t*||b||_2 (Hgg positive definite)."""
    if np.linalg.norm(c) <= t:
        return np.zeros_like(c)
    if len(c) == 1:
        return np.array([(abs(c[0]) - t) * np.sign(c[0]) / Hgg[0, 0]])
    h, V = np.linalg.eigh(Hgg)
    a = V.T @ c
    # ||b(s)|| = s with b(s) = sum a_i/(h_i + t/s) v_i; phi(s) = ||b(s)|| - s is decreasing in s
    phi = lambda s: np.sqrt(np.sum((a / (h + t / s)) ** 2)) - s
    lo, hi = 0.0, np.linalg.norm(c) / h.min()  # phi(hi) <= 0
    s = 0.5 * hi
    for _ in range(200):
        f = phi(s)
        if f > 0:
            lo = s
        else:
            hi = s
        # Newton step in 1/s is well behaved; fall back to bisection
        d = (a**2 * t / s**2) / (h + t / s) ** 3
        nb = np.sqrt(np.sum((a / (h + t / s)) ** 2))
        dphi = np.sum(d) / max(nb, 1e-300) - 1.0
        s_new = s - f / dphi if dphi != 0 else 0.5 * (lo + hi)
        if not (lo < s_new < hi):
            s_new = 0.5 * (lo + hi)
        if abs(s_new - s) <= 1e-16 * max(s, 1e-300):
            s = s_new
            break
        s = s_new
    return V @ (a / (h + t / s))


def own_solve(P, lam, b0=None, b=None, tol=1e-12, max_outer=200):
    """Proximal Newton: quadratic model of the mean log-loss, inner exact block-coordinate descent
    (intercept + each group solved exactly), Armijo backtracking on F."""
    if b0 is None:
        ybar = P.y.mean()
        b0, b = np.log(ybar / (1 - ybar)), np.zeros(P.p)
    theta = np.concatenate([[b0], b]).astype(float)
    blocks = [np.array([0])] + [g + 1 for g in P.groups]
    ts = [0.0] + [lam * wg for wg in P.w]
    hist = []
    for it in range(max_outer):
        eta = P.Xa @ theta
        mu = 0.5 * (1 + np.tanh(0.5 * eta))
        g = P.Xa.T @ (mu - P.y) / P.n
        H = (P.Xa * (mu * (1 - mu))[:, None]).T @ P.Xa / P.n
        k, _, _ = P.kkt(theta[0], theta[1:], lam)
        hist.append(k)
        if k < tol or (len(hist) > 4 and hist[-1] >= 0.5 * hist[-5]):  # converged or stagnating
            break
        # inner: minimise g'd + 0.5 d'Hd + pen(theta + d) over z = theta + d
        z = theta.copy()
        for sweep in range(20000):
            zmax = 0.0
            for blk, t in zip(blocks, ts):
                # linear term of the block problem in z_blk, other blocks fixed
                rest = g[blk] + H[blk] @ (z - theta) - H[np.ix_(blk, blk)] @ (z[blk] - theta[blk])
                c = H[np.ix_(blk, blk)] @ theta[blk] - rest
                if t == 0.0:
                    new = np.linalg.solve(H[np.ix_(blk, blk)], c)
                else:
                    new = group_block_solve(H[np.ix_(blk, blk)], c, t)
                zmax = max(zmax, np.max(np.abs(new - z[blk])))
                z[blk] = new
            if zmax <= 1e-17 * max(1.0, np.max(np.abs(z))):
                break
        d = z - theta
        F0 = P.objective(theta[0], theta[1:], lam)
        delta = g @ d + P.penalty(z[1:], lam) - P.penalty(theta[1:], lam)
        s = 1.0
        while True:
            cand = theta + s * d
            if P.objective(cand[0], cand[1:], lam) <= F0 + 1e-4 * s * delta or s < 1e-12:
                break
            s *= 0.5
        theta = cand
    theta, npolish = newton_polish(P, lam, theta)
    k, k0, per = P.kkt(theta[0], theta[1:], lam)
    return theta[0], theta[1:], {"outer_iterations": it, "polish_steps": npolish, "kkt_history": hist, "kkt": k}


def newton_polish(P, lam, theta, max_iter=20):
    """Newton iterations on the smooth stationarity system of the active set (intercept + nonzero
    groups; zero groups held at 0).  Kept only while the KKT violation decreases."""
    act = [(g, wg) for g, wg in zip(P.groups, P.w) if np.linalg.norm(theta[1 + g]) > 0]
    idx = np.concatenate([[0]] + [g + 1 for g, _ in act]).astype(int)
    best = theta.copy()
    kbest = P.kkt(best[0], best[1:], lam)[0]
    steps = 0
    for _ in range(max_iter):
        eta = P.Xa @ best
        mu = 0.5 * (1 + np.tanh(0.5 * eta))
        XA = P.Xa[:, idx]
        G = XA.T @ (mu - P.y) / P.n
        H = (XA * (mu * (1 - mu))[:, None]).T @ XA / P.n
        pos = 1
        for g, wg in act:
            bg = best[1 + g]
            nb = np.linalg.norm(bg)
            sl = slice(pos, pos + len(g))
            G[sl] += lam * wg * bg / nb
            H[sl, sl] += lam * wg * (np.eye(len(g)) / nb - np.outer(bg, bg) / nb**3)
            pos += len(g)
        cand = best.copy()
        cand[idx] -= np.linalg.solve(H, G)
        if any(np.linalg.norm(cand[1 + g]) == 0 for g, _ in act):
            break
        k = P.kkt(cand[0], cand[1:], lam)[0]
        if not k < kbest:
            break
        best, kbest, steps = cand, k, steps + 1
    return best, steps


def fit_package(X, y, group_index, group_reg):
    from group_lasso import LogisticGroupLasso

    m = LogisticGroupLasso(groups=group_index, group_reg=group_reg, l1_reg=0.0, n_iter=PKG_N_ITER,
                           tol=PKG_TOL, scale_reg="group_size", fit_intercept=True,
                           old_regularisation=False, supress_warning=True)
    t0 = time.time()
    with warnings.catch_warnings(record=True) as wl:
        warnings.simplefilter("always")
        m.fit(X, y)
    el = time.time() - t0
    C = np.asarray(m.coef_)
    I = np.asarray(m.intercept_).ravel()
    return {
        "b0": float(I[1] - I[0]), "b": C[:, 1] - C[:, 0],
        "raw_coef_class1": C[:, 1].tolist(), "raw_intercept_class1": float(I[1]),
        "antisymmetry_max_abs": float(max(np.abs(C[:, 0] + C[:, 1]).max(), abs(I[0] + I[1]))),
        "converged": not any("did not converge" in str(w.message) for w in wl),
        "warnings": sorted({str(w.message).strip().splitlines()[0] for w in wl}),
        "final_lipschitz": float(m.lipschitz_), "fit_s": el,
        "package_loss": float(m.loss(X, np.column_stack([1 - y, y]))),
    }


def fit_asgl(X, y, group_index, lam):
    import asgl
    import cvxpy

    m = asgl.Regressor(model="logit", penalization="gl", lambda1=lam, fit_intercept=True,
                       solver="CLARABEL", tol=0.0)
    t0 = time.time()
    with warnings.catch_warnings(record=True) as wl:
        warnings.simplefilter("always")
        m.fit(X, y.astype(int), group_index=[g + 1 for g in group_index])
    return {
        "version": asgl.__version__ if hasattr(asgl, "__version__") else "2.2.0",
        "cvxpy": cvxpy.__version__,
        "b0": float(m.intercept_), "b": np.asarray(m.coef_, float).ravel(),
        "solver_stats": {k: (v if isinstance(v, (int, float, str)) or v is None else str(v))
                         for k, v in m.solver_stats_.items()},
        "warnings": sorted({str(w.message).strip().splitlines()[0] for w in wl}),
        "fit_s": time.time() - t0,
    }


def summarize(P, lam, b0, b, names):
    k, k0, per = P.kkt(b0, b, lam)
    _, g = P.grad(b0, b)
    return {
        "grad_norm_over_threshold": [float(np.linalg.norm(g[grp]) / (lam * wg)) for grp, wg in zip(P.groups, P.w)],
        "intercept": float(b0), "coef": [float(v) for v in b],
        "objective": float(P.objective(b0, b, lam)),
        "kkt_max": float(k), "kkt_intercept": float(k0), "kkt_per_group": [float(v) for v in per],
        "active_groups": [i for i, g in enumerate(P.groups) if np.linalg.norm(b[g]) > 0],
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="fixtures/insurance.parquet")
    ap.add_argument("--out", default="fixtures/reference/grouplasso_insurance_smoker.json")
    ap.add_argument("--no-asgl", action="store_true")
    a = ap.parse_args()
    import group_lasso
    import scipy

    X, y, names, group_index, levels, n = build(a.data)
    P = Problem(X, y, group_index)
    lam_max = P.lambda_max()
    group_names = ["age", "bmi", "children", "region", "sex"]
    fits = []
    for frac in FRACTIONS:
        lam = frac * lam_max
        # group_reg rounded to 6 significant digits so it can be typed in a test
        group_reg = float(f"{lam / sqrt(2):.6g}")
        lam = sqrt(2) * group_reg
        print(f"group_reg={group_reg} lambda={lam}", file=sys.stderr)
        ob0, ob, info = own_solve(P, lam, tol=1e-13)
        pk = fit_package(X, y, group_index, group_reg)
        ent = {
            "group_reg": group_reg, "lambda": lam, "lambda_over_lambda_max": lam / lam_max,
            "package": {**summarize(P, lam, pk["b0"], pk["b"], names),
                        **{k: v for k, v in pk.items() if k not in ("b0", "b")}},
        }
        ent["intercept"] = ent["package"]["intercept"]
        ent["coef"] = ent["package"]["coef"]
        ent["objective"] = ent["package"]["objective"]
        ent["kkt_max"] = ent["package"]["kkt_max"]
        ent["package_kkt_ok"] = ent["kkt_max"] < 1e-6
        ref = summarize(P, lam, ob0, ob, names)
        ent["intercept_refined"] = ref["intercept"]
        ent["coef_refined"] = ref["coef"]
        ent["objective_refined"] = ref["objective"]
        ent["kkt_max_refined"] = ref["kkt_max"]
        ent["kkt_per_group_refined"] = ref["kkt_per_group"]
        ent["kkt_intercept_refined"] = ref["kkt_intercept"]
        ent["active_groups_refined"] = [group_names[i] for i in ref["active_groups"]]
        ent["grad_norm_over_threshold_refined"] = ref["grad_norm_over_threshold"]
        ent["refined_solver"] = {"method": "proximal Newton, exact block-coordinate inner solves, Armijo on F; then Newton on the active-set stationarity equations",
                                 "outer_iterations": info["outer_iterations"],
                                 "newton_polish_steps": info["polish_steps"]}
        ent["max_abs_coef_diff_package_vs_refined"] = float(
            max(np.max(np.abs(pk["b"] - ob)), abs(pk["b0"] - ob0)))
        if not a.no_asgl:
            try:
                s = fit_asgl(X, y, group_index, lam)
                # interior-point solutions leave "zero" groups at ~1e-10: zero groups with norm < 1e-7
                # before evaluating KKT / objective (coef_raw keeps the untouched solution)
                braw = s["b"].copy()
                for grp in P.groups:
                    if np.linalg.norm(s["b"][grp]) < ASGL_ZERO:
                        s["b"][grp] = 0.0
                ent["asgl"] = {"coef_raw": braw, "zero_group_threshold": ASGL_ZERO,
                               **summarize(P, lam, s["b0"], s["b"], names),
                               **{k: v for k, v in s.items() if k not in ("b0", "b")},
                               "lambda1": lam}
                ent["asgl"]["max_abs_coef_diff_vs_refined"] = float(
                    max(np.max(np.abs(s["b"] - ob)), abs(s["b0"] - ob0)))
            except Exception as e:  # record, do not fail the fixture
                ent["asgl"] = {"error": repr(e)}
        fits.append(ent)
        print(json.dumps({k: ent[k] for k in ("group_reg", "kkt_max", "kkt_max_refined",
                                              "active_groups_refined", "objective", "objective_refined")}),
              file=sys.stderr)

    objective = ("F(b0, b) = (1/n) * sum_i [ log(1 + exp(eta_i)) - y_i * eta_i ] "
                 "+ lambda * sum_g sqrt(p_g) * ||b_g||_2,  eta_i = b0 + sum_j x_ij * b_j, "
                 "lambda = sqrt(2) * group_reg, p_g = number of columns in group g, "
                 "b0 unpenalized, x raw (not centred / scaled), y in {0,1}")
    out = {
        "tool": "group-lasso", "tool_version": group_lasso.__version__ if hasattr(group_lasso, "__version__") else "1.5.0",
        "python": platform.python_version(), "numpy": np.__version__, "scipy": scipy.__version__,
        "data": a.data, "label": "smoker_yes", "family": "binomial", "n_obs": n, "n_features": P.p,
        "row_index": list(range(n)),
        "design": {"numeric": ["age", "bmi", "children"], "categorical": ["region", "sex"],
                   "categorical_levels": levels,
                   "reference_level": "first in sorted order (dropped)"},
        "coef_names": names,
        "coef_order": "coef / coef_refined follow coef_names; the intercept is stored separately",
        "group_index": group_index,
        "group_names": group_names,
        "groups": [{"name": gn, "columns": [names[j] for j in g], "size": len(g), "weight": sqrt(len(g))}
                   for gn, g in zip(group_names, P.groups)],
        "objective": objective,
        "loss": "mean logistic negative log-likelihood (log-loss = deviance / (2n)), natural log",
        "loss_scale": "mean",
        "group_weight": "sqrt(size)",
        "penalty_norm": "Euclidean (L2, not squared) norm of each group's coefficients",
        "lambda_from_group_reg": "lambda = sqrt(2) * group_reg",
        "intercept_penalised": False,
        "standardized": False,
        "l1_reg": 0.0,
        "lambda_max": lam_max,
        "lambda_max_formula": "max_g ||X_g' (y - mean(y))||_2 / (n * sqrt(p_g)) (smallest lambda with every group zero)",
        "objective_derivation": (
            "group_lasso 1.5.0 LogisticGroupLasso one-hot encodes a binary y into 2 columns [1-y, y] and fits a "
            "2-class softmax with a (p+1) x 2 coefficient matrix W (row 0 = intercepts). Its nominal loss (`_loss`) "
            "is mean softmax cross-entropy + sum_g group_reg*sqrt(p_g)*||W_g||_F + l1_reg*||W||_1 (intercept row "
            "excluded; scale_reg='group_size' gives the sqrt(p_g)). Its FISTA step (_fista.py) is "
            "W <- prox_{R/L}(V - 0.5*grad/L): the gradient step is halved but the prox threshold is not, so the "
            "fixed point minimises 0.5*loss + R, i.e. loss + 2R. Gradients w.r.t. the two columns are opposite, so "
            "from W=0 the iterates stay antisymmetric, W_g = [-b_g/2, b_g/2] with b = W[:,1]-W[:,0] (the logit "
            "coefficients), and ||W_g||_F = ||b_g||/sqrt(2): loss + 2R = F with lambda = 2*group_reg/sqrt(2) = "
            "sqrt(2)*group_reg. Checked numerically: on a well-conditioned (standardized) copy of this design the "
            "package's converged solution gives ||grad_g||/(group_reg*sqrt(p_g)) = 1.41421 for every active group. "
            "X is centred internally (dense X, fit_intercept=True) only for the optimisation; the intercept is "
            "shifted back, so the optimum is that of F on raw X. coef / intercept below are b and "
            "b0 = intercept_[1]-intercept_[0] (= 2 x the package's class-1 column, which is also stored)."),
        "package_settings": {"class": "group_lasso.LogisticGroupLasso", "groups": group_index, "l1_reg": 0.0,
                             "scale_reg": "group_size", "n_iter": PKG_N_ITER, "tol": PKG_TOL,
                             "fit_intercept": True, "old_regularisation": False, "subsampling_scheme": None,
                             "tol_meaning": "stops when ||W_new - W_old|| / ||W_new|| < tol"},
        "asgl_settings": {"class": "asgl.Regressor", "model": "logit", "penalization": "gl",
                          "lambda1": "= lambda = sqrt(2)*group_reg", "solver": "CLARABEL",
                          "tol": "0 (no zero-thresholding of small coefficients by asgl)",
                          "zero_groups": "asgl.coef_raw = solver output; asgl.coef = same with groups of norm < 1e-7 set to 0 (used for objective/KKT)",
                          "objective": "(1/n) sum [log(1+exp(eta)) - y*eta] + lambda1 * sum_g sqrt(p_g)*||b_g||_2 (same F)"},
        "package_loss_note": ("fits[].package.package_loss = LogisticGroupLasso.loss(X, [1-y, y]), the package's "
                              "nominal objective at its solution = mean log-loss + (lambda/2) * sum_g sqrt(p_g)*||b_g||: "
                              "half the penalty of the objective its iterations actually minimise (F)"),
        "kkt_definition": ("absolute, with r = mu - y, mu = 1/(1+exp(-eta)): intercept |mean(r)|; zero group "
                           "max(0, ||X_g' r / n||_2 - lambda*sqrt(p_g)); nonzero group "
                           "||X_g' r / n + lambda*sqrt(p_g)*b_g/||b_g|| ||_2; kkt_max = max over all"),
        "fits_note": ("coef/intercept/objective/kkt_max = group-lasso package solution (converted to logit "
                      "coefficients b); *_refined = own solver to KKT < 1e-9 (use these as the reference "
                      "optimum); asgl = CVXPY/Clarabel solution of the same F"),
        "fits": fits,
    }

    def clean(o):
        if isinstance(o, dict):
            return {k: clean(v) for k, v in o.items()}
        if isinstance(o, (list, tuple)):
            return [clean(v) for v in o]
        if isinstance(o, (np.floating,)):
            return float(o)
        if isinstance(o, (np.integer,)):
            return int(o)
        if isinstance(o, np.bool_):
            return bool(o)
        if isinstance(o, np.ndarray):
            return clean(o.tolist())
        return o

    with open(a.out, "w") as f:
        json.dump(clean(out), f, indent=1)
        f.write("\n")
    print(json.dumps({"out": a.out, "n": n, "p": P.p, "lambda_max": lam_max,
                      "fits": [(e["group_reg"], e["kkt_max"], e["kkt_max_refined"], e["active_groups_refined"])
                               for e in fits]}))


if __name__ == "__main__":
    main()
