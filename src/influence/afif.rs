//! AFIF-style influence (Lev & Wilson 2024; research/afif.md): what happens to the fitted model,
//! and to a quantity of interest, when training rows are removed — one Fisher-scoring step of
//! the reweighted objective from β̂, with the curvature M IRLS already has.
//!
//! Conventions (one place; docs/influence.md has a worked example). Loss units and M are those
//! of [`super::solve`]: ℓᵢ = aᵢdᵢ/2, sum-form objective J = Σℓᵢ + N·λ·R, ℓ′ᵢ = ∂ℓᵢ/∂ηᵢ.
//! Every Δ is **after removal − before**.
//!
//! - Removing row i ([`Removal::SameLambda`], the default — glmnet's refit at the same λ on the
//!   other rows, which removes ℓᵢ *and* aᵢλR): Δβ₋ᵢ ≈ M⁻¹(xᵢℓ′ᵢ − aᵢḡ) with ḡ = (1/N)Σⱼ xⱼℓ′ⱼ
//!   (= −λ∇R at the optimum; 0 for unpenalised fits). [`Removal::FixedPenalty`] keeps N·λ fixed
//!   (the ALO literature's sum form): ḡ = 0.
//! - Leave-one-out linear predictor (ALO: one Newton step, Sherman–Morrison):
//!   η̃₋ᵢ = η̂ᵢ + (ℓ′ᵢ qᵢ − aᵢ xᵢᵀM⁻¹ḡ)/(1 − hᵢ), qᵢ = xᵢᵀM⁻¹xᵢ, hᵢ = mᵢqᵢ. Exact PRESS for OLS.
//! - `self_influence` = ℓ′ᵢ² qᵢ: the first-order increase of row i's own loss when it is
//!   removed (Koh & Liang's −I_up,loss(zᵢ, zᵢ)/n; ≥ 0).
//! - For a functional f(β) (test loss, demographic-parity gap) with u = M⁻¹∇f:
//!   Δf₋ⱼ ≈ ℓ′ⱼ xⱼᵀu − aⱼ ḡᵀu (first order, any solver), divided by (1 − hⱼ) for the Newton
//!   (ALO) correction when M is factored. `influence_on_test` > 0: removing the row raises the
//!   test loss (the row helps).
//! - Penalised fits: everything lives on the active set, with the ridge part of the penalty and
//!   the group lasso's curvature in M (research/afif.md §5).

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use crate::chunk::ChunkView;
use crate::error::{Error, Result};
use crate::glm::irls::response;
use crate::glm::{fit_at, fit_from, prox_steps, Family, Fit, FitOptions, Path, Penalty};
use crate::influence::exact::{eta_mu, HAT_ONE};
use crate::influence::solve::{row_terms, Curvature, InverseCurvature, SolveReport, Solver};
use crate::influence::testset::TestRow;
use crate::ingest::Dataset;
use crate::linalg::{row_quad_forms, x_beta, xt_v, RowEntries};

/// What removing a row does to the penalty (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Removal {
    /// Refit at the same λ on the remaining rows (glmnet's convention, `cv.glmnet`'s refits).
    SameLambda,
    /// Keep the total penalty N·λ·R fixed (the ALO papers' sum form).
    FixedPenalty,
}

/// The fitted model's influence machinery: M⁻¹, the mean score ḡ and u₀ = M⁻¹ḡ.
pub struct Afif<'a> {
    /// Data.
    pub ds: &'a Dataset,
    /// Fit (β̂, active set, information).
    pub fit: &'a Fit,
    /// M and its solver.
    pub inv: InverseCurvature<'a>,
    /// Removal convention.
    pub removal: Removal,
    /// ḡ over the kept columns (zeros when not needed).
    pub gbar: Vec<f64>,
    /// c′: the removal term per unit prior weight of a row that is zero in every column
    /// (ḡ, or with re-standardisation the s_j-scaled penalty terms; kept order).
    cunit: Vec<f64>,
    /// M⁻¹c′.
    u0: Vec<f64>,
    /// The fit's standardisation, when removal re-standardises (same λ, standardised fit).
    restd: Option<crate::glm::Standardization>,
    /// M⁻¹ (dense, Cholesky only): per-row leverages.
    minv: Option<Vec<f64>>,
    /// Reports of the solves done so far.
    pub solves: Vec<SolveReport>,
    /// Rows whose leave-one-out values [`Afif::loo`] takes from Newton steps on the data
    /// without them ([`Afif::refine_loo`]): row id → coefficients after the steps (length p).
    refined: HashMap<u64, Vec<f64>>,
}

/// Per-row terms of one chunk at β̂.
struct Terms {
    eta: Vec<f64>,
    mu: Vec<f64>,
    y: Vec<f64>,
    a: Vec<f64>,
    d1: Vec<f64>,
    m: Vec<f64>,
    /// xᵢᵀM⁻¹xᵢ (NaN without a factorization).
    q: Vec<f64>,
    /// xᵢᵀu for the functional's u (0 without).
    xu: Vec<f64>,
    /// xᵢᵀM⁻¹cᵢ: the removal term of row i through M⁻¹ (NaN without a factorization).
    corr: Vec<f64>,
    /// uᵀcᵢ for the functional's u.
    cu: Vec<f64>,
}

impl<'a> Afif<'a> {
    /// Set up influence for `fit` with the given curvature, solver and removal convention. For
    /// penalised fits under [`Removal::SameLambda`] this costs one solve (ḡ comes from the fit,
    /// or from one pass when the fit does not carry it).
    pub fn new(ds: &'a Dataset, fit: &'a Fit, curvature: Curvature, solver: Solver, removal: Removal) -> Result<Self> {
        let inv = InverseCurvature::new(ds, fit, curvature, solver)?;
        let minv = inv.inverse();
        let m = fit.kept.len();
        let penalised = fit.penalty != Penalty::None;
        let mut me = Afif {
            ds,
            fit,
            inv,
            removal,
            gbar: vec![0.0; m],
            cunit: vec![0.0; m],
            u0: vec![0.0; m],
            restd: None,
            minv,
            solves: Vec::new(),
            refined: HashMap::new(),
        };
        if penalised && removal == Removal::SameLambda {
            // The fit's own last pass has the gradient (Fisher and Hessian share ℓ′).
            let g = if fit.score.len() == m {
                fit.score.clone()
            } else {
                me.score_sum(|_| true)
            };
            let n = fit.sum_weights;
            me.gbar = g.iter().map(|x| x / n).collect();
            me.cunit = me.gbar.clone();
            // A refit on standardised columns re-standardises: each penalised column's
            // penalty moves with its s_j. Per unit weight for a row that is 0 in the column
            // (exact for the typical weight N/n); rows' own non-zeros are handled per row.
            if let Some(st) = &fit.standardization {
                let h = n / fit.n_obs.max(1) as f64;
                for k in 0..m {
                    if st.l1[k] != 0.0 || st.ridge[k] != 0.0 {
                        me.cunit[k] = st.removal_term(k, h, st.ratio(k, h, 0.0, 0.0)) / h;
                    }
                }
                me.restd = Some(st.clone());
            }
            let (u0, rep) = me.inv.solve(&me.cunit)?;
            me.u0 = u0;
            me.solves.push(rep);
        }
        Ok(me)
    }

    /// The removal term cᵢ minus aᵢc′ on row i's own non-zero penalised columns: (position,
    /// δ) pairs; empty without re-standardisation.
    fn row_delta(&self, e: &[(usize, f64)], a: f64, out: &mut Vec<(usize, f64)>) {
        out.clear();
        let Some(st) = &self.restd else { return };
        for &(l, x) in e {
            if x != 0.0 && (st.l1[l] != 0.0 || st.ridge[l] != 0.0) {
                let c = st.removal_term(l, a, st.ratio(l, a, a * x, a * x * x));
                out.push((l, c - a * self.cunit[l]));
            }
        }
    }

    /// Whether per-row leverages (and the Newton correction) are available.
    pub fn has_leverage(&self) -> bool {
        self.minv.is_some()
    }

    fn full(&self, u: &[f64]) -> Vec<f64> {
        let mut f = vec![0.0; self.ds.design().layout.p];
        for (k, &j) in self.fit.kept.iter().enumerate() {
            f[j] = u[k];
        }
        f
    }

    /// Σ over rows with `keep(row id)` of xᵢℓ′ᵢ, over the kept columns (one pass).
    pub fn score_sum(&self, keep: impl Fn(u64) -> bool + Sync) -> Vec<f64> {
        let (ds, fit, curv) = (self.ds, self.fit, self.inv.curvature());
        let layout = &ds.design().layout;
        let p = layout.p;
        let g = ds
            .cache
            .par_fold(
                || (vec![0.0; p], Vec::new(), Vec::new()),
                |(mut acc, mut eta, mut d), v| {
                    eta_mu(&v, fit, ds, &mut eta);
                    d.resize(v.n, 0.0);
                    for i in 0..v.n {
                        let (y, a) = response(&v, i);
                        d[i] = if keep(v.row_id[i]) {
                            row_terms(fit, curv, y, a, eta[i]).1
                        } else {
                            0.0
                        };
                    }
                    xt_v(&v, layout, &d, None, &mut acc);
                    (acc, eta, d)
                },
                |mut a, b| {
                    for (x, y) in a.0.iter_mut().zip(&b.0) {
                        *x += y;
                    }
                    a
                },
            )
            .0;
        fit.kept.iter().map(|&j| g[j]).collect()
    }

    /// Σ aᵢ over rows with `keep(row id)`.
    fn weight_sum(&self, keep: impl Fn(u64) -> bool + Sync) -> f64 {
        self.ds.cache.par_fold(
            || 0.0,
            |mut s, v| {
                for i in 0..v.n {
                    if keep(v.row_id[i]) {
                        s += response(&v, i).1;
                    }
                }
                s
            },
            |a, b| a + b,
        )
    }

    fn terms(&self, v: &ChunkView, u: Option<&[f64]>, u0_full: &[f64]) -> Terms {
        let (ds, fit, curv) = (self.ds, self.fit, self.inv.curvature());
        let layout = &ds.design().layout;
        let n = v.n;
        let m = fit.kept.len();
        crate::linalg::clear_upper_simd_state();
        let mut eta = Vec::new();
        eta_mu(v, fit, ds, &mut eta);
        let mut t = Terms {
            mu: vec![0.0; n],
            y: vec![0.0; n],
            a: vec![0.0; n],
            d1: vec![0.0; n],
            m: vec![0.0; n],
            q: vec![f64::NAN; n],
            xu: vec![0.0; n],
            corr: vec![0.0; n],
            cu: vec![0.0; n],
            eta,
        };
        for i in 0..n {
            let (y, a) = response(v, i);
            let (mu, d1, m) = row_terms(fit, curv, y, a, t.eta[i]);
            t.y[i] = y;
            t.a[i] = a;
            t.mu[i] = mu;
            t.d1[i] = d1;
            t.m[i] = m;
        }
        let kept = self.inv.kept();
        if let Some(minv) = &self.minv {
            row_quad_forms(v, layout, kept, minv, &mut t.q);
        }
        if let Some(u) = u {
            x_beta(v, layout, &self.full(u), &mut t.xu);
        }
        let mut xu0 = vec![0.0; n];
        if self.u0.iter().any(|x| *x != 0.0) {
            x_beta(v, layout, u0_full, &mut xu0);
        }
        let cu0: f64 = u.map_or(0.0, |u| self.cunit.iter().zip(u).map(|(a, b)| a * b).sum());
        for (i, &x0) in xu0.iter().enumerate() {
            t.corr[i] = t.a[i] * x0;
            t.cu[i] = t.a[i] * cu0;
        }
        if self.restd.is_some() {
            let rows = RowEntries::new(v, layout, kept);
            let (mut e, mut d) = (Vec::new(), Vec::new());
            for i in 0..n {
                if t.a[i] == 0.0 {
                    continue;
                }
                rows.fill(i, &mut e);
                self.row_delta(&e, t.a[i], &mut d);
                for &(l, dl) in &d {
                    if let Some(minv) = &self.minv {
                        // (M⁻¹xᵢ)_l
                        let col = &minv[l * m..(l + 1) * m];
                        let mx: f64 = e.iter().map(|&(k, x)| col[k] * x).sum();
                        t.corr[i] += mx * dl;
                    }
                    if let Some(u) = u {
                        t.cu[i] += u[l] * dl;
                    }
                }
            }
        }
        t
    }

    /// Approximate leave-one-out for every row (needs the Cholesky solver): hands each chunk's
    /// [`LooRows`] to `sink` in chunk order and returns the ALO cross-validation summary.
    pub fn loo(&self, mut sink: impl FnMut(LooRows) -> Result<()>) -> Result<LooSummary> {
        if self.minv.is_none() {
            return Err(Error::Usage(
                "leave-one-out needs every row's leverage, which needs M factored: use --solver cholesky".into(),
            ));
        }
        let fit = self.fit;
        let family = fit.family;
        let u0f = self.full(&self.u0);
        let kinks = fit.penalty_kink.iter().any(|&k| k);
        let nc = self.ds.cache.n_chunks();
        let mut s = LooSummary {
            curvature: Some(self.inv.curvature()),
            removal: Some(self.removal),
            ..Default::default()
        };
        let mut dev = crate::linalg::Sum::default();
        let mut dev2 = crate::linalg::Sum::default();
        let mut ins = crate::linalg::Sum::default();
        let mut miss = crate::linalg::Sum::default();
        let mut sum_a = crate::linalg::Sum::default();
        let mut sum_h = crate::linalg::Sum::default();
        // Chunks in parallel, in order, a window at a time (memory: a few chunks of output).
        let window = rayon::current_num_threads().max(1) * 4;
        let mut start = 0;
        self.ds.cache.begin_pass();
        while start < nc {
            let end = (start + window).min(nc);
            let outs: Vec<LooRows> = {
                use rayon::prelude::*;
                (start..end)
                    .into_par_iter()
                    .map(|ci| {
                        let v = self.ds.cache.view(ci);
                        let t = self.terms(&v, None, &u0f);
                        let rows = RowEntries::new(&v, &self.ds.design().layout, self.inv.kept());
                        let refined = self.refined_etas(&v);
                        let mut e = Vec::new();
                        let mut o = LooRows::default();
                        for i in 0..v.n {
                            let h = t.m[i] * t.q[i];
                            let (le, ll) = if t.a[i] == 0.0 {
                                (t.eta[i], 0.0)
                            } else if h >= HAT_ONE {
                                (f64::NAN, f64::NAN)
                            } else {
                                let mut le = t.eta[i] + (t.d1[i] * t.q[i] - t.corr[i]) / (1.0 - h);
                                if let Some(&(_, e)) = refined.iter().find(|r| r.0 == i) {
                                    le = e;
                                } else if kinks {
                                    rows.fill(i, &mut e);
                                    if let Some(x) = self.active_set_step(&e, i, &t) {
                                        le = t.eta[i] + x;
                                    }
                                }
                                let mu = fit.link.inverse(le);
                                (le, t.a[i] * family.unit_deviance(t.y[i], mu) / 2.0)
                            };
                            o.row.push(v.row_id[i]);
                            o.eta.push(t.eta[i]);
                            o.loo_eta.push(le);
                            o.loo_loss.push(ll);
                            o.self_influence.push(t.d1[i] * t.d1[i] * t.q[i]);
                            o.hat.push(h);
                            o.y.push(t.y[i]);
                            o.a.push(t.a[i]);
                            o.in_loss.push(t.a[i] * family.unit_deviance(t.y[i], t.mu[i]) / 2.0);
                        }
                        self.ds.cache.release(ci);
                        self.ds.cache.chunk_done(v.n);
                        o
                    })
                    .collect()
            };
            for o in outs {
                for i in 0..o.row.len() {
                    let a = o.a[i];
                    if a == 0.0 {
                        continue;
                    }
                    s.n += 1;
                    sum_a.add(a);
                    sum_h.add(o.hat[i]);
                    ins.add(2.0 * o.in_loss[i]);
                    if o.hat[i] > 0.5 {
                        s.n_hat_above_half += 1;
                    }
                    if o.loo_eta[i].is_nan() {
                        s.n_hat_one += 1;
                        continue;
                    }
                    let d = 2.0 * o.loo_loss[i];
                    dev.add(d);
                    dev2.add(d * d / a);
                    if family == Family::Binomial {
                        let mu = fit.link.inverse(o.loo_eta[i]);
                        let wrong = if (mu > 0.5) != (o.y[i] > 0.5) { 1.0 } else { 0.0 };
                        miss.add(a * wrong);
                    }
                }
                sink(o)?;
            }
            start = end;
        }
        self.ds.cache.end_pass();
        let na = sum_a.value();
        s.sum_hat = sum_h.value();
        s.deviance = dev.value() / na;
        let var = (dev2.value() / na - s.deviance * s.deviance).max(0.0);
        s.deviance_se = (var / (s.n.max(2) - 1) as f64).sqrt();
        s.insample_deviance = ins.value() / na;
        s.misclassification = (family == Family::Binomial).then(|| miss.value() / na);
        Ok(s)
    }

    /// The proximal (active-set) version of row i's leave-one-out step for L1-type penalties:
    /// the Newton step Δ = M′⁻¹(xᵢℓ′ᵢ − cᵢ) in full (O(m·nnzᵢ)), and when it would carry a
    /// penalised coefficient through zero, that coefficient is set to 0 instead (it leaves
    /// the active set, as in the refit) and the others re-solved: Δ ← Δ + K_{·D}K_{DD}⁻¹(−β_D − Δ_D)
    /// with K = M′⁻¹, up to three rounds. Returns xᵢᵀΔ when a coefficient left, else None (the
    /// closed form already holds). `e` holds row i's entries over the kept columns.
    fn active_set_step(&self, e: &[(usize, f64)], i: usize, t: &Terms) -> Option<f64> {
        let minv = self.minv.as_ref()?;
        let fit = self.fit;
        let m = fit.kept.len();
        let h = t.m[i] * t.q[i];
        // w = M⁻¹xᵢ, z = M⁻¹(xᵢℓ′ − cᵢ).
        let mut w = vec![0.0; m];
        for &(l, x) in e {
            let col = &minv[l * m..(l + 1) * m];
            for (wk, c) in w.iter_mut().zip(col) {
                *wk += c * x;
            }
        }
        let mut z: Vec<f64> = (0..m).map(|k| t.d1[i] * w[k] - t.a[i] * self.u0[k]).collect();
        let mut d = Vec::new();
        self.row_delta(e, t.a[i], &mut d);
        for &(l, dl) in &d {
            let col = &minv[l * m..(l + 1) * m];
            for (zk, c) in z.iter_mut().zip(col) {
                *zk -= c * dl;
            }
        }
        let xz: f64 = e.iter().map(|&(l, x)| x * z[l]).sum();
        let s = t.m[i] * xz / (1.0 - h);
        let delta0: Vec<f64> = (0..m).map(|k| z[k] + w[k] * s).collect();
        let beta = |k: usize| fit.beta[fit.kept[k]];
        let crosses = |k: usize, dk: f64| fit.penalty_kink[k] && beta(k) != 0.0 && (beta(k) + dk) * beta(k) < 0.0;
        let mut set: Vec<usize> = (0..m).filter(|&k| crosses(k, delta0[k])).collect();
        if set.is_empty() {
            return None;
        }
        let kcol = |k: usize, r: usize| minv[k * m + r] + t.m[i] * w[k] * w[r] / (1.0 - h);
        let mut delta = delta0.clone();
        for _ in 0..3 {
            let nd = set.len();
            let kdd = faer::Mat::from_fn(nd, nd, |a, b| kcol(set[a], set[b]));
            let rhs = faer::Mat::from_fn(nd, 1, |a, _| -beta(set[a]) - delta0[set[a]]);
            let sol = match kdd.llt(faer::Side::Lower) {
                Ok(f) => {
                    use faer::linalg::solvers::Solve;
                    f.solve(&rhs)
                }
                Err(_) => return None,
            };
            for (k, dk) in delta.iter_mut().enumerate() {
                *dk = delta0[k] + (0..nd).map(|a| kcol(set[a], k) * sol[(a, 0)]).sum::<f64>();
            }
            let more: Vec<usize> = (0..m).filter(|&k| !set.contains(&k) && crosses(k, delta[k])).collect();
            if more.is_empty() {
                break;
            }
            set.extend(more);
        }
        Some(e.iter().map(|&(l, x)| x * delta[l]).sum())
    }

    /// (position in the chunk, x_iᵀβ₋ᵢ + offset) of the chunk's refined rows.
    fn refined_etas(&self, v: &ChunkView) -> Vec<(usize, f64)> {
        if self.refined.is_empty() {
            return Vec::new();
        }
        let layout = &self.ds.design().layout;
        let mut out = Vec::new();
        let mut eta = Vec::new();
        for (i, r) in v.row_id.iter().enumerate() {
            if let Some(beta) = self.refined.get(r) {
                eta.resize(v.n, 0.0);
                x_beta(v, layout, beta, &mut eta);
                out.push((i, eta[i] + v.offset[i]));
            }
        }
        out
    }

    /// Sharpen [`Afif::loo`] where the one-step ALO is weakest: of the rows with leverage in
    /// (`above`, 1), the `rows` largest (found by one [`Afif::loo`] pass) get their
    /// leave-one-out η from `steps` Fisher-scoring steps on the data without them
    /// ([`Afif::refine_loo_rows`]).
    pub fn refine_loo(
        &mut self,
        path: Option<(&Path, usize)>,
        rows: usize,
        above: f64,
        steps: usize,
    ) -> Result<LooRefinement> {
        let mut pick = LooRefinePick::new(rows, above);
        self.loo(|o| {
            pick.offer(&o);
            Ok(())
        })?;
        self.refine_loo_rows(path, &pick.rows(), above, steps)
    }

    /// Whether [`Afif::refine_loo_rows`] can run: a refit is at the same λ, so a penalised fit
    /// needs the same-λ removal convention.
    pub fn check_refine(&self) -> Result<()> {
        if self.removal != Removal::SameLambda && self.fit.penalty != Penalty::None {
            return Err(Error::Usage(
                "--loo-refine refits at the same lambda: it needs --removal-penalty same-lambda".into(),
            ));
        }
        Ok(())
    }

    /// From now on [`Afif::loo`] takes the leave-one-out η of each of `rows` from `steps`
    /// Fisher-scoring steps (proximal for lasso-type fits, as `unlearn --steps`) on the data
    /// without the row, from β̂: `steps` passes per row. One step equals the ALO step up to the
    /// active-set handling; two follow the refit closely where the leverage is large (sms_spam:
    /// docs/influence.md). Only for the same-λ removal (what a refit does); `path` is the fit's
    /// path and point when penalised; `above` is recorded in the report.
    pub fn refine_loo_rows(
        &mut self,
        path: Option<(&Path, usize)>,
        rows: &[u64],
        above: f64,
        steps: usize,
    ) -> Result<LooRefinement> {
        self.check_refine()?;
        let t0 = std::time::Instant::now();
        self.refined.clear();
        let mut rep = LooRefinement {
            rows: Vec::with_capacity(rows.len()),
            above,
            steps,
            failed: Vec::new(),
            seconds: 0.0,
        };
        for &row in rows {
            let (reduced, _) = self.ds.without_rows(&[row]);
            match refit_without(&reduced, self.fit, path, Some(steps.max(1))) {
                Ok(r) if r.beta.iter().all(|b| b.is_finite()) => {
                    self.refined.insert(row, r.beta);
                    rep.rows.push(row);
                }
                // Keep the one-step value; say which rows.
                Ok(_) | Err(Error::Numerical(_)) => rep.failed.push(row),
                Err(e) => return Err(e),
            }
        }
        rep.seconds = t0.elapsed().as_secs_f64();
        Ok(rep)
    }

    /// Solve u = M⁻¹v with the configured solver (recorded in `solves`).
    pub fn solve(&mut self, v: &[f64]) -> Result<Vec<f64>> {
        let (u, rep) = self.inv.solve(v)?;
        self.solves.push(rep);
        Ok(u)
    }

    /// For a functional with solved u = M⁻¹∇f (kept order): every training row's predicted
    /// change Δf when it is removed, first order and — when M is factored — with the Newton
    /// (ALO) correction 1/(1 − hᵢ). Chunks are handed to `sink` in order as
    /// (row ids, first order, Newton).
    pub fn row_effects(
        &self,
        u: &[f64],
        mut sink: impl FnMut(&[u64], Vec<f64>, Option<Vec<f64>>) -> Result<()>,
    ) -> Result<()> {
        let u0f = self.full(&self.u0);
        let nc = self.ds.cache.n_chunks();
        let window = rayon::current_num_threads().max(1) * 4;
        let mut start = 0;
        self.ds.cache.begin_pass();
        while start < nc {
            let end = (start + window).min(nc);
            let outs: Vec<Effects> = {
                use rayon::prelude::*;
                (start..end)
                    .into_par_iter()
                    .map(|ci| {
                        let v = self.ds.cache.view(ci);
                        let t = self.terms(&v, Some(u), &u0f);
                        let first: Vec<f64> = (0..v.n).map(|i| t.d1[i] * t.xu[i] - t.cu[i]).collect();
                        let newton = self.minv.as_ref().map(|_| {
                            (0..v.n)
                                .map(|i| {
                                    let h = t.m[i] * t.q[i];
                                    if h >= HAT_ONE {
                                        f64::NAN
                                    } else {
                                        first[i] / (1.0 - h)
                                    }
                                })
                                .collect()
                        });
                        let ids = v.row_id.to_vec();
                        self.ds.cache.release(ci);
                        self.ds.cache.chunk_done(v.n);
                        (ids, first, newton)
                    })
                    .collect()
            };
            for (ids, f, n) in outs {
                sink(&ids, f, n)?;
            }
            start = end;
        }
        self.ds.cache.end_pass();
        Ok(())
    }

    /// η, μ, ℓ′ and the loss of a test row at β̂.
    fn test_terms(&self, r: &TestRow) -> (f64, f64, f64, f64) {
        let eta: f64 = r.x.iter().map(|&(j, x)| x * self.fit.beta[j]).sum::<f64>() + r.offset;
        let (mu, d1, _) = row_terms(self.fit, self.inv.curvature(), r.y, r.a, eta);
        let loss = r.a * self.fit.family.unit_deviance(r.y, mu) / 2.0;
        (eta, mu, d1, loss)
    }

    /// ∇ of the total test loss Σₜℓₜ over the kept columns, and the total loss.
    pub fn test_gradient(&self, rows: &[TestRow]) -> (Vec<f64>, f64) {
        let m = self.fit.kept.len();
        let mut g = vec![0.0; m];
        let mut loss = 0.0;
        for r in rows {
            let (_, _, d1, l) = self.test_terms(r);
            loss += l;
            for &(j, x) in &r.x {
                if let Ok(k) = self.fit.kept.binary_search(&j) {
                    g[k] += d1 * x;
                }
            }
        }
        (g, loss)
    }

    /// Per test row, the `k` training rows with the largest |Δℓₜ| when removed (first order:
    /// Δℓₜ(−j) = ℓ′ₜxₜᵀM⁻¹(xⱼℓ′ⱼ − aⱼḡ)). Needs the Cholesky solver (one solve per test row,
    /// then one pass with O(nnzⱼ·T) work per training row).
    pub fn per_test_top(&mut self, rows: &[TestRow], k: usize) -> Result<Vec<Vec<(u64, f64)>>> {
        if self.minv.is_none() {
            return Err(Error::Usage("--per-test-top needs --solver cholesky".into()));
        }
        let m = self.fit.kept.len();
        let t_n = rows.len();
        // U: m×T, column t = M⁻¹xₜℓ′ₜ (row-major by kept column for the row loop).
        let minv = self.minv.as_ref().expect("checked");
        let mut ut = vec![0.0; m * t_n];
        for (t, r) in rows.iter().enumerate() {
            let (_, _, d1, _) = self.test_terms(r);
            for &(j, x) in &r.x {
                if let Ok(kk) = self.fit.kept.binary_search(&j) {
                    let col = &minv[kk * m..(kk + 1) * m];
                    for l in 0..m {
                        ut[l * t_n + t] += col[l] * x * d1;
                    }
                }
            }
        }
        let gu: Vec<f64> = (0..t_n)
            .map(|t| (0..m).map(|l| self.cunit[l] * ut[l * t_n + t]).sum())
            .collect();
        let ds = self.ds;
        let layout = &ds.design().layout;
        let kept = self.inv.kept();
        let u0f = self.full(&self.u0);
        let heaps = ds.cache.par_fold(
            || vec![BinaryHeap::<Top>::new(); t_n],
            |mut heaps, v| {
                let t = self.terms(&v, None, &u0f);
                let rows_e = RowEntries::new(&v, layout, kept);
                let (mut e, mut d) = (Vec::new(), Vec::new());
                let mut s = vec![0.0; t_n];
                let mut sd = vec![0.0; t_n];
                for i in 0..v.n {
                    if t.a[i] == 0.0 {
                        continue;
                    }
                    rows_e.fill(i, &mut e);
                    s.fill(0.0);
                    for &(l, x) in &e {
                        let row = &ut[l * t_n..(l + 1) * t_n];
                        for (sv, &uv) in s.iter_mut().zip(row) {
                            *sv += x * uv;
                        }
                    }
                    // The row's own re-standardisation terms (none without it).
                    self.row_delta(&e, t.a[i], &mut d);
                    sd.fill(0.0);
                    for &(l, dl) in &d {
                        let row = &ut[l * t_n..(l + 1) * t_n];
                        for (sv, &uv) in sd.iter_mut().zip(row) {
                            *sv += dl * uv;
                        }
                    }
                    for (tt, h) in heaps.iter_mut().enumerate() {
                        let val = t.d1[i] * s[tt] - t.a[i] * gu[tt] - sd[tt];
                        push_top(h, k, Top(val.abs(), v.row_id[i], val));
                    }
                }
                heaps
            },
            |mut a, b| {
                for (ha, hb) in a.iter_mut().zip(b) {
                    for x in hb {
                        push_top(ha, k, x);
                    }
                }
                a
            },
        );
        Ok(heaps
            .into_iter()
            .map(|h| {
                let mut v: Vec<Top> = h.into_vec();
                v.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
                v.into_iter().map(|x| (x.1, x.2)).collect()
            })
            .collect())
    }

    /// Demographic-parity gap of a reference set and its gradient: rows with `group(row) = 0`
    /// form A, `1` form B (others ignored); DP = mean_A μ − mean_B μ (prior-weighted),
    /// ∇DP = mean_A μ′x − mean_B μ′x over the kept columns. `rows` is the reference set, or
    /// the training data when `None`.
    pub fn parity_gradient(
        &self,
        rows: Option<&[TestRow]>,
        group: impl Fn(u64) -> Option<u8> + Sync,
    ) -> Result<Parity> {
        let fit = self.fit;
        let m = fit.kept.len();
        let p = self.ds.design().layout.p;
        // Per group: Σa, Σaμ, Σ aμ′x (full p).
        let mut acc = [(0.0, 0.0, vec![0.0; p]), (0.0, 0.0, vec![0.0; p])];
        match rows {
            Some(rows) => {
                for r in rows {
                    let Some(g) = group(r.row) else { continue };
                    let (eta, mu, _, _) = self.test_terms(r);
                    let d = fit.link.mu_eta(eta);
                    let s = &mut acc[g as usize];
                    s.0 += r.a;
                    s.1 += r.a * mu;
                    for &(j, x) in &r.x {
                        s.2[j] += r.a * d * x;
                    }
                }
            }
            None => {
                let ds = self.ds;
                let layout = &ds.design().layout;
                acc = ds.cache.par_fold(
                    || [(0.0, 0.0, vec![0.0; p]), (0.0, 0.0, vec![0.0; p])],
                    |mut acc, v| {
                        let mut eta = Vec::new();
                        eta_mu(&v, fit, ds, &mut eta);
                        let mut w = [vec![0.0; v.n], vec![0.0; v.n]];
                        for i in 0..v.n {
                            let Some(g) = group(v.row_id[i]) else { continue };
                            let a = response(&v, i).1;
                            let mu = fit.link.inverse(eta[i]);
                            acc[g as usize].0 += a;
                            acc[g as usize].1 += a * mu;
                            w[g as usize][i] = a * fit.link.mu_eta(eta[i]);
                        }
                        for g in 0..2 {
                            let ones = vec![1.0; v.n];
                            xt_v(&v, layout, &ones, Some(&w[g]), &mut acc[g].2);
                        }
                        acc
                    },
                    |mut a, b| {
                        for (x, y) in a.iter_mut().zip(b) {
                            x.0 += y.0;
                            x.1 += y.1;
                            for (s, t) in x.2.iter_mut().zip(&y.2) {
                                *s += t;
                            }
                        }
                        a
                    },
                );
            }
        }
        if acc[0].0 == 0.0 || acc[1].0 == 0.0 {
            return Err(Error::Input(
                "the fairness reference set needs rows in both groups".into(),
            ));
        }
        let gap = acc[0].1 / acc[0].0 - acc[1].1 / acc[1].0;
        let grad: Vec<f64> = (0..m)
            .map(|k| {
                let j = fit.kept[k];
                acc[0].2[j] / acc[0].0 - acc[1].2[j] / acc[1].0
            })
            .collect();
        Ok(Parity {
            gap,
            gradient: grad,
            n_a: acc[0].0,
            n_b: acc[1].0,
        })
    }

    /// First-order Δβ (kept order) of removing the rows with `remove(row)`:
    /// M⁻¹(Σ_S xᵢℓ′ᵢ − a_S ḡ), plus the solve.
    pub fn removal_first_order(&mut self, remove: impl Fn(u64) -> bool + Sync + Copy) -> Result<Vec<f64>> {
        let g = self.score_sum(remove);
        let a_s = self.weight_sum(remove);
        let mut c: Vec<f64> = self.gbar.iter().map(|gb| a_s * gb).collect();
        if let Some(st) = self.restd.clone() {
            // Σ_S a x and Σ_S a x² over the kept columns: the removed rows' share of each
            // column's moments, hence its new s_j.
            let (ds, fit) = (self.ds, self.fit);
            let layout = &ds.design().layout;
            let p = layout.p;
            let (sx, sxx) = ds.cache.par_fold(
                || (vec![0.0; p], vec![0.0; p]),
                |(mut sx, mut sxx), v| {
                    let w: Vec<f64> = (0..v.n)
                        .map(|i| if remove(v.row_id[i]) { response(&v, i).1 } else { 0.0 })
                        .collect();
                    if w.iter().any(|x| *x != 0.0) {
                        let ones = vec![1.0; v.n];
                        xt_v(&v, layout, &ones, Some(&w), &mut sx);
                        crate::linalg::xt_sq(&v, layout, &w, &mut sxx);
                    }
                    (sx, sxx)
                },
                |mut a, b| {
                    for (x, y) in a.0.iter_mut().zip(&b.0) {
                        *x += y;
                    }
                    for (x, y) in a.1.iter_mut().zip(&b.1) {
                        *x += y;
                    }
                    a
                },
            );
            for (k, &j) in fit.kept.iter().enumerate() {
                if st.l1[k] != 0.0 || st.ridge[k] != 0.0 {
                    c[k] = st.removal_term(k, a_s, st.ratio(k, a_s, sx[j], sxx[j]));
                }
            }
        }
        let rhs: Vec<f64> = g.iter().zip(&c).map(|(x, ck)| x - ck).collect();
        self.solve(&rhs)
    }
}

/// One chunk's row effects: row ids, first order, Newton-corrected.
type Effects = (Vec<u64>, Vec<f64>, Option<Vec<f64>>);

/// DP gap and its gradient.
#[derive(Debug, Clone)]
pub struct Parity {
    /// mean_A μ − mean_B μ.
    pub gap: f64,
    /// ∇ gap over the kept columns.
    pub gradient: Vec<f64>,
    /// Σ a in group A.
    pub n_a: f64,
    /// Σ a in group B.
    pub n_b: f64,
}

#[derive(Debug, Clone, Copy, PartialEq)]
struct Top(f64, u64, f64);
impl Eq for Top {}
impl PartialOrd for Top {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Top {
    // Reversed: the heap's top is the weakest kept entry.
    fn cmp(&self, o: &Self) -> Ordering {
        o.0.total_cmp(&self.0).then(self.1.cmp(&o.1))
    }
}

fn push_top(h: &mut BinaryHeap<Top>, k: usize, x: Top) {
    if x.0.is_nan() || k == 0 {
        return;
    }
    if h.len() < k {
        h.push(x);
    } else if let Some(top) = h.peek() {
        if x.cmp(top) == Ordering::Less {
            h.pop();
            h.push(x);
        }
    }
}

/// The `k` largest (value, row) pairs of a stream, NaN skipped, ties by smaller row id.
#[derive(Debug, Clone)]
pub struct TopK {
    k: usize,
    heap: BinaryHeap<Top>,
}

impl TopK {
    /// Keep the `k` largest.
    pub fn new(k: usize) -> TopK {
        TopK {
            k,
            heap: BinaryHeap::new(),
        }
    }
    /// Offer a value.
    pub fn push(&mut self, row: u64, value: f64) {
        push_top(&mut self.heap, self.k, Top(value, row, value));
    }
    /// The kept (row, value), largest first.
    pub fn into_sorted(self) -> Vec<(u64, f64)> {
        let mut v = self.heap.into_vec();
        v.sort_by(|a, b| b.0.total_cmp(&a.0).then(a.1.cmp(&b.1)));
        v.into_iter().map(|x| (x.1, x.2)).collect()
    }
}

/// What [`Afif::refine_loo`] did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LooRefinement {
    /// Rows whose leave-one-out values come from the steps, largest leverage first.
    pub rows: Vec<u64>,
    /// Only rows with leverage above this were eligible.
    pub above: f64,
    /// Fisher-scoring steps per row.
    pub steps: usize,
    /// Chosen rows whose steps failed numerically (they keep the one-step ALO value).
    pub failed: Vec<u64>,
    /// Wall time of the steps.
    pub seconds: f64,
}

/// Picks the rows to refine from a stream of [`LooRows`]: the `k` largest leverages in
/// (`above`, 1).
#[derive(Debug, Clone)]
pub struct LooRefinePick {
    top: TopK,
    above: f64,
}

impl LooRefinePick {
    /// At most `k` rows with leverage above `above`.
    pub fn new(k: usize, above: f64) -> Self {
        LooRefinePick {
            top: TopK::new(k),
            above,
        }
    }
    /// Offer one chunk's rows.
    pub fn offer(&mut self, o: &LooRows) {
        for (&r, &h) in o.row.iter().zip(&o.hat) {
            if h > self.above && h < HAT_ONE {
                self.top.push(r, h);
            }
        }
    }
    /// The chosen row ids, largest leverage first.
    pub fn rows(self) -> Vec<u64> {
        self.top.into_sorted().into_iter().map(|x| x.0).collect()
    }
}

/// One chunk of leave-one-out output.
#[derive(Debug, Clone, Default)]
pub struct LooRows {
    /// Row ids.
    pub row: Vec<u64>,
    /// η̂ᵢ.
    pub eta: Vec<f64>,
    /// Approximate leave-one-out linear predictor η̃₋ᵢ.
    pub loo_eta: Vec<f64>,
    /// Row i's loss at η̃₋ᵢ: aᵢ d(yᵢ, μ(η̃₋ᵢ))/2.
    pub loo_loss: Vec<f64>,
    /// ℓ′ᵢ² xᵢᵀM⁻¹xᵢ.
    pub self_influence: Vec<f64>,
    /// hᵢ = mᵢ xᵢᵀM⁻¹xᵢ (the curvature in use).
    pub hat: Vec<f64>,
    /// Not written: response and weight (for the summary).
    pub y: Vec<f64>,
    /// Not written: prior weights.
    pub a: Vec<f64>,
    /// Not written: in-sample loss.
    pub in_loss: Vec<f64>,
}

/// ALO cross-validation summary (per unit prior weight, like `cv.glmnet`'s `cvm`).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LooSummary {
    /// Curvature used.
    pub curvature: Option<Curvature>,
    /// Removal convention.
    pub removal: Option<Removal>,
    /// Rows with positive weight.
    pub n: u64,
    /// Σ aᵢ d(yᵢ, μ̃₋ᵢ) / Σ aᵢ.
    pub deviance: f64,
    /// Its standard error (per-row spread / √(n − 1)), like `cvsd`.
    pub deviance_se: f64,
    /// Binomial: share (prior-weighted) of rows whose LOO prediction is on the wrong side of 0.5.
    pub misclassification: Option<f64>,
    /// Σ aᵢ d(yᵢ, μ̂ᵢ)/Σ aᵢ (in-sample, for comparison).
    pub insample_deviance: f64,
    /// Σ hᵢ (the rank for unpenalised fits; |active set| for the lasso).
    pub sum_hat: f64,
    /// Rows with h > 0.5.
    pub n_hat_above_half: u64,
    /// Rows with h ≥ 1 − 1e-10 (no LOO prediction: NaN).
    pub n_hat_one: u64,
}

/// ALO-CV at one λ of a path.
#[derive(Debug, Clone, serde::Serialize)]
pub struct AloPoint {
    /// Index in the path.
    pub lambda_index: usize,
    /// λ.
    pub lambda: f64,
    /// Non-zero coefficients (intercept excluded).
    pub df: usize,
    /// The summary there.
    #[serde(flatten)]
    pub loo: LooSummary,
}

/// Approximate LOO-CV error along a whole path from its one fit: at each λ, the fit on the
/// active set (one pass), ḡ (one pass) and the ALO pass.
pub fn alo_path(ds: &Dataset, path: &Path, curvature: Curvature, removal: Removal) -> Result<Vec<AloPoint>> {
    let mut out = Vec::with_capacity(path.points.len());
    for (k, pt) in path.points.iter().enumerate() {
        let fit = fit_at(ds, path, k)?;
        let a = Afif::new(ds, &fit, curvature, Solver::Cholesky, removal)?;
        let loo = a.loo(|_| Ok(()))?;
        out.push(AloPoint {
            lambda_index: k,
            lambda: pt.lambda,
            df: pt.df,
            loo,
        });
    }
    Ok(out)
}

/// `cv.glmnet`'s choices on an ALO-CV curve: (λ_min index: the smallest finite deviance;
/// λ_1se index: the largest λ — first along the path — within one standard error of it).
pub fn cv_choice(pts: &[AloPoint]) -> Option<(usize, usize)> {
    let best = (0..pts.len())
        .filter(|&k| pts[k].loo.deviance.is_finite())
        .min_by(|&x, &y| pts[x].loo.deviance.total_cmp(&pts[y].loo.deviance))?;
    let lim = pts[best].loo.deviance + pts[best].loo.deviance_se;
    let se1 = pts.iter().position(|p| p.loo.deviance <= lim).unwrap_or(best);
    Some((best, se1))
}

/// Coefficients after removing rows, by `steps` Fisher-scoring (proximal, when penalised)
/// steps of the reweighted objective from β̂, or to convergence (`steps = None`: the exact
/// refit, warm-started).
#[derive(Debug, Clone)]
pub struct Refit {
    /// Coefficients (length p).
    pub beta: Vec<f64>,
    /// Deviance on the remaining rows.
    pub deviance: f64,
    /// Steps taken.
    pub steps: usize,
    /// Whether converged (always false for a fixed number of steps unless the optimum was hit).
    pub converged: bool,
    /// The refit's warnings (e.g. separation: removing the only row of a level with the other
    /// outcome sends a coefficient to ±∞, which no one-step prediction can follow).
    pub warnings: Vec<String>,
}

/// Refit the model of `fit` (or of `path` at `index` when penalised) on `reduced` — the data
/// with rows removed ([`Dataset::without_rows`]) — from β̂: `steps` steps or to convergence.
pub fn refit_without(
    reduced: &Dataset,
    fit: &Fit,
    path: Option<(&Path, usize)>,
    steps: Option<usize>,
) -> Result<Refit> {
    match path {
        Some((path, idx)) => {
            let lam = path.points[idx].lambda;
            let r = prox_steps(
                reduced,
                &path.options,
                lam,
                &fit.beta,
                steps.unwrap_or(path.options.max_iter),
            )?;
            Ok(Refit {
                beta: r.beta,
                deviance: r.deviance,
                steps: r.steps,
                converged: r.converged,
                warnings: Vec::new(),
            })
        }
        None => {
            let mut fo = FitOptions::new(fit.family, Some(fit.link))?;
            fo.penalty = fit.penalty;
            if let Some(k) = steps {
                fo.max_iter = k.max(1);
            }
            let f = fit_from(reduced, &fo, Some(&fit.beta))?;
            let mut warnings = f.warnings;
            if steps.is_some() {
                // A fixed number of steps stops short by design: `converged` says so.
                warnings.retain(|w| !w.starts_with("algorithm did not converge"));
            }
            Ok(Refit {
                beta: f.beta,
                deviance: f.deviance,
                steps: f.iterations,
                converged: f.converged,
                warnings,
            })
        }
    }
}
