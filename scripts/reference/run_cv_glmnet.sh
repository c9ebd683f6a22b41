#!/usr/bin/env bash
# cv.glmnet oracles for ALO-CV along a lasso path (issue 7): exact LOO CV and a deterministic
# 10-fold CV on insurance, smoker_yes ~ age + bmi + children + charges + sex + region (binomial,
# lasso, standardize = TRUE, nlambda = 100, thresh = 1e-12). See reference_cv_glmnet.R for what
# each JSON key means. Two files: thresh = 1e-12 (the issue-7 setting) and a *_tight.json at
# thresh = 1e-14 (same commands otherwise): at 1e-12 glmnet's relative KKT residual reaches ~3e-4 at
# the small-lambda end of this path (eta accurate to ~1e-5), at 1e-14 ~3e-5 (kkt_rel_path in the
# JSON). The Parquet -> CSV step (R has no Parquet reader here) is done inside the R script with
# python3 + pyarrow, as in reference_glmnet_extra.R.
# Needs: r-base-core r-cran-glmnet r-cran-matrix r-cran-jsonlite r-cran-data.table; python3 + pyarrow.
# Versions used for the committed fixture: R 4.2.2, glmnet 4.1-6, Matrix 1.5-3, jsonlite 1.8.4,
# data.table 1.14.8, Python 3.11.7, pyarrow 26.0.1. Runtime: about 2 minutes per file (3 x 1338
# LOO refits of the 80-lambda path: deviance, class, fixed-standardization deviance).
set -euo pipefail
cd "$(dirname "$0")/../.."   # repo root: paths recorded in the JSON are relative to it

Rscript scripts/reference/reference_cv_glmnet.R --data fixtures/insurance.parquet --label smoker_yes \
  --family binomial --numeric age,bmi,children,charges --categorical sex,region \
  --thresh 1e-12 --preval_idx 10,20,30,40,50,60,70,80 \
  --out fixtures/reference/cv_glmnet_insurance_smoker.json

Rscript scripts/reference/reference_cv_glmnet.R --data fixtures/insurance.parquet --label smoker_yes \
  --family binomial --numeric age,bmi,children,charges --categorical sex,region \
  --thresh 1e-14 --preval_idx 10,20,30,40,50,60,70,80 \
  --out fixtures/reference/cv_glmnet_insurance_smoker_tight.json

# independent numpy checks of both files (cvm/cvsd from fit.preval, own exact LOO refits, ALO table)
python3 scripts/reference/check_cv_glmnet.py
