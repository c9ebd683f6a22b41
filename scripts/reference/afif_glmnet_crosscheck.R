#!/usr/bin/env Rscript
# Cross-check of the L1-logistic ALO fixture (afif_checks.py, fixtures/alo_l1_logistic.parquet)
# with R glmnet, MEAN form:  (1/n) sum_i [log(1+exp(eta_i)) - y_i eta_i] + lambda * ||b||_1,
# family = "binomial", intercept = FALSE, standardize = FALSE, a single lambda = Lambda_sum / n.
# Also the exact mean-form LOO: glmnet on the n-1 remaining rows at the SAME lambda (which is what
# cv.glmnet does), for every row; eta_loo_mean[i] = x_i . b_{-i}.
# Called by afif_checks.py:  Rscript afif_glmnet_crosscheck.R data.csv lambda out.json
# (data.csv: header x1..xp,y written by afif_checks.py from the same arrays as the Parquet file).
suppressPackageStartupMessages({ library(glmnet); library(jsonlite) })
a <- commandArgs(trailingOnly = TRUE)
d <- as.matrix(read.csv(a[1]))
lam <- as.numeric(a[2])
y <- d[, ncol(d)]; X <- d[, -ncol(d)]
ctl <- list(thresh = 1e-14, maxit = 1e7)
fitb <- function(Xs, ys) {
  f <- glmnet(Xs, ys, family = "binomial", lambda = lam, intercept = FALSE, standardize = FALSE,
              thresh = ctl$thresh, maxit = ctl$maxit)
  as.numeric(as.matrix(f$beta))
}
b <- fitb(X, y)
eta_loo <- vapply(seq_len(nrow(X)), function(i) sum(X[i, ] * fitb(X[-i, , drop = FALSE], y[-i])), 0)
write_json(list(glmnet_version = as.character(packageVersion("glmnet")), R = R.version.string,
                call = sprintf("glmnet(X, y, family = 'binomial', lambda = %.17g, intercept = FALSE, standardize = FALSE, thresh = 1e-14, maxit = 1e7); LOO: same call on X[-i, ], y[-i]", lam),
                coefficients = b, eta_loo_mean = eta_loo),
           a[3], digits = NA, auto_unbox = TRUE)
