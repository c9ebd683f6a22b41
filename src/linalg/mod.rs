//! The matrix kernels GLMs need on one chunk of the split design, each specialised per block:
//! `X·β`, `Xᵀ·v` (optionally weighted), the weighted sandwich `XᵀWX` restricted to a column
//! subset, and row quadratic forms `xᵢᵀ M xᵢ`. Columns are global indices in the
//! [`Layout`] order `[intercept][dense][categorical blocks][sparse]`. Passes over a whole
//! cache (map per chunk, merge in order) are in [`pass`].

pub mod block;
pub mod chol;
pub mod combos;
pub mod narrow;
pub mod pass;
pub mod spare;
pub mod vmath;

use std::sync::OnceLock;

use faer::linalg::matmul::triangular::{matmul, BlockStructure};
use faer::{Accum, MatMut, MatRef, Par};

use crate::chunk::ChunkView;
use crate::design::Layout;

/// A sorted set of design columns, with the map global column → local position.
#[derive(Debug, Clone)]
pub struct ColumnSubset {
    cols: Vec<usize>,
    local: Vec<u32>,
    /// [`ColumnSubset::cat_locals`], made on first use: every chunk of every pass over the
    /// subset maps its level codes through it (20,000 entries for a factor of 10⁴ levels, which
    /// made afresh per chunk were ~15 % of a 1M-row lasso path's page faults).
    cat_locals: OnceLock<Vec<Vec<u32>>>,
}

impl PartialEq for ColumnSubset {
    fn eq(&self, o: &ColumnSubset) -> bool {
        self.cols == o.cols && self.local.len() == o.local.len()
    }
}

impl Eq for ColumnSubset {}

/// Marker for "column not in the subset".
const ABSENT: u32 = u32::MAX;

impl ColumnSubset {
    /// All `p` columns.
    pub fn all(p: usize) -> ColumnSubset {
        ColumnSubset {
            cols: (0..p).collect(),
            local: (0..p as u32).collect(),
            cat_locals: OnceLock::new(),
        }
    }

    /// The given global columns (sorted and de-duplicated here; columns ≥ p are ignored).
    pub fn new(p: usize, cols: &[usize]) -> ColumnSubset {
        let mut c: Vec<usize> = cols.iter().copied().filter(|&j| j < p).collect();
        c.sort_unstable();
        c.dedup();
        let mut local = vec![ABSENT; p];
        for (k, &j) in c.iter().enumerate() {
            local[j] = k as u32;
        }
        ColumnSubset {
            cols: c,
            local,
            cat_locals: OnceLock::new(),
        }
    }

    /// Number of columns in the subset.
    pub fn len(&self) -> usize {
        self.cols.len()
    }

    /// Whether the subset is empty.
    pub fn is_empty(&self) -> bool {
        self.cols.is_empty()
    }

    /// Global columns, sorted.
    pub fn columns(&self) -> &[usize] {
        &self.cols
    }

    /// Local position of global column `j`, if present.
    #[inline]
    pub fn local(&self, j: usize) -> Option<usize> {
        match self.local.get(j) {
            Some(&l) if l != ABSENT => Some(l as usize),
            _ => None,
        }
    }

    /// The dense-like columns in the subset (intercept and dense block) as
    /// `(local, None for intercept | Some(dense column))`. They are the first locals.
    fn dense_like(&self, layout: &Layout) -> Vec<(usize, Option<usize>)> {
        let mut v = Vec::new();
        if layout.intercept {
            if let Some(l) = self.local(0) {
                v.push((l, None));
            }
        }
        let d0 = layout.dense_offset();
        for j in 0..layout.n_dense {
            if let Some(l) = self.local(d0 + j) {
                v.push((l, Some(j)));
            }
        }
        v
    }

    /// Per categorical term, each level code's local position in the subset (`None` for the
    /// dropped reference level or a level outside the subset): the lookup the kernels map a
    /// row's codes through.
    fn level_locals(&self, layout: &Layout) -> Vec<Vec<Option<usize>>> {
        layout
            .cats
            .iter()
            .map(|blk| {
                (0..blk.n_levels)
                    .map(|c| blk.column(c).and_then(|j| self.local(j)))
                    .collect()
            })
            .collect()
    }

    /// [`ColumnSubset::level_locals`] as `u32` ([`ABSENT`] for `None`), kept: a subset is used
    /// with the one design it was made for.
    fn cat_locals(&self, layout: &Layout) -> &[Vec<u32>] {
        let c = self.cat_locals.get_or_init(|| {
            self.level_locals(layout)
                .into_iter()
                .map(|c| c.into_iter().map(|l| l.map_or(ABSENT, |l| l as u32)).collect())
                .collect()
        });
        debug_assert_eq!(c.len(), layout.cats.len());
        c
    }

    /// Whether chunk `v` has sparse entries that can fall in the subset.
    fn meets_sparse(&self, v: &ChunkView, layout: &Layout) -> bool {
        !v.indptr.is_empty() && self.cols.last().is_some_and(|&j| j >= layout.sparse_offset)
    }
}

/// `out[i] = xᵢᵀ β` for every row of the chunk (offsets not included). `out.len() == v.n`.
pub fn x_beta(v: &ChunkView, layout: &Layout, beta: &[f64], out: &mut [f64]) {
    // The categorical part once per level combo when a pass has already grouped the chunk.
    match combos::GroupingMemo::peek(v.groups).filter(|_| layout.cats.len() >= 2) {
        Some(g) => {
            x_beta_blocks(v, layout, beta, false, true, out);
            add_eta_cats(v, layout, beta, &g, out);
        }
        None => x_beta_blocks(v, layout, beta, true, true, out),
    }
}

/// `out[i] += Σₖ β[level of factor k in row i]` through the rows' level combos `g`: one sum
/// per combo (from its codes: every level counts, whatever column subset is in use), then one
/// lookup per row.
fn add_eta_cats(v: &ChunkView, layout: &Layout, beta: &[f64], g: &combos::ChunkGroups, out: &mut [f64]) {
    add_per_combo(g, out, |u| {
        let i = g.first_row[u] as usize;
        let lv =
            |(k, blk): (usize, &crate::design::spec::CatBlock)| blk.column(v.cat_col(k)[i]).map_or(0.0, |j| beta[j]);
        layout.cats.iter().enumerate().map(lv).sum::<f64>()
    });
}

/// `out[i] += value(combo of row i)`, each combo's value computed once.
fn add_per_combo(g: &combos::ChunkGroups, out: &mut [f64], value: impl Fn(usize) -> f64) {
    let per_combo: Vec<f64> = (0..g.len()).map(value).collect();
    for (o, &u) in out.iter_mut().zip(&g.of_row) {
        *o += per_combo[u as usize];
    }
}

/// `out[i] = xᵢᵀ β` over the intercept and dense blocks, and the categorical (`cats`) and sparse
/// (`sparse`) blocks.
fn x_beta_blocks(v: &ChunkView, layout: &Layout, beta: &[f64], cats: bool, sparse: bool, out: &mut [f64]) {
    debug_assert_eq!(beta.len(), layout.p);
    let b0 = if layout.intercept { beta[0] } else { 0.0 };
    let d0 = layout.dense_offset();
    let n = out.len();
    // The dense columns in tiles of rows, so that each tile of `out` stays in L1 while every
    // column adds to it (column by column over the whole chunk, `out` went through L2 once
    // per column). The same additions in the same order.
    const TILE: usize = 512;
    for t0 in (0..n).step_by(TILE) {
        let t1 = (t0 + TILE).min(n);
        let o = &mut out[t0..t1];
        o.fill(b0);
        for j in 0..layout.n_dense {
            let b = beta[d0 + j];
            if b != 0.0 {
                for (o, &x) in o.iter_mut().zip(&v.dense_col(j)[t0..t1]) {
                    *o += b * x;
                }
            }
        }
    }
    for (k, blk) in layout.cats.iter().enumerate().filter(|_| cats) {
        // β of each level (0 for the dropped reference), looked up per row.
        let lv: Vec<f64> = (0..blk.n_levels)
            .map(|c| blk.column(c).map_or(0.0, |j| beta[j]))
            .collect();
        for (o, &c) in out.iter_mut().zip(v.cat_col(k)) {
            *o += lv[c as usize];
        }
    }
    if sparse && !v.indptr.is_empty() {
        let bs = &beta[layout.sparse_offset..];
        for (i, o) in out.iter_mut().enumerate() {
            let (idx, val) = v.sparse_row(i);
            let mut s = 0.0;
            for (&j, &x) in idx.iter().zip(val) {
                s += bs[j as usize] * x;
            }
            *o += s;
        }
    }
}

/// `out += Xᵀ (w ∘ u)` over the chunk's rows (`w` = None means unweighted). `out.len() == p`.
pub fn xt_v(v: &ChunkView, layout: &Layout, u: &[f64], w: Option<&[f64]>, out: &mut [f64]) {
    debug_assert_eq!(out.len(), layout.p);
    let wu_buf: Vec<f64>;
    let wu: &[f64] = match w {
        Some(w) => {
            wu_buf = u.iter().zip(w).map(|(a, b)| a * b).collect();
            &wu_buf
        }
        None => u,
    };
    if layout.intercept {
        out[0] += sum_in_lanes(wu);
    }
    let d0 = layout.dense_offset();
    for j in 0..layout.n_dense {
        out[d0 + j] += dot(v.dense_col(j), wu);
    }
    for (k, blk) in layout.cats.iter().enumerate() {
        // Per chunk and factor: a spare buffer when the factor is wide (10⁴ levels).
        let mut per_level = spare::Buf::zeroed(blk.n_levels as usize);
        for (&c, &x) in v.cat_col(k).iter().zip(wu) {
            per_level[c as usize] += x;
        }
        for (c, &s) in per_level.iter().enumerate() {
            if let Some(j) = blk.column(c as u32) {
                out[j] += s;
            }
        }
    }
    if !v.indptr.is_empty() {
        let os = &mut out[layout.sparse_offset..];
        for (i, &x) in wu.iter().enumerate() {
            let (idx, val) = v.sparse_row(i);
            for (&j, &a) in idx.iter().zip(val) {
                os[j as usize] += a * x;
            }
        }
    }
}

/// `out_j += Σᵢ wᵢ x_ij²` over the chunk's rows, for all p columns (the weighted second
/// moments that standardisation needs; for a one-hot level it is the level's weight).
pub fn xt_sq(v: &ChunkView, layout: &Layout, w: &[f64], out: &mut [f64]) {
    debug_assert_eq!(out.len(), layout.p);
    if layout.intercept {
        out[0] += sum_in_lanes(w);
    }
    let d0 = layout.dense_offset();
    for j in 0..layout.n_dense {
        out[d0 + j] += v.dense_col(j).iter().zip(w).map(|(x, wi)| wi * x * x).sum::<f64>();
    }
    for (k, blk) in layout.cats.iter().enumerate() {
        let mut per_level = spare::Buf::zeroed(blk.n_levels as usize);
        for (&c, &wi) in v.cat_col(k).iter().zip(w) {
            per_level[c as usize] += wi;
        }
        for (c, &s) in per_level.iter().enumerate() {
            if let Some(j) = blk.column(c as u32) {
                out[j] += s;
            }
        }
    }
    if !v.indptr.is_empty() {
        let os = &mut out[layout.sparse_offset..];
        for (i, &wi) in w.iter().enumerate() {
            let (idx, val) = v.sparse_row(i);
            for (&j, &a) in idx.iter().zip(val) {
                os[j as usize] += wi * a * a;
            }
        }
    }
}

/// A compensated (Neumaier) sum: the error stays at about one rounding of the total whatever
/// the number of terms, so sums over 10⁸ rows can be compared at 1e-15 relative.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Sum {
    sum: f64,
    c: f64,
}

impl Sum {
    /// Add one term.
    #[inline]
    pub fn add(&mut self, x: f64) {
        two_sum(&mut self.sum, &mut self.c, x);
    }
    /// Add every term of `xs`, in 32 compensated partial sums ([`LaneSums`]) merged in order:
    /// about one rounding of the total, as term by term, though not always the same bits.
    #[inline(always)]
    pub fn add_all(&mut self, xs: &[f64]) {
        let mut lanes = LaneSums::default();
        lanes.add_all(xs);
        self.merge_lanes(&lanes);
    }

    /// Merge the lanes of a [`LaneSums`], in order.
    pub fn merge_lanes(&mut self, l: &LaneSums) {
        for k in 0..LANE_SUMS {
            self.merge(Sum {
                sum: l.hi[k],
                c: l.lo[k],
            });
        }
    }

    /// Add another partial sum.
    pub fn merge(&mut self, o: Sum) {
        self.add(o.sum);
        self.c += o.c;
    }
    /// The total.
    pub fn value(&self) -> f64 {
        self.sum + self.c
    }

    /// The same sum with the opposite sign (exactly: both parts negated).
    pub fn negated(self) -> Sum {
        Sum {
            sum: -self.sum,
            c: -self.c,
        }
    }
}

/// Lanes of [`LaneSums`].
const LANE_SUMS: usize = 32;

/// 32 compensated partial sums, term k of a piece into lane k mod 32. Fed in pieces that are
/// multiples of 32 terms (but the last), they hold what one [`Sum::add_all`] over the whole
/// would: a loop can sum a tile of terms while it is in L1 instead of storing every term.
#[derive(Debug, Clone, Copy)]
pub struct LaneSums {
    hi: [f64; LANE_SUMS],
    lo: [f64; LANE_SUMS],
}

impl Default for LaneSums {
    fn default() -> Self {
        LaneSums {
            hi: [0.0; LANE_SUMS],
            lo: [0.0; LANE_SUMS],
        }
    }
}

impl LaneSums {
    /// Add the terms of `xs`. Each TwoSum step is written array by array, which LLVM turns into
    /// vector instructions; written lane by lane (`two_sum` per lane) it stayed scalar (`perf
    /// annotate` of the IRLS row loop showed one `addsd` chain per lane).
    #[inline(always)]
    pub fn add_all(&mut self, xs: &[f64]) {
        let (hi, lo) = (&mut self.hi, &mut self.lo);
        let mut it = xs.chunks_exact(LANE_SUMS);
        for c in &mut it {
            let c: &[f64; LANE_SUMS] = c.try_into().expect("chunks_exact");
            let (mut t, mut z) = ([0.0f64; LANE_SUMS], [0.0f64; LANE_SUMS]);
            for k in 0..LANE_SUMS {
                t[k] = hi[k] + c[k];
            }
            for k in 0..LANE_SUMS {
                z[k] = t[k] - hi[k];
            }
            for k in 0..LANE_SUMS {
                lo[k] += (hi[k] - (t[k] - z[k])) + (c[k] - z[k]);
            }
            *hi = t;
        }
        for (k, &x) in it.remainder().iter().enumerate() {
            two_sum(&mut hi[k], &mut lo[k], x);
        }
    }
}

/// `sum += x` with the rounding error added to `c`: Knuth's TwoSum, the exact error of
/// `sum + x` without a branch on which operand is larger (the same error Neumaier's ordered
/// form computes).
#[inline(always)]
fn two_sum(sum: &mut f64, c: &mut f64, x: f64) {
    let t = *sum + x;
    let z = t - *sum;
    *c += (*sum - (t - z)) + (x - z);
    *sum = t;
}

/// Σ xs with eight independent partial sums (lets the compiler vectorise), added in order.
#[inline(always)]
pub fn sum_in_lanes(xs: &[f64]) -> f64 {
    let mut s = [0.0f64; 8];
    let mut it = xs.chunks_exact(8);
    for c in &mut it {
        for k in 0..8 {
            s[k] += c[k];
        }
    }
    s.iter().sum::<f64>() + it.remainder().iter().sum::<f64>()
}

/// Dot product with four independent accumulators (lets the compiler vectorise).
#[inline]
pub fn dot(a: &[f64], b: &[f64]) -> f64 {
    let n = a.len().min(b.len());
    let (a, b) = (&a[..n], &b[..n]);
    let mut s = [0.0f64; 4];
    let mut ca = a.chunks_exact(4);
    let mut cb = b.chunks_exact(4);
    for (x, y) in (&mut ca).zip(&mut cb) {
        for k in 0..4 {
            s[k] += x[k] * y[k];
        }
    }
    let mut t = (s[0] + s[1]) + (s[2] + s[3]);
    for (x, y) in ca.remainder().iter().zip(cb.remainder()) {
        t += x * y;
    }
    t
}

/// Reusable scratch memory for [`sandwich`] (avoids allocation per chunk): the dense-like
/// block and its weighted copy, the row-major weighted copy the per-row loop reads, the
/// cross products, and the chunk's entries in the column subset ([`SandwichScratch::gather`]).
#[derive(Debug, Default, Clone)]
pub struct SandwichScratch {
    a: Vec<f64>,
    b: Vec<f64>,
    brow: Vec<f64>,
    cross: Vec<f64>,
    /// Per level combo: Σwᵢ, Σwᵢzᵢ and Σwᵢ·xᵢ over the dense-like columns (`d + 2` each).
    combo_sums: Vec<f64>,
    /// The same as one record per combo, when [`narrow::narrow_gram`] summed them.
    combo_records: Vec<narrow::ComboRecord>,
    /// Per local column, the records of the combos holding it, summed.
    per_cat: Vec<narrow::ComboRecord>,
    entries: SubsetEntries,
}

/// The entries of one chunk's categorical and sparse blocks that fall in a column subset,
/// found once per chunk and pass: per row, the local positions of its levels that are in the
/// subset, and its sparse entries `(local, value)` in the subset.
#[derive(Debug, Default, Clone)]
struct SubsetEntries {
    /// Row i's categorical locals are `cats[cat_ptr[i]..cat_ptr[i + 1]]` (empty `cat_ptr`: none);
    /// like `sparse`, `cats` is only ever grown (its tail past the last pointer is stale).
    cat_ptr: Vec<u32>,
    cats: Vec<u32>,
    /// Row i's sparse entries are `sparse[sp_ptr[i]..sp_ptr[i + 1]]` (empty `sp_ptr`: none);
    /// `sparse` is only ever grown (its tail past the last pointer is stale).
    sp_ptr: Vec<u32>,
    sparse: Vec<(u32, f64)>,
    /// When the rows are grouped by their levels (`cat_ptr` is then empty): the grouping, and
    /// the combos' categorical locals in the subset.
    combo_work: combos::LevelCombos,
    groups: Option<std::sync::Arc<combos::ChunkGroups>>,
    combo: Option<std::sync::Arc<combos::ComboEntries>>,
}

impl SubsetEntries {
    #[inline]
    fn cats(&self, i: usize) -> &[u32] {
        if self.cat_ptr.is_empty() {
            return &[];
        }
        &self.cats[self.cat_ptr[i] as usize..self.cat_ptr[i + 1] as usize]
    }

    #[inline]
    fn sparse(&self, i: usize) -> &[(u32, f64)] {
        if self.sp_ptr.is_empty() {
            return &[];
        }
        &self.sparse[self.sp_ptr[i] as usize..self.sp_ptr[i + 1] as usize]
    }

    fn is_empty(&self) -> bool {
        self.cat_ptr.is_empty() && self.sp_ptr.is_empty() && self.groups.is_none()
    }

    /// Combo u's categorical locals (grouped entries only).
    #[inline]
    fn combo_cats(&self, u: usize) -> &[u32] {
        self.combo.as_ref().expect("grouped entries").of(u)
    }
}

impl SandwichScratch {
    /// Find the chunk's categorical and sparse entries in the subset `s` (one walk over the
    /// chunk's codes and CSR block; [`sandwich_gathered`] and [`x_beta_gathered`] then use
    /// them). Which sparse entries are in a working set is unpredictable, so they are compacted
    /// without a branch per entry (the branch mispredicted on most rows).
    ///
    /// When the subset has no sparse columns and the chunk has several factors with far fewer
    /// distinct level tuples than rows, the rows are grouped by tuple instead (see
    /// [`combos`]); [`sandwich_gathered`] then works per tuple. Use
    /// [`SandwichScratch::gather_per_row`] when the per-row entries themselves are needed.
    pub fn gather(&mut self, v: &ChunkView, layout: &Layout, s: &ColumnSubset) {
        self.gather_impl(v, layout, s, true)
    }

    /// [`SandwichScratch::gather`] that always records each row's entries (never groups rows).
    pub fn gather_per_row(&mut self, v: &ChunkView, layout: &Layout, s: &ColumnSubset) {
        self.gather_impl(v, layout, s, false)
    }

    fn gather_impl(&mut self, v: &ChunkView, layout: &Layout, s: &ColumnSubset, may_group: bool) {
        let e = &mut self.entries;
        e.cat_ptr.clear();
        e.sp_ptr.clear();
        e.groups = None;
        e.combo = None;
        let n = v.n;
        let cat_locals = s.cat_locals(layout);
        let has_sparse = s.meets_sparse(v, layout);
        if cat_locals.iter().any(|c| c.iter().any(|&x| x != ABSENT)) {
            let codes: Vec<&[u32]> = (0..layout.cats.len()).map(|k| v.cat_col(k)).collect();
            if may_group && !has_sparse && codes.len() >= 2 {
                let levels: Vec<u32> = layout.cats.iter().map(|b| b.n_levels).collect();
                let groups = combos::GroupingMemo::get(v.groups, &mut e.combo_work, &codes, &levels, n);
                // Per row, the sandwich does K(K+1)/2 pair updates and K dense-row updates of
                // d (plus K score updates); grouped, it adds d + 2 sums per row (plus the
                // lookup, counted as 4) and does the row's work once per combo. Group when that
                // is cheaper for this column subset.
                let k = codes.len();
                let d = s.dense_like(layout).len();
                let per_row = (k * (k + 1) / 2 + k * (d + 1)) as f64;
                if let Some(g) = groups.filter(|g| (n * (d + 6)) as f64 + g.len() as f64 * per_row < n as f64 * per_row)
                {
                    e.combo = Some(combos::GroupingMemo::entries(v.groups, cat_locals, || {
                        combos::ComboEntries::build(cat_locals, ABSENT, &codes, &g)
                    }));
                    e.groups = Some(g);
                    return;
                }
            }
            // Compacted without a branch per entry, like the sparse entries below: whether a
            // row sits at a dropped reference level is as unpredictable as working-set membership.
            if e.cats.len() < n * codes.len() {
                e.cats.resize(n * codes.len(), 0);
            }
            e.cat_ptr.resize(n + 1, 0);
            let mut k = 0;
            for i in 0..n {
                for (cl, c) in cat_locals.iter().zip(&codes) {
                    let l = cl[c[i] as usize];
                    e.cats[k] = l;
                    k += (l != ABSENT) as usize;
                }
                e.cat_ptr[i + 1] = k as u32;
            }
        }
        if has_sparse {
            if e.sparse.len() < v.nnz() {
                e.sparse.resize(v.nnz(), (0, 0.0));
            }
            let local_sp = &s.local[layout.sparse_offset..];
            e.sp_ptr.reserve(n + 1);
            e.sp_ptr.push(0);
            let mut k = 0;
            for i in 0..n {
                let (idx, val) = v.sparse_row(i);
                for (&j, &x) in idx.iter().zip(val) {
                    let l = local_sp[j as usize];
                    e.sparse[k] = (l, x);
                    k += (l != ABSENT) as usize;
                }
                e.sp_ptr.push(k as u32);
            }
        }
    }
}

/// `acc += (Xᵀ W X)[S, S]`, lower triangle only, for the subset `s` of size m; `acc` is m×m
/// column-major (`acc[j*m + i]`, i ≥ j). Dense×dense (with the intercept) is a GEMM; cat×cat,
/// cat×dense and sparse×any are accumulated per row from the rows' few nonzeros.
pub fn sandwich(
    v: &ChunkView,
    layout: &Layout,
    w: &[f64],
    s: &ColumnSubset,
    acc: &mut [f64],
    scratch: &mut SandwichScratch,
) {
    scratch.gather(v, layout, s);
    sandwich_gathered(v, layout, w, s, acc, None, scratch);
}

/// [`sandwich`] on the entries a previous [`SandwichScratch::gather`] of the same chunk and
/// subset found, plus, with `score = Some((z, out))`, the subset's part of the score:
/// `out[l] += Σᵢ wᵢ zᵢ x_{i,S[l]}` for each local column l (`out.len() == m`), so that an
/// IRLS pass that needs the score only on its working set skips the full `Xᵀ·v`.
pub fn sandwich_gathered(
    v: &ChunkView,
    layout: &Layout,
    w: &[f64],
    s: &ColumnSubset,
    acc: &mut [f64],
    mut score: Option<(&[f64], &mut [f64])>,
    scratch: &mut SandwichScratch,
) {
    let m = s.len();
    let n = v.n;
    debug_assert_eq!(acc.len(), m * m);
    if m == 0 || n == 0 {
        return;
    }
    let dl = s.dense_like(layout);
    let d = dl.len();
    // Dense × dense: B = diag(w) X_D (kept in `scratch.b`, column-major, the intercept's column
    // being w), acc[0..d, 0..d] += X_Dᵀ B (lower).
    let i0 = usize::from(d > 0 && dl[0].1.is_none());
    let mut narrow_records = false;
    if i0 == 1 && d - 1 == layout.n_dense && layout.n_dense <= narrow::MAX_NARROW && narrow::available() {
        // The intercept and a narrow dense block: one walk with the sums in registers.
        let nd = d - 1;
        let (z, sc) = match score.as_mut() {
            Some((z, sc)) => (Some(*z), Some(&mut **sc)),
            None => (None, None),
        };
        // Rows grouped by their levels (and the combos' pair positions at hand): the kernel
        // sums each combo's record itself. Otherwise it writes B, which the general grouped
        // and per-row code below read.
        let grouped = scratch
            .entries
            .groups
            .as_deref()
            .filter(|_| scratch.entries.combo.as_deref().is_some_and(|c| c.pairs(m).is_some()));
        let out = match grouped {
            Some(g) => {
                scratch.combo_records.clear();
                scratch.combo_records.resize(g.len(), narrow::ComboRecord::default());
                narrow::Products::Combos {
                    of_row: &g.of_row[..n],
                    records: &mut scratch.combo_records,
                }
            }
            None => {
                scratch.b.resize(n * d, 0.0);
                narrow::Products::Columns(&mut scratch.b)
            }
        };
        narrow_records = matches!(out, narrow::Products::Combos { .. });
        narrow::narrow_gram(n, nd, w, z, &v.dense[..n * nd], out, acc, m, sc);
    } else if d > 0 {
        scratch.b.resize(n * d, 0.0);
        for (col, &(_, src)) in dl.iter().enumerate() {
            let b = &mut scratch.b[col * n..(col + 1) * n];
            match src {
                None => b.copy_from_slice(&w[..n]),
                Some(j) => {
                    for ((b, &x), &wi) in b.iter_mut().zip(v.dense_col(j)).zip(w) {
                        *b = x * wi;
                    }
                }
            }
        }
        let accm = MatMut::from_column_major_slice_mut(acc, m, m);
        let nd = d - i0;
        if nd == layout.n_dense {
            // Every dense column is in the subset: X_D is the chunk's dense block itself, and
            // the intercept's row holds Σw and B's column sums.
            if nd > 0 {
                let xm = MatRef::from_column_major_slice(&v.dense[..n * nd], n, nd);
                let bm = MatRef::from_column_major_slice(&scratch.b[i0 * n..d * n], n, nd);
                matmul(
                    accm.submatrix_mut(i0, i0, nd, nd),
                    BlockStructure::TriangularLower,
                    Accum::Add,
                    xm.transpose(),
                    BlockStructure::Rectangular,
                    bm,
                    BlockStructure::Rectangular,
                    1.0,
                    Par::Seq,
                );
            }
            if i0 == 1 {
                for (col, a) in acc[..d].iter_mut().enumerate() {
                    *a += sum_in_lanes(&scratch.b[col * n..(col + 1) * n]);
                }
            }
        } else {
            scratch.a.resize(n * d, 0.0);
            for (col, &(_, src)) in dl.iter().enumerate() {
                let a = &mut scratch.a[col * n..(col + 1) * n];
                match src {
                    None => a.fill(1.0),
                    Some(j) => a.copy_from_slice(v.dense_col(j)),
                }
            }
            let am = MatRef::from_column_major_slice(&scratch.a[..n * d], n, d);
            let bm = MatRef::from_column_major_slice(&scratch.b[..n * d], n, d);
            matmul(
                accm.submatrix_mut(0, 0, d, d),
                BlockStructure::TriangularLower,
                Accum::Add,
                am.transpose(),
                BlockStructure::Rectangular,
                bm,
                BlockStructure::Rectangular,
                1.0,
                Par::Seq,
            );
        }
        clear_upper_simd_state();
        if let Some((z, sc)) = score.as_mut() {
            for (col, &(l, _)) in dl.iter().enumerate() {
                sc[l] += dot(&scratch.b[col * n..(col + 1) * n], z);
            }
        }
    }
    let e = &scratch.entries;
    if e.is_empty() {
        return;
    }
    let cross = &mut scratch.cross;
    cross.clear();
    cross.resize(m * d, 0.0);
    if let Some(g) = e.groups.as_deref() {
        // Sum wᵢ, wᵢzᵢ and wᵢ·xᵢ (dense-like) per combo, one quantity at a time (its per-combo
        // sums, a few thousand, stay in L1), then add each combo like a row.
        let nc = g.len();
        if let (true, Some(c)) = (narrow_records, e.combo.as_deref()) {
            // Each combo's weight into its categorical pairs (positions found once per fit),
            // its whole record into each of its categories' (diagonal, score, cross products).
            let pairs = c.pairs(m).expect("checked before the walk");
            let per_cat = &mut scratch.per_cat;
            per_cat.clear();
            per_cat.resize(m, narrow::ComboRecord::default());
            let tables = narrow::ComboTables {
                cat_ptr: &c.ptr,
                cats: &c.cats,
                pair_ptr: &pairs.ptr,
                pairs: &pairs.pos,
            };
            narrow::add_combo_records(&scratch.combo_records[..nc], tables, acc, per_cat);
            let mut sc = score.as_mut().map(|(_, sc)| &mut **sc);
            for (r, t) in per_cat.iter().enumerate().skip(d) {
                let t = &t.0;
                acc[r * m + r] += t[0];
                acc[r] += t[0];
                for (j, &x) in t[2..d + 1].iter().enumerate() {
                    acc[(j + 1) * m + r] += x;
                }
                if let Some(sc) = sc.as_deref_mut() {
                    sc[r] += t[1];
                }
            }
            return;
        }
        let t = d + 2;
        let sums = &mut scratch.combo_sums;
        sums.clear();
        sums.resize(nc * t, 0.0);
        let of_row = &g.of_row[..n];
        let (sw, rest) = sums.split_at_mut(nc);
        let (swz, swx) = rest.split_at_mut(nc);
        for (&u, &wi) in of_row.iter().zip(&w[..n]) {
            sw[u as usize] += wi;
        }
        if let Some((z, _)) = score.as_ref() {
            for ((&u, &wi), &zi) in of_row.iter().zip(&w[..n]).zip(&z[..n]) {
                swz[u as usize] += wi * zi;
            }
        }
        let mut r = vec![0.0; d];
        for c in 0..d {
            let wb = &scratch.b[c * n..(c + 1) * n];
            let out = &mut swx[c * nc..(c + 1) * nc];
            for (&u, &x) in of_row.iter().zip(wb) {
                out[u as usize] += x;
            }
        }
        for u in 0..nc {
            for (c, x) in r.iter_mut().enumerate() {
                *x = swx[c * nc + u];
            }
            let sc = score.as_mut().map(|(_, sc)| &mut **sc);
            add_cat_row(acc, m, cross, d, e.combo_cats(u), sw[u], &r, sc, swz[u]);
        }
        fold_cross(acc, m, cross, d);
        return;
    }
    // Row i's dense-like values times w_i, row-major (`brow[i*d..(i+1)*d]`), so that the row
    // loop reads one contiguous d-vector instead of d strided values (transposed in blocks of
    // rows that stay in L1).
    let brow = &mut scratch.brow;
    brow.resize(n * d, 0.0);
    const TB: usize = 64;
    for i0 in (0..n).step_by(TB) {
        let i1 = (i0 + TB).min(n);
        for col in 0..d {
            let src = &scratch.b[col * n + i0..col * n + i1];
            for (r, &x) in src.iter().enumerate() {
                brow[(i0 + r) * d + col] = x;
            }
        }
    }
    // Categorical and sparse entries, per row. Their products with the dense-like columns go
    // to `scratch.cross` (local row × dense-like column, row-major) so that each row adds one
    // contiguous d-vector per nonzero instead of d strided scalars; it is folded into `acc`
    // once per chunk.
    for i in 0..n {
        let wi = w[i];
        if wi == 0.0 {
            continue;
        }
        let wz = score.as_ref().map_or(0.0, |(z, _)| wi * z[i]);
        let wx = &brow[i * d..(i + 1) * d];
        let cats = e.cats(i);
        add_cat_row(
            acc,
            m,
            cross,
            d,
            cats,
            wi,
            wx,
            score.as_mut().map(|(_, sc)| &mut **sc),
            wz,
        );
        let sparse = e.sparse(i);
        if let Some((_, sc)) = score.as_mut() {
            for &(sa, xa) in sparse {
                sc[sa as usize] += wz * xa;
            }
        }
        // sparse rows: with dense-like, cats, and earlier sparse entries.
        for (a, &(sa, xa)) in sparse.iter().enumerate() {
            let sa = sa as usize;
            let wxa = wi * xa;
            for (t, &x) in cross[sa * d..sa * d + d].iter_mut().zip(wx) {
                *t += xa * x;
            }
            for &cb in cats {
                acc[cb as usize * m + sa] += wxa;
            }
            for &(sb, xb) in &sparse[..a] {
                acc[sb as usize * m + sa] += wxa * xb;
            }
            acc[sa * m + sa] += wxa * xa;
        }
    }
    fold_cross(acc, m, cross, d);
}

/// One row's (or one level combo's) categorical part of the sandwich: with weight `wi`, weighted
/// dense-like values `wx` (length d) and categorical locals `cats` (increasing), add the
/// cat × cat products to `acc` (m×m, lower), the cat × dense-like ones to `cross` (local row
/// × dense-like column, row-major), and `wz` to the score of each level.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn add_cat_row(
    acc: &mut [f64],
    m: usize,
    cross: &mut [f64],
    d: usize,
    cats: &[u32],
    wi: f64,
    wx: &[f64],
    score: Option<&mut [f64]>,
    wz: f64,
) {
    for (a, &ca) in cats.iter().enumerate() {
        let ca = ca as usize;
        for (t, &x) in cross[ca * d..ca * d + d].iter_mut().zip(wx) {
            *t += x;
        }
        let row = &mut acc[ca..];
        for &cb in &cats[..a] {
            row[cb as usize * m] += wi;
        }
        row[ca * m] += wi;
    }
    if let Some(sc) = score {
        for &ca in cats {
            sc[ca as usize] += wz;
        }
    }
}

/// Fold the cross products (row-major, local row × dense-like column) into `acc`: rows d..m
/// (the dense-like locals are 0..d).
fn fold_cross(acc: &mut [f64], m: usize, cross: &[f64], d: usize) {
    for r in d..m {
        let src = &cross[r * d..r * d + d];
        for (col, &x) in src.iter().enumerate() {
            acc[col * m + r] += x;
        }
    }
}

/// [`x_beta`] using the level combos and sparse entries a [`SandwichScratch::gather`] of the
/// same chunk and subset `s` found: the categorical part of `xᵢᵀβ` is summed once per combo, and the sparse block's part of `xᵢᵀβ` is read from the row's entries in the
/// subset (β by local position, a table that stays in L1) instead of gathering β over every
/// entry of the row. Exact when every non-zero sparse coefficient is in `s` — a penalised
/// path's working set always holds its support; the caller checks it.
pub fn x_beta_gathered(
    v: &ChunkView,
    layout: &Layout,
    beta: &[f64],
    s: &ColumnSubset,
    scratch: &SandwichScratch,
    out: &mut [f64],
) {
    let e = &scratch.entries;
    x_beta_blocks(v, layout, beta, e.groups.is_none(), false, out);
    match (e.groups.as_deref(), e.combo.as_deref()) {
        // Every column in the subset (an IRLS pass): the combos' entries are global columns,
        // and a combo's categorical η is the sum of their β (the reference levels, absent,
        // add 0).
        (Some(g), Some(c)) if s.len() == layout.p => {
            add_per_combo(g, out, |u| c.of(u).iter().map(|&j| beta[j as usize]).sum())
        }
        (Some(g), _) => add_eta_cats(v, layout, beta, g, out),
        _ => {}
    }
    if e.sp_ptr.is_empty() {
        return;
    }
    let bl: Vec<f64> = s.columns().iter().map(|&j| beta[j]).collect();
    for (i, o) in out.iter_mut().enumerate() {
        let mut t = 0.0;
        for &(l, x) in e.sparse(i) {
            t += bl[l as usize] * x;
        }
        *o += t;
    }
}

/// Clear the upper halves of the AVX registers after faer's AVX-512 GEMM kernels: without a
/// `vzeroupper`, every later non-VEX (SSE) instruction — our baseline-x86-64 code and glibc's
/// `exp`/`log` wrappers — pays a false-dependency penalty on recent Intel cores (measured: the
/// IRLS row loop ran 3–4× slower after a GEMM).
#[inline]
pub fn clear_upper_simd_state() {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: the CPU supports AVX (checked above), which is all `vzeroupper` needs.
            unsafe { zeroupper_avx() }
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx")]
unsafe fn zeroupper_avx() {
    std::arch::x86_64::_mm256_zeroupper();
}

/// Copy the lower triangle of the m×m column-major `acc` onto its upper triangle.
pub fn symmetrize_lower(acc: &mut [f64], m: usize) {
    for j in 0..m {
        for i in j + 1..m {
            acc[i * m + j] = acc[j * m + i];
        }
    }
}

/// `out[i] = xᵢ[S]ᵀ M xᵢ[S]` for every row, where `m_full` is the symmetric |S|×|S| matrix
/// (column-major, both triangles filled) and entries of xᵢ outside S are ignored.
pub fn row_quad_forms(v: &ChunkView, layout: &Layout, s: &ColumnSubset, m_full: &[f64], out: &mut [f64]) {
    let m = s.len();
    debug_assert_eq!(m_full.len(), m * m);
    if row_quad_forms_grouped(v, layout, s, m_full, out) {
        return;
    }
    let rows = RowEntries::new(v, layout, s);
    let mut e: Vec<(usize, f64)> = Vec::new();
    for (i, o) in out.iter_mut().enumerate().take(v.n) {
        rows.fill(i, &mut e);
        let mut q = 0.0;
        for (a, &(la, xa)) in e.iter().enumerate() {
            let col = &m_full[la * m..(la + 1) * m];
            let mut t = 0.0;
            for &(lb, xb) in &e[..a] {
                t += col[lb] * xb;
            }
            q += xa * (2.0 * t + col[la] * xa);
        }
        *o = q;
    }
}

/// [`row_quad_forms`] through the rows' level combos ([`combos`]), when the subset has no
/// sparse columns and grouping pays: with xᵢ = (dᵢ, cᵢ) split into its dense-like part and its
/// level indicators, xᵢᵀMxᵢ = dᵢᵀM_DD dᵢ + 2dᵢᵀ(M_DC cᵢ) + cᵢᵀM_CC cᵢ, and the last two
/// factors depend on the row's levels only, so they are computed once per combo. Returns false
/// (leaving `out` alone) when it does not apply.
fn row_quad_forms_grouped(v: &ChunkView, layout: &Layout, s: &ColumnSubset, m_full: &[f64], out: &mut [f64]) -> bool {
    let (m, n, k) = (s.len(), v.n, layout.cats.len());
    if s.meets_sparse(v, layout) || k < 2 || n == 0 {
        return false;
    }
    let dl = s.dense_like(layout);
    let d = dl.len();
    let codes: Vec<&[u32]> = (0..k).map(|c| v.cat_col(c)).collect();
    let levels: Vec<u32> = layout.cats.iter().map(|b| b.n_levels).collect();
    let mut work = combos::LevelCombos::default();
    let Some(g) = combos::GroupingMemo::get(v.groups, &mut work, &codes, &levels, n) else {
        return false;
    };
    // Per row: (d + K)²/2 products row by row, against d(d + 1)/2 + d + 1 grouped plus, per
    // combo, K·d + K(K + 1)/2.
    let per_row = ((d + k) * (d + k)) as f64 / 2.0;
    let grouped = (d * (d + 1) / 2 + d + 1) as f64 + g.len() as f64 / n as f64 * (k * d + k * (k + 1) / 2) as f64;
    if grouped >= per_row {
        return false;
    }
    let cat_locals = s.level_locals(layout);
    // Per combo: M_DC c (d values) and cᵀ M_CC c, side by side (d + 1 each).
    let t = d + 1;
    let mut per_combo = vec![0.0; g.len() * t];
    let mut cats: Vec<usize> = Vec::with_capacity(k);
    for (u, &r) in g.first_row.iter().enumerate() {
        cats.clear();
        cats.extend(
            cat_locals
                .iter()
                .zip(&codes)
                .filter_map(|(cl, c)| cl[c[r as usize] as usize]),
        );
        let slot = &mut per_combo[u * t..(u + 1) * t];
        let mut q = 0.0;
        for (a, &ca) in cats.iter().enumerate() {
            let col = &m_full[ca * m..(ca + 1) * m];
            for (o, &(l, _)) in slot[..d].iter_mut().zip(&dl) {
                *o += col[l];
            }
            let mut tq = 0.0;
            for &cb in &cats[..a] {
                tq += col[cb];
            }
            q += 2.0 * tq + col[ca];
        }
        slot[d] = q;
    }
    // Per row: the combo's cᵀM_CC c, then 2 dᵀ(M_DC c) and dᵀM_DD d column by column (loops
    // over the chunk's rows that vectorise).
    let out = &mut out[..n];
    for (o, &u) in out.iter_mut().zip(&g.of_row) {
        *o = per_combo[u as usize * t + d];
    }
    let cols: Vec<Option<&[f64]>> = dl.iter().map(|&(_, src)| src.map(|j| &v.dense_col(j)[..n])).collect();
    for (a, &(la, _)) in dl.iter().enumerate() {
        match cols[a] {
            None => {
                for (o, &u) in out.iter_mut().zip(&g.of_row) {
                    *o += 2.0 * per_combo[u as usize * t + a];
                }
            }
            Some(xa) => {
                for ((o, &u), &x) in out.iter_mut().zip(&g.of_row).zip(xa) {
                    *o += 2.0 * per_combo[u as usize * t + a] * x;
                }
            }
        }
        for (b, &(lb, _)) in dl.iter().enumerate().take(a + 1) {
            let mab = m_full[lb * m + la] * if a == b { 1.0 } else { 2.0 };
            match (cols[a], cols[b]) {
                (None, None) => out.iter_mut().for_each(|o| *o += mab),
                (Some(x), None) | (None, Some(x)) => {
                    for (o, &xa) in out.iter_mut().zip(x) {
                        *o += mab * xa;
                    }
                }
                (Some(x), Some(y)) => {
                    for ((o, &xa), &xb) in out.iter_mut().zip(x).zip(y) {
                        *o += mab * xa * xb;
                    }
                }
            }
        }
    }
    true
}

/// The nonzeros of a chunk's rows restricted to a column subset, as `(local column, value)`
/// pairs in increasing local order: dense-like columns, then one level per categorical, then
/// sparse entries.
pub struct RowEntries<'a> {
    v: &'a ChunkView<'a>,
    layout: &'a Layout,
    s: &'a ColumnSubset,
    dense: Vec<(usize, Option<&'a [f64]>)>,
    cats: Vec<Vec<Option<usize>>>,
}

impl<'a> RowEntries<'a> {
    /// Prepare the per-block lookups for `v` and the subset `s`.
    pub fn new(v: &'a ChunkView<'a>, layout: &'a Layout, s: &'a ColumnSubset) -> RowEntries<'a> {
        let dense = s
            .dense_like(layout)
            .into_iter()
            .map(|(l, src)| (l, src.map(|j| v.dense_col(j))))
            .collect();
        let cats = s.level_locals(layout);
        RowEntries {
            v,
            layout,
            s,
            dense,
            cats,
        }
    }

    /// Replace `e` with row `i`'s entries.
    pub fn fill(&self, i: usize, e: &mut Vec<(usize, f64)>) {
        e.clear();
        for &(l, col) in &self.dense {
            e.push((l, col.map_or(1.0, |c| c[i])));
        }
        for (k, cc) in self.cats.iter().enumerate() {
            if let Some(l) = cc[self.v.cat_col(k)[i] as usize] {
                e.push((l, 1.0));
            }
        }
        if !self.v.indptr.is_empty() {
            let (idx, val) = self.v.sparse_row(i);
            for (&j, &x) in idx.iter().zip(val) {
                if let Some(l) = self.s.local(self.layout.sparse_offset + j as usize) {
                    e.push((l, x));
                }
            }
        }
    }
}

/// Rows `i` of the chunk for which `want(i)`, each as a dense vector over the `cols` columns
/// (sorted global indices): `(i, x_i[cols])`. O(|cols|) per selected row.
pub fn materialize_rows(
    v: &ChunkView,
    layout: &Layout,
    cols: &[usize],
    want: impl Fn(usize) -> bool,
) -> Vec<(usize, Vec<f64>)> {
    let s = ColumnSubset::new(layout.p, cols);
    let mut out = Vec::new();
    for i in (0..v.n).filter(|&i| want(i)) {
        let mut x = vec![0.0; s.len()];
        if layout.intercept {
            if let Some(l) = s.local(0) {
                x[l] = 1.0;
            }
        }
        for j in 0..layout.n_dense {
            if let Some(l) = s.local(layout.dense_offset() + j) {
                x[l] = v.dense_col(j)[i];
            }
        }
        for (k, blk) in layout.cats.iter().enumerate() {
            if let Some(l) = blk.column(v.cat_col(k)[i]).and_then(|j| s.local(j)) {
                x[l] = 1.0;
            }
        }
        let (idx, val) = v.sparse_row(i);
        for (&j, &a) in idx.iter().zip(val) {
            if let Some(l) = s.local(layout.sparse_offset + j as usize) {
                x[l] += a;
            }
        }
        out.push((i, x));
    }
    out
}

/// The chunk as a dense row-major n×p matrix. For tests and tiny data only.
pub fn materialize(v: &ChunkView, layout: &Layout) -> Vec<Vec<f64>> {
    let mut rows = vec![vec![0.0; layout.p]; v.n];
    for (i, r) in rows.iter_mut().enumerate() {
        if layout.intercept {
            r[0] = 1.0;
        }
        for j in 0..layout.n_dense {
            r[layout.dense_offset() + j] = v.dense_col(j)[i];
        }
        for (k, blk) in layout.cats.iter().enumerate() {
            if let Some(j) = blk.column(v.cat_col(k)[i]) {
                r[j] = 1.0;
            }
        }
        let (idx, val) = v.sparse_row(i);
        for (&j, &x) in idx.iter().zip(val) {
            r[layout.sparse_offset + j as usize] += x;
        }
    }
    rows
}
