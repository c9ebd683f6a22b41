//! Whole-cache passes built from the per-chunk kernels: each is a parallel fold over chunk
//! views into a small mergeable accumulator, with memory independent of the number of rows.

use faer::Mat;

use super::spare::Buf;
use super::{sandwich, symmetrize_lower, x_beta, xt_v, ColumnSubset, SandwichScratch};
use crate::chunk::ChunkView;
use crate::design::Layout;
use crate::store::ChunkCache;

/// A mergeable gradient-type accumulator `g = Σ_chunks Xᵀ(w ∘ u)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Gradient {
    /// The accumulated vector (length p).
    pub g: Vec<f64>,
}

impl Gradient {
    /// Zero vector of length p.
    pub fn zeros(p: usize) -> Self {
        Gradient { g: vec![0.0; p] }
    }
    /// Add another partial sum.
    pub fn merge(mut self, o: Gradient) -> Gradient {
        for (a, b) in self.g.iter_mut().zip(o.g) {
            *a += b;
        }
        self
    }
}

/// A mergeable `XᵀWX` accumulator over a column subset (lower triangle while accumulating).
#[derive(Debug, Clone)]
pub struct Gram {
    /// Subset size m.
    pub m: usize,
    /// m×m column-major; lower triangle accumulated.
    pub data: Buf,
    scratch: SandwichScratch,
}

impl Gram {
    /// Zero m×m accumulator.
    pub fn zeros(m: usize) -> Self {
        Gram {
            m,
            data: Buf::zeroed(m * m),
            scratch: SandwichScratch::default(),
        }
    }
    /// Add another partial sum.
    pub fn merge(mut self, o: Gram) -> Gram {
        for (a, b) in self.data.iter_mut().zip(&o.data) {
            *a += b;
        }
        self
    }
    /// The full symmetric matrix.
    pub fn into_mat(mut self) -> Mat<f64> {
        symmetrize_lower(&mut self.data, self.m);
        let m = self.m;
        Mat::from_fn(m, m, |i, j| self.data[j * m + i])
    }
}

/// `Xᵀ(w ∘ u)` over the whole cache; `u_of(view, buf)` fills `buf` (length view.n) with u
/// for that chunk, `weighted` multiplies by the chunk's prior weights.
pub fn xt_v_pass(
    cache: &ChunkCache,
    layout: &Layout,
    weighted: bool,
    u_of: impl Fn(&ChunkView, &mut [f64]) + Sync,
) -> Vec<f64> {
    let p = layout.p;
    cache
        .par_fold(
            || (Gradient::zeros(p), Vec::new()),
            |(mut g, mut buf), v| {
                buf.resize(v.n, 0.0);
                u_of(&v, &mut buf);
                xt_v(&v, layout, &buf, weighted.then_some(v.weight), &mut g.g);
                (g, buf)
            },
            |a, b| (a.0.merge(b.0), a.1),
        )
        .0
        .g
}

/// Map every chunk through `f(view, η)` where η = Xβ (+ offset) for that chunk; results in
/// chunk order.
pub fn x_beta_pass<T: Send>(
    cache: &ChunkCache,
    layout: &Layout,
    beta: &[f64],
    f: impl Fn(&ChunkView, &[f64]) -> T + Sync,
) -> Vec<T> {
    cache.par_map(|_, v| {
        let mut eta = vec![0.0; v.n];
        x_beta(&v, layout, beta, &mut eta);
        for (e, o) in eta.iter_mut().zip(v.offset) {
            *e += o;
        }
        f(&v, &eta)
    })
}

/// `(XᵀWX)[S,S]` over the whole cache; `w_of(view, buf)` fills the chunk's weights.
pub fn sandwich_pass(
    cache: &ChunkCache,
    layout: &Layout,
    subset: &ColumnSubset,
    w_of: impl Fn(&ChunkView, &mut [f64]) + Sync,
) -> Mat<f64> {
    let m = subset.len();
    // Each fold group holds one m×m accumulator: keep their total under ~2 GiB.
    let bytes = (m * m * 8).max(1);
    let groups = (2usize << 30).div_euclid(bytes).clamp(1, crate::store::FOLD_GROUPS);
    cache
        .par_fold_groups(
            groups,
            || (Gram::zeros(m), Vec::new()),
            |(mut g, mut w), v| {
                w.resize(v.n, 0.0);
                w_of(&v, &mut w);
                sandwich(&v, layout, &w, subset, &mut g.data, &mut g.scratch);
                (g, w)
            },
            |a, b| (a.0.merge(b.0), a.1),
        )
        .0
        .into_mat()
}
