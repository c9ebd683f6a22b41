#!/usr/bin/env bash
# One-step DFBETA oracle (statsmodels GLMInfluence.d_params, n x p) for the DFBETAS test:
# the insurance logistic model of run_reference.sh, fitted to tol 1e-12 so the one-step values
# are at the converged optimum. Needs statsmodels 0.15 (../shared/tools/SETUP.sh or
# run_extra_reference.sh installs it).
set -euo pipefail
cd "$(dirname "$0")"
F=../../fixtures
python3 reference.py --data $F/insurance.parquet --label smoker_yes --family binomial \
  --numeric age,bmi,children,charges --categorical sex,region --transform charges=log \
  --tol 1e-12 --dfbeta --out $F/reference/sm_dfbeta_insurance_smoker_logistic.json
