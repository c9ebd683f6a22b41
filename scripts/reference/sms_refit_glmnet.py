#!/usr/bin/env python3
"""R glmnet leave-one-out refits on sms_spam (bag of words, lasso), for tests/influence_reference.rs.

Writes fixtures/reference/glmnet_sms_lasso_refits.json: glmnet's path
`glmnet(X, y, family = "binomial", nlambda = 47, lambda.min.ratio = 0.01384886371393873,
standardize = TRUE, thresh = 1e-14, maxit = 1e7)` (its last lambda is point 46 of the default
92-point path, the mid-path lambda of scripts/validate_influence.sh), the full fit's deviance at
the last lambda, and for a few rows the same call without that row (glmnet re-standardises):
deviance at the last lambda and x_i'beta_{-i}.

Rows: 2699 (removing it leaves token 372 in a single message: a full proximal Newton step
overshoots there), 5239 (removing it lets token 783 enter the active set), 68 (leverage 0.59).

Usage: python3 scripts/reference/sms_refit_glmnet.py   (needs pyarrow, scipy, Rscript + glmnet)
"""
import json
import os
import subprocess
import tempfile

import numpy as np
import pyarrow.parquet as pq
import scipy.io
import scipy.sparse as sp

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", ".."))
DATA = os.path.join(ROOT, "fixtures", "sms_spam.parquet")
OUT = os.path.join(ROOT, "fixtures", "reference", "glmnet_sms_lasso_refits.json")
ROWS = [2699, 5239, 68]
NLAMBDA = 47
RATIO = 0.01384886371393873

R_SCRIPT = r"""
suppressPackageStartupMessages({library(Matrix); library(glmnet); library(jsonlite)})
a <- commandArgs(trailingOnly = TRUE)
X <- as(readMM(a[1]), "CsparseMatrix")
y <- scan(a[2], quiet = TRUE)
pos <- scan(a[3], quiet = TRUE) + 1L
nlam <- as.integer(a[5]); ratio <- as.numeric(a[6])
f <- glmnet(X, y, family = "binomial", nlambda = nlam, lambda.min.ratio = ratio, standardize = TRUE,
            thresh = 1e-14, maxit = 1e7)
lam <- f$lambda
k <- length(lam)
dev <- function(g) (1 - g$dev.ratio[k]) * g$nulldev
b <- as.numeric(coef(f)[, k])
rows <- list()
for (i in pos) {
  g <- glmnet(X[-i, , drop = FALSE], y[-i], family = "binomial", lambda = lam, standardize = TRUE,
              thresh = 1e-14, maxit = 1e7)
  bi <- as.numeric(coef(g)[, k])
  rows[[length(rows) + 1]] <- list(row = i - 1L, deviance = dev(g), df = g$df[k],
                                   eta_full = b[1] + sum(X[i, ] * b[-1]),
                                   eta_loo = bi[1] + sum(X[i, ] * bi[-1]))
}
write_json(list(glmnet = as.character(packageVersion("glmnet")), R = R.version.string,
                call = sprintf("glmnet(X, y, family = 'binomial', nlambda = %d, lambda.min.ratio = %.17g, standardize = TRUE, thresh = 1e-14, maxit = 1e7); refits: glmnet(X[-i, ], y[-i], lambda = <that path's lambdas>, same options)", nlam, ratio),
                lambda = lam, deviance = dev(f), df = f$df[k], rows = rows),
           a[4], digits = NA, auto_unbox = TRUE)
"""


def main():
    t = pq.read_table(DATA, columns=["is_spam", "bow"])
    dim = int(pq.read_schema(DATA).metadata[b"bow_dim"])
    bow = t.column("bow").combine_chunks()
    if bow.null_count or t.column("is_spam").null_count:
        raise SystemExit("sms_spam.parquet has nulls: row ids would not be positions")
    off = bow.offsets.to_numpy()
    X = sp.csr_matrix((bow.values.field("val").to_numpy().astype(np.float64), bow.values.field("idx").to_numpy(), off),
                      shape=(t.num_rows, dim))
    y = t.column("is_spam").to_numpy(zero_copy_only=False).astype(float)
    with tempfile.TemporaryDirectory() as d:
        scipy.io.mmwrite(os.path.join(d, "X.mtx"), X)
        np.savetxt(os.path.join(d, "y.txt"), y)
        np.savetxt(os.path.join(d, "rows.txt"), np.asarray(ROWS), fmt="%d")
        with open(os.path.join(d, "refit.R"), "w") as f:
            f.write(R_SCRIPT)
        tmp = OUT + ".tmp"
        subprocess.run(["Rscript", os.path.join(d, "refit.R"), os.path.join(d, "X.mtx"), os.path.join(d, "y.txt"),
                        os.path.join(d, "rows.txt"), tmp, str(NLAMBDA), repr(RATIO)], check=True)
        os.replace(tmp, OUT)
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
