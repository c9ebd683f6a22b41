//! Cholesky factorization of a symmetric positive semi-definite Gram matrix that detects
//! aliased (linearly dependent) columns, in column order like R's `dqrdc2`, and drops them.
//!
//! The matrix is scaled to unit diagonal, S = D^{-1/2} G D^{-1/2}, so a pivot of the Cholesky
//! factor, L_jj², is the fraction of column j's (weighted) squared norm left after projecting
//! it on the kept columns before it. A column whose fraction is below `tol` is aliased. faer's
//! blocked Cholesky runs in natural order, so the first small pivot is exactly the column
//! sequential elimination would flag; it is removed and the factorization repeated.

use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::cholesky::llt;
use faer::{Conj, Mat, Par};

use crate::error::{Error, Result};

/// Default aliasing tolerance on the squared residual fraction L_jj² (a residual norm below
/// about 3e-6 of the column's own norm).
pub const ALIAS_TOL: f64 = 1e-11;

/// Order below which [`GramFactor`]'s factorization, solves and inverse run on the calling
/// thread (`Par::Seq`; from it on, with faer's global parallelism): waking the thread pool for
/// Adult's 81×81 Cholesky costs more than the factorization (`scripts/ab_timing.py … --case
/// adult-fit`: `fit_total` 23.4 → 22.8 ms, the same as with faer sequential throughout).
pub const PAR_MIN_ORDER: usize = 512;

/// Pay faer's one-time set-up on the calling thread: its first matrix product above nano-gemm's
/// size (16³ multiply-adds; a Cholesky of order ≥ ~40 has one) makes `private-gemm-x86` read the
/// CPU's cache sizes from sysfs (88 small files on the 2-core benchmark VM) and `/proc/cpuinfo`,
/// ~0.85 ms, kept for the rest of the process. The binary runs this on an idle worker at
/// start-up, while the arguments are parsed and the input opened, so that the first
/// factorization of a fit does not wait for it. The product is of order 32 and its result is discarded.
pub fn warm_up() {
    let a = Mat::<f64>::from_fn(32, 32, |i, j| (i == j) as u8 as f64);
    let mut b = Mat::<f64>::zeros(32, 32);
    faer::linalg::matmul::matmul(b.as_mut(), faer::Accum::Replace, a.as_ref(), a.as_ref(), 1.0, Par::Seq);
    std::hint::black_box(&b);
}

/// A factorization of G restricted to the kept (non-aliased) columns.
#[derive(Debug)]
pub struct GramFactor {
    /// Kept columns (indices into the full matrix), increasing.
    pub kept: Vec<usize>,
    /// Columns found aliased, increasing.
    pub aliased: Vec<usize>,
    scale: Vec<f64>,
    /// L of the unit-diagonal-scaled kept block S = L Lᵀ (lower triangle; the upper is zero).
    l: Mat<f64>,
}

impl GramFactor {
    /// Factor the symmetric `g` (full, both triangles; `n×n` column-major slice) over the
    /// `candidates` columns, dropping aliased ones. `ridge[j]` is added to the diagonal first
    /// (0 for none).
    pub fn new(g: &[f64], n: usize, candidates: &[usize], ridge: &[f64], tol: f64) -> Result<GramFactor> {
        let mut kept: Vec<usize> = Vec::with_capacity(candidates.len());
        let mut aliased = Vec::new();
        for &j in candidates {
            let d = g[j * n + j] + ridge[j];
            if d > 0.0 && d.is_finite() {
                kept.push(j);
            } else if d.is_finite() {
                aliased.push(j);
            } else {
                return Err(Error::Numerical(format!(
                    "non-finite diagonal of the information matrix at column {j}"
                )));
            }
        }
        loop {
            let m = kept.len();
            let scale: Vec<f64> = kept.iter().map(|&j| 1.0 / (g[j * n + j] + ridge[j]).sqrt()).collect();
            let drop = match scaled_cholesky(g, n, &kept, ridge, &scale)? {
                Err(llt::factor::LltError::NonPositivePivot { index }) => Some(index),
                Ok(l) => match (0..m).find(|&j| l[(j, j)] * l[(j, j)] < tol) {
                    Some(j) => Some(j),
                    None => {
                        aliased.sort_unstable();
                        return Ok(GramFactor {
                            kept,
                            aliased,
                            scale,
                            l,
                        });
                    }
                },
            };
            let j = drop.unwrap_or(0);
            if m == 0 {
                return Err(Error::Numerical("every column is aliased".into()));
            }
            aliased.push(kept.remove(j));
        }
    }

    /// The pivots L_jj² of the unit-diagonal-scaled factor, by kept position: the fraction of
    /// each kept column's squared norm left after projecting it on the kept columns before it.
    pub fn pivots(&self) -> Vec<f64> {
        let l = &self.l;
        (0..self.kept.len()).map(|j| l[(j, j)] * l[(j, j)]).collect()
    }

    /// Solve G_kk x = b_k; `b` is indexed by full column, the result by kept position.
    pub fn solve(&self, b: &[f64]) -> Vec<f64> {
        let m = self.kept.len();
        let mut x = Mat::from_fn(m, 1, |a, _| b[self.kept[a]] * self.scale[a]);
        let par = par_for(m);
        let mut mem = MemBuffer::new(llt::solve::solve_in_place_scratch::<f64>(m, 1, par));
        llt::solve::solve_in_place_with_conj(self.l.as_ref(), Conj::No, x.as_mut(), par, MemStack::new(&mut mem));
        (0..m).map(|a| x[(a, 0)] * self.scale[a]).collect()
    }

    /// (G_kk)⁻¹ scattered into an `n`×`n` column-major matrix over the full index set, with
    /// zero rows and columns for the aliased indices (the generalised inverse that hat values
    /// and influence use when some columns are linear combinations of the others).
    pub fn inverse_full(&self, n: usize) -> Vec<f64> {
        let inv = self.inverse();
        let mut out = vec![0.0; n * n];
        for (b, &jb) in self.kept.iter().enumerate() {
            for (a, &ja) in self.kept.iter().enumerate() {
                out[jb * n + ja] = inv[(a, b)];
            }
        }
        out
    }

    /// (G_kk)⁻¹ as a dense m×m matrix in kept order.
    pub fn inverse(&self) -> Mat<f64> {
        let m = self.kept.len();
        let par = par_for(m);
        let mut inv = Mat::zeros(m, m);
        let mut mem = MemBuffer::new(llt::inverse::inverse_scratch::<f64>(m, par));
        llt::inverse::inverse(inv.as_mut(), self.l.as_ref(), par, MemStack::new(&mut mem));
        // faer's inverse fills the lower triangle.
        super::block::mirror_lower(inv.as_mut());
        Mat::from_fn(m, m, |a, b| inv[(a, b)] * self.scale[a] * self.scale[b])
    }
}

/// The parallelism of faer's dense operations of order `m`: sequential below
/// [`PAR_MIN_ORDER`], faer's global setting from there.
fn par_for(m: usize) -> Par {
    if m < PAR_MIN_ORDER {
        Par::Seq
    } else {
        faer::get_global_parallelism()
    }
}

/// The Cholesky factor of S = D^{-1/2} (G + R) D^{-1/2} over the `kept` columns (`scale` =
/// D^{-1/2}): the lower triangle of S is written straight into the factor's storage and
/// factored in place by faer (`llt::factor::cholesky_in_place`, with the block sizes and
/// arithmetic of faer's `Llt`, so the factor is the same to the bit), so the only m × m matrix
/// is L. Through `Mat::llt` the scaled matrix was built whole and then copied into the factor's
/// own: `cargo bench --bench kernels -- gram_factor` (docs/PERFORMANCE.md). An error when an
/// entry of S is not finite; `Ok(Err(..))` names the first non-positive pivot.
fn scaled_cholesky(
    g: &[f64],
    n: usize,
    kept: &[usize],
    ridge: &[f64],
    scale: &[f64],
) -> Result<std::result::Result<Mat<f64>, llt::factor::LltError>> {
    let m = kept.len();
    let mut l = Mat::<f64>::zeros(m, m);
    // `kept` increases: with every column kept it is 0..n and the columns are read as slices.
    let all = m == n;
    let mut finite = true;
    for (b, &jb) in kept.iter().enumerate() {
        let g_col = &g[jb * n..(jb + 1) * n];
        let sb = scale[b];
        let col = l
            .col_mut(b)
            .try_as_col_major_mut()
            .expect("an owned matrix's columns are contiguous")
            .as_slice_mut();
        // The whole column is checked, the upper triangle's entries too (as the matrix is given).
        if all {
            for (&x, &sa) in g_col[..b].iter().zip(&scale[..b]) {
                finite &= (x * sa * sb).is_finite();
            }
            for ((c, &x), &sa) in col[b + 1..].iter_mut().zip(&g_col[b + 1..]).zip(&scale[b + 1..]) {
                *c = x * sa * sb;
                finite &= c.is_finite();
            }
        } else {
            for (a, &ja) in kept.iter().enumerate().filter(|&(a, _)| a != b) {
                let x = g_col[ja] * scale[a] * sb;
                finite &= x.is_finite();
                if a > b {
                    col[a] = x;
                }
            }
        }
        col[b] = (g_col[jb] + ridge[jb]) * sb * sb;
        finite &= col[b].is_finite();
    }
    if !finite {
        return Err(Error::Numerical("non-finite entries in the information matrix".into()));
    }
    let par = par_for(m);
    let mut mem = MemBuffer::new(llt::factor::cholesky_in_place_scratch::<f64>(
        m,
        par,
        Default::default(),
    ));
    Ok(llt::factor::cholesky_in_place(
        l.as_mut(),
        Default::default(),
        par,
        MemStack::new(&mut mem),
        Default::default(),
    )
    .map(|_| {
        // As faer's `Llt`: the strict upper triangle holds zeros.
        for b in 1..m {
            for a in 0..b {
                l[(a, b)] = 0.0;
            }
        }
        l
    }))
}

/// Bytes of memory available to this process (Linux: `MemAvailable` of /proc/meminfo), if known.
pub fn available_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}

/// Refuse, with a message saying why and what to do, a model whose dense m×m information
/// matrix cannot be held: a pass accumulates XᵀWX (m² doubles, in up to a few partial copies
/// of at most 2 GiB together or one when larger) and the Cholesky factor and inverse take two
/// more, so about 3·8·m² bytes. Without this check a categorical with 10⁶ levels asks the
/// allocator for terabytes and the process aborts.
pub fn check_dense_fits(m: usize, design: &crate::design::Design, what: &str) -> Result<()> {
    let need = 3.0 * 8.0 * (m as f64) * (m as f64);
    let Some(avail) = available_memory() else {
        return Ok(());
    };
    if need <= avail as f64 {
        return Ok(());
    }
    let widest = design
        .spec
        .categorical
        .iter()
        .zip(&design.levels)
        .max_by_key(|(_, l)| l.len())
        .map(|(t, l)| format!("; the widest categorical, '{}', has {} levels", t.column, l.len()))
        .unwrap_or_default();
    Err(Error::Usage(format!(
        "{what} needs the {m} × {m} information matrix XᵀWX in memory, about {} (three copies), \
         and {} is available ({m} columns{widest}). Fit a lasso or group-lasso path instead \
         (--penalty lasso|group: only the working set's Gram is held), or merge rare levels",
        human_bytes(need),
        human_bytes(avail as f64)
    )))
}

/// `n` bytes with a binary unit (KiB … TiB).
fn human_bytes(n: f64) -> String {
    let units = ["B", "KiB", "MiB", "GiB", "TiB", "PiB"];
    let mut x = n;
    let mut u = 0;
    while x >= 1024.0 && u + 1 < units.len() {
        x /= 1024.0;
        u += 1;
    }
    format!("{x:.1} {}", units[u])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn human_bytes_uses_binary_units() {
        assert_eq!(human_bytes(512.0), "512.0 B");
        assert_eq!(human_bytes(1536.0), "1.5 KiB");
        assert_eq!(human_bytes(3.0 * 8.0 * 1e12), "21.8 TiB");
    }

    fn gram(x: &[Vec<f64>]) -> (Vec<f64>, usize) {
        let p = x[0].len();
        let mut g = vec![0.0; p * p];
        for r in x {
            for a in 0..p {
                for b in 0..p {
                    g[b * p + a] += r[a] * r[b];
                }
            }
        }
        (g, p)
    }

    #[test]
    fn drops_the_later_of_two_collinear_columns() {
        // Column 2 = column 0 + column 1; column 3 is independent.
        let x: Vec<Vec<f64>> = (0..20)
            .map(|i| {
                let a = (i as f64).sin();
                let b = (i as f64 * 0.7).cos();
                vec![a, b, a + b, (i as f64).sqrt()]
            })
            .collect();
        let (g, p) = gram(&x);
        let f = GramFactor::new(&g, p, &[0, 1, 2, 3], &[0.0; 4], ALIAS_TOL).unwrap();
        assert_eq!(f.kept, [0, 1, 3]);
        assert_eq!(f.aliased, [2]);
        // Solve against a known β on the kept columns.
        let beta = [1.5, -2.0, 0.0, 0.25];
        let mut b = vec![0.0; p];
        for r in &x {
            let y: f64 = r.iter().zip(&beta).map(|(a, c)| a * c).sum();
            for j in 0..p {
                b[j] += r[j] * y;
            }
        }
        let sol = f.solve(&b);
        for (got, want) in sol.iter().zip([1.5, -2.0, 0.25]) {
            assert!((got - want).abs() < 1e-9, "{sol:?}");
        }
        let inv = f.inverse();
        assert!(inv[(0, 0)] > 0.0);
    }

    /// The scaled in-place factorization solves and inverts G + R as faer's own `Llt` of the
    /// explicit matrix does, with all columns kept and with a subset (an aliased one dropped).
    #[test]
    fn solve_and_inverse_match_faers_llt() {
        use faer::linalg::solvers::{DenseSolveCore, Solve};
        let rows: Vec<Vec<f64>> = (0..40)
            .map(|i| {
                let t = i as f64;
                vec![
                    1.0,
                    t.sin() * 3.0,
                    (0.3 * t).cos(),
                    t.sqrt() * 1e3,
                    0.0,
                    (1.7 * t).sin() * 1e-2,
                ]
            })
            .collect();
        let (g, p) = gram(&rows);
        let ridge = [0.0, 0.5, 0.5, 0.5, 0.0, 0.5];
        let b: Vec<f64> = (0..p).map(|j| j as f64 - 2.5).collect();
        let f = GramFactor::new(&g, p, &(0..p).collect::<Vec<_>>(), &ridge, ALIAS_TOL).unwrap();
        // Column 4 is all zeros: aliased; the others kept.
        assert_eq!(f.kept, [0, 1, 2, 3, 5]);
        let k = &f.kept;
        let a = Mat::from_fn(k.len(), k.len(), |x, y| {
            g[k[y] * p + k[x]] + if x == y { ridge[k[x]] } else { 0.0 }
        });
        let llt = a.llt(faer::Side::Lower).unwrap();
        let want = llt.solve(Mat::from_fn(k.len(), 1, |x, _| b[k[x]]));
        let want_inv = llt.inverse();
        let got = f.solve(&b);
        let got_inv = f.inverse();
        for x in 0..k.len() {
            assert!(
                (got[x] - want[(x, 0)]).abs() <= 1e-9 * want[(x, 0)].abs().max(1e-12),
                "{got:?}"
            );
            for y in 0..k.len() {
                let (u, v) = (got_inv[(x, y)], want_inv[(x, y)]);
                assert!(
                    (u - v).abs() <= 1e-9 * v.abs().max(1e-15),
                    "inverse ({x}, {y}): {u} vs {v}"
                );
                assert!((u - got_inv[(y, x)]).abs() <= 1e-15 * u.abs(), "symmetric");
            }
        }
        // The full inverse puts zeros at the aliased column.
        let full = f.inverse_full(p);
        assert!((0..p).all(|j| full[4 * p + j] == 0.0 && full[j * p + 4] == 0.0));
    }

    #[test]
    fn non_finite_information_is_an_error() {
        let x: Vec<Vec<f64>> = (0..5).map(|i| vec![1.0, i as f64]).collect();
        let (mut g, p) = gram(&x);
        g[p] = f64::NAN; // (0, 1), above the diagonal
        let e = GramFactor::new(&g, p, &[0, 1], &[0.0; 2], ALIAS_TOL).unwrap_err();
        assert!(e.to_string().contains("non-finite entries"), "{e}");
    }

    #[test]
    fn zero_column_is_aliased() {
        let x: Vec<Vec<f64>> = (0..5).map(|i| vec![1.0, 0.0, i as f64]).collect();
        let (g, p) = gram(&x);
        let f = GramFactor::new(&g, p, &[0, 1, 2], &[0.0; 3], ALIAS_TOL).unwrap();
        assert_eq!(f.kept, [0, 2]);
    }
}
