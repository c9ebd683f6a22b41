#!/usr/bin/env bash
# Validation of `fulcrum influence` (issue 7) against real refits, in one run:
#   cases  (a) Adult logistic, unpenalised; (b) Adult lasso at the path's middle lambda;
#          (c) SMS spam bag of words (sparse(bow)) lasso at the path's middle lambda;
#          (d) insurance Gamma with log link (non-canonical), --curvature fisher and hessian.
#   LOO    --task loo (with --loo-refine 200, and the one-step default) vs exact leave-one-out refits of 200 rows (the 100 largest self_influence + 100
#          random, fixed seed): Pearson of the eta shifts (loo_eta - eta vs exact - eta) and of loo_eta
#          vs exact eta, median relative error of the shift. Exact = fulcrum's own converged refit
#          (`--task unlearn --remove <row> --steps 100`) for every case, and independently statsmodels
#          (a, d: every row) or R glmnet (b, c: a subset of rows).
#   unlearn --task unlearn --remove-top 100 --by cooks_d --steps 1 and 3 vs --steps 100 (+ prune --verify):
#          relative L2 error of the predicted change in beta.
# Prints markdown tables (also target/validate_influence_table.md); raw JSON goes to
# target/validate_influence.json. `python3 scripts/validate_influence.py table target/validate_influence.json`
# prints the tables again. Takes ~5 min on the 2-CPU VM (at most 2 fulcrum processes at a time).
#
# Usage: scripts/validate_influence.sh     (from anywhere; works relative to the repo root)
# Env:   VALIDATE_JOBS=2                   fulcrum refit processes at a time
#        VALIDATE_SEED=20240607            seed of the random rows
#        VALIDATE_N_TOP=100 VALIDATE_N_RANDOM=100
#        VALIDATE_GLMNET_ROWS=20           rows refitted with R glmnet per lasso case (0: skip R)
#        VALIDATE_PROBE_S=30               timeout of the single-lambda sms fit probe (0: skip it)
#        VALIDATE_CASES=adult,insurance    a subset of adult,adult_lasso,sms_lasso,insurance
#        CARGO_TARGET_DIR                  honoured: the binary is copied from $CARGO_TARGET_DIR/release
#        VALIDATE_FULCRUM_BIN=path         skip the build and validate (a copy of) this binary instead
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
WORK=target/validate_influence
mkdir -p "$WORK"
say() { printf '[validate] %s\n' "$*" >&2; }

python3 -c 'import pyarrow, numpy, pandas, scipy, statsmodels' 2>/dev/null ||
    python3 -m pip install --quiet pyarrow numpy pandas scipy statsmodels
command -v Rscript >/dev/null || say "no Rscript: the glmnet check of the lasso cases is skipped"

# A copy of the binary, so that a rebuild during the run cannot change it.
BIN="$WORK/bin"
mkdir -p "$BIN"
if [ -n "${VALIDATE_FULCRUM_BIN:-}" ]; then
    say "using $VALIDATE_FULCRUM_BIN (no build)"
    cp "$VALIDATE_FULCRUM_BIN" "$BIN/fulcrum"
else
    say "cargo build --release --bin fulcrum"
    cargo build --release --bin fulcrum >&2
    cp "${CARGO_TARGET_DIR:-target}/release/fulcrum" "$BIN/fulcrum"
fi
rm -rf "$WORK/cache"

python3 scripts/validate_influence.py run --fulcrum "$BIN/fulcrum" --work "$WORK" \
    --jobs "${VALIDATE_JOBS:-2}" --seed "${VALIDATE_SEED:-20240607}" \
    --n-top "${VALIDATE_N_TOP:-100}" --n-random "${VALIDATE_N_RANDOM:-100}" \
    --glmnet-rows "$(command -v Rscript >/dev/null && echo "${VALIDATE_GLMNET_ROWS:-20}" || echo 0)" \
    --single-lambda-probe "${VALIDATE_PROBE_S:-30}" --cases "${VALIDATE_CASES:-}" \
    --json-out target/validate_influence.json --table-out target/validate_influence_table.md \
    --command-line "scripts/validate_influence.sh (VALIDATE_JOBS=${VALIDATE_JOBS:-2}, VALIDATE_SEED=${VALIDATE_SEED:-20240607}, VALIDATE_FULCRUM_BIN=${VALIDATE_FULCRUM_BIN:-})"
