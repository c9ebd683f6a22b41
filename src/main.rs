//! The `fulcrum` command line: a thin shell over the library (argument parsing, progress bars,
//! output formatting, exit codes).

use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use fulcrum::design::{ModelInput, NaPolicy};
use fulcrum::progress::Progress;
use fulcrum::{Error, IngestOptions};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Parser)]
#[command(
    name = "fulcrum",
    version,
    about = "Which training rows move your regression model, and by how much."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Read the inputs into the chunk cache and describe the design: rows, blocks, levels, names.
    Inspect(InspectArgs),
    /// Fit a GLM by IRLS (optionally ridge-penalised), or a lasso / elastic-net / group-lasso path, and write DIR/summary.json.
    Fit(FitArgs),
    /// Fit, then score every row: leverage, residuals, Cook's distance, C-bar, DFFITS (DIR/diagnostics.parquet), DFBETAS of the top rows (DIR/dfbetas.parquet).
    Diagnose(DiagnoseArgs),
    /// Fit, then answer an influence question (AFIF): approximate leave-one-out, ALO cross-validation along the path, attribution to a test set, unlearning, fairness.
    Influence(InfluenceArgs),
    /// Fit, rank rows (cooks_d, cbar, self_influence, fairness), remove the top ones, predict the new fit (AFIF) and, with --verify, refit and compare.
    Prune(PruneArgs),
    /// The main job: fit (and the path when penalised), diagnose (leverage auto), approximate leave-one-out (and ALO-CV along the path), and DIR/report.html.
    Run(RunArgs),
    /// Rebuild DIR/report.html from the outputs in DIR.
    Report(ReportArgs),
}

impl Command {
    /// The --log-format of the command (text for `report`).
    fn log_format(&self) -> LogFormat {
        match self {
            Command::Inspect(a) => a.model.log_format,
            Command::Fit(a) => a.model.log_format,
            Command::Diagnose(a) => a.fit.model.log_format,
            Command::Influence(a) => a.fit.model.log_format,
            Command::Prune(a) => a.fit.model.log_format,
            Command::Run(a) => a.diag.fit.model.log_format,
            Command::Report(_) => LogFormat::Text,
        }
    }
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    diag: DiagnoseArgs,
    #[command(flatten)]
    afif: AfifArgs,
    #[command(flatten)]
    loo: LooArgs,
}

#[derive(Args)]
struct ReportArgs {
    /// An output directory of `fulcrum run` (or diagnose / influence).
    #[arg(value_name = "DIR")]
    dir: PathBuf,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum TaskArg {
    /// Approximate leave-one-out η and loss for every row, and self-influence (DIR/influence.parquet).
    Loo,
    /// Approximate LOO-CV error at every λ of the path (summary.json).
    Cv,
    /// Influence of every training row on the test loss (DIR/influence.parquet), per-test top rows (DIR/attribution.parquet).
    Attribute,
    /// Predicted coefficients after removing rows.
    Unlearn,
    /// Influence of every row on the demographic-parity gap (DIR/influence.parquet).
    Fairness,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum SolverArg {
    /// Cholesky of M over the active set.
    Cholesky,
    /// Conjugate gradients, one pass per product (M never formed).
    Cg,
    /// LiSSA (Koh & Liang's stochastic recursion).
    Lissa,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum CurvatureArg {
    /// Expected Fisher information (IRLS's weights; AFIF).
    Fisher,
    /// Observed Hessian.
    Hessian,
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq)]
enum RemovalArg {
    /// A removed row takes its share of the penalty with it: refit at the same λ (glmnet, cv.glmnet).
    SameLambda,
    /// The total penalty N·λ·R stays fixed (the ALO papers' sum form).
    Fixed,
}

/// Flags shared by `influence` and `prune`: curvature, solver, test and reference sets.
#[derive(Args)]
struct AfifArgs {
    /// Curvature M: fisher (IRLS's information; default) or hessian (observed; differs for non-canonical links).
    #[arg(long, value_enum, default_value = "fisher")]
    curvature: CurvatureArg,
    /// Solver for M⁻¹v.
    #[arg(long, value_enum, default_value = "cholesky")]
    solver: SolverArg,
    /// CG: stop at this relative residual.
    #[arg(long, default_value_t = 1e-10)]
    cg_tol: f64,
    /// CG: maximum iterations (one pass each).
    #[arg(long, default_value_t = 500)]
    cg_max_iter: usize,
    /// LiSSA: recursion depth per repeat.
    #[arg(long, default_value_t = 10_000)]
    lissa_depth: usize,
    /// LiSSA: scale s (default: 1.05·max row curvature, which guarantees convergence).
    #[arg(long)]
    lissa_scale: Option<f64>,
    /// LiSSA: damping d (effective damping on M is n·s·d).
    #[arg(long, default_value_t = 0.0)]
    lissa_damping: f64,
    /// LiSSA: repeats averaged.
    #[arg(long, default_value_t = 1)]
    lissa_repeats: usize,
    /// LiSSA: rows per stochastic Hessian-vector product.
    #[arg(long, default_value_t = 64)]
    lissa_batch: usize,
    /// Seed of LiSSA's row sampling.
    #[arg(long, default_value_t = 0)]
    lissa_seed: u64,
    /// What removing a row does to a penalised fit's penalty.
    #[arg(long, value_enum, default_value = "same-lambda")]
    removal_penalty: RemovalArg,
    /// Test set (Parquet, same columns as the training data) for attribution and test metrics.
    #[arg(long, value_name = "TEST")]
    test: Vec<String>,
    /// Take the test rows where COL=VALUE: from the --test files if given, else from the training inputs.
    #[arg(long, value_name = "COL=VALUE")]
    test_filter: Vec<String>,
    /// Group column for fairness: two distinct values, or COL=VALUE (VALUE versus the rest). Group A is the first value (or VALUE).
    #[arg(long, value_name = "COL[=VALUE]")]
    group_col: Option<String>,
}

#[derive(Args)]
struct InfluenceArgs {
    #[command(flatten)]
    fit: FitArgs,
    /// The question to answer.
    #[arg(long, value_enum)]
    task: TaskArg,
    #[command(flatten)]
    afif: AfifArgs,
    /// attribute: keep the K most influential training rows per test row (DIR/attribution.parquet; needs --solver cholesky).
    #[arg(long, value_name = "K")]
    per_test_top: Option<usize>,
    /// unlearn: Parquet file with a `row` column of the row ids to remove.
    #[arg(long, value_name = "ROWS.parquet")]
    remove: Option<PathBuf>,
    /// unlearn: remove the K rows with the largest --by score instead.
    #[arg(long, value_name = "K")]
    remove_top: Option<usize>,
    /// unlearn: the score that ranks rows for --remove-top (cooks_d, self_influence or cbar).
    #[arg(long, default_value = "cooks_d")]
    by: String,
    /// unlearn: Fisher-scoring (proximal when penalised) steps of the reweighted objective.
    #[arg(long, default_value_t = 1)]
    steps: usize,
    #[command(flatten)]
    loo: LooArgs,
}

/// Leave-one-out options (`influence --task loo`, `run`).
#[derive(Args)]
struct LooArgs {
    /// loo: at most K rows with leverage above --loo-refine-above get their leave-one-out values
    /// from --loo-refine-steps Fisher-scoring steps on the data without them (K × steps refit
    /// iterations) instead of the one-step approximation, which is weakest there. 0: none.
    #[arg(long, value_name = "K", default_value_t = 0)]
    loo_refine: usize,
    /// loo: the leverage a row must exceed to be refined by --loo-refine.
    #[arg(long, value_name = "H", default_value_t = 0.5)]
    loo_refine_above: f64,
    /// loo: steps per row refined by --loo-refine.
    #[arg(long, value_name = "N", default_value_t = 2)]
    loo_refine_steps: usize,
}

impl LooArgs {
    fn check(&self) -> Result<(), Error> {
        if self.loo_refine_steps == 0 {
            return Err(Error::Usage("--loo-refine-steps must be at least 1".into()));
        }
        if !(0.0..1.0).contains(&self.loo_refine_above) {
            return Err(Error::Usage(format!(
                "--loo-refine-above must be in [0, 1), got {}",
                self.loo_refine_above
            )));
        }
        Ok(())
    }

    /// Write `DIR/influence.parquet` of `--task loo` with the rows refined as asked, and put
    /// `loo`, plus `loo_refinement` (or, without it, a `loo_note` when rows have h > 0.5),
    /// into the summary's influence `block`.
    fn write(
        &self,
        afif: &mut fulcrum::influence::Afif,
        f: &Fitted,
        block: &mut serde_json::Value,
    ) -> Result<(), Error> {
        let path = f.path.as_ref().map(|(p, s)| (p, *s));
        let opts = fulcrum::report::influence::LooRefineOptions {
            rows: self.loo_refine,
            above: self.loo_refine_above,
            steps: self.loo_refine_steps,
        };
        let (s, r) = fulcrum::report::influence::write_loo_refined(afif, &f.out.join("influence.parquet"), path, opts)?;
        if let Some(r) = r {
            block["loo_refinement"] = serde_json::to_value(&r).map_err(|e| Error::Usage(e.to_string()))?;
        } else if s.n_hat_above_half > 0 {
            block["loo_note"] = format!(
                "{} rows have leverage above 0.5, where the one-step leave-one-out values are least accurate (off by 30-40 % on sms_spam); --loo-refine K gives the K largest two Fisher-scoring steps on the data without them (docs/influence.md)",
                s.n_hat_above_half
            )
            .into();
        }
        block["loo"] = serde_json::to_value(&s).map_err(|e| Error::Usage(e.to_string()))?;
        Ok(())
    }
}

#[derive(Args)]
struct PruneArgs {
    #[command(flatten)]
    fit: FitArgs,
    #[command(flatten)]
    afif: AfifArgs,
    /// Score that ranks rows: cooks_d, cbar, self_influence or fairness (fairness needs --group-col as well).
    #[arg(long)]
    by: String,
    /// Remove the K highest-scoring rows.
    #[arg(long, value_name = "K")]
    top: Option<usize>,
    /// Remove every row scoring at least T.
    #[arg(long, value_name = "T")]
    threshold: Option<f64>,
    /// Also refit without the rows and report predicted versus actual.
    #[arg(long)]
    verify: bool,
    /// Fisher-scoring (proximal when penalised) steps of the prediction.
    #[arg(long, default_value_t = 1)]
    steps: usize,
}

#[derive(Args)]
struct DiagnoseArgs {
    #[command(flatten)]
    fit: FitArgs,
    /// Use the observed information for the hat matrix (statsmodels' default) instead of the expected (R's).
    #[arg(long)]
    observed: bool,
    /// Number of rows, by largest Cook's distance, that get DFBETAS.
    #[arg(long, default_value_t = 100)]
    top_k: usize,
    /// Leverage: exact (F⁻¹ over the active set), sketch (influence sketch), randomized (relative-error), auto (exact up to 20,000 active columns, else randomized); comma-separate several (exact plus an approximation adds an accuracy block).
    #[arg(long, value_name = "exact|sketch|randomized|auto,...")]
    leverage: Option<String>,
    /// Target relative error of --leverage randomized (sets its sketch sizes).
    #[arg(long, default_value_t = 0.3)]
    epsilon: f64,
    /// Projected dimension k of the influence sketch.
    #[arg(long, default_value_t = 256)]
    sketch_dim: usize,
    /// Random projection of the sketch: gaussian, sparse-sign, countsketch.
    #[arg(long, default_value = "gaussian")]
    projection: String,
    /// Seed of the sketch's projection (same seed, same output, whatever the thread count).
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

impl DiagnoseArgs {
    /// The leverages asked for.
    /// The leverages asked for; `default` when --leverage is not given (exact for `diagnose`,
    /// auto for `run`).
    fn leverage(
        &self,
        fit: &fulcrum::glm::Fit,
        default: &str,
    ) -> Result<fulcrum::report::diagnostics::Leverage, Error> {
        let mut lev = fulcrum::report::diagnostics::Leverage::default();
        let randomized = fulcrum::influence::RandomizedOptions {
            epsilon: self.epsilon,
            seed: self.seed,
        };
        let spec = self.leverage.as_deref().unwrap_or(default);
        for part in spec.split(',').map(str::trim) {
            match part {
                "exact" => lev.exact = true,
                "randomized" => lev.randomized = Some(randomized),
                "auto" => {
                    if fit.kept.len() <= fulcrum::report::diagnostics::AUTO_EXACT_MAX {
                        lev.exact = true;
                    } else {
                        lev.randomized = Some(randomized);
                    }
                }
                "sketch" => {
                    let projection = fulcrum::influence::Projection::parse(&self.projection).ok_or_else(|| {
                        Error::Usage(format!(
                            "unknown --projection '{}' (gaussian, sparse-sign, countsketch)",
                            self.projection
                        ))
                    })?;
                    lev.sketch = Some(fulcrum::influence::SketchOptions {
                        projection,
                        k: self.sketch_dim,
                        seed: self.seed,
                    });
                }
                other => {
                    return Err(Error::Usage(format!(
                        "unknown --leverage '{other}' (exact, sketch, randomized, auto; comma-separated)"
                    )))
                }
            }
        }
        Ok(lev)
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum PenaltyArg {
    /// Maximum likelihood.
    None,
    /// Ridge with glmnet's scaling: (1/n)·Σ wᵢ·devᵢ/2 + λ/2·‖β‖², intercept unpenalised.
    Ridge,
    /// Lasso path, glmnet's objective (α = 1).
    Lasso,
    /// Elastic-net path, glmnet's objective (--alpha, default 0.5).
    Enet,
    /// Group-lasso path: each categorical term and each group(a, b, ...) term is a group, weight √size.
    Group,
}

/// Flags of the GLM itself.
#[derive(Args)]
struct GlmArgs {
    /// Response distribution: gaussian (default, like R), binomial, poisson, gamma.
    #[arg(long, default_value = "gaussian")]
    family: String,
    /// Link: logit, probit, cloglog (binomial); log (poisson, gaussian, gamma); identity (gaussian); inverse (gamma). Default: the canonical link.
    #[arg(long)]
    link: Option<String>,
    /// Penalty.
    #[arg(long, value_enum, default_value = "none")]
    penalty: PenaltyArg,
    /// Penalty strength λ: required with ridge; with lasso/enet/group, fit this single λ instead of a path.
    #[arg(long)]
    lambda: Option<f64>,
    /// Elastic-net mixing α (glmnet's alpha): 1 = lasso, 0 = ridge. Default 1 (lasso, group), 0.5 (enet).
    #[arg(long)]
    alpha: Option<f64>,
    /// Penalise the standardised coefficients (glmnet's default); coefficients are reported on the original scale.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set, value_name = "true|false")]
    standardize: bool,
    /// Penalty factor of a column or coefficient (glmnet's penalty.factor; 0 = unpenalised); repeat for several.
    #[arg(long = "penalty-factor", value_name = "COL=F")]
    penalty_factor: Vec<String>,
    /// Number of λ values on the path.
    #[arg(long, default_value_t = 100)]
    nlambda: usize,
    /// Smallest λ as a fraction of λ_max (default 1e-4 if n > p, else 1e-2, like glmnet).
    #[arg(long)]
    lambda_min_ratio: Option<f64>,
    /// Path point (0-based) whose coefficients go to summary.json's `coefficients` and to the diagnostics (default: the last).
    #[arg(long)]
    select_lambda: Option<usize>,
    /// Path convergence threshold (glmnet's thresh).
    #[arg(long, default_value_t = 1e-10)]
    thresh: f64,
    /// Maximum number of IRLS iterations.
    #[arg(long, default_value_t = 100)]
    max_iter: usize,
    /// Convergence tolerance on the deviance change (default 1e-8 for canonical links, 1e-12 otherwise).
    #[arg(long)]
    tol: Option<f64>,
    /// Pass over every row in every IRLS iteration: no tail iterations on the rows of the few
    /// level columns still moving (separated levels), the other rows held at their quadratic model.
    #[arg(long)]
    full_passes: bool,
}

impl GlmArgs {
    fn options(&self) -> Result<fulcrum::glm::FitOptions, Error> {
        use fulcrum::glm::{Family, FitOptions, Link, Penalty};
        let family = Family::parse(&self.family).ok_or_else(|| {
            Error::Usage(format!(
                "unknown --family '{}' (binomial, poisson, gaussian, gamma)",
                self.family
            ))
        })?;
        let link = match &self.link {
            None => None,
            Some(l) => Some(Link::parse(l).ok_or_else(|| {
                Error::Usage(format!(
                    "unknown --link '{l}' (logit, probit, cloglog, log, identity, inverse)"
                ))
            })?),
        };
        let mut o = FitOptions::new(family, link)?;
        o.max_iter = self.max_iter.max(1);
        o.tail = !self.full_passes;
        if let Some(t) = self.tol {
            if !(t > 0.0 && t.is_finite()) {
                return Err(Error::Usage(format!("--tol must be positive, got {t}")));
            }
            o.tol = t;
        }
        let path_only = self.alpha.is_some() || !self.penalty_factor.is_empty() || self.select_lambda.is_some();
        o.penalty = match (self.penalty, self.lambda) {
            (PenaltyArg::None, None) => Penalty::None,
            (PenaltyArg::None, Some(_)) => {
                return Err(Error::Usage(
                    "--lambda needs --penalty ridge, lasso, enet or group".into(),
                ))
            }
            (PenaltyArg::Ridge, Some(lambda)) => Penalty::Ridge { lambda },
            (PenaltyArg::Ridge, None) => return Err(Error::Usage("--penalty ridge needs --lambda".into())),
            // Paths are set up by `path_options` once the design is known.
            (PenaltyArg::Lasso | PenaltyArg::Enet | PenaltyArg::Group, _) => Penalty::None,
        };
        if path_only && !self.is_path() {
            return Err(Error::Usage(
                "--alpha, --penalty-factor and --select-lambda need --penalty lasso, enet or group".into(),
            ));
        }
        Ok(o)
    }

    /// Whether the penalty is fitted as a path.
    fn is_path(&self) -> bool {
        matches!(self.penalty, PenaltyArg::Lasso | PenaltyArg::Enet | PenaltyArg::Group)
    }

    /// Options of the penalised path, given the design (penalty factors and groups by name).
    fn path_options(
        &self,
        fo: &fulcrum::glm::FitOptions,
        design: &fulcrum::design::Design,
    ) -> Result<fulcrum::glm::PathOptions, Error> {
        use fulcrum::glm::{PathOptions, PathPenalty};
        let kind = match self.penalty {
            PenaltyArg::Group => PathPenalty::Group,
            _ => PathPenalty::ElasticNet,
        };
        let mut o = PathOptions::new(fo.family, fo.link, kind, design.n_params());
        o.alpha = match (self.penalty, self.alpha) {
            (PenaltyArg::Lasso, Some(a)) if a != 1.0 => {
                return Err(Error::Usage(format!(
                    "--penalty lasso has alpha = 1 (got --alpha {a}); use --penalty enet"
                )))
            }
            (_, Some(a)) => a,
            (PenaltyArg::Enet, None) => 0.5,
            _ => 1.0,
        };
        o.standardize = self.standardize;
        o.nlambda = self.nlambda;
        o.lambda_min_ratio = self.lambda_min_ratio;
        o.lambda = self.lambda;
        if !(self.thresh > 0.0 && self.thresh.is_finite()) {
            return Err(Error::Usage(format!("--thresh must be positive, got {}", self.thresh)));
        }
        o.thresh = self.thresh;
        o.max_iter = self.max_iter.max(1);
        for pf in &self.penalty_factor {
            let (col, f) = pf
                .split_once('=')
                .ok_or_else(|| Error::Usage(format!("--penalty-factor expects COL=F, got '{pf}'")))?;
            let f: f64 = f
                .trim()
                .parse()
                .map_err(|_| Error::Usage(format!("--penalty-factor {pf}: '{f}' is not a number")))?;
            if !(f >= 0.0 && f.is_finite()) {
                return Err(Error::Usage(format!(
                    "--penalty-factor {pf}: the factor must be a non-negative number"
                )));
            }
            let cols = design.columns_of(col.trim()).ok_or_else(|| {
                let names = design.names_for_suggestions();
                let names: Vec<&str> = names.iter().map(|n| n.as_ref()).collect();
                Error::Usage(format!(
                    "--penalty-factor: {}",
                    fulcrum::design::spec::unknown_column_msg(col.trim(), &names)
                ))
            })?;
            for j in cols {
                o.penalty_factor[j] = f;
            }
        }
        if kind == PathPenalty::Group {
            o.groups = design.lasso_groups().map_err(Error::Usage)?;
        }
        Ok(o)
    }
}

#[derive(Args)]
struct FitArgs {
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    glm: GlmArgs,
    /// Output directory (created if missing); summary.json is written there atomically.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
}

#[derive(Clone, Copy, ValueEnum)]
enum NaArg {
    /// Drop rows with a missing value in any used column, and count them.
    Drop,
    /// Stop with an error naming file, column and row.
    Error,
}

/// Flags shared by every command that builds a model frame.
#[derive(Args)]
struct ModelArgs {
    /// Parquet inputs: files, directories, or glob patterns (all with the same schema).
    #[arg(required = true, value_name = "INPUT")]
    inputs: Vec<String>,
    /// Model formula, R style: 'y ~ a + log(b) + C(k) + sparse(tokens)'.
    #[arg(long, short = 'f')]
    formula: String,
    /// Keep rows whose COL equals VALUE (string comparison; repeat for AND across columns, OR within one).
    #[arg(long = "filter", value_name = "COL=VALUE")]
    filters: Vec<String>,
    /// Rows with a null or NaN in a used column.
    #[arg(long, value_enum, default_value = "drop")]
    na: NaArg,
    /// Column of prior weights.
    #[arg(long)]
    weights: Option<String>,
    /// Where the chunk cache lives (default: .fulcrum-cache next to the first input).
    #[arg(long, value_name = "DIR")]
    cache_dir: Option<PathBuf>,
    /// Rows per chunk.
    #[arg(long, default_value_t = fulcrum::ingest::DEFAULT_CHUNK_ROWS, hide = true)]
    chunk_rows: usize,
    /// No progress bars or messages on stderr.
    #[arg(long, short = 'q')]
    quiet: bool,
    /// Progress and errors on stderr as text (bars only on a terminal) or as JSON lines for batch jobs.
    #[arg(long, value_enum, default_value = "text")]
    log_format: LogFormat,
}

#[derive(Args)]
struct InspectArgs {
    #[command(flatten)]
    model: ModelArgs,
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

/// What `fit` (and the fit of `diagnose`) produced.
struct Fitted {
    ds: fulcrum::Dataset,
    fit: fulcrum::glm::Fit,
    opts: fulcrum::glm::FitOptions,
    out: PathBuf,
    fit_s: f64,
    /// Passes over the chunk cache the fit made (the whole path when penalised).
    fit_passes: usize,
    /// The penalised path, with the index of the selected point.
    path: Option<(fulcrum::glm::Path, usize)>,
}

impl Fitted {
    /// summary.json (with the path when penalised), written atomically, and path.parquet.
    fn write_with(&self, extra_timing: &[(&str, f64)], key: &str, block: serde_json::Value) -> Result<(), Error> {
        self.write_blocks(extra_timing, vec![(key, block)])
    }

    fn write(&self, extra_timing: &[(&str, f64)], diagnostics: Option<serde_json::Value>) -> Result<(), Error> {
        self.write_blocks(
            extra_timing,
            diagnostics.map(|d| ("diagnostics", d)).into_iter().collect(),
        )
    }

    fn write_blocks(&self, extra_timing: &[(&str, f64)], blocks: Vec<(&str, serde_json::Value)>) -> Result<(), Error> {
        let mut timing = vec![("fit_total", self.fit_s)];
        timing.extend_from_slice(extra_timing);
        let mut summary = fulcrum::report::fit_summary(&self.ds, &self.fit, &self.opts, &timing);
        summary["passes_fit"] = self.fit_passes.into();
        summary["passes_total"] = self.ds.cache.passes().into();
        if let Some((path, sel)) = &self.path {
            summary["path"] = fulcrum::report::path_json(&self.ds, path);
            summary["selected_lambda_index"] = (*sel).into();
            summary["lambda_max"] = path.lambda_max.into();
            summary["standardize"] = path.options.standardize.into();
            summary["thresh"] = path.options.thresh.into();
            summary["passes"] = path.passes.into();
            fulcrum::report::parquet::write_path(&self.out.join("path.parquet"), self.ds.design(), path)?;
        }
        for (k, d) in blocks {
            summary[k] = d;
        }
        write_summary(&self.out, &summary)
    }
}

impl FitArgs {
    /// Prepare the output directory, load the data, fit (the whole path when penalised).
    fn run(&self) -> Result<Fitted, Error> {
        let opts = self.glm.options()?;
        let out = fulcrum::report::prepare_out_dir(&self.out)?;
        let ds = self.model.load()?;
        let t = std::time::Instant::now();
        let passes0 = ds.cache.passes();
        if self.glm.is_path() {
            let po = self.glm.path_options(&opts, ds.design())?;
            let path = fulcrum::glm::fit_path(&ds, &po)?;
            let sel = self.glm.select_lambda.unwrap_or(path.points.len() - 1);
            let fit = fulcrum::glm::fit_at(&ds, &path, sel)?;
            let fit_passes = ds.cache.passes() - passes0;
            return Ok(Fitted {
                ds,
                fit,
                opts,
                out,
                fit_s: t.elapsed().as_secs_f64(),
                fit_passes,
                path: Some((path, sel)),
            });
        }
        let fit = fulcrum::glm::fit(&ds, &opts)?;
        let fit_passes = ds.cache.passes() - passes0;
        Ok(Fitted {
            ds,
            fit,
            opts,
            out,
            fit_s: t.elapsed().as_secs_f64(),
            fit_passes,
            path: None,
        })
    }
}

fn write_summary(out: &std::path::Path, summary: &serde_json::Value) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(summary).map_err(|e| Error::Usage(e.to_string()))?;
    fulcrum::report::write_atomic(&out.join("summary.json"), text.as_bytes())
}

#[derive(Clone, Copy, ValueEnum, PartialEq, Eq, Default)]
enum LogFormat {
    /// Progress bars on stderr when it is a terminal; messages as text.
    #[default]
    Text,
    /// One JSON object per line on stderr: stage start/progress/finish with rows, rows/s and seconds, and errors.
    Json,
}

/// Progress on stderr: an indicatif bar (only when stderr is a terminal), JSON lines
/// (`--log-format json`), or nothing (`--quiet`).
enum Bar {
    Terminal(ProgressBar),
    Json(std::sync::Mutex<JsonStage>),
    Silent,
}

/// The JSON logger's current stage.
struct JsonStage {
    what: String,
    total: u64,
    done: u64,
    start: std::time::Instant,
    last: std::time::Instant,
}

impl Bar {
    fn with_format(quiet: bool, format: LogFormat) -> Bar {
        if quiet {
            return Bar::Silent;
        }
        match format {
            LogFormat::Json => Bar::Json(std::sync::Mutex::new(JsonStage {
                what: String::new(),
                total: 0,
                done: 0,
                start: std::time::Instant::now(),
                last: std::time::Instant::now(),
            })),
            LogFormat::Text if std::io::stderr().is_terminal() => {
                Bar::Terminal(ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr()))
            }
            LogFormat::Text => Bar::Silent,
        }
    }
}

fn json_line(v: serde_json::Value) {
    eprintln!("{v}");
}

impl Progress for Bar {
    fn start(&self, what: &str, total: u64) {
        match self {
            Bar::Terminal(b) => {
                b.reset();
                b.set_length(total);
                b.set_position(0);
                b.set_style(
                    ProgressStyle::with_template(
                        "{msg:>8} [{bar:30}] {human_pos}/{human_len} rows  {per_sec}  eta {eta}",
                    )
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("=> "),
                );
                b.set_message(what.to_string());
            }
            Bar::Json(m) => {
                let mut st = m.lock().unwrap_or_else(|e| e.into_inner());
                *st = JsonStage {
                    what: what.to_string(),
                    total,
                    done: 0,
                    start: std::time::Instant::now(),
                    last: std::time::Instant::now(),
                };
                json_line(serde_json::json!({"event": "start", "stage": what, "rows": total}));
            }
            Bar::Silent => {}
        }
    }
    fn advance(&self, rows: u64) {
        match self {
            Bar::Terminal(b) => b.inc(rows),
            Bar::Json(m) => {
                let mut st = m.lock().unwrap_or_else(|e| e.into_inner());
                st.done += rows;
                if st.last.elapsed().as_secs_f64() >= 1.0 {
                    st.last = std::time::Instant::now();
                    let secs = st.start.elapsed().as_secs_f64();
                    let rate = st.done as f64 / secs.max(1e-9);
                    let eta = st.total.saturating_sub(st.done) as f64 / rate.max(1e-9);
                    json_line(
                        serde_json::json!({"event": "progress", "stage": st.what, "rows_done": st.done, "rows": st.total, "rows_per_s": rate, "eta_s": eta}),
                    );
                }
            }
            Bar::Silent => {}
        }
    }
    fn finish(&self) {
        match self {
            Bar::Terminal(b) => b.finish_and_clear(),
            Bar::Json(m) => {
                let st = m.lock().unwrap_or_else(|e| e.into_inner());
                let secs = st.start.elapsed().as_secs_f64();
                json_line(
                    serde_json::json!({"event": "finish", "stage": st.what, "rows": st.done, "seconds": secs, "rows_per_s": st.done as f64 / secs.max(1e-9)}),
                );
            }
            Bar::Silent => {}
        }
    }
}

impl ModelArgs {
    fn model(&self) -> Result<ModelInput, Error> {
        let filters = self
            .filters
            .iter()
            .map(|f| match f.split_once('=') {
                Some((c, v)) if !c.is_empty() => Ok((c.to_string(), v.to_string())),
                _ => Err(Error::Usage(format!("--filter expects COL=VALUE, got '{f}'"))),
            })
            .collect::<Result<_, _>>()?;
        Ok(ModelInput {
            formula: self.formula.clone(),
            filters,
            na: match self.na {
                NaArg::Drop => NaPolicy::Drop,
                NaArg::Error => NaPolicy::Error,
            },
            weights: self.weights.clone(),
        })
    }

    fn load(&self) -> Result<fulcrum::Dataset, Error> {
        let opts = IngestOptions {
            cache_dir: self.cache_dir.clone(),
            chunk_rows: self.chunk_rows.max(1),
            ..Default::default()
        };
        let bar = std::sync::Arc::new(Bar::with_format(self.quiet, self.log_format));
        let mut ds = fulcrum::load(&self.inputs, &self.model()?, &opts, bar.as_ref())?;
        ds.cache.set_progress(bar);
        if let fulcrum::ingest::CacheStatus::Rebuilt(reason) = &ds.status {
            if !self.quiet {
                eprintln!(
                    "fulcrum: cache at {} was stale ({reason}); rebuilt it",
                    ds.cache.dir().display()
                );
            }
        }
        Ok(ds)
    }
}

impl AfifArgs {
    fn solver(&self) -> fulcrum::influence::Solver {
        use fulcrum::influence::{LissaOptions, Solver};
        match self.solver {
            SolverArg::Cholesky => Solver::Cholesky,
            SolverArg::Cg => Solver::Cg {
                tol: self.cg_tol,
                max_iter: self.cg_max_iter,
            },
            SolverArg::Lissa => Solver::Lissa(LissaOptions {
                depth: self.lissa_depth,
                scale: self.lissa_scale,
                damping: self.lissa_damping,
                repeats: self.lissa_repeats,
                batch: self.lissa_batch,
                seed: self.lissa_seed,
            }),
        }
    }

    fn setup<'a>(&self, f: &'a Fitted) -> Result<fulcrum::influence::Afif<'a>, Error> {
        use fulcrum::influence::{Afif, Curvature, Removal};
        let curvature = match self.curvature {
            CurvatureArg::Fisher => Curvature::Fisher,
            CurvatureArg::Hessian => Curvature::Hessian,
        };
        let removal = match self.removal_penalty {
            RemovalArg::SameLambda => Removal::SameLambda,
            RemovalArg::Fixed => Removal::FixedPenalty,
        };
        Afif::new(&f.ds, &f.fit, curvature, self.solver(), removal)
    }

    /// The test set mapped into the training design, if one is asked for.
    fn test_rows(
        &self,
        model: &ModelArgs,
        train: &fulcrum::Dataset,
    ) -> Result<Option<Vec<fulcrum::influence::TestRow>>, Error> {
        if self.test.is_empty() && self.test_filter.is_empty() {
            return Ok(None);
        }
        let mut m = model.model()?;
        m.filters = self
            .test_filter
            .iter()
            .map(|f| match f.split_once('=') {
                Some((c, v)) if !c.is_empty() => Ok((c.to_string(), v.to_string())),
                _ => Err(Error::Usage(format!("--test-filter expects COL=VALUE, got '{f}'"))),
            })
            .collect::<Result<_, _>>()?;
        let inputs = if self.test.is_empty() {
            model.inputs.clone()
        } else {
            self.test.clone()
        };
        let opts = IngestOptions {
            cache_dir: model.cache_dir.clone(),
            chunk_rows: model.chunk_rows.max(1),
            ..Default::default()
        };
        let test = fulcrum::load(&inputs, &m, &opts, &Bar::with_format(model.quiet, model.log_format))?;
        Ok(Some(fulcrum::influence::map_test_rows(train, &test)?))
    }

    /// Group of every row id (0 = A, 1 = B) from --group-col, and a description.
    fn groups(&self, ds: &fulcrum::Dataset) -> Result<Option<(Vec<u8>, serde_json::Value)>, Error> {
        let Some(spec) = &self.group_col else { return Ok(None) };
        let (col, value) = match spec.split_once('=') {
            Some((c, v)) => (c, Some(v)),
            None => (spec.as_str(), None),
        };
        let (levels, codes) = ds.column_codes(col)?;
        let (a, b_desc, map): (String, String, Vec<u8>) = match value {
            Some(v) => {
                let k = levels
                    .iter()
                    .position(|l| l == v)
                    .ok_or_else(|| Error::Usage(format!("--group-col: column '{col}' has no value '{v}'")))?
                    as u32;
                let map = codes
                    .iter()
                    .map(|&c| {
                        if c == u32::MAX {
                            2
                        } else if c == k {
                            0
                        } else {
                            1
                        }
                    })
                    .collect();
                (v.to_string(), format!("not {v}"), map)
            }
            None => {
                if levels.len() != 2 {
                    return Err(Error::Usage(format!(
                        "--group-col {col}: the column has {} distinct values; name one as {col}=VALUE to compare it with the rest",
                        levels.len()
                    )));
                }
                let map = codes.iter().map(|&c| if c == u32::MAX { 2 } else { c as u8 }).collect();
                (levels[0].clone(), levels[1].clone(), map)
            }
        };
        Ok(Some((
            map,
            serde_json::json!({"column": col, "group_a": a, "group_b": b_desc}),
        )))
    }
}

/// Row ids from a Parquet file's `row` column.
fn read_row_ids(path: &std::path::Path) -> Result<Vec<u64>, Error> {
    let set = fulcrum::source::InputSet::open(&[path.to_path_buf()])?;
    if set.schema.index_of("row").is_err() {
        return Err(Error::File {
            path: path.to_path_buf(),
            msg: "needs a column named 'row' (0-based input row ids, as in diagnostics.parquet)".into(),
        });
    }
    let mut ids = Vec::new();
    for task in set.row_group_tasks() {
        set.read_row_group(task, &["row".to_string()], 65_536, |b, r0| {
            for (k, v) in fulcrum::design::encode::filter_strings(b.column(0).as_ref())
                .into_iter()
                .enumerate()
            {
                let id = v.as_deref().and_then(|s| s.parse::<u64>().ok()).ok_or_else(|| {
                    fulcrum::Error::data(
                        path.to_path_buf(),
                        "row",
                        Some(r0 + k as u64),
                        "not a non-negative integer row id",
                    )
                })?;
                ids.push(id);
            }
            Ok(())
        })?;
    }
    Ok(ids)
}

fn run_influence(a: &InfluenceArgs) -> Result<(), Error> {
    use fulcrum::report::influence as ri;
    a.loo.check()?;
    let f = a.fit.run()?;
    let t = std::time::Instant::now();
    let mut afif = a.afif.setup(&f)?;
    let out = &f.out;
    let mut block = serde_json::json!({
        "curvature": afif.inv.curvature(),
        "solver": a.afif.solver().name(),
        "removal_penalty": afif.removal,
        "conventions": "loss = a*deviance/2 per row; every change is after removal minus before; see docs/influence.md",
    });
    if f.fit.penalty != fulcrum::glm::Penalty::None {
        block["note"] = "penalised fit: influence on the active set, with the ridge part (and the group-lasso curvature) of the penalty in M".into();
    }
    if !afif.inv.aliased.is_empty() {
        let design = f.ds.design();
        block["curvature_aliased"] = serde_json::json!(afif
            .inv
            .aliased
            .iter()
            .map(|&k| design.coef_name(f.fit.kept[k]))
            .collect::<Vec<_>>());
    }
    match a.task {
        TaskArg::Loo => {
            a.loo.write(&mut afif, &f, &mut block)?;
        }
        TaskArg::Cv => {
            let Some((path, sel)) = &f.path else {
                let s = afif.loo(|_| Ok(()))?;
                block["alo_cv"] = serde_json::to_value(vec![s]).map_err(|e| Error::Usage(e.to_string()))?;
                return finish_influence(&f, block, t.elapsed().as_secs_f64(), a.fit.model.quiet);
            };
            let pts = fulcrum::influence::alo_path(&f.ds, path, afif.inv.curvature(), afif.removal)?;
            put_cv_choice(&mut block, &pts);
            block["selected_lambda_index"] = (*sel).into();
            block["alo_cv"] = serde_json::to_value(&pts).map_err(|e| Error::Usage(e.to_string()))?;
        }
        TaskArg::Attribute => {
            let tests = a.afif.test_rows(&a.fit.model, &f.ds)?.ok_or_else(|| {
                Error::Usage("--task attribute needs --test TEST.parquet or --test-filter COL=VALUE".into())
            })?;
            let (g, loss) = afif.test_gradient(&tests);
            let u = afif.solve(&g)?;
            let (helpful, harmful) =
                ri::write_effects(&afif, &u, "influence_on_test", None, &out.join("influence.parquet"))?;
            block["test"] = serde_json::json!({"rows": tests.len(), "loss": loss, "metrics": ri::test_metrics(&f.fit, &f.fit.beta, &tests)});
            block["most_helpful"] = serde_json::json!(helpful
                .iter()
                .map(|(r, v)| serde_json::json!({"row": r, "influence_on_test": v}))
                .collect::<Vec<_>>());
            block["most_harmful"] = serde_json::json!(harmful
                .iter()
                .map(|(r, v)| serde_json::json!({"row": r, "influence_on_test": v}))
                .collect::<Vec<_>>());
            if let Some(k) = a.per_test_top {
                let top = afif.per_test_top(&tests, k)?;
                ri::write_attribution(&tests, &top, &out.join("attribution.parquet"))?;
                block["per_test_top"] = k.into();
            }
        }
        TaskArg::Fairness => {
            let (groups, desc) = a
                .afif
                .groups(&f.ds)?
                .ok_or_else(|| Error::Usage("--task fairness needs --group-col COL".into()))?;
            let tests = a.afif.test_rows(&a.fit.model, &f.ds)?;
            let group = |r: u64| groups.get(r as usize).copied().filter(|&g| g < 2);
            let par = afif.parity_gradient(tests.as_deref(), group)?;
            let u = afif.solve(&par.gradient)?;
            let sign = par.gap.signum();
            let red = move |v: f64| -sign * v;
            let (up, down) = ri::write_effects(
                &afif,
                &u,
                "dp_change",
                Some(("gap_reduction", &red)),
                &out.join("influence.parquet"),
            )?;
            let top = if sign > 0.0 { down } else { up };
            block["fairness"] = serde_json::json!({
                "groups": desc,
                "reference": if tests.is_some() { "test set" } else { "training rows" },
                "demographic_parity_gap": par.gap,
                "weight_a": par.n_a, "weight_b": par.n_b,
                "top_gap_reducing_rows": top.iter().map(|(r, v)| serde_json::json!({"row": r, "dp_change": v})).collect::<Vec<_>>(),
            });
        }
        TaskArg::Unlearn => {
            let rows: Vec<u64> = match (&a.remove, a.remove_top) {
                (Some(p), None) => read_row_ids(p)?,
                (None, Some(k)) => {
                    let by = fulcrum::report::influence::RankBy::parse(&a.by)?;
                    if by == fulcrum::report::influence::RankBy::Fairness {
                        return Err(Error::Usage("unlearn --remove-top ranks by cooks_d, self_influence or cbar; use `fulcrum prune --by fairness`".into()));
                    }
                    ri::select_rows(&mut afif, by, Some(k), None, None)?
                        .into_iter()
                        .map(|x| x.0)
                        .collect()
                }
                _ => {
                    return Err(Error::Usage(
                        "--task unlearn needs exactly one of --remove ROWS.parquet and --remove-top K".into(),
                    ))
                }
            };
            let tests = a.afif.test_rows(&a.fit.model, &f.ds)?;
            let path = f.path.as_ref().map(|(p, s)| (p, *s));
            let (u, _) = ri::unlearn_block(&mut afif, path, &rows, a.steps, false, tests.as_deref())?;
            block["unlearn"] = u;
        }
    }
    block["solves"] = serde_json::to_value(&afif.solves).map_err(|e| Error::Usage(e.to_string()))?;
    block["passes_solver"] = afif.inv.passes.into();
    finish_influence(&f, block, t.elapsed().as_secs_f64(), a.fit.model.quiet)
}

fn finish_influence(f: &Fitted, block: serde_json::Value, secs: f64, quiet: bool) -> Result<(), Error> {
    f.write_with(&[("influence", secs)], "influence", block.clone())?;
    if !quiet {
        print!("{}", fulcrum::report::fit_text(&f.ds, &f.fit));
        println!(
            "\ninfluence:\n{}",
            serde_json::to_string_pretty(&summary_head(&block)).unwrap_or_default()
        );
    }
    Ok(())
}

/// The influence block without its long lists (for the terminal).
fn summary_head(block: &serde_json::Value) -> serde_json::Value {
    let mut b = block.clone();
    if let Some(o) = b.as_object_mut() {
        for k in ["alo_cv", "solves"] {
            if let Some(v) = o.get(k) {
                if v.as_array().is_some_and(|a| a.len() > 3) {
                    o.insert(
                        k.to_string(),
                        format!("{} entries (summary.json)", v.as_array().map_or(0, |a| a.len())).into(),
                    );
                }
            }
        }
        if let Some(u) = o.get_mut("unlearn").and_then(|u| u.as_object_mut()) {
            u.remove("coefficients");
            u.remove("removed_rows");
        }
    }
    b
}

fn run_prune(a: &PruneArgs) -> Result<(), Error> {
    use fulcrum::report::influence as ri;
    let f = a.fit.run()?;
    let t = std::time::Instant::now();
    let mut afif = a.afif.setup(&f)?;
    let by = ri::RankBy::parse(&a.by)?;
    let tests = a.afif.test_rows(&a.fit.model, &f.ds)?;
    let groups = a.afif.groups(&f.ds)?;
    let group_fn = |r: u64| {
        groups
            .as_ref()
            .and_then(|g| g.0.get(r as usize).copied())
            .filter(|&g| g < 2)
    };
    let parity = groups
        .as_ref()
        .map(|_| (tests.as_deref(), &group_fn as &(dyn Fn(u64) -> Option<u8> + Sync)));
    let chosen = ri::select_rows(&mut afif, by, a.top, a.threshold, parity)?;
    if chosen.is_empty() {
        return Err(Error::Usage(format!(
            "no row scores at least the --threshold by {}",
            by.name()
        )));
    }
    let rows: Vec<u64> = chosen.iter().map(|x| x.0).collect();
    let path = f.path.as_ref().map(|(p, s)| (p, *s));
    let (mut block, _) = ri::unlearn_block(&mut afif, path, &rows, a.steps, a.verify, tests.as_deref())?;
    block["by"] = by.name().into();
    block["scores"] = serde_json::json!(chosen
        .iter()
        .map(|(r, v)| serde_json::json!({"row": r, "score": v}))
        .collect::<Vec<_>>());
    block["removed_rows"] = serde_json::json!(rows);
    if let Some((_, d)) = &groups {
        block["groups"] = d.clone();
        let par_before = afif.parity_gradient(tests.as_deref(), group_fn)?;
        block["demographic_parity_gap_before"] = par_before.gap.into();
    }
    let kept = ri::write_kept_rows(&f.ds, &rows, &f.out.join("kept_rows.parquet"))?;
    block["kept_rows"] = kept.into();
    let text = serde_json::to_string_pretty(&block).map_err(|e| Error::Usage(e.to_string()))?;
    fulcrum::report::write_atomic(&f.out.join("prune.json"), text.as_bytes())?;
    f.write_with(
        &[("prune", t.elapsed().as_secs_f64())],
        "prune",
        summary_head(&serde_json::json!({"unlearn": block.clone()}))["unlearn"].clone(),
    )?;
    if !a.fit.model.quiet {
        print!("{}", fulcrum::report::fit_text(&f.ds, &f.fit));
        let mut short = block.clone();
        if let Some(o) = short.as_object_mut() {
            o.remove("coefficients");
            o.remove("removed_rows");
            o.remove("scores");
        }
        println!("\nprune:\n{}", serde_json::to_string_pretty(&short).unwrap_or_default());
    }
    Ok(())
}

/// λ_min / λ_1se of an ALO-CV curve (cv.glmnet's rules) into a summary block.
fn put_cv_choice(block: &mut serde_json::Value, pts: &[fulcrum::influence::AloPoint]) {
    if let Some((b, se1)) = fulcrum::influence::cv_choice(pts) {
        block["lambda_min_index"] = b.into();
        block["lambda_min"] = pts[b].lambda.into();
        block["lambda_1se_index"] = se1.into();
        block["lambda_1se"] = pts[se1].lambda.into();
    }
}

fn run_all(a: &RunArgs) -> Result<(), Error> {
    // Checked before anything is written: `run`'s leave-one-out needs every leverage.
    if a.afif.solver != SolverArg::Cholesky {
        return Err(Error::Usage(
            "run computes every row's leave-one-out, which needs --solver cholesky (the default); use `fulcrum influence` for cg or lissa".into(),
        ));
    }
    if !a.afif.test.is_empty() || !a.afif.test_filter.is_empty() || a.afif.group_col.is_some() {
        return Err(Error::Usage(
            "run does not use --test, --test-filter or --group-col; use `fulcrum influence --task attribute|fairness` or `fulcrum prune`".into(),
        ));
    }
    a.loo.check()?;
    let f = a.diag.fit.run()?;
    let quiet = a.diag.fit.model.quiet;
    let (ds, fit, out) = (&f.ds, &f.fit, &f.out);
    let t = std::time::Instant::now();
    let dopts = fulcrum::influence::DiagOptions {
        observed: a.diag.observed,
        top_k: a.diag.top_k,
    };
    let leverage = a.diag.leverage(fit, "auto")?;
    let (diag, diag_out_s) = fulcrum::report::diagnostics::write_diagnostics(ds, fit, &dopts, &leverage, out)?;
    let diag_s = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    let mut infl = serde_json::json!({});
    if fit.kept.len() <= fulcrum::report::diagnostics::AUTO_EXACT_MAX {
        let mut afif = a.afif.setup(&f)?;
        infl = serde_json::json!({
            "curvature": afif.inv.curvature(),
            "removal_penalty": afif.removal,
        });
        a.loo.write(&mut afif, &f, &mut infl)?;
        if let Some((path, _)) = &f.path {
            let pts = fulcrum::influence::alo_path(ds, path, afif.inv.curvature(), afif.removal)?;
            put_cv_choice(&mut infl, &pts);
            infl["alo_cv"] = serde_json::to_value(&pts).map_err(|e| Error::Usage(e.to_string()))?;
        }
    } else {
        infl["note"] = format!(
            "leave-one-out skipped: {} active columns (more than {}), M is not factored; use `fulcrum influence --solver cg` for attribution",
            fit.kept.len(),
            fulcrum::report::diagnostics::AUTO_EXACT_MAX
        )
        .into();
    }
    let infl_s = t.elapsed().as_secs_f64();
    let t = std::time::Instant::now();
    f.write_blocks(
        &[
            ("diagnostics", diag_s),
            ("diagnostics_output", diag_out_s),
            ("influence", infl_s),
        ],
        vec![("diagnostics", diag.clone()), ("influence", infl)],
    )?;
    let html = fulcrum::report::html::write_report(out)?;
    if !quiet {
        print!("{}", fulcrum::report::fit_text(ds, fit));
        print!("{}", fulcrum::report::diagnostics_text(&diag));
        eprintln!(
            "fulcrum: report written to {} ({:.2} s)",
            html.display(),
            t.elapsed().as_secs_f64()
        );
    }
    Ok(())
}

fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Inspect(a) => {
            let ds = a.model.load()?;
            let report = fulcrum::inspect::inspect(&ds);
            if a.json {
                // Streamed: the coefficient names are formatted as they are written.
                let mut out = std::io::BufWriter::new(std::io::stdout().lock());
                let stdout = |e: std::io::Error| Error::io("<stdout>", e);
                serde_json::to_writer_pretty(&mut out, &report).map_err(|e| stdout(e.into()))?;
                writeln!(out).and_then(|()| out.flush()).map_err(stdout)?;
            } else {
                print!("{}", report.to_text());
            }
            Ok(())
        }
        Command::Fit(a) => {
            let f = a.run()?;
            f.write(&[], None)?;
            if !a.model.quiet {
                print!("{}", fulcrum::report::fit_text(&f.ds, &f.fit));
            }
            exiting(f);
            Ok(())
        }
        Command::Influence(a) => run_influence(&a),
        Command::Run(a) => run_all(&a),
        Command::Report(a) => {
            let p = fulcrum::report::html::write_report(&a.dir)?;
            println!("{}", p.display());
            Ok(())
        }
        Command::Prune(a) => run_prune(&a),
        Command::Diagnose(a) => {
            let f = a.fit.run()?;
            let (ds, fit, out) = (&f.ds, &f.fit, &f.out);
            let t = std::time::Instant::now();
            let dopts = fulcrum::influence::DiagOptions {
                observed: a.observed,
                top_k: a.top_k,
            };
            let leverage = a.leverage(fit, "exact")?;
            let (block, out_s) = fulcrum::report::diagnostics::write_diagnostics(ds, fit, &dopts, &leverage, out)?;
            let diag_s = t.elapsed().as_secs_f64();
            f.write(
                &[("diagnostics", diag_s), ("diagnostics_output", out_s)],
                Some(block.clone()),
            )?;
            if !a.fit.model.quiet {
                print!("{}", fulcrum::report::fit_text(ds, fit));
                print!("{}", fulcrum::report::diagnostics_text(&block));
            }
            exiting(f);
            Ok(())
        }
    }
}

/// Leave a command's data (the mapped cache, the fit) to the process's exit, which returns all
/// of its memory to the kernel at once, instead of unmapping and freeing it piece by piece: on a
/// process with several threads each `munmap` interrupts the other CPUs to flush their TLBs
/// (docs/PERFORMANCE.md gives what temporary timers measured).
fn exiting<T>(state: T) {
    std::mem::forget(state);
}

fn main() -> ExitCode {
    // A write past the file-size limit (`ulimit -f`) should fail with EFBIG, which the library
    // reports and cleans up after, instead of killing the process with SIGXFSZ halfway through
    // writing a cache or an output file.
    #[cfg(unix)]
    // SAFETY: setting a signal's disposition to SIG_IGN installs no handler code; it is done
    // before any other thread exists.
    unsafe {
        libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
    }
    // Panics inside the Parquet decoder are corrupt input, reported as an error by the library;
    // any other panic is a fulcrum bug and is reported as one.
    std::panic::set_hook(Box::new(|info| {
        if !fulcrum::source::in_decoder() {
            eprintln!("fulcrum: internal error (please report): {info}");
        }
    }));
    // This thread is the pool's worker 0: one thread fewer to start than rayon's default pool
    // beside it, and the command need not be handed to a worker and its end back (docs/
    // PERFORMANCE.md, "The session after"). Building can only fail if the pool exists, and
    // nothing has used it yet.
    let _ = rayon::ThreadPoolBuilder::new().use_current_thread().build_global();
    // faer reads the CPU's cache sizes (~0.85 ms of sysfs reads) before its first large enough
    // product; the other worker pays that now, while this thread parses the arguments and the
    // command opens its input, instead of the fit's first factorization.
    rayon::spawn(fulcrum::linalg::chol::warm_up);
    let cli = Cli::parse();
    let format = cli.command.log_format();
    // The command runs in the pool, so that each pass's fork-join keeps the calling thread busy
    // with a share of the chunks: from outside the pool, every pass would hand all its chunks
    // to the workers and sleep until they finish (one more thread to wake and put to sleep per
    // pass).
    match rayon::scope(move |_| run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            if format == LogFormat::Json {
                json_line(serde_json::json!({"event": "error", "exit_code": e.exit_code(), "message": e.to_string()}));
            } else {
                eprintln!("fulcrum: error: {e}");
            }
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
