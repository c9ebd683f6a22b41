#!/usr/bin/env bash
# The consolidated benchmark of issue 9: fulcrum against its peers, side by side, in one run on
# this machine, with ratios computed from that run. Sections (scripts/bench.py has the details):
#   (a) lasso    20-point lasso path, 1M rows x 120k columns: fulcrum vs R glmnet and skglm
#   (b) diag     unpenalised logistic fit + full diagnostics, first 100k rows x 539 columns:
#                fulcrum vs statsmodels (fit + get_influence) and glum (fit only)
#   (c) scale    fulcrum `diagnose` (p = 539) at 1M / 4M / 10M rows: wall, peak RSS, passes
#   (d) threads  1 vs 2 threads (inside scale and passes)
#       passes   the Xᵀ·v pass against a plain streaming read of the same cache (bandwidth bound)
#       recall   planted-outlier recall in the top 1 % by cooks_d, cbar, self_influence, sketch
# Prints a markdown table with the targets and ratios (also bench-data/bench_table.md) and
# writes the raw JSON to bench-data/bench.json; `python3 scripts/bench.py table bench-data/bench.json`
# prints the table again.
#
# Data: bench-data/sparse_1m.parquet and sparse_4m.parquet (../shared/tools/gen_sparse.py, seed
# 20240601), and bench-data/sparse_10m/: ten 1M-row files, seeds 20240601..20240610 (part-00 is
# a hard link to the 1M file). gen_sparse.py holds everything in RAM (~10 GiB at 4M rows), so 10M
# rows in one file would not fit in 24 GiB; the ten files have the same schema and planted rows.
# Generated when missing: ~75 s per 1M rows.
# Peers: installed with ../shared/tools/SETUP.sh when one of them is missing (apt + pip).
#
# Usage: scripts/bench.sh                 (~45 min here once the data exists)
# Env:   BENCH_SKIP=lasso,skglm,diag,scale,threads,passes,recall   sections to leave out
#        BENCH_REPS=3            best-of runs of each fulcrum configuration in (a) and (b)
#        BENCH_PEER_REPS=2       runs of R glmnet, statsmodels and glum
#        BENCH_REPS_SCALE=1      cache-reused runs per size in (c)
#        BENCH_SKIP_10M=1        scale at 1M and 4M only
#        BENCH_QUIET_WAIT=60     seconds to wait, at most, for an idle machine before each run
#        BENCH_PREWARM=0         no 1.5 / 3.5 GiB prewarm before each run (see bench_ingest.py)
#        BENCH_FULCRUM_BIN=dir   use fulcrum and bench_passes from dir instead of building
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SHARED="$ROOT/../shared/tools"
DATA=bench-data
mkdir -p "$DATA"
say() { printf '[bench] %s\n' "$*" >&2; }

# --- peers -------------------------------------------------------------------------------
if ! python3 -c 'import numpy, scipy, pyarrow, pandas, statsmodels, glum, tabmat, skglm' 2>/dev/null ||
    [ ! -x /usr/bin/time ] || ! command -v Rscript >/dev/null ||
    ! Rscript -e 'suppressPackageStartupMessages({library(glmnet); library(Matrix); library(jsonlite)})' >/dev/null 2>&1; then
    say "installing peers with ../shared/tools/SETUP.sh"
    # Its last step (verify_peers.py) looks for a9a.parquet under ../shared/shared/data and
    # fails there; the installs before it are what we need, so check them ourselves.
    bash "$SHARED/SETUP.sh" >&2 || true
    python3 -c 'import numpy, scipy, pyarrow, pandas, statsmodels, glum, tabmat, skglm'
    Rscript -e 'suppressPackageStartupMessages({library(glmnet); library(Matrix); library(jsonlite)})'
fi

# --- data --------------------------------------------------------------------------------
gen() { # rows seed out
    if [ ! -s "$3" ]; then
        say "generating $3 ($1 rows, seed $2)"
        python3 "$SHARED/gen_sparse.py" --rows "$1" --seed "$2" --out "$3" >&2
    fi
}
gen 1000000 20240601 "$DATA/sparse_1m.parquet"
gen 4000000 20240601 "$DATA/sparse_4m.parquet"
if [ "${BENCH_SKIP_10M:-0}" != 1 ]; then
    mkdir -p "$DATA/sparse_10m"
    [ -e "$DATA/sparse_10m/part-00.parquet" ] || ln "$DATA/sparse_1m.parquet" "$DATA/sparse_10m/part-00.parquet"
    for i in 1 2 3 4 5 6 7 8 9; do
        gen 1000000 $((20240601 + i)) "$DATA/sparse_10m/part-0$i.parquet"
    done
fi

# --- build -------------------------------------------------------------------------------
# The binaries are copied so that a rebuild during the run cannot change them.
BIN="$DATA/bench_bin"
mkdir -p "$BIN"
if [ -n "${BENCH_FULCRUM_BIN:-}" ]; then
    cp "$BENCH_FULCRUM_BIN/fulcrum" "$BENCH_FULCRUM_BIN/bench_passes" "$BIN/"
else
    say "cargo build --release"
    cargo build --release --bins >&2
    T="${CARGO_TARGET_DIR:-target}/release"
    cp "$T/fulcrum" "$T/bench_passes" "$BIN/"
fi

# --- measure -----------------------------------------------------------------------------
ARGS=(--fulcrum "$BIN/fulcrum" --bench-passes "$BIN/bench_passes" --in-1m "$DATA/sparse_1m.parquet"
    --in-4m "$DATA/sparse_4m.parquet" --work "$DATA" --reps "${BENCH_REPS:-3}" --peer-reps "${BENCH_PEER_REPS:-2}"
    --reps-scale "${BENCH_REPS_SCALE:-1}" --quiet-wait "${BENCH_QUIET_WAIT:-60}" --skip "${BENCH_SKIP:-}"
    --json-out "$DATA/bench.json" --table-out "$DATA/bench_table.md")
[ "${BENCH_SKIP_10M:-0}" = 1 ] || ARGS+=(--in-10m "$DATA/sparse_10m")
[ "${BENCH_PREWARM:-1}" = 0 ] && ARGS+=(--prewarm 0 --prewarm-4m 0)
python3 scripts/bench.py run "${ARGS[@]}" \
    --command-line "scripts/bench.sh (BENCH_SKIP=${BENCH_SKIP:-}, BENCH_REPS=${BENCH_REPS:-3}, BENCH_PEER_REPS=${BENCH_PEER_REPS:-2}, BENCH_REPS_SCALE=${BENCH_REPS_SCALE:-1}, BENCH_SKIP_10M=${BENCH_SKIP_10M:-0}, BENCH_QUIET_WAIT=${BENCH_QUIET_WAIT:-60}, BENCH_PREWARM=${BENCH_PREWARM:-1})"
