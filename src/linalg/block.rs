//! The information matrix of a design with one wide categorical term K, held in blocks and
//! solved through its Schur complement, so that a factor with tens of thousands of levels
//! costs O(m_A²·L) per IRLS step instead of O((m_A + L)³).
//!
//! With the columns split into K's L level columns and the m_A others,
//!
//! ```text
//! F = XᵀWX + R = [ A   B ]    A = X_Aᵀ W X_A + R_A   (m_A × m_A, dense)
//!                [ Bᵀ  D ]    B = X_Aᵀ W X_K          (m_A × L, one column per level)
//!                             D = X_Kᵀ W X_K + R_K    (diagonal: a row has one level of K)
//! ```
//!
//! and S = A − B D⁻¹ Bᵀ, a solve of F x = r is x_A = S⁻¹(r_A − B D⁻¹ r_K),
//! x_K = D⁻¹(r_K − Bᵀ x_A), and
//! F⁻¹ = [[S⁻¹, −S⁻¹BD⁻¹], [−D⁻¹BᵀS⁻¹, D⁻¹ + D⁻¹BᵀS⁻¹BD⁻¹]] (glum/tabmat's split-matrix idea
//! applied to the solve; Golub & Van Loan, *Matrix Computations*, §3.2.10 on block elimination).
//!
//! Aliased columns are R's business: R's `dqrdc2` flags, in column order, a column whose
//! residual after projecting on the earlier columns is negligible. Eliminating K first
//! changes that order, so [`SchurFactor::new`] declines (returns `None`) whenever any pivot is
//! near the aliasing tolerance, and the caller factors the assembled dense matrix instead
//! ([`GramFactor`], column order). Levels of K with no weight are zero columns, aliased in any
//! order, and are dropped here as R drops them.

use faer::linalg::matmul::triangular::{matmul, BlockStructure};
use faer::{Accum, Mat, MatMut, MatRef, Par};

use super::chol::GramFactor;
use super::spare::Buf;
use super::{ColumnSubset, SandwichScratch};
use crate::chunk::ChunkView;
use crate::design::Layout;
use crate::error::{Error, Result};

/// How much larger than the aliasing tolerance every pivot of the Schur-complement
/// factorization must be (relative to its column's own squared norm) for the block solve to be
/// used; closer than this, the order of elimination could decide which column is aliased, and
/// the dense column-order factorization decides instead.
pub const SCHUR_PIVOT_MARGIN: f64 = 1e3;

/// Which categorical term is held as the diagonal block D, and the columns of the rest.
#[derive(Debug, Clone)]
pub struct BlockSplit {
    /// Index of the term in `Layout::cats`.
    pub block: usize,
    /// Its first global column.
    pub offset: usize,
    /// Its number of columns L.
    pub width: usize,
    /// Every other column, increasing (the A block).
    pub rest: ColumnSubset,
}

impl BlockSplit {
    /// The widest categorical term, if it has at least `min_levels` columns.
    pub fn widest(layout: &Layout, min_levels: usize) -> Option<BlockSplit> {
        let (block, blk) = layout.cats.iter().enumerate().max_by_key(|(_, b)| b.width())?;
        let width = blk.width();
        if width < min_levels.max(1) {
            return None;
        }
        let rest: Vec<usize> = (0..layout.p)
            .filter(|&j| j < blk.offset || j >= blk.offset + width)
            .collect();
        Some(BlockSplit {
            block,
            offset: blk.offset,
            width,
            rest: ColumnSubset::new(layout.p, &rest),
        })
    }

    /// Bytes of one pass accumulator: A, B and D.
    pub fn accumulator_bytes(&self) -> usize {
        let ma = self.rest.len();
        8 * (ma * ma + ma * self.width + self.width)
    }
}

/// The B and D blocks of XᵀWX (A is an ordinary [`super::sandwich`] over `BlockSplit::rest`).
#[derive(Debug, Clone)]
pub struct BlockGram {
    /// B, m_A × L column-major: column l holds level l's cross products with the rest.
    pub cross: Buf,
    /// D's diagonal, Σᵢ wᵢ over the rows at each level.
    pub diag: Vec<f64>,
}

impl BlockGram {
    /// Zeros for `split`.
    pub fn zeros(split: &BlockSplit) -> BlockGram {
        BlockGram {
            // Tens of MiB at 10⁴ levels, one per fold group and pass: kept between passes.
            cross: Buf::zeroed(split.rest.len() * split.width),
            diag: vec![0.0; split.width],
        }
    }

    /// Add another accumulator's sums.
    pub fn merge(&mut self, o: &BlockGram) {
        for (a, b) in self.cross.iter_mut().zip(&o.cross) {
            *a += b;
        }
        for (a, b) in self.diag.iter_mut().zip(&o.diag) {
            *a += b;
        }
    }

    /// The information over the global columns `cols` (increasing, c×c column-major), from
    /// `a` (m_A × m_A, both triangles) and these blocks, plus `ridge[j]` on the diagonal.
    pub fn assemble(&self, a: &[f64], split: &BlockSplit, cols: &[usize], ridge: &[f64]) -> Vec<f64> {
        assemble(a, &self.slices(), split, cols, ridge)
    }
}

/// Accumulate a chunk's part of B and D, and with `score = Some((z, out))` K's part of the
/// score, `out[l] += Σ_{i at level l} wᵢ zᵢ`. Reads the entries and weighted dense columns a
/// [`super::sandwich_gathered`] of the same chunk over `split.rest` left in `scratch`.
pub fn sandwich_cross(
    v: &ChunkView,
    layout: &Layout,
    w: &[f64],
    split: &BlockSplit,
    scratch: &SandwichScratch,
    g: &mut BlockGram,
    score: Option<(&[f64], &mut [f64])>,
) {
    let ma = split.rest.len();
    let n = v.n;
    let blk = &layout.cats[split.block];
    let codes = v.cat_col(split.block);
    let dl = split.rest.dense_like(layout);
    // `scratch.b` holds wᵢ·x for the dense-like columns, column-major (n per column), when the
    // sandwich had any.
    let wx = if dl.is_empty() {
        &[][..]
    } else {
        &scratch.b[..n * dl.len()]
    };
    let e = &scratch.entries;
    let (z, out) = match score {
        Some((z, out)) => (Some(z), Some(out)),
        None => (None, None),
    };
    let mut out = out;
    for i in 0..n {
        let wi = w[i];
        if wi == 0.0 {
            continue;
        }
        let Some(j) = blk.column(codes[i]) else {
            continue;
        };
        let l = j - split.offset;
        g.diag[l] += wi;
        if let (Some(z), Some(out)) = (z, out.as_deref_mut()) {
            out[l] += wi * z[i];
        }
        let col = &mut g.cross[l * ma..(l + 1) * ma];
        for (c, &(loc, _)) in dl.iter().enumerate() {
            col[loc] += wx[c * n + i];
        }
        for &ca in e.cats(i) {
            col[ca as usize] += wi;
        }
        for &(sa, xa) in e.sparse(i) {
            col[sa as usize] += wi * xa;
        }
    }
}

/// The information over the global columns `cols` (increasing, c×c column-major), from A
/// (`a`, m_A × m_A, both triangles), B and D, plus `ridge[j]` on the diagonal.
pub fn assemble(a: &[f64], g: &BlockSlices<'_>, split: &BlockSplit, cols: &[usize], ridge: &[f64]) -> Vec<f64> {
    let ma = split.rest.len();
    let c = cols.len();
    let pos: Vec<Pos> = cols.iter().map(|&j| Pos::of(split, j)).collect();
    let mut out = vec![0.0; c * c];
    for (q, pq) in pos.iter().enumerate() {
        for (r, pr) in pos.iter().enumerate() {
            out[q * c + r] = match (pr, pq) {
                (Pos::Rest(x), Pos::Rest(y)) => a[y * ma + x],
                (Pos::Rest(x), Pos::Level(l)) | (Pos::Level(l), Pos::Rest(x)) => g.cross[l * ma + x],
                (Pos::Level(l), Pos::Level(k)) if l == k => g.diag[*l],
                (Pos::Level(_), Pos::Level(_)) => 0.0,
            };
        }
        out[q * c + q] += ridge[cols[q]];
    }
    out
}

/// Where a global column sits in the blocks.
enum Pos {
    /// Local position in `BlockSplit::rest`.
    Rest(usize),
    /// Level (local column) of the diagonal term.
    Level(usize),
}

impl Pos {
    fn of(split: &BlockSplit, j: usize) -> Pos {
        match split.rest.local(j) {
            Some(l) => Pos::Rest(l),
            None => Pos::Level(j - split.offset),
        }
    }
}

/// Borrowed B and D blocks (of a [`BlockGram`] or an [`InformationBlocks`]).
#[derive(Debug, Clone, Copy)]
pub struct BlockSlices<'a> {
    /// B, m_A × L column-major.
    pub cross: &'a [f64],
    /// D's diagonal.
    pub diag: &'a [f64],
}

impl BlockGram {
    /// Borrow B and D.
    pub fn slices(&self) -> BlockSlices<'_> {
        BlockSlices {
            cross: &self.cross,
            diag: &self.diag,
        }
    }
}

/// The information at β̂ of a fit solved in blocks, penalty curvature included (what
/// `Fit::information` holds densely): diagnostics factor it through the Schur complement
/// instead of a p×p Cholesky.
#[derive(Debug, Clone)]
pub struct InformationBlocks {
    /// Which term is the diagonal block.
    pub split: BlockSplit,
    /// A over `split.rest` (m_A × m_A, both triangles).
    pub a: Vec<f64>,
    /// B (m_A × L, column-major).
    pub cross: Vec<f64>,
    /// D's diagonal (L).
    pub diag: Vec<f64>,
}

impl InformationBlocks {
    /// The information over the global columns `cols` (increasing), dense c×c column-major.
    pub fn assemble(&self, cols: &[usize]) -> Vec<f64> {
        assemble(
            &self.a,
            &self.slices(),
            &self.split,
            cols,
            &vec![0.0; self.split.rest.local.len()],
        )
    }

    /// The information's diagonal over the global columns `cols`.
    pub fn diagonal(&self, cols: &[usize]) -> Vec<f64> {
        let ma = self.split.rest.len();
        cols.iter()
            .map(|&j| match Pos::of(&self.split, j) {
                Pos::Rest(x) => self.a[x * ma + x],
                Pos::Level(l) => self.diag[l],
            })
            .collect()
    }

    /// Borrow B and D.
    pub fn slices(&self) -> BlockSlices<'_> {
        BlockSlices {
            cross: &self.cross,
            diag: &self.diag,
        }
    }
}

/// A factorization of the information through the Schur complement of its diagonal block.
#[derive(Debug)]
pub struct SchurFactor {
    /// Kept global columns, increasing.
    pub kept: Vec<usize>,
    /// Global columns found aliased (levels of K without weight), increasing.
    pub aliased: Vec<usize>,
    /// Position in `kept` of each rest column (every rest column is kept).
    pos_rest: Vec<usize>,
    /// Kept levels of K (local), and their positions in `kept`.
    levels: Vec<usize>,
    pos_levels: Vec<usize>,
    /// D + R_K over the kept levels.
    dk: Vec<f64>,
    /// B over the kept levels (m_A × L_kept, column-major).
    cross: Buf,
    /// Cholesky factor of S = A − B D⁻¹ Bᵀ.
    s: GramFactor,
    /// The split it was built for.
    split: BlockSplit,
}

impl SchurFactor {
    /// Factor F over the `candidates` (global columns, increasing), from A (`a`, m_A × m_A),
    /// `g` and the `ridge`. `Ok(None)` when a column is aliased or close to it, where R's
    /// column order must decide (factor the assembled matrix with [`GramFactor`] instead).
    pub fn new(
        a: &[f64],
        g: &BlockSlices<'_>,
        split: &BlockSplit,
        candidates: &[usize],
        ridge: &[f64],
        tol: f64,
    ) -> Result<Option<SchurFactor>> {
        let ma = split.rest.len();
        let rest = split.rest.columns();
        let in_k = |j: usize| j >= split.offset && j < split.offset + split.width;
        // Every rest column must still be a candidate (a dropped one means a dense fit decided).
        if candidates.iter().filter(|&&j| !in_k(j)).count() != ma {
            return Ok(None);
        }
        let mut levels = Vec::new();
        let mut aliased = Vec::new();
        for &j in candidates.iter().filter(|&&j| in_k(j)) {
            let d = g.diag[j - split.offset] + ridge[j];
            if !d.is_finite() {
                return Err(Error::Numerical(format!(
                    "non-finite diagonal of the information matrix at column {j}"
                )));
            }
            if d > 0.0 {
                levels.push(j - split.offset);
            } else {
                aliased.push(j);
            }
        }
        let nk = levels.len();
        let dk: Vec<f64> = levels.iter().map(|&l| g.diag[l] + ridge[split.offset + l]).collect();
        // B over the kept levels, and below B D^-1/2: each as large as B (86 MB at 10⁴ levels),
        // made on every IRLS iteration, so taken from (and given back to) the spare buffers.
        let mut cross = Buf::take(ma * nk);
        for (k, &l) in levels.iter().enumerate() {
            cross[k * ma..(k + 1) * ma].copy_from_slice(&g.cross[l * ma..(l + 1) * ma]);
        }
        // S = A + R_A − (B D^-1/2)(B D^-1/2)ᵀ.
        let mut s = Mat::from_fn(ma, ma, |x, y| a[y * ma + x] + if x == y { ridge[rest[x]] } else { 0.0 });
        let a_diag: Vec<f64> = (0..ma).map(|x| s[(x, x)]).collect();
        if a_diag.iter().any(|&d| !(d > 0.0 && d.is_finite())) {
            return Ok(None);
        }
        if nk > 0 {
            let mut bs = Buf::take(ma * nk);
            for (k, (b, c)) in bs.chunks_exact_mut(ma).zip(cross.chunks_exact(ma)).enumerate() {
                let sd = dk[k].sqrt();
                for (b, &c) in b.iter_mut().zip(c) {
                    *b = c / sd;
                }
            }
            let bsm = MatRef::from_column_major_slice(&bs, ma, nk);
            matmul(
                s.as_mut(),
                BlockStructure::TriangularLower,
                Accum::Add,
                bsm,
                BlockStructure::Rectangular,
                bsm.transpose(),
                BlockStructure::Rectangular,
                -1.0,
                Par::rayon(0),
            );
            super::clear_upper_simd_state();
            mirror_lower(s.as_mut());
        }
        // S's diagonal is each rest column's squared residual after projecting on K's levels, and
        // the pivots of S's scaled factor are fractions of it: their product is the fraction of
        // the column's own norm left after projecting on K and the rest columns before it, the
        // pivot R's column order would look at were K first.
        let frac: Vec<f64> = (0..ma).map(|x| s[(x, x)] / a_diag[x]).collect();
        if frac.iter().any(|&f| f.is_nan() || f <= SCHUR_PIVOT_MARGIN * tol) {
            return Ok(None);
        }
        let sv: Vec<f64> = {
            let mut v = vec![0.0; ma * ma];
            for y in 0..ma {
                for x in 0..ma {
                    v[y * ma + x] = s[(x, y)];
                }
            }
            v
        };
        drop(s);
        let all: Vec<usize> = (0..ma).collect();
        let zeros = vec![0.0; ma];
        let sf = match GramFactor::new(&sv, ma, &all, &zeros, 0.0) {
            Ok(f) if f.aliased.is_empty() => f,
            Ok(_) | Err(Error::Numerical(_)) => return Ok(None),
            Err(e) => return Err(e),
        };
        if sf
            .pivots()
            .iter()
            .zip(&frac)
            .any(|(&l, &f)| (l * f).is_nan() || l * f <= SCHUR_PIVOT_MARGIN * tol)
        {
            return Ok(None);
        }
        let mut kept: Vec<usize> = rest.to_vec();
        kept.extend(levels.iter().map(|&l| split.offset + l));
        kept.sort_unstable();
        let pos_of = |j: usize| kept.binary_search(&j).expect("kept column");
        let pos_rest = rest.iter().map(|&j| pos_of(j)).collect();
        let pos_levels = levels.iter().map(|&l| pos_of(split.offset + l)).collect();
        Ok(Some(SchurFactor {
            kept,
            aliased,
            pos_rest,
            levels,
            pos_levels,
            dk,
            cross,
            s: sf,
            split: split.clone(),
        }))
    }

    /// Solve F_kk x = b_k; `b` is indexed by global column, the result by kept position.
    pub fn solve(&self, b: &[f64]) -> Vec<f64> {
        let split = &self.split;
        let ma = self.pos_rest.len();
        let rest = split.rest.columns();
        let rk: Vec<f64> = self.levels.iter().map(|&l| b[split.offset + l]).collect();
        let mut t: Vec<f64> = rest.iter().map(|&j| b[j]).collect();
        for (k, (&r, &d)) in rk.iter().zip(&self.dk).enumerate() {
            let f = r / d;
            for (t, &c) in t.iter_mut().zip(&self.cross[k * ma..(k + 1) * ma]) {
                *t -= c * f;
            }
        }
        let xa = self.s.solve(&t);
        let mut out = vec![0.0; self.kept.len()];
        for (&p, &x) in self.pos_rest.iter().zip(&xa) {
            out[p] = x;
        }
        for (k, &p) in self.pos_levels.iter().enumerate() {
            out[p] = (rk[k] - super::dot(&self.cross[k * ma..(k + 1) * ma], &xa)) / self.dk[k];
        }
        out
    }
}

/// What per-row diagnostics need of F⁻¹ for a blocked information, without forming it: S⁻¹,
/// uₖ = S⁻¹Bₖ/dₖ and cₖ = (F⁻¹)ₖₖ = 1/dₖ + Bₖᵀuₖ/dₖ per kept level k. For a row with entries
/// aᵢ over the rest and level k, xᵢᵀF⁻¹xᵢ = aᵢᵀS⁻¹aᵢ − 2aᵢᵀuₖ + cₖ: O(nnzᵢ²) as with the
/// dense inverse, in O(m_A·L) memory instead of O(p²).
#[derive(Debug)]
pub struct BlockInverse {
    split: BlockSplit,
    /// S⁻¹ over the rest (m_A × m_A, column-major, both triangles).
    sinv: Vec<f64>,
    /// uₖ per kept level (m_A × L_kept, column-major).
    u: Vec<f64>,
    /// cₖ per kept level.
    c: Vec<f64>,
    /// B over the kept levels and D + R.
    cross: Vec<f64>,
    dk: Vec<f64>,
    /// Kept-level index of each level of the term (None: aliased).
    level_index: Vec<Option<usize>>,
    pos_rest: Vec<usize>,
    pos_levels: Vec<usize>,
    m: usize,
}

impl SchurFactor {
    /// The pieces of F⁻¹ that per-row diagnostics use ([`BlockInverse`]).
    pub fn block_inverse(&self) -> BlockInverse {
        let ma = self.pos_rest.len();
        let nk = self.levels.len();
        let sinv_m = self.s.inverse();
        let bd = Mat::from_fn(ma, nk, |x, k| self.cross[k * ma + x] / self.dk[k]);
        let mut um = Mat::<f64>::zeros(ma, nk);
        faer::linalg::matmul::matmul(
            um.as_mut(),
            Accum::Replace,
            sinv_m.as_ref(),
            bd.as_ref(),
            1.0,
            Par::rayon(0),
        );
        super::clear_upper_simd_state();
        let mut u = vec![0.0; ma * nk];
        for k in 0..nk {
            for x in 0..ma {
                u[k * ma + x] = um[(x, k)];
            }
        }
        let c = (0..nk)
            .map(|k| {
                1.0 / self.dk[k] + super::dot(&self.cross[k * ma..(k + 1) * ma], &u[k * ma..(k + 1) * ma]) / self.dk[k]
            })
            .collect();
        let mut sinv = vec![0.0; ma * ma];
        for y in 0..ma {
            for x in 0..ma {
                sinv[y * ma + x] = sinv_m[(x, y)];
            }
        }
        let mut level_index = vec![None; self.split.width];
        for (k, &l) in self.levels.iter().enumerate() {
            level_index[l] = Some(k);
        }
        BlockInverse {
            split: self.split.clone(),
            sinv,
            u,
            c,
            cross: self.cross.to_vec(),
            dk: self.dk.clone(),
            level_index,
            pos_rest: self.pos_rest.clone(),
            pos_levels: self.pos_levels.clone(),
            m: self.kept.len(),
        }
    }
}

impl BlockInverse {
    /// `out[i] = xᵢᵀ F⁻¹ xᵢ` for every row of the chunk (rows at an aliased level of the term,
    /// which carry no weight, get only their rest part).
    pub fn row_quad_forms(&self, v: &ChunkView, layout: &Layout, out: &mut [f64]) {
        let sp = &self.split;
        let ma = sp.rest.len();
        super::row_quad_forms(v, layout, &sp.rest, &self.sinv, out);
        let rows = super::RowEntries::new(v, layout, &sp.rest);
        let blk = &layout.cats[sp.block];
        let codes = v.cat_col(sp.block);
        let mut e = Vec::new();
        for (i, o) in out.iter_mut().enumerate().take(v.n) {
            let Some(k) = blk.column(codes[i]).and_then(|j| self.level_index[j - sp.offset]) else {
                continue;
            };
            rows.fill(i, &mut e);
            let uk = &self.u[k * ma..(k + 1) * ma];
            let t: f64 = e.iter().map(|&(l, x)| uk[l] * x).sum();
            *o += self.c[k] - 2.0 * t;
        }
    }

    /// The diagonal of F⁻¹, by kept position.
    pub fn diag(&self) -> Vec<f64> {
        let ma = self.pos_rest.len();
        let mut d = vec![0.0; self.m];
        for (x, &p) in self.pos_rest.iter().enumerate() {
            d[p] = self.sinv[x * ma + x];
        }
        for (k, &p) in self.pos_levels.iter().enumerate() {
            d[p] = self.c[k];
        }
        d
    }

    /// F⁻¹x for `x` over the kept columns (dense, kept order), by kept position.
    pub fn apply(&self, x: &[f64]) -> Vec<f64> {
        let ma = self.pos_rest.len();
        // t = S⁻¹x_A − Σₖ uₖ xₖ; result: t on the rest, (xₖ − Bₖᵀt)/dₖ on the levels.
        let mut t = vec![0.0; ma];
        for (b, &p) in self.pos_rest.iter().enumerate() {
            let xb = x[p];
            if xb != 0.0 {
                for (t, &f) in t.iter_mut().zip(&self.sinv[b * ma..(b + 1) * ma]) {
                    *t += f * xb;
                }
            }
        }
        for (k, &p) in self.pos_levels.iter().enumerate() {
            let xk = x[p];
            if xk != 0.0 {
                for (t, &f) in t.iter_mut().zip(&self.u[k * ma..(k + 1) * ma]) {
                    *t -= f * xk;
                }
            }
        }
        let mut out = vec![0.0; self.m];
        for (&p, &tv) in self.pos_rest.iter().zip(&t) {
            out[p] = tv;
        }
        for (k, &p) in self.pos_levels.iter().enumerate() {
            out[p] = (x[p] - super::dot(&self.cross[k * ma..(k + 1) * ma], &t)) / self.dk[k];
        }
        out
    }
}

/// Copy the strict lower triangle of the square `a` to its upper triangle, in tiles (a
/// column-by-column copy strides through memory once per entry).
pub(super) fn mirror_lower(mut a: MatMut<'_, f64>) {
    const T: usize = 64;
    let n = a.nrows();
    for j0 in (0..n).step_by(T) {
        for i0 in (j0..n).step_by(T) {
            for j in j0..(j0 + T).min(n) {
                for i in i0.max(j + 1)..(i0 + T).min(n) {
                    a[(j, i)] = a[(i, j)];
                }
            }
        }
    }
}

/// The factorization of an IRLS step's information: dense in column order, or blocked.
#[derive(Debug)]
pub enum InfoFactor {
    /// [`GramFactor`] of the whole matrix.
    Dense(GramFactor),
    /// [`SchurFactor`].
    Schur(Box<SchurFactor>),
}

impl InfoFactor {
    /// Kept (non-aliased) global columns, increasing.
    pub fn kept(&self) -> &[usize] {
        match self {
            InfoFactor::Dense(f) => &f.kept,
            InfoFactor::Schur(f) => &f.kept,
        }
    }

    /// Solve over the kept columns; `b` by global column, the result by kept position.
    pub fn solve(&self, b: &[f64]) -> Vec<f64> {
        match self {
            InfoFactor::Dense(f) => f.solve(b),
            InfoFactor::Schur(f) => f.solve(b),
        }
    }
}
