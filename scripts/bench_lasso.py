#!/usr/bin/env python3
"""Timing driver for scripts/bench_lasso.sh (run that, not this, unless you know why).

Subcommands:
  run                    time fulcrum's 20-point lasso path (Parquet -> summary.json) against R glmnet
                         (../shared/tools/bench_glmnet.R) on the 1M-row synthetic file with all columns,
                         plus fulcrum alone at 4M rows; write JSON + markdown table
  export-r --data P --synth DIR
                         (internal) ../shared/tools/bench_peers.py's `export_r`, writing DIR/rx/ instead of
                         its hard-wired ../shared/tools/synth/rx (DIR must be named `synth`)
  evaluate --data P --lambda-file L --out J PATH.parquet...
                         (internal) objective of fulcrum's last-lambda coefficients evaluated on
                         bench_peers.py's design (mean logloss + lambda * sum|b|, as bench_glmnet.R does)
  table JSON             re-print the markdown table of a bench_lasso.json

Measurement machinery (GNU time -v around every external command, /proc sampling of RssAnon /
RssFile and CPU, the CPU of other processes, waiting for an idle machine, prewarm) is bench_fit.py's
and bench_ingest.py's, imported, not copied. The glmnet design and lambda_max are those of
../shared/tools/bench_peers.py (imported or run, never copied; ../shared is read-only).
"""
import argparse
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
SHARED = os.path.normpath(os.path.join(HERE, "..", "..", "shared", "tools"))

from bench_fit import _fmt_s, best, log, measure  # noqa: E402

DENSE = [f"x{j:02d}" for j in range(20)]
FORMULA = "y ~ " + " + ".join(DENSE + ["C(c20)", "C(c500)", "C(c20000)", "sparse(feats)"])
NLAMBDA = 20
RATIO = 5e-4
THRESH_PEER = 1e-7  # glmnet's default thresh, used by bench_glmnet.R: the headline comparison
THRESH_DEFAULT = 1e-10  # fulcrum's default --thresh

TARGET_WALL = 0.5  # fulcrum wall (Parquet -> summary) <= 0.5 x glmnet's wall
TARGET_RSS = 0.33  # fulcrum peak RSS <= 0.33 x glmnet's
TARGET_OBJ = 1e-7  # |obj_f - obj_g| / obj_g <= 1e-7, or fulcrum lower
TARGET_FLAT = 1.10  # "RSS flat": 4M peak RSS within ~10 % of 1M's
TARGET_LMAX = 1e-10  # fulcrum's lambda_max against bench_peers.py's (relative)

# bench_peers.py's column order (full design, code 0 of each categorical dropped, no intercept column)
PEER_OFFSETS = {"c20": 20, "c500": 20 + 19, "c20000": 20 + 19 + 499, "feats": 20 + 19 + 499 + 19999}


def shared_bench_peers():
    sys.dont_write_bytecode = True  # no __pycache__ inside ../shared (read-only by convention; we may run as root)
    sys.path.insert(0, SHARED)
    import bench_peers

    return bench_peers


# ---------------------------------------------------------------------------------------------
# internal subcommands (each runs in its own process)
# ---------------------------------------------------------------------------------------------
def export_r(data, synth, out):
    """bench_peers.py export_r, unchanged, but with its base directory pointed at our scratch space:
    it writes os.path.join(HERE, "synth", "rx"), so HERE becomes synth's parent."""
    if os.path.basename(os.path.normpath(synth)) != "synth":
        raise SystemExit("--synth must be a directory named 'synth'")
    bp = shared_bench_peers()
    bp.HERE = os.path.dirname(os.path.abspath(synth))
    sys.argv = ["bench_peers.py", "export_r", "--data", data, "--out", out]
    bp.main()


def peer_index(name):
    """fulcrum coefficient name -> column of bench_peers.py's design (None: intercept)."""
    if name == "(Intercept)":
        return None
    if name in DENSE:
        return DENSE.index(name)
    term, rest = name.split("[", 1)
    rest = rest.rstrip("]")
    if term == "feats":
        return PEER_OFFSETS["feats"] + int(rest)
    level = int(rest.rsplit("_", 1)[1])  # c500[c500_17] -> level 17; level 0 is the dropped baseline
    if level == 0:
        raise ValueError(f"baseline level in fulcrum output: {name}")
    return PEER_OFFSETS[term] + level - 1


def last_lambda_coefs(path_parquet):
    import pyarrow.parquet as pq

    t = pq.read_table(path_parquet).to_pydict()
    last = max(t["lambda_index"])
    return {n: b for i, n, b in zip(t["lambda_index"], t["name"], t["estimate"]) if i == last}, last


def evaluate(data, lambda_file, out, paths):
    """Objective of fulcrum's last-lambda coefficients on bench_peers.py's design, computed with
    bench_peers.result_common (mean logloss + lambda * sum|b|): independent of fulcrum's deviance."""
    import numpy as np

    bp = shared_bench_peers()
    d = bp.load(data)
    X, _ = bp.full_csr(d)
    with open(lambda_file) as f:
        L = json.load(f)
    res = {"n": d["n"], "p": X.shape[1], "lambda_file": L, "fits": {}}
    for p in paths:
        coefs, last = last_lambda_coefs(os.path.join(p, "path.parquet"))
        with open(os.path.join(p, "summary.json")) as f:
            lam = json.load(f)["path"][last]["lambda"]
        b = np.zeros(X.shape[1])
        for n, v in coefs.items():
            j = peer_index(n)
            if j is not None:
                b[j] = v
        r = bp.result_common(X, b, coefs.get("(Intercept)", 0.0), d["y"], lam)
        r["lambda"] = lam
        res["fits"][p] = r
    with open(out, "w") as f:
        json.dump(res, f, indent=1)


# ---------------------------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------------------------
def fulcrum_cmd(fulcrum, data, thresh, cache, out):
    return [fulcrum, "fit", data, "--formula", FORMULA, "--family", "binomial", "--penalty", "lasso",
            "--standardize", "false", "--nlambda", str(NLAMBDA), "--lambda-min-ratio", str(RATIO),
            "--thresh", str(thresh), "--cache-dir", cache, "--out", out, "-q"]


def fulcrum_objective(out_dir):
    """deviance / (2 n) + lambda * sum_{j != intercept} |beta_j| at the last lambda (standardize false,
    unit penalty factors), from summary.json + path.parquet."""
    with open(os.path.join(out_dir, "summary.json")) as f:
        s = json.load(f)
    coefs, last = last_lambda_coefs(os.path.join(out_dir, "path.parquet"))
    pt = s["path"][last]
    l1 = sum(abs(v) for n, v in coefs.items() if n != "(Intercept)")
    n = s["n_obs"]
    return {
        "n_obs": n,
        "n_params": s["n_params"],
        "lambda_max": s["lambda_max"],
        "lambda_last": pt["lambda"],
        "lambdas": [q["lambda"] for q in s["path"]],
        "df_path": [q["df"] for q in s["path"]],
        "iterations_path": [q["iterations"] for q in s["path"]],
        "kkt_max_path": [q.get("kkt_max") for q in s["path"]],
        "deviance_last": pt["deviance"],
        "dev_ratio_last": pt["dev_ratio"],
        "l1_last": l1,
        "nnz_last": sum(1 for n_, v in coefs.items() if n_ != "(Intercept)" and v != 0),
        "intercept_last": coefs.get("(Intercept)"),
        "objective": pt["deviance"] / (2.0 * n) + pt["lambda"] * l1,
        "passes": s.get("passes"),
        "iterations": s.get("iterations"),
        "converged": s.get("converged"),
        "timing_s": s.get("timing_s"),
        "warnings": s.get("warnings"),
        "thresh": s.get("thresh"),
    }


def _git(*args):
    return subprocess.run(["git", *args], capture_output=True, text=True).stdout


def slim(r):
    r.pop("stdout", None)
    return r


def cmd_run(a):
    from bench_ingest import machine, prewarm  # same helpers as the ingest and fit benchmarks

    work = a.work
    tmp = os.path.join(work, "bench_lasso_tmp")
    peer = os.path.join(work, "bench_lasso_peer")
    synth = os.path.join(peer, "synth")
    os.makedirs(tmp, exist_ok=True)
    os.makedirs(os.path.join(synth, "rx"), exist_ok=True)
    os.makedirs(os.path.join(peer, "out"), exist_ok=True)
    qw, dt = a.quiet_wait, a.timeline_dt
    res = {
        "command": a.command_line,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "fulcrum_binary": a.fulcrum,
        "git": {"head": _git("rev-parse", "--short", "HEAD").strip(),
                "dirty_src": _git("status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock").splitlines()},
        "formula": FORMULA,
        "nlambda": NLAMBDA,
        "lambda_min_ratio": RATIO,
        "reps": a.reps,
        "glmnet_reps": a.glmnet_reps,
        "reps_4m": a.reps_4m,
        "prewarm_gib": {"1m": a.prewarm, "4m": a.prewarm_4m},
        "quiet_wait_s": qw,
        "loadavg_at_start": os.getloadavg(),
        "notes": [
            "Wall times are around whole processes (start-up included), measured with perf_counter in bench_fit.measure.",
            "fulcrum: Parquet -> summary.json + path.parquet in one process; 'cache build' = fresh --cache-dir.",
            "glmnet: the whole `Rscript bench_glmnet.R` process (read the CSC binaries, glmnet(), objective), as "
            "../shared/tools/run_bench.sh times it; the Parquet -> CSC export (bench_peers.py export_r) is a separate, "
            "untimed-in-the-ratio step whose own figures are under peer_prep.",
            "other_processes_cpu_s: CPU seconds used by the rest of the machine while the command ran (this sampler included).",
        ],
    }

    def save():
        with open(a.json_out, "w") as f:
            json.dump(res, f, indent=1)

    py = sys.executable
    bp_script = os.path.join(SHARED, "bench_peers.py")
    lam_file = os.path.join(synth, "lambda.json")

    # ---- peer data: lambda_max (bench_peers.py lambda, explicit paths) and the CSC export for R
    def fresh(path, *deps):
        return os.path.exists(path) and all(os.path.getmtime(path) > os.path.getmtime(x) for x in deps)

    prep = {}
    deps = (a.in_1m, bp_script)
    if a.reuse_peer_data and fresh(lam_file, *deps) and fresh(os.path.join(synth, "rx", "dim.json"), *deps):
        log(f"peer data: reusing {lam_file} and {synth}/rx (newer than the Parquet file and bench_peers.py)")
        prep["reused"] = True
    else:
        log("peer data: bench_peers.py lambda (lambda_max on its design) ...")
        prewarm(a.prewarm)
        prep["lambda"] = slim(measure([py, bp_script, "lambda", "--data", a.in_1m, "--lambda-file", lam_file,
                                       "--lambda-ratio", str(RATIO), "--out", os.path.join(peer, "out", "bench_lambda.json")],
                                      quiet_max_s=qw))
        log("peer data: bench_peers.py export_r (Parquet -> CSC binaries for R) ...")
        prewarm(a.prewarm)
        prep["export_r"] = slim(measure([py, os.path.abspath(__file__), "export-r", "--data", a.in_1m, "--synth", synth,
                                         "--out", os.path.join(peer, "out", "bench_export_r.json")], quiet_max_s=qw))
        prep["reused"] = False
    for k in ("lambda", "export_r"):
        with open(os.path.join(peer, "out", f"bench_{k}.json")) as f:
            prep[f"{k}_json"] = json.load(f)
    with open(lam_file) as f:
        prep["lambda_file"] = json.load(f)
    res["peer_prep"] = prep
    save()

    # ---- fulcrum
    def fulcrum_runs(label, data, thresh, key, reps, gib):
        cache = os.path.join(work, f"lassocache-{key}")
        out = {"thresh": thresh, "data": data}
        subprocess.run(["rm", "-rf", cache], check=True)
        for side in ("cold", "warm"):
            runs = []
            for k in range(reps):
                what = "cache build" if side == "cold" else "cache reused"
                log(f"{label}: fulcrum lasso path, thresh {thresh:g}, {what}, run {k + 1}/{reps} ...")
                if side == "cold":
                    subprocess.run(["rm", "-rf", cache], check=True)
                prewarm(gib)
                od = os.path.join(tmp, f"{key}-{side}")
                r = slim(measure(fulcrum_cmd(a.fulcrum, data, thresh, cache, od), quiet_max_s=qw, timeline_dt=dt))
                r["result"] = fulcrum_objective(od)
                r["out_dir"] = od
                runs.append(r)
            out[side] = {"runs": runs, "best_wall_s": best(runs), "max_rss_mib": max(r["max_rss_mib"] for r in runs),
                         "sampled_peak_RssAnon_mib": max(r.get("sampled_peak_RssAnon_mib", 0) for r in runs),
                         "sampled_peak_RssFile_mib": max(r.get("sampled_peak_RssFile_mib", 0) for r in runs)}
        if not a.keep_caches:
            subprocess.run(["rm", "-rf", cache], check=True)
        out["result"] = out["warm"]["runs"][-1]["result"]
        out["out_dir"] = out["warm"]["runs"][-1]["out_dir"]
        out["max_rss_mib"] = max(out[s]["max_rss_mib"] for s in ("cold", "warm"))
        out["best_path_s"] = min(r["result"]["timing_s"]["path"] + r["result"]["timing_s"].get("path_setup", 0.0)
                                 for s in ("cold", "warm") for r in out[s]["runs"])
        return out

    res["fulcrum_1m"] = fulcrum_runs("1M", a.in_1m, THRESH_PEER, "1m-t7", a.reps, a.prewarm)
    save()
    res["fulcrum_1m_default_thresh"] = fulcrum_runs("1M", a.in_1m, THRESH_DEFAULT, "1m-t10", a.reps, a.prewarm)
    save()

    # ---- R glmnet
    g_runs = []
    g_out = os.path.join(peer, "out", "bench_glmnet_R.json")
    for k in range(a.glmnet_reps):
        log(f"1M: R glmnet (bench_glmnet.R), run {k + 1}/{a.glmnet_reps} ...")
        prewarm(a.prewarm)
        r = slim(measure(["Rscript", os.path.join(SHARED, "bench_glmnet.R"), synth, g_out], quiet_max_s=qw, timeline_dt=dt))
        with open(g_out) as f:
            r["result"] = json.load(f)
        g_runs.append(r)
    res["glmnet_1m"] = {"runs": g_runs, "best_wall_s": best(g_runs), "min_rss_mib": min(r["max_rss_mib"] for r in g_runs),
                        "max_rss_mib": max(r["max_rss_mib"] for r in g_runs),
                        "best_fit_s": min(r["result"]["t_fit_s"] for r in g_runs),
                        "best_load_s": min(r["result"]["t_load_s"] for r in g_runs),
                        "sampled_peak_RssAnon_mib": max(r.get("sampled_peak_RssAnon_mib", 0) for r in g_runs),
                        "sampled_peak_RssFile_mib": max(r.get("sampled_peak_RssFile_mib", 0) for r in g_runs),
                        "result": g_runs[-1]["result"]}
    save()

    # ---- fulcrum at 4M rows (RSS flat)
    if a.in_4m:
        res["fulcrum_4m"] = fulcrum_runs("4M", a.in_4m, THRESH_PEER, "4m-t7", a.reps_4m, a.prewarm_4m)
    else:
        res["fulcrum_4m"] = {"skipped": True}
    save()

    # ---- objectives re-evaluated on bench_peers.py's design (independent of fulcrum's deviance)
    log("evaluating fulcrum's final coefficients on bench_peers.py's design ...")
    ev_out = os.path.join(tmp, "evaluate.json")
    dirs = [res["fulcrum_1m"]["out_dir"], res["fulcrum_1m_default_thresh"]["out_dir"]]
    subprocess.run([py, os.path.abspath(__file__), "evaluate", "--data", a.in_1m, "--lambda-file", lam_file,
                    "--out", ev_out, *dirs], check=True)
    with open(ev_out) as f:
        ev = json.load(f)
    res["fulcrum_1m"]["peer_eval"] = ev["fits"][dirs[0]]
    res["fulcrum_1m_default_thresh"]["peer_eval"] = ev["fits"][dirs[1]]

    res["loadavg_at_end"] = os.getloadavg()
    res["interference"] = interference(res)
    res["checks"] = checks(res)
    save()
    tab = table(res)
    with open(a.table_out, "w") as f:
        f.write(tab + "\n")
    print(tab)
    log(f"raw JSON written to {a.json_out}; table to {a.table_out}")


# ---------------------------------------------------------------------------------------------
# checks and table
# ---------------------------------------------------------------------------------------------
def _rel(a, b):
    return (a - b) / abs(b)


def interference(res):
    groups = {"fulcrum_1m": [r for k in ("fulcrum_1m", "fulcrum_1m_default_thresh") for s in ("cold", "warm") for r in res[k][s]["runs"]],
              "glmnet_1m": res["glmnet_1m"]["runs"]}
    if not res["fulcrum_4m"].get("skipped"):
        groups["fulcrum_4m"] = res["fulcrum_4m"]["cold"]["runs"] + res["fulcrum_4m"]["warm"]["runs"]
    out = {}
    for k, runs in groups.items():
        out[k] = {key: round(sum(x[key] for x in runs), 1) for key in ("wall_s", "other_processes_cpu_s")}
    return out


def checks(res):
    f7, f10, g = res["fulcrum_1m"], res["fulcrum_1m_default_thresh"], res["glmnet_1m"]
    L = res["peer_prep"]["lambda_file"]
    gr = g["result"]
    c = {
        # wall: fulcrum best of its runs / glmnet best of its runs (same run of this script)
        "wall_ratio_cold": f7["cold"]["best_wall_s"] / g["best_wall_s"],
        "wall_ratio_warm": f7["warm"]["best_wall_s"] / g["best_wall_s"],
        "wall_ratio_cold_default_thresh": f10["cold"]["best_wall_s"] / g["best_wall_s"],
        "wall_ratio_warm_default_thresh": f10["warm"]["best_wall_s"] / g["best_wall_s"],
        "fit_ratio": f7["best_path_s"] / g["best_fit_s"],
        # RSS: conservative, fulcrum's largest peak over its runs / glmnet's smallest
        "rss_ratio": f7["max_rss_mib"] / g["min_rss_mib"],
        "rss_ratio_default_thresh": f10["max_rss_mib"] / g["min_rss_mib"],
        "lambda_max_fulcrum": f7["result"]["lambda_max"],
        "lambda_max_peers": L["lambda_max"],
        "lambda_max_rel_diff": _rel(f7["result"]["lambda_max"], L["lambda_max"]),
        "lambda_last_fulcrum": f7["result"]["lambda_last"],
        "lambda_last_glmnet": gr["lambda"],
        "lambda_last_rel_diff": _rel(f7["result"]["lambda_last"], gr["lambda"]),
        "objective_glmnet": gr["objective"],
        "nnz_glmnet": gr["nnz_coef"],
        "df_path_glmnet": gr.get("df_path"),
    }
    for tag, f in (("", f7), ("_default_thresh", f10)):
        d = _rel(f["result"]["objective"], gr["objective"])
        c[f"objective_fulcrum{tag}"] = f["result"]["objective"]
        c[f"objective_rel_diff{tag}"] = d
        c[f"objective_met{tag}"] = abs(d) <= TARGET_OBJ or d < 0
        c[f"objective_peer_eval{tag}"] = f["peer_eval"]["objective"]
        c[f"objective_peer_eval_rel_diff{tag}"] = _rel(f["peer_eval"]["objective"], gr["objective"])
        c[f"objective_self_vs_peer_eval{tag}"] = _rel(f["result"]["objective"], f["peer_eval"]["objective"])
        c[f"nnz_fulcrum{tag}"] = f["result"]["nnz_last"]
        dg = gr.get("df_path") or []
        c[f"df_path_equal{tag}"] = sum(1 for x, y in zip(f["result"]["df_path"], dg) if x == y)
    c["wall_met"] = c["wall_ratio_cold"] <= TARGET_WALL
    c["rss_met"] = c["rss_ratio"] <= TARGET_RSS
    c["lambda_max_met"] = abs(c["lambda_max_rel_diff"]) <= TARGET_LMAX
    f4 = res["fulcrum_4m"]
    if not f4.get("skipped"):
        c["rss_4m_over_1m"] = f4["max_rss_mib"] / f7["max_rss_mib"]
        c["rss_flat_met"] = c["rss_4m_over_1m"] <= TARGET_FLAT
        c["wall_4m_over_1m_cold"] = f4["cold"]["best_wall_s"] / f7["cold"]["best_wall_s"]
        c["wall_4m_over_1m_warm"] = f4["warm"]["best_wall_s"] / f7["warm"]["best_wall_s"]
    return c


def table(r):
    c = r["checks"]
    s = _fmt_s
    ok = lambda b: "met" if b else "**missed**"
    f7, f10, g, f4 = r["fulcrum_1m"], r["fulcrum_1m_default_thresh"], r["glmnet_1m"], r["fulcrum_4m"]
    gr = g["result"]
    n, gn = r["reps"], len(g["runs"])
    prep = r["peer_prep"]
    ex = prep["export_r_json"]
    res7 = f7["result"]

    def mem(x):
        sides = [x[k] for k in ("cold", "warm") if k in x] or [x]
        anon = max(y["sampled_peak_RssAnon_mib"] for y in sides)
        file_ = max(y["sampled_peak_RssFile_mib"] for y in sides)
        return f"{x['max_rss_mib']:.0f} MiB (anon {anon:.0f}, file {file_:.0f})"

    def cpu(runs):
        x = min(runs, key=lambda y: y["wall_s"])
        return s(x.get("user_s", float("nan")) + x.get("sys_s", float("nan")))

    def ts(x):
        t = x["result"]["timing_s"]
        return f"ingest {t.get('ingest', 0):.2f} s, path {t.get('path_setup', 0) + t.get('path', 0):.2f} s"

    rows = [
        ("**1M rows**: n = {:,}; fulcrum p = {:,} incl. intercept (c20000 levels that occur); glmnet p = {:,} + intercept, "
         "{:,} nnz; {} λ from λ_max down to {:g}·λ_max".format(res7["n_obs"], res7["n_params"], gr["p"], gr["nnz_design"], NLAMBDA, RATIO),
         "", "", "", "", ""),
        (f"Wall, whole process, thresh 1e-7, cache build (best of {n}) vs glmnet whole `Rscript` process (best of {gn})",
         s(f7["cold"]["best_wall_s"]), s(g["best_wall_s"]), f"≤ {TARGET_WALL}×", f"{c['wall_ratio_cold']:.3f}", ok(c["wall_met"])),
        (f"Wall, thresh 1e-7, cache reused (best of {n})", s(f7["warm"]["best_wall_s"]), s(g["best_wall_s"]), "",
         f"{c['wall_ratio_warm']:.3f}", ""),
        (f"Wall, fulcrum's default thresh 1e-10, cache build / reused (best of {n})",
         f"{s(f10['cold']['best_wall_s'])} / {s(f10['warm']['best_wall_s'])}", s(g["best_wall_s"]), "",
         f"{c['wall_ratio_cold_default_thresh']:.3f} / {c['wall_ratio_warm_default_thresh']:.3f}", ""),
        ("Inside the process (best cache-build run, thresh 1e-7): fulcrum ingest / path; glmnet read binaries (best) / `glmnet()` (best)",
         ts(min(f7["cold"]["runs"], key=lambda x: x["wall_s"])), f"load {g['best_load_s']:.2f} s, fit {g['best_fit_s']:.2f} s", "",
         f"path / fit: {c['fit_ratio']:.3f}", ""),
        ("Not in glmnet's wall: Parquet → CSC binaries for R (`bench_peers.py export_r`: read / design / write)",
         "", f"{ex['t_read_parquet_s']:.1f} / {ex['t_design_s']:.1f} / {ex['t_export_s']:.1f} s"
         + (f" (process {s(prep['export_r']['wall_s'])}, {prep['export_r']['max_rss_mib']:.0f} MiB)" if "export_r" in prep else ""),
         "", "", ""),
        ("CPU time, user + sys, of the best-wall run (fulcrum: cache build / reused, thresh 1e-7; glmnet is single-threaded)",
         f"{cpu(f7['cold']['runs'])} / {cpu(f7['warm']['runs'])}", cpu(g["runs"]), "", "", ""),
        ("Peak RSS (GNU time; fulcrum: max over its runs, glmnet: min over its runs); sampled anon / file-backed, thresh 1e-7",
         mem(f7), mem(dict(g, max_rss_mib=g["min_rss_mib"])),
         f"≤ {TARGET_RSS}×", f"{c['rss_ratio']:.3f}", ok(c["rss_met"])),
        ("Peak RSS, thresh 1e-10", mem(f10), "", "", f"{c['rss_ratio_default_thresh']:.3f}", ""),
        ("λ_max: fulcrum vs `bench_peers.py lambda`", f"{c['lambda_max_fulcrum']:.15g}", f"{c['lambda_max_peers']:.15g}",
         f"rel. ≤ {TARGET_LMAX:g}", f"{c['lambda_max_rel_diff']:+.1e}", ok(c["lambda_max_met"])),
        ("Final λ", f"{c['lambda_last_fulcrum']:.15g}", f"{c['lambda_last_glmnet']:.15g}", "", f"{c['lambda_last_rel_diff']:+.1e}", ""),
        ("Objective at the final λ, fulcrum thresh 1e-7 (fulcrum: deviance/2n + λ·Σ\\|β\\|; glmnet: mean logloss + λ·Σ\\|b\\|)",
         f"{c['objective_fulcrum']:.12g}", f"{c['objective_glmnet']:.12g}", f"\\|Δ\\|/obj ≤ {TARGET_OBJ:g} or lower",
         f"{c['objective_rel_diff']:+.2e}", ok(c["objective_met"])),
        ("Objective at the final λ, fulcrum thresh 1e-10", f"{c['objective_fulcrum_default_thresh']:.12g}", f"{c['objective_glmnet']:.12g}",
         f"\\|Δ\\|/obj ≤ {TARGET_OBJ:g} or lower", f"{c['objective_rel_diff_default_thresh']:+.2e}", ok(c["objective_met_default_thresh"])),
        ("Same, fulcrum's coefficients evaluated on bench_peers.py's design in Python (thresh 1e-7 / 1e-10)",
         f"{c['objective_peer_eval']:.12g} / {c['objective_peer_eval_default_thresh']:.12g}", "", "",
         f"{c['objective_peer_eval_rel_diff']:+.2e} / {c['objective_peer_eval_rel_diff_default_thresh']:+.2e}", ""),
        ("Non-zero coefficients at the final λ (intercept excluded), thresh 1e-7 / 1e-10",
         f"{c['nnz_fulcrum']} / {c['nnz_fulcrum_default_thresh']}", f"{c['nnz_glmnet']}", "", "", ""),
        ("λ values (of 20) where df equals glmnet's, thresh 1e-7 / 1e-10",
         f"{c['df_path_equal']} / {c['df_path_equal_default_thresh']}", "", "", "", ""),
        ("Passes over the data (fulcrum `passes`, thresh 1e-7 / 1e-10); glmnet `npasses` (coordinate-descent sweeps)",
         f"{res7['passes']} / {f10['result']['passes']}", f"{gr['npasses']}", "", "", ""),
    ]
    if not f4.get("skipped"):
        n4 = r["reps_4m"]
        r4 = f4["result"]
        rows += [
            (f"**4M rows** (fulcrum only, thresh 1e-7): n = {r4['n_obs']:,}, p = {r4['n_params']:,}", "", "", "", "", ""),
            (f"Wall, cache build / reused (best of {n4})", f"{s(f4['cold']['best_wall_s'])} / {s(f4['warm']['best_wall_s'])}", "", "",
             f"4M/1M: {c['wall_4m_over_1m_cold']:.2f} / {c['wall_4m_over_1m_warm']:.2f}", ""),
            ("Peak RSS (max over 4M runs); sampled anon / file-backed", mem(f4), "", f"≤ {TARGET_FLAT:.2f}× 1M",
             f"4M/1M: {c['rss_4m_over_1m']:.3f}", ok(c["rss_flat_met"])),
            ("Final λ, non-zero coefficients, passes", f"{r4['lambda_last']:.6g}, {r4['nnz_last']}, {r4['passes']}", "", "", "", ""),
        ]
    out = ["| Measurement | fulcrum | R glmnet | Target | Ratio / Δ | Status |", "|---|---|---|---|---|---|"]
    out += ["| " + " | ".join(x) + " |" for x in rows]
    busy = [f"{k} {v['other_processes_cpu_s']:.0f} CPU-s over {v['wall_s']:.0f} s" for k, v in r.get("interference", {}).items()]
    if busy:
        out += ["", "CPU used by other processes while the measured processes ran (2 CPUs = 2 CPU-s per wall second): "
                + "; ".join(busy) + "."]
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--fulcrum", required=True)
    r.add_argument("--in-1m", required=True)
    r.add_argument("--in-4m", default=None, help="omit to skip the 4M-row runs")
    r.add_argument("--work", default="bench-data")
    r.add_argument("--reps", type=int, default=3)
    r.add_argument("--glmnet-reps", type=int, default=3)
    r.add_argument("--reps-4m", type=int, default=1)
    r.add_argument("--prewarm", type=float, default=1.5, help="GiB touched before each 1M-row measurement (fulcrum and glmnet)")
    r.add_argument("--prewarm-4m", type=float, default=3.5, help="GiB touched before each 4M-row measurement")
    r.add_argument("--quiet-wait", type=float, default=60.0, help="max seconds to wait for an idle machine before each run")
    r.add_argument("--timeline-dt", type=float, default=1.0, help="RSS/CPU timeline sampling interval (s) kept in the JSON")
    r.add_argument("--reuse-peer-data", action="store_true",
                   help="reuse lambda.json and rx/ under WORK/bench_lasso_peer/synth if newer than the Parquet file")
    r.add_argument("--keep-caches", action="store_true")
    r.add_argument("--json-out", default="bench-data/bench_lasso.json")
    r.add_argument("--table-out", default="bench-data/bench_lasso_table.md")
    r.add_argument("--command-line", default="scripts/bench_lasso.sh")
    e = sub.add_parser("export-r")
    e.add_argument("--data", required=True)
    e.add_argument("--synth", required=True)
    e.add_argument("--out", required=True)
    v = sub.add_parser("evaluate")
    v.add_argument("--data", required=True)
    v.add_argument("--lambda-file", required=True)
    v.add_argument("--out", required=True)
    v.add_argument("paths", nargs="+", help="fulcrum --out directories")
    t = sub.add_parser("table")
    t.add_argument("json")
    a = ap.parse_args()
    if a.cmd == "export-r":
        export_r(a.data, a.synth, a.out)
    elif a.cmd == "evaluate":
        evaluate(a.data, a.lambda_file, a.out, a.paths)
    elif a.cmd == "table":
        with open(a.json) as f:
            res = json.load(f)
        res["interference"] = interference(res)
        res["checks"] = checks(res)
        print(table(res))
    else:
        cmd_run(a)


if __name__ == "__main__":
    main()
