//! Exact regression diagnostics for every row, as statsmodels' `GLMInfluence` and R's
//! `influence.measures` define them, in two passes and O(p²) memory:
//!
//! - `hat`  hᵢ = wᵢ xᵢᵀ F⁻¹ xᵢ, with F = XᵀWX over the non-aliased columns (plus the ridge term
//!   when penalised) and W the expected information weights at μ̂ (R's convention; statsmodels'
//!   default is the observed information, `--observed`). F⁻¹ is formed once, so each row costs
//!   O(nnzᵢ²).
//! - `resid_response` y − μ; `resid_pearson` (y − μ)·√aᵢ/√V(μ) (prior weight aᵢ; right for every
//!   link); `resid_deviance` sign(y − μ)·√(aᵢ d(y, μ));
//! - `resid_studentized` r_P/√(φ(1 − h)); `cooks_d` r_P² h/(φ·rank·(1 − h)²);
//! - `cbar` Pregibon's C̄ = r_P² h/(1 − h) (the score of the influence-sketch seed algorithm;
//!   not Cook's distance); `dffits` r_S·√(h/(1 − h)).
//!
//! Rows with h ≥ 1 − 1e-10 get NaN for the quantities that divide by 1 − h (R gives NaN/Inf).

use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::BinaryHeap;

use rayon::prelude::*;

use crate::chunk::ChunkView;
use crate::design::Layout;
use crate::error::Result;
use crate::glm::irls::response;
use crate::glm::Fit;
use crate::ingest::Dataset;
use crate::linalg::block::{BlockInverse, SchurFactor};
use crate::linalg::chol::{GramFactor, ALIAS_TOL};
use crate::linalg::{row_quad_forms, sandwich, symmetrize_lower, x_beta, ColumnSubset, SandwichScratch};

/// Leverage at or above this is treated as 1 (the row is fitted exactly).
pub const HAT_ONE: f64 = 1.0 - 1e-10;

/// Options of [`diagnose`].
#[derive(Debug, Clone, Copy)]
pub struct DiagOptions {
    /// Use the observed information (statsmodels' default) instead of the expected (R's).
    pub observed: bool,
    /// Rows (largest `cooks_d`) that get DFBETAS.
    pub top_k: usize,
}

impl Default for DiagOptions {
    fn default() -> Self {
        DiagOptions {
            observed: false,
            top_k: 100,
        }
    }
}

/// Diagnostics of one chunk's rows, column by column.
#[derive(Debug, Clone, Default)]
pub struct RowDiagnostics {
    /// Input row ids.
    pub row: Vec<u64>,
    /// Linear predictor (with offset).
    pub eta: Vec<f64>,
    /// Fitted mean.
    pub mu: Vec<f64>,
    /// Leverage.
    pub hat: Vec<f64>,
    /// y − μ.
    pub resid_response: Vec<f64>,
    /// Pearson residual.
    pub resid_pearson: Vec<f64>,
    /// Deviance residual.
    pub resid_deviance: Vec<f64>,
    /// Internally studentized Pearson residual.
    pub resid_studentized: Vec<f64>,
    /// Cook's distance.
    pub cooks_d: Vec<f64>,
    /// Pregibon's C-bar.
    pub cbar: Vec<f64>,
    /// DFFITS.
    pub dffits: Vec<f64>,
    /// Not written out: √wᵢ·r_P,ᵢ/(1 − hᵢ), the factor of F⁻¹xᵢ in the row's one-step DFBETA.
    pub dfbeta_scale: Vec<f64>,
}

impl RowDiagnostics {
    /// Empty columns with room for `n` rows each (a chunk's rows, pushed without regrowing).
    pub fn with_capacity(n: usize) -> RowDiagnostics {
        let v = || Vec::with_capacity(n);
        RowDiagnostics {
            row: Vec::with_capacity(n),
            eta: v(),
            mu: v(),
            hat: v(),
            resid_response: v(),
            resid_pearson: v(),
            resid_deviance: v(),
            resid_studentized: v(),
            cooks_d: v(),
            cbar: v(),
            dffits: v(),
            dfbeta_scale: v(),
        }
    }

    /// Column names in output order (after `row`).
    pub const COLUMNS: [&'static str; 10] = [
        "eta",
        "mu",
        "hat",
        "resid_response",
        "resid_pearson",
        "resid_deviance",
        "resid_studentized",
        "cooks_d",
        "cbar",
        "dffits",
    ];

    /// The f64 columns in [`RowDiagnostics::COLUMNS`] order, by value (no copy).
    pub fn into_columns(self) -> (Vec<u64>, [Vec<f64>; 10]) {
        (
            self.row,
            [
                self.eta,
                self.mu,
                self.hat,
                self.resid_response,
                self.resid_pearson,
                self.resid_deviance,
                self.resid_studentized,
                self.cooks_d,
                self.cbar,
                self.dffits,
            ],
        )
    }
}

/// Counts and top rows, for `summary.json`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DiagSummary {
    /// `expected` (R) or `observed` (statsmodels' default).
    pub information: &'static str,
    /// Σ hat (equals the rank for an unpenalised fit).
    pub sum_hat: f64,
    /// Rows with h > 2p/n.
    pub n_high_leverage: u64,
    /// Rows with |resid_studentized| > 3.
    pub n_large_residual: u64,
    /// Rows with cooks_d > 4/n.
    pub n_influential: u64,
    /// Rows with h ≥ 1 − 1e-10 (NaN diagnostics).
    pub n_hat_one: u64,
    /// The 10 rows with the largest Cook's distance: (row, cooks_d, hat, resid_studentized).
    pub top_cooks: Vec<TopRow>,
    /// Cut-offs used.
    pub cutoffs: Cutoffs,
    /// Notes on conventions (penalised fits, p used in Cook's distance).
    pub notes: Vec<String>,
}

/// One row in the top list.
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct TopRow {
    /// Input row id.
    pub row: u64,
    /// Cook's distance.
    pub cooks_d: f64,
    /// Leverage.
    pub hat: f64,
    /// Studentized residual.
    pub resid_studentized: f64,
}

/// Cut-offs for the counts.
#[derive(Debug, Clone, Copy, serde::Serialize)]
pub struct Cutoffs {
    /// 2p/n.
    pub hat: f64,
    /// 3.
    pub resid_studentized: f64,
    /// 4/n.
    pub cooks_d: f64,
}

/// DFBETAS of the top rows.
#[derive(Debug, Clone)]
pub struct Dfbetas {
    /// Row ids, by decreasing Cook's distance.
    pub rows: Vec<u64>,
    /// Coefficient index of each column (the non-aliased coefficients).
    pub coefs: Vec<usize>,
    /// `values[r][c]`: one-step change of coefficient `coefs[c]` when row `rows[r]` is removed,
    /// divided by that coefficient's standard error.
    pub values: Vec<Vec<f64>>,
}

/// A top-K candidate (ordered by Cook's distance, then row id), its row's DFBETA scale, and
/// where the row is (chunk, position in the chunk).
#[derive(Debug, Clone, Copy, PartialEq)]
struct ByCooks(TopRow, f64, (usize, usize));
impl Eq for ByCooks {}
impl PartialOrd for ByCooks {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for ByCooks {
    // Reversed: the heap's top is the smallest kept value.
    fn cmp(&self, o: &Self) -> Ordering {
        o.0.cooks_d.total_cmp(&self.0.cooks_d).then(o.0.row.cmp(&self.0.row))
    }
}

/// Weights of the hat matrix at μ: expected wᵢ = aᵢ μ′²/V, or statsmodels' observed
/// wᵢ·(1 + (y − μ)(V g″ + V′ g′)/(g′ V)) (the 1/φ of both terms of the observed Hessian cancels).
pub(crate) fn hat_weight(fit: &Fit, observed: bool, y: f64, a: f64, eta: f64, mu: f64) -> f64 {
    let (family, link) = (fit.family, fit.link);
    let d = link.mu_eta(eta);
    let var = family.variance(mu);
    let w = a * d * d / var;
    if !observed || link == family.canonical_link() {
        return w;
    }
    let g1 = 1.0 / d;
    let g2 = link.deriv2(mu, eta);
    let tmp = (y - mu) * (var * g2 + family.variance_deriv(mu) * g1) / (g1 * var);
    w * (1.0 + tmp)
}

/// η (with offset) and μ of a chunk at β̂.
pub(crate) fn eta_mu(v: &ChunkView, fit: &Fit, ds: &Dataset, eta: &mut Vec<f64>) {
    eta.resize(v.n, 0.0);
    x_beta(v, &ds.design().layout, &fit.beta, eta);
    for (e, o) in eta.iter_mut().zip(v.offset) {
        *e += o;
    }
}

/// Add the fit's penalty curvature (ridge diagonal and group blocks) to an m×m matrix over
/// its kept columns.
pub(crate) fn add_penalty_curvature(fit: &Fit, g: &mut [f64]) {
    let m = fit.kept.len();
    for (k, c) in fit.penalty_curvature.iter().enumerate() {
        g[k * m + k] += c;
    }
    for b in &fit.penalty_blocks {
        let k = b.positions.len();
        for (a, &pa) in b.positions.iter().enumerate() {
            for (c, &pc) in b.positions.iter().enumerate() {
                g[pc * m + pa] += b.matrix[a * k + c];
            }
        }
    }
}

/// Whether the information the hat values use is the fit's own (expected information, or a
/// canonical link where observed and expected coincide).
pub(crate) fn uses_fit_information(fit: &Fit, observed: bool) -> bool {
    !observed || fit.link == fit.family.canonical_link()
}

/// The information matrix the hat values use, over the fit's kept columns (m×m): the fit's
/// own (borrowed where stored: 3.3 GB at m = 20,450) unless the observed information differs
/// from it.
pub(crate) fn information<'a>(ds: &Dataset, fit: &'a Fit, observed: bool) -> Cow<'a, [f64]> {
    if uses_fit_information(fit, observed) {
        return fit.information_matrix();
    }
    let layout = &ds.design().layout;
    let kept = ColumnSubset::new(layout.p, &fit.kept);
    let m = kept.len();
    let mut g = ds
        .cache
        .par_fold_groups(
            ((2usize << 30) / (m * m * 8).max(1)).clamp(1, crate::store::FOLD_GROUPS),
            || {
                (
                    crate::linalg::spare::zeroed(m * m),
                    Vec::new(),
                    Vec::new(),
                    SandwichScratch::default(),
                )
            },
            |(mut acc, mut eta, mut w, mut sc), v| {
                crate::linalg::clear_upper_simd_state();
                eta_mu(&v, fit, ds, &mut eta);
                w.resize(v.n, 0.0);
                for i in 0..v.n {
                    let (y, a) = response(&v, i);
                    let mu = fit.link.inverse(eta[i]);
                    w[i] = if a == 0.0 {
                        0.0
                    } else {
                        hat_weight(fit, true, y, a, eta[i], mu)
                    };
                }
                sandwich(&v, layout, &w, &kept, &mut acc, &mut sc);
                (acc, eta, w, sc)
            },
            |mut a, b| {
                for (x, y) in a.0.iter_mut().zip(&b.0) {
                    *x += y;
                }
                a
            },
        )
        .0;
    symmetrize_lower(&mut g, m);
    // The penalty's curvature (the ridge part) belongs in F for a penalised fit.
    add_penalty_curvature(fit, &mut g);
    Cow::Owned(g)
}

/// F⁻¹ as diagnostics use it: dense over the kept columns (generalised inverse, zero on the
/// columns left out), or through the blocks of a wide categorical term.
enum Inverse {
    Dense(Vec<f64>),
    Blocked(Box<BlockInverse>),
}

impl Inverse {
    /// `out[i] = xᵢᵀ F⁻¹ xᵢ` for the chunk's rows (`kept`: the fit's kept columns).
    fn row_quad_forms(&self, v: &ChunkView, layout: &Layout, kept: &ColumnSubset, out: &mut [f64]) {
        match self {
            Inverse::Dense(mfull) => row_quad_forms(v, layout, kept, mfull, out),
            Inverse::Blocked(b) => b.row_quad_forms(v, layout, out),
        }
    }

    /// The diagonal of F⁻¹ (m).
    fn diag(&self, m: usize) -> Vec<f64> {
        match self {
            Inverse::Dense(mfull) => (0..m).map(|c| mfull[c * m + c]).collect(),
            Inverse::Blocked(b) => b.diag(),
        }
    }

    /// F⁻¹x for `x` over the kept columns (m). The dense product runs over x's nonzeros only,
    /// each a contiguous column of the symmetric F⁻¹: O(nnz·m), where a row-by-row product
    /// would be O(m²) with a stride of m (hours at m = 20,450).
    fn apply(&self, x: &[f64]) -> Vec<f64> {
        match self {
            Inverse::Dense(mfull) => {
                let m = x.len();
                let mut out = vec![0.0; m];
                for (b, &xb) in x.iter().enumerate().filter(|(_, &xb)| xb != 0.0) {
                    for (o, &f) in out.iter_mut().zip(&mfull[b * m..(b + 1) * m]) {
                        *o += f * xb;
                    }
                }
                out
            }
            Inverse::Blocked(b) => b.apply(x),
        }
    }
}

/// Compute every row's diagnostics in chunk order, handing each chunk's to `sink` (which
/// writes it out, so memory stays O(p²) + a few chunks), and DFBETAS for the top rows.
pub fn diagnose(
    ds: &Dataset,
    fit: &Fit,
    opts: &DiagOptions,
    mut sink: impl FnMut(RowDiagnostics) -> Result<()>,
) -> Result<(DiagSummary, Dfbetas)> {
    let layout = &ds.design().layout;
    let p = layout.p;
    let kept = ColumnSubset::new(p, &fit.kept);
    let m = fit.kept.len();
    // A fit solved in blocks (a wide categorical term) keeps its information in blocks: F⁻¹ is
    // then used through them, never formed (unless a column is aliased or near it there).
    let blocked = match &fit.information_blocks {
        Some(b) if uses_fit_information(fit, opts.observed) => {
            SchurFactor::new(&b.a, &b.slices(), &b.split, &fit.kept, &vec![0.0; p], ALIAS_TOL)?
                .map(|f| f.block_inverse())
        }
        _ => None,
    };
    let (inv, n_aliased) = match blocked {
        Some(b) => (Inverse::Blocked(Box::new(b)), 0),
        None => {
            let g = information(ds, fit, opts.observed);
            let zero = vec![0.0; m];
            let all: Vec<usize> = (0..m).collect();
            // Columns linearly dependent on others on the fitted rows (a lasso can keep
            // identical bag-of-words columns) are left out: hat values depend only on the
            // column space.
            let factor = GramFactor::new(&g, m, &all, &zero, ALIAS_TOL)?;
            (Inverse::Dense(factor.inverse_full(m)), m - factor.kept.len())
        }
    };
    let phi = fit.dispersion;
    let rank = (fit.rank - n_aliased) as f64;
    let n = fit.n_obs as f64;
    let family = fit.family;
    let link = fit.link;
    let cut = Cutoffs {
        hat: 2.0 * rank / n,
        resid_studentized: 3.0,
        cooks_d: 4.0 / n,
    };
    // Expected information (or a canonical link, where observed = expected): wᵢ = aᵢ μ′ᵢ²/V(μᵢ).
    let expected_weight = !opts.observed || link == family.canonical_link();
    let inv_phi_rank = 1.0 / (phi * rank);
    let per_chunk = |v: ChunkView<'_>| -> RowDiagnostics {
        crate::linalg::clear_upper_simd_state();
        let n = v.n;
        let mut eta = Vec::new();
        eta_mu(&v, fit, ds, &mut eta);
        let mut q = vec![0.0; n];
        inv.row_quad_forms(&v, layout, &kept, &mut q);
        let col = || vec![0.0; n];
        let mut d = RowDiagnostics {
            row: v.row_id.to_vec(),
            eta: Vec::new(),
            mu: col(),
            hat: col(),
            resid_response: col(),
            resid_pearson: col(),
            resid_deviance: col(),
            resid_studentized: col(),
            cooks_d: col(),
            cbar: col(),
            dffits: col(),
            dfbeta_scale: col(),
        };
        // μ and dμ/dη from one exponential per row (stored in `cbar` until it is computed).
        for ((&e, mu), dmu) in eta.iter().zip(&mut d.mu).zip(&mut d.cbar) {
            (*mu, *dmu) = link.inverse_and_mu_eta(e);
        }
        for i in 0..n {
            let (y, a) = response(&v, i);
            let (e, mu) = (eta[i], d.mu[i]);
            let var = family.variance(mu);
            let w = if a == 0.0 {
                0.0
            } else if expected_weight {
                a * d.cbar[i] * d.cbar[i] / var
            } else {
                hat_weight(fit, opts.observed, y, a, e, mu)
            };
            let h = w * q[i];
            let rp = (y - mu) * (a / var).sqrt();
            d.hat[i] = h;
            d.resid_response[i] = y - mu;
            d.resid_pearson[i] = rp;
            if h >= HAT_ONE {
                d.resid_studentized[i] = f64::NAN;
                d.cooks_d[i] = f64::NAN;
                d.cbar[i] = f64::NAN;
                d.dffits[i] = f64::NAN;
            } else {
                let r = 1.0 / (1.0 - h);
                let rs = rp / (phi * (1.0 - h)).sqrt();
                let rph = rp * rp * h * r;
                d.resid_studentized[i] = rs;
                d.cooks_d[i] = rph * r * inv_phi_rank;
                d.cbar[i] = rph;
                d.dffits[i] = rs * (h * r).sqrt();
            }
            d.dfbeta_scale[i] = w.max(0.0).sqrt() * rp / (1.0 - h);
        }
        // Deviance residuals in a loop of their own (one logarithm per row).
        for i in 0..n {
            let (y, a) = response(&v, i);
            let mu = d.mu[i];
            let dev = a * family.unit_deviance(y, mu);
            d.resid_deviance[i] = (y - mu).signum() * dev.max(0.0).sqrt();
        }
        d.eta = eta;
        d
    };

    let mut sum_hat = crate::linalg::Sum::default();
    let (mut n_hi, mut n_res, mut n_inf, mut n_one) = (0u64, 0u64, 0u64, 0u64);
    let k = opts.top_k.max(10);
    let mut heap: BinaryHeap<ByCooks> = BinaryHeap::with_capacity(k + 1);
    let batch = 2 * rayon::current_num_threads().max(1);
    let n_chunks = ds.cache.n_chunks();
    let mut start = 0;
    while start < n_chunks {
        let end = (start + batch).min(n_chunks);
        let outs: Vec<RowDiagnostics> = crate::pool::run_groups(end - start, |k| {
            let d = per_chunk(ds.cache.view(start + k));
            ds.cache.release(start + k);
            d
        });
        for (c, d) in (start..end).zip(outs) {
            for i in 0..d.row.len() {
                sum_hat.add(d.hat[i]);
                n_hi += (d.hat[i] > cut.hat) as u64;
                n_res += (d.resid_studentized[i].abs() > cut.resid_studentized) as u64;
                n_inf += (d.cooks_d[i] > cut.cooks_d) as u64;
                n_one += (d.hat[i] >= HAT_ONE) as u64;
                if d.cooks_d[i].is_finite() {
                    let t = TopRow {
                        row: d.row[i],
                        cooks_d: d.cooks_d[i],
                        hat: d.hat[i],
                        resid_studentized: d.resid_studentized[i],
                    };
                    // Once k rows are kept, a row enters only if it beats the smallest of them
                    // (the heap's top): the same top-k as push-then-pop, without touching the
                    // heap for almost every row.
                    let c = ByCooks(t, d.dfbeta_scale[i], (c, i));
                    if heap.len() < k {
                        heap.push(c);
                    } else if heap.peek().is_some_and(|top| c < *top) {
                        heap.pop();
                        heap.push(c);
                    }
                }
            }
            sink(d)?;
        }
        start = end;
    }
    let mut top: Vec<ByCooks> = heap.into_vec();
    top.sort();
    let top_rows: Vec<u64> = top.iter().map(|b| b.0.row).collect();

    // DFBETAS for the top rows: d_params = F⁻¹ xᵢ √wᵢ r_P,ᵢ/(1 − hᵢ), divided by the SEs.
    let mut values = vec![vec![0.0; m]; top_rows.len().min(opts.top_k)];
    let bse: Vec<f64> = inv
        .diag(m)
        .iter()
        .map(|&v| if v > 0.0 { (v * phi).sqrt() } else { f64::NAN })
        .collect();
    // Second pass over the chunks holding the wanted rows (their positions and scales came
    // from the first pass): only those rows' x_i are read.
    let mut by_chunk: std::collections::BTreeMap<usize, Vec<(usize, usize)>> = Default::default();
    for (r, b) in top.iter().take(opts.top_k).enumerate() {
        by_chunk.entry(b.2 .0).or_default().push((b.2 .1, r));
    }
    let by_chunk: Vec<(usize, Vec<(usize, usize)>)> = by_chunk.into_iter().collect();
    let found: Vec<Vec<(usize, Vec<f64>)>> = by_chunk
        .par_iter()
        .map(|(c, rows)| {
            let v = ds.cache.view(*c);
            // Rank + 1 of the row at each position (0: not wanted).
            let mut rank_at = vec![0usize; v.n];
            for &(at, r) in rows {
                rank_at[at] = r + 1;
            }
            let x = crate::linalg::materialize_rows(&v, layout, &fit.kept, |i| rank_at[i] > 0);
            let out = x
                .into_iter()
                .map(|(i, xi)| {
                    let r = rank_at[i] - 1;
                    let scale = top[r].1;
                    let mut dp = inv.apply(&xi);
                    for (d, &s) in dp.iter_mut().zip(&bse) {
                        *d = *d * scale / s;
                    }
                    (r, dp)
                })
                .collect();
            ds.cache.release(*c);
            out
        })
        .collect();
    for (r, dp) in found.into_iter().flatten() {
        values[r] = dp;
    }
    let top_list: Vec<TopRow> = top.iter().take(10).map(|b| b.0).collect();
    let mut notes = vec![format!(
        "cooks_d uses p = rank = {} (R); statsmodels divides by the number of columns ({})",
        rank, p
    )];
    if n_aliased > 0 {
        notes.push(format!(
            "{n_aliased} active column(s) are linear combinations of others on the fitted rows and were left out of F (their DFBETAS are NaN)"
        ));
    }
    if fit.penalty != crate::glm::Penalty::None {
        notes.push("penalised fit: diagnostics use the active (non-zero) coefficients and include the ridge part of the penalty in F".into());
    }
    if n_one > 0 {
        notes.push(format!(
            "{n_one} row(s) have leverage 1 (h >= 1 - 1e-10): resid_studentized, cooks_d, cbar and dffits are NaN for them (R gives NaN/Inf)"
        ));
    }
    Ok((
        DiagSummary {
            information: if opts.observed { "observed" } else { "expected" },
            sum_hat: sum_hat.value(),
            n_high_leverage: n_hi,
            n_large_residual: n_res,
            n_influential: n_inf,
            n_hat_one: n_one,
            top_cooks: top_list,
            cutoffs: cut,
            notes,
        },
        Dfbetas {
            rows: top_rows.into_iter().take(opts.top_k).collect(),
            coefs: fit.kept.clone(),
            values,
        },
    ))
}
