#!/usr/bin/env bash
# Coverage-guided fuzzing of the two input surfaces (issue 10, item 4), with cargo-fuzz
# (libFuzzer) on the nightly toolchain:
#   formula         any text -> the formula parser
#   parquet_design  bytes -> a Parquet file -> fulcrum::load (schema, formula against the schema,
#                   decoding, design encoding, chunk cache), one of six formulas per input
# Each target runs FUZZ_SECONDS (default 600) from the committed seeds in fuzz/corpus/<target>/
# (new inputs libFuzzer finds are added there; commit the interesting ones). A crash stops the
# target and leaves its input in fuzz/artifacts/<target>/; reproduce it with
#   cargo +nightly fuzz run <target> fuzz/artifacts/<target>/<crash-file>
# and turn it into a regression test in tests/fuzz_regressions.rs.
#
# Usage: scripts/fuzz.sh [target ...]        (default: both, one after the other)
# Env:   FUZZ_SECONDS=600   FUZZ_JOBS=1 (parallel workers per target)
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
SECONDS_PER_TARGET="${FUZZ_SECONDS:-600}"
if ! cargo +nightly fuzz --version >/dev/null 2>&1; then
    echo "[fuzz] installing cargo-fuzz" >&2
    cargo install cargo-fuzz --locked >&2
fi
TARGETS=("$@")
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=(formula parquet_design)
status=0
for t in "${TARGETS[@]}"; do
    echo "[fuzz] $t for ${SECONDS_PER_TARGET} s" >&2
    mkdir -p "fuzz/corpus/$t"
    JOBS=()
    # -jobs makes libFuzzer run workers that log to ./fuzz-<n>.log; only with FUZZ_JOBS > 1.
    [ "${FUZZ_JOBS:-1}" -gt 1 ] && JOBS=(-jobs="$FUZZ_JOBS" -workers="$FUZZ_JOBS")
    # 8 GiB: a design of ~10⁷ columns is legitimate and its names alone take ~1 GiB under ASan.
    if ! cargo +nightly fuzz run "$t" "fuzz/corpus/$t" -- \
        -max_total_time="$SECONDS_PER_TARGET" -rss_limit_mb=8192 -malloc_limit_mb=8192 -timeout=30 \
        -print_final_stats=1 "${JOBS[@]}"; then
        echo "[fuzz] $t: crash or failure; see fuzz/artifacts/$t/" >&2
        status=1
    fi
done
exit $status
