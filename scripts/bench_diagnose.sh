#!/usr/bin/env bash
# Diagnostics benchmark of issue 4, in one run, side by side:
#   (a) Adult logistic (p = 81): fulcrum `diagnose` (whole process, cache build and cache reused;
#       timing_s.diagnostics) and `fit` vs statsmodels 0.15 GLM.fit + get_influence() + the same
#       columns (hat, residuals, studentized, Cook's D, C-bar, DFFITS) + dfbetas (n x p), in a
#       fresh process, with numpy's default BLAS threads and with 1. Target >= 50x. Also checks
#       hat / Cook's D / studentized residuals row by row against statsmodels (joined on row id).
#   (b) synthetic 1M rows, y ~ x00 + ... + x19 + c20 + c500 (p = 539), binomial, cache reused:
#       timing_s.diagnostics <= timing_s.fit_total, and diagnose peak RSS <= 1.10 x fit peak RSS.
#   (c) the same on 4M rows: diagnose peak RSS flat against 1M (<= 1.10x).
# Prints a markdown table (also bench-data/bench_diagnose_table.md); raw JSON goes to
# bench-data/bench_diagnose.json. `python3 scripts/bench_diagnose.py table bench-data/bench_diagnose.json`
# prints the table again.
#
# Usage: scripts/bench_diagnose.sh         (from anywhere; works relative to the repo root)
# Env:   BENCH_REPS=3                      repetitions for best-of timings (Adult, 1M)
#        BENCH_REPS_4M=2                   repetitions of the 4M fit / diagnose pair
#        BENCH_SM_REPS=$BENCH_REPS         statsmodels processes per BLAS-thread setting (default and 1)
#        BENCH_PREWARM=0                   do not touch 1.5 / 3.5 GiB of memory before each 1M / 4M
#                                          measurement (see prewarm() in bench_ingest.py)
#        BENCH_QUIET_WAIT=60               seconds to wait, at most, for an idle machine before each
#                                          measured process (0: do not wait)
#        BENCH_KEEP_CACHES=1               keep bench-data/diagcache-{adult,1m,4m} afterwards
#        CARGO_TARGET_DIR                  honoured: the binary is copied from $CARGO_TARGET_DIR/release
#        BENCH_FULCRUM_BIN=path            skip the build and benchmark (a copy of) this binary instead,
#                                          e.g. one built from `git archive HEAD` while src/ is mid-edit
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
GEN="$ROOT/../shared/tools/gen_sparse.py"
DATA=bench-data
REPS="${BENCH_REPS:-3}"
REPS_4M="${BENCH_REPS_4M:-2}"
SM_REPS="${BENCH_SM_REPS:-$REPS}"
mkdir -p "$DATA"

say() { printf '[bench] %s\n' "$*" >&2; }

# --- tools -------------------------------------------------------------------------------
PY_DEPS=(statsmodels==0.15.0 pandas pyarrow numpy scipy)
python3 -c 'import pandas, pyarrow, numpy, scipy, statsmodels as s; assert s.__version__ == "0.15.0"' 2>/dev/null || {
    say "installing ${PY_DEPS[*]}"
    python3 -m pip install --quiet "${PY_DEPS[@]}"
}
[ -x /usr/bin/time ] || { say "installing GNU time"; apt-get update -qq && apt-get install -y -qq time; }

# --- data --------------------------------------------------------------------------------
# gen_sparse.py builds everything in memory: ~2.7 GB peak RSS and ~75 s at 1M rows,
# ~10 GB and ~6.5 min at 4M rows.
for spec in "1000000 $DATA/sparse_1m.parquet" "4000000 $DATA/sparse_4m.parquet"; do
    set -- $spec
    if [ ! -s "$2" ]; then
        say "generating $2 ($1 rows)"
        python3 "$GEN" --rows "$1" --seed 20240601 --out "$2" >&2
    fi
done

# --- build -------------------------------------------------------------------------------
# The binary is copied so that a rebuild during the run cannot change it.
BIN="$DATA/bench_diagnose_bin"
mkdir -p "$BIN"
if [ -n "${BENCH_FULCRUM_BIN:-}" ]; then
    say "using $BENCH_FULCRUM_BIN (no build)"
    cp "$BENCH_FULCRUM_BIN" "$BIN/fulcrum"
else
    say "cargo build --release"
    cargo build --release --bin fulcrum >&2
    cp "${CARGO_TARGET_DIR:-target}/release/fulcrum" "$BIN/fulcrum"
fi

# --- measure -----------------------------------------------------------------------------
ARGS=(--fulcrum "$BIN/fulcrum" --adult fixtures/adult.parquet --in-1m "$DATA/sparse_1m.parquet"
    --in-4m "$DATA/sparse_4m.parquet" --work "$DATA" --reps "$REPS" --reps-4m "$REPS_4M" --sm-reps "$SM_REPS"
    --quiet-wait "${BENCH_QUIET_WAIT:-60}" --json-out "$DATA/bench_diagnose.json"
    --table-out "$DATA/bench_diagnose_table.md")
[ "${BENCH_PREWARM:-1}" = 0 ] && ARGS+=(--prewarm 0 --prewarm-4m 0)
[ "${BENCH_KEEP_CACHES:-0}" = 1 ] && ARGS+=(--keep-caches)
python3 scripts/bench_diagnose.py run "${ARGS[@]}" \
    --command-line "scripts/bench_diagnose.sh (BENCH_REPS=$REPS, BENCH_REPS_4M=$REPS_4M, BENCH_SM_REPS=$SM_REPS, BENCH_PREWARM=${BENCH_PREWARM:-1}, BENCH_FULCRUM_BIN=${BENCH_FULCRUM_BIN:-})"
