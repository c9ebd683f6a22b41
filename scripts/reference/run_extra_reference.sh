#!/usr/bin/env bash
# Extra statsmodels reference fits (extra_reference.py): writes fixtures/reference/sm_extra_*.json
# and fixtures/insurance_offset.parquet. Installs the pinned Python deps if they are missing.
set -euo pipefail
cd "$(dirname "$0")"
if ! python3 -c 'import statsmodels, pandas, pyarrow, numpy, scipy, sys; sys.exit(statsmodels.__version__ != "0.15.0")' 2>/dev/null; then
  python3 -m pip install --quiet statsmodels==0.15.0 pandas pyarrow numpy scipy
fi
python3 extra_reference.py "$@"
