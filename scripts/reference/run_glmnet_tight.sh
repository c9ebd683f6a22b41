#!/usr/bin/env bash
# glmnet paths at thresh = 1e-14 for the same designs as glmnet_adult_lasso.json and
# glmnet_communities_lasso.json (which ../shared produced at thresh = 1e-10). At 1e-10, glmnet's
# coordinate descent stops while correlated coefficients are still ~2e-4 from the optimum (its
# objective agrees with the optimum to ~1e-10 relative, the coefficients do not); at 1e-14 they
# agree with an exact solve to ~1e-6. tests/path_reference.rs checks coefficients against these.
# Needs R + glmnet (../shared/tools/SETUP.sh) and python3 + pyarrow.
set -euo pipefail
cd "$(dirname "$0")"
F=../../fixtures
OUT=$F/reference
NUM_C=$(python3 -c "import json;print(','.join(json.load(open('$OUT/glmnet_communities_lasso.json'))['design']['numeric']))")
Rscript reference_glmnet.R --data $F/communities.parquet --label high_crime --family binomial \
  --numeric "$NUM_C" --thresh 1e-14 --out $OUT/glmnet_communities_lasso_tight.json
Rscript reference_glmnet.R --data $F/adult.parquet --label income_gt50k --family binomial \
  --numeric age,education_num,capital_gain,capital_loss,hours_per_week \
  --categorical workclass,marital_status,occupation,relationship,race,sex,native_country \
  --filter split=train --thresh 1e-14 --out $OUT/glmnet_adult_lasso_tight.json
# The extra references of run_glmnet_extra.sh, again at thresh = 1e-14 (same commands).
for f in glmnet_adult_enet05 glmnet_communities_lasso_nostd glmnet_communities_lasso_pf \
         glmnet_insurance_poisson_lasso glmnet_insurance_gaussian_enet glmnet_adult_lasso_weights; do
  cmd=$(python3 -c "import json,sys;print(json.load(open(sys.argv[1]))['command'])" "$OUT/$f.json")
  cmd=${cmd/--thresh 1e-10/--thresh 1e-14}
  cmd=${cmd/--out fixtures\/reference\/$f.json/--out fixtures/reference/${f}_tight.json}
  (cd ../.. && $cmd)
done
