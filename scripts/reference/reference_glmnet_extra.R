#!/usr/bin/env Rscript
# Extra glmnet path references (elastic net, standardize = FALSE, penalty factors, Poisson,
# Gaussian, observation weights).  Same design rules and the same JSON keys/shape as
# reference_glmnet.R (which stays untouched: make_fixtures.sh copies the shared original over it):
#   intercept (unpenalized, glmnet's own) + numeric columns + one-hot categoricals, first level in
#   C-locale sorted order dropped (treatment contrasts), built with Matrix::sparse.model.matrix;
#   rows with a missing value in any used column (label, features, weights column) are dropped.
# Extra keys written here: label, nlambda, lambda_min_ratio (the value passed to glmnet, which is
# glmnet's own default rule unless --lambda_min_ratio is given), lambda_min_ratio_rule,
# penalty_factor (+ penalty_factor_effective = glmnet's internal rescaling to sum p),
# weights / weights_column / weights_divisor / weights_sum, glmnet_control, fit_call.
#
# R on this machine has no Parquet reader (no r-cran-arrow in Debian bookworm), so the
# Parquet file is converted to a temporary CSV with python3+pyarrow first.
#
# Usage:
#   Rscript reference_glmnet_extra.R --data fixtures/adult.parquet --label income_gt50k \
#     --family binomial --numeric age,hours_per_week --categorical sex,race \
#     [--filter split=train] [--nlambda 100] [--thresh 1e-10] [--standardize TRUE] [--alpha 1] \
#     [--lambda_min_ratio 1e-4] [--penalty_factor population=0,householdsize=2] \
#     [--weights hours_per_week/40] --out fixtures/reference/x.json
#   --penalty_factor: name=value pairs, names are design column names (coef_names without the
#                     intercept); unnamed columns get 1.
#   --weights:        "column" or "column/divisor"; the column is used for the weights only
#                     (do not also list it as a feature unless you mean to).
suppressPackageStartupMessages({
  library(Matrix); library(glmnet); library(jsonlite); library(data.table)
})

args <- commandArgs(trailingOnly = TRUE)
opt <- list(numeric = "", categorical = "", filter = character(0), nlambda = "100",
            thresh = "1e-7", standardize = "TRUE", family = "binomial", alpha = "1",
            lambda_min_ratio = "", penalty_factor = "", weights = "")
i <- 1
while (i <= length(args)) {
  k <- sub("^--", "", args[i]); v <- args[i + 1]
  if (k == "filter") opt$filter <- c(opt$filter, v) else opt[[k]] <- v
  i <- i + 2
}
splitc <- function(s) if (is.null(s) || s == "") character(0) else strsplit(s, ",")[[1]]
numeric_cols <- splitc(opt$numeric); cat_cols <- splitc(opt$categorical)

w_col <- NULL; w_div <- 1
if (opt$weights != "") {
  m <- regmatches(opt$weights, regexec("^([A-Za-z0-9_.]+)(/([0-9.eE+-]+))?$", opt$weights))[[1]]
  if (length(m) == 0) stop("--weights must be 'column' or 'column/divisor'")
  w_col <- m[2]; if (m[4] != "") w_div <- as.numeric(m[4])
}
used <- unique(c(opt$label, numeric_cols, cat_cols, w_col))
filt_cols <- vapply(strsplit(opt$filter, "="), `[`, "", 1)

t0 <- proc.time()[["elapsed"]]
csv <- tempfile(fileext = ".csv")
py <- sprintf(paste0("import pyarrow.parquet as pq, pyarrow.csv as pc, sys; ",
                     "t = pq.read_table(sys.argv[1], columns=sys.argv[3].split(',')); ",
                     "pc.write_csv(t, sys.argv[2])"))
cols_needed <- unique(c(used, filt_cols))
# R exports LD_LIBRARY_PATH=/usr/lib/x86_64-linux-gnu, which makes a pyenv python pick up Debian's
# libpython3.11.so (and its dist-packages site config) -> drop it for the child process.
python <- Sys.getenv("PYTHON", "python3")
st <- system2("env", c("-u", "LD_LIBRARY_PATH", python, "-c", shQuote(py), shQuote(opt$data), shQuote(csv), shQuote(paste(cols_needed, collapse = ","))))
if (st != 0) stop("parquet->csv conversion failed")
df <- fread(csv, na.strings = c("", "NA"), colClasses = setNames(rep("character", length(cat_cols)), cat_cols))
unlink(csv)
df[, row__ := .I - 1L]
for (f in opt$filter) {
  kv <- strsplit(f, "=")[[1]]
  df <- df[as.character(get(kv[1])) == kv[2]]
}
df <- df[complete.cases(df[, ..used])]
levels_out <- list()
for (cc in cat_cols) {
  lv <- sort(unique(df[[cc]]), method = "radix")  # C-locale order == Python sorted()
  levels_out[[cc]] <- lv
  set(df, j = cc, value = factor(df[[cc]], levels = lv))
}
rhs <- paste(c(if (length(numeric_cols)) sprintf("`%s`", numeric_cols), if (length(cat_cols)) sprintf("`%s`", cat_cols)), collapse = " + ")
X <- sparse.model.matrix(as.formula(paste("~", rhs)), data = df)  # treatment contrasts, intercept col 1
y <- as.numeric(df[[opt$label]])
t_design <- proc.time()[["elapsed"]] - t0
Xg <- X[, -1, drop = FALSE]  # glmnet adds its own unpenalized intercept
nobs <- nrow(Xg); nvars <- ncol(Xg)

# penalty factors, one per design column
pf <- rep(1, nvars); names(pf) <- colnames(Xg)
for (kv in splitc(opt$penalty_factor)) {
  p2 <- strsplit(kv, "=")[[1]]
  if (!(p2[1] %in% names(pf))) stop(sprintf("penalty_factor: unknown column %s", p2[1]))
  pf[[p2[1]]] <- as.numeric(p2[2])
}
# observation weights
w <- if (is.null(w_col)) rep(1, nobs) else as.numeric(df[[w_col]]) / w_div

# glmnet's own default for lambda.min.ratio (glmnet 4.1): ifelse(nobs < nvars, 0.01, 1e-4)
lmr_rule <- "glmnet default: ifelse(nobs < nvars, 0.01, 1e-04)"
lmr <- if (opt$lambda_min_ratio == "") ifelse(nobs < nvars, 0.01, 1e-04) else as.numeric(opt$lambda_min_ratio)
if (opt$lambda_min_ratio != "") lmr_rule <- "given on the command line"

t0 <- proc.time()[["elapsed"]]
fit <- glmnet(Xg, y, family = opt$family, weights = w, alpha = as.numeric(opt$alpha),
              nlambda = as.integer(opt$nlambda), lambda.min.ratio = lmr,
              penalty.factor = unname(pf),
              thresh = as.numeric(opt$thresh), standardize = as.logical(opt$standardize))
t_fit <- proc.time()[["elapsed"]] - t0
B <- as.matrix(coef(fit))  # (p+1) x nlambda, row 1 = intercept

objective <- switch(opt$family,
  binomial = "glmnet binomial: -(1/sum(w)) * sum_i w_i * [y_i*eta_i - log(1+exp(eta_i))] + lambda * sum_j vp_j * [(1-alpha)/2 * b_j^2 + alpha * |b_j|]",
  poisson  = "glmnet poisson: -(1/sum(w)) * sum_i w_i * [y_i*eta_i - exp(eta_i)] + lambda * sum_j vp_j * [(1-alpha)/2 * b_j^2 + alpha * |b_j|]",
  gaussian = "glmnet gaussian: (1/(2*sum(w))) * sum_i w_i * (y_i - eta_i)^2 + lambda * sum_j vp_j * [(1-alpha)/2 * b_j^2 + alpha * |b_j|] (y standardized internally by its weighted sd; see fixtures/README.md for the lambda scale)",
  "see glmnet documentation")
objective <- paste0(objective, "; b_j on the standardized-x scale (x_j / weighted sd with 1/sum(w) divisor) if standardize=TRUE, raw x otherwise; vp = penalty_factor * p / sum(penalty_factor); coefs reported on the original scale; eta_i = b0 + x_i . b")

out <- list(
  tool = "glmnet", tool_version = as.character(packageVersion("glmnet")), R = R.version.string,
  data = opt$data, label = opt$label, family = opt$family, alpha = as.numeric(opt$alpha),
  standardize = as.logical(opt$standardize), thresh = as.numeric(opt$thresh),
  nlambda = as.integer(opt$nlambda), lambda_min_ratio = lmr, lambda_min_ratio_rule = lmr_rule,
  filters = opt$filter, n_obs = nobs, n_features = nvars, nnz_design = length(Xg@x),
  row_index = df$row__,
  design = list(numeric = numeric_cols, categorical = cat_cols, categorical_levels = levels_out,
                reference_level = "first in C-locale sorted order (dropped)"),
  coef_names = c("(Intercept)", colnames(Xg)),
  penalty_factor = if (opt$penalty_factor != "") unname(pf) else NULL,
  penalty_factor_effective = if (opt$penalty_factor != "") unname(pf * nvars / sum(pf)) else NULL,
  weights = if (is.null(w_col)) NULL else opt$weights,
  weights_column = w_col, weights_divisor = if (is.null(w_col)) NULL else w_div,
  weights_sum = if (is.null(w_col)) NULL else sum(w),
  lambda = fit$lambda, df = fit$df, dev_ratio = fit$dev.ratio, nulldev = fit$nulldev,
  npasses = fit$npasses, jerr = fit$jerr,
  coef_path = unname(lapply(seq_len(ncol(B)), function(j) unname(B[, j]))),
  objective = objective,
  glmnet_control = glmnet.control(),
  fit_call = paste(deparse(fit$call), collapse = " "),
  command = paste(c("Rscript scripts/reference/reference_glmnet_extra.R", args), collapse = " "),
  timing_s = list(design = t_design, fit_path = t_fit)
)
out <- out[!vapply(out, is.null, TRUE)]

dir.create(dirname(opt$out), showWarnings = FALSE, recursive = TRUE)
write_json(out, opt$out, auto_unbox = TRUE, digits = NA)
cat(toJSON(list(out = opt$out, n = nobs, p = nvars, nlambda = length(fit$lambda),
                lambda_max = max(fit$lambda), lambda_min = min(fit$lambda),
                final_df = tail(fit$df, 1), final_dev_ratio = tail(fit$dev.ratio, 1),
                design_s = t_design, fit_s = t_fit), auto_unbox = TRUE), "\n")
