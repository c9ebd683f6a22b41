//! The `fulcrum` command line: a thin shell over the library (argument parsing, progress bars,
//! output formatting, exit codes).

use std::io::IsTerminal;
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
    /// Fit a GLM by IRLS (optionally ridge-penalised) and write DIR/summary.json.
    Fit(FitArgs),
    /// Fit, then score every row: leverage, residuals, Cook's distance, C-bar, DFFITS (DIR/diagnostics.parquet), DFBETAS of the top rows (DIR/dfbetas.parquet).
    Diagnose(DiagnoseArgs),
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
    #[arg(long, default_value = "exact", value_name = "exact|sketch|randomized|auto,...")]
    leverage: String,
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
    fn leverage(&self, fit: &fulcrum::glm::Fit) -> Result<fulcrum::report::diagnostics::Leverage, Error> {
        let mut lev = fulcrum::report::diagnostics::Leverage::default();
        let randomized = fulcrum::influence::RandomizedOptions {
            epsilon: self.epsilon,
            seed: self.seed,
        };
        for part in self.leverage.split(',').map(str::trim) {
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
                let names: Vec<&str> = design.coef_names.iter().map(String::as_str).collect();
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
    /// The penalised path, with the index of the selected point.
    path: Option<(fulcrum::glm::Path, usize)>,
}

impl Fitted {
    /// summary.json (with the path when penalised), written atomically, and path.parquet.
    fn write(&self, extra_timing: &[(&str, f64)], diagnostics: Option<serde_json::Value>) -> Result<(), Error> {
        let mut timing = vec![("fit_total", self.fit_s)];
        timing.extend_from_slice(extra_timing);
        let mut summary = fulcrum::report::fit_summary(&self.ds, &self.fit, &self.opts, &timing);
        if let Some((path, sel)) = &self.path {
            summary["path"] = fulcrum::report::path_json(&self.ds, path);
            summary["selected_lambda_index"] = (*sel).into();
            summary["lambda_max"] = path.lambda_max.into();
            summary["standardize"] = path.options.standardize.into();
            summary["thresh"] = path.options.thresh.into();
            summary["passes"] = path.passes.into();
            fulcrum::report::parquet::write_path(&self.out.join("path.parquet"), &self.ds.design().coef_names, path)?;
        }
        if let Some(d) = diagnostics {
            summary["diagnostics"] = d;
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
        if self.glm.is_path() {
            let po = self.glm.path_options(&opts, ds.design())?;
            let path = fulcrum::glm::fit_path(&ds, &po)?;
            let sel = self.glm.select_lambda.unwrap_or(path.points.len() - 1);
            let fit = fulcrum::glm::fit_at(&ds, &path, sel)?;
            return Ok(Fitted {
                ds,
                fit,
                opts,
                out,
                fit_s: t.elapsed().as_secs_f64(),
                path: Some((path, sel)),
            });
        }
        let fit = fulcrum::glm::fit(&ds, &opts)?;
        Ok(Fitted {
            ds,
            fit,
            opts,
            out,
            fit_s: t.elapsed().as_secs_f64(),
            path: None,
        })
    }
}

fn write_summary(out: &std::path::Path, summary: &serde_json::Value) -> Result<(), Error> {
    let text = serde_json::to_string_pretty(summary).map_err(|e| Error::Usage(e.to_string()))?;
    fulcrum::report::write_atomic(&out.join("summary.json"), text.as_bytes())
}

/// indicatif progress on stderr, drawn only when stderr is a terminal.
struct Bar(ProgressBar);

impl Bar {
    fn new(quiet: bool) -> Bar {
        let target = if !quiet && std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Bar(ProgressBar::with_draw_target(None, target))
    }
}

impl Progress for Bar {
    fn start(&self, what: &str, total: u64) {
        self.0.set_length(total);
        self.0.set_position(0);
        self.0.set_style(
            ProgressStyle::with_template("{msg:>8} [{bar:30}] {human_pos}/{human_len} rows  {per_sec}  eta {eta}")
                .unwrap_or_else(|_| ProgressStyle::default_bar())
                .progress_chars("=> "),
        );
        self.0.set_message(what.to_string());
    }
    fn advance(&self, rows: u64) {
        self.0.inc(rows);
    }
    fn finish(&self) {
        self.0.finish_and_clear();
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
        };
        let bar = Bar::new(self.quiet);
        let ds = fulcrum::load(&self.inputs, &self.model()?, &opts, &bar)?;
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

fn run(cli: Cli) -> Result<(), Error> {
    match cli.command {
        Command::Inspect(a) => {
            let ds = a.model.load()?;
            let report = fulcrum::inspect::inspect(&ds);
            if a.json {
                let s = serde_json::to_string_pretty(&report).map_err(|e| Error::Usage(e.to_string()))?;
                println!("{s}");
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
            Ok(())
        }
        Command::Diagnose(a) => {
            let f = a.fit.run()?;
            let (ds, fit, out) = (&f.ds, &f.fit, &f.out);
            let t = std::time::Instant::now();
            let dopts = fulcrum::influence::DiagOptions {
                observed: a.observed,
                top_k: a.top_k,
            };
            let leverage = a.leverage(fit)?;
            let block = fulcrum::report::diagnostics::write_diagnostics(ds, fit, &dopts, &leverage, out)?;
            let diag_s = t.elapsed().as_secs_f64();
            f.write(&[("diagnostics", diag_s)], Some(block.clone()))?;
            if !a.fit.model.quiet {
                print!("{}", fulcrum::report::fit_text(ds, fit));
                print!("{}", fulcrum::report::diagnostics_text(&block));
            }
            Ok(())
        }
    }
}

fn main() -> ExitCode {
    // Panics inside the Parquet decoder are corrupt input, reported as an error by the library;
    // any other panic is a fulcrum bug and is reported as one.
    std::panic::set_hook(Box::new(|info| {
        if !fulcrum::source::in_decoder() {
            eprintln!("fulcrum: internal error (please report): {info}");
        }
    }));
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("fulcrum: error: {e}");
            ExitCode::from(e.exit_code() as u8)
        }
    }
}
