//! Property tests: every split-design kernel agrees with a naive dense computation on random
//! small designs (dense, categorical and sparse blocks, with and without intercept).

use fulcrum::design::Layout;
use fulcrum::linalg::{
    row_quad_forms, sandwich, sandwich_gathered, symmetrize_lower, x_beta, x_beta_gathered, xt_v, ColumnSubset,
    SandwichScratch,
};
use fulcrum::Chunk;
use proptest::prelude::*;

/// A random chunk plus its layout.
#[derive(Debug, Clone)]
struct Case {
    chunk: Chunk,
    layout: Layout,
}

fn case() -> impl Strategy<Value = Case> {
    (
        1usize..80,
        0usize..4,
        prop::collection::vec(1u32..5, 0..5),
        0usize..7,
        any::<bool>(),
        any::<u64>(),
    )
        .prop_map(|(n, nd, levels, width, intercept, seed)| {
            let mut next = xorshift(seed);
            let mut draws: Vec<u64> = (0..(n * (nd + 8 + width * 2) + 16)).map(|_| next()).collect();
            let mut take = move || draws.pop().unwrap_or(7);
            let unif = |u: u64| (u >> 11) as f64 / (1u64 << 53) as f64 * 4.0 - 2.0;
            let dense: Vec<f64> = (0..n * nd).map(|_| unif(take())).collect();
            let mut cat = Vec::new();
            for &l in &levels {
                for _ in 0..n {
                    cat.push((take() % l as u64) as u32);
                }
            }
            let (mut indptr, mut indices, mut values) = (vec![0u32], vec![], vec![]);
            if width > 0 {
                for _ in 0..n {
                    for j in 0..width {
                        if take() % 3 == 0 {
                            indices.push(j as u32);
                            values.push(unif(take()));
                        }
                    }
                    indptr.push(indices.len() as u32);
                }
            } else {
                indptr.clear();
            }
            let chunk = Chunk {
                row_id: (0..n as u64).collect(),
                y: (0..n).map(|_| unif(take())).collect(),
                failures: None,
                weight: (0..n).map(|_| unif(take()).abs() + 0.1).collect(),
                offset: vec![0.0; n],
                n_dense: nd,
                dense,
                n_cat: levels.len(),
                cat,
                indptr,
                indices,
                values,
            };
            let layout = Layout::new(intercept, nd, &levels, width);
            Case { chunk, layout }
        })
}

/// Independent densification, written from the layout rules, not from the library's helper.
fn dense_x(c: &Case) -> Vec<Vec<f64>> {
    let (ch, l) = (&c.chunk, &c.layout);
    let n = ch.n_rows();
    (0..n)
        .map(|i| {
            let mut r = Vec::with_capacity(l.p);
            if l.intercept {
                r.push(1.0);
            }
            for j in 0..ch.n_dense {
                r.push(ch.dense[j * n + i]);
            }
            for (k, blk) in l.cats.iter().enumerate() {
                let code = ch.cat[k * n + i];
                let first = if blk.drop_first { 1 } else { 0 };
                for lev in first..blk.n_levels {
                    r.push(if code == lev { 1.0 } else { 0.0 });
                }
            }
            let mut sp = vec![0.0; l.sparse_width];
            if !ch.indptr.is_empty() {
                for e in ch.indptr[i] as usize..ch.indptr[i + 1] as usize {
                    sp[ch.indices[e] as usize] = ch.values[e];
                }
            }
            r.extend(sp);
            assert_eq!(r.len(), l.p);
            r
        })
        .collect()
}

/// xorshift64*: a deterministic stream of draws from `seed`.
fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut s = seed | 1;
    move || {
        s ^= s >> 12;
        s ^= s << 25;
        s ^= s >> 27;
        s.wrapping_mul(0x2545F4914F6CDD1D)
    }
}

/// A symmetric, indefinite m×m matrix (column-major, both triangles).
fn indefinite_symmetric(m: usize) -> Vec<f64> {
    let mut mm = vec![0.0; m * m];
    for a in 0..m {
        for b in 0..=a {
            let val = ((a * 7 + b * 3) % 11) as f64 / 5.0 - 1.0;
            mm[b * m + a] = val;
            mm[a * m + b] = val;
        }
    }
    mm
}

/// rᵀ M r over the columns `cols` of the dense row `r`, by the definition.
fn dense_quad_form(r: &[f64], cols: &[usize], mm: &[f64]) -> f64 {
    let m = cols.len();
    let mut q = 0.0;
    for (a, &ja) in cols.iter().enumerate() {
        for (b, &jb) in cols.iter().enumerate() {
            q += r[ja] * mm[b * m + a] * r[jb];
        }
    }
    q
}

fn close(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-10 * (1.0 + a.abs().max(b.abs()))
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(300))]

    #[test]
    fn x_beta_matches_dense(c in case(), bseed in any::<u64>()) {
        let x = dense_x(&c);
        let beta: Vec<f64> = (0..c.layout.p).map(|j| ((bseed >> (j % 60)) & 7) as f64 - 3.5 + j as f64 * 0.1).collect();
        let mut out = vec![0.0; c.chunk.n_rows()];
        x_beta(&c.chunk.view(), &c.layout, &beta, &mut out);
        for (i, r) in x.iter().enumerate() {
            let want: f64 = r.iter().zip(&beta).map(|(a, b)| a * b).sum();
            prop_assert!(close(out[i], want), "row {i}: {} vs {want}", out[i]);
        }
    }

    #[test]
    fn xt_v_matches_dense(c in case(), weighted in any::<bool>()) {
        let x = dense_x(&c);
        let v = c.chunk.view();
        let mut out = vec![0.0; c.layout.p];
        xt_v(&v, &c.layout, v.y, weighted.then_some(v.weight), &mut out);
        for j in 0..c.layout.p {
            let want: f64 = x.iter().enumerate().map(|(i, r)| r[j] * v.y[i] * if weighted { v.weight[i] } else { 1.0 }).sum();
            prop_assert!(close(out[j], want), "col {j}: {} vs {want}", out[j]);
        }
    }

    #[test]
    fn sandwich_matches_dense(c in case(), pick in any::<u64>(), all in any::<bool>()) {
        let x = dense_x(&c);
        let p = c.layout.p;
        let cols: Vec<usize> = if all { (0..p).collect() } else { (0..p).filter(|j| (pick >> (j % 64)) & 1 == 1).collect() };
        let s = if all { ColumnSubset::all(p) } else { ColumnSubset::new(p, &cols) };
        let m = s.len();
        let v = c.chunk.view();
        // Signed weights: the kernel must not assume w >= 0 (observed Hessians can be negative).
        let w: Vec<f64> = v.weight.iter().zip(v.y).map(|(a, b)| a * b.signum()).collect();
        let mut acc = vec![0.0; m * m];
        let mut scratch = SandwichScratch::default();
        sandwich(&v, &c.layout, &w, &s, &mut acc, &mut scratch);
        // Accumulating twice doubles it (the kernel adds into acc); the second time with the
        // subset's part of the score Σᵢ wᵢ zᵢ x_{i,S[l]}.
        let z: Vec<f64> = (0..v.n).map(|i| (i as f64 * 0.37).sin()).collect();
        let mut score = vec![1.0; m];
        scratch.gather(&v, &c.layout, &s);
        sandwich_gathered(&v, &c.layout, &w, &s, &mut acc, Some((&z, &mut score)), &mut scratch);
        for (l, &j) in cols.iter().enumerate() {
            let want: f64 = 1.0 + x.iter().enumerate().map(|(i, r)| w[i] * z[i] * r[j]).sum::<f64>();
            prop_assert!(close(score[l], want), "score {j}: {} vs {want}", score[l]);
        }
        symmetrize_lower(&mut acc, m);
        for (a, &ja) in cols.iter().enumerate() {
            for (b, &jb) in cols.iter().enumerate() {
                let want: f64 = 2.0 * x.iter().enumerate().map(|(i, r)| w[i] * r[ja] * r[jb]).sum::<f64>();
                prop_assert!(close(acc[b * m + a], want), "({ja},{jb}): {} vs {want}", acc[b * m + a]);
            }
        }
    }

    #[test]
    fn quad_forms_match_dense(c in case(), pick in any::<u64>()) {
        let x = dense_x(&c);
        let p = c.layout.p;
        let cols: Vec<usize> = (0..p).filter(|j| (pick >> (j % 64)) & 1 == 1 || *j == 0).collect();
        let s = ColumnSubset::new(p, &cols);
        let m = s.len();
        let mm = indefinite_symmetric(m);
        let mut out = vec![0.0; c.chunk.n_rows()];
        row_quad_forms(&c.chunk.view(), &c.layout, &s, &mm, &mut out);
        for (i, r) in x.iter().enumerate() {
            let want = dense_quad_form(r, &cols, &mm);
            prop_assert!(close(out[i], want), "row {i}: {} vs {want}", out[i]);
        }
    }
}

/// Many rows over few level combinations: the sandwich groups rows by combination
/// ([`SandwichScratch::gather`]); it must equal the row-by-row sandwich
/// ([`SandwichScratch::gather_per_row`]) and the naive dense XᵀWX, score included, for the full
/// column set and for a subset that drops some levels. So must the row quadratic forms, which
/// are grouped the same way.
#[test]
fn grouped_sandwich_matches_row_by_row() {
    let n = 2000;
    let levels = [3u32, 4, 5];
    let nd = 2;
    let mut next = xorshift(0x9E37_79B9_7F4A_7C15);
    let dense: Vec<f64> = (0..n * nd)
        .map(|_| (next() >> 11) as f64 / (1u64 << 53) as f64 - 0.5)
        .collect();
    let mut cat = Vec::new();
    for &l in &levels {
        for _ in 0..n {
            cat.push((next() % l as u64) as u32);
        }
    }
    let chunk = Chunk {
        row_id: (0..n as u64).collect(),
        y: vec![0.0; n],
        failures: None,
        weight: (0..n).map(|i| 0.5 + (i % 7) as f64 * 0.25).collect(),
        offset: vec![0.0; n],
        n_dense: nd,
        dense,
        n_cat: levels.len(),
        cat,
        indptr: vec![],
        indices: vec![],
        values: vec![],
    };
    let layout = Layout::new(true, nd, &levels, 0);
    let c = Case { chunk, layout };
    let x = dense_x(&c);
    let v = c.chunk.view();
    let p = c.layout.p;
    let z: Vec<f64> = (0..n).map(|i| (i as f64 * 0.37).sin()).collect();
    for cols in [(0..p).collect::<Vec<_>>(), (0..p).filter(|j| j % 3 != 1).collect()] {
        let s = ColumnSubset::new(p, &cols);
        let m = s.len();
        let run = |grouped: bool| {
            let mut acc = vec![0.0; m * m];
            let mut score = vec![0.0; m];
            let mut scratch = SandwichScratch::default();
            if grouped {
                scratch.gather(&v, &c.layout, &s);
            } else {
                scratch.gather_per_row(&v, &c.layout, &s);
            }
            sandwich_gathered(
                &v,
                &c.layout,
                v.weight,
                &s,
                &mut acc,
                Some((&z, &mut score)),
                &mut scratch,
            );
            symmetrize_lower(&mut acc, m);
            (acc, score)
        };
        // Row quadratic forms xᵢᵀMxᵢ with a symmetric indefinite M (grouped by combo here).
        let mm = indefinite_symmetric(m);
        let mut q = vec![0.0; n];
        row_quad_forms(&v, &c.layout, &s, &mm, &mut q);
        for (i, r) in x.iter().enumerate() {
            let want = dense_quad_form(r, &cols, &mm);
            assert!(close(q[i], want), "row {i}: {} vs {want}", q[i]);
        }
        let (ga, gs) = run(true);
        let (ra, rs) = run(false);
        for (a, &ja) in cols.iter().enumerate() {
            let want: f64 = x.iter().enumerate().map(|(i, r)| v.weight[i] * z[i] * r[ja]).sum();
            assert!(
                close(gs[a], want) && close(rs[a], want),
                "score {ja}: {} {} vs {want}",
                gs[a],
                rs[a]
            );
            for (b, &jb) in cols.iter().enumerate() {
                let want: f64 = x.iter().enumerate().map(|(i, r)| v.weight[i] * r[ja] * r[jb]).sum();
                let (g, r) = (ga[b * m + a], ra[b * m + a]);
                assert!(close(g, want) && close(r, want), "({ja},{jb}): {g} {r} vs {want}");
            }
        }
        // X·β through the grouped entries (every column in the subset: the combos' sums of β;
        // otherwise per level) equals the dense product.
        let beta: Vec<f64> = (0..p).map(|j| (j as f64 * 0.7).cos()).collect();
        let mut scratch = SandwichScratch::default();
        scratch.gather(&v, &c.layout, &s);
        let mut eta = vec![0.0; n];
        x_beta_gathered(&v, &c.layout, &beta, &s, &scratch, &mut eta);
        for (i, r) in x.iter().enumerate() {
            let want: f64 = r.iter().zip(&beta).map(|(a, b)| a * b).sum();
            assert!(close(eta[i], want), "η row {i}: {} vs {want}", eta[i]);
        }
    }
}
