#!/usr/bin/env bash
# Lasso path benchmark of issue 5, in one run, fulcrum vs R glmnet side by side, on the 1M-row
# synthetic file with all columns:
#   y ~ x00 + ... + x19 + C(c20) + C(c500) + C(c20000) + sparse(feats), binomial, standardize false,
#   a 20-point path from lambda_max down to 5e-4 * lambda_max.
#   - fulcrum: `fulcrum fit ... --penalty lasso --nlambda 20 --lambda-min-ratio 5e-4 --thresh T`, whole
#     process (Parquet -> summary.json + path.parquet), with a fresh --cache-dir (cache build) and with
#     the cache reused; T = 1e-7 (glmnet's default thresh: the headline) and T = 1e-10 (fulcrum's default).
#   - R glmnet: ../shared/tools/bench_glmnet.R, the whole Rscript process, as ../shared/tools/run_bench.sh
#     times it. Its inputs (lambda.json from `bench_peers.py lambda`, CSC binaries from
#     `bench_peers.py export_r`) are written under bench-data/bench_lasso_peer/synth/, never into ../shared.
#   - checks: fulcrum's lambda_max against bench_peers.py's, the final lambdas, the objective at the
#     final lambda (fulcrum: deviance/2n + lambda*sum|b| from summary.json + path.parquet, and the same
#     coefficients re-evaluated on bench_peers.py's design; glmnet: bench_glmnet.R's objective), nnz.
#   - fulcrum alone on the 4M-row file (T = 1e-7, cache build and reused): wall time, peak RSS
#     ("RSS flat" = within ~10 % of 1M's).
# Targets: fulcrum wall (cache build) <= 0.5x glmnet's, peak RSS <= 0.33x glmnet's, objective
# |delta|/obj <= 1e-7 (or fulcrum lower), 4M peak RSS <= 1.10x 1M's.
# Prints a markdown table (also bench-data/bench_lasso_table.md); raw JSON goes to
# bench-data/bench_lasso.json. `python3 scripts/bench_lasso.py table bench-data/bench_lasso.json`
# prints the table again.
#
# Usage: scripts/bench_lasso.sh            (from anywhere; works relative to the repo root)
# Env:   BENCH_REPS=3                      repetitions (best-of) of each 1M fulcrum configuration
#                                          (thresh 1e-7 / 1e-10 x cache build / reused)
#        BENCH_GLMNET_REPS=$BENCH_REPS     repetitions of the R glmnet process (~30 s each)
#        BENCH_REPS_4M=1                   repetitions of the 4M cache-build and cache-reused runs
#        BENCH_SKIP_4M=1                   skip the 4M runs
#        BENCH_REUSE_PEER_DATA=1           reuse bench-data/bench_lasso_peer/synth/{lambda.json,rx/} when
#                                          newer than the 1M Parquet file (default: rebuild, ~30 s)
#        BENCH_PREWARM=0                   do not touch 1.5 / 3.5 GiB of memory before each 1M / 4M
#                                          measurement (see prewarm() in bench_ingest.py)
#        BENCH_QUIET_WAIT=60               seconds to wait, at most, for an idle machine before each
#                                          measured process (0: do not wait)
#        BENCH_KEEP_CACHES=1               keep bench-data/lassocache-* afterwards
#        CARGO_TARGET_DIR                  honoured: the binary is copied from $CARGO_TARGET_DIR/release
#        BENCH_FULCRUM_BIN=path            skip the build and benchmark (a copy of) this binary instead
# Needs: python3 with numpy, scipy, pyarrow (pip-installed if missing); R with glmnet, Matrix, jsonlite
# and GNU time (apt-installed if missing, as ../shared/tools/SETUP.sh does).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
GEN="$ROOT/../shared/tools/gen_sparse.py"
DATA=bench-data
REPS="${BENCH_REPS:-3}"
GLMNET_REPS="${BENCH_GLMNET_REPS:-$REPS}"
REPS_4M="${BENCH_REPS_4M:-1}"
mkdir -p "$DATA"

say() { printf '[bench] %s\n' "$*" >&2; }

# --- tools -------------------------------------------------------------------------------
if ! python3 -c 'import numpy, scipy, pyarrow' 2>/dev/null; then
    say "installing numpy, scipy, pyarrow"
    python3 -m pip install --quiet numpy scipy pyarrow
fi
if [ ! -x /usr/bin/time ] || ! command -v Rscript >/dev/null ||
    ! Rscript -e 'suppressPackageStartupMessages({library(glmnet); library(Matrix); library(jsonlite)})' >/dev/null 2>&1; then
    say "installing R, glmnet, Matrix, jsonlite, data.table and GNU time from Debian (as ../shared/tools/SETUP.sh)"
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
        r-base-core r-cran-glmnet r-cran-matrix r-cran-jsonlite r-cran-data.table time
fi

# --- data --------------------------------------------------------------------------------
# gen_sparse.py builds everything in memory: ~2.7 GB peak RSS and ~75 s at 1M rows,
# ~10 GB and ~6.5 min at 4M rows.
SPECS=("1000000 $DATA/sparse_1m.parquet")
[ "${BENCH_SKIP_4M:-0}" = 1 ] || SPECS+=("4000000 $DATA/sparse_4m.parquet")
for spec in "${SPECS[@]}"; do
    set -- $spec
    if [ ! -s "$2" ]; then
        say "generating $2 ($1 rows)"
        python3 "$GEN" --rows "$1" --seed 20240601 --out "$2" >&2
    fi
done

# --- build -------------------------------------------------------------------------------
# The binary is copied so that a rebuild during the run cannot change it.
BIN="$DATA/bench_lasso_bin"
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
ARGS=(--fulcrum "$BIN/fulcrum" --in-1m "$DATA/sparse_1m.parquet" --work "$DATA" --reps "$REPS"
    --glmnet-reps "$GLMNET_REPS" --reps-4m "$REPS_4M" --quiet-wait "${BENCH_QUIET_WAIT:-60}"
    --json-out "$DATA/bench_lasso.json" --table-out "$DATA/bench_lasso_table.md")
[ "${BENCH_SKIP_4M:-0}" = 1 ] || ARGS+=(--in-4m "$DATA/sparse_4m.parquet")
[ "${BENCH_PREWARM:-1}" = 0 ] && ARGS+=(--prewarm 0 --prewarm-4m 0)
[ "${BENCH_REUSE_PEER_DATA:-0}" = 1 ] && ARGS+=(--reuse-peer-data)
[ "${BENCH_KEEP_CACHES:-0}" = 1 ] && ARGS+=(--keep-caches)
python3 scripts/bench_lasso.py run "${ARGS[@]}" \
    --command-line "scripts/bench_lasso.sh (BENCH_REPS=$REPS, BENCH_GLMNET_REPS=$GLMNET_REPS, BENCH_REPS_4M=$REPS_4M, BENCH_PREWARM=${BENCH_PREWARM:-1}, BENCH_SKIP_4M=${BENCH_SKIP_4M:-0}, BENCH_QUIET_WAIT=${BENCH_QUIET_WAIT:-60})"
