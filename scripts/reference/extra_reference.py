#!/usr/bin/env python3
"""Extra reference (oracle) GLM fits with statsmodels: non-canonical links, Gaussian,
offsets and prior weights.

Writes fixtures/reference/sm_extra_<case>.json, one per case below, in the same JSON
format as reference.py (same keys, same design: intercept + numeric columns in the given
order + one-hot categoricals with the first sorted level dropped; statsmodels GLM fitted
by IRLS). Reuses reference.py's design builder and family table. Extra keys:

  fulcrum                  the fulcrum CLI arguments describing the same model:
                           {input, formula, family, link, weights, filters}
  hat_diag_expected        get_influence(observed=False).hat_matrix_diag
  cooks_distance_expected  get_influence(observed=False).cooks_distance[0]
                           (the default hat_diag / cooks_distance use observed=True, as in
                           reference.py; they differ for non-canonical links, and R's
                           hatvalues()/cooks.distance() use the expected information,
                           i.e. the IRLS working weights)
  offset, weights          column names (or null) of the offset / prior weights
  fit_settings             the exact GLM.fit() keyword arguments
  r_style                  R's glm() conventions for dispersion / AIC / logLik, computed in
                           this script from the statsmodels fit with the formulas of R's
                           family()$aic and logLik.glm (NOT an outside oracle: R was not run)
  warnings                 Python warnings raised while fitting / computing diagnostics

Non-finite numbers (e.g. an observed-information hat value of a row whose observed Hessian
weight is negative) are written as JSON null, so the files are strict JSON.

Also (re)writes fixtures/insurance_offset.parquet = insurance.parquet plus
  log_bmi = log(bmi)              (float64; used as offset(log_bmi))
  w       = 1 + (row_index mod 3) (float64; used as prior weights)

Run from anywhere: python3 scripts/reference/extra_reference.py [--only CASE ...]
"""
import argparse
import json
import math
import os
import platform
import sys
import time
import warnings

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import scipy.special
import statsmodels
import statsmodels.api as sm

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.abspath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, HERE)
import reference as ref  # noqa: E402  (build_design, FAMILIES, LINKS, formulas text)

LINKS = dict(ref.LINKS)
LINKS["cloglog"] = sm.families.links.CLogLog

TOL = 1e-12
MAXITER = 300

INS_NUM = ["age", "bmi", "children"]
ADULT_NUM = ["age", "education_num", "capital_gain", "capital_loss", "hours_per_week"]
ADULT_CAT = ["workclass", "marital_status", "occupation", "relationship", "race", "sex"]
STAR_NUM = ["LOWINC", "PERASIAN", "PERBLACK", "PERHISP", "PERMINTE", "AVYRSEXP", "AVSALK", "PERSPENK",
            "PTRATIO", "PCTAF", "PCTCHRT", "PCTYRRND", "PERMINTE_AVYRSEXP", "PERMINTE_AVSAL",
            "AVYRSEXP_AVSAL", "PERSPEN_PTRATIO", "PERSPEN_PCTAF", "PTRATIO_PCTAF",
            "PERMINTE_AVYRSEXP_AVSAL", "PERSPEN_PTRATIO_PCTAF"]  # == sm_star98_binomial.json design.numeric


def case(name, data, label, family, link, numeric, categorical=(), failures=None, filters=(),
         offset=None, weights=None, transforms=(), slim=False):
    return dict(name=name, data=data, label=label, failures=failures, family=family, link=link,
                numeric=list(numeric), categorical=list(categorical), filters=list(filters),
                offset=offset, weights=weights, transforms=list(transforms), slim=slim)


CASES = [
    case("insurance_smoker_probit", "insurance", "smoker_yes", "binomial", "probit",
         ["age", "bmi", "children"], ["sex", "region"]),
    case("insurance_smoker_cloglog", "insurance", "smoker_yes", "binomial", "cloglog",
         ["age", "bmi", "children"], ["sex", "region"]),
    case("adult_probit_nocountry", "adult", "income_gt50k", "binomial", "probit",
         ADULT_NUM, ADULT_CAT, filters=["split=train"], slim=True),
    case("insurance_charges_gaussian", "insurance", "charges", "gaussian", "identity",
         INS_NUM, ["sex", "smoker", "region"]),
    case("insurance_charges_gaussian_log", "insurance", "charges", "gaussian", "log",
         INS_NUM, ["sex", "smoker", "region"]),
    case("insurance_children_poisson_offset", "insurance_offset", "children", "poisson", "log",
         ["age", "bmi"], ["sex", "smoker", "region"], offset="log_bmi"),
    # Prior weights: statsmodels' `var_weights` make Var(y_i) = phi * V(mu_i) / w_i, i.e. exactly
    # what R's glm(weights=) means for non-binomial families (deviance = sum w_i d_i, Pearson
    # chi2 = sum w_i (y_i - mu_i)^2 / V(mu_i), dispersion = Pearson chi2 / df_resid, IRLS weights
    # w_i / (g'(mu_i)^2 V(mu_i))). `freq_weights` would instead replicate rows (changes df_resid).
    # llf/AIC conventions differ from R for Gamma (see r_style in the JSON).
    case("insurance_charges_gamma_weighted", "insurance_offset", "charges", "gamma", "log",
         ["age", "bmi"], ["smoker", "region"], weights="w"),
    case("star98_cloglog", "sm_star98", "NABOVE", "binomial", "cloglog", STAR_NUM, failures="NBELOW"),
    case("cpunish_poisson_nolog", "sm_cpunish", "EXECUTIONS", "poisson", "log",
         ["INCOME", "PERPOVERTY", "PERBLACK", "VC100k96", "SOUTH", "DEGREE"]),
]

FORMULAS = ref.__doc__.split("Formulas used by")[1].split("Examples:")[0].strip() + """
Extra fixtures (extra_reference.py): hat_diag / cooks_distance use observed=True (w_i = observed
Hessian factor, can be negative -> null for non-canonical links); hat_diag_expected /
cooks_distance_expected use observed=False: w_i = prior_w_i / (g'(mu_i)^2 V(mu_i)) (the IRLS
working weight, what R's hatvalues()/cooks.distance() use), with the same r_S and D_i formulas.
With an offset, eta = X beta + offset. With prior weights (var_weights) w_i, deviance and Pearson
chi2 are w-weighted sums and phi = Pearson chi2 / (n - p)."""


def finite_or_none(x):
    x = float(x)
    return x if math.isfinite(x) else None


def flist(a):
    """Full precision (shortest round-trip repr): coefficients, standard errors."""
    return [finite_or_none(v) for v in np.asarray(a, dtype=float).ravel()]


ROW_DIGITS = 10


def rlist(a):
    """Per-row arrays: ROW_DIGITS significant digits (relative rounding error <= 5e-10), to keep the
    fixtures small."""
    return [None if not math.isfinite(v) else float(f"{v:.{ROW_DIGITS}g}")
            for v in np.asarray(a, dtype=float).ravel()]


# Per-row arrays left out (written as null) for cases marked slim=True, to keep the fixtures
# under ~3 MB: the R-convention (expected information) diagnostics and fitted values are kept.
SLIM_OMIT = ["hat_diag", "cooks_distance", "resid_studentized_pearson", "resid_pearson", "resid_deviance"]


def make_insurance_offset():
    """fixtures/insurance_offset.parquet = insurance + log_bmi + w (same rows, same order)."""
    src = os.path.join(ROOT, "fixtures", "insurance.parquet")
    dst = os.path.join(ROOT, "fixtures", "insurance_offset.parquet")
    t = pq.read_table(src)
    bmi = t.column("bmi").to_numpy()
    n = t.num_rows
    t = t.append_column("log_bmi", pa.array(np.log(bmi), type=pa.float64()))
    t = t.append_column("w", pa.array(1.0 + (np.arange(n) % 3), type=pa.float64()))
    meta = {k: v for k, v in (t.schema.metadata or {}).items() if k != b"pandas"}
    t = t.replace_schema_metadata(meta or None)
    pq.write_table(t, dst, compression="zstd", compression_level=9)
    return dst


def formula_of(c):
    lhs = f"cbind({c['label']}, {c['failures']})" if c["failures"] else c["label"]
    tr = dict(s.split("=") for s in c["transforms"])
    terms = [f"{tr[x]}({x})" if x in tr else x for x in c["numeric"]] + list(c["categorical"])
    if c["offset"]:
        terms.append(f"offset({c['offset']})")
    return f"{lhs} ~ {' + '.join(terms)}"


def r_style(fam_name, res, y_endog, n_trials, wt, dev, n, rank):
    """R's glm() AIC / logLik / dispersion for the fitted mu (formulas of family()$aic, logLik.glm,
    summary.glm). Computed here, not by R."""
    mu = np.asarray(res.fittedvalues, dtype=float)
    pearson = float(res.pearson_chi2)
    if fam_name == "Binomial":
        m = n_trials
        k = np.round(m * y_endog)
        ll = np.sum(wt * (scipy.special.gammaln(m + 1) - scipy.special.gammaln(k + 1)
                          - scipy.special.gammaln(m - k + 1)
                          + scipy.special.xlogy(k, mu) + scipy.special.xlogy(m - k, 1 - mu)))
        aic, df_ll, disp = -2 * ll + 2 * rank, rank, 1.0
    elif fam_name == "Poisson":
        ll = np.sum(wt * (scipy.special.xlogy(y_endog, mu) - mu - scipy.special.gammaln(y_endog + 1)))
        aic, df_ll, disp = -2 * ll + 2 * rank, rank, 1.0
    elif fam_name == "Gaussian":
        # gaussian()$aic: nobs*(log(2*pi*dev/nobs)+1)+2 - sum(log(wt)); + 2*rank
        aic = n * (math.log(2 * math.pi * dev / n) + 1) + 2 - float(np.sum(np.log(wt))) + 2 * rank
        df_ll, disp = rank + 1, pearson / (n - rank)
    elif fam_name == "Gamma":
        # Gamma()$aic: n <- sum(wt); disp <- dev/n; -2*sum(dgamma(y, 1/disp, scale=mu*disp, log=TRUE)*wt) + 2
        disp_ml = dev / float(np.sum(wt))
        a = 1.0 / disp_ml
        s = mu * disp_ml
        ldg = (a - 1) * np.log(y_endog) - y_endog / s - a * np.log(s) - scipy.special.gammaln(a)
        aic = -2 * float(np.sum(ldg * wt)) + 2 + 2 * rank
        df_ll, disp = rank + 1, pearson / (n - rank)
    else:
        raise ValueError(fam_name)
    return {
        "note": "R glm() conventions computed by extra_reference.py from the statsmodels fit "
                "(formulas of R's family()$aic, logLik.glm and summary.glm); R itself was not run",
        "dispersion": disp,
        "aic": float(aic),
        "loglik": float(df_ll - aic / 2),
        "loglik_df": int(df_ll),
        "aic_minus_statsmodels_aic": float(aic - res.aic),
    }


def run_case(c, outdir):
    data_rel = f"fixtures/{c['data']}.parquet"
    data = os.path.join(ROOT, data_rel)
    numeric, categorical = c["numeric"], c["categorical"]
    extra_cols = [x for x in (c["failures"], c["offset"], c["weights"]) if x]
    used = [c["label"]] + extra_cols + numeric + categorical
    caught = []
    with warnings.catch_warnings(record=True) as wlist:
        warnings.simplefilter("always")
        t0 = time.perf_counter()
        df = pq.read_table(data).to_pandas()
        df["__row__"] = np.arange(len(df))
        for f in c["filters"]:
            k, v = f.split("=", 1)
            df = df[df[k].astype(str) == v]
        n_before = len(df)
        df = df.dropna(subset=used).reset_index(drop=True)
        X, names, levels = ref.build_design(df, numeric, categorical, c["transforms"])
        # coefficient names of transformed numeric columns follow fulcrum: log(col)
        tr = dict(s.split("=") for s in c["transforms"])
        names = [f"{tr[x]}({x})" if x in tr else x for x in names]
        if c["failures"]:
            y = df[[c["label"], c["failures"]]].to_numpy(dtype=float)
        else:
            y = df[c["label"]].to_numpy(dtype=float)
        kw = {}
        if c["offset"]:
            kw["offset"] = df[c["offset"]].to_numpy(dtype=float)
        if c["weights"]:
            kw["var_weights"] = df[c["weights"]].to_numpy(dtype=float)
        t_load = time.perf_counter() - t0

        link = LINKS[c["link"]]()
        fam = ref.FAMILIES[c["family"]](link)
        model = sm.GLM(y, X, family=fam, **kw)
        fit_kw = dict(method="IRLS", tol=TOL, maxiter=MAXITER)
        t0 = time.perf_counter()
        res = model.fit(**fit_kw)
        t_fit = time.perf_counter() - t0

        n = X.shape[0]
        hat = rstud = cooks = np.full(n, np.nan)
        t_getinfl = t_hat = t_rstud = t_cooks = None
        obs_factor = model.hessian_factor(res.params, observed=True)
        n_neg = int(np.sum(obs_factor < 0))
        obs_note = None
        try:
            t0 = time.perf_counter()
            infl = res.get_influence(observed=True)
            t_getinfl = time.perf_counter() - t0
            t0 = time.perf_counter()
            hat = np.asarray(infl.hat_matrix_diag)
            t_hat = time.perf_counter() - t0
            t0 = time.perf_counter()
            rstud = np.asarray(infl.resid_studentized)
            t_rstud = time.perf_counter() - t0
            t0 = time.perf_counter()
            cooks = np.asarray(infl.cooks_distance[0])
            t_cooks = time.perf_counter() - t0
        except np.linalg.LinAlgError as e:
            obs_note = (f"get_influence(observed=True) failed ({type(e).__name__}: {e}); {n_neg} of {n} rows "
                        "have a negative observed Hessian factor, so W^1/2 is NaN: hat_diag, cooks_distance "
                        "and resid_studentized_pearson are null")
        if n_neg and obs_note is None:
            obs_note = f"{n_neg} of {n} rows have a negative observed Hessian factor (observed hat values non-finite there)"

        infl_e = res.get_influence(observed=False)
        hat_e = np.asarray(infl_e.hat_matrix_diag)
        cooks_e = np.asarray(infl_e.cooks_distance[0])

        scalars = dict(deviance=float(res.deviance), null_deviance=float(res.null_deviance),
                       pearson_chi2=float(res.pearson_chi2), scale=float(res.scale),
                       llf=float(res.llf), aic=float(res.aic))
        fam_name = type(fam).__name__
        wt = kw.get("var_weights", np.ones(len(df)))
        n_trials = np.asarray(model.n_trials, dtype=float) if fam_name == "Binomial" else None
        rs = r_style(fam_name, res, np.asarray(model.endog, dtype=float), n_trials, wt,
                     scalars["deviance"], X.shape[0], int(np.linalg.matrix_rank(X)))
    for w in wlist:
        caught.append(f"{w.category.__name__}: {w.message}")
    caught = sorted(set(caught))
    if obs_note:
        caught.append("note: " + obs_note)
    tsum = None if t_getinfl is None else t_getinfl + t_hat + t_rstud + t_cooks

    out = {
        "tool": "statsmodels",
        "tool_version": statsmodels.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "data": data_rel,
        "family": fam_name,
        "link": type(fam.link).__name__,
        "label": c["label"],
        "failures": c["failures"],
        "filters": c["filters"],
        "transforms": c["transforms"],
        "na_policy": "drop",
        "n_rows_after_filter": int(n_before),
        "n_obs": int(X.shape[0]),
        "n_params": int(X.shape[1]),
        "row_index": df["__row__"].astype(int).tolist(),  # 0-based row number in the Parquet file
        "design": {"intercept": True, "numeric": numeric, "categorical": categorical,
                   "categorical_levels": levels, "reference_level": "first in sorted order (dropped)"},
        "coef_names": names,
        "coef": flist(res.params),
        "bse": flist(res.bse),
        **{k: finite_or_none(v) for k, v in scalars.items()},
        "df_resid": float(res.df_resid),
        "iterations": int(res.fit_history["iteration"]),
        "converged": bool(res.converged),
        "tol": TOL,
        "timing_s": {"load_and_design": t_load, "fit": t_fit, "get_influence": t_getinfl,
                     "hat_diag": t_hat, "resid_studentized": t_rstud, "cooks_distance": t_cooks,
                     "influence_total": tsum, "dfbeta": None},
        "fitted_mu": rlist(res.fittedvalues),
        "hat_diag": rlist(hat),
        "cooks_distance": rlist(cooks),
        "resid_studentized_pearson": rlist(rstud),
        "resid_pearson": rlist(res.resid_pearson),
        "resid_deviance": rlist(res.resid_deviance),
        "formulas": FORMULAS,
        # ---- additions over reference.py ----
        "fulcrum": {"input": data_rel, "formula": formula_of(c), "family": c["family"], "link": c["link"],
                    "weights": c["weights"], "filters": c["filters"]},
        "hat_diag_expected": rlist(hat_e),
        "cooks_distance_expected": rlist(cooks_e),
        "offset": c["offset"],
        "weights": c["weights"],
        "weights_kind": "var_weights (statsmodels) == prior weights (R glm weights=)" if c["weights"] else None,
        "fit_settings": fit_kw,
        "r_style": rs,
        "warnings": caught,
        "per_row_precision": f"{ROW_DIGITS} significant digits (coef, bse and scalars: full float64 repr)",
        "per_row_omitted": None,
    }
    if c["slim"]:
        for k in SLIM_OMIT:
            out[k] = None
        out["per_row_omitted"] = {
            "keys": SLIM_OMIT,
            "reason": "size budget; null here. Kept: row_index, fitted_mu, hat_diag_expected, "
                      "cooks_distance_expected. Rerun extra_reference.py to regenerate the full arrays "
                      "(edit slim=False)."}
    path = os.path.join(outdir, f"sm_extra_{c['name']}.json")
    with open(path, "w") as fh:
        json.dump(out, fh, allow_nan=False, separators=(",", ":"))
    summary = {"case": c["name"], "n": out["n_obs"], "p": out["n_params"], "deviance": out["deviance"],
               "iterations": out["iterations"], "converged": out["converged"],
               "nonfinite_hat_observed": int(np.sum(~np.isfinite(hat))),
               "max_hat_expected": float(np.nanmax(hat_e)), "warnings": caught,
               "bytes": os.path.getsize(path)}
    print(json.dumps(summary))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", nargs="*", help="case names (default: all)")
    ap.add_argument("--outdir", default=os.path.join(ROOT, "fixtures", "reference"))
    a = ap.parse_args()
    make_insurance_offset()
    names = {c["name"] for c in CASES}
    for n in a.only or []:
        if n not in names:
            raise SystemExit(f"unknown case {n}; known: {sorted(names)}")
    os.makedirs(a.outdir, exist_ok=True)
    for c in CASES:
        if a.only and c["name"] not in a.only:
            continue
        run_case(c, a.outdir)


if __name__ == "__main__":
    sys.exit(main())
