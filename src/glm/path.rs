//! Penalised GLM paths — lasso, elastic net and group lasso — out of core, with glmnet's
//! objective and path conventions:
//!
//! minimise  (1/N) Σᵢ aᵢ·devᵢ/2 + λ Σ_u [ (1 − α)/2·f_u‖β̃_u‖² + α·w_u‖β̃_u‖₂ ]
//!
//! over (β₀, β), N = Σ aᵢ, the intercept unpenalised. For the Gaussian family glmnet
//! standardises y internally, which divides the ridge part by σ_y (y's 1/N-weighted standard
//! deviation): its objective is (1/2N)·RSS + λ[(1 − α)/(2σ_y)‖β̃‖² + α‖β̃‖₁], and so is ours. A penalty unit u is one column (lasso,
//! elastic net; w_u = f_u = its penalty factor, rescaled like glmnet's to sum to the number of
//! columns) or one group (group lasso; w_u = √|u|·f_u). β̃ is β on the standardised scale,
//! β̃_j = s_j·β_j with s_j the column's 1/N-weighted standard deviation (`standardize`, glmnet's
//! default) or 1.
//!
//! Algorithm (glmnet's, made Gram-based so that it streams): for each λ, penalised IRLS where
//! every iteration is one pass over the chunk cache accumulating the deviance, the score over
//! all p columns and XᵀWX over the strong set only; coordinate descent ([`super::cd`]) then
//! solves the penalised quadratic in RAM. Sequential strong rules choose the set; after
//! convergence the KKT conditions are checked on every column with the pass's full score, and
//! violators join the set. Warm starts along λ_max·r^k; glmnet's early stop (from the 5th value:
//! deviance ratio above 0.999, or gaining less than 1e-5 — relative for Gaussian; for Poisson
//! less than 1e-4 relative over the last 4 values).

use std::time::Instant;

use super::cd::{self, Block};
use super::family::{Family, Link};
use faer::Mat;

use super::irls::{
    irls_pass, null_deviance_with_offset, prepare, Eval, Fit, FitOptions, NullModel, PassStats, Penalty, PenaltyBlock,
    Rhs, ScoreCols, Standardization,
};
use crate::error::{Error, Result};
use crate::glm::irls::response;
use crate::ingest::Dataset;
use crate::linalg::{xt_sq, xt_v, ColumnSubset};

/// glmnet's `fdev`: stop when the deviance ratio changes by less than this.
pub const FDEV: f64 = 1e-5;
/// glmnet's `devmax`: stop when the deviance ratio exceeds this.
pub const DEVMAX: f64 = 0.999;
/// glmnet's `mnlam`: the early stop is checked from the 5th λ on.
pub const MNLAM: usize = 5;
/// Columns that may join the working set at once (more when the set is larger): the strong
/// rule keeps every column when λ falls by more than half between two values.
pub const WORKING_SET_STEP: usize = 1000;

/// A single `--lambda` is reached from λ_max by warm starts at λ_max·r^k with this r (as on a
/// path: small steps keep the strong rule tight and each coordinate-descent problem easy).
pub const WARM_RATIO: f64 = 0.8;

/// Step halvings [`fit_path`] and [`prox_steps`] try before it takes a step that raises the objective.
const MAX_HALVINGS: usize = 30;

/// Relative rise of the penalised objective that counts as an increase (above the rounding of
/// a sum over the rows).
const OBJECTIVE_SLACK: f64 = 1e-12;

/// Step control of penalised IRLS, as R's `glm` does for the deviance: remembers where the last
/// step started and the penalised objective there; a step that raises it (or leaves the
/// family's domain) is halved back towards that start, up to [`MAX_HALVINGS`] times. A full
/// proximal Newton step from a start far from the optimum (a refit without rows) can overshoot
/// into a region where some rows' IRLS weights are 0 (|η| > 30 for the logit); the quadratic
/// model no longer sees them there, and the steps stall short of the optimum.
#[derive(Default)]
struct Halving {
    from: Option<(Vec<f64>, f64)>,
    halvings: usize,
}

impl Halving {
    /// After the pass at `beta`: if the step that led there made things worse, move `beta`
    /// halfway back and return true (pass again); otherwise accept it.
    fn retreat(&mut self, beta: &mut [f64], objective: f64, valid: bool) -> bool {
        if let Some((b0, f0)) = &self.from {
            let worse = !valid || objective > f0 + OBJECTIVE_SLACK * f0.abs();
            if worse && self.halvings < MAX_HALVINGS {
                self.halvings += 1;
                for (b, &o) in beta.iter_mut().zip(b0) {
                    *b = (*b + o) / 2.0;
                }
                return true;
            }
        }
        self.halvings = 0;
        false
    }

    /// Take the step from `beta` (objective `objective`) to `next`.
    fn step(&mut self, beta: &mut Vec<f64>, next: Vec<f64>, objective: f64) {
        self.from = Some((std::mem::replace(beta, next), objective));
    }
}

/// Which penalty.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PathPenalty {
    /// Lasso (α = 1) or elastic net: one unit per column.
    ElasticNet,
    /// Group lasso: one unit per group (categorical terms and `group(...)` terms).
    Group,
}

/// Options of a penalised path.
#[derive(Debug, Clone)]
pub struct PathOptions {
    /// Response distribution.
    pub family: Family,
    /// Link.
    pub link: Link,
    /// Elastic net or group lasso.
    pub penalty: PathPenalty,
    /// Mixing α ∈ [0, 1]: 1 = lasso / group lasso, 0 = ridge.
    pub alpha: f64,
    /// Penalise the standardised coefficients (glmnet's default).
    pub standardize: bool,
    /// Penalty factor of every coefficient (length p; the intercept's is ignored); 0 leaves a
    /// column unpenalised. Default 1.
    pub penalty_factor: Vec<f64>,
    /// Groups of columns for [`PathPenalty::Group`] (columns in none are units of their own).
    pub groups: Vec<Vec<usize>>,
    /// Number of λ values (glmnet's `nlambda`, default 100).
    pub nlambda: usize,
    /// λ_min/λ_max (default 1e-4 if n > p, else 1e-2).
    pub lambda_min_ratio: Option<f64>,
    /// A single λ instead of the path.
    pub lambda: Option<f64>,
    /// Convergence threshold (glmnet's `thresh`, on max_k H̃_kk Δβ̃_k² relative to the null
    /// deviance per observation); default 1e-10.
    pub thresh: f64,
    /// Maximum IRLS passes per λ.
    pub max_iter: usize,
}

impl PathOptions {
    /// Defaults for a design with `p` coefficients.
    pub fn new(family: Family, link: Link, penalty: PathPenalty, p: usize) -> PathOptions {
        PathOptions {
            family,
            link,
            penalty,
            alpha: 1.0,
            standardize: true,
            penalty_factor: vec![1.0; p],
            groups: Vec::new(),
            nlambda: 100,
            lambda_min_ratio: None,
            lambda: None,
            thresh: 1e-10,
            max_iter: 100,
        }
    }
}

/// The fit at one λ.
#[derive(Debug, Clone)]
pub struct PathPoint {
    /// λ.
    pub lambda: f64,
    /// Non-zero coefficients (the intercept included), original scale, increasing column.
    pub beta: Vec<(usize, f64)>,
    /// Number of non-zero coefficients other than the intercept (glmnet's `df`).
    pub df: usize,
    /// Residual deviance Σ aᵢ dᵢ.
    pub deviance: f64,
    /// 1 − deviance/null deviance (glmnet's `dev.ratio`).
    pub dev_ratio: f64,
    /// IRLS passes spent at this λ.
    pub iterations: usize,
    /// Largest violation of the KKT conditions, on the standardised scale per observation.
    pub kkt_max: f64,
    /// Whether IRLS converged at this λ.
    pub converged: bool,
}

/// A penalised path.
#[derive(Debug, Clone)]
pub struct Path {
    /// Options used.
    pub options: PathOptions,
    /// The fits, from λ_max down.
    pub points: Vec<PathPoint>,
    /// The smallest λ at which every penalised coefficient is zero.
    pub lambda_max: f64,
    /// Deviance of the intercept-only model (with the offset).
    pub null_deviance: f64,
    /// Observations with positive weight.
    pub n_obs: u64,
    /// N = Σ prior weights.
    pub sum_weights: f64,
    /// Column means used for centring (0 without an intercept).
    pub center: Vec<f64>,
    /// Column scales s_j (1 when not standardising; 0 for constant columns, left out).
    pub scale: Vec<f64>,
    /// Penalty factors as used (glmnet's rescaling applied for the elastic net).
    pub penalty_factor: Vec<f64>,
    /// Divisor of the ridge part of the penalty: σ_y for the Gaussian family (glmnet's
    /// internal standardisation of y), 1 otherwise.
    pub ridge_scale: f64,
    /// Total passes over the data.
    pub passes: usize,
    /// Warnings.
    pub warnings: Vec<String>,
    /// Seconds per stage.
    pub timing: Vec<(String, f64)>,
}

/// A penalty unit: its columns, its ‖·‖₂ weight w_u and its ridge factor f_u.
#[derive(Debug, Clone)]
struct Unit {
    cols: Vec<usize>,
    weight: f64,
    factor: f64,
}

/// Everything fixed along the path.
struct Problem<'a> {
    ds: &'a Dataset,
    fo: FitOptions,
    p: usize,
    intercept: bool,
    n: f64,
    center: Vec<f64>,
    scale: Vec<f64>,
    /// Always in the working set: the intercept and unpenalised columns.
    base: Vec<usize>,
    units: Vec<Unit>,
    /// Unit of each column (usize::MAX: intercept, unpenalised or excluded).
    unit_of: Vec<usize>,
    alpha: f64,
}

impl Problem<'_> {
    /// Score on the standardised scale per observation: (Tᵀg)_j/N.
    fn std_score(&self, score: &[f64], j: usize) -> f64 {
        let g0 = if self.intercept { score[0] } else { 0.0 };
        if self.intercept && j == 0 {
            return g0 / self.n;
        }
        (score[j] / self.scale[j] - self.center[j] / self.scale[j] * g0) / self.n
    }

    fn unit_score_norm(&self, score: &[f64], u: &Unit) -> f64 {
        u.cols
            .iter()
            .map(|&j| self.std_score(score, j).powi(2))
            .sum::<f64>()
            .sqrt()
    }

    /// One pass at β over the columns `cols` (the score over all p columns, or over `cols`).
    fn pass(&self, beta: &[f64], cols: &[usize], score: ScoreCols) -> Result<(ColumnSubset, PassStats)> {
        let sub = ColumnSubset::new(self.p, cols);
        let st = irls_pass(
            self.ds,
            &self.fo,
            Eval::Beta(beta),
            NullModel::Separate,
            &sub,
            Rhs::Score,
            score,
        );
        if st.invalid > 0 || !st.dev.value().is_finite() {
            return Err(Error::Numerical(format!(
                "penalised IRLS left the {} family's domain ({} rows with invalid fitted values)",
                self.fo.family.name(),
                st.invalid
            )));
        }
        Ok((sub, st))
    }

    /// Solve the penalised quadratic model of the pass at λ (∞: only the base columns move)
    /// from β; returns the new β and the step size measure.
    fn solve(&self, beta: &[f64], sub: &ColumnSubset, st: &PassStats, lambda: f64, thr: f64) -> (Vec<f64>, f64) {
        let cols = sub.columns();
        let m = cols.len();
        let grouped = self.units.iter().any(|u| u.cols.len() > 1);
        // The transform T: β_j = β̃_j/s_j, β₀ = β̃₀ − Σ c_j β̃_j with c_j = m_j/s_j (no centring
        // for the group lasso, so that one-hot blocks stay diagonal).
        let has0 = self.intercept;
        let s: Vec<f64> = cols
            .iter()
            .map(|&j| if has0 && j == 0 { 1.0 } else { self.scale[j] })
            .collect();
        let c: Vec<f64> = cols
            .iter()
            .map(|&j| {
                if (has0 && j == 0) || grouped {
                    0.0
                } else {
                    self.center[j] / self.scale[j]
                }
            })
            .collect();
        let h = &st.gram;
        let inv_n = 1.0 / self.n;
        // GT = H·T, then H̃ = Tᵀ·GT (both /N).
        let mut gt = vec![0.0; m * m];
        for b in 0..m {
            for a in 0..m {
                let mut v = h[b * m + a] / s[b];
                if has0 && b > 0 {
                    v -= h[a] * c[b];
                }
                gt[b * m + a] = v;
            }
        }
        let mut ht = vec![0.0; m * m];
        for b in 0..m {
            for a in 0..m {
                let mut v = gt[b * m + a] / s[a];
                if has0 && a > 0 {
                    v -= c[a] * gt[b * m];
                }
                ht[b * m + a] = v * inv_n;
            }
        }
        let g0 = if has0 { st.xtwz[0] } else { 0.0 };
        let gtil: Vec<f64> = cols
            .iter()
            .enumerate()
            .map(|(a, &j)| {
                let v = st.xtwz[j] / s[a] - if has0 && a > 0 { c[a] * g0 } else { 0.0 };
                v * inv_n
            })
            .collect();
        let mut b0: Vec<f64> = cols.iter().enumerate().map(|(a, &j)| beta[j] * s[a]).collect();
        if has0 {
            b0[0] = beta[0] + (1..m).map(|a| c[a] * b0[a]).sum::<f64>();
        }
        // Blocks: base columns unpenalised, then each unit inside the set.
        let mut blocks = Vec::new();
        let mut seen = vec![false; self.units.len()];
        for (a, &j) in cols.iter().enumerate() {
            let u = self.unit_of[j];
            if u == usize::MAX {
                if self.base.binary_search(&j).is_ok() {
                    blocks.push(Block::new(vec![a], 0.0, 0.0, &ht, m));
                }
                continue;
            }
            if seen[u] {
                continue;
            }
            seen[u] = true;
            let unit = &self.units[u];
            let locals: Vec<usize> = unit.cols.iter().filter_map(|&k| sub.local(k)).collect();
            let (l1, l2) = if lambda.is_finite() {
                (
                    lambda * self.alpha * unit.weight,
                    lambda * (1.0 - self.alpha) * unit.factor,
                )
            } else {
                (f64::INFINITY, 0.0)
            };
            blocks.push(Block::new(locals, l1, l2, &ht, m));
        }
        // Groups have no exact polish (see cd::solve): let coordinate descent go further.
        let cd_thr = if grouped { thr * 1e-8 } else { thr * 1e-3 };
        let res = cd::solve(&ht, m, &gtil, &b0, &blocks, cd_thr, 1_000_000);
        let mut out = beta.to_vec();
        for (a, &j) in cols.iter().enumerate() {
            out[j] = res.beta[a] / s[a];
        }
        if has0 {
            out[0] = res.beta[0] - (1..m).map(|a| c[a] * res.beta[a]).sum::<f64>();
        }
        (out, res.step)
    }

    /// Units (outside `sub`) violating the KKT conditions at λ, with the pass's score.
    fn violators(&self, score: &[f64], sub: &ColumnSubset, lambda: f64) -> Vec<usize> {
        self.entering(score, sub, lambda * self.alpha * (1.0 + 1e-9))
    }

    /// Units outside `sub` (where every non-zero coefficient already is) whose standardised
    /// score reaches `cut`·w_u, at most [`Self::budget`] columns of them, the largest
    /// ‖score‖/w_u first: the working set grows by bounded steps (its Gram is m×m in RAM), and
    /// the KKT check after convergence brings in anything left out.
    fn entering(&self, score: &[f64], sub: &ColumnSubset, cut: f64) -> Vec<usize> {
        let mut cand: Vec<(f64, usize)> = self
            .units
            .iter()
            .enumerate()
            .filter(|(_, u)| sub.local(u.cols[0]).is_none())
            .map(|(k, u)| (self.unit_score_norm(score, u) / u.weight, k))
            .filter(|&(r, _)| r >= cut)
            .collect();
        cand.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        let budget = self.budget(sub.len());
        let mut add = Vec::new();
        for (_, k) in cand {
            if !add.is_empty() && add.len() + self.units[k].cols.len() > budget {
                break;
            }
            add.extend_from_slice(&self.units[k].cols);
        }
        add
    }

    /// How many columns may join a working set of `m` columns at once.
    fn budget(&self, m: usize) -> usize {
        m.max(WORKING_SET_STEP)
    }

    /// The penalty at β and λ, on the standardised scale per observation:
    /// Σ_u [λα·w_u‖β̃_u‖₂ + λ(1 − α)·f_u/2·‖β̃_u‖₂²] with β̃_j = s_j·β_j (what [`cd::solve`]'s
    /// blocks penalise), so that deviance/(2N) + this is the objective being minimised.
    fn penalty_value(&self, beta: &[f64], lambda: f64) -> f64 {
        self.units
            .iter()
            .map(|u| {
                let sq: f64 = u.cols.iter().map(|&j| (beta[j] * self.scale[j]).powi(2)).sum();
                lambda * self.alpha * u.weight * sq.sqrt() + lambda * (1.0 - self.alpha) * u.factor * sq / 2.0
            })
            .sum()
    }

    /// Largest KKT violation at β (standardised scale, per observation).
    fn kkt_max(&self, score: &[f64], beta: &[f64], lambda: f64) -> f64 {
        let mut worst: f64 = 0.0;
        for &j in &self.base {
            worst = worst.max(self.std_score(score, j).abs());
        }
        for u in &self.units {
            let bt: Vec<f64> = u.cols.iter().map(|&j| beta[j] * self.scale[j]).collect();
            let nb = bt.iter().map(|x| x * x).sum::<f64>().sqrt();
            if nb == 0.0 {
                worst = worst.max(self.unit_score_norm(score, u) - lambda * self.alpha * u.weight);
            } else {
                for (&j, &b) in u.cols.iter().zip(&bt) {
                    let r = self.std_score(score, j)
                        - lambda * self.alpha * u.weight * b / nb
                        - lambda * (1.0 - self.alpha) * u.factor * b;
                    worst = worst.max(r.abs());
                }
            }
        }
        worst
    }
}

/// Column means and scales (prior-weighted, 1/N), and y's 1/N standard deviation, in one pass.
fn moments(ds: &Dataset, intercept: bool, standardize: bool) -> (Vec<f64>, Vec<f64>, f64) {
    let layout = &ds.design().layout;
    let p = layout.p;
    let (s1, s2, [sum_a, sum_y, sum_yy]) = ds.cache.par_fold(
        || (vec![0.0; p], vec![0.0; p], [0.0; 3]),
        |(mut s1, mut s2, mut t), v| {
            let ya: Vec<(f64, f64)> = (0..v.n).map(|i| response(&v, i)).collect();
            let a: Vec<f64> = ya.iter().map(|r| r.1).collect();
            let ones = vec![1.0; v.n];
            xt_v(&v, layout, &ones, Some(&a), &mut s1);
            xt_sq(&v, layout, &a, &mut s2);
            for &(y, a) in &ya {
                t[0] += a;
                t[1] += a * y;
                t[2] += a * y * y;
            }
            (s1, s2, t)
        },
        |(mut a1, mut a2, mut ta), (b1, b2, tb)| {
            for (x, y) in a1.iter_mut().zip(&b1) {
                *x += y;
            }
            for (x, y) in a2.iter_mut().zip(&b2) {
                *x += y;
            }
            for (x, y) in ta.iter_mut().zip(tb) {
                *x += y;
            }
            (a1, a2, ta)
        },
    );
    let ybar = sum_y / sum_a;
    let sd_y = (sum_yy / sum_a - ybar * ybar).max(0.0).sqrt();
    let mut center = vec![0.0; p];
    let mut scale = vec![1.0; p];
    for j in (intercept as usize)..p {
        let mean = s1[j] / sum_a;
        // Without an intercept glmnet neither centres nor uses a centred variance.
        let var = if intercept {
            (s2[j] / sum_a - mean * mean).max(0.0)
        } else {
            s2[j] / sum_a
        };
        if intercept {
            center[j] = mean;
        }
        // Constant columns (no variation) are left out, as glmnet does.
        let constant = var == 0.0 || var <= 1e-13 * mean * mean;
        scale[j] = if constant {
            0.0
        } else if standardize {
            var.sqrt()
        } else {
            1.0
        };
    }
    (center, scale, sd_y)
}

/// Everything [`fit_path`] fixes before the first λ: the problem, the row totals, the first
/// warnings, the null model and the penalty bookkeeping.
struct Setup<'a> {
    prob: Problem<'a>,
    tot: crate::glm::irls::Totals,
    warnings: Vec<String>,
    null: NullModel,
    vp: Vec<f64>,
    ridge_scale: f64,
}

/// Validate the options and build the penalised problem on `ds` (one validation pass and one
/// moments pass).
fn setup<'a>(ds: &'a Dataset, opts: &PathOptions) -> Result<Setup<'a>> {
    let design = ds.design();
    let layout = &design.layout;
    let p = layout.p;
    let intercept = layout.intercept;
    if !(0.0..=1.0).contains(&opts.alpha) {
        return Err(Error::Usage(format!("--alpha must be in [0, 1], got {}", opts.alpha)));
    }
    if opts.penalty_factor.len() != p || opts.penalty_factor.iter().any(|f| f.is_nan() || *f < 0.0) {
        return Err(Error::Usage("penalty factors must be non-negative numbers".into()));
    }
    let mut fo = FitOptions::new(opts.family, Some(opts.link))?;
    fo.max_iter = opts.max_iter;
    let (tot, mut warnings, null) = prepare(ds, opts.family)?;
    let n = tot.sum_w;
    let (center, scale, sd_y) = moments(ds, intercept, opts.standardize);
    let ridge_scale = if opts.family == Family::Gaussian && sd_y > 0.0 {
        sd_y
    } else {
        1.0
    };

    // Penalty factors: glmnet rescales them to sum to the number of columns (elastic net).
    let first = intercept as usize;
    let mut vp = opts.penalty_factor.clone();
    if intercept {
        vp[0] = 0.0;
    }
    if opts.penalty == PathPenalty::ElasticNet {
        let total: f64 = vp[first..].iter().sum();
        if total <= 0.0 {
            return Err(Error::Usage("every penalty factor is 0: nothing to penalise".into()));
        }
        let k = (p - first) as f64 / total;
        for f in &mut vp[first..] {
            *f *= k;
        }
    }
    // Units and the always-present base set.
    let mut unit_of = vec![usize::MAX; p];
    let mut units = Vec::new();
    let mut base: Vec<usize> = if intercept { vec![0] } else { vec![] };
    let mut in_group = vec![false; p];
    if opts.penalty == PathPenalty::Group {
        for g in &opts.groups {
            let cols: Vec<usize> = g.iter().copied().filter(|&j| j >= first && scale[j] > 0.0).collect();
            if cols.is_empty() {
                continue;
            }
            for &j in g {
                in_group[j] = true;
            }
            let f0 = vp[cols[0]];
            if cols.iter().any(|&j| vp[j] != f0) {
                return Err(Error::Usage(format!(
                    "the columns of one group need the same penalty factor ({} and {} differ)",
                    design.coef_name(cols[0]),
                    design.coef_name(*cols.iter().find(|&&j| vp[j] != f0).unwrap_or(&cols[0]))
                )));
            }
            if f0 == 0.0 {
                base.extend_from_slice(&cols);
                continue;
            }
            for &j in &cols {
                unit_of[j] = units.len();
            }
            units.push(Unit {
                weight: (cols.len() as f64).sqrt() * f0,
                factor: f0 / ridge_scale,
                cols,
            });
        }
    }
    for j in first..p {
        if in_group[j] || scale[j] == 0.0 {
            continue;
        }
        if vp[j] == 0.0 {
            base.push(j);
        } else {
            unit_of[j] = units.len();
            units.push(Unit {
                cols: vec![j],
                weight: vp[j],
                factor: vp[j] / ridge_scale,
            });
        }
    }
    base.sort_unstable();
    let excluded = (first..p).filter(|&j| scale[j] == 0.0).count();
    if excluded > 0 {
        warnings.push(format!("{excluded} constant column(s) left out of the penalised fit"));
    }
    let prob = Problem {
        ds,
        fo,
        p,
        intercept,
        n,
        center: center.clone(),
        scale: scale.clone(),
        base,
        units,
        unit_of,
        alpha: opts.alpha,
    };
    Ok(Setup {
        prob,
        tot,
        warnings,
        null,
        vp,
        ridge_scale,
    })
}

/// Fit the penalised path over the dataset's chunk cache.
pub fn fit_path(ds: &Dataset, opts: &PathOptions) -> Result<Path> {
    let t0 = Instant::now();
    let Setup {
        prob,
        tot,
        mut warnings,
        null,
        vp,
        ridge_scale,
    } = setup(ds, opts)?;
    let (p, intercept, n) = (prob.p, prob.intercept, prob.n);
    let first = intercept as usize;
    let ybar = tot.sum_wy / tot.sum_w;
    let (center, scale) = (prob.center.clone(), prob.scale.clone());
    let mut passes = 1;
    let null_deviance = match null {
        NullModel::Separate => null_deviance_with_offset(ds, &prob.fo, ybar),
        _ => f64::NAN, // from the first pass below
    };

    // The null fit: intercept and unpenalised columns only (λ = ∞).
    let mut beta = vec![0.0; p];
    if intercept {
        let b0 = opts.link.link(ybar.clamp(1e-10, f64::MAX));
        beta[0] = if b0.is_finite() { b0 } else { 0.0 };
    }
    let first_pass = irls_pass(
        ds,
        &prob.fo,
        Eval::Beta(&beta),
        null,
        &ColumnSubset::new(p, &prob.base),
        Rhs::Score,
        ScoreCols::All,
    );
    passes += 1;
    let null_deviance = if null_deviance.is_nan() {
        first_pass.null_dev.value()
    } else {
        null_deviance
    };
    if null_deviance.is_nan() || null_deviance <= 0.0 {
        return Err(Error::Numerical(format!(
            "the null deviance is {null_deviance}: the response does not vary, nothing to fit"
        )));
    }
    let thr = opts.thresh * null_deviance / n;
    let mut cur = Some((ColumnSubset::new(p, &prob.base), first_pass));
    let mut want = prob.base.clone();
    let mut step = f64::INFINITY;
    let mut null_its = 0;
    loop {
        let (sub, st) = match cur.take() {
            Some(x) => x,
            None => {
                passes += 1;
                prob.pass(&beta, &want, ScoreCols::All)?
            }
        };
        // λ_max comes from the score here: converge far past `thr` (Newton, a pass or two more).
        if step < thr * 1e-12 || null_its >= opts.max_iter {
            cur = Some((sub, st));
            break;
        }
        let (b, s) = prob.solve(&beta, &sub, &st, f64::INFINITY, thr);
        beta = b;
        step = s;
        null_its += 1;
    }
    let (sub0, st0) = cur.as_ref().expect("null fit pass");
    let amax = opts.alpha.max(1e-3);
    let lambda_max = prob
        .units
        .iter()
        .map(|u| prob.unit_score_norm(&st0.xtwz, u) / (u.weight * amax))
        .fold(0.0, f64::max);
    let _ = sub0;
    if lambda_max.is_nan() || lambda_max <= 0.0 || !lambda_max.is_finite() {
        return Err(Error::Numerical(format!(
            "lambda_max is {lambda_max}: no penalised column is related to the response"
        )));
    }
    let lambdas: Vec<f64> = match opts.lambda {
        Some(l) => {
            if !(l > 0.0 && l.is_finite()) {
                return Err(Error::Usage(format!("--lambda must be positive, got {l}")));
            }
            // Warm starts down to λ (steps of WARM_RATIO from λ_max; only the last point is reported):
            // far below λ_max a cold start hands coordinate descent an ill-conditioned
            // problem with many columns at once (glmnet's docs advise a sequence for the same
            // reason). The solution at λ is the same; intermediate fits only cost passes.
            let mut v = Vec::new();
            let mut x = lambda_max * WARM_RATIO;
            while x > l {
                v.push(x);
                x *= WARM_RATIO;
            }
            v.push(l);
            v
        }
        None => {
            if opts.nlambda < 1 {
                return Err(Error::Usage("--nlambda must be at least 1".into()));
            }
            let ratio = opts
                .lambda_min_ratio
                .unwrap_or(if tot.n_ok as usize > p - first { 1e-4 } else { 1e-2 });
            if !(ratio > 0.0 && ratio < 1.0) {
                return Err(Error::Usage(format!(
                    "--lambda-min-ratio must be in (0, 1), got {ratio}"
                )));
            }
            let alf = if opts.nlambda > 1 {
                ratio.powf(1.0 / (opts.nlambda - 1) as f64)
            } else {
                1.0
            };
            let mut v = Vec::with_capacity(opts.nlambda);
            let mut l = lambda_max;
            for _ in 0..opts.nlambda {
                v.push(l);
                l *= alf;
            }
            v
        }
    };
    let t_setup = t0.elapsed().as_secs_f64();

    let mut points: Vec<PathPoint> = Vec::new();
    let mut lam_prev = lambda_max;
    for (m, &lam) in lambdas.iter().enumerate() {
        let mut its = 0;
        let mut converged = true;
        if lam < lambda_max {
            // Sequential strong rule, plus everything non-zero and the previous set.
            let (sub, st) = cur.as_ref().expect("pass at the current beta");
            let st_score = &st.xtwz;
            // When λ falls by more than half the strong rule keeps everything; screen with half
            // the KKT threshold instead (the KKT check after convergence is what is exact).
            let cut = prob.alpha * (2.0 * lam - lam_prev).max(0.5 * lam);
            want = sub.columns().to_vec();
            want.extend(prob.entering(st_score, sub, cut));
            want.sort_unstable();
            want.dedup();
            let mut step = f64::INFINITY;
            // Columns the last solve covered (KKT is checked outside them), and the score of
            // the last pass (to look ahead).
            let mut solved = ColumnSubset::new(p, &want);
            let mut last_score: Vec<f64> = st_score.to_vec();
            // The λ whose solution `last_score` was computed at (inner passes compute the score
            // on the working set only, so it can be the previous λ's).
            let mut score_lam = lam_prev;
            let mut halving = Halving::default();
            loop {
                let (sub, st) = match cur.take() {
                    Some((sub, st)) if want.iter().all(|&j| sub.local(j).is_some()) => (sub, st),
                    _ => {
                        let mut cols = want.clone();
                        // The pass that should confirm convergence also accumulates the Gram of
                        // the next λ's likely entrants, so that λ can start without a pass.
                        if let (true, Some(&next)) = (step < thr, lambdas.get(m + 1)) {
                            // The sequential strong rule from the score's λ to the next one.
                            let cut = prob.alpha * (2.0 * next - score_lam).max(0.5 * next);
                            let inside = ColumnSubset::new(p, &want);
                            cols.extend(prob.entering(&last_score, &inside, cut));
                        }
                        passes += 1;
                        its += 1;
                        // The score over all p columns is needed by a pass that may end this
                        // λ (convergence to confirm, or the iteration budget spent) and by the
                        // first one after λ's first solve, whose score picks the next λ's likely
                        // entrants (with only the previous λ's score for that, the path took 63
                        // passes instead of 56 on the 1M-row benchmark). Other inner passes
                        // solve on the working set alone.
                        let full = step < thr || its >= opts.max_iter || its == 1;
                        let score = if full { ScoreCols::All } else { ScoreCols::Subset };
                        prob.pass(&beta, &cols, score)?
                    }
                };
                let objective = st.dev.value() / (2.0 * n) + prob.penalty_value(&beta, lam);
                if halving.retreat(&mut beta, objective, true) {
                    step = f64::INFINITY;
                    continue;
                }
                if step < thr {
                    let add = prob.violators(&st.xtwz, &solved, lam);
                    if add.is_empty() {
                        cur = Some((sub, st));
                        break;
                    }
                    want.extend(add);
                    want.sort_unstable();
                    want.dedup();
                    step = f64::INFINITY;
                    cur = Some((sub, st));
                    continue;
                }
                if its >= opts.max_iter {
                    converged = false;
                    cur = Some((sub, st));
                    break;
                }
                let (b, s) = prob.solve(&beta, &sub, &st, lam, thr);
                halving.step(&mut beta, b, objective);
                step = s;
                want = sub.columns().to_vec();
                solved = sub;
                if st.score_cols == ScoreCols::All {
                    last_score = st.xtwz.into_vec();
                    score_lam = lam;
                }
            }
        }
        let (_, st) = cur.as_ref().expect("pass at the current beta");
        let deviance = st.dev.value();
        let nz: Vec<(usize, f64)> = beta
            .iter()
            .enumerate()
            .filter(|(_, b)| **b != 0.0)
            .map(|(j, b)| (j, *b))
            .collect();
        let df = nz.iter().filter(|(j, _)| !(intercept && *j == 0)).count();
        points.push(PathPoint {
            lambda: lam,
            df,
            deviance,
            dev_ratio: 1.0 - deviance / null_deviance,
            iterations: its,
            kkt_max: prob.kkt_max(&st.xtwz, &beta, lam),
            converged,
            beta: nz,
        });
        if !converged {
            warnings.push(format!(
                "IRLS did not converge in {} passes at lambda[{m}] = {lam:.6e}",
                opts.max_iter
            ));
        }
        lam_prev = lam;
        // glmnet's early stop (glmnet.path in R 4.1, and the same rules in its C++ paths).
        let mnl = MNLAM.min(lambdas.len());
        if opts.lambda.is_none() && m + 1 >= mnl && m > 0 {
            let r = points[m].dev_ratio;
            let small = match opts.family {
                Family::Gaussian => r - points[m - 1].dev_ratio < FDEV * r,
                // Poisson: the change over the last mnl − 1 values, 10·fdev relative.
                Family::Poisson => r - points[m + 1 - mnl].dev_ratio < 10.0 * FDEV * r,
                _ => r - points[m - 1].dev_ratio < FDEV,
            };
            if r > DEVMAX || small {
                break;
            }
        }
    }
    if opts.lambda.is_some() && points.len() > 1 {
        points.drain(..points.len() - 1);
    }
    let timing = vec![
        ("path_setup".to_string(), t_setup),
        ("path".to_string(), t0.elapsed().as_secs_f64() - t_setup),
    ];
    drop(cur);
    crate::linalg::spare::release();
    Ok(Path {
        options: opts.clone(),
        points,
        lambda_max,
        null_deviance,
        n_obs: tot.n_ok,
        sum_weights: n,
        center,
        scale,
        penalty_factor: vp,
        ridge_scale,
        passes,
        warnings,
        timing,
    })
}

/// Where [`prox_steps`] stopped.
#[derive(Debug, Clone)]
pub struct ProxSteps {
    /// Coefficients (original scale, length p).
    pub beta: Vec<f64>,
    /// Residual deviance Σ aᵢ dᵢ at `beta`.
    pub deviance: f64,
    /// Proximal steps taken.
    pub steps: usize,
    /// Passes over the data.
    pub passes: usize,
    /// Whether the last step moved less than the convergence threshold (the optimum is reached).
    pub converged: bool,
    /// Largest KKT violation at `beta` (standardised scale, per observation).
    pub kkt_max: f64,
}

/// Proximal Fisher-scoring steps of the penalised objective at one λ (the options of a path,
/// e.g. `path.options`), started from `start` on `ds` — typically the fitted dataset with some
/// rows reweighted or removed ([`Dataset::reweighted`]). Each step is one pass at the current β
/// (deviance, score over all p columns, XᵀWX over the support, the unpenalised columns and any
/// column violating the KKT conditions there) and one coordinate-descent solve of the penalised
/// quadratic model: the active set may change. Standardisation, N and the penalty are those of
/// `ds` at the same λ, exactly what a glmnet refit on the reweighted rows at that λ optimises.
/// Stops after `max_steps` steps or at convergence (glmnet's rule, `opts.thresh`).
pub fn prox_steps(ds: &Dataset, opts: &PathOptions, lambda: f64, start: &[f64], max_steps: usize) -> Result<ProxSteps> {
    let Setup { prob, tot, null, .. } = setup(ds, opts)?;
    let p = prob.p;
    if start.len() != p {
        return Err(Error::Usage(format!("starting values need {p} coefficients")));
    }
    let ybar = tot.sum_wy / tot.sum_w;
    let mut null_deviance = match null {
        NullModel::Separate => null_deviance_with_offset(ds, &prob.fo, ybar),
        _ => f64::NAN,
    };
    let mut beta = start.to_vec();
    // Columns constant on these rows (e.g. a word only the removed rows contain) leave the
    // problem, as in a glmnet refit: their coefficient is 0.
    let first = prob.intercept as usize;
    for (b, &sc) in beta.iter_mut().zip(&prob.scale).skip(first) {
        if sc == 0.0 {
            *b = 0.0;
        }
    }
    let mut want: Vec<usize> = prob.base.clone();
    want.extend((0..p).filter(|&j| beta[j] != 0.0));
    want.sort_unstable();
    want.dedup();
    let (mut steps, mut passes) = (0, 0);
    let mut step = f64::INFINITY;
    let mut thr = f64::NAN;
    let mut halving = Halving::default();
    loop {
        let sub = ColumnSubset::new(p, &want);
        let st = irls_pass(ds, &prob.fo, Eval::Beta(&beta), null, &sub, Rhs::Score, ScoreCols::All);
        passes += 1;
        let valid = st.invalid == 0 && st.dev.value().is_finite();
        let objective = st.dev.value() / (2.0 * prob.n) + prob.penalty_value(&beta, lambda);
        if halving.retreat(&mut beta, objective, valid) {
            step = f64::INFINITY;
            continue;
        }
        if !valid {
            return Err(Error::Numerical(format!(
                "penalised IRLS left the {} family's domain ({} rows with invalid fitted values)",
                prob.fo.family.name(),
                st.invalid
            )));
        }
        if null_deviance.is_nan() {
            null_deviance = st.null_dev.value();
            thr = opts.thresh * null_deviance / prob.n;
        } else if thr.is_nan() {
            thr = opts.thresh * null_deviance / prob.n;
        }
        let done = step < thr;
        let add = if steps >= max_steps && !done {
            Vec::new()
        } else {
            prob.violators(&st.xtwz, &sub, lambda)
        };
        if (done || steps >= max_steps) && add.is_empty() {
            return Ok(ProxSteps {
                kkt_max: prob.kkt_max(&st.xtwz, &beta, lambda),
                deviance: st.dev.value(),
                beta,
                steps,
                passes,
                converged: done,
            });
        }
        if !add.is_empty() {
            // Columns the step must be free to move: pass again with them in the Gram.
            want.extend(add);
            want.sort_unstable();
            want.dedup();
            step = f64::INFINITY;
            continue;
        }
        let (b, s) = prob.solve(&beta, &sub, &st, lambda, thr);
        halving.step(&mut beta, b, objective);
        step = s;
        steps += 1;
    }
}

/// The fit at path point `index` as a [`Fit`], for the summary and the diagnostics: the kept
/// columns are the intercept and the non-zero coefficients (the active set), and `information`
/// is XᵀWX at β̂ over them plus the ridge part of the penalty, N·λ(1 − α)·f_j·s_j² (one pass).
/// No standard errors (as glmnet); dispersion 1, or Pearson χ²/(n − |active set|).
pub fn fit_at(ds: &Dataset, path: &Path, index: usize) -> Result<Fit> {
    let pt = path.points.get(index).ok_or_else(|| {
        Error::Usage(format!(
            "--select-lambda {index}: the path has {} values",
            path.points.len()
        ))
    })?;
    let design = ds.design();
    let p = design.layout.p;
    let o = &path.options;
    let fo = FitOptions::new(o.family, Some(o.link))?;
    let mut beta = vec![0.0; p];
    for &(j, b) in &pt.beta {
        beta[j] = b;
    }
    let mut kept: Vec<usize> = pt.beta.iter().map(|&(j, _)| j).collect();
    if design.layout.intercept && kept.first() != Some(&0) {
        kept.insert(0, 0);
    }
    let sub = ColumnSubset::new(p, &kept);
    let st = irls_pass(
        ds,
        &fo,
        Eval::Beta(&beta),
        NullModel::Separate,
        &sub,
        Rhs::Score,
        ScoreCols::All,
    );
    let m = kept.len();
    let ridge_of = |j: usize| -> f64 {
        if design.layout.intercept && j == 0 {
            0.0
        } else {
            path.sum_weights * pt.lambda * (1.0 - o.alpha) * path.penalty_factor[j] * path.scale[j] * path.scale[j]
                / path.ridge_scale
        }
    };
    let penalty_curvature: Vec<f64> = kept.iter().map(|&j| ridge_of(j)).collect();
    let mut information = st.gram.to_vec();
    for (k, c) in penalty_curvature.iter().enumerate() {
        information[k * m + k] += c;
    }
    // The group lasso's curvature on each active group (a rank |g| − 1 block): leaving it out
    // makes leave-one-out predictions of group-lasso fits badly wrong (research/afif.md §5).
    let mut penalty_blocks = Vec::new();
    if o.penalty == PathPenalty::Group && o.alpha > 0.0 {
        let first = design.layout.intercept as usize;
        for g in &o.groups {
            let cols: Vec<usize> = g
                .iter()
                .copied()
                .filter(|&j| j >= first && path.scale[j] > 0.0)
                .collect();
            let Some(&c0) = cols.first() else { continue };
            let f0 = path.penalty_factor[c0];
            let positions: Vec<usize> = cols.iter().filter_map(|j| kept.binary_search(j).ok()).collect();
            if f0 == 0.0 || positions.len() != cols.len() {
                continue;
            }
            let bt: Vec<f64> = cols.iter().map(|&j| beta[j] * path.scale[j]).collect();
            let nb = bt.iter().map(|x| x * x).sum::<f64>().sqrt();
            if nb == 0.0 {
                continue;
            }
            let k = cols.len();
            let c = path.sum_weights * pt.lambda * o.alpha * (k as f64).sqrt() * f0;
            let mut block = vec![0.0; k * k];
            for a in 0..k {
                for b in 0..k {
                    let delta = if a == b { 1.0 / nb } else { 0.0 };
                    block[a * k + b] =
                        c * path.scale[cols[a]] * path.scale[cols[b]] * (delta - bt[a] * bt[b] / (nb * nb * nb));
                }
            }
            for a in 0..k {
                for b in 0..k {
                    information[positions[b] * m + positions[a]] += block[a * k + b];
                }
            }
            penalty_blocks.push(PenaltyBlock {
                positions,
                matrix: block,
            });
        }
    }
    let n = path.n_obs as f64;
    let df_residual = n - m as f64;
    let dispersion = if o.family.fixed_dispersion() {
        1.0
    } else if df_residual > 0.0 {
        st.pearson.value() / df_residual
    } else {
        f64::NAN
    };
    // How the penalty gradient scales with each column's s_j (for influence under the
    // re-standardisation a refit performs).
    let standardization = (o.standardize && o.penalty == PathPenalty::ElasticNet).then(|| {
        let n = path.sum_weights;
        let mut st = Standardization {
            l1: vec![0.0; m],
            ridge: vec![0.0; m],
            mean: vec![0.0; m],
            scale: vec![0.0; m],
            n,
            centered: design.layout.intercept,
        };
        for (k, &j) in kept.iter().enumerate() {
            if design.layout.intercept && j == 0 {
                continue;
            }
            let (f, s) = (path.penalty_factor[j], path.scale[j]);
            st.mean[k] = path.center[j];
            st.scale[k] = s;
            st.l1[k] = n * pt.lambda * o.alpha * f * s * beta[j].signum();
            st.ridge[k] = n * pt.lambda * (1.0 - o.alpha) * f * s * s * beta[j] / path.ridge_scale;
        }
        st
    });
    // The pass's Xᵀ(w ∘ (y − μ)/μ′) is −Σ ℓ′ᵢxᵢ.
    let score: Vec<f64> = kept.iter().map(|&j| -st.xtwz[j]).collect();
    let penalty_kink: Vec<bool> = if o.penalty == PathPenalty::ElasticNet && o.alpha > 0.0 {
        kept.iter()
            .map(|&j| !(design.layout.intercept && j == 0) && path.penalty_factor[j] > 0.0)
            .collect()
    } else {
        Vec::new()
    };
    let penalty = match o.penalty {
        PathPenalty::ElasticNet => Penalty::ElasticNet {
            lambda: pt.lambda,
            alpha: o.alpha,
        },
        PathPenalty::Group => Penalty::Group {
            lambda: pt.lambda,
            alpha: o.alpha,
        },
    };
    let timing = path.timing.clone();
    Ok(Fit {
        family: o.family,
        link: o.link,
        penalty,
        n_obs: path.n_obs,
        n_params: p,
        rank: m,
        beta,
        aliased: vec![false; p],
        std_error: vec![None; p],
        deviance: st.dev.value(),
        null_deviance: path.null_deviance,
        aic: f64::NAN,
        dispersion,
        pearson_chi2: st.pearson.value(),
        df_residual,
        df_null: n - design.layout.intercept as usize as f64,
        iterations: path.passes,
        tail: None,
        converged: path.points.iter().all(|p| p.converged),
        warnings: path.warnings.clone(),
        kept,
        cov_unscaled: Mat::zeros(0, 0),
        information,
        information_blocks: None,
        penalty_curvature,
        penalty_blocks,
        standardization,
        penalty_kink,
        score,
        sum_weights: path.sum_weights,
        timing,
    })
}
