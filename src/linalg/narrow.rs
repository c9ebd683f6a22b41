//! The dense block's part of the weighted sandwich when the block is narrow: the intercept and
//! up to [`MAX_NARROW`] numeric columns, the usual shape of a warehouse table whose other
//! columns are factors. One walk over the rows computes, for e = (1, x₁, …, x_nd),
//!
//! - the lower triangle of Σᵢ wᵢ eᵢ eᵢᵀ (Σw, Σw·x_k, Σw·x_j·x_k),
//! - the score Σᵢ wᵢ zᵢ eᵢ when z is given,
//! - either B = (w, w∘x₁, …, w∘x_nd), column-major, for the categorical blocks' per-row
//!   kernels, or, when the chunk's rows are grouped by their factor levels, each combo's
//!   record (Σw, Σwz, Σw·x₁, …, Σw·x_nd): eight rows' values are transposed in registers into
//!   eight records and each added to its combo's with one vector add,
//!
//! with every sum in an AVX-512 register (eight lanes, fused multiply-adds). For these shapes
//! it replaces a general GEMM (whose packing cost more than the product) plus the column sums
//! and dot products that each read the chunk again. Written with the intrinsics: the same loop
//! in portable Rust over eight-lane arrays was not unrolled, and its sums lived in memory.
//! CPUs without AVX-512 take the general path (the sums then round differently, as GEMM's
//! already do from one instruction set to another).

/// The widest dense block (numeric columns besides the intercept) the kernel takes: 6 gives
/// 28 + 7 sums of eight lanes, about the 32 vector registers of AVX-512.
pub const MAX_NARROW: usize = 6;

/// Whether [`narrow_gram`] runs on this CPU (it needs AVX-512; the caller has the general path).
pub fn available() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// A combo's sums over its rows, (Σw, Σwz, Σw·x₁, …, Σw·x_nd, 0, …): one cache line.
#[derive(Debug, Clone, Copy, Default)]
#[repr(C, align(64))]
pub struct ComboRecord(pub [f64; 8]);

/// Where [`narrow_gram`] puts the per-row products.
pub enum Products<'a> {
    /// B, column-major (`n·(nd + 1)`).
    Columns(&'a mut [f64]),
    /// Added to `records[of_row[i]]` (`of_row`: each row's combo).
    Combos {
        /// Each row's combo.
        of_row: &'a [u32],
        /// Each combo's record, added to.
        records: &'a mut [ComboRecord],
    },
}

/// The sums above for one chunk of `n` rows: `w` the weights, `z` the working response (for
/// the score), `x` the `nd` dense columns (column-major, `n` per column). Adds the lower
/// triangle to `acc` (column-major, leading dimension `m`, e's entries at locals 0..=nd) and
/// the score to `score[0..=nd]`; writes or adds the per-row products to `out`. Requires
/// `nd ≤ MAX_NARROW` and [`available`].
#[allow(clippy::too_many_arguments)]
pub fn narrow_gram(
    n: usize,
    nd: usize,
    w: &[f64],
    z: Option<&[f64]>,
    x: &[f64],
    out: Products<'_>,
    acc: &mut [f64],
    m: usize,
    score: Option<&mut [f64]>,
) {
    assert!(available(), "narrow_gram needs AVX-512");
    assert!(nd <= MAX_NARROW && w.len() >= n && x.len() >= n * nd);
    assert!(z.is_none_or(|z| z.len() >= n) && acc.len() >= (nd + 1) * m && m > nd);
    match &out {
        Products::Columns(b) => assert!(b.len() >= n * (nd + 1)),
        Products::Combos { of_row, records } => {
            assert!(of_row.len() >= n && of_row[..n].iter().all(|&u| (u as usize) < records.len()))
        }
    }
    let mut sums = Sums::default();
    #[cfg(target_arch = "x86_64")]
    {
        macro_rules! go {
            ($nd:literal) => {
                // SAFETY: the CPU has AVX-512F (asserted above); the slices' lengths and the
                // combo ids' range are asserted above, which is all the kernel's loads and
                // stores rely on.
                unsafe {
                    match (z, out) {
                        (Some(z), Products::Columns(b)) => {
                            avx512::kernel::<$nd, true, false>(n, w, z, x, b, &[], &mut [], &mut sums)
                        }
                        (None, Products::Columns(b)) => {
                            avx512::kernel::<$nd, false, false>(n, w, &[], x, b, &[], &mut [], &mut sums)
                        }
                        (Some(z), Products::Combos { of_row, records }) => {
                            avx512::kernel::<$nd, true, true>(n, w, z, x, &mut [], of_row, records, &mut sums)
                        }
                        (None, Products::Combos { of_row, records }) => {
                            avx512::kernel::<$nd, false, true>(n, w, &[], x, &mut [], of_row, records, &mut sums)
                        }
                    }
                }
            };
        }
        match nd {
            0 => go!(0),
            1 => go!(1),
            2 => go!(2),
            3 => go!(3),
            4 => go!(4),
            5 => go!(5),
            _ => go!(6),
        }
    }
    for j in 0..=nd {
        for k in 0..=j {
            acc[k * m + j] += sums.gram[j][k];
        }
    }
    if let Some(sc) = score {
        for (s, &t) in sc[..=nd].iter_mut().zip(&sums.score) {
            *s += t;
        }
    }
}

/// The combos' categories and category pairs, as flat tables: combo u's categories are
/// `cats[cat_ptr[u]..cat_ptr[u + 1]]`, its pairs below the diagonal (positions in the sandwich)
/// `pairs[pair_ptr[u]..pair_ptr[u + 1]]`.
#[derive(Clone, Copy)]
pub struct ComboTables<'a> {
    /// Where each combo's categories start in `cats`.
    pub cat_ptr: &'a [u32],
    /// The categories (local columns).
    pub cats: &'a [u32],
    /// Where each combo's pairs start in `pairs`.
    pub pair_ptr: &'a [u32],
    /// The pairs' positions in the m × m column-major sandwich.
    pub pairs: &'a [u32],
}

/// Add each combo's record to the categorical part of the sandwich: its Σw to its categorical
/// pairs below the diagonal (positions in `acc`), and the whole record to the row of `per_cat`
/// of each of its categories: one vector add each, which holds the category's diagonal entry
/// (Σw), its score (Σwz) and its cross products with the dense block at once. Requires
/// [`available`].
pub fn add_combo_records(records: &[ComboRecord], t: ComboTables<'_>, acc: &mut [f64], per_cat: &mut [ComboRecord]) {
    assert!(available(), "add_combo_records needs AVX-512");
    #[cfg(target_arch = "x86_64")]
    // SAFETY: the CPU has AVX-512F (asserted above); the function's body is safe code.
    unsafe {
        avx512::add_combo_records(records, t, acc, per_cat)
    }
}

/// The totals: `gram[j][k]` (j ≥ k) and `score[j]`, over e = (1, x).
#[derive(Default)]
struct Sums {
    gram: [[f64; MAX_NARROW + 1]; MAX_NARROW + 1],
    score: [f64; MAX_NARROW + 1],
}

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{ComboRecord, ComboTables, Sums, MAX_NARROW};
    use std::arch::x86_64::*;

    /// Index of (j, k), j ≥ k, in the packed lower triangle.
    const fn tri(j: usize, k: usize) -> usize {
        j * (j + 1) / 2 + k
    }

    /// The walk for `ND` dense columns, eight rows per step (the last step masked); B's
    /// columns written, or (`COMBOS`) the rows' records added to their combos'.
    ///
    /// # Safety
    /// The CPU has AVX-512F; `w`, `x` (`n·ND`), with `SCORE` `z`, and either `b`
    /// (`n·(ND + 1)`) or `of_row` (`n`, every id < `records.len()`) are long enough.
    #[target_feature(enable = "avx512f")]
    #[allow(clippy::too_many_arguments)]
    pub(super) unsafe fn kernel<const ND: usize, const SCORE: bool, const COMBOS: bool>(
        n: usize,
        w: &[f64],
        z: &[f64],
        x: &[f64],
        b: &mut [f64],
        of_row: &[u32],
        records: &mut [ComboRecord],
        s: &mut Sums,
    ) {
        let mut g = [_mm512_setzero_pd(); tri(MAX_NARROW + 1, 0)];
        let mut t = [_mm512_setzero_pd(); MAX_NARROW + 1];
        let (wp, zp, xp, bp) = (w.as_ptr(), z.as_ptr(), x.as_ptr(), b.as_mut_ptr());
        let (up, rp) = (of_row.as_ptr(), records.as_mut_ptr());
        let mut i = 0;
        while i < n {
            let rows = (n - i).min(8);
            let mask: __mmask8 = if rows == 8 { 0xff } else { (1u8 << rows) - 1 };
            // SAFETY (every load and store below): rows i..i + 8 masked to i..n, within each
            // column of `n` values; combo ids below `records.len()` (the caller's checks).
            let wv = unsafe { _mm512_maskz_loadu_pd(mask, wp.add(i)) };
            if !COMBOS {
                unsafe { _mm512_mask_storeu_pd(bp.add(i), mask, wv) };
            }
            g[0] = _mm512_add_pd(g[0], wv);
            let wz = if SCORE {
                let zv = unsafe { _mm512_maskz_loadu_pd(mask, zp.add(i)) };
                let wz = _mm512_mul_pd(wv, zv);
                t[0] = _mm512_add_pd(t[0], wz);
                wz
            } else {
                _mm512_setzero_pd()
            };
            let mut xv = [_mm512_setzero_pd(); MAX_NARROW];
            let mut bv = [_mm512_setzero_pd(); MAX_NARROW];
            for k in 0..ND {
                xv[k] = unsafe { _mm512_maskz_loadu_pd(mask, xp.add(k * n + i)) };
                bv[k] = _mm512_mul_pd(wv, xv[k]);
                if !COMBOS {
                    unsafe { _mm512_mask_storeu_pd(bp.add((k + 1) * n + i), mask, bv[k]) };
                }
                g[tri(k + 1, 0)] = _mm512_add_pd(g[tri(k + 1, 0)], bv[k]);
                if SCORE {
                    t[k + 1] = _mm512_fmadd_pd(xv[k], wz, t[k + 1]);
                }
            }
            for j in 0..ND {
                for k in 0..=j {
                    g[tri(j + 1, k + 1)] = _mm512_fmadd_pd(xv[j], bv[k], g[tri(j + 1, k + 1)]);
                }
            }
            if COMBOS {
                let q = [wv, wz, bv[0], bv[1], bv[2], bv[3], bv[4], bv[5]];
                let rec = transpose8(q);
                for (l, r) in rec.iter().enumerate().take(rows) {
                    let u = unsafe { *up.add(i + l) } as usize;
                    let p = unsafe { rp.add(u) } as *mut f64;
                    unsafe { _mm512_store_pd(p, _mm512_add_pd(_mm512_load_pd(p), *r)) };
                }
            }
            i += 8;
        }
        for j in 0..=ND {
            for k in 0..=j {
                s.gram[j][k] = _mm512_reduce_add_pd(g[tri(j, k)]);
            }
            s.score[j] = _mm512_reduce_add_pd(t[j]);
        }
    }

    /// [`super::add_combo_records`], compiled for AVX-512 (a record is one register).
    #[target_feature(enable = "avx512f")]
    pub(super) fn add_combo_records(
        records: &[ComboRecord],
        t: ComboTables<'_>,
        acc: &mut [f64],
        per_cat: &mut [ComboRecord],
    ) {
        let ComboTables {
            cat_ptr,
            cats,
            pair_ptr,
            pairs,
        } = t;
        for (u, q) in records.iter().enumerate() {
            let w = q.0[0];
            for &o in &pairs[pair_ptr[u] as usize..pair_ptr[u + 1] as usize] {
                acc[o as usize] += w;
            }
            for &c in &cats[cat_ptr[u] as usize..cat_ptr[u + 1] as usize] {
                for (t, &x) in per_cat[c as usize].0.iter_mut().zip(&q.0) {
                    *t += x;
                }
            }
        }
    }

    /// Eight vectors of eight lanes, q[a][l], to the eight vectors r[l][a] (an 8 × 8 transpose
    /// in 24 shuffles).
    #[target_feature(enable = "avx512f")]
    #[inline]
    fn transpose8(q: [__m512d; 8]) -> [__m512d; 8] {
        let t0 = _mm512_unpacklo_pd(q[0], q[1]);
        let t1 = _mm512_unpackhi_pd(q[0], q[1]);
        let t2 = _mm512_unpacklo_pd(q[2], q[3]);
        let t3 = _mm512_unpackhi_pd(q[2], q[3]);
        let t4 = _mm512_unpacklo_pd(q[4], q[5]);
        let t5 = _mm512_unpackhi_pd(q[4], q[5]);
        let t6 = _mm512_unpacklo_pd(q[6], q[7]);
        let t7 = _mm512_unpackhi_pd(q[6], q[7]);
        let u0 = _mm512_shuffle_f64x2::<0x88>(t0, t2);
        let u1 = _mm512_shuffle_f64x2::<0x88>(t1, t3);
        let u2 = _mm512_shuffle_f64x2::<0xdd>(t0, t2);
        let u3 = _mm512_shuffle_f64x2::<0xdd>(t1, t3);
        let u4 = _mm512_shuffle_f64x2::<0x88>(t4, t6);
        let u5 = _mm512_shuffle_f64x2::<0x88>(t5, t7);
        let u6 = _mm512_shuffle_f64x2::<0xdd>(t4, t6);
        let u7 = _mm512_shuffle_f64x2::<0xdd>(t5, t7);
        [
            _mm512_shuffle_f64x2::<0x88>(u0, u4),
            _mm512_shuffle_f64x2::<0x88>(u1, u5),
            _mm512_shuffle_f64x2::<0x88>(u2, u6),
            _mm512_shuffle_f64x2::<0x88>(u3, u7),
            _mm512_shuffle_f64x2::<0xdd>(u0, u4),
            _mm512_shuffle_f64x2::<0xdd>(u1, u5),
            _mm512_shuffle_f64x2::<0xdd>(u2, u6),
            _mm512_shuffle_f64x2::<0xdd>(u3, u7),
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Against the sums written out row by row, for every width, with and without the score,
    /// and row counts around multiples of the eight lanes.
    #[test]
    fn narrow_gram_matches_row_by_row_sums() {
        if !available() {
            eprintln!("skipped: no AVX-512 on this CPU (the general path is tested elsewhere)");
            return;
        }
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        let mut rand = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            (seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        for nd in 0..=MAX_NARROW {
            for n in [0usize, 1, 7, 8, 9, 63, 1000] {
                let w: Vec<f64> = (0..n).map(|_| rand() + 0.6).collect();
                let z: Vec<f64> = (0..n).map(|_| 3.0 * rand()).collect();
                let x: Vec<f64> = (0..n * nd).map(|_| 10.0 * rand()).collect();
                let m = nd + 3;
                for (with_score, grouped) in [(false, false), (true, false), (false, true), (true, true)] {
                    let mut acc = vec![0.25; m * m];
                    let mut score = vec![0.5; m];
                    let mut b = vec![f64::NAN; n * (nd + 1)];
                    let zs = with_score.then_some(&z[..]);
                    let sc = with_score.then_some(&mut score[..]);
                    let of_row: Vec<u32> = (0..n).map(|i| ((i * 7 + i / 3) % 5) as u32).collect();
                    let mut records = vec![ComboRecord([1.0; 8]); 5];
                    if grouped {
                        let out = Products::Combos {
                            of_row: &of_row,
                            records: &mut records,
                        };
                        narrow_gram(n, nd, &w, zs, &x, out, &mut acc, m, sc);
                    } else {
                        narrow_gram(n, nd, &w, zs, &x, Products::Columns(&mut b), &mut acc, m, sc);
                    }
                    let e = |i: usize, k: usize| if k == 0 { 1.0 } else { x[(k - 1) * n + i] };
                    for j in 0..m {
                        for k in 0..m {
                            let want = if j <= nd && k <= j {
                                0.25 + (0..n).map(|i| w[i] * e(i, j) * e(i, k)).sum::<f64>()
                            } else {
                                0.25
                            };
                            let got = acc[k * m + j];
                            assert!(
                                (got - want).abs() <= 1e-12 * (1.0 + want.abs()),
                                "nd={nd} n={n} ({j},{k}): {got} vs {want}"
                            );
                        }
                    }
                    for (j, &got) in score.iter().enumerate() {
                        let want = if with_score && j <= nd {
                            0.5 + (0..n).map(|i| w[i] * z[i] * e(i, j)).sum::<f64>()
                        } else {
                            0.5
                        };
                        assert!((got - want).abs() <= 1e-12 * (1.0 + want.abs()), "score {j}");
                    }
                    if !grouped {
                        for k in 0..=nd {
                            for i in 0..n {
                                assert_eq!(b[k * n + i], w[i] * e(i, k), "b[{k}][{i}]");
                            }
                        }
                        continue;
                    }
                    for (u, rec) in records.iter().enumerate() {
                        let rows: Vec<usize> = (0..n).filter(|&i| of_row[i] as usize == u).collect();
                        let mut want = [1.0; 8];
                        want[0] += rows.iter().map(|&i| w[i]).sum::<f64>();
                        if with_score {
                            want[1] += rows.iter().map(|&i| w[i] * z[i]).sum::<f64>();
                        }
                        for k in 1..=nd {
                            want[k + 1] += rows.iter().map(|&i| w[i] * e(i, k)).sum::<f64>();
                        }
                        for (a, (&got, &want)) in rec.0.iter().zip(&want).enumerate() {
                            assert!(
                                (got - want).abs() <= 1e-12 * (1.0 + want.abs()),
                                "nd={nd} n={n} combo {u}[{a}]: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}
