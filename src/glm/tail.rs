//! IRLS's tail: the iterations after every coefficient but a few level columns has settled.
//!
//! A fit with (quasi-)separated levels runs on long after the rest of the model has converged:
//! each iteration walks the separated levels' estimates about one unit further towards ±∞
//! until the deviance stops changing (Adult: in its last 14 steps of 22, the 78 other
//! coefficients together move no row's η by more than 1e-6, three level columns by about 1).
//! Each of those iterations is a full pass over the data, yet only the moving levels' rows
//! change.
//!
//! Once the columns outside a small moving set M move no row's η by more than an entry
//! threshold in a step ([`thresholds`]), the fit holds the other rows (the *settled* rows,
//! which have no entry in M) at their quadratic model about β₀, the coefficients of the last
//! full pass: their share of XᵀWX (G₀) and of XᵀWz is held fixed and their deviance is
//! D₀ − 2s₀ᵀδ + δᵀG₀δ, δ = β − β₀, s₀ their score at β₀. Each further iteration passes over M's
//! rows alone, copied to RAM. That is Fisher scoring on a surrogate objective which is exact
//! for the moving rows. For the settled rows, with a canonical link (the Fisher information is
//! the Hessian) the model's score errs to second order in their η's drift since β₀ and its
//! deviance to third; with another link the score errs to first order times the Hessian's
//! difference from the Fisher information. The drift is at most Σⱼ∉M maxᵢ|xᵢⱼ|·|βⱼ − β₀ⱼ|, kept
//! within a budget; past it, full passes resume. A full pass at the final β gives the
//! deviance, Pearson χ² and counts that are reported, and checks the surrogate's deviance
//! against it.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use super::irls::{irls_pass_chunks, FitOptions, PassStats};
use super::{Family, Link};
use crate::chunk::{Chunk, ChunkView};
use crate::design::Layout;
use crate::ingest::Dataset;

/// A step enters the tail when the columns outside M together move no row's η by more than
/// this (bounded by Σⱼ maxᵢ|xᵢⱼ|·|Δβⱼ|) ...
pub const ENTER_STEP: f64 = 1e-9;

/// ... and the settled rows' η may drift by at most this since β₀ (bounded the same way)
/// before the fit leaves the tail and passes over all rows again.
pub const DRIFT_BUDGET: f64 = 1e-8;

/// [`ENTER_STEP`] for binomial–logit and Poisson–log. Their links are canonical, so the
/// settled rows' quadratic model errs in the score only to second order in the drift, and η
/// is on the log-odds or log scale, so a drift of Δη changes each μ by at most a relative
/// Δη (logit: of μ(1 − μ)). A drift of 1e-5 then errs in the score by at most 5e-11 of the
/// rows' weights. Adult's other coefficients step by 1e-6 or less from its ninth step.
pub const ENTER_STEP_LOG_CANONICAL: f64 = 1e-6;

/// [`DRIFT_BUDGET`] for binomial–logit and Poisson–log (see [`ENTER_STEP_LOG_CANONICAL`]).
pub const DRIFT_BUDGET_LOG_CANONICAL: f64 = 1e-5;

/// ([`ENTER_STEP`], [`DRIFT_BUDGET`]) for a fit's family and link: the looser pair where η is a
/// canonical log or log-odds scale, the strict one elsewhere (an identity or inverse link's η
/// has the response's own scale; a non-canonical link's model errs to first order).
fn thresholds(opts: &FitOptions) -> (f64, f64) {
    match (opts.family, opts.link) {
        (Family::Binomial, Link::Logit) | (Family::Poisson, Link::Log) => {
            (ENTER_STEP_LOG_CANONICAL, DRIFT_BUDGET_LOG_CANONICAL)
        }
        _ => (ENTER_STEP, DRIFT_BUDGET),
    }
}

/// The moving rows may be at most this fraction of the data ...
const MAX_ROW_FRACTION: usize = 8;

/// ... and at most this many rows (the copy's RAM does not grow with n).
pub const MAX_ROWS: usize = 1 << 18;

/// The tail's state: the moving rows, in RAM, and the settled rows' pass sums at β₀.
pub(crate) struct Tail {
    /// The rows with an entry in a moving column, copied from the cache.
    rows: Vec<Chunk>,
    /// maxᵢ|xᵢⱼ| of each settled column (0 for moving columns): the drift bound's weights.
    reach: Vec<f64>,
    /// Where the settled rows' model is centred.
    beta0: Vec<f64>,
    /// The settled rows' sums at β₀ (the full pass less the moving rows' pass).
    held: PassStats,
    /// The settled rows' score at β₀, Xᵀ(w ∘ (y − μ)/μ′) = XᵀWz − G₀β₀.
    score0: Vec<f64>,
    /// How far the settled rows' η may drift ([`thresholds`]).
    budget: f64,
}

/// What the fit remembers between attempts to enter the tail.
#[derive(Default)]
pub(crate) struct TailProbe {
    /// maxᵢ|xᵢⱼ| per column, found once per fit.
    reach: Option<Vec<f64>>,
    /// A moving set already found to have too many rows.
    rejected: Option<Vec<usize>>,
}

impl Tail {
    /// The tail after the full pass `st` at `beta0` and the step to `beta1`, or `None` where it
    /// does not apply: a moving column that is the intercept or a numeric column, or whose rows
    /// are too many ([`MAX_ROWS`], an eighth of the data).
    pub(crate) fn enter(
        ds: &Dataset,
        opts: &FitOptions,
        st: &PassStats,
        beta0: &[f64],
        beta1: &[f64],
        probe: &mut TailProbe,
    ) -> Option<Tail> {
        let layout = &ds.design().layout;
        let p = layout.p;
        if st.block.is_some() || st.gram.len() != p * p {
            return None;
        }
        let enter_step = thresholds(opts).0;
        // The intercept and numeric columns touch every row: they cannot be in the moving set.
        let first_moving = layout.dense_offset() + layout.n_dense;
        let reach = match &probe.reach {
            Some(r) => r.clone(),
            None => {
                // Before a pass for the numeric and sparse columns' reach: whether the other
                // columns' steps leave a moving set at all (in most fits they all move, then
                // all settle).
                let mut rough = vec![1.0; p];
                rough[layout.dense_offset()..first_moving].fill(0.0);
                if moving_columns(&rough, beta0, beta1, enter_step)?[0] < first_moving {
                    return None;
                }
                probe.reach.insert(column_reach(ds)).clone()
            }
        };
        let moving = moving_columns(&reach, beta0, beta1, enter_step)?;
        if moving[0] < first_moving || probe.rejected.as_ref() == Some(&moving) {
            return None;
        }
        let n = ds.counts().n_obs as usize;
        let cap = MAX_ROWS.min(n / MAX_ROW_FRACTION);
        let Some(rows) = collect_rows(ds, layout, &moving, cap) else {
            probe.rejected = Some(moving);
            return None;
        };
        Some(Tail::new(layout, opts, st, rows, &moving, reach, beta0))
    }

    /// The tail from the full pass `st` at `beta0`, the `rows` with an entry in a column of
    /// `moving`, and every column's maxᵢ|xᵢⱼ| (`reach`).
    fn new(
        layout: &Layout,
        opts: &FitOptions,
        st: &PassStats,
        rows: Vec<Chunk>,
        moving: &[usize],
        mut reach: Vec<f64>,
        beta0: &[f64],
    ) -> Tail {
        let p = layout.p;
        let on_rows = irls_pass_chunks(&rows, layout, opts, beta0);
        let mut held = st.clone();
        held.subtract(&on_rows);
        // The settled rows have no entry in a moving column: those sums are 0, not rounding.
        for &j in moving {
            held.gram[j * p..(j + 1) * p].fill(0.0);
            for r in 0..p {
                held.gram[r * p + j] = 0.0;
            }
            held.xtwz[j] = 0.0;
            reach[j] = 0.0;
        }
        let score0 = (0..p)
            .map(|r| held.xtwz[r] - dot(&held.gram[r * p..(r + 1) * p], beta0))
            .collect();
        Tail {
            rows,
            reach,
            beta0: beta0.to_vec(),
            held,
            score0,
            budget: thresholds(opts).1,
        }
    }

    /// Whether the settled rows' model still holds at `beta`: their η has drifted by at most
    /// the budget ([`thresholds`]) since β₀.
    pub(crate) fn holds(&self, beta: &[f64]) -> bool {
        drift(&self.reach, &self.beta0, beta) <= self.budget
    }

    /// The pass sums at `beta`: the moving rows' own, plus the settled rows' model.
    pub(crate) fn pass(&self, layout: &Layout, opts: &FitOptions, beta: &[f64]) -> PassStats {
        let p = layout.p;
        let on_rows = irls_pass_chunks(&self.rows, layout, opts, beta);
        let mut st = self.held.clone().merge(on_rows);
        let delta: Vec<f64> = beta.iter().zip(&self.beta0).map(|(b, b0)| b - b0).collect();
        let quad: f64 = (0..p)
            .map(|r| delta[r] * dot(&self.held.gram[r * p..(r + 1) * p], &delta))
            .sum();
        st.dev.add(quad - 2.0 * dot(&self.score0, &delta));
        st
    }

    /// XᵀWX with the moving rows' weights at `prev` and the settled rows' from `full`, a full
    /// pass at `beta` (the information of the step from `prev` to `beta`, but for the settled
    /// rows' last step, which moved their η by no more than the drift bound). Only the `gram`
    /// of the result is meaningful.
    pub(crate) fn information_at(
        &self,
        full: &PassStats,
        layout: &Layout,
        opts: &FitOptions,
        prev: &[f64],
        beta: &[f64],
    ) -> PassStats {
        let mut st = full.clone();
        st.subtract(&irls_pass_chunks(&self.rows, layout, opts, beta));
        st.merge(irls_pass_chunks(&self.rows, layout, opts, prev))
    }

    /// Rows the tail's passes visit.
    pub(crate) fn n_rows(&self) -> usize {
        self.rows.iter().map(Chunk::n_rows).sum()
    }
}

fn dot(a: &[f64], b: &[f64]) -> f64 {
    a.iter().zip(b).map(|(x, y)| x * y).sum()
}

/// Σⱼ reachⱼ·|βⱼ − β₀ⱼ|: a bound on how far any row's η (of the columns with a reach) has
/// moved between β₀ and β.
fn drift(reach: &[f64], beta0: &[f64], beta: &[f64]) -> f64 {
    reach
        .iter()
        .zip(beta0.iter().zip(beta))
        .map(|(r, (a, b))| r * (b - a).abs())
        .sum()
}

/// The columns that moved in the step from `beta0` to `beta1`, sorted: all but the largest set
/// of columns whose steps together move no row's η by more than `enter_step`. `None` when no
/// column is left out of that set or when every one is.
fn moving_columns(reach: &[f64], beta0: &[f64], beta1: &[f64], enter_step: f64) -> Option<Vec<usize>> {
    let mut steps: Vec<(f64, usize)> = (0..reach.len())
        .map(|j| (reach[j] * (beta1[j] - beta0[j]).abs(), j))
        .collect();
    if steps.iter().any(|s| !s.0.is_finite()) {
        return None;
    }
    steps.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut sum = 0.0;
    let settled = steps
        .iter()
        .take_while(|s| {
            sum += s.0;
            sum <= enter_step
        })
        .count();
    if settled == 0 || settled == steps.len() {
        return None;
    }
    let mut moving: Vec<usize> = steps[settled..].iter().map(|s| s.1).collect();
    moving.sort_unstable();
    Some(moving)
}

/// maxᵢ|xᵢⱼ| for every column j: 1 for the intercept and level columns, the largest magnitude
/// for numeric and sparse columns. One pass.
fn column_reach(ds: &Dataset) -> Vec<f64> {
    let layout = &ds.design().layout;
    let (d0, nd, sp0) = (layout.dense_offset(), layout.n_dense, layout.sparse_offset);
    let parts = ds.cache.par_map(|_, v| {
        let dense: Vec<f64> = (0..nd)
            .map(|j| v.dense_col(j).iter().fold(0.0f64, |m, x| m.max(x.abs())))
            .collect();
        let mut sparse = vec![0.0f64; layout.sparse_width];
        for (&k, &x) in v.indices.iter().zip(v.values) {
            let s = &mut sparse[k as usize];
            *s = s.max(x.abs());
        }
        (dense, sparse)
    });
    let mut reach = vec![1.0f64; layout.p];
    reach[d0..d0 + nd].fill(0.0);
    reach[sp0..].fill(0.0);
    for (dense, sparse) in parts {
        for (r, x) in reach[d0..d0 + nd].iter_mut().zip(dense) {
            *r = f64::max(*r, x);
        }
        for (r, x) in reach[sp0..].iter_mut().zip(sparse) {
            *r = f64::max(*r, x);
        }
    }
    reach
}

/// The rows with an entry in a column of `moving` (level or sparse columns), copied out of the
/// cache chunk by chunk; `None` if they are more than `cap`.
fn collect_rows(ds: &Dataset, layout: &Layout, moving: &[usize], cap: usize) -> Option<Vec<Chunk>> {
    // Per categorical, which of its codes are moving levels; which sparse columns move.
    let mut level_moves: Vec<Vec<bool>> = layout.cats.iter().map(|b| vec![false; b.n_levels as usize]).collect();
    let mut sparse_moves = vec![false; layout.sparse_width];
    for (k, b) in layout.cats.iter().enumerate() {
        for code in 0..b.n_levels {
            if b.column(code).is_some_and(|j| moving.binary_search(&j).is_ok()) {
                level_moves[k][code as usize] = true;
            }
        }
    }
    for &j in moving.iter().filter(|&&j| j >= layout.sparse_offset) {
        sparse_moves[j - layout.sparse_offset] = true;
    }
    let cats: Vec<usize> = (0..level_moves.len())
        .filter(|&k| level_moves[k].contains(&true))
        .collect();
    let any_sparse = sparse_moves.contains(&true);
    let (taken, over) = (AtomicUsize::new(0), AtomicBool::new(false));
    let parts = ds.cache.par_map(|_, v: ChunkView<'_>| {
        if over.load(Ordering::Relaxed) {
            return None;
        }
        let mut hit = vec![false; v.n];
        for &k in &cats {
            for (h, &c) in hit.iter_mut().zip(v.cat_col(k)) {
                *h |= level_moves[k][c as usize];
            }
        }
        if any_sparse {
            for (i, h) in hit.iter_mut().enumerate() {
                *h |= v.sparse_row(i).0.iter().any(|&c| sparse_moves[c as usize]);
            }
        }
        let rows: Vec<usize> = (0..v.n).filter(|&i| hit[i]).collect();
        if taken.fetch_add(rows.len(), Ordering::Relaxed) + rows.len() > cap {
            over.store(true, Ordering::Relaxed);
            return None;
        }
        Some(v.select(&rows))
    });
    if over.load(Ordering::Relaxed) {
        return None;
    }
    Some(parts.into_iter().flatten().filter(|c| c.n_rows() > 0).collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::glm::Family;

    /// Rows `rows` of a logistic model with one numeric column x ∈ [−2, 2] and one factor of
    /// three levels: row i at level `level(i)`, label `y(i)`.
    fn chunk(rows: std::ops::Range<usize>, level: impl Fn(usize) -> u32, y: impl Fn(usize) -> f64) -> Chunk {
        let n = rows.len();
        Chunk {
            row_id: rows.clone().map(|i| i as u64).collect(),
            y: rows.clone().map(&y).collect(),
            failures: None,
            weight: vec![1.0; n],
            offset: vec![0.0; n],
            n_dense: 1,
            dense: rows.clone().map(|i| (i % 17) as f64 / 4.0 - 2.0).collect(),
            n_cat: 1,
            cat: rows.map(level).collect(),
            ..Default::default()
        }
    }

    /// The surrogate's deviance is the settled rows' own to third order in the step (logit:
    /// the Fisher information is the Hessian), where leaving out the model's terms errs to
    /// first order; the moving rows' share is exact.
    #[test]
    fn settled_rows_follow_their_quadratic_model() {
        let layout = Layout::new(true, 1, &[3], 0);
        let opts = FitOptions::new(Family::Binomial, None).unwrap();
        let settled = chunk(0..300, |i| (i % 2) as u32, |i| ((i * 7) % 3 == 0) as u8 as f64);
        let moving = chunk(300..306, |_| 2, |_| 0.0);
        let both = [settled.clone(), moving.clone()];
        let beta0 = [0.2, 0.3, -0.4, -5.0];
        let st = irls_pass_chunks(&both, &layout, &opts, &beta0);
        let tail = Tail::new(
            &layout,
            &opts,
            &st,
            vec![moving.clone()],
            &[3],
            vec![1.0, 2.0, 1.0, 1.0],
            &beta0,
        );
        assert_eq!(tail.reach, [1.0, 2.0, 1.0, 0.0]);
        let dir = [0.7, -0.3, 0.5, 2.0];
        let at = |h: f64| -> Vec<f64> { beta0.iter().zip(&dir).map(|(b, d)| b + h * d).collect() };
        let dev = |chunks: &[Chunk], beta: &[f64]| irls_pass_chunks(chunks, &layout, &opts, beta).dev.value();
        let dev_settled0 = dev(std::slice::from_ref(&settled), &beta0);
        let err = |h: f64| (tail.pass(&layout, &opts, &at(h)).dev.value() - dev(&both, &at(h))).abs();
        let err_held = |h: f64| (dev_settled0 + dev(std::slice::from_ref(&moving), &at(h)) - dev(&both, &at(h))).abs();
        let (e1, e2) = (err(1e-2), err(5e-3));
        assert!(e1 < 1e-3 * err_held(1e-2), "{e1:e} vs {:e}", err_held(1e-2));
        assert!((1.0 / 16.0..1.0 / 4.0).contains(&(e2 / e1)), "{e1:e} then {e2:e}");
        // At β₀ itself: the full pass's sums.
        let at0 = tail.pass(&layout, &opts, &beta0);
        assert!((at0.dev.value() - st.dev.value()).abs() <= 1e-12 * st.dev.value());
        for (a, b) in at0
            .gram
            .iter()
            .zip(st.gram.iter())
            .chain(at0.xtwz.iter().zip(st.xtwz.iter()))
        {
            assert!((a - b).abs() <= 1e-12 * (1.0 + b.abs()), "{a} vs {b}");
        }
        // The drift bound: the settled columns' steps weighted by their reach (here 1.8·h),
        // against logit's budget.
        assert_eq!(tail.budget, DRIFT_BUDGET_LOG_CANONICAL);
        assert!(tail.holds(&at(DRIFT_BUDGET_LOG_CANONICAL / 2.0)));
        assert!(!tail.holds(&at(DRIFT_BUDGET_LOG_CANONICAL / 1.5)));
    }

    /// The moving set is what is left once the smallest steps add up to the entry threshold.
    #[test]
    fn moving_columns_are_the_steps_past_the_settled_sum() {
        let reach = [1.0, 1e4, 1.0, 1.0, 1.0];
        let beta0 = [0.0; 5];
        let step = |d: [f64; 5]| moving_columns(&reach, &beta0, &d, ENTER_STEP);
        assert_eq!(step([1e-10, 1e-14, 0.9, 1e-11, 1.1]), Some(vec![2, 4]));
        // A numeric column's step counts at its reach: 1e-12 · 1e4 = 1e-8 moves η too far.
        assert_eq!(step([1e-10, 1e-12, 0.9, 1e-11, 1.1]), Some(vec![1, 2, 4]));
        assert_eq!(step([1e-10, 1e-14, 1e-10, 1e-10, 1e-10]), None);
        assert_eq!(step([1.0; 5]), None);
        assert_eq!(step([1e-10, 0.0, f64::NAN, 0.0, 0.0]), None);
    }
}
