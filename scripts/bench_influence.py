#!/usr/bin/env python3
"""Timing driver for scripts/bench_influence.sh (run that, not this, unless you know why).

Subcommands:
  run                 fulcrum influence on the 1M-row synthetic file (binomial, p = 539): fit alone,
                      --task loo, --task attribute (10k-row test set) with the cholesky / cg / lissa
                      solvers, the cost of one exact refit (--task unlearn --remove <row> --steps 100);
                      write JSON + markdown tables
  make-test IN OUT N  (internal) draw N fresh rows from the generating model of IN (gen_sparse.py's
                      <IN>.truth.json), same schema as IN
  table JSON          re-print the markdown tables of a bench_influence.json

Every fulcrum command is its own process under GNU time (bench_fit.measure: wall, peak RSS, the
other processes' CPU). Each timed configuration is run `reps` times (best and median wall are
reported, the peak RSS is the largest). In-process phases come from summary.json timing_s (fit_total,
influence) and influence.unlearn.timing_s. Measurement machinery (waiting for an idle machine,
prewarm) is bench_fit.py's, bench_ingest.py's and bench_sketch.py's, imported, not copied.
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

from bench_fit import _fmt_s, log, measure  # noqa: E402
from bench_sketch import FORMULA_539, Budget  # noqa: E402

# (label, --solver, extra options, processes: None = reps)
SOLVERS = (("cholesky", "cholesky", [], None), ("cg", "cg", [], None), ("lissa", "lissa", [], None),
           ("lissa depth 100000", "lissa", ["--lissa-depth", "100000"], 1))


# ---------------------------------------------------------------------------------------------
# test set: fresh rows from the same generating model
# ---------------------------------------------------------------------------------------------
def make_test(src, out, n, seed=20240602):
    """N new rows from the model of gen_sparse.py that made `src` (truth in <src>.truth.json): dense
    block drawn afresh (the generator's AR(1) recipe), each categorical and the hashed `feats` list
    resampled independently from the first row group of `src` (the generator draws them independently),
    eta from the truth, y ~ Bernoulli(logistic(eta)). No planted rows. Same schema as `src`.
    (A second file from gen_sparse.py with another seed would come from another model: other betas.)"""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    with open(src + ".truth.json") as f:
        truth = json.load(f)
    rng = np.random.default_rng(seed)
    pf = pq.ParquetFile(src)
    pool = pf.read_row_group(0, columns=["c20", "c500", "c20000", "feats"])
    m = pool.num_rows
    Z = rng.standard_normal((n, 20))
    X = Z.copy()
    for j in range(1, 20):
        X[:, j] = 0.3 * X[:, j - 1] + np.sqrt(1 - 0.09) * Z[:, j]
    X = X.astype(np.float32)
    bd = np.array([truth["beta_dense"][f"x{j:02d}"] for j in range(20)])
    eta = truth["intercept"] + X.astype(np.float64) @ bd
    cols = {}
    for name in ("c20", "c500", "c20000"):
        col = pc.take(pool.column(name), pa.array(rng.integers(0, m, n)))
        cols[name] = col
        eff = truth["categorical"][name]["nonzero_levels"]
        eta += np.array([eff.get(v, 0.0) for v in col.to_pylist()])
    feats = pc.take(pool.column("feats"), pa.array(rng.integers(0, m, n))).combine_chunks()
    bh = {int(k): v for k, v in truth["beta_hash_nonzero"].items()}
    off = feats.offsets.to_numpy()
    idx = feats.values.field("idx").to_numpy()
    val = feats.values.field("val").to_numpy().astype(np.float64)
    contrib = val * np.array([bh.get(int(i), 0.0) for i in idx])
    eta += np.add.reduceat(np.append(contrib, 0.0), off[:-1]) * (np.diff(off) > 0)
    y = (rng.random(n) < 1 / (1 + np.exp(-eta))).astype(np.int8)
    schema = pf.schema_arrow
    data = {"y": pa.array(y)}
    for j in range(20):
        data[f"x{j:02d}"] = pa.array(X[:, j])
    data.update({k: v.combine_chunks() if hasattr(v, "combine_chunks") else v for k, v in cols.items()})
    data["feats"] = feats
    data["planted"] = pa.array(np.zeros(n, dtype=bool))
    data["planted_kind"] = pa.array([""] * n, pa.string())
    data["eta_true"] = pa.array(eta.astype(np.float32))
    t = pa.table({f.name: data[f.name] for f in schema}).cast(schema)
    tmp = out + ".tmp"
    pq.write_table(t.replace_schema_metadata({**(schema.metadata or {}), b"test_set_of": src.encode(), b"test_seed": str(seed).encode()}), tmp)
    os.replace(tmp, out)
    print(json.dumps({"out": out, "rows": n, "prevalence_y": float(y.mean()), "seed": seed}))


# ---------------------------------------------------------------------------------------------
# running
# ---------------------------------------------------------------------------------------------
def pick(s):
    inf = s.get("influence") or {}
    keep = {k: s.get(k) for k in ("n_obs", "n_params", "rank", "iterations", "converged", "timing_s")}
    keep["influence"] = {k: inf[k] for k in ("solver", "curvature", "solves", "passes_solver", "loo", "test") if k in inf}
    if "unlearn" in inf:
        keep["influence"]["unlearn"] = {k: v for k, v in inf["unlearn"].items() if k != "coefficients"}
    return keep


class Runner:
    def __init__(self, a, res):
        self.a, self.res = a, res
        self.tmp = os.path.join(a.work, "bench_influence_tmp")
        self.cache = os.path.join(a.work, "influencecache-1m")
        self.quiet = Budget(a.quiet_wait, a.quiet_budget)
        os.makedirs(self.tmp, exist_ok=True)

    def run(self, sub, extra, out=None, keep_out=False):
        """One timed fulcrum process (idle wait + prewarm first); failures are recorded, not raised."""
        from bench_ingest import prewarm

        out = out or os.path.join(self.tmp, "out")
        shutil.rmtree(out, ignore_errors=True)
        cmd = [self.a.fulcrum, sub, self.a.in_1m, "--formula", FORMULA_539, "--family", "binomial", *extra,
               "--out", out, "--cache-dir", self.cache, "-q"]
        prewarm(self.a.prewarm)
        try:
            r = measure(cmd, quiet_max_s=self.quiet.take())
        except SystemExit as e:
            return {"cmd": " ".join(cmd[1:]).replace(FORMULA_539, "F"), "error": str(e)}
        self.quiet.spent(r)
        r.pop("stdout", None)
        r.pop("stderr_tail", None)
        r["cmd"] = " ".join(x if " " not in x else repr(x) for x in cmd[1:]).replace(FORMULA_539, "F")
        with open(os.path.join(out, "summary.json")) as f:
            r["summary"] = pick(json.load(f))
        if not keep_out:
            shutil.rmtree(out, ignore_errors=True)
        return r

    def reps(self, key, sub, extra, keep_last=None, n=None):
        """`n` (default `reps`) processes of one configuration; the last one's output directory kept if asked."""
        runs = []
        n = n or self.a.reps
        for i in range(n):
            last = i == n - 1
            log(f"{key}: run {i + 1}/{n} ...")
            r = self.run(sub, extra, out=keep_last if (last and keep_last) else None, keep_out=bool(last and keep_last))
            runs.append(r)
            if "error" in r:
                log(f"{key}: FAILED: {r['error']}")
                break
        self.res["timed"][key] = summarize(runs)
        self.save()
        return self.res["timed"][key]

    def save(self):
        with open(self.a.json_out, "w") as f:
            json.dump(self.res, f, indent=1)


def summarize(runs):
    import statistics

    ok = [r for r in runs if "error" not in r]
    out = {"runs": runs}
    if not ok:
        out["error"] = runs[-1]["error"]
        return out
    walls = [r["wall_s"] for r in ok]
    out.update({"wall_best_s": min(walls), "wall_median_s": statistics.median(walls), "max_rss_mib": max(r["max_rss_mib"] for r in ok)})
    for k in ("fit_total", "influence"):
        v = [r["summary"]["timing_s"].get(k) for r in ok if r["summary"]["timing_s"].get(k) is not None]
        if v:
            out[f"{k}_best_s"] = min(v)
            out[f"{k}_median_s"] = statistics.median(v)
    out["summary"] = ok[-1]["summary"]
    return out


# ---------------------------------------------------------------------------------------------
# accuracy of the iterative solvers
# ---------------------------------------------------------------------------------------------
def solver_accuracy(ref_dir, other_dir, top=1000):
    import numpy as np
    import pyarrow.parquet as pq
    from scipy.stats import spearmanr

    a = pq.read_table(os.path.join(ref_dir, "influence.parquet"), columns=["row", "influence_on_test"]).to_pandas().set_index("row")
    b = pq.read_table(os.path.join(other_dir, "influence.parquet"), columns=["row", "influence_on_test"]).to_pandas().set_index("row")
    b = b.loc[a.index]
    x, y = a["influence_on_test"].to_numpy(), b["influence_on_test"].to_numpy()
    ok = np.isfinite(y)
    d = np.linalg.norm(x)
    res = {"n": int(len(x)), "n_nonfinite": int((~ok).sum()),
           "rel_l2": float(np.linalg.norm((y - x)[ok]) / d) if d > 0 else None,
           "spearman": float(spearmanr(x[ok], y[ok]).statistic) if ok.sum() > 2 else None,
           "pearson": float(np.corrcoef(x[ok], y[ok])[0, 1]) if ok.sum() > 2 else None}
    for name, sgn in (("most_harmful", 1), ("most_helpful", -1)):  # influence_on_test < 0: removal lowers the test loss
        ia = set(np.argsort(sgn * x)[:top])
        ib = set(np.argsort(sgn * np.where(ok, y, np.inf * sgn))[:top])
        res[f"top{top}_overlap_{name}"] = len(ia & ib) / top
    return res


def cmd_run(a):
    from bench_ingest import git_state, machine

    res = {
        "command": a.command_line,
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "machine": machine(),
        "fulcrum_binary": a.fulcrum,
        "git": git_state(),
        "data": a.in_1m, "test": a.test, "formula": FORMULA_539, "reps": a.reps, "prewarm_gib": a.prewarm,
        "quiet_wait_s": a.quiet_wait, "quiet_budget_s": a.quiet_budget,
        "loadavg_at_start": os.getloadavg(),
        "notes": [
            "wall: whole process (ingest from the cache, fit, influence, writing); best and median of `reps` processes.",
            "fit_total / influence: summary.json timing_s (in-process phases).",
            "peak RSS: GNU time's maximum resident set size of the whole process (largest over the reps).",
            "exact LOO cost: n x (time of one warm-started exact refit, --task unlearn --remove <row> --steps 100) "
            "-- in-process refit time (influence.unlearn.timing_s.steps) and whole process; vs --task loo.",
            "solver accuracy: influence_on_test of cg / lissa vs cholesky's (relative L2, Spearman, top-1000 overlaps).",
            "other_processes_cpu_s: CPU seconds used by the rest of the machine while a command ran (this sampler included).",
        ],
        "timed": {},
    }
    t_start = time.perf_counter()
    R = Runner(a, res)
    shutil.rmtree(R.cache, ignore_errors=True)
    log(f"building the cache {R.cache} ...")
    r = measure([a.fulcrum, "inspect", a.in_1m, "--formula", FORMULA_539, "--cache-dir", R.cache, "--json", "-q"])
    res["inspect"] = {k: v for k, v in json.loads(r["stdout"]).items() if k in ("n_obs", "n_params", "nnz")}

    R.reps("fit", "fit", [])
    R.reps("loo", "influence", ["--task", "loo"])
    keep = {}
    for label, solver, extra, n in SOLVERS:
        keep[label] = os.path.join(R.tmp, "attr_" + label.replace(" ", "_"))
        R.reps(f"attribute {label}", "influence", ["--task", "attribute", "--test", a.test, "--solver", solver, *extra],
               keep_last=keep[label], n=n)
    R.reps("attribute cholesky --per-test-top 10", "influence",
           ["--task", "attribute", "--test", a.test, "--solver", "cholesky", "--per-test-top", "10"], n=a.reps_per_test_top)

    # solver accuracy against cholesky
    res["solver_accuracy"] = {}
    for s, _, _, _ in SOLVERS[1:]:
        if "error" not in res["timed"][f"attribute {s}"] and "error" not in res["timed"]["attribute cholesky"]:
            res["solver_accuracy"][s] = solver_accuracy(keep["cholesky"], keep[s])
    R.save()

    # exact refits: one row at a time
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    rows = np.random.default_rng(a.seed).choice(res["inspect"]["n_obs"], size=a.refit_rows, replace=False)
    refits = []
    for i, row in enumerate(rows):
        rf = os.path.join(R.tmp, "one_row.parquet")
        pq.write_table(pa.table({"row": pa.array([int(row)], pa.int64())}), rf)
        log(f"exact refit without row {row} ({i + 1}/{len(rows)}) ...")
        r = R.run("influence", ["--task", "unlearn", "--remove", rf, "--steps", "100"])
        r["row"] = int(row)
        refits.append(r)
        if "error" in r:
            log(f"refit FAILED: {r['error']}")
    res["exact_refits"] = {"runs": refits}
    ok = [r for r in refits if "error" not in r]
    if ok:
        import statistics

        n = res["inspect"]["n_obs"]
        steps_s = statistics.median(r["summary"]["influence"]["unlearn"]["timing_s"]["steps"] for r in ok)
        infl_s = statistics.median(r["summary"]["timing_s"]["influence"] for r in ok)
        wall = statistics.median(r["wall_s"] for r in ok)
        loo = res["timed"]["loo"]
        fit = res["timed"]["fit"]
        ex = {"n": n, "refit_steps_taken": [r["summary"]["influence"]["unlearn"]["steps"] for r in ok],
              "refit_in_process_s": steps_s, "unlearn_influence_phase_s": infl_s, "refit_process_wall_s": wall,
              "max_rss_mib": max(r["max_rss_mib"] for r in ok),
              "exact_loo_in_process_s": n * steps_s, "exact_loo_processes_s": n * wall,
              "cold_refits_s": n * fit.get("fit_total_median_s", float("nan"))}
        if "error" not in loo:
            ex["speedup_in_process"] = n * steps_s / loo["influence_median_s"]
            ex["speedup_processes_vs_loo_wall"] = n * wall / loo["wall_median_s"]
            ex["speedup_cold_refits_vs_loo_wall"] = ex["cold_refits_s"] / loo["wall_median_s"]
        ex["other_processes_cpu_s"] = [r.get("other_processes_cpu_s") for r in ok]
        res["exact_refits"]["summary"] = ex
    for d in keep.values():
        shutil.rmtree(d, ignore_errors=True)
    if not a.keep_cache:
        shutil.rmtree(R.cache, ignore_errors=True)
    shutil.rmtree(R.tmp, ignore_errors=True)
    res["total_wall_s"] = round(time.perf_counter() - t_start, 1)
    res["loadavg_at_end"] = os.getloadavg()
    res["quiet_budget_left_s"] = round(R.quiet.left, 1)
    R.save()
    text = tables(res)
    with open(a.table_out, "w") as f:
        f.write(text + "\n")
    print(text)
    log(f"raw JSON written to {a.json_out}; tables to {a.table_out}")


# ---------------------------------------------------------------------------------------------
# tables
# ---------------------------------------------------------------------------------------------
def _f(x, nd=3):
    return "–" if x is None else f"{x:.{nd}f}"


def _big(s):
    if s is None or s != s:
        return "–"
    if s < 3600:
        return _fmt_s(s)
    if s < 86400 * 3:
        return f"{s / 3600:.1f} h"
    return f"{s / 86400:.0f} days"


def tables(res):
    t = res["timed"]
    fit = t.get("fit", {})
    s_any = next((x["summary"] for x in t.values() if "summary" in x), {})
    out = [f"**`fulcrum influence` on {s_any.get('n_obs', 0):,} rows × p = {s_any.get('n_params', '?')} (binomial, "
           f"synthetic, y ~ x00..x19 + C(c20) + C(c500)); test set {res.get('test')} (10,000 fresh rows of the same model); "
           f"{res['reps']} processes per line unless stated**", "",
           "| command | wall best / median (s) | × fit wall | fit_total (s) | influence phase (s) | peak RSS (MiB) | × fit RSS | "
           "solver passes (passes_solver) | notes |",
           "|---|---|---|---|---|---|---|---|---|"]
    fw, fr = fit.get("wall_median_s"), fit.get("max_rss_mib")
    for key, x in t.items():
        if "error" in x:
            out.append(f"| {key} | FAILED: {x['error'][:200]} | | | | | | | |")
            continue
        s = x["summary"]
        inf = s.get("influence", {})
        solves = inf.get("solves") or []
        passes = ", ".join(str(v.get("passes")) for v in solves)
        note = []
        for v in solves:
            if v.get("solver") == "cg":
                note.append(f"CG {v.get('iterations')} it., rel. residual {v.get('relative_residual'):.1e}" if v.get("relative_residual") is not None
                            else f"CG {v.get('iterations')} it.")
            if v.get("solver") == "lissa":
                note.append(f"LiSSA depth {v.get('iterations')}, scale {v.get('lissa_scale'):.4g}")
        if inf.get("test"):
            tm = inf["test"].get("metrics", {})
            note.append(f"test deviance/row {tm.get('deviance', float('nan')):.4f}, misclass. {tm.get('misclassification', float('nan')):.4f}")
        if inf.get("loo"):
            note.append(f"LOO deviance/row {inf['loo']['deviance']:.4f}")
        nrun = len([r for r in x["runs"] if "error" not in r])
        out.append(f"| `{key}`" + (f" ({nrun} process{'es' if nrun > 1 else ''})" if nrun != res["reps"] else "")
                   + f" | {_fmt_s(x['wall_best_s'])} / {_fmt_s(x['wall_median_s'])} | "
                   f"{x['wall_median_s'] / fw:.2f} | {_fmt_s(x.get('fit_total_median_s'))} | "
                   f"{_fmt_s(x.get('influence_median_s')) if x.get('influence_median_s') is not None else '–'} | "
                   f"{x['max_rss_mib']:.0f} | {x['max_rss_mib'] / fr:.2f} | "
                   f"{(passes + ' (' + str(inf.get('passes_solver')) + ')') if passes else '–'} | {'; '.join(note)} |"
                   if fw and fr else f"| `{key}` | {x['wall_median_s']} | | | | | | | |")
    ex = (res.get("exact_refits") or {}).get("summary")
    if ex:
        nc = sum(k >= 100 for k in ex["refit_steps_taken"])
        out += ["", f"**Exact leave-one-out by refitting** (one warm-started refit per row: `--task unlearn --remove <row> --steps 100`, "
                    f"{len(ex['refit_steps_taken'])} rows, steps taken {ex['refit_steps_taken']}"
                    + (f" -- {nc} hit the 100-step limit without converging" if nc else "") + "; medians)", "",
                "| | one refit | × n = {:,} rows | `--task loo` (all rows) | speedup of `--task loo` |".format(ex["n"]),
                "|---|---|---|---|---|"]
        loo = t.get("loo", {})
        out.append(f"| in-process (refit steps vs loo's influence phase) | {_fmt_s(ex['refit_in_process_s'])} | {_big(ex['exact_loo_in_process_s'])} | "
                   f"{_fmt_s(loo.get('influence_median_s'))} | {ex.get('speedup_in_process', float('nan')):,.0f}× |")
        out.append(f"| whole processes (wall) | {_fmt_s(ex['refit_process_wall_s'])} | {_big(ex['exact_loo_processes_s'])} | "
                   f"{_fmt_s(loo.get('wall_median_s'))} | {ex.get('speedup_processes_vs_loo_wall', float('nan')):,.0f}× |")
        out.append(f"| cold refits (fit_total from scratch) | {_fmt_s(t.get('fit', {}).get('fit_total_median_s'))} | {_big(ex['cold_refits_s'])} | "
                   f"{_fmt_s(loo.get('wall_median_s'))} | {ex.get('speedup_cold_refits_vs_loo_wall', float('nan')):,.0f}× |")
    sa = res.get("solver_accuracy") or {}
    if sa:
        out += ["", "**Iterative solvers vs Cholesky** (`--task attribute`, influence_on_test of every training row)", "",
                "| solver | passes (passes_solver) | influence phase (s) | rel. L2 error | Spearman | Pearson | top-1000 overlap harmful / helpful | non-finite |",
                "|---|---|---|---|---|---|---|---|"]
        for s, acc in sa.items():
            x = t.get(f"attribute {s}", {})
            inf = x.get("summary", {}).get("influence", {})
            passes = ", ".join(str(v.get("passes")) for v in inf.get("solves") or [])
            out.append(f"| {s} | {passes} ({inf.get('passes_solver')}) | {_fmt_s(x.get('influence_median_s'))} | {acc['rel_l2']:.2e} | "
                       f"{acc['spearman']:.6f} | {acc['pearson']:.6f} | {acc['top1000_overlap_most_harmful']:.3f} / "
                       f"{acc['top1000_overlap_most_helpful']:.3f} | {acc['n_nonfinite']} |")
    out += ["", f"Total wall time {res.get('total_wall_s', 0):.0f} s; load average at start {res['loadavg_at_start'][0]:.2f}, "
                f"idle-wait budget left {res.get('quiet_budget_left_s')} s."]
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("--fulcrum", required=True)
    r.add_argument("--in-1m", required=True)
    r.add_argument("--test", required=True)
    r.add_argument("--work", default="bench-data")
    r.add_argument("--reps", type=int, default=3)
    r.add_argument("--reps-per-test-top", type=int, default=1, help="processes of the (slow) --per-test-top 10 line")
    r.add_argument("--refit-rows", type=int, default=5, help="exact one-row refits timed")
    r.add_argument("--seed", type=int, default=20240607)
    r.add_argument("--prewarm", type=float, default=1.5, help="GiB touched before each timed process")
    r.add_argument("--quiet-wait", type=float, default=30.0, help="max seconds to wait for an idle machine before each timed run")
    r.add_argument("--quiet-budget", type=float, default=300.0, help="max seconds of such waiting in all")
    r.add_argument("--keep-cache", action="store_true")
    r.add_argument("--json-out", default="target/bench_influence.json")
    r.add_argument("--table-out", default="target/bench_influence_table.md")
    r.add_argument("--command-line", default="scripts/bench_influence.sh")
    m = sub.add_parser("make-test")
    m.add_argument("src")
    m.add_argument("out")
    m.add_argument("n", type=int)
    m.add_argument("--seed", type=int, default=20240602)
    t = sub.add_parser("table")
    t.add_argument("json")
    a = ap.parse_args()
    if a.cmd == "table":
        with open(a.json) as f:
            print(tables(json.load(f)))
    elif a.cmd == "make-test":
        make_test(a.src, a.out, a.n, a.seed)
    else:
        cmd_run(a)


if __name__ == "__main__":
    main()
