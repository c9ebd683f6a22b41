//! IRLS for unpenalised and ridge GLMs, out of core: each iteration is one pass over the chunk
//! cache that evaluates the deviance at the current β and, in the same pass, accumulates the
//! Fisher information XᵀWX and XᵀWz for the next step; the p×p system is solved in RAM.
//!
//! Conventions follow R's `glm.fit`: starting values from `mustart`; convergence when both R's
//! relative criterion |D − D_old|/(|D| + 0.1) < tol and statsmodels' absolute one
//! |D − D_old| < tol hold (default tol 1e-8), so the fit is at least as converged as either
//! tool's (the absolute bound is floored at the floating-point resolution of D,
//! [`deviance_resolution`]); step halving when the deviance is not finite
//! or μ leaves the family's domain — and, unlike R, also when the deviance increases —
//! aliased columns reported as `None` (R's `NA`), dispersion 1 for binomial/Poisson and
//! Pearson χ²/(n − rank) otherwise. Standard errors use the Fisher information at the final β.
//! Once only a few level columns still move (separated levels), the iterations pass over their
//! rows alone (`glm::tail`).

use std::borrow::Cow;
use std::time::Instant;

use faer::Mat;
use libm::erfc;
use statrs::distribution::{ContinuousCDF, StudentsT};

use super::family::{
    bernoulli_deviance_and_scale, gaussian_deviance_and_scale, poisson_deviance_and_scale, valid_mu, AicSums, Family,
    Link, LOGIT_THRESH,
};
use super::tail::{Tail, TailProbe};
use crate::chunk::{Chunk, ChunkView};
use crate::design::Layout;
use crate::error::{Error, Result};
use crate::ingest::Dataset;
use crate::linalg::block::{sandwich_cross, BlockGram, BlockSplit, InfoFactor, InformationBlocks, SchurFactor};
use crate::linalg::chol::{GramFactor, ALIAS_TOL};
use crate::linalg::spare::Buf;
use crate::linalg::vmath::{exp, ln};
use crate::linalg::{
    sandwich_gathered, symmetrize_lower, x_beta, x_beta_gathered, xt_v, ColumnSubset, LaneSums, SandwichScratch, Sum,
};

/// Relative resolution of a deviance summed over `n` rows: ε·max(16, √n). The sum itself is
/// compensated (Neumaier), but every row's term carries the rounding of its own ηᵢ = xᵢᵀβ, and
/// those errors add up like a random walk (measured: warm-started refits of the 1M-row synthetic
/// logistic fit alternated by 7e-8 at D ≈ 9.6e5, ≈ 340·ε·D; √n·ε·D = 2.1e-7). Even at 10⁸ rows
/// this is 2e-12·|D|, far finer than R's relative criterion.
pub fn deviance_resolution(n: u64) -> f64 {
    f64::EPSILON * (n as f64).sqrt().max(16.0)
}

/// Penalty on the coefficients (the intercept is never penalised).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
#[serde(tag = "type", rename_all = "lowercase")]
pub enum Penalty {
    /// Maximum likelihood.
    None,
    /// glmnet-scaled ridge: minimise (1/Σw)·Σ wᵢ·devᵢ/2 + λ/2·‖β‖² (no standardisation).
    Ridge {
        /// λ.
        lambda: f64,
    },
    /// Lasso / elastic net on a path (see [`crate::glm::path`]), at the selected λ.
    ElasticNet {
        /// λ.
        lambda: f64,
        /// Mixing α.
        alpha: f64,
    },
    /// Group lasso on a path, at the selected λ.
    Group {
        /// λ.
        lambda: f64,
        /// Mixing α.
        alpha: f64,
    },
}

/// Options of an IRLS fit.
#[derive(Debug, Clone, Copy)]
pub struct FitOptions {
    /// Response distribution.
    pub family: Family,
    /// Link function.
    pub link: Link,
    /// Maximum number of IRLS iterations (default 100, statsmodels' default; R's is 25).
    pub max_iter: usize,
    /// Deviance tolerance (R's `epsilon`): 1e-8 for canonical links, where IRLS is Newton's
    /// method and converges quadratically; 1e-12 for non-canonical links, where Fisher scoring
    /// converges only linearly and 1e-8 leaves coefficients up to ~1e-5 (relative) from the
    /// optimum (measured on the insurance Gamma-log and star98 cloglog fits: 3–4 more passes).
    pub tol: f64,
    /// Penalty.
    pub penalty: Penalty,
    /// An unpenalised or ridge fit holds the widest categorical term's block of XᵀWX as a
    /// diagonal and solves through its Schur complement ([`crate::linalg::block`]) when the
    /// term has at least this many columns (default [`SCHUR_MIN_LEVELS`]).
    pub schur_min_levels: usize,
    /// Once every coefficient but a few level (or sparse) columns has settled, iterate on
    /// those columns' rows alone, the other rows held at their quadratic model (IRLS's tail,
    /// `glm::tail`; default true). False: every iteration passes over all rows.
    pub tail: bool,
}

/// Default of [`FitOptions::schur_min_levels`]: below about a thousand columns the dense
/// p×p factorization takes milliseconds, and column-order aliasing needs no second path.
pub const SCHUR_MIN_LEVELS: usize = 1024;

impl FitOptions {
    /// Options for `family` with `link` (its canonical link when `None`); checks the pair.
    pub fn new(family: Family, link: Option<Link>) -> Result<FitOptions> {
        let link = link.unwrap_or(family.canonical_link());
        if !family.links().contains(&link) {
            let ok: Vec<&str> = family.links().iter().map(|l| l.name()).collect();
            return Err(Error::Usage(format!(
                "link '{}' is not available for the {} family (use one of: {})",
                link.name(),
                family.name(),
                ok.join(", ")
            )));
        }
        Ok(FitOptions {
            family,
            link,
            max_iter: 100,
            tol: if link == family.canonical_link() { 1e-8 } else { 1e-12 },
            penalty: Penalty::None,
            schur_min_levels: SCHUR_MIN_LEVELS,
            tail: true,
        })
    }
}

/// The penalty gradient of a standardised elastic-net fit, split by how it scales with the
/// column's standard deviation s_j, per kept column (0 for the intercept and unpenalised
/// columns): `l1[k]` = N·λ·α·f_j·s_j·sign(β_j) (∝ s_j) and `ridge[k]` = N·λ(1 − α)·f_j·s_j²·β_j/σ
/// (∝ s_j²), with the column's prior-weighted `mean` and `scale` s_j (1/N divisor), N and
/// whether columns were centred (intercept).
#[derive(Debug, Clone, PartialEq)]
pub struct Standardization {
    /// ∝ s_j part of the penalty gradient.
    pub l1: Vec<f64>,
    /// ∝ s_j² part.
    pub ridge: Vec<f64>,
    /// Column means.
    pub mean: Vec<f64>,
    /// Column standard deviations s_j.
    pub scale: Vec<f64>,
    /// N = Σ prior weights.
    pub n: f64,
    /// Whether the variance is centred (the model has an intercept).
    pub centered: bool,
}

impl Standardization {
    /// s_j after removing prior weight `a` whose values in column j sum to `sx` (Σ a x) with
    /// squares `sxx` (Σ a x²), relative to s_j: ρ_j = s′_j/s_j.
    pub fn ratio(&self, k: usize, a: f64, sx: f64, sxx: f64) -> f64 {
        let (n, s) = (self.n, self.scale[k]);
        if s == 0.0 || self.l1[k] == 0.0 && self.ridge[k] == 0.0 {
            return 1.0;
        }
        let n2 = n - a;
        let s1 = self.mean[k] * n - sx;
        let s2 = if self.centered {
            n * (s * s + self.mean[k] * self.mean[k])
        } else {
            n * s * s
        } - sxx;
        let var = if self.centered {
            s2 / n2 - (s1 / n2) * (s1 / n2)
        } else {
            s2 / n2
        };
        var.max(0.0).sqrt() / s
    }

    /// The removal term c_k of the Newton step for removing weight `a` with column ratio ρ:
    /// P¹(ρ(N − a)/N − 1) + P²(ρ²(N − a)/N − 1) (docs/influence.md).
    pub fn removal_term(&self, k: usize, a: f64, rho: f64) -> f64 {
        let f = (self.n - a) / self.n;
        self.l1[k] * (rho * f - 1.0) + self.ridge[k] * (rho * rho * f - 1.0)
    }
}

/// One block of a penalty's curvature matrix: `matrix` (k×k, row-major) on the kept-column
/// positions `positions`.
#[derive(Debug, Clone, PartialEq)]
pub struct PenaltyBlock {
    /// Positions in `Fit::kept`.
    pub positions: Vec<usize>,
    /// The k×k block.
    pub matrix: Vec<f64>,
}

/// A fitted GLM.
#[derive(Debug, Clone)]
pub struct Fit {
    /// Family.
    pub family: Family,
    /// Link.
    pub link: Link,
    /// Penalty used.
    pub penalty: Penalty,
    /// Observations with positive prior weight (R's `n.ok`).
    pub n_obs: u64,
    /// Number of coefficients p (including aliased ones).
    pub n_params: usize,
    /// Rank of the design (non-aliased coefficients).
    pub rank: usize,
    /// Coefficients, 0 for aliased columns (see `aliased`).
    pub beta: Vec<f64>,
    /// Whether each coefficient is aliased.
    pub aliased: Vec<bool>,
    /// Standard errors (None when aliased or penalised).
    pub std_error: Vec<Option<f64>>,
    /// Residual deviance Σ wᵢ d(yᵢ, μᵢ).
    pub deviance: f64,
    /// Deviance of the intercept-only model (with the offset), or of η = offset without intercept.
    pub null_deviance: f64,
    /// Akaike information criterion, R's definition.
    pub aic: f64,
    /// Dispersion φ.
    pub dispersion: f64,
    /// Pearson χ² = Σ wᵢ (yᵢ − μᵢ)²/V(μᵢ).
    pub pearson_chi2: f64,
    /// n − rank.
    pub df_residual: f64,
    /// n − intercept.
    pub df_null: f64,
    /// IRLS iterations (WLS solves).
    pub iterations: usize,
    /// How many of the iterations were IRLS's tail ([`TailUse`]); None when none was.
    pub tail: Option<TailUse>,
    /// Whether the convergence criterion was met.
    pub converged: bool,
    /// Warnings, worded like R's where R has one.
    pub warnings: Vec<String>,
    /// Kept (non-aliased) columns, increasing.
    pub kept: Vec<usize>,
    /// Unscaled covariance over `kept` (times φ for the covariance): the inverse of the
    /// information XᵀWX of the final IRLS step, the one that produced β̂ (as R's and
    /// statsmodels' standard errors). Empty (0×0) for a fit solved in blocks
    /// (`information_blocks`), where it would be p×p dense (3.3 GB at p = 20,450); its diagonal
    /// is in `std_error`.
    pub cov_unscaled: Mat<f64>,
    /// The information XᵀWX (+ the penalty's curvature) evaluated at β̂ itself, over the
    /// `kept` columns (m×m column-major, m = kept.len()): the matrix diagnostics use
    /// (statsmodels' hat values are at the final μ). Empty for a fit solved in blocks, which
    /// keeps it in `information_blocks`; [`Fit::information_matrix`] gives it either way.
    pub information: Vec<f64>,
    /// `information` in blocks, when the fit solved a wide categorical term through the Schur
    /// complement of its diagonal block (over all columns, aliased levels included with zero
    /// weight): diagnostics factor it in O(m_A²·L) instead of O(p³). None otherwise.
    pub information_blocks: Option<InformationBlocks>,
    /// The penalty's curvature on the diagonal of `information`, per kept column (the ridge
    /// term; 0 for the intercept and for unpenalised fits).
    pub penalty_curvature: Vec<f64>,
    /// Off-diagonal-capable blocks of the penalty's curvature, also in `information`: the
    /// group lasso's Λ·α·w_g·S(I/‖β̃_g‖ − β̃_gβ̃_gᵀ/‖β̃_g‖³)S on each active group (positions in
    /// `kept`, block row-major). Empty for other penalties.
    pub penalty_blocks: Vec<PenaltyBlock>,
    /// For penalised fits on standardised columns: how the penalty depends on each kept
    /// column's standard deviation, so that influence can follow the re-standardisation a
    /// refit without some rows performs (glmnet's default). None otherwise.
    pub standardization: Option<Standardization>,
    /// Per kept column: whether its penalty has a kink at 0 (an L1 part: lasso, elastic net
    /// with α > 0), so that a coefficient can leave the active set. Empty when none has.
    pub penalty_kink: Vec<bool>,
    /// Penalised fits: the loss gradient Σᵢ ℓ′ᵢxᵢ at β̂ over the kept columns (ℓ = a·dev/2;
    /// at the optimum it balances the penalty's gradient), from the fit's last pass. Empty for
    /// unpenalised fits (where it is 0).
    pub score: Vec<f64>,
    /// Σ prior weights (the n of the ridge objective).
    pub sum_weights: f64,
    /// Wall-clock seconds per stage.
    pub timing: Vec<(String, f64)>,
}

/// The iterations a fit evaluated on the rows of a few still-moving level columns alone, every
/// other row held at its quadratic model (`glm::tail`: separated levels, typically).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TailUse {
    /// Iterations evaluated that way (of [`Fit::iterations`]).
    pub iterations: usize,
    /// Rows those iterations visited.
    pub rows: usize,
}

impl Fit {
    /// `information` as a dense m×m matrix over the kept columns: the stored one, or assembled
    /// from `information_blocks` (O(m²) memory: prefer the blocks where they serve).
    pub fn information_matrix(&self) -> Cow<'_, [f64]> {
        match &self.information_blocks {
            Some(b) if self.information.is_empty() && !self.kept.is_empty() => Cow::Owned(b.assemble(&self.kept)),
            _ => Cow::Borrowed(&self.information),
        }
    }

    /// The diagonal of `information`, by kept position.
    pub fn information_diagonal(&self) -> Vec<f64> {
        match &self.information_blocks {
            Some(b) if self.information.is_empty() => b.diagonal(&self.kept),
            _ => {
                let m = self.kept.len();
                (0..m).map(|k| self.information[k * m + k]).collect()
            }
        }
    }

    /// Whether test statistics are t (estimated dispersion) rather than z.
    pub fn uses_t(&self) -> bool {
        !self.family.fixed_dispersion()
    }

    /// z (or t) value of coefficient j.
    pub fn z_value(&self, j: usize) -> Option<f64> {
        self.std_error[j].map(|se| self.beta[j] / se)
    }

    /// Two-sided p-value of coefficient j: normal for fixed dispersion, Student t with
    /// `df_residual` degrees of freedom otherwise (R's `summary.glm`).
    pub fn p_value(&self, j: usize) -> Option<f64> {
        let z = self.z_value(j)?;
        if self.uses_t() {
            let t = StudentsT::new(0.0, 1.0, self.df_residual.max(1.0)).ok()?;
            Some(2.0 * t.sf(z.abs()))
        } else {
            Some(erfc(z.abs() / std::f64::consts::SQRT_2))
        }
    }
}

/// The response of row i as the family sees it: (y, prior weight). `cbind(s, f)` becomes the
/// proportion s/(s+f) with weight w·(s+f).
#[inline(always)]
pub fn response(v: &ChunkView, i: usize) -> (f64, f64) {
    match v.failures {
        Some(f) => {
            let m = v.y[i] + f[i];
            if m > 0.0 {
                (v.y[i] / m, v.weight[i] * m)
            } else {
                (0.0, 0.0)
            }
        }
        None => (v.y[i], v.weight[i]),
    }
}

/// Sums from the validation pass.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Totals {
    pub n_ok: u64,
    pub sum_w: f64,
    pub sum_wy: f64,
    pub non_integer: u64,
    /// Rows (of positive weight) that are not a Bernoulli trial: weight other than 1, or a
    /// binomial response other than a 0/1 label, or any `cbind` row.
    pub not_bernoulli: u64,
}

/// Check every row's response and weight for the family; error names file and row.
fn validate(ds: &Dataset, family: Family) -> Result<Totals> {
    let cbind = ds.design().spec.failures.is_some();
    let resp = &ds.design().spec.response;
    let out: Vec<std::result::Result<Totals, (u64, String, String)>> =
        ds.cache.par_map(|_, v| match validate_plain(&v, family) {
            Some(t) => Ok(t),
            None => validate_rows(&v, family, cbind, resp),
        });
    let mut tot = Totals::default();
    for r in out {
        match r {
            Ok(t) => {
                tot.n_ok += t.n_ok;
                tot.sum_w += t.sum_w;
                tot.sum_wy += t.sum_wy;
                tot.non_integer += t.non_integer;
                tot.not_bernoulli += t.not_bernoulli;
            }
            Err((row, col, msg)) => {
                let (file, frow) = ds.locate(row);
                let col = if col == "weights" {
                    ds.design().spec.weights.clone().unwrap_or(col)
                } else {
                    col
                };
                return Err(Error::data(file, &col, Some(frow), msg));
            }
        }
    }
    if tot.n_ok == 0 {
        let col = ds.design().spec.weights.clone().unwrap_or_else(|| "weights".into());
        return Err(Error::Input(format!(
            "column '{col}': every row has zero weight (zero-weight rows are left out of the fit, like R)"
        )));
    }
    Ok(tot)
}

/// [`validate`] of one chunk, row by row: its totals, or the first invalid row (row id, column,
/// message).
fn validate_rows(
    v: &ChunkView,
    family: Family,
    cbind: bool,
    resp: &str,
) -> std::result::Result<Totals, (u64, String, String)> {
    let mut t = Totals::default();
    for i in 0..v.n {
        let bad = |col: &str, msg: String| Err((v.row_id[i], col.to_string(), msg));
        if v.weight[i] < 0.0 {
            return bad("weights", format!("prior weight {} is negative", v.weight[i]));
        }
        if let Some(f) = v.failures {
            if v.y[i] < 0.0 || f[i] < 0.0 {
                return bad(
                    resp,
                    format!("cbind counts must be non-negative (got {}, {})", v.y[i], f[i]),
                );
            }
        }
        let (y, w) = response(v, i);
        if w == 0.0 {
            continue;
        }
        if let Some(msg) = family.check_response(y) {
            return bad(resp, format!("{msg}; got {y}"));
        }
        if family == Family::Binomial && !cbind && non_integer(w * y) {
            t.non_integer += 1;
        }
        t.n_ok += 1;
        t.sum_w += w;
        t.sum_wy += w * y;
        t.not_bernoulli += (cbind || w != 1.0 || (y != 0.0 && y != 1.0)) as u64;
    }
    Ok(t)
}

/// [`validate_rows`]' totals of a chunk without a `cbind` response, in one walk without
/// branches (the same sums, in the same order); `None` when a row is invalid (or the response
/// is `cbind`), for [`validate_rows`] to find the first and report it. Row by row, with a
/// `match` on the family and a call to `round` per row, the pass took about half as long again
/// (`scripts/ab_timing.py … --case adult-validate`, docs/PERFORMANCE.md).
fn validate_plain(v: &ChunkView, family: Family) -> Option<Totals> {
    if v.failures.is_some() {
        return None;
    }
    // The walk compiled once per family (the support check then folds to one comparison).
    match family {
        Family::Binomial => validate_walk(v, |y| Family::Binomial.outside_support(y)),
        Family::Poisson => validate_walk(v, |y| Family::Poisson.outside_support(y)),
        Family::Gamma => validate_walk(v, |y| Family::Gamma.outside_support(y)),
        Family::Gaussian => validate_walk(v, |y| Family::Gaussian.outside_support(y)),
    }
    .map(|mut t| {
        // A Bernoulli row (weight 1, label 0 or 1) has an integral w·y: only the others are
        // looked at.
        if family == Family::Binomial && t.not_bernoulli > 0 {
            t.non_integer = v.y[..v.n]
                .iter()
                .zip(&v.weight[..v.n])
                .filter(|&(&y, &w)| w != 0.0 && non_integer(w * y))
                .count() as u64;
        }
        t
    })
}

/// [`validate_plain`]'s walk, with `outside(y)` saying whether a response is outside the
/// family's support.
#[inline(always)]
fn validate_walk(v: &ChunkView, outside: impl Fn(f64) -> bool) -> Option<Totals> {
    let mut t = Totals::default();
    let mut bad = false;
    for (&y, &w) in v.y[..v.n].iter().zip(&v.weight[..v.n]) {
        let active = w != 0.0;
        bad |= (w < 0.0) | (active & outside(y));
        t.n_ok += active as u64;
        t.sum_w += if active { w } else { 0.0 };
        t.sum_wy += if active { w * y } else { 0.0 };
        t.not_bernoulli += (active & ((w != 1.0) | ((y != 0.0) & (y != 1.0)))) as u64;
    }
    (!bad).then_some(t)
}

/// Whether `x` is more than 1e-7 from the nearest integer: a binomial w·y that is not a count
/// of successes (R's "non-integer #successes in a binomial glm!").
fn non_integer(x: f64) -> bool {
    (x - x.round()).abs() > 1e-7
}

/// How the null model's mean is obtained in a pass.
#[derive(Debug, Clone, Copy)]
pub(crate) enum NullModel {
    /// Intercept, no offset: μ = weighted mean of y.
    Mean(f64),
    /// No intercept: η = offset.
    OffsetOnly,
    /// Intercept and offset: fitted separately.
    Separate,
}

/// Where a pass evaluates the model.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Eval<'a> {
    /// At R's starting values (`mustart`).
    Start { ybar: f64 },
    /// At coefficients β.
    Beta(&'a [f64]),
}

/// What one fused IRLS pass returns.
#[derive(Debug, Clone)]
pub(crate) struct PassStats {
    /// XᵀWX over the pass's column subset (m×m, both triangles); for a blocked pass, the A
    /// block over `BlockSplit::rest`.
    pub gram: Buf,
    /// A blocked pass's B and D blocks ([`irls_pass_blocked`]).
    pub block: Option<BlockGram>,
    /// Xᵀ(w ∘ u), u per [`Rhs`]: over all p columns, or over the subset only (0 elsewhere)
    /// when `score_cols` is [`ScoreCols::Subset`].
    pub xtwz: Buf,
    /// Which columns `xtwz` covers.
    pub score_cols: ScoreCols,
    /// Σ aᵢ d(yᵢ, μᵢ).
    pub dev: Sum,
    /// Σ (aᵢ·[`Family::unit_deviance_and_scale`])²: the sizes of the numbers the deviance's terms are
    /// computed from, which set its rounding noise ([`PassStats::dev_noise`]).
    pub dev_scale: f64,
    /// Σ aᵢ (yᵢ − μᵢ)²/V(μᵢ).
    pub pearson: Sum,
    /// Null-model deviance (first pass only).
    pub null_dev: Sum,
    /// Rows where μ or η left the family's domain.
    pub invalid: u64,
    /// Rows with μ numerically at the boundary.
    pub boundary: u64,
    /// Rows fitted exactly.
    pub perfect: u64,
}

impl PassStats {
    /// Absolute rounding noise of the pass's deviance: each term is computed from numbers of
    /// size sᵢ = aᵢ·[`Family::unit_deviance_and_scale`] and errs by about ε·sᵢ, independently, so the
    /// sum errs by about 2ε·√(Σ sᵢ²); two fits equal to the last bit can differ by this much.
    /// An increase below it is not divergence, and two changes in a row below it are not
    /// progress. (It is an estimate: a single change below it can still be Newton's last real
    /// step, as in the star98 cloglog fit.)
    pub fn dev_noise(&self) -> f64 {
        2.0 * f64::EPSILON * self.dev_scale.sqrt()
    }

    fn zeros(p: usize, m: usize, split: Option<&BlockSplit>) -> Self {
        PassStats {
            // 2.3 MB at m = 539, one per fold group and pass: kept between passes.
            gram: Buf::zeroed(m * m),
            block: split.map(BlockGram::zeros),
            xtwz: Buf::zeroed(p),
            score_cols: ScoreCols::All,
            dev: Sum::default(),
            dev_scale: 0.0,
            pearson: Sum::default(),
            null_dev: Sum::default(),
            invalid: 0,
            boundary: 0,
            perfect: 0,
        }
    }
    /// The sums of `self` and `o`, passes over disjoint sets of rows.
    pub(crate) fn merge(mut self, o: PassStats) -> Self {
        for (a, b) in self.gram.iter_mut().zip(&o.gram) {
            *a += b;
        }
        for (a, b) in self.xtwz.iter_mut().zip(&o.xtwz) {
            *a += b;
        }
        if let (Some(a), Some(b)) = (self.block.as_mut(), o.block.as_ref()) {
            a.merge(b);
        }
        self.dev.merge(o.dev);
        self.dev_scale += o.dev_scale;
        self.pearson.merge(o.pearson);
        self.null_dev.merge(o.null_dev);
        self.invalid += o.invalid;
        self.boundary += o.boundary;
        self.perfect += o.perfect;
        self
    }

    /// Take away the sums of `o`, a pass at the same β over some of this pass's rows: what is
    /// left is the other rows' (up to rounding; counts saturate at 0).
    pub(crate) fn subtract(&mut self, o: &PassStats) {
        for (a, b) in self.gram.iter_mut().zip(o.gram.iter()) {
            *a -= b;
        }
        for (a, b) in self.xtwz.iter_mut().zip(o.xtwz.iter()) {
            *a -= b;
        }
        self.dev.merge(o.dev.negated());
        self.pearson.merge(o.pearson.negated());
        self.null_dev.merge(o.null_dev.negated());
        self.dev_scale = (self.dev_scale - o.dev_scale).max(0.0);
        self.invalid = self.invalid.saturating_sub(o.invalid);
        self.boundary = self.boundary.saturating_sub(o.boundary);
        self.perfect = self.perfect.saturating_sub(o.perfect);
    }
}

thread_local! {
    static SCRATCH: std::cell::RefCell<Scratch> = std::cell::RefCell::new(Scratch::default());
}

/// Per-thread scratch of a pass.
#[derive(Default)]
struct Scratch {
    eta: Vec<f64>,
    /// Per-row terms of a sum ([`rows_fast`]'s Pearson χ²).
    terms: Vec<f64>,
    mu: Vec<f64>,
    mu_eta: Vec<f64>,
    w: Vec<f64>,
    z: Vec<f64>,
    score: Vec<f64>,
    sandwich: SandwichScratch,
}

/// The vector u of the pass's Xᵀ(w ∘ u).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rhs {
    /// The working response z = η − offset + (y − μ)/μ′ (XᵀWz, for the unpenalised solve).
    WorkingResponse,
    /// The working residual (y − μ)/μ′: Xᵀ(w ∘ u) is then the score ∂ℓ/∂β.
    Score,
}

/// Which columns of Xᵀ(w ∘ u) a pass computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ScoreCols {
    /// All p columns (the KKT check and strong rules of a path need them).
    All,
    /// Only the pass's column subset (entries outside it stay 0): an inner IRLS iteration of a
    /// path solves on its working set alone, and this skips a full `Xᵀ·v`.
    Subset,
}

/// One fused IRLS pass: the deviance at `eval` and, with the IRLS weights there, XᵀWX over
/// `subset` and Xᵀ(w ∘ u) over all columns (or, with [`ScoreCols::Subset`], over `subset`).
pub(crate) fn irls_pass(
    ds: &Dataset,
    opts: &FitOptions,
    eval: Eval<'_>,
    null: NullModel,
    subset: &ColumnSubset,
    rhs: Rhs,
    cols: ScoreCols,
) -> PassStats {
    irls_pass_impl(ds, opts, eval, null, subset, rhs, cols, None)
}

/// [`irls_pass`] over all columns with XᵀWX in the blocks of `split`: `gram` is A over
/// `split.rest`, `block` holds B and D, and `xtwz` is XᵀWz over every column.
pub(crate) fn irls_pass_blocked(
    ds: &Dataset,
    opts: &FitOptions,
    eval: Eval<'_>,
    null: NullModel,
    split: &BlockSplit,
) -> PassStats {
    irls_pass_impl(
        ds,
        opts,
        eval,
        null,
        &split.rest,
        Rhs::WorkingResponse,
        ScoreCols::Subset,
        Some(split),
    )
}

#[allow(clippy::too_many_arguments)]
fn irls_pass_impl(
    ds: &Dataset,
    opts: &FitOptions,
    eval: Eval<'_>,
    null: NullModel,
    subset: &ColumnSubset,
    rhs: Rhs,
    cols: ScoreCols,
    split: Option<&BlockSplit>,
) -> PassStats {
    let layout: &Layout = &ds.design().layout;
    let p = layout.p;
    let m = subset.len();
    let bytes = split.map_or(m * m * 8, |s| s.accumulator_bytes()).max(1);
    let mut groups = (2usize << 30).div_euclid(bytes).clamp(1, crate::store::FOLD_GROUPS);
    if split.is_some() {
        // Each group's B block is m_A × L: one per thread is enough for chunks of equal cost.
        groups = groups.min(rayon::current_num_threads().max(1));
    }
    let ctx = PassCtx::new(layout, opts, eval, null, subset, rhs, cols, split);
    let st = ds.cache.par_fold_groups(
        groups,
        || PassStats::zeros(p, m, split),
        |acc, v| irls_chunk(acc, v, &ctx),
        PassStats::merge,
    );
    let mut out = st;
    symmetrize_lower(&mut out.gram, m);
    out.score_cols = if split.is_some() { ScoreCols::All } else { cols };
    out
}

/// What one chunk's share of an IRLS pass needs besides the chunk ([`irls_pass_impl`]'s
/// arguments, resolved once per pass).
#[derive(Clone, Copy)]
struct PassCtx<'a> {
    layout: &'a Layout,
    family: Family,
    link: Link,
    eval: Eval<'a>,
    null: NullModel,
    subset: &'a ColumnSubset,
    rhs: Rhs,
    cols: ScoreCols,
    split: Option<&'a BlockSplit>,
    /// X·β can read the sparse block from the subset's entries.
    sparse_support_inside: bool,
    tiny: f64,
}

impl<'a> PassCtx<'a> {
    #[allow(clippy::too_many_arguments)]
    fn new(
        layout: &'a Layout,
        opts: &FitOptions,
        eval: Eval<'a>,
        null: NullModel,
        subset: &'a ColumnSubset,
        rhs: Rhs,
        cols: ScoreCols,
        split: Option<&'a BlockSplit>,
    ) -> Self {
        // X·β can read the sparse block from the subset's entries when every non-zero sparse
        // coefficient is in the subset (a path's working set holds its support).
        let sparse_support_inside = match eval {
            Eval::Beta(beta) => (layout.sparse_offset..layout.p).all(|j| beta[j] == 0.0 || subset.local(j).is_some()),
            Eval::Start { .. } => false,
        };
        PassCtx {
            layout,
            family: opts.family,
            link: opts.link,
            eval,
            null,
            subset,
            rhs,
            cols,
            split,
            sparse_support_inside,
            tiny: 10.0 * f64::EPSILON,
        }
    }
}

/// [`irls_pass`] at `beta` over all columns, on owned chunks instead of the cache (on the
/// calling thread): the rows that IRLS's tail still moves (`glm::tail`).
pub(crate) fn irls_pass_chunks(chunks: &[Chunk], layout: &Layout, opts: &FitOptions, beta: &[f64]) -> PassStats {
    let all = ColumnSubset::all(layout.p);
    let null = NullModel::Separate;
    let (rhs, cols) = (Rhs::WorkingResponse, ScoreCols::All);
    let ctx = PassCtx::new(layout, opts, Eval::Beta(beta), null, &all, rhs, cols, None);
    let mut out = chunks
        .iter()
        .fold(PassStats::zeros(layout.p, layout.p, None), |acc, c| {
            irls_chunk(acc, c.view(), &ctx)
        });
    symmetrize_lower(&mut out.gram, layout.p);
    out
}

/// One chunk's share of an IRLS pass, added to `acc`: η, the row loop, then the sandwich and
/// score over the chunk's rows.
fn irls_chunk(mut acc: PassStats, v: ChunkView<'_>, c: &PassCtx<'_>) -> PassStats {
    let (layout, family, link, eval, null, subset) = (c.layout, c.family, c.link, c.eval, c.null, c.subset);
    let (rhs, cols, split, tiny) = (c.rhs, c.cols, c.split, c.tiny);
    let (p, m) = (layout.p, subset.len());
    // Per-worker scratch, reused across chunks and passes (no page faults per pass).
    let mut s = SCRATCH.with(|c| c.take());
    // faer may have run AVX-512 code on this worker (the solve between passes).
    crate::linalg::clear_upper_simd_state();
    let n = v.n;
    s.eta.resize(n, 0.0);
    s.w.resize(n, 0.0);
    s.z.resize(n, 0.0);
    if split.is_some() {
        // `sandwich_cross` reads each row's entries.
        s.sandwich.gather_per_row(&v, layout, subset);
    } else {
        s.sandwich.gather(&v, layout, subset);
    }
    if let Eval::Beta(beta) = eval {
        if c.sparse_support_inside {
            x_beta_gathered(&v, layout, beta, subset, &s.sandwich, &mut s.eta);
        } else {
            x_beta(&v, layout, beta, &mut s.eta);
        }
        for (e, o) in s.eta.iter_mut().zip(v.offset) {
            *e += o;
        }
    }
    // The row loop specialised for the common family/link pairs (their matches then
    // fold away), generic for the rest.
    let rows = RowArgs { eval, null, rhs, tiny };
    match (family, link) {
        // The vectorised loop where it applies (it says whether it did).
        _ if irls_rows_fast(family, link, rows, &v, &mut s, &mut acc) => {}
        (Family::Binomial, Link::Logit) => irls_rows(Family::Binomial, Link::Logit, rows, &v, &mut s, &mut acc),
        (Family::Poisson, Link::Log) => irls_rows(Family::Poisson, Link::Log, rows, &v, &mut s, &mut acc),
        (Family::Gaussian, Link::Identity) => irls_rows(Family::Gaussian, Link::Identity, rows, &v, &mut s, &mut acc),
        _ => irls_rows(family, link, rows, &v, &mut s, &mut acc),
    }
    // With every column in the subset, the sandwich's row loop computes the whole score
    // too (one walk over the chunk instead of two).
    match cols {
        ScoreCols::All if m < p => {
            sandwich_gathered(&v, layout, &s.w, subset, &mut acc.gram, None, &mut s.sandwich);
            xt_v(&v, layout, &s.z, Some(&s.w), &mut acc.xtwz);
        }
        ScoreCols::All | ScoreCols::Subset => {
            let mut score = std::mem::take(&mut s.score);
            score.clear();
            score.resize(m, 0.0);
            sandwich_gathered(
                &v,
                layout,
                &s.w,
                subset,
                &mut acc.gram,
                Some((&s.z, &mut score)),
                &mut s.sandwich,
            );
            for (&j, &g) in subset.columns().iter().zip(&score) {
                acc.xtwz[j] += g;
            }
            s.score = score;
        }
    }
    if let (Some(sp), Some(g)) = (split, acc.block.as_mut()) {
        let out = &mut acc.xtwz[sp.offset..sp.offset + sp.width];
        sandwich_cross(&v, layout, &s.w, sp, &s.sandwich, g, Some((&s.z, out)));
    }
    SCRATCH.with(|c| c.replace(s));
    acc
}

/// What the IRLS row loop needs besides the family, link and chunk.
#[derive(Clone, Copy)]
struct RowArgs<'a> {
    eval: Eval<'a>,
    null: NullModel,
    rhs: Rhs,
    tiny: f64,
}

/// The per-row part of an IRLS pass over one chunk, in three loops: η → (μ, dμ/dη) (the
/// link's exponential; at R's `mustart` on the first pass), the rest of the row's arithmetic
/// (IRLS weights `s.w`, working response or residual `s.z`, Pearson sum, counts), and the unit
/// deviances (the family's logarithm) with the null model's on the first pass. Each loop has one
/// kind of work, so calls to `exp` and `ln` overlap from row to row and the arithmetic keeps its
/// values in registers. Inlined into each caller so that calls with constant `family` and
/// `link` are compiled for that pair alone.
#[inline(always)]
fn irls_rows(family: Family, link: Link, a: RowArgs<'_>, v: &ChunkView, s: &mut Scratch, acc: &mut PassStats) {
    let RowArgs { eval, null, rhs, tiny } = a;
    let n = v.n;
    s.mu.resize(n, 0.0);
    s.mu_eta.resize(n, 0.0);
    match eval {
        Eval::Start { ybar } => {
            for i in 0..n {
                let (y, w) = response(v, i);
                let mu = family.mustart(link, y, w, ybar);
                let eta = link.link(mu);
                (s.eta[i], s.mu[i], s.mu_eta[i]) = (eta, mu, link.mu_eta(eta));
            }
        }
        Eval::Beta(_) => {
            for ((&eta, mu), d) in s.eta.iter().zip(&mut s.mu).zip(&mut s.mu_eta) {
                (*mu, *d) = link.inverse_and_mu_eta(eta);
            }
        }
    }
    // Sums in locals (not through `acc`), so that they stay in registers.
    let mut pearson = acc.pearson;
    let (mut boundary, mut perfect, mut invalid) = (0u64, 0u64, 0u64);
    for i in 0..n {
        let (y, w) = response(v, i);
        let (eta, mu, d) = (s.eta[i], s.mu[i], s.mu_eta[i]);
        if w == 0.0 || !valid_mu(family, mu) || !eta.is_finite() {
            invalid += (w != 0.0) as u64;
            s.w[i] = 0.0;
            s.z[i] = 0.0;
            // No deviance for this row (see the last loop).
            s.mu[i] = f64::NAN;
            continue;
        }
        let var = family.variance(mu);
        pearson.add(w * (y - mu) * (y - mu) / var);
        match family {
            Family::Binomial if mu < tiny || mu > 1.0 - tiny => boundary += 1,
            Family::Poisson if mu < tiny => boundary += 1,
            _ => {}
        }
        if (y - mu).abs() < 1e-6 {
            perfect += 1;
        }
        s.z[i] = match rhs {
            Rhs::WorkingResponse => (eta - v.offset[i]) + (y - mu) / d,
            Rhs::Score => (y - mu) / d,
        };
        s.w[i] = w * d * d / var;
    }
    acc.pearson = pearson;
    acc.boundary += boundary;
    acc.perfect += perfect;
    acc.invalid += invalid;
    // Unit deviances (weighted) and their scales into the spent μ′ and μ arrays, then summed;
    // the null model's deviance on the first pass.
    let mut null_dev = acc.null_dev;
    for i in 0..n {
        let mu = s.mu[i];
        if mu.is_nan() {
            s.mu_eta[i] = 0.0;
            s.mu[i] = 0.0;
            continue;
        }
        let (y, w) = response(v, i);
        let (dev_i, scale) = family.unit_deviance_and_scale(y, mu);
        s.mu_eta[i] = w * dev_i;
        let scale = w * scale;
        s.mu[i] = if scale.is_finite() { scale * scale } else { 0.0 };
        match null {
            NullModel::Mean(m) => null_dev.add(w * family.unit_deviance(y, m)),
            NullModel::OffsetOnly => null_dev.add(w * family.unit_deviance(y, link.inverse(v.offset[i]))),
            NullModel::Separate => {}
        }
    }
    acc.null_dev = null_dev;
    let mut dev = acc.dev;
    for &d in &s.mu_eta {
        dev.add(d);
    }
    acc.dev = dev;
    acc.dev_scale += crate::linalg::sum_in_lanes(&s.mu);
}

/// [`irls_rows`] for the pairs whose link and unit deviance need only `exp` and `ln`
/// (binomial–logit with 0/1 labels, Poisson–log, Gaussian–identity), at β or R's starting
/// values, with the null model's deviance when it is the mean's (not offset-only). Every loop
/// is free of branches and of libm calls (`linalg::vmath`'s `exp` and `ln`, selects for the
/// invalid rows, the sums by [`Sum::add_all`]), so each compiles to vector instructions, and
/// it runs compiled for the widest ones the CPU has. The operations are the same whatever the
/// instructions, so are the results. Returns false (doing nothing) where it does not apply.
fn irls_rows_fast(
    family: Family,
    link: Link,
    a: RowArgs<'_>,
    v: &ChunkView,
    s: &mut Scratch,
    acc: &mut PassStats,
) -> bool {
    let RowArgs { eval, null, rhs, tiny } = a;
    let start = match eval {
        Eval::Start { ybar } => Some(ybar),
        Eval::Beta(_) => None,
    };
    let null_mean = match null {
        NullModel::Separate => None,
        NullModel::Mean(m) => Some(m),
        NullModel::OffsetOnly => return false,
    };
    if v.failures.is_some() {
        return false;
    }
    let fa = FastArgs {
        start,
        null_mean,
        rhs,
        tiny,
    };
    match (family, link) {
        // Proportions take two logarithms per row: the general loop.
        (Family::Binomial, Link::Logit) => {
            if !v.y[..v.n].iter().fold(true, |ok, &y| ok & ((y == 0.0) | (y == 1.0))) {
                return false;
            }
        }
        (Family::Poisson, Link::Log) | (Family::Gaussian, Link::Identity) => {}
        _ => return false,
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512dq")
            && std::arch::is_x86_feature_detected!("avx512vl")
        {
            // SAFETY: the CPU has the instructions the function is compiled for.
            unsafe { rows_fast_avx512(family, link, fa, v, s, acc) };
            return true;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: as above.
            unsafe { rows_fast_avx2(family, link, fa, v, s, acc) };
            return true;
        }
    }
    rows_fast_pairs(family, link, fa, v, s, acc);
    true
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512dq,avx512vl,avx2")]
fn rows_fast_avx512(family: Family, link: Link, fa: FastArgs, v: &ChunkView, s: &mut Scratch, acc: &mut PassStats) {
    rows_fast_pairs(family, link, fa, v, s, acc)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn rows_fast_avx2(family: Family, link: Link, fa: FastArgs, v: &ChunkView, s: &mut Scratch, acc: &mut PassStats) {
    rows_fast_pairs(family, link, fa, v, s, acc)
}

/// [`rows_fast`] compiled once per pair (the family and link matches then fold away).
#[inline(always)]
fn rows_fast_pairs(family: Family, link: Link, fa: FastArgs, v: &ChunkView, s: &mut Scratch, acc: &mut PassStats) {
    match (family, link) {
        (Family::Binomial, Link::Logit) if fa.start.is_none() && fa.null_mean.is_none() => rows_logit01(fa, v, s, acc),
        (Family::Binomial, Link::Logit) => rows_fast(Family::Binomial, Link::Logit, fa, v, s, acc),
        (Family::Poisson, Link::Log) => rows_fast(Family::Poisson, Link::Log, fa, v, s, acc),
        _ => rows_fast(Family::Gaussian, Link::Identity, fa, v, s, acc),
    }
}

/// One valid row's IRLS quantities from μ and μ′ = dμ/dη: the Pearson term a(y − μ)²/V(μ), the
/// weight a·μ′²/V(μ), the working response (η − offset) + (y − μ)/μ′ (or the working residual
/// alone), and whether μ is at the family's boundary or the row fitted exactly.
#[derive(Clone, Copy)]
struct RowTerms {
    pearson: f64,
    w: f64,
    z: f64,
    at_boundary: bool,
    perfect: bool,
}

/// [`RowTerms`] of a row with label `y`, prior weight `a`, linear predictor less offset
/// `eta_less_offset`, mean `m` and μ′ `d`. A function, not a closure (see
/// [`fast_unit_deviance`]).
#[allow(clippy::too_many_arguments)]
#[inline(always)]
fn row_terms(family: Family, rhs: Rhs, tiny: f64, y: f64, a: f64, eta_less_offset: f64, m: f64, d: f64) -> RowTerms {
    let var = family.variance(m);
    let r = y - m;
    RowTerms {
        pearson: a * r * r / var,
        w: a * d * d / var,
        z: match rhs {
            Rhs::WorkingResponse => eta_less_offset + r / d,
            Rhs::Score => r / d,
        },
        at_boundary: match family {
            Family::Binomial => (m < tiny) | (m > 1.0 - tiny),
            Family::Poisson => m < tiny,
            _ => false,
        },
        perfect: r.abs() < 1e-6,
    }
}

/// [`Family::unit_deviance_and_scale`] for [`rows_fast`]'s families (binomial with a 0/1
/// label), with `vmath::ln`. A function, not a closure: closures are not compiled with the
/// caller's target features, and one here was not inlined (the loop ran scalar).
#[inline(always)]
fn fast_unit_deviance(family: Family, y: f64, mu: f64) -> (f64, f64) {
    match family {
        Family::Binomial => bernoulli_deviance_and_scale(y, mu, ln),
        Family::Poisson => poisson_deviance_and_scale(y, mu, ln),
        _ => gaussian_deviance_and_scale(y, mu),
    }
}

/// What [`rows_fast`] needs besides the pair, chunk and scratch.
#[derive(Clone, Copy)]
struct FastArgs {
    /// The pass starts from R's `mustart` (ȳ given) instead of η.
    start: Option<f64>,
    /// The null model's mean, when the pass sums its deviance too.
    null_mean: Option<f64>,
    rhs: Rhs,
    tiny: f64,
}

/// The body of [`irls_rows_fast`]: [`irls_rows`]'s three loops (no `cbind`, no offset-only null
/// model) with the branches turned into selects.
#[inline(always)]
fn rows_fast(family: Family, link: Link, fa: FastArgs, v: &ChunkView, s: &mut Scratch, acc: &mut PassStats) {
    let FastArgs {
        start,
        null_mean,
        rhs,
        tiny,
    } = fa;
    let n = v.n;
    s.mu.resize(n, 0.0);
    s.mu_eta.resize(n, 0.0);
    s.terms.resize(n, 0.0);
    let (y, wt, off) = (&v.y[..n], &v.weight[..n], &v.offset[..n]);
    let (mu, dmu) = (&mut s.mu[..n], &mut s.mu_eta[..n]);
    let (w, z, terms) = (&mut s.w[..n], &mut s.z[..n], &mut s.terms[..n]);
    match start {
        // R's mustart (always inside the domain for these pairs) and η = g(μ).
        Some(ybar) => {
            let eta = &mut s.eta[..n];
            for i in 0..n {
                let m = family.mustart(link, y[i], wt[i], ybar);
                let e = match link {
                    Link::Logit => ln(m / (1.0 - m)),
                    Link::Log => ln(m),
                    _ => m,
                };
                (eta[i], mu[i], dmu[i]) = (e, m, link.mu_eta(e));
            }
        }
        None => {
            let eta = &s.eta[..n];
            for i in 0..n {
                (mu[i], dmu[i]) = link.inverse_and_mu_eta(eta[i]);
            }
        }
    }
    let eta = &s.eta[..n];
    let (mut boundary, mut perfect, mut invalid) = (0u64, 0u64, 0u64);
    for i in 0..n {
        let (yi, a, e, m, d) = (y[i], wt[i], eta[i], mu[i], dmu[i]);
        let bad = (a == 0.0) | !valid_mu(family, m) | !e.is_finite();
        invalid += (bad & (a != 0.0)) as u64;
        let row = row_terms(family, rhs, tiny, yi, a, e - off[i], m, d);
        terms[i] = if bad { 0.0 } else { row.pearson };
        boundary += (!bad & row.at_boundary) as u64;
        perfect += (!bad & row.perfect) as u64;
        z[i] = if bad { 0.0 } else { row.z };
        w[i] = if bad { 0.0 } else { row.w };
        // No deviance for an invalid row (see below).
        mu[i] = if bad { f64::NAN } else { m };
    }
    acc.pearson.add_all(terms);
    acc.boundary += boundary;
    acc.perfect += perfect;
    acc.invalid += invalid;
    // Unit deviances into the spent μ′, their scales² into μ (R's formulas: one logarithm
    // per row; a 0/1 label's is 2 ln(1/μ) or 2 ln(1/(1 − μ))).
    for i in 0..n {
        let (yi, a, m) = (y[i], wt[i], mu[i]);
        let (dev, scale) = fast_unit_deviance(family, yi, m);
        let scale = a * scale;
        let bad = m.is_nan();
        dmu[i] = if bad { 0.0 } else { a * dev };
        mu[i] = if bad | !scale.is_finite() { 0.0 } else { scale * scale };
    }
    acc.dev.add_all(dmu);
    if let Some(m0) = null_mean {
        // The null model's terms (in `terms`, free since the Pearson sum) for the rows with a
        // deviance: those whose weight and working response are set (w > 0 or, for a valid
        // row of weight 0, nothing to add anyway).
        for i in 0..n {
            let t = wt[i] * fast_unit_deviance(family, y[i], m0).0;
            terms[i] = if w[i] == 0.0 { 0.0 } else { t };
        }
        acc.null_dev.add_all(terms);
    }
    acc.dev_scale += crate::linalg::sum_in_lanes(mu);
}

/// [`rows_fast`] for binomial–logit with 0/1 labels at β (no null model): one loop, one `exp`,
/// one division and one `ln` per row. With u = e^(−η) for y = 1 and e^η for y = 0 (the odds
/// against the label) and q = 1/(1 + u): μ = q or u·q, μ(1 − μ) = u·q², the IRLS weight
/// a·u·q², (y − μ)/μ′ = ±(1 + u), the Pearson term a·u and the unit deviance 2a·ln(1 + u)
/// (= 2 ln(1/μ) or 2 ln(1/(1 − μ))). The same quantities as R's formulas, a rounding or two
/// apart. Rows of weight 0 or with |η| past R's threshold (or not finite) are redone after the
/// loop with the general formulas (R's floor on μ′ there).
#[inline(always)]
fn rows_logit01(fa: FastArgs, v: &ChunkView, s: &mut Scratch, acc: &mut PassStats) {
    let (tiny, working) = (fa.tiny, matches!(fa.rhs, Rhs::WorkingResponse));
    let n = v.n;
    let (y, wt, off, eta) = (&v.y[..n], &v.weight[..n], &v.offset[..n], &s.eta[..n]);
    let (w, z) = (&mut s.w[..n], &mut s.z[..n]);
    let (mut boundary, mut perfect, mut redo) = (0u64, 0u64, 0u64);
    let (mut pearson, mut dev_sum, mut dev_scale) = (LaneSums::default(), LaneSums::default(), 0.0);
    // Per-row terms of the sums, a tile at a time (summed while in L1; a multiple of the
    // lanes, so the sums are those of the whole chunk's terms).
    const TILE: usize = 512;
    let (mut terms, mut dev, mut scale2) = ([0.0f64; TILE], [0.0f64; TILE], [0.0f64; TILE]);
    let (mut odds, mut logs) = ([0.0f64; TILE], [0.0f64; TILE]);
    for t0 in (0..n).step_by(TILE) {
        let len = TILE.min(n - t0);
        // Three loops, each with a short chain per row (`exp`; `ln`; a division and the
        // rest), so that the CPU overlaps many rows instead of waiting on one row's chain.
        for k in 0..len {
            let e = eta[t0 + k];
            odds[k] = exp(if y[t0 + k] == 1.0 { -e } else { e });
        }
        for k in 0..len {
            logs[k] = ln(1.0 + odds[k]);
        }
        for k in 0..len {
            let i = t0 + k;
            let (yi, a, e, u, t) = (y[i], wt[i], eta[i], odds[k], logs[k]);
            let one = yi == 1.0;
            let other = logit_redo(a, e);
            redo += other as u64;
            let q = 1.0 / (1.0 + u);
            let mu = if one { q } else { u * q };
            let r = u * q; // |y − μ|
            w[i] = a * (r * q);
            let step = if one { 1.0 + u } else { -(1.0 + u) };
            z[i] = if working { (e - off[i]) + step } else { step };
            terms[k] = a * u;
            dev[k] = a * (2.0 * t);
            let sc = a * (2.0 * (1.0 + t));
            scale2[k] = sc * sc;
            boundary += (!other & ((mu < tiny) | (mu > 1.0 - tiny))) as u64;
            perfect += (!other & (r < 1e-6)) as u64;
        }
        if redo > 0 {
            for k in 0..len {
                let i = t0 + k;
                let (yi, a, e) = (y[i], wt[i], eta[i]);
                if !logit_redo(a, e) {
                    continue;
                }
                let (m, d) = Link::Logit.inverse_and_mu_eta(e);
                if (a == 0.0) | !valid_mu(Family::Binomial, m) | !e.is_finite() {
                    acc.invalid += (a != 0.0) as u64;
                    (terms[k], z[i], w[i], dev[k], scale2[k]) = (0.0, 0.0, 0.0, 0.0, 0.0);
                    continue;
                }
                let row = row_terms(Family::Binomial, fa.rhs, tiny, yi, a, e - off[i], m, d);
                terms[k] = row.pearson;
                boundary += row.at_boundary as u64;
                perfect += row.perfect as u64;
                z[i] = row.z;
                w[i] = row.w;
                let (dv, sc) = bernoulli_deviance_and_scale(yi, m, ln);
                let sc = a * sc;
                dev[k] = a * dv;
                scale2[k] = if sc.is_finite() { sc * sc } else { 0.0 };
            }
            redo = 0;
        }
        pearson.add_all(&terms[..len]);
        dev_sum.add_all(&dev[..len]);
        dev_scale += crate::linalg::sum_in_lanes(&scale2[..len]);
    }
    acc.pearson.merge_lanes(&pearson);
    acc.dev.merge_lanes(&dev_sum);
    acc.boundary += boundary;
    acc.perfect += perfect;
    acc.dev_scale += dev_scale;
}

/// Whether [`rows_logit01`] redoes a row with the general formulas: weight 0, or η past R's
/// threshold or not a number.
#[inline(always)]
fn logit_redo(a: f64, eta: f64) -> bool {
    let inside = eta.abs() <= LOGIT_THRESH;
    (a == 0.0) | !inside
}

/// Coefficient names for a warning: all of them up to [`MAX_NAMES_LISTED`], else that many and
/// a count of the rest (a factor with 10⁴ levels can have thousands of separated levels).
fn name_list<S: AsRef<str>>(names: &[S]) -> String {
    let names: Vec<&str> = names.iter().map(|n| n.as_ref()).collect();
    if names.len() <= MAX_NAMES_LISTED {
        return names.join(", ");
    }
    format!(
        "{} and {} more",
        names[..MAX_NAMES_LISTED].join(", "),
        names.len() - MAX_NAMES_LISTED
    )
}

/// How many coefficient names a warning lists.
const MAX_NAMES_LISTED: usize = 20;

/// Factor a pass's information over `candidates` (global columns, increasing): through the
/// Schur complement of `split`'s block while `blocked`, else dense in column order. When the
/// blocked factorization declines (a column aliased or close to it, where R's column order
/// decides), the dense factorization of the assembled matrix is used and `blocked` cleared for
/// the rest of the fit.
fn factor_information(
    st: &PassStats,
    split: Option<&BlockSplit>,
    blocked: &mut bool,
    candidates: &[usize],
    ridge: &[f64],
) -> Result<InfoFactor> {
    let p = ridge.len();
    if let (Some(sp), Some(g), true) = (split, st.block.as_ref(), *blocked) {
        if let Some(f) = SchurFactor::new(&st.gram, &g.slices(), sp, candidates, ridge, ALIAS_TOL)? {
            return Ok(InfoFactor::Schur(Box::new(f)));
        }
        *blocked = false;
        let all: Vec<usize> = (0..p).collect();
        let dense = g.assemble(&st.gram, sp, &all, &vec![0.0; p]);
        return Ok(InfoFactor::Dense(GramFactor::new(
            &dense, p, candidates, ridge, ALIAS_TOL,
        )?));
    }
    Ok(InfoFactor::Dense(GramFactor::new(
        &st.gram, p, candidates, ridge, ALIAS_TOL,
    )?))
}

/// Deviance of the intercept-plus-offset null model by a scalar IRLS (R refits `y ~ 1 +
/// offset` for this).
pub(crate) fn null_deviance_with_offset(ds: &Dataset, opts: &FitOptions, ybar: f64) -> f64 {
    let (family, link) = (opts.family, opts.link);
    let scalar = |b0: Option<f64>| -> (f64, f64, f64) {
        ds.cache.par_fold(
            || (0.0, 0.0, 0.0),
            |(mut dev, mut sw, mut swz), v| {
                for i in 0..v.n {
                    let (y, w) = response(&v, i);
                    if w == 0.0 {
                        continue;
                    }
                    let (eta, mu) = match b0 {
                        None => {
                            let mu = family.mustart(link, y, w, ybar);
                            (link.link(mu), mu)
                        }
                        Some(b) => (b + v.offset[i], link.inverse(b + v.offset[i])),
                    };
                    let d = link.mu_eta(eta);
                    let wi = w * d * d / family.variance(mu);
                    dev += w * family.unit_deviance(y, mu);
                    sw += wi;
                    swz += wi * ((eta - v.offset[i]) + (y - mu) / d);
                }
                (dev, sw, swz)
            },
            |a, b| (a.0 + b.0, a.1 + b.1, a.2 + b.2),
        )
    };
    let (mut dev_old, sw, swz) = scalar(None);
    let mut b0 = swz / sw;
    for _ in 0..opts.max_iter.max(25) {
        let (dev, sw, swz) = scalar(Some(b0));
        if (dev - dev_old).abs() / (dev.abs() + 0.1) < opts.tol {
            return dev;
        }
        dev_old = dev;
        b0 = swz / sw;
    }
    dev_old
}

/// The sums R's AIC needs, at β (one light pass: the log-densities are not needed per iteration).
fn aic_sums(ds: &Dataset, opts: &FitOptions, beta: &[f64]) -> AicSums {
    let layout = &ds.design().layout;
    ds.cache
        .par_fold(
            || (AicSums::default(), Vec::new()),
            |(mut acc, mut eta), v| {
                eta.resize(v.n, 0.0);
                x_beta(&v, layout, beta, &mut eta);
                for (i, e) in eta.iter().enumerate() {
                    let (y, w) = response(&v, i);
                    acc.add(opts.family, y, opts.link.inverse(e + v.offset[i]), w);
                }
                (acc, eta)
            },
            |mut a, b| {
                a.0.merge(&b.0);
                a
            },
        )
        .0
}

/// Checks shared by every fit: the response against the family (one validation pass), and how
/// the null model's deviance is found. Returns the totals, the first warnings and the null model.
pub(crate) fn prepare(ds: &Dataset, family: Family) -> Result<(Totals, Vec<String>, NullModel)> {
    let design = ds.design();
    if design.spec.failures.is_some() && family != Family::Binomial {
        return Err(Error::Usage(
            "cbind(successes, failures) responses need --family binomial".into(),
        ));
    }
    let tot = validate(ds, family)?;
    if family == Family::Binomial && tot.sum_w > 0.0 && (tot.sum_wy == 0.0 || tot.sum_wy == tot.sum_w) {
        // glmnet refuses this ("one binomial class has 1 or 0 observations"); R's glm would
        // drive the intercept to ±∞ and report separation. Nothing can be learned either way.
        return Err(Error::Input(format!(
            "column '{}': every one of the {} rows modelled is {}: a binomial model needs both outcomes",
            design.spec.response,
            tot.n_ok,
            if tot.sum_wy == 0.0 {
                "0 (failure)"
            } else {
                "1 (success)"
            }
        )));
    }
    let mut warnings = Vec::new();
    if tot.non_integer > 0 {
        warnings.push(format!(
            "non-integer #successes in a binomial glm! ({} rows)",
            tot.non_integer
        ));
    }
    let ybar = tot.sum_wy / tot.sum_w;
    let null = match (design.layout.intercept, !design.spec.offsets.is_empty()) {
        (true, false) => NullModel::Mean(ybar),
        (false, _) => NullModel::OffsetOnly,
        (true, true) => NullModel::Separate,
    };
    Ok((tot, warnings, null))
}

/// Fit the GLM by IRLS over the dataset's chunk cache.
pub fn fit(ds: &Dataset, opts: &FitOptions) -> Result<Fit> {
    fit_from(ds, opts, None)
}

/// [`fit`] started from coefficients `start` (length p) instead of R's `mustart` (R's `start`):
/// the first pass evaluates the model at `start` and every later step is step-halved against
/// it. With `opts.max_iter = k` this is k Fisher-scoring steps from `start` — what the
/// influence module's unlearning predictions take on a reweighted dataset.
pub fn fit_from(ds: &Dataset, opts: &FitOptions, start: Option<&[f64]>) -> Result<Fit> {
    let t0 = Instant::now();
    let design = ds.design();
    let layout = &design.layout;
    let p = layout.p;
    let family = opts.family;
    let (tot, mut warnings, null) = prepare(ds, family)?;
    let ybar = tot.sum_wy / tot.sum_w;
    let ridge: Vec<f64> = match opts.penalty {
        Penalty::None => vec![0.0; p],
        Penalty::ElasticNet { .. } | Penalty::Group { .. } => {
            return Err(Error::Usage(
                "lasso, elastic-net and group penalties are fitted as a path (glm::fit_path)".into(),
            ))
        }
        Penalty::Ridge { lambda } => {
            if !(lambda >= 0.0 && lambda.is_finite()) {
                return Err(Error::Usage(format!(
                    "--lambda must be a non-negative number, got {lambda}"
                )));
            }
            (0..p)
                .map(|j| {
                    if layout.intercept && j == 0 {
                        0.0
                    } else {
                        tot.sum_w * lambda
                    }
                })
                .collect()
        }
    };
    crate::linalg::chol::check_dense_fits(p, design, "an unpenalised or ridge fit")?;
    let penalty_of = |beta: &[f64]| -> f64 { beta.iter().zip(&ridge).map(|(b, r)| r * b * b).sum() };
    let all = ColumnSubset::all(p);
    // A wide categorical term's block of XᵀWX is held as a diagonal while no column is aliased
    // or near it (`blocked`); the dense column-order factorization takes over otherwise.
    let split = BlockSplit::widest(layout, opts.schur_min_levels);
    let mut blocked = split.is_some();
    let pass = |eval: Eval<'_>, null: NullModel, blocked: bool| match (&split, blocked) {
        (Some(sp), true) => irls_pass_blocked(ds, opts, eval, null, sp),
        _ => irls_pass(ds, opts, eval, null, &all, Rhs::WorkingResponse, ScoreCols::All),
    };
    let mut timing = vec![("validate".to_string(), t0.elapsed().as_secs_f64())];
    let t1 = Instant::now();

    // Iteration 0: evaluate at mustart (or at `start`).
    if let Some(b) = start {
        if b.len() != p || b.iter().any(|x| !x.is_finite()) {
            return Err(Error::Usage(format!(
                "starting values need {p} finite coefficients, got {}",
                b.len()
            )));
        }
    }
    let eval0 = match start {
        Some(b) => Eval::Beta(b),
        None => Eval::Start { ybar },
    };
    let st0 = pass(eval0, null, blocked);
    if st0.invalid > 0 {
        return Err(Error::Numerical(
            "cannot find valid starting values for this family and link; check the response".into(),
        ));
    }
    let candidates: Vec<usize> = (0..p).collect();
    let mut factor = factor_information(&st0, split.as_ref(), &mut blocked, &candidates, &ridge)?;
    let scatter = |f: &InfoFactor, x: Vec<f64>| -> Vec<f64> {
        let mut b = vec![0.0; p];
        for (k, &j) in f.kept().iter().enumerate() {
            b[j] = x[k];
        }
        b
    };
    let mut beta = scatter(&factor, factor.solve(&st0.xtwz));
    let mut beta_prev: Option<Vec<f64>> = start.map(|b| b.to_vec());
    let mut dev_prev = st0.dev.value() + start.map_or(0.0, penalty_of);
    // The null model's deviance does not depend on β: the first pass's sum is the answer.
    let null_dev0 = st0.null_dev.value();
    // The first pass's p×p accumulator is not needed again (3 GiB at p = 20k).
    drop(st0);
    let mut iterations = 1usize;
    let mut converged = false;
    let mut halved = false;
    let mut last_within_noise = false;
    let mut stalled = false;
    // IRLS's tail (`super::tail`): once only a few level columns move, iterate on their rows.
    // The blocked solve keeps its own accumulators and does not enter it.
    let mut tail: Option<Tail> = None;
    let mut tail_allowed = opts.tail && split.is_none();
    let mut probe = TailProbe::default();
    let eval_at = |tail: &mut Option<Tail>, beta: &[f64], blocked: bool| -> PassStats {
        match tail {
            Some(t) if t.holds(beta) => t.pass(layout, opts, beta),
            _ => {
                *tail = None;
                pass(Eval::Beta(beta), NullModel::Separate, blocked)
            }
        }
    };
    // Leaving the tail at β: the full pass there (the reported sums), and the standard
    // errors' information of the last step with the settled rows' share from that pass
    // instead of their model's G₀, which is as old as the tail (first order in the drift).
    let leave_tail = |t: Tail,
                      full: PassStats,
                      beta: &[f64],
                      prev: Option<&[f64]>,
                      factor: &mut InfoFactor,
                      blocked: &mut bool|
     -> Result<PassStats> {
        if let Some(prev) = prev {
            let last_step = t.information_at(&full, layout, opts, prev, beta);
            *factor = factor_information(&last_step, split.as_ref(), blocked, factor.kept(), &ridge)?;
        }
        Ok(full)
    };
    let mut tail_use: Option<TailUse> = None;
    let mut st = loop {
        let mut st = eval_at(&mut tail, &beta, blocked);
        if let Some(t) = &tail {
            let u = tail_use.get_or_insert(TailUse { iterations: 0, rows: 0 });
            u.iterations += 1;
            u.rows = u.rows.max(t.n_rows());
        }
        let mut obj = st.dev.value() + penalty_of(&beta);
        let mut halvings = 0;
        loop {
            let bad = !obj.is_finite() || st.invalid > 0;
            let slack = (1e-9 * (obj.abs() + 0.1)).max(st.dev_noise());
            let worse = beta_prev.is_some() && obj > dev_prev + slack;
            if !bad && !worse {
                break;
            }
            let Some(prev) = &beta_prev else {
                return Err(Error::Numerical(
                    "no valid set of coefficients has been found (the first IRLS step left the family's domain)".into(),
                ));
            };
            if halvings >= 30 {
                if bad {
                    return Err(Error::Numerical("inner loop: cannot correct step size".into()));
                }
                stalled = true;
                break;
            }
            halvings += 1;
            halved = true;
            for (b, q) in beta.iter_mut().zip(prev) {
                *b = 0.5 * (*b + q);
            }
            st = eval_at(&mut tail, &beta, blocked);
            obj = st.dev.value() + penalty_of(&beta);
        }
        if stalled {
            // Thirty halvings of the Fisher step still raise the deviance: the information is
            // too degenerate to give a descent direction (every fitted value 0 or 1, say).
            // Stopping here is not convergence (R, which never halves on an increase, runs to
            // maxit and reports non-convergence on such data).
            warnings.push(format!(
                "IRLS stalled at iteration {iterations}: 30 step-halvings could not reduce the deviance; the estimates are not a maximum"
            ));
            if let Some(t) = tail.take() {
                let full = pass(Eval::Beta(&beta), NullModel::Separate, blocked);
                break leave_tail(t, full, &beta, beta_prev.as_deref(), &mut factor, &mut blocked)?;
            }
            break st;
        }
        let change = (obj - dev_prev).abs();
        // R's criterion, |ΔD|/(|D| + 0.1) < tol; or two changes in a row within the deviance's
        // rounding noise, which no further iteration can reduce (R iterates on to maxit there
        // and reports non-convergence, e.g. an exact Poisson fit to counts of 10⁹). Two, because
        // Newton's last real steps can be as small as the noise estimate.
        let within_noise = change <= st.dev_noise();
        let abs_tol = opts.tol.max(deviance_resolution(tot.n_ok) * obj.abs());
        if (within_noise && last_within_noise) || (change / (obj.abs() + 0.1) < opts.tol && change < abs_tol) {
            let Some(t) = tail.take() else {
                converged = true;
                break st;
            };
            // Converged in the tail: a full pass at β̂ for the reported sums, and a check of
            // the settled rows' model against it. Should the two deviances differ by more than
            // the criterion resolves, the fit goes on with full passes.
            let full = pass(Eval::Beta(&beta), NullModel::Separate, blocked);
            let full_obj = full.dev.value() + penalty_of(&beta);
            if (full_obj - obj).abs() <= abs_tol.max(full.dev_noise()) {
                converged = true;
                break leave_tail(t, full, &beta, beta_prev.as_deref(), &mut factor, &mut blocked)?;
            }
            tail_allowed = false;
            (st, obj) = (full, full_obj);
        }
        if iterations >= opts.max_iter {
            if let Some(t) = tail.take() {
                let full = pass(Eval::Beta(&beta), NullModel::Separate, blocked);
                break leave_tail(t, full, &beta, beta_prev.as_deref(), &mut factor, &mut blocked)?;
            }
            break st;
        }
        factor = factor_information(&st, split.as_ref(), &mut blocked, factor.kept(), &ridge)?;
        let next = scatter(&factor, factor.solve(&st.xtwz));
        if tail.is_none() && tail_allowed && !blocked {
            tail = Tail::enter(ds, opts, &st, &beta, &next, &mut probe);
        }
        beta_prev = Some(beta.clone());
        dev_prev = obj;
        last_within_noise = within_noise;
        beta = next;
        iterations += 1;
    };
    timing.push(("irls".to_string(), t1.elapsed().as_secs_f64()));
    // No more passes: the spare accumulators would only add to the memory of what follows.
    crate::linalg::spare::release();
    if halved {
        warnings.push("step size truncated due to divergence".into());
    }
    if !converged {
        warnings.push(format!("algorithm did not converge in {iterations} iterations"));
    }

    // Standard errors from the final IRLS step's information (R, statsmodels); the information
    // at β̂ itself is kept for diagnostics.
    let t2 = Instant::now();
    let fin = &factor;
    let kept = fin.kept().to_vec();
    let mut aliased = vec![true; p];
    for &j in &kept {
        aliased[j] = false;
    }
    for (j, b) in beta.iter_mut().enumerate() {
        if aliased[j] {
            *b = 0.0;
        }
    }
    let rank = kept.len();
    let n = tot.n_ok as f64;
    let df_residual = n - rank as f64;
    let dispersion = if family.fixed_dispersion() {
        1.0
    } else if df_residual > 0.0 {
        st.pearson.value() / df_residual
    } else {
        f64::NAN
    };
    // A blocked fit keeps only the covariance's diagonal (the SEs).
    let (cov_unscaled, cov_diag) = match fin {
        InfoFactor::Dense(f) => {
            let c = f.inverse();
            let d = (0..kept.len()).map(|k| c[(k, k)]).collect::<Vec<_>>();
            (c, d)
        }
        InfoFactor::Schur(f) => (Mat::zeros(0, 0), f.block_inverse().diag()),
    };
    let mut std_error = vec![None; p];
    if opts.penalty == Penalty::None {
        for (k, &j) in kept.iter().enumerate() {
            std_error[j] = Some((cov_diag[k] * dispersion).sqrt());
        }
    }
    let null_deviance = match null {
        NullModel::Separate => null_deviance_with_offset(ds, opts, ybar),
        _ => null_dev0,
    };
    // Bernoulli trials (0/1 labels, unit weights): R's −2 Σ log dbinom(yᵢ; 1, μᵢ) is the
    // deviance itself, which the last pass summed at this β; otherwise one pass for the sums.
    let aic = if family == Family::Binomial && tot.not_bernoulli == 0 {
        st.dev.value() + 2.0 * rank as f64
    } else {
        aic_sums(ds, opts, &beta).aic(family, st.dev.value(), rank)
    };
    if aliased.iter().any(|&a| a) {
        let names: Vec<_> = (0..p).filter(|&j| aliased[j]).map(|j| design.coef_name(j)).collect();
        warnings.push(format!(
            "{} coefficient(s) not defined because of singularities (aliased columns): {}",
            names.len(),
            name_list(&names)
        ));
    }
    if st.boundary > 0 {
        let what = if family == Family::Binomial {
            "fitted probabilities numerically 0 or 1 occurred"
        } else {
            "fitted rates numerically 0 occurred"
        };
        warnings.push(format!("{what} ({} rows)", st.boundary));
    }
    // Coefficients running off to ±∞ (a level or region with all-0/all-1 outcomes, or only zero
    // counts): large in size, with a standard error hundreds of times larger still.
    let diverging: Vec<_> = (0..p)
        .filter(|_| matches!(family, Family::Binomial | Family::Poisson))
        .filter(|&j| std_error[j].is_some_and(|se| beta[j].abs() > 10.0 && se > 100.0 * beta[j].abs()))
        .map(|j| design.coef_name(j))
        .collect();
    if !diverging.is_empty() {
        warnings.push(format!(
            "quasi-complete separation: the maximum-likelihood estimates of {} are infinite; the reported values and standard errors depend on when the iterations stopped",
            name_list(&diverging)
        ));
    }
    if family == Family::Binomial && st.perfect == tot.n_ok {
        warnings
            .push("perfect separation: the model predicts every row exactly; coefficients are not identified".into());
    }
    let information = if st.block.is_some() {
        // Kept in `information_blocks` below.
        Vec::new()
    } else {
        let m = kept.len();
        let mut g = vec![0.0; m * m];
        for (b, &jb) in kept.iter().enumerate() {
            for (a, &ja) in kept.iter().enumerate() {
                g[b * m + a] = st.gram[jb * p + ja];
            }
            g[b * m + b] += ridge[jb];
        }
        g
    };
    let information_blocks = match (st.block.as_mut(), &split) {
        (Some(g), Some(sp)) => {
            let ma = sp.rest.len();
            let mut a = std::mem::take(&mut st.gram).into_vec();
            for (x, &j) in sp.rest.columns().iter().enumerate() {
                a[x * ma + x] += ridge[j];
            }
            let diag = g
                .diag
                .iter()
                .enumerate()
                .map(|(l, d)| d + ridge[sp.offset + l])
                .collect();
            Some(InformationBlocks {
                split: sp.clone(),
                a,
                cross: std::mem::take(&mut g.cross).into_vec(),
                diag,
            })
        }
        _ => None,
    };
    timing.push(("information".to_string(), t2.elapsed().as_secs_f64()));
    let penalty_curvature = kept.iter().map(|&j| ridge[j]).collect();
    let fit = Fit {
        family,
        link: opts.link,
        penalty: opts.penalty,
        n_obs: tot.n_ok,
        n_params: p,
        rank,
        beta,
        aliased,
        std_error,
        deviance: st.dev.value(),
        null_deviance,
        aic,
        dispersion,
        pearson_chi2: st.pearson.value(),
        df_residual,
        df_null: n - layout.intercept as usize as f64,
        iterations,
        tail: tail_use,
        converged,
        warnings,
        kept,
        cov_unscaled,
        information,
        information_blocks,
        penalty_curvature,
        penalty_blocks: Vec::new(),
        standardization: None,
        penalty_kink: Vec::new(),
        score: Vec::new(),
        sum_weights: tot.sum_w,
        timing,
    };
    drop(st);
    crate::linalg::spare::release();
    Ok(fit)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunk::Chunk;

    /// The branch-free validation walk gives exactly the row loop's totals (sums bit for bit),
    /// and gives up on exactly the chunks the row loop rejects: every family, with responses
    /// inside, on and outside each support's bounds, NaN and ±∞, and weights 0, −0, 1,
    /// fractional, negative and NaN.
    #[test]
    fn branch_free_validation_matches_the_row_loop() {
        let ys = [
            0.0,
            1.0,
            0.5,
            3.0,
            -0.5,
            -0.0,
            1e-300,
            f64::NAN,
            f64::INFINITY,
            f64::NEG_INFINITY,
        ];
        let ws = [1.0, 0.0, -0.0, 2.5, 0.3, -1.0, f64::NAN];
        let mut st = 0x2545_f491_4f6c_dd1du64;
        let mut pick = move |k: usize| {
            st ^= st << 13;
            st ^= st >> 7;
            st ^= st << 17;
            (st % k as u64) as usize
        };
        for family in [Family::Binomial, Family::Poisson, Family::Gaussian, Family::Gamma] {
            let (mut accepted, mut rejected) = (0, 0);
            for trial in 0..400 {
                let n = 1 + pick(40);
                // Mostly valid rows (so that whole chunks pass), now and then any pair.
                let (y, weight): (Vec<f64>, Vec<f64>) = (0..n)
                    .map(|_| match (trial % 4, pick(12)) {
                        (0, _) | (_, 0) => (ys[pick(ys.len())], ws[pick(ws.len())]),
                        _ => (
                            [0.0, 1.0, 0.25][pick(3)] + (family == Family::Gamma) as u8 as f64,
                            [1.0, 0.0, 2.0][pick(3)],
                        ),
                    })
                    .unzip();
                let chunk = Chunk {
                    row_id: (0..n as u64).collect(),
                    y,
                    weight,
                    offset: vec![0.0; n],
                    ..Default::default()
                };
                let v = chunk.view();
                let rows = validate_rows(&v, family, false, "y");
                match (validate_plain(&v, family), rows) {
                    (Some(a), Ok(b)) => {
                        accepted += 1;
                        assert_eq!(
                            (a.n_ok, a.non_integer, a.not_bernoulli),
                            (b.n_ok, b.non_integer, b.not_bernoulli),
                            "{family:?} {:?} {:?}",
                            chunk.y,
                            chunk.weight
                        );
                        assert_eq!(a.sum_w.to_bits(), b.sum_w.to_bits());
                        assert_eq!(a.sum_wy.to_bits(), b.sum_wy.to_bits());
                    }
                    (None, Err(_)) => rejected += 1,
                    (a, b) => panic!(
                        "{family:?} y {:?} w {:?}: walk {a:?}, rows {b:?}",
                        chunk.y, chunk.weight
                    ),
                }
            }
            assert!(
                accepted > 50 && rejected > 50,
                "{family:?}: {accepted} accepted, {rejected} rejected"
            );
        }
        // A cbind response is always left to the row loop.
        let chunk = Chunk {
            row_id: vec![0],
            y: vec![1.0],
            failures: Some(vec![2.0]),
            weight: vec![1.0],
            offset: vec![0.0],
            ..Default::default()
        };
        assert!(validate_plain(&chunk.view(), Family::Binomial).is_none());
    }

    /// The vectorised row loop gives what the general one gives, for each pair it takes and both
    /// right-hand sides: the same weights and working responses bit for bit (the same μ and
    /// arithmetic), the same counts, and sums equal to ~1e-14 (other summation order; the
    /// deviance's logarithms may differ from libm's by 1 ulp). Rows with zero weight, η at
    /// and past the logit's thresholds, η = NaN and a chunk length not a multiple of the lanes
    /// are included.
    #[test]
    fn fast_row_loop_matches_the_general_one() {
        let n = 1_003;
        let mut st = 0x853c_49e6_748f_ea9bu64;
        let mut unif = move || {
            st ^= st << 13;
            st ^= st >> 7;
            st ^= st << 17;
            (st >> 11) as f64 / (1u64 << 53) as f64
        };
        let pairs = [
            (Family::Binomial, Link::Logit),
            (Family::Poisson, Link::Log),
            (Family::Gaussian, Link::Identity),
        ];
        for (family, link) in pairs {
            for rhs in [Rhs::WorkingResponse, Rhs::Score] {
                let eta: Vec<f64> = (0..n)
                    .map(|i| match i {
                        0 => f64::NAN,
                        1 => 40.0,
                        2 => -40.0,
                        3 => 36.04365338911715,
                        _ => (unif() - 0.5) * if family == Family::Binomial { 30.0 } else { 6.0 },
                    })
                    .collect();
                let y: Vec<f64> = eta
                    .iter()
                    .map(|&e| if e.is_nan() { 0.0 } else { e })
                    .map(|e| match family {
                        Family::Binomial => (unif() < 0.5) as u8 as f64,
                        Family::Poisson => (unif() * 4.0 * e.clamp(-5.0, 2.0).exp()).floor(),
                        _ => e + unif() - 0.5,
                    })
                    .collect();
                let chunk = Chunk {
                    row_id: (0..n as u64).collect(),
                    y,
                    weight: (0..n).map(|i| if i % 17 == 5 { 0.0 } else { 0.5 + unif() }).collect(),
                    offset: (0..n).map(|_| unif() - 0.5).collect(),
                    ..Default::default()
                };
                let v = chunk.view();
                // At β without the null model, and at R's start with it.
                for (eval, null) in [
                    (Eval::Beta(&[]), NullModel::Separate),
                    (Eval::Start { ybar: 0.37 }, NullModel::Mean(0.37)),
                ] {
                    let args = RowArgs {
                        eval,
                        null,
                        rhs,
                        tiny: 10.0 * f64::EPSILON,
                    };
                    let run = |fast: bool| {
                        let mut s = Scratch {
                            eta: eta.clone(),
                            w: vec![0.0; n],
                            z: vec![0.0; n],
                            ..Default::default()
                        };
                        let mut acc = PassStats::zeros(1, 1, None);
                        if fast {
                            assert!(irls_rows_fast(family, link, args, &v, &mut s, &mut acc));
                        } else {
                            irls_rows(family, link, args, &v, &mut s, &mut acc);
                        }
                        (s, acc)
                    };
                    let ((s0, a0), (s1, a1)) = (run(false), run(true));
                    let what = format!("{family:?}/{link:?} {rhs:?}");
                    // At β the same bits, except binomial–logit's loop (`rows_logit01`), whose
                    // formulas avoid R's 1 − μ: R's weight and working response carry its
                    // cancellation, a relative error up to ~ε/min(μ, 1 − μ), so that is the
                    // tolerance there. At the start η = g(μ) takes `vmath::ln` instead of
                    // libm's (1 ulp apart at most).
                    let exact = matches!(eval, Eval::Beta(_));
                    let logit = exact && family == Family::Binomial;
                    for (name, a, b) in [("weight", &s0.w, &s1.w), ("working response", &s0.z, &s1.z)] {
                        for (i, (&x0, &x1)) in a.iter().zip(b).enumerate() {
                            let ok = if logit {
                                let mu = link.inverse(eta[i]);
                                let near = mu.min(1.0 - mu);
                                let size = x0.abs() + if name == "weight" { 0.0 } else { 1.0 / near };
                                x0 == x1
                                    || (x0 - x1).abs() <= (1e-13 + 8.0 * f64::EPSILON / near) * size
                                    || (x0.is_nan() && x1.is_nan())
                            } else if exact {
                                x0.to_bits() == x1.to_bits()
                            } else {
                                (x0 - x1).abs() <= 1e-14 * x0.abs() || (x0.is_nan() && x1.is_nan())
                            };
                            assert!(ok, "{what} {eval:?}: {name} {i}: {x0} vs {x1}");
                        }
                    }
                    assert_eq!(
                        (a0.invalid, a0.boundary, a0.perfect),
                        (a1.invalid, a1.boundary, a1.perfect),
                        "{what}: counts"
                    );
                    assert!(!exact || a0.invalid >= 1, "{what}: the NaN row is invalid");
                    let close = |a: f64, b: f64| (a - b).abs() <= 1e-13 * a.abs().max(1e-300);
                    assert!(
                        close(a0.dev.value(), a1.dev.value()),
                        "{what}: deviance {} vs {}",
                        a0.dev.value(),
                        a1.dev.value()
                    );
                    assert!(close(a0.pearson.value(), a1.pearson.value()), "{what}: Pearson");
                    // The deviance's size (a rounding-noise bound, summed plainly) carries R's
                    // 1 − μ in the general loop: see the weights above.
                    let scale_tol = if logit { 1e-10 } else { 1e-13 };
                    assert!(
                        (a0.dev_scale - a1.dev_scale).abs() <= scale_tol * a0.dev_scale.abs(),
                        "{what}: deviance scale {} vs {}",
                        a0.dev_scale,
                        a1.dev_scale
                    );
                    assert!(close(a0.null_dev.value(), a1.null_dev.value()), "{what}: null deviance");
                }
            }
        }
    }

    #[test]
    fn warnings_list_at_most_twenty_names() {
        let few: Vec<String> = (0..3).map(|k| format!("g[{k}]")).collect();
        assert_eq!(name_list(&few), "g[0], g[1], g[2]");
        let many: Vec<String> = (0..1000).map(|k| format!("g[{k}]")).collect();
        let s = name_list(&many);
        assert!(s.starts_with("g[0], g[1], "), "{s}");
        assert!(s.ends_with("g[19] and 980 more"), "{s}");
        assert!(!s.contains("g[20]"), "{s}");
    }
}
