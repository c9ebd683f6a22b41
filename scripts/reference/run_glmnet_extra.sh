#!/usr/bin/env bash
# Extra glmnet 4.1 path references (reference_glmnet_extra.R) and the group-lasso reference
# (reference_group_lasso.py). Outputs are written straight into fixtures/reference/.
# Needs the installs of ../shared/tools/SETUP.sh:
#   apt-get install --no-install-recommends r-base-core r-cran-glmnet r-cran-matrix r-cran-jsonlite r-cran-data.table
#   python3 -m pip install --only-binary=:all: group-lasso==1.5.0 asgl==2.2.0   (+ numpy, scipy, pyarrow)
# Versions used for the committed fixtures: R 4.2.2, glmnet 4.1-6, Matrix 1.5-3, jsonlite 1.8.4,
# data.table 1.14.8, Python 3.11.7, numpy 2.4.6, scipy 1.17.1, group-lasso 1.5.0, asgl 2.2.0.
set -euo pipefail
cd "$(dirname "$0")/../.."   # repo root: paths recorded in the JSON are relative to it
D=fixtures
O=fixtures/reference
R="Rscript scripts/reference/reference_glmnet_extra.R"

ADULT_NUM=age,education_num,capital_gain,capital_loss,hours_per_week
ADULT_CAT=workclass,marital_status,occupation,relationship,race,sex,native_country
CC_NUM=population,householdsize,racepctblack,racePctWhite,racePctAsian,racePctHisp,agePct12t29,agePct65up,medIncome,pctWPubAsst,PctPopUnderPov,PctNotHSGrad,PctUnemployed,PctFam2Par,PctIlleg,PctPersDenseHous,PctHousNoPhone,PctVacantBoarded,PopDens,PctUsePubTrans

# 1. Adult (design of glmnet_adult_lasso.json), elastic net alpha = 0.5
$R --data $D/adult.parquet --label income_gt50k --family binomial \
  --numeric $ADULT_NUM --categorical $ADULT_CAT --filter split=train \
  --alpha 0.5 --thresh 1e-10 --out $O/glmnet_adult_enet05.json

# 2. Communities (design of glmnet_communities_lasso.json), lasso without standardization
$R --data $D/communities.parquet --label high_crime --family binomial \
  --numeric $CC_NUM --standardize FALSE --thresh 1e-10 --out $O/glmnet_communities_lasso_nostd.json

# 3. Communities lasso with penalty factors: population 0 (unpenalized), householdsize 2, rest 1
#    (sum = 20 = p, so glmnet's internal rescaling vp * p / sum(vp) is the identity here)
$R --data $D/communities.parquet --label high_crime --family binomial \
  --numeric $CC_NUM --penalty_factor population=0,householdsize=2 \
  --thresh 1e-10 --out $O/glmnet_communities_lasso_pf.json

# 4. Insurance, Poisson lasso on children
$R --data $D/insurance.parquet --label children --family poisson \
  --numeric age,bmi --categorical sex,region --thresh 1e-10 --out $O/glmnet_insurance_poisson_lasso.json

# 5. Insurance, Gaussian elastic net (alpha 0.7) on raw charges
$R --data $D/insurance.parquet --label charges --family gaussian \
  --numeric age,bmi,children --categorical sex,smoker,region \
  --alpha 0.7 --thresh 1e-10 --out $O/glmnet_insurance_gaussian_enet.json

# 6. Adult without native_country, lasso, observation weights hours_per_week/40
#    (hours_per_week is then NOT a feature)
$R --data $D/adult.parquet --label income_gt50k --family binomial \
  --numeric age,education_num,capital_gain,capital_loss \
  --categorical workclass,marital_status,occupation,relationship,race,sex --filter split=train \
  --weights hours_per_week/40 --thresh 1e-10 --out $O/glmnet_adult_lasso_weights.json

# 7. Group lasso (logistic) on insurance smoker_yes: group-lasso 1.5.0 (+ asgl 2.2.0) and an own
#    numpy solver run to KKT < 1e-9
python3 scripts/reference/reference_group_lasso.py --data $D/insurance.parquet \
  --out $O/grouplasso_insurance_smoker.json

# Sanity checks + KKT of every glmnet fixture above against its documented objective
python3 scripts/reference/check_glmnet_extra.py
