//! A chunk of the split design matrix: the unit every pass maps over.
//!
//! A chunk holds `n` rows of the model frame in three design blocks (dense numeric columns,
//! categorical codes, a CSR sparse block) plus the per-row response, prior weight, offset and
//! input row id. [`Chunk`] owns its arrays (built by `design::encode`); [`ChunkView`] borrows
//! them, either from a `Chunk` or zero-copy from a memory-mapped cache file (`store`).

use std::sync::RwLock;

/// An owned chunk, as produced by encoding one Arrow record batch.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chunk {
    /// 0-based row index in the input before filtering (files in sorted path order).
    pub row_id: Vec<u64>,
    /// Response (successes for `cbind`).
    pub y: Vec<f64>,
    /// Failures column of `cbind(successes, failures)`, if any.
    pub failures: Option<Vec<f64>>,
    /// Prior weights; empty when every row's is 1 (no `--weights`: not stored, see
    /// [`unit_weights`]).
    pub weight: Vec<f64>,
    /// Offset of the linear predictor; empty when every row's is 0 (no `offset()` term: not
    /// stored, see [`zero_offsets`]).
    pub offset: Vec<f64>,
    /// Number of dense columns.
    pub n_dense: usize,
    /// Dense block, column-major: column `j` is `dense[j*n .. (j+1)*n]`.
    pub dense: Vec<f64>,
    /// Number of categorical columns.
    pub n_cat: usize,
    /// Categorical codes, column-major (`cat[k*n + i]` is row i's level code in categorical k).
    pub cat: Vec<u32>,
    /// CSR row pointers of the sparse block (`n + 1` entries).
    pub indptr: Vec<u32>,
    /// CSR column indices within the sparse block, strictly increasing within a row.
    pub indices: Vec<u32>,
    /// CSR values.
    pub values: Vec<f64>,
}

impl Chunk {
    /// Number of rows.
    pub fn n_rows(&self) -> usize {
        self.row_id.len()
    }

    /// Borrow the chunk as a view (an empty `weight` or `offset` seen as ones or zeros).
    pub fn view(&self) -> ChunkView<'_> {
        let n = self.row_id.len();
        ChunkView {
            n,
            row_id: &self.row_id,
            y: &self.y,
            failures: self.failures.as_deref(),
            weight: weights_or_ones((!self.weight.is_empty()).then_some(&self.weight[..]), n),
            offset: offsets_or_zeros((!self.offset.is_empty()).then_some(&self.offset[..]), n),
            n_dense: self.n_dense,
            dense: &self.dense,
            n_cat: self.n_cat,
            cat: &self.cat,
            indptr: &self.indptr,
            indices: &self.indices,
            values: &self.values,
            groups: None,
        }
    }
}

/// `n` prior weights of 1, shared: the weights of every chunk of a model without `--weights`,
/// which neither chunks nor cache files store (16 of Adult's 100 bytes per row went to the
/// constant weight and offset columns).
pub fn unit_weights(n: usize) -> &'static [f64] {
    static ONES: RwLock<&'static [f64]> = RwLock::new(&[]);
    constant(&ONES, 1.0, n)
}

/// `n` offsets of 0, shared: the offsets of every chunk of a model without an `offset()` term
/// (see [`unit_weights`]).
pub fn zero_offsets(n: usize) -> &'static [f64] {
    static ZEROS: RwLock<&'static [f64]> = RwLock::new(&[]);
    constant(&ZEROS, 0.0, n)
}

/// A chunk's prior weights: the stored array, or [`unit_weights`] when none is stored.
pub fn weights_or_ones(stored: Option<&[f64]>, n: usize) -> &[f64] {
    stored.unwrap_or_else(|| unit_weights(n))
}

/// A chunk's offsets: the stored array, or [`zero_offsets`] when none is stored.
pub fn offsets_or_zeros(stored: Option<&[f64]>, n: usize) -> &[f64] {
    stored.unwrap_or_else(|| zero_offsets(n))
}

/// The first `n` values of the shared slice in `slot`, all `value`, grown when too short. A slice
/// that is outgrown stays allocated (views of it may still be in use): lengths are powers of two,
/// so all of them together take less than twice the longest.
fn constant(slot: &RwLock<&'static [f64]>, value: f64, n: usize) -> &'static [f64] {
    let have = *slot.read().unwrap_or_else(|e| e.into_inner());
    if have.len() >= n {
        return &have[..n];
    }
    let mut s = slot.write().unwrap_or_else(|e| e.into_inner());
    if s.len() < n {
        *s = Box::leak(vec![value; n.next_power_of_two()].into_boxed_slice());
    }
    &s[..n]
}

/// A borrowed chunk: the same arrays as [`Chunk`], as slices.
#[derive(Debug, Clone, Copy)]
pub struct ChunkView<'a> {
    /// Number of rows.
    pub n: usize,
    /// Input row ids.
    pub row_id: &'a [u64],
    /// Response.
    pub y: &'a [f64],
    /// Failures (cbind), if any.
    pub failures: Option<&'a [f64]>,
    /// Prior weights.
    pub weight: &'a [f64],
    /// Offsets.
    pub offset: &'a [f64],
    /// Number of dense columns.
    pub n_dense: usize,
    /// Dense block, column-major.
    pub dense: &'a [f64],
    /// Number of categorical columns.
    pub n_cat: usize,
    /// Categorical codes, column-major.
    pub cat: &'a [u32],
    /// CSR row pointers.
    pub indptr: &'a [u32],
    /// CSR column indices.
    pub indices: &'a [u32],
    /// CSR values.
    pub values: &'a [f64],
    /// Where the chunk's rows grouped by level tuple are memoised across passes (chunks of a
    /// cache have one; a standalone chunk has none and is grouped on each use).
    pub groups: Option<&'a crate::linalg::combos::GroupingMemo>,
}

impl<'a> ChunkView<'a> {
    /// Dense column `j` (length n).
    #[inline]
    pub fn dense_col(&self, j: usize) -> &'a [f64] {
        &self.dense[j * self.n..(j + 1) * self.n]
    }

    /// Codes of categorical column `k` (length n).
    #[inline]
    pub fn cat_col(&self, k: usize) -> &'a [u32] {
        &self.cat[k * self.n..(k + 1) * self.n]
    }

    /// Sparse entries of row `i`: (indices, values).
    #[inline]
    pub fn sparse_row(&self, i: usize) -> (&'a [u32], &'a [f64]) {
        if self.indptr.is_empty() {
            return (&[], &[]);
        }
        let (a, b) = (self.indptr[i] as usize, self.indptr[i + 1] as usize);
        (&self.indices[a..b], &self.values[a..b])
    }

    /// Number of stored sparse entries.
    pub fn nnz(&self) -> usize {
        self.indices.len()
    }

    /// Rows `rows` (increasing indices into this view) copied into an owned chunk, in order.
    pub fn select(&self, rows: &[usize]) -> Chunk {
        let k = rows.len();
        let pick_f64 = |col: &[f64]| rows.iter().map(|&i| col[i]).collect::<Vec<f64>>();
        let mut dense = Vec::with_capacity(k * self.n_dense);
        for j in 0..self.n_dense {
            dense.extend(rows.iter().map(|&i| self.dense_col(j)[i]));
        }
        let mut cat = Vec::with_capacity(k * self.n_cat);
        for c in 0..self.n_cat {
            cat.extend(rows.iter().map(|&i| self.cat_col(c)[i]));
        }
        let (mut indptr, mut indices, mut values) = (Vec::new(), Vec::new(), Vec::new());
        if !self.indptr.is_empty() {
            indptr.reserve(k + 1);
            indptr.push(0u32);
            for &i in rows {
                let (ix, vals) = self.sparse_row(i);
                indices.extend_from_slice(ix);
                values.extend_from_slice(vals);
                indptr.push(indices.len() as u32);
            }
        }
        Chunk {
            row_id: rows.iter().map(|&i| self.row_id[i]).collect(),
            y: pick_f64(self.y),
            failures: self.failures.map(pick_f64),
            weight: pick_f64(self.weight),
            offset: pick_f64(self.offset),
            n_dense: self.n_dense,
            dense,
            n_cat: self.n_cat,
            cat,
            indptr,
            indices,
            values,
        }
    }
}
