#!/usr/bin/env python3
"""Driver of scripts/bench.sh, the consolidated benchmark of issue 9 (run that, not this).

Subcommands:
  run ...       every section below, in one run; writes the raw JSON and a markdown table
  table JSON    re-print the table of a bench.json

Sections (each can be skipped with --skip NAME; all figures of one table come from one run):
  lasso     (a) 20-point lasso path on the 1M-row file, all 120k columns: fulcrum (whole
            process, Parquet -> summary, cache build and reused) vs R glmnet (whole Rscript
            process from CSC binaries, as ../shared/tools/run_bench.sh times it) and skglm
            (warm-started path, path time only: scripts/bench_peers_extra.py skglm_path).
  diag      (b) unpenalised logistic fit + full diagnostics on the first 100k rows, p = 539
            (x00..x19 + c20 + c500): fulcrum `diagnose` (whole process, cache build) vs
            statsmodels (bench_peers.py statsmodels: design + GLM.fit + get_influence() with
            hat, Cook's D, studentized residuals, in-process, load excluded) and glum (fit only).
  scale     (c) fulcrum alone, `diagnose` with the same p = 539 model at 1M / 4M / 10M rows:
            wall, peak RSS (GNU time) and sampled RssAnon / RssFile, passes, time per pass.
  threads   (d) the 1M `diagnose` (cache reused) and one Xᵀ·v pass with 1 and 2 threads.
  passes    the Xᵀ·v pass against a plain streaming read of the same cache arrays (the
            memory-bandwidth bound), 1M rows, full 120k-column design (bench_passes).
  recall    planted-outlier recall on the 1M file: the fraction of planted label flips and
            high-leverage rows in the top 1 % by cooks_d, cbar, self_influence (AFIF loo) and
            the influence sketch (cooks_d_sketch, cbar_sketch).
"""
import argparse
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
sys.dont_write_bytecode = True

from bench_fit import head, log, measure  # noqa: E402  (shared measurement helpers)
from bench_ingest import git_state, machine, prewarm  # noqa: E402
from bench_lasso import FORMULA as FORMULA_FULL  # noqa: E402
from bench_lasso import NLAMBDA, RATIO, SHARED, fulcrum_objective  # noqa: E402

DENSE = [f"x{j:02d}" for j in range(20)]
FORMULA_539 = "y ~ " + " + ".join(DENSE + ["c20", "c500"])
THRESH = 1e-7  # glmnet's default thresh (bench_glmnet.R)

TARGETS = {
    "lasso_wall_vs_glmnet": 0.5,  # fulcrum wall <= 0.5 x glmnet's
    "lasso_rss_vs_glmnet": 0.33,  # fulcrum peak RSS <= 0.33 x glmnet's
    "diag_speedup_vs_statsmodels": 50.0,  # fit + diagnostics >= 50x faster
    "rss_10m_vs_1m": 1.10,  # 10M peak RSS within 10 % of 1M's
    "time_10m_vs_linear": 1.20,  # 10M time <= 1.2 x (10 x 1M time)
    "xtv_vs_stream": 0.50,  # Xᵀ·v pass >= 50 % of the streaming-read bandwidth
}


def slim(r):
    r.pop("stdout", None)
    return r


def fresh_dir(d):
    shutil.rmtree(d, ignore_errors=True)
    return d


def summary(out_dir):
    with open(os.path.join(out_dir, "summary.json")) as f:
        return json.load(f)


def fulcrum_diagnose(a, data, out, cache, extra=(), env=None, gib=None):
    prewarm(a.prewarm if gib is None else gib)
    cmd = [a.fulcrum, "diagnose", *data, "--formula", FORMULA_539, "--family", "binomial",
           "--cache-dir", cache, "--out", out, "-q", *extra]
    r = slim(measure(cmd, quiet_max_s=a.quiet_wait, timeline_dt=1.0, env=env))
    s = summary(out)
    r["summary"] = {k: s.get(k) for k in ("n_obs", "n_params", "rank", "iterations", "passes", "passes_fit",
                                          "passes_total", "deviance", "converged", "timing_s")}
    return r


def best_run(runs):
    return min(runs, key=lambda r: r["wall_s"])


def peak(runs, key):
    return max(r.get(key, 0.0) for r in runs)


# ---------------------------------------------------------------------------------------------
# sections
# ---------------------------------------------------------------------------------------------
def sec_lasso(a, res, save):
    out = {}
    peer = os.path.join(a.work, "bench_lasso_peer")
    synth = os.path.join(peer, "synth")
    os.makedirs(os.path.join(synth, "rx"), exist_ok=True)
    os.makedirs(os.path.join(peer, "out"), exist_ok=True)
    lam_file = os.path.join(synth, "lambda.json")
    py = sys.executable
    bp = os.path.join(SHARED, "bench_peers.py")

    def newer(path):
        return os.path.exists(path) and os.path.getmtime(path) > os.path.getmtime(a.in_1m)

    if not (newer(lam_file) and newer(os.path.join(synth, "rx", "dim.json"))):
        log("lasso: peer data (bench_peers.py lambda, export_r) ...")
        subprocess.run([py, bp, "lambda", "--data", a.in_1m, "--lambda-file", lam_file, "--lambda-ratio", str(RATIO),
                        "--out", os.path.join(peer, "out", "bench_lambda.json")], check=True, stdout=subprocess.DEVNULL)
        subprocess.run([py, os.path.join(HERE, "bench_lasso.py"), "export-r", "--data", a.in_1m, "--synth", synth,
                        "--out", os.path.join(peer, "out", "bench_export_r.json")], check=True, stdout=subprocess.DEVNULL)
    with open(lam_file) as f:
        out["lambda_file"] = json.load(f)

    cache = os.path.join(a.work, "benchcache-lasso-1m")
    for side in ("cold", "warm"):
        runs = []
        for k in range(a.reps):
            log(f"lasso: fulcrum path, {'cache build' if side == 'cold' else 'cache reused'}, run {k + 1}/{a.reps} ...")
            if side == "cold":
                fresh_dir(cache)
            prewarm(a.prewarm)
            od = os.path.join(a.work, "bench_tmp", f"lasso-{side}")
            cmd = [a.fulcrum, "fit", a.in_1m, "--formula", FORMULA_FULL, "--family", "binomial", "--penalty", "lasso",
                   "--standardize", "false", "--nlambda", str(NLAMBDA), "--lambda-min-ratio", str(RATIO),
                   "--thresh", str(THRESH), "--cache-dir", cache, "--out", od, "-q"]
            r = slim(measure(cmd, quiet_max_s=a.quiet_wait, timeline_dt=1.0))
            r["result"] = fulcrum_objective(od)
            runs.append(r)
        out[f"fulcrum_{side}"] = runs
        save()
    fresh_dir(cache)

    g_out = os.path.join(peer, "out", "bench_glmnet_R.json")
    runs = []
    for k in range(a.peer_reps):
        log(f"lasso: R glmnet, run {k + 1}/{a.peer_reps} ...")
        prewarm(a.prewarm)
        r = slim(measure(["Rscript", os.path.join(SHARED, "bench_glmnet.R"), synth, g_out], quiet_max_s=a.quiet_wait))
        with open(g_out) as f:
            r["result"] = json.load(f)
        runs.append(r)
    out["glmnet"] = runs
    save()

    if "skglm" not in a.skip:
        log(f"lasso: skglm warm-started path (timeout {a.skglm_timeout} s) ...")
        prewarm(a.prewarm)
        s_out = os.path.join(peer, "out", "bench_skglm_path.json")
        if os.path.exists(s_out):
            os.remove(s_out)
        r = slim(measure([py, os.path.join(HERE, "bench_peers_extra.py"), "skglm_path", "--data", a.in_1m,
                          "--lambda-file", lam_file, "--out", s_out], quiet_max_s=a.quiet_wait, timeout=a.skglm_timeout))
        if os.path.exists(s_out):
            with open(s_out) as f:
                r["result"] = json.load(f)
        out["skglm"] = r
    res["lasso"] = out
    save()


def sec_diag(a, res, save):
    out = {}
    sub = os.path.join(a.work, "sparse_100k.parquet")
    if not os.path.exists(sub):
        log(f"diag: writing the first 100,000 rows of {a.in_1m} to {sub}")
        head(a.in_1m, sub, 100_000)
    out["data"] = sub
    runs = []
    for k in range(a.reps):
        log(f"diag: fulcrum diagnose 100k (cache build), run {k + 1}/{a.reps} ...")
        cache = fresh_dir(os.path.join(a.work, "benchcache-100k"))
        runs.append(fulcrum_diagnose(a, [sub], os.path.join(a.work, "bench_tmp", "diag-100k"), cache, gib=0.5))
    out["fulcrum"] = runs
    fresh_dir(os.path.join(a.work, "benchcache-100k"))
    save()
    py = sys.executable

    def peer_runs(what, script, peer, out_name):
        runs = []
        for k in range(a.peer_reps):
            log(f"diag: {what} on 100k x 539, run {k + 1}/{a.peer_reps} ...")
            o = os.path.join(a.work, "bench_tmp", out_name)
            r = slim(measure([py, script, peer, "--data", a.in_1m, "--rows", "100000", "--out", o],
                             quiet_max_s=a.quiet_wait))
            with open(o) as f:
                r["result"] = json.load(f)
            runs.append(r)
        return runs

    out["statsmodels"] = peer_runs("statsmodels fit + get_influence", os.path.join(SHARED, "bench_peers.py"),
                                   "statsmodels", "sm-100k.json")
    save()
    out["glum"] = peer_runs("glum unpenalised fit", os.path.join(HERE, "bench_peers_extra.py"), "glum_fit",
                            "glum-100k.json")
    res["diag"] = out
    save()


def sec_scale(a, res, save):
    out = {}
    sizes = [("1m", [a.in_1m], a.prewarm), ("4m", [a.in_4m], a.prewarm_4m), ("10m", [a.in_10m], a.prewarm_4m)]
    for key, data, gib in sizes:
        if not data[0]:
            continue
        cache = os.path.join(a.work, f"benchcache-scale-{key}")
        od = os.path.join(a.work, "bench_tmp", f"scale-{key}")
        e = {"data": data}
        log(f"scale {key}: fulcrum diagnose, cache build ...")
        e["cold"] = fulcrum_diagnose(a, data, od, fresh_dir(cache), gib=gib)
        e["warm"] = []
        for k in range(a.reps_scale):
            log(f"scale {key}: fulcrum diagnose, cache reused, run {k + 1}/{a.reps_scale} ...")
            e["warm"].append(fulcrum_diagnose(a, data, od, cache, gib=gib))
        if key == "1m" and "threads" not in a.skip:
            env = dict(os.environ, RAYON_NUM_THREADS="1")
            e["warm_1thread"] = []
            for k in range(a.reps_scale):
                log(f"threads: 1M diagnose with RAYON_NUM_THREADS=1, run {k + 1}/{a.reps_scale} ...")
                e["warm_1thread"].append(fulcrum_diagnose(a, data, od, cache, env=env, gib=gib))
        fresh_dir(cache)
        out[key] = e
        res["scale"] = out
        save()


def sec_passes(a, res, save):
    out = {}
    cache = os.path.join(a.work, "benchcache-passes-1m")
    for threads in ("2", "1") if "threads" not in a.skip else ("2",):
        log(f"passes: bench_passes (Xᵀ·v, X·β, sandwich, streaming read), {threads} thread(s) ...")
        env = dict(os.environ, RAYON_NUM_THREADS=threads)
        r = measure([a.bench_passes, "--formula", FORMULA_FULL, "--cache-dir", cache, "--reps", "5", a.in_1m],
                    env=env, quiet_max_s=a.quiet_wait)
        r["result"] = json.loads(r.pop("stdout"))
        out[f"threads_{threads}"] = r
    fresh_dir(cache)
    res["passes"] = out
    save()


def sec_recall(a, res, save):
    import numpy as np
    import pyarrow.parquet as pq

    out = {}
    cache = fresh_dir(os.path.join(a.work, "benchcache-recall-1m"))
    od = os.path.join(a.work, "bench_tmp", "recall-diag")
    log("recall: diagnose --leverage exact,sketch on 1M ...")
    out["diagnose"] = fulcrum_diagnose(a, [a.in_1m], od, cache, extra=["--leverage", "exact,sketch"])
    oi = os.path.join(a.work, "bench_tmp", "recall-loo")
    log("recall: influence --task loo on 1M ...")
    prewarm(a.prewarm)
    out["loo"] = slim(measure([a.fulcrum, "influence", a.in_1m, "--formula", FORMULA_539, "--family", "binomial",
                               "--task", "loo", "--cache-dir", cache, "--out", oi, "-q"], quiet_max_s=a.quiet_wait))
    fresh_dir(cache)
    kind = np.array(pq.read_table(a.in_1m, columns=["planted_kind"]).column(0).to_pylist(), dtype=object)
    d = pq.read_table(os.path.join(od, "diagnostics.parquet")).to_pydict()
    inf = pq.read_table(os.path.join(oi, "influence.parquet"), columns=["row", "self_influence"]).to_pydict()
    scores = {k: (np.asarray(d["row"]), np.asarray(d[k], dtype=float))
              for k in ("cooks_d", "cbar", "cooks_d_sketch", "cbar_sketch", "hat")}
    scores["self_influence"] = (np.asarray(inf["row"]), np.asarray(inf["self_influence"], dtype=float))
    n = len(kind)
    top = max(1, n // 100)
    out["n"], out["top"] = n, top
    out["planted"] = {s: int((kind == s).sum()) for s in ("label_flip", "high_leverage")}
    rec = {}
    for name, (rows, v) in scores.items():
        v = np.where(np.isfinite(v), v, np.inf)  # h = 1 rows (NaN Cook's D) rank first: they are maximally influential
        idx = rows[np.argsort(-v, kind="stable")[:top]]
        k = kind[idx]
        rec[name] = {s: float((k == s).sum() / max(1, out["planted"][s])) for s in ("label_flip", "high_leverage")}
        rec[name]["any_planted_share_of_top"] = float((k != "").mean())
    out["recall_top_1pct"] = rec
    res["recall"] = out
    save()


# ---------------------------------------------------------------------------------------------
# targets and table
# ---------------------------------------------------------------------------------------------
def verdicts(r):
    v = {}
    L = r.get("lasso")
    if L:
        f = best_run(L["fulcrum_cold"])["wall_s"]
        fw = best_run(L["fulcrum_warm"])["wall_s"]
        g = best_run(L["glmnet"])["wall_s"]
        f_rss = max(peak(L["fulcrum_cold"], "max_rss_mib"), peak(L["fulcrum_warm"], "max_rss_mib"))
        g_rss = min(x["max_rss_mib"] for x in L["glmnet"])
        v["lasso_wall_vs_glmnet"] = {"value": f / g, "warm": fw / g, "fulcrum_s": f, "glmnet_s": g}
        v["lasso_rss_vs_glmnet"] = {"value": f_rss / g_rss, "fulcrum_mib": f_rss, "glmnet_mib": g_rss}
        sk = L.get("skglm", {})
        if sk.get("result"):
            v["lasso_wall_vs_skglm_path"] = {"value": f / sk["result"]["t_path_s"], "skglm_path_s": sk["result"]["t_path_s"]}
    D = r.get("diag")
    if D:
        fb = best_run(D["fulcrum"])["wall_s"]
        sm = min(x["result"]["t_design_s"] + x["result"]["t_fit_s"] + x["result"]["t_influence_s"] for x in D["statsmodels"])
        sm_proc = best_run(D["statsmodels"])["wall_s"]
        v["diag_speedup_vs_statsmodels"] = {"value": sm / fb, "fulcrum_s": fb, "statsmodels_s": sm,
                                            "process_vs_process": sm_proc / fb}
        gl = min(x["result"]["t_fit_s"] for x in D["glum"])
        v["diag_speedup_vs_glum_fit"] = {"value": gl / fb, "glum_fit_s": gl}
    S = r.get("scale")
    if S and "1m" in S and "10m" in S:
        w1 = min(x["wall_s"] for x in S["1m"]["warm"])
        w10 = min(x["wall_s"] for x in S["10m"]["warm"])
        c1, c10 = S["1m"]["cold"]["wall_s"], S["10m"]["cold"]["wall_s"]
        rs1 = max([S["1m"]["cold"]["max_rss_mib"]] + [x["max_rss_mib"] for x in S["1m"]["warm"]])
        rs10 = max([S["10m"]["cold"]["max_rss_mib"]] + [x["max_rss_mib"] for x in S["10m"]["warm"]])
        v["rss_10m_vs_1m"] = {"value": rs10 / rs1, "rss_1m": rs1, "rss_10m": rs10}
        v["time_10m_vs_linear"] = {"value": w10 / (10 * w1), "cold": c10 / (10 * c1)}
    P = r.get("passes")
    if P:
        x = P["threads_2"]["result"]
        v["xtv_vs_stream"] = {"value": x["stream_pass"]["best_s"] / x["xt_v_pass"]["best_s"]}
    for k, t in TARGETS.items():
        if k in v:
            ok = v[k]["value"] >= t if k in ("diag_speedup_vs_statsmodels", "xtv_vs_stream") else v[k]["value"] <= t
            v[k]["target"], v[k]["met"] = t, ok
    return v


def _s(x):
    return f"{x:.2f} s" if x >= 0.1 else f"{x * 1000:.0f} ms"


def table(r):
    v = r.get("verdicts") or verdicts(r)
    ok = lambda k: ("met" if v[k]["met"] else "**missed**") if k in v and "met" in v[k] else ""
    rows = ["| Measurement | fulcrum | peer | Target | Ratio | Status |", "|---|---|---|---|---|---|"]

    def row(*c):
        rows.append("| " + " | ".join(str(x) for x in c) + " |")

    L = r.get("lasso")
    if L:
        f0, f1, g = best_run(L["fulcrum_cold"]), best_run(L["fulcrum_warm"]), best_run(L["glmnet"])
        res = f1["result"]
        row("**(a) lasso path**, 1M × 120,450, 20 λ to 5e-4·λ_max, thresh 1e-7", "", "", "", "", "")
        row("wall, whole process: fulcrum cache build (reused) vs R glmnet `Rscript` (from CSC binaries)",
            f"{_s(f0['wall_s'])} ({_s(f1['wall_s'])})", _s(g["wall_s"]), "≤ 0.5×",
            f"{v['lasso_wall_vs_glmnet']['value']:.3f} ({v['lasso_wall_vs_glmnet']['warm']:.3f})", ok("lasso_wall_vs_glmnet"))
        row("peak RSS (fulcrum max over runs, glmnet min)", f"{v['lasso_rss_vs_glmnet']['fulcrum_mib']:.0f} MiB",
            f"{v['lasso_rss_vs_glmnet']['glmnet_mib']:.0f} MiB", "≤ 0.33×", f"{v['lasso_rss_vs_glmnet']['value']:.3f}",
            ok("lasso_rss_vs_glmnet"))
        gr = g["result"]
        row("objective at the last λ (fulcrum: dev/2n + λ‖β‖₁; glmnet: mean logloss + λ‖b‖₁)",
            f"{res['objective']:.12f}", f"{gr.get('objective', float('nan')):.12f}", "", "", "")
        row("passes over the data / nnz at the last λ", f"{res['passes']} / {res['nnz_last']}",
            f"— / {gr.get('nnz_coef', gr.get('nnz', '?'))}", "", "", "")
        sk = L.get("skglm")
        if sk:
            if sk.get("result"):
                s = sk["result"]
                row("skglm 0.5 warm-started path (path time only; load + design excluded), objective",
                    "", f"{_s(s['t_path_s'])}, {s['objective']:.12f}", "", f"{v['lasso_wall_vs_skglm_path']['value']:.3f}", "")
            else:
                row("skglm warm-started path", "", f"did not finish ({'timeout' if sk.get('timed_out') else 'failed'})",
                    "", "", "")
    D = r.get("diag")
    if D:
        fb = best_run(D["fulcrum"])
        sm = min(D["statsmodels"], key=lambda x: x["result"]["t_fit_s"])["result"]
        gl = min(D["glum"], key=lambda x: x["result"]["t_fit_s"])["result"]
        x = v["diag_speedup_vs_statsmodels"]
        row("**(b) unpenalised fit + diagnostics**, first 100k rows × 539", "", "", "", "", "")
        row("fulcrum `diagnose` whole process (cache build) vs statsmodels design + `GLM.fit` + `get_influence()` (in-process)",
            _s(fb["wall_s"]), f"{_s(x['statsmodels_s'])} (fit {_s(sm['t_fit_s'])}, influence {_s(sm['t_influence_s'])})",
            "≥ 50×", f"{x['value']:.1f}×", ok("diag_speedup_vs_statsmodels"))
        row("same, statsmodels whole process (Python start, Parquet read included)", "",
            _s(best_run(D["statsmodels"])["wall_s"]), "", f"{x['process_vs_process']:.1f}×", "")
        row("glum 3.4 unpenalised fit only (no diagnostics), in-process", "", _s(gl["t_fit_s"]), "",
            f"{v['diag_speedup_vs_glum_fit']['value']:.1f}×", "")
        fs = fb["summary"]
        row("deviance: fulcrum / statsmodels / glum", f"{fs['deviance']:.6f}", f"{sm['deviance']:.6f} / {gl['deviance']:.6f}",
            "", "", "")
        row("peak RSS: fulcrum / statsmodels / glum process", f"{fb['max_rss_mib']:.0f} MiB",
            f"{best_run(D['statsmodels'])['max_rss_mib']:.0f} / {best_run(D['glum'])['max_rss_mib']:.0f} MiB", "", "", "")
    S = r.get("scale")
    if S:
        row("**(c) scaling**, fulcrum `diagnose`, p = 539", "", "", "", "", "")
        for key in ("1m", "4m", "10m"):
            if key not in S:
                continue
            e = S[key]
            w = best_run(e["warm"])
            sm = w["summary"]
            t = sm["timing_s"]
            passes = sm.get("passes_fit") or sm.get("passes") or 0
            fit_t = t.get("fit_total", t.get("fit", 0.0))
            row(f"{key.upper()}: wall cache build / reused; fit / diagnostics; passes; fit time per pass",
                f"{_s(e['cold']['wall_s'])} / {_s(w['wall_s'])}; {_s(fit_t)} / {_s(t.get('diagnostics', 0.0))}; "
                f"{passes}; {_s(fit_t / max(1, passes))}", "", "", "", "")
            row(f"{key.upper()}: peak RSS (GNU time, max over runs); sampled RssAnon / RssFile",
                f"{max([e['cold']['max_rss_mib']] + [y['max_rss_mib'] for y in e['warm']]):.0f} MiB; "
                f"{max([e['cold'].get('sampled_peak_RssAnon_mib', 0)] + [y.get('sampled_peak_RssAnon_mib', 0) for y in e['warm']]):.0f} / "
                f"{max([e['cold'].get('sampled_peak_RssFile_mib', 0)] + [y.get('sampled_peak_RssFile_mib', 0) for y in e['warm']]):.0f} MiB",
                "", "", "", "")
        if "rss_10m_vs_1m" in v:
            row("10M / 1M peak RSS", "", "", "≤ 1.10×", f"{v['rss_10m_vs_1m']['value']:.2f}", ok("rss_10m_vs_1m"))
            row("10M reused wall / (10 × 1M reused wall) (cache build in brackets)", "", "", "≤ 1.2×",
                f"{v['time_10m_vs_linear']['value']:.2f} ({v['time_10m_vs_linear']['cold']:.2f})", ok("time_10m_vs_linear"))
        if "1m" in S and S["1m"].get("warm_1thread"):
            w1 = best_run(S["1m"]["warm_1thread"])["wall_s"]
            w2 = best_run(S["1m"]["warm"])["wall_s"]
            row("**(d) threads**: 1M `diagnose` reused, 1 thread / 2 threads", f"{_s(w1)} / {_s(w2)}", "", "",
                f"speed-up {w1 / w2:.2f}×", "")
    P = r.get("passes")
    if P:
        x = P["threads_2"]["result"]
        mb = x["stream_pass"]["bytes"] / 2**20
        row("**passes**, 1M × 120,450: Xᵀ·v pass / streaming read of the same arrays (2 threads)",
            f"{_s(x['xt_v_pass']['best_s'])} / {_s(x['stream_pass']['best_s'])} ({mb:.0f} MiB, "
            f"{mb / 1024 / x['stream_pass']['best_s']:.1f} GiB/s)", "", "≥ 50 % of the bound",
            f"{v['xtv_vs_stream']['value']:.2f}", ok("xtv_vs_stream"))
        if "threads_1" in P:
            y = P["threads_1"]["result"]
            row("(d) Xᵀ·v pass / streaming read, 1 thread", f"{_s(y['xt_v_pass']['best_s'])} / {_s(y['stream_pass']['best_s'])}",
                "", "", f"Xᵀ·v speed-up 2 vs 1 thread {y['xt_v_pass']['best_s'] / x['xt_v_pass']['best_s']:.2f}×", "")
    R = r.get("recall")
    if R:
        row(f"**recall**, 1M rows, top 1 % ({R['top']:,} rows); planted: {R['planted']['label_flip']:,} label flips, "
            f"{R['planted']['high_leverage']:,} high-leverage", "label flips found", "high-leverage found", "", "share of top that is planted", "")
        for k, x in R["recall_top_1pct"].items():
            row(f"by `{k}`", f"{x['label_flip']:.3f}", f"{x['high_leverage']:.3f}", "", f"{x['any_planted_share_of_top']:.3f}", "")
    return "\n".join(rows)


# ---------------------------------------------------------------------------------------------
def cmd_run(a):
    os.makedirs(os.path.join(a.work, "bench_tmp"), exist_ok=True)
    res = {"command": a.command_line, "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
           "machine": machine(), "git": git_state(), "fulcrum_binary": a.fulcrum, "skip": a.skip,
           "loadavg_at_start": os.getloadavg(), "targets": TARGETS}

    def save():
        tmp = a.json_out + ".tmp"
        with open(tmp, "w") as f:
            json.dump(res, f, indent=1)
        os.replace(tmp, a.json_out)

    for name, fn in (("lasso", sec_lasso), ("diag", sec_diag), ("scale", sec_scale), ("passes", sec_passes),
                     ("recall", sec_recall)):
        if name in a.skip:
            continue
        t0 = time.perf_counter()
        fn(a, res, save)
        res.setdefault("section_s", {})[name] = round(time.perf_counter() - t0, 1)
        save()
    res["loadavg_at_end"] = os.getloadavg()
    res["verdicts"] = verdicts(res)
    save()
    tab = table(res)
    with open(a.table_out, "w") as f:
        f.write(tab + "\n")
    print(tab)
    log(f"raw JSON: {a.json_out}; table: {a.table_out}")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sp = ap.add_subparsers(dest="cmd", required=True)
    r = sp.add_parser("run")
    r.add_argument("--fulcrum", required=True)
    r.add_argument("--bench-passes", required=True)
    r.add_argument("--in-1m", required=True)
    r.add_argument("--in-4m", default="")
    r.add_argument("--in-10m", default="")
    r.add_argument("--work", required=True)
    r.add_argument("--reps", type=int, default=3)
    r.add_argument("--peer-reps", type=int, default=2)
    r.add_argument("--reps-scale", type=int, default=1)
    r.add_argument("--prewarm", type=float, default=1.5)
    r.add_argument("--prewarm-4m", type=float, default=3.5)
    r.add_argument("--quiet-wait", type=float, default=60.0)
    r.add_argument("--skglm-timeout", type=float, default=900.0)
    r.add_argument("--skip", default="", type=lambda s: [x for x in s.split(",") if x])
    r.add_argument("--json-out", required=True)
    r.add_argument("--table-out", required=True)
    r.add_argument("--command-line", default="")
    t = sp.add_parser("table")
    t.add_argument("json")
    a = ap.parse_args()
    if a.cmd == "run":
        cmd_run(a)
    else:
        with open(a.json) as f:
            print(table(json.load(f)))


if __name__ == "__main__":
    main()
