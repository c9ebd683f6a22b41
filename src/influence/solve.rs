//! Inverse-curvature solves u = M⁻¹v for the influence tasks, behind one interface
//! ([`InverseCurvature`]), and the per-row derivative terms they are built from.
//!
//! Conventions (stated once for the whole influence module; docs/influence.md repeats them):
//! the loss of row i is ℓᵢ = aᵢ·d(yᵢ, μᵢ)/2 (half its deviance contribution, the negative
//! log-likelihood up to constants when φ = 1), so the fitted objective is the *sum form*
//! J(β) = Σᵢ ℓᵢ + N·λ·R(β) of glmnet's (1/N)Σ aᵢdᵢ/2 + λR (N = Σ aᵢ). Its derivatives in ηᵢ are
//! ℓ′ᵢ = aᵢ(μᵢ − yᵢ)μ′(ηᵢ)/V(μᵢ) and, as curvature weight mᵢ, either the Fisher weight
//! aᵢμ′²/V (IRLS's; [`Curvature::Fisher`], the default) or the observed ℓ″ᵢ
//! ([`Curvature::Hessian`]; identical for canonical links). M = Xᵀdiag(m)X + penalty curvature
//! over the fit's kept (active) columns — `Fit::information` for the Fisher. φ cancels
//! everywhere and is not used.
//!
//! Solvers: [`Solver::Cholesky`] factors M (default; m ≲ 2·10⁴), [`Solver::Cg`] runs
//! Jacobi-preconditioned conjugate gradients with Fisher-vector products computed by passes
//! (Mv = Xᵀ(m ∘ Xv) + Pv, one pass each, M never formed), [`Solver::Lissa`] is Koh & Liang's
//! stochastic recursion (for comparison with the literature).

use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

use crate::error::{Error, Result};
use crate::glm::Fit;
use crate::influence::exact::{eta_mu, hat_weight};
use crate::ingest::Dataset;
use crate::linalg::chol::{GramFactor, ALIAS_TOL};
use crate::linalg::{x_beta, xt_sq, xt_v, ColumnSubset, RowEntries};

/// Which curvature matrix M the influence formulas use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Curvature {
    /// Expected Fisher information (IRLS's weights aμ′²/V; AFIF's choice; always PSD).
    Fisher,
    /// Observed Hessian of the loss (differs from the Fisher for non-canonical links).
    Hessian,
}

/// ℓ′ᵢ and the curvature weight mᵢ of one row at η (μ returned too); zero-weight rows give
/// (μ, 0, 0).
#[inline]
pub fn row_terms(fit: &Fit, curvature: Curvature, y: f64, a: f64, eta: f64) -> (f64, f64, f64) {
    let mu = fit.link.inverse(eta);
    if a == 0.0 {
        return (mu, 0.0, 0.0);
    }
    let d = fit.link.mu_eta(eta);
    let var = fit.family.variance(mu);
    let d1 = a * (mu - y) * d / var;
    let m = hat_weight(fit, curvature == Curvature::Hessian, y, a, eta, mu);
    (mu, d1, m)
}

/// How to solve M u = v.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Solver {
    /// Cholesky of M over the kept columns (formed once, O(m²) memory).
    Cholesky,
    /// Preconditioned conjugate gradients with one pass per matrix-vector product.
    Cg {
        /// Stop when ‖Mu − v‖ ≤ tol·‖v‖.
        tol: f64,
        /// Maximum iterations (passes).
        max_iter: usize,
    },
    /// LiSSA (Agarwal et al.; Koh & Liang's `get_inverse_hvp_lissa`).
    Lissa(LissaOptions),
}

impl Solver {
    /// Name for summaries.
    pub fn name(&self) -> &'static str {
        match self {
            Solver::Cholesky => "cholesky",
            Solver::Cg { .. } => "cg",
            Solver::Lissa(_) => "lissa",
        }
    }
}

/// LiSSA's settings, in Koh & Liang's mean-form parametrisation: with H̄ = M/n the recursion
/// vⱼ = v + (1 − d)vⱼ₋₁ − Ĥⱼvⱼ₋₁/s (Ĥⱼ: H̄ estimated on `batch` random rows) converges to
/// (H̄ + s·d·I)⁻¹v·s, so the effective Tikhonov damping is s·d in mean form, n·s·d on M.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LissaOptions {
    /// Recursion depth T per repeat.
    pub depth: usize,
    /// Scale s; `None` picks 1.05·maxᵢ(mᵢ‖xᵢ‖²) + the penalty's share, which guarantees
    /// convergence for any batch (one extra pass).
    pub scale: Option<f64>,
    /// Damping d ∈ [0, 1).
    pub damping: f64,
    /// Independent repeats averaged.
    pub repeats: usize,
    /// Rows per stochastic Hessian-vector product.
    pub batch: usize,
    /// Seed of the row sampling.
    pub seed: u64,
}

impl Default for LissaOptions {
    fn default() -> Self {
        LissaOptions {
            depth: 10_000,
            scale: None,
            damping: 0.0,
            repeats: 1,
            batch: 64,
            seed: 0,
        }
    }
}

/// What a solve cost and how close it got.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct SolveReport {
    /// `cholesky`, `cg` or `lissa`.
    pub solver: &'static str,
    /// Passes over the data spent.
    pub passes: usize,
    /// Iterations (CG steps, LiSSA steps × repeats; 0 for Cholesky).
    pub iterations: usize,
    /// ‖Mu − v‖/‖v‖ where known (CG), else NaN.
    pub relative_residual: f64,
    /// LiSSA: the scale s used and the damping it effectively adds to M (n·s·d).
    pub lissa_scale: Option<f64>,
    /// LiSSA's effective damping on M.
    pub effective_damping: Option<f64>,
}

/// M over the fit's kept columns and ways to apply M⁻¹.
pub struct InverseCurvature<'a> {
    ds: &'a Dataset,
    fit: &'a Fit,
    curvature: Curvature,
    solver: Solver,
    kept: ColumnSubset,
    factor: Option<GramFactor>,
    /// Positions (in the fit's kept columns) left out of the Cholesky as linearly dependent on
    /// the others; their solution entries are 0.
    pub aliased: Vec<usize>,
    /// Total passes spent so far (setup included).
    pub passes: usize,
}

impl<'a> InverseCurvature<'a> {
    /// Prepare `solver` for the fit's M. Cholesky factors M now (the Fisher is the fit's own
    /// `information`; the Hessian costs one pass).
    pub fn new(ds: &'a Dataset, fit: &'a Fit, curvature: Curvature, solver: Solver) -> Result<Self> {
        let kept = ColumnSubset::new(ds.design().layout.p, &fit.kept);
        let mut me = InverseCurvature {
            ds,
            fit,
            curvature,
            solver,
            kept,
            factor: None,
            aliased: Vec::new(),
            passes: 0,
        };
        if solver == Solver::Cholesky {
            let (g, passes) = me.matrix();
            me.passes += passes;
            let m = fit.kept.len();
            let all: Vec<usize> = (0..m).collect();
            // Columns that are linear combinations of others on the fitted rows (a lasso can
            // keep two identical bag-of-words columns) are dropped from the solve: leverages
            // and every η-scale answer only depend on the column space; their Δβ is 0.
            let f = GramFactor::new(&g, m, &all, &vec![0.0; m], ALIAS_TOL).map_err(|e| {
                Error::Numerical(format!(
                    "the {} curvature at the fitted values cannot be factored: {e}",
                    match curvature {
                        Curvature::Fisher => "Fisher",
                        Curvature::Hessian => "Hessian (try --curvature fisher)",
                    }
                ))
            })?;
            me.aliased = f.aliased.clone();
            me.factor = Some(f);
        }
        Ok(me)
    }

    /// The curvature in use.
    pub fn curvature(&self) -> Curvature {
        self.curvature
    }

    /// The fit's kept columns as a subset.
    pub fn kept(&self) -> &ColumnSubset {
        &self.kept
    }

    /// M (m×m, both triangles) and the passes it cost.
    pub fn matrix(&self) -> (Vec<f64>, usize) {
        use crate::influence::exact::{information, uses_fit_information};
        let observed = self.curvature == Curvature::Hessian;
        let passes = (!uses_fit_information(self.fit, observed)) as usize;
        (information(self.ds, self.fit, observed).into_owned(), passes)
    }

    /// M⁻¹ as a dense m×m column-major matrix (Cholesky only): what per-row leverages need.
    pub fn inverse(&self) -> Option<Vec<f64>> {
        Some(self.factor.as_ref()?.inverse_full(self.fit.kept.len()))
    }

    /// u = M⁻¹v (v and u over the kept columns, in kept order).
    pub fn solve(&mut self, v: &[f64]) -> Result<(Vec<f64>, SolveReport)> {
        let m = self.fit.kept.len();
        if v.len() != m {
            return Err(Error::Usage(format!(
                "right-hand side has {} entries, M is {m}×{m}",
                v.len()
            )));
        }
        match self.solver {
            Solver::Cholesky => {
                let f = self.factor.as_ref().expect("factored in new");
                let mut x = vec![0.0; m];
                for (k, val) in f.kept.iter().zip(f.solve(v)) {
                    x[*k] = val;
                }
                Ok((
                    x,
                    SolveReport {
                        solver: "cholesky",
                        relative_residual: f64::NAN,
                        ..Default::default()
                    },
                ))
            }
            Solver::Cg { tol, max_iter } => self.cg(v, tol, max_iter),
            Solver::Lissa(o) => self.lissa(v, &o),
        }
    }

    /// The penalty curvature applied to v (kept order), added into `out`.
    fn add_penalty(&self, v: &[f64], out: &mut [f64]) {
        for (k, c) in self.fit.penalty_curvature.iter().enumerate() {
            out[k] += c * v[k];
        }
        for b in &self.fit.penalty_blocks {
            let k = b.positions.len();
            for (a, &pa) in b.positions.iter().enumerate() {
                out[pa] += (0..k).map(|c| b.matrix[a * k + c] * v[b.positions[c]]).sum::<f64>();
            }
        }
    }

    /// One pass: Mv = Xᵀ(m ∘ Xv) + Pv over the kept columns.
    pub fn apply(&mut self, v: &[f64]) -> Vec<f64> {
        let (ds, fit, curv) = (self.ds, self.fit, self.curvature);
        let layout = &ds.design().layout;
        let p = layout.p;
        let mut vf = vec![0.0; p];
        for (k, &j) in fit.kept.iter().enumerate() {
            vf[j] = v[k];
        }
        let full = ds.cache.par_fold(
            || (vec![0.0; p], Vec::new(), Vec::new()),
            |(mut acc, mut eta, mut t), c| {
                crate::linalg::clear_upper_simd_state();
                eta_mu(&c, fit, ds, &mut eta);
                t.resize(c.n, 0.0);
                x_beta(&c, layout, &vf, &mut t);
                for i in 0..c.n {
                    let (y, a) = crate::glm::irls::response(&c, i);
                    let (_, _, m) = row_terms(fit, curv, y, a, eta[i]);
                    t[i] *= m;
                }
                xt_v(&c, layout, &t, None, &mut acc);
                (acc, eta, t)
            },
            |mut a, b| {
                for (x, y) in a.0.iter_mut().zip(&b.0) {
                    *x += y;
                }
                a
            },
        );
        self.passes += 1;
        let mut out: Vec<f64> = fit.kept.iter().map(|&j| full.0[j]).collect();
        self.add_penalty(v, &mut out);
        out
    }

    /// diag(M) over the kept columns (one pass).
    fn diagonal(&mut self) -> Vec<f64> {
        let (ds, fit, curv) = (self.ds, self.fit, self.curvature);
        let layout = &ds.design().layout;
        let p = layout.p;
        let full = ds.cache.par_fold(
            || (vec![0.0; p], Vec::new(), Vec::new()),
            |(mut acc, mut eta, mut w), c| {
                eta_mu(&c, fit, ds, &mut eta);
                w.resize(c.n, 0.0);
                for i in 0..c.n {
                    let (y, a) = crate::glm::irls::response(&c, i);
                    w[i] = row_terms(fit, curv, y, a, eta[i]).2;
                }
                xt_sq(&c, layout, &w, &mut acc);
                (acc, eta, w)
            },
            |mut a, b| {
                for (x, y) in a.0.iter_mut().zip(&b.0) {
                    *x += y;
                }
                a
            },
        );
        self.passes += 1;
        let mut d: Vec<f64> = fit.kept.iter().map(|&j| full.0[j]).collect();
        // The penalty's diagonal: the ridge part and each group block's diagonal.
        for (dk, c) in d.iter_mut().zip(&fit.penalty_curvature) {
            *dk += c;
        }
        for b in &fit.penalty_blocks {
            let k = b.positions.len();
            for (a, &pa) in b.positions.iter().enumerate() {
                d[pa] += b.matrix[a * k + a];
            }
        }
        d
    }

    fn cg(&mut self, v: &[f64], tol: f64, max_iter: usize) -> Result<(Vec<f64>, SolveReport)> {
        let start = self.passes;
        let m = v.len();
        let dinv: Vec<f64> = self
            .diagonal()
            .iter()
            .map(|&d| if d > 0.0 { 1.0 / d } else { 1.0 })
            .collect();
        let norm = |x: &[f64]| x.iter().map(|a| a * a).sum::<f64>().sqrt();
        let vn = norm(v);
        let mut x = vec![0.0; m];
        if vn == 0.0 {
            return Ok((
                x,
                SolveReport {
                    solver: "cg",
                    passes: self.passes - start,
                    relative_residual: 0.0,
                    ..Default::default()
                },
            ));
        }
        let mut r = v.to_vec();
        let mut z: Vec<f64> = r.iter().zip(&dinv).map(|(a, b)| a * b).collect();
        let mut d = z.clone();
        let mut rz: f64 = r.iter().zip(&z).map(|(a, b)| a * b).sum();
        let mut it = 0;
        let mut rel = 1.0;
        while it < max_iter {
            let q = self.apply(&d);
            let dq: f64 = d.iter().zip(&q).map(|(a, b)| a * b).sum();
            if dq <= 0.0 || !dq.is_finite() {
                return Err(Error::Numerical(
                    "conjugate gradients met a non-positive curvature direction (M is not positive definite)".into(),
                ));
            }
            let step = rz / dq;
            for k in 0..m {
                x[k] += step * d[k];
                r[k] -= step * q[k];
            }
            it += 1;
            rel = norm(&r) / vn;
            if rel <= tol {
                break;
            }
            z = r.iter().zip(&dinv).map(|(a, b)| a * b).collect();
            let rz_new: f64 = r.iter().zip(&z).map(|(a, b)| a * b).sum();
            let beta = rz_new / rz;
            rz = rz_new;
            for k in 0..m {
                d[k] = z[k] + beta * d[k];
            }
        }
        Ok((
            x,
            SolveReport {
                solver: "cg",
                passes: self.passes - start,
                iterations: it,
                relative_residual: rel,
                ..Default::default()
            },
        ))
    }

    /// maxᵢ mᵢ‖xᵢ‖² over rows (kept columns): the largest single-row curvature (one pass).
    fn max_row_curvature(&mut self) -> f64 {
        let (ds, fit, curv) = (self.ds, self.fit, self.curvature);
        let layout = &ds.design().layout;
        let kept = &self.kept;
        let out = ds.cache.par_fold(
            || 0.0f64,
            |mut best, c| {
                let mut eta = Vec::new();
                eta_mu(&c, fit, ds, &mut eta);
                let rows = RowEntries::new(&c, layout, kept);
                let mut e = Vec::new();
                for (i, &ei) in eta.iter().enumerate().take(c.n) {
                    let (y, a) = crate::glm::irls::response(&c, i);
                    let (_, _, m) = row_terms(fit, curv, y, a, ei);
                    rows.fill(i, &mut e);
                    let s: f64 = e.iter().map(|(_, x)| x * x).sum();
                    best = best.max(m * s);
                }
                best
            },
            f64::max,
        );
        self.passes += 1;
        out
    }

    fn lissa(&mut self, v: &[f64], o: &LissaOptions) -> Result<(Vec<f64>, SolveReport)> {
        let start = self.passes;
        let (ds, fit, curv) = (self.ds, self.fit, self.curvature);
        let layout = &ds.design().layout;
        let m = v.len();
        if !(0.0..1.0).contains(&o.damping) || o.depth == 0 || o.repeats == 0 || o.batch == 0 {
            return Err(Error::Usage(
                "LiSSA needs depth ≥ 1, repeats ≥ 1, batch ≥ 1 and damping in [0, 1)".into(),
            ));
        }
        // Row offsets of the chunks, to sample rows uniformly.
        let nc = ds.cache.n_chunks();
        let mut offs = Vec::with_capacity(nc + 1);
        offs.push(0usize);
        for i in 0..nc {
            offs.push(offs[i] + ds.cache.view(i).n);
        }
        let n_rows = offs[nc] as f64;
        let pen_max: f64 = {
            // Gershgorin bound of the penalty curvature (mean form).
            let mut rows = vec![0.0; m];
            for (k, c) in fit.penalty_curvature.iter().enumerate() {
                rows[k] += c.abs();
            }
            for b in &fit.penalty_blocks {
                let k = b.positions.len();
                for (a, &pa) in b.positions.iter().enumerate() {
                    rows[pa] += (0..k).map(|c| b.matrix[a * k + c].abs()).sum::<f64>();
                }
            }
            rows.into_iter().fold(0.0, f64::max) / n_rows
        };
        let scale = match o.scale {
            Some(s) if s > 0.0 => s,
            Some(s) => return Err(Error::Usage(format!("LiSSA scale must be positive, got {s}"))),
            None => 1.05 * (self.max_row_curvature() + pen_max),
        };
        let vm: Vec<f64> = v.iter().map(|x| x / n_rows).collect();
        let mut rng = StdRng::seed_from_u64(o.seed);
        let mut total = vec![0.0; m];
        let mut e = Vec::new();
        let mut eta1 = [0.0f64];
        for _ in 0..o.repeats {
            let mut cur = vm.clone();
            for _ in 0..o.depth {
                let mut hv = vec![0.0; m];
                for _ in 0..o.batch {
                    let r = rng.random_range(0..offs[nc]);
                    let ci = offs.partition_point(|&x| x <= r) - 1;
                    let c = ds.cache.view(ci);
                    let i = r - offs[ci];
                    let rows = RowEntries::new(&c, layout, &self.kept);
                    rows.fill(i, &mut e);
                    let xb: f64 = e.iter().map(|&(l, x)| x * fit.beta[fit.kept[l]]).sum();
                    eta1[0] = xb + c.offset[i];
                    let (y, a) = crate::glm::irls::response(&c, i);
                    let (_, _, w) = row_terms(fit, curv, y, a, eta1[0]);
                    let xv: f64 = e.iter().map(|&(l, x)| x * cur[l]).sum();
                    for &(l, x) in &e {
                        hv[l] += w * xv * x;
                    }
                }
                for h in hv.iter_mut() {
                    *h /= o.batch as f64;
                }
                let mut pen = vec![0.0; m];
                self.add_penalty(&cur, &mut pen);
                for k in 0..m {
                    let h = hv[k] + pen[k] / n_rows;
                    cur[k] = vm[k] + (1.0 - o.damping) * cur[k] - h / scale;
                }
                if cur.iter().any(|x| !x.is_finite()) {
                    return Err(Error::Numerical(format!(
                        "LiSSA diverged (NaN/inf) with scale {scale}: increase --lissa-scale or the damping"
                    )));
                }
            }
            for k in 0..m {
                total[k] += cur[k] / scale;
            }
        }
        let u: Vec<f64> = total.iter().map(|x| x / o.repeats as f64).collect();
        Ok((
            u,
            SolveReport {
                solver: "lissa",
                passes: self.passes - start,
                iterations: o.depth * o.repeats,
                relative_residual: f64::NAN,
                lissa_scale: Some(scale),
                effective_damping: Some(n_rows * scale * o.damping),
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn lissa_fixed_point_is_damped_inverse() {
        // Scalar check of the recursion's fixed point: v* = v + (1 − d)v* − h v*/s
        // ⇒ v* = s·v/(h + s·d), output v*/s = v/(h + s d).
        let (h, s, d, v): (f64, f64, f64, f64) = (2.0, 10.0, 0.1, 3.0);
        let mut cur = v;
        for _ in 0..2000 {
            cur = v + (1.0 - d) * cur - h * cur / s;
        }
        assert!((cur / s - v / (h + s * d)).abs() < 1e-12);
    }
}
