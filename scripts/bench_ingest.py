#!/usr/bin/env python3
"""Timing driver for scripts/bench_ingest.sh (run that, not this, unless you know why).

Subcommands:
  run             time fulcrum ingest / re-open / passes and pyarrow reads; write JSON + table
  pyarrow-read F  (internal) time pyarrow.parquet.read_table(F) --reps times, print JSON

Every external command runs under /usr/bin/time -v so its peak RSS ("Maximum resident set
size") is recorded. Wall times of external commands are measured here with perf_counter
around the subprocess (process start-up included).
"""
import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import time

DENSE = [f"x{j:02d}" for j in range(20)]
FORMULA = "y ~ " + " + ".join(DENSE + ["c20", "c500", "c20000", "sparse(feats)"])
USED_COLUMNS = ["y"] + DENSE + ["c20", "c500", "c20000", "feats"]

# Targets (issue 2).
TARGET_INGEST_VS_PYARROW = 2.0  # first ingest <= 2x pyarrow plain read
TARGET_XTV_S = 0.5  # one X^T v pass over 1M rows
TARGET_RSS_MIB = 512.0  # ingest peak RSS
TARGET_RSS_GROWTH = 1.10  # "flat": 4M peak RSS within +10% of 1M peak RSS (our reading of "flat")


def _status_kib(pid):
    """RssAnon / RssFile / RssShmem (KiB) of a live process, or None."""
    try:
        with open(f"/proc/{pid}/status") as f:
            txt = f.read()
    except OSError:
        return None
    out = {}
    for k in ("RssAnon", "RssFile", "RssShmem"):
        m = re.search(rf"^{k}:\s+(\d+) kB", txt, re.M)
        if m:
            out[k] = int(m.group(1))
    return out


def _children(pid):
    try:
        with open(f"/proc/{pid}/task/{pid}/children") as f:
            return [int(x) for x in f.read().split()]
    except OSError:
        return []


def time_v(cmd, env=None):
    """Run cmd under /usr/bin/time -v; return (wall_s, stdout, stderr_without_time_report, stats).

    Besides GNU time's peak RSS, /proc/<pid>/status of the measured process is sampled every
    ~10 ms for the peak anonymous (heap) and file-backed (mmap of files) resident memory.
    """
    import tempfile

    with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:
        t0 = time.perf_counter()
        p = subprocess.Popen(["/usr/bin/time", "-v"] + cmd, stdout=fo, stderr=fe, text=True, env=env)
        peak = {}
        while p.poll() is None:
            for c in _children(p.pid):
                st = _status_kib(c)
                for k, v in (st or {}).items():
                    peak[k] = max(peak.get(k, 0), v)
            time.sleep(0.01)
        wall = time.perf_counter() - t0
        fo.seek(0)
        fe.seek(0)
        out, err = fo.read(), fe.read()
    stats = {}
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", err)
    if m:
        stats["max_rss_mib"] = int(m.group(1)) / 1024.0
    for k, v in peak.items():
        stats[f"sampled_peak_{k}_mib"] = v / 1024.0
    for key, pat in (("user_s", r"User time \(seconds\): ([\d.]+)"), ("sys_s", r"System time \(seconds\): ([\d.]+)")):
        m = re.search(pat, err)
        if m:
            stats[key] = float(m.group(1))
    m = re.search(r"Percent of CPU this job got: (\d+)%", err)
    if m:
        stats["cpu_percent"] = int(m.group(1))
    head = err.split("\tCommand being timed:")[0]
    if p.returncode != 0:
        sys.stderr.write(err)
        raise SystemExit(f"command failed ({p.returncode}): {' '.join(cmd)}")
    return wall, out, head, stats


def pyarrow_read(path, reps, columns=None):
    import pyarrow.parquet as pq

    times = []
    nbytes = rows = None
    for _ in range(reps):
        t0 = time.perf_counter()
        t = pq.read_table(path, columns=columns)
        times.append(time.perf_counter() - t0)
        nbytes, rows = t.nbytes, t.num_rows
        del t
    return {"best_s": min(times), "all_s": times, "rows": rows, "arrow_bytes": nbytes}


def git_state():
    """The checkout a benchmark ran from: HEAD and any uncommitted change to the sources."""
    head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    dirty = subprocess.run(["git", "status", "--porcelain", "--", "src", "Cargo.toml", "Cargo.lock"],
                           capture_output=True, text=True).stdout.split("\n")
    return {"head": head, "dirty_src": [x for x in dirty if x]}


def machine():
    cpu = ""
    flags = ""
    with open("/proc/cpuinfo") as f:
        for line in f:
            if line.startswith("model name") and not cpu:
                cpu = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line.split(":", 1)[1]
    mem_kib = 0
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemTotal:"):
                mem_kib = int(line.split()[1])
    import numpy
    import pyarrow

    simd = [x for x in ("sse4_2", "avx", "avx2", "fma", "avx512f") if f" {x} " in f" {flags} "]
    rustc = subprocess.run(["rustc", "--version"], capture_output=True, text=True).stdout.strip()
    return {
        "nproc": os.cpu_count(),
        "cpu_model": cpu,
        "cpu_simd_flags": simd,
        "mem_total_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "pyarrow": pyarrow.__version__,
        "numpy": numpy.__version__,
        "rustc": rustc,
    }


def fresh(d):
    shutil.rmtree(d, ignore_errors=True)
    return d


def best(runs, key="wall_s"):
    return min(r[key] for r in runs)


def prewarm(gib):
    """Touch `gib` GiB of fresh anonymous memory in a child process, then free it.

    On this VM (virtio-balloon free-page reporting) memory that was freed a few seconds ago
    has been handed back to the host and the first touch of it costs ~0.25-0.6 GiB/s instead
    of several GiB/s. Every measured process below (fulcrum and pyarrow alike) is preceded by
    a prewarm so that both start from recently-used guest memory; BENCH_PREWARM_GIB=0
    disables it (cold numbers)."""
    if gib <= 0:
        return 0.0
    t0 = time.perf_counter()
    code = "import numpy as np, sys; a = np.ones(int(float(sys.argv[1]) * 2**30) // 8); a.sum()"
    subprocess.run([sys.executable, "-c", code, str(gib)], check=True)
    return time.perf_counter() - t0


def cmd_run(a):
    fulcrum = os.path.join(a.target_dir, "fulcrum")
    passes = os.path.join(a.target_dir, "bench_passes")
    res = {
        "command": a.command_line,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "formula": FORMULA,
        "reps": a.reps,
        "prewarm_gib": {"1m": a.prewarm_1m, "4m": a.prewarm_4m},
        "inputs": {"1m": a.in_1m, "4m": a.in_4m},
        "loadavg_at_start": os.getloadavg(),
        "git": {
            "head": subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip(),
            "dirty_src": [
                x
                for x in subprocess.run(
                    ["git", "status", "--porcelain", "--", "src", "Cargo.toml"], capture_output=True, text=True
                ).stdout.split("\n")
                if x
            ],
        },
        "notes": [
            "Parquet files are in the OS page cache for every run (warm cache: each file is read right before).",
            "Wall times of fulcrum runs include process start-up; fulcrum's own stage timings are under internal_timings.",
            "Peak RSS is GNU time's 'Maximum resident set size' (ru_maxrss), which counts resident file-backed mmap pages.",
            "Each measured process is preceded by a prewarm of prewarm_gib GiB (see prewarm() in scripts/bench_ingest.py).",
        ],
    }
    py = [sys.executable, os.path.abspath(__file__), "pyarrow-read"]

    def log(msg):
        print(f"[bench] {msg}", file=sys.stderr, flush=True)

    def measured(cmd, gib):
        prewarm(gib)
        load1 = os.getloadavg()[0]
        wall, out, err, st = time_v(cmd)
        st["loadavg1_before"] = load1
        return wall, out, err, st

    def inspect(inputs, cache_dir, gib):
        wall, out, _, st = measured(
            [fulcrum, "inspect", *inputs, "--formula", FORMULA, "--cache-dir", cache_dir, "--json", "--quiet"], gib
        )
        rep = json.loads(out)
        return {
            "wall_s": wall,
            **st,
            "status": rep["cache"]["status"],
            "internal_timings": rep["timings"],
            "n_obs": rep["n_obs"],
            "n_params": rep["n_params"],
            "cache_bytes": rep["cache"]["bytes"],
            "chunks": rep["cache"]["chunks"],
        }

    def pyarrow_runs(key, path, gib, extra=()):
        # In one process, best of reps (what the target refers to) ...
        _, out, _, st = measured(py + [path, "--reps", str(a.reps), *extra], gib)
        r = json.loads(out)
        r["process"] = st
        # ... and the first read of a fresh process, reps times (what a CLI run pays).
        fresh_runs = []
        for _ in range(a.reps):
            _, out1, _, st1 = measured(py + [path, "--reps", "1", *extra], gib)
            fresh_runs.append({**json.loads(out1), "process": st1})
        r["fresh_process"] = {"best_s": min(x["best_s"] for x in fresh_runs), "runs": fresh_runs}
        return r

    # ---- pyarrow plain read (all columns); at 1M also the formula's 25 columns
    log(f"pyarrow read_table 1M (best of {a.reps} in one process, and {a.reps} fresh processes) ...")
    res["pyarrow_read_1m"] = pyarrow_runs("1m", a.in_1m, a.prewarm_1m)
    res["pyarrow_read_1m_formula_columns"] = pyarrow_runs("1m", a.in_1m, a.prewarm_1m, ["--formula-columns"])

    # ---- (a) first ingest, 1M, fresh cache each time
    cache_1m = os.path.join(a.work, "cache-1m")
    runs = []
    for k in range(a.reps):
        log(f"first ingest 1M, run {k + 1}/{a.reps} ...")
        runs.append(inspect([a.in_1m], fresh(cache_1m), a.prewarm_1m))
        assert runs[-1]["status"] == "built", runs[-1]
    res["ingest_1m"] = {"runs": runs, "best_wall_s": best(runs), "max_rss_mib": max(r["max_rss_mib"] for r in runs)}

    # ---- (b) re-open (cache reused)
    runs = []
    for k in range(a.reps):
        log(f"re-open 1M, run {k + 1}/{a.reps} ...")
        runs.append(inspect([a.in_1m], cache_1m, 0))
        assert runs[-1]["status"] == "reused", runs[-1]
    res["reopen_1m"] = {"runs": runs, "best_wall_s": best(runs), "max_rss_mib": max(r["max_rss_mib"] for r in runs)}

    # ---- (c) passes over the 1M cache
    log("passes over the 1M cache (bench_passes) ...")
    wall, out, _, st = measured(
        [passes, "--formula", FORMULA, "--cache-dir", cache_1m, "--reps", str(a.reps), "--subset-cols", "500", a.in_1m],
        0,
    )
    r = json.loads(out)
    r["process"] = {"wall_s": wall, **st}
    res["passes_1m"] = r

    # ---- (d) 4M: pyarrow read, ingest (peak RSS; time too), re-open, passes
    log(f"pyarrow read_table 4M (best of {a.reps} in one process, and {a.reps} fresh processes) ...")
    res["pyarrow_read_4m"] = pyarrow_runs("4m", a.in_4m, a.prewarm_4m)
    cache_4m = os.path.join(a.work, "cache-4m")
    log("first ingest 4M ...")
    inputs_4m = [a.in_4m]
    r4 = inspect(inputs_4m, fresh(cache_4m), a.prewarm_4m)
    res["ingest_4m"] = {"runs": [r4], "best_wall_s": r4["wall_s"], "max_rss_mib": r4["max_rss_mib"]}
    log("re-open 4M ...")
    r4b = inspect(inputs_4m, cache_4m, 0)
    res["reopen_4m"] = {"runs": [r4b], "best_wall_s": r4b["wall_s"], "max_rss_mib": r4b["max_rss_mib"]}
    log("passes over the 4M cache (bench_passes, 1 rep after 1 warm-up) ...")
    wall, out, _, st = measured(
        [passes, "--formula", FORMULA, "--cache-dir", cache_4m, "--reps", "1", "--subset-cols", "500", a.in_4m], 0
    )
    r = json.loads(out)
    r["process"] = {"wall_s": wall, **st}
    res["passes_4m"] = r
    if not a.keep_4m_cache:
        shutil.rmtree(cache_4m, ignore_errors=True)

    # ---- ratios vs targets
    ing = res["ingest_1m"]["best_wall_s"]
    pa1 = res["pyarrow_read_1m"]["best_s"]
    xtv = res["passes_1m"]["xt_v_pass"]["best_s"]
    rss1 = res["ingest_1m"]["max_rss_mib"]
    rss4 = res["ingest_4m"]["max_rss_mib"]
    res["targets"] = {
        "ingest_vs_pyarrow": {"value": ing / pa1, "target": TARGET_INGEST_VS_PYARROW, "met": ing / pa1 <= TARGET_INGEST_VS_PYARROW},
        "xt_v_pass_1m_s": {"value": xtv, "target": TARGET_XTV_S, "ratio": xtv / TARGET_XTV_S, "met": xtv <= TARGET_XTV_S},
        "ingest_rss_1m_mib": {"value": rss1, "target": TARGET_RSS_MIB, "ratio": rss1 / TARGET_RSS_MIB, "met": rss1 <= TARGET_RSS_MIB},
        "ingest_rss_4m_mib": {"value": rss4, "target": TARGET_RSS_MIB, "ratio": rss4 / TARGET_RSS_MIB, "met": rss4 <= TARGET_RSS_MIB},
        "ingest_rss_growth_4m_over_1m": {"value": rss4 / rss1, "target": TARGET_RSS_GROWTH, "met": rss4 / rss1 <= TARGET_RSS_GROWTH},
    }
    res["loadavg_at_end"] = os.getloadavg()
    with open(a.json_out, "w") as f:
        json.dump(res, f, indent=2)
    print(table(res))
    log(f"raw JSON written to {a.json_out}")


def _split(entry):
    """' (anon A, file F)' from the sampled /proc peaks of an entry's runs."""
    runs = entry["runs"]
    a = max(x.get("sampled_peak_RssAnon_mib", 0) for x in runs)
    f = max(x.get("sampled_peak_RssFile_mib", 0) for x in runs)
    return f" (sampled peaks: anon {a:.0f}, file-backed {f:.0f})"


def table(r):
    t = r["targets"]
    ok = lambda b: "met" if b else "**missed**"
    p1, p4 = r["passes_1m"], r["passes_4m"]
    cov = p1["sandwich_pass"]["covers"]
    pa1, pa1f, pa1c, pa4 = r["pyarrow_read_1m"], r["pyarrow_read_1m"]["fresh_process"], r["pyarrow_read_1m_formula_columns"], r["pyarrow_read_4m"]
    ing1, ing4 = r["ingest_1m"]["best_wall_s"], r["ingest_4m"]["best_wall_s"]
    it1 = min(x["internal_timings"]["build_s"] + x["internal_timings"]["map_s"] for x in r["ingest_1m"]["runs"])
    n = r["reps"]
    rows = [
        (f"pyarrow `read_table`, 1M, all columns (best of {n} in one process)", f"{pa1['best_s']:.2f} s", "", "", ""),
        (f"pyarrow `read_table`, 1M, all columns (first read of a fresh process, best of {n})", f"{pa1f['best_s']:.2f} s", "", "", ""),
        (f"pyarrow `read_table`, 1M, the formula's 25 columns (best of {n} in one process)", f"{pa1c['best_s']:.2f} s", "", "", ""),
        (f"First ingest 1M, Parquet → cache (`fulcrum inspect`, wall incl. process start, best of {n})", f"{ing1:.2f} s",
         "≤ 2× pyarrow", f"{t['ingest_vs_pyarrow']['value']:.2f}× pyarrow ({ing1 / pa1f['best_s']:.2f}× fresh-process pyarrow)",
         ok(t["ingest_vs_pyarrow"]["met"])),
        ("  of which build + map/verify inside fulcrum (best run)", f"{it1:.2f} s", "", "", ""),
        (f"Re-open 1M, cache reused (`fulcrum inspect`, best of {n})", f"{r['reopen_1m']['best_wall_s']:.2f} s", "", "", ""),
        (f"Xᵀ·v pass, 1M rows (best of {n})", f"{p1['xt_v_pass']['best_s']:.3f} s", "≤ 0.5 s",
         f"{t['xt_v_pass_1m_s']['ratio']:.2f}× target", ok(t["xt_v_pass_1m_s"]["met"])),
        (f"X·β pass, 1M rows (best of {n})", f"{p1['x_beta_pass']['best_s']:.3f} s", "", "", ""),
        (f"Sandwich XᵀWX on 500 columns, 1M rows (best of {n})", f"{p1['sandwich_pass']['best_s']:.3f} s", "", "", ""),
        ("Peak RSS, first ingest 1M (max over runs)", f"{r['ingest_1m']['max_rss_mib']:.0f} MiB" + _split(r["ingest_1m"]), "≤ 512 MiB",
         f"{t['ingest_rss_1m_mib']['ratio']:.2f}× target", ok(t["ingest_rss_1m_mib"]["met"])),
        ("Peak RSS, first ingest 4M", f"{r['ingest_4m']['max_rss_mib']:.0f} MiB" + _split(r["ingest_4m"]), "≤ 512 MiB",
         f"{t['ingest_rss_4m_mib']['ratio']:.2f}× target", ok(t["ingest_rss_4m_mib"]["met"])),
        ("Peak RSS growth 1M → 4M", f"{t['ingest_rss_growth_4m_over_1m']['value']:.2f}×", "flat (≤ 1.10×)", "",
         ok(t["ingest_rss_growth_4m_over_1m"]["met"])),
        ("Peak RSS, re-open 1M / 4M", f"{r['reopen_1m']['max_rss_mib']:.0f} / {r['reopen_4m']['max_rss_mib']:.0f} MiB", "", "", ""),
        ("Peak RSS, pyarrow `read_table` process 1M / 4M",
         f"{pa1['process']['max_rss_mib']:.0f} / {pa4['process']['max_rss_mib']:.0f} MiB", "", "", ""),
        (f"pyarrow `read_table`, 4M, all columns (best of {n} in one process / fresh process)",
         f"{pa4['best_s']:.2f} / {pa4['fresh_process']['best_s']:.2f} s", "", "", ""),
        ("First ingest 4M (1 run)", f"{ing4:.2f} s", "",
         f"{ing4 / pa4['best_s']:.2f}× pyarrow ({ing4 / pa4['fresh_process']['best_s']:.2f}× fresh-process)", ""),
        ("Re-open 4M (1 run)", f"{r['reopen_4m']['best_wall_s']:.2f} s", "", "", ""),
        ("Xᵀ·v / X·β / sandwich-500 pass, 4M rows (1 run after a warm-up)",
         f"{p4['xt_v_pass']['best_s']:.3f} / {p4['x_beta_pass']['best_s']:.3f} / {p4['sandwich_pass']['best_s']:.3f} s", "", "", ""),
    ]
    out = ["| Measurement | Value | Target | Ratio | Status |", "|---|---|---|---|---|"]
    out += ["| " + " | ".join(x) + " |" for x in rows]
    out.append("")
    out.append(
        f"Sandwich subset: the first 500 layout columns = intercept + {cov['dense']} dense + "
        f"{cov['c20']['columns_in_subset']} c20 + {cov['c500']['columns_in_subset']} of {cov['c500']['block_width']} c500 "
        f"+ {cov['c20000']['columns_in_subset']} c20000 + {cov['sparse']} sparse columns. "
        f"1M cache: {p1['chunks']} chunks, {p1['cache_bytes'] / 2**20:.0f} MiB, p = {p1['p']}; "
        f"4M cache: {p4['chunks']} chunks, {p4['cache_bytes'] / 2**20:.0f} MiB."
    )
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--in-1m", required=True)
    r.add_argument("--in-4m", required=True)
    r.add_argument("--work", default="bench-data")
    r.add_argument("--target-dir", default="target/release")
    r.add_argument("--reps", type=int, default=3)
    r.add_argument("--json-out", default="bench-data/bench_ingest.json")
    r.add_argument("--keep-4m-cache", action="store_true")
    r.add_argument("--prewarm-1m", type=float, default=1.5, help="GiB touched before each 1M-row measurement")
    r.add_argument("--prewarm-4m", type=float, default=3.5, help="GiB touched before each 4M-row measurement")
    r.add_argument("--command-line", default="scripts/bench_ingest.sh")
    p = sub.add_parser("pyarrow-read")
    p.add_argument("path")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--formula-columns", action="store_true")
    a = ap.parse_args()
    if a.cmd == "pyarrow-read":
        print(json.dumps(pyarrow_read(a.path, a.reps, USED_COLUMNS if a.formula_columns else None)))
    else:
        cmd_run(a)


if __name__ == "__main__":
    main()
