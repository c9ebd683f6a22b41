#!/usr/bin/env bash
# Influence benchmark of issue 7 (fulcrum `influence`), in one run, on the 1M-row synthetic file,
# binomial, y ~ x00 + ... + x19 + C(c20) + C(c500) (p = 539, bench_sketch's formula):
#   (a) wall time and peak RSS of `fit` alone, `influence --task loo` (every row) and
#       `influence --task attribute` against a 10k-row test set (fresh rows of the same generating
#       model, bench-data/sparse_1m_test10k.parquet) with --solver cholesky, cg and lissa (+ cholesky
#       with --per-test-top 10), each next to the fit;
#   (b) the cost of exact leave-one-out by refitting: one warm-started exact refit
#       (`--task unlearn --remove <row> --steps 100`) x n rows, vs `--task loo`;
#   (c) cg and lissa: passes over the data (summary.json influence.solves[].passes, passes_solver),
#       time, and the error of influence_on_test against Cholesky's (relative L2, Spearman).
# Prints markdown tables (also target/bench_influence_table.md); raw JSON goes to
# target/bench_influence.json. `python3 scripts/bench_influence.py table target/bench_influence.json`
# prints the tables again. Takes ~5 min on the 2-CPU benchmark VM (+ ~75 s if the 1M file is generated),
# ~100 s of it the --per-test-top 10 process.
#
# Usage: scripts/bench_influence.sh        (from anywhere; works relative to the repo root)
# Env:   BENCH_REPS=3                      processes per timed configuration
#        BENCH_REPS_PER_TEST_TOP=1         processes of the --per-test-top 10 line (~100 s each)
#        BENCH_REFIT_ROWS=5                exact one-row refits timed
#        BENCH_PREWARM=0                   do not touch 1.5 GiB of memory before each timed process
#                                          (see prewarm() in bench_ingest.py)
#        BENCH_QUIET_WAIT=30               seconds to wait, at most, for an idle machine before each
#                                          timed process (0: do not wait) ...
#        BENCH_QUIET_BUDGET=300            ... and in all
#        BENCH_KEEP_CACHES=1               keep bench-data/influencecache-1m
#        CARGO_TARGET_DIR                  honoured: the binary is copied from $CARGO_TARGET_DIR/release
#        BENCH_FULCRUM_BIN=path            skip the build and benchmark (a copy of) this binary instead
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
DATA=bench-data
IN_1M="$DATA/sparse_1m.parquet"
TEST="$DATA/sparse_1m_test10k.parquet"
mkdir -p "$DATA" target
say() { printf '[bench] %s\n' "$*" >&2; }

python3 -c 'import pyarrow, numpy, scipy, pandas' 2>/dev/null || python3 -m pip install --quiet pyarrow numpy scipy pandas
[ -x /usr/bin/time ] || { say "installing GNU time"; apt-get update -qq && apt-get install -y -qq time; }
if [ ! -s "$IN_1M" ]; then
    # ~2.7 GB peak RSS and ~75 s
    say "generating $IN_1M"
    python3 "$ROOT/../shared/tools/gen_sparse.py" --rows 1000000 --seed 20240601 --out "$IN_1M" >&2
fi
if [ ! -s "$TEST" ] || [ "$TEST" -ot "$IN_1M" ]; then
    say "drawing the test set $TEST (10,000 fresh rows of $IN_1M's model)"
    python3 scripts/bench_influence.py make-test "$IN_1M" "$TEST" 10000 >&2
fi

# A copy of the binary, so that a rebuild during the run cannot change it.
BIN="$DATA/bench_influence_bin"
mkdir -p "$BIN"
if [ -n "${BENCH_FULCRUM_BIN:-}" ]; then
    say "using $BENCH_FULCRUM_BIN (no build)"
    cp "$BENCH_FULCRUM_BIN" "$BIN/fulcrum"
else
    say "cargo build --release --bin fulcrum"
    cargo build --release --bin fulcrum >&2
    cp "${CARGO_TARGET_DIR:-target}/release/fulcrum" "$BIN/fulcrum"
fi

ARGS=(--fulcrum "$BIN/fulcrum" --in-1m "$IN_1M" --test "$TEST" --work "$DATA"
    --reps "${BENCH_REPS:-3}" --refit-rows "${BENCH_REFIT_ROWS:-5}" --reps-per-test-top "${BENCH_REPS_PER_TEST_TOP:-1}"
    --prewarm "$([ "${BENCH_PREWARM:-1}" = 0 ] && echo 0 || echo 1.5)"
    --quiet-wait "${BENCH_QUIET_WAIT:-30}" --quiet-budget "${BENCH_QUIET_BUDGET:-300}"
    --json-out target/bench_influence.json --table-out target/bench_influence_table.md)
[ "${BENCH_KEEP_CACHES:-0}" = 1 ] && ARGS+=(--keep-cache)
python3 scripts/bench_influence.py run "${ARGS[@]}" \
    --command-line "scripts/bench_influence.sh (BENCH_REPS=${BENCH_REPS:-3}, BENCH_REFIT_ROWS=${BENCH_REFIT_ROWS:-5}, BENCH_PREWARM=${BENCH_PREWARM:-1}, BENCH_FULCRUM_BIN=${BENCH_FULCRUM_BIN:-})"
