//! Relative-error randomized leverage (Drineas, Magdon-Ismail, Mahoney & Woodruff 2012, with
//! an input-sparsity first sketch as in Clarkson & Woodruff 2013), in two passes:
//!
//! 1. A = W^{1/2} X_A (plus the ridge rows √c_j e_jᵀ when penalised) is sketched to m rows by a
//!    sparse embedding Π₁ (OSNAP: each row of A goes to s random rows with random signs
//!    ±1/√s, keyed by the row id); QR of Π₁A gives R with AR⁻¹ having near-orthonormal columns.
//! 2. hat_approx_i = ‖a_iᵀ R⁻¹ Π₂‖², Π₂ a p_A × r Gaussian (JL) matrix, so each row costs
//!    O(nnz_i · r).
//!
//! Sizes from ε (`--epsilon`, default 0.3): m = ⌈p_A·ln(p_A + 1)/ε²⌉ (at least 2p_A, at most
//! n), s =
//! ⌈ln(p_A + 1)/ε⌉ clamped to [1, 16], r = ⌈4 ln(n + 1)/ε²⌉. With these the leverages are
//! within a factor (1 ± ε)-ish of the exact ones for most rows (the guarantee is probabilistic;
//! the tests check the median relative error against ε). Unlike the influence sketch the
//! estimate is unbiased in scale: Σ hat_approx ≈ rank.

use rayon::prelude::*;

use super::exact::{eta_mu, hat_weight};
use super::sketch::{mix, scores_from_hat, uniform, ApproxRows};
use crate::error::{Error, Result};
use crate::glm::irls::response;
use crate::glm::Fit;
use crate::ingest::Dataset;
use crate::linalg::{ColumnSubset, RowEntries};

/// Options of [`randomized_leverage`].
#[derive(Debug, Clone, Copy)]
pub struct RandomizedOptions {
    /// Target relative error ε.
    pub epsilon: f64,
    /// Seed of both sketches.
    pub seed: u64,
}

/// Sizes and facts reported in summary.json.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RandomizedSummary {
    /// ε.
    pub epsilon: f64,
    /// Seed.
    pub seed: u64,
    /// Rows m of the first (sparse) sketch.
    pub sketch_rows: usize,
    /// Non-zeros per row s of the sparse embedding.
    pub nonzeros_per_row: usize,
    /// Columns r of the JL projection.
    pub jl_dim: usize,
    /// Σ hat_approx (≈ rank).
    pub sum_hat_approx: f64,
}

/// Relative-error approximate leverage of every row (and the C-bar / Cook's distance built on
/// it), handed to `sink` chunk by chunk in order.
pub fn randomized_leverage(
    ds: &Dataset,
    fit: &Fit,
    opts: &RandomizedOptions,
    mut sink: impl FnMut(ApproxRows) -> Result<()>,
) -> Result<RandomizedSummary> {
    if !(opts.epsilon > 0.0 && opts.epsilon < 1.0) {
        return Err(Error::Usage(format!(
            "--epsilon must be in (0, 1), got {}",
            opts.epsilon
        )));
    }
    let layout = &ds.design().layout;
    let kept = ColumnSubset::new(layout.p, &fit.kept);
    let p = kept.len();
    let lp = ((p + 1) as f64).ln();
    // More sketch rows than observations would only cost time.
    let m_rows = ((p as f64 * lp / (opts.epsilon * opts.epsilon)).ceil() as usize)
        .max(2 * p)
        .min((fit.n_obs as usize).max(p + 1));
    let s = ((lp / opts.epsilon).ceil() as usize).clamp(1, 16);
    let r = (4.0 * ((fit.n_obs + 1) as f64).ln() / (opts.epsilon * opts.epsilon)).ceil() as usize;
    let bytes = m_rows * p * 8;
    if bytes > 4 << 30 {
        return Err(Error::Usage(format!(
            "--leverage randomized needs a {m_rows} x {p} sketch ({:.1} GiB); raise --epsilon",
            bytes as f64 / (1u64 << 30) as f64
        )));
    }
    let inv_sqrt_s = 1.0 / (s as f64).sqrt();
    let seed = mix(opts.seed ^ 0x5EED_0F1E_7E0A_6E00);
    // Pass 1: Π₁A, m × p row-major, summed in two fixed groups (deterministic).
    let sa = ds.cache.par_fold_groups(
        2,
        || crate::linalg::spare::zeroed(m_rows * p),
        |mut acc, v| {
            let mut eta = Vec::new();
            eta_mu(&v, fit, ds, &mut eta);
            let rows = RowEntries::new(&v, layout, &kept);
            let mut e = Vec::new();
            for (i, &e_i) in eta.iter().enumerate() {
                let (y, a) = response(&v, i);
                if a == 0.0 {
                    continue;
                }
                let mu = fit.link.inverse(e_i);
                let sw = hat_weight(fit, false, y, a, e_i, mu).max(0.0).sqrt();
                rows.fill(i, &mut e);
                let key = mix(seed ^ v.row_id[i]);
                for t in 0..s {
                    let h = mix(key ^ t as u64);
                    let b = (h % m_rows as u64) as usize;
                    let sign = if (h >> 63) == 1 { inv_sqrt_s } else { -inv_sqrt_s };
                    let row = &mut acc[b * p..(b + 1) * p];
                    for &(l, x) in &e {
                        row[l] += sign * sw * x;
                    }
                }
            }
            acc
        },
        |mut a, b| {
            for (x, y) in a.iter_mut().zip(&b) {
                *x += y;
            }
            a
        },
    );
    // The ridge rows, then QR.
    let ridge: Vec<usize> = (0..p)
        .filter(|&k| fit.penalty_curvature.get(k).is_some_and(|&c| c > 0.0))
        .collect();
    let total = m_rows + ridge.len();
    let mat = faer::Mat::from_fn(total, p, |i, j| {
        if i < m_rows {
            sa[i * p + j]
        } else {
            let k = ridge[i - m_rows];
            if j == k {
                fit.penalty_curvature[k].sqrt()
            } else {
                0.0
            }
        }
    });
    drop(sa);
    let qr = mat.qr();
    let rmat = qr.R();
    let rr = rmat.submatrix(0, 0, p, p).to_owned();
    if (0..p).any(|k| rr[(k, k)] == 0.0 || !rr[(k, k)].is_finite()) {
        return Err(Error::Numerical(
            "the randomized leverage sketch is rank deficient; lower --epsilon".into(),
        ));
    }
    // Ω₂ = R⁻¹Π₂ (p × r), Π₂ Gaussian N(0, 1/r) keyed by (seed, column of A, j).
    let mut omega = faer::Mat::from_fn(p, r, |k, j| {
        let key = mix(seed ^ mix(0xA11CE ^ kept.columns()[k] as u64)) ^ (2 * j as u64);
        let (u1, u2) = (uniform(key), uniform(key ^ 1));
        (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos() / (r as f64).sqrt()
    });
    faer::linalg::triangular_solve::solve_upper_triangular_in_place(rr.as_ref(), omega.as_mut(), faer::Par::Seq);
    crate::linalg::clear_upper_simd_state();
    let om: Vec<f64> = (0..p)
        .flat_map(|k| (0..r).map(move |j| (k, j)))
        .map(|(k, j)| omega[(k, j)])
        .collect();
    // Pass 2.
    let mut sum = crate::linalg::Sum::default();
    let batch = 2 * rayon::current_num_threads().max(1);
    let n_chunks = ds.cache.n_chunks();
    let mut start = 0;
    while start < n_chunks {
        let end = (start + batch).min(n_chunks);
        let outs: Vec<ApproxRows> = (start..end)
            .into_par_iter()
            .map(|c| {
                let v = ds.cache.view(c);
                let mut eta = Vec::new();
                eta_mu(&v, fit, ds, &mut eta);
                let rows = RowEntries::new(&v, layout, &kept);
                let mut e = Vec::new();
                let mut u = vec![0.0; r];
                let (mut h, mut rp) = (vec![0.0; v.n], vec![0.0; v.n]);
                for i in 0..v.n {
                    let (y, a) = response(&v, i);
                    if a == 0.0 {
                        continue;
                    }
                    let mu = fit.link.inverse(eta[i]);
                    let w = hat_weight(fit, false, y, a, eta[i], mu).max(0.0);
                    rp[i] = (y - mu) * a.sqrt() / fit.family.variance(mu).sqrt();
                    rows.fill(i, &mut e);
                    u.fill(0.0);
                    for &(l, x) in &e {
                        for (t, &o) in u.iter_mut().zip(&om[l * r..(l + 1) * r]) {
                            *t += x * o;
                        }
                    }
                    h[i] = w * u.iter().map(|t| t * t).sum::<f64>();
                }
                ds.cache.release(c);
                scores_from_hat(v.row_id.to_vec(), h, &rp, fit)
            })
            .collect();
        for o in outs {
            for &x in &o.hat {
                sum.add(x);
            }
            sink(o)?;
        }
        start = end;
    }
    Ok(RandomizedSummary {
        epsilon: opts.epsilon,
        seed: opts.seed,
        sketch_rows: m_rows,
        nonzeros_per_row: s,
        jl_dim: r,
        sum_hat_approx: sum.value(),
    })
}
