#!/usr/bin/env Rscript
# cv.glmnet oracles for ALO-CV along a lasso path (issue 7): exact leave-one-out CV and a
# deterministic 10-fold CV, both refitting every fold at EXACTLY the lambda sequence of the
# full-data fit (mean form, glmnet's lambda scale).
#
# Design rules (as reference_glmnet_extra.R): intercept (unpenalized, glmnet's own) + numeric
# columns + one-hot categoricals with the first level in C-locale sorted order dropped (treatment
# contrasts, Matrix::sparse.model.matrix); rows with a missing value in any used column dropped.
# The design is then densified (as.matrix) because the dense lognet path is ~2x faster for the
# n refits; coefficients agree with the sparse path to the convergence tolerance.
#
# What is run (family binomial, alpha = 1, standardize = TRUE, nlambda = 100, thresh as given):
#   fit  = glmnet(X, y, ...)                              -> lambda (length L, glmnet's early stop)
#   LOO  : cv.glmnet(X, y, lambda = fit$lambda, foldid = 1:n, grouped = FALSE, keep = TRUE, ...)
#          type.measure = "deviance" and "class"
#   10-fold: cv.glmnet(..., lambda = fit$lambda, foldid = (0:(n-1)) %% 10 + 1, keep = TRUE)
#          (row index counts the rows kept after dropping missing values, in file order)
#   LOO with FIXED standardization: X pre-scaled with the full-data column means and sds (1/n
#          divisor, as glmnet), standardize = FALSE, same lambda; the only difference from the LOO
#          above is that the fold refits do not re-standardize on their n-1 rows (this is the
#          objective that ALO / AFIF approximate: same penalty weights, same lambda).
#   10-fold with cv.glmnet's DEFAULT lambda handling (lambda = NULL), for information only.
# Why lambda = fit$lambda is passed: in glmnet 4.1-6, cv.glmnet.raw() calls glmnet() on each fold
# with the user's `lambda` argument (NULL by default), so every fold computes its OWN lambda
# sequence and the predictions at the master lambda values are interpolated (predict(..., s =
# lambda), alignment = "lambda"). Passing lambda = fit$lambda makes every fold an exact refit at
# the master lambdas (and glmnet does not apply its early-stop rules to a user lambda sequence).
# grouped = FALSE is required for foldid = 1:n (cv.glmnet would force it with a warning); then
# cvm = plain mean over rows of the per-row measure and
# cvsd = sqrt(mean((cvraw_i - cvm)^2) / (n - 1)). With grouped = TRUE (10-fold) cvm is the
# fold-size-weighted mean of the fold means (= the plain row mean) and
# cvsd = sqrt(weighted.mean((foldmean_k - cvm)^2, foldsize_k) / (K - 1)).
# Per-row deviance (cv.lognet): p = 1/(1+exp(-eta_loo)) clipped to [1e-5, 1 - 1e-5], then
# -2 [y log p + (1-y) log(1-p)]; class: y != (p > 0.5) (p == 0.5 counts as class 0).
# fit.preval is on the LINK scale (predict(..., type = "link")): the exact LOO (or out-of-fold)
# linear predictor of each row at each lambda.
#
# R cannot read Parquet here: the Parquet file is converted to a temporary CSV with python3+pyarrow.
#
# Usage (see run_cv_glmnet.sh):
#   Rscript reference_cv_glmnet.R --data fixtures/insurance.parquet --label smoker_yes \
#     --numeric age,bmi,children,charges --categorical sex,region --thresh 1e-12 \
#     [--max_rows 600] [--preval_idx 10,20,30] --out fixtures/reference/cv_glmnet_insurance_smoker.json
suppressPackageStartupMessages({
  library(Matrix); library(glmnet); library(jsonlite); library(data.table)
})

args <- commandArgs(trailingOnly = TRUE)
opt <- list(numeric = "", categorical = "", thresh = "1e-12", family = "binomial", max_rows = "",
            preval_idx = "10,20,30,40,50,60,70,80", nfolds_k = "10")
i <- 1
while (i <= length(args)) {
  k <- sub("^--", "", args[i]); opt[[k]] <- args[i + 1]; i <- i + 2
}
splitc <- function(s) if (is.null(s) || s == "") character(0) else strsplit(s, ",")[[1]]
numeric_cols <- splitc(opt$numeric); cat_cols <- splitc(opt$categorical)
used <- unique(c(opt$label, numeric_cols, cat_cols))
thresh <- as.numeric(opt$thresh); K <- as.integer(opt$nfolds_k)

csv <- tempfile(fileext = ".csv")
py <- paste0("import pyarrow.parquet as pq, pyarrow.csv as pc, sys; ",
             "t = pq.read_table(sys.argv[1], columns=sys.argv[3].split(',')); ",
             "pc.write_csv(t, sys.argv[2])")
python <- Sys.getenv("PYTHON", "python3")
st <- system2("env", c("-u", "LD_LIBRARY_PATH", python, "-c", shQuote(py), shQuote(opt$data), shQuote(csv),
                       shQuote(paste(used, collapse = ","))))
if (st != 0) stop("parquet->csv conversion failed")
df <- fread(csv, na.strings = c("", "NA"), colClasses = setNames(rep("character", length(cat_cols)), cat_cols))
unlink(csv)
n_file <- nrow(df)
df[, row__ := .I - 1L]
df <- df[complete.cases(df[, ..used])]
n_complete <- nrow(df)
if (opt$max_rows != "") df <- df[seq_len(min(nrow(df), as.integer(opt$max_rows)))]
levels_out <- list()
for (cc in cat_cols) {
  lv <- sort(unique(df[[cc]]), method = "radix")
  levels_out[[cc]] <- lv
  set(df, j = cc, value = factor(df[[cc]], levels = lv))
}
rhs <- paste(c(sprintf("`%s`", numeric_cols), sprintf("`%s`", cat_cols)), collapse = " + ")
Xs <- sparse.model.matrix(as.formula(paste("~", rhs)), data = df)
X <- as.matrix(Xs[, -1, drop = FALSE])
y <- as.numeric(df[[opt$label]])
n <- nrow(X)

warns <- character(0)
wcatch <- function(expr) withCallingHandlers(expr, warning = function(w) {
  warns <<- c(warns, conditionMessage(w)); invokeRestart("muffleWarning") })
tm <- list()
t0 <- proc.time()[["elapsed"]]
fit <- wcatch(glmnet(X, y, family = opt$family, alpha = 1, standardize = TRUE, thresh = thresh))
tm$fit <- proc.time()[["elapsed"]] - t0
lam <- fit$lambda; L <- length(lam)
pidx <- as.integer(splitc(opt$preval_idx)); pidx <- pidx[pidx <= L]
B <- as.matrix(coef(fit))

# relative KKT residual of the full path (binomial): on the standardized scale (sd with the 1/n
# divisor), max over j of |g_j + lambda sign(b_j)| / lambda (active) or max(|g_j| - lambda, 0) / lambda
# (inactive), g = X_std' (p - y) / n; the intercept gradient |mean(p - y)| is reported separately.
kkt_path <- function(B, lam) {
  sdx <- sqrt(colMeans(sweep(X, 2, colMeans(X))^2))
  t(vapply(seq_along(lam), function(k) {
    cf <- B[, k]; e <- cf[1] + drop(X %*% cf[-1]); r <- plogis(e) - y
    g <- drop(crossprod(X, r)) / n / sdx; bs <- cf[-1] * sdx; a <- bs != 0
    c(max(c(abs(g[a] + lam[k] * sign(bs[a])), pmax(abs(g[!a]) - lam[k], 0))) / lam[k], abs(mean(r)))
  }, c(0, 0)))
}
kkt <- if (opt$family == "binomial") kkt_path(B, lam) else NULL

foldid_loo <- seq_len(n)
foldid_k <- (seq_len(n) - 1L) %% K + 1L
run <- function(tag, x, foldid, measure, grouped, standardize = TRUE, lambda = lam) {
  t0 <- proc.time()[["elapsed"]]
  cv <- wcatch(cv.glmnet(x, y, family = opt$family, alpha = 1, standardize = standardize, thresh = thresh,
                         lambda = lambda, foldid = foldid, grouped = grouped, keep = TRUE,
                         type.measure = measure))
  tm[[tag]] <<- proc.time()[["elapsed"]] - t0
  cv
}
summ <- function(cv, call, preval = TRUE) {
  o <- list(call = call, type_measure = names(cv$name), name = unname(cv$name),
            cvm = unname(cv$cvm), cvsd = unname(cv$cvsd), nzero = unname(cv$nzero),
            lambda_min = cv$lambda.min, lambda_1se = cv$lambda.1se,
            index_min_1based = unname(cv$index["min", 1]), index_1se_1based = unname(cv$index["1se", 1]))
  if (preval) o$fit_preval_link <- lapply(pidx, function(j) unname(cv$fit.preval[, j]))
  o
}
cl <- function(fid, grp, meas, std = "TRUE", x = "X", lamarg = "fit$lambda")
  sprintf("cv.glmnet(%s, y, family = \"%s\", alpha = 1, standardize = %s, thresh = %s, lambda = %s, foldid = %s, grouped = %s, keep = TRUE, type.measure = \"%s\")",
          x, opt$family, std, format(thresh), lamarg, fid, grp, meas)

loo_dev <- run("loo_deviance", X, foldid_loo, "deviance", FALSE)
loo_cls <- run("loo_class", X, foldid_loo, "class", FALSE)
k_dev <- run("kfold_deviance", X, foldid_k, "deviance", TRUE)
k_cls <- run("kfold_class", X, foldid_k, "class", TRUE)
# fixed standardization (full-data mean and sd with the 1/n divisor, as glmnet's standardize = TRUE)
mu_x <- colMeans(X); sd_x <- sqrt(colMeans(sweep(X, 2, mu_x)^2))
Xfix <- sweep(sweep(X, 2, mu_x), 2, sd_x, "/")
fit_fix <- glmnet(Xfix, y, family = opt$family, alpha = 1, standardize = FALSE, thresh = thresh, lambda = lam)
Bfix <- as.matrix(coef(fit_fix))
# back to the original scale: b_j = bs_j / sd_j, b0 = bs0 - sum(bs_j mu_j / sd_j)
Bfix_orig <- rbind(Bfix[1, ] - colSums(Bfix[-1, , drop = FALSE] * mu_x / sd_x), Bfix[-1, , drop = FALSE] / sd_x)
loo_fix <- run("loo_fixedscale_deviance", Xfix, foldid_loo, "deviance", FALSE, standardize = FALSE)
k_def <- run("kfold_default_lambda_deviance", X, foldid_k, "deviance", TRUE, lambda = NULL)

same_preval <- isTRUE(all.equal(loo_dev$fit.preval, loo_cls$fit.preval, tolerance = 0))
same_preval_k <- isTRUE(all.equal(k_dev$fit.preval, k_cls$fit.preval, tolerance = 0))

out <- list(
  description = paste("cv.glmnet oracles (exact LOO and deterministic 10-fold CV along a lasso path) for ALO-CV;",
                      "every fold refit at exactly the full-data lambda sequence (mean form)"),
  tool = "glmnet", tool_version = as.character(packageVersion("glmnet")), R = R.version.string,
  matrix_version = as.character(packageVersion("Matrix")),
  data = opt$data, label = opt$label,
  label_coding = sprintf("%s as stored in the Parquet file (0/1; 1 = smoker == \"yes\"), as in the sm_*/glmnet_*/grouplasso insurance fixtures", opt$label),
  formula = sprintf("%s ~ %s", opt$label, paste(c(numeric_cols, cat_cols), collapse = " + ")),
  formula_note = "categoricals one-hot, first level (C-locale sorted) dropped; intercept unpenalized (glmnet's own)",
  family = opt$family, alpha = 1, standardize = TRUE, thresh = thresh, nlambda = 100L,
  lambda_min_ratio = ifelse(n < ncol(X), 0.01, 1e-04),
  n_file_rows = n_file, n_complete_rows = n_complete, n_obs = n, n_features = ncol(X),
  rows_used = if (opt$max_rows != "") sprintf("first %s complete rows in file order", opt$max_rows) else "all complete rows",
  rows_dropped_missing = n_file - n_complete,
  row_index = df$row__,
  design = list(numeric = numeric_cols, categorical = cat_cols, categorical_levels = levels_out,
                reference_level = "first in C-locale sorted order (dropped)"),
  coef_names = c("(Intercept)", colnames(X)),
  objective = paste("glmnet binomial, mean form: -(1/n) sum_i [y_i eta_i - log(1+exp(eta_i))] + lambda * sum_j |s_j b_j|,",
                    "s_j = sd of column j with the 1/n divisor over the rows of the fit (re-computed on each fold's rows",
                    "when standardize = TRUE); eta_i = b0 + x_i . b; coefficients on the original scale"),
  fit_call = sprintf("glmnet(X, y, family = \"%s\", alpha = 1, standardize = TRUE, thresh = %s)", opt$family, format(thresh)),
  lambda = lam, n_lambda = L, df = fit$df, dev_ratio = fit$dev.ratio, nulldev = fit$nulldev,
  coef_path = unname(lapply(seq_len(ncol(B)), function(j) unname(B[, j]))),
  kkt_rel_path = if (is.null(kkt)) NULL else unname(kkt[, 1]),
  kkt_intercept_path = if (is.null(kkt)) NULL else unname(kkt[, 2]),
  kkt_definition = paste("kkt_rel_path[k] = max_j |g_j + lambda_k sign(b_j)| / lambda_k on the support, max(|g_j| - lambda_k, 0) / lambda_k off it,",
                         "g = X_std' (plogis(eta) - y) / n on the standardized scale; kkt_intercept_path = |mean(plogis(eta) - y)|.",
                         "glmnet's accuracy (not a property of the problem): use it to set test tolerances"),
  preval_lambda_index_1based = pidx, preval_lambda_index_0based = pidx - 1L,
  preval_lambda = lam[pidx],
  measures = list(
    deviance = "per row: -2 [y log p + (1-y) log(1-p)], p = plogis(eta_loo) clipped to [1e-5, 1-1e-5] (cv.lognet prob_min)",
    class = "per row: 1 if y == 1 and p <= 0.5, or y == 0 and p > 0.5; else 0",
    cvm_loo = "plain mean over rows (grouped = FALSE, unit weights)",
    cvsd_loo = "sqrt(mean((cvraw_i - cvm)^2) / (n - 1))",
    cvm_kfold = "weighted mean of fold means, weights = fold sizes (= plain row mean)",
    cvsd_kfold = "sqrt(weighted.mean((foldmean_k - cvm)^2, foldsize_k) / (K - 1))",
    lambda_min = "largest lambda with cvm == min(cvm)",
    lambda_1se = "largest lambda with cvm <= cvm[min] + cvsd[min]",
    fit_preval_link = "list over preval_lambda_index of n-vectors: out-of-fold linear predictor eta (link scale) per row"),
  loo = list(
    foldid = "1:n (row k of the used rows is fold k)", nfolds = n, grouped = FALSE,
    deviance = summ(loo_dev, cl("1:n", "FALSE", "deviance")),
    class = summ(loo_cls, cl("1:n", "FALSE", "class"), preval = FALSE),
    fit_preval_identical_deviance_vs_class_runs = same_preval),
  kfold = list(
    K = K, foldid_rule = sprintf("foldid = (0-based row index among the used rows) %%%% %d + 1", K),
    foldid = foldid_k, grouped = TRUE,
    deviance = summ(k_dev, cl(sprintf("(0:(n-1)) %%%% %d + 1", K), "TRUE", "deviance")),
    class = summ(k_cls, cl(sprintf("(0:(n-1)) %%%% %d + 1", K), "TRUE", "class"), preval = FALSE),
    fit_preval_identical_deviance_vs_class_runs = same_preval_k),
  loo_fixed_standardization = list(
    note = paste("X pre-scaled with the full-data column means and sds (1/n divisor), standardize = FALSE,",
                 "same lambda: every LOO refit uses the SAME penalty weights as the full fit (the objective",
                 "that ALO/AFIF approximates); the full-data path equals the standardize = TRUE one"),
    x_center = unname(mu_x), x_scale = unname(sd_x),
    max_abs_coef_diff_vs_standardize_true_path = max(abs(Bfix_orig - B)),
    deviance = summ(loo_fix, cl("1:n", "FALSE", "deviance", std = "FALSE", x = "Xfix"))),
  kfold_default_lambda = list(
    note = paste("for information: cv.glmnet with lambda = NULL (its default). Each fold then computes its own",
                 "lambda sequence and predictions at the master lambdas are linearly interpolated; NOT an exact",
                 "refit at the master lambdas"),
    deviance = summ(k_def, cl(sprintf("(0:(n-1)) %%%% %d + 1", K), "TRUE", "deviance", lamarg = "NULL"), preval = FALSE)),
  warnings = unique(warns),
  glmnet_control = glmnet.control(),
  command = paste(c("Rscript scripts/reference/reference_cv_glmnet.R", args), collapse = " "),
  timing_s = tm
)
out <- out[!vapply(out, is.null, TRUE)]
dir.create(dirname(opt$out), showWarnings = FALSE, recursive = TRUE)
write_json(out, opt$out, auto_unbox = TRUE, digits = NA)
cat(toJSON(list(out = opt$out, n = n, p = ncol(X), n_lambda = L,
                loo_dev_lambda_min = loo_dev$lambda.min, loo_dev_lambda_1se = loo_dev$lambda.1se,
                loo_dev_min_cvm = min(loo_dev$cvm), loo_class_min_cvm = min(loo_cls$cvm),
                kfold_dev_lambda_min = k_dev$lambda.min, kfold_dev_min_cvm = min(k_dev$cvm),
                loo_fixed_min_cvm = min(loo_fix$cvm), fixed_path_diff = max(abs(Bfix_orig - B)),
                max_kkt_rel = if (is.null(kkt)) NA else max(kkt[, 1]),
                warnings = unique(warns), timing_s = tm), auto_unbox = TRUE), "\n")
