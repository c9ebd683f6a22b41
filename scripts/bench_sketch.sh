#!/usr/bin/env bash
# Sketch and randomized-leverage benchmark of issue 6, in one run (fulcrum `diagnose` only):
#   (a) synthetic 1M rows, binomial, y ~ x00 + ... + x19 + C(c20) + C(c500) (p = 539): time
#       (timing_s.diagnostics) and peak RSS of each method alone in its own process -- exact,
#       influence sketch k = 64 / 256 / 1024 (Gaussian) and 256 (CountSketch), randomized
#       leverage eps = 0.5 / 0.3 / 0.2 -- next to a `fit`-only baseline, with the accuracy block
#       of each (from `--leverage exact,<method>` processes);
#   (b) the same on the issue-5 lasso (all columns + sparse(feats), 20-point path down to
#       5e-4 x lambda_max, standardize false; diagnostics on the last lambda's active set):
#       exact, sketch 64 / 256 / 1024, randomized 0.5 / 0.3;
#   (c) the exact pass at p ~ 20.5k (+ C(c20000)): `diagnose --max-iter 1 --leverage exact`, one
#       run with a timeout (the diagnostics do not depend on convergence), 1 s RSS/CPU timeline;
#   (d) accuracy vs k / eps (top-1 % / 0.1 % overlap, Spearman of Cook's D) on Adult (p = 81,
#       k up to 80) and on (a), plus seeds 1 and 2 at k = 64 / eps = 0.3.
#   Target: at p = 539 randomized leverage reaches top-1 % overlap >= 0.95 in less time than (c).
# Prints markdown tables (also bench-data/bench_sketch_table.md); raw JSON goes to
# bench-data/bench_sketch.json. `python3 scripts/bench_sketch.py table bench-data/bench_sketch.json`
# prints the tables again. Takes ~25 min on the 2-CPU benchmark VM, ~13 of them (c), which needs ~19.5 GiB of RAM.
#
# Usage: scripts/bench_sketch.sh           (from anywhere; works relative to the repo root)
# Env:   BENCH_EPSILONS=0.5,0.3,0.2        randomized epsilons timed in (a) (the first two in (b))
#        BENCH_TIMEOUT_20K=1200            timeout (s) of (c)
#        BENCH_QUIET_WAIT_20K=300          seconds to wait, at most, for an idle machine before (c)
#        BENCH_SKIP_20K=1                  skip (c)        BENCH_SKIP_LASSO=1   skip (b)
#        BENCH_ACC_KMAX=1                  also run the accuracy of k = 1024 in (a) and (b): skipped by
#                                          default, since k >= rank - 1 gives h* = h by construction and
#                                          each such run costs 70-130 s (the timed k = 1024 run is kept)
#        BENCH_PREWARM=0                   do not touch 1.5 GiB of memory before each timed 1M-row
#                                          process (see prewarm() in bench_ingest.py)
#        BENCH_QUIET_WAIT=30               seconds to wait, at most, for an idle machine before each
#                                          timed process (0: do not wait) ...
#        BENCH_QUIET_BUDGET=300            ... and in all (other benchmarks may run for a long time)
#        BENCH_KEEP_CACHES=1               keep bench-data/sketchcache-{adult,1m,lasso,20k}
#        CARGO_TARGET_DIR                  honoured: the binary is copied from $CARGO_TARGET_DIR/release
#        BENCH_FULCRUM_BIN=path            skip the build and benchmark (a copy of) this binary instead
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DATA=bench-data
IN_1M="$DATA/sparse_1m.parquet"
mkdir -p "$DATA"
say() { printf '[bench] %s\n' "$*" >&2; }

python3 -c 'import pyarrow, numpy' 2>/dev/null || python3 -m pip install --quiet pyarrow numpy
[ -x /usr/bin/time ] || { say "installing GNU time"; apt-get update -qq && apt-get install -y -qq time; }
if [ ! -s "$IN_1M" ]; then
    # ~2.7 GB peak RSS and ~75 s
    say "generating $IN_1M"
    python3 "$ROOT/../shared/tools/gen_sparse.py" --rows 1000000 --seed 20240601 --out "$IN_1M" >&2
fi

# A copy of the binary, so that a rebuild during the run cannot change it.
BIN="$DATA/bench_sketch_bin"
mkdir -p "$BIN"
if [ -n "${BENCH_FULCRUM_BIN:-}" ]; then
    say "using $BENCH_FULCRUM_BIN (no build)"
    cp "$BENCH_FULCRUM_BIN" "$BIN/fulcrum"
else
    say "cargo build --release --bin fulcrum"
    cargo build --release --bin fulcrum >&2
    cp "${CARGO_TARGET_DIR:-target}/release/fulcrum" "$BIN/fulcrum"
fi

ARGS=(--fulcrum "$BIN/fulcrum" --adult fixtures/adult.parquet --in-1m "$IN_1M" --work "$DATA"
    --epsilons "${BENCH_EPSILONS:-0.5,0.3,0.2}" --timeout-20k "${BENCH_TIMEOUT_20K:-1200}"
    --quiet-wait-20k "${BENCH_QUIET_WAIT_20K:-300}"
    --quiet-wait "${BENCH_QUIET_WAIT:-30}" --quiet-budget "${BENCH_QUIET_BUDGET:-300}"
    --json-out "$DATA/bench_sketch.json" --table-out "$DATA/bench_sketch_table.md")
[ "${BENCH_PREWARM:-1}" = 0 ] && ARGS+=(--prewarm 0)
[ "${BENCH_SKIP_20K:-0}" = 1 ] && ARGS+=(--skip-20k)
[ "${BENCH_SKIP_LASSO:-0}" = 1 ] && ARGS+=(--skip-lasso)
[ "${BENCH_KEEP_CACHES:-0}" = 1 ] && ARGS+=(--keep-caches)
[ "${BENCH_ACC_KMAX:-0}" = 1 ] && ARGS+=(--acc-kmax)
python3 scripts/bench_sketch.py run "${ARGS[@]}" \
    --command-line "scripts/bench_sketch.sh (BENCH_EPSILONS=${BENCH_EPSILONS:-0.5,0.3,0.2}, BENCH_TIMEOUT_20K=${BENCH_TIMEOUT_20K:-1200}, BENCH_PREWARM=${BENCH_PREWARM:-1}, BENCH_ACC_KMAX=${BENCH_ACC_KMAX:-0}, BENCH_FULCRUM_BIN=${BENCH_FULCRUM_BIN:-})"
