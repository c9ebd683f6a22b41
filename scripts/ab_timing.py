#!/usr/bin/env python3
"""Interleaved before/after timing of two fulcrum builds, for changes too small for the
whole-benchmark scripts to resolve (a 10 % kernel change is within their run-to-run noise).

  python3 scripts/ab_timing.py A B [--case adult-fit|adult-build|adult-open|adult-validate|adult-diagnose|1m-diagnose] [--rounds 4] [--runs 8] [--wall]
  python3 scripts/ab_timing.py A B --case adult-build --alternate 40

A and B are git revisions (built with `cargo build --release` from a `git worktree` of each, into
target/ab/<sha>/fulcrum; the target dir is shared so only fulcrum itself is recompiled) or paths
of fulcrum binaries. Each round runs, for A then B, one untimed run (builds or reuses that
binary's cache) and `--runs` timed runs with the cache reused, and takes the median of one
`timing_s` field of summary.json:

  adult-fit        fit_total of `fit` on fixtures/adult.parquet (split = train, with native_country)
  adult-build      ingest of the same `fit`, with the cache removed before every run (a cache build)
  adult-open       ingest of the same `fit` with the cache reused (opening and verifying it)
  adult-validate   validate (the fit's first pass: responses and weights checked, totals) of the
                   same `fit` with the cache reused
  adult-diagnose   diagnostics of `diagnose` on the same
  1m-fit           fit_total of `fit` on bench-data/sparse_1m.parquet, y ~ x00..x19 + c20 + c500
  1m-diagnose      diagnostics of `diagnose` on bench-data/sparse_1m.parquet, y ~ x00..x19 + c20 + c500
                   (generate it with scripts/bench_fit.sh first)

--wall takes the whole process's wall time (spawn to exit, nothing around it) instead of the
`timing_s` field.

--alternate N instead runs A and B in turn N times each (one run at a time, the cache removed
before every run for adult-build) and prints, for each side, the medians over its N runs of the
wall time and of `timing_s.ingest` and `timing_s.fit_total` (one process gives all three).
With it, B can differ from A by its environment or by an idle wait rather than by its binary
(give the same revision twice):
  --env-b NAME=VALUE   B's processes run with NAME=VALUE in their environment (repeatable), e.g.
                       GLIBC_TUNABLES=glibc.malloc.mmap_threshold=4194304
  --sleep-b S          B's runs each follow S seconds of sleep (untimed), as the benchmark
                       scripts' runs follow their wait for an idle machine

Prints every round's medians and the median over rounds for each side. Run it on an idle machine.
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))
sys.path.insert(0, os.path.join(ROOT, "scripts"))
from bench_fit import ADULT_CAT, ADULT_NUM, FORMULA_A, FORMULA_B, log  # noqa: E402

CASES = {
    "adult-fit": ("fit", "fixtures/adult.parquet", FORMULA_A, ["--filter", "split=train"], "fit_total"),
    "adult-build": ("fit", "fixtures/adult.parquet", FORMULA_A, ["--filter", "split=train"], "ingest"),
    "adult-open": ("fit", "fixtures/adult.parquet", FORMULA_A, ["--filter", "split=train"], "ingest"),
    "adult-validate": ("fit", "fixtures/adult.parquet", FORMULA_A, ["--filter", "split=train"], "validate"),
    "adult-diagnose": ("diagnose", "fixtures/adult.parquet", FORMULA_A, ["--filter", "split=train"], "diagnostics"),
    "1m-fit": ("fit", "bench-data/sparse_1m.parquet", FORMULA_B, [], "fit_total"),
    "1m-diagnose": ("diagnose", "bench-data/sparse_1m.parquet", FORMULA_B, [], "diagnostics"),
}
assert ADULT_NUM and ADULT_CAT  # FORMULA_A is built from them


def binary(spec):
    """A fulcrum binary for `spec`: itself if it is a file, else built from that git revision."""
    if os.path.isfile(spec):
        return os.path.abspath(spec)
    sha = subprocess.run(["git", "-C", ROOT, "rev-parse", "--short", spec], check=True, capture_output=True,
                         text=True).stdout.strip()
    out = os.path.join(ROOT, "target", "ab", sha)
    exe = os.path.join(out, "fulcrum")
    if os.path.isfile(exe):
        return exe
    src = os.path.join(out, "src-tree")
    subprocess.run(["rm", "-rf", src], check=True)
    subprocess.run(["git", "-C", ROOT, "worktree", "add", "--detach", "-f", src, sha], check=True)
    try:
        log(f"building {sha} ...")
        env = dict(os.environ, CARGO_TARGET_DIR=os.path.join(ROOT, "target", "ab", "target"))
        subprocess.run(["cargo", "build", "--release", "--quiet", "--bin", "fulcrum"], cwd=src, env=env, check=True)
        subprocess.run(["cp", os.path.join(env["CARGO_TARGET_DIR"], "release", "fulcrum"), exe], check=True)
    finally:
        subprocess.run(["git", "-C", ROOT, "worktree", "remove", "--force", src], check=False)
    return exe


def cache_dir(exe, work):
    return os.path.join(work, "cache", os.path.basename(exe) + str(hash(exe)))


def base_cmd(exe, case, work):
    cmd, data, formula, extra, _ = CASES[case]
    return [exe, cmd, os.path.join(ROOT, data), "--formula", formula, "--family", "binomial", *extra,
            "--out", os.path.join(work, "out"), "--cache-dir", cache_dir(exe, work), "-q"]


def median_of_runs(exe, case, runs, work, wall=False):
    field = CASES[case][4]
    out = os.path.join(work, "out")
    cache = cache_dir(exe, work)
    base = base_cmd(exe, case, work)
    subprocess.run(base, check=True)  # untimed: builds or reuses the cache
    vals = []
    for _ in range(runs):
        if case == "adult-build":
            subprocess.run(["rm", "-rf", cache], check=True)
        t0 = time.perf_counter()
        subprocess.run(base, check=True)
        w = time.perf_counter() - t0
        with open(os.path.join(out, "summary.json")) as f:
            vals.append(w if wall else json.load(f)["timing_s"][field])
    return statistics.median(vals)


def alternate(exes, case, n, work, env_b=None, sleep_b=0.0):
    """`n` runs of each binary in turn; medians (ms) of wall, ingest and fit_total per side.
    Side B's processes get `env_b` added to their environment, and each follows `sleep_b`
    seconds of sleep."""
    out = os.path.join(work, "out")
    vals = {side: {"wall": [], "ingest": [], "fit_total": []} for side in exes}
    envs = {"A": None, "B": dict(os.environ, **(env_b or {}))}
    for side, exe in exes.items():
        subprocess.run(base_cmd(exe, case, work), check=True)  # untimed: builds or reuses the cache
    for _ in range(n):
        for side, exe in exes.items():
            if case == "adult-build":
                subprocess.run(["rm", "-rf", cache_dir(exe, work)], check=True)
            if side == "B" and sleep_b > 0:
                time.sleep(sleep_b)
            t0 = time.perf_counter()
            subprocess.run(base_cmd(exe, case, work), check=True, env=envs[side])
            w = time.perf_counter() - t0
            with open(os.path.join(out, "summary.json")) as f:
                t = json.load(f)["timing_s"]
            vals[side]["wall"].append(w)
            vals[side]["ingest"].append(t["ingest"])
            vals[side]["fit_total"].append(t.get("fit_total", 0.0))
    return {side: {k: statistics.median(v) * 1e3 for k, v in d.items()} for side, d in vals.items()}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("a")
    ap.add_argument("b")
    ap.add_argument("--case", choices=sorted(CASES), default="adult-fit")
    ap.add_argument("--rounds", type=int, default=4)
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--wall", action="store_true", help="time the whole process instead of a timing_s field")
    ap.add_argument("--alternate", type=int, default=0, metavar="N",
                    help="N runs of each binary in turn; medians of wall, ingest and fit_total")
    ap.add_argument("--env-b", action="append", default=[], metavar="NAME=VALUE",
                    help="with --alternate: add NAME=VALUE to B's environment")
    ap.add_argument("--sleep-b", type=float, default=0.0, metavar="S",
                    help="with --alternate: sleep S seconds before each of B's runs")
    a = ap.parse_args()
    if (a.env_b or a.sleep_b) and not a.alternate:
        ap.error("--env-b and --sleep-b need --alternate")
    exes = {"A": binary(a.a), "B": binary(a.b)}
    if a.alternate:
        env_b = dict(kv.split("=", 1) for kv in a.env_b)
        with tempfile.TemporaryDirectory() as work:
            med = alternate(exes, a.case, a.alternate, work, env_b, a.sleep_b)
        for k in ("wall", "ingest", "fit_total"):
            print(f"{k}: median {med['A'][k]:.2f} -> {med['B'][k]:.2f} ms ({med['B'][k] / med['A'][k]:.3f})")
        return
    meds = {"A": [], "B": []}
    with tempfile.TemporaryDirectory() as work:
        for r in range(a.rounds):
            for side in ("A", "B"):
                m = median_of_runs(exes[side], a.case, a.runs, work, a.wall)
                meds[side].append(m)
                log(f"round {r + 1}/{a.rounds} {side}: median {m * 1e3:.1f} ms")
    field = "wall (process)" if a.wall else "timing_s." + CASES[a.case][4]
    for side, spec in (("A", a.a), ("B", a.b)):
        v = meds[side]
        print(f"{side} {spec}: {field} medians per round (ms) "
              f"{' '.join(f'{x * 1e3:.1f}' for x in v)}; median {statistics.median(v) * 1e3:.1f}")
    print(f"B / A (medians over rounds): {statistics.median(meds['B']) / statistics.median(meds['A']):.3f}")


if __name__ == "__main__":
    main()
