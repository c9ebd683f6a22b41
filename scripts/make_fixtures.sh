#!/usr/bin/env bash
# Copy the real datasets and the outside-oracle outputs (statsmodels 0.15 / R 4.2 / glmnet 4.1,
# produced by ../shared/tools/reference.py and reference_glmnet.R) that the tests use into
# fixtures/, so that tests never read ../shared. Origins and licences: fixtures/README.md.
# talkingdata_sample.parquet is deliberately NOT copied (Kaggle rules: local benchmarks only).
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
shared=${SHARED:-$here/../shared}
for f in adult sms_spam sms_spam_vocab sm_star98 sm_cpunish sm_scotland insurance communities a9a german_credit; do
  cp "$shared/data/$f.parquet" "$here/fixtures/$f.parquet"
done
mkdir -p "$here/fixtures/reference"
cp "$shared"/reference/*.json "$here/fixtures/reference/"
cp "$shared/data/DATA.md" "$here/fixtures/DATA.md"
# The scripts that produced reference/ (run them with ../shared/tools/SETUP.sh installed).
mkdir -p "$here/scripts/reference"
cp "$shared"/tools/{reference.py,reference_glmnet.R,run_reference.sh} "$here/scripts/reference/"
# A 20,000-row synthetic file from the seeded generator (same schema and planted rows as the
# 1M-row benchmark file): tests of sketches and randomized leverage at p = 539.
python3 "$shared/tools/gen_sparse.py" --rows 20000 --seed 20240601 --out "$here/fixtures/sparse_20k.parquet"
echo "fixtures refreshed from $shared"
