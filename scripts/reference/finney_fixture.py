#!/usr/bin/env python3
"""Finney's vasoconstriction data (n = 39) and SAS PROC LOGISTIC influence values, from the files
statsmodels 0.15 ships for its own tests (statsmodels/stats/tests/results/binary_constrict.csv and
results_influence_logit.csv), into fixtures/finney_constrict.parquet and
fixtures/reference/sas_finney_influence.json. Model: constrict ~ log_rate + log_volumne (logit).
research/diagnostics.md §1.6: C-bar of case 4 = 1.1756, exact C = 1.287256.

Usage: python3 scripts/reference/finney_fixture.py   (needs statsmodels, pandas, pyarrow)
"""
import json
import os

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import statsmodels

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
RES = os.path.join(os.path.dirname(statsmodels.__file__), "stats", "tests", "results")

data = pd.read_csv(os.path.join(RES, "binary_constrict.csv"))
data = data[["Case", "log_rate", "log_volumne", "constrict"]]
pq.write_table(pa.Table.from_pandas(data, preserve_index=False), os.path.join(ROOT, "fixtures", "finney_constrict.parquet"))

sas = pd.read_csv(os.path.join(RES, "results_influence_logit.csv"))
out = {
    "source": "statsmodels 0.15 stats/tests/results/results_influence_logit.csv (SAS PROC LOGISTIC INFLUENCE output)",
    "statsmodels_version": statsmodels.__version__,
    "model": "constrict ~ log_rate + log_volumne, binomial logit",
    "case": sas["Case"].tolist(),
    "hat": sas["hat_matrix_diagonal"].tolist(),
    "resid_pearson": sas["resid_pearson"].tolist(),
    "cooks_c": sas["Cooks C"].tolist(),
    "cbar": sas["Cooks Cbar"].tolist(),
    "note": "values rounded by SAS to 3-4 significant digits",
}
with open(os.path.join(ROOT, "fixtures", "reference", "sas_finney_influence.json"), "w") as fh:
    json.dump(out, fh, indent=1)
print("wrote fixtures/finney_constrict.parquet and fixtures/reference/sas_finney_influence.json")
