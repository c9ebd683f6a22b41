#!/usr/bin/env bash
# Fit benchmark of issue 3, in one run, fulcrum vs statsmodels 0.15 GLM.fit (IRLS) side by side:
#   (a) Adult logistic (p = 81) from Parquet to summary.json: fulcrum whole-process wall time,
#       first run (cache build) and warm run (cache reused), vs statsmodels load+design and fit
#       (design from scripts/reference/reference.py, fitted the way reference.py fits it); and,
#       for context, glum's fit of the same model on a tabmat split design.
#   (b) synthetic 1M rows, y ~ x00 + ... + x19 + c20 + c500 (p = 539), binomial: fulcrum on all
#       1M rows vs statsmodels on the first 100k rows; plus fulcrum on the same 100k rows and the
#       max abs coefficient difference against statsmodels.
#   (c) the same + c20000 (p ~ 20.5k): fulcrum only, one run with a timeout (default 15 min);
#       wall time, peak RSS, iterations, and a 0.5 s timeline of RSS and CPU use.
# Prints a markdown table; raw JSON goes to bench-data/bench_fit.json.
#
# Usage: scripts/bench_fit.sh              (from anywhere; works relative to the repo root)
# Env:   BENCH_REPS=3                      repetitions for best-of timings (Adult, 1M fulcrum runs)
#        BENCH_BARE_REPS=10                Adult runs per cache state timed with nothing around the
#                                          process (no GNU time, no /proc sampler): the end-to-end ratios
#        BENCH_PAIR_ROUNDS=5               (a): rounds of one statsmodels fit then BENCH_PAIR_RUNS bare fulcrum
#                                          runs per cache state, each round's ratio from runs close in time (0: none)
#        BENCH_PAIR_RUNS=3
#        BENCH_SM_REPS_100K=1              repetitions of the (slow) statsmodels 100k-row fit
#        BENCH_SM_1THREAD_100K=1           also time statsmodels at 100k rows with 1 BLAS thread (0: skip)
#        BENCH_TIMEOUT_C=900               timeout (s) of the p ~ 20.5k fit
#        BENCH_SKIP_C=1                    skip (c)
#        BENCH_PREWARM=0                   do not touch 1.5 GiB of memory before each 1M/100k measurement
#                                          (see prewarm() in bench_ingest.py)
#        BENCH_QUIET_WAIT=60               seconds to wait, at most, for an idle machine before each
#                                          measured process (0: do not wait)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
GEN="$ROOT/../shared/tools/gen_sparse.py"
DATA=bench-data
REPS="${BENCH_REPS:-3}"
mkdir -p "$DATA"

say() { printf '[bench] %s\n' "$*" >&2; }

# --- tools -------------------------------------------------------------------------------
if ! python3 -c 'import statsmodels, pandas, pyarrow, numpy, scipy' 2>/dev/null ||
    [ "$(python3 -c 'import statsmodels; print(statsmodels.__version__)')" != 0.15.0 ]; then
    say "installing statsmodels 0.15.0, pandas, pyarrow, numpy, scipy"
    python3 -m pip install --quiet statsmodels==0.15.0 pandas pyarrow numpy scipy
fi
if ! python3 -c 'import glum, tabmat' 2>/dev/null; then
    say "installing glum 3.4.1 and tabmat 4.2.1 (the versions of ../shared/tools/SETUP.sh)"
    python3 -m pip install --quiet --only-binary=:all: glum==3.4.1 tabmat==4.2.1
fi
if [ ! -x /usr/bin/time ]; then
    say "installing GNU time"
    apt-get update -qq && apt-get install -y -qq time
fi

# --- data --------------------------------------------------------------------------------
IN_1M="$DATA/sparse_1m.parquet"
if [ ! -s "$IN_1M" ]; then
    # gen_sparse.py builds everything in memory: ~2.7 GB peak RSS, ~75 s at 1M rows.
    say "generating $IN_1M (1M rows)"
    python3 "$GEN" --rows 1000000 --seed 20240601 --out "$IN_1M" >&2
fi
IN_100K="$DATA/sparse_100k.parquet"
if [ ! -s "$IN_100K" ] || [ "$IN_100K" -ot "$IN_1M" ]; then
    say "writing the first 100,000 rows of $IN_1M to $IN_100K"
    python3 scripts/bench_fit.py head "$IN_1M" "$IN_100K" 100000
fi

# --- build -------------------------------------------------------------------------------
# The binary is copied so that a rebuild of target/release during the run cannot change it.
say "cargo build --release"
cargo build --release --bin fulcrum >&2
BIN="$DATA/bench_fit_bin"
mkdir -p "$BIN"
cp target/release/fulcrum "$BIN/fulcrum"

# --- measure -----------------------------------------------------------------------------
ARGS=(--fulcrum "$BIN/fulcrum" --adult fixtures/adult.parquet --in-1m "$IN_1M" --in-100k "$IN_100K"
    --work "$DATA" --reps "$REPS" --bare-reps "${BENCH_BARE_REPS:-10}"
    --pair-rounds "${BENCH_PAIR_ROUNDS:-5}" --pair-runs "${BENCH_PAIR_RUNS:-3}" --sm-reps-100k "${BENCH_SM_REPS_100K:-1}"
    --sm-1thread-100k "${BENCH_SM_1THREAD_100K:-1}" --timeout-c "${BENCH_TIMEOUT_C:-900}"
    --quiet-wait "${BENCH_QUIET_WAIT:-60}" --json-out "$DATA/bench_fit.json")
[ "${BENCH_PREWARM:-1}" = 0 ] && ARGS+=(--prewarm 0)
[ "${BENCH_SKIP_C:-0}" = 1 ] && ARGS+=(--skip-c)
python3 scripts/bench_fit.py run "${ARGS[@]}" \
    --command-line "scripts/bench_fit.sh (BENCH_REPS=$REPS, BENCH_PREWARM=${BENCH_PREWARM:-1}, BENCH_TIMEOUT_C=${BENCH_TIMEOUT_C:-900})"
