#!/usr/bin/env python3
"""Driver for scripts/validate_influence.sh (run that, not this, unless you know why).

Issue 7's validation of `fulcrum influence` against real refits.

Subcommands:
  run          the four cases below: approximate LOO (`--task loo`) vs exact leave-one-out refits on
               200 stratified rows, and unlearning (`--task unlearn --remove-top 100 --by cooks_d`,
               1 and 3 steps) vs the converged refit; write JSON + markdown tables
  table JSON   re-print the markdown tables of a validate_influence.json

Cases:
  adult        Adult (split = train), logistic, unpenalised (p = 41)
  adult_lasso  the same, lasso at the path's middle lambda (`--penalty lasso --lambda L`)
  sms_lasso    SMS spam, `is_spam ~ sparse(bow)`, lasso at the path's middle lambda (a path from
               lambda_max down to it: `--nlambda k+1 --lambda-min-ratio r`, so that its last point is
               the default path's point k; see `lambda_choice` in the JSON for what was tried)
  insurance    charges ~ age + bmi + children + sex + smoker + region, Gamma with log link
               (non-canonical), --curvature fisher and --curvature hessian

Rows: the n_top rows with the largest self_influence (of `--task loo`, Fisher curvature) plus n_random
others drawn with a fixed seed. Exact x_i'beta_{-i} comes from
  * fulcrum:     `influence --task unlearn --remove <row> --steps 100` (a warm-started refit to
                 convergence; `influence.unlearn.steps` < 100 is checked) -- every case, the primary
                 truth; its coefficients times the row's design vector (built here in Python, checked
                 against influence.parquet's `eta`);
  * statsmodels: GLM(...).fit(IRLS, tol 1e-12) on the design without the row (unpenalised cases);
  * R glmnet:    refits at the same lambda sequence, thresh 1e-14, on a subset of rows (lasso cases):
                 a check of the fulcrum truth, which the lasso metrics use.
Shift = exact eta_{-i} - eta_i (the same engine's full fit) versus loo_eta - eta.
No offsets in these models.
"""
import argparse
import concurrent.futures as cf
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.path.insert(0, os.path.join(HERE, "reference"))

import numpy as np  # noqa: E402

from bench_fit import log  # noqa: E402

ADULT_NUM = ["age", "education_num", "capital_gain", "capital_loss", "hours_per_week"]
ADULT_CAT = ["workclass", "marital_status", "occupation", "relationship", "race", "sex"]
FORMULA_ADULT = "income_gt50k ~ " + " + ".join(ADULT_NUM + ADULT_CAT)
INS_NUM = ["age", "bmi", "children"]
INS_CAT = ["sex", "smoker", "region"]  # the order of tests/fit_reference.rs' insurance Gamma reference
FORMULA_INS = "charges ~ " + " + ".join(INS_NUM + INS_CAT)
FORMULA_SMS = "is_spam ~ sparse(bow)"

TARGET_PEARSON = 0.99
LOO_REFINE = 200  # `--task loo --loo-refine K` of the primary runs (the one-step default is reported too)
REFIT_STEPS = 100
SEPARATION = "quasi-complete separation: the maximum-likelihood estimates of "


def separated_names(warnings):
    """Coefficients that a fit's separation warning names (no finite estimate: running off to +-inf)."""
    out = set()
    for w in warnings or []:
        if w.startswith(SEPARATION) and " are infinite" in w:
            out.update(x.strip() for x in w[len(SEPARATION):w.index(" are infinite")].split(","))
    return out


# ---------------------------------------------------------------------------------------------
# running fulcrum
# ---------------------------------------------------------------------------------------------
class Fulcrum:
    def __init__(self, binary, work):
        self.bin, self.work = binary, work

    def run(self, sub, case, extra, out, timeout=None, threads=None):
        """One fulcrum process; returns {exit_code, wall_s, stderr, summary?}."""
        shutil.rmtree(out, ignore_errors=True)
        cmd = [self.bin, sub, case["data"], "--formula", case["formula"], "--family", case["family"], *case.get("link", []),
               *case.get("base", []), *case["model"], *extra, "--out", out, "--cache-dir", case["cache"], "-q"]
        env = dict(os.environ)
        if threads:
            env["RAYON_NUM_THREADS"] = str(threads)
        t0 = time.perf_counter()
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
            code, err = p.returncode, p.stderr.strip()
        except subprocess.TimeoutExpired:
            code, err = None, f"timed out after {timeout} s"
        r = {"cmd": " ".join(x if " " not in x else repr(x) for x in cmd[1:]), "exit_code": code,
             "wall_s": round(time.perf_counter() - t0, 3)}
        if err:
            r["stderr"] = err[-2000:]
        if code == 0 and os.path.exists(os.path.join(out, "summary.json")):
            with open(os.path.join(out, "summary.json")) as f:
                r["summary"] = json.load(f)
        return r


def must(r, what):
    if r["exit_code"] != 0:
        raise RuntimeError(f"{what} failed ({r['exit_code']}): {r.get('stderr', '')}\n  command: fulcrum {r['cmd']}")
    return r


def read_parquet_df(path, columns=None):
    import pyarrow.parquet as pq

    return pq.read_table(path, columns=columns).to_pandas()


def write_rows(path, rows):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"row": pa.array([int(r) for r in rows], pa.int64())}), path)


# ---------------------------------------------------------------------------------------------
# designs (built here, independently of fulcrum; checked against its names and eta)
# ---------------------------------------------------------------------------------------------
def dense_design(data, label, numeric, categorical, filters):
    from reference import build_design  # the reference oracle's design builder

    df = read_parquet_df(data)
    df["__row"] = np.arange(len(df), dtype=np.int64)
    for col, val in filters:
        df = df[df[col].astype(str) == val]
    df = df.dropna(subset=[label] + numeric + categorical).reset_index(drop=True)
    X, names, _ = build_design(df, numeric, categorical, [])
    return {"X": X, "y": df[label].to_numpy(dtype=float), "rows": df["__row"].to_numpy(), "names": names}


def sms_design(data):
    import pyarrow.parquet as pq
    import scipy.sparse as sp

    t = pq.read_table(data, columns=["is_spam", "bow"])
    dim = int(pq.read_schema(data).metadata[b"bow_dim"])
    bow = t.column("bow").combine_chunks()
    keep = ~(np.asarray(bow.is_null()) | np.asarray(t.column("is_spam").is_null()))
    off = bow.offsets.to_numpy()
    idx = bow.values.field("idx").to_numpy()
    val = bow.values.field("val").to_numpy().astype(np.float64)
    n = t.num_rows
    Xb = sp.csr_matrix((val, idx, off), shape=(n, dim))
    X = sp.hstack([sp.csr_matrix(np.ones((n, 1))), Xb], format="csr")[keep]
    y = t.column("is_spam").to_numpy(zero_copy_only=False).astype(float)[keep]
    return {"X": X, "y": y, "rows": np.flatnonzero(keep), "names": ["(Intercept)"] + [f"bow[{j}]" for j in range(dim)]}


def xrow(X, i):
    r = X[i]
    return r.toarray().ravel() if hasattr(r, "toarray") else np.asarray(r).ravel()


def coef_vector(coefs, names, key="estimate"):
    m = {c["name"]: c[key] for c in coefs}
    return np.array([0.0 if m.get(n) is None else m[n] for n in names])


# ---------------------------------------------------------------------------------------------
# exact refits
# ---------------------------------------------------------------------------------------------
def fulcrum_refits(F, case, sel_pos, D, jobs):
    """x_i'beta_{-i} from `--task unlearn --remove <row> --steps 100`, `jobs` processes at a time."""
    tmp = os.path.join(F.work, "refits", case["name"])
    os.makedirs(tmp, exist_ok=True)

    def one(k):
        pos = int(sel_pos[k])
        row = int(D["rows"][pos])
        rf = os.path.join(tmp, f"rm_{k}.parquet")
        write_rows(rf, [row])
        out = os.path.join(tmp, f"out_{k % max(1, jobs * 2)}_{k}")
        r = F.run("influence", case, ["--task", "unlearn", "--remove", rf, "--steps", str(REFIT_STEPS)], out,
                  threads=1 if jobs > 1 else None)
        shutil.rmtree(out, ignore_errors=True)
        os.remove(rf)
        if r["exit_code"] != 0:
            return {"row": row, "error": r.get("stderr", ""), "exit_code": r["exit_code"]}
        u = r["summary"]["influence"]["unlearn"]
        beta = coef_vector(u["coefficients"], D["names"], "predicted")
        return {"row": row, "eta_exact": float(xrow(D["X"], pos) @ beta), "steps": u["steps"], "wall_s": r["wall_s"],
                "removed_rows": u.get("removed_rows"), "separated": sorted(separated_names(u.get("warnings")))}

    t0 = time.perf_counter()
    with cf.ThreadPoolExecutor(max_workers=jobs) as ex:
        res = list(ex.map(one, range(len(sel_pos))))
    return res, time.perf_counter() - t0


def sm_family(case):
    import statsmodels.api as sm

    if case["family"] == "binomial":
        return sm.families.Binomial()
    return sm.families.Gamma(link=sm.families.links.Log())


def statsmodels_refits(case, D, sel_pos):
    """Full fit from scratch, then each leave-one-out refit from the full fit's coefficients."""
    import statsmodels
    import statsmodels.api as sm

    X, y = D["X"], D["y"]
    fam = sm_family(case)
    t0 = time.perf_counter()
    full = sm.GLM(y, X, family=fam).fit(method="IRLS", maxiter=200)  # statsmodels' default tol 1e-8, from its own start
    # Then an absolute deviance tolerance near the sum's rounding floor (1e-12 is below it for Adult's
    # deviance ~2e4 and makes IRLS wander until two sums happen to agree).
    tol = max(1e-12, 1e-13 * float(full.deviance))
    full = sm.GLM(y, X, family=fam).fit(method="IRLS", maxiter=200, tol=tol, start_params=np.asarray(full.params))
    b0 = np.asarray(full.params)
    eta_full = X @ b0
    out = []
    mask = np.ones(len(y), dtype=bool)
    for pos in sel_pos:
        mask[pos] = False
        f = sm.GLM(y[mask], X[mask], family=sm_family(case)).fit(method="IRLS", maxiter=200, tol=tol, start_params=b0)
        mask[pos] = True
        out.append({"row": int(D["rows"][pos]), "eta_exact": float(X[pos] @ np.asarray(f.params)), "eta_full": float(eta_full[pos]),
                    "iterations": int(f.fit_history["iteration"]), "converged": bool(f.converged)})
    return {"statsmodels": statsmodels.__version__, "beta_full": b0.tolist(), "wall_s": round(time.perf_counter() - t0, 2),
            "refit_tol": tol, "rows": out}


GLMNET_R = r"""
suppressPackageStartupMessages({library(Matrix); library(glmnet); library(jsonlite)})
a <- commandArgs(trailingOnly = TRUE)
X <- as(readMM(a[1]), "CsparseMatrix")
y <- scan(a[2], quiet = TRUE)
lam <- scan(a[3], quiet = TRUE)
rows <- scan(a[4], quiet = TRUE) + 1L
fam <- a[6]
t0 <- proc.time()[["elapsed"]]
fit1 <- function(XX, yy) glmnet(XX, yy, family = fam, lambda = lam, standardize = TRUE, thresh = 1e-14, maxit = 1e7)
last <- function(f) { b <- as.numeric(coef(f)[, length(lam)]); b }
f <- fit1(X, y)
b <- last(f)
eta <- function(b, i) b[1] + sum(X[i, ] * b[-1])
res <- list(glmnet = as.character(packageVersion("glmnet")), beta_full = b, rows = list())
for (k in seq_along(rows)) {
  i <- rows[k]
  g <- fit1(X[-i, , drop = FALSE], y[-i])
  res$rows[[k]] <- list(pos = i - 1L, eta_full = eta(b, i), eta_exact = eta(last(g), i))
}
res$wall_s <- proc.time()[["elapsed"]] - t0
writeLines(toJSON(res, auto_unbox = TRUE, digits = NA), a[5])
"""


def glmnet_refits(work, case, D, lambdas, sel_pos):
    import scipy.io
    import scipy.sparse as sp

    d = os.path.join(work, "glmnet", case["name"])
    os.makedirs(d, exist_ok=True)
    X = D["X"]
    Xs = sp.csr_matrix(X)[:, 1:]  # glmnet's own intercept
    scipy.io.mmwrite(os.path.join(d, "X.mtx"), Xs)
    np.savetxt(os.path.join(d, "y.txt"), D["y"])
    np.savetxt(os.path.join(d, "lambda.txt"), np.asarray(lambdas), fmt="%.17g")
    np.savetxt(os.path.join(d, "rows.txt"), np.asarray(sel_pos, dtype=int), fmt="%d")
    with open(os.path.join(d, "refit.R"), "w") as f:
        f.write(GLMNET_R)
    out = os.path.join(d, "out.json")
    env = {k: v for k, v in os.environ.items() if k != "LD_LIBRARY_PATH"}
    p = subprocess.run(["Rscript", os.path.join(d, "refit.R"), *(os.path.join(d, x) for x in ("X.mtx", "y.txt", "lambda.txt", "rows.txt")),
                        out, case["family"]], capture_output=True, text=True, env=env)
    if p.returncode != 0:
        return {"error": p.stderr[-2000:]}
    with open(out) as f:
        r = json.load(f)
    shutil.rmtree(d, ignore_errors=True)
    for x in r["rows"]:
        x["row"] = int(D["rows"][x["pos"]])
    return r


# ---------------------------------------------------------------------------------------------
# metrics
# ---------------------------------------------------------------------------------------------
def pearson(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    if len(a) < 3 or a.std() == 0 or b.std() == 0:
        return None
    return float(np.corrcoef(a, b)[0, 1])


def unit_loss(family, y, eta):
    """A row's loss at eta, prior weight 1: deviance/2 (what `loo_loss` reports)."""
    y, eta = np.asarray(y, float), np.asarray(eta, float)
    if family == "binomial":
        return np.logaddexp(0.0, eta) - y * eta
    mu = np.exp(eta)  # Gamma, log link
    return -np.log(y / mu) + (y - mu) / mu


def loss_metrics(loo_loss, loss_exact, div):
    """`loo_loss` vs the row's loss at the exact leave-one-out eta: Pearson and median relative error,
    for all rows and without the rows in `div`."""
    a, b, div = np.asarray(loo_loss, float), np.asarray(loss_exact, float), np.asarray(div, bool)

    def one(m):
        return {"n": int(m.sum()), "pearson": pearson(a[m], b[m]),
                "median_rel_err": float(np.median(np.abs(a[m] - b[m]) / np.maximum(np.abs(b[m]), 1e-300)))}
    out = {"all": one(np.ones(len(a), bool))}
    if div.any():
        out["excl_diverging"] = one(~div)
    return out


def shift_metrics(eta, loo_eta, eta_exact, eta_full_exact=None):
    """Approximate shift loo_eta - eta vs exact shift eta_exact - eta_full_exact (default: eta)."""
    eta, loo_eta, eta_exact = (np.asarray(x, float) for x in (eta, loo_eta, eta_exact))
    base = eta if eta_full_exact is None else np.asarray(eta_full_exact, float)
    sa, se = loo_eta - eta, eta_exact - base
    err = np.abs(sa - se)
    rel = err / np.maximum(np.abs(se), 1e-300)
    return {"n": int(len(eta)), "pearson_shift": pearson(sa, se), "pearson_eta": pearson(loo_eta, eta_exact),
            "median_rel_err_shift": float(np.median(rel)), "p90_rel_err_shift": float(np.quantile(rel, 0.9)),
            "max_rel_err_shift": float(rel.max()), "max_abs_err_eta": float(err.max()),
            "median_abs_shift_exact": float(np.median(np.abs(se))), "max_abs_shift_exact": float(np.abs(se).max()),
            "shift_ratio_median": float(np.median(sa / np.where(se == 0, np.nan, se)))}


def stratified(eta, loo_eta, eta_exact, strata, div, base=None):
    """Shift metrics for all rows, per stratum, and without the rows in `div` (refits that diverge)."""
    out = {"all": shift_metrics(eta, loo_eta, eta_exact, base)}
    se = np.asarray(eta_exact, float) - np.asarray(eta if base is None else base, float)
    div = np.asarray(div, bool)
    out["n_diverging"] = int(div.sum())
    if div.any():
        # refits whose coefficients run off to +-inf without the row (separation): no finite LOO
        out["diverging_rows_exact_shift"] = se[div].tolist()
        out["excl_diverging"] = shift_metrics(np.asarray(eta)[~div], np.asarray(loo_eta)[~div], np.asarray(eta_exact)[~div],
                                              None if base is None else np.asarray(base)[~div])
    for s in ("top", "random"):
        m = np.asarray(strata) == s
        if m.sum() >= 3:
            out[s] = shift_metrics(np.asarray(eta)[m], np.asarray(loo_eta)[m], np.asarray(eta_exact)[m],
                                   None if base is None else np.asarray(base)[m])
    return out


def rel_l2(pred, ref):
    pred, ref = np.asarray(pred, float), np.asarray(ref, float)
    d = np.linalg.norm(ref)
    return float(np.linalg.norm(pred - ref) / d) if d > 0 else None


def unlearn_block(F, case, D, curvature, full_sep, removal=("--remove-top", "100", "--by", "cooks_d"), label="top 100 cooks_d"):
    """--task unlearn <removal> at --steps 1 / 3 / 100 (the converged refit). Diverging coefficients: those a
    separation warning of the refit names (no finite estimate; `full_sep`, the full fit's, among them)."""
    tmp = os.path.join(F.work, "unlearn", case["name"] + "_" + curvature)
    runs = {}
    for steps in (1, 3, REFIT_STEPS):
        r = F.run("influence", case, ["--curvature", curvature, "--task", "unlearn", *removal, "--steps", str(steps)], tmp)
        if r["exit_code"] != 0:
            runs[steps] = {"error": r.get("stderr"), "cmd": r["cmd"]}
            continue
        u = r["summary"]["influence"]["unlearn"]
        runs[steps] = {"u": u, "wall_s": r["wall_s"]}
    shutil.rmtree(tmp, ignore_errors=True)
    out = {"curvature": curvature, "removal": label, "runs": {s: ({k: v for k, v in x.items() if k != "u"} | (
        {"steps_taken": x["u"]["steps"], "removed": x["u"]["removed"], "timing_s": x["u"].get("timing_s"),
         "deviance_predicted": x["u"].get("deviance_predicted")} if "u" in x else {})) for s, x in runs.items()}}
    ref = runs.get(REFIT_STEPS, {}).get("u")
    if ref is None:
        out["error"] = "no converged refit"
        return out, None
    names = D["names"]
    b_hat = coef_vector(ref["coefficients"], names, "estimate")
    d_ref = coef_vector(ref["coefficients"], names, "predicted") - b_hat
    div_names = separated_names(ref.get("warnings")) | full_sep
    keep = np.array([n not in div_names for n in names])
    out["converged_steps"] = ref["steps"]
    out["converged"] = ref["steps"] < REFIT_STEPS
    out["diverging_coefficients"] = [{"name": n, "estimate": float(b), "refit_change": float(d)}
                                     for n, b, d, k in zip(names, b_hat, d_ref, keep) if not k]
    out["removed_rows_same"] = all(runs[s].get("u", {}).get("removed_rows") == ref["removed_rows"] for s in (1, 3) if "u" in runs[s])
    X = D["X"]
    pos = {int(r): i for i, r in enumerate(D["rows"])}
    kept = np.ones(len(D["rows"]), dtype=bool)
    kept[[pos[int(r)] for r in ref["removed_rows"] if int(r) in pos]] = False
    deta_ref = (X @ d_ref)[kept]
    acc = {}
    for s in (1, 3):
        if "u" not in runs[s]:
            continue
        d_pred = coef_vector(runs[s]["u"]["coefficients"], names, "predicted") - b_hat
        d_fo = coef_vector(runs[s]["u"]["coefficients"], names, "change_first_order")
        acc[f"steps_{s}"] = {"rel_l2": rel_l2(d_pred, d_ref), "rel_l2_excl_diverging": rel_l2(d_pred[keep], d_ref[keep]),
                             "rel_l2_eta": rel_l2((X @ d_pred)[kept], deta_ref)}
        acc["first_order"] = {"rel_l2": rel_l2(d_fo, d_ref), "rel_l2_excl_diverging": rel_l2(d_fo[keep], d_ref[keep]),
                              "rel_l2_eta": rel_l2((X @ d_fo)[kept], deta_ref)}
    out["accuracy"] = acc
    out["rel_l2_norm_ref"] = float(np.linalg.norm(d_ref))
    return out, {"removed_rows": ref["removed_rows"], "beta_refit": (b_hat + d_ref).tolist()}


def prune_check(F, case, D, ref_beta):
    """`fulcrum prune --by cooks_d --top 100 --verify --steps 1`: its errors block, and its refit vs unlearn's."""
    out_dir = os.path.join(F.work, "prune", case["name"])
    r = F.run("prune", case, ["--by", "cooks_d", "--top", "100", "--verify", "--steps", "1"], out_dir)
    if r["exit_code"] != 0:
        return {"error": r.get("stderr"), "cmd": r["cmd"]}
    with open(os.path.join(out_dir, "prune.json")) as f:
        p = json.load(f)
    shutil.rmtree(out_dir, ignore_errors=True)
    res = {"errors": p.get("errors"), "refit_converged": p.get("refit_converged"), "refit_steps": p.get("refit_steps"),
           "removed": p.get("removed"), "kept_rows": p.get("kept_rows"), "wall_s": r["wall_s"]}
    if ref_beta is not None:
        act = coef_vector(p["coefficients"], D["names"], "actual")
        res["max_abs_diff_refit_vs_unlearn100"] = float(np.max(np.abs(act - np.asarray(ref_beta["beta_refit"]))))
        res["same_removed_rows"] = sorted(p["removed_rows"]) == sorted(ref_beta["removed_rows"])
    return res


def sm_removed_refit(case, D, removed_rows, ref_beta):
    """statsmodels refit without the removed rows vs fulcrum's converged unlearn refit."""
    import statsmodels.api as sm

    rm = set(int(r) for r in removed_rows)
    mask = np.array([int(r) not in rm for r in D["rows"]])
    f = sm.GLM(D["y"][mask], D["X"][mask], family=sm_family(case)).fit(method="IRLS", maxiter=300, tol=1e-12)
    b = np.asarray(f.params)
    ref = np.asarray(ref_beta)
    keep = np.abs(ref) <= 10
    return {"max_abs_diff_beta": float(np.max(np.abs(b - ref))), "max_abs_diff_beta_excl_abs_gt_10": float(np.max(np.abs(b - ref)[keep])),
            "max_abs_diff_eta_kept": float(np.max(np.abs((D["X"][mask] @ (b - ref))))),
            "converged": bool(f.converged), "iterations": int(f.fit_history["iteration"])}


# ---------------------------------------------------------------------------------------------
# one case
# ---------------------------------------------------------------------------------------------
def choose_lambda(F, case, a, rec):
    """Lasso: the default path's middle point. adult: `--lambda L`; sms: a path ending at it (falling
    back to earlier points while `--task loo` fails there; every attempt is recorded)."""
    out = os.path.join(F.work, "path", case["name"])
    r = must(F.run("fit", case, ["--penalty", "lasso"], out), "lasso path")
    s = r["summary"]
    path = s["path"]
    k = len(path) // 2
    lam_max = s["lambda_max"]
    ch = {"default_path_points": len(path), "lambda_max": lam_max, "mid_index": k, "mid_lambda": path[k]["lambda"],
          "mid_df": path[k]["df"], "attempts": []}
    rec["lambda_choice"] = ch
    if case["lambda_mode"] == "single":
        case["model"] = ["--penalty", "lasso", "--lambda", repr(path[k]["lambda"])]
        ch.update({"index": k, "lambda": path[k]["lambda"], "df": path[k]["df"], "lambdas": [p["lambda"] for p in path[:k + 1]]})
        return
    # single-lambda probe (recorded; a timeout is a finding, not a failure of this script)
    if a.single_lambda_probe > 0:
        pr = F.run("fit", case, ["--penalty", "lasso", "--lambda", repr(path[k]["lambda"])], out + "_single",
                   timeout=a.single_lambda_probe)
        ch["single_lambda_probe"] = {"cmd": pr["cmd"], "exit_code": pr["exit_code"], "wall_s": pr["wall_s"],
                                     "stderr": pr.get("stderr")}
        log(f"{case['name']}: single-lambda fit at the mid-path lambda: exit {pr['exit_code']} after {pr['wall_s']:.1f} s "
            f"{pr.get('stderr', '')}")
    for kk in range(k, 0, -2):
        ratio = path[kk]["lambda"] / lam_max
        model = ["--penalty", "lasso", "--nlambda", str(kk + 1), "--lambda-min-ratio", repr(ratio)]
        case["model"] = model
        t = F.run("influence", case, ["--task", "loo"], out + "_try")
        att = {"index": kk, "lambda": path[kk]["lambda"], "df": path[kk]["df"], "exit_code": t["exit_code"], "stderr": t.get("stderr")}
        ch["attempts"].append(att)
        if t["exit_code"] == 0:
            last = t["summary"]["path"][-1]
            ch.update({"index": kk, "lambda": last["lambda"], "df": last["df"],
                       "lambda_rel_diff_vs_default_path": abs(last["lambda"] / path[kk]["lambda"] - 1),
                       "lambdas": [p["lambda"] for p in t["summary"]["path"]]})
            log(f"{case['name']}: lambda index {kk} (df {last['df']}) after {len(ch['attempts'])} attempt(s)")
            return
        log(f"{case['name']}: --task loo at path index {kk} failed: {t.get('stderr')}")
    raise RuntimeError(f"{case['name']}: --task loo failed at every lambda index tried")


def run_case(F, case, a, res):
    name = case["name"]
    rec = {"name": name, "data": case["data"], "formula": case["formula"], "family": case["family"],
           "link": case.get("link"), "base_args": case.get("base", [])}
    res["cases"][name] = rec
    t_case = time.perf_counter()
    if case.get("lambda_mode"):
        choose_lambda(F, case, a, rec)
    rec["model_args"] = case["model"]

    # design
    if case["design"] == "sms":
        D = sms_design(case["data"])
    else:
        D = dense_design(case["data"], case["label"], case["num"], case["cat"], case.get("filters", []))
    pos_of = {int(r): i for i, r in enumerate(D["rows"])}

    # approximate LOO per curvature
    # (with --loo-refine: the rows with leverage above 0.5 -- at most LOO_REFINE -- take two Fisher steps on
    # the data without them; the default: the one-step approximation for every row; and, where rows were
    # refined, 1 and 3 steps for them instead of 2)
    loo = {}
    refine = ["--loo-refine", str(LOO_REFINE)]
    for cv in case["curvatures"]:
        variants = [(cv, refine), (f"{cv}, one step", [])]
        while variants:
            key, extra = variants.pop(0)
            out = os.path.join(F.work, "loo", f"{name}_{key.replace(', ', '_').replace(' ', '_')}")
            r = must(F.run("influence", case, ["--task", "loo", "--curvature", cv, *extra], out),
                     f"{name}: --task loo --curvature {cv} {' '.join(extra)}")
            s = r["summary"]
            df = read_parquet_df(os.path.join(out, "influence.parquet"))
            loo[key] = {"df": df.set_index("row"), "summary": s, "wall_s": r["wall_s"]}
            rec.setdefault("loo_runs", {})[key] = {"wall_s": r["wall_s"], "loo": s["influence"].get("loo"),
                                                   "refinement": s["influence"].get("loo_refinement"), "timing_s": s.get("timing_s"),
                                                   "n_obs": s["n_obs"], "n_params": s["n_params"], "rank": s.get("rank")}
            if key == cv and (s["influence"].get("loo_refinement") or {}).get("rows"):
                variants += [(f"{cv}, refine steps {k}", refine + ["--loo-refine-steps", str(k)]) for k in (1, 3)]
    s0 = loo[case["curvatures"][0]]["summary"]
    # Coefficients the full fit already reports as separated (Adult: workclass[Without-pay]); a refit
    # "diverges" when its separation warning names others.
    full_sep = separated_names(s0.get("warnings"))
    rec["full_fit_separated"] = sorted(full_sep)
    names_f = [c["name"] for c in s0["coefficients"]]
    beta = coef_vector(s0["coefficients"], D["names"])
    # penalised fits list only their nonzero coefficients: a subsequence of the design's names
    pos_name = {n: i for i, n in enumerate(D["names"])}
    idx_f = [pos_name.get(n, -1) for n in names_f]
    names_ok = (names_f == D["names"]) if not case.get("lambda_mode") else (min(idx_f) >= 0 and idx_f == sorted(idx_f))
    rec["design_check"] = {"names_equal": names_ok, "n_design": int(len(D["rows"])), "n_obs": s0["n_obs"],
                           "rows_equal": sorted(loo[case["curvatures"][0]]["df"].index.tolist()) == sorted(int(r) for r in D["rows"]),
                           "active": int(np.count_nonzero(beta))}
    if not rec["design_check"]["names_equal"] or not rec["design_check"]["rows_equal"]:
        raise RuntimeError(f"{name}: design mismatch: {rec['design_check']}")
    eta_py = D["X"] @ beta
    df0 = loo[case["curvatures"][0]]["df"]
    rec["design_check"]["max_abs_diff_eta"] = float(np.max(np.abs(eta_py - df0.loc[D["rows"], "eta"].to_numpy())))

    # stratified rows
    rng = np.random.default_rng(a.seed)
    order = df0.sort_values("self_influence", ascending=False).index.to_numpy()
    top = order[:a.n_top]
    rest = order[a.n_top:]
    rnd = rng.choice(rest, size=min(a.n_random, len(rest)), replace=False)
    sel_rows = np.concatenate([top, rnd]).astype(np.int64)
    strata = ["top"] * len(top) + ["random"] * len(rnd)
    sel_pos = np.array([pos_of[int(r)] for r in sel_rows])
    rec["rows"] = {"n_top": len(top), "n_random": len(rnd), "seed": a.seed,
                   "self_influence_top_min": float(df0.loc[top, "self_influence"].min()),
                   "self_influence_max": float(df0.loc[top, "self_influence"].max()),
                   "hat_top_max": float(df0.loc[top, "hat"].max())}

    # exact refits: fulcrum (all cases)
    log(f"{name}: {len(sel_rows)} exact refits with fulcrum unlearn --steps {REFIT_STEPS} ({a.jobs} at a time) ...")
    fr, wall = fulcrum_refits(F, case, sel_pos, D, a.jobs)
    bad = [x for x in fr if "error" in x]
    steps = [x["steps"] for x in fr if "steps" in x]
    rec["fulcrum_refits"] = {"n": len(fr), "failed": len(bad), "errors": sorted(set(x["error"] for x in bad))[:5], "wall_s": round(wall, 1),
                             "wall_per_refit_s": float(np.median([x["wall_s"] for x in fr if "wall_s" in x])) if steps else None,
                             "steps_max": max(steps) if steps else None, "not_converged": sum(s >= REFIT_STEPS for s in steps),
                             "removed_rows_ok": all(x.get("removed_rows") == [x["row"]] for x in fr if "steps" in x)}
    ok = np.array(["eta_exact" in x for x in fr])
    div_rows = np.array([bool(set(x.get("separated", [])) - full_sep) for x in fr])
    eta_exact_f = np.array([x.get("eta_exact", np.nan) for x in fr])
    rec["per_row"] = {"row": sel_rows.tolist(), "stratum": strata, "eta": df0.loc[sel_rows, "eta"].tolist(),
                      "self_influence": df0.loc[sel_rows, "self_influence"].tolist(), "hat": df0.loc[sel_rows, "hat"].tolist(),
                      "eta_exact_fulcrum": [None if np.isnan(v) else float(v) for v in eta_exact_f],
                      "refit_separated": [x.get("separated", []) for x in fr]}
    for cv in loo:
        rec["per_row"][f"loo_eta_{cv}"] = loo[cv]["df"].loc[sel_rows, "loo_eta"].tolist()

    # statsmodels / glmnet
    ext = None
    if case.get("statsmodels"):
        log(f"{name}: statsmodels refits ...")
        sm = statsmodels_refits(case, D, sel_pos)
        ext = {"kind": "statsmodels", "eta_exact": np.array([x["eta_exact"] for x in sm["rows"]]),
               "eta_full": np.array([x["eta_full"] for x in sm["rows"]]), "mask": np.ones(len(sel_rows), bool)}
        bsm = np.asarray(sm.pop("beta_full"))
        sep = np.abs(beta) > 10
        sm["max_abs_diff_beta_full"] = float(np.max(np.abs(bsm - beta)))
        sm["max_abs_diff_beta_full_excl_abs_gt_10"] = float(np.max(np.abs(bsm - beta)[~sep])) if (~sep).any() else None
        sm["coefficients_abs_gt_10"] = [n for n, s_ in zip(D["names"], sep) if s_]
        sm["not_converged"] = sum(not x["converged"] for x in sm["rows"])
        sm["iterations_max"] = max(x["iterations"] for x in sm["rows"])
        rows_sm = sm.pop("rows")
        rec["per_row"]["eta_exact_statsmodels"] = [x["eta_exact"] for x in rows_sm]
        rec["per_row"]["eta_full_statsmodels"] = [x["eta_full"] for x in rows_sm]
        rec["statsmodels"] = sm
    elif case.get("lambda_mode") and a.glmnet_rows > 0 and shutil.which("Rscript"):
        h = a.glmnet_rows // 2
        sub = list(range(min(h, len(top)))) + list(range(len(top), len(top) + min(a.glmnet_rows - h, len(rnd))))
        log(f"{name}: R glmnet refits on {len(sub)} rows ...")
        g = glmnet_refits(F.work, case, D, rec["lambda_choice"]["lambdas"], sel_pos[sub])
        if "error" in g:
            rec["glmnet"] = g
            log(f"{name}: glmnet failed: {g['error']}")
        else:
            bg = np.asarray(g.pop("beta_full"))
            g["max_abs_diff_beta_full"] = float(np.max(np.abs(bg - beta)))
            g["max_abs_diff_eta_full_selected"] = float(np.max(np.abs(np.array([x["eta_full"] for x in g["rows"]]) - eta_py[sel_pos[sub]])))
            mask = np.zeros(len(sel_rows), bool)
            mask[sub] = True
            ee = np.full(len(sel_rows), np.nan)
            ef = np.full(len(sel_rows), np.nan)
            ee[sub] = [x["eta_exact"] for x in g["rows"]]
            ef[sub] = [x["eta_full"] for x in g["rows"]]
            ext = {"kind": "glmnet", "eta_exact": ee, "eta_full": ef, "mask": mask}
            # the fulcrum truth vs glmnet's, on the same rows: shift agreement
            se_f = eta_exact_f[sub] - eta_py[sel_pos[sub]]
            se_g = ee[sub] - ef[sub]
            g["truth_agreement"] = {"pearson_shift": pearson(se_f, se_g), "max_abs_diff_shift": float(np.max(np.abs(se_f - se_g))),
                                    "median_rel_diff_shift": float(np.median(np.abs(se_f - se_g) / np.abs(se_g)))}
            rec["per_row"]["eta_exact_glmnet"] = [None if np.isnan(v) else float(v) for v in ee]
            g.pop("rows")
            rec["glmnet"] = g

    # metrics per curvature
    rec["metrics"] = {}
    eta_sel = df0.loc[sel_rows, "eta"].to_numpy()
    y_sel = np.asarray(D["y"])[np.asarray(sel_pos)]
    for cv in loo:
        le = loo[cv]["df"].loc[sel_rows, "loo_eta"].to_numpy()
        ll = loo[cv]["df"].loc[sel_rows, "loo_loss"].to_numpy()
        m = {"vs_fulcrum_refit": stratified(eta_sel[ok], le[ok], eta_exact_f[ok], np.asarray(strata)[ok], div_rows[ok])}
        m["vs_fulcrum_refit"]["loss"] = loss_metrics(ll[ok], unit_loss(case["family"], y_sel[ok], eta_exact_f[ok]), div_rows[ok])
        if ext is not None:
            k = ext["mask"]
            m[f"vs_{ext['kind']}"] = stratified(eta_sel[k], le[k], ext["eta_exact"][k], np.asarray(strata)[k], div_rows[k],
                                                 base=ext["eta_full"][k])
            m[f"vs_{ext['kind']}"]["loss"] = loss_metrics(ll[k], unit_loss(case["family"], y_sel[k], ext["eta_exact"][k]), div_rows[k])
        rec["metrics"][cv] = m
    if ext is not None and ext["kind"] == "statsmodels":
        se_f = eta_exact_f - eta_sel
        se_s = ext["eta_exact"] - ext["eta_full"]
        rec["statsmodels"]["truth_agreement"] = {"pearson_shift": pearson(se_f[ok], se_s[ok]),
                                                 "max_abs_diff_shift": float(np.nanmax(np.abs(se_f - se_s))),
                                                 "median_rel_diff_shift": float(np.nanmedian(np.abs(se_f - se_s) / np.abs(se_s)))}

    # unlearning
    rec["unlearn"] = {}
    ref0 = None
    for cv in case["curvatures"]:
        log(f"{name}: unlearn --remove-top 100 --by cooks_d, curvature {cv}, steps 1 / 3 / {REFIT_STEPS} ...")
        u, ref = unlearn_block(F, case, D, cv, full_sep)
        rec["unlearn"][cv] = u
        if ref is None:
            # fulcrum failed on the top-100 removal: 100 random rows instead (recorded as such)
            rf = os.path.join(F.work, f"{name}_random100.parquet")
            rr = np.random.default_rng(a.seed + 1).choice(D["rows"], size=100, replace=False)
            write_rows(rf, rr)
            log(f"{name}: unlearn failed on the top 100 ({u['runs']}); 100 random rows instead ...")
            u2, ref = unlearn_block(F, case, D, cv, full_sep, ("--remove", rf), "random 100 (fallback)")
            rec["unlearn"][cv + " (fallback: random 100)"] = u2
        ref0 = ref0 or ref
    rec["prune_verify"] = prune_check(F, case, D, ref0)
    if case.get("statsmodels") and ref0 is not None:
        rec["unlearn_statsmodels_check"] = sm_removed_refit(case, D, ref0["removed_rows"], ref0["beta_refit"])
    rec["wall_s"] = round(time.perf_counter() - t_case, 1)
    log(f"{name}: done in {rec['wall_s']:.0f} s")


def cases(work):
    c = lambda n: os.path.join(work, "cache", n)  # noqa: E731
    adult = {"data": "fixtures/adult.parquet", "formula": FORMULA_ADULT, "family": "binomial", "base": ["--filter", "split=train"],
             "design": "dense", "label": "income_gt50k", "num": ADULT_NUM, "cat": ADULT_CAT, "filters": [("split", "train")],
             "curvatures": ["fisher"], "cache": c("adult")}
    return [
        dict(adult, name="adult", model=[], statsmodels=True),
        dict(adult, name="adult_lasso", model=[], lambda_mode="single"),
        {"name": "sms_lasso", "data": "fixtures/sms_spam.parquet", "formula": FORMULA_SMS, "family": "binomial", "design": "sms",
         "model": [], "lambda_mode": "path", "curvatures": ["fisher"], "cache": c("sms")},
        {"name": "insurance", "data": "fixtures/insurance.parquet", "formula": FORMULA_INS, "family": "gamma", "link": ["--link", "log"],
         "design": "dense", "label": "charges", "num": INS_NUM, "cat": INS_CAT, "model": [], "statsmodels": True,
         "curvatures": ["fisher", "hessian"], "cache": c("insurance")},
    ]


def cmd_run(a):
    from bench_ingest import git_state, machine

    os.makedirs(a.work, exist_ok=True)
    F = Fulcrum(a.fulcrum, a.work)
    res = {
        "command": a.command_line,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "fulcrum_binary": a.fulcrum,
        "git": git_state(),
        "settings": {"n_top": a.n_top, "n_random": a.n_random, "seed": a.seed, "jobs": a.jobs, "refit_steps": REFIT_STEPS,
                     "glmnet_rows": a.glmnet_rows, "target_pearson": TARGET_PEARSON,
                     "diverging": "rows whose refit's separation warning names coefficients the full fit's does not; "
                                  "coefficients named by either"},
        "notes": [
            "shift: loo_eta - eta (fulcrum --task loo) vs exact eta_{-i} - eta_i; eta_{-i} = x_i'beta_{-i}, x_i built in Python.",
            "vs_fulcrum_refit: beta_{-i} from `influence --task unlearn --remove <row> --steps 100` (converged, warm-started).",
            "vs_statsmodels / vs_glmnet: independent refits (statsmodels IRLS tol 1e-12; glmnet thresh 1e-14 on the same lambda sequence).",
            "unlearn rel_l2: ||dbeta_pred - dbeta_refit|| / ||dbeta_refit|| (coefficient scale, intercept included); "
            "_excl_diverging drops the coefficients that a separation warning of the refit or the full fit names; "
            "rel_l2_eta: the same on X dbeta over the kept rows.",
        ],
        "cases": {},
    }
    t0 = time.perf_counter()
    only = set(a.cases.split(",")) if a.cases else None
    for case in cases(a.work):
        if only and case["name"] not in only:
            continue
        log(f"=== {case['name']} ===")
        try:
            run_case(F, case, a, res)
        except Exception as e:  # keep the others; the failure goes to the JSON and the table
            log(f"{case['name']}: FAILED: {e}")
            res["cases"].setdefault(case["name"], {})["error"] = str(e)
        save(a, res)
    res["total_wall_s"] = round(time.perf_counter() - t0, 1)
    save(a, res)
    for d in ("cache", "loo", "path", "refits", "unlearn", "prune", "glmnet"):
        shutil.rmtree(os.path.join(a.work, d), ignore_errors=True)
    text = tables(res)
    with open(a.table_out, "w") as f:
        f.write(text + "\n")
    print(text)
    log(f"raw JSON written to {a.json_out}; tables to {a.table_out}")


def save(a, res):
    tmp = a.json_out + ".tmp"
    with open(tmp, "w") as f:
        json.dump(res, f, indent=1, default=lambda o: o.item() if hasattr(o, "item") else str(o))
    os.replace(tmp, a.json_out)


# ---------------------------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------------------------
def _f(x, nd=4):
    return "–" if x is None else (f"{x:.{nd}f}" if abs(x) >= 10 ** -nd or x == 0 else f"{x:.1e}")


def _e(x):
    return "–" if x is None else f"{x:.2e}"


def case_label(r):
    lab = r["name"]
    ch = r.get("lambda_choice")
    if ch and "index" in ch:
        lab += f" (λ={ch['lambda']:.3g}, pt {ch['index']}/{ch['default_path_points']}, df {ch['df']})"
    return lab


def tables(res):
    out = ["**Approximate LOO (`--task loo`) vs exact leave-one-out refits** "
           f"({res['settings']['n_top']} top self-influence + {res['settings']['n_random']} random rows; "
           f"target Pearson ≥ {TARGET_PEARSON})", "",
           "| case | curvature | truth | n | Pearson shift | Pearson η | med. rel. err shift (all / top / random) | p90 rel. err | "
           "max abs err η | med. \\|exact shift\\| | without diverging refits: n / Pearson shift / Pearson η / max abs err η | "
           "loo_loss: Pearson / med. rel. err (without diverging refits) |",
           "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in res["cases"].items():
        if "error" in r:
            out.append(f"| {name} | FAILED: {r['error'][:200]} | | | | | | | | | |")
            continue
        for cv, m in r["metrics"].items():
            ref = (r.get("loo_runs", {}).get(cv) or {}).get("refinement")
            if ref and ref.get("rows"):
                sel = set(r["per_row"]["row"])
                cv = f"{cv} ({len(ref['rows'])} rows with h > {ref['above']} refined, {len(sel & set(ref['rows']))} of them here)"
            for truth, mm in m.items():
                al = mm["all"]
                rel = " / ".join(_f(mm[k]["median_rel_err_shift"], 3) if k in mm else "–" for k in ("all", "top", "random"))
                out.append(f"| {case_label(r)} | {cv} | {truth[3:]} | {al['n']} | {_f(al['pearson_shift'], 5)} | {_f(al['pearson_eta'], 6)} | "
                           f"{rel} | {_f(al['p90_rel_err_shift'], 3)} | {_e(al['max_abs_err_eta'])} | {_e(al['median_abs_shift_exact'])} | "
                           + (f"{ex['n']} / {_f(ex['pearson_shift'], 5)} / {_f(ex['pearson_eta'], 6)} / {_e(ex['max_abs_err_eta'])} |"
                              if (ex := mm.get("excl_diverging")) else "no diverging refit |")
                           + (f" {_f(lo['all']['pearson'], 5)} / {_f(lo['all']['median_rel_err'], 3)}"
                              + (f" ({_f(lx['pearson'], 5)} / {_f(lx['median_rel_err'], 3)})" if (lx := lo.get("excl_diverging")) else "")
                              + " |" if (lo := mm.get("loss")) else " – |"))
    out += ["", "**Checks of the exact refits**", "",
            "| case | fulcrum refits (failed / max steps / s per refit) | η(Python design) − η(fulcrum) | independent truth | its full-fit max \\|Δβ\\| | "
            "agreement of the exact shifts (Pearson / max abs diff / median rel diff) |",
            "|---|---|---|---|---|---|"]
    for name, r in res["cases"].items():
        if "error" in r:
            continue
        fr = r["fulcrum_refits"]
        ind = r.get("statsmodels") or r.get("glmnet")
        kind = "statsmodels" if "statsmodels" in r else ("glmnet" if "glmnet" in r else "–")
        if ind and "error" in ind:
            cells = [kind + " FAILED", "", ""]
        elif ind:
            ta = ind["truth_agreement"]
            full = _e(ind["max_abs_diff_beta_full"])
            if ind.get("coefficients_abs_gt_10"):
                full += f" ({_e(ind['max_abs_diff_beta_full_excl_abs_gt_10'])} without {', '.join(ind['coefficients_abs_gt_10'])})"
            cells = [f"{kind} ({len(r['per_row'].get('eta_exact_' + kind, [])) - sum(v is None for v in r['per_row'].get('eta_exact_' + kind, []))} rows)",
                     full, f"{_f(ta['pearson_shift'], 6)} / {_e(ta['max_abs_diff_shift'])} / {_e(ta['median_rel_diff_shift'])}"]
        else:
            cells = ["–", "", ""]
        out.append(f"| {name} | {fr['failed']} / {fr['steps_max']} / {_f(fr['wall_per_refit_s'], 3)} | "
                   f"{_e(r['design_check']['max_abs_diff_eta'])} | " + " | ".join(cells) + " |")
    out += ["", "**Unlearning: `--task unlearn --remove-top 100 --by cooks_d` vs the converged refit (`--steps 100`)** — "
            "relative L2 error of the predicted Δβ (all coefficients / without diverging ones / on Xβ over the kept rows)", "",
            "| case | curvature | 1 step | 3 steps | first order (M⁻¹g) | refit steps | diverging coefficients (refit Δ) | prune --verify rel_l2 (1 step / first order) |",
            "|---|---|---|---|---|---|---|---|"]
    for name, r in res["cases"].items():
        if "error" in r:
            continue
        pv = r.get("prune_verify", {})
        pcell = (f"{_f(pv['errors']['relative_l2_change'])} / {_f(pv['errors']['relative_l2_change_first_order'])}"
                 if pv.get("errors") else ("FAILED: " + str(pv.get("error"))[:120] if pv else "–"))
        for cv, u in r["unlearn"].items():
            if "accuracy" not in u:
                errs = sorted(set(x.get("error", "") for x in u.get("runs", {}).values() if x.get("error")))
                out.append(f"| {name} ({u.get('removal')}) | {cv} | FAILED (every step count): {' | '.join(errs)[:300]} | | | | | |")
                continue
            acc = u["accuracy"]

            def cell(k):
                x = acc.get(k)
                return "–" if not x else f"{_f(x['rel_l2'])} / {_f(x['rel_l2_excl_diverging'])} / {_f(x['rel_l2_eta'])}"

            div = ", ".join(f"{d['name']} ({d['refit_change']:+.1f})" for d in u["diverging_coefficients"]) or "none"
            out.append(f"| {name} ({u.get('removal', 'top 100 cooks_d')}) | {cv.split(' ')[0]} | {cell('steps_1')} | {cell('steps_3')} | {cell('first_order')} | {u['converged_steps']} | {div} | {pcell} |")
    notes = []
    for name, r in res["cases"].items():
        ch = r.get("lambda_choice") or {}
        pr = ch.get("single_lambda_probe")
        if pr and pr["exit_code"] != 0:
            notes.append(f"* {name}: `fulcrum fit --penalty lasso --lambda {ch['mid_lambda']:.6g}` (mid-path λ, single λ): "
                         f"{pr.get('stderr') or 'exit ' + str(pr['exit_code'])} (wall {pr['wall_s']:.0f} s).")
        fails = [x for x in ch.get("attempts", []) if x["exit_code"] != 0]
        if fails:
            msgs = sorted(set(x["stderr"] for x in fails))
            notes.append(f"* {name}: `--task loo` failed at path points {', '.join(str(x['index']) for x in fails)} "
                         f"(df {fails[-1]['df']}–{fails[0]['df']}): {' | '.join(msgs)}; used point {ch.get('index')}.")
        if "unlearn_statsmodels_check" in r:
            c = r["unlearn_statsmodels_check"]
            notes.append(f"* {name}: statsmodels refit without the 100 removed rows vs fulcrum's --steps 100 refit: max |Δβ| "
                         f"{_e(c['max_abs_diff_beta'])} ({_e(c['max_abs_diff_beta_excl_abs_gt_10'])} without |β| > 10), "
                         f"max |Δη| on kept rows {_e(c['max_abs_diff_eta_kept'])}.")
        pv = r.get("prune_verify") or {}
        if "max_abs_diff_refit_vs_unlearn100" in pv:
            notes.append(f"* {name}: prune --verify refit vs unlearn --steps 100: max |Δβ| {_e(pv['max_abs_diff_refit_vs_unlearn100'])}, "
                         f"same rows removed: {pv['same_removed_rows']}.")
    if notes:
        out += ["", *notes]
    out += ["", f"Total wall time {res.get('total_wall_s', 0):.0f} s."]
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--fulcrum", required=True)
    r.add_argument("--work", default="target/validate_influence")
    r.add_argument("--n-top", type=int, default=100)
    r.add_argument("--n-random", type=int, default=100)
    r.add_argument("--seed", type=int, default=20240607)
    r.add_argument("--jobs", type=int, default=2, help="fulcrum refit processes at a time")
    r.add_argument("--glmnet-rows", type=int, default=20, help="rows refitted with R glmnet per lasso case (0: none)")
    r.add_argument("--single-lambda-probe", type=float, default=30.0,
                   help="sms: timeout (s) of a single-lambda `fit --lambda` at the mid-path lambda (0: skip)")
    r.add_argument("--cases", default="", help="comma-separated subset of adult,adult_lasso,sms_lasso,insurance")
    r.add_argument("--json-out", default="target/validate_influence.json")
    r.add_argument("--table-out", default="target/validate_influence_table.md")
    r.add_argument("--command-line", default="scripts/validate_influence.sh")
    t = sub.add_parser("table")
    t.add_argument("json")
    a = ap.parse_args()
    if a.cmd == "table":
        with open(a.json) as f:
            print(tables(json.load(f)))
    else:
        cmd_run(a)


if __name__ == "__main__":
    main()
