#!/usr/bin/env python3
"""Timing driver for scripts/bench_diagnose.sh (run that, not this, unless you know why).

Subcommands:
  run                  time fulcrum diagnose vs fit vs statsmodels get_influence() (Adult), and
                       fulcrum diagnose vs fit at 1M / 4M synthetic rows; write JSON + markdown table
  sm-diag DATA OUT     (internal) one statsmodels Adult fit + influence measures in a fresh process;
                       writes OUT (JSON) and OUT.npz (row ids, hat, Cook's D, studentized residuals)
  table JSON           re-print the markdown table of a bench_diagnose.json

Measurement machinery (GNU time -v around every external command, /proc sampling of the measured
process, CPU of other processes, waiting for an idle machine, prewarm) is bench_fit.py's and
bench_ingest.py's, imported, not copied.
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from bench_fit import (ADULT_CAT, ADULT_NUM, FORMULA_A, FORMULA_B, SM_MAXITER, SM_TOL, _fmt_s, best,  # noqa: E402
                       fulcrum_fit, log, measure)

TARGET_ADULT_SPEEDUP = 50.0  # statsmodels get_influence() + same columns / fulcrum diagnostics
TARGET_RSS_VS_FIT = 1.10  # diagnose peak RSS <= 1.10 x fit peak RSS (1M rows)
TARGET_RSS_FLAT = 1.10  # "flat": 4M diagnose peak RSS <= 1.10 x 1M (bench_ingest.py's reading)
HAT_ONE = 1.0 - 1e-10  # rows fitted exactly: fulcrum writes NaN for their Cook's D (docs/diagnostics.md)

# statsmodels measures timed one by one (each a cached property: the first access computes it).
SM_COLUMNS = ("eta", "mu", "hat", "resid_response", "resid_pearson", "resid_deviance", "resid_studentized",
              "cooks_d", "cbar", "dffits")


# ---------------------------------------------------------------------------------------------
# statsmodels side (runs in its own process: `bench_diagnose.py sm-diag ...`)
# ---------------------------------------------------------------------------------------------
class Stopwatch(dict):
    """Seconds per named step: `sw.time(name, fn)` runs fn() and keeps its duration under name."""

    def time(self, name, fn):
        t = time.perf_counter()
        v = fn()
        self[name] = time.perf_counter() - t
        return v


def _sm_modules():
    import numpy
    import pyarrow.parquet
    from statsmodels import __version__
    from statsmodels.genmod import families
    from statsmodels.genmod.generalized_linear_model import GLM

    sys.path.insert(0, os.path.join(HERE, "reference"))
    from reference import build_design  # the reference oracle's design builder

    return numpy, pyarrow.parquet, GLM, families.Binomial, build_design, __version__


def sm_diag(data, out):
    steps, infl_steps, cols = Stopwatch(), Stopwatch(), {}
    np, pq, GLM, Binomial, build_design, sm_version = steps.time("imports", _sm_modules)

    def load():
        # reference.py's load, with its row ids: the whole file, __row__ = 0-based row in the file
        # (fulcrum's `row`), string filter split == train, dropna on the used columns.
        df = pq.read_table(data).to_pandas()
        df["__row__"] = np.arange(len(df))
        df = df[df["split"].astype(str) == "train"].dropna(subset=["income_gt50k"] + ADULT_NUM + ADULT_CAT)
        df = df.reset_index(drop=True)
        return df, build_design(df, ADULT_NUM, ADULT_CAT, [])[0], df["income_gt50k"].to_numpy(dtype=float)

    df, X, y = steps.time("load_and_design", load)
    res = steps.time("fit", lambda: GLM(y, X, family=Binomial()).fit(method="IRLS", maxiter=SM_MAXITER, tol=SM_TOL))
    # get_influence() with its default, observed=True (the same as expected for the logit link).
    infl = infl_steps.time("get_influence", res.get_influence)

    def column(name, fn):
        cols[name] = np.asarray(infl_steps.time(name, fn))

    column("eta", lambda: res.predict(which="linear"))
    column("mu", lambda: res.fittedvalues)
    column("hat", lambda: infl.hat_matrix_diag)
    column("resid_response", lambda: res.resid_response)
    column("resid_pearson", lambda: res.resid_pearson)
    column("resid_deviance", lambda: res.resid_deviance)
    column("resid_studentized", lambda: infl.resid_studentized)
    column("cooks_d", lambda: infl.cooks_distance[0])
    # GLMInfluence has no C-bar and no `dffits` (OLSInfluence's dffits_internal is
    # r_stud * sqrt(h / (1 - h)), fulcrum's definition): both from the columns above, in numpy.
    with np.errstate(divide="ignore", invalid="ignore"):
        h = cols["hat"]
        column("cbar", lambda: cols["resid_pearson"] ** 2 * h / (1 - h))
        column("dffits", lambda: cols["resid_studentized"] * np.sqrt(h / (1 - h)))
    column("dfbetas", lambda: infl.dfbetas)  # n x p, one-step (d_params / bse)
    # statsmodels' own scaled DFFITS-like measure (response scale, over the prediction SE); not one
    # of fulcrum's columns, timed for reference only.
    column("d_fittedvalues_scaled", lambda: infl.d_fittedvalues_scaled)

    with_columns = infl_steps["get_influence"] + sum(infl_steps[k] for k in SM_COLUMNS)
    timing = dict(steps, influence=infl_steps,
                  influence_columns=with_columns,  # get_influence + fulcrum's columns
                  influence_full=with_columns + infl_steps["dfbetas"])  # ... + DFBETAS (n x p)
    timing["end_to_end"] = steps["load_and_design"] + steps["fit"] + timing["influence_full"]
    summary = {
        "statsmodels": sm_version, "numpy": np.__version__, "n_obs": X.shape[0], "n_params": X.shape[1],
        "k_vars": int(infl.k_vars), "rank": int(np.linalg.matrix_rank(X)),
        "iterations": int(res.fit_history["iteration"]), "converged": bool(res.converged),
        "get_influence_observed": True, "dfbetas_shape": list(cols["dfbetas"].shape), "timing_s": timing,
    }
    np.savez(out + ".npz", row=df["__row__"].to_numpy(dtype=np.int64), hat=cols["hat"], cooks_d=cols["cooks_d"],
             resid_studentized=cols["resid_studentized"])
    with open(out, "w") as f:
        json.dump(summary, f)


# ---------------------------------------------------------------------------------------------
# fulcrum side
# ---------------------------------------------------------------------------------------------
def fulcrum_diagnose(fulcrum, inputs, formula, out_dir, cache_dir, extra=(), **kw):
    cmd = [fulcrum, "diagnose", *inputs, "--formula", formula, "--family", "binomial", *extra,
           "--out", out_dir, "--cache-dir", cache_dir, "-q"]
    r = measure(cmd, **kw)
    r.pop("stdout", None)
    with open(os.path.join(out_dir, "summary.json")) as f:
        s = json.load(f)
    d = s["diagnostics"]
    r["summary"] = {"n_obs": s["n_obs"], "n_params": s["n_params"], "rank": s["rank"], "iterations": s["iterations"],
                    "timing_s": s["timing_s"],
                    "diagnostics": {k: d.get(k) for k in ("information", "sum_hat", "n_hat_one", "notes")}}
    return r


def compare_rows(diag_parquet, sm_npz, rank, k_vars):
    """Max relative differences of hat, Cook's D and studentized residuals, rows joined by row id.

    fulcrum's Cook's D divides by the rank, statsmodels' by the number of columns: fulcrum's is
    rescaled by rank / k_vars (1 unless a column is aliased). Rows with statsmodels hat >= 1 - 1e-10
    are skipped (fulcrum writes NaN there). Relative differences |a - b| / |b| are taken over the
    rows with |b| >= 1e-12 (below it only the absolute difference means anything: the reference
    tests' floor), absolute differences over all compared rows. The studentized residuals of rows
    with mu within ~1e-8 of y carry both tools' stopping error magnified (docs/diagnostics.md)."""
    import numpy as np
    import pyarrow.parquet as pq

    f = pq.read_table(diag_parquet, columns=["row", "hat", "cooks_d", "resid_studentized"]).to_pydict()
    s = np.load(sm_npz)
    pos = {int(r): i for i, r in enumerate(f["row"])}
    idx = np.array([pos.get(int(r), -1) for r in s["row"]])
    out = {"n_fulcrum": len(f["row"]), "n_statsmodels": int(len(s["row"])), "n_matched": int((idx >= 0).sum()),
           "cooks_rescaled_by_rank_over_k_vars": rank / k_vars}
    keep = (idx >= 0) & (s["hat"] < HAT_ONE)
    out["n_skipped_hat_one"] = int(((idx >= 0) & ~keep).sum())
    for col, scale in (("hat", 1.0), ("cooks_d", rank / k_vars), ("resid_studentized", 1.0)):
        a = np.asarray(f[col], dtype=float)[idx[keep]] * scale
        b = s[col][keep]
        big = np.abs(b) >= 1e-12
        rel = np.where(big, np.abs(a - b) / np.where(big, np.abs(b), 1.0), 0.0)
        i = int(np.argmax(rel))
        out[col] = {"max_rel_diff": float(rel[i]), "max_abs_diff": float(np.max(np.abs(a - b))),
                    "n_rel": int(big.sum()), "worst_row": int(s["row"][keep][i]), "fulcrum": float(a[i]),
                    "statsmodels": float(b[i])}
    return out


# ---------------------------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------------------------
def cmd_run(a):
    from bench_ingest import machine, prewarm

    work, fulcrum, qw = a.work, a.fulcrum, a.quiet_wait
    tmp = os.path.join(work, "bench_diagnose_tmp")
    os.makedirs(tmp, exist_ok=True)

    def git(*args):
        return subprocess.run(["git", *args], capture_output=True, text=True).stdout

    res = {
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "command": a.command_line,
        "fulcrum_binary": fulcrum,
        "machine": machine(),
        "fulcrum_binary_sha256": sha256(fulcrum),
        "git": {"head": git("rev-parse", "--short", "HEAD").strip(),
                "dirty_src": git("status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock").splitlines()},
        "reps": a.reps,
        "reps_4m": a.reps_4m,
        "sm_reps": a.sm_reps,
        "prewarm_gib": {"1m": a.prewarm, "4m": a.prewarm_4m},
        "quiet_wait_s": qw,
        "statsmodels_settings": {"fit": {"method": "IRLS", "maxiter": SM_MAXITER, "tol": SM_TOL},
                                 "get_influence": "observed=True (default; equal to expected for the logit link)",
                                 "design": "scripts/reference/reference.py build_design"},
        "loadavg_at_start": os.getloadavg(),
        "notes": [
            "Wall times are around whole processes (start-up included), measured with perf_counter in bench_fit.py's measure().",
            "fulcrum timing_s.diagnostics = information + scoring pass + DFBETAS of the top-100 rows + writing both Parquet files.",
            "statsmodels influence = get_influence() + the same columns (eta, mu, hat, 3 residuals, studentized, Cook's D, "
            "C-bar and DFFITS from numpy formulas); 'full' adds dfbetas (n x p: statsmodels has no top-K variant).",
            "other_processes_cpu_s: CPU seconds used by the rest of the machine while the command ran (this sampler included).",
        ],
    }

    def save():
        with open(a.json_out, "w") as f:
            json.dump(res, f, indent=1)

    def fresh_cache(path):
        subprocess.run(["rm", "-rf", path], check=True)

    def fulcrum_runs(label, inputs, formula, key, reps, cold_reps, extra=(), gib=0.0, timeline_dt=None):
        """cold_reps diagnose runs with a fresh cache, then reps x (fit, diagnose) with it reused."""
        cache = os.path.join(work, f"diagcache-{key}")
        out = {"cache_dir": cache, "diagnose_cold": [], "diagnose_warm": [], "fit_warm": []}
        kw = {"quiet_max_s": qw, "timeline_dt": timeline_dt}
        for k in range(cold_reps):
            log(f"{label}: fulcrum diagnose, cache build, run {k + 1}/{cold_reps} ...")
            fresh_cache(cache)
            prewarm(gib)
            out["diagnose_cold"].append(fulcrum_diagnose(fulcrum, inputs, formula, os.path.join(tmp, key), cache, extra, **kw))
        for k in range(reps):
            log(f"{label}: fulcrum fit, cache reused, run {k + 1}/{reps} ...")
            prewarm(gib)
            r = fulcrum_fit(fulcrum, inputs, formula, os.path.join(tmp, f"{key}-fit"), cache, extra, **kw)
            for x in ("stdout", "coefficients"):
                r.pop(x, None)
            out["fit_warm"].append(r)
            log(f"{label}: fulcrum diagnose, cache reused, run {k + 1}/{reps} ...")
            prewarm(gib)
            out["diagnose_warm"].append(fulcrum_diagnose(fulcrum, inputs, formula, os.path.join(tmp, key), cache, extra, **kw))
        out["diagnostics_parquet"] = os.path.join(tmp, key, "diagnostics.parquet")
        summarize(out)
        return out

    # ---- (a) Adult: fulcrum diagnose / fit, statsmodels fit + get_influence (default and 1 BLAS thread)
    fa = fulcrum_runs("(a) Adult", [a.adult], FORMULA_A, "adult", a.reps, a.reps, ["--filter", "split=train"])
    sm = {}
    for threads in (None, 1):
        runs = []
        for k in range(a.sm_reps):
            log(f"(a) Adult: statsmodels fit + get_influence (BLAS threads: {threads or 'default'}), run {k + 1}/{a.sm_reps} ...")
            env = dict(os.environ, OPENBLAS_NUM_THREADS=str(threads), OMP_NUM_THREADS=str(threads)) if threads else None
            out_json = os.path.join(tmp, f"sm-adult-{threads or 'default'}.json")
            r = measure([sys.executable, os.path.abspath(__file__), "sm-diag", a.adult, out_json], env=env, quiet_max_s=qw)
            r.pop("stdout", None)
            r["blas_threads"] = threads or "default"
            with open(out_json) as f:
                r["result"] = json.load(f)
            runs.append(r)
        sm["default" if threads is None else "1thread"] = {"runs": runs, "npz": out_json + ".npz"}
    sa = sm["default"]["runs"][-1]["result"]
    fsum = fa["diagnose_warm"][-1]["summary"]
    res["adult"] = {"formula": FORMULA_A, "filter": "split=train", "fulcrum": fa, "statsmodels": sm,
                    "row_check": compare_rows(fa["diagnostics_parquet"], sm["default"]["npz"], fsum["rank"], sa["k_vars"])}
    save()

    # ---- (b) 1M rows, p = 539; (c) 4M rows: fulcrum only
    res["sparse_1m"] = fulcrum_runs("(b) 1M", [a.in_1m], FORMULA_B, "1m", a.reps, 1, gib=a.prewarm, timeline_dt=a.timeline_dt)
    save()
    res["sparse_4m"] = fulcrum_runs("(c) 4M", [a.in_4m], FORMULA_B, "4m", a.reps_4m, 1, gib=a.prewarm_4m, timeline_dt=a.timeline_dt)
    if not a.keep_caches:  # caches and the 1M/4M outputs (diagnostics.parquet: ~80 / ~330 MB)
        for key in ("adult", "1m", "4m"):
            fresh_cache(os.path.join(work, f"diagcache-{key}"))
            if key != "adult":
                fresh_cache(os.path.join(tmp, key))
                fresh_cache(os.path.join(tmp, f"{key}-fit"))
    res["loadavg_at_end"] = os.getloadavg()
    res["interference"] = interference(res)
    res["targets"] = targets(res)
    save()
    txt = table(res)
    with open(a.table_out, "w") as f:
        f.write(txt + "\n")
    print(txt)
    log(f"raw JSON written to {a.json_out}, table to {a.table_out}")


def sha256(path):
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def summarize(d):
    """Best-of figures of one fulcrum_runs() result (in place)."""
    def rss(runs, key="max_rss_mib"):
        v = [r[key] for r in runs if key in r]
        return {"min": min(v), "max": max(v)} if v else None

    diag = d["diagnose_cold"] + d["diagnose_warm"]
    for side in ("diagnose_cold", "diagnose_warm", "fit_warm"):
        runs = d[side]
        d[f"{side}_best_wall_s"] = best(runs) if runs else None
        d[f"{side}_rss_mib"] = rss(runs)
        d[f"{side}_anon_mib"] = rss(runs, "sampled_peak_RssAnon_mib")
        d[f"{side}_file_mib"] = rss(runs, "sampled_peak_RssFile_mib")
    d["best_fit_total_s_fit"] = min(r["summary"]["timing_s"]["fit_total"] for r in d["fit_warm"])
    d["best_fit_total_s_diagnose"] = min(r["summary"]["timing_s"]["fit_total"] for r in diag)
    d["best_diagnostics_s"] = min(r["summary"]["timing_s"]["diagnostics"] for r in diag)
    # The computing alone: timing_s.diagnostics less its Parquet writing (timing_s.diagnostics_output).
    d["best_diagnostics_compute_s"] = min(
        r["summary"]["timing_s"]["diagnostics"] - r["summary"]["timing_s"].get("diagnostics_output", 0.0) for r in diag)
    d["best_diagnostics_output_s"] = min(r["summary"]["timing_s"].get("diagnostics_output", 0.0) for r in diag)
    s = d["diagnose_warm"][-1]["summary"]
    d.update(n_obs=s["n_obs"], n_params=s["n_params"], rank=s["rank"], iterations=s["iterations"],
             sum_hat=s["diagnostics"]["sum_hat"])
    return d


def interference(res):
    """Per measured group: wall seconds, and CPU seconds other processes used meanwhile."""
    def runs(d):
        return d["diagnose_cold"] + d["diagnose_warm"] + d["fit_warm"]

    groups = {
        "adult_fulcrum": runs(res["adult"]["fulcrum"]),
        "adult_statsmodels": [r for v in res["adult"]["statsmodels"].values() for r in v["runs"]],
        "sparse_1m": runs(res["sparse_1m"]),
        "sparse_4m": runs(res["sparse_4m"]),
    }
    out = {}
    for k, v in groups.items():
        out[k] = {key: round(sum(x[key] for x in v), 1) for key in ("wall_s", "other_processes_cpu_s")}
    return out


def targets(res):
    fa = res["adult"]["fulcrum"]
    sm_runs = [r for v in res["adult"]["statsmodels"].values() for r in v["runs"]]

    def sm_best(key):
        r = min(sm_runs, key=lambda x: x["result"]["timing_s"][key])
        return {"s": r["result"]["timing_s"][key], "blas_threads": r["blas_threads"]}

    sm_b = {k: sm_best(k) for k in ("fit", "influence_columns", "influence_full", "end_to_end")}
    sm_b["process_wall_s"] = min(r["wall_s"] for r in sm_runs)
    sm_b["max_rss_mib"] = max(r["max_rss_mib"] for r in sm_runs)
    fd = fa["best_diagnostics_s"]
    t = {
        "statsmodels_best": sm_b,
        "adult_diag_only_speedup_full": sm_b["influence_full"]["s"] / fd,
        "adult_diag_only_speedup_no_dfbetas": sm_b["influence_columns"]["s"] / fd,
        "adult_diag_compute_speedup_full": sm_b["influence_full"]["s"] / fa["best_diagnostics_compute_s"],
        "adult_e2e_speedup_cold": sm_b["end_to_end"]["s"] / fa["diagnose_cold_best_wall_s"],
        "adult_e2e_speedup_warm": sm_b["end_to_end"]["s"] / fa["diagnose_warm_best_wall_s"],
        "adult_process_speedup_warm": sm_b["process_wall_s"] / fa["diagnose_warm_best_wall_s"],
    }
    t["adult_diag_only_met"] = t["adult_diag_only_speedup_full"] >= TARGET_ADULT_SPEEDUP
    t["adult_e2e_met"] = min(t["adult_e2e_speedup_cold"], t["adult_e2e_speedup_warm"]) >= TARGET_ADULT_SPEEDUP
    b, c = res["sparse_1m"], res["sparse_4m"]
    t["1m_diag_over_fit_time"] = b["best_diagnostics_s"] / b["best_fit_total_s_fit"]
    t["1m_diag_time_met"] = t["1m_diag_over_fit_time"] <= 1.0
    t["1m_rss_diag_over_fit"] = b["diagnose_warm_rss_mib"]["max"] / b["fit_warm_rss_mib"]["max"]
    t["1m_rss_met"] = t["1m_rss_diag_over_fit"] <= TARGET_RSS_VS_FIT
    if b["diagnose_warm_anon_mib"] and b["fit_warm_anon_mib"]:
        t["1m_anon_diag_over_fit"] = b["diagnose_warm_anon_mib"]["max"] / b["fit_warm_anon_mib"]["max"]
    t["4m_over_1m_rss_diagnose"] = c["diagnose_warm_rss_mib"]["max"] / b["diagnose_warm_rss_mib"]["max"]
    t["4m_rss_flat_met"] = t["4m_over_1m_rss_diagnose"] <= TARGET_RSS_FLAT
    if c["diagnose_warm_anon_mib"] and b["diagnose_warm_anon_mib"]:
        t["4m_over_1m_anon_diagnose"] = c["diagnose_warm_anon_mib"]["max"] / b["diagnose_warm_anon_mib"]["max"]
    t["4m_diag_over_fit_time"] = c["best_diagnostics_s"] / c["best_fit_total_s_fit"]
    return t


def table(r):
    t, s = r["targets"], _fmt_s
    ok = lambda b: "met" if b else "**missed**"
    fa, ck = r["adult"]["fulcrum"], r["adult"]["row_check"]
    smr = r["adult"]["statsmodels"]
    sb = t["statsmodels_best"]
    n = r["reps"]

    def mib(d):
        return f"{d['max']:.0f}" if d else "n/a"

    def sm_line(key, d):
        runs = d["runs"]
        tt = [x["result"]["timing_s"] for x in runs]
        inf = {k: min(x["influence"][k] for x in tt) for k in tt[0]["influence"]}
        name = "statsmodels" + (" (1 BLAS thread)" if key == "1thread" else "")
        return [
            (f"{name}: load + design / `GLM.fit` / `get_influence()` + same columns / + `dfbetas` (n × p) (best of {len(runs)} each)",
             f"{s(min(x['load_and_design'] for x in tt))} / {s(min(x['fit'] for x in tt))} / "
             f"{s(min(x['influence_columns'] for x in tt))} / {s(min(x['influence_full'] for x in tt))}", "", "", ""),
            (f"{name}: of which `get_influence()` / `hat_matrix_diag` / `cooks_distance` / `resid_studentized` / `dfbetas`",
             f"{s(inf['get_influence'])} / {s(inf['hat'])} / {s(inf['cooks_d'])} / {s(inf['resid_studentized'])} / {s(inf['dfbetas'])}",
             "", "", ""),
        ]

    def fulcrum_lines(d, label, nc):
        return [
            (f"fulcrum `diagnose`{label}, whole process, cache build (best of {nc}) / cache reused (best of {len(d['diagnose_warm'])})",
             f"{s(d['diagnose_cold_best_wall_s'])} / {s(d['diagnose_warm_best_wall_s'])}", "", "", ""),
            (f"fulcrum `fit`{label}, whole process, cache reused (best of {len(d['fit_warm'])})", s(d["fit_warm_best_wall_s"]), "", "", ""),
            ("fulcrum: fit (`timing_s.fit_total` of `fit`) / diagnostics (`timing_s.diagnostics` of `diagnose`), best; IRLS iterations",
             f"{s(d['best_fit_total_s_fit'])} / {s(d['best_diagnostics_s'])}; {d['iterations']}", "", "", ""),
        ]

    rows = [
        ("**(a) Adult logistic** (n = {:,}, p = {})".format(fa["n_obs"], fa["n_params"]), "", "", "", ""),
        *fulcrum_lines(fa, "", len(fa["diagnose_cold"])),
        *sm_line("default", smr["default"]),
        *sm_line("1thread", smr["1thread"]),
        ("Speed-up, diagnostics only: statsmodels `get_influence()` + columns + `dfbetas` / fulcrum `timing_s.diagnostics`", "",
         "≥ 50×", f"{t['adult_diag_only_speedup_full']:.0f}×", ok(t["adult_diag_only_met"])),
        ("Speed-up, diagnostics only, without statsmodels' `dfbetas`", "", "",
         f"{t['adult_diag_only_speedup_no_dfbetas']:.0f}×", ""),
        ("Speed-up, computing the columns only (both sides in memory): statsmodels as above / fulcrum "
         "`timing_s.diagnostics` − `timing_s.diagnostics_output` (the Parquet writing), best "
         f"{s(fa['best_diagnostics_compute_s'])}; writing alone, best {s(fa['best_diagnostics_output_s'])}", "", "",
         f"{t['adult_diag_compute_speedup_full']:.0f}×", ""),
        ("Speed-up, end-to-end: statsmodels load + design + fit + influence + columns + `dfbetas` / fulcrum `diagnose` process, cache build / reused",
         "", "≥ 50×", f"{t['adult_e2e_speedup_cold']:.0f}× / {t['adult_e2e_speedup_warm']:.0f}×", ok(t["adult_e2e_met"])),
        ("Speed-up, process vs process (statsmodels incl. Python start and imports), cache reused", "", "",
         f"{t['adult_process_speedup_warm']:.0f}×", ""),
        (f"Rows vs statsmodels, joined on row id ({ck['n_matched']:,} matched, {ck['n_skipped_hat_one']} with h ≥ 1 − 1e-10 "
         "skipped): hat, Cook's D max rel diff (values ≥ 1e-12) / max abs diff",
         f"hat {ck['hat']['max_rel_diff']:.1e} / {ck['hat']['max_abs_diff']:.1e}; "
         f"Cook's D {ck['cooks_d']['max_rel_diff']:.1e} / {ck['cooks_d']['max_abs_diff']:.1e}", "", "", ""),
        ("Peak RSS: fulcrum `diagnose` (cache build) / `fit` / statsmodels process",
         f"{mib(fa['diagnose_cold_rss_mib'])} / {mib(fa['fit_warm_rss_mib'])} / {sb['max_rss_mib']:.0f} MiB", "", "", ""),
    ]
    for key, label, nrows in (("sparse_1m", "(b)", "1M"), ("sparse_4m", "(c)", "4M")):
        d = r[key]
        rows += [(f"**{label} synthetic {nrows} rows, p = {d['n_params']}**", "", "", "", ""), *fulcrum_lines(d, "", len(d["diagnose_cold"]))]
        rows.append(("Peak RSS `fit` / `diagnose`, cache reused (GNU time, max over runs)",
                     f"{mib(d['fit_warm_rss_mib'])} / {mib(d['diagnose_warm_rss_mib'])} MiB", "", "", ""))
        rows.append(("  sampled peak anonymous / file-backed: `fit`; `diagnose`",
                     f"{mib(d['fit_warm_anon_mib'])} / {mib(d['fit_warm_file_mib'])}; "
                     f"{mib(d['diagnose_warm_anon_mib'])} / {mib(d['diagnose_warm_file_mib'])} MiB", "", "", ""))
        if key == "sparse_1m":
            rows += [
                ("Diagnostics time / fit time (`timing_s.diagnostics` / `timing_s.fit_total`)", "", "≤ 1",
                 f"{t['1m_diag_over_fit_time']:.2f}", ok(t["1m_diag_time_met"])),
                ("Peak RSS `diagnose` / `fit` (GNU time)", "", "≤ 1.10", f"{t['1m_rss_diag_over_fit']:.2f}", ok(t["1m_rss_met"])),
            ]
        else:
            rows += [
                ("Peak RSS `diagnose` 4M / 1M (GNU time)", "", "flat (≤ 1.10)", f"{t['4m_over_1m_rss_diagnose']:.2f}"
                 + (f" (anon {t['4m_over_1m_anon_diagnose']:.2f})" if "4m_over_1m_anon_diagnose" in t else ""),
                 ok(t["4m_rss_flat_met"])),
                ("Diagnostics time / fit time at 4M", "", "", f"{t['4m_diag_over_fit_time']:.2f}", ""),
            ]
    body = "\n".join(f"| {' | '.join(x)} |" for x in rows)
    cpu = "; ".join(f"{k} {v['other_processes_cpu_s']:.0f} CPU-s over {v['wall_s']:.0f} s" for k, v in r["interference"].items())
    return (f"| Measurement | Value | Target | Ratio | Status |\n|---|---|---|---|---|\n{body}\n\n"
            f"CPU used by other processes while the measured processes ran (2 CPUs = 2 CPU-s per wall second): {cpu}.")


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--fulcrum", required=True)
    r.add_argument("--adult", default="fixtures/adult.parquet")
    r.add_argument("--in-1m", required=True)
    r.add_argument("--in-4m", required=True)
    r.add_argument("--work", default="bench-data")
    r.add_argument("--reps", type=int, default=3)
    r.add_argument("--reps-4m", type=int, default=2)
    r.add_argument("--sm-reps", type=int, default=3, help="statsmodels processes per BLAS-thread setting")
    r.add_argument("--prewarm", type=float, default=1.5, help="GiB touched before each 1M-row measurement")
    r.add_argument("--prewarm-4m", type=float, default=3.5, help="GiB touched before each 4M-row measurement")
    r.add_argument("--quiet-wait", type=float, default=60.0, help="max seconds to wait for an idle machine before each run")
    r.add_argument("--timeline-dt", type=float, default=0.25, help="RSS/CPU timeline step of the 1M/4M runs (JSON only)")
    r.add_argument("--keep-caches", action="store_true")
    r.add_argument("--json-out", default="bench-data/bench_diagnose.json")
    r.add_argument("--table-out", default="bench-data/bench_diagnose_table.md")
    r.add_argument("--command-line", default="scripts/bench_diagnose.sh")
    s = sub.add_parser("sm-diag")
    s.add_argument("data")
    s.add_argument("out")
    t = sub.add_parser("table", help="re-print the table of a bench_diagnose.json")
    t.add_argument("json")
    a = ap.parse_args()
    if a.cmd == "sm-diag":
        sm_diag(a.data, a.out)
    elif a.cmd == "table":
        with open(a.json) as f:
            res = json.load(f)
        res["interference"] = interference(res)
        res["targets"] = targets(res)
        print(table(res))
    else:
        cmd_run(a)


if __name__ == "__main__":
    main()
