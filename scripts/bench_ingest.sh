#!/usr/bin/env bash
# Ingest and pass benchmark of issue 2, in one run:
#   (a) first ingest (Parquet -> chunk cache) of 1M rows vs pyarrow.parquet.read_table,
#   (b) re-open time (cache reused),
#   (c) one X^T v pass, one X beta pass, one sandwich on 500 columns (src/bin/bench_passes.rs),
#   (d) ingest peak RSS at 1M and 4M rows.
# Prints a markdown table; raw JSON goes to bench-data/bench_ingest.json.
#
# Usage: scripts/bench_ingest.sh            (from anywhere; works relative to the repo root)
# Env:   BENCH_REPS=3                        repetitions for best-of timings
#        BENCH_KEEP_4M_CACHE=1               keep bench-data/cache-4m (~2.2 GiB) afterwards
#        BENCH_PREWARM=0                     do not touch 1.5 / 3.5 GiB of memory before each measured
#                                            process (see prewarm() in bench_ingest.py: on this VM,
#                                            recently freed memory is slow to touch again)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
GEN="$ROOT/../shared/tools/gen_sparse.py"
DATA=bench-data
REPS="${BENCH_REPS:-3}"
mkdir -p "$DATA"

say() { printf '[bench] %s\n' "$*" >&2; }

# --- tools -------------------------------------------------------------------------------
if ! python3 -c 'import pyarrow, numpy' 2>/dev/null; then
    say "installing numpy, pyarrow"
    python3 -m pip install --quiet numpy pyarrow
fi
if [ ! -x /usr/bin/time ]; then
    say "installing GNU time"
    apt-get update -qq && apt-get install -y -qq time
fi

# --- data --------------------------------------------------------------------------------
# gen_sparse.py builds everything in memory: ~2.7 GB peak RSS at 1M rows, ~11 GB at 4M rows.
gen() { # rows out [seed]
    local rows=$1 out=$2 seed=${3:-20240601}
    say "generating $out ($rows rows)"
    python3 "$GEN" --rows "$rows" --seed "$seed" --out "$out" >&2
}
IN_1M="$DATA/sparse_1m.parquet"
[ -s "$IN_1M" ] || gen 1000000 "$IN_1M"

# 4M rows: one file if the generator manages (needs ~11 GB RAM); otherwise four 1M-row files
# with different seeds in bench-data/sparse_4m/ (fulcrum reads a directory, row ids continue
# across files in sorted path order).
IN_4M="$DATA/sparse_4m.parquet"
IN_4M_DIR="$DATA/sparse_4m"
if [ -s "$IN_4M" ]; then
    :
elif [ -d "$IN_4M_DIR" ] && [ "$(ls "$IN_4M_DIR"/*.parquet 2>/dev/null | wc -l)" -eq 4 ]; then
    IN_4M="$IN_4M_DIR"
elif ! gen 4000000 "$IN_4M"; then
    say "single-file 4M generation failed; writing 4 x 1M files to $IN_4M_DIR"
    rm -f "$IN_4M"
    mkdir -p "$IN_4M_DIR"
    for k in 0 1 2 3; do
        gen 1000000 "$IN_4M_DIR/part-$k.parquet" $((20240601 + k))
        mv "$IN_4M_DIR/part-$k.parquet.truth.json" "$DATA/sparse_4m-part-$k.truth.json"
    done
    IN_4M="$IN_4M_DIR"
fi

# --- build -------------------------------------------------------------------------------
say "cargo build --release"
cargo build --release --bin fulcrum --bin bench_passes >&2

# --- measure -----------------------------------------------------------------------------
KEEP=()
[ "${BENCH_KEEP_4M_CACHE:-0}" = 1 ] && KEEP=(--keep-4m-cache)
PREWARM=(--prewarm-1m 1.5 --prewarm-4m 3.5)
[ "${BENCH_PREWARM:-1}" = 0 ] && PREWARM=(--prewarm-1m 0 --prewarm-4m 0)
python3 scripts/bench_ingest.py run \
    --in-1m "$IN_1M" --in-4m "$IN_4M" --work "$DATA" --target-dir target/release \
    --reps "$REPS" --json-out "$DATA/bench_ingest.json" "${KEEP[@]}" "${PREWARM[@]}" \
    --command-line "scripts/bench_ingest.sh (BENCH_REPS=$REPS, BENCH_PREWARM=${BENCH_PREWARM:-1})"
