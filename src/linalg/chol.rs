//! Cholesky factorization of a symmetric positive semi-definite Gram matrix that detects
//! aliased (linearly dependent) columns, in column order like R's `dqrdc2`, and drops them.
//!
//! The matrix is scaled to unit diagonal, S = D^{-1/2} G D^{-1/2}, so a pivot of the Cholesky
//! factor, L_jj², is the fraction of column j's (weighted) squared norm left after projecting
//! it on the kept columns before it. A column whose fraction is below `tol` is aliased. faer's
//! blocked Cholesky runs in natural order, so the first small pivot is exactly the column
//! sequential elimination would flag; it is removed and the factorization repeated.

use std::sync::Mutex;

use faer::linalg::solvers::{DenseSolveCore, Solve};
use faer::{Mat, Par, Side};

use crate::error::{Error, Result};

/// Default aliasing tolerance on the squared residual fraction L_jj² (a residual norm below
/// about 3e-6 of the column's own norm).
pub const ALIAS_TOL: f64 = 1e-11;

/// Order below which [`sequential_if_small`] runs faer's dense factorizations, solves and
/// inverses on the calling thread: waking the thread pool for Adult's 81×81 Cholesky costs more
/// than the factorization (`scripts/ab_timing.py … --case adult-fit`: `fit_total` 23.4 → 22.8 ms,
/// the same as with faer sequential throughout).
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

/// Serialises the small operations' switch of faer's global parallelism (see below).
static SMALL_DENSE: Mutex<()> = Mutex::new(());

/// Run `f`, a faer dense operation of order `n` through its high-level API (which reads the
/// global parallelism setting and takes no other), sequentially when `n` is below
/// [`PAR_MIN_ORDER`]: the setting is switched to `Par::Seq` for the call and restored after,
/// under a lock, so that concurrent small operations restore it correctly. A large operation
/// starting on another thread during that window runs sequentially: slower, never wrong.
pub fn sequential_if_small<R>(n: usize, f: impl FnOnce() -> R) -> R {
    if n >= PAR_MIN_ORDER {
        return f();
    }
    let _guard = SMALL_DENSE.lock().unwrap_or_else(|e| e.into_inner());
    let old = faer::get_global_parallelism();
    faer::set_global_parallelism(Par::Seq);
    let r = f();
    faer::set_global_parallelism(old);
    r
}

/// A factorization of G restricted to the kept (non-aliased) columns.
#[derive(Debug)]
pub struct GramFactor {
    /// Kept columns (indices into the full matrix), increasing.
    pub kept: Vec<usize>,
    /// Columns found aliased, increasing.
    pub aliased: Vec<usize>,
    scale: Vec<f64>,
    llt: faer::linalg::solvers::Llt<f64>,
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
            let s = Mat::from_fn(m, m, |a, b| {
                let (ja, jb) = (kept[a], kept[b]);
                let r = if a == b { ridge[ja] } else { 0.0 };
                (g[jb * n + ja] + r) * scale[a] * scale[b]
            });
            if s.as_ref().col_iter().any(|c| c.iter().any(|x| !x.is_finite())) {
                return Err(Error::Numerical("non-finite entries in the information matrix".into()));
            }
            let drop = match sequential_if_small(m, || s.llt(Side::Lower)) {
                Err(faer::linalg::cholesky::llt::factor::LltError::NonPositivePivot { index }) => Some(index),
                Ok(llt) => {
                    let l = llt.L();
                    match (0..m).find(|&j| l[(j, j)] * l[(j, j)] < tol) {
                        Some(j) => Some(j),
                        None => {
                            aliased.sort_unstable();
                            return Ok(GramFactor {
                                kept,
                                aliased,
                                scale,
                                llt,
                            });
                        }
                    }
                }
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
        let l = self.llt.L();
        (0..self.kept.len()).map(|j| l[(j, j)] * l[(j, j)]).collect()
    }

    /// Solve G_kk x = b_k; `b` is indexed by full column, the result by kept position.
    pub fn solve(&self, b: &[f64]) -> Vec<f64> {
        let m = self.kept.len();
        let rhs = Mat::from_fn(m, 1, |a, _| b[self.kept[a]] * self.scale[a]);
        let x = sequential_if_small(m, || self.llt.solve(&rhs));
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
        let inv = sequential_if_small(m, || self.llt.inverse());
        Mat::from_fn(m, m, |a, b| inv[(a, b)] * self.scale[a] * self.scale[b])
    }
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

    #[test]
    fn zero_column_is_aliased() {
        let x: Vec<Vec<f64>> = (0..5).map(|i| vec![1.0, 0.0, i as f64]).collect();
        let (g, p) = gram(&x);
        let f = GramFactor::new(&g, p, &[0, 1, 2], &[0.0; 3], ALIAS_TOL).unwrap();
        assert_eq!(f.kept, [0, 2]);
    }
}
